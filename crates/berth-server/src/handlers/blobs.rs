//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>` (end-2, end-10), with `Range`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use berth_oci::{Digest, RepoName};
use berth_registry::Registry;

use super::names::DOCKER_CONTENT_DIGEST;
use super::{empty, header_str};
use crate::error::ApiError;
use crate::events::{DeleteReason, Event, Events};

/// What a `Range` header asks of a blob of `size` bytes (RFC 9110 § 14).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// Serve the whole blob (no header, or one we ignore as RFC 9110 allows).
    Full,
    /// Serve bytes `start..=end`.
    Part(u64, u64),
    /// No byte of the requested range exists.
    Unsatisfiable,
}

/// Interpret a single-range `bytes=` header; multi-range and malformed headers are
/// ignored (whole body), as RFC 9110 permits.
pub(crate) fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        return match b.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            Ok(_) if size == 0 => RangeRequest::Unsatisfiable,
            Ok(n) => RangeRequest::Part(size.saturating_sub(n), size - 1),
            Err(_) => RangeRequest::Full,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeRequest::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeRequest::Full,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part(start, end.min(size - 1))
}

pub(crate) async fn get(
    registry: &Registry,
    name: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    with_body: bool,
) -> Result<Response, ApiError> {
    let digest_s = digest.to_string();
    if !with_body {
        let size = registry.blob_size(name, digest).await?;
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, format!("\"{digest_s}\""))
            .header(DOCKER_CONTENT_DIGEST, &digest_s)
            .body(Body::empty())
            .map_err(ApiError::internal);
    }
    let blob = registry.open_blob(name, digest).await?;
    let size = blob.size();
    let (status, start, len) = match parse_range(header_str(headers, header::RANGE), size) {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        RangeRequest::Unsatisfiable => {
            return Ok(empty(
                StatusCode::RANGE_NOT_SATISFIABLE,
                vec![("content-range", format!("bytes */{size}"))],
            ));
        }
    };
    let stream = blob.stream(start, len);
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest_s}\""))
        .header(DOCKER_CONTENT_DIGEST, &digest_s);
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    resp.body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}

/// Unlink a blob from the repository; emits `blob.deleted`.
pub(crate) async fn delete(
    registry: &Registry,
    events: &Events,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    registry.delete_blob(name, digest).await?;
    events.emit(Event::blob_deleted(
        name.as_str(),
        digest,
        DeleteReason::Api,
    ));
    Ok(empty(StatusCode::ACCEPTED, vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(None, 10, RangeRequest::Full)]
    #[case(Some("bytes=0-4"), 10, RangeRequest::Part(0, 4))]
    #[case(Some("bytes=5-"), 10, RangeRequest::Part(5, 9))]
    #[case(Some("bytes=5-100"), 10, RangeRequest::Part(5, 9))]
    #[case(Some("bytes=-3"), 10, RangeRequest::Part(7, 9))]
    #[case(Some("bytes=-30"), 10, RangeRequest::Part(0, 9))]
    #[case(Some("bytes=10-"), 10, RangeRequest::Unsatisfiable)]
    #[case(Some("bytes=0-0"), 0, RangeRequest::Unsatisfiable)]
    #[case(Some("bytes=-0"), 10, RangeRequest::Unsatisfiable)]
    #[case(Some("bytes=4-2"), 10, RangeRequest::Full)]
    #[case(Some("bytes=0-1,3-4"), 10, RangeRequest::Full)]
    #[case(Some("items=0-1"), 10, RangeRequest::Full)]
    #[case(Some("bytes=x-y"), 10, RangeRequest::Full)]
    fn ranges(#[case] h: Option<&str>, #[case] size: u64, #[case] want: RangeRequest) {
        assert_eq!(parse_range(h, size), want, "{h:?}");
    }
}
