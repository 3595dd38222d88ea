//! Compose files: what `berth compose` reads.
//!
//! Loading follows Docker Compose v2: each file is parsed as YAML, its merge keys
//! (`<<`) applied, its values (never its keys) interpolated from the environment and
//! the project's `.env`, then checked. No crate models the compose specification
//! well enough to lean on (see docs/architecture.md), so the steps run on a generic
//! YAML tree here.

pub mod dotenv;
pub mod interpolate;
pub mod load;
pub mod merge;
pub mod normalize;
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
