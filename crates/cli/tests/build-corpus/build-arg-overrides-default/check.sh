set -e
test "$(cat /who)" = somebody/given
