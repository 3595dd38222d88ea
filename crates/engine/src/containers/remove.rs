//! `rm` and `container prune`: the record goes first, the dir is moved aside, then the
//! mount, the cgroup and the files go; every step runs and the errors come back.

use super::*;

impl Engine {
    /// Cleans what a monitor that was killed would have: the container's processes and
    /// runtime state, its cgroup, its published ports and its network namespace.
    /// Returns what could not be cleaned.
    pub(super) fn clean_after_dead_monitor(&self, rec: &ContainerRecord) -> Vec<String> {
        let mut errors = Vec::new();
        if let Ok(rt) = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root()) {
            let _ = rt.kill(&rec.id, libc::SIGKILL, true);
            if let Err(e) = rt.delete(&rec.id, true) {
                errors.push(e.to_string());
            }
        }
        let _ = sys::remove_cgroup(Path::new("/sys/fs/cgroup"), &rec.cgroup());
        if let Some(cfg) = crate::monitor::read_config(self.run_root(), &rec.id) {
            crate::monitor::unpublish_and_unpin(&cfg);
        }
        errors
    }

    /// `container prune`: removes stopped containers (that `filter` allows); returns their
    /// ids and the bytes their writable layers held.
    pub fn prune_containers(
        &self,
        filter: &crate::prune::PruneFilter,
    ) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut bytes = 0;
        for rec in self.container_records()? {
            let st = self.container_state(&rec.id)?;
            if st.status.is_active() || !filter.allows(&rec.created, &rec.config.labels) {
                continue;
            }
            bytes += crate::volumes::dir_size(&self.container_dir(&rec.id).join("upper"));
            self.remove_container(&rec.id, false, false)?;
            removed.push(rec.id);
        }
        // What removals that died left, then the shared init layers no container uses.
        if let Ok(rd) = fs::read_dir(self.root().join("containers")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_prefix(REMOVED_PREFIX) {
                    // (Its cgroup, if it had a parent of its own, is not known here.)
                    let _ = clear_removed(id, &format!("/berth/{id}"), Some(&e.path()));
                }
            }
        }
        self.prune_init_layers()?;
        Ok((removed, bytes))
    }

    /// `rm`: removes a container (running ones only with `force`); with `volumes`, its
    /// anonymous volumes too. Named volumes are never touched. Cleanup is best-effort and
    /// complete: every step runs, and the errors are reported together.
    pub fn remove_container(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        self.remove_container_then(name, force, volumes, || {})
    }

    /// [`Engine::remove_container`], calling `removed` once the container is gone for
    /// everyone (its record, its name, its lock) but before its files are deleted: they
    /// were moved aside under `containers/.removed-ID` in one rename, and deleting them
    /// (on a file system mounted with `discard`, a wait for the disk per file) need not
    /// hold up whoever waits for the removal. `container prune` deletes what a process
    /// that died here left.
    pub fn remove_container_then(
        &self,
        name: &str,
        force: bool,
        volumes: bool,
        removed: impl FnOnce(),
    ) -> Result<()> {
        let mut aside = None;
        let result = self.remove_container_locked(name, force, volumes, &mut aside);
        removed();
        let Some((id, cgroup, dir)) = aside else {
            return result;
        };
        let errors = clear_removed(&id, &cgroup, dir.as_deref());
        match result {
            Ok(()) if !errors.is_empty() => Err(EngineError::Unavailable(format!(
                "removing container {id}: {}",
                errors.join("; ")
            ))),
            other => other,
        }
    }

    /// The removal, up to the container's files moved aside: `aside` gets its id and
    /// where its dir went, for the rest of the clean-up.
    pub(super) fn remove_container_locked(
        &self,
        name: &str,
        force: bool,
        volumes: bool,
        aside: &mut Option<(String, String, Option<PathBuf>)>,
    ) -> Result<()> {
        let found = self.find_container(name)?;
        let _lock = self.lock_container(&found.id)?;
        let rec = self.find_container(&found.id)?;
        let st = self.container_state(&rec.id)?;
        if st.status.is_active() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    rec.name
                )));
            }
            let _ = fs::write(crate::monitor::stop_marker(self.root(), &rec.id), b"");
            let rt = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root())?;
            let _ = rt.resume(&rec.id);
            let _ = rt.kill(&rec.id, libc::SIGKILL, true);
            let _ = self.wait_stopped(&rec.id, Some(Duration::from_secs(10)));
        }
        let mut errors = Vec::new();
        let dir = self.container_dir(&rec.id);
        if st.status == Status::Dead {
            errors.extend(self.clean_after_dead_monitor(&rec));
        }
        if let Err(e) = self.disconnect_removed(&rec.id) {
            errors.push(format!("releasing the addresses of {}: {e}", rec.id));
        }
        if let Err(e) = self
            .db
            .execute("DELETE FROM containers WHERE id = ?1", [&rec.id])
        {
            errors.push(e.to_string());
        }
        let moved = self
            .root()
            .join("containers")
            .join(format!("{REMOVED_PREFIX}{}", rec.id));
        // The mount under it moves with it; the rest of the clean-up is the caller's.
        let left = match fs::rename(&dir, &moved) {
            Ok(()) => Some(moved),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => Some(dir),
        };
        *aside = Some((rec.id.clone(), rec.cgroup(), left));
        let _ = fs::remove_file(attach::socket_path(self.run_root(), &rec.id));
        let _ = fs::remove_file(state::health_path(self.run_root(), &rec.id));
        let _ = fs::remove_dir_all(crate::monitor::bundle_dir(self.run_root(), &rec.id));
        // Whoever waits on this lock finds the container gone when it gets it.
        let _ = fs::remove_file(self.run_root().join("locks").join(&rec.id));
        if volumes || rec.host_config.auto_remove {
            for m in rec.mounts.iter().filter(|m| m.anonymous) {
                if let Some(n) = &m.name {
                    if let Err(e) = self.remove_volume(n, false) {
                        errors.push(e.to_string());
                    }
                }
            }
        }
        self.emit_container(&rec, "destroy", &[]);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Unavailable(format!(
                "removing container {}: {}",
                rec.id,
                errors.join("; ")
            )))
        }
    }
}

/// The last of a removed container, whose record is gone: its root file system's mount
/// (under its dir, wherever that was moved), its cgroup and its files. Every step runs;
/// the errors come back.
pub(super) fn clear_removed(id: &str, cgroup: &str, dir: Option<&Path>) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(dir) = dir {
        if let Err(e) = sys::unmount(&dir.join("merged")) {
            errors.push(e.to_string());
        }
    }
    if let Err(e) = sys::remove_cgroup(Path::new("/sys/fs/cgroup"), cgroup) {
        errors.push(format!("removing the cgroup of {id}: {e}"));
    }
    if let Some(dir) = dir {
        if let Err(e) = fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("{}: {e}", dir.display()));
            }
        }
    }
    errors
}
