set -e
test "$(cat /seen)" = "arg env /work"
