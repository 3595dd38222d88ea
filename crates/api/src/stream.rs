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
use berth_engine::exec::{ExecIo, ExecProcess, ExecSpec, PreparedExec};
use berth_engine::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::*;

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
    children: Mutex<Vec<std::process::Child>>,
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
            children: Mutex::default(),
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
                svc.children
                    .lock()
                    .expect("children lock")
                    .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
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
        if let Some(c) = child {
            self.children.lock().expect("children lock").push(c);
        }
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
            berth_engine::logs::read_all(&e.container_dir(&rec.id).join("log.json"))
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
                detach_keys: tty,
                stdin: hello.stdin,
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
#[derive(Clone, Copy)]
struct Pump {
    /// Output as it comes (a tty, a WebSocket), else in Docker's multiplexed frames.
    raw: bool,
    /// Ctrl-P Ctrl-Q in the input ends the session (a tty's).
    detach_keys: bool,
    /// The client's input goes to the container.
    stdin: bool,
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
        detach_keys,
        stdin,
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
            let mut keys = DetachKeys::default();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = input.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    let _ = to_monitor
                        .write_all(&attach::frame(attach::STDIN_EOF, &[]))
                        .await;
                    break;
                }
                let (data, detach) = if detach_keys {
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

fn strings(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// `POST /containers/{id}/exec`: records what to run; `exec/{id}/start` runs it.
pub(crate) fn exec_create(svc: &Service, e: &Engine, id: &str, body: &[u8]) -> Response<Body> {
    let v = match body_json(body) {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let b = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let spec = ExecSpec {
        cmd: strings(&v, "Cmd"),
        env: strings(&v, "Env"),
        workdir: Some(s("WorkingDir")).filter(|w| !w.is_empty()),
        user: Some(s("User")).filter(|u| !u.is_empty()),
        tty: b("Tty"),
        privileged: b("Privileged"),
    };
    let rec = match e.exec_check(id, &spec) {
        Ok(r) => r,
        Err(err) => return engine_error(err),
    };
    let entry = ExecEntry {
        id: berth_engine::names::new_id(),
        container_id: rec.id.clone(),
        cmd: spec.cmd,
        env: spec.env,
        workdir: s("WorkingDir"),
        user: s("User"),
        tty: b("Tty"),
        privileged: b("Privileged"),
        stdin: b("AttachStdin"),
        stdout: b("AttachStdout"),
        stderr: b("AttachStderr"),
        state: Mutex::default(),
    };
    let exec_id = entry.id.clone();
    let mut execs = svc.execs.lock().expect("execs lock");
    execs.retain(|_, x| {
        x.state
            .lock()
            .expect("exec lock")
            .ended
            .is_none_or(|t| t.elapsed() < EXEC_KEPT)
    });
    execs.insert(exec_id.clone(), Arc::new(entry));
    json_response(StatusCode::CREATED, &json!({"Id": exec_id}))
}

fn find_exec(svc: &Service, id: &str) -> Option<Arc<ExecEntry>> {
    svc.execs.lock().expect("execs lock").get(id).cloned()
}

fn no_such_exec(id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!("No such exec instance: {id}"),
    )
}

/// `GET /exec/{id}/json`.
pub(crate) fn exec_inspect(svc: &Service, id: &str) -> Response<Body> {
    let Some(x) = find_exec(svc, id) else {
        return no_such_exec(id);
    };
    let st = x.state.lock().expect("exec lock");
    let (entrypoint, args) = x.cmd.split_first().expect("a command");
    json_response(
        StatusCode::OK,
        &json!({
            "ID": x.id,
            "Running": st.running,
            "ExitCode": st.exit_code,
            "ProcessConfig": {
                "tty": x.tty, "entrypoint": entrypoint, "arguments": args,
                "privileged": x.privileged, "user": x.user,
            },
            "OpenStdin": x.stdin,
            "OpenStderr": x.stderr,
            "OpenStdout": x.stdout,
            "CanRemove": false,
            "ContainerID": x.container_id,
            "DetachKeys": "",
            "Pid": st.pid,
        }),
    )
}

/// `POST /exec/{id}/resize?h=&w=`.
pub(crate) fn exec_resize(svc: &Service, id: &str, q: &[(String, String)]) -> Response<Body> {
    let Some(x) = find_exec(svc, id) else {
        return no_such_exec(id);
    };
    let Some((h, w)) = size_of(q) else {
        return error(StatusCode::BAD_REQUEST, "resize needs h and w");
    };
    let master = x.state.lock().expect("exec lock").master.clone();
    match master {
        Some(m) => match berth_engine::monitor::set_winsize(m.as_fd(), h, w) {
            Ok(()) => json_response(StatusCode::OK, &Value::Null),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("resize: {err}")),
        },
        None => error(
            StatusCode::CONFLICT,
            format!("exec {id} has no terminal to resize"),
        ),
    }
}

/// An exec started by its container's monitor, with this service's ends of its streams.
enum Started {
    Pipes {
        process: ExecProcess,
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Terminal {
        process: ExecProcess,
        master: OwnedFd,
    },
    Detached(ExecProcess),
}

/// Checks that `x` can run (its container running, its user known) and writes its
/// process file (blocking).
fn prepare_exec(roots: &Roots, x: &ExecEntry, detach: bool) -> Result<PreparedExec, EngineError> {
    let e = Engine::open(EngineOptions::new(&roots.root, &roots.run_root))?;
    let opts = ExecSpec {
        cmd: x.cmd.clone(),
        env: x.env.clone(),
        workdir: Some(x.workdir.clone()).filter(|w| !w.is_empty()),
        user: Some(x.user.clone()).filter(|u| !u.is_empty()),
        tty: x.tty && !detach,
        privileged: x.privileged,
    };
    e.exec_prepare(&x.container_id, &opts)
}

/// Starts a prepared exec through its container's monitor (blocking).
fn start_exec(
    roots: &Roots,
    x: &ExecEntry,
    prepared: PreparedExec,
    detach: bool,
) -> Result<Started, EngineError> {
    let pipe = || -> Result<(OwnedFd, OwnedFd), EngineError> {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(berth_engine::error::sys_err("pipe"))
    };
    let null = berth_engine::exec::dev_null;
    if detach {
        let process = prepared.start(ExecIo::Streams([null()?, null()?, null()?]))?;
        return Ok(Started::Detached(process));
    }
    if x.tty {
        let dir = roots.run_root.join("s");
        std::fs::create_dir_all(&dir).map_err(berth_engine::error::io_err(&dir))?;
        let path = dir.join(format!("a{}.con", &x.id[..12]));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(berth_engine::error::io_err(&path))?;
        let process = prepared.start(ExecIo::Terminal(path.clone()));
        let _ = std::fs::remove_file(&path);
        let process = process?;
        let master = berth_engine::monitor::receive_pty_from(&listener)
            .map_err(berth_engine::error::io_err(&path))?;
        return Ok(Started::Terminal { process, master });
    }
    let (stdin_r, stdin_w) = if x.stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (null()?, None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let process = prepared.start(ExecIo::Streams([stdin_r, out_w, err_w]))?;
    Ok(Started::Pipes {
        process,
        stdin: stdin_w,
        stdout: out_r,
        stderr: err_r,
    })
}

/// `POST /exec/{id}/start`: runs the command, on the hijacked connection unless
/// `Detach`.
pub(crate) async fn exec_start(
    svc: Arc<Service>,
    id: String,
    req: Request<Body>,
) -> Response<Body> {
    let Some(x) = find_exec(&svc, &id) else {
        return no_such_exec(&id);
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {err}")),
    };
    let v = if bytes.is_empty() {
        json!({})
    } else {
        match body_json(&bytes) {
            Ok(v) => v,
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        }
    };
    {
        let mut st = x.state.lock().expect("exec lock");
        if st.started {
            return error(
                StatusCode::CONFLICT,
                format!("exec {id} has already been started"),
            );
        }
        st.started = true;
    }
    let detach = v.get("Detach").and_then(Value::as_bool).unwrap_or(false);
    let size = v
        .get("ConsoleSize")
        .and_then(Value::as_array)
        .and_then(|a| Some((a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16)));
    let (roots, xs) = (svc.roots.clone(), x.clone());
    let prepared = tokio::task::spawn_blocking(move || prepare_exec(&roots, &xs, detach))
        .await
        .unwrap_or_else(|e| Err(EngineError::Unavailable(format!("exec: {e}"))));
    let prepared = match prepared {
        Ok(p) => p,
        // Not running, paused, gone: refused before anything ran.
        Err(err) => {
            x.state.lock().expect("exec lock").ended_with(None);
            return engine_error(err);
        }
    };
    if detach {
        let (roots, xs) = (svc.roots.clone(), x.clone());
        let started = tokio::task::spawn_blocking(move || start_exec(&roots, &xs, prepared, true))
            .await
            .unwrap_or_else(|e| Err(EngineError::Unavailable(format!("exec: {e}"))));
        let process = match started {
            Ok(Started::Detached(p)) => p,
            Ok(_) => unreachable!("a detached start is detached"),
            Err(err) => {
                let code = err.start_code().map(i32::from);
                x.state.lock().expect("exec lock").ended_with(code);
                return engine_error(err);
            }
        };
        x.state
            .lock()
            .expect("exec lock")
            .started_as(process.pid, None);
        tokio::task::spawn_blocking(move || {
            let code = process.wait().ok();
            x.state.lock().expect("exec lock").ended_with(code);
        });
        return json_response(StatusCode::OK, &Value::Null);
    }
    // The process starts once the connection is the client's stream, as Docker's daemon
    // starts it: output sent before the client has read the upgrade's headers can be
    // lost by clients that read them through a buffer (docker-py).
    let req = Request::from_parts(parts, Body::empty());
    let tty = x.tty;
    let roots = svc.roots.clone();
    hijack(req, tty, move |input, mut out| async move {
        let xs = x.clone();
        let started = tokio::task::spawn_blocking(move || start_exec(&roots, &xs, prepared, false))
            .await
            .unwrap_or_else(|e| Err(EngineError::Unavailable(format!("exec: {e}"))));
        let code = match started {
            Ok(Started::Terminal { process, master }) => {
                run_tty_exec(&x, process, master, size, input, &mut out)
                    .await
                    .ok()
            }
            Ok(Started::Pipes {
                process,
                stdin,
                stdout,
                stderr,
            }) => {
                let streams = [stdin, Some(stdout), Some(stderr)];
                run_piped_exec(&x, process, streams, input, &mut out)
                    .await
                    .ok()
            }
            Ok(Started::Detached(_)) => unreachable!("only a detached start is detached"),
            Err(err) => {
                // The program could not start: its words go to the client's stream, as
                // Docker's daemon writes them, and its code is Docker's (126, 127).
                let msg = format!("{}\r\n", berth_engine::monitor::error_chain(&err));
                let _ = write_out(&mut out, tty, 2, msg.as_bytes()).await;
                Some(err.start_code().map_or(126, i32::from))
            }
        };
        x.state.lock().expect("exec lock").ended_with(code);
        let _ = out.shutdown().await;
    })
}

/// Waits for an exec's process to end (the monitor reports it) and stops feeding it.
async fn finish_exec(
    process: ExecProcess,
    feeder: Option<tokio::task::JoinHandle<()>>,
) -> std::io::Result<i32> {
    let code = tokio::task::spawn_blocking(move || process.wait())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other);
    if let Some(f) = feeder {
        f.abort();
    }
    code
}

/// A non-tty exec: the command's stdout and stderr as multiplexed frames.
async fn run_piped_exec(
    x: &ExecEntry,
    process: ExecProcess,
    [stdin, stdout, stderr]: [Option<OwnedFd>; 3],
    input: Option<ClientIn>,
    out: &mut ClientOut,
) -> std::io::Result<i32> {
    x.state
        .lock()
        .expect("exec lock")
        .started_as(process.pid, None);
    let file = |fd: Option<OwnedFd>| fd.map(|f| tokio::fs::File::from_std(std::fs::File::from(f)));
    let feeder = match (file(stdin), input) {
        (Some(mut to), Some(mut from)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
        })),
        _ => None,
    };
    let (mut so, mut se) = (
        file(stdout).expect("a stdout pipe"),
        file(stderr).expect("a stderr pipe"),
    );
    let (mut b1, mut b2) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    let (mut o_open, mut e_open) = (true, true);
    while o_open || e_open {
        tokio::select! {
            r = so.read(&mut b1), if o_open => match r {
                Ok(0) | Err(_) => o_open = false,
                Ok(n) => if x.stdout { write_out(out, false, 1, &b1[..n]).await? },
            },
            r = se.read(&mut b2), if e_open => match r {
                Ok(0) | Err(_) => e_open = false,
                Ok(n) => if x.stderr { write_out(out, false, 2, &b2[..n]).await? },
            },
        }
    }
    finish_exec(process, feeder).await
}

/// A tty exec: the container's terminal, whose master this service was sent; the
/// master's output is the raw stream, resizes go to the master.
async fn run_tty_exec(
    x: &ExecEntry,
    process: ExecProcess,
    master: OwnedFd,
    size: Option<(u16, u16)>,
    input: Option<ClientIn>,
    out: &mut ClientOut,
) -> std::io::Result<i32> {
    if let Some((h, w)) = size.filter(|(h, w)| *h > 0 && *w > 0) {
        berth_engine::monitor::set_winsize(master.as_fd(), h, w)?;
    }
    let master = Arc::new(master);
    x.state
        .lock()
        .expect("exec lock")
        .started_as(process.pid, Some(master.clone()));
    let reader = std::fs::File::from(master.as_fd().try_clone_to_owned()?);
    let mut writer =
        tokio::fs::File::from_std(std::fs::File::from(master.as_fd().try_clone_to_owned()?));
    let feeder = input.map(|mut from| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        // The end of the client's input is the terminal's EOF key.
                        let _ = writer.write_all(&[4]).await;
                        let _ = writer.flush().await;
                        return;
                    }
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let _ = writer.flush().await;
                    }
                }
            }
        })
    });
    // The master reads until every holder of the slave is gone (EIO).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut reader = reader;
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        if write_out(out, true, 1, &chunk).await.is_err() {
            break;
        }
    }
    finish_exec(process, feeder).await
}
