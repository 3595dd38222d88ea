//! Thin wrappers over the system calls the engine makes directly: mounts, process
//! liveness, signals.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{sys_err, Result};

/// A process's state letter (field 3) and start time (clock ticks since boot, field 22),
/// from one read of /proc/PID/stat.
fn process_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields resume after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let state = rest.chars().next()?;
    Some((state, rest.split(' ').nth(19)?.parse().ok()?))
}

/// The start time of a process (clock ticks since boot), from /proc/PID/stat field 22.
pub fn process_start_time(pid: i32) -> Option<u64> {
    process_stat(pid).map(|(_, start)| start)
}

/// Is `pid` alive (not a zombie) and the same process as recorded (start time matches)?
pub fn process_alive(pid: i32, start: u64) -> bool {
    process_stat(pid).is_some_and(|(state, t)| (start == 0 || t == start) && state != 'Z')
}

/// Is a process a zombie (exited, not yet reaped)?
pub fn process_is_zombie(pid: i32) -> bool {
    process_stat(pid).is_some_and(|(state, _)| state == 'Z')
}

/// Mounts an overlay at `target`. `lowerdir` holds paths relative to `layers_root`; the
/// mount is made from inside it so a long stack fits in the option page, on a thread of
/// its own whose working directory is its own (`unshare(CLONE_FS)`): the process's never
/// moves, so a process serving other requests (the API service, a build's stages) can
/// mount on any thread.
///
/// `volatile` (for containers whose upper dir is thrown away with them, `--rm`) skips the
/// sync of the whole upper file system that unmounting an overlay otherwise does.
pub fn mount_overlay(
    layers_root: &Path,
    lowerdir: &str,
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> Result<()> {
    let mut data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if volatile {
        // A volatile mount leaves work/incompat/volatile behind, and the kernel refuses
        // to mount again until it is gone.
        let _ = std::fs::remove_dir_all(work.join("incompat"));
        data.push_str(",volatile");
    }
    let mount_here = || -> Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
            .map_err(sys_err("a working directory of the mounting thread's own"))?;
        nix::unistd::chdir(layers_root)
            .map_err(sys_err(format!("chdir {}", layers_root.display())))?;
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(sys_err(format!(
            "mounting the overlay root at {}",
            target.display()
        )))
    };
    std::thread::scope(|s| {
        s.spawn(mount_here)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Makes directory `path` (and the parents it lacks) inside `root`, every step resolved
/// inside it (`RESOLVE_IN_ROOT`: a symlink in an image never leads out of it); what is
/// made is root's, mode 0755, as Docker makes a missing working directory. A step that
/// is there but is not a directory is an error.
pub fn make_dir_in_root(root: &Path, path: &str) -> std::io::Result<()> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let root_fd = std::fs::File::open(root)?;
    let open = |rel: &str| -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let rel = if rel.is_empty() { "." } else { rel };
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        openat2(root_fd.as_raw_fd(), rel, how).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for i in 0..comps.len() {
        let prefix = comps[..=i].join("/");
        match open(&prefix) {
            Ok(_) => continue,
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(std::io::Error::other(format!("/{prefix}: {e}"))),
        }
        let parent = open(&comps[..i].join("/"))?;
        match nix::sys::stat::mkdirat(
            Some(parent.as_raw_fd()),
            comps[i],
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(std::io::Error::other(format!("/{prefix}: {e}"))),
        }
        // What is there now must be a directory inside the root.
        open(&prefix).map_err(|e| std::io::Error::other(format!("/{prefix}: {e}")))?;
    }
    Ok(())
}

/// Unmounts `target` (lazily if busy); not mounted is fine.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH)
            .map_err(sys_err(format!("unmounting {}", target.display()))),
        Err(e) => Err(sys_err(format!("unmounting {}", target.display()))(e)),
    }
}

/// Is something mounted at `p`? (Compares device ids with the parent.)
pub fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(a), Some(Ok(b))) = (std::fs::metadata(p), p.parent().map(std::fs::metadata)) else {
        return false;
    };
    a.dev() != b.dev() || a.ino() == b.ino()
}

/// Parses a signal name or number (`KILL`, `SIGKILL`, `9`).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rt) = name.strip_prefix("RTMIN+") {
        return rt.parse::<i32>().ok().map(|n| libc::SIGRTMIN() + n);
    }
    let sig: nix::sys::signal::Signal = format!("SIG{name}").parse().ok()?;
    Some(sig as i32)
}

/// Brings `lo` up in the network namespace of `pid` (a new network namespace starts with
/// it down; `--network none` means loopback only, and loopback must work). The caller
/// must be single-threaded: it enters the namespace and comes back.
pub fn loopback_up_in(pid: i32) -> Result<()> {
    use nix::sched::{setns, CloneFlags};
    let own = std::fs::File::open("/proc/self/ns/net")
        .map_err(crate::error::io_err("/proc/self/ns/net"))?;
    let path = format!("/proc/{pid}/ns/net");
    let target = std::fs::File::open(&path).map_err(crate::error::io_err(&path))?;
    setns(&target, CloneFlags::CLONE_NEWNET)
        .map_err(sys_err("entering the container's network namespace"))?;
    let res = set_link_up("lo");
    setns(&own, CloneFlags::CLONE_NEWNET)
        .map_err(sys_err("returning to the host network namespace"))?;
    res.map_err(crate::error::io_err("lo"))
}

fn set_link_up(name: &str) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket() takes no pointers; the returned fd is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh, valid fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifru_flags inside the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifru_flags is the union member SIOCGIFFLAGS just filled in.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Did the kernel OOM-kill a process of the cgroup `rel` (e.g. `berth/<id>`)? Reads
/// cgroup v2 `memory.events` or v1 `memory.oom_control` under `cgroup_root`
/// (`/sys/fs/cgroup`, or a fake tree in tests).
pub fn oom_killed(cgroup_root: &Path, rel: &str) -> bool {
    let rel = rel.trim_start_matches('/');
    let read_key = |p: PathBuf, key: &str| -> Option<u64> {
        let s = std::fs::read_to_string(p).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
    };
    let v2 = read_key(cgroup_root.join(rel).join("memory.events"), "oom_kill ");
    let v1 = read_key(
        cgroup_root
            .join("memory")
            .join(rel)
            .join("memory.oom_control"),
        "oom_kill ",
    );
    v2.or(v1).unwrap_or(0) > 0
}

/// Pids in a container's cgroup (v2 unified, or v1 `pids`/`memory`/`cpu` hierarchy).
pub fn cgroup_pids(cgroup_root: &Path, rel: &str) -> Vec<i32> {
    let rel = rel.trim_start_matches('/');
    for base in [
        cgroup_root.join(rel),
        cgroup_root.join("pids").join(rel),
        cgroup_root.join("memory").join(rel),
        cgroup_root.join("cpu").join(rel),
    ] {
        if let Ok(s) = std::fs::read_to_string(base.join("cgroup.procs")) {
            return s.lines().filter_map(|l| l.trim().parse().ok()).collect();
        }
    }
    Vec::new()
}

/// Whether `pid` is a child of this process that has not been reaped (running, or ended
/// and waiting to be).
pub fn is_unreaped_child(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: an all-zero siginfo_t is valid; waitid fills it and, with WNOWAIT, reaps
    // nothing.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
    }
}

/// Whether `pid`, one of the processes `in_cgroup` of a container's cgroup, is its
/// monitor's probe launcher: named so, and started from outside the cgroup (any process
/// of the container that took the name has a parent inside it, but for the init, which
/// the caller tells apart by its pid).
pub fn is_probe_launcher(pid: i32, in_cgroup: &[i32]) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let ppid: i32 = stat[close + 1..]
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    comm == berth_runtime::enter::LAUNCHER_NAME && !in_cgroup.contains(&ppid)
}

/// On a cgroup v1 host, the hierarchies under /sys/fs/cgroup made only of controllers the
/// runtime manages (so a container's cgroup dir exists in each); None on a v2 host.
pub fn cgroup_v1_hierarchies() -> Option<Vec<String>> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    const MANAGED: &[&str] = &[
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "hugetlb",
        "memory",
        "pids",
        "perf_event",
        "blkio",
        "net_prio",
        "net_cls",
        "freezer",
    ];
    let base = Path::new("/sys/fs/cgroup");
    if statfs(base)
        .map(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
        .unwrap_or(true)
    {
        return None;
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(base).ok()?.flatten() {
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.split(',').all(|c| MANAGED.contains(&c)) {
            continue;
        }
        if statfs(&e.path())
            .map(|s| s.filesystem_type() == CGROUP_SUPER_MAGIC)
            .unwrap_or(false)
        {
            out.push(name);
        }
    }
    out.sort();
    Some(out)
}

/// Moves process `pid` into cgroup `rel`, made where missing: in each of `v1` hierarchies
/// under `cgroup_root` (`cgroup_v1_hierarchies`), else in the v2 tree at `cgroup_root`.
/// A v1 cpuset made here gets its parent's cpus and mems (v1 leaves them empty, and an
/// empty cpuset takes no process).
pub fn join_cgroup(
    cgroup_root: &Path,
    v1: Option<&[String]>,
    rel: &str,
    pid: i32,
) -> std::io::Result<()> {
    let rel = Path::new(rel.trim_start_matches('/'));
    let trees: Vec<PathBuf> = match v1 {
        Some(hierarchies) => hierarchies.iter().map(|h| cgroup_root.join(h)).collect(),
        None => vec![cgroup_root.to_path_buf()],
    };
    for tree in trees {
        let cpuset = v1.is_some()
            && tree
                .file_name()
                .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == "cpuset"));
        let mut dir = tree.clone();
        for part in rel.components() {
            let parent = dir.clone();
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) if cpuset => {
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        let value = std::fs::read_to_string(parent.join(file))?;
                        std::fs::write(dir.join(file), value.trim())?;
                    }
                }
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
    }
    Ok(())
}

/// A directory under the run root with one empty dir per v1 hierarchy: what containers
/// see at /sys/fs/cgroup (bound read-only) beneath their hierarchies' binds. Made once per
/// set of hierarchies (its name says which), complete or not at all.
pub fn cgroup_v1_skeleton(run_root: &Path, hierarchies: &[String]) -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hierarchies.hash(&mut h);
    let dir = run_root.join(format!("cgroup-v1-{:016x}", h.finish()));
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = run_root.join(format!(".cgroup-v1-{}", std::process::id()));
    let made = (|| {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        std::fs::set_permissions(
            &tmp,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )?;
        for name in hierarchies {
            std::fs::create_dir(tmp.join(name))?;
        }
        std::fs::rename(&tmp, &dir)
    })();
    match made {
        Ok(()) => Ok(dir),
        // Another start made it first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(crate::error::io_err(&dir)(e))
        }
    }
}

/// The cgroup mounts under /sys/fs/cgroup, as container paths to make read-only:
/// `/sys/fs/cgroup` itself on v2, one path per v1 hierarchy otherwise. (statfs on each
/// entry: cheaper than reading the host's whole mount table on every start.)
pub fn cgroup_readonly_paths() -> Vec<String> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    let base = Path::new("/sys/fs/cgroup");
    if statfs(base)
        .map(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
    {
        return vec!["/sys/fs/cgroup".into()];
    }
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            // Symlinks (cpu,cpuacct → cpu) are not mounts.
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let p = e.path();
            if statfs(&p)
                .map(|s| s.filesystem_type() == CGROUP_SUPER_MAGIC)
                .unwrap_or(false)
            {
                out.push(format!(
                    "/sys/fs/cgroup/{}",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    out.sort();
    out
}

/// Removes a container's cgroup (`rel`, e.g. `/berth/<id>`) from the v2 tree and every v1
/// hierarchy under `cgroup_root`. Empty cgroups only: a busy one (EBUSY) is retried
/// briefly while its last processes exit. Missing is fine.
pub fn remove_cgroup(cgroup_root: &Path, rel: &str) -> std::io::Result<()> {
    let rel = rel.trim_start_matches('/');
    let mut dirs = vec![cgroup_root.join(rel)];
    if let Ok(rd) = std::fs::read_dir(cgroup_root) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(e.path().join(rel));
            }
        }
    }
    let mut last_err = None;
    for d in dirs {
        for attempt in 0..50 {
            match std::fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 49 => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => break,
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Keeps the kernel's cgroup migration lock in its slow mode while a container starts.
///
/// Moving a process into a cgroup (the runtime writing its init's pid to `cgroup.procs`)
/// takes `cgroup_threadgroup_rwsem` for writing. That per-cpu lock lets forks and exits in
/// for free while no one writes, so the first writer waits for an RCU grace period to
/// switch it over: 5 to 15 ms of a container start on this project's test machines, spent
/// waiting, not computing. The switch stays in place while writers keep coming and for a
/// grace period after the last. A warmer is a child process that moves itself into its own
/// cgroup every 2 ms: it pays the wait while the monitor and runtime do their set-up, and
/// the runtime's own write then finds the lock switched. It ends when dropped, when its
/// parent dies, or after a second.
pub struct AttachWarmer {
    pid: libc::pid_t,
}

impl AttachWarmer {
    /// Starts a warmer; None when this process's cgroup cannot be found or written.
    pub fn start() -> Option<AttachWarmer> {
        use std::os::unix::ffi::OsStrExt;
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let procs = own_cgroup_procs(&cgroups, Path::new("/sys/fs/cgroup"))?;
        let path = std::ffi::CString::new(procs.as_os_str().as_bytes()).ok()?;
        // SAFETY: the child calls only async-signal-safe functions, on memory prepared
        // before the fork, and leaves with _exit.
        match unsafe { libc::fork() } {
            -1 => None,
            // SAFETY: in the child of a fork, as warm requires.
            0 => unsafe { warm(&path) },
            pid => Some(AttachWarmer { pid }),
        }
    }
}

impl Drop for AttachWarmer {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The warmer's loop (see [`AttachWarmer`]).
///
/// # Safety
/// Only in a freshly forked child: async-signal-safe calls only.
unsafe fn warm(procs: &std::ffi::CStr) -> ! {
    // SAFETY: plain system calls on valid pointers; the caller's contract.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // It holds none of the parent's files (a pipe's reader would wait on it).
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            libc::_exit(0);
        }
        let mut digits = [0u8; 12];
        let mut n = digits.len();
        let mut pid = libc::getpid() as u32;
        loop {
            n -= 1;
            digits[n] = b'0' + (pid % 10) as u8;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000,
        };
        for _ in 0..500 {
            if libc::pwrite(fd, digits[n..].as_ptr().cast(), digits.len() - n, 0) < 0 {
                break;
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
        libc::_exit(0)
    }
}

/// The `cgroup.procs` file of this process's own cgroup, from `/proc/self/cgroup`'s text:
/// in a v1 controller hierarchy where there is one, else in the v2 tree.
fn own_cgroup_procs(proc_self_cgroup: &str, cgroup_root: &Path) -> Option<PathBuf> {
    let mut v2 = None;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            v2 = Some(rel.to_string());
        } else if !controllers.starts_with("name=") {
            let f = cgroup_root.join(controllers).join(rel).join("cgroup.procs");
            if f.exists() {
                return Some(f);
            }
        }
    }
    let root = if cgroup_root.join("cgroup.controllers").exists() {
        cgroup_root.to_path_buf()
    } else {
        cgroup_root.join("unified")
    };
    Some(root.join(v2?).join("cgroup.procs")).filter(|f| f.exists())
}

/// Maps this process's read-only file pages (its code and constants) only as they are
/// used: the kernel otherwise maps up to 16 neighbouring pages already in the page cache
/// at each fault ("fault-around"), so a service that runs a few scattered functions of a
/// large binary holds most of it resident. Costs a minor fault per page first used.
pub fn map_code_on_demand() {
    for (start, end, _) in read_only_file_mappings() {
        // SAFETY: an advice on a whole file-backed, non-writable mapping of this process:
        // it changes how pages are faulted in, never their contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
        }
    }
}

/// Gives back memory a long-running, mostly idle process (the monitor) no longer needs
/// after start-up: freed heap pages, and the resident pages of its read-only file mappings
/// (code the set-up ran once). Those stay in the page cache, shared by every monitor, and
/// fault back in if used again. Writable mappings are never touched.
pub fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    // A read-only mapping may still hold private copies of pages (RELRO data the dynamic
    // loader relocated before making it read-only); dropping those would revert them to
    // the file's bytes. Only mappings with no anonymous pages are released.
    for (start, end, anonymous) in read_only_file_mappings() {
        if anonymous {
            continue;
        }
        // SAFETY: the range is a whole, non-writable, file-backed private mapping of this
        // process with no private (anonymous) pages; MADV_DONTNEED only drops its page table
        // entries, and the same file contents fault back in on the next access.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// This process's private, non-writable, file-backed mappings (code, constants): start,
/// end, and whether any of their pages are private copies (anonymous), from smaps.
fn read_only_file_mappings() -> Vec<(usize, usize, bool)> {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            current = None;
            let mut f = line.split_whitespace();
            let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) =
                (f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            if perms.as_bytes().get(1) != Some(&b'-') || !perms.ends_with('p') || inode == "0" {
                continue;
            }
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                current = Some((start, end));
            }
        } else if let (Some((start, end)), Some(kb)) = (current, line.strip_prefix("Anonymous:")) {
            out.push((start, end, kb.trim().trim_end_matches("kB").trim() != "0"));
            current = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_joins_a_cgroup_made_with_its_parents_cpuset() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for h in ["cpuset", "memory"] {
            std::fs::create_dir_all(root.join(h).join("kube")).unwrap();
        }
        std::fs::write(root.join("cpuset/kube/cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(root.join("cpuset/kube/cpuset.mems"), "0\n").unwrap();
        let v1 = ["cpuset".to_string(), "memory".to_string()];
        join_cgroup(root, Some(&v1), "/kube/pod1", 42).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(read("cpuset/kube/pod1/cpuset.cpus"), "0-1");
        assert_eq!(read("cpuset/kube/pod1/cpuset.mems"), "0");
        assert_eq!(read("cpuset/kube/pod1/cgroup.procs"), "42");
        assert_eq!(read("memory/kube/pod1/cgroup.procs"), "42");
        assert!(!root.join("memory/kube/pod1/cpuset.cpus").exists());
        // v2: one tree.
        let v2 = tempfile::tempdir().unwrap();
        join_cgroup(v2.path(), None, "kube/pod2", 7).unwrap();
        assert_eq!(
            std::fs::read_to_string(v2.path().join("kube/pod2/cgroup.procs")).unwrap(),
            "7"
        );
    }

    #[test]
    fn code_pages_are_mapped_on_demand_after_the_advice() {
        map_code_on_demand();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        // Every read-only mapping of the test binary is advised (VmFlags "rr"); the
        // writable ones are left alone.
        let mut seen = 0;
        let mut current: Option<bool> = None;
        for line in smaps.lines() {
            let mut f = line.split_whitespace();
            if let (Some(range), Some(perms)) = (f.next(), f.next()) {
                if range.contains('-') && !range.ends_with(':') {
                    let path = line.split_whitespace().nth(5).unwrap_or("");
                    current = (path == exe.to_str().unwrap()).then(|| !perms.contains('w'));
                    continue;
                }
            }
            if let (Some(read_only), Some(flags)) = (current, line.strip_prefix("VmFlags:")) {
                let advised = flags.split_whitespace().any(|f| f == "rr");
                assert_eq!(advised, read_only, "{line}");
                seen += 1;
            }
        }
        assert!(seen >= 2, "no mappings of {} found", exe.display());
    }

    #[test]
    fn a_cgroup_skeleton_is_made_once_per_set_of_hierarchies() {
        let d = tempfile::tempdir().unwrap();
        let h = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let a = cgroup_v1_skeleton(d.path(), &h(&["cpu,cpuacct", "memory"])).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&a)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["cpu,cpuacct", "memory"]);
        assert_eq!(
            cgroup_v1_skeleton(d.path(), &h(&["cpu,cpuacct", "memory"])).unwrap(),
            a
        );
        let b = cgroup_v1_skeleton(d.path(), &h(&["memory"])).unwrap();
        assert_ne!(a, b);
        // No temp dir is left beside them.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn own_cgroup_is_found_in_v1_and_v2_trees() {
        let d = tempfile::tempdir().unwrap();
        let v1 = d.path().join("v1");
        std::fs::create_dir_all(v1.join("cpu,cpuacct/user.slice")).unwrap();
        std::fs::write(v1.join("cpu,cpuacct/user.slice/cgroup.procs"), "").unwrap();
        let text = "9:name=systemd:/user.slice\n4:cpu,cpuacct:/user.slice\n0::/user.slice\n";
        assert_eq!(
            own_cgroup_procs(text, &v1),
            Some(v1.join("cpu,cpuacct/user.slice/cgroup.procs"))
        );
        let v2 = d.path().join("v2");
        std::fs::create_dir_all(v2.join("system.slice/x.service")).unwrap();
        std::fs::write(v2.join("cgroup.controllers"), "cpu memory").unwrap();
        std::fs::write(v2.join("system.slice/x.service/cgroup.procs"), "").unwrap();
        assert_eq!(
            own_cgroup_procs("0::/system.slice/x.service\n", &v2),
            Some(v2.join("system.slice/x.service/cgroup.procs"))
        );
        assert_eq!(own_cgroup_procs("0::/gone\n", &v2), None);
    }

    #[test]
    fn an_overlay_is_mounted_from_its_layers_without_moving_the_process() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let layers = d.path().join("layers");
        for dir in ["layers/a", "upper", "work", "merged"] {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
        }
        std::fs::write(layers.join("a/from-lower"), "x").unwrap();
        let before = std::env::current_dir().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let moved = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let mut moved = false;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    moved |= std::env::current_dir().ok().as_ref() != Some(&before);
                }
                moved
            });
            for _ in 0..20 {
                let merged = d.path().join("merged");
                mount_overlay(
                    &layers,
                    "a",
                    &d.path().join("upper"),
                    &d.path().join("work"),
                    &merged,
                    false,
                )
                .unwrap();
                assert!(merged.join("from-lower").exists());
                unmount(&merged).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            watcher.join().unwrap()
        });
        assert!(
            !moved,
            "the process's working directory moved while mounting"
        );
        assert_eq!(std::env::current_dir().unwrap(), before);
    }

    #[test]
    fn a_missing_working_directory_is_made_inside_the_root_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("file"), "").unwrap();
        make_dir_in_root(&root, "/srv/app/").unwrap();
        assert!(root.join("srv/app").is_dir());
        make_dir_in_root(&root, "/etc").unwrap();
        // A symlink to a host path resolves inside the root: /etc is the root's.
        std::os::unix::fs::symlink("/etc", root.join("conf")).unwrap();
        let host_made = Path::new("/etc/berth-made-by-a-test");
        make_dir_in_root(&root, "/conf/berth-made-by-a-test").unwrap();
        assert!(root.join("etc/berth-made-by-a-test").is_dir());
        assert!(!host_made.exists(), "made on the host");
        // One that leads nowhere inside the root is an error, and nothing is made.
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        assert!(make_dir_in_root(&root, "/escape/x").is_err());
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "made outside the root"
        );
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        make_dir_in_root(&root, "/up/y").unwrap();
        assert!(root.join("y").is_dir());
        // A file in the way is an error.
        assert!(make_dir_in_root(&root, "/file/z").is_err());
    }

    #[test]
    fn an_attach_warmer_holds_no_parent_files_and_ends_when_dropped() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let (r, w) = std::io::pipe().unwrap();
        let Some(warmer) = AttachWarmer::start() else {
            eprintln!("skipped: no writable cgroup here");
            return;
        };
        let pid = warmer.pid;
        drop(w);
        // The pipe's only writer is gone: EOF at once, though the warmer still runs.
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut &r, &mut buf).unwrap();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(warmer);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn oom_is_read_from_v1_and_v2_trees() {
        let d = tempfile::tempdir().unwrap();
        let v2 = d.path().join("v2");
        std::fs::create_dir_all(v2.join("berth/c1")).unwrap();
        std::fs::write(
            v2.join("berth/c1/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(oom_killed(&v2, "/berth/c1"));
        std::fs::write(
            v2.join("berth/c1/memory.events"),
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        )
        .unwrap();
        assert!(!oom_killed(&v2, "/berth/c1"));
        let v1 = d.path().join("v1");
        std::fs::create_dir_all(v1.join("memory/berth/c2")).unwrap();
        std::fs::write(
            v1.join("memory/berth/c2/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(oom_killed(&v1, "berth/c2"));
        assert!(!oom_killed(&v1, "berth/none"));
    }

    #[test]
    fn cgroups_are_removed_from_every_hierarchy() {
        let d = tempfile::tempdir().unwrap();
        for h in ["memory", "pids", "cpu"] {
            std::fs::create_dir_all(d.path().join(h).join("berth/c1")).unwrap();
        }
        std::fs::create_dir_all(d.path().join("berth/c1")).unwrap();
        remove_cgroup(d.path(), "/berth/c1").unwrap();
        for h in ["memory", "pids", "cpu"] {
            assert!(!d.path().join(h).join("berth/c1").exists());
        }
        assert!(!d.path().join("berth/c1").exists());
        remove_cgroup(d.path(), "/berth/c1").unwrap();
    }

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("KILL"), Some(9));
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("hup"), Some(1));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("BOGUS"), None);
    }

    #[test]
    fn start_time_identifies_this_process() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).unwrap();
        assert!(process_alive(me, t));
        assert!(!process_alive(me, t + 1));
    }

    #[test]
    fn only_an_unreaped_child_of_ours_counts_as_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(is_unreaped_child(pid));
        // Ended but not reaped: still ours (the exit status waits for us).
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(is_unreaped_child(pid));
        child.wait().unwrap();
        assert!(!is_unreaped_child(pid));
        assert!(!is_unreaped_child(1));
        assert!(!is_unreaped_child(std::process::id() as i32));
        assert!(!is_unreaped_child(0));
        assert!(!is_unreaped_child(-1));
    }
}
