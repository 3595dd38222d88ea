//! The OCI runtime spec (`config.json`) of a container, with Docker's defaults:
//! namespaces, mounts, capabilities, masked and read-only paths, devices, seccomp and
//! resource limits.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    BoxBuilder, Capabilities, Capability, Linux, LinuxCapabilities, LinuxCpu, LinuxDevice,
    LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids,
    LinuxResources, LinuxSeccomp, Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process,
    Root, Spec, User as OciUser,
};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::model::{ContainerRecord, ResolvedMount};

pub use berth_runtime::caps::DEFAULT_CAPS;

pub use berth_runtime::caps::ALL_CAPS;

pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Normalises a capability name (`net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN`).
pub fn cap_name(s: &str) -> String {
    let u = s.trim().to_uppercase();
    if u.starts_with("CAP_") {
        u
    } else {
        format!("CAP_{u}")
    }
}

/// The capabilities this host lets us hand out: our own bounding set (a host or an outer
/// sandbox may withhold some, e.g. CAP_SYS_RESOURCE).
pub fn host_capabilities() -> Vec<String> {
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1u64 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The capability set after `--cap-add`/`--cap-drop` (Docker's order: drop, then add).
/// `--privileged` and `ALL` mean every capability the host has.
pub fn capabilities(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>> {
    if privileged {
        return Ok(host_capabilities());
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let check = |c: &str| -> Result<String> {
        let n = cap_name(c);
        if n == "CAP_ALL" || ALL_CAPS.contains(&n.as_str()) {
            Ok(n)
        } else {
            Err(EngineError::Invalid(format!("unknown capability: {c:?}")))
        }
    };
    for d in drop {
        let n = check(d)?;
        if n == "CAP_ALL" {
            caps.clear();
        } else {
            caps.retain(|c| *c != n);
        }
    }
    for a in add {
        let n = check(a)?;
        if n == "CAP_ALL" {
            caps = host_capabilities();
        } else if !caps.contains(&n) {
            if !host_capabilities().contains(&n) {
                return Err(EngineError::Invalid(format!(
                    "capability {n} is not available on this host"
                )));
            }
            caps.push(n);
        }
    }
    Ok(caps)
}

/// A user inside the container, resolved to numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Reads a file of the container's root file system from its layer dirs (top first)
/// without mounting: whiteouts hide lower files, and a symlink anywhere on the path makes
/// the file unreadable this way (never followed out of the layers).
pub fn read_in_layers(dirs: &[PathBuf], rel: &str) -> Option<Vec<u8>> {
    let rel = rel.trim_start_matches('/');
    'dirs: for d in dirs {
        let mut p = d.clone();
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue 'dirs;
            };
            if m.file_type().is_char_device() && m.rdev() == 0 {
                return None; // whiteout
            }
            if m.file_type().is_symlink() {
                return None;
            }
            if i + 1 == comps.len() {
                return if m.is_file() {
                    std::fs::read(&p).ok()
                } else {
                    None
                };
            }
        }
    }
    None
}

/// Adds `--group-add` groups (ids, or names from the image's /etc/group) to `user`.
pub fn add_groups(user: &mut User, groups: &[String], layer_dirs: &[PathBuf]) -> Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    let group = read_in_layers(layer_dirs, "etc/group")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    for g in groups {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    Ok(())
}

/// Resolves `-u user[:group]` against the image's /etc/passwd and /etc/group (an empty
/// spec is root). As Docker (since 20.10.18) and containerd do, the supplementary groups
/// are the primary group, then, unless a group was named, every group that lists the user
/// as a member: a process never keeps groups it was not given.
pub fn resolve_user(spec: &str, layer_dirs: &[PathBuf]) -> Result<User> {
    let read = |file: &str| {
        read_in_layers(layer_dirs, file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let passwd = read("etc/passwd");
    let group = read("etc/group");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let mut user = User {
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        // Root's home when the image has no passwd entry for it, as Docker's.
        home: if spec.is_empty() { "/root" } else { "/" }.into(),
    };
    let entries = |text: &str, min: usize| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() >= min)
            .collect()
    };
    let passwd = entries(&passwd, 7);
    let group = entries(&group, 3);
    match (
        u.parse::<u32>(),
        passwd.iter().find(|f| f[0] == u || f[2] == u),
    ) {
        (_, Some(f)) => {
            user.uid = f[2].parse().unwrap_or(0);
            user.gid = f[3].parse().unwrap_or(0);
            user.home = f[5].clone();
        }
        (Ok(n), None) => user.uid = n,
        (Err(_), None) => {
            return Err(EngineError::Invalid(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    }
    if let Some(g) = g {
        match (
            g.parse::<u32>(),
            group.iter().find(|f| f[0] == g || f[2] == g),
        ) {
            (_, Some(f)) => user.gid = f[2].parse().unwrap_or(0),
            (Ok(n), None) => user.gid = n,
            (Err(_), None) => {
                return Err(EngineError::Invalid(format!(
                    "unable to find group {g}: no matching entries in group file"
                )))
            }
        }
    }
    user.additional_gids.push(user.gid);
    let name = passwd
        .iter()
        .find(|f| f[2].parse::<u32>().ok() == Some(user.uid))
        .map(|f| f[0].as_str());
    if let (None, Some(name)) = (g, name) {
        for f in group.iter().filter(|f| f.len() >= 4) {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(gid) = f[2].parse::<u32>() {
                    if !user.additional_gids.contains(&gid) {
                        user.additional_gids.push(gid);
                    }
                }
            }
        }
    }
    Ok(user)
}

/// The process arguments from image and container config, by Docker's rules.
pub fn process_args(entrypoint: Option<&Vec<String>>, cmd: Option<&Vec<String>>) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(e) = entrypoint {
        args.extend(e.iter().cloned());
    }
    if let Some(c) = cmd {
        args.extend(c.iter().cloned());
    }
    args
}

/// Merges environment lists: later entries override earlier ones by key.
pub fn merge_env(lists: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lists {
        for e in l.iter() {
            let key = e.split('=').next().unwrap_or(e);
            if let Some(pos) = out.iter().position(|x| x.split('=').next() == Some(key)) {
                out[pos] = e.clone();
            } else {
                out.push(e.clone());
            }
        }
    }
    out
}

/// Parses a byte size (`512m`, `1g`, `100k`, `1024`), as Docker's flags take them.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let t = s.trim().to_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.parse().ok()?;
    if v < 0.0 || !v.is_finite() {
        return None;
    }
    Some((v * mult as f64) as i64)
}

/// Everything needed to write a container's config.json.
pub struct SpecInput<'a> {
    pub rec: &'a ContainerRecord,
    pub rootfs: &'a Path,
    pub container_dir: &'a Path,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub mounts: &'a [ResolvedMount],
    pub init_binary: Option<PathBuf>,
    pub seccomp: Option<Value>,
    pub no_new_privileges: bool,
    /// cgroup v1 hierarchies to bind-mount from the container's own cgroup dirs instead of
    /// asking the runtime for a `cgroup` mount (the built-in runtime's v1 emulation of that
    /// mount reads the host's mount and cgroup tables and costs ~5 ms a start). None: let
    /// the runtime mount cgroupfs.
    pub cgroup_v1_binds: Option<CgroupV1View>,
    /// The network namespace to join (a container on a network), else a new one.
    pub netns: Option<PathBuf>,
}

/// How a cgroup v1 host's hierarchies appear at /sys/fs/cgroup in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupV1View {
    /// The hierarchies (`cpu,cpuacct`, `memory`…), each bound from the container's own
    /// cgroup dir.
    pub hierarchies: Vec<String>,
    /// A directory holding one empty dir per hierarchy (`sys::cgroup_v1_skeleton`), bound
    /// read-only at /sys/fs/cgroup for the binds to land in. A tmpfs made read-only after
    /// the binds would need a recursive bind of itself, which doubles every mount below
    /// it. None: a tmpfs left writable (privileged containers).
    pub skeleton: Option<PathBuf>,
}

fn mount(dest: &str, kind: &str, source: impl Into<PathBuf>, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.into())
        .set_typ(Some(kind.into()))
        .set_source(Some(source.into()))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType::*;
    Some(match name {
        "core" => RlimitCore,
        "cpu" => RlimitCpu,
        "data" => RlimitData,
        "fsize" => RlimitFsize,
        "locks" => RlimitLocks,
        "memlock" => RlimitMemlock,
        "msgqueue" => RlimitMsgqueue,
        "nice" => RlimitNice,
        "nofile" => RlimitNofile,
        "nproc" => RlimitNproc,
        "rss" => RlimitRss,
        "rtprio" => RlimitRtprio,
        "rttime" => RlimitRttime,
        "sigpending" => RlimitSigpending,
        "stack" => RlimitStack,
        "as" => RlimitAs,
        _ => return None,
    })
}

/// Validates a `--ulimit` name.
pub fn valid_ulimit(name: &str) -> bool {
    rlimit_type(name).is_some()
}

fn rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .expect("every field is set")
}

/// The character and block devices under `dev` (not the container-private `pts`, `shm`,
/// `mqueue`, nor the standard nodes every container gets), as OCI `linux.devices`.
pub fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    const SKIP_DIRS: &[&str] = &["pts", "shm", "mqueue", "fd"];
    const STANDARD: &[&str] = &[
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
    ];
    let mut out = Vec::new();
    let mut stack = vec![dev.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = m.file_type();
            if ft.is_dir() {
                if dir != dev || !SKIP_DIRS.contains(&name.as_str()) {
                    stack.push(e.path());
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if dir == dev && STANDARD.contains(&name.as_str()) {
                continue;
            }
            let rdev = m.rdev();
            let mut d = LinuxDevice::default();
            d.set_path(e.path())
                .set_typ(kind)
                .set_major(libc::major(rdev) as i64)
                .set_minor(libc::minor(rdev) as i64)
                .set_file_mode(Some(m.mode() & 0o7777))
                .set_uid(Some(m.uid()))
                .set_gid(Some(m.gid()));
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// A device cgroup rule.
fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.into()));
    d
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ).set_path(path);
    n
}

/// A capability name as berth writes it (`CAP_NET_ADMIN`) as oci-spec's.
fn capability(name: &str) -> Result<Capability> {
    name.trim_start_matches("CAP_")
        .parse()
        .map_err(|_| EngineError::Invalid(format!("unknown capability: {name:?}")))
}

/// The container's resource limits (devices allowed, memory, CPU, pids).
fn resources(hc: &crate::model::HostConfig) -> LinuxResources {
    use LinuxDeviceType::{B, C};
    let mut r = LinuxResources::default();
    r.set_devices(Some(if hc.privileged {
        vec![device_rule(true, None, None, None, "rwm")]
    } else {
        let mut rules = vec![
            device_rule(false, None, None, None, "rwm"),
            device_rule(true, Some(C), None, None, "m"),
            device_rule(true, Some(B), None, None, "m"),
        ];
        for (major, minor) in [
            (1, Some(3)),
            (1, Some(5)),
            (1, Some(7)),
            (1, Some(8)),
            (1, Some(9)),
            (5, Some(0)),
            (5, Some(1)),
            (5, Some(2)),
            (136, None),
            (10, Some(200)),
        ] {
            rules.push(device_rule(true, Some(C), Some(major), minor, "rwm"));
        }
        rules
    }));
    if hc.memory > 0 || hc.memory_reservation > 0 {
        let mut m = LinuxMemory::default();
        if hc.memory > 0 {
            m.set_limit(Some(hc.memory)).set_swap(match hc.memory_swap {
                0 => Some(hc.memory * 2),
                -1 => None,
                s => Some(s),
            });
        }
        if hc.memory_reservation > 0 {
            m.set_reservation(Some(hc.memory_reservation));
        }
        r.set_memory(Some(m));
    }
    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if hc.nano_cpus > 0 {
        let period: u64 = 100_000;
        cpu.set_period(Some(period))
            .set_quota(Some((hc.nano_cpus as u64 * period / 1_000_000_000) as i64));
        any_cpu = true;
    }
    if hc.cpu_shares > 0 {
        cpu.set_shares(Some(hc.cpu_shares as u64));
        any_cpu = true;
    }
    if hc.cpu_quota > 0 || hc.cpu_period > 0 {
        if hc.cpu_quota > 0 {
            cpu.set_quota(Some(hc.cpu_quota));
        }
        cpu.set_period(Some(if hc.cpu_period > 0 {
            hc.cpu_period as u64
        } else {
            100_000
        }));
        any_cpu = true;
    }
    if !hc.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(hc.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !hc.cpuset_mems.is_empty() {
        cpu.set_mems(Some(hc.cpuset_mems.clone()));
        any_cpu = true;
    }
    if any_cpu {
        r.set_cpu(Some(cpu));
    }
    if let Some(p) = hc.pids_limit.filter(|p| *p != 0) {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        r.set_pids(Some(pids));
    }
    r
}

/// The root's propagation a container's bind mounts need: a shared one (mounts made
/// inside reach the host) needs the root shared too, or the runtime's default (a slave
/// root, in libcontainer and runc alike) leaves the bind with no peer on the host, as
/// containerd sets it. `shared` is the spelling both runtimes take (libcontainer knows
/// no `rshared`, and makes it recursive anyway).
fn rootfs_propagation(mounts: &[ResolvedMount]) -> Option<String> {
    mounts
        .iter()
        .any(|m| matches!(m.propagation.as_str(), "rshared" | "shared"))
        .then(|| "shared".into())
}

/// Builds config.json, with oci-spec's runtime types. Every field is set from what the
/// container asks for: oci-spec's `Default`s are youki's example config (a `sh`
/// process, no-new-privileges, default masked paths), never berth's.
pub fn build(input: &SpecInput) -> Result<Spec> {
    let rec = input.rec;
    let hc = &rec.host_config;
    let privileged = hc.privileged;
    let caps = capabilities(&hc.cap_add, &hc.cap_drop, privileged)?;
    let host_net = hc.network_mode == "host";

    let mut args = input.args.clone();
    let rw = if privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        if host_net {
            mount(
                "/sys",
                "bind",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", rw],
            )
        } else {
            mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", rw])
        },
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    match &input.cgroup_v1_binds {
        None => mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", rw],
        )),
        Some(view) => {
            // The view a cgroup namespace gives: each hierarchy rooted at the container's
            // own cgroup, on a read-only skeleton (or a tmpfs).
            mounts.push(match &view.skeleton {
                Some(dir) => mount(
                    "/sys/fs/cgroup",
                    "bind",
                    dir,
                    &["bind", "ro", "nosuid", "noexec", "nodev", "rprivate"],
                ),
                None => mount(
                    "/sys/fs/cgroup",
                    "tmpfs",
                    "tmpfs",
                    &["nosuid", "noexec", "nodev", "mode=755", "size=64k"],
                ),
            });
            for h in &view.hierarchies {
                mounts.push(mount(
                    &format!("/sys/fs/cgroup/{h}"),
                    "bind",
                    format!("/sys/fs/cgroup/{h}{}", rec.cgroup()),
                    &["rbind", "nosuid", "noexec", "nodev", rw, "rprivate"],
                ));
            }
        }
    }
    let shm = if hc.shm_size > 0 {
        hc.shm_size
    } else {
        64 << 20
    };
    mounts.push(mount(
        "/dev/shm",
        "tmpfs",
        "shm",
        &[
            "nosuid",
            "noexec",
            "nodev",
            "mode=1777",
            &format!("size={shm}"),
        ],
    ));
    for f in ["resolv.conf", "hostname", "hosts"] {
        let src = input.container_dir.join(f);
        if src.exists() {
            let dest = format!("/etc/{f}");
            if !input.mounts.iter().any(|m| m.destination == dest) {
                mounts.push(mount(&dest, "bind", src, &["rbind", "rprivate"]));
            }
        }
    }
    for m in input.mounts {
        let mut opts: Vec<&str>;
        match m.kind.as_str() {
            "tmpfs" => {
                opts = vec!["nosuid", "nodev", "noexec"];
                opts.extend(m.tmpfs_options.iter().map(String::as_str));
                mounts.push(mount(&m.destination, "tmpfs", "tmpfs", &opts));
            }
            _ => {
                opts = vec!["rbind", if m.rw { "rw" } else { "ro" }];
                opts.push(if m.propagation.is_empty() {
                    "rprivate"
                } else {
                    &m.propagation
                });
                mounts.push(mount(&m.destination, "bind", &m.source, &opts));
            }
        }
    }
    if let Some(init) = &input.init_binary {
        mounts.push(mount("/sbin/docker-init", "bind", init, &["bind", "ro"]));
        let mut a = vec!["/sbin/docker-init".to_string(), "--".to_string()];
        a.extend(args);
        args = a;
    }

    use LinuxNamespaceType as Ns;
    // Mount and cgroup namespaces are always the container's own; PID, IPC and UTS as
    // their modes say (own, the host's, or one pinned at a path: a pod's).
    let own = String::new();
    let mut namespaces: Vec<LinuxNamespace> = Vec::new();
    for (kind, mode) in [
        (Ns::Pid, &hc.pid_mode),
        (Ns::Mount, &own),
        (Ns::Ipc, &hc.ipc_mode),
        (Ns::Uts, &hc.uts_mode),
        (Ns::Cgroup, &own),
    ] {
        match mode.as_str() {
            "host" => {}
            m => namespaces.push(namespace(kind, m.strip_prefix("ns:").map(PathBuf::from))),
        }
    }
    match (&input.netns, host_net) {
        (Some(path), _) => namespaces.push(namespace(Ns::Network, Some(path.clone()))),
        (None, false) => namespaces.push(namespace(Ns::Network, None)),
        (None, true) => {}
    }

    // Docker's containers get 1048576 open files; never more than this host lets us give
    // (raising a hard limit needs CAP_SYS_RESOURCE, which not every host grants).
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard.min(1_048_576))
        .unwrap_or(1024);
    let mut rlimits = vec![rlimit(PosixRlimitType::RlimitNofile, nofile, nofile)];
    for u in &hc.ulimits {
        let t = rlimit_type(&u.name)
            .ok_or_else(|| EngineError::Invalid(format!("invalid ulimit type: {}", u.name)))?;
        rlimits.retain(|r| r.typ() != t);
        let v = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
        rlimits.push(rlimit(t, v(u.soft), v(u.hard)));
    }

    // `--device` and `--device-cgroup-rule`: the nodes made, and what the cgroup allows.
    let mut devices = if privileged {
        // Like Docker: a privileged container gets the host's devices.
        host_devices(Path::new("/dev"))
    } else {
        Vec::new()
    };
    let mut resources = resources(hc);
    let mut rules = resources.devices().clone().unwrap_or_default();
    for m in &hc.devices {
        for (device, rule) in crate::devices::resolve(m)? {
            devices.retain(|d| d.path() != device.path());
            devices.push(device);
            rules.push(rule);
        }
    }
    for rule in &hc.device_cgroup_rules {
        rules.push(crate::devices::parse_rule(rule)?);
    }
    if !privileged {
        resources.set_devices(Some(rules));
    }

    let mut linux = Linux::default();
    linux
        .set_namespaces(Some(namespaces))
        .set_resources(Some(resources))
        .set_cgroups_path(Some(rec.cgroup().into()))
        .set_masked_paths(None)
        .set_readonly_paths(None)
        .set_devices(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_sysctl(None)
        .set_rootfs_propagation(rootfs_propagation(input.mounts))
        .set_mount_label(None);
    if !privileged {
        let defaults = |paths: &[&str]| paths.iter().map(|s| s.to_string()).collect();
        linux.set_masked_paths(Some(
            hc.masked_paths
                .clone()
                .unwrap_or_else(|| defaults(MASKED_PATHS)),
        ));
        let mut ro: Vec<String> = hc
            .readonly_paths
            .clone()
            .unwrap_or_else(|| defaults(READONLY_PATHS));
        match &input.cgroup_v1_binds {
            // The binds and the skeleton are read-only already.
            Some(CgroupV1View {
                skeleton: Some(_), ..
            }) => {}
            // A tmpfs under the binds becomes read-only after them (recursively: that
            // doubles the mounts, hence the skeleton).
            Some(_) => ro.push("/sys/fs/cgroup".into()),
            // The built-in runtime mounts v1 hierarchies read-write whatever the options
            // say; make each one read-only, so a container cannot raise its own limits.
            None => ro.extend(crate::sys::cgroup_readonly_paths()),
        }
        linux.set_readonly_paths(Some(ro));
    }
    // A profile that is null (an empty custom one) is unconfined, as Docker reads it.
    if let Some(s) = input.seccomp.as_ref().filter(|s| !s.is_null()) {
        let s: LinuxSeccomp = serde_json::from_value(s.clone())
            .map_err(|e| EngineError::Invalid(format!("the seccomp profile: {e}")))?;
        linux.set_seccomp(Some(s));
    }
    if !devices.is_empty() {
        linux.set_devices(Some(devices));
    }

    let mut user = OciUser::default();
    user.set_uid(input.user.uid).set_gid(input.user.gid);
    if !input.user.additional_gids.is_empty() {
        user.set_additional_gids(Some(input.user.additional_gids.clone()));
    }
    let caps: Capabilities = caps.iter().map(|c| capability(c)).collect::<Result<_>>()?;
    let mut capabilities = LinuxCapabilities::default();
    capabilities
        .set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(None)
        .set_ambient(None);
    let mut process = Process::default();
    process
        .set_terminal(Some(rec.config.tty))
        .set_user(user)
        .set_args(Some(args))
        .set_env(Some(input.env.clone()))
        .set_cwd(
            if input.cwd.is_empty() {
                "/"
            } else {
                &input.cwd
            }
            .into(),
        )
        .set_capabilities(Some(capabilities))
        .set_rlimits(Some(rlimits))
        .set_oom_score_adj((hc.oom_score_adj != 0).then_some(hc.oom_score_adj as i32))
        // Only present when set: libcontainer treats a present `false` like `true` when
        // it orders seccomp and the capability drop, and then cannot load the filter.
        .set_no_new_privileges(input.no_new_privileges.then_some(true))
        .set_console_size(None);
    if rec.config.tty {
        let size = BoxBuilder::default()
            .height(24u64)
            .width(80u64)
            .build()
            .expect("every field is set");
        process.set_console_size(Some(size));
    }
    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf())
        .set_readonly(Some(hc.readonly_rootfs));
    let mut spec = Spec::default();
    spec.set_version("1.0.2".into())
        .set_process(Some(process))
        .set_root(Some(root))
        // Only a UTS namespace of its own gets the container's hostname: a pod's has
        // the pod's, and the host's stays the host's.
        .set_hostname(hc.uts_mode.is_empty().then(|| rec.config.hostname.clone()))
        .set_mounts(Some(mounts))
        .set_annotations(None)
        .set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_drop_then_add() {
        let c = capabilities(&["net_admin".into()], &["CHOWN".into()], false).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(capabilities(&["bogus".into()], &[], false).is_err());
        assert!(capabilities(&[], &["ALL".into()], false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn env_overrides_by_key() {
        let a = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let b = vec!["A=2".to_string(), "B=3".to_string()];
        assert_eq!(merge_env(&[&a, &b]), vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes("-1m"), None);
    }

    #[test]
    fn users_resolve_from_layers_and_symlinks_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("top");
        let low = d.path().join("low");
        std::fs::create_dir_all(low.join("etc")).unwrap();
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::write(
            low.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:33:34:web:/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            low.join("etc/group"),
            "root:x:0:\nwww:x:34:\nextra:x:50:web\n",
        )
        .unwrap();
        let dirs = vec![top.clone(), low.clone()];
        // The groups are the primary one and, unless a group is named, the user's
        // memberships: what dockerd 20.10.24 gives for the same files.
        let ids = |spec: &str| {
            let u = resolve_user(spec, &dirs).unwrap();
            (u.uid, u.gid, u.additional_gids)
        };
        assert_eq!(ids("web"), (33, 34, vec![34, 50]));
        assert_eq!(ids("33"), (33, 34, vec![34, 50]));
        assert_eq!(ids("web:extra"), (33, 50, vec![50]));
        assert_eq!(ids("0:34"), (0, 34, vec![34]));
        assert_eq!(ids("1000"), (1000, 0, vec![0]));
        assert_eq!(ids("1000:1000"), (1000, 1000, vec![1000]));
        assert_eq!(ids(""), (0, 0, vec![0]));
        assert_eq!(resolve_user("", &dirs).unwrap().home, "/root");
        assert!(resolve_user("nobody-here", &dirs).is_err());
        // A symlinked passwd in the top layer is never followed to the host.
        std::os::unix::fs::symlink("/etc/passwd", top.join("etc/passwd")).unwrap();
        assert!(read_in_layers(&dirs, "etc/passwd").is_none());
    }

    fn record(f: impl FnOnce(&mut ContainerRecord)) -> ContainerRecord {
        let mut rec = ContainerRecord {
            id: "c0ffee".into(),
            name: "/t".into(),
            image_id: String::new(),
            created: String::new(),
            config: Default::default(),
            host_config: Default::default(),
            mounts: vec![],
            path: "true".into(),
            args: vec![],
            pod: None,
        };
        f(&mut rec);
        rec
    }

    #[test]
    fn a_pods_container_joins_its_pinned_namespaces_and_keeps_its_hostname() {
        let rec = record(|r| {
            r.config.hostname = "c0ffee".into();
            let hc = &mut r.host_config;
            hc.network_mode = "ns:/run/berth/pods/p/net".into();
            hc.ipc_mode = "ns:/run/berth/pods/p/ipc".into();
            hc.uts_mode = "ns:/run/berth/pods/p/uts".into();
            hc.pid_mode = "host".into();
            hc.oom_score_adj = 500;
            hc.cpu_quota = 20_000;
            hc.cpu_period = 50_000;
            hc.cpuset_mems = "0".into();
            hc.masked_paths = Some(vec!["/proc/kcore".into()]);
        });
        let mut s = spec_json(&rec, false);
        let ns = s["linux"]["namespaces"].take();
        let ns: Vec<(String, Option<String>)> = ns
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["type"].as_str().unwrap().to_string(),
                    n["path"].as_str().map(str::to_string),
                )
            })
            .collect();
        let want = |t: &str, p: Option<&str>| (t.to_string(), p.map(str::to_string));
        assert_eq!(
            ns,
            [
                want("mount", None),
                want("ipc", Some("/run/berth/pods/p/ipc")),
                want("uts", Some("/run/berth/pods/p/uts")),
                want("cgroup", None),
                // The network namespace's path comes from the start (`SpecInput::netns`).
                want("network", None),
            ]
        );
        assert!(s.get("hostname").is_none(), "{s}");
        assert_eq!(s["process"]["oomScoreAdj"], 500);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 20_000);
        assert_eq!(s["linux"]["resources"]["cpu"]["period"], 50_000);
        assert_eq!(s["linux"]["resources"]["cpu"]["mems"], "0");
        assert_eq!(
            s["linux"]["maskedPaths"],
            serde_json::json!(["/proc/kcore"])
        );
    }

    fn spec_json(rec: &ContainerRecord, no_new_privileges: bool) -> Value {
        let input = SpecInput {
            rec,
            rootfs: Path::new("/r"),
            container_dir: Path::new("/nonexistent"),
            user: User {
                uid: 1,
                gid: 2,
                additional_gids: vec![3],
                home: "/".into(),
            },
            args: vec!["true".into()],
            env: vec!["A=1".into()],
            cwd: String::new(),
            mounts: &[],
            init_binary: None,
            seccomp: None,
            no_new_privileges,
            cgroup_v1_binds: None,
            netns: None,
        };
        serde_json::to_value(build(&input).unwrap()).unwrap()
    }

    #[test]
    fn the_runtime_spec_has_dockers_settings_and_none_of_oci_specs_defaults() {
        let s = spec_json(&record(|r| r.host_config.memory = 64 << 20), false);
        let p = &s["process"];
        assert_eq!(p["args"], serde_json::json!(["true"]));
        assert_eq!(p["env"], serde_json::json!(["A=1"]));
        assert_eq!(p["cwd"], "/");
        assert_eq!(
            p["user"],
            serde_json::json!({"uid": 1, "gid": 2, "additionalGids": [3]})
        );
        // Absent, not false (libcontainer reads a present false as true).
        assert!(p.get("noNewPrivileges").is_none(), "{p}");
        assert!(p.get("consoleSize").is_none());
        let mut caps: Vec<&str> = p["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        caps.sort();
        let mut want: Vec<&str> = DEFAULT_CAPS.to_vec();
        want.sort();
        assert_eq!(caps, want);
        assert!(p["capabilities"].get("ambient").is_none());
        assert!(s.get("annotations").is_none());
        assert_eq!(s["ociVersion"], "1.0.2");
        let l = &s["linux"];
        assert_eq!(l["cgroupsPath"], "/berth/c0ffee");
        assert_eq!(l["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(l["resources"]["memory"]["swap"], 128 << 20);
        assert!(l["maskedPaths"].as_array().unwrap().len() == MASKED_PATHS.len());
        assert!(l.get("devices").is_none());
        assert!(l.get("uidMappings").is_none() && l.get("sysctl").is_none());
        let ns: Vec<&str> = l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "mount", "ipc", "uts", "cgroup", "network"]);
        assert_eq!(
            p["rlimits"][0]["type"], "RLIMIT_NOFILE",
            "Docker's open files limit comes first"
        );
    }

    #[test]
    fn an_empty_custom_seccomp_profile_is_unconfined() {
        let rec = record(|_| {});
        let input = SpecInput {
            rec: &rec,
            rootfs: Path::new("/r"),
            container_dir: Path::new("/nonexistent"),
            user: User {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: "/".into(),
            },
            args: vec!["true".into()],
            env: vec![],
            cwd: String::new(),
            mounts: &[],
            init_binary: None,
            seccomp: Some(Value::Null),
            no_new_privileges: false,
            cgroup_v1_binds: None,
            netns: None,
        };
        let spec = build(&input).unwrap();
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    }

    #[test]
    fn a_privileged_container_has_no_masked_paths_and_the_hosts_devices() {
        let rec = record(|r| {
            r.host_config.privileged = true;
            r.config.tty = true;
        });
        let s = spec_json(&rec, true);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(
            s["process"]["consoleSize"],
            serde_json::json!({"height": 24, "width": 80})
        );
        let l = &s["linux"];
        assert!(l.get("maskedPaths").is_none() && l.get("readonlyPaths").is_none());
        assert_eq!(
            l["resources"]["devices"],
            serde_json::json!([{"allow": true, "access": "rwm"}])
        );
        assert!(l["devices"].is_array());
        let caps = s["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        assert_eq!(caps.len(), capabilities(&[], &[], true).unwrap().len());
    }
}
