//! One streaming session on an upgraded connection: a command (exec or attach) with
//! Kubernetes' remote command protocol, or port forwarding into a pod.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use berth_engine::attach;
use berth_engine::exec::{Started, Streams};
use berth_engine::specs::ExecSpec;
use berth_engine::{Engine, EngineError, EngineOptions};
use serde_json::json;

use super::spdy::{Frame, Reader, Writer};
use super::Request;

/// A session over SPDY.
pub(super) fn run_spdy(opts: &EngineOptions, conn: TcpStream, req: Request) {
    let writer = match conn.try_clone().and_then(Writer::new) {
        Ok(w) => Arc::new(w),
        Err(_) => return,
    };
    let mut reader = Reader::new(conn);
    match req {
        Request::PortForward { pod } => port_forward(opts, reader, &writer, &pod),
        req => {
            let (tty, stdin, stdout, stderr) = req.streams();
            if let Some(ids) = collect_streams(&mut reader, &writer, tty, (stdin, stdout, stderr)) {
                let out = Arc::new(SpdyOut {
                    writer: writer.clone(),
                    ids: ids.clone(),
                });
                let inbox = SpdyIn {
                    reader,
                    writer: writer.clone(),
                    ids,
                };
                remote_command(opts, Box::new(inbox), out, req);
            }
        }
    }
    writer.close();
}

/// A remote command over WebSocket (`v5.channel.k8s.io`, or `v4` without the end of
/// input): one channel byte before each message's data.
pub(super) fn run_websocket(opts: &EngineOptions, conn: TcpStream, req: Request, v5: bool) {
    let Ok(reader) = conn.try_clone() else { return };
    let out = Arc::new(super::websocket::Out::new(conn));
    let inbox = WsIn {
        reader: super::websocket::Reader::new(reader),
        out: out.clone(),
        v5,
    };
    remote_command(opts, Box::new(inbox), out.clone(), req);
    out.close();
}

/// A remote command's streams, as both protocols number them (WebSocket's channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Stdout = 1,
    Stderr = 2,
    Error = 3,
}

/// What the client sends during a remote command.
enum In {
    Stdin(Vec<u8>),
    StdinEnd,
    Resize(Vec<u8>),
}

/// The server's side of a remote command's output.
pub(super) trait Out: Send + Sync {
    fn data(&self, kind: Kind, data: &[u8]) -> std::io::Result<()>;
    /// The outcome (a Status document), which ends the command.
    fn finish(&self, status: &[u8]);
}

/// The client's side: what it sends, until it goes.
trait Inbox: Send {
    fn recv(&mut self) -> Option<In>;
}

struct SpdyOut {
    writer: Arc<Writer>,
    ids: Ids,
}

impl Out for SpdyOut {
    fn data(&self, kind: Kind, data: &[u8]) -> std::io::Result<()> {
        let id = match kind {
            Kind::Stdout => self.ids.stdout,
            Kind::Stderr => self.ids.stderr,
            Kind::Error => self.ids.error,
        };
        match id {
            Some(id) => self.writer.data(id, data, false),
            None => Ok(()),
        }
    }

    fn finish(&self, status: &[u8]) {
        for id in [self.ids.stdout, self.ids.stderr].into_iter().flatten() {
            let _ = self.writer.data(id, &[], true);
        }
        if let Some(id) = self.ids.error {
            let _ = self.writer.data(id, status, true);
        }
    }
}

struct SpdyIn {
    reader: Reader,
    writer: Arc<Writer>,
    ids: Ids,
}

impl Inbox for SpdyIn {
    fn recv(&mut self) -> Option<In> {
        if std::mem::take(&mut self.ids.stdin_ended) {
            return Some(In::StdinEnd);
        }
        loop {
            match self.reader.next_frame().ok()?? {
                Frame::Data { id, data, fin } if Some(id) == self.ids.stdin => {
                    return Some(if fin && data.is_empty() {
                        In::StdinEnd
                    } else if fin {
                        // The data now; the end at the next call.
                        self.ids.stdin_ended = true;
                        In::Stdin(data)
                    } else {
                        In::Stdin(data)
                    });
                }
                Frame::Data { id, data, .. } if Some(id) == self.ids.resize => {
                    return Some(In::Resize(data))
                }
                Frame::Ping(p) => {
                    let _ = self.writer.pong(p);
                }
                Frame::GoAway => return None,
                _ => {}
            }
        }
    }
}

struct WsIn {
    reader: super::websocket::Reader,
    out: Arc<super::websocket::Out>,
    v5: bool,
}

impl Inbox for WsIn {
    fn recv(&mut self) -> Option<In> {
        loop {
            let msg = self.reader.next_message(&self.out)?;
            match msg.split_first() {
                Some((0, data)) => return Some(In::Stdin(data.to_vec())),
                Some((4, data)) => return Some(In::Resize(data.to_vec())),
                // v5: the client closed a channel; stdin's is the end of input.
                Some((255, [0])) if self.v5 => return Some(In::StdinEnd),
                _ => {}
            }
        }
    }
}

/// The streams of a remote command, by kind.
#[derive(Debug, Default, Clone)]
struct Ids {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
    /// The client ended stdin with data in the same frame: the end is still to tell.
    stdin_ended: bool,
}

/// Waits for the streams the client opens (the error stream, then what it asked for),
/// accepting each.
fn collect_streams(
    reader: &mut Reader,
    writer: &Writer,
    tty: bool,
    want: (bool, bool, bool),
) -> Option<Ids> {
    let (stdin, stdout, stderr) = want;
    let mut ids = Ids::default();
    let complete = |ids: &Ids| {
        ids.error.is_some()
            && (!stdin || ids.stdin.is_some())
            && (!stdout || ids.stdout.is_some())
            && (tty || !stderr || ids.stderr.is_some())
            && (!tty || ids.resize.is_some())
    };
    while !complete(&ids) {
        match reader.next_frame().ok()?? {
            Frame::SynStream { id, headers, .. } => {
                let kind = headers
                    .iter()
                    .find(|(k, _)| k == "streamtype")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                let slot = match kind {
                    "error" => &mut ids.error,
                    "stdin" => &mut ids.stdin,
                    "stdout" => &mut ids.stdout,
                    "stderr" => &mut ids.stderr,
                    "resize" => &mut ids.resize,
                    _ => {
                        writer.refuse(id).ok()?;
                        continue;
                    }
                };
                *slot = Some(id);
                writer.reply(id).ok()?;
            }
            Frame::Ping(p) => writer.pong(p).ok()?,
            Frame::GoAway => return None,
            _ => {}
        }
    }
    Some(ids)
}

/// Where the client's input goes.
enum Input {
    Pipe(Option<OwnedFd>),
    Terminal(OwnedFd),
    Attach(std::os::unix::net::UnixStream),
}

impl Input {
    fn write(&mut self, data: &[u8]) {
        let _ = match self {
            Input::Pipe(Some(fd)) => write_fd(fd, data),
            Input::Pipe(None) => Ok(()),
            Input::Terminal(fd) => write_fd(fd, data),
            Input::Attach(s) => attach::write_frame(s, attach::STDIN, data),
        };
    }

    fn close(&mut self) {
        match self {
            Input::Pipe(fd) => *fd = None,
            // A terminal's end of input is ^D.
            Input::Terminal(fd) => {
                let _ = write_fd(fd, &[4]);
            }
            Input::Attach(s) => {
                let _ = attach::write_frame(s, attach::STDIN_EOF, &[]);
            }
        }
    }

    fn resize(&mut self, width: u16, height: u16) {
        match self {
            Input::Terminal(fd) => {
                let _ = berth_engine::monitor::set_winsize(fd.as_fd(), height, width);
            }
            Input::Attach(s) => {
                let _ =
                    attach::write_frame(s, attach::RESIZE, &attach::resize_payload(height, width));
            }
            Input::Pipe(_) => {}
        }
    }
}

fn write_fd(fd: &OwnedFd, data: &[u8]) -> std::io::Result<()> {
    std::fs::File::from(fd.try_clone()?).write_all(data)
}

/// Passes what the client sends to the command: input, its end, resizes. Ends when the
/// client goes or the connection is closed.
fn forward_input(mut inbox: Box<dyn Inbox>, mut input: Input) {
    while let Some(msg) = inbox.recv() {
        match msg {
            In::Stdin(data) => input.write(&data),
            In::StdinEnd => input.close(),
            In::Resize(data) => {
                // One JSON document a resize: {"Width": 80, "Height": 24}.
                for doc in
                    serde_json::Deserializer::from_slice(&data).into_iter::<serde_json::Value>()
                {
                    let Ok(size) = doc else { break };
                    let dim = |k: &str| size[k].as_u64().map(|v| v.min(u16::MAX as u64) as u16);
                    if let (Some(w), Some(h)) = (dim("Width"), dim("Height")) {
                        input.resize(w, h);
                    }
                }
            }
        }
    }
}

/// Copies `from` to `sink` until its end (or the sink fails).
fn pump(
    mut from: impl Read + Send + 'static,
    sink: impl Fn(&[u8]) -> std::io::Result<()> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// A sink for the client's `kind` stream.
fn to(out: &Arc<dyn Out>, kind: Kind) -> impl Fn(&[u8]) -> std::io::Result<()> + Send + 'static {
    let out = out.clone();
    move |data| out.data(kind, data)
}

/// Kubernetes' Status document for how a command ended.
fn outcome(result: Result<i32, String>) -> Vec<u8> {
    let status = match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
        }),
    };
    serde_json::to_vec(&status).expect("a status serialises")
}

fn remote_command(opts: &EngineOptions, inbox: Box<dyn Inbox>, out: Arc<dyn Out>, req: Request) {
    let (tty, stdin, stdout, stderr) = req.streams();
    let finish = |result: Result<i32, String>| out.finish(&outcome(result));
    let engine = match Engine::open(opts.clone()) {
        Ok(e) => e,
        Err(e) => return finish(Err(e.to_string())),
    };
    match req {
        Request::Exec { container, cmd, .. } => {
            let spec = ExecSpec {
                cmd,
                tty,
                ..Default::default()
            };
            let streams = if tty {
                Streams::Terminal
            } else {
                Streams::Pipes { stdin }
            };
            let started = engine.exec_prepare(&container, &spec).and_then(|p| {
                p.start_with(
                    engine.run_root(),
                    &berth_image::fsutil::random_hex(6),
                    streams,
                )
            });
            let (process, input, outputs) = match started {
                Ok(Started::Pipes {
                    process,
                    stdin,
                    stdout,
                    stderr,
                }) => (
                    process,
                    Input::Pipe(stdin),
                    vec![
                        pump(std::fs::File::from(stdout), to(&out, Kind::Stdout)),
                        pump(std::fs::File::from(stderr), to(&out, Kind::Stderr)),
                    ],
                ),
                Ok(Started::Terminal { process, master }) => {
                    let output = match master.try_clone() {
                        Ok(o) => o,
                        Err(e) => return finish(Err(e.to_string())),
                    };
                    (
                        process,
                        Input::Terminal(master),
                        vec![pump(std::fs::File::from(output), to(&out, Kind::Stdout))],
                    )
                }
                Ok(Started::Detached(_)) => unreachable!("no detached start is asked for"),
                // A command that cannot run ends as a shell says (126, 127).
                Err(EngineError::Start { code, message }) => {
                    let kind = if stderr { Kind::Stderr } else { Kind::Stdout };
                    let _ = out.data(kind, format!("{message}\n").as_bytes());
                    return finish(Ok(code));
                }
                Err(e) => return finish(Err(berth_engine::monitor::error_chain(&e))),
            };
            std::thread::spawn(move || forward_input(inbox, input));
            let code = process.wait().map_err(|e| e.to_string());
            for o in outputs {
                let _ = o.join();
            }
            finish(code);
        }
        Request::Attach { container, .. } => {
            let rec = match engine.find_container(&container) {
                Ok(r) => r,
                Err(e) => return finish(Err(e.to_string())),
            };
            let hello = attach::Hello {
                stdin,
                stdout,
                stderr: stderr || tty,
            };
            let conn = match attach::connect(engine.run_root(), &rec.id, hello) {
                Ok(c) => c,
                Err(e) => return finish(Err(format!("attaching to {}: {e}", rec.id))),
            };
            let input = match conn.try_clone() {
                Ok(c) => Input::Attach(c),
                Err(e) => return finish(Err(e.to_string())),
            };
            std::thread::spawn(move || forward_input(inbox, input));
            // The container's output until it ends (or the monitor closes the socket).
            let mut conn = conn;
            while let Ok(Some((kind, data))) = attach::read_frame(&mut conn) {
                let kind = match kind {
                    attach::STDOUT => Kind::Stdout,
                    attach::STDERR if tty => Kind::Stdout,
                    attach::STDERR => Kind::Stderr,
                    attach::EXIT => break,
                    _ => continue,
                };
                if out.data(kind, &data).is_err() {
                    return;
                }
            }
            finish(Ok(0));
        }
        Request::PortForward { .. } => {}
    }
}

/// Port forwarding: for each connection the client opens an error and a data stream
/// (`port`, `requestid`); the data stream is joined to a TCP connection to that port
/// on the pod's loopback (inside its network namespace).
fn port_forward(opts: &EngineOptions, mut reader: Reader, writer: &Arc<Writer>, pod: &str) {
    let netns = Engine::open(opts.clone())
        .and_then(|e| e.pod(pod))
        .map(|p| p.namespace("net").map(std::path::Path::to_path_buf))
        .map_err(|e| e.to_string());
    // By request: its error stream.
    let mut errors: HashMap<String, u32> = HashMap::new();
    // By data stream: the connection to the pod.
    let mut conns: HashMap<u32, TcpStream> = HashMap::new();
    while let Ok(Some(frame)) = reader.next_frame() {
        match frame {
            Frame::SynStream { id, headers, .. } => {
                let header = |k: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                if writer.reply(id).is_err() {
                    return;
                }
                let request = header("requestid");
                match header("streamtype").as_str() {
                    "error" => {
                        errors.insert(request, id);
                    }
                    "data" => {
                        let error_id = errors.get(&request).copied();
                        let port: Result<u16, String> = header("port")
                            .parse()
                            .map_err(|_| format!("invalid port {:?}", header("port")));
                        let connected = port.and_then(|port| {
                            let netns = netns.clone()?;
                            connect_in(netns.as_deref(), port)
                        });
                        match connected {
                            Ok(conn) => {
                                let Ok(from) = conn.try_clone() else { continue };
                                conns.insert(id, conn);
                                let w = writer.clone();
                                std::thread::spawn(move || {
                                    let sink = w.clone();
                                    let _ = pump(from, move |d| sink.data(id, d, false)).join();
                                    let _ = w.data(id, &[], true);
                                    if let Some(e) = error_id {
                                        let _ = w.data(e, &[], true);
                                    }
                                });
                            }
                            Err(message) => {
                                if let Some(e) = error_id {
                                    let _ = writer.data(e, message.as_bytes(), true);
                                }
                                let _ = writer.data(id, &[], true);
                            }
                        }
                    }
                    _ => {
                        let _ = writer.refuse(id);
                    }
                }
            }
            Frame::Data { id, data, fin } => {
                if let Some(conn) = conns.get_mut(&id) {
                    if !data.is_empty() && conn.write_all(&data).is_err() {
                        let _ = conn.shutdown(Shutdown::Both);
                    }
                    if fin {
                        let _ = conn.shutdown(Shutdown::Write);
                    }
                }
            }
            Frame::Reset { id } => {
                if let Some(conn) = conns.remove(&id) {
                    let _ = conn.shutdown(Shutdown::Both);
                }
            }
            Frame::Ping(p) => {
                if writer.pong(p).is_err() {
                    return;
                }
            }
            Frame::GoAway => break,
            Frame::Other => {}
        }
    }
    for conn in conns.values() {
        let _ = conn.shutdown(Shutdown::Both);
    }
}

/// A TCP connection to `port` on the loopback of the network namespace at `netns`
/// (the host's when None: a pod on the host's network). The socket is made inside the
/// namespace and stays there.
fn connect_in(netns: Option<&std::path::Path>, port: u16) -> Result<TcpStream, String> {
    let connect = move || {
        TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10),
        )
        .map_err(|e| berth_net::NetError::Io {
            what: format!("connecting to port {port} in the pod"),
            source: e,
        })
    };
    match netns {
        Some(ns) => berth_net::netns::within(ns, connect),
        None => connect(),
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_kubernetes_status_documents() {
        let ok: serde_json::Value = serde_json::from_slice(&outcome(Ok(0))).unwrap();
        assert_eq!(ok["status"], "Success");
        let failed: serde_json::Value = serde_json::from_slice(&outcome(Ok(3))).unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let broken: serde_json::Value =
            serde_json::from_slice(&outcome(Err("no such container: x".into()))).unwrap();
        assert_eq!(broken["message"], "no such container: x");
    }
}
