//! A distribution-spec client for one registry host: manifests and blobs, with the
//! Bearer token flow (anonymous or with credentials) and Basic auth, answered once per
//! scope and reused.

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::auth::{parse_challenge, Challenge, Credentials};

/// Every manifest type a pull accepts.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The error codes of the distribution spec (and `TOOMANYREQUESTS`, which Docker Hub
/// sends), as a registry's error document names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// A code outside the spec, as the registry spelled it.
    Unknown(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> ErrorCode {
        use ErrorCode::*;
        match code.to_ascii_uppercase().as_str() {
            "BLOB_UNKNOWN" => BlobUnknown,
            "BLOB_UPLOAD_INVALID" => BlobUploadInvalid,
            "BLOB_UPLOAD_UNKNOWN" => BlobUploadUnknown,
            "DIGEST_INVALID" => DigestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => ManifestBlobUnknown,
            "MANIFEST_INVALID" => ManifestInvalid,
            "MANIFEST_UNKNOWN" => ManifestUnknown,
            "NAME_INVALID" => NameInvalid,
            "NAME_UNKNOWN" => NameUnknown,
            "SIZE_INVALID" => SizeInvalid,
            "UNAUTHORIZED" => Unauthorized,
            "DENIED" => Denied,
            "UNSUPPORTED" => Unsupported,
            "TOOMANYREQUESTS" => TooManyRequests,
            _ => Unknown(code.to_string()),
        }
    }
}

/// Why a registry request failed. Callers decide on the variant and the code, never on
/// the words.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry answered with an error: its first error document (code and
    /// message, shown as `manifest unknown: …`), or only a status.
    #[error("{message}")]
    Registry {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// Authentication was asked for and could not be given (no credentials for Basic, a
    /// token service that failed or gave no token, a scheme berth does not speak).
    #[error("{0}")]
    Auth(String),
    /// No answer: the connection, TLS, or a body that broke off.
    #[error("{host}: {message}")]
    Transport { host: String, message: String },
    /// An answer that breaks the protocol (no upload `Location`, JSON that does not
    /// parse), or a registry without an optional API (search).
    #[error("{0}")]
    Protocol(String),
    /// The client could not be set up (a CA file that does not parse).
    #[error("{0}")]
    Setup(String),
}

impl ClientError {
    /// The registry has no such manifest, blob or repository.
    pub fn is_not_found(&self) -> bool {
        match self {
            ClientError::Registry { code: Some(c), .. } => matches!(
                c,
                ErrorCode::ManifestUnknown | ErrorCode::NameUnknown | ErrorCode::BlobUnknown
            ),
            ClientError::Registry { status, .. } => *status == 404,
            _ => false,
        }
    }

    /// The registry refused the credentials, or their rights.
    pub fn is_denied(&self) -> bool {
        match self {
            ClientError::Auth(_) => true,
            ClientError::Registry { code: Some(c), .. } => {
                matches!(c, ErrorCode::Unauthorized | ErrorCode::Denied)
            }
            ClientError::Registry { status, .. } => matches!(*status, 401 | 403),
            _ => false,
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

const AUTH_REQUIRED: &str = "unauthorized: authentication required";

pub struct Client {
    http: reqwest::Client,
    /// The registry as references name it (`docker.io`, `localhost:5000`).
    pub host: String,
    /// `http(s)://endpoint`.
    base: String,
    creds: Option<Credentials>,
    /// Bearer tokens by scope; a Basic answer is kept under "basic".
    tokens: Mutex<HashMap<String, String>>,
}

/// Hosts spoken to over plain HTTP: loopback, and the ones configured as insecure.
pub fn plain_http(host: &str, insecure: &[String]) -> bool {
    let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || insecure.iter().any(|i| i == host || i == name)
}

/// Where per-registry CA certificates live: `$BERTH_CERTS_DIR` or `/etc/berth/certs.d`.
pub fn certs_dir() -> std::path::PathBuf {
    std::env::var_os("BERTH_CERTS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| "/etc/berth/certs.d".into())
}

impl Client {
    /// A client for `host`, with `creds` if given. TLS trusts the system roots and
    /// `/etc/berth/certs.d/HOST/ca.crt`.
    pub fn new(host: &str, creds: Option<Credentials>, insecure: &[String]) -> Result<Client> {
        let endpoint = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        // A CA configured for the host means it speaks TLS, loopback or not.
        let has_ca = certs_dir().join(host).join("ca.crt").exists();
        let scheme = if plain_http(host, insecure) && !has_ca {
            "http"
        } else {
            "https"
        };
        let mut b =
            reqwest::Client::builder().user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
        let ca = certs_dir().join(host).join("ca.crt");
        if let Ok(pem) = std::fs::read(&ca) {
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(Client {
            http: b.build().map_err(|e| ClientError::Setup(e.to_string()))?,
            host: host.to_string(),
            base: format!("{scheme}://{endpoint}"),
            creds,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn transport(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Transport {
            host: self.host.clone(),
            message: berth_image::error_chain(e),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn authorize(&self, rb: RequestBuilder, scope: &str) -> RequestBuilder {
        let tokens = self.tokens.lock().expect("not poisoned");
        if let Some(t) = tokens.get(scope) {
            rb.header(AUTHORIZATION, format!("Bearer {t}"))
        } else if tokens.contains_key("basic") {
            let c = self.creds.as_ref().expect("basic only with credentials");
            rb.basic_auth(&c.username, Some(&c.password))
        } else {
            rb
        }
    }

    /// Answers a 401: fetches a token for the challenge's scope (or ours), or notes Basic.
    async fn answer(&self, challenge: &str, scope: &str) -> Result<()> {
        match parse_challenge(challenge) {
            Some(Challenge::Basic) => {
                if self.creds.is_none() {
                    return Err(ClientError::Auth(AUTH_REQUIRED.into()));
                }
                self.tokens
                    .lock()
                    .expect("not poisoned")
                    .insert("basic".into(), String::new());
                Ok(())
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut q: Vec<(&str, &str)> = Vec::new();
                if let Some(s) = &service {
                    q.push(("service", s));
                }
                if !scope.is_empty() {
                    q.push(("scope", scope));
                }
                let mut rb = self.http.get(&realm).query(&q);
                if let Some(c) = &self.creds {
                    rb = rb.basic_auth(&c.username, Some(&c.password));
                }
                let resp = rb
                    .send()
                    .await
                    .map_err(|e| ClientError::Auth(format!("token service {realm}: {e}")))?;
                if !resp.status().is_success() {
                    return Err(ClientError::Auth(format!(
                        "token service {realm}: {}",
                        resp.status()
                    )));
                }
                let body = resp.bytes().await.map_err(|e| self.transport(&e))?;
                let v: serde_json::Value = serde_json::from_slice(&body).map_err(protocol)?;
                let token = v["token"]
                    .as_str()
                    .or_else(|| v["access_token"].as_str())
                    .ok_or_else(|| ClientError::Auth(format!("token service {realm}: no token")))?;
                self.tokens
                    .lock()
                    .expect("not poisoned")
                    .insert(scope.to_string(), token.to_string());
                Ok(())
            }
            None => Err(ClientError::Auth(format!(
                "unsupported authentication: {challenge}"
            ))),
        }
    }

    /// Sends a request made by `make`, authenticating for `scope` when challenged (the
    /// request is made again, so bodies must be cheap to remake).
    async fn send(
        &self,
        scope: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        let resp = self
            .authorize(make(&self.http), scope)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.answer(&challenge, scope).await?;
        let resp = self
            .authorize(make(&self.http), scope)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Auth(AUTH_REQUIRED.into()));
        }
        Ok(resp)
    }

    /// `GET /v2/`: checks the registry answers and the credentials are accepted.
    pub async fn ping(&self) -> Result<()> {
        let resp = self.send("", |c| c.get(self.url("/v2/"))).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(api_error(resp).await)
        }
    }

    fn scope(repo: &str, push: bool) -> String {
        format!(
            "repository:{repo}:{}",
            if push { "pull,push" } else { "pull" }
        )
    }

    /// A manifest by tag or digest: bytes, media type and the digest the registry gives.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Option<String>)> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&Self::scope(repo, false), |c| {
                c.get(&url).header(ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(api_error(resp).await);
        }
        let h = |k| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let media_type = h(CONTENT_TYPE.as_str()).unwrap_or_default();
        let digest = h("docker-content-digest");
        let bytes = resp.bytes().await.map_err(|e| self.transport(&e))?.to_vec();
        Ok((bytes, media_type, digest))
    }

    /// Docker's search API (`/v1/search`): the registry's answer as JSON. Registries
    /// without it (the distribution registry) answer 404.
    pub async fn search(&self, term: &str, limit: usize) -> Result<serde_json::Value> {
        let url = self.url("/v1/search");
        let n = limit.to_string();
        let resp = self
            .send("", |c| c.get(&url).query(&[("q", term), ("n", n.as_str())]))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::Protocol(format!(
                "{}: this registry does not support search",
                self.host
            )));
        }
        if !resp.status().is_success() {
            return Err(api_error(resp).await);
        }
        let body = resp.bytes().await.map_err(|e| self.transport(&e))?;
        serde_json::from_slice(&body).map_err(protocol)
    }

    /// Every tag of `repo`, following the registry's `Link` pages.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut next = Some(self.url(&format!("/v2/{repo}/tags/list")));
        while let Some(url) = next.take() {
            let resp = self
                .send(&Self::scope(repo, false), |c| c.get(&url))
                .await?;
            if !resp.status().is_success() {
                return Err(api_error(resp).await);
            }
            next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split_once('<').and_then(|(_, r)| r.split_once('>')))
                .map(|(u, _)| self.url(u));
            let body = resp.bytes().await.map_err(|e| self.transport(&e))?;
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(protocol)?;
            out.extend(
                v["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
        }
        Ok(out)
    }

    /// A blob's response, to be streamed by the caller. With `offset` > 0 it asks for
    /// the bytes from there on (resuming a download); the caller checks `resumed_at`
    /// because a registry may send the whole blob instead. A range the registry cannot
    /// satisfy (416) is asked again without one.
    pub async fn blob(&self, repo: &str, digest: &str, offset: u64) -> Result<Response> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let scope = Self::scope(repo, false);
        let mut resp = self
            .send(&scope, |c| {
                let rb = c.get(&url);
                if offset > 0 {
                    rb.header(RANGE, format!("bytes={offset}-"))
                } else {
                    rb
                }
            })
            .await?;
        if offset > 0 && resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            resp = self.send(&scope, |c| c.get(&url)).await?;
        }
        if !resp.status().is_success() {
            return Err(api_error(resp).await);
        }
        Ok(resp)
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send(&Self::scope(repo, true), |c| c.head(&url))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(api_error(resp).await),
        }
    }

    /// Asks the registry to link a blob it has in `from` into `repo`. Returns false
    /// when it started an upload instead (which is cancelled).
    pub async fn mount(&self, repo: &str, from: &str, digest: &str) -> Result<bool> {
        let url = self.url(&format!(
            "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
        ));
        let scope = format!("{} repository:{from}:pull", Self::scope(repo, true));
        let resp = self
            .send(&scope, |c| c.post(&url).header(CONTENT_LENGTH, 0))
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Some(l) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                    let l = self.url(l);
                    let _ = self.send(&Self::scope(repo, true), |c| c.delete(&l)).await;
                }
                Ok(false)
            }
            _ => Err(api_error(resp).await),
        }
    }

    /// Uploads `body` (`size` bytes whose digest is `digest`): POST a session, then one
    /// PUT with the content.
    pub async fn upload(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        body: impl Fn() -> reqwest::Body,
    ) -> Result<()> {
        let scope = Self::scope(repo, true);
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(&scope, |c| c.post(&url).header(CONTENT_LENGTH, 0))
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(api_error(resp).await);
        }
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| protocol("upload: no Location"))?;
        let mut put = self.url(loc);
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str(&format!("digest={digest}"));
        let resp = self
            .send(&scope, |c| {
                c.request(Method::PUT, &put)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(body())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(api_error(resp).await);
        }
        Ok(())
    }

    /// Puts a manifest under `reference`; returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<String>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&Self::scope(repo, true), |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(api_error(resp).await);
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from))
    }
}

/// A registry's error response: its first error document, shown as one line
/// (`manifest unknown: …`), or its status.
async fn api_error(resp: Response) -> ClientError {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    registry_error(status, &body)
}

fn registry_error(status: StatusCode, body: &[u8]) -> ClientError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let first = &v["errors"][0];
    let code = first["code"].as_str().filter(|c| !c.is_empty());
    let message = match first["message"].as_str() {
        Some(m) if !m.is_empty() => {
            let words = code
                .unwrap_or_default()
                .to_ascii_lowercase()
                .replace('_', " ");
            if words.is_empty() || m.contains(&words) {
                m.to_string()
            } else {
                format!("{words}: {m}")
            }
        }
        _ if status == StatusCode::FORBIDDEN => {
            "denied: requested access to the resource is denied".into()
        }
        _ => format!("unexpected status from the registry: {status}"),
    };
    ClientError::Registry {
        status: status.as_u16(),
        code: code.map(ErrorCode::parse),
        message,
    }
}

/// Whether `resp` (to a `blob` request at `offset`) carries the blob from `offset` on,
/// rather than all of it.
pub fn resumed_at(resp: &Response, offset: u64) -> bool {
    resp.status() == StatusCode::PARTIAL_CONTENT
        && resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|start| start.parse::<u64>().ok())
            == Some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure_hosts_use_plain_http() {
        assert!(plain_http("localhost:5000", &[]));
        assert!(plain_http("127.0.0.1:5000", &[]));
        assert!(plain_http("127.1.2.3", &[]));
        assert!(plain_http("[::1]:5000", &[]));
        assert!(!plain_http("registry.example:5000", &[]));
        assert!(plain_http(
            "registry.example:5000",
            &["registry.example:5000".into()]
        ));
        assert!(!plain_http("docker.io", &[]));
    }

    #[test]
    fn error_documents_become_typed_codes_and_one_line() {
        let e = registry_error(
            StatusCode::NOT_FOUND,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert!(e.is_not_found() && !e.is_denied());
        assert_eq!(e.to_string(), "manifest unknown");
        let e = registry_error(
            StatusCode::NOT_FOUND,
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
        );
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "name unknown: repository name not known to registry"
        );
        let e = registry_error(StatusCode::FORBIDDEN, b"");
        assert!(e.is_denied() && !e.is_not_found());
        assert_eq!(
            e.to_string(),
            "denied: requested access to the resource is denied"
        );
        let e = registry_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert!(!e.is_not_found() && !e.is_denied());
        assert_eq!(
            e.to_string(),
            "unexpected status from the registry: 502 Bad Gateway"
        );
        let e = registry_error(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        );
        assert!(matches!(
            e,
            ClientError::Registry {
                code: Some(ErrorCode::TooManyRequests),
                ..
            }
        ));
    }

    #[test]
    fn a_message_that_says_not_found_is_not_a_missing_manifest() {
        // What used to be matched by its words: a transport failure naming a host
        // that was "not found" is no answer from the registry at all.
        let e = ClientError::Transport {
            host: "r.example".into(),
            message: "dns error: host not found".into(),
        };
        assert!(!e.is_not_found());
    }
}
