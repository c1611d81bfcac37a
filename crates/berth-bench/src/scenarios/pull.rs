//! `pull`: download one blob of `--size` again and again.
//!
//! Setup pushes the blob unless the repository has it (its content depends only
//! on the size, so later runs reuse it). Each operation is a `GET` checked for
//! status, `Content-Length` and length, and every `--verify-every`th body is
//! hashed and compared with the digest (hashing is part of the operation).

use std::sync::Arc;

use crate::content::{random_bytes, sha256_digest, slices};
use crate::error::BenchError;
use crate::http::Conn;
use crate::oci;
use crate::options::Options;
use crate::report::{Outcome, Report};
use crate::runner::{OpResult, Worker, run_iterations};

use super::{ExpectedBlob, blob_seed, get_blob, uri};

struct PullWorker {
    want: Arc<ExpectedBlob>,
    verify_every: u64,
}

impl Worker for PullWorker {
    type Op = bool;

    fn prepare(&mut self, index: u64) -> (usize, bool) {
        (
            0,
            self.verify_every > 0 && index.is_multiple_of(self.verify_every),
        )
    }

    async fn run(&mut self, conn: &mut Conn, verify: bool) -> OpResult {
        get_blob(conn, &self.want, verify).await
    }
}

/// Make sure `repo` has the reproducible blob of `size` bytes; its digest.
pub async fn ensure_blob(
    opts: &Options,
    size: u64,
    notes: &mut Vec<String>,
) -> Result<(String, bytes::Bytes), BenchError> {
    let (digest, blob) = tokio::task::spawn_blocking(move || {
        let blob = random_bytes(size as usize, Some(blob_seed(size)));
        (sha256_digest(&blob), blob)
    })
    .await?;
    let mut conn = Conn::new(opts.target.clone());
    if !oci::blob_exists(&mut conn, &opts.repo, &digest).await? {
        let mode = super::probe(&mut conn, &opts.repo, notes).await?;
        oci::push_blob(&mut conn, &opts.repo, &digest, slices(&blob), mode).await?;
    }
    Ok((digest, blob))
}

/// Run `pull`.
pub async fn run(opts: &Options) -> Result<Outcome, BenchError> {
    // Upload notes are about the set-up, not about what is measured.
    let (digest, _) = ensure_blob(opts, opts.size, &mut Vec::new()).await?;
    let path = format!("/v2/{}/blobs/{digest}", opts.repo);
    let want = Arc::new(ExpectedBlob {
        uri: uri(&path)?,
        digest,
        size: opts.size,
    });
    let workers = (0..opts.concurrency)
        .map(|_| PullWorker {
            want: want.clone(),
            verify_every: opts.verify_every,
        })
        .collect();
    let measured = run_iterations(
        &opts.target,
        workers,
        1,
        opts.warmup_ops,
        opts.iterations,
        opts.op_timeout,
    )
    .await?;
    let verify = match opts.verify_every {
        0 => "no body hashed".to_owned(),
        1 => "every body hashed and compared".to_owned(),
        n => format!("every {n}th body hashed and compared"),
    };
    let info = super::info(opts, format!("GET {path} (200; {verify})"));
    Ok(Outcome::Run(Box::new(Report::new(
        info,
        measured,
        &["pull"],
    ))))
}
