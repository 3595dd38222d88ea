set -e
test "$C" = x && test "$D" = "4 and more"
