//! The [`Registry`]: every distribution-spec operation as a method.

use std::path::Path;
use std::sync::Arc;

use berth_oci::{Digest, Digester, Reference, RepoName, Tag, manifest, media_type};
use berth_storage::{
    BlobFile, BlobStore, Deleted, DirLock, Linked, ManifestRecord, Metadata, Mounted,
    PutManifestError, StorageError, StoredManifest, UploadId,
};
use bytes::Bytes;
use futures_util::Stream;

use crate::cache::{Change, ManifestCache};
use crate::policy::Lifecycle;
use crate::tracking::{BlobLocks, PullLog, RecentBlobs};
use crate::uploads::{self, Destination, Hash, UploadTable, copy_into};
use crate::{RegistryError, Result};

/// Limits the registry enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest accepted, in bytes (spec: at least 4 MiB SHOULD be supported).
    pub max_manifest_bytes: u64,
    /// Memory for cached manifest bytes (0 turns the manifest cache off).
    pub manifest_cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 4 * 1024 * 1024,
            manifest_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The outcome of a manifest push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPut {
    /// Digest of the stored bytes.
    pub digest: Digest,
    /// The `subject` the manifest names, if any (for the `OCI-Subject` header).
    pub subject: Option<Digest>,
    /// The manifest's media type, as stored.
    pub media_type: String,
    /// Size of the manifest in bytes.
    pub size: u64,
    /// For an image manifest (OCI or Docker v2): the config's size plus every
    /// layer's, as declared in its descriptors. `None` for indexes and others.
    pub image_bytes: Option<u64>,
    /// Each distinct tag pointed at the manifest, with what it pointed at before.
    pub tags: Vec<TagChange>,
}

/// One tag a manifest push pointed, and where it pointed before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagChange {
    /// The tag.
    pub tag: String,
    /// The manifest it pointed at before the push; `None` if it is new.
    pub previous: Option<Digest>,
}

impl TagChange {
    /// Whether the push created or moved this tag (rather than re-pointing it at
    /// the manifest it already named).
    pub fn changed(&self, now: &Digest) -> bool {
        self.previous.as_ref() != Some(now)
    }
}

/// The registry: a blob store and a metadata store, plus in-flight upload state.
#[derive(Debug)]
pub struct Registry {
    pub(crate) blobs: BlobStore,
    pub(crate) meta: Arc<Metadata>,
    pub(crate) uploads: UploadTable,
    pub(crate) cache: Arc<ManifestCache>,
    limits: Limits,
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// Orders a blob's commit against GC and scrub removing the same digest.
    pub(crate) blob_locks: BlobLocks,
    /// Blobs clients asked about lately (live for GC during the grace period).
    pub(crate) recent: RecentBlobs,
    /// Manifests pulled since the last flush.
    pub(crate) pulls: PullLog,
    /// One garbage collection, retention or scrub pass at a time.
    pub(crate) maintenance: tokio::sync::Mutex<()>,
    _lock: DirLock,
}

impl Registry {
    /// Open the registry stored in `data_dir`, creating it if empty, and reconcile
    /// upload files with upload sessions left by an earlier run.
    pub async fn open(data_dir: &Path, limits: Limits) -> Result<Self> {
        Self::open_with(data_dir, limits, Lifecycle::default()).await
    }

    /// [`Registry::open`] with a lifecycle policy (immutable tags, quotas, GC,
    /// retention and scrub settings).
    pub async fn open_with(data_dir: &Path, limits: Limits, lifecycle: Lifecycle) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| StorageError::Io {
            op: "create",
            path: data_dir.to_owned(),
            source: e,
        })?;
        let lock = DirLock::acquire(data_dir)?;
        let blobs = BlobStore::open(data_dir)?;
        let meta = Metadata::open(&data_dir.join("meta.db"))?;
        let registry = Registry {
            blobs,
            meta: Arc::new(meta),
            uploads: UploadTable::default(),
            cache: Arc::new(ManifestCache::new(
                usize::try_from(limits.manifest_cache_bytes).unwrap_or(usize::MAX),
            )),
            limits,
            lifecycle: Arc::new(lifecycle),
            blob_locks: BlobLocks::new(),
            recent: RecentBlobs::default(),
            pulls: PullLog::new(),
            maintenance: tokio::sync::Mutex::new(()),
            _lock: lock,
        };
        registry.reconcile_uploads().await?;
        Ok(registry)
    }

    /// Whether uploads write whole blocks with direct I/O where the filesystem
    /// allows it (on by default; see `berth_storage::UploadAppender`).
    pub fn with_direct_io(mut self, on: bool) -> Self {
        self.blobs = self.blobs.with_direct_io(on);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the registry can serve: the metadata database answers a query and
    /// the blob store's directories are there (`/readyz`).
    pub async fn ready(&self) -> Result<()> {
        self.db(|m| m.ping()).await?;
        self.blobs.check().await?;
        Ok(())
    }

    /// The lifecycle policy in force.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Remove upload files with no session (monolithic uploads cut short by a crash)
    /// and sessions with no data file (a crash between a commit's rename and its
    /// metadata update): those clients get 404 and start the upload again.
    async fn reconcile_uploads(&self) -> Result<()> {
        let sessions: std::collections::HashSet<String> =
            self.meta.upload_ids()?.into_iter().collect();
        for s in &sessions {
            let Ok(id) = s.parse::<UploadId>() else {
                continue;
            };
            if self.blobs.upload_len(id).await?.is_none() {
                self.meta.delete_upload(id)?;
                self.blobs.delete_upload(id).await?;
                tracing::info!(upload = %s, "removed upload session without data");
            }
        }
        for id in self.blobs.upload_ids()? {
            if !sessions.contains(&id.to_string()) {
                self.blobs.delete_upload(id).await?;
                tracing::info!(upload = %id, "removed upload data without a session");
            }
        }
        Ok(())
    }

    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Metadata) -> std::result::Result<T, StorageError> + Send + 'static,
    ) -> Result<T> {
        let meta = self.meta.clone();
        Ok(tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(RegistryError::task)??)
    }

    // ---- blobs ------------------------------------------------------------------

    /// Size of a blob linked in `repo` (`HEAD`). A client that finds a blob here
    /// may skip uploading it and reference it from a manifest soon after, so the
    /// blob counts as live for garbage collection during the grace period. It is
    /// noted before the link is read: a sweep removing the link either sees the
    /// note or has committed before the read (see [`RecentBlobs`]).
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.recent.touch(digest, self.lifecycle.gc.grace).await;
        self.linked_size(repo, digest).await
    }

    async fn linked_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let (r, d) = (repo.to_string(), digest.clone());
        self.db(move |m| m.blob_in_repo(&r, &d))
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    /// Open a blob linked in `repo` for streaming.
    pub async fn open_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobFile> {
        self.linked_size(repo, digest).await?;
        match self.blobs.open_blob(digest).await? {
            Some(f) => Ok(f),
            None => {
                tracing::error!(%digest, "blob linked in metadata is missing from disk");
                Err(RegistryError::BlobUnknown(digest.clone()))
            }
        }
    }

    /// Unlink a blob from `repo` (the file stays until garbage collection).
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let (r, d) = (repo.to_string(), digest.clone());
        if self.db(move |m| m.unlink_blob(&r, &d)).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }

    /// Cross-repository mount: link `digest` from `from` into `repo`. Returns false
    /// (and changes nothing) when `from` does not hold it.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        if self.blobs.stat(digest).await?.is_none() {
            return Ok(false);
        }
        let (r, f, d) = (repo.to_string(), from.to_string(), digest.clone());
        let quota = self.lifecycle.quota(repo.as_str());
        match self.db(move |m| m.mount_blob(&r, &f, &d, quota)).await? {
            Mounted::Yes(_) => Ok(true),
            Mounted::NotInSource => Ok(false),
            Mounted::OverQuota { used } => Err(self.over_quota(repo, used, 0)),
        }
    }

    /// Push a whole blob in one request (`POST ?digest=`). `declared_len` is the
    /// request's Content-Length, if sent.
    pub async fn put_blob_monolithic<S, E>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        declared_len: Option<u64>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let room = self.quota_room(repo, digest, declared_len).await?;
        // No session row: if the process dies, startup removes the orphan file; if
        // the request is dropped, the guard removes it.
        let id = UploadId::new();
        self.blobs.create_upload(id).await?;
        let mut guard = TempUpload {
            blobs: self.blobs.clone(),
            id,
            armed: true,
        };
        let result = async {
            let start = Hash::Ready(Box::new(Digester::new(digest.algorithm())));
            let (hash, n) = copy_into(self.destination(id), start, body, (), room)
                .await?
                .result?;
            let digester = hash.resolve().await.ok_or_else(|| {
                RegistryError::Storage(StorageError::Task("the upload's hasher failed".into()))
            })?;
            if let Some(want) = declared_len
                && want != n
            {
                return Err(RegistryError::SizeInvalid(format!(
                    "Content-Length is {want} but the body held {n} bytes"
                )));
            }
            verify_digest(digest, digester.finish())?;
            self.commit_and_link(repo, id, digest, n, None).await
        }
        .await;
        guard.armed = false;
        if result.is_err() {
            self.blobs.delete_upload(id).await?;
        }
        result
    }

    // ---- upload sessions ------------------------------------------------------------

    /// Open an upload session in `repo`.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadId> {
        let id = UploadId::new();
        // File first: a session row always has its file.
        self.blobs.create_upload(id).await?;
        let r = repo.to_string();
        self.db(move |m| m.create_upload(id, &r)).await?;
        Ok(id)
    }

    async fn check_session(&self, repo: &RepoName, id: UploadId) -> Result<()> {
        match self.db(move |m| m.upload(id)).await? {
            Some(s) if s.repo == repo.as_str() => Ok(()),
            _ => Err(RegistryError::UploadUnknown(id.to_string())),
        }
    }

    /// Bytes received so far by an upload session.
    pub async fn upload_status(&self, repo: &RepoName, id: UploadId) -> Result<u64> {
        self.check_session(repo, id).await?;
        let state = self.uploads.get(id);
        let mut state = state.lock().await;
        state.len(&self.blobs, id).await
    }

    /// Append a chunk (`PATCH`); returns the new length.
    pub async fn append_upload<S, E>(
        &self,
        repo: &RepoName,
        id: UploadId,
        range: Option<(u64, u64)>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.check_session(repo, id).await?;
        let state = self.uploads.get(id).lock_owned().await;
        let room = self.session_room(repo, id, range, None).await?;
        let (_state, len) = uploads::append(state, self.destination(id), range, body, room).await?;
        Ok(len)
    }

    /// Close a session (`PUT ?digest=`), with an optional last chunk: verify the
    /// digest, make the blob visible, link it into `repo`.
    pub async fn complete_upload<S, E>(
        &self,
        repo: &RepoName,
        id: UploadId,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.check_session(repo, id).await?;
        let state = self.uploads.get(id).lock_owned().await;
        let room = self.session_room(repo, id, range, Some(digest)).await?;
        let (mut state, _) =
            uploads::append(state, self.destination(id), range, body, room).await?;
        let (actual, len) = state.finish(&self.blobs, id, digest.algorithm()).await?;
        if let Err(e) = verify_digest(digest, actual) {
            self.end_upload(id).await?;
            return Err(e);
        }
        let linked = self.commit_and_link(repo, id, digest, len, Some(id)).await;
        if linked.is_err() {
            self.end_upload(id).await?;
        }
        self.uploads.remove(id);
        linked
    }

    /// Make a verified upload visible as `digest` and link it into `repo`, within
    /// the repository's quota. The blob's stripe lock is held from the rename to
    /// the link, so garbage collection never removes a file between the two.
    async fn commit_and_link(
        &self,
        repo: &RepoName,
        id: UploadId,
        digest: &Digest,
        len: u64,
        session: Option<UploadId>,
    ) -> Result<()> {
        if let Some((q, used)) = self.quota_state(repo, Some(digest)).await?
            && used.saturating_add(len) > q
        {
            return Err(self.over_quota(repo, used, len));
        }
        let quota = self.lifecycle.quota(repo.as_str());
        let _order = self.blob_locks.lock(digest).await;
        self.blobs.commit_upload(id, digest).await?;
        let (r, d) = (repo.to_string(), digest.clone());
        match self
            .db(move |m| m.link_blob(&r, &d, len, session, quota))
            .await?
        {
            Linked::Yes => Ok(()),
            Linked::OverQuota { used } => Err(self.over_quota(repo, used, len)),
        }
    }

    /// `repo`'s quota and the bytes it uses, or `None` when it has no quota or
    /// already links `digest` (a blob it holds costs nothing again).
    async fn quota_state(
        &self,
        repo: &RepoName,
        digest: Option<&Digest>,
    ) -> Result<Option<(u64, u64)>> {
        let Some(q) = self.lifecycle.quota(repo.as_str()) else {
            return Ok(None);
        };
        if let Some(d) = digest {
            let (r, d) = (repo.to_string(), d.clone());
            if self.db(move |m| m.blob_in_repo(&r, &d)).await?.is_some() {
                return Ok(None);
            }
        }
        let r = repo.to_string();
        let used = self.db(move |m| m.usage_of(&r)).await?;
        Ok(Some((q, used)))
    }

    /// The quota error for `repo`, which holds `used` bytes, refusing `more`.
    fn over_quota(&self, repo: &RepoName, used: u64, more: u64) -> RegistryError {
        let limit = self.lifecycle.quota(repo.as_str()).unwrap_or(0);
        RegistryError::Denied(format!(
            "repository {repo} is over its quota: {used} of {limit} bytes used, {more} more refused"
        ))
    }

    /// Where a body for upload `id` goes.
    fn destination(&self, id: UploadId) -> Destination<'_> {
        Destination {
            blobs: &self.blobs,
            pool: &self.uploads.pool,
            id,
        }
    }

    /// Bytes a monolithic push of `digest` may still write into `repo` under its
    /// quota (`None`: no limit). Refused at once when the declared length does
    /// not fit; a blob the repository already links costs nothing.
    async fn quota_room(
        &self,
        repo: &RepoName,
        digest: &Digest,
        declared_len: Option<u64>,
    ) -> Result<Option<u64>> {
        let Some((q, used)) = self.quota_state(repo, Some(digest)).await? else {
            return Ok(None);
        };
        let room = q.saturating_sub(used);
        if let Some(n) = declared_len
            && n > room
        {
            return Err(self.over_quota(repo, used, n));
        }
        Ok(Some(room))
    }

    /// Bytes a chunk may add to upload `id` in `repo` under its quota (`None`:
    /// no limit), counting what the upload holds already; refused at once when
    /// the chunk's declared range does not fit. `digest` is the blob the upload
    /// is being closed as (the last chunk of `PUT ?digest=`): if the repository
    /// already links it, the upload costs nothing, as for a monolithic push.
    async fn session_room(
        &self,
        repo: &RepoName,
        id: UploadId,
        range: Option<(u64, u64)>,
        digest: Option<&Digest>,
    ) -> Result<Option<u64>> {
        let Some((q, used)) = self.quota_state(repo, digest).await? else {
            return Ok(None);
        };
        let held = self.blobs.upload_len(id).await?.unwrap_or(0);
        let room = q.saturating_sub(used).saturating_sub(held);
        if let Some((start, end)) = range
            && end >= start
            && end - start + 1 > room
        {
            return Err(self.over_quota(repo, used + held, end - start + 1));
        }
        Ok(Some(room))
    }

    /// Cancel an upload session (`DELETE`).
    pub async fn cancel_upload(&self, repo: &RepoName, id: UploadId) -> Result<()> {
        self.check_session(repo, id).await?;
        let state = self.uploads.get(id);
        let _guard = state.lock().await;
        self.end_upload(id).await
    }

    async fn end_upload(&self, id: UploadId) -> Result<()> {
        self.db(move |m| m.delete_upload(id)).await?;
        self.blobs.delete_upload(id).await?;
        self.uploads.remove(id);
        Ok(())
    }

    // ---- manifests --------------------------------------------------------------

    /// Store a manifest pushed to `reference` with `content_type`, tagging it with
    /// the reference (if a tag) and every tag in `extra_tags` (`?tag=`).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<ManifestPut> {
        if body.len() as u64 > self.limits.max_manifest_bytes {
            return Err(RegistryError::ManifestTooLarge {
                limit: self.limits.max_manifest_bytes,
            });
        }
        let digest = match reference {
            Reference::Digest(want) => {
                let actual = Digest::of(want.algorithm(), &body);
                verify_digest(want, actual)?;
                want.clone()
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        let parsed = manifest::parse(content_type, &body)?;
        let image_bytes = matches!(
            parsed.media_type.as_str(),
            media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST
        )
        .then(|| parsed.blobs.iter().map(|d| d.size).sum());
        let size = body.len() as u64;
        let record = ManifestRecord {
            digest: digest.clone(),
            media_type: parsed.media_type,
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            artifact_type: parsed.artifact_type,
            annotations: parsed
                .annotations
                .map(|a| serde_json::Value::Object(a).to_string()),
            blobs: parsed
                .blobs
                .into_iter()
                .map(|d| (d.digest, d.size))
                .collect(),
            manifests: parsed
                .manifests
                .into_iter()
                .map(|d| (d.digest, d.size))
                .collect(),
            content: body,
        };
        let mut tags: Vec<String> = extra_tags.iter().map(|t| t.to_string()).collect();
        if let Reference::Tag(t) = reference {
            tags.push(t.to_string());
        }
        let subject = record.subject.clone();
        let stored_type = record.media_type.clone();
        let r = repo.to_string();
        let meta = self.meta.clone();
        let cache = self.cache.clone();
        let lifecycle = self.lifecycle.clone();
        // The cache is invalidated on the blocking thread, right after the commit:
        // that runs even if this request is dropped while waiting.
        let previous = tokio::task::spawn_blocking(move || {
            let guard = |tag: &str| lifecycle.immutable_rule(&r, tag);
            let previous = meta.put_manifest(&r, &record, &tags, &guard)?;
            cache.invalidate(Change::Tags {
                repo: &r,
                tags: &tags,
            });
            Ok(previous)
        })
        .await
        .map_err(RegistryError::task)?
        .map_err(|e| match e {
            PutManifestError::Missing(d) => RegistryError::ManifestBlobUnknown(d),
            PutManifestError::SizeMismatch {
                digest,
                declared,
                actual,
            } => RegistryError::DescriptorSizeMismatch {
                digest,
                declared,
                actual,
            },
            PutManifestError::ImmutableTag { tag, rule } => RegistryError::Denied(format!(
                "tag {tag} of {repo} is immutable (rule {rule}): it cannot be moved to another manifest"
            )),
            PutManifestError::Storage(s) => RegistryError::Storage(s),
        })?;
        Ok(ManifestPut {
            digest,
            subject,
            media_type: stored_type,
            size,
            image_bytes,
            tags: previous
                .into_iter()
                .map(|(tag, previous)| TagChange { tag, previous })
                .collect(),
        })
    }

    /// A manifest for `HEAD`: as [`Registry::manifest`], but a manifest asked
    /// for by digest counts as live for garbage collection during the grace
    /// period (a client that finds a child manifest present skips pushing it and
    /// pushes the index referencing it next), noted before the lookup as for blobs.
    pub async fn manifest_head(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        if let Reference::Digest(d) = reference {
            self.recent.touch(d, self.lifecycle.gc.grace).await;
        }
        self.manifest(repo, reference).await
    }

    /// A manifest by tag or digest, with its bytes. Served from the manifest cache
    /// when it can be; misses read the database and fill the cache.
    pub async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<StoredManifest> {
        let ticket = self.cache.ticket();
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => match self.cache.tag(repo.as_str(), t.as_str()) {
                Some(d) => d,
                None => {
                    let (r, t2) = (repo.to_string(), t.to_string());
                    let d = self
                        .db(move |m| m.resolve_tag(&r, &t2))
                        .await?
                        .ok_or_else(|| RegistryError::ManifestUnknown(t.to_string()))?;
                    self.cache.put_tag(ticket, repo.as_str(), t.as_str(), &d);
                    d
                }
            },
        };
        if let Some(m) = self.cache.manifest(repo.as_str(), &digest) {
            return Ok(m);
        }
        let (r, d) = (repo.to_string(), digest.clone());
        let m = self
            .db(move |m| m.manifest(&r, &d, true))
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))?;
        self.cache.put_manifest(ticket, repo.as_str(), &m);
        Ok(m)
    }

    /// Note that `digest` was pulled from `repo` (a manifest `GET`); written to the
    /// database in batches by [`Registry::flush_pulls`].
    pub fn record_pull(&self, repo: &RepoName, digest: &Digest) {
        self.pulls.note(repo.as_str(), digest);
    }

    /// Write the pulls noted since the last flush, in one transaction.
    pub async fn flush_pulls(&self) -> Result<()> {
        let batch = self.pulls.drain();
        if batch.is_empty() {
            return Ok(());
        }
        let now = berth_storage::now_secs();
        self.db(move |m| m.record_pulls(&batch, now)).await
    }

    /// Delete a tag (only the tag) or a manifest by digest (with its tags).
    /// Returns the digest of the manifest the tag pointed at (by digest: that
    /// digest).
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        let r = repo.to_string();
        let cache = self.cache.clone();
        // As in put_manifest: invalidate on the blocking thread, after the commit.
        let deleted = match reference {
            Reference::Tag(t) => {
                if let Some(rule) = self.lifecycle.immutable_rule(repo.as_str(), t.as_str()) {
                    return Err(RegistryError::Denied(format!(
                        "tag {t} of {repo} is immutable (rule {rule}): it cannot be deleted"
                    )));
                }
                let t = t.to_string();
                self.db(move |m| {
                    let deleted = m.delete_tag(&r, &t)?;
                    cache.invalidate(Change::Tags {
                        repo: &r,
                        tags: std::slice::from_ref(&t),
                    });
                    Ok(deleted)
                })
                .await?
            }
            Reference::Digest(digest) => {
                let d = digest.clone();
                let lifecycle = self.lifecycle.clone();
                let outcome = self
                    .db(move |m| {
                        let guard = |tag: &str| lifecycle.immutable_rule(&r, tag);
                        let outcome = m.delete_manifest(&r, &d, &guard)?;
                        if outcome == Deleted::Yes {
                            cache.invalidate(Change::ManifestDeleted {
                                repo: &r,
                                digest: &d,
                            });
                        }
                        Ok(outcome)
                    })
                    .await?;
                match outcome {
                    Deleted::Yes => Some(digest.clone()),
                    Deleted::NotFound => None,
                    Deleted::Protected { tag, rule } => {
                        return Err(RegistryError::Denied(format!(
                            "manifest {reference} of {repo} is tagged {tag}, which is immutable (rule {rule}): it cannot be deleted"
                        )));
                    }
                }
            }
        };
        deleted.ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))
    }

    // ---- discovery --------------------------------------------------------------

    /// Up to `n` tags after `last`, in lexical order.
    pub async fn tags(&self, repo: &RepoName, n: u32, last: Option<String>) -> Result<Vec<String>> {
        let r = repo.to_string();
        self.db(move |m| m.list_tags(&r, n, last.as_deref()))
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.to_string()))
    }

    /// Up to `n` repository names after `last`, in lexical order.
    pub async fn catalog(&self, n: u32, last: Option<String>) -> Result<Vec<String>> {
        self.db(move |m| m.catalog(n, last.as_deref())).await
    }

    /// The referrers of `subject` in `repo` as an image index (exact bytes to serve),
    /// optionally filtered by artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<String>,
    ) -> Result<Vec<u8>> {
        let (r, s) = (repo.to_string(), subject.clone());
        let rows = self
            .db(move |m| m.referrers(&r, &s, artifact_type.as_deref()))
            .await?;
        let manifests: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|row| {
                let mut d = serde_json::Map::new();
                d.insert("mediaType".into(), row.media_type.into());
                d.insert("digest".into(), row.digest.to_string().into());
                d.insert("size".into(), row.size.into());
                if let Some(at) = row.artifact_type {
                    d.insert("artifactType".into(), at.into());
                }
                if let Some(a) = row.annotations.and_then(|a| serde_json::from_str(&a).ok()) {
                    d.insert("annotations".into(), a);
                }
                serde_json::Value::Object(d)
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": manifests,
        });
        Ok(index.to_string().into_bytes())
    }
}

/// Removes a monolithic upload's temp file if its request is dropped half-way.
struct TempUpload {
    blobs: BlobStore,
    id: UploadId,
    armed: bool,
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if self.armed
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (blobs, id) = (self.blobs.clone(), self.id);
            rt.spawn(async move {
                if let Err(e) = blobs.delete_upload(id).await {
                    tracing::warn!(upload = %id, error = %e, "could not remove abandoned upload");
                }
            });
        }
    }
}

fn verify_digest(want: &Digest, actual: Digest) -> Result<()> {
    if *want == actual {
        Ok(())
    } else {
        Err(RegistryError::DigestInvalid(format!(
            "content has digest {actual}, not {want}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use futures_util::stream;

    type Chunk = std::result::Result<Bytes, std::io::Error>;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Chunk> + Send + use<> {
        let v: Vec<Chunk> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        stream::iter(v)
    }

    /// A chunk whose request is dropped half-way (client gone) must leave the upload
    /// consistent: its length and hash are rebuilt from what reached the file, and
    /// the upload can be continued to a correct blob.
    #[tokio::test]
    async fn dropped_chunk_leaves_a_consistent_upload() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), Limits::default()).await.unwrap();
        let repo: RepoName = "a".parse().unwrap();
        let id = reg.start_upload(&repo).await.unwrap();
        reg.append_upload(&repo, id, Some((0, 2)), body(&[b"abc"]))
            .await
            .unwrap();
        let stalled = body(&[b"def"]).chain(stream::pending());
        let r = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            reg.append_upload(&repo, id, None, stalled),
        )
        .await;
        assert!(r.is_err(), "the stalled chunk should still be pending");
        let len = reg.upload_status(&repo, id).await.unwrap();
        assert_eq!(len, 6, "the bytes that reached the file count");
        let whole = Digest::sha256_of(b"abcdefgh");
        reg.complete_upload(&repo, id, &whole, Some((6, 7)), body(&[b"gh"]))
            .await
            .unwrap();
        assert_eq!(reg.blob_size(&repo, &whole).await.unwrap(), 8);
    }

    /// A body that fails half-way is cut back: the upload is exactly as before.
    #[tokio::test]
    async fn failed_chunk_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), Limits::default()).await.unwrap();
        let repo: RepoName = "a".parse().unwrap();
        let id = reg.start_upload(&repo).await.unwrap();
        reg.append_upload(&repo, id, None, body(&[b"abc"]))
            .await
            .unwrap();
        let failing = body(&[b"xyz"]).chain(stream::iter(vec![Err(std::io::Error::other(
            "connection reset",
        ))]));
        let err = reg
            .append_upload(&repo, id, None, failing)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::UploadInvalid(_)), "{err}");
        assert_eq!(reg.upload_status(&repo, id).await.unwrap(), 3);
        let whole = Digest::sha256_of(b"abcdef");
        reg.complete_upload(&repo, id, &whole, None, body(&[b"def"]))
            .await
            .unwrap();
    }

    /// Chunks are answered while the previous chunk may still be hashing: many
    /// chunks in a row, a failed one among them, still hash to exactly the bytes
    /// kept, in order.
    #[tokio::test]
    async fn pipelined_chunk_hashes_chain_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), Limits::default()).await.unwrap();
        let repo: RepoName = "a".parse().unwrap();
        let id = reg.start_upload(&repo).await.unwrap();
        let mut kept = Vec::new();
        for i in 0..40u32 {
            let chunk: Vec<u8> = (0..100_000u32).map(|j| ((i * 7 + j) % 251) as u8).collect();
            let chunk: &'static [u8] = Box::leak(chunk.into_boxed_slice());
            if i == 17 {
                let failing = body(&[chunk]).chain(stream::iter(vec![Err(std::io::Error::other(
                    "connection reset",
                ))]));
                assert!(reg.append_upload(&repo, id, None, failing).await.is_err());
                continue;
            }
            let start = kept.len() as u64;
            let end = start + chunk.len() as u64 - 1;
            let len = reg
                .append_upload(&repo, id, Some((start, end)), body(&[chunk]))
                .await
                .unwrap();
            kept.extend_from_slice(chunk);
            assert_eq!(len, kept.len() as u64);
        }
        let wrong = Digest::sha256_of(b"not these bytes");
        let err = reg
            .complete_upload(&repo, id, &wrong, None, body(&[]))
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::DigestInvalid(_)), "{err}");

        let id = reg.start_upload(&repo).await.unwrap();
        for piece in kept.chunks(300_001) {
            let piece: &'static [u8] = Box::leak(piece.to_vec().into_boxed_slice());
            reg.append_upload(&repo, id, None, body(&[piece]))
                .await
                .unwrap();
        }
        let whole = Digest::sha256_of(&kept);
        reg.complete_upload(&repo, id, &whole, None, body(&[]))
            .await
            .unwrap();
        assert_eq!(
            reg.blob_size(&repo, &whole).await.unwrap(),
            kept.len() as u64
        );
    }

    /// A monolithic push whose request is dropped leaves no temp file behind.
    #[tokio::test]
    async fn dropped_monolithic_push_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), Limits::default()).await.unwrap();
        let repo: RepoName = "a".parse().unwrap();
        let d = Digest::sha256_of(b"never finished");
        let stalled = body(&[b"never"]).chain(stream::pending());
        let r = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            reg.put_blob_monolithic(&repo, &d, None, stalled),
        )
        .await;
        assert!(r.is_err());
        for _ in 0..50 {
            if std::fs::read_dir(dir.path().join("uploads"))
                .unwrap()
                .count()
                == 0
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("abandoned upload file was not removed");
    }

    /// A push reports its media type, size, image bytes and, per tag, what the
    /// tag pointed at before; a tag delete reports the manifest it named.
    #[tokio::test]
    async fn manifest_put_reports_tag_changes() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), Limits::default()).await.unwrap();
        let repo: RepoName = "a".parse().unwrap();
        let (config, layer): (&'static [u8], &'static [u8]) = (b"{}", b"layer bytes");
        for data in [config, layer] {
            let d = Digest::sha256_of(data);
            reg.put_blob_monolithic(&repo, &d, None, body(&[data]))
                .await
                .unwrap();
        }
        let image = |n: u32| {
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "config": {"mediaType": media_type::OCI_CONFIG, "size": 2,
                           "digest": Digest::sha256_of(config).to_string()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 11,
                            "digest": Digest::sha256_of(layer).to_string()}],
                "annotations": {"n": n.to_string()},
            })
            .to_string()
            .into_bytes()
        };
        let tag = |t: &str| Reference::Tag(t.parse().unwrap());
        let (one, two) = (image(1), image(2));
        let p1 = reg
            .put_manifest(&repo, &tag("v1"), &[], None, one.clone())
            .await
            .unwrap();
        assert_eq!(p1.media_type, media_type::OCI_MANIFEST);
        assert_eq!(p1.size, one.len() as u64);
        assert_eq!(p1.image_bytes, Some(13));
        assert_eq!(
            p1.tags,
            vec![TagChange {
                tag: "v1".into(),
                previous: None
            }]
        );
        assert!(p1.tags[0].changed(&p1.digest));
        let extra: Vec<Tag> = vec!["latest".parse().unwrap()];
        let p2 = reg
            .put_manifest(&repo, &tag("v1"), &extra, None, two)
            .await
            .unwrap();
        assert_eq!(
            p2.tags,
            vec![
                TagChange {
                    tag: "latest".into(),
                    previous: None
                },
                TagChange {
                    tag: "v1".into(),
                    previous: Some(p1.digest.clone())
                },
            ]
        );
        let again = reg
            .put_manifest(&repo, &tag("latest"), &[], None, image(2))
            .await
            .unwrap();
        assert!(!again.tags[0].changed(&again.digest));
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [{"mediaType": media_type::OCI_MANIFEST, "size": one.len(),
                           "digest": p1.digest.to_string()}],
        })
        .to_string()
        .into_bytes();
        let pi = reg
            .put_manifest(&repo, &tag("idx"), &[], None, index)
            .await
            .unwrap();
        assert_eq!(pi.image_bytes, None);
        assert_eq!(
            reg.delete_manifest(&repo, &tag("v1")).await.unwrap(),
            p2.digest
        );
        assert_eq!(
            reg.delete_manifest(&repo, &Reference::Digest(p1.digest.clone()))
                .await
                .unwrap(),
            p1.digest
        );
        assert!(matches!(
            reg.delete_manifest(&repo, &tag("v1")).await,
            Err(RegistryError::ManifestUnknown(_))
        ));
    }
}
