//! The registry's storage on the local file system.
//!
//! ```text
//! ROOT/blobs/<alg>/<hh>/<hex>                      every blob (and manifest) once
//! ROOT/repositories/<name>/_layers/<alg>/<hex>     the blob is part of <name>
//! ROOT/repositories/<name>/_manifests/revisions/<alg>/<hex>   manifest in <name>; holds
//!                                                  its media type
//! ROOT/repositories/<name>/_manifests/tags/<tag>   the tagged digest
//! ROOT/repositories/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>   a manifest whose
//!                                                  `subject` is that digest
//! ROOT/repositories/<name>/_uploads/<id>/data      an upload in progress
//! ROOT/tmp/                                        files being written, renamed into place
//! ```
//!
//! Names are validated before they reach a path (their components never start with `_`,
//! never contain `..`), so the layout cannot be escaped. A blob becomes visible only by a
//! rename after its digest was checked: an interrupted upload never shows. Blobs are
//! shared by every repository that links them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest};

/// Manifests larger than this are refused (the spec suggests 4 MiB).
pub const MANIFEST_MAX: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    #[error("provided digest did not match uploaded content")]
    DigestInvalid,
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest references a blob unknown to the repository: {0}")]
    ManifestBlobUnknown(String),
    #[error("requested range not satisfiable: upload is at {0} bytes")]
    RangeInvalid(u64),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Is `name` a repository name of the distribution spec?
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(berth_image::reference::valid_component)
}

pub use berth_image::reference::valid_tag;

pub struct Storage {
    root: PathBuf,
}

/// A manifest as stored: its digest, bytes and media type.
pub struct Manifest {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub media_type: String,
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the kernel gives random bytes");
    hex::encode(b)
}

impl Storage {
    pub fn open(root: &Path) -> io::Result<Storage> {
        for d in ["blobs", "repositories", "tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Storage {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm.name())
            .join(&d.hex[..2])
            .join(&d.hex)
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join("_layers")
            .join(d.algorithm.name())
            .join(&d.hex)
    }

    fn revision_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join("_manifests/revisions")
            .join(d.algorithm.name())
            .join(&d.hex)
    }

    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.repo(name).join("_manifests/tags").join(tag)
    }

    fn upload_dir(&self, name: &str, id: &str) -> Option<PathBuf> {
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.repo(name).join("_uploads").join(id))
    }

    /// Writes `bytes` to `path` through a temp file and a rename.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if let Some(p) = path.parent() {
            fs::create_dir_all(p)?;
        }
        let tmp = self.root.join("tmp").join(random_id());
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        fs::rename(&tmp, path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// The size of a blob linked into `name`; None when it is not there.
    pub fn blob_size(&self, name: &str, d: &Digest) -> Option<u64> {
        if !self.layer_link(name, d).exists() && !self.revision_link(name, d).exists() {
            return None;
        }
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Is the blob stored at all (in any repository)?
    pub fn blob_exists(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    pub fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        self.touch(d);
        self.write_atomic(&self.layer_link(name, d), b"")
    }

    /// Marks a blob as just used, so a garbage collection running now keeps it (it only
    /// removes unreferenced blobs older than its grace period).
    fn touch(&self, d: &Digest) {
        if let Ok(f) = File::options().write(true).open(self.blob_path(d)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Unlinks a blob from `name`; false when it was not linked.
    pub fn delete_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        match fs::remove_file(self.layer_link(name, d)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stores `bytes` as a blob whose digest is `d` (checked) and links it into `name`.
    pub fn put_blob(&self, name: &str, d: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        if Digest::of(d.algorithm, bytes) != *d {
            return Err(StorageError::DigestInvalid);
        }
        if !self.blob_exists(d) {
            self.write_atomic(&self.blob_path(d), bytes)?;
        }
        self.link_blob(name, d)?;
        Ok(())
    }

    // --- uploads -------------------------------------------------------------------------

    pub fn start_upload(&self, name: &str) -> io::Result<String> {
        let id = random_id();
        let dir = self.upload_dir(name, &id).expect("a valid id");
        fs::create_dir_all(&dir)?;
        File::create(dir.join("data"))?;
        Ok(id)
    }

    /// How many bytes an upload holds so far.
    pub fn upload_size(&self, name: &str, id: &str) -> Result<u64, StorageError> {
        let dir = self
            .upload_dir(name, id)
            .ok_or(StorageError::UploadUnknown)?;
        fs::metadata(dir.join("data"))
            .map(|m| m.len())
            .map_err(|_| StorageError::UploadUnknown)
    }

    /// Opens an upload for appending, checking that a chunk claiming to start at `start`
    /// does start where the upload ends.
    pub fn append_upload(
        &self,
        name: &str,
        id: &str,
        start: Option<u64>,
    ) -> Result<File, StorageError> {
        let size = self.upload_size(name, id)?;
        if start.is_some_and(|s| s != size) {
            return Err(StorageError::RangeInvalid(size));
        }
        let dir = self
            .upload_dir(name, id)
            .ok_or(StorageError::UploadUnknown)?;
        Ok(fs::OpenOptions::new().append(true).open(dir.join("data"))?)
    }

    /// Checks an upload against `d` and makes it a blob of `name`.
    pub fn finish_upload(&self, name: &str, id: &str, d: &Digest) -> Result<(), StorageError> {
        let dir = self
            .upload_dir(name, id)
            .ok_or(StorageError::UploadUnknown)?;
        let data = dir.join("data");
        let mut f = File::open(&data).map_err(|_| StorageError::UploadUnknown)?;
        let mut h = d.algorithm.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        if h.finish() != *d {
            // The upload stays, as the spec wants: the client may retry the PUT.
            return Err(StorageError::DigestInvalid);
        }
        f.sync_all()?;
        let target = self.blob_path(d);
        if !target.exists() {
            fs::create_dir_all(target.parent().expect("blob paths have parents"))?;
            fs::rename(&data, &target)?;
        }
        self.link_blob(name, d)?;
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    pub fn cancel_upload(&self, name: &str, id: &str) -> Result<(), StorageError> {
        let dir = self
            .upload_dir(name, id)
            .ok_or(StorageError::UploadUnknown)?;
        if !dir.exists() {
            return Err(StorageError::UploadUnknown);
        }
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// Links a blob another repository (or any) has into `name` (a cross-repo mount).
    pub fn mount_blob(&self, name: &str, from: &str, d: &Digest) -> io::Result<bool> {
        if self.blob_size(from, d).is_none() {
            return Ok(false);
        }
        self.link_blob(name, d)?;
        Ok(true)
    }

    // --- manifests -----------------------------------------------------------------------

    /// The digest `reference` (a tag or a digest) names in `name`.
    pub fn resolve(&self, name: &str, reference: &str) -> Result<Digest, StorageError> {
        let d = match Digest::parse(reference) {
            Some(d) => d,
            None => {
                if !valid_tag(reference) {
                    return Err(StorageError::ManifestUnknown);
                }
                let s = fs::read_to_string(self.tag_path(name, reference))
                    .map_err(|_| StorageError::ManifestUnknown)?;
                Digest::parse(s.trim()).ok_or(StorageError::ManifestUnknown)?
            }
        };
        if !self.revision_link(name, &d).exists() {
            return Err(StorageError::ManifestUnknown);
        }
        Ok(d)
    }

    pub fn get_manifest(&self, name: &str, reference: &str) -> Result<Manifest, StorageError> {
        let digest = self.resolve(name, reference)?;
        let media_type = fs::read_to_string(self.revision_link(name, &digest))
            .map_err(|_| StorageError::ManifestUnknown)?;
        let bytes = fs::read(self.blob_path(&digest)).map_err(|_| StorageError::ManifestUnknown)?;
        Ok(Manifest {
            digest,
            bytes,
            media_type,
        })
    }

    /// Stores a manifest under `reference` (a tag, or the digest it must have). Returns
    /// its digest and its `subject`, when it has one.
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<(Digest, Option<Digest>), StorageError> {
        if bytes.len() > MANIFEST_MAX {
            return Err(StorageError::ManifestInvalid("manifest too large".into()));
        }
        let by_digest = Digest::parse(reference);
        if by_digest.is_none() && !valid_tag(reference) {
            return Err(StorageError::ManifestInvalid(format!(
                "invalid tag {reference:?}"
            )));
        }
        let algorithm = by_digest
            .as_ref()
            .map(|d| d.algorithm)
            .unwrap_or(Algorithm::Sha256);
        let digest = Digest::of(algorithm, bytes);
        if by_digest.as_ref().is_some_and(|d| *d != digest) {
            return Err(StorageError::DigestInvalid);
        }
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| StorageError::ManifestInvalid(format!("not JSON: {e}")))?;
        if !v.is_object() {
            return Err(StorageError::ManifestInvalid("not a JSON object".into()));
        }
        let media_type = v["mediaType"]
            .as_str()
            .filter(|m| !m.is_empty())
            .unwrap_or(content_type)
            .to_string();
        if let (Some(inner), false) = (v["mediaType"].as_str(), content_type.is_empty()) {
            if inner != content_type {
                return Err(StorageError::ManifestInvalid(format!(
                    "mediaType {inner:?} does not match Content-Type {content_type:?}"
                )));
            }
        }
        // Everything an image manifest names must be in the repository; an index's
        // manifests too.
        let descriptor_digest = |d: &serde_json::Value| -> Result<Digest, StorageError> {
            d["digest"].as_str().and_then(Digest::parse).ok_or_else(|| {
                StorageError::ManifestInvalid("a descriptor without a valid digest".into())
            })
        };
        if let Some(list) = v["manifests"].as_array() {
            for m in list {
                let d = descriptor_digest(m)?;
                if !self.revision_link(name, &d).exists() {
                    return Err(StorageError::ManifestBlobUnknown(d.to_string()));
                }
            }
        } else {
            let config = v.get("config").into_iter();
            let layers = v["layers"].as_array().into_iter().flatten();
            for b in config.chain(layers) {
                let d = descriptor_digest(b)?;
                if self.blob_size(name, &d).is_none() {
                    return Err(StorageError::ManifestBlobUnknown(d.to_string()));
                }
            }
        }
        let subject = match v.get("subject") {
            Some(s) => Some(descriptor_digest(s)?),
            None => None,
        };
        // What this manifest names must survive a collection that marked before it.
        for d in referenced(&v) {
            self.touch(&d);
        }
        if self.blob_exists(&digest) {
            self.touch(&digest);
        } else {
            self.write_atomic(&self.blob_path(&digest), bytes)?;
        }
        self.write_atomic(&self.revision_link(name, &digest), media_type.as_bytes())?;
        if let Some(s) = &subject {
            let link = self
                .repo(name)
                .join("_referrers")
                .join(s.algorithm.name())
                .join(&s.hex)
                .join(format!("{}-{}", digest.algorithm.name(), digest.hex));
            self.write_atomic(&link, b"")?;
        }
        if by_digest.is_none() {
            self.write_atomic(
                &self.tag_path(name, reference),
                digest.to_string().as_bytes(),
            )?;
        }
        Ok((digest, subject))
    }

    /// Deletes a manifest by digest (and every tag pointing at it), or only a tag.
    pub fn delete_manifest(&self, name: &str, reference: &str) -> Result<(), StorageError> {
        match Digest::parse(reference) {
            Some(d) => {
                let link = self.revision_link(name, &d);
                if !link.exists() {
                    return Err(StorageError::ManifestUnknown);
                }
                for tag in self.tags(name) {
                    if self.resolve(name, &tag).ok().as_ref() == Some(&d) {
                        let _ = fs::remove_file(self.tag_path(name, &tag));
                    }
                }
                // Its entry as a referrer goes too.
                if let Ok(bytes) = fs::read(self.blob_path(&d)) {
                    if let Some(s) = serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()
                        .and_then(|v| v["subject"]["digest"].as_str().and_then(Digest::parse))
                    {
                        let _ = fs::remove_file(
                            self.repo(name)
                                .join("_referrers")
                                .join(s.algorithm.name())
                                .join(&s.hex)
                                .join(format!("{}-{}", d.algorithm.name(), d.hex)),
                        );
                    }
                }
                fs::remove_file(link)?;
                Ok(())
            }
            None => {
                if !valid_tag(reference) {
                    return Err(StorageError::ManifestUnknown);
                }
                fs::remove_file(self.tag_path(name, reference))
                    .map_err(|_| StorageError::ManifestUnknown)
            }
        }
    }

    /// The tags of `name`, sorted; empty when the repository does not exist.
    pub fn tags(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.repo(name).join("_manifests/tags"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|t| valid_tag(t))
            .collect();
        out.sort();
        out
    }

    /// Does the repository exist (has it ever held a manifest or blob)?
    pub fn repo_exists(&self, name: &str) -> bool {
        let r = self.repo(name);
        r.join("_manifests").exists() || r.join("_layers").exists()
    }

    /// Every repository holding manifests, sorted.
    pub fn catalog(&self) -> Vec<String> {
        let mut out = Vec::new();
        let base = self.root.join("repositories");
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "_manifests" {
                    if let Ok(rel) = dir.strip_prefix(&base) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                } else if !name.starts_with('_') && e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    /// The manifests of `name` whose subject is `subject`, as descriptors (OCI
    /// referrers API), filtered by `artifact_type` when given.
    pub fn referrers(
        &self,
        name: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Vec<serde_json::Value> {
        let dir = self
            .repo(name)
            .join("_referrers")
            .join(subject.algorithm.name())
            .join(&subject.hex);
        let mut out = Vec::new();
        let mut entries: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        entries.sort();
        for e in entries {
            let Some(d) = e
                .split_once('-')
                .and_then(|(a, h)| Digest::parse(&format!("{a}:{h}")))
            else {
                continue;
            };
            let Ok(m) = self.get_manifest(name, &d.to_string()) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.bytes) else {
                continue;
            };
            let kind = v["artifactType"]
                .as_str()
                .or_else(|| v["config"]["mediaType"].as_str())
                .unwrap_or_default()
                .to_string();
            if artifact_type.is_some_and(|t| t != kind) {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": m.media_type,
                "digest": d.to_string(),
                "size": m.bytes.len(),
            });
            if !kind.is_empty() {
                desc["artifactType"] = kind.into();
            }
            if let Some(a) = v.get("annotations").filter(|a| a.is_object()) {
                desc["annotations"] = a.clone();
            }
            out.push(desc);
        }
        out
    }
}

/// The blobs and manifests a manifest or index names (config, layers, manifests,
/// subject).
fn referenced(v: &serde_json::Value) -> Vec<Digest> {
    let mut out = Vec::new();
    let mut add = |d: &serde_json::Value| {
        if let Some(d) = d["digest"].as_str().and_then(Digest::parse) {
            out.push(d);
        }
    };
    add(&v["config"]);
    add(&v["subject"]);
    for key in ["layers", "manifests", "blobs"] {
        for d in v[key].as_array().into_iter().flatten() {
            add(d);
        }
    }
    out
}

/// What a garbage collection found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub kept: usize,
    pub removed: usize,
    pub bytes: u64,
}

impl Storage {
    /// Removes every blob no manifest of any repository references (directly or through
    /// an index) and that was not used within `grace`. Safe while serving: uploads are not
    /// blobs until finished, and everything a push links or names is touched first, so a
    /// push racing the collection finds its blobs fresh. `dry_run` only counts.
    pub fn gc(&self, grace: std::time::Duration, dry_run: bool) -> io::Result<GcReport> {
        let mut marked = std::collections::HashSet::new();
        for repo in self.catalog() {
            let dir = self.repo(&repo).join("_manifests/revisions");
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                for e in fs::read_dir(dir.join(alg.name()))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let Some(d) = e
                        .file_name()
                        .to_str()
                        .and_then(|h| Digest::parse(&format!("{}:{h}", alg.name())))
                    else {
                        continue;
                    };
                    if let Ok(bytes) = fs::read(self.blob_path(&d)) {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                            marked.extend(referenced(&v));
                        }
                    }
                    marked.insert(d);
                }
            }
        }
        let mut report = GcReport::default();
        let now = std::time::SystemTime::now();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let base = self.root.join("blobs").join(alg.name());
            for prefix in fs::read_dir(&base).into_iter().flatten().flatten() {
                for e in fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                    let Some(d) = e
                        .file_name()
                        .to_str()
                        .and_then(|h| Digest::parse(&format!("{}:{h}", alg.name())))
                    else {
                        continue;
                    };
                    if marked.contains(&d) {
                        report.kept += 1;
                        continue;
                    }
                    let Ok(meta) = e.metadata() else { continue };
                    let age = meta
                        .modified()
                        .ok()
                        .and_then(|m| now.duration_since(m).ok())
                        .unwrap_or_default();
                    if age < grace {
                        report.kept += 1;
                        continue;
                    }
                    report.removed += 1;
                    report.bytes += meta.len();
                    if !dry_run {
                        fs::remove_file(e.path())?;
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags_follow_the_spec() {
        for ok in ["a", "library/busybox", "a.b/c_d/e__f/g-h---i", "0/1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "_a",
            "a_",
            "a___b",
            "a..b",
            "a/_manifests",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_tag("latest") && valid_tag("_v1.2-rc") && valid_tag(&"a".repeat(128)));
        assert!(
            !valid_tag("") && !valid_tag(".x") && !valid_tag("-x") && !valid_tag(&"a".repeat(129))
        );
        assert!(!valid_tag("a/b") && !valid_tag(".."));
    }

    #[test]
    fn an_upload_becomes_a_blob_only_with_the_right_digest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let id = s.start_upload("r").unwrap();
        s.append_upload("r", &id, Some(0))
            .unwrap()
            .write_all(b"hello")
            .unwrap();
        assert!(matches!(
            s.append_upload("r", &id, Some(3)),
            Err(StorageError::RangeInvalid(5))
        ));
        let wrong = Digest::of(Algorithm::Sha256, b"other");
        assert!(matches!(
            s.finish_upload("r", &id, &wrong),
            Err(StorageError::DigestInvalid)
        ));
        assert!(!s.blob_exists(&wrong));
        let right = Digest::of(Algorithm::Sha512, b"hello");
        s.finish_upload("r", &id, &right).unwrap();
        assert_eq!(s.blob_size("r", &right), Some(5));
        assert_eq!(s.blob_size("other", &right), None, "linked into r only");
        assert!(s.mount_blob("other", "r", &right).unwrap());
        assert_eq!(s.blob_size("other", &right), Some(5));
    }

    #[test]
    fn gc_removes_only_old_unreferenced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let config = Digest::of(Algorithm::Sha256, b"{}");
        let layer = Digest::of(Algorithm::Sha256, b"layer");
        let orphan = Digest::of(Algorithm::Sha256, b"orphan");
        s.put_blob("r", &config, b"{}").unwrap();
        s.put_blob("r", &layer, b"layer").unwrap();
        s.put_blob("r", &orphan, b"orphan").unwrap();
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "x", "digest": config.to_string(), "size": 2},
            "layers": [{"mediaType": "x", "digest": layer.to_string(), "size": 5}],
        });
        let (md, _) = s
            .put_manifest("r", "v1", "", &serde_json::to_vec(&m).unwrap())
            .unwrap();
        // Within the grace period nothing goes, referenced or not.
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(s.gc(hour, false).unwrap().removed, 0);
        let r = s.gc(std::time::Duration::ZERO, true).unwrap();
        assert_eq!((r.removed, r.bytes), (1, 6), "dry run counts the orphan");
        assert!(s.blob_exists(&orphan));
        s.gc(std::time::Duration::ZERO, false).unwrap();
        assert!(!s.blob_exists(&orphan));
        for d in [&config, &layer, &md] {
            assert!(s.blob_exists(d), "{d} is referenced");
        }
        // Deleting the manifest lets its blobs go.
        s.delete_manifest("r", &md.to_string()).unwrap();
        s.gc(std::time::Duration::ZERO, false).unwrap();
        assert!(!s.blob_exists(&layer) && !s.blob_exists(&md));
    }
}
