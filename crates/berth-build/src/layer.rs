//! Deterministic image layers from a directory.
//!
//! [`build_layer`] turns a directory into an image-spec layer (`layer.md`): a tar archive,
//! optionally gzip- or zstd-compressed, streamed to a file while both digests are
//! computed (the `diff_id` of the uncompressed tar, `config.md` § Layer DiffID, and the
//! digest of the blob as stored). Nothing but the file *contents*, names, types and
//! permission bits of the directory influence the bytes, so two checkouts of the same
//! sources built with the same [`LayerOptions`] give the same digests.
//!
//! # Determinism rules
//!
//! - **Order**: entries are sorted by their path bytes inside the image; a directory
//!   therefore always precedes its contents.
//! - **Destination**: `dest` (`"/app"`) and each of its parents (`app/`, or `opt/`,
//!   `opt/app/`) get directory entries of their own, mode `0755`; DIR's own mode is not
//!   copied (as with Docker's `COPY dir /app`, where the contents are copied). `dest = "/"`
//!   adds no entry for the root.
//! - **Format**: GNU tar headers written by the `tar` crate (paths longer than the header
//!   field use GNU `././@LongLink` records), no atime/ctime, device numbers left empty.
//! - **Times**: every entry's mtime is **set** to [`LayerOptions::mtime`]
//!   (`SOURCE_DATE_EPOCH`), not clamped: clamping would let the checkout time of a file leak
//!   into the layer whenever it is older than the epoch.
//! - **Ownership**: every entry gets [`LayerOptions::uid`]/`gid`/`uname`/`gname`.
//! - **Mode**: the permission bits of the file are kept, including exec and
//!   setuid/setgid/sticky (`mode & 0o7777`); the file-type bits come from the entry type.
//! - **Symlinks** are stored as symlinks, their target as is (never followed).
//! - **Hard links** are stored as separate regular files. Whether a checkout has hard
//!   links depends on how it was made (git never creates them; `cp -al` does), so
//!   recording them would make the digest depend on the checkout, not the sources.
//! - **Sockets, FIFOs and devices** are an error naming the file (exclude them with
//!   `.berthignore`).
//! - **Extended attributes** are never recorded; [`LayerOptions::keep_xattrs`] is
//!   rejected for now.
//! - **Compression**: gzip through `flate2`'s zlib-rs backend at level 6, with header
//!   mtime 0, no file name and OS byte 255 (unknown); zstd level 3, single-threaded, no
//!   checksum, no content size, no dictionary id. Different compressor implementations
//!   may produce different bytes, so the compressed digest is reproducible for a given
//!   berth build while the `diff_id` is reproducible everywhere.
//!
//! `.berthignore` at DIR's root excludes files ([`ignore`]); files that look like secrets
//! are reported in [`BuiltLayer::warnings`].

pub mod ignore;
mod secrets;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_oci::{Algorithm, Digest, Digester};

use self::ignore::IgnoreMatcher;

/// The name of the ignore file read from the root of the build directory.
pub const IGNORE_FILE: &str = ".berthignore";

/// Media type of an uncompressed layer.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of a gzip-compressed layer.
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of a zstd-compressed layer.
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Fixed gzip level.
const GZIP_LEVEL: u32 = 6;
/// Fixed zstd level.
const ZSTD_LEVEL: i32 = 3;
/// Mode of the directories created for `dest` and its parents.
const DEST_DIR_MODE: u32 = 0o755;

/// Errors while building layers or images.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Reading the directory or writing the output failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file of a type that cannot go in a layer (socket, FIFO, device).
    #[error("{}: {kind} cannot be put in a layer (exclude it in .berthignore)", path.display())]
    UnsupportedFile {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// `.berthignore` has a malformed pattern.
    #[error("{}: {source}", path.display())]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// The bad pattern.
        #[source]
        source: ignore::PatternError,
    },
    /// An option or parameter is invalid.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The base image's config or manifest cannot be used.
    #[error("base image: {0}")]
    InvalidBase(String),
    /// Serialising JSON failed.
    #[error("serialising JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip (`+gzip`), level 6.
    #[default]
    Gzip,
    /// zstd (`+zstd`), level 3.
    Zstd,
    /// No compression (plain tar).
    None,
}

impl Compression {
    /// The layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => MEDIA_TYPE_TAR_GZIP,
            Compression::Zstd => MEDIA_TYPE_TAR_ZSTD,
            Compression::None => MEDIA_TYPE_TAR,
        }
    }

    /// A short name: `gzip`, `zstd` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// How to build a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOptions {
    /// Absolute path inside the image where the directory's contents go (`"/app"`);
    /// `"/"` by default.
    pub dest: String,
    /// Seconds since the Unix epoch (`SOURCE_DATE_EPOCH`) set as every entry's mtime;
    /// 0 by default. Must not be negative.
    pub mtime: i64,
    /// Owner uid of every entry (0 by default).
    pub uid: u64,
    /// Owner gid of every entry (0 by default).
    pub gid: u64,
    /// Owner user name of every entry (empty by default).
    pub uname: String,
    /// Owner group name of every entry (empty by default).
    pub gname: String,
    /// Compression of the blob.
    pub compression: Compression,
    /// Record extended attributes (not supported yet: `true` is an error).
    pub keep_xattrs: bool,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            dest: "/".to_owned(),
            mtime: 0,
            uid: 0,
            gid: 0,
            uname: String::new(),
            gname: String::new(),
            compression: Compression::Gzip,
            keep_xattrs: false,
        }
    }
}

/// A layer written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltLayer {
    /// The layer media type (`application/vnd.oci.image.layer.v1.tar+gzip`, …).
    pub media_type: String,
    /// Digest of the blob as stored (compressed bytes).
    pub digest: Digest,
    /// Digest of the uncompressed tar (`config.md` § Layer DiffID).
    pub diff_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// The file holding the blob, in the output directory, named `sha256-<hex>`.
    pub path: PathBuf,
    /// One line per file that looks like a secret: its path in DIR and why.
    pub warnings: Vec<String>,
    /// Number of non-directory entries (regular files and symlinks) in the layer.
    pub files: u64,
    /// The normalised destination (`/app`), as used in history and provenance.
    pub dest: String,
}

/// What a collected entry is.
#[derive(Debug)]
enum Kind {
    Dir,
    File { size: u64, source: PathBuf },
    Symlink { target: PathBuf },
}

/// One entry of the layer, before writing.
#[derive(Debug)]
struct Entry {
    /// Path inside the image, relative, without trailing slash.
    path: PathBuf,
    kind: Kind,
    mode: u32,
}

/// Builds a deterministic layer from `dir`'s contents into a new file in `out_dir`.
///
/// See the module documentation for the rules that make the output reproducible.
///
/// # Errors
///
/// [`BuildError::InvalidOption`] for a bad `dest`, a negative mtime, over-long owner names
/// or `keep_xattrs`; [`BuildError::Ignore`] for a malformed `.berthignore`;
/// [`BuildError::UnsupportedFile`] for a socket, FIFO or device in `dir`;
/// [`BuildError::Io`] when reading `dir` or writing to `out_dir` fails.
pub fn build_layer(
    dir: &Path,
    opts: &LayerOptions,
    out_dir: &Path,
) -> Result<BuiltLayer, BuildError> {
    if opts.keep_xattrs {
        return Err(BuildError::InvalidOption(
            "keep_xattrs is not supported yet".to_owned(),
        ));
    }
    let mtime = u64::try_from(opts.mtime)
        .map_err(|_| BuildError::InvalidOption(format!("mtime {} is before 1970", opts.mtime)))?;
    let dest_parts = dest_components(&opts.dest)?;
    let dest = format!("/{}", dest_parts.join("/"));

    let ignore_path = dir.join(IGNORE_FILE);
    let matcher = match fs::read_to_string(&ignore_path) {
        Ok(text) => IgnoreMatcher::parse(&text).map_err(|source| BuildError::Ignore {
            path: ignore_path.clone(),
            source,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => IgnoreMatcher::default(),
        Err(source) => {
            return Err(BuildError::Io {
                path: ignore_path,
                source,
            });
        }
    };

    let prefix: PathBuf = dest_parts.iter().collect();
    let mut entries = Vec::new();
    for i in 1..=dest_parts.len() {
        entries.push(Entry {
            path: dest_parts[..i].iter().collect(),
            kind: Kind::Dir,
            mode: DEST_DIR_MODE,
        });
    }
    let mut walker = Walker {
        root: dir,
        prefix: &prefix,
        matcher: &matcher,
        skip_excluded_dirs: !matcher.has_exceptions(),
        entries,
        warnings: Vec::new(),
    };
    walker.walk(Path::new(""))?;
    let Walker {
        mut entries,
        warnings,
        ..
    } = walker;
    entries.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });

    let mut out = TempBlob::create(out_dir)?;
    let file = out.take_file()?;
    let stored = HashingWriter::new(BufWriter::new(file));
    let compressor =
        Compressor::new(opts.compression, stored).map_err(|source| BuildError::Io {
            path: out.path.clone(),
            source,
        })?;
    let mut tar = tar::Builder::new(HashingWriter::new(compressor));
    let mut files = 0u64;
    for entry in &entries {
        write_entry(&mut tar, entry, opts, mtime, &out.path)?;
        if !matches!(entry.kind, Kind::Dir) {
            files += 1;
        }
    }
    let io_err = |source| BuildError::Io {
        path: out.path.clone(),
        source,
    };
    let uncompressed = tar.into_inner().map_err(io_err)?;
    let diff_id = uncompressed.digester.finish();
    let stored = uncompressed.inner.finish().map_err(io_err)?;
    let digest = stored.digester.finish();
    let size = stored.count;
    let file = stored
        .inner
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    let path = out.persist(&digest)?;
    tracing::debug!(%digest, %diff_id, size, files, "built layer");
    Ok(BuiltLayer {
        media_type: opts.compression.media_type().to_owned(),
        digest,
        diff_id,
        size,
        path,
        warnings,
        files,
        dest,
    })
}

/// The components of an absolute destination path; `..` is refused.
fn dest_components(dest: &str) -> Result<Vec<String>, BuildError> {
    if !dest.starts_with('/') {
        return Err(BuildError::InvalidOption(format!(
            "destination {dest:?} must be an absolute path"
        )));
    }
    let mut parts = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(BuildError::InvalidOption(format!(
                    "destination {dest:?} must not contain `..`"
                )));
            }
            p => parts.push(p.to_owned()),
        }
    }
    Ok(parts)
}

/// Collects the entries of the build directory.
struct Walker<'a> {
    root: &'a Path,
    prefix: &'a Path,
    matcher: &'a IgnoreMatcher,
    /// With no `!` exceptions, nothing below an excluded directory can be included.
    skip_excluded_dirs: bool,
    entries: Vec<Entry>,
    warnings: Vec<String>,
}

impl Walker<'_> {
    /// Walks `rel` (relative to the root); returns whether anything below it is included.
    fn walk(&mut self, rel: &Path) -> Result<bool, BuildError> {
        let dir = self.root.join(rel);
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| BuildError::Io { path, source }
        };
        let mut names = Vec::new();
        for item in fs::read_dir(&dir).map_err(io_err(&dir))? {
            names.push(item.map_err(io_err(&dir))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut any = false;
        for name in names {
            let rel_child = rel.join(&name);
            let full = self.root.join(&rel_child);
            let meta = fs::symlink_metadata(&full).map_err(io_err(&full))?;
            let excluded = self.matcher.is_excluded(&rel_child.to_string_lossy());
            let ft = meta.file_type();
            let mode = meta.permissions().mode() & 0o7777;
            let path = self.prefix.join(&rel_child);
            if ft.is_dir() {
                if excluded && self.skip_excluded_dirs {
                    continue;
                }
                let inner = self.walk(&rel_child)?;
                if !excluded || inner {
                    self.entries.push(Entry {
                        path,
                        kind: Kind::Dir,
                        mode,
                    });
                    any = true;
                }
                continue;
            }
            if excluded {
                continue;
            }
            let kind = if ft.is_file() {
                self.check_secret(&rel_child, &full, &name)?;
                Kind::File {
                    size: meta.len(),
                    source: full,
                }
            } else if ft.is_symlink() {
                Kind::Symlink {
                    target: fs::read_link(&full).map_err(io_err(&full))?,
                }
            } else {
                let kind = if ft.is_socket() {
                    "a socket"
                } else if ft.is_fifo() {
                    "a FIFO"
                } else if ft.is_block_device() {
                    "a block device"
                } else if ft.is_char_device() {
                    "a character device"
                } else {
                    "a file of unknown type"
                };
                return Err(BuildError::UnsupportedFile { path: full, kind });
            };
            self.entries.push(Entry { path, kind, mode });
            any = true;
        }
        Ok(any)
    }

    /// Adds a warning if the file's name or first bytes look like a secret.
    fn check_secret(
        &mut self,
        rel: &Path,
        full: &Path,
        name: &std::ffi::OsStr,
    ) -> Result<(), BuildError> {
        let mut reasons = Vec::new();
        if let Some(r) = secrets::name_reason(&name.to_string_lossy()) {
            reasons.push(r);
        }
        let mut head = Vec::with_capacity(secrets::SCAN_BYTES);
        File::open(full)
            .and_then(|f| f.take(secrets::SCAN_BYTES as u64).read_to_end(&mut head))
            .map_err(|source| BuildError::Io {
                path: full.to_owned(),
                source,
            })?;
        if let Some(r) = secrets::content_reason(&head) {
            reasons.push(r);
        }
        if !reasons.is_empty() {
            let line = format!("{}: {}", rel.display(), reasons.join("; "));
            tracing::warn!("possible secret in layer: {line}");
            self.warnings.push(line);
        }
        Ok(())
    }
}

/// Appends one entry with normalised metadata.
fn write_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    entry: &Entry,
    opts: &LayerOptions,
    mtime: u64,
    out_path: &Path,
) -> Result<(), BuildError> {
    let invalid = |what: &str, e: io::Error| BuildError::InvalidOption(format!("{what}: {e}"));
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(opts.uid);
    header.set_gid(opts.gid);
    header
        .set_username(&opts.uname)
        .map_err(|e| invalid("uname", e))?;
    header
        .set_groupname(&opts.gname)
        .map_err(|e| invalid("gname", e))?;
    header.set_mtime(mtime);
    let write_err = |source| BuildError::Io {
        path: out_path.to_owned(),
        source,
    };
    match &entry.kind {
        Kind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            let mut name = entry.path.as_os_str().to_owned();
            name.push("/");
            tar.append_data(&mut header, Path::new(&name), io::empty())
                .map_err(write_err)?;
        }
        Kind::Symlink { target } => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &entry.path, target)
                .map_err(write_err)?;
        }
        Kind::File { size, source } => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(*size);
            let file = File::open(source).map_err(|e| BuildError::Io {
                path: source.clone(),
                source: e,
            })?;
            let reader = ExactReader {
                inner: file.take(*size),
                remaining: *size,
            };
            tar.append_data(&mut header, &entry.path, reader)
                .map_err(|e| BuildError::Io {
                    path: source.clone(),
                    source: e,
                })?;
        }
    }
    Ok(())
}

/// Reads exactly `remaining` bytes, failing if the file shrank while being read (a short
/// entry would corrupt the archive).
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    digester: Digester,
    count: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            digester: Digester::new(Algorithm::Sha256),
            count: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.digester.update(written);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compression stage, with fixed parameters.
enum Compressor<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> Compressor<W> {
    fn new(compression: Compression, inner: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Compressor::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(inner, flate2::Compression::new(GZIP_LEVEL)),
            ),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
                enc.include_checksum(false)?;
                enc.include_contentsize(false)?;
                enc.include_dictid(false)?;
                Compressor::Zstd(enc)
            }
            Compression::None => Compressor::None(inner),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
            Compressor::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
            Compressor::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
            Compressor::None(w) => w.flush(),
        }
    }
}

/// Distinguishes temp files of concurrent builds in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The output file while it is written; removed on drop unless persisted.
struct TempBlob {
    path: PathBuf,
    file: Option<File>,
    keep: bool,
}

impl TempBlob {
    fn create(out_dir: &Path) -> Result<TempBlob, BuildError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = out_dir.join(format!(".berth-layer-{}-{n}.tmp", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| BuildError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(TempBlob {
            path,
            file: Some(file),
            keep: false,
        })
    }

    fn take_file(&mut self) -> Result<File, BuildError> {
        self.file.take().ok_or_else(|| BuildError::Io {
            path: self.path.clone(),
            source: io::Error::other("temporary file already taken"),
        })
    }

    /// Renames the file to `sha256-<hex>` next to it.
    fn persist(mut self, digest: &Digest) -> Result<PathBuf, BuildError> {
        let final_path =
            self.path
                .with_file_name(format!("{}-{}", digest.algorithm().as_str(), digest.hex()));
        fs::rename(&self.path, &final_path).map_err(|source| BuildError::Io {
            path: final_path.clone(),
            source,
        })?;
        self.keep = true;
        Ok(final_path)
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}
