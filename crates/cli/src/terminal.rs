//! The terminal side of attach and exec: raw mode, window size, the detach keys
//! (Ctrl-P Ctrl-Q), and pumping bytes between this terminal and a container.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use berth_engine::attach::{self, FrameBuffer};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};

/// Puts a terminal in raw mode until dropped.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: fd was a valid open terminal when RawMode was made, and stdin stays open
        // for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &self.saved);
    }
}

pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false)
}

/// The terminal size of `fd` (rows, cols).
pub fn winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize struct, which we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

fn winch_fd() -> Option<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGWINCH);
    mask.thread_block().ok()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
}

/// How an attach session ended.
pub enum AttachEnd {
    Exited(i32),
    Detached,
    /// The monitor went away without reporting an exit code.
    Lost,
}

fn poll_in(fds: &mut [libc::pollfd]) -> io::Result<()> {
    // SAFETY: fds is a valid, exclusively borrowed array of pollfd of the given length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

fn pfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Pumps an attach session: stdin to the container (when `send_stdin`), its output to
/// ours, until it exits or the user detaches.
pub fn attach_session(mut sock: UnixStream, send_stdin: bool, tty: bool) -> io::Result<AttachEnd> {
    let stdin = io::stdin();
    let stdin_fd = stdin.as_fd();
    let _raw = if tty && send_stdin && is_tty(stdin_fd) {
        RawMode::enter(stdin_fd)
    } else {
        None
    };
    let winch = if tty { winch_fd() } else { None };
    if tty {
        if let Some((r, c)) = winsize(io::stdout().as_fd()).or_else(|| winsize(stdin_fd)) {
            attach::write_frame(&mut sock, attach::RESIZE, &attach::resize_payload(r, c))?;
        }
    }
    let mut keys = attach::DetachKeys::default();
    let mut stdin_open = send_stdin;
    let mut fb = FrameBuffer::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = io::stdout().lock();
    let mut err = io::stderr();
    loop {
        let mut fds = vec![pfd(sock.as_raw_fd())];
        if stdin_open {
            fds.push(pfd(stdin_fd.as_raw_fd()));
        }
        let winch_idx = winch.as_ref().map(|w| {
            fds.push(pfd(w.as_fd().as_raw_fd()));
            fds.len() - 1
        });
        poll_in(&mut fds)?;
        if let Some(i) = winch_idx {
            if fds[i].revents != 0 {
                if let Some(w) = &winch {
                    while let Ok(Some(_)) = w.read_signal() {}
                }
                if let Some((r, c)) = winsize(io::stdout().as_fd()).or_else(|| winsize(stdin_fd)) {
                    attach::write_frame(&mut sock, attach::RESIZE, &attach::resize_payload(r, c))?;
                }
            }
        }
        if stdin_open && fds[1].revents != 0 {
            let n = match nix::unistd::read(stdin_fd.as_raw_fd(), &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                stdin_open = false;
                attach::write_frame(&mut sock, attach::STDIN_EOF, &[])?;
            } else {
                let (data, detach) = if tty {
                    keys.feed(&buf[..n])
                } else {
                    (buf[..n].to_vec(), false)
                };
                if !data.is_empty() {
                    attach::write_frame(&mut sock, attach::STDIN, &data)?;
                }
                if detach {
                    return Ok(AttachEnd::Detached);
                }
            }
        }
        if fds[0].revents != 0 {
            let n = match sock.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                return Ok(AttachEnd::Lost);
            }
            fb.push(&buf[..n]);
            while let Some((kind, payload)) = fb.next_frame()? {
                match kind {
                    attach::STDOUT => {
                        out.write_all(&payload)?;
                        out.flush()?;
                    }
                    attach::STDERR => {
                        err.write_all(&payload)?;
                    }
                    attach::EXIT if payload.len() == 4 => {
                        return Ok(AttachEnd::Exited(i32::from_be_bytes([
                            payload[0], payload[1], payload[2], payload[3],
                        ])));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Pumps between our terminal and a pty master (for `exec -t`) until the other side
/// closes. Returns false when the user detached.
pub fn pump_pty(master: &OwnedFd, send_stdin: bool) -> io::Result<bool> {
    let stdin = io::stdin();
    let stdin_fd = stdin.as_fd();
    let _raw = if send_stdin && is_tty(stdin_fd) {
        RawMode::enter(stdin_fd)
    } else {
        None
    };
    let winch = winch_fd();
    let resize = || {
        if let Some((r, c)) = winsize(io::stdout().as_fd()).or_else(|| winsize(stdin_fd)) {
            let _ = berth_engine::monitor::set_winsize(master.as_fd(), r, c);
        }
    };
    resize();
    let mut keys = attach::DetachKeys::default();
    let mut stdin_open = send_stdin;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = io::stdout().lock();
    loop {
        let mut fds = vec![pfd(master.as_raw_fd())];
        if stdin_open {
            fds.push(pfd(stdin_fd.as_raw_fd()));
        }
        let winch_idx = winch.as_ref().map(|w| {
            fds.push(pfd(w.as_fd().as_raw_fd()));
            fds.len() - 1
        });
        poll_in(&mut fds)?;
        if let Some(i) = winch_idx {
            if fds[i].revents != 0 {
                if let Some(w) = &winch {
                    while let Ok(Some(_)) = w.read_signal() {}
                }
                resize();
            }
        }
        if stdin_open && fds[1].revents != 0 {
            match nix::unistd::read(stdin_fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = nix::unistd::write(master.as_fd(), &[4]);
                }
                Ok(n) => {
                    let (data, detach) = keys.feed(&buf[..n]);
                    let _ = nix::unistd::write(master.as_fd(), &data);
                    if detach {
                        return Ok(false);
                    }
                }
            }
        }
        if fds[0].revents != 0 {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => return Ok(true),
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
            }
        }
    }
}
