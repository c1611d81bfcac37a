//! OCI image layouts on the filesystem (image-spec `image-layout.md`): create, open,
//! stream blobs in and out, tag entries in `index.json`
//! (`org.opencontainers.image.ref.name`), and verify a whole layout.
//!
//! This is the one module of `berth-oci` that does I/O, because a layout is a format
//! on disk. Every write is crash-safe: blobs are written to a temp file beside their
//! final place, hashed while written, verified, fsynced and renamed; `index.json` is
//! rewritten the same way. Unknown fields in `index.json` and unknown files in the
//! layout are kept, as the spec asks.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::digest::{Digest, Digester};
use crate::manifest::{self, Descriptor};
use crate::media_type;

/// The annotation naming an `index.json` entry.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The layout version berth writes and reads.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// Largest manifest or index read into memory from a layout.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Why a layout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The directory is not an OCI image layout.
    #[error("{path} is not an OCI image layout: {reason}")]
    NotALayout {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Content does not match the digest that names it.
    #[error("blob {expected} has digest {actual}")]
    DigestMismatch {
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// Content does not have the size its descriptor declares.
    #[error("blob {digest} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Declared size.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// A blob is not in the layout.
    #[error("blob {0} is not in the layout")]
    BlobMissing(Digest),
    /// No `index.json` entry has the requested name (or, with no name, there is not
    /// exactly one entry).
    #[error("{0}")]
    RefNotFound(String),
    /// A descriptor in `index.json` is malformed.
    #[error("index.json {path}: {reason}")]
    BadDescriptor {
        /// JSON path of the entry.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + use<> {
    let path = path.to_owned();
    move |source| LayoutError::Io { op, path, source }
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, LayoutError>;

/// One entry of `index.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The descriptor, parsed.
    pub descriptor: Descriptor,
    /// Its `org.opencontainers.image.ref.name`, if any.
    pub ref_name: Option<String>,
    /// The descriptor exactly as found (unknown fields kept).
    pub raw: Value,
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// Write `bytes` to `path` atomically: temp file beside it, fsync, rename, fsync dir.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("rename", path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

impl Layout {
    /// Open an existing layout, or create an empty one (directory, `oci-layout`,
    /// `blobs/`, `index.json`) if `dir` does not exist or is empty.
    pub fn create(dir: &Path) -> Result<Layout> {
        let fresh = match std::fs::read_dir(dir) {
            Ok(mut rd) => rd.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(io("read", dir)(e)),
        };
        if !fresh {
            return Layout::open(dir);
        }
        std::fs::create_dir_all(dir.join("blobs").join("sha256")).map_err(io("create", dir))?;
        let layout = Layout {
            root: dir.to_owned(),
        };
        let index =
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []});
        write_atomic(&dir.join("index.json"), index.to_string().as_bytes())?;
        let marker = json!({"imageLayoutVersion": LAYOUT_VERSION});
        write_atomic(&dir.join("oci-layout"), marker.to_string().as_bytes())?;
        Ok(layout)
    }

    /// Open an existing layout, checking its `oci-layout` marker and `index.json`.
    pub fn open(dir: &Path) -> Result<Layout> {
        let not = |reason: String| LayoutError::NotALayout {
            path: dir.to_owned(),
            reason,
        };
        let marker_path = dir.join("oci-layout");
        let marker =
            std::fs::read(&marker_path).map_err(|e| not(format!("cannot read oci-layout: {e}")))?;
        let marker: Value = serde_json::from_slice(&marker)
            .map_err(|e| not(format!("oci-layout is not JSON: {e}")))?;
        match marker.get("imageLayoutVersion").and_then(Value::as_str) {
            Some(v) if v.starts_with("1.") => {}
            Some(v) => return Err(not(format!("unsupported imageLayoutVersion {v:?}"))),
            None => return Err(not("oci-layout has no imageLayoutVersion".into())),
        }
        let layout = Layout {
            root: dir.to_owned(),
        };
        layout.index()?;
        Ok(layout)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blob `digest` lives (built only from a validated [`Digest`]).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Size of blob `digest`, or `None` if it is not in the layout.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(digest);
        match std::fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("stat", &p)(e)),
        }
    }

    /// Open blob `digest` for streaming. The caller verifies while reading (see
    /// [`Layout::read_verified`] for small documents).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LayoutError::BlobMissing(digest.clone())
            } else {
                io("open", &p)(e)
            }
        })
    }

    /// Read a small blob (manifest, index, config) whole, checking its digest and,
    /// if given, its size; at most [`MAX_MANIFEST_BYTES`] are read.
    pub fn read_verified(&self, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>> {
        let f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(io("read", &self.blob_path(digest)))?;
        let actual = Digest::of(digest.algorithm(), &buf);
        if actual != *digest {
            return Err(LayoutError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if let Some(expected) = size
            && expected != buf.len() as u64
        {
            return Err(LayoutError::SizeMismatch {
                digest: digest.clone(),
                expected,
                actual: buf.len() as u64,
            });
        }
        Ok(buf)
    }

    /// Stream `reader` into the layout as blob `expected`, verifying digest (and
    /// size, if given) before it becomes visible. Returns the bytes written. A blob
    /// already present is not rewritten (the reader is not consumed).
    pub fn write_blob(
        &self,
        expected: &Digest,
        size: Option<u64>,
        mut reader: impl Read,
    ) -> Result<u64> {
        if let Some(n) = self.blob_size(expected)? {
            return Ok(n);
        }
        let mut w = self.blob_writer(expected)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = reader
                .read(&mut buf)
                .map_err(io("read source for", &w.tmp))?;
            if k == 0 {
                break;
            }
            w.write(&buf[..k])?;
        }
        w.commit(size)
    }

    /// Start writing blob `expected` through a temp file beside its final place; see
    /// [`BlobWriter`]. Callers that may already have the blob check
    /// [`Layout::blob_size`] first.
    pub fn blob_writer(&self, expected: &Digest) -> Result<BlobWriter> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = self.root.join("blobs").join(expected.algorithm().as_str());
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{seq}",
            expected.hex(),
            std::process::id()
        ));
        let file = File::create(&tmp).map_err(io("create", &tmp))?;
        Ok(BlobWriter {
            final_path: self.blob_path(expected),
            dir,
            tmp,
            file: Some(file),
            digester: Digester::new(expected.algorithm()),
            expected: expected.clone(),
            written: 0,
        })
    }

    /// Store bytes as a blob; returns its sha256 digest.
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::sha256_of(bytes);
        self.write_blob(&d, Some(bytes.len() as u64), bytes)?;
        Ok(d)
    }

    /// Remove blob `digest` (a transfer rolling back what it wrote); false if it was
    /// not there. The caller makes sure nothing in `index.json` still needs it.
    pub fn remove_blob(&self, digest: &Digest) -> Result<bool> {
        let p = self.blob_path(digest);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("remove", &p)(e)),
        }
    }

    /// `index.json`, parsed (unknown fields kept).
    pub fn index(&self) -> Result<Map<String, Value>> {
        let path = self.root.join("index.json");
        let bytes = std::fs::read(&path).map_err(|e| LayoutError::NotALayout {
            path: self.root.clone(),
            reason: format!("cannot read index.json: {e}"),
        })?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| LayoutError::NotALayout {
            path: self.root.clone(),
            reason: format!("index.json is not JSON: {e}"),
        })?;
        match v {
            Value::Object(m) if m.get("manifests").is_some_and(Value::is_array) => Ok(m),
            _ => Err(LayoutError::NotALayout {
                path: self.root.clone(),
                reason: "index.json is not an image index (no manifests array)".into(),
            }),
        }
    }

    /// The entries of `index.json`.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let index = self.index()?;
        let list = index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        list.into_iter()
            .enumerate()
            .map(|(i, raw)| {
                let descriptor = manifest::parse_descriptor(&raw, &format!("manifests[{i}]"))
                    .map_err(|e| LayoutError::BadDescriptor {
                        path: format!("manifests[{i}]"),
                        reason: e.to_string(),
                    })?;
                let ref_name = raw
                    .get("annotations")
                    .and_then(|a| a.get(REF_NAME))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                Ok(Entry {
                    descriptor,
                    ref_name,
                    raw,
                })
            })
            .collect()
    }

    /// The entry named `ref_name`; with `None`, the only entry (an error listing
    /// the names if there are several).
    pub fn resolve(&self, ref_name: Option<&str>) -> Result<Entry> {
        let entries = self.entries()?;
        let names = || {
            let v: Vec<String> = entries
                .iter()
                .map(|e| {
                    e.ref_name
                        .clone()
                        .unwrap_or_else(|| e.descriptor.digest.to_string())
                })
                .collect();
            if v.is_empty() {
                "the layout is empty".to_owned()
            } else {
                format!("it has: {}", v.join(", "))
            }
        };
        match ref_name {
            Some(name) => entries
                .iter()
                .find(|e| e.ref_name.as_deref() == Some(name))
                .cloned()
                .ok_or_else(|| {
                    LayoutError::RefNotFound(format!(
                        "no entry named {name:?} in {}; {}",
                        self.root.display(),
                        names()
                    ))
                }),
            None if entries.len() == 1 => Ok(entries[0].clone()),
            None => Err(LayoutError::RefNotFound(format!(
                "{} has {} entries, name one; {}",
                self.root.display(),
                entries.len(),
                names()
            ))),
        }
    }

    /// Point `ref_name` at `descriptor` (a JSON descriptor object), replacing any
    /// entry with that name; with `None`, add the descriptor unnamed unless an
    /// identical unnamed entry exists. `index.json` is rewritten atomically.
    pub fn set_ref(&self, descriptor: Value, ref_name: Option<&str>) -> Result<()> {
        let mut entry = match descriptor {
            Value::Object(m) => m,
            _ => {
                return Err(LayoutError::BadDescriptor {
                    path: "new entry".into(),
                    reason: "not a JSON object".into(),
                });
            }
        };
        manifest::parse_descriptor(&Value::Object(entry.clone()), "new entry").map_err(|e| {
            LayoutError::BadDescriptor {
                path: "new entry".into(),
                reason: e.to_string(),
            }
        })?;
        if let Some(name) = ref_name {
            let ann = entry
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = ann {
                a.insert(REF_NAME.into(), Value::String(name.to_owned()));
            }
        }
        let mut index = self.index()?;
        let list = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| LayoutError::NotALayout {
                path: self.root.clone(),
                reason: "index.json has no manifests array".into(),
            })?;
        let new = Value::Object(entry);
        match ref_name {
            Some(name) => list.retain(|e| {
                e.get("annotations")
                    .and_then(|a| a.get(REF_NAME))
                    .and_then(Value::as_str)
                    != Some(name)
            }),
            None => list.retain(|e| *e != new),
        }
        list.push(new);
        self.write_index(&index)
    }

    /// Remove the entry named `ref_name`; false if there was none.
    pub fn remove_ref(&self, ref_name: &str) -> Result<bool> {
        let mut index = self.index()?;
        let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|e| {
            e.get("annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str)
                != Some(ref_name)
        });
        if list.len() == before {
            return Ok(false);
        }
        self.write_index(&index)?;
        Ok(true)
    }

    fn write_index(&self, index: &Map<String, Value>) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|e| LayoutError::NotALayout {
            path: self.root.clone(),
            reason: format!("cannot serialise index.json: {e}"),
        })?;
        write_atomic(&self.root.join("index.json"), &bytes)
    }
}

/// A blob being written into a layout: bytes go to a temp file while hashed; only
/// [`BlobWriter::commit`] (digest and size checked, fsync, rename, directory fsync)
/// makes it visible. Dropped without commit, the temp file is removed.
#[derive(Debug)]
pub struct BlobWriter {
    final_path: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    digester: Digester,
    expected: Digest,
    written: u64,
}

impl BlobWriter {
    /// Append bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let f = self.file.as_mut().ok_or_else(|| LayoutError::Io {
            op: "write",
            path: self.tmp.clone(),
            source: std::io::Error::other("writer already finished"),
        })?;
        f.write_all(data).map_err(io("write", &self.tmp))?;
        self.digester.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Throw away what was written and start again (a download that must restart).
    pub fn reset(&mut self) -> Result<()> {
        let f = File::create(&self.tmp).map_err(io("truncate", &self.tmp))?;
        self.file = Some(f);
        self.digester = Digester::new(self.expected.algorithm());
        self.written = 0;
        Ok(())
    }

    /// Verify the digest (and size, if given), then make the blob visible
    /// crash-safely. Returns its size. On a mismatch nothing becomes visible.
    pub fn commit(mut self, size: Option<u64>) -> Result<u64> {
        let Some(f) = self.file.take() else {
            return Err(io("commit", &self.tmp)(std::io::Error::other(
                "writer already finished",
            )));
        };
        let digester =
            std::mem::replace(&mut self.digester, Digester::new(self.expected.algorithm()));
        let actual = digester.finish();
        if actual != self.expected {
            return Err(LayoutError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        if let Some(want) = size
            && want != self.written
        {
            return Err(LayoutError::SizeMismatch {
                digest: self.expected.clone(),
                expected: want,
                actual: self.written,
            });
        }
        f.sync_all().map_err(io("fsync", &self.tmp))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.final_path).map_err(io("rename", &self.tmp))?;
        // Renamed: nothing left for Drop to remove.
        self.tmp = PathBuf::new();
        sync_dir(&self.dir)?;
        Ok(self.written)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// One problem found by [`Layout::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a blob path, or a chain of references from `index.json`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// What [`Layout::verify`] checked and found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Blob files hashed.
    pub blobs: usize,
    /// Manifests and indexes parsed and validated.
    pub manifests: usize,
    /// Everything wrong; empty when the layout is sound.
    pub problems: Vec<Problem>,
}

impl Layout {
    /// Check the whole layout: every blob file hashes to its name; every descriptor
    /// reachable from `index.json` resolves to a blob of the declared size; every
    /// manifest and index parses as its media type (and, for OCI types, validates
    /// against the image-spec JSON schemas). All problems are reported, not just
    /// the first.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        self.verify_blob_files(&mut report)?;
        let index_path = self.root.join("index.json");
        let index_bytes = std::fs::read(&index_path).map_err(io("read", &index_path))?;
        if let Err(e) = crate::schema::validate(crate::schema::SchemaKind::ImageIndex, &index_bytes)
        {
            report.problems.push(Problem {
                location: "index.json".into(),
                message: format!("does not match the image-index schema: {e}"),
            });
        }
        let marker_path = self.root.join("oci-layout");
        let marker = std::fs::read(&marker_path).map_err(io("read", &marker_path))?;
        if let Err(e) = crate::schema::validate(crate::schema::SchemaKind::ImageLayout, &marker) {
            report.problems.push(Problem {
                location: "oci-layout".into(),
                message: format!("does not match the image-layout schema: {e}"),
            });
        }
        let entries = match self.entries() {
            Ok(e) => e,
            Err(e) => {
                report.problems.push(Problem {
                    location: "index.json".into(),
                    message: e.to_string(),
                });
                return Ok(report);
            }
        };
        let mut seen = std::collections::HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            let name = e.ref_name.as_ref().map_or_else(
                || format!("index.json manifests[{i}]"),
                |n| format!("index.json {n:?}"),
            );
            self.verify_descriptor(&e.descriptor, &name, &mut seen, &mut report);
        }
        Ok(report)
    }

    fn verify_blob_files(&self, report: &mut VerifyReport) -> Result<()> {
        let blobs = self.root.join("blobs");
        let algs = std::fs::read_dir(&blobs).map_err(io("read", &blobs))?;
        for alg in algs {
            let alg = alg.map_err(io("read", &blobs))?;
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            let rd = std::fs::read_dir(alg.path()).map_err(io("read", &alg.path()))?;
            for f in rd {
                let f = f.map_err(io("read", &alg.path()))?;
                let file = f.file_name().to_string_lossy().into_owned();
                if file.starts_with('.') {
                    continue; // a temp file of an interrupted write, never referenced
                }
                let location = format!("blobs/{alg_name}/{file}");
                let digest = match format!("{alg_name}:{file}").parse::<Digest>() {
                    Ok(d) => d,
                    Err(e) => {
                        report.problems.push(Problem {
                            location,
                            message: format!("not a blob name berth can check: {e}"),
                        });
                        continue;
                    }
                };
                let mut file = File::open(f.path()).map_err(io("open", &f.path()))?;
                let mut digester = Digester::new(digest.algorithm());
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let k = file.read(&mut buf).map_err(io("read", &f.path()))?;
                    if k == 0 {
                        break;
                    }
                    digester.update(&buf[..k]);
                }
                report.blobs += 1;
                let actual = digester.finish();
                if actual != digest {
                    report.problems.push(Problem {
                        location,
                        message: format!("content has digest {actual}"),
                    });
                }
            }
        }
        Ok(())
    }

    fn verify_descriptor(
        &self,
        d: &Descriptor,
        location: &str,
        seen: &mut std::collections::HashSet<Digest>,
        report: &mut VerifyReport,
    ) {
        let problem = |report: &mut VerifyReport, message: String| {
            report.problems.push(Problem {
                location: format!("{location} -> {}", d.digest),
                message,
            });
        };
        match self.blob_size(&d.digest) {
            Ok(Some(n)) if n == d.size => {}
            Ok(Some(n)) => {
                problem(
                    report,
                    format!("blob is {n} bytes, the descriptor says {}", d.size),
                );
                return;
            }
            Ok(None) => {
                problem(report, "blob is missing".into());
                return;
            }
            Err(e) => {
                problem(report, e.to_string());
                return;
            }
        }
        if !media_type::is_manifest(&d.media_type) || !seen.insert(d.digest.clone()) {
            return;
        }
        let bytes = match self.read_verified(&d.digest, Some(d.size)) {
            Ok(b) => b,
            Err(e) => {
                problem(report, e.to_string());
                return;
            }
        };
        report.manifests += 1;
        if let Some(kind) = crate::schema::SchemaKind::for_media_type(&d.media_type)
            && let Err(e) = crate::schema::validate(kind, &bytes)
        {
            problem(
                report,
                format!("does not match the {} schema: {e}", d.media_type),
            );
        }
        let parsed = match manifest::parse(Some(&d.media_type), &bytes) {
            Ok(p) => p,
            Err(e) => {
                problem(report, format!("not a valid {}: {e}", d.media_type));
                return;
            }
        };
        let here = format!("{location} -> {}", d.digest);
        for child in parsed.blobs.iter().chain(&parsed.manifests) {
            self.verify_descriptor(child, &here, seen, report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(layout: &Layout) -> (Value, Vec<u8>) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"layer bytes";
        let c = layout.write_bytes(config).unwrap();
        let l = layout.write_bytes(layer).unwrap();
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": c.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.to_string(), "size": layer.len()}],
        }))
        .unwrap();
        let md = layout.write_bytes(&m).unwrap();
        (
            json!({"mediaType": media_type::OCI_MANIFEST, "digest": md.to_string(), "size": m.len()}),
            m,
        )
    }

    #[test]
    fn create_tag_resolve_untag() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("l");
        let layout = Layout::create(&root).unwrap();
        assert!(root.join("oci-layout").is_file());
        assert!(matches!(
            layout.resolve(None),
            Err(LayoutError::RefNotFound(_))
        ));
        let (desc, bytes) = image(&layout);
        layout.set_ref(desc.clone(), Some("v1")).unwrap();
        layout.set_ref(desc.clone(), Some("v2")).unwrap();
        // Re-tagging replaces, never duplicates.
        layout.set_ref(desc, Some("v1")).unwrap();
        let entries = layout.entries().unwrap();
        assert_eq!(entries.len(), 2);
        let e = Layout::open(&root).unwrap().resolve(Some("v1")).unwrap();
        assert_eq!(
            layout
                .read_verified(&e.descriptor.digest, Some(e.descriptor.size))
                .unwrap(),
            bytes
        );
        let err = layout.resolve(Some("nope")).unwrap_err().to_string();
        assert!(err.contains("v1") && err.contains("v2"), "{err}");
        assert!(layout.remove_ref("v2").unwrap());
        assert!(!layout.remove_ref("v2").unwrap());
        assert_eq!(
            layout.resolve(None).unwrap().ref_name.as_deref(),
            Some("v1")
        );
        // create() on an existing layout opens it.
        assert_eq!(Layout::create(&root).unwrap().entries().unwrap().len(), 1);
    }

    #[test]
    fn unknown_index_fields_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[],"annotations":{"keep":"me"},"x-extra":1}"#,
        )
        .unwrap();
        let (desc, _) = image(&layout);
        layout.set_ref(desc, Some("t")).unwrap();
        let index = layout.index().unwrap();
        assert_eq!(index["annotations"]["keep"], "me");
        assert_eq!(index["x-extra"], 1);
    }

    #[test]
    fn bad_blobs_never_become_visible() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let claimed = Digest::sha256_of(b"the real thing");
        let err = layout
            .write_blob(&claimed, None, &b"an impostor"[..])
            .unwrap_err();
        assert!(matches!(err, LayoutError::DigestMismatch { .. }), "{err}");
        assert_eq!(layout.blob_size(&claimed).unwrap(), None);
        let err = layout
            .write_blob(&claimed, Some(3), &b"the real thing"[..])
            .unwrap_err();
        assert!(matches!(err, LayoutError::SizeMismatch { .. }), "{err}");
        // No temp files left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // A corrupted blob on disk is caught when read.
        let d = layout.write_bytes(b"good").unwrap();
        std::fs::write(layout.blob_path(&d), b"evil").unwrap();
        assert!(matches!(
            layout.read_verified(&d, None),
            Err(LayoutError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn verify_finds_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let (desc, m) = image(&layout);
        layout.set_ref(desc.clone(), Some("v1")).unwrap();
        let report = layout.verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.blobs, report.manifests), (3, 1));

        // Corrupt the layer, drop the config, and add an entry with a wrong size.
        let parsed = manifest::parse(None, &m).unwrap();
        let (config, layer) = (&parsed.blobs[0].digest, &parsed.blobs[1].digest);
        std::fs::write(layout.blob_path(layer), b"tampered!!!").unwrap();
        std::fs::remove_file(layout.blob_path(config)).unwrap();
        let mut wrong = desc.clone();
        wrong["size"] = json!(1);
        layout.set_ref(wrong, Some("bad-size")).unwrap();
        let report = layout.verify().unwrap();
        let text: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        assert!(
            all.contains(&format!("blobs/sha256/{}: content has digest", layer.hex())),
            "{all}"
        );
        assert!(all.contains(&format!("{config}: blob is missing")), "{all}");
        assert!(
            all.contains("\"bad-size\"") && all.contains("the descriptor says 1"),
            "{all}"
        );
        assert_eq!(report.problems.len(), 3, "{all}");
    }

    #[test]
    fn not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = Layout::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot read oci-layout"), "{err}");
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let err = Layout::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unsupported imageLayoutVersion"), "{err}");
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("index.json"), "[]").unwrap();
        let err = Layout::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an image index"), "{err}");
    }
}
