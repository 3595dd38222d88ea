//! `exec`: a new process in a running container, run by the calling (single-threaded)
//! process through the container's OCI runtime. The caller becomes a subreaper, so the
//! process is reparented to it and its exit code can be collected.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{io_err, EngineError, Result};
use crate::{spec, Engine};

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub privileged: bool,
}

/// An exec whose process file is written; `spawn` runs it.
pub struct PreparedExec {
    pub container_id: String,
    runtime: String,
    runtime_root: PathBuf,
    process_file: PathBuf,
}

impl Drop for PreparedExec {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.process_file);
    }
}

impl PreparedExec {
    /// Starts the process with `stdio` (or a pty sent to `console_socket`); returns its pid.
    pub fn spawn(&self, stdio: berth_runtime::Stdio, console_socket: Option<&Path>) -> Result<i32> {
        let rt = berth_runtime::by_name(&self.runtime, &self.runtime_root)?;
        rt.exec(
            &self.container_id,
            &self.process_file,
            stdio,
            console_socket,
        )
        .map_err(|e| {
            let message = crate::monitor::error_chain(&e);
            EngineError::Start {
                code: crate::monitor::failure_code(&message),
                message,
            }
        })
    }
}

impl Engine {
    /// Checks the container is running and writes the OCI process for `opts`.
    pub fn exec_prepare(&self, name: &str, opts: &ExecOptions) -> Result<PreparedExec> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Err(EngineError::NotRunning { id: rec.id.clone() });
        }
        if st.status == crate::state::Status::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is paused, unpause the container before exec",
                rec.id
            )));
        }
        if opts.cmd.is_empty() {
            return Err(EngineError::Invalid("no exec command specified".into()));
        }
        let image = self.find_image(&rec.image_id)?;
        let user_spec = opts.user.clone().unwrap_or_else(|| rec.config.user.clone());
        let layer_dirs = self.layer_dirs(&rec, &image);
        let mut user = spec::resolve_user(&user_spec, &layer_dirs)?;
        spec::add_groups(&mut user, &rec.host_config.group_add, &layer_dirs)?;
        let mut env = spec::merge_env(&[
            &[format!("HOSTNAME={}", rec.config.hostname)],
            &rec.config.env,
            &opts.env,
        ]);
        if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let hc = &rec.host_config;
        let caps = spec::capabilities(&hc.cap_add, &hc.cap_drop, hc.privileged || opts.privileged)?;
        let cwd = opts
            .workdir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| {
                if rec.config.working_dir.is_empty() {
                    "/".into()
                } else {
                    rec.config.working_dir.clone()
                }
            });
        let mut u = json!({"uid": user.uid, "gid": user.gid});
        if !user.additional_gids.is_empty() {
            u["additionalGids"] = json!(user.additional_gids);
        }
        let no_new_privs = hc.security_opt.iter().any(|o| {
            o == "no-new-privileges"
                || o == "no-new-privileges:true"
                || o == "no-new-privileges=true"
        });
        let mut process = json!({
            "terminal": opts.tty,
            "user": u,
            "args": opts.cmd,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        });
        // See spec::build: only present when set.
        if no_new_privs {
            process["noNewPrivileges"] = json!(true);
        }
        let dir = self.run_root().join("exec");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let process_file = dir.join(format!(
            "{}-{}.json",
            &rec.id[..12],
            berth_image::fsutil::random_hex(6)
        ));
        fs::write(
            &process_file,
            serde_json::to_vec(&process).expect("process serialises"),
        )
        .map_err(io_err(&process_file))?;
        Ok(PreparedExec {
            container_id: rec.id.clone(),
            runtime: rec.host_config.runtime.clone(),
            runtime_root: self.run_root().join("runtime"),
            process_file,
        })
    }
}

pub use berth_runtime::wait_pid;
