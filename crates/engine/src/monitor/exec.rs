//! Exec requests, served by the monitor as containerd's shim serves them: the monitor is
//! single-threaded and a subreaper, so it may run the runtime's exec (which forks) and it
//! reaps what that starts. A client connects to the exec socket (seqpacket), sends the
//! request with the process's streams, and is answered `ok PID` or `err CODE MESSAGE`,
//! then `exit CODE` when the process has been reaped (see `crate::exec`).
//!
//! The monitor never blocks on a client: requests are read when their connection is
//! readable, and answers are sent without waiting (a client that went away misses them).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    accept4, bind, listen, recvmsg, send, socket, AddressFamily, Backlog, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{error_chain, supervised_signals, Monitor};
use crate::exec::{Reply, Request};

/// A connection that has not sent its request yet, and a process being served.
#[derive(Default)]
pub(super) struct ExecServer {
    listener: Option<OwnedFd>,
    pending: Vec<OwnedFd>,
    /// (pid, the connection its exit code goes to)
    running: Vec<(i32, OwnedFd)>,
}

impl ExecServer {
    /// Listens at `path` (anything there before is replaced).
    pub(super) fn bind(&mut self, path: &Path) -> io::Result<()> {
        let _ = std::fs::remove_file(path);
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        listen(&fd, Backlog::new(16)?)?;
        self.listener = Some(fd);
        Ok(())
    }

    pub(super) fn listener(&self) -> Option<RawFd> {
        self.listener.as_ref().map(|l| l.as_raw_fd())
    }

    pub(super) fn pending(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.pending.iter().map(|c| c.as_raw_fd())
    }

    pub(super) fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok(fd) = accept4(
            l.as_raw_fd(),
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            self.pending.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }

    /// Stops taking requests; processes still running keep their connections.
    pub(super) fn close(&mut self) {
        self.listener = None;
        self.pending.clear();
    }

    /// Answers the connection of `pid`, if it is an exec's, with its exit code.
    pub(super) fn exited(&mut self, pid: i32, code: i32) {
        if let Some(i) = self.running.iter().position(|(p, _)| *p == pid) {
            let (_, conn) = self.running.swap_remove(i);
            answer(&conn, &Reply::Exited(code));
        }
    }

    /// At the monitor's end: the processes of a container whose init has exited were
    /// killed with it; they are reaped (for a short while at most) and answered.
    pub(super) fn reap_remaining(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.running.is_empty() && Instant::now() < deadline {
            let mut i = 0;
            while i < self.running.len() {
                let pid = Pid::from_raw(self.running[i].0);
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, c)) => self.exited(pid.as_raw(), c),
                    Ok(WaitStatus::Signaled(_, s, _)) => self.exited(pid.as_raw(), 128 + s as i32),
                    Ok(WaitStatus::StillAlive) => i += 1,
                    // Not ours to reap (or already reaped): nothing more will come.
                    _ => drop(self.running.swap_remove(i)),
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn answer(conn: &OwnedFd, reply: &Reply) {
    let _ = send(
        conn.as_raw_fd(),
        reply.encode().as_bytes(),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    );
}

/// Reads one request: its JSON and the descriptors sent with it. None when the client
/// sent nothing usable (it is dropped).
fn read_request(conn: &OwnedFd) -> Option<(Request, Vec<OwnedFd>)> {
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 3]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(list) = c {
            // SAFETY: the kernel just installed these in our table for us to own.
            fds.extend(list.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    let n = msg.bytes;
    let req = serde_json::from_slice(&buf[..n]).ok()?;
    Some((req, fds))
}

impl Monitor {
    /// Serves the request on pending connection `i`, if it has come. Returns true when a
    /// process was started: the caller reaps, since signals were unblocked meanwhile.
    pub(super) fn serve_exec(&mut self, i: usize) -> bool {
        let conn = self.execs.pending.swap_remove(i);
        let Some((req, fds)) = read_request(&conn) else {
            return false;
        };
        // A terminal exec sends no streams: the runtime's own are /dev/null then.
        let streams = match <[OwnedFd; 3]>::try_from(fds) {
            Ok(s) => Ok(s),
            Err(_) => (|| -> crate::Result<[OwnedFd; 3]> {
                use crate::exec::dev_null;
                Ok([dev_null()?, dev_null()?, dev_null()?])
            })(),
        };
        let [stdin, stdout, stderr] = match streams {
            Ok(s) => s,
            Err(e) => {
                answer(&conn, &Reply::Failed(125, e.to_string()));
                return false;
            }
        };
        let stdio = berth_runtime::Stdio {
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        // The runtime's processes inherit our signal mask (see `unblock_signals`).
        self.unblock_signals();
        let started = self.rt.exec(
            &self.cfg.id,
            &req.process,
            stdio,
            req.console_socket.as_deref(),
        );
        let _ = supervised_signals().thread_block();
        match started {
            Ok(pid) => {
                answer(&conn, &Reply::Started(pid));
                self.execs.running.push((pid, conn));
                true
            }
            Err(e) => {
                let code = e.start_failure().exit_code();
                answer(&conn, &Reply::Failed(code, error_chain(&e)));
                true
            }
        }
    }
}
