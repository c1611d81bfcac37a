//! Equivalence with umoci: the same four layers (every entry type, ownership,
//! set-id bits, xattrs, whiteouts of files and directories, opaque directories with
//! the marker before and after the layer's own entries, replacements, hard links
//! across layers) are written as an OCI image layout and unpacked by
//! `umoci unpack` and by [`Unpacker`]; the two trees must agree on every path's
//! type, mode, owner, size, content digest, link target, device number, mtime,
//! hard-link grouping and `user.*`/`trusted.*` xattrs.
//!
//! Skipped, with a note, unless running as root with `umoci` installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod unpack_util;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use berth_runtime::unpack::{UnpackOptions, Unpacker};
use serde_json::json;
use unpack_util::*;

/// The test layers, each with the media type it is stored under.
fn layers() -> Vec<(Vec<u8>, &'static str)> {
    const T1: u64 = 1_500_000_000;
    const T2: u64 = 1_600_000_000;
    const T3: u64 = 1_650_000_000;
    const T4: u64 = 1_700_000_000;
    let d = |mode| Attrs::mode(mode).mtime(T1);
    let busybox = vec![0x7fu8; 70_000];
    let l1 = Layer::new()
        .dir_with("etc/", d(0o755))
        .file_xattrs(
            "etc/passwd",
            0o644,
            b"root:x:0:0::/root:/bin/sh\n",
            &[("user.origin", b"l1")],
        )
        .file_with("etc/shadow", d(0o640).owner(0, 42), b"root:*:::::::\n")
        .symlink_with("etc/mtab", "/proc/mounts", d(0o777))
        .dir_with("bin/", d(0o755))
        .file_with("bin/busybox", d(0o755), &busybox)
        .hardlink("bin/ls", "bin/busybox")
        .symlink_with("bin/sh", "busybox", d(0o777))
        .file_with("bin/su", d(0o4755), b"su")
        .file_with("bin/wall", d(0o2755).owner(0, 5), b"wall")
        .dir_with("usr/", d(0o755))
        .dir_with("usr/lib/", d(0o755))
        .file_with("usr/lib/libc.so", d(0o644), b"libc")
        .symlink_with("lib", "usr/lib", d(0o777))
        .dir_with("var/", d(0o755))
        .dir_with("var/cache/", d(0o700))
        .file_with("var/cache/old", d(0o600), b"old")
        .dir_with("dev/", d(0o755))
        .chardev("dev/null", 0o666, 1, 3)
        .fifo("dev/initctl", 0o600)
        .dir_with("opt/", d(0o700).owner(1000, 1000))
        .file_with("opt/tool", d(0o755).owner(1000, 1000), b"tool")
        .dir_with("home/", d(0o755))
        .dir_with("home/user/", d(0o750).owner(1000, 1000))
        .file_with(
            "home/user/.profile",
            d(0o644).owner(1000, 1000),
            b"PS1='$ '\n",
        )
        .dir_with("tmp/", d(0o1777))
        .tar();
    let d = |mode| Attrs::mode(mode).mtime(T2);
    let l2 = Layer::new()
        .whiteout("etc/.wh.shadow")
        .whiteout(".wh.opt")
        .file_with("etc/passwd", d(0o600), b"root:x:0:0::/root:/bin/ash\n")
        .file_with("bin/sh", d(0o755), b"now a file")
        .dir_with("home/user/", d(0o700).owner(1000, 1000))
        // No entry for usr/lib: its metadata must survive a new child.
        .file_with("usr/lib/new.so", d(0o644), b"new")
        .hardlink("bin/ls2", "bin/ls")
        .tar();
    let d = |mode| Attrs::mode(mode).mtime(T3);
    let l3 = Layer::new()
        .dir_with("var/", d(0o755))
        .whiteout("var/.wh..wh..opq")
        .file_with("var/new", d(0o644), b"new var")
        .dir_with("home/", d(0o755))
        .dir_with("home/other/", d(0o755).owner(1001, 1001))
        .file_with("home/other/f", d(0o600).owner(1001, 1001), b"f")
        .whiteout("home/.wh..wh..opq")
        .tar();
    let d = |mode| Attrs::mode(mode).mtime(T4);
    let l4 = Layer::new()
        .dir_with("var/new/", d(0o711))
        .file_with("var/new/child", d(0o644), b"child")
        .dir_with("lib/", d(0o755))
        .file_with("lib/real", d(0o644), b"a directory now")
        .file_with("dev/null", d(0o644), b"not a device any more")
        .tar();
    vec![
        (gzip(&l1), TAR_GZIP),
        (l2, TAR),
        (gzip(&l3), TAR_GZIP),
        (l4, TAR),
    ]
}

fn write_blob(layout: &Path, data: &[u8]) -> serde_json::Value {
    let d = digest(data);
    let path = layout.join("blobs/sha256").join(d.hex());
    std::fs::write(path, data).unwrap();
    json!({ "digest": d.to_string(), "size": data.len() })
}

/// Writes an OCI image layout holding one image, tagged `test`, made of `layers`.
fn write_layout(layout: &Path, layers: &[(Vec<u8>, &str)]) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (blob, media_type) in layers {
        let mut desc = write_blob(layout, blob);
        desc["mediaType"] = json!(media_type);
        descs.push(desc);
        let plain = if *media_type == TAR_GZIP {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut out)
                .unwrap();
            out
        } else {
            blob.clone()
        };
        diff_ids.push(digest(&plain).to_string());
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let mut config_desc = write_blob(layout, config.to_string().as_bytes());
    config_desc["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": descs,
    });
    let mut manifest_desc = write_blob(layout, manifest.to_string().as_bytes());
    manifest_desc["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    manifest_desc["annotations"] = json!({ "org.opencontainers.image.ref.name": "test" });
    let index = json!({ "schemaVersion": 2, "manifests": [manifest_desc] });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

fn umoci_available() -> bool {
    Command::new("umoci")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn same_tree_as_umoci() {
    if !is_root() || !umoci_available() {
        eprintln!("skipped: the umoci comparison needs root and umoci");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let bundle = dir.path().join("bundle");
    let ours = dir.path().join("ours");
    let layers = layers();
    write_layout(&layout, &layers);

    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:test", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut u = Unpacker::new(&ours, UnpackOptions::default()).unwrap();
    for (blob, media_type) in &layers {
        apply(&mut u, blob, media_type).unwrap();
    }

    let theirs = snapshot(&bundle.join("rootfs"));
    let mine = snapshot(&ours);
    let keys: BTreeSet<&String> = theirs.keys().chain(mine.keys()).collect();
    let mut diffs = Vec::new();
    for k in keys {
        match (theirs.get(k), mine.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => diffs.push(format!("{k}:\n  umoci: {a:?}\n  berth: {b:?}")),
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));

    // The comparison covered what it was meant to.
    for path in [
        "bin/ls2",
        "dev/initctl",
        "etc/mtab",
        "home/other/f",
        "var/new/child",
    ] {
        assert!(mine.contains_key(path), "{path}");
    }
    for gone in ["etc/shadow", "opt", "var/cache", "home/user"] {
        assert!(!mine.contains_key(gone), "{gone}");
    }
    assert_eq!(mine["bin/ls2"].link_group.as_deref(), Some("bin/busybox"));
    assert_eq!(
        mine["etc/passwd"].xattrs.len(),
        0,
        "a replaced file loses old xattrs"
    );
}
