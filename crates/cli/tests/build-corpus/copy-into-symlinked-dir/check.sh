set -e
test -L /lib2 && test -f /usr/lib/a.txt && test -f /usr/lib/sub/b.txt && test -d /usr/lib/work
