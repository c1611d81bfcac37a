//! SBOM cataloguing end to end: synthetic layers (plain, gzip, zstd tars built
//! in memory) through `Cataloguer`, whiteouts per image-spec `layer.md`
//! § Whiteouts, ELF fixtures made with objcopy, and the SPDX 2.3 / CycloneDX 1.6
//! output checked by the reference validators when they are installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

use berth_oci::Digest;
use berth_supply::sbom::{
    Catalog, Cataloguer, Ecosystem, LayerInput, Package, SbomError, SubjectInfo, to_cyclonedx,
    to_spdx,
};
use serde_json::Value;

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// A regular file whose name is written into the header as is (`../x`).
    Raw(&'a str, &'a [u8]),
}

fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        match e {
            E::File(path, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            E::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            E::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            E::Hardlink(path, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            E::Raw(name, data) => {
                let mut h = tar::Header::new_old();
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// Feeds one blob; returns its digest (as packages carry it).
fn feed(c: &mut Cataloguer, media_type: &str, blob: &[u8]) -> Result<String, SbomError> {
    let digest = Digest::sha256_of(blob);
    c.add_layer(LayerInput {
        digest: digest.clone(),
        media_type: media_type.to_owned(),
        reader: blob,
    })?;
    Ok(digest.to_string())
}

fn find<'a>(catalog: &'a Catalog, eco: Ecosystem, name: &str) -> Option<&'a Package> {
    catalog
        .packages
        .iter()
        .find(|p| p.ecosystem == eco && p.name == name)
}

fn names(catalog: &Catalog, eco: Ecosystem) -> Vec<&str> {
    catalog
        .packages
        .iter()
        .filter(|p| p.ecosystem == eco)
        .map(|p| p.name.as_str())
        .collect()
}

const OS_RELEASE_DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n";

const DPKG_STATUS: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>

Package: oldconf
Status: deinstall ok config-files
Architecture: amd64
Version: 1:0.9-1

Package: login
Status: install ok installed
Architecture: amd64
Source: shadow
Version: 1:4.13+dfsg1-1+b1
Maintainer: Shadow package maintainers <pkg-shadow-devel@lists.alioth.debian.org>
";

const LIBC_COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: glibc

Files: *
Copyright: 1991-2023 Free Software Foundation, Inc.
License: LGPL-2.1+

License: LGPL-2.1+
 This library is free software.
";

fn metadata(name: &str, version: &str, licence_lines: &str) -> Vec<u8> {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{licence_lines}\nLong description.\nName: not-this\n")
        .into_bytes()
}

fn package_json(name: &str, version: &str, licence: &str) -> Vec<u8> {
    format!(r#"{{"name":"{name}","version":"{version}","license":{licence},"main":"index.js"}}"#)
        .into_bytes()
}

const CARGO_LOCK: &str = r#"version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = [
 "serde",
]

[[package]]
name = "serde"
version = "1.0.197"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "3fb1c873e1b9b056a4dc4c0c198b24c3ffa059243875552b2bd0933b1aee4ce2"
"#;

/// A three-layer image (plain tar, gzip, zstd) exercising every path-based
/// cataloguer and the whiteout rules.
fn three_layer_image() -> (Catalog, [String; 3]) {
    let six = metadata(
        "six",
        "1.16.0",
        "Classifier: License :: OSI Approved :: MIT License",
    );
    let requests = metadata("requests", "2.31.0", "License: Apache 2.0");
    let legacy = metadata("Legacy_Pkg", "0.9", "License: BSD");
    let modern = metadata("modern", "2.0", "License-Expression: MIT OR Apache-2.0");
    let site = "usr/lib/python3/dist-packages";
    let l0 = tar(&[
        E::Dir("./"),
        E::Dir("./etc/"),
        E::File("./etc/os-release", OS_RELEASE_DEBIAN.as_bytes()),
        E::File("var/lib/dpkg/status", DPKG_STATUS.as_bytes()),
        E::File("usr/share/doc/libc6/copyright", LIBC_COPYRIGHT.as_bytes()),
        E::File(&format!("{site}/six-1.16.0.dist-info/METADATA"), &six),
        E::File(
            &format!("{site}/requests-2.31.0.dist-info/METADATA"),
            &requests,
        ),
        E::File(&format!("{site}/Legacy_Pkg-0.9.egg-info"), &legacy),
        E::File(&format!("{site}/modern.egg-info/PKG-INFO"), &modern),
        E::File(
            "opt/old/node_modules/gone/package.json",
            &package_json("gone", "1.0.0", "\"MIT\""),
        ),
    ]);
    let status_without_tzdata = DPKG_STATUS.replace(
        "Package: tzdata\nStatus: install ok installed",
        "Package: tzdata\nStatus: purge ok not-installed",
    );
    let l1 = tar(&[
        E::File("var/lib/dpkg/status", status_without_tzdata.as_bytes()),
        E::File(&format!("{site}/.wh.requests-2.31.0.dist-info"), b""),
        E::File(
            "app/node_modules/left-pad/package.json",
            &package_json("left-pad", "1.3.0", "\"WTFPL\""),
        ),
        E::File(
            "app/node_modules/left-pad/test/fixtures/package.json",
            &package_json("fixture", "0.0.1", "\"MIT\""),
        ),
        E::File(
            "app/node_modules/@types/node/package.json",
            &package_json("@types/node", "20.11.5", "{\"type\":\"MIT\"}"),
        ),
        E::File("src/app/Cargo.lock", CARGO_LOCK.as_bytes()),
    ]);
    // The opaque marker comes after the directory's new entry: it must still
    // only hide the lower layers' entries.
    let l2 = tar(&[
        E::Dir("opt/old/"),
        E::File(
            "opt/old/node_modules/kept/package.json",
            &package_json("kept", "2.0.0", "\"ISC\""),
        ),
        E::File("opt/old/.wh..wh..opq", b""),
    ]);
    let mut c = Cataloguer::new();
    let d0 = feed(&mut c, TAR, &l0).unwrap();
    let d1 = feed(&mut c, GZIP, &gzip(&l1)).unwrap();
    let d2 = feed(&mut c, ZSTD, &zstd(&l2)).unwrap();
    (c.finish(), [d0, d1, d2])
}

#[test]
fn catalogues_every_ecosystem_with_whiteouts_and_layer_attribution() {
    let (catalog, [d0, d1, d2]) = three_layer_image();
    let distro = catalog.distro.as_ref().unwrap();
    assert_eq!(distro.id, "debian");
    assert_eq!(distro.version_id.as_deref(), Some("12"));

    // dpkg: the upper layer's status wins (tzdata gone), config-files never counts.
    assert_eq!(names(&catalog, Ecosystem::Deb), ["libc6", "login"]);
    let libc = find(&catalog, Ecosystem::Deb, "libc6").unwrap();
    assert_eq!(
        libc.layer, d1,
        "attributed to the layer the status file came from"
    );
    assert_eq!(libc.location, "var/lib/dpkg/status");
    assert_eq!(
        libc.purl,
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
    );
    assert_eq!(libc.arch.as_deref(), Some("amd64"));
    assert_eq!(
        libc.license.as_deref(),
        Some("LGPL-2.1+"),
        "from the DEP-5 copyright"
    );
    assert_eq!(
        libc.supplier.as_deref(),
        Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>")
    );
    let login = find(&catalog, Ecosystem::Deb, "login").unwrap();
    assert_eq!(login.version, "1:4.13+dfsg1-1+b1", "the epoch is kept");
    assert_eq!(
        login.purl,
        "pkg:deb/debian/login@1:4.13%2Bdfsg1-1%2Bb1?arch=amd64&distro=debian-12&upstream=shadow"
    );

    // Python: requests whited out; egg-info file and directory both read.
    assert_eq!(
        names(&catalog, Ecosystem::Python),
        ["Legacy_Pkg", "modern", "six"]
    );
    let six = find(&catalog, Ecosystem::Python, "six").unwrap();
    assert_eq!(six.layer, d0);
    assert_eq!(six.purl, "pkg:pypi/six@1.16.0");
    assert_eq!(six.license.as_deref(), Some("MIT License"));
    assert_eq!(
        find(&catalog, Ecosystem::Python, "Legacy_Pkg")
            .unwrap()
            .purl,
        "pkg:pypi/legacy-pkg@0.9"
    );

    // npm: the scoped package, not the fixture; `gone` hidden by the opaque
    // directory, `kept` (same layer as the marker) stays.
    assert_eq!(
        names(&catalog, Ecosystem::Npm),
        ["@types/node", "kept", "left-pad"]
    );
    let types = find(&catalog, Ecosystem::Npm, "@types/node").unwrap();
    assert_eq!(types.purl, "pkg:npm/%40types/node@20.11.5");
    assert_eq!(types.license.as_deref(), Some("MIT"));
    assert_eq!(types.location, "app/node_modules/@types/node/package.json");
    assert_eq!(find(&catalog, Ecosystem::Npm, "kept").unwrap().layer, d2);

    // Cargo.lock: every package.
    assert_eq!(names(&catalog, Ecosystem::Cargo), ["app", "serde"]);
    assert_eq!(
        find(&catalog, Ecosystem::Cargo, "serde").unwrap().purl,
        "pkg:cargo/serde@1.0.197"
    );

    // Sorted by ecosystem, name, version.
    let keys: Vec<_> = catalog
        .packages
        .iter()
        .map(|p| (p.ecosystem, p.name.clone(), p.version.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(
        catalog
            .packages
            .iter()
            .all(|p| !p.location.starts_with('/'))
    );
}

#[test]
fn apk_database_and_alpine_distro() {
    let installed = "\
C:Q1sSNCl4MTQ0d1V/0NTXAhIjY7Nqo=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>

C:Q1abc=
P:libcrypto3
V:3.1.4-r5
A:x86_64
L:Apache-2.0
o:openssl
";
    let l0 = tar(&[
        E::File(
            "usr/lib/os-release",
            b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n",
        ),
        // A symlinked file of interest is ignored: the target is read instead.
        E::Symlink("etc/os-release", "../usr/lib/os-release"),
        E::File("lib/apk/db/installed", installed.as_bytes()),
    ]);
    let mut c = Cataloguer::new();
    let d0 = feed(&mut c, DOCKER_GZIP, &gzip(&l0)).unwrap();
    let catalog = c.finish();
    assert_eq!(catalog.distro.as_ref().unwrap().id, "alpine");
    assert_eq!(names(&catalog, Ecosystem::Apk), ["libcrypto3", "musl"]);
    let crypto = find(&catalog, Ecosystem::Apk, "libcrypto3").unwrap();
    assert_eq!(
        crypto.purl,
        "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1&upstream=openssl"
    );
    assert_eq!(crypto.license.as_deref(), Some("Apache-2.0"));
    assert_eq!(crypto.layer, d0);
    assert_eq!(crypto.location, "lib/apk/db/installed");
}

#[test]
fn distroless_status_d_and_copyright_whiteout() {
    let stanza = |name: &str, version: &str| {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: arm64\nMaintainer: X <x@example.org>\n"
        )
    };
    let l0 = tar(&[
        E::File("etc/os-release", OS_RELEASE_DEBIAN.as_bytes()),
        E::File(
            "var/lib/dpkg/status.d/base-files",
            stanza("base-files", "12.4+deb12u5").as_bytes(),
        ),
        E::File(
            "var/lib/dpkg/status.d/base-files.md5sums",
            b"d41d8cd98f00b204e9800998ecf8427e  etc/issue\n",
        ),
        E::File(
            "var/lib/dpkg/status.d/tzdata",
            stanza("tzdata", "2024a-0+deb12u1").as_bytes(),
        ),
        E::File(
            "usr/share/doc/tzdata/copyright",
            LIBC_COPYRIGHT
                .replace("LGPL-2.1+", "public-domain")
                .as_bytes(),
        ),
        E::File(
            "usr/share/doc/base-files/copyright",
            LIBC_COPYRIGHT.replace("LGPL-2.1+", "GPL-2+").as_bytes(),
        ),
    ]);
    let l0b = tar(&[
        E::File(
            "var/lib/dpkg/status.d/libgcc-s1",
            stanza("libgcc-s1", "12.2.0-14").as_bytes(),
        ),
        E::File(
            "usr/share/doc/gcc-12-base/copyright",
            LIBC_COPYRIGHT.replace("LGPL-2.1+", "GPL-3+").as_bytes(),
        ),
        // Debian links a doc directory to the one of the package it comes with.
        E::Symlink("usr/share/doc/libgcc-s1", "gcc-12-base"),
    ]);
    let l1 = tar(&[E::File("usr/share/doc/base-files/.wh.copyright", b"")]);
    let mut c = Cataloguer::new();
    feed(&mut c, TAR, &l0).unwrap();
    feed(&mut c, TAR, &l0b).unwrap();
    feed(&mut c, TAR, &l1).unwrap();
    let catalog = c.finish();
    assert_eq!(
        names(&catalog, Ecosystem::Deb),
        ["base-files", "libgcc-s1", "tzdata"]
    );
    assert_eq!(
        find(&catalog, Ecosystem::Deb, "libgcc-s1")
            .unwrap()
            .license
            .as_deref(),
        Some("GPL-3+"),
        "through the doc directory link"
    );
    let base = find(&catalog, Ecosystem::Deb, "base-files").unwrap();
    assert_eq!(base.location, "var/lib/dpkg/status.d/base-files");
    assert_eq!(base.license, None, "its copyright file was whited out");
    assert_eq!(
        find(&catalog, Ecosystem::Deb, "tzdata")
            .unwrap()
            .license
            .as_deref(),
        Some("public-domain")
    );
}

#[test]
fn whiteout_of_a_parent_directory_and_file_replacing_directory() {
    let l0 = tar(&[
        E::File(
            "srv/a/node_modules/x/package.json",
            &package_json("x", "1.0.0", "\"MIT\""),
        ),
        E::File(
            "srv/b/node_modules/y/package.json",
            &package_json("y", "1.0.0", "\"MIT\""),
        ),
        E::File(
            "srv/bb/node_modules/z/package.json",
            &package_json("z", "1.0.0", "\"MIT\""),
        ),
    ]);
    // `.wh.a` removes all of srv/a; a symlink replacing srv/b removes its tree,
    // and srv/bb (a sibling sharing the prefix) is untouched.
    let l1 = tar(&[E::File("srv/.wh.a", b""), E::Symlink("srv/b", "/elsewhere")]);
    let mut c = Cataloguer::new();
    feed(&mut c, TAR, &l0).unwrap();
    feed(&mut c, TAR, &l1).unwrap();
    assert_eq!(names(&c.finish(), Ecosystem::Npm), ["z"]);
}

#[test]
fn hard_link_to_metadata_is_catalogued() {
    let meta = metadata("linked", "1.0", "License: MIT");
    let l0 = tar(&[
        E::File("a/site-packages/linked-1.0.dist-info/METADATA", &meta),
        E::Hardlink(
            "b/site-packages/linked-1.0.dist-info/METADATA",
            "a/site-packages/linked-1.0.dist-info/METADATA",
        ),
        // A hard link whose own path is not metadata is not.
        E::Hardlink(
            "c/METADATA.bak",
            "a/site-packages/linked-1.0.dist-info/METADATA",
        ),
    ]);
    let mut c = Cataloguer::new();
    feed(&mut c, TAR, &l0).unwrap();
    let catalog = c.finish();
    let locations: Vec<_> = catalog
        .packages
        .iter()
        .map(|p| p.location.as_str())
        .collect();
    assert_eq!(
        locations,
        [
            "a/site-packages/linked-1.0.dist-info/METADATA",
            "b/site-packages/linked-1.0.dist-info/METADATA"
        ]
    );
}

#[test]
fn gzip_content_under_a_plain_tar_media_type_is_sniffed() {
    let l0 = tar(&[E::File("x/Cargo.lock", CARGO_LOCK.as_bytes())]);
    let mut c = Cataloguer::new();
    feed(&mut c, TAR, &gzip(&l0)).unwrap();
    feed(
        &mut c,
        TAR,
        &zstd(&tar(&[E::File("y/Cargo.lock", CARGO_LOCK.as_bytes())])),
    )
    .unwrap();
    assert_eq!(c.finish().packages.len(), 4);
}

#[test]
fn unknown_media_type_is_an_error_naming_it() {
    let mut c = Cataloguer::new();
    let err = feed(
        &mut c,
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        b"BZh",
    )
    .unwrap_err();
    assert!(matches!(err, SbomError::UnsupportedMediaType { .. }));
    assert!(err.to_string().contains("tar+bzip2"), "{err}");
}

#[test]
fn truncated_or_corrupt_layers_are_errors_naming_the_layer() {
    let good = tar(&[E::File("x/Cargo.lock", CARGO_LOCK.as_bytes())]);
    let mut c = Cataloguer::new();
    let base = feed(&mut c, TAR, &good).unwrap();

    let upper = tar(&[
        E::File("x/.wh.Cargo.lock", b""),
        E::File("big", &vec![7u8; 200_000]),
    ]);
    let gz = gzip(&upper);
    let zs = zstd(&upper);
    for (media_type, blob) in [
        (GZIP, gz[..gz.len() / 2].to_vec()),
        (GZIP, gz[..gz.len() - 4].to_vec()),
        (ZSTD, zs[..zs.len() / 2].to_vec()),
        (TAR, upper[..upper.len() / 2].to_vec()),
        (GZIP, b"\x1f\x8b\x08\x00garbage garbage garbage".to_vec()),
    ] {
        let digest = Digest::sha256_of(&blob).to_string();
        let err = feed(&mut c, media_type, &blob).unwrap_err();
        assert!(matches!(err, SbomError::Layer { .. }), "{err}");
        assert!(err.to_string().contains(&digest), "{err} names {digest}");
    }
    // A failed layer is not applied: the whiteout in it did not take effect.
    let catalog = c.finish();
    assert_eq!(catalog.packages.len(), 2);
    assert!(catalog.packages.iter().all(|p| p.layer == base));
}

#[test]
fn hostile_paths_and_oversized_metadata_are_skipped() {
    let huge = {
        let mut m = metadata("huge", "1.0", "License: MIT");
        m.resize(65 << 20, b'x');
        m
    };
    let l0 = tar(&[
        E::Raw("../../etc/os-release", b"ID=evil\n"),
        E::Raw("x/../../var/lib/dpkg/status", DPKG_STATUS.as_bytes()),
        E::File("big.dist-info/METADATA", &huge),
        E::File("ok.dist-info/METADATA", &metadata("ok", "1.0", "")),
        E::File("bad/node_modules/broken/package.json", b"{\"name\": "),
    ]);
    let mut c = Cataloguer::new();
    feed(&mut c, TAR, &l0).unwrap();
    let catalog = c.finish();
    assert_eq!(catalog.distro, None);
    let got: Vec<_> = catalog.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(got, ["ok"]);
}

#[test]
fn directory_tree_as_one_layer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, data: &[u8]| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    write("etc/os-release", OS_RELEASE_DEBIAN.as_bytes());
    write("var/lib/dpkg/status", DPKG_STATUS.as_bytes());
    write(
        "srv/node_modules/left-pad/package.json",
        &package_json("left-pad", "1.3.0", "\"WTFPL\""),
    );
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("var"), root.join("var-link")).unwrap();
    let mut c = Cataloguer::new();
    c.add_directory(root, "dir:test").unwrap();
    let catalog = c.finish();
    assert_eq!(catalog.distro.as_ref().unwrap().id, "debian");
    assert_eq!(
        names(&catalog, Ecosystem::Deb),
        ["libc6", "login", "tzdata"],
        "symlinks not followed"
    );
    assert!(catalog.packages.iter().all(|p| p.layer == "dir:test"));

    let err = Cataloguer::new()
        .add_directory(&root.join("missing"), "x")
        .unwrap_err();
    assert!(matches!(err, SbomError::Directory { .. }), "{err}");
}

// --- ELF fixtures (objcopy) -------------------------------------------------

/// Copies /bin/true and adds a section with the given contents; `None` (with a
/// note) where objcopy or /bin/true is missing.
fn elf_with_section(dir: &Path, section: &str, contents: &[u8]) -> Option<Vec<u8>> {
    let base = Path::new("/bin/true");
    if !base.exists() || Command::new("objcopy").arg("--version").output().is_err() {
        println!("note: objcopy or /bin/true missing; skipping the ELF fixture test");
        return None;
    }
    let data = dir.join(format!("{}.bin", section.trim_start_matches('.')));
    std::fs::write(&data, contents).unwrap();
    let out = dir.join(format!("{}.elf", section.trim_start_matches('.')));
    let status = Command::new("objcopy")
        .arg("--add-section")
        .arg(format!("{section}={}", data.display()))
        .arg(base)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "objcopy failed");
    Some(std::fs::read(out).unwrap())
}

#[test]
fn cargo_auditable_binary() {
    let dir = tempfile::tempdir().unwrap();
    let json = br#"{"packages":[{"name":"app","version":"0.3.0","source":"local","dependencies":[1,2],"root":true},{"name":"cc","version":"1.0.90","source":"crates.io","kind":"build"},{"name":"rustls","version":"0.23.5","source":"crates.io"}]}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json).unwrap();
    let Some(elf) = elf_with_section(dir.path(), ".dep-v0", &z.finish().unwrap()) else {
        return;
    };
    let l0 = tar(&[
        E::File("usr/local/bin/app", &elf),
        E::Hardlink("usr/local/bin/app-again", "usr/local/bin/app"),
        E::File("usr/bin/plain", &std::fs::read("/bin/true").unwrap()),
    ]);
    let mut c = Cataloguer::new();
    let d0 = feed(&mut c, GZIP, &gzip(&l0)).unwrap();
    let catalog = c.finish();
    let got: Vec<_> = catalog
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.location.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("app", "usr/local/bin/app"),
            ("app", "usr/local/bin/app-again"),
            ("rustls", "usr/local/bin/app"),
            ("rustls", "usr/local/bin/app-again"),
        ]
    );
    let rustls = find(&catalog, Ecosystem::Cargo, "rustls").unwrap();
    assert_eq!(rustls.purl, "pkg:cargo/rustls@0.23.5");
    assert_eq!(rustls.layer, d0);
}

/// A Go ≥ 1.18 `.go.buildinfo` blob: header, then the version and the module
/// info (between 16-byte sentinels) as uvarint-length-prefixed strings.
fn go_buildinfo(go_version: &str, modinfo: &str) -> Vec<u8> {
    let mut out = b"\xff Go buildinf:".to_vec();
    out.push(8);
    out.push(0x2);
    out.resize(32, 0);
    let mut framed = hex_bytes("3077af0c9274080241e1c107e6d618e6");
    framed.extend_from_slice(modinfo.as_bytes());
    framed.extend(hex_bytes("f932433186182072008242104116d8f2"));
    for s in [go_version.as_bytes(), &framed[..]] {
        let mut n = s.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(s);
    }
    out
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn go_binary_build_info() {
    let dir = tempfile::tempdir().unwrap();
    let modinfo = "path\texample.com/tool/cmd/tool\nmod\texample.com/tool\tv1.4.0\th1:aaa=\ndep\tgithub.com/spf13/cobra\tv1.8.0\th1:bbb=\ndep\tgolang.org/x/crypto\tv0.17.0\th1:ccc=\n=>\tgolang.org/x/crypto\tv0.18.0\th1:ddd=\nbuild\t-compiler=gc\nbuild\tGOARCH=amd64\nbuild\tGOOS=linux\n";
    let Some(elf) = elf_with_section(
        dir.path(),
        ".go.buildinfo",
        &go_buildinfo("go1.21.6", modinfo),
    ) else {
        return;
    };
    let l0 = tar(&[E::File("usr/bin/tool", &elf)]);
    let mut c = Cataloguer::new();
    feed(&mut c, TAR, &l0).unwrap();
    let catalog = c.finish();
    let got: Vec<_> = catalog
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.purl.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "example.com/tool",
                "v1.4.0",
                "pkg:golang/example.com/tool@v1.4.0"
            ),
            (
                "github.com/spf13/cobra",
                "v1.8.0",
                "pkg:golang/github.com/spf13/cobra@v1.8.0"
            ),
            (
                "golang.org/x/crypto",
                "v0.18.0",
                "pkg:golang/golang.org/x/crypto@v0.18.0"
            ),
            ("stdlib", "go1.21.6", "pkg:golang/stdlib@1.21.6"),
        ]
    );
    assert!(
        catalog
            .packages
            .iter()
            .all(|p| p.arch.as_deref() == Some("amd64"))
    );
    assert!(
        catalog
            .packages
            .iter()
            .all(|p| p.location == "usr/bin/tool")
    );
}

// --- SPDX and CycloneDX output --------------------------------------------------

fn subject() -> SubjectInfo {
    SubjectInfo {
        name: "registry.example/team/app:1.0".to_owned(),
        digest: Digest::sha256_of(b"manifest"),
    }
}

fn created() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_714_564_800).unwrap()
}

#[test]
fn spdx_document_shape() {
    let (catalog, _) = three_layer_image();
    let doc = to_spdx(&catalog, &subject(), created());
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(doc["creationInfo"]["created"], "2024-05-01T12:00:00Z");
    assert!(
        doc["creationInfo"]["creators"][0]
            .as_str()
            .unwrap()
            .starts_with("Tool: berth-")
    );
    let ns = doc["documentNamespace"].as_str().unwrap();
    assert!(ns.starts_with("https://") && !ns.contains('#'), "{ns}");
    assert_ne!(
        ns,
        to_spdx(&catalog, &subject(), created())["documentNamespace"]
            .as_str()
            .unwrap(),
        "each document has its own namespace"
    );

    let packages = doc["packages"].as_array().unwrap();
    // image + operating system + packages
    assert_eq!(packages.len(), 2 + catalog.packages.len());
    let image = &packages[0];
    assert_eq!(image["primaryPackagePurpose"], "CONTAINER");
    assert_eq!(image["checksums"][0]["algorithm"], "SHA256");
    assert_eq!(
        image["checksums"][0]["checksumValue"],
        subject().digest.hex()
    );
    assert!(
        image["SPDXID"]
            .as_str()
            .unwrap()
            .starts_with("SPDXRef-Image-")
    );

    let mut ids = std::collections::HashSet::new();
    for p in packages {
        let id = p["SPDXID"].as_str().unwrap();
        let tail = id.strip_prefix("SPDXRef-").unwrap();
        assert!(
            tail.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{id}"
        );
        assert!(ids.insert(id.to_owned()), "duplicate {id}");
    }
    let by_name = |name: &str| packages.iter().find(|p| p["name"] == name).unwrap();
    assert_eq!(by_name("libc6")["licenseDeclared"], "LGPL-2.1-or-later");
    assert_eq!(
        by_name("libc6")["supplier"],
        "Person: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
    );
    assert_eq!(by_name("six")["licenseDeclared"], "MIT");
    assert_eq!(by_name("modern")["licenseDeclared"], "MIT OR Apache-2.0");
    let legacy = by_name("Legacy_Pkg");
    assert_eq!(legacy["licenseDeclared"], "NOASSERTION");
    assert!(legacy["comment"].as_str().unwrap().contains("BSD"));
    assert_eq!(
        by_name("left-pad")["externalRefs"][0]["referenceLocator"],
        "pkg:npm/left-pad@1.3.0"
    );
    assert!(
        by_name("six")["sourceInfo"]
            .as_str()
            .unwrap()
            .contains("six-1.16.0.dist-info/METADATA")
    );

    let relationships = doc["relationships"].as_array().unwrap();
    assert_eq!(relationships.len(), 1 + packages.len() - 1);
    assert_eq!(relationships[0]["relationshipType"], "DESCRIBES");
    assert!(
        relationships[1..]
            .iter()
            .all(|r| r["relationshipType"] == "CONTAINS" && r["spdxElementId"] == image["SPDXID"])
    );
}

#[test]
fn cyclonedx_bom_shape() {
    let (catalog, [_, d1, _]) = three_layer_image();
    let bom = to_cyclonedx(&catalog, &subject(), created());
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(bom["version"], 1);
    assert!(
        bom["serialNumber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    assert_eq!(bom["metadata"]["timestamp"], "2024-05-01T12:00:00Z");
    assert_eq!(bom["metadata"]["tools"]["components"][0]["name"], "berth");
    let image = &bom["metadata"]["component"];
    assert_eq!(image["type"], "container");
    assert_eq!(image["version"], subject().digest.to_string());

    let components = bom["components"].as_array().unwrap();
    assert_eq!(components.len(), 1 + catalog.packages.len());
    assert_eq!(components[0]["type"], "operating-system");
    let mut refs = std::collections::HashSet::new();
    for c in components {
        assert!(refs.insert(c["bom-ref"].as_str().unwrap().to_owned()));
    }
    let by_name = |name: &str| components.iter().find(|c| c["name"] == name).unwrap();
    let libc = by_name("libc6");
    assert_eq!(libc["licenses"][0]["license"]["id"], "LGPL-2.1-or-later");
    assert_eq!(libc["properties"][0]["name"], "berth:layer");
    assert_eq!(libc["properties"][0]["value"], d1.as_str());
    assert_eq!(libc["properties"][1]["value"], "var/lib/dpkg/status");
    assert_eq!(
        by_name("modern")["licenses"][0]["expression"],
        "MIT OR Apache-2.0"
    );
    assert_eq!(
        by_name("Legacy_Pkg")["licenses"][0]["license"]["name"],
        "BSD"
    );
    assert_eq!(
        by_name("@types/node")["purl"],
        "pkg:npm/%40types/node@20.11.5"
    );
}

fn write_temp(dir: &Path, name: &str, doc: &Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    path
}

/// A catalogue with every ecosystem and awkward values, for the validators.
fn validator_catalog() -> Catalog {
    let (mut catalog, _) = three_layer_image();
    let extra = |ecosystem, name: &str, version: &str, purl: &str, license: Option<&str>| Package {
        ecosystem,
        name: name.to_owned(),
        version: version.to_owned(),
        purl: purl.to_owned(),
        license: license.map(str::to_owned),
        layer: "sha256:0000000000000000000000000000000000000000000000000000000000000000".to_owned(),
        location: "usr/bin/x y".to_owned(),
        arch: None,
        supplier: Some("Team (with parens) <t@example.org>".to_owned()),
    };
    catalog.packages.extend([
        extra(
            Ecosystem::Apk,
            "busybox",
            "1.36.1-r15",
            "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64",
            Some("GPL-2.0-only"),
        ),
        extra(
            Ecosystem::Go,
            "stdlib",
            "go1.22.1",
            "pkg:golang/stdlib@1.22.1",
            None,
        ),
        extra(
            Ecosystem::Go,
            "example.com/app",
            "(devel)",
            "pkg:golang/example.com/app",
            None,
        ),
        extra(
            Ecosystem::Cargo,
            "ring",
            "0.17.8",
            "pkg:cargo/ring@0.17.8",
            Some("LicenseRef-ring"),
        ),
        extra(
            Ecosystem::Npm,
            "x",
            "1.0.0",
            "pkg:npm/x@1.0.0",
            Some("GPL-2.0-or-later WITH Classpath-exception-2.0"),
        ),
        extra(
            Ecosystem::Python,
            "weird",
            "1",
            "pkg:pypi/weird@1",
            Some("Copyright \"me\" <all rights>"),
        ),
    ]);
    catalog
}

#[test]
fn spdx_validates_with_pyspdxtools() {
    if Command::new("pyspdxtools").arg("--help").output().is_err() {
        println!("note: pyspdxtools (PyPI spdx-tools) not on PATH; skipping SPDX validation");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let catalog = validator_catalog();
    for (name, catalog) in [
        ("full.spdx.json", catalog),
        (
            "empty.spdx.json",
            Catalog {
                distro: None,
                packages: vec![],
            },
        ),
    ] {
        let path = write_temp(dir.path(), name, &to_spdx(&catalog, &subject(), created()));
        let out = Command::new("pyspdxtools")
            .arg("-i")
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pyspdxtools rejected {name}:\n{text}");
        assert!(!text.contains("ValidationMessage"), "pyspdxtools: {text}");
    }
}

#[test]
fn cyclonedx_validates_with_cyclonedx_python_lib() {
    let probe = Command::new("python3")
        .args(["-c", "import cyclonedx.validation.json, jsonschema"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!(
            "note: python3 with cyclonedx-python-lib[json-validation] not available; skipping CycloneDX validation"
        );
        return;
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sbom/validate_cyclonedx.py");
    let dir = tempfile::tempdir().unwrap();
    for (name, catalog) in [
        ("full.cdx.json", validator_catalog()),
        (
            "empty.cdx.json",
            Catalog {
                distro: None,
                packages: vec![],
            },
        ),
    ] {
        let path = write_temp(
            dir.path(),
            name,
            &to_cyclonedx(&catalog, &subject(), created()),
        );
        let out = Command::new("python3")
            .arg(&script)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "CycloneDX 1.6 validation failed for {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
