//! Deterministic layers: reproducibility, the tar format, `.berthignore` and secret
//! warnings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_build::layer::{
    BuildError, BuiltLayer, Compression, LayerOptions, MEDIA_TYPE_TAR, MEDIA_TYPE_TAR_GZIP,
    MEDIA_TYPE_TAR_ZSTD, build_layer,
};
use berth_oci::Digest;

const EPOCH: i64 = 1_700_000_000;

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
}

fn set_mode(root: &Path, rel: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(root: &Path, rel: &str, secs: u64) {
    let f = fs::File::options()
        .write(true)
        .open(root.join(rel))
        .unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn opts(compression: Compression) -> LayerOptions {
    LayerOptions {
        dest: "/app".to_owned(),
        mtime: EPOCH,
        compression,
        ..LayerOptions::default()
    }
}

fn build(dir: &Path, opts: &LayerOptions) -> (BuiltLayer, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let layer = build_layer(dir, opts, out.path()).unwrap();
    (layer, out)
}

/// The uncompressed tar of a built layer.
fn tar_bytes(layer: &BuiltLayer) -> Vec<u8> {
    let blob = fs::read(&layer.path).unwrap();
    let mut out = Vec::new();
    match layer.media_type.as_str() {
        MEDIA_TYPE_TAR_GZIP => {
            flate2::read::GzDecoder::new(&blob[..])
                .read_to_end(&mut out)
                .unwrap();
        }
        MEDIA_TYPE_TAR_ZSTD => {
            zstd::stream::read::Decoder::new(&blob[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
        }
        MEDIA_TYPE_TAR => out = blob,
        other => panic!("unexpected media type {other}"),
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
    mtime: u64,
    link: Option<String>,
    content: Vec<u8>,
}

fn entries(layer: &BuiltLayer) -> Vec<Item> {
    let bytes = tar_bytes(layer);
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut items = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        items.push(Item {
            path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            uname: h.username().unwrap().unwrap_or("").to_owned(),
            gname: h.groupname().unwrap().unwrap_or("").to_owned(),
            mtime: h.mtime().unwrap(),
            link: e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned()),
            content,
        });
    }
    items
}

fn paths(layer: &BuiltLayer) -> Vec<String> {
    entries(layer).into_iter().map(|i| i.path).collect()
}

/// The same tree, created in a different order, with different mtimes, a hard link
/// instead of a copy, and in a differently named temporary directory.
fn make_tree(root: &Path, variant: bool) {
    let files: Vec<(&str, &[u8])> = vec![
        ("bin/run.sh", b"#!/bin/sh\necho hi\n"),
        ("src/main.rs", b"fn main() {}\n"),
        ("src/lib/util.rs", b"pub fn f() {}\n"),
        ("README", b"readme\n"),
        ("copy-a", b"same bytes\n"),
    ];
    let iter: Box<dyn Iterator<Item = &(&str, &[u8])>> = if variant {
        Box::new(files.iter().rev())
    } else {
        Box::new(files.iter())
    };
    for (rel, content) in iter {
        write(root, rel, content);
    }
    set_mode(root, "bin/run.sh", 0o755);
    if variant {
        // A hard link instead of a second copy: layer.md § Hardlinks allows either; berth
        // writes separate files so the checkout method does not matter.
        fs::hard_link(root.join("copy-a"), root.join("copy-b")).unwrap();
        for (i, rel) in ["README", "src/main.rs", "bin/run.sh", "copy-a"]
            .iter()
            .enumerate()
        {
            set_mtime(root, rel, 1_000 + i as u64 * 77_777);
        }
    } else {
        write(root, "copy-b", b"same bytes\n");
    }
    std::os::unix::fs::symlink("bin/run.sh", root.join("start")).unwrap();
}

#[test]
fn same_content_gives_same_digests_for_every_compression() {
    // config.md § Layer DiffID: "Layers SHOULD be packed and unpacked reproducibly to
    // avoid changing the layer DiffID".
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::Builder::new().prefix("other").tempdir().unwrap();
    make_tree(a.path(), false);
    make_tree(b.path(), true);
    let mut diff_ids = Vec::new();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (la, _oa) = build(a.path(), &opts(compression));
        let (lb, _ob) = build(b.path(), &opts(compression));
        assert_eq!(la.digest, lb.digest, "{compression:?}");
        assert_eq!(la.diff_id, lb.diff_id, "{compression:?}");
        assert_eq!(la.size, lb.size);
        assert_eq!(la.media_type, compression.media_type());
        // Digest and size describe the stored bytes; diff_id the uncompressed tar.
        let blob = fs::read(&la.path).unwrap();
        assert_eq!(Digest::sha256_of(&blob), la.digest);
        assert_eq!(blob.len() as u64, la.size);
        assert_eq!(Digest::sha256_of(&tar_bytes(&la)), la.diff_id);
        assert!(
            la.path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(la.digest.hex())
        );
        // Building again into the same place is stable too.
        let (again, _o) = build(a.path(), &opts(compression));
        assert_eq!(again.digest, la.digest);
        diff_ids.push(la.diff_id);
    }
    // The uncompressed tar does not depend on the compression.
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]));
    // Uncompressed: digest == diff_id.
    let (plain, _o) = build(a.path(), &opts(Compression::None));
    assert_eq!(plain.digest, plain.diff_id);
}

#[test]
fn changed_content_or_mode_changes_the_digest() {
    let a = tempfile::tempdir().unwrap();
    make_tree(a.path(), false);
    let (before, _o1) = build(a.path(), &opts(Compression::Gzip));
    write(a.path(), "src/main.rs", b"fn main() { println!(); }\n");
    let (after, _o2) = build(a.path(), &opts(Compression::Gzip));
    assert_ne!(before.digest, after.digest);
    assert_ne!(before.diff_id, after.diff_id);
    // The exec bit is content too.
    set_mode(a.path(), "README", 0o755);
    let (exec, _o3) = build(a.path(), &opts(Compression::Gzip));
    assert_ne!(exec.diff_id, after.diff_id);
    // So are the epoch and the destination.
    let mut o = opts(Compression::Gzip);
    o.mtime += 1;
    assert_ne!(build(a.path(), &o).0.diff_id, exec.diff_id);
    let mut o = opts(Compression::Gzip);
    o.dest = "/srv".to_owned();
    assert_ne!(build(a.path(), &o).0.diff_id, exec.diff_id);
}

#[test]
fn tar_has_sorted_entries_and_normalised_metadata() {
    let a = tempfile::tempdir().unwrap();
    make_tree(a.path(), true);
    let o = LayerOptions {
        dest: "/opt/app/".to_owned(),
        mtime: EPOCH,
        uid: 1000,
        gid: 1001,
        uname: "app".to_owned(),
        gname: "staff".to_owned(),
        compression: Compression::Zstd,
        keep_xattrs: false,
    };
    let (layer, _o) = build(a.path(), &o);
    assert_eq!(layer.dest, "/opt/app");
    assert_eq!(layer.files, 7);
    let items = entries(&layer);
    let names: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "opt/",
            "opt/app/",
            "opt/app/README",
            "opt/app/bin/",
            "opt/app/bin/run.sh",
            "opt/app/copy-a",
            "opt/app/copy-b",
            "opt/app/src/",
            "opt/app/src/lib/",
            "opt/app/src/lib/util.rs",
            "opt/app/src/main.rs",
            "opt/app/start",
        ]
    );
    // Sorted by path bytes, no duplicates (layer.md § Distributable Format: "MUST NOT
    // include duplicate entries for file paths").
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, names);
    for i in &items {
        // layer.md § File Attributes: mtime, uid, gid, mode are recorded — normalised.
        assert_eq!(i.mtime, EPOCH as u64, "{}", i.path);
        assert_eq!((i.uid, i.gid), (1000, 1001), "{}", i.path);
        assert_eq!((i.uname.as_str(), i.gname.as_str()), ("app", "staff"));
    }
    let by = |p: &str| items.iter().find(|i| i.path == p).unwrap().clone();
    assert_eq!(by("opt/").mode, 0o755);
    assert_eq!(by("opt/").kind, tar::EntryType::Directory);
    assert_eq!(by("opt/app/bin/run.sh").mode & 0o777, 0o755);
    assert_eq!(by("opt/app/README").mode & 0o111, 0);
    // The hard link became a regular file with the same content.
    let b = by("opt/app/copy-b");
    assert_eq!(b.kind, tar::EntryType::Regular);
    assert_eq!(b.content, b"same bytes\n");
    // Symlinks stay symlinks, target as is.
    let s = by("opt/app/start");
    assert_eq!(s.kind, tar::EntryType::Symlink);
    assert_eq!(s.link.as_deref(), Some("bin/run.sh"));
    assert_eq!(
        by("opt/app/src/main.rs").content,
        b"fn main() {}\n".to_vec()
    );
}

#[test]
fn root_destination_adds_no_root_entry() {
    let a = tempfile::tempdir().unwrap();
    write(a.path(), "etc/app.conf", b"x=1\n");
    let o = LayerOptions {
        compression: Compression::None,
        ..LayerOptions::default()
    };
    let (layer, _o) = build(a.path(), &o);
    assert_eq!(paths(&layer), ["etc/", "etc/app.conf"]);
    assert_eq!(entries(&layer)[0].mtime, 0);
}

#[test]
fn long_paths_round_trip() {
    let a = tempfile::tempdir().unwrap();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    write(a.path(), &long, b"deep\n");
    std::os::unix::fs::symlink("t".repeat(200), a.path().join("link")).unwrap();
    let (layer, _o) = build(a.path(), &opts(Compression::Gzip));
    let items = entries(&layer);
    let file = items
        .iter()
        .find(|i| i.path == format!("app/{long}"))
        .unwrap();
    assert_eq!(file.content, b"deep\n");
    let link = items.iter().find(|i| i.path == "app/link").unwrap();
    assert_eq!(link.link.as_deref(), Some("t".repeat(200).as_str()));
}

#[test]
fn berthignore_excludes_with_exceptions_double_star_and_directories() {
    let a = tempfile::tempdir().unwrap();
    write(
        a.path(),
        ".berthignore",
        b"# build output\ntarget\n*.md\n!README.md\n**/*.log\n/docs/\n!docs/keep.txt\n",
    );
    write(a.path(), "target/debug/app", b"bin");
    write(a.path(), "CHANGES.md", b"c");
    write(a.path(), "README.md", b"r");
    write(a.path(), "sub/NOTES.md", b"n"); // anchored: `*.md` is root-only
    write(a.path(), "x.log", b"l");
    write(a.path(), "deep/er/y.log", b"l");
    write(a.path(), "deep/er/keep.rs", b"k");
    write(a.path(), "docs/drop.txt", b"d");
    write(a.path(), "docs/keep.txt", b"k");
    write(a.path(), "main.rs", b"m");
    let (layer, _o) = build(a.path(), &opts(Compression::None));
    assert_eq!(
        paths(&layer),
        [
            "app/",
            "app/.berthignore",
            "app/README.md",
            "app/deep/",
            "app/deep/er/",
            "app/deep/er/keep.rs",
            "app/docs/",
            "app/docs/keep.txt",
            "app/main.rs",
            "app/sub/",
            "app/sub/NOTES.md",
        ]
    );
}

#[test]
fn berthignore_can_exclude_itself_and_whole_directories_without_exceptions() {
    let a = tempfile::tempdir().unwrap();
    write(a.path(), ".berthignore", b".berthignore\nnode_modules\n");
    write(a.path(), "node_modules/a/b/c.js", b"x");
    write(a.path(), "index.js", b"i");
    let (layer, _o) = build(a.path(), &opts(Compression::None));
    assert_eq!(paths(&layer), ["app/", "app/index.js"]);
}

#[test]
fn malformed_berthignore_is_an_error() {
    let a = tempfile::tempdir().unwrap();
    write(a.path(), ".berthignore", b"[abc\n");
    let out = tempfile::tempdir().unwrap();
    let err = build_layer(a.path(), &opts(Compression::None), out.path()).unwrap_err();
    assert!(matches!(err, BuildError::Ignore { .. }), "{err}");
    // No temp file left behind.
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn secret_looking_files_are_warned_about() {
    let a = tempfile::tempdir().unwrap();
    write(a.path(), ".env", b"TOKEN=1");
    write(a.path(), "certs/server.pem", b"cert");
    write(a.path(), "home/.ssh/id_ed25519", b"k");
    write(a.path(), ".npmrc", b"//registry/:_authToken=x");
    write(a.path(), "conf/credentials.json", b"{}");
    write(
        a.path(),
        "notes.txt",
        b"hello\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n",
    );
    write(a.path(), "deploy.sh", b"export KEY=AKIAIOSFODNN7EXAMPLE\n");
    write(a.path(), "ok.txt", b"nothing here");
    write(a.path(), ".berthignore", b"ignored.key\n");
    write(a.path(), "ignored.key", b"excluded files are not reported");
    let (layer, _o) = build(a.path(), &opts(Compression::Gzip));
    let w = &layer.warnings;
    assert_eq!(w.len(), 7, "{w:#?}");
    for name in [
        ".env",
        "certs/server.pem",
        "home/.ssh/id_ed25519",
        ".npmrc",
        "conf/credentials.json",
        "notes.txt",
        "deploy.sh",
    ] {
        assert!(
            w.iter().any(|l| l.starts_with(&format!("{name}: "))),
            "{name} in {w:#?}"
        );
    }
    assert!(w.iter().any(|l| l.contains("private key block")));
    assert!(w.iter().any(|l| l.contains("AWS")));
}

#[test]
fn sockets_are_refused_with_their_name() {
    let a = tempfile::tempdir().unwrap();
    let sock = a.path().join("app.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = build_layer(a.path(), &opts(Compression::Gzip), out.path()).unwrap_err();
    assert!(err.to_string().contains("app.sock"), "{err}");
    assert!(err.to_string().contains("socket"), "{err}");
    // …unless ignored.
    write(a.path(), ".berthignore", b"*.sock\n");
    build_layer(a.path(), &opts(Compression::Gzip), out.path()).unwrap();
}

#[test]
fn bad_options_are_refused() {
    let a = tempfile::tempdir().unwrap();
    write(a.path(), "f", b"f");
    let out = tempfile::tempdir().unwrap();
    let bad = [
        LayerOptions {
            mtime: -1,
            ..LayerOptions::default()
        },
        LayerOptions {
            dest: "app".to_owned(),
            ..LayerOptions::default()
        },
        LayerOptions {
            dest: "/app/../etc".to_owned(),
            ..LayerOptions::default()
        },
        LayerOptions {
            keep_xattrs: true,
            ..LayerOptions::default()
        },
        LayerOptions {
            uname: "u".repeat(40),
            ..LayerOptions::default()
        },
    ];
    for o in bad {
        let err = build_layer(a.path(), &o, out.path()).unwrap_err();
        assert!(matches!(err, BuildError::InvalidOption(_)), "{o:?}: {err}");
    }
}
