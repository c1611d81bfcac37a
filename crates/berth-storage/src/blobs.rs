//! Content-addressed blob files and upload files on the local filesystem.
//!
//! Writes go to `uploads/<uuid>/data`; committing fsyncs that file, renames it to
//! `blobs/<alg>/<xx>/<hex>` and fsyncs the directory, so a crash at any instant leaves
//! either no blob or the whole blob. Renaming over an existing blob is harmless: both
//! hold the same bytes (the caller verified the digest), and readers holding the old
//! file keep reading a complete inode.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use berth_oci::{Digest, Digester};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::{Result, StorageError};

/// Identifier of an upload session: a UUID, so it is always a safe path component.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    /// A fresh random id.
    pub fn new() -> Self {
        UploadId(uuid::Uuid::new_v4())
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for UploadId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s).map(UploadId)
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The filesystem blob store rooted at a data directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    blobs: PathBuf,
    uploads: PathBuf,
    quarantine: PathBuf,
    /// Upload appenders try direct I/O (see [`UploadAppender`]).
    direct_io: bool,
}

/// Bytes per read when streaming a blob out: small enough that a chunk read on one
/// core is still in that core's cache when the same task writes it to the socket.
const READ_CHUNK: usize = 256 << 10;

/// A committed blob opened for reading.
#[derive(Debug)]
pub struct BlobFile {
    file: std::fs::File,
    size: u64,
    path: PathBuf,
}

impl BlobFile {
    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Stream `len` bytes from offset `start`. See [`BlobStream`].
    pub fn stream(self, start: u64, len: u64) -> BlobStream {
        BlobStream {
            file: std::sync::Arc::new(self.file),
            path: self.path,
            pos: start,
            left: len,
            nowait: true,
            pending: None,
            sent: std::collections::VecDeque::with_capacity(RECYCLE),
        }
    }
}

/// The bytes of a blob, read as the network takes them.
///
/// Each chunk is first read with `preadv2(RWF_NOWAIT)`, which copies from the page
/// cache or fails at once rather than wait for the disk: a warm blob is then read
/// and sent by the same task on the same core, with the chunk still in that core's
/// cache (measured on loopback: see docs/performance.md). A chunk that is not cached
/// is read on the blocking pool instead, so a cold disk never stalls the runtime. A
/// file shorter than promised ends the stream with an error, so a client never takes
/// a truncated body for a whole one.
#[derive(Debug)]
pub struct BlobStream {
    file: std::sync::Arc<std::fs::File>,
    path: PathBuf,
    pos: u64,
    left: u64,
    /// False once the kernel said it cannot do `RWF_NOWAIT` reads of this file.
    nowait: bool,
    pending: Option<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>>,
    /// The last full chunks handed out, oldest first, to be read into again once
    /// the network has let go of them (see [`BlobStream::buffer`]).
    sent: std::collections::VecDeque<Bytes>,
}

/// Full chunks a stream keeps for reuse: hyper holds a chunk only until it is
/// written to the socket, so the older of two is free again ~97% of the time
/// (200 MiB pulls on loopback). Two, not more: a stream holds them for its whole
/// life, and a pull storm has many streams.
const RECYCLE: usize = 2;

/// Read up to `want` bytes at `pos`, blocking if need be.
fn read_chunk_blocking(file: &std::fs::File, pos: u64, want: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; want];
    loop {
        match file.read_at(&mut buf, pos) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl BlobStream {
    /// Account for a chunk read; an empty one means the file is shorter than promised.
    fn took(&mut self, buf: Vec<u8>) -> std::io::Result<Bytes> {
        if buf.is_empty() {
            let e = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("blob ended {} bytes early", self.left),
            );
            return Err(self.failed(e));
        }
        self.pos += buf.len() as u64;
        self.left -= buf.len() as u64;
        Ok(Bytes::from(buf))
    }

    /// A buffer of `want` bytes to read into: the oldest chunk sent if nothing else
    /// holds it any more, else a new zeroed one. Reusing saves zeroing 256 KiB and
    /// faulting in fresh pages per chunk, and the buffer is likely still in cache
    /// (blob GETs from the page cache: see docs/performance.md).
    fn buffer(&mut self, want: usize) -> bytes::BytesMut {
        if self.sent.len() == RECYCLE
            && let Some(oldest) = self.sent.pop_front()
        {
            match oldest.try_into_mut() {
                Ok(mut buf) if buf.len() >= want => {
                    buf.truncate(want);
                    return buf;
                }
                Ok(_) => {}
                // Still queued in hyper: keep it for a later try.
                Err(busy) => self.sent.push_front(busy),
            }
        }
        bytes::BytesMut::zeroed(want)
    }

    /// Account for a chunk read into a buffer from [`BlobStream::buffer`].
    fn took_buffer(&mut self, buf: bytes::BytesMut) -> std::io::Result<Bytes> {
        if buf.is_empty() {
            return self.took(Vec::new());
        }
        self.pos += buf.len() as u64;
        self.left -= buf.len() as u64;
        let chunk = buf.freeze();
        if chunk.len() == READ_CHUNK {
            if self.sent.len() == RECYCLE {
                self.sent.pop_front();
            }
            self.sent.push_back(chunk.clone());
        }
        Ok(chunk)
    }

    fn failed(&mut self, e: std::io::Error) -> std::io::Error {
        tracing::error!(path = %self.path.display(), error = %e, "reading blob failed");
        self.left = 0;
        e
    }
}

impl futures_util::Stream for BlobStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if let Some(pending) = self.pending.as_mut() {
            let done = match std::pin::Pin::new(pending).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(done) => done,
            };
            self.pending = None;
            return Poll::Ready(Some(match done {
                Ok(Ok(buf)) => self.took(buf),
                Ok(Err(e)) => Err(self.failed(e)),
                Err(join) => Err(self.failed(std::io::Error::other(join.to_string()))),
            }));
        }
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = self.left.min(READ_CHUNK as u64) as usize;
        if self.nowait {
            let mut buf = self.buffer(want);
            let read = rustix::io::preadv2(
                &*self.file,
                &mut [std::io::IoSliceMut::new(&mut buf)],
                self.pos,
                rustix::io::ReadWriteFlags::NOWAIT,
            );
            match read {
                Ok(n) => {
                    buf.truncate(n);
                    return Poll::Ready(Some(self.took_buffer(buf)));
                }
                Err(rustix::io::Errno::INTR) => {}
                // Not in the page cache: read it on the blocking pool below.
                Err(rustix::io::Errno::AGAIN) => {}
                // No RWF_NOWAIT here (old kernel or filesystem): always block-read.
                Err(_) => self.nowait = false,
            }
        }
        let (file, pos) = (self.file.clone(), self.pos);
        self.pending = Some(tokio::task::spawn_blocking(move || {
            read_chunk_blocking(&file, pos, want)
        }));
        self.poll_next(cx)
    }
}

/// Bytes appended between two background writebacks of an upload file.
const WRITEBACK_STEP: u64 = 16 << 20;

/// An upload's data file opened for appending, for use on a blocking thread.
///
/// Every [`WRITEBACK_STEP`] bytes it has what was written so far flushed to disk in
/// the background (`fdatasync` on a second handle, on the blocking pool), so the
/// disk writes while the rest of the body is still arriving and the fsync at commit
/// only waits for the tail. (std has no `sync_file_range`, and `unsafe` is
/// forbidden here; an fdatasync that nobody waits for does the same job.)
///
/// Once a flush has made a prefix of the file durable, that prefix is dropped from
/// the page cache (`POSIX_FADV_DONTNEED`): upload data is written once and read back
/// only by pulls that may never come, so caching it would evict hotter data
/// (manifests, the layers being pulled), and an upload reuses the same few
/// megabytes of page cache instead of claiming fresh memory for every byte. On VMs
/// whose free memory is handed back to the host (virtio free page reporting), fresh
/// memory costs a host fault per page: buffered writes of 800 MiB with `fsync` ran
/// at 120 MiB/s there once half the memory had been used, and at 930 MiB/s with a
/// flush and drop every 16 MiB (docs/performance.md).
///
/// Whole blocks are written with direct I/O where the filesystem allows it
/// (`O_DIRECT`, on a second handle opened on first use): when the file offset and
/// the buffer's address are [`DIRECT_ALIGN`]-aligned, the aligned part of the data
/// goes from the caller's buffer to the device without a copy into the page cache.
/// That copy and ext4's buffered-write bookkeeping were ~25% of the server's CPU on
/// a 200 MiB push, on the thread that also hashes (docs/performance.md). The rest
/// (a tail shorter than a block, a misaligned buffer, a filesystem such as tmpfs
/// that refuses `O_DIRECT`) is written through the page cache as before.
#[derive(Debug)]
pub struct UploadAppender {
    file: std::fs::File,
    path: PathBuf,
    /// File length: where the next byte goes.
    pos: u64,
    direct: Direct,
    unsynced: u64,
    writeback: Option<Writeback>,
}

/// Alignment of direct writes: file offset, length and buffer address. 4096
/// covers devices with 4 KiB logical blocks; 512-byte ones accept it too.
pub const DIRECT_ALIGN: usize = 4096;

/// The appender's direct-I/O handle.
#[derive(Debug)]
enum Direct {
    /// Not opened yet (no aligned data so far).
    Untried,
    Open(std::fs::File),
    /// The filesystem refused it, or the store was opened without it.
    Off,
}

/// Background flushing of one upload file: at most one `fdatasync` in flight.
#[derive(Debug)]
struct Writeback {
    file: std::sync::Arc<std::fs::File>,
    busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Writeback {
    fn new(file: &std::fs::File) -> Option<Self> {
        Some(Writeback {
            file: std::sync::Arc::new(file.try_clone().ok()?),
            busy: Default::default(),
        })
    }

    /// Start a flush unless one is already running (kicks then coalesce).
    fn kick(&self) {
        use std::sync::atomic::Ordering;
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let (file, busy) = (self.file.clone(), self.busy.clone());
        let job = move || {
            // Only an optimisation: the commit's fsync is what makes the data
            // durable, and it reports any error. Everything below `len` was
            // written before the flush started, so it is clean once it returns.
            if let Ok(meta) = file.metadata()
                && file.sync_data().is_ok()
            {
                let len = std::num::NonZeroU64::new(meta.len());
                let _ = rustix::fs::fadvise(&*file, 0, len, rustix::fs::Advice::DontNeed);
            }
            busy.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(job)),
            Err(_) => drop(std::thread::spawn(job)),
        }
    }
}

impl UploadAppender {
    /// Append bytes at the end of the upload.
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let data = &data[self.append_direct(data)?..];
        if data.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(data)
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        self.pos += data.len() as u64;
        self.unsynced += data.len() as u64;
        if self.unsynced >= WRITEBACK_STEP {
            self.unsynced = 0;
            if self.writeback.is_none() {
                self.writeback = Writeback::new(&self.file);
            }
            if let Some(w) = &self.writeback {
                w.kick();
            }
        }
        Ok(())
    }

    /// Append `parts` in order. Runs of whole aligned blocks go to the device in
    /// one direct `pwritev`: larger writes keep the device busier (a disk queue
    /// of one write at a time is the limit here, see [`UploadAppender`]).
    pub fn append_all(&mut self, parts: &[&[u8]]) -> Result<()> {
        let mut i = 0;
        while i < parts.len() {
            let run = parts[i..]
                .iter()
                .take_while(|p| whole_aligned_blocks(p))
                .count();
            if run < 2 || !self.direct_possible() {
                self.append(parts[i])?;
                i += 1;
                continue;
            }
            let mut left = self.write_direct_vectored(&parts[i..i + run])?;
            if left == 0 {
                // Direct I/O refused: these go through `append`.
                self.append(parts[i])?;
                i += 1;
                continue;
            }
            while i < parts.len() && left >= parts[i].len() {
                left -= parts[i].len();
                i += 1;
            }
            if left > 0 {
                self.append(&parts[i][left..])?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Whether a direct write may start here (offset aligned, handle usable).
    fn direct_possible(&mut self) -> bool {
        if !self.pos.is_multiple_of(DIRECT_ALIGN as u64) {
            return false;
        }
        if matches!(self.direct, Direct::Untried) {
            self.direct = open_direct(&self.path).map_or(Direct::Off, Direct::Open);
        }
        matches!(self.direct, Direct::Open(_))
    }

    /// One direct `pwritev` of `parts` (whole aligned blocks) at the end of the
    /// file; returns the bytes written, 0 if the filesystem refused.
    fn write_direct_vectored(&mut self, parts: &[&[u8]]) -> Result<usize> {
        let Direct::Open(file) = &self.direct else {
            return Ok(0);
        };
        let slices: Vec<std::io::IoSlice<'_>> =
            parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
        loop {
            match rustix::io::pwritev(file, &slices, self.pos) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::INVAL) => {
                    self.direct = Direct::Off;
                    return Ok(0);
                }
                Err(e) => return Err(StorageError::io("write", &self.path, e.into())),
            }
        }
    }

    /// Write the longest block-aligned prefix of `data` with direct I/O if the
    /// file offset and the buffer allow it; returns how many bytes were written.
    fn append_direct(&mut self, data: &[u8]) -> Result<usize> {
        use std::os::unix::fs::FileExt;
        let aligned = data.len() - data.len() % DIRECT_ALIGN;
        if aligned == 0
            || !data.as_ptr().addr().is_multiple_of(DIRECT_ALIGN)
            || !self.direct_possible()
        {
            return Ok(0);
        }
        let Direct::Open(file) = &self.direct else {
            return Ok(0);
        };
        let mut done = 0;
        while done < aligned {
            match file.write_at(&data[done..aligned], self.pos) {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(StorageError::io("write", &self.path, e));
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // The filesystem or device wants another alignment (or none):
                // the rest goes through the page cache.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    self.direct = Direct::Off;
                    break;
                }
                Err(e) => return Err(StorageError::io("write", &self.path, e)),
            }
        }
        Ok(done)
    }
}

/// Whether `part` can be written direct as it is: its address and length are
/// multiples of [`DIRECT_ALIGN`].
fn whole_aligned_blocks(part: &[u8]) -> bool {
    !part.is_empty()
        && part.len().is_multiple_of(DIRECT_ALIGN)
        && part.as_ptr().addr().is_multiple_of(DIRECT_ALIGN)
}

/// A second, `O_DIRECT` handle on an upload file; `None` where the filesystem
/// does not support it.
fn open_direct(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::DIRECT.bits();
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(flags as i32)
        .open(path)
        .ok()
}

impl BlobStore {
    /// Open (creating if needed) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let blobs = data_dir.join("blobs");
        let uploads = data_dir.join("uploads");
        for dir in [&blobs, &uploads] {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create", dir, e))?;
        }
        Ok(BlobStore {
            blobs,
            uploads,
            quarantine: data_dir.join("quarantine"),
            direct_io: true,
        })
    }

    /// Whether upload appenders try direct I/O (on by default).
    pub fn with_direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    /// Where a committed blob lives. Built only from a validated [`Digest`].
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_dir(&self, id: UploadId) -> PathBuf {
        self.uploads.join(id.to_string())
    }

    fn upload_path(&self, id: UploadId) -> PathBuf {
        self.upload_dir(id).join("data")
    }

    /// Size of a committed blob, or `None` if it is not on disk.
    pub async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("stat", path, e)),
        }
    }

    /// Open a committed blob for reading.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<BlobFile>> {
        let path = self.blob_path(digest);
        let opened = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(file) => match file.metadata() {
                Ok(m) => Ok(Some(BlobFile {
                    file,
                    size: m.len(),
                    path,
                })),
                Err(e) => Err(StorageError::io("stat", &path, e)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("open", path, e)),
        });
        opened
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Create the (empty) data file of a new upload.
    pub async fn create_upload(&self, id: UploadId) -> Result<()> {
        let dir = self.upload_dir(id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StorageError::io("create", &dir, e))?;
        let path = self.upload_path(id);
        tokio::fs::File::create(&path)
            .await
            .map_err(|e| StorageError::io("create", &path, e))?;
        Ok(())
    }

    /// Bytes received so far, or `None` if the upload's file does not exist.
    pub async fn upload_len(&self, id: UploadId) -> Result<Option<u64>> {
        let path = self.upload_path(id);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("stat", path, e)),
        }
    }

    /// Open an upload's data file for appending (blocking: call it on the thread
    /// that will write).
    pub fn append_upload(&self, id: UploadId) -> Result<UploadAppender> {
        let path = self.upload_path(id);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| StorageError::io("open", &path, e))?;
        let pos = file
            .metadata()
            .map_err(|e| StorageError::io("stat", &path, e))?
            .len();
        Ok(UploadAppender {
            file,
            path,
            pos,
            direct: if self.direct_io {
                Direct::Untried
            } else {
                Direct::Off
            },
            unsynced: 0,
            writeback: None,
        })
    }

    /// Hash an upload's data from the start with `digester` (to rebuild the running
    /// hash after a restart or a failed chunk); returns the bytes read.
    pub async fn hash_upload(&self, id: UploadId, digester: &mut Digester) -> Result<u64> {
        let path = self.upload_path(id);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageError::io("open", &path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| StorageError::io("read", &path, e))?;
            if n == 0 {
                return Ok(len);
            }
            digester.update(&buf[..n]);
            len += n as u64;
        }
    }

    /// Cut an upload back to `len` bytes (after a failed chunk).
    pub async fn truncate_upload(&self, id: UploadId, len: u64) -> Result<()> {
        let path = self.upload_path(id);
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(|e| StorageError::io("open", &path, e))?;
        f.set_len(len)
            .await
            .map_err(|e| StorageError::io("truncate", &path, e))
    }

    /// Make a verified upload visible as blob `digest`: fsync, rename, fsync the
    /// directory. The caller has checked the digest and size.
    pub async fn commit_upload(&self, id: UploadId, digest: &Digest) -> Result<()> {
        let src = self.upload_path(id);
        let dst = self.blob_path(digest);
        let upload_dir = self.upload_dir(id);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let f = std::fs::File::open(&src).map_err(|e| StorageError::io("open", &src, e))?;
            f.sync_all()
                .map_err(|e| StorageError::io("fsync", &src, e))?;
            drop(f);
            let parent = dst.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent).map_err(|e| StorageError::io("create", parent, e))?;
            std::fs::rename(&src, &dst).map_err(|e| StorageError::io("rename", &dst, e))?;
            let dir =
                std::fs::File::open(parent).map_err(|e| StorageError::io("open", parent, e))?;
            dir.sync_all()
                .map_err(|e| StorageError::io("fsync", parent, e))?;
            // The now-empty session directory; failure to remove it only leaves litter.
            let _ = std::fs::remove_dir(&upload_dir);
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Remove an upload's files (cancelled, failed or completed elsewhere).
    pub async fn delete_upload(&self, id: UploadId) -> Result<()> {
        let dir = self.upload_dir(id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove", dir, e)),
        }
    }

    /// Check that the blob and upload directories are there (readiness).
    pub async fn check(&self) -> Result<()> {
        for dir in [&self.blobs, &self.uploads] {
            let m = tokio::fs::metadata(dir)
                .await
                .map_err(|e| StorageError::io("stat", dir, e))?;
            if !m.is_dir() {
                return Err(StorageError::io(
                    "stat",
                    dir,
                    std::io::Error::other("not a directory"),
                ));
            }
        }
        Ok(())
    }

    /// Remove a committed blob's file (garbage collection; the caller has made
    /// sure nothing links it). False if it was not there.
    pub async fn remove_blob(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io("remove", path, e)),
        }
    }

    /// Move a committed blob's file into `quarantine/` so it is never served
    /// again; returns where it went, or `None` if there was no file.
    pub async fn quarantine_blob(&self, digest: &Digest) -> Result<Option<PathBuf>> {
        let src = self.blob_path(digest);
        let dst = self.quarantine.join(format!(
            "{}-{}-{}",
            digest.algorithm().as_str(),
            digest.hex(),
            crate::now_secs()
        ));
        let dir = self.quarantine.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<PathBuf>> {
            std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("create", &dir, e))?;
            match std::fs::rename(&src, &dst) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(StorageError::io("rename", &src, e)),
            }
            if let Some(parent) = src.parent()
                && let Ok(d) = std::fs::File::open(parent)
            {
                let _ = d.sync_all();
            }
            Ok(Some(dst))
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Every committed blob file on disk with its size and age in seconds since
    /// it was last modified (garbage collection finds files metadata forgot).
    /// Files whose names are not digests are skipped.
    pub fn blob_files(&self) -> Result<Vec<(Digest, u64, u64)>> {
        let mut out = Vec::new();
        let now = std::time::SystemTime::now();
        let algs = match std::fs::read_dir(&self.blobs) {
            Ok(rd) => rd,
            Err(e) => return Err(StorageError::io("list", &self.blobs, e)),
        };
        for alg in algs.filter_map(|e| e.ok()) {
            let Some(alg_name) = alg.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(prefixes) = std::fs::read_dir(alg.path()) else {
                continue;
            };
            for prefix in prefixes.filter_map(|e| e.ok()) {
                let Ok(files) = std::fs::read_dir(prefix.path()) else {
                    continue;
                };
                for f in files.filter_map(|e| e.ok()) {
                    let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    let Ok(digest) = format!("{alg_name}:{name}").parse::<Digest>() else {
                        continue;
                    };
                    let Ok(meta) = f.metadata() else { continue };
                    let age = meta
                        .modified()
                        .ok()
                        .and_then(|m| now.duration_since(m).ok())
                        .map_or(0, |d| d.as_secs());
                    out.push((digest, meta.len(), age));
                }
            }
        }
        Ok(out)
    }

    /// Seconds since an upload's data was last written, or `None` if it has no file.
    pub fn upload_idle_secs(&self, id: UploadId) -> Result<Option<u64>> {
        let path = self.upload_path(id);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(
                m.modified()
                    .ok()
                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                    .map_or(0, |d| d.as_secs()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("stat", path, e)),
        }
    }

    /// Hash a committed blob with `digester`, at most `bytes_per_second` (0: no
    /// limit); returns the bytes read and the file's inode, or `None` if there is
    /// no file. Blocking: call it on the blocking pool.
    pub fn hash_blob_blocking(
        &self,
        digest: &Digest,
        digester: &mut Digester,
        bytes_per_second: u64,
    ) -> Result<Option<(u64, u64)>> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let path = self.blob_path(digest);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("open", path, e)),
        };
        let ino = file
            .metadata()
            .map_err(|e| StorageError::io("stat", &path, e))?
            .ino();
        let mut buf = vec![0u8; 1 << 20];
        let started = std::time::Instant::now();
        let mut len = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => return Ok(Some((len, ino))),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StorageError::io("read", path, e)),
            };
            digester.update(&buf[..n]);
            len += n as u64;
            if bytes_per_second > 0 {
                let due = std::time::Duration::from_secs_f64(len as f64 / bytes_per_second as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// The inode of a committed blob's file, if it exists (scrub checks the file
    /// it judged is still the one in place before moving it aside).
    pub fn blob_inode(&self, digest: &Digest) -> Result<Option<u64>> {
        use std::os::unix::fs::MetadataExt;
        let path = self.blob_path(digest);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.ino())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("stat", path, e)),
        }
    }

    /// Ids of every upload directory on disk (for recovery and cleanup).
    pub fn upload_ids(&self) -> Result<Vec<UploadId>> {
        let rd = std::fs::read_dir(&self.uploads)
            .map_err(|e| StorageError::io("list", &self.uploads, e))?;
        Ok(rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upload_commit_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = UploadId::new();
        store.create_upload(id).await.unwrap();
        let mut f = store.append_upload(id).unwrap();
        f.append(b"hello ").unwrap();
        f.append(b"world").unwrap();
        drop(f);
        assert_eq!(store.upload_len(id).await.unwrap(), Some(11));
        let digest = Digest::sha256_of(b"hello world");
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        store.commit_upload(id, &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
        assert_eq!(store.upload_len(id).await.unwrap(), None);
        // No temp files left behind.
        assert!(store.upload_ids().unwrap().is_empty());
    }

    #[tokio::test]
    async fn truncate_drops_a_failed_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = UploadId::new();
        store.create_upload(id).await.unwrap();
        let mut f = store.append_upload(id).unwrap();
        f.append(b"abcdef").unwrap();
        drop(f);
        store.truncate_upload(id, 3).await.unwrap();
        assert_eq!(store.upload_len(id).await.unwrap(), Some(3));
        store.delete_upload(id).await.unwrap();
        assert_eq!(store.upload_len(id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn large_appends_with_background_writeback_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = UploadId::new();
        store.create_upload(id).await.unwrap();
        let mut f = store.append_upload(id).unwrap();
        let piece: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut want = Digester::new(berth_oci::Algorithm::Sha256);
        for _ in 0..40 {
            f.append(&piece).unwrap();
            want.update(&piece);
        }
        assert!(
            f.writeback.is_some(),
            "40 MiB must start background writeback"
        );
        // Appending while a flush runs, and dropping the appender, lose nothing.
        drop(f);
        let mut got = Digester::new(berth_oci::Algorithm::Sha256);
        assert_eq!(store.hash_upload(id, &mut got).await.unwrap(), 40 << 20);
        assert_eq!(got.finish(), want.finish());
    }

    /// Pages resident in the page cache for `path`, via util-linux `fincore`; `None`
    /// when it cannot tell (no fincore, or a tmpfs, where pages are the file itself).
    fn resident_bytes(path: &Path) -> Option<u64> {
        let file = std::fs::File::open(path).ok()?;
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        if rustix::fs::fstatfs(&file).ok()?.f_type as i64 == TMPFS_MAGIC {
            return None;
        }
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    async fn writeback_idle(f: &UploadAppender) {
        let busy = &f.writeback.as_ref().expect("writeback started").busy;
        while busy.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flushed_upload_data_leaves_the_page_cache() {
        let (_dir, store, id) = upload_on_disk().await;
        let mut f = store.append_upload(id).unwrap();
        // Misaligned on purpose: these bytes go through the page cache.
        let mut backing = vec![7u8; (1 << 20) + 2 * DIRECT_ALIGN];
        let piece = &aligned_slice(&mut backing, 1 << 20)[1..];
        for _ in 0..64 {
            f.append(piece).unwrap();
        }
        writeback_idle(&f).await;
        // A last flush covering all 64 MiB, as the next kick would start.
        f.writeback.as_ref().unwrap().kick();
        writeback_idle(&f).await;
        let path = store.upload_path(id);
        let Some(resident) = resident_bytes(&path) else {
            eprintln!("skipped: cannot measure page-cache residency of {path:?}");
            return;
        };
        assert!(
            resident < 16 << 20,
            "{resident} of 64 MiB still cached after the flushes"
        );
        // Dropped from the cache, not lost: every byte reads back.
        drop(f);
        let mut got = Digester::new(berth_oci::Algorithm::Sha256);
        assert_eq!(
            store.hash_upload(id, &mut got).await.unwrap(),
            64 * piece.len() as u64
        );
        let mut want = Digester::new(berth_oci::Algorithm::Sha256);
        for _ in 0..64 {
            want.update(piece);
        }
        assert_eq!(got.finish(), want.finish());
    }

    /// Whether `path` is on a filesystem known to take `O_DIRECT` (ext4, XFS, btrfs).
    fn supports_direct_io(path: &Path) -> bool {
        const MAGICS: [i64; 3] = [0xEF53, 0x5846_5342, 0x9123_683E];
        std::fs::File::open(path)
            .ok()
            .and_then(|f| rustix::fs::fstatfs(&f).ok())
            .is_some_and(|s| MAGICS.contains(&s.f_type))
    }

    #[tokio::test]
    async fn append_all_writes_runs_of_whole_blocks_direct_and_the_rest_cached() {
        let (_dir, store, id) = upload_on_disk().await;
        let mut backing = vec![0u8; (3 << 20) + DIRECT_ALIGN];
        let blocks = aligned_slice(&mut backing, 3 << 20);
        for (i, b) in blocks.iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        let (a, rest) = blocks.split_at(1 << 20);
        let (b, c) = rest.split_at(1 << 20);
        let small: &[u8] = b"not a whole block";
        let mut f = store.append_upload(id).unwrap();
        // a and b: one direct write; small: cached, and it misaligns the offset,
        // so c is cached too.
        f.append_all(&[a, b, small, c]).unwrap();
        assert_eq!(f.pos, (3 << 20) + small.len() as u64);
        let direct_used = matches!(f.direct, Direct::Open(_));
        drop(f);
        check_cached(&store, id, direct_used, (1 << 20) + small.len() as u64);
        assert_upload_holds(&store, id, &[a, b, small, c]).await;
    }

    /// A store with one empty upload, on the disk the workspace is built on (a
    /// tmpfs /tmp would prove nothing about the page cache or direct I/O).
    async fn upload_on_disk() -> (tempfile::TempDir, BlobStore, UploadId) {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
        let dir = tempfile::tempdir_in(&target)
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = UploadId::new();
        store.create_upload(id).await.unwrap();
        (dir, store, id)
    }

    /// Direct I/O was used where the filesystem takes it, and about `cached`
    /// bytes of the upload (what was not written direct) are in the page cache.
    fn check_cached(store: &BlobStore, id: UploadId, direct_used: bool, cached: u64) {
        let path = store.upload_path(id);
        if supports_direct_io(&path) {
            assert!(
                direct_used,
                "{path:?} supports O_DIRECT, yet it was not used"
            );
        }
        match (direct_used, resident_bytes(&path)) {
            (true, Some(resident)) => assert!(
                resident <= cached + 2 * DIRECT_ALIGN as u64 && resident + (64 << 10) >= cached,
                "{resident} bytes cached, expected about {cached}"
            ),
            _ => eprintln!("not checked: no direct I/O or no residency measure for {path:?}"),
        }
    }

    /// The upload's bytes are `parts`, in order.
    async fn assert_upload_holds(store: &BlobStore, id: UploadId, parts: &[&[u8]]) {
        let want: Vec<u8> = parts.concat();
        let mut got = Digester::new(berth_oci::Algorithm::Sha256);
        assert_eq!(
            store.hash_upload(id, &mut got).await.unwrap(),
            want.len() as u64
        );
        assert_eq!(got.finish(), Digest::sha256_of(&want), "bytes differ");
    }

    /// `len` bytes of `backing` starting at a [`DIRECT_ALIGN`]-aligned address.
    fn aligned_slice(backing: &mut [u8], len: usize) -> &mut [u8] {
        let skip = backing.as_ptr().align_offset(DIRECT_ALIGN);
        &mut backing[skip..skip + len]
    }

    #[tokio::test]
    async fn aligned_blocks_are_written_direct_and_the_rest_through_the_cache() {
        let (_dir, store, id) = upload_on_disk().await;
        let mut backing = vec![0u8; (1 << 20) + DIRECT_ALIGN];
        let block = aligned_slice(&mut backing, 1 << 20);
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let block = &*block;
        // Turned off, nothing is written direct.
        let off = store.clone().with_direct_io(false);
        let mut f = off.append_upload(id).unwrap();
        f.append(block).unwrap();
        assert!(matches!(f.direct, Direct::Off));
        drop(f);
        store.truncate_upload(id, 0).await.unwrap();
        let mut f = store.append_upload(id).unwrap();
        // Offset 0, aligned buffer: direct. Then 100 bytes (too short: cached),
        // which leave the offset misaligned, so the next block is cached too.
        f.append(block).unwrap();
        let direct_used = matches!(f.direct, Direct::Open(_));
        f.append(&block[..100]).unwrap();
        f.append(block).unwrap();
        assert_eq!(f.pos, (2 << 20) + 100);
        drop(f);
        // A new appender starts at the file's end: misaligned, so cached. Then a
        // block from a misaligned buffer (from the second byte): cached too.
        let mut f = store.append_upload(id).unwrap();
        assert_eq!(f.pos, (2 << 20) + 100);
        f.append(&block[1..]).unwrap();
        drop(f);
        // Before anything reads the file back: the first MiB never entered the
        // page cache; the other ~2 MiB did.
        check_cached(&store, id, direct_used, (2 << 20) + 99);
        assert_upload_holds(&store, id, &[block, &block[..100], block, &block[1..]]).await;
    }

    async fn committed(store: &BlobStore, data: &[u8]) -> Digest {
        let id = UploadId::new();
        store.create_upload(id).await.unwrap();
        let mut f = store.append_upload(id).unwrap();
        f.append(data).unwrap();
        drop(f);
        let digest = Digest::sha256_of(data);
        store.commit_upload(id, &digest).await.unwrap();
        digest
    }

    async fn collect(mut s: BlobStream) -> (Vec<u8>, Option<std::io::Error>) {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// Chunk buffers are read into again only once nothing else holds them: chunks a
    /// slow consumer still holds keep their bytes, and a consumer that lets go of each
    /// chunk gets recycled buffers (no fresh allocation) with the right bytes.
    #[tokio::test]
    async fn recycled_chunk_buffers_never_overwrite_a_chunk_still_held() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(READ_CHUNK * 12 + 5))
            .map(|i| (i % 251) as u8)
            .collect();
        let digest = committed(&store, &data).await;

        // Holding every chunk: none may be reused, all keep their contents.
        let blob = store.open_blob(&digest).await.unwrap().unwrap();
        let mut s = blob.stream(0, data.len() as u64);
        let mut held = Vec::new();
        while let Some(chunk) = s.next().await {
            held.push(chunk.unwrap());
        }
        assert!(held.concat() == data, "a held chunk was overwritten");

        // Letting go of each chunk: buffers come back (same allocation) and the
        // bytes are still right.
        let blob = store.open_blob(&digest).await.unwrap().unwrap();
        let mut s = blob.stream(0, data.len() as u64);
        let (mut out, mut addresses) = (Vec::new(), std::collections::HashSet::new());
        while let Some(chunk) = s.next().await {
            let chunk = chunk.unwrap();
            addresses.insert(chunk.as_ptr() as usize);
            out.extend_from_slice(&chunk);
        }
        assert!(out == data);
        // (Only the RWF_NOWAIT path recycles; a filesystem without it reads each
        // chunk on the blocking pool.)
        assert!(
            !s.nowait || addresses.len() <= RECYCLE + 2,
            "13 chunks used {} buffers: none recycled",
            addresses.len()
        );
    }

    /// Whole blobs and ranges come back byte for byte, whether read from the page
    /// cache without blocking or on the blocking pool.
    #[tokio::test]
    async fn streams_whole_blobs_and_ranges_on_both_read_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(READ_CHUNK * 3 + 7)).map(|i| (i % 253) as u8).collect();
        let digest = committed(&store, &data).await;
        for nowait in [true, false] {
            for (start, len) in [(0, data.len()), (5, READ_CHUNK + 1), (data.len() - 1, 1)] {
                let blob = store.open_blob(&digest).await.unwrap().unwrap();
                assert_eq!(blob.size(), data.len() as u64);
                let mut s = blob.stream(start as u64, len as u64);
                s.nowait = nowait;
                let (got, err) = collect(s).await;
                assert!(err.is_none(), "{err:?}");
                assert!(got == data[start..start + len], "range {start}+{len}");
            }
        }
    }

    /// A blob file cut short on disk ends the stream with an error, never with a
    /// short body that looks complete.
    #[tokio::test]
    async fn a_truncated_blob_file_ends_the_stream_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = vec![9u8; READ_CHUNK + 100];
        let digest = committed(&store, &data).await;
        let blob = store.open_blob(&digest).await.unwrap().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(store.blob_path(&digest))
            .unwrap()
            .set_len(10)
            .unwrap();
        let (got, err) = collect(blob.stream(0, data.len() as u64)).await;
        assert_eq!(got.len(), 10);
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn upload_ids_are_uuids_only() {
        assert!("../../etc".parse::<UploadId>().is_err());
        assert!("abc".parse::<UploadId>().is_err());
        let id = UploadId::new();
        assert_eq!(id.to_string().parse::<UploadId>().unwrap(), id);
    }
}
