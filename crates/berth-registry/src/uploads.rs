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
//! Bytes go to the upload's file while being hashed (see [`Pace`]); the running
//! hash lives in memory beside its length. A chunk is answered once written,
//! while its hash may still be finishing: the next chunk's hasher takes the state
//! over when it is done (`Hash::Pending`). After a restart (or if a chunk failed
//! half-way, or a hasher died) the hash is rebuilt by reading the file once, so an
//! upload can always be continued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Digester};
use berth_storage::{BlobStore, UploadId};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::{RegistryError, Result};

/// The running hash of an upload's bytes.
#[derive(Debug)]
pub(crate) enum Hash {
    /// Up to date (boxed: a digester is a few hundred bytes, a receiver a pointer).
    Ready(Box<Digester>),
    /// Still being computed by the hasher of the last chunk, which hands it over
    /// when done: a `PATCH` is answered once its bytes are written, and the next
    /// chunk arrives while the last one is still being hashed.
    Pending(tokio::sync::oneshot::Receiver<Digester>),
}

impl Hash {
    /// Wait for the hash; `None` if the hasher that owed it failed.
    pub(crate) async fn resolve(self) -> Option<Digester> {
        match self {
            Hash::Ready(d) => Some(*d),
            Hash::Pending(rx) => rx.await.ok(),
        }
    }

    /// As [`Hash::resolve`], from a blocking thread.
    fn resolve_blocking(self) -> Option<Digester> {
        match self {
            Hash::Ready(d) => Some(*d),
            Hash::Pending(rx) => rx.blocking_recv().ok(),
        }
    }
}

/// Running state of one upload: bytes received and their hash so far.
#[derive(Debug)]
pub(crate) struct UploadState {
    /// `None` until rebuilt from the file (after a restart or a failed chunk).
    hashed: Option<(Hash, u64)>,
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
    /// Take the current hash and length out of the state, rebuilding them from the
    /// file if they are not known.
    async fn take_current(&mut self, blobs: &BlobStore, id: UploadId) -> Result<(Hash, u64)> {
        if let Some(current) = self.hashed.take() {
            return Ok(current);
        }
        let (d, len) = rehash(blobs, id, Algorithm::Sha256).await?;
        Ok((Hash::Ready(Box::new(d)), len))
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

    /// Digest of everything received, in `algorithm`.
    pub(crate) async fn finish(
        &mut self,
        blobs: &BlobStore,
        id: UploadId,
        algorithm: Algorithm,
    ) -> Result<(Digest, u64)> {
        let (hash, len) = self.take_current(blobs, id).await?;
        if let Some(d) = hash.resolve().await
            && d.algorithm() == algorithm
        {
            return Ok((d.finish(), len));
        }
        // Another algorithm than the running hash's, or a hasher that failed.
        let (d, len) = rehash(blobs, id, algorithm).await?;
        Ok((d.finish(), len))
    }
}

/// The lock on one upload's state, held across awaits and handed to the writer
/// thread while a chunk is written.
pub(crate) type StateGuard = tokio::sync::OwnedMutexGuard<UploadState>;

/// Append a chunk. `range` is the inclusive `(start, end)` the client declared, if
/// any; it must start where the upload ends. On any failure the file is cut back so
/// the upload is exactly as before. The guard comes back on success.
pub(crate) async fn append<S, E>(
    mut state: StateGuard,
    blobs: &BlobStore,
    id: UploadId,
    range: Option<(u64, u64)>,
    body: S,
    room: Option<u64>,
    pace: Pace,
) -> Result<(StateGuard, u64)>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let (hash, start_len) = state.take_current(blobs, id).await?;
    let refused = match range {
        Some((start, _)) if start != start_len => Some(RegistryError::RangeNotSatisfiable {
            current: start_len,
            start,
        }),
        Some((start, end)) if end < start => Some(RegistryError::UploadInvalid(format!(
            "Content-Range {start}-{end} ends before it starts"
        ))),
        _ => None,
    };
    if let Some(e) = refused {
        state.hashed = Some((hash, start_len));
        return Err(e);
    }
    // From here the state holds no hash: if this future is dropped mid-body (client
    // gone), the file may hold part of the chunk, and the hash is rebuilt from the
    // file. The writer thread keeps the guard until it has stopped writing, so the
    // next request on this upload waits for it.
    let Copied {
        keep: mut state,
        result,
    } = copy_into(blobs, id, hash, body, state, room, pace).await?;
    let result = match result {
        Ok((digester, n)) => match range {
            Some((start, end)) if n != end - start + 1 => Err(RegistryError::SizeInvalid(format!(
                "Content-Range {start}-{end} declares {} bytes but the body held {n}",
                end - start + 1
            ))),
            _ => Ok((digester, n)),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok((hash, n)) => {
            let len = start_len + n;
            state.hashed = Some((hash, len));
            Ok((state, len))
        }
        Err(e) => {
            blobs.truncate_upload(id, start_len).await?;
            Err(e)
        }
    }
}

/// Chunks in flight between a request and its writer thread. hyper hands over at
/// most ~400 KiB per chunk, so an upload never holds more than ~6 MiB in memory.
const QUEUE_CHUNKS: usize = 16;

/// The hasher thread of [`Pace::Overlapped`]: continue `hash` over every chunk
/// received and hand the result over; nothing if the previous hasher failed.
fn hash_chunks(
    hash: Hash,
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    hashed: tokio::sync::oneshot::Sender<Digester>,
) {
    let Some(mut digester) = hash.resolve_blocking() else {
        return;
    };
    while let Some(chunk) = chunks.blocking_recv() {
        digester.update(&chunk);
    }
    let _ = hashed.send(digester);
}

/// What [`copy_into`] hands back: the caller's token and the outcome.
pub(crate) struct Copied<K> {
    /// The token passed in, returned once the writer thread is done with the file.
    pub(crate) keep: K,
    /// The hash of everything before and in this body (maybe still being computed),
    /// and the number of bytes written.
    pub(crate) result: Result<(Hash, u64)>,
}

/// How a body's writing and hashing are laid out on threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// A chunk (`PATCH`): one thread writes and another hashes, and the request is
    /// answered once every byte is written, while the hash may still be finishing
    /// (`Hash::Pending`), so the client sends its next chunk meanwhile.
    Overlapped,
    /// A request that completes the blob (`POST ?digest=`, `PUT ?digest=` with a
    /// body): it needs the hash as soon as the body ends, so a second thread buys
    /// nothing. One thread writes each chunk and then hashes it while it is still
    /// in that core's cache: on 2 cores, ~10% more throughput than two threads
    /// reading every chunk from memory (200 MiB pushes to tmpfs, same run).
    Inline,
}

/// Stream `body` to the end of upload `id`, continuing the running hash `hash`.
///
/// Blocking threads (see [`Pace`]) take each chunk as it arrives, so receiving,
/// writing and hashing overlap; the hash, one pass over the data, is the slowest
/// and sets the pace. This returns once every byte is written; with
/// [`Pace::Overlapped`] the hash may still be running (`Hash::Pending`). `keep` is
/// held by the writer until it no longer touches the file, even if this future is
/// dropped, then handed back. The outer error means the writer thread itself
/// failed (the token is then lost).
pub(crate) async fn copy_into<S, E, K>(
    blobs: &BlobStore,
    id: UploadId,
    hash: Hash,
    body: S,
    keep: K,
    room: Option<u64>,
    pace: Pace,
) -> Result<Copied<K>>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send,
    E: std::fmt::Display,
    K: Send + 'static,
{
    let (to_writer, mut writer_rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE_CHUNKS);
    let (hashed, hash_rx) = tokio::sync::oneshot::channel();
    // Overlapped: the hasher's own thread and queue. Inline: the writer hashes.
    let (to_hasher, inline) = match pace {
        Pace::Overlapped => {
            let (to_hasher, hasher_rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE_CHUNKS);
            tokio::task::spawn_blocking(move || hash_chunks(hash, hasher_rx, hashed));
            (Some(to_hasher), None)
        }
        Pace::Inline => (None, Some((hash, hashed))),
    };
    let store = blobs.clone();
    let writer = tokio::task::spawn_blocking(move || {
        // The previous chunk's hasher may still be running: wait for its state.
        // If it failed, hash nothing; whoever needs the hash rebuilds it.
        let (mut digester, hashed) = match inline {
            Some((hash, hashed)) => (hash.resolve_blocking(), Some(hashed)),
            None => (None, None),
        };
        let mut write = || -> Result<u64> {
            let mut file = store.append_upload(id)?;
            let mut n = 0u64;
            while let Some(chunk) = writer_rx.blocking_recv() {
                file.append(&chunk)?;
                if let Some(d) = digester.as_mut() {
                    d.update(&chunk);
                }
                n += chunk.len() as u64;
            }
            Ok(n)
        };
        let result = write();
        if let (Ok(_), Some(d), Some(hashed)) = (&result, digester, hashed) {
            let _ = hashed.send(d);
        }
        (keep, result)
    });
    let mut body = std::pin::pin!(body);
    let mut failure = None;
    let mut taken = 0u64;
    while let Some(chunk) = body.next().await {
        match chunk {
            // Over the quota: stop before writing past it.
            Ok(c) if room.is_some_and(|r| taken + c.len() as u64 > r) => {
                failure = Some(RegistryError::Denied(format!(
                    "the upload would exceed the repository's quota ({} more bytes allowed)",
                    room.unwrap_or(0)
                )));
                break;
            }
            // A closed channel means the writer failed (reported below) or the
            // hasher gave up (the hash is then rebuilt when needed).
            Ok(c) => {
                taken += c.len() as u64;
                if let Some(h) = &to_hasher
                    && h.send(c.clone()).await.is_err()
                {
                    break;
                }
                if to_writer.send(c).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(RegistryError::UploadInvalid(format!(
                    "request body ended early: {e}"
                )));
                break;
            }
        }
    }
    drop((to_writer, to_hasher));
    let (keep, written) = writer.await.map_err(RegistryError::task)?;
    let result = match failure {
        Some(e) => Err(e),
        None => written.map(|n| (Hash::Pending(hash_rx), n)),
    };
    Ok(Copied { keep, result })
}
