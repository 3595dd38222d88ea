set -e
test -f /from-scratch
