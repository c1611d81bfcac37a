//! Shared helpers for the black-box tests: run the real `berth` binary and talk
//! to it over HTTP the way a client following the distribution-spec would.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Media types used by the helpers.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A running `berth serve` process on an ephemeral port.
pub struct Server {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
}

impl Server {
    /// Spawn `berth serve --listen 127.0.0.1:0 --data-dir <data_dir>` and wait (at
    /// most 10 s) for its one ready line on stdout.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// [`Server::start`] with more arguments for `berth serve` (e.g. `--config`).
    pub fn start_with(data_dir: &Path, extra: &[&std::ffi::OsStr]) -> Server {
        Server::spawn(data_dir, extra, Stdio::inherit())
    }

    /// [`Server::start_with`], its standard error (logs) written to `log`.
    pub fn start_logged(data_dir: &Path, extra: &[&std::ffi::OsStr], log: &Path) -> Server {
        let file = std::fs::File::create(log).expect("create log file");
        Server::spawn(data_dir, extra, Stdio::from(file))
    }

    fn spawn(data_dir: &Path, extra: &[&std::ffi::OsStr], stderr: Stdio) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("BERTH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn berth");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Reads every stdout line for the life of the process (so the pipe never
        // fills); the first line announcing the listener is sent back.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && line.starts_with("berth listening on ") {
                    let _ = tx.send(line);
                    sent = true;
                } else {
                    eprintln!("[berth stdout] {line}");
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("berth did not announce its address within 10 s ({e}); exit: {status:?}");
            }
        };
        let port = parse_ready_line(&line, data_dir);
        Server {
            child: Some(child),
            port,
            data_dir: data_dir.to_owned(),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The data directory the server was started on.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL berth");
            let status = child.wait().expect("reap berth");
            assert!(
                !status.success(),
                "a SIGKILLed berth cannot exit successfully: {status:?}"
            );
        }
    }

    /// SIGTERM the process and assert it exits 0 within 15 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(ok.success(), "kill -TERM failed: {ok:?}");
        let status = wait_with_timeout(&mut child, Duration::from_secs(15));
        match status {
            Some(s) => assert!(s.success(), "berth exited with {s:?} after SIGTERM"),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berth did not exit within 15 s of SIGTERM");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("wait for berth") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parse `berth listening on http://127.0.0.1:PORT (data in DIR)`.
fn parse_ready_line(line: &str, data_dir: &Path) -> u16 {
    let rest = line
        .strip_prefix("berth listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    let (port, tail) = rest
        .split_once(' ')
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    assert_eq!(
        tail,
        format!("(data in {})", data_dir.display()),
        "ready line names another data dir: {line:?}"
    );
    port.parse()
        .unwrap_or_else(|e| panic!("bad port in {line:?}: {e}"))
}

/// An HTTP client for tests: no pooling surprises, generous timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("build reqwest client")
}

/// A client that opens a fresh connection for every request. berth does not set
/// TCP_NODELAY on accepted connections, so on a reused (keep-alive) connection a
/// GET of a blob smaller than one segment stalls ~40 ms (Nagle's algorithm against
/// the client's delayed ACK; see `small_blob_latency.rs`). Tests that GET
/// thousands of small blobs use this client so they stay fast despite that bug.
pub fn client_fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("build reqwest client")
}

// ---- digests -------------------------------------------------------------------

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    berth_oci::Digest::sha256_of(data).to_string()
}

/// Incremental `sha256:<hex>`.
pub struct Hasher(berth_oci::Digester);

impl Default for Hasher {
    fn default() -> Self {
        Hasher(berth_oci::Digester::new(berth_oci::Algorithm::Sha256))
    }
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> String {
        self.0.finish().to_string()
    }
}

/// The hex part of a `sha256:<hex>` digest.
pub fn hex_of(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

// ---- errors --------------------------------------------------------------------

/// Why a request to the registry did not succeed as expected.
#[derive(Debug)]
pub enum PushError {
    /// Connection refused/reset, body aborted, …
    Transport(reqwest::Error),
    /// The server answered, but not with the expected status.
    Status {
        what: String,
        status: StatusCode,
        body: String,
    },
    /// The server answered with the expected status but a malformed response.
    Protocol(String),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Transport(e) => write!(f, "transport error: {e}"),
            PushError::Status {
                what, status, body, ..
            } => write!(f, "{what}: unexpected status {status}: {body}"),
            PushError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl From<reqwest::Error> for PushError {
    fn from(e: reqwest::Error) -> Self {
        PushError::Transport(e)
    }
}

impl PushError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            PushError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

async fn expect_status(
    resp: reqwest::Response,
    want: StatusCode,
    what: &str,
) -> Result<reqwest::Response, PushError> {
    if resp.status() == want {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    Err(PushError::Status {
        what: what.to_owned(),
        status,
        body,
    })
}

fn header(resp: &reqwest::Response, name: &str) -> Result<String, PushError> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| PushError::Protocol(format!("response has no {name} header")))
}

/// Turn a `Location` (relative path or absolute URL) into an absolute URL.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// Append a query parameter to a URL that may already have a query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// Parse a `Range: 0-<last>` header into the number of bytes it claims were
/// received. `0-0` is ambiguous (nothing, or one byte); this returns 1 for it and
/// callers that care must handle the ambiguity.
pub fn range_len(range: &str) -> Result<u64, PushError> {
    let bad = || PushError::Protocol(format!("malformed Range header {range:?}"));
    let (a, b) = range.trim().split_once('-').ok_or_else(bad)?;
    if a != "0" {
        return Err(bad());
    }
    let end: u64 = b.parse().map_err(|_| bad())?;
    Ok(end + 1)
}

// ---- blobs ---------------------------------------------------------------------

/// Single-POST monolithic push (spec § Pushing a blob monolithically, Single POST,
/// end-4b): `POST /v2/<name>/blobs/uploads/?digest=<digest>` → 201.
pub async fn push_blob_monolithic(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    digest: &str,
    body: reqwest::Body,
    len: u64,
) -> Result<(), PushError> {
    let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}");
    let resp = client
        .post(url)
        .header("content-type", "application/octet-stream")
        .header("content-length", len)
        .body(body)
        .send()
        .await?;
    let resp = expect_status(resp, StatusCode::CREATED, "monolithic POST").await?;
    check_created(&resp, repo, digest)
}

fn check_created(resp: &reqwest::Response, repo: &str, digest: &str) -> Result<(), PushError> {
    let loc = header(resp, "location")?;
    if !loc.ends_with(&format!("/v2/{repo}/blobs/{digest}")) {
        return Err(PushError::Protocol(format!(
            "201 Location {loc:?} is not the blob URL"
        )));
    }
    Ok(())
}

/// Open an upload session (end-4a): `POST /v2/<name>/blobs/uploads/` → 202 +
/// Location. Returns the absolute upload URL.
pub async fn start_upload(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
) -> Result<String, PushError> {
    let resp = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await?;
    let resp = expect_status(resp, StatusCode::ACCEPTED, "POST upload").await?;
    Ok(absolute(base, &header(&resp, "location")?))
}

/// Send one chunk (end-5) starting at `start`: `PATCH <location>` with
/// `Content-Range: <start>-<end>` → 202. Returns the next upload URL and the
/// byte count the `Range` header reports.
pub async fn patch_chunk(
    client: &reqwest::Client,
    base: &str,
    location: &str,
    start: u64,
    body: reqwest::Body,
    len: u64,
) -> Result<(String, u64), PushError> {
    assert!(len > 0, "empty chunks have no valid Content-Range");
    let resp = client
        .patch(location)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{start}-{}", start + len - 1))
        .header("content-length", len)
        .body(body)
        .send()
        .await?;
    let resp = expect_status(resp, StatusCode::ACCEPTED, "PATCH chunk").await?;
    let next = absolute(base, &header(&resp, "location")?);
    let received = range_len(&header(&resp, "range")?)?;
    if received != start + len {
        return Err(PushError::Protocol(format!(
            "after chunk {start}+{len} the server reports {received} bytes"
        )));
    }
    Ok((next, received))
}

/// Upload status (end-13): `GET <location>` → 204 + Range. Returns the upload URL
/// and the `Range` header verbatim.
pub async fn upload_status(
    client: &reqwest::Client,
    base: &str,
    location: &str,
) -> Result<(String, String), PushError> {
    let resp = client.get(location).send().await?;
    let resp = expect_status(resp, StatusCode::NO_CONTENT, "GET upload status").await?;
    Ok((
        absolute(base, &header(&resp, "location")?),
        header(&resp, "range")?,
    ))
}

/// The optional body of a closing `PUT`: a last chunk (`start: Some`, sent with
/// `Content-Range`) or the whole blob of a POST-then-PUT monolithic push
/// (`start: None`, no `Content-Range`).
pub struct LastChunk {
    pub start: Option<u64>,
    pub body: reqwest::Body,
    pub len: u64,
}

/// Close a session (end-6): `PUT <location>?digest=<digest>`, with an optional
/// body → 201.
pub async fn finish_upload(
    client: &reqwest::Client,
    location: &str,
    repo: &str,
    digest: &str,
    last: Option<LastChunk>,
) -> Result<(), PushError> {
    let url = with_query(location, "digest", digest);
    let mut req = client.put(url);
    match last {
        Some(LastChunk { start, body, len }) if len > 0 => {
            req = req
                .header("content-type", "application/octet-stream")
                .header("content-length", len)
                .body(body);
            if let Some(start) = start {
                req = req.header("content-range", format!("{start}-{}", start + len - 1));
            }
        }
        _ => req = req.header("content-length", "0"),
    }
    let resp = req.send().await?;
    let resp = expect_status(resp, StatusCode::CREATED, "closing PUT").await?;
    check_created(&resp, repo, digest)
}

/// Chunked push of an in-memory blob (spec § Pushing a blob in chunks): POST, one
/// PATCH per `chunk` bytes, closing PUT without a body.
pub async fn push_blob_chunked(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &Bytes,
    chunk: usize,
) -> Result<String, PushError> {
    let digest = sha256(data);
    let mut location = start_upload(client, base, repo).await?;
    let mut off = 0usize;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let part = data.slice(off..end);
        let len = part.len() as u64;
        let (next, _) = patch_chunk(client, base, &location, off as u64, part.into(), len).await?;
        location = next;
        off = end;
    }
    finish_upload(client, &location, repo, &digest, None).await?;
    Ok(digest)
}

/// Monolithic push of an in-memory blob; returns its digest.
pub async fn push_bytes(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &Bytes,
) -> Result<String, PushError> {
    let digest = sha256(data);
    push_blob_monolithic(
        client,
        base,
        repo,
        &digest,
        data.clone().into(),
        data.len() as u64,
    )
    .await?;
    Ok(digest)
}

/// A request body streamed from `stream` (never held whole in memory).
pub fn stream_body<S>(stream: S) -> reqwest::Body
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    reqwest::Body::wrap_stream(stream)
}

/// `GET /v2/<name>/blobs/<digest>` (end-2). Returns status, headers and body.
pub async fn get_blob(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    digest: &str,
) -> Result<(StatusCode, HeaderMap, Bytes), reqwest::Error> {
    let resp = client
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?;
    Ok((status, headers, body))
}

/// `HEAD /v2/<name>/blobs/<digest>`: status and Content-Length.
pub async fn head_blob(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    digest: &str,
) -> Result<(StatusCode, Option<u64>), reqwest::Error> {
    let resp = client
        .head(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?;
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok((resp.status(), len))
}

/// GET a blob and assert it is exactly `expected` (which the caller knows hashes
/// to `digest`), with the right `Docker-Content-Digest` and `Content-Length`.
pub async fn assert_blob(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    digest: &str,
    expected: &[u8],
) {
    let (status, headers, body) = get_blob(client, base, repo, digest)
        .await
        .unwrap_or_else(|e| panic!("GET blob {digest} in {repo}: {e}"));
    assert_eq!(status, StatusCode::OK, "GET blob {digest} in {repo}");
    assert_eq!(
        header_value(&headers, "docker-content-digest").as_deref(),
        Some(digest),
        "Docker-Content-Digest of {digest} in {repo}"
    );
    assert_eq!(
        header_value(&headers, "content-length").as_deref(),
        Some(expected.len().to_string().as_str()),
        "Content-Length of {digest} in {repo}"
    );
    assert_eq!(
        body.len(),
        expected.len(),
        "size of blob {digest} in {repo}"
    );
    assert!(
        body[..] == expected[..],
        "content of blob {digest} in {repo} differs from what was pushed"
    );
}

/// A header's value as a string.
pub fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

// ---- manifests -----------------------------------------------------------------

/// A descriptor's essentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Desc {
    pub fn new(media_type: &str, digest: &str, size: u64) -> Desc {
        Desc {
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
            size,
        }
    }
}

fn desc_json(d: &Desc) -> serde_json::Value {
    serde_json::json!({ "mediaType": d.media_type, "digest": d.digest, "size": d.size })
}

/// A minimal valid OCI image manifest (image-spec `manifest.md`) for a config blob
/// and layer blobs; `annotation` makes otherwise-identical manifests distinct.
pub fn image_manifest(config: &Desc, layers: &[Desc], annotation: Option<&str>) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc_json(config),
        "layers": layers.iter().map(desc_json).collect::<Vec<_>>(),
    });
    if let Some(a) = annotation {
        m["annotations"] = serde_json::json!({ "org.example.test": a });
    }
    serde_json::to_vec(&m).expect("serialize manifest")
}

/// Every blob digest (config and layers) an image manifest references.
pub fn manifest_blobs(content: &[u8]) -> Vec<Desc> {
    let v: serde_json::Value = serde_json::from_slice(content).expect("manifest is JSON");
    let one = |d: &serde_json::Value| Desc {
        media_type: d["mediaType"].as_str().expect("mediaType").to_owned(),
        digest: d["digest"].as_str().expect("digest").to_owned(),
        size: d["size"].as_u64().expect("size"),
    };
    let mut out = vec![one(&v["config"])];
    out.extend(
        v["layers"]
            .as_array()
            .expect("layers is an array")
            .iter()
            .map(one),
    );
    out
}

/// `PUT /v2/<name>/manifests/<reference>` (end-7) → 201; returns the
/// `Docker-Content-Digest`, checked against the content's sha256.
pub async fn push_manifest(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    content: &[u8],
) -> Result<String, PushError> {
    let resp = client
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", OCI_MANIFEST)
        .body(content.to_vec())
        .send()
        .await?;
    let resp = expect_status(resp, StatusCode::CREATED, "PUT manifest").await?;
    let digest = header(&resp, "docker-content-digest")?;
    let want = sha256(content);
    if digest != want {
        return Err(PushError::Protocol(format!(
            "PUT manifest answered Docker-Content-Digest {digest}, content hashes to {want}"
        )));
    }
    header(&resp, "location")?;
    Ok(digest)
}

/// `GET /v2/<name>/manifests/<reference>` (end-3): status, Docker-Content-Digest
/// and body.
pub async fn get_manifest(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
) -> Result<(StatusCode, Option<String>, Bytes), reqwest::Error> {
    let resp = client
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await?;
    let status = resp.status();
    let digest = header_value(resp.headers(), "docker-content-digest");
    let body = resp.bytes().await?;
    Ok((status, digest, body))
}

/// `GET /v2/<name>/tags/list` (end-8a): every tag (404 → empty list).
pub async fn list_tags(client: &reqwest::Client, base: &str, repo: &str) -> Vec<String> {
    let resp = client
        .get(format!("{base}/v2/{repo}/tags/list"))
        .send()
        .await
        .expect("GET tags/list");
    if resp.status() == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(resp.status(), StatusCode::OK, "GET /v2/{repo}/tags/list");
    assert!(
        resp.headers().get("link").is_none(),
        "more tags than one page; the tests never push that many"
    );
    let body = resp.bytes().await.expect("read tags/list");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("tags/list is JSON");
    assert_eq!(v["name"], repo, "tags/list name");
    match &v["tags"] {
        serde_json::Value::Null => Vec::new(),
        t => t
            .as_array()
            .expect("tags is an array")
            .iter()
            .map(|t| t.as_str().expect("tag is a string").to_owned())
            .collect(),
    }
}

// ---- the data directory --------------------------------------------------------

/// Every committed blob file under `DIR/blobs/sha256` as (path, file name).
pub fn blob_files(data_dir: &Path) -> Vec<(PathBuf, String)> {
    let root = data_dir.join("blobs").join("sha256");
    let mut out = Vec::new();
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return out;
    };
    for p in prefixes {
        let p = p.expect("read blobs dir entry");
        let prefix = p.file_name().to_string_lossy().into_owned();
        assert!(
            p.file_type().expect("file type").is_dir(),
            "unexpected non-directory {:?} in blobs/sha256",
            p.path()
        );
        for f in std::fs::read_dir(p.path()).expect("read blobs prefix dir") {
            let f = f.expect("read blob entry");
            let name = f.file_name().to_string_lossy().into_owned();
            assert!(
                name.starts_with(&prefix),
                "blob file {name} sits under the wrong prefix directory {prefix}"
            );
            out.push((f.path(), name));
        }
    }
    out
}

/// Everything under `DIR/uploads` (files and directories), recursively.
pub fn upload_entries(data_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let e = e.expect("read uploads entry");
            out.push(e.path());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("uploads"), &mut out);
    out
}
