//! The monitor's attach socket protocol. Frames are `[kind u8][len u32 BE][payload]`.
//!
//! A client sends `HELLO` first (which streams it wants), then `STDIN` data, `STDIN_EOF`
//! and `RESIZE` frames; the monitor sends `STDOUT`/`STDERR` data and, when the container's
//! process has exited and everything is cleaned up, `EXIT` with the exit code.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const STDIN_EOF: u8 = 4;
pub const RESIZE: u8 = 5;
pub const HELLO: u8 = 6;

/// Largest payload accepted in one frame.
pub const MAX_FRAME: usize = 1 << 20;

/// What a client asks for when it connects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hello {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Hello {
    pub fn encode(self) -> [u8; 3] {
        [self.stdin as u8, self.stdout as u8, self.stderr as u8]
    }
    pub fn decode(b: &[u8]) -> Hello {
        Hello {
            stdin: b.first() == Some(&1),
            stdout: b.get(1) == Some(&1),
            stderr: b.get(2) == Some(&1),
        }
    }
}

/// The attach socket of a container. Kept short: unix socket paths are limited to 108 bytes.
pub fn socket_path(run_root: &Path, id: &str) -> PathBuf {
    run_root
        .join("s")
        .join(format!("{}.sock", &id[..12.min(id.len())]))
}

pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn write_frame<W: Write>(w: &mut W, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&frame(kind, payload))
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame<R: Read>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "attach frame too large",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// Incremental frame parser for non-blocking readers.
#[derive(Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    /// The next complete frame, if any. An oversized frame is an error.
    pub fn next_frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "attach frame too large",
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

/// Connects to a container's monitor and says hello.
pub fn connect(run_root: &Path, id: &str, hello: Hello) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket_path(run_root, id))?;
    write_frame(&mut s, HELLO, &hello.encode())?;
    Ok(s)
}

/// Encodes a terminal size.
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let r = rows.to_be_bytes();
    let c = cols.to_be_bytes();
    [r[0], r[1], c[0], c[1]]
}

/// Watches a client's input for its detach keys: Docker's default, Ctrl-P Ctrl-Q, or the
/// client's own (`--detach-keys`, the `detachKeys` of its config).
#[derive(Debug, Clone)]
pub struct DetachKeys {
    keys: Vec<u8>,
    /// How many of `keys` the input has matched so far (held back, not forwarded).
    matched: usize,
}

impl Default for DetachKeys {
    fn default() -> Self {
        DetachKeys {
            keys: vec![0x10, 0x11],
            matched: 0,
        }
    }
}

impl DetachKeys {
    /// Docker's notation: keys separated by commas, each a character or `ctrl-X` (X a
    /// letter or one of `@[\\]^_`). Empty: the default.
    pub fn parse(spec: &str) -> Result<DetachKeys, String> {
        if spec.is_empty() {
            return Ok(DetachKeys::default());
        }
        let mut keys = Vec::new();
        for key in spec.split(',') {
            let lower = key.to_ascii_lowercase();
            let code = match lower.strip_prefix("ctrl-").map(str::as_bytes) {
                _ if key.len() == 1 => key.as_bytes()[0],
                Some([c @ b'a'..=b'z']) => c - b'a' + 1,
                Some([b'@']) => 0,
                Some([c @ (b'[' | b'\\' | b']' | b'^' | b'_')]) => c - b'[' + 27,
                _ => return Err(format!("Invalid detach keys ({spec}) provided")),
            };
            keys.push(code);
        }
        Ok(DetachKeys { keys, matched: 0 })
    }

    /// Returns the bytes to forward, and whether the sequence was completed. Bytes that
    /// start the sequence are held back until it is complete or broken.
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            // The sequence broke: what was held back goes, and this byte may start anew.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_whole_and_in_pieces() {
        let mut wire = Vec::new();
        write_frame(&mut wire, STDOUT, b"hello").unwrap();
        write_frame(&mut wire, EXIT, &7i32.to_be_bytes()).unwrap();
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((EXIT, 7i32.to_be_bytes().to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let mut fb = FrameBuffer::default();
        for b in &wire {
            fb.push(&[*b]);
        }
        assert_eq!(fb.next_frame().unwrap(), Some((STDOUT, b"hello".to_vec())));
        assert_eq!(fb.next_frame().unwrap().unwrap().0, EXIT);
        assert_eq!(fb.next_frame().unwrap(), None);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut fb = FrameBuffer::default();
        fb.push(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert!(fb.next_frame().is_err());
    }

    #[test]
    fn custom_detach_keys_parse_as_dockers_and_end_the_session() {
        let mut k = DetachKeys::parse("ctrl-x,e").unwrap();
        assert_eq!(k.feed(b"a\x18"), (b"a".to_vec(), false));
        assert_eq!(k.feed(b"x"), (b"\x18x".to_vec(), false));
        assert_eq!(k.feed(b"\x18\x18e rest"), (b"\x18".to_vec(), true));
        let mut one = DetachKeys::parse("ctrl-@").unwrap();
        assert_eq!(one.feed(b"ab\0cd"), (b"ab".to_vec(), true));
        assert_eq!(DetachKeys::parse("ctrl-[").unwrap().keys, [27]);
        assert_eq!(DetachKeys::parse("ctrl-_,Q").unwrap().keys, [31, b'Q']);
        assert_eq!(DetachKeys::parse("").unwrap().keys, [0x10, 0x11]);
        assert_eq!(
            DetachKeys::parse("ctrl-1").err().unwrap(),
            "Invalid detach keys (ctrl-1) provided"
        );
        assert!(DetachKeys::parse("a,,b").is_err());
    }

    #[test]
    fn detach_keys_are_recognised_and_lone_ctrl_p_passes() {
        let mut k = DetachKeys::default();
        assert_eq!(k.feed(b"ab"), (b"ab".to_vec(), false));
        assert_eq!(k.feed(&[0x10]), (vec![], false));
        assert_eq!(k.feed(b"x"), (vec![0x10, b'x'], false));
        assert_eq!(k.feed(&[b'y', 0x10, 0x11, b'z']), (vec![b'y'], true));
    }
}
