//! Counts of what the registry holds, for metrics.

use berth_storage::StoreCounts;

use crate::Result;
use crate::registry::Registry;

impl Registry {
    /// Count repositories, manifests, tags, blobs, uploads and images (signed,
    /// with an SBOM) — one database read on a connection of its own.
    pub async fn counts(&self) -> Result<StoreCounts> {
        self.db(|m| m.counts()).await
    }
}
