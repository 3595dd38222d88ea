set -e
test -f /dest/a.txt
