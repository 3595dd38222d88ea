//! `diff`: an overlay upper dir's changes against its lower layers.

use super::*;

pub(super) struct Differ<'a> {
    pub(super) upper: &'a Path,
    pub(super) lowers: &'a [PathBuf],
    pub(super) out: Vec<Change>,
}

/// What one lower layer says about a path.
pub(super) enum Probe {
    /// Not there; look further down.
    Absent,
    /// Whited out, or under a non-directory or an opaque directory: gone for all layers below.
    Hidden,
    /// There. `stop`: an opaque directory at or above it hides the layers below.
    Found { dir: bool, stop: bool },
}

pub(super) fn container_path(comps: &[Vec<u8>]) -> String {
    format!("/{}", lossy(&join(comps)))
}

pub(super) fn lower_path(lower: &Path, comps: &[Vec<u8>]) -> PathBuf {
    let mut p = lower.to_path_buf();
    for c in comps {
        p.push(OsStr::from_bytes(c));
    }
    p
}

pub(super) fn path_is_opaque(p: &Path) -> Result<bool, Errno> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    Ok(xattr_get(XTarget::Path(&c), OPAQUE_XATTR)?.as_deref() == Some(b"y"))
}

pub(super) fn meta_is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

impl Differ<'_> {
    pub(super) fn walk_err(
        &self,
        comps: &[Vec<u8>],
        op: &'static str,
    ) -> impl FnOnce(Errno) -> LayerError {
        let path = lower_path(self.upper, comps);
        move |e| LayerError::Walk {
            path,
            op,
            source: e.into(),
        }
    }

    /// Depth-first over the upper dir. Iterative, so depth cannot exhaust the stack.
    pub(super) fn walk(&mut self, root: OwnedFd) -> Result<(), LayerError> {
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
    pub(super) fn entry(
        &mut self,
        dir: RawFd,
        comps: &[Vec<u8>],
    ) -> Result<Option<OwnedFd>, LayerError> {
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
    pub(super) fn probe(&self, lower: &Path, comps: &[Vec<u8>]) -> Result<Probe, LayerError> {
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
    pub(super) fn in_lowers(&self, comps: &[Vec<u8>]) -> Result<bool, LayerError> {
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
    pub(super) fn lower_children(
        &self,
        comps: &[Vec<u8>],
    ) -> Result<BTreeSet<Vec<u8>>, LayerError> {
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
