set -e
test "$(cat /usr/local/bin/artifact)" = built && test "$(stat -c %u:%g /out-by-index/artifact)" = 7:8
