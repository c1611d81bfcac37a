//! `berth serve` configuration: one TOML file, typed, every default on its field.
//!
//! Loading happens in three passes so that every problem is reported at once:
//! 1. the file is parsed as TOML and every section and key is checked against
//!    [`SCHEMA`] (unknown keys and wrong types are collected, not returned early);
//! 2. environment overrides `BERTH_<SECTION>_<KEY>` are applied (a bad value is
//!    reported naming the variable);
//! 3. the typed [`Config`] is built and [`Config::validate`] checks values.
//!
//! Precedence: defaults < file < environment < command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The type a configuration key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    Float,
    StrList,
    /// A duration or size: a non-negative integer or a string with a unit.
    Amount,
    /// A nested table or array of tables, checked when the typed config is built.
    Nested,
}

/// Every section and key berth understands, with its type. Kept beside the structs
/// below; a unit test checks the two agree.
const SCHEMA: &[(&str, &[(&str, Kind)])] = &[
    (
        "server",
        &[("listen", Kind::Str), ("shutdown_timeout_secs", Kind::Int)],
    ),
    (
        "storage",
        &[("data_dir", Kind::Str), ("direct_io", Kind::Bool)],
    ),
    (
        "limits",
        &[
            ("max_manifest_bytes", Kind::Int),
            ("manifest_cache_bytes", Kind::Int),
        ],
    ),
    (
        "log",
        &[
            ("level", Kind::Str),
            ("format", Kind::Str),
            ("access", Kind::Bool),
        ],
    ),
    (
        "metrics",
        &[
            ("enabled", Kind::Bool),
            ("listen", Kind::Str),
            ("retry_window", Kind::Amount),
        ],
    ),
    (
        "events",
        &[("queue", Kind::Int), ("endpoints", Kind::Nested)],
    ),
    (
        "tls",
        &[
            ("cert", Kind::Str),
            ("key", Kind::Str),
            ("client_ca", Kind::Str),
            ("reload_interval_secs", Kind::Int),
        ],
    ),
    (
        "auth",
        &[
            ("mode", Kind::Str),
            ("allow_anonymous_on_network", Kind::Bool),
            ("htpasswd", Kind::Str),
            ("realm", Kind::Str),
            ("service", Kind::Str),
            ("issuer", Kind::Str),
            ("token_key", Kind::Str),
            ("token_ttl_secs", Kind::Int),
            ("refresh_ttl_secs", Kind::Int),
            ("admins", Kind::StrList),
            ("groups", Kind::Nested),
            ("rules", Kind::Nested),
            ("trusted_issuers", Kind::Nested),
        ],
    ),
    (
        "rate_limit",
        &[
            ("per_address_per_second", Kind::Float),
            ("per_address_burst", Kind::Int),
            ("per_user_per_second", Kind::Float),
            ("per_user_burst", Kind::Int),
            ("failed_logins_per_minute", Kind::Int),
            ("pull_per_second", Kind::Float),
            ("push_per_second", Kind::Float),
            ("delete_per_second", Kind::Float),
            ("per_action_burst", Kind::Int),
        ],
    ),
    ("audit", &[("file", Kind::Str)]),
    (
        "gc",
        &[
            ("interval", Kind::Amount),
            ("grace", Kind::Amount),
            ("untagged", Kind::Str),
            ("upload_max_age", Kind::Amount),
        ],
    ),
    (
        "scrub",
        &[("interval", Kind::Amount), ("rate", Kind::Amount)],
    ),
    (
        "retention",
        &[("interval", Kind::Amount), ("rules", Kind::Nested)],
    ),
    ("immutable_tags", &[("rules", Kind::Nested)]),
    ("quotas", &[("rules", Kind::Nested)]),
];

/// Environment variables of berth's client commands whose names look like
/// `BERTH_<SECTION>_<KEY>` overrides but are not.
const CLIENT_VARIABLES: &[&str] = &["BERTH_AUTH_FILE"];

/// The event kinds `[[events.endpoints]] types` may name.
pub const EVENT_KINDS: &[&str] = &["push", "delete", "tag", "scrub"];

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: the listener.
    pub server: ServerConfig,
    /// `[storage]`: where data lives.
    pub storage: StorageConfig,
    /// `[limits]`: request limits.
    pub limits: LimitsConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[tls]`: HTTPS (off unless `cert` and `key` are set).
    pub tls: TlsConfig,
    /// `[auth]`: who may do what.
    pub auth: AuthConfig,
    /// `[rate_limit]`: requests per client address and per user.
    pub rate_limit: RateLimitConfig,
    /// `[audit]`: where audit events go.
    pub audit: AuditConfig,
    /// `[gc]`: online garbage collection.
    pub gc: berth_registry::policy::GcConfig,
    /// `[scrub]`: background re-hashing of stored content.
    pub scrub: berth_registry::policy::ScrubConfig,
    /// `[retention]`: which tags to delete, by rule.
    pub retention: berth_registry::policy::RetentionConfig,
    /// `[immutable_tags]`: tags that may not be moved or deleted.
    pub immutable_tags: berth_registry::policy::ImmutableConfig,
    /// `[quotas]`: storage limits per repository.
    pub quotas: berth_registry::policy::QuotaConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[events]`: CloudEvents sent to webhooks.
    pub events: EventsConfig,
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text format). Default true.
    pub enabled: bool,
    /// A separate address for `/metrics` (plain HTTP, no authentication: bind it
    /// to an internal interface). Unset: `/metrics` is served on the main listener.
    pub listen: Option<String>,
    /// A pull that fails and is asked for again by the same client address within
    /// this window counts as a retry, not a first attempt (SLI M1). Default `5m`.
    pub retry_window: berth_registry::policy::Amount,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: None,
            retry_window: berth_registry::policy::Amount::Text("5m".into()),
        }
    }
}

/// `[events]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events held per endpoint while it is slow or down; when full, new events
    /// for it are dropped (and counted), never waited for. Default 1024.
    pub queue: u64,
    /// Where events go (`[[events.endpoints]]`). Default: nowhere.
    pub endpoints: Vec<EventEndpointConfig>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            queue: 1024,
            endpoints: Vec::new(),
        }
    }
}

/// One webhook receiving CloudEvents (`[[events.endpoints]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventEndpointConfig {
    /// A short name, used in logs and as the `endpoint` metric label.
    pub name: String,
    /// `http://` or `https://` URL events are POSTed to.
    pub url: String,
    /// Event kinds sent: `push`, `delete`, `tag`, `scrub`. Default: all.
    #[serde(default)]
    pub types: Vec<String>,
    /// Repository patterns (`*`, `**`) whose events are sent. Default: all.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Extra request headers (e.g. `Authorization`); values are never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Attempts per event before it is given up (and counted). Default 8.
    #[serde(default = "default_event_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry, doubled each time. Default `1s`.
    #[serde(default = "default_event_backoff")]
    pub backoff: berth_registry::policy::Amount,
    /// Longest delay between retries. Default `60s`.
    #[serde(default = "default_event_max_backoff")]
    pub max_backoff: berth_registry::policy::Amount,
    /// Time allowed for one delivery. Default `10s`.
    #[serde(default = "default_event_timeout")]
    pub timeout: berth_registry::policy::Amount,
}

fn default_event_attempts() -> u32 {
    8
}
fn default_event_backoff() -> berth_registry::policy::Amount {
    berth_registry::policy::Amount::Text("1s".into())
}
fn default_event_max_backoff() -> berth_registry::policy::Amount {
    berth_registry::policy::Amount::Text("60s".into())
}
fn default_event_timeout() -> berth_registry::policy::Amount {
    berth_registry::policy::Amount::Text("10s".into())
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain. TLS is on when this and `key` are set.
    pub cert: Option<PathBuf>,
    /// PEM private key (must not be readable by group or others).
    pub key: Option<PathBuf>,
    /// PEM CA bundle: when set, clients may present a certificate signed by it, and
    /// its subject common name is the user (mTLS).
    pub client_ca: Option<PathBuf>,
    /// How often the certificate files are checked for changes. Default 5.
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            client_ca: None,
            reload_interval_secs: 5,
        }
    }
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// How callers authenticate.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Everyone may do everything (loopback only, unless allowed explicitly).
    #[default]
    None,
    /// HTTP Basic against an htpasswd file.
    Htpasswd,
    /// Bearer tokens from berth's token service (`/token`) or trusted issuers.
    Token,
}

/// An external token issuer whose JWTs are accepted.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// A JWKS file with the issuer's public keys…
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// …or PEM public key files.
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    /// Allowed signature algorithms. Default `["ES256"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["ES256".to_owned()]
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none` (default), `htpasswd` or `token`.
    pub mode: AuthMode,
    /// Allow `mode = "none"` on a non-loopback address.
    pub allow_anonymous_on_network: bool,
    /// htpasswd file (bcrypt or argon2 hashes): checked by Basic auth and by the
    /// token service.
    pub htpasswd: Option<PathBuf>,
    /// Token realm URL sent in challenges. Default: this server's `/token`.
    pub realm: Option<String>,
    /// Token `service` / audience. Default `berth`.
    pub service: String,
    /// Token issuer (`iss`). Default `berth`.
    pub issuer: String,
    /// ES256 signing key (PEM); generated if missing. Default `<data_dir>/token-key.pem`.
    pub token_key: Option<PathBuf>,
    /// Access token lifetime. Default 300.
    pub token_ttl_secs: u64,
    /// Refresh token lifetime. Default 30 days.
    pub refresh_ttl_secs: u64,
    /// Users allowed everything.
    pub admins: Vec<String>,
    /// Groups: name → users.
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Authorization rules (`[[auth.rules]]`), most specific repository pattern wins.
    pub rules: Vec<berth_auth::policy::RuleConfig>,
    /// External issuers whose tokens are accepted (`[[auth.trusted_issuers]]`).
    pub trusted_issuers: Vec<TrustedIssuerConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            allow_anonymous_on_network: false,
            htpasswd: None,
            realm: None,
            service: "berth".into(),
            issuer: "berth".into(),
            token_key: None,
            token_ttl_secs: 300,
            refresh_ttl_secs: 30 * 24 * 3600,
            admins: Vec::new(),
            groups: Default::default(),
            rules: Vec::new(),
            trusted_issuers: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// The policy these settings describe.
    pub fn policy_config(&self) -> berth_auth::policy::PolicyConfig {
        berth_auth::policy::PolicyConfig {
            admins: self.admins.clone(),
            groups: self.groups.clone(),
            rules: self.rules.clone(),
        }
    }
}

/// `[rate_limit]`: token buckets; a rate of 0 turns that limit off.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second per client address. Default 0 (off).
    pub per_address_per_second: f64,
    /// Burst per client address. Default 200.
    pub per_address_burst: u64,
    /// Requests per second per authenticated user. Default 0 (off).
    pub per_user_per_second: f64,
    /// Burst per user. Default 200.
    pub per_user_burst: u64,
    /// Failed logins per minute per client address. Default 10.
    pub failed_logins_per_minute: u64,
    /// Pull requests (manifest/blob/tag/referrer reads) per second per caller (user,
    /// or address when anonymous). Default 0 (off).
    pub pull_per_second: f64,
    /// Push requests (upload steps, manifest writes) per second per caller. Default 0.
    pub push_per_second: f64,
    /// Delete requests per second per caller. Default 0.
    pub delete_per_second: f64,
    /// Burst of each per-action limit. Default 100.
    pub per_action_burst: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_address_per_second: 0.0,
            per_address_burst: 200,
            per_user_per_second: 0.0,
            per_user_burst: 200,
            failed_logins_per_minute: 10,
            pull_per_second: 0.0,
            push_per_second: 0.0,
            delete_per_second: 0.0,
            per_action_burst: 100,
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// File the JSON audit lines are appended to. Default: standard error.
    pub file: Option<PathBuf>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:5000`.
    pub listen: String,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT. Default 30.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5000".into(),
            shutdown_timeout_secs: 30,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Data directory (blobs, uploads, metadata database). Default `./berth-data`.
    pub data_dir: PathBuf,
    /// Write uploads' whole blocks with direct I/O (`O_DIRECT`) where the
    /// filesystem takes it, bypassing the page cache. Turn off on storage where
    /// direct writes are slow (NFS, where each one is a round trip). Default true.
    pub direct_io: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./berth-data"),
            direct_io: true,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest manifest accepted, in bytes; larger pushes get 413. Default 4 MiB.
    pub max_manifest_bytes: u64,
    /// Memory for manifests kept in the in-process read cache (tag and digest
    /// lookups that hit never touch the database). 0 turns it off. Default 8 MiB.
    pub manifest_cache_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
            manifest_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or a tracing
    /// `EnvFilter` directive. Default `info`.
    pub level: String,
    /// `text` (human-readable) or `json` (one JSON object per line). Default `text`.
    pub format: LogFormat,
    /// Log one line per request (target `berth::access`: request id, operation,
    /// repository, status, bytes, duration) at `info`. Default false.
    pub access: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            access: false,
        }
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    /// One line per problem, each naming the file or variable and the key.
    pub problems: Vec<String>,
}

impl Config {
    /// Load from an optional TOML file plus the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_with_env(file, &env)
    }

    /// Load from an optional file and the given environment variables.
    pub fn load_with_env(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let (text, origin) = match file {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => (t, p.display().to_string()),
                Err(e) => {
                    return Err(ConfigError {
                        problems: vec![format!("{}: cannot read: {e}", p.display())],
                    });
                }
            },
            None => (String::new(), "<defaults>".to_owned()),
        };
        Config::parse(&text, &origin, env)
    }

    /// Parse TOML `text` (from `origin`, used in messages) with env overrides.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![format!("{origin}: {}", e.to_string().trim_end())],
                });
            }
        };
        check_schema(&table, origin, &mut problems);
        apply_env(&mut table, env, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let config: Config = match toml::Value::Table(table).try_into() {
            Ok(c) => c,
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![format!("{origin}: {e}")],
                });
            }
        };
        config.validate(origin)?;
        Ok(config)
    }

    /// The lifecycle sections (`[gc]`, `[scrub]`, `[retention]`,
    /// `[immutable_tags]`, `[quotas]`) together.
    pub fn lifecycle(&self) -> berth_registry::LifecycleConfig {
        berth_registry::LifecycleConfig {
            gc: self.gc.clone(),
            scrub: self.scrub.clone(),
            retention: self.retention.clone(),
            immutable_tags: self.immutable_tags.clone(),
            quotas: self.quotas.clone(),
        }
    }

    /// Check values, reporting every problem.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = self.server.listen.parse::<SocketAddr>() {
            problems.push(format!(
                "{origin}: server.listen {:?} is not an address like 127.0.0.1:5000 ({e})",
                self.server.listen
            ));
        }
        if self.server.shutdown_timeout_secs == 0 {
            problems.push(format!(
                "{origin}: server.shutdown_timeout_secs must be at least 1"
            ));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            problems.push(format!("{origin}: storage.data_dir must not be empty"));
        }
        if self.limits.max_manifest_bytes < 1024 {
            problems.push(format!(
                "{origin}: limits.max_manifest_bytes must be at least 1024 (spec: clients expect 4 MiB)"
            ));
        }
        self.validate_access(origin, &mut problems);
        self.validate_observability(origin, &mut problems);
        if let Err(lifecycle) = berth_registry::Lifecycle::compile(&self.lifecycle()) {
            problems.extend(lifecycle.into_iter().map(|p| format!("{origin}: {p}")));
        }
        if tracing_filter_ok(&self.log.level).is_err() {
            problems.push(format!(
                "{origin}: log.level {:?} is not a valid log filter",
                self.log.level
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    fn validate_observability(&self, origin: &str, problems: &mut Vec<String>) {
        if let Some(l) = &self.metrics.listen
            && let Err(e) = l.parse::<SocketAddr>()
        {
            problems.push(format!(
                "{origin}: metrics.listen {l:?} is not an address like 127.0.0.1:9090 ({e})"
            ));
        }
        if let Err(e) = self.metrics.retry_window.duration() {
            problems.push(format!("{origin}: metrics.retry_window: {e}"));
        }
        if self.events.queue == 0 {
            problems.push(format!("{origin}: events.queue must be at least 1"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, ep) in self.events.endpoints.iter().enumerate() {
            let at = format!("{origin}: events.endpoints[{i}]");
            if ep.name.trim().is_empty() {
                problems.push(format!("{at}.name must not be empty"));
            } else if !names.insert(ep.name.as_str()) {
                problems.push(format!("{at}.name {:?} is used twice", ep.name));
            }
            match url::Url::parse(&ep.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => problems.push(format!(
                    "{at}.url {:?}: scheme {:?} is not http or https",
                    ep.url,
                    u.scheme()
                )),
                Err(e) => problems.push(format!("{at}.url {:?} is not a URL ({e})", ep.url)),
            }
            for t in &ep.types {
                if !EVENT_KINDS.contains(&t.as_str()) {
                    problems.push(format!(
                        "{at}.types: unknown event kind {t:?} (one of {})",
                        EVENT_KINDS.join(", ")
                    ));
                }
            }
            for r in &ep.repositories {
                if let Err(e) = berth_oci::RepoPattern::compile(r) {
                    problems.push(format!("{at}.repositories: {r:?}: {e}"));
                }
            }
            if ep.max_attempts == 0 {
                problems.push(format!("{at}.max_attempts must be at least 1"));
            }
            for (key, amount) in [
                ("backoff", &ep.backoff),
                ("max_backoff", &ep.max_backoff),
                ("timeout", &ep.timeout),
            ] {
                match amount.duration() {
                    Ok(Some(_)) => {}
                    Ok(None) => problems.push(format!("{at}.{key} must be more than zero")),
                    Err(e) => problems.push(format!("{at}.{key}: {e}")),
                }
            }
            for (k, v) in &ep.headers {
                if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || axum::http::HeaderValue::from_str(v).is_err()
                {
                    // The value may be a secret: name only the header.
                    problems.push(format!("{at}.headers: {k:?} is not a valid header"));
                }
            }
        }
    }

    fn validate_access(&self, origin: &str, problems: &mut Vec<String>) {
        // An unparseable address is reported on its own.
        let on_network = self
            .server
            .listen
            .parse::<SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback());
        match self.auth.mode {
            AuthMode::None if on_network && !self.auth.allow_anonymous_on_network => {
                problems.push(format!(
                    "{origin}: auth.mode is \"none\" but server.listen {:?} is not a loopback address; \
                     configure [auth] or set auth.allow_anonymous_on_network = true",
                    self.server.listen
                ));
            }
            AuthMode::Htpasswd | AuthMode::Token
                if self.auth.htpasswd.is_none() && self.auth.trusted_issuers.is_empty() =>
            {
                problems.push(format!(
                    "{origin}: auth.mode = {:?} needs auth.htpasswd (or, for tokens, auth.trusted_issuers)",
                    self.auth.mode
                ));
            }
            _ => {}
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            problems.push(format!(
                "{origin}: tls.cert and tls.key must be set together"
            ));
        }
        if self.tls.client_ca.is_some() && !self.tls.enabled() {
            problems.push(format!(
                "{origin}: tls.client_ca needs tls.cert and tls.key"
            ));
        }
        if self.auth.token_ttl_secs == 0 {
            problems.push(format!("{origin}: auth.token_ttl_secs must be at least 1"));
        }
        for (k, v) in [
            (
                "per_address_per_second",
                self.rate_limit.per_address_per_second,
            ),
            ("per_user_per_second", self.rate_limit.per_user_per_second),
            ("pull_per_second", self.rate_limit.pull_per_second),
            ("push_per_second", self.rate_limit.push_per_second),
            ("delete_per_second", self.rate_limit.delete_per_second),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                problems.push(format!("{origin}: rate_limit.{k} must be a number >= 0"));
            }
        }
        if let Err(e) = berth_auth::policy::Policy::new(&self.auth.policy_config()) {
            problems.push(format!("{origin}: auth: {e}"));
        }
    }

    /// The listen address (validated by [`Config::validate`]).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|e| ConfigError {
            problems: vec![format!("server.listen {:?}: {e}", self.server.listen)],
        })
    }
}

/// Whether `s` is a filter `tracing-subscriber` accepts.
fn tracing_filter_ok(s: &str) -> Result<(), ()> {
    if s.trim().is_empty() {
        return Err(());
    }
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| ())
        .map_err(|_| ())
}

fn kind_of(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn check_schema(table: &toml::Table, origin: &str, problems: &mut Vec<String>) {
    for (section, value) in table {
        let Some((_, keys)) = SCHEMA.iter().find(|(s, _)| s == section) else {
            let known: Vec<&str> = SCHEMA.iter().map(|(s, _)| *s).collect();
            problems.push(format!(
                "{origin}: unknown section [{section}] (known: {})",
                known.join(", ")
            ));
            continue;
        };
        let Some(inner) = value.as_table() else {
            problems.push(format!(
                "{origin}: {section} must be a table, not {}",
                kind_of(value)
            ));
            continue;
        };
        for (key, v) in inner {
            match keys.iter().find(|(k, _)| k == key) {
                None => {
                    let known: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                    problems.push(format!(
                        "{origin}: unknown key {section}.{key} (known: {})",
                        known.join(", ")
                    ));
                }
                Some((_, Kind::Str)) if !v.is_str() => problems.push(format!(
                    "{origin}: {section}.{key} must be a string, not {}",
                    kind_of(v)
                )),
                Some((_, Kind::Bool)) if !v.is_bool() => problems.push(format!(
                    "{origin}: {section}.{key} must be true or false, not {}",
                    kind_of(v)
                )),
                Some((_, Kind::Float)) if !(v.is_float() || v.is_integer()) => {
                    problems.push(format!(
                        "{origin}: {section}.{key} must be a number, not {}",
                        kind_of(v)
                    ))
                }
                Some((_, Kind::StrList))
                    if !v
                        .as_array()
                        .is_some_and(|a| a.iter().all(toml::Value::is_str)) =>
                {
                    problems.push(format!(
                        "{origin}: {section}.{key} must be a list of strings, not {}",
                        kind_of(v)
                    ))
                }
                Some((_, Kind::Amount))
                    if !(v.is_str() || v.as_integer().is_some_and(|i| i >= 0)) =>
                {
                    problems.push(format!(
                        "{origin}: {section}.{key} must be a non-negative integer or a string such as \"30d\" or \"10GiB\", not {}",
                        kind_of(v)
                    ))
                }
                Some((_, Kind::Int)) if v.as_integer().is_none_or(|i| i < 0) => {
                    problems.push(format!(
                        "{origin}: {section}.{key} must be a non-negative integer, not {}",
                        if v.is_integer() {
                            "a negative one"
                        } else {
                            kind_of(v)
                        }
                    ))
                }
                _ => {}
            }
        }
    }
}

fn apply_env(table: &mut toml::Table, env: &[(String, String)], problems: &mut Vec<String>) {
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("BERTH_") else {
            continue;
        };
        // Variables of the client commands, not configuration keys.
        if CLIENT_VARIABLES.contains(&var.as_str()) {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        // Only variables naming a known section are overrides; others (such as
        // BERTH_PASSWORD) belong to other commands.
        let Some((section, keys)) = SCHEMA
            .iter()
            .find(|(s, _)| rest.starts_with(&format!("{s}_")))
        else {
            continue;
        };
        let key = &rest[section.len() + 1..];
        let Some((_, kind)) = keys.iter().find(|(k, _)| *k == key) else {
            let known: Vec<String> = keys
                .iter()
                .map(|(k, _)| format!("BERTH_{}_{}", section.to_uppercase(), k.to_uppercase()))
                .collect();
            problems.push(format!(
                "environment: {var} is not a configuration key (known: {})",
                known.join(", ")
            ));
            continue;
        };
        let value = match kind {
            Kind::Str => toml::Value::String(raw.clone()),
            Kind::Int => match raw.trim().parse::<u64>() {
                Ok(i) if i <= i64::MAX as u64 => toml::Value::Integer(i as i64),
                _ => {
                    problems.push(format!(
                        "environment: {var}={raw:?} must be a non-negative integer"
                    ));
                    continue;
                }
            },
            Kind::Bool => match raw.trim() {
                "true" | "1" => toml::Value::Boolean(true),
                "false" | "0" => toml::Value::Boolean(false),
                _ => {
                    problems.push(format!("environment: {var}={raw:?} must be true or false"));
                    continue;
                }
            },
            Kind::Float => match raw.trim().parse::<f64>() {
                Ok(f) => toml::Value::Float(f),
                Err(_) => {
                    problems.push(format!("environment: {var}={raw:?} must be a number"));
                    continue;
                }
            },
            Kind::Amount => match raw.trim().parse::<u64>() {
                Ok(i) if i <= i64::MAX as u64 => toml::Value::Integer(i as i64),
                _ => toml::Value::String(raw.trim().to_owned()),
            },
            Kind::StrList => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
            Kind::Nested => {
                problems.push(format!(
                    "environment: {var}: {section}.{key} can only be set in the configuration file"
                ));
                continue;
            }
        };
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(t) = entry.as_table_mut() {
            t.insert(key.to_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", &[])
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(Config::default().server.listen, "127.0.0.1:5000");
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
            [server]
            listen = "0.0.0.0:6000"
            shutdown_timeout_secs = 5
            [storage]
            data_dir = "/var/lib/berth"
            direct_io = false
            [limits]
            max_manifest_bytes = 8388608
            [log]
            level = "debug"
            [auth]
            allow_anonymous_on_network = true
            "#,
        )
        .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:6000");
        assert_eq!(c.storage.data_dir, PathBuf::from("/var/lib/berth"));
        assert!(!c.storage.direct_io);
        assert!(Config::default().storage.direct_io);
        assert_eq!(c.limits.max_manifest_bytes, 8 << 20);
    }

    #[test]
    fn every_problem_reported_at_once() {
        let err = parse(
            r#"
            [server]
            listen = "nowhere"
            lisen = "x"
            shutdown_timeout_secs = "soon"
            [storage]
            datadir = "x"
            [bogus]
            a = 1
            "#,
        )
        .unwrap_err();
        let all = err.to_string();
        for want in [
            "unknown key server.lisen",
            "server.shutdown_timeout_secs must be a non-negative integer, not a string",
            "unknown key storage.datadir",
            "unknown section [bogus]",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert_eq!(err.problems.len(), 4, "{all}");
        // Value problems are reported together too, once the shape is right.
        let err = parse("[server]\nlisten = \"nowhere\"\nshutdown_timeout_secs = 0\n[limits]\nmax_manifest_bytes = 10").unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("server.listen \"nowhere\""));
    }

    #[test]
    fn access_settings_are_checked() {
        // Issue 4: no auth only on loopback unless allowed explicitly.
        let err = parse("[server]\nlisten = \"0.0.0.0:5000\"\n").unwrap_err();
        assert!(
            err.to_string().contains("auth.allow_anonymous_on_network"),
            "{err}"
        );
        assert!(parse("[server]\nlisten = \"[::1]:5000\"\n").is_ok());
        let err = parse("[auth]\nmode = \"htpasswd\"\n[tls]\ncert = \"c.pem\"\n").unwrap_err();
        let all = err.to_string();
        assert!(all.contains("needs auth.htpasswd"), "{all}");
        assert!(
            all.contains("tls.cert and tls.key must be set together"),
            "{all}"
        );
        let err = parse("[auth]\nmode = \"magic\"\n").unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
        let err = parse(
            "[auth]\nmode = \"token\"\nhtpasswd = \"h\"\nrules = [{ repositories = [\"a/**\"], groups = [\"nope\"], actions = [\"pull\"] }]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = parse("[auth]\nallow_anonymous_on_network = \"yes\"\n[rate_limit]\nper_address_per_second = \"fast\"\n").unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        let ok = parse(
            "[auth]\nmode = \"token\"\nhtpasswd = \"h\"\nadmins = [\"root\"]\n[auth.groups]\ndevs = [\"a\"]\n[[auth.rules]]\nrepositories = [\"team/**\"]\ngroups = [\"devs\"]\nactions = [\"pull\", \"push\"]\n",
        )
        .unwrap();
        assert_eq!(ok.auth.mode, AuthMode::Token);
        assert_eq!(ok.auth.rules.len(), 1);
    }

    #[test]
    fn syntax_error_names_the_file() {
        let err = parse("[server\n").unwrap_err();
        assert!(err.to_string().starts_with("test.toml:"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let env = vec![
            (
                "BERTH_SERVER_LISTEN".to_owned(),
                "127.0.0.1:7000".to_owned(),
            ),
            (
                "BERTH_LIMITS_MAX_MANIFEST_BYTES".to_owned(),
                "2048".to_owned(),
            ),
            ("BERTH_PASSWORD".to_owned(), "not-config".to_owned()),
        ];
        let c = Config::parse("[server]\nlisten = \"127.0.0.1:6000\"", "f", &env).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:7000");
        assert_eq!(c.limits.max_manifest_bytes, 2048);
    }

    #[test]
    fn bad_env_values_are_named() {
        let env = vec![
            (
                "BERTH_LIMITS_MAX_MANIFEST_BYTES".to_owned(),
                "lots".to_owned(),
            ),
            ("BERTH_SERVER_PORT".to_owned(), "1".to_owned()),
        ];
        let err = Config::parse("", "f", &env).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(
            err.to_string()
                .contains("BERTH_LIMITS_MAX_MANIFEST_BYTES=\"lots\"")
        );
        assert!(
            err.to_string()
                .contains("BERTH_SERVER_PORT is not a configuration key")
        );
    }

    #[test]
    fn example_config_is_valid_and_documents_the_defaults() {
        let text = include_str!("../../../examples/berth.toml");
        assert_eq!(parse(text).unwrap(), Config::default());
        // Every schema key appears in the example.
        for (section, keys) in SCHEMA {
            assert!(
                text.contains(&format!("[{section}]")),
                "[{section}] missing"
            );
            for (key, _) in *keys {
                assert!(
                    text.contains(&format!("{key} =")),
                    "{section}.{key} missing"
                );
            }
        }
    }

    #[test]
    fn schema_matches_structs() {
        // Every schema key must deserialize into the typed struct.
        for (section, keys) in SCHEMA {
            for (key, kind) in *keys {
                let value = match kind {
                    Kind::Str if *section == "auth" && *key == "mode" => "\"token\"".to_owned(),
                    Kind::Str if *section == "log" && *key == "format" => "\"json\"".to_owned(),
                    Kind::Str => "\"127.0.0.1:1\"".to_owned(),
                    Kind::Int => "4096".to_owned(),
                    Kind::Bool => "true".to_owned(),
                    Kind::Float => "2.5".to_owned(),
                    Kind::StrList => "[\"a\"]".to_owned(),
                    Kind::Amount => "\"1h\"".to_owned(),
                    Kind::Nested if *key == "groups" => "{ devs = [\"a\"] }".to_owned(),
                    Kind::Nested => "[]".to_owned(),
                };
                let text = format!("[{section}]\n{key} = {value}\n");
                let res: Result<Config, _> = toml::from_str(&text);
                assert!(res.is_ok(), "{section}.{key}: {res:?}");
            }
        }
    }
}
