//! Black-box fault tests for the registry client commands of `berth` (the CLI
//! contract is `berth client CLI`, the interface tests are written against):
//!
//! 1. a lying registry (wrong digests, wrong sizes, truncated bodies, garbage
//!    manifests, manifests that do not match the digest they were pulled by):
//!    every pull fails, says why, and leaves the target layout untouched;
//! 2. a flaky proxy in front of `berth serve` (503s, a PATCH cut off mid-body):
//!    a 48 MiB chunked push still lands intact and resumes instead of restarting;
//! 3. token authentication (login, push/pull with bearer tokens, refresh of an
//!    expired token, logout);
//! 4. multi-platform images pushed to and pulled from `berth serve`.
//!
//! Every CLI run gets BERTH_AUTH_FILE, DOCKER_CONFIG and REGISTRY_AUTH_FILE (and
//! HOME, XDG_*) inside a temp dir, and `--retry-base-delay-ms 20`.

// Helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/fault_servers.rs"]
mod fault_servers;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fault_servers::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tempfile::TempDir;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Longest a single CLI invocation may take before the test kills it.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

// ---- running the CLI -------------------------------------------------------------

/// The outcome of one `berth` run.
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn success(&self) -> bool {
        self.code == Some(0)
    }
    fn describe(&self) -> String {
        format!(
            "`berth {}` exited {:?} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
    #[track_caller]
    fn assert_success(&self) {
        assert!(self.success(), "expected success: {}", self.describe());
    }
    /// The contract: "Errors are one line on stderr prefixed `berth <command>: `".
    #[track_caller]
    fn assert_error_line(&self, command: &str) {
        let prefix = format!("berth {command}: ");
        assert!(
            self.stderr.lines().any(|l| l.starts_with(&prefix)),
            "no stderr line starts with {prefix:?}: {}",
            self.describe()
        );
    }
}

/// A sandbox for running the CLI: its own credential files and home.
struct Cli {
    dir: TempDir,
    /// Extra environment for every run (e.g. a PATH with a credential helper).
    env: Vec<(String, String)>,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        }
    }

    fn auth_file(&self) -> PathBuf {
        self.dir.path().join("berth-auth.json")
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // Every client command takes the retry options, says the contract; `layout
        // verify` is not a client command, and `logout` (no network) rejects them
        // (reported as a contract deviation).
        if !matches!(args.first(), Some(&"layout")) {
            full.push("--retry-base-delay-ms".to_owned());
            full.push("20".to_owned());
        }
        let d = self.dir.path();
        for sub in ["docker", "xdg-runtime", "xdg-config", "home"] {
            std::fs::create_dir_all(d.join(sub)).expect("create sandbox dir");
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(&full)
            .env("BERTH_AUTH_FILE", self.auth_file())
            .env("DOCKER_CONFIG", d.join("docker"))
            .env("REGISTRY_AUTH_FILE", d.join("registry-auth.json"))
            .env("XDG_RUNTIME_DIR", d.join("xdg-runtime"))
            .env("XDG_CONFIG_HOME", d.join("xdg-config"))
            .env("HOME", d.join("home"))
            .env("BERTH_LOG", "warn")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for v in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn berth");
        if let Some(input) = stdin {
            let mut si = child.stdin.take().expect("child stdin");
            si.write_all(input.as_bytes()).expect("write stdin");
        }
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(CLI_TIMEOUT) {
            Ok(out) => out.expect("wait for berth"),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                let mut out = rx
                    .recv()
                    .expect("wait for killed berth")
                    .expect("wait for berth");
                out.stderr.extend_from_slice(
                    format!("\n[test: killed after {CLI_TIMEOUT:?} without finishing]").as_bytes(),
                );
                out
            }
        };
        let run = Run {
            args: full,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        };
        eprintln!(
            "[cli] berth {} -> {:?} in {:.1?}{}",
            run.args.join(" "),
            run.code,
            run.elapsed,
            if run.stderr.is_empty() {
                String::new()
            } else {
                format!("; stderr: {}", run.stderr.trim_end())
            }
        );
        run
    }

    /// `berth layout verify DIR` must exit 0.
    #[track_caller]
    fn assert_layout_ok(&self, dir: &Path) {
        let r = self.run(&["layout", "verify", dir.to_str().expect("utf-8 path")]);
        assert!(r.success(), "layout verify failed: {}", r.describe());
    }
}

fn oci(dir: &Path) -> String {
    format!("oci:{}", dir.display())
}

fn oci_tag(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// `127.0.0.1:PORT` of a running `berth serve`.
fn host_of(server: &common::Server) -> String {
    server
        .base_url()
        .strip_prefix("http://")
        .expect("http base url")
        .to_owned()
}

fn port_of(server: &common::Server) -> u16 {
    host_of(server)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in base url")
}

/// GET a manifest (image or index) straight from a registry.
fn fetch_manifest(
    rt: &tokio::runtime::Runtime,
    base: &str,
    repo: &str,
    reference: &str,
) -> (u16, Vec<u8>) {
    rt.block_on(async {
        let resp = common::client()
            .get(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header("accept", format!("{MT_MANIFEST}, {MT_INDEX}"))
            .send()
            .await
            .expect("GET manifest");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("manifest body").to_vec())
    })
}

/// Assert the layout at `dir` holds `blob` byte for byte.
#[track_caller]
fn assert_layout_has_blob(dir: &Path, blob: &Blob) {
    let p = layout_blob_path(dir, &blob.digest);
    let got = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    assert!(
        got == blob.bytes,
        "{} is {} bytes and differs from the {}-byte blob {}",
        p.display(),
        got.len(),
        blob.bytes.len(),
        blob.digest
    );
}

/// The digests of the entries of a layout's index.json.
fn index_entry_digests(dir: &Path) -> Vec<String> {
    read_index_json(dir)["manifests"]
        .as_array()
        .expect("index.json manifests is an array")
        .iter()
        .map(|m| m["digest"].as_str().expect("digest").to_owned())
        .collect()
}

// ---- 1. the lying registry ---------------------------------------------------------

/// What a failed pull from the lying registry must look like.
struct Expect {
    /// Allowed exit codes.
    codes: &'static [i32],
    /// Each must appear in stderr (case-insensitive).
    all_of: Vec<String>,
    /// At least one must appear in stderr (case-insensitive), if not empty.
    any_of: Vec<String>,
}

/// One lie: the repository, the reference to pull, what the failure must say.
struct Lie {
    repo: &'static str,
    /// `:v1` or `@sha256:...`.
    reference: String,
    fake: FakeRepo,
    expect: Expect,
}

/// A well-formed two-layer image: a 32 KiB layer the registry serves honestly and a
/// 256 KiB one the lies are about (so a client that writes blobs as they arrive has
/// something to clean up).
fn two_layer_image(seed: u64, label: &str) -> TestImage {
    build_image(&mut rng(seed), "amd64", &[32 * KIB, 256 * KIB], label)
}

/// image-spec descriptor.md § Verification: "Before consuming content targeted by
/// a descriptor from untrusted sources, the byte content SHOULD be verified against
/// the digest string." distribution-spec § Pulling blobs: "Clients SHOULD verify
/// that the response body matches the requested digest."
/// CLI contract: exit 1 on "verification failed (digest/size mismatch ...)"; "A
/// digest mismatch names both digests".
fn lie_wrong_digest() -> Lie {
    let image = two_layer_image(11, "wrongdigest");
    let mut fake = FakeRepo::honest(&image, "v1");
    let bad = &image.layers[1];
    let served = random_bytes(&mut rng(12), bad.bytes.len());
    let got = digest_of(&served);
    fake.blobs.get_mut(&bad.digest).expect("bad layer").body = served;
    Lie {
        repo: "wrongdigest",
        reference: ":v1".to_owned(),
        fake,
        expect: Expect {
            codes: &[1],
            all_of: vec![bad.digest.clone(), got],
            any_of: vec![],
        },
    }
}

/// image-spec descriptor.md § size: "specifies the size, in bytes, of the raw
/// content"; § Verification: "the size of the content SHOULD be verified".
/// The layer body is 4 KiB longer than its descriptor's size (the descriptor's
/// digest is that of the whole, longer body, so only the size lies).
fn lie_wrong_size() -> Lie {
    let body = random_bytes(&mut rng(21), 256 * KIB + 4 * KIB);
    let good = Blob::new(MT_LAYER, random_bytes(&mut rng(22), 32 * KIB));
    let lying_digest = digest_of(&body);
    let declared = 256 * KIB;
    let lying_desc =
        serde_json::json!({ "mediaType": MT_LAYER, "digest": lying_digest, "size": declared });
    let config = Blob::new(
        MT_CONFIG,
        config_json(
            "linux",
            "amd64",
            &[good.clone(), Blob::new(MT_LAYER, body.clone())],
            "wrongsize",
        ),
    );
    let manifest = Blob::new(
        MT_MANIFEST,
        manifest_json(&config.descriptor(), &[good.descriptor(), lying_desc]),
    );
    let mut fake = FakeRepo::default();
    fake.put_manifest("v1", &manifest);
    for b in [&good, &config] {
        fake.blobs.insert(
            b.digest.clone(),
            FakeBlob {
                body: b.bytes.clone(),
                lie: BlobLie::Honest,
            },
        );
    }
    fake.blobs.insert(
        lying_digest.clone(),
        FakeBlob {
            body: body.clone(),
            lie: BlobLie::Honest,
        },
    );
    Lie {
        repo: "wrongsize",
        reference: ":v1".to_owned(),
        fake,
        expect: Expect {
            codes: &[1],
            all_of: vec![hex_part(&lying_digest).to_owned()],
            // Either a size complaint, or (a client that stops reading at the
            // declared size) a digest mismatch naming the prefix's digest.
            any_of: vec!["size".to_owned(), digest_of(&body[..declared])],
        },
    }
}

/// A body that ends before its Content-Length, every time: retries cannot help.
/// CLI contract: exit 2 on a runtime error (network); 1 if the client reports it as
/// a size mismatch.
fn lie_truncated() -> Lie {
    let image = two_layer_image(31, "truncated");
    let mut fake = FakeRepo::honest(&image, "v1");
    let bad = &image.layers[1];
    fake.blobs.get_mut(&bad.digest).expect("bad layer").lie = BlobLie::TruncateHalf;
    Lie {
        repo: "truncated",
        reference: ":v1".to_owned(),
        fake,
        expect: Expect {
            codes: &[1, 2],
            all_of: vec![],
            any_of: vec![
                hex_part(&bad.digest)[..12].to_owned(),
                "truncat".to_owned(),
                "incomplete".to_owned(),
                "eof".to_owned(),
                "closed".to_owned(),
                "body".to_owned(),
            ],
        },
    }
}

/// A manifest body that is not JSON (served with a consistent
/// Docker-Content-Digest, so only parsing can catch it).
fn lie_garbage() -> Lie {
    let mut fake = FakeRepo::default();
    let body = b"<html><body>502 Bad Gateway, definitely not a manifest {{{".to_vec();
    fake.manifests.insert(
        "v1".to_owned(),
        FakeManifest {
            content_type: MT_MANIFEST.to_owned(),
            digest_header: digest_of(&body),
            body,
        },
    );
    Lie {
        repo: "garbage",
        reference: ":v1".to_owned(),
        fake,
        expect: Expect {
            codes: &[1, 2],
            all_of: vec![],
            any_of: vec!["manifest".to_owned(), "json".to_owned()],
        },
    }
}

/// distribution-spec § Pulling manifests: "If the `<reference>` part of a manifest
/// request is a digest, clients SHOULD verify the returned manifest matches this
/// digest." The registry answers a pull by digest X with another (valid) manifest
/// and even claims `Docker-Content-Digest: X`.
fn lie_manifest_digest() -> Lie {
    let asked = two_layer_image(41, "manifestdigest-asked");
    let served = two_layer_image(42, "manifestdigest-served");
    let mut fake = FakeRepo::honest(&served, "v1");
    for b in asked.blobs() {
        fake.blobs.insert(
            b.digest.clone(),
            FakeBlob {
                body: b.bytes.clone(),
                lie: BlobLie::Honest,
            },
        );
    }
    fake.manifests.insert(
        asked.manifest.digest.clone(),
        FakeManifest {
            content_type: MT_MANIFEST.to_owned(),
            body: served.manifest.bytes.clone(),
            digest_header: asked.manifest.digest.clone(),
        },
    );
    Lie {
        repo: "manifestdigest",
        reference: format!("@{}", asked.manifest.digest),
        fake,
        expect: Expect {
            codes: &[1],
            all_of: vec![
                asked.manifest.digest.clone(),
                served.manifest.digest.clone(),
            ],
            any_of: vec![],
        },
    }
}

#[track_caller]
fn check_expectation(run: &Run, expect: &Expect) {
    assert!(
        run.code.is_some_and(|c| expect.codes.contains(&c)),
        "exit code should be one of {:?}: {}",
        expect.codes,
        run.describe()
    );
    run.assert_error_line("pull");
    let err = run.stderr.to_lowercase();
    for s in &expect.all_of {
        assert!(
            err.contains(&s.to_lowercase()),
            "stderr should mention {s:?}: {}",
            run.describe()
        );
    }
    if !expect.any_of.is_empty() {
        assert!(
            expect
                .any_of
                .iter()
                .any(|s| err.contains(&s.to_lowercase())),
            "stderr should mention one of {:?}: {}",
            expect.any_of,
            run.describe()
        );
    }
}

/// Pull `lie` twice, into a new directory and into an existing layout holding
/// another image. CLI contract: "Pulls into a layout are all-or-nothing: on any
/// failure no new blob stays in DIR, index.json is unchanged, and a DIR that did
/// not exist before is not left behind."
fn run_lie(lie: Lie) {
    let rt = runtime();
    let mut repos = HashMap::new();
    repos.insert(lie.repo.to_owned(), lie.fake);
    let reg = start_fake_registry(&rt, repos);
    let cli = Cli::new();
    let work = tempfile::tempdir().expect("temp dir");
    let reference = format!("{}/{}{}", reg.host(), lie.repo, lie.reference);

    // Into a directory that does not exist yet.
    let fresh = work.path().join("fresh");
    let run = cli.run(&["pull", "-q", &reference, &oci(&fresh)]);
    report_requests(&reg);
    check_expectation(&run, &lie.expect);
    assert!(
        !fresh.exists(),
        "the failed pull left {} behind: {:?}",
        fresh.display(),
        snapshot(&fresh).all_entries
    );

    // Into a layout holding another image.
    let existing = work.path().join("existing");
    let other = build_image(&mut rng(99), "amd64", &[48 * KIB], "pre-existing");
    write_image_layout(&existing, &other, "old");
    cli.assert_layout_ok(&existing);
    let before = snapshot(&existing);
    let run = cli.run(&["pull", "-q", &reference, &oci_tag(&existing, "v1")]);
    report_requests(&reg);
    check_expectation(&run, &lie.expect);
    let after = snapshot(&existing);
    assert!(
        after.index_json == before.index_json,
        "index.json changed by a failed pull:\nbefore: {}\nafter: {}",
        String::from_utf8_lossy(&before.index_json),
        String::from_utf8_lossy(&after.index_json)
    );
    assert_eq!(after.oci_layout, before.oci_layout, "oci-layout changed");
    assert_eq!(
        after.blob_entries, before.blob_entries,
        "the failed pull left files under blobs/"
    );
    if after.all_entries != before.all_entries {
        eprintln!(
            "note: the failed pull changed the layout's other files: before {:?}, after {:?}",
            before.all_entries, after.all_entries
        );
    }
    cli.assert_layout_ok(&existing);
}

/// Log how many requests the fake registry got, and the first and last few.
fn report_requests(reg: &FakeRegistry) {
    let reqs = reg.requests();
    let n = reqs.len();
    if n <= 20 {
        eprintln!("fake registry: {n} requests so far: {reqs:#?}");
    } else {
        eprintln!(
            "fake registry: {n} requests so far; first: {:#?}; last: {:#?}",
            &reqs[..10],
            &reqs[n - 10..]
        );
    }
}

#[test]
fn lying_registry_wrong_layer_digest() {
    run_lie(lie_wrong_digest());
}

#[test]
fn lying_registry_layer_longer_than_descriptor() {
    run_lie(lie_wrong_size());
}

#[test]
fn lying_registry_truncated_layer_body() {
    run_lie(lie_truncated());
}

#[test]
fn lying_registry_garbage_manifest() {
    run_lie(lie_garbage());
}

#[test]
fn lying_registry_manifest_not_matching_requested_digest() {
    run_lie(lie_manifest_digest());
}

/// The control for the lying-registry tests: the same fake registry serving an
/// honest image, so failures above are about the lies and not the harness.
#[test]
fn lying_registry_control_honest_image_pulls() {
    let rt = runtime();
    let image = two_layer_image(51, "honest");
    let mut repos = HashMap::new();
    repos.insert("honest".to_owned(), FakeRepo::honest(&image, "v1"));
    let reg = start_fake_registry(&rt, repos);
    let cli = Cli::new();
    let work = tempfile::tempdir().expect("temp dir");
    let reference = format!("{}/honest:v1", reg.host());

    let fresh = work.path().join("fresh");
    cli.run(&["pull", "-q", &reference, &oci(&fresh)])
        .assert_success();
    cli.assert_layout_ok(&fresh);
    for b in image.blobs().into_iter().chain([&image.manifest]) {
        assert_layout_has_blob(&fresh, b);
    }
    assert_eq!(
        index_entry_digests(&fresh),
        vec![image.manifest.digest.clone()]
    );

    let existing = work.path().join("existing");
    let other = build_image(&mut rng(99), "amd64", &[48 * KIB], "pre-existing");
    write_image_layout(&existing, &other, "old");
    cli.run(&["pull", "-q", &reference, &oci_tag(&existing, "v1")])
        .assert_success();
    cli.assert_layout_ok(&existing);
    let digests = index_entry_digests(&existing);
    assert!(
        digests.contains(&other.manifest.digest) && digests.contains(&image.manifest.digest),
        "index.json should list both images: {digests:?}"
    );
}

// ---- 2. the flaky registry --------------------------------------------------------

/// distribution-spec § Resumable Push: "The registry notifies the build server that
/// the upload has already been partially attempted. The build server responds by
/// only sending the remaining data to complete the blob transfer." § Pushing a blob
/// in chunks: "A GET request may be used to retrieve the current valid offset and
/// upload location." CLI contract: `--chunk-size`: "blobs larger than this are
/// uploaded as PATCH chunks with Content-Range and resume from the registry's
/// reported offset after a failure"; `--retries N`: "retries per request on
/// connection errors / 5xx / 429".
#[test]
fn flaky_registry_chunked_push_resumes() {
    const LAYER: usize = 48 * MIB;
    let data = tempfile::tempdir().expect("temp dir");
    let server = common::Server::start(data.path());
    let rt = runtime();
    let (proxy, fstats) = start_flaky_proxy(&rt, port_of(&server), 3 * MIB as u64);
    let cli = Cli::new();
    let work = tempfile::tempdir().expect("temp dir");

    let image = build_image(&mut rng(61), "amd64", &[LAYER], "flaky");
    let src = work.path().join("src");
    write_image_layout(&src, &image, "v1");

    let dest = format!("{}/flaky/big:v1", proxy.host());
    let run = cli.run(&[
        "push",
        "-q",
        &oci_tag(&src, "v1"),
        &dest,
        "--chunk-size",
        "4194304",
    ]);
    let forwarded: Vec<(String, u64)> = proxy
        .stats
        .forwarded_body
        .lock()
        .expect("stats lock")
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let upload_bytes = proxy.stats.forwarded("PATCH")
        + proxy.stats.forwarded("PUT")
        + proxy.stats.forwarded("POST");
    eprintln!(
        "flaky proxy: {} requests, {} injected 503s, {} partial drops, body bytes forwarded by method {:?}; \
         upload bytes {} = {:.3} x the {}-byte layer",
        proxy.stats.requests.load(Ordering::SeqCst),
        fstats.injected_503.load(Ordering::SeqCst),
        proxy.stats.partial_drops.load(Ordering::SeqCst),
        forwarded,
        upload_bytes,
        upload_bytes as f64 / LAYER as f64,
        LAYER
    );
    if !run.success() {
        eprintln!(
            "proxy log: {:#?}",
            proxy.stats.log.lock().expect("log lock")
        );
    }
    run.assert_success();
    assert!(
        fstats.dropped_patch.load(Ordering::SeqCst)
            && proxy.stats.partial_drops.load(Ordering::SeqCst) == 1,
        "the push never sent a PATCH with more than 3 MiB of body, so the mid-chunk drop was not exercised"
    );
    assert!(
        fstats.injected_503.load(Ordering::SeqCst) >= 3,
        "too few 503s were injected to mean anything"
    );
    assert!(
        (upload_bytes as f64) < 1.5 * LAYER as f64,
        "the push re-sent too much: {upload_bytes} body bytes for a {LAYER}-byte layer (limit 1.5x)"
    );

    // Pull it back straight from berth serve.
    let back = work.path().join("back");
    cli.run(&[
        "pull",
        "-q",
        &format!("{}/flaky/big:v1", host_of(&server)),
        &oci(&back),
    ])
    .assert_success();
    cli.assert_layout_ok(&back);
    assert_layout_has_blob(&back, &image.layers[0]);
    assert_layout_has_blob(&back, &image.config);
    assert_eq!(
        index_entry_digests(&back),
        vec![image.manifest.digest.clone()]
    );
}

// ---- 3. token auth ------------------------------------------------------------------

/// `berth serve` behind an authorizing proxy with a token server.
struct AuthEnv {
    server: common::Server,
    _data: TempDir,
    rt: tokio::runtime::Runtime,
    auth: AuthSetup,
    cli: Cli,
    work: TempDir,
}

impl AuthEnv {
    fn start(cfg: AuthConfig) -> AuthEnv {
        let data = tempfile::tempdir().expect("temp dir");
        let server = common::Server::start(data.path());
        let rt = runtime();
        let auth = start_auth(&rt, port_of(&server), cfg);
        AuthEnv {
            server,
            _data: data,
            rt,
            auth,
            cli: Cli::new(),
            work: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn host(&self) -> String {
        self.auth.proxy.host()
    }

    fn login(&self, password: &str) -> Run {
        self.cli.run_with_stdin(
            &["login", &self.host(), "-u", "alice", "--password-stdin"],
            Some(&format!("{password}\n")),
        )
    }

    /// The stored entry for the proxy's host in BERTH_AUTH_FILE, if any.
    fn stored_entry(&self) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.cli.auth_file()).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "BERTH_AUTH_FILE is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let auths = v.get("auths")?.as_object()?;
        let host = self.host();
        auths
            .iter()
            .find(|(k, _)| {
                k.as_str() == host || k.trim_end_matches('/').ends_with(&format!("//{host}"))
            })
            .map(|(_, e)| e.clone())
    }

    fn dump(&self) -> String {
        format!(
            "auth stats: {:?}\ntoken requests: {:#?}\nproxy log: {:#?}",
            self.auth.stats,
            self.auth.stats.token_log.lock().expect("lock"),
            self.auth.proxy.stats.log.lock().expect("lock")
        )
    }
}

/// Credentials an `auths` entry holds: docker config.json keeps them as
/// `"auth": base64(user:password)` (some tools write username/password fields).
fn entry_credentials(entry: &serde_json::Value) -> Option<(String, String)> {
    if let Some(a) = entry.get("auth").and_then(|a| a.as_str()) {
        let raw = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        return Some((u.to_owned(), p.to_owned()));
    }
    Some((
        entry.get("username")?.as_str()?.to_owned(),
        entry.get("password")?.as_str()?.to_owned(),
    ))
}

/// docker/auth-token.md § How to authenticate: the registry answers 401 with
/// `WWW-Authenticate: Bearer realm=...,service=...,scope=...`; "The client retries
/// the original request with the Bearer token embedded in the request's
/// Authorization header." CLI contract: `berth login HOST` "checks the credentials
/// against HOST (GET /v2/, incl. the bearer-token flow), then stores them; prints
/// "Login succeeded""; `berth logout HOST`.
#[test]
fn token_auth_login_push_pull_logout() {
    let env = AuthEnv::start(AuthConfig::default());
    let cli = &env.cli;

    // A wrong password: refused by the token server, nothing stored.
    let run = env.login("not-the-password");
    assert!(
        !run.success() && run.code != Some(101),
        "login with a wrong password must fail cleanly: {}",
        run.describe()
    );
    run.assert_error_line("login");
    assert!(
        env.stored_entry().is_none(),
        "a failed login stored credentials: {}",
        std::fs::read_to_string(cli.auth_file()).unwrap_or_default()
    );
    assert!(
        env.auth.stats.token_denied.load(Ordering::SeqCst) >= 1,
        "login never asked the token server: {}",
        env.dump()
    );

    // The right password.
    let run = env.login("s3cret");
    run.assert_success();
    assert!(
        run.stdout.contains("Login succeeded"),
        "login should print \"Login succeeded\": {}",
        run.describe()
    );
    let entry = env.stored_entry().unwrap_or_else(|| {
        panic!(
            "no auths entry for {} in BERTH_AUTH_FILE: {}",
            env.host(),
            std::fs::read_to_string(cli.auth_file()).unwrap_or_default()
        )
    });
    assert_eq!(
        entry_credentials(&entry),
        Some(("alice".to_owned(), "s3cret".to_owned())),
        "stored entry {entry}"
    );

    // Push and pull through the authorizing proxy.
    let image = build_image(&mut rng(71), "amd64", &[64 * KIB, 100 * KIB], "auth");
    let src = env.work.path().join("src");
    write_image_layout(&src, &image, "v1");
    let reference = format!("{}/team/app:v1", env.host());
    let run = cli.run(&["push", "-q", &oci_tag(&src, "v1"), &reference]);
    if !run.success() {
        eprintln!("{}", env.dump());
    }
    run.assert_success();
    let (status, body) = fetch_manifest(&env.rt, &env.server.base_url(), "team/app", "v1");
    assert_eq!(status, 200, "the pushed manifest is not in berth serve");
    assert!(
        body == image.manifest.bytes,
        "berth serve holds other manifest bytes"
    );

    let back = env.work.path().join("back");
    let run = cli.run(&["pull", "-q", &reference, &oci(&back)]);
    if !run.success() {
        eprintln!("{}", env.dump());
    }
    run.assert_success();
    cli.assert_layout_ok(&back);
    for l in &image.layers {
        assert_layout_has_blob(&back, l);
    }
    assert!(
        env.auth.stats.accepted.load(Ordering::SeqCst) > 0
            && env.auth.stats.tokens_issued.load(Ordering::SeqCst) >= 2,
        "the round trip did not go through token auth: {}",
        env.dump()
    );

    // Logout, then the pull is refused.
    cli.run(&["logout", &env.host()]).assert_success();
    assert!(
        env.stored_entry().is_none(),
        "logout left the entry: {}",
        std::fs::read_to_string(cli.auth_file()).unwrap_or_default()
    );
    let again = env.work.path().join("again");
    let run = cli.run(&["pull", "-q", &reference, &oci(&again)]);
    assert!(
        !run.success() && run.code != Some(101),
        "pull after logout must fail: {}",
        run.describe()
    );
    run.assert_error_line("pull");
    let err = run.stderr.to_lowercase();
    assert!(
        err.contains("auth") || err.contains("401") || err.contains("unauthorized"),
        "the error should be about authentication: {}",
        run.describe()
    );
    assert!(
        !again.exists(),
        "the refused pull left {} behind",
        again.display()
    );
}

/// docker/auth-token.md § Requirements: the registry must be able to verify tokens
/// "for single use or for use during a sufficiently short period of time"; when a
/// token is no longer accepted the registry answers 401 with a fresh challenge and
/// the client gets a new token (§ How to authenticate, steps 2-5). Here the proxy
/// rejects tokens older than 1 s (although the token server says `expires_in: 60`)
/// and every /blobs/ request takes 300 ms, so a push of five blobs outlives its
/// first token.
#[test]
fn token_auth_expired_token_is_refreshed() {
    let env = AuthEnv::start(AuthConfig {
        max_token_age: Some(Duration::from_secs(1)),
        blob_delay: Some(Duration::from_millis(300)),
        ..AuthConfig::default()
    });
    let cli = &env.cli;
    env.login("s3cret").assert_success();

    let image = build_image(
        &mut rng(81),
        "amd64",
        &[16 * KIB, 17 * KIB, 18 * KIB, 19 * KIB],
        "expiry",
    );
    let src = env.work.path().join("src");
    write_image_layout(&src, &image, "v1");
    let reference = format!("{}/team/slow:v1", env.host());
    let run = cli.run(&[
        "push",
        "-q",
        &oci_tag(&src, "v1"),
        &reference,
        "--jobs",
        "1",
    ]);
    eprintln!(
        "tokens issued {}, expired-token rejections {}",
        env.auth.stats.tokens_issued.load(Ordering::SeqCst),
        env.auth.stats.rejected_expired.load(Ordering::SeqCst)
    );
    if !run.success() {
        eprintln!("{}", env.dump());
    }
    run.assert_success();
    assert!(
        env.auth.stats.rejected_expired.load(Ordering::SeqCst) >= 1,
        "no request was made with an expired token, so the refresh was not exercised: {}",
        env.dump()
    );
    let (status, body) = fetch_manifest(&env.rt, &env.server.base_url(), "team/slow", "v1");
    assert_eq!(status, 200, "the pushed manifest is not in berth serve");
    assert!(
        body == image.manifest.bytes,
        "berth serve holds other manifest bytes"
    );
    let back = env.work.path().join("back");
    cli.run(&[
        "pull",
        "-q",
        &format!("{}/team/slow:v1", host_of(&env.server)),
        &oci(&back),
    ])
    .assert_success();
    for l in &image.layers {
        assert_layout_has_blob(&back, l);
    }
}

// ---- 4. multi-arch ------------------------------------------------------------------

/// image-spec image-index.md: `platform` "describes the minimum runtime
/// requirements of the image"; CLI contract: `--platform os/arch[/variant]` "which
/// manifest of an index to copy", `--all-platforms` "copy the whole index and every
/// manifest in it"; exit 1 for "platform not in the index", listing the available
/// ones ("no manifest for linux/s390x in REF; available: linux/amd64,
/// linux/arm64"); `inspect -o json` of an index lists `manifests` with `platform`.
#[test]
fn multi_arch_push_pull_platform_inspect() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = common::Server::start(data.path());
    let rt = runtime();
    let cli = Cli::new();
    let work = tempfile::tempdir().expect("temp dir");

    let index = build_index(
        &mut rng(91),
        &["amd64", "arm64"],
        &[40 * KIB, 24 * KIB],
        "multi",
    );
    let src = work.path().join("src");
    write_layout(&src, &index.blobs(), &[(&index.index, Some("v1"))]);
    cli.assert_layout_ok(&src);
    let reference = format!("{}/multi/app:v1", host_of(&server));

    cli.run(&[
        "push",
        "-q",
        &oci_tag(&src, "v1"),
        &reference,
        "--all-platforms",
    ])
    .assert_success();
    let (status, body) = fetch_manifest(&rt, &server.base_url(), "multi/app", "v1");
    assert_eq!(status, 200, "the index is not in berth serve");
    assert!(
        body == index.index.bytes,
        "berth serve holds other index bytes"
    );
    for img in &index.images {
        let (status, body) =
            fetch_manifest(&rt, &server.base_url(), "multi/app", &img.manifest.digest);
        assert_eq!(
            status, 200,
            "the {} manifest is not in berth serve",
            img.arch
        );
        assert!(body == img.manifest.bytes);
    }

    // One platform.
    let arm = index.image("arm64");
    let d = work.path().join("arm");
    cli.run(&[
        "pull",
        "-q",
        "--platform",
        "linux/arm64",
        &reference,
        &oci(&d),
    ])
    .assert_success();
    cli.assert_layout_ok(&d);
    let entries = read_index_json(&d)["manifests"].clone();
    let entries = entries.as_array().expect("manifests array");
    assert_eq!(entries.len(), 1, "one entry expected: {entries:?}");
    assert_eq!(
        entries[0]["digest"].as_str(),
        Some(arm.manifest.digest.as_str()),
        "the entry should be the arm64 manifest"
    );
    assert_eq!(entries[0]["mediaType"].as_str(), Some(MT_MANIFEST));
    for b in arm.blobs() {
        assert_layout_has_blob(&d, b);
    }
    let amd = index.image("amd64");
    for l in &amd.layers {
        assert!(
            !layout_blob_path(&d, &l.digest).exists(),
            "an amd64 layer was copied into the arm64 pull"
        );
    }

    // A platform the index does not have.
    let none = work.path().join("s390x");
    let run = cli.run(&[
        "pull",
        "-q",
        "--platform",
        "linux/s390x",
        &reference,
        &oci(&none),
    ]);
    assert_eq!(
        run.code,
        Some(1),
        "missing platform must exit 1: {}",
        run.describe()
    );
    run.assert_error_line("pull");
    for p in ["linux/amd64", "linux/arm64", "s390x"] {
        assert!(
            run.stderr.contains(p),
            "stderr should name {p}: {}",
            run.describe()
        );
    }
    assert!(
        !none.exists(),
        "the failed pull left {} behind",
        none.display()
    );

    // inspect -o json.
    let run = cli.run(&["inspect", &reference, "-o", "json"]);
    run.assert_success();
    let v: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("inspect -o json is not JSON ({e}): {}", run.describe()));
    assert_eq!(
        v["digest"].as_str(),
        Some(index.index.digest.as_str()),
        "{v}"
    );
    assert_eq!(v["mediaType"].as_str(), Some(MT_INDEX), "{v}");
    assert_eq!(v["size"].as_u64(), Some(index.index.size()), "{v}");
    let ms = v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests array: {v}"));
    let mut platforms: Vec<(String, String, String)> = ms
        .iter()
        .map(|m| {
            (
                m["platform"]["os"].as_str().unwrap_or("?").to_owned(),
                m["platform"]["architecture"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                m["digest"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(
        platforms,
        vec![
            (
                "linux".to_owned(),
                "amd64".to_owned(),
                amd.manifest.digest.clone()
            ),
            (
                "linux".to_owned(),
                "arm64".to_owned(),
                arm.manifest.digest.clone()
            ),
        ],
        "inspect should list both platforms: {v}"
    );
}

/// HTTP Basic auth (RFC 7617; distribution-spec defers to the registry's
/// `WWW-Authenticate` challenge) with credentials berth never stored itself: they
/// come from docker's `config.json` through a credential helper
/// (`docker-credential-<name> get`, server on stdin, JSON `{ServerURL, Username,
/// Secret}` on stdout), as docker and podman look them up.
#[test]
fn basic_auth_with_docker_config_credential_helper() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = common::Server::start(data.path());
    let rt = runtime();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bob:hunter2")
    );
    let proxy = start_proxy(
        &rt,
        port_of(&server),
        ProxyHooks {
            delay: Box::new(|_| None),
            decide: Box::new(move |req: &Head| {
                if req.header("authorization") == Some(expected.as_str()) {
                    Decision::Forward
                } else {
                    Decision::Reply(response(
                        401,
                        &[
                            ("WWW-Authenticate", "Basic realm=\"berth-test\"".to_owned()),
                            ("Content-Type", "application/json".to_owned()),
                        ],
                        &oci_error("UNAUTHORIZED", "authentication required"),
                        req.method() == "HEAD",
                    ))
                }
            }),
        },
    );
    let host = proxy.host();
    let mut cli = Cli::new();
    let image = build_image(&mut rng(91), "amd64", &[70 * KIB], "basic");
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    write_image_layout(&src, &image, "v1");
    let reference = format!("{host}/team/basic:v1");

    // No credentials anywhere: refused, exit 2, the error says why.
    let run = cli.run(&["push", "-q", &oci_tag(&src, "v1"), &reference]);
    assert_eq!(run.code, Some(2), "{}", run.describe());
    assert!(
        run.stderr.contains("401") || run.stderr.to_lowercase().contains("authentication"),
        "{}",
        run.describe()
    );

    // docker's config.json names a helper for this host; the helper answers.
    let bin = cli.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let helper = bin.join("docker-credential-berthtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 1\nif [ \"$server\" = \"{host}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"bob\",\"Secret\":\"hunter2\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
        ),
    )
    .expect("write helper");
    let mut perms = std::fs::metadata(&helper)
        .expect("stat helper")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&helper, perms).expect("chmod helper");
    let docker_dir = cli.dir.path().join("docker");
    std::fs::create_dir_all(&docker_dir).expect("docker dir");
    std::fs::write(
        docker_dir.join("config.json"),
        serde_json::json!({"credHelpers": {host.clone(): "berthtest"}}).to_string(),
    )
    .expect("write config.json");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cli.env.push(("PATH".to_owned(), path));

    cli.run(&["push", "-q", &oci_tag(&src, "v1"), &reference])
        .assert_success();
    let back = work.path().join("back");
    cli.run(&["pull", "-q", &reference, &oci(&back)])
        .assert_success();
    cli.assert_layout_ok(&back);
    for b in image.blobs() {
        assert_layout_has_blob(&back, b);
    }
    assert!(
        !cli.auth_file().exists(),
        "nothing should have been written to berth's own credentials file"
    );
    assert!(
        proxy.stats.forwarded("PUT") > 0,
        "no upload reached berth serve through the Basic-auth proxy"
    );
}

/// `berth referrers` against berth serve's referrers API (distribution-spec
/// "Listing Referrers": `GET /v2/<name>/referrers/<digest>[?artifactType=]`, an
/// image index whose `manifests` carry each referrer's `artifactType`).
#[test]
fn referrers_lists_and_filters_by_artifact_type() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = common::Server::start(data.path());
    let rt = runtime();
    let cli = Cli::new();
    let image = build_image(&mut rng(101), "amd64", &[10 * KIB], "referred");
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    write_image_layout(&src, &image, "v1");
    let host = host_of(&server);
    let reference = format!("{host}/team/refd:v1");
    cli.run(&["push", "-q", &oci_tag(&src, "v1"), &reference])
        .assert_success();

    // Two artifacts whose subject is the image (image-spec manifest.md `subject`,
    // `artifactType`, the empty config descriptor).
    let base = server.base_url();
    let empty = bytes::Bytes::from_static(b"{}");
    let empty_digest = rt
        .block_on(common::push_bytes(
            &common::client(),
            &base,
            "team/refd",
            &empty,
        ))
        .expect("push the empty blob");
    let mut artifacts = Vec::new();
    for kind in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ] {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2}],
            "subject": {"mediaType": MT_MANIFEST, "digest": image.manifest.digest, "size": image.manifest.size()},
        });
        let bytes = serde_json::to_vec(&m).expect("serialise");
        let digest = digest_of(&bytes);
        let status = rt.block_on(async {
            common::client()
                .put(format!("{base}/v2/team/refd/manifests/{digest}"))
                .header("content-type", MT_MANIFEST)
                .body(bytes)
                .send()
                .await
                .expect("PUT artifact")
                .status()
                .as_u16()
        });
        assert_eq!(status, 201, "artifact manifest not accepted");
        artifacts.push((kind, digest));
    }

    let run = cli.run(&["referrers", &reference]);
    run.assert_success();
    for (kind, digest) in &artifacts {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(digest.as_str()) && l.contains(kind)),
            "referrer {digest} ({kind}) missing: {}",
            run.describe()
        );
    }
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.describe());

    let run = cli.run(&[
        "referrers",
        &reference,
        "--artifact-type",
        "application/vnd.example.sig",
        "-o",
        "json",
    ]);
    run.assert_success();
    let list: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON output");
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1, "{}", run.describe());
    assert_eq!(list[0]["digest"], artifacts[1].1.as_str());
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sig");

    // A digest nothing refers to: an empty list, not an error.
    let run = cli.run(&[
        "referrers",
        &format!("{host}/team/refd@{}", image.config.digest),
    ]);
    run.assert_success();
    assert!(run.stdout.trim().is_empty(), "{}", run.describe());
}

/// Blobs the destination has are skipped after a `HEAD` (distribution-spec
/// "Checking if content exists in the registry"), and a copy between two
/// repositories of one registry mounts them ("Mounting a blob from another
/// repository") instead of moving bytes; the proxy counts that no blob body moved.
#[test]
fn copy_skips_existing_blobs_and_mounts_across_repositories() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = common::Server::start(data.path());
    let rt = runtime();
    let proxy = start_proxy(
        &rt,
        port_of(&server),
        ProxyHooks {
            delay: Box::new(|_| None),
            decide: Box::new(|_: &Head| Decision::Forward),
        },
    );
    let host = proxy.host();
    let cli = Cli::new();
    let image = build_image(&mut rng(111), "amd64", &[300 * KIB, 200 * KIB], "mount");
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    write_image_layout(&src, &image, "v1");
    let report = |run: &Run| -> serde_json::Value {
        run.assert_success();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.describe()))
    };
    let blobs = image.blobs().len() as u64;

    let first = report(&cli.run(&[
        "push",
        "-q",
        "-o",
        "json",
        &oci_tag(&src, "v1"),
        &format!("{host}/a/img:v1"),
    ]));
    assert_eq!(first["blobsCopied"], blobs, "{first}");
    assert_eq!(first["digest"], image.manifest.digest.as_str());
    let moved_after_push = proxy.stats.forwarded("PATCH")
        + proxy.stats.forwarded("PUT")
        + proxy.stats.forwarded("POST");

    let again = report(&cli.run(&[
        "push",
        "-q",
        "-o",
        "json",
        &oci_tag(&src, "v1"),
        &format!("{host}/a/img:v2"),
    ]));
    assert_eq!(again["blobsSkipped"], blobs, "{again}");
    assert_eq!(again["blobsCopied"], 0, "{again}");

    let copied = report(&cli.run(&[
        "copy",
        "-q",
        "-o",
        "json",
        &format!("{host}/a/img:v1"),
        &format!("{host}/b/img:v1"),
    ]));
    assert_eq!(copied["blobsMounted"], blobs, "{copied}");
    assert_eq!(copied["blobsCopied"], 0, "{copied}");
    let moved = proxy.stats.forwarded("PATCH")
        + proxy.stats.forwarded("PUT")
        + proxy.stats.forwarded("POST");
    // Only manifests went up after the first push.
    let manifests = 2 * image.manifest.size();
    assert_eq!(
        moved - moved_after_push,
        manifests,
        "blob bytes moved on a skip or a mount"
    );

    // The mounted copy is whole: pull it back from the second repository.
    let back = work.path().join("back");
    cli.run(&["pull", "-q", &format!("{host}/b/img:v1"), &oci(&back)])
        .assert_success();
    for b in image.blobs() {
        assert_layout_has_blob(&back, b);
    }
}
