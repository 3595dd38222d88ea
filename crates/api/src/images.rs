//! Images: list.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use berth_engine::Engine;
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
