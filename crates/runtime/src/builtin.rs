//! The built-in runtime: youki's libcontainer, linked into the calling process.

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

    fn exec(
        &self,
        id: &str,
        process: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, RuntimeError> {
        let pid = self
            .builder(id, stdio, console_socket)?
            .as_tenant()
            .with_process(Some(process))
            .with_detach(true)
            .build()
            .map_err(Self::err(id))?;
        Ok(pid.as_raw())
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.pause().map_err(Self::err(id))
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.resume().map_err(Self::err(id))
    }
}
