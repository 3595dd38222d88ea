set -e
test -f /ctx/a.txt && test -f /ctx/keep.log && test ! -e /ctx/x.log && test ! -e /ctx/deep/y.log && test ! -e /ctx/secret.key && test ! -e /ctx/docs && test -f /ctx/src/main.c && test -f /ctx/.dockerignore
