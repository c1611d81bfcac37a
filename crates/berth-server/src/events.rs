//! CloudEvents for registry changes, delivered to webhooks (`[events]`).
//!
//! Handlers and maintenance describe what changed as an [`Event`] and hand it to
//! [`Events::emit`], which never waits: the event is wrapped once in a CloudEvents
//! 1.0 envelope (structured mode, JSON format) and offered to the bounded queue of
//! every endpoint whose filters (event kinds, repository patterns) match. A full
//! queue drops the event for that endpoint and counts it.
//!
//! Each endpoint has one delivery task that POSTs its queue's events one at a
//! time, in order: an event is retried (backoff doubling from `backoff` up to
//! `max_backoff`, with a little jitter; `Retry-After` honoured on 429 and 503)
//! until a 2xx answers or `max_attempts` is reached, and only then does the next
//! event go. Retries carry the same CloudEvents `id`, so receivers can drop
//! duplicates (delivery is at least once). Header values from the configuration
//! may be secrets: they are marked sensitive and never logged.
//!
//! ```text
//! handler ──emit──▶ filter ──try_send──▶ [queue: endpoint A] ──▶ task A ──POST──▶ webhook A
//!                          └─try_send──▶ [queue: endpoint B] ──▶ task B ──POST──▶ webhook B
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_oci::{Digest, RepoPattern};
use berth_registry::{ManifestPut, RetentionReport, ScrubReport};
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use reqwest::header::{CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;

use crate::config::{EventEndpointConfig, EventsConfig};

/// `Content-Type` of a CloudEvent in structured mode, JSON format.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The kinds an endpoint can filter on (`types` in `[[events.endpoints]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A manifest was pushed.
    Push,
    /// A manifest, tag or blob was deleted.
    Delete,
    /// A tag was created or moved.
    Tag,
    /// Scrub found something wrong.
    Scrub,
}

impl EventKind {
    /// The kind named in the configuration (`push`, `delete`, `tag`, `scrub`).
    pub fn parse(name: &str) -> Option<EventKind> {
        match name {
            "push" => Some(EventKind::Push),
            "delete" => Some(EventKind::Delete),
            "tag" => Some(EventKind::Tag),
            "scrub" => Some(EventKind::Scrub),
            _ => None,
        }
    }

    /// The configuration name of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::Delete => "delete",
            EventKind::Tag => "tag",
            EventKind::Scrub => "scrub",
        }
    }
}

/// Why something was deleted (`reason` in the data of delete events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// A client's `DELETE` request.
    Api,
    /// A retention rule.
    Retention,
}

impl DeleteReason {
    /// `api` or `retention`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteReason::Api => "api",
            DeleteReason::Retention => "retention",
        }
    }
}

/// CloudEvents `type` of a manifest push.
pub const MANIFEST_PUSHED: &str = "dev.berth.manifest.pushed";
/// CloudEvents `type` of a tag created or moved.
pub const TAG_UPDATED: &str = "dev.berth.tag.updated";
/// CloudEvents `type` of a tag deleted.
pub const TAG_DELETED: &str = "dev.berth.tag.deleted";
/// CloudEvents `type` of a manifest deleted.
pub const MANIFEST_DELETED: &str = "dev.berth.manifest.deleted";
/// CloudEvents `type` of a blob unlinked from a repository.
pub const BLOB_DELETED: &str = "dev.berth.blob.deleted";
/// CloudEvents `type` of an object scrub found corrupt (and quarantined).
pub const SCRUB_CORRUPT: &str = "dev.berth.scrub.corrupt";
/// CloudEvents `type` of a link scrub found pointing nowhere.
pub const SCRUB_INCONSISTENCY: &str = "dev.berth.scrub.inconsistency";

/// One event, before it gets its CloudEvents envelope.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its kind, for filtering.
    pub kind: EventKind,
    /// CloudEvents `type`, e.g. `dev.berth.manifest.pushed`.
    pub event_type: &'static str,
    /// The repository it concerns, if any (for filtering).
    pub repository: Option<String>,
    /// Further repositories it concerns (a scrub finding shared by several). An
    /// endpoint filtering by repository gets the event if `repository` or any of
    /// these matches; an event with no repository at all reaches only endpoints
    /// without a repository filter.
    pub repositories: Vec<String>,
    /// CloudEvents `subject`, e.g. `library/alpine:3.20` or `library/alpine@sha256:…`.
    pub subject: Option<String>,
    /// CloudEvents `data` (JSON).
    pub data: serde_json::Value,
}

impl Event {
    fn in_repo(
        kind: EventKind,
        event_type: &'static str,
        repository: &str,
        subject: String,
        data: serde_json::Value,
    ) -> Event {
        Event {
            kind,
            event_type,
            repository: Some(repository.to_owned()),
            repositories: Vec::new(),
            subject: Some(subject),
            data,
        }
    }

    /// `dev.berth.manifest.pushed`: a manifest was stored in `repository` (and
    /// pointed to by `tags`, which may be empty).
    pub fn manifest_pushed(
        repository: &str,
        digest: &Digest,
        media_type: &str,
        size: u64,
        tags: &[String],
    ) -> Event {
        Event::in_repo(
            EventKind::Push,
            MANIFEST_PUSHED,
            repository,
            format!("{repository}@{digest}"),
            serde_json::json!({
                "repository": repository,
                "digest": digest.to_string(),
                "mediaType": media_type,
                "size": size,
                "tags": tags,
            }),
        )
    }

    /// `dev.berth.tag.updated`: `tag` now points at `digest`; `previous` is what
    /// it pointed at before (`None`: the tag is new).
    pub fn tag_updated(
        repository: &str,
        tag: &str,
        digest: &Digest,
        previous: Option<&Digest>,
    ) -> Event {
        Event::in_repo(
            EventKind::Tag,
            TAG_UPDATED,
            repository,
            format!("{repository}:{tag}"),
            serde_json::json!({
                "repository": repository,
                "tag": tag,
                "digest": digest.to_string(),
                "previous": previous.map(|d| d.to_string()),
            }),
        )
    }

    /// `dev.berth.tag.deleted`: `tag` was removed; `digest` is what it pointed at,
    /// if known.
    pub fn tag_deleted(
        repository: &str,
        tag: &str,
        digest: Option<&str>,
        reason: DeleteReason,
    ) -> Event {
        Event::in_repo(
            EventKind::Delete,
            TAG_DELETED,
            repository,
            format!("{repository}:{tag}"),
            serde_json::json!({
                "repository": repository,
                "tag": tag,
                "digest": digest,
                "reason": reason.as_str(),
            }),
        )
    }

    /// `dev.berth.manifest.deleted`: a manifest (and every tag naming it) was
    /// removed from `repository`.
    pub fn manifest_deleted(repository: &str, digest: &Digest, reason: DeleteReason) -> Event {
        Event::in_repo(
            EventKind::Delete,
            MANIFEST_DELETED,
            repository,
            format!("{repository}@{digest}"),
            serde_json::json!({
                "repository": repository,
                "digest": digest.to_string(),
                "reason": reason.as_str(),
            }),
        )
    }

    /// `dev.berth.blob.deleted`: a blob was unlinked from `repository`.
    pub fn blob_deleted(repository: &str, digest: &Digest, reason: DeleteReason) -> Event {
        Event::in_repo(
            EventKind::Delete,
            BLOB_DELETED,
            repository,
            format!("{repository}@{digest}"),
            serde_json::json!({
                "repository": repository,
                "digest": digest.to_string(),
                "reason": reason.as_str(),
            }),
        )
    }

    /// `dev.berth.scrub.corrupt`: scrub quarantined an object.
    pub fn scrub_corrupt(c: &berth_registry::Corrupt) -> Event {
        let subject = match c.repositories.as_slice() {
            [one] => format!("{one}@{}", c.digest),
            _ => c.digest.clone(),
        };
        Event {
            kind: EventKind::Scrub,
            event_type: SCRUB_CORRUPT,
            repository: None,
            repositories: c.repositories.clone(),
            subject: Some(subject),
            data: serde_json::json!({
                "kind": c.kind,
                "digest": c.digest,
                "repositories": c.repositories,
                "reason": c.reason,
                "movedTo": c.moved_to,
            }),
        }
    }

    /// `dev.berth.scrub.inconsistency`: a tag or manifest points at something
    /// that is not there.
    pub fn scrub_inconsistency(i: &berth_storage::Inconsistency) -> Event {
        // `from` is a tag name or a manifest digest; only digests contain ':'.
        let sep = if i.from.contains(':') { '@' } else { ':' };
        Event::in_repo(
            EventKind::Scrub,
            SCRUB_INCONSISTENCY,
            &i.repository,
            format!("{}{sep}{}", i.repository, i.from),
            serde_json::json!({
                "repository": i.repository,
                "from": i.from,
                "missing": i.missing,
                "problem": i.problem,
            }),
        )
    }
}

/// Which events one endpoint wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    kinds: Vec<EventKind>,
    repositories: Vec<RepoPattern>,
}

impl Filter {
    /// The filter of a configured endpoint. Unknown kinds and bad patterns were
    /// refused by `Config::validate`; here they are skipped with a warning.
    pub fn from_config(ep: &EventEndpointConfig) -> Filter {
        let kinds = ep
            .types
            .iter()
            .filter_map(|t| {
                let k = EventKind::parse(t);
                if k.is_none() {
                    tracing::warn!(endpoint = %ep.name, kind = %t, "unknown event kind ignored");
                }
                k
            })
            .collect();
        let repositories = ep
            .repositories
            .iter()
            .filter_map(|p| match RepoPattern::compile(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(endpoint = %ep.name, pattern = %p, error = %e, "bad repository pattern ignored");
                    None
                }
            })
            .collect();
        Filter {
            kinds,
            repositories,
        }
    }

    /// Whether `event` passes: its kind is listed (or none are), and one of its
    /// repositories matches a pattern (or there are no patterns).
    pub fn matches(&self, event: &Event) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&event.kind) {
            return false;
        }
        if self.repositories.is_empty() {
            return true;
        }
        event
            .repository
            .iter()
            .chain(&event.repositories)
            .any(|r| self.repositories.iter().any(|p| p.matches(r)))
    }
}

/// Delivery timing of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Delay before the first retry, doubled after each.
    pub backoff: Duration,
    /// Longest delay between attempts (also caps `Retry-After`).
    pub max_backoff: Duration,
    /// Time allowed for one attempt.
    pub timeout: Duration,
}

impl Timing {
    /// The configured timing. `Config::validate` refuses `off` and bad values;
    /// should one get here anyway, `off` means no backoff (or a one-day cap and
    /// timeout) and a bad value the default.
    pub fn from_config(ep: &EventEndpointConfig) -> Timing {
        let get = |a: &berth_registry::policy::Amount, default: Duration, off: Duration| match a
            .duration()
        {
            Ok(Some(d)) => d,
            Ok(None) => off,
            Err(_) => default,
        };
        let long = Duration::from_secs(24 * 3600);
        Timing {
            backoff: get(&ep.backoff, Duration::from_secs(1), Duration::ZERO),
            max_backoff: get(&ep.max_backoff, Duration::from_secs(60), long),
            timeout: get(&ep.timeout, Duration::from_secs(10), long),
        }
    }
}

/// The `endpoint` label of the event metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// The metric families, registered once.
#[derive(Debug, Default)]
struct Families {
    sent: Family<EndpointLabel, Counter>,
    retries: Family<EndpointLabel, Counter>,
    failed: Family<EndpointLabel, Counter>,
    dropped: Family<EndpointLabel, Counter>,
    queued: Family<EndpointLabel, Gauge>,
}

impl Families {
    fn register(registry: &mut prometheus_client::registry::Registry) -> Families {
        let f = Families::default();
        registry.register(
            "berth_events_sent",
            "Events delivered (2xx)",
            f.sent.clone(),
        );
        registry.register(
            "berth_events_retries",
            "Failed delivery attempts that were retried",
            f.retries.clone(),
        );
        registry.register(
            "berth_events_failed",
            "Events given up after max_attempts",
            f.failed.clone(),
        );
        registry.register(
            "berth_events_dropped",
            "Events dropped because the endpoint's queue was full",
            f.dropped.clone(),
        );
        registry.register(
            "berth_events_queued",
            "Events waiting in the endpoint's queue",
            f.queued.clone(),
        );
        f
    }

    /// One endpoint's series, created now so they read 0 before anything happens.
    fn of(&self, endpoint: &str) -> EndpointMetrics {
        let l = EndpointLabel {
            endpoint: endpoint.to_owned(),
        };
        EndpointMetrics {
            sent: self.sent.get_or_create(&l).clone(),
            retries: self.retries.get_or_create(&l).clone(),
            failed: self.failed.get_or_create(&l).clone(),
            dropped: self.dropped.get_or_create(&l).clone(),
            queued: self.queued.get_or_create(&l).clone(),
        }
    }
}

/// One endpoint's metric series (handles into the registered families).
#[derive(Debug, Clone)]
struct EndpointMetrics {
    sent: Counter,
    retries: Counter,
    failed: Counter,
    dropped: Counter,
    queued: Gauge,
}

/// A CloudEvent ready to send: the same bytes (and `id`) on every attempt and
/// for every endpoint.
#[derive(Debug, Clone)]
struct Envelope {
    id: Arc<str>,
    event_type: &'static str,
    body: Bytes,
}

impl Envelope {
    fn new(source: &str, event: Event, time: SystemTime) -> Envelope {
        let id = uuid::Uuid::new_v4().to_string();
        let mut ce = serde_json::Map::new();
        ce.insert("specversion".into(), "1.0".into());
        ce.insert("id".into(), id.clone().into());
        ce.insert("source".into(), source.into());
        ce.insert("type".into(), event.event_type.into());
        if let Some(s) = event.subject {
            ce.insert("subject".into(), s.into());
        }
        ce.insert("time".into(), rfc3339(time).into());
        ce.insert("datacontenttype".into(), "application/json".into());
        ce.insert("data".into(), event.data);
        Envelope {
            id: id.into(),
            event_type: event.event_type,
            body: Bytes::from(serde_json::Value::Object(ce).to_string()),
        }
    }
}

/// The emitting side of one endpoint.
struct Sink {
    name: String,
    filter: Filter,
    tx: mpsc::Sender<Envelope>,
    metrics: EndpointMetrics,
}

struct Inner {
    source: String,
    sinks: Vec<Sink>,
}

/// The event dispatcher: cheap to clone.
#[derive(Clone, Default)]
pub struct Events {
    inner: Option<Arc<Inner>>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .inner
            .iter()
            .flat_map(|i| i.sinks.iter().map(|s| s.name.as_str()))
            .collect();
        f.debug_struct("Events").field("endpoints", &names).finish()
    }
}

impl Events {
    /// Start one delivery task per configured endpoint (needs a Tokio runtime);
    /// the endpoints' metrics are registered in `registry`.
    pub fn start(
        config: &EventsConfig,
        source: &str,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Events {
        Events::start_with(config, source, registry, Timing::from_config)
    }

    /// [`Events::start`] with the timing of each endpoint decided by `timing`
    /// (tests use sub-second backoffs, which the configuration cannot express).
    #[doc(hidden)]
    pub fn start_with(
        config: &EventsConfig,
        source: &str,
        registry: &mut prometheus_client::registry::Registry,
        timing: impl Fn(&EventEndpointConfig) -> Timing,
    ) -> Events {
        if config.endpoints.is_empty() {
            return Events::disabled();
        }
        let families = Families::register(registry);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("events disabled: not started inside a Tokio runtime");
            return Events::disabled();
        };
        // Redirects are not followed: a 3xx is a failed attempt, and configured
        // headers (credentials) never go to another host.
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "events disabled: cannot create the HTTP client");
                return Events::disabled();
            }
        };
        let queue = usize::try_from(config.queue).unwrap_or(usize::MAX).max(1);
        // tokio's bounded channel refuses capacities above this.
        let queue = queue.min(usize::MAX >> 3);
        let mut sinks = Vec::with_capacity(config.endpoints.len());
        for ep in &config.endpoints {
            let metrics = families.of(&ep.name);
            let (tx, rx) = mpsc::channel(queue);
            let delivery = Delivery {
                name: ep.name.clone(),
                url: ep.url.clone(),
                headers: request_headers(ep),
                max_attempts: ep.max_attempts.max(1),
                timing: timing(ep),
                metrics: metrics.clone(),
                client: client.clone(),
            };
            runtime.spawn(delivery.run(rx));
            sinks.push(Sink {
                name: ep.name.clone(),
                filter: Filter::from_config(ep),
                tx,
                metrics,
            });
        }
        Events {
            inner: Some(Arc::new(Inner {
                source: source.to_owned(),
                sinks,
            })),
        }
    }

    /// No endpoints: every event is discarded.
    pub fn disabled() -> Events {
        Events { inner: None }
    }

    /// Whether any endpoint is configured.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queue `event` for every endpoint whose filters match; never waits.
    pub fn emit(&self, event: Event) {
        let Some(inner) = &self.inner else { return };
        let targets: Vec<&Sink> = inner
            .sinks
            .iter()
            .filter(|s| s.filter.matches(&event))
            .collect();
        if targets.is_empty() {
            return;
        }
        let envelope = Envelope::new(&inner.source, event, SystemTime::now());
        for sink in targets {
            // Counted before the send: the delivery task may take it at once.
            sink.metrics.queued.inc();
            if let Err(e) = sink.tx.try_send(envelope.clone()) {
                sink.metrics.queued.dec();
                let before = sink.metrics.dropped.inc();
                // Logged at the 1st, 2nd, 3rd, 5th, 9th, 17th… drop: a dead
                // endpoint under load must not flood the log.
                if before == 0 || before.is_power_of_two() {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "queue full",
                        mpsc::error::TrySendError::Closed(_) => "delivery task stopped",
                    };
                    tracing::warn!(
                        endpoint = %sink.name,
                        event_type = envelope.event_type,
                        dropped = before + 1,
                        "event dropped: {why}"
                    );
                }
            }
        }
    }

    /// After a manifest push: `manifest.pushed`, then one `tag.updated` for each
    /// tag the push created or moved (not for tags that already named it).
    pub fn manifest_put(&self, repository: &str, put: &ManifestPut) {
        if !self.is_enabled() {
            return;
        }
        let tags: Vec<String> = put.tags.iter().map(|t| t.tag.clone()).collect();
        self.emit(Event::manifest_pushed(
            repository,
            &put.digest,
            &put.media_type,
            put.size,
            &tags,
        ));
        for t in put.tags.iter().filter(|t| t.changed(&put.digest)) {
            self.emit(Event::tag_updated(
                repository,
                &t.tag,
                &put.digest,
                t.previous.as_ref(),
            ));
        }
    }

    /// One `scrub.corrupt` per quarantined object and one `scrub.inconsistency`
    /// per dangling link of a scrub report.
    pub fn scrub_findings(&self, report: &ScrubReport) {
        if !self.is_enabled() {
            return;
        }
        for c in &report.corrupt {
            self.emit(Event::scrub_corrupt(c));
        }
        for i in &report.inconsistencies {
            self.emit(Event::scrub_inconsistency(i));
        }
    }

    /// One `tag.deleted` (reason `retention`) per tag a retention pass deleted;
    /// nothing for a dry run.
    pub fn retention_deleted(&self, report: &RetentionReport) {
        if !self.is_enabled() || report.dry_run {
            return;
        }
        for d in &report.deleted {
            self.emit(Event::tag_deleted(
                &d.repository,
                &d.tag,
                Some(&d.digest),
                DeleteReason::Retention,
            ));
        }
    }
}

/// The configured headers (marked sensitive) plus the CloudEvents content type,
/// which a configured `Content-Type` cannot override.
fn request_headers(ep: &EventEndpointConfig) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in &ep.headers {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(name), Ok(mut value)) => {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            // Validation refuses these; never log the value.
            _ => tracing::warn!(endpoint = %ep.name, header = %k, "invalid header ignored"),
        }
    }
    headers.insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
    headers
}

/// The sending side of one endpoint.
struct Delivery {
    name: String,
    url: String,
    headers: HeaderMap,
    max_attempts: u32,
    timing: Timing,
    metrics: EndpointMetrics,
    client: reqwest::Client,
}

/// Why one attempt failed.
enum Failure {
    /// The endpoint answered with a non-2xx status (and maybe `Retry-After`).
    Status(reqwest::StatusCode, Option<Duration>),
    /// No answer: connection, TLS or timeout error.
    Transport(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(s, _) => write!(f, "status {}", s.as_u16()),
            Failure::Transport(e) => f.write_str(e),
        }
    }
}

impl Delivery {
    /// Deliver the queue's events one after another until every sender is gone.
    async fn run(self, mut rx: mpsc::Receiver<Envelope>) {
        while let Some(envelope) = rx.recv().await {
            self.metrics.queued.dec();
            self.deliver(&envelope).await;
        }
    }

    /// Attempt `envelope` until it is accepted or `max_attempts` is reached.
    async fn deliver(&self, envelope: &Envelope) {
        let mut delay = self.timing.backoff;
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(envelope).await {
                Ok(()) => {
                    self.metrics.sent.inc();
                    return;
                }
                Err(f) => f,
            };
            if attempt >= self.max_attempts {
                self.metrics.failed.inc();
                tracing::error!(
                    endpoint = %self.name,
                    id = %envelope.id,
                    event_type = envelope.event_type,
                    attempt,
                    error = %failure,
                    "event delivery given up"
                );
                return;
            }
            let wait = match failure {
                Failure::Status(_, Some(after)) => after.min(self.timing.max_backoff),
                _ => jittered(delay).min(self.timing.max_backoff),
            };
            tracing::warn!(
                endpoint = %self.name,
                id = %envelope.id,
                event_type = envelope.event_type,
                attempt,
                error = %failure,
                retry_in_ms = wait.as_millis() as u64,
                "event delivery failed"
            );
            self.metrics.retries.inc();
            tokio::time::sleep(wait).await;
            delay = delay.saturating_mul(2).min(self.timing.max_backoff);
            attempt += 1;
        }
    }

    /// One POST.
    async fn attempt(&self, envelope: &Envelope) -> Result<(), Failure> {
        let resp = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(envelope.body.clone())
            .timeout(self.timing.timeout)
            .send()
            .await
            .map_err(|e| Failure::Transport(transport_error(e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = if matches!(status.as_u16(), 429 | 503) {
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
        } else {
            None
        };
        Err(Failure::Status(status, retry_after))
    }
}

/// A transport error with its causes, without the URL (it may hold credentials).
fn transport_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Retry-After` in its delay-seconds form (the HTTP-date form is ignored: the
/// normal backoff applies).
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `d` plus up to 10 % more, so that endpoints failing together do not retry
/// in lockstep.
fn jittered(d: Duration) -> Duration {
    use rand::Rng as _;
    let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
    let extra = rand::rng().random_range(0..=ms / 10);
    d.saturating_add(Duration::from_millis(extra))
}

/// `t` as RFC 3339 in UTC with milliseconds (`2024-05-01T12:34:56.789Z`), as
/// CloudEvents `time` requires.
///
/// Hand-written (Howard Hinnant's `civil_from_days`) rather than a new `time` or
/// `chrono` dependency for one formatting call; `httpdate`'s format is not RFC 3339.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// (year, month, day) of the day `z` days after 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn endpoint(types: &[&str], repositories: &[&str]) -> EventEndpointConfig {
        EventEndpointConfig {
            name: "t".into(),
            url: "http://127.0.0.1:1/".into(),
            types: types.iter().map(|s| s.to_string()).collect(),
            repositories: repositories.iter().map(|s| s.to_string()).collect(),
            headers: Default::default(),
            max_attempts: 1,
            backoff: berth_registry::policy::Amount::Text("1s".into()),
            max_backoff: berth_registry::policy::Amount::Text("2s".into()),
            timeout: berth_registry::policy::Amount::Text("3s".into()),
        }
    }

    fn digest() -> Digest {
        Digest::sha256_of(b"x")
    }

    #[rstest]
    #[case(&[], &[], "prod/app", true)]
    #[case(&["tag"], &[], "prod/app", true)]
    #[case(&["push"], &[], "prod/app", false)]
    #[case(&["push", "tag"], &[], "prod/app", true)]
    #[case(&[], &["prod/**"], "prod/app", true)]
    #[case(&[], &["prod/**"], "prod", true)]
    #[case(&[], &["prod/**"], "dev/app", false)]
    #[case(&[], &["dev/*", "prod/*"], "prod/app", true)]
    #[case(&["tag"], &["prod/**"], "dev/app", false)]
    fn filter_matches_kind_and_repository(
        #[case] types: &[&str],
        #[case] repos: &[&str],
        #[case] repo: &str,
        #[case] want: bool,
    ) {
        let f = Filter::from_config(&endpoint(types, repos));
        let e = Event::tag_updated(repo, "v1", &digest(), None);
        assert_eq!(f.matches(&e), want, "{types:?} {repos:?} {repo}");
    }

    #[test]
    fn findings_match_any_of_their_repositories() {
        let c = berth_registry::Corrupt {
            kind: "blob",
            digest: digest().to_string(),
            repositories: vec!["dev/a".into(), "prod/b".into()],
            reason: "digest mismatch".into(),
            moved_to: None,
        };
        let e = Event::scrub_corrupt(&c);
        assert!(Filter::from_config(&endpoint(&[], &["prod/**"])).matches(&e));
        assert!(!Filter::from_config(&endpoint(&[], &["ops/**"])).matches(&e));
        // No repository at all: only unfiltered endpoints.
        let orphan = berth_registry::Corrupt {
            repositories: vec![],
            ..c
        };
        let e = Event::scrub_corrupt(&orphan);
        assert!(!Filter::from_config(&endpoint(&[], &["**"])).matches(&e));
        assert!(Filter::from_config(&endpoint(&["scrub"], &[])).matches(&e));
        assert_eq!(e.subject.as_deref(), Some(orphan.digest.as_str()));
    }

    #[rstest]
    #[case(0, "1970-01-01T00:00:00.000Z")]
    #[case(951_782_400, "2000-02-29T00:00:00.000Z")]
    #[case(1_709_210_096, "2024-02-29T12:34:56.000Z")]
    #[case(4_107_542_399, "2100-02-28T23:59:59.000Z")]
    #[case(4_107_542_400, "2100-03-01T00:00:00.000Z")]
    #[case(253_402_300_799, "9999-12-31T23:59:59.000Z")]
    fn rfc3339_formats_utc(#[case] secs: u64, #[case] want: &str) {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), want);
    }

    #[test]
    fn rfc3339_keeps_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn civil_from_days_round_trips_every_day_of_four_centuries() {
        // Walk day by day from 1970 for 400 years, checking against a counter.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for z in 0..146_097 {
            assert_eq!(civil_from_days(z), (y, m, d), "day {z}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[rstest]
    #[case("120", Some(120))]
    #[case(" 5 ", Some(5))]
    #[case("Wed, 21 Oct 2015 07:28:00 GMT", None)]
    #[case("-1", None)]
    fn retry_after_seconds(#[case] v: &str, #[case] want: Option<u64>) {
        assert_eq!(parse_retry_after(v), want.map(Duration::from_secs));
    }

    #[test]
    fn envelope_is_a_cloudevent() {
        let e = Event::manifest_deleted("a/b", &digest(), DeleteReason::Api);
        let env = Envelope::new("berth://x", e, UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_slice(&env.body).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], &*env.id);
        assert_eq!(v["source"], "berth://x");
        assert_eq!(v["type"], MANIFEST_DELETED);
        assert_eq!(v["subject"], format!("a/b@{}", digest()));
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["reason"], "api");
    }

    #[test]
    fn inconsistency_subject_names_tag_or_digest() {
        let mut i = berth_storage::Inconsistency {
            repository: "r".into(),
            from: "v1".into(),
            missing: digest().to_string(),
            problem: "tag points at a missing manifest".into(),
        };
        assert_eq!(
            Event::scrub_inconsistency(&i).subject.as_deref(),
            Some("r:v1")
        );
        i.from = digest().to_string();
        assert_eq!(
            Event::scrub_inconsistency(&i).subject.as_deref(),
            Some(format!("r@{}", digest()).as_str())
        );
    }
}
