//! The built-in runtime: youki's libcontainer, linked into the calling process.

use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;

use crate::{OciRuntime, RuntimeError, RuntimeState, Stdio};

pub struct Builtin {
    root: PathBuf,
}

impl Builtin {
    /// `root` holds libcontainer's per-container state dirs.
    pub fn new(root: PathBuf) -> Builtin {
        Builtin { root }
    }

    fn err(id: &str) -> impl FnOnce(libcontainer::error::LibcontainerError) -> RuntimeError + '_ {
        move |source| RuntimeError::Libcontainer {
            id: id.to_string(),
            source: Box::new(source),
        }
    }

    fn ensure_root(&self) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.root).map_err(|source| RuntimeError::Io {
            path: self.root.clone(),
            source,
        })
    }

    /// The container's compiled seccomp filter (None when it has none), from the cache in
    /// its state dir or compiled and cached there. The spec holds libcontainer's reading
    /// of `SCMP_CMP_MASKED_EQ` (see [`crate::seccomp::for_libcontainer`]).
    fn seccomp_filter(
        &self,
        id: &str,
        spec: &serde_json::Value,
    ) -> Result<Option<crate::seccomp::Bpf>, String> {
        let mut profile = spec["linux"]["seccomp"].clone();
        if profile.is_null() {
            return Ok(None);
        }
        let cache = self.root.join(id).join("berth-seccomp.bpf");
        if let Some(b) = std::fs::read(&cache)
            .ok()
            .and_then(|b| crate::seccomp::Bpf::from_bytes(&b))
        {
            return Ok(Some(b));
        }
        crate::seccomp::for_libcontainer(&mut profile);
        let bpf = crate::seccomp::compile(&profile)?;
        // A cache only: a failure to write it costs the next exec a compile.
        let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, bpf.to_bytes()).is_ok() {
            let _ = std::fs::rename(&tmp, &cache);
        }
        Ok(Some(bpf))
    }

    fn load(&self, id: &str) -> Result<Container, RuntimeError> {
        Container::load(self.root.join(id)).map_err(Self::err(id))
    }

    fn builder(
        &self,
        id: &str,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<ContainerBuilder, RuntimeError> {
        self.ensure_root()?;
        let mut b = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_root_path(self.root.clone())
            .map_err(Self::err(id))?
            .with_console_socket(console_socket);
        if let Some(fd) = stdio.stdin {
            b = b.with_stdin(fd);
        }
        if let Some(fd) = stdio.stdout {
            b = b.with_stdout(fd);
        }
        if let Some(fd) = stdio.stderr {
            b = b.with_stderr(fd);
        }
        Ok(b)
    }
}

impl OciRuntime for Builtin {
    fn name(&self) -> &str {
        "builtin"
    }

    fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, RuntimeError> {
        let c = self
            .builder(id, stdio, console_socket)?
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(Self::err(id))?;
        Ok(c.pid().map(|p| p.as_raw()).unwrap_or(0))
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.start().map_err(Self::err(id))
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let sig = Signal::try_from(signal).map_err(|e| RuntimeError::Command {
            runtime: "builtin".into(),
            action: "kill",
            id: id.to_string(),
            message: e.to_string(),
        })?;
        self.load(id)?.kill(sig, all).map_err(Self::err(id))
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        match self.load(id) {
            Ok(mut c) => c.delete(force).map_err(Self::err(id)),
            // Nothing to delete: the state dir is gone already.
            Err(_) if !self.root.join(id).exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn state(&self, id: &str) -> Result<RuntimeState, RuntimeError> {
        let c = self.load(id)?;
        Ok(RuntimeState {
            status: format!("{:?}", c.status()).to_lowercase(),
            pid: c.pid().map(|p| p.as_raw()),
        })
    }

    /// Not libcontainer's tenant builder: in 0.7.0 it drops the container's seccomp
    /// filter from exec'd processes. [`crate::enter`] gives them the container's
    /// confinement, with the filter compiled once per container and cached in its state
    /// dir.
    fn exec(
        &self,
        id: &str,
        process: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, RuntimeError> {
        let fail = |message: String| RuntimeError::Command {
            runtime: "builtin".into(),
            action: "exec",
            id: id.to_string(),
            message,
        };
        let c = self.load(id)?;
        let pid = c
            .pid()
            .filter(|_| c.status() == libcontainer::container::ContainerStatus::Running)
            .ok_or_else(|| fail("the container is not running".into()))?;
        let read_json = |p: &Path| -> Result<serde_json::Value, RuntimeError> {
            let bytes = std::fs::read(p).map_err(|source| RuntimeError::Io {
                path: p.to_path_buf(),
                source,
            })?;
            serde_json::from_slice(&bytes).map_err(|e| fail(format!("{}: {e}", p.display())))
        };
        let mut spec = read_json(&c.bundle().join("config.json"))?;
        let mut proc = read_json(process)?;
        // An exec'd process keeps the container's limits unless it names its own.
        for key in ["rlimits", "oomScoreAdj"] {
            if proc.get(key).is_none() && !spec["process"][key].is_null() {
                proc[key] = spec["process"][key].clone();
            }
        }
        spec["process"] = proc;
        let bpf = self.seccomp_filter(id, &spec).map_err(fail)?;
        let cgroups = crate::enter::cgroup_procs_files(
            Path::new("/sys/fs/cgroup"),
            spec["linux"]["cgroupsPath"].as_str().unwrap_or_default(),
        );
        let entry =
            crate::enter::Entry::prepare(&spec, pid.as_raw(), cgroups, bpf).map_err(fail)?;
        let args: Vec<String> = spec["process"]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        let terminal = spec["process"]["terminal"].as_bool().unwrap_or(false);
        if terminal {
            let socket =
                console_socket.ok_or_else(|| fail("a terminal needs --console-socket".into()))?;
            let pty = nix::pty::openpty(None, None).map_err(|e| fail(format!("openpty: {e}")))?;
            crate::send_fd(socket, pty.master.as_fd())
                .map_err(|e| fail(format!("sending the terminal to {}: {e}", socket.display())))?;
            let s = pty.slave.as_fd();
            return entry.spawn(&args, [s, s, s], true).map_err(fail);
        }
        // SAFETY: the caller's standard streams, open for the life of the process.
        let inherit = |n: RawFd| unsafe { BorrowedFd::borrow_raw(n) };
        let fds = [
            stdio.stdin.as_ref().map_or(inherit(0), |f| f.as_fd()),
            stdio.stdout.as_ref().map_or(inherit(1), |f| f.as_fd()),
            stdio.stderr.as_ref().map_or(inherit(2), |f| f.as_fd()),
        ];
        entry.spawn(&args, fds, false).map_err(fail)
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.pause().map_err(Self::err(id))
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.resume().map_err(Self::err(id))
    }
}
