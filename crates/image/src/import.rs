//! `import`: a root file system tarball becomes a one-layer image.

use std::io::Read;

use crate::compression::decompress;
use crate::config::{
    host_platform, now_rfc3339, Descriptor, History, ImageConfig, Manifest, RootFs, RunConfig,
    MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER, MEDIA_OCI_MANIFEST,
};
use crate::digest::Digest;
use crate::store::{ContentStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the archive: {0}")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new image whose blobs are in the store but which no name or DB row points at yet.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// (layer blob digest, diff id) bottom first; blobs are stored uncompressed.
    pub layers: Vec<(Digest, Digest)>,
}

/// Streams a (gzip, zstd or plain) tarball into the store as one uncompressed layer, and
/// writes a config and manifest for it.
pub fn import_rootfs<R: Read>(
    store: &ContentStore,
    r: R,
    run: RunConfig,
    comment: Option<String>,
    created_by: &str,
) -> Result<NewImage, ImportError> {
    let (_, tar) = decompress(r).map_err(ImportError::Read)?;
    let (diff_id, size) = store.write_from(tar, None)?;
    let platform = host_platform();
    let created = now_rfc3339();
    let config = ImageConfig {
        created: Some(created.clone()),
        author: None,
        architecture: platform.architecture,
        os: platform.os,
        variant: platform.variant,
        config: run,
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id.clone()],
        },
        history: vec![History {
            created: Some(created),
            created_by: Some(created_by.to_string()),
            comment: comment.clone(),
            ..Default::default()
        }],
        comment,
    };
    new_image(store, config, vec![(diff_id, size)])
}

/// Stores `config` and a manifest over `layers` ((uncompressed blob digest, size) each).
pub fn new_image(
    store: &ContentStore,
    config: ImageConfig,
    layers: Vec<(Digest, u64)>,
) -> Result<NewImage, ImportError> {
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_digest = store.write_bytes(&config_bytes, None)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: MEDIA_OCI_CONFIG.into(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            annotations: None,
            platform: None,
        },
        layers: layers
            .iter()
            .map(|(d, size)| Descriptor {
                media_type: MEDIA_OCI_LAYER.into(),
                digest: d.clone(),
                size: *size,
                annotations: None,
                platform: None,
            })
            .collect(),
        annotations: None,
    };
    let manifest_digest = store.write_bytes(
        &serde_json::to_vec(&manifest).expect("manifest serialises"),
        None,
    )?;
    Ok(NewImage {
        manifest_digest,
        config_digest,
        config,
        layers: layers.into_iter().map(|(d, _)| (d.clone(), d)).collect(),
    })
}
