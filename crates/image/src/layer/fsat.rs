//! Descriptor-relative file system steps that never follow a link out of the root:
//! resolving dirs beneath it, making room for an entry, removing trees, listing, xattrs.

use super::*;

pub(super) fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call in this module and nothing else
    // owns it, so the OwnedFd becomes its only owner and closes it exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub(super) fn open_dir_path(path: &Path) -> Result<OwnedFd, LayerError> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(own)
    .map_err(|e| LayerError::Open {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Opens directory `comps` of the tree at `root` with chroot semantics: `..` and symlinks
/// (absolute or relative) never leave `root`. Missing directories are created (0755) when
/// `create`; each one is made in its parent's descriptor, itself resolved the same way.
pub(super) fn resolve_dir(
    root: &OwnedFd,
    comps: &[Vec<u8>],
    create: bool,
) -> Result<OwnedFd, Errno> {
    match open_in_root(root, comps) {
        Err(Errno::ENOENT) if create => {}
        other => return other,
    }
    let mut cur = open_in_root(root, &[])?;
    for i in 0..comps.len() {
        cur = match open_in_root(root, &comps[..=i]) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(
                    Some(cur.as_raw_fd()),
                    comps[i].as_slice(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    // EEXIST: a dangling symlink; the retry below reports it.
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                open_in_root(root, &comps[..=i])?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// `openat2(root, comps, O_PATH | O_DIRECTORY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
pub(super) fn open_in_root(root: &OwnedFd, comps: &[Vec<u8>]) -> Result<OwnedFd, Errno> {
    let path = if comps.is_empty() {
        b".".to_vec()
    } else {
        join(comps)
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a concurrent rename raced the lookup; the kernel asks us to retry.
    let mut tries = 0;
    loop {
        match openat2(root.as_raw_fd(), path.as_slice(), how) {
            Err(Errno::EAGAIN) if tries < 32 => tries += 1,
            other => return other.map(own),
        }
    }
}

/// A readable descriptor of the directory `fd` refers to (`fd` may be `O_PATH`).
pub(super) fn reopen_dir(fd: RawFd) -> Result<OwnedFd, Errno> {
    openat(
        Some(fd),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(own)
}

/// Opens child directory `name` of `dir`, refusing to follow a symlink.
pub(super) fn open_child_dir(dir: RawFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    openat(
        Some(dir),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(own)
}

pub(super) fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// An overlayfs whiteout: a character device 0:0.
pub(super) fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Clears `leaf` in `dir` for a new entry: a non-directory is unlinked; a directory is kept
/// (returns true) when `keep_dir`, else removed with its contents.
pub(super) fn prepare_slot(dir: RawFd, leaf: &[u8], keep_dir: bool) -> Result<bool, Errno> {
    match fstatat(Some(dir), leaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
        Ok(st) if is_dir(&st) => {
            if keep_dir {
                Ok(true)
            } else {
                remove_all_at(dir, leaf)?;
                Ok(false)
            }
        }
        Ok(_) => {
            unlinkat(Some(dir), leaf, UnlinkatFlags::NoRemoveDir)?;
            Ok(false)
        }
    }
}

/// `rm -rf dir/name` by descriptor, never following a symlink. A missing entry is fine.
/// Iterative, so depth cannot exhaust the stack.
pub(super) fn remove_all_at(dir: RawFd, name: &[u8]) -> Result<(), Errno> {
    /// A directory being emptied: its descriptor, its name in the parent, what is left.
    struct Frame {
        fd: OwnedFd,
        name: Vec<u8>,
        children: std::vec::IntoIter<Vec<u8>>,
    }
    // Unlinks a non-directory, or opens a directory to be emptied.
    let open = |parent: RawFd, name: &[u8]| -> Result<Option<Frame>, Errno> {
        match unlinkat(Some(parent), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::EISDIR) => {}
            Err(e) => return Err(e),
        }
        let fd = open_child_dir(parent, name)?;
        let children = list_names(fd.as_raw_fd())?.into_iter();
        Ok(Some(Frame {
            fd,
            name: name.to_vec(),
            children,
        }))
    };
    let mut stack: Vec<Frame> = open(dir, name)?.into_iter().collect();
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.children.next() {
            let d = top.fd.as_raw_fd();
            if let Some(frame) = open(d, &child)? {
                if stack.len() >= MAX_DEPTH {
                    return Err(Errno::ENAMETOOLONG);
                }
                stack.push(frame);
            }
            continue;
        }
        let done = stack.pop().expect("top exists");
        drop(done.fd);
        let parent = stack.last().map_or(dir, |f| f.fd.as_raw_fd());
        match unlinkat(Some(parent), done.name.as_slice(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An open `DIR*`, closed on drop.
pub(super) struct DirStream(std::ptr::NonNull<libc::DIR>);

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful fdopendir and is closed only here.
        unsafe {
            libc::closedir(self.0.as_ptr());
        }
    }
}

/// The entry names of directory `dir` (any descriptor of it), without `.` and `..`, sorted.
pub(super) fn list_names(dir: RawFd) -> Result<Vec<Vec<u8>>, Errno> {
    let fd = reopen_dir(dir)?;
    let raw = fd.as_raw_fd();
    // SAFETY: `raw` is an open directory descriptor; fdopendir takes it over on success.
    let dirp = unsafe { libc::fdopendir(raw) };
    let Some(dirp) = std::ptr::NonNull::new(dirp) else {
        return Err(Errno::last());
    };
    // The stream owns the descriptor now.
    std::mem::forget(fd);
    let stream = DirStream(dirp);
    let mut names = Vec::new();
    loop {
        Errno::clear();
        // SAFETY: `stream.0` is an open DIR* used by this thread only.
        let ent = unsafe { libc::readdir(stream.0.as_ptr()) };
        if ent.is_null() {
            match Errno::last_raw() {
                0 => break,
                e => return Err(Errno::from_raw(e)),
            }
        }
        // SAFETY: readdir returned a non-null dirent, valid until the next readdir or closedir
        // on this stream; its d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// `/proc/self/fd/<dir>/<leaf>`: lets the path-only xattr calls reach `leaf` (a symlink or
/// node, which cannot be opened for fsetxattr) through the trusted descriptor `dir`.
pub(super) fn proc_child(dir: RawFd, leaf: &[u8]) -> Result<CString, Errno> {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(leaf);
    CString::new(p).map_err(|_| Errno::EINVAL)
}

/// Where an xattr call goes: an open descriptor, or a path whose last component is not followed.
#[derive(Clone, Copy)]
pub(super) enum XTarget<'a> {
    Fd(RawFd),
    Path(&'a CStr),
}

pub(super) fn xattr_set(t: XTarget<'_>, key: &CStr, value: &[u8]) -> Result<(), Errno> {
    let r = match t {
        XTarget::Fd(fd) => {
            // SAFETY: `key` is NUL-terminated and `value` is a live slice of value.len() bytes;
            // the kernel only reads them during the call.
            unsafe { libc::fsetxattr(fd, key.as_ptr(), value.as_ptr().cast(), value.len(), 0) }
        }
        XTarget::Path(p) => {
            // SAFETY: as above, and `p` is a NUL-terminated path.
            unsafe {
                libc::lsetxattr(
                    p.as_ptr(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }
        }
    };
    Errno::result(r).map(drop)
}

/// One xattr's value; `None` when it is not set or xattrs are not supported.
pub(super) fn xattr_get(t: XTarget<'_>, key: &CStr) -> Result<Option<Vec<u8>>, Errno> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let r = match t {
            XTarget::Fd(fd) => {
                // SAFETY: `key` is NUL-terminated; `buf` is writable for buf.len() bytes (a
                // zero length only asks for the size).
                unsafe { libc::fgetxattr(fd, key.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
            }
            XTarget::Path(p) => {
                // SAFETY: as above, and `p` is a NUL-terminated path.
                unsafe {
                    libc::lgetxattr(p.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                }
            }
        };
        match Errno::result(r) {
            Ok(n) if buf.is_empty() && n > 0 => buf = vec![0; n as usize],
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(Some(buf));
            }
            Err(Errno::ENODATA | Errno::EOPNOTSUPP) => return Ok(None),
            // Grew between the two calls.
            Err(Errno::ERANGE) => buf.clear(),
            Err(e) => return Err(e),
        }
    }
}

/// All xattrs, sorted by name; empty when xattrs are not supported.
pub(super) fn xattr_all(t: XTarget<'_>) -> Result<Vec<(CString, Vec<u8>)>, Errno> {
    let mut buf: Vec<u8> = Vec::new();
    let names = loop {
        let r = match t {
            XTarget::Fd(fd) => {
                // SAFETY: `buf` is writable for buf.len() bytes (zero only asks for the size).
                unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) }
            }
            XTarget::Path(p) => {
                // SAFETY: as above, and `p` is a NUL-terminated path.
                unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
            }
        };
        match Errno::result(r) {
            Ok(0) => return Ok(Vec::new()),
            Ok(n) if buf.is_empty() => buf = vec![0; n as usize],
            Ok(n) => {
                buf.truncate(n as usize);
                break buf;
            }
            Err(Errno::EOPNOTSUPP) => return Ok(Vec::new()),
            Err(Errno::ERANGE) => buf.clear(),
            Err(e) => return Err(e),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let key = CString::new(name).map_err(|_| Errno::EINVAL)?;
        if let Some(value) = xattr_get(t, &key)? {
            out.push((key, value));
        }
    }
    out.sort();
    Ok(out)
}
