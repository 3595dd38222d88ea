set -e
test "$(cat /renamed)" = A && test "$(cat /newdir/a.txt)" = A && test -f /both/b.txt && test -f /tmp/a.txt
