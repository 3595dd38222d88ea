//! Persistent network namespaces: a namespace made on a thread of its own and kept alive
//! by a bind mount of it on a file (as `ip netns add` does), so the container's runtime
//! can join it by path and it outlives any process in it until [`remove`].

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::{io, NetError, Result};

/// Makes a new network namespace and pins it at `path` (its parent dir must exist).
pub fn create(path: &Path) -> Result<()> {
    std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    let target = path.to_path_buf();
    // unshare moves only the calling thread: a thread of its own, which then ends.
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Io {
            what: "unshare(CLONE_NEWNET)".into(),
            source: e.into(),
        })?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| NetError::Io {
            what: format!("pinning the network namespace at {}", target.display()),
            source: e.into(),
        })
    })
    .join()
    .map_err(|_| NetError::Invalid("the namespace thread panicked".into()))?;
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Unpins and removes the namespace at `path`; once no process is in it, the kernel
/// destroys it with its interfaces (a veth's host end goes with it). Missing is fine.
pub fn remove(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(NetError::Io {
                what: format!("unmounting {}", path.display()),
                source: e.into(),
            })
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", path.display()))(e)),
    }
}

/// Runs `f` on a thread that has entered the namespace at `path`.
pub fn within<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Io {
            what: "entering the network namespace".into(),
            source: e.into(),
        })?;
        f()
    })
    .join()
    .map_err(|_| NetError::Invalid("the namespace thread panicked".into()))?
}
