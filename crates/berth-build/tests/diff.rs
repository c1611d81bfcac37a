//! Tests for `berth_build::diff`: image-level and layer-level comparison.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Write};

use berth_build::diff::{
    Compression, DiffError, ImageData, LayerPair, diff_images, diff_layers, diff_layers_with_limit,
};
use berth_oci::Digest;
use serde_json::{Value, json};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

#[derive(Clone)]
struct E {
    path: &'static str,
    kind: tar::EntryType,
    data: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<&'static str>,
    xattrs: Vec<(&'static str, &'static [u8])>,
}

fn file(path: &'static str, data: &[u8]) -> E {
    E {
        path,
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        link: None,
        xattrs: Vec::new(),
    }
}

fn dir(path: &'static str) -> E {
    E {
        kind: tar::EntryType::Directory,
        mode: 0o755,
        ..file(path, b"")
    }
}

fn symlink(path: &'static str, target: &'static str) -> E {
    E {
        kind: tar::EntryType::Symlink,
        mode: 0o777,
        link: Some(target),
        ..file(path, b"")
    }
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if !e.xattrs.is_empty() {
            let keys: Vec<(String, &[u8])> = e
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            b.append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        if let Some(l) = e.link {
            h.set_link_name(l).unwrap();
        }
        // Written by hand: `append_data` refuses the absolute paths some tools emit.
        let name = e.path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, e.data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn base() -> Vec<E> {
    vec![
        dir("etc"),
        file("etc/hostname", b"box\n"),
        file("etc/os-release", b"ID=berth\n"),
        symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
    ]
}

fn diff_tars(a: &[E], b: &[E]) -> berth_build::diff::LayerDiff {
    diff_layers((TAR, Cursor::new(tar_of(a))), (TAR, Cursor::new(tar_of(b)))).unwrap()
}

/// The attribute names (first word) reported for each changed path.
fn attrs(d: &berth_build::diff::LayerDiff) -> Vec<(String, Vec<String>)> {
    d.changed
        .iter()
        .map(|(p, c)| {
            (
                p.clone(),
                c.iter()
                    .map(|s| s.split(' ').next().unwrap_or_default().to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn only(path: &str, attr: &[&str]) -> Vec<(String, Vec<String>)> {
    vec![(
        path.to_owned(),
        attr.iter().map(|s| (*s).to_owned()).collect(),
    )]
}

#[test]
fn identical_layers_have_no_changes() {
    let d = diff_tars(&base(), &base());
    assert!(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty());
    assert!(!d.order_differs);
    assert!(d.same_uncompressed);
    assert_eq!(d.left.digest, d.right.digest);
    assert_eq!(d.left.entries, 4);
    assert_eq!(d.left.compression, Compression::None);
    assert!(d.render().contains("identical"));
}

#[test]
fn content_change_reports_exactly_that_path() {
    let mut b = base();
    b[1].data = b"other\n".to_vec();
    let d = diff_tars(&base(), &b);
    assert_eq!(attrs(&d), only("etc/hostname", &["content"]));
    let desc = &d.changed[0].1[0];
    assert!(desc.contains("sha256:") && desc.contains("(4 bytes)") && desc.contains("(6 bytes)"));
    assert!(!d.same_uncompressed);
    assert!(!d.order_differs);
    assert!(d.added.is_empty() && d.removed.is_empty());
}

#[test]
fn same_size_content_change_is_detected() {
    let mut b = base();
    b[1].data = b"xob\n".to_vec();
    let d = diff_tars(&base(), &b);
    assert_eq!(attrs(&d), only("etc/hostname", &["content"]));
}

#[test]
fn mtime_only() {
    let mut b = base();
    b[2].mtime = 1_700_000_100;
    let d = diff_tars(&base(), &b);
    assert_eq!(attrs(&d), only("etc/os-release", &["mtime"]));
    assert_eq!(d.changed[0].1[0], "mtime 1700000000 → 1700000100");
    assert!(d.render().contains("only modification times differ"));
}

#[test]
fn owner_only() {
    let mut b = base();
    b[1].uid = 1000;
    b[1].gid = 1000;
    let d = diff_tars(&base(), &b);
    assert_eq!(attrs(&d), only("etc/hostname", &["owner"]));
    assert_eq!(d.changed[0].1[0], "owner 0:0 → 1000:1000");
}

#[test]
fn mode_only() {
    let mut b = base();
    b[0].mode = 0o700;
    let d = diff_tars(&base(), &b);
    assert_eq!(attrs(&d), only("etc", &["mode"]));
    assert_eq!(d.changed[0].1[0], "mode 0755 → 0700");
}

#[test]
fn added_and_removed() {
    let mut b = base();
    b.remove(2);
    b.push(file("etc/new", b"n"));
    let d = diff_tars(&base(), &b);
    assert_eq!(d.added, vec!["etc/new"]);
    assert_eq!(d.removed, vec!["etc/os-release"]);
    assert!(d.changed.is_empty());
    assert!(!d.order_differs);
    let text = d.render();
    assert!(text.contains("  + etc/new\n") && text.contains("  - etc/os-release\n"));
}

#[test]
fn symlink_target_change() {
    let mut b = base();
    b[3].link = Some("/usr/share/zoneinfo/Europe/Paris");
    let d = diff_tars(&base(), &b);
    assert_eq!(attrs(&d), only("etc/localtime", &["link"]));
    assert_eq!(
        d.changed[0].1[0],
        "link /usr/share/zoneinfo/UTC → /usr/share/zoneinfo/Europe/Paris"
    );
}

#[test]
fn type_change() {
    let mut b = base();
    b[3] = file("etc/localtime", b"");
    let d = diff_tars(&base(), &b);
    let a = attrs(&d);
    assert_eq!(a[0].0, "etc/localtime");
    assert_eq!(a[0].1[0], "type");
    assert!(d.changed[0].1[0].starts_with("type symlink → file"));
}

#[test]
fn xattr_change() {
    let mut a = base();
    a[1].xattrs = vec![("user.a", b"1"), ("user.gone", b"x")];
    let mut b = base();
    b[1].xattrs = vec![("user.a", b"2"), ("security.capability", b"c")];
    let d = diff_tars(&a, &b);
    assert_eq!(attrs(&d), only("etc/hostname", &["xattrs"]));
    let desc = &d.changed[0].1[0];
    assert!(desc.contains("~user.a") && desc.contains("-user.gone"));
    assert!(desc.contains("+security.capability"));
}

#[test]
fn same_tar_different_gzip_level_is_same_uncompressed() {
    // Enough compressible data that levels 1 and 9 produce different bytes.
    let mut entries = base();
    let big: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {} {}\n", i % 977, i % 13).into_bytes())
        .collect();
    entries.push(file("data.txt", &big));
    let t = tar_of(&entries);
    let (g1, g9) = (gzip(&t, 1), gzip(&t, 9));
    assert_ne!(g1, g9);
    let d = diff_layers((GZIP, Cursor::new(g1)), (GZIP, Cursor::new(g9))).unwrap();
    assert!(d.same_uncompressed);
    assert!(d.changed.is_empty() && d.added.is_empty() && d.removed.is_empty());
    assert_ne!(d.left.digest, d.right.digest);
    assert_eq!(d.left.diff_id, Digest::sha256_of(&t));
    assert_eq!(d.left.compression, Compression::Gzip);
    assert!(d.warnings.is_empty());
    assert!(d.render().contains("same content, different compression"));
}

#[test]
fn gzip_versus_zstd_versus_plain() {
    let t = tar_of(&base());
    let gz = gzip(&t, 6);
    let zs = zstd(&t);
    let d = diff_layers(
        (GZIP, Cursor::new(gz.clone())),
        (ZSTD, Cursor::new(zs.clone())),
    )
    .unwrap();
    assert!(d.same_uncompressed);
    assert_eq!(d.left.compression, Compression::Gzip);
    assert_eq!(d.right.compression, Compression::Zstd);
    assert_eq!(d.left.digest, Digest::sha256_of(&gz));
    assert_eq!(d.right.digest, Digest::sha256_of(&zs));
    assert_eq!(d.left.size, gz.len() as u64);
    assert_eq!(d.right.uncompressed_size, t.len() as u64);

    // Docker media type, and a plain tar wrongly labelled gzip: sniffed, with a warning.
    let d = diff_layers(
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Cursor::new(gz),
        ),
        (GZIP, Cursor::new(t)),
    )
    .unwrap();
    assert!(d.same_uncompressed);
    assert_eq!(d.right.compression, Compression::None);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
}

#[test]
fn order_change_only() {
    let mut b = base();
    b.swap(1, 2);
    let d = diff_tars(&base(), &b);
    assert!(d.order_differs);
    assert!(d.changed.is_empty() && d.added.is_empty() && d.removed.is_empty());
    assert!(!d.same_uncompressed);
    assert!(d.render().contains("different order"));
}

#[test]
fn paths_are_normalised() {
    let mut a = base();
    a[1].path = "./etc/hostname";
    a.push(E {
        kind: tar::EntryType::Link,
        link: Some("./etc/hostname"),
        ..file("etc/hn", b"")
    });
    let mut b = base();
    b[1].path = "/etc/hostname";
    b[0].path = "./etc/";
    b.push(E {
        kind: tar::EntryType::Link,
        link: Some("etc/hostname"),
        ..file("./etc/hn", b"")
    });
    let d = diff_tars(&a, &b);
    assert!(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty());
}

#[test]
fn entry_cap_is_enforced() {
    let t = tar_of(&base());
    let err = diff_layers_with_limit((TAR, Cursor::new(t.clone())), (TAR, Cursor::new(t)), 3)
        .unwrap_err();
    assert!(
        matches!(err, DiffError::TooManyEntries { limit: 3, .. }),
        "{err}"
    );
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut gz = gzip(&tar_of(&base()), 6);
    let n = gz.len();
    gz.truncate(n / 2);
    let err =
        diff_layers((GZIP, Cursor::new(gz)), (TAR, Cursor::new(tar_of(&base())))).unwrap_err();
    assert!(matches!(err, DiffError::Read { .. }), "{err}");
}

#[test]
fn layer_diff_serializes() {
    let mut b = base();
    b[1].mtime = 5;
    let v = serde_json::to_value(diff_tars(&base(), &b)).unwrap();
    assert_eq!(v["changed"][0][0], "etc/hostname");
    assert_eq!(v["left"]["compression"], "none");
    assert_eq!(v["order_differs"], false);
}

// ---- image level ----

fn digest(n: u8) -> String {
    Digest::sha256_of(&[n]).to_string()
}

fn image(layers: &[u8], env: &[&str], created: &str) -> ImageData {
    let layer_descs: Vec<Value> = layers
        .iter()
        .map(|n| json!({"mediaType": GZIP, "digest": digest(*n), "size": 100 + u64::from(*n)}))
        .collect();
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": env, "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|n| digest(100 + n)).collect::<Vec<_>>()},
        "history": layers.iter().map(|n| json!({"created_by": format!("step {n}")})).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(&config_bytes).to_string(), "size": config_bytes.len()},
        "layers": layer_descs,
    });
    ImageData {
        manifest_digest: Digest::sha256_of(&serde_json::to_vec(&manifest).unwrap()),
        manifest,
        config,
    }
}

#[test]
fn identical_images() {
    let a = image(&[1, 2], &["PATH=/bin"], "2024-01-01T00:00:00Z");
    let d = diff_images(&a, &a.clone());
    assert!(d.same);
    assert!(d.manifest.is_empty() && d.config.is_empty());
    assert!(d.layers.iter().all(|l| matches!(l, LayerPair::Same { .. })));
    assert!(d.render().contains("identical"));
}

#[test]
fn configs_differing_in_env_and_created() {
    let a = image(&[1, 2], &["PATH=/bin", "A=1"], "2024-01-01T00:00:00Z");
    let b = image(&[1, 2], &["PATH=/bin", "A=2"], "2024-06-01T00:00:00Z");
    let d = diff_images(&a, &b);
    assert!(!d.same);
    let paths: Vec<&str> = d.config.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, vec!["/config/Env/1", "/created"]);
    assert_eq!(d.config[0].left, Some(json!("A=1")));
    assert_eq!(d.config[0].right, Some(json!("A=2")));
    // The config descriptor differs; the layers do not.
    let mpaths: Vec<&str> = d.manifest.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(mpaths, vec!["/config/digest"]);
    assert!(d.layers.iter().all(|l| matches!(l, LayerPair::Same { .. })));
    let text = d.render();
    assert!(text.contains("/created: \"2024-01-01T00:00:00Z\" → \"2024-06-01T00:00:00Z\""));
    assert!(text.contains("SOURCE_DATE_EPOCH"));
}

#[test]
fn layer_alignment_with_extra_layer() {
    let a = image(&[1, 2], &[], "t");
    let b = image(&[1, 3, 4], &[], "t");
    let d = diff_images(&a, &b);
    assert_eq!(d.layers.len(), 3);
    assert!(
        matches!(&d.layers[0], LayerPair::Same { index: 0, digest: d0 } if d0.to_string() == digest(1))
    );
    match &d.layers[1] {
        LayerPair::Different {
            index: 1,
            left,
            right,
            same_content,
        } => {
            assert_eq!(
                left.digest.as_ref().map(ToString::to_string),
                Some(digest(2))
            );
            assert_eq!(
                right.digest.as_ref().map(ToString::to_string),
                Some(digest(3))
            );
            assert_eq!(
                left.diff_id.as_ref().map(ToString::to_string),
                Some(digest(102))
            );
            assert_eq!(left.size, Some(102));
            assert!(!same_content);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&d.layers[2], LayerPair::OnlyRight { index: 2, layer } if layer.media_type.as_deref() == Some(GZIP))
    );
    // The extra layer is reported once, in `layers`, not again in the manifest diff.
    assert!(
        d.manifest.iter().all(|c| !c.path.starts_with("/layers")),
        "{:?}",
        d.manifest
    );
    let cpaths: Vec<&str> = d.config.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        cpaths,
        vec![
            "/history/1/created_by",
            "/history/2",
            "/rootfs/diff_ids/1",
            "/rootfs/diff_ids/2"
        ]
    );
    let text = d.render();
    assert!(text.contains("+ #2 only in right"));
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["layers"][2]["kind"], "only_right");
}

#[test]
fn recompressed_layer_and_shifted_layers() {
    let a = image(&[1, 2], &[], "t");
    let mut b = image(&[1, 2], &[], "t");
    // Layer 1 recompressed: new digest, same diff_id; also its media type changed.
    b.manifest["layers"][1]["digest"] = json!(digest(9));
    b.manifest["layers"][1]["mediaType"] = json!(ZSTD);
    b.manifest_digest = Digest::sha256_of(&serde_json::to_vec(&b.manifest).unwrap());
    let d = diff_images(&a, &b);
    assert!(matches!(
        &d.layers[1],
        LayerPair::Different {
            same_content: true,
            ..
        }
    ));
    let mpaths: Vec<&str> = d.manifest.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(mpaths, vec!["/layers/1/mediaType"]);
    assert!(
        d.render()
            .contains("same content (same diff_id), different compression")
    );

    // A layer inserted at the front shifts the others.
    let c = image(&[7, 1, 2], &[], "t");
    let text = diff_images(&a, &c).render();
    assert!(
        text.contains("layer #1 on the right is layer #0 on the left"),
        "{text}"
    );
}
