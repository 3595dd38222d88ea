//! Container logs in Docker's json-file format: one JSON object a line,
//! `{"log":"…","stream":"stdout","time":"…"}`, rotated by size into `log.json.1`, `.2`, ….

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
        })
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
            self.write_line(stream, &buf[start..end])?;
            start = end;
        }
        let rest = buf[start..].to_vec();
        if rest.len() >= MAX_PARTIAL {
            self.write_line(stream, &rest)?;
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
                self.write_line(stream, &rest)?;
            }
        }
        Ok(())
    }

    fn write_line(&mut self, stream: u8, line: &[u8]) -> io::Result<()> {
        let entry = LogLine {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: if stream == 2 { "stderr" } else { "stdout" }.into(),
            time: crate::now_fixed(),
        };
        let mut bytes = serde_json::to_vec(&entry).expect("log line serialises");
        bytes.push(b'\n');
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
    let mut out = Vec::new();
    for f in files(path) {
        let file = match File::open(&f) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let r: Box<dyn BufRead> = if f.extension().map(|e| e == "gz").unwrap_or(false) {
            Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        for line in r.lines() {
            let line = line?;
            if let Ok(l) = serde_json::from_str::<LogLine>(&line) {
                out.push(l);
            }
        }
    }
    Ok(out)
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

/// Follows a log file from `offset`: returns new complete lines and the new offset.
/// A rotation (the file got smaller) restarts from 0.
pub fn read_from(path: &Path, offset: u64) -> io::Result<(Vec<LogLine>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((vec![], 0)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let complete = buf
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let mut out = Vec::new();
    for line in buf[..complete].split(|b| *b == b'\n') {
        if let Ok(l) = serde_json::from_slice::<LogLine>(line) {
            out.push(l);
        }
    }
    Ok((out, start + complete as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

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
