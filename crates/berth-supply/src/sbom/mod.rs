//! SBOMs: cataloguing an image's packages from its layers (whiteouts applied,
//! nothing unpacked to disk) and writing SPDX 2.3 or CycloneDX 1.6 JSON.
//!
//! A [`Cataloguer`] is fed the layers in manifest order as streams
//! ([`Cataloguer::add_layer`]) or a plain directory tree
//! ([`Cataloguer::add_directory`]). It keeps, for the few files it understands
//! (package databases, language metadata, binaries with embedded build info),
//! only what it parsed from them, keyed by path, so that a whiteout or a file in
//! an upper layer removes or replaces what a lower layer contributed.
//! [`Cataloguer::finish`] turns what survives into a [`Catalog`], which
//! [`to_spdx`] and [`to_cyclonedx`] write out.
//!
//! What is read, by ecosystem:
//! - deb: `var/lib/dpkg/status` (installed stanzas only), `var/lib/dpkg/status.d/*`
//!   (distroless), and the DEP-5 `usr/share/doc/<pkg>/copyright` for licences;
//! - apk: `lib/apk/db/installed`;
//! - Python: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`, `*.egg-info` files;
//! - npm: `node_modules/<name>/package.json` and `node_modules/@scope/<name>/package.json`;
//! - Cargo: every `Cargo.lock` (all `[[package]]` entries, workspace members
//!   included) and ELF binaries with a cargo-auditable `.dep-v0` section
//!   (runtime dependencies only: build dependencies are not in the binary);
//! - Go: ELF binaries with Go ≥ 1.18 build info (main module, dependencies with
//!   replacements applied, and the standard library as `stdlib`);
//! - the distribution from `etc/os-release` (else `usr/lib/os-release`).

mod apk;
mod cargo;
mod cyclonedx;
mod dpkg;
mod elf;
mod golang;
mod license;
mod npm;
mod os_release;
mod overlay;
mod paths;
mod purl;
mod python;
mod rfc822;
mod spdx;
mod walk;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use cyclonedx::to_cyclonedx;
pub use spdx::to_spdx;

use overlay::{Found, Overlay};

/// Why cataloguing failed.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// Reading a layer failed: truncated or corrupt compression, a broken tar.
    #[error("layer {layer}: {message}")]
    Layer {
        /// The layer's digest (or label, for a directory).
        layer: String,
        /// What went wrong.
        message: String,
    },
    /// The layer's media type is not one berth can decompress.
    #[error("layer {layer}: unsupported layer media type {media_type:?}")]
    UnsupportedMediaType {
        /// The layer's digest.
        layer: String,
        /// The media type found in the manifest.
        media_type: String,
    },
    /// A directory tree could not be walked.
    #[error("{}: {source}", path.display())]
    Directory {
        /// The path that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One layer blob to catalogue, streamed as stored (compressed or not).
pub struct LayerInput<R: std::io::Read> {
    /// The layer's digest: packages found in it are attributed to it.
    pub digest: berth_oci::Digest,
    /// The layer's media type from the manifest; it decides decompression.
    pub media_type: String,
    /// The blob's bytes, as stored in the registry.
    pub reader: R,
}

/// Catalogues packages across layers in order (index 0 = base), applying whiteouts.
#[derive(Debug, Default)]
pub struct Cataloguer {
    overlay: Overlay,
}

impl Cataloguer {
    /// An empty cataloguer, before the base layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next layer (in manifest order). The media type decides
    /// decompression: `…tar` (none), `…tar+gzip`, `…tar.gzip` (Docker's
    /// `rootfs.diff.tar.gzip`) (gzip), `…tar+zstd` (zstd); any other type is an
    /// error naming it. Gzip or zstd magic bytes win over a plain `tar` type.
    ///
    /// The stream is read to its end (so a caller hashing it sees every byte),
    /// never written to disk, and at most one metadata file (64 MiB) or one ELF
    /// binary (256 MiB) of it is held in memory at a time. On error the layer is
    /// not applied: the cataloguer is as it was before the call.
    pub fn add_layer<R: std::io::Read>(&mut self, layer: LayerInput<R>) -> Result<(), SbomError> {
        let label = layer.digest.to_string();
        let compression = walk::compression_for(&layer.media_type).ok_or_else(|| {
            SbomError::UnsupportedMediaType {
                layer: label.clone(),
                media_type: layer.media_type.clone(),
            }
        })?;
        self.overlay.begin_layer(&label);
        match walk::walk_tar(layer.reader, compression, &mut self.overlay) {
            Ok(()) => {
                self.overlay.commit_layer();
                Ok(())
            }
            Err(message) => {
                self.overlay.abort_layer();
                Err(SbomError::Layer {
                    layer: label,
                    message,
                })
            }
        }
    }

    /// Also usable on a plain directory tree (for tests and `berth sbom dir:PATH`):
    /// walks `root` as if it were one layer, attributing packages to
    /// `layer_label`. Symbolic links are not followed; unreadable entries below
    /// the root are skipped with a warning.
    pub fn add_directory(&mut self, root: &Path, layer_label: &str) -> Result<(), SbomError> {
        let meta = std::fs::metadata(root).map_err(|source| SbomError::Directory {
            path: root.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(SbomError::Directory {
                path: root.to_path_buf(),
                source: std::io::Error::other("not a directory"),
            });
        }
        self.overlay.begin_layer(layer_label);
        match walk::walk_directory(root, &mut self.overlay) {
            Ok(()) => {
                self.overlay.commit_layer();
                Ok(())
            }
            Err(message) => {
                self.overlay.abort_layer();
                Err(SbomError::Layer {
                    layer: layer_label.to_owned(),
                    message,
                })
            }
        }
    }

    /// The packages and distribution that survive all layers.
    pub fn finish(self) -> Catalog {
        let records = self.overlay.into_records();
        let distro = ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .find_map(|p| match records.get(*p).map(|r| &r.found) {
                Some(Found::Distro(d)) => Some(d.clone()),
                _ => None,
            });
        // Licences from DEP-5 copyright files, by package name; a package whose
        // doc directory is a link to another's (`libgcc-s1 -> gcc-12-base`) has
        // that one's.
        let mut deb_licences: HashMap<&str, &str> = HashMap::new();
        for (path, record) in &records {
            if let Found::DebLicence(licence) = &record.found
                && let Some(pkg) = paths::deb_copyright_package(path)
            {
                deb_licences.insert(pkg, licence);
            }
        }
        for (path, record) in &records {
            if let Found::Link(target) = &record.found
                && let Some(pkg) = paths::deb_doc_dir(path)
                && !deb_licences.contains_key(pkg)
                && let Some(Found::DebLicence(licence)) = records
                    .get(&format!("{target}/copyright"))
                    .map(|r| &r.found)
            {
                deb_licences.insert(pkg, licence);
            }
        }
        let mut packages = Vec::new();
        for (path, record) in &records {
            let Found::Packages(raws) = &record.found else {
                continue;
            };
            for raw in raws {
                let mut license = raw.license.clone();
                if license.is_none() && raw.ecosystem == Ecosystem::Deb {
                    license = deb_licences.get(raw.name.as_str()).map(|l| (*l).to_owned());
                }
                packages.push(Package {
                    ecosystem: raw.ecosystem,
                    purl: purl::for_package(raw, distro.as_ref()),
                    name: raw.name.clone(),
                    version: raw.version.clone(),
                    license,
                    layer: record.layer.clone(),
                    location: path.clone(),
                    arch: raw.arch.clone(),
                    supplier: raw.supplier.clone(),
                });
            }
        }
        packages.sort_by(|a, b| {
            (a.ecosystem, &a.name, &a.version, &a.location, &a.arch).cmp(&(
                b.ecosystem,
                &b.name,
                &b.version,
                &b.location,
                &b.arch,
            ))
        });
        Catalog { distro, packages }
    }
}

/// What an image contains: its distribution and its packages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Catalog {
    /// The distribution, from `etc/os-release` or `usr/lib/os-release`.
    pub distro: Option<Distro>,
    /// The packages, sorted by ecosystem, name, version (then location).
    pub packages: Vec<Package>,
}

/// A Linux distribution as `os-release` names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Distro {
    /// `ID`, e.g. `debian`, `alpine`.
    pub id: String,
    /// `VERSION_ID`, e.g. `12`, `3.20.1`.
    pub version_id: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

/// One catalogued package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    /// The package's ecosystem.
    pub ecosystem: Ecosystem,
    /// The package's name as its ecosystem writes it.
    pub name: String,
    /// The package's version as its ecosystem writes it (a Debian version keeps its epoch).
    pub version: String,
    /// The package URL.
    pub purl: String,
    /// The licence as declared by the metadata (not necessarily an SPDX expression).
    pub license: Option<String>,
    /// Digest (or directory label) of the layer the package's metadata came from.
    pub layer: String,
    /// Path of the metadata file or binary inside the image, no leading slash.
    pub location: String,
    /// Architecture, where the metadata names one.
    pub arch: Option<String>,
    /// Supplier as the metadata names it (a Debian or Alpine maintainer).
    pub supplier: Option<String>,
}

/// A package ecosystem, named as its purl type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    /// Debian packages (dpkg).
    Deb,
    /// Alpine packages (apk).
    Apk,
    /// Python distributions.
    Python,
    /// npm packages.
    Npm,
    /// Rust crates.
    Cargo,
    /// Go modules.
    Go,
}

impl Ecosystem {
    /// The purl type: `deb`, `apk`, `pypi`, `npm`, `cargo` or `golang`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Go => "golang",
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Ecosystem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The image an SBOM describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectInfo {
    /// How the image was named, e.g. `registry/repo:tag` or `oci:dir`.
    pub name: String,
    /// The image manifest's digest.
    pub digest: berth_oci::Digest,
}

/// A package as a cataloguer parsed it, before the distribution (for the purl),
/// layer and location are known.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawPackage {
    ecosystem: Ecosystem,
    name: String,
    version: String,
    license: Option<String>,
    arch: Option<String>,
    supplier: Option<String>,
    /// Source package (deb `Source:`, apk `o:`), for the purl's `upstream`.
    upstream: Option<String>,
}

impl RawPackage {
    fn new(ecosystem: Ecosystem, name: impl Into<String>, version: impl Into<String>) -> Self {
        RawPackage {
            ecosystem,
            name: name.into(),
            version: version.into(),
            license: None,
            arch: None,
            supplier: None,
            upstream: None,
        }
    }
}

/// The version written for a package whose version is unknown (a Go main
/// module built from a work tree).
const DEVEL_VERSION: &str = "(devel)";
