//! Small in-memory bookkeeping the lifecycle needs from the request path:
//!
//! * [`BlobLocks`]: orders a blob's commit (rename + link) against garbage
//!   collection forgetting and removing the same digest, and scrub moving it aside.
//! * [`RecentBlobs`]: blobs a client asked about (`HEAD`) lately. A client that
//!   finds a blob present skips uploading it and pushes a manifest referencing it
//!   a moment later; GC treats such blobs as live for the grace period. Noting a
//!   blob and GC's check-then-unlink of it are ordered by a striped fence, so a
//!   `HEAD` never finds a link that a sweep already judged unseen and is removing.
//! * [`PullLog`]: manifests pulled since the last flush, written to the database
//!   in one transaction every few seconds (retention's "not pulled for").

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_oci::Digest;

const STRIPES: usize = 64;

fn stripe_of(d: &Digest) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    d.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

/// Striped async locks keyed by digest.
#[derive(Debug)]
pub(crate) struct BlobLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl BlobLocks {
    pub(crate) fn new() -> Self {
        BlobLocks {
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// Hold the lock of `digest`'s stripe.
    pub(crate) async fn lock(&self, digest: &Digest) -> tokio::sync::MutexGuard<'_, ()> {
        self.stripes[stripe_of(digest)].lock().await
    }
}

/// Most entries [`RecentBlobs`] holds before it drops those older than the window.
const RECENT_PRUNE_AT: usize = 100_000;

/// Blobs asked about recently, by digest.
///
/// A `HEAD` notes the blob ([`RecentBlobs::touch`]) *before* it reads the link,
/// under the read side of the digest's fence; a GC sweep holds the write side
/// ([`RecentBlobs::fence_all`]) from its [`RecentBlobs::seen_within`] check until the
/// unlink has committed. So either the note comes first and the sweep keeps the
/// link, or the unlink commits first and the `HEAD` finds no link (the client then
/// uploads the blob). Without the fence a `HEAD` landing between the check and
/// the commit reported a blob present that was gone a moment later, and the
/// manifest pushed next was refused with `MANIFEST_BLOB_UNKNOWN`.
#[derive(Debug)]
pub(crate) struct RecentBlobs {
    seen: Mutex<HashMap<Digest, Instant>>,
    fences: Vec<tokio::sync::RwLock<()>>,
}

impl Default for RecentBlobs {
    fn default() -> Self {
        RecentBlobs {
            seen: Mutex::default(),
            fences: (0..STRIPES).map(|_| tokio::sync::RwLock::new(())).collect(),
        }
    }
}

impl RecentBlobs {
    /// Note that a client asked about `digest` now; `window` bounds what is kept.
    /// Call it before reading whether the blob is there (see the type's doc).
    pub(crate) async fn touch(&self, digest: &Digest, window: Duration) {
        let _fence = self.fences[stripe_of(digest)].read().await;
        self.note(digest, window);
    }

    /// Hold the fences of `digests` against [`RecentBlobs::touch`]: a sweep holds
    /// them from checking [`RecentBlobs::seen_within`] until its deletes have
    /// committed. Stripes are taken in ascending order, each once, so two holders
    /// never wait on each other (`touch` takes a single stripe).
    pub(crate) async fn fence_all<'a>(
        &self,
        digests: impl Iterator<Item = &'a Digest>,
    ) -> Vec<tokio::sync::RwLockWriteGuard<'_, ()>> {
        let mut stripes: Vec<usize> = digests.map(stripe_of).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.fences[s].write().await);
        }
        guards
    }

    fn note(&self, digest: &Digest, window: Duration) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let now = Instant::now();
        if let Some(t) = seen.get_mut(digest) {
            *t = now;
            return;
        }
        if seen.len() >= RECENT_PRUNE_AT {
            seen.retain(|_, t| now.duration_since(*t) < window);
        }
        seen.insert(digest.clone(), now);
    }

    /// Whether `digest` was asked about within `window`.
    pub(crate) fn seen_within(&self, digest: &Digest, window: Duration) -> bool {
        self.seen
            .lock()
            .map(|s| s.get(digest).is_some_and(|t| t.elapsed() < window))
            // A poisoned map proves nothing: count the blob as live.
            .unwrap_or(true)
    }

    /// Forget entries older than `window`.
    pub(crate) fn prune(&self, window: Duration) {
        if let Ok(mut s) = self.seen.lock() {
            s.retain(|_, t| t.elapsed() < window);
        }
    }
}

/// Manifests pulled since the last flush: repository → digests. Sharded so
/// concurrent pulls rarely meet on one lock.
#[derive(Debug)]
pub(crate) struct PullLog {
    shards: Vec<Mutex<HashMap<String, HashSet<Digest>>>>,
}

impl PullLog {
    pub(crate) fn new() -> Self {
        PullLog {
            shards: (0..16).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Note a pull of `digest` from `repo`. Costs a hash lookup when the pair
    /// is already noted (the common case under load).
    pub(crate) fn note(&self, repo: &str, digest: &Digest) {
        let Ok(mut shard) = self.shards[stripe_of(digest) % self.shards.len()].lock() else {
            return;
        };
        match shard.get_mut(repo) {
            Some(set) => {
                if !set.contains(digest) {
                    set.insert(digest.clone());
                }
            }
            None => {
                shard.insert(repo.to_owned(), HashSet::from([digest.clone()]));
            }
        }
    }

    /// Take everything noted so far.
    pub(crate) fn drain(&self) -> Vec<(String, Digest)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                for (repo, set) in s.drain() {
                    out.extend(set.into_iter().map(|d| (repo.clone(), d)));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_log_keeps_each_pair_once() {
        let log = PullLog::new();
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        for _ in 0..3 {
            log.note("r", &a);
        }
        log.note("r", &b);
        log.note("s", &a);
        let mut got = log.drain();
        got.sort_by(|x, y| (&x.0, x.1.to_string()).cmp(&(&y.0, y.1.to_string())));
        assert_eq!(got.len(), 3);
        assert!(log.drain().is_empty());
    }

    #[tokio::test]
    async fn recent_blobs_expire() {
        let r = RecentBlobs::default();
        let a = Digest::sha256_of(b"a");
        r.touch(&a, Duration::from_secs(60)).await;
        assert!(r.seen_within(&a, Duration::from_secs(60)));
        assert!(!r.seen_within(&a, Duration::ZERO));
        r.prune(Duration::ZERO);
        assert!(!r.seen_within(&a, Duration::from_secs(60)));
    }
}
