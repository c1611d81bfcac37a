//! The layer byte stream: the digest of the blob as given, bounds on what it expands
//! to, and the choice of decompressor.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;

use berth_oci::{Algorithm, Digest, Digester};

use super::{Limit, UnpackError};

/// Most bytes the headers of one entry (PAX records, GNU long names) may take. The
/// tar crate holds them in memory, so they need their own bound.
pub(super) const MAX_HEADER_BYTES: u64 = 8 << 20;

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    /// A bare tar stream.
    Plain,
    /// gzip (possibly several members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

impl Compression {
    /// The compression a layer media type declares, or `None` when it is not a tar
    /// layer type berth reads.
    pub(super) fn from_media_type(media_type: &str) -> Option<Compression> {
        let mt = berth_oci::media_type::essence(media_type).to_ascii_lowercase();
        let rest = [
            "application/vnd.oci.image.layer.v1.",
            "application/vnd.oci.image.layer.nondistributable.v1.",
            "application/vnd.docker.image.rootfs.diff.",
            "application/vnd.docker.image.rootfs.foreign.diff.",
        ]
        .iter()
        .find_map(|prefix| mt.strip_prefix(prefix))?;
        match rest {
            "tar" => Some(Compression::Plain),
            "tar+gzip" | "tar.gzip" => Some(Compression::Gzip),
            "tar+zstd" | "tar.zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The compression the first bytes of a stream show, if any.
    pub(super) fn sniff(magic: &[u8]) -> Option<Compression> {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

/// Counters and failure causes shared by the readers of one layer, so that an
/// `io::Error` surfacing through the tar or decompression code can be told apart:
/// a limit, the caller's stream, or corrupt data.
#[derive(Debug)]
pub(super) struct StreamState {
    max_bytes: u64,
    uncompressed: Cell<u64>,
    in_header: Cell<bool>,
    header_bytes: Cell<u64>,
    exceeded: Cell<Option<(Limit, u64)>>,
    read_error: RefCell<Option<io::Error>>,
}

impl StreamState {
    pub(super) fn new(max_bytes: u64) -> Rc<StreamState> {
        Rc::new(StreamState {
            max_bytes,
            uncompressed: Cell::new(0),
            in_header: Cell::new(false),
            header_bytes: Cell::new(0),
            exceeded: Cell::new(None),
            read_error: RefCell::new(None),
        })
    }

    /// From now on, bytes read belong to entry headers (bounded by
    /// [`MAX_HEADER_BYTES`]) until [`StreamState::end_header`].
    pub(super) fn begin_header(&self) {
        self.in_header.set(true);
        self.header_bytes.set(0);
    }

    /// Bytes read are entry data again.
    pub(super) fn end_header(&self) {
        self.in_header.set(false);
    }

    /// Uncompressed bytes read so far.
    pub(super) fn uncompressed(&self) -> u64 {
        self.uncompressed.get()
    }

    /// Records that `limit` (of value `max`) was exceeded; returns the error for the
    /// reader to give.
    fn exceed(&self, limit: Limit, max: u64) -> io::Error {
        if self.exceeded.get().is_none() {
            self.exceeded.set(Some((limit, max)));
        }
        io::Error::other(format!("{limit} limit exceeded"))
    }
}

/// Turns an error from the stream readers into the error the caller sees.
pub(super) fn classify(layer: &str, state: &StreamState, e: io::Error) -> UnpackError {
    if let Some((limit, max)) = state.exceeded.get() {
        return UnpackError::TooLarge {
            layer: layer.to_owned(),
            limit,
            max,
        };
    }
    if let Some(source) = state.read_error.borrow_mut().take() {
        return UnpackError::Read {
            layer: layer.to_owned(),
            source,
        };
    }
    UnpackError::Corrupt {
        layer: layer.to_owned(),
        message: e.to_string(),
    }
}

/// The caller's stream, hashed as it is read and bounded in length.
pub(super) struct HashingReader<R> {
    inner: R,
    digester: Digester,
    read: u64,
    state: Rc<StreamState>,
}

impl<R: Read> HashingReader<R> {
    pub(super) fn new(inner: R, algorithm: Algorithm, state: Rc<StreamState>) -> Self {
        HashingReader {
            inner,
            digester: Digester::new(algorithm),
            read: 0,
            state,
        }
    }

    /// The digest of every byte read.
    pub(super) fn finish(self) -> Digest {
        self.digester.finish()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.digester.update(&buf[..n]);
                self.read += n as u64;
                if self.read > self.state.max_bytes {
                    return Err(self.state.exceed(Limit::LayerBytes, self.state.max_bytes));
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let shown = io::Error::new(e.kind(), e.to_string());
                *self.state.read_error.borrow_mut() = Some(e);
                Err(shown)
            }
        }
    }
}

/// The decompressed tar stream, counted against the layer and header bounds.
pub(super) struct MeteredReader<R> {
    inner: R,
    state: Rc<StreamState>,
}

impl<R: Read> MeteredReader<R> {
    pub(super) fn new(inner: R, state: Rc<StreamState>) -> Self {
        MeteredReader { inner, state }
    }
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let s = &self.state;
        let total = s.uncompressed.get() + n as u64;
        s.uncompressed.set(total);
        if total > s.max_bytes {
            return Err(s.exceed(Limit::LayerBytes, s.max_bytes));
        }
        if s.in_header.get() {
            let h = s.header_bytes.get() + n as u64;
            s.header_bytes.set(h);
            if h > MAX_HEADER_BYTES {
                return Err(s.exceed(Limit::EntryHeaderBytes, MAX_HEADER_BYTES));
            }
        }
        Ok(n)
    }
}

/// Reads up to four bytes (fewer only at the end of the stream) for sniffing.
pub(super) fn read_magic<R: Read>(r: &mut R) -> io::Result<([u8; 4], usize)> {
    let mut magic = [0u8; 4];
    let mut len = 0;
    while len < magic.len() {
        match r.read(&mut magic[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((magic, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let cases = [
            (
                "application/vnd.oci.image.layer.v1.tar",
                Some(Compression::Plain),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Some(Compression::Zstd),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            (
                "Application/Vnd.OCI.Image.Layer.v1.Tar+Gzip; x=y",
                Some(Compression::Gzip),
            ),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", None),
            ("application/vnd.oci.image.config.v1+json", None),
            ("application/octet-stream", None),
        ];
        for (mt, want) in cases {
            assert_eq!(Compression::from_media_type(mt), want, "{mt}");
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            Compression::sniff(&[0x1f, 0x8b, 8, 0]),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::sniff(b"etc/"), None);
        assert_eq!(Compression::sniff(&[]), None);
    }

    #[test]
    fn metered_reader_bounds_headers_separately() {
        let state = StreamState::new(1 << 40);
        let data = vec![0u8; (MAX_HEADER_BYTES + 1) as usize];
        let mut r = MeteredReader::new(&data[..], state.clone());
        state.begin_header();
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        let e = classify("l", &state, err);
        assert!(
            matches!(
                e,
                UnpackError::TooLarge {
                    limit: Limit::EntryHeaderBytes,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn hashing_reader_keeps_the_callers_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "peer went away",
                ))
            }
        }
        let state = StreamState::new(100);
        let mut r = HashingReader::new(Broken, Algorithm::Sha256, state.clone());
        let err = r.read(&mut [0u8; 8]).unwrap_err();
        match classify("l", &state, err) {
            UnpackError::Read { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::ConnectionReset)
            }
            other => panic!("{other}"),
        }
    }
}
