//! Writing a tree (or an overlay upper dir) as a tar, walked by descriptor.

use super::*;

pub(super) struct TreeWriter<'a, W: Write> {
    pub(super) tar: tar::Builder<W>,
    pub(super) root: &'a Path,
    /// Translate overlay whiteouts and opaque dirs.
    pub(super) upper: bool,
    pub(super) clamp: Option<i64>,
    /// First path written for each multiply-linked inode.
    pub(super) links: HashMap<(u64, u64), Vec<u8>>,
}

/// One directory on the writer's stack: its descriptor, its path in the tar, what is left.
pub(super) struct WalkFrame {
    pub(super) fd: OwnedFd,
    pub(super) rel: Vec<u8>,
    pub(super) items: std::vec::IntoIter<WalkItem>,
}

pub(super) struct WalkItem {
    /// The name in the tar: `.wh.NAME` for an overlay whiteout in upper mode.
    pub(super) out_name: Vec<u8>,
    pub(super) name: Vec<u8>,
    pub(super) st: FileStat,
    pub(super) whiteout: bool,
}

impl<'a, W: Write> TreeWriter<'a, W> {
    pub(super) fn new(root: &'a Path, out: W, upper: bool, clamp: Option<i64>) -> Self {
        TreeWriter {
            tar: tar::Builder::new(out),
            root,
            upper,
            clamp,
            links: HashMap::new(),
        }
    }

    pub(super) fn run(mut self) -> Result<(), LayerError> {
        let root = open_dir_path(self.root)?;
        self.walk(root)?;
        self.tar.into_inner().map_err(|source| LayerError::Write {
            path: self.root.to_path_buf(),
            source,
        })?;
        Ok(())
    }

    pub(super) fn walk_err(
        &self,
        rel: &[u8],
        op: &'static str,
    ) -> impl FnOnce(Errno) -> LayerError {
        let path = host_path(self.root, rel);
        move |e| LayerError::Walk {
            path,
            op,
            source: e.into(),
        }
    }

    /// Depth-first over the tree, each directory's entries sorted by their name in the tar.
    /// Iterative, so depth cannot exhaust the stack.
    pub(super) fn walk(&mut self, root: OwnedFd) -> Result<(), LayerError> {
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
    pub(super) fn frame(&self, fd: OwnedFd, rel: Vec<u8>) -> Result<WalkFrame, LayerError> {
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

    pub(super) fn header(&self, st: &FileStat, ty: tar::EntryType) -> tar::Header {
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

    pub(super) fn append<R: Read>(
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
    pub(super) fn xattrs(&self, t: XTarget<'_>, path: &[u8]) -> Result<(Pax, bool), LayerError> {
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
    pub(super) fn hardlink(&mut self, st: &FileStat, path: &[u8]) -> Result<bool, LayerError> {
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
    pub(super) fn dir(
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

    pub(super) fn file(
        &mut self,
        parent: RawFd,
        name: &[u8],
        path: &[u8],
    ) -> Result<(), LayerError> {
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
    pub(super) fn special(
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

pub(super) fn host_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

pub(super) fn child_path(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}
