//! WebSocket framing (RFC 6455) for the streaming server's remote commands, as crictl's
//! `--transport websocket` and client-go's WebSocket executor speak it: binary
//! messages whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 error,
//! 4 resize; in `v5.channel.k8s.io`, 255 closes the channel named by the next byte).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::session::{Kind, Out as SessionOut};

/// `Sec-WebSocket-Accept` for a client's key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;
/// The largest message accepted from a client.
const MAX_MESSAGE: u64 = 16 << 20;

/// A server frame (unmasked).
fn frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x80 | op);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= u16::MAX as usize => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// The writing side, shared by the threads that send.
pub struct Out {
    sock: Mutex<TcpStream>,
}

impl Out {
    pub fn new(sock: TcpStream) -> Out {
        Out {
            sock: Mutex::new(sock),
        }
    }

    fn send(&self, op: u8, payload: &[u8]) -> io::Result<()> {
        self.sock
            .lock()
            .expect("websocket writer lock")
            .write_all(&frame(op, payload))
    }

    fn message(&self, channel: u8, data: &[u8]) -> io::Result<()> {
        let mut m = Vec::with_capacity(data.len() + 1);
        m.push(channel);
        m.extend_from_slice(data);
        self.send(OP_BINARY, &m)
    }

    /// A normal close (1000), then the connection's end.
    pub fn close(&self) {
        let _ = self.send(OP_CLOSE, &1000u16.to_be_bytes());
        let sock = self.sock.lock().expect("websocket writer lock");
        let _ = sock.shutdown(std::net::Shutdown::Write);
    }
}

impl SessionOut for Out {
    fn data(&self, kind: Kind, data: &[u8]) -> io::Result<()> {
        self.message(kind as u8, data)
    }

    fn finish(&self, status: &[u8]) {
        let _ = self.message(Kind::Error as u8, status);
    }
}

/// The reading side: whole messages, pings answered on `out`.
pub struct Reader {
    sock: TcpStream,
}

impl Reader {
    pub fn new(sock: TcpStream) -> Reader {
        Reader { sock }
    }

    /// The next data message (fragments put together); None when the client closed.
    pub fn next_message(&mut self, out: &Out) -> Option<Vec<u8>> {
        let mut message = Vec::new();
        loop {
            let (fin, op, payload) = self.frame().ok()?;
            match op {
                OP_PING => {
                    let _ = out.send(OP_PONG, &payload);
                }
                OP_PONG => {}
                OP_CLOSE => return None,
                _ => {
                    message.extend_from_slice(&payload);
                    if message.len() as u64 > MAX_MESSAGE {
                        return None;
                    }
                    if fin {
                        return Some(message);
                    }
                }
            }
        }
    }

    /// One client frame: (fin, opcode, unmasked payload).
    fn frame(&mut self) -> io::Result<(bool, u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.sock.read_exact(&mut head)?;
        let fin = head[0] & 0x80 != 0;
        let op = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.sock.read_exact(&mut b)?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.sock.read_exact(&mut b)?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        if len > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a WebSocket frame larger than 16 MiB",
            ));
        }
        let mut mask = [0u8; 4];
        if masked {
            self.sock.read_exact(&mut mask)?;
        }
        let mut payload = vec![0u8; len as usize];
        self.sock.read_exact(&mut payload)?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        Ok((fin, op, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn masked_client_frames_are_read_and_pings_answered() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let out = Out::new(server.try_clone().unwrap());
        let mut r = Reader::new(server);
        let mask = [1u8, 2, 3, 4];
        let masked = |op: u8, fin: bool, data: &[u8]| {
            let mut f = vec![if fin { 0x80 } else { 0 } | op, 0x80 | data.len() as u8];
            f.extend_from_slice(&mask);
            f.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            f
        };
        client.write_all(&masked(OP_PING, true, b"hi")).unwrap();
        client
            .write_all(&masked(OP_BINARY, false, b"\x00hel"))
            .unwrap();
        client.write_all(&masked(0, true, b"lo")).unwrap();
        assert_eq!(r.next_message(&out).unwrap(), b"\x00hello");
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).unwrap();
        assert_eq!(pong, [0x80 | OP_PONG, 2, b'h', b'i']);
        out.data(Kind::Stdout, b"out").unwrap();
        let mut msg = [0u8; 6];
        client.read_exact(&mut msg).unwrap();
        assert_eq!(msg, [0x82, 4, 1, b'o', b'u', b't']);
        client
            .write_all(&masked(OP_CLOSE, true, &[3, 232]))
            .unwrap();
        assert_eq!(r.next_message(&out), None);
    }
}
