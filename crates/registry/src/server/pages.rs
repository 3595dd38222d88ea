//! The pages beside the distribution API: Docker's search endpoint and a small web view of
//! the repositories.

use super::*;

/// `GET /v1/search?q=TERM&n=N`: Docker's search API over the repositories the client
/// may pull (Basic credentials or anonymous), whose names contain the term.
pub(super) fn search(state: &State, req: &Request<Body>) -> Response<Body> {
    let q = query(req.uri());
    let term = param(&q, "q").unwrap_or_default().to_ascii_lowercase();
    let n = param(&q, "n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let who = state.access.as_ref().map(|a| {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| a.basic(h))
            .unwrap_or(crate::access::Identity::Anonymous)
    });
    let found: Vec<serde_json::Value> = state
        .storage
        .catalog()
        .into_iter()
        .filter(|r| r.contains(&term))
        .filter(|r| match (&state.access, &who) {
            (Some(a), Some(w)) => a.allowed(w, r, "pull"),
            _ => true,
        })
        .take(n)
        .map(|r| {
            json!({"name": r, "description": "", "star_count": 0, "is_official": false, "is_automated": false})
        })
        .collect();
    let body = json!({
        "query": term,
        "num_results": found.len(),
        "num_pages": 1,
        "page": 1,
        "page_size": n,
        "results": found,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("valid")
}

/// The web page (`/`, `/ui/r/NAME`, `/ui/m/NAME/REFERENCE`).
pub(super) fn web(state: &State, req: &Request<Body>) -> Response<Body> {
    use crate::access::Identity;
    let path = req.uri().path();
    let who = state.access.as_ref().map(|a| {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| a.basic(h))
            .unwrap_or(Identity::Anonymous)
    });
    let visible = |repo: &str| match (&state.access, &who) {
        (Some(a), Some(w)) => a.allowed(w, repo, "pull"),
        _ => true,
    };
    let s = &state.storage;
    let html = if path == "/" {
        let anyone = s.catalog().iter().any(|r| visible(r));
        if !anyone && who == Some(Identity::Anonymous) {
            None
        } else {
            Some(crate::ui::index(s, &visible))
        }
    } else if let Some(name) = path.strip_prefix("/ui/r/") {
        if !valid_name(name) || !visible(name) {
            None
        } else {
            crate::ui::repository(s, name)
        }
    } else if let Some((name, reference)) =
        path.strip_prefix("/ui/m/").and_then(|p| p.rsplit_once('/'))
    {
        if !valid_name(name) || !visible(name) {
            None
        } else {
            crate::ui::manifest(s, name, &percent_decode(reference))
        }
    } else {
        None
    };
    match html {
        Some(h) => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::from(h))
            .expect("valid"),
        None if who == Some(Identity::Anonymous) => Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"berth registry\"")
            .body(Body::from("authentication required"))
            .expect("valid"),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::from(
                "<!doctype html><title>not found</title><p>Not found.</p>",
            ))
            .expect("valid"),
    }
}
