set -e
test "$(stat -c %a /s.sh)" = 755 && test "$(stat -c %a /priv/f)" = 600 && test "$(cat /ran)" = ran
