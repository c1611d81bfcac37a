//! The distribution-spec wire error table (§ Error Codes, code-1 … code-14) and the
//! error envelope `{"errors":[{"code","message","detail"}]}`.
//!
//! This is the only place codes, default messages and HTTP statuses are written down;
//! the server and the client both use it.

use serde::{Deserialize, Serialize};

/// One of the fourteen error codes the spec allows; no others exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// code-1: blob unknown to registry.
    BlobUnknown,
    /// code-2: blob upload invalid.
    BlobUploadInvalid,
    /// code-3: blob upload unknown to registry.
    BlobUploadUnknown,
    /// code-4: provided digest did not match uploaded content.
    DigestInvalid,
    /// code-5: manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// code-6: manifest invalid.
    ManifestInvalid,
    /// code-7: manifest unknown to registry.
    ManifestUnknown,
    /// code-8: invalid repository name.
    NameInvalid,
    /// code-9: repository name not known to registry.
    NameUnknown,
    /// code-10: provided length did not match content length.
    SizeInvalid,
    /// code-11: authentication required.
    Unauthorized,
    /// code-12: requested access to the resource is denied.
    Denied,
    /// code-13: the operation is unsupported.
    Unsupported,
    /// code-14: too many requests.
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
}

impl ErrorCode {
    /// Every code, in spec order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::TooManyRequests,
    ];

    /// The identifier as sent on the wire, e.g. `BLOB_UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        self.row().0
    }

    /// The spec's description, used as the default message.
    pub fn description(self) -> &'static str {
        self.row().1
    }

    /// The HTTP status this code is sent with by default.
    pub fn status(self) -> u16 {
        self.row().2
    }

    fn row(self) -> (&'static str, &'static str, u16) {
        match self {
            ErrorCode::BlobUnknown => ("BLOB_UNKNOWN", "blob unknown to registry", 404),
            ErrorCode::BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", "blob upload invalid", 400),
            ErrorCode::BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry",
                404,
            ),
            ErrorCode::DigestInvalid => (
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
                400,
            ),
            ErrorCode::ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                "manifest references a manifest or blob unknown to registry",
                400,
            ),
            ErrorCode::ManifestInvalid => ("MANIFEST_INVALID", "manifest invalid", 400),
            ErrorCode::ManifestUnknown => ("MANIFEST_UNKNOWN", "manifest unknown to registry", 404),
            ErrorCode::NameInvalid => ("NAME_INVALID", "invalid repository name", 400),
            ErrorCode::NameUnknown => {
                ("NAME_UNKNOWN", "repository name not known to registry", 404)
            }
            ErrorCode::SizeInvalid => (
                "SIZE_INVALID",
                "provided length did not match content length",
                400,
            ),
            ErrorCode::Unauthorized => ("UNAUTHORIZED", "authentication required", 401),
            ErrorCode::Denied => ("DENIED", "requested access to the resource is denied", 403),
            ErrorCode::Unsupported => ("UNSUPPORTED", "the operation is unsupported", 405),
            ErrorCode::TooManyRequests => ("TOOMANYREQUESTS", "too many requests", 429),
        }
    }
}

/// One entry of the error envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// The spec code.
    pub code: ErrorCode,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// The error envelope `{"errors":[…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The errors, at least one.
    pub errors: Vec<ErrorEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_and_spec_charset() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_')
            );
        }
    }

    #[test]
    fn envelope_shape() {
        let body = ErrorBody {
            errors: vec![ErrorEntry {
                code: ErrorCode::BlobUnknown,
                message: "blob unknown to registry".into(),
                detail: serde_json::json!({"digest": "sha256:x"}),
            }],
        };
        let v: serde_json::Value = serde_json::to_value(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["detail"]["digest"], "sha256:x");
    }
}
