//! The one mapping from domain errors to HTTP responses.
//!
//! Every error response carries the spec's envelope
//! `{"errors":[{"code","message","detail"}]}` with the code's status (or the
//! spec's override, e.g. 416, 413). Internal failures become a generic 500; their
//! cause is logged once, here, and never sent to the client.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_oci::{ErrorBody, ErrorCode, ErrorEntry};
use berth_registry::RegistryError;

/// An error on its way to becoming a response (boxed: errors are rare, results
/// are everywhere).
#[derive(Debug)]
pub struct ApiError(Box<ApiErrorParts>);

/// The parts of an [`ApiError`].
#[derive(Debug)]
pub struct ApiErrorParts {
    /// HTTP status.
    pub status: StatusCode,
    /// Spec code; `None` for internal errors.
    pub code: Option<ErrorCode>,
    /// Message sent to the client.
    pub message: String,
    /// Optional structured detail(s): one entry per value when an array of entries
    /// is wanted (see [`ApiError::entries`]).
    pub detail: serde_json::Value,
    /// Extra entries (e.g. one per missing blob) after the first.
    pub entries: Vec<ErrorEntry>,
    /// Extra response headers.
    pub headers: HeaderMap,
    /// Internal cause, logged and never sent.
    internal: Option<String>,
}

impl std::ops::Deref for ApiError {
    type Target = ApiErrorParts;
    fn deref(&self) -> &ApiErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorParts {
        &mut self.0
    }
}

impl ApiError {
    /// An error with a spec code and its default status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(Box::new(ApiErrorParts {
            status: StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code: Some(code),
            message: message.into(),
            detail: serde_json::Value::Null,
            entries: Vec::new(),
            headers: HeaderMap::new(),
            internal: None,
        }))
    }

    /// Override the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Add a response header (ignored if the value is not a valid header value).
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    /// An internal failure: 500, generic message, cause logged.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError(Box::new(ApiErrorParts {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: None,
            message: "internal server error".into(),
            detail: serde_json::Value::Null,
            entries: Vec::new(),
            headers: HeaderMap::new(),
            internal: Some(cause.to_string()),
        }))
    }

    /// The wire entries of this error.
    pub fn entries(&self) -> Vec<ErrorEntry> {
        let Some(code) = self.code else {
            return Vec::new();
        };
        let mut v = vec![ErrorEntry {
            code,
            message: self.message.clone(),
            detail: self.detail.clone(),
        }];
        v.extend(self.entries.iter().cloned());
        v
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let Some(code) = e.code() else {
            return ApiError::internal(e);
        };
        let mut api = ApiError::new(code, e.to_string());
        api.status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        api.detail = e.detail();
        match &e {
            RegistryError::RangeNotSatisfiable { current, .. } => {
                api = api.with_header(
                    HeaderName::from_static("range"),
                    &format!("0-{}", current.saturating_sub(1)),
                );
            }
            RegistryError::ManifestBlobUnknown(missing) => {
                // One entry per missing digest, as the spec asks.
                let mut entries = missing.iter().map(|d| ErrorEntry {
                    code,
                    message: format!("blob or manifest {d} is not in this repository"),
                    detail: serde_json::json!({ "digest": d }),
                });
                if let Some(first) = entries.next() {
                    api.message = first.message;
                    api.detail = first.detail;
                }
                api.entries = entries.collect();
            }
            _ => {}
        }
        api
    }
}

impl From<berth_storage::StorageError> for ApiError {
    fn from(e: berth_storage::StorageError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.internal {
            tracing::error!(error = %cause, "internal error");
        }
        let body = if self.code.is_some() {
            ErrorBody {
                errors: self.entries(),
            }
        } else {
            ErrorBody { errors: Vec::new() }
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let ApiErrorParts {
            status,
            headers,
            code,
            ..
        } = *self.0;
        let mut resp = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response();
        resp.headers_mut().extend(headers);
        // For the metrics layer (manifest validation failures by code).
        if let Some(code) = code {
            resp.extensions_mut().insert(code);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::Digest;

    #[test]
    fn one_entry_per_missing_blob() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let api: ApiError = RegistryError::ManifestBlobUnknown(vec![a.clone(), b.clone()]).into();
        let entries = api.entries();
        assert_eq!(entries.len(), 2);
        assert!(
            entries
                .iter()
                .all(|e| e.code == ErrorCode::ManifestBlobUnknown)
        );
        assert_eq!(entries[1].detail["digest"], b.to_string());
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let api = ApiError::internal("disk /secret/path failed");
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(api.entries().is_empty());
        assert!(!api.message.contains("secret"));
    }
}
