set -e
test "$(cat /words)" = "one two three"
