set -e
test ! -e /data && test "$(cat /etc/group)" = changed && test ! -e /bin/vi && test -d /var/new
