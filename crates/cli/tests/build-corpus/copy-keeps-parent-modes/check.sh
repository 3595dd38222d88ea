set -e
test "$(stat -c %a /tmp)" = 1777 && test "$(stat -c %a /tmp/deep)" = 755
