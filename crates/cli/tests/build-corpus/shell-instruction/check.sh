set -e
test "$(cat /zero)" = /bin/sh
