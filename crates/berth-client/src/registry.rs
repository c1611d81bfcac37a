//! One registry host, spoken to over the distribution-spec HTTP API: requests with
//! authentication and retries, and each API operation (manifests, blobs, uploads,
//! tags, catalog, referrers) as a method returning typed results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::digest::Digest;
use berth_oci::media_type;
use berth_oci::name::Reference;
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LINK, LOCATION, RANGE,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

use crate::auth::{HostAuth, Scope};
use crate::challenge::parse_challenges;
use crate::credentials::{Credential, CredentialStore};
use crate::error::{ClientError, Result};
use crate::retry::{RetryPolicy, is_retryable_error, is_retryable_status, retry_after};

/// Largest manifest accepted (matches the layout reader's limit).
pub const MAX_MANIFEST_BYTES: usize = berth_oci::layout::MAX_MANIFEST_BYTES as usize;

/// Every manifest media type berth understands, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Settings shared by every registry a [`Client`] talks to.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP to registries that are not loopback.
    pub insecure: bool,
    /// Retry policy for idempotent requests.
    pub retry: RetryPolicy,
    /// Extra CA certificates (PEM files) trusted for HTTPS, beside the built-in roots.
    pub ca_certs: Vec<std::path::PathBuf>,
}

/// The entry point: an HTTP connection pool, credentials and per-host state.
pub struct Client {
    http: reqwest::Client,
    opts: ClientOptions,
    store: Arc<CredentialStore>,
    hosts: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Client {
    /// A client reading credentials from `store`.
    pub fn new(opts: ClientOptions, store: CredentialStore) -> Result<Client> {
        let mut builder = reqwest::Client::builder();
        for path in &opts.ca_certs {
            let pem = std::fs::read(path).map_err(|e| ClientError::Io {
                op: format!("reading CA certificate {}", path.display()),
                source: e,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::Http {
                    op: format!("CA certificate {}", path.display()),
                    source: e,
                })?;
            if certs.is_empty() {
                return Err(ClientError::Protocol(format!(
                    "{}: no PEM certificate in the file",
                    path.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| ClientError::Http {
                op: "starting the HTTP client".into(),
                source: e,
            })?;
        Ok(Client {
            http,
            opts,
            store: Arc::new(store),
            hosts: Mutex::new(HashMap::new()),
        })
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.opts.retry
    }

    /// The registry at `host` (`host[:port]` as in a reference; Docker Hub's API
    /// host for `docker.io`).
    pub fn registry(&self, host: &str) -> Arc<Registry> {
        let api_host = if host == berth_oci::reference::DOCKER_HUB {
            berth_oci::reference::DOCKER_HUB_API_HOST
        } else {
            host
        };
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hosts
            .entry(api_host.to_owned())
            .or_insert_with(|| {
                let plain = self.opts.insecure || berth_oci::reference::is_loopback_registry(host);
                let scheme = if plain { "http" } else { "https" };
                // Host strings come from a parsed reference, so this parses; fall back
                // to an unroutable URL that fails on first use rather than panic.
                let base = Url::parse(&format!("{scheme}://{api_host}/")).unwrap_or_else(|_| {
                    Url::parse("http://invalid.invalid/").unwrap_or_else(|_| unreachable_url())
                });
                Arc::new(Registry {
                    http: self.http.clone(),
                    host: host.to_owned(),
                    base: std::sync::RwLock::new(base),
                    // Loopback registries may speak HTTPS (a local registry with a
                    // test CA): try it when plain HTTP fails at the transport level.
                    may_upgrade: plain,
                    auth: HostAuth::new(host, self.store.clone(), self.opts.retry),
                    retry: self.opts.retry,
                })
            })
            .clone()
    }

    /// Credentials store in use.
    pub fn credentials(&self) -> &CredentialStore {
        &self.store
    }
}

fn unreachable_url() -> Url {
    // `Url::parse` of a constant well-formed URL cannot fail; this is only reached if
    // it somehow does, and then the request fails cleanly.
    #[allow(clippy::expect_used)]
    Url::parse("http://127.0.0.1:9/").expect("constant URL")
}

/// A manifest as fetched: exact bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes.
    pub bytes: Bytes,
    /// Media type (from the body's `mediaType`, else `Content-Type`).
    pub media_type: String,
    /// Digest of `bytes` (verified against what was asked for).
    pub digest: Digest,
}

/// What starting an upload gave.
#[derive(Debug)]
pub enum UploadStart {
    /// The blob was mounted from another repository; nothing to upload.
    Mounted,
    /// An upload session at this URL.
    Session(Url),
}

/// One registry host.
pub struct Registry {
    http: reqwest::Client,
    host: String,
    base: std::sync::RwLock<Url>,
    may_upgrade: bool,
    auth: HostAuth,
    retry: RetryPolicy,
}

/// What a request body is: cheap to clone, so a retried request resends it.
type Body = Option<Bytes>;

impl Registry {
    /// The registry's host as written in references.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Use `cred` for this host instead of stored credentials.
    pub fn use_credential(&self, cred: Credential) {
        self.auth.set_credential(cred);
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join(path)
            .map_err(|e| ClientError::Protocol(format!("bad URL path {path:?}: {e}")))
    }

    /// Resolve a `Location` header against the registry's base URL.
    fn location(&self, resp: &Response, op: &str) -> Result<Url> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ClientError::Protocol(format!("{op}: {} without Location", resp.status()))
            })?;
        resp.url()
            .join(loc)
            .map_err(|e| ClientError::Protocol(format!("{op}: bad Location {loc:?}: {e}")))
    }

    /// Send one request, authenticating as needed: on 401, learn the challenge and
    /// try once more with fresh credentials. No retries on failure.
    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        scope: &Scope,
        headers: &HeaderMap,
        body: &Body,
    ) -> std::result::Result<Response, SendError> {
        let mut reauthed = false;
        loop {
            let mut rb: RequestBuilder = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(h) = self
                .auth
                .header(&self.http, scope)
                .await
                .map_err(SendError::Client)?
            {
                rb = rb.header(reqwest::header::AUTHORIZATION, h);
            }
            if let Some(b) = body {
                rb = rb.body(b.clone());
            } else if *method == Method::PUT || *method == Method::POST || *method == Method::PATCH
            {
                rb = rb.header(CONTENT_LENGTH, 0);
            }
            let resp = rb.send().await.map_err(SendError::Transport)?;
            if resp.status() == StatusCode::UNAUTHORIZED && !reauthed {
                let challenges: Vec<_> = resp
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(parse_challenges)
                    .collect();
                self.auth.learn(challenges, scope);
                if self.auth.can_answer().await.map_err(SendError::Client)? {
                    reauthed = true;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// Send a request, retrying connection errors, 5xx and 429 per the policy
    /// (waiting `Retry-After` when given). For idempotent requests only.
    async fn send(
        &self,
        op: &str,
        method: Method,
        url: Url,
        scope: &Scope,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response> {
        let mut attempt = 0;
        let mut url = url;
        loop {
            let mut outcome = self.send_once(&method, &url, scope, &headers, &body).await;
            if let Err(SendError::Transport(e)) = &outcome
                && attempt == 0
                && self.may_upgrade
                && url.scheme() == "http"
                && !e.is_timeout()
            {
                // A plain-HTTP request to a TLS listener fails at once; if HTTPS
                // answers, use it for this host from now on.
                let plain_error = error_chain(e);
                let mut tls_url = url.clone();
                if tls_url.set_scheme("https").is_ok() {
                    match self
                        .send_once(&method, &tls_url, scope, &headers, &body)
                        .await
                    {
                        Ok(resp) => {
                            tracing::debug!(host = %self.host, "plain HTTP failed, HTTPS answered; using HTTPS");
                            let mut base = self
                                .base
                                .write()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            let _ = base.set_scheme("https");
                            drop(base);
                            url = tls_url;
                            outcome = Ok(resp);
                        }
                        // The listener speaks TLS but the handshake failed (say, an
                        // untrusted certificate): that is the error to report.
                        Err(tls_err) if plain_error.contains("invalid HTTP version") => {
                            url = tls_url;
                            outcome = Err(tls_err);
                        }
                        Err(_) => {}
                    }
                }
            }
            let wait = match &outcome {
                Err(SendError::Transport(e)) if is_retryable_error(e) => {
                    self.retry.delay(attempt, None)
                }
                Ok(resp) if is_retryable_status(resp.status()) => {
                    self.retry.delay(attempt, retry_after(resp.headers()))
                }
                _ => return outcome.map_err(|e| e.into_client(op)),
            };
            if attempt >= self.retry.retries {
                return outcome.map_err(|e| e.into_client(op));
            }
            tracing::debug!(op, attempt, ?wait, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// [`send`](Self::send) without extra headers or a body.
    async fn call(&self, op: &str, method: Method, url: Url, scope: &Scope) -> Result<Response> {
        self.send(op, method, url, scope, HeaderMap::new(), None)
            .await
    }

    /// `GET /v2/`: is the registry there and do our credentials work?
    pub async fn ping(&self) -> Result<()> {
        let op = format!("checking {}", self.host);
        let resp = self
            .call(&op, Method::GET, self.url("/v2/")?, &Scope::none())
            .await?;
        expect_ok(resp, &op, &[StatusCode::OK]).await.map(drop)
    }

    /// Fetch a manifest, verified: by digest, its bytes must hash to it; by tag, to
    /// `Docker-Content-Digest` when the registry sends one.
    pub async fn get_manifest(&self, repo: &str, reference: &Reference) -> Result<FetchedManifest> {
        let what = at(&self.host, repo, reference);
        let op = format!("fetching manifest {what}");
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            reqwest::header::HeaderValue::from_static(MANIFEST_ACCEPT),
        );
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .send(&op, Method::GET, url, &Scope::pull(repo), h, None)
            .await?;
        let resp = expect_ok(resp, &op, &[StatusCode::OK]).await?;
        let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str()).map(str::to_owned);
        let header_digest = header_str(resp.headers(), "docker-content-digest").map(str::to_owned);
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &op).await?;
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => header_digest.and_then(|d| d.parse::<Digest>().ok()),
        };
        let algorithm = expected
            .as_ref()
            .map_or(berth_oci::digest::Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(ClientError::DigestMismatch {
                what: format!("manifest {what}"),
                expected,
                actual: digest,
            });
        }
        let media_type = manifest_media_type(&bytes, content_type.as_deref(), &what)?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `HEAD` a manifest: its digest, media type and size, or `None` if unknown.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<(Digest, String, u64)>> {
        let op = format!("checking manifest {}", at(&self.host, repo, reference));
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            reqwest::header::HeaderValue::from_static(MANIFEST_ACCEPT),
        );
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .send(&op, Method::HEAD, url, &Scope::pull(repo), h, None)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = expect_ok(resp, &op, &[StatusCode::OK]).await?;
        let digest =
            match header_str(resp.headers(), "docker-content-digest").map(str::parse::<Digest>) {
                Some(Ok(d)) => d,
                _ => return Ok(None),
            };
        let mt = header_str(resp.headers(), CONTENT_TYPE.as_str())
            .unwrap_or_default()
            .to_owned();
        let size = header_str(resp.headers(), CONTENT_LENGTH.as_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Some((digest, mt, size)))
    }

    /// `PUT` a manifest under a tag or its digest; returns the digest the registry
    /// reports (checked against ours).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<()> {
        let op = format!("pushing manifest {}", at(&self.host, repo, reference));
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            media_type.parse().map_err(|_| {
                ClientError::Protocol(format!("{op}: bad media type {media_type:?}"))
            })?,
        );
        let ours = Digest::sha256_of(&bytes);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .send(&op, Method::PUT, url, &Scope::push(repo), h, Some(bytes))
            .await?;
        let resp = expect_ok(
            resp,
            &op,
            &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
        )
        .await?;
        if let Some(Ok(theirs)) =
            header_str(resp.headers(), "docker-content-digest").map(str::parse::<Digest>)
            && theirs.algorithm() == ours.algorithm()
            && theirs != ours
        {
            return Err(ClientError::DigestMismatch {
                what: format!("manifest stored by {}/{repo}", self.host),
                expected: ours,
                actual: theirs,
            });
        }
        Ok(())
    }

    /// `DELETE` a manifest (by digest, or a tag where the registry allows it).
    pub async fn delete_manifest(&self, repo: &str, reference: &Reference) -> Result<()> {
        let op = format!("deleting {}", at(&self.host, repo, reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .call(&op, Method::DELETE, url, &Scope::delete(repo))
            .await?;
        expect_ok(
            resp,
            &op,
            &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT],
        )
        .await
        .map(drop)
    }

    /// Size of blob `digest` in `repo`, or `None` if the registry does not have it.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let op = format!("checking blob {digest} in {}/{repo}", self.host);
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .call(&op, Method::HEAD, url, &Scope::pull(repo))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = expect_ok(resp, &op, &[StatusCode::OK]).await?;
        Ok(header_str(resp.headers(), CONTENT_LENGTH.as_str()).and_then(|s| s.parse().ok()))
    }

    /// Upload a small blob held in memory (a signature, an SBOM, a config) in one
    /// request, unless the repository already has it. Returns its digest.
    pub async fn put_small_blob(&self, repo: &str, bytes: Bytes) -> Result<Digest> {
        let digest = Digest::sha256_of(&bytes);
        if self.blob_size(repo, &digest).await?.is_some() {
            return Ok(digest);
        }
        match self.start_upload(repo, None).await? {
            UploadStart::Mounted => {}
            UploadStart::Session(session) => {
                self.finish_upload(repo, &session, &digest, Some(bytes))
                    .await?;
            }
        }
        Ok(digest)
    }

    /// Whether the registry answers the referrers API (distribution-spec "Listing
    /// Referrers") for `repo`; `false` when it answers 404, as registries without
    /// it (CNCF Distribution 2.x) do. Clients then maintain the referrers tag
    /// schema themselves.
    pub async fn supports_referrers(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let op = format!("listing referrers of {digest} in {}/{repo}", self.host);
        let url = self.url(&format!("/v2/{repo}/referrers/{digest}"))?;
        let resp = self.call(&op, Method::GET, url, &Scope::pull(repo)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        expect_ok(resp, &op, &[StatusCode::OK]).await.map(|_| true)
    }

    /// Start fetching blob `digest` from byte `offset`. Returns the response and
    /// whether it starts at `offset` (206) or at 0 (200: the registry ignored the
    /// range).
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<(Response, bool)> {
        let op = format!("fetching blob {digest} from {}/{repo}", self.host);
        let mut h = HeaderMap::new();
        if offset > 0 {
            h.insert(RANGE, header_value(&format!("bytes={offset}-"))?);
        }
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(&op, Method::GET, url, &Scope::pull(repo), h, None)
            .await?;
        let resp = expect_ok(resp, &op, &[StatusCode::OK, StatusCode::PARTIAL_CONTENT]).await?;
        let ranged = resp.status() == StatusCode::PARTIAL_CONTENT;
        Ok((resp, ranged))
    }

    /// `POST` an upload, asking to mount `digest` from `from` when given.
    pub async fn start_upload(
        &self,
        repo: &str,
        mount: Option<(&Digest, &str)>,
    ) -> Result<UploadStart> {
        let op = format!("starting upload to {}/{repo}", self.host);
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let mut scope = Scope::push(repo);
        if let Some((d, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", &d.to_string())
                .append_pair("from", from);
            scope = scope.and(Scope::pull(from));
        }
        let resp = self.call(&op, Method::POST, url, &scope).await?;
        let resp = expect_ok(resp, &op, &[StatusCode::CREATED, StatusCode::ACCEPTED]).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(UploadStart::Mounted);
        }
        Ok(UploadStart::Session(self.location(&resp, &op)?))
    }

    /// Send one chunk (`PATCH` with `Content-Range`), once, without retrying: the
    /// caller asks [`upload_status`](Self::upload_status) where to resume. Returns
    /// the session's next URL.
    pub async fn patch_chunk(
        &self,
        repo: &str,
        session: &Url,
        offset: u64,
        chunk: Bytes,
    ) -> Result<Url> {
        let op = format!("uploading to {}/{repo}", self.host);
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/octet-stream"),
        );
        if !chunk.is_empty() {
            let end = offset + chunk.len() as u64 - 1;
            h.insert(CONTENT_RANGE, header_value(&format!("{offset}-{end}"))?);
        }
        let resp = self
            .send_once(
                &Method::PATCH,
                session,
                &Scope::push(repo),
                &h,
                &Some(chunk),
            )
            .await
            .map_err(|e| e.into_client(&op))?;
        let resp = expect_ok(resp, &op, &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT]).await?;
        self.location(&resp, &op)
    }

    /// Where an upload session stands: its URL and the `<end-of-range>` of its
    /// `Range: 0-<end-of-range>` header (the last byte held), `None` without one.
    ///
    /// `0-0` is ambiguous: the spec writes the position of the last byte, so it
    /// means one byte held, but registries (Distribution, berth) also send it for an
    /// empty session; the caller decides.
    pub async fn upload_status(&self, repo: &str, session: &Url) -> Result<(Url, Option<u64>)> {
        let op = format!("checking upload to {}/{repo}", self.host);
        let resp = self
            .call(&op, Method::GET, session.clone(), &Scope::push(repo))
            .await?;
        let resp = expect_ok(
            resp,
            &op,
            &[StatusCode::NO_CONTENT, StatusCode::OK, StatusCode::ACCEPTED],
        )
        .await?;
        let next = self
            .location(&resp, &op)
            .unwrap_or_else(|_| session.clone());
        let last = header_str(resp.headers(), RANGE.as_str()).and_then(|r| {
            let r = r.trim().trim_start_matches("bytes=");
            r.split_once('-')
                .and_then(|(_, e)| e.trim().parse::<u64>().ok())
        });
        Ok((next, last))
    }

    /// Close an upload: `PUT ?digest=` with the last bytes (possibly none).
    pub async fn finish_upload(
        &self,
        repo: &str,
        session: &Url,
        digest: &Digest,
        last: Option<Bytes>,
    ) -> Result<()> {
        let op = format!("finishing upload of {digest} to {}/{repo}", self.host);
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/octet-stream"),
        );
        let resp = self
            .send(&op, Method::PUT, url, &Scope::push(repo), h, last)
            .await?;
        let resp = expect_ok(
            resp,
            &op,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await?;
        if let Some(Ok(theirs)) =
            header_str(resp.headers(), "docker-content-digest").map(str::parse::<Digest>)
            && theirs != *digest
        {
            return Err(ClientError::DigestMismatch {
                what: format!("blob stored by {}/{repo}", self.host),
                expected: digest.clone(),
                actual: theirs,
            });
        }
        Ok(())
    }

    /// Abandon an upload session (best effort).
    pub async fn cancel_upload(&self, repo: &str, session: &Url) {
        let _ = self
            .send_once(
                &Method::DELETE,
                session,
                &Scope::push(repo),
                &HeaderMap::new(),
                &None,
            )
            .await;
    }

    /// Every tag of `repo`, following `Link` pagination.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let url = self.url(&format!("/v2/{repo}/tags/list"))?;
        self.paged(
            url,
            &Scope::pull(repo),
            "tags",
            &format!("listing tags of {}/{repo}", self.host),
        )
        .await
    }

    /// Every repository, following `Link` pagination.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let url = self.url("/v2/_catalog")?;
        self.paged(
            url,
            &Scope::catalog(),
            "repositories",
            &format!("listing repositories of {}", self.host),
        )
        .await
    }

    async fn paged(
        &self,
        mut url: Url,
        scope: &Scope,
        field: &str,
        op: &str,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let resp = self.call(op, Method::GET, url.clone(), scope).await?;
            let resp = expect_ok(resp, op, &[StatusCode::OK]).await?;
            let next = header_str(resp.headers(), LINK.as_str())
                .and_then(next_link)
                .map(str::to_owned);
            let base = resp.url().clone();
            let body = read_limited(resp, 64 << 20, op).await?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ClientError::Protocol(format!("{op}: response is not JSON: {e}")))?;
            if let Some(list) = v.get(field).and_then(serde_json::Value::as_array) {
                out.extend(list.iter().filter_map(|t| t.as_str().map(str::to_owned)));
            }
            match next {
                Some(n) => {
                    url = base
                        .join(&n)
                        .map_err(|e| ClientError::Protocol(format!("{op}: bad Link {n:?}: {e}")))?;
                }
                None => return Ok(out),
            }
        }
        Err(ClientError::Protocol(format!(
            "{op}: more than 10000 pages"
        )))
    }

    /// The referrers of `digest` (distribution-spec "Listing Referrers"), as the
    /// index's `manifests` array; falls back to the referrers tag schema
    /// (`sha256-<hex>`) when the API is not supported.
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<serde_json::Value>> {
        let op = format!("listing referrers of {digest} in {}/{repo}", self.host);
        let mut url = self.url(&format!("/v2/{repo}/referrers/{digest}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let resp = self.call(&op, Method::GET, url, &Scope::pull(repo)).await?;
        let (body, filtered) = if resp.status() == StatusCode::NOT_FOUND {
            // The tag schema fallback.
            let tag = format!("{}-{}", digest.algorithm().as_str(), digest.hex());
            match tag.parse() {
                Ok(t) => match self.get_manifest(repo, &Reference::Tag(t)).await {
                    Ok(m) => (m.bytes, false),
                    Err(ClientError::NotFound(_)) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                },
                Err(_) => return Ok(Vec::new()),
            }
        } else {
            let resp = expect_ok(resp, &op, &[StatusCode::OK]).await?;
            let filtered = header_str(resp.headers(), "oci-filters-applied").is_some();
            (read_limited(resp, MAX_MANIFEST_BYTES, &op).await?, filtered)
        };
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Protocol(format!("{op}: response is not JSON: {e}")))?;
        let mut list = v
            .get("manifests")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let (Some(t), false) = (artifact_type, filtered) {
            list.retain(|m| m.get("artifactType").and_then(serde_json::Value::as_str) == Some(t));
        }
        Ok(list)
    }
}

/// Why a single send failed: the transport, or something of ours (auth lookup).
enum SendError {
    Transport(reqwest::Error),
    Client(ClientError),
}

impl SendError {
    fn into_client(self, op: &str) -> ClientError {
        match self {
            SendError::Transport(e) => ClientError::Http {
                op: op.to_owned(),
                source: e,
            },
            SendError::Client(e) => e,
        }
    }
}

/// `host/repo:tag` or `host/repo@digest`, for messages.
fn at(host: &str, repo: &str, reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => format!("{host}/{repo}:{t}"),
        Reference::Digest(d) => format!("{host}/{repo}@{d}"),
    }
}

/// An error and its sources as one string.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn header_value(s: &str) -> Result<reqwest::header::HeaderValue> {
    s.parse()
        .map_err(|_| ClientError::Protocol(format!("bad header value {s:?}")))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

/// Read at most `limit` bytes of a body; more is an error.
async fn read_limited(mut resp: Response, limit: usize, op: &str) -> Result<Bytes> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ClientError::Http {
        op: op.to_owned(),
        source: e,
    })? {
        if buf.len() + chunk.len() > limit {
            return Err(ClientError::Protocol(format!(
                "{op}: response larger than {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Turn a non-success answer into an error in the registry's own terms.
pub(crate) async fn expect_ok(resp: Response, op: &str, ok: &[StatusCode]) -> Result<Response> {
    let status = resp.status();
    if ok.contains(&status) {
        return Ok(resp);
    }
    let body = read_limited(resp, 64 * 1024, op).await.unwrap_or_default();
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let first = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(|e| e.get(0));
    let code = first
        .and_then(|e| e.get("code"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let message = first
        .and_then(|e| e.get("message"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned()
        });
    Err(match status {
        StatusCode::NOT_FOUND => ClientError::NotFound(format!(
            "{op}{}",
            code.as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        )),
        StatusCode::UNAUTHORIZED => ClientError::Unauthorized {
            op: op.to_owned(),
            detail: if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            },
        },
        StatusCode::FORBIDDEN => ClientError::Denied {
            op: op.to_owned(),
            detail: if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            },
        },
        _ => ClientError::Registry {
            op: op.to_owned(),
            status: status.as_u16(),
            code,
            message,
        },
    })
}

/// A manifest's media type: `mediaType` in the body, else the `Content-Type`;
/// the bytes must be a JSON object.
pub(crate) fn manifest_media_type(
    bytes: &[u8],
    content_type: Option<&str>,
    what: &str,
) -> Result<String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ClientError::InvalidManifest {
            what: what.to_owned(),
            reason: format!("not JSON: {e}"),
        })?;
    if !v.is_object() {
        return Err(ClientError::InvalidManifest {
            what: what.to_owned(),
            reason: "not a JSON object".into(),
        });
    }
    let mt = v
        .get("mediaType")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .or_else(|| content_type.map(|c| media_type::essence(c).to_owned()))
        .filter(|m| media_type::is_manifest(m) || media_type::is_index(m));
    match mt {
        Some(m) => Ok(m),
        // No usable media type: an OCI manifest may omit it; guess from the shape.
        None if v.get("manifests").is_some() => Ok(media_type::OCI_INDEX.to_owned()),
        None if v.get("config").is_some() && v.get("layers").is_some() => {
            Ok(media_type::OCI_MANIFEST.to_owned())
        }
        None => Err(ClientError::InvalidManifest {
            what: what.to_owned(),
            reason: "neither an image manifest nor an index".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        // distribution-spec "Listing Tags": Link: <url>; rel="next"
        assert_eq!(
            next_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\""),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn media_type_from_body_or_header() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(
            manifest_media_type(m, None, "x").unwrap(),
            media_type::OCI_INDEX
        );
        let bare = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(bare, None, "x").unwrap(),
            media_type::OCI_MANIFEST
        );
        assert_eq!(
            manifest_media_type(
                bare,
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=x"),
                "x"
            )
            .unwrap(),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert!(matches!(
            manifest_media_type(b"<html>", None, "x"),
            Err(ClientError::InvalidManifest { .. })
        ));
        assert!(matches!(
            manifest_media_type(b"[1]", None, "x"),
            Err(ClientError::InvalidManifest { .. })
        ));
        assert!(matches!(
            manifest_media_type(b"{}", None, "x"),
            Err(ClientError::InvalidManifest { .. })
        ));
    }
}
