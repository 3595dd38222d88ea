//! A cheap way to start a process inside a running container, for the monitor's health
//! probes: everything the process needs (namespace fds, cgroups, credentials,
//! capabilities, the compiled seccomp filter) is worked out once by [`Entry::prepare`], so
//! each [`Entry::spawn`] is two forks, a few `setns` and an `execve`.
//!
//! A probe through the runtime's `exec` costs about 8 ms of CPU (libcontainer reads the
//! container's state and the mount table and compiles the seccomp profile every time);
//! with 200 containers probing every second that is more than a core. Here it is a small
//! fraction of a millisecond.
//!
//! The process gets what an `exec` of the container's own process spec gets: the
//! container's namespaces and cgroups, its user and groups, capability sets, rlimits,
//! `noNewPrivileges`, oom score and seccomp filter (loaded in runc's order: before the
//! capabilities are dropped unless `noNewPrivileges` is set, then as late as possible).
//!
//! `spawn` forks twice: the first child joins the namespaces and clones the second with
//! `CLONE_PARENT` (so it is the caller's child and lands in the container's pid
//! namespace), reports its pid and exits. The caller moves the second child into the
//! container's cgroups, then lets it go on. The caller never waits on a process inside
//! the container, so a paused (frozen) container cannot block it. Errors after that
//! point are written to the process's stderr, as Docker shows them in a probe's output,
//! and it exits 127 (not found) or 126.
//!
//! The caller must be single-threaded (the monitor is). The children run only
//! async-signal-safe system calls on memory prepared before the fork.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::Value;

/// Namespaces in the order they are joined: user first (it grants rights over the
/// others), mount last but one, pid last (it only applies to children).
const NAMESPACES: &[(&str, &str, libc::c_int)] = &[
    ("user", "user", libc::CLONE_NEWUSER),
    ("cgroup", "cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", "ipc", libc::CLONE_NEWIPC),
    ("uts", "uts", libc::CLONE_NEWUTS),
    ("network", "net", libc::CLONE_NEWNET),
    ("time", "time", 0x80),
    ("mount", "mnt", libc::CLONE_NEWNS),
    ("pid", "pid", libc::CLONE_NEWPID),
];

/// The `cgroup.procs` files of the container cgroup `rel` (a spec's `cgroupsPath`, e.g.
/// `/berth/<id>`) under `cgroup_root`: the v2 one, or one per v1 hierarchy (and the
/// hybrid `unified` tree) where the runtime made the cgroup.
pub fn cgroup_procs_files(cgroup_root: &std::path::Path, rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if cgroup_root.join("cgroup.controllers").exists() {
        return vec![cgroup_root.join(rel).join("cgroup.procs")];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(cgroup_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path().join(rel).join("cgroup.procs"))
        .filter(|p| p.exists())
        .collect();
    out.sort();
    out
}

/// Loads `f` into the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER)`: 0, or -1 with
/// errno set. It allocates nothing, so a forked child may call it.
pub(crate) fn load_filter(f: &crate::seccomp::Bpf) -> libc::c_long {
    let prog = libc::sock_fprog {
        len: f.program.len() as libc::c_ushort,
        filter: f.program.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SET_MODE_FILTER) reads a program that outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1 as libc::c_ulong, /* SECCOMP_SET_MODE_FILTER */
            f.flags as libc::c_ulong,
            &prog,
        )
    }
}

/// Gives every signal its default disposition, as a container's processes start with,
/// whatever the caller ignored (Rust ignores SIGPIPE; `nohup` SIGHUP; a shell's background
/// job SIGINT and SIGQUIT): ignored signals stay ignored across `execve`. It allocates
/// nothing, so a forked child may call it.
pub(crate) fn default_signal_dispositions() {
    // The kernel's struct sigaction with SIG_DFL, no flags and an empty mask is all zeros
    // on every architecture. The raw call, since glibc refuses the two real-time signals it
    // keeps for itself, which a caller may still have ignored.
    let act = [0u64; 4];
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction reads a valid struct and writes nothing (no old action).
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    act.as_ptr(),
                    std::ptr::null_mut::<libc::c_void>(),
                    8usize,
                )
            };
        }
    }
}

/// The first child's stack: it only joins namespaces and clones.
const FIRST_CHILD_STACK: usize = 64 * 1024;

/// Everything needed to start processes in one running container.
pub struct Entry {
    namespaces: Vec<(OwnedFd, libc::c_int)>,
    /// The `cgroup.procs` files, open for writing: opened once, not for every process.
    cgroups: Vec<(PathBuf, File)>,
    /// The first child's stack (see [`Entry::spawn`]), kept rather than made each time.
    stack: std::cell::RefCell<Vec<u8>>,
    cwd: CString,
    env: Vec<CString>,
    path_dirs: Vec<Vec<u8>>,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    drop_bounding: Vec<libc::c_ulong>,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: Vec<libc::c_ulong>,
    no_new_privileges: bool,
    rlimits: Vec<(libc::c_int, libc::rlimit)>,
    oom_score_adj: Option<CString>,
    seccomp: Option<crate::seccomp::Bpf>,
}

fn caps_of(list: &Value) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for c in list.as_array().into_iter().flatten() {
        let name = c.as_str().unwrap_or_default();
        let cap =
            caps::Capability::from_str(name).map_err(|_| format!("unknown capability {name:?}"))?;
        out.push(u32::from(cap.index()));
    }
    Ok(out)
}

fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1u64 << c))
}

fn rlimit_resource(name: &str) -> Option<libc::c_int> {
    // The `as` casts: glibc's resource constants are u32, musl's c_int.
    #[allow(clippy::unnecessary_cast)]
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU as libc::c_int,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE as libc::c_int,
        "RLIMIT_DATA" => libc::RLIMIT_DATA as libc::c_int,
        "RLIMIT_STACK" => libc::RLIMIT_STACK as libc::c_int,
        "RLIMIT_CORE" => libc::RLIMIT_CORE as libc::c_int,
        "RLIMIT_RSS" => libc::RLIMIT_RSS as libc::c_int,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC as libc::c_int,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE as libc::c_int,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK as libc::c_int,
        "RLIMIT_AS" => libc::RLIMIT_AS as libc::c_int,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS as libc::c_int,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING as libc::c_int,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE as libc::c_int,
        "RLIMIT_NICE" => libc::RLIMIT_NICE as libc::c_int,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO as libc::c_int,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME as libc::c_int,
        _ => return None,
    })
}

fn cstring(s: impl Into<Vec<u8>>) -> Result<CString, String> {
    CString::new(s).map_err(|_| "a NUL byte in the process spec".to_string())
}

impl Entry {
    /// Prepares entries into the container whose OCI spec is `spec` and whose init is
    /// `pid` (as this process sees it). `cgroup_procs` are the `cgroup.procs` files of the
    /// container's cgroups, `seccomp` its filter, compiled by [`crate::seccomp::compile`].
    pub fn prepare(
        spec: &Value,
        pid: i32,
        cgroup_procs: Vec<PathBuf>,
        seccomp: Option<crate::seccomp::Bpf>,
    ) -> Result<Entry, String> {
        let mut namespaces = Vec::new();
        let listed: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["type"].as_str())
            .collect();
        for (kind, file, flag) in NAMESPACES {
            if !listed.contains(kind) {
                continue;
            }
            let p = format!("/proc/{pid}/ns/{file}");
            let f = File::open(&p).map_err(|e| format!("{p}: {e}"))?;
            namespaces.push((OwnedFd::from(f), *flag));
        }
        let process = &spec["process"];
        let env: Vec<CString> = process["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(cstring)
            .collect::<Result<_, _>>()?;
        let path = process["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        let path_dirs = path
            .split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| d.as_bytes().to_vec())
            .collect();
        let user = &process["user"];
        let caps = &process["capabilities"];
        let bounding = caps_of(&caps["bounding"])?;
        let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        let mut rlimits = Vec::new();
        for r in process["rlimits"].as_array().into_iter().flatten() {
            let name = r["type"].as_str().unwrap_or_default();
            let res = rlimit_resource(name).ok_or_else(|| format!("unknown rlimit {name:?}"))?;
            rlimits.push((
                res,
                libc::rlimit {
                    rlim_cur: r["soft"].as_u64().unwrap_or(0),
                    rlim_max: r["hard"].as_u64().unwrap_or(0),
                },
            ));
        }
        let cgroups = cgroup_procs
            .into_iter()
            .map(|p| match std::fs::OpenOptions::new().write(true).open(&p) {
                Ok(f) => Ok((p, f)),
                Err(e) => Err(format!("{}: {e}", p.display())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Entry {
            namespaces,
            cgroups,
            stack: std::cell::RefCell::new(vec![0u8; FIRST_CHILD_STACK]),
            cwd: cstring(process["cwd"].as_str().unwrap_or("/"))?,
            env,
            path_dirs,
            uid: user["uid"].as_u64().unwrap_or(0) as libc::uid_t,
            gid: user["gid"].as_u64().unwrap_or(0) as libc::gid_t,
            groups: user["additionalGids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .map(|g| g as libc::gid_t)
                .collect(),
            drop_bounding: (0..=last_cap.min(63))
                .filter(|c| !bounding.contains(c))
                .map(libc::c_ulong::from)
                .collect(),
            effective: mask(&caps_of(&caps["effective"])?),
            permitted: mask(&caps_of(&caps["permitted"])?),
            inheritable: mask(&caps_of(&caps["inheritable"])?),
            ambient: caps_of(&caps["ambient"])?
                .into_iter()
                .map(libc::c_ulong::from)
                .collect(),
            no_new_privileges: process["noNewPrivileges"].as_bool().unwrap_or(false),
            rlimits,
            oom_score_adj: process["oomScoreAdj"]
                .as_i64()
                .map(|v| cstring(v.to_string()))
                .transpose()?,
            seccomp,
        })
    }

    /// Starts `args` in the container with the given standard streams; returns its pid
    /// (a child of the caller). With `ctty`, stdin is a terminal that becomes the
    /// process's controlling terminal. Failing to start the program itself is not an
    /// error here: the process reports it on `stderr` and exits 126 or 127.
    pub fn spawn(
        &self,
        args: &[String],
        stdio: [BorrowedFd<'_>; 3],
        ctty: bool,
    ) -> Result<i32, String> {
        let Some(prog) = args.first() else {
            return Err("no command".into());
        };
        let argv: Vec<CString> = args
            .iter()
            .map(|a| cstring(a.as_str()))
            .collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<*const libc::c_char> = self.env.iter().map(|a| a.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        let candidates: Vec<CString> = if prog.contains('/') {
            vec![cstring(prog.as_str())?]
        } else {
            self.path_dirs
                .iter()
                .map(|d| {
                    let mut p = d.clone();
                    p.push(b'/');
                    p.extend_from_slice(prog.as_bytes());
                    cstring(p)
                })
                .collect::<Result<_, _>>()?
        };
        let not_found = format!(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{prog}\": {}\n",
            if prog.contains('/') {
                "no such file or directory"
            } else {
                "executable file not found in $PATH"
            }
        );
        // A stream given as another's number (stdout on fd 0, say) would be overwritten by
        // the child's dup2 of an earlier one: move those out of the way first.
        let mut moved = Vec::new();
        let mut fds = stdio.map(|f| f.as_raw_fd());
        for (i, fd) in fds.iter_mut().enumerate() {
            if *fd < 3 && *fd != i as RawFd {
                let high = nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
                    .map_err(|e| format!("dup: {e}"))?;
                // SAFETY: a fresh fd from F_DUPFD_CLOEXEC, owned here.
                moved.push(unsafe { OwnedFd::from_raw_fd(high) });
                *fd = high;
            }
        }
        let (report_r, report_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let plan = Plan {
            entry: self,
            argv: &argv_ptrs,
            envp: &env_ptrs,
            candidates: &candidates,
            not_found: not_found.as_bytes(),
            stdio: fds,
            ctty,
            report: report_w.as_raw_fd(),
            go: go_r.as_raw_fd(),
        };
        // The first child only joins the namespaces and clones the second: it shares our
        // memory, on a stack of its own, while we wait (vfork-style), which spares copying
        // our page tables for it.
        let mut stack = self.stack.borrow_mut();
        extern "C" fn first(plan: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `plan` is the `Plan` below, alive while we are suspended, and this
            // runs in the new process, which only makes system calls on it.
            unsafe { (*(plan as *const Plan<'_>)).first_child() }
        }
        // SAFETY: CLONE_VM|CLONE_VFORK suspends this (single-threaded) process until the
        // child exits; the child runs `first` on `stack`, which outlives it.
        let first = unsafe {
            let top = stack.as_mut_ptr().add(stack.len());
            let top = top.sub(top as usize % 16);
            libc::clone(
                first,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&plan as *const Plan<'_>).cast_mut().cast(),
            )
        };
        if first < 0 {
            return Err(format!("clone: {}", std::io::Error::last_os_error()));
        }
        drop(report_w);
        drop(go_r);
        let mut msg = Vec::new();
        let read = (&File::from(report_r)).read_to_end(&mut msg);
        let mut status = 0;
        // SAFETY: waits for our own child, which exits right after reporting.
        unsafe { libc::waitpid(first, &mut status, 0) };
        read.map_err(|e| format!("reading from the entering process: {e}"))?;
        let child = match msg.first() {
            Some(b'P') if msg.len() >= 5 => i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]),
            Some(b'E') if msg.len() >= 6 => {
                let errno = i32::from_ne_bytes([msg[2], msg[3], msg[4], msg[5]]);
                let what = match msg[1] {
                    0 => "setns",
                    _ => "clone",
                };
                return Err(format!(
                    "entering the container: {what}: {}",
                    std::io::Error::from_raw_os_error(errno)
                ));
            }
            _ => return Err("entering the container: the helper process died".into()),
        };
        let kill = |e: String| {
            // SAFETY: kill and waitpid on our own child.
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, std::ptr::null_mut(), 0);
            }
            e
        };
        let pid_text = child.to_string();
        for (p, f) in &self.cgroups {
            (&*f)
                .write_all(pid_text.as_bytes())
                .map_err(|e| kill(format!("joining cgroup {}: {e}", p.display())))?;
        }
        (&File::from(go_w))
            .write_all(b"g")
            .map_err(|e| kill(format!("starting the process: {e}")))?;
        Ok(child)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds on success, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fds from pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What the forked children do, on memory prepared before the fork.
struct Plan<'a> {
    entry: &'a Entry,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    candidates: &'a [CString],
    not_found: &'a [u8],
    stdio: [RawFd; 3],
    ctty: bool,
    report: RawFd,
    go: RawFd,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The `capset` arguments (version 3: two 32-bit halves).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl Plan<'_> {
    /// Joins the namespaces, clones the process that will run the program, reports it.
    ///
    /// # Safety
    /// Only in a child cloned from a single-threaded process, which is suspended until
    /// this one exits (the two share memory: nothing here allocates or frees).
    unsafe fn first_child(&self) -> ! {
        let report = |tag: u8, stage: u8, value: i32| {
            let v = value.to_ne_bytes();
            let msg = [tag, stage, v[0], v[1], v[2], v[3]];
            let msg: &[u8] = if tag == b'P' {
                &[tag, v[0], v[1], v[2], v[3]]
            } else {
                &msg
            };
            // SAFETY: writes a stack buffer to our pipe.
            unsafe { libc::write(self.report, msg.as_ptr().cast(), msg.len()) };
        };
        for (fd, flag) in &self.entry.namespaces {
            // SAFETY: setns on an fd we hold.
            if unsafe { libc::setns(fd.as_raw_fd(), *flag) } != 0 {
                report(b'E', 0, errno());
                // SAFETY: leaving the child.
                unsafe { libc::_exit(1) };
            }
        }
        // SAFETY: a raw clone like fork (a copy of the memory we share with our
        // parent), with CLONE_PARENT so the new process is our parent's child; in it
        // only `second_child` runs.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid < 0 {
            report(b'E', 1, errno());
            // SAFETY: leaving the child.
            unsafe { libc::_exit(1) };
        }
        if pid == 0 {
            // SAFETY: still a fresh single-threaded child.
            unsafe { self.second_child() }
        }
        report(b'P', 0, pid as i32);
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) }
    }

    /// Waits to be moved into the cgroups, takes on the container's credentials and
    /// restrictions, and runs the program.
    ///
    /// # Safety
    /// Only in a child cloned from `first_child`.
    unsafe fn second_child(&self) -> ! {
        let e = self.entry;
        // SAFETY: our copy of the report pipe; the caller reads it to its end.
        unsafe { libc::close(self.report) };
        let mut b = [0u8; 1];
        // SAFETY: a read into a stack buffer; EOF (the caller gave up) ends us.
        if unsafe { libc::read(self.go, b.as_mut_ptr().cast(), 1) } != 1 {
            // SAFETY: leaving the child.
            unsafe { libc::_exit(126) };
        }
        // SAFETY: plain system calls on fds and buffers prepared before the fork. Each
        // failure is reported on stderr (the fd dup'ed to 2) and ends the child.
        unsafe {
            for (i, fd) in self.stdio.iter().enumerate() {
                if *fd != i as RawFd && libc::dup2(*fd, i as RawFd) < 0 {
                    self.fail(b"dup2");
                }
            }
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                4u32, /* CLOEXEC */
            );
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            default_signal_dispositions();
            libc::setsid();
            if self.ctty && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                self.fail(b"setting the controlling terminal");
            }
            if libc::chdir(e.cwd.as_ptr()) != 0 {
                self.fail(b"chdir to the working directory");
            }
            for (res, lim) in &e.rlimits {
                if libc::setrlimit(*res as _, lim) != 0 {
                    self.fail(b"setrlimit");
                }
            }
            if let Some(v) = &e.oom_score_adj {
                let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, v.as_ptr().cast(), v.as_bytes().len()) < 0 {
                    self.fail(b"oom_score_adj");
                }
                libc::close(fd);
            }
            if e.no_new_privileges && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                self.fail(b"no_new_privs");
            }
            if !e.no_new_privileges {
                self.load_seccomp();
            }
            for cap in &e.drop_bounding {
                if libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0) != 0 {
                    self.fail(b"dropping a bounding capability");
                }
            }
            if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
                self.fail(b"keepcaps");
            }
            if libc::setgroups(e.groups.len(), e.groups.as_ptr()) != 0 {
                self.fail(b"setgroups");
            }
            if libc::setresgid(e.gid, e.gid, e.gid) != 0 {
                self.fail(b"setgid");
            }
            if libc::setresuid(e.uid, e.uid, e.uid) != 0 {
                self.fail(b"setuid");
            }
            let header = CapHeader {
                version: 0x2008_0522,
                pid: 0,
            };
            let half = |m: u64, i: u32| (m >> (32 * i)) as u32;
            let data = [0, 1].map(|i| CapData {
                effective: half(e.effective, i),
                permitted: half(e.permitted, i),
                inheritable: half(e.inheritable, i),
            });
            if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
                self.fail(b"capset");
            }
            for cap in &e.ambient {
                if libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    *cap,
                    0,
                    0,
                ) != 0
                {
                    self.fail(b"raising an ambient capability");
                }
            }
            if e.no_new_privileges {
                self.load_seccomp();
            }
            let mut first_err = 0;
            for c in self.candidates {
                libc::execve(c.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
                let err = errno();
                // Like execvp: a missing entry moves on; the first other error is kept.
                if err != libc::ENOENT && err != libc::ENOTDIR && first_err == 0 {
                    first_err = err;
                }
            }
            if first_err == 0 {
                libc::write(2, self.not_found.as_ptr().cast(), self.not_found.len());
                libc::_exit(127);
            }
            *libc::__errno_location() = first_err;
            self.fail(b"exec")
        }
    }

    /// # Safety
    /// Only in the second child.
    unsafe fn load_seccomp(&self) {
        if let Some(f) = &self.entry.seccomp {
            if load_filter(f) != 0 {
                // SAFETY: as for the caller.
                unsafe { self.fail(b"loading the seccomp filter") }
            }
        }
    }

    /// Writes `unable to start container process: WHAT: errno N` to stderr and exits 126.
    ///
    /// # Safety
    /// Only in the second child.
    unsafe fn fail(&self, what: &[u8]) -> ! {
        let err = errno();
        let mut buf = [0u8; 160];
        let mut n = 0;
        for part in [
            b"OCI runtime exec failed: unable to start container process: ".as_slice(),
            what,
            b": errno ",
        ] {
            let take = part.len().min(buf.len() - n - 12);
            buf[n..n + take].copy_from_slice(&part[..take]);
            n += take;
        }
        let mut digits = [0u8; 10];
        let mut d = 0;
        let mut v = err.unsigned_abs();
        loop {
            digits[d] = b'0' + (v % 10) as u8;
            d += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while d > 0 {
            d -= 1;
            buf[n] = digits[d];
            n += 1;
        }
        buf[n] = b'\n';
        n += 1;
        // SAFETY: writes a stack buffer, then leaves the child.
        unsafe {
            libc::write(2, buf.as_ptr().cast(), n);
            libc::_exit(126)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// A spec for a process in this test's own namespaces (none listed), as root.
    fn spec(caps: &[&str]) -> Value {
        json!({
            "process": {
                "user": {"uid": 0, "gid": 0},
                "cwd": "/",
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi"],
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "noNewPrivileges": true,
            },
            "linux": {"namespaces": []},
        })
    }

    /// Runs `args`; returns (exit code, stdout and stderr).
    fn run(entry: &Entry, args: &[&str]) -> (i32, String) {
        let (r, w) = pipe().unwrap();
        let null = File::open("/dev/null").unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let pid = entry
            .spawn(&args, [null.as_fd(), w.as_fd(), w.as_fd()], false)
            .unwrap();
        drop(w);
        let mut out = String::new();
        File::from(r).read_to_string(&mut out).unwrap();
        let mut status = 0;
        // SAFETY: waits for the child spawn made (CLONE_PARENT: ours).
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        (libc::WEXITSTATUS(status), out)
    }

    use std::os::fd::AsFd;

    #[test]
    fn spawns_with_the_specs_environment_and_reports_a_missing_program() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let e = Entry::prepare(
            &spec(&["CAP_CHOWN"]),
            std::process::id() as i32,
            vec![],
            None,
        )
        .unwrap();
        let (code, out) = run(
            &e,
            &[
                "sh",
                "-c",
                "echo $GREETING; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(out, "hi\nCapEff:\t0000000000000001\nNoNewPrivs:\t1\n");
        let (code, out) = run(&e, &["no-such-program-here"]);
        assert_eq!(code, 127);
        assert!(
            out.contains("\"no-such-program-here\": executable file not found in $PATH"),
            "{out}"
        );
        let (code, _) = run(&e, &["/etc/passwd"]);
        assert_eq!(code, 126, "not executable");
    }

    #[test]
    fn the_compiled_seccomp_filter_is_loaded() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        // CAP_SYS_ADMIN granted, but a filter made for Docker's default set: only the
        // filter can refuse the new mount namespace.
        let caps = ["CAP_SYS_ADMIN"];
        let default: Vec<String> = crate::caps::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect();
        let profile = crate::seccomp::default_profile(&default);
        let pid = std::process::id() as i32;
        let free = Entry::prepare(&spec(&caps), pid, vec![], None).unwrap();
        let filter = crate::seccomp::compile(&profile).unwrap();
        let again = crate::seccomp::Bpf::from_bytes(&filter.to_bytes()).unwrap();
        assert_eq!(again.to_bytes(), filter.to_bytes());
        let filtered = Entry::prepare(&spec(&caps), pid, vec![], Some(again)).unwrap();
        let probe = "grep Seccomp: /proc/self/status; unshare -m true && echo unshared";
        let (_, out) = run(&free, &["sh", "-c", probe]);
        assert_eq!(out, "Seccomp:\t0\nunshared\n");
        let (_, out) = run(&filtered, &["sh", "-c", probe]);
        assert!(
            out.starts_with("Seccomp:\t2\n") && !out.contains("unshared"),
            "{out}"
        );
    }
}
