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

use crate::access::{Access, Caller, ClientCertUser, Need};
use crate::audit::Event as AuditEvent;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use axum::extract::ConnectInfo;
use berth_auth::policy::Action;
use berth_oci::Reference;

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Access control.
    pub access: Arc<Access>,
    /// Metrics and events.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

/// What an endpoint needs the caller to be allowed.
fn need_of<'a>(endpoint: &'a Endpoint, method: &Method) -> Need<'a> {
    match endpoint {
        Endpoint::Base => Need::Base,
        Endpoint::Catalog => Need::Catalog,
        Endpoint::Tags(n) | Endpoint::Referrers(n, _) => Need::Repo(n.as_str(), Action::Pull),
        Endpoint::Manifest(n, _) | Endpoint::Blob(n, _) => match *method {
            Method::PUT => Need::Repo(n.as_str(), Action::Push),
            Method::DELETE => Need::Repo(n.as_str(), Action::Delete),
            _ => Need::Repo(n.as_str(), Action::Pull),
        },
        Endpoint::UploadStart(n) | Endpoint::Upload(n, _) => Need::Repo(n.as_str(), Action::Push),
    }
}

/// Drop `mount`/`from` from an upload start the caller may not mount from: the
/// registry then starts a normal upload (202) and reveals nothing about `from`.
fn strip_forbidden_mount(req: &mut Request, access: &Access, caller: &Caller) {
    let pairs = query_pairs(req.uri().query());
    let Some(from) = query_get(&pairs, "from") else {
        return;
    };
    if access.permits(caller, from, Action::Pull) {
        return;
    }
    let kept: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "mount" && k != "from")
        .collect();
    let q = serde_urlencoded::to_string(kept).unwrap_or_default();
    let path = req.uri().path().to_owned();
    let uri = if q.is_empty() {
        path
    } else {
        format!("{path}?{q}")
    };
    if let Ok(u) = uri.parse() {
        *req.uri_mut() = u;
    }
}

/// Audit what changed: pushes, tag changes and deletes that succeeded.
fn audit_change(
    access: &Access,
    caller: &Caller,
    endpoint: &Endpoint,
    method: &Method,
    status: StatusCode,
) {
    if !status.is_success() {
        return;
    }
    let (kind, repo, reference) = match (endpoint, method) {
        (Endpoint::Manifest(n, Reference::Tag(t)), &Method::PUT) => ("tag", n, t.to_string()),
        (Endpoint::Manifest(n, r), &Method::PUT) => ("push", n, r.to_string()),
        (Endpoint::Upload(n, _), &Method::PUT) if status == StatusCode::CREATED => {
            ("push", n, String::new())
        }
        (Endpoint::Manifest(n, r), &Method::DELETE) => ("delete", n, r.to_string()),
        (Endpoint::Blob(n, d), &Method::DELETE) => ("delete", n, d.to_string()),
        _ => return,
    };
    access.audit.record(AuditEvent {
        kind,
        user: caller.user.as_deref(),
        addr: caller.addr,
        method: method.as_str(),
        repository: Some(repo.as_str()),
        reference: (!reference.is_empty()).then_some(reference.as_str()),
        status: status.as_u16(),
    });
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
pub async fn dispatch(State(state): State<AppState>, mut req: Request) -> Response {
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
    let access = &state.access;
    // HTTP/2 carries the host in `:authority`, not `Host`; challenges build the
    // token realm from `Host`.
    if !req.headers().contains_key(header::HOST)
        && let Some(v) = req
            .uri()
            .authority()
            .and_then(|a| header::HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    let addr = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let cert_user = req
        .extensions()
        .get::<ClientCertUser>()
        .map(|c| c.0.clone());
    let need = need_of(&endpoint, &method);
    let caller = match access.authenticate(
        req.headers(),
        method.as_str(),
        addr,
        cert_user.as_deref(),
        need,
    ) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if let Err(resp) = access.authorize(&caller, need, req.headers(), method.as_str()) {
        return resp;
    }
    if let Need::Repo(_, action) = need
        && let Err(resp) = access.check_action_rate(&caller, action)
    {
        return resp;
    }
    if matches!(endpoint, Endpoint::UploadStart(_)) && !access.is_open() {
        strip_forbidden_mount(&mut req, access, &caller);
    }
    let visible = |name: &str| access.policy_permits(&caller, name, Action::Pull);
    let r = &state.registry;
    let result: Result<Response, ApiError> = match (&endpoint, &method) {
        (Endpoint::Base, &Method::GET | &Method::HEAD) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()),
        (Endpoint::Catalog, &Method::GET) => discovery::catalog(r, req, &visible).await,
        (Endpoint::Tags(name), &Method::GET) => discovery::tags(r, name, req).await,
        (Endpoint::Referrers(name, d), &Method::GET) => discovery::referrers(r, name, d, req).await,
        (Endpoint::Manifest(name, re), &Method::GET) => manifests::get(r, name, re, true).await,
        (Endpoint::Manifest(name, re), &Method::HEAD) => manifests::get(r, name, re, false).await,
        (Endpoint::Manifest(name, re), &Method::PUT) => {
            manifests::put(r, &state.telemetry.events, name, re, req).await
        }
        (Endpoint::Manifest(name, re), &Method::DELETE) => {
            manifests::delete(r, &state.telemetry.events, name, re).await
        }
        (Endpoint::Blob(name, d), &Method::GET) => {
            blobs::get(r, name, d, req.headers(), true).await
        }
        (Endpoint::Blob(name, d), &Method::HEAD) => {
            blobs::get(r, name, d, req.headers(), false).await
        }
        (Endpoint::Blob(name, d), &Method::DELETE) => {
            blobs::delete(r, &state.telemetry.events, name, d).await
        }
        (Endpoint::UploadStart(name), &Method::POST) => uploads::start(r, name, req).await,
        (Endpoint::Upload(name, id), &Method::GET) => uploads::status(r, name, *id).await,
        (Endpoint::Upload(name, id), &Method::PATCH) => uploads::patch(r, name, *id, req).await,
        (Endpoint::Upload(name, id), &Method::PUT) => uploads::put(r, name, *id, req).await,
        (Endpoint::Upload(name, id), &Method::DELETE) => uploads::cancel(r, name, *id).await,
        _ => Err(unsupported(&method)),
    };
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    if state.telemetry.access_log
        && let Some(user) = &caller.user
    {
        resp.extensions_mut()
            .insert(crate::telemetry::layer::CallerName(user.clone()));
    }
    if !access.is_open() {
        audit_change(access, &caller, &endpoint, &method, resp.status());
    }
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
