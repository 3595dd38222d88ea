//! Named volumes (`volumes/<name>/_data`): data that outlives containers.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::error::{io_err, EngineError, Result};
use crate::specs::VolumeSpec;
use crate::Engine;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub scope: String,
    pub options: BTreeMap<String, String>,
}

/// Docker's volume name rule.
pub use crate::specs::volume::valid_name as valid_volume_name;

impl Engine {
    pub fn volume_data_dir(&self, name: &str) -> PathBuf {
        self.root().join("volumes").join(name).join("_data")
    }

    pub fn volume_exists(&self, name: &str) -> Result<bool> {
        Ok(self.db.query_row(
            "SELECT EXISTS(SELECT 1 FROM volumes WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?)
    }

    /// `volume create`; creating an existing volume is fine (Docker returns it).
    /// `volume create`: a new volume, or the one of that name as it is (as Docker). A
    /// volume without a name gets a random one and is anonymous.
    pub fn create_volume(&self, spec: &VolumeSpec) -> Result<VolumeInfo> {
        spec.validate()?;
        match &spec.name {
            Some(n) => self.make_volume(n, &spec.labels, false),
            None => self.make_volume(&crate::names::new_id(), &spec.labels, true),
        }
    }

    /// Makes volume `name` unless it is there (the name is valid).
    pub(crate) fn make_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<VolumeInfo> {
        if self.volume_exists(name)? {
            return self.inspect_volume(name);
        }
        let data = self.volume_data_dir(name);
        fs::create_dir_all(&data).map_err(io_err(&data))?;
        self.db.execute(
            "INSERT OR IGNORE INTO volumes (name, created, labels, anonymous) VALUES (?1, ?2, ?3, ?4)",
            params![name, crate::now(), serde_json::to_string(labels).expect("labels serialise"), anonymous as i64],
        )?;
        self.emit(
            "volume",
            "create",
            name,
            [("driver".to_string(), "local".to_string())]
                .into_iter()
                .collect(),
        );
        self.inspect_volume(name)
    }

    pub fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        let row = self
            .db
            .query_row(
                "SELECT created, labels FROM volumes WHERE name = ?1",
                [name],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        let Some((created, labels)) = row else {
            return Err(EngineError::NoSuchVolume(name.to_string()));
        };
        Ok(VolumeInfo {
            name: name.to_string(),
            driver: "local".into(),
            mountpoint: self.volume_data_dir(name).display().to_string(),
            created_at: created,
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            scope: "local".into(),
            options: BTreeMap::new(),
        })
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>> {
        let mut stmt = self.db.prepare("SELECT name FROM volumes ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        names.iter().map(|n| self.inspect_volume(n)).collect()
    }

    /// Names of containers using a volume.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .container_records()?
            .into_iter()
            .filter(|c| c.mounts.iter().any(|m| m.name.as_deref() == Some(name)))
            .map(|c| c.id)
            .collect())
    }

    /// `volume rm`: refuses while a container uses it (unless `force`).
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        if !self.volume_exists(name)? {
            return Err(EngineError::NoSuchVolume(name.to_string()));
        }
        let users = self.volume_users(name)?;
        if !users.is_empty() && !force {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.db
            .execute("DELETE FROM volumes WHERE name = ?1", [name])?;
        let dir = self.root().join("volumes").join(name);
        fs::remove_dir_all(&dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io_err(&dir))?;
        self.emit(
            "volume",
            "destroy",
            name,
            [("driver".to_string(), "local".to_string())]
                .into_iter()
                .collect(),
        );
        Ok(())
    }

    /// `volume prune`: removes unused anonymous volumes (all unused ones with `all`).
    pub fn prune_volumes(
        &self,
        all: bool,
        filter: &crate::prune::PruneFilter,
    ) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut bytes = 0;
        let mut stmt = self.db.prepare("SELECT name, anonymous FROM volumes")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        for (name, anon) in rows {
            if (!anon && !all) || !self.volume_users(&name)?.is_empty() {
                continue;
            }
            let info = self.inspect_volume(&name)?;
            if !filter.allows(&info.created_at, &info.labels) {
                continue;
            }
            bytes += dir_size(&self.volume_data_dir(&name));
            self.remove_volume(&name, false)?;
            removed.push(name);
        }
        Ok((removed, bytes))
    }
}

/// Total size of the files under a dir (not following symlinks).
pub fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
