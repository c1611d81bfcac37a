//! Applying an image's layers, in manifest order, into a bundle's root filesystem,
//! safely (image-spec `layer.md`: changesets, whiteouts, opaque directories).
//!
//! # Safety model
//!
//! Layers are untrusted. No entry may create, change or remove anything outside the
//! root, whatever earlier entries or layers left behind:
//!
//! - Entry names are checked before they touch the filesystem: absolute names and
//!   any `..` component are refused ([`UnpackError::Escape`]); `.` and empty
//!   components are dropped.
//! - The root is held as a directory file descriptor. An entry's parent directory is
//!   opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` relative to it, never by joining
//!   strings. A parent path that goes through a symlink is refused, even one that
//!   would resolve inside the root: a legitimate layer never writes through a
//!   symlink (image builders record the real path), so such an entry is treated as
//!   an attack.
//! - The final component is then handled with `*at` calls on the parent descriptor
//!   that never follow a symlink there (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_EXCL`
//!   creation after removing whatever was in the way).
//! - Hard-link targets go through the same checks and resolution, so a link can only
//!   name a file already inside the root; `linkat` is called without
//!   `AT_SYMLINK_FOLLOW`, so a link to a symlink links the symlink itself.
//! - A whiteout removes one name in its own directory: `.wh..` (naming `.`) and
//!   `.wh...` (naming `..`) are refused.
//! - Every layer is bounded: uncompressed bytes and file bytes written
//!   ([`UnpackOptions::max_layer_bytes`]), entries ([`UnpackOptions::max_entries`]),
//!   the size of one entry's headers (PAX records, long names) and of entry names.
//!
//! The rootfs is assumed not to be modified by anyone else while layers are applied
//! (it is a fresh directory the caller owns); the checks above defend against the
//! layer content, not against a concurrent local attacker.
//!
//! # Semantics (as umoci applies layers)
//!
//! - An entry replaces whatever is at its path, except that a directory over a
//!   directory merges (the existing one stays and takes the entry's metadata).
//! - `.wh.NAME` removes `NAME` and `.wh..wh..opq` empties its directory, but only of
//!   what lower layers put there: paths this layer creates are spared, whether they
//!   come before or after the marker. Whiteouts are never created themselves.
//! - Ownership (unless [`UnpackOptions::rootless`]), then mode (set-id bits survive),
//!   then `SCHILY.xattr.*` records (best effort), then times. Directory times are
//!   set when the layer is complete; a lower directory whose children the layer
//!   changes keeps its times. Hard links carry no metadata of their own.
//! - A device node that `mknod` may not create (`EPERM`) is skipped and reported in
//!   [`LayerStats::skipped`], as are xattrs that cannot be set (`security.*` and
//!   `trusted.*` are not attempted unprivileged; `security.selinux` never).
//! - Missing parent directories are created with mode 0755.
//!
//! # Digests and failures
//!
//! A layer is applied as it streams in, and its digest (over the blob as given,
//! compressed) is known only at the end. When any layer fails — digest mismatch,
//! refused entry, size limit, corrupt data — the rootfs is left partially written and
//! the caller must discard the whole bundle; the [`Unpacker`] refuses further layers.

mod apply;
mod fsops;
mod path;
mod stream;
mod tree;

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_oci::Digest;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use stream::{Compression, HashingReader, MeteredReader, StreamState};

/// Default for [`UnpackOptions::max_layer_bytes`]: 32 GiB.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 32 << 30;
/// Default for [`UnpackOptions::max_entries`]: ten million.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000_000;

/// How layers are applied, and the bounds on each layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Don't chown (rootless): files stay owned by the unpacking user, and the
    /// caller maps ids with a user namespace. Default `false`.
    pub rootless: bool,
    /// Most uncompressed bytes per layer (decompression bomb bound); also bounds the
    /// compressed bytes read and the file bytes written. Default
    /// [`DEFAULT_MAX_LAYER_BYTES`].
    pub max_layer_bytes: u64,
    /// Most entries per layer. Default [`DEFAULT_MAX_ENTRIES`].
    pub max_entries: u64,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            rootless: false,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries processed, whiteouts included.
    pub entries: u64,
    /// Uncompressed bytes of the layer's tar stream.
    pub bytes: u64,
    /// What could not be applied and why, one line each (for example a device node
    /// when mknod is not permitted, or an extended attribute that needs privilege).
    pub skipped: Vec<String>,
}

/// A bound a layer went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Uncompressed (or compressed, or written) bytes of one layer.
    LayerBytes,
    /// Entries in one layer.
    Entries,
    /// Header bytes (PAX records, GNU long names) of one entry.
    EntryHeaderBytes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::LayerBytes => "layer size in bytes",
            Limit::Entries => "number of entries",
            Limit::EntryHeaderBytes => "entry header size in bytes",
        })
    }
}

/// Why a rootfs could not be prepared or a layer could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// An entry would write, link or remove outside the root, or through a symlink.
    #[error("layer {layer}: entry {entry:?} refused: {reason}")]
    Escape {
        /// The layer's digest.
        layer: String,
        /// The entry's name as written in the layer.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The layer's bytes do not hash to its digest.
    #[error("layer {layer}: content has digest {actual}")]
    DigestMismatch {
        /// The layer's (expected) digest.
        layer: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// The layer went over a configured or built-in bound.
    #[error("layer {layer}: {limit} exceeds the limit of {max}")]
    TooLarge {
        /// The layer's digest.
        layer: String,
        /// Which bound.
        limit: Limit,
        /// The bound's value.
        max: u64,
    },
    /// The media type is not a tar layer berth can read.
    #[error("layer {layer}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The layer's digest.
        layer: String,
        /// The media type given.
        media_type: String,
    },
    /// The layer is not a valid (compressed) tar stream, or an entry makes no sense.
    #[error("layer {layer}: corrupt layer: {message}")]
    Corrupt {
        /// The layer's digest.
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// Reading the layer stream the caller supplied failed.
    #[error("layer {layer}: reading the layer stream: {source}")]
    Read {
        /// The layer's digest.
        layer: String,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation for an entry failed.
    #[error("layer {layer}: entry {entry:?}: {op}: {source}")]
    Io {
        /// The layer's digest.
        layer: String,
        /// The entry (or directory) being worked on.
        entry: String,
        /// The operation that failed.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The rootfs directory could not be created or opened.
    #[error("rootfs {path}: {op}: {source}")]
    Rootfs {
        /// The rootfs path.
        path: PathBuf,
        /// The operation that failed.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The rootfs directory already has content.
    #[error("rootfs {path} is not empty")]
    RootfsNotEmpty {
        /// The rootfs path.
        path: PathBuf,
    },
    /// An earlier layer failed; the rootfs is partial and must be discarded.
    #[error("an earlier layer failed to apply; the rootfs is partial and must be discarded")]
    Aborted,
}

/// Applies layers, in order, into one root filesystem directory.
#[derive(Debug)]
pub struct Unpacker {
    root: OwnedFd,
    path: PathBuf,
    opts: UnpackOptions,
    euid: u32,
    totals: LayerStats,
    failed: bool,
}

impl Unpacker {
    /// Open (create if missing, must be empty or absent) `rootfs` as the root.
    ///
    /// `rootfs` itself must not be a symlink. Fails on kernels without `openat2`
    /// (Linux 5.6+).
    pub fn new(rootfs: &Path, opts: UnpackOptions) -> Result<Self, UnpackError> {
        let rootfs_err = |op: &'static str, source: io::Error| UnpackError::Rootfs {
            path: rootfs.to_path_buf(),
            op,
            source,
        };
        match std::fs::create_dir(rootfs) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(rootfs_err("create directory", e)),
        }
        let root = rustix::fs::open(
            rootfs,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| rootfs_err("open directory", e.into()))?;
        if !fsops::list_dir(&root)
            .map_err(|e| rootfs_err("list directory", e.into()))?
            .is_empty()
        {
            return Err(UnpackError::RootfsNotEmpty {
                path: rootfs.to_path_buf(),
            });
        }
        // Probe openat2 now rather than in the middle of the first layer.
        rustix::fs::openat2(
            &root,
            ".",
            fsops::DIR_PATH_FLAGS,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .map_err(|e| {
            let op = if e == Errno::NOSYS {
                "openat2 (needs Linux 5.6 or later)"
            } else {
                "openat2"
            };
            rootfs_err(op, e.into())
        })?;
        Ok(Unpacker {
            root,
            path: rootfs.to_path_buf(),
            opts,
            euid: rustix::process::geteuid().as_raw(),
            totals: LayerStats::default(),
            failed: false,
        })
    }

    /// The rootfs directory this unpacker writes into.
    pub fn rootfs(&self) -> &Path {
        &self.path
    }

    /// The options in force.
    pub fn options(&self) -> &UnpackOptions {
        &self.opts
    }

    /// Sums over every layer applied so far.
    pub fn totals(&self) -> &LayerStats {
        &self.totals
    }

    /// Apply one layer (manifest order).
    ///
    /// `media_type` must be a tar layer type (OCI `…layer.v1.tar`, `+gzip`, `+zstd`,
    /// their non-distributable forms, Docker `…rootfs.diff.tar.gzip`); the stream's
    /// magic bytes then pick the decompressor, so a mislabelled blob still reads. The
    /// digest is verified while reading, over the stream as given, which is read to
    /// its end. On any error (a mismatch included) the rootfs is partially written:
    /// the caller discards the bundle, and this unpacker refuses further layers.
    pub fn apply_layer<R: Read>(
        &mut self,
        digest: &Digest,
        media_type: &str,
        reader: R,
    ) -> Result<LayerStats, UnpackError> {
        if self.failed {
            return Err(UnpackError::Aborted);
        }
        let layer = digest.to_string();
        let Some(declared) = Compression::from_media_type(media_type) else {
            return Err(UnpackError::UnsupportedMediaType {
                layer,
                media_type: media_type.to_owned(),
            });
        };
        let result = self.apply_stream(digest, &layer, declared, reader);
        match &result {
            Ok(stats) => {
                self.totals.entries += stats.entries;
                self.totals.bytes += stats.bytes;
                self.totals.skipped.extend(stats.skipped.iter().cloned());
                tracing::debug!(
                    layer,
                    entries = stats.entries,
                    bytes = stats.bytes,
                    skipped = stats.skipped.len(),
                    "layer applied"
                );
            }
            Err(e) => {
                self.failed = true;
                tracing::debug!(layer, error = %e, "layer failed; the rootfs is partial");
            }
        }
        result
    }

    fn apply_stream<R: Read>(
        &mut self,
        digest: &Digest,
        layer: &str,
        declared: Compression,
        reader: R,
    ) -> Result<LayerStats, UnpackError> {
        let state = StreamState::new(self.opts.max_layer_bytes);
        let mut raw = HashingReader::new(reader, digest.algorithm(), state.clone());
        let outcome = self.decode_and_apply(layer, declared, &mut raw, &state);
        let classify = |e: io::Error| stream::classify(layer, &state, e);
        match outcome {
            Ok(mut stats) => {
                // The hash covers the whole blob, trailing bytes included.
                io::copy(&mut raw, &mut io::sink()).map_err(classify)?;
                check_digest(layer, digest, raw.finish())?;
                stats.bytes = state.uncompressed();
                Ok(stats)
            }
            Err(e @ UnpackError::Corrupt { .. }) => {
                // Corrupt bytes are often the wrong bytes: say so when the digest
                // disagrees, since that is the more useful diagnosis.
                io::copy(&mut raw, &mut io::sink()).map_err(classify)?;
                check_digest(layer, digest, raw.finish())?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn decode_and_apply<R: Read>(
        &mut self,
        layer: &str,
        declared: Compression,
        raw: &mut HashingReader<R>,
        state: &std::rc::Rc<StreamState>,
    ) -> Result<LayerStats, UnpackError> {
        let classify = |e: io::Error| stream::classify(layer, state, e);
        let (magic, len) = stream::read_magic(raw).map_err(classify)?;
        let compression = Compression::sniff(&magic[..len]).unwrap_or(Compression::Plain);
        if compression != declared {
            tracing::debug!(
                layer,
                ?declared,
                actual = ?compression,
                "layer compression differs from its media type; using the content's"
            );
        }
        let head = io::Cursor::new(magic).take(len as u64).chain(raw);
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::Plain => Box::new(head),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(head)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(head).map_err(classify)?)
            }
        };
        let mut archive = tar::Archive::new(MeteredReader::new(decoded, state.clone()));
        let mut applier = apply::Applier::new(
            self.root.as_fd(),
            layer,
            &self.opts,
            self.euid,
            state.clone(),
        );
        applier.run(&mut archive)?;
        // Read the decompressed stream to its end too: checks the gzip/zstd trailer
        // and keeps the size bound honest.
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(classify)?;
        applier.finish()
    }
}

fn check_digest(layer: &str, expected: &Digest, actual: Digest) -> Result<(), UnpackError> {
    if actual == *expected {
        Ok(())
    } else {
        Err(UnpackError::DigestMismatch {
            layer: layer.to_owned(),
            actual: actual.to_string(),
        })
    }
}
