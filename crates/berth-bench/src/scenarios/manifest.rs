//! `manifest`: manifest `GET` or `HEAD` requests per second, by tag or digest.
//!
//! Setup pushes the small image (config, 1 KiB layer, OCI manifest) as `latest`.
//! Each measured request carries the usual `Accept` list and is checked: status
//! 200, `Docker-Content-Digest` equal to the pushed digest, and the length.

use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{Method, Uri};

use crate::error::BenchError;
use crate::http::Conn;
use crate::oci;
use crate::options::{By, ManifestMethod, Options};
use crate::report::{Outcome, Report};
use crate::runner::{OpResult, Timing, Worker, run_timed};

use super::{ExpectedManifest, get_manifest, manifest_accept, small_image, uri};

struct ManifestWorker {
    method: Method,
    uri: Uri,
    accept: HeaderValue,
    want: Arc<ExpectedManifest>,
}

impl Worker for ManifestWorker {
    type Op = ();

    fn prepare(&mut self, _index: u64) -> (usize, ()) {
        (0, ())
    }

    async fn run(&mut self, conn: &mut Conn, (): ()) -> OpResult {
        get_manifest(conn, &self.method, &self.uri, &self.accept, &self.want).await
    }
}

/// The timing of a timed scenario.
pub fn timing(opts: &Options) -> Timing {
    Timing {
        warmup: opts.warmup,
        duration: opts.duration,
        rate: opts.rate,
        op_timeout: opts.op_timeout,
    }
}

/// Run `manifest`.
pub async fn run(opts: &Options) -> Result<Outcome, BenchError> {
    let image = small_image();
    let mut conn = Conn::new(opts.target.clone());
    let mode = super::probe(&mut conn, &opts.repo, &mut Vec::new()).await?;
    oci::ensure_image(&mut conn, &opts.repo, &image, "latest", mode).await?;
    let reference = match opts.by {
        By::Tag => "latest",
        By::Digest => image.manifest_digest.as_str(),
    };
    let path = format!("/v2/{}/manifests/{reference}", opts.repo);
    let method = match opts.method {
        ManifestMethod::Get => Method::GET,
        ManifestMethod::Head => Method::HEAD,
    };
    let want = Arc::new(ExpectedManifest {
        digest: image.manifest_digest.clone(),
        len: image.manifest.len() as u64,
    });
    let target_uri = uri(&path)?;
    let accept = manifest_accept();
    let workers = (0..opts.concurrency)
        .map(|_| ManifestWorker {
            method: method.clone(),
            uri: target_uri.clone(),
            accept: accept.clone(),
            want: want.clone(),
        })
        .collect();
    let measured = run_timed(&opts.target, workers, 1, timing(opts)).await?;
    let operation = format!(
        "{method} {path} (200, Docker-Content-Digest {} and length checked)",
        want.digest
    );
    let info = super::info(opts, operation);
    Ok(Outcome::Run(Box::new(Report::new(
        info,
        measured,
        &["manifest"],
    ))))
}
