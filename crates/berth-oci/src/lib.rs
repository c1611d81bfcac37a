//! The OCI specifications as values.
//!
//! This crate owns the vocabulary every other berth crate speaks: [`Digest`] (with a
//! streaming [`Digester`]), repository names ([`RepoName`]), [`Tag`]s, manifest
//! [`Reference`]s, media types, manifest parsing and validation, and the wire
//! [`ErrorCode`] table of the distribution-spec. It does no I/O.

pub mod digest;
pub mod error;
pub mod layout;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod pattern;
pub mod reference;
pub mod schema;

pub use digest::{Algorithm, Digest, DigestError, Digester};
pub use error::{ErrorBody, ErrorCode, ErrorEntry};
pub use manifest::{Descriptor, ManifestError, ParsedManifest};
pub use name::{NameError, Reference, RepoName, Tag};
pub use pattern::RepoPattern;
pub use reference::{ImageReference, Location, ReferenceError};
