//! Issue 7 through the real binary: a real Prometheus (Debian package
//! `prometheus`, installed by tests/clients/install-deps.sh) scrapes `berth serve`
//! while the test drives a known sequence of pushes, pulls, failures and
//! deletes; the SLI values are then read back through Prometheus's query API.
//! Also: the separate metrics listener, and structured JSON access logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use reqwest::StatusCode;

/// A port free right now on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned()
}

/// A Prometheus process, killed on drop.
struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Start Prometheus scraping `target` (host:port) every second, with berth's
    /// recording rules loaded.
    fn start(dir: &Path, target: &str) -> Prometheus {
        let bin = which("prometheus").unwrap_or_else(|| {
            panic!(
                "the `prometheus` binary is needed (Debian package prometheus; \
                 tests/clients/install-deps.sh installs it)"
            )
        });
        let rules = workspace_root().join("deploy/prometheus/berth-rules.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Run an instant query; the result vector.
    async fn query(&self, c: &reqwest::Client, q: &str) -> Vec<serde_json::Value> {
        let resp = c
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await;
        let Ok(resp) = resp else { return Vec::new() };
        let bytes = resp.bytes().await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of `q` (None when the result is empty).
    async fn value(&self, c: &reqwest::Client, q: &str) -> Option<f64> {
        let r = self.query(c, q).await;
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
    }

    /// Wait (at most 60 s) until `q` equals `want`; the last value seen.
    async fn wait_for(&self, c: &reqwest::Client, q: &str, want: f64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.value(c, q).await;
            if v.is_some_and(|v| (v - want).abs() < 1e-9) || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn layer(seed: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect::<Vec<u8>>(),
    )
}

/// Push config + layers and an image manifest tagged `tag`; (manifest digest,
/// config + layer bytes).
async fn push_image(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    layers: &[Bytes],
) -> (String, u64) {
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"t":"{tag}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    ));
    push_bytes(c, base, repo, &config).await.unwrap();
    let mut descs = Vec::new();
    let mut total = config.len() as u64;
    for l in layers {
        let d = push_bytes(c, base, repo, l).await.unwrap();
        descs.push(Desc::new(OCI_LAYER, &d, l.len() as u64));
        total += l.len() as u64;
    }
    let cdesc = Desc::new(OCI_CONFIG, &sha256(&config), config.len() as u64);
    let manifest = image_manifest(&cdesc, &descs, None);
    push_manifest(c, base, repo, tag, &manifest).await.unwrap();
    (sha256(&manifest), total)
}

/// The blob file of `digest` under a data directory.
fn blob_path(data: &Path, digest: &str) -> PathBuf {
    let hex = hex_of(digest);
    data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// The seed's SLIs as Prometheus records them: a known sequence of pushes,
/// pulls (successful, not found, server errors, a download cut off and then
/// retried), invalid manifests and deletes, scraped by a real Prometheus every
/// second; every value is read back through its query API, including berth's
/// recording rules from deploy/prometheus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_records_the_slis() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let base = server.base_url();
    let target = base.trim_start_matches("http://").to_owned();
    let prom = Prometheus::start(dir.path(), &target);
    let c = client();
    // Rates need a sample from before the sequence: wait for the first scrape.
    assert_eq!(
        prom.wait_for(&c, r#"up{job="berth"}"#, 1.0).await,
        Some(1.0),
        "Prometheus never scraped berth"
    );

    // Pushes: one image of two layers (M8 observes config + layers), plus a
    // big blob for the cut-off download.
    let small = layer(1, 20_000);
    let (manifest_digest, image_bytes) =
        push_image(&c, &base, "app", "v1", &[small.clone(), layer(2, 30_000)]).await;
    let big = layer(3, 64 << 20);
    let big_digest = push_bytes(&c, &base, "app", &big).await.unwrap();
    let broken = layer(4, 1000);
    let broken_digest = push_bytes(&c, &base, "app", &broken).await.unwrap();

    // M9: two refused manifests, each with its OCI code.
    let resp = c
        .put(format!("{base}/v2/app/manifests/bad"))
        .header("content-type", OCI_MANIFEST)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let missing = Desc::new(OCI_LAYER, &sha256(b"never pushed"), 12);
    let cdesc = Desc::new(OCI_CONFIG, &sha256(b"nor this"), 8);
    let resp = c
        .put(format!("{base}/v2/app/manifests/dangling"))
        .header("content-type", OCI_MANIFEST)
        .body(image_manifest(&cdesc, &[missing], None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Pulls: 3 manifest successes, 1 manifest not found.
    for _ in 0..3 {
        let (status, _, _) = get_manifest(&c, &base, "app", "v1").await.unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = get_manifest(&c, &base, "app", "nope").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    // 2 blob successes and 1 blob not found.
    let small_digest = sha256(&small);
    for _ in 0..2 {
        let (status, _, body) = get_blob(&c, &base, "app", &small_digest).await.unwrap();
        assert_eq!((status, body.len()), (StatusCode::OK, small.len()));
    }
    let (status, _, _) = get_blob(&c, &base, "app", &sha256(b"absent"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A blob the store cannot open (its file replaced by a symlink loop): 500,
    // then the same client asks again: a retry, failing again.
    let p = blob_path(&data, &broken_digest);
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&p, &p).unwrap();
    for _ in 0..2 {
        let (status, _, _) = get_blob(&c, &base, "app", &broken_digest).await.unwrap();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    // A 64 MiB download cut off by the client after its first bytes (aborted),
    // then retried to the end (a retry that succeeds).
    {
        let fresh = client_fresh_connections();
        let mut resp = fresh
            .get(format!("{base}/v2/app/blobs/{big_digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let first = resp.chunk().await.unwrap().unwrap();
        assert!(!first.is_empty());
        drop(resp);
        drop(fresh);
    }
    // The server notices the closed connection when a write fails.
    let aborted_q = r#"berth_pulls_total{kind="blob",attempt="first",result="aborted"}"#;
    assert_eq!(prom.wait_for(&c, aborted_q, 1.0).await, Some(1.0));
    let (status, _, body) = get_blob(&c, &base, "app", &big_digest).await.unwrap();
    assert_eq!((status, body.len()), (StatusCode::OK, big.len()));

    // A delete by digest.
    let resp = c
        .delete(format!("{base}/v2/app/manifests/{manifest_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    // Everything as Prometheus scraped it. The last request's effect is waited
    // for; then every other value must already be there.
    let q = r#"berth_http_requests_total{operation="delete_manifest",status_class="2xx"}"#;
    assert_eq!(prom.wait_for(&c, q, 1.0).await, Some(1.0), "{q}");
    let expect: &[(&str, f64)] = &[
        // M1, by kind, attempt and result.
        (
            r#"berth_pulls_total{kind="manifest",attempt="first",result="success"}"#,
            3.0,
        ),
        (
            r#"berth_pulls_total{kind="manifest",attempt="first",result="client_error"}"#,
            1.0,
        ),
        (
            r#"berth_pulls_total{kind="blob",attempt="first",result="success"}"#,
            2.0,
        ),
        (
            r#"berth_pulls_total{kind="blob",attempt="first",result="client_error"}"#,
            1.0,
        ),
        (
            r#"berth_pulls_total{kind="blob",attempt="first",result="server_error"}"#,
            1.0,
        ),
        (
            r#"berth_pulls_total{kind="blob",attempt="retry",result="server_error"}"#,
            1.0,
        ),
        (aborted_q, 1.0),
        (
            r#"berth_pulls_total{kind="blob",attempt="retry",result="success"}"#,
            1.0,
        ),
        // M2: one latency observation per successful pull.
        (r#"berth_pull_duration_seconds_count{kind="manifest"}"#, 3.0),
        (r#"berth_pull_duration_seconds_count{kind="blob"}"#, 3.0),
        (r#"berth_pull_first_byte_seconds_count{kind="blob"}"#, 3.0),
        // M8: one image, its exact size.
        ("berth_pushed_image_bytes_count", 1.0),
        ("berth_pushed_image_bytes_sum", image_bytes as f64),
        // M9, by reason.
        (
            r#"berth_manifest_validation_failures_total{reason="manifest_invalid"}"#,
            1.0,
        ),
        (
            r#"berth_manifest_validation_failures_total{reason="manifest_blob_unknown"}"#,
            1.0,
        ),
        // M10: the two 500s, on the operation that failed.
        (
            r#"berth_http_requests_total{operation="pull_blob",status_class="5xx"}"#,
            2.0,
        ),
        (r#"sum(berth_http_requests_total{status_class="5xx"})"#, 2.0),
        // Per-operation counts and bytes.
        (
            r#"berth_http_requests_total{operation="put_manifest",status_class="2xx"}"#,
            1.0,
        ),
        (
            r#"berth_http_requests_total{operation="put_manifest",status_class="4xx"}"#,
            2.0,
        ),
        (
            r#"berth_http_requests_total{operation="pull_manifest",status_class="2xx"}"#,
            3.0,
        ),
        (r#"berth_http_requests_in_flight"#, 1.0), // the scrape itself
        // Storage.
        ("berth_repositories", 1.0),
        ("berth_tags", 0.0),
        ("berth_uploads_in_progress", 0.0),
    ];
    let mut wrong = Vec::new();
    for (q, want) in expect {
        let got = prom.value(&c, q).await;
        if got.is_none_or(|g| (g - want).abs() > 1e-9) {
            wrong.push(format!("{q}: want {want}, got {got:?}"));
        }
    }
    // Bytes out of pull_blob: every successful body in full, plus the 500s'
    // error bodies and the partial download.
    let out = prom
        .value(
            &c,
            r#"berth_http_response_bytes_total{operation="pull_blob"}"#,
        )
        .await
        .unwrap_or(0.0);
    let full = (2 * small.len() + big.len()) as f64;
    if !(out > full && out < full + (big.len() as f64)) {
        wrong.push(format!(
            "pull_blob response bytes {out}, want a bit over {full}"
        ));
    }
    // Bytes in of complete_upload/start_upload include the big blob's 64 MiB.
    let pushed_in = prom
        .value(
            &c,
            r#"sum(berth_http_request_bytes_total{operation=~"start_upload|complete_upload|push_blob_chunk"})"#,
        )
        .await
        .unwrap_or(0.0);
    if pushed_in < big.len() as f64 {
        wrong.push(format!("upload request bytes {pushed_in} < {}", big.len()));
    }
    let stored = prom.value(&c, "berth_storage_bytes").await.unwrap_or(0.0);
    if stored < big.len() as f64 {
        wrong.push(format!("berth_storage_bytes {stored} < {}", big.len()));
    }
    // Recording rules (deploy/prometheus/berth-rules.yml) over the same data:
    // 6 good pulls of 9 counted (the 404s are excluded) → 2/3.
    let rules: &[(&str, f64)] = &[("berth:pull_success:ratio_rate5m", 6.0 / 9.0)];
    for (q, want) in rules {
        let got = prom.wait_for(&c, q, *want).await;
        if got.is_none_or(|g| (g - want).abs() > 0.02) {
            wrong.push(format!("{q}: want {want}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "Prometheus disagrees:\n{}\n(prometheus log: {})",
        wrong.join("\n"),
        std::fs::read_to_string(dir.path().join("prometheus.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `[metrics] listen` moves `/metrics` to its own address (the main listener
/// answers 404 there), served in OpenMetrics text format; `enabled = false`
/// turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_listener_or_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("berth.toml");
    std::fs::write(&cfg, format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config".as_ref(), cfg.as_os_str()],
    );
    let c = client();
    let resp = c
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        header_value(resp.headers(), "content-type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text"),
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("# TYPE berth_pulls counter"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
    // A bad address is a configuration error naming the key.
    std::fs::write(&cfg, "[metrics]\nlisten = \"nowhere\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["check-config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics.listen \"nowhere\""), "{err}");

    let off_dir = tempfile::tempdir().unwrap();
    let off_cfg = off_dir.path().join("berth.toml");
    std::fs::write(&off_cfg, "[metrics]\nenabled = false\n").unwrap();
    let off = Server::start_with(
        &off_dir.path().join("data"),
        &["--config".as_ref(), off_cfg.as_os_str()],
    );
    let resp = c
        .get(format!("{}/metrics", off.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// `[log] access = true, format = "json"`: one JSON object per request with
/// its request id (echoed in `X-Request-Id`; a client's sane id is kept, an
/// unsafe one replaced), operation, repository, status, bytes and duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_access_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("berth.toml");
    std::fs::write(&cfg, "[log]\nformat = \"json\"\naccess = true\n").unwrap();
    let log = dir.path().join("berth.log");
    let mut server = Server::start_logged(
        &dir.path().join("data"),
        &["--config".as_ref(), cfg.as_os_str()],
        &log,
    );
    let base = server.base_url();
    let c = client();
    let blob = layer(9, 5000);
    let digest = push_bytes(&c, &base, "team/app", &blob).await.unwrap();
    let resp = c
        .get(format!("{base}/v2/team/app/blobs/{digest}"))
        .header("x-request-id", "trace-42.a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header_value(resp.headers(), "x-request-id").as_deref(),
        Some("trace-42.a")
    );
    assert_eq!(resp.bytes().await.unwrap().len(), blob.len());
    let resp = c
        .get(format!("{base}/v2/team/app/manifests/missing"))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let generated = header_value(resp.headers(), "x-request-id").unwrap();
    assert_eq!(generated.len(), 32, "{generated}");
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let _ = resp.bytes().await;
    server.stop();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "berth::access")
        .collect();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every log line is JSON:\n{text}"
    );
    let pull = lines
        .iter()
        .find(|v| v["request_id"] == "trace-42.a")
        .unwrap_or_else(|| panic!("no access line for trace-42.a:\n{text}"));
    assert_eq!(pull["operation"], "pull_blob");
    assert_eq!(pull["repository"], "team/app");
    assert_eq!(pull["status"], 200);
    assert_eq!(pull["bytes_out"], blob.len() as u64);
    assert_eq!(pull["complete"], true);
    assert_eq!(pull["method"], "GET");
    assert!(pull["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    assert_eq!(pull["client"], "127.0.0.1");
    let miss = lines
        .iter()
        .find(|v| v["request_id"] == generated.as_str())
        .unwrap_or_else(|| panic!("no access line for {generated}:\n{text}"));
    assert_eq!(miss["operation"], "pull_manifest");
    assert_eq!(miss["status"], 404);
    // The push: its upload bytes are counted in.
    let upload_in: u64 = lines
        .iter()
        .filter(|v| v["operation"] == "start_upload" || v["operation"] == "complete_upload")
        .filter_map(|v| v["bytes_in"].as_u64())
        .sum();
    assert_eq!(upload_in, blob.len() as u64, "{text}");
}
