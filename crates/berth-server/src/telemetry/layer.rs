//! The request layer: classifies each request by OCI operation, gives it a
//! request id, counts body bytes both ways, and when the response body ends (or
//! is dropped unfinished) records the request's metrics and writes its access
//! log line. Timing runs to the last body byte, so a blob pull's duration is the
//! transfer's, not just the handler's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use berth_oci::ErrorCode;
use http_body::{Frame, SizeHint};

use super::Telemetry;
use super::metrics::{Operation, PullKind, PullResult, pull_key};
use crate::endpoint::Endpoint;

/// The request id header, read from the client when it sends a sane one and
/// always returned.
pub const REQUEST_ID: &str = "x-request-id";

/// The authenticated user of a request, put in the response's extensions by
/// the dispatcher for the access log.
#[derive(Debug, Clone)]
pub struct CallerName(pub String);

/// A client-supplied request id is kept only if short and made of safe
/// characters (it ends up in logs).
fn client_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    .then(|| v.to_owned())
}

fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Middleware: see the module documentation.
pub async fn track(State(t): State<Arc<Telemetry>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path();
    let (op, repository) = match Endpoint::parse(&method, path) {
        Some(Ok(e)) => (Operation::of(&e, &method), repository_of(&e)),
        Some(Err(_)) => (Operation::Other, None),
        None => (Operation::of_other_path(path), None),
    };
    let addr = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let pull = op.pull_kind().map(|kind| {
        let key = pull_key(addr, path);
        (kind, key, t.metrics.is_retry(key))
    });
    let request_id = client_request_id(&req).unwrap_or_else(new_request_id);
    let log = t.access_log.then(|| {
        Box::new(AccessLine {
            request_id: request_id.clone(),
            method: method.clone(),
            repository,
            addr,
            user: None,
        })
    });
    let bytes_in = Arc::new(AtomicU64::new(0));
    let counted = bytes_in.clone();
    let req = req.map(|b| {
        Body::new(CountingBody {
            inner: b,
            count: counted,
        })
    });
    t.metrics.request_started();
    let in_flight = InFlight(Some(t.clone()), op);
    let mut resp = next.run(req).await;
    let head = start.elapsed();
    let status = resp.status();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    if op == Operation::PutManifest {
        if status.is_success() {
            if let Some(bytes) = resp
                .extensions()
                .get::<berth_registry::ManifestPut>()
                .and_then(|p| p.image_bytes)
            {
                t.metrics.image_pushed(bytes);
            }
        } else if let Some(code) = resp.extensions().get::<ErrorCode>() {
            t.metrics.manifest_refused(*code);
        }
    }
    let log = log.map(|mut l| {
        l.user = resp.extensions().get::<CallerName>().map(|c| c.0.clone());
        l
    });
    let expected_len = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let no_body = method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let finish = Finish {
        in_flight,
        status,
        start,
        head,
        bytes_in,
        bytes_out: 0,
        expected_len,
        no_body,
        pull,
        log,
    };
    resp.map(|inner| {
        Body::new(MeteredBody {
            inner,
            finish: Some(finish),
        })
    })
}

fn repository_of(e: &Endpoint) -> Option<String> {
    match e {
        Endpoint::Base | Endpoint::Catalog => None,
        Endpoint::Tags(n)
        | Endpoint::Manifest(n, _)
        | Endpoint::Blob(n, _)
        | Endpoint::UploadStart(n)
        | Endpoint::Upload(n, _)
        | Endpoint::Referrers(n, _) => Some(n.to_string()),
    }
}

/// Counts a request's in-flight time; if the request is dropped before it has a
/// response (the connection closed mid-handler), it is still counted, as 499.
struct InFlight(Option<Arc<Telemetry>>, Operation);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.metrics.request_done(self.1, 499, Duration::ZERO, 0, 0);
        }
    }
}

/// What is needed to record a request once its response body ends.
struct Finish {
    in_flight: InFlight,
    status: StatusCode,
    start: Instant,
    head: Duration,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    expected_len: Option<u64>,
    no_body: bool,
    pull: Option<(PullKind, u64, bool)>,
    log: Option<Box<AccessLine>>,
}

/// The parts of an access log line known before the response ends.
struct AccessLine {
    request_id: String,
    method: Method,
    repository: Option<String>,
    addr: Option<std::net::IpAddr>,
    user: Option<String>,
}

impl Finish {
    fn done(mut self, complete: bool) {
        let Some(t) = self.in_flight.0.take() else {
            return;
        };
        let op = self.in_flight.1;
        let total = self.start.elapsed();
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let status = self.status.as_u16();
        t.metrics
            .request_done(op, status, total, bytes_in, self.bytes_out);
        if let Some((kind, key, retry)) = self.pull {
            let result = match status {
                500.. => PullResult::ServerError,
                400..=499 => PullResult::ClientError,
                _ if !complete => PullResult::Aborted,
                _ => PullResult::Success,
            };
            t.metrics
                .pull_done(kind, key, retry, result, self.head, total);
        }
        if let Some(l) = self.log {
            tracing::info!(
                target: "berth::access",
                request_id = %l.request_id,
                method = %l.method,
                operation = op.as_str(),
                repository = l.repository.as_deref(),
                status,
                bytes_in,
                bytes_out = self.bytes_out,
                duration_ms = total.as_secs_f64() * 1000.0,
                complete,
                client = l.addr.map(|a| a.to_string()),
                user = l.user.as_deref(),
                "request"
            );
        }
    }
}

/// A request body that counts the bytes read from it.
struct CountingBody {
    inner: Body,
    count: Arc<AtomicU64>,
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that records the request when it ends or is dropped.
struct MeteredBody {
    inner: Body,
    finish: Option<Finish>,
}

impl HttpBody for MeteredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(f)) = (frame.data_ref(), self.finish.as_mut()) {
                    f.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = self.finish.take() {
                    f.done(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = self.finish.take() {
                    f.done(false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            // hyper may stop polling once it has sent everything the length
            // promised, or never poll a body it must not send (HEAD, 204, 304).
            let complete = f.no_body
                || self.inner.is_end_stream()
                || f.expected_len.is_some_and(|n| n == f.bytes_out);
            f.done(complete);
        }
    }
}
