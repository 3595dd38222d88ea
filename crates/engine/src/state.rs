//! A container's runtime state, owned by its monitor: `containers/<id>/state.json`,
//! replaced atomically on every change. The database holds what a container *is*; this
//! file holds what it is *doing*. Readers check that the recorded monitor is still alive,
//! so a container whose monitor died is never reported as running.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, EngineError, Result};
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Does a monitor own the container in this status?
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub status: Status,
    pub pid: i32,
    pub monitor_pid: i32,
    /// start time (clock ticks since boot) of the monitor, against pid reuse
    pub monitor_start: u64,
    pub started_at: String,
    pub finished_at: String,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub error: String,
    pub restart_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// starting, healthy or unhealthy
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn path(root: &Path, id: &str) -> PathBuf {
    root.join("containers").join(id).join("state.json")
}

/// Reads the state as recorded (no liveness check).
pub fn read_raw(root: &Path, id: &str) -> Result<RunState> {
    let p = path(root, id);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| EngineError::Json {
            what: p.display().to_string(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunState {
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            ..Default::default()
        }),
        Err(e) => Err(io_err(&p)(e)),
    }
}

/// Reads the state, reporting a container whose monitor is gone as dead.
pub fn read(root: &Path, id: &str) -> Result<RunState> {
    let mut st = read_raw(root, id)?;
    if st.status.is_active() && !sys::process_alive(st.monitor_pid, st.monitor_start) {
        st.status = Status::Dead;
        if st.error.is_empty() {
            st.error = "the container's monitor process died".into();
        }
    }
    Ok(st)
}

/// Where a running container's monitor keeps its health checks' results, on the run root
/// (tmpfs): a probe a second in each of 200 containers would otherwise create and rename
/// 200 files a second on the root's disk. The last ones go into `state.json` at exit.
pub fn health_path(run_root: &Path, id: &str) -> PathBuf {
    run_root.join("health").join(format!("{id}.json"))
}

/// The health a running container's monitor last recorded, if any.
pub fn read_health(run_root: &Path, id: &str) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(health_path(run_root, id)).ok()?).ok()
}

pub fn write_health(run_root: &Path, id: &str, health: &Health) -> Result<()> {
    let p = health_path(run_root, id);
    let bytes = serde_json::to_vec(health).expect("health serialises");
    let dir = p.parent().expect("a file in a dir");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    berth_image::fsutil::replace_file(&p, &bytes).map_err(io_err(&p))
}

pub fn write(root: &Path, id: &str, st: &RunState) -> Result<()> {
    let p = path(root, id);
    let bytes = serde_json::to_vec(st).expect("state serialises");
    berth_image::fsutil::replace_file(&p, &bytes).map_err(io_err(&p))
}
