//! `build`: what a front end asks to be built, and the few rules about it that need no
//! Dockerfile (the Dockerfile's own are the builder's).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{EngineError, Result};

/// What `build` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildSpec {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile; `context/Dockerfile` when None.
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text, when it came from stdin.
    pub dockerfile_text: Option<String>,
    /// Full references to tag the result with (see [`tag`]).
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Pull `FROM` images even when they are here.
    pub pull: bool,
    /// `--secret`s by id, for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--network none` keeps every RUN step off the network (a step may still ask for
    /// none itself); default: the host's network, as `docker build`.
    pub network_none: bool,
}

/// A tag as the build stores it: the full reference of `t`.
pub fn tag(t: &str) -> Result<String> {
    berth_image::Reference::parse(t)
        .map(|r| r.to_string())
        .map_err(|e| EngineError::Invalid(format!("invalid tag {t:?}: {e}")))
}

/// The network of RUN steps as `--network` names it: whether it is `none`.
pub fn network_none(mode: &str) -> Result<bool> {
    match mode {
        "" | "default" | "host" => Ok(false),
        "none" => Ok(true),
        other => Err(EngineError::NotImplemented(format!(
            "build --network {other} is not implemented yet (default, host and none are)"
        ))),
    }
}

/// `--platform`: only the host's own is built for yet.
pub fn platform(p: &str) -> Result<()> {
    let host = berth_image::config::host_platform();
    if p != format!("{}/{}", host.os, host.architecture) {
        return Err(EngineError::NotImplemented(format!(
            "building for platform {p} is not implemented yet"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_full_references_and_networks_are_known() {
        assert_eq!(tag("web:1").unwrap(), "docker.io/library/web:1");
        assert!(tag("Web:1")
            .unwrap_err()
            .to_string()
            .starts_with("invalid tag"));
        assert!(network_none("none").unwrap());
        assert!(!network_none("host").unwrap());
        assert!(matches!(
            network_none("bridge"),
            Err(EngineError::NotImplemented(_))
        ));
        assert!(matches!(
            platform("plan9/mips"),
            Err(EngineError::NotImplemented(_))
        ));
    }
}
