//! Engine errors. Every error has a class, which the CLI maps to an exit code and the
//! API service to an HTTP status.

use std::path::PathBuf;

/// What kind of failure an error is, independent of where it happened. Each front end
/// maps a class to its own code in one place: the CLI to an exit code, the API service
/// to an HTTP status (404, 409, 400, 503, 501, 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    NotFound,
    Conflict,
    InvalidArgument,
    Unavailable,
    NotImplemented,
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
    /// Anything else asked for that is not there (a volume plugin), in its own words.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("container {id} is paused, unpause the container before exec")]
    Paused { id: String },
    #[error("{0}")]
    Unavailable(String),
    /// Something berth does not do yet (or, like swarm, at all).
    #[error("{0}")]
    NotImplemented(String),
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
        use berth_image::store::StoreError;
        use EngineError::*;
        match self {
            NoSuchImage(_) | NoSuchContainer(_) | NoSuchVolume(_) | NoSuchNetwork(_)
            | NotFound(_) => ErrorClass::NotFound,
            Conflict(_) | NotRunning { .. } | Paused { .. } => ErrorClass::Conflict,
            Invalid(_) | Reference(_) | Archive(_) | Import(_) | Layer(_) => {
                ErrorClass::InvalidArgument
            }
            Store(StoreError::Mismatch { .. }) => ErrorClass::InvalidArgument,
            // Docker's daemon: a command that is missing or cannot run is the request's
            // fault (400); any other start failure is its own (500).
            Start {
                code: 126 | 127, ..
            } => ErrorClass::InvalidArgument,
            Unavailable(_) => ErrorClass::Unavailable,
            NotImplemented(_) => ErrorClass::NotImplemented,
            Start { .. }
            | Db(_)
            | Store(_)
            | Layers(_)
            | Runtime(_)
            | Io { .. }
            | Sys { .. }
            | Json { .. } => ErrorClass::Internal,
        }
    }

    /// The exit code Docker's CLI gives a failed start (126 cannot execute, 127 not
    /// found, 125 anything else), for a start error.
    pub fn start_code(&self) -> Option<u8> {
        match self {
            EngineError::Start { code, .. } => Some(u8::try_from(*code).unwrap_or(125)),
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_missing_thing_is_not_found() {
        for e in [
            EngineError::NoSuchImage("a".into()),
            EngineError::NoSuchContainer("a".into()),
            EngineError::NoSuchVolume("a".into()),
            EngineError::NoSuchNetwork("a".into()),
        ] {
            assert_eq!(e.class(), ErrorClass::NotFound, "{e}");
        }
    }

    #[test]
    fn a_container_that_is_not_running_is_a_conflict() {
        let e = EngineError::NotRunning { id: "abc".into() };
        assert_eq!(e.class(), ErrorClass::Conflict);
        assert_eq!(e.to_string(), "container abc is not running");
    }

    #[test]
    fn start_failures_keep_their_exit_code_and_class() {
        let start = |code| EngineError::Start {
            code,
            message: "x".into(),
        };
        assert_eq!(start(127).class(), ErrorClass::InvalidArgument);
        assert_eq!(start(126).start_code(), Some(126));
        assert_eq!(start(125).class(), ErrorClass::Internal);
        assert_eq!(EngineError::Invalid("x".into()).start_code(), None);
    }
}
