set -e
test "$(cat /exec)" = "exec form"
