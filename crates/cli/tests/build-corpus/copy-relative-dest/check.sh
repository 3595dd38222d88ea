set -e
test -f /app/a.txt && test -f /app/sub/a.txt && test -f /app/renamed.txt
