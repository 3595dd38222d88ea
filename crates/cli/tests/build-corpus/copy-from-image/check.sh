set -e
grep -q extra /group-copy
