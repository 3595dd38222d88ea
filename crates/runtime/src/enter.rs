//! A cheap way to start a process inside a running container, for the monitor's health
//! probes: everything the process needs (namespace fds, cgroups, credentials,
//! capabilities, the compiled seccomp filter) is worked out once by [`Entry::prepare`], so
//! each [`Entry::spawn`] is two clones, a few `setns` and an `execve`.
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
//! `spawn` clones twice, copying no memory: the first child shares ours while we wait
//! (vfork-style), joins the namespaces and clones the second with `CLONE_PARENT` (so it
//! is the caller's child and lands in the container's pid namespace), reports its pid and
//! exits. The second shares our memory too, on its own stack, until it runs its program;
//! the [`Launch`] that `spawn` returns keeps what it reads until then. It makes its system
//! calls through [`sys`], which leaves the `errno` it shares with us alone. The caller
//! moves the second child into the container's cgroups, then lets it go on. The caller
//! never waits on a process inside the container, so a paused (frozen) container cannot
//! block it. Errors after that point are written to the process's stderr, as Docker
//! shows them in a probe's output, and it exits 127 (not found) or 126.
//!
//! Copying the monitor's page tables for each probe, faulting its pages back in and
//! tearing the copy down at `execve` cost more than all the rest of a probe's start.
//!
//! The children run only system calls on memory prepared before the first clone.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

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

/// Loads `f` into the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER)`: 0, or
/// -errno. It allocates nothing and leaves `errno` alone, so a spawned child may call it.
pub(crate) fn load_filter(f: &crate::seccomp::Bpf) -> isize {
    let prog = libc::sock_fprog {
        len: f.program.len() as libc::c_ushort,
        filter: f.program.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SET_MODE_FILTER) reads a program that outlives the call.
    unsafe {
        sys(
            libc::SYS_seccomp,
            args([
                1, /* SECCOMP_SET_MODE_FILTER */
                f.flags as usize,
                &prog as *const libc::sock_fprog as usize,
            ]),
        )
    }
}

/// Gives every signal its default disposition, as a container's processes start with,
/// whatever the caller ignored (Rust ignores SIGPIPE; `nohup` SIGHUP; a shell's background
/// job SIGINT and SIGQUIT): ignored signals stay ignored across `execve`. It allocates
/// nothing and leaves `errno` alone, so a spawned child may call it.
pub(crate) fn default_signal_dispositions() {
    // The kernel's struct sigaction with SIG_DFL, no flags and an empty mask is all zeros
    // on every architecture. The raw call, since glibc refuses the two real-time signals it
    // keeps for itself, which a caller may still have ignored.
    let act = [0u64; 4];
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction reads a valid struct and writes nothing (no old action).
            unsafe {
                sys(
                    libc::SYS_rt_sigaction,
                    args([sig as usize, act.as_ptr() as usize, 0, 8]),
                )
            };
        }
    }
}

/// The stack of each child: they only make system calls.
const CHILD_STACK: usize = 64 * 1024;

/// Whether the second child shares our memory (`CLONE_VM`) rather than getting a copy:
/// where [`sys`] can make system calls without touching `errno`, which it would share.
const SHARE_MEMORY: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// A system call that leaves `errno` alone; returns its result, or -errno. The second
/// child shares our memory, and with it the `errno` of the thread that spawned it.
///
/// # Safety
/// As for the system call `n` with these arguments.
#[cfg(target_arch = "x86_64")]
unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the Linux x86_64 system call convention; the kernel clobbers rcx and r11.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// See the x86_64 version.
///
/// # Safety
/// As for the system call `n` with these arguments.
#[cfg(target_arch = "aarch64")]
unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the Linux aarch64 system call convention.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

/// Elsewhere through libc, which sets `errno`: the second child then gets a copy of our
/// memory (see [`SHARE_MEMORY`]).
///
/// # Safety
/// As for the system call `n` with these arguments.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
    // SAFETY: as for the caller.
    let r = unsafe { libc::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        -(errno() as isize)
    } else {
        r as isize
    }
}

/// Arguments for [`sys`], padded.
fn args<const N: usize>(a: [usize; N]) -> [usize; 6] {
    let mut out = [0; 6];
    out[..N].copy_from_slice(&a);
    out
}

/// Everything needed to start processes in one running container.
pub struct Entry {
    namespaces: Vec<(OwnedFd, libc::c_int)>,
    /// The `cgroup.procs` files, open for writing: opened once, not for every process.
    cgroups: Vec<(PathBuf, File)>,
    /// The first child's stack (see [`Entry::spawn`]), kept rather than made each time.
    stack: std::cell::RefCell<Vec<u8>>,
    path_dirs: Vec<Vec<u8>>,
    process: Arc<Process>,
}

/// What a started process takes on. The second child reads it in memory it shares with
/// us, so each [`Launch`] holds a reference until the process runs its program.
struct Process {
    cwd: CString,
    env: Vec<CString>,
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
        let process = Process {
            cwd: cstring(process["cwd"].as_str().unwrap_or("/"))?,
            env,
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
        };
        Ok(Entry {
            namespaces,
            cgroups,
            stack: std::cell::RefCell::new(vec![0u8; CHILD_STACK]),
            path_dirs,
            process: Arc::new(process),
        })
    }

    /// The program `args` names, found in the spec's `PATH` (as `execvp` would), with
    /// the spec's environment.
    fn command(&self, args: &[String]) -> Result<Command, String> {
        let Some(prog) = args.first() else {
            return Err("no command".into());
        };
        let argv: Vec<CString> = args
            .iter()
            .map(|a| cstring(a.as_str()))
            .collect::<Result<_, _>>()?;
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
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<*const libc::c_char> =
            self.process.env.iter().map(|a| a.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        Ok(Command {
            process: Arc::clone(&self.process),
            _argv: argv,
            argv_ptrs,
            env_ptrs,
            candidates,
            not_found: not_found.into_bytes(),
        })
    }

    /// Starts `args` in the container with the given standard streams (a child of the
    /// caller). With `ctty`, stdin is a terminal that becomes the process's controlling
    /// terminal. Failing to start the program itself is not an error here: the process
    /// reports it on `stderr` and exits 126 or 127.
    ///
    /// The process shares the caller's memory until it runs its program: the [`Launch`]
    /// keeps what it reads, and must be kept until then (see [`Launch::started`]).
    pub fn spawn(
        &self,
        args: &[String],
        stdio: [BorrowedFd<'_>; 3],
        ctty: bool,
    ) -> Result<Launch, String> {
        let cmd = self.command(args)?;
        // A stream given as another's number (stdout on fd 0, say) would be overwritten by
        // the child's dup of an earlier one: move those out of the way first.
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
        // The report pipe: the first child writes the second's pid (or what failed) on it;
        // the second holds it, close-on-exec, until it runs its program or ends.
        let (report_r, report_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let mut shared = Box::new(Shared {
            cmd,
            stdio: fds,
            ctty,
            report: report_w.as_raw_fd(),
            go: go_r.as_raw_fd(),
            stack: vec![0u8; if SHARE_MEMORY { CHILD_STACK } else { 0 }],
            stack_top: std::ptr::null_mut(),
        });
        if SHARE_MEMORY {
            let top = shared.stack.as_mut_ptr().wrapping_add(CHILD_STACK);
            shared.stack_top = top.wrapping_sub(top as usize % 16).cast();
        }
        let first_plan = First {
            namespaces: &self.namespaces,
            shared: &shared,
        };
        // The first child only joins the namespaces and clones the second: it shares our
        // memory, on a stack of its own, while we wait (vfork-style).
        let mut stack = self.stack.borrow_mut();
        extern "C" fn first(plan: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `plan` is the `First` below, alive while we are suspended, and this
            // runs in the new process, which only makes system calls on it.
            unsafe { (*(plan as *const First<'_>)).run() }
        }
        // SAFETY: CLONE_VM|CLONE_VFORK suspends this thread until the child exits; the
        // child runs `first` on `stack`, which outlives it.
        let first_pid = unsafe {
            let top = stack.as_mut_ptr().add(stack.len());
            let top = top.sub(top as usize % 16);
            libc::clone(
                first,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&first_plan as *const First<'_>).cast_mut().cast(),
            )
        };
        if first_pid < 0 {
            return Err(format!("clone: {}", std::io::Error::last_os_error()));
        }
        drop(report_w);
        drop(go_r);
        let mut started = File::from(report_r);
        let msg = read_report(&mut started);
        let mut status = 0;
        // SAFETY: waits for our own child, which has exited (it was a vfork).
        unsafe { libc::waitpid(first_pid, &mut status, 0) };
        let child = match msg {
            Ok(Report::Pid(pid)) => pid,
            Ok(Report::Failed(stage, errno)) => {
                return Err(format!(
                    "entering the container: {}: {}",
                    if stage == 0 { "setns" } else { "clone" },
                    std::io::Error::from_raw_os_error(errno)
                ))
            }
            Ok(Report::Died) => {
                // Killed between its clone and its report, it may have left a second
                // child reading `shared`: it is never freed.
                std::mem::forget(shared);
                return Err("entering the container: the helper process died".into());
            }
            Err(e) => {
                // A second child may exist, reading `shared`: it is never freed.
                std::mem::forget(shared);
                return Err(format!("reading from the entering process: {e}"));
            }
        };
        let kill = |e: String| {
            // SAFETY: kill and waitpid on our own child; once reaped it no longer reads
            // `shared`.
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
        Ok(Launch {
            pid: child,
            started,
            shared: Some(shared),
        })
    }
}

/// What the first child reported.
enum Report {
    Pid(i32),
    Failed(u8, i32),
    Died,
}

/// Reads the first child's message: `P` and a pid, or `E`, a stage and an errno. Not to
/// the end: the second child holds the pipe until it runs its program.
fn read_report(r: &mut File) -> std::io::Result<Report> {
    let mut msg = [0u8; 6];
    let mut n = 0;
    loop {
        let want = match msg[0] {
            b'P' if n > 0 => 5,
            _ => 6,
        };
        if n >= want {
            break;
        }
        match r.read(&mut msg[n..want]) {
            Ok(0) => return Ok(Report::Died),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(match msg[0] {
        b'P' => Report::Pid(i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]])),
        b'E' => Report::Failed(msg[1], i32::from_ne_bytes([msg[2], msg[3], msg[4], msg[5]])),
        _ => Report::Died,
    })
}

/// A process [`Entry::spawn`] started. Until it runs its program (or ends), it reads
/// memory it shares with the caller, which this handle keeps alive.
pub struct Launch {
    pid: i32,
    /// The report pipe, at its end once the process ran its program or ended.
    started: File,
    shared: Option<Box<Shared>>,
}

impl Launch {
    /// The process id (as the caller sees it).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process has run its program or ended, without waiting.
    pub fn started(&mut self) -> bool {
        self.poll(0)
    }

    /// Waits until the process has run its program or ended; returns its pid. A process
    /// in a frozen cgroup waits for its thaw, and so does this.
    pub fn wait_started(mut self) -> i32 {
        self.poll(-1);
        self.pid
    }

    fn poll(&mut self, timeout_ms: libc::c_int) -> bool {
        if self.shared.is_none() {
            return true;
        }
        let mut pfd = libc::pollfd {
            fd: self.started.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: polls one fd we own.
            let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            if r <= 0 {
                return false;
            }
            break;
        }
        // Nothing but the end ever comes after the report.
        let mut b = [0u8; 1];
        if matches!(self.started.read(&mut b), Ok(0)) {
            self.shared = None;
            return true;
        }
        false
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        if !self.started() {
            // It still reads our memory (frozen, say): killed, and the memory is left to
            // it, never freed, so it cannot run on freed memory.
            // SAFETY: kill on our own child, not yet reaped (the caller reaps after this).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            std::mem::forget(self.shared.take());
        }
    }
}

/// A process that starts one program in the container again and again, for a health
/// check that runs every few seconds: [`Entry::launcher`] makes it once, and each
/// [`Launcher::request`] is then one clone and an `execve`.
///
/// The launcher is a fork of the caller that moves itself into the container's cgroups,
/// joins its namespaces (the pid namespace for its children), takes on the process spec's
/// credentials, capabilities, limits and seccomp filter, and then waits on a socket.
/// For each request it clones a child (`CLONE_PARENT`: the caller's child, in the
/// container's pid namespace and cgroups from birth) that sets up its standard streams
/// and runs the program. Compared with [`Entry::spawn`], that leaves out the namespace
/// joins, a helper process, the cgroup moves (with a kernel lock that waits for an RCU
/// grace period), the seccomp filter load and the capability calls of every probe.
///
/// The launcher is a process in the container's cgroups: it counts in `pids.current`
/// (and against a pids limit), and `top` leaves it out by its name, `berth-probes`.
/// It ends when its socket closes or its parent dies; dropping the handle kills it. The
/// caller reaps it. It never blocks the caller: frozen with the container, it just
/// does not answer.
pub struct Launcher {
    pid: i32,
    sock: OwnedFd,
}

/// The name the launcher goes by (its `comm`).
pub const LAUNCHER_NAME: &str = "berth-probes";

/// What the launcher reads after its fork: prepared before it.
struct LauncherPlan<'a> {
    entry: &'a Entry,
    cmd: Command,
    /// The socket (launcher's end) and /dev/null.
    sock: RawFd,
    null: RawFd,
    parent: libc::pid_t,
    /// The stack its children run on until they run the program.
    stack: Vec<u8>,
}

/// What a launched child reads: in the launcher's memory, which it shares.
struct LaunchedChild<'a> {
    cmd: &'a Command,
    out: RawFd,
}

impl Entry {
    /// Starts a [`Launcher`] for `args`. Failures in the launcher's set-up come as the
    /// reply to the first request.
    pub fn launcher(&self, args: &[String]) -> Result<Launcher, String> {
        let cmd = self.command(args)?;
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two fds on success, which we then own.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(format!("socketpair: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fresh fds from socketpair.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let null = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        // The launcher puts its socket and /dev/null on fds 0 to 2: these must not be
        // there already.
        let high = |fd: RawFd| -> Result<OwnedFd, String> {
            let h = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
                .map_err(|e| format!("dup: {e}"))?;
            // SAFETY: a fresh fd from F_DUPFD_CLOEXEC, owned here.
            Ok(unsafe { OwnedFd::from_raw_fd(h) })
        };
        let theirs = high(theirs.as_raw_fd())?;
        let null = high(null.as_raw_fd())?;
        let plan = LauncherPlan {
            entry: self,
            cmd,
            sock: theirs.as_raw_fd(),
            null: null.as_raw_fd(),
            // SAFETY: getpid cannot fail.
            parent: unsafe { libc::getpid() },
            stack: vec![0u8; CHILD_STACK],
        };
        // SAFETY: the child only makes system calls on memory prepared above (its copy)
        // and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: in the forked child.
            unsafe { plan.run() }
        }
        nix::fcntl::fcntl(
            ours.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| format!("fcntl: {e}"))?;
        Ok(Launcher { pid, sock: ours })
    }
}

impl LauncherPlan<'_> {
    /// The launcher: sets itself up, then starts the program on each request.
    ///
    /// # Safety
    /// Only in the child of a fork; it makes system calls only, and never returns.
    unsafe fn run(&self) -> ! {
        let p = |ptr: *const libc::c_void| ptr as usize;
        // SAFETY: system calls on fds and memory prepared before the fork.
        unsafe {
            let pdeathsig = || {
                sys(
                    libc::SYS_prctl,
                    args([libc::PR_SET_PDEATHSIG as usize, libc::SIGKILL as usize]),
                );
                if sys(libc::SYS_getppid, args([])) != self.parent as isize {
                    exit(1);
                }
            };
            pdeathsig();
            // Set-up failures go to the socket: the reply to the first request.
            sys(libc::SYS_dup3, args([self.sock as usize, 2, 0]));
            for (_, f) in &self.entry.cgroups {
                // "0": the writer itself.
                check(
                    sys(
                        libc::SYS_write,
                        args([f.as_raw_fd() as usize, p(b"0".as_ptr().cast()), 1]),
                    ),
                    b"joining the container's cgroup",
                );
            }
            for (fd, flag) in &self.entry.namespaces {
                check(
                    sys(
                        libc::SYS_setns,
                        args([fd.as_raw_fd() as usize, *flag as usize]),
                    ),
                    b"setns",
                );
            }
            // 0: the socket, 1: /dev/null, 2: the socket; nothing else.
            sys(libc::SYS_dup3, args([self.sock as usize, 0, 0]));
            sys(libc::SYS_dup3, args([self.null as usize, 1, 0]));
            sys(libc::SYS_close_range, args([3, u32::MAX as usize, 0]));
            let name = LAUNCHER_NAME.as_bytes();
            let mut comm = [0u8; 16];
            comm[..name.len()].copy_from_slice(name);
            sys(
                libc::SYS_prctl,
                args([libc::PR_SET_NAME as usize, p(comm.as_ptr().cast())]),
            );
            // Every signal blocked (its children unblock them) and at its default: what
            // the children inherit is then what a container process starts with.
            set_signal_mask(!0);
            default_signal_dispositions();
            sys(libc::SYS_setsid, args([]));
            self.cmd.process.take_on();
            // Changing credentials clears the parent-death signal.
            pdeathsig();
            let top = self.stack.as_ptr().add(self.stack.len()).cast_mut();
            let top = top.sub(top as usize % 16);
            loop {
                let out = match receive_fd(0) {
                    Some(Some(fd)) => fd,
                    Some(None) => continue,
                    None => exit(0),
                };
                let child = LaunchedChild {
                    cmd: &self.cmd,
                    out,
                };
                extern "C" fn launched(child: *mut libc::c_void) -> libc::c_int {
                    // SAFETY: `child` is the `LaunchedChild` below, alive while the
                    // launcher is suspended (CLONE_VFORK).
                    unsafe { (*(child as *const LaunchedChild<'_>)).run() }
                }
                // SAFETY: CLONE_VM|CLONE_VFORK suspends the launcher until the child runs
                // its program or ends; it runs `launched` on `stack`.
                let pid = libc::clone(
                    launched,
                    top.cast(),
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT | libc::SIGCHLD,
                    (&child as *const LaunchedChild<'_>).cast_mut().cast(),
                );
                let err = errno();
                let mut msg = [0u8; 160];
                let n = if pid > 0 {
                    msg[0] = b'P';
                    msg[1..5].copy_from_slice(&pid.to_ne_bytes());
                    5
                } else {
                    failure_message(&mut msg, b"clone", err)
                };
                // The reply first: the caller reads it once the output ends, which
                // needs our copy of the pipe closed.
                if sys(libc::SYS_write, args([0, p(msg.as_ptr().cast()), n])) < 0 {
                    exit(0);
                }
                sys(libc::SYS_close, args([out as usize]));
            }
        }
    }
}

/// Receives one message on `sock`: Some(the fd it carried, if any), or None at its end.
///
/// # Safety
/// As for [`Process::take_on`].
unsafe fn receive_fd(sock: RawFd) -> Option<Option<RawFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    loop {
        // SAFETY: recvmsg fills the buffers `msg` points to.
        let n = unsafe {
            sys(
                libc::SYS_recvmsg,
                args([
                    sock as usize,
                    (&mut msg as *mut libc::msghdr) as usize,
                    libc::MSG_CMSG_CLOEXEC as usize,
                ]),
            )
        };
        if n == -(libc::EINTR as isize) {
            continue;
        }
        if n <= 0 {
            return None;
        }
        break;
    }
    // SAFETY: the control buffer recvmsg filled, read through the CMSG macros.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_level != libc::SOL_SOCKET || (*c).cmsg_type != libc::SCM_RIGHTS
        {
            return Some(None);
        }
        Some(Some(std::ptr::read_unaligned(
            libc::CMSG_DATA(c).cast::<RawFd>(),
        )))
    }
}

impl LaunchedChild<'_> {
    /// Sets up the standard streams (stdin /dev/null, stdout and stderr `out`) and runs
    /// the program.
    ///
    /// # Safety
    /// Only in the child the launcher clones; it shares the launcher's memory.
    unsafe fn run(&self) -> ! {
        // SAFETY: system calls on fds the launcher holds.
        unsafe {
            check(sys(libc::SYS_dup3, args([1, 0, 0])), b"dup2");
            check(
                sys(libc::SYS_dup3, args([self.out as usize, 1, 0])),
                b"dup2",
            );
            check(
                sys(libc::SYS_dup3, args([self.out as usize, 2, 0])),
                b"dup2",
            );
            sys(
                libc::SYS_close_range,
                args([3, u32::MAX as usize, 4 /* CLOEXEC */]),
            );
            set_signal_mask(0);
            sys(libc::SYS_setsid, args([]));
            self.cmd.exec()
        }
    }
}

impl Launcher {
    /// The launcher's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Asks for one run of the program, with stdout and stderr on `out` (stdin is
    /// /dev/null). Never blocks; the reply comes later (see [`Launcher::reply`]).
    pub fn request(&self, out: BorrowedFd<'_>) -> Result<(), String> {
        let byte = [b'g'];
        let iov = [std::io::IoSlice::new(&byte)];
        let fds = [out.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<()>(
            self.sock.as_raw_fd(),
            &iov,
            &cmsg,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
        .map_err(|e| format!("asking the probe launcher: {e}"))
    }

    /// The reply to a request, if it has come: the started process's pid (the caller's
    /// child, for the caller to reap), or what failed (the launcher is then of no more
    /// use). Each reply comes before the launcher lets go of the request's `out`, so a
    /// caller that reads the program's output to its end need not wait for it.
    pub fn reply(&self) -> Option<Result<i32, String>> {
        let mut buf = [0u8; 256];
        let mut reset = false;
        let n = loop {
            // SAFETY: recv into a buffer of ours.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                break n;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) if reset => return Some(Err("the probe launcher ended".into())),
                Some(libc::EAGAIN) => return None,
                Some(libc::EINTR) => {}
                // A launcher that ended with a request unread resets the connection; the
                // error comes first, then what it said before it ended.
                Some(libc::ECONNRESET) if !reset => reset = true,
                _ => return Some(Err(format!("the probe launcher: {e}"))),
            }
        };
        let msg = &buf[..n as usize];
        Some(match msg {
            [] => Err("the probe launcher ended".into()),
            [b'P', a, b, c, d] => Ok(i32::from_ne_bytes([*a, *b, *c, *d])),
            text => Err(String::from_utf8_lossy(text).trim_end().to_string()),
        })
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // SAFETY: kill on our own child, not yet reaped (the caller reaps it).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
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

/// A program and its environment, prepared before any clone and never changed: what a
/// child reads until it runs the program.
struct Command {
    /// Keeps the strings `env_ptrs` points into, and says what the process takes on.
    process: Arc<Process>,
    /// The strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    /// Where `execve` looks for the program, in order.
    candidates: Vec<CString>,
    not_found: Vec<u8>,
}

/// What the second child reads, prepared before the first clone and never changed.
struct Shared {
    cmd: Command,
    stdio: [RawFd; 3],
    ctty: bool,
    report: RawFd,
    go: RawFd,
    /// The second child's stack, when it shares our memory.
    stack: Vec<u8>,
    stack_top: *mut libc::c_void,
}

/// What the first child does.
struct First<'a> {
    namespaces: &'a [(OwnedFd, libc::c_int)],
    shared: &'a Shared,
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

impl First<'_> {
    /// Joins the namespaces, clones the process that will run the program, reports it.
    ///
    /// # Safety
    /// Only in a child cloned with CLONE_VM|CLONE_VFORK: its parent's thread is suspended
    /// until this one exits, and nothing here allocates or frees.
    unsafe fn run(&self) -> ! {
        let report = |msg: &[u8]| {
            // SAFETY: writes a stack buffer to our pipe.
            unsafe { libc::write(self.shared.report, msg.as_ptr().cast(), msg.len()) };
        };
        let fail = |stage: u8, err: i32| -> ! {
            let v = err.to_ne_bytes();
            report(&[b'E', stage, v[0], v[1], v[2], v[3]]);
            // SAFETY: leaving the child.
            unsafe { libc::_exit(1) }
        };
        for (fd, flag) in self.namespaces {
            // SAFETY: setns on an fd we hold.
            if unsafe { libc::setns(fd.as_raw_fd(), *flag) } != 0 {
                fail(0, errno());
            }
        }
        extern "C" fn second(shared: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `shared` is the `Shared` the `Launch` keeps until this process runs
            // its program or ends.
            unsafe { (*(shared as *const Shared)).second_child() }
        }
        let shared = (self.shared as *const Shared).cast_mut().cast();
        // SAFETY: CLONE_PARENT makes the new process our parent's child. Sharing memory,
        // it runs `second` on its own stack, on what the `Launch` keeps; otherwise (no
        // stack given) it runs on a copy of ours.
        let pid = unsafe {
            if SHARE_MEMORY {
                libc::clone(
                    second,
                    self.shared.stack_top,
                    libc::CLONE_VM | libc::CLONE_PARENT | libc::SIGCHLD,
                    shared,
                )
            } else {
                let pid = libc::syscall(
                    libc::SYS_clone,
                    (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                );
                if pid == 0 {
                    second(shared);
                }
                pid as libc::c_int
            }
        };
        if pid < 0 {
            fail(1, errno());
        }
        let v = pid.to_ne_bytes();
        report(&[b'P', v[0], v[1], v[2], v[3]]);
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) }
    }
}

impl Shared {
    /// Waits to be moved into the cgroups, takes on the container's credentials and
    /// restrictions, and runs the program.
    ///
    /// # Safety
    /// Only in the child cloned by [`First::run`]. It may share the spawner's memory, and
    /// its `errno`: everything here is a system call through [`sys`] on memory prepared
    /// before the first clone, or on its own stack.
    unsafe fn second_child(&self) -> ! {
        let p = |ptr: *const libc::c_void| ptr as usize;
        // SAFETY: system calls on fds and buffers prepared before the clone; each failure
        // is reported on stderr (the fd dup'ed to 2) and ends the child.
        unsafe {
            let mut b = [0u8; 1];
            // EOF (the caller gave up) ends us.
            if sys(
                libc::SYS_read,
                args([self.go as usize, p(b.as_mut_ptr().cast()), 1]),
            ) != 1
            {
                exit(126);
            }
            for (i, fd) in self.stdio.iter().enumerate() {
                if *fd != i as RawFd {
                    check(sys(libc::SYS_dup3, args([*fd as usize, i, 0])), b"dup2");
                }
            }
            sys(
                libc::SYS_close_range,
                args([3, u32::MAX as usize, 4 /* CLOEXEC */]),
            );
            // Dispositions first: no handler of ours may run here once signals are let in.
            default_signal_dispositions();
            set_signal_mask(0);
            sys(libc::SYS_setsid, args([]));
            if self.ctty {
                check(
                    sys(libc::SYS_ioctl, args([0, libc::TIOCSCTTY as usize, 0])),
                    b"setting the controlling terminal",
                );
            }
            self.cmd.process.take_on();
            self.cmd.exec()
        }
    }
}

impl Process {
    /// Takes on the process spec's working directory, limits, oom score, credentials,
    /// capabilities and seccomp filter (in runc's order). Each failure is reported on
    /// stderr and ends the process.
    ///
    /// # Safety
    /// Only in a child process: it makes its system calls through [`sys`] on memory
    /// prepared before the clone, and allocates nothing.
    unsafe fn take_on(&self) {
        let e = self;
        let p = |ptr: *const libc::c_void| ptr as usize;
        // SAFETY: system calls on buffers prepared before the clone.
        unsafe {
            check(
                sys(libc::SYS_chdir, args([p(e.cwd.as_ptr().cast())])),
                b"chdir to the working directory",
            );
            for (res, lim) in &e.rlimits {
                check(
                    sys(
                        libc::SYS_prlimit64,
                        args([0, *res as usize, p((lim as *const libc::rlimit).cast()), 0]),
                    ),
                    b"setrlimit",
                );
            }
            if let Some(v) = &e.oom_score_adj {
                let fd = sys(
                    libc::SYS_openat,
                    args([
                        libc::AT_FDCWD as usize,
                        p(c"/proc/self/oom_score_adj".as_ptr().cast()),
                        (libc::O_WRONLY | libc::O_CLOEXEC) as usize,
                    ]),
                );
                check(fd, b"oom_score_adj");
                let len = v.as_bytes().len();
                check(
                    sys(
                        libc::SYS_write,
                        args([fd as usize, p(v.as_ptr().cast()), len]),
                    ),
                    b"oom_score_adj",
                );
                sys(libc::SYS_close, args([fd as usize]));
            }
            let prctl = |a: [usize; 3]| sys(libc::SYS_prctl, args(a));
            if e.no_new_privileges {
                check(
                    prctl([libc::PR_SET_NO_NEW_PRIVS as usize, 1, 0]),
                    b"no_new_privs",
                );
            } else {
                self.load_seccomp();
            }
            for cap in &e.drop_bounding {
                check(
                    prctl([libc::PR_CAPBSET_DROP as usize, *cap as usize, 0]),
                    b"dropping a bounding capability",
                );
            }
            check(prctl([libc::PR_SET_KEEPCAPS as usize, 1, 0]), b"keepcaps");
            check(
                sys(
                    libc::SYS_setgroups,
                    args([e.groups.len(), p(e.groups.as_ptr().cast())]),
                ),
                b"setgroups",
            );
            let (g, u) = (e.gid as usize, e.uid as usize);
            check(sys(libc::SYS_setresgid, args([g, g, g])), b"setgid");
            check(sys(libc::SYS_setresuid, args([u, u, u])), b"setuid");
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
            check(
                sys(
                    libc::SYS_capset,
                    args([
                        p((&header as *const CapHeader).cast()),
                        p(data.as_ptr().cast()),
                    ]),
                ),
                b"capset",
            );
            for cap in &e.ambient {
                check(
                    sys(
                        libc::SYS_prctl,
                        args([
                            libc::PR_CAP_AMBIENT as usize,
                            libc::PR_CAP_AMBIENT_RAISE as usize,
                            *cap as usize,
                            0,
                            0,
                        ]),
                    ),
                    b"raising an ambient capability",
                );
            }
            if e.no_new_privileges {
                self.load_seccomp();
            }
        }
    }

    /// # Safety
    /// As for [`Process::take_on`].
    unsafe fn load_seccomp(&self) {
        if let Some(f) = &self.seccomp {
            let r = load_filter(f);
            if r < 0 {
                // SAFETY: as for the caller.
                unsafe { fail(b"loading the seccomp filter", -r as i32) }
            }
        }
    }
}

impl Command {
    /// Runs the program: the first candidate `execve` takes. A program found nowhere is
    /// reported on stderr with exit code 127, one that cannot run with 126.
    ///
    /// # Safety
    /// Only in a child process, as for [`Process::take_on`].
    unsafe fn exec(&self) -> ! {
        let p = |ptr: *const libc::c_void| ptr as usize;
        let mut first_err = 0;
        // SAFETY: execve and write on memory prepared before the clone.
        unsafe {
            for c in &self.candidates {
                let r = sys(
                    libc::SYS_execve,
                    args([
                        p(c.as_ptr().cast()),
                        p(self.argv_ptrs.as_ptr().cast()),
                        p(self.env_ptrs.as_ptr().cast()),
                    ]),
                );
                let err = -r as i32;
                // Like execvp: a missing entry moves on; the first other error is kept.
                if err != libc::ENOENT && err != libc::ENOTDIR && first_err == 0 {
                    first_err = err;
                }
            }
            if first_err == 0 {
                let msg = &self.not_found;
                sys(
                    libc::SYS_write,
                    args([2, p(msg.as_ptr().cast()), msg.len()]),
                );
                exit(127);
            }
            fail(b"exec", first_err)
        }
    }
}

/// Sets the calling thread's signal mask to `mask` (a bit per signal, 1 at bit 0).
///
/// # Safety
/// As for [`Process::take_on`].
unsafe fn set_signal_mask(mask: u64) {
    // SAFETY: rt_sigprocmask reads a u64 on our stack.
    unsafe {
        sys(
            libc::SYS_rt_sigprocmask,
            args([
                libc::SIG_SETMASK as usize,
                (&mask as *const u64) as usize,
                0,
                8,
            ]),
        );
    }
}

/// Ends the child through [`fail`] when `r`, a [`sys`] result, is an error.
///
/// # Safety
/// As for [`fail`].
unsafe fn check(r: isize, what: &[u8]) {
    if r < 0 {
        // SAFETY: as for the caller.
        unsafe { fail(what, -r as i32) }
    }
}

/// Formats `OCI runtime exec failed: unable to start container process: WHAT: errno N`
/// and a newline into `buf`; returns its length. Allocates nothing.
fn failure_message(buf: &mut [u8; 160], what: &[u8], err: i32) -> usize {
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
    n + 1
}

/// Writes the failure message (see [`failure_message`]) to stderr and exits 126.
///
/// # Safety
/// Only in a child process about to end.
unsafe fn fail(what: &[u8], err: i32) -> ! {
    let mut buf = [0u8; 160];
    let n = failure_message(&mut buf, what, err);
    // SAFETY: writes a stack buffer, then leaves the child.
    unsafe {
        sys(libc::SYS_write, args([2, buf.as_ptr() as usize, n]));
        exit(126)
    }
}

/// Ends the calling process with `code`, through [`sys`].
///
/// # Safety
/// Only in a child about to end.
unsafe fn exit(code: i32) -> ! {
    // SAFETY: exit_group does not return.
    unsafe { sys(libc::SYS_exit_group, args([code as usize])) };
    unreachable!("exit_group returned")
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

    /// An entry into this test's own namespaces, with the given capabilities.
    fn entry(caps: &[&str]) -> Entry {
        Entry::prepare(&spec(caps), std::process::id() as i32, vec![], None).unwrap()
    }

    /// Runs `args`; returns (exit code, stdout and stderr).
    fn run(entry: &Entry, args: &[&str]) -> (i32, String) {
        let (r, w) = pipe().unwrap();
        let null = File::open("/dev/null").unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let launch = entry
            .spawn(&args, [null.as_fd(), w.as_fd(), w.as_fd()], false)
            .unwrap();
        drop(w);
        let mut out = String::new();
        File::from(r).read_to_string(&mut out).unwrap();
        let status = reap(launch.pid());
        assert!(libc::WIFEXITED(status), "{status:#x}");
        (libc::WEXITSTATUS(status), out)
    }

    fn reap(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: waits for a child spawn made (CLONE_PARENT: ours).
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    #[test]
    fn the_spawned_process_leaves_the_spawning_threads_errno_alone() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        // It shares our memory until it runs its program: a PATH of many missing
        // directories makes it fail execve thousands of times meanwhile.
        let mut spec = spec(&[]);
        let path: Vec<String> = (0..3000).map(|i| format!("/no/such/dir{i}")).collect();
        spec["process"]["env"] = json!([format!("PATH={}:/bin:/usr/bin", path.join(":"))]);
        let e = Entry::prepare(&spec, std::process::id() as i32, vec![], None).unwrap();
        let null = File::open("/dev/null").unwrap();
        let mut launch = e
            .spawn(&["true".to_string()], [null.as_fd(); 3], false)
            .unwrap();
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = 4242 };
        let mut changed = None;
        while !launch.started() {
            // SAFETY: as above.
            let now = unsafe { *libc::__errno_location() };
            if now != 4242 {
                changed = Some(now);
                break;
            }
        }
        assert_eq!(
            changed, None,
            "our errno changed while the child searched PATH"
        );
        let status = reap(launch.pid());
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }

    /// A fresh freezer cgroup (in a v1 freezer hierarchy, or a pure v2 tree), removed
    /// when dropped; None (the test skips) where there is none or we are not root.
    struct Freezer {
        dir: PathBuf,
        file: &'static str,
        frozen: &'static str,
        thawed: &'static str,
    }

    impl Freezer {
        fn new(tag: &str) -> Option<Freezer> {
            if !is_root() {
                eprintln!("skipped: needs root");
                return None;
            }
            let root = std::path::Path::new("/sys/fs/cgroup");
            let (base, file, frozen, thawed) = if root.join("freezer").is_dir() {
                (root.join("freezer"), "freezer.state", "FROZEN", "THAWED")
            } else if root.join("cgroup.controllers").exists() {
                (root.to_path_buf(), "cgroup.freeze", "1", "0")
            } else {
                eprintln!("skipped: no freezer cgroup");
                return None;
            };
            let dir = base.join(format!("berth-{tag}-test-{}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            Some(Freezer {
                dir,
                file,
                frozen,
                thawed,
            })
        }

        fn freeze(&self, on: bool) {
            let value = if on { self.frozen } else { self.thawed };
            std::fs::write(self.dir.join(self.file), value).unwrap();
        }

        fn procs(&self) -> PathBuf {
            self.dir.join("cgroup.procs")
        }
    }

    impl Drop for Freezer {
        fn drop(&mut self) {
            // Its last process may take a moment to leave.
            for _ in 0..100 {
                if std::fs::remove_dir(&self.dir).is_ok() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    #[test]
    fn a_frozen_process_blocks_nothing_and_is_killed_when_let_go() {
        let Some(cg) = Freezer::new("enter") else {
            return;
        };
        cg.freeze(true);
        let e = Entry::prepare(
            &spec(&[]),
            std::process::id() as i32,
            vec![cg.procs()],
            None,
        )
        .unwrap();
        let null = File::open("/dev/null").unwrap();
        let mut launch = e
            .spawn(&["true".to_string()], [null.as_fd(); 3], false)
            .unwrap();
        let pid = launch.pid();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!launch.started(), "a frozen process ran its program");
        // Let go before it ran: it is killed, and keeps the memory it reads.
        drop(launch);
        cg.freeze(false);
        let status = reap(pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{status:#x}"
        );
    }

    use std::os::fd::AsFd;

    #[test]
    fn spawns_with_the_specs_environment_and_reports_a_missing_program() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let e = entry(&["CAP_CHOWN"]);
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

    /// Runs the launcher's program once; returns (exit code, stdout and stderr).
    fn launch(l: &Launcher) -> (i32, String) {
        let (r, w) = pipe().unwrap();
        l.request(w.as_fd()).unwrap();
        drop(w);
        let mut out = String::new();
        File::from(r).read_to_string(&mut out).unwrap();
        // The reply is there by the end of the output.
        let pid = l
            .reply()
            .expect("no reply by the end of the output")
            .unwrap();
        let status = reap(pid);
        assert!(libc::WIFEXITED(status), "{status:#x}");
        (libc::WEXITSTATUS(status), out)
    }

    fn comm(pid: i32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    #[test]
    fn a_launcher_starts_its_program_again_and_again_as_the_spec_says() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let e = entry(&["CAP_CHOWN"]);
        let args = [
            "sh",
            "-c",
            "echo $GREETING; grep -E '^(CapEff|NoNewPrivs|SigBlk|SigIgn)' /proc/self/status; \
             read x && echo read $x; exit 3",
        ]
        .map(String::from);
        let l = e.launcher(&args).unwrap();
        let pid = l.pid();
        for _ in 0..3 {
            let (code, out) = launch(&l);
            assert_eq!(code, 3, "{out}");
            assert_eq!(
                out,
                "hi\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n\
                 CapEff:\t0000000000000001\nNoNewPrivs:\t1\n"
            );
        }
        assert_eq!(comm(pid), LAUNCHER_NAME);
        drop(l);
        let status = reap(pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{status:#x}"
        );
        let l = e.launcher(&["no-such-program-here".to_string()]).unwrap();
        let (code, out) = launch(&l);
        assert_eq!(code, 127);
        assert!(
            out.contains("\"no-such-program-here\": executable file not found in $PATH"),
            "{out}"
        );
        let pid = l.pid();
        drop(l);
        reap(pid);
    }

    #[test]
    fn a_launcher_reports_what_failed_and_ends_with_its_socket() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let mut bad = spec(&[]);
        bad["process"]["cwd"] = json!("/no/such/dir");
        let e = Entry::prepare(&bad, std::process::id() as i32, vec![], None).unwrap();
        let l = e.launcher(&["true".to_string()]).unwrap();
        let (r, w) = pipe().unwrap();
        l.request(w.as_fd()).unwrap();
        drop(w);
        // Its output ends (the request it never read goes with its socket), and the
        // reply is there by then.
        std::io::copy(&mut File::from(r), &mut std::io::sink()).unwrap();
        let err = l
            .reply()
            .expect("no reply by the end of the output")
            .unwrap_err();
        assert!(
            err.contains("chdir to the working directory: errno 2"),
            "{err}"
        );
        let status = reap(l.pid());
        assert_eq!(libc::WEXITSTATUS(status), 126);
        // A good one ends when its socket closes, not only when killed.
        let e = entry(&[]);
        let l = e.launcher(&["true".to_string()]).unwrap();
        let pid = l.pid();
        let Launcher { sock, .. } = &l;
        // SAFETY: shuts down our end; the handle's drop then kills a process that ended.
        unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
        let status = reap(pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
        std::mem::forget(l);
    }

    #[test]
    fn a_launcher_and_its_children_live_in_the_cgroup_and_a_frozen_one_blocks_nothing() {
        let Some(cg) = Freezer::new("launcher") else {
            return;
        };
        let name = cg.dir.file_name().unwrap().to_str().unwrap().to_string();
        let e = Entry::prepare(
            &spec(&[]),
            std::process::id() as i32,
            vec![cg.procs()],
            None,
        )
        .unwrap();
        let l = e
            .launcher(&["sh", "-c", "cat /proc/self/cgroup"].map(String::from))
            .unwrap();
        let (code, out) = launch(&l);
        assert_eq!(code, 0);
        assert!(out.contains(&name), "{out}");
        let procs = std::fs::read_to_string(cg.procs()).unwrap();
        assert!(procs.lines().any(|p| p == l.pid().to_string()), "{procs}");
        cg.freeze(true);
        let (_r, w) = pipe().unwrap();
        l.request(w.as_fd()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(l.reply().is_none(), "a frozen launcher replied");
        let pid = l.pid();
        drop(l);
        cg.freeze(false);
        let status = reap(pid);
        assert!(libc::WIFSIGNALED(status), "{status:#x}");
    }
}
