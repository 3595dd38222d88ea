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

pub(super) fn run(opts: &EngineOptions, conn: TcpStream, req: Request) {
    let writer = match conn.try_clone().and_then(Writer::new) {
        Ok(w) => Arc::new(w),
        Err(_) => return,
    };
    let reader = Reader::new(conn);
    match req {
        Request::PortForward { pod } => port_forward(opts, reader, &writer, &pod),
        req => remote_command(opts, reader, &writer, req),
    }
    writer.close();
}

/// The streams of a remote command, by kind.
#[derive(Debug, Default)]
struct Ids {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
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

/// Reads the client's frames: input, its end, resizes; answers pings. Ends when the
/// client goes or the connection is closed.
fn forward_input(mut reader: Reader, writer: Arc<Writer>, ids: Ids, mut input: Input) {
    while let Ok(Some(frame)) = reader.next_frame() {
        match frame {
            Frame::Data { id, data, fin } if Some(id) == ids.stdin => {
                if !data.is_empty() {
                    input.write(&data);
                }
                if fin {
                    input.close();
                }
            }
            Frame::Data { id, data, .. } if Some(id) == ids.resize => {
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
            Frame::Ping(p) => {
                let _ = writer.pong(p);
            }
            Frame::GoAway => break,
            _ => {}
        }
    }
}

/// Copies `from` to stream `id` until its end.
fn pump(
    mut from: impl Read + Send + 'static,
    writer: Arc<Writer>,
    id: Option<u32>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(id) = id {
                        if writer.data(id, &buf[..n], false).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    })
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

fn remote_command(opts: &EngineOptions, mut reader: Reader, writer: &Arc<Writer>, req: Request) {
    let (tty, stdin, stdout, stderr) = match &req {
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
        Request::PortForward { .. } => return,
    };
    let Some(ids) = collect_streams(&mut reader, writer, tty, (stdin, stdout, stderr)) else {
        return;
    };
    let error_id = ids.error.expect("collected");
    let finish = |result: Result<i32, String>| {
        for id in [ids.stdout, ids.stderr].into_iter().flatten() {
            let _ = writer.data(id, &[], true);
        }
        let _ = writer.data(error_id, &outcome(result), true);
    };
    let engine = match Engine::open(opts.clone()) {
        Ok(e) => e,
        Err(e) => return finish(Err(e.to_string())),
    };
    let (stdout_id, stderr_id) = (ids.stdout, ids.stderr);
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
                        pump(std::fs::File::from(stdout), writer.clone(), stdout_id),
                        pump(std::fs::File::from(stderr), writer.clone(), stderr_id),
                    ],
                ),
                Ok(Started::Terminal { process, master }) => {
                    let out = match master.try_clone() {
                        Ok(o) => o,
                        Err(e) => return finish(Err(e.to_string())),
                    };
                    (
                        process,
                        Input::Terminal(master),
                        vec![pump(std::fs::File::from(out), writer.clone(), stdout_id)],
                    )
                }
                Ok(Started::Detached(_)) => unreachable!("no detached start is asked for"),
                // A command that cannot run ends as a shell says (126, 127).
                Err(EngineError::Start { code, message }) => {
                    if let Some(id) = stderr_id.or(stdout_id) {
                        let _ = writer.data(id, format!("{message}\n").as_bytes(), false);
                    }
                    return finish(Ok(code));
                }
                Err(e) => return finish(Err(berth_engine::monitor::error_chain(&e))),
            };
            let (w, inputs) = (writer.clone(), ids_for_input(&ids));
            std::thread::spawn(move || forward_input(reader, w, inputs, input));
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
            let (w, inputs) = (writer.clone(), ids_for_input(&ids));
            std::thread::spawn(move || forward_input(reader, w, inputs, input));
            // The container's output until it ends (or the monitor closes the socket).
            let mut conn = conn;
            while let Ok(Some((kind, data))) = attach::read_frame(&mut conn) {
                let id = match kind {
                    attach::STDOUT => stdout_id,
                    attach::STDERR if tty => stdout_id,
                    attach::STDERR => stderr_id,
                    attach::EXIT => break,
                    _ => None,
                };
                if let Some(id) = id {
                    if writer.data(id, &data, false).is_err() {
                        return;
                    }
                }
            }
            finish(Ok(0));
        }
        Request::PortForward { .. } => {}
    }
}

fn ids_for_input(ids: &Ids) -> Ids {
    Ids {
        stdin: ids.stdin,
        resize: ids.resize,
        ..Default::default()
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
                                    let _ = pump(from, w.clone(), Some(id)).join();
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
