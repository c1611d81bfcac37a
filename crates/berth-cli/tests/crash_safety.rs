//! Crash safety: SIGKILL `berth serve` at random points while clients push blobs
//! (chunked and monolithic) and manifests, restart it on the same data directory,
//! and check that nothing acknowledged was lost, nothing visible is corrupt,
//! nothing dangles, and the interrupted push can be completed.
//!
//! The run is reproducible: the seed is printed, and `BERTH_CRASH_SEED=<seed>`
//! replays the same pushes and kill delays (timing still varies a little).

// Helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use reqwest::StatusCode;

/// Kill/restart cycles (the issue asks for at least 20).
const TRIALS: usize = 24;
/// Concurrent pushers, each into its own repository `crash/p<i>`.
const PUSHERS: usize = 2;
/// Blob sizes, log-uniform between these bounds (10 KB - 8 MB).
const MIN_BLOB: f64 = 10_000.0;
const MAX_BLOB: f64 = 8_000_000.0;
/// When to SIGKILL, after the server is up and the pushers started.
const KILL_AFTER_MS: std::ops::Range<u64> = 0..1_000;

fn repo_of(pusher: usize) -> String {
    format!("crash/p{pusher}")
}

/// A push that had started but was not acknowledged when the server died.
#[derive(Debug, Clone)]
enum InFlight {
    /// POST / PATCH … / PUT session. `location` is known once the POST was
    /// answered; `acked` is the byte count the last 202 reported; `closing` is set
    /// once the closing PUT has been sent.
    Chunked {
        digest: String,
        location: Option<String>,
        acked: u64,
        closing: bool,
    },
    /// Single-POST push of `digest`.
    Monolithic { digest: String },
    /// PUT of the manifest attempted for `tag`.
    Manifest { tag: String },
}

/// What the clients did and what the server acknowledged, across all trials.
#[derive(Default)]
struct Journal {
    /// Every blob ever generated, by digest (content is checked against these).
    data: HashMap<String, Bytes>,
    /// Every manifest ever attempted, by (repo, tag); tags are never reused.
    manifests: HashMap<(String, String), Vec<u8>>,
    /// Blob pushes answered 201: (repo, digest).
    blobs: Vec<(String, String)>,
    /// Manifest pushes answered 201: (repo, tag, digest).
    tags: Vec<(String, String, String)>,
    /// The push each pusher had in flight, if any.
    inflight: HashMap<usize, InFlight>,
}

type SharedJournal = Arc<Mutex<Journal>>;

fn with<T>(j: &SharedJournal, f: impl FnOnce(&mut Journal) -> T) -> T {
    f(&mut j.lock().expect("journal lock"))
}

fn random_blob(rng: &mut SmallRng) -> Bytes {
    let x: f64 = rng.random_range(MIN_BLOB.ln()..MAX_BLOB.ln());
    let mut v = vec![0u8; x.exp() as usize];
    rng.fill_bytes(&mut v);
    v.into()
}

/// One pusher: images (a config blob, 1-3 layers, a manifest tagged
/// `t<trial>-<n>`) until the server dies. Returns how the stream ended.
async fn pusher(
    id: usize,
    trial: usize,
    seed: u64,
    base: String,
    journal: SharedJournal,
) -> Result<(), PushError> {
    let client = client();
    let repo = repo_of(id);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut pushed: Vec<Bytes> = Vec::new();
    for n in 0.. {
        let config = Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"trial":"{trial}","pusher":"{id}","n":"{n}","r":"{}"}}}}}}"#,
            rng.random::<u64>()
        ));
        let config_d = Desc::new(OCI_CONFIG, &sha256(&config), config.len() as u64);
        push_blob(&client, &base, &repo, id, config, false, &mut rng, &journal).await?;
        let mut layers = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            // Now and then push a blob this pusher pushed before (de-duplication:
            // the commit renames over an existing file).
            let data = if !pushed.is_empty() && rng.random_bool(0.15) {
                pushed[rng.random_range(0..pushed.len())].clone()
            } else {
                random_blob(&mut rng)
            };
            layers.push(Desc::new(OCI_LAYER, &sha256(&data), data.len() as u64));
            let chunked = rng.random_bool(0.6);
            push_blob(
                &client,
                &base,
                &repo,
                id,
                data.clone(),
                chunked,
                &mut rng,
                &journal,
            )
            .await?;
            pushed.push(data);
        }
        let tag = format!("t{trial}-{n}");
        let content = image_manifest(&config_d, &layers, None);
        with(&journal, |j| {
            j.manifests
                .insert((repo.clone(), tag.clone()), content.clone());
            j.inflight
                .insert(id, InFlight::Manifest { tag: tag.clone() });
        });
        let digest = push_manifest(&client, &base, &repo, &tag, &content).await?;
        with(&journal, |j| {
            j.tags.push((repo.clone(), tag, digest));
            j.inflight.remove(&id);
        });
    }
    Ok(())
}

/// Push `data` into `repo`, chunked (POST, PATCHes, PUT, perhaps with a last chunk)
/// or with a single POST, recording progress in the journal.
#[allow(clippy::too_many_arguments)]
async fn push_blob(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    id: usize,
    data: Bytes,
    chunked: bool,
    rng: &mut SmallRng,
    journal: &SharedJournal,
) -> Result<(), PushError> {
    let digest = sha256(&data);
    let len = data.len();
    with(journal, |j| {
        j.data.insert(digest.clone(), data.clone());
    });
    if !chunked {
        with(journal, |j| {
            j.inflight.insert(
                id,
                InFlight::Monolithic {
                    digest: digest.clone(),
                },
            )
        });
        push_blob_monolithic(client, base, repo, &digest, data.into(), len as u64).await?;
    } else {
        let set = |location: Option<String>, acked: u64, closing: bool| {
            let op = InFlight::Chunked {
                digest: digest.clone(),
                location,
                acked,
                closing,
            };
            with(journal, |j| j.inflight.insert(id, op));
        };
        set(None, 0, false);
        let mut loc = start_upload(client, base, repo).await?;
        set(Some(loc.clone()), 0, false);
        let chunk = rng.random_range(64 * 1024..=2 << 20);
        let last_in_put = rng.random_bool(0.3);
        let mut off = 0usize;
        while off < len {
            let end = (off + chunk).min(len);
            if last_in_put && end == len {
                break;
            }
            let part = data.slice(off..end);
            let (next, got) = patch_chunk(
                client,
                base,
                &loc,
                off as u64,
                part.into(),
                (end - off) as u64,
            )
            .await?;
            loc = next;
            off = end;
            set(Some(loc.clone()), got, false);
        }
        set(Some(loc.clone()), off as u64, true);
        let last = (off < len).then(|| LastChunk {
            start: Some(off as u64),
            body: data.slice(off..).into(),
            len: (len - off) as u64,
        });
        finish_upload(client, &loc, repo, &digest, last).await?;
    }
    with(journal, |j| {
        j.blobs.push((repo.to_owned(), digest));
        j.inflight.remove(&id);
    });
    Ok(())
}

/// Identity of a blob file already checked: (inode, size, mtime s, mtime ns).
type FileId = (u64, u64, i64, i64);

/// Spec § Content Verification / § Pulling blobs: blob content must match its
/// digest. Check every committed blob file under DIR/blobs hashes to its name
/// (files unchanged since an earlier check are skipped).
fn check_blob_files(dir: &Path, journal: &Journal, seen: &mut HashMap<String, FileId>) -> usize {
    use std::os::unix::fs::MetadataExt;
    let files = blob_files(dir);
    for (path, name) in &files {
        let md = std::fs::metadata(path).expect("stat blob file");
        let id = (md.ino(), md.size(), md.mtime(), md.mtime_nsec());
        if seen.get(name) == Some(&id) {
            continue;
        }
        let content = std::fs::read(path).expect("read blob file");
        let want = format!("sha256:{name}");
        match journal.data.get(&want) {
            // Equal to bytes whose sha256 is `want`: the file hashes to its name.
            Some(d) => assert!(
                d[..] == content[..],
                "blob file {path:?} ({} bytes) does not hold the bytes of {want} ({} bytes)",
                content.len(),
                d.len()
            ),
            None => assert_eq!(sha256(&content), want, "blob file {path:?} vs its name"),
        }
        seen.insert(name.clone(), id);
    }
    files.len()
}

/// Assertions (a), (b), (c) on a freshly restarted server. Blobs acknowledged
/// since the last check (`fresh_from` onwards in `journal.blobs`) are fetched in
/// full; older ones, already fetched in full after an earlier restart, are
/// checked with HEAD (still linked, same size); the final check fetches all.
async fn verify(
    client: &reqwest::Client,
    base: &str,
    dir: &Path,
    journal: &Journal,
    fresh_from: usize,
    seen: &mut HashMap<String, FileId>,
) {
    // (a) Every acknowledged blob is served intact: 200, Docker-Content-Digest,
    // Content-Length and bytes equal to what was pushed (whose sha256 is the
    // digest). Spec § Pulling blobs: "A GET request to an existing blob URL MUST
    // provide the expected blob, with a response code that MUST be `200 OK`."
    let mut checked: HashSet<(String, String)> = HashSet::new();
    for (repo, digest) in &journal.blobs[fresh_from..] {
        if checked.insert((repo.clone(), digest.clone())) {
            assert_blob(client, base, repo, digest, &journal.data[digest]).await;
        }
    }
    for (repo, digest) in &journal.blobs[..fresh_from] {
        if checked.insert((repo.clone(), digest.clone())) {
            let (st, len) = head_blob(client, base, repo, digest)
                .await
                .expect("HEAD acknowledged blob");
            assert_eq!(st, StatusCode::OK, "acknowledged blob {digest} in {repo}");
            assert_eq!(
                len,
                Some(journal.data[digest].len() as u64),
                "size of acknowledged blob {digest} in {repo}"
            );
        }
    }

    // (b) Every blob file on disk hashes to its name.
    check_blob_files(dir, journal, seen);

    // (c) No dangling tag: every listed tag resolves, is a manifest some client
    // pushed (byte-identical), and every blob it references is served.
    // Spec § Listing Tags / § Pulling manifests / § Pushing Manifests: "The
    // uploaded manifest MUST reference any blobs that make up the object."
    let mut resolved: HashMap<(String, String), String> = HashMap::new();
    for p in 0..PUSHERS {
        let repo = repo_of(p);
        for tag in list_tags(client, base, &repo).await {
            let (status, hdr, body) = get_manifest(client, base, &repo, &tag)
                .await
                .expect("GET listed tag");
            assert_eq!(
                status,
                StatusCode::OK,
                "tag {repo}:{tag} is listed but does not resolve"
            );
            let hdr = hdr.expect("Docker-Content-Digest on GET manifest");
            assert_eq!(sha256(&body), hdr, "{repo}:{tag} body vs its digest");
            let pushed = journal
                .manifests
                .get(&(repo.clone(), tag.clone()))
                .unwrap_or_else(|| panic!("tag {repo}:{tag} was never pushed"));
            assert!(
                pushed[..] == body[..],
                "{repo}:{tag} is not the manifest that was pushed"
            );
            for d in manifest_blobs(&body) {
                if checked.contains(&(repo.clone(), d.digest.clone())) {
                    continue;
                }
                // Referenced but not acknowledged in this repository: must be
                // served all the same.
                let data = journal
                    .data
                    .get(&d.digest)
                    .unwrap_or_else(|| panic!("{} was never generated", d.digest));
                assert_blob(client, base, &repo, &d.digest, data).await;
                checked.insert((repo.clone(), d.digest.clone()));
            }
            resolved.insert((repo.clone(), tag), hdr);
        }
    }

    // (a, manifests) Every acknowledged tag is listed and resolves to the
    // acknowledged manifest (whose bytes (c) compared). Spec § Pushing Manifests:
    // "The registry MUST store the manifest in the exact byte representation
    // provided by the client."
    for (repo, tag, digest) in &journal.tags {
        assert_eq!(
            resolved.get(&(repo.clone(), tag.clone())),
            Some(digest),
            "acknowledged tag {repo}:{tag} is missing or moved"
        );
    }
}

/// (d) Complete the push pusher `id` had in flight when the server died.
/// Spec § Use Cases, Resumable Push: "The registry notifies the build server that
/// the upload has already been partially attempted. The build server responds by
/// only sending the remaining data to complete the blob transfer."
/// Spec § Pushing a blob in chunks: "To get the current status after a 416 error,
/// issue a `GET` request to a URL `<location>` … MUST be a `204 No Content`
/// response code, and MUST have the following headers: Location, Range".
/// Returns whether an existing session was resumed.
async fn complete_inflight(
    client: &reqwest::Client,
    base: &str,
    id: usize,
    op: &InFlight,
    journal: &mut Journal,
) -> bool {
    let repo = repo_of(id);
    match op {
        InFlight::Monolithic { digest } => {
            push_blob_monolithic(
                client,
                base,
                &repo,
                digest,
                journal.data[digest].clone().into(),
                journal.data[digest].len() as u64,
            )
            .await
            .unwrap_or_else(|e| panic!("re-pushing interrupted monolithic {digest}: {e}"));
            journal.blobs.push((repo.clone(), digest.clone()));
            false
        }
        InFlight::Manifest { tag } => {
            let content = journal.manifests[&(repo.clone(), tag.clone())].clone();
            let d = push_manifest(client, base, &repo, tag, &content)
                .await
                .unwrap_or_else(|e| panic!("re-pushing interrupted manifest {tag}: {e}"));
            journal.tags.push((repo.clone(), tag.clone(), d));
            false
        }
        InFlight::Chunked {
            digest,
            location,
            acked,
            closing,
        } => {
            let data = journal.data[digest].clone();
            let mut resumed = false;
            if let Some(loc) = location {
                // The restarted server listens on another port: same path, new base.
                let path = &loc[loc.find("/v2/").expect("upload URL has /v2/")..];
                let loc = absolute(base, path);
                match upload_status(client, base, &loc).await {
                    Ok((loc, range)) => {
                        resume(
                            client, base, &repo, &loc, &range, digest, &data, *acked, *closing,
                        )
                        .await;
                        resumed = true;
                    }
                    Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                        // Only legitimate if the closing PUT had been sent: the
                        // server may have committed the blob (session over) or died
                        // between moving the file and recording it.
                        assert!(
                            *closing,
                            "upload session {loc} was acknowledged (last Range: {acked} bytes) \
                             and never closed, but is unknown after the restart: {e}"
                        );
                    }
                    Err(e) => panic!("GET status of interrupted upload {loc}: {e}"),
                }
            }
            if !resumed {
                let (st, _) = head_blob(client, base, &repo, digest)
                    .await
                    .expect("HEAD blob");
                if st != StatusCode::OK {
                    // Killed before the POST was answered, or the session ended
                    // with the commit: start again.
                    push_blob_chunked(client, base, &repo, &data, 1 << 20)
                        .await
                        .unwrap_or_else(|e| panic!("fresh upload of {digest}: {e}"));
                }
            }
            assert_blob(client, base, &repo, digest, &data).await;
            journal.blobs.push((repo.clone(), digest.clone()));
            resumed
        }
    }
}

/// Continue a session from what the server holds: the `Range` of the status
/// response says how much arrived; PATCH the rest with Content-Range, then PUT.
#[allow(clippy::too_many_arguments)]
async fn resume(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    loc: &str,
    range: &str,
    digest: &str,
    data: &Bytes,
    acked: u64,
    closing: bool,
) {
    let claimed = range_len(range).unwrap_or_else(|e| panic!("status of {loc}: {e}"));
    // `0-0` means "nothing" or "one byte" (berth, like Distribution, uses it for
    // an empty upload); try both in that order.
    let candidates: Vec<u64> = if range.trim() == "0-0" {
        vec![0, 1]
    } else {
        vec![claimed]
    };
    let len = data.len() as u64;
    // Bytes acknowledged by a 202 are durable in the session, unless the closing
    // PUT was already sent (the server may then be part-way through ending it; the
    // session must still be continuable from what it reports, checked below).
    assert!(
        closing || candidates.iter().any(|&c| c >= acked),
        "session {loc} reports Range {range:?}, but {acked} bytes had been acknowledged"
    );
    assert!(
        candidates[0] <= len,
        "session {loc} reports Range {range:?}, more than the {len} bytes ever sent"
    );
    let mut loc = loc.to_owned();
    let mut done = false;
    for (i, &off) in candidates.iter().enumerate() {
        if off >= len {
            done = true;
            break;
        }
        let part = data.slice(off as usize..);
        match patch_chunk(client, base, &loc, off, part.into(), len - off).await {
            Ok((next, got)) => {
                assert_eq!(got, len, "Range after the resumed PATCH");
                loc = next;
                done = true;
                break;
            }
            Err(e)
                if e.status() == Some(StatusCode::RANGE_NOT_SATISFIABLE)
                    && i + 1 < candidates.len() => {}
            Err(e) => panic!(
                "GET {loc} after the restart answered 204 Range: {range} \
                 (closing PUT sent: {closing}), but PATCHing from {off} fails: {e}"
            ),
        }
    }
    assert!(done, "could not resume {loc}");
    finish_upload(client, &loc, repo, digest, None)
        .await
        .unwrap_or_else(|e| panic!("closing resumed upload {loc}: {e}"));
}

fn seed() -> u64 {
    match std::env::var("BERTH_CRASH_SEED") {
        Ok(s) => s.parse().expect("BERTH_CRASH_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64,
    }
}

/// The issue: "SIGKILL the server at random points during blob uploads and
/// manifest puts (at least 20 trials), restart it, and assert: every blob visible
/// matches its digest, no tag points at a missing manifest, every push
/// acknowledged before the kill is intact, and the interrupted push can be
/// completed."
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_pushes_loses_nothing_acknowledged() {
    let seed = seed();
    eprintln!("crash_safety seed = {seed} (replay with BERTH_CRASH_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let journal: SharedJournal = Arc::default();
    let mut seen: HashMap<String, FileId> = HashMap::new();
    let mut resumed = 0usize;
    // journal.blobs[..verified] were fetched in full after an earlier restart.
    let mut verified = 0usize;
    let started = Instant::now();

    let mut server = Server::start(dir.path());
    for trial in 0..TRIALS {
        let base = server.base_url();
        let handles: Vec<_> = (0..PUSHERS)
            .map(|p| {
                let s = rng.random::<u64>();
                tokio::spawn(pusher(p, trial, s, base.clone(), journal.clone()))
            })
            .collect();
        let delay = rng.random_range(KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        // A pusher that stopped before the kill hit a server error: a bug.
        let early: Vec<bool> = handles.iter().map(|h| h.is_finished()).collect();
        server.kill();
        for (p, h) in handles.into_iter().enumerate() {
            let result = h.await.expect("pusher panicked");
            assert!(
                !early[p],
                "pusher {p} stopped before the kill in trial {trial} (seed {seed}): {result:?}"
            );
            match result {
                Err(PushError::Transport(_)) => {}
                other => panic!(
                    "pusher {p} in trial {trial} (seed {seed}) ended with {other:?}, \
                     not a dropped connection"
                ),
            }
        }

        server = Server::start(dir.path());
        let base = server.base_url();
        let client = client_fresh_connections();
        let snapshot = {
            let j = journal.lock().expect("journal");
            (j.blobs.len(), j.tags.len(), j.inflight.clone())
        };
        eprintln!(
            "trial {trial}: killed after {delay} ms; acknowledged so far {} blobs, {} tags; in flight: {:?}",
            snapshot.0,
            snapshot.1,
            snapshot
                .2
                .values()
                .map(|op| match op {
                    InFlight::Chunked {
                        location,
                        acked,
                        closing,
                        ..
                    } => format!(
                        "chunked(session={}, acked={acked}, closing={closing})",
                        location.is_some()
                    ),
                    InFlight::Monolithic { .. } => "monolithic".to_owned(),
                    InFlight::Manifest { tag } => format!("manifest {tag}"),
                })
                .collect::<Vec<_>>()
        );

        let mut j = std::mem::take(&mut *journal.lock().expect("journal"));
        verify(&client, &base, dir.path(), &j, verified, &mut seen).await;
        let inflight: Vec<(usize, InFlight)> = j.inflight.drain().collect();
        for (p, op) in inflight {
            if complete_inflight(&client, &base, p, &op, &mut j).await {
                resumed += 1;
            }
        }
        verified = j.blobs.len();
        *journal.lock().expect("journal") = j;
    }

    // Finally a graceful stop (SIGTERM → exit 0), a restart, and everything once more.
    server.stop();
    let mut server = Server::start(dir.path());
    let client = client_fresh_connections();
    let j = std::mem::take(&mut *journal.lock().expect("journal"));
    verify(&client, &server.base_url(), dir.path(), &j, 0, &mut seen).await;
    eprintln!(
        "crash_safety: {TRIALS} trials, {} blobs and {} tags acknowledged, {resumed} sessions resumed, {:?}",
        j.blobs.len(),
        j.tags.len(),
        started.elapsed()
    );
    assert!(
        !j.blobs.is_empty() && !j.tags.is_empty(),
        "the pushers never got anything acknowledged (seed {seed})"
    );
    server.stop();
    assert!(
        resumed > 0,
        "no kill ever landed in a chunked upload session, so resuming was never tested (seed {seed})"
    );
}

/// Deterministic replay of a kill point the random trials above hit now and then:
/// the server dies inside the closing `PUT` after the upload's data file was
/// renamed into `blobs/` but before its now-empty `uploads/<id>/` directory was
/// removed and the blob linked (berth-storage `BlobStore::commit_upload`: fsync,
/// rename, fsync the directory, `remove_dir`; then `Metadata::link_blob`, which also
/// ends the session). The test stops the server mid-session and makes exactly that
/// on-disk state by hand, then restarts it.
///
/// Spec § Pushing a blob in chunks: the status `GET` "MUST be a `204 No Content`
/// response code" for an active upload, with `Range: 0-<end-of-range>`, and "The
/// following chunk upload SHOULD use the `<location>` provided in the response."
/// So either the session is gone (404, the client starts over) or it is active and
/// can be continued from the Range it reports and closed with 201. Reporting an
/// active session that then cannot take a single byte is neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_commit_rename_and_link_leaves_a_usable_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = "crash/rename";
    let mut rng = SmallRng::seed_from_u64(7);
    let mut v = vec![0u8; 100_000];
    rng.fill_bytes(&mut v);
    let data = Bytes::from(v);
    let digest = sha256(&data);

    let mut server = Server::start(dir.path());
    let base = server.base_url();
    let client = client_fresh_connections();
    let loc = start_upload(&client, &base, repo).await.expect("POST");
    let (loc, got) = patch_chunk(&client, &base, &loc, 0, data.clone().into(), 100_000)
        .await
        .expect("PATCH");
    assert_eq!(got, 100_000);
    server.stop();

    // The state commit_upload leaves between its rename and its remove_dir.
    let id = loc.rsplit('/').next().expect("upload id").to_owned();
    let upload_dir = dir.path().join("uploads").join(&id);
    let src = upload_dir.join("data");
    assert!(src.is_file(), "upload data should be at {src:?}");
    let hex = hex_of(&digest);
    let dst_dir = dir.path().join("blobs").join("sha256").join(&hex[..2]);
    std::fs::create_dir_all(&dst_dir).expect("mkdir blob prefix");
    std::fs::rename(&src, dst_dir.join(hex)).expect("rename upload into blobs");
    assert!(upload_dir.is_dir());

    let mut server = Server::start(dir.path());
    let base = server.base_url();
    let loc = absolute(&base, &loc[loc.find("/v2/").expect("path")..]);
    match upload_status(&client, &base, &loc).await {
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
            // Session gone: start over.
            push_blob_chunked(&client, &base, repo, &data, 64 * 1024)
                .await
                .expect("fresh upload after the session was dropped");
        }
        Ok((loc, range)) => {
            // Session reported active: it must be continuable from its Range.
            let have = if range == "0-0" {
                0
            } else {
                range_len(&range).expect("Range")
            };
            assert!(have <= 100_000, "Range {range} claims more than was sent");
            let mut loc = loc;
            if have < 100_000 {
                let rest = data.slice(have as usize..);
                let n = rest.len() as u64;
                loc = patch_chunk(&client, &base, &loc, have, rest.into(), n)
                    .await
                    .map(|(l, _)| l)
                    .unwrap_or_else(|e| {
                        panic!(
                            "after the restart GET {loc} answered 204 Range: {range}, \
                             but PATCHing from there fails: {e}"
                        )
                    });
            }
            finish_upload(&client, &loc, repo, &digest, None)
                .await
                .unwrap_or_else(|e| panic!("closing the resumed session failed: {e}"));
        }
        Err(e) => panic!("GET status after the restart: {e}"),
    }
    assert_blob(&client, &base, repo, &digest, &data).await;
    server.stop();
}
