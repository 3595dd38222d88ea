//! Writing Docker 25's docker-archive layout.

use super::*;

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

pub(super) fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}
