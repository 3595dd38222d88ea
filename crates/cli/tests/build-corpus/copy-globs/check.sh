set -e
test -f /g/x.txt && test -f /g/y.txt && test ! -e /g/z.log && test -f /h/f && test -f /m/a.md && test ! -e /m/c.md
