//! The OCI runtime spec (`config.json`) of a container, with Docker's defaults:
//! namespaces, mounts, capabilities, masked and read-only paths, devices, seccomp and
//! resource limits.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

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

/// Resolves `-u user[:group]` against the image's /etc/passwd and /etc/group; an empty
/// spec is root, without reading any file.
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

pub fn resolve_user(spec: &str, layer_dirs: &[PathBuf]) -> Result<User> {
    if spec.is_empty() {
        return Ok(User {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        });
    }
    let passwd = read_in_layers(layer_dirs, "etc/passwd")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let group = read_in_layers(layer_dirs, "etc/group")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let mut user = User {
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        home: "/".into(),
    };
    let pw_entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && (f[0] == u || f[2] == u));
    match (u.parse::<u32>(), pw_entry) {
        (_, Some(f)) => {
            user.uid = f[2].parse().unwrap_or(0);
            user.gid = f[3].parse().unwrap_or(0);
            user.home = f[5].to_string();
        }
        (Ok(n), None) => user.uid = n,
        (Err(_), None) => {
            return Err(EngineError::Invalid(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    }
    let user_name = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[2].parse::<u32>().ok() == Some(user.uid))
        .map(|f| f[0].to_string());
    if let Some(g) = g {
        let entry = group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && (f[0] == g || f[2] == g));
        match (g.parse::<u32>(), entry) {
            (_, Some(f)) => user.gid = f[2].parse().unwrap_or(0),
            (Ok(n), None) => user.gid = n,
            (Err(_), None) => {
                return Err(EngineError::Invalid(format!(
                    "unable to find group {g}: no matching entries in group file"
                )))
            }
        }
    } else if let Some(name) = &user_name {
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(gid) = f[2].parse::<u32>() {
                    if gid != user.gid && !user.additional_gids.contains(&gid) {
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
    pub cgroup_v1_binds: Option<Vec<String>>,
    /// The network namespace to join (a container on a network), else a new one.
    pub netns: Option<PathBuf>,
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": kind, "source": source, "options": options})
}

fn rlimit_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        "as" => "RLIMIT_AS",
        _ => return None,
    })
}

/// Validates a `--ulimit` name.
pub fn valid_ulimit(name: &str) -> bool {
    rlimit_type(name).is_some()
}

/// The character and block devices under `dev` (not the container-private `pts`, `shm`,
/// `mqueue`, nor the standard nodes every container gets), as OCI `linux.devices`.
pub fn host_devices(dev: &Path) -> Vec<Value> {
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
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if dir == dev && STANDARD.contains(&name.as_str()) {
                continue;
            }
            let rdev = m.rdev();
            out.push(json!({
                "path": e.path(),
                "type": kind,
                "major": libc::major(rdev),
                "minor": libc::minor(rdev),
                "fileMode": m.mode() & 0o7777,
                "uid": m.uid(),
                "gid": m.gid(),
            }));
        }
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

/// Builds config.json.
pub fn build(input: &SpecInput) -> Result<Value> {
    let rec = input.rec;
    let hc = &rec.host_config;
    let privileged = hc.privileged;
    let caps = capabilities(&hc.cap_add, &hc.cap_drop, privileged)?;
    let host_net = hc.network_mode == "host";

    let mut args = input.args.clone();
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
                &[
                    "rbind",
                    "nosuid",
                    "noexec",
                    "nodev",
                    if privileged { "rw" } else { "ro" },
                ],
            )
        } else {
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &[
                    "nosuid",
                    "noexec",
                    "nodev",
                    if privileged { "rw" } else { "ro" },
                ],
            )
        },
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    let cg_mode = if privileged { "rw" } else { "ro" };
    match &input.cgroup_v1_binds {
        None => mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", cg_mode],
        )),
        Some(hierarchies) => {
            // The view a cgroup namespace gives: each hierarchy rooted at the container's
            // own cgroup, on a tmpfs (made read-only below, after the binds are in place).
            mounts.push(mount(
                "/sys/fs/cgroup",
                "tmpfs",
                "tmpfs",
                &["nosuid", "noexec", "nodev", "mode=755", "size=64k"],
            ));
            for h in hierarchies {
                mounts.push(json!({
                    "destination": format!("/sys/fs/cgroup/{h}"),
                    "type": "bind",
                    "source": format!("/sys/fs/cgroup/{h}/berth/{}", rec.id),
                    "options": ["rbind", "nosuid", "noexec", "nodev", cg_mode, "rprivate"],
                }));
            }
        }
    }
    let shm = if hc.shm_size > 0 {
        hc.shm_size
    } else {
        64 << 20
    };
    mounts.push(
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    );
    for f in ["resolv.conf", "hostname", "hosts"] {
        let src = input.container_dir.join(f);
        if src.exists() {
            let dest = format!("/etc/{f}");
            if !input.mounts.iter().any(|m| m.destination == dest) {
                mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
            }
        }
    }
    for m in input.mounts {
        match m.kind.as_str() {
            "tmpfs" => {
                let mut opts = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "noexec".to_string(),
                ];
                opts.extend(m.tmpfs_options.iter().cloned());
                mounts.push(json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts}));
            }
            _ => {
                let mut opts = vec![
                    "rbind".to_string(),
                    if m.rw { "rw".into() } else { "ro".into() },
                ];
                opts.push(if m.propagation.is_empty() {
                    "rprivate".into()
                } else {
                    m.propagation.clone()
                });
                mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts}));
            }
        }
    }
    if let Some(init) = &input.init_binary {
        mounts.push(json!({"destination": "/sbin/docker-init", "type": "bind", "source": init, "options": ["bind", "ro"]}));
        let mut a = vec!["/sbin/docker-init".to_string(), "--".to_string()];
        a.extend(args);
        args = a;
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "cgroup"}),
    ];
    match (&input.netns, host_net) {
        (Some(path), _) => namespaces.push(json!({"type": "network", "path": path})),
        (None, false) => namespaces.push(json!({"type": "network"})),
        (None, true) => {}
    }

    // Docker's containers get 1048576 open files; never more than this host lets us give
    // (raising a hard limit needs CAP_SYS_RESOURCE, which not every host grants).
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard.min(1_048_576))
        .unwrap_or(1024);
    let mut rlimits = vec![json!({"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile})];
    for u in &hc.ulimits {
        let t = rlimit_type(&u.name)
            .ok_or_else(|| EngineError::Invalid(format!("invalid ulimit type: {}", u.name)))?;
        rlimits.retain(|r| r["type"] != t);
        let v = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
        rlimits.push(json!({"type": t, "hard": v(u.hard), "soft": v(u.soft)}));
    }

    let mut resources = json!({});
    if privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    } else {
        let dev = |t: &str, maj: i64, min: Option<i64>, access: &str| json!({"allow": true, "type": t, "major": maj, "minor": min, "access": access});
        resources["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"},
            {"allow": true, "type": "b", "access": "m"},
            dev("c", 1, Some(3), "rwm"),
            dev("c", 1, Some(5), "rwm"),
            dev("c", 1, Some(7), "rwm"),
            dev("c", 1, Some(8), "rwm"),
            dev("c", 1, Some(9), "rwm"),
            dev("c", 5, Some(0), "rwm"),
            dev("c", 5, Some(1), "rwm"),
            dev("c", 5, Some(2), "rwm"),
            dev("c", 136, None, "rwm"),
            dev("c", 10, Some(200), "rwm"),
        ]);
    }
    if hc.memory > 0 {
        resources["memory"] = json!({"limit": hc.memory});
        let swap = match hc.memory_swap {
            0 => Some(hc.memory * 2),
            -1 => None,
            s => Some(s),
        };
        if let Some(s) = swap {
            resources["memory"]["swap"] = json!(s);
        }
    }
    if hc.memory_reservation > 0 {
        if resources.get("memory").is_none() {
            resources["memory"] = json!({});
        }
        resources["memory"]["reservation"] = json!(hc.memory_reservation);
    }
    let mut cpu = json!({});
    if hc.nano_cpus > 0 {
        let period: u64 = 100_000;
        cpu["period"] = json!(period);
        cpu["quota"] = json!((hc.nano_cpus as u64 * period / 1_000_000_000) as i64);
    }
    if hc.cpu_shares > 0 {
        cpu["shares"] = json!(hc.cpu_shares as u64);
    }
    if !hc.cpuset_cpus.is_empty() {
        cpu["cpus"] = json!(hc.cpuset_cpus);
    }
    if cpu.as_object().map(|o| !o.is_empty()).unwrap_or(false) {
        resources["cpu"] = cpu;
    }
    if let Some(p) = hc.pids_limit.filter(|p| *p != 0) {
        resources["pids"] = json!({"limit": p});
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("/berth/{}", rec.id),
    });
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        let mut ro: Vec<String> = READONLY_PATHS.iter().map(|s| s.to_string()).collect();
        match &input.cgroup_v1_binds {
            // The binds are read-only already; the tmpfs under them becomes so too.
            Some(_) => ro.push("/sys/fs/cgroup".into()),
            // The built-in runtime mounts v1 hierarchies read-write whatever the options
            // say; make each one read-only, so a container cannot raise its own limits.
            None => ro.extend(crate::sys::cgroup_readonly_paths()),
        }
        linux["readonlyPaths"] = json!(ro);
    }
    if let Some(s) = &input.seccomp {
        linux["seccomp"] = s.clone();
    }
    if privileged {
        // Like Docker: a privileged container gets the host's devices.
        linux["devices"] = json!(host_devices(Path::new("/dev")));
    }

    let mut user = json!({"uid": input.user.uid, "gid": input.user.gid});
    if !input.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(input.user.additional_gids);
    }
    let mut process = json!({
        "terminal": rec.config.tty,
        "user": user,
        "args": args,
        "env": input.env,
        "cwd": if input.cwd.is_empty() { "/" } else { &input.cwd },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits,
    });
    // Only present when set: libcontainer treats a present `false` like `true` when it
    // orders seccomp and the capability drop, and then cannot load the filter.
    if input.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if rec.config.tty {
        process["consoleSize"] = json!({"height": 24, "width": 80});
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": input.rootfs, "readonly": hc.readonly_rootfs},
        "hostname": rec.config.hostname,
        "mounts": mounts,
        "linux": linux,
    }))
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
        let u = resolve_user("web", &dirs).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (33, 34, vec![50])
        );
        assert_eq!(resolve_user("1000:1000", &dirs).unwrap().uid, 1000);
        assert_eq!(resolve_user("web:extra", &dirs).unwrap().gid, 50);
        assert!(resolve_user("nobody-here", &dirs).is_err());
        // A symlinked passwd in the top layer is never followed to the host.
        std::os::unix::fs::symlink("/etc/passwd", top.join("etc/passwd")).unwrap();
        assert!(read_in_layers(&dirs, "etc/passwd").is_none());
    }
}
