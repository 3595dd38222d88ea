//! The streaming server: `Exec`, `Attach` and `PortForward` answer with a URL on it,
//! single-use and short-lived, and the client (kubelet's proxy for `kubectl exec`,
//! `attach` and `port-forward`, or crictl) upgrades an HTTP request there to SPDY/3.1
//! (or, for remote commands, WebSocket), as containerd's and CRI-O's servers take it.
//!
//! Exec uses Kubernetes' remote command protocol `v4.channel.k8s.io` (streams `stdin`,
//! `stdout`, `stderr`, `resize`, and `error`, which carries the outcome as a Status
//! document with the exit code); port forwarding `portforward.k8s.io` (a `data` and an
//! `error` stream per connection, named by `port` and `requestid`). Sessions run on
//! threads of their own: they pump file descriptors (pipes, a pty, the monitor's attach
//! socket, a socket in the pod's network namespace).

mod session;
pub mod spdy;
mod websocket;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_engine::EngineOptions;

/// What a URL of the server was handed out for.
#[derive(Debug, Clone)]
pub enum Request {
    Exec {
        container: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Attach {
        container: String,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    PortForward {
        pod: String,
    },
}

/// How long a URL can be used (kubelet's default for containerd is a minute).
const URL_LIFETIME: Duration = Duration::from_secs(60);

/// The server: its address and the requests waiting for their client.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    opts: EngineOptions,
    pending: Mutex<HashMap<String, (Request, Instant)>>,
}

impl Request {
    /// (tty, stdin, stdout, stderr) of a remote command.
    fn streams(&self) -> (bool, bool, bool, bool) {
        match self {
            Request::Exec {
                tty,
                stdin,
                stdout,
                stderr,
                ..
            }
            | Request::Attach {
                tty,
                stdin,
                stdout,
                stderr,
                ..
            } => (*tty, *stdin, *stdout, *stderr),
            Request::PortForward { .. } => (false, false, false, false),
        }
    }
}

impl Server {
    /// Listens on `addr` (port 0: any free port) and serves on a thread of its own.
    pub fn start(addr: SocketAddr, opts: EngineOptions) -> std::io::Result<Arc<Server>> {
        let listener = TcpListener::bind(addr)?;
        let server = Arc::new(Server {
            addr: listener.local_addr()?,
            opts,
            pending: Mutex::default(),
        });
        let s = server.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.serve(conn));
            }
        });
        Ok(server)
    }

    /// A URL for `req`, good once within a minute.
    pub fn url(&self, req: Request) -> String {
        let kind = match req {
            Request::Exec { .. } => "exec",
            Request::Attach { .. } => "attach",
            Request::PortForward { .. } => "portforward",
        };
        let token = berth_image::fsutil::random_hex(16);
        let mut pending = self.pending.lock().expect("pending lock");
        pending.retain(|_, (_, at)| at.elapsed() < URL_LIFETIME);
        pending.insert(token.clone(), (req, Instant::now()));
        format!("http://{}/{kind}/{token}", self.addr)
    }

    fn take(&self, token: &str) -> Option<Request> {
        let (req, at) = self.pending.lock().expect("pending lock").remove(token)?;
        (at.elapsed() < URL_LIFETIME).then_some(req)
    }

    /// One connection: an HTTP request to upgrade, then the session.
    fn serve(&self, mut conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let head = match read_head(&mut conn) {
            Ok(h) => h,
            Err(_) => return,
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        if !matches!(parsed.parse(&head), Ok(httparse::Status::Complete(_))) {
            return respond(&mut conn, "400 Bad Request", "a malformed request\n");
        }
        let path = parsed.path.unwrap_or("").to_string();
        let header_values = |name: &str| -> Vec<String> {
            parsed
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .flat_map(|h| {
                    String::from_utf8_lossy(h.value)
                        .split(',')
                        .map(|v| v.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let token = path.rsplit('/').next().unwrap_or("");
        let Some(req) = self.take(token) else {
            return respond(&mut conn, "404 Not Found", "no such streaming session\n");
        };
        let upgrade = header_values("upgrade");
        let is = |p: &str| upgrade.iter().any(|u| u.eq_ignore_ascii_case(p));
        if is("websocket") {
            return self.serve_websocket(conn, req, &header_values);
        }
        if !is("SPDY/3.1") {
            return respond(
                &mut conn,
                "400 Bad Request",
                "upgrade to SPDY/3.1 or websocket\n",
            );
        }
        let offered = header_values("x-stream-protocol-version");
        let wanted = match req {
            Request::PortForward { .. } => "portforward.k8s.io",
            _ => "v4.channel.k8s.io",
        };
        if !offered.iter().any(|p| p == wanted) {
            return respond(
                &mut conn,
                "403 Forbidden",
                &format!("berth's streaming server speaks {wanted}, not {offered:?}\n"),
            );
        }
        let upgraded = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {wanted}\r\n\r\n"
        );
        if conn.write_all(upgraded.as_bytes()).is_err() {
            return;
        }
        let _ = conn.set_read_timeout(None);
        session::run_spdy(&self.opts, conn, req);
    }

    /// A remote command over WebSocket (port forwarding over it is not implemented yet).
    fn serve_websocket(
        &self,
        mut conn: TcpStream,
        req: Request,
        header_values: &dyn Fn(&str) -> Vec<String>,
    ) {
        if let Request::PortForward { .. } = req {
            return respond(
                &mut conn,
                "400 Bad Request",
                "port forwarding over WebSocket is not implemented yet in berth: use SPDY\n",
            );
        }
        let offered = header_values("sec-websocket-protocol");
        let Some(protocol) = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
            .into_iter()
            .find(|p| offered.iter().any(|o| o == p))
        else {
            return respond(
                &mut conn,
                "400 Bad Request",
                &format!("berth's streaming server speaks v5.channel.k8s.io or v4.channel.k8s.io, not {offered:?}\n"),
            );
        };
        let Some(key) = header_values("sec-websocket-key").into_iter().next() else {
            return respond(&mut conn, "400 Bad Request", "no Sec-WebSocket-Key\n");
        };
        let upgraded = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
            websocket::accept_key(&key)
        );
        if conn.write_all(upgraded.as_bytes()).is_err() {
            return;
        }
        let _ = conn.set_read_timeout(None);
        session::run_websocket(&self.opts, conn, req, protocol.starts_with("v5"));
    }
}

/// Reads an HTTP request's head (up to 16 KiB), through the blank line.
fn read_head(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || conn.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        head.push(byte[0]);
    }
    Ok(head)
}

fn respond(conn: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
