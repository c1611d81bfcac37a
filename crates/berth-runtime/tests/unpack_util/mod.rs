//! Helpers shared by the unpack tests: layers built in memory with the `tar` crate
//! (including malformed ones, written header by header), and snapshots of trees.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_oci::Digest;
use berth_runtime::unpack::{LayerStats, UnpackError, Unpacker};
use sha2::Digest as _;
use tar::{EntryType, Header};

pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The mtime entries get unless a test says otherwise.
pub const MTIME: u64 = 1_600_000_000;

/// Whether the tests run as root (ownership, device nodes, umoci).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A layer tar being built.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

/// Metadata for one entry.
#[derive(Clone, Copy)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Attrs {
    pub fn mode(mode: u32) -> Attrs {
        Attrs {
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
        }
    }
    pub fn owner(self, uid: u64, gid: u64) -> Attrs {
        Attrs { uid, gid, ..self }
    }
    pub fn mtime(self, mtime: u64) -> Attrs {
        Attrs { mtime, ..self }
    }
}

fn header(kind: EntryType, a: Attrs, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(a.mode);
    h.set_uid(a.uid);
    h.set_gid(a.gid);
    h.set_mtime(a.mtime);
    h.set_size(size);
    h
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn dir(self, path: &str, mode: u32) -> Layer {
        self.dir_with(path, Attrs::mode(mode))
    }

    pub fn dir_with(mut self, path: &str, a: Attrs) -> Layer {
        let mut h = header(EntryType::Directory, a, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> Layer {
        self.file_with(path, Attrs::mode(mode), data)
    }

    pub fn file_with(mut self, path: &str, a: Attrs, data: &[u8]) -> Layer {
        let mut h = header(EntryType::Regular, a, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A file preceded by a PAX header with these extended attributes.
    pub fn file_xattrs(
        mut self,
        path: &str,
        mode: u32,
        data: &[u8],
        xattrs: &[(&str, &[u8])],
    ) -> Layer {
        let keys: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(path, mode, data)
    }

    /// PAX records (any keys) before the next entry.
    pub fn pax(mut self, records: &[(&str, &[u8])]) -> Layer {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    pub fn symlink(self, path: &str, target: &str) -> Layer {
        self.symlink_with(path, target, Attrs::mode(0o777))
    }

    pub fn symlink_with(self, path: &str, target: &str, a: Attrs) -> Layer {
        self.raw_with(
            path.as_bytes(),
            EntryType::Symlink,
            target.as_bytes(),
            a,
            b"",
        )
    }

    pub fn hardlink(self, path: &str, target: &str) -> Layer {
        self.raw(path.as_bytes(), EntryType::Link, target.as_bytes(), b"")
    }

    pub fn fifo(self, path: &str, mode: u32) -> Layer {
        self.raw_with(
            path.as_bytes(),
            EntryType::Fifo,
            b"",
            Attrs::mode(mode),
            b"",
        )
    }

    pub fn chardev(mut self, path: &str, mode: u32, major: u32, minor: u32) -> Layer {
        let mut h = header(EntryType::Char, Attrs::mode(mode), 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A whiteout (or opaque marker): an empty regular file with that name.
    pub fn whiteout(self, path: &str) -> Layer {
        self.raw(path.as_bytes(), EntryType::Regular, b"", b"")
    }

    /// An entry written header field by header field: names are not checked (so
    /// `..` and absolute names get through), at most 100 bytes each.
    pub fn raw(self, name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Layer {
        let mode = if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        };
        self.raw_with(name, kind, link, Attrs::mode(mode), data)
    }

    pub fn raw_with(
        mut self,
        name: &[u8],
        kind: EntryType,
        link: &[u8],
        a: Attrs,
        data: &[u8],
    ) -> Layer {
        let mut h = header(kind, a, data.len() as u64);
        let old = h.as_old_mut();
        old.name.fill(0);
        old.name[..name.len()].copy_from_slice(name);
        old.linkname.fill(0);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// The finished tar.
    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn digest(blob: &[u8]) -> Digest {
    Digest::sha256_of(blob)
}

/// Applies `blob` under its own (correct) sha256 digest.
pub fn apply(u: &mut Unpacker, blob: &[u8], media_type: &str) -> Result<LayerStats, UnpackError> {
    u.apply_layer(&digest(blob), media_type, blob)
}

/// One filesystem object, as compared between trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `d`, `f`, `l`, `p` (fifo), `c`, `b`, `s`.
    pub kind: char,
    /// Permission bits with set-id and sticky (none for symlinks).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size of regular files.
    pub size: u64,
    pub sha256: Option<String>,
    pub link: Option<String>,
    pub rdev: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// For multiply-linked non-directories: the first path (sorted) of the inode.
    pub link_group: Option<String>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Everything below `root` (not `root` itself), keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let child_rel = rel.join(entry.file_name());
            let path = root.join(&child_rel);
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_file() {
                'f'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else {
                's'
            };
            let key = String::from_utf8_lossy(child_rel.as_os_str().as_bytes()).into_owned();
            let sha256 = (kind == 'f').then(|| {
                let data = std::fs::read(&path).unwrap();
                hex(&sha2::Sha256::digest(&data))
            });
            let link = (kind == 'l').then(|| {
                String::from_utf8_lossy(std::fs::read_link(&path).unwrap().as_os_str().as_bytes())
                    .into_owned()
            });
            if kind != 'd' && md.nlink() > 1 {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(key.clone());
            }
            out.insert(
                key,
                Node {
                    kind,
                    mode: if kind == 'l' { 0 } else { md.mode() & 0o7777 },
                    uid: md.uid(),
                    gid: md.gid(),
                    size: if kind == 'f' { md.size() } else { 0 },
                    sha256,
                    link,
                    rdev: md.rdev(),
                    mtime: (md.mtime(), md.mtime_nsec()),
                    link_group: None,
                    xattrs: xattrs(&path),
                },
            );
            if kind == 'd' {
                stack.push(child_rel);
            }
        }
    }
    for mut paths in inodes.into_values() {
        paths.sort();
        let first = paths[0].clone();
        for p in paths {
            if let Some(n) = out.get_mut(&p) {
                n.link_group = Some(first.clone());
            }
        }
    }
    out
}

/// The `user.*` and `trusted.*` xattrs of `path` (not followed).
fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut list = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(path, &mut list[..]) else {
        return out;
    };
    for name in list[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.") || name.starts_with(b"trusted.")) {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            value.truncate(len);
            out.insert(String::from_utf8_lossy(name).into_owned(), value);
        }
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temporary directory holding the rootfs (not yet created) and, beside it, a
/// canary directory that no layer may touch.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub canary: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let canary = dir.path().join("canary");
        std::fs::create_dir_all(canary.join("etc")).unwrap();
        std::fs::write(canary.join("sentinel"), b"do not touch\n").unwrap();
        std::fs::write(canary.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        Sandbox {
            dir,
            rootfs,
            canary,
        }
    }

    /// The canary's absolute path, as text.
    pub fn canary_str(&self) -> String {
        self.canary.to_str().unwrap().to_owned()
    }

    /// The canary's state plus the names beside the rootfs.
    pub fn outside(&self) -> (BTreeMap<String, Node>, Vec<String>) {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        (snapshot(&self.canary), names)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}
