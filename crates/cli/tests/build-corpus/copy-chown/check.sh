set -e
test "$(stat -c %u:%g /numeric /single /name /both /from-arg | tr "\n" " ")" = "1:2 77:77 33:33 33:50 5:6 "
