//! runc-compatible runtime binaries (runc, crun, berth-runtime), driven through the runc
//! command line.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as PStdio};

use crate::{OciRuntime, RuntimeError, RuntimeState, Stdio};

pub struct External {
    binary: PathBuf,
    root: PathBuf,
}

/// Finds a runtime binary: a path as given, or a name in `PATH`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_exec(p))
}

impl External {
    pub fn new(binary: PathBuf, root: PathBuf) -> External {
        External { binary, root }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c
    }

    /// A command that logs to its own JSON file: a runtime's own errors during `create` or
    /// `exec` would otherwise go to the container's stderr.
    fn logged_command(&self, id: &str, action: &str) -> (Command, PathBuf) {
        let log = self
            .root
            .join(format!(".log-{id}-{action}-{}.json", std::process::id()));
        let _ = std::fs::create_dir_all(&self.root);
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json");
        (c, log)
    }

    /// The last error a runtime logged (runc, crun and berth-runtime write JSON lines with
    /// `level` and `msg`).
    fn logged_error(log: &Path) -> Option<String> {
        let text = std::fs::read_to_string(log).ok()?;
        text.lines().rev().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let level = v["level"].as_str().unwrap_or("");
            (level == "error" || level == "fatal")
                .then(|| v["msg"].as_str().unwrap_or_default().to_string())
        })
    }

    fn run(
        &self,
        action: &'static str,
        id: &str,
        mut cmd: Command,
    ) -> Result<String, RuntimeError> {
        let out = cmd.output().map_err(|source| RuntimeError::Io {
            path: self.binary.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failure(action, id, &out.stderr))
        }
    }

    fn failure(&self, action: &'static str, id: &str, stderr: &[u8]) -> RuntimeError {
        let text = String::from_utf8_lossy(stderr);
        // runc logs JSON or logfmt lines; keep the last meaningful one.
        let message = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed")
            .trim()
            .to_string();
        RuntimeError::Command {
            runtime: self.binary.display().to_string(),
            action,
            id: id.to_string(),
            message,
        }
    }

    fn with_stdio(cmd: &mut Command, stdio: Stdio) {
        cmd.stdin(stdio.stdin.map(PStdio::from).unwrap_or_else(PStdio::null));
        cmd.stdout(stdio.stdout.map(PStdio::from).unwrap_or_else(PStdio::null));
        // stderr carries the runtime's own errors too; we read them when it fails.
        if let Some(fd) = stdio.stderr {
            cmd.stderr(PStdio::from(fd));
        }
    }

    fn run_with_pidfile(
        &self,
        action: &'static str,
        id: &str,
        (mut cmd, log): (Command, PathBuf),
        pid_file: &Path,
        stdio: Stdio,
        console: bool,
    ) -> Result<i32, RuntimeError> {
        let has_stderr = stdio.stderr.is_some();
        Self::with_stdio(&mut cmd, stdio);
        if !has_stderr || console {
            cmd.stderr(PStdio::piped());
        }
        let out = cmd.output().map_err(|source| RuntimeError::Io {
            path: self.binary.clone(),
            source,
        })?;
        let logged = Self::logged_error(&log);
        let _ = std::fs::remove_file(&log);
        if !out.status.success() {
            let mut e = self.failure(action, id, &out.stderr);
            if let (Some(msg), RuntimeError::Command { message, .. }) = (logged, &mut e) {
                if !msg.is_empty() {
                    *message = msg;
                }
            }
            return Err(e);
        }
        let pid = std::fs::read_to_string(pid_file).map_err(|source| RuntimeError::Io {
            path: pid_file.to_path_buf(),
            source,
        })?;
        let _ = std::fs::remove_file(pid_file);
        pid.trim().parse().map_err(|_| RuntimeError::Command {
            runtime: self.binary.display().to_string(),
            action,
            id: id.to_string(),
            message: format!("bad pid file content {pid:?}"),
        })
    }

    /// `ACTION ARGS --pid-file F [--console-socket S] ID` (create, or exec detached), run
    /// to its end; the pid the runtime wrote.
    fn detached(
        &self,
        action: &'static str,
        id: &str,
        args: &[&OsStr],
        pid_file: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, RuntimeError> {
        let (mut cmd, log) = self.logged_command(id, action);
        cmd.arg(action).args(args).arg("--pid-file").arg(pid_file);
        if let Some(s) = console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        cmd.arg(id);
        self.run_with_pidfile(
            action,
            id,
            (cmd, log),
            pid_file,
            stdio,
            console_socket.is_some(),
        )
    }
}

impl OciRuntime for External {
    fn name(&self) -> &str {
        self.binary
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("runtime")
    }

    fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, RuntimeError> {
        let pid_file = bundle.join("runtime.pid");
        let args = [OsStr::new("--bundle"), bundle.as_os_str()];
        self.detached("create", id, &args, &pid_file, stdio, console_socket)
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("start").arg(id);
        self.run("start", id, cmd).map(|_| ())
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run("kill", id, cmd).map(|_| ())
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        match self.run("delete", id, cmd) {
            Ok(_) => Ok(()),
            Err(RuntimeError::Command { message, .. })
                if message.contains("does not exist") || message.contains("not found") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn state(&self, id: &str) -> Result<RuntimeState, RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("state").arg(id);
        let out = self.run("state", id, cmd)?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| RuntimeError::Command {
                runtime: self.binary.display().to_string(),
                action: "state",
                id: id.to_string(),
                message: format!("bad state json: {e}"),
            })?;
        Ok(RuntimeState {
            status: v["status"].as_str().unwrap_or("unknown").to_string(),
            pid: v["pid"].as_i64().filter(|p| *p > 0).map(|p| p as i32),
        })
    }

    fn exec(
        &self,
        id: &str,
        process: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, RuntimeError> {
        let pid_file = process.with_extension("pid");
        let args = [
            OsStr::new("--detach"),
            OsStr::new("--process"),
            process.as_os_str(),
        ];
        self.detached("exec", id, &args, &pid_file, stdio, console_socket)
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("pause").arg(id);
        self.run("pause", id, cmd).map(|_| ())
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("resume").arg(id);
        self.run("resume", id, cmd).map(|_| ())
    }
}
