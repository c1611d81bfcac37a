//! Scrub: re-hash every stored blob and manifest at a bounded rate, quarantine
//! what no longer matches its digest, and check that tags, manifests and blobs
//! still point at each other.
//!
//! A corrupt (or missing) blob file is moved to `quarantine/` and forgotten by
//! the metadata, so `HEAD`/`GET` answer `BLOB_UNKNOWN` and a client pushes it
//! again (the manifests that reference it stay; they are whole once it is back).
//! A corrupt manifest is deleted from every repository that held it, its bytes
//! kept in the quarantine record. Both are logged and reported by repository and
//! digest.

use berth_oci::{Digest, Digester};
use berth_storage::{Inconsistency, QuarantineRecord};
use serde::Serialize;

use crate::cache::Change;
use crate::registry::Registry;
use crate::{RegistryError, Result};

/// What a scrub found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrubReport {
    /// Blobs re-hashed.
    pub blobs_checked: u64,
    /// Bytes read.
    pub bytes_checked: u64,
    /// Manifests re-hashed.
    pub manifests_checked: u64,
    /// Objects found corrupt or missing in this pass, now quarantined.
    pub corrupt: Vec<Corrupt>,
    /// Links that point nowhere.
    pub inconsistencies: Vec<Inconsistency>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// One object scrub quarantined.
#[derive(Debug, Clone, Serialize)]
pub struct Corrupt {
    /// `blob` or `manifest`.
    pub kind: &'static str,
    /// The digest it should have.
    pub digest: String,
    /// Repositories that held it.
    pub repositories: Vec<String>,
    /// What was wrong.
    pub reason: String,
    /// Where its bytes were moved, if anywhere.
    pub moved_to: Option<String>,
}

const PAGE: u32 = 256;

impl Registry {
    /// Scrub everything once, reading at most `rate` bytes per second (0: no
    /// limit; `None`: the configured rate).
    pub async fn scrub(&self, rate: Option<u64>) -> Result<ScrubReport> {
        let _one = self.maintenance.lock().await;
        let started = std::time::Instant::now();
        let rate = rate.unwrap_or(self.lifecycle.scrub.rate);
        let mut report = ScrubReport::default();
        let mut after = String::new();
        loop {
            let a = after.clone();
            let page = self.db(move |m| m.blobs_page(&a, PAGE)).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.to_string();
            for (digest, size) in page {
                self.scrub_blob(&digest, size, rate, &mut report).await?;
            }
        }
        let mut after = String::new();
        loop {
            let a = after.clone();
            let page = self.db(move |m| m.manifest_contents_page(&a, PAGE)).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.to_string();
            for (digest, content) in page {
                report.manifests_checked += 1;
                let actual = Digest::of(digest.algorithm(), &content);
                if actual == digest {
                    continue;
                }
                let reason = format!("stored manifest bytes hash to {actual}");
                let (d, why, cache) = (digest.clone(), reason.clone(), self.cache.clone());
                let repos = self
                    .db(move |m| {
                        let repos = m.quarantine_manifest(&d, &why)?;
                        for r in &repos {
                            cache.invalidate(Change::ManifestDeleted {
                                repo: r,
                                digest: &d,
                            });
                        }
                        Ok(repos)
                    })
                    .await?;
                tracing::error!(%digest, repositories = ?repos, %reason, "scrub: corrupt manifest quarantined");
                report.corrupt.push(Corrupt {
                    kind: "manifest",
                    digest: digest.to_string(),
                    repositories: repos,
                    reason,
                    moved_to: None,
                });
            }
        }
        report.inconsistencies = self.db(|m| m.inconsistencies()).await?;
        report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            blobs = report.blobs_checked,
            bytes = report.bytes_checked,
            manifests = report.manifests_checked,
            corrupt = report.corrupt.len(),
            inconsistencies = report.inconsistencies.len(),
            duration_ms = report.duration_ms,
            "scrub"
        );
        Ok(report)
    }

    async fn scrub_blob(
        &self,
        digest: &Digest,
        size: u64,
        rate: u64,
        report: &mut ScrubReport,
    ) -> Result<()> {
        let (blobs, d) = (self.blobs.clone(), digest.clone());
        let hashed = tokio::task::spawn_blocking(move || {
            let mut digester = Digester::new(d.algorithm());
            blobs
                .hash_blob_blocking(&d, &mut digester, rate)
                .map(|r| r.map(|(len, ino)| (len, ino, digester.finish())))
        })
        .await
        .map_err(RegistryError::task)??;
        report.blobs_checked += 1;
        let (reason, ino) = match hashed {
            None => ("file missing".to_owned(), None),
            Some((len, ino, actual)) => {
                report.bytes_checked += len;
                if len != size {
                    (
                        format!("file holds {len} bytes, {size} expected"),
                        Some(ino),
                    )
                } else if actual != *digest {
                    (format!("file content hashes to {actual}"), Some(ino))
                } else {
                    return Ok(());
                }
            }
        };
        // Same lock as a commit of this digest: if the file was replaced since it
        // was hashed (pushed again), leave it for the next pass.
        let _order = self.blob_locks.lock(digest).await;
        if let Some(ino) = ino
            && self.blobs.blob_inode(digest)? != Some(ino)
        {
            return Ok(());
        }
        let moved = self.blobs.quarantine_blob(digest).await?;
        let moved_to = moved.map(|p| p.display().to_string());
        let (d, why, to) = (digest.clone(), reason.clone(), moved_to.clone());
        let repos = self
            .db(move |m| m.quarantine_blob(&d, &why, to.as_deref()))
            .await?;
        tracing::error!(%digest, repositories = ?repos, %reason, "scrub: corrupt blob quarantined");
        report.corrupt.push(Corrupt {
            kind: "blob",
            digest: digest.to_string(),
            repositories: repos,
            reason,
            moved_to,
        });
        Ok(())
    }

    /// Everything quarantined so far.
    pub async fn quarantined(&self) -> Result<Vec<QuarantineRecord>> {
        self.db(|m| m.quarantined()).await
    }

    /// Usage per repository, each with its quota if one applies.
    pub async fn usage(&self) -> Result<UsageReport> {
        let repos = self.db(|m| m.usage()).await?;
        let (blobs, bytes) = self.db(|m| m.stored_blobs()).await?;
        Ok(UsageReport {
            repositories: repos
                .into_iter()
                .map(|u| RepoUsage {
                    quota: self.lifecycle.quota(&u.repository),
                    usage: u,
                })
                .collect(),
            unique_blobs: blobs,
            unique_bytes: bytes,
        })
    }
}

/// Storage use.
#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    /// Per repository, by name.
    pub repositories: Vec<RepoUsage>,
    /// Blobs stored once across all repositories.
    pub unique_blobs: u64,
    /// Their bytes (what the blobs take on disk).
    pub unique_bytes: u64,
}

/// One repository's use and quota.
#[derive(Debug, Clone, Serialize)]
pub struct RepoUsage {
    /// Counts and bytes.
    #[serde(flatten)]
    pub usage: berth_storage::RepoUsage,
    /// Its quota in bytes, if any.
    pub quota: Option<u64>,
}
