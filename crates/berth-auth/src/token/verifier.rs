//! Verification of bearer tokens on the registry side (`auth-jwt.md` "Verifying the
//! token").

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Deserializer};

use super::keys::{self, TrustedKey};
use super::scope::null_as_empty;
use super::{Access, Claims, EXPIRY_LEEWAY_SECS, LEEWAY_SECS, TokenError, now_unix, shorten};

/// Algorithms an external issuer may use when its configuration names none.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// Largest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The `typ` header of refresh tokens.
pub(crate) const REFRESH_TYP: &str = "berth-refresh+jwt";
/// The value of the `berth_use` claim that marks refresh tokens.
pub(crate) const REFRESH_CLAIM_VALUE: &str = "refresh";

/// An issuer whose tokens are accepted: its name (`iss`), the audience (`aud`) its
/// tokens must name, its public keys and the algorithms it may sign with.
#[derive(Clone, Debug)]
pub struct TrustedIssuer {
    /// The `iss` claim value.
    pub issuer: String,
    /// The `aud` claim value tokens must carry: this registry's service name.
    pub audience: String,
    /// Public keys that may have signed its tokens.
    pub keys: Vec<TrustedKey>,
    /// Algorithm allow-list. HMAC algorithms are never accepted, even if listed.
    pub algorithms: Vec<Algorithm>,
}

/// Parses an algorithm allow-list (`ES256`, `ES384`, `RS256`, `RS384`, `RS512`,
/// `PS256`, `PS384`, `PS512`, `EdDSA`); an empty list means [`DEFAULT_ALGORITHMS`].
/// `none` and the HMAC family (`HS*`) are refused: a public key must never be used
/// as a shared secret.
pub fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, TokenError> {
    if names.is_empty() {
        return Ok(DEFAULT_ALGORITHMS.to_vec());
    }
    let mut algorithms = Vec::new();
    for name in names {
        let alg = parse_asymmetric(name)?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    Ok(algorithms)
}

/// An asymmetric signature algorithm by its JOSE name.
fn parse_asymmetric(name: &str) -> Result<Algorithm, TokenError> {
    let not_allowed = || TokenError::AlgorithmNotAllowed { alg: shorten(name) };
    let alg: Algorithm = name.parse().map_err(|_| not_allowed())?;
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Err(not_allowed()),
        alg => Ok(alg),
    }
}

impl TrustedIssuer {
    /// An issuer with the given keys; see [`parse_algorithms`] for `algorithms`.
    /// Fails if no key can verify any allowed algorithm.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        keys: Vec<TrustedKey>,
        algorithms: &[String],
    ) -> Result<TrustedIssuer, TokenError> {
        let algorithms = parse_algorithms(algorithms)?;
        let issuer = TrustedIssuer {
            issuer: issuer.into(),
            audience: audience.into(),
            keys,
            algorithms,
        };
        let usable = issuer
            .keys
            .iter()
            .any(|k| k.algorithms.iter().any(|a| issuer.algorithms.contains(a)));
        if !usable {
            return Err(TokenError::Config(format!(
                "no key of issuer {:?} can verify any of the allowed algorithms {:?}",
                shorten(&issuer.issuer),
                issuer.algorithms
            )));
        }
        Ok(issuer)
    }

    /// An issuer whose keys are in a JWKS file (RFC 7517).
    pub fn from_jwks_file(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        path: &Path,
        algorithms: &[String],
    ) -> Result<TrustedIssuer, TokenError> {
        TrustedIssuer::new(issuer, audience, keys::load_jwks(path)?, algorithms)
    }

    /// An issuer whose keys are in PEM files: `PUBLIC KEY`, `RSA PUBLIC KEY` or
    /// `CERTIFICATE` blocks (a certificate bundle is fine; certificates are only key
    /// containers, their validity is not checked).
    pub fn from_pem_files(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        paths: &[PathBuf],
        algorithms: &[String],
    ) -> Result<TrustedIssuer, TokenError> {
        let mut keys = Vec::new();
        for path in paths {
            keys.extend(keys::load_pem_public_keys(path)?);
        }
        TrustedIssuer::new(issuer, audience, keys, algorithms)
    }
}

/// Checks bearer tokens against a set of trusted issuers. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TokenVerifier {
    issuers: Arc<Vec<TrustedIssuer>>,
}

/// Which kind of token a verification expects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Access,
    Refresh,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    access: Vec<Access>,
    #[serde(default, rename = "berth_use")]
    token_use: Option<String>,
}

/// RFC 7519 NumericDate: a JSON number of seconds, possibly fractional.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = Option::<serde_json::Number>::deserialize(d)?;
    Ok(n.map(|n| match n.as_u64() {
        Some(secs) => secs,
        // Negative or fractional: clamp at 0 and floor (`as` saturates).
        None => n.as_f64().map_or(0, |f| f.max(0.0) as u64),
    }))
}

impl TokenVerifier {
    /// A verifier trusting `issuers`.
    pub fn new(issuers: Vec<TrustedIssuer>) -> TokenVerifier {
        TokenVerifier {
            issuers: Arc::new(issuers),
        }
    }

    /// A verifier trusting the issuers of both `self` and `other`.
    pub fn with(self, other: TokenVerifier) -> TokenVerifier {
        let mut issuers = Arc::unwrap_or_clone(self.issuers);
        issuers.extend(other.issuers.iter().cloned());
        TokenVerifier::new(issuers)
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> &[TrustedIssuer] {
        &self.issuers
    }

    /// Verifies an access token now; see [`TokenVerifier::verify_at`].
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, now_unix())
    }

    /// Verifies an access token as of `now` (seconds since the Unix epoch): the
    /// `alg` must be in the allow-list of an issuer named by `iss` (`none` and HMAC
    /// are always refused), the signature must verify with one of that issuer's keys
    /// (the one named by `kid` if any matches, else each in turn), `aud` must be (or
    /// contain) that issuer's audience, `exp` must be present and not past and `nbf`
    /// not in the future (`exp` with [`EXPIRY_LEEWAY_SECS`], `nbf` with [`LEEWAY_SECS`] of leeway). Refresh tokens are
    /// refused. The returned claims carry the accepted audience as `aud`.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        verify_with(&self.issuers, token, now, Expect::Access)
    }
}

/// The verification shared by access and refresh tokens.
pub(crate) fn verify_with(
    issuers: &[TrustedIssuer],
    token: &str,
    now: u64,
    expect: Expect,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "not three dot-separated parts".into(),
        ));
    };
    let signing_input = &token[..header_b64.len() + 1 + claims_b64.len()];

    let header: RawHeader = decode_json(header_b64, "header")?;
    let alg = token_algorithm(&header.alg)?;
    let raw_claims: RawClaims = decode_json(claims_b64, "claims")?;

    let iss = raw_claims
        .iss
        .as_deref()
        .ok_or_else(|| TokenError::Malformed("no `iss` claim".into()))?;
    let named: Vec<&TrustedIssuer> = issuers.iter().filter(|i| i.issuer == iss).collect();
    if named.is_empty() {
        return Err(TokenError::UnknownIssuer { got: shorten(iss) });
    }
    let allowing: Vec<&TrustedIssuer> = named
        .into_iter()
        .filter(|i| i.algorithms.contains(&alg))
        .collect();
    if allowing.is_empty() {
        return Err(TokenError::AlgorithmNotAllowed {
            alg: shorten(&header.alg),
        });
    }
    let issuer = allowing
        .into_iter()
        .find(|issuer| {
            candidate_keys(issuer, alg, header.kid.as_deref()).any(|key| {
                jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &key.key, alg)
                    .unwrap_or(false)
            })
        })
        .ok_or(TokenError::BadSignature)?;

    let is_refresh = header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(REFRESH_TYP))
        || raw_claims.token_use.is_some();
    match expect {
        Expect::Access if is_refresh => return Err(TokenError::IsRefreshToken),
        Expect::Refresh
            if !(is_refresh && raw_claims.token_use.as_deref() == Some(REFRESH_CLAIM_VALUE)) =>
        {
            return Err(TokenError::NotRefreshToken);
        }
        _ => {}
    }

    let audience_ok = match &raw_claims.aud {
        Some(Audience::One(aud)) => *aud == issuer.audience,
        Some(Audience::Many(auds)) => auds.contains(&issuer.audience),
        None => false,
    };
    if !audience_ok {
        let got = match &raw_claims.aud {
            Some(Audience::One(aud)) => shorten(aud),
            Some(Audience::Many(auds)) => shorten(&auds.join(",")),
            None => String::new(),
        };
        return Err(TokenError::BadAudience { got });
    }

    let exp = raw_claims
        .exp
        .ok_or_else(|| TokenError::Malformed("no `exp` claim".into()))?;
    if now > exp.saturating_add(EXPIRY_LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    let nbf = raw_claims.nbf.unwrap_or(0);
    if nbf > now.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::NotYetValid);
    }

    Ok(Claims {
        iss: issuer.issuer.clone(),
        sub: raw_claims.sub.unwrap_or_default(),
        aud: issuer.audience.clone(),
        exp,
        nbf,
        iat: raw_claims.iat.unwrap_or(0),
        jti: raw_claims.jti.unwrap_or_default(),
        access: raw_claims.access,
    })
}

/// The token's `alg`, if it is an asymmetric algorithm at all.
fn token_algorithm(name: &str) -> Result<Algorithm, TokenError> {
    parse_asymmetric(name)
}

/// The issuer's keys able to check `alg`: those named by `kid` if any is, else all.
fn candidate_keys<'a>(
    issuer: &'a TrustedIssuer,
    alg: Algorithm,
    kid: Option<&'a str>,
) -> impl Iterator<Item = &'a TrustedKey> {
    let fits = move |k: &&TrustedKey| k.algorithms.contains(&alg);
    let by_kid = kid.is_some_and(|kid| {
        issuer
            .keys
            .iter()
            .filter(fits)
            .any(|k| k.kids.iter().any(|id| id == kid))
    });
    issuer
        .keys
        .iter()
        .filter(fits)
        .filter(move |k| !by_kid || kid.is_some_and(|kid| k.kids.iter().any(|id| id == kid)))
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        TokenError::Malformed(format!(
            "{what} is not a JSON object of the expected shape (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}
