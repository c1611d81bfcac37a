//! Where berth's bytes and names live.
//!
//! * [`BlobStore`]: content-addressed blob files and in-progress upload files on the
//!   local filesystem; a blob becomes visible only by an atomic rename after fsync.
//! * [`Metadata`]: repositories, blob links, manifests (with their exact bytes), tags,
//!   referrers and upload sessions in an embedded SQLite database (WAL mode), every
//!   change in one transaction.
//!
//! On-disk layout under the data directory:
//!
//! ```text
//! <data-dir>/
//! ├── lock                                held (flock) by the one process serving this directory
//! ├── meta.db, meta.db-wal, meta.db-shm   SQLite metadata (schema in `metadata.rs`)
//! ├── blobs/
//! │   ├── sha256/<first 2 hex>/<hex>      committed blobs, immutable, stored once
//! │   └── sha512/<first 2 hex>/<hex>
//! ├── uploads/
//! │   └── <uuid>/data                     bytes received so far for one upload session
//! └── quarantine/
//!     └── <alg>-<hex>-<unix time>         a blob scrub found corrupt, never served again
//! ```
//!
//! This crate knows nothing of what a manifest means; `berth-registry` does.

mod blobs;
mod lifecycle;
mod metadata;
mod stats;

pub use blobs::{BlobFile, BlobStore, BlobStream, DIRECT_ALIGN, UploadAppender, UploadId};
pub use lifecycle::{GcPlan, Inconsistency, QuarantineRecord, RepoUsage, TagInfo};
pub use lock::DirLock;
pub use stats::StoreCounts;

mod lock;
pub use metadata::{
    Deleted, Linked, ManifestRecord, Metadata, Mounted, PutManifestError, ReferrerRow,
    StoredManifest, TagGuard, UploadSession,
};

use std::path::PathBuf;

/// Storage failures. None of these is the client's fault; the server reports them
/// as a generic 500 and logs the cause.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another berth process")]
    Locked(PathBuf),
    /// A blocking task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Seconds since the Unix epoch: the clock of every timestamp in metadata.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
