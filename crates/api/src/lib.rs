//! The Docker Engine API over berth's engine (`berth serve`): the docker CLI, SDKs and
//! compose tools drive berth unchanged. Paths may carry a `/v1.NN` prefix (1.24 and up)
//! or none; errors are Docker's `{"message": …}` with its status codes.
//!
//! Each request opens the engine on a blocking thread (the engine is synchronous, and
//! a SQLite connection per request is cheap next to what the request does).

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use berth_engine::{Engine, EngineError, EngineOptions};
use serde_json::{json, Value};

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
fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"message": message.into()}))
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Api-Version", API_VERSION)
        .header("Server", format!("berth/{}", env!("CARGO_PKG_VERSION")))
        .body(Body::from(format!("{v}\n")))
        .expect("a valid response")
}

/// An engine error as Docker's status: 404 for what does not exist, 409 for conflicts,
/// 400 for bad parameters, 500 for the rest.
fn engine_error(e: EngineError) -> Response<Body> {
    let status = match &e {
        EngineError::NoSuchImage(_)
        | EngineError::NoSuchContainer(_)
        | EngineError::NoSuchVolume(_)
        | EngineError::NoSuchNetwork(_) => StatusCode::NOT_FOUND,
        EngineError::Conflict(_) => StatusCode::CONFLICT,
        EngineError::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// The path without its `/v1.NN` prefix; None for a version berth does not speak.
fn unversioned(path: &str) -> Option<&str> {
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
fn query(req: &Request<Body>) -> Vec<(String, String)> {
    berth_registry::server::query(req.uri())
}

fn flag(q: &[(String, String)], name: &str) -> bool {
    q.iter()
        .any(|(k, v)| k == name && matches!(v.as_str(), "1" | "true" | "True"))
}

/// Docker's `filters` query parameter (`{"label": ["a=b"], "status": {"running": true}}`)
/// as the engine's (key, value) pairs.
fn filters(q: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
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

fn unix_time(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// Runs `f` on an engine, on a blocking thread.
async fn with_engine(
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

fn version_json() -> Value {
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

/// `GET /containers/json`.
fn list_containers(e: &Engine, q: &[(String, String)]) -> Response<Body> {
    let filters = match filters(q) {
        Ok(f) => f,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let list = match e.list_containers(flag(q, "all"), &filters) {
        Ok(l) => l,
        Err(err) => return engine_error(err),
    };
    let limit: Option<usize> = q
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
        .filter(|n: &usize| *n > 0);
    let items: Vec<Value> = list
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|c| {
            let ports: Vec<Value> = e
                .published_ports(&c.id)
                .iter()
                .map(|p| {
                    let (port, proto) = p.container_port.split_once('/').unwrap_or((&p.container_port, "tcp"));
                    json!({"IP": p.host_ip, "PrivatePort": port.parse::<u16>().unwrap_or(0), "PublicPort": p.host_port, "Type": proto})
                })
                .collect();
            let networks: serde_json::Map<String, Value> = e
                .container_endpoints(&c.id)
                .unwrap_or_default()
                .into_iter()
                .map(|ep| {
                    (
                        ep.network.name.clone(),
                        json!({"NetworkID": ep.network.id, "IPAddress": ep.ip.to_string(), "MacAddress": ep.mac}),
                    )
                })
                .collect();
            let mode = e
                .find_container(&c.id)
                .map(|r| r.host_config.network_mode)
                .unwrap_or_default();
            json!({
                "Id": c.id,
                "Names": [format!("/{}", c.names.trim_start_matches('/'))],
                "Image": c.image,
                "ImageID": c.image_id,
                "Command": c.command,
                "Created": unix_time(&c.created),
                "Ports": ports,
                "Labels": c.labels,
                "State": c.state,
                "Status": c.status,
                "HostConfig": {"NetworkMode": mode},
                "NetworkSettings": {"Networks": networks},
                "Mounts": [],
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(items))
}

/// `GET /images/json`.
fn list_images(e: &Engine, q: &[(String, String)]) -> Response<Body> {
    let filters = match filters(q) {
        Ok(f) => f,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let rows = match e.list_images(&filters) {
        Ok(r) => r,
        Err(err) => return engine_error(err),
    };
    // One entry per image, with all its tags.
    let mut by_id: Vec<(String, Value)> = Vec::new();
    for r in rows {
        let tag = (r.repository != "<none>").then(|| format!("{}:{}", r.repository, r.tag));
        let digest = (!r.digest.is_empty() && r.digest != "<none>")
            .then(|| format!("{}@{}", r.repository, r.digest));
        match by_id.iter_mut().find(|(id, _)| *id == r.id) {
            Some((_, v)) => {
                if let Some(t) = tag {
                    v["RepoTags"].as_array_mut().expect("a list").push(json!(t));
                }
            }
            None => by_id.push((
                r.id.clone(),
                json!({
                    "Id": r.id,
                    "ParentId": "",
                    "RepoTags": tag.into_iter().collect::<Vec<_>>(),
                    "RepoDigests": digest.into_iter().collect::<Vec<_>>(),
                    "Created": unix_time(&r.created),
                    "Size": r.size,
                    "SharedSize": -1,
                    "VirtualSize": r.size,
                    "Labels": {},
                    "Containers": -1,
                }),
            )),
        }
    }
    json_response(
        StatusCode::OK,
        &Value::Array(by_id.into_iter().map(|(_, v)| v).collect()),
    )
}

/// Takes out every null member of every object in `v`.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Docker's `EndpointSettings` (aliases, `IPAMConfig.IPv4Address`, MAC) as what the
/// engine asks of an endpoint.
fn endpoint_request(ep: Option<&Value>) -> berth_engine::networks::EndpointRequest {
    let text = |p: &str| {
        ep.and_then(|e| e.pointer(p))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    berth_engine::networks::EndpointRequest {
        ip: text("/IPAMConfig/IPv4Address"),
        mac: text("/MacAddress"),
        aliases: ep
            .and_then(|e| e.get("Aliases"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A Docker `Mount` object as the engine's mount.
fn mount_of(m: &Value) -> Result<berth_engine::model::MountSpec, String> {
    let text = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut spec = berth_engine::model::MountSpec {
        kind: text("Type"),
        source: text("Source"),
        target: text("Target"),
        read_only: m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false),
        ..Default::default()
    };
    if let Some(p) = m
        .pointer("/BindOptions/Propagation")
        .and_then(Value::as_str)
    {
        spec.options.push(p.to_string());
    }
    spec.no_copy = m
        .pointer("/VolumeOptions/NoCopy")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    spec.tmpfs_size = m.pointer("/TmpfsOptions/SizeBytes").and_then(Value::as_i64);
    spec.tmpfs_mode = m
        .pointer("/TmpfsOptions/Mode")
        .and_then(Value::as_u64)
        .map(|x| x as u32);
    if spec.target.is_empty() {
        return Err("invalid mount config: target is required".into());
    }
    if !matches!(spec.kind.as_str(), "bind" | "volume" | "tmpfs") {
        return Err(format!(
            "invalid mount config: unsupported mount type {:?}",
            spec.kind
        ));
    }
    if spec.kind == "bind" {
        if !spec.source.starts_with('/') {
            return Err(format!(
                "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
                spec.source
            ));
        }
        if !std::path::Path::new(&spec.source).exists() {
            return Err(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                spec.source
            ));
        }
    }
    Ok(spec)
}

/// `POST /containers/create`: Docker's body (a `Config` with `HostConfig` and
/// `NetworkingConfig`) as the engine's create options.
fn create_container(e: &Engine, q: &[(String, String)], body: &[u8]) -> Response<Body> {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, m);
    let mut v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(err) => return bad(format!("invalid JSON: {err}")),
    };
    // Docker's clients send null for what they leave unset: the engine's defaults.
    drop_nulls(&mut v);
    let Some(image) = v.get("Image").and_then(Value::as_str).map(String::from) else {
        return bad("config.Image must be specified".into());
    };
    let mut config: berth_engine::model::ContainerConfig = match serde_json::from_value(v.clone()) {
        Ok(c) => c,
        Err(err) => return bad(format!("invalid container config: {err}")),
    };
    let entrypoint = match v.get("Entrypoint") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
        ),
        Some(_) => return bad("invalid Entrypoint".into()),
    };
    config.entrypoint = None;
    let mut hc_v = v.get("HostConfig").cloned().unwrap_or_else(|| json!({}));
    let api_mounts = hc_v.as_object_mut().and_then(|o| o.remove("Mounts"));
    let mut host_config: berth_engine::model::HostConfig = match serde_json::from_value(hc_v) {
        Ok(h) => h,
        Err(err) => return bad(format!("invalid HostConfig: {err}")),
    };
    let mut mounts = Vec::new();
    for b in &host_config.binds {
        match berth_engine::mounts::parse_volume(b) {
            Ok(m) => mounts.push(m),
            Err(err) => return bad(err),
        }
    }
    for m in api_mounts
        .iter()
        .flat_map(|m| m.as_array().into_iter().flatten())
    {
        match mount_of(m) {
            Ok(m) => mounts.push(m),
            Err(err) => return bad(err),
        }
    }
    for (path, opts) in &host_config.tmpfs {
        match berth_engine::mounts::parse_tmpfs(&format!("{path}:{opts}")) {
            Ok(m) => mounts.push(m),
            Err(err) => return bad(err),
        }
    }
    host_config.mounts = mounts;
    // The endpoint on the container's network: aliases, address, MAC.
    let mode = host_config.network_mode.clone();
    let endpoints = v
        .pointer("/NetworkingConfig/EndpointsConfig")
        .and_then(Value::as_object);
    let ep = endpoints.and_then(|m| m.get(&mode).or_else(|| m.values().next()));
    let endpoint = endpoint_request(ep);
    let name = q
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .filter(|n| !n.is_empty());
    let opts = berth_engine::containers::CreateOptions {
        name,
        image,
        config,
        entrypoint,
        host_config,
        endpoint,
    };
    match e.create_container(opts) {
        Ok((id, warnings)) => json_response(
            StatusCode::CREATED,
            &json!({"Id": id, "Warnings": warnings}),
        ),
        Err(err) => engine_error(err),
    }
}

fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("Api-Version", API_VERSION)
        .body(Body::empty())
        .expect("a valid response")
}

fn not_modified() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_MODIFIED)
        .header("Api-Version", API_VERSION)
        .body(Body::empty())
        .expect("a valid response")
}

fn running(e: &Engine, id: &str) -> Result<bool, EngineError> {
    let rec = e.find_container(id)?;
    Ok(e.container_state(&rec.id)?.status.is_active())
}

fn param(q: &[(String, String)], name: &str) -> Option<String> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// What a `logs` request asks for, and how its lines go on the wire.
#[derive(Clone, Copy)]
struct LogWant {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    tty: bool,
}

impl LogWant {
    fn of(q: &[(String, String)], tty: bool) -> LogWant {
        LogWant {
            stdout: flag(q, "stdout"),
            stderr: flag(q, "stderr"),
            timestamps: flag(q, "timestamps"),
            tty,
        }
    }

    fn content_type(&self) -> &'static str {
        if self.tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }
    }

    /// `lines` as the client reads them: raw for a tty, else Docker's multiplexed
    /// frames (stream, three zeros, big-endian size, the bytes).
    fn frames(&self, lines: &[berth_engine::logs::LogLine]) -> Vec<u8> {
        let mut body = Vec::new();
        for l in lines {
            let is_err = l.stream == "stderr";
            if (is_err && !self.stderr) || (!is_err && !self.stdout) {
                continue;
            }
            let text = if self.timestamps {
                format!("{} {}", l.time, l.log)
            } else {
                l.log.clone()
            };
            if !self.tty {
                body.push(if is_err { 2 } else { 1 });
                body.extend_from_slice(&[0, 0, 0]);
                body.extend_from_slice(&(text.len() as u32).to_be_bytes());
            }
            body.extend_from_slice(text.as_bytes());
        }
        body
    }
}

/// A streamed `logs?follow=1` body: what is there, then what the container writes,
/// until it stops or the client goes. A thread with its own engine reads the log file
/// as it grows.
fn follow_body(e: &Engine, id: String, path: PathBuf, first: Vec<u8>, want: LogWant) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let opts = e.opts.clone();
    let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    std::thread::spawn(move || {
        if !first.is_empty() && tx.blocking_send(first).is_err() {
            return;
        }
        let Ok(e) = Engine::open(opts) else {
            return;
        };
        loop {
            let running = e
                .container_state(&id)
                .map(|s| s.status.is_active())
                .unwrap_or(false);
            if let Ok((new, off)) = berth_engine::logs::read_from(&path, offset) {
                offset = off;
                let chunk = want.frames(&new);
                if !chunk.is_empty() && tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
            if !running || tx.is_closed() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    Body::from_stream(stream)
}

/// The container lifecycle endpoints: start, stop, restart, kill, wait, DELETE, logs.
fn container_action(
    e: &Engine,
    method: &Method,
    id: &str,
    action: &str,
    q: &[(String, String)],
) -> Response<Body> {
    let result = (|| -> Result<Response<Body>, EngineError> {
        let timeout = param(q, "t").and_then(|t| t.parse::<i64>().ok());
        Ok(match (method, action) {
            (&Method::POST, "start") => {
                if running(e, id)? {
                    not_modified()
                } else {
                    e.start_container(id, false)?;
                    no_content()
                }
            }
            (&Method::POST, "stop") => {
                if !running(e, id)? {
                    not_modified()
                } else {
                    e.stop_container(id, timeout)?;
                    no_content()
                }
            }
            (&Method::POST, "restart") => {
                e.stop_container(id, timeout)?;
                e.start_container(id, false)?;
                no_content()
            }
            (&Method::POST, "kill") => {
                let sig = param(q, "signal").unwrap_or_else(|| "SIGKILL".into());
                let Some(n) = berth_engine::sys::parse_signal(&sig) else {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        format!("invalid signal: {sig}"),
                    ));
                };
                if !running(e, id)? {
                    let rec = e.find_container(id)?;
                    return Ok(error(
                        StatusCode::CONFLICT,
                        format!(
                            "Cannot kill container: {}: Container {} is not running",
                            id, rec.id
                        ),
                    ));
                }
                e.kill_container(id, n)?;
                no_content()
            }
            (&Method::POST, "wait") => {
                let rec = e.find_container(id)?;
                let condition = param(q, "condition").unwrap_or_else(|| "not-running".into());
                if condition == "next-exit" || running(e, &rec.id)? {
                    e.wait_container(&rec.id)?;
                }
                let code = if condition == "removed" {
                    // Gone with --rm: its last state is what the monitor left.
                    let st = e.container_state(&rec.id).ok();
                    while e.find_container(&rec.id).is_ok() {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    st.map(|s| s.exit_code).unwrap_or(0)
                } else {
                    e.container_state(&rec.id)?.exit_code
                };
                json_response(StatusCode::OK, &json!({"StatusCode": code, "Error": null}))
            }
            (&Method::DELETE, "") => {
                if running(e, id)? && !flag(q, "force") {
                    let rec = e.find_container(id)?;
                    return Ok(error(
                        StatusCode::CONFLICT,
                        format!(
                            "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                            rec.name
                        ),
                    ));
                }
                e.remove_container(id, flag(q, "force"), flag(q, "v"))?;
                no_content()
            }
            (&Method::GET, "logs") => {
                let rec = e.find_container(id)?;
                let path = e.container_dir(&rec.id).join("log.json");
                let want = LogWant::of(q, rec.config.tty);
                let mut lines = berth_engine::logs::read_all(&path).unwrap_or_default();
                if let Some(n) = param(q, "tail").and_then(|t| t.parse::<usize>().ok()) {
                    let skip = lines.len().saturating_sub(n);
                    lines.drain(..skip);
                }
                let first = want.frames(&lines);
                let body = if flag(q, "follow") {
                    follow_body(e, rec.id.clone(), path, first, want)
                } else {
                    Body::from(first)
                };
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, want.content_type())
                    .header("Api-Version", API_VERSION)
                    .body(body)
                    .expect("a valid response")
            }
            (&Method::POST, "rename") => {
                let Some(to) = param(q, "name").filter(|n| !n.is_empty()) else {
                    return Ok(error(StatusCode::BAD_REQUEST, "rename needs a name"));
                };
                e.rename_container(id, &to)?;
                no_content()
            }
            (&Method::POST, "pause") => {
                e.pause_container(id)?;
                no_content()
            }
            (&Method::POST, "unpause") => {
                e.unpause_container(id)?;
                no_content()
            }
            (&Method::GET, "top") => {
                let args: Vec<String> = param(q, "ps_args")
                    .map(|a| a.split_whitespace().map(String::from).collect())
                    .unwrap_or_default();
                let (titles, rows) = e.top(id, &args)?;
                json_response(
                    StatusCode::OK,
                    &json!({"Titles": titles, "Processes": rows}),
                )
            }
            _ => error(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{method} /containers/{{id}}/{action} is not implemented yet in berth serve"
                ),
            ),
        })
    })();
    result.unwrap_or_else(engine_error)
}

fn body_json(body: &[u8]) -> Result<Value, String> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    drop_nulls(&mut v);
    Ok(v)
}

fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Volumes and networks: list, create, inspect is elsewhere, remove, connect.
fn volumes_networks(
    e: &Engine,
    method: &Method,
    segs: &[String],
    q: &[(String, String)],
    body: &[u8],
) -> Response<Body> {
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let result = (|| -> Result<Response<Body>, EngineError> {
        Ok(match (method, segs.as_slice()) {
            (&Method::GET, ["volumes"]) => {
                if !filters(q).unwrap_or_default().is_empty() {
                    return Ok(error(
                        StatusCode::NOT_IMPLEMENTED,
                        "volume list filters are not implemented yet in berth serve",
                    ));
                }
                let list = e.list_volumes()?;
                json_response(
                    StatusCode::OK,
                    &json!({"Volumes": serde_json::to_value(list).expect("volumes serialise"), "Warnings": []}),
                )
            }
            (&Method::POST, ["volumes", "create"]) => {
                let v = match body_json(body) {
                    Ok(v) => v,
                    Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, msg)),
                };
                let driver = v.get("Driver").and_then(Value::as_str).unwrap_or("local");
                if !matches!(driver, "" | "local") {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        format!("volume driver {driver:?} is not available: only local"),
                    ));
                }
                if v.get("DriverOpts")
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
                {
                    return Ok(error(
                        StatusCode::NOT_IMPLEMENTED,
                        "volume driver options are not implemented yet in berth serve",
                    ));
                }
                let name = v
                    .get("Name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .unwrap_or_else(berth_engine::names::new_id);
                let info = e.create_volume(&name, &string_map(v.get("Labels")), false)?;
                json_response(
                    StatusCode::CREATED,
                    &serde_json::to_value(info).expect("a volume serialises"),
                )
            }
            (&Method::DELETE, ["volumes", name]) => {
                e.remove_volume(name, flag(q, "force"))?;
                no_content()
            }
            (&Method::GET, ["networks"]) => {
                let mut list = Vec::new();
                for n in e.list_networks()? {
                    list.push(e.inspect_network(&n.id)?);
                }
                for (name, driver) in [("host", "host"), ("none", "null")] {
                    list.push(json!({
                        "Name": name, "Id": e.builtin_network_id(name), "Scope": "local",
                        "Driver": driver, "EnableIPv6": false, "Internal": false,
                        "IPAM": {"Driver": "default", "Config": []}, "Containers": {},
                        "Options": {}, "Labels": {},
                    }));
                }
                json_response(StatusCode::OK, &Value::Array(list))
            }
            (&Method::POST, ["networks", "create"]) => {
                let v = match body_json(body) {
                    Ok(v) => v,
                    Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, msg)),
                };
                if v.get("EnableIPv6").and_then(Value::as_bool) == Some(true) {
                    return Ok(error(
                        StatusCode::NOT_IMPLEMENTED,
                        "IPv6 is not implemented yet in berth",
                    ));
                }
                let ipam = v.pointer("/IPAM/Config/0");
                let text = |p: Option<&Value>, k: &str| {
                    p.and_then(|c| c.get(k))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                };
                let c = berth_engine::networks::NetworkCreate {
                    name: v
                        .get("Name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    driver: v
                        .get("Driver")
                        .and_then(Value::as_str)
                        .filter(|d| !d.is_empty())
                        .map(String::from),
                    subnet: text(ipam, "Subnet"),
                    gateway: text(ipam, "Gateway"),
                    ip_range: text(ipam, "IPRange"),
                    internal: v.get("Internal").and_then(Value::as_bool).unwrap_or(false),
                    labels: string_map(v.get("Labels")),
                    options: string_map(v.get("Options")),
                };
                let id = e.create_network(&c)?;
                json_response(StatusCode::CREATED, &json!({"Id": id, "Warning": ""}))
            }
            (&Method::DELETE, ["networks", id]) => {
                e.remove_network(id)?;
                no_content()
            }
            (&Method::POST, ["networks", id, action @ ("connect" | "disconnect")]) => {
                let v = match body_json(body) {
                    Ok(v) => v,
                    Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, msg)),
                };
                let container = v
                    .get("Container")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if *action == "connect" {
                    let ep = v.get("EndpointConfig");
                    let req = endpoint_request(ep);
                    e.connect_container(id, &container, &req)?;
                } else {
                    e.disconnect_container(id, &container)?;
                }
                json_response(StatusCode::OK, &Value::Null)
            }
            _ => error(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{method} /{} is not implemented yet in berth serve",
                    segs.join("/")
                ),
            ),
        })
    })();
    result.unwrap_or_else(engine_error)
}

/// Endpoints of Docker's that berth does not have (swarm, plugins): 501, never a fake
/// success.
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

/// Routes one request.
pub async fn handle(roots: Roots, req: Request<Body>) -> Response<Body> {
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
            let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
                Ok(b) => b,
                Err(err) => {
                    return error(StatusCode::BAD_REQUEST, format!("reading the body: {err}"))
                }
            };
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
                container_action(e, &method, &id, &action, &q)
            })
            .await
        }
        (&Method::DELETE, ["containers", id]) => {
            let id = id.to_string();
            with_engine(&roots, move |e| container_action(e, &method, &id, "", &q)).await
        }
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
            let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
                Ok(b) => b,
                Err(err) => {
                    return error(StatusCode::BAD_REQUEST, format!("reading the body: {err}"))
                }
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
            let repo = param(&q, "repo").unwrap_or_default();
            let target = match param(&q, "tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo,
            };
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
            with_engine(&roots, move |e| match e.remove_image(&name, force) {
                Ok(removed) => {
                    let list: Vec<Value> = removed
                        .into_iter()
                        .map(|r| match r {
                            berth_engine::images::Removed::Untagged(t) => json!({"Untagged": t}),
                            berth_engine::images::Removed::Deleted(d) => json!({"Deleted": d}),
                        })
                        .collect();
                    json_response(StatusCode::OK, &Value::Array(list))
                }
                Err(err) => engine_error(err),
            })
            .await
        }
        // Image names may hold slashes: everything between `images/` and `/json`.
        (&Method::GET, ["images", name @ .., "json"]) if !name.is_empty() => {
            let name = name.join("/");
            with_engine(&roots, move |e| match e.inspect_image(&name) {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(err) => engine_error(err),
            })
            .await
        }
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

/// Serves the API on the unix socket at `path` until the process ends. The socket is
/// made anew, mode 0660 (group `berth` when that group exists).
pub async fn serve_unix(path: PathBuf, roots: Roots) -> std::io::Result<()> {
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
    let app = axum::Router::new().fallback(move |req: Request<Body>| handle(roots.clone(), req));
    axum::serve(listener, app).await
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
