//! The HTTP side of `berth registry serve`: the OCI distribution spec v1.1 over
//! [`Storage`]. One handler parses the path from its end (repository names contain
//! slashes) and dispatches.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use futures_util::StreamExt;
use serde_json::json;

use crate::digest::Digest;
use crate::storage::{valid_name, Storage, StorageError, MANIFEST_MAX};

mod authorize;
mod listen;
mod pages;

use authorize::*;
pub use listen::*;
use pages::*;

/// What the server needs, shared by every request.
pub struct State {
    pub storage: Storage,
    /// Log one line per request to stderr.
    pub log: bool,
    /// Users and rules; None: no authentication.
    pub access: Option<crate::access::Access>,
    /// Served over TLS (for the token realm's scheme).
    pub tls: bool,
    pub metrics: Metrics,
}

/// Request duration histogram bounds, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// What `/metrics` reports, in Prometheus' text format.
#[derive(Default)]
pub struct Metrics {
    requests: std::sync::Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    sent: std::sync::atomic::AtomicU64,
    received: std::sync::atomic::AtomicU64,
    buckets: [std::sync::atomic::AtomicU64; 10],
    count: std::sync::atomic::AtomicU64,
    sum_micros: std::sync::atomic::AtomicU64,
}

impl Metrics {
    fn record(&self, method: &str, status: u16, seconds: f64, received: u64, sent: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        *self
            .requests
            .lock()
            .expect("not poisoned")
            .entry((method.to_string(), status))
            .or_default() += 1;
        self.received.fetch_add(received, Relaxed);
        self.sent.fetch_add(sent, Relaxed);
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    pub fn render(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        out.push_str("# HELP berth_registry_requests_total Requests served, by method and status code.\n# TYPE berth_registry_requests_total counter\n");
        for ((m, c), n) in self.requests.lock().expect("not poisoned").iter() {
            out.push_str(&format!(
                "berth_registry_requests_total{{method=\"{m}\",code=\"{c}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP berth_registry_received_bytes_total Request body bytes announced by Content-Length.\n# TYPE berth_registry_received_bytes_total counter\nberth_registry_received_bytes_total {}\n",
            self.received.load(Relaxed)
        ));
        out.push_str(&format!(
            "# HELP berth_registry_sent_bytes_total Response body bytes (Content-Length).\n# TYPE berth_registry_sent_bytes_total counter\nberth_registry_sent_bytes_total {}\n",
            self.sent.load(Relaxed)
        ));
        out.push_str("# HELP berth_registry_request_duration_seconds Time to the response head.\n# TYPE berth_registry_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            out.push_str(&format!(
                "berth_registry_request_duration_seconds_bucket{{le=\"{b}\"}} {}\n",
                self.buckets[i].load(Relaxed)
            ));
        }
        let count = self.count.load(Relaxed);
        out.push_str(&format!(
            "berth_registry_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nberth_registry_request_duration_seconds_sum {}\nberth_registry_request_duration_seconds_count {count}\n",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        ));
        out
    }
}

/// An error as the spec shapes it: a status and `{"errors":[{code,message,detail}]}`.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        let (status, code) = match &e {
            StorageError::BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            StorageError::UploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            StorageError::DigestInvalid => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            StorageError::ManifestUnknown => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            StorageError::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            StorageError::ManifestBlobUnknown(_) => {
                (StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN")
            }
            StorageError::RangeInvalid(_) => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
            }
            StorageError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn error_response(e: ApiError, head: bool) -> Response<Body> {
    let body = json!({"errors": [{"code": e.code, "message": e.message, "detail": null}]});
    let mut r = Response::builder()
        .status(e.status)
        .header(header::CONTENT_TYPE, "application/json");
    for (k, v) in e.headers {
        r = r.header(k, v);
    }
    let body = if head {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    r.body(body).expect("a valid response")
}

/// What a path under /v2/ asks for.
#[derive(Debug, PartialEq)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    UploadStart(String),
    Upload(String, String),
    Blob(String, String),
    Referrers(String, String),
}

fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name.into()));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart(name.into()));
    }
    let (head, last) = rest.rsplit_once('/')?;
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Route::Upload(name.into(), last.into()));
    }
    if let Some(name) = head.strip_suffix("/manifests") {
        return Some(Route::Manifest(name.into(), last.into()));
    }
    if let Some(name) = head.strip_suffix("/blobs") {
        return Some(Route::Blob(name.into(), last.into()));
    }
    if let Some(name) = head.strip_suffix("/referrers") {
        return Some(Route::Referrers(name.into(), last.into()));
    }
    None
}

/// A URI's query parameters, decoded (the API service reads them the same way).
pub fn query(uri: &axum::http::Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A query string's part, decoded (`+` is a space, as forms write it).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn digest_param(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).ok_or_else(|| {
        if Digest::looks_like_digest(s) {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                format!("unsupported digest algorithm: {s}"),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("invalid digest: {s}"),
            )
        }
    })
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("invalid repository name: {name:?}"),
        ))
    }
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// The spec's `Range: 0-<last byte>` of an upload ("0-0" when empty, as distribution).
fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn builder(status: StatusCode) -> axum::http::response::Builder {
    Response::builder()
        .status(status)
        .header("Docker-Distribution-API-Version", "registry/2.0")
}

/// Appends a request body to a file as it arrives.
async fn stream_to(body: Body, mut file: std::fs::File) -> Result<u64, ApiError> {
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("reading the body: {e}"),
            )
        })?;
        file.write_all(&chunk)
            .map_err(|e| ApiError::from(StorageError::Io(e)))?;
        n += chunk.len() as u64;
    }
    Ok(n)
}

async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            "body too large",
        )
    })?;
    Ok(bytes.to_vec())
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes.
fn byte_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (start <= end && end < size).then_some((start, end))
}

/// Serves one request.
pub async fn handle(state: Arc<State>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let head = method == Method::HEAD;
    let received = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let resp = if path == "/token" {
        token_endpoint(&state, &req)
    } else if path == "/v1/search" {
        search(&state, &req)
    } else if path == "/metrics" {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Body::from(state.metrics.render()))
            .expect("valid")
    } else if path == "/" || path.starts_with("/ui/") {
        web(&state, &req)
    } else {
        match authorize(&state, &req) {
            Err(e) => error_response(e, head),
            Ok(()) => match dispatch(&state, req).await {
                Ok(r) => r,
                Err(e) => error_response(e, head),
            },
        }
    };
    let sent = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    state.metrics.record(
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
        received,
        sent,
    );
    if state.log {
        // A closed log pipe must not take the request (or the server) down.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "{method} {path} {} {:.1}ms",
            resp.status().as_u16(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    resp
}

async fn dispatch(state: &State, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let s = &state.storage;
    let method = req.method().clone();
    let q = query(req.uri());
    let headers = req.headers().clone();
    let Some(r) = route(req.uri().path()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such endpoint",
        ));
    };
    let not_allowed = || {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "method not allowed",
        )
    };
    let body = req.into_body();
    match r {
        Route::Base => Ok(builder(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .expect("valid")),
        Route::Catalog => {
            let all = s.catalog();
            list_page(all, &q, "/v2/_catalog", "repositories", None)
        }
        Route::Tags(name) => {
            check_name(&name)?;
            if !s.repo_exists(&name) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    format!("repository name not known to registry: {name}"),
                ));
            }
            let tags = s.tags(&name);
            list_page(
                tags,
                &q,
                &format!("/v2/{name}/tags/list"),
                "tags",
                Some(&name),
            )
        }
        Route::Manifest(name, reference) => {
            check_name(&name)?;
            match method {
                Method::GET | Method::HEAD => {
                    let m = s.get_manifest(&name, &reference)?;
                    let len = m.bytes.len();
                    let b = builder(StatusCode::OK)
                        .header(header::CONTENT_TYPE, m.media_type)
                        .header("Docker-Content-Digest", m.digest.to_string())
                        .header(header::CONTENT_LENGTH, len);
                    Ok(b.body(if method == Method::HEAD {
                        Body::empty()
                    } else {
                        Body::from(m.bytes)
                    })
                    .expect("valid"))
                }
                Method::PUT => {
                    let ct = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let bytes = read_body(body, MANIFEST_MAX).await?;
                    let (digest, subject) = s.put_manifest(&name, &reference, &ct, &bytes)?;
                    let mut b = builder(StatusCode::CREATED)
                        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
                        .header("Docker-Content-Digest", digest.to_string());
                    if let Some(sub) = subject {
                        b = b.header("OCI-Subject", sub.to_string());
                    }
                    Ok(b.body(Body::empty()).expect("valid"))
                }
                Method::DELETE => {
                    s.delete_manifest(&name, &reference)?;
                    Ok(builder(StatusCode::ACCEPTED)
                        .body(Body::empty())
                        .expect("valid"))
                }
                _ => Err(not_allowed()),
            }
        }
        Route::Blob(name, digest) => {
            check_name(&name)?;
            let d = digest_param(&digest)?;
            match method {
                Method::GET | Method::HEAD => {
                    let size = s.blob_size(&name, &d).ok_or(StorageError::BlobUnknown)?;
                    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
                    let (status, start, end) = match range {
                        Some(h) => match byte_range(h, size) {
                            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
                            None => {
                                let mut e = ApiError::new(
                                    StatusCode::RANGE_NOT_SATISFIABLE,
                                    "BLOB_UNKNOWN",
                                    "range not satisfiable",
                                );
                                e.headers
                                    .push((header::CONTENT_RANGE, format!("bytes */{size}")));
                                return Err(e);
                            }
                        },
                        None => (StatusCode::OK, 0, size.saturating_sub(1)),
                    };
                    let len = if size == 0 { 0 } else { end - start + 1 };
                    let mut b = builder(status)
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header("Docker-Content-Digest", d.to_string())
                        .header(header::ACCEPT_RANGES, "bytes")
                        .header(header::CONTENT_LENGTH, len);
                    if status == StatusCode::PARTIAL_CONTENT {
                        b = b.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
                    }
                    if method == Method::HEAD {
                        return Ok(b.body(Body::empty()).expect("valid"));
                    }
                    use tokio::io::{AsyncReadExt, AsyncSeekExt};
                    let mut f = tokio::fs::File::open(s.blob_path(&d))
                        .await
                        .map_err(|_| StorageError::BlobUnknown)?;
                    if start > 0 {
                        f.seek(std::io::SeekFrom::Start(start))
                            .await
                            .map_err(StorageError::Io)?;
                    }
                    let stream =
                        tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10);
                    Ok(b.body(Body::from_stream(stream)).expect("valid"))
                }
                Method::DELETE => {
                    if !s.delete_blob(&name, &d).map_err(StorageError::Io)? {
                        return Err(StorageError::BlobUnknown.into());
                    }
                    Ok(builder(StatusCode::ACCEPTED)
                        .body(Body::empty())
                        .expect("valid"))
                }
                _ => Err(not_allowed()),
            }
        }
        Route::UploadStart(name) => {
            check_name(&name)?;
            if method != Method::POST {
                return Err(not_allowed());
            }
            if let (Some(mount), Some(from)) = (param(&q, "mount"), param(&q, "from")) {
                let d = digest_param(mount)?;
                if valid_name(from) && s.mount_blob(&name, from, &d).map_err(StorageError::Io)? {
                    return Ok(blob_created(&name, &d));
                }
            }
            if let Some(digest) = param(&q, "digest") {
                // Monolithic: the blob is the body.
                let d = digest_param(digest)?;
                let id = s.start_upload(&name).map_err(StorageError::Io)?;
                let f = s.append_upload(&name, &id, None)?;
                let r = stream_to(body, f)
                    .await
                    .and_then(|_| s.finish_upload(&name, &id, &d).map_err(ApiError::from));
                if r.is_err() {
                    let _ = s.cancel_upload(&name, &id);
                }
                r?;
                return Ok(blob_created(&name, &d));
            }
            let id = s.start_upload(&name).map_err(StorageError::Io)?;
            Ok(builder(StatusCode::ACCEPTED)
                .header(header::LOCATION, upload_location(&name, &id))
                .header(header::RANGE, "0-0")
                .header("Docker-Upload-UUID", &id)
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .expect("valid"))
        }
        Route::Upload(name, id) => {
            check_name(&name)?;
            match method {
                Method::GET => {
                    let size = s.upload_size(&name, &id)?;
                    Ok(builder(StatusCode::NO_CONTENT)
                        .header(header::LOCATION, upload_location(&name, &id))
                        .header(header::RANGE, upload_range(size))
                        .header("Docker-Upload-UUID", &id)
                        .body(Body::empty())
                        .expect("valid"))
                }
                Method::PATCH => {
                    let start = match headers
                        .get(header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(cr) => Some(content_range_start(cr).ok_or_else(|| {
                            ApiError::new(
                                StatusCode::RANGE_NOT_SATISFIABLE,
                                "BLOB_UPLOAD_INVALID",
                                format!("invalid Content-Range: {cr}"),
                            )
                        })?),
                        None => None,
                    };
                    let f = match s.append_upload(&name, &id, start) {
                        Err(StorageError::RangeInvalid(size)) => {
                            let mut e = ApiError::from(StorageError::RangeInvalid(size));
                            e.headers
                                .push((header::LOCATION, upload_location(&name, &id)));
                            e.headers.push((header::RANGE, upload_range(size)));
                            return Err(e);
                        }
                        other => other?,
                    };
                    stream_to(body, f).await?;
                    let size = s.upload_size(&name, &id)?;
                    Ok(builder(StatusCode::ACCEPTED)
                        .header(header::LOCATION, upload_location(&name, &id))
                        .header(header::RANGE, upload_range(size))
                        .header("Docker-Upload-UUID", &id)
                        .header(header::CONTENT_LENGTH, 0)
                        .body(Body::empty())
                        .expect("valid"))
                }
                Method::PUT => {
                    let digest = param(&q, "digest").ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "DIGEST_INVALID",
                            "a digest query parameter is required",
                        )
                    })?;
                    let d = digest_param(digest)?;
                    let f = s.append_upload(&name, &id, None)?;
                    stream_to(body, f).await?;
                    s.finish_upload(&name, &id, &d)?;
                    Ok(blob_created(&name, &d))
                }
                Method::DELETE => {
                    s.cancel_upload(&name, &id)?;
                    Ok(builder(StatusCode::NO_CONTENT)
                        .body(Body::empty())
                        .expect("valid"))
                }
                _ => Err(not_allowed()),
            }
        }
        Route::Referrers(name, digest) => {
            check_name(&name)?;
            if method != Method::GET {
                return Err(not_allowed());
            }
            let d = digest_param(&digest)?;
            let filter = param(&q, "artifactType");
            let manifests = s.referrers(&name, &d, filter);
            let mut b = builder(StatusCode::OK).header(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.index.v1+json",
            );
            if filter.is_some() {
                b = b.header("OCI-Filters-Applied", "artifactType");
            }
            let body = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            });
            Ok(b.body(Body::from(body.to_string())).expect("valid"))
        }
    }
}

/// `<start>-<end>` (the spec) or `bytes <start>-<end>/<total>` (HTTP): the start.
fn content_range_start(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let (a, rest) = v.split_once('-')?;
    let end = rest.split('/').next()?;
    let (a, e): (u64, u64) = (a.parse().ok()?, end.parse().ok()?);
    (e >= a).then_some(a)
}

fn blob_created(name: &str, d: &Digest) -> Response<Body> {
    builder(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{d}"))
        .header("Docker-Content-Digest", d.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid")
}

/// A page of a sorted list (`n`, `last`) with a `Link` to the next page.
fn list_page(
    all: Vec<String>,
    q: &[(String, String)],
    path: &str,
    key: &str,
    name: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let after: Vec<String> = match param(q, "last") {
        Some(last) => all.into_iter().filter(|t| t.as_str() > last).collect(),
        None => all,
    };
    let n = match param(q, "n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("invalid n: {n}"),
            )
        })?),
        None => None,
    };
    let (page, more) = match n {
        Some(n) => (
            after.iter().take(n).cloned().collect::<Vec<_>>(),
            after.len() > n && n > 0,
        ),
        None => (after, false),
    };
    let mut body = json!({ key: page });
    if let Some(name) = name {
        body["name"] = name.into();
    }
    let mut b = builder(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
    if more {
        let last = page.last().cloned().unwrap_or_default();
        b = b.header(
            header::LINK,
            format!("<{path}?n={}&last={last}>; rel=\"next\"", n.unwrap_or(0)),
        );
    }
    Ok(b.body(Body::from(body.to_string())).expect("valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_parsed_from_the_end() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(
            route("/v2/a/manifests/b/manifests/latest"),
            Some(Route::Manifest("a/manifests/b".into(), "latest".into()))
        );
        assert_eq!(
            route("/v2/x/blobs/uploads/"),
            Some(Route::UploadStart("x".into()))
        );
        assert_eq!(
            route("/v2/x/blobs/uploads/abc"),
            Some(Route::Upload("x".into(), "abc".into()))
        );
        assert_eq!(
            route("/v2/x/y/blobs/sha256:00"),
            Some(Route::Blob("x/y".into(), "sha256:00".into()))
        );
        assert_eq!(
            route("/v2/x/referrers/sha256:00"),
            Some(Route::Referrers("x".into(), "sha256:00".into()))
        );
        assert_eq!(route("/v3/x"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-1", 100), None);
        assert_eq!(content_range_start("0-99"), Some(0));
        assert_eq!(content_range_start("bytes 100-199/*"), Some(100));
        assert_eq!(content_range_start("9-1"), None);
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
    }
}
