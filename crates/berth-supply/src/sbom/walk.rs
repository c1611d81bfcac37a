//! Reading a layer: choosing its decompression, streaming its tar entries (or a
//! directory tree's files) and handing each file of interest to its cataloguer,
//! with whiteouts and replacements passed to the [`Overlay`].

use std::io::{self, Cursor, Read};
use std::path::Path;

use super::overlay::{Found, Overlay};
use super::paths::{self, Kind};
use super::{apk, cargo, dpkg, elf, npm, os_release, python};

/// The most of one metadata file (a package database, a `METADATA`, a
/// `package.json`…) read into memory; a larger one is skipped with a warning.
pub(super) const METADATA_CAP: u64 = 64 << 20;

/// The largest ELF file read (wholly, into memory) to look for embedded build
/// information; a larger one is skipped with a warning.
pub(super) const ELF_CAP: u64 = 256 << 20;

/// The smallest file that can be an ELF binary worth parsing (a 64-byte header).
const ELF_MIN: u64 = 64;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip-compressed tar",
            Compression::Zstd => "zstd-compressed tar",
        }
    }
}

/// The compression a layer media type declares, `None` for a type that is not
/// a layer tar berth knows.
pub(super) fn compression_for(media_type: &str) -> Option<Compression> {
    let mt = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mt.ends_with("tar+gzip") || mt.ends_with(".tar.gzip") {
        Some(Compression::Gzip)
    } else if mt.ends_with("tar+zstd") {
        Some(Compression::Zstd)
    } else if mt.ends_with(".tar") || mt == "application/x-tar" {
        Some(Compression::None)
    } else {
        None
    }
}

/// The kind of a tar entry, as far as cataloguing cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A hard link to the given (raw) path.
    Hardlink(String),
    /// A symbolic link to the given (raw) target.
    Symlink(String),
    /// Anything else: symbolic link, device, FIFO.
    Other,
}

/// Streams a layer blob: the gzip or zstd magic, when present, wins over the
/// declared compression (a `…tar` layer that is in fact gzip). The stream is
/// read to its end, so a caller hashing it sees every byte and a truncated
/// trailer is noticed.
pub(super) fn walk_tar<R: Read>(
    mut reader: R,
    declared: Compression,
    overlay: &mut Overlay,
) -> Result<(), String> {
    let mut head = [0u8; 4];
    let n = read_up_to(&mut reader, &mut head).map_err(|e| format!("reading the blob: {e}"))?;
    let compression = match &head[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        // Declared compressed but no magic: the decoder names the problem.
        _ => declared,
    };
    let stream = Cursor::new(head[..n].to_vec()).chain(reader);
    let what = compression.name();
    let wrap = |e: io::Error| format!("reading the layer as a {what}: {e}");
    match compression {
        Compression::None => walk_archive(stream, overlay, &wrap),
        Compression::Gzip => {
            walk_archive(flate2::read::MultiGzDecoder::new(stream), overlay, &wrap)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(stream).map_err(wrap)?;
            walk_archive(decoder, overlay, &wrap)
        }
    }
}

fn walk_archive<R: Read>(
    reader: R,
    overlay: &mut Overlay,
    wrap: &dyn Fn(io::Error) -> String,
) -> Result<(), String> {
    let mut archive = tar::Archive::new(reader);
    {
        let entries = archive.entries().map_err(wrap)?;
        for entry in entries {
            let mut entry = entry.map_err(wrap)?;
            let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = match entry.header().entry_type() {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Link => match entry.link_name_bytes() {
                    Some(target) => {
                        EntryKind::Hardlink(String::from_utf8_lossy(&target).into_owned())
                    }
                    None => EntryKind::Other,
                },
                tar::EntryType::Symlink => match entry.link_name_bytes() {
                    Some(target) => {
                        EntryKind::Symlink(String::from_utf8_lossy(&target).into_owned())
                    }
                    None => EntryKind::Other,
                },
                _ => EntryKind::Other,
            };
            let size = entry.size();
            handle_entry(overlay, &raw_path, kind, size, &mut entry)
                .map_err(|e| wrap(io::Error::new(e.kind(), format!("entry {raw_path:?}: {e}"))))?;
        }
    }
    // Past the end-of-archive blocks: padding, and the compression trailer
    // (whose checksum the decoder verifies).
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(wrap)?;
    Ok(())
}

/// Walks a directory tree as one layer. Symbolic links are not followed;
/// entries that cannot be read are skipped with a warning.
pub(super) fn walk_directory(root: &Path, overlay: &mut Overlay) -> Result<(), String> {
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if rel.is_empty() => return Err(format!("{}: {e}", dir.display())),
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "sbom: skipping an unreadable directory");
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "sbom: skipping an unreadable directory entry");
                    continue;
                }
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = paths::join(&rel, &name);
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let result = if file_type.is_dir() {
                stack.push((entry.path(), child.clone()));
                handle_entry(overlay, &child, EntryKind::Dir, 0, &mut io::empty())
            } else if file_type.is_file() {
                std::fs::File::open(entry.path()).and_then(|mut file| {
                    let size = file.metadata()?.len();
                    handle_entry(overlay, &child, EntryKind::File, size, &mut file)
                })
            } else {
                let kind = if file_type.is_symlink() {
                    std::fs::read_link(entry.path()).map_or(EntryKind::Other, |t| {
                        EntryKind::Symlink(t.to_string_lossy().into_owned())
                    })
                } else {
                    EntryKind::Other
                };
                handle_entry(overlay, &child, kind, 0, &mut io::empty())
            };
            if let Err(e) = result {
                tracing::warn!(path = %entry.path().display(), error = %e, "sbom: skipping an unreadable file");
            }
        }
    }
    Ok(())
}

/// Handles one entry of the layer being read: a whiteout, or a directory or
/// file (which replaces what lower layers had at its path), read if it is of
/// interest. Errors are I/O errors reading the entry's content.
pub(super) fn handle_entry(
    overlay: &mut Overlay,
    raw_path: &str,
    kind: EntryKind,
    size: u64,
    reader: &mut dyn Read,
) -> io::Result<()> {
    let Some(path) = paths::normalise(raw_path) else {
        tracing::warn!(
            layer = overlay.layer(),
            path = raw_path,
            "sbom: skipping an entry whose path leaves the root"
        );
        return Ok(());
    };
    if path.is_empty() {
        return Ok(());
    }
    let (dir, base) = paths::split_parent(&path);
    if let Some(name) = base.strip_prefix(".wh.") {
        if name == ".wh..opq" {
            overlay.opaque(dir);
        } else if !name.is_empty() && !name.starts_with(".wh.") {
            // `.wh..wh.*` other than the opaque marker are aufs bookkeeping.
            overlay.whiteout(&paths::join(dir, name));
        }
        return Ok(());
    }
    match kind {
        EntryKind::Dir => overlay.replaced_by_dir(&path),
        EntryKind::Other => overlay.replaced_by_file(&path),
        EntryKind::Symlink(target) => {
            overlay.replaced_by_file(&path);
            // Symbolic links to files of interest are not followed, except a
            // Debian doc directory linked to another package's (for its copyright).
            if paths::deb_doc_dir(&path).is_some()
                && let Some(target) = paths::resolve_link(dir, &target)
            {
                overlay.insert(path, Kind::DebDocLink, Found::Link(target));
            }
        }
        EntryKind::Hardlink(target) => {
            overlay.replaced_by_file(&path);
            hard_link(overlay, path, &target);
        }
        EntryKind::File => {
            overlay.replaced_by_file(&path);
            read_file(overlay, path, size, reader)?;
        }
    }
    Ok(())
}

/// A hard link to a catalogued file is catalogued like it, when its own path
/// would be read the same way (cheap: the parsed result is copied).
fn hard_link(overlay: &mut Overlay, path: String, target: &str) {
    let Some(target) = paths::normalise(target) else {
        return;
    };
    let kind = paths::classify(&path).unwrap_or(Kind::Elf);
    let found = match overlay.get(&target) {
        Some(record) if record.kind == kind => record.found.clone(),
        _ => return,
    };
    overlay.insert(path, kind, found);
}

fn read_file(
    overlay: &mut Overlay,
    path: String,
    size: u64,
    reader: &mut dyn Read,
) -> io::Result<()> {
    if let Some(kind) = paths::classify(&path) {
        if size > METADATA_CAP {
            tracing::warn!(
                layer = overlay.layer(),
                path,
                size,
                "sbom: skipping a metadata file over 64 MiB"
            );
            return Ok(());
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader.take(METADATA_CAP + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > METADATA_CAP {
            tracing::warn!(
                layer = overlay.layer(),
                path,
                "sbom: skipping a metadata file over 64 MiB"
            );
            return Ok(());
        }
        if let Some(found) = parse(kind, &path, &buf) {
            overlay.insert(path, kind, found);
        }
        return Ok(());
    }
    if size < ELF_MIN {
        return Ok(());
    }
    let mut magic = [0u8; 4];
    if read_up_to(reader, &mut magic)? < magic.len() || magic != *b"\x7fELF" {
        return Ok(());
    }
    if size > ELF_CAP {
        tracing::warn!(
            layer = overlay.layer(),
            path,
            size,
            "sbom: skipping an ELF file over 256 MiB"
        );
        return Ok(());
    }
    // The whole binary is read into memory (at most ELF_CAP) so that `object`
    // can parse its section headers, which sit at the end of the file.
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    buf.extend_from_slice(&magic);
    reader.take(ELF_CAP).read_to_end(&mut buf)?;
    let packages = elf::catalogue(&buf, &path);
    if !packages.is_empty() {
        overlay.insert(path, Kind::Elf, Found::Packages(packages));
    }
    Ok(())
}

/// Parses a file of interest; `None` if it held nothing (or nothing readable).
fn parse(kind: Kind, path: &str, bytes: &[u8]) -> Option<Found> {
    let text = String::from_utf8_lossy(bytes);
    let packages = match kind {
        Kind::OsRelease => return os_release::parse(&text).map(Found::Distro),
        Kind::DebCopyright => return dpkg::copyright_licence(&text).map(Found::DebLicence),
        Kind::DpkgStatus => dpkg::parse_status(&text),
        Kind::DpkgStatusD => dpkg::parse_status(&text),
        Kind::ApkInstalled => apk::parse_installed(&text),
        Kind::PythonMetadata => python::parse_metadata(&text).into_iter().collect(),
        Kind::NpmPackage => npm::parse_package_json(bytes, path).into_iter().collect(),
        Kind::CargoLock => cargo::parse_lock(&text),
        Kind::Elf | Kind::DebDocLink => Vec::new(),
    };
    (!packages.is_empty()).then_some(Found::Packages(packages))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        use Compression::*;
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            ("application/vnd.oci.image.config.v1+json", Option::None),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", Option::None),
        ];
        for (mt, want) in cases {
            assert_eq!(compression_for(mt), want, "{mt}");
        }
    }
}
