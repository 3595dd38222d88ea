//! Extracting an archive into a temp dir: the security boundary of `load` (no entry outside
//! the dir, no link on disk, links resolved by name inside it).

use super::*;

/// A link entry of the archive. Never created on disk.
pub(super) enum Link {
    /// A symlink: target relative to the link's directory.
    Symbolic(PathBuf),
    /// A hard link: target relative to the archive root, already normalised.
    Hard(PathBuf),
}

/// The archive's regular files, extracted under `dir`, and its links.
pub(super) struct Extracted {
    pub(super) dir: PathBuf,
    pub(super) links: HashMap<PathBuf, Link>,
}

/// Lexically normalises an archive path; `None` if it is absolute or climbs above the root.
pub(super) fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

pub(super) fn extract<R: Read>(r: R, dir: PathBuf) -> Result<Extracted, ArchiveError> {
    let mut out = Extracted {
        dir,
        links: HashMap::new(),
    };
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw = entry.path().map_err(ArchiveError::Read)?.into_owned();
        let name = raw.to_string_lossy().into_owned();
        let rel = normalise(&raw).ok_or_else(|| ArchiveError::UnsafePath { name: name.clone() })?;
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            continue;
        }
        if kind.is_file() || kind == tar::EntryType::Continuous {
            let size = entry.size();
            let dest = out.dir.join(&rel);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&dest)
                .map_err(io_err(&dest))?;
            let copied = io::copy(&mut entry, &mut f).map_err(ArchiveError::Read)?;
            if copied != size {
                return Err(ArchiveError::Truncated {
                    name,
                    expected: size,
                    actual: copied,
                });
            }
            out.links.remove(&rel);
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(ArchiveError::Read)?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let escape = || ArchiveError::LinkEscape {
                link: name.clone(),
                target: target.to_string_lossy().into_owned(),
            };
            let link = if kind.is_symlink() {
                // Checked here as well as when followed, so a hostile link fails early.
                let parent = rel.parent().unwrap_or(Path::new(""));
                if target.is_absolute() || normalise(&parent.join(&target)).is_none() {
                    return Err(escape());
                }
                Link::Symbolic(target.clone())
            } else {
                Link::Hard(normalise(&target).ok_or_else(escape)?)
            };
            out.links.insert(rel, link);
        }
        // Directories are made as needed; devices, fifos, sparse files and global headers
        // are no part of an image archive and are skipped.
    }
    Ok(out)
}

impl Extracted {
    /// Where the archive path `name` is on disk, following the archive's links inside
    /// the temp dir only.
    pub(super) fn resolve(&self, name: &str) -> Result<PathBuf, ArchiveError> {
        let start = Path::new(name);
        if start.is_absolute() {
            return Err(ArchiveError::UnsafePath {
                name: name.to_string(),
            });
        }
        let mut pending: Vec<OsString> = start
            .components()
            .rev()
            .map(|c| c.as_os_str().to_owned())
            .collect();
        let mut cur = PathBuf::new();
        let mut last_link: Option<(PathBuf, PathBuf)> = None;
        let mut hops = 0;
        let escape = |last: &Option<(PathBuf, PathBuf)>| match last {
            Some((link, target)) => ArchiveError::LinkEscape {
                link: link.to_string_lossy().into_owned(),
                target: target.to_string_lossy().into_owned(),
            },
            None => ArchiveError::UnsafePath {
                name: name.to_string(),
            },
        };
        while let Some(c) = pending.pop() {
            if c == "." {
                continue;
            }
            if c == ".." {
                if !cur.pop() {
                    return Err(escape(&last_link));
                }
                continue;
            }
            cur.push(&c);
            let Some(link) = self.links.get(&cur) else {
                continue;
            };
            hops += 1;
            if hops > MAX_LINK_HOPS {
                return Err(ArchiveError::LinkLoop {
                    name: name.to_string(),
                });
            }
            let link_path = cur.clone();
            let target = match link {
                Link::Symbolic(t) => {
                    if t.is_absolute() {
                        return Err(ArchiveError::LinkEscape {
                            link: link_path.to_string_lossy().into_owned(),
                            target: t.to_string_lossy().into_owned(),
                        });
                    }
                    cur.pop();
                    t
                }
                Link::Hard(t) => {
                    cur = PathBuf::new();
                    t
                }
            };
            last_link = Some((link_path, target.clone()));
            pending.extend(target.components().rev().map(|c| c.as_os_str().to_owned()));
        }
        Ok(self.dir.join(cur))
    }

    pub(super) fn exists(&self, name: &str) -> bool {
        self.resolve(name).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Opens the regular file at archive path `name`, with its size.
    pub(super) fn open(&self, name: &str) -> Result<(File, u64), ArchiveError> {
        let p = self.resolve(name)?;
        let missing = || ArchiveError::Missing {
            name: name.to_string(),
        };
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(missing()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(missing())
            }
            Err(e) => return Err(io_err(&p)(e)),
        }
        let f = File::open(&p).map_err(io_err(&p))?;
        let size = f.metadata().map_err(io_err(&p))?.len();
        Ok((f, size))
    }

    /// Reads a (JSON) document of bounded size.
    pub(super) fn read_doc(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let (f, size) = self.open(name)?;
        if size > MAX_DOCUMENT {
            return Err(ArchiveError::TooLarge {
                name: name.to_string(),
                limit: MAX_DOCUMENT,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        f.take(MAX_DOCUMENT)
            .read_to_end(&mut out)
            .map_err(io_err(&self.dir.join(name)))?;
        Ok(out)
    }
}
