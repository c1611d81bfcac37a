//! Layer application: good layers (every entry type, metadata, whiteouts, opaque
//! directories, compressions), malicious layers (each refused, with a canary
//! directory beside the rootfs left untouched), digests and size bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod unpack_util;

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_oci::{Algorithm, Digest};
use berth_runtime::unpack::{Limit, UnpackError, UnpackOptions, Unpacker};
use tar::EntryType;
use unpack_util::*;

/// Default options; rootless when not running as root, since chown to the layers'
/// owners (root, mostly) needs privilege.
fn base_opts() -> UnpackOptions {
    UnpackOptions {
        rootless: !is_root(),
        ..UnpackOptions::default()
    }
}

fn unpacker(sb: &Sandbox) -> Unpacker {
    Unpacker::new(&sb.rootfs, base_opts()).unwrap()
}

fn md(root: &Path, rel: &str) -> std::fs::Metadata {
    std::fs::symlink_metadata(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn exists(root: &Path, rel: &str) -> bool {
    std::fs::symlink_metadata(root.join(rel)).is_ok()
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

fn perm(root: &Path, rel: &str) -> u32 {
    md(root, rel).mode() & 0o7777
}

// ---------------------------------------------------------------------------------
// Good layers
// ---------------------------------------------------------------------------------

#[test]
fn files_dirs_links_permissions_and_times() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let tar = Layer::new()
        .dir_with("etc/", Attrs::mode(0o755).mtime(1_500_000_000))
        .file_with(
            "etc/hosts",
            Attrs::mode(0o644).mtime(1_400_000_000),
            b"127.0.0.1 localhost\n",
        )
        .dir("secret/", 0o700)
        .file("secret/key", 0o600, b"k")
        .dir("bin/", 0o755)
        .file("bin/su", 0o4755, b"#!/bin/true\n")
        .file("bin/sg", 0o2755, b"sg")
        .hardlink("bin/su2", "bin/su")
        .symlink("bin/sh", "su")
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .dir("tmp/", 0o1777)
        .dir("run/", 0o755)
        .fifo("run/ctl", 0o600)
        .file("empty", 0o444, b"")
        .raw(b"caf\xe9", EntryType::Regular, b"", b"latin-1 name")
        .tar();
    let stats = apply(&mut u, &tar, TAR).unwrap();
    assert_eq!(stats.entries, 15);
    assert_eq!(stats.bytes, tar.len() as u64);
    assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);

    let r = &sb.rootfs;
    assert_eq!(read(r, "etc/hosts"), "127.0.0.1 localhost\n");
    assert_eq!(perm(r, "etc/hosts"), 0o644);
    assert_eq!(md(r, "etc/hosts").mtime(), 1_400_000_000);
    // Set after its children were created.
    assert_eq!(md(r, "etc").mtime(), 1_500_000_000);
    assert_eq!(perm(r, "secret"), 0o700);
    assert_eq!(perm(r, "secret/key"), 0o600);
    assert_eq!(perm(r, "bin/su"), 0o4755);
    assert_eq!(perm(r, "bin/sg"), 0o2755);
    assert_eq!(perm(r, "tmp"), 0o1777);
    assert_eq!(perm(r, "empty"), 0o444);
    assert_eq!(md(r, "bin/su").ino(), md(r, "bin/su2").ino());
    assert_eq!(md(r, "bin/su").nlink(), 2);
    assert_eq!(
        std::fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("su")
    );
    assert_eq!(
        std::fs::read_link(r.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/UTC")
    );
    // Symlink times are set on the link itself.
    assert_eq!(md(r, "bin/sh").mtime(), MTIME as i64);
    assert!(md(r, "run/ctl").file_type().is_fifo());
    assert_eq!(perm(r, "run/ctl"), 0o600);
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    assert_eq!(std::fs::read(r.join(latin1)).unwrap(), b"latin-1 name");
}

#[test]
fn implicit_parents_and_root_entry() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let tar = Layer::new()
        .dir_with("./", Attrs::mode(0o750).mtime(1_234_567_890))
        .file("a/b/c/file", 0o644, b"deep")
        .tar();
    apply(&mut u, &tar, TAR).unwrap();
    let r = &sb.rootfs;
    for d in ["a", "a/b", "a/b/c"] {
        assert!(md(r, d).is_dir());
        assert_eq!(perm(r, d), 0o755, "{d}");
    }
    assert_eq!(read(r, "a/b/c/file"), "deep");
    let root = std::fs::metadata(r).unwrap();
    assert_eq!(root.mode() & 0o7777, 0o750);
    assert_eq!(root.mtime(), 1_234_567_890);
}

#[test]
fn pax_times_and_long_names() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let long = format!("{}/file", "d".repeat(150));
    let tar = Layer::new()
        .pax(&[("mtime", b"1700000000.25"), ("atime", b"1700000001")])
        .file("precise", 0o644, b"x")
        .file(&long, 0o644, b"long name")
        .tar();
    apply(&mut u, &tar, TAR).unwrap();
    let m = md(&sb.rootfs, "precise");
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
    assert_eq!(m.atime(), 1_700_000_001);
    assert_eq!(read(&sb.rootfs, &long), "long name");
}

#[test]
fn paths_longer_than_path_max() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let comps: Vec<String> = (0..60)
        .map(|i| format!("{i:02}{}", "d".repeat(98)))
        .collect();
    let deep = comps.join("/");
    assert!(deep.len() > 4096);
    let l1 = Layer::new()
        .file(&format!("{deep}/f"), 0o644, b"deep")
        .tar();
    let l2 = Layer::new()
        .file(&format!("{deep}/g"), 0o644, b"g")
        .file(&format!("{deep}/.wh.f"), 0o644, b"")
        .tar();
    apply(&mut u, &l1, TAR).unwrap();
    apply(&mut u, &l2, TAR).unwrap();
    // Walk down one component at a time: the whole path is too long for one call.
    let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY;
    let mut dir = rustix::fs::open(&sb.rootfs, flags, rustix::fs::Mode::empty()).unwrap();
    for c in &comps {
        dir = rustix::fs::openat(&dir, c.as_str(), flags, rustix::fs::Mode::empty()).unwrap();
    }
    assert!(rustix::fs::statat(&dir, "f", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_err());
    let g = rustix::fs::openat(
        &dir,
        "g",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    );
    let mut content = String::new();
    std::fs::File::from(g.unwrap())
        .read_to_string(&mut content)
        .unwrap();
    assert_eq!(content, "g");
}

#[test]
fn ownership_is_applied_when_root() {
    if !is_root() {
        eprintln!("skipped: ownership needs root");
        return;
    }
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let tar = Layer::new()
        .dir_with("home/", Attrs::mode(0o755).owner(33, 34))
        .file_with("home/f", Attrs::mode(0o640).owner(1000, 2000), b"f")
        // chown clears set-id bits: the mode must be applied after it.
        .file_with("home/suid", Attrs::mode(0o6755).owner(1000, 1000), b"s")
        .symlink_with("home/link", "f", Attrs::mode(0o777).owner(7, 8))
        .tar();
    apply(&mut u, &tar, TAR).unwrap();
    let r = &sb.rootfs;
    assert_eq!((md(r, "home").uid(), md(r, "home").gid()), (33, 34));
    assert_eq!((md(r, "home/f").uid(), md(r, "home/f").gid()), (1000, 2000));
    assert_eq!(perm(r, "home/suid"), 0o6755);
    assert_eq!(md(r, "home/suid").uid(), 1000);
    assert_eq!((md(r, "home/link").uid(), md(r, "home/link").gid()), (7, 8));
}

#[test]
fn rootless_leaves_ownership_to_the_caller() {
    let sb = Sandbox::new();
    let opts = UnpackOptions {
        rootless: true,
        ..base_opts()
    };
    let mut u = Unpacker::new(&sb.rootfs, opts).unwrap();
    let tar = Layer::new()
        .file_with("f", Attrs::mode(0o4755).owner(1000, 2000), b"f")
        .tar();
    apply(&mut u, &tar, TAR).unwrap();
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(md(&sb.rootfs, "f").uid(), me);
    assert_eq!(perm(&sb.rootfs, "f"), 0o4755);
}

#[test]
fn device_nodes_when_root() {
    if !is_root() {
        eprintln!("skipped: mknod needs root");
        return;
    }
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let tar = Layer::new()
        .dir("dev/", 0o755)
        .chardev("dev/null", 0o666, 1, 3)
        .tar();
    let stats = apply(&mut u, &tar, TAR).unwrap();
    let m = md(&sb.rootfs, "dev/null");
    if stats.skipped.is_empty() {
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
        assert_eq!(perm(&sb.rootfs, "dev/null"), 0o666);
    } else {
        // Root without CAP_MKNOD (a container): skipped, and said so.
        assert!(stats.skipped[0].contains("dev/null"), "{:?}", stats.skipped);
    }
}

#[test]
fn xattrs_from_pax_records() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let tar = Layer::new()
        .file_xattrs(
            "f",
            0o644,
            b"x",
            &[
                ("user.berth", b"yes"),
                ("security.selinux", b"system_u:object_r:bin_t:s0"),
            ],
        )
        .tar();
    let stats = apply(&mut u, &tar, TAR).unwrap();
    let mut value = [0u8; 16];
    let n = rustix::fs::lgetxattr(sb.rootfs.join("f"), "user.berth", &mut value[..]).unwrap();
    assert_eq!(&value[..n], b"yes");
    assert!(
        stats.skipped.iter().any(|s| s.contains("security.selinux")),
        "{:?}",
        stats.skipped
    );
}

#[test]
fn compressions_and_sniffing_agree() {
    let tar = Layer::new()
        .dir("d/", 0o755)
        .file("d/f", 0o644, &vec![b'z'; 100_000])
        .symlink("d/l", "f")
        .tar();
    let (first, second) = tar.split_at(700);
    let mut multi_member = gzip(first);
    multi_member.extend(gzip(second));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("plain", tar.clone(), TAR),
        ("gzip", gzip(&tar), TAR_GZIP),
        ("zstd", zstd(&tar), TAR_ZSTD),
        ("docker gzip", gzip(&tar), DOCKER_GZIP),
        ("gzip labelled plain", gzip(&tar), TAR),
        ("plain labelled gzip", tar.clone(), TAR_GZIP),
        ("zstd labelled gzip", zstd(&tar), TAR_GZIP),
        ("multi-member gzip", multi_member, TAR_GZIP),
    ];
    let mut reference = None;
    for (name, blob, mt) in cases {
        let sb = Sandbox::new();
        let mut u = unpacker(&sb);
        let stats = apply(&mut u, &blob, mt).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stats.bytes, tar.len() as u64, "{name}");
        let snap = snapshot(&sb.rootfs);
        match &reference {
            None => reference = Some(snap),
            Some(r) => assert_eq!(&snap, r, "{name}"),
        }
    }
}

#[test]
fn whiteouts_across_layers() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let l1 = Layer::new()
        .dir_with("a/", Attrs::mode(0o755).mtime(1_000_000_000))
        .file("a/file1", 0o644, b"1")
        .file("a/file2", 0o644, b"2")
        .dir("b/", 0o755)
        .dir("b/c/", 0o755)
        .file("b/c/deep", 0o644, b"deep")
        .file("c.txt", 0o644, b"c")
        .tar();
    let l2 = Layer::new()
        .whiteout("a/.wh.file1")
        .whiteout(".wh.b")
        .whiteout(".wh.c.txt")
        .whiteout(".wh.never-existed")
        .whiteout("missing-dir/.wh.x")
        .tar();
    apply(&mut u, &l1, TAR).unwrap();
    let stats = apply(&mut u, &l2, TAR).unwrap();
    assert_eq!(stats.entries, 5);
    let r = &sb.rootfs;
    assert!(!exists(r, "a/file1"));
    assert_eq!(read(r, "a/file2"), "2");
    assert!(!exists(r, "b"));
    assert!(!exists(r, "c.txt"));
    assert!(!exists(r, "missing-dir"), "a whiteout creates nothing");
    for name in std::fs::read_dir(r).unwrap() {
        let name = name.unwrap().file_name();
        assert!(!name.to_string_lossy().starts_with(".wh."), "{name:?}");
    }
    // `a` has no entry in the second layer: its metadata stays as the first set it.
    assert_eq!(md(r, "a").mtime(), 1_000_000_000);
}

#[test]
fn lower_directory_times_survive_new_children() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let l1 = Layer::new()
        .dir_with("d/", Attrs::mode(0o755).mtime(1_100_000_000))
        .file("d/a", 0o644, b"a")
        .tar();
    let l2 = Layer::new()
        .file("d/b", 0o644, b"b")
        .file("d/sub/c", 0o644, b"c")
        .tar();
    apply(&mut u, &l1, TAR).unwrap();
    apply(&mut u, &l2, TAR).unwrap();
    assert_eq!(md(&sb.rootfs, "d").mtime(), 1_100_000_000);
}

fn opaque_layers(marker_first: bool) -> (Vec<u8>, Vec<u8>) {
    let l1 = Layer::new()
        .dir("dir/", 0o755)
        .file("dir/old", 0o644, b"old")
        .dir("dir/sub/", 0o755)
        .file("dir/sub/deep", 0o644, b"deep")
        .dir("dir/keep/", 0o755)
        .file("dir/keep/lower", 0o644, b"lower")
        .file("other", 0o644, b"other")
        .tar();
    let mut l2 = Layer::new().dir("dir/", 0o711);
    if marker_first {
        l2 = l2.whiteout("dir/.wh..wh..opq");
    }
    l2 = l2
        .file("dir/new", 0o644, b"new")
        .dir("dir/keep/", 0o755)
        .file("dir/keep/upper", 0o644, b"upper");
    if !marker_first {
        l2 = l2.whiteout("dir/.wh..wh..opq");
    }
    (l1, l2.tar())
}

#[test]
fn opaque_directory_marker_after_entries() {
    opaque_case(false);
}

#[test]
fn opaque_directory_marker_before_entries() {
    opaque_case(true);
}

fn opaque_case(marker_first: bool) {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let (l1, l2) = opaque_layers(marker_first);
    apply(&mut u, &l1, TAR).unwrap();
    apply(&mut u, &l2, TAR).unwrap();
    let mut got: Vec<String> = snapshot(&sb.rootfs).into_keys().collect();
    got.sort();
    // Lower children of `dir` are gone, this layer's stay (even `keep`, which both
    // layers have: only the upper child survives in it), `other` is untouched.
    assert_eq!(
        got,
        ["dir", "dir/keep", "dir/keep/upper", "dir/new", "other"],
        "marker first: {marker_first}"
    );
    assert_eq!(perm(&sb.rootfs, "dir"), 0o711);
}

#[test]
fn whiteout_spares_the_same_layers_entries() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let l1 = Layer::new()
        .file("x", 0o644, b"lower")
        .dir("d/", 0o755)
        .file("d/lower", 0o644, b"lower")
        .tar();
    let l2 = Layer::new()
        .file("x", 0o644, b"upper")
        .whiteout(".wh.x")
        .dir("d/", 0o755)
        .file("d/upper", 0o644, b"upper")
        .whiteout(".wh.d")
        .tar();
    apply(&mut u, &l1, TAR).unwrap();
    apply(&mut u, &l2, TAR).unwrap();
    assert_eq!(read(&sb.rootfs, "x"), "upper");
    assert_eq!(read(&sb.rootfs, "d/upper"), "upper");
    assert!(!exists(&sb.rootfs, "d/lower"));
}

#[test]
fn entries_replace_what_is_there() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let l1 = Layer::new()
        .file("f", 0o644, b"file")
        .dir("d/", 0o755)
        .file("d/x", 0o644, b"x")
        .file("target", 0o644, b"target")
        .symlink("s", "target")
        .dir_with("merge/", Attrs::mode(0o755).mtime(1_000_000_000))
        .file("merge/child", 0o644, b"child")
        .file("l", 0o644, b"was a file")
        .tar();
    let l2 = Layer::new()
        .dir("f/", 0o750)
        .file("d", 0o600, b"now a file")
        .file("s", 0o644, b"not through the link")
        .dir_with("merge/", Attrs::mode(0o700).mtime(1_200_000_000))
        .symlink("l", "target")
        .tar();
    apply(&mut u, &l1, TAR).unwrap();
    apply(&mut u, &l2, TAR).unwrap();
    let r = &sb.rootfs;
    assert!(md(r, "f").is_dir());
    assert_eq!(perm(r, "f"), 0o750);
    assert_eq!(read(r, "d"), "now a file");
    assert!(md(r, "s").is_file());
    assert_eq!(read(r, "s"), "not through the link");
    assert_eq!(read(r, "target"), "target");
    assert_eq!(perm(r, "merge"), 0o700);
    assert_eq!(md(r, "merge").mtime(), 1_200_000_000);
    assert_eq!(read(r, "merge/child"), "child");
    assert!(md(r, "l").file_type().is_symlink());
}

// ---------------------------------------------------------------------------------
// Digests, bounds, errors
// ---------------------------------------------------------------------------------

#[test]
fn digest_mismatch_names_the_layer() {
    let tar = Layer::new().file("f", 0o644, b"content").tar();
    for (blob, mt) in [(tar.clone(), TAR), (gzip(&tar), TAR_GZIP)] {
        let sb = Sandbox::new();
        let mut u = unpacker(&sb);
        let wrong = Digest::sha256_of(b"something else");
        let err = u.apply_layer(&wrong, mt, &blob[..]).unwrap_err();
        match err {
            UnpackError::DigestMismatch { layer, actual } => {
                assert_eq!(layer, wrong.to_string());
                assert_eq!(actual, digest(&blob).to_string());
            }
            other => panic!("{other}"),
        }
        // The rootfs is partial now: no more layers.
        let again = apply(&mut u, &blob, mt).unwrap_err();
        assert!(matches!(again, UnpackError::Aborted), "{again}");
    }
}

#[test]
fn digest_covers_trailing_bytes_and_sha512() {
    let mut blob = Layer::new().file("f", 0o644, b"content").tar();
    blob.extend_from_slice(b"trailing garbage after the archive");
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let d = Digest::of(Algorithm::Sha512, &blob);
    u.apply_layer(&d, TAR, &blob[..]).unwrap();
    assert_eq!(read(&sb.rootfs, "f"), "content");
}

#[test]
fn corrupt_data_is_corrupt_or_a_mismatch() {
    let garbage = gzip(b"this is not a tar archive, not even close, no headers here at all");
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let err = apply(&mut u, &garbage, TAR_GZIP).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");

    // A gzip stream cut short, under the digest of the complete blob: the digest
    // is the better diagnosis.
    let full = gzip(&Layer::new().file("f", 0o644, &vec![7u8; 50_000]).tar());
    let cut = &full[..full.len() / 2];
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let err = u.apply_layer(&digest(&full), TAR_GZIP, cut).unwrap_err();
    assert!(matches!(err, UnpackError::DigestMismatch { .. }), "{err}");

    // A tar cut inside a file's data, under its own digest.
    let tar = Layer::new().file("f", 0o644, &vec![7u8; 50_000]).tar();
    let cut = &tar[..10_000];
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let err = apply(&mut u, cut, TAR).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
}

#[test]
fn stream_errors_are_read_errors() {
    struct Failing(Vec<u8>, usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 >= 1024 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset"));
            }
            let n = buf.len().min(512).min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let tar = Layer::new().file("f", 0o644, &vec![1u8; 10_000]).tar();
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let err = u
        .apply_layer(&digest(&tar), TAR, Failing(tar.clone(), 0))
        .unwrap_err();
    match err {
        UnpackError::Read { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::ConnectionReset)
        }
        other => panic!("{other}"),
    }
}

#[test]
fn size_bounds() {
    // A small gzip stream that expands well past the bound.
    let bomb = gzip(&Layer::new().file("zeros", 0o644, &vec![0u8; 4 << 20]).tar());
    assert!(bomb.len() < 64 << 10);
    let sb = Sandbox::new();
    let opts = UnpackOptions {
        max_layer_bytes: 1 << 20,
        ..base_opts()
    };
    let mut u = Unpacker::new(&sb.rootfs, opts).unwrap();
    let err = apply(&mut u, &bomb, TAR_GZIP).unwrap_err();
    match err {
        UnpackError::TooLarge { layer, limit, max } => {
            assert_eq!(layer, digest(&bomb).to_string());
            assert_eq!(limit, Limit::LayerBytes);
            assert_eq!(max, 1 << 20);
        }
        other => panic!("{other}"),
    }

    let mut many = Layer::new();
    for i in 0..20 {
        many = many.file(&format!("f{i}"), 0o644, b"");
    }
    let many = many.tar();
    let sb = Sandbox::new();
    let opts = UnpackOptions {
        max_entries: 10,
        ..base_opts()
    };
    let mut u = Unpacker::new(&sb.rootfs, opts).unwrap();
    let err = apply(&mut u, &many, TAR).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::TooLarge {
                limit: Limit::Entries,
                max: 10,
                ..
            }
        ),
        "{err}"
    );

    // One entry's PAX header, held in memory by the tar reader, has its own bound.
    let huge = vec![b'v'; 9 << 20];
    let tar = Layer::new()
        .pax(&[("comment", &huge)])
        .file("f", 0o644, b"")
        .tar();
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let err = apply(&mut u, &gzip(&tar), TAR_GZIP).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::TooLarge {
                limit: Limit::EntryHeaderBytes,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unsupported_media_type_changes_nothing() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let tar = Layer::new().file("f", 0o644, b"f").tar();
    let err = apply(&mut u, &tar, "application/vnd.oci.image.layer.v1.tar+bzip2").unwrap_err();
    assert!(
        matches!(err, UnpackError::UnsupportedMediaType { .. }),
        "{err}"
    );
    // Not a partial rootfs: the unpacker still works.
    apply(&mut u, &tar, TAR).unwrap();
}

#[test]
fn rootfs_must_be_empty_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("new");
    Unpacker::new(&missing, base_opts()).unwrap();
    assert!(missing.is_dir());

    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let err = Unpacker::new(&full, base_opts()).unwrap_err();
    assert!(matches!(err, UnpackError::RootfsNotEmpty { .. }), "{err}");

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&missing, &link).unwrap();
    let err = Unpacker::new(&link, base_opts()).unwrap_err();
    assert!(matches!(err, UnpackError::Rootfs { .. }), "{err}");
}

#[test]
fn bad_hard_links_are_corrupt() {
    for (name, layer) in [
        ("missing target", Layer::new().hardlink("ln", "nope")),
        (
            "directory target",
            Layer::new().dir("d/", 0o755).hardlink("ln", "d"),
        ),
        ("to itself", Layer::new().hardlink("ln", "ln")),
    ] {
        let sb = Sandbox::new();
        let mut u = unpacker(&sb);
        let err = apply(&mut u, &layer.tar(), TAR).unwrap_err();
        assert!(matches!(err, UnpackError::Corrupt { .. }), "{name}: {err}");
    }
}

#[test]
fn a_file_where_a_parent_should_be_is_corrupt() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let tar = Layer::new()
        .file("f", 0o644, b"f")
        .file("f/g", 0o644, b"g")
        .tar();
    let err = apply(&mut u, &tar, TAR).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
}

// ---------------------------------------------------------------------------------
// Malicious layers: each refused with Escape naming layer and entry, canary intact
// ---------------------------------------------------------------------------------

/// Applies `good` layers, then `bad`, which must be refused at `entry`; nothing
/// outside the rootfs may change.
fn assert_refused(sb: &Sandbox, good: &[Vec<u8>], bad: &[u8], entry: &str) {
    let mut u = unpacker(sb);
    let before = sb.outside();
    for layer in good {
        apply(&mut u, layer, TAR).unwrap();
    }
    let err = apply(&mut u, bad, TAR).unwrap_err();
    match &err {
        UnpackError::Escape {
            layer,
            entry: got,
            reason,
        } => {
            assert_eq!(*layer, digest(bad).to_string());
            assert_eq!(got, entry, "reason: {reason}");
        }
        other => panic!("entry {entry:?}: expected Escape, got {other}"),
    }
    assert!(err.to_string().contains(entry), "{err}");
    assert_eq!(sb.outside(), before, "something outside the rootfs changed");
    // The canary's content, explicitly.
    assert_eq!(read(&sb.canary, "sentinel"), "do not touch\n");
    assert_eq!(
        read(&sb.canary, "etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n"
    );
}

fn refused_alone(bad: Layer, entry: &str) {
    let sb = Sandbox::new();
    assert_refused(&sb, &[], &bad.tar(), entry);
}

#[test]
fn dotdot_entries_are_refused() {
    refused_alone(
        Layer::new().raw(b"../escape", EntryType::Regular, b"", b"x"),
        "../escape",
    );
    refused_alone(
        Layer::new().raw(b"../canary/sentinel", EntryType::Regular, b"", b"x"),
        "../canary/sentinel",
    );
    refused_alone(
        Layer::new().dir("a/", 0o755).raw(
            b"a/../../canary/sentinel",
            EntryType::Regular,
            b"",
            b"x",
        ),
        "a/../../canary/sentinel",
    );
    refused_alone(Layer::new().raw(b"..", EntryType::Regular, b"", b"x"), "..");
    refused_alone(
        Layer::new().raw(b"a/..", EntryType::Directory, b"", b""),
        "a/..",
    );
}

#[test]
fn absolute_entries_are_refused() {
    refused_alone(
        Layer::new().raw(b"/tmp/x", EntryType::Regular, b"", b"x"),
        "/tmp/x",
    );
    let sb = Sandbox::new();
    let target = format!("{}/sentinel", sb.canary_str());
    let bad = Layer::new()
        .raw(target.as_bytes(), EntryType::Regular, b"", b"x")
        .tar();
    assert_refused(&sb, &[], &bad, &target);
}

#[test]
fn writing_through_a_symlink_to_root_is_refused_same_layer() {
    refused_alone(
        Layer::new()
            .symlink("evil", "/")
            .file("evil/tmp/x", 0o644, b"x"),
        "evil/tmp/x",
    );
    let sb = Sandbox::new();
    let bad = Layer::new()
        .symlink("evil", &sb.canary_str())
        .file("evil/sentinel", 0o644, b"overwritten")
        .tar();
    assert_refused(&sb, &[], &bad, "evil/sentinel");
}

#[test]
fn writing_through_a_symlink_to_root_is_refused_across_layers() {
    let sb = Sandbox::new();
    let first = Layer::new().symlink("evil", "/").tar();
    let bad = Layer::new().file("evil/etc/x", 0o644, b"x").tar();
    assert_refused(&sb, &[first], &bad, "evil/etc/x");

    let sb = Sandbox::new();
    let first = Layer::new().symlink("evil", &sb.canary_str()).tar();
    let bad = Layer::new()
        .file("evil/sentinel", 0o644, b"overwritten")
        .tar();
    assert_refused(&sb, &[first], &bad, "evil/sentinel");
}

#[test]
fn writing_through_a_relative_escaping_symlink_is_refused() {
    refused_alone(
        Layer::new()
            .symlink("evil", "../../..")
            .file("evil/tmp/x", 0o644, b"x"),
        "evil/tmp/x",
    );
    let sb = Sandbox::new();
    let bad = Layer::new()
        .dir("d/", 0o755)
        .symlink("d/evil", "../../canary")
        .file("d/evil/sentinel", 0o644, b"overwritten")
        .tar();
    assert_refused(&sb, &[], &bad, "d/evil/sentinel");
    // A directory entry through it is refused too.
    let sb = Sandbox::new();
    let bad = Layer::new()
        .symlink("evil", "../canary")
        .dir("evil/newdir/", 0o755)
        .tar();
    assert_refused(&sb, &[], &bad, "evil/newdir/");
}

#[test]
fn hard_links_to_host_files_are_refused() {
    refused_alone(Layer::new().hardlink("ln", "/etc/passwd"), "ln");
    refused_alone(Layer::new().hardlink("ln", "../../etc/passwd"), "ln");
    let sb = Sandbox::new();
    let bad = Layer::new()
        .hardlink("ln", &format!("{}/sentinel", sb.canary_str()))
        .tar();
    assert_refused(&sb, &[], &bad, "ln");
    let sb = Sandbox::new();
    let bad = Layer::new().hardlink("ln", "../canary/sentinel").tar();
    assert_refused(&sb, &[], &bad, "ln");
    // Through a symlinked directory inside the root.
    let sb = Sandbox::new();
    let bad = Layer::new()
        .symlink("evil", &sb.canary_str())
        .hardlink("ln", "evil/sentinel")
        .tar();
    assert_refused(&sb, &[], &bad, "ln");
}

#[test]
fn whiteouts_that_escape_are_refused() {
    refused_alone(Layer::new().whiteout(".wh..."), ".wh...");
    refused_alone(Layer::new().whiteout(".wh.."), ".wh..");
    refused_alone(
        Layer::new().dir("dir/", 0o755).whiteout("dir/.wh..."),
        "dir/.wh...",
    );
    refused_alone(Layer::new().whiteout("../.wh.canary"), "../.wh.canary");
    // Through a symlink: would remove the canary's file.
    let sb = Sandbox::new();
    let first = Layer::new().symlink("evil", &sb.canary_str()).tar();
    let bad = Layer::new().whiteout("evil/.wh.sentinel").tar();
    assert_refused(&sb, &[first], &bad, "evil/.wh.sentinel");
    // An opaque marker through a symlink: would empty the canary.
    let sb = Sandbox::new();
    let first = Layer::new().symlink("evil", &sb.canary_str()).tar();
    let bad = Layer::new().whiteout("evil/.wh..wh..opq").tar();
    assert_refused(&sb, &[first], &bad, "evil/.wh..wh..opq");
}

#[test]
fn the_root_cannot_be_replaced() {
    refused_alone(Layer::new().raw(b"./", EntryType::Symlink, b"/", b""), "./");
    refused_alone(Layer::new().raw(b".", EntryType::Regular, b"", b"x"), ".");
}

#[test]
fn symlinks_in_the_way_are_replaced_not_followed() {
    let sb = Sandbox::new();
    let mut u = unpacker(&sb);
    let before = sb.outside();
    let canary = sb.canary_str();
    let l1 = Layer::new()
        .symlink("file-over-link", &format!("{canary}/sentinel"))
        .symlink("dir-over-link", &canary)
        .symlink("fifo-over-link", &format!("{canary}/sentinel"))
        .symlink("abs", "/etc/passwd")
        .tar();
    // Hard-linking a symlink links the symlink, not what it points to.
    let l2 = Layer::new()
        .file("file-over-link", 0o644, b"replaced")
        .dir("dir-over-link/", 0o700)
        .file("dir-over-link/inside", 0o644, b"inside")
        .fifo("fifo-over-link", 0o600)
        .hardlink("abs-link", "abs")
        .tar();
    apply(&mut u, &l1, TAR).unwrap();
    apply(&mut u, &l2, TAR).unwrap();
    let r = &sb.rootfs;
    assert_eq!(read(r, "file-over-link"), "replaced");
    assert!(md(r, "dir-over-link").is_dir());
    assert_eq!(read(r, "dir-over-link/inside"), "inside");
    assert!(md(r, "fifo-over-link").file_type().is_fifo());
    assert!(md(r, "abs-link").file_type().is_symlink());
    assert_eq!(md(r, "abs-link").ino(), md(r, "abs").ino());
    assert_eq!(sb.outside(), before);
}
