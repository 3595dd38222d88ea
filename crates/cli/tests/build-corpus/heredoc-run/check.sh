set -e
test "$(cat /h1 | wc -l)" = 2 && test "$(cat /h2)" = "tabs stripped" && test "$(cat /h3 | tr "\n" ,)" = "from a,from b,"
