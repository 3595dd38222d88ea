//! The berth engine: the library every front end (the CLI, later the API service) calls.
//!
//! It owns the state database, the content and layer stores, containers (their OCI
//! bundles, overlay roots and per-container monitor), volumes and logs. Main type:
//! [`Engine`], opened on a root and a run root; its methods are grouped one file per
//! resource (`images.rs`, `containers.rs`, `volumes.rs`, …).
//!
//! The engine never prints to a terminal and never runs an OCI runtime in a multi-threaded
//! process: containers are created by `berth-monitor`, a small single-threaded process per
//! container that survives the CLI.

#![allow(clippy::too_many_arguments)]

use std::path::{Path, PathBuf};

use berth_image::{ContentStore, LayerStore};
use rusqlite::Connection;

pub mod attach;
pub mod build;
pub mod changes;
pub mod config;
pub mod containers;
pub mod db;
pub mod devices;
pub mod distribution;
pub mod error;
pub mod events;
pub mod exec;
pub mod hello;
pub mod images;
pub mod logs;
pub mod model;
pub mod monitor;
pub mod mounts;
pub mod names;
pub mod networks;
pub mod pods;
pub mod prune;
pub mod spare;
pub mod spec;
pub mod specs;
pub mod state;
pub mod stats;
pub mod sys;
pub mod views;
pub mod volumes;

pub use error::{EngineError, ErrorClass, Result};

/// Where an engine keeps its data.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Persistent data (`/var/lib/berth`).
    pub root: PathBuf,
    /// Runtime state, sockets, locks (`/run/berth`).
    pub run_root: PathBuf,
    /// The `berth-monitor` binary; default: beside the current executable.
    pub monitor: Option<PathBuf>,
}

impl EngineOptions {
    pub fn new(root: impl Into<PathBuf>, run_root: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            root: root.into(),
            run_root: run_root.into(),
            monitor: None,
        }
    }
}

/// An open engine: one per process, on one root.
pub struct Engine {
    pub opts: EngineOptions,
    pub(crate) db: Connection,
    pub store: ContentStore,
    pub layers: LayerStore,
    /// A warmer started ahead of the next container start (see [`Engine::warm_start`]).
    warmer: std::cell::Cell<Option<sys::AttachWarmer>>,
    /// A monitor started ahead of the next container start (see [`spare`]).
    spare: std::cell::Cell<Option<spare::Spare>>,
}

impl Engine {
    /// Opens (creating) the stores and the database under `opts.root`.
    pub fn open(mut opts: EngineOptions) -> Result<Engine> {
        // Absolute, so that no path of the engine depends on the working directory
        // (which mounting a long overlay stack changes for a moment).
        for p in [&mut opts.root, &mut opts.run_root] {
            if let Ok(abs) = std::path::absolute(&*p) {
                *p = abs;
            }
        }
        for d in [
            opts.root.clone(),
            opts.root.join("containers"),
            opts.root.join("volumes"),
            opts.root.join("tmp"),
            opts.run_root.clone(),
        ] {
            std::fs::create_dir_all(&d).map_err(error::io_err(&d))?;
        }
        let db = db::open(&opts.root.join("berth.db"))?;
        let store = ContentStore::open(&opts.root.join("blobs"))?;
        let layers = LayerStore::open(&opts.root.join("layers"))?;
        Ok(Engine {
            opts,
            db,
            store,
            layers,
            warmer: std::cell::Cell::new(None),
            spare: std::cell::Cell::new(None),
        })
    }

    pub fn root(&self) -> &Path {
        &self.opts.root
    }

    pub fn run_root(&self) -> &Path {
        &self.opts.run_root
    }

    /// A scratch dir on the same file system as the stores.
    pub fn tmp_dir(&self) -> PathBuf {
        self.opts.root.join("tmp")
    }

    /// The monitor binary to spawn.
    pub fn monitor_path(&self) -> PathBuf {
        self.opts.monitor_path()
    }
}

impl EngineOptions {
    /// `berth-pod-init`, the holder of a pod's PID namespace: `BERTH_POD_INIT`, else
    /// beside the berth binary.
    pub fn pod_init_path(&self) -> PathBuf {
        if let Some(p) = std::env::var_os("BERTH_POD_INIT") {
            return PathBuf::from(p);
        }
        berth_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("berth-pod-init")))
            .unwrap_or_else(|| PathBuf::from("berth-pod-init"))
    }

    /// The `berth-monitor` to spawn: the configured one, `BERTH_MONITOR`, or the one
    /// beside the current executable.
    pub fn monitor_path(&self) -> PathBuf {
        if let Some(p) = &self.monitor {
            return p.clone();
        }
        if let Some(p) = std::env::var_os("BERTH_MONITOR") {
            return PathBuf::from(p);
        }
        berth_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("berth-monitor")))
            .unwrap_or_else(|| PathBuf::from("berth-monitor"))
    }
}

/// Now, as Docker writes times (Go's RFC 3339 with nanoseconds, trailing zeros trimmed).
pub fn now() -> String {
    berth_image::config::now_rfc3339()
}

/// Now with a fixed-width fraction, for log lines: they are compared as strings.
pub fn now_fixed() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// This program's path, for the processes berth starts of itself (monitors, name
/// servers, `exec` and `build` children of the API service). When the binary was
/// replaced while this process ran (an upgrade), Linux names the old one
/// "PATH (deleted)": the new one at PATH is the one to run.
pub fn berth_exe() -> std::io::Result<PathBuf> {
    let p = std::env::current_exe()?;
    match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => Ok(PathBuf::from(s)),
        None => Ok(p),
    }
}
