set -e
test "$(cat /stage)" = mid
