//! SPDY/3.1 framing, as Kubernetes' streaming clients (kubelet's proxy, `kubectl exec`
//! through it, crictl, critest) speak it after an HTTP upgrade: streams opened by the
//! client with `SYN_STREAM` (their kind in a `streamtype` header), answered with
//! `SYN_REPLY`, data frames in both directions, `FIN` to end a direction.
//!
//! Header blocks are compressed with zlib, one stream per direction for the whole
//! connection, seeded with the dictionary of the SPDY/3 specification. Flow control is
//! not enforced (Kubernetes' peers do not either).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// The largest frame accepted (SPDY's length field allows 16 MiB).
const MAX_FRAME: usize = 1 << 24;
/// Data is sent in pieces of at most this.
const CHUNK: usize = 32 * 1024;

/// The zlib dictionary of SPDY/3 (draft 3, section 2.6.10.1): these words, each with its
/// length as 4 big-endian bytes, then the text after them.
fn dictionary() -> Vec<u8> {
    const WORDS: [&str; 65] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,",
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

/// A frame the client sent.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A new stream, with its headers (names lowercase).
    SynStream {
        id: u32,
        headers: Vec<(String, String)>,
        fin: bool,
    },
    Data {
        id: u32,
        data: Vec<u8>,
        fin: bool,
    },
    Reset {
        id: u32,
    },
    Ping(u32),
    GoAway,
    /// Settings, window updates, headers: nothing to do.
    Other,
}

/// The reading half of a connection.
pub struct Reader {
    sock: TcpStream,
    inflate: Decompress,
    dictionary: Vec<u8>,
}

impl Reader {
    pub fn new(sock: TcpStream) -> Reader {
        Reader {
            sock,
            inflate: Decompress::new(true),
            dictionary: dictionary(),
        }
    }

    /// The next frame; None when the peer closed the connection.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match self.sock.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(invalid("a SPDY frame larger than 16 MiB"));
        }
        let mut body = vec![0u8; len];
        self.sock.read_exact(&mut body)?;
        let word = |i: usize| -> io::Result<u32> {
            body.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
                .ok_or_else(|| invalid("a short SPDY frame"))
        };
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                id: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
                data: body,
                fin: flags & FLAG_FIN != 0,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(invalid(&format!("SPDY version {version}")));
        }
        Ok(Some(match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                let id = word(0)?;
                let block = body
                    .get(10..)
                    .ok_or_else(|| invalid("a short SYN_STREAM"))?;
                let raw = self.decompress(block)?;
                Frame::SynStream {
                    id,
                    headers: parse_headers(&raw)?,
                    fin: flags & FLAG_FIN != 0,
                }
            }
            RST_STREAM => Frame::Reset { id: word(0)? },
            PING => Frame::Ping(word(0)?),
            GOAWAY => Frame::GoAway,
            // A HEADERS frame's block still moves the zlib stream along.
            8 => {
                if let Some(block) = body.get(4..) {
                    self.decompress(block)?;
                }
                Frame::Other
            }
            _ => Frame::Other,
        }))
    }

    fn decompress(&mut self, mut input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        while !input.is_empty() {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.inflate.total_in();
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before) as usize..];
            match r {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(|e| invalid(&format!("the SPDY dictionary: {e}")))?;
                }
                Err(e) => return Err(invalid(&format!("a SPDY header block: {e}"))),
            }
        }
        Ok(out)
    }
}

/// A header block: a count, then each name and value with its length.
fn parse_headers(raw: &[u8]) -> io::Result<Vec<(String, String)>> {
    let mut at = 0;
    let mut take = |n: usize| -> io::Result<&[u8]> {
        let s = raw
            .get(at..at + n)
            .ok_or_else(|| invalid("a short SPDY header block"))?;
        at += n;
        Ok(s)
    };
    let num = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = num(take(4)?);
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = num(take(4)?);
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = num(take(4)?);
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The writing half of a connection, shared by the threads that send on it.
pub struct Writer {
    inner: Mutex<(TcpStream, Compress)>,
}

impl Writer {
    pub fn new(sock: TcpStream) -> io::Result<Writer> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dictionary())
            .map_err(|e| invalid(&format!("the SPDY dictionary: {e}")))?;
        Ok(Writer {
            inner: Mutex::new((sock, deflate)),
        })
    }

    fn control(&self, kind: u16, flags: u8, body: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(8 + body.len());
        frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.push(flags);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(body);
        let mut inner = self.inner.lock().expect("spdy writer lock");
        inner.0.write_all(&frame)
    }

    /// Accepts stream `id` (a reply with no headers).
    pub fn reply(&self, id: u32) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("spdy writer lock");
        let (sock, deflate) = &mut *inner;
        let mut block = Vec::with_capacity(64);
        deflate
            .compress_vec(&0u32.to_be_bytes(), &mut block, FlushCompress::Sync)
            .map_err(|e| invalid(&format!("compressing headers: {e}")))?;
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&block);
        let mut frame = Vec::with_capacity(8 + body.len());
        frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        frame.extend_from_slice(&SYN_REPLY.to_be_bytes());
        frame.push(0);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(&body);
        sock.write_all(&frame)
    }

    /// Sends `data` on stream `id`; with `fin`, that direction of the stream ends.
    pub fn data(&self, id: u32, data: &[u8], fin: bool) -> io::Result<()> {
        let mut chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        let mut inner = self.inner.lock().expect("spdy writer lock");
        for (i, c) in chunks.into_iter().enumerate() {
            let mut frame = Vec::with_capacity(8 + c.len());
            frame.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
            frame.push(if fin && i == last { FLAG_FIN } else { 0 });
            frame.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
            frame.extend_from_slice(c);
            inner.0.write_all(&frame)?;
        }
        Ok(())
    }

    pub fn pong(&self, id: u32) -> io::Result<()> {
        self.control(PING, 0, &id.to_be_bytes())
    }

    /// Refuses stream `id` (RST_STREAM, REFUSED_STREAM).
    pub fn refuse(&self, id: u32) -> io::Result<()> {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&3u32.to_be_bytes());
        self.control(RST_STREAM, 0, &body)
    }

    /// Ends the connection: GOAWAY, then both directions shut.
    pub fn close(&self) {
        let _ = self.control(GOAWAY, 0, &[0; 8]);
        let inner = self.inner.lock().expect("spdy writer lock");
        let _ = inner.0.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_specifications() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\x00\x00\x00\x07options");
        assert!(d.ends_with(b",*,enq=0."));
    }

    impl Writer {
        /// What a client sends to open a stream.
        fn syn_stream(&self, id: u32, headers: &[(&str, &str)]) -> io::Result<()> {
            let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
            for (k, v) in headers {
                for s in [k, v] {
                    raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                    raw.extend_from_slice(s.as_bytes());
                }
            }
            let mut block = Vec::with_capacity(raw.len() + 64);
            {
                let mut inner = self.inner.lock().unwrap();
                inner
                    .1
                    .compress_vec(&raw, &mut block, FlushCompress::Sync)
                    .unwrap();
            }
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            body.extend_from_slice(&block);
            self.control(SYN_STREAM, 0, &body)
        }
    }

    #[test]
    fn frames_written_are_read_back() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let w = Writer::new(server).unwrap();
        w.data(5, b"hello", true).unwrap();
        w.pong(7).unwrap();
        w.syn_stream(1, &[("streamType", "error"), ("port", "80")])
            .unwrap();
        w.syn_stream(3, &[("streamType", "data")]).unwrap();
        let mut r = Reader::new(client);
        assert_eq!(
            r.next_frame().unwrap(),
            Some(Frame::Data {
                id: 5,
                data: b"hello".to_vec(),
                fin: true
            })
        );
        assert_eq!(r.next_frame().unwrap(), Some(Frame::Ping(7)));
        // Header blocks share one zlib stream, seeded with the dictionary.
        let header = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            r.next_frame().unwrap(),
            Some(Frame::SynStream {
                id: 1,
                headers: vec![header("streamtype", "error"), header("port", "80")],
                fin: false
            })
        );
        assert_eq!(
            r.next_frame().unwrap(),
            Some(Frame::SynStream {
                id: 3,
                headers: vec![header("streamtype", "data")],
                fin: false
            })
        );
        drop(w);
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn header_blocks_parse_and_short_ones_are_refused() {
        let mut raw = 1u32.to_be_bytes().to_vec();
        for s in ["StreamType", "error"] {
            raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
            raw.extend_from_slice(s.as_bytes());
        }
        assert_eq!(
            parse_headers(&raw).unwrap(),
            [("streamtype".to_string(), "error".to_string())]
        );
        assert!(parse_headers(&raw[..raw.len() - 1]).is_err());
        assert!(parse_headers(&[0, 0, 0, 9]).is_err());
    }
}
