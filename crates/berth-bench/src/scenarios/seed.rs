//! `seed`: fill a registry with `--repos` repositories of `--tags` tags each,
//! and measure how fast that goes (no warm-up; every request counts).
//!
//! The small image's config and layer are pushed once to `<repo>-0`; every other
//! repository gets them by cross-repository mount (`POST ?mount=&from=`, 201; a
//! registry that answers 202 gets the blob uploaded into the session it opened,
//! and the report notes it). Then the manifest is put under each tag of each
//! repository. Mounts and manifest puts are spread over `-c` workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;

use crate::content::slices;
use crate::error::BenchError;
use crate::http::Conn;
use crate::oci;
use crate::options::Options;
use crate::report::{Outcome, Report};
use crate::runner::{Measured, OpResult, Worker, run_iterations};
use crate::stats::Recorder;

use super::small_image;
use super::tags::TagWorker;

/// Names of the operations, in the order of their kind numbers.
pub const OPERATIONS: [&str; 3] = ["blob_push", "blob_mount", "manifest_put"];

struct MountWorker {
    repos: Arc<Vec<String>>,
    blobs: Arc<[(String, Bytes); 2]>,
    uploaded: Arc<AtomicU64>,
}

impl Worker for MountWorker {
    type Op = (usize, usize);

    fn prepare(&mut self, index: u64) -> (usize, (usize, usize)) {
        (1, (1 + (index / 2) as usize, (index % 2) as usize))
    }

    async fn run(&mut self, conn: &mut Conn, (repo, blob): (usize, usize)) -> OpResult {
        let (Some(repo), Some(from), Some((digest, content))) = (
            self.repos.get(repo),
            self.repos.first(),
            self.blobs.get(blob),
        ) else {
            return Err("no such repository or blob".to_owned());
        };
        let mounted = oci::mount_blob(conn, repo, digest, from, content)
            .await
            .map_err(|f| f.sample())?;
        if mounted {
            Ok(0)
        } else {
            self.uploaded.fetch_add(1, Ordering::Relaxed);
            Ok(content.len() as u64)
        }
    }
}

fn merge(total: &mut [Recorder], connections: &mut u64, part: Measured) {
    *connections += part.connections;
    for (t, p) in total.iter_mut().zip(part.recorders) {
        t.merge(p);
    }
}

/// Run `seed`.
pub async fn run(opts: &Options) -> Result<Outcome, BenchError> {
    let image = small_image();
    let repos: Arc<Vec<String>> = Arc::new(
        (0..opts.repos)
            .map(|i| format!("{}-{i}", opts.repo))
            .collect(),
    );
    let first = repos.first().cloned().unwrap_or_default();
    let mut notes = Vec::new();
    let mut conn = Conn::new(opts.target.clone());
    let mode = super::probe(&mut conn, &first, &mut notes).await?;
    let blobs = Arc::new([
        (image.config_digest.clone(), image.config.clone()),
        (image.layer_digest.clone(), image.layer.clone()),
    ]);

    let start = Instant::now();
    let mut recorders = vec![Recorder::default(); OPERATIONS.len()];
    for (digest, content) in blobs.iter() {
        let t0 = Instant::now();
        oci::push_blob(&mut conn, &first, digest, slices(content), mode).await?;
        if let Some(r) = recorders.first_mut() {
            r.ok(t0.elapsed(), content.len() as u64);
        }
    }
    let mut connections = conn.connects();
    let uploaded = Arc::new(AtomicU64::new(0));
    let mounts = 2 * (u64::from(opts.repos) - 1);
    let workers = (0..opts.concurrency)
        .map(|_| MountWorker {
            repos: repos.clone(),
            blobs: blobs.clone(),
            uploaded: uploaded.clone(),
        })
        .collect();
    merge(
        &mut recorders,
        &mut connections,
        run_iterations(
            &opts.target,
            workers,
            OPERATIONS.len(),
            0,
            mounts,
            opts.op_timeout,
        )
        .await?,
    );
    let tags = u64::from(opts.tags);
    let workers = (0..opts.concurrency)
        .map(|_| TagWorker {
            repos: repos.clone(),
            tags,
            manifest: image.manifest.clone(),
            kind: 2,
        })
        .collect();
    let puts = u64::from(opts.repos) * tags;
    merge(
        &mut recorders,
        &mut connections,
        run_iterations(
            &opts.target,
            workers,
            OPERATIONS.len(),
            0,
            puts,
            opts.op_timeout,
        )
        .await?,
    );
    let measured = Measured {
        recorders,
        elapsed: start.elapsed(),
        connections,
    };

    let uploaded = uploaded.load(Ordering::Relaxed);
    if uploaded > 0 {
        notes.push(format!(
            "{uploaded} of {mounts} mounts answered 202 (not mounted): those blobs were uploaded"
        ));
    }
    let operation = format!(
        "{} repositories {}-0…{} with {tags} tags each: 2 blob pushes, {mounts} cross-repository mounts, {puts} manifest PUTs",
        opts.repos,
        opts.repo,
        opts.repos - 1
    );
    let mut info = super::info(opts, operation);
    info.notes = notes;
    Ok(Outcome::Run(Box::new(Report::new(
        info,
        measured,
        &OPERATIONS,
    ))))
}
