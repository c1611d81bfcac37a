//! An in-memory cache of manifest reads: tag → digest and (repository, digest) →
//! manifest bytes, so a manifest GET or HEAD that hits never waits on SQLite or
//! the blocking pool.
//!
//! Coherence: only this process writes the data directory (it holds the directory
//! lock), and every change to tags or manifests goes through [`crate::Registry`],
//! which calls [`ManifestCache::invalidate`] after the change has committed and
//! before it answers. A reader that missed takes a [`Ticket`] *before* reading the
//! database and may fill the cache only if no invalidation happened since: a read
//! that raced with a change can then never leave a stale entry behind (the check
//! and the invalidation take the same lock, so one of them sees the other).

use std::num::NonZeroUsize;
use std::sync::Mutex;

use berth_oci::Digest;
use berth_storage::StoredManifest;
use lru::LruCache;

/// Proof of the cache generation seen before a database read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

/// What a change to the database invalidates.
#[derive(Debug)]
pub(crate) enum Change<'a> {
    /// These tags of `repo` were set or removed.
    Tags { repo: &'a str, tags: &'a [String] },
    /// A manifest was removed from `repo` (with whichever tags pointed at it).
    ManifestDeleted { repo: &'a str, digest: &'a Digest },
}

#[derive(Debug)]
struct Inner {
    generation: u64,
    tags: LruCache<(String, String), Digest>,
    manifests: LruCache<(String, Digest), StoredManifest>,
    manifest_bytes: usize,
    max_bytes: usize,
}

/// The cache; cheap to share behind the registry.
#[derive(Debug)]
pub(crate) struct ManifestCache {
    inner: Mutex<Inner>,
}

/// Most tags remembered.
const MAX_TAGS: usize = 65_536;
/// Most manifests remembered (their bytes are bounded separately).
const MAX_MANIFESTS: usize = 16_384;

impl ManifestCache {
    /// A cache holding at most `max_bytes` of manifest content (0 disables it).
    pub(crate) fn new(max_bytes: usize) -> Self {
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        ManifestCache {
            inner: Mutex::new(Inner {
                generation: 0,
                tags: LruCache::new(cap(MAX_TAGS)),
                manifests: LruCache::new(cap(MAX_MANIFESTS)),
                manifest_bytes: 0,
                max_bytes,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The cache holds no invariant a panic could break halfway that matters
        // beyond a stale byte count; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a ticket before reading the database on a miss.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    /// The digest `repo:tag` points at, if cached.
    pub(crate) fn tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        let mut inner = self.lock();
        if inner.max_bytes == 0 {
            return None;
        }
        inner.tags.get(&(repo.to_owned(), tag.to_owned())).cloned()
    }

    /// Remember `repo:tag` → `digest`, read from the database under `ticket`.
    pub(crate) fn put_tag(&self, ticket: Ticket, repo: &str, tag: &str, digest: &Digest) {
        let mut inner = self.lock();
        if inner.max_bytes == 0 || inner.generation != ticket.0 {
            return;
        }
        inner
            .tags
            .put((repo.to_owned(), tag.to_owned()), digest.clone());
    }

    /// The manifest `digest` of `repo`, if cached.
    pub(crate) fn manifest(&self, repo: &str, digest: &Digest) -> Option<StoredManifest> {
        let mut inner = self.lock();
        if inner.max_bytes == 0 {
            return None;
        }
        inner
            .manifests
            .get(&(repo.to_owned(), digest.clone()))
            .cloned()
    }

    /// Remember a manifest (with its content) read under `ticket`.
    pub(crate) fn put_manifest(&self, ticket: Ticket, repo: &str, m: &StoredManifest) {
        let mut inner = self.lock();
        let len = m.content.len();
        if inner.generation != ticket.0 || len == 0 || len > inner.max_bytes / 16 {
            return;
        }
        while inner.manifest_bytes + len > inner.max_bytes {
            match inner.manifests.pop_lru() {
                Some((_, old)) => inner.manifest_bytes -= old.content.len(),
                None => break,
            }
        }
        if let Some((_, old)) = inner
            .manifests
            .push((repo.to_owned(), m.digest.clone()), m.clone())
        {
            inner.manifest_bytes -= old.content.len();
        }
        inner.manifest_bytes += len;
    }

    /// Forget what `change` makes stale and start a new generation. Call after
    /// the change has committed and before answering its request.
    pub(crate) fn invalidate(&self, change: Change<'_>) {
        let mut inner = self.lock();
        inner.generation += 1;
        match change {
            Change::Tags { repo, tags } => {
                for t in tags {
                    inner.tags.pop(&(repo.to_owned(), t.clone()));
                }
            }
            Change::ManifestDeleted { repo, digest } => {
                if let Some(old) = inner.manifests.pop(&(repo.to_owned(), digest.clone())) {
                    inner.manifest_bytes -= old.content.len();
                }
                // The tags that pointed at it went with it.
                let stale: Vec<(String, String)> = inner
                    .tags
                    .iter()
                    .filter(|((r, _), d)| r == repo && *d == digest)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in stale {
                    inner.tags.pop(&k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(content: &'static [u8]) -> StoredManifest {
        StoredManifest {
            digest: Digest::sha256_of(content),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: content.len() as u64,
            content: bytes::Bytes::from_static(content),
        }
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_cached() {
        let c = ManifestCache::new(1 << 20);
        let d = Digest::sha256_of(b"old");
        let ticket = c.ticket();
        // A tag change commits while the reader is in the database.
        c.invalidate(Change::Tags {
            repo: "r",
            tags: &["t".into()],
        });
        c.put_tag(ticket, "r", "t", &d);
        assert_eq!(c.tag("r", "t"), None);
        // A fresh read after the change is cached.
        c.put_tag(c.ticket(), "r", "t", &d);
        assert_eq!(c.tag("r", "t"), Some(d));
    }

    #[test]
    fn tag_changes_and_deletes_invalidate() {
        let c = ManifestCache::new(1 << 20);
        let m = manifest(b"{\"a\":1}");
        c.put_tag(c.ticket(), "r", "t", &m.digest);
        c.put_tag(c.ticket(), "r", "u", &m.digest);
        c.put_tag(c.ticket(), "other", "t", &m.digest);
        c.put_manifest(c.ticket(), "r", &m);
        c.invalidate(Change::Tags {
            repo: "r",
            tags: &["t".into()],
        });
        assert_eq!(c.tag("r", "t"), None);
        assert!(c.tag("r", "u").is_some());
        c.invalidate(Change::ManifestDeleted {
            repo: "r",
            digest: &m.digest,
        });
        assert_eq!(c.tag("r", "u"), None);
        assert!(c.manifest("r", &m.digest).is_none());
        // Another repository's tag is untouched.
        assert!(c.tag("other", "t").is_some());
    }

    #[test]
    fn manifest_bytes_are_bounded() {
        let c = ManifestCache::new(16 * 64);
        let ms: Vec<StoredManifest> = (0..40u8)
            .map(|i| {
                let v: &'static [u8] = Box::leak(vec![i; 60].into_boxed_slice());
                manifest(v)
            })
            .collect();
        for m in &ms {
            c.put_manifest(c.ticket(), "r", m);
        }
        let inner = c.lock();
        assert!(inner.manifest_bytes <= 16 * 64);
        assert_eq!(inner.manifest_bytes, inner.manifests.len() * 60);
        drop(inner);
        // The most recent ones survive.
        assert!(c.manifest("r", &ms[39].digest).is_some());
        assert!(c.manifest("r", &ms[0].digest).is_none());
    }

    #[test]
    fn disabled_cache_holds_nothing() {
        let c = ManifestCache::new(0);
        let m = manifest(b"{}");
        c.put_tag(c.ticket(), "r", "t", &m.digest);
        c.put_manifest(c.ticket(), "r", &m);
        assert_eq!(c.tag("r", "t"), None);
        assert!(c.manifest("r", &m.digest).is_none());
    }
}
