//! The metadata side of the storage lifecycle: what garbage collection may delete
//! (a plan read from one snapshot, then each deletion re-checked in its own short
//! transaction), retention candidates, last-pulled times, usage, quarantine and
//! consistency checks.
//!
//! Every function here either reads (never blocking writers: WAL; whole-registry
//! scans on a connection of their own, so requests never wait for a shared
//! reader) or writes a small batch per `IMMEDIATE` transaction (the caller sizes
//! it), so a pass over a large registry never holds the writer for long.
//! Policy (what is protected, how long the grace period is) is decided by the
//! caller in `berth-registry`; this module applies it as SQL.

use berth_oci::Digest;
use rusqlite::params;

use crate::metadata::{delete_manifest_tx, parse_digest, repo_id};
use crate::{Metadata, Result, now_secs};

/// What one garbage-collection pass found unreachable, read from one snapshot.
#[derive(Debug, Clone, Default)]
pub struct GcPlan {
    /// Manifests reachable from no tag, no live index and no live subject, and
    /// older than the grace period: `(repository, digest)`.
    pub manifests: Vec<(String, Digest)>,
    /// Blob links (`repository`, digest) that no live manifest of that
    /// repository references, older than the grace period.
    pub links: Vec<(String, Digest)>,
    /// Blobs left with no live link at all, older than the grace period, with sizes.
    pub blobs: Vec<(Digest, u64)>,
}

/// One tag as retention sees it.
#[derive(Debug, Clone)]
pub struct TagInfo {
    /// Repository name.
    pub repo: String,
    /// Tag name.
    pub tag: String,
    /// Manifest the tag points at.
    pub digest: Digest,
    /// When the tag was last pointed (Unix seconds).
    pub updated_at: i64,
    /// When its manifest was last pulled, if ever (Unix seconds).
    pub last_pulled_at: Option<i64>,
    /// Whether a signature refers to its manifest (a referrer with a signature
    /// artifact type, or a cosign `sha256-<hex>.sig` tag).
    pub signed: bool,
}

/// Usage of one repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepoUsage {
    /// Repository name.
    pub repository: String,
    /// Unique blobs linked.
    pub blobs: u64,
    /// Bytes of those blobs.
    pub bytes: u64,
    /// Manifests stored.
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
}

/// A problem in the metadata's links (tags → manifests → blobs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inconsistency {
    /// Repository.
    pub repository: String,
    /// The object that points (a tag name or a manifest digest).
    pub from: String,
    /// The missing target's digest.
    pub missing: String,
    /// What is wrong, in words.
    pub problem: String,
}

/// A quarantined object, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuarantineRecord {
    /// `blob` or `manifest`.
    pub kind: String,
    /// Its digest.
    pub digest: String,
    /// Repositories that held it.
    pub repositories: Vec<String>,
    /// Why it was quarantined.
    pub reason: String,
    /// Where its bytes were moved, if anywhere.
    pub moved_to: Option<String>,
    /// When (Unix seconds).
    pub found_at: i64,
}

/// Artifact types of signatures (cosign, notation, sigstore bundles).
pub(crate) const SIGNATURE_TYPES: &str = "'application/vnd.dev.cosign.artifact.sig.v1+json',
     'application/vnd.cncf.notary.signature',
     'application/vnd.dev.sigstore.bundle.v0.3+json'";

/// Live manifests: tags, manifests younger than `?1` (a cutoff in Unix seconds),
/// untagged manifests without a subject when `?2` is true (kept by policy), and
/// everything reachable from those through index children and referrers.
const LIVE_CTE: &str = "
WITH RECURSIVE live(repo_id, digest) AS (
    SELECT repo_id, digest FROM tags
    UNION SELECT repo_id, digest FROM manifests WHERE pushed_at >= ?1
    UNION SELECT repo_id, digest FROM manifests WHERE ?2 AND subject IS NULL
    UNION SELECT r.repo_id, r.target_digest FROM manifest_refs r
          JOIN live l ON r.repo_id = l.repo_id AND r.manifest_digest = l.digest
    UNION SELECT m.repo_id, m.digest FROM manifests m
          JOIN live l ON m.repo_id = l.repo_id AND m.subject = l.digest
)";

impl Metadata {
    /// Plan a garbage collection from one consistent snapshot: which manifests,
    /// links and blobs are unreachable and older than `cutoff` (Unix seconds).
    /// `keep_untagged` keeps untagged manifests that have no subject.
    pub fn gc_plan(&self, cutoff: i64, keep_untagged: bool) -> Result<GcPlan> {
        self.read_apart(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute_batch(
                "DROP TABLE IF EXISTS temp.gc_live;
                 CREATE TEMP TABLE gc_live (repo_id INTEGER, digest TEXT, PRIMARY KEY (repo_id, digest)) WITHOUT ROWID;",
            )?;
            tx.execute(
                &format!("{LIVE_CTE} INSERT OR IGNORE INTO temp.gc_live SELECT repo_id, digest FROM live"),
                params![cutoff, keep_untagged],
            )?;
            let manifests = tx
                .prepare(
                    "SELECT r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id
                     WHERE NOT EXISTS (SELECT 1 FROM temp.gc_live l
                                       WHERE l.repo_id = m.repo_id AND l.digest = m.digest)
                     ORDER BY r.name, m.digest",
                )?
                .query_map([], |r| Ok((r.get(0)?, parse_digest(r.get(1)?)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // A link is live if a live manifest of its repository references it
            // (`gc_live` holds the references of live manifests too), or if it is
            // younger than the cutoff.
            tx.execute_batch(
                "DROP TABLE IF EXISTS temp.gc_dead_links;
                 CREATE TEMP TABLE gc_dead_links (repo_id INTEGER, digest TEXT, PRIMARY KEY (repo_id, digest)) WITHOUT ROWID;",
            )?;
            tx.execute(
                "INSERT INTO temp.gc_dead_links
                 SELECT rb.repo_id, rb.digest FROM repo_blobs rb
                 WHERE rb.linked_at < ?1
                   AND NOT EXISTS (SELECT 1 FROM temp.gc_live l
                                   WHERE l.repo_id = rb.repo_id AND l.digest = rb.digest)",
                [cutoff],
            )?;
            let links = tx
                .prepare(
                    "SELECT r.name, d.digest FROM temp.gc_dead_links d
                     JOIN repositories r ON r.id = d.repo_id ORDER BY r.name, d.digest",
                )?
                .query_map([], |r| Ok((r.get(0)?, parse_digest(r.get(1)?)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let blobs = tx
                .prepare(
                    "SELECT b.digest, b.size FROM blobs b
                     WHERE b.created_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = b.digest
                           AND NOT EXISTS (SELECT 1 FROM temp.gc_dead_links d
                                           WHERE d.repo_id = rb.repo_id AND d.digest = rb.digest))
                     ORDER BY b.digest",
                )?
                .query_map([cutoff], |r| {
                    Ok((parse_digest(r.get(0)?)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.execute_batch("DROP TABLE temp.gc_live; DROP TABLE temp.gc_dead_links;")?;
            tx.commit()?;
            Ok(GcPlan {
                manifests,
                links,
                blobs,
            })
        })
    }

    /// Delete the manifests the plan found unreachable that still are: no tag
    /// points at one, no manifest of its repository references it, it is older
    /// than `cutoff`, and either its subject is gone from the repository or (it
    /// has no subject and) `keep_untagged` is false. One transaction for the
    /// batch (each re-checked in it); which were deleted, in order.
    pub fn gc_delete_manifests(
        &self,
        batch: &[(String, Digest)],
        cutoff: i64,
        keep_untagged: bool,
    ) -> Result<Vec<bool>> {
        self.write(|tx| -> Result<Vec<bool>> {
            let mut out = Vec::with_capacity(batch.len());
            for (repo, digest) in batch {
                let Some(id) = repo_id(tx, repo)? else {
                    out.push(false);
                    continue;
                };
                let d = digest.to_string();
                let still_dead = tx
                    .prepare_cached(
                        "SELECT 1 FROM manifests m WHERE m.repo_id = ?1 AND m.digest = ?2
                           AND m.pushed_at < ?3
                           AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = ?1 AND t.digest = ?2)
                           AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                                           WHERE r.repo_id = ?1 AND r.target_digest = ?2)
                           AND CASE WHEN m.subject IS NULL THEN NOT ?4
                               ELSE NOT EXISTS (SELECT 1 FROM manifests s
                                                WHERE s.repo_id = ?1 AND s.digest = m.subject) END",
                    )?
                    .exists(params![id, d, cutoff, keep_untagged])?;
                out.push(still_dead && delete_manifest_tx(tx, id, &d)?);
            }
            Ok(out)
        })
    }

    /// Remove the blob links the plan found unreferenced that still are (no
    /// manifest of the repository references one, linked before `cutoff`). One
    /// transaction for the batch; which were removed, in order.
    pub fn gc_unlink_blobs(&self, batch: &[(String, Digest)], cutoff: i64) -> Result<Vec<bool>> {
        self.write(|tx| -> Result<Vec<bool>> {
            let mut q = tx.prepare_cached(
                "DELETE FROM repo_blobs
                 WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2
                   AND linked_at < ?3
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                                   WHERE r.repo_id = repo_blobs.repo_id AND r.target_digest = ?2)",
            )?;
            let mut out = Vec::with_capacity(batch.len());
            for (repo, digest) in batch {
                out.push(q.execute(params![repo, digest.to_string(), cutoff])? > 0);
            }
            Ok(out)
        })
    }

    /// Forget a blob no repository links any more, if that is still so and it was
    /// first stored before `cutoff`. True if forgotten: the caller then removes
    /// the file (holding the lock that orders this against a commit of the same
    /// digest).
    pub fn gc_forget_blob(&self, digest: &Digest, cutoff: i64) -> Result<bool> {
        self.write(|tx| -> Result<bool> {
            let n = tx.execute(
                "DELETE FROM blobs WHERE digest = ?1 AND created_at < ?2
                   AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)",
                params![digest.to_string(), cutoff],
            )?;
            Ok(n > 0)
        })
    }

    /// Remove upload sessions (rows only) whose ids are given; returns how many.
    pub fn forget_uploads(&self, ids: &[String]) -> Result<usize> {
        self.write(|tx| -> Result<usize> {
            let mut n = 0;
            let mut q = tx.prepare_cached("DELETE FROM uploads WHERE id = ?1")?;
            for id in ids {
                n += q.execute([id])?;
            }
            Ok(n)
        })
    }

    /// Every tag, with what retention needs to judge it.
    pub fn all_tags(&self) -> Result<Vec<TagInfo>> {
        self.read_apart(|c| {
            let sql = format!(
                "SELECT r.name, t.name, t.digest, t.updated_at, m.last_pulled_at,
                        EXISTS (SELECT 1 FROM manifests s WHERE s.repo_id = t.repo_id
                                AND s.subject = t.digest AND s.artifact_type IN ({SIGNATURE_TYPES}))
                        OR EXISTS (SELECT 1 FROM tags st WHERE st.repo_id = t.repo_id
                                AND st.name = replace(t.digest, ':', '-') || '.sig')
                 FROM tags t JOIN repositories r ON r.id = t.repo_id
                 LEFT JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
                 ORDER BY r.name, t.updated_at DESC, t.name"
            );
            let mut q = c.prepare(&sql)?;
            let rows = q.query_map([], |r| {
                Ok(TagInfo {
                    repo: r.get(0)?,
                    tag: r.get(1)?,
                    digest: parse_digest(r.get(2)?)?,
                    updated_at: r.get(3)?,
                    last_pulled_at: r.get(4)?,
                    signed: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Delete tag `tag` of `repo` only if it still points at `digest` and was
    /// last pointed at `updated_at` (retention must not delete a tag pushed again
    /// since it was judged). True if deleted.
    pub fn delete_tag_if(
        &self,
        repo: &str,
        tag: &str,
        digest: &Digest,
        updated_at: i64,
    ) -> Result<bool> {
        self.write(|tx| -> Result<bool> {
            let n = tx.execute(
                "DELETE FROM tags WHERE name = ?2 AND digest = ?3 AND updated_at = ?4
                 AND repo_id = (SELECT id FROM repositories WHERE name = ?1)",
                params![repo, tag, digest.to_string(), updated_at],
            )?;
            Ok(n > 0)
        })
    }

    /// Record pulls: for each `(repository, manifest digest)`, last pulled at
    /// `when` (Unix seconds). One transaction for the whole batch.
    pub fn record_pulls(&self, pulls: &[(String, Digest)], when: i64) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        self.write(|tx| -> Result<()> {
            let mut q = tx.prepare_cached(
                "UPDATE manifests SET last_pulled_at = max(COALESCE(last_pulled_at, 0), ?3)
                 WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2",
            )?;
            for (repo, digest) in pulls {
                q.execute(params![repo, digest.to_string(), when])?;
            }
            Ok(())
        })
    }

    /// Usage of every repository that holds anything, by name.
    pub fn usage(&self) -> Result<Vec<RepoUsage>> {
        self.read_apart(|c| {
            let mut q = c.prepare(
                "SELECT r.name,
                    (SELECT COUNT(*) FROM repo_blobs rb WHERE rb.repo_id = r.id),
                    (SELECT COALESCE(SUM(b.size), 0) FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest
                     WHERE rb.repo_id = r.id),
                    (SELECT COUNT(*) FROM manifests m WHERE m.repo_id = r.id),
                    (SELECT COUNT(*) FROM tags t WHERE t.repo_id = r.id)
                 FROM repositories r ORDER BY r.name",
            )?;
            let rows = q.query_map([], |r| {
                Ok(RepoUsage {
                    repository: r.get(0)?,
                    blobs: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                    manifests: r.get::<_, i64>(3)? as u64,
                    tags: r.get::<_, i64>(4)? as u64,
                })
            })?;
            let all = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(all
                .into_iter()
                .filter(|u| u.blobs + u.manifests + u.tags > 0)
                .collect())
        })
    }

    /// Unique blobs stored (linked by any repository) and their total bytes.
    pub fn stored_blobs(&self) -> Result<(u64, u64)> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
        })
    }

    /// Up to `n` blobs after `after` in digest order, with sizes (for scrub).
    pub fn blobs_page(&self, after: &str, n: u32) -> Result<Vec<(Digest, u64)>> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT digest, size FROM blobs WHERE digest > ?1 ORDER BY digest LIMIT ?2",
            )?;
            let rows = q.query_map(params![after, n], |r| {
                Ok((parse_digest(r.get(0)?)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect()
        })
    }

    /// Up to `n` stored manifest contents after `after` in digest order (for scrub).
    pub fn manifest_contents_page(&self, after: &str, n: u32) -> Result<Vec<(Digest, Vec<u8>)>> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT digest, content FROM manifest_content WHERE digest > ?1
                 ORDER BY digest LIMIT ?2",
            )?;
            let rows = q.query_map(params![after, n], |r| {
                Ok((parse_digest(r.get(0)?)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.collect()
        })
    }

    /// Quarantine blob `digest`: unlink it from every repository and forget it
    /// (so it is neither served nor counted as present, and a client pushes it
    /// again), recording why. Returns the repositories that linked it.
    pub fn quarantine_blob(
        &self,
        digest: &Digest,
        reason: &str,
        moved_to: Option<&str>,
    ) -> Result<Vec<String>> {
        self.write(|tx| -> Result<Vec<String>> {
            let d = digest.to_string();
            let repos: Vec<String> = tx
                .prepare(
                    "SELECT r.name FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id
                     WHERE rb.digest = ?1 ORDER BY r.name",
                )?
                .query_map([&d], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            tx.execute("DELETE FROM repo_blobs WHERE digest = ?1", [&d])?;
            tx.execute("DELETE FROM blobs WHERE digest = ?1", [&d])?;
            record_quarantine(tx, "blob", &d, &repos, reason, moved_to)?;
            Ok(repos)
        })
    }

    /// Quarantine manifest `digest`: delete it (and its tags) from every
    /// repository, keeping its bytes in the quarantine record. Returns the
    /// repositories that held it.
    pub fn quarantine_manifest(&self, digest: &Digest, reason: &str) -> Result<Vec<String>> {
        self.write(|tx| -> Result<Vec<String>> {
            let d = digest.to_string();
            let held: Vec<(i64, String)> = tx
                .prepare(
                    "SELECT r.id, r.name FROM manifests m JOIN repositories r ON r.id = m.repo_id
                     WHERE m.digest = ?1 ORDER BY r.name",
                )?
                .query_map([&d], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (id, _) in &held {
                delete_manifest_tx(tx, *id, &d)?;
            }
            let repos: Vec<String> = held.into_iter().map(|(_, n)| n).collect();
            record_quarantine(tx, "manifest", &d, &repos, reason, None)?;
            Ok(repos)
        })
    }

    /// Every quarantine record, oldest first.
    pub fn quarantined(&self) -> Result<Vec<QuarantineRecord>> {
        self.read(|c| {
            let mut q = c.prepare(
                "SELECT kind, digest, repositories, reason, moved_to, found_at FROM quarantine ORDER BY id",
            )?;
            let rows = q.query_map([], |r| {
                let repos: String = r.get(2)?;
                Ok(QuarantineRecord {
                    kind: r.get(0)?,
                    digest: r.get(1)?,
                    repositories: serde_json::from_str(&repos).unwrap_or_default(),
                    reason: r.get(3)?,
                    moved_to: r.get(4)?,
                    found_at: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Links that point nowhere: tags whose manifest is not in the repository,
    /// and manifests referencing blobs or manifests the repository does not hold.
    pub fn inconsistencies(&self) -> Result<Vec<Inconsistency>> {
        self.read_apart(|c| {
            let mut out = Vec::new();
            let mut q = c.prepare(
                "SELECT r.name, t.name, t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id
                 WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = t.repo_id AND m.digest = t.digest)
                 ORDER BY r.name, t.name",
            )?;
            for row in q.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })? {
                let (repository, tag, missing) = row?;
                out.push(Inconsistency {
                    repository,
                    from: format!("tag {tag}"),
                    missing,
                    problem: "tag points at a manifest the repository does not hold".into(),
                });
            }
            let mut q = c.prepare(
                "SELECT r.name, x.manifest_digest, x.target_digest FROM manifest_refs x
                 JOIN repositories r ON r.id = x.repo_id
                 WHERE NOT EXISTS (SELECT 1 FROM repo_blobs b WHERE b.repo_id = x.repo_id AND b.digest = x.target_digest)
                   AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = x.repo_id AND m.digest = x.target_digest)
                 ORDER BY r.name, x.manifest_digest, x.target_digest",
            )?;
            for row in q.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })? {
                let (repository, manifest, missing) = row?;
                out.push(Inconsistency {
                    repository,
                    from: format!("manifest {manifest}"),
                    missing,
                    problem: "manifest references a blob or manifest the repository does not hold"
                        .into(),
                });
            }
            Ok(out)
        })
    }
}

fn record_quarantine(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    digest: &str,
    repos: &[String],
    reason: &str,
    moved_to: Option<&str>,
) -> rusqlite::Result<()> {
    let repos = serde_json::to_string(repos).unwrap_or_else(|_| "[]".into());
    tx.execute(
        "INSERT INTO quarantine (kind, digest, repositories, reason, moved_to, found_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![kind, digest, repos, reason, moved_to, now_secs()],
    )?;
    Ok(())
}
