//! Persistent namespaces (network, and a pod's ipc and uts): a namespace made on a thread of its own and kept alive
//! by a bind mount of it on a file (as `ip netns add` does), so the container's runtime
//! can join it by path and it outlives any process in it until [`remove`].

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::{io, NetError, Result};

/// Makes a new network namespace and pins it at `path` (its parent dir must exist).
pub fn create(path: &Path) -> Result<()> {
    pin_new(path, CloneFlags::CLONE_NEWNET, || Ok(()))
}

/// Makes a new namespace of one kind (network, ipc or uts: kinds a thread can unshare
/// alone), runs `init` inside it (to set a hostname or a sysctl), and pins it at `path`
/// (its parent dir must exist), as CRI-O's `pinns` does for a pod's namespaces.
pub fn pin_new(
    path: &Path,
    kind: CloneFlags,
    init: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<()> {
    let name = match kind {
        CloneFlags::CLONE_NEWNET => "net",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUTS => "uts",
        _ => {
            return Err(NetError::Invalid(format!(
                "cannot pin a {kind:?} namespace"
            )))
        }
    };
    std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    let target = path.to_path_buf();
    // unshare moves only the calling thread: a thread of its own, which then ends.
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(kind).map_err(|e| NetError::Io {
            what: format!("unshare({kind:?})"),
            source: e.into(),
        })?;
        init()?;
        mount(
            Some(format!("/proc/thread-self/ns/{name}").as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| NetError::Io {
            what: format!("pinning the {name} namespace at {}", target.display()),
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

/// Pins the namespace at `source` (`/proc/PID/ns/KIND`) at `path` (its parent dir must
/// exist), so it can be joined by path.
pub fn pin_existing(path: &Path, source: &Path) -> Result<()> {
    std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    let pinned = mount(
        Some(source),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| NetError::Io {
        what: format!("pinning {} at {}", source.display(), path.display()),
        source: e.into(),
    });
    if pinned.is_err() {
        let _ = std::fs::remove_file(path);
    }
    pinned
}

/// Whether `path` is a pinned namespace (a bind mount of one: nsfs), as opposed to a
/// plain file or nothing (a pin that a reboot or an unmount took away).
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
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
