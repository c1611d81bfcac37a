//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>` (end-3, end-7, end-9).
//!
//! Manifests are served as the exact bytes pushed, with the media type they were
//! pushed with, whatever the request's `Accept` says: converting or refusing would
//! change the digest a client pinned.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use berth_oci::{ErrorCode, Reference, RepoName, Tag};
use berth_registry::Registry;
use http_body_util::BodyExt;

use super::names::{DOCKER_CONTENT_DIGEST, OCI_SUBJECT};
use super::{content_length, empty, header_str, query_pairs};
use crate::error::ApiError;
use crate::events::{DeleteReason, Event, Events};

pub(crate) async fn get(
    registry: &Registry,
    name: &RepoName,
    reference: &Reference,
    with_body: bool,
) -> Result<Response, ApiError> {
    let m = if with_body {
        registry.manifest(name, reference).await?
    } else {
        registry.manifest_head(name, reference).await?
    };
    if with_body {
        registry.record_pull(name, &m.digest);
    }
    let digest = m.digest.to_string();
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &m.media_type)
        .header(header::CONTENT_LENGTH, m.size)
        .header(header::ETAG, format!("\"{digest}\""))
        .header(DOCKER_CONTENT_DIGEST, &digest);
    let body = if with_body {
        Body::from(m.content)
    } else {
        Body::empty()
    };
    resp.body(body).map_err(ApiError::internal)
}

/// Store a manifest; emits `manifest.pushed` and a `tag.updated` per tag created
/// or moved, and leaves the [`berth_registry::ManifestPut`] in the response's
/// extensions for the metrics layer.
pub(crate) async fn put(
    registry: &Registry,
    events: &Events,
    name: &RepoName,
    reference: &Reference,
    req: Request,
) -> Result<Response, ApiError> {
    let limit = registry.limits().max_manifest_bytes;
    let too_large = || ApiError::from(berth_registry::RegistryError::ManifestTooLarge { limit });
    if content_length(req.headers()).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut tags = Vec::new();
    for (k, v) in query_pairs(req.uri().query()) {
        if k == "tag" {
            let t: Tag = v.parse().map_err(|e: berth_oci::NameError| {
                ApiError::new(ErrorCode::ManifestInvalid, e.to_string())
            })?;
            tags.push(t);
        }
    }
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
    // Bounded read: at most limit + 1 bytes are ever held.
    let limited = http_body_util::Limited::new(req.into_body(), (limit + 1) as usize);
    let body = match limited.collect().await {
        Ok(c) => c.to_bytes().to_vec(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("request body ended early: {e}"),
            ));
        }
    };
    let put = registry
        .put_manifest(name, reference, &tags, content_type.as_deref(), body)
        .await?;
    events.manifest_put(name.as_str(), &put);
    let digest = put.digest.to_string();
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        (DOCKER_CONTENT_DIGEST, digest),
    ];
    if let Some(s) = &put.subject {
        headers.push((OCI_SUBJECT, s.to_string()));
    }
    let mut resp = empty(StatusCode::CREATED, headers);
    resp.extensions_mut().insert(put);
    Ok(resp)
}

/// Delete a tag or a manifest; emits `tag.deleted` or `manifest.deleted`.
pub(crate) async fn delete(
    registry: &Registry,
    events: &Events,
    name: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    let digest = registry.delete_manifest(name, reference).await?;
    events.emit(match reference {
        Reference::Tag(t) => Event::tag_deleted(
            name.as_str(),
            t.as_str(),
            Some(&digest.to_string()),
            DeleteReason::Api,
        ),
        Reference::Digest(_) => Event::manifest_deleted(name.as_str(), &digest, DeleteReason::Api),
    });
    Ok(empty(StatusCode::ACCEPTED, vec![]))
}
