set -e
case "$(cat /p)" in "linux linux/"*) ;; *) exit 1;; esac
