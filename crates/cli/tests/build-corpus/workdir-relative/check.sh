set -e
test "$(cat /pwd)" = /a/c && test -d /a/b && test -d /w/x
