//! berth's registry client: authentication, manifest and blob transfer between
//! registries and OCI image layouts, with digest verification while streaming,
//! retries and resumable uploads.

pub mod auth;
pub mod challenge;
pub mod credentials;
pub mod error;
pub mod platform;
pub mod registry;
pub mod retry;
pub mod source;
pub mod transfer;

pub use error::{ClientError, Result};
pub use registry::{Client, ClientOptions};
