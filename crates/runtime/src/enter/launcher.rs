//! The probe launcher: a process that has entered the container once and starts each
//! probe as a clone of itself on request (see [`Launcher`]).

use super::*;

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
    pub(super) pid: i32,
    pub(super) sock: OwnedFd,
}

/// The name the launcher goes by (its `comm`).
pub const LAUNCHER_NAME: &str = "berth-probes";

/// What the launcher reads after its fork: prepared before it.
pub(super) struct LauncherPlan<'a> {
    pub(super) entry: &'a Entry,
    pub(super) cmd: Command,
    /// The socket (launcher's end) and /dev/null.
    pub(super) sock: RawFd,
    pub(super) null: RawFd,
    pub(super) parent: libc::pid_t,
    /// The stack its children run on until they run the program.
    pub(super) stack: Vec<u8>,
}

/// What a launched child reads: in the launcher's memory, which it shares.
pub(super) struct LaunchedChild<'a> {
    pub(super) cmd: &'a Command,
    pub(super) out: RawFd,
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
    pub(super) unsafe fn run(&self) -> ! {
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
pub(super) unsafe fn receive_fd(sock: RawFd) -> Option<Option<RawFd>> {
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
    pub(super) unsafe fn run(&self) -> ! {
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
