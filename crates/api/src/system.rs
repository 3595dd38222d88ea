//! The service as a whole: events, disk use, registry logins, the build cache.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use berth_engine::{Engine, EngineError};
use serde_json::{json, Value};

use crate::*;

/// A `since`/`until` parameter (Unix seconds, RFC 3339 or a duration) in nanoseconds.
fn time_ns(q: &[(String, String)], name: &str) -> Result<Option<i64>, EngineError> {
    let Some(v) = param(q, name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let t = berth_engine::prune::parse_time(&v)?;
    Ok(chrono::DateTime::parse_from_rfc3339(&t)
        .ok()
        .and_then(|d| d.timestamp_nanos_opt()))
}

/// `GET /events?since=&until=&filters=`: what happened, then (without `until`) what
/// happens, from every process using this root, as one JSON message a line.
pub(crate) fn events(e: &Engine, q: &[(String, String)]) -> Response<Body> {
    let filters = match filters(q) {
        Ok(f) => f,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    if let Some((k, _)) = filters.iter().find(|(k, _)| {
        !matches!(
            k.as_str(),
            "type" | "event" | "status" | "container" | "image" | "label" | "volume"
        )
    }) {
        return error(StatusCode::BAD_REQUEST, format!("invalid filter '{k}'"));
    }
    let (since, until) = match (time_ns(q, "since"), time_ns(q, "until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(err), _) | (_, Err(err)) => return engine_error(err),
    };
    let mut last = if since.is_some() {
        0
    } else {
        match e.last_event_seq() {
            Ok(n) => n,
            Err(err) => return engine_error(err),
        }
    };
    let opts = e.opts.clone();
    streamed_response("application/json", move |w| {
        let Ok(e) = Engine::open(opts) else { return };
        loop {
            for ev in e.events_after(last, since, until).unwrap_or_default() {
                last = ev.seq;
                if berth_engine::events::matches(&ev, &filters)
                    && w.message(&serde_json::to_value(&ev).unwrap_or_default())
                        .is_err()
                {
                    return;
                }
            }
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            if until.is_some_and(|u| u <= now) {
                return;
            }
            if w.client_gone() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    })
}

/// `GET /system/df`: what images, containers, volumes and the build cache take.
pub(crate) fn df(e: &Engine) -> Result<Value, EngineError> {
    let containers = e.list_containers(true, &[])?;
    let mut images = Vec::new();
    let mut layers = 0;
    for r in e.list_image_rows()? {
        let users = containers
            .iter()
            .filter(|c| c.image_id == r.id.to_string())
            .count();
        layers += r.size;
        images.push(json!({
            "Id": r.id.to_string(), "ParentId": "", "RepoTags": [], "RepoDigests": [],
            "Created": 0, "Size": r.size, "SharedSize": 0, "VirtualSize": r.size,
            "Labels": {}, "Containers": users,
        }));
    }
    let ctrs: Vec<Value> = containers
        .iter()
        .map(|c| {
            let size = berth_engine::volumes::dir_size(&e.container_dir(&c.id).join("upper"));
            json!({
                "Id": c.id, "Names": [format!("/{}", c.names)], "Image": c.image,
                "ImageID": c.image_id, "Command": c.command, "Created": c.created.timestamp(),
                "State": c.state, "Status": c.status, "SizeRw": size, "SizeRootFs": size,
                "Labels": c.labels, "Mounts": [],
            })
        })
        .collect();
    let mut vols = Vec::new();
    for v in e.list_volumes()? {
        let size = berth_engine::volumes::dir_size(std::path::Path::new(&v.mountpoint));
        let refs = e.volume_users(&v.name)?.len();
        let mut j = serde_json::to_value(&v).expect("a volume serialises");
        j["UsageData"] = json!({"Size": size, "RefCount": refs});
        vols.push(j);
    }
    Ok(json!({
        "LayersSize": layers,
        "Images": images,
        "Containers": ctrs,
        "Volumes": vols,
        "BuildCache": [],
    }))
}

/// `POST /auth`: checks the credentials against the registry and keeps them.
pub(crate) fn auth(e: &Engine, body: &[u8]) -> Response<Body> {
    let v = match body_json(body) {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let server = match text("serveraddress") {
        s if s.is_empty() => "https://index.docker.io/v1/".to_string(),
        s => s,
    };
    let creds = berth_registry::auth::Credentials {
        username: text("username"),
        password: text("password"),
    };
    match e.login(
        &server,
        creds,
        &berth_engine::distribution::insecure_registries(),
    ) {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        ),
        Err(err) => error(StatusCode::UNAUTHORIZED, err.to_string()),
    }
}

/// `POST /build/prune`.
pub(crate) fn prune_build_cache(e: &Engine) -> Response<Body> {
    match e.prune_build_cache() {
        Ok((_, bytes)) => json_response(
            StatusCode::OK,
            &json!({"CachesDeleted": [], "SpaceReclaimed": bytes}),
        ),
        Err(err) => engine_error(err),
    }
}
