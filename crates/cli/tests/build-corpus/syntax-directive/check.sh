set -e
test -f /ok
