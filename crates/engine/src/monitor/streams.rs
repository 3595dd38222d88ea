//! The container's streams and attach clients: reading output, writing frames, input
//! and resizes from clients, and the terminal helpers.

use super::*;

pub(super) struct Client {
    pub(super) stream: UnixStream,
    pub(super) buf: FrameBuffer,
    pub(super) hello: Option<Hello>,
    /// A write to it failed: dropped at the end of the poll round, so that the
    /// round's indexes into `clients` stay valid until then.
    pub(super) gone: bool,
}

/// Reads what is available; None at end of stream (or EIO from a pty whose other end closed).
pub(super) fn read_some(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Some(Vec::new()),
            Err(_) => return None,
        }
    }
}

pub(super) fn write_fd_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes to a non-blocking client socket, waiting (up to 2 s) while it is full.
pub(super) fn write_all_blocking(s: &mut UnixStream, mut data: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(e);
                }
                let mut pfd = [PollFd::new(s.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut pfd, PollTimeout::from(100u16));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the duration of the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accepts the runtime's connection on the console socket and takes the pty master it sends.
pub fn receive_pty_from(l: &UnixListener) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (s, _) = l.accept()?;
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table for us to own.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no terminal fd received",
    ))
}

impl Monitor {
    pub(super) fn accept_clients(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok((stream, _)) = l.accept() {
            let _ = stream.set_nonblocking(true);
            self.clients.push(Client {
                stream,
                buf: FrameBuffer::default(),
                hello: None,
                gone: false,
            });
        }
    }

    /// Output from the container: to the log and to attached clients.
    pub(super) fn output(&mut self, kind: u8, data: &[u8]) {
        if let Some(l) = self.log.as_mut() {
            let _ = l.write(kind, data);
        }
        let f = attach::frame(kind, data);
        for c in self.clients.iter_mut().filter(|c| !c.gone) {
            let wants = match (c.hello, kind) {
                (Some(h), attach::STDOUT) => h.stdout,
                (Some(h), attach::STDERR) => h.stderr,
                _ => false,
            };
            if wants && write_all_blocking(&mut c.stream, &f).is_err() {
                c.gone = true;
            }
        }
    }

    /// Input from client `i`; false when it is gone.
    pub(super) fn client_input(&mut self, i: usize) -> bool {
        if self.clients[i].gone {
            return false;
        }
        let mut buf = [0u8; 32 * 1024];
        let n = match self.clients[i].stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        self.clients[i].buf.push(&buf[..n]);
        loop {
            let frame = match self.clients[i].buf.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return true,
                Err(_) => return false,
            };
            let hello = self.clients[i].hello;
            match frame {
                (attach::HELLO, p) => self.clients[i].hello = Some(Hello::decode(&p)),
                (attach::STDIN, data) if hello.map(|h| h.stdin).unwrap_or(false) => {
                    let target = self.pty.as_ref().or(self.stdin.as_ref());
                    if let Some(fd) = target {
                        let _ = write_fd_all(fd.as_fd(), &data);
                    }
                }
                (attach::STDIN_EOF, _) if hello.map(|h| h.stdin).unwrap_or(false) => {
                    // Closing our end gives the container EOF (for a pty, send ^D instead).
                    match &self.pty {
                        Some(p) => {
                            let _ = write_fd_all(p.as_fd(), &[4]);
                        }
                        None => self.stdin = None,
                    }
                }
                (attach::RESIZE, p) if p.len() == 4 => {
                    if let Some(pty) = &self.pty {
                        let rows = u16::from_be_bytes([p[0], p[1]]);
                        let cols = u16::from_be_bytes([p[2], p[3]]);
                        let _ = set_winsize(pty.as_fd(), rows, cols);
                    }
                }
                _ => {}
            }
        }
    }
}
