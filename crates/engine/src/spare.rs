//! A monitor started before the container it will watch exists.
//!
//! Starting `berth-monitor` (exec, the dynamic loader, relocations) takes 1 to 2 ms, and
//! on the path of `berth run` it used to come after the container was created and its
//! bundle written. `berth run` now starts a spare monitor first, which waits on a socket
//! while the engine does that work on the other core, and is then handed the container:
//! its id and the descriptors a spawned monitor would have inherited (the log as stderr,
//! the readiness pipe as fd 3, published ports' reservations as 4, 5, …). A spare that is
//! never handed one ends when its socket closes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The most descriptors one hand-over carries (the kernel's SCM_MAX_FD is 253); a start
/// that publishes more ports spawns its own monitor.
const MAX_FDS: usize = 250;

/// Where a spare's command line will name its container, once it has one (`ps` then shows
/// `berth-monitor … --id ID` as for a spawned monitor): as long as a container id.
const ID_PLACEHOLDER: &str = "................................................................";

/// The engine's side: a spare monitor process and the socket that hands it a container.
pub struct Spare {
    child: Option<Child>,
    socket: Option<UnixStream>,
}

impl Spare {
    /// Starts `monitor` as a spare for the stores at `root` and `run_root`; None when it
    /// cannot be started (the start then spawns a monitor as usual).
    pub fn spawn(monitor: &Path, root: &Path, run_root: &Path) -> Option<Spare> {
        let root = std::path::absolute(root).ok()?;
        let run_root = std::path::absolute(run_root).ok()?;
        let (ours, theirs) = UnixStream::pair().ok()?;
        // The socket is its stdin (so no descriptor of ours is ever inheritable, and a
        // thread of ours that forks meanwhile passes it on to no one). No pre_exec: std
        // spawns with posix_spawn (vfork), not a copy of this process.
        let child = Command::new(monitor)
            .arg("--root")
            .arg(root)
            .arg("--run-root")
            .arg(run_root)
            .arg("--spare")
            .arg("--id")
            .arg(ID_PLACEHOLDER)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Spare {
            child: Some(child),
            socket: Some(ours),
        })
    }

    /// Hands the spare container `id`; returns the monitor's process, or the spare back
    /// when the hand-over cannot be made (too many descriptors, or the spare is gone).
    pub(crate) fn hand_over(
        mut self,
        id: &str,
        wait_attach: bool,
        log: BorrowedFd<'_>,
        ready: BorrowedFd<'_>,
        ports: &[BorrowedFd<'_>],
    ) -> Result<Child, Spare> {
        if ports.len() + 2 > MAX_FDS {
            return Err(self);
        }
        let mut fds = vec![log.as_raw_fd(), ready.as_raw_fd()];
        fds.extend(ports.iter().map(|f| f.as_raw_fd()));
        let msg = format!("{id} {}\n", if wait_attach { "attach" } else { "-" });
        let sent = match self.socket.as_ref() {
            Some(s) => sendmsg::<()>(
                s.as_raw_fd(),
                &[io::IoSlice::new(msg.as_bytes())],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ),
            None => return Err(self),
        };
        match sent {
            Ok(n) if n == msg.len() => {
                self.socket = None;
                Ok(self
                    .child
                    .take()
                    .expect("a spare has its process until handed over"))
            }
            _ => Err(self),
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // Closing the socket ends it; it is ours to reap.
        self.socket = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a spare is handed.
#[derive(Debug, PartialEq)]
pub struct HandOver {
    pub id: String,
    pub wait_attach: bool,
}

/// The monitor's side: detaches from the caller's session, then waits on its stdin (the
/// socket) for a container. Puts the descriptors it gets where a spawned monitor has them
/// (/dev/null as 0, then 2, 3, 4, …); None when the socket closes first.
pub fn wait_for_container() -> Option<HandOver> {
    let _ = nix::unistd::setsid();
    let socket: RawFd = 0;
    let mut buf = [0u8; 512];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, received) = loop {
        match recvmsg::<()>(
            socket,
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().ok()? {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        // SAFETY: the kernel just installed these in our table for us.
                        fds.extend(list.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                    }
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    };
    // The socket's number becomes /dev/null's, as a spawned monitor's stdin.
    let null = std::fs::File::open("/dev/null").ok()?;
    // SAFETY: dup2 onto stdin, which held the socket and nothing else of ours.
    if unsafe { libc::dup2(null.as_raw_fd(), socket) } < 0 {
        return None;
    }
    drop(null);
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let over = parse(text)?;
    rewrite_cmdline(ID_PLACEHOLDER.as_bytes(), over.id.as_bytes());
    if received.len() < 2 {
        return None;
    }
    // Out of the way first (a received descriptor may sit on a target number), then each
    // to its place, inheritable as a spawned monitor's are.
    let high: Vec<OwnedFd> = received
        .iter()
        .map(|f| {
            nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(1000))
                // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we own.
                .map(|n| unsafe { OwnedFd::from_raw_fd(n) })
                .ok()
        })
        .collect::<Option<_>>()?;
    drop(received);
    for (i, f) in high.iter().enumerate() {
        let target = 2 + i as RawFd;
        // SAFETY: dup2 onto a small number this process does not otherwise use (the
        // spare's stdio are /dev/null, replaced here for stderr).
        if unsafe { libc::dup2(f.as_raw_fd(), target) } < 0 {
            return None;
        }
    }
    Some(over)
}

/// Replaces `old` with `new`, as long, in this process's command line as /proc shows it
/// (the argument strings on its initial stack, between `arg_start` and `arg_end` of
/// `/proc/self/stat`). Only this process's own copy of its arguments changes.
fn rewrite_cmdline(old: &[u8], new: &[u8]) -> bool {
    if old.len() != new.len() || old.is_empty() {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // After the command name (which may hold spaces) come fields 3, 4, …; arg_start and
    // arg_end are fields 48 and 49.
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (Some(Ok(start)), Some(Ok(end))) = (
        fields.get(45).map(|f| f.parse::<usize>()),
        fields.get(46).map(|f| f.parse::<usize>()),
    ) else {
        return false;
    };
    if start == 0 || end <= start {
        return false;
    }
    // SAFETY: [start, end) is this process's argument area on its initial stack: mapped,
    // writable, and not otherwise borrowed (the arguments were parsed into owned strings,
    // and no other thread runs yet).
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    match area.windows(old.len()).position(|w| w == old) {
        Some(at) => {
            area[at..at + new.len()].copy_from_slice(new);
            true
        }
        None => false,
    }
}

fn parse(text: &str) -> Option<HandOver> {
    let (id, flag) = text.trim_end().split_once(' ')?;
    let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then(|| HandOver {
        id: id.to_string(),
        wait_attach: flag == "attach",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_over_names_a_plain_id() {
        assert_eq!(
            parse("abc123 attach\n"),
            Some(HandOver {
                id: "abc123".into(),
                wait_attach: true
            })
        );
        assert_eq!(parse("abc123 -\n").map(|h| h.wait_attach), Some(false));
        assert_eq!(parse("../x -\n"), None);
        assert_eq!(parse(" -\n"), None);
        assert_eq!(parse("abc"), None);
    }
}
