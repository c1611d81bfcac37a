//! Supply-chain artefacts, with no network or HTTP: cosign-compatible keys
//! ([`keys`]), simple-signing signatures ([`signature`]), in-toto statements in
//! DSSE envelopes ([`attestation`]), the OCI manifests that carry them through a
//! registry by cosign's tag scheme or as OCI 1.1 referrers ([`attach`]), and SBOMs
//! catalogued from an image's layers ([`sbom`]).

pub mod attach;
pub mod attestation;
pub mod error;
pub mod keys;
pub mod sbom;
pub mod signature;

pub use error::{Result, SupplyError};
