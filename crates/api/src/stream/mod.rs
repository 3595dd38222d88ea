//! Hijacked streams: `attach` and `exec` over an HTTP upgrade (`Connection: Upgrade`,
//! `Upgrade: tcp`), as the docker CLI and the SDKs use them.
//!
//! An attach is bridged to the container's monitor (its attach socket); an attach to a
//! container that is not running yet waits for the `start` that Docker's clients send
//! right after it, and `start` hands it the monitor's stream before the container runs,
//! so no output is missed. An exec is the engine's: the container's monitor starts the
//! process (on pipes this service reads, or on a terminal whose master it is sent) and
//! reports its exit, as it does for the CLI; nothing forks here.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use berth_engine::attach::{self, DetachKeys, FrameBuffer, Hello};
use berth_engine::exec::{ExecProcess, ExecSpec, PreparedExec, Started, Streams};
use berth_engine::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::*;

mod exec;

pub(crate) use exec::*;

/// An attach waiting for its container's start.
struct Pending {
    hello: Hello,
    to: oneshot::Sender<StdUnixStream>,
}

/// One `exec` instance: what was asked, and how it went.
pub(crate) struct ExecEntry {
    id: String,
    container_id: String,
    cmd: Vec<String>,
    env: Vec<String>,
    workdir: String,
    user: String,
    tty: bool,
    privileged: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    state: Mutex<ExecState>,
}

#[derive(Default)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i32>,
    /// When it ended: kept a while for `exec inspect`, then forgotten.
    ended: Option<std::time::Instant>,
    pid: i32,
    /// The pty's master while a tty exec runs (for resize).
    master: Option<Arc<OwnedFd>>,
}

impl ExecState {
    fn started_as(&mut self, pid: i32, master: Option<Arc<OwnedFd>>) {
        self.running = true;
        self.pid = pid;
        self.master = master;
    }

    /// It ended with `code` (None: how is not known).
    fn ended_with(&mut self, code: Option<i32>) {
        self.running = false;
        self.master = None;
        self.exit_code = code;
        self.ended = Some(std::time::Instant::now());
    }
}

/// How long an ended exec stays inspectable.
const EXEC_KEPT: std::time::Duration = std::time::Duration::from_secs(300);

/// What the service keeps between requests.
pub struct Service {
    pub roots: Roots,
    pending: Mutex<HashMap<String, Vec<Pending>>>,
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
    /// Processes this service started (monitors, `berth exec`): reaped as they end.
    children: berth_engine::containers::Reaper,
    /// A warmer forked when a container was created, for the start that usually follows
    /// (`docker run` is a create, an attach, a wait and a start): see AttachWarmer.
    warmer: Mutex<Option<berth_engine::sys::AttachWarmer>>,
    /// And a monitor started then, for the same start (see berth_engine::spare).
    spare: Mutex<Option<berth_engine::spare::Spare>>,
}

impl Service {
    pub fn new(roots: Roots) -> Arc<Service> {
        let svc = Arc::new(Service {
            roots,
            pending: Mutex::default(),
            execs: Mutex::default(),
            children: Default::default(),
            warmer: Mutex::default(),
            spare: Mutex::default(),
        });
        // Monitors are this process's children: reap them as their containers end. And
        // give the allocator's free memory back every few seconds: a burst of clients
        // on many threads leaves it in the heaps, and the service would keep its peak.
        let weak = Arc::downgrade(&svc);
        std::thread::spawn(move || {
            let mut tick = 0u32;
            while let Some(svc) = weak.upgrade() {
                svc.children.reap();
                drop(svc);
                tick = tick.wrapping_add(1);
                if tick.is_multiple_of(5) {
                    // SAFETY: malloc_trim only releases free memory of the allocator.
                    unsafe { libc::malloc_trim(0) };
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        });
        svc
    }

    /// Forks a warmer and starts a spare monitor for the start a create announces
    /// (replacing unused ones, which end at their drop; a warmer by itself within a
    /// second too).
    pub(crate) fn warm(&self) {
        let w = berth_engine::sys::AttachWarmer::start();
        *self.warmer.lock().expect("warmer lock") = w;
        let (root, run_root) = (&self.roots.root, &self.roots.run_root);
        let monitor = berth_engine::EngineOptions::new(root, run_root).monitor_path();
        let s = berth_engine::spare::Spare::spawn(&monitor, root, run_root);
        // The one replaced is killed and reaped outside the lock.
        let old = std::mem::replace(&mut *self.spare.lock().expect("spare lock"), s);
        drop(old);
    }

    pub(crate) fn adopt(&self, child: Option<std::process::Child>) {
        self.children.adopt(child);
    }

    /// `start`: when attaches wait for this container, the monitor holds it until they
    /// are connected. Returns false when it was running already. A container that
    /// fails to start and was to be removed when it ends is removed, as Docker does.
    pub(crate) fn start(&self, e: &Engine, id: &str) -> Result<bool, berth_engine::EngineError> {
        let rec = e.find_container(id)?;
        let started = self.start_found(e, &rec);
        if started.is_err() && rec.host_config.auto_remove {
            let _ = e.remove_container(&rec.id, true, true);
        }
        started
    }

    fn start_found(
        &self,
        e: &Engine,
        rec: &berth_engine::model::ContainerRecord,
    ) -> Result<bool, berth_engine::EngineError> {
        let waiting = self
            .pending
            .lock()
            .expect("pending lock")
            .remove(&rec.id)
            .unwrap_or_default();
        let waiting: Vec<Pending> = waiting.into_iter().filter(|p| !p.to.is_closed()).collect();
        if let Some(w) = self.warmer.lock().expect("warmer lock").take() {
            e.adopt_warmer(w);
        }
        if let Some(s) = self.spare.lock().expect("spare lock").take() {
            e.adopt_spare(s);
        }
        let Some(mut handle) = e.start_container(&rec.id, !waiting.is_empty())? else {
            return Ok(false);
        };
        if !waiting.is_empty() {
            for p in waiting {
                if let Ok(s) = attach::connect(e.run_root(), &rec.id, p.hello) {
                    let _ = p.to.send(s);
                }
            }
            let started = handle.finish();
            if started.is_err() {
                handle.wait_monitor();
            }
            started?;
            e.emit_container(rec, "start", &[]);
        }
        self.adopt(handle.child.take());
        Ok(true)
    }
}

fn wants_upgrade(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// The client's side of a hijacked stream: what it sends, where its output goes.
type ClientIn = Box<dyn AsyncRead + Send + Unpin>;
type ClientOut = Box<dyn AsyncWrite + Send + Unpin>;

/// Answers `req` so that the connection becomes a raw stream (101 Switching Protocols
/// when the client asked for the upgrade, as Docker's clients do; otherwise a 200 whose
/// body carries the output, without stdin), and runs `session` on it.
fn hijack<F, Fut>(mut req: Request<Body>, tty: bool, session: F) -> Response<Body>
where
    F: FnOnce(Option<ClientIn>, ClientOut) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if wants_upgrade(&req) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let up = match on.await {
                Ok(up) => up,
                Err(err) => {
                    eprintln!("berth serve: upgrading the connection: {err}");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(up);
            let (r, w) = tokio::io::split(io);
            session(Some(Box::new(r)), Box::new(w)).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONTENT_TYPE, stream_type(tty))
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "tcp")
            .header("Api-Version", API_VERSION)
            .body(Body::empty())
            .expect("a valid response")
    } else {
        let (r, w) = tokio::io::simplex(64 * 1024);
        tokio::spawn(session(None, Box::new(w)));
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, stream_type(tty))
            .header("Api-Version", API_VERSION)
            .body(Body::from_stream(tokio_util::io::ReaderStream::new(r)))
            .expect("a valid response")
    }
}

/// Docker's multiplexed frame header: stream, three zeros, big-endian size.
fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

async fn write_out(out: &mut ClientOut, tty: bool, stream: u8, data: &[u8]) -> std::io::Result<()> {
    if !tty {
        out.write_all(&frame_header(stream, data.len())).await?;
    }
    out.write_all(data).await?;
    out.flush().await
}

/// `POST /containers/{id}/attach`.
/// (`ws`: `GET /containers/{id}/attach/ws`, the same over a WebSocket, whose messages
/// carry the raw stream.)
pub(crate) async fn attach_container(
    svc: Arc<Service>,
    id: String,
    q: Vec<(String, String)>,
    req: Request<Body>,
    ws: bool,
) -> Response<Body> {
    let roots = svc.roots.clone();
    let found = tokio::task::spawn_blocking(move || {
        let e = Engine::open(berth_engine::EngineOptions::new(
            &roots.root,
            &roots.run_root,
        ))?;
        let rec = e.find_container(&id)?;
        let active = e.container_state(&rec.id)?.status.is_active();
        let logs = if flag(&q, "logs") {
            e.log_path(&rec)
                .and_then(|p| berth_engine::logs::read_all(&p).ok())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok::<_, berth_engine::EngineError>((rec, active, logs, q))
    })
    .await;
    let (rec, active, logs, q) = match found {
        Ok(Ok(x)) => x,
        Ok(Err(err)) => return engine_error(err),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "attach panicked"),
    };
    let tty = rec.config.tty;
    // The end of the client's input closes the container's only for a container made to
    // be attached once (`StdinOnce`, `run -i`), never a terminal's, as Docker does: a
    // client that detaches or goes leaves the container as it was.
    let close_stdin_at_end = rec.config.stdin_once && !tty;
    let keys = match DetachKeys::parse(&param(&q, "detachKeys").unwrap_or_default()) {
        Ok(k) => k,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    // A WebSocket's messages are the stream itself: no multiplexing frames.
    let raw = tty || ws;
    let hello = Hello {
        stdin: flag(&q, "stdin") && rec.config.open_stdin,
        stdout: flag(&q, "stdout"),
        stderr: flag(&q, "stderr"),
    };
    let stream = flag(&q, "stream");
    let want = LogWant {
        stdout: hello.stdout,
        stderr: hello.stderr,
        timestamps: false,
        tty: raw,
    };
    let past = want.frames(&logs);
    // Where the monitor's stream comes from: now, or from the start that comes next.
    let (tx, rx) = oneshot::channel();
    if stream {
        if active {
            match attach::connect(&svc.roots.run_root, &rec.id, hello) {
                Ok(s) => {
                    let _ = tx.send(s);
                }
                Err(err) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("attaching to {}: {err}", rec.id),
                    )
                }
            }
        } else {
            svc.pending
                .lock()
                .expect("pending lock")
                .entry(rec.id.clone())
                .or_default()
                .push(Pending { hello, to: tx });
        }
    } else {
        drop(tx);
    }
    let session = move |input: Option<ClientIn>, mut out: ClientOut| async move {
        if !past.is_empty() && out.write_all(&past).await.is_err() {
            return;
        }
        if let Ok(sock) = rx.await {
            let how = Pump {
                raw,
                detach_keys: tty.then_some(keys),
                stdin: hello.stdin,
                close_stdin: close_stdin_at_end,
            };
            if let Err(err) = pump_monitor(sock, input, &mut out, how).await {
                eprintln!("berth serve: attach: {err}");
            }
        }
        let _ = out.shutdown().await;
    };
    if ws {
        websocket(req, session).await
    } else {
        hijack(req, tty, session)
    }
}

/// Answers a WebSocket handshake and runs `session` on the socket: its binary (or
/// text) messages are the client's input, the session's output goes out as binary
/// messages.
async fn websocket<F, Fut>(req: Request<Body>, session: F) -> Response<Body>
where
    F: FnOnce(Option<ClientIn>, ClientOut) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let (mut parts, _) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    upgrade.on_upgrade(move |mut socket| async move {
        // The session reads and writes one end of a pipe; this loop carries the other
        // end to and from the socket.
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (from_session, to_session) = tokio::io::split(theirs);
        let (input, output) = tokio::io::split(ours);
        let carry = async move {
            let (mut from_session, mut to_session) = (from_session, to_session);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                tokio::select! {
                    r = from_session.read(&mut buf) => match r {
                        Ok(0) | Err(_) => {
                            let _ = socket.send(Message::Close(None)).await;
                            return;
                        }
                        Ok(n) => {
                            if socket.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                                return;
                            }
                        }
                    },
                    m = socket.recv() => match m {
                        Some(Ok(Message::Binary(d))) => {
                            let _ = to_session.write_all(&d).await;
                        }
                        Some(Ok(Message::Text(t))) => {
                            let _ = to_session.write_all(t.as_bytes()).await;
                        }
                        Some(Ok(_)) => {}
                        // The client went: the session's pipe closes with this loop.
                        Some(Err(_)) | None => return,
                    },
                }
            }
        };
        let run = session(Some(Box::new(input)), Box::new(output));
        tokio::join!(carry, run);
    })
}

/// How a session's streams are carried.
#[derive(Clone)]
struct Pump {
    /// Output as it comes (a tty, a WebSocket), else in Docker's multiplexed frames.
    raw: bool,
    /// The keys that end the session when they come in the input (a tty's).
    detach_keys: Option<DetachKeys>,
    /// The client's input goes to the container.
    stdin: bool,
    /// The end of the client's input closes the container's stdin.
    close_stdin: bool,
}

/// Bridges a client and a container's monitor until the container exits, the client
/// goes, or (with a tty) the client sends Ctrl-P Ctrl-Q.
async fn pump_monitor(
    sock: StdUnixStream,
    input: Option<ClientIn>,
    out: &mut ClientOut,
    how: Pump,
) -> std::io::Result<()> {
    let Pump {
        raw,
        mut detach_keys,
        stdin,
        close_stdin,
    } = how;
    sock.set_nonblocking(true)?;
    let sock = tokio::net::UnixStream::from_std(sock)?;
    let (mut from_monitor, mut to_monitor) = sock.into_split();
    let (detached_tx, detached) = oneshot::channel::<()>();
    // Only a sent detach ends the session: a feeder that ended (or none) drops the sender.
    let detached = async {
        if detached.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(detached);
    // The monitor takes a closed socket for a client that went: the write half lives
    // (in the feeder, or here) until the session ends.
    let mut idle_writer = None;
    let feeder = match input.filter(|_| stdin) {
        None => {
            idle_writer = Some(to_monitor);
            None
        }
        Some(mut input) => Some(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = input.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    if close_stdin {
                        let _ = to_monitor
                            .write_all(&attach::frame(attach::STDIN_EOF, &[]))
                            .await;
                    }
                    break;
                }
                let (data, detach) = if let Some(keys) = detach_keys.as_mut() {
                    keys.feed(&buf[..n])
                } else {
                    (buf[..n].to_vec(), false)
                };
                if !data.is_empty()
                    && to_monitor
                        .write_all(&attach::frame(attach::STDIN, &data))
                        .await
                        .is_err()
                {
                    break;
                }
                if detach {
                    let _ = detached_tx.send(());
                    break;
                }
            }
            std::future::pending::<()>().await;
            drop(to_monitor);
        })),
    };
    let mut fb = FrameBuffer::default();
    let mut buf = vec![0u8; 64 * 1024];
    let result = loop {
        let n = tokio::select! {
            r = from_monitor.read(&mut buf) => r?,
            _ = &mut detached => break Ok(()),
        };
        if n == 0 {
            break Ok(());
        }
        fb.push(&buf[..n]);
        let mut exited = false;
        while let Some((kind, payload)) = fb.next_frame()? {
            match kind {
                attach::STDOUT | attach::STDERR => write_out(out, raw, kind, &payload).await?,
                attach::EXIT => exited = true,
                _ => {}
            }
        }
        if exited {
            break Ok(());
        }
    };
    if let Some(f) = feeder {
        f.abort();
    }
    drop(idle_writer);
    result
}

/// `POST /containers/{id}/resize?h=&w=`: the container's terminal size.
pub(crate) fn resize_container(e: &Engine, id: &str, q: &[(String, String)]) -> Response<Body> {
    let Some((h, w)) = size_of(q) else {
        return error(StatusCode::BAD_REQUEST, "resize needs h and w");
    };
    let rec = match e.find_container(id) {
        Ok(r) => r,
        Err(err) => return engine_error(err),
    };
    if let Some(refused) = not_running(e, &rec.id) {
        return refused;
    }
    match attach::connect(e.run_root(), &rec.id, Hello::default()).and_then(|mut s| {
        attach::write_frame(&mut s, attach::RESIZE, &attach::resize_payload(h, w))
    }) {
        Ok(()) => json_response(StatusCode::OK, &Value::Null),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("resize: {err}")),
    }
}

/// Docker's 409 when container `id` is not running (None when it is).
fn not_running(e: &Engine, id: &str) -> Option<Response<Body>> {
    match e.container_state(id) {
        Ok(st) if st.status.is_active() => None,
        Ok(_) => Some(engine_error(EngineError::NotRunning { id: id.into() })),
        Err(err) => Some(engine_error(err)),
    }
}

fn size_of(q: &[(String, String)]) -> Option<(u16, u16)> {
    let h = param(q, "h")?.parse().ok()?;
    let w = param(q, "w")?.parse().ok()?;
    Some((h, w))
}
