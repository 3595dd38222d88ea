//! Container logs in Docker's json-file format: one JSON object a line,
//! `{"log":"…","stream":"stdout","time":"…"}`, rotated by size into `log.json.1`, `.2`, ….
//! Or in the CRI format (the `k8s-file` driver, as podman names it, which kubelet reads
//! and rotates): `2016-10-06T00:17:09.669794202Z stdout F text`, a line too long for one
//! entry split into `P` (partial) entries ended by an `F` one. Readers take both.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends log lines, rotating when the file passes `max_size` (0 = never).
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// partial line per stream (1 = stdout, 2 = stderr)
    partial: [Vec<u8>; 2],
    /// gzip rotated files (`log.json.N.gz`): the `local` driver, or json-file's `compress`
    compress: bool,
    /// The CRI format instead of json-file's.
    cri: bool,
}

const MAX_PARTIAL: usize = 16 * 1024;

impl LogWriter {
    /// `path` None: logging disabled (`--log-driver none`).
    pub fn open(path: Option<&Path>, max_size: u64, max_files: u32) -> io::Result<LogWriter> {
        let (file, size) = match path {
            Some(p) => {
                let f = OpenOptions::new().create(true).append(true).open(p)?;
                let size = f.metadata()?.len();
                (Some(f), size)
            }
            None => (None, 0),
        };
        Ok(LogWriter {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            partial: [Vec::new(), Vec::new()],
            compress: false,
            cri: false,
        })
    }

    /// Writes the CRI format (see the module's doc).
    pub fn cri_format(mut self, on: bool) -> LogWriter {
        self.cri = on;
        self
    }

    /// Opens the file at the path anew (kubelet renamed it to rotate it:
    /// `ReopenContainerLog`).
    pub fn reopen(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    /// Gzip rotated files.
    pub fn compressed(mut self, on: bool) -> LogWriter {
        self.compress = on;
        self
    }

    /// Records output of `stream` (1 stdout, 2 stderr); complete lines are written.
    pub fn write(&mut self, stream: u8, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        let idx = if stream == 2 { 1 } else { 0 };
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl + 1;
            self.write_entry(stream, &buf[start..end], true)?;
            start = end;
        }
        let rest = buf[start..].to_vec();
        if rest.len() >= MAX_PARTIAL {
            self.write_entry(stream, &rest, false)?;
        } else {
            self.partial[idx] = rest;
        }
        Ok(())
    }

    /// Writes what is left of partial lines.
    pub fn flush_partial(&mut self) -> io::Result<()> {
        for (idx, stream) in [(0usize, 1u8), (1, 2)] {
            let rest = std::mem::take(&mut self.partial[idx]);
            if !rest.is_empty() {
                // The stream ended: the line is as complete as it will be.
                self.write_entry(stream, &rest, true)?;
            }
        }
        Ok(())
    }

    /// One entry: a line (`full`), or a part of one too long to wait for.
    fn write_entry(&mut self, stream: u8, line: &[u8], full: bool) -> io::Result<()> {
        let stream_name = if stream == 2 { "stderr" } else { "stdout" };
        let time = crate::now_fixed();
        let bytes = if self.cri {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let tag = if full { "F" } else { "P" };
            let mut b = format!("{time} {stream_name} {tag} ").into_bytes();
            b.extend_from_slice(text);
            b.push(b'\n');
            b
        } else {
            let entry = LogLine {
                log: String::from_utf8_lossy(line).into_owned(),
                stream: stream_name.into(),
                time,
            };
            let mut b = serde_json::to_vec(&entry).expect("log line serialises");
            b.push(b'\n');
            b
        };
        if self.max_size > 0 && self.size > 0 && self.size + bytes.len() as u64 > self.max_size {
            self.rotate()?;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&bytes)?;
            self.size += bytes.len() as u64;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.max_files <= 1 {
            fs::remove_file(&self.path).ok();
        } else {
            let name = |n: u32| {
                if self.compress {
                    gz(&rotated(&self.path, n))
                } else {
                    rotated(&self.path, n)
                }
            };
            for i in (2..self.max_files).rev() {
                let _ = fs::rename(name(i - 1), name(i));
            }
            if self.compress {
                compress_file(&self.path, &name(1))?;
            } else {
                let _ = fs::rename(&self.path, name(1));
            }
        }
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.size = 0;
        Ok(())
    }
}

fn gz(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.gz", p.display()))
}

/// Gzips `from` into `to` (temp file and rename), then removes `from`.
fn compress_file(from: &Path, to: &Path) -> io::Result<()> {
    let data = fs::read(from)?;
    let tmp = PathBuf::from(format!("{}.tmp", to.display()));
    let mut enc = flate2::write::GzEncoder::new(File::create(&tmp)?, flate2::Compression::fast());
    enc.write_all(&data)?;
    enc.finish()?;
    fs::rename(&tmp, to)?;
    fs::remove_file(from)
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// The log files of a container, oldest first.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut n = 1;
    loop {
        let plain = rotated(path, n);
        let packed = gz(&plain);
        if plain.exists() {
            out.push(plain);
        } else if packed.exists() {
            out.push(packed);
        } else {
            break;
        }
        n += 1;
    }
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// Reads all log lines, oldest first.
pub fn read_all(path: &Path) -> io::Result<Vec<LogLine>> {
    Follower::open(path).map(|(lines, _)| lines)
}

/// Reads a whole log file (plain or gzip) into `out`.
fn read_file(f: &Path, out: &mut Vec<LogLine>) -> io::Result<()> {
    let file = match File::open(f) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let r: Box<dyn BufRead> = if f.extension().map(|e| e == "gz").unwrap_or(false) {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    for line in r.split(b'\n') {
        out.extend(parse_line(&line?));
    }
    Ok(())
}

/// One entry of a log file, in json-file's format or the CRI's (a `P` entry's text has
/// no line end: the next entry goes on with it).
pub fn parse_line(line: &[u8]) -> Option<LogLine> {
    if line.first() == Some(&b'{') {
        return serde_json::from_slice(line).ok();
    }
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    if !matches!(stream, "stdout" | "stderr") {
        return None;
    }
    let mut log = String::from_utf8_lossy(text).into_owned();
    match tag {
        b"F" => log.push('\n'),
        b"P" => {}
        _ => return None,
    }
    Some(LogLine {
        log,
        stream: stream.into(),
        time: time.into(),
    })
}

/// Follows a container's log as it grows and rotates. It holds the current file open,
/// so what was written before the container was removed is still read, and it goes on
/// exactly where the first read ended: no line is lost or shown twice.
pub struct Follower {
    path: PathBuf,
    /// The current file, once there is one, and its inode.
    file: Option<(File, u64)>,
    /// Bytes read past the last complete line.
    partial: Vec<u8>,
}

impl Follower {
    /// Reads every line there is, oldest first, and returns a follower for the rest.
    pub fn open(path: &Path) -> io::Result<(Vec<LogLine>, Follower)> {
        use std::os::unix::fs::MetadataExt;
        let mut f = Follower {
            path: path.to_path_buf(),
            file: None,
            partial: Vec::new(),
        };
        // The current file is opened first: if it rotates while the older files are
        // read, it is recognised among them by its inode and read once, from here.
        f.reopen()?;
        let current = f.file.as_ref().map(|(_, ino)| *ino);
        let mut out = Vec::new();
        for old in files(path) {
            if old == path {
                continue;
            }
            let same = fs::metadata(&old).is_ok_and(|m| Some(m.ino()) == current);
            if !same {
                read_file(&old, &mut out)?;
            }
        }
        out.extend(f.read_new()?);
        Ok((out, f))
    }

    /// Opens the file now at the path, if it is not the one held.
    fn reopen(&mut self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let ino = file.metadata()?.ino();
        if self.file.as_ref().is_some_and(|(_, held)| *held == ino) {
            return Ok(false);
        }
        self.file = Some((file, ino));
        self.partial.clear();
        Ok(true)
    }

    /// Reads the held file to its end; returns the complete lines.
    fn read_held(&mut self, out: &mut Vec<LogLine>) -> io::Result<()> {
        use std::io::Read;
        let Some((file, _)) = self.file.as_mut() else {
            return Ok(());
        };
        file.read_to_end(&mut self.partial)?;
        let complete = self
            .partial
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        for line in self.partial[..complete].split(|b| *b == b'\n') {
            out.extend(parse_line(line));
        }
        self.partial.drain(..complete);
        Ok(())
    }

    /// The lines written since the last call, across a rotation.
    pub fn read_new(&mut self) -> io::Result<Vec<LogLine>> {
        let mut out = Vec::new();
        self.read_held(&mut out)?;
        // A rotation: the writer is done with the held file once the path names
        // another, so what is left of it is read before moving on.
        if self.file.is_none() || self.path_moved()? {
            self.read_held(&mut out)?;
            if self.reopen()? {
                self.read_held(&mut out)?;
            }
        }
        Ok(out)
    }

    fn path_moved(&self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(&self.path) {
            Ok(m) => Ok(self.file.as_ref().is_none_or(|(_, ino)| *ino != m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Filters for `logs`.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub tail: Option<usize>,
}

impl LogFilter {
    pub fn keep(&self, l: &LogLine) -> bool {
        if let Some(s) = &self.since {
            if l.time.as_str() < s.as_str() {
                return false;
            }
        }
        if let Some(u) = &self.until {
            if l.time.as_str() > u.as_str() {
                return false;
            }
        }
        true
    }

    pub fn apply(&self, lines: Vec<LogLine>) -> Vec<LogLine> {
        let mut v: Vec<LogLine> = lines.into_iter().filter(|l| self.keep(l)).collect();
        if let Some(t) = self.tail {
            if v.len() > t {
                v.drain(..v.len() - t);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cri_format_has_full_and_partial_lines_and_reopens() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        let mut w = LogWriter::open(Some(&p), 0, 1).unwrap().cri_format(true);
        w.write(1, b"hello\nwor").unwrap();
        w.write(2, b"oops\n").unwrap();
        w.write(1, &vec![b'x'; MAX_PARTIAL]).unwrap();
        w.write(1, b"ld\n").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let entries: Vec<(&str, &str, &str)> = text
            .lines()
            .map(|l| {
                let mut f = l.splitn(4, ' ');
                let time = f.next().unwrap();
                assert!(time.ends_with('Z') && time.len() == 30, "{time}");
                (f.next().unwrap(), f.next().unwrap(), f.next().unwrap_or(""))
            })
            .collect();
        assert_eq!(entries[0], ("stdout", "F", "hello"));
        assert_eq!(entries[1], ("stderr", "F", "oops"));
        assert_eq!(entries[2].1, "P");
        assert_eq!(entries[2].2.len(), 3 + MAX_PARTIAL);
        assert_eq!(entries[3], ("stdout", "F", "ld"));
        // Readers put the partial entries back together.
        let all = read_all(&p).unwrap();
        let out: String = all
            .iter()
            .filter(|l| l.stream == "stdout")
            .map(|l| l.log.as_str())
            .collect();
        assert_eq!(out, format!("hello\nwor{}ld\n", "x".repeat(MAX_PARTIAL)));
        // kubelet rotates by renaming, then asks for a reopen.
        std::fs::rename(&p, d.path().join("0.log.1")).unwrap();
        w.reopen().unwrap();
        w.write(1, b"after\n").unwrap();
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .ends_with(" stdout F after\n"));
        // The last piece of a stream that ends without a newline is a full entry.
        w.write(1, b"tail").unwrap();
        w.flush_partial().unwrap();
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .ends_with(" stdout F tail\n"));
        assert_eq!(parse_line(b"garbage"), None);
        assert_eq!(
            parse_line(b"2016-10-06T00:17:09.669794202Z stdin F x"),
            None
        );
    }

    #[test]
    fn lines_split_and_rotate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.json");
        let mut w = LogWriter::open(Some(&p), 200, 3).unwrap();
        w.write(1, b"one\ntw").unwrap();
        w.write(1, b"o\n").unwrap();
        w.write(2, b"err\n").unwrap();
        let all = read_all(&p).unwrap();
        assert_eq!(
            all.iter().map(|l| l.log.as_str()).collect::<Vec<_>>(),
            ["one\n", "two\n", "err\n"]
        );
        assert_eq!(all[2].stream, "stderr");
        for i in 0..20 {
            w.write(1, format!("line {i}\n").as_bytes()).unwrap();
        }
        let files = files(&p);
        assert_eq!(files.len(), 3, "{files:?}");
        let all = read_all(&p).unwrap();
        assert_eq!(all.last().unwrap().log, "line 19\n");
        // Older lines beyond max-file are gone, the order is kept.
        let nums: Vec<i32> = all
            .iter()
            .filter_map(|l| {
                l.log
                    .trim()
                    .strip_prefix("line ")
                    .map(|n| n.parse().unwrap())
            })
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
        let tail = LogFilter {
            tail: Some(2),
            ..Default::default()
        }
        .apply(all);
        assert_eq!(tail.len(), 2);
    }

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.log.as_str()).collect()
    }

    #[test]
    fn a_follower_loses_nothing_between_reads_or_across_a_rotation() {
        // Regression: followers took the file's length after reading it and read by
        // path, so a line written in between, or a container removed before the first
        // look (`docker run` of `echo hi` through the API), showed nothing; the next
        // test has the removal.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.json");
        let (none, mut f) = Follower::open(&p).unwrap();
        assert!(none.is_empty());
        let mut w = LogWriter::open(Some(&p), 200, 3).unwrap();
        w.write(1, b"one\n").unwrap();
        assert_eq!(
            texts(&f.read_new().unwrap()),
            ["one\n"],
            "a file made later"
        );
        let (first, mut f) = Follower::open(&p).unwrap();
        assert_eq!(texts(&first), ["one\n"]);
        // Written after the first read, before the follower's next look; the held
        // file then rotates away twice.
        let mut want = Vec::new();
        for i in 0..7 {
            let line = format!("rotated {i}\n");
            w.write(1, line.as_bytes()).unwrap();
            want.push(line);
        }
        assert!(files(&p).len() > 1, "the log rotated");
        let mut got = Vec::new();
        for _ in 0..4 {
            got.extend(f.read_new().unwrap().into_iter().map(|l| l.log));
        }
        // A rotation between two looks loses the files it skipped over, never a line
        // of the file that was held or the one that is current.
        assert_eq!(got.first().map(String::as_str), Some("rotated 0\n"));
        assert_eq!(got.last().map(String::as_str), Some("rotated 6\n"));
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        // Half a JSON line on disk is not yet a line; once whole, it is read once.
        let mut raw = OpenOptions::new().append(true).open(&p).unwrap();
        raw.write_all(b"{\"log\":\"ha").unwrap();
        assert!(f.read_new().unwrap().is_empty());
        raw.write_all(b"lf\\n\",\"stream\":\"stdout\",\"time\":\"t\"}\n")
            .unwrap();
        assert_eq!(texts(&f.read_new().unwrap()), ["half\n"]);
    }

    #[test]
    fn a_follower_reads_what_was_written_before_the_log_was_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.json");
        let mut w = LogWriter::open(Some(&p), 0, 1).unwrap();
        let (first, mut f) = Follower::open(&p).unwrap();
        assert!(first.is_empty());
        w.write(1, b"last words\n").unwrap();
        // The container and its log are removed before the follower looks again.
        std::fs::remove_dir_all(d.path()).unwrap();
        assert_eq!(texts(&f.read_new().unwrap()), ["last words\n"]);
        assert!(f.read_new().unwrap().is_empty());
    }

    #[test]
    fn compressed_rotation_keeps_every_line_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.json");
        let mut w = LogWriter::open(Some(&p), 300, 4).unwrap().compressed(true);
        for i in 0..40 {
            w.write(1, format!("line {i}\n").as_bytes()).unwrap();
        }
        let names: Vec<String> = files(&p)
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "log.json.3.gz",
                "log.json.2.gz",
                "log.json.1.gz",
                "log.json"
            ]
        );
        let all = read_all(&p).unwrap();
        let nums: Vec<i32> = all
            .iter()
            .map(|l| l.log.trim().strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(*nums.last().unwrap(), 39);
    }
}
