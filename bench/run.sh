#!/usr/bin/env bash
# bench/run.sh — berth side by side with docker and podman (when they can run here).
#
# Measures, with hyperfine, interleaving the engines in one invocation per scenario:
#   1. run --rm --network none busybox:bench true
#   2. exec CTR true            (CTR runs `sleep 100000`)
#   3. ps -a                    (200 containers: created, a few of them running)
#   4. the RSS of the per-container process (berth-monitor / conmon / containerd-shim)
#   6. stats --no-stream with 100 running containers
#   5. health checks every second: the idle cost of one such container (berth's monitor
#      RSS and CPU), and the host's CPU with many of them (200 for berth; peers fewer)
# then prints medians, ratios (peer / berth) and PASS/FAIL against berth's targets.
# It is a report: it exits 0 even when a target fails, non-zero only when it breaks.
#
# Usage: bench/run.sh [--quick] [--runs N] [--containers N] [--health N] [--health-peers N]
#                     [--registry | --registry-only] [--build | --build-only]
#                     [--network | --network-only] [--compose | --compose-only]
#                     [--api | --api-only] [--api-load-secs N]
#                     [--no-docker] [--no-podman]
# Env:   BERTH_BIN (skip the cargo build), BENCH_OUT (where the JSON goes),
#        DOCKER_CLI, BENCH_DOCKER_STORAGE (default vfs), BENCH_PODMAN_STORAGE (default vfs)
# See bench/README.md.

set -euo pipefail

# ---------------------------------------------------------------------------------------
# Options
QUICK=0
RUNS=""
NCONT=200
NRUNNING=3
WANT_DOCKER=1
WANT_PODMAN=1
NHEALTH=200
REGISTRY=0
BUILD=0
NETWORK=0
COMPOSE=0
CORE=1
NSTATS=100
API=0
API_LOAD_SECS=60
NHEALTH_PEERS=20
HEALTH_SECS=20

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
        --quick) QUICK=1 ;;
        --runs) RUNS=${2:?--runs needs a number}; shift ;;
        --runs=*) RUNS=${1#*=} ;;
        --containers) NCONT=${2:?--containers needs a number}; shift ;;
        --containers=*) NCONT=${1#*=} ;;
        --health) NHEALTH=${2:?--health needs a number}; shift ;;
        --health-peers) NHEALTH_PEERS=${2:?--health-peers needs a number}; shift ;;
        --registry) REGISTRY=1 ;;
        --registry-only) REGISTRY=1; CORE=0 ;;
        --build) BUILD=1 ;;
        --build-only) BUILD=1; CORE=0 ;;
        --network) NETWORK=1 ;;
        --network-only) NETWORK=1; CORE=0 ;;
        --compose) COMPOSE=1 ;;
        --compose-only) COMPOSE=1; CORE=0 ;;
        --api) API=1 ;;
        --api-only) API=1; CORE=0 ;;
        --api-load-secs) API_LOAD_SECS=${2:?--api-load-secs needs a number}; shift ;;
        --no-docker) WANT_DOCKER=0 ;;
        --no-podman) WANT_PODMAN=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench/run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [[ -z $RUNS ]]; then
    if ((QUICK)); then RUNS=10; else RUNS=50; fi
fi
WARMUP=3
if ((NCONT < NRUNNING + 1)); then NRUNNING=1; fi

# Targets (on a 2-core machine).
T_RUN_MS=30
T_RUN_RATIO=10
T_EXEC_MS=15
T_RSS_KIB=4096
T_PS_MS=100
T_STATS_MS=200
T_HEALTH_MON_CPU=0.2
T_HEALTH_HOST_CPU=5
T_PUSH_RATIO=4
T_PULL_RATIO=3
T_RPS_RATIO=3
T_BUILD_COLD_RATIO=1
T_BUILD_CACHED_RATIO=5
T_BRIDGE_RUN_MS=60
T_BRIDGE_RUN_RATIO=6
T_PUBLISHED_TCP_SHARE=80
T_COMPOSE_UP_MS=1000
T_COMPOSE_NOCHANGE_MS=150
T_COMPOSE_DOWN_MS=1000
T_API_RUN_RATIO=5
T_API_PS_MS=50
T_API_IDLE_RSS_KIB=20480

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------------------------------
# Prerequisites
[[ $(id -u) -eq 0 ]] || die "needs root (containers, mounts, cgroups)"
command -v hyperfine >/dev/null || die "hyperfine not found (apt-get install -y hyperfine)"
if command -v python3 >/dev/null; then JSONTOOL=python3
elif command -v jq >/dev/null; then JSONTOOL=jq
else die "needs python3 or jq to read hyperfine's JSON"; fi

BUSYBOX=""
for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x $b ]]; then BUSYBOX=$b; break; fi
done
[[ -n $BUSYBOX ]] || die "no /bin/busybox (apt-get install -y busybox-static)"
if command -v file >/dev/null && ! file -L "$BUSYBOX" | grep -Eq 'statically linked|static-pie'; then
    die "$BUSYBOX is not statically linked (apt-get install -y busybox-static)"
fi

# ---------------------------------------------------------------------------------------
# berth itself
if [[ -n ${BERTH_BIN:-} ]]; then
    [[ -x $BERTH_BIN ]] || die "BERTH_BIN=$BERTH_BIN is not executable"
else
    log "building berth (cargo build --release)"
    (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
    BERTH_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/berth"
    [[ -x $BERTH_BIN ]] || die "no $BERTH_BIN after the build"
fi
BERTH_BIN=$(readlink -f "$BERTH_BIN")
if [[ ! -x $(dirname "$BERTH_BIN")/berth-monitor ]]; then
    warn "no berth-monitor next to $BERTH_BIN"
fi

OUT=${BENCH_OUT:-$REPO/target/bench}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/{run,exec,ps}.json

TMP=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/berth-bench.XXXXXX")
chmod 755 "$TMP"
BROOT=$TMP/berth/root
# The run root on a tmpfs, as berth's default (/run/berth) and dockerd's exec root are.
BRUN=$TMP/berth/run
if [[ $(stat -f -c %T /run 2>/dev/null) == tmpfs ]]; then
    BRUN=$(mktemp -d /run/berth-bench.XXXXXX)
fi
mkdir -p "$BROOT" "$BRUN"

berth() { "$BERTH_BIN" --root "$BROOT" --run-root "$BRUN" "$@"; }
# The same, as one string for hyperfine -N (which splits it shell-style).
BERTH_S="$(printf '%q' "$BERTH_BIN") --root $(printf '%q' "$BROOT") --run-root $(printf '%q' "$BRUN")"

HAVE_DOCKER=0
HAVE_PODMAN=0
DOCKERD_PID=""
DOCKER=()
DOCKER_S=""
PODMAN=()
PODMAN_S=""
PODMAN_NOTE=""
BERTH_IDS_FILE=$TMP/berth-ids
DOCKER_BRIDGE=bbdock$$

# Host paths that dockerd/containerd/podman/berth create outside the temp dir: the ones
# that are not there now are removed on exit (files we know of, and dirs once empty).
HOST_FILES=(/etc/docker/key.json)
HOST_DIRS=(/etc/docker /run/docker /run/containerd)
HOST_CGROUPS=()
for c in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [[ -d $c && ! -L $c ]] || continue
    for n in docker libpod_parent berth; do HOST_CGROUPS+=("$c/$n"); done
done
# nftables tables that are not there now (podman's netavark makes iptables-nft ones for
# its bridge and leaves them) are removed on exit.
NFT_TABLES0=$(nft list tables 2>/dev/null || true)
NEW_PATHS=()
for p in "${HOST_FILES[@]}" "${HOST_DIRS[@]}" "${HOST_CGROUPS[@]}"; do
    [[ -e $p ]] || NEW_PATHS+=("$p")
done

# ---------------------------------------------------------------------------------------
# Cleanup: containers, daemons, mounts, cgroups, temp dirs; on exit, error or Ctrl-C.
# shellcheck disable=SC2317,SC2013 # called from the trap
cleanup() {
    local rc=$?
    trap '' INT TERM
    trap - EXIT
    set +e
    log "cleaning up"
    [[ -n ${API_PID:-} ]] && kill "$API_PID" 2>/dev/null
    # berth
    if [[ -d $BROOT ]]; then
        berth ps -aq --no-trunc 2>/dev/null >>"$BERTH_IDS_FILE"
        local ids
        ids=$(berth ps -aq --no-trunc 2>/dev/null)
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086
            timeout 60 "$BERTH_BIN" --root "$BROOT" --run-root "$BRUN" rm -f $ids >/dev/null 2>&1 \
                || note "berth rm -f failed"
        fi
    fi
    # podman
    if ((HAVE_PODMAN)); then
        timeout 60 "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1
    fi
    # docker
    if [[ -n $DOCKERD_PID ]]; then
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            local dids
            dids=$(timeout 20 "${DOCKER[@]}" ps -aq 2>/dev/null)
            # shellcheck disable=SC2086
            [[ -n $dids ]] && timeout 60 "${DOCKER[@]}" rm -f $dids >/dev/null 2>&1
            kill -TERM "$DOCKERD_PID" 2>/dev/null
            local i
            for ((i = 0; i < 150; i++)); do
                kill -0 "$DOCKERD_PID" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$DOCKERD_PID" 2>/dev/null
        fi
        # dockerd's own containerd and any shim it left, found by our temp dir.
        local p
        for p in $(pgrep -f "$TMP/docker" 2>/dev/null); do
            kill -KILL "$p" 2>/dev/null
        done
    fi
    ip link del "$DOCKER_BRIDGE" 2>/dev/null
    local t
    while read -r t; do
        # (berth's own, of this run or of tests running beside it, are not these)
        [[ -n $t && $t != *" berth_"* ]] && ! grep -qxF "$t" <<<"$NFT_TABLES0" && nft delete "$t" 2>/dev/null
    done < <(nft list tables 2>/dev/null)
    # berth's default bridge and firewall tables of this root (named after it), and any
    # iperf3 server of ours.
    if [[ -d $BROOT ]]; then
        local tag
        tag=$(printf '%s' "$BROOT" | sha256sum | cut -c1-12)
        ip link del "bb-$tag" 2>/dev/null
        nft delete table inet "berth_$tag" 2>/dev/null
        nft delete table inet "berth_${tag}_ports" 2>/dev/null
    fi
    [[ -n ${IPERF_PID:-} ]] && kill "$IPERF_PID" 2>/dev/null
    # Any process still running from our temp dirs (conmon, monitors).
    for p in $(pgrep -f "$TMP" 2>/dev/null); do
        [[ $p == "$$" ]] || kill -KILL "$p" 2>/dev/null
    done
    # Mounts below the temp dir, deepest first.
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null
    done < <(awk -v a="$TMP" -v b="$BRUN" 'index($5, a) == 1 || index($5, b) == 1 { print length($5), $5 }' \
                 /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
    # cgroups berth made for our containers (berth removes them itself; this is a net).
    local leaked=0 id d
    if [[ -s $BERTH_IDS_FILE ]]; then
        for id in $(sort -u "$BERTH_IDS_FILE"); do
            for d in /sys/fs/cgroup/berth/"$id" /sys/fs/cgroup/*/berth/"$id"; do
                if [[ -d $d ]]; then
                    leaked=$((leaked + 1))
                    rmdir "$d" 2>/dev/null
                fi
            done
        done
    fi
    ((leaked)) && note "berth left $leaked container cgroup dir(s) behind (removed now)"
    rm -rf "$TMP" "$BRUN"
    # Host paths that were not there before the run (see HOST_FILES).
    for p in "${NEW_PATHS[@]}"; do
        [[ -e $p ]] || continue
        if [[ -f $p ]]; then
            rm -f "$p"
        elif [[ $p == /sys/fs/cgroup/* ]]; then
            # Only empty ones go; below berth/, never another user's containers'.
            [[ $p == */berth ]] || find "$p" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
            rmdir "$p" 2>/dev/null
        else
            find "$p" -depth -type d -empty -delete 2>/dev/null
        fi
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# The test image: a rootfs tar from the host's busybox-static.
log "making busybox:bench from $BUSYBOX"
ROOTFS=$TMP/rootfs
mkdir -p "$ROOTFS"/{bin,etc,tmp,root}
chmod 1777 "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$ROOTFS/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
tar -C "$ROOTFS" --numeric-owner -cf "$TMP/rootfs.tar" .
berth import -c 'CMD ["/bin/sh"]' "$TMP/rootfs.tar" busybox:bench >/dev/null \
    || die "berth import failed"
berth run --rm --network none busybox:bench true || die "berth cannot run busybox:bench"

# ---------------------------------------------------------------------------------------
# docker: a private dockerd on a temp socket, never the system one.
setup_docker() {
    if ((!WANT_DOCKER)); then skip_peer "docker: skipped (--no-docker)"; return; fi
    if ! command -v dockerd >/dev/null; then skip_peer "docker: no dockerd installed; skipped"; return; fi
    local cli=${DOCKER_CLI:-}
    if [[ -z $cli ]]; then
        if [[ -x $(dirname "$(command -v dockerd)")/docker ]]; then
            cli=$(dirname "$(command -v dockerd)")/docker
        else
            cli=$(command -v docker || true)
        fi
    fi
    if [[ -z $cli ]]; then skip_peer "docker: no docker CLI installed; skipped"; return; fi
    local d=$TMP/docker
    mkdir -p "$d/data" "$d/exec" "$d/config"
    printf '{"deprecated-key-path": "%s"}\n' "$d/key.json" >"$d/daemon.json"
    local sock=unix://$d/docker.sock
    # With --network: a bridge of docker's own for its default network (made here, removed
    # on exit); never the host's firewall (no iptables, no forwarding changes).
    local bridge=none
    if ((NETWORK || COMPOSE)) && ip link add "$DOCKER_BRIDGE" type bridge 2>/dev/null; then
        ip addr add 10.219.250.1/24 dev "$DOCKER_BRIDGE" && ip link set "$DOCKER_BRIDGE" up
        bridge=$DOCKER_BRIDGE
    fi
    local flags=(--data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/docker.pid"
                 -H "$sock" --config-file "$d/daemon.json" --bridge="$bridge" --iptables=false
                 --ip-forward=false --ip-masq=false
                 --storage-driver "${BENCH_DOCKER_STORAGE:-vfs}")
    if dockerd --help 2>&1 | grep -q -- '--ip6tables'; then flags+=(--ip6tables=false); fi
    log "docker: starting a private dockerd ($(dockerd --version))"
    setsid dockerd "${flags[@]}" </dev/null >"$d/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    DOCKER=("$cli" --config "$d/config" -H "$sock")
    DOCKER_S="$(printf '%q ' "${DOCKER[@]}")"
    local i up=0
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then break; fi
        if "${DOCKER[@]}" info >/dev/null 2>&1; then up=1; break; fi
        sleep 0.1
    done
    if ((!up)); then
        skip_peer "docker: dockerd did not come up; skipped: $(grep -v '^\s*$' "$d/dockerd.log" | tail -n 1)"
        note "dockerd's log ends with:"
        tail -n 15 "$d/dockerd.log" | sed 's/^/      /' >&2
        return
    fi
    if ! berth save busybox:bench | "${DOCKER[@]}" load >/dev/null 2>"$d/load.err"; then
        skip_peer "docker: loading busybox:bench failed; skipped: $(tail -n 3 "$d/load.err")"
        return
    fi
    local err
    if ! err=$("${DOCKER[@]}" run --rm --network none busybox:bench true 2>&1); then
        skip_peer "docker: cannot run containers here; skipped: $(tail -n 3 <<<"$err")"
        return
    fi
    HAVE_DOCKER=1
}

# podman: its own --root/--runroot/--tmpdir, vfs, cgroupfs, file events (no systemd).
# Where podman's defaults cannot run here, it is retried with the smallest change that
# lets it run, and that change is printed:
#  - podman asks for nofile/nproc limits above the host's hard limits, which needs
#    CAP_SYS_RESOURCE ("setrlimit `RLIMIT_NOFILE`: Operation not permitted"): the
#    container gets the host's hard nofile and min(hard nproc, pid_max) instead;
#  - crun refuses hybrid cgroup v1/v2 hosts ("cgroups in hybrid mode not supported"):
#    runc is used instead.
setup_podman() {
    if ((!WANT_PODMAN)); then skip_peer "podman: skipped (--no-podman)"; return; fi
    if ! command -v podman >/dev/null; then skip_peer "podman: not installed; skipped"; return; fi
    local p=$TMP/podman
    mkdir -p "$p/root" "$p/runroot" "$p/tmp"
    local base=(podman --root "$p/root" --runroot "$p/runroot" --tmpdir "$p/tmp"
                --storage-driver "${BENCH_PODMAN_STORAGE:-vfs}" --cgroup-manager cgroupfs
                --events-backend file)
    PODMAN=("${base[@]}")
    log "podman: $(podman --version)"
    local err
    if ! err=$(berth save busybox:bench | "${PODMAN[@]}" load 2>&1 >/dev/null); then
        skip_peer "podman: loading busybox:bench failed; skipped: $(tail -n 3 <<<"$err")"
        return
    fi
    HAVE_PODMAN=2 # containers may exist from here on: clean them up on exit
    local nproc pidmax changes=()
    nproc=$(ulimit -Hu)
    pidmax=$(cat /proc/sys/kernel/pid_max)
    [[ $nproc == unlimited || $nproc -gt $pidmax ]] && nproc=$pidmax
    local attempt
    for attempt in default ulimits runc; do
        case $attempt in
            ulimits)
                grep -q 'rlimit\|RLIMIT' <<<"$err" || continue
                printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' \
                    "$(ulimit -Hn)" "$(ulimit -Hn)" "$nproc" "$nproc" >"$p/containers.conf"
                export CONTAINERS_CONF=$p/containers.conf
                changes+=("ulimits nofile=$(ulimit -Hn) nproc=$nproc")
                ;;
            runc)
                grep -q 'hybrid mode' <<<"$err" || break
                command -v runc >/dev/null || break
                PODMAN=("${base[@]}" --runtime runc)
                changes+=("--runtime runc")
                ;;
        esac
        if err=$("${PODMAN[@]}" run --rm --network none busybox:bench true 2>&1); then
            HAVE_PODMAN=1
            break
        fi
    done
    if ((HAVE_PODMAN != 1)); then
        skip_peer "podman: cannot run containers here; skipped: $(tail -n 3 <<<"$err")"
        return
    fi
    ((${#changes[@]})) && note "podman: runs here only with: ${changes[*]}"
    PODMAN_NOTE=${changes[*]:-}
    PODMAN_S="$(printf '%q ' "${PODMAN[@]}")"
}

setup_docker
setup_podman
ENGINES=(berth)
((HAVE_DOCKER)) && ENGINES+=(docker)
((HAVE_PODMAN == 1)) && ENGINES+=(podman)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "engines: ${ENGINES[*]}; hyperfine $RUNS runs, $WARMUP warmups; results in $OUT"

# The command prefix of an engine, as a hyperfine string.
prefix() {
    case $1 in
        berth) printf '%s' "$BERTH_S" ;;
        docker) printf '%s' "$DOCKER_S" ;;
        podman) printf '%s' "$PODMAN_S" ;;
    esac
}
# Runs an engine's CLI.
eng() {
    local e=$1; shift
    case $e in
        berth) berth "$@" ;;
        docker) "${DOCKER[@]}" "$@" ;;
        podman) "${PODMAN[@]}" "$@" ;;
    esac
}

# bench NAME ARGS...: `ENGINE ARGS` for every engine, checked once, then one hyperfine run.
bench() {
    local name=$1; shift
    local args=() e err
    for e in "${ENGINES[@]}"; do
        # shellcheck disable=SC2046
        if ! err=$(eval "$(prefix "$e") $*" 2>&1 </dev/null); then
            warn "$e $*: fails, left out of this scenario: $(tail -n 3 <<<"$err")"
            continue
        fi
        args+=(-n "$e" "$(prefix "$e") $*")
    done
    if ((${#args[@]} == 0)); then return 0; fi
    log "scenario $name: $*"
    # `sync` before every timed run: no engine pays for the page cache another (or its own
    # previous run) left dirty; vfs-backed peers leave a lot.
    sync
    hyperfine -N --prepare sync --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/$name.json" "${args[@]}" >&2 \
        || { warn "hyperfine failed for $name"; rm -f "$OUT/$name.json"; }
}

# Filled by the scenarios, read by the report (which runs whatever ran).
declare -A RSS=() RSSPROC=() HBUSY=() HN=()
HMON_RSS="" HMON_CPU="" HBASE="" HFLOOR="" EXEC_MON_RSS=""
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
core_scenarios() {
# ---------------------------------------------------------------------------------------
# 1. run --rm
bench run run --rm --network none busybox:bench true

# berth should leave nothing behind after run --rm.
LEFT=$(berth ps -aq | wc -l)
((LEFT == 0)) || warn "berth: $LEFT container(s) left after run --rm: $(berth ps -a --format '{{.Status}}' | sort | uniq -c | xargs)"

# ---------------------------------------------------------------------------------------
# 2. exec into a running container
for e in "${ENGINES[@]}"; do
    eng "$e" run -d --network none --name bench-exec busybox:bench sleep 100000 >/dev/null \
        || warn "$e: could not start bench-exec"
done
bench exec exec bench-exec true

# ---------------------------------------------------------------------------------------
# 4. (before the 200 containers) RSS of the per-container process
# "anon A, file F, shmem S, peak P KiB"
rss_detail() {
    awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } /^RssShmem:/ { s = $2 } /^VmHWM:/ { h = $2 }
         END { printf "anon %s, file %s, shmem %s, peak %s KiB", a, f, s, h }' "/proc/$1/status" 2>/dev/null
}
RSS=() RSSPROC=()
for e in "${ENGINES[@]}"; do
    if ! eng "$e" run -d --network none --name bench-rss busybox:bench sleep 100000 >/dev/null; then
        warn "$e: could not start bench-rss"
        continue
    fi
    id=$(eng "$e" inspect -f '{{.Id}}' bench-rss 2>/dev/null || true)
    pid=""
    for ((i = 0; i < 50; i++)); do
        case $e in
            berth)  pid=$(pgrep -f "berth-monitor .*$id" | head -n1 || true); what=berth-monitor ;;
            docker) pid=$(pgrep -f "containerd-shim.* -id $id" | head -n1 || true); what=containerd-shim ;;
            podman) pid=$(pgrep -f "conmon .*$id" | head -n1 || true); what=conmon ;;
        esac
        [[ -n $pid ]] && break
        sleep 0.1
    done
    if [[ -z $id || -z $pid ]]; then
        warn "$e: no $what process found for bench-rss (id ${id:-?}, status $(eng "$e" inspect -f '{{.State.Status}} {{.State.Error}}' bench-rss 2>&1 | xargs))"
        continue
    fi
    sleep 0.5 # let it settle
    RSS[$e]=$(rss_kib "$pid")
    RSSPROC[$e]="$what: $(rss_detail "$pid")"
done
# berth's exec container's monitor, after all the exec runs.
EXEC_MON_RSS=""
if id=$(berth inspect -f '{{.Id}}' bench-exec 2>/dev/null) && pid=$(pgrep -f "berth-monitor .*$id" | head -n1); then
    EXEC_MON_RSS="$(rss_kib "$pid") KiB ($(rss_detail "$pid"))"
fi

# ---------------------------------------------------------------------------------------
# 5. health checks every second
# The CPU time (ns) every task on the host has run: the root cgroup's, exact (cgroup v1
# cpuacct, or v2's cpu.stat); empty where neither is readable.
host_cpu_ns() {
    if [[ -r /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then
        cat /sys/fs/cgroup/cpuacct/cpuacct.usage
    elif [[ -r /sys/fs/cgroup/cpu.stat ]]; then
        awk '/^usage_usec / { printf "%.0f", $2 * 1000 }' /sys/fs/cgroup/cpu.stat
    fi
}
# Busy share of the whole host (all cores) over S seconds, in percent. From the root
# cgroup's CPU time where there is one: /proc/stat samples at each tick whether a CPU is
# busy, and short timer-driven bursts (a probe is ~1 ms) made the same load read 4 to 10%.
host_busy() {
    local a b t0 t1
    a=$(host_cpu_ns)
    if [[ -n $a ]]; then
        t0=$(date +%s%N)
        sleep "$1"
        b=$(host_cpu_ns)
        t1=$(date +%s%N)
        awk -v a="$a" -v b="$b" -v t=$((t1 - t0)) -v n="$(nproc)" \
            'BEGIN { printf "%.2f", 100 * (b - a) / (t * n) }'
        return
    fi
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    sleep "$1"
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    echo "$a $b" | awk '{ busy = $3 - $1; idle = $4 - $2; printf "%.2f", 100 * busy / (busy + idle) }'
}
# CPU time (s) of a process and its reaped children, from /proc/PID/stat.
proc_cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15 + $16 + $17) / t }' "/proc/$1/stat" 2>/dev/null; }
# The same for a process and its living children (berth's monitor and its probe launcher).
tree_cpu() {
    local c sum
    sum=$(proc_cpu "$1")
    for c in $(pgrep -P "$1" || true); do
        sum=$(awk -v a="$sum" -v b="$(proc_cpu "$c")" 'BEGIN { printf "%.3f", a + b }')
    done
    echo "$sum"
}
HC=(--network none --health-cmd true --health-interval 1s)
HBUSY=() HN=()
HMON_RSS="" HMON_CPU=""
if id=$(berth run -d "${HC[@]}" --name bench-health busybox:bench sleep 100000) \
    && pid=$(sleep 1; pgrep -f "berth-monitor .*$id" | head -n1); then
    sleep 2
    c0=$(tree_cpu "$pid")
    sleep "$HEALTH_SECS"
    c1=$(tree_cpu "$pid")
    HMON_CPU=$(awk -v a="$c0" -v b="$c1" -v s="$HEALTH_SECS" 'BEGIN { printf "%.3f", 100 * (b - a) / s }')
    HMON_RSS=$(rss_kib "$pid")
    berth rm -f bench-health >/dev/null
else
    warn "berth: could not start bench-health or find its monitor"
fi
HBASE=$(host_busy 5)
# The floor: the probes' own program, spawned bare (no container, no engine) from a Python
# loop at the rate the berth containers probe.
HFLOOR=""
if command -v python3 >/dev/null; then
    python3 - "$NHEALTH" "$((HEALTH_SECS + 4))" "$BUSYBOX" <<'PY' &
import os, sys, time
rate, secs, busybox = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
end = time.time() + secs
due = time.time()
while time.time() < end:
    os.waitpid(os.posix_spawn(busybox, [busybox, "sh", "-c", "true"], {}), 0)
    due += 1.0 / rate
    if due > time.time():
        time.sleep(due - time.time())
PY
    floor_pid=$!
    sleep 2
    HFLOOR=$(host_busy "$HEALTH_SECS")
    wait "$floor_pid" || true
fi
for e in "${ENGINES[@]}"; do
    n=$NHEALTH_PEERS
    [[ $e == berth ]] && n=$NHEALTH
    log "$e: $n containers with a health check every second"
    ids=()
    for ((i = 0; i < n; i++)); do
        if ! id=$(eng "$e" run -d "${HC[@]}" busybox:bench sleep 100000 2>"$TMP/health.err"); then
            warn "$e: health container $i failed: $(cat "$TMP/health.err")"
            break
        fi
        ids+=("$id")
    done
    ((${#ids[@]})) || continue
    sleep 5
    HN[$e]=${#ids[@]}
    HBUSY[$e]=$(host_busy "$HEALTH_SECS")
    healthy=$(eng "$e" ps --format '{{.Status}}' | grep -c '(healthy)' || true)
    note "$e: host busy ${HBUSY[$e]}% with ${#ids[@]} ($healthy healthy)"
    if ((healthy == 0)); then
        # podman runs health checks from systemd timers: without systemd, none run.
        skip_peer "$e: no health check ran (0 of ${#ids[@]} healthy); its health figure is left out"
        unset "HBUSY[$e]"
    fi
    eng "$e" rm -f "${ids[@]}" >/dev/null 2>&1 || warn "$e: removing the health containers failed"
done

# ---------------------------------------------------------------------------------------
# 6. stats --no-stream with NSTATS running containers
for e in "${ENGINES[@]}"; do
    log "$e: starting $NSTATS containers for stats"
    for ((i = 0; i < NSTATS; i++)); do
        eng "$e" run -d --network none --label bench=stats busybox:bench sleep 100000 >/dev/null \
            || { warn "$e: stats container $i failed"; break; }
    done
done
bench stats stats --no-stream
for e in "${ENGINES[@]}"; do
    # shellcheck disable=SC2046
    eng "$e" rm -f $(eng "$e" ps -q --filter label=bench=stats) >/dev/null 2>&1 || true
done

# ---------------------------------------------------------------------------------------
# 3. ps -a with NCONT containers: NRUNNING running (bench-exec, bench-rss, ...), the rest created.
for e in "${ENGINES[@]}"; do
    have=$(eng "$e" ps -aq | wc -l)
    running=$(eng "$e" ps -q | wc -l)
    for ((i = running; i < NRUNNING; i++)); do
        eng "$e" run -d --network none busybox:bench sleep 100000 >/dev/null || break
        have=$((have + 1))
    done
    log "$e: creating $((NCONT - have)) containers"
    start=$(date +%s.%N)
    for ((i = have; i < NCONT; i++)); do
        if ! err=$(eng "$e" create --network none busybox:bench true 2>&1 >/dev/null); then
            warn "$e create failed at container $i: $err"
            break
        fi
    done
    note "$e: $(eng "$e" ps -aq | wc -l) containers, $(eng "$e" ps -q | wc -l) running ($(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s to create)"
done
bench ps ps -a

}
((CORE)) && core_scenarios
# ---------------------------------------------------------------------------------------
# 7. (--registry) push and pull of a ~200 MB Debian minbase image through a registry on
#    loopback (Debian's docker-registry), and manifest GETs per second from berth's
#    registry against docker-registry under the same load (wrk).
declare -gA REG=()
# debian:bench in berth's store: a Debian minbase rootfs (about 200 MB), made once with
# debootstrap and kept in $OUT. Prints what went wrong and fails when it cannot.
debian_image() {
    local what=$1
    berth image inspect debian:bench >/dev/null 2>&1 && return 0
    local deb=${BENCH_DEBIAN_TAR:-$OUT/debian-minbase.tar}
    if [[ ! -s $deb ]]; then
        command -v debootstrap >/dev/null || { warn "$what: no debootstrap (apt-get install debootstrap); skipped"; return 1; }
        log "$what: debootstrap --variant=minbase bookworm (cached in $deb)"
        if ! debootstrap --variant=minbase bookworm "$TMP/debroot" "${BENCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$TMP/debootstrap.log" 2>&1; then
            warn "$what: debootstrap failed: $(tail -n 2 "$TMP/debootstrap.log")"
            return 1
        fi
        tar -C "$TMP/debroot" --numeric-owner -cf "$deb.tmp" . && mv "$deb.tmp" "$deb"
        rm -rf "$TMP/debroot"
    fi
    berth import -c 'CMD ["/bin/bash"]' "$deb" debian:bench >/dev/null || { warn "$what: berth import failed"; return 1; }
}

registry_scenarios() {
    debian_image registry || return
    REG[size]=$(berth image inspect -f '{{.Size}}' debian:bench)
    local dreg
    dreg=$(command -v docker-registry || command -v registry || true)
    [[ -n $dreg ]] || { warn "registry: no docker-registry (apt-get install docker-registry); skipped"; return; }
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$TMP/dreg"
    cat >"$TMP/dreg/config.yml" <<CFG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $TMP/dreg/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CFG
    # Starts docker-registry with empty storage (before every push run).
    cat >"$TMP/dreg/reset.sh" <<SH
#!/bin/bash
[[ -f $TMP/dreg/pid ]] && kill \$(cat $TMP/dreg/pid) 2>/dev/null && sleep 0.2
rm -rf $TMP/dreg/data
setsid $dreg serve $TMP/dreg/config.yml </dev/null >$TMP/dreg/log 2>&1 &
echo \$! >$TMP/dreg/pid
for i in \$(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && exit 0; sleep 0.05; done
exit 1
SH
    chmod +x "$TMP/dreg/reset.sh"
    "$TMP/dreg/reset.sh" || { warn "registry: docker-registry did not start"; return; }
    local host=127.0.0.1:$port
    berth tag debian:bench "$host/bench/berth:1"
    local args=(-n berth "$BERTH_S push $host/bench/berth:1" ) prep=(--prepare "$TMP/dreg/reset.sh")
    if ((HAVE_DOCKER)); then
        berth save debian:bench | "${DOCKER[@]}" load >/dev/null
        "${DOCKER[@]}" tag debian:bench "$host/bench/docker:1"
        args+=(-n docker "$DOCKER_S push $host/bench/docker:1")
        prep+=(--prepare "$TMP/dreg/reset.sh")
    fi
    log "scenario push: ${REG[size]} bytes unpacked"
    hyperfine -N --runs "${REG_RUNS:-5}" "${prep[@]}" --export-json "$OUT/push.json" "${args[@]}" >&2 \
        || warn "hyperfine failed for push"
    # Pull what docker pushed (gzip layers, as registries hold them); berth's own push
    # when there is no docker.
    "$TMP/dreg/reset.sh"
    local src=$host/bench/berth:1
    if ((HAVE_DOCKER)); then
        "${DOCKER[@]}" push "$host/bench/docker:1" >/dev/null && src=$host/bench/docker:1
    else
        berth push "$src" >/dev/null
    fi
    # Every run starts without the image (all its tags, blobs and layers): the image id
    # is the same in both engines and for every tag of it.
    local id
    id=$(berth image inspect -f '{{.Id}}' debian:bench)
    cat >"$TMP/rmi-berth.sh" <<SH
#!/bin/bash
$BERTH_S rmi -f $id >/dev/null 2>&1; sync; echo 3 >/proc/sys/vm/drop_caches
SH
    cat >"$TMP/rmi-docker.sh" <<SH
#!/bin/bash
$DOCKER_S rmi -f $id >/dev/null 2>&1; sync; echo 3 >/proc/sys/vm/drop_caches
SH
    chmod +x "$TMP"/rmi-*.sh
    args=(-n berth "$BERTH_S pull $src")
    prep=(--prepare "$TMP/rmi-berth.sh")
    if ((HAVE_DOCKER)); then
        args+=(-n docker "$DOCKER_S pull $src")
        prep+=(--prepare "$TMP/rmi-docker.sh")
    fi
    log "scenario pull: $src"
    hyperfine -N --runs "${REG_RUNS:-5}" "${prep[@]}" --export-json "$OUT/pull.json" "${args[@]}" >&2 \
        || warn "hyperfine failed for pull"
    # Manifest GETs per second: berth's registry holds the same image (berth copies it).
    command -v wrk >/dev/null || { warn "registry: no wrk (apt-get install wrk); rps skipped"; return; }
    local bport
    bport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    setsid "$BERTH_BIN" registry serve --quiet --addr "127.0.0.1:$bport" --root "$TMP/breg" </dev/null >"$TMP/breg.log" 2>&1 &
    local bpid=$!
    sleep 0.5
    berth pull "$src" >/dev/null
    berth tag "$src" "127.0.0.1:$bport/bench/deb:1"
    berth push "127.0.0.1:$bport/bench/deb:1" >/dev/null || warn "registry: push to berth's registry failed"
    local path=/v2/${src#*/}
    path=${path%:1}/manifests/1
    local accept='Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json'
    for e in berth docker-registry; do
        local p=$bport
        [[ $e == docker-registry ]] && p=$port
        local url=http://127.0.0.1:$p$path
        [[ $e == berth ]] && url=http://127.0.0.1:$bport/v2/bench/deb/manifests/1
        curl -sf -H "$accept" -o /dev/null "$url" || { warn "registry: $e does not serve $url"; continue; }
        REG[rps,$e]=$(wrk -t2 -c32 -d"${REG_WRK_SECS:-10}"s -H "$accept" "$url" 2>/dev/null | awk '/^Requests\/sec/ { print $2 }')
        note "$e: ${REG[rps,$e]} manifest GETs/s"
    done
    kill "$bpid" 2>/dev/null
    kill "$(cat "$TMP/dreg/pid")" 2>/dev/null
}
((REGISTRY)) && registry_scenarios

# Build: a RUN and a COPY of 2000 small files on the Debian image, uncached (--no-cache)
# and fully cached, against docker's legacy builder and BuildKit.
build_scenarios() {
    debian_image build || return
    local ctx=$TMP/buildctx
    mkdir -p "$ctx/files"
    local i
    for ((i = 0; i < 2000; i++)); do
        printf 'file %d\n%*s\n' "$i" $((i % 200)) "" >"$ctx/files/f$i.txt"
    done
    cat >"$ctx/Dockerfile" <<'DF'
FROM debian:bench
RUN echo built > /built && mkdir -p /app
COPY files/ /app/files/
DF
    BUILD_FILES=$(find "$ctx/files" -type f | wc -l)
    local cold=(-n berth "$BERTH_S build -q --no-cache --network none -t bench/build:1 $ctx")
    local warm=(-n berth "$BERTH_S build -q --network none -t bench/build:1 $ctx")
    berth build -q --network none -t bench/build:1 "$ctx" >/dev/null || { warn "build: berth build failed"; return; }
    if ((HAVE_DOCKER)); then
        berth save debian:bench | "${DOCKER[@]}" load >/dev/null
        local mode
        for mode in legacy buildkit; do
            local env=0
            [[ $mode == buildkit ]] && env=1
            local cmd="env DOCKER_BUILDKIT=$env $DOCKER_S build -q --network none -t bench/build-$mode:1 $ctx"
            if ! env DOCKER_BUILDKIT=$env "${DOCKER[@]}" build -q --network none -t "bench/build-$mode:1" "$ctx" >/dev/null 2>"$TMP/docker-build.err"; then
                warn "build: docker build ($mode) failed: $(tail -n 2 "$TMP/docker-build.err")"
                continue
            fi
            cold+=(-n "docker-$mode" "${cmd/build -q/build -q --no-cache}")
            warm+=(-n "docker-$mode" "$cmd")
        done
    fi
    # Every uncached run copies a context that changed (one file), so no engine finds
    # the new layer already unpacked; and starts with the caches dropped, as pulls do
    # (see bench/README.md: ext4's inode allocator after large deletions).
    cat >"$TMP/touch-ctx.sh" <<SH
#!/bin/bash
date +%s%N >>$ctx/files/f0.txt
SH
    cat >"$TMP/touch-ctx-cold.sh" <<SH
#!/bin/bash
$TMP/touch-ctx.sh; sync; echo 3 >/proc/sys/vm/drop_caches
SH
    chmod +x "$TMP/touch-ctx-cold.sh"
    chmod +x "$TMP/touch-ctx.sh"
    local prep=()
    for ((i = 0; i < ${#cold[@]} / 3; i++)); do prep+=(--prepare "$TMP/touch-ctx-cold.sh"); done
    log "scenario build (uncached): RUN + COPY of $BUILD_FILES files on debian:bench"
    hyperfine -N --runs "${BUILD_RUNS:-5}" --warmup 1 "${prep[@]}" --export-json "$OUT/build-cold.json" "${cold[@]}" >&2 \
        || warn "hyperfine failed for the uncached build"
    log "scenario build (cached)"
    "$TMP/touch-ctx.sh"
    hyperfine -N --runs "${BUILD_CACHED_RUNS:-10}" --warmup 1 --export-json "$OUT/build-cached.json" "${warm[@]}" >&2 \
        || warn "hyperfine failed for the cached build"
}
BUILD_FILES=""
((BUILD)) && build_scenarios

# ---------------------------------------------------------------------------------------
# 9. (--network) run --rm on the default bridge, and TCP throughput through a published
#    port on loopback against a direct loopback connection (iperf3, host and container).
IPERF_PID=""
declare -A TPUT=()
network_scenarios() {
    bench run-bridge run --rm --network bridge busybox:bench true
    if ! command -v iperf3 >/dev/null; then
        warn "no iperf3 (apt-get install -y iperf3): throughput not measured"
        return 0
    fi
    # iperf3:bench, from the host's Debian iperf3 package: the binary and the libraries
    # it loads.
    local r=$TMP/iperf-rootfs bin lib
    bin=$(command -v iperf3)
    mkdir -p "$r/bin" "$r/tmp"
    cp "$bin" "$r/bin/iperf3"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
    done
    tar -C "$r" --numeric-owner -cf "$TMP/iperf.tar" .
    berth import "$TMP/iperf.tar" iperf3:bench >/dev/null || { warn "importing iperf3:bench failed"; return 0; }
    local secs=5 round e out
    ((QUICK)) && secs=2
    # bits/s received, from iperf3's JSON
    bps() { python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'; }
    freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    # The servers: one on the host, one in a container per engine (podman left out: its
    # rootful port forwarding changes the host's iptables).
    declare -A PORT=()
    PORT[direct]=$(freeport)
    iperf3 -s -p "${PORT[direct]}" >/dev/null 2>&1 &
    IPERF_PID=$!
    for e in "${ENGINES[@]}"; do
        [[ $e == podman ]] && continue
        if [[ $e == docker ]]; then
            berth save iperf3:bench | "${DOCKER[@]}" load >/dev/null 2>&1 || { warn "docker: loading iperf3:bench failed"; continue; }
        fi
        PORT[$e]=$(freeport)
        if ! eng "$e" run -d --name bench-iperf -p "127.0.0.1:${PORT[$e]}:5201" iperf3:bench iperf3 -s >/dev/null 2>"$TMP/iperf.err"; then
            warn "$e: iperf3 server container failed: $(tail -n 2 "$TMP/iperf.err")"
            unset "PORT[$e]"
        fi
    done
    sleep 1
    # Three rounds, the paths taking turns; the median of each path's three.
    declare -A RUNS_BPS=()
    for round in 1 2 3; do
        for e in direct "${ENGINES[@]}"; do
            [[ -n ${PORT[$e]:-} ]] || continue
            if out=$(iperf3 -c 127.0.0.1 -p "${PORT[$e]}" -t "$secs" -J 2>/dev/null); then
                RUNS_BPS[$e]+="$(bps <<<"$out") "
            else
                warn "$e: iperf3 to 127.0.0.1:${PORT[$e]} failed (round $round)"
            fi
        done
    done
    for e in "${!RUNS_BPS[@]}"; do
        TPUT[$e]=$(tr ' ' '\n' <<<"${RUNS_BPS[$e]}" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
        note "iperf3 $e: ${RUNS_BPS[$e]}bit/s"
    done
    kill "$IPERF_PID" 2>/dev/null
    wait "$IPERF_PID" 2>/dev/null || true
    IPERF_PID=""
    for e in "${ENGINES[@]}"; do
        [[ $e == podman ]] || eng "$e" rm -f bench-iperf >/dev/null 2>&1
    done
}
((NETWORK)) && network_scenarios

# ---------------------------------------------------------------------------------------
# 10. (--compose) a 5-service project from local images: up -d from nothing, a no-change
#     up -d, and down, with services that exit on SIGTERM. Peer: docker-compose (1.29,
#     Debian's) against the private dockerd.
compose_scenarios() {
    local d=$TMP/compose/benchp
    mkdir -p "$d"
    {
        echo "services:"
        for s in web api db cache queue; do
            printf '  %s:\n    image: busybox:bench\n    command: ["sh", "-c", "trap \x27exit 0\x27 TERM; sleep 100000 & wait"]\n' "$s"
        done
    } >"$d/compose.yaml"
    local up=() again=() down=()
    local berth_c="cd $(printf '%q' "$d") && $BERTH_S compose"
    up+=(--prepare "sync; $berth_c down >/dev/null 2>&1" -n berth "$berth_c up -d")
    again+=(--prepare "$berth_c up -d >/dev/null 2>&1" -n berth "$berth_c up -d")
    down+=(--prepare "$berth_c up -d >/dev/null 2>&1" -n berth "$berth_c down")
    if ((HAVE_DOCKER)) && command -v docker-compose >/dev/null; then
        local host=${DOCKER[*]: -1}
        local dc="cd $(printf '%q' "$d") && DOCKER_HOST=$(printf '%q' "$host") docker-compose -f compose.yaml"
        if eval "$dc up -d" >/dev/null 2>"$TMP/dc.err" && eval "$dc down" >/dev/null 2>&1; then
            up+=(--prepare "sync; $dc down >/dev/null 2>&1" -n docker-compose "$dc up -d")
            again+=(--prepare "$dc up -d >/dev/null 2>&1" -n docker-compose "$dc up -d")
            down+=(--prepare "$dc up -d >/dev/null 2>&1" -n docker-compose "$dc down")
        else
            skip_peer "docker-compose: cannot bring the project up: $(tail -n 2 "$TMP/dc.err")"
        fi
    else
        skip_peer "docker-compose: not installed or no docker; compose scenarios for berth only"
    fi
    local runs=$((RUNS < 15 ? RUNS : 15))
    log "scenario compose-up"
    hyperfine -S bash --runs "$runs" --export-json "$OUT/compose-up.json" "${up[@]}" >&2 || warn "hyperfine failed for compose-up"
    log "scenario compose-nochange"
    hyperfine -S bash --runs "$runs" --export-json "$OUT/compose-nochange.json" "${again[@]}" >&2 || warn "hyperfine failed for compose-nochange"
    log "scenario compose-down"
    hyperfine -S bash --runs "$runs" --export-json "$OUT/compose-down.json" "${down[@]}" >&2 || warn "hyperfine failed for compose-down"
    eval "$berth_c down" >/dev/null 2>&1
    if [[ ${#up[@]} -gt 3 ]]; then
        eval "cd $(printf '%q' "$d") && DOCKER_HOST=$(printf '%q' "${DOCKER[*]: -1}") docker-compose -f compose.yaml down" >/dev/null 2>&1
    fi
}
((COMPOSE)) && compose_scenarios

# ---------------------------------------------------------------------------------------
# 10. (--api) the docker CLI through `berth serve` against the same CLI through dockerd:
#     run --rm, exec, ps -a with NCONT containers, the service's idle RSS, and a load of 200
#     concurrent API clients (bench/api-load.py) for API_LOAD_SECS.
declare -gA APIF=()
API_PID=""
api_scenarios() {
    local sock=$TMP/berth-api.sock cli
    cli=${DOCKER_CLI:-$(command -v docker || true)}
    [[ -n $cli ]] || { warn "api: no docker CLI; skipped"; return 0; }
    setsid "$BERTH_BIN" --root "$BROOT" --run-root "$BRUN" serve -H "unix://$sock" </dev/null >"$TMP/serve.log" 2>&1 &
    API_PID=$!
    for _ in $(seq 50); do [[ -S $sock ]] && break; sleep 0.1; done
    [[ -S $sock ]] || { warn "api: berth serve did not come up: $(tail -n 2 "$TMP/serve.log")"; return 0; }
    local bapi
    bapi="$(printf '%q' "$cli") --config $(printf '%q' "$TMP/apicfg") -H unix://$(printf '%q' "$sock")"
    sleep 1
    APIF[rss_idle]=$(rss_kib "$API_PID")
    if ((HAVE_DOCKER)); then
        local dpids
        dpids=$(pgrep -f "dockerd.*$TMP|containerd.*$TMP" | xargs)
        APIF[docker_rss]=$(for p in $dpids; do rss_kib "$p"; done | awk '{ s += $1 } END { print s + 0 }')
    fi
    local args=(-n berth-serve "$bapi run --rm --network none busybox:bench true")
    ((HAVE_DOCKER)) && args+=(-n dockerd "$DOCKER_S run --rm --network none busybox:bench true")
    log "scenario api-run: docker run --rm through berth serve and through dockerd"
    sync
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/api-run.json" "${args[@]}" >&2 \
        || warn "hyperfine failed for api-run"
    # exec through the API: the container's monitor starts the process (berth), a shim
    # and runc (dockerd). The exec containers of scenario 2, made here with --api-only.
    berth inspect bench-exec >/dev/null 2>&1 \
        || berth run -d --network none --name bench-exec busybox:bench sleep 100000 >/dev/null
    args=(-n berth-serve "$bapi exec bench-exec true")
    if ((HAVE_DOCKER)); then
        "${DOCKER[@]}" inspect bench-exec >/dev/null 2>&1 \
            || "${DOCKER[@]}" run -d --network none --name bench-exec busybox:bench sleep 100000 >/dev/null
        args+=(-n dockerd "$DOCKER_S exec bench-exec true")
    fi
    log "scenario api-exec: docker exec through berth serve and through dockerd"
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/api-exec.json" "${args[@]}" >&2 \
        || warn "hyperfine failed for api-exec"
    local have
    have=$(berth ps -aq | wc -l)
    log "berth: creating $((NCONT - have)) containers for api-ps"
    for ((i = have; i < NCONT; i++)); do
        berth create --network none busybox:bench true >/dev/null || { warn "api: create failed at $i"; break; }
    done
    args=(-n berth-serve "$bapi ps -a")
    ((HAVE_DOCKER)) && args+=(-n dockerd "$DOCKER_S ps -a")
    log "scenario api-ps: docker ps -a through berth serve ($NCONT containers) and through dockerd ($("${DOCKER[@]}" ps -aq 2>/dev/null | wc -l) containers)"
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/api-ps.json" "${args[@]}" >&2 \
        || warn "hyperfine failed for api-ps"
    if command -v python3 >/dev/null; then
        log "api load: 200 clients for ${API_LOAD_SECS}s"
        if python3 "$REPO/bench/api-load.py" --socket "$sock" --pid "$API_PID" --image busybox:bench \
            --clients 200 --seconds "$API_LOAD_SECS" >"$OUT/api-load.json" 2>"$TMP/api-load.err"; then
            APIF[load]=$(cat "$OUT/api-load.json")
        else
            warn "api load failed: $(tail -n 3 "$TMP/api-load.err")"
        fi
    fi
    APIF[rss_after]=$(rss_kib "$API_PID")
    kill "$API_PID" 2>/dev/null; wait "$API_PID" 2>/dev/null || true
    API_PID=""
}
((API)) && api_scenarios

# ---------------------------------------------------------------------------------------
# Report
# jget FILE NAME FIELD -> the field (seconds) in ms, or empty
jget() {
    [[ -f $1 ]] || return 0
    if [[ $JSONTOOL == python3 ]]; then
        python3 - "$@" <<'EOF'
import json, sys
f, name, field = sys.argv[1:4]
for r in json.load(open(f))["results"]:
    if r["command"] == name:
        print("%.2f" % (r[field] * 1000))
EOF
    else
        jq -r --arg n "$2" --arg f "$3" '.results[] | select(.command == $n) | .[$f] * 1000 | . * 100 | round / 100' "$1"
    fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.1fx", a / b; else print "-" }'; }

echo
echo "berth benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r), $RUNS runs each"
echo "berth: $BERTH_BIN ($("$BERTH_BIN" --version 2>/dev/null || echo '?'))"
((HAVE_DOCKER)) && echo "docker: $("${DOCKER[@]}" version -f '{{.Server.Version}}' 2>/dev/null) (private dockerd, ${BENCH_DOCKER_STORAGE:-vfs})"
((HAVE_PODMAN == 1)) && echo "podman: $(podman --version | awk '{print $3}') (${BENCH_PODMAN_STORAGE:-vfs}, cgroupfs${PODMAN_NOTE:+, $PODMAN_NOTE})"
((${#PEER_NOTES[@]})) && printf '%s\n' "${PEER_NOTES[@]}"
echo "load average before the run: $LOAD0"
declare -A MED=()
# scenario_table NAME TITLE: a hyperfine scenario's medians, means and deviations per
# engine, and each peer's ratio to berth; the medians go to MED[NAME,ENGINE].
scenario_table() {
    local s=$1 b e m r
    echo
    echo "[$s] $2"
    printf '  %-8s %12s %12s %12s %10s\n' engine "median ms" "mean ms" "stddev ms" "vs berth"
    b=$(jget "$OUT/$s.json" berth median)
    for e in "${ENGINES[@]}"; do
        m=$(jget "$OUT/$s.json" "$e" median)
        MED[$s,$e]=$m
        [[ -n $m ]] || { printf '  %-8s %12s\n' "$e" "n/a"; continue; }
        r="1.0x"
        [[ $e == berth ]] || r=$(ratio "$m" "$b")
        printf '  %-8s %12s %12s %12s %10s\n' "$e" "$m" "$(jget "$OUT/$s.json" "$e" mean)" \
            "$(jget "$OUT/$s.json" "$e" stddev)" "$r"
    done
}
if ((CORE)); then
for s in run exec ps stats; do
    case $s in
        stats) title="stats --no-stream ($NSTATS running containers)" ;;
        run) title="run --rm --network none busybox:bench true" ;;
        exec) title="exec bench-exec true" ;;
        ps) title="ps -a ($NCONT containers, $NRUNNING running)" ;;
    esac
    scenario_table "$s" "$title"
done
echo
echo "[rss] resident memory of the per-container process (KiB)"
for e in "${ENGINES[@]}"; do
    if [[ -n ${RSS[$e]:-} ]]; then
        r="1.0x"
        [[ $e == berth ]] || r=$(ratio "${RSS[$e]}" "${RSS[berth]:-}")
        printf '  %-8s %8s KiB %8s   (%s)\n' "$e" "${RSS[$e]}" "$r" "${RSSPROC[$e]}"
    else
        printf '  %-8s %8s\n' "$e" "n/a"
    fi
done
[[ -n $EXEC_MON_RSS ]] && echo "  (berth-monitor of bench-exec after all the exec runs: $EXEC_MON_RSS)"
((HAVE_DOCKER)) && echo "  (docker also keeps dockerd + containerd resident; not counted)"
echo
echo "[health] health check (sh -c true) every second; host busy with none: ${HBASE}% of $(nproc) cores"
echo "  berth, one container: monitor (with its probes and launcher) ${HMON_CPU:-n/a}% of a core, RSS ${HMON_RSS:-n/a} KiB"
echo "  floor: busybox sh -c true spawned bare ${NHEALTH} times a second: host busy ${HFLOOR:-n/a}%"
printf '  %-8s %10s %14s %22s\n' engine containers "host busy %" "per 100 probes/s, %"
for e in "${ENGINES[@]}"; do
    [[ -n ${HBUSY[$e]:-} ]] || { printf '  %-8s %10s\n' "$e" "n/a"; continue; }
    printf '  %-8s %10s %14s %22s\n' "$e" "${HN[$e]}" "${HBUSY[$e]}" \
        "$(awk -v b="${HBUSY[$e]}" -v z="$HBASE" -v n="${HN[$e]}" 'BEGIN { printf "%.2f", (b - z) * 100 / n }')"
done
fi

if ((REGISTRY)); then
    echo
    echo "[registry] Debian minbase image ($(awk -v b="${REG[size]:-0}" 'BEGIN { printf "%.0f MB", b / 1e6 }') unpacked), registry on loopback"
    for s in push pull; do
        printf '  %-5s' "$s"
        for e in berth docker; do
            m=$(jget "$OUT/$s.json" "$e" median)
            MED[$s,$e]=$m
            printf '  %s %s ms' "$e" "${m:-n/a}"
        done
        echo "   (docker/berth $(ratio "${MED[$s,docker]:-}" "${MED[$s,berth]:-}"))"
    done
    echo "  manifest GETs/s: berth registry ${REG[rps,berth]:-n/a}, docker-registry ${REG[rps,docker-registry]:-n/a} ($(ratio "${REG[rps,berth]:-}" "${REG[rps,docker-registry]:-}"))"
fi

if ((BUILD)); then
    echo
    echo "[build] RUN + COPY of ${BUILD_FILES:-?} small files on debian:bench"
    for s in build-cold build-cached; do
        printf '  %-13s' "$s"
        for e in berth docker-legacy docker-buildkit; do
            m=$(jget "$OUT/$s.json" "$e" median)
            MED[$s,$e]=$m
            printf '  %s %s ms' "$e" "${m:-n/a}"
        done
        echo "   (legacy/berth $(ratio "${MED[$s,docker-legacy]:-}" "${MED[$s,berth]:-}"), buildkit/berth $(ratio "${MED[$s,docker-buildkit]:-}" "${MED[$s,berth]:-}"))"
    done
fi

if ((NETWORK)); then
    scenario_table run-bridge "run --rm --network bridge busybox:bench true"
    echo
    echo "[tcp] iperf3 from the host to 127.0.0.1: direct, and through a container's published port (median of 3)"
    for k in direct berth docker; do
        [[ -n ${TPUT[$k]:-} ]] || continue
        printf '  %-8s %8.2f Gbit/s' "$k" "$(awk -v b="${TPUT[$k]}" 'BEGIN { print b / 1e9 }')"
        [[ $k == direct ]] || printf '   (%s%% of direct)' "$(awk -v a="${TPUT[$k]}" -v b="${TPUT[direct]:-0}" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "-" }')"
        echo
    done
    ((HAVE_DOCKER)) && echo "  (docker here: no iptables, so its userland proxy carries the port)"
fi

if ((COMPOSE)); then
    echo
    echo "[compose] a 5-service project from local images (ms, median)"
    for sc in compose-up compose-nochange compose-down; do
        b=$(jget "$OUT/$sc.json" berth median)
        dc=$(jget "$OUT/$sc.json" docker-compose median)
        MED[$sc,berth]=$b
        printf '  %-18s berth %10s   docker-compose %10s   (%s)\n' "$sc" "${b:-n/a}" "${dc:-n/a}" "$(ratio "$dc" "$b")"
    done
fi

if ((API)); then
    echo
    echo "[api] the docker CLI through berth serve vs through dockerd (ms, median)"
    for sc in api-run api-exec api-ps; do
        b=$(jget "$OUT/$sc.json" berth-serve median)
        d=$(jget "$OUT/$sc.json" dockerd median)
        MED[$sc,berth]=$b MED[$sc,docker]=$d
        printf '  %-8s berth serve %10s   dockerd %10s   (%s)\n' "$sc" "${b:-n/a}" "${d:-n/a}" "$(ratio "$d" "$b")"
    done
    echo "  berth serve RSS: idle ${APIF[rss_idle]:-n/a} KiB, after the load ${APIF[rss_after]:-n/a} KiB; dockerd + containerd idle: ${APIF[docker_rss]:-n/a} KiB"
    [[ -n ${APIF[load]:-} ]] && echo "  load: ${APIF[load]}"
fi

# Targets
PASSN=0 FAILN=0 SKIPN=0
verdict() { # DESCRIPTION VALUE OP LIMIT [WHEN-MISSING: FAIL (berth failed) or SKIP]
    local desc=$1 val=$2 op=$3 lim=$4 missing=${5:-FAIL} ok
    if [[ -z $val ]]; then
        printf '  %-58s %14s  %s\n' "$desc" "n/a" "$missing"
        if [[ $missing == SKIP ]]; then SKIPN=$((SKIPN + 1)); else FAILN=$((FAILN + 1)); fi
        return
    fi
    ok=$(awk -v v="$val" -v l="$lim" -v op="$op" 'BEGIN { print (op == "<=" ? v <= l : v >= l) ? 1 : 0 }')
    if ((ok)); then
        printf '  %-58s %14s  PASS\n' "$desc" "$val"; PASSN=$((PASSN + 1))
    else
        printf '  %-58s %14s  FAIL\n' "$desc" "$val"; FAILN=$((FAILN + 1))
    fi
}
echo
echo "Targets (2-core machine):"
if ((CORE)); then
verdict "berth run --rm --network none IMG true: median <= ${T_RUN_MS} ms" "${MED[run,berth]:-}" "<=" "$T_RUN_MS"
run_ratio=""
if [[ -n ${MED[run,berth]:-} && -n ${MED[run,docker]:-} ]]; then
    run_ratio=$(awk -v a="${MED[run,docker]}" -v b="${MED[run,berth]}" 'BEGIN { printf "%.1f", a / b }')
fi
verdict "berth run >= ${T_RUN_RATIO}x faster than docker run (docker/berth)" "$run_ratio" ">=" "$T_RUN_RATIO" \
    "$([[ -z ${MED[run,berth]:-} ]] && echo FAIL || echo SKIP)"
verdict "berth exec CTR true: median <= ${T_EXEC_MS} ms" "${MED[exec,berth]:-}" "<=" "$T_EXEC_MS"
verdict "berth-monitor RSS <= ${T_RSS_KIB} KiB" "${RSS[berth]:-}" "<=" "$T_RSS_KIB"
verdict "berth ps -a with $NCONT containers: median <= ${T_PS_MS} ms" "${MED[ps,berth]:-}" "<=" "$T_PS_MS"
verdict "berth stats --no-stream, $NSTATS containers: median <= ${T_STATS_MS} ms" "${MED[stats,berth]:-}" "<=" "$T_STATS_MS"
verdict "berth-monitor with a 1 s health check: RSS <= ${T_RSS_KIB} KiB" "$HMON_RSS" "<=" "$T_RSS_KIB"
verdict "the same: CPU <= ${T_HEALTH_MON_CPU}% of a core" "$HMON_CPU" "<=" "$T_HEALTH_MON_CPU"
verdict "$NHEALTH berth containers, 1 s health checks: host busy <= ${T_HEALTH_HOST_CPU}%" "${HBUSY[berth]:-}" "<=" "$T_HEALTH_HOST_CPU"
fi
if ((REGISTRY)); then
    rr() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.1f", a / b }'; }
    verdict "berth push >= ${T_PUSH_RATIO}x faster than docker push" "$(rr "${MED[push,docker]:-}" "${MED[push,berth]:-}")" ">=" "$T_PUSH_RATIO" SKIP
    verdict "berth pull >= ${T_PULL_RATIO}x faster than docker pull" "$(rr "${MED[pull,docker]:-}" "${MED[pull,berth]:-}")" ">=" "$T_PULL_RATIO" SKIP
    verdict "berth registry manifest GETs/s >= ${T_RPS_RATIO}x docker-registry's" "$(rr "${REG[rps,berth]:-}" "${REG[rps,docker-registry]:-}")" ">=" "$T_RPS_RATIO" SKIP
fi
if ((BUILD)); then
    rb() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f", a / b }'; }
    for e in legacy buildkit; do
        verdict "uncached build no slower than docker ($e): docker/berth" "$(rb "${MED[build-cold,docker-$e]:-}" "${MED[build-cold,berth]:-}")" ">=" "$T_BUILD_COLD_RATIO" SKIP
        verdict "cached rebuild <= 1/${T_BUILD_CACHED_RATIO} of docker's ($e): docker/berth" "$(rb "${MED[build-cached,docker-$e]:-}" "${MED[build-cached,berth]:-}")" ">=" "$T_BUILD_CACHED_RATIO" SKIP
    done
fi
if ((NETWORK)); then
    verdict "berth run --rm on the bridge: median <= ${T_BRIDGE_RUN_MS} ms" "${MED[run-bridge,berth]:-}" "<=" "$T_BRIDGE_RUN_MS"
    bridge_ratio=""
    if [[ -n ${MED[run-bridge,berth]:-} && -n ${MED[run-bridge,docker]:-} ]]; then
        bridge_ratio=$(awk -v a="${MED[run-bridge,docker]}" -v b="${MED[run-bridge,berth]}" 'BEGIN { printf "%.1f", a / b }')
    fi
    verdict "berth run on the bridge >= ${T_BRIDGE_RUN_RATIO}x faster than docker's" "$bridge_ratio" ">=" "$T_BRIDGE_RUN_RATIO" SKIP
    share=""
    if [[ -n ${TPUT[berth]:-} && -n ${TPUT[direct]:-} ]]; then
        share=$(awk -v a="${TPUT[berth]}" -v b="${TPUT[direct]}" 'BEGIN { printf "%.0f", 100 * a / b }')
    fi
    verdict "TCP through a published port >= ${T_PUBLISHED_TCP_SHARE}% of direct loopback" "$share" ">=" "$T_PUBLISHED_TCP_SHARE"
fi
if ((COMPOSE)); then
    verdict "berth compose up -d, 5 services: median <= ${T_COMPOSE_UP_MS} ms" "${MED[compose-up,berth]:-}" "<=" "$T_COMPOSE_UP_MS"
    verdict "berth compose up -d with no change: median <= ${T_COMPOSE_NOCHANGE_MS} ms" "${MED[compose-nochange,berth]:-}" "<=" "$T_COMPOSE_NOCHANGE_MS"
    verdict "berth compose down: median <= ${T_COMPOSE_DOWN_MS} ms" "${MED[compose-down,berth]:-}" "<=" "$T_COMPOSE_DOWN_MS"
fi
if ((API)); then
    api_ratio=""
    if [[ -n ${MED[api-run,berth]:-} && -n ${MED[api-run,docker]:-} ]]; then
        api_ratio=$(awk -v a="${MED[api-run,docker]}" -v b="${MED[api-run,berth]}" 'BEGIN { printf "%.1f", a / b }')
    fi
    verdict "docker run through berth serve <= 1/${T_API_RUN_RATIO} of dockerd's" "$api_ratio" ">=" "$T_API_RUN_RATIO" SKIP
    verdict "docker ps -a, $NCONT containers, through berth serve <= ${T_API_PS_MS} ms" "${MED[api-ps,berth]:-}" "<=" "$T_API_PS_MS"
    verdict "berth serve idle RSS <= ${T_API_IDLE_RSS_KIB} KiB" "${APIF[rss_idle]:-}" "<=" "$T_API_IDLE_RSS_KIB"
fi
echo "  targets: $PASSN PASS, $FAILN FAIL, $SKIPN SKIP"
if ((${#PROBLEMS[@]})); then
    echo
    echo "Problems seen during the run:"
    printf '  - %s\n' "${PROBLEMS[@]}"
fi
echo
echo "hyperfine JSON: $OUT/{run,exec,ps,stats}.json"
exit 0
