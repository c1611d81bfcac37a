//! Content discovery: tags (end-8), catalog, referrers (end-12), with `n`/`last`
//! pagination and `Link` headers (RFC 5988, `rel="next"`).

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, ErrorCode, RepoName, media_type};
use berth_registry::Registry;

use super::names::OCI_FILTERS_APPLIED;
use super::{query_get, query_pairs};
use crate::error::ApiError;

/// Most entries returned in one page when the client asks for more (or no `n`);
/// a `Link` header then points at the rest.
pub(crate) const MAX_PAGE: u32 = 10_000;

struct Page {
    n: u32,
    last: Option<String>,
}

fn page(req: &Request) -> Result<Page, ApiError> {
    let pairs = query_pairs(req.uri().query());
    let n = match query_get(&pairs, "n") {
        None | Some("") => MAX_PAGE,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Unsupported,
                    format!("query parameter n must be a non-negative integer, not {v:?}"),
                )
                .with_status(StatusCode::BAD_REQUEST)
            })?
            .min(MAX_PAGE as u64) as u32,
    };
    let last = query_get(&pairs, "last")
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    Ok(Page { n, last })
}

/// Fetch one more than asked to learn whether a next page exists.
fn split_page(mut items: Vec<String>, n: u32) -> (Vec<String>, Option<String>) {
    if items.len() > n as usize {
        items.truncate(n as usize);
        let next = items.last().cloned();
        (items, next)
    } else {
        (items, None)
    }
}

fn json_page(body: serde_json::Value, next: Option<(String, u32, String)>) -> Response {
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some((path, n, last)) = next {
        let q =
            serde_urlencoded::to_string([("n", n.to_string()), ("last", last)]).unwrap_or_default();
        if let Ok(v) = format!("<{path}?{q}>; rel=\"next\"").parse() {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    resp
}

pub(crate) async fn tags(
    registry: &Registry,
    name: &RepoName,
    req: Request,
) -> Result<Response, ApiError> {
    let Page { n, last } = page(&req)?;
    if n == 0 {
        // Spec: `n=0` returns an empty list and no Link header; the repository
        // must still exist.
        registry.tags(name, 0, None).await?;
        return Ok(json_page(
            serde_json::json!({ "name": name.as_str(), "tags": [] }),
            None,
        ));
    }
    let items = registry.tags(name, n + 1, last).await?;
    let (tags, next) = split_page(items, n);
    Ok(json_page(
        serde_json::json!({ "name": name.as_str(), "tags": tags }),
        next.map(|l| (format!("/v2/{name}/tags/list"), n, l)),
    ))
}

/// The catalog, showing only repositories `visible` accepts (those the caller may
/// pull); pagination counts visible names only.
pub(crate) async fn catalog(
    registry: &Registry,
    req: Request,
    visible: &(dyn Fn(&str) -> bool + Send + Sync),
) -> Result<Response, ApiError> {
    let Page { n, last } = page(&req)?;
    if n == 0 {
        return Ok(json_page(serde_json::json!({ "repositories": [] }), None));
    }
    let want = n as usize + 1;
    let mut shown = Vec::new();
    let mut cursor = last;
    loop {
        let batch = registry.catalog(MAX_PAGE, cursor.clone()).await?;
        let full = batch.len() == MAX_PAGE as usize;
        cursor = batch.last().cloned();
        shown.extend(batch.into_iter().filter(|r| visible(r)));
        if shown.len() >= want || !full {
            break;
        }
    }
    let (repos, next) = split_page(shown, n);
    Ok(json_page(
        serde_json::json!({ "repositories": repos }),
        next.map(|l| ("/v2/_catalog".to_owned(), n, l)),
    ))
}

pub(crate) async fn referrers(
    registry: &Registry,
    name: &RepoName,
    subject: &Digest,
    req: Request,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(req.uri().query());
    let filter = query_get(&pairs, "artifactType")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let filtered = filter.is_some();
    let body = registry.referrers(name, subject, filter).await?;
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, media_type::OCI_INDEX)],
        body,
    )
        .into_response();
    if filtered {
        resp.headers_mut().insert(
            OCI_FILTERS_APPLIED,
            header::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
