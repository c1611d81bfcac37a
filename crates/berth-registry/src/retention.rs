//! Retention: deleting tags by rule. Only tags are deleted here; the manifests
//! and blobs they leave unreachable go at the next garbage collection.
//!
//! For each repository the first `[[retention.rules]]` entry whose patterns match
//! applies. Its tags are ranked newest first (by the time the tag was last
//! pointed). A tag is deleted when all of these hold:
//! * it is not among the `keep_last` newest;
//! * its name does not match `keep_tags`;
//! * `older_than` is unset, or it was pointed longer ago than that;
//! * `not_pulled_for` is unset, or its manifest was last pulled (never pulled:
//!   pushed) longer ago than that;
//! * `keep_signed` is off, or its manifest has no signature;
//! * no immutability rule covers it.
//!
//! Tags that name another manifest's attachment the cosign way
//! (`sha256-<hex>.sig`, `.att`, `.sbom`) are not ranked: they are deleted when
//! the manifest they are attached to is no longer in the repository.

use serde::Serialize;

use crate::Result;
use crate::cache::Change;
use crate::registry::Registry;

/// What a retention pass did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Tags deleted.
    pub deleted: Vec<TagDecision>,
    /// Tags a rule would delete but that are kept, with the reason.
    pub kept: Vec<TagDecision>,
}

/// One tag retention judged.
#[derive(Debug, Clone, Serialize)]
pub struct TagDecision {
    /// Repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// The manifest it pointed at.
    pub digest: String,
    /// The rule that judged it.
    pub rule: String,
    /// Why it was deleted or kept.
    pub reason: String,
}

/// The manifest digest a cosign-style attachment tag refers to, if `tag` is one.
fn attached_to(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, kind) = rest.split_once('.')?;
    (matches!(kind, "sig" | "att" | "sbom")
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    .then(|| format!("sha256:{hex}"))
}

impl Registry {
    /// Apply the retention rules now; `dry_run` reports without deleting.
    pub async fn apply_retention(&self, dry_run: bool) -> Result<RetentionReport> {
        let _one = self.maintenance.lock().await;
        // Pulls noted but not yet written count too.
        self.flush_pulls().await?;
        let tags = self.db(|m| m.all_tags()).await?;
        let now = berth_storage::now_secs();
        let mut report = RetentionReport {
            dry_run,
            ..RetentionReport::default()
        };
        let mut i = 0;
        while i < tags.len() {
            let repo = tags[i].repo.clone();
            let end = tags[i..]
                .iter()
                .position(|t| t.repo != repo)
                .map_or(tags.len(), |n| i + n);
            let group = &tags[i..end];
            i = end;
            let Some(rule) = self.lifecycle.retention_rule(&repo) else {
                continue;
            };
            let present: std::collections::HashSet<String> =
                group.iter().map(|t| t.digest.to_string()).collect();
            let mut rank = 0usize;
            for t in group {
                let decide = |reason: String| TagDecision {
                    repository: t.repo.clone(),
                    tag: t.tag.clone(),
                    digest: t.digest.to_string(),
                    rule: rule.name.clone(),
                    reason,
                };
                let verdict: Option<String> = if let Some(subject) = attached_to(&t.tag) {
                    let (r, s) = (repo.clone(), subject.clone());
                    let held = match s.parse() {
                        Ok(d) => {
                            present.contains(&subject)
                                || self.db(move |m| m.manifest(&r, &d, false)).await?.is_some()
                        }
                        Err(_) => true,
                    };
                    (!held).then(|| format!("attached to {subject}, which is gone"))
                } else {
                    rank += 1;
                    let age = now - t.updated_at;
                    let idle = now - t.last_pulled_at.unwrap_or(t.updated_at);
                    let kept = rule.keep_last.is_some_and(|n| rank <= n)
                        || rule.keeps_by_name(&t.tag)
                        || rule.older_than.is_some_and(|d| age < d.as_secs() as i64)
                        || rule
                            .not_pulled_for
                            .is_some_and(|d| idle < d.as_secs() as i64);
                    if kept {
                        None
                    } else {
                        let mut why = Vec::new();
                        if let Some(n) = rule.keep_last {
                            why.push(format!("not among the {n} newest"));
                        }
                        if rule.older_than.is_some() {
                            why.push(format!("pushed {age}s ago"));
                        }
                        if rule.not_pulled_for.is_some() {
                            why.push(format!("not pulled for {idle}s"));
                        }
                        Some(why.join(", "))
                    }
                };
                let Some(reason) = verdict else { continue };
                if rule.keep_signed && t.signed {
                    report.kept.push(decide(format!("{reason}; kept: signed")));
                    continue;
                }
                if let Some(imm) = self.lifecycle.immutable_rule(&repo, &t.tag) {
                    report
                        .kept
                        .push(decide(format!("{reason}; kept: immutable ({imm})")));
                    continue;
                }
                let deleted = dry_run || {
                    let (r, tag, d, at) = (
                        t.repo.clone(),
                        t.tag.clone(),
                        t.digest.clone(),
                        t.updated_at,
                    );
                    let cache = self.cache.clone();
                    self.db(move |m| {
                        let deleted = m.delete_tag_if(&r, &tag, &d, at)?;
                        if deleted {
                            cache.invalidate(Change::Tags {
                                repo: &r,
                                tags: std::slice::from_ref(&tag),
                            });
                        }
                        Ok(deleted)
                    })
                    .await?
                };
                if deleted {
                    report.deleted.push(decide(reason));
                } else {
                    report
                        .kept
                        .push(decide(format!("{reason}; kept: pushed again meanwhile")));
                }
            }
        }
        tracing::info!(
            dry_run,
            deleted = report.deleted.len(),
            kept = report.kept.len(),
            "retention"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::attached_to;

    #[test]
    fn cosign_attachment_tags() {
        let hex = "a".repeat(64);
        assert_eq!(
            attached_to(&format!("sha256-{hex}.sig")),
            Some(format!("sha256:{hex}"))
        );
        assert!(attached_to(&format!("sha256-{hex}.att")).is_some());
        assert!(attached_to(&format!("sha256-{hex}.txt")).is_none());
        assert!(attached_to("sha256-abc.sig").is_none());
        assert!(attached_to("v1.0").is_none());
    }
}
