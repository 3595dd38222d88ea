//! Small file-system helpers: temp files, atomic writes, directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A random hex string for temp names and ids.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // Fall back to time and pid; only used for temp names.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = format!("{t}-{}", std::process::id());
        let d = crate::digest::Digest::of(seed.as_bytes());
        return d.hex()[..bytes * 2].to_string();
    }
    hex::encode(buf)
}

/// Creates a new, exclusive temp file in `dir`.
pub fn create_temp(dir: &Path, prefix: &str) -> io::Result<(File, PathBuf)> {
    loop {
        let p = dir.join(format!(".{prefix}-{}", random_hex(8)));
        match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o644)
            .open(&p)
        {
            Ok(f) => return Ok((f, p)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (mut f, tmp) = create_temp(dir, "tmp")?;
    let res = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Replaces `path` with `bytes` atomically (temp file and rename) without fsync: for
/// runtime state that is rewritten often and need not survive a power loss (after one, no
/// container is running anyway). Readers never see a partial file.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (mut f, tmp) = create_temp(dir, "tmp")?;
    let res = f.write_all(bytes).and_then(|_| fs::rename(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}
