set -e
test "$(cat /listed)" = file && test "$(cat /tmpfs-seen)" = y && test ! -e /cache && test ! -e /t
