//! Handing a blob as it downloads to synchronous code (the SBOM cataloguer, the
//! layer unpacker) on a blocking thread: chunks go through a bounded channel to a
//! `Read`, and the blob is hashed on the way, so the consumer sees every byte once
//! and the caller learns whether the blob matched its digest.

use berth_client::ClientError;
use berth_client::retry::RetryPolicy;
use berth_client::source::Source;
use berth_oci::digest::{Digest, Digester};
use berth_oci::manifest::Descriptor;
use bytes::Bytes;

use crate::client::{Failure, Res};

/// Chunks in flight between the download and the consumer.
const CHANNEL_CHUNKS: usize = 8;

/// A `Read` over chunks sent from the async side.
pub struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.current = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Download blob `desc` from `source` into `consume`, which runs on a blocking
/// thread with a reader over the bytes. Returns what `consume` returned once the
/// whole blob has been read and matched its digest; a mismatch is an error naming
/// `what` and both digests (whatever `consume` produced is then discarded).
pub async fn stream_blob<T, F>(
    source: &Source,
    desc: &Descriptor,
    retry: RetryPolicy,
    what: &str,
    consume: F,
) -> Res<T>
where
    F: FnOnce(ChunkReader) -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let worker = tokio::task::spawn_blocking(move || {
        consume(ChunkReader {
            rx,
            current: Bytes::new(),
        })
    });
    let mut digester = Digester::new(desc.digest.algorithm());
    let mut sender = Some(tx);
    let streamed = async {
        let mut reader = source.blob(desc, retry).await?;
        while let Some(c) = reader.next().await? {
            digester.update(&c);
            if let Some(tx) = &sender
                && tx.send(c).await.is_err()
            {
                // The consumer stopped reading (done or failed); keep hashing.
                sender = None;
            }
        }
        Ok::<(), ClientError>(())
    }
    .await;
    drop(sender);
    let out = worker
        .await
        .map_err(|e| Failure::Usage(format!("{what}: worker thread: {e}")))?;
    streamed?;
    let actual: Digest = digester.finish();
    if actual != desc.digest {
        return Err(Failure::Client(ClientError::DigestMismatch {
            what: what.to_owned(),
            expected: desc.digest.clone(),
            actual,
        }));
    }
    Ok(out)
}
