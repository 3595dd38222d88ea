//! `update` (limits and restart policy, live when running) and `rename`.

use super::*;

impl Engine {
    /// `update`: changes the limits (live, when running) and the restart policy of a
    /// container; the record keeps them for later starts.
    pub fn update_container(&self, name: &str, update: &UpdateSpec) -> Result<()> {
        update.validate()?;
        let found = self.find_container(name)?;
        let _lock = self.lock_container(&found.id)?;
        let mut rec = self.find_container(&found.id)?;
        if rec.host_config.auto_remove
            && update
                .restart_policy
                .as_ref()
                .is_some_and(|r| !matches!(r.name.as_str(), "" | "no"))
        {
            return Err(EngineError::Invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        let limits = update.limits();
        let st = self.container_state(&rec.id)?;
        if st.status.is_active() {
            crate::stats::apply_limits(
                Path::new("/sys/fs/cgroup"),
                &rec.cgroup(),
                &limits,
            )
            .map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EINVAL)
                    || e.raw_os_error() == Some(libc::EBUSY)
                {
                    " (memory must stay below memory+swap: update --memory-swap at the same time)"
                } else {
                    ""
                };
                EngineError::Invalid(format!("cannot update container {}: {e}{hint}", rec.id))
            })?;
        }
        let hc = &mut rec.host_config;
        if let Some(m) = limits.memory {
            hc.memory = m.max(0);
        }
        if let Some(s) = limits.memory_swap {
            hc.memory_swap = s;
        }
        if let Some(n) = update.nano_cpus {
            hc.nano_cpus = n;
        }
        if let Some(sh) = limits.cpu_shares {
            hc.cpu_shares = sh as i64;
        }
        if let Some(p) = limits.pids {
            hc.pids_limit = Some(p);
        }
        if let Some(r) = update.restart_policy.clone() {
            // The running monitor reads its policy from monitor.json at each exit.
            let mp = crate::monitor::config_path(self.run_root(), &rec.id);
            if let Ok(bytes) = fs::read(&mp) {
                if let Ok(mut m) = serde_json::from_slice::<MonitorConfig>(&bytes) {
                    m.restart_policy = r.name.clone();
                    m.restart_max = r.maximum_retry_count;
                    berth_image::fsutil::replace_file(
                        &mp,
                        &serde_json::to_vec(&m).expect("monitor config serialises"),
                    )
                    .map_err(io_err(&mp))?;
                }
            }
            hc.restart_policy = r;
        }
        self.db.execute(
            "UPDATE containers SET config = ?1 WHERE id = ?2",
            params![
                serde_json::to_string(&rec).expect("record serialises"),
                rec.id
            ],
        )?;
        Ok(())
    }

    /// `rename`.
    pub fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let mut rec = self.find_container(name)?;
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !names::valid_name(new_name) {
            return Err(EngineError::Invalid(format!(
                "invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if rec.name == new_name {
            return Err(EngineError::Invalid(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(other) = self
            .db
            .query_row(
                "SELECT id FROM containers WHERE name = ?1",
                [new_name],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let old_name = std::mem::replace(&mut rec.name, new_name.to_string());
        self.db.execute(
            "UPDATE containers SET name = ?1, config = ?2 WHERE id = ?3",
            params![
                rec.name,
                serde_json::to_string(&rec).expect("record serialises"),
                rec.id
            ],
        )?;
        self.emit_container(&rec, "rename", &[("oldName", format!("/{old_name}"))]);
        Ok(())
    }
}
