//! The storage lifecycle in-process (issue 6): online garbage collection under
//! concurrent pushes, indexes and referrers, dry runs, retention, immutable tags,
//! quotas and scrub, each driven through [`Registry`] exactly as the server
//! drives it, and checked against what is on disk. Each test quotes the rule it
//! checks.
//!
//! Timestamps in the metadata are whole Unix seconds and the grace period is
//! compared against them, so "older than a 2 s grace" means "3 s later" here
//! (see [`outlive_grace`]).

// Test helpers panic on anything unexpected; that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_oci::{Digest, Reference, RepoName, media_type};
use berth_registry::policy::{
    Amount, GcConfig, ImmutableConfig, ImmutableRuleConfig, QuotaConfig, QuotaRuleConfig,
    RetentionConfig, RetentionRuleConfig,
};
use berth_registry::{
    Lifecycle, LifecycleConfig, Limits, ManifestPut, Registry, RegistryError, RetentionReport,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

type Chunk = std::result::Result<Bytes, std::io::Error>;

const COSIGN_SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

// ---- set-up ----------------------------------------------------------------------

/// A compiled lifecycle policy: the defaults, changed by `f`.
fn policy(f: impl FnOnce(&mut LifecycleConfig)) -> Lifecycle {
    let mut c = LifecycleConfig::default();
    f(&mut c);
    Lifecycle::compile(&c).unwrap()
}

/// `[gc]` with a grace period of `secs` seconds (a bare number).
fn gc_grace(secs: u64) -> GcConfig {
    GcConfig {
        grace: Amount::Number(secs),
        ..GcConfig::default()
    }
}

async fn open(lifecycle: Lifecycle) -> (tempfile::TempDir, Arc<Registry>) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open_with(dir.path(), Limits::default(), lifecycle)
        .await
        .unwrap();
    (dir, Arc::new(reg))
}

/// Sleep until everything written so far is older than a grace period of
/// `grace` seconds, as garbage collection judges it (whole seconds: something
/// written at 10.0 s has `pushed_at = 10`, and is older than a 2 s grace once
/// the clock reads 13).
async fn outlive_grace(grace: u64) {
    tokio::time::sleep(Duration::from_secs(grace + 1) + Duration::from_millis(150)).await;
}

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Reference {
    Reference::Tag(s.parse().unwrap())
}

fn at(d: &Digest) -> Reference {
    Reference::Digest(d.clone())
}

// ---- content ---------------------------------------------------------------------

/// A blob with its digest and the media type its descriptors carry.
#[derive(Debug, Clone)]
struct Blob {
    data: Bytes,
    digest: Digest,
    media_type: &'static str,
}

impl Blob {
    fn new(media_type: &'static str, data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Blob {
            digest: Digest::sha256_of(&data),
            data,
            media_type,
        }
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.size()})
    }
}

/// `len` pseudo-random bytes, the same for the same seed.
fn layer(seed: u64, len: usize) -> Blob {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    Blob::new(LAYER, data)
}

/// An image config unique to `label`.
fn config(label: &str) -> Blob {
    Blob::new(
        media_type::OCI_CONFIG,
        json!({"architecture": "amd64", "os": "linux", "label": label}).to_string(),
    )
}

/// The OCI empty descriptor's blob (`{}`), the config of artifacts.
fn empty_config() -> Blob {
    Blob::new(media_type::OCI_EMPTY, &b"{}"[..])
}

/// A manifest's exact bytes with their digest.
#[derive(Debug, Clone)]
struct Manifest {
    bytes: Vec<u8>,
    digest: Digest,
    media_type: &'static str,
}

impl Manifest {
    fn new(media_type: &'static str, v: Value) -> Self {
        let bytes = serde_json::to_vec(&v).unwrap();
        Manifest {
            digest: Digest::sha256_of(&bytes),
            bytes,
            media_type,
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.bytes.len()})
    }
}

fn image(config: &Blob, layers: &[&Blob]) -> Manifest {
    Manifest::new(
        media_type::OCI_MANIFEST,
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(|l| l.descriptor()).collect::<Vec<_>>(),
        }),
    )
}

/// An artifact manifest (empty config) of `artifact_type` whose subject is `subject`.
fn artifact(artifact_type: &str, subject: &Manifest, layers: &[&Blob]) -> Manifest {
    Manifest::new(
        media_type::OCI_MANIFEST,
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty_config().descriptor(),
            "layers": layers.iter().map(|l| l.descriptor()).collect::<Vec<_>>(),
            "subject": subject.descriptor(),
        }),
    )
}

fn index(children: &[(&Manifest, &str)]) -> Manifest {
    Manifest::new(
        media_type::OCI_INDEX,
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": children.iter().map(|(m, arch)| {
                let mut d = m.descriptor();
                d["platform"] = json!({"os": "linux", "architecture": arch});
                d
            }).collect::<Vec<_>>(),
        }),
    )
}

// ---- pushing and reading -----------------------------------------------------------

fn body(parts: Vec<Bytes>) -> impl Stream<Item = Chunk> + Send + 'static {
    stream::iter(parts.into_iter().map(Ok).collect::<Vec<Chunk>>())
}

/// `POST ?digest=` with the whole blob and its Content-Length.
async fn push_mono(reg: &Registry, r: &RepoName, b: &Blob) -> Result<(), RegistryError> {
    reg.put_blob_monolithic(r, &b.digest, Some(b.size()), body(vec![b.data.clone()]))
        .await
}

/// `POST`, then `PATCH` chunks with their ranges, then `PUT ?digest=` with the last one.
async fn push_chunked(
    reg: &Registry,
    r: &RepoName,
    b: &Blob,
    pieces: usize,
) -> Result<(), RegistryError> {
    let id = reg.start_upload(r).await?;
    let step = b.data.len().div_ceil(pieces).max(1);
    let chunks: Vec<Bytes> = b.data.chunks(step).map(Bytes::copy_from_slice).collect();
    let (last, rest) = chunks.split_last().expect("a blob has at least one chunk");
    let mut at = 0u64;
    for c in rest {
        let end = at + c.len() as u64 - 1;
        let len = reg
            .append_upload(r, id, Some((at, end)), body(vec![c.clone()]))
            .await?;
        at = end + 1;
        assert_eq!(len, at);
    }
    let range = Some((at, at + last.len() as u64 - 1));
    reg.complete_upload(r, id, &b.digest, range, body(vec![last.clone()]))
        .await
}

async fn put(
    reg: &Registry,
    r: &RepoName,
    reference: &Reference,
    m: &Manifest,
) -> Result<ManifestPut, RegistryError> {
    reg.put_manifest(r, reference, &[], Some(m.media_type), m.bytes.clone())
        .await
}

/// Push an image's blobs (monolithic) and the manifest under `reference`.
async fn push_image(
    reg: &Registry,
    r: &RepoName,
    reference: &Reference,
    config: &Blob,
    layers: &[&Blob],
) -> Manifest {
    push_mono(reg, r, config).await.unwrap();
    for l in layers {
        push_mono(reg, r, l).await.unwrap();
    }
    let m = image(config, layers);
    put(reg, r, reference, &m).await.unwrap();
    m
}

/// A blob's bytes as `GET` serves them (without counting as a `HEAD`).
async fn read_blob(reg: &Registry, r: &RepoName, d: &Digest) -> Result<Vec<u8>, RegistryError> {
    let f = reg.open_blob(r, d).await?;
    let size = f.size();
    let mut s = f.stream(0, size);
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    Ok(out)
}

/// Assert the blob is served and its bytes hash to its digest.
async fn assert_blob_whole(reg: &Registry, r: &RepoName, d: &Digest) {
    let bytes = read_blob(reg, r, d)
        .await
        .unwrap_or_else(|e| panic!("{r}: blob {d}: {e}"));
    assert_eq!(Digest::sha256_of(&bytes), *d, "{r}: blob {d} is corrupt");
}

async fn assert_blob_gone(reg: &Registry, dir: &Path, r: &RepoName, d: &Digest) {
    assert!(
        matches!(
            reg.blob_size(r, d).await,
            Err(RegistryError::BlobUnknown(_))
        ),
        "{r}: blob {d} should be unknown"
    );
    assert!(
        !blob_path(dir, d).exists(),
        "{r}: blob {d} should be off the disk"
    );
}

async fn assert_manifest_present(reg: &Registry, r: &RepoName, d: &Digest) {
    let m = reg
        .manifest(r, &at(d))
        .await
        .unwrap_or_else(|e| panic!("{r}@{d}: {e}"));
    assert_eq!(Digest::sha256_of(&m.content), *d);
}

async fn assert_manifest_gone(reg: &Registry, r: &RepoName, d: &Digest) {
    match reg.manifest(r, &at(d)).await {
        Err(RegistryError::ManifestUnknown(_)) => {}
        other => panic!("{r}@{d} should be gone, got {other:?}"),
    }
}

/// The digest `tag` of `r` resolves to.
async fn resolve(reg: &Registry, r: &RepoName, t: &str) -> Option<Digest> {
    match reg.manifest(r, &tag(t)).await {
        Ok(m) => Some(m.digest),
        Err(RegistryError::ManifestUnknown(_)) => None,
        Err(e) => panic!("{r}:{t}: {e}"),
    }
}

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    let hex = d.hex();
    dir.join("blobs").join("sha256").join(&hex[..2]).join(hex)
}

/// Every blob file under `<dir>/blobs/sha256/xx/`, by digest, with its size.
fn blob_files(dir: &Path) -> BTreeMap<Digest, u64> {
    let mut out = BTreeMap::new();
    let root = dir.join("blobs").join("sha256");
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return out;
    };
    for p in prefixes {
        for f in std::fs::read_dir(p.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let d: Digest = format!("sha256:{}", f.file_name().to_str().unwrap())
                .parse()
                .unwrap();
            out.insert(d, f.metadata().unwrap().len());
        }
    }
    out
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| rd.count())
}

fn denied<T: std::fmt::Debug>(r: Result<T, RegistryError>) -> String {
    match r {
        Err(RegistryError::Denied(msg)) => msg,
        other => panic!("expected DENIED, got {other:?}"),
    }
}

/// The blob digests (config and layers) an image manifest references.
fn referenced_blobs(content: &[u8]) -> Vec<Digest> {
    let v: Value = serde_json::from_slice(content).unwrap();
    let mut out = vec![v["config"]["digest"].as_str().unwrap().parse().unwrap()];
    for l in v["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().parse().unwrap());
    }
    out
}

// ---- 1. garbage collection under fire ----------------------------------------------

/// Rule (gc.rs): "a push in progress never loses a blob it will reference … within
/// the grace period every blob the push wrote stays, and after it the manifest
/// either committed first (the link is referenced: GC keeps it) or is refused with
/// `MANIFEST_BLOB_UNKNOWN` (no broken image is ever stored). A client that skips an
/// upload because `HEAD` found the blob is covered" — and (examples/berth.toml)
/// "nothing uploaded, linked or pushed more recently than [grace] is collected".
///
/// 16 clients push images (2–3 layers from a shared pool, a fresh config each;
/// blobs by `HEAD`-then-skip, cross-repository mount, monolithic or chunked
/// upload) into 4 shared repositories, re-tag two tags each over and over, push
/// some untagged and delete some tags, for 8 s, while garbage collection runs back
/// to back with a 2 s grace and collects manifests, configs and shared layers that
/// fell out of use. Every push must succeed; afterwards exactly what the tags reach
/// is left, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_under_fire_never_breaks_a_push_and_leaves_only_what_tags_reach() {
    const CLIENTS: usize = 16;
    const REPOS: usize = 4;
    const FIRE: Duration = Duration::from_secs(8);
    let (dir, reg) = open(policy(|c| c.gc = gc_grace(2))).await;
    let pool: Arc<Vec<Blob>> = Arc::new(
        (0..112u64)
            .map(|i| layer(1000 + i, 512 + (i as usize * 2711) % 16_000))
            .collect(),
    );
    let pool_digests: HashSet<String> = pool.iter().map(|b| b.digest.to_string()).collect();
    // Every manifest pushed, by repository.
    let pushed: Arc<Mutex<HashMap<String, HashSet<Digest>>>> = Arc::default();
    let started = Instant::now();
    let deadline = started + FIRE;

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (reg, pool, pushed) = (reg.clone(), pool.clone(), pushed.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c as u64);
            let r = repo(&format!("fire/r{}", c % REPOS));
            let from = repo(&format!("fire/r{}", (c + 1) % REPOS));
            let tags: Vec<String> = (0..2).map(|t| format!("c{c}-t{t}")).collect();
            let mut n = 0usize;
            while Instant::now() < deadline {
                n += 1;
                // The layers in fashion move along the pool (16 a second), so layers
                // fall out of use, become garbage and are collected while others are
                // pushed; now and then an old one comes back (GC may have taken it).
                let k = rng.random_range(2..=3);
                let w = (started.elapsed().as_millis() as usize * 16 / 1000).min(pool.len() - 12);
                let mut picked = BTreeSet::new();
                while picked.len() < k {
                    picked.insert(if rng.random_range(0..40) == 0 {
                        rng.random_range(0..w + 12)
                    } else {
                        w + rng.random_range(0..12)
                    });
                }
                let layers: Vec<&Blob> = picked.iter().map(|&i| &pool[i]).collect();
                let cfg = config(&format!("client {c} image {n}"));
                for b in std::iter::once(&cfg).chain(layers.iter().copied()) {
                    let res = match rng.random_range(0..4) {
                        // Like docker: HEAD, and upload only what is missing.
                        0 => match reg.blob_size(&r, &b.digest).await {
                            Ok(size) => {
                                assert_eq!(size, b.size());
                                Ok(())
                            }
                            Err(RegistryError::BlobUnknown(_)) => push_mono(&reg, &r, b).await,
                            Err(e) => Err(e),
                        },
                        // Mount from the neighbour repository, upload if it lacks the blob.
                        1 => match reg.mount_blob(&r, &from, &b.digest).await {
                            Ok(true) => Ok(()),
                            Ok(false) => push_chunked(&reg, &r, b, 2).await,
                            Err(e) => Err(e),
                        },
                        2 => push_mono(&reg, &r, b).await,
                        _ => push_chunked(&reg, &r, b, 3).await,
                    };
                    res.map_err(|e| format!("client {c} image {n}: blob {}: {e}", b.digest))?;
                }
                let m = image(&cfg, &layers);
                pushed
                    .lock()
                    .unwrap()
                    .entry(r.to_string())
                    .or_default()
                    .insert(m.digest.clone());
                let roll = rng.random_range(0..10);
                let reference = if roll == 0 {
                    at(&m.digest)
                } else {
                    tag(&tags[rng.random_range(0..tags.len())])
                };
                put(&reg, &r, &reference, &m).await.map_err(|e| {
                    format!(
                        "client {c} image {n}: manifest push to {reference}: {e} ({:?})",
                        e.code()
                    )
                })?;
                if roll == 1 {
                    let t = &tags[rng.random_range(0..tags.len())];
                    match reg.delete_manifest(&r, &tag(t)).await {
                        Ok(_) | Err(RegistryError::ManifestUnknown(_)) => {}
                        Err(e) => return Err(format!("client {c}: delete tag {t}: {e}")),
                    }
                }
            }
            Ok::<usize, String>(n)
        }));
    }

    let collector = {
        let reg = reg.clone();
        tokio::spawn(async move {
            let (mut passes, mut manifests, mut blobs, mut rechecked) = (0, 0, 0, 0);
            let (mut layer_links, mut layer_blobs) = (0, 0);
            while Instant::now() < deadline {
                let report = reg.gc(false).await.unwrap();
                passes += 1;
                manifests += report.manifests.len();
                blobs += report.blobs.len();
                rechecked += report.kept_by_recheck;
                // Shared layers unlinked from a repository, or deleted outright.
                layer_links += report
                    .links
                    .iter()
                    .filter(|l| pool_digests.contains(l.split_once('@').unwrap().1))
                    .count();
                layer_blobs += report
                    .blobs
                    .iter()
                    .filter(|b| pool_digests.contains(&b.digest))
                    .count();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (
                passes,
                manifests,
                blobs,
                rechecked,
                layer_links,
                layer_blobs,
            )
        })
    };

    let mut images = 0;
    let mut failures = Vec::new();
    for c in clients {
        match c.await.unwrap() {
            Ok(n) => images += n,
            Err(e) => failures.push(e),
        }
    }
    let (passes, gc_manifests, gc_blobs, rechecked, layer_links, layer_blobs) =
        collector.await.unwrap();
    eprintln!(
        "{images} images pushed by {CLIENTS} clients in {:?}; {passes} GC passes deleted \
         {gc_manifests} manifests and {gc_blobs} blobs under fire ({layer_links} shared-layer \
         links and {layer_blobs} shared layers among them; {rechecked} saved by re-check)",
        started.elapsed()
    );
    assert!(failures.is_empty(), "pushes failed under GC: {failures:#?}");
    assert!(
        images > 2 * CLIENTS,
        "too few pushes to mean anything: {images}"
    );
    // GC really ran concurrently with the pushes, and really deleted.
    assert!(passes >= 3, "only {passes} GC passes ran under fire");
    assert!(
        gc_manifests > 0 && gc_blobs > 0,
        "GC deleted nothing under fire ({gc_manifests} manifests, {gc_blobs} blobs)"
    );
    assert!(
        layer_links > 0,
        "GC never unlinked a shared layer under fire ({layer_links} links, {layer_blobs} blobs)"
    );

    // Quiet now: once everything is older than the grace, two passes leave only
    // what tags reach, and the second finds nothing more.
    outlive_grace(2).await;
    reg.gc(false).await.unwrap();
    let second = reg.gc(false).await.unwrap();
    assert!(
        second.manifests.is_empty()
            && second.links.is_empty()
            && second.blobs.is_empty()
            && second.orphan_files.is_empty(),
        "a second pass still found garbage: {second:?}"
    );

    let pushed = pushed.lock().unwrap().clone();
    let usage = reg.usage().await.unwrap();
    let mut referenced: BTreeSet<Digest> = BTreeSet::new();
    let mut tagged_total = 0;
    for i in 0..REPOS {
        let r = repo(&format!("fire/r{i}"));
        let tags = reg.tags(&r, 1000, None).await.unwrap();
        let mut live = HashSet::new();
        let mut repo_blobs = BTreeSet::new();
        for t in &tags {
            let m = reg.manifest(&r, &tag(t)).await.unwrap();
            assert_eq!(Digest::sha256_of(&m.content), m.digest, "{r}:{t}");
            for d in referenced_blobs(&m.content) {
                assert_blob_whole(&reg, &r, &d).await;
                repo_blobs.insert(d.clone());
                referenced.insert(d);
            }
            live.insert(m.digest);
        }
        tagged_total += live.len();
        // Manifests no tag reaches are gone.
        for d in pushed.get(r.as_str()).into_iter().flatten() {
            if !live.contains(d) {
                assert_manifest_gone(&reg, &r, d).await;
            }
        }
        // The repository links exactly the blobs its tagged images reference.
        let u = usage
            .repositories
            .iter()
            .find(|u| u.usage.repository == r.as_str())
            .unwrap_or_else(|| panic!("no usage for {r}"));
        assert_eq!(u.usage.blobs, repo_blobs.len() as u64, "links left in {r}");
        assert_eq!(
            u.usage.manifests,
            live.len() as u64,
            "manifests left in {r}"
        );
    }
    assert!(tagged_total > 0);
    // Every blob file left on disk is referenced by a remaining manifest.
    let files = blob_files(dir.path());
    let unreferenced: Vec<&Digest> = files.keys().filter(|d| !referenced.contains(d)).collect();
    assert!(
        unreferenced.is_empty(),
        "{} unreachable blob files remain: {unreferenced:?}",
        unreferenced.len()
    );
    assert_eq!(files.len(), referenced.len());
    assert_eq!(
        count_entries(&dir.path().join("uploads")),
        0,
        "upload files left behind"
    );
    eprintln!("gc under fire: {:?} in all", started.elapsed());
}

/// Rule (gc.rs): "A client that skips an upload because `HEAD` found the blob is
/// covered by [`crate::tracking::RecentBlobs`]" — a blob `HEAD` reports present
/// stays linked for the grace period, so the manifest pushed next finds it.
///
/// The sharpest case: a sweep is removing old, unreferenced links one by one, and
/// a client asks about the next one on its list just as the sweep reaches it.
/// The client follows the sweep (watching links disappear with `GET`, which does
/// not count as a `HEAD`), asks with `HEAD` about the link the sweep will take
/// next, and when `HEAD` says present, pushes a manifest referencing it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_head_found_is_never_swept_from_under_the_next_push() {
    const LINKS: u64 = 60;
    let (_dir, reg) = open(policy(|c| c.gc = gc_grace(2))).await;
    let r = repo("race/app");
    let mut blobs: Vec<Blob> = (0..LINKS).map(|i| layer(5000 + i, 200)).collect();
    for b in &blobs {
        push_mono(&reg, &r, b).await.unwrap();
    }
    // The sweep takes links in digest order.
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    outlive_grace(2).await;
    // Fresh, so never collected: the config of the images the client pushes.
    let cfg = config("racer");
    push_mono(&reg, &r, &cfg).await.unwrap();

    let sweep = {
        let reg = reg.clone();
        tokio::spawn(async move { reg.gc(false).await.unwrap() })
    };
    let (mut asked, mut found, mut broken) = (0, 0, Vec::new());
    let mut i = 0;
    while i + 1 < blobs.len() && !sweep.is_finished() {
        // Wait for the sweep to take link i …
        while !sweep.is_finished() {
            match read_blob(&reg, &r, &blobs[i].digest).await {
                Err(RegistryError::BlobUnknown(_)) => break,
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
        // … and ask about the next one, pushing at once what HEAD found.
        let next = &blobs[i + 1];
        asked += 1;
        match reg.blob_size(&r, &next.digest).await {
            Ok(_) => {
                found += 1;
                let m = image(&cfg, &[next]);
                if let Err(e) = put(&reg, &r, &at(&m.digest), &m).await {
                    broken.push(format!("{}: {e}", next.digest));
                }
            }
            Err(RegistryError::BlobUnknown(_)) => {}
            Err(e) => panic!("{e}"),
        }
        i += 2;
    }
    let report = sweep.await.unwrap();
    eprintln!(
        "asked about {asked} links as the sweep reached them: {found} found by HEAD, \
         {} broken pushes; the sweep removed {} links",
        broken.len(),
        report.links.len()
    );
    assert!(
        asked >= 10,
        "the client did not keep up with the sweep ({asked} asked)"
    );
    assert!(
        broken.is_empty(),
        "a blob HEAD reported present was swept before the manifest push: {broken:#?}"
    );
}

// ---- 2. indexes and referrers --------------------------------------------------------

/// Rule (lifecycle.rs, the live set): "tags, manifests younger than [the grace] …
/// and everything reachable from those through index children and referrers" is
/// live; the rest goes. A multi-arch index tagged `v1` keeps its untagged children,
/// a signature whose subject is the index and an SBOM whose subject is a child, with
/// all their blobs; deleting the tag lets one pass collect all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_children_and_referrers_live_and_die_with_the_tag() {
    let (dir, reg) = open(policy(|c| c.gc = gc_grace(2))).await;
    let r = repo("multi/app");
    let shared = layer(1, 2000);
    let (l_amd, l_arm) = (layer(2, 3000), layer(3, 3100));
    let amd = push_image(
        &reg,
        &r,
        &at(&image(&config("amd64"), &[&l_amd, &shared]).digest),
        &config("amd64"),
        &[&l_amd, &shared],
    )
    .await;
    let arm = push_image(
        &reg,
        &r,
        &at(&image(&config("arm64"), &[&l_arm, &shared]).digest),
        &config("arm64"),
        &[&l_arm, &shared],
    )
    .await;
    let idx = index(&[(&amd, "amd64"), (&arm, "arm64")]);
    put(&reg, &r, &tag("v1"), &idx).await.unwrap();
    let empty = empty_config();
    push_mono(&reg, &r, &empty).await.unwrap();
    let sig_blob = Blob::new(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        &b"signature of the index"[..],
    );
    push_mono(&reg, &r, &sig_blob).await.unwrap();
    let sig = artifact(COSIGN_SIG, &idx, &[&sig_blob]);
    let put_sig = put(&reg, &r, &at(&sig.digest), &sig).await.unwrap();
    assert_eq!(put_sig.subject.as_ref(), Some(&idx.digest));
    let sbom_blob = Blob::new(
        "application/spdx+json",
        &b"{\"spdxVersion\":\"SPDX-2.3\"}"[..],
    );
    push_mono(&reg, &r, &sbom_blob).await.unwrap();
    let sbom = artifact("application/vnd.example.sbom.v1+json", &amd, &[&sbom_blob]);
    put(&reg, &r, &at(&sbom.digest), &sbom).await.unwrap();

    let manifests = [&idx, &amd, &arm, &sig, &sbom];
    let blobs = [
        config("amd64"),
        config("arm64"),
        l_amd.clone(),
        l_arm.clone(),
        shared.clone(),
        empty.clone(),
        sig_blob.clone(),
        sbom_blob.clone(),
    ];
    assert_eq!(blob_files(dir.path()).len(), blobs.len());

    outlive_grace(2).await;
    let report = reg.gc(false).await.unwrap();
    assert!(
        report.manifests.is_empty() && report.links.is_empty() && report.blobs.is_empty(),
        "GC took something reachable from tag v1: {report:?}"
    );
    for m in manifests {
        assert_manifest_present(&reg, &r, &m.digest).await;
    }
    for b in &blobs {
        assert_blob_whole(&reg, &r, &b.digest).await;
    }
    let referrers: Value =
        serde_json::from_slice(&reg.referrers(&r, &idx.digest, None).await.unwrap()).unwrap();
    assert_eq!(referrers["manifests"][0]["digest"], sig.digest.to_string());

    reg.delete_manifest(&r, &tag("v1")).await.unwrap();
    let report = reg.gc(false).await.unwrap();
    let want: BTreeSet<String> = manifests
        .iter()
        .map(|m| format!("{r}@{}", m.digest))
        .collect();
    let got: BTreeSet<String> = report.manifests.iter().cloned().collect();
    assert_eq!(
        got, want,
        "one pass collects the index, its children and referrers"
    );
    let want: BTreeSet<String> = blobs.iter().map(|b| b.digest.to_string()).collect();
    let got: BTreeSet<String> = report.blobs.iter().map(|b| b.digest.clone()).collect();
    assert_eq!(got, want);
    assert_eq!(
        report.bytes_freed,
        blobs.iter().map(Blob::size).sum::<u64>()
    );
    for m in manifests {
        assert_manifest_gone(&reg, &r, &m.digest).await;
    }
    for b in &blobs {
        assert_blob_gone(&reg, dir.path(), &r, &b.digest).await;
    }
    assert!(blob_files(dir.path()).is_empty());
}

/// A client that finds an index's child present (`HEAD` by digest) pushes only
/// the index: the child must not be collected in between. Rule (gc.rs): blobs and
/// manifests `HEAD`ed within the grace period count as live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_head_by_digest_keeps_an_untagged_child_for_the_grace() {
    let (_dir, reg) = open(policy(|c| c.gc = gc_grace(2))).await;
    let r = repo("head/idx");
    let l = layer(90, 1200);
    let cfg = config("child");
    let child_digest = image(&cfg, &[&l]).digest;
    let child = push_image(&reg, &r, &at(&child_digest), &cfg, &[&l]).await;
    outlive_grace(2).await;
    // The client asks whether the child is there: it is, so it skips it.
    reg.manifest_head(&r, &at(&child.digest)).await.unwrap();
    let report = reg.gc(false).await.unwrap();
    assert!(report.manifests.is_empty(), "{:?}", report.manifests);
    let idx = index(&[(&child, "amd64")]);
    put(&reg, &r, &tag("v1"), &idx).await.unwrap();
    // Untagged and never asked about: collected once past the grace.
    let lone_cfg = config("lone");
    let lone_digest = image(&lone_cfg, &[&l]).digest;
    let lone = push_image(&reg, &r, &at(&lone_digest), &lone_cfg, &[&l]).await;
    outlive_grace(2).await;
    let report = reg.gc(false).await.unwrap();
    assert_eq!(report.manifests, vec![format!("{r}@{}", lone.digest)]);
    assert_manifest_present(&reg, &r, &child.digest).await;
}

/// Rule (GcConfig::untagged): "`keep`: [untagged manifests] are kept (referrers of
/// deleted manifests still go)". An untagged plain manifest survives, and so does
/// the referrer of an untagged manifest that is still there; the referrer of a
/// manifest deleted by digest goes, with the blobs only it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagged_keep_keeps_plain_manifests_but_not_orphaned_referrers() {
    let (dir, reg) = open(policy(|c| {
        c.gc = GcConfig {
            untagged: "keep".into(),
            ..gc_grace(2)
        }
    }))
    .await;
    let r = repo("keep/app");
    let lp = layer(10, 1500);
    let plain_cfg = config("plain");
    let plain = image(&plain_cfg, &[&lp]);
    push_image(&reg, &r, &at(&plain.digest), &plain_cfg, &[&lp]).await;
    let empty = empty_config();
    push_mono(&reg, &r, &empty).await.unwrap();
    // A referrer of the plain manifest, which stays.
    let kept_sig_blob = Blob::new(LAYER, &b"signature of plain"[..]);
    push_mono(&reg, &r, &kept_sig_blob).await.unwrap();
    let kept_sig = artifact(COSIGN_SIG, &plain, &[&kept_sig_blob]);
    put(&reg, &r, &at(&kept_sig.digest), &kept_sig)
        .await
        .unwrap();
    // A subject deleted by digest, and its signature.
    let ls = layer(11, 1700);
    let subj_cfg = config("subject");
    let subj = image(&subj_cfg, &[&ls]);
    push_image(&reg, &r, &at(&subj.digest), &subj_cfg, &[&ls]).await;
    let sig_blob = Blob::new(LAYER, &b"signature of the subject"[..]);
    push_mono(&reg, &r, &sig_blob).await.unwrap();
    let sig = artifact(COSIGN_SIG, &subj, &[&sig_blob]);
    put(&reg, &r, &at(&sig.digest), &sig).await.unwrap();
    reg.delete_manifest(&r, &at(&subj.digest)).await.unwrap();

    outlive_grace(2).await;
    let report = reg.gc(false).await.unwrap();
    assert_eq!(report.manifests, vec![format!("{r}@{}", sig.digest)]);
    for m in [&plain, &kept_sig] {
        assert_manifest_present(&reg, &r, &m.digest).await;
    }
    for b in [&plain_cfg, &lp, &empty, &kept_sig_blob] {
        assert_blob_whole(&reg, &r, &b.digest).await;
    }
    assert_manifest_gone(&reg, &r, &sig.digest).await;
    for b in [&subj_cfg, &ls, &sig_blob] {
        assert_blob_gone(&reg, dir.path(), &r, &b.digest).await;
    }
    assert_eq!(blob_files(dir.path()).len(), 4);
}

// ---- 3. dry run ----------------------------------------------------------------------

/// Rule (Registry::gc): "`dry_run` reports what would go without deleting
/// anything". A dry pass reports exactly the manifests, links, blobs, orphan files
/// and bytes a real pass then deletes, and leaves every one of them in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_what_a_real_pass_deletes_and_deletes_nothing() {
    let (dir, reg) = open(policy(|c| c.gc = gc_grace(2))).await;
    let (r, r2) = (repo("dry/app"), repo("dry/other"));
    let (a, b, c) = (layer(20, 4000), layer(21, 5000), layer(22, 6000));
    let (cfg1, cfg2, cfg3, cfg4) = (config("1"), config("2"), config("3"), config("4"));
    let m1 = push_image(&reg, &r, &tag("v1"), &cfg1, &[&a, &b]).await;
    // v1 moves on: m1 is unreachable.
    let m2 = push_image(&reg, &r, &tag("v1"), &cfg2, &[&b, &c]).await;
    let m3 = push_image(&reg, &r, &tag("gone"), &cfg3, &[&c]).await;
    reg.delete_manifest(&r, &tag("gone")).await.unwrap();
    let m4 = push_image(&reg, &r, &at(&image(&cfg4, &[&a]).digest), &cfg4, &[&a]).await;
    // Uploaded, never referenced.
    let unused = layer(23, 777);
    push_mono(&reg, &r, &unused).await.unwrap();
    // Mounted into another repository and never referenced there: only the link goes.
    assert!(reg.mount_blob(&r2, &r, &c.digest).await.unwrap());
    // A blob file the metadata never knew (a crash between rename and link).
    let orphan = Blob::new(LAYER, &b"left by a crash"[..]);
    let path = blob_path(dir.path(), &orphan.digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &orphan.data).unwrap();

    outlive_grace(2).await;
    let files_before = blob_files(dir.path());
    let dry = reg.gc(true).await.unwrap();
    assert!(dry.dry_run);
    let dead_manifests: BTreeSet<String> = [&m1, &m3, &m4]
        .iter()
        .map(|m| format!("{r}@{}", m.digest))
        .collect();
    assert_eq!(
        dry.manifests.iter().cloned().collect::<BTreeSet<_>>(),
        dead_manifests
    );
    let dead_blobs: BTreeSet<String> = [&cfg1, &cfg3, &cfg4, &a, &unused]
        .iter()
        .map(|b| b.digest.to_string())
        .collect();
    assert_eq!(
        dry.blobs
            .iter()
            .map(|b| b.digest.clone())
            .collect::<BTreeSet<_>>(),
        dead_blobs
    );
    let mut dead_links: BTreeSet<String> = [&cfg1, &cfg3, &cfg4, &a, &unused]
        .iter()
        .map(|b| format!("{r}@{}", b.digest))
        .collect();
    dead_links.insert(format!("{r2}@{}", c.digest));
    assert_eq!(
        dry.links.iter().cloned().collect::<BTreeSet<_>>(),
        dead_links
    );
    assert_eq!(dry.orphan_files.len(), 1);
    assert_eq!(dry.orphan_files[0].digest, orphan.digest.to_string());
    let dead_bytes: u64 = [&cfg1, &cfg3, &cfg4, &a, &unused, &orphan]
        .iter()
        .map(|b| b.size())
        .sum();
    assert_eq!(dry.bytes_freed, dead_bytes);

    // Nothing was deleted.
    assert_eq!(blob_files(dir.path()), files_before);
    for m in [&m1, &m2, &m3, &m4] {
        assert_manifest_present(&reg, &r, &m.digest).await;
    }
    for bl in [&a, &b, &c, &cfg1, &cfg2, &cfg3, &cfg4, &unused] {
        assert_blob_whole(&reg, &r, &bl.digest).await;
    }
    assert_blob_whole(&reg, &r2, &c.digest).await;

    let real = reg.gc(false).await.unwrap();
    assert!(!real.dry_run);
    let sorted = |v: &Vec<String>| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(sorted(&real.manifests), sorted(&dry.manifests));
    assert_eq!(sorted(&real.links), sorted(&dry.links));
    let blobs = |v: &Vec<berth_registry::BlobFreed>| {
        v.iter()
            .map(|b| (b.digest.clone(), b.size))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(blobs(&real.blobs), blobs(&dry.blobs));
    assert_eq!(blobs(&real.orphan_files), blobs(&dry.orphan_files));
    assert_eq!(real.bytes_freed, dry.bytes_freed);
    assert_eq!(real.kept_by_recheck, 0);

    // And the real pass did delete them.
    for m in [&m1, &m3, &m4] {
        assert_manifest_gone(&reg, &r, &m.digest).await;
    }
    assert_manifest_present(&reg, &r, &m2.digest).await;
    for bl in [&cfg1, &cfg3, &cfg4, &a, &unused, &orphan] {
        assert_blob_gone(&reg, dir.path(), &r, &bl.digest).await;
    }
    for bl in [&cfg2, &b, &c] {
        assert_blob_whole(&reg, &r, &bl.digest).await;
    }
    assert!(matches!(
        reg.blob_size(&r2, &c.digest).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    let nothing = reg.gc(true).await.unwrap();
    assert!(nothing.manifests.is_empty() && nothing.blobs.is_empty() && nothing.links.is_empty());
}

// ---- 4. retention ---------------------------------------------------------------------

fn decisions(report: &RetentionReport) -> BTreeSet<String> {
    report
        .deleted
        .iter()
        .map(|d| format!("{}:{}", d.repository, d.tag))
        .collect()
}

/// Rule (retention.rs): "A tag is deleted when all of these hold: it is not among the
/// `keep_last` newest; its name does not match `keep_tags`; `older_than` is unset, or
/// it was pointed longer ago than that; `not_pulled_for` is unset, or its manifest was
/// last pulled (never pulled: pushed) longer ago than that; `keep_signed` is off, or
/// its manifest has no signature; no immutability rule covers it." Only tags go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_rules_delete_exactly_the_tags_they_should() {
    let rule = |repos: &str| RetentionRuleConfig {
        repositories: vec![repos.into()],
        ..Default::default()
    };
    let (_dir, reg) = open(policy(|c| {
        c.retention = RetentionConfig {
            rules: vec![
                RetentionRuleConfig {
                    keep_last: Some(2),
                    keep_tags: Some("release-.*".into()),
                    ..rule("ret/keep")
                },
                RetentionRuleConfig {
                    older_than: Some(Amount::Text("2s".into())),
                    ..rule("ret/age")
                },
                RetentionRuleConfig {
                    not_pulled_for: Some(Amount::Text("2s".into())),
                    ..rule("ret/pull")
                },
                RetentionRuleConfig {
                    older_than: Some(Amount::Text("1s".into())),
                    keep_signed: true,
                    ..rule("ret/signed")
                },
                RetentionRuleConfig {
                    older_than: Some(Amount::Text("1s".into())),
                    ..rule("ret/imm")
                },
            ],
            ..RetentionConfig::default()
        };
        c.immutable_tags = ImmutableConfig {
            rules: vec![ImmutableRuleConfig {
                repositories: vec!["ret/imm".into()],
                tags: Some("v.*".into()),
                except: vec![],
            }],
        };
    }))
    .await;
    let l = layer(30, 1000);
    let mut n = 0;
    let mut push = async |r: &str, t: &str| -> Manifest {
        n += 1;
        push_image(
            &reg,
            &repo(r),
            &tag(t),
            &config(&format!("retention {n}")),
            &[&l],
        )
        .await
    };

    // Pushed first ("old" below: at least 3 s before the passes).
    let mut old = HashMap::new();
    for (r, t) in [
        ("ret/keep", "old-a"),
        ("ret/keep", "old-b"),
        ("ret/keep", "release-1"),
        ("ret/age", "stale"),
        ("ret/pull", "pulled"),
        ("ret/pull", "idle"),
        ("ret/signed", "signed-by-referrer"),
        ("ret/signed", "signed-by-tag"),
        ("ret/signed", "plain"),
        ("ret/imm", "v1"),
        ("ret/imm", "scratch"),
    ] {
        old.insert(format!("{r}:{t}"), push(r, t).await);
    }
    let signed = repo("ret/signed");
    let empty = empty_config();
    push_mono(&reg, &signed, &empty).await.unwrap();
    let sig_layer = Blob::new(LAYER, &b"cosign signature"[..]);
    push_mono(&reg, &signed, &sig_layer).await.unwrap();
    let sig = artifact(
        COSIGN_SIG,
        &old["ret/signed:signed-by-referrer"],
        &[&sig_layer],
    );
    put(&reg, &signed, &at(&sig.digest), &sig).await.unwrap();
    // The cosign tag scheme: `sha256-<hex>.sig` names the signed manifest.
    let sig_tag = format!(
        "sha256-{}.sig",
        old["ret/signed:signed-by-tag"].digest.hex()
    );
    push_image(
        &reg,
        &signed,
        &tag(&sig_tag),
        &config("legacy cosign signature"),
        &[&sig_layer],
    )
    .await;

    tokio::time::sleep(Duration::from_millis(3100)).await;
    // Pushed just now.
    for (r, t) in [
        ("ret/keep", "new-1"),
        ("ret/keep", "new-2"),
        ("ret/age", "fresh"),
        ("ret/pull", "new-unpulled"),
    ] {
        push(r, t).await;
    }
    let pulled = repo("ret/pull");
    reg.record_pull(&pulled, &old["ret/pull:pulled"].digest);
    reg.flush_pulls().await.unwrap();

    let want: BTreeSet<String> = [
        "ret/keep:old-a",
        "ret/keep:old-b",
        "ret/age:stale",
        "ret/pull:idle",
        "ret/signed:plain",
        "ret/imm:scratch",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let all_tags = [
        (
            "ret/keep",
            vec!["new-1", "new-2", "old-a", "old-b", "release-1"],
        ),
        ("ret/age", vec!["fresh", "stale"]),
        ("ret/pull", vec!["idle", "new-unpulled", "pulled"]),
        (
            "ret/signed",
            vec![
                "plain",
                sig_tag.as_str(),
                "signed-by-referrer",
                "signed-by-tag",
            ],
        ),
        ("ret/imm", vec!["scratch", "v1"]),
    ];

    let dry = reg.apply_retention(true).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(decisions(&dry), want, "dry run: {dry:#?}");
    // A dry run deletes nothing.
    for (r, tags) in &all_tags {
        let mut tags = tags.clone();
        tags.sort();
        assert_eq!(reg.tags(&repo(r), 100, None).await.unwrap(), tags, "{r}");
    }

    let real = reg.apply_retention(false).await.unwrap();
    assert_eq!(decisions(&real), want, "{real:#?}");
    for (r, tags) in &all_tags {
        for t in tags {
            let present = resolve(&reg, &repo(r), t).await.is_some();
            let key = format!("{r}:{t}");
            assert_eq!(present, !want.contains(&key), "{key}");
        }
    }
    // Kept for the reasons the rules give.
    let kept_for = |key: &str| -> String {
        real.kept
            .iter()
            .find(|d| format!("{}:{}", d.repository, d.tag) == key)
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| panic!("{key} not among kept: {:#?}", real.kept))
    };
    assert!(kept_for("ret/signed:signed-by-referrer").contains("signed"));
    assert!(kept_for("ret/signed:signed-by-tag").contains("signed"));
    assert!(kept_for("ret/imm:v1").contains("immutable"));
    // Retention deletes tags only: the manifests stay until GC.
    for key in &want {
        let (r, _) = key.split_once(':').unwrap();
        if let Some(m) = old.get(key) {
            assert_manifest_present(&reg, &repo(r), &m.digest).await;
        }
    }
    // A second pass finds nothing more to delete.
    assert!(reg.apply_retention(false).await.unwrap().deleted.is_empty());
}

// ---- 5. immutable tags ----------------------------------------------------------------

/// Rule (examples/berth.toml): "Tags that can be created but never moved or deleted
/// (403 DENIED naming the rule)" — here `repositories = ["prod/**"], tags = "v.*",
/// except = ["latest"]`. A refused change changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_tags_are_created_once_and_never_moved_or_deleted() {
    let (_dir, reg) = open(policy(|c| {
        c.immutable_tags = ImmutableConfig {
            rules: vec![ImmutableRuleConfig {
                repositories: vec!["prod/**".into()],
                tags: Some("v.*".into()),
                except: vec!["latest".into()],
            }],
        }
    }))
    .await;
    let (prod, dev) = (repo("prod/app"), repo("dev/app"));
    let l = layer(40, 1000);
    let (c1, c2) = (config("one"), config("two"));
    let (m1, m2) = (image(&c1, &[&l]), image(&c2, &[&l]));
    for r in [&prod, &dev] {
        for b in [&l, &c1, &c2] {
            push_mono(&reg, r, b).await.unwrap();
        }
    }
    put(&reg, &prod, &tag("v1"), &m1).await.unwrap();
    put(&reg, &prod, &tag("latest"), &m1).await.unwrap();

    // Moving v1 is refused, naming the rule, and nothing changes.
    let msg = denied(put(&reg, &prod, &tag("v1"), &m2).await);
    assert!(
        msg.contains("immutable_tags.rules[0]") && msg.contains("prod/**"),
        "{msg}"
    );
    assert!(msg.contains("v1"), "{msg}");
    assert_eq!(resolve(&reg, &prod, "v1").await, Some(m1.digest.clone()));
    assert_manifest_gone(&reg, &prod, &m2.digest).await;
    // Also through `?tag=`: the whole push is refused, `latest` does not move either.
    let v1: berth_oci::Tag = "v1".parse().unwrap();
    let refused = reg
        .put_manifest(
            &prod,
            &tag("latest"),
            std::slice::from_ref(&v1),
            Some(m2.media_type),
            m2.bytes.clone(),
        )
        .await;
    assert!(denied(refused).contains("immutable_tags.rules[0]"));
    assert_eq!(
        resolve(&reg, &prod, "latest").await,
        Some(m1.digest.clone())
    );
    assert_manifest_gone(&reg, &prod, &m2.digest).await;

    // Pushing the same manifest to v1 again is fine.
    put(&reg, &prod, &tag("v1"), &m1).await.unwrap();
    assert_eq!(resolve(&reg, &prod, "v1").await, Some(m1.digest.clone()));

    // Deleting the tag, or the manifest it points at, is refused.
    let msg = denied(reg.delete_manifest(&prod, &tag("v1")).await);
    assert!(msg.contains("immutable_tags.rules[0]"), "{msg}");
    let msg = denied(reg.delete_manifest(&prod, &at(&m1.digest)).await);
    assert!(
        msg.contains("immutable_tags.rules[0]") && msg.contains("v1"),
        "{msg}"
    );
    assert_eq!(resolve(&reg, &prod, "v1").await, Some(m1.digest.clone()));
    assert_manifest_present(&reg, &prod, &m1.digest).await;
    assert_eq!(
        resolve(&reg, &prod, "latest").await,
        Some(m1.digest.clone())
    );

    // A new immutable tag can be created, also deeper under prod/.
    put(&reg, &prod, &tag("v2"), &m2).await.unwrap();
    assert_eq!(resolve(&reg, &prod, "v2").await, Some(m2.digest.clone()));
    let deep = repo("prod/team/app");
    for b in [&l, &c1, &c2] {
        push_mono(&reg, &deep, b).await.unwrap();
    }
    put(&reg, &deep, &tag("v9"), &m1).await.unwrap();
    denied(put(&reg, &deep, &tag("v9"), &m2).await);

    // `latest` (excepted) and tags the regex does not cover move and go freely.
    put(&reg, &prod, &tag("latest"), &m2).await.unwrap();
    assert_eq!(
        resolve(&reg, &prod, "latest").await,
        Some(m2.digest.clone())
    );
    reg.delete_manifest(&prod, &tag("latest")).await.unwrap();
    assert_eq!(resolve(&reg, &prod, "latest").await, None);
    put(&reg, &prod, &tag("stable"), &m1).await.unwrap();
    put(&reg, &prod, &tag("stable"), &m2).await.unwrap();
    assert_eq!(
        resolve(&reg, &prod, "stable").await,
        Some(m2.digest.clone())
    );

    // Outside prod/** v1 is an ordinary tag.
    put(&reg, &dev, &tag("v1"), &m1).await.unwrap();
    put(&reg, &dev, &tag("v1"), &m2).await.unwrap();
    assert_eq!(resolve(&reg, &dev, "v1").await, Some(m2.digest.clone()));
    reg.delete_manifest(&dev, &tag("v1")).await.unwrap();
    reg.delete_manifest(&dev, &at(&m2.digest)).await.unwrap();
    assert_eq!(resolve(&reg, &dev, "v1").await, None);
}

// ---- 6. quotas ---------------------------------------------------------------------------

/// A body that records whether anything ever read it.
fn watched(data: Bytes, read: Arc<AtomicBool>) -> impl Stream<Item = Chunk> + Send + 'static {
    stream::once(async move {
        read.store(true, Ordering::SeqCst);
        Ok(data)
    })
}

/// Bytes of the blob files `digests`, read from the disk.
fn disk_bytes<'a>(dir: &Path, digests: impl IntoIterator<Item = &'a Digest>) -> u64 {
    digests
        .into_iter()
        .map(|d| std::fs::metadata(blob_path(dir, d)).unwrap().len())
        .sum()
}

/// Rule (examples/berth.toml): "Bytes of unique blobs one repository may hold; a push
/// past it gets 403 DENIED before the bytes are stored" — and (metadata.rs) "a blob
/// already linked there costs nothing".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_pushes_and_mounts_past_the_limit() {
    const LIMIT: u64 = 100 * 1024;
    let (dir, reg) = open(policy(|c| {
        c.quotas = QuotaConfig {
            rules: vec![QuotaRuleConfig {
                repositories: vec!["small/*".into()],
                limit: Amount::Text("100KiB".into()),
            }],
        }
    }))
    .await;
    let (small, other, big) = (repo("small/a"), repo("small/b"), repo("big/x"));
    let used = async |r: &RepoName| -> (u64, u64) {
        let u = reg.usage().await.unwrap();
        u.repositories
            .iter()
            .find(|u| u.usage.repository == r.as_str())
            .map_or((0, 0), |u| (u.usage.bytes, u.usage.blobs))
    };

    // Under the limit: two images sharing layer `a`, by both upload paths.
    let (a, b) = (layer(50, 40_000), layer(51, 30_000));
    let (cfg1, cfg2) = (config("q1"), config("q2"));
    push_mono(&reg, &small, &a).await.unwrap();
    push_chunked(&reg, &small, &b, 3).await.unwrap();
    push_image(&reg, &small, &tag("one"), &cfg1, &[&a, &b]).await;
    push_image(&reg, &small, &tag("two"), &cfg2, &[&a]).await;
    let mut linked: Vec<&Digest> = vec![&a.digest, &b.digest, &cfg1.digest, &cfg2.digest];
    let base = disk_bytes(dir.path(), linked.iter().copied());
    assert_eq!(
        used(&small).await,
        (base, 4),
        "the shared layer counts once"
    );

    // A monolithic push that declares more than the room left: refused before a byte
    // is read or stored.
    let c = layer(52, 40_000);
    let files = blob_files(dir.path());
    let read = Arc::new(AtomicBool::new(false));
    let msg = denied(
        reg.put_blob_monolithic(
            &small,
            &c.digest,
            Some(c.size()),
            watched(c.data.clone(), read.clone()),
        )
        .await,
    );
    assert!(msg.contains("quota"), "{msg}");
    assert!(
        !read.load(Ordering::SeqCst),
        "the body was read although its length was refused"
    );
    // Without a Content-Length: cut off at the limit, nothing kept.
    denied(
        reg.put_blob_monolithic(&small, &c.digest, None, body(vec![c.data.clone()]))
            .await,
    );
    assert_eq!(
        blob_files(dir.path()),
        files,
        "a refused push left a blob file"
    );
    assert_eq!(used(&small).await, (base, 4));
    assert!(matches!(
        reg.blob_size(&small, &c.digest).await,
        Err(RegistryError::BlobUnknown(_))
    ));

    // A chunked upload crossing the limit: the chunk that does not fit is refused
    // and the upload keeps only what fit, and can still be finished within it.
    let room = LIMIT - base;
    assert!(room > 20_000 && room < 40_000, "room {room}");
    let piece = |seed: u64, len: usize| layer(seed, len).data;
    let (p1, p2, p3) = (piece(53, 20_000), piece(54, 20_000), piece(55, 5_000));
    let id = reg.start_upload(&small).await.unwrap();
    assert_eq!(
        reg.append_upload(&small, id, None, body(vec![p1.clone()]))
            .await
            .unwrap(),
        20_000
    );
    denied(
        reg.append_upload(&small, id, None, body(vec![p2.clone()]))
            .await,
    );
    assert_eq!(reg.upload_status(&small, id).await.unwrap(), 20_000);
    // With a Content-Range that does not fit: refused at once.
    denied(
        reg.append_upload(&small, id, Some((20_000, 39_999)), body(vec![p2.clone()]))
            .await,
    );
    assert_eq!(reg.upload_status(&small, id).await.unwrap(), 20_000);
    let whole = Blob::new(LAYER, [p1, p3.clone()].concat());
    reg.complete_upload(&small, id, &whole.digest, None, body(vec![p3]))
        .await
        .unwrap();
    assert_blob_whole(&reg, &small, &whole.digest).await;
    linked.push(&whole.digest);
    let now = disk_bytes(dir.path(), linked.iter().copied());
    assert_eq!(used(&small).await, (now, 5));
    assert!(LIMIT - now < a.size());

    // A blob the repository already links costs nothing: pushing it again works even
    // though it is larger than the room left, by either upload path.
    push_mono(&reg, &small, &a).await.unwrap();
    let id = reg.start_upload(&small).await.unwrap();
    reg.complete_upload(&small, id, &a.digest, None, body(vec![a.data.clone()]))
        .await
        .unwrap();
    assert_eq!(used(&small).await, (now, 5));

    // A mount past the limit is refused; one that fits is not.
    let d = layer(56, 10_000);
    push_mono(&reg, &big, &d).await.unwrap();
    let msg = denied(reg.mount_blob(&small, &big, &d.digest).await);
    assert!(msg.contains("quota"), "{msg}");
    assert!(matches!(
        reg.blob_size(&small, &d.digest).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    assert_eq!(used(&small).await, (now, 5));
    let e = layer(57, 1_000);
    push_mono(&reg, &big, &e).await.unwrap();
    assert!(reg.mount_blob(&small, &big, &e.digest).await.unwrap());
    linked.push(&e.digest);
    // Another repository under the same rule has its own limit.
    assert!(reg.mount_blob(&other, &small, &a.digest).await.unwrap());

    // Usage is the sum of the unique blob files each repository links, as on disk;
    // a blob shared between repositories counts in each, and once in the total.
    let usage = reg.usage().await.unwrap();
    let of = |r: &RepoName| {
        usage
            .repositories
            .iter()
            .find(|u| u.usage.repository == r.as_str())
            .unwrap()
            .clone()
    };
    let s = of(&small);
    assert_eq!(
        s.usage.bytes,
        disk_bytes(dir.path(), linked.iter().copied())
    );
    assert_eq!(s.usage.blobs, linked.len() as u64);
    assert_eq!((s.usage.manifests, s.usage.tags), (2, 2));
    assert_eq!(s.quota, Some(LIMIT));
    assert!(s.usage.bytes <= LIMIT);
    let o = of(&other);
    assert_eq!(
        (o.usage.bytes, o.usage.blobs, o.quota),
        (a.size(), 1, Some(LIMIT))
    );
    let bx = of(&big);
    assert_eq!(
        (bx.usage.bytes, bx.usage.blobs, bx.quota),
        (d.size() + e.size(), 2, None)
    );
    let on_disk = blob_files(dir.path());
    assert_eq!(usage.unique_blobs, on_disk.len() as u64);
    assert_eq!(usage.unique_bytes, on_disk.values().sum::<u64>());
    assert_eq!(
        s.usage.bytes + o.usage.bytes + bx.usage.bytes,
        usage.unique_bytes + a.size() + e.size(),
        "shared blobs count once per repository"
    );
}

// ---- 7. scrub ------------------------------------------------------------------------------

/// Rule (scrub.rs): "A corrupt (or missing) blob file is moved to `quarantine/` and
/// forgotten by the metadata, so `HEAD`/`GET` answer `BLOB_UNKNOWN` and a client
/// pushes it again (the manifests that reference it stay; they are whole once it is
/// back) … logged and reported by repository and digest."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_quarantines_a_corrupt_blob_until_it_is_pushed_again() {
    let (dir, reg) = open(Lifecycle::default()).await;
    let (r, mirror) = (repo("s/app"), repo("s/mirror"));
    let (bad, good) = (layer(60, 50_000), layer(61, 20_000));
    let cfg = config("scrubbed");
    let m = push_image(&reg, &r, &tag("v1"), &cfg, &[&bad, &good]).await;
    assert!(reg.mount_blob(&mirror, &r, &bad.digest).await.unwrap());

    // Flip one byte of the layer on disk.
    let path = blob_path(dir.path(), &bad.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12_345] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let report = reg.scrub(Some(0)).await.unwrap();
    assert_eq!(report.blobs_checked, 3);
    assert_eq!(report.bytes_checked, bad.size() + good.size() + cfg.size());
    assert!(report.manifests_checked >= 1);
    assert_eq!(
        report.corrupt.len(),
        1,
        "only the flipped blob: {:#?}",
        report.corrupt
    );
    let c = &report.corrupt[0];
    assert_eq!(c.kind, "blob");
    assert_eq!(c.digest, bad.digest.to_string());
    assert_eq!(c.repositories, vec![r.to_string(), mirror.to_string()]);
    let moved = PathBuf::from(c.moved_to.clone().expect("moved aside"));
    assert!(
        moved.starts_with(dir.path().join("quarantine")),
        "{moved:?}"
    );
    assert!(
        moved
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("sha256-{}-", bad.digest.hex())),
        "{moved:?}"
    );
    assert_eq!(
        std::fs::read(&moved).unwrap(),
        bytes,
        "the corrupt bytes are kept aside"
    );
    assert!(!path.exists(), "the corrupt file is no longer in blobs/");

    // No longer served anywhere.
    for rr in [&r, &mirror] {
        assert!(matches!(
            reg.blob_size(rr, &bad.digest).await,
            Err(RegistryError::BlobUnknown(_))
        ));
        assert!(matches!(
            read_blob(&reg, rr, &bad.digest).await,
            Err(RegistryError::BlobUnknown(_))
        ));
    }
    // The clean blobs are untouched, the manifest stays.
    assert_blob_whole(&reg, &r, &good.digest).await;
    assert_blob_whole(&reg, &r, &cfg.digest).await;
    assert_eq!(resolve(&reg, &r, "v1").await, Some(m.digest.clone()));

    let q = reg.quarantined().await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].kind.as_str(), q[0].digest.as_str()),
        ("blob", bad.digest.to_string().as_str())
    );
    assert_eq!(q[0].repositories, vec![r.to_string(), mirror.to_string()]);
    assert_eq!(q[0].moved_to.as_deref(), Some(moved.to_str().unwrap()));

    // The manifest that references it is reported as broken.
    let inc = &report.inconsistencies;
    assert!(
        inc.iter().any(|i| i.repository == r.as_str()
            && i.from == format!("manifest {}", m.digest)
            && i.missing == bad.digest.to_string()),
        "{inc:#?}"
    );
    assert_eq!(inc.len(), 1, "{inc:#?}");

    // Pushing the layer again makes the image whole.
    push_mono(&reg, &r, &bad).await.unwrap();
    for d in referenced_blobs(&reg.manifest(&r, &tag("v1")).await.unwrap().content) {
        assert_blob_whole(&reg, &r, &d).await;
    }
    let again = reg.scrub(Some(0)).await.unwrap();
    assert!(again.corrupt.is_empty(), "{:#?}", again.corrupt);
    assert!(
        again.inconsistencies.is_empty(),
        "{:#?}",
        again.inconsistencies
    );
    assert_eq!(
        reg.quarantined().await.unwrap().len(),
        1,
        "the record stays"
    );
}
