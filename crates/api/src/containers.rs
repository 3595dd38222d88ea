//! Containers: list, create, and the life-cycle endpoints.

use axum::body::Body;
use axum::http::{header, Method, Response, StatusCode};
use berth_engine::{Engine, EngineError};
use serde_json::{json, Value};

use crate::*;

/// `GET /containers/json`.
pub(crate) fn list_containers(e: &Engine, q: &[(String, String)]) -> Response<Body> {
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
            let ports: Vec<Value> = c
                .ports
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
            let rec = e.find_container(&c.id).ok();
            let mode = rec
                .as_ref()
                .map(|r| r.host_config.network_mode.clone())
                .unwrap_or_default();
            let mounts = rec
                .as_ref()
                .map(|r| serde_json::to_value(&r.mounts).expect("mounts serialise"))
                .unwrap_or_else(|| json!([]));
            json!({
                "Id": c.id,
                "Names": [format!("/{}", c.names.trim_start_matches('/'))],
                "Image": c.image,
                "ImageID": c.image_id,
                "Command": c.command,
                "Created": c.created.timestamp(),
                "Ports": ports,
                "Labels": c.labels,
                "State": c.state,
                "Status": c.status,
                "HostConfig": {"NetworkMode": mode},
                "NetworkSettings": {"Networks": networks},
                "Mounts": mounts,
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(items))
}

/// Docker's `EndpointSettings` (aliases, `IPAMConfig.IPv4Address`, MAC) as what the
/// engine asks of an endpoint.
pub(crate) fn endpoint_request(ep: Option<&Value>) -> berth_engine::networks::EndpointRequest {
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
pub(crate) fn mount_of(m: &Value) -> berth_engine::model::MountSpec {
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
    spec
}

/// The fields of a container create body in any Engine API version from 1.24 on (the
/// container config, then `HostConfig`'s, resources included), and those clients are known
/// to send besides. Docker's daemon ignores others; berth refuses them, so a misspelt field
/// is an error, not a silent default.
#[rustfmt::skip]
const CREATE_FIELDS: &[&str] = &[
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
    "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
    "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell", "HostConfig",
    "NetworkingConfig",
    // Sent at the top level by docker-py (Runtime, still) and by older clients.
    "Runtime", "Dns", "VolumesFrom", "VolumeDriver", "CpuShares", "Cpuset", "CpusetCpus",
    "Memory", "MemorySwap", "PortSpecs",
];
#[rustfmt::skip]
const HOST_CONFIG_FIELDS: &[&str] = &[
    "Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy",
    "AutoRemove", "VolumeDriver", "VolumesFrom", "Mounts", "ConsoleSize", "Annotations",
    "CapAdd", "CapDrop", "Capabilities", "CgroupnsMode", "Dns", "DnsOptions", "DnsSearch",
    "ExtraHosts", "GroupAdd", "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode",
    "Privileged", "PublishAllPorts", "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs",
    "UTSMode", "UsernsMode", "ShmSize", "Sysctls", "Runtime", "Isolation", "MaskedPaths",
    "ReadonlyPaths", "CpuShares", "Memory", "CgroupParent", "BlkioWeight",
    "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
    "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices", "DeviceCgroupRules",
    "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemoryReservation", "MemorySwap",
    "MemorySwappiness", "NanoCpus", "OomKillDisable", "Init", "InitPath", "PidsLimit",
    "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth", "DiskQuota",
    "LxcConf",
];

/// The first field of a create body that no Engine API version defines (see
/// [`CREATE_FIELDS`]), as `Name` or `HostConfig.Name`.
fn unknown_field(v: &Value) -> Option<String> {
    let top = v.as_object()?;
    if let Some(k) = top.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return Some(k.clone());
    }
    let hc = top.get("HostConfig").and_then(Value::as_object)?;
    hc.keys()
        .find(|k| !HOST_CONFIG_FIELDS.contains(&k.as_str()))
        .map(|k| format!("HostConfig.{k}"))
}

/// `POST /containers/create`: Docker's body (a `Config` with `HostConfig` and
/// `NetworkingConfig`) as the engine's create options.
pub(crate) fn create_container(e: &Engine, q: &[(String, String)], body: &[u8]) -> Response<Body> {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, m);
    let mut v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(err) => return bad(format!("invalid JSON: {err}")),
    };
    // Docker's clients send null for what they leave unset: the engine's defaults.
    drop_nulls(&mut v);
    if let Some(field) = unknown_field(&v) {
        return bad(format!("unknown field {field:?} in the container config"));
    }
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
    mounts.extend(
        api_mounts
            .iter()
            .flat_map(|m| m.as_array().into_iter().flatten())
            .map(mount_of),
    );
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
    let opts = berth_engine::specs::ContainerSpec {
        name,
        image,
        config,
        entrypoint,
        host_config,
        endpoint,
        pod: None,
    };
    match e.create_container(opts) {
        Ok((id, warnings)) => json_response(
            StatusCode::CREATED,
            &json!({"Id": id, "Warnings": warnings}),
        ),
        Err(err) => engine_error(err),
    }
}

pub(crate) fn running(e: &Engine, id: &str) -> Result<bool, EngineError> {
    let rec = e.find_container(id)?;
    Ok(e.container_state(&rec.id)?.status.is_active())
}

/// What a `logs` request asks for, and how its lines go on the wire.
#[derive(Clone, Copy)]
pub(crate) struct LogWant {
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) timestamps: bool,
    pub(crate) tty: bool,
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
    pub(crate) fn frames(&self, lines: &[berth_engine::logs::LogLine]) -> Vec<u8> {
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

/// A streamed `logs?follow=1` body: `first` (what was there), then what the container
/// writes, until it stops or the client goes. A thread with its own engine reads what
/// `follower` finds (it holds the log open: a container removed meanwhile loses nothing).
pub(crate) fn follow_body(
    e: &Engine,
    id: String,
    mut follower: berth_engine::logs::Follower,
    first: Vec<u8>,
    want: LogWant,
    filter: berth_engine::logs::LogFilter,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let opts = e.opts.clone();
    std::thread::spawn(move || {
        if !first.is_empty() && tx.blocking_send(first).is_err() {
            return;
        }
        // Without an engine the container counts as stopped: what it wrote is still
        // sent, once.
        let e = Engine::open(opts).ok();
        loop {
            let running = e
                .as_ref()
                .and_then(|e| e.container_state(&id).ok())
                .is_some_and(|s| s.status.is_active());
            if let Ok(mut new) = follower.read_new() {
                new.retain(|l| filter.keep(l));
                let chunk = want.frames(&new);
                if !chunk.is_empty() && tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
            // Following ends with `until` as with the container.
            let past_until = filter.until.as_ref().is_some_and(|u| {
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true) > *u
            });
            if !running || past_until || tx.is_closed() {
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

/// The body of a `wait`: `{"StatusCode": N}` once `condition` is met, computed by a
/// thread with its own engine.
fn wait_body(e: &Engine, id: String, condition: String) -> Body {
    let opts = e.opts.clone();
    let asked = chrono::Utc::now();
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    std::thread::spawn(move || {
        let code = Engine::open(opts).map(|e| wait_for(&e, &id, &condition, asked));
        let v = match code {
            Ok(c) => json!({"StatusCode": c, "Error": null}),
            Err(err) => json!({"StatusCode": -1, "Error": {"Message": err.to_string()}}),
        };
        let _ = tx.send(format!("{v}\n"));
    });
    Body::from_stream(futures_util::stream::once(async move {
        Ok::<_, std::convert::Infallible>(rx.await.unwrap_or_default())
    }))
}

/// Waits as Docker's `wait` does: `not-running` (now, if it is not running),
/// `next-exit` (the next time it stops after `asked`), `removed` (when it is gone).
/// Returns the exit code it ended with.
fn wait_for(e: &Engine, id: &str, condition: &str, asked: chrono::DateTime<chrono::Utc>) -> i32 {
    let mut last = 0;
    // Polled quickly at first (`docker run --rm` waits here for a start and then a
    // removal, both a few milliseconds away), then gently.
    let started = std::time::Instant::now();
    loop {
        if e.find_container(id).is_err() {
            return e.last_exit_code(id).unwrap_or(last);
        }
        let Ok(st) = e.container_state(id) else {
            return last;
        };
        last = st.exit_code;
        if st.status.is_active() {
            if let Ok(code) = e.wait_exit(id) {
                last = code;
            }
            if condition != "removed" {
                return last;
            }
            continue;
        }
        let ran_since =
            chrono::DateTime::parse_from_rfc3339(&st.started_at).is_ok_and(|t| t > asked);
        match condition {
            "not-running" => return last,
            "next-exit" if ran_since => return last,
            _ => std::thread::sleep(std::time::Duration::from_millis(
                if started.elapsed() < std::time::Duration::from_secs(2) {
                    2
                } else {
                    50
                },
            )),
        }
    }
}

/// The container lifecycle endpoints: start, stop, restart, kill, wait, DELETE, logs.
pub(crate) fn container_action(
    svc: &Service,
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
                if svc.start(e, id)? {
                    no_content()
                } else {
                    not_modified()
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
                svc.start(e, id)?;
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
                let condition = param(q, "condition")
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "not-running".into());
                if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        format!("invalid condition: {condition:?}"),
                    ));
                }
                // The headers go now (clients start the container after they have
                // them); the body when the condition is met.
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header("Api-Version", API_VERSION)
                    .body(wait_body(e, rec.id, condition))
                    .expect("a valid response")
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
                let path = e
                    .log_path(&rec)
                    .unwrap_or_else(|| e.container_dir(&rec.id).join("log.json"));
                let want = LogWant::of(q, rec.config.tty);
                // `since` and `until`: Unix times (seconds[.nanoseconds]); 0 is no bound.
                let time = |k: &str| {
                    param(q, k)
                        .filter(|t| !t.is_empty() && t != "0")
                        .map(|t| berth_engine::prune::parse_time(&t))
                        .transpose()
                };
                let filter = berth_engine::logs::LogFilter {
                    since: time("since")?,
                    until: time("until")?,
                    tail: None,
                };
                let (mut lines, follower) = berth_engine::logs::Follower::open(&path)
                    .map_err(berth_engine::error::io_err(&path))?;
                lines.retain(|l| filter.keep(l));
                if let Some(n) = param(q, "tail").and_then(|t| t.parse::<usize>().ok()) {
                    let skip = lines.len().saturating_sub(n);
                    lines.drain(..skip);
                }
                let first = want.frames(&lines);
                let body = if flag(q, "follow") {
                    follow_body(e, rec.id.clone(), follower, first, want, filter)
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

/// Go's `os.FileMode` bits for an `st_mode`, as Docker's path stat carries them.
fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match st_mode & libc::S_IFMT {
        libc::S_IFDIR => m |= 1 << 31,
        libc::S_IFLNK => m |= 1 << 27,
        libc::S_IFIFO => m |= 1 << 25,
        libc::S_IFSOCK => m |= 1 << 24,
        libc::S_IFBLK => m |= 1 << 26,
        libc::S_IFCHR => m |= (1 << 26) | (1 << 21),
        _ => {}
    }
    if st_mode & libc::S_ISUID != 0 {
        m |= 1 << 23;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= 1 << 22;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= 1 << 20;
    }
    m
}

/// The `X-Docker-Container-Path-Stat` header: base64 of the path's stat as JSON.
fn path_stat_header(st: &berth_engine::changes::PathStat) -> String {
    use base64::Engine as _;
    let mtime = chrono::DateTime::from_timestamp(st.mtime, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let v = json!({
        "name": st.name, "size": st.size, "mode": go_file_mode(st.mode),
        "mtime": mtime, "linkTarget": st.link_target,
    });
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// `HEAD` and `GET /containers/{id}/archive?path=`: the path's stat in a header, and
/// for GET a tar of it (what `docker cp CTR:PATH …` reads).
pub(crate) fn archive_get(
    e: &Engine,
    id: &str,
    q: &[(String, String)],
    head: bool,
) -> Response<Body> {
    let Some(path) = param(q, "path").filter(|p| !p.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "archive needs a path");
    };
    let st = match e.container_path_stat(id, &path) {
        Ok(Some(st)) => st,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("Could not find the file {path} in container {id}"),
            )
        }
        Err(err) => return engine_error(err),
    };
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header("X-Docker-Container-Path-Stat", path_stat_header(&st))
        .header("Api-Version", API_VERSION);
    if head {
        return builder.body(Body::empty()).expect("a valid response");
    }
    let (opts, id, name) = (e.opts.clone(), id.to_string(), st.name.clone());
    builder
        .body(streamed(move |w| {
            if let Ok(e) = Engine::open(opts) {
                let _ = e.copy_from_container(&id, &path, &name, false, w);
            }
        }))
        .expect("a valid response")
}

/// `PUT /containers/{id}/archive?path=`: extracts the body's tar into directory `path`.
pub(crate) fn archive_put(
    e: &Engine,
    id: &str,
    q: &[(String, String)],
    body: Box<dyn std::io::Read + Send>,
) -> Response<Body> {
    let Some(path) = param(q, "path").filter(|p| !p.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "archive needs a path");
    };
    match e.container_path_is_dir(id, &path) {
        Ok(Some(true)) => {}
        Ok(Some(false)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("extraction point is not a directory: {path}"),
            )
        }
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("Could not find the file {path} in container {id}"),
            )
        }
        Err(err) => return engine_error(err),
    }
    match e.copy_to_container(id, &path, body, flag(q, "copyUIDGID")) {
        Ok(()) => json_response(StatusCode::OK, &Value::Null),
        Err(err) => engine_error(err),
    }
}

/// `GET /containers/{id}/changes`: Kind 0 modified, 1 added, 2 deleted.
pub(crate) fn changes(e: &Engine, id: &str) -> Response<Body> {
    match e.diff(id) {
        Ok(list) => {
            let v: Vec<Value> = list
                .iter()
                .map(|c| {
                    let line = c.to_string();
                    let (kind, path) = line.split_once(' ').unwrap_or(("C", &line));
                    let k = match kind {
                        "A" => 1,
                        "D" => 2,
                        _ => 0,
                    };
                    json!({"Path": path, "Kind": k})
                })
                .collect();
            json_response(StatusCode::OK, &Value::Array(v))
        }
        Err(err) => engine_error(err),
    }
}

/// `GET /containers/{id}/export`: the container's file system as a tar.
pub(crate) fn export(e: &Engine, id: &str) -> Response<Body> {
    let rec = match e.find_container(id) {
        Ok(r) => r,
        Err(err) => return engine_error(err),
    };
    let opts = e.opts.clone();
    streamed_response("application/x-tar", move |w| {
        if let Ok(e) = Engine::open(opts) {
            let _ = e.export(&rec.id, w);
        }
    })
}

/// The host's CPU time so far in nanoseconds (the first line of /proc/stat), against
/// which Docker's clients compute a container's CPU share.
fn host_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * (1_000_000_000 / hz)
}

/// The interfaces of a container's network namespace, other than lo, as Docker's
/// `networks` stats.
fn net_stats(pid: i32) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            (name != "lo" && f.len() >= 16).then(|| {
                (
                    name.to_string(),
                    json!({
                        "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                        "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
                    }),
                )
            })
        })
        .collect()
}

/// One sample of a container's usage, with the host's CPU time beside it.
struct Sample {
    at: chrono::DateTime<chrono::Utc>,
    usage: berth_engine::stats::Usage,
    host_cpu: u64,
}

fn sample(e: &Engine, id: &str) -> Sample {
    Sample {
        at: chrono::Utc::now(),
        usage: e.container_usage(id).unwrap_or_default(),
        host_cpu: host_cpu_ns(),
    }
}

fn cpu_json(s: &Sample, cpus: usize) -> Value {
    json!({
        "cpu_usage": {"total_usage": s.usage.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "system_cpu_usage": s.host_cpu,
        "online_cpus": cpus,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

/// Docker's stats JSON from two samples.
fn stats_json(
    rec: &berth_engine::model::ContainerRecord,
    pid: i32,
    before: &Sample,
    now: &Sample,
) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let host_mem = berth_engine::stats::host_memory();
    let limit = now.usage.mem_limit.unwrap_or(host_mem).min(host_mem.max(1));
    let blk = |op: &str, v: u64| json!({"major": 0, "minor": 0, "op": op, "value": v});
    json!({
        "name": format!("/{}", rec.name),
        "id": rec.id,
        "read": now.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "preread": before.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "pids_stats": {"current": now.usage.pids},
        "blkio_stats": {"io_service_bytes_recursive": [blk("read", now.usage.blk_read), blk("write", now.usage.blk_write)]},
        "num_procs": 0,
        "cpu_stats": cpu_json(now, cpus),
        "precpu_stats": cpu_json(before, cpus),
        "memory_stats": {"usage": now.usage.mem_bytes, "limit": limit, "stats": {}},
        "networks": net_stats(pid),
    })
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: Docker's stats JSON, once or every
/// second.
pub(crate) fn stats(e: &Engine, id: &str, q: &[(String, String)]) -> Response<Body> {
    let rec = match e.find_container(id) {
        Ok(r) => r,
        Err(err) => return engine_error(err),
    };
    let stream = flag_or(q, "stream", true);
    let one_shot = flag(q, "one-shot");
    let opts = e.opts.clone();
    streamed_response("application/json", move |w| {
        let Ok(e) = Engine::open(opts) else { return };
        let pid = || e.container_state(&rec.id).map(|s| s.pid).unwrap_or(0);
        let mut before = sample(&e, &rec.id);
        if !one_shot {
            std::thread::sleep(std::time::Duration::from_millis(if stream {
                1000
            } else {
                200
            }));
        }
        loop {
            let now = sample(&e, &rec.id);
            if w.message(&stats_json(&rec, pid(), &before, &now)).is_err() || !stream {
                return;
            }
            let active = e
                .container_state(&rec.id)
                .map(|s| s.status.is_active())
                .unwrap_or(false);
            if !active {
                return;
            }
            before = now;
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    })
}

/// `POST /containers/{id}/update`: memory, CPU and pids limits, the restart policy.
pub(crate) fn update(e: &Engine, id: &str, body: &[u8]) -> Response<Body> {
    let v = match body_json(body) {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let num = |k: &str| v.get(k).and_then(Value::as_i64).filter(|n| *n != 0);
    let restart_policy = match v.get("RestartPolicy") {
        Some(p)
            if p.get("Name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty()) =>
        {
            match serde_json::from_value::<berth_engine::model::RestartPolicy>(p.clone()) {
                Ok(r) => Some(r),
                Err(err) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("invalid RestartPolicy: {err}"),
                    )
                }
            }
        }
        _ => None,
    };
    let update = berth_engine::specs::UpdateSpec {
        memory: num("Memory"),
        memory_swap: num("MemorySwap"),
        nano_cpus: num("NanoCpus"),
        cpu_quota: num("CpuQuota"),
        cpu_shares: num("CpuShares"),
        pids_limit: num("PidsLimit"),
        restart_policy,
    };
    match e.update_container(id, &update) {
        Ok(()) => json_response(StatusCode::OK, &json!({"Warnings": []})),
        Err(err) => engine_error(err),
    }
}

/// `POST /containers/prune`.
pub(crate) fn prune(e: &Engine, q: &[(String, String)]) -> Response<Body> {
    match prune_filter(q, &[]).and_then(|f| e.prune_containers(&f)) {
        Ok((ids, bytes)) => json_response(
            StatusCode::OK,
            &json!({"ContainersDeleted": ids, "SpaceReclaimed": bytes}),
        ),
        Err(err) => engine_error(err),
    }
}
