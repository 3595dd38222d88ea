//! The content store: blobs by digest under `blobs/sha256/<hex>`, OCI image-layout style.
//!
//! Every write goes to a temp file in `blobs/tmp/`, is hashed on the way, fsynced and
//! renamed into place only when its digest is right, so a blob is either whole and
//! verified or absent. Reads for use are verified again. A download goes to
//! `blobs/partial/<hex>` instead, which outlives an interrupted pull so the next one
//! resumes it; it too becomes a blob only through the same verified rename.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    #[error("blob {digest} is corrupt: content hashes to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A directory of blobs named by their digest.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store at `root` (`<berth root>/blobs`).
    pub fn open(root: &Path) -> Result<ContentStore, StoreError> {
        for d in [root.join("sha256"), root.join("tmp"), root.join("partial")] {
            fs::create_dir_all(&d).map_err(StoreError::io(&d))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("sha256").join(d.hex())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    /// Size in bytes of a stored blob.
    pub fn size(&self, d: &Digest) -> Result<u64, StoreError> {
        let p = self.path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(d.clone())),
            Err(e) => Err(StoreError::io(&p)(e)),
        }
    }

    /// Stores `bytes`; when `expected` is given the content must hash to it.
    pub fn write_bytes(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        self.write_from(bytes, expected).map(|(d, _)| d)
    }

    /// Streams `r` into the store. Nothing becomes visible unless the whole stream was read
    /// and (when given) matches `expected`.
    pub fn write_from<R: Read>(
        &self,
        r: R,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        let mut tmp = self.temp()?;
        let mut src = Hasher::new(r);
        let tmp_path = tmp.path.clone();
        io::copy(&mut src, &mut tmp.file).map_err(StoreError::io(&tmp_path))?;
        let (digest, size, _) = src.finish();
        if let Some(e) = expected {
            if *e != digest {
                return Err(StoreError::Mismatch {
                    expected: e.clone(),
                    actual: digest,
                });
            }
        }
        tmp.commit(&digest)?;
        Ok((digest, size))
    }

    /// A temp file in the store to write into; `commit` moves it into place.
    pub fn temp(&self) -> Result<TempBlob<'_>, StoreError> {
        let dir = self.root.join("tmp");
        let (file, path) =
            crate::fsutil::create_temp(&dir, "blob").map_err(StoreError::io(&dir))?;
        Ok(TempBlob {
            store: self,
            file,
            path,
            done: false,
            resumable: false,
            offset: 0,
            _lock: None,
        })
    }

    /// The download of `d` that an interrupted pull left (or a new empty one), locked
    /// against other processes until dropped; `offset` bytes of it are there already.
    /// Unlike `temp`, it stays on disk when dropped without `commit`. None when another
    /// process is downloading the same blob right now.
    pub fn partial(&self, d: &Digest) -> Result<Option<TempBlob<'_>>, StoreError> {
        let path = self.root.join("partial").join(d.hex());
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        // The lock is taken on a second descriptor of the same open file, held as long
        // as the TempBlob lives.
        let dup = file.try_clone().map_err(StoreError::io(&path))?;
        let lock = match nix::fcntl::Flock::lock(dup, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(StoreError::io(&path)(e.into())),
        };
        let offset = file.seek(SeekFrom::End(0)).map_err(StoreError::io(&path))?;
        Ok(Some(TempBlob {
            store: self,
            file,
            path,
            done: false,
            resumable: true,
            offset,
            _lock: Some(lock),
        }))
    }

    /// Reads a whole blob, verifying it.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut r = self.open_verified(d)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| {
            match e.get_ref().and_then(|x| x.downcast_ref::<CorruptBlob>()) {
                Some(c) => StoreError::Corrupt {
                    digest: d.clone(),
                    actual: c.0.clone(),
                },
                None => StoreError::io(&self.path(d))(e),
            }
        })?;
        Ok(out)
    }

    /// Opens a blob for streaming; the reader fails at the end if the bytes do not hash to
    /// the blob's name, so a consumer that reads to the end never accepts corrupt data.
    pub fn open_verified(&self, d: &Digest) -> Result<VerifiedReader, StoreError> {
        let p = self.path(d);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(d.clone()))
            }
            Err(e) => return Err(StoreError::io(&p)(e)),
        };
        Ok(VerifiedReader {
            inner: Some(Hasher::new(BufReader::with_capacity(256 * 1024, f))),
            expected: d.clone(),
        })
    }

    /// Removes a blob; absent blobs are fine.
    pub fn remove(&self, d: &Digest) -> Result<(), StoreError> {
        let p = self.path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&p)(e)),
        }
    }

    /// Every stored digest.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root.join("sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
            let e = e.map_err(StoreError::io(&dir))?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes leftovers of interrupted writes, and the partial downloads no pull is
    /// working on.
    pub fn clean_temp(&self) -> Result<u64, StoreError> {
        let dir = self.root.join("tmp");
        let mut freed = 0;
        for e in fs::read_dir(&dir).map_err(StoreError::io(&dir))?.flatten() {
            freed += e.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = fs::remove_file(e.path());
        }
        let dir = self.root.join("partial");
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue;
            };
            if let Some(p) = self.partial(&d)? {
                freed += p.offset;
                p.discard();
            }
        }
        Ok(freed)
    }
}

/// A blob being written. Dropped without `commit`, it is deleted, unless it is a
/// resumable download (`ContentStore::partial`).
pub struct TempBlob<'a> {
    store: &'a ContentStore,
    pub file: File,
    pub path: PathBuf,
    done: bool,
    resumable: bool,
    /// Bytes already in the file when it was opened (a resumed download).
    pub offset: u64,
    _lock: Option<nix::fcntl::Flock<File>>,
}

impl TempBlob<'_> {
    /// Empties the file, to download from the start after all.
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(StoreError::io(&self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(StoreError::io(&self.path))?;
        self.offset = 0;
        Ok(())
    }

    /// Deletes the file even if it is resumable (its bytes proved wrong).
    pub fn discard(mut self) {
        self.resumable = false;
    }

    /// fsyncs and renames into place as `digest` (which the caller has computed).
    pub fn commit(mut self, digest: &Digest) -> Result<(), StoreError> {
        self.file.flush().map_err(StoreError::io(&self.path))?;
        self.file.sync_all().map_err(StoreError::io(&self.path))?;
        let dest = self.store.path(digest);
        fs::rename(&self.path, &dest).map_err(StoreError::io(&dest))?;
        self.done = true;
        crate::fsutil::sync_dir(dest.parent().unwrap_or(Path::new("/")))
            .map_err(StoreError::io(&dest))?;
        Ok(())
    }
}

impl Drop for TempBlob<'_> {
    fn drop(&mut self) {
        if !self.done && !self.resumable {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The error a `VerifiedReader` returns at the end of a corrupt blob.
#[derive(Debug)]
pub struct CorruptBlob(pub Digest);

impl std::fmt::Display for CorruptBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "content hashes to {}", self.0)
    }
}

impl std::error::Error for CorruptBlob {}

/// A blob reader that checks the digest when it reaches the end.
pub struct VerifiedReader {
    inner: Option<Hasher<BufReader<File>>>,
    expected: Digest,
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(h) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = h.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let (actual, _, _) = self.inner.take().expect("checked above").finish();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    CorruptBlob(actual),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let d = s.write_bytes(b"hello", None).unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(s.read(&d).unwrap(), b"hello");
        assert_eq!(s.size(&d).unwrap(), 5);
        assert_eq!(s.list().unwrap(), vec![d.clone()]);
    }

    #[test]
    fn wrong_expected_digest_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let other = Digest::of(b"other");
        assert!(matches!(
            s.write_bytes(b"hello", Some(&other)),
            Err(StoreError::Mismatch { .. })
        ));
        assert!(s.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn corrupt_blob_is_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let d = s.write_bytes(b"hello", None).unwrap();
        fs::write(s.path(&d), b"jello").unwrap();
        assert!(matches!(s.read(&d), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn a_partial_download_outlives_its_writer_and_is_locked_while_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"hello world");
        let mut p = s.partial(&d).unwrap().unwrap();
        assert_eq!(p.offset, 0);
        p.file.write_all(b"hello").unwrap();
        assert!(
            s.partial(&d).unwrap().is_none(),
            "a second writer is refused"
        );
        drop(p);
        let mut p = s.partial(&d).unwrap().unwrap();
        assert_eq!(p.offset, 5, "the first bytes are kept");
        p.file.write_all(b" world").unwrap();
        p.commit(&d).unwrap();
        assert_eq!(s.read(&d).unwrap(), b"hello world");
        assert_eq!(fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);

        let e = Digest::of(b"other");
        let mut p = s.partial(&e).unwrap().unwrap();
        p.file.write_all(b"oth").unwrap();
        p.restart().unwrap();
        assert_eq!(p.offset, 0);
        p.file.write_all(b"x").unwrap();
        drop(p);
        assert_eq!(s.clean_temp().unwrap(), 1, "an unlocked partial is cleaned");
        assert_eq!(fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);
        let p = s.partial(&e).unwrap().unwrap();
        p.discard();
        assert_eq!(fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);
    }
}
