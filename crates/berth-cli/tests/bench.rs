//! `berth bench` as scripts use it: one JSON object on stdout, and the exit codes
//! (0 clean run, 1 measured requests failed, 2 bad usage or failed set-up). The
//! scenarios themselves are tested in `crates/berth-bench/tests/scenarios.rs`.

// Test helpers panic on anything unexpected; that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::Server;
use serde_json::Value;

fn bench(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.arg("bench").args(args);
    c
}

/// The one JSON object a run printed on stdout.
fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line on stdout: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn json_contract_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let url = server.base_url();

    let out = bench(&[&url, "--scenario", "ready", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let j = json_of(&out);
    assert_eq!(j["scenario"], "ready");
    assert!(j["ready_unix_ns"].as_u64().unwrap() > 1_600_000_000_000_000_000);
    assert!(j["attempts"].as_u64().unwrap() >= 1);

    let out = bench(&[
        &url,
        "--scenario",
        "push",
        "--size",
        "4KiB",
        "--iterations",
        "2",
        "--output",
        "json",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let j = json_of(&out);
    for key in [
        "scenario",
        "url",
        "mode",
        "concurrency",
        "size_bytes",
        "chunk_size_bytes",
        "measured_secs",
        "requests",
        "errors",
        "error_samples",
        "bytes",
        "throughput_bytes_per_sec",
        "requests_per_sec",
        "latency_ms",
    ] {
        assert!(j.get(key).is_some(), "no {key} in {j}");
    }
    assert_eq!(j["url"], url.as_str());
    assert_eq!(j["bytes"], 2 * 4096);

    // Text output says what was measured and that warm-up was excluded.
    let out = bench(&[
        &url,
        "--scenario",
        "manifest",
        "--duration",
        "0.2",
        "--warmup",
        "0.1",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("closed-loop") && text.contains("warm-up excluded"),
        "{text}"
    );

    // Bad usage: exit 2, the flag named.
    let out = bench(&[&url, "--scenario", "push", "--size", "12MB"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--size"),
        "{out:?}"
    );
    let out = bench(&[&url, "--scenario", "tags", "--rate", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--rate"),
        "{out:?}"
    );

    // The server dies during a run: the run goes on, counts the failures, prints
    // its report and exits 1.
    let child = bench(&[
        &url,
        "--scenario",
        "manifest",
        "-c",
        "2",
        "--duration",
        "1.5",
        "--warmup",
        "0",
        "--output",
        "json",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let j = json_of(&out);
    assert!(j["errors"].as_u64().unwrap() > 0, "{j}");
    assert!(
        j["requests"].as_u64().unwrap() > j["errors"].as_u64().unwrap(),
        "{j}"
    );
    let samples = j["error_samples"].as_array().unwrap();
    assert!(!samples.is_empty() && samples.len() <= 5, "{j}");

    // Set-up against a dead server: exit 2, the request named.
    let out = bench(&[&url, "--scenario", "manifest", "--duration", "0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("setup failed: POST /v2/bench/s/blobs/uploads/"),
        "{err}"
    );

    // ready gives up: exit 1.
    let out = bench(&[&url, "--scenario", "ready", "--timeout", "0.2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
