//! Blob uploads: `POST` (session, monolithic `?digest=`, mount `?mount=&from=`),
//! `PATCH` chunks, closing `PUT ?digest=`, `GET` status and `DELETE`
//! (end-4a, end-4b, end-5, end-6, end-11, end-13).

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use berth_oci::{Digest, ErrorCode, RepoName};
use berth_registry::{Registry, UploadId};

use super::names::{DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID};
use super::{content_length, empty, query_get, query_pairs};
use crate::error::ApiError;

fn upload_location(name: &RepoName, id: UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn blob_location(name: &RepoName, digest: &Digest) -> String {
    format!("/v2/{name}/blobs/{digest}")
}

/// `Range: 0-<last byte>` as the spec writes it (`0-0` when nothing was received,
/// as Distribution does).
fn range_header(len: u64) -> String {
    format!("0-{}", len.saturating_sub(1))
}

fn created(name: &RepoName, digest: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        vec![
            ("location", blob_location(name, digest)),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
        ],
    )
}

fn session(name: &RepoName, id: UploadId, len: u64, status: StatusCode) -> Response {
    empty(
        status,
        vec![
            ("location", upload_location(name, id)),
            ("range", range_header(len)),
            (DOCKER_UPLOAD_UUID, id.to_string()),
        ],
    )
}

/// Parse `Content-Range: <start>-<end>` (the spec's form; `bytes ` and `bytes=`
/// prefixes are tolerated). `Ok(None)` when absent.
pub(crate) fn parse_content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(raw) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            ErrorCode::BlobUploadInvalid,
            "Content-Range must match ^[0-9]+-[0-9]+$",
        )
    };
    let s = raw.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes ")
        .or_else(|| s.strip_prefix("bytes="))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return Err(bad());
    }
    Ok(Some((
        a.parse().map_err(|_| bad())?,
        b.parse().map_err(|_| bad())?,
    )))
}

fn parse_digest_param(value: Option<&str>, what: &str) -> Result<Digest, ApiError> {
    let v = value.ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            format!("query parameter {what} is required"),
        )
    })?;
    v.parse()
        .map_err(|e: berth_oci::DigestError| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

pub(crate) async fn start(
    registry: &Registry,
    name: &RepoName,
    req: Request,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(req.uri().query());
    if let Some(mount) = query_get(&pairs, "mount") {
        let digest = parse_digest_param(Some(mount), "mount")?;
        if let Some(from) = query_get(&pairs, "from") {
            let from: RepoName = from.parse().map_err(|e: berth_oci::NameError| {
                ApiError::new(ErrorCode::NameInvalid, e.to_string())
            })?;
            if registry.mount_blob(name, &from, &digest).await? {
                return Ok(created(name, &digest));
            }
        }
        // Not mountable: a normal upload session, never an error (spec § Mounting).
        let id = registry.start_upload(name).await?;
        return Ok(session(name, id, 0, StatusCode::ACCEPTED));
    }
    if let Some(d) = query_get(&pairs, "digest") {
        let digest = parse_digest_param(Some(d), "digest")?;
        let declared = content_length(req.headers());
        let body = req.into_body().into_data_stream();
        registry
            .put_blob_monolithic(name, &digest, declared, body)
            .await?;
        return Ok(created(name, &digest));
    }
    let id = registry.start_upload(name).await?;
    Ok(session(name, id, 0, StatusCode::ACCEPTED))
}

pub(crate) async fn status(
    registry: &Registry,
    name: &RepoName,
    id: UploadId,
) -> Result<Response, ApiError> {
    let len = registry.upload_status(name, id).await?;
    Ok(session(name, id, len, StatusCode::NO_CONTENT))
}

/// Attach the upload's `Location` to a 416, so the client can resume.
fn with_location(e: berth_registry::RegistryError, name: &RepoName, id: UploadId) -> ApiError {
    let api = ApiError::from(e);
    if api.status == StatusCode::RANGE_NOT_SATISFIABLE {
        api.with_header(header::LOCATION, &upload_location(name, id))
            .with_header(
                header::HeaderName::from_static(DOCKER_UPLOAD_UUID),
                &id.to_string(),
            )
    } else {
        api
    }
}

pub(crate) async fn patch(
    registry: &Registry,
    name: &RepoName,
    id: UploadId,
    req: Request,
) -> Result<Response, ApiError> {
    let range = parse_content_range(req.headers())?;
    if let (Some((start, end)), Some(cl)) = (range, content_length(req.headers()))
        && end >= start
        && end - start + 1 != cl
    {
        return Err(ApiError::new(
            ErrorCode::SizeInvalid,
            format!("Content-Range {start}-{end} does not match Content-Length {cl}"),
        ));
    }
    let body = req.into_body().into_data_stream();
    let len = registry
        .append_upload(name, id, range, body)
        .await
        .map_err(|e| with_location(e, name, id))?;
    Ok(session(name, id, len, StatusCode::ACCEPTED))
}

pub(crate) async fn put(
    registry: &Registry,
    name: &RepoName,
    id: UploadId,
    req: Request,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(req.uri().query());
    let digest = match parse_digest_param(query_get(&pairs, "digest"), "digest") {
        Ok(d) => d,
        Err(e) => {
            // An unknown session is reported as such, whatever else is wrong.
            registry.upload_status(name, id).await?;
            return Err(e);
        }
    };
    let range = parse_content_range(req.headers())?;
    let body = req.into_body().into_data_stream();
    registry
        .complete_upload(name, id, &digest, range, body)
        .await
        .map_err(|e| with_location(e, name, id))?;
    Ok(created(name, &digest))
}

pub(crate) async fn cancel(
    registry: &Registry,
    name: &RepoName,
    id: UploadId,
) -> Result<Response, ApiError> {
    registry.cancel_upload(name, id).await?;
    Ok(empty(StatusCode::NO_CONTENT, vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cr(v: &str) -> Result<Option<(u64, u64)>, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(v).unwrap());
        parse_content_range(&h)
    }

    #[test]
    fn content_ranges() {
        assert_eq!(cr("0-9").unwrap(), Some((0, 9)));
        assert_eq!(cr("bytes 10-19/*").unwrap(), Some((10, 19)));
        assert_eq!(cr("bytes=5-5").unwrap(), Some((5, 5)));
        assert!(cr("abc").is_err());
        assert!(cr("-5").is_err());
        assert!(cr("1-").is_err());
        assert_eq!(parse_content_range(&HeaderMap::new()).unwrap(), None);
    }
}
