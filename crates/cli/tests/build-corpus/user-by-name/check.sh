set -e
test "$(cat /uid)" = 33 && test "$(cat /gid)" = 33
