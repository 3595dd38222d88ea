//! The host's berth settings: `/etc/berth/berth.toml` (or the file `BERTH_CONFIG`
//! names). Missing is fine: every setting has a default.
//!
//! ```toml
//! [network]
//! # The default `bridge` network's subnet (Docker's --bip); applied when the network
//! # is made, or remade once no container uses it.
//! default_subnet = "10.88.0.0/24"
//!
//! # Registries and their mirrors, as containers-registries.conf(5) writes them (the
//! # tables podman and CRI-O users know): an image under `prefix` is pulled from the
//! # mirrors in order, then from `location`.
//! [[registry]]
//! prefix = "gcr.io"
//! location = "gcr.io"
//! [[registry.mirror]]
//! location = "127.0.0.1:5000"
//! insecure = true
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{EngineError, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub registry: Vec<RegistryConfig>,
}

/// One `[[registry]]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The names this table is about (`host[/path]`); `location` when not given.
    pub prefix: Option<String>,
    /// Where those names are pulled from (`host[/path]`).
    pub location: String,
    /// Plain HTTP, or HTTPS without verifying the certificate.
    #[serde(default)]
    pub insecure: bool,
    /// Tried first, in order.
    #[serde(default)]
    pub mirror: Vec<MirrorConfig>,
}

/// One `[[registry.mirror]]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
}

/// A place to pull an image from: a registry host, the repository there, and whether
/// it is insecure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSource {
    pub host: String,
    pub repository: String,
    pub insecure: bool,
}

impl Config {
    /// Where to pull `host/repository` from, in order: the mirrors of the registry
    /// table whose prefix matches it best (longest; at a `/` boundary), then its
    /// location; with no table, the name's own registry.
    pub fn pull_sources(&self, host: &str, repository: &str) -> Vec<PullSource> {
        let name = format!("{host}/{repository}");
        let matches = |prefix: &str| {
            name == prefix
                || name
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        let table = self
            .registry
            .iter()
            .filter(|t| matches(t.prefix.as_deref().unwrap_or(&t.location)))
            .max_by_key(|t| t.prefix.as_deref().unwrap_or(&t.location).len());
        let Some(t) = table else {
            return vec![PullSource {
                host: host.into(),
                repository: repository.into(),
                insecure: false,
            }];
        };
        let prefix = t.prefix.as_deref().unwrap_or(&t.location);
        let rest = &name[prefix.len()..];
        let at = |location: &str, insecure: bool| {
            let full = format!("{}{rest}", location.trim_end_matches('/'));
            let (host, repository) = full.split_once('/').unwrap_or((&full, ""));
            PullSource {
                host: host.into(),
                repository: repository.into(),
                insecure,
            }
        };
        t.mirror
            .iter()
            .map(|m| at(&m.location, m.insecure))
            .chain(std::iter::once(at(&t.location, t.insecure)))
            .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub default_subnet: Option<String>,
}

/// Where the settings are read from.
pub fn path() -> PathBuf {
    std::env::var_os("BERTH_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/berth/berth.toml"))
}

/// The settings; a file that does not parse is an error naming it.
pub fn load() -> Result<Config> {
    let p = path();
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(EngineError::Invalid(format!("{}: {e}", p.display()))),
    };
    parse(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        EngineError::Invalid(format!("{}: line {line}: {}", p.display(), e.message()))
    })
}

fn parse(text: &str) -> std::result::Result<Config, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_unknown_keys_are_refused() {
        let c = parse("[network]\ndefault_subnet = \"10.88.0.0/24\"\n").unwrap();
        assert_eq!(c.network.default_subnet.as_deref(), Some("10.88.0.0/24"));
        assert!(parse("").unwrap().network.default_subnet.is_none());
        assert!(parse("[network]\nbip = \"10.88.0.1/24\"\n").is_err());
    }

    #[test]
    fn mirrors_come_first_for_the_longest_matching_prefix() {
        let c = parse(concat!(
            "[[registry]]\nprefix = \"gcr.io\"\nlocation = \"gcr.io\"\n",
            "[[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n",
            "[[registry]]\nprefix = \"gcr.io/k8s-staging-cri-tools\"\n",
            "location = \"mirror.example:5000/cri-tools\"\n",
        ))
        .unwrap();
        let src = |h: &str, r: &str, insecure: bool| PullSource {
            host: h.into(),
            repository: r.into(),
            insecure,
        };
        assert_eq!(
            c.pull_sources("gcr.io", "pause"),
            [
                src("127.0.0.1:5000", "pause", true),
                src("gcr.io", "pause", false)
            ]
        );
        assert_eq!(
            c.pull_sources("gcr.io", "k8s-staging-cri-tools/test-image"),
            [src("mirror.example:5000", "cri-tools/test-image", false)]
        );
        // A prefix matches whole components only; other registries are their own.
        assert_eq!(c.pull_sources("gcr.iox", "a"), [src("gcr.iox", "a", false)]);
        assert_eq!(
            c.pull_sources("docker.io", "library/busybox"),
            [src("docker.io", "library/busybox", false)]
        );
        assert!(parse("[[registry]]\nlocation = \"x\"\nblocked = true\n").is_err());
    }
}
