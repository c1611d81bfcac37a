//! CloudEvents webhooks (issue 7, item 4): pushes, tag changes and deletes made
//! through the API arrive at test receivers (axum on 127.0.0.1:0) in order, are
//! retried after 500s with the same id, honour the endpoint filters and headers,
//! never block requests when a queue is full, and are counted when given up.

// Test helpers panic on anything unexpected; that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_oci::Digest;
use berth_registry::{Limits, Registry};
use berth_server::config::Config;
use berth_server::events::{Events, Timing};
use berth_server::telemetry::Telemetry;
use serde_json::{Value, json};
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

// ---- the webhook receiver ---------------------------------------------------------

/// What the receiver answers to its `n`th request (0-based).
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// This status.
    Status(u16),
    /// 503 with `Retry-After: <seconds>`.
    RetryAfter(u64),
    /// Never answer.
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    headers: HeaderMap,
    body: Value,
    /// What it answered.
    reply: u16,
}

impl Hit {
    fn id(&self) -> &str {
        self.body["id"].as_str().unwrap()
    }
    fn ty(&self) -> &str {
        self.body["type"].as_str().unwrap()
    }
    fn subject(&self) -> &str {
        self.body["subject"].as_str().unwrap()
    }
}

#[derive(Clone)]
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    /// Start a receiver answering by `plan`.
    async fn start(plan: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let plan = Arc::new(plan);
        let h = hits.clone();
        let app = Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (hits, plan) = (h.clone(), plan.clone());
                async move {
                    let n = hits.lock().unwrap().len();
                    let reply = plan(n);
                    let code = match reply {
                        Reply::Status(s) => s,
                        Reply::RetryAfter(_) => 503,
                        Reply::Hang => 0,
                    };
                    hits.lock().unwrap().push(Hit {
                        at: Instant::now(),
                        headers,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        reply: code,
                    });
                    match reply {
                        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
                        Reply::RetryAfter(secs) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", secs.to_string())],
                        )
                            .into_response(),
                        Reply::Hang => {
                            std::future::pending::<()>().await;
                            StatusCode::OK.into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Requests answered 2xx, in arrival order.
    fn delivered(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| (200..300).contains(&h.reply))
            .collect()
    }

    /// Wait until `n` events were delivered (2xx), at most 30 s.
    async fn wait_delivered(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let d = self.delivered();
            if d.len() >= n {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events delivered: {:#?}",
                d.len(),
                self.hits()
                    .iter()
                    .map(|h| h.body.clone())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until the receiver got `n` requests, at most 30 s.
    async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h = self.hits();
            if h.len() >= n {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests",
                h.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---- the registry -----------------------------------------------------------------

struct App {
    router: Router,
    telemetry: Arc<Telemetry>,
    _dir: tempfile::TempDir,
}

async fn app(config_toml: &str) -> App {
    let config = Config::parse(config_toml, "test", &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path(), Limits::default()).await.unwrap();
    let access = Arc::new(berth_server::Access::from_config(&config).unwrap());
    let telemetry = Telemetry::from_config(&config);
    App {
        router: berth_server::router_with(Arc::new(registry), access, telemetry.clone()),
        telemetry,
        _dir: dir,
    }
}

impl App {
    async fn send(&self, method: Method, uri: &str, ct: Option<&str>, body: Vec<u8>) -> Response {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        self.router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap()
    }

    async fn blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                None,
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        d
    }

    /// Push an image's config and layer and return its manifest bytes and digest.
    async fn image(&self, repo: &str, seed: &str) -> (Vec<u8>, Digest, Digest) {
        let config = format!("{{\"seed\":\"{seed}\"}}");
        let layer = format!("layer {seed}");
        let c = self.blob(repo, config.as_bytes()).await;
        let l = self.blob(repo, layer.as_bytes()).await;
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": c.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": l.to_string(), "size": layer.len()}],
        }))
        .unwrap();
        let d = Digest::sha256_of(&m);
        (m, d, l)
    }

    async fn put(&self, repo: &str, reference: &str, m: &[u8]) {
        let r = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                Some(OCI_MANIFEST),
                m.to_vec(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    async fn delete(&self, path: &str) {
        let r = self.send(Method::DELETE, path, None, vec![]).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "DELETE {path}");
    }

    fn metric(&self, name: &str, endpoint: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, self.telemetry.registry()).unwrap();
        metric(&text, name, endpoint)
    }
}

/// The value of `name{endpoint="…"}` in Prometheus text.
fn metric(text: &str, name: &str, endpoint: &str) -> f64 {
    let prefix = format!("{name}{{endpoint=\"{endpoint}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Whether `t` looks like `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_rfc3339_utc(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

// ---- tests ------------------------------------------------------------------------

/// The acceptance test of the issue: events arrive at a test webhook receiver in
/// order, with retries after it returns 500 — same id on every attempt, backoff
/// between them. Also checks the CloudEvents envelope, the configured header, and
/// a second endpoint's repository and type filters.
#[tokio::test]
async fn events_arrive_in_order_with_retries_after_500() {
    let all = Receiver::start(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    let prod_tags = Receiver::start(|_| Reply::Status(204)).await;
    let app = app(&format!(
        r#"
        [[events.endpoints]]
        name = "all"
        url = "{}"
        backoff = "1s"
        max_backoff = "2s"
        headers = {{ "X-Hook-Token" = "s3cret" }}

        [[events.endpoints]]
        name = "prod-tags"
        url = "{}"
        types = ["tag"]
        repositories = ["prod/**"]
        "#,
        all.url, prod_tags.url
    ))
    .await;

    let (m1, d1, layer) = app.image("prod/app", "one").await;
    let (m2, d2, _) = app.image("prod/app", "two").await;
    let (m3, d3, _) = app.image("dev/app", "three").await;
    app.put("prod/app", "v1", &m1).await; // pushed + tag v1 created
    app.put("prod/app", "v1", &m2).await; // pushed + tag v1 moved
    app.put("prod/app", "v1", &m2).await; // pushed only: v1 already names m2
    app.put("dev/app", "latest", &m3).await; // pushed + tag created (not prod)
    app.delete("/v2/prod/app/manifests/v1").await;
    app.delete(&format!("/v2/prod/app/manifests/{d1}")).await;
    app.delete(&format!("/v2/prod/app/blobs/{layer}")).await;

    let got = all.wait_delivered(10).await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|h| (h.ty().to_owned(), h.subject().to_owned()))
        .collect();
    let want: Vec<(String, String)> = [
        ("dev.berth.manifest.pushed", format!("prod/app@{d1}")),
        ("dev.berth.tag.updated", "prod/app:v1".to_owned()),
        ("dev.berth.manifest.pushed", format!("prod/app@{d2}")),
        ("dev.berth.tag.updated", "prod/app:v1".to_owned()),
        ("dev.berth.manifest.pushed", format!("prod/app@{d2}")),
        ("dev.berth.manifest.pushed", format!("dev/app@{d3}")),
        ("dev.berth.tag.updated", "dev/app:latest".to_owned()),
        ("dev.berth.tag.deleted", "prod/app:v1".to_owned()),
        ("dev.berth.manifest.deleted", format!("prod/app@{d1}")),
        ("dev.berth.blob.deleted", format!("prod/app@{layer}")),
    ]
    .into_iter()
    .map(|(t, s)| (t.to_owned(), s))
    .collect();
    assert_eq!(seen, want);

    // The first event was refused twice and retried with the same id and bytes,
    // after the backoff (1 s, then 2 s); every later event went once.
    let hits = all.hits();
    let first = got[0].id();
    let attempts: Vec<&Hit> = hits.iter().filter(|h| h.id() == first).collect();
    assert_eq!(
        attempts.iter().map(|h| h.reply).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    assert!(attempts.iter().all(|h| h.body == attempts[0].body));
    assert!(attempts[1].at - attempts[0].at >= Duration::from_millis(950));
    assert!(attempts[2].at - attempts[1].at >= Duration::from_millis(1950));
    assert_eq!(hits.len(), 12, "each later event is sent once");
    let mut ids: Vec<&str> = got.iter().map(Hit::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10, "ids are unique per event");

    // The CloudEvents envelope (structured mode, JSON), and the data.
    for h in &got {
        let b = &h.body;
        assert_eq!(b["specversion"], "1.0");
        assert_eq!(b["source"], "berth://127.0.0.1:5000");
        assert_eq!(b["datacontenttype"], "application/json");
        assert!(is_rfc3339_utc(b["time"].as_str().unwrap()), "{}", b["time"]);
        assert_eq!(uuid::Uuid::parse_str(h.id()).unwrap().get_version_num(), 4);
        assert_eq!(
            h.headers["content-type"],
            "application/cloudevents+json; charset=utf-8"
        );
        assert_eq!(h.headers["x-hook-token"], "s3cret");
    }
    assert_eq!(
        got[0].body["data"],
        json!({"repository": "prod/app", "digest": d1.to_string(), "mediaType": OCI_MANIFEST,
               "size": m1.len(), "tags": ["v1"]})
    );
    assert_eq!(
        got[1].body["data"],
        json!({"repository": "prod/app", "tag": "v1", "digest": d1.to_string(), "previous": null})
    );
    assert_eq!(got[3].body["data"]["previous"], d1.to_string());
    assert_eq!(
        got[7].body["data"],
        json!({"repository": "prod/app", "tag": "v1", "digest": d2.to_string(), "reason": "api"})
    );
    assert_eq!(got[8].body["data"]["reason"], "api");
    assert_eq!(got[9].body["data"]["digest"], layer.to_string());

    // The filtered endpoint got the prod tag changes only, without the header.
    let filtered = prod_tags.wait_delivered(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let filtered_all = prod_tags.hits();
    assert_eq!(filtered_all.len(), 2, "{filtered_all:#?}");
    assert!(filtered.iter().all(|h| h.ty() == "dev.berth.tag.updated"));
    assert_eq!(filtered[0].body["data"]["previous"], Value::Null);
    assert_eq!(filtered[1].body["data"]["previous"], d1.to_string());
    assert_eq!(
        filtered[0].id(),
        got[1].id(),
        "one event, one id everywhere"
    );
    assert!(!filtered[0].headers.contains_key("x-hook-token"));

    assert_eq!(app.metric("berth_events_sent_total", "all"), 10.0);
    assert_eq!(app.metric("berth_events_retries_total", "all"), 2.0);
    assert_eq!(app.metric("berth_events_failed_total", "all"), 0.0);
    assert_eq!(app.metric("berth_events_dropped_total", "all"), 0.0);
    assert_eq!(app.metric("berth_events_queued", "all"), 0.0);
    assert_eq!(app.metric("berth_events_sent_total", "prod-tags"), 2.0);
}

/// A receiver that never answers fills the queue (1 event): further events are
/// dropped and counted, and the pushes that emit them return at once.
#[tokio::test]
async fn full_queue_drops_events_without_blocking_requests() {
    let stuck = Receiver::start(|_| Reply::Hang).await;
    let app = app(&format!(
        r#"
        [events]
        queue = 1
        [[events.endpoints]]
        name = "stuck"
        url = "{}"
        timeout = "60s"
        "#,
        stuck.url
    ))
    .await;
    assert_eq!(app.metric("berth_events_dropped_total", "stuck"), 0.0);
    let (m, _, _) = app.image("a", "x").await;
    app.put("a", "t0", &m).await;
    stuck.wait_hits(1).await; // the first event is in flight, and stays there
    let started = Instant::now();
    for i in 1..=5 {
        app.put("a", &format!("t{i}"), &m).await;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "5 pushes took {took:?}");
    // 2 events per push; 1 in flight, 1 queued, the other 10 dropped.
    assert_eq!(app.metric("berth_events_dropped_total", "stuck"), 10.0);
    assert_eq!(app.metric("berth_events_queued", "stuck"), 1.0);
    assert_eq!(app.metric("berth_events_sent_total", "stuck"), 0.0);
    assert_eq!(stuck.hits().len(), 1);
}

/// An event refused `max_attempts` times is given up and counted, and the next
/// event is delivered after it.
#[tokio::test]
async fn event_given_up_after_max_attempts_then_next_delivered() {
    let hook = Receiver::start(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    let app = app(&format!(
        r#"
        [[events.endpoints]]
        name = "flaky"
        url = "{}"
        max_attempts = 2
        backoff = "1s"
        "#,
        hook.url
    ))
    .await;
    let (m, d, _) = app.image("a", "x").await;
    app.put("a", "v1", &m).await;
    let got = hook.wait_delivered(1).await;
    let hits = hook.hits();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].ty(), "dev.berth.manifest.pushed");
    assert_eq!(hits[0].id(), hits[1].id());
    assert_eq!((hits[0].reply, hits[1].reply), (500, 500));
    assert_eq!(got[0].ty(), "dev.berth.tag.updated");
    assert_eq!(got[0].body["data"]["digest"], d.to_string());
    assert_eq!(app.metric("berth_events_failed_total", "flaky"), 1.0);
    assert_eq!(app.metric("berth_events_retries_total", "flaky"), 1.0);
    assert_eq!(app.metric("berth_events_sent_total", "flaky"), 1.0);
}

/// `Retry-After` on a 503 replaces the backoff, capped by `max_backoff`.
#[tokio::test]
async fn retry_after_is_honoured_up_to_max_backoff() {
    for (retry_after, max_backoff, at_least, below) in [
        // 1 s asked, backoff only 10 ms: wait the second.
        (1, 5_000, 950, 3_000),
        // 100 s asked, max_backoff 300 ms: wait 300 ms.
        (100, 300, 290, 3_000),
    ] {
        let hook = Receiver::start(move |n| {
            if n == 0 {
                Reply::RetryAfter(retry_after)
            } else {
                Reply::Status(200)
            }
        })
        .await;
        let config = Config::parse(
            &format!(
                "[[events.endpoints]]\nname = \"h\"\nurl = \"{}\"\n",
                hook.url
            ),
            "test",
            &[],
        )
        .unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let events =
            Events::start_with(&config.events, "berth://test", &mut registry, |_| Timing {
                backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(max_backoff),
                timeout: Duration::from_secs(5),
            });
        events.emit(berth_server::events::Event::blob_deleted(
            "a",
            &Digest::sha256_of(b"x"),
            berth_server::events::DeleteReason::Api,
        ));
        let hits = hook.wait_hits(2).await;
        let gap = hits[1].at - hits[0].at;
        assert!(
            gap >= Duration::from_millis(at_least) && gap < Duration::from_millis(below),
            "Retry-After {retry_after}, max_backoff {max_backoff} ms: waited {gap:?}"
        );
    }
}

/// Scrub findings become `scrub.*` events: a finding matches a repository filter
/// if any of its repositories does; one with no repository reaches only
/// unfiltered endpoints. Retention deletes become `tag.deleted` (reason
/// `retention`), and a dry run sends nothing.
#[tokio::test]
async fn scrub_findings_and_retention_become_events() {
    let all = Receiver::start(|_| Reply::Status(200)).await;
    let prod = Receiver::start(|_| Reply::Status(200)).await;
    let config = Config::parse(
        &format!(
            r#"
            [[events.endpoints]]
            name = "all"
            url = "{}"
            [[events.endpoints]]
            name = "prod"
            url = "{}"
            repositories = ["prod/**"]
            "#,
            all.url, prod.url
        ),
        "test",
        &[],
    )
    .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let events = Events::start(&config.events, "berth://test", &mut registry);
    let digest = Digest::sha256_of(b"x").to_string();
    let report = berth_registry::ScrubReport {
        corrupt: vec![
            berth_registry::Corrupt {
                kind: "blob",
                digest: digest.clone(),
                repositories: vec!["dev/a".into(), "prod/b".into()],
                reason: "content hashes to sha256:00".into(),
                moved_to: Some("quarantine/x".into()),
            },
            berth_registry::Corrupt {
                kind: "blob",
                digest: digest.clone(),
                repositories: vec![],
                reason: "file missing".into(),
                moved_to: None,
            },
        ],
        inconsistencies: vec![berth_storage::Inconsistency {
            repository: "dev/c".into(),
            from: "v1".into(),
            missing: digest.clone(),
            problem: "tag points at a missing manifest".into(),
        }],
        ..Default::default()
    };
    events.scrub_findings(&report);
    let decision = berth_registry::TagDecision {
        repository: "prod/b".into(),
        tag: "old".into(),
        digest: digest.clone(),
        rule: "r".into(),
        reason: "older than 30d".into(),
    };
    events.retention_deleted(&berth_registry::RetentionReport {
        dry_run: true,
        deleted: vec![decision.clone()],
        kept: vec![],
    });
    events.retention_deleted(&berth_registry::RetentionReport {
        dry_run: false,
        deleted: vec![decision],
        kept: vec![],
    });

    let got = all.wait_delivered(4).await;
    let types: Vec<&str> = got.iter().map(Hit::ty).collect();
    assert_eq!(
        types,
        [
            "dev.berth.scrub.corrupt",
            "dev.berth.scrub.corrupt",
            "dev.berth.scrub.inconsistency",
            "dev.berth.tag.deleted"
        ]
    );
    assert_eq!(
        got[0].body["data"],
        json!({"kind": "blob", "digest": digest, "repositories": ["dev/a", "prod/b"],
               "reason": "content hashes to sha256:00", "movedTo": "quarantine/x"})
    );
    assert_eq!(got[1].subject(), digest);
    assert_eq!(got[2].subject(), "dev/c:v1");
    assert_eq!(got[3].subject(), "prod/b:old");
    assert_eq!(got[3].body["data"]["reason"], "retention");
    assert_eq!(got[3].body["data"]["digest"], digest);

    let got = prod.wait_delivered(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(prod.hits().len(), 2);
    assert_eq!(got[0].id(), all.delivered()[0].id());
    assert_eq!(got[1].ty(), "dev.berth.tag.deleted");
}

/// Without endpoints nothing is started and emitting is a no-op.
#[tokio::test]
async fn disabled_events_do_nothing() {
    let events = Events::disabled();
    assert!(!events.is_enabled());
    events.emit(berth_server::events::Event::blob_deleted(
        "a",
        &Digest::sha256_of(b"x"),
        berth_server::events::DeleteReason::Api,
    ));
    let mut registry = prometheus_client::registry::Registry::default();
    let none = Events::start(&Config::default().events, "berth://x", &mut registry);
    assert!(!none.is_enabled());
    assert_eq!(format!("{none:?}"), "Events { endpoints: [] }");
}
