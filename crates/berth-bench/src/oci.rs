//! Distribution-spec operations over one [`Conn`]: blob pushes (single `POST`,
//! `POST` then `PUT`, chunked), existence checks, cross-repository mounts,
//! manifest pushes and tag counting. Each returns a [`Failure`] naming the request
//! and the server's answer, used as a setup error or as a measured error sample.

use std::fmt;

use bytes::Bytes;
use hyper::header::{CONTENT_RANGE, LOCATION};
use hyper::{HeaderMap, Method, StatusCode};

use crate::content::{EMPTY_JSON, Image, VariedBlob, sha256_digest, slices};
use crate::error::BenchError;
use crate::http::{Conn, HttpError, SliceBody, collect, describe_status, header_str};

/// Content type of blob bodies.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// A request that did not do what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// A stable name of the request, without ids (e.g. `blob upload`), so that
    /// error samples group.
    pub what: &'static str,
    /// Status and OCI error codes, or a transport or check problem.
    pub problem: String,
}

impl Failure {
    /// A failure of `method path` (`what`) with `problem`.
    pub fn new(
        method: &Method,
        path: &str,
        what: &'static str,
        problem: impl Into<String>,
    ) -> Self {
        Failure {
            method: method.clone(),
            path: path.to_owned(),
            what,
            problem: problem.into(),
        }
    }

    /// For error samples: the method, the kind of request and the problem.
    pub fn sample(&self) -> String {
        format!("{} {}: {}", self.method, self.what, self.problem)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.method, self.path, self.problem)
    }
}

impl From<Failure> for BenchError {
    fn from(f: Failure) -> Self {
        BenchError::Setup {
            request: format!("{} {}", f.method, f.path),
            problem: f.problem,
        }
    }
}

/// How this registry takes a blob in one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushMode {
    /// `POST /blobs/uploads/?digest=D` with the body (spec: registries MAY).
    SinglePost,
    /// `POST /blobs/uploads/`, then `PUT <location>?digest=D` with the body.
    PostThenPut,
}

impl PushMode {
    /// For reports.
    pub fn describe(self) -> &'static str {
        match self {
            PushMode::SinglePost => "single POST ?digest=",
            PushMode::PostThenPut => "POST then PUT ?digest= (no single-POST uploads)",
        }
    }
}

/// A small response, read whole.
pub struct Small {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Send a request and read its (small) response whole.
pub async fn exchange(
    conn: &mut Conn,
    method: Method,
    path: &str,
    what: &'static str,
    body: Option<(SliceBody, &str)>,
    extra: &[(hyper::header::HeaderName, &str)],
) -> Result<Small, Failure> {
    let fail = |e: HttpError| Failure::new(&method, path, what, e.to_string());
    let target = conn.target().clone();
    let mut req = match body {
        Some((b, ct)) => target.request_with_body(method.clone(), path, b, ct),
        None => target.bodyless(method.clone(), path),
    }
    .map_err(fail)?;
    for (name, value) in extra {
        let v = hyper::header::HeaderValue::from_str(value)
            .map_err(|e| Failure::new(&method, path, what, e.to_string()))?;
        req.headers_mut().insert(name.clone(), v);
    }
    let resp = conn.send(req).await.map_err(fail)?;
    let (parts, body) = resp.into_parts();
    let body = collect(body).await.map_err(fail)?;
    Ok(Small {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

fn expect(
    small: &Small,
    want: StatusCode,
    method: &Method,
    path: &str,
    what: &'static str,
) -> Result<(), Failure> {
    if small.status == want {
        Ok(())
    } else {
        Err(Failure::new(
            method,
            path,
            what,
            format!(
                "expected {}, got {}",
                want.as_u16(),
                describe_status(small.status, &small.body)
            ),
        ))
    }
}

/// `path` with `key=value` appended to its query.
pub fn with_query(path: &str, key: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{key}={value}")
}

/// The path of a response's `Location`, resolved against the request path.
fn location(
    small: &Small,
    conn: &Conn,
    method: &Method,
    path: &str,
    what: &'static str,
) -> Result<String, Failure> {
    let loc = header_str(&small.headers, LOCATION.as_str())
        .ok_or_else(|| Failure::new(method, path, what, "no Location header"))?;
    conn.target()
        .resolve_location(path, loc)
        .ok_or_else(|| Failure::new(method, path, what, format!("bad Location {loc:?}")))
}

fn uploads(repo: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/")
}

/// Whether `HEAD /v2/<repo>/blobs/<digest>` finds the blob.
pub async fn blob_exists(conn: &mut Conn, repo: &str, digest: &str) -> Result<bool, Failure> {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let r = exchange(conn, Method::HEAD, &path, "blob", None, &[]).await?;
    match r.status {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(Failure::new(
            &Method::HEAD,
            &path,
            "blob",
            describe_status(r.status, &r.body),
        )),
    }
}

/// Open an upload session: `POST /v2/<repo>/blobs/uploads/` → 202; its location.
pub async fn start_upload(conn: &mut Conn, repo: &str) -> Result<String, Failure> {
    let path = uploads(repo);
    let what = "upload start";
    let body = Some((SliceBody::empty(), OCTET_STREAM));
    let r = exchange(conn, Method::POST, &path, what, body, &[]).await?;
    expect(&r, StatusCode::ACCEPTED, &Method::POST, &path, what)?;
    location(&r, conn, &Method::POST, &path, what)
}

/// Close an upload session with the rest of the blob: `PUT <location>?digest=D`
/// → 201.
pub async fn finish_upload(
    conn: &mut Conn,
    location: &str,
    digest: &str,
    parts: Vec<Bytes>,
) -> Result<(), Failure> {
    let path = with_query(location, "digest", digest);
    let what = "upload finish";
    let body = Some((SliceBody::from_parts(parts), OCTET_STREAM));
    let r = exchange(conn, Method::PUT, &path, what, body, &[]).await?;
    expect(&r, StatusCode::CREATED, &Method::PUT, &path, what)
}

/// Push a blob in one piece, as `mode` says.
pub async fn push_blob(
    conn: &mut Conn,
    repo: &str,
    digest: &str,
    parts: Vec<Bytes>,
    mode: PushMode,
) -> Result<(), Failure> {
    match mode {
        PushMode::SinglePost => {
            let path = with_query(&uploads(repo), "digest", digest);
            let what = "single-request upload";
            let body = Some((SliceBody::from_parts(parts), OCTET_STREAM));
            let r = exchange(conn, Method::POST, &path, what, body, &[]).await?;
            expect(&r, StatusCode::CREATED, &Method::POST, &path, what)
        }
        PushMode::PostThenPut => {
            let loc = start_upload(conn, repo).await?;
            finish_upload(conn, &loc, digest, parts).await
        }
    }
}

/// Learn whether the registry takes single-`POST` uploads by pushing the empty
/// JSON blob `{}` that way: `201` means yes; `202` (the spec's answer of a
/// registry that does not) means no, and the session it opened is completed
/// with a `PUT` so nothing is left behind.
pub async fn probe_push_mode(conn: &mut Conn, repo: &str) -> Result<PushMode, Failure> {
    let digest = sha256_digest(EMPTY_JSON);
    let path = with_query(&uploads(repo), "digest", &digest);
    let what = "single-request upload";
    let body = Some((
        SliceBody::full(Bytes::from_static(EMPTY_JSON)),
        OCTET_STREAM,
    ));
    let r = exchange(conn, Method::POST, &path, what, body, &[]).await?;
    match r.status {
        StatusCode::CREATED => Ok(PushMode::SinglePost),
        StatusCode::ACCEPTED => {
            let loc = location(&r, conn, &Method::POST, &path, what)?;
            finish_upload(conn, &loc, &digest, vec![Bytes::from_static(EMPTY_JSON)]).await?;
            Ok(PushMode::PostThenPut)
        }
        _ => Err(Failure::new(
            &Method::POST,
            &path,
            what,
            format!(
                "expected 201 or 202, got {}",
                describe_status(r.status, &r.body)
            ),
        )),
    }
}

/// Push variant `variant` of `blob` in chunks of `chunk` bytes: `POST`, one
/// `PATCH` per chunk (`Content-Range: start-end`, each `Location` followed), and a
/// closing `PUT ?digest=`.
pub async fn push_chunked(
    conn: &mut Conn,
    repo: &str,
    blob: &VariedBlob,
    variant: u64,
    digest: &str,
    chunk: u64,
) -> Result<(), Failure> {
    let mut loc = start_upload(conn, repo).await?;
    let size = blob.size();
    let mut start = 0u64;
    while start < size {
        let end = (start + chunk).min(size);
        let range = format!("{}-{}", start, end - 1);
        let what = "upload chunk";
        let body = Some((
            SliceBody::from_parts(blob.parts(variant, start..end)),
            OCTET_STREAM,
        ));
        let r = exchange(
            conn,
            Method::PATCH,
            &loc,
            what,
            body,
            &[(CONTENT_RANGE, &range)],
        )
        .await?;
        expect(&r, StatusCode::ACCEPTED, &Method::PATCH, &loc, what)?;
        loc = location(&r, conn, &Method::PATCH, &loc, what)?;
        start = end;
    }
    finish_upload(conn, &loc, digest, Vec::new()).await
}

/// Cross-mount `digest` from `from` into `repo`: `true` when mounted (201). A
/// registry that answers 202 (no mount) gets the blob uploaded into the session
/// it opened (`PUT ?digest=` with `content`), and `false` is returned.
pub async fn mount_blob(
    conn: &mut Conn,
    repo: &str,
    digest: &str,
    from: &str,
    content: &Bytes,
) -> Result<bool, Failure> {
    let path = format!("{}?mount={digest}&from={from}", uploads(repo));
    let what = "blob mount";
    let body = Some((SliceBody::empty(), OCTET_STREAM));
    let r = exchange(conn, Method::POST, &path, what, body, &[]).await?;
    match r.status {
        StatusCode::CREATED => Ok(true),
        StatusCode::ACCEPTED => {
            let loc = location(&r, conn, &Method::POST, &path, what)?;
            finish_upload(conn, &loc, digest, slices(content)).await?;
            Ok(false)
        }
        _ => Err(Failure::new(
            &Method::POST,
            &path,
            what,
            format!(
                "expected 201 or 202, got {}",
                describe_status(r.status, &r.body)
            ),
        )),
    }
}

/// `PUT /v2/<repo>/manifests/<reference>` with an OCI image manifest → 201.
pub async fn put_manifest(
    conn: &mut Conn,
    repo: &str,
    reference: &str,
    manifest: &Bytes,
) -> Result<(), Failure> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let what = "manifest";
    let body = Some((
        SliceBody::full(manifest.clone()),
        berth_oci::media_type::OCI_MANIFEST,
    ));
    let r = exchange(conn, Method::PUT, &path, what, body, &[]).await?;
    expect(&r, StatusCode::CREATED, &Method::PUT, &path, what)
}

/// Push `image`'s blobs (those the registry lacks) and its manifest as `tag`.
pub async fn ensure_image(
    conn: &mut Conn,
    repo: &str,
    image: &Image,
    tag: &str,
    mode: PushMode,
) -> Result<(), Failure> {
    for (digest, bytes) in [
        (&image.config_digest, &image.config),
        (&image.layer_digest, &image.layer),
    ] {
        if !blob_exists(conn, repo, digest).await? {
            push_blob(conn, repo, digest, slices(bytes), mode).await?;
        }
    }
    put_manifest(conn, repo, tag, &image.manifest).await
}

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all("link") {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut pieces = link.split(';');
            let Some(url) = pieces.next() else { continue };
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                let url = url.trim().trim_start_matches('<').trim_end_matches('>');
                return Some(url.to_owned());
            }
        }
    }
    None
}

/// The `tags` array of a tags/list body, counted without keeping the strings.
pub fn count_tags_in(body: &[u8]) -> Result<usize, String> {
    #[derive(serde::Deserialize)]
    struct TagList {
        tags: Option<Vec<serde::de::IgnoredAny>>,
    }
    serde_json::from_slice::<TagList>(body)
        .map(|t| t.tags.map_or(0, |v| v.len()))
        .map_err(|e| format!("tags/list body is not a tag list: {e}"))
}

/// How many tags `repo` has (all pages; 0 for an unknown repository).
pub async fn count_tags(conn: &mut Conn, repo: &str) -> Result<u64, Failure> {
    let mut path = format!("/v2/{repo}/tags/list");
    let mut total = 0u64;
    let what = "tags/list";
    loop {
        let r = exchange(conn, Method::GET, &path, what, None, &[]).await?;
        match r.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(total),
            _ => {
                return Err(Failure::new(
                    &Method::GET,
                    &path,
                    what,
                    describe_status(r.status, &r.body),
                ));
            }
        }
        total +=
            count_tags_in(&r.body).map_err(|e| Failure::new(&Method::GET, &path, what, e))? as u64;
        match next_link(&r.headers).and_then(|l| conn.target().resolve_location(&path, &l)) {
            Some(next) if next != path => path = next,
            _ => return Ok(total),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn links() {
        let mut h = HeaderMap::new();
        assert_eq!(next_link(&h), None);
        h.insert(
            "link",
            "</v2/a/tags/list?n=2&last=b>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).unwrap(), "/v2/a/tags/list?n=2&last=b");
        h.insert(
            "link",
            "<http://x/p>; rel=\"prev\", <http://x/q>; rel=next"
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).unwrap(), "http://x/q");
    }

    #[test]
    fn queries_and_tag_lists() {
        assert_eq!(
            with_query("/u/1", "digest", "sha256:ab"),
            "/u/1?digest=sha256:ab"
        );
        assert_eq!(
            with_query("/u/1?_state=x", "digest", "d"),
            "/u/1?_state=x&digest=d"
        );
        assert_eq!(count_tags_in(br#"{"name":"a","tags":["x","y"]}"#), Ok(2));
        assert_eq!(count_tags_in(br#"{"name":"a","tags":null}"#), Ok(0));
        assert!(count_tags_in(b"<html>").is_err());
    }

    #[test]
    fn failures_read_well() {
        let f = Failure::new(
            &Method::PUT,
            "/v2/a/manifests/t1",
            "manifest",
            "expected 201, got 400 Bad Request",
        );
        assert_eq!(
            f.to_string(),
            "PUT /v2/a/manifests/t1: expected 201, got 400 Bad Request"
        );
        assert_eq!(
            f.sample(),
            "PUT manifest: expected 201, got 400 Bad Request"
        );
        let e: BenchError = f.into();
        assert!(
            e.to_string()
                .starts_with("setup failed: PUT /v2/a/manifests/t1: ")
        );
    }
}
