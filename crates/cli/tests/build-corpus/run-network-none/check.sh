set -e
test "$(cat /nets)" = lo
