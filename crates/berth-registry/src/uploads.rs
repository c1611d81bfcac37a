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
//! Bytes go to the upload's file while being hashed (see [`copy_into`]); the running
//! hash lives in memory beside its length. A chunk is answered once written,
//! while its hash may still be finishing: the next chunk's hasher takes the state
//! over when it is done (`Hash::Pending`). After a restart (or if a chunk failed
//! half-way, or a hasher died) the hash is rebuilt by reading the file once, so an
//! upload can always be continued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Digester};
use berth_storage::{BlobStore, DIRECT_ALIGN, StorageError, UploadId};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream, StreamExt};

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
    /// Keeps chunk buffers around between this session's requests.
    _pool: PoolUser,
}

/// Per-upload locks and hash states.
#[derive(Debug, Default)]
pub(crate) struct UploadTable {
    states: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<UploadState>>>>,
    /// Buffers the bodies of all uploads are copied into.
    pub(crate) pool: Arc<ChunkPool>,
}

impl UploadTable {
    /// The lock of one upload's state, created on first use.
    pub(crate) fn get(&self, id: UploadId) -> Arc<tokio::sync::Mutex<UploadState>> {
        let mut map = self.states.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id)
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(UploadState {
                    hashed: None,
                    _pool: self.pool.user(),
                }))
            })
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

/// The upload a body goes to: its file in the store, and the buffers it is copied
/// through on the way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Destination<'a> {
    pub(crate) blobs: &'a BlobStore,
    pub(crate) pool: &'a Arc<ChunkPool>,
    pub(crate) id: UploadId,
}

/// Append a chunk. `range` is the inclusive `(start, end)` the client declared, if
/// any; it must start where the upload ends. On any failure the file is cut back so
/// the upload is exactly as before. The guard comes back on success.
pub(crate) async fn append<S, E>(
    mut state: StateGuard,
    to: Destination<'_>,
    range: Option<(u64, u64)>,
    body: S,
    room: Option<u64>,
) -> Result<(StateGuard, u64)>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let Destination { blobs, id, .. } = to;
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
    } = copy_into(to, hash, body, state, room).await?;
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

/// Chunks in flight between a request and its writer (and hasher) thread: with
/// [`CHUNK_BUFFER`]-sized chunks an upload holds at most ~8 MiB of its body.
const QUEUE_CHUNKS: usize = 6;

/// Size of the buffers body chunks are copied into.
const CHUNK_BUFFER: usize = 1 << 20;

/// How long a partly filled buffer waits for more of the body before it is
/// written anyway.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// Free chunk buffers the pool keeps while uploads are open (more are freed).
/// Between two `PATCH`es the last chunk's hasher still holds up to
/// [`QUEUE_CHUNKS`] buffers while the next chunk fills new ones, and the writer
/// holds what it writes in one go: with 4 kept, chunked 200 MiB pushes faulted
/// in ~6,000 fresh pages each; with 12, ~1,000 (+5–7% throughput each step).
const KEEP_FREE: usize = 12;

/// Buffers that uploads copy their bodies into, shared by all uploads.
///
/// hyper reads a body into one buffer and hands out slices of it; while any slice
/// is alive it must read the next bytes into a fresh allocation, whose pages the
/// kernel faults in and zeroes one by one: 15% of the server's CPU on a 200 MiB
/// push (`perf`). Copying each slice out at once lets hyper reuse its buffer;
/// these buffers are reused in turn (whichever thread is last done with a chunk
/// gives it back), and filling them to 1 MiB halves the hand-overs between
/// threads. 200 MiB pushes, interleaved: server CPU −6 to −12%, throughput +4
/// to +19% (monolithic and chunked).
///
/// Free buffers are kept only while some upload is open (a session, or a request
/// that carries a body: see [`PoolUser`]) and for [`KEEP_FOR`] after, so an idle
/// server holds none.
#[derive(Debug, Default)]
pub(crate) struct ChunkPool {
    free: Mutex<FreeBuffers>,
}

#[derive(Debug, Default)]
struct FreeBuffers {
    buffers: Vec<BytesMut>,
    /// Open uploads ([`PoolUser`]s alive).
    users: usize,
    /// Counts the times `users` fell to 0, so that a release timer set then
    /// knows whether uploads came and went meanwhile.
    idle_epoch: u64,
}

/// How long the pool keeps its free buffers once no upload is open: a client
/// pushing blob after blob, each in its own request, reuses them instead of
/// faulting in fresh pages for every push (200 MiB monolithic pushes,
/// interleaved: minor faults per 5 pushes ~8,000 → ~1,400–2,200, throughput
/// −2 to +9%).
const KEEP_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// An open upload's claim on the pool: while any exists, the pool keeps up to
/// [`KEEP_FREE`] free buffers; [`KEEP_FOR`] after the last goes (at once outside
/// a runtime), they are freed unless another upload has started.
#[derive(Debug)]
pub(crate) struct PoolUser(Arc<ChunkPool>);

impl Drop for PoolUser {
    fn drop(&mut self) {
        let mut free = self.0.lock();
        free.users = free.users.saturating_sub(1);
        if free.users > 0 {
            return;
        }
        free.idle_epoch += 1;
        let epoch = free.idle_epoch;
        drop(free);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let pool = Arc::downgrade(&self.0);
                rt.spawn(async move {
                    tokio::time::sleep(KEEP_FOR).await;
                    if let Some(pool) = pool.upgrade() {
                        pool.release_if_idle(epoch);
                    }
                });
            }
            Err(_) => self.0.release_if_idle(epoch),
        }
    }
}

impl ChunkPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, FreeBuffers> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Free the buffers if no upload has been open since the `epoch`-th time
    /// the pool went idle.
    fn release_if_idle(&self, epoch: u64) {
        let mut free = self.lock();
        if free.users == 0 && free.idle_epoch == epoch {
            free.buffers = Vec::new();
        }
    }

    /// Register an open upload (see [`PoolUser`]).
    pub(crate) fn user(self: &Arc<Self>) -> PoolUser {
        self.lock().users += 1;
        PoolUser(self.clone())
    }

    /// An empty buffer, recycled if one is free.
    fn take(&self) -> BytesMut {
        let recycled = self.lock().buffers.pop();
        recycled.unwrap_or_else(|| aligned(BytesMut::with_capacity(CHUNK_BUFFER + DIRECT_ALIGN)))
    }

    /// Take `chunk`'s buffer back if this was the last reference to it.
    fn give(&self, chunk: Bytes) {
        if let Ok(buf) = chunk.try_into_mut() {
            let buf = aligned(buf);
            let mut free = self.lock();
            if free.users > 0 && free.buffers.len() < KEEP_FREE && buf.capacity() >= CHUNK_BUFFER {
                free.buffers.push(buf);
            }
        }
    }

    /// Copy `data` into `filling` (taking a buffer when needed) and hand every
    /// buffer that becomes full to `full`.
    fn fill(&self, filling: &mut Option<BytesMut>, mut data: &[u8], mut full: impl FnMut(Bytes)) {
        while !data.is_empty() {
            let buf = filling.get_or_insert_with(|| self.take());
            let n = (CHUNK_BUFFER - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if buf.len() >= CHUNK_BUFFER
                && let Some(done) = filling.take()
            {
                full(done.freeze());
            }
        }
    }
}

/// `buf`, emptied, starting at a [`DIRECT_ALIGN`]-aligned address where its
/// capacity allows (so the store can write it with direct I/O). Buffers are
/// allocated [`DIRECT_ALIGN`] bytes larger than they are filled for this; a
/// buffer given back may start anywhere in its allocation again (`bytes` moves
/// the data of a unique shared buffer to the front when it is made mutable).
fn aligned(mut buf: BytesMut) -> BytesMut {
    use bytes::Buf;
    buf.clear();
    let skip = buf.as_ptr().align_offset(DIRECT_ALIGN);
    if skip > 0 && buf.capacity() >= CHUNK_BUFFER + skip {
        buf.resize(skip, 0);
        buf.advance(skip);
    }
    buf
}

/// The hasher thread of [`copy_into`]: continue `hash` over every chunk
/// received and hand the result over. If the previous hasher failed there is
/// nothing to continue: it still takes every chunk (so the body is read and
/// written to the end) and hands nothing over, and the hash is rebuilt from the
/// file when it is needed.
fn hash_chunks(
    hash: Hash,
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    hashed: tokio::sync::oneshot::Sender<Digester>,
    pool: Arc<ChunkPool>,
) {
    let mut digester = hash.resolve_blocking();
    while let Some(chunk) = chunks.blocking_recv() {
        if let Some(d) = digester.as_mut() {
            d.update(&chunk);
        }
        pool.give(chunk);
    }
    if let Some(d) = digester {
        let _ = hashed.send(d);
    }
}

/// What [`copy_into`] hands back: the caller's token and the outcome.
pub(crate) struct Copied<K> {
    /// The token passed in, returned once the writer thread is done with the file.
    pub(crate) keep: K,
    /// The hash of everything before and in this body (maybe still being computed),
    /// and the number of bytes written.
    pub(crate) result: Result<(Hash, u64)>,
}

/// Stream `body` to the end of upload `id`, continuing the running hash `hash`.
///
/// Two blocking threads take each chunk as it arrives: one writes it (with direct
/// I/O where the store can, so it mostly waits for the device), the other hashes
/// it, so receiving, writing and hashing overlap; the hash, one pass over the
/// data, is the slowest and sets the pace. This returns once every byte is
/// written, while the hash may still be finishing (`Hash::Pending`): a `PATCH` is
/// answered then and the client sends its next chunk meanwhile; a request that
/// completes the blob awaits the hash. (Writing and hashing on one thread was
/// ~10% faster on 2 cores while uploads were written through the page cache;
/// with direct writes the thread would wait for the device between hashes.)
/// `keep` is held by the writer until it no longer touches the file, even if
/// this future is dropped, then handed back. The outer error means the writer
/// thread itself failed (the token is then lost).
pub(crate) async fn copy_into<S, E, K>(
    to: Destination<'_>,
    hash: Hash,
    body: S,
    keep: K,
    room: Option<u64>,
) -> Result<Copied<K>>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send,
    E: std::fmt::Display,
    K: Send + 'static,
{
    let Destination { blobs, pool, id } = to;
    let _user = pool.user();
    let (to_writer, mut writer_rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE_CHUNKS);
    let (to_hasher, hasher_rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE_CHUNKS);
    let (hashed, hash_rx) = tokio::sync::oneshot::channel();
    let hasher_pool = pool.clone();
    tokio::task::spawn_blocking(move || hash_chunks(hash, hasher_rx, hashed, hasher_pool));
    let writer_pool = pool.clone();
    let store = blobs.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut write = || -> Result<u64> {
            let mut file = store.append_upload(id)?;
            let mut n = 0u64;
            while let Some(first) = writer_rx.blocking_recv() {
                // What else is queued goes in the same write (see append_all).
                let mut batch = vec![first];
                while batch.len() < QUEUE_CHUNKS
                    && let Ok(more) = writer_rx.try_recv()
                {
                    batch.push(more);
                }
                let parts: Vec<&[u8]> = batch.iter().map(|b| &b[..]).collect();
                file.append_all(&parts)?;
                for chunk in batch {
                    n += chunk.len() as u64;
                    writer_pool.give(chunk);
                }
            }
            Ok(n)
        };
        let result = write();
        (keep, result)
    });
    let mut body = std::pin::pin!(body);
    let mut failure = None;
    let mut taken = 0u64;
    // Chunks are copied into pool buffers, which go to the threads when full, or
    // when the body has had nothing more for FLUSH_AFTER, so that what was received
    // is written soon however slowly it arrives.
    // A closed channel means the writer failed (reported below) or the hasher
    // died (reported below too): stop reading.
    let send = async |b: Bytes| -> bool {
        to_hasher.send(b.clone()).await.is_ok() && to_writer.send(b).await.is_ok()
    };
    let mut filling: Option<BytesMut> = None;
    loop {
        let next = match body.next().now_or_never() {
            Some(next) => next,
            None if filling.as_ref().is_none_or(|b| b.is_empty()) => body.next().await,
            None => match tokio::time::timeout(FLUSH_AFTER, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if let Some(part) = filling.take()
                        && !send(part.freeze()).await
                    {
                        break;
                    }
                    body.next().await
                }
            },
        };
        match next {
            None => {
                if let Some(part) = filling.take().filter(|b| !b.is_empty()) {
                    send(part.freeze()).await;
                }
                break;
            }
            // Over the quota: stop before writing past it.
            Some(Ok(c)) if room.is_some_and(|r| taken + c.len() as u64 > r) => {
                failure = Some(RegistryError::Denied(format!(
                    "the upload would exceed the repository's quota ({} more bytes allowed)",
                    room.unwrap_or(0)
                )));
                break;
            }
            Some(Ok(c)) => {
                taken += c.len() as u64;
                let mut full = Vec::new();
                pool.fill(&mut filling, &c, |b| full.push(b));
                drop(c);
                let mut open = true;
                for b in full {
                    open = open && send(b).await;
                }
                if !open {
                    break;
                }
            }
            Some(Err(e)) => {
                failure = Some(RegistryError::UploadInvalid(format!(
                    "request body ended early: {e}"
                )));
                break;
            }
        }
    }
    // The hasher ends only once this side has hung up: a closed channel here
    // means it died (a panic), and the chunks it missed cannot be trusted to
    // be in the file either.
    if to_hasher.is_closed() && failure.is_none() {
        failure = Some(RegistryError::Storage(StorageError::Task(
            "the upload's hasher stopped".into(),
        )));
    }
    drop((to_writer, to_hasher));
    let (keep, written) = writer.await.map_err(RegistryError::task)?;
    let result = match failure {
        Some(e) => Err(e),
        None => written.map(|n| (Hash::Pending(hash_rx), n)),
    };
    Ok(Copied { keep, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `pieces` through `fill` and return the buffers handed on, plus the last
    /// partly filled one.
    fn filled(pool: &ChunkPool, pieces: &[&[u8]]) -> (Vec<Bytes>, Option<BytesMut>) {
        let mut filling = None;
        let mut full = Vec::new();
        for p in pieces {
            pool.fill(&mut filling, p, |b| full.push(b));
        }
        (full, filling)
    }

    /// A body streamed to an upload whose running hash was lost (the hasher of
    /// the chunk before failed) is still read and written to the end, and its
    /// hash is left to be rebuilt: the length reported is the body's, not the
    /// bytes that happened to be through when the hasher would have given up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_running_hash_still_takes_the_whole_body() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let pool = Arc::new(ChunkPool::default());
        let id = UploadId::new();
        blobs.create_upload(id).await.unwrap();
        let (lost, rx) = tokio::sync::oneshot::channel::<Digester>();
        drop(lost);
        let body: Vec<u8> = (0..(5 << 20) + 123).map(|i| (i % 251) as u8).collect();
        let frames: Vec<std::result::Result<Bytes, std::convert::Infallible>> = body
            .chunks(64 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let to = Destination {
            blobs: &blobs,
            pool: &pool,
            id,
        };
        let copied = copy_into(
            to,
            Hash::Pending(rx),
            futures_util::stream::iter(frames),
            (),
            None,
        )
        .await
        .unwrap();
        let (hash, n) = copied.result.unwrap();
        assert_eq!(n, body.len() as u64, "the whole body, not a prefix");
        assert!(hash.resolve().await.is_none(), "no hash to hand over");
        let mut rebuilt = Digester::new(Algorithm::Sha256);
        assert_eq!(blobs.hash_upload(id, &mut rebuilt).await.unwrap(), n);
        assert_eq!(rebuilt.finish(), Digest::sha256_of(&body));
    }

    #[test]
    fn fill_hands_on_full_buffers_in_order_and_keeps_the_rest() {
        let pool = ChunkPool::default();
        let a: Vec<u8> = (0..(700 << 10)).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..(900 << 10)).map(|i| (i % 241) as u8).collect();
        let (full, rest) = filled(&pool, &[&a, &b, b"tail"]);
        assert_eq!(full.len(), 1, "1.6 MiB fills one 1 MiB buffer");
        assert_eq!(full[0].len(), CHUNK_BUFFER);
        let rest = rest.expect("the remainder waits in a second buffer");
        let mut joined = full[0].to_vec();
        joined.extend_from_slice(&rest);
        let mut want = a.clone();
        want.extend_from_slice(&b);
        want.extend_from_slice(b"tail");
        assert_eq!(joined, want, "no byte lost, duplicated or reordered");
    }

    #[tokio::test(start_paused = true)]
    async fn free_buffers_outlive_the_last_upload_briefly_then_go() {
        let pool = Arc::new(ChunkPool::default());
        let give_one = |pool: &ChunkPool| {
            let (mut full, _) = filled(pool, &[&vec![9u8; CHUNK_BUFFER]]);
            pool.give(full.remove(0));
        };
        let first = pool.user();
        give_one(&pool);
        drop(first);
        tokio::time::sleep(KEEP_FOR / 2).await;
        assert_eq!(pool.lock().buffers.len(), 1, "freed before KEEP_FOR");
        // An upload within the window keeps them past the first timer.
        let second = pool.user();
        tokio::time::sleep(KEEP_FOR).await;
        assert_eq!(
            pool.lock().buffers.len(),
            1,
            "freed while an upload is open"
        );
        drop(second);
        tokio::time::sleep(KEEP_FOR / 2).await;
        assert_eq!(pool.lock().buffers.len(), 1);
        tokio::time::sleep(KEEP_FOR).await;
        assert!(pool.lock().buffers.is_empty(), "kept after KEEP_FOR idle");
    }

    #[test]
    fn buffers_start_aligned_for_direct_io_also_once_recycled() {
        let pool = Arc::new(ChunkPool::default());
        let _user = pool.user();
        for round in 0..3 {
            let (mut full, rest) = filled(&pool, &[&vec![round; CHUNK_BUFFER + 10]]);
            let chunk = full.remove(0);
            assert_eq!(chunk.as_ptr().addr() % DIRECT_ALIGN, 0, "round {round}");
            assert_eq!(chunk.len(), CHUNK_BUFFER);
            assert_eq!(rest.map(|r| r.as_ptr().addr() % DIRECT_ALIGN), Some(0));
            pool.give(chunk);
        }
        let recycled = pool.take();
        assert_eq!(recycled.as_ptr().addr() % DIRECT_ALIGN, 0);
        assert!(recycled.is_empty() && recycled.capacity() >= CHUNK_BUFFER);
    }

    #[test]
    fn buffers_are_reused_only_once_free_and_only_while_uploads_are_open() {
        let pool = Arc::new(ChunkPool::default());
        let user = pool.user();
        let (mut full, _) = filled(&pool, &[&vec![1u8; CHUNK_BUFFER]]);
        let chunk = full.remove(0);
        let addr = chunk.as_ptr();
        // Still held elsewhere (the hasher): giving it back must not free it up.
        let held = chunk.clone();
        pool.give(chunk);
        let other = pool.take();
        assert_ne!(
            other.as_ptr(),
            addr,
            "a chunk still referenced was recycled"
        );
        assert_eq!(held[..], vec![1u8; CHUNK_BUFFER][..]);
        // The last holder gives it back: the next buffer taken is that one.
        pool.give(held);
        assert_eq!(pool.take().as_ptr(), addr);
        // With no upload open the pool keeps nothing.
        let (mut full, _) = filled(&pool, &[&vec![2u8; CHUNK_BUFFER]]);
        pool.give(full.remove(0));
        assert_eq!(pool.lock().buffers.len(), 1);
        drop(user);
        assert!(
            pool.lock().buffers.is_empty(),
            "free buffers outlived the uploads"
        );
        let (mut full, _) = filled(&pool, &[&vec![3u8; CHUNK_BUFFER]]);
        pool.give(full.remove(0));
        assert!(pool.lock().buffers.is_empty());
    }
}
