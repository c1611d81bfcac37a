//! Registry semantics over `berth-storage`: upload sessions, blob commits and mounts,
//! manifest acceptance, tags, referrers, catalog and deletes; and the storage
//! lifecycle: garbage collection, retention, immutable tags, quotas and scrub.
//!
//! Nothing here knows about HTTP: request bodies arrive as byte streams, results
//! leave as values, and failures as [`RegistryError`], which carries its
//! distribution-spec code. The server turns those into responses.

mod cache;
mod error;
mod gc;
pub mod policy;
mod registry;
mod retention;
mod scrub;
mod stats;
mod tracking;
mod uploads;

pub use berth_storage::{QuarantineRecord, StoredManifest, UploadId};
pub use error::RegistryError;
pub use gc::{BlobFreed, GcReport};
pub use policy::{Lifecycle, LifecycleConfig};
pub use registry::{Limits, ManifestPut, Registry, TagChange};
pub use retention::{RetentionReport, TagDecision};
pub use scrub::{Corrupt, RepoUsage, ScrubReport, UsageReport};

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, RegistryError>;
