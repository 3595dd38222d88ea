//! Unpacking a layer: each tar entry applied through descriptors of the destination
//! (whiteouts, opaque dirs, hardlinks, metadata, PAX times and xattrs).

use super::*;

pub(super) struct Applier<'a> {
    pub(super) root: OwnedFd,
    pub(super) dest: &'a Path,
    pub(super) opts: &'a ApplyOptions,
    pub(super) stats: ApplyStats,
    /// Directory mtimes, set last so that writing children does not disturb them.
    pub(super) dir_times: BTreeMap<Vec<Vec<u8>>, TimeSpec>,
    /// Paths (and their parents) written by this layer, for opaque dirs in full-tree mode.
    pub(super) written: HashSet<Vec<u8>>,
    pub(super) buf: Vec<u8>,
    /// The last parent directory opened, kept for the entries after it (a tar lists a
    /// directory's files together): one `openat2` per directory instead of per file.
    pub(super) parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
    /// Something in the tree was removed or replaced, which may change what a path
    /// resolves to: the cached parent is not used again.
    pub(super) stale: bool,
}

impl Applier<'_> {
    pub(super) fn apply<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
    ) -> Result<(), LayerError> {
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
    pub(super) fn apply_root(
        &mut self,
        kind: Kind,
        meta: &Meta,
        name: &str,
    ) -> Result<(), LayerError> {
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
    pub(super) fn parent_dir(
        &mut self,
        parent: &[Vec<u8>],
        name: &str,
    ) -> Result<RawFd, LayerError> {
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
    pub(super) fn create_in_slot(
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

    pub(super) fn make_dir(
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

    pub(super) fn make_file<R: Read>(
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

    pub(super) fn make_symlink(
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

    pub(super) fn make_node(
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

    pub(super) fn make_hardlink<R: Read>(
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
    pub(super) fn whiteout(
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
    pub(super) fn opaque(&mut self, dir: &[Vec<u8>], name: &str) -> Result<(), LayerError> {
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
    pub(super) fn prune(&self, dir: RawFd, start: &[Vec<u8>]) -> Result<(), Errno> {
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
    pub(super) fn set_fd_meta(&self, fd: RawFd, meta: &Meta, name: &str) -> Result<(), LayerError> {
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
    pub(super) fn set_at_meta(
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
    pub(super) fn finish(&mut self) -> Result<(), LayerError> {
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

pub(super) fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
) -> Result<Meta, LayerError> {
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

pub(super) fn parse_num(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// PAX times are decimal seconds with an optional fraction, possibly negative.
pub(super) fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
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
