//! Reading the extracted documents and putting every blob into the store, verified, as one
//! transaction.

use super::*;

/// The blobs a load has added; removed again unless the load completes.
pub(super) struct Txn<'a> {
    pub(super) store: &'a ContentStore,
    pub(super) added: Vec<Digest>,
    pub(super) done: bool,
}

impl Txn<'_> {
    fn put_bytes(&mut self, bytes: &[u8]) -> Result<Digest, ArchiveError> {
        let d = Digest::of(bytes);
        if !self.store.contains(&d) {
            self.store.write_bytes(bytes, Some(&d))?;
            self.added.push(d.clone());
        }
        Ok(d)
    }

    fn commit(&mut self, tmp: TempBlob<'_>, d: &Digest) -> Result<(), ArchiveError> {
        if !self.store.contains(d) {
            tmp.commit(d)?;
            self.added.push(d.clone());
        }
        Ok(())
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.done {
            for d in &self.added {
                let _ = self.store.remove(d);
            }
        }
    }
}

/// Copies what it reads into `w`.
pub(super) struct Tee<R, W> {
    pub(super) r: R,
    pub(super) w: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.w.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// A layer as an image document names it.
pub(super) struct LayerRef {
    /// Its path in the archive.
    pub(super) name: String,
    /// The digest and size of the blob, when a descriptor or the name fixes them.
    pub(super) blob: Option<Digest>,
    pub(super) size: Option<u64>,
}

#[derive(Clone)]
pub(super) struct StoredLayer {
    pub(super) blob: Digest,
    pub(super) diff_id: Digest,
    pub(super) size: u64,
    pub(super) compression: Compression,
}

pub(super) struct Loader<'a> {
    pub(super) files: Extracted,
    pub(super) txn: Txn<'a>,
    /// Layers already stored by this load, by resolved path.
    pub(super) layers: HashMap<PathBuf, StoredLayer>,
}

impl Loader<'_> {
    /// Stores the layer at archive path `name` as it is, computing its diff id on the way.
    fn store_layer(&mut self, layer: &LayerRef) -> Result<StoredLayer, ArchiveError> {
        let name = layer.name.as_str();
        let resolved = self.files.resolve(name)?;
        let stored = match self.layers.get(&resolved) {
            Some(l) => l.clone(),
            None => {
                let (f, _) = self.files.open(name)?;
                let layer_err = |source| ArchiveError::Layer {
                    name: name.to_string(),
                    source,
                };
                let mut tmp = self.txn.store.temp()?;
                let (blob, size, diff_id, compression) = {
                    let mut raw = Hasher::new(Tee {
                        r: BufReader::with_capacity(256 * 1024, f),
                        w: &mut tmp.file,
                    });
                    let (compression, mut tar) = decompress(&mut raw).map_err(layer_err)?;
                    let mut diff = Hasher::new(io::sink());
                    io::copy(&mut tar, &mut diff).map_err(layer_err)?;
                    drop(tar);
                    // Whatever follows the compressed stream is part of the blob too.
                    io::copy(&mut raw, &mut io::sink()).map_err(layer_err)?;
                    let (blob, size, _) = raw.finish();
                    (blob, size, diff.finish().0, compression)
                };
                // A blob that does not match its name is not committed at all.
                if layer.blob.as_ref().is_none_or(|want| *want == blob) {
                    self.txn.commit(tmp, &blob)?;
                }
                let l = StoredLayer {
                    blob,
                    diff_id,
                    size,
                    compression,
                };
                self.layers.insert(resolved, l.clone());
                l
            }
        };
        if let Some(want) = &layer.blob {
            if *want != stored.blob {
                return Err(ArchiveError::BlobMismatch {
                    name: name.to_string(),
                    expected: want.clone(),
                    actual: stored.blob,
                });
            }
        }
        if let Some(want) = layer.size {
            if want != stored.size {
                return Err(ArchiveError::SizeMismatch {
                    name: name.to_string(),
                    expected: want,
                    actual: stored.size,
                });
            }
        }
        Ok(stored)
    }

    /// Stores a config and its layers, checking the layers against the diff ids.
    fn store_image(
        &mut self,
        config_name: &str,
        config_bytes: &[u8],
        layers: &[LayerRef],
    ) -> Result<(Digest, ImageConfig, Vec<StoredLayer>), ArchiveError> {
        let config: ImageConfig = parse_json(config_name, config_bytes)?;
        let config_digest = self.txn.put_bytes(config_bytes)?;
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(ArchiveError::LayerCount {
                config: config_digest,
                diff_ids: config.rootfs.diff_ids.len(),
                layers: layers.len(),
            });
        }
        let mut stored = Vec::with_capacity(layers.len());
        for (layer, want) in layers.iter().zip(&config.rootfs.diff_ids) {
            let l = self.store_layer(layer)?;
            if l.diff_id != *want {
                return Err(ArchiveError::DiffIdMismatch {
                    name: layer.name.clone(),
                    expected: want.clone(),
                    actual: l.diff_id,
                });
            }
            stored.push(l);
        }
        Ok((config_digest, config, stored))
    }

    /// A docker-archive: `manifest.json` names configs, layers and tags.
    pub(super) fn load_docker(&mut self) -> Result<Vec<LoadedImage>, ArchiveError> {
        let entries: Vec<DockerManifestEntry> =
            parse_json("manifest.json", &self.files.read_doc("manifest.json")?)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let expected =
                digest_of_config_name(&e.config).ok_or_else(|| ArchiveError::ConfigName {
                    name: e.config.clone(),
                })?;
            let bytes = self.files.read_doc(&e.config)?;
            let actual = Digest::of(&bytes);
            if actual != expected {
                return Err(ArchiveError::ConfigMismatch {
                    name: e.config.clone(),
                    expected,
                    actual,
                });
            }
            // A layer named `blobs/sha256/<hex>` must hash to that name.
            let layers: Vec<LayerRef> = e
                .layers
                .iter()
                .map(|n| LayerRef {
                    name: n.clone(),
                    blob: digest_of_blob_path(n),
                    size: None,
                })
                .collect();
            let (config_digest, config, stored) = self.store_image(&e.config, &bytes, &layers)?;
            let pairs: Vec<(Digest, Digest)> = stored
                .iter()
                .map(|l| (l.blob.clone(), l.diff_id.clone()))
                .collect();
            let manifest_digest = match self.find_oci_manifest(&config_digest, &pairs)? {
                Some(d) => d,
                None => self.write_manifest(&config_digest, bytes.len() as u64, &stored)?,
            };
            let mut repo_tags = Vec::new();
            for t in e.repo_tags.iter().flatten() {
                if let Some(t) = normalise_tag(t)? {
                    if !repo_tags.contains(&t) {
                        repo_tags.push(t);
                    }
                }
            }
            out.push(LoadedImage {
                manifest_digest,
                config_digest,
                config,
                layers: pairs,
                repo_tags,
            });
        }
        Ok(out)
    }

    /// Writes an OCI manifest for an image that came without one.
    fn write_manifest(
        &mut self,
        config: &Digest,
        config_size: u64,
        layers: &[StoredLayer],
    ) -> Result<Digest, ArchiveError> {
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.into()),
            config: descriptor(MEDIA_OCI_CONFIG, config, config_size),
            layers: layers
                .iter()
                .map(|l| {
                    let media = format!("{MEDIA_OCI_LAYER}{}", l.compression.media_suffix());
                    descriptor(&media, &l.blob, l.size)
                })
                .collect(),
            annotations: None,
        };
        self.txn
            .put_bytes(&serde_json::to_vec(&manifest).expect("manifest serialises"))
    }

    /// In a Docker 25 archive, the OCI manifest for the image `manifest.json` describes.
    fn find_oci_manifest(
        &mut self,
        config: &Digest,
        layers: &[(Digest, Digest)],
    ) -> Result<Option<Digest>, ArchiveError> {
        if !self.files.exists("index.json") {
            return Ok(None);
        }
        let index: Index = parse_json("index.json", &self.files.read_doc("index.json")?)?;
        let mut queue: Vec<(Descriptor, u32)> =
            index.manifests.into_iter().map(|d| (d, 0)).collect();
        while let Some((desc, depth)) = queue.pop() {
            // Only blobs the archive actually holds are candidates (an index may list
            // manifests for platforms that were not saved).
            if !self.files.exists(&blob_path(&desc.digest)) {
                continue;
            }
            match desc.media_type.as_str() {
                MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => {
                    let bytes = self.read_blob(&desc)?;
                    let m: Manifest = parse_json(&blob_path(&desc.digest), &bytes)?;
                    if m.config.digest == *config
                        && m.layers.len() == layers.len()
                        && m.layers
                            .iter()
                            .zip(layers)
                            .all(|(d, (blob, _))| d.digest == *blob)
                    {
                        self.txn.put_bytes(&bytes)?;
                        return Ok(Some(desc.digest));
                    }
                }
                MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST if depth < MAX_INDEX_DEPTH => {
                    let bytes = self.read_blob(&desc)?;
                    let child: Index = parse_json(&blob_path(&desc.digest), &bytes)?;
                    queue.extend(child.manifests.into_iter().map(|d| (d, depth + 1)));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Reads a blob of the OCI layout, checking it against its descriptor.
    fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>, ArchiveError> {
        let name = blob_path(&desc.digest);
        let bytes = self.files.read_doc(&name)?;
        let actual = Digest::of(&bytes);
        if actual != desc.digest {
            return Err(ArchiveError::BlobMismatch {
                name,
                expected: desc.digest.clone(),
                actual,
            });
        }
        if bytes.len() as u64 != desc.size {
            return Err(ArchiveError::SizeMismatch {
                name,
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// An OCI archive: `index.json` lists manifests (or indexes of them) and their names.
    pub(super) fn load_oci(&mut self) -> Result<Vec<LoadedImage>, ArchiveError> {
        let index: Index = parse_json("index.json", &self.files.read_doc("index.json")?)?;
        let mut out: Vec<LoadedImage> = Vec::new();
        for desc in &index.manifests {
            let name = oci_name(desc.annotations.as_ref())?;
            let Some(manifest) = self.pick_manifest(desc, 0)? else {
                continue;
            };
            let i = match out
                .iter()
                .position(|img| img.manifest_digest == manifest.digest)
            {
                Some(i) => i,
                None => {
                    out.push(self.load_oci_image(&manifest)?);
                    out.len() - 1
                }
            };
            if let Some(n) = name {
                if !out[i].repo_tags.contains(&n) {
                    out[i].repo_tags.push(n);
                }
            }
        }
        Ok(out)
    }

    /// The manifest a descriptor stands for on this host; `None` for other artifacts.
    fn pick_manifest(
        &self,
        desc: &Descriptor,
        depth: u32,
    ) -> Result<Option<Descriptor>, ArchiveError> {
        match desc.media_type.as_str() {
            MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => Ok(Some(desc.clone())),
            MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(ArchiveError::IndexDepth {
                        index: desc.digest.clone(),
                    });
                }
                let index: Index = parse_json(&blob_path(&desc.digest), &self.read_blob(desc)?)?;
                let host = host_platform();
                let child = pick_platform(&index.manifests, &host).ok_or_else(|| {
                    ArchiveError::NoPlatform {
                        index: desc.digest.clone(),
                        platform: platform_string(&host),
                    }
                })?;
                self.pick_manifest(child, depth + 1)
            }
            _ => Ok(None),
        }
    }

    fn load_oci_image(&mut self, desc: &Descriptor) -> Result<LoadedImage, ArchiveError> {
        let manifest_name = blob_path(&desc.digest);
        let manifest_bytes = self.read_blob(desc)?;
        let manifest: Manifest = parse_json(&manifest_name, &manifest_bytes)?;
        let config_bytes = self.read_blob(&manifest.config)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for l in &manifest.layers {
            let name = blob_path(&l.digest);
            if !is_layer_media_type(&l.media_type) {
                return Err(ArchiveError::LayerMediaType {
                    name,
                    media_type: l.media_type.clone(),
                });
            }
            layers.push(LayerRef {
                name,
                blob: Some(l.digest.clone()),
                size: Some(l.size),
            });
        }
        let (config_digest, config, stored) =
            self.store_image(&blob_path(&manifest.config.digest), &config_bytes, &layers)?;
        let manifest_digest = self.txn.put_bytes(&manifest_bytes)?;
        Ok(LoadedImage {
            manifest_digest,
            config_digest,
            config,
            layers: stored.into_iter().map(|l| (l.blob, l.diff_id)).collect(),
            repo_tags: Vec::new(),
        })
    }
}

/// Where the bytes of one archive blob come from.
pub(super) enum Source<'a> {
    Bytes(Vec<u8>),
    /// An uncompressed blob in the store.
    Stored(Digest),
    /// A compressed blob, decompressed into a temp file of the store.
    Decompressed(TempBlob<'a>),
}

/// Reads exactly `remaining` bytes, then checks the inner reader is at its end (which is
/// when a `VerifiedReader` checks its digest).
pub(super) struct Exact<R> {
    pub(super) inner: R,
    pub(super) remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other("blob is longer than its recorded size")),
            };
        }
        let max = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob is shorter than its recorded size",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

pub(super) fn blob_read_err(digest: &Digest) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |e| match e.get_ref().and_then(|x| x.downcast_ref::<CorruptBlob>()) {
        Some(c) => ArchiveError::Store(StoreError::Corrupt {
            digest: digest.clone(),
            actual: c.0.clone(),
        }),
        None => ArchiveError::WriteBlob {
            digest: digest.clone(),
            source: e,
        },
    }
}

/// The uncompressed form of a stored layer, verified against its diff id.
pub(super) fn layer_source<'a>(
    store: &'a ContentStore,
    blob: &Digest,
    diff_id: &Digest,
) -> Result<(u64, Source<'a>), ArchiveError> {
    if blob == diff_id {
        return Ok((store.size(blob)?, Source::Stored(blob.clone())));
    }
    let mut tmp = store.temp()?;
    let (_, mut tar) =
        decompress(store.open_verified(blob)?).map_err(|source| ArchiveError::Layer {
            name: blob.to_string(),
            source,
        })?;
    let mut out = Hasher::new(&mut tmp.file);
    io::copy(&mut tar, &mut out).map_err(|e| {
        match e.get_ref().and_then(|x| x.downcast_ref::<CorruptBlob>()) {
            Some(c) => ArchiveError::Store(StoreError::Corrupt {
                digest: blob.clone(),
                actual: c.0.clone(),
            }),
            None => ArchiveError::Layer {
                name: blob.to_string(),
                source: e,
            },
        }
    })?;
    drop(tar);
    let (actual, size, _) = out.finish();
    if actual != *diff_id {
        return Err(ArchiveError::DiffIdMismatch {
            name: blob.to_string(),
            expected: diff_id.clone(),
            actual,
        });
    }
    tmp.file
        .seek(SeekFrom::Start(0))
        .map_err(io_err(&tmp.path))?;
    Ok((size, Source::Decompressed(tmp)))
}
