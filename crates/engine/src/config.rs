//! The host's berth settings: `/etc/berth/berth.toml` (or the file `BERTH_CONFIG`
//! names). Missing is fine: every setting has a default.
//!
//! ```toml
//! [network]
//! # The default `bridge` network's subnet (Docker's --bip); applied when the network
//! # is made, or remade once no container uses it.
//! default_subnet = "10.88.0.0/24"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{EngineError, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub network: NetworkConfig,
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
}
