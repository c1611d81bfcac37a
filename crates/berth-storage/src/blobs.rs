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
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
}

/// An upload's data file opened for appending.
#[derive(Debug)]
pub struct UploadFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl UploadFile {
    /// Append bytes at the end of the upload.
    pub async fn append(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .await
            .map_err(|e| StorageError::io("write", &self.path, e))
    }

    /// Flush buffered writes to the OS.
    pub async fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .await
            .map_err(|e| StorageError::io("flush", &self.path, e))
    }
}

impl BlobStore {
    /// Open (creating if needed) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let blobs = data_dir.join("blobs");
        let uploads = data_dir.join("uploads");
        for dir in [&blobs, &uploads] {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create", dir, e))?;
        }
        Ok(BlobStore { blobs, uploads })
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

    /// Open a committed blob for reading, with its size.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<(tokio::fs::File, u64)>> {
        let path = self.blob_path(digest);
        match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let len = f
                    .metadata()
                    .await
                    .map_err(|e| StorageError::io("stat", &path, e))?
                    .len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("open", path, e)),
        }
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

    /// Open an upload's data file for appending.
    pub async fn append_upload(&self, id: UploadId) -> Result<UploadFile> {
        let path = self.upload_path(id);
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(|e| StorageError::io("open", &path, e))?;
        Ok(UploadFile { file, path })
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
        let mut f = store.append_upload(id).await.unwrap();
        f.append(b"hello ").await.unwrap();
        f.append(b"world").await.unwrap();
        f.flush().await.unwrap();
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
        let mut f = store.append_upload(id).await.unwrap();
        f.append(b"abcdef").await.unwrap();
        f.flush().await.unwrap();
        store.truncate_upload(id, 3).await.unwrap();
        assert_eq!(store.upload_len(id).await.unwrap(), Some(3));
        store.delete_upload(id).await.unwrap();
        assert_eq!(store.upload_len(id).await.unwrap(), None);
    }

    #[test]
    fn upload_ids_are_uuids_only() {
        assert!("../../etc".parse::<UploadId>().is_err());
        assert!("abc".parse::<UploadId>().is_err());
        let id = UploadId::new();
        assert_eq!(id.to_string().parse::<UploadId>().unwrap(), id);
    }
}
