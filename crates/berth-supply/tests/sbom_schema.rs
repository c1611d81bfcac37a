//! berth's SPDX 2.3 and CycloneDX 1.6 JSON output checked against the published JSON schemas.
//!
//! The schemas are vendored in `tests/fixtures/schemas/` (unchanged copies of the project's
//! pinned `shared/specs/spdx/` and `shared/specs/cyclonedx/`, see the README there) and
//! embedded with `include_str!`. As `berth-oci`'s `schema.rs` does for the image-spec
//! schemas, every file is registered with `boon` under the `$id` it declares and retrieval is
//! switched off, so the relative `$ref`s of `bom-1.6.schema.json` (`spdx.schema.json`,
//! `jsf-0.82.schema.json`) resolve to the vendored files and nothing is ever fetched. `format`
//! is asserted (`date-time`, `idn-email`, `iri-reference`, `uri`: all known to `boon`).
//!
//! The documents come from a realistic catalogue: a Debian image built in layers (dpkg with
//! licences from DEP-5 copyright files, pip, npm with scoped packages, a Cargo.lock, a
//! whiteout) and an Alpine one (apk), catalogued from in-memory tar layers as
//! `tests/sbom.rs` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;

use berth_oci::{Algorithm, Digest};
use berth_supply::sbom::{
    Catalog, Cataloguer, Ecosystem, LayerInput, SubjectInfo, to_cyclonedx, to_spdx,
};
use boon::{Compiler, Draft, ErrorKind, SchemaIndex, Schemas, UrlLoader, ValidationError};
use serde_json::{Value, json};

// --- the vendored schemas -------------------------------------------------------

/// The vendored files: name in `tests/fixtures/schemas/`, pinned copy relative to
/// `shared/specs/`, contents (`None` for the licences, which are not schemas).
const VENDORED: [(&str, &str, Option<&str>); 6] = [
    (
        "spdx-2.3-schema.json",
        "spdx/spdx-2.3-schema.json",
        Some(include_str!("fixtures/schemas/spdx-2.3-schema.json")),
    ),
    ("LICENSE-spdx", "spdx/LICENSE", None),
    (
        "bom-1.6.schema.json",
        "cyclonedx/bom-1.6.schema.json",
        Some(include_str!("fixtures/schemas/bom-1.6.schema.json")),
    ),
    (
        "spdx.schema.json",
        "cyclonedx/spdx.schema.json",
        Some(include_str!("fixtures/schemas/spdx.schema.json")),
    ),
    (
        "jsf-0.82.schema.json",
        "cyclonedx/jsf-0.82.schema.json",
        Some(include_str!("fixtures/schemas/jsf-0.82.schema.json")),
    ),
    ("LICENSE-cyclonedx", "cyclonedx/LICENSE", None),
];

/// The `$id` the SPDX 2.3 schema declares.
const SPDX_ID: &str = "http://spdx.org/rdf/terms/2.3";
/// The `$id` the CycloneDX 1.6 schema declares.
const CYCLONEDX_ID: &str = "http://cyclonedx.org/schema/bom-1.6.schema.json";

/// The `format`s `boon` 0.6 implements (its `formats.rs`); any other is silently not asserted.
const BOON_FORMATS: [&str; 20] = [
    "regex",
    "ipv4",
    "ipv6",
    "hostname",
    "idn-hostname",
    "email",
    "idn-email",
    "date",
    "time",
    "date-time",
    "duration",
    "period",
    "json-pointer",
    "relative-json-pointer",
    "uuid",
    "uri",
    "iri",
    "uri-reference",
    "iri-reference",
    "uri-template",
];

/// Longest violation message kept: an `enum` failure against `spdx.schema.json` quotes
/// several hundred licence ids.
const MAX_MESSAGE_CHARS: usize = 300;

/// Which document a value is checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Spdx,
    CycloneDx,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Spdx => "SPDX 2.3",
            Kind::CycloneDx => "CycloneDX 1.6",
        })
    }
}

/// Refuses every URL: all references must resolve to a registered vendored file.
struct NoRetrieval;

impl UrlLoader for NoRetrieval {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is not a vendored SBOM schema; nothing is fetched").into())
    }
}

struct Compiled {
    schemas: Schemas,
    spdx: SchemaIndex,
    cyclonedx: SchemaIndex,
    /// The `$id` each vendored schema declares, by file name.
    ids: Vec<(&'static str, String)>,
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    let mut compiler = Compiler::new();
    // All four schemas declare draft-07 in `$schema`; the default only matters if one did not.
    compiler.set_default_draft(Draft::V7);
    compiler.enable_format_assertions();
    compiler.use_loader(Box::new(NoRetrieval));
    let mut ids = Vec::new();
    for (name, _, text) in VENDORED {
        let Some(text) = text else { continue };
        let value: Value = serde_json::from_str(text).unwrap();
        let id = value["$id"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} declares no $id"))
            .to_owned();
        compiler
            .add_resource(&id, value)
            .unwrap_or_else(|e| panic!("{name} under {id}: {e:#}"));
        ids.push((name, id));
    }
    let mut schemas = Schemas::new();
    let spdx = compiler
        .compile(SPDX_ID, &mut schemas)
        .unwrap_or_else(|e| panic!("{SPDX_ID}: {e:#}"));
    let cyclonedx = compiler
        .compile(CYCLONEDX_ID, &mut schemas)
        .unwrap_or_else(|e| panic!("{CYCLONEDX_ID}: {e:#}"));
    Compiled {
        schemas,
        spdx,
        cyclonedx,
        ids,
    }
});

/// One place where a document breaks its schema.
#[derive(Debug)]
struct Violation {
    /// JSON pointer to the offending value, `""` for the document itself.
    instance: String,
    /// The schema keyword that failed, after following `$ref`s.
    keyword: String,
    /// The validator's message, shortened.
    message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.instance.is_empty() {
            "(root)"
        } else {
            &self.instance
        };
        write!(f, "{at}: {} [{}]", self.message, self.keyword)
    }
}

/// Every violation of `doc` against the schema for `kind`, in the validator's order.
fn violations(kind: Kind, doc: &Value) -> Vec<Violation> {
    let compiled = &*COMPILED;
    let root = match kind {
        Kind::Spdx => compiled.spdx,
        Kind::CycloneDx => compiled.cyclonedx,
    };
    let mut out = Vec::new();
    if let Err(error) = compiled.schemas.validate(doc, root) {
        collect(&error, "", &mut out);
        if out.is_empty() {
            out.push(violation(&error, ""));
        }
    }
    out
}

/// Flattens the validator's error tree: every leaf is a violation; a leaf below a failed
/// `oneOf`/`anyOf` is prefixed with it, as it is one alternative's reason.
fn collect(error: &ValidationError<'_, '_>, context: &str, out: &mut Vec<Violation>) {
    if error.causes.is_empty() {
        out.push(violation(error, context));
        return;
    }
    let context = if matches!(error.kind, ErrorKind::OneOf(None) | ErrorKind::AnyOf) {
        format!("{context}{} at {}: ", error.kind, pointer(error))
    } else {
        context.to_owned()
    };
    for cause in &error.causes {
        collect(cause, &context, out);
    }
}

fn pointer(error: &ValidationError<'_, '_>) -> String {
    error.instance_location.to_string()
}

fn violation(error: &ValidationError<'_, '_>, context: &str) -> Violation {
    let keyword = match error.kind.keyword_path() {
        Some(keyword) => format!("{}/{keyword}", error.schema_url),
        None => error.schema_url.to_owned(),
    };
    let message = format!("{context}{}", error.kind);
    let message = match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    };
    Violation {
        instance: pointer(error),
        keyword,
        message,
    }
}

/// Panics listing every violation (with its instance location) unless `doc` is valid.
fn assert_valid(kind: Kind, label: &str, doc: &Value) {
    let found = violations(kind, doc);
    assert!(
        found.is_empty(),
        "{label}: {} violation(s) of the {kind} JSON schema:\n  {}",
        found.len(),
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// `doc` with the JSON pointer `pointer` set to `new`, or removed when `new` is `None`.
fn with(mut doc: Value, pointer: &str, new: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent} not in the document"));
    match (target, new) {
        (Value::Object(map), Some(new)) => {
            map.insert(key.to_owned(), new);
        }
        (Value::Object(map), None) => {
            map.remove(key)
                .unwrap_or_else(|| panic!("{pointer} not in the document"));
        }
        (Value::Array(items), Some(new)) => items[key.parse::<usize>().unwrap()] = new,
        (other, _) => panic!("{pointer}: cannot edit {other}"),
    }
    doc
}

/// Asserts that `doc` breaks the schema with a violation at `instance` whose message
/// contains `needle`.
fn assert_rejected(kind: Kind, label: &str, doc: &Value, instance: &str, needle: &str) {
    let found = violations(kind, doc);
    assert!(
        found
            .iter()
            .any(|v| v.instance == instance && v.message.contains(needle)),
        "{label}: expected a {kind} violation at {instance:?} mentioning {needle:?}, got:\n  {}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

// --- synthetic layers -------------------------------------------------------------

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

enum E<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
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
            E::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
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

fn feed(c: &mut Cataloguer, media_type: &str, blob: &[u8]) {
    c.add_layer(LayerInput {
        digest: Digest::sha256_of(blob),
        media_type: media_type.to_owned(),
        reader: blob,
    })
    .unwrap();
}

const OS_RELEASE_DEBIAN: &str = "\
PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"
NAME=\"Debian GNU/Linux\"
VERSION_ID=\"12\"
VERSION=\"12 (bookworm)\"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL=\"https://www.debian.org/\"
";

/// The base image's dpkg status: an installed set with one package removed but for its
/// configuration files (never catalogued).
const DPKG_STATUS_BASE: &str = "\
Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4+deb12u6
Maintainer: Santiago Vila <sanvila@debian.org>
Description: Debian base system miscellaneous files

Package: gcc-12-base
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: gcc-12
Version: 12.2.0-14
Maintainer: Debian GCC Maintainers <debian-gcc@lists.debian.org>

Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u7
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: GNU C Library: Shared libraries

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14
Maintainer: Debian GCC Maintainers <debian-gcc@lists.debian.org>

Package: libssl3
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.13-1~deb12u1
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>

Package: login
Essential: yes
Status: install ok installed
Architecture: amd64
Source: shadow
Version: 1:4.13+dfsg1-1+b1
Maintainer: Shadow package maintainers <pkg-shadow-devel@lists.alioth.debian.org>

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>

Package: zlib1g
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Maintainer: Mark Brown <broonie@debian.org>

Package: exim4-config
Status: deinstall ok config-files
Architecture: all
Version: 4.96-15+deb12u5
";

/// What `apt-get install python3.11-minimal ca-certificates` adds to the status file.
const DPKG_STATUS_PYTHON: &str = "
Package: ca-certificates
Status: install ok installed
Architecture: all
Version: 20230311
Maintainer: Julien Cristau <jcristau@debian.org>

Package: python3.11-minimal
Status: install ok installed
Architecture: amd64
Source: python3.11
Version: 3.11.2-6+deb12u2
Maintainer: Matthias Klose <doko@debian.org>
";

/// `usr/share/doc/libc6/copyright`, machine-readable (DEP-5): several `Files` paragraphs,
/// one licence repeated, and stand-alone `License` paragraphs with the texts.
const LIBC6_COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: GNU C Library
Source: https://www.gnu.org/software/libc/

Files: *
Copyright: 1991-2023 Free Software Foundation, Inc.
License: LGPL-2.1+

Files: manual/*
Copyright: 1993-2023 Free Software Foundation, Inc.
License: GFDL-1.3

Files: debian/*
Copyright: 1998-2004 Joel Klecker, Ben Collins
           2004-2023 GOTO Masanori, Aurelien Jarno
License: LGPL-2.1+

License: LGPL-2.1+
 This library is free software; you can redistribute it and/or
 modify it under the terms of the GNU Lesser General Public
 License as published by the Free Software Foundation; either
 version 2.1 of the License, or (at your option) any later version.

License: GFDL-1.3
 Permission is granted to copy, distribute and/or modify this document
 under the terms of the GNU Free Documentation License, Version 1.3.
";

fn dep5(upstream: &str, licence: &str) -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {upstream}\n\n\
         Files: *\nCopyright: the {upstream} authors\nLicense: {licence}\n\n\
         License: {licence}\n The licence text.\n"
    )
}

fn metadata(name: &str, version: &str, licence_lines: &str) -> Vec<u8> {
    format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{licence_lines}\n\
         Requires-Python: >=3.8\n\nThe long description.\n"
    )
    .into_bytes()
}

fn package_json(name: &str, version: &str, licence: &str) -> Vec<u8> {
    format!(r#"{{"name":"{name}","version":"{version}",{licence},"main":"index.js"}}"#).into_bytes()
}

const CARGO_LOCK: &str = r#"# This file is automatically @generated by Cargo.
# It is not intended for manual editing.
version = 4

[[package]]
name = "anyhow"
version = "1.0.86"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "b3d1d046238990b9cf5bcde22a3fb3584ee5cf65fb2765f454ed428c7a0063da"

[[package]]
name = "ring"
version = "0.17.8"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "c17fa4cb658e3583423e915b9f3acc01cceaee1860e33d59ebae66adc3a2dc0d"

[[package]]
name = "tool"
version = "0.4.1"
dependencies = [
 "anyhow",
 "ring",
 "tool-macros",
]

[[package]]
name = "tool-macros"
version = "0.4.1"
source = "git+https://github.com/example/tool-macros?rev=9f1c2ab#9f1c2ab0c3d4e5f60718293a4b5c6d7e8f901234"
"#;

/// A Debian image built in four layers: the base (gzip), `apt-get install` plus `pip install`
/// (tar), `npm ci` (zstd), and a Rust tool's sources with a whiteout of a pip leftover (tar).
fn debian_image() -> Catalog {
    let site = "usr/local/lib/python3.11/site-packages";
    let l0 = tar(&[
        E::File("etc/os-release", OS_RELEASE_DEBIAN.as_bytes()),
        E::File("var/lib/dpkg/status", DPKG_STATUS_BASE.as_bytes()),
        E::File("usr/share/doc/libc6/copyright", LIBC6_COPYRIGHT.as_bytes()),
        E::File(
            "usr/share/doc/libssl3/copyright",
            dep5("OpenSSL", "Apache-2.0").as_bytes(),
        ),
        E::File(
            "usr/share/doc/zlib1g/copyright",
            dep5("zlib", "Zlib").as_bytes(),
        ),
        E::File(
            "usr/share/doc/tzdata/copyright",
            dep5("tzdata", "public-domain").as_bytes(),
        ),
        E::File(
            "usr/share/doc/login/copyright",
            dep5("shadow", "BSD-3-clause").as_bytes(),
        ),
        E::File(
            "usr/share/doc/gcc-12-base/copyright",
            dep5("gcc", "GPL-3+ with GCC-exception").as_bytes(),
        ),
        // Debian links the doc directory to the one of the package it comes with.
        E::Symlink("usr/share/doc/libgcc-s1", "gcc-12-base"),
        // Not machine-readable: no licence.
        E::File(
            "usr/share/doc/base-files/copyright",
            b"This is the Debian prepackaged version of the Debian Base System\nMiscellaneous files.\n",
        ),
    ]);
    let status = format!("{DPKG_STATUS_BASE}{DPKG_STATUS_PYTHON}");
    let l1 = tar(&[
        E::File("var/lib/dpkg/status", status.as_bytes()),
        E::File(
            "usr/share/doc/ca-certificates/copyright",
            dep5("ca-certificates", "GPL-2+ and MPL-2.0").as_bytes(),
        ),
        E::File(
            &format!("{site}/requests-2.32.3.dist-info/METADATA"),
            &metadata("requests", "2.32.3", "License: Apache-2.0"),
        ),
        E::File(
            &format!("{site}/urllib3-2.2.2.dist-info/METADATA"),
            &metadata(
                "urllib3",
                "2.2.2",
                "Classifier: License :: OSI Approved :: MIT License",
            ),
        ),
        E::File(
            &format!("{site}/certifi-2024.7.4.dist-info/METADATA"),
            &metadata("certifi", "2024.7.4", "License: MPL-2.0"),
        ),
        E::File(
            &format!("{site}/idna-3.7.dist-info/METADATA"),
            &metadata(
                "idna",
                "3.7",
                "Classifier: License :: OSI Approved :: BSD License",
            ),
        ),
        E::File(
            &format!("{site}/charset_normalizer-3.3.2.dist-info/METADATA"),
            &metadata("charset-normalizer", "3.3.2", "License: MIT"),
        ),
        E::File(
            &format!("{site}/typing_extensions-4.12.2.dist-info/METADATA"),
            &metadata("typing_extensions", "4.12.2", "License-Expression: PSF-2.0"),
        ),
        E::File(
            &format!("{site}/Jinja2-3.1.4.egg-info/PKG-INFO"),
            &metadata("Jinja2", "3.1.4", "License: BSD-3-Clause"),
        ),
        E::File(
            &format!("{site}/pip-24.0.dist-info/METADATA"),
            &metadata("pip", "24.0", "License: MIT"),
        ),
    ]);
    let modules = "srv/app/node_modules";
    let l2 = tar(&[
        E::File(
            &format!("{modules}/express/package.json"),
            &package_json("express", "4.19.2", r#""license":"MIT""#),
        ),
        E::File(
            &format!("{modules}/express/node_modules/debug/package.json"),
            &package_json("debug", "2.6.9", r#""license":"MIT""#),
        ),
        E::File(
            &format!("{modules}/@babel/core/package.json"),
            &package_json("@babel/core", "7.24.7", r#""license":"MIT""#),
        ),
        E::File(
            &format!("{modules}/@types/node/package.json"),
            &package_json("@types/node", "20.14.9", r#""license":{"type":"MIT"}"#),
        ),
        E::File(
            &format!("{modules}/tslib/package.json"),
            &package_json("tslib", "2.6.3", r#""license":"0BSD""#),
        ),
        E::File(
            &format!("{modules}/type-fest/package.json"),
            &package_json("type-fest", "0.21.3", r#""license":"(MIT OR CC0-1.0)""#),
        ),
        E::File(
            &format!("{modules}/json-schema/package.json"),
            &package_json(
                "json-schema",
                "0.2.3",
                r#""licenses":[{"type":"AFL-2.1"},{"type":"BSD"}]"#,
            ),
        ),
        E::File(
            &format!("{modules}/@acme/internal-ui/package.json"),
            &package_json(
                "@acme/internal-ui",
                "3.0.0-beta.2",
                r#""license":"SEE LICENSE IN LICENSE.md""#,
            ),
        ),
    ]);
    let l3 = tar(&[
        E::File("usr/src/tool/Cargo.lock", CARGO_LOCK.as_bytes()),
        E::File(&format!("{site}/.wh.pip-24.0.dist-info"), b""),
    ]);
    let mut c = Cataloguer::new();
    feed(&mut c, GZIP, &gzip(&l0));
    feed(&mut c, TAR, &l1);
    feed(&mut c, ZSTD, &zstd::encode_all(&l2[..], 3).unwrap());
    feed(&mut c, TAR, &l3);
    c.finish()
}

const APK_INSTALLED: &str = "\
C:Q1sSNCl4MTQ0d1V/0NTXAhIjY7Nqo=
P:musl
V:1.2.5-r0
A:x86_64
S:410635
I:651264
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1712156787

C:Q1L/kVrBnKGOuA5bI/bsfcgWRiMRA=
P:busybox
V:1.36.1-r29
A:x86_64
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>

C:Q1abcdefabcdefabcdefabcdefabcdefabc=
P:ca-certificates-bundle
V:20240705-r0
A:x86_64
L:MPL-2.0 AND MIT
o:ca-certificates
m:Natanael Copa <ncopa@alpinelinux.org>

C:Q1bcdefabcdefabcdefabcdefabcdefabcd=
P:libcrypto3
V:3.3.1-r3
A:x86_64
L:Apache-2.0
o:openssl
m:Ariadne Conill <ariadne@dereferenced.org>

C:Q1cdefabcdefabcdefabcdefabcdefabcde=
P:zlib
V:1.3.1-r1
A:x86_64
L:Zlib
o:zlib
m:Natanael Copa <ncopa@alpinelinux.org>

C:Q1defabcdefabcdefabcdefabcdefabcdef=
P:scanelf
V:1.3.7-r2
A:x86_64
L:GPL-2.0-only
o:pax-utils
m:Natanael Copa <ncopa@alpinelinux.org>

C:Q1efabcdefabcdefabcdefabcdefabcdefa=
P:libgcc
V:13.2.1_git20240309-r0
A:x86_64
L:GPL-2.0-or-later AND LGPL-2.1-or-later
o:gcc
m:Ariadne Conill <ariadne@dereferenced.org>

C:Q1fabcdefabcdefabcdefabcdefabcdefab=
P:alpine-keys
V:2.4-r1
A:x86_64
L:custom
o:alpine-keys
m:Natanael Copa <ncopa@alpinelinux.org>
";

/// An Alpine image: apk's database and `usr/lib/os-release` (linked from `etc/`).
fn alpine_image() -> Catalog {
    let l0 = tar(&[
        E::File(
            "usr/lib/os-release",
            b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.2\nPRETTY_NAME=\"Alpine Linux v3.20\"\n",
        ),
        E::Symlink("etc/os-release", "../usr/lib/os-release"),
        E::File("lib/apk/db/installed", APK_INSTALLED.as_bytes()),
    ]);
    let mut c = Cataloguer::new();
    feed(&mut c, GZIP, &gzip(&l0));
    c.finish()
}

fn subject() -> SubjectInfo {
    SubjectInfo {
        name: "registry.example/team/app:1.0".to_owned(),
        digest: Digest::sha256_of(b"manifest"),
    }
}

fn created() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_714_564_800).unwrap()
}

/// Every catalogue and subject the positive tests write out: the two images, an image
/// named by a SHA-512 digest only, and an image with no packages and no distribution.
fn documents() -> Vec<(&'static str, Catalog, SubjectInfo)> {
    let debian = debian_image();
    // The fixture must keep exercising what the writers do with each kind of package.
    let eco = |e: Ecosystem| debian.packages.iter().filter(|p| p.ecosystem == e).count();
    assert!(eco(Ecosystem::Deb) >= 10, "{debian:#?}");
    assert!(eco(Ecosystem::Python) >= 7, "{debian:#?}");
    assert!(eco(Ecosystem::Npm) >= 8, "{debian:#?}");
    assert!(eco(Ecosystem::Cargo) >= 4, "{debian:#?}");
    assert!(
        debian.packages.iter().all(|p| p.name != "pip"),
        "whited out"
    );
    let licence = |name: &str| {
        debian
            .packages
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.license.clone())
    };
    assert_eq!(
        licence("libc6").as_deref(),
        Some("LGPL-2.1+ AND GFDL-1.3"),
        "from the DEP-5 copyright"
    );
    assert_eq!(
        licence("libgcc-s1").as_deref(),
        Some("GPL-3+ with GCC-exception"),
        "through the doc directory link"
    );
    assert_eq!(licence("base-files"), None);
    let alpine = alpine_image();
    assert_eq!(alpine.distro.as_ref().unwrap().id, "alpine");
    assert_eq!(alpine.packages.len(), 8);
    let sha512 = SubjectInfo {
        name: String::new(),
        digest: Digest::of(Algorithm::Sha512, b"manifest"),
    };
    vec![
        ("debian image", debian, subject()),
        ("alpine image", alpine.clone(), subject()),
        ("image named by a sha512 digest", alpine, sha512),
        (
            "empty image",
            Catalog {
                distro: None,
                packages: vec![],
            },
            subject(),
        ),
    ]
}

// --- the tests ----------------------------------------------------------------------

/// Every vendored schema is registered under the `$id` it declares and compiles with
/// retrieval switched off; every `format` the schemas use is one `boon` asserts.
///
/// CycloneDX 1.6 `bom-1.6.schema.json`: `"$id":
/// "http://cyclonedx.org/schema/bom-1.6.schema.json"`, with `"$ref": "spdx.schema.json"`
/// (`license.id`) and `"$ref": "jsf-0.82.schema.json#/definitions/signature"` resolved
/// against it.
#[test]
fn vendored_schemas_compile_offline_under_their_ids() {
    let compiled = &*COMPILED;
    let ids: Vec<(&str, &str)> = compiled
        .ids
        .iter()
        .map(|(name, id)| (*name, id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("spdx-2.3-schema.json", SPDX_ID),
            ("bom-1.6.schema.json", CYCLONEDX_ID),
            (
                "spdx.schema.json",
                "http://cyclonedx.org/schema/spdx.schema.json"
            ),
            (
                "jsf-0.82.schema.json",
                "http://cyclonedx.org/schema/jsf-0.82.schema.json"
            ),
        ]
    );

    fn formats(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(format)) = map.get("format")
                    && !out.contains(format)
                {
                    out.push(format.clone());
                }
                map.values().for_each(|v| formats(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| formats(v, out)),
            _ => {}
        }
    }
    let mut used = Vec::new();
    for (_, _, text) in VENDORED {
        if let Some(text) = text {
            formats(&serde_json::from_str(text).unwrap(), &mut used);
        }
    }
    used.sort();
    assert_eq!(used, ["date-time", "idn-email", "iri-reference", "uri"]);
    for format in &used {
        assert!(BOON_FORMATS.contains(&format.as_str()), "{format}");
    }
}

/// berth's SPDX documents conform to the SPDX 2.3 JSON schema.
///
/// SPDX 2.3, clause 6.1 (SPDX version field): "Provide a reference number that can be used
/// to understand how to parse and interpret the rest of the file. […] Format: SPDX-M.N";
/// clause 7 (Package information) and clause 11 (Relationships between SPDX elements): every
/// package and relationship written must be one the schema's `packages` and `relationships`
/// items accept (`"additionalProperties": false`, the enumerations of
/// `primaryPackagePurpose`, `checksums[].algorithm`, `externalRefs[].referenceCategory` and
/// `relationshipType`).
#[test]
fn spdx_documents_match_the_spdx_2_3_schema() {
    for (label, catalog, subject) in documents() {
        let doc = to_spdx(&catalog, &subject, created());
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_valid(Kind::Spdx, label, &doc);
        // As written to disk and read back.
        let reread: Value =
            serde_json::from_slice(&serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        assert_valid(Kind::Spdx, label, &reread);
    }
}

/// berth's CycloneDX BOMs conform to the CycloneDX 1.6 JSON schema.
///
/// CycloneDX 1.6 (`bom-1.6.schema.json`), `bomFormat`: "This value must be \"CycloneDX\"";
/// `licenseChoice`: "EITHER (list of SPDX licenses and/or named licenses) OR (tuple of one
/// SPDX License Expression)"; `license.id`: "A valid SPDX license identifier. If specified,
/// this value must be one of the enumeration of valid SPDX license identifiers defined in the
/// spdx.schema.json (or spdx.xml) subschema"; `metadata.timestamp`: "The date and time
/// (timestamp) when the BOM was created" (`"format": "date-time"`).
#[test]
fn cyclonedx_boms_match_the_cyclonedx_1_6_schema() {
    for (label, catalog, subject) in documents() {
        let bom = to_cyclonedx(&catalog, &subject, created());
        assert_eq!(bom["specVersion"], "1.6");
        assert_valid(Kind::CycloneDx, label, &bom);
        let reread: Value =
            serde_json::from_slice(&serde_json::to_vec_pretty(&bom).unwrap()).unwrap();
        assert_valid(Kind::CycloneDx, label, &reread);
    }
    // Every licence shape of `licenseChoice` was exercised by the Debian image.
    let bom = to_cyclonedx(&debian_image(), &subject(), created());
    let licences: Vec<&Value> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["licenses"].get(0))
        .collect();
    assert!(licences.iter().any(|l| l["license"]["id"].is_string()));
    assert!(licences.iter().any(|l| l["license"]["name"].is_string()));
    assert!(licences.iter().any(|l| l["expression"].is_string()));
}

/// The SPDX validation can fail: each mutation of a valid document is reported at the
/// offending value.
///
/// SPDX 2.3, clause 6.1 (SPDX version field): "Required: Yes, Cardinality: 1..1". Clause
/// 7.24 (Primary package purpose field): "This field provides information about the primary
/// purpose of the identified package. Package Purpose is intrinsic to how the package is
/// being used rather than the content of the package"; the text lists the values as
/// `APPLICATION | FRAMEWORK | LIBRARY | CONTAINER | OPERATING-SYSTEM | …`, but the 2.3 JSON
/// schema enumerates `OPERATING_SYSTEM`, so the hyphenated spelling is rejected (SPDX 2.3.1
/// later aligned the schema with the text). Clause 7.10 (Package checksum field): the
/// algorithms are `SHA1`, `SHA224`, `SHA256`, … (no hyphen).
#[test]
fn spdx_schema_rejects_broken_documents() {
    let valid = to_spdx(&debian_image(), &subject(), created());
    assert_valid(Kind::Spdx, "unmutated", &valid);
    assert_eq!(
        valid["packages"][1]["SPDXID"],
        "SPDXRef-OperatingSystem-debian"
    );
    assert_eq!(
        valid["packages"][1]["primaryPackagePurpose"],
        "OPERATING_SYSTEM"
    );
    let cases = [
        (
            "no spdxVersion",
            with(valid.clone(), "/spdxVersion", None),
            "",
            "missing properties 'spdxVersion'",
        ),
        (
            "no creationInfo",
            with(valid.clone(), "/creationInfo", None),
            "",
            "missing properties 'creationInfo'",
        ),
        (
            "unknown top-level property",
            with(valid.clone(), "/spdx_version", Some(json!("SPDX-2.3"))),
            "",
            "additionalProperties 'spdx_version' not allowed",
        ),
        (
            "hyphenated OPERATING-SYSTEM purpose",
            with(
                valid.clone(),
                "/packages/1/primaryPackagePurpose",
                Some(json!("OPERATING-SYSTEM")),
            ),
            "/packages/1/primaryPackagePurpose",
            "OPERATING_SYSTEM",
        ),
        (
            "checksum algorithm spelt SHA-256",
            with(
                valid.clone(),
                "/packages/0/checksums/0/algorithm",
                Some(json!("SHA-256")),
            ),
            "/packages/0/checksums/0/algorithm",
            "SHA256",
        ),
        (
            "package without downloadLocation",
            with(valid.clone(), "/packages/2/downloadLocation", None),
            "/packages/2",
            "missing properties 'downloadLocation'",
        ),
        (
            "unknown relationship type",
            with(
                valid.clone(),
                "/relationships/1/relationshipType",
                Some(json!("INCLUDES")),
            ),
            "/relationships/1/relationshipType",
            "CONTAINS",
        ),
        (
            "filesAnalyzed as a string",
            with(
                valid.clone(),
                "/packages/2/filesAnalyzed",
                Some(json!("false")),
            ),
            "/packages/2/filesAnalyzed",
            "want boolean, but got string",
        ),
    ];
    for (label, doc, instance, needle) in &cases {
        assert_rejected(Kind::Spdx, label, doc, instance, needle);
    }
}

/// The CycloneDX validation can fail: each mutation of a valid BOM is reported at the
/// offending value.
///
/// CycloneDX 1.6 (`bom-1.6.schema.json`): `bomFormat` "must be \"CycloneDX\"" (`enum`);
/// `license.id` "must be one of the enumeration of valid SPDX license identifiers defined in
/// the spdx.schema.json" (checked through the relative `$ref`, so this also proves
/// `spdx.schema.json` is the vendored one); `metadata.timestamp` has `"format":
/// "date-time"` (proving format assertions are on); `serialNumber` "must conform to
/// RFC 4122" (`pattern`); `hash-content` is a `pattern` of hex lengths; `component.type` is an
/// `enum`.
#[test]
fn cyclonedx_schema_rejects_broken_documents() {
    let valid = to_cyclonedx(&debian_image(), &subject(), created());
    assert_valid(Kind::CycloneDx, "unmutated", &valid);
    let components = valid["components"].as_array().unwrap();
    let with_id = components
        .iter()
        .position(|c| c["licenses"][0]["license"]["id"].is_string())
        .unwrap();
    let id_pointer = format!("/components/{with_id}/licenses/0/license/id");
    let cases = [
        (
            "bomFormat SPDX",
            with(valid.clone(), "/bomFormat", Some(json!("SPDX"))),
            "/bomFormat".to_owned(),
            "value must be 'CycloneDX'",
        ),
        (
            "no bomFormat",
            with(valid.clone(), "/bomFormat", None),
            String::new(),
            "missing properties 'bomFormat'",
        ),
        (
            "licence id not on the SPDX list",
            with(
                valid.clone(),
                &id_pointer,
                Some(json!("Not-A-Real-Licence")),
            ),
            id_pointer.clone(),
            "value must be one of",
        ),
        (
            "timestamp not a date-time",
            with(
                valid.clone(),
                "/metadata/timestamp",
                Some(json!("yesterday")),
            ),
            "/metadata/timestamp".to_owned(),
            "date-time",
        ),
        (
            "serial number not a UUID URN",
            with(valid.clone(), "/serialNumber", Some(json!("urn:uuid:xyz"))),
            "/serialNumber".to_owned(),
            "does not match pattern",
        ),
        (
            "image hash not hex",
            with(
                valid.clone(),
                "/metadata/component/hashes/0/content",
                Some(json!("not-hex")),
            ),
            "/metadata/component/hashes/0/content".to_owned(),
            "does not match pattern",
        ),
        (
            "unknown component type",
            with(valid.clone(), "/components/1/type", Some(json!("lib"))),
            "/components/1/type".to_owned(),
            "value must be one of",
        ),
        (
            "unknown component property",
            with(valid.clone(), "/components/1/licence", Some(json!("MIT"))),
            "/components/1".to_owned(),
            "additionalProperties 'licence' not allowed",
        ),
    ];
    for (label, doc, instance, needle) in &cases {
        assert_rejected(Kind::CycloneDx, label, doc, instance, needle);
    }
}

/// The vendored files must stay byte-identical to the project's pinned copies,
/// `shared/specs/spdx/` and `shared/specs/cyclonedx/` beside the repository (outside it, so
/// possibly absent: then this prints a note and passes).
#[test]
fn vendored_schemas_match_the_pinned_copies() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vendored_dir = crate_dir.join("tests/fixtures/schemas");

    // Nothing unlisted in the fixture folder (the README aside).
    let mut on_disk: Vec<String> = std::fs::read_dir(&vendored_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "README.md")
        .collect();
    on_disk.sort();
    let mut listed: Vec<&str> = VENDORED.iter().map(|(name, _, _)| *name).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every vendored file is listed in VENDORED");

    let pinned = crate_dir.join("../../../shared/specs");
    if !pinned.is_dir() {
        println!(
            "note: {} does not exist; skipping the comparison with the pinned SPDX and CycloneDX schemas",
            pinned.display()
        );
        return;
    }
    for (name, pinned_path, embedded) in VENDORED {
        let expected = std::fs::read(pinned.join(pinned_path))
            .unwrap_or_else(|e| panic!("{}: {e}", pinned.join(pinned_path).display()));
        assert!(
            std::fs::read(vendored_dir.join(name)).unwrap() == expected,
            "tests/fixtures/schemas/{name} differs from shared/specs/{pinned_path}"
        );
        if let Some(embedded) = embedded {
            assert!(
                embedded.as_bytes() == expected.as_slice(),
                "embedded {name} differs"
            );
        }
    }
}
