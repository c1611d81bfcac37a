//! `berth bench`: a load generator for any OCI registry (distribution-spec v1.1),
//! in the spirit of zot's `zb`, small enough in its own costs to share a small
//! machine with the server it measures.
//!
//! - [`options`]: the arguments and their checks.
//! - [`http`]: one keep-alive HTTP/1.1 connection per worker (hyper's low-level
//!   client over `TcpStream` with `TCP_NODELAY`; reconnects after errors). Plain
//!   HTTP only; `--user` sends Basic credentials (no token flow).
//! - [`socket`]: the connection's `TcpStream`, which counts the bytes it reads
//!   and raises `SO_RCVLOWAT` while a blob body arrives, so the generator wakes
//!   once per 256 KiB instead of once per segment (the server pays for each wake).
//! - [`content`]: random blobs and the small image; [`oci`]: the protocol steps.
//! - [`runner`]: the drivers (a number of operations; a duration, closed or open
//!   loop). Set-up and warm-up are never measured.
//! - [`stats`], [`report`]: nearest-rank percentiles; JSON and text reports.
//! - [`scenarios`]: push, push-chunked, pull, manifest, tags, mixed, seed, ready.
//!
//! Exit codes (applied by the binary): 0 all measured requests succeeded, 1 some
//! failed (the report is still printed) or `ready` timed out, 2 usage or set-up
//! failure.
//!
//! # Measurement rules
//!
//! - `requests` counts measured operations, failed ones included; latency
//!   percentiles, `bytes` and `requests_per_sec` cover successful ones.
//!   `throughput_bytes_per_sec` is `bytes` over the measured wall-clock time.
//! - A push operation's content and digest are made before its timer starts.
//!   Variants of one random buffer differ in their *last* 8 bytes, so each digest
//!   costs a few bytes of hashing (the SHA-256 state after the shared prefix is
//!   kept) instead of a whole pass over the blob.
//! - Pull verification (`--verify-every`) hashes on the worker, inside the timed
//!   operation: it is part of what a real client pays. Use `--verify-every 0` to
//!   measure only the registry's serving speed.
//! - `connections_opened` above the concurrency means the server closed
//!   connections or requests failed.
//!
//! # Other registries
//!
//! - Registries without single-`POST` uploads (they answer `202`, as CNCF
//!   Distribution does) are detected in set-up by pushing the empty blob `{}`;
//!   their one-piece pushes are then `POST` + `PUT ?digest=` with the body, and
//!   the report's `note` says so.
//! - A `tags/list` response with more than `n` tags (Distribution 2.x ignores
//!   `n`) is accepted, since it still holds the tags asked for; the report's
//!   `note` says the server ignored `n`. Fewer than `min(n, tags)` is an error.
//! - A cross-repository mount answered with `202` (no mount) is completed as an
//!   upload in `seed`, and noted.
//! - Redirects (blob `GET` → storage) are not followed: they count as errors.

use std::sync::Arc;

pub mod content;
pub mod error;
pub mod http;
pub mod oci;
pub mod options;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod sizes;
pub mod socket;
pub mod stats;

pub use error::BenchError;
pub use options::{BenchArgs, Options, Output, Scenario};
pub use report::{Outcome, ReadyReport, Report};

/// Run a benchmark on a runtime of its own (`opts.threads` threads; a
/// single-threaded runtime for 1).
pub fn run(opts: &Options) -> Result<Outcome, BenchError> {
    let mut builder = if opts.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(opts.threads);
        b
    };
    let rt = builder.enable_all().build().map_err(BenchError::Runtime)?;
    rt.block_on(run_async(Arc::new(opts.clone())))
}

/// Run a benchmark on the current runtime.
pub async fn run_async(opts: Arc<Options>) -> Result<Outcome, BenchError> {
    scenarios::run(opts).await
}
