#!/usr/bin/env bash
# bench/cri.sh — berth's CRI service side by side with containerd's (a private containerd
# 1.6 with its CRI plugin), both driven by crictl, on the same machine in the same run.
#
# Measures, with hyperfine (one invocation per scenario, both engines in it):
#   1. a one-container pod's life: crictl runp, create, start, stopp, rmp
#   2. crictl pods / ps / stats with N pods (--pods, default 100), each with one running
#      container
#   3. resident memory (VmRSS): the idle CRI service (berth cri / containerd), and per pod
#      berth-pod-init against containerd's pause plus its containerd-shim-runc-v2
# then prints medians, ratios (containerd / berth) and PASS/FAIL against berth's targets,
# and writes the results as JSON to $BENCH_OUT (default /tmp/bench-cri.json).
# It is a report: it exits 0 even when a target fails, non-zero only when it breaks.
#
# Usage: bench/cri.sh [--runs N] [--pods N] [--no-containerd] [--no-subreaper]
# Env:   BERTH_BIN (default: target/release/berth, else target/debug/berth, the first with
#        berth-pod-init beside it), BENCH_OUT,
#        CRI_KIT (the offline CRI kit: crictl, make-test-images.py), CNI_BIN_DIR
# See bench/README.md.

set -euo pipefail

# ---------------------------------------------------------------------------------------
# Options
RUNS=10
NPODS=100
WANT_CONTAINERD=1
SUBREAPER=1
IDLE_SECS=${BENCH_IDLE_SECS:-5}

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift ;;
        --runs=*) RUNS=${1#*=} ;;
        --pods) NPODS=${2:?--pods needs a number}; shift ;;
        --pods=*) NPODS=${1#*=} ;;
        --no-containerd) WANT_CONTAINERD=0 ;;
        --no-subreaper) SUBREAPER=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench/cri.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 2 ]] || { echo "bench/cri.sh: --runs needs a number >= 2" >&2; exit 2; }
[[ $NPODS =~ ^[0-9]+$ && $NPODS -ge 1 ]] || { echo "bench/cri.sh: --pods needs a number >= 1" >&2; exit 2; }

# Targets (on a 2-core machine).
T_LIFECYCLE_RATIO=5    # berth's pod life cycle <= 1/5 of containerd's
T_PODS_MS=20           # crictl pods, N pods
T_PS_MS=20             # crictl ps, N running containers
T_STATS_MS=100         # crictl stats, N running containers
T_IDLE_RSS_KIB=15360   # berth cri idle RSS <= 15 MiB

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_JSON=${BENCH_OUT:-/tmp/bench-cri.json}
IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2
PAUSE_IMAGE=registry.k8s.io/pause:3.6
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
# Bridges and subnets of the two pod networks (others may run beside this one: the CRI
# test uses bb-critest and 10.223.0.0/16).
B_BRIDGE=bb-bcri B_SUBNET=10.231.0.0/16
C_BRIDGE=bb-ccri C_SUBNET=10.232.0.0/16

# The report's stdout and stderr, for the cleanup: a signal may come while a function runs
# with its output redirected.
exec 3>&1 4>&2
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------------------------------
# Prerequisites
[[ $(id -u) -eq 0 ]] || die "needs root (pods, mounts, network namespaces, cgroups)"
command -v hyperfine >/dev/null || die "hyperfine not found (apt-get install -y hyperfine)"
command -v python3 >/dev/null || die "needs python3 (the test images, hyperfine's JSON)"
KIT=${CRI_KIT:-}
if [[ -z $KIT ]]; then
    for k in "$REPO/../shared/tools/cri" /work/shared/tools/cri; do
        if [[ -x $k/crictl ]]; then KIT=$k; break; fi
    done
fi
[[ -n $KIT && -d $KIT ]] && KIT=$(cd "$KIT" && pwd -P)
CRICTL=${CRICTL:-${KIT:+$KIT/crictl}}
[[ -n $CRICTL && -x $CRICTL ]] || die "no crictl (set CRI_KIT to the offline CRI kit, or CRICTL)"
[[ -n $KIT && -f $KIT/make-test-images.py ]] || die "no make-test-images.py in the CRI kit (set CRI_KIT)"
REGISTRY_BIN=$(command -v docker-registry || command -v registry || true)
[[ -n $REGISTRY_BIN ]] || die "no registry binary (apt-get install -y docker-registry)"
[[ -x /bin/busybox ]] || die "no /bin/busybox for the test images (apt-get install -y busybox-static)"
for p in bridge host-local; do
    [[ -x $CNI_BIN_DIR/$p ]] || die "no CNI plugin $CNI_BIN_DIR/$p (apt-get install -y containernetworking-plugins)"
done

# berth: BERTH_BIN, else the release build, else the debug one; berth-monitor and
# berth-pod-init are used from beside it.
if [[ -n ${BERTH_BIN:-} ]]; then
    [[ -x $BERTH_BIN ]] || die "BERTH_BIN=$BERTH_BIN is not executable"
else
    for d in release debug; do
        b=${CARGO_TARGET_DIR:-$REPO/target}/$d/berth
        [[ -x $b ]] || continue
        if [[ ! -x $(dirname "$b")/berth-pod-init ]]; then
            note "skipping $b: no berth-pod-init beside it (an older build)"
            continue
        fi
        BERTH_BIN=$b
        break
    done
    [[ -n ${BERTH_BIN:-} ]] || die "no berth build with berth-pod-init beside it in target/{release,debug}; set BERTH_BIN"
fi
BERTH_BIN=$(readlink -f "$BERTH_BIN")
BERTH_DIR=$(dirname "$BERTH_BIN")
for p in berth-monitor berth-pod-init; do
    [[ -x $BERTH_DIR/$p ]] || die "no $p next to $BERTH_BIN"
done
"$BERTH_BIN" cri --help >/dev/null 2>&1 || die "$BERTH_BIN has no cri command"
BERTH_BUILD=release
if file -b "$BERTH_BIN" 2>/dev/null | grep -q 'with debug_info' || [[ $BERTH_BIN == */debug/* ]]; then
    BERTH_BUILD=debug
fi

HAVE_CONTAINERD=0
if ((!WANT_CONTAINERD)); then
    skip_peer "containerd: skipped (--no-containerd)"
elif ! command -v containerd >/dev/null; then
    skip_peer "containerd: not installed (no containerd in PATH); skipped"
    WANT_CONTAINERD=0
elif ! command -v containerd-shim-runc-v2 >/dev/null || ! command -v runc >/dev/null; then
    skip_peer "containerd: containerd-shim-runc-v2 or runc not installed; skipped"
    WANT_CONTAINERD=0
fi

# ---------------------------------------------------------------------------------------
# The temp dir: everything of the run lives there.
TMP=$(mktemp -d /tmp/berth-cri-bench.XXXXXX)
chmod 755 "$TMP"
B=$TMP/berth
C=$TMP/containerd
mkdir -p "$B"/{root,run,cni,ipam,logs} "$C"/{root,state,runc,cni,ipam,logs,certs.d} "$TMP/registry"
B_SOCK=$B/cri.sock
C_SOCK=$C/containerd.sock
B_PID="" C_PID="" REG_PID="" C_MNTNS=""
ROWS=$TMP/rows.tsv
: >"$ROWS"
declare -A POD_INIT_PIDS=()
FORWARD0=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo "")

# crictl for an engine: crictl for berth|containerd ARGS...
crictl_for() { local e=$1; shift; "$CRICTL" --config "$TMP/$e/crictl.yaml" "$@"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
# Stops a process we started: SIGTERM, up to S seconds, then SIGKILL.
stop_pid() {
    local pid=$1 secs=${2:-10} i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    return 0
}
# Mounts below the temp dir (in this mount namespace), deepest first.
our_mounts() {
    awk -v a="$TMP/" '{ m = $5; gsub(/\\040/, " ", m) } index(m, a) == 1 { print length(m), m }' \
        /proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}
# Processes of this run, by PID: any whose command line names the temp dir (containerd's
# shims: -address TMP/containerd/containerd.sock; berth's monitors), any in containerd's
# private mount namespace, and any in the PID namespace of one of berth's pods (pinned in
# its run root: the pod's init and containers).
our_pids() {
    local d pid f pidns=" "
    for f in "$B"/run/pods/*/pid; do
        [[ -e $f ]] && pidns+="pid:[$(stat -L -c %i "$f" 2>/dev/null)] "
    done
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        if [[ -n $C_MNTNS && $(readlink "$d/ns/mnt" 2>/dev/null) == "$C_MNTNS" ]]; then
            echo "$pid"
        elif [[ $pidns != " " && $pidns == *" $(readlink "$d/ns/pid" 2>/dev/null) "* ]]; then
            echo "$pid"
        elif tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -qF "$TMP/"; then
            echo "$pid"
        fi
    done
}

# ---------------------------------------------------------------------------------------
# Cleanup: pods, services, shims, monitors, mounts, bridges, the registry, the temp dir;
# on exit, error or Ctrl-C.
# shellcheck disable=SC2317 # called from the trap
cleanup() {
    local rc=$?
    trap '' INT TERM
    trap - EXIT
    set +e
    exec 1>&3 2>&4
    log "cleaning up"
    # Pods first, through the services (they stop containers, unmount, give back addresses).
    if [[ -n $B_PID ]] && kill -0 "$B_PID" 2>/dev/null; then
        timeout 180 "$CRICTL" --config "$B/crictl.yaml" rmp -fa >/dev/null 2>&1 || note "berth: crictl rmp -fa failed"
    fi
    if [[ -n $C_PID ]] && kill -0 "$C_PID" 2>/dev/null; then
        timeout 180 "$CRICTL" --config "$C/crictl.yaml" rmp -fa >/dev/null 2>&1 || note "containerd: crictl rmp -fa failed"
    fi
    # berth's containers (its CLI sees the pods' containers too): their cgroups are removed
    # below if berth could not.
    local bids=""
    [[ -d $B/root ]] && bids=$(timeout 30 "$BERTH_BIN" --root "$B/root" --run-root "$B/run" ps -aq --no-trunc 2>/dev/null)
    stop_pid "$B_PID" 10
    stop_pid "$C_PID" 10
    # containerd's containers left behind, through runc's state in the temp dir.
    if [[ -d $C/runc/k8s.io ]]; then
        local id
        for id in $(runc --root "$C/runc/k8s.io" list -q 2>/dev/null); do
            runc --root "$C/runc/k8s.io" delete -f "$id" >/dev/null 2>&1
        done
    fi
    # berth's pod inits (each the PID 1 of its pod: its containers go with it), if still
    # the same processes.
    local pid
    for pid in "${!POD_INIT_PIDS[@]}"; do
        [[ $(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null) == "${POD_INIT_PIDS[$pid]}" ]] \
            && kill -KILL "$pid" 2>/dev/null
    done
    stop_pid "$REG_PID" 5
    # Shims, monitors and whatever else of ours is left.
    for pid in $(our_pids); do
        kill -KILL "$pid" 2>/dev/null
    done
    sleep 0.2
    local m
    while read -r m; do
        [[ -n $m ]] && umount -l "$m" 2>/dev/null
    done < <(our_mounts)
    ip link del "$B_BRIDGE" 2>/dev/null
    ip link del "$C_BRIDGE" 2>/dev/null
    [[ $FORWARD0 == 0 ]] && echo 0 >/proc/sys/net/ipv4/ip_forward
    # Cgroups: berth's for our containers, containerd's pods' (both remove them
    # themselves; this is a net): empty dirs only.
    local d id leaked=0
    for id in $bids; do
        for d in /sys/fs/cgroup/berth/"$id" /sys/fs/cgroup/*/berth/"$id"; do
            [[ -d $d ]] && rmdir "$d" 2>/dev/null && leaked=1
        done
    done
    ((leaked)) && note "berth left container cgroups behind (removed now)"
    for d in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io; do
        [[ -d $d && ! -e $TMP/cgroups-before/${d//\//_} ]] || continue
        find "$d" -depth -type d -empty -delete 2>/dev/null
        rmdir "$d" 2>/dev/null
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$TMP/cgroups-before"
for d in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io; do
    [[ -d $d ]] && : >"$TMP/cgroups-before/${d//\//_}"
done

# Leftover bridges of an interrupted run go; busy ones mean another run is going on.
for br in "$B_BRIDGE" "$C_BRIDGE"; do
    if ip link show "$br" >/dev/null 2>&1; then
        if [[ -n $(ls "/sys/class/net/$br/brif" 2>/dev/null) ]]; then
            die "bridge $br is in use (another bench/cri.sh running?)"
        fi
        ip link del "$br"
    fi
done

# How long the machine's PID 1 leaves an orphan a zombie (ms): what a service without a
# subreaper waits for each process it left behind.
PID1_REAP_MS=$(timeout 10 python3 - <<'EOF' || true
import os, time
r, w = os.pipe()
if os.fork() == 0:
    g = os.fork()
    if g == 0:
        time.sleep(0.2)
        os._exit(0)
    os.write(w, b"%d" % g)
    os._exit(0)
os.wait()
g = int(os.read(r, 32))
t0 = None
try:
    while True:
        with open("/proc/%d/stat" % g) as f:
            if t0 is None and f.read().split(") ")[1][0] == "Z":
                t0 = time.time()
        time.sleep(0.001)
except FileNotFoundError:
    print("%.0f" % ((time.time() - (t0 or time.time())) * 1000))
EOF
)

# ---------------------------------------------------------------------------------------
# The registry and critest's images, built locally (make-test-images.py) and pushed to it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$port
cat >"$TMP/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/registry/data
http:
  addr: $REG
  secret: $(python3 -c 'import secrets; print(secrets.token_hex(16))')
EOF
"$REGISTRY_BIN" serve "$TMP/registry/config.yml" </dev/null >"$TMP/registry/log" 2>&1 3>&- 4>&- &
REG_PID=$!
for ((i = 0; i < 100; i++)); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://$REG/v2/', timeout=1)" 2>/dev/null && break
    kill -0 "$REG_PID" 2>/dev/null || { tail -n 5 "$TMP/registry/log" >&2; die "the registry exited"; }
    sleep 0.1
done
log "registry on http://$REG; building and pushing the test images"
python3 "$KIT/make-test-images.py" --out "$TMP/oci" --push "$REG" >"$TMP/images.log" 2>&1 \
    || { tail -n 20 "$TMP/images.log" >&2; die "building or pushing the test images failed"; }

# ---------------------------------------------------------------------------------------
# CNI: one bridge conflist per engine (host-local IPAM, its data in the temp dir).
cni_conf() { # DIR NAME BRIDGE SUBNET
    cat >"$1/cni/10-$2.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "$2", "plugins": [
  {"type": "bridge", "bridge": "$3", "isGateway": true, "ipMasq": false, "hairpinMode": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$4"}]], "dataDir": "$1/ipam"}}
]}
EOF
}
crictl_conf() { # ENGINE SOCKET
    printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 120\ndebug: false\npull-image-on-create: false\n' \
        "$2" "$2" >"$TMP/$1/crictl.yaml"
}
# The services run under a child subreaper (reaper.py) unless --no-subreaper: processes
# they leave behind (berth's pod inits, containerd's shims) are its children when they
# end, and it reaps them at once, as systemd does as PID 1 of a node. Without it, they go
# to the machine's PID 1, and a sandbox's init may reap orphans only every second or so
# (measured below): berth's StopPodSandbox waits for its pod init to be gone.
cat >"$TMP/reaper.py" <<'EOF'
import ctypes, os, signal, sys
# reaper.py PIDFILE CMD...: runs CMD as a child subreaper's child, writes its PID to
# PIDFILE, forwards SIGTERM/SIGINT to it, and reaps every child (CMD's orphans too)
# until none is left.
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("reaper.py: prctl(PR_SET_CHILD_SUBREAPER) failed")
child = os.fork()
if child == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
def forward(sig, frame):
    try:
        os.kill(child, sig)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%d\n" % child)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
EOF
# start_service PIDFILE LOG CMD...: starts CMD in a session of its own; prints its PID.
start_service() {
    local pidfile=$1 logf=$2 i
    shift 2
    if ((SUBREAPER)); then
        setsid python3 "$TMP/reaper.py" "$pidfile" "$@" </dev/null >"$logf" 2>&1 3>&- 4>&- &
    else
        setsid "$@" </dev/null >"$logf" 2>&1 3>&- 4>&- &
        echo "$!" >"$pidfile"
    fi
    for ((i = 0; i < 100; i++)); do
        [[ -s $pidfile ]] && { cat "$pidfile"; return 0; }
        sleep 0.05
    done
    return 1
}
# Waits until the service answers crictl version (or its process is gone).
wait_up() { # ENGINE PID
    local i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        crictl_for "$1" version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# berth cri: its own root and run root; pulls through the registry (the names' location
# is the local registry too, so nothing is ever fetched from beyond this machine).
cni_conf "$B" berth-bench "$B_BRIDGE" "$B_SUBNET"
crictl_conf berth "$B_SOCK"
cat >"$B/berth.toml" <<EOF
[[registry]]
prefix = "registry.k8s.io"
location = "$REG"
insecure = true
[[registry.mirror]]
location = "$REG"
insecure = true
EOF
log "berth: starting berth cri ($BERTH_BIN, $BERTH_BUILD build)"
B_PID=$(BERTH_CONFIG=$B/berth.toml start_service "$B/pid" "$B/cri.log" \
    "$BERTH_BIN" --root "$B/root" --run-root "$B/run" cri \
    --listen "unix://$B_SOCK" --cni-conf-dir "$B/cni" --cni-bin-dir "$CNI_BIN_DIR") \
    || die "berth cri did not start"
wait_up berth "$B_PID" || { tail -n 20 "$B/cri.log" >&2; die "berth cri did not come up"; }

# containerd: a private instance. Its own config, root, state, socket, runc root, CNI and
# hosts.toml dirs in the temp dir; and, since containerd 1.6 puts its shims' sockets in
# /run/containerd/s whatever the state dir, and libcni caches results in /var/lib/cni,
# it runs in a mount namespace of its own where /run and /var/lib are overlays whose
# writes land in the temp dir: the host's /run/containerd and /var/lib are never touched.
setup_containerd() {
    ((WANT_CONTAINERD)) || return 0
    cni_conf "$C" containerd-bench "$C_BRIDGE" "$C_SUBNET"
    crictl_conf containerd "$C_SOCK"
    mkdir -p "$C/certs.d/registry.k8s.io"
    cat >"$C/certs.d/registry.k8s.io/hosts.toml" <<EOF
server = "http://$REG"

[host."http://$REG"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
    sed -e "s|@DIR@|$C|g" -e "s|@SANDBOX_IMAGE@|$PAUSE_IMAGE|" \
        -e "s|@CNI_BIN_DIR@|$CNI_BIN_DIR|" -e "s|@CNI_CONF_DIR@|$C/cni|" \
        "$REPO/bench/containerd-cri.toml" >"$C/config.toml"
    log "containerd: starting a private containerd ($(containerd --version | awk '{ print $3 }'))"
    # unshare and sh exec: the PID is containerd's.
    C_PID=$(start_service "$C/pid" "$C/containerd.log" \
        unshare --mount --propagation private -- "$REPO/bench/containerd-private.sh" "$C") || C_PID=""
    if [[ -z $C_PID ]] || ! wait_up containerd "$C_PID"; then
        skip_peer "containerd: did not come up; skipped: $(grep -E 'level=(error|fatal)|failed to load plugin io.containerd.grpc.v1.cri' "$C/containerd.log" | tail -n 1)"
        tail -n 15 "$C/containerd.log" | sed 's/^/      /' >&2
        stop_pid "$C_PID" 5
        C_PID=""
        return 0
    fi
    C_MNTNS=$(readlink "/proc/$C_PID/ns/mnt")
    if [[ $(readlink "/proc/$C_PID/exe") != */containerd ]]; then
        warn "containerd: PID $C_PID is $(readlink "/proc/$C_PID/exe"), not containerd"
    fi
    HAVE_CONTAINERD=1
}
setup_containerd

ENGINES=(berth)
((HAVE_CONTAINERD)) && ENGINES+=(containerd)
declare -A SERVICE_PID=([berth]=$B_PID [containerd]=$C_PID)

# The test image on both; containerd's sandbox image too (berth needs none: its pods'
# PID 1 is berth-pod-init).
for e in "${ENGINES[@]}"; do
    imgs=("$IMAGE")
    [[ $e == containerd ]] && imgs+=("$PAUSE_IMAGE")
    for img in "${imgs[@]}"; do
        if ! err=$(crictl_for "$e" pull "$img" 2>&1); then
            [[ $e == berth ]] && die "berth: crictl pull $img failed: $err"
            skip_peer "containerd: crictl pull $img failed; skipped: $err"
            ENGINES=(berth)
            HAVE_CONTAINERD=0
        fi
    done
done
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "engines: ${ENGINES[*]}; hyperfine $RUNS runs; $NPODS pods"

# ---------------------------------------------------------------------------------------
# 3a. The idle services' RSS (after the pulls, then IDLE_SECS of nothing).
sleep "$IDLE_SECS"
declare -A IDLE_RSS=()
for e in "${ENGINES[@]}"; do
    IDLE_RSS[$e]=$(rss_kib "${SERVICE_PID[$e]}")
done

# ---------------------------------------------------------------------------------------
# bench NAME WARMUP CMD: one hyperfine run, `CMD` with ENGINE replaced by each engine's
# name, checked once first (a failing engine is left out). If hyperfine fails with both,
# each engine gets one of its own, so one's failure does not lose the other's figures.
bench() {
    local name=$1 warmup=$2 cmd=$3 args=() e c err ok=()
    for e in "${ENGINES[@]}"; do
        c=${cmd//ENGINE/$e}
        # shellcheck disable=SC2086
        if ! err=$($c 2>&1 >/dev/null </dev/null); then
            warn "$e: $name fails, left out: $(tail -n 3 <<<"$err")"
            continue
        fi
        ok+=("$e")
        args+=(-n "$e" "$c")
    done
    ((${#args[@]})) || return 0
    log "scenario $name"
    sync
    if ! hyperfine -N --prepare sync --warmup "$warmup" --runs "$RUNS" \
        --export-json "$TMP/$name.json" "${args[@]}" >&2; then
        rm -f "$TMP/$name.json"
        ((${#ok[@]} > 1)) || { warn "hyperfine failed for $name (${ok[*]})"; return 0; }
        warn "hyperfine failed for $name with both engines; now each alone"
        for e in "${ok[@]}"; do
            hyperfine -N --prepare sync --warmup "$warmup" --runs "$RUNS" \
                --export-json "$TMP/$name-$e.json" -n "$e" "${cmd//ENGINE/$e}" >&2 \
                || { warn "hyperfine failed for $name ($e)"; rm -f "$TMP/$name-$e.json"; }
        done
    fi
}
# jget NAME ENGINE FIELD: a figure of a hyperfine scenario, in ms.
jget() {
    local f
    for f in "$TMP/$1.json" "$TMP/$1-$2.json"; do
        [[ -f $f ]] || continue
        python3 - "$f" "$2" "$3" <<'EOF'
import json, sys
f, name, field = sys.argv[1:4]
for r in json.load(open(f))["results"]:
    if r["command"] == name:
        print("%.1f" % (r[field] * 1000))
EOF
    done
}

# ---------------------------------------------------------------------------------------
# 1. A one-container pod's life, one crictl per step.
cat >"$TMP/lifecycle.sh" <<'EOF'
#!/bin/bash
# lifecycle.sh CRICTL CONFIG DIR: runp, create, start, stopp, rmp of DIR/pod.json with
# DIR/ctr.json, through the CRI service CONFIG (a crictl.yaml) names.
set -e
crictl=("$1" --config "$2")
pod=$("${crictl[@]}" runp "$3/pod.json")
trap '"${crictl[@]}" rmp -f "$pod" >/dev/null 2>&1' ERR
ctr=$("${crictl[@]}" create "$pod" "$3/ctr.json" "$3/pod.json")
"${crictl[@]}" start "$ctr" >/dev/null
"${crictl[@]}" stopp "$pod" >/dev/null
"${crictl[@]}" rmp "$pod" >/dev/null
EOF
chmod +x "$TMP/lifecycle.sh"
# pod_json ENGINE NAME: a pod (no namespace options: one PID namespace for the pod).
pod_json() {
    printf '{"metadata": {"name": "%s", "namespace": "bench", "uid": "%s-%s", "attempt": 0},\n "log_directory": "%s"}\n' \
        "$2" "$1" "$2" "$TMP/$1/logs/$2"
}
printf '{"metadata": {"name": "sleep"}, "image": {"image": "%s"}, "command": ["sleep", "3600"], "log_path": "sleep.log"}\n' \
    "$IMAGE" >"$TMP/ctr.json"
for e in "${ENGINES[@]}"; do
    mkdir -p "$TMP/$e/lc"
    pod_json "$e" lifecycle >"$TMP/$e/lc/pod.json"
    cp "$TMP/ctr.json" "$TMP/$e/lc/ctr.json"
done
bench lifecycle 2 "$TMP/lifecycle.sh $CRICTL $TMP/ENGINE/crictl.yaml $TMP/ENGINE/lc"
# The client's own cost: one crictl process and its simplest call (Version).
bench floor 3 "$CRICTL --config $TMP/ENGINE/crictl.yaml version"

# ---------------------------------------------------------------------------------------
# 2. N pods, each with one running container (sleep 3600).
declare -A CREATE_S=() NRUN=()
for e in "${ENGINES[@]}"; do
    log "$e: $NPODS pods with a running container each"
    mkdir -p "$TMP/$e/pods"
    t0=$(date +%s%N)
    fails=0
    for ((i = 1; i <= NPODS; i++)); do
        pj=$TMP/$e/pods/pod-$i.json
        pod_json "$e" "bench-$i" >"$pj"
        if ! pod=$(crictl_for "$e" runp "$pj" 2>"$TMP/$e/pods/err") \
            || ! ctr=$(crictl_for "$e" create "$pod" "$TMP/ctr.json" "$pj" 2>"$TMP/$e/pods/err") \
            || ! crictl_for "$e" start "$ctr" >/dev/null 2>"$TMP/$e/pods/err"; then
            fails=$((fails + 1))
            ((fails == 1)) && warn "$e: pod $i of $NPODS failed: $(tail -n 2 "$TMP/$e/pods/err")"
            ((fails >= 5)) && { warn "$e: 5 pods failed; no more tried"; break; }
        fi
    done
    t1=$(date +%s%N)
    CREATE_S[$e]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    NRUN[$e]=$(crictl_for "$e" ps -q 2>/dev/null | wc -l)
    note "$e: ${NRUN[$e]} running containers; made in ${CREATE_S[$e]} s"
    ((NRUN[$e] == NPODS)) || warn "$e: ${NRUN[$e]} of $NPODS containers running"
done

bench pods 3 "$CRICTL --config $TMP/ENGINE/crictl.yaml pods"
bench ps 3 "$CRICTL --config $TMP/ENGINE/crictl.yaml ps"
# -o json: one ListContainerStats (the table samples twice, --seconds apart, for CPU %).
bench stats 3 "$CRICTL --config $TMP/ENGINE/crictl.yaml stats -o json"

# ---------------------------------------------------------------------------------------
# 3b. RSS per pod: what stays resident beside each pod.
#  berth: the pod's init (berth-pod-init, PID 1 of the pod's PID namespace); and, for the
#         full picture, each container's berth-monitor.
#  containerd: the pod's pause process and its shim (one containerd-shim-runc-v2 per
#         pod: the pod's containers share it).
# The pods' PIDs come from crictl inspectp's verbose info.
cat >"$TMP/pids.py" <<'EOF'
import json, sys
# inspectp -o json on stdin; prints the pod's process PID: berth's init_pid, containerd's pid.
doc = json.load(sys.stdin)
info = doc.get("info") or {}
def find(o, keys):
    if isinstance(o, dict):
        for k in keys:
            if isinstance(o.get(k), int) and o[k] > 0:
                return o[k]
        for v in o.values():
            r = find(v, keys)
            if r:
                return r
    elif isinstance(o, list):
        for v in o:
            r = find(v, keys)
            if r:
                return r
    elif isinstance(o, str) and o[:1] in "{[":
        try:
            return find(json.loads(o), keys)
        except ValueError:
            pass
    return None
print(find(info, ["init_pid", "initPid", "pid"]) or "")
EOF
ppid_of() { awk '/^PPid:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
declare -A shims=()
declare -A POD_RSS=() POD_RSS_N=() POD_ALL_RSS=() LOADED_RSS=() POD_PROC=()
for e in "${ENGINES[@]}"; do
    LOADED_RSS[$e]=$(rss_kib "${SERVICE_PID[$e]}")
    total=0 n=0 all=0 mons=0 nmon=0
    shims=()
    for pod in $(crictl_for "$e" pods -q 2>/dev/null); do
        pid=$(crictl_for "$e" inspectp -o json "$pod" 2>/dev/null | python3 "$TMP/pids.py" 2>/dev/null || true)
        [[ -n $pid ]] && [[ -d /proc/$pid ]] || { warn "$e: no process found for pod $pod"; continue; }
        r=$(rss_kib "$pid")
        [[ -n $r ]] || continue
        if [[ $e == berth ]]; then
            [[ $(readlink "/proc/$pid/exe") == */berth-pod-init ]] \
                || warn "berth: pod $pod's PID $pid is $(readlink "/proc/$pid/exe"), not berth-pod-init"
            POD_INIT_PIDS[$pid]=$(awk '{ print $22 }' "/proc/$pid/stat")
            total=$((total + r)) n=$((n + 1))
        else
            s=$(ppid_of "$pid")
            if [[ $(readlink "/proc/$s/exe" 2>/dev/null) != */containerd-shim-runc-v2 ]]; then
                warn "containerd: pod $pod's pause ($pid) has no shim as its parent"
                continue
            fi
            shims[$s]=1
            total=$((total + r + $(rss_kib "$s"))) n=$((n + 1))
        fi
    done
    if ((n)); then
        POD_RSS[$e]=$((total / n))
        POD_RSS_N[$e]=$n
    fi
    if [[ $e == berth ]]; then
        # The containers' monitors (berth-monitor, one per container), found by their IDs.
        for ctr in $(crictl_for berth ps -q --no-trunc 2>/dev/null); do
            pid=$(pgrep -f "berth-monitor .*$ctr" | head -n1 || true)
            [[ -n $pid ]] || continue
            r=$(rss_kib "$pid")
            [[ -n $r ]] && mons=$((mons + r)) nmon=$((nmon + 1))
        done
        if ((n && nmon)); then
            POD_ALL_RSS[$e]=$(((total + mons) / n))
            POD_PROC[$e]="pod-init ${POD_RSS[$e]} + monitors $((mons / nmon)) KiB ($nmon found)"
        else
            warn "berth: no berth-monitor found for the pods' containers"
        fi
    else
        ((${#shims[@]} == n)) || note "containerd: ${#shims[@]} shims for $n pods"
        if ((n)); then
            POD_ALL_RSS[$e]=${POD_RSS[$e]}
            POD_PROC[$e]="pause + shim (${#shims[@]} shims for $n pods)"
        fi
    fi
done

# ---------------------------------------------------------------------------------------
# Report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.1fx", a / b; else print "-" }'; }
# verdict VALUE OP LIMIT [WHEN-MISSING]: PASS, FAIL, or WHEN-MISSING (FAIL) with no value.
verdict() {
    local val=$1 op=$2 lim=$3 missing=${4:-FAIL}
    [[ -n $val ]] || { echo "$missing"; return; }
    awk -v v="$val" -v l="$lim" -v op="$op" 'BEGIN { print ((op == "<=" ? v <= l : v >= l) ? "PASS" : "FAIL") }'
}
# row KEY TITLE UNIT BERTH CONTAINERD TARGET RESULT: one line of the table, and of the JSON.
row() {
    local r
    r=$(ratio "$5" "$4")
    printf '  %-44s %12s %12s %8s  %-16s %s\n' "$2" "${4:-n/a}" "${5:-n/a}" "$r" "$6" "$7"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${r%x}" "$6" "$7" >>"$ROWS"
}
declare -A MED=()
for s in lifecycle floor pods ps stats; do
    for e in berth containerd; do
        MED[$s,$e]=$(jget "$s" "$e" median)
    done
done
kib_mib() { [[ -n $1 ]] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "berth CRI benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r), $RUNS runs each, $NPODS pods"
echo "berth: $BERTH_BIN ($BERTH_BUILD build; $("$BERTH_BIN" --version 2>/dev/null || echo '?'))"
((HAVE_CONTAINERD)) && echo "containerd: $(containerd --version | awk '{ print $3 }'), runc $(runc --version | awk 'NR == 1 { print $3 }') (private instance, overlayfs, cgroupfs)"
((${#PEER_NOTES[@]})) && printf '%s\n' "${PEER_NOTES[@]}"
echo "crictl: $CRICTL; image $IMAGE; load average before the run: $LOAD0"
if ((SUBREAPER)); then
    echo "services under a child subreaper (orphans reaped at once); this machine's PID 1 reaps an orphan after ${PID1_REAP_MS:-?} ms"
else
    echo "services without a subreaper (--no-subreaper): orphans go to PID 1, which reaps them after ${PID1_REAP_MS:-?} ms here"
fi
[[ $BERTH_BUILD == debug ]] && echo "note: berth is a debug build: its figures are those of unoptimized code"
echo
printf '  %-44s %12s %12s %8s  %-16s %s\n' scenario berth containerd ratio target result
missing_ratio=SKIP
[[ -z ${MED[lifecycle,berth]} ]] && missing_ratio=FAIL
lc_ratio=$(ratio "${MED[lifecycle,containerd]}" "${MED[lifecycle,berth]}")
[[ $lc_ratio == - ]] && lc_ratio=""
row lifecycle "pod life cycle runp..rmp, median ms" ms "${MED[lifecycle,berth]}" "${MED[lifecycle,containerd]}" \
    ">= ${T_LIFECYCLE_RATIO}x faster" "$(verdict "${lc_ratio%x}" ">=" "$T_LIFECYCLE_RATIO" "$missing_ratio")"
row floor "crictl version (the client's floor), ms" ms "${MED[floor,berth]}" "${MED[floor,containerd]}" "-" "info"
row pods "crictl pods ($NPODS pods), median ms" ms "${MED[pods,berth]}" "${MED[pods,containerd]}" \
    "<= $T_PODS_MS ms" "$(verdict "${MED[pods,berth]}" "<=" "$T_PODS_MS")"
row ps "crictl ps ($NPODS running), median ms" ms "${MED[ps,berth]}" "${MED[ps,containerd]}" \
    "<= $T_PS_MS ms" "$(verdict "${MED[ps,berth]}" "<=" "$T_PS_MS")"
row stats "crictl stats -o json ($NPODS), median ms" ms "${MED[stats,berth]}" "${MED[stats,containerd]}" \
    "<= $T_STATS_MS ms" "$(verdict "${MED[stats,berth]}" "<=" "$T_STATS_MS")"
row idle_rss "idle service RSS, MiB" MiB "$(kib_mib "${IDLE_RSS[berth]:-}")" "$(kib_mib "${IDLE_RSS[containerd]:-}")" \
    "<= $((T_IDLE_RSS_KIB / 1024)) MiB" "$(verdict "${IDLE_RSS[berth]:-}" "<=" "$T_IDLE_RSS_KIB")"
row pod_rss "RSS per pod: pod-init | pause+shim, KiB" KiB "${POD_RSS[berth]:-}" "${POD_RSS[containerd]:-}" "-" "info"
row pod_all_rss "  the same, + berth's container monitor, KiB" KiB "${POD_ALL_RSS[berth]:-}" "${POD_ALL_RSS[containerd]:-}" "-" "info"
row loaded_rss "service RSS with $NPODS pods, MiB" MiB "$(kib_mib "${LOADED_RSS[berth]:-}")" "$(kib_mib "${LOADED_RSS[containerd]:-}")" "-" "info"
row create_pods "making $NPODS pods (runp, create, start), s" s "${CREATE_S[berth]:-}" "${CREATE_S[containerd]:-}" "-" "info"
echo
echo "  ratio: containerd / berth (above 1.0x berth is faster or smaller)."
for e in "${ENGINES[@]}"; do
    [[ -n ${POD_PROC[$e]:-} ]] && echo "  $e per pod: ${POD_PROC[$e]}"
done
for s in lifecycle floor pods ps stats; do
    for e in "${ENGINES[@]}"; do
        [[ -n ${MED[$s,$e]} ]] || continue
        printf '  %-10s %-11s median %8s ms  mean %8s ms  stddev %8s ms\n' "$s" "$e" "${MED[$s,$e]}" \
            "$(jget "$s" "$e" mean)" "$(jget "$s" "$e" stddev)"
    done
done
PASSN=$(awk -F'\t' '$8 == "PASS"' "$ROWS" | wc -l)
FAILN=$(awk -F'\t' '$8 == "FAIL"' "$ROWS" | wc -l)
SKIPN=$(awk -F'\t' '$8 == "SKIP"' "$ROWS" | wc -l)
echo "  targets: $PASSN PASS, $FAILN FAIL, $SKIPN SKIP"
if ((${#PROBLEMS[@]})); then
    echo
    echo "Problems seen during the run:"
    printf '  - %s\n' "${PROBLEMS[@]}"
fi

# JSON: the table's rows, plus every hyperfine figure.
mkdir -p "$(dirname "$OUT_JSON")"
printf '%s\n' "${PEER_NOTES[@]}" >"$TMP/notes.txt"
printf '%s\n' "${PROBLEMS[@]}" >"$TMP/problems.txt"
J_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) J_CORES=$(nproc) J_KERNEL=$(uname -r) J_LOAD=$LOAD0 \
J_BERTH=$BERTH_BIN J_BUILD=$BERTH_BUILD J_RUNS=$RUNS J_PODS=$NPODS \
J_SUBREAPER=$SUBREAPER J_PID1=${PID1_REAP_MS:-} \
J_CONTAINERD=$( ((HAVE_CONTAINERD)) && containerd --version | awk '{ print $3 }' || true) \
python3 - "$ROWS" "$TMP" "$OUT_JSON" <<'EOF' || warn "writing $OUT_JSON failed"
import json, os, sys
rows, tmp, out = sys.argv[1:4]
env = os.environ
def num(s):
    try:
        return float(s)
    except ValueError:
        return None
def lines(name):
    return [l for l in open(os.path.join(tmp, name)).read().splitlines() if l]
doc = {
    "date": env["J_DATE"],
    "host": {"cores": int(env["J_CORES"]), "kernel": env["J_KERNEL"], "load_before": env["J_LOAD"]},
    "berth": {"bin": env["J_BERTH"], "build": env["J_BUILD"]},
    "containerd": env["J_CONTAINERD"] or None,
    "runs": int(env["J_RUNS"]),
    "pods": int(env["J_PODS"]),
    "subreaper": env["J_SUBREAPER"] == "1",
    "pid1_orphan_reap_ms": num(env["J_PID1"]),
    "notes": lines("notes.txt"),
    "problems": lines("problems.txt"),
    "results": {},
}
for line in open(rows):
    key, title, unit, b, c, r, target, result = line.rstrip("\n").split("\t")
    res = {"title": title.strip(), "unit": unit, "berth": num(b), "containerd": num(c),
           "ratio_containerd_to_berth": num(r), "target": None if target == "-" else target,
           "result": result or None}
    for engine in ("berth", "containerd"):
        for f in (key + ".json", key + "-" + engine + ".json"):
            p = os.path.join(tmp, f)
            if not os.path.exists(p):
                continue
            for h in json.load(open(p))["results"]:
                if h["command"] == engine:
                    res.setdefault("hyperfine", {})[engine] = {
                        k + "_ms": round(h[k] * 1000, 2)
                        for k in ("median", "mean", "stddev", "min", "max")}
    doc["results"][key] = res
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
EOF
echo
echo "JSON results: $OUT_JSON"
exit 0
