set -e
test -f /dst/a && test -f /dst/sub/b && test -f /dst2/sub/deeper/c && test -f /only-sub/b && test ! -e /dst/dir
