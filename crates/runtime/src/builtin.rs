//! The built-in runtime: youki's libcontainer, linked into the calling process.
//!
//! libcontainer is never handed a seccomp profile. It would compile the profile with
//! libseccomp in every container's init, which was the largest single cost of a container
//! start (about 8 ms of CPU for Docker's default profile), and 0.7.0 reads
//! `SCMP_CMP_MASKED_EQ` the other way round from runc. Instead [`Builtin::create`] compiles
//! the profile once per host ([`crate::seccomp::compile_cached`]) and writes a private
//! bundle whose spec has no profile; [`Workload`], the workload executor, loads the
//! compiled filter in the container's init just before it waits for `start`.
//!
//! Without `noNewPrivileges`, loading a filter needs `CAP_SYS_ADMIN`, which the container
//! usually does not get, and libcontainer has dropped to the container's capabilities by
//! the time the executor runs. So the private spec lends `CAP_SYS_ADMIN` in the effective
//! and permitted sets (never the bounding, inheritable or ambient ones), and the executor
//! drops it right after loading the filter, as runc does its capability drop after the
//! filter is in place. The process that `execve`s has exactly the spec's capabilities.

use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use serde_json::Value;

use crate::seccomp::Bpf;
use crate::{OciRuntime, RuntimeError, RuntimeState, Stdio};

/// The annotation that names, in a private bundle's spec, the file holding the container's
/// compiled seccomp filter.
const FILTER_ANNOTATION: &str = "org.berth.seccomp-filter";

/// libcontainer's default executor, with the container's seccomp filter loaded first (see
/// the module docs) and default signal dispositions for the container's process.
#[derive(Clone)]
struct Workload {
    filter: Option<Bpf>,
    /// Whether `CAP_SYS_ADMIN` was lent in the effective and the permitted set.
    lent: [bool; 2],
}

impl Executor for Workload {
    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            ExecutorValidationError::ArgValidationError(format!("{what}: {e}"))
        };
        if let Some(filter) = &self.filter {
            let r = crate::enter::load_filter(filter);
            if r < 0 {
                let e = std::io::Error::from_raw_os_error(-r as i32);
                return Err(fail("loading the seccomp filter", &e));
            }
        }
        for (lent, set) in self
            .lent
            .iter()
            .zip([caps::CapSet::Effective, caps::CapSet::Permitted])
        {
            if *lent {
                caps::drop(None, set, caps::Capability::CAP_SYS_ADMIN)
                    .map_err(|e| fail("dropping CAP_SYS_ADMIN", &e))?;
            }
        }
        libcontainer::workload::default::get_executor().validate(spec)
    }

    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        // libcontainer forks from its caller and leaves dispositions as they were: without
        // this every container ran with SIGPIPE ignored, the Rust default of the monitor.
        crate::enter::default_signal_dispositions();
        libcontainer::workload::default::get_executor().exec(spec)
    }
}

enum PtyError {
    /// The container has no `/dev/pts/ptmx`.
    NoDevpts,
    Other(String),
}

/// A pty from the container's own devpts instance, for an exec with a terminal: opened as
/// `dev/pts/ptmx` under `/proc/PID/root` with every component resolved inside the
/// container's root (a link there cannot lead out of it), checked to be a devpts `ptmx`,
/// and its peer opened with `TIOCGPTPEER`. A pty of the host's devpts has no name in the
/// container: `tty` said "not a tty", and `ttyname` failed for every program that asks.
fn container_pty(pid: i32) -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), PtyError> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    let root_path = format!("/proc/{pid}/root");
    let root = nix::fcntl::open(
        root_path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| PtyError::Other(format!("{root_path}: {e}")))?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let root = unsafe { OwnedFd::from_raw_fd(root) };
    let how = OpenHow::new()
        .flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let master = openat2(root.as_raw_fd(), "dev/pts/ptmx", how).map_err(|e| match e {
        nix::errno::Errno::ENOENT => PtyError::NoDevpts,
        e => PtyError::Other(format!("the container's /dev/pts/ptmx: {e}")),
    })?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let other = |what: &str, e: nix::errno::Errno| PtyError::Other(format!("{what}: {e}"));
    let fs = nix::sys::statfs::fstatfs(&master).map_err(|e| other("fstatfs", e))?;
    let st = nix::sys::stat::fstat(master.as_raw_fd()).map_err(|e| other("fstat", e))?;
    let is_ptmx = fs.filesystem_type().0 as i64 == DEVPTS_SUPER_MAGIC
        && (st.st_mode & libc::S_IFMT) == libc::S_IFCHR
        && libc::major(st.st_rdev) == 5
        && libc::minor(st.st_rdev) == 2;
    if !is_ptmx {
        return Err(PtyError::Other(
            "the container's /dev/pts/ptmx is not a devpts ptmx".into(),
        ));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int through a valid pointer; TIOCGPTPEER takes flags and
    // returns a new descriptor or -1.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            let e = std::io::Error::last_os_error();
            return Err(PtyError::Other(format!("unlocking the pty: {e}")));
        }
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        let e = std::io::Error::last_os_error();
        return Err(PtyError::Other(format!("opening the pty's peer: {e}")));
    }
    // SAFETY: the ioctl returned a new descriptor that nothing else owns.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

pub struct Builtin {
    root: PathBuf,
    filter_cache: PathBuf,
}

impl Builtin {
    /// `root` holds libcontainer's per-container state dirs, and compiled seccomp filters
    /// in `root/.seccomp`.
    pub fn new(root: PathBuf) -> Builtin {
        let filter_cache = root.join(".seccomp");
        Builtin { root, filter_cache }
    }

    /// Keeps compiled seccomp filters in `dir` (one per profile) instead.
    pub fn with_filter_cache(mut self, dir: PathBuf) -> Builtin {
        self.filter_cache = dir;
        self
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

    /// The bundle libcontainer reads for container `id` when `bundle`'s spec has a seccomp
    /// profile: a copy of the spec without the profile, with `CAP_SYS_ADMIN` lent, the
    /// root path made absolute and an annotation naming the compiled filter, which sits
    /// beside it. [`Builtin::delete`] removes it.
    fn private_bundle(&self, id: &str) -> PathBuf {
        self.root.join(format!(".bundle-{id}"))
    }

    /// The bundle to hand libcontainer, and the executor that loads the filter.
    fn prepare(&self, id: &str, bundle: &Path) -> Result<(PathBuf, Workload), String> {
        let bundle = std::fs::canonicalize(bundle)
            .map_err(|e| format!("bundle {}: {e}", bundle.display()))?;
        let cfg = bundle.join("config.json");
        let bytes = std::fs::read(&cfg).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let mut spec: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let Some(profile) = spec
            .pointer_mut("/linux")
            .and_then(Value::as_object_mut)
            .and_then(|linux| linux.remove("seccomp"))
            .filter(Value::is_object)
        else {
            let plain = Workload {
                filter: None,
                lent: [false; 2],
            };
            return Ok((bundle, plain));
        };
        let filter = crate::seccomp::compile_cached(&profile, &self.filter_cache)?;
        let mut lent = [false; 2];
        if spec["process"]["noNewPrivileges"].as_bool() != Some(true) {
            for (i, set) in ["effective", "permitted"].into_iter().enumerate() {
                let list = spec
                    .pointer_mut(&format!("/process/capabilities/{set}"))
                    .and_then(Value::as_array_mut);
                if let Some(list) = list {
                    if !list.iter().any(|c| c == "CAP_SYS_ADMIN") {
                        list.push("CAP_SYS_ADMIN".into());
                        lent[i] = true;
                    }
                }
            }
        }
        if let Some(p) = spec["root"]["path"].as_str() {
            if !p.starts_with('/') {
                spec["root"]["path"] = bundle.join(p).display().to_string().into();
            }
        }
        let dir = self.private_bundle(id);
        let filter_file = dir.join("seccomp.bpf");
        if !spec["annotations"].is_object() {
            spec["annotations"] = serde_json::json!({});
        }
        spec["annotations"][FILTER_ANNOTATION] = filter_file.display().to_string().into();
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&filter_file, filter.to_bytes())?;
            std::fs::write(dir.join("config.json"), serde_json::to_vec(&spec)?)
        };
        write().map_err(|e| format!("writing {}: {e}", dir.display()))?;
        let filter = Some(filter);
        Ok((dir, Workload { filter, lent }))
    }

    /// The filter an `exec` in the container gets: the one its private bundle names, or
    /// its profile compiled (None when it has none).
    fn seccomp_filter(&self, spec: &Value) -> Result<Option<Bpf>, String> {
        if let Some(path) = spec["annotations"][FILTER_ANNOTATION].as_str() {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("the container's seccomp filter {path}: {e}"))?;
            return Bpf::from_bytes(&bytes)
                .map(Some)
                .ok_or_else(|| format!("the container's seccomp filter {path} is damaged"));
        }
        match &spec["linux"]["seccomp"] {
            Value::Null => Ok(None),
            profile => crate::seccomp::compile_cached(profile, &self.filter_cache).map(Some),
        }
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
        let builder = self.builder(id, stdio, console_socket)?;
        // Before the private bundle is written: it is the existing container's.
        if self.root.join(id).exists() {
            return Err(RuntimeError::Command {
                runtime: "builtin".into(),
                action: "create",
                id: id.to_string(),
                message: "a container with this id exists".into(),
            });
        }
        let (bundle, executor) = self.prepare(id, bundle).map_err(|message| {
            let _ = std::fs::remove_dir_all(self.private_bundle(id));
            RuntimeError::Command {
                runtime: "builtin".into(),
                action: "create",
                id: id.to_string(),
                message,
            }
        })?;
        let built = builder
            .with_executor(executor)
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build();
        match built {
            Ok(c) => Ok(c.pid().map(|p| p.as_raw()).unwrap_or(0)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.private_bundle(id));
                Err(Self::err(id)(e))
            }
        }
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
        match self.load(id)?.kill(sig, all) {
            Ok(()) => Ok(()),
            // libcontainer saves the state after signalling; a container that exited at
            // once (SIGKILL) may have been cleaned up by its monitor in between, state dir
            // and all. It is not running, which is what the kill was for.
            Err(_) if !self.root.join(id).join("state.json").exists() => Ok(()),
            Err(e) => Err(Self::err(id)(e)),
        }
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let deleted = match self.load(id) {
            Ok(mut c) => c.delete(force).map_err(Self::err(id)),
            // Nothing to delete: the state dir is gone already.
            Err(_) if !self.root.join(id).exists() => Ok(()),
            Err(e) => Err(e),
        };
        if deleted.is_ok() {
            let _ = std::fs::remove_dir_all(self.private_bundle(id));
        }
        deleted
    }

    /// Without libcontainer when it would only remove the cgroup and the state dir: its
    /// delete reads the state, then `/proc/self/mountinfo` and `/proc/self/cgroup` once per
    /// cgroup v1 controller to find the cgroup, a millisecond or more of every short
    /// container's life. A container with poststop hooks gets libcontainer's delete.
    fn delete_exited(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.root.join(id);
        let hooks = match std::fs::read(dir.join("youki_config.json")) {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
                .map(|c| !c["hooks"]["poststop"].as_array().is_none_or(Vec::is_empty))
                .unwrap_or(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(_) => true,
        };
        if hooks {
            return self.delete(id, true);
        }
        for d in [dir, self.private_bundle(id)] {
            match std::fs::remove_dir_all(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RuntimeError::Io { path: d, source: e })
                }
                _ => {}
            }
        }
        Ok(())
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
    /// confinement, with the container's compiled filter.
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
        let bpf = self.seccomp_filter(&spec).map_err(fail)?;
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
            let (master, slave) = match container_pty(pid.as_raw()) {
                Ok(p) => p,
                // No devpts in the container (a spec without one): a pty of the host's,
                // which works but has no name inside.
                Err(PtyError::NoDevpts) => nix::pty::openpty(None, None)
                    .map(|p| (p.master, p.slave))
                    .map_err(|e| fail(format!("openpty: {e}")))?,
                Err(PtyError::Other(m)) => return Err(fail(m)),
            };
            crate::send_fd(socket, master.as_fd())
                .map_err(|e| fail(format!("sending the terminal to {}: {e}", socket.display())))?;
            let s = slave.as_fd();
            return Ok(entry
                .spawn(&args, [s, s, s], true)
                .map_err(fail)?
                .wait_started());
        }
        // SAFETY: the caller's standard streams, open for the life of the process.
        let inherit = |n: RawFd| unsafe { BorrowedFd::borrow_raw(n) };
        let fds = [
            stdio.stdin.as_ref().map_or(inherit(0), |f| f.as_fd()),
            stdio.stdout.as_ref().map_or(inherit(1), |f| f.as_fd()),
            stdio.stderr.as_ref().map_or(inherit(2), |f| f.as_fd()),
        ];
        Ok(entry.spawn(&args, fds, false).map_err(fail)?.wait_started())
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.pause().map_err(Self::err(id))
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.resume().map_err(Self::err(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creating_an_existing_id_leaves_that_containers_bundle_alone() {
        let d = tempfile::tempdir().unwrap();
        let rt = Builtin::new(d.path().join("rt"));
        std::fs::create_dir_all(d.path().join("rt/c1")).unwrap();
        let private = rt.private_bundle("c1");
        std::fs::create_dir_all(&private).unwrap();
        std::fs::write(private.join("config.json"), "theirs").unwrap();
        let bundle = d.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}}}"#,
        )
        .unwrap();
        let err = rt
            .create("c1", &bundle, Stdio::default(), None)
            .unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(private.join("config.json")).unwrap(),
            "theirs"
        );
    }

    #[test]
    fn deleting_an_exited_container_removes_its_state_unless_it_has_poststop_hooks() {
        let d = tempfile::tempdir().unwrap();
        let rt = Builtin::new(d.path().join("rt"));
        let state = d.path().join("rt/c1");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("youki_config.json"),
            r#"{"hooks":{"prestart":[{"path":"/bin/true"}]},"cgroup_path":"/berth/c1"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(rt.private_bundle("c1")).unwrap();
        rt.delete_exited("c1").unwrap();
        assert!(!state.exists() && !rt.private_bundle("c1").exists());
        // Gone already: nothing to do.
        rt.delete_exited("c1").unwrap();
        // Poststop hooks are libcontainer's to run: its delete, which cannot load this
        // made-up container, so everything stays.
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("youki_config.json"),
            r#"{"hooks":{"poststop":[{"path":"/bin/true"}]},"cgroup_path":"/berth/c1"}"#,
        )
        .unwrap();
        assert!(rt.delete_exited("c1").is_err());
        assert!(state.join("youki_config.json").exists());
    }
}
