//! Upload sessions: the state machine behind `POST`/`PATCH`/`PUT`/`GET`/`DELETE` on
//! `/blobs/uploads/`.
//!
//! ```text
//!   POST ──► Open(len=0) ──PATCH (range starts at len)──► Open(len+n)
//!              │   ▲                                       │
//!              │   └──PATCH out of order: 416, unchanged───┘
//!              ├──PUT ?digest (optional last chunk)──► verify ──ok──► Committed (blob visible)
//!              │                                          └─mismatch─► Removed (400 DIGEST_INVALID)
//!              └──DELETE──► Removed
//! ```
//!
//! Bytes go to the upload's file while being hashed; the running hash lives in memory
//! beside its length. After a restart (or if a chunk failed half-way) the hash is
//! rebuilt by reading the file once, so an upload can always be continued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Digester};
use berth_storage::{BlobStore, UploadId};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::{RegistryError, Result};

/// Running state of one upload: bytes received and their hash so far.
#[derive(Debug)]
pub(crate) struct UploadState {
    /// `None` until rebuilt from the file (after a restart or a failed chunk).
    hashed: Option<(Digester, u64)>,
}

/// Per-upload locks and hash states.
#[derive(Debug, Default)]
pub(crate) struct UploadTable {
    states: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<UploadState>>>>,
}

impl UploadTable {
    /// The lock of one upload's state, created on first use.
    pub(crate) fn get(&self, id: UploadId) -> Arc<tokio::sync::Mutex<UploadState>> {
        let mut map = self.states.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(UploadState { hashed: None })))
            .clone()
    }

    /// Forget an upload (completed or cancelled).
    pub(crate) fn remove(&self, id: UploadId) {
        let mut map = self.states.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&id);
    }
}

/// Hash a whole upload file from the start.
async fn rehash(blobs: &BlobStore, id: UploadId, algorithm: Algorithm) -> Result<(Digester, u64)> {
    let mut digester = Digester::new(algorithm);
    let len = blobs.hash_upload(id, &mut digester).await?;
    Ok((digester, len))
}

impl UploadState {
    /// Current length and hash, rebuilding them from the file if needed.
    pub(crate) async fn current(
        &mut self,
        blobs: &BlobStore,
        id: UploadId,
    ) -> Result<(Digester, u64)> {
        if let Some((d, len)) = &self.hashed {
            return Ok((d.clone(), *len));
        }
        let (d, len) = rehash(blobs, id, Algorithm::Sha256).await?;
        self.hashed = Some((d.clone(), len));
        Ok((d, len))
    }

    /// Bytes received so far.
    pub(crate) async fn len(&mut self, blobs: &BlobStore, id: UploadId) -> Result<u64> {
        if let Some((_, len)) = &self.hashed {
            return Ok(*len);
        }
        blobs
            .upload_len(id)
            .await?
            .ok_or_else(|| RegistryError::UploadUnknown(id.to_string()))
    }

    /// Append a chunk. `range` is the inclusive `(start, end)` the client declared,
    /// if any; it must start where the upload ends. On any failure the file is cut
    /// back so the upload is exactly as before.
    pub(crate) async fn append<S, E>(
        &mut self,
        blobs: &BlobStore,
        id: UploadId,
        range: Option<(u64, u64)>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let (mut digester, start_len) = self.current(blobs, id).await?;
        if let Some((start, end)) = range {
            if start != start_len {
                return Err(RegistryError::RangeNotSatisfiable {
                    current: start_len,
                    start,
                });
            }
            if end < start {
                return Err(RegistryError::UploadInvalid(format!(
                    "Content-Range {start}-{end} ends before it starts"
                )));
            }
        }
        // If this future is dropped mid-body (client gone), the file may hold part of
        // the chunk: forget the in-memory state so it is rebuilt from the file.
        self.hashed = None;
        let written = copy_into(blobs, id, &mut digester, body).await;
        let result = match written {
            Ok(n) => match range {
                Some((start, end)) if n != end - start + 1 => {
                    Err(RegistryError::SizeInvalid(format!(
                        "Content-Range {start}-{end} declares {} bytes but the body held {n}",
                        end - start + 1
                    )))
                }
                _ => Ok(n),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(n) => {
                let len = start_len + n;
                self.hashed = Some((digester, len));
                Ok(len)
            }
            Err(e) => {
                blobs.truncate_upload(id, start_len).await?;
                Err(e)
            }
        }
    }

    /// Digest of everything received, in `algorithm`.
    pub(crate) async fn finish(
        &mut self,
        blobs: &BlobStore,
        id: UploadId,
        algorithm: Algorithm,
    ) -> Result<(Digest, u64)> {
        let (digester, len) = self.current(blobs, id).await?;
        if digester.algorithm() == algorithm {
            return Ok((digester.finish(), len));
        }
        let (d, len) = rehash(blobs, id, algorithm).await?;
        Ok((d.finish(), len))
    }
}

/// Stream `body` to the end of upload `id`, hashing it; returns bytes written.
pub(crate) async fn copy_into<S, E>(
    blobs: &BlobStore,
    id: UploadId,
    digester: &mut Digester,
    body: S,
) -> Result<u64>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let mut file = blobs.append_upload(id).await?;
    let mut body = std::pin::pin!(body);
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| RegistryError::UploadInvalid(format!("request body ended early: {e}")))?;
        digester.update(&chunk);
        file.append(&chunk).await?;
        n += chunk.len() as u64;
    }
    file.flush().await?;
    Ok(n)
}
