//! The layer store: each layer unpacked once under `layers/<chain-id>/diff`, shared
//! read-only by every container as an overlayfs lower dir.
//!
//! Each layer also gets a short link `layers/l/<id>` → `../<chain-id>/diff`, so the
//! overlay `lowerdir=` option of a 100+ layer image still fits in a page when the mount
//! is made from inside `layers/` (as Docker's overlay2 does).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::layer::{self, ApplyOptions, ApplyStats, LayerError};

#[derive(Debug, thiserror::Error)]
pub enum LayerStoreError {
    #[error("layer {chain_id}: {source}")]
    Unpack {
        chain_id: Digest,
        #[source]
        source: LayerError,
    },
    #[error("layer {0} is not unpacked")]
    Missing(Digest),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerStoreError + '_ {
    move |source| LayerStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<LayerStore, LayerStoreError> {
        let l = root.join("l");
        fs::create_dir_all(&l).map_err(io_err(&l))?;
        Ok(LayerStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    pub fn diff_dir(&self, chain_id: &Digest) -> PathBuf {
        self.dir(chain_id).join("diff")
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.dir(chain_id).join("link").exists()
    }

    /// `l/<short>`: the layer's lower dir, relative to the store root.
    pub fn short_link(&self, chain_id: &Digest) -> Result<String, LayerStoreError> {
        let p = self.dir(chain_id).join("link");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(format!("l/{}", s.trim())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(LayerStoreError::Missing(chain_id.clone()))
            }
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Unpacks an uncompressed layer tar as `chain_id`. Unpacks into a temp dir and renames
    /// it into place, so a layer dir is either complete or absent.
    pub fn unpack<R: Read>(
        &self,
        chain_id: &Digest,
        tar: R,
    ) -> Result<ApplyStats, LayerStoreError> {
        let final_dir = self.dir(chain_id);
        let tmp = self.root.join(format!(
            ".tmp-{}-{}",
            chain_id.short(),
            crate::fsutil::random_hex(6)
        ));
        let diff = tmp.join("diff");
        fs::create_dir_all(&diff).map_err(io_err(&diff))?;
        let result = (|| {
            let stats = layer::apply_tar(
                tar,
                &diff,
                &ApplyOptions {
                    allow_devices: true,
                    overlay_whiteouts: true,
                    preserve_owner: true,
                },
            )
            .map_err(|source| LayerStoreError::Unpack {
                chain_id: chain_id.clone(),
                source,
            })?;
            let short = self.new_short_id()?;
            let link = self.root.join("l").join(&short);
            let target = format!("../{}/diff", chain_id.hex());
            symlink(&target, &link).map_err(io_err(&link))?;
            let lf = tmp.join("link");
            fs::write(&lf, &short).map_err(io_err(&lf))?;
            if final_dir.exists() {
                // Another process unpacked the same layer meanwhile: keep theirs.
                let _ = fs::remove_file(&link);
                remove_tree(&tmp);
                return Ok(stats);
            }
            fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
            Ok(stats)
        })();
        if result.is_err() {
            remove_tree(&tmp);
        }
        result
    }

    fn new_short_id(&self) -> Result<String, LayerStoreError> {
        loop {
            let id = crate::fsutil::random_hex(8).to_uppercase();
            if !self.root.join("l").join(&id).exists() {
                return Ok(id);
            }
        }
    }

    /// Removes an unpacked layer (and its short link).
    pub fn remove(&self, chain_id: &Digest) -> Result<(), LayerStoreError> {
        if let Ok(link) = self.short_link(chain_id) {
            let _ = fs::remove_file(self.root.join(link));
        }
        let d = self.dir(chain_id);
        if d.exists() {
            fs::remove_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(())
    }

    /// The overlay `lowerdir=` value for a stack (given bottom first, as in a config), to be
    /// used with the store root as the working directory of the mount.
    pub fn lowerdir_option(&self, chain_ids: &[Digest]) -> Result<String, LayerStoreError> {
        let mut parts = Vec::with_capacity(chain_ids.len());
        for c in chain_ids.iter().rev() {
            parts.push(self.short_link(c)?);
        }
        Ok(parts.join(":"))
    }

    /// Removes leftovers of interrupted unpacks.
    pub fn clean_temp(&self) {
        if let Ok(rd) = fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    remove_tree(&e.path());
                }
            }
        }
    }
}

/// Best-effort recursive removal (clears immutable-ish modes first is not needed as root).
pub fn remove_tree(p: &Path) {
    let _ = fs::remove_dir_all(p);
}
