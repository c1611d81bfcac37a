//! The server's Prometheus metrics (names and meanings: `docs/metrics.md`).
//!
//! Every label value comes from a fixed set ([`Operation`], status classes, pull
//! kinds and results, error codes), and every series is created at start-up, so
//! requests never allocate label sets and dashboards see zeros, not gaps. The
//! handles are plain clones of the registered metrics, indexed by enum.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::Method;
use berth_oci::ErrorCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;

use crate::endpoint::Endpoint;

/// The OCI operation a request performs, from its parsed endpoint and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `/v2/`.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `GET …/tags/list`.
    ListTags,
    /// `GET …/manifests/<ref>`.
    PullManifest,
    /// `HEAD …/manifests/<ref>`.
    HeadManifest,
    /// `PUT …/manifests/<ref>`.
    PutManifest,
    /// `DELETE …/manifests/<ref>`.
    DeleteManifest,
    /// `GET …/blobs/<digest>`.
    PullBlob,
    /// `HEAD …/blobs/<digest>`.
    HeadBlob,
    /// `DELETE …/blobs/<digest>`.
    DeleteBlob,
    /// `POST …/blobs/uploads/`.
    StartUpload,
    /// `PATCH …/blobs/uploads/<id>`.
    PushBlobChunk,
    /// `PUT …/blobs/uploads/<id>`.
    CompleteUpload,
    /// `GET …/blobs/uploads/<id>`.
    UploadStatus,
    /// `DELETE …/blobs/uploads/<id>`.
    CancelUpload,
    /// `GET …/referrers/<digest>`.
    Referrers,
    /// `/token`.
    Token,
    /// `/healthz`, `/readyz`, `/metrics`.
    Health,
    /// Anything else.
    Other,
}

impl Operation {
    /// Every operation, in label order.
    pub const ALL: [Operation; 19] = [
        Operation::Base,
        Operation::Catalog,
        Operation::ListTags,
        Operation::PullManifest,
        Operation::HeadManifest,
        Operation::PutManifest,
        Operation::DeleteManifest,
        Operation::PullBlob,
        Operation::HeadBlob,
        Operation::DeleteBlob,
        Operation::StartUpload,
        Operation::PushBlobChunk,
        Operation::CompleteUpload,
        Operation::UploadStatus,
        Operation::CancelUpload,
        Operation::Referrers,
        Operation::Token,
        Operation::Health,
        Operation::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Base => "base",
            Operation::Catalog => "catalog",
            Operation::ListTags => "list_tags",
            Operation::PullManifest => "pull_manifest",
            Operation::HeadManifest => "head_manifest",
            Operation::PutManifest => "put_manifest",
            Operation::DeleteManifest => "delete_manifest",
            Operation::PullBlob => "pull_blob",
            Operation::HeadBlob => "head_blob",
            Operation::DeleteBlob => "delete_blob",
            Operation::StartUpload => "start_upload",
            Operation::PushBlobChunk => "push_blob_chunk",
            Operation::CompleteUpload => "complete_upload",
            Operation::UploadStatus => "upload_status",
            Operation::CancelUpload => "cancel_upload",
            Operation::Referrers => "referrers",
            Operation::Token => "token",
            Operation::Health => "health",
            Operation::Other => "other",
        }
    }

    fn index(self) -> usize {
        Operation::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }

    /// The operation of an endpoint called with `method` (`Other` for methods
    /// the endpoint does not support).
    pub fn of(endpoint: &Endpoint, method: &Method) -> Operation {
        use Operation as O;
        match (endpoint, method) {
            (Endpoint::Base, _) => O::Base,
            (Endpoint::Catalog, &Method::GET) => O::Catalog,
            (Endpoint::Tags(_), &Method::GET) => O::ListTags,
            (Endpoint::Manifest(..), &Method::GET) => O::PullManifest,
            (Endpoint::Manifest(..), &Method::HEAD) => O::HeadManifest,
            (Endpoint::Manifest(..), &Method::PUT) => O::PutManifest,
            (Endpoint::Manifest(..), &Method::DELETE) => O::DeleteManifest,
            (Endpoint::Blob(..), &Method::GET) => O::PullBlob,
            (Endpoint::Blob(..), &Method::HEAD) => O::HeadBlob,
            (Endpoint::Blob(..), &Method::DELETE) => O::DeleteBlob,
            (Endpoint::UploadStart(_), &Method::POST) => O::StartUpload,
            (Endpoint::Upload(..), &Method::PATCH) => O::PushBlobChunk,
            (Endpoint::Upload(..), &Method::PUT) => O::CompleteUpload,
            (Endpoint::Upload(..), &Method::GET) => O::UploadStatus,
            (Endpoint::Upload(..), &Method::DELETE) => O::CancelUpload,
            (Endpoint::Referrers(..), &Method::GET) => O::Referrers,
            _ => O::Other,
        }
    }

    /// The operation of a request path that is not a `/v2/` endpoint.
    pub fn of_other_path(path: &str) -> Operation {
        match path {
            "/token" => Operation::Token,
            "/healthz" | "/readyz" | "/metrics" => Operation::Health,
            _ => Operation::Other,
        }
    }

    /// The pull kind, for `GET` of a manifest or blob.
    pub fn pull_kind(self) -> Option<PullKind> {
        match self {
            Operation::PullManifest => Some(PullKind::Manifest),
            Operation::PullBlob => Some(PullKind::Blob),
            _ => None,
        }
    }
}

/// What a pull fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullKind {
    /// A manifest.
    Manifest,
    /// A blob.
    Blob,
}

impl PullKind {
    const ALL: [PullKind; 2] = [PullKind::Manifest, PullKind::Blob];

    fn as_str(self) -> &'static str {
        match self {
            PullKind::Manifest => "manifest",
            PullKind::Blob => "blob",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a pull ended (SLI M1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullResult {
    /// 2xx or 3xx, body sent to its end.
    Success,
    /// 4xx: the client asked for something absent or was not allowed.
    ClientError,
    /// 5xx.
    ServerError,
    /// The body did not reach its end.
    Aborted,
}

impl PullResult {
    const ALL: [PullResult; 4] = [
        PullResult::Success,
        PullResult::ClientError,
        PullResult::ServerError,
        PullResult::Aborted,
    ];

    fn as_str(self) -> &'static str {
        match self {
            PullResult::Success => "success",
            PullResult::ClientError => "client_error",
            PullResult::ServerError => "server_error",
            PullResult::Aborted => "aborted",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// A failure the SLI counts against the registry.
    pub fn is_failure(self) -> bool {
        matches!(self, PullResult::ServerError | PullResult::Aborted)
    }
}

/// OCI error codes a refused manifest push is counted under (SLI M9).
/// (`DENIED` is not among them: access control and immutable tags refuse
/// callers, not manifests.)
const VALIDATION_REASONS: [(ErrorCode, &str); 6] = [
    (ErrorCode::ManifestInvalid, "manifest_invalid"),
    (ErrorCode::ManifestBlobUnknown, "manifest_blob_unknown"),
    (ErrorCode::DigestInvalid, "digest_invalid"),
    (ErrorCode::SizeInvalid, "size_invalid"),
    (ErrorCode::Unsupported, "unsupported"),
    (ErrorCode::NameInvalid, "name_invalid"),
];

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Seconds: 0.5 ms to 2 min, for request and pull latency.
const LATENCY_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// Bytes: 64 KiB to 16 GiB in powers of 4, for image sizes.
fn size_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(65536.0, 4.0, 10)
}

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type Labels3 = [(&'static str, &'static str); 3];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Per-operation handles.
#[derive(Debug, Clone)]
struct OperationMetrics {
    /// By status class (index: first digit − 1).
    requests: [Counter; 5],
    duration: Histogram,
    bytes_in: Counter,
    bytes_out: Counter,
}

/// Storage gauges, set at scrape time.
#[derive(Debug, Default)]
struct StorageGauges {
    bytes: Gauge,
    blobs: Gauge,
    repositories: Gauge,
    manifests: Gauge,
    tags: Gauge,
    uploads: Gauge,
    images_tagged: Gauge,
    images_signed: Gauge,
    images_with_sbom: Gauge,
}

/// Lifecycle counters.
#[derive(Debug)]
struct LifecycleMetrics {
    gc_runs: Family<Labels, Counter>,
    gc_deleted: Family<Labels, Counter>,
    gc_freed_bytes: Counter,
    gc_last_run: Gauge,
    retention_runs: Family<Labels, Counter>,
    retention_deleted: Counter,
    scrub_runs: Family<Labels, Counter>,
    scrub_checked_bytes: Counter,
    scrub_corrupt: Family<Labels, Counter>,
    scrub_inconsistencies: Counter,
}

/// The server's metrics, registered once; recording never allocates.
#[derive(Debug)]
pub struct Metrics {
    operations: Vec<OperationMetrics>,
    in_flight: Gauge,
    /// `[kind][attempt: 0 first, 1 retry][result]`.
    pulls: [[[Counter; 4]; 2]; 2],
    pull_first_byte: [Histogram; 2],
    pull_duration: [Histogram; 2],
    pushed_image_bytes: Histogram,
    validation_failures: Vec<(ErrorCode, Counter)>,
    storage: StorageGauges,
    lifecycle: LifecycleMetrics,
    failures: RecentFailures,
}

fn counter_family<L>(r: &mut PromRegistry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone + Eq + Hash + std::fmt::Debug + Send + Sync + 'static,
    L: prometheus_client::encoding::EncodeLabelSet,
{
    let f = Family::<L, Counter>::default();
    r.register(name, help, f.clone());
    f
}

fn gauge(r: &mut PromRegistry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    r.register(name, help, g.clone());
    g
}

fn counter(r: &mut PromRegistry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    r.register(name, help, c.clone());
    c
}

impl Metrics {
    /// Create every metric and register it in `r`. `retry_window`: how long a
    /// failed pull makes the same client's next request for it a retry.
    pub fn register(r: &mut PromRegistry, retry_window: Duration) -> Metrics {
        let requests: Family<Labels2, Counter> = counter_family(
            r,
            "berth_http_requests",
            "Requests answered, by OCI operation and status class.",
        );
        let duration: HistogramFamily<Labels> = Family::new_with_constructor(latency_histogram);
        r.register(
            "berth_http_request_duration_seconds",
            "Time from the request head to the last response byte, by operation.",
            duration.clone(),
        );
        let bytes_in: Family<Labels, Counter> = counter_family(
            r,
            "berth_http_request_bytes",
            "Request body bytes received, by operation.",
        );
        let bytes_out: Family<Labels, Counter> = counter_family(
            r,
            "berth_http_response_bytes",
            "Response body bytes sent, by operation.",
        );
        let operations = Operation::ALL
            .iter()
            .map(|op| {
                let o = op.as_str();
                OperationMetrics {
                    requests: STATUS_CLASSES.map(|class| {
                        requests
                            .get_or_create(&[("operation", o), ("status_class", class)])
                            .clone()
                    }),
                    duration: duration.get_or_create(&[("operation", o)]).clone(),
                    bytes_in: bytes_in.get_or_create(&[("operation", o)]).clone(),
                    bytes_out: bytes_out.get_or_create(&[("operation", o)]).clone(),
                }
            })
            .collect();
        let in_flight = gauge(
            r,
            "berth_http_requests_in_flight",
            "Requests whose response has not finished.",
        );

        let pulls_family: Family<Labels3, Counter> = counter_family(
            r,
            "berth_pulls",
            "Manifest and blob GETs by result; a retry follows a failed pull of the same thing by the same client (SLI M1).",
        );
        let pulls = PullKind::ALL.map(|k| {
            ["first", "retry"].map(|attempt| {
                PullResult::ALL.map(|res| {
                    pulls_family
                        .get_or_create(&[
                            ("kind", k.as_str()),
                            ("attempt", attempt),
                            ("result", res.as_str()),
                        ])
                        .clone()
                })
            })
        });
        let first_byte: HistogramFamily<Labels> = Family::new_with_constructor(latency_histogram);
        r.register(
            "berth_pull_first_byte_seconds",
            "Successful pulls: request head to response head (SLI M2).",
            first_byte.clone(),
        );
        let pull_total: HistogramFamily<Labels> = Family::new_with_constructor(latency_histogram);
        r.register(
            "berth_pull_duration_seconds",
            "Successful pulls: request head to the last body byte (SLI M2).",
            pull_total.clone(),
        );
        let pull_first_byte =
            PullKind::ALL.map(|k| first_byte.get_or_create(&[("kind", k.as_str())]).clone());
        let pull_duration =
            PullKind::ALL.map(|k| pull_total.get_or_create(&[("kind", k.as_str())]).clone());

        let pushed_image_bytes = Histogram::new(size_buckets());
        r.register(
            "berth_pushed_image_bytes",
            "Config plus layer bytes of each image manifest pushed (SLI M8).",
            pushed_image_bytes.clone(),
        );
        let validation: Family<Labels, Counter> = counter_family(
            r,
            "berth_manifest_validation_failures",
            "Manifest pushes refused, by OCI error code (SLI M9).",
        );
        let validation_failures = VALIDATION_REASONS
            .iter()
            .map(|(code, reason)| {
                (
                    *code,
                    validation.get_or_create(&[("reason", *reason)]).clone(),
                )
            })
            .collect();

        let storage = StorageGauges {
            bytes: gauge(r, "berth_storage_bytes", "Bytes of unique blobs stored."),
            blobs: gauge(r, "berth_storage_blobs", "Unique blobs stored."),
            repositories: gauge(r, "berth_repositories", "Repositories."),
            manifests: gauge(r, "berth_manifests", "Manifests (per repository)."),
            tags: gauge(r, "berth_tags", "Tags."),
            uploads: gauge(r, "berth_uploads_in_progress", "Open upload sessions."),
            images_tagged: gauge(
                r,
                "berth_images_tagged",
                "Tagged manifests, cosign attachment tags excluded (SLI M5/M6 denominator).",
            ),
            images_signed: gauge(
                r,
                "berth_images_signed",
                "Tagged manifests with a signature (SLI M5).",
            ),
            images_with_sbom: gauge(
                r,
                "berth_images_with_sbom",
                "Tagged manifests with an SBOM (SLI M6).",
            ),
        };

        let lifecycle = LifecycleMetrics {
            gc_runs: counter_family(r, "berth_gc_runs", "Garbage collection passes, by result."),
            gc_deleted: counter_family(
                r,
                "berth_gc_deleted",
                "Objects deleted by garbage collection, by object kind.",
            ),
            gc_freed_bytes: counter(
                r,
                "berth_gc_freed_bytes",
                "Bytes freed by garbage collection.",
            ),
            gc_last_run: gauge(
                r,
                "berth_gc_last_run_timestamp_seconds",
                "Unix time the last successful garbage collection pass ended.",
            ),
            retention_runs: counter_family(
                r,
                "berth_retention_runs",
                "Retention passes, by result.",
            ),
            retention_deleted: counter(
                r,
                "berth_retention_deleted_tags",
                "Tags deleted by retention rules.",
            ),
            scrub_runs: counter_family(r, "berth_scrub_runs", "Scrub passes, by result."),
            scrub_checked_bytes: counter(
                r,
                "berth_scrub_checked_bytes",
                "Bytes re-hashed by scrub.",
            ),
            scrub_corrupt: counter_family(
                r,
                "berth_scrub_corrupt_objects",
                "Objects scrub found corrupt or missing (quarantined), by kind.",
            ),
            scrub_inconsistencies: counter(
                r,
                "berth_scrub_inconsistencies",
                "Dangling tags or references scrub found.",
            ),
        };
        for res in ["success", "failure"] {
            let _ = lifecycle.gc_runs.get_or_create(&[("result", res)]);
            let _ = lifecycle.retention_runs.get_or_create(&[("result", res)]);
            let _ = lifecycle.scrub_runs.get_or_create(&[("result", res)]);
        }
        for object in ["manifest", "link", "blob", "orphan_file", "upload"] {
            let _ = lifecycle.gc_deleted.get_or_create(&[("object", object)]);
        }
        for object in ["blob", "manifest"] {
            let _ = lifecycle.scrub_corrupt.get_or_create(&[("object", object)]);
        }

        Metrics {
            operations,
            in_flight,
            pulls,
            pull_first_byte,
            pull_duration,
            pushed_image_bytes,
            validation_failures,
            storage,
            lifecycle,
            failures: RecentFailures::new(retry_window),
        }
    }

    /// A request started (until [`Metrics::request_done`]).
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request finished: its status, timings and body sizes.
    pub fn request_done(
        &self,
        op: Operation,
        status: u16,
        total: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.in_flight.dec();
        let m = &self.operations[op.index()];
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        m.requests[class].inc();
        m.duration.observe(total.as_secs_f64());
        m.bytes_in.inc_by(bytes_in);
        m.bytes_out.inc_by(bytes_out);
    }

    /// Whether a pull of `key` (client and thing asked for, hashed) follows a
    /// failed pull of the same within the retry window.
    pub fn is_retry(&self, key: u64) -> bool {
        self.failures.contains(key)
    }

    /// A pull ended.
    pub fn pull_done(
        &self,
        kind: PullKind,
        key: u64,
        retry: bool,
        result: PullResult,
        first_byte: Duration,
        total: Duration,
    ) {
        self.pulls[kind.index()][usize::from(retry)][result.index()].inc();
        if result == PullResult::Success {
            self.pull_first_byte[kind.index()].observe(first_byte.as_secs_f64());
            self.pull_duration[kind.index()].observe(total.as_secs_f64());
            if retry {
                self.failures.forget(key);
            }
        } else if result.is_failure() {
            self.failures.note(key);
        }
    }

    /// An image manifest was pushed; `bytes` is its config plus layers.
    pub fn image_pushed(&self, bytes: u64) {
        self.pushed_image_bytes.observe(bytes as f64);
    }

    /// A manifest push was refused with `code`.
    pub fn manifest_refused(&self, code: ErrorCode) {
        if let Some((_, c)) = self.validation_failures.iter().find(|(k, _)| *k == code) {
            c.inc();
        }
    }

    /// Set the storage gauges from fresh counts.
    pub fn set_storage(&self, c: &berth_storage::StoreCounts) {
        let s = &self.storage;
        let v = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        s.bytes.set(v(c.blob_bytes));
        s.blobs.set(v(c.blobs));
        s.repositories.set(v(c.repositories));
        s.manifests.set(v(c.manifests));
        s.tags.set(v(c.tags));
        s.uploads.set(v(c.uploads));
        s.images_tagged.set(v(c.images_tagged));
        s.images_signed.set(v(c.images_signed));
        s.images_with_sbom.set(v(c.images_with_sbom));
    }

    /// A garbage-collection pass ended (dry runs are not counted).
    pub fn gc_done(&self, report: Result<&berth_registry::GcReport, ()>) {
        let l = &self.lifecycle;
        match report {
            Ok(r) if r.dry_run => {}
            Ok(r) => {
                l.gc_runs.get_or_create(&[("result", "success")]).inc();
                for (object, n) in [
                    ("manifest", r.manifests.len()),
                    ("link", r.links.len()),
                    ("blob", r.blobs.len()),
                    ("orphan_file", r.orphan_files.len()),
                    ("upload", r.uploads.len()),
                ] {
                    l.gc_deleted
                        .get_or_create(&[("object", object)])
                        .inc_by(n as u64);
                }
                l.gc_freed_bytes.inc_by(r.bytes_freed);
                l.gc_last_run.set(berth_storage::now_secs());
            }
            Err(()) => {
                l.gc_runs.get_or_create(&[("result", "failure")]).inc();
            }
        }
    }

    /// A retention pass ended (dry runs are not counted).
    pub fn retention_done(&self, report: Result<&berth_registry::RetentionReport, ()>) {
        let l = &self.lifecycle;
        match report {
            Ok(r) if r.dry_run => {}
            Ok(r) => {
                l.retention_runs
                    .get_or_create(&[("result", "success")])
                    .inc();
                l.retention_deleted.inc_by(r.deleted.len() as u64);
            }
            Err(()) => {
                l.retention_runs
                    .get_or_create(&[("result", "failure")])
                    .inc();
            }
        }
    }

    /// A scrub pass ended.
    pub fn scrub_done(&self, report: Result<&berth_registry::ScrubReport, ()>) {
        let l = &self.lifecycle;
        match report {
            Ok(r) => {
                l.scrub_runs.get_or_create(&[("result", "success")]).inc();
                l.scrub_checked_bytes.inc_by(r.bytes_checked);
                for c in &r.corrupt {
                    let object = if c.kind == "manifest" {
                        "manifest"
                    } else {
                        "blob"
                    };
                    l.scrub_corrupt.get_or_create(&[("object", object)]).inc();
                }
                l.scrub_inconsistencies
                    .inc_by(r.inconsistencies.len() as u64);
            }
            Err(()) => {
                l.scrub_runs.get_or_create(&[("result", "failure")]).inc();
            }
        }
    }
}

/// The key of a pull for retry detection: client address and path, hashed
/// (nothing of either is kept).
pub fn pull_key(addr: Option<std::net::IpAddr>, path: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    addr.hash(&mut h);
    path.hash(&mut h);
    h.finish()
}

/// Pulls that failed lately, by key, for telling retries from first attempts.
/// Bounded: at most [`RecentFailures::CAPACITY`] keys; expired ones are dropped
/// when it fills, and if all are fresh the oldest half goes.
#[derive(Debug)]
struct RecentFailures {
    window: Duration,
    failed: Mutex<HashMap<u64, Instant>>,
}

impl RecentFailures {
    const CAPACITY: usize = 65_536;

    fn new(window: Duration) -> Self {
        RecentFailures {
            window,
            failed: Mutex::new(HashMap::new()),
        }
    }

    fn contains(&self, key: u64) -> bool {
        if self.window.is_zero() {
            return false;
        }
        let Ok(map) = self.failed.lock() else {
            return false;
        };
        map.get(&key).is_some_and(|t| t.elapsed() <= self.window)
    }

    fn note(&self, key: u64) {
        if self.window.is_zero() {
            return;
        }
        let Ok(mut map) = self.failed.lock() else {
            return;
        };
        if map.len() >= Self::CAPACITY {
            let window = self.window;
            map.retain(|_, t| t.elapsed() <= window);
            if map.len() >= Self::CAPACITY {
                let mut times: Vec<Instant> = map.values().copied().collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                map.retain(|_, t| *t > cut);
            }
        }
        map.insert(key, Instant::now());
    }

    fn forget(&self, key: u64) {
        if let Ok(mut map) = self.failed.lock() {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(r: &PromRegistry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn every_series_exists_from_the_start() {
        let mut r = PromRegistry::default();
        let _m = Metrics::register(&mut r, Duration::from_secs(300));
        let text = encoded(&r);
        assert!(text.contains(
            "berth_http_requests_total{operation=\"pull_manifest\",status_class=\"5xx\"} 0"
        ));
        assert!(
            text.contains(
                "berth_pulls_total{kind=\"blob\",attempt=\"retry\",result=\"aborted\"} 0"
            )
        );
        assert!(text.contains(
            "berth_manifest_validation_failures_total{reason=\"manifest_blob_unknown\"} 0"
        ));
        assert!(text.contains("berth_gc_deleted_total{object=\"orphan_file\"} 0"));
        assert!(
            text.contains("berth_pull_duration_seconds_bucket{le=\"0.005\",kind=\"manifest\"} 0")
        );
    }

    #[test]
    fn requests_are_counted_by_operation_and_class() {
        let mut r = PromRegistry::default();
        let m = Metrics::register(&mut r, Duration::from_secs(300));
        m.request_started();
        m.request_done(Operation::PullBlob, 503, Duration::from_millis(3), 0, 10);
        m.request_started();
        m.request_done(Operation::PullBlob, 200, Duration::from_millis(3), 0, 90);
        let text = encoded(&r);
        assert!(
            text.contains(
                "berth_http_requests_total{operation=\"pull_blob\",status_class=\"5xx\"} 1"
            )
        );
        assert!(
            text.contains(
                "berth_http_requests_total{operation=\"pull_blob\",status_class=\"2xx\"} 1"
            )
        );
        assert!(text.contains("berth_http_response_bytes_total{operation=\"pull_blob\"} 100"));
        assert!(text.contains("berth_http_requests_in_flight 0"));
    }

    #[test]
    fn a_pull_after_a_failure_is_a_retry_until_it_succeeds() {
        let mut r = PromRegistry::default();
        let m = Metrics::register(&mut r, Duration::from_secs(300));
        let key = pull_key(Some([127, 0, 0, 1].into()), "/v2/a/blobs/x");
        let other = pull_key(Some([127, 0, 0, 2].into()), "/v2/a/blobs/x");
        let z = Duration::ZERO;
        assert!(!m.is_retry(key));
        m.pull_done(PullKind::Blob, key, false, PullResult::ServerError, z, z);
        assert!(m.is_retry(key));
        assert!(
            !m.is_retry(other),
            "another client's pull is a first attempt"
        );
        m.pull_done(PullKind::Blob, key, true, PullResult::Aborted, z, z);
        assert!(m.is_retry(key));
        m.pull_done(PullKind::Blob, key, true, PullResult::Success, z, z);
        assert!(
            !m.is_retry(key),
            "after a success the next pull is a first attempt"
        );
        // A client error is not a failure of the registry: no retry follows it.
        m.pull_done(PullKind::Blob, key, false, PullResult::ClientError, z, z);
        assert!(!m.is_retry(key));
        let text = encoded(&r);
        assert!(text.contains(
            "berth_pulls_total{kind=\"blob\",attempt=\"first\",result=\"server_error\"} 1"
        ));
        assert!(
            text.contains(
                "berth_pulls_total{kind=\"blob\",attempt=\"retry\",result=\"aborted\"} 1"
            )
        );
        assert!(
            text.contains(
                "berth_pulls_total{kind=\"blob\",attempt=\"retry\",result=\"success\"} 1"
            )
        );
    }

    #[test]
    fn retry_detection_is_off_with_a_zero_window_and_stays_bounded() {
        let f = RecentFailures::new(Duration::ZERO);
        f.note(1);
        assert!(!f.contains(1));
        let f = RecentFailures::new(Duration::from_secs(60));
        for k in 0..(RecentFailures::CAPACITY as u64 + 10) {
            f.note(k);
        }
        let len = f.failed.lock().unwrap().len();
        assert!(len <= RecentFailures::CAPACITY, "{len}");
        assert!(
            f.contains(RecentFailures::CAPACITY as u64 + 9),
            "the newest is kept"
        );
    }

    #[test]
    fn operations_come_from_the_parsed_endpoint() {
        let cases = [
            ("GET", "/v2/a/b/manifests/latest", "pull_manifest"),
            ("HEAD", "/v2/a/manifests/latest", "head_manifest"),
            ("PUT", "/v2/a/manifests/latest", "put_manifest"),
            (
                "PATCH",
                "/v2/a/blobs/uploads/7a0e5c1c-0b1e-4c7e-9d5a-0e3a1c2b3d4e",
                "push_blob_chunk",
            ),
            ("POST", "/v2/a/blobs/uploads/", "start_upload"),
            ("POST", "/v2/a/manifests/latest", "other"),
            ("GET", "/v2/a/tags/list", "list_tags"),
        ];
        for (method, path, want) in cases {
            let method: Method = method.parse().unwrap();
            let op = match Endpoint::parse(&method, path) {
                Some(Ok(e)) => Operation::of(&e, &method),
                _ => Operation::of_other_path(path),
            };
            assert_eq!(op.as_str(), want, "{method} {path}");
        }
        assert_eq!(Operation::of_other_path("/token"), Operation::Token);
        assert_eq!(Operation::of_other_path("/nope"), Operation::Other);
    }
}
