//! Every scenario, briefly, against a real in-process berth registry on a
//! loopback port, checked through the JSON report; plus the failure paths: a
//! manifest that changes under the bench is counted as errors, a registry that
//! refuses set-up fails the run naming the request, `ready` times out.

// Test helpers panic on anything unexpected; that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_bench::content::{Image, random_bytes};
use berth_bench::http::{Conn, Target};
use berth_bench::{BenchArgs, BenchError, Outcome, oci};
use clap::Parser;
use serde_json::Value;

/// A berth registry serving a temporary directory on 127.0.0.1:<free port>,
/// stopped when dropped.
struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(|_| {})
    }

    fn start_with(configure: impl FnOnce(&mut berth_server::Config) + Send + 'static) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data: PathBuf = dir.path().join("data");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut cfg = berth_server::Config::default();
                cfg.server.listen = "127.0.0.1:0".to_owned();
                cfg.storage.data_dir = data;
                cfg.log.level = "warn".to_owned();
                configure(&mut cfg);
                berth_server::serve(
                    &cfg,
                    |a| {
                        let _ = addr_tx.send(a);
                    },
                    async {
                        let _ = stop_rx.await;
                    },
                )
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        Server {
            url: format!("http://{addr}"),
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// Run `berth bench URL ARGS… --output json` in process.
fn bench(url: &str, args: &[&str]) -> Result<Outcome, BenchError> {
    let mut argv = vec!["bench", url];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--output", "json"]);
    let opts = Cli::try_parse_from(argv).unwrap().args.into_options()?;
    berth_bench::run(&opts)
}

/// The JSON report of a run that must succeed without errors.
fn clean_run(url: &str, args: &[&str]) -> Value {
    let outcome = bench(url, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let json: Value = serde_json::from_str(&outcome.to_json()).unwrap();
    assert_eq!(json["errors"], 0, "{args:?}: {json:#}");
    assert!(!outcome.has_errors());
    assert!(json["requests"].as_u64().unwrap() > 0, "{json:#}");
    assert_ordered(&json["latency_ms"]);
    json
}

fn assert_ordered(l: &Value) {
    let f = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("no {k} in {l}"));
    assert!(f("p50") > 0.0, "{l}");
    assert!(
        f("p50") <= f("p90") && f("p90") <= f("p99") && f("p99") <= f("max"),
        "{l}"
    );
    assert!(f("mean") <= f("max"), "{l}");
}

#[test]
fn push_pull_and_chunked_push_move_exactly_their_bytes() {
    let s = Server::start();
    let size = (100 << 10) + 3;
    let sz = size.to_string();
    let j = clean_run(
        &s.url,
        &["--scenario", "push", "--size", &sz, "--iterations", "3"],
    );
    assert_eq!(j["requests"], 3);
    assert_eq!(j["bytes"], 3 * size);
    assert_eq!(j["size_bytes"], size);
    assert_eq!(j["chunk_size_bytes"], Value::Null);
    assert_eq!(j["mode"], "closed-loop");
    assert_eq!(j["warmup_operations"], 1);
    assert!(
        j.get("note").is_none(),
        "berth takes single-POST uploads: {j}"
    );

    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "push-chunked",
            "--size",
            &sz,
            "--chunk-size",
            "40k",
            "--iterations",
            "2",
            "-c",
            "2",
        ],
    );
    assert_eq!(j["requests"], 2);
    assert_eq!(j["bytes"], 2 * size);
    assert_eq!(j["chunk_size_bytes"], 40 << 10);

    let pull = [
        "--scenario",
        "pull",
        "--size",
        "1M",
        "--iterations",
        "4",
        "-c",
        "2",
        "--verify-every",
        "2",
    ];
    let j = clean_run(&s.url, &pull);
    assert_eq!(j["requests"], 4);
    assert_eq!(j["bytes"], 4 << 20);
    assert!(j["throughput_bytes_per_sec"].as_f64().unwrap() > 0.0);
    // The blob depends only on the size: a second run finds it and pushes nothing.
    let j = clean_run(&s.url, &pull);
    assert_eq!(j["bytes"], 4 << 20);
}

#[test]
fn manifest_closed_and_open_loop() {
    let s = Server::start();
    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "manifest",
            "-c",
            "4",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
        ],
    );
    assert_eq!(j["mode"], "closed-loop");
    assert_eq!(j["concurrency"], 4);
    assert_eq!(j["warmup_secs"], 0.1);
    assert_eq!(j["connections_opened"], 4);
    let secs = j["measured_secs"].as_f64().unwrap();
    assert!((0.3..2.0).contains(&secs), "{secs}");
    assert!(j["bytes"].as_u64().unwrap() > 0);

    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "manifest",
            "--by",
            "digest",
            "--method",
            "head",
            "-c",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(j["bytes"], 0, "HEAD has no body: {j}");

    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "manifest",
            "--rate",
            "200",
            "-c",
            "2",
            "--duration",
            "0.5",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(j["mode"], "open-loop");
    assert_eq!(j["target_rate"], 200.0);
    let n = j["requests"].as_u64().unwrap();
    assert!(
        (90..=101).contains(&n),
        "about 100 requests scheduled in 0.5 s at 200/s, got {n}"
    );
}

#[test]
fn a_manifest_that_changes_under_the_bench_is_counted_as_errors() {
    let s = Server::start();
    let repo = "bench/changing";
    let target = Arc::new(Target::new(&s.url, None).unwrap());
    let other = Image::new(random_bytes(1024, None), "other");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut conn = Conn::new(target.clone());
    rt.block_on(oci::ensure_image(
        &mut conn,
        repo,
        &other,
        "other",
        oci::PushMode::SinglePost,
    ))
    .unwrap();
    // Overwrite `latest` again and again while the bench reads it.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        rt.block_on(async {
            while done_rx.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = oci::put_manifest(&mut conn, repo, "latest", &other.manifest).await;
            }
        });
    });
    let outcome = bench(
        &s.url,
        &[
            "--scenario",
            "manifest",
            "--repo",
            repo,
            "-c",
            "2",
            "--duration",
            "0.6",
            "--warmup",
            "0",
        ],
    )
    .unwrap();
    done_tx.send(()).unwrap();
    writer.join().unwrap();
    assert!(outcome.has_errors());
    let j: Value = serde_json::from_str(&outcome.to_json()).unwrap();
    assert!(j["errors"].as_u64().unwrap() > 0, "{j:#}");
    let sample = j["error_samples"][0].as_str().unwrap();
    assert!(
        sample.starts_with("GET manifest: Docker-Content-Digest sha256:"),
        "{sample}"
    );
}

#[test]
fn tags_pages_and_all_pages() {
    let s = Server::start();
    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "tags",
            "--tags",
            "30",
            "--page",
            "10",
            "-c",
            "3",
            "--duration",
            "0.3",
            "--warmup",
            "0",
        ],
    );
    assert!(j.get("note").is_none(), "berth honours n: {j}");
    // Already seeded: set-up skips, and following Link headers sees all 30.
    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "tags",
            "--tags",
            "30",
            "--page",
            "7",
            "--all-pages",
            "--duration",
            "0.3",
            "--warmup",
            "0",
        ],
    );
    assert!(j["operation"].as_str().unwrap().contains("every Link"));
    // Asking for more tags than the page size on a repository with fewer pages
    // still passes: the check is min(page, tags).
    clean_run(
        &s.url,
        &[
            "--scenario",
            "tags",
            "--tags",
            "30",
            "--page",
            "1000",
            "--duration",
            "0.2",
            "--warmup",
            "0",
        ],
    );
}

#[test]
fn mixed_reports_every_operation() {
    let s = Server::start();
    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "mixed",
            "--size",
            "64KiB",
            "-c",
            "4",
            "--duration",
            "0.8",
            "--warmup",
            "0.1",
        ],
    );
    let ops = j["operations"].as_object().unwrap();
    let names: Vec<&str> = ops.keys().map(String::as_str).collect();
    assert_eq!(names, ["manifest_get", "blob_get", "blob_head", "push"]);
    let total: u64 = ops.values().map(|o| o["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, j["requests"].as_u64().unwrap());
    assert!(
        ops["manifest_get"]["requests"].as_u64().unwrap()
            > ops["blob_head"]["requests"].as_u64().unwrap()
    );
    for (name, op) in ops {
        assert_eq!(op["errors"], 0, "{name}");
    }
}

#[test]
fn seed_counts_every_request() {
    let s = Server::start();
    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "seed",
            "--repos",
            "5",
            "--tags",
            "3",
            "-c",
            "2",
        ],
    );
    // 2 blob pushes into repo-0, 2 mounts for each other repository, 3 tags each.
    assert_eq!(j["requests"], 2 + 2 * 4 + 5 * 3);
    assert_eq!(j["operations"]["blob_mount"]["requests"], 8);
    assert_eq!(j["operations"]["manifest_put"]["requests"], 15);
    assert!(j.get("note").is_none(), "berth mounts: {j}");
    assert!(j.get("warmup_operations").is_none());
    // The seeded tags are there.
    let j = clean_run(
        &s.url,
        &[
            "--scenario",
            "tags",
            "--repo",
            "bench/s-4",
            "--tags",
            "3",
            "--page",
            "3",
            "--duration",
            "0.2",
            "--warmup",
            "0",
        ],
    );
    assert!(j["requests"].as_u64().unwrap() > 0);
}

#[test]
fn ready_reports_when_the_registry_answered() {
    let s = Server::start();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let outcome = bench(&s.url, &["--scenario", "ready"]).unwrap();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let j: Value = serde_json::from_str(&outcome.to_json()).unwrap();
    assert_eq!(j["scenario"], "ready");
    assert_eq!(j["attempts"], 1);
    let at = j["ready_unix_ns"].as_u64().unwrap();
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");

    // Nothing listens on a port just released: refused until the timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = bench(
        &format!("http://127.0.0.1:{port}"),
        &["--scenario", "ready", "--timeout", "0.2"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let msg = err.to_string();
    assert!(
        msg.contains("did not answer GET /v2/ within 0.2 s"),
        "{msg}"
    );
    assert!(msg.contains("refused"), "{msg}");
}

#[test]
fn basic_credentials_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = berth_auth::htpasswd::hash_password_with_cost("s3cret", 4).unwrap();
    berth_auth::htpasswd::set_user(&htpasswd, "alice", &hash).unwrap();
    let audit = dir.path().join("audit.log");
    let s = Server::start_with(move |cfg| {
        cfg.audit.file = Some(audit);
        cfg.auth.mode = berth_server::config::AuthMode::Htpasswd;
        cfg.auth.htpasswd = Some(htpasswd);
        cfg.auth.admins = vec!["alice".to_owned()];
    });
    let args = [
        "--scenario",
        "manifest",
        "--duration",
        "0.2",
        "--warmup",
        "0",
    ];
    let mut with_user = args.to_vec();
    with_user.extend_from_slice(&["--user", "alice:s3cret"]);
    clean_run(&s.url, &with_user);
    // Without credentials the set-up is refused, naming the request and the code.
    let err = bench(&s.url, &args).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(
        msg.starts_with("setup failed: POST /v2/bench/s/blobs/uploads/?digest=sha256:"),
        "{msg}"
    );
    assert!(msg.contains("401 Unauthorized (UNAUTHORIZED"), "{msg}");
}
