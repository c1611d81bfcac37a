//! Access control at the HTTP edge: who the caller is (HTTP Basic against the
//! htpasswd file, bearer tokens from berth's token service or a trusted issuer, a
//! TLS client certificate), whether the policy lets them do what the endpoint
//! needs, rate limits, the token service itself (`GET`/`POST /token`, Docker
//! token auth and its OAuth2 variant), and the audit events of those decisions.
//!
//! The decisions are `berth-auth`'s; this module only maps them onto requests and
//! responses: 401 `UNAUTHORIZED` with a challenge when credentials are missing,
//! wrong, or a token lacks a scope the caller could get; 403 `DENIED` when the
//! caller is known and the policy says no; 429 `TOOMANYREQUESTS` with
//! `Retry-After` over a rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::htpasswd::Htpasswd;
use berth_auth::policy::{Action, Identity, Policy};
use berth_auth::ratelimit::{Rate, RateLimiter};
use berth_auth::token::{self, IssuerConfig, TokenIssuer, TokenVerifier, TrustedIssuer};
use berth_oci::ErrorCode;
use sha2::Digest as _;

use crate::audit::{Audit, Event};
use crate::config::{AuthMode, Config};
use crate::error::ApiError;

/// How long a successful Basic check is remembered (bcrypt costs ~50 ms a try).
const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// `/v2/`: any valid credentials (anonymous callers are challenged).
    Base,
    /// `/v2/_catalog`: authenticated; results are filtered.
    Catalog,
    /// An action on a repository.
    Repo(&'a str, Action),
}

/// The caller of one request.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The user; `None` for anonymous.
    pub user: Option<String>,
    /// Where the request came from.
    pub addr: Option<IpAddr>,
    /// The access a bearer token grants, when one was presented.
    pub token: Option<Vec<token::Access>>,
    /// Whether the caller presented valid credentials of any kind.
    pub authenticated: bool,
}

impl Caller {
    fn identity(&self) -> Identity {
        Identity {
            user: self.user.clone(),
        }
    }
}

/// The user a TLS client certificate maps to (inserted by the TLS listener).
#[derive(Debug, Clone)]
pub struct ClientCertUser(pub String);

/// Access control for one server.
pub struct Access {
    mode: AuthMode,
    htpasswd: Option<Htpasswd>,
    issuer: Option<TokenIssuer>,
    verifier: Option<TokenVerifier>,
    policy: Policy,
    realm: Option<String>,
    tls: bool,
    service: String,
    per_address: Option<RateLimiter>,
    per_user: Option<RateLimiter>,
    failed_logins: RateLimiter,
    /// Per-action limits: pull, push, delete.
    per_action: [Option<RateLimiter>; 3],
    basic_cache: Mutex<HashMap<[u8; 32], Instant>>,
    /// The audit log.
    pub audit: Audit,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").field("mode", &self.mode).finish()
    }
}

/// Why access control could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccessError(pub String);

fn rate(per_second: f64, burst: u64) -> Option<RateLimiter> {
    (per_second > 0.0).then(|| {
        RateLimiter::new(Rate {
            per_second,
            burst: u32::try_from(burst.max(1)).unwrap_or(u32::MAX),
        })
    })
}

impl Access {
    /// Build from the configuration: load the htpasswd file, the token key (made if
    /// missing), trusted issuers, the policy and the limiters.
    pub fn from_config(cfg: &Config) -> Result<Access, AccessError> {
        let a = &cfg.auth;
        let htpasswd = match (&a.htpasswd, a.mode) {
            (Some(p), AuthMode::Htpasswd | AuthMode::Token) => {
                Some(Htpasswd::load(p).map_err(|e| AccessError(e.to_string()))?)
            }
            _ => None,
        };
        let policy =
            Policy::new(&a.policy_config()).map_err(|e| AccessError(format!("auth: {e}")))?;
        let (issuer, verifier) = if a.mode == AuthMode::Token {
            let mut verifier = None;
            let mut issuer = None;
            if htpasswd.is_some() {
                let key = a
                    .token_key
                    .clone()
                    .unwrap_or_else(|| cfg.storage.data_dir.join("token-key.pem"));
                if let Some(dir) = key.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| AccessError(format!("{}: {e}", dir.display())))?;
                }
                let i = TokenIssuer::load_or_generate(
                    &key,
                    IssuerConfig {
                        issuer: a.issuer.clone(),
                        audience: a.service.clone(),
                        lifetime: Duration::from_secs(a.token_ttl_secs),
                        refresh_lifetime: Duration::from_secs(a.refresh_ttl_secs),
                    },
                )
                .map_err(|e| AccessError(format!("auth.token_key: {e}")))?;
                verifier = Some(i.verifier());
                issuer = Some(i);
            }
            let mut trusted = Vec::new();
            for (n, t) in a.trusted_issuers.iter().enumerate() {
                let ti = match (&t.jwks, t.public_keys.is_empty()) {
                    (Some(j), _) => {
                        TrustedIssuer::from_jwks_file(&t.issuer, &t.audience, j, &t.algorithms)
                    }
                    (None, false) => TrustedIssuer::from_pem_files(
                        &t.issuer,
                        &t.audience,
                        &t.public_keys,
                        &t.algorithms,
                    ),
                    (None, true) => {
                        return Err(AccessError(format!(
                            "auth.trusted_issuers[{n}]: give jwks or public_keys"
                        )));
                    }
                }
                .map_err(|e| AccessError(format!("auth.trusted_issuers[{n}]: {e}")))?;
                trusted.push(ti);
            }
            if !trusted.is_empty() {
                let t = TokenVerifier::new(trusted);
                verifier = Some(match verifier {
                    Some(v) => v.with(t),
                    None => t,
                });
            }
            (issuer, verifier)
        } else {
            (None, None)
        };
        let r = &cfg.rate_limit;
        let audit = Audit::open(cfg.audit.file.as_deref())
            .map_err(|e| AccessError(format!("audit.file: {e}")))?;
        Ok(Access {
            mode: a.mode,
            htpasswd,
            issuer,
            verifier,
            policy,
            realm: a.realm.clone(),
            tls: cfg.tls.enabled(),
            service: a.service.clone(),
            per_address: rate(r.per_address_per_second, r.per_address_burst),
            per_user: rate(r.per_user_per_second, r.per_user_burst),
            failed_logins: RateLimiter::new(Rate {
                per_second: r.failed_logins_per_minute.max(1) as f64 / 60.0,
                burst: u32::try_from(r.failed_logins_per_minute.max(1)).unwrap_or(u32::MAX),
            }),
            per_action: [
                rate(r.pull_per_second, r.per_action_burst),
                rate(r.push_per_second, r.per_action_burst),
                rate(r.delete_per_second, r.per_action_burst),
            ],
            basic_cache: Mutex::new(HashMap::new()),
            audit,
        })
    }

    /// Whether access control is off (`mode = "none"`).
    pub fn is_open(&self) -> bool {
        self.mode == AuthMode::None
    }

    /// The token service runs here.
    pub fn issues_tokens(&self) -> bool {
        self.issuer.is_some()
    }

    fn realm(&self, host: Option<&str>) -> String {
        match &self.realm {
            Some(r) => r.clone(),
            None => format!(
                "{}://{}/token",
                if self.tls { "https" } else { "http" },
                host.unwrap_or("localhost")
            ),
        }
    }

    /// The 401 answer, with the challenge for `need`.
    fn challenge(&self, need: Need<'_>, host: Option<&str>, error: Option<&str>) -> Response {
        let value = match self.mode {
            AuthMode::Token => {
                let mut v = format!(
                    "Bearer realm=\"{}\",service=\"{}\"",
                    self.realm(host),
                    self.service
                );
                match need {
                    Need::Base => {}
                    Need::Catalog => v.push_str(",scope=\"registry:catalog:*\""),
                    Need::Repo(repo, action) => {
                        let actions = match action {
                            Action::Pull => "pull",
                            Action::Push => "pull,push",
                            Action::Delete => "delete",
                        };
                        v.push_str(&format!(",scope=\"repository:{repo}:{actions}\""));
                    }
                }
                if let Some(e) = error {
                    v.push_str(&format!(",error=\"{e}\""));
                }
                v
            }
            _ => "Basic realm=\"berth\"".to_owned(),
        };
        ApiError::new(ErrorCode::Unauthorized, "authentication required")
            .with_header(header::WWW_AUTHENTICATE, &value)
            .into_response()
    }

    fn too_many(&self, retry_after: Duration) -> Response {
        ApiError::new(ErrorCode::TooManyRequests, "too many requests")
            .with_header(
                header::RETRY_AFTER,
                &retry_after.as_secs().max(1).to_string(),
            )
            .into_response()
    }

    /// Check a user's password (with a short cache of successes).
    fn check_password(&self, user: &str, password: &str) -> bool {
        let Some(h) = &self.htpasswd else {
            return false;
        };
        let key: [u8; 32] = sha2::Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let now = Instant::now();
        {
            let cache = self
                .basic_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.get(&key).is_some_and(|t| *t > now) {
                return true;
            }
        }
        let ok = h.verify(user, password);
        if ok {
            let mut cache = self
                .basic_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() > 10_000 {
                cache.retain(|_, t| *t > now);
            }
            cache.insert(key, now + BASIC_CACHE_TTL);
        }
        ok
    }

    /// A failed login: audit it and count it against the address.
    fn login_failed(
        &self,
        user: Option<&str>,
        addr: Option<IpAddr>,
        method: &str,
    ) -> Option<Response> {
        self.audit.record(Event {
            kind: "login_failed",
            user,
            addr,
            method,
            repository: None,
            reference: None,
            status: 401,
        });
        let key = format!("login:{}", addr.map(|a| a.to_string()).unwrap_or_default());
        self.failed_logins
            .check(&key)
            .err()
            .map(|d| self.too_many(d))
    }

    /// Whether `addr` is locked out after too many failed logins: the wait.
    fn locked_out(&self, addr: Option<IpAddr>) -> Option<Duration> {
        let key = format!("login:{}", addr.map(|a| a.to_string()).unwrap_or_default());
        self.failed_logins.exhausted(&key)
    }

    /// Apply the per-address limit (`rate_limit.per_address_per_second`).
    #[allow(clippy::result_large_err)]
    fn check_address_rate(&self, addr: Option<IpAddr>) -> Result<(), Response> {
        let Some(l) = &self.per_address else {
            return Ok(());
        };
        l.check(&format!(
            "addr:{}",
            addr.map(|a| a.to_string()).unwrap_or_default()
        ))
        .map_err(|d| self.too_many(d))
    }

    /// Identify the caller of a registry request.
    // The refusal *is* the response to send; boxing it would only add an
    // allocation to every refusal.
    #[allow(clippy::result_large_err)]
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        method: &str,
        addr: Option<IpAddr>,
        cert_user: Option<&str>,
        need: Need<'_>,
    ) -> Result<Caller, Response> {
        let mut caller = Caller {
            addr,
            ..Caller::default()
        };
        // The per-address limit holds whether or not auth is on.
        self.check_address_rate(addr)?;
        if self.is_open() {
            return Ok(caller);
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        match presented(headers) {
            Presented::Basic(creds) => {
                let (user, password) = creds.ok_or_else(|| self.challenge(need, host, None))?;
                if let Some(wait) = self.locked_out(addr) {
                    return Err(self.too_many(wait));
                }
                if !self.check_password(&user, &password) {
                    if let Some(r) = self.login_failed(Some(&user), addr, method) {
                        return Err(r);
                    }
                    return Err(self.challenge(need, host, None));
                }
                caller.user = Some(user);
                caller.authenticated = true;
            }
            Presented::Bearer(token) if self.mode == AuthMode::Token => {
                let Some(v) = &self.verifier else {
                    return Err(self.challenge(need, host, Some("invalid_token")));
                };
                match v.verify(token) {
                    Ok(claims) => {
                        caller.user = (!claims.sub.is_empty()).then_some(claims.sub);
                        caller.token = Some(claims.access);
                        caller.authenticated = true;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "bearer token refused");
                        self.audit.record(Event {
                            kind: "denied",
                            user: None,
                            addr,
                            method,
                            repository: None,
                            reference: None,
                            status: 401,
                        });
                        return Err(self.challenge(need, host, Some("invalid_token")));
                    }
                }
            }
            Presented::Bearer(_) | Presented::Other => {
                return Err(self.challenge(need, host, None));
            }
            Presented::Nothing => {
                if let Some(u) = cert_user {
                    caller.user = Some(u.to_owned());
                    caller.authenticated = true;
                }
            }
        }
        if let (Some(l), Some(u)) = (&self.per_user, &caller.user)
            && let Err(d) = l.check(&format!("user:{u}"))
        {
            return Err(self.too_many(d));
        }
        Ok(caller)
    }

    /// Whether the caller may do `action` on `repo`: the policy must allow it, and
    /// a bearer token must also grant it.
    pub fn permits(&self, caller: &Caller, repo: &str, action: Action) -> bool {
        if self.is_open() {
            return true;
        }
        self.policy
            .allowed(&caller.identity(), repo)
            .contains(action)
            && token_grants(caller, repo, action)
    }

    /// Apply the per-action rate limit (`rate_limit.pull_per_second`, …) for the
    /// caller: the user, or the address for anonymous callers.
    #[allow(clippy::result_large_err)]
    pub fn check_action_rate(&self, caller: &Caller, action: Action) -> Result<(), Response> {
        let i = match action {
            Action::Pull => 0,
            Action::Push => 1,
            Action::Delete => 2,
        };
        let Some(l) = &self.per_action[i] else {
            return Ok(());
        };
        let who = match &caller.user {
            Some(u) => format!("user:{u}"),
            None => format!(
                "addr:{}",
                caller.addr.map(|a| a.to_string()).unwrap_or_default()
            ),
        };
        l.check(&format!("{}:{who}", action.as_str()))
            .map_err(|d| self.too_many(d))
    }

    /// Whether the policy alone lets the caller do `action` on `repo` (catalog
    /// filtering: a catalog token carries no per-repository scopes).
    pub fn policy_permits(&self, caller: &Caller, repo: &str, action: Action) -> bool {
        self.is_open()
            || self
                .policy
                .allowed(&caller.identity(), repo)
                .contains(action)
    }

    /// Check that the caller may do what `need` says; the error is the response.
    #[allow(clippy::result_large_err)]
    pub fn authorize(
        &self,
        caller: &Caller,
        need: Need<'_>,
        headers: &HeaderMap,
        method: &str,
    ) -> Result<(), Response> {
        if self.is_open() {
            return Ok(());
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let (repo, ok, policy_ok) = match need {
            Need::Base => (None, caller.authenticated, caller.authenticated),
            Need::Catalog => (None, caller.authenticated, caller.authenticated),
            Need::Repo(repo, action) => {
                let p = self
                    .policy
                    .allowed(&caller.identity(), repo)
                    .contains(action);
                (Some(repo), p && token_grants(caller, repo, action), p)
            }
        };
        if ok {
            return Ok(());
        }
        // Anonymous, or a token that lacks a scope the user could get: challenge.
        let challenge =
            caller.user.is_none() || (policy_ok && caller.token.is_some()) || !caller.authenticated;
        let status = if challenge { 401 } else { 403 };
        // An anonymous first request answered with a challenge is the protocol,
        // not a denial worth auditing.
        if caller.authenticated {
            self.audit.record(Event {
                kind: "denied",
                user: caller.user.as_deref(),
                addr: caller.addr,
                method,
                repository: repo,
                reference: None,
                status,
            });
        }
        if challenge {
            let error = (caller.token.is_some() && policy_ok).then_some("insufficient_scope");
            Err(self.challenge(need, host, error))
        } else {
            Err(ApiError::new(
                ErrorCode::Denied,
                "requested access to the resource is denied",
            )
            .into_response())
        }
    }

    /// The token service: `GET /token` (Docker token auth) and `POST /token`
    /// (OAuth2 password and refresh-token grants).
    pub fn token_endpoint(
        &self,
        method: &str,
        headers: &HeaderMap,
        query: &[(String, String)],
        form: &[(String, String)],
        addr: Option<IpAddr>,
    ) -> Response {
        let Some(issuer) = &self.issuer else {
            return ApiError::new(
                ErrorCode::Unsupported,
                "this registry does not issue tokens",
            )
            .with_status(StatusCode::NOT_FOUND)
            .into_response();
        };
        if let Err(r) = self.check_address_rate(addr) {
            return r;
        }
        let get = |pairs: &[(String, String)], k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let params: Vec<(String, String)> = if method == "POST" {
            form.to_vec()
        } else {
            query.to_vec()
        };
        if let Some(s) = get(&params, "service")
            && s != self.service
        {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("unknown service {s:?}"),
            );
        }
        if let Some(wait) = self.locked_out(addr) {
            return self.too_many(wait);
        }
        // Who is asking.
        let mut offline = get(&params, "offline_token").as_deref() == Some("true")
            || get(&params, "access_type").as_deref() == Some("offline");
        let user: Option<String> = if method == "POST" {
            match get(&params, "grant_type").as_deref() {
                Some("password") => {
                    let (Some(u), Some(p)) = (get(&params, "username"), get(&params, "password"))
                    else {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            "username and password required",
                        );
                    };
                    if !self.check_password(&u, &p) {
                        return self
                            .login_failed(Some(&u), addr, method)
                            .unwrap_or_else(|| {
                                oauth_error(
                                    StatusCode::UNAUTHORIZED,
                                    "invalid_grant",
                                    "bad credentials",
                                )
                            });
                    }
                    Some(u)
                }
                Some("refresh_token") => {
                    let Some(t) = get(&params, "refresh_token") else {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            "refresh_token required",
                        );
                    };
                    match issuer.verify_refresh(&t) {
                        Ok(sub) => {
                            offline = false;
                            Some(sub)
                        }
                        Err(_) => {
                            return self.login_failed(None, addr, method).unwrap_or_else(|| {
                                oauth_error(
                                    StatusCode::UNAUTHORIZED,
                                    "invalid_grant",
                                    "refresh token refused",
                                )
                            });
                        }
                    }
                }
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "unsupported_grant_type",
                        "grant_type must be password or refresh_token",
                    );
                }
            }
        } else {
            match presented(headers) {
                Presented::Basic(creds) => {
                    let Some((u, p)) = creds else {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            "malformed Basic credentials",
                        );
                    };
                    if !self.check_password(&u, &p) {
                        return self
                            .login_failed(Some(&u), addr, method)
                            .unwrap_or_else(|| {
                                ApiError::new(ErrorCode::Unauthorized, "bad credentials")
                                    .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"berth\"")
                                    .into_response()
                            });
                    }
                    Some(u)
                }
                Presented::Bearer(_) | Presented::Other => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "only Basic credentials are accepted here",
                    );
                }
                Presented::Nothing => None,
            }
        };
        // What they get: each requested scope cut down to what the policy allows.
        let mut requested = Vec::new();
        for (k, v) in &params {
            if k == "scope" {
                match token::parse_scopes(v) {
                    Ok(mut s) => requested.append(&mut s),
                    Err(e) => {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_scope",
                            &e.to_string(),
                        );
                    }
                }
            }
        }
        let identity = Identity { user: user.clone() };
        let mut granted = Vec::new();
        for want in requested {
            let actions: Vec<String> = match want.kind.as_str() {
                "repository" => {
                    let allowed = self.policy.allowed(&identity, &want.name);
                    want.actions
                        .iter()
                        .filter(|a| match a.as_str() {
                            "pull" => allowed.contains(Action::Pull),
                            "push" => allowed.contains(Action::Push),
                            "delete" => allowed.contains(Action::Delete),
                            "*" => false,
                            _ => false,
                        })
                        .cloned()
                        .collect()
                }
                "registry" if want.name == "catalog" && user.is_some() => want.actions.clone(),
                _ => Vec::new(),
            };
            if !actions.is_empty() {
                granted.push(token::Access {
                    kind: want.kind,
                    name: want.name,
                    actions,
                });
            }
        }
        let subject = user.clone().unwrap_or_default();
        let (token, expires_in) = match issuer.issue(&subject, granted) {
            Ok(t) => t,
            Err(e) => return ApiError::internal(e).into_response(),
        };
        let mut body = serde_json::json!({
            "token": token, "access_token": token, "expires_in": expires_in,
        });
        if offline && let Some(u) = &user {
            match issuer.issue_refresh(u) {
                Ok(r) => body["refresh_token"] = serde_json::Value::String(r),
                Err(e) => return ApiError::internal(e).into_response(),
            }
        }
        self.audit.record(Event {
            kind: "token",
            user: user.as_deref(),
            addr,
            method,
            repository: None,
            reference: None,
            status: 200,
        });
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

/// Whether a bearer token (if the caller used one) grants `action` on `repo`.
fn token_grants(caller: &Caller, repo: &str, action: Action) -> bool {
    let Some(access) = &caller.token else {
        return true;
    };
    let want = match action {
        Action::Pull => "pull",
        Action::Push => "push",
        Action::Delete => "delete",
    };
    access.iter().any(|a| {
        a.kind == "repository" && a.name == repo && a.actions.iter().any(|x| x == want || x == "*")
    })
}

/// What the `Authorization` header of a request carries.
enum Presented<'a> {
    /// No header.
    Nothing,
    /// `Basic …` (RFC 7617): `user:password`, or `None` when malformed.
    Basic(Option<(String, String)>),
    /// `Bearer …` (RFC 6750): the token.
    Bearer(&'a str),
    /// Any other scheme.
    Other,
}

/// Read the `Authorization` header (schemes are case-insensitive, RFC 9110 §11.1).
fn presented(headers: &HeaderMap) -> Presented<'_> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return Presented::Nothing;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        Presented::Basic(decode_basic(rest))
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
        Presented::Bearer(rest.trim())
    } else {
        Presented::Other
    }
}

/// `user:password` from a Basic credential (RFC 7617).
fn decode_basic(b64: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// An OAuth2 error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}
