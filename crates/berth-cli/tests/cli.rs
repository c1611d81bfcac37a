//! The `berth` binary's own behaviour: `check-config`, the ready line, environment
//! overrides, the data-directory lock and graceful shutdown.

// Test helpers panic on anything unexpected; that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Server;

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn check_config_accepts_the_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/berth.toml");
    let out = berth().args(["check-config", example]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

/// Every problem is reported at once, each naming the file and key; exit code 2.
#[test]
fn check_config_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = 5000\nport = 1\n[storage]\ndata_dir = 7\n[cache]\nsize = 1\n",
    )
    .unwrap();
    let out = berth().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let name = file.display().to_string();
    for want in [
        "server.listen must be a string, not an integer",
        "unknown key server.port",
        "storage.data_dir must be a string",
        "unknown section [cache]",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert_eq!(
        err.lines().filter(|l| l.starts_with(&name)).count(),
        4,
        "{err}"
    );

    let out = berth()
        .args(["check-config", "/nonexistent/berth.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/berth.toml: cannot read"));
}

/// `BERTH_<SECTION>_<KEY>` overrides the file; a bad override stops `serve` with
/// exit code 2 before anything is opened.
#[test]
fn env_overrides_and_bad_env() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = berth()
        .arg("serve")
        .env("BERTH_SERVER_LISTEN", "127.0.0.1:0")
        .env("BERTH_STORAGE_DATA_DIR", &data)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.starts_with("berth listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(
        line.contains(&format!("(data in {})", data.display())),
        "{line}"
    );
    assert!(data.join("meta.db").exists());

    let out = berth()
        .arg("serve")
        .env("BERTH_LIMITS_MAX_MANIFEST_BYTES", "huge")
        .env("BERTH_STORAGE_DATA_DIR", dir.path().join("never"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BERTH_LIMITS_MAX_MANIFEST_BYTES"));
    assert!(
        !dir.path().join("never").exists(),
        "nothing is created on bad config"
    );
}

/// Acceptance: "`berth serve` starts on an empty data dir and serves in under a
/// second" — measured and printed here (timing is reported, not asserted), while
/// the test asserts the first request after the ready line succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn serves_right_after_the_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let server = Server::start(&dir.path().join("fresh"));
    let r = common::client()
        .get(format!("{}/v2/", server.base_url()))
        .send()
        .await
        .unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(r.status(), 200);
    eprintln!("berth serve: empty data dir to first 200 in {elapsed:?}");
}

/// A second server on the same data directory is refused, naming the directory.
#[test]
fn data_dir_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::start(dir.path());
    let out = berth()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another berth process"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

/// SIGTERM: the listener closes, an in-flight request finishes, then exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let base = server.base_url();
    let client = common::client();
    let r = client
        .post(format!("{base}/v2/slow/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();

    // A PATCH whose body arrives in two parts, with the SIGTERM in between.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let url = format!("{base}{location}");
    let patch = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .patch(url)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
        }
    });
    tx.send(Bytes::from_static(b"aaaa")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New connections are no longer accepted …
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(fresh.get(format!("{base}/v2/")).send().await.is_err());
    // … but the request in flight completes.
    tx.send(Bytes::from_static(b"bbbb")).await.unwrap();
    drop(tx);
    let r = patch.await.unwrap().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-7");
    server.stop(); // asserts exit status 0
}

/// `berth layout verify`: a layout berth writes is sound (exit 0); a manifest that
/// parses but breaks the image-spec schema (a layer media type that is not a media
/// type, image-spec `descriptor.md` § Properties) is reported by file and reason
/// with exit 1.
#[test]
fn layout_verify_checks_the_image_spec_schemas() {
    use berth_oci::layout::Layout;
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let c = layout.write_bytes(config).unwrap();
    let l = layout.write_bytes(b"layer").unwrap();
    let manifest = |layer_type: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": c.to_string(), "size": config.len()},
            "layers": [{"mediaType": layer_type, "digest": l.to_string(), "size": 5}],
        }))
        .unwrap()
    };
    let add = |bytes: &[u8], name: &str| {
        let d = layout.write_bytes(bytes).unwrap();
        let desc = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "digest": d.to_string(), "size": bytes.len()});
        layout.set_ref(desc, Some(name)).unwrap();
    };
    add(&manifest("application/vnd.oci.image.layer.v1.tar"), "good");
    let out = berth()
        .arg("layout")
        .arg("verify")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (3 blobs, 1 manifests verified)"));

    add(&manifest("not a media type"), "bad");
    let out = berth()
        .arg("layout")
        .arg("verify")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("index.json \"bad\""), "{stdout}");
    assert!(stdout.contains("schema"), "{stdout}");
    assert!(
        !stdout.contains("\"good\""),
        "only the bad entry is reported: {stdout}"
    );
}
