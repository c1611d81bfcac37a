//! `mixed`: each worker picks its next request by weight: 70% manifest `GET` by
//! tag, 20% blob `GET` (the image's layer, `--size` bytes), 5% blob `HEAD`, 5%
//! push (a fresh 64 KiB blob by one-piece upload, then a new manifest naming it
//! under a new tag; latency of both together). The push content and digests are
//! made before the timer starts. Reported overall and per operation.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Uri};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::content::{Image, VariedBlob, manifest_json};
use crate::error::BenchError;
use crate::http::Conn;
use crate::oci::{self, PushMode};
use crate::options::Options;
use crate::report::{Outcome, Report};
use crate::runner::{OpResult, Worker, run_timed};

use super::{
    ExpectedBlob, ExpectedManifest, get_blob, get_manifest, head_blob, manifest_accept, uri,
};

/// Names of the operations, in the order of their kind numbers.
pub const OPERATIONS: [&str; 4] = ["manifest_get", "blob_get", "blob_head", "push"];

/// Size of the blob each push operation uploads.
pub const PUSH_SIZE: usize = 64 << 10;

struct Shared {
    repo: String,
    manifest_uri: Uri,
    accept: HeaderValue,
    manifest: ExpectedManifest,
    blob: ExpectedBlob,
    verify_every: u64,
    config_digest: String,
    config_len: u64,
    push_blob: VariedBlob,
    mode: PushMode,
    nonce: u32,
}

enum Op {
    ManifestGet,
    BlobGet {
        verify: bool,
    },
    BlobHead,
    Push {
        variant: u64,
        digest: String,
        manifest: Bytes,
        tag: String,
    },
}

struct MixedWorker {
    shared: Arc<Shared>,
    id: u64,
    rng: SmallRng,
    blob_gets: u64,
}

impl Worker for MixedWorker {
    type Op = Op;

    fn prepare(&mut self, index: u64) -> (usize, Op) {
        let s = &*self.shared;
        match self.rng.random_range(0..100u32) {
            0..70 => (0, Op::ManifestGet),
            70..90 => {
                let verify = s.verify_every > 0 && self.blob_gets.is_multiple_of(s.verify_every);
                self.blob_gets += 1;
                (1, Op::BlobGet { verify })
            }
            90..95 => (2, Op::BlobHead),
            _ => {
                let variant = (self.id << 40) | index;
                let digest = s.push_blob.digest(variant);
                let manifest =
                    manifest_json(&s.config_digest, s.config_len, &digest, s.push_blob.size());
                let tag = format!("mixed-{:08x}-{}-{index}", s.nonce, self.id);
                (
                    3,
                    Op::Push {
                        variant,
                        digest,
                        manifest,
                        tag,
                    },
                )
            }
        }
    }

    async fn run(&mut self, conn: &mut Conn, op: Op) -> OpResult {
        let s = &*self.shared;
        match op {
            Op::ManifestGet => {
                get_manifest(conn, &Method::GET, &s.manifest_uri, &s.accept, &s.manifest).await
            }
            Op::BlobGet { verify } => get_blob(conn, &s.blob, verify).await,
            Op::BlobHead => head_blob(conn, &s.blob).await,
            Op::Push {
                variant,
                digest,
                manifest,
                tag,
            } => {
                let parts = s.push_blob.parts(variant, 0..s.push_blob.size());
                oci::push_blob(conn, &s.repo, &digest, parts, s.mode)
                    .await
                    .map_err(|f| f.sample())?;
                oci::put_manifest(conn, &s.repo, &tag, &manifest)
                    .await
                    .map_err(|f| f.sample())?;
                Ok(s.push_blob.size() + manifest.len() as u64)
            }
        }
    }
}

/// Run `mixed`.
pub async fn run(opts: &Options) -> Result<Outcome, BenchError> {
    let mut notes = Vec::new();
    let (layer_digest, layer) = super::pull::ensure_blob(opts, opts.size, &mut Vec::new()).await?;
    let image = tokio::task::spawn_blocking(move || Image::new(layer, "berth-bench mixed")).await?;
    let mut conn = Conn::new(opts.target.clone());
    let mode = super::probe(&mut conn, &opts.repo, &mut notes).await?;
    oci::ensure_image(&mut conn, &opts.repo, &image, "latest", mode).await?;
    let manifest_path = format!("/v2/{}/manifests/latest", opts.repo);
    let blob_path = format!("/v2/{}/blobs/{layer_digest}", opts.repo);
    let nonce: u32 = rand::random();
    let shared = Arc::new(Shared {
        repo: opts.repo.clone(),
        manifest_uri: uri(&manifest_path)?,
        accept: manifest_accept(),
        manifest: ExpectedManifest {
            digest: image.manifest_digest.clone(),
            len: image.manifest.len() as u64,
        },
        blob: ExpectedBlob {
            uri: uri(&blob_path)?,
            digest: layer_digest,
            size: opts.size,
        },
        verify_every: opts.verify_every,
        config_digest: image.config_digest.clone(),
        config_len: image.config.len() as u64,
        push_blob: VariedBlob::new(PUSH_SIZE, None, u64::from(nonce) << 20),
        mode,
        nonce,
    });
    let workers = (0..opts.concurrency as u64)
        .map(|id| MixedWorker {
            shared: shared.clone(),
            id,
            rng: SmallRng::seed_from_u64(u64::from(nonce) ^ id),
            blob_gets: 0,
        })
        .collect();
    let measured = run_timed(
        &opts.target,
        workers,
        OPERATIONS.len(),
        super::manifest::timing(opts),
    )
    .await?;
    let operation = format!(
        "weighted: 70% GET {manifest_path}, 20% GET {blob_path}, 5% HEAD of it, 5% push of a new {} KiB blob + manifest under a new tag",
        PUSH_SIZE >> 10
    );
    let mut info = super::info(opts, operation);
    info.notes = notes;
    Ok(Outcome::Run(Box::new(Report::new(
        info,
        measured,
        &OPERATIONS,
    ))))
}
