//! The storage lifecycle through the real binary: `berth gc`, `berth retention
//! apply`, `berth scrub`, `berth usage` and `berth quarantine` against a running
//! `berth serve` (through its admin socket) and against a stopped one (directly),
//! and immutable tags and quotas as HTTP clients see them (403 `DENIED`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use reqwest::StatusCode;

/// Run `berth <args>`; (exit code, stdout, stderr).
fn berth(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("BERTH_LOG", "warn")
        .output()
        .expect("run berth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `berth <args> -o json` parsed; panics with stderr on a non-zero exit unless
/// `expect_code` says otherwise.
fn berth_json(args: &[&str], expect_code: i32) -> serde_json::Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", "json"]);
    let (code, out, err) = berth(&all);
    assert_eq!(code, expect_code, "berth {args:?}: {err}\n{out}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("berth {args:?} printed no JSON ({e}): {out}"))
}

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("berth.toml");
    let text = format!(
        "[gc]\ninterval = \"off\"\ngrace = 1\n\n[scrub]\ninterval = \"off\"\nrate = 0\n\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

struct Image {
    blobs: Vec<Bytes>,
    manifest: Vec<u8>,
    digest: String,
}

/// A small image whose layers are `layers` and a unique config.
fn image(label: &str, layers: &[Bytes]) -> Image {
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"l":"{label}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    ));
    let cdesc = Desc::new(OCI_CONFIG, &sha256(&config), config.len() as u64);
    let ldescs: Vec<Desc> = layers
        .iter()
        .map(|l| Desc::new(OCI_LAYER, &sha256(l), l.len() as u64))
        .collect();
    let manifest = image_manifest(&cdesc, &ldescs, None);
    let digest = sha256(&manifest);
    let mut blobs = vec![config];
    blobs.extend(layers.iter().cloned());
    Image {
        blobs,
        manifest,
        digest,
    }
}

async fn push_image(c: &reqwest::Client, base: &str, repo: &str, tag: &str, img: &Image) {
    for b in &img.blobs {
        push_bytes(c, base, repo, b).await.unwrap();
    }
    push_manifest(c, base, repo, tag, &img.manifest)
        .await
        .unwrap();
}

fn layer(seed: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect::<Vec<u8>>(),
    )
}

async fn error_code(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    (
        status,
        body["errors"][0]["code"].as_str().unwrap_or("").to_owned(),
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

/// `berth gc` reaches a running server through its admin socket: a dry run
/// reports exactly what the real run then deletes, the tagged image stays whole,
/// and the untagged one's unique blobs are gone from disk. Stopped, the same
/// command opens the data directory itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_online_through_the_admin_socket_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), "");
    let mut server = Server::start_with(&data, &["--config".as_ref(), cfg.as_os_str()]);
    let base = server.base_url();
    let c = client();
    let shared = layer(1, 40_000);
    let keep = image("keep", &[shared.clone(), layer(2, 30_000)]);
    let drop = image("drop", &[shared.clone(), layer(3, 50_000)]);
    push_image(&c, &base, "app", "v1", &keep).await;
    push_image(&c, &base, "app", "v2", &drop).await;
    // Delete the tag only: the manifest becomes unreachable.
    let resp = c
        .delete(format!("{base}/v2/app/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let d = data.to_str().unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let dry = berth_json(&["gc", "--dry-run", "--config", cfg_s, "--data-dir", d], 0);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["manifests"],
        serde_json::json!([format!("app@{}", drop.digest)])
    );
    let would: Vec<String> = dry["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_owned())
        .collect();
    let mut expect = vec![sha256(&drop.blobs[0]), sha256(&drop.blobs[2])];
    expect.sort();
    assert_eq!(would, expect, "the shared layer must not be collected");
    assert_eq!(
        dry["bytes_freed"].as_u64().unwrap(),
        (drop.blobs[0].len() + drop.blobs[2].len()) as u64
    );
    // Nothing was deleted by the dry run.
    let (st, _, _) = get_manifest(&c, &base, "app", &drop.digest).await.unwrap();
    assert_eq!(st, StatusCode::OK);

    let (code, out, err) = berth(&["gc", "--config", cfg_s, "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("deleted manifest app@{}", drop.digest)),
        "{out}"
    );
    assert!(out.contains("2 blobs"), "{out}");
    let (st, _, _) = get_manifest(&c, &base, "app", &drop.digest).await.unwrap();
    assert_eq!(st, StatusCode::NOT_FOUND, "the collected manifest is gone");
    for b in &keep.blobs {
        let (st, _, body) = get_blob(&c, &base, "app", &sha256(b)).await.unwrap();
        assert_eq!(st, StatusCode::OK);
        assert_eq!(&body, b);
    }
    let on_disk: Vec<String> = blob_files(&data)
        .into_iter()
        .map(|(_, hex)| format!("sha256:{hex}"))
        .collect();
    for gone in &expect {
        assert!(!on_disk.contains(gone), "{gone} still on disk");
    }
    assert_eq!(on_disk.len(), keep.blobs.len());

    // Stopped: the command opens the directory itself (no socket needed).
    server.stop();
    assert!(
        !data.join("admin.sock").exists(),
        "socket removed at shutdown"
    );
    let again = berth_json(&["gc", "--config", cfg_s, "--data-dir", d], 0);
    assert_eq!(again["manifests"].as_array().unwrap().len(), 0);
    assert_eq!(again["bytes_freed"], 0);
    // A directory with no registry in it is an error naming it.
    let empty = dir.path().join("empty");
    let (code, _, err) = berth(&["gc", "--data-dir", empty.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("holds no registry data"), "{err}");
}

/// Immutable tags and quotas, as an HTTP client sees them: 403 with the spec's
/// `DENIED` code and a message naming the rule; nothing stored changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_tags_and_quotas_answer_denied() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        r#"
[immutable_tags]
rules = [ { repositories = ["prod/**"], tags = "v.*", except = ["latest"] } ]

[quotas]
rules = [ { repositories = ["small/*"], limit = "100KiB" } ]
"#,
    );
    let mut server = Server::start_with(&data, &["--config".as_ref(), cfg.as_os_str()]);
    let base = server.base_url();
    let c = client();

    let one = image("one", &[layer(10, 1000)]);
    let two = image("two", &[layer(11, 1000)]);
    push_image(&c, &base, "prod/app", "v1", &one).await;
    push_image(&c, &base, "prod/app", "latest", &one).await;
    for b in &two.blobs {
        push_bytes(&c, &base, "prod/app", b).await.unwrap();
    }
    // Moving v1 is refused; pushing the same manifest again is fine.
    let resp = c
        .put(format!("{base}/v2/prod/app/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(two.manifest.clone())
        .send()
        .await
        .unwrap();
    let (st, code, msg) = error_code(resp).await;
    assert_eq!((st, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    assert!(
        msg.contains("immutable_tags.rules[0]") && msg.contains("prod/**"),
        "{msg}"
    );
    push_manifest(&c, &base, "prod/app", "v1", &one.manifest)
        .await
        .unwrap();
    let (_, digest, _) = get_manifest(&c, &base, "prod/app", "v1").await.unwrap();
    assert_eq!(digest.as_deref(), Some(one.digest.as_str()));
    // Deleting it, or the manifest under it, is refused too.
    for reference in ["v1", one.digest.as_str()] {
        let resp = c
            .delete(format!("{base}/v2/prod/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        let (st, code, _) = error_code(resp).await;
        assert_eq!(
            (st, code.as_str()),
            (StatusCode::FORBIDDEN, "DENIED"),
            "{reference}"
        );
    }
    // `latest` is excepted: it moves.
    push_manifest(&c, &base, "prod/app", "latest", &two.manifest)
        .await
        .unwrap();

    // Quota: 100 KiB per small/* repository, on unique blobs.
    let a = layer(20, 60_000);
    let b = layer(21, 60_000);
    push_bytes(&c, &base, "small/x", &a).await.unwrap();
    push_bytes(&c, &base, "small/x", &a).await.unwrap(); // already there: free
    let blobs_before = blob_files(&data).len();
    let resp = c
        .post(format!(
            "{base}/v2/small/x/blobs/uploads/?digest={}",
            sha256(&b)
        ))
        .header("content-type", "application/octet-stream")
        .body(b.clone())
        .send()
        .await
        .unwrap();
    let (st, code, msg) = error_code(resp).await;
    assert_eq!((st, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    assert!(msg.contains("quota"), "{msg}");
    assert_eq!(
        blob_files(&data).len(),
        blobs_before,
        "nothing stored past the quota"
    );
    assert!(upload_entries(&data).is_empty(), "no upload left behind");
    // Another repository matching the pattern has its own allowance.
    push_bytes(&c, &base, "small/y", &b).await.unwrap();

    let d = data.to_str().unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let usage = berth_json(&["usage", "--config", cfg_s, "--data-dir", d], 0);
    let repos = usage["repositories"].as_array().unwrap();
    let x = repos.iter().find(|r| r["repository"] == "small/x").unwrap();
    assert_eq!(x["bytes"].as_u64().unwrap(), a.len() as u64);
    assert_eq!(x["blobs"], 1);
    assert_eq!(x["quota"].as_u64().unwrap(), 100 * 1024);
    let p = repos
        .iter()
        .find(|r| r["repository"] == "prod/app")
        .unwrap();
    assert_eq!(p["quota"], serde_json::Value::Null);
    // Unique bytes across repositories equal the blob files on disk.
    let on_disk: u64 = blob_files(&data)
        .iter()
        .map(|(path, _)| std::fs::metadata(path).unwrap().len())
        .sum();
    assert_eq!(usage["unique_bytes"].as_u64().unwrap(), on_disk);
    server.stop();
}

/// Scrub finds a flipped byte: the exit code says so, the report names the
/// repository and digest, the blob is no longer served, and it can be pushed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_quarantines_a_corrupt_blob() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), "");
    let mut server = Server::start_with(&data, &["--config".as_ref(), cfg.as_os_str()]);
    let base = server.base_url();
    let c = client();
    let bad = layer(30, 70_000);
    let img = image("s", &[bad.clone(), layer(31, 5_000)]);
    push_image(&c, &base, "lib/s", "v1", &img).await;
    let d = data.to_str().unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let clean = berth_json(&["scrub", "--config", cfg_s, "--data-dir", d], 0);
    assert_eq!(clean["blobs_checked"], 3);
    assert_eq!(clean["corrupt"].as_array().unwrap().len(), 0);

    let digest = sha256(&bad);
    let path = blob_files(&data)
        .into_iter()
        .find(|(_, hex)| format!("sha256:{hex}") == digest)
        .unwrap()
        .0;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1234] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let (code, out, err) = berth(&["scrub", "--rate", "0", "--config", cfg_s, "--data-dir", d]);
    assert_eq!(code, 1, "scrub must fail when it finds corruption: {err}");
    assert!(
        out.contains(&format!("corrupt blob {digest} in lib/s")),
        "{out}"
    );
    assert!(
        out.contains(&format!("manifest {}", img.digest)),
        "inconsistency reported: {out}"
    );
    let (st, _, body) = get_blob(&c, &base, "lib/s", &digest).await.unwrap();
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("BLOB_UNKNOWN"));
    let q = berth_json(&["quarantine", "--config", cfg_s, "--data-dir", d], 0);
    assert_eq!(q[0]["digest"], digest.as_str());
    assert_eq!(q[0]["repositories"], serde_json::json!(["lib/s"]));
    assert!(std::fs::read_dir(data.join("quarantine")).unwrap().count() == 1);
    // The client pushes it again; the image is whole.
    push_bytes(&c, &base, "lib/s", &bad).await.unwrap();
    let (st, _, body) = get_blob(&c, &base, "lib/s", &digest).await.unwrap();
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, bad);
    let after = berth_json(&["scrub", "--config", cfg_s, "--data-dir", d], 0);
    assert_eq!(after["inconsistencies"].as_array().unwrap().len(), 0);
    server.stop();
}

/// Retention through the CLI: a dry run changes nothing; the real run deletes
/// what the rule selects and keeps the newest, the regex-matching and the
/// immutable tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_apply_dry_run_and_real() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        r#"
[retention]
interval = "off"
rules = [ { repositories = ["ci/**"], keep_last = 2, keep_tags = "release-.*" } ]

[immutable_tags]
rules = [ { repositories = ["ci/**"], tags = "pinned" } ]
"#,
    );
    let mut server = Server::start_with(&data, &["--config".as_ref(), cfg.as_os_str()]);
    let base = server.base_url();
    let c = client();
    for (i, tag) in ["pinned", "release-1", "b1", "b2", "b3", "b4"]
        .iter()
        .enumerate()
    {
        let img = image(tag, &[layer(40 + i as u8, 2_000)]);
        push_image(&c, &base, "ci/app", tag, &img).await;
        // Tag times are whole seconds: space the pushes so "newest" is defined.
        tokio::time::sleep(Duration::from_millis(1050)).await;
    }
    let d = data.to_str().unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let dry = berth_json(
        &[
            "retention",
            "apply",
            "--dry-run",
            "--config",
            cfg_s,
            "--data-dir",
            d,
        ],
        0,
    );
    let names = |v: &serde_json::Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tag"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&dry["deleted"]), ["b1", "b2"]);
    assert_eq!(
        names(&dry["kept"]),
        ["pinned"],
        "immutable kept, and said so"
    );
    assert_eq!(
        list_tags(&c, &base, "ci/app").await.len(),
        6,
        "dry run deleted nothing"
    );
    let (code, out, err) = berth(&["retention", "apply", "--config", cfg_s, "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted ci/app:b1"), "{out}");
    let mut tags = list_tags(&c, &base, "ci/app").await;
    tags.sort();
    assert_eq!(tags, ["b3", "b4", "pinned", "release-1"]);
    server.stop();
}

/// Bad lifecycle configuration is refused with every problem named by field.
#[test]
fn bad_lifecycle_config_names_each_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[gc]
grace = "soon"
untagged = "maybe"

[retention]
rules = [ { repositories = ["a"], keep_tags = "(" } ]

[quotas]
rules = [ { repositories = ["x/**"], limit = "lots" } ]
"#,
    )
    .unwrap();
    let (code, _, err) = berth(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    for field in [
        "gc.grace",
        "gc.untagged",
        "retention.rules[0]: set keep_last",
        "retention.rules[0].keep_tags",
        "quotas.rules[0].limit",
    ] {
        assert!(err.contains(field), "{field} not named in:\n{err}");
    }
}
