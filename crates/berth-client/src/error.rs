//! The client's error type: one variant per way a transfer or registry call can
//! fail, each carrying enough to name the object and the cause.

use berth_oci::digest::Digest;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A reference or location could not be parsed or used.
    #[error("{0}")]
    Reference(String),
    /// The connection failed (after retries).
    #[error("{op}: {source}")]
    Http {
        /// What was being done.
        op: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{op}: {status}{}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    Registry {
        /// What was being done.
        op: String,
        /// HTTP status.
        status: u16,
        /// The first OCI error code of the body, if any.
        code: Option<String>,
        /// The error's message (or the body's start).
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// The registry refused our credentials, or we have none.
    #[error("{op}: authentication failed (401 UNAUTHORIZED){detail}")]
    Unauthorized {
        /// What was being done.
        op: String,
        /// More detail (token server answer, missing credentials).
        detail: String,
    },
    /// The registry knows who we are and refuses the operation.
    #[error("{op}: access denied (403 DENIED){detail}")]
    Denied {
        /// What was being done.
        op: String,
        /// The registry's message.
        detail: String,
    },
    /// Content did not hash to the digest that names it.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The object.
        what: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// Content did not have its declared size.
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The object.
        what: String,
        /// Declared size.
        expected: u64,
        /// Size seen (a lower bound when more arrived than declared).
        actual: u64,
    },
    /// A manifest or index could not be used.
    #[error("{what}: invalid manifest: {reason}")]
    InvalidManifest {
        /// The object.
        what: String,
        /// Why.
        reason: String,
    },
    /// The index has no manifest for the wanted platform.
    #[error("no manifest for {wanted} in {reference}; available: {}", if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    PlatformNotFound {
        /// The index's reference.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: Vec<String>,
    },
    /// The registry broke the protocol (missing header, bad Location, …).
    #[error("{0}")]
    Protocol(String),
    /// No signature or attestation verified (the message says what was found and
    /// why each failed).
    #[error("{0}")]
    Verification(String),
    /// A layout operation failed.
    #[error(transparent)]
    Layout(#[from] berth_oci::layout::LayoutError),
    /// Reading credentials failed.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    /// A local I/O operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// Whether this is "not found" or "verification failed" (CLI exit code 1), as
    /// opposed to a usage or runtime error (exit code 2).
    pub fn is_not_found_or_unverified(&self) -> bool {
        use berth_oci::layout::LayoutError as L;
        match self {
            ClientError::NotFound(_)
            | ClientError::DigestMismatch { .. }
            | ClientError::SizeMismatch { .. }
            | ClientError::InvalidManifest { .. }
            | ClientError::PlatformNotFound { .. }
            | ClientError::Verification(_) => true,
            ClientError::Registry { status, .. } => *status == 404,
            ClientError::Layout(
                L::DigestMismatch { .. }
                | L::SizeMismatch { .. }
                | L::BlobMissing(_)
                | L::RefNotFound(_),
            ) => true,
            _ => false,
        }
    }

    /// Turn a layout digest/size mismatch into the client's own variant, naming
    /// the object.
    pub(crate) fn from_layout(what: &str, e: berth_oci::layout::LayoutError) -> ClientError {
        use berth_oci::layout::LayoutError as L;
        match e {
            L::DigestMismatch { expected, actual } => ClientError::DigestMismatch {
                what: what.to_owned(),
                expected,
                actual,
            },
            L::SizeMismatch {
                expected, actual, ..
            } => ClientError::SizeMismatch {
                what: what.to_owned(),
                expected,
                actual,
            },
            other => ClientError::Layout(other),
        }
    }
}

/// Result alias for the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
