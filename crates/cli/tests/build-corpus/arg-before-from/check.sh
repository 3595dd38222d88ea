set -e
test "$(cat /tag)" = "tag=test unused="
