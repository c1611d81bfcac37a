//! Registry semantics over `berth-storage`: upload sessions, blob commits and mounts,
//! manifest acceptance, tags, referrers, catalog and deletes.
//!
//! Nothing here knows about HTTP: request bodies arrive as byte streams, results
//! leave as values, and failures as [`RegistryError`], which carries its
//! distribution-spec code. The server turns those into responses.

mod cache;
mod error;
mod registry;
mod uploads;

pub use berth_storage::{StoredManifest, UploadId};
pub use error::RegistryError;
pub use registry::{Limits, ManifestPut, Registry};

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, RegistryError>;
