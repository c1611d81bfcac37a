//! `push` and `push-chunked`: upload fresh random blobs of `--size`.
//!
//! Before timing: one random buffer is generated, each operation gets its own
//! variant of it (its last 8 bytes differ, so every digest is new) and every
//! digest is computed. Timed: the whole upload, from the first request to the
//! `201`: one `POST ?digest=` with the body (or `POST` then `PUT` where the
//! registry has no single-`POST` uploads), or `POST`, `PATCH` per chunk, `PUT`.

use std::sync::Arc;

use crate::content::VariedBlob;
use crate::error::BenchError;
use crate::http::Conn;
use crate::oci::{self, PushMode};
use crate::options::{Options, Scenario};
use crate::report::{Outcome, Report};
use crate::runner::{OpResult, Worker, run_iterations};

struct Plan {
    repo: String,
    blob: VariedBlob,
    digests: Vec<String>,
    mode: PushMode,
    chunk: Option<u64>,
}

struct PushWorker(Arc<Plan>);

impl Worker for PushWorker {
    type Op = u64;

    fn prepare(&mut self, index: u64) -> (usize, u64) {
        (0, index)
    }

    async fn run(&mut self, conn: &mut Conn, variant: u64) -> OpResult {
        let plan = &*self.0;
        let digest = usize::try_from(variant)
            .ok()
            .and_then(|i| plan.digests.get(i))
            .ok_or_else(|| format!("no digest prepared for operation {variant}"))?;
        let size = plan.blob.size();
        let result = match plan.chunk {
            None => {
                let parts = plan.blob.parts(variant, 0..size);
                oci::push_blob(conn, &plan.repo, digest, parts, plan.mode).await
            }
            Some(chunk) => {
                oci::push_chunked(conn, &plan.repo, &plan.blob, variant, digest, chunk).await
            }
        };
        result.map(|()| size).map_err(|f| f.sample())
    }
}

/// Run `push` or `push-chunked`.
pub async fn run(opts: &Options) -> Result<Outcome, BenchError> {
    let chunked = opts.scenario == Scenario::PushChunked;
    let mut notes = Vec::new();
    let mode = if chunked {
        PushMode::SinglePost
    } else {
        let mut conn = Conn::new(opts.target.clone());
        super::probe(&mut conn, &opts.repo, &mut notes).await?
    };
    let total = opts.warmup_ops + opts.iterations;
    let size = opts.size;
    let plan = tokio::task::spawn_blocking(move || {
        let blob = VariedBlob::new(size as usize, None, rand::random());
        let digests = (0..total).map(|v| blob.digest(v)).collect();
        (blob, digests)
    })
    .await?;
    let plan = Arc::new(Plan {
        repo: opts.repo.clone(),
        blob: plan.0,
        digests: plan.1,
        mode,
        chunk: chunked.then_some(opts.chunk_size),
    });
    let workers = (0..opts.concurrency)
        .map(|_| PushWorker(plan.clone()))
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
    let uploads = format!("/v2/{}/blobs/uploads/", opts.repo);
    let operation = if chunked {
        format!("POST {uploads}, PATCH per chunk, PUT ?digest= (201); latency of the whole upload")
    } else {
        match mode {
            PushMode::SinglePost => format!("POST {uploads}?digest=D with the whole blob (201)"),
            PushMode::PostThenPut => {
                format!("POST {uploads} (202), PUT <location>?digest=D with the whole blob (201)")
            }
        }
    };
    let mut info = super::info(opts, operation);
    info.notes = notes;
    Ok(Outcome::Run(Box::new(Report::new(
        info,
        measured,
        &["push"],
    ))))
}
