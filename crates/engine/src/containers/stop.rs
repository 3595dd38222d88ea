//! `kill`, `stop`, `pause`, `unpause` and `wait`.

use super::*;

impl Engine {
    /// Sends a signal to a running container's init.
    pub fn kill_container(&self, name: &str, signal: i32) -> Result<()> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {name}: container {} is not running",
                rec.id
            )));
        }
        let rt = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root())?;
        let kill = || -> Result<()> {
            rt.kill(&rec.id, signal, false)?;
            self.emit_container(&rec, "kill", &[("signal", signal.to_string())]);
            Ok(())
        };
        if signal != libc::SIGKILL {
            return kill();
        }
        // As Docker's: a SIGKILL returns once the container has exited (up to 10 s), so
        // an inspect or a remove right after finds it stopped.
        self.exit_after(&rec.id, Some(Duration::from_secs(10)), kill)?;
        Ok(())
    }

    /// Waits until the container is no longer running (or `timeout` passes); returns its state.
    pub fn wait_stopped(&self, id: &str, timeout: Option<Duration>) -> Result<Option<RunState>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // Prefer the monitor's exit notification; fall back to polling the state.
        if let Ok(mut s) = attach::connect(self.run_root(), id, Hello::default()) {
            if let Some(d) = deadline {
                let _ = s.set_read_timeout(Some(
                    d.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ));
            }
            loop {
                match attach::read_frame(&mut s) {
                    Ok(Some((attach::EXIT, code))) if code.len() == 4 => {
                        let code = i32::from_be_bytes([code[0], code[1], code[2], code[3]]);
                        let st = self.container_state(id)?;
                        if st.status == Status::Exited {
                            return Ok(Some(st));
                        }
                        // An auto-removed container may be gone already: the monitor's
                        // word is what is left of how it ended.
                        if !self.container_dir(id).exists() {
                            return Ok(Some(RunState {
                                status: Status::Exited,
                                exit_code: code,
                                ..Default::default()
                            }));
                        }
                        break;
                    }
                    Ok(Some((attach::EXIT, _))) | Ok(None) => break,
                    Ok(Some(_)) => continue,
                    Err(_) => break,
                }
            }
        }
        loop {
            let st = self.container_state(id)?;
            if !st.status.is_active() {
                return Ok(Some(st));
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    return Ok(None);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `stop`: the stop signal, then SIGKILL after the timeout (Docker's default 10 s).
    pub fn stop_container(&self, name: &str, timeout: Option<i64>) -> Result<()> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Ok(());
        }
        // A user's stop ends the restart policy until the next start.
        let marker = crate::monitor::stop_marker(self.root(), &rec.id);
        fs::write(&marker, b"").map_err(io_err(&marker))?;
        let rt = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root())?;
        let sig = rec
            .config
            .stop_signal
            .as_deref()
            .and_then(sys::parse_signal)
            .unwrap_or(libc::SIGTERM);
        let secs = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        if st.status == Status::Paused {
            let _ = rt.resume(&rec.id);
        }
        // Docker's events for a stop: kill (each signal sent), die, stop.
        if secs != 0 {
            self.emit_container(&rec, "kill", &[("signal", sig.to_string())]);
            let _ = rt.kill(&rec.id, sig, false);
            let wait = if secs < 0 {
                None
            } else {
                Some(Duration::from_secs(secs as u64))
            };
            if self.wait_stopped(&rec.id, wait)?.is_some() {
                self.emit_container(&rec, "stop", &[]);
                return Ok(());
            }
        }
        self.emit_container(&rec, "kill", &[("signal", libc::SIGKILL.to_string())]);
        let _ = rt.kill(&rec.id, libc::SIGKILL, true);
        if self
            .wait_stopped(&rec.id, Some(Duration::from_secs(30)))?
            .is_none()
        {
            return Err(EngineError::Unavailable(format!(
                "container {} did not stop after SIGKILL",
                rec.id
            )));
        }
        self.emit_container(&rec, "stop", &[]);
        Ok(())
    }

    /// `pause`: freezes every process of a running container (freezer cgroup).
    pub fn pause_container(&self, name: &str) -> Result<()> {
        let found = self.find_container(name)?;
        let _lock = self.lock_container(&found.id)?;
        let mut st = self.container_state(&found.id)?;
        match st.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is already paused",
                    found.id
                )))
            }
            _ => {
                return Err(EngineError::NotRunning {
                    id: found.id.clone(),
                })
            }
        }
        let rt = berth_runtime::by_name(&found.host_config.runtime, &self.runtime_root())?;
        rt.pause(&found.id)?;
        st.status = Status::Paused;
        state::write(self.root(), &found.id, &st)?;
        self.emit_container(&found, "pause", &[]);
        Ok(())
    }

    /// `unpause`: thaws a paused container.
    pub fn unpause_container(&self, name: &str) -> Result<()> {
        let found = self.find_container(name)?;
        let _lock = self.lock_container(&found.id)?;
        let mut st = self.container_state(&found.id)?;
        if st.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is not paused",
                found.id
            )));
        }
        let rt = berth_runtime::by_name(&found.host_config.runtime, &self.runtime_root())?;
        rt.resume(&found.id)?;
        st.status = Status::Running;
        state::write(self.root(), &found.id, &st)?;
        self.emit_container(&found, "unpause", &[]);
        Ok(())
    }

    /// `wait`: blocks until the container stops; returns its exit code.
    pub fn wait_container(&self, name: &str) -> Result<i32> {
        let rec = self.find_container(name)?;
        self.wait_exit(&rec.id)
    }

    /// Waits for the container's process to end, as Docker's `wait` does: at once if it
    /// is not running, else at its next exit, even when a restart policy starts it again
    /// right after (between restarts, the exit after that). Returns the exit code.
    pub fn wait_exit(&self, id: &str) -> Result<i32> {
        let code = self.exit_after(id, None, || Ok(()))?;
        Ok(code.expect("no timeout"))
    }

    /// Does `act` (a signal, or nothing) while listening to the container's monitor, then
    /// waits up to `timeout` for the container's next exit: its code, None at the timeout.
    fn exit_after(
        &self,
        id: &str,
        timeout: Option<Duration>,
        act: impl FnOnce() -> Result<()>,
    ) -> Result<Option<i32>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let monitor = attach::connect(self.run_root(), id, Hello::default()).ok();
        act()?;
        if let Some(mut s) = monitor {
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            }
            loop {
                match attach::read_frame(&mut s) {
                    Ok(Some((attach::EXIT, code))) if code.len() == 4 => {
                        let code = i32::from_be_bytes([code[0], code[1], code[2], code[3]]);
                        return Ok(Some(code));
                    }
                    Ok(Some((attach::EXIT, _))) | Ok(None) | Err(_) => break,
                    Ok(Some(_)) => continue,
                }
            }
        }
        // No monitor to ask (it is gone, or the container never ran): its state tells.
        loop {
            let st = self.container_state(id)?;
            if !matches!(st.status, Status::Running | Status::Paused) {
                return Ok(Some(st.exit_code));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
