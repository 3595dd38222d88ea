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
//!
//! The steps live in `apply` (unpacking), `write` (tars of trees and upper dirs), `diff`
//! (an upper dir's changes) and `fsat` (descriptor-relative steps beneath a root).

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

mod apply;
mod diff;
mod fsat;
mod write;

use apply::*;
use diff::*;
use fsat::*;
use write::*;

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

// ---------------------------------------------------------------------------------------------
// Descriptor helpers

// ---------------------------------------------------------------------------------------------
// Writing

/// A PAX record list for one entry.
type Pax = Vec<(String, Vec<u8>)>;

// ---------------------------------------------------------------------------------------------
// Diffing

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
