//! Docker token authentication: berth's own token service and the verification of
//! bearer tokens on the registry side.
//!
//! * [`parse_scopes`] reads the `scope` parameter of a token request
//!   (`auth-scope.md`) into [`Access`] entries.
//! * [`TokenIssuer`] holds the service's EC P-256 key (loaded from, or generated
//!   into, a `0600` PEM file) and signs short-lived ES256 access tokens whose claims
//!   follow `auth-jwt.md`, plus long-lived refresh tokens for the OAuth2 flow
//!   (`auth-oauth.md`).
//! * [`TokenVerifier`] checks bearer tokens against a set of [`TrustedIssuer`]s: this
//!   service's own key and/or external issuers configured with PEM public keys,
//!   certificates or a JWKS file. It checks the signature, an algorithm allow-list
//!   (never `none`, never HMAC: a public key is not a shared secret), `iss`, `aud`,
//!   `exp` and `nbf`, and refuses refresh tokens presented as access tokens.
//!
//! Errors never contain a token: values quoted from a token's claims are shortened
//! and escaped.

mod issuer;
mod keys;
mod scope;
mod verifier;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use issuer::{IssuerConfig, TokenIssuer};
pub use jsonwebtoken::Algorithm;
pub use keys::TrustedKey;
pub use scope::{Access, parse_scope, parse_scopes};
pub use verifier::{DEFAULT_ALGORITHMS, TokenVerifier, TrustedIssuer, parse_algorithms};

/// Clock skew tolerated when checking `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;
/// Clock skew tolerated when checking `exp`: none. An expired token is refused the
/// second after its `exp` (RFC 7519 §4.1.4), so a short lifetime means what it says;
/// issuers whose clocks drift should issue tokens that live a little longer.
pub const EXPIRY_LEEWAY_SECS: u64 = 0;

/// The claim set of an access token (`auth-jwt.md`).
///
/// On input `aud` may also be an array (RFC 7519); a verified token's `aud` is the
/// audience it was accepted for. Missing `sub`, `nbf`, `iat` and `jti` read as empty
/// or zero; a missing `exp` is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: who signed the token.
    pub iss: String,
    /// Subject: the user the token was issued to; empty for an anonymous client.
    pub sub: String,
    /// Audience: the service (registry) the token is meant for.
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch.
    pub nbf: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
    /// The granted access: resources and the actions allowed on each.
    #[serde(default)]
    pub access: Vec<Access>,
}

/// Why a key could not be loaded, a scope parsed, or a token issued or accepted.
///
/// Messages never include a token; values taken from a token are shortened.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A key or key set file is unusable.
    #[error("key file {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A private key file is readable or writable by group or others.
    #[error(
        "key file {} is accessible by group or others (mode {mode:04o}); restrict it with `chmod 600`",
        path.display()
    )]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The token's `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// The token's `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// No trusted key verifies the token's signature.
    #[error("token signature is not valid for any trusted key")]
    BadSignature,
    /// The token is meant for another service.
    #[error("token audience {got:?} is not this service")]
    BadAudience {
        /// The audience claimed by the token (shortened).
        got: String,
    },
    /// The token's issuer is not trusted.
    #[error("token issuer {got:?} is not trusted")]
    UnknownIssuer {
        /// The issuer claimed by the token (shortened).
        got: String,
    },
    /// The signing algorithm is not accepted (`none` and HMAC never are).
    #[error("token algorithm {alg:?} is not allowed")]
    AlgorithmNotAllowed {
        /// The algorithm name (shortened).
        alg: String,
    },
    /// The token is not a well-formed JWT of the expected shape.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// A `scope` value does not follow the scope grammar.
    #[error("invalid scope {scope:?}: {reason}")]
    BadScope {
        /// The offending scope (shortened).
        scope: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A refresh token was presented where an access token is required.
    #[error("a refresh token cannot be used as an access token")]
    IsRefreshToken,
    /// An access token (or a foreign token) was presented as a refresh token.
    #[error("not a refresh token issued by this service")]
    NotRefreshToken,
    /// A trusted issuer's configuration cannot work.
    #[error("token issuer configuration: {0}")]
    Config(String),
    /// Key generation, encoding or signing failed.
    #[error("token signing: {0}")]
    Signing(String),
}

/// `s` made safe to quote in an error or log line: at most 64 characters, control
/// characters replaced (the error messages quote it with `{:?}`).
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
