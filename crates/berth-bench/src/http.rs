//! The HTTP layer: the target registry ([`Target`]), one keep-alive HTTP/1.1
//! connection per worker ([`Conn`], hyper's low-level client over a `TcpStream`
//! with `TCP_NODELAY`, reconnecting after an error), a request body made of
//! shared `Bytes` slices ([`SliceBody`]), and helpers that read response bodies.
//!
//! Plain HTTP only: a benchmark measures the registry, and TLS would add the same
//! cost to every registry while taking CPU from the server on a small machine.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tokio::net::TcpStream;
use url::Url;

use crate::socket::{Watch, WatchedStream};

/// Most bytes of a response body kept when it is read whole (error bodies,
/// tag lists); more is an error.
pub const MAX_SMALL_BODY: usize = 16 << 20;

/// Why a request got no usable response.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The TCP connection could not be made.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// HTTP failed (connection closed, malformed response, …).
    #[error("{0}")]
    Hyper(#[from] hyper::Error),
    /// The request could not be built (a bad path or header value).
    #[error("building the request: {0}")]
    Build(#[from] hyper::http::Error),
    /// A request path is not a valid URI.
    #[error("bad request path: {0}")]
    Uri(#[from] hyper::http::uri::InvalidUri),
    /// A response body was larger than [`MAX_SMALL_BODY`].
    #[error("response body larger than {MAX_SMALL_BODY} bytes")]
    TooLarge,
}

impl HttpError {
    /// Whether the server refused the TCP connection (nothing listens yet).
    pub fn is_connection_refused(&self) -> bool {
        matches!(self, HttpError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

/// Why a `--url` / `--user` pair is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    /// Not a URL.
    #[error("URL {url:?}: {reason}")]
    Url {
        /// As given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `--user` is not `USER:PASS`.
    #[error("--user must be USER:PASS")]
    User,
}

/// The registry under test: where to connect and what to send with every request.
#[derive(Debug, Clone)]
pub struct Target {
    base: Url,
    addr: String,
    host: HeaderValue,
    auth: Option<HeaderValue>,
}

impl Target {
    /// Parse `http://HOST[:PORT]` and optional `USER:PASS` for Basic auth.
    pub fn new(url: &str, user: Option<&str>) -> Result<Target, TargetError> {
        let bad = |reason: &str| TargetError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        match base.scheme() {
            "http" => {}
            "https" => return Err(bad("https is not supported: berth bench speaks plain HTTP")),
            other => return Err(bad(&format!("scheme {other:?} is not http"))),
        }
        if !(base.path().is_empty() || base.path() == "/") || base.query().is_some() {
            return Err(bad(
                "give the registry's base URL only (the API is at /v2/)",
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad("put credentials in --user, not in the URL"));
        }
        let host = base.host_str().ok_or_else(|| bad("no host"))?;
        let port = base.port_or_known_default().unwrap_or(80);
        let addr = format!("{host}:{port}");
        let host_header = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let host = HeaderValue::from_str(&host_header).map_err(|_| bad("bad host"))?;
        let auth = match user {
            None => None,
            Some(u) => {
                if !u.contains(':') {
                    return Err(TargetError::User);
                }
                let token = base64::engine::general_purpose::STANDARD.encode(u);
                let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| TargetError::User)?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Target {
            base,
            addr,
            host,
            auth,
        })
    }

    /// `host:port` to connect to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    /// A request to `uri` (origin form, e.g. `/v2/`) with `Host` and credentials.
    pub fn request(&self, method: Method, uri: Uri) -> hyper::http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, self.host.clone());
        if let Some(auth) = &self.auth {
            b = b.header(AUTHORIZATION, auth.clone());
        }
        b
    }

    /// A request with a body of `len` bytes (`Content-Length` always set, also to 0).
    pub fn request_with_body(
        &self,
        method: Method,
        path: &str,
        body: SliceBody,
        content_type: &str,
    ) -> Result<Request<SliceBody>, HttpError> {
        let len = body.len();
        Ok(self
            .request(method, Uri::try_from(path)?)
            .header(CONTENT_LENGTH, len)
            .header(CONTENT_TYPE, content_type)
            .body(body)?)
    }

    /// A request without a body.
    pub fn bodyless(&self, method: Method, path: &str) -> Result<Request<SliceBody>, HttpError> {
        Ok(self
            .request(method, Uri::try_from(path)?)
            .body(SliceBody::empty())?)
    }

    /// The path and query (origin form) a `Location` header points at, which may be
    /// relative (to `request_path`) or absolute. An absolute URL on another host is
    /// still sent to this target: the bench keeps one connection per worker.
    pub fn resolve_location(&self, request_path: &str, location: &str) -> Option<String> {
        let base = self.base.join(request_path).ok()?;
        let url = base.join(location).ok()?;
        Some(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }
}

/// A request body made of `Bytes` slices (shared, never copied), sent one frame
/// per slice. Also the body of body-less requests ([`SliceBody::empty`]).
#[derive(Debug, Default)]
pub struct SliceBody {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl SliceBody {
    /// No body.
    pub fn empty() -> SliceBody {
        SliceBody::default()
    }

    /// The concatenation of `parts`.
    pub fn from_parts(parts: impl IntoIterator<Item = Bytes>) -> SliceBody {
        let parts: VecDeque<Bytes> = parts.into_iter().filter(|b| !b.is_empty()).collect();
        let remaining = parts.iter().map(|b| b.len() as u64).sum();
        SliceBody { parts, remaining }
    }

    /// One buffer.
    pub fn full(bytes: Bytes) -> SliceBody {
        SliceBody::from_parts([bytes])
    }

    /// Bytes still to send.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl Body for SliceBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.parts.pop_front() {
            Some(b) => {
                this.remaining -= b.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// One worker's HTTP/1.1 connection: kept alive between requests, made again
/// (lazily, on the next request) after any error.
#[derive(Debug)]
pub struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<SliceBody>>,
    /// The open connection's byte count and low-water mark.
    watch: Option<Arc<Watch>>,
    /// `watch.read()` when the last request was sent.
    sent_at: u64,
    connects: u64,
}

impl Conn {
    /// A connection to `target`, opened by the first request.
    pub fn new(target: Arc<Target>) -> Conn {
        Conn {
            target,
            sender: None,
            watch: None,
            sent_at: 0,
            connects: 0,
        }
    }

    /// The registry this connection talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How many TCP connections this `Conn` has opened.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    async fn connect(&mut self) -> Result<SendRequest<SliceBody>, HttpError> {
        let addr = self.target.addr();
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        tcp.set_nodelay(true).map_err(|source| HttpError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
        let (stream, watch) = WatchedStream::new(tcp);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        self.watch = Some(watch);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
        self.connects += 1;
        Ok(sender)
    }

    /// Whether a connection is open (none before the first request and after a
    /// failed one).
    pub fn is_connected(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Drop the connection (after an abandoned request); the next request opens
    /// a new one.
    pub fn reset(&mut self) {
        self.sender = None;
        self.watch = None;
    }

    /// Open the connection now unless it is open, so that the first measured
    /// request does not pay for it. A failure is left for that request to report.
    pub async fn warm(&mut self) {
        if self.is_connected() {
            return;
        }
        match self.connect().await {
            Ok(s) => self.sender = Some(s),
            Err(e) => tracing::debug!(error = %e, "could not connect ahead of time"),
        }
    }

    /// Send `req` and return the response head; the caller reads the body (fully,
    /// to keep the connection usable). A connection the server closed while idle is
    /// replaced before sending; after a failure the next request reconnects.
    pub async fn send(&mut self, req: Request<SliceBody>) -> Result<Response<Incoming>, HttpError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        if sender.ready().await.is_err() {
            sender = self.connect().await?;
            sender.ready().await?;
        }
        self.sent_at = self.watch.as_ref().map_or(0, |w| w.read());
        let resp = sender.send_request(req).await?;
        self.sender = Some(sender);
        Ok(resp)
    }

    /// The response to the last request has a body of `len` bytes (its
    /// `Content-Length`): read it with the socket's low-water mark raised (see
    /// [`crate::socket`]) until [`Conn::body_done`].
    pub fn expect_body(&self, len: u64) {
        if let Some(w) = &self.watch {
            w.expect_body(self.sent_at, len);
        }
    }

    /// The body announced with [`Conn::expect_body`] is read or abandoned.
    pub fn body_done(&self) {
        if let Some(w) = &self.watch {
            w.body_done();
        }
    }
}

/// Read a body to its end, counting its bytes and feeding them to `hasher`.
pub async fn drain(mut body: Incoming, mut hasher: Option<&mut Sha256>) -> Result<u64, HttpError> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&data);
            }
        }
    }
    Ok(n)
}

/// Read a small body whole (at most [`MAX_SMALL_BODY`] bytes).
pub async fn collect(mut body: Incoming) -> Result<Bytes, HttpError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len() + data.len() > MAX_SMALL_BODY {
                return Err(HttpError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// A header as text, if present and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `Content-Length` header as a number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

/// An unexpected status for people: `404 Not Found (MANIFEST_UNKNOWN: manifest
/// unknown)`, with the OCI error codes of the body, or a short excerpt of a body
/// that is not an error envelope.
pub fn describe_status(status: StatusCode, body: &[u8]) -> String {
    let mut s = status.to_string();
    if body.is_empty() {
        return s;
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if !env.errors.is_empty() => {
            let parts: Vec<String> = env
                .errors
                .iter()
                .map(|e| match (&e.code, &e.message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.clone(),
                    (None, Some(m)) => m.clone(),
                    (None, None) => "?".to_owned(),
                })
                .collect();
            s.push_str(&format!(" ({})", parts.join("; ")));
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let excerpt: String = one_line.chars().take(200).collect();
            if !excerpt.is_empty() {
                s.push_str(&format!(" ({excerpt})"));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn targets() {
        let t = Target::new("http://127.0.0.1:5000", None).unwrap();
        assert_eq!(t.addr(), "127.0.0.1:5000");
        assert_eq!(t.url(), "http://127.0.0.1:5000");
        let t = Target::new("http://localhost/", Some("a:b:c")).unwrap();
        assert_eq!(t.addr(), "localhost:80");
        assert_eq!(t.auth.as_ref().unwrap().to_str().unwrap(), "Basic YTpiOmM=");
        for (bad, why) in [
            ("https://x", "plain HTTP"),
            ("ftp://x", "not http"),
            ("http://x/v2/", "base URL only"),
            ("http://u:p@x", "--user"),
            ("127.0.0.1:5000", "URL"),
        ] {
            let e = Target::new(bad, None).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(
            Target::new("http://x", Some("nocolon")).unwrap_err(),
            TargetError::User
        );
    }

    #[test]
    fn locations() {
        let t = Target::new("http://127.0.0.1:5000", None).unwrap();
        let req = "/v2/a/b/blobs/uploads/";
        assert_eq!(
            t.resolve_location(req, "/v2/a/b/blobs/uploads/u1?_state=x")
                .unwrap(),
            "/v2/a/b/blobs/uploads/u1?_state=x"
        );
        assert_eq!(
            t.resolve_location(req, "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u2")
                .unwrap(),
            "/v2/a/b/blobs/uploads/u2"
        );
        assert_eq!(
            t.resolve_location(req, "u3").unwrap(),
            "/v2/a/b/blobs/uploads/u3"
        );
    }

    #[test]
    fn statuses() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(
            describe_status(StatusCode::NOT_FOUND, body),
            "404 Not Found (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert_eq!(
            describe_status(StatusCode::BAD_GATEWAY, b"<html>\n bad  gateway</html>"),
            "502 Bad Gateway (<html> bad gateway</html>)"
        );
        assert_eq!(describe_status(StatusCode::CONFLICT, b""), "409 Conflict");
    }

    #[test]
    fn slice_body_counts() {
        let b = SliceBody::from_parts([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"c"),
        ]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.size_hint().exact(), Some(3));
        assert!(SliceBody::empty().is_end_stream());
    }
}
