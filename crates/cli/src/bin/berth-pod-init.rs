//! `berth-pod-init`: the process that holds a pod's shared PID namespace, as the pause
//! container does for containerd and CRI-O (no image to pull).
//!
//! The engine starts it with a new PID namespace for its children (`unshare` before the
//! exec). It forks once: the child is PID 1 of that namespace; the parent prints the
//! child's host PID on stdout and exits, so the child belongs to no berth process and
//! outlives the CRI service. The child drops every capability, reaps the pod's orphans
//! and exits on SIGTERM or SIGINT (taking the namespace, and all in it, with it).
//!
//! Only libc: it is one process per pod, and its memory is the pod's overhead.

use std::io::Write;

fn main() {
    // SAFETY: fork in a single-threaded process (nothing here starts a thread).
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("berth-pod-init: fork: {}", std::io::Error::last_os_error());
            std::process::exit(1);
        }
        0 => init(),
        child => {
            let mut out = std::io::stdout();
            let ok = writeln!(out, "{child}").and_then(|_| out.flush()).is_ok();
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
}

/// PID 1 of the pod: no capabilities, no open files, only signals.
fn init() -> ! {
    let devnull = c"/dev/null";
    // SAFETY: plain syscalls on this process's own state; the structures passed are
    // initialised and outlive the calls.
    unsafe {
        libc::setsid();
        libc::chdir(c"/".as_ptr());
        let null = libc::open(devnull.as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        libc::syscall(libc::SYS_capset, &header, data.as_ptr());

        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) != 0 {
                continue;
            }
            match sig {
                libc::SIGCHLD => {
                    while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
                }
                _ => libc::_exit(0),
            }
        }
    }
}
