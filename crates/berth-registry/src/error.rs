//! The registry's domain errors and the one mapping from them to wire codes.

use berth_oci::{Digest, ErrorCode, ManifestError};
use berth_storage::StorageError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The blob is not linked in the repository.
    #[error("blob {0} is not in this repository")]
    BlobUnknown(Digest),
    /// The upload session does not exist (or belongs to another repository).
    #[error("upload {0} is not known")]
    UploadUnknown(String),
    /// A chunk does not start where the upload currently ends.
    #[error("chunk range starts at {start} but the upload holds {current} bytes")]
    RangeNotSatisfiable {
        /// Bytes received so far.
        current: u64,
        /// Where the rejected chunk claimed to start.
        start: u64,
    },
    /// The upload request is malformed (bad Content-Range, body ended early …).
    #[error("{0}")]
    UploadInvalid(String),
    /// Content does not match the digest the client named, or the digest is malformed.
    #[error("{0}")]
    DigestInvalid(String),
    /// Content length does not match what the client declared.
    #[error("{0}")]
    SizeInvalid(String),
    /// No such manifest (tag or digest) in the repository.
    #[error("manifest {0} is not in this repository")]
    ManifestUnknown(String),
    /// The manifest does not parse as its media type.
    #[error("{0}")]
    ManifestInvalid(#[from] ManifestError),
    /// The manifest is larger than the configured limit.
    #[error("manifest is larger than the {limit}-byte limit")]
    ManifestTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The manifest references blobs or manifests not in the repository.
    #[error("manifest references {} blobs or manifests unknown to this repository", .0.len())]
    ManifestBlobUnknown(Vec<Digest>),
    /// A descriptor's size differs from the referenced content's size.
    #[error("descriptor of {digest} declares {declared} bytes but the repository holds {actual}")]
    DescriptorSizeMismatch {
        /// The referenced digest.
        digest: Digest,
        /// Size in the descriptor.
        declared: u64,
        /// Size stored.
        actual: u64,
    },
    /// The repository does not exist.
    #[error("repository {0} is not known")]
    NameUnknown(String),
    /// Refused by policy: an immutable tag, a quota.
    #[error("{0}")]
    Denied(String),
    /// Storage failed; never the client's fault.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RegistryError {
    /// The spec code for this error, or `None` for internal failures.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            RegistryError::BlobUnknown(_) => ErrorCode::BlobUnknown,
            RegistryError::UploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            RegistryError::RangeNotSatisfiable { .. } | RegistryError::UploadInvalid(_) => {
                ErrorCode::BlobUploadInvalid
            }
            RegistryError::DigestInvalid(_) => ErrorCode::DigestInvalid,
            RegistryError::SizeInvalid(_) => ErrorCode::SizeInvalid,
            RegistryError::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            RegistryError::ManifestInvalid(_)
            | RegistryError::ManifestTooLarge { .. }
            | RegistryError::DescriptorSizeMismatch { .. } => ErrorCode::ManifestInvalid,
            RegistryError::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            RegistryError::NameUnknown(_) => ErrorCode::NameUnknown,
            RegistryError::Denied(_) => ErrorCode::Denied,
            RegistryError::Storage(_) => return None,
        })
    }

    /// The HTTP status: the code's default, except where the spec names another
    /// (416 for an out-of-order chunk, 413 for an oversized manifest); 500 for
    /// internal failures.
    pub fn status(&self) -> u16 {
        match self {
            RegistryError::RangeNotSatisfiable { .. } => 416,
            RegistryError::ManifestTooLarge { .. } => 413,
            _ => self.code().map_or(500, ErrorCode::status),
        }
    }

    /// Structured detail for the error envelope.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            RegistryError::BlobUnknown(d) => serde_json::json!({ "digest": d }),
            RegistryError::ManifestUnknown(r) => serde_json::json!({ "reference": r }),
            RegistryError::NameUnknown(n) => serde_json::json!({ "name": n }),
            _ => serde_json::Value::Null,
        }
    }

    pub(crate) fn task(e: tokio::task::JoinError) -> Self {
        RegistryError::Storage(StorageError::Task(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_spec() {
        let d = Digest::sha256_of(b"");
        assert_eq!(RegistryError::BlobUnknown(d).status(), 404);
        assert_eq!(
            RegistryError::RangeNotSatisfiable {
                current: 1,
                start: 5
            }
            .status(),
            416
        );
        assert_eq!(RegistryError::ManifestTooLarge { limit: 1 }.status(), 413);
        assert_eq!(RegistryError::ManifestBlobUnknown(vec![]).status(), 400);
        let internal = RegistryError::Storage(StorageError::Task("x".into()));
        assert_eq!(internal.status(), 500);
        assert_eq!(internal.code(), None);
    }
}
