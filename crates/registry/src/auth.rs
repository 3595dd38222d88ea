//! Registry credentials and challenges: Docker's `config.json` (`auths`, `credsStore`,
//! `credHelpers`) and the `WWW-Authenticate` header (Bearer token service or Basic).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        params.insert(k.trim().to_ascii_lowercase(), v.to_string());
        s = next.trim_start_matches([',', ' ']);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

/// Where Docker keeps its client configuration: `$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`.
pub fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker/config.json"),
    }
}

fn read_config() -> serde_json::Value {
    std::fs::read(config_path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

/// The keys Docker uses for a registry host in `auths` (Docker Hub's is a URL).
fn auth_keys(host: &str) -> Vec<String> {
    if host == "docker.io" || host == "registry-1.docker.io" || host == "index.docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ]
    } else {
        vec![
            host.to_string(),
            format!("https://{host}"),
            format!("http://{host}"),
        ]
    }
}

/// Credentials for `host`: its credential helper, the global store, or `auths`.
pub fn lookup(host: &str) -> Option<Credentials> {
    let cfg = read_config();
    let keys = auth_keys(host);
    let helper = keys
        .iter()
        .find_map(|k| cfg["credHelpers"][k].as_str())
        .or_else(|| cfg["credsStore"].as_str());
    if let Some(helper) = helper {
        if let Some(c) = from_helper(helper, &keys[0]) {
            return Some(c);
        }
    }
    for k in &keys {
        let entry = &cfg["auths"][k];
        if let Some(a) = entry["auth"].as_str() {
            let decoded = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
            let s = String::from_utf8(decoded).ok()?;
            let (u, p) = s.split_once(':')?;
            return Some(Credentials {
                username: u.into(),
                password: p.into(),
            });
        }
        if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Some(Credentials {
                username: u.into(),
                password: p.into(),
            });
        }
    }
    None
}

/// `docker-credential-HELPER get` with the server on stdin.
fn from_helper(helper: &str, server: &str) -> Option<Credentials> {
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Credentials {
        username: v["Username"].as_str()?.into(),
        password: v["Secret"].as_str()?.into(),
    })
}

/// Stores credentials for `host` in `auths` (or its helper, if one is configured).
pub fn store(host: &str, c: &Credentials) -> std::io::Result<()> {
    let mut cfg = read_config();
    let key = auth_keys(host).remove(0);
    let helper = cfg["credHelpers"][&key]
        .as_str()
        .or_else(|| cfg["credsStore"].as_str())
        .map(String::from);
    if let Some(helper) = helper {
        let mut child = Command::new(format!("docker-credential-{helper}"))
            .arg("store")
            .stdin(Stdio::piped())
            .spawn()?;
        let payload =
            serde_json::json!({"ServerURL": key, "Username": c.username, "Secret": c.password});
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(payload.to_string().as_bytes())?;
        if !child.wait()?.success() {
            return Err(std::io::Error::other(format!(
                "docker-credential-{helper} store failed"
            )));
        }
        return Ok(());
    }
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    if !cfg["auths"].is_object() {
        cfg["auths"] = serde_json::json!({});
    }
    cfg["auths"][&key] = serde_json::json!({ "auth": auth });
    write_config(&cfg)
}

/// Removes the credentials for `host`; false when there were none.
pub fn remove(host: &str) -> std::io::Result<bool> {
    let mut cfg = read_config();
    let mut removed = false;
    if let Some(auths) = cfg["auths"].as_object_mut() {
        for k in auth_keys(host) {
            removed |= auths.remove(&k).is_some();
        }
    }
    if removed {
        write_config(&cfg)?;
    }
    Ok(removed)
}

fn write_config(cfg: &serde_json::Value) -> std::io::Result<()> {
    let path = config_path();
    let dir = path.parent().expect("a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".config.json.{}", std::process::id()));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(cfg)?.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_docker_hub_sends_them() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
