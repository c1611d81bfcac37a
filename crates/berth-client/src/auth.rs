//! Authentication to one registry host: anonymous first, then whatever the
//! registry's `WWW-Authenticate` challenge asks for — HTTP Basic with stored
//! credentials, or the Docker bearer-token flow (`docker/auth-token.md`): request a
//! token for the scopes an operation needs (`docker/auth-scope.md`), cache it until
//! it expires, and fetch a new one when the registry answers 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::challenge::Challenge;
use crate::credentials::{Credential, CredentialError, CredentialStore};
use crate::error::{ClientError, Result};
use crate::retry::{RetryPolicy, is_retryable_error, is_retryable_status, retry_after};

/// Tokens are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// `expires_in` when the token server gives none (auth-token.md: "defaults to 60").
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

/// The token server's answer (auth-token.md "Token Response Fields").
#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

struct Token {
    value: String,
    expires: Instant,
}

/// Scopes an operation needs, as `repository:NAME:ACTIONS` strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope(Vec<String>);

impl Scope {
    /// No scope (`/v2/` itself).
    pub fn none() -> Scope {
        Scope(Vec::new())
    }
    /// `repository:REPO:pull`.
    pub fn pull(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:pull")])
    }
    /// `repository:REPO:pull,push`.
    pub fn push(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:pull,push")])
    }
    /// `repository:REPO:delete` (with pull, as registries require).
    pub fn delete(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:pull,delete")])
    }
    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope(vec!["registry:catalog:*".to_owned()])
    }
    /// This scope plus `other`'s.
    pub fn and(mut self, other: Scope) -> Scope {
        for s in other.0 {
            if !self.0.contains(&s) {
                self.0.push(s);
            }
        }
        self
    }
    fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// Authentication state for one registry host.
pub(crate) struct HostAuth {
    host: String,
    store: Arc<CredentialStore>,
    credential: tokio::sync::OnceCell<Option<Credential>>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
    retry: RetryPolicy,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HostAuth {
    pub(crate) fn new(host: &str, store: Arc<CredentialStore>, retry: RetryPolicy) -> HostAuth {
        HostAuth {
            host: host.to_owned(),
            store,
            credential: tokio::sync::OnceCell::new(),
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            retry,
        }
    }

    /// Use these credentials instead of stored ones (`berth login` checking new ones).
    pub(crate) fn set_credential(&self, cred: Credential) {
        let _ = self.credential.set(Some(cred));
    }

    async fn credential(&self) -> Result<Option<Credential>> {
        let c = self
            .credential
            .get_or_try_init(|| async {
                let store = self.store.clone();
                let host = self.host.clone();
                let found = tokio::task::spawn_blocking(move || store.get(&host))
                    .await
                    .map_err(|e| ClientError::Protocol(format!("credential lookup failed: {e}")))?;
                match found {
                    // A config naming a helper that is not installed (a copied Docker
                    // Desktop config) must not stop anonymous access.
                    Err(CredentialError::HelperNotFound { helper }) => {
                        tracing::warn!(%helper, host = %self.host, "credential helper not installed; going on without credentials");
                        Ok(None)
                    }
                    other => other.map_err(ClientError::from),
                }
            })
            .await?;
        Ok(c.clone())
    }

    /// Record the challenge of a 401 and forget the token that was refused.
    pub(crate) fn learn(&self, challenges: Vec<Challenge>, scope: &Scope) {
        let pick = challenges
            .iter()
            .find(|c| c.is_bearer())
            .or_else(|| challenges.iter().find(|c| c.is_basic()))
            .cloned();
        if let Some(c) = pick {
            *lock(&self.challenge) = Some(c);
        }
        lock(&self.tokens).remove(&scope.key());
    }

    /// Whether a 401 can be answered: a challenge we understand (and, for Basic,
    /// credentials to answer it with).
    pub(crate) async fn can_answer(&self) -> Result<bool> {
        let c = lock(&self.challenge).clone();
        Ok(match c {
            Some(c) if c.is_bearer() => true,
            Some(c) if c.is_basic() => self.credential().await?.is_some(),
            _ => false,
        })
    }

    /// The `Authorization` header for a request needing `scope`, if any.
    pub(crate) async fn header(
        &self,
        http: &reqwest::Client,
        scope: &Scope,
    ) -> Result<Option<HeaderValue>> {
        let challenge = lock(&self.challenge).clone();
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        if challenge.is_basic() {
            return Ok(self.credential().await?.map(|c| basic(&c)));
        }
        if !challenge.is_bearer() {
            return Ok(None);
        }
        let key = scope.key();
        if let Some(t) = lock(&self.tokens).get(&key)
            && t.expires > Instant::now() + EXPIRY_MARGIN
        {
            return Ok(Some(bearer(&t.value)));
        }
        let token = self.fetch_token(http, &challenge, scope).await?;
        let value = bearer(&token.value);
        lock(&self.tokens).insert(key, token);
        Ok(Some(value))
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        challenge: &Challenge,
        scope: &Scope,
    ) -> Result<Token> {
        let op = format!(
            "token for {} from {}",
            self.host,
            challenge.param("realm").unwrap_or("?")
        );
        let realm = challenge.param("realm").ok_or_else(|| {
            ClientError::Protocol(format!("{}: bearer challenge without realm", self.host))
        })?;
        let realm = url::Url::parse(realm).map_err(|e| {
            ClientError::Protocol(format!("{}: bad token realm {realm:?}: {e}", self.host))
        })?;
        let mut scopes = scope.0.clone();
        if let Some(s) = challenge.param("scope") {
            for one in s.split(' ').filter(|s| !s.is_empty()) {
                if !scopes.iter().any(|x| x == one) {
                    scopes.push(one.to_owned());
                }
            }
        }
        let cred = self.credential().await?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = challenge.param("service") {
            query.push(("service", s));
        }
        for s in &scopes {
            query.push(("scope", s));
        }
        let req = match &cred {
            // An identity token (docker's `identitytoken`) is an OAuth2 refresh token
            // (docker/auth-oauth.md).
            Some(c) if c.username == "<token>" => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.secret.as_str()),
                    ("client_id", "berth"),
                ];
                form.extend(query.iter().copied());
                http.post(realm).form(&form)
            }
            Some(c) => http
                .get(realm)
                .query(&query)
                .basic_auth(&c.username, Some(&c.secret)),
            None => http.get(realm).query(&query),
        };
        // Token servers rate-limit and fail like registries: same retry policy.
        let mut attempt = 0;
        let resp = loop {
            let outcome = match req.try_clone() {
                Some(r) => r.send().await,
                None => break req.send().await,
            };
            let wait = match &outcome {
                Ok(r) if is_retryable_status(r.status()) => {
                    self.retry.delay(attempt, retry_after(r.headers()))
                }
                Err(e) if is_retryable_error(e) => self.retry.delay(attempt, None),
                _ => break outcome,
            };
            if attempt >= self.retry.retries {
                break outcome;
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
        .map_err(|e| ClientError::Http {
            op: op.clone(),
            source: e,
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ClientError::Unauthorized {
                op,
                detail: if cred.is_some() {
                    format!(": the token server refused the credentials ({status})")
                } else {
                    format!(
                        ": no credentials for {} (berth login {})",
                        self.host, self.host
                    )
                },
            });
        }
        if !status.is_success() {
            return Err(ClientError::Protocol(format!(
                "{op}: token server answered {status}"
            )));
        }
        let body = resp.bytes().await.map_err(|e| ClientError::Http {
            op: op.clone(),
            source: e,
        })?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Protocol(format!("{op}: token response is not JSON: {e}")))?;
        let value = t
            .token
            .filter(|t| !t.is_empty())
            .or(t.access_token)
            .ok_or_else(|| ClientError::Protocol(format!("{op}: token response has no token")))?;
        let lifetime = t.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok(Token {
            value,
            expires: Instant::now() + Duration::from_secs(lifetime),
        })
    }
}

fn basic(c: &Credential) -> HeaderValue {
    let raw =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.secret));
    let mut v =
        HeaderValue::from_str(&format!("Basic {raw}")).unwrap_or(HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

fn bearer(token: &str) -> HeaderValue {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or(HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}
