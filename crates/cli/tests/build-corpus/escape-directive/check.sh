set -e
test "$(cat /C:path.txt)" = "a b"
