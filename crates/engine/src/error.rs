//! Engine errors. Every error has a class, which the CLI maps to an exit code and the
//! API service to an HTTP status.

use std::path::PathBuf;

/// What kind of failure an error is, independent of where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    NotFound,
    Conflict,
    InvalidArgument,
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("{0}")]
    Unavailable(String),
    /// The container could not be started; `code` is Docker's exit code for it
    /// (125 engine error, 126 cannot execute, 127 not found).
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] berth_image::store::StoreError),
    #[error(transparent)]
    Layers(#[from] berth_image::layers::LayerStoreError),
    #[error(transparent)]
    Layer(#[from] berth_image::layer::LayerError),
    #[error(transparent)]
    Archive(#[from] berth_image::archive::ArchiveError),
    #[error(transparent)]
    Import(#[from] berth_image::import::ImportError),
    #[error(transparent)]
    Reference(#[from] berth_image::reference::ReferenceError),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::RuntimeError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl EngineError {
    pub fn class(&self) -> ErrorClass {
        use EngineError::*;
        match self {
            NoSuchImage(_) | NoSuchContainer(_) | NoSuchVolume(_) => ErrorClass::NotFound,
            Conflict(_) | NotRunning { .. } => ErrorClass::Conflict,
            Invalid(_) | Reference(_) | Archive(_) | Import(_) | Layer(_) => {
                ErrorClass::InvalidArgument
            }
            Store(berth_image::store::StoreError::Mismatch { .. }) => ErrorClass::InvalidArgument,
            Unavailable(_) => ErrorClass::Unavailable,
            _ => ErrorClass::Internal,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// `map_err` helper for io errors on a path.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.into();
    move |source| EngineError::Io { path, source }
}

/// `map_err` helper for syscall errors.
pub fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError::Sys { what, source }
}
