//! OCI runtimes for berth, behind one trait: [`OciRuntime`].
//!
//! Two implementations: [`builtin::Builtin`], on youki's libcontainer, linked in; and
//! [`external::External`], which drives any runc-compatible binary (runc, crun, or our own
//! `berth-runtime`) through the runc command line.
//!
//! libcontainer forks with raw `clone3`: a caller must be single-threaded (the monitor,
//! the CLI, `berth-runtime`), never a tokio process. The container's init is reparented to
//! the caller when the caller is a child subreaper, which is how the monitor reaps it.
//! This crate knows nothing of images.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub mod builtin;
pub mod caps;
pub mod enter;
pub mod external;
pub mod seccomp;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {id}: {source}")]
    Libcontainer {
        id: String,
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    #[error("{runtime} {action} {id}: {message}")]
    Command {
        runtime: String,
        action: &'static str,
        id: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a container's (or an exec's) process could not start, in the terms Docker's exit
/// codes give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFailure {
    /// The program is not there (127).
    NotFound,
    /// The program is there but cannot be run: permissions, a directory, a bad format (126).
    CannotExecute,
    /// Anything else: the runtime or the system failed (125).
    Other,
}

impl StartFailure {
    /// Docker's exit code for it.
    pub fn exit_code(self) -> i32 {
        match self {
            StartFailure::NotFound => 127,
            StartFailure::CannotExecute => 126,
            StartFailure::Other => 125,
        }
    }
}

impl RuntimeError {
    /// What kind of start failure this error is. The runtimes say it only in words (the
    /// container's init through libcontainer, runc's and crun's stderr), so this is the
    /// one place that reads them; everything above decides on the kind.
    pub fn start_failure(&self) -> StartFailure {
        use std::error::Error;
        let mut words = self.to_string();
        let mut source = self.source();
        while let Some(e) = source {
            words.push_str(": ");
            words.push_str(&e.to_string());
            source = e.source();
        }
        classify_start_failure(&words)
    }
}

fn classify_start_failure(words: &str) -> StartFailure {
    let m = words.to_lowercase();
    if m.contains("permission") || m.contains("is a directory") || m.contains("exec format") {
        StartFailure::CannotExecute
    } else if m.contains("not found") || m.contains("no such file") || m.contains("executable file")
    {
        StartFailure::NotFound
    } else {
        StartFailure::Other
    }
}

/// Standard streams handed to the container's process. `None` inherits the caller's.
#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// What the runtime reports about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    pub status: String,
    pub pid: Option<i32>,
}

/// The runc-style life cycle every runtime offers.
pub trait OciRuntime {
    /// Name for messages (`builtin`, `runc`, …).
    fn name(&self) -> &str;
    /// Creates the container from `bundle/config.json`; returns the init pid. With
    /// `console_socket`, the pty master is sent to that unix socket.
    fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, RuntimeError>;
    /// Lets a created container's process run.
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError>;
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// Deletes a container whose init has exited and been reaped by the caller, leaving
    /// its cgroup to the caller (who removes it in every hierarchy). Runtimes that cannot
    /// do less than a forced delete do that.
    fn delete_exited(&self, id: &str) -> Result<(), RuntimeError> {
        self.delete(id, true)
    }
    fn state(&self, id: &str) -> Result<RuntimeState, RuntimeError>;
    /// Runs `process` (an OCI process json file) in the container; returns its pid
    /// (it is reparented to the caller when the caller is a subreaper).
    fn exec(
        &self,
        id: &str,
        process: &Path,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<i32, RuntimeError>;
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    fn resume(&self, id: &str) -> Result<(), RuntimeError>;
}

/// Where compiled seccomp filters are kept under a runtime state root (see
/// [`seccomp::compile_cached`]), for the built-in runtime and for health probes alike.
pub fn seccomp_cache(state_root: &Path) -> PathBuf {
    state_root.join("seccomp")
}

/// Chooses a runtime by name: `builtin` (default), `runc`, `crun`, or a path to a binary.
pub fn by_name(name: &str, state_root: &Path) -> Result<Box<dyn OciRuntime>, RuntimeError> {
    match name {
        "" | "builtin" | "berth" => Ok(Box::new(
            builtin::Builtin::new(state_root.join("builtin"))
                .with_filter_cache(seccomp_cache(state_root)),
        )),
        other => {
            let bin = external::find_binary(other).ok_or_else(|| RuntimeError::Command {
                runtime: other.to_string(),
                action: "find",
                id: String::new(),
                message: "runtime binary not found in PATH".into(),
            })?;
            let short = Path::new(other)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(Box::new(external::External::new(
                bin,
                state_root.join(short),
            )))
        }
    }
}

/// Sends `fd` (a terminal's master side) to the unix socket at `socket`, as runc's
/// `--console-socket` protocol does: one message, the fd in `SCM_RIGHTS`, a name as data.
pub fn send_fd(socket: &Path, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let stream = std::os::unix::net::UnixStream::connect(socket)?;
    let name = b"/dev/ptmx";
    let iov = [std::io::IoSlice::new(name)];
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Makes the calling process a child subreaper, so orphaned container processes are
/// reparented to it.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits for `pid` (a child, or an orphan reparented to us as subreaper), reaping any other
/// children on the way; returns a shell-style exit code (128+N when killed by signal N).
pub fn wait_pid(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::Pid;
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// Can this kernel run x32 syscalls? (Most distribution kernels are built without the x32
/// ABI.) A getpid with the x32 bit set either works or fails; it cannot do harm.
pub fn kernel_supports_x32() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return false;
        }
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: getpid takes no arguments and touches no memory; with the x32 bit set
        // the kernel either runs it or returns ENOSYS.
        let r = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
        r == libc::c_long::from(std::process::id() as i32)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_failures_are_told_apart_as_runc_crun_and_libcontainer_word_them() {
        use super::StartFailure::*;
        for (words, kind) in [
            (
                "exec: \"nosuch\": executable file not found in $PATH",
                NotFound,
            ),
            ("executable 'nosuch' not found in $PATH", NotFound),
            ("exec /data: no such file or directory", NotFound),
            ("exec /etc/passwd: permission denied", CannotExecute),
            ("exec /bin: is a directory", CannotExecute),
            ("exec format error", CannotExecute),
            ("cgroup: device or resource busy", Other),
        ] {
            assert_eq!(super::classify_start_failure(words), kind, "{words}");
        }
        assert_eq!(NotFound.exit_code(), 127);
        assert_eq!(CannotExecute.exit_code(), 126);
        assert_eq!(Other.exit_code(), 125);
    }
}
