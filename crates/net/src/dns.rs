//! The name server of a network (like podman's aardvark-dns): it answers `A` queries for
//! the names of the containers on its network from a records file the engine keeps
//! (`NAME IP` lines, reread when it changes), and passes every other query on to the
//! host's resolvers, relaying their answer. UDP only.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A parsed query: its id, the name asked (lower case, no trailing dot), the type, and
/// where the question section ends.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    pub question_end: usize,
}

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

/// Parses a standard query with one question; None for anything else.
pub fn parse_query(p: &[u8]) -> Option<Query> {
    if p.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([p[0], p[1]]);
    let flags = u16::from_be_bytes([p[2], p[3]]);
    let qdcount = u16::from_be_bytes([p[4], p[5]]);
    // A query (QR 0), opcode QUERY, one question.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *p.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // No compression in a question we accept.
        if len & 0xc0 != 0 {
            return None;
        }
        let label = p.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*p.get(i + 2)?, *p.get(i + 3)?]);
    Some(Query {
        id,
        name: labels.join("."),
        qtype,
        qclass,
        question_end: i + 4,
    })
}

/// The response to `q` (asked in `packet`): the question echoed, and an `A` record per
/// address (none for other types: an empty answer, as a name that has only IPv4).
/// Authoritative; `rcode` 3 (NXDOMAIN) when `ips` is None.
pub fn respond(packet: &[u8], q: &Query, ips: Option<&[Ipv4Addr]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.question_end + 16 * 4);
    out.extend_from_slice(&q.id.to_be_bytes());
    let rd = packet[2] & 0x01;
    // QR, AA, RD copied, RA.
    out.push(0x84 | rd);
    out.push(0x80 | if ips.is_none() { 3 } else { 0 });
    let answers: Vec<Ipv4Addr> = match ips {
        Some(ips) if q.qtype == TYPE_A && q.qclass == CLASS_IN => ips.to_vec(),
        _ => Vec::new(),
    };
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&packet[12..q.question_end]);
    for ip in answers {
        // The name by a pointer to the question's (offset 12), type A, class IN, TTL 0.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// The records file, reread when its modification time changes. A line is `NAME IP`, or
/// `NAME IP SOURCE` for a name only the container at address SOURCE may resolve (a name
/// of another network that container is also on).
pub struct Records {
    path: PathBuf,
    /// The file's mtime and inode when last read (the engine replaces it by a rename, so
    /// a change shows in the inode even within the mtime's granularity).
    seen: Option<(SystemTime, u64)>,
    names: HashMap<String, Vec<(Ipv4Addr, Option<Ipv4Addr>)>>,
}

impl Records {
    pub fn new(path: &Path) -> Records {
        Records {
            path: path.to_path_buf(),
            seen: None,
            names: HashMap::new(),
        }
    }

    fn refresh(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.ino())));
        if now.is_some() && now == self.seen {
            return;
        }
        self.seen = now;
        self.names.clear();
        for line in std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
        {
            let mut f = line.split_whitespace();
            if let (Some(name), Some(ip)) = (f.next(), f.next()) {
                let source = match f.next().map(str::parse) {
                    None => None,
                    Some(Ok(s)) => Some(s),
                    Some(Err(_)) => continue,
                };
                if let Ok(ip) = ip.parse() {
                    self.names
                        .entry(name.to_lowercase())
                        .or_default()
                        .push((ip, source));
                }
            }
        }
    }

    /// The addresses of `name` as the container at `from` sees them, if it is one of
    /// the names it may resolve.
    pub fn lookup(&mut self, name: &str, from: IpAddr) -> Option<Vec<Ipv4Addr>> {
        self.refresh();
        let ips: Vec<Ipv4Addr> = self
            .names
            .get(&name.trim_end_matches('.').to_lowercase())?
            .iter()
            .filter(|(_, source)| source.is_none_or(|s| IpAddr::V4(s) == from))
            .map(|(ip, _)| *ip)
            .collect();
        (!ips.is_empty()).then_some(ips)
    }
}

/// The host's resolvers, from `/etc/resolv.conf` (loopback ones left out: they are not
/// reachable the same way; the server itself runs on the host, so they would be, but a
/// local stub resolver is what the host uses anyway).
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Serves queries on `sock` until the process is killed, or until the records file has
/// gone (its network was removed, or its run root wiped) and nothing asked for a while.
pub fn serve(sock: UdpSocket, records: &Path, upstream: Vec<SocketAddr>) -> std::io::Result<()> {
    serve_checking(sock, records, upstream, Duration::from_secs(10))
}

/// [`serve`], looking for the records file after each `idle` without a query.
fn serve_checking(
    sock: UdpSocket,
    records: &Path,
    upstream: Vec<SocketAddr>,
    idle: Duration,
) -> std::io::Result<()> {
    let path = records.to_path_buf();
    let mut records = Records::new(records);
    let mut buf = [0u8; 1500];
    sock.set_read_timeout(Some(idle))?;
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !path.exists() {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let packet = &buf[..n];
        let Some(q) = parse_query(packet) else {
            continue;
        };
        if let Some(ips) = records.lookup(&q.name, from.ip()) {
            let _ = sock.send_to(&respond(packet, &q, Some(&ips)), from);
            continue;
        }
        // A single label that is not a container's: no resolver out there has it either.
        if !q.name.contains('.') {
            let _ = sock.send_to(&respond(packet, &q, None), from);
            continue;
        }
        // Not a name of this network: the host's resolvers answer, on a thread so a slow
        // one holds nobody else up.
        let (reply, packet, upstream) = (sock.try_clone()?, packet.to_vec(), upstream.clone());
        std::thread::spawn(move || {
            let answer = forward(&packet, &upstream);
            let out = answer.unwrap_or_else(|| {
                let q = parse_query(&packet).expect("parsed before");
                // SERVFAIL.
                let mut r = respond(&packet, &q, Some(&[]));
                r[3] = (r[3] & 0xf0) | 2;
                r
            });
            let _ = reply.send_to(&out, from);
        });
    }
}

fn forward(packet: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for u in upstream {
        let local: SocketAddr = if u.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(s) = UdpSocket::bind(local) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.send_to(packet, u).is_err() {
            continue;
        }
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` as a resolver sends it.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn a_query_is_answered_with_each_address() {
        let p = query("Web.Example", TYPE_A);
        let q = parse_query(&p).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0x1234, "web.example", TYPE_A)
        );
        let ips = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)];
        let r = respond(&p, &q, Some(&ips));
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x80, 0x80, "a response");
        assert_eq!(r[3] & 0x0f, 0, "no error");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 2, "two answers");
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 3]);
        // Unknown: NXDOMAIN, no answer. AAAA of a known name: no error, no answer.
        let r = respond(&p, &q, None);
        assert_eq!((r[3] & 0x0f, r[7]), (3, 0));
        let p6 = query("web", 28);
        let q6 = parse_query(&p6).unwrap();
        let r = respond(&p6, &q6, Some(&ips));
        assert_eq!((r[3] & 0x0f, r[7]), (0, 0));
    }

    #[test]
    fn malformed_and_non_queries_are_ignored() {
        assert!(parse_query(&[0; 5]).is_none());
        let mut p = query("web", TYPE_A);
        p[2] |= 0x80; // a response
        assert!(parse_query(&p).is_none());
        let mut p = query("web", TYPE_A);
        p.truncate(p.len() - 3);
        assert!(parse_query(&p).is_none());
        let mut p = query("web", TYPE_A);
        p[12] = 0xc0; // a pointer in the question
        assert!(parse_query(&p).is_none());
    }

    #[test]
    fn other_names_go_to_the_upstream_and_its_answer_comes_back() {
        // An upstream on loopback that answers every query with 192.0.2.7.
        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = up.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = up.recv_from(&mut buf).unwrap();
            let q = parse_query(&buf[..n]).unwrap();
            let r = respond(&buf[..n], &q, Some(&[Ipv4Addr::new(192, 0, 2, 7)]));
            up.send_to(&r, from).unwrap();
        });
        let p = query("example.org", TYPE_A);
        let answer = forward(&p, &[addr]).unwrap();
        assert_eq!(&answer[answer.len() - 4..], &[192, 0, 2, 7]);
        // Nobody there: no answer.
        let dead = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(forward(&p, &[dead]).is_none());
    }

    #[test]
    fn the_server_answers_and_ends_when_its_records_go() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hosts");
        std::fs::write(&f, "web 10.0.0.2\n").unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let records = f.clone();
        let server = std::thread::spawn(move || {
            serve_checking(sock, &records, Vec::new(), Duration::from_millis(50))
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        client.send_to(&query("web", TYPE_A), addr).unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[n - 4..n], &[10, 0, 0, 2]);
        std::fs::remove_file(&f).unwrap();
        for _ in 0..100 {
            if server.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(server.is_finished(), "the server outlived its records");
        server.join().unwrap().unwrap();
    }

    #[test]
    fn records_are_reread_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hosts");
        std::fs::write(
            &f,
            "web 10.0.0.2\nWEB 10.0.0.3\ncache 10.9.0.5 10.0.0.2\ncache 10.9.0.6 bad\n",
        )
        .unwrap();
        let mut r = Records::new(&f);
        let web: IpAddr = "10.0.0.2".parse().unwrap();
        let other: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(r.lookup("Web.", other).unwrap().len(), 2);
        assert!(r.lookup("db", web).is_none());
        // A name scoped to one asker: only that one gets it.
        assert_eq!(
            r.lookup("cache", web),
            Some(vec![Ipv4Addr::new(10, 9, 0, 5)])
        );
        assert!(r.lookup("cache", other).is_none());
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&f, "db 10.0.0.4\n").unwrap();
        assert_eq!(r.lookup("db", web), Some(vec![Ipv4Addr::new(10, 0, 0, 4)]));
        assert!(r.lookup("web", web).is_none());
        assert_eq!(
            upstreams("nameserver 192.0.2.53\n# x\nnameserver ::1\n").len(),
            2
        );
    }
}
