//! Layer compression: gzip, zstd or none, recognised by magic bytes rather than trusted
//! from a media type.

use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognises the compression from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The suffix of the OCI layer media type (`+gzip`, `+zstd`, ``).
    pub fn media_suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "+gzip",
            Compression::Zstd => "+zstd",
        }
    }
}

/// Copies `r` into `w` compressed with `c` (gzip at zlib's default level, zstd at level
/// 3, as Docker and containerd write them).
pub fn compress<R: Read, W: io::Write>(c: Compression, mut r: R, w: W) -> io::Result<W> {
    match c {
        Compression::None => {
            let mut w = w;
            io::copy(&mut r, &mut w)?;
            Ok(w)
        }
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(w, flate2::Compression::default());
            io::copy(&mut r, &mut e)?;
            e.finish()
        }
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(w, 3)?;
            io::copy(&mut r, &mut e)?;
            e.finish()
        }
    }
}

/// Wraps `r` in the right decompressor. Returns the detected compression too.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    let head = br.fill_buf()?;
    let c = Compression::detect(head);
    let reader: Box<dyn Read + 'a> = match c {
        Compression::None => Box::new(br),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
    };
    Ok((c, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn round_trips_each_format() {
        let data = b"some tar bytes".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        for (bytes, want) in [
            (data.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
        ] {
            let (c, mut r) = decompress(&bytes[..]).unwrap();
            assert_eq!(c, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b"x".repeat(10000)).unwrap();
        let gz = gz.finish().unwrap();
        let (_, mut r) = decompress(&gz[..gz.len() / 2]).unwrap();
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
