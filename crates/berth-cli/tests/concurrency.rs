//! Concurrency: many clients pushing the same blob, distinct blobs, and racing
//! manifests onto one tag, against the real `berth` binary.
//!
//! Data is generated deterministically (seeded PRNG) and streamed to the server
//! chunk by chunk, so the client never holds 32 copies of a blob.

// Helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use futures_util::stream;
use rand::{RngCore, SeedableRng};
use reqwest::StatusCode;

const MIB: usize = 1 << 20;
/// Size of the blob everyone pushes (the issue's "same 50 MB blob").
const SHARED_SIZE: usize = 50 * MIB;
/// Number of concurrent pushes per scenario.
const PUSHES: usize = 32;
/// Size of each distinct blob: 50 MiB as well (plus an odd tail, so the last chunk
/// is short). Even in a debug build 64 x 50 MiB shared plus 32 x 50 MiB distinct
/// pushes finish in well under a minute on 2 cores.
const DISTINCT_SIZE: usize = 50 * MIB + 12_345;
/// Size of each chunk in a generated stream.
const CHUNK: usize = MIB;

/// Deterministic blob contents: a random pool (from a seeded PRNG) sliced at
/// pseudo-random offsets, each chunk stamped with (blob id, chunk index) so every
/// blob and every chunk differs. Cheap to regenerate, so blobs are streamed and
/// verified without keeping them.
#[derive(Clone)]
struct Gen {
    pool: Bytes,
}

const POOL_SHIFT: usize = 64 * 1024;

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut pool = vec![0u8; CHUNK + POOL_SHIFT];
        rng.fill_bytes(&mut pool);
        Gen { pool: pool.into() }
    }

    /// Chunk `k` (of `CHUNK` bytes, shorter at the end) of blob `blob` of `size`.
    fn chunk(&self, blob: u64, k: usize, size: usize) -> Bytes {
        let start = k * CHUNK;
        let len = CHUNK.min(size - start);
        let mut x = blob
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(k as u64)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 31;
        let off = (x % POOL_SHIFT as u64) as usize;
        let mut v = self.pool[off..off + len].to_vec();
        let stamp = [blob.to_le_bytes(), (k as u64).to_le_bytes()].concat();
        let n = stamp.len().min(len);
        v[..n].copy_from_slice(&stamp[..n]);
        v.into()
    }

    fn chunks(&self, size: usize) -> usize {
        size.div_ceil(CHUNK)
    }

    /// Bytes `from..size` of blob `blob` as a stream (`from` on a chunk boundary).
    fn stream(
        &self,
        blob: u64,
        size: usize,
        from_chunk: usize,
        to_chunk: usize,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let g = self.clone();
        stream::iter((from_chunk..to_chunk).map(move |k| Ok(g.chunk(blob, k, size))))
    }

    fn digest(&self, blob: u64, size: usize) -> String {
        let mut h = Hasher::default();
        for k in 0..self.chunks(size) {
            h.update(&self.chunk(blob, k, size));
        }
        h.finish()
    }

    /// Assert `body` is exactly blob `blob`.
    fn assert_is(&self, body: &[u8], blob: u64, size: usize, what: &str) {
        assert_eq!(body.len(), size, "{what}: size");
        for k in 0..self.chunks(size) {
            let want = self.chunk(blob, k, size);
            assert!(
                body[k * CHUNK..k * CHUNK + want.len()] == want[..],
                "{what}: chunk {k} differs from what was pushed"
            );
        }
    }
}

/// How a push is made; every scenario mixes all three.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Single POST ?digest= (end-4b).
    SinglePost,
    /// POST then PUT ?digest= carrying the whole blob (end-4a, end-6).
    PostPut,
    /// POST, PATCH chunks of `n` chunks with Content-Range (end-5), closing PUT.
    Chunked(usize),
}

fn mode_for(i: usize) -> Mode {
    match i % 3 {
        0 => Mode::SinglePost,
        1 => Mode::PostPut,
        _ => Mode::Chunked(1 + i % 4),
    }
}

/// Push blob `blob` of `size` from `blobs` in `mode`; `digest` is its digest.
#[allow(clippy::too_many_arguments)]
async fn push_generated(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    blobs: &Gen,
    blob: u64,
    size: usize,
    digest: &str,
    mode: Mode,
) -> Result<(), PushError> {
    let n = blobs.chunks(size);
    let whole = || stream_body(blobs.stream(blob, size, 0, n));
    match mode {
        Mode::SinglePost => {
            push_blob_monolithic(client, base, repo, digest, whole(), size as u64).await
        }
        Mode::PostPut => {
            let loc = start_upload(client, base, repo).await?;
            let last = LastChunk {
                start: None,
                body: whole(),
                len: size as u64,
            };
            finish_upload(client, &loc, repo, digest, Some(last)).await
        }
        Mode::Chunked(per_patch) => {
            let mut loc = start_upload(client, base, repo).await?;
            let mut k = 0;
            while k < n {
                let to = (k + per_patch).min(n);
                let start = (k * CHUNK) as u64;
                let len = ((to * CHUNK).min(size) - k * CHUNK) as u64;
                let body = stream_body(blobs.stream(blob, size, k, to));
                let (next, _) = patch_chunk(client, base, &loc, start, body, len).await?;
                loc = next;
                k = to;
            }
            finish_upload(client, &loc, repo, digest, None).await
        }
    }
}

/// A spawned push: repository, mode, and its outcome.
type Job = (String, Mode, tokio::task::JoinHandle<Result<(), PushError>>);

/// Await every spawned push (they start together at a barrier); panic listing every
/// failure.
async fn run_all(jobs: Vec<Job>) {
    let mut failures = Vec::new();
    for (repo, mode, h) in jobs {
        match h.await.expect("push task panicked") {
            Ok(()) => {}
            Err(e) => failures.push(format!("{repo} ({mode:?}): {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the concurrent pushes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Spec § Use Cases, Layer Upload De-duplication: "If process A and B upload the
/// same layer at the same time, both operations will proceed and the first to
/// complete will be stored in the registry. Even in the case where both uploads
/// are accepted, the registry may securely only store one copy of the layer since
/// the computed digests match."
/// Spec § Pushing a blob monolithically / in chunks: "Upon successful completion
/// of the request, the response MUST have code `201 Created`".
/// Spec § Pulling blobs: "A GET request to an existing blob URL MUST provide the
/// expected blob, with a response code that MUST be `200 OK`."
///
/// 32 concurrent pushes of the same 50 MB blob into 32 repositories AND 32 into one
/// repository, all 64 at once, mixing single-POST, POST-PUT and chunked pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_blob_pushed_32_times_concurrently_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let base = server.base_url();
    let client = client();
    let blobs = Gen::new(0x5eed_0001);
    const SHARED: u64 = u64::MAX;
    let digest = blobs.digest(SHARED, SHARED_SIZE);
    let t0 = std::time::Instant::now();

    let barrier = Arc::new(tokio::sync::Barrier::new(2 * PUSHES));
    let mut jobs = Vec::new();
    for i in 0..2 * PUSHES {
        let repo = if i < PUSHES {
            format!("shared/r{i:02}")
        } else {
            "shared/same".to_owned()
        };
        let mode = mode_for(i);
        let (client, base, blobs, digest, barrier, r) = (
            client.clone(),
            base.clone(),
            blobs.clone(),
            digest.clone(),
            barrier.clone(),
            repo.clone(),
        );
        let h = tokio::spawn(async move {
            barrier.wait().await;
            push_generated(
                &client,
                &base,
                &r,
                &blobs,
                SHARED,
                SHARED_SIZE,
                &digest,
                mode,
            )
            .await
        });
        jobs.push((repo, mode, h));
    }
    run_all(jobs).await;
    eprintln!("64 pushes of the shared blob took {:?}", t0.elapsed());

    // Exactly one copy on disk, of the right size, and nothing else.
    let files = blob_files(dir.path());
    let copies: Vec<_> = files
        .iter()
        .filter(|(_, name)| name == hex_of(&digest))
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "the shared blob must be stored exactly once: {files:?}"
    );
    let len = std::fs::metadata(&copies[0].0).expect("stat blob").len();
    assert_eq!(len, SHARED_SIZE as u64, "size of the stored shared blob");
    assert_eq!(files.len(), 1, "only one blob was ever pushed: {files:?}");
    let leftovers = upload_entries(dir.path());
    assert!(
        leftovers.is_empty(),
        "upload files left behind after every upload completed: {leftovers:?}"
    );

    // Every repository serves it, with the right digest and bytes.
    let mut repos: Vec<String> = (0..PUSHES).map(|i| format!("shared/r{i:02}")).collect();
    repos.push("shared/same".to_owned());
    for repo in &repos {
        let (status, headers, body) = get_blob(&client, &base, repo, &digest)
            .await
            .expect("GET shared blob");
        assert_eq!(status, StatusCode::OK, "GET shared blob from {repo}");
        assert_eq!(
            header_value(&headers, "docker-content-digest").as_deref(),
            Some(digest.as_str()),
            "Docker-Content-Digest from {repo}"
        );
        blobs.assert_is(
            &body,
            SHARED,
            SHARED_SIZE,
            &format!("shared blob in {repo}"),
        );
    }
    // And the one copy hashes to its name (a full hash, once).
    let on_disk = std::fs::read(&copies[0].0).expect("read blob file");
    assert_eq!(sha256(&on_disk), digest, "blob file content vs its name");
    server.stop();
}

/// Spec § Pushing blobs (all methods answer `201 Created` on success) and § Pulling
/// blobs: every one of 32 distinct blobs pushed at once is stored intact; the
/// `Docker-Content-Digest` "MUST be a digest matching that of the response body".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distinct_blobs_pushed_concurrently_all_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let base = server.base_url();
    let client = client();
    let blobs = Gen::new(0x5eed_0002);
    let t0 = std::time::Instant::now();

    // Digests are computed on the blocking pool, one blob per task.
    let mut digests = Vec::new();
    for i in 0..PUSHES {
        let g = blobs.clone();
        digests.push(tokio::task::spawn_blocking(move || {
            g.digest(i as u64, DISTINCT_SIZE)
        }));
    }
    let mut ds = Vec::new();
    for d in digests {
        ds.push(d.await.expect("digest task"));
    }
    let digests = ds;
    assert_eq!(
        digests.iter().collect::<BTreeSet<_>>().len(),
        PUSHES,
        "generated blobs must be distinct"
    );

    let barrier = Arc::new(tokio::sync::Barrier::new(PUSHES));
    let mut jobs = Vec::new();
    for (i, digest) in digests.iter().enumerate() {
        let repo = format!("distinct/r{}", i % 4);
        let mode = mode_for(i);
        let (client, base, blobs, digest, barrier, r) = (
            client.clone(),
            base.clone(),
            blobs.clone(),
            digest.clone(),
            barrier.clone(),
            repo.clone(),
        );
        let h = tokio::spawn(async move {
            barrier.wait().await;
            push_generated(
                &client,
                &base,
                &r,
                &blobs,
                i as u64,
                DISTINCT_SIZE,
                &digest,
                mode,
            )
            .await
        });
        jobs.push((repo, mode, h));
    }
    run_all(jobs).await;
    eprintln!("32 distinct pushes took {:?}", t0.elapsed());

    for (i, digest) in digests.iter().enumerate() {
        let repo = format!("distinct/r{}", i % 4);
        let (status, headers, body) = get_blob(&client, &base, &repo, digest)
            .await
            .expect("GET distinct blob");
        assert_eq!(status, StatusCode::OK, "GET blob {i} from {repo}");
        assert_eq!(
            header_value(&headers, "docker-content-digest"),
            Some(digest.clone()),
            "Docker-Content-Digest of blob {i}"
        );
        blobs.assert_is(&body, i as u64, DISTINCT_SIZE, &format!("blob {i}"));
        // Linked only where it was pushed.
        let other = format!("distinct/r{}", (i + 1) % 4);
        let (st, _) = head_blob(&client, &base, &other, digest)
            .await
            .expect("HEAD");
        assert_eq!(
            st,
            StatusCode::NOT_FOUND,
            "blob {i} must not be visible in {other}"
        );
    }

    // On disk: exactly the 32 blobs, each once and of the right size.
    let files = blob_files(dir.path());
    let names: BTreeSet<&str> = files.iter().map(|(_, n)| n.as_str()).collect();
    let want: BTreeSet<&str> = digests.iter().map(|d| hex_of(d)).collect();
    assert_eq!(files.len(), PUSHES, "one file per distinct blob: {files:?}");
    assert_eq!(names, want, "blob files vs pushed digests");
    for (path, _) in &files {
        let len = std::fs::metadata(path).expect("stat").len();
        assert_eq!(len, DISTINCT_SIZE as u64, "size of {path:?}");
    }
    let leftovers = upload_entries(dir.path());
    assert!(
        leftovers.is_empty(),
        "upload files left behind after every upload completed: {leftovers:?}"
    );
    server.stop();
}

/// Spec § Pushing Manifests: "The registry MUST store the manifest in the exact
/// byte representation provided by the client. Upon a successful upload, the
/// registry MUST return response code `201 Created`".
/// Spec § Pulling manifests: "If [Docker-Content-Digest is] present, the value of
/// this header MUST be a digest matching that of the response body."
///
/// 16 writers race different manifests onto tag `race` (several rounds each) while
/// readers GET the tag: every PUT is 201; every read is 200 with a body hashing to
/// its Docker-Content-Digest and equal to one of the pushed manifests (never a
/// half-written state or a missing tag); the final tag is one of the 16, intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_manifest_puts_to_one_tag() {
    const WRITERS: usize = 16;
    const ROUNDS: usize = 8;
    const READERS: usize = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let base = server.base_url();
    let client = client();
    let repo = "race/app";

    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let layer = Bytes::from(vec![7u8; 64 * 1024]);
    let cd = push_bytes(&client, &base, repo, &config)
        .await
        .expect("push config");
    let ld = push_blob_chunked(&client, &base, repo, &layer, 10_000)
        .await
        .expect("push layer");
    let config_d = Desc::new(OCI_CONFIG, &cd, config.len() as u64);
    let layer_d = Desc::new(OCI_LAYER, &ld, layer.len() as u64);

    // Manifest 0 is tagged before the race, so the tag always exists.
    let manifests: Vec<Vec<u8>> = (0..=WRITERS)
        .map(|i| {
            // Different sizes too, so a torn read could not go unnoticed.
            let note = format!("writer-{i}-{}", "x".repeat(i * 997));
            image_manifest(&config_d, std::slice::from_ref(&layer_d), Some(&note))
        })
        .collect();
    let by_digest: Arc<HashMap<String, Vec<u8>>> =
        Arc::new(manifests.iter().map(|m| (sha256(m), m.clone())).collect());
    assert_eq!(by_digest.len(), WRITERS + 1, "manifests must differ");
    push_manifest(&client, &base, repo, "race", &manifests[0])
        .await
        .expect("push initial manifest");

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (client, base, done, reads, by_digest) = (
            client.clone(),
            base.clone(),
            done.clone(),
            reads.clone(),
            by_digest.clone(),
        );
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let (status, hdr, body) = get_manifest(&client, &base, repo, "race")
                    .await
                    .expect("GET race");
                assert_eq!(status, StatusCode::OK, "GET tag race during the race");
                let hdr = hdr.expect("Docker-Content-Digest on GET manifest");
                assert_eq!(
                    sha256(&body),
                    hdr,
                    "body of GET tag does not hash to its Docker-Content-Digest"
                );
                let want = by_digest
                    .get(&hdr)
                    .unwrap_or_else(|| panic!("tag points at {hdr}, which nobody pushed"));
                assert!(want[..] == body[..], "manifest bytes differ from the push");
                reads.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut writers = Vec::new();
    for (i, m) in manifests.iter().enumerate().skip(1) {
        let (client, base, barrier, m) = (client.clone(), base.clone(), barrier.clone(), m.clone());
        writers.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut out = Vec::new();
            for round in 0..ROUNDS {
                let r = push_manifest(&client, &base, repo, "race", &m).await;
                out.push(r.map_err(|e| format!("writer {i} round {round}: {e}")));
            }
            out
        }));
    }
    let mut failures = Vec::new();
    for w in writers {
        for r in w.await.expect("writer task panicked") {
            if let Err(e) = r {
                failures.push(e);
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.expect("reader task failed");
    }
    assert!(
        failures.is_empty(),
        "manifest PUTs failed:\n{}",
        failures.join("\n")
    );
    assert!(
        reads.load(Ordering::SeqCst) > 0,
        "readers never completed a read during the race"
    );

    // The tag resolves to one of the racing manifests, byte for byte.
    let (status, hdr, body) = get_manifest(&client, &base, repo, "race")
        .await
        .expect("GET race");
    assert_eq!(status, StatusCode::OK);
    let hdr = hdr.expect("Docker-Content-Digest");
    assert_eq!(sha256(&body), hdr, "final tag body vs its digest");
    assert_ne!(
        hdr,
        sha256(&manifests[0]),
        "the tag still points at the manifest from before the race"
    );
    assert!(
        by_digest.get(&hdr).is_some_and(|m| m[..] == body[..]),
        "final tag content is not one of the pushed manifests"
    );
    // Every racing manifest is stored and retrievable by digest.
    for (d, m) in by_digest.iter() {
        let (status, h, body) = get_manifest(&client, &base, repo, d)
            .await
            .expect("GET by digest");
        assert_eq!(status, StatusCode::OK, "GET manifest {d}");
        assert_eq!(h.as_deref(), Some(d.as_str()));
        assert!(body[..] == m[..], "manifest {d} bytes differ");
    }
    assert_eq!(
        list_tags(&client, &base, repo).await,
        vec!["race".to_owned()]
    );
    server.stop();
}
