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
//! That code is `child.rs`; the probe launcher, which enters once and clones a probe per
//! request, is `launcher.rs`.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;

mod child;
mod launcher;

use child::*;
pub use launcher::{Launcher, LAUNCHER_NAME};

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
        let exec_failed = format!(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{prog}\": "
        );
        let not_found = format!(
            "{exec_failed}{}\n",
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
            exec_failed: exec_failed.into_bytes(),
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

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds on success, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fds from pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
        // It may have failed and ended before the request is sent: then the request
        // fails (as the health monitor expects), and what it said is still there.
        if let Err(e) = l.request(w.as_fd()) {
            assert!(e.contains("Broken pipe"), "{e}");
        }
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
        // Asked only after it has ended: the request fails, the reply is still there.
        let l = e.launcher(&["true".to_string()]).unwrap();
        // SAFETY: waits for our own child without reaping it (WNOWAIT).
        let ended = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                l.pid() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(ended, 0);
        let (_r, w) = pipe().unwrap();
        let err = l.request(w.as_fd()).unwrap_err();
        assert!(err.contains("Broken pipe"), "{err}");
        let err = l
            .reply()
            .expect("no reply from an ended launcher")
            .unwrap_err();
        assert!(
            err.contains("chdir to the working directory: errno 2"),
            "{err}"
        );
        assert_eq!(libc::WEXITSTATUS(reap(l.pid())), 126);
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
