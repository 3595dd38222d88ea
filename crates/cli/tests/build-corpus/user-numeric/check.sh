set -e
test "$(cat /tmp/u | tr "\n" " ")" = "1234 5678 "
