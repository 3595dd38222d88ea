set -e
test "$(stat -c %a /tree/exec.sh)" = 755 && test "$(stat -c %a /tree/plain)" = 644 && test "$(readlink /tree/link)" = plain && test "$(readlink /tree/abs)" = /etc/passwd
