//! `load` and `save`: image archives as `docker save`, `podman save` and `skopeo` write
//! them.
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

mod extract;
mod load;
mod save;

use extract::*;
use load::*;
pub use save::save_archive;

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
