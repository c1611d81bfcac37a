//! berth's own token service: signs access tokens (`auth-jwt.md`) and refresh tokens
//! (`auth-oauth.md`) with the service's EC P-256 key.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use super::keys::{self, SigningKey, TrustedKey};
use super::verifier::{
    Expect, REFRESH_CLAIM_VALUE, REFRESH_TYP, TokenVerifier, TrustedIssuer, verify_with,
};
use super::{Access, Claims, TokenError, now_unix};

/// Settings of the token service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The `iss` claim: the token service's name.
    pub issuer: String,
    /// The `aud` claim: the registry's service name (the `service` parameter).
    pub audience: String,
    /// Lifetime of access tokens.
    pub lifetime: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_lifetime: Duration,
}

/// Signs access and refresh tokens with the service's key.
pub struct TokenIssuer {
    cfg: IssuerConfig,
    key: SigningKey,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("cfg", &self.cfg)
            .field("kid", &self.key.kid)
            .finish_non_exhaustive()
    }
}

/// The claims of a refresh token: no `access`, and the refresh marker.
#[derive(Serialize)]
struct RefreshClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    berth_use: &'static str,
}

/// A fresh random token id.
fn new_jti() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

impl TokenIssuer {
    /// Loads the EC P-256 private key (PKCS#8 or SEC1 PEM) at `key_path`, or
    /// generates one and writes it there (PKCS#8 PEM, mode 0600, atomically) if the
    /// file does not exist. A key file accessible by group or others is refused with
    /// [`TokenError::KeyPermissions`].
    pub fn load_or_generate(key_path: &Path, cfg: IssuerConfig) -> Result<TokenIssuer, TokenError> {
        let key = keys::load_or_generate_signing_key(key_path)?;
        Ok(TokenIssuer { cfg, key })
    }

    /// The settings.
    pub fn config(&self) -> &IssuerConfig {
        &self.cfg
    }

    /// The key id in the tokens' `kid` header: the libtrust key id of the public
    /// key, as Docker's token servers use.
    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// A signed ES256 access token for `subject` (empty for anonymous) granting
    /// `access`, and its lifetime in seconds (the `expires_in` of the response).
    pub fn issue(&self, subject: &str, access: Vec<Access>) -> Result<(String, u64), TokenError> {
        let now = now_unix();
        let lifetime = self.cfg.lifetime.as_secs();
        let claims = Claims {
            iss: self.cfg.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.cfg.audience.clone(),
            exp: now.saturating_add(lifetime),
            nbf: now,
            iat: now,
            jti: new_jti(),
            access,
        };
        Ok((self.sign_claims(&claims)?, lifetime))
    }

    /// Signs arbitrary access-token `claims` with the service key (`typ: JWT`,
    /// `alg: ES256`, `kid`). [`TokenIssuer::issue`] is the normal way; this exists
    /// for tests and tools that need, say, an expired or foreign-audience token.
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, TokenError> {
        self.sign(claims, "JWT")
    }

    /// A refresh token for `subject` (`auth-oauth.md`: handed out for
    /// `offline_token=true` / `access_type=offline` and exchanged at `POST /token`
    /// with `grant_type=refresh_token`). It is a JWT with its own `typ` and a
    /// `berth_use: refresh` claim and no `access`, valid for the configured refresh
    /// lifetime; [`TokenVerifier::verify`] refuses it.
    pub fn issue_refresh(&self, subject: &str) -> Result<String, TokenError> {
        let now = now_unix();
        let claims = RefreshClaims {
            iss: &self.cfg.issuer,
            sub: subject,
            aud: &self.cfg.audience,
            exp: now.saturating_add(self.cfg.refresh_lifetime.as_secs()),
            nbf: now,
            iat: now,
            jti: new_jti(),
            berth_use: REFRESH_CLAIM_VALUE,
        };
        self.sign(&claims, REFRESH_TYP)
    }

    /// Verifies a refresh token issued by this service (signature, issuer, audience,
    /// expiry, refresh marker) and returns its subject.
    pub fn verify_refresh(&self, token: &str) -> Result<String, TokenError> {
        self.verify_refresh_at(token, now_unix())
    }

    /// [`TokenIssuer::verify_refresh`] as of `now` (seconds since the Unix epoch).
    pub fn verify_refresh_at(&self, token: &str, now: u64) -> Result<String, TokenError> {
        let issuers = [self.trusted_issuer()];
        verify_with(&issuers, token, now, Expect::Refresh).map(|claims| claims.sub)
    }

    /// A verifier trusting exactly this service's key, issuer and audience.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(vec![self.trusted_issuer()])
    }

    /// The public key as a JWKS document (`{"keys": [{"kty": "EC", ...}]}`), for
    /// operators and external verifiers.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.key.public_jwk()] })
    }

    fn trusted_issuer(&self) -> TrustedIssuer {
        TrustedIssuer {
            issuer: self.cfg.issuer.clone(),
            audience: self.cfg.audience.clone(),
            keys: vec![TrustedKey::from_p256(
                &self.key.public,
                "the token service key".into(),
            )],
            algorithms: vec![Algorithm::ES256],
        }
    }

    fn sign<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, TokenError> {
        let header = Header {
            typ: Some(typ.to_owned()),
            alg: Algorithm::ES256,
            kid: Some(self.key.kid.clone()),
            ..Header::default()
        };
        jsonwebtoken::encode(&header, claims, &self.key.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))
    }
}
