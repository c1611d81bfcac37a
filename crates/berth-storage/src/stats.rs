//! Counts of what is stored, for metrics (`berth_storage_*`, `berth_images_*`).

use crate::Result;
use crate::lifecycle::SIGNATURE_TYPES;
use crate::metadata::Metadata;

/// What the metadata database holds, counted in one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Repositories.
    pub repositories: u64,
    /// Manifests (a manifest in two repositories counts twice).
    pub manifests: u64,
    /// Tags, cosign attachment tags included.
    pub tags: u64,
    /// Unique blobs.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Open upload sessions.
    pub uploads: u64,
    /// Distinct (repository, manifest) pairs some tag points at, cosign
    /// attachment tags (`sha256-<hex>.sig|.att|.sbom`) excluded: the images.
    pub images_tagged: u64,
    /// Of those, the ones with a signature: a signature referrer (cosign,
    /// notation) or a cosign `.sig` tag.
    pub images_signed: u64,
    /// Of those, the ones with an SBOM: an SPDX or CycloneDX referrer or a cosign
    /// `.sbom` tag.
    pub images_with_sbom: u64,
}

/// Artifact types of SBOMs.
const SBOM_TYPES: &str = "'application/spdx+json', 'text/spdx', 'text/spdx+json',
     'application/vnd.cyclonedx+json', 'application/vnd.cyclonedx+xml', 'application/vnd.cyclonedx'";

impl Metadata {
    /// Count everything (on a connection of its own: with many tags this is a
    /// scan, and requests must not wait behind it).
    pub fn counts(&self) -> Result<StoreCounts> {
        self.read_apart(|c| {
            let one = |sql: &str| -> rusqlite::Result<u64> {
                c.query_row(sql, [], |r| r.get::<_, i64>(0))
                    .map(|n| u64::try_from(n).unwrap_or(0))
            };
            let (blobs, blob_bytes): (i64, i64) = c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let images_sql = format!(
                "WITH images AS (
                     SELECT DISTINCT repo_id, digest FROM tags
                     WHERE NOT (name GLOB 'sha256-*.sig' OR name GLOB 'sha256-*.att'
                                OR name GLOB 'sha256-*.sbom'))
                 SELECT COUNT(*),
                    COALESCE(SUM(
                        EXISTS (SELECT 1 FROM manifests s WHERE s.repo_id = i.repo_id
                                AND s.subject = i.digest AND s.artifact_type IN ({SIGNATURE_TYPES}))
                        OR EXISTS (SELECT 1 FROM tags st WHERE st.repo_id = i.repo_id
                                AND st.name = replace(i.digest, ':', '-') || '.sig')), 0),
                    COALESCE(SUM(
                        EXISTS (SELECT 1 FROM manifests s WHERE s.repo_id = i.repo_id
                                AND s.subject = i.digest AND s.artifact_type IN ({SBOM_TYPES}))
                        OR EXISTS (SELECT 1 FROM tags st WHERE st.repo_id = i.repo_id
                                AND st.name = replace(i.digest, ':', '-') || '.sbom')), 0)
                 FROM images i"
            );
            let (tagged, signed, sbom): (i64, i64, i64) =
                c.query_row(&images_sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(StoreCounts {
                repositories: one("SELECT COUNT(*) FROM repositories")?,
                manifests: one("SELECT COUNT(*) FROM manifests")?,
                tags: one("SELECT COUNT(*) FROM tags")?,
                blobs: n(blobs),
                blob_bytes: n(blob_bytes),
                uploads: one("SELECT COUNT(*) FROM uploads")?,
                images_tagged: n(tagged),
                images_signed: n(signed),
                images_with_sbom: n(sbom),
            })
        })
    }
}
