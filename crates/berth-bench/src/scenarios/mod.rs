//! The scenarios, one module each, and the measured requests they share (blob
//! `GET`/`HEAD`, manifest `GET`/`HEAD` with their checks).
//!
//! Every scenario sets up what it reads (unmeasured, failing the run with the
//! request and the server's answer), then hands workers to a driver in
//! [`crate::runner`].

use std::sync::Arc;

use hyper::header::{ACCEPT, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode, Uri};
use sha2::{Digest as _, Sha256};

use crate::content::{Image, finish_digest, random_bytes};
use crate::error::BenchError;
use crate::http::{Conn, SliceBody, collect, content_length, describe_status, drain, header_str};
use crate::oci::{self, PushMode};
use crate::options::{Options, Scenario};
use crate::report::{Mode, Outcome, RunInfo};
use crate::runner::OpResult;

pub mod manifest;
pub mod mixed;
pub mod pull;
pub mod push;
pub mod ready;
pub mod seed;
pub mod tags;

/// Run the scenario `opts` names.
pub async fn run(opts: Arc<Options>) -> Result<Outcome, BenchError> {
    match opts.scenario {
        Scenario::Push | Scenario::PushChunked => push::run(&opts).await,
        Scenario::Pull => pull::run(&opts).await,
        Scenario::Manifest => manifest::run(&opts).await,
        Scenario::Tags => tags::run(&opts).await,
        Scenario::Mixed => mixed::run(&opts).await,
        Scenario::Seed => seed::run(&opts).await,
        Scenario::Ready => ready::run(&opts).await,
    }
}

/// The seed of the blob pull and mixed read, so a later run with the same size
/// finds the blob already pushed.
pub fn blob_seed(size: u64) -> u64 {
    0x6265_7274_6862_6c62 ^ size
}

/// The small image of the manifest, tags and seed scenarios: a 1 KiB layer, the
/// same in every run.
pub fn small_image() -> Image {
    Image::new(random_bytes(1024, Some(0x5eed_0001)), "berth-bench")
}

/// The `Accept` header of manifest requests: OCI manifest and index, Docker
/// manifest and list.
pub fn manifest_accept() -> HeaderValue {
    use berth_oci::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
    let v = format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}");
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("*/*"))
}

/// A path as a request URI, or a usage error (the repository was validated, so
/// this only fails on a bug).
pub fn uri(path: &str) -> Result<Uri, BenchError> {
    Uri::try_from(path).map_err(|e| BenchError::Usage(format!("bad request path {path:?}: {e}")))
}

/// What a manifest response must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedManifest {
    /// `Docker-Content-Digest`.
    pub digest: String,
    /// Body length.
    pub len: u64,
}

/// Check a manifest response: status 200, `Docker-Content-Digest` equal to the
/// pushed digest, and the body length (`body_len`, for `GET`) or the
/// `Content-Length` (for `HEAD`, when sent) equal to the manifest's.
pub fn check_manifest(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    body_len: Option<u64>,
    want: &ExpectedManifest,
) -> Result<(), String> {
    let fail = |problem: String| Err(format!("{method} manifest: {problem}"));
    if status != StatusCode::OK {
        return fail(format!("expected 200, got {status}"));
    }
    match header_str(headers, "docker-content-digest") {
        Some(d) if d == want.digest => {}
        Some(d) => {
            return fail(format!(
                "Docker-Content-Digest {d}, expected {}",
                want.digest
            ));
        }
        None => return fail("no Docker-Content-Digest header".to_owned()),
    }
    let len = body_len.or_else(|| content_length(headers));
    match len {
        Some(n) if n != want.len => fail(format!("{n} bytes, expected {}", want.len)),
        None if body_len.is_none() && *method == Method::GET => fail("no body length".to_owned()),
        _ => Ok(()),
    }
}

/// The measured manifest request, checked. Ok: body bytes.
pub async fn get_manifest(
    conn: &mut Conn,
    method: &Method,
    uri: &Uri,
    accept: &HeaderValue,
    want: &ExpectedManifest,
) -> OpResult {
    let req = conn
        .target()
        .request(method.clone(), uri.clone())
        .header(ACCEPT, accept.clone())
        .body(SliceBody::empty())
        .map_err(|e| format!("{method} manifest: {e}"))?;
    let resp = conn
        .send(req)
        .await
        .map_err(|e| format!("{method} manifest: {e}"))?;
    let (parts, body) = resp.into_parts();
    if parts.status != StatusCode::OK {
        let body = collect(body).await.unwrap_or_default();
        return Err(format!(
            "{method} manifest: {}",
            describe_status(parts.status, &body)
        ));
    }
    let n = drain(body, None)
        .await
        .map_err(|e| format!("{method} manifest: {e}"))?;
    let body_len = (*method == Method::GET).then_some(n);
    check_manifest(method, parts.status, &parts.headers, body_len, want)?;
    Ok(n)
}

/// What a blob `GET` must return.
#[derive(Debug, Clone)]
pub struct ExpectedBlob {
    /// `/v2/<repo>/blobs/<digest>`.
    pub uri: Uri,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
}

/// The measured blob `GET`: status 200, `Content-Length` and body length equal
/// to the size, and (when `verify`) the body's digest. Ok: body bytes.
pub async fn get_blob(conn: &mut Conn, want: &ExpectedBlob, verify: bool) -> OpResult {
    let fail = |problem: String| format!("GET blob: {problem}");
    let req = conn
        .target()
        .request(Method::GET, want.uri.clone())
        .body(SliceBody::empty())
        .map_err(|e| fail(e.to_string()))?;
    let resp = conn.send(req).await.map_err(|e| fail(e.to_string()))?;
    let (parts, body) = resp.into_parts();
    if parts.status != StatusCode::OK {
        let body = collect(body).await.unwrap_or_default();
        return Err(fail(describe_status(parts.status, &body)));
    }
    let declared = content_length(&parts.headers);
    let mut hasher = verify.then(Sha256::new);
    if let Some(len) = declared {
        conn.expect_body(len);
    }
    let drained = drain(body, hasher.as_mut()).await;
    conn.body_done();
    let n = drained.map_err(|e| fail(e.to_string()))?;
    if declared != Some(want.size) {
        return Err(fail(format!(
            "Content-Length {}, expected {}",
            declared.map_or("missing".to_owned(), |d| d.to_string()),
            want.size
        )));
    }
    if n != want.size {
        return Err(fail(format!("{n} body bytes, expected {}", want.size)));
    }
    if let Some(h) = hasher {
        let got = finish_digest(h);
        if got != want.digest {
            return Err(fail(format!("body digest {got}, expected {}", want.digest)));
        }
    }
    Ok(n)
}

/// The measured blob `HEAD`: status 200 and `Content-Length` equal to the size.
pub async fn head_blob(conn: &mut Conn, want: &ExpectedBlob) -> OpResult {
    let fail = |problem: String| format!("HEAD blob: {problem}");
    let req = conn
        .target()
        .request(Method::HEAD, want.uri.clone())
        .body(SliceBody::empty())
        .map_err(|e| fail(e.to_string()))?;
    let resp = conn.send(req).await.map_err(|e| fail(e.to_string()))?;
    let (parts, body) = resp.into_parts();
    drain(body, None).await.map_err(|e| fail(e.to_string()))?;
    if parts.status != StatusCode::OK {
        return Err(fail(describe_status(parts.status, b"")));
    }
    match content_length(&parts.headers) {
        Some(n) if n == want.size => Ok(0),
        other => Err(fail(format!(
            "Content-Length {}, expected {}",
            other.map_or("missing".to_owned(), |d| d.to_string()),
            want.size
        ))),
    }
}

/// Learn how the registry takes one-piece uploads, and the note for the report
/// when it is not a single `POST`.
pub async fn probe(
    conn: &mut Conn,
    repo: &str,
    notes: &mut Vec<String>,
) -> Result<PushMode, BenchError> {
    let mode = oci::probe_push_mode(conn, repo).await?;
    if mode == PushMode::PostThenPut {
        notes.push(
            "the registry does not take single-POST uploads (202): each one-piece push is POST then PUT ?digest= with the body"
                .to_owned(),
        );
    }
    Ok(mode)
}

/// The parts of the report every scenario fills the same way.
pub fn info(opts: &Options, operation: String) -> RunInfo {
    let timed = opts.scenario.is_timed();
    RunInfo {
        scenario: opts.scenario.name(),
        url: opts.target.url(),
        mode: if opts.rate.is_some() {
            Mode::OpenLoop
        } else {
            Mode::ClosedLoop
        },
        concurrency: opts.concurrency,
        size_bytes: opts.scenario.uses_size().then_some(opts.size),
        chunk_size_bytes: (opts.scenario == Scenario::PushChunked).then_some(opts.chunk_size),
        target_rate: opts.rate,
        warmup_operations: (!timed && opts.scenario != Scenario::Seed).then_some(opts.warmup_ops),
        warmup_secs: timed.then_some(opts.warmup.as_secs_f64()),
        operation,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn manifest_checks() {
        let want = ExpectedManifest {
            digest: "sha256:aa".into(),
            len: 10,
        };
        let good = headers(&[
            ("docker-content-digest", "sha256:aa"),
            ("content-length", "10"),
        ]);
        let get = Method::GET;
        let head = Method::HEAD;
        assert_eq!(
            check_manifest(&get, StatusCode::OK, &good, Some(10), &want),
            Ok(())
        );
        assert_eq!(
            check_manifest(&head, StatusCode::OK, &good, None, &want),
            Ok(())
        );
        let other = headers(&[("docker-content-digest", "sha256:bb")]);
        let e = check_manifest(&get, StatusCode::OK, &other, Some(10), &want).unwrap_err();
        assert_eq!(
            e,
            "GET manifest: Docker-Content-Digest sha256:bb, expected sha256:aa"
        );
        let e = check_manifest(&get, StatusCode::OK, &headers(&[]), Some(10), &want).unwrap_err();
        assert!(e.contains("no Docker-Content-Digest"), "{e}");
        let e = check_manifest(&get, StatusCode::OK, &good, Some(9), &want).unwrap_err();
        assert!(e.contains("9 bytes, expected 10"), "{e}");
        let short = headers(&[
            ("docker-content-digest", "sha256:aa"),
            ("content-length", "3"),
        ]);
        assert!(check_manifest(&head, StatusCode::OK, &short, None, &want).is_err());
        let e = check_manifest(&get, StatusCode::NOT_FOUND, &good, Some(10), &want).unwrap_err();
        assert!(e.contains("expected 200"), "{e}");
    }

    #[test]
    fn accept_lists_four_types() {
        assert_eq!(manifest_accept().to_str().unwrap().split(", ").count(), 4);
    }
}
