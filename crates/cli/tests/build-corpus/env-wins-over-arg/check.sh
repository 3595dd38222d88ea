set -e
test "$(cat /v)" = env
