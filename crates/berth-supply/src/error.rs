//! The crate's typed errors. Messages name what was wrong in the terms of the
//! format (the PEM label, the JSON field, the digest expected and found).

use crate::sbom::SbomError;

/// What went wrong with a key, a signature, an attestation or an SBOM.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    /// A key file could not be read as a key (wrong PEM label, bad encoding…).
    #[error("key: {0}")]
    Key(String),
    /// The password did not decrypt the private key.
    #[error("wrong password for the encrypted private key (or the key file is corrupt)")]
    WrongPassword,
    /// A signature did not verify against the key.
    #[error("signature does not verify with the given key")]
    BadSignature,
    /// A payload, envelope or statement was not what the format requires.
    #[error("{0}")]
    Format(String),
    /// The signed claims do not match what was asked (another digest, a missing
    /// annotation…).
    #[error("{0}")]
    Mismatch(String),
    /// Cataloguing an image for an SBOM failed.
    #[error(transparent)]
    Sbom(#[from] SbomError),
}

/// Result with [`SupplyError`].
pub type Result<T, E = SupplyError> = std::result::Result<T, E>;
