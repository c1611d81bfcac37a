//! Request handlers, one module per resource. [`dispatch`] parses the endpoint and
//! the method, then calls exactly one handler.

mod blobs;
mod discovery;
mod manifests;
mod uploads;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::ErrorCode;
use berth_registry::Registry;

use crate::endpoint::Endpoint;
use crate::error::ApiError;

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The registry.
    pub registry: Arc<Registry>,
}

/// Header names the spec and Docker clients use.
pub(crate) mod names {
    pub const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
    pub const DOCKER_UPLOAD_UUID: &str = "docker-upload-uuid";
    pub const OCI_SUBJECT: &str = "oci-subject";
    pub const OCI_FILTERS_APPLIED: &str = "oci-filters-applied";
}

/// Query parameters as (key, value) pairs, in order; repeated keys kept.
pub(crate) fn query_pairs(req_query: Option<&str>) -> Vec<(String, String)> {
    req_query
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

/// The first value of query parameter `key`.
pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A header's value as a string, if present and visible ASCII.
pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's Content-Length, if sent and valid.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

fn unsupported(method: &Method) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!("method {method} is not supported on this endpoint"),
    )
}

/// Route one request.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let endpoint = match Endpoint::parse(&method, &path) {
        None => {
            return ApiError::new(ErrorCode::Unsupported, format!("no endpoint at {path}"))
                .with_status(StatusCode::NOT_FOUND)
                .into_response();
        }
        Some(Err(e)) => return e.into_response(),
        Some(Ok(e)) => e,
    };
    let r = &state.registry;
    let result: Result<Response, ApiError> = match (&endpoint, &method) {
        (Endpoint::Base, &Method::GET | &Method::HEAD) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()),
        (Endpoint::Catalog, &Method::GET) => discovery::catalog(r, req).await,
        (Endpoint::Tags(name), &Method::GET) => discovery::tags(r, name, req).await,
        (Endpoint::Referrers(name, d), &Method::GET) => discovery::referrers(r, name, d, req).await,
        (Endpoint::Manifest(name, re), &Method::GET) => manifests::get(r, name, re, true).await,
        (Endpoint::Manifest(name, re), &Method::HEAD) => manifests::get(r, name, re, false).await,
        (Endpoint::Manifest(name, re), &Method::PUT) => manifests::put(r, name, re, req).await,
        (Endpoint::Manifest(name, re), &Method::DELETE) => manifests::delete(r, name, re).await,
        (Endpoint::Blob(name, d), &Method::GET) => {
            blobs::get(r, name, d, req.headers(), true).await
        }
        (Endpoint::Blob(name, d), &Method::HEAD) => {
            blobs::get(r, name, d, req.headers(), false).await
        }
        (Endpoint::Blob(name, d), &Method::DELETE) => blobs::delete(r, name, d).await,
        (Endpoint::UploadStart(name), &Method::POST) => uploads::start(r, name, req).await,
        (Endpoint::Upload(name, id), &Method::GET) => uploads::status(r, name, *id).await,
        (Endpoint::Upload(name, id), &Method::PATCH) => uploads::patch(r, name, *id, req).await,
        (Endpoint::Upload(name, id), &Method::PUT) => uploads::put(r, name, *id, req).await,
        (Endpoint::Upload(name, id), &Method::DELETE) => uploads::cancel(r, name, *id).await,
        _ => Err(unsupported(&method)),
    };
    let resp = result.unwrap_or_else(IntoResponse::into_response);
    tracing::debug!(op = endpoint.operation(), %method, %path, status = resp.status().as_u16(), "request");
    resp
}

/// An empty response with a status and headers.
pub(crate) fn empty(status: StatusCode, headers: Vec<(&'static str, String)>) -> Response {
    let mut resp = Response::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    resp.header(header::CONTENT_LENGTH, "0")
        .body(Body::empty())
        .unwrap_or_else(|e| ApiError::internal(e).into_response())
}
