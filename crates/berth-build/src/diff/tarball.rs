//! Streaming comparison of two layer blobs, entry by entry.
//!
//! Each blob is read once, front to back: the compressed bytes are hashed (the layer
//! digest), decompressed, hashed again (the diff_id), and walked as a tar stream. Only
//! per-path metadata is kept (type, mode, owner, size, mtime, link target, device
//! numbers, xattrs and the sha256 of the content), never the content itself, and the
//! number of entries is capped.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufReader, Chain, Cursor, Read};

use berth_oci::{Algorithm, Digest, Digester};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The default cap on entries per layer for [`diff_layers`](super::diff_layers).
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// Most duplicate-path warnings listed one by one per layer.
const MAX_DUPLICATE_WARNINGS: usize = 20;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// The compression a layer media type announces: `…+zstd` is zstd; `…+gzip`,
    /// `….tar.gzip` (Docker's `rootfs.diff.tar.gzip`) and `….tgz`-like names are gzip;
    /// anything else is taken to be a plain tar.
    pub fn from_media_type(media_type: &str) -> Compression {
        let essence = media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence.ends_with("zstd") {
            Compression::Zstd
        } else if essence.ends_with("gzip") || essence.ends_with("+gz") {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// The name used in reports: `none`, `gzip` or `zstd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the two layers an error or note is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The first (`REF1`) layer.
    Left,
    /// The second (`REF2`) layer.
    Right,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Left => "left",
            Side::Right => "right",
        })
    }
}

/// Why two layers could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Reading, decompressing or parsing the tar stream failed.
    #[error("{side} layer: {source}")]
    Read {
        /// The layer concerned.
        side: Side,
        /// The underlying error (I/O, corrupt compression, malformed tar header).
        #[source]
        source: io::Error,
    },
    /// The blob uses a compression berth does not decode.
    #[error("{side} layer: {format} compression is not supported")]
    UnsupportedCompression {
        /// The layer concerned.
        side: Side,
        /// The format recognised by its magic bytes.
        format: &'static str,
    },
    /// The layer has more entries than the cap allows.
    #[error("{side} layer has more than {limit} entries; refusing to compare it")]
    TooManyEntries {
        /// The layer concerned.
        side: Side,
        /// The cap.
        limit: usize,
    },
}

/// What was learnt about one layer blob while reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSummary {
    /// The compression found (by magic bytes).
    pub compression: Compression,
    /// The sha256 of the blob as given (the layer digest).
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The sha256 of the uncompressed tar stream (the diff_id).
    pub diff_id: Digest,
    /// The uncompressed size in bytes.
    pub uncompressed_size: u64,
    /// The number of tar entries (duplicates included, PAX global headers excluded).
    pub entries: usize,
}

/// How the contents of two layers differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerDiff {
    /// Paths only in the right layer, sorted.
    pub added: Vec<String>,
    /// Paths only in the left layer, sorted.
    pub removed: Vec<String>,
    /// Paths in both whose attributes differ, sorted, each with one description per
    /// differing attribute. A description starts with the attribute's name (`type`,
    /// `content`, `link`, `mode`, `owner`, `mtime`, `device`, `xattrs`), e.g.
    /// `mtime 1700000000 → 1700000100` or `owner 0:0 → 1000:1000`.
    pub changed: Vec<(String, Vec<String>)>,
    /// Whether the paths present in both layers appear in a different relative order.
    pub order_differs: bool,
    /// Whether the uncompressed tar streams are byte-identical (same diff_id).
    pub same_uncompressed: bool,
    /// The left blob.
    pub left: LayerSummary,
    /// The right blob.
    pub right: LayerSummary,
    /// Oddities noticed on the way (media type contradicting the content, a path
    /// appearing twice in one layer).
    pub warnings: Vec<String>,
}

/// The metadata kept for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    /// Position of the (last) entry for this path in the stream.
    position: usize,
    /// The tar type flag, with `\0` and `7` folded into `0`.
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
    size: u64,
    /// Seconds since the epoch, as the header or PAX record writes it.
    mtime: String,
    link: Option<String>,
    device: Option<(u32, u32)>,
    content: [u8; 32],
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// One layer, read.
struct Scan {
    summary: LayerSummary,
    paths: BTreeMap<String, Meta>,
    warnings: Vec<String>,
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    digester: Digester,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            digester: Digester::new(Algorithm::Sha256),
            bytes: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The compressed stream: the sniffed prefix replayed, then the rest, all hashed.
type Source<R> = Hashing<Chain<Cursor<Vec<u8>>, R>>;

/// The decompressor chosen for a blob.
enum Decoder<R: Read> {
    Plain(BufReader<Source<R>>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<Source<R>>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<Source<R>>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: Read> Decoder<R> {
    /// The compressed stream underneath (bytes it buffered were already hashed).
    fn into_source(self) -> Source<R> {
        match self {
            Decoder::Plain(r) => r.into_inner(),
            Decoder::Gzip(r) => r.into_inner().into_inner(),
            Decoder::Zstd(r) => r.finish().into_inner(),
        }
    }
}

/// Reads up to `buf.len()` bytes, stopping early only at end of stream.
fn read_prefix<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Recognises a compression format by its magic bytes. `Err` names a format berth
/// recognises but does not decode.
fn sniff(prefix: &[u8]) -> Result<Compression, &'static str> {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Compression::Zstd)
    } else if prefix.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Err("xz")
    } else if prefix.starts_with(b"BZh") {
        Err("bzip2")
    } else {
        Ok(Compression::None)
    }
}

/// Normalises an entry path: no leading `./` or `/`, no trailing `/`, no `.`
/// components or repeated slashes; the root itself is `.`.
pub(crate) fn normalise(raw: &str) -> String {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// Reads one layer blob to the end.
fn scan<R: Read>(
    side: Side,
    media_type: &str,
    mut reader: R,
    max_entries: usize,
) -> Result<Scan, DiffError> {
    let err = |source: io::Error| DiffError::Read { side, source };
    let mut warnings = Vec::new();

    let mut prefix = vec![0u8; 6];
    let n = read_prefix(&mut reader, &mut prefix).map_err(err)?;
    prefix.truncate(n);
    let compression =
        sniff(&prefix).map_err(|format| DiffError::UnsupportedCompression { side, format })?;
    let announced = Compression::from_media_type(media_type);
    if !media_type.is_empty() && announced != compression {
        warnings.push(format!(
            "{side} layer: media type {media_type} announces {announced} compression but the \
             content is {compression}"
        ));
    }
    let source = BufReader::new(Hashing::new(Cursor::new(prefix).chain(reader)));
    let decoder = match compression {
        Compression::None => Decoder::Plain(source),
        Compression::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(source))),
        Compression::Zstd => {
            Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(source).map_err(err)?)
        }
    };

    let mut archive = tar::Archive::new(Hashing::new(decoder));
    let mut paths: BTreeMap<String, Meta> = BTreeMap::new();
    let mut entries = 0usize;
    let mut duplicates = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let header_kind = entry.header().entry_type();
        if header_kind.is_pax_global_extensions() {
            continue;
        }
        if entries >= max_entries {
            return Err(DiffError::TooManyEntries {
                side,
                limit: max_entries,
            });
        }
        let position = entries;
        entries += 1;

        let path = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
        let link = entry
            .link_name_bytes()
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let header = entry.header();
        let kind = match header_kind.as_byte() {
            b'\0' | b'7' => b'0',
            other => other,
        };
        // A hard link names another entry of the archive: compare it normalised too.
        let link = if kind == b'1' {
            link.map(|l| normalise(&l))
        } else {
            link
        };
        let mode = header.mode().map_err(err)?;
        let mut uid = header.uid().map_err(err)?;
        let mut gid = header.gid().map_err(err)?;
        let name = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        let mut uname = name(header.username_bytes()).unwrap_or_default();
        let mut gname = name(header.groupname_bytes()).unwrap_or_default();
        let mut mtime = header.mtime().map_err(err)?.to_string();
        let device = if matches!(kind, b'3' | b'4') {
            match (header.device_major(), header.device_minor()) {
                (Ok(Some(major)), Ok(Some(minor))) => Some((major, minor)),
                _ => None,
            }
        } else {
            None
        };

        let mut xattrs = BTreeMap::new();
        if let Some(pax) = entry.pax_extensions().map_err(err)? {
            for ext in pax {
                let ext = ext.map_err(err)?;
                let Ok(key) = ext.key() else { continue };
                let value = || String::from_utf8_lossy(ext.value_bytes()).into_owned();
                if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(attr.to_owned(), ext.value_bytes().to_vec());
                } else {
                    match key {
                        "uid" => uid = value().trim().parse().unwrap_or(uid),
                        "gid" => gid = value().trim().parse().unwrap_or(gid),
                        "uname" => uname = value(),
                        "gname" => gname = value(),
                        "mtime" => mtime = value(),
                        _ => {}
                    }
                }
            }
        }

        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }

        let meta = Meta {
            position,
            kind,
            mode,
            uid,
            gid,
            uname,
            gname,
            size,
            mtime,
            link,
            device,
            content: hasher.finalize().into(),
            xattrs,
        };
        if paths.insert(path.clone(), meta).is_some() {
            duplicates += 1;
            if duplicates <= MAX_DUPLICATE_WARNINGS {
                warnings.push(format!(
                    "{side} layer: {path} appears more than once; the last entry wins"
                ));
            }
        }
    }
    if duplicates > MAX_DUPLICATE_WARNINGS {
        warnings.push(format!(
            "{side} layer: {} more duplicate entries not listed",
            duplicates - MAX_DUPLICATE_WARNINGS
        ));
    }

    // Whatever follows the end-of-archive marker is part of the diff_id and digest.
    let mut uncompressed = archive.into_inner();
    io::copy(&mut uncompressed, &mut io::sink()).map_err(err)?;
    let Hashing {
        inner: decoder,
        digester,
        bytes: uncompressed_size,
    } = uncompressed;
    let diff_id = digester.finish();
    let mut compressed = decoder.into_source();
    io::copy(&mut compressed, &mut io::sink()).map_err(err)?;

    Ok(Scan {
        summary: LayerSummary {
            compression,
            digest: compressed.digester.finish(),
            size: compressed.bytes,
            diff_id,
            uncompressed_size,
            entries,
        },
        paths,
        warnings,
    })
}

/// Compares the contents of two layer blobs, each given as its media type (used only to
/// warn when it contradicts the content; the compression is recognised by magic bytes)
/// and a reader of the blob as stored, capping each layer at `max_entries` entries.
pub fn diff_layers_with_limit<R1: Read, R2: Read>(
    left: (&str, R1),
    right: (&str, R2),
    max_entries: usize,
) -> Result<LayerDiff, DiffError> {
    let l = scan(Side::Left, left.0, left.1, max_entries)?;
    let r = scan(Side::Right, right.0, right.1, max_entries)?;

    let added = r
        .paths
        .keys()
        .filter(|p| !l.paths.contains_key(*p))
        .cloned()
        .collect();
    let removed = l
        .paths
        .keys()
        .filter(|p| !r.paths.contains_key(*p))
        .cloned()
        .collect();
    let mut changed = Vec::new();
    let mut common = Vec::new();
    for (path, a) in &l.paths {
        if let Some(b) = r.paths.get(path) {
            common.push((a.position, b.position));
            let changes = describe(a, b);
            if !changes.is_empty() {
                changed.push((path.clone(), changes));
            }
        }
    }
    common.sort_unstable();
    let order_differs = common.windows(2).any(|w| w[0].1 > w[1].1);

    let mut warnings = l.warnings;
    warnings.extend(r.warnings);
    Ok(LayerDiff {
        added,
        removed,
        changed,
        order_differs,
        same_uncompressed: l.summary.diff_id == r.summary.diff_id,
        left: l.summary,
        right: r.summary,
        warnings,
    })
}

/// A tar type flag, by name.
fn kind_name(kind: u8) -> String {
    match kind {
        b'0' => "file".to_owned(),
        b'1' => "hardlink".to_owned(),
        b'2' => "symlink".to_owned(),
        b'3' => "char-device".to_owned(),
        b'4' => "block-device".to_owned(),
        b'5' => "dir".to_owned(),
        b'6' => "fifo".to_owned(),
        other => format!("type-{}", other.escape_ascii()),
    }
}

/// A short content digest: `sha256:` and 12 hex digits.
fn short_hash(hash: &[u8; 32]) -> String {
    let hex = hex::encode(hash);
    format!("sha256:{}…", &hex[..12])
}

/// `uid:gid`, with the names when either is set.
fn owner(m: &Meta) -> String {
    if m.uname.is_empty() && m.gname.is_empty() {
        format!("{}:{}", m.uid, m.gid)
    } else {
        format!("{}:{} ({}:{})", m.uid, m.gid, m.uname, m.gname)
    }
}

/// One description per differing attribute, in a fixed order.
fn describe(a: &Meta, b: &Meta) -> Vec<String> {
    let mut out = Vec::new();
    if a.kind != b.kind {
        out.push(format!(
            "type {} → {}",
            kind_name(a.kind),
            kind_name(b.kind)
        ));
    }
    if a.content != b.content || a.size != b.size {
        out.push(format!(
            "content {} ({} bytes) → {} ({} bytes)",
            short_hash(&a.content),
            a.size,
            short_hash(&b.content),
            b.size
        ));
    }
    if a.link != b.link {
        let show = |l: &Option<String>| l.clone().unwrap_or_else(|| "(none)".to_owned());
        out.push(format!("link {} → {}", show(&a.link), show(&b.link)));
    }
    if a.mode != b.mode {
        out.push(format!("mode {:04o} → {:04o}", a.mode, b.mode));
    }
    if (a.uid, a.gid, &a.uname, &a.gname) != (b.uid, b.gid, &b.uname, &b.gname) {
        out.push(format!("owner {} → {}", owner(a), owner(b)));
    }
    if a.mtime != b.mtime {
        out.push(format!("mtime {} → {}", a.mtime, b.mtime));
    }
    if a.device != b.device {
        let show = |d: Option<(u32, u32)>| {
            d.map(|(ma, mi)| format!("{ma}:{mi}"))
                .unwrap_or_else(|| "(none)".to_owned())
        };
        out.push(format!("device {} → {}", show(a.device), show(b.device)));
    }
    if a.xattrs != b.xattrs {
        let mut parts = Vec::new();
        for (k, v) in &a.xattrs {
            match b.xattrs.get(k) {
                None => parts.push(format!("-{k}")),
                Some(w) if w != v => parts.push(format!("~{k}")),
                Some(_) => {}
            }
        }
        for k in b.xattrs.keys() {
            if !a.xattrs.contains_key(k) {
                parts.push(format!("+{k}"));
            }
        }
        out.push(format!("xattrs {}", parts.join(", ")));
    }
    out
}

impl LayerDiff {
    /// Whether no path was added, removed or changed.
    pub fn entries_same(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// A human-readable report, ending with a newline.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let side = |name: &str, l: &LayerSummary| {
            format!(
                "{name}: {} ({}, {} bytes; diff_id {}, {} bytes, {} entries)\n",
                l.digest, l.compression, l.size, l.diff_id, l.uncompressed_size, l.entries
            )
        };
        s.push_str(&side("left ", &self.left));
        s.push_str(&side("right", &self.right));
        if self.left.digest == self.right.digest {
            s.push_str("the layer blobs are identical\n");
        } else if self.same_uncompressed {
            s.push_str(
                "same content, different compression: the uncompressed tar streams are \
                 byte-identical (same diff_id); only the compressor, its level or its \
                 settings differ\n",
            );
        } else if self.entries_same() && !self.order_differs {
            s.push_str(
                "every entry has the same attributes and content, yet the tar bytes differ: \
                 the header encoding differs (tar format, PAX records, padding or \
                 attributes not compared here)\n",
            );
        }
        if !self.same_uncompressed {
            s.push_str(&format!(
                "{} added, {} removed, {} changed\n",
                self.added.len(),
                self.removed.len(),
                self.changed.len()
            ));
        }
        for p in &self.added {
            s.push_str(&format!("  + {p}\n"));
        }
        for p in &self.removed {
            s.push_str(&format!("  - {p}\n"));
        }
        for (p, changes) in &self.changed {
            s.push_str(&format!("  ~ {p}\n"));
            for c in changes {
                s.push_str(&format!("      {c}\n"));
            }
        }
        if self.order_differs {
            s.push_str(
                "the entries common to both layers appear in a different order (sort entries \
                 by path for a reproducible layer)\n",
            );
        }
        if !self.changed.is_empty()
            && self
                .changed
                .iter()
                .all(|(_, c)| c.iter().all(|d| d.starts_with("mtime ")))
        {
            s.push_str(
                "hint: only modification times differ; clamp them (e.g. to SOURCE_DATE_EPOCH) \
                 for a reproducible layer\n",
            );
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        assert_eq!(normalise("./usr/bin/"), "usr/bin");
        assert_eq!(normalise("/etc//passwd"), "etc/passwd");
        assert_eq!(normalise("./"), ".");
        assert_eq!(normalise("a/./b"), "a/b");
    }

    #[test]
    fn media_types() {
        use Compression::*;
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar", None),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Gzip,
            ),
        ] {
            assert_eq!(Compression::from_media_type(mt), c, "{mt}");
        }
    }
}
