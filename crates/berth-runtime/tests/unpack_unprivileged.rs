//! Unpacking without privilege: the test (when run as root) drops one thread's
//! credentials to `nobody` and unpacks there. Device nodes and privileged xattrs are
//! skipped and reported; directories the owner cannot enter or write (0555, 0500)
//! are opened up while a layer needs them and get their modes back; without
//! `rootless`, a chown to another user fails with a hint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod unpack_util;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_runtime::unpack::{UnpackError, UnpackOptions, Unpacker};
use rustix::thread::{Gid, Uid};
use unpack_util::*;

const NOBODY: u32 = 65534;

/// Runs `f` on a new thread whose credentials are `nobody` (no capabilities), so
/// that the rest of the test process keeps running as root.
fn as_nobody<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let gid = Gid::from_raw(NOBODY);
        rustix::thread::set_thread_groups(&[]).unwrap();
        rustix::thread::set_thread_res_gid(gid, gid, gid).unwrap();
        let uid = Uid::from_raw(NOBODY);
        rustix::thread::set_thread_res_uid(uid, uid, uid).unwrap();
        assert_eq!(rustix::process::geteuid().as_raw(), NOBODY);
        f()
    })
    .join()
    .unwrap()
}

fn perm(root: &Path, rel: &str) -> u32 {
    std::fs::symlink_metadata(root.join(rel)).unwrap().mode() & 0o7777
}

#[test]
fn rootless_unpack_as_an_unprivileged_user() {
    if !is_root() {
        eprintln!("skipped: needs root to switch a thread to an unprivileged user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let rootfs = dir.path().join("rootfs");

    let l1 = Layer::new()
        .dir("ro/", 0o555)
        .file("ro/f", 0o444, b"f")
        .dir("locked/", 0o500)
        .file("locked/x", 0o400, b"x")
        .dir("locked/sub/", 0o500)
        .file("locked/sub/y", 0o400, b"y")
        .dir("gone/", 0o500)
        .dir("gone/deeper/", 0o000)
        .file("gone/z", 0o400, b"z")
        .dir("dev/", 0o755)
        .chardev("dev/null", 0o666, 1, 3)
        .fifo("pipe", 0o600)
        .file_xattrs(
            "cap",
            0o755,
            b"bin",
            &[
                ("security.capability", b"\x01\x00\x00\x02"),
                ("user.ok", b"1"),
            ],
        )
        .file_with("owned-by-root", Attrs::mode(0o644).owner(0, 0), b"r")
        .tar();
    let l2 = Layer::new()
        .file("ro/g", 0o444, b"g")
        .whiteout("locked/.wh.x")
        .whiteout("locked/sub/.wh..wh..opq")
        .whiteout(".wh.gone")
        .tar();

    let (stats1, stats2) = {
        let rootfs = rootfs.clone();
        as_nobody(move || {
            let opts = UnpackOptions {
                rootless: true,
                ..UnpackOptions::default()
            };
            let mut u = Unpacker::new(&rootfs, opts).unwrap();
            let s1 = apply(&mut u, &l1, TAR).unwrap();
            let s2 = apply(&mut u, &l2, TAR).unwrap();
            (s1, s2)
        })
    };

    let r = &rootfs;
    let snap = snapshot(r);
    let mut paths: Vec<&str> = snap.keys().map(String::as_str).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "cap",
            "dev",
            "locked",
            "locked/sub",
            "owned-by-root",
            "pipe",
            "ro",
            "ro/f",
            "ro/g"
        ]
    );
    for (path, node) in &snap {
        assert_eq!((node.uid, node.gid), (NOBODY, NOBODY), "{path}");
    }
    assert_eq!(perm(r, "ro"), 0o555);
    assert_eq!(perm(r, "ro/f"), 0o444);
    assert_eq!(perm(r, "locked"), 0o500);
    assert_eq!(perm(r, "locked/sub"), 0o500);
    assert_eq!(perm(r, "cap"), 0o755);
    assert_eq!(
        snap["cap"].xattrs.get("user.ok").map(Vec::as_slice),
        Some(&b"1"[..])
    );

    let skipped = stats1.skipped.join("\n");
    assert!(skipped.contains("dev/null"), "{skipped}");
    assert!(skipped.contains("security.capability"), "{skipped}");
    assert!(stats2.skipped.is_empty(), "{:?}", stats2.skipped);
}

#[test]
fn chown_without_privilege_needs_rootless_mode() {
    if !is_root() {
        eprintln!("skipped: needs root to switch a thread to an unprivileged user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let rootfs = dir.path().join("rootfs");
    let tar = Layer::new()
        .file_with("f", Attrs::mode(0o644).owner(0, 0), b"f")
        .tar();
    let err = as_nobody(move || {
        let mut u = Unpacker::new(&rootfs, UnpackOptions::default()).unwrap();
        apply(&mut u, &tar, TAR).unwrap_err()
    });
    match err {
        UnpackError::Io { entry, op, .. } => {
            assert_eq!(entry, "f");
            assert!(op.contains("rootless"), "{op}");
        }
        other => panic!("{other}"),
    }
}
