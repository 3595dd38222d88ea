set -e
test "$(cat /greeting)" = "hello world" && test "$(cat /literal)" = "hello \$NAME" && test "$(cat /dir/one.txt /dir/two.txt | tr -d "\n")" = 12
