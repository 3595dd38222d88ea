//! `load` and `save`: image archives as `docker save`, `podman save` and `skopeo` write them.
//!
//! Three layouts are read: the legacy docker-archive (`manifest.json`, `<hex>.json` configs,
//! `<id>/layer.tar` layers, duplicates as symlinks), Docker 25's docker-archive (an OCI
//! image layout plus `manifest.json`) and the OCI archive (`oci-layout`, `index.json`,
//! `blobs/sha256/…`). One layout is written: Docker 25's, which every `docker load` and
//! `podman load` accepts.
//!
//! Tar entries come in any order, so [`load_archive`] first extracts the regular files into
//! a fresh temp dir, then reads the documents. That extraction is a security boundary: an
//! entry name that is absolute or climbs out with `..` is an error, device nodes are
//! skipped, and no link is ever created on disk. Links are kept in a table and resolved
//! by name inside the temp dir only; one that leads outside it is an error. Every blob is
//! verified on its way into the store (configs against their names or descriptors, layer
//! blobs against their descriptors, uncompressed layers against the config's diff ids),
//! and a load that fails removes every blob it added, so the store is left as it was.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::compression::{decompress, Compression};
use crate::config::{
    host_platform, is_layer_media_type, Descriptor, ImageConfig, Index, Manifest, Platform,
    MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_LAYER,
    MEDIA_OCI_MANIFEST,
};
use crate::digest::{Digest, Hasher};
use crate::reference::{Reference, ReferenceError};
use crate::store::{ContentStore, CorruptBlob, StoreError, TempBlob};

/// Annotation holding the full image name (containerd, Docker 25+).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// OCI annotation holding the reference name (a tag for Docker, `name:tag` for skopeo).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The largest JSON document (manifest, index, config) read from an archive.
const MAX_DOCUMENT: u64 = 64 << 20;
/// How many links one path may go through before it is considered a loop.
const MAX_LINK_HOPS: u32 = 40;
/// How deeply image indexes may nest.
const MAX_INDEX_DEPTH: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the archive: {0}")]
    Read(#[source] io::Error),
    #[error("archive entry {name:?} is truncated: expected {expected} bytes, got {actual}")]
    Truncated {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("archive entry {name:?} is absolute or escapes the archive with ..")]
    UnsafePath { name: String },
    #[error("archive link {link:?} points to {target:?}, outside the archive")]
    LinkEscape { link: String, target: String },
    #[error("archive path {name:?} goes through too many links")]
    LinkLoop { name: String },
    #[error("archive has no manifest.json or index.json")]
    NoManifest,
    #[error("archive has no images")]
    NoImages,
    #[error("archive is missing {name}")]
    Missing { name: String },
    #[error("{name} in the archive is larger than {limit} bytes")]
    TooLarge { name: String, limit: u64 },
    #[error("{name} in the archive is not valid: {source}")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("config {name} is not named by its digest")]
    ConfigName { name: String },
    #[error("config {name} does not match its name: expected {expected}, got {actual}")]
    ConfigMismatch {
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {name} does not match its descriptor: expected {expected}, got {actual}")]
    BlobMismatch {
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {name} does not match its descriptor: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "layer {name} does not match the image config: expected diff id {expected}, got {actual}"
    )]
    DiffIdMismatch {
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("image config {config} lists {diff_ids} diff ids but the image has {layers} layers")]
    LayerCount {
        config: Digest,
        diff_ids: usize,
        layers: usize,
    },
    #[error("layer {name} has unsupported media type {media_type}")]
    LayerMediaType { name: String, media_type: String },
    #[error("layer {name} cannot be read: {source}")]
    Layer {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("image index {index} has no manifest for platform {platform}")]
    NoPlatform { index: Digest, platform: String },
    #[error("image index {index} nests more than {MAX_INDEX_DEPTH} levels deep")]
    IndexDepth { index: Digest },
    #[error("invalid image name {name:?}: {source}")]
    InvalidName {
        name: String,
        #[source]
        source: ReferenceError,
    },
    #[error("writing blob {digest} into the archive: {source}")]
    WriteBlob {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An image read from an archive, all of whose blobs are now in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    /// The manifest in the store: the archive's own, or one berth wrote (OCI media types)
    /// for a docker-archive, which has none.
    pub manifest_digest: Digest,
    /// The config digest, which is the image id.
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// (stored layer blob digest, diff id), bottom first.
    pub layers: Vec<(Digest, Digest)>,
    /// Normalised full references, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
}

/// An image to write into an archive.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveImage {
    pub config_digest: Digest,
    /// (stored layer blob digest, diff id), bottom first.
    pub layers: Vec<(Digest, Digest)>,
    /// Normalised full references; references without a tag are left out.
    pub repo_tags: Vec<String>,
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Reads a `docker save` / `podman save` docker-archive (both the legacy `<id>/layer.tar`
/// layout, including its symlinked duplicate layers, and Docker 25+'s
/// OCI-layout-plus-manifest.json layout) or an OCI archive (`oci-layout` + `index.json`;
/// names from the `io.containerd.image.name` annotation, or from
/// `org.opencontainers.image.ref.name` when that is a `name:tag` rather than a bare tag;
/// nested indexes pick the host platform).
///
/// Every blob goes into `store` verified: config bytes must hash to the config's name or
/// descriptor, OCI blobs to their descriptor digests, and each layer's uncompressed content
/// to the config's `rootfs.diff_ids[i]`. Layer blobs are stored as they are in the archive
/// (plain, gzip or zstd). Nothing is returned unless all of it checked out; on error the
/// blobs this load added are removed again. The archive is extracted into a temp dir under
/// `tmp_dir`, removed before returning.
pub fn load_archive<R: Read>(
    r: R,
    store: &ContentStore,
    tmp_dir: &Path,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let tmp = TempDir::new(tmp_dir)?;
    let extracted = extract(r, tmp.0.clone())?;
    let mut loader = Loader {
        files: extracted,
        txn: Txn {
            store,
            added: Vec::new(),
            done: false,
        },
        layers: HashMap::new(),
    };
    let images = if loader.files.exists("manifest.json") {
        loader.load_docker()?
    } else if loader.files.exists("index.json") {
        loader.load_oci()?
    } else {
        return Err(ArchiveError::NoManifest);
    };
    if images.is_empty() {
        return Err(ArchiveError::NoImages);
    }
    loader.txn.done = true;
    Ok(images)
}

/// A temp dir removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> Result<TempDir, ArchiveError> {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        loop {
            let p = parent.join(format!(".archive-{}", crate::fsutil::random_hex(8)));
            match fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(TempDir(p)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A link entry of the archive. Never created on disk.
enum Link {
    /// A symlink: target relative to the link's directory.
    Symbolic(PathBuf),
    /// A hard link: target relative to the archive root, already normalised.
    Hard(PathBuf),
}

/// The archive's regular files, extracted under `dir`, and its links.
struct Extracted {
    dir: PathBuf,
    links: HashMap<PathBuf, Link>,
}

/// Lexically normalises an archive path; `None` if it is absolute or climbs above the root.
fn normalise(p: &Path) -> Option<PathBuf> {
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

fn extract<R: Read>(r: R, dir: PathBuf) -> Result<Extracted, ArchiveError> {
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
    fn resolve(&self, name: &str) -> Result<PathBuf, ArchiveError> {
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

    fn exists(&self, name: &str) -> bool {
        self.resolve(name).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Opens the regular file at archive path `name`, with its size.
    fn open(&self, name: &str) -> Result<(File, u64), ArchiveError> {
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
    fn read_doc(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
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

fn parse_json<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
        name: name.to_string(),
        source,
    })
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// The digest in a `blobs/sha256/<hex>` archive path.
fn digest_of_blob_path(name: &str) -> Option<Digest> {
    let rel = normalise(Path::new(name))?;
    let rest = rel.to_str()?.strip_prefix("blobs/sha256/")?;
    Digest::from_hex(rest).ok()
}

/// The digest a config is named by: `<hex>.json` (legacy) or `blobs/sha256/<hex>`.
fn digest_of_config_name(name: &str) -> Option<Digest> {
    let file = Path::new(name).file_name()?.to_str()?;
    Digest::from_hex(file.strip_suffix(".json").unwrap_or(file)).ok()
}

/// Normalises an image name; `None` for a reference without a tag.
fn normalise_tag(name: &str) -> Result<Option<String>, ArchiveError> {
    let r = Reference::parse(name).map_err(|source| ArchiveError::InvalidName {
        name: name.to_string(),
        source,
    })?;
    if r.tag.is_none() {
        return Ok(None);
    }
    Ok(Some(Reference { digest: None, ..r }.to_string()))
}

/// The name an OCI index descriptor gives its image, if any.
fn oci_name(
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<Option<String>, ArchiveError> {
    let Some(a) = annotations else {
        return Ok(None);
    };
    if let Some(n) = a.get(ANNOTATION_CONTAINERD_NAME) {
        return normalise_tag(n);
    }
    match a.get(ANNOTATION_REF_NAME) {
        // A bare word is a tag without a repository (Docker writes the tag here): no name.
        Some(n) if n.contains([':', '/', '@']) => Ok(Reference::parse(n).ok().and_then(|r| {
            r.tag
                .is_some()
                .then(|| Reference { digest: None, ..r }.to_string())
        })),
        _ => Ok(None),
    }
}

/// The blobs a load has added; removed again unless the load completes.
struct Txn<'a> {
    store: &'a ContentStore,
    added: Vec<Digest>,
    done: bool,
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
struct Tee<R, W> {
    r: R,
    w: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.w.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// A layer as an image document names it.
struct LayerRef {
    /// Its path in the archive.
    name: String,
    /// The digest and size of the blob, when a descriptor or the name fixes them.
    blob: Option<Digest>,
    size: Option<u64>,
}

#[derive(Clone)]
struct StoredLayer {
    blob: Digest,
    diff_id: Digest,
    size: u64,
    compression: Compression,
}

struct Loader<'a> {
    files: Extracted,
    txn: Txn<'a>,
    /// Layers already stored by this load, by resolved path.
    layers: HashMap<PathBuf, StoredLayer>,
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
    fn load_docker(&mut self) -> Result<Vec<LoadedImage>, ArchiveError> {
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
    fn load_oci(&mut self) -> Result<Vec<LoadedImage>, ArchiveError> {
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

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.clone(),
        size,
        annotations: None,
        platform: None,
    }
}

fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// The manifest for `host` in an index: same os and architecture, the same variant
/// preferred, then one without a variant, then any.
fn pick_platform<'d>(manifests: &'d [Descriptor], host: &Platform) -> Option<&'d Descriptor> {
    let candidates: Vec<&Descriptor> = manifests
        .iter()
        .filter(|d| {
            matches!(
                d.media_type.as_str(),
                MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST | MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST
            )
        })
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == host.os && p.architecture == host.architecture)
        })
        .collect();
    let variant = |d: &Descriptor| d.platform.as_ref().and_then(|p| p.variant.clone());
    candidates
        .iter()
        .find(|d| variant(d) == host.variant)
        .or_else(|| candidates.iter().find(|d| variant(d).is_none()))
        .or_else(|| candidates.first())
        .copied()
}

/// Where the bytes of one archive blob come from.
enum Source<'a> {
    Bytes(Vec<u8>),
    /// An uncompressed blob in the store.
    Stored(Digest),
    /// A compressed blob, decompressed into a temp file of the store.
    Decompressed(TempBlob<'a>),
}

/// Reads exactly `remaining` bytes, then checks the inner reader is at its end (which is
/// when a `VerifiedReader` checks its digest).
struct Exact<R> {
    inner: R,
    remaining: u64,
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

fn blob_read_err(digest: &Digest) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
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
fn layer_source<'a>(
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

/// Writes a docker-archive that both `docker load` (old and new) and `podman load` accept,
/// in Docker 25's layout: `blobs/sha256/<hex>` (configs, uncompressed layer tars named by
/// diff id, one OCI manifest per image), `index.json` (one descriptor per image and tag,
/// annotated with the full name and the tag), `oci-layout`, and `manifest.json` (familiar
/// `RepoTags`, `Layers` as `blobs/sha256/<diff id>`).
///
/// Images with the same config are written once with their tags merged; shared layers are
/// written once. Entries are in lexical order (as Docker writes them), directories before
/// their files, with fixed owners, modes and times, so the same input gives the same bytes.
pub fn save_archive<W: Write>(
    images: &[SaveImage],
    store: &ContentStore,
    w: W,
) -> Result<(), ArchiveError> {
    // Merge images given more than once.
    let mut merged: Vec<(&SaveImage, Vec<Reference>)> = Vec::new();
    for img in images {
        let i = match merged
            .iter()
            .position(|(m, _)| m.config_digest == img.config_digest)
        {
            Some(i) => i,
            None => {
                merged.push((img, Vec::new()));
                merged.len() - 1
            }
        };
        for t in &img.repo_tags {
            let r = Reference::parse(t).map_err(|source| ArchiveError::InvalidName {
                name: t.clone(),
                source,
            })?;
            if r.tag.is_none() {
                continue;
            }
            let r = Reference { digest: None, ..r };
            if !merged[i].1.contains(&r) {
                merged[i].1.push(r);
            }
        }
    }

    let mut blobs: BTreeMap<String, (u64, Source<'_>)> = BTreeMap::new();
    let mut index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_INDEX.into()),
        manifests: Vec::new(),
        annotations: None,
    };
    let mut docker_manifest = Vec::new();
    for (img, tags) in &merged {
        let config_bytes = store.read(&img.config_digest)?;
        let config: ImageConfig = parse_json(&img.config_digest.to_string(), &config_bytes)?;
        if config.rootfs.diff_ids.len() != img.layers.len() {
            return Err(ArchiveError::LayerCount {
                config: img.config_digest.clone(),
                diff_ids: config.rootfs.diff_ids.len(),
                layers: img.layers.len(),
            });
        }
        let mut layer_descs = Vec::with_capacity(img.layers.len());
        for ((blob, diff_id), want) in img.layers.iter().zip(&config.rootfs.diff_ids) {
            if diff_id != want {
                return Err(ArchiveError::DiffIdMismatch {
                    name: blob.to_string(),
                    expected: want.clone(),
                    actual: diff_id.clone(),
                });
            }
            let size = match blobs.get(diff_id.hex()) {
                Some((size, _)) => *size,
                None => {
                    let (size, src) = layer_source(store, blob, diff_id)?;
                    blobs.insert(diff_id.hex().to_string(), (size, src));
                    size
                }
            };
            layer_descs.push(descriptor(MEDIA_OCI_LAYER, diff_id, size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.into()),
            config: descriptor(
                MEDIA_OCI_CONFIG,
                &img.config_digest,
                config_bytes.len() as u64,
            ),
            layers: layer_descs,
            annotations: None,
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let manifest_digest = Digest::of(&manifest_bytes);
        let manifest_desc = descriptor(
            MEDIA_OCI_MANIFEST,
            &manifest_digest,
            manifest_bytes.len() as u64,
        );
        blobs.insert(
            img.config_digest.hex().to_string(),
            (config_bytes.len() as u64, Source::Bytes(config_bytes)),
        );
        blobs.insert(
            manifest_digest.hex().to_string(),
            (manifest_bytes.len() as u64, Source::Bytes(manifest_bytes)),
        );
        if tags.is_empty() {
            index.manifests.push(manifest_desc.clone());
        }
        for t in tags {
            let annotations = BTreeMap::from([
                (ANNOTATION_CONTAINERD_NAME.to_string(), t.to_string()),
                (
                    ANNOTATION_REF_NAME.to_string(),
                    t.tag.clone().unwrap_or_default(),
                ),
            ]);
            index.manifests.push(Descriptor {
                annotations: Some(annotations),
                ..manifest_desc.clone()
            });
        }
        docker_manifest.push(DockerManifestEntry {
            config: blob_path(&img.config_digest),
            repo_tags: (!tags.is_empty()).then(|| tags.iter().map(Reference::familiar).collect()),
            layers: img
                .layers
                .iter()
                .map(|(_, diff_id)| blob_path(diff_id))
                .collect(),
        });
    }

    let mut b = tar::Builder::new(w);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, dir, io::empty())
            .map_err(ArchiveError::Write)?;
    }
    for (hex, (size, src)) in blobs {
        let digest = Digest::from_hex(&hex).expect("blob names are digests");
        let mut h = header(tar::EntryType::Regular, 0o644, size);
        let path = blob_path(&digest);
        let res = match src {
            Source::Bytes(bytes) => b.append_data(&mut h, &path, &bytes[..]),
            Source::Stored(d) => {
                let r = store.open_verified(&d)?;
                b.append_data(
                    &mut h,
                    &path,
                    Exact {
                        inner: r,
                        remaining: size,
                    },
                )
            }
            Source::Decompressed(tmp) => b.append_data(
                &mut h,
                &path,
                Exact {
                    inner: &tmp.file,
                    remaining: size,
                },
            ),
        };
        res.map_err(blob_read_err(&digest))?;
    }
    let docs = [
        (
            "index.json",
            serde_json::to_vec(&index).expect("index serialises"),
        ),
        (
            "manifest.json",
            serde_json::to_vec(&docker_manifest).expect("manifest.json serialises"),
        ),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ];
    for (name, bytes) in docs {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        b.append_data(&mut h, name, &bytes[..])
            .map_err(ArchiveError::Write)?;
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ArchiveError::Write)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}
