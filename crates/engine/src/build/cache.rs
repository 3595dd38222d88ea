//! The build cache: layers by cache key, cache mounts, and what builder prune removes.

use super::*;

impl Engine {
    /// The layer a cache key names, if its blob is still stored.
    pub(super) fn cached_layer(&self, key: &str) -> Result<Option<(Digest, Digest)>> {
        let row: Option<(String, String)> = self
            .db
            .query_row(
                "SELECT blob, diff_id FROM build_cache WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((blob, diff_id)) = row else {
            return Ok(None);
        };
        let (Ok(blob), Ok(diff_id)) = (Digest::parse(&blob), Digest::parse(&diff_id)) else {
            return Ok(None);
        };
        if !self.store.contains(&blob) {
            return Ok(None);
        }
        self.db.execute(
            "UPDATE build_cache SET last_used = ?2 WHERE key = ?1",
            params![key, crate::now()],
        )?;
        Ok(Some((blob, diff_id)))
    }

    /// Records the layer a step made.
    pub(super) fn record_layer(
        &self,
        key: &str,
        blob: &Digest,
        diff_id: &Digest,
        by: &str,
    ) -> Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO build_cache (key, blob, diff_id, created_by, created, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![key, blob.to_string(), diff_id.to_string(), by, crate::now()],
        )?;
        Ok(())
    }

    /// The directory of the cache mount `id` (its files under `data`), made with the
    /// owner and mode given the first time.
    pub(super) fn cache_mount_dir(
        &self,
        id: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.root().join("build-mounts").join(hash_key(&[id]));
        let data = dir.join("data");
        if !data.is_dir() {
            // Made aside and moved in without replacing: of builds (or stages) making it at
            // once, one wins and all use its directory.
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let tmp = dir.join(format!("data.{}", crate::names::new_id()));
            std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(io_err(&tmp))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(&tmp))?;
            let moved = nix::fcntl::renameat2(
                None,
                &tmp,
                None,
                &data,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            );
            if moved.is_err() {
                let _ = std::fs::remove_dir(&tmp);
            }
        }
        Ok(dir)
    }

    /// The blobs the build cache keeps (the garbage collector leaves them).
    pub(crate) fn build_cache_blobs(&self) -> Result<Vec<Digest>> {
        let mut stmt = self.db.prepare("SELECT blob FROM build_cache")?;
        let blobs = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|b| b.ok().and_then(|b| Digest::parse(&b).ok()))
            .collect();
        Ok(blobs)
    }

    /// `builder prune`: forgets the build cache and removes the layers only it kept.
    /// Returns the entries removed and the bytes reclaimed.
    pub fn prune_build_cache(&self) -> Result<(usize, u64)> {
        let blobs = self.build_cache_blobs()?;
        let n = self.db.execute("DELETE FROM build_cache", [])?;
        self.db.execute("DELETE FROM build_file_digests", [])?;
        let mounts = self.root().join("build-mounts");
        if mounts.exists() {
            std::fs::remove_dir_all(&mounts).map_err(crate::error::io_err(&mounts))?;
        }
        let mut used = std::collections::HashSet::new();
        for r in self.list_image_rows()? {
            used.extend(r.layers.iter().map(|(b, _)| b.clone()));
        }
        let mut reclaimed = 0;
        for b in blobs {
            if !used.contains(&b) {
                reclaimed += self.store.size(&b).unwrap_or(0);
                self.store.remove(&b)?;
            }
        }
        Ok((n, reclaimed))
    }
}
