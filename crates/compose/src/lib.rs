//! Compose files: what `berth compose` reads.
//!
//! Loading follows Docker Compose v2: each file is parsed as YAML, its merge keys
//! (`<<`) applied, its values (never its keys) interpolated from the environment and
//! the project's `.env`, then checked. No crate models the compose specification
//! well enough to lean on (see docs/architecture.md), so the steps run on a generic
//! YAML tree here.

#![forbid(unsafe_code)]

pub mod container;
pub mod dotenv;
pub mod interpolate;
pub mod load;
pub mod merge;
pub mod normalize;
pub mod plan;
pub mod project;
pub mod service;

/// What went wrong, naming the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ComposeError>;

/// A scalar as text: strings as they are, numbers and booleans as YAML writes them.
pub fn scalar_text(v: &serde_norway::Value) -> Option<String> {
    match v {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The string keys of a mapping, in order (none for anything else).
pub fn mapping_keys(v: Option<&serde_norway::Value>) -> Vec<String> {
    v.and_then(serde_norway::Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(serde_norway::Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The keys of a mapping that are not in `known` (nor `x-` extensions), as an `at.KEY:
/// not implemented yet` error: what berth cannot honour is refused by name, never dropped.
pub fn refuse_unknown(
    v: &serde_norway::Value,
    known: &[&str],
    at: &str,
) -> std::result::Result<(), String> {
    for k in v
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(serde_norway::Value::as_str)
    {
        if !known.contains(&k) && !k.starts_with("x-") {
            return Err(format!("{at}.{k}: not implemented yet in berth compose"));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::load::{load, Options, Project};

    /// The project of `yaml`, named `shop`, from a directory that is gone again.
    pub fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        let p = load(&Options {
            project_name: Some("shop".into()),
            working_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        drop(dir);
        p
    }
}
