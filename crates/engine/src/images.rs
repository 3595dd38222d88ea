//! Images: import, load, save, list, tag, remove, inspect, history, prune.
//!
//! Every change is crash-safe: blobs are written (verified) and layers unpacked first, then
//! one transaction makes the image and its tags visible. A crash before that leaves only
//! garbage that `image prune`/`system prune` collects.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};

use berth_image::archive::{self, SaveImage};
use berth_image::compression::decompress;
use berth_image::config::{ImageConfig, RunConfig};
use berth_image::import::{self, NewImage};
use berth_image::reference::familiar;
use berth_image::{chain_ids, Digest, Reference};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::{hello, now, Engine};

/// An image as the database has it.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: Digest,
    pub manifest: Digest,
    /// (blob, diff id) bottom first
    pub layers: Vec<(Digest, Digest)>,
    pub size: u64,
    pub created: String,
    pub tags: Vec<String>,
}

impl ImageRow {
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|(_, d)| d.clone()).collect()
    }
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.diff_ids())
    }
}

/// One line of `images`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub id: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub created: String,
    pub size: u64,
}

/// One `rmi` outcome, as Docker reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(String),
}

fn parse_layers(s: &str) -> Result<Vec<(Digest, Digest)>> {
    serde_json::from_str(s).map_err(|source| EngineError::Json {
        what: "image layers".into(),
        source,
    })
}

/// The uncompressed bytes of a layer blob for the unpacker: decompressed ahead on one
/// thread and hashed (the diff id) on another, each about as much work as unpacking.
/// The 256 KiB buffers go round (decompress, hash, read, back to decompress), so no byte
/// is copied between the stages and no buffer is allocated and zeroed per chunk.
struct LayerStream {
    rx: Option<std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>>,
    back: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    decompress: Option<std::thread::JoinHandle<()>>,
    hash: Option<std::thread::JoinHandle<(Digest, u64)>>,
}

const CHUNK: usize = 256 << 10;

impl LayerStream {
    fn new<R: Read + Send + 'static>(source: R) -> Self {
        use std::sync::mpsc::sync_channel;
        let (to_hash, hash_rx) = sync_channel::<std::io::Result<Vec<u8>>>(8);
        let (to_reader, rx) = sync_channel::<std::io::Result<Vec<u8>>>(8);
        let (back, recycled) = sync_channel::<Vec<u8>>(16);
        let decompress = std::thread::spawn(move || {
            let mut inner = match decompress(source) {
                Ok((_, r)) => r,
                Err(e) => {
                    let _ = to_hash.send(Err(e));
                    return;
                }
            };
            loop {
                let mut chunk = recycled.try_recv().unwrap_or_default();
                // A recycled buffer keeps its bytes: only a new one is zeroed.
                chunk.resize(CHUNK, 0);
                let mut filled = 0;
                let r = loop {
                    match inner.read(&mut chunk[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == chunk.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(filled);
                let end = filled == 0 || r.is_err();
                let sent = match r {
                    Err(e) => to_hash.send(Err(e)),
                    Ok(()) if filled > 0 => to_hash.send(Ok(chunk)),
                    Ok(()) => Ok(()),
                };
                if end || sent.is_err() {
                    return;
                }
            }
        });
        let hash = std::thread::spawn(move || {
            let mut h = berth_image::digest::Hasher::new(std::io::sink());
            for chunk in hash_rx {
                if let Ok(b) = &chunk {
                    let _ = std::io::Write::write_all(&mut h, b);
                }
                if to_reader.send(chunk).is_err() {
                    break;
                }
            }
            let (d, n, _) = h.finish();
            (d, n)
        });
        LayerStream {
            rx: Some(rx),
            back: Some(back),
            buf: Vec::new(),
            pos: 0,
            decompress: Some(decompress),
            hash: Some(hash),
        }
    }

    /// The digest and size of everything that went through (the caller read to the end).
    fn finish(mut self) -> (Digest, u64) {
        self.rx = None;
        self.back = None;
        self.hash
            .take()
            .expect("finished once")
            .join()
            .expect("the hashing thread does not panic")
    }
}

impl Read for LayerStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.as_ref().and_then(|rx| rx.recv().ok()) {
                Some(Ok(b)) => {
                    let used = std::mem::replace(&mut self.buf, b);
                    if let Some(back) = &self.back {
                        // Full (the decompressor is ahead): that buffer is just freed.
                        let _ = back.try_send(used);
                    }
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for LayerStream {
    fn drop(&mut self) {
        // Closing the channels ends both threads at their next send.
        self.rx = None;
        self.back = None;
        if let Some(w) = self.hash.take() {
            let _ = w.join();
        }
        if let Some(w) = self.decompress.take() {
            let _ = w.join();
        }
    }
}

impl Engine {
    fn image_row(&self, id: &str) -> Result<Option<ImageRow>> {
        let row = self
            .db
            .query_row(
                "SELECT id, manifest, layers, size, created FROM images WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, manifest, layers, size, created)) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .db
            .prepare_cached("SELECT name FROM tags WHERE image = ?1 ORDER BY name")?;
        let tags = stmt
            .query_map([&id], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ImageRow {
            id: Digest::parse(&id).map_err(|e| EngineError::Invalid(e.to_string()))?,
            manifest: Digest::parse(&manifest).map_err(|e| EngineError::Invalid(e.to_string()))?,
            layers: parse_layers(&layers)?,
            size: size as u64,
            created,
            tags,
        }))
    }

    /// Unpacks one layer blob (compressed or not, read from `blob_reader`) as `chain`,
    /// checking that its uncompressed content is `diff_id`; returns the unpacked size. The
    /// layer dir appears complete or not at all, and is removed again on a mismatch.
    pub(crate) fn unpack_layer(
        layers: &berth_image::layers::LayerStore,
        chain: &Digest,
        blob: &Digest,
        diff_id: &Digest,
        blob_reader: impl Read + Send + 'static,
    ) -> Result<u64> {
        let io = |e: std::io::Error| EngineError::Invalid(format!("layer {blob}: {e}"));
        let mut tar = LayerStream::new(blob_reader);
        let unpacked = layers.unpack(chain, &mut tar);
        // Drain what the tar reader left (padding), then check the diff id.
        let drained = std::io::copy(&mut tar, &mut std::io::sink());
        let (got, size) = tar.finish();
        unpacked?;
        drained.map_err(io)?;
        if &got != diff_id {
            let _ = layers.remove(chain);
            return Err(EngineError::Invalid(format!(
            "layer {blob} does not match the image config: expected diff id {diff_id}, got {got}"
        )));
        }
        let _ = std::fs::write(layers.dir(chain).join("size"), size.to_string());
        Ok(size)
    }

    /// Finds an image by reference, full id, or id prefix (as Docker accepts them).
    pub fn find_image(&self, name: &str) -> Result<ImageRow> {
        let not_found = || EngineError::NoSuchImage(name.to_string());
        if let Ok(r) = Reference::parse(name) {
            if let Some(d) = &r.digest {
                // name@digest: the manifest digest or id must match, or the repository
                // must know the image by that digest (an index pulled from it).
                let id: Option<String> = self
                    .db
                    .query_row(
                        "SELECT id FROM images WHERE manifest = ?1 OR id = ?1
                         UNION SELECT image FROM repo_digests WHERE digest = ?1 AND repository = ?2",
                        [d.to_string(), r.repository()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(id) = id {
                    return self.image_row(&id)?.ok_or_else(not_found);
                }
            } else {
                let id: Option<String> = self
                    .db
                    .query_row(
                        "SELECT image FROM tags WHERE name = ?1",
                        [r.to_string()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(id) = id {
                    return self.image_row(&id)?.ok_or_else(not_found);
                }
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut stmt = self
                .db
                .prepare_cached("SELECT id FROM images WHERE id LIKE ?1 LIMIT 2")?;
            let ids = stmt
                .query_map([format!("sha256:{}%", hex.to_lowercase())], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            match ids.len() {
                1 => return self.image_row(&ids[0])?.ok_or_else(not_found),
                0 => {}
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "image id prefix {name} is ambiguous"
                    )))
                }
            }
        }
        Err(not_found())
    }

    /// Like `find_image`, but makes the built-in `hello` image on first use.
    pub fn find_or_builtin_image(&self, name: &str) -> Result<ImageRow> {
        match self.find_image(name) {
            Err(EngineError::NoSuchImage(_))
                if Reference::parse(name)
                    .map(|r| r.to_string() == hello::HELLO_REFERENCE)
                    .unwrap_or(false) =>
            {
                self.create_hello()?;
                self.find_image(name)
            }
            other => other,
        }
    }

    fn create_hello(&self) -> Result<()> {
        let tar = hello::layer_tar()?;
        let (diff_id, size) = self.store.write_from(&tar[..], None)?;
        let platform = berth_image::config::host_platform();
        let config = ImageConfig {
            created: Some(hello::HELLO_CREATED.into()),
            author: None,
            architecture: platform.architecture,
            os: platform.os,
            variant: platform.variant,
            config: RunConfig {
                cmd: Some(vec!["/hello".into()]),
                env: Some(vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ]),
                ..Default::default()
            },
            rootfs: berth_image::config::RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id.clone()],
            },
            history: vec![berth_image::config::History {
                created: Some(hello::HELLO_CREATED.into()),
                created_by: Some("berth: built-in hello image".into()),
                ..Default::default()
            }],
            comment: None,
        };
        let new = import::new_image(&self.store, config, vec![(diff_id, size)])?;
        self.register(&new, &[hello::HELLO_REFERENCE.to_string()])?;
        Ok(())
    }

    /// Unpacks any missing layers of `layers` (blob, diff id); returns the total unpacked size.
    pub(crate) fn unpack_layers(&self, layers: &[(Digest, Digest)]) -> Result<u64> {
        let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| d.clone()).collect();
        let chains = chain_ids(&diff_ids);
        let mut total = 0;
        for ((blob, diff_id), chain) in layers.iter().zip(&chains) {
            if !self.layers.exists(chain) {
                let reader = self.store.open_verified(blob)?;
                total += Self::unpack_layer(&self.layers, chain, blob, diff_id, reader)?;
            } else {
                total += std::fs::read_to_string(self.layers.dir(chain).join("size"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Ok(total)
    }

    /// Makes an image whose blobs are stored visible, with `tags` (full references) moved
    /// to it, in one transaction. Layers are unpacked first.
    pub fn register(&self, new: &NewImage, tags: &[String]) -> Result<Digest> {
        let size = self.unpack_layers(&new.layers)?;
        let id = new.config_digest.to_string();
        let tx = rusqlite::Transaction::new_unchecked(
            &self.db,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO images (id, manifest, layers, size, created, added) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                new.manifest_digest.to_string(),
                serde_json::to_string(&new.layers).expect("layers serialise"),
                size as i64,
                new.config.created.clone().unwrap_or_default(),
                now()
            ],
        )?;
        for t in tags {
            tx.execute(
                "INSERT OR REPLACE INTO tags (name, image) VALUES (?1, ?2)",
                params![t, id],
            )?;
        }
        tx.commit()?;
        Ok(new.config_digest.clone())
    }

    /// `import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image.
    pub fn import<R: Read>(
        &self,
        r: R,
        reference: Option<&str>,
        run: RunConfig,
        message: Option<String>,
        source: &str,
    ) -> Result<Digest> {
        let tag = reference.map(Reference::parse).transpose()?;
        let new = import::import_rootfs(
            &self.store,
            r,
            run,
            message,
            &format!("berth import {source}"),
        )?;
        let tags: Vec<String> = tag.iter().map(|t| t.to_string()).collect();
        match self.register(&new, &tags) {
            Ok(id) => {
                self.emit(
                    "image",
                    "import",
                    &id.to_string(),
                    [(
                        "name".to_string(),
                        tag.map(|t| t.familiar()).unwrap_or_default(),
                    )]
                    .into_iter()
                    .collect(),
                );
                Ok(id)
            }
            Err(e) => {
                self.forget_new_blobs(&new);
                Err(e)
            }
        }
    }

    /// Removes the blobs of an image that failed to register, unless another image uses them.
    fn forget_new_blobs(&self, new: &NewImage) {
        let used = self.used_blobs().unwrap_or_default();
        for d in [&new.manifest_digest, &new.config_digest]
            .into_iter()
            .chain(new.layers.iter().map(|(b, _)| b))
        {
            if !used.contains(d) {
                let _ = self.store.remove(d);
            }
        }
    }

    /// `load`: images from a docker-archive or OCI archive. Returns what was loaded, as
    /// Docker prints it (`Loaded image: busybox:latest` / `Loaded image ID: sha256:…`).
    pub fn load<R: Read>(&self, r: R) -> Result<Vec<String>> {
        let loaded = archive::load_archive(r, &self.store, &self.tmp_dir())?;
        let mut out = Vec::new();
        for img in &loaded {
            let new = NewImage {
                manifest_digest: img.manifest_digest.clone(),
                config_digest: img.config_digest.clone(),
                config: img.config.clone(),
                layers: img.layers.clone(),
            };
            if let Err(e) = self.register(&new, &img.repo_tags) {
                self.forget_new_blobs(&new);
                return Err(e);
            }
            self.emit(
                "image",
                "load",
                &img.config_digest.to_string(),
                Default::default(),
            );
            if img.repo_tags.is_empty() {
                out.push(format!("Loaded image ID: {}", img.config_digest));
            }
            for t in &img.repo_tags {
                let r = Reference::parse(t)?;
                out.push(format!("Loaded image: {}", r.familiar()));
            }
        }
        Ok(out)
    }

    /// `save`: the named images as a docker-archive.
    pub fn save<W: Write>(&self, names: &[String], w: W) -> Result<()> {
        let mut images: Vec<SaveImage> = Vec::new();
        for n in names {
            let row = self.find_image(n)?;
            // A name that is a tag saves that tag; an id saves the image's tags.
            let tags = match Reference::parse(n) {
                Ok(r) if r.digest.is_none() && row.tags.contains(&r.to_string()) => {
                    vec![r.to_string()]
                }
                _ => row.tags.clone(),
            };
            if let Some(existing) = images.iter_mut().find(|i| i.config_digest == row.id) {
                for t in tags {
                    if !existing.repo_tags.contains(&t) {
                        existing.repo_tags.push(t);
                    }
                }
                continue;
            }
            images.push(SaveImage {
                config_digest: row.id.clone(),
                layers: row.layers.clone(),
                repo_tags: tags,
            });
        }
        archive::save_archive(&images, &self.store, w)?;
        Ok(())
    }

    /// The image's config document.
    pub fn image_config(&self, row: &ImageRow) -> Result<ImageConfig> {
        let bytes = self.store.read(&row.id)?;
        serde_json::from_slice(&bytes).map_err(|source| EngineError::Json {
            what: format!("image config {}", row.id),
            source,
        })
    }

    /// All images, newest first.
    pub fn list_image_rows(&self) -> Result<Vec<ImageRow>> {
        let mut stmt = self
            .db
            .prepare("SELECT id FROM images ORDER BY created DESC, added DESC")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.image_row(&id)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// `images`: one line per tag (and one `<none>` line per untagged image). Filters:
    /// `dangling=true|false`, `reference=PATTERN`.
    pub fn list_images(&self, filters: &[(String, String)]) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        for row in self.list_image_rows()? {
            let recorded = self.repo_digests(&row.id)?;
            let digest_in = |repo: &str| {
                recorded
                    .iter()
                    .find(|(r, _)| r == repo)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| "<none>".into())
            };
            let dangling = row.tags.is_empty();
            if let Some((_, v)) = filters.iter().find(|(k, _)| k == "dangling") {
                if (v == "true") != dangling {
                    continue;
                }
            }
            if row.tags.is_empty() {
                out.push(ImageSummary {
                    id: row.id.to_string(),
                    repository: "<none>".into(),
                    tag: "<none>".into(),
                    digest: recorded
                        .first()
                        .map(|(_, d)| d.clone())
                        .unwrap_or_else(|| "<none>".into()),
                    created: row.created.clone(),
                    size: row.size,
                });
            }
            for t in &row.tags {
                let r = Reference::parse(t)?;
                let repo = r.familiar_repository();
                if let Some((_, pat)) = filters.iter().find(|(k, _)| k == "reference") {
                    if !glob_match(pat, &repo) && !glob_match(pat, &r.familiar()) {
                        continue;
                    }
                }
                out.push(ImageSummary {
                    id: row.id.to_string(),
                    digest: digest_in(&r.repository()),
                    repository: repo,
                    tag: r.tag.clone().unwrap_or_else(|| "<none>".into()),
                    created: row.created.clone(),
                    size: row.size,
                });
            }
        }
        Ok(out)
    }

    /// `tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let row = self.find_image(source)?;
        let t = Reference::parse(target)?;
        if t.digest.is_some() {
            return Err(EngineError::Invalid(format!(
                "refusing to create a tag with a digest reference: {target}"
            )));
        }
        self.db.execute(
            "INSERT OR REPLACE INTO tags (name, image) VALUES (?1, ?2)",
            params![t.to_string(), row.id.to_string()],
        )?;
        self.emit(
            "image",
            "tag",
            &row.id.to_string(),
            [("name".to_string(), t.familiar())].into_iter().collect(),
        );
        Ok(())
    }

    fn containers_using(&self, image_id: &Digest) -> Result<Vec<String>> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT id FROM containers WHERE image = ?1")?;
        let ids = stmt
            .query_map([image_id.to_string()], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// `rmi`: untags, and deletes an image once it has no tags left, with Docker's rules.
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Vec<Removed>> {
        let row = self.find_image(name)?;
        let by_tag = Reference::parse(name)
            .ok()
            .filter(|r| r.digest.is_none() && row.tags.contains(&r.to_string()));
        let users = self.containers_using(&row.id)?;
        let mut out = Vec::new();
        let tx = rusqlite::Transaction::new_unchecked(
            &self.db,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        match &by_tag {
            Some(r) if row.tags.len() > 1 => {
                // Another tag keeps the image: just untag.
                tx.execute("DELETE FROM tags WHERE name = ?1", [r.to_string()])?;
                tx.commit()?;
                out.push(Removed::Untagged(r.familiar()));
                self.emit_removed(&row.id, &out);
                return Ok(out);
            }
            None if row.tags.len() > 1 && !force => {
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    row.id.short()
                )));
            }
            _ => {}
        }
        if !users.is_empty() && !force {
            let what = by_tag
                .as_ref()
                .map(|r| format!("repository reference \"{}\"", r.familiar()))
                .unwrap_or_else(|| row.id.short().to_string());
            return Err(EngineError::Conflict(format!(
                "conflict: unable to remove {what} (must force) - container {} is using its referenced image {}",
                &users[0][..12.min(users[0].len())],
                row.id.short()
            )));
        }
        for t in &row.tags {
            tx.execute("DELETE FROM tags WHERE name = ?1", [t])?;
            out.push(Removed::Untagged(
                Reference::parse(t)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| t.clone()),
            ));
        }
        let delete = users.is_empty();
        if delete {
            tx.execute("DELETE FROM images WHERE id = ?1", [row.id.to_string()])?;
            tx.execute(
                "DELETE FROM repo_digests WHERE image = ?1",
                [row.id.to_string()],
            )?;
        }
        tx.commit()?;
        if delete {
            out.push(Removed::Deleted(row.id.to_string()));
            self.collect_garbage_of(&row)?;
        }
        self.emit_removed(&row.id, &out);
        Ok(out)
    }

    fn emit_removed(&self, id: &Digest, removed: &[Removed]) {
        for r in removed {
            match r {
                Removed::Untagged(t) => self.emit(
                    "image",
                    "untag",
                    &id.to_string(),
                    [("name".to_string(), t.clone())].into_iter().collect(),
                ),
                Removed::Deleted(_) => {
                    self.emit("image", "delete", &id.to_string(), Default::default())
                }
            }
        }
    }

    /// Blobs referenced by any image.
    fn used_blobs(&self) -> Result<HashSet<Digest>> {
        let mut used = HashSet::new();
        for row in self.list_image_rows()? {
            used.insert(row.id.clone());
            used.insert(row.manifest.clone());
            for (b, _) in &row.layers {
                used.insert(b.clone());
            }
        }
        Ok(used)
    }

    /// Removes the blobs and unpacked layers of a deleted image that no other image uses.
    fn collect_garbage_of(&self, row: &ImageRow) -> Result<()> {
        let rows = self.list_image_rows()?;
        let mut used_blobs = HashSet::new();
        let mut used_chains = HashSet::new();
        for r in &rows {
            used_blobs.insert(r.id.clone());
            used_blobs.insert(r.manifest.clone());
            used_blobs.extend(r.layers.iter().map(|(b, _)| b.clone()));
            used_chains.extend(r.chain_ids());
        }
        // The build cache keeps its layers' blobs (not their unpacked dirs: those are
        // made again from the blob when a build uses the layer).
        used_blobs.extend(self.build_cache_blobs()?);
        for c in row.chain_ids() {
            if !used_chains.contains(&c) {
                self.layers.remove(&c)?;
            }
        }
        for d in [&row.id, &row.manifest]
            .into_iter()
            .chain(row.layers.iter().map(|(b, _)| b))
        {
            if !used_blobs.contains(d) {
                self.store.remove(d)?;
            }
        }
        Ok(())
    }

    /// `image prune`: removes dangling images (all unused ones with `all`) that no container
    /// uses. Returns the removed ids and the bytes reclaimed.
    pub fn prune_images(
        &self,
        all: bool,
        filter: &crate::prune::PruneFilter,
    ) -> Result<(Vec<Removed>, u64)> {
        let mut used_by_containers = BTreeSet::new();
        let mut stmt = self.db.prepare("SELECT DISTINCT image FROM containers")?;
        for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
            used_by_containers.insert(id?);
        }
        drop(stmt);
        let mut removed = Vec::new();
        let mut reclaimed = 0;
        for row in self.list_image_rows()? {
            if used_by_containers.contains(&row.id.to_string()) || (!all && !row.tags.is_empty()) {
                continue;
            }
            let labels = self
                .image_config(&row)
                .ok()
                .and_then(|c| c.config.labels)
                .unwrap_or_default();
            if !filter.allows(&row.created, &labels) {
                continue;
            }
            reclaimed += row.size;
            removed.extend(self.remove_image(&row.id.to_string(), true)?);
        }
        reclaimed += self.store.clean_temp()?;
        self.layers.clean_temp();
        Ok((removed, reclaimed))
    }

    /// `image inspect`, shaped like Docker's.
    pub fn inspect_image(&self, name: &str) -> Result<crate::views::ImageInspect> {
        let row = self.find_image(name)?;
        let cfg = self.image_config(&row)?;
        let mut repo_tags = Vec::new();
        for t in &row.tags {
            repo_tags.push(Reference::parse(t)?.familiar());
        }
        // Only what a registry knows the image by, as Docker: pulled or pushed.
        let mut repo_digests = BTreeSet::new();
        for (repo, digest) in self.repo_digests(&row.id)? {
            let repo = Reference::parse(&repo)
                .map(|r| r.familiar_repository())
                .unwrap_or(repo);
            repo_digests.insert(format!("{repo}@{digest}"));
        }
        use crate::views::*;
        Ok(ImageInspect {
            id: row.id.to_string(),
            repo_tags,
            repo_digests: repo_digests.into_iter().collect(),
            parent: String::new(),
            comment: cfg.comment.clone().unwrap_or_default(),
            created: cfg.created.clone().unwrap_or_default(),
            docker_version: String::new(),
            author: cfg.author.clone().unwrap_or_default(),
            config: ImageInspectConfig::from(&cfg.config),
            architecture: cfg.architecture.clone(),
            variant: cfg.variant.clone(),
            os: cfg.os.clone(),
            size: row.size,
            graph_driver: GraphDriver {
                name: "overlay2",
                data: GraphDriverData {
                    lower_dir: row
                        .chain_ids()
                        .iter()
                        .rev()
                        .map(|c| self.layers.diff_dir(c).display().to_string())
                        .collect::<Vec<_>>()
                        .join(":"),
                    upper_dir: None,
                    work_dir: None,
                    merged_dir: None,
                },
            },
            root_fs: RootFs {
                kind: "layers",
                layers: row.diff_ids().iter().map(|d| d.to_string()).collect(),
            },
            metadata: ImageMetadata {
                last_tag_time: "0001-01-01T00:00:00Z".into(),
            },
            descriptor: Descriptor {
                media_type: berth_image::config::MEDIA_OCI_MANIFEST,
                digest: row.manifest.to_string(),
            },
            container_config: None,
            container: None,
        })
    }

    /// `history`: one entry per history record, newest first, with the layer size of
    /// non-empty entries.
    pub fn history(&self, name: &str) -> Result<Vec<BTreeMap<&'static str, serde_json::Value>>> {
        let row = self.find_image(name)?;
        let cfg = self.image_config(&row)?;
        let chains = row.chain_ids();
        let mut layer_idx = 0;
        let mut out = Vec::new();
        let hist = if cfg.history.is_empty() {
            // No history: one entry per layer.
            row.layers.iter().map(|_| Default::default()).collect()
        } else {
            cfg.history.clone()
        };
        for (i, h) in hist.iter().enumerate() {
            let mut size = 0u64;
            if !h.empty_layer {
                if let Some(c) = chains.get(layer_idx) {
                    size = std::fs::read_to_string(self.layers.dir(c).join("size"))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                }
                layer_idx += 1;
            }
            let mut m = BTreeMap::new();
            let is_top = i == hist.len() - 1;
            m.insert(
                "Id",
                serde_json::Value::from(if is_top {
                    row.id.to_string()
                } else {
                    "<missing>".into()
                }),
            );
            m.insert("Created", h.created.clone().unwrap_or_default().into());
            m.insert("CreatedBy", h.created_by.clone().unwrap_or_default().into());
            m.insert("Comment", h.comment.clone().unwrap_or_default().into());
            m.insert("Size", size.into());
            m.insert(
                "Tags",
                if is_top {
                    row.tags
                        .iter()
                        .filter_map(|t| Reference::parse(t).ok())
                        .map(|r| r.familiar())
                        .collect::<Vec<_>>()
                        .into()
                } else {
                    serde_json::Value::Null
                },
            );
            out.push(m);
        }
        out.reverse();
        Ok(out)
    }
}

/// Docker-style reference filter matching: `*` matches within a path component.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                rec(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && rec(p, &s[1..]))
            }
            (Some(b'?'), Some(c)) if *c != b'/' => rec(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), s.as_bytes())
}

/// Familiar repository name of a full tag, for display.
pub fn familiar_name(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| familiar("", full))
}
