//! Image layers: tar streams to directories and back.
//!
//! [`apply_tar`] unpacks an OCI/Docker layer (or a `cp` archive) into a directory,
//! [`write_upper_tar`] turns an overlayfs upper dir back into a layer, [`write_tree_tar`]
//! archives a whole tree (`export`, `cp` out) and [`upper_changes`] is `docker diff`.
//! Tars are untrusted. Every entry is reached from a descriptor of the destination: its parent
//! directory is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..` and
//! symlinks (absolute or relative, already on disk or planted by the same tar) resolve as if the
//! destination were `/`, and the last component is then handled with `*at` calls that never
//! follow it. Names that climb out of the root, absolute names and hardlinks to outside are
//! refused outright. This module must never create, change or delete anything outside the
//! destination; the writers walk by descriptor too and never follow a symlink.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, major, makedev, minor, mkdirat, mknodat, utimensat,
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Whiteout prefix: `.wh.NAME` deletes `NAME` from lower layers.
const WH_PREFIX: &[u8] = b".wh.";
/// AUFS metadata prefix; only `.wh..wh..opq` carries meaning, the rest is skipped.
const WH_META_PREFIX: &[u8] = b".wh..wh.";
/// Opaque-directory marker: hide everything the lower layers have in this directory.
const WH_OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// Deepest directory nesting the recursive walkers descend into. Paths in a tar cannot nest
/// deeper than about PATH_MAX / 2, but a container can build any depth; the limit keeps a
/// hostile tree from exhausting the stack. Deeper trees fail with ENAMETOOLONG.
const MAX_DEPTH: usize = 1024;
/// Upper-dir xattrs whose meaning lives outside the upper dir: a tar of the upper alone
/// would be wrong, so writing one is refused.
const UNSUPPORTED_OVERLAY_XATTRS: [&[u8]; 2] =
    [b"trusted.overlay.redirect", b"trusted.overlay.metacopy"];

/// What went wrong applying or writing a layer. Each variant names the tar entry (as written
/// in the archive) or the host path involved.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("reading layer tar into {dest}: {source}")]
    Archive { dest: PathBuf, source: io::Error },
    #[error("layer entry {path}: absolute paths are not allowed")]
    AbsolutePath { path: String },
    #[error("layer entry {path}: path escapes the destination")]
    PathEscapes { path: String },
    #[error("layer entry {path}: invalid name")]
    InvalidName { path: String },
    #[error("layer entry {path}: hardlink target {target} is outside the destination")]
    LinkEscapes { path: String, target: String },
    #[error("layer entry {path}: device nodes are not allowed here")]
    DeviceNotAllowed { path: String },
    #[error("layer entry {path}: unsupported entry type {kind}")]
    UnsupportedType { path: String, kind: String },
    #[error("layer entry {path}: {op}: {source}")]
    Entry {
        path: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("{op} {path}: {source}")]
    Walk {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("{path}: overlay xattr {xattr} cannot be written as a layer")]
    UnsupportedOverlay { path: PathBuf, xattr: String },
    #[error("writing tar entry for {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl LayerError {
    /// True when the archive itself is at fault (malformed, unsafe or unsupported entries:
    /// invalid input, HTTP 400); false for failures of the host (internal, HTTP 500).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            LayerError::Archive { .. }
                | LayerError::AbsolutePath { .. }
                | LayerError::PathEscapes { .. }
                | LayerError::InvalidName { .. }
                | LayerError::LinkEscapes { .. }
                | LayerError::DeviceNotAllowed { .. }
                | LayerError::UnsupportedType { .. }
        )
    }
}

/// How [`apply_tar`] treats devices, whiteouts and owners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// allow block/char device nodes (true for image layers, false for `cp`)
    pub allow_devices: bool,
    /// convert OCI whiteouts into overlayfs whiteouts (char dev 0:0 for `.wh.NAME`, xattr
    /// `trusted.overlay.opaque=y` for `.wh..wh..opq`) instead of deleting: true when unpacking
    /// an image layer into its own layer dir used as an overlay lowerdir; false when applying
    /// onto a full tree (then `.wh.NAME` removes NAME and `.wh..wh..opq` empties the dir of
    /// entries not from this same layer).
    pub overlay_whiteouts: bool,
    /// keep uid/gid from the tar (true); false = files owned by the caller
    pub preserve_owner: bool,
}

/// What [`apply_tar`] did: entries applied (including whiteouts) and file bytes written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Unpack an uncompressed tar stream into `dest` (an existing directory).
pub fn apply_tar<R: Read>(
    reader: R,
    dest: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, LayerError> {
    let root = open_dir_path(dest)?;
    let mut applier = Applier {
        root,
        dest,
        opts,
        stats: ApplyStats::default(),
        dir_times: BTreeMap::new(),
        written: HashSet::new(),
        buf: vec![0; 64 * 1024],
        parent: None,
        stale: false,
    };
    let archive_err = |source| LayerError::Archive {
        dest: dest.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(archive_err)? {
        applier.apply(entry.map_err(archive_err)?)?;
    }
    applier.finish()?;
    Ok(applier.stats)
}

/// Write the overlayfs upper dir `upper` as an OCI layer tar to `out`: overlay whiteouts
/// (char dev 0:0) become `.wh.NAME` entries, opaque dirs (xattr trusted.overlay.opaque=y) get a
/// `.wh..wh..opq` entry. Entries sorted by path, hardlinks within the tree written as tar
/// hardlinks, xattrs other than trusted.overlay.* kept as PAX. If `mtime_clamp` is Some(t),
/// no mtime in the output is later than t (reproducibility).
pub fn write_upper_tar<W: Write>(
    upper: &Path,
    out: W,
    mtime_clamp: Option<i64>,
) -> Result<(), LayerError> {
    TreeWriter::new(upper, out, true, mtime_clamp).run()
}

/// Write a whole directory tree as a tar (for `export` and `cp` out) — same walker, no whiteout translation.
pub fn write_tree_tar<W: Write>(root: &Path, out: W) -> Result<(), LayerError> {
    TreeWriter::new(root, out, false, None).run()
}

/// One line of `docker diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    /// The `Kind` number of the Docker API's `/containers/{id}/changes`.
    pub fn api_code(self) -> u8 {
        match self {
            ChangeKind::Changed => 0,
            ChangeKind::Added => 1,
            ChangeKind::Deleted => 2,
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Added => "A",
            ChangeKind::Changed => "C",
            ChangeKind::Deleted => "D",
        })
    }
}

/// A changed path, absolute in the container (`/etc/passwd`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

/// `docker diff`: changes in an overlay upper dir relative to its lower dirs (top-most first).
/// A path in upper that exists in some lower is C, else A; a whiteout is D; an opaque dir is C
/// and its lower-only children are D. Parent dirs of changed files appear as C, like Docker. Sorted by path.
pub fn upper_changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, LayerError> {
    let root = open_dir_path(upper)?;
    let mut diff = Differ {
        upper,
        lowers,
        out: Vec::new(),
    };
    diff.walk(root)?;
    let mut out = diff.out;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Applying

/// The kinds of tar entry that [`apply_tar`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Node(SFlag),
}

/// Metadata of one entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
    dev: libc::dev_t,
}

/// Why a name cannot be cleaned.
enum BadName {
    Absolute,
    Escapes,
    Nul,
}

/// Splits a tar name into normal components: empty and `.` components are dropped and `..`
/// pops. A leading `/`, a `..` above the root or a NUL byte is refused.
fn clean_name(raw: &[u8]) -> Result<Vec<Vec<u8>>, BadName> {
    if raw.first() == Some(&b'/') {
        return Err(BadName::Absolute);
    }
    if raw.contains(&0) {
        return Err(BadName::Nul);
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(BadName::Escapes);
                }
            }
            _ => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn entry_err<'n>(name: &'n str, op: &'static str) -> impl FnOnce(Errno) -> LayerError + 'n {
    move |e| LayerError::Entry {
        path: name.to_string(),
        op,
        source: e.into(),
    }
}

struct Applier<'a> {
    root: OwnedFd,
    dest: &'a Path,
    opts: &'a ApplyOptions,
    stats: ApplyStats,
    /// Directory mtimes, set last so that writing children does not disturb them.
    dir_times: BTreeMap<Vec<Vec<u8>>, TimeSpec>,
    /// Paths (and their parents) written by this layer, for opaque dirs in full-tree mode.
    written: HashSet<Vec<u8>>,
    buf: Vec<u8>,
    /// The last parent directory opened, kept for the entries after it (a tar lists a
    /// directory's files together): one `openat2` per directory instead of per file.
    parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
    /// Something in the tree was removed or replaced, which may change what a path
    /// resolves to: the cached parent is not used again.
    stale: bool,
}

impl Applier<'_> {
    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let ty = entry.header().entry_type();
        if ty.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let name = lossy(&raw);
        let comps = clean_name(&raw).map_err(|e| match e {
            BadName::Absolute => LayerError::AbsolutePath { path: name.clone() },
            BadName::Escapes => LayerError::PathEscapes { path: name.clone() },
            BadName::Nul => LayerError::InvalidName { path: name.clone() },
        })?;
        // Refuse unwanted types before anything touches the tree.
        let kind = match ty {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Kind::File
            }
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::Hardlink,
            tar::EntryType::Fifo => Kind::Node(SFlag::S_IFIFO),
            tar::EntryType::Char | tar::EntryType::Block => {
                if !self.opts.allow_devices {
                    return Err(LayerError::DeviceNotAllowed { path: name });
                }
                if ty == tar::EntryType::Char {
                    Kind::Node(SFlag::S_IFCHR)
                } else {
                    Kind::Node(SFlag::S_IFBLK)
                }
            }
            other => {
                return Err(LayerError::UnsupportedType {
                    path: name,
                    kind: format!("{other:?} ({:?})", other.as_byte() as char),
                })
            }
        };
        let meta = read_meta(&mut entry, &name)?;
        self.stats.entries += 1;

        let Some((leaf, parent)) = comps.split_last() else {
            return self.apply_root(kind, &meta, &name);
        };
        if leaf == WH_OPAQUE {
            return self.opaque(parent, &name);
        }
        if leaf.starts_with(WH_META_PREFIX) || comps[0].starts_with(WH_META_PREFIX) {
            // AUFS bookkeeping (`.wh..wh.plnk` and friends): not content.
            return Ok(());
        }
        if let Some(target) = leaf.strip_prefix(WH_PREFIX) {
            if target.is_empty() || target == b"." || target == b".." {
                return Err(LayerError::InvalidName { path: name });
            }
            return self.whiteout(parent, target, &meta, &name);
        }

        if !self.opts.overlay_whiteouts {
            for i in 1..=comps.len() {
                self.written.insert(join(&comps[..i]));
            }
        }
        match kind {
            Kind::Hardlink => self.make_hardlink(&comps, &entry, &name),
            Kind::Dir => {
                let p = self.parent_dir(parent, &name)?;
                self.make_dir(p, leaf, &comps, &meta, &name)
            }
            Kind::File => {
                let p = self.parent_dir(parent, &name)?;
                self.make_file(p, leaf, &mut entry, &meta, &name)
            }
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| LayerError::InvalidName { path: name.clone() })?
                    .into_owned();
                let p = self.parent_dir(parent, &name)?;
                self.make_symlink(p, leaf, &target, &meta, &name)
            }
            Kind::Node(sflag) => {
                let p = self.parent_dir(parent, &name)?;
                self.make_node(p, leaf, sflag, &meta, &name)
            }
        }
    }

    /// `./` itself: only a directory entry makes sense; it updates the destination's metadata.
    fn apply_root(&mut self, kind: Kind, meta: &Meta, name: &str) -> Result<(), LayerError> {
        if kind != Kind::Dir {
            return Err(LayerError::InvalidName {
                path: name.to_string(),
            });
        }
        self.set_fd_meta(self.root.as_raw_fd(), meta, name)?;
        self.dir_times.insert(Vec::new(), meta.mtime);
        Ok(())
    }

    /// Opens (creating as needed) the parent directory of an entry, inside the root. The
    /// descriptor stays open (cached) until the next entry asks for another directory.
    fn parent_dir(&mut self, parent: &[Vec<u8>], name: &str) -> Result<RawFd, LayerError> {
        if std::mem::take(&mut self.stale) {
            self.parent = None;
        }
        if let Some((comps, fd)) = &self.parent {
            if comps.as_slice() == parent {
                return Ok(fd.as_raw_fd());
            }
        }
        let fd = resolve_dir(&self.root, parent, true)
            .map_err(entry_err(name, "open parent directory"))?;
        let raw = fd.as_raw_fd();
        self.parent = Some((parent.to_vec(), fd));
        Ok(raw)
    }

    /// Makes `leaf` in `p` with `create`, which fails with EEXIST when something is in the
    /// way: that is removed (a directory with its contents) and `create` tried again. A
    /// fresh layer dir has nothing in the way, so this costs no lookup there.
    fn create_in_slot(
        &mut self,
        p: RawFd,
        leaf: &[u8],
        mut create: impl FnMut() -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        match create() {
            Err(Errno::EEXIST) => {
                self.stale = true;
                prepare_slot(p, leaf, false)?;
                create()
            }
            other => other,
        }
    }

    fn make_dir(
        &mut self,
        p: RawFd,
        leaf: &[u8],
        comps: &[Vec<u8>],
        meta: &Meta,
        name: &str,
    ) -> Result<(), LayerError> {
        let mkdir = || mkdirat(Some(p), leaf, Mode::from_bits_truncate(0o700));
        match mkdir() {
            // An existing directory is kept (its metadata updated), anything else replaced.
            Err(Errno::EEXIST) => {
                if !prepare_slot(p, leaf, true).map_err(entry_err(name, "replace"))? {
                    self.stale = true;
                    mkdir().map_err(entry_err(name, "create directory"))?;
                }
            }
            other => other.map_err(entry_err(name, "create directory"))?,
        }
        let fd = openat(
            Some(p),
            leaf,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(own)
        .map_err(entry_err(name, "open directory"))?;
        self.set_fd_meta(fd.as_raw_fd(), meta, name)?;
        self.dir_times.insert(comps.to_vec(), meta.mtime);
        Ok(())
    }

    fn make_file<R: Read>(
        &mut self,
        p: RawFd,
        leaf: &[u8],
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        name: &str,
    ) -> Result<(), LayerError> {
        let mut fd = None;
        self.create_in_slot(p, leaf, || {
            fd = Some(own(openat(
                Some(p),
                leaf,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )?));
            Ok(())
        })
        .map_err(entry_err(name, "create file"))?;
        let mut file = File::from(fd.expect("created"));
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerError::Archive {
                        dest: self.dest.to_path_buf(),
                        source,
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|source| LayerError::Entry {
                    path: name.to_string(),
                    op: "write file",
                    source,
                })?;
            self.stats.bytes += n as u64;
        }
        let fd = file.as_raw_fd();
        self.set_fd_meta(fd, meta, name)?;
        futimens(fd, &meta.mtime, &meta.mtime).map_err(entry_err(name, "set mtime"))
    }

    fn make_symlink(
        &mut self,
        p: RawFd,
        leaf: &[u8],
        target: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), LayerError> {
        self.create_in_slot(p, leaf, || symlinkat(target, Some(p), leaf))
            .map_err(entry_err(name, "create symlink"))?;
        self.set_at_meta(p, leaf, meta, false, name)
    }

    fn make_node(
        &mut self,
        p: RawFd,
        leaf: &[u8],
        sflag: SFlag,
        meta: &Meta,
        name: &str,
    ) -> Result<(), LayerError> {
        let dev = if sflag == SFlag::S_IFIFO { 0 } else { meta.dev };
        self.create_in_slot(p, leaf, || {
            mknodat(Some(p), leaf, sflag, Mode::from_bits_truncate(0o600), dev)
        })
        .map_err(entry_err(name, "create node"))?;
        self.set_at_meta(p, leaf, meta, true, name)
    }

    fn make_hardlink<R: Read>(
        &mut self,
        comps: &[Vec<u8>],
        entry: &tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), LayerError> {
        let raw = entry
            .link_name_bytes()
            .ok_or_else(|| LayerError::InvalidName {
                path: name.to_string(),
            })?
            .into_owned();
        let escapes = || LayerError::LinkEscapes {
            path: name.to_string(),
            target: lossy(&raw),
        };
        let target = clean_name(&raw).map_err(|_| escapes())?;
        let Some((tleaf, tparent)) = target.split_last() else {
            return Err(escapes());
        };
        if target == comps {
            // A link to itself: the file is already there.
            return Ok(());
        }
        let tfd = resolve_dir(&self.root, tparent, false)
            .map_err(entry_err(name, "open hardlink target directory"))?;
        let (leaf, parent) = comps.split_last().expect("caller checked non-empty");
        let p = self.parent_dir(parent, name)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        self.create_in_slot(p, leaf, || {
            linkat(
                Some(tfd.as_raw_fd()),
                tleaf.as_slice(),
                Some(p),
                leaf.as_slice(),
                AtFlags::empty(),
            )
        })
        .map_err(entry_err(name, "create hardlink"))
    }

    /// `.wh.NAME`: an overlay whiteout, or delete NAME from the tree.
    fn whiteout(
        &mut self,
        parent: &[Vec<u8>],
        target: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), LayerError> {
        if self.opts.overlay_whiteouts {
            let p = self.parent_dir(parent, name)?;
            self.create_in_slot(p, target, || {
                mknodat(Some(p), target, SFlag::S_IFCHR, Mode::empty(), 0)
            })
            .map_err(entry_err(name, "create whiteout"))?;
            if self.opts.preserve_owner {
                fchownat(
                    Some(p),
                    target,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(entry_err(name, "set owner"))?;
            }
            return Ok(());
        }
        let pfd = match resolve_dir(&self.root, parent, false) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(entry_err(name, "open parent directory")(e)),
        };
        self.stale = true;
        remove_all_at(pfd.as_raw_fd(), target).map_err(entry_err(name, "remove"))
    }

    /// `.wh..wh..opq`: mark the directory opaque, or empty it of what this layer did not write.
    fn opaque(&mut self, dir: &[Vec<u8>], name: &str) -> Result<(), LayerError> {
        if self.opts.overlay_whiteouts {
            let fd = resolve_dir(&self.root, dir, true)
                .and_then(|fd| reopen_dir(fd.as_raw_fd()))
                .map_err(entry_err(name, "open directory"))?;
            return xattr_set(XTarget::Fd(fd.as_raw_fd()), OPAQUE_XATTR, b"y")
                .map_err(entry_err(name, "mark directory opaque"));
        }
        let fd = match resolve_dir(&self.root, dir, false) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(entry_err(name, "open directory")(e)),
        };
        self.stale = true;
        self.prune(fd.as_raw_fd(), dir)
            .map_err(entry_err(name, "empty opaque directory"))
    }

    /// Removes from directory `dir` (at `start`) everything not written by this layer,
    /// descending into the directories it keeps. Iterative, so depth cannot exhaust the stack.
    fn prune(&self, dir: RawFd, start: &[Vec<u8>]) -> Result<(), Errno> {
        let mut prefix = start.to_vec();
        let mut stack = vec![(reopen_dir(dir)?, list_names(dir)?.into_iter())];
        while let Some((fd, children)) = stack.last_mut() {
            let Some(child) = children.next() else {
                stack.pop();
                if !stack.is_empty() {
                    prefix.pop();
                }
                continue;
            };
            let d = fd.as_raw_fd();
            prefix.push(child.clone());
            if !self.written.contains(&join(&prefix)) {
                remove_all_at(d, &child)?;
            } else if is_dir(&fstatat(
                Some(d),
                child.as_slice(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?) {
                if stack.len() > MAX_DEPTH {
                    return Err(Errno::ENAMETOOLONG);
                }
                let sub = open_child_dir(d, &child)?;
                let names = list_names(sub.as_raw_fd())?;
                stack.push((sub, names.into_iter()));
                // `prefix` now names the directory on top of the stack.
                continue;
            }
            prefix.pop();
        }
        Ok(())
    }

    /// Owner, mode and xattrs through a descriptor (files and directories).
    fn set_fd_meta(&self, fd: RawFd, meta: &Meta, name: &str) -> Result<(), LayerError> {
        // Owner first: chown clears setuid bits and file capabilities.
        if self.opts.preserve_owner {
            fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(entry_err(name, "set owner"))?;
        }
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(entry_err(name, "set mode"))?;
        for (key, value) in &meta.xattrs {
            match xattr_set(XTarget::Fd(fd), key, value) {
                Ok(()) | Err(Errno::EOPNOTSUPP) => {}
                Err(e) => return Err(entry_err(name, "set xattr")(e)),
            }
        }
        Ok(())
    }

    /// Owner, mode, xattrs and mtime of `leaf` in `dir` without following it (symlinks, nodes).
    fn set_at_meta(
        &self,
        dir: RawFd,
        leaf: &[u8],
        meta: &Meta,
        chmod: bool,
        name: &str,
    ) -> Result<(), LayerError> {
        if self.opts.preserve_owner {
            fchownat(
                Some(dir),
                leaf,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(entry_err(name, "set owner"))?;
        }
        if chmod {
            fchmodat(
                Some(dir),
                leaf,
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::NoFollowSymlink,
            )
            .map_err(entry_err(name, "set mode"))?;
        }
        if !meta.xattrs.is_empty() {
            let path = proc_child(dir, leaf).map_err(entry_err(name, "set xattr"))?;
            for (key, value) in &meta.xattrs {
                // The kernel refuses user.* xattrs on symlinks and nodes with EPERM.
                match xattr_set(XTarget::Path(&path), key, value) {
                    Ok(()) | Err(Errno::EOPNOTSUPP | Errno::EPERM) => {}
                    Err(e) => return Err(entry_err(name, "set xattr")(e)),
                }
            }
        }
        utimensat(
            Some(dir),
            leaf,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(entry_err(name, "set mtime"))
    }

    /// Directory mtimes, once all their children are written.
    fn finish(&mut self) -> Result<(), LayerError> {
        for (comps, t) in &self.dir_times {
            let name = lossy(&join(comps));
            let Some((leaf, parent)) = comps.split_last() else {
                futimens(self.root.as_raw_fd(), t, t).map_err(entry_err(&name, "set mtime"))?;
                continue;
            };
            let pfd = match resolve_dir(&self.root, parent, false) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                Err(e) => return Err(entry_err(&name, "open parent directory")(e)),
            };
            let p = pfd.as_raw_fd();
            match fstatat(Some(p), leaf.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                // Replaced by a later entry with something else: not ours to touch.
                Ok(st) if !is_dir(&st) => continue,
                Err(Errno::ENOENT) => continue,
                Ok(_) => {}
                Err(e) => return Err(entry_err(&name, "stat directory")(e)),
            }
            utimensat(
                Some(p),
                leaf.as_slice(),
                t,
                t,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(entry_err(&name, "set mtime"))?;
        }
        Ok(())
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, LayerError> {
    let bad = |what: &str| LayerError::Entry {
        path: name.to_string(),
        op: "read header",
        source: io::Error::new(io::ErrorKind::InvalidData, format!("invalid {what}")),
    };
    let header = entry.header();
    let mode = header.mode().map_err(|_| bad("mode"))? & 0o7777;
    let mut uid = header.uid().map_err(|_| bad("uid"))?;
    let mut gid = header.gid().map_err(|_| bad("gid"))?;
    let mtime = header.mtime().map_err(|_| bad("mtime"))?;
    let mut mtime = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    let mut xattrs = Vec::new();
    let exts = entry.pax_extensions().map_err(|source| LayerError::Entry {
        path: name.to_string(),
        op: "read pax header",
        source,
    })?;
    if let Some(exts) = exts {
        for ext in exts {
            let ext = ext.map_err(|source| LayerError::Entry {
                path: name.to_string(),
                op: "read pax header",
                source,
            })?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            if let Some(xname) = key.strip_prefix(PAX_XATTR_PREFIX) {
                // trusted.overlay.* would steer the overlay mount; it is never layer content.
                if xname.starts_with(OVERLAY_XATTR_PREFIX) {
                    continue;
                }
                let xname = CString::new(xname).map_err(|_| bad("xattr name"))?;
                xattrs.push((xname, value.to_vec()));
            } else if key == b"uid" {
                uid = parse_num(value).ok_or_else(|| bad("pax uid"))?;
            } else if key == b"gid" {
                gid = parse_num(value).ok_or_else(|| bad("pax gid"))?;
            } else if key == b"mtime" {
                mtime = parse_pax_time(value).ok_or_else(|| bad("pax mtime"))?;
            }
        }
    }
    Ok(Meta {
        mode,
        uid: u32::try_from(uid).map_err(|_| bad("uid"))?,
        gid: u32::try_from(gid).map_err(|_| bad("gid"))?,
        mtime,
        xattrs,
        dev: makedev(u64::from(major), u64::from(minor)),
    })
}

fn parse_num(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// PAX times are decimal seconds with an optional fraction, possibly negative.
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let neg = int.starts_with('-');
    let mut secs: i64 = int.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    if neg && nanos > 0 {
        secs -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some(TimeSpec::new(secs, nanos))
}

// ---------------------------------------------------------------------------------------------
// Descriptor helpers

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call in this module and nothing else
    // owns it, so the OwnedFd becomes its only owner and closes it exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn open_dir_path(path: &Path) -> Result<OwnedFd, LayerError> {
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
fn resolve_dir(root: &OwnedFd, comps: &[Vec<u8>], create: bool) -> Result<OwnedFd, Errno> {
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
fn open_in_root(root: &OwnedFd, comps: &[Vec<u8>]) -> Result<OwnedFd, Errno> {
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
fn reopen_dir(fd: RawFd) -> Result<OwnedFd, Errno> {
    openat(
        Some(fd),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(own)
}

/// Opens child directory `name` of `dir`, refusing to follow a symlink.
fn open_child_dir(dir: RawFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    openat(
        Some(dir),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(own)
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// An overlayfs whiteout: a character device 0:0.
fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Clears `leaf` in `dir` for a new entry: a non-directory is unlinked; a directory is kept
/// (returns true) when `keep_dir`, else removed with its contents.
fn prepare_slot(dir: RawFd, leaf: &[u8], keep_dir: bool) -> Result<bool, Errno> {
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
fn remove_all_at(dir: RawFd, name: &[u8]) -> Result<(), Errno> {
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
struct DirStream(std::ptr::NonNull<libc::DIR>);

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful fdopendir and is closed only here.
        unsafe {
            libc::closedir(self.0.as_ptr());
        }
    }
}

/// The entry names of directory `dir` (any descriptor of it), without `.` and `..`, sorted.
fn list_names(dir: RawFd) -> Result<Vec<Vec<u8>>, Errno> {
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
fn proc_child(dir: RawFd, leaf: &[u8]) -> Result<CString, Errno> {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(leaf);
    CString::new(p).map_err(|_| Errno::EINVAL)
}

/// Where an xattr call goes: an open descriptor, or a path whose last component is not followed.
#[derive(Clone, Copy)]
enum XTarget<'a> {
    Fd(RawFd),
    Path(&'a CStr),
}

fn xattr_set(t: XTarget<'_>, key: &CStr, value: &[u8]) -> Result<(), Errno> {
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
fn xattr_get(t: XTarget<'_>, key: &CStr) -> Result<Option<Vec<u8>>, Errno> {
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
fn xattr_all(t: XTarget<'_>) -> Result<Vec<(CString, Vec<u8>)>, Errno> {
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

// ---------------------------------------------------------------------------------------------
// Writing

struct TreeWriter<'a, W: Write> {
    tar: tar::Builder<W>,
    root: &'a Path,
    /// Translate overlay whiteouts and opaque dirs.
    upper: bool,
    clamp: Option<i64>,
    /// First path written for each multiply-linked inode.
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// A PAX record list for one entry.
type Pax = Vec<(String, Vec<u8>)>;

/// One directory on the writer's stack: its descriptor, its path in the tar, what is left.
struct WalkFrame {
    fd: OwnedFd,
    rel: Vec<u8>,
    items: std::vec::IntoIter<WalkItem>,
}

struct WalkItem {
    /// The name in the tar: `.wh.NAME` for an overlay whiteout in upper mode.
    out_name: Vec<u8>,
    name: Vec<u8>,
    st: FileStat,
    whiteout: bool,
}

impl<'a, W: Write> TreeWriter<'a, W> {
    fn new(root: &'a Path, out: W, upper: bool, clamp: Option<i64>) -> Self {
        TreeWriter {
            tar: tar::Builder::new(out),
            root,
            upper,
            clamp,
            links: HashMap::new(),
        }
    }

    fn run(mut self) -> Result<(), LayerError> {
        let root = open_dir_path(self.root)?;
        self.walk(root)?;
        self.tar.into_inner().map_err(|source| LayerError::Write {
            path: self.root.to_path_buf(),
            source,
        })?;
        Ok(())
    }

    fn walk_err(&self, rel: &[u8], op: &'static str) -> impl FnOnce(Errno) -> LayerError {
        let path = host_path(self.root, rel);
        move |e| LayerError::Walk {
            path,
            op,
            source: e.into(),
        }
    }

    /// Depth-first over the tree, each directory's entries sorted by their name in the tar.
    /// Iterative, so depth cannot exhaust the stack.
    fn walk(&mut self, root: OwnedFd) -> Result<(), LayerError> {
        let mut stack = vec![self.frame(root, Vec::new())?];
        while let Some(top) = stack.last_mut() {
            let Some(item) = top.items.next() else {
                stack.pop();
                continue;
            };
            let dir = top.fd.as_raw_fd();
            let path = child_path(&top.rel, &item.out_name);
            if item.whiteout {
                let h = self.header(&item.st, tar::EntryType::Regular);
                self.append(h, &path, Vec::new(), io::empty())?;
                continue;
            }
            match item.st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    if stack.len() > MAX_DEPTH {
                        return Err(self.walk_err(&path, "walk")(Errno::ENAMETOOLONG));
                    }
                    if let Some(fd) = self.dir(dir, &item.name, &path)? {
                        let frame = self.frame(fd, path)?;
                        stack.push(frame);
                    }
                }
                libc::S_IFREG => self.file(dir, &item.name, &path)?,
                libc::S_IFLNK | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                    self.special(dir, &item.name, &path, &item.st)?
                }
                // Sockets are not archived, like Docker.
                _ => {}
            }
        }
        Ok(())
    }

    /// Lists and stats directory `fd` (at `rel`), sorted by name in the tar.
    fn frame(&self, fd: OwnedFd, rel: Vec<u8>) -> Result<WalkFrame, LayerError> {
        let dir = fd.as_raw_fd();
        let names = list_names(dir).map_err(self.walk_err(&rel, "list directory"))?;
        let mut items = Vec::with_capacity(names.len());
        for name in names {
            let st = match fstatat(Some(dir), name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(self.walk_err(&child_path(&rel, &name), "stat")(e)),
            };
            let whiteout = self.upper && is_whiteout(&st);
            let out_name = if whiteout {
                [WH_PREFIX, &name].concat()
            } else {
                name.clone()
            };
            items.push(WalkItem {
                out_name,
                name,
                st,
                whiteout,
            });
        }
        items.sort_by(|a, b| a.out_name.cmp(&b.out_name));
        Ok(WalkFrame {
            fd,
            rel,
            items: items.into_iter(),
        })
    }

    fn header(&self, st: &FileStat, ty: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        let mtime = match self.clamp {
            Some(c) => st.st_mtime.min(c),
            None => st.st_mtime,
        };
        h.set_mtime(u64::try_from(mtime).unwrap_or(0));
        h.set_size(0);
        h
    }

    fn append<R: Read>(
        &mut self,
        mut h: tar::Header,
        path: &[u8],
        pax: Pax,
        data: R,
    ) -> Result<(), LayerError> {
        let root = self.root;
        let werr = |source| LayerError::Write {
            path: host_path(root, path),
            source,
        };
        if !pax.is_empty() {
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        self.tar
            .append_data(&mut h, Path::new(OsStr::from_bytes(path)), data)
            .map_err(werr)
    }

    /// PAX records for xattrs; in upper mode also checks overlay features. Returns
    /// (records, opaque).
    fn xattrs(&self, t: XTarget<'_>, path: &[u8]) -> Result<(Pax, bool), LayerError> {
        let all = xattr_all(t).map_err(self.walk_err(path, "read xattrs"))?;
        let mut pax = Vec::new();
        let mut opaque = false;
        for (key, value) in all {
            let k = key.as_bytes();
            if k.starts_with(OVERLAY_XATTR_PREFIX) {
                if self.upper {
                    if UNSUPPORTED_OVERLAY_XATTRS.contains(&k) {
                        return Err(LayerError::UnsupportedOverlay {
                            path: host_path(self.root, path),
                            xattr: lossy(k),
                        });
                    }
                    opaque |= key.as_c_str() == OPAQUE_XATTR && value == b"y";
                }
                continue;
            }
            pax.push((format!("SCHILY.xattr.{}", lossy(k)), value));
        }
        Ok((pax, opaque))
    }

    /// A hardlink entry when this inode was already written under another path.
    fn hardlink(&mut self, st: &FileStat, path: &[u8]) -> Result<bool, LayerError> {
        if st.st_nlink < 2 {
            return Ok(false);
        }
        let key = (st.st_dev, st.st_ino);
        let Some(first) = self.links.get(&key).cloned() else {
            self.links.insert(key, path.to_vec());
            return Ok(false);
        };
        let mut h = self.header(st, tar::EntryType::Link);
        self.tar
            .append_link(
                &mut h,
                Path::new(OsStr::from_bytes(path)),
                Path::new(OsStr::from_bytes(&first)),
            )
            .map_err(|source| LayerError::Write {
                path: host_path(self.root, path),
                source,
            })?;
        Ok(true)
    }

    /// Writes a directory entry (and its opaque marker); returns the directory to descend into.
    fn dir(
        &mut self,
        parent: RawFd,
        name: &[u8],
        path: &[u8],
    ) -> Result<Option<OwnedFd>, LayerError> {
        let fd = match open_child_dir(parent, name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.walk_err(path, "open directory")(e)),
        };
        let st = fstat(fd.as_raw_fd()).map_err(self.walk_err(path, "stat"))?;
        let (pax, opaque) = self.xattrs(XTarget::Fd(fd.as_raw_fd()), path)?;
        let h = self.header(&st, tar::EntryType::Directory);
        self.append(h, path, pax, io::empty())?;
        if opaque {
            // Right after the directory, before any child, like Docker.
            let mut h = self.header(&st, tar::EntryType::Regular);
            h.set_mode(0o644);
            self.append(h, &child_path(path, WH_OPAQUE), Vec::new(), io::empty())?;
        }
        Ok(Some(fd))
    }

    fn file(&mut self, parent: RawFd, name: &[u8], path: &[u8]) -> Result<(), LayerError> {
        // O_NONBLOCK: if a fifo was swapped in since the stat, do not hang on it.
        let fd = match openat(
            Some(parent),
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => own(fd),
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(self.walk_err(path, "open")(e)),
        };
        let st = fstat(fd.as_raw_fd()).map_err(self.walk_err(path, "stat"))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(self.walk_err(path, "open")(Errno::EAGAIN));
        }
        if self.hardlink(&st, path)? {
            return Ok(());
        }
        let (pax, _) = self.xattrs(XTarget::Fd(fd.as_raw_fd()), path)?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let mut h = self.header(&st, tar::EntryType::Regular);
        h.set_size(size);
        // Exactly `size` bytes even if the file changes under us: the tar stays well formed.
        let data = File::from(fd).take(size).chain(io::repeat(0)).take(size);
        self.append(h, path, pax, data)
    }

    /// Symlinks, devices and fifos: everything without content.
    fn special(
        &mut self,
        parent: RawFd,
        name: &[u8],
        path: &[u8],
        st: &FileStat,
    ) -> Result<(), LayerError> {
        if self.hardlink(st, path)? {
            return Ok(());
        }
        let proc = proc_child(parent, name).map_err(self.walk_err(path, "read xattrs"))?;
        let (mut pax, _) = self.xattrs(XTarget::Path(&proc), path)?;
        let ty = match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => tar::EntryType::Symlink,
            libc::S_IFCHR => tar::EntryType::Char,
            libc::S_IFBLK => tar::EntryType::Block,
            _ => tar::EntryType::Fifo,
        };
        let mut h = self.header(st, ty);
        let root = self.root;
        let werr = |source| LayerError::Write {
            path: host_path(root, path),
            source,
        };
        match ty {
            tar::EntryType::Symlink => {
                let target = match nix::fcntl::readlinkat(Some(parent), name) {
                    Ok(t) => t.into_vec(),
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(self.walk_err(path, "read symlink")(e)),
                };
                // Exact bytes: long targets go in PAX `linkpath`, not through path normalising.
                let short = &target[..target.len().min(100)];
                h.set_link_name_literal(short).map_err(werr)?;
                if target.len() > 100 {
                    pax.push(("linkpath".to_string(), target));
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let (maj, min) = (major(st.st_rdev), minor(st.st_rdev));
                let too_big = || self.walk_err(path, "read device number")(Errno::EOVERFLOW);
                h.set_device_major(u32::try_from(maj).map_err(|_| too_big())?)
                    .map_err(werr)?;
                h.set_device_minor(u32::try_from(min).map_err(|_| too_big())?)
                    .map_err(werr)?;
            }
            _ => {}
        }
        pax.sort();
        self.append(h, path, pax, io::empty())
    }
}

fn host_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn child_path(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

// ---------------------------------------------------------------------------------------------
// Diffing

struct Differ<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    out: Vec<Change>,
}

/// What one lower layer says about a path.
enum Probe {
    /// Not there; look further down.
    Absent,
    /// Whited out, or under a non-directory or an opaque directory: gone for all layers below.
    Hidden,
    /// There. `stop`: an opaque directory at or above it hides the layers below.
    Found { dir: bool, stop: bool },
}

fn container_path(comps: &[Vec<u8>]) -> String {
    format!("/{}", lossy(&join(comps)))
}

fn lower_path(lower: &Path, comps: &[Vec<u8>]) -> PathBuf {
    let mut p = lower.to_path_buf();
    for c in comps {
        p.push(OsStr::from_bytes(c));
    }
    p
}

fn path_is_opaque(p: &Path) -> Result<bool, Errno> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    Ok(xattr_get(XTarget::Path(&c), OPAQUE_XATTR)?.as_deref() == Some(b"y"))
}

fn meta_is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

impl Differ<'_> {
    fn walk_err(&self, comps: &[Vec<u8>], op: &'static str) -> impl FnOnce(Errno) -> LayerError {
        let path = lower_path(self.upper, comps);
        move |e| LayerError::Walk {
            path,
            op,
            source: e.into(),
        }
    }

    /// Depth-first over the upper dir. Iterative, so depth cannot exhaust the stack.
    fn walk(&mut self, root: OwnedFd) -> Result<(), LayerError> {
        let mut comps: Vec<Vec<u8>> = Vec::new();
        let names =
            list_names(root.as_raw_fd()).map_err(self.walk_err(&comps, "list directory"))?;
        let mut stack = vec![(root, names.into_iter())];
        while let Some((fd, names)) = stack.last_mut() {
            let Some(name) = names.next() else {
                stack.pop();
                if !stack.is_empty() {
                    comps.pop();
                }
                continue;
            };
            let dir = fd.as_raw_fd();
            comps.push(name);
            match self.entry(dir, &comps)? {
                Some(sub) => {
                    if stack.len() > MAX_DEPTH {
                        return Err(self.walk_err(&comps, "walk")(Errno::ENAMETOOLONG));
                    }
                    let names = list_names(sub.as_raw_fd())
                        .map_err(self.walk_err(&comps, "list directory"))?;
                    stack.push((sub, names.into_iter()));
                    // `comps` now names the directory on top of the stack.
                }
                None => {
                    comps.pop();
                }
            }
        }
        Ok(())
    }

    /// Records the change for `comps` (in `dir`); returns the directory to descend into.
    fn entry(&mut self, dir: RawFd, comps: &[Vec<u8>]) -> Result<Option<OwnedFd>, LayerError> {
        let name = comps.last().expect("caller pushed");
        let st = match fstatat(Some(dir), name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.walk_err(comps, "stat")(e)),
        };
        if is_whiteout(&st) {
            self.out.push(Change {
                kind: ChangeKind::Deleted,
                path: container_path(comps),
            });
            return Ok(None);
        }
        let kind = if self.in_lowers(comps)? {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        self.out.push(Change {
            kind,
            path: container_path(comps),
        });
        if !is_dir(&st) {
            return Ok(None);
        }
        let sub = match open_child_dir(dir, name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.walk_err(comps, "open directory")(e)),
        };
        let opaque = xattr_get(XTarget::Fd(sub.as_raw_fd()), OPAQUE_XATTR)
            .map_err(self.walk_err(comps, "read xattrs"))?
            .as_deref()
            == Some(b"y");
        if opaque {
            let here: HashSet<Vec<u8>> = list_names(sub.as_raw_fd())
                .map_err(self.walk_err(comps, "list directory"))?
                .into_iter()
                .collect();
            for child in self.lower_children(comps)? {
                if !here.contains(&child) {
                    let mut gone = comps.to_vec();
                    gone.push(child);
                    self.out.push(Change {
                        kind: ChangeKind::Deleted,
                        path: container_path(&gone),
                    });
                }
            }
        }
        Ok(Some(sub))
    }

    /// Looks `comps` up in one lower layer, checking each component without following symlinks.
    fn probe(&self, lower: &Path, comps: &[Vec<u8>]) -> Result<Probe, LayerError> {
        let mut p = lower.to_path_buf();
        let mut stop = false;
        for (i, c) in comps.iter().enumerate() {
            p.push(OsStr::from_bytes(c));
            let md = match fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(if stop { Probe::Hidden } else { Probe::Absent });
                }
                Err(source) => {
                    return Err(LayerError::Walk {
                        path: p,
                        op: "stat",
                        source,
                    })
                }
            };
            if meta_is_whiteout(&md) {
                return Ok(Probe::Hidden);
            }
            let dir = md.is_dir();
            if dir {
                stop |= path_is_opaque(&p).map_err(|e| LayerError::Walk {
                    path: p.clone(),
                    op: "read xattrs",
                    source: e.into(),
                })?;
            }
            if i + 1 == comps.len() {
                return Ok(Probe::Found { dir, stop });
            }
            if !dir {
                return Ok(Probe::Hidden);
            }
        }
        Ok(Probe::Found {
            dir: true,
            stop: false,
        })
    }

    /// Whether the merged lower layers show `comps`.
    fn in_lowers(&self, comps: &[Vec<u8>]) -> Result<bool, LayerError> {
        for lower in self.lowers {
            match self.probe(lower, comps)? {
                Probe::Absent => continue,
                Probe::Hidden => return Ok(false),
                Probe::Found { .. } => return Ok(true),
            }
        }
        Ok(false)
    }

    /// The names the merged lower layers show in directory `comps`.
    fn lower_children(&self, comps: &[Vec<u8>]) -> Result<BTreeSet<Vec<u8>>, LayerError> {
        let mut decided = HashSet::new();
        let mut visible = BTreeSet::new();
        for lower in self.lowers {
            let stop = match self.probe(lower, comps)? {
                Probe::Absent => continue,
                Probe::Hidden | Probe::Found { dir: false, .. } => break,
                Probe::Found { dir: true, stop } => stop,
            };
            let p = lower_path(lower, comps);
            let rd_err = |source| LayerError::Walk {
                path: p.clone(),
                op: "list directory",
                source,
            };
            for entry in fs::read_dir(&p).map_err(rd_err)? {
                let entry = entry.map_err(rd_err)?;
                let name = entry.file_name().as_bytes().to_vec();
                if !decided.insert(name.clone()) {
                    continue;
                }
                let md = entry.metadata().map_err(rd_err)?;
                if !meta_is_whiteout(&md) {
                    visible.insert(name);
                }
            }
            if stop {
                break;
            }
        }
        Ok(visible)
    }
}

/// Resolves the in-container `path` inside `root` with chroot semantics (`..` and
/// symlinks never leave `root`), for `cp`. The last component is followed only when
/// `follow_last`. Returns an `O_PATH` descriptor pinned to what was found, so a later
/// rename inside the tree cannot redirect the caller outside it.
pub fn open_beneath(root: &Path, path: &str, follow_last: bool) -> Result<OwnedFd, LayerError> {
    let root_fd = open_dir_path(root)?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if !follow_last {
        flags |= OFlag::O_NOFOLLOW;
    }
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut tries = 0;
    loop {
        match openat2(root_fd.as_raw_fd(), rel, how) {
            Err(Errno::EAGAIN) if tries < 32 => tries += 1,
            other => {
                return other.map(own).map_err(|e| LayerError::Open {
                    path: PathBuf::from(path),
                    source: e.into(),
                })
            }
        }
    }
}
