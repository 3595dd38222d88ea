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
/// (usually a tmpfs; see [`HealthFile`]), not in `state.json` on the root's disk: a probe
/// a second in each of 200 containers would rewrite 200 files a second there. The last
/// ones go into `state.json` at exit.
pub fn health_path(run_root: &Path, id: &str) -> PathBuf {
    run_root.join("health").join(format!("{id}.json"))
}

/// The health a running container's monitor last recorded, if any. The monitor rewrites
/// the file in place (see [`HealthFile`]): a read that caught a write half done fails its
/// check and is made again.
pub fn read_health(run_root: &Path, id: &str) -> Option<Health> {
    let p = health_path(run_root, id);
    for _ in 0..20 {
        let bytes = std::fs::read(&p).ok()?;
        if let Some(h) = checked_health(&bytes) {
            return Some(h);
        }
        std::thread::yield_now();
    }
    None
}

/// The health in a [`HealthFile`]'s bytes, if they are whole: the JSON, a newline, the
/// hex FNV-1a hash of the JSON, then maybe spaces.
fn checked_health(bytes: &[u8]) -> Option<Health> {
    let text = bytes.trim_ascii_end();
    let nl = text.iter().rposition(|b| *b == b'\n')?;
    let (json, hash) = (&text[..nl], &text[nl + 1..]);
    if hash != format!("{:016x}", fnv1a(json)).as_bytes() {
        return None;
    }
    serde_json::from_slice(json).ok()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A running container's health results, which its monitor rewrites after every probe.
/// In place, with a check for readers, rather than a new file renamed over the old: on
/// a disk, the create and rename cost a hundred times the write.
pub struct HealthFile {
    path: PathBuf,
    file: std::fs::File,
    /// The longest content written: shorter content is padded to it with spaces.
    len: usize,
}

impl HealthFile {
    /// Creates (or empties) the health file of container `id`.
    pub fn create(run_root: &Path, id: &str) -> Result<HealthFile> {
        let p = health_path(run_root, id);
        let dir = p.parent().expect("a file in a dir");
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .map_err(io_err(&p))?;
        Ok(HealthFile {
            path: p,
            file,
            len: 0,
        })
    }

    /// Writes `health` over what was there.
    pub fn write(&mut self, health: &Health) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let mut bytes = serde_json::to_vec(health).expect("health serialises");
        let hash = format!("\n{:016x}", fnv1a(&bytes));
        bytes.extend_from_slice(hash.as_bytes());
        if bytes.len() < self.len {
            bytes.resize(self.len, b' ');
        }
        self.len = bytes.len();
        self.file
            .write_all_at(&bytes, 0)
            .map_err(io_err(&self.path))
    }
}

pub fn write(root: &Path, id: &str, st: &RunState) -> Result<()> {
    let p = path(root, id);
    let bytes = serde_json::to_vec(st).expect("state serialises");
    berth_image::fsutil::replace_file(&p, &bytes).map_err(io_err(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(status: &str, outputs: &[&str]) -> Health {
        Health {
            status: status.into(),
            failing_streak: 0,
            log: outputs
                .iter()
                .map(|o| HealthResult {
                    output: o.to_string(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_health_file_is_rewritten_in_place_and_read_only_when_whole() {
        let d = tempfile::tempdir().unwrap();
        let mut f = HealthFile::create(d.path(), "c1").unwrap();
        let long = health("starting", &["a long output, longer than the next one"]);
        f.write(&long).unwrap();
        assert_eq!(read_health(d.path(), "c1"), Some(long));
        // Shorter content over longer: padded, not followed by the old tail.
        let short = health("healthy", &["ok"]);
        f.write(&short).unwrap();
        assert_eq!(read_health(d.path(), "c1"), Some(short.clone()));
        let bytes = std::fs::read(health_path(d.path(), "c1")).unwrap();
        assert_eq!(checked_health(&bytes), Some(short.clone()));
        // What a read in the middle of a write could see: parts of two contents, which
        // may even parse as JSON, fail the check.
        let other = serde_json::to_vec(&health("healthy", &["no"])).unwrap();
        let mut torn = bytes.clone();
        torn[..other.len()].copy_from_slice(&other);
        assert!(serde_json::from_slice::<Health>(&torn[..other.len()]).is_ok());
        assert_eq!(checked_health(&torn), None);
        assert_eq!(checked_health(&bytes[..bytes.len() / 2]), None);
        assert_eq!(checked_health(b""), None);
        // Emptied when made again (a restart).
        HealthFile::create(d.path(), "c1").unwrap();
        assert_eq!(read_health(d.path(), "c1"), None);
    }
}
