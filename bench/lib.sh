# bench/lib.sh: what bench/run.sh and bench/cri.sh share, sourced by both.

# Progress to stderr; `die` ends the script with its name.
log()  { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die()  { printf 'bench/%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }
# Problems go to stderr now and into the report at the end; peers' skips into its header.
PROBLEMS=()
PEER_NOTES=()
warn() { note "$*"; PROBLEMS+=("$*"); }
skip_peer() { note "$*"; PEER_NOTES+=("$*"); }
