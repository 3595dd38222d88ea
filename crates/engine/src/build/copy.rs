//! `COPY` and `ADD`: a layer tar made straight from the context (or a stage), no container.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use berth_build::dockerfile::{CopyCommand, Source};
use berth_build::Matcher;
use berth_image::digest::Hasher;
use rusqlite::OptionalExtension;
use sha2::Digest as _;

use super::*;
use crate::error::io_err;

impl Builder<'_> {
    /// `COPY`, or `ADD` (`add`; `checksum` is its `--checksum`).
    pub(super) fn copy(
        &mut self,
        state: &mut State,
        inst: &Instruction,
        c: &CopyCommand,
        add: bool,
        checksum: Option<&str>,
    ) -> Result<bool> {
        if c.parents {
            return Err(at(inst, "COPY --parents is not implemented yet"));
        }
        // Where the sources are read: a stage or an image when --from says so, else the
        // context. Files of a stage keep their owners; context files become root's.
        let view = match &c.from {
            Some(from) => {
                let layers = self.layers_of(from).map_err(|e| at(inst, e))?;
                Some(self.engine.layer_view(&layers)?)
            }
            None => None,
        };
        let tree = match &view {
            Some(v) => Tree {
                root: v.root.clone(),
                ignore: None,
            },
            None => self.context_tree()?,
        };
        let chown = match &c.chown {
            None => None,
            Some(s) => Some(self.chown(state, s).map_err(|e| at(inst, e))?),
        };
        let owner = match (chown, &view) {
            (Some(o), _) => Some(o),
            (None, Some(_)) => None,
            (None, None) => Some((0, 0)),
        };
        let clamp = epoch_secs(&state.time);
        let chmod = match &c.chmod {
            None => None,
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
                at(
                    inst,
                    format!("invalid --chmod={m}: only octal modes are implemented yet"),
                )
            })?),
        };
        // The destination as the state has it: through its symlinks, and a directory when
        // it is one there (then a file goes into it), or when the line says so.
        let dirs = self.layer_dirs(state)?;
        let dest = resolve_in_layers(&dirs, &in_workdir(state, &c.dest));
        let dest_dir = c.dest.ends_with('/')
            || c.dest.ends_with("/.")
            || c.dest == "."
            || matches!(find_in_layers(&dirs, &dest), Found::Here(m, _) if m.is_dir());
        // What goes in: (path in the layer, what).
        let mut entries: Vec<(String, Item)> = Vec::new();
        let mut matched = 0;
        for src in &c.sources {
            match src {
                Source::Inline(doc) => {
                    matched += 1;
                    let path = if dest_dir || c.sources.len() > 1 {
                        format!("{dest}/{}", doc.name).replace("//", "/")
                    } else {
                        dest.clone()
                    };
                    entries.push((
                        path,
                        Item::Bytes {
                            data: doc.body().into_owned().into_bytes(),
                            mode: 0o644,
                            mtime: 0,
                        },
                    ));
                }
                Source::Path(p) => {
                    if add && (p.starts_with("git@") || p.ends_with(".git")) {
                        return Err(at(
                            inst,
                            format!("ADD {p}: sources from git are not implemented yet"),
                        ));
                    }
                    if add && (p.starts_with("http://") || p.starts_with("https://")) {
                        // A download: saved as a file (never unpacked), mode 0600, with
                        // the server's Last-Modified time.
                        let path = if dest_dir {
                            let name = url_file_name(p).ok_or_else(|| {
                                at(
                                    inst,
                                    format!("ADD {p}: cannot determine a file name from the URL"),
                                )
                            })?;
                            format!("{}/{name}", dest.trim_end_matches('/'))
                        } else {
                            dest.clone()
                        };
                        let (data, mtime) = self.engine.download(p).map_err(|e| at(inst, e))?;
                        if let Some(want) = checksum {
                            let got = berth_image::digest::Digest::of(&data).to_string();
                            if got != want {
                                return Err(at(
                                    inst,
                                    format!("ADD {p}: digest mismatch {got}: {want}"),
                                ));
                            }
                        }
                        matched += 1;
                        entries.push((
                            path,
                            Item::Bytes {
                                data,
                                mode: 0o600,
                                mtime,
                            },
                        ));
                        continue;
                    }
                    if checksum.is_some() {
                        return Err(at(inst, "ADD --checksum is only for URLs"));
                    }
                    let found = tree.sources(p).map_err(|e| at(inst, e))?;
                    if found.is_empty() {
                        return Err(at(
                            inst,
                            format!(
                                "failed to compute cache key: \"/{}\": not found",
                                p.trim_start_matches('/')
                            ),
                        ));
                    }
                    let many = found.len() > 1 || c.sources.len() > 1 || has_glob(p);
                    if many && !dest_dir {
                        return Err(at(inst, "When using COPY with more than one source file, the destination must be a directory and end with a /"));
                    }
                    for (rel, host) in found {
                        matched += 1;
                        let meta = std::fs::symlink_metadata(&host).map_err(io_err(&host))?;
                        if meta.is_dir() {
                            // A directory's contents go into dest.
                            tree.walk(&host, &rel, &dest, true, &mut entries)?;
                        } else {
                            let name = Path::new(&rel)
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            let path = if dest_dir {
                                format!("{}/{name}", dest.trim_end_matches('/'))
                            } else {
                                dest.clone()
                            };
                            if add && meta.is_file() && is_archive(&host) {
                                entries.push((dest.clone(), Item::Archive(host, chown)));
                            } else {
                                entries.push((path, Item::Host(host, Box::new(meta))));
                            }
                        }
                    }
                }
            }
        }
        debug_assert!(matched > 0);
        let by = format!("{} # buildkit", inst.original);
        // The key: the instruction and every entry's path, metadata and content, but not
        // mtimes (touching a file does not invalidate the step, as in Docker).
        let mut h = sha2::Sha256::new();
        h.update(state.key.as_bytes());
        h.update(
            serde_json::to_string(&inst.command)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update(format!("{owner:?}:{chmod:?}:{dest}:{clamp}").as_bytes());
        let digests = Digests::new(&self.engine.db);
        for (path, item) in &entries {
            h.update(path.as_bytes());
            item.hash_into(&mut h, &digests)?;
        }
        digests.save()?;
        let key = hex::encode(h.finalize());
        self.entries_layer(state, key, by, &entries, owner, chmod)
    }

    /// Adds the layer of `entries` to the state: from the cache under `key`, or made now.
    /// Parent directories the state has keep their metadata in it; missing ones are made
    /// root-owned, 0755.
    pub(super) fn entries_layer(
        &mut self,
        state: &mut State,
        key: String,
        by: String,
        entries: &[(String, Item)],
        owner: Option<(u64, u64)>,
        chmod: Option<u32>,
    ) -> Result<bool> {
        if let Some(layer) = self.cached(&key)? {
            self.add_layer(state, key, layer, by);
            return Ok(true);
        }
        let clamp = epoch_secs(&state.time);
        let dirs = self.layer_dirs(state)?;
        let store = &self.engine.store;
        let mut tmp = store.temp()?;
        let tmp_path = tmp.path.clone();
        let mut hashing = Hasher::new(&mut tmp.file);
        {
            let mut t = tar::Builder::new(&mut hashing);
            t.mode(tar::HeaderMode::Complete);
            let mut made = std::collections::BTreeSet::new();
            for (path, item) in entries {
                parents(&mut t, &mut made, path, &dirs, clamp)?;
                if matches!(item, Item::DestDir(_)) {
                    if let Found::Here(m, _) = find_in_layers(&dirs, path) {
                        if m.is_dir() {
                            // An existing destination keeps what it is.
                            existing_dir(&mut t, path, &m, clamp)?;
                            continue;
                        }
                    }
                }
                item.append(&mut t, path, owner, chmod, clamp)?;
            }
            t.finish().map_err(io_err(&tmp_path))?;
        }
        hashing.flush().map_err(io_err(&tmp_path))?;
        let (diff_id, _, _) = hashing.finish();
        tmp.commit(&diff_id)?;
        self.engine.record_layer(&key, &diff_id, &diff_id, &by)?;
        self.add_layer(state, key, (diff_id.clone(), diff_id), by);
        Ok(false)
    }

    /// `--chown=user[:group]`: numbers, or names from the state's /etc/passwd and
    /// /etc/group. A number alone is also the group, a name alone brings its own group.
    fn chown(&self, state: &State, spec: &str) -> Result<(u64, u64)> {
        if let Ok(n) = spec.parse::<u64>() {
            return Ok((n, n));
        }
        if let Some((Ok(u), Ok(g))) = spec
            .split_once(':')
            .map(|(u, g)| (u.parse::<u64>(), g.parse::<u64>()))
        {
            return Ok((u, g));
        }
        let user = crate::spec::resolve_user(spec, &self.layer_dirs(state)?)?;
        Ok((user.uid.into(), user.gid.into()))
    }

    /// The unpacked layer dirs of a state, top first.
    pub(super) fn layer_dirs(&self, state: &State) -> Result<Vec<PathBuf>> {
        self.engine.unpack_layers(&state.layers)?;
        let diff_ids: Vec<Digest> = state.layers.iter().map(|(_, d)| d.clone()).collect();
        Ok(berth_image::digest::chain_ids(&diff_ids)
            .iter()
            .rev()
            .map(|c| self.engine.layers.diff_dir(c))
            .collect())
    }

    /// The context, as COPY reads it.
    pub(super) fn context_tree(&self) -> Result<Tree<'_>> {
        Ok(Tree {
            root: self
                .opts
                .context
                .canonicalize()
                .map_err(io_err(&self.opts.context))?,
            ignore: Some(&self.ignore),
        })
    }
}

/// Where a COPY reads: the context (`.dockerignore` applies, symlinks may not lead out)
/// or a view of a stage (symlinks resolve inside it).
pub(super) struct Tree<'a> {
    root: PathBuf,
    ignore: Option<&'a Matcher>,
}

impl Tree<'_> {
    /// A hash of everything under `host` (tree path `rel`): names, metadata, contents.
    pub(super) fn content_key(&self, host: &Path, rel: &str, digests: &Digests) -> Result<String> {
        let mut entries = Vec::new();
        if host.is_dir() {
            self.walk(host, rel, "/", true, &mut entries)?;
        } else {
            let meta = std::fs::symlink_metadata(host).map_err(io_err(host))?;
            entries.push((
                "/".to_string(),
                Item::Host(host.to_path_buf(), Box::new(meta)),
            ));
        }
        let mut h = sha2::Sha256::new();
        for (path, item) in &entries {
            h.update(path.as_bytes());
            item.hash_into(&mut h, digests)?;
        }
        digests.save()?;
        Ok(hex::encode(h.finalize()))
    }

    fn excluded(&self, rel: &str) -> bool {
        self.ignore.is_some_and(|m| m.excluded(rel))
    }

    /// What `rel` resolves to on the host, when it exists.
    pub(super) fn resolve(
        &self,
        rel: &str,
        src: &str,
    ) -> std::result::Result<Option<PathBuf>, String> {
        if self.ignore.is_none() {
            // A stage: its symlinks mean what they mean inside it.
            return Ok(resolve_in(&self.root, rel));
        }
        let real = match self.root.join(rel).canonicalize() {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        if !real.starts_with(&self.root) {
            return Err(format!("forbidden path outside the build context: {src}"));
        }
        Ok(Some(real))
    }

    /// The paths a COPY source names (globs expanded), relative and on the host; never
    /// outside the tree, never what `.dockerignore` excludes.
    fn sources(&self, src: &str) -> std::result::Result<Vec<(String, PathBuf)>, String> {
        let ctx = &self.root;
        let rel = berth_build::ignore::clean(src.trim_start_matches('/'));
        if rel == ".." || rel.starts_with("../") {
            return Err(format!("forbidden path outside the build context: {src}"));
        }
        let candidates: Vec<String> = if has_glob(&rel) {
            let pattern = Matcher::new([rel.as_str()]).map_err(|e| e.to_string())?;
            let depth = rel.split('/').count();
            let mut out = Vec::new();
            list_depth(ctx, "", depth, &mut out);
            out.into_iter().filter(|p| pattern.excluded(p)).collect()
        } else {
            vec![rel.clone()]
        };
        let mut found = Vec::new();
        for c in candidates {
            if c != "." && self.excluded(&c) {
                continue;
            }
            // The source itself may be a symlink: what it resolves to is copied.
            if let Some(real) = self.resolve(&c, src)? {
                found.push((c, real));
            }
        }
        Ok(found)
    }

    /// Adds everything under dir `host` (tree path `rel`) to `entries`, under `dest`,
    /// skipping what `.dockerignore` excludes. Symlinks are copied as symlinks. `top`:
    /// `host` is the source directory itself, its entry the destination's.
    fn walk(
        &self,
        host: &Path,
        rel: &str,
        dest: &str,
        top: bool,
        entries: &mut Vec<(String, Item)>,
    ) -> Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(host)
            .map_err(io_err(host))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        let item = if top {
            Item::DestDir(host.to_path_buf())
        } else {
            Item::Dir(host.to_path_buf())
        };
        entries.push((dest.to_string(), item));
        for n in names {
            let name = n.to_string_lossy().into_owned();
            let child_rel = if rel == "." || rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if self.excluded(&child_rel) {
                continue;
            }
            let child = host.join(&n);
            let child_dest = format!("{}/{name}", dest.trim_end_matches('/'));
            let meta = std::fs::symlink_metadata(&child).map_err(io_err(&child))?;
            if meta.is_dir() {
                self.walk(&child, &child_rel, &child_dest, false, entries)?;
            } else {
                entries.push((child_dest, Item::Host(child, Box::new(meta))));
            }
        }
        Ok(())
    }
}

/// One thing a COPY puts in its layer.
pub(super) enum Item {
    /// A file, symlink or special file of the context (a directory's own entry: `Dir`),
    /// with its metadata as the walk saw it.
    Host(PathBuf, Box<std::fs::Metadata>),
    Dir(PathBuf),
    /// A source directory copied onto the destination path.
    DestDir(PathBuf),
    /// A directory made for WORKDIR.
    NewDir,
    /// A here-document, or a download.
    Bytes {
        data: Vec<u8>,
        mode: u32,
        mtime: i64,
    },
    /// A local archive `ADD` unpacks at the path, with the owner `--chown` gives its
    /// entries (else they keep theirs).
    Archive(PathBuf, Option<(u64, u64)>),
}

/// Content digests of host files, remembered across builds while a file's stat is the
/// same (BuildKit's way too). A file changed in the last two seconds is read every time:
/// a change within the timestamps' granularity would not show in its stat.
///
/// The lookups share one read transaction (SQLite takes its locks once, not per file),
/// which `save` (or drop) ends.
pub(super) struct Digests<'a> {
    db: &'a rusqlite::Connection,
    /// (path, stat, digest) read since the last save.
    new: std::cell::RefCell<Vec<Remembered>>,
    reading: std::cell::Cell<bool>,
}

type Remembered = (Vec<u8>, String, [u8; 32]);

impl Drop for Digests<'_> {
    fn drop(&mut self) {
        self.end_read();
    }
}

impl<'a> Digests<'a> {
    pub(super) fn new(db: &'a rusqlite::Connection) -> Self {
        Digests {
            db,
            new: Default::default(),
            reading: Default::default(),
        }
    }

    fn end_read(&self) {
        if self.reading.replace(false) {
            let _ = self.db.execute_batch("COMMIT");
        }
    }

    fn of(&self, p: &Path, m: &std::fs::Metadata) -> Result<[u8; 32]> {
        use std::os::unix::fs::MetadataExt;
        let stat = format!(
            "{}:{}:{}:{}.{}:{}.{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        );
        let key = p.as_os_str().as_encoded_bytes();
        if !self.reading.get() && self.db.is_autocommit() {
            self.db.execute_batch("BEGIN DEFERRED")?;
            self.reading.set(true);
        }
        let known: Option<Vec<u8>> = self
            .db
            .prepare_cached("SELECT digest FROM build_file_digests WHERE path = ?1 AND stat = ?2")?
            .query_row(rusqlite::params![key, stat], |r| r.get(0))
            .optional()?;
        if let Some(d) = known.and_then(|d| <[u8; 32]>::try_from(d).ok()) {
            return Ok(d);
        }
        let mut h = sha2::Sha256::new();
        // io::copy's buffer is on the stack and not zeroed: no memset per small file.
        let mut f = std::fs::File::open(p).map_err(io_err(p))?;
        std::io::copy(&mut f, &mut h).map_err(io_err(p))?;
        let digest: [u8; 32] = h.finalize().into();
        let settled = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|n| n.as_secs() as i64 - 2)
            .unwrap_or(0);
        if m.mtime() < settled && m.ctime() < settled {
            self.new.borrow_mut().push((key.to_vec(), stat, digest));
        }
        Ok(digest)
    }

    /// Records the digests read since the last save, in one transaction.
    pub(super) fn save(&self) -> Result<()> {
        self.end_read();
        let new = std::mem::take(&mut *self.new.borrow_mut());
        if new.is_empty() {
            return Ok(());
        }
        let tx = rusqlite::Transaction::new_unchecked(
            self.db,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO build_file_digests (path, stat, digest) VALUES (?1, ?2, ?3)",
            )?;
            for (path, stat, digest) in &new {
                st.execute(rusqlite::params![path, stat, &digest[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Item {
    fn hash_into(&self, h: &mut sha2::Sha256, digests: &Digests) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        match self {
            Item::Bytes { data, mode, .. } => {
                h.update(format!("{mode:o}").as_bytes());
                h.update(data);
            }
            Item::NewDir => h.update(b"new dir"),
            Item::Host(p, _) | Item::Dir(p) | Item::DestDir(p) | Item::Archive(p, _) => {
                let m = match self {
                    Item::Host(_, m) => (**m).clone(),
                    _ => std::fs::symlink_metadata(p).map_err(io_err(p))?,
                };
                h.update(format!("{:o}:{}:{}", m.mode(), m.uid(), m.gid()).as_bytes());
                if m.file_type().is_symlink() {
                    let t = std::fs::read_link(p).map_err(io_err(p))?;
                    h.update(t.as_os_str().as_encoded_bytes());
                } else if m.is_file() {
                    h.update(digests.of(p, &m)?);
                }
            }
        }
        Ok(())
    }

    /// Writes the item at `path`: owned by `owner` (or as it is), with mode `chmod` (or
    /// its own), no newer than `clamp`.
    fn append<W: Write>(
        &self,
        t: &mut tar::Builder<W>,
        path: &str,
        owner: Option<(u64, u64)>,
        chmod: Option<u32>,
        clamp: i64,
    ) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let name = path.trim_start_matches('/');
        let err = |e: std::io::Error| invalid(format!("COPY {path}: {e}"));
        match self {
            Item::NewDir => {
                let mut hd = tar::Header::new_gnu();
                hd.set_entry_type(tar::EntryType::Directory);
                hd.set_mode(chmod.unwrap_or(0o755));
                let (uid, gid) = owner.unwrap_or((0, 0));
                hd.set_uid(uid);
                hd.set_gid(gid);
                hd.set_mtime(clamp.max(0) as u64);
                hd.set_size(0);
                t.append_data(&mut hd, format!("{name}/"), std::io::empty())
                    .map_err(err)
            }
            Item::Bytes { data, mode, mtime } => {
                let mut hd = tar::Header::new_gnu();
                hd.set_entry_type(tar::EntryType::Regular);
                hd.set_size(data.len() as u64);
                hd.set_mode(chmod.unwrap_or(*mode));
                let (uid, gid) = owner.unwrap_or((0, 0));
                hd.set_uid(uid);
                hd.set_gid(gid);
                hd.set_mtime((*mtime).clamp(0, clamp.max(0)) as u64);
                t.append_data(&mut hd, name, &data[..]).map_err(err)
            }
            Item::Archive(p, chown) => {
                let f = std::fs::File::open(p).map_err(io_err(p))?;
                let (_, r) = berth_image::compression::decompress(f).map_err(io_err(p))?;
                let mut a = tar::Archive::new(r);
                for entry in a.entries().map_err(err)? {
                    let mut entry = entry.map_err(err)?;
                    let inner = entry.path().map_err(err)?.into_owned();
                    let clean = clean_rel(&inner).ok_or_else(|| {
                        invalid(format!(
                            "ADD {}: entry {} leaves the destination",
                            p.display(),
                            inner.display()
                        ))
                    })?;
                    let mut hd = entry.header().clone();
                    if let Some((uid, gid)) = chown {
                        hd.set_uid(*uid);
                        hd.set_gid(*gid);
                    }
                    if let Ok(m) = hd.mtime() {
                        hd.set_mtime(m.min(clamp.max(0) as u64));
                    }
                    let target = if clean.is_empty() {
                        name.to_string()
                    } else {
                        format!("{}/{clean}", name.trim_end_matches('/'))
                    };
                    if let Ok(Some(l)) = entry.link_name() {
                        let l = l.into_owned();
                        if hd.entry_type().is_hard_link() {
                            let lc = clean_rel(&l).ok_or_else(|| {
                                invalid(format!(
                                    "ADD {}: link {} leaves the destination",
                                    p.display(),
                                    l.display()
                                ))
                            })?;
                            let lt = format!("{}/{lc}", name.trim_end_matches('/'));
                            t.append_link(&mut hd, &target, &lt).map_err(err)?;
                            continue;
                        }
                        t.append_link(&mut hd, &target, &l).map_err(err)?;
                        continue;
                    }
                    t.append_data(&mut hd, &target, &mut entry).map_err(err)?;
                }
                Ok(())
            }
            // The directory whose contents are copied becomes the destination: made as
            // it is (no --chmod), unless the destination is there (see `entries_layer`).
            Item::DestDir(p) => Item::Dir(p.clone()).append(t, path, owner, None, clamp),
            Item::Host(p, _) | Item::Dir(p) => {
                let m = match self {
                    Item::Host(_, m) => (**m).clone(),
                    _ => std::fs::symlink_metadata(p).map_err(io_err(p))?,
                };
                let mut hd = tar::Header::new_gnu();
                hd.set_metadata_in_mode(&m, tar::HeaderMode::Deterministic);
                let (uid, gid) = owner.unwrap_or((m.uid().into(), m.gid().into()));
                hd.set_uid(uid);
                hd.set_gid(gid);
                hd.set_mtime(m.mtime().clamp(0, clamp.max(0)) as u64);
                let perm = m.mode() & 0o7777;
                hd.set_mode(chmod.unwrap_or(perm));
                if m.file_type().is_symlink() {
                    let target = std::fs::read_link(p).map_err(io_err(p))?;
                    hd.set_size(0);
                    t.append_link(&mut hd, name, &target).map_err(err)
                } else if m.is_dir() {
                    hd.set_size(0);
                    t.append_data(&mut hd, format!("{name}/"), std::io::empty())
                        .map_err(err)
                } else if m.is_file() {
                    let f = std::fs::File::open(p).map_err(io_err(p))?;
                    t.append_data(&mut hd, name, f).map_err(err)
                } else {
                    Err(invalid(format!(
                        "COPY {}: not a regular file, directory or symlink",
                        p.display()
                    )))
                }
            }
        }
    }
}

/// What `path` in the file system at `root` names, its symlinks resolved as if `root`
/// were `/`; None when there is nothing there.
pub(super) fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let fd = berth_image::layer::open_beneath(root, path, true).ok()?;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()
        .filter(|p| p.starts_with(root))
}

/// Directory entries for the parents of `path` not yet in the tar: as the state has them
/// (`dirs`, its layers), or root-owned 0755 when it has not.
fn parents<W: Write>(
    t: &mut tar::Builder<W>,
    made: &mut std::collections::BTreeSet<String>,
    path: &str,
    dirs: &[PathBuf],
    clamp: i64,
) -> Result<()> {
    let comps: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    for i in 1..comps.len() {
        let dir = comps[..i].join("/");
        if made.insert(dir.clone()) {
            let mut hd = tar::Header::new_gnu();
            hd.set_entry_type(tar::EntryType::Directory);
            match find_in_layers(dirs, &dir) {
                Found::Here(m, _) if m.is_dir() => {
                    existing_dir(t, &dir, &m, clamp)?;
                    continue;
                }
                // A symlink (or anything not a directory) is not replaced by a directory
                // entry: the entries below it land where it leads, as in a container.
                Found::Here(..) | Found::Unknown => continue,
                Found::Missing => {
                    hd.set_mode(0o755);
                    hd.set_uid(0);
                    hd.set_gid(0);
                    hd.set_mtime(clamp.max(0) as u64);
                }
            }
            hd.set_size(0);
            t.append_data(&mut hd, format!("{dir}/"), std::io::empty())
                .map_err(|e| invalid(format!("COPY: {e}")))?;
        }
    }
    made.insert(comps.join("/"));
    Ok(())
}

/// A directory entry for `path` with the metadata the state has for it.
fn existing_dir<W: Write>(
    t: &mut tar::Builder<W>,
    path: &str,
    m: &std::fs::Metadata,
    clamp: i64,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut hd = tar::Header::new_gnu();
    hd.set_entry_type(tar::EntryType::Directory);
    hd.set_mode(m.mode() & 0o7777);
    hd.set_uid(m.uid().into());
    hd.set_gid(m.gid().into());
    hd.set_mtime(m.mtime().clamp(0, clamp.max(0)) as u64);
    hd.set_size(0);
    let name = format!("{}/", path.trim_matches('/'));
    t.append_data(&mut hd, name, std::io::empty())
        .map_err(|e| invalid(format!("COPY: {e}")))
}

/// The last path segment of a URL (query and fragment left out), if any.
fn url_file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next()?;
    let (_, path) = path.split_once('/')?;
    path.rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(String::from)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Context paths (relative, `/`-separated) exactly `depth` components deep.
fn list_depth(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let rel = if prefix.is_empty() {
            n.clone()
        } else {
            format!("{prefix}/{n}")
        };
        if depth == 1 {
            out.push(rel);
        } else {
            let p = dir.join(&n);
            if std::fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                list_depth(&p, &rel, depth - 1, out);
            }
        }
    }
}

/// Whether a context file is a tar archive (plain, gzip or zstd) that ADD unpacks.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = std::fs::File::open(p) else {
        return false;
    };
    let Ok((_, mut r)) = berth_image::compression::decompress(f) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n == 512 && &head[257..262] == b"ustar"
}

/// A relative path inside its root, cleaned; None when it would leave it.
pub(super) fn clean_rel(p: &Path) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out.join("/"))
}
