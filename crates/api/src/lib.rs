//! The Docker Engine API over berth's engine (`berth serve`): the docker CLI, SDKs and
//! compose tools drive berth unchanged. Paths may carry a `/v1.NN` prefix (1.24 and up)
//! or none; errors are Docker's `{"message": …}` with its status codes.
//!
//! Each request opens the engine on a blocking thread (the engine is synchronous, and
//! a SQLite connection per request is cheap next to what the request does).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use berth_engine::{Engine, EngineError, EngineOptions, ErrorClass};
use serde_json::{json, Value};

mod build;
mod containers;
mod images;
mod netvol;
mod stream;
mod system;

use containers::*;
use images::*;
use netvol::*;
pub use stream::Service;

/// The API version berth speaks, and the oldest it accepts.
pub const API_VERSION: &str = "1.47";
pub const MIN_API_VERSION: &str = "1.24";

/// The largest request body read (a container's create config is a few KiB).
const MAX_BODY: usize = 16 << 20;

/// Where the engine's state is.
#[derive(Debug, Clone)]
pub struct Roots {
    pub root: PathBuf,
    pub run_root: PathBuf,
}

/// A response as Docker writes its errors.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"message": message.into()}))
}

pub(crate) fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_string(v).expect("a response serialises");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Api-Version", API_VERSION)
        .header("Server", format!("berth/{}", env!("CARGO_PKG_VERSION")))
        .body(Body::from(body + "\n"))
        .expect("a valid response")
}

/// The HTTP status of each class of engine error, as Docker's daemon gives them: the one
/// place the API service decides a status for an engine error.
pub(crate) fn status_of(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::Conflict => StatusCode::CONFLICT,
        ErrorClass::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An engine error as Docker writes it: the status of its class, Docker's words.
pub(crate) fn engine_error(e: EngineError) -> Response<Body> {
    let status = status_of(e.class());
    // Docker's clients read some messages: docker-py raises ImageNotFound on "No such
    // image" (compose builds or pulls on that), the docker CLI turns a failed start
    // into 127 or 126 by these words.
    let message = match &e {
        EngineError::NoSuchImage(name) => format!("No such image: {name}"),
        EngineError::NoSuchContainer(name) => format!("No such container: {name}"),
        EngineError::NoSuchVolume(name) => format!("get {name}: no such volume"),
        EngineError::NotRunning { id } => format!("Container {id} is not running"),
        EngineError::Paused { id } => {
            format!("Container {id} is paused, unpause the container before exec")
        }
        EngineError::Start { code: 127, .. } => format!("{e}: executable file not found in $PATH"),
        EngineError::Start { code: 126, .. } => format!("{e}: permission denied"),
        _ => e.to_string(),
    };
    error(status, message)
}

/// The path without its `/v1.NN` prefix; None for a version berth does not speak.
pub(crate) fn unversioned(path: &str) -> Option<&str> {
    let Some(rest) = path
        .strip_prefix("/v")
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    else {
        return Some(path);
    };
    let (version, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (a, b) = v.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let (v, min, max) = (
        parse(version)?,
        parse(MIN_API_VERSION)?,
        parse(API_VERSION)?,
    );
    if v < min || v > max {
        return None;
    }
    Some(&path[path.len() - tail.len() - 1..])
}

/// The query string's parameters, decoded.
pub(crate) fn query(req: &Request<Body>) -> Vec<(String, String)> {
    berth_registry::server::query(req.uri())
}

pub(crate) fn flag(q: &[(String, String)], name: &str) -> bool {
    flag_or(q, name, false)
}

/// A boolean query parameter as Docker's `httputils.BoolValueOrDefault` reads it:
/// `default` when absent, else true unless it is empty, `0`, `no`, `false` or `none` (in
/// any case, spaces trimmed): Python's `False` and Go's `FALSE` are false too.
pub(crate) fn flag_or(q: &[(String, String)], name: &str, default: bool) -> bool {
    match q.iter().find(|(k, _)| k == name) {
        None => default,
        Some((_, v)) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "none"
        ),
    }
}

/// Docker's `filters` query parameter (`{"label": ["a=b"], "status": {"running": true}}`)
/// as the engine's (key, value) pairs.
pub(crate) fn filters(q: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    let Some((_, text)) = q.iter().find(|(k, _)| k == "filters") else {
        return Ok(Vec::new());
    };
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid filter: {e}"))?;
    let mut out = Vec::new();
    for (k, vals) in v.as_object().into_iter().flatten() {
        match vals {
            Value::Array(items) => out.extend(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| (k.clone(), s.to_string())),
            ),
            Value::Object(m) => out.extend(
                m.iter()
                    .filter(|(_, on)| on.as_bool() != Some(false))
                    .map(|(s, _)| (k.clone(), s.clone())),
            ),
            _ => return Err(format!("invalid filter {k}")),
        }
    }
    Ok(out)
}

pub(crate) fn unix_time(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// Runs `f` on an engine, on a blocking thread.
pub(crate) async fn with_engine(
    roots: &Roots,
    f: impl FnOnce(&Engine) -> Response<Body> + Send + 'static,
) -> Response<Body> {
    let opts = EngineOptions::new(&roots.root, &roots.run_root);
    tokio::task::spawn_blocking(move || match Engine::open(opts) {
        Ok(e) => f(&e),
        Err(e) => engine_error(e),
    })
    .await
    .unwrap_or_else(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request's thread panicked",
        )
    })
}

pub(crate) fn version_json() -> Value {
    let uts = nix::sys::utsname::uname().ok();
    let kernel = uts
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json!({
        "Platform": {"Name": "berth"},
        "Components": [{
            "Name": "Engine",
            "Version": env!("CARGO_PKG_VERSION"),
            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch, "KernelVersion": kernel},
        }],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": kernel,
        "BuildTime": "",
    })
}

/// Takes out every null member of every object in `v`.
pub(crate) fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

pub(crate) fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("Api-Version", API_VERSION)
        .body(Body::empty())
        .expect("a valid response")
}

pub(crate) fn not_modified() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_MODIFIED)
        .header("Api-Version", API_VERSION)
        .body(Body::empty())
        .expect("a valid response")
}

pub(crate) fn param(q: &[(String, String)], name: &str) -> Option<String> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

pub(crate) fn body_json(body: &[u8]) -> Result<Value, String> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    drop_nulls(&mut v);
    Ok(v)
}

pub(crate) fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Endpoints of Docker's that berth does not have (swarm mode, plugins): 501, never a fake
/// success (but see the swarm endpoints' 503s in `route`).
const UNSUPPORTED: [&str; 9] = [
    "swarm",
    "nodes",
    "services",
    "tasks",
    "secrets",
    "configs",
    "plugins",
    "distribution",
    "session",
];

/// A `Write` whose bytes become a response body: a blocking producer (tar writers,
/// progress) on one side, the client on the other. Writes fail once the client went.
pub(crate) struct BodyWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl BodyWriter {
    /// Whether the client has gone (its end of the body is dropped), asked from any
    /// thread without writing.
    pub(crate) fn gone(&self) -> impl Fn() -> bool + Send + 'static {
        let tx = self.tx.clone();
        move || tx.is_closed()
    }
}

impl std::io::Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // Not blocking_send: the producer may be inside the engine's own runtime (pull
        // and push report progress from there), where that panics.
        let mut chunk = std::mem::take(&mut self.buf);
        loop {
            match self.tx.try_send(chunk) {
                Ok(()) => return Ok(()),
                Err(tokio::sync::mpsc::error::TrySendError::Full(back)) => {
                    chunk = back;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
                }
            }
        }
    }
}

impl BodyWriter {
    /// Has the client stopped reading (closed the connection)?
    pub(crate) fn client_gone(&self) -> bool {
        self.tx.is_closed()
    }

    /// One JSON message of a progress stream, sent at once.
    pub(crate) fn message(&mut self, v: &Value) -> std::io::Result<()> {
        use std::io::Write;
        writeln!(self, "{v}")?;
        self.flush()
    }
}

/// A body that `produce` writes on a thread of its own (it may block).
pub(crate) fn streamed(produce: impl FnOnce(&mut BodyWriter) + Send + 'static) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut w = BodyWriter {
            tx,
            buf: Vec::new(),
        };
        produce(&mut w);
        let _ = std::io::Write::flush(&mut w);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    Body::from_stream(stream)
}

/// A 200 response of `content_type` whose body `produce` writes.
pub(crate) fn streamed_response(
    content_type: &str,
    produce: impl FnOnce(&mut BodyWriter) + Send + 'static,
) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header("Api-Version", API_VERSION)
        .body(streamed(produce))
        .expect("a valid response")
}

/// Docker's error message inside a JSON progress stream.
pub(crate) fn stream_error(msg: &str) -> Value {
    json!({"errorDetail": {"message": msg}, "error": msg})
}

/// The request's body as a blocking reader (for the engine's tar readers); create it
/// on the runtime, read it on a blocking thread.
pub(crate) fn body_reader(req: Request<Body>) -> impl std::io::Read + Send {
    use futures_util::TryStreamExt;
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream))
}

/// The request's body, up to [`MAX_BODY`]; a 400 answer when it cannot be read.
pub(crate) async fn read_body(req: Request<Body>) -> Result<axum::body::Bytes, Response<Body>> {
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|err| error(StatusCode::BAD_REQUEST, format!("reading the body: {err}")))
}

/// Routes one request.
pub async fn handle(svc: Arc<Service>, req: Request<Body>) -> Response<Body> {
    let roots = svc.roots.clone();
    let full = req.uri().path().to_string();
    let Some(path) = unversioned(&full).map(String::from) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "client version in {full} is not supported: berth speaks API {MIN_API_VERSION} to {API_VERSION}"
            ),
        );
    };
    let q = query(&req);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segs.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("Api-Version", API_VERSION)
            .header("Docker-Experimental", "false")
            .header("Ostype", "linux")
            .header("Cache-Control", "no-cache, no-store, must-revalidate")
            .header("Pragma", "no-cache")
            .body(Body::from(if method == Method::HEAD { "" } else { "OK" }))
            .expect("a valid response"),
        (&Method::GET, ["version"]) => json_response(StatusCode::OK, &version_json()),
        (&Method::GET, ["info"]) => {
            with_engine(&roots, |e| match e.info() {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(err) => engine_error(err),
            })
            .await
        }
        (&Method::GET, ["containers", "json"]) => {
            with_engine(&roots, move |e| list_containers(e, &q)).await
        }
        (&Method::POST, ["containers", "create"]) => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            svc.warm();
            with_engine(&roots, move |e| create_container(e, &q, &body)).await
        }
        (
            &Method::POST,
            ["containers", id, action @ ("start" | "stop" | "restart" | "kill" | "wait" | "rename" | "pause"
            | "unpause")],
        )
        | (&Method::GET, ["containers", id, action @ ("logs" | "top")]) => {
            let (id, action) = (id.to_string(), action.to_string());
            with_engine(&roots, move |e| {
                container_action(&svc, e, &method, &id, &action, &q)
            })
            .await
        }
        (&Method::DELETE, ["containers", id]) => {
            let id = id.to_string();
            with_engine(&roots, move |e| {
                container_action(&svc, e, &method, &id, "", &q)
            })
            .await
        }
        (&Method::POST, ["containers", id, "attach"]) => {
            stream::attach_container(svc, id.to_string(), q, req, false).await
        }
        (&Method::GET, ["containers", id, "attach", "ws"]) => {
            stream::attach_container(svc, id.to_string(), q, req, true).await
        }
        (&Method::POST, ["containers", id, "resize"]) => {
            let id = id.to_string();
            with_engine(&roots, move |e| stream::resize_container(e, &id, &q)).await
        }
        (&Method::POST, ["containers", id, "exec"]) => {
            let id = id.to_string();
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            with_engine(&roots, move |e| stream::exec_create(&svc, e, &id, &body)).await
        }
        (&Method::POST, ["exec", id, "start"]) => {
            stream::exec_start(svc, id.to_string(), req).await
        }
        (&Method::POST, ["exec", id, "resize"]) => stream::exec_resize(&svc, id, &q),
        (&Method::GET, ["exec", id, "json"]) => stream::exec_inspect(&svc, id),
        (&Method::GET | &Method::HEAD, ["containers", id, "archive"]) => {
            let (id, head) = (id.to_string(), method == Method::HEAD);
            with_engine(&roots, move |e| archive_get(e, &id, &q, head)).await
        }
        (&Method::PUT, ["containers", id, "archive"]) => {
            let id = id.to_string();
            let body = Box::new(body_reader(req));
            with_engine(&roots, move |e| archive_put(e, &id, &q, body)).await
        }
        (&Method::GET, ["containers", id, "changes"]) => {
            let id = id.to_string();
            with_engine(&roots, move |e| changes(e, &id)).await
        }
        (&Method::GET, ["containers", id, "export"]) => {
            let id = id.to_string();
            with_engine(&roots, move |e| export(e, &id)).await
        }
        (&Method::GET, ["containers", id, "stats"]) => {
            let id = id.to_string();
            with_engine(&roots, move |e| stats(e, &id, &q)).await
        }
        (&Method::POST, ["containers", id, "update"]) => {
            let id = id.to_string();
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            with_engine(&roots, move |e| update(e, &id, &body)).await
        }
        (&Method::POST, ["containers", "prune"]) => {
            with_engine(&roots, move |e| prune(e, &q)).await
        }
        (&Method::POST, ["images", "create"]) => {
            let body: Option<Box<dyn std::io::Read + Send>> = if param(&q, "fromSrc").is_some() {
                Some(Box::new(body_reader(req)))
            } else {
                None
            };
            with_engine(&roots, move |e| create_image(e, &q, body)).await
        }
        (&Method::GET, ["images", "get"]) => {
            let names: Vec<String> = q
                .iter()
                .filter(|(k, _)| k == "names")
                .map(|(_, v)| v.clone())
                .collect();
            with_engine(&roots, move |e| save_images(e, names)).await
        }
        (&Method::POST, ["images", "load"]) => {
            let body = Box::new(body_reader(req));
            with_engine(&roots, move |e| load_images(e, body)).await
        }
        (&Method::GET, ["images", "search"]) => with_engine(&roots, move |e| search(e, &q)).await,
        (&Method::POST, ["images", "prune"]) => {
            with_engine(&roots, move |e| prune_images(e, &q)).await
        }
        (&Method::GET, ["images", name @ .., "get"]) if !name.is_empty() => {
            let names = vec![name.join("/")];
            with_engine(&roots, move |e| save_images(e, names)).await
        }
        (&Method::POST, ["images", name @ .., "push"]) if !name.is_empty() => {
            let name = name.join("/");
            with_engine(&roots, move |e| push_image(e, &name, &q)).await
        }
        (&Method::POST, ["commit"]) => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            with_engine(&roots, move |e| commit(e, &q, &body)).await
        }
        (&Method::GET, ["events"]) => with_engine(&roots, move |e| system::events(e, &q)).await,
        (&Method::GET, ["system", "df"]) => {
            with_engine(&roots, |e| match system::df(e) {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(err) => engine_error(err),
            })
            .await
        }
        (&Method::POST, ["auth"]) => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            with_engine(&roots, move |e| system::auth(e, &body)).await
        }
        (&Method::POST, ["build"]) => {
            let body = Box::new(body_reader(req));
            with_engine(&roots, move |e| build::build(e, &q, body)).await
        }
        (&Method::POST, ["build", "prune"]) => with_engine(&roots, system::prune_build_cache).await,
        (&Method::GET, ["containers", id, "json"]) => {
            let id = id.to_string();
            with_engine(&roots, move |e| match e.inspect_container(&id) {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(err) => engine_error(err),
            })
            .await
        }
        (&Method::GET, ["images", "json"]) => {
            with_engine(&roots, move |e| list_images(e, &q)).await
        }
        (_, ["volumes" | "networks", ..])
            if !(method == Method::GET && segs.len() == 2 && segs[1] != "create") =>
        {
            let owned: Vec<String> = segs.iter().map(|x| x.to_string()).collect();
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            with_engine(&roots, move |e| {
                volumes_networks(e, &method, &owned, &q, &body)
            })
            .await
        }
        (&Method::GET, ["networks", id]) => {
            let id = id.to_string();
            with_engine(&roots, move |e| match e.inspect_network(&id) {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(err) => engine_error(err),
            })
            .await
        }
        (&Method::GET, ["volumes", name]) => {
            let name = name.to_string();
            with_engine(&roots, move |e| match e.inspect_volume(&name) {
                Ok(v) => json_response(
                    StatusCode::OK,
                    &serde_json::to_value(v).expect("a volume serialises"),
                ),
                Err(err) => engine_error(err),
            })
            .await
        }
        (&Method::POST, ["images", name @ .., "tag"]) if !name.is_empty() => {
            let name = name.join("/");
            let target = repo_tag(&q).unwrap_or_default();
            with_engine(&roots, move |e| match e.tag(&name, &target) {
                Ok(()) => json_response(StatusCode::CREATED, &Value::Null),
                Err(err) => engine_error(err),
            })
            .await
        }
        (&Method::GET, ["images", name @ .., "history"]) if !name.is_empty() => {
            let name = name.join("/");
            with_engine(&roots, move |e| match e.history(&name) {
                Ok(h) => {
                    // The API gives times as Unix seconds.
                    let mut v = serde_json::to_value(h).expect("history serialises");
                    for row in v.as_array_mut().into_iter().flatten() {
                        let t = row["Created"].as_str().map(unix_time).unwrap_or(0);
                        row["Created"] = json!(t);
                    }
                    json_response(StatusCode::OK, &v)
                }
                Err(err) => engine_error(err),
            })
            .await
        }
        (&Method::DELETE, ["images", name @ ..]) if !name.is_empty() => {
            let name = name.join("/");
            let force = flag(&q, "force");
            with_engine(&roots, move |e| remove_image(e, &name, force)).await
        }
        // Image names may hold slashes: everything between `images/` and `/json`.
        (&Method::GET, ["images", name @ .., "json"]) if !name.is_empty() => {
            let name = name.join("/");
            with_engine(&roots, move |e| match e.inspect_image(&name) {
                Ok(mut v) => {
                    // API versions before 1.45 have these, and clients of theirs (compose
                    // 1.29 reads ContainerConfig.Volumes) rely on them.
                    v.container_config = Some(v.config.clone());
                    v.container = Some(String::new());
                    json_response(StatusCode::OK, &v)
                }
                Err(err) => engine_error(err),
            })
            .await
        }
        // Not in a swarm, as dockerd answers when swarm mode is inactive (clients' clean-up
        // code calls these and takes 503 for "no swarm here"); joining one is not there.
        (_, ["swarm", "init" | "join"]) => error(
            StatusCode::NOT_IMPLEMENTED,
            "swarm mode is not implemented in berth: this node cannot init or join a swarm",
        ),
        (&Method::POST, ["swarm", "leave" | "unlock"]) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not part of a swarm",
        ),
        (_, ["swarm" | "nodes" | "services" | "tasks" | "secrets" | "configs", ..]) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
        ),
        (_, [first, ..]) if UNSUPPORTED.contains(first) => error(
            StatusCode::NOT_IMPLEMENTED,
            format!("{first} is not supported by berth (no swarm, no plugins)"),
        ),
        (
            _,
            ["containers" | "images" | "exec" | "build" | "volumes" | "networks" | "events"
            | "system" | "auth" | "commit", ..],
        ) => error(
            StatusCode::NOT_IMPLEMENTED,
            format!("{method} {path} is not implemented yet in berth serve"),
        ),
        _ => error(StatusCode::NOT_FOUND, "page not found"),
    }
}

/// Serves the API on a unix socket listener systemd (socket activation) passed in.
pub async fn serve_unix_listener(
    listener: std::os::unix::net::UnixListener,
    svc: Arc<Service>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let app = axum::Router::new().fallback(move |req: Request<Body>| handle(svc.clone(), req));
    axum::serve(listener, app).await
}

/// Serves the API on the unix socket at `path` until the process ends. The socket is
/// made anew, mode 0660 (group `berth` when that group exists).
pub async fn serve_unix(path: PathBuf, svc: Arc<Service>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    if let Ok(Some(g)) = nix::unistd::Group::from_name("berth") {
        let _ = nix::unistd::chown(&path, None, Some(g.gid));
    }
    let app = axum::Router::new().fallback(move |req: Request<Body>| handle(svc.clone(), req));
    axum::serve(listener, app).await
}

/// A TCP address to serve on, and the TLS it asks for.
pub struct TcpListen {
    pub addr: std::net::SocketAddr,
    /// None: plain HTTP (anyone who reaches the port is root on this host).
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// Serves the API on TCP, with TLS when configured, until the process ends.
pub async fn serve_tcp(listen: TcpListen, svc: Arc<Service>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen.addr).await?;
    let app = axum::Router::new().fallback(move |req: Request<Body>| handle(svc.clone(), req));
    let Some(tls) = listen.tls else {
        return axum::serve(listener, app).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client without an accepted certificate fails the handshake here.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_paths_are_accepted_from_1_24_to_ours() {
        assert_eq!(
            unversioned("/v1.41/containers/json"),
            Some("/containers/json")
        );
        assert_eq!(unversioned("/v1.24/_ping"), Some("/_ping"));
        assert_eq!(unversioned("/_ping"), Some("/_ping"));
        assert_eq!(unversioned("/v1.12/version"), None);
        assert_eq!(unversioned("/v1.99/version"), None);
        assert_eq!(unversioned("/version"), Some("/version"));
    }

    #[test]
    fn queries_and_filters_decode_as_docker_sends_them() {
        let req = Request::builder()
            .uri("/containers/json?all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%2C%22status%22%3A%7B%22running%22%3Atrue%7D%7D")
            .body(Body::empty())
            .unwrap();
        let q = query(&req);
        assert!(flag(&q, "all"));
        let f = filters(&q).unwrap();
        assert_eq!(
            f,
            [
                ("label".to_string(), "a=b".to_string()),
                ("status".to_string(), "running".to_string())
            ]
        );
    }
}
