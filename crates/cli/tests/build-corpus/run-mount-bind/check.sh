set -e
test "$(cat /f-copy)" = "from context" && test "$(cat /d-list | tr "\n" " ")" = "new old " && test ! -e /ctx
