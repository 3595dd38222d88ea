#!/bin/sh
# bench/containerd-private.sh DIR: runs containerd with DIR/config.toml (made from
# bench/containerd-cri.toml) in the mount namespace it is started in, which must be its
# own (unshare --mount --propagation private). containerd 1.6 puts its shims' sockets in
# /run/containerd/s whatever its state dir, and libcni caches results in /var/lib/cni:
# /run and /var/lib become overlays whose writes land in DIR/ns, so the host's are never
# touched. containerd is exec'd: its PID is this script's.
set -eu
d=$1
mkdir -p "$d/ns/run/upper" "$d/ns/run/work" "$d/ns/lib/upper" "$d/ns/lib/work"
mount -t overlay berth-cd-run -o "lowerdir=/run,upperdir=$d/ns/run/upper,workdir=$d/ns/run/work" /run
mount -t overlay berth-cd-lib -o "lowerdir=/var/lib,upperdir=$d/ns/lib/upper,workdir=$d/ns/lib/work" /var/lib
exec containerd --config "$d/config.toml"
