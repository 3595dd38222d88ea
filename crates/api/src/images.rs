//! Images: list.

use axum::body::Body;
use axum::http::{header, Response, StatusCode};
use berth_engine::{Engine, EngineError};
use serde_json::{json, Value};

use crate::*;

/// `GET /images/json`.
pub(crate) fn list_images(e: &Engine, q: &[(String, String)]) -> Response<Body> {
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

/// The query's `changes` (Dockerfile instructions, as `--change` takes them) applied to
/// `run`; whether there were any.
fn apply_query_changes(
    q: &[(String, String)],
    run: &mut berth_image::config::RunConfig,
) -> Result<bool, EngineError> {
    let changes: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "changes")
        .map(|(_, v)| v.clone())
        .collect();
    berth_engine::changes::apply_changes(run, &changes)?;
    Ok(!changes.is_empty())
}

/// The reference `repo` and `tag` name (`repo:tag`, or `repo` alone), if any.
pub(crate) fn repo_tag(q: &[(String, String)]) -> Option<String> {
    let repo = param(q, "repo").filter(|r| !r.is_empty())?;
    Some(match param(q, "tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo,
    })
}

/// An engine progress report as one of Docker's JSON progress messages.
fn progress_json(p: berth_engine::distribution::Progress<'_>) -> Value {
    use berth_engine::distribution::Progress;
    match p {
        Progress::Line(text) => json!({ "status": text }),
        Progress::Layer { id, status, bytes } => {
            let detail = match bytes {
                Some((current, total)) => json!({"current": current, "total": total}),
                None => json!({}),
            };
            json!({"status": status, "progressDetail": detail, "id": id})
        }
    }
}

/// Docker's `filters` as prune filters (`until` may be a duration or a time).
pub(crate) fn prune_filter(
    q: &[(String, String)],
    skip: &[&str],
) -> Result<berth_engine::prune::PruneFilter, EngineError> {
    let mut pairs = filters(q).map_err(EngineError::Invalid)?;
    pairs.retain(|(k, _)| !skip.contains(&k.as_str()));
    for (k, v) in pairs.iter_mut() {
        if k == "until" {
            *v = berth_engine::prune::parse_time(v)?;
        }
    }
    berth_engine::prune::PruneFilter::parse(&pairs, true)
}

fn removed_json(removed: &[berth_engine::images::Removed]) -> Vec<Value> {
    removed
        .iter()
        .map(|r| match r {
            berth_engine::images::Removed::Untagged(t) => json!({ "Untagged": t }),
            berth_engine::images::Removed::Deleted(d) => json!({ "Deleted": d }),
        })
        .collect()
}

/// `DELETE /images/{name}`.
pub(crate) fn remove_image(e: &Engine, name: &str, force: bool) -> Response<Body> {
    match e.remove_image(name, force) {
        Ok(removed) => json_response(StatusCode::OK, &Value::Array(removed_json(&removed))),
        Err(err) => engine_error(err),
    }
}

/// `POST /images/prune`: dangling images, or (`dangling=false`) every unused one.
pub(crate) fn prune_images(e: &Engine, q: &[(String, String)]) -> Response<Body> {
    let all = filters(q)
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "dangling" && matches!(v.as_str(), "false" | "0"));
    let result = prune_filter(q, &["dangling"]).and_then(|f| e.prune_images(all, &f));
    match result {
        Ok((removed, bytes)) => json_response(
            StatusCode::OK,
            &json!({"ImagesDeleted": removed_json(&removed), "SpaceReclaimed": bytes}),
        ),
        Err(err) => engine_error(err),
    }
}

/// `POST /images/create`: a pull (`fromImage`, `tag`, `platform`) or an import
/// (`fromSrc=-` with the tar as the body), answered as a JSON progress stream.
pub(crate) fn create_image(
    e: &Engine,
    q: &[(String, String)],
    body: Option<Box<dyn std::io::Read + Send>>,
) -> Response<Body> {
    let opts = e.opts.clone();
    if let Some(src) = param(q, "fromSrc") {
        if src != "-" {
            return error(
                StatusCode::NOT_IMPLEMENTED,
                "importing from a URL is not implemented yet in berth serve: send the tar as the body (fromSrc=-)",
            );
        }
        let mut run = berth_image::config::RunConfig::default();
        if let Err(err) = apply_query_changes(q, &mut run) {
            return engine_error(err);
        }
        let reference = repo_tag(q);
        let message = param(q, "message").filter(|m| !m.is_empty());
        let body = body.expect("an import has a body");
        return streamed_response("application/json", move |w| {
            let result = Engine::open(opts)
                .and_then(|e| e.import(body, reference.as_deref(), run, message, "-"));
            let _ = w.message(&match result {
                Ok(id) => json!({ "status": id.to_string() }),
                Err(err) => stream_error(&err.to_string()),
            });
        });
    }
    let Some(image) = param(q, "fromImage").filter(|i| !i.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "fromImage or fromSrc must be given",
        );
    };
    let name = match param(q, "tag").filter(|t| !t.is_empty()) {
        Some(t) if t.contains(':') => format!("{image}@{t}"),
        Some(t) => format!("{image}:{t}"),
        None => image,
    };
    // A reference that cannot be one is refused before the stream starts.
    if let Err(err) = berth_image::Reference::parse(&name) {
        return error(StatusCode::BAD_REQUEST, err.to_string());
    }
    let pull = berth_engine::distribution::PullOptions {
        platform: param(q, "platform").filter(|p| !p.is_empty()),
        insecure: berth_engine::distribution::insecure_registries(),
        ..Default::default()
    };
    streamed_response("application/json", move |w| {
        let result = Engine::open(opts).and_then(|e| {
            e.pull(&name, &pull, &mut |p| {
                let _ = w.message(&progress_json(p));
            })
        });
        let _ = match result {
            Ok(pulled) => {
                let shown = pulled.reference.familiar();
                let _ = w.message(&json!({ "status": format!("Digest: {}", pulled.digest) }));
                w.message(&json!({ "status": if pulled.downloaded {
                    format!("Status: Downloaded newer image for {shown}")
                } else {
                    format!("Status: Image is up to date for {shown}")
                }}))
            }
            Err(err) => w.message(&stream_error(&err.to_string())),
        };
    })
}

/// `POST /images/{name}/push?tag=`: a JSON progress stream.
pub(crate) fn push_image(e: &Engine, name: &str, q: &[(String, String)]) -> Response<Body> {
    let name = match param(q, "tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    if let Err(err) = e.find_image(&name) {
        return engine_error(err);
    }
    let opts = e.opts.clone();
    streamed_response("application/json", move |w| {
        let tag = berth_image::Reference::parse(&name)
            .map(|r| r.tag.unwrap_or_else(|| "latest".into()))
            .unwrap_or_default();
        let result = Engine::open(opts).and_then(|e| {
            e.push(
                &name,
                &berth_engine::distribution::insecure_registries(),
                None,
                &mut |p| {
                    let _ = w.message(&progress_json(p));
                },
            )
        });
        let _ = match result {
            // The engine has reported the digest line; the aux message is for SDKs.
            Ok(digest) => w.message(
                &json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest.to_string()}}),
            ),
            Err(err) => w.message(&stream_error(&err.to_string())),
        };
    })
}

/// `GET /images/get?names=…` and `GET /images/{name}/get`: a docker-archive tar.
pub(crate) fn save_images(e: &Engine, names: Vec<String>) -> Response<Body> {
    if names.is_empty() {
        return error(StatusCode::BAD_REQUEST, "no images named");
    }
    for n in &names {
        if let Err(err) = e.find_image(n) {
            return engine_error(err);
        }
    }
    let opts = e.opts.clone();
    streamed_response("application/x-tar", move |w| {
        if let Ok(e) = Engine::open(opts) {
            // A failure midway leaves the tar cut short, as Docker's does.
            let _ = e.save(&names, w);
        }
    })
}

/// `POST /images/load`: loads a docker-archive or OCI archive from the body.
/// (`quiet` only quiets progress, which berth's load does not report: the loaded
/// images are named either way, as Docker's are.)
/// An archive berth cannot load is, as in Docker's, an error message in the stream of a
/// 200 (clients read the stream, and raise what it says).
pub(crate) fn load_images(e: &Engine, body: Box<dyn std::io::Read + Send>) -> Response<Body> {
    let out = match e.load(std::io::BufReader::new(body)) {
        Ok(lines) => lines
            .iter()
            .map(|l| format!("{}\n", json!({ "stream": format!("{l}\n") })))
            .collect::<String>(),
        Err(err) => format!("{}\n", stream_error(&err.to_string())),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Api-Version", API_VERSION)
        .body(Body::from(out))
        .expect("a valid response")
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`, the body a
/// container config whose settings the new image takes.
pub(crate) fn commit(e: &Engine, q: &[(String, String)], body: &[u8]) -> Response<Body> {
    let Some(container) = param(q, "container").filter(|c| !c.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "commit needs a container");
    };
    let mut run: berth_image::config::RunConfig = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        let mut v = match body_json(body) {
            Ok(v) => v,
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        };
        if v.is_null() {
            v = json!({});
        }
        match serde_json::from_value(v) {
            Ok(r) => r,
            Err(err) => return error(StatusCode::BAD_REQUEST, format!("invalid config: {err}")),
        }
    };
    let has_config = run != berth_image::config::RunConfig::default();
    let has_changes = match apply_query_changes(q, &mut run) {
        Ok(any) => any,
        Err(err) => return engine_error(err),
    };
    let reference = repo_tag(q);
    let text = |k: &str| param(q, k).filter(|v| !v.is_empty());
    let pause = flag_or(q, "pause", true);
    match e.commit(
        &container,
        reference.as_deref(),
        text("author"),
        text("comment"),
        run,
        has_config || has_changes,
        pause,
    ) {
        Ok(id) => json_response(StatusCode::CREATED, &json!({ "Id": id.to_string() })),
        Err(err) => engine_error(err),
    }
}

/// `GET /images/search?term=&limit=`: a registry's catalog, searched (Docker Hub's
/// search API is not reachable here; `HOST/TERM` searches that registry).
pub(crate) fn search(e: &Engine, q: &[(String, String)]) -> Response<Body> {
    let Some(term) = param(q, "term").filter(|t| !t.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "search needs a term");
    };
    let limit = param(q, "limit")
        .and_then(|l| l.parse().ok())
        .filter(|l: &usize| *l > 0)
        .unwrap_or(25);
    match e.search(
        &term,
        limit,
        &berth_engine::distribution::insecure_registries(),
    ) {
        Ok(found) => {
            let v: Vec<Value> = found
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name, "description": r.description, "star_count": r.stars,
                        "is_official": r.official, "is_automated": r.automated,
                    })
                })
                .collect();
            json_response(StatusCode::OK, &Value::Array(v))
        }
        Err(err) => engine_error(err),
    }
}
