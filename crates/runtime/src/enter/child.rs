//! The child side of an entry: code that runs in a process sharing the caller's memory
//! (vfork-style) until it execs, so it makes only raw system calls and never touches
//! the allocator or `errno`.

use super::*;

/// The stack of each child: they only make system calls.
pub(super) const CHILD_STACK: usize = 64 * 1024;

/// Whether the second child shares our memory (`CLONE_VM`) rather than getting a copy:
/// where [`sys`] can make system calls without touching `errno`, which it would share.
pub(super) const SHARE_MEMORY: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// A system call that leaves `errno` alone; returns its result, or -errno. The second
/// child shares our memory, and with it the `errno` of the thread that spawned it.
///
/// # Safety
/// As for the system call `n` with these arguments.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
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
pub(super) unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
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
pub(super) unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
    // SAFETY: as for the caller.
    let r = unsafe { libc::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        -(errno() as isize)
    } else {
        r as isize
    }
}

/// Arguments for [`sys`], padded.
pub(super) fn args<const N: usize>(a: [usize; N]) -> [usize; 6] {
    let mut out = [0; 6];
    out[..N].copy_from_slice(&a);
    out
}

/// A program and its environment, prepared before any clone and never changed: what a
/// child reads until it runs the program.
pub(super) struct Command {
    /// Keeps the strings `env_ptrs` points into, and says what the process takes on.
    pub(super) process: Arc<Process>,
    /// The strings `argv_ptrs` points into.
    pub(super) _argv: Vec<CString>,
    pub(super) argv_ptrs: Vec<*const libc::c_char>,
    pub(super) env_ptrs: Vec<*const libc::c_char>,
    /// Where `execve` looks for the program, in order.
    pub(super) candidates: Vec<CString>,
    pub(super) not_found: Vec<u8>,
    /// `…exec: "PROG": `, for an error [`errno_text`] can word.
    pub(super) exec_failed: Vec<u8>,
}

/// What the second child reads, prepared before the first clone and never changed.
pub(super) struct Shared {
    pub(super) cmd: Command,
    pub(super) stdio: [RawFd; 3],
    pub(super) ctty: bool,
    pub(super) report: RawFd,
    pub(super) go: RawFd,
    /// The second child's stack, when it shares our memory.
    pub(super) stack: Vec<u8>,
    pub(super) stack_top: *mut libc::c_void,
}

/// What the first child does.
pub(super) struct First<'a> {
    pub(super) namespaces: &'a [(OwnedFd, libc::c_int)],
    pub(super) shared: &'a Shared,
}

pub(super) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The `capset` arguments (version 3: two 32-bit halves).
#[repr(C)]
pub(super) struct CapHeader {
    pub(super) version: u32,
    pub(super) pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct CapData {
    pub(super) effective: u32,
    pub(super) permitted: u32,
    pub(super) inheritable: u32,
}

impl First<'_> {
    /// Joins the namespaces, clones the process that will run the program, reports it.
    ///
    /// # Safety
    /// Only in a child cloned with CLONE_VM|CLONE_VFORK: its parent's thread is suspended
    /// until this one exits, and nothing here allocates or frees.
    pub(super) unsafe fn run(&self) -> ! {
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
    pub(super) unsafe fn second_child(&self) -> ! {
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
    pub(super) unsafe fn take_on(&self) {
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
    pub(super) unsafe fn load_seccomp(&self) {
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
    pub(super) unsafe fn exec(&self) -> ! {
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
            if let Some(text) = errno_text(first_err) {
                // As Docker words it: `exec: "/etc/passwd": permission denied`.
                for part in [self.exec_failed.as_slice(), text, b"\n"] {
                    sys(
                        libc::SYS_write,
                        args([2, p(part.as_ptr().cast()), part.len()]),
                    );
                }
                exit(126);
            }
            fail(b"exec", first_err)
        }
    }
}

/// Sets the calling thread's signal mask to `mask` (a bit per signal, 1 at bit 0).
///
/// # Safety
/// As for [`Process::take_on`].
pub(super) unsafe fn set_signal_mask(mask: u64) {
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
pub(super) unsafe fn check(r: isize, what: &[u8]) {
    if r < 0 {
        // SAFETY: as for the caller.
        unsafe { fail(what, -r as i32) }
    }
}

/// The words Go (and so Docker) gives the errors an `execve` of a program that is there
/// may end with; None for others.
pub(super) fn errno_text(err: i32) -> Option<&'static [u8]> {
    Some(match err {
        libc::EACCES => b"permission denied",
        libc::ENOEXEC => b"exec format error",
        libc::EPERM => b"operation not permitted",
        libc::EISDIR => b"is a directory",
        libc::ELOOP => b"too many levels of symbolic links",
        libc::E2BIG => b"argument list too long",
        libc::ENOMEM => b"cannot allocate memory",
        libc::ETXTBSY => b"text file busy",
        _ => return None,
    })
}

/// Formats `OCI runtime exec failed: unable to start container process: WHAT: errno N`
/// and a newline into `buf`; returns its length. Allocates nothing.
pub(super) fn failure_message(buf: &mut [u8; 160], what: &[u8], err: i32) -> usize {
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
pub(super) unsafe fn fail(what: &[u8], err: i32) -> ! {
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
pub(super) unsafe fn exit(code: i32) -> ! {
    // SAFETY: exit_group does not return.
    unsafe { sys(libc::SYS_exit_group, args([code as usize])) };
    unreachable!("exit_group returned")
}
