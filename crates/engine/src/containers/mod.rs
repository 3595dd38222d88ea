//! Containers: one file per verb (`create`, `start`, `stop`, `remove`, `update`,
//! `inspect`), and here what they share: finding a container, its state and lock.
//!
//! `create` records a container (database row, overlay dirs, /etc files, volumes);
//! `start` writes its OCI bundle and spawns its monitor, which does the rest.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::Reference;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::attach::{self, Hello};
use crate::error::{io_err, EngineError, Result};
use crate::images::ImageRow;
use crate::model::{ContainerRecord, HostConfig, MountSpec, ResolvedMount};
use crate::monitor::MonitorConfig;
use crate::specs::{ContainerSpec, UpdateSpec};
use crate::state::{self, RunState, Status};
use crate::{names, spec, sys, Engine};

mod create;
mod inspect;
mod remove;
mod start;
mod stop;
mod update;

pub(crate) use create::resolv_conf;
pub use inspect::{human_duration, status_text};
use start::{parse_ready, read_line};

/// A removed container's dir, moved aside under `containers/` until it is deleted.
const REMOVED_PREFIX: &str = ".removed-";

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The end of the conflict a create meets when its name was taken between its check
/// and its insert.
const NAME_RACE: &str = " is already in use.";

/// One line of `ps`.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    pub id: String,
    pub names: String,
    pub image: String,
    pub image_id: String,
    pub command: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub state: Status,
    /// Docker's words for it: `Up 3 minutes`, `Exited (0) 2 seconds ago`.
    pub status: String,
    /// Where its ports are published while it runs.
    pub ports: Vec<crate::model::PublishedPort>,
    pub labels: BTreeMap<String, String>,
    pub exit_code: i32,
}

impl ContainerSummary {
    /// The PORTS column: `0.0.0.0:8080->80/tcp, …`.
    pub fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// When it was created, as Go's RFC 3339 (what `inspect` shows).
    pub fn created_text(&self) -> String {
        berth_image::config::go_time(self.created)
    }
}

/// A spawned monitor: for `run`/`start -a`, the caller attaches before the container runs.
pub struct StartHandle {
    pub child: Option<Child>,
    ready: Option<BufReader<std::io::PipeReader>>,
    pub pid: i32,
    /// Held until the monitor has answered, so no second start races this one.
    lock: Option<ContainerLock>,
}

/// Children a long-running service started (monitors, exec helpers), waited for as they
/// end so none stays a zombie: [`Reaper::reap`] is called every second or so.
#[derive(Debug, Default)]
pub struct Reaper {
    children: std::sync::Mutex<Vec<Child>>,
}

impl Reaper {
    pub fn adopt(&self, child: Option<Child>) {
        if let Some(c) = child {
            self.children.lock().expect("reaper lock").push(c);
        }
    }

    /// Waits for the children that have ended.
    pub fn reap(&self) {
        self.children
            .lock()
            .expect("reaper lock")
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }
}

/// An exclusive lock on one container's life-cycle changes (start, remove), across berth
/// processes: `run-root/locks/<id>`, flock(2).
pub struct ContainerLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

impl StartHandle {
    /// Waits for the monitor's verdict on the start (after the caller attached, if it
    /// was asked to wait for that).
    pub fn finish(&mut self) -> Result<i32> {
        let Some(mut r) = self.ready.take() else {
            return Ok(self.pid);
        };
        let line = read_line(&mut r);
        self.lock = None;
        parse_ready(&line).inspect(|pid| self.pid = *pid)
    }

    /// Waits for the monitor process to end (it has cleaned up by then).
    pub fn wait_monitor(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        }
    }
}

impl Engine {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root().join("containers").join(id)
    }

    fn record_from_json(&self, json: &str) -> Result<ContainerRecord> {
        serde_json::from_str(json).map_err(|source| EngineError::Json {
            what: "container record".into(),
            source,
        })
    }

    /// Where a container's log is: json-file's and local's in its dir, k8s-file's at its
    /// `path` option; None for the `none` driver.
    pub fn log_path(&self, rec: &ContainerRecord) -> Option<PathBuf> {
        let lc = &rec.host_config.log_config;
        match lc.kind.as_str() {
            "none" => None,
            "k8s-file" => lc.config.get("path").map(PathBuf::from),
            _ => Some(self.container_dir(&rec.id).join("log.json")),
        }
    }

    /// Makes a running container's monitor open its log file anew (kubelet renamed it
    /// to rotate it); returns once the new file is there.
    pub fn reopen_container_log(&self, name: &str) -> Result<()> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Err(EngineError::NotRunning { id: rec.id });
        }
        let path = match (
            rec.host_config.log_config.kind.as_str(),
            self.log_path(&rec),
        ) {
            ("k8s-file", Some(p)) => p,
            (driver, _) => {
                return Err(EngineError::Invalid(format!(
                    "the {driver} log driver does not reopen its log: only k8s-file does"
                )))
            }
        };
        if !crate::sys::process_alive(st.monitor_pid, st.monitor_start) {
            return Err(EngineError::NotRunning { id: rec.id });
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(st.monitor_pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(crate::error::sys_err("signalling the monitor"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            if Instant::now() > deadline {
                return Err(EngineError::Unavailable(format!(
                    "the monitor of {} did not reopen its log {}",
                    rec.id,
                    path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Finds a container by full id, name (with or without `/`), or unique id prefix.
    pub fn find_container(&self, name: &str) -> Result<ContainerRecord> {
        let n = name.strip_prefix('/').unwrap_or(name);
        let json: Option<String> = self
            .db
            .query_row(
                "SELECT config FROM containers WHERE id = ?1 OR name = ?1",
                [n],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(j) = json {
            return self.record_from_json(&j);
        }
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut stmt = self
                .db
                .prepare_cached("SELECT config FROM containers WHERE id LIKE ?1 LIMIT 2")?;
            let rows = stmt
                .query_map([format!("{}%", n.to_lowercase())], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            match rows.len() {
                1 => return self.record_from_json(&rows[0]),
                0 => {}
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "multiple containers match the id prefix {n}"
                    )))
                }
            }
        }
        Err(EngineError::NoSuchContainer(name.to_string()))
    }

    /// All container records, newest first.
    pub fn container_records(&self) -> Result<Vec<ContainerRecord>> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT config FROM containers ORDER BY created DESC")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.iter().map(|j| self.record_from_json(j)).collect()
    }

    pub fn container_state(&self, id: &str) -> Result<RunState> {
        let mut st = state::read(self.root(), id)?;
        if st.status.is_active() {
            if let Some(h) = state::read_health(self.run_root(), id) {
                st.health = Some(h);
            }
        }
        Ok(st)
    }

    /// Layer dirs of a container's root file system, top first (upper, then image layers).
    pub fn layer_dirs(&self, rec: &ContainerRecord, image: &ImageRow) -> Vec<PathBuf> {
        let mut dirs = vec![self.container_dir(&rec.id).join("upper")];
        for c in image.chain_ids().iter().rev() {
            dirs.push(self.layers.diff_dir(c));
        }
        dirs
    }

    fn runtime_root(&self) -> PathBuf {
        self.run_root().join("runtime")
    }

    /// `start`: spawns the container's monitor. With `wait_attach`, the container is
    /// created but only runs once a client attached (call `StartHandle::finish` after
    /// attaching). A running container is left alone (`Ok(None)`).
    /// Takes `id`'s life-cycle lock (waiting for it).
    pub fn lock_container(&self, id: &str) -> Result<ContainerLock> {
        let dir = self.run_root().join("locks");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let p = dir.join(id);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| crate::error::sys_err(format!("locking {}", p.display()))(e))?;
        Ok(ContainerLock { _lock: lock })
    }
}

/// Reads everything from a reader into a string (for small outputs).
pub fn read_to_string<R: Read>(mut r: R) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
