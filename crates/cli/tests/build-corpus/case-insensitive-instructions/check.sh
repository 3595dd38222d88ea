set -e
test "$(cat /a)" = 1 && test -f /a.txt
