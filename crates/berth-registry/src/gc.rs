//! Online garbage collection.
//!
//! A pass has two phases. **Mark** reads one snapshot of the metadata (a read
//! transaction on a reader connection: writers go on) and finds manifests that
//! no tag, live index or live subject reaches, blob links no live manifest
//! references, and blobs no live link holds — each only if older than the grace
//! period. **Sweep** deletes those in short write transactions (at most 32 objects), each
//! re-checking in the transaction that the object is still unreachable, so a tag,
//! index, referrer or link made after the snapshot saves it. Blob files are removed
//! under the digest's stripe lock, which a blob commit (rename + link) also holds.
//!
//! Why a push in progress never loses a blob it will reference: a push uploads
//! (or mounts) its blobs, which links them with a fresh `linked_at`, then pushes
//! the manifest; a manifest push checks, in its transaction, that every blob is
//! linked. GC only unlinks links older than the grace period and only forgets
//! blobs with no link at all, re-checked in the transaction; so within the grace
//! period every blob the push wrote stays, and after it the manifest either
//! committed first (the link is referenced: GC keeps it) or is refused with
//! `MANIFEST_BLOB_UNKNOWN` (no broken image is ever stored). A client that skips
//! an upload because `HEAD` found the blob (or a child manifest by digest) is covered
//! by [`crate::tracking::RecentBlobs`].
//! See docs/ARCHITECTURE.md, "Garbage collection".

use std::time::Duration;

use berth_oci::Digest;
use serde::Serialize;

use crate::cache::Change;

/// Objects deleted per write transaction: each is re-checked inside it, and a
/// batch holds SQLite's writer for a few milliseconds at most (one fsync for
/// the lot instead of one each).
const BATCH: usize = 32;
use crate::registry::Registry;
use crate::{RegistryError, Result};

/// What a garbage-collection pass did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Manifests deleted (`repository@digest`).
    pub manifests: Vec<String>,
    /// Blob links removed from repositories (`repository@digest`).
    pub links: Vec<String>,
    /// Blobs whose files were deleted, with sizes.
    pub blobs: Vec<BlobFreed>,
    /// Blob files metadata did not know (left by a crash), deleted.
    pub orphan_files: Vec<BlobFreed>,
    /// Stale upload sessions purged.
    pub uploads: Vec<String>,
    /// Bytes freed (blobs and orphan files).
    pub bytes_freed: u64,
    /// Objects the plan found unreachable that a re-check saved (in use again).
    pub kept_by_recheck: u64,
    /// Wall time of the pass in milliseconds.
    pub duration_ms: u64,
}

/// A blob deleted (or to be deleted).
#[derive(Debug, Clone, Serialize)]
pub struct BlobFreed {
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Registry {
    /// Collect garbage now (see the module documentation). `dry_run` reports what
    /// would go without deleting anything. One pass at a time.
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport> {
        let _one = self.maintenance.lock().await;
        let started = std::time::Instant::now();
        let policy = self.lifecycle.gc.clone();
        let grace = policy.grace;
        let cutoff = berth_storage::now_secs() - grace.as_secs() as i64;
        let keep_untagged = policy.keep_untagged;
        self.recent.prune(grace);
        let plan = self.db(move |m| m.gc_plan(cutoff, keep_untagged)).await?;
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };

        // Manifests: parents before children and subjects before referrers; an
        // object a re-check refuses may be waiting for another, so go round
        // until a round deletes nothing.
        let mut pending = plan.manifests.clone();
        if dry_run {
            report.manifests = pending.iter().map(|(r, d)| format!("{r}@{d}")).collect();
        } else {
            loop {
                let mut next = Vec::new();
                let mut deleted = 0;
                for batch in pending.chunks(BATCH) {
                    let done = self.gc_manifests(batch, cutoff, keep_untagged).await?;
                    for ((repo, digest), gone) in batch.iter().zip(done) {
                        if gone {
                            report.manifests.push(format!("{repo}@{digest}"));
                            deleted += 1;
                        } else {
                            next.push((repo.clone(), digest.clone()));
                        }
                    }
                }
                pending = next;
                if pending.is_empty() || deleted == 0 {
                    break;
                }
            }
            report.kept_by_recheck += pending.len() as u64;
        }

        for batch in plan.links.chunks(BATCH) {
            // From the check to the unlinks' commit, no `HEAD` can note these blobs
            // (see `RecentBlobs`): one that found a link was noted before.
            let _fences = self.recent.fence_all(batch.iter().map(|(_, d)| d)).await;
            let (unseen, seen): (Vec<_>, Vec<_>) = batch
                .iter()
                .cloned()
                .partition(|(_, d)| !self.recent.seen_within(d, grace));
            report.kept_by_recheck += seen.len() as u64;
            let removed = if dry_run {
                vec![true; unseen.len()]
            } else {
                let b = unseen.clone();
                self.db(move |m| m.gc_unlink_blobs(&b, cutoff)).await?
            };
            for ((repo, digest), gone) in unseen.iter().zip(removed) {
                if gone {
                    report.links.push(format!("{repo}@{digest}"));
                } else {
                    report.kept_by_recheck += 1;
                }
            }
        }

        for (digest, size) in &plan.blobs {
            if self.recent.seen_within(digest, grace) {
                report.kept_by_recheck += 1;
                continue;
            }
            let freed = if dry_run {
                true
            } else {
                self.gc_blob(digest, cutoff).await?
            };
            if freed {
                report.bytes_freed += size;
                report.blobs.push(BlobFreed {
                    digest: digest.to_string(),
                    size: *size,
                });
            } else {
                report.kept_by_recheck += 1;
            }
        }

        self.gc_orphan_files(grace, dry_run, &mut report).await?;
        self.gc_uploads(policy.upload_max_age, dry_run, &mut report)
            .await?;
        report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            dry_run,
            manifests = report.manifests.len(),
            links = report.links.len(),
            blobs = report.blobs.len(),
            orphan_files = report.orphan_files.len(),
            uploads = report.uploads.len(),
            bytes_freed = report.bytes_freed,
            kept_by_recheck = report.kept_by_recheck,
            duration_ms = report.duration_ms,
            "garbage collection"
        );
        Ok(report)
    }

    /// Delete a batch of manifests that are still unreachable (one transaction,
    /// each re-checked); the cache forgets the deleted ones in the same blocking
    /// call, right after the commit. Manifests `HEAD`ed by digest within the
    /// grace stay, the fences ordering that check against a `HEAD` noting them.
    async fn gc_manifests(
        &self,
        batch: &[(String, Digest)],
        cutoff: i64,
        keep_untagged: bool,
    ) -> Result<Vec<bool>> {
        let _fences = self.recent.fence_all(batch.iter().map(|(_, d)| d)).await;
        let grace = self.lifecycle.gc.grace;
        let unseen: Vec<(String, Digest)> = batch
            .iter()
            .filter(|(_, d)| !self.recent.seen_within(d, grace))
            .cloned()
            .collect();
        let cache = self.cache.clone();
        let deleted: std::collections::HashSet<(String, Digest)> = self
            .db(move |m| {
                let done = m.gc_delete_manifests(&unseen, cutoff, keep_untagged)?;
                let mut deleted = std::collections::HashSet::new();
                for ((r, d), gone) in unseen.into_iter().zip(done) {
                    if gone {
                        cache.invalidate(Change::ManifestDeleted {
                            repo: &r,
                            digest: &d,
                        });
                        deleted.insert((r, d));
                    }
                }
                Ok(deleted)
            })
            .await?;
        Ok(batch.iter().map(|item| deleted.contains(item)).collect())
    }

    /// Forget a blob nothing links and delete its file, under its stripe lock.
    async fn gc_blob(&self, digest: &Digest, cutoff: i64) -> Result<bool> {
        let _order = self.blob_locks.lock(digest).await;
        let d = digest.clone();
        if !self.db(move |m| m.gc_forget_blob(&d, cutoff)).await? {
            return Ok(false);
        }
        self.blobs.remove_blob(digest).await?;
        Ok(true)
    }

    /// Blob files the metadata does not know (a crash between a commit's rename
    /// and its link, or a quota refusal after the rename), older than the grace.
    async fn gc_orphan_files(
        &self,
        grace: Duration,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<()> {
        let blobs = self.blobs.clone();
        let files = tokio::task::spawn_blocking(move || blobs.blob_files())
            .await
            .map_err(RegistryError::task)??;
        for (digest, size, age) in files {
            if age < grace.as_secs() {
                continue;
            }
            let d = digest.clone();
            if self.db(move |m| m.blob_size(&d)).await?.is_some() {
                continue;
            }
            if !dry_run {
                let _order = self.blob_locks.lock(&digest).await;
                let d = digest.clone();
                if self.db(move |m| m.blob_size(&d)).await?.is_some() {
                    continue;
                }
                self.blobs.remove_blob(&digest).await?;
            }
            report.bytes_freed += size;
            report.orphan_files.push(BlobFreed {
                digest: digest.to_string(),
                size,
            });
        }
        Ok(())
    }

    /// Upload sessions (and session-less upload files) idle for `max_age`.
    async fn gc_uploads(
        &self,
        max_age: Duration,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<()> {
        let sessions: std::collections::HashSet<String> =
            self.db(|m| m.upload_ids()).await?.into_iter().collect();
        let mut ids: Vec<berth_storage::UploadId> = self.blobs.upload_ids()?;
        for s in &sessions {
            if let Ok(id) = s.parse()
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        let is_stale = |idle: Option<u64>, id: &berth_storage::UploadId| match idle {
            Some(secs) => secs >= max_age.as_secs(),
            // A session without a file cannot be continued.
            None => sessions.contains(&id.to_string()),
        };
        for id in ids {
            if !is_stale(self.blobs.upload_idle_secs(id)?, &id) {
                continue;
            }
            // Hold the session's lock (no chunk is being written) and look again.
            let state = self.uploads.get(id);
            let _quiet = state.lock().await;
            if !is_stale(self.blobs.upload_idle_secs(id)?, &id) {
                continue;
            }
            if !dry_run {
                let key = vec![id.to_string()];
                self.db(move |m| m.forget_uploads(&key)).await?;
                self.blobs.delete_upload(id).await?;
                self.uploads.remove(id);
            }
            report.uploads.push(id.to_string());
        }
        Ok(())
    }
}
