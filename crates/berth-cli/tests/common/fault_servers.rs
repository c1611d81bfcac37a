//! Misbehaving servers for the client fault tests (`client_faults.rs`): a registry
//! that lies, an HTTP/1.1 proxy that injects faults in front of a real
//! `berth serve`, and a Docker-style token server with an authorizing proxy.
//!
//! Everything speaks raw HTTP/1.1 over tokio TCP sockets, written by hand, so the
//! servers can lie about `Content-Length`, cut bodies short and drop connections
//! mid-request. Also here: a builder for OCI image layouts made of random bytes.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

// ---- content -------------------------------------------------------------------

/// `sha256:<hex>` of `data`, computed with the `sha2` crate.
pub fn digest_of(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hex part of a `sha256:<hex>` digest.
pub fn hex_part(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// `n` random bytes.
pub fn random_bytes(rng: &mut impl RngCore, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// A blob with its media type and digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_owned(),
            digest: digest_of(&bytes),
            bytes,
        }
    }
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    /// The descriptor JSON of this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size() })
    }
}

/// A single-platform image: config, layers, manifest.
#[derive(Debug, Clone)]
pub struct TestImage {
    pub os: String,
    pub arch: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Blob,
}

impl TestImage {
    /// Config and layers (not the manifest).
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut v = vec![&self.config];
        v.extend(self.layers.iter());
        v
    }
}

/// Build the config JSON of an image whose layers are `layers` (uncompressed tar
/// media type, so each diff_id is the layer digest). `label` makes configs unique.
pub fn config_json(os: &str, arch: &str, layers: &[Blob], label: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": os,
        "config": { "Labels": { "org.example.fault-test": label } },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
        },
    }))
    .expect("serialize config")
}

/// An image manifest referencing `config` and `layers` (descriptors as given, so a
/// caller may put a lying descriptor in).
pub fn manifest_json(config: &serde_json::Value, layers: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .expect("serialize manifest")
}

/// A linux image for `arch` with random layers of the given sizes.
pub fn build_image(
    rng: &mut impl RngCore,
    arch: &str,
    layer_sizes: &[usize],
    label: &str,
) -> TestImage {
    let layers: Vec<Blob> = layer_sizes
        .iter()
        .map(|&n| Blob::new(MT_LAYER, random_bytes(rng, n)))
        .collect();
    let config = Blob::new(MT_CONFIG, config_json("linux", arch, &layers, label));
    let manifest = Blob::new(
        MT_MANIFEST,
        manifest_json(
            &config.descriptor(),
            &layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        ),
    );
    TestImage {
        os: "linux".to_owned(),
        arch: arch.to_owned(),
        config,
        layers,
        manifest,
    }
}

/// A multi-platform image: an OCI image index over one image per architecture.
#[derive(Debug, Clone)]
pub struct TestIndex {
    pub index: Blob,
    pub images: Vec<TestImage>,
}

impl TestIndex {
    /// Every blob: the images' configs, layers and manifests (not the index).
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut v = Vec::new();
        for i in &self.images {
            v.extend(i.blobs());
            v.push(&i.manifest);
        }
        v
    }
    pub fn image(&self, arch: &str) -> &TestImage {
        self.images
            .iter()
            .find(|i| i.arch == arch)
            .expect("image of that arch")
    }
}

pub fn build_index(
    rng: &mut impl RngCore,
    archs: &[&str],
    layer_sizes: &[usize],
    label: &str,
) -> TestIndex {
    let images: Vec<TestImage> = archs
        .iter()
        .map(|a| build_image(rng, a, layer_sizes, &format!("{label}-{a}")))
        .collect();
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            let mut d = i.manifest.descriptor();
            d["platform"] = json!({ "architecture": i.arch, "os": i.os });
            d
        })
        .collect();
    let index = Blob::new(
        MT_INDEX,
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": manifests,
        }))
        .expect("serialize index"),
    );
    TestIndex { index, images }
}

/// Write an OCI image layout (image-spec `image-layout.md`): `oci-layout`, every
/// blob in `blobs` and each top-level descriptor, and an `index.json` with one entry
/// per `(top, tag)`.
pub fn write_layout(dir: &Path, blobs: &[&Blob], entries: &[(&Blob, Option<&str>)]) {
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir).expect("create blobs dir");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    for b in blobs.iter().copied().chain(entries.iter().map(|(b, _)| *b)) {
        std::fs::write(blob_dir.join(hex_part(&b.digest)), &b.bytes).expect("write blob");
    }
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(b, tag)| {
            let mut d = b.descriptor();
            if let Some(t) = tag {
                d["annotations"] = json!({ REF_NAME: t });
            }
            d
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec_pretty(&index).expect("serialize index.json"),
    )
    .expect("write index.json");
}

/// Write a layout holding one image under `tag`.
pub fn write_image_layout(dir: &Path, image: &TestImage, tag: &str) {
    write_layout(dir, &image.blobs(), &[(&image.manifest, Some(tag))]);
}

/// What a layout looks like on disk, to check that a failed pull changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSnapshot {
    pub index_json: Vec<u8>,
    pub oci_layout: Vec<u8>,
    /// Every file and directory under `blobs/`, relative, sorted.
    pub blob_entries: Vec<String>,
    /// Every file and directory in the layout, relative, sorted.
    pub all_entries: Vec<String>,
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let e = e.expect("read dir entry");
        let p = e.path();
        out.push(
            p.strip_prefix(root)
                .expect("under root")
                .display()
                .to_string(),
        );
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(root, &p, out);
        }
    }
}

pub fn snapshot(dir: &Path) -> LayoutSnapshot {
    let mut blob_entries = Vec::new();
    walk(dir, &dir.join("blobs"), &mut blob_entries);
    blob_entries.sort();
    let mut all_entries = Vec::new();
    walk(dir, dir, &mut all_entries);
    all_entries.sort();
    LayoutSnapshot {
        index_json: std::fs::read(dir.join("index.json")).unwrap_or_default(),
        oci_layout: std::fs::read(dir.join("oci-layout")).unwrap_or_default(),
        blob_entries,
        all_entries,
    }
}

/// The `index.json` of a layout, parsed.
pub fn read_index_json(dir: &Path) -> serde_json::Value {
    let bytes = std::fs::read(dir.join("index.json"))
        .unwrap_or_else(|e| panic!("read {}/index.json: {e}", dir.display()));
    serde_json::from_slice(&bytes).expect("index.json is JSON")
}

/// Path of a blob inside a layout.
pub fn layout_blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs").join("sha256").join(hex_part(digest))
}

// ---- raw HTTP/1.1 ----------------------------------------------------------------

/// A request or response head, with the exact bytes it was read as.
#[derive(Debug, Clone)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or("")
    }
    pub fn target(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or("")
    }
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map(|(p, _)| p).unwrap_or(t)
    }
    pub fn query(&self) -> &str {
        self.target().split_once('?').map(|(_, q)| q).unwrap_or("")
    }
    /// Status code of a response head.
    pub fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false)
    }
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .map(|v| v.to_ascii_lowercase().contains("close"))
            .unwrap_or(false)
    }
}

/// Read a message head; `None` on a clean EOF before any byte.
pub async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).await?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside a message head",
            ));
        }
        let blank = line == b"\r\n" || line == b"\n";
        if raw.is_empty() && blank {
            continue;
        }
        raw.extend_from_slice(&line);
        if blank {
            break;
        }
        if raw.len() > 256 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message head too large",
            ));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let start = lines.next().unwrap_or("").trim().to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head {
        start,
        headers,
        raw,
    }))
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

pub fn request_framing(h: &Head) -> Framing {
    if h.is_chunked() {
        Framing::Chunked
    } else {
        match h.content_length() {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    }
}

pub fn response_framing(h: &Head, request_method: &str) -> Framing {
    let s = h.status();
    if request_method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&s)
        || s == 204
        || s == 304
    {
        Framing::Empty
    } else if h.is_chunked() {
        Framing::Chunked
    } else {
        match h.content_length() {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    }
}

/// Copy `n` bytes (or until EOF if `n` is None) from `r` to `w`, counting them in
/// `count`. Returns false if `limit` was reached first.
async fn copy_counted<R, W>(
    r: &mut R,
    w: &mut W,
    n: Option<u64>,
    count: &mut u64,
    limit: Option<u64>,
) -> io::Result<bool>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut left = n;
    loop {
        if left == Some(0) {
            return Ok(true);
        }
        if let Some(l) = limit
            && *count >= l
        {
            return Ok(false);
        }
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            if left.is_none() {
                return Ok(true);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside a body",
            ));
        }
        let mut take = buf.len() as u64;
        if let Some(l) = left {
            take = take.min(l);
        }
        if let Some(l) = limit {
            take = take.min(l - *count);
        }
        let take_usize = take as usize;
        w.write_all(&buf[..take_usize]).await?;
        r.consume(take_usize);
        *count += take;
        if let Some(l) = left.as_mut() {
            *l -= take;
        }
    }
}

/// Relay a body with its framing bytes from `r` to `w`. Returns the number of data
/// bytes and whether the body was complete (false: `limit` data bytes went out and
/// the copy stopped there).
pub async fn transfer_body<R, W>(
    r: &mut R,
    w: &mut W,
    framing: Framing,
    limit: Option<u64>,
) -> io::Result<(u64, bool)>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut count = 0u64;
    let done = transfer_body_counted(r, w, framing, limit, &mut count).await?;
    Ok((count, done))
}

/// [`transfer_body`] counting data bytes into `count` as they go, so the count is
/// right even when the copy fails half-way.
pub async fn transfer_body_counted<R, W>(
    r: &mut R,
    w: &mut W,
    framing: Framing,
    limit: Option<u64>,
    count: &mut u64,
) -> io::Result<bool>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let done = match framing {
        Framing::Empty => true,
        Framing::Length(n) => copy_counted(r, w, Some(n), count, limit).await?,
        Framing::UntilClose => copy_counted(r, w, None, count, limit).await?,
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in chunk size",
                ));
            }
            w.write_all(&line).await?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text
                .trim()
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            let size = u64::from_str_radix(&size_text, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {text:?}"),
                )
            })?;
            if size == 0 {
                // Trailers up to the blank line.
                loop {
                    let mut t = Vec::new();
                    if r.read_until(b'\n', &mut t).await? == 0 {
                        break;
                    }
                    w.write_all(&t).await?;
                    if t == b"\r\n" || t == b"\n" {
                        break;
                    }
                }
                break true;
            }
            if !copy_counted(r, w, Some(size), count, limit).await? {
                break false;
            }
            let mut crlf = Vec::new();
            r.read_until(b'\n', &mut crlf).await?;
            w.write_all(&crlf).await?;
        },
    };
    w.flush().await?;
    Ok(done)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// A complete response. `Content-Length` is the body length; for a HEAD request
/// (`head_only`) the body is left out but the length still announced.
pub fn response(status: u16, headers: &[(&str, String)], body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// An OCI error response body (distribution-spec § Error Codes).
pub fn oci_error(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "errors": [{ "code": code, "message": message, "detail": null }] }))
        .expect("serialize error")
}

fn bind(rt: &Runtime) -> (TcpListener, u16) {
    let l = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("local addr").port();
    (l, port)
}

/// Percent-decode a query component (`+` is a space).
pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn query_params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (pct_decode(k), pct_decode(v)),
            None => (pct_decode(p), String::new()),
        })
        .collect()
}

/// The repository name of a `/v2/<name>/(manifests|blobs|tags|referrers)/...` path.
pub fn repo_of_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    let mut best: Option<usize> = None;
    for kind in ["/manifests/", "/blobs/", "/tags/", "/referrers/"] {
        if let Some(i) = rest.rfind(kind) {
            best = Some(best.map_or(i, |b: usize| b.min(i)));
        }
    }
    best.map(|i| rest[..i].to_owned())
}

// ---- the lying registry --------------------------------------------------------

/// A manifest the fake registry serves under some reference.
#[derive(Debug, Clone)]
pub struct FakeManifest {
    pub content_type: String,
    pub body: Vec<u8>,
    /// Sent as `Docker-Content-Digest` (may lie).
    pub digest_header: String,
}

/// How a blob is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobLie {
    Honest,
    /// Announce the full `Content-Length`, send half of the body, close.
    TruncateHalf,
}

#[derive(Debug, Clone)]
pub struct FakeBlob {
    pub body: Vec<u8>,
    pub lie: BlobLie,
}

#[derive(Debug, Clone, Default)]
pub struct FakeRepo {
    /// By tag or digest.
    pub manifests: HashMap<String, FakeManifest>,
    /// By the digest asked for.
    pub blobs: HashMap<String, FakeBlob>,
}

impl FakeRepo {
    /// Serve `image` honestly under `tag` and its digest.
    pub fn honest(image: &TestImage, tag: &str) -> FakeRepo {
        let mut r = FakeRepo::default();
        r.put_manifest(tag, &image.manifest);
        r.put_manifest(&image.manifest.digest, &image.manifest);
        for b in image.blobs() {
            r.blobs.insert(
                b.digest.clone(),
                FakeBlob {
                    body: b.bytes.clone(),
                    lie: BlobLie::Honest,
                },
            );
        }
        r
    }
    pub fn put_manifest(&mut self, reference: &str, m: &Blob) {
        self.manifests.insert(
            reference.to_owned(),
            FakeManifest {
                content_type: m.media_type.clone(),
                body: m.bytes.clone(),
                digest_header: m.digest.clone(),
            },
        );
    }
}

pub struct FakeRegistry {
    pub port: u16,
    /// `METHOD target` of every request, in arrival order.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl FakeRegistry {
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }
}

/// Start a registry serving `repos` (by name) on the runtime `rt`.
pub fn start_fake_registry(rt: &Runtime, repos: HashMap<String, FakeRepo>) -> FakeRegistry {
    let (listener, port) = bind(rt);
    let repos = Arc::new(repos);
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    rt.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let repos = repos.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let _ = fake_registry_conn(sock, repos, log).await;
            });
        }
    });
    FakeRegistry { port, log }
}

async fn fake_registry_conn(
    sock: TcpStream,
    repos: Arc<HashMap<String, FakeRepo>>,
    log: Arc<Mutex<Vec<String>>>,
) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let Some(req) = read_head(&mut r).await? else {
            return Ok(());
        };
        log.lock()
            .expect("log lock")
            .push(format!("{} {}", req.method(), req.target()));
        transfer_body(&mut r, &mut tokio::io::sink(), request_framing(&req), None).await?;
        let head_only = req.method() == "HEAD";
        let api = ("Docker-Distribution-API-Version", "registry/2.0".to_owned());
        let path = req.path().to_owned();
        if path == "/v2/" || path == "/v2" {
            w.write_all(&response(
                200,
                &[api, ("Content-Type", "application/json".into())],
                b"{}",
                head_only,
            ))
            .await?;
            continue;
        }
        let not_found = |code: &str| {
            response(
                404,
                &[("Content-Type", "application/json".into())],
                &oci_error(code, "not here"),
                head_only,
            )
        };
        let Some(name) = repo_of_path(&path) else {
            w.write_all(&not_found("NAME_UNKNOWN")).await?;
            continue;
        };
        let Some(repo) = repos.get(&name) else {
            w.write_all(&not_found("NAME_UNKNOWN")).await?;
            continue;
        };
        let rest = &path["/v2/".len() + name.len()..];
        if let Some(reference) = rest.strip_prefix("/manifests/") {
            match repo.manifests.get(reference) {
                Some(m) if req.method() == "GET" || head_only => {
                    let headers = [
                        api,
                        ("Content-Type", m.content_type.clone()),
                        ("Docker-Content-Digest", m.digest_header.clone()),
                    ];
                    w.write_all(&response(200, &headers, &m.body, head_only))
                        .await?;
                }
                _ => w.write_all(&not_found("MANIFEST_UNKNOWN")).await?,
            }
        } else if let Some(digest) = rest.strip_prefix("/blobs/") {
            match repo.blobs.get(digest) {
                Some(b) if req.method() == "GET" || head_only => {
                    let headers = [
                        api,
                        ("Content-Type", "application/octet-stream".to_owned()),
                        ("Docker-Content-Digest", digest.to_owned()),
                    ];
                    match b.lie {
                        BlobLie::Honest => {
                            w.write_all(&response(200, &headers, &b.body, head_only))
                                .await?
                        }
                        BlobLie::TruncateHalf => {
                            let full = response(200, &headers, &b.body, head_only);
                            if head_only {
                                w.write_all(&full).await?;
                            } else {
                                let cut = full.len() - b.body.len() / 2;
                                w.write_all(&full[..cut]).await?;
                                w.flush().await?;
                                // Close the connection with the body half sent.
                                return Ok(());
                            }
                        }
                    }
                }
                _ => w.write_all(&not_found("BLOB_UNKNOWN")).await?,
            }
        } else {
            w.write_all(&not_found("NAME_UNKNOWN")).await?;
        }
    }
}

// ---- the fault-injecting proxy ---------------------------------------------------

/// What the proxy does with one request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Forward it and relay the response.
    Forward,
    /// Forward the head and only this many body bytes, then drop both connections.
    ForwardPartial(u64),
    /// Answer with these bytes without forwarding (the request body is read and
    /// discarded first).
    Reply(Vec<u8>),
}

type DelayFn = Box<dyn Fn(&Head) -> Option<Duration> + Send + Sync>;
type DecideFn = Box<dyn Fn(&Head) -> Decision + Send + Sync>;

pub struct ProxyHooks {
    /// Sleep this long before deciding.
    pub delay: DelayFn,
    pub decide: DecideFn,
}

#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    pub replied: AtomicU64,
    pub partial_drops: AtomicU64,
    /// Request-body bytes forwarded upstream, by method.
    pub forwarded_body: Mutex<BTreeMap<String, u64>>,
    /// `METHOD target -> status` (or `-> replied`/`-> dropped`) of every request.
    pub log: Mutex<Vec<String>>,
}

impl ProxyStats {
    pub fn forwarded(&self, method: &str) -> u64 {
        self.forwarded_body
            .lock()
            .expect("stats lock")
            .get(method)
            .copied()
            .unwrap_or(0)
    }
    fn note(&self, line: String) {
        self.log.lock().expect("stats lock").push(line);
    }
}

pub struct Proxy {
    pub port: u16,
    pub stats: Arc<ProxyStats>,
}

impl Proxy {
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Start an HTTP/1.1 proxy on the runtime `rt` forwarding to 127.0.0.1:`upstream_port`
/// (one upstream connection per client connection).
pub fn start_proxy(rt: &Runtime, upstream_port: u16, hooks: ProxyHooks) -> Proxy {
    let (listener, port) = bind(rt);
    let stats = Arc::new(ProxyStats::default());
    let stats2 = stats.clone();
    let hooks = Arc::new(hooks);
    let upstream: SocketAddr = ([127, 0, 0, 1], upstream_port).into();
    rt.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let hooks = hooks.clone();
            let stats = stats2.clone();
            tokio::spawn(async move {
                let _ = proxy_conn(sock, upstream, hooks, stats).await;
            });
        }
    });
    Proxy { port, stats }
}

type Upstream = (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
);

async fn proxy_conn(
    client: TcpStream,
    upstream: SocketAddr,
    hooks: Arc<ProxyHooks>,
    stats: Arc<ProxyStats>,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    let (cr, mut cw) = client.into_split();
    let mut cr = BufReader::with_capacity(256 * 1024, cr);
    let mut up: Option<Upstream> = None;
    loop {
        let Some(req) = read_head(&mut cr).await? else {
            return Ok(());
        };
        stats.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(d) = (hooks.delay)(&req) {
            tokio::time::sleep(d).await;
        }
        let framing = request_framing(&req);
        let limit = match (hooks.decide)(&req) {
            Decision::Reply(resp) => {
                transfer_body(&mut cr, &mut tokio::io::sink(), framing, None).await?;
                cw.write_all(&resp).await?;
                cw.flush().await?;
                stats.replied.fetch_add(1, Ordering::SeqCst);
                let status = String::from_utf8_lossy(&resp[9..12.min(resp.len())]).into_owned();
                stats.note(format!(
                    "{} {} -> {status} (proxy)",
                    req.method(),
                    req.target()
                ));
                continue;
            }
            Decision::Forward => None,
            Decision::ForwardPartial(n) => Some(n),
        };
        if up.is_none() {
            let s = TcpStream::connect(upstream).await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            up = Some((BufReader::with_capacity(256 * 1024, r), w));
        }
        let (ur, uw) = up.as_mut().expect("upstream connected");
        let mut n = 0u64;
        let sent = async {
            uw.write_all(&req.raw).await?;
            transfer_body_counted(&mut cr, uw, framing, limit, &mut n).await
        }
        .await;
        *stats
            .forwarded_body
            .lock()
            .expect("stats lock")
            .entry(req.method().to_owned())
            .or_default() += n;
        match sent {
            Ok(true) => {}
            Ok(false) => {
                stats.partial_drops.fetch_add(1, Ordering::SeqCst);
                stats.note(format!(
                    "{} {} -> dropped after {n} body bytes",
                    req.method(),
                    req.target()
                ));
                // Dropping both halves of both connections.
                return Ok(());
            }
            Err(e) => {
                // The client went away, or upstream stopped reading (it may have
                // answered early, e.g. 416): relay an early answer if there is one,
                // then close.
                let early = tokio::time::timeout(Duration::from_secs(2), read_head(ur)).await;
                let status = match early {
                    Ok(Ok(Some(resp))) => {
                        let _ = cw.write_all(&resp.raw).await;
                        let f = response_framing(&resp, req.method());
                        let _ = transfer_body(ur, &mut cw, f, None).await;
                        resp.status().to_string()
                    }
                    _ => "nothing".to_owned(),
                };
                stats.note(format!(
                    "{} {} -> forwarding failed after {n} body bytes ({e}); upstream answered {status}; closing",
                    req.method(),
                    req.target()
                ));
                return Ok(());
            }
        }
        let close_upstream = loop {
            let Some(resp) = read_head(ur).await? else {
                stats.note(format!(
                    "{} {} -> upstream closed without an answer",
                    req.method(),
                    req.target()
                ));
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed",
                ));
            };
            cw.write_all(&resp.raw).await?;
            let f = response_framing(&resp, req.method());
            transfer_body(ur, &mut cw, f, None).await?;
            if (100..200).contains(&resp.status()) {
                continue;
            }
            stats.note(format!(
                "{} {} -> {}",
                req.method(),
                req.target(),
                resp.status()
            ));
            if f == Framing::UntilClose {
                return Ok(());
            }
            break resp.wants_close();
        };
        if close_upstream {
            up = None;
        }
    }
}

// ---- token auth ----------------------------------------------------------------

/// Settings of the token server and the authorizing proxy.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub user: String,
    pub password: String,
    pub service: String,
    /// Tokens older than this are rejected by the proxy (with a fresh challenge).
    pub max_token_age: Option<Duration>,
    /// Requests to `/blobs/` paths sleep this long before being authorized.
    pub blob_delay: Option<Duration>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            user: "alice".to_owned(),
            password: "s3cret".to_owned(),
            service: "berth-test".to_owned(),
            max_token_age: None,
            blob_delay: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct AuthStats {
    pub tokens_issued: AtomicU64,
    pub token_denied: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected_no_token: AtomicU64,
    pub rejected_expired: AtomicU64,
    pub rejected_scope: AtomicU64,
    /// Token requests: `METHOD target (auth: basic-user|none)`.
    pub token_log: Mutex<Vec<String>>,
}

pub struct AuthSetup {
    pub token_port: u16,
    pub proxy: Proxy,
    pub stats: Arc<AuthStats>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// RFC 3339 UTC time (seconds precision).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The claims of a test token (a base64url JSON object, not a JWT: the proxy is
/// the only one that reads it).
fn make_token(user: &str, access: &[String]) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let claims = json!({
        "sub": user,
        "access": access,
        "iat_ms": now_ms(),
        "jti": SEQ.fetch_add(1, Ordering::SeqCst),
    });
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("serialize claims"))
}

struct TokenClaims {
    access: Vec<String>,
    iat_ms: u64,
}

fn parse_token(t: &str) -> Option<TokenClaims> {
    let bytes = URL_SAFE_NO_PAD.decode(t.trim()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(TokenClaims {
        access: v["access"]
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        iat_ms: v["iat_ms"].as_u64()?,
    })
}

/// Whether `granted` (`repository:NAME:a,b`) covers `needed` (same form).
fn scope_covers(granted: &[String], needed: &str) -> bool {
    let Some((ntype, nrest)) = needed.split_once(':') else {
        return false;
    };
    let Some((nname, nactions)) = nrest.rsplit_once(':') else {
        return false;
    };
    nactions.split(',').all(|action| {
        granted.iter().any(|g| {
            let Some((gtype, grest)) = g.split_once(':') else {
                return false;
            };
            let Some((gname, gactions)) = grest.rsplit_once(':') else {
                return false;
            };
            gtype == ntype && gname == nname && gactions.split(',').any(|a| a == action || a == "*")
        })
    })
}

/// Start a token server (`GET /token?service=S&scope=...` with HTTP Basic, or the
/// OAuth2 `POST /token` password grant) and an authorizing proxy in front of
/// 127.0.0.1:`upstream_port`.
pub fn start_auth(rt: &Runtime, upstream_port: u16, cfg: AuthConfig) -> AuthSetup {
    let stats = Arc::new(AuthStats::default());
    let (listener, token_port) = bind(rt);
    {
        let cfg = cfg.clone();
        let stats = stats.clone();
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let cfg = cfg.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    let _ = token_conn(sock, cfg, stats).await;
                });
            }
        });
    }
    let realm = format!("http://127.0.0.1:{token_port}/token");
    let decide_stats = stats.clone();
    let decide_cfg = cfg.clone();
    let blob_delay = cfg.blob_delay;
    let hooks = ProxyHooks {
        delay: Box::new(move |req: &Head| {
            if req.path().contains("/blobs/") {
                blob_delay
            } else {
                None
            }
        }),
        decide: Box::new(move |req: &Head| authorize(req, &decide_cfg, &realm, &decide_stats)),
    };
    let proxy = start_proxy(rt, upstream_port, hooks);
    AuthSetup {
        token_port,
        proxy,
        stats,
    }
}

fn authorize(req: &Head, cfg: &AuthConfig, realm: &str, stats: &AuthStats) -> Decision {
    let path = req.path();
    let needed: Option<String> = if path == "/v2/" || path == "/v2" {
        None
    } else if let Some(name) = repo_of_path(path) {
        let actions = if matches!(req.method(), "GET" | "HEAD") {
            "pull"
        } else {
            "pull,push"
        };
        Some(format!("repository:{name}:{actions}"))
    } else {
        Some("registry:catalog:*".to_owned())
    };
    let token = req.header("authorization").and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim().to_owned())
    });
    let verdict: Result<(), (&str, &AtomicU64)> = match token.as_deref().map(parse_token) {
        None | Some(None) => Err(("authentication required", &stats.rejected_no_token)),
        Some(Some(claims)) => {
            let age = Duration::from_millis(now_ms().saturating_sub(claims.iat_ms));
            if cfg.max_token_age.is_some_and(|max| age > max) {
                Err(("token expired", &stats.rejected_expired))
            } else if needed
                .as_deref()
                .is_some_and(|n| !scope_covers(&claims.access, n))
            {
                Err(("insufficient scope", &stats.rejected_scope))
            } else {
                Ok(())
            }
        }
    };
    match verdict {
        Ok(()) => {
            stats.accepted.fetch_add(1, Ordering::SeqCst);
            Decision::Forward
        }
        Err((message, counter)) => {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut challenge = format!("Bearer realm=\"{realm}\",service=\"{}\"", cfg.service);
            if let Some(n) = &needed {
                challenge.push_str(&format!(",scope=\"{n}\""));
            }
            Decision::Reply(response(
                401,
                &[
                    ("Content-Type", "application/json".to_owned()),
                    ("Docker-Distribution-API-Version", "registry/2.0".to_owned()),
                    ("WWW-Authenticate", challenge),
                ],
                &oci_error("UNAUTHORIZED", message),
                req.method() == "HEAD",
            ))
        }
    }
}

async fn token_conn(sock: TcpStream, cfg: AuthConfig, stats: Arc<AuthStats>) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let Some(req) = read_head(&mut r).await? else {
            return Ok(());
        };
        let mut body = Vec::new();
        transfer_body(&mut r, &mut body, request_framing(&req), None).await?;
        let head_only = req.method() == "HEAD";
        let json_ct = ("Content-Type", "application/json".to_owned());
        if req.path() != "/token" {
            w.write_all(&response(404, &[json_ct], b"{}", head_only))
                .await?;
            continue;
        }
        // Credentials and scopes: GET with Basic auth, or the OAuth2 password grant.
        let mut params = query_params(req.query());
        let mut creds: Option<(String, String)> = None;
        if let Some(v) = req.header("authorization")
            && let Some((scheme, b64)) = v.split_once(' ')
            && scheme.eq_ignore_ascii_case("basic")
            && let Ok(raw) = STANDARD.decode(b64.trim())
            && let Some((u, p)) = String::from_utf8_lossy(&raw).split_once(':')
        {
            creds = Some((u.to_owned(), p.to_owned()));
        }
        let oauth = req.method() == "POST";
        if oauth {
            let form = query_params(&String::from_utf8_lossy(&body));
            let get = |k: &str| form.iter().find(|(fk, _)| fk == k).map(|(_, v)| v.clone());
            if get("grant_type").as_deref() == Some("password")
                && let (Some(u), Some(p)) = (get("username"), get("password"))
            {
                creds = Some((u, p));
            }
            params.extend(form);
        }
        stats
            .token_log
            .lock()
            .expect("token log lock")
            .push(format!(
                "{} {} (user: {})",
                req.method(),
                req.target(),
                creds.as_ref().map(|(u, _)| u.as_str()).unwrap_or("none")
            ));
        let ok = creds
            .as_ref()
            .is_some_and(|(u, p)| *u == cfg.user && *p == cfg.password);
        let service_ok = params
            .iter()
            .find(|(k, _)| k == "service")
            .is_none_or(|(_, v)| *v == cfg.service);
        if !ok || !service_ok {
            stats.token_denied.fetch_add(1, Ordering::SeqCst);
            w.write_all(&response(
                401,
                &[json_ct],
                &oci_error("UNAUTHORIZED", "bad credentials"),
                head_only,
            ))
            .await?;
            continue;
        }
        // alice may do anything she asks for.
        let access: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        let token = make_token(&cfg.user, &access);
        stats.tokens_issued.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::to_vec(&json!({
            "token": token,
            "access_token": token,
            "expires_in": 60,
            "issued_at": rfc3339(SystemTime::now()),
            "scope": access.join(" "),
        }))
        .expect("serialize token response");
        w.write_all(&response(200, &[json_ct], &body, head_only))
            .await?;
    }
}

// ---- the flaky proxy -------------------------------------------------------------

/// Counters of the flaky proxy's own faults.
#[derive(Debug, Default)]
pub struct FlakyStats {
    pub injected_503: AtomicU64,
    pub dropped_patch: AtomicBool,
}

/// A proxy that answers 503 (sometimes with `Retry-After: 0`) to every 4th request
/// without forwarding it (but never to the same request twice in a row), and
/// forwards only `partial_after` body bytes of the first PATCH carrying more than
/// that, then drops both connections.
pub fn start_flaky_proxy(
    rt: &Runtime,
    upstream_port: u16,
    partial_after: u64,
) -> (Proxy, Arc<FlakyStats>) {
    let fstats = Arc::new(FlakyStats::default());
    let counter = AtomicU64::new(0);
    let last_injected: Mutex<std::collections::HashMap<String, bool>> =
        Mutex::new(std::collections::HashMap::new());
    let f2 = fstats.clone();
    let hooks = ProxyHooks {
        delay: Box::new(|_| None),
        decide: Box::new(move |req: &Head| {
            let big_body =
                req.is_chunked() || req.content_length().is_some_and(|n| n > partial_after);
            if req.method() == "PATCH" && big_body && !f2.dropped_patch.swap(true, Ordering::SeqCst)
            {
                return Decision::ForwardPartial(partial_after);
            }
            let key = format!("{} {}", req.method(), req.target());
            let mut last = last_injected.lock().expect("flaky lock");
            // Every 4th request, but never the same request on two attempts in a row
            // (a chunked upload PATCHes one session URL over and over, and a client
            // whose retry cycle matched the period would otherwise see the same
            // attempt fail every time, which no number of retries survives).
            let injected_last_time = last.get(&key).copied().unwrap_or(false);
            let inject = counter.fetch_add(1, Ordering::SeqCst) % 4 == 3 && !injected_last_time;
            last.insert(key, inject);
            if inject {
                let k = f2.injected_503.fetch_add(1, Ordering::SeqCst);
                let mut headers = vec![("Content-Type", "application/json".to_owned())];
                if k % 2 == 0 {
                    headers.push(("Retry-After", "0".to_owned()));
                }
                return Decision::Reply(response(
                    503,
                    &headers,
                    &oci_error("UNAVAILABLE", "injected fault"),
                    req.method() == "HEAD",
                ));
            }
            Decision::Forward
        }),
    };
    (start_proxy(rt, upstream_port, hooks), fstats)
}
