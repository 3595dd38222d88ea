set -e
test "$(cat /unpacked/x/y.txt)" = inside && test "$(cat /also-unpacked/x/y.txt)" = inside && test -f /files/plain.txt
