//! Copying an image from a [`Source`] to a registry or an OCI image layout:
//! choose what to copy (one platform or the whole index), move the blobs in
//! parallel (skipping what the destination has, mounting across repositories of
//! one registry), verify every byte, then write manifests children-first and the
//! tag last. Uploads go in chunks that resume from the registry's offset after a
//! failure. A layout destination is all-or-nothing: on failure the blobs this copy
//! added are removed again and a layout it created is deleted.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_oci::digest::{Digest, Digester};
use berth_oci::layout::Layout;
use berth_oci::manifest::{self, Descriptor};
use berth_oci::media_type;
use berth_oci::name::Reference;
use berth_oci::reference::{ImageReference, Location};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::Value;

use crate::error::{ClientError, Result};
use crate::platform::{self, Platform};
use crate::registry::{Client, FetchedManifest, Registry, UploadStart};
use crate::retry::RetryPolicy;
use crate::source::{BlobReader, Source};

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// The platform to pick from an index (`None`: the host's).
    pub platform: Option<Platform>,
    /// Copy the whole index and every manifest in it.
    pub all_platforms: bool,
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Upload chunk size; larger blobs go as several `PATCH`es.
    pub chunk_size: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platform: None,
            all_platforms: false,
            jobs: 4,
            chunk_size: 8 << 20,
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Its bytes were transferred.
    Copied,
    /// The destination already had it.
    Skipped,
    /// Mounted from another repository of the same registry.
    Mounted,
}

/// Progress events; the CLI draws bars or prints lines from them.
pub trait Progress: Send + Sync {
    /// A blob starts (its descriptor's size).
    fn start(&self, _digest: &Digest, _size: u64) {}
    /// `n` more bytes of the blob moved.
    fn advance(&self, _digest: &Digest, _n: u64) {}
    /// The blob is done.
    fn finish(&self, _digest: &Digest, _outcome: BlobOutcome) {}
}

/// Progress that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Digest of the top-level manifest written (the selected platform's manifest,
    /// or the index).
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Manifests written (index children included).
    pub manifests: usize,
    /// Blobs whose bytes moved.
    pub copied: usize,
    /// Blobs the destination already had.
    pub skipped: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Bytes of blob content moved.
    pub bytes: u64,
}

/// What to copy, resolved from the source.
struct Plan {
    /// Manifests in write order: children first, top last.
    manifests: Vec<FetchedManifest>,
    /// The descriptor the destination's tag should hold (from the source's index
    /// entry when a platform was picked, so `platform` is kept).
    top_descriptor: Value,
    /// Unique blobs to move.
    blobs: Vec<Descriptor>,
}

/// Work out what to copy: the top manifest, or one platform of an index, or the
/// whole index.
async fn plan(src: &Source, opts: &CopyOptions, retry: RetryPolicy) -> Result<Plan> {
    let (top, top_desc) = src.top().await?;
    let mut manifests = Vec::new();
    let mut top_descriptor = top_desc;
    if media_type::is_index(&top.media_type) {
        let index: Value =
            serde_json::from_slice(&top.bytes).map_err(|e| ClientError::InvalidManifest {
                what: src.describe(),
                reason: e.to_string(),
            })?;
        let parsed = parse(&top, &src.describe())?;
        if opts.all_platforms {
            for child in &parsed.manifests {
                let m = src.manifest(child).await?;
                if media_type::is_index(&m.media_type) {
                    return Err(ClientError::InvalidManifest {
                        what: src.describe(),
                        reason: format!("nested index {} is not supported", child.digest),
                    });
                }
                manifests.push(m);
            }
            manifests.push(top);
        } else {
            let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
            let i = platform::select(&index, &wanted).map_err(|available| {
                ClientError::PlatformNotFound {
                    reference: src.describe(),
                    wanted: wanted.to_string(),
                    available,
                }
            })?;
            let entry = index
                .get("manifests")
                .and_then(|m| m.get(i))
                .cloned()
                .unwrap_or(Value::Null);
            let desc =
                manifest::parse_descriptor(&entry, &format!("manifests[{i}]")).map_err(|e| {
                    ClientError::InvalidManifest {
                        what: src.describe(),
                        reason: e.to_string(),
                    }
                })?;
            let m = src.manifest(&desc).await?;
            if media_type::is_index(&m.media_type) {
                return Err(ClientError::InvalidManifest {
                    what: src.describe(),
                    reason: format!("platform {wanted} names another index {}", desc.digest),
                });
            }
            top_descriptor = entry;
            manifests.push(m);
        }
    } else {
        if let Some(wanted) = &opts.platform {
            check_platform(src, &top, wanted, retry).await?;
        }
        manifests.push(top);
    }
    let mut seen = HashSet::new();
    let mut blobs = Vec::new();
    for m in &manifests {
        if media_type::is_index(&m.media_type) {
            continue;
        }
        for b in parse(m, &src.describe())?.blobs {
            if seen.insert(b.digest.clone()) {
                blobs.push(b);
            }
        }
    }
    Ok(Plan {
        manifests,
        top_descriptor,
        blobs,
    })
}

/// An explicit `--platform` against a single-platform image: its config must say
/// that platform (the wrong-architecture pull the F7 describes).
async fn check_platform(
    src: &Source,
    m: &FetchedManifest,
    wanted: &Platform,
    retry: RetryPolicy,
) -> Result<()> {
    let body: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let Ok(config) = manifest::parse_descriptor(&body["config"], "config") else {
        return Ok(());
    };
    if config.media_type != media_type::OCI_CONFIG
        && config.media_type != "application/vnd.docker.container.image.v1+json"
    {
        return Ok(());
    }
    let bytes = src.small_blob(&config, retry).await?;
    let cfg: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match Platform::from_json(&cfg) {
        Some(p) if !wanted.matches(&p) => Err(ClientError::PlatformNotFound {
            reference: src.describe(),
            wanted: wanted.to_string(),
            available: vec![p.to_string()],
        }),
        _ => Ok(()),
    }
}

fn parse(m: &FetchedManifest, what: &str) -> Result<manifest::ParsedManifest> {
    manifest::parse(Some(&m.media_type), &m.bytes).map_err(|e| ClientError::InvalidManifest {
        what: format!("{} ({what})", m.digest),
        reason: e.to_string(),
    })
}

/// The destination side of a copy.
enum Dest {
    Registry {
        registry: Arc<Registry>,
        reference: ImageReference,
        /// Repository to mount blobs from (same registry as the source).
        mount_from: Option<String>,
    },
    Layout {
        layout: Layout,
        tag: Option<String>,
        /// Blobs this copy added, removed again on failure.
        written: Mutex<Vec<Digest>>,
        /// What to remove if the copy fails and the layout is new.
        created: Option<Created>,
    },
}

enum Created {
    /// The directory did not exist.
    Dir(PathBuf),
    /// The directory existed but was empty.
    Contents(PathBuf),
}

/// Copy the image at `src` to `dst`.
pub async fn copy(
    client: &Client,
    src: &Location,
    dst: &Location,
    opts: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<CopyReport> {
    let source = Source::open(client, src)?;
    let plan = plan(&source, opts, client.retry_policy()).await?;
    let dest = match dst {
        Location::Registry(r) => {
            let mount_from = match &source {
                Source::Registry { reference, .. }
                    if reference.registry() == r.registry()
                        && reference.repository() != r.repository() =>
                {
                    Some(reference.repository().as_str().to_owned())
                }
                _ => None,
            };
            Dest::Registry {
                registry: client.registry(r.registry()),
                reference: r.clone(),
                mount_from,
            }
        }
        Location::Layout { dir, tag } => {
            let created = match std::fs::read_dir(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some(Created::Dir(dir.clone()))
                }
                Ok(mut rd) => rd.next().is_none().then(|| Created::Contents(dir.clone())),
                Err(_) => None,
            };
            let layout = match Layout::create(dir) {
                Ok(l) => l,
                Err(e) => {
                    if let Some(c) = &created {
                        remove_created(c);
                    }
                    return Err(e.into());
                }
            };
            Dest::Layout {
                layout,
                tag: tag.clone(),
                written: Mutex::new(Vec::new()),
                created,
            }
        }
    };
    let result = run(client, &source, &dest, plan, opts, progress).await;
    if result.is_err()
        && let Dest::Layout {
            layout,
            written,
            created,
            ..
        } = &dest
    {
        rollback(layout, written, created.as_ref());
    }
    result
}

fn remove_created(c: &Created) {
    match c {
        Created::Dir(d) => {
            let _ = std::fs::remove_dir_all(d);
        }
        Created::Contents(d) => {
            for name in ["blobs", "index.json", "oci-layout"] {
                let p = d.join(name);
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
    }
}

fn rollback(layout: &Layout, written: &Mutex<Vec<Digest>>, created: Option<&Created>) {
    if let Some(c) = created {
        remove_created(c);
        return;
    }
    let list = std::mem::take(
        &mut *written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for d in list.iter().rev() {
        if let Err(e) = layout.remove_blob(d) {
            tracing::warn!(digest = %d, error = %e, "could not remove a blob of the failed copy");
        }
    }
}

async fn run(
    client: &Client,
    source: &Source,
    dest: &Dest,
    plan: Plan,
    opts: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<CopyReport> {
    let retry = client.retry_policy();
    let jobs = opts.jobs.max(1);
    let mut stream = futures_util::stream::iter(plan.blobs.iter())
        .map(|desc| copy_blob(source, dest, desc, opts.chunk_size, retry, progress.clone()))
        .buffer_unordered(jobs);
    let mut report = CopyReport {
        digest: Digest::sha256_of(b""),
        media_type: String::new(),
        size: 0,
        manifests: 0,
        copied: 0,
        skipped: 0,
        mounted: 0,
        bytes: 0,
    };
    while let Some(r) = stream.next().await {
        let (outcome, n) = r?;
        match outcome {
            BlobOutcome::Copied => report.copied += 1,
            BlobOutcome::Skipped => report.skipped += 1,
            BlobOutcome::Mounted => report.mounted += 1,
        }
        report.bytes += n;
    }
    drop(stream);
    let Some(top) = plan.manifests.last() else {
        return Err(ClientError::Protocol("nothing to copy".into()));
    };
    for (i, m) in plan.manifests.iter().enumerate() {
        let is_top = i + 1 == plan.manifests.len();
        write_manifest(dest, m, is_top, &plan.top_descriptor).await?;
        report.manifests += 1;
    }
    report.digest = top.digest.clone();
    report.media_type = top.media_type.clone();
    report.size = top.bytes.len() as u64;
    Ok(report)
}

async fn write_manifest(
    dest: &Dest,
    m: &FetchedManifest,
    is_top: bool,
    top_descriptor: &Value,
) -> Result<()> {
    match dest {
        Dest::Registry {
            registry,
            reference,
            ..
        } => {
            let repo = reference.repository().as_str();
            let target = if is_top {
                if let Some(d) = reference.digest()
                    && *d != m.digest
                {
                    return Err(ClientError::DigestMismatch {
                        what: format!("destination {reference}"),
                        expected: d.clone(),
                        actual: m.digest.clone(),
                    });
                }
                match reference.tag() {
                    Some(t) => Reference::Tag(t.clone()),
                    None => Reference::Digest(m.digest.clone()),
                }
            } else {
                Reference::Digest(m.digest.clone())
            };
            registry
                .put_manifest(repo, &target, &m.media_type, m.bytes.clone())
                .await
        }
        Dest::Layout {
            layout,
            tag,
            written,
            ..
        } => {
            let had = layout.blob_size(&m.digest)?.is_some();
            tokio::task::block_in_place(|| {
                layout.write_blob(&m.digest, Some(m.bytes.len() as u64), &m.bytes[..])
            })
            .map_err(|e| ClientError::from_layout(&format!("manifest {}", m.digest), e))?;
            if !had {
                lock(written).push(m.digest.clone());
            }
            if is_top {
                let mut desc = top_descriptor.clone();
                if let Some(o) = desc.as_object_mut() {
                    o.insert("mediaType".into(), Value::String(m.media_type.clone()));
                    o.insert("digest".into(), Value::String(m.digest.to_string()));
                    o.insert("size".into(), Value::from(m.bytes.len() as u64));
                }
                tokio::task::block_in_place(|| layout.set_ref(desc, tag.as_deref()))?;
            }
            Ok(())
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Copy one blob; returns what happened and the bytes moved.
async fn copy_blob(
    source: &Source,
    dest: &Dest,
    desc: &Descriptor,
    chunk_size: usize,
    retry: RetryPolicy,
    progress: Arc<dyn Progress>,
) -> Result<(BlobOutcome, u64)> {
    progress.start(&desc.digest, desc.size);
    let outcome = match dest {
        Dest::Layout {
            layout, written, ..
        } => {
            if layout.blob_size(&desc.digest)? == Some(desc.size) {
                BlobOutcome::Skipped
            } else {
                let mut reader = source.blob(desc, retry).await?;
                let mut w = layout.blob_writer(&desc.digest)?;
                while let Some(c) = reader.next().await? {
                    tokio::task::block_in_place(|| w.write(&c))?;
                    progress.advance(&desc.digest, c.len() as u64);
                }
                tokio::task::block_in_place(|| w.commit(Some(desc.size)))
                    .map_err(|e| ClientError::from_layout(&format!("blob {}", desc.digest), e))?;
                lock(written).push(desc.digest.clone());
                BlobOutcome::Copied
            }
        }
        Dest::Registry {
            registry,
            reference,
            mount_from,
        } => {
            let repo = reference.repository().as_str();
            if registry.blob_size(repo, &desc.digest).await?.is_some() {
                BlobOutcome::Skipped
            } else {
                let start = registry
                    .start_upload(repo, mount_from.as_deref().map(|f| (&desc.digest, f)))
                    .await?;
                match start {
                    UploadStart::Mounted => BlobOutcome::Mounted,
                    UploadStart::Session(url) => {
                        let reader = source.blob(desc, retry).await?;
                        upload(
                            registry,
                            repo,
                            url,
                            reader,
                            desc,
                            chunk_size,
                            retry,
                            progress.as_ref(),
                        )
                        .await?;
                        BlobOutcome::Copied
                    }
                }
            }
        }
    };
    progress.finish(&desc.digest, outcome);
    let n = if outcome == BlobOutcome::Copied {
        desc.size
    } else {
        0
    };
    Ok((outcome, n))
}

/// Upload a blob into session `url`: one `PUT` when it fits in a chunk, else
/// `PATCH` chunks, each resumed from the registry's offset after a failure. The
/// content is hashed on the way and checked before the closing `PUT`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upload(
    registry: &Registry,
    repo: &str,
    mut url: url::Url,
    reader: BlobReader,
    desc: &Descriptor,
    chunk_size: usize,
    retry: RetryPolicy,
    progress: &dyn Progress,
) -> Result<()> {
    let mut filler = ChunkFiller {
        reader,
        pending: None,
        chunk_size: chunk_size.max(1),
    };
    let mut digester = Digester::new(desc.digest.algorithm());
    let (mut chunk, mut eof) = match filler.fill().await {
        Ok(v) => v,
        Err(e) => {
            registry.cancel_upload(repo, &url).await;
            return Err(e);
        }
    };
    digester.update(&chunk);
    if eof {
        // Fits in one request: verify, then a monolithic PUT.
        check_digest(registry, repo, &url, desc, digester.finish()).await?;
        let n = chunk.len() as u64;
        registry
            .finish_upload(repo, &url, &desc.digest, Some(chunk))
            .await?;
        progress.advance(&desc.digest, n);
        return Ok(());
    }
    let mut offset = 0u64;
    loop {
        let n = chunk.len() as u64;
        if eof {
            if n > 0 {
                url = send_chunk(registry, repo, url, offset, chunk, retry).await?;
                progress.advance(&desc.digest, n);
            }
            break;
        }
        // Read the next chunk while this one is on the wire.
        let (sent, next) = tokio::join!(
            send_chunk(registry, repo, url.clone(), offset, chunk, retry),
            filler.fill()
        );
        let (sent, next) = match (sent, next) {
            (Ok(u), Ok(c)) => (u, c),
            (Err(e), _) | (_, Err(e)) => {
                registry.cancel_upload(repo, &url).await;
                return Err(e);
            }
        };
        url = sent;
        offset += n;
        progress.advance(&desc.digest, n);
        (chunk, eof) = next;
        digester.update(&chunk);
    }
    check_digest(registry, repo, &url, desc, digester.finish()).await?;
    registry.finish_upload(repo, &url, &desc.digest, None).await
}

/// Cuts a blob reader's output into upload chunks of a fixed size.
struct ChunkFiller {
    reader: BlobReader,
    pending: Option<Bytes>,
    chunk_size: usize,
}

impl ChunkFiller {
    /// The next chunk (full unless the content ends) and whether the content
    /// ended with it.
    async fn fill(&mut self) -> Result<(Bytes, bool)> {
        let mut buf = BytesMut::with_capacity(self.chunk_size);
        while buf.len() < self.chunk_size {
            let c = match self.pending.take() {
                Some(c) => c,
                None => match self.reader.next().await? {
                    Some(c) => c,
                    None => return Ok((buf.freeze(), true)),
                },
            };
            let room = self.chunk_size - buf.len();
            if c.len() > room {
                buf.extend_from_slice(&c[..room]);
                self.pending = Some(c.slice(room..));
            } else {
                buf.extend_from_slice(&c);
            }
        }
        Ok((buf.freeze(), false))
    }
}

async fn check_digest(
    registry: &Registry,
    repo: &str,
    url: &url::Url,
    desc: &Descriptor,
    actual: Digest,
) -> Result<()> {
    if actual == desc.digest {
        return Ok(());
    }
    registry.cancel_upload(repo, url).await;
    Err(ClientError::DigestMismatch {
        what: format!("blob {}", desc.digest),
        expected: desc.digest.clone(),
        actual,
    })
}

/// Send bytes `[start, start + chunk.len())` of an upload, resuming from the
/// registry's reported offset when a send fails.
async fn send_chunk(
    registry: &Registry,
    repo: &str,
    mut url: url::Url,
    start: u64,
    chunk: Bytes,
    retry: RetryPolicy,
) -> Result<url::Url> {
    let end = start + chunk.len() as u64;
    let mut from = start;
    let mut attempt = 0;
    loop {
        let part = chunk.slice((from - start) as usize..);
        match registry.patch_chunk(repo, &url, from, part).await {
            Ok(next) => return Ok(next),
            Err(e) if attempt < retry.retries && resumable(&e) => {
                tracing::debug!(error = %e, at = from, "chunk failed; asking the registry where to resume");
                tokio::time::sleep(retry.delay(attempt, None)).await;
                attempt += 1;
                let refused_from_zero =
                    from == 0 && matches!(e, ClientError::Registry { status: 416, .. });
                let (u, last) = registry.upload_status(repo, &url).await?;
                url = u;
                let held = match last {
                    None => 0,
                    // `0-0`: empty or one byte (see `upload_status`). Assume empty
                    // unless resending from 0 was just refused.
                    Some(0) if !refused_from_zero => 0,
                    Some(n) => n + 1,
                };
                if held < start || held > end {
                    return Err(ClientError::Protocol(format!(
                        "upload to {}/{repo}: the registry holds {held} bytes, expected between {start} and {end}",
                        registry.host()
                    )));
                }
                if held == end {
                    return Ok(url);
                }
                from = held;
            }
            Err(e) => return Err(e),
        }
    }
}

fn resumable(e: &ClientError) -> bool {
    match e {
        ClientError::Http { .. } => true,
        ClientError::Registry { status, .. } => {
            *status == 416
                || crate::retry::is_retryable_status(
                    reqwest::StatusCode::from_u16(*status).unwrap_or(reqwest::StatusCode::OK),
                )
        }
        _ => false,
    }
}
