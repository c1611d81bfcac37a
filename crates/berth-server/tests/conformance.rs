//! OCI distribution-spec conformance, re-implemented in Rust and run against berth
//! over real HTTP.
//!
//! The acceptance yardstick is "the OCI distribution-spec conformance suite v1.1.1,
//! all four workflows". That suite is Go (Ginkgo) code we cannot run here, so this
//! file re-implements, independently, every check it makes: the same requests in
//! the same order, over the same kind of data, with every `Expect` of the suite as a
//! check here. None of the suite's code is copied; fixtures are built here with the
//! same shapes (see [`Fixtures`]).
//!
//! Suite files followed (opencontainers/distribution-spec, `conformance/`):
//! `00_conformance_suite_test.go`, `setup.go` and `image.go` (v1.1-era: 16 configs and
//! manifests, referrers artifacts, `OCI-Filters-Applied`), `01_pull_test.go`,
//! `02_push_test.go` (with `OCI-Chunk-Min-Length`), `03_discovery_test.go` (the
//! revision whose `last` check re-reads the second page and asserts it excludes
//! `last`; an earlier revision only re-checked the first page) and
//! `04_management_test.go`.
//!
//! Structure, as in the suite:
//! * one registry; the workflows run in the suite's order, setup → pull → push →
//!   content discovery → content management, each with its own Setup / checks /
//!   Teardown contexts ([`conformance_all_four_workflows`]); each workflow can also run
//!   alone on a fresh registry, as the suite does when only one `OCI_TEST_*` variable
//!   is set ([`conformance_pull`] …);
//! * each `specify!` is one Ginkgo `g.Specify`, named by its exact description and
//!   the spec.md section it exercises; like a Ginkgo spec it stops at its first
//!   failed check, and the run goes on with the next one;
//! * the test fails at the end, listing every failed spec; a summary of all specs
//!   is printed (`--nocapture` to see it when everything passes).
//!
//! Suite configuration mirrored: all four workflows enabled; no `OCI_TAG_NAME`,
//! `OCI_MANIFEST_DIGEST`, `OCI_BLOB_DIGEST` or `OCI_TAG_LIST` (so every setup runs);
//! `OCI_DELETE_MANIFEST_BEFORE_BLOBS` unset (true: teardowns delete manifests before
//! blobs); `OCI_AUTOMATIC_CROSSMOUNT` read from the environment exactly as the suite
//! does (unset: its two specs are skipped).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

// ---- constants ---------------------------------------------------------------------

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const OCTET_STREAM: &str = "application/octet-stream";
/// The digest of `{}`, the image-spec "empty descriptor" (the suite asserts it).
const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// `OCI_NAMESPACE`: the default repository of every request.
const NAMESPACE: &str = "myorg/myrepo";
/// The tag the pull, discovery and management workflows push their image under.
const TEST_TAG: &str = "tagtest0";
/// The tag of the push workflow's manifest without layers.
const EMPTY_LAYER_TAG: &str = "emptylayer";
/// A reference that is not a valid tag, used as "a manifest that does not exist".
const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
/// The value of `OCI-Filters-Applied` when an `artifactType` filter was applied.
const ARTIFACT_TYPE_FILTER: &str = "artifactType";
/// The one annotation every referrer of the discovery image carries.
const ANNOTATION_KEY: &str = "org.example.conformance.test";
const REF_ARTIFACT_TYPE_A: &str = "application/vnd.example.conformance.artifact-a";
const REF_ARTIFACT_TYPE_B: &str = "application/vnd.example.conformance.artifact-b";
const REF_ARTIFACT_TYPE_INDEX: &str = "application/vnd.example.conformance.index";
/// Codes a 400 body may carry, as the suite lists them.
const ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];
/// The suite builds one config and one manifest per "workflow" by looping to its
/// `numWorkflows` constant, which (being the next flag after the four workflow bits)
/// is 16; workflows use indices 0 … 4.
const NUM_FIXTURES: usize = 16;
/// Size of the chunked-upload blob (the halves are 22 and 20 bytes).
const CHUNKED_BLOB_SIZE: usize = 42;

// ---- small independent helpers ---------------------------------------------------------

/// `sha256:<hex>` of `data`.
fn digest_of(data: &[u8]) -> String {
    let mut s = String::from("sha256:");
    for b in Sha256::digest(data) {
        write!(s, "{b:02x}").unwrap();
    }
    s
}

/// Standard base64 with padding: how Go's encoding/json writes a `[]byte`.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// JSON as Go's `json.MarshalIndent(v, "", "\t")` writes it (the suite's manifests and
/// configs are serialized that way); object keys keep the order they were built in.
fn go_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    v.serialize(&mut ser).unwrap();
    out
}

/// CRC-32 (IEEE), for the gzip trailer.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// A gzip-compressed tarball holding one text file: a real layer, like the suite's
/// test layer (gzip with "stored" deflate blocks, which every gzip reader accepts).
fn tar_gz(file_name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..file_name.len()].copy_from_slice(file_name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let s = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], content.len() as u64); // size
    octal(&mut header[136..148], 0); // mtime
    header[148..156].fill(b' '); // checksum, counted as spaces
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.resize(tar.len() + 1024, 0); // end-of-archive marker

    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut blocks = tar.chunks(0xffff).peekable();
    while let Some(block) = blocks.next() {
        gz.push(u8::from(blocks.peek().is_none())); // BFINAL, BTYPE=00 (stored)
        let len = block.len() as u16;
        gz.extend_from_slice(&len.to_le_bytes());
        gz.extend_from_slice(&(!len).to_le_bytes());
        gz.extend_from_slice(block);
    }
    gz.extend_from_slice(&crc32(&tar).to_le_bytes());
    gz.extend_from_slice(&(tar.len() as u32).to_le_bytes());
    gz
}

/// splitmix64: the run's random data (config authors, blob bytes, namespace UUID).
struct Rng(Cell<u64>);

impl Rng {
    fn next_u64(&self) -> u64 {
        let mut z = self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Like the suite's `randomString`: letters, digits and `-`.
    fn string(&self, n: usize) -> String {
        const LETTERS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-";
        (0..n)
            .map(|_| char::from(LETTERS[(self.next_u64() % LETTERS.len() as u64) as usize]))
            .collect()
    }

    /// A version-4 UUID in its lowercase text form.
    fn uuid(&self) -> String {
        let mut b = self.bytes(16);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

// ---- fixtures ----------------------------------------------------------------------------

/// Content with its length (as a header value) and digest.
#[derive(Clone, Debug)]
struct TestBlob {
    content: Vec<u8>,
    length: String,
    digest: String,
}

impl TestBlob {
    fn new(content: Vec<u8>) -> Self {
        TestBlob {
            length: content.len().to_string(),
            digest: digest_of(&content),
            content,
        }
    }

    fn json(v: &Value) -> Self {
        TestBlob::new(go_json(v))
    }
}

/// The blob pushed in two chunks: the first `size/2 + 1` bytes, then the rest.
#[derive(Clone, Debug)]
struct ChunkedBlob {
    blob: TestBlob,
    chunk1: Vec<u8>,
    chunk2: Vec<u8>,
    range1: String,
    range2: String,
}

impl ChunkedBlob {
    fn new(rng: &Rng, size: usize) -> Self {
        let blob = TestBlob::new(rng.bytes(size));
        let cut = size / 2 + 1;
        ChunkedBlob {
            chunk1: blob.content[..cut].to_vec(),
            chunk2: blob.content[cut..].to_vec(),
            range1: format!("0-{}", cut - 1),
            range2: format!("{cut}-{}", size - 1),
            blob,
        }
    }
}

/// A descriptor in the field order the suite's Go `descriptor` type serializes to:
/// `mediaType`, `digest`, `size`, then `data` when set, then `newUnspecifiedField`
/// (a field outside image-spec, always written; `null` when unset).
fn descriptor(media_type: &str, blob: &TestBlob, data: bool, unspecified: Option<&[u8]>) -> Value {
    let mut d = Map::new();
    d.insert("mediaType".into(), media_type.into());
    d.insert("digest".into(), blob.digest.clone().into());
    d.insert("size".into(), blob.content.len().into());
    if data {
        d.insert("data".into(), base64(&blob.content).into());
    }
    d.insert(
        "newUnspecifiedField".into(),
        unspecified.map_or(Value::Null, |u| base64(u).into()),
    );
    Value::Object(d)
}

/// Everything the suite's `setup.go` prepares.
struct Fixtures {
    /// One image config per fixture index (a random author makes each unique).
    configs: Vec<TestBlob>,
    /// One image manifest per fixture index, over `configs[i]` and `layer`; the
    /// config descriptor embeds the config as `data` and carries an unknown field.
    manifests: Vec<TestBlob>,
    /// The one layer every manifest uses.
    layer: TestBlob,
    /// An image manifest with `layers: []` and no `mediaType` field.
    empty_layer_manifest: TestBlob,
    /// The blob pushed by a streamed PATCH (42 random bytes).
    blob_a: TestBlob,
    /// The `{}` blob of the empty descriptor.
    empty_json: TestBlob,
    /// Config/layer blobs of the referrers artifacts.
    ref_blob_a: TestBlob,
    ref_blob_b: TestBlob,
    /// Artifact with `subject` = manifests[4], artifact type given by config.mediaType.
    refs_a_config: TestBlob,
    refs_b_config: TestBlob,
    /// Artifact with `subject` = manifests[4], `artifactType` set, empty config.
    refs_a_layer: TestBlob,
    refs_b_layer: TestBlob,
    /// Like `refs_b_layer`, but its subject (manifests[3]) is not pushed before it.
    refs_c_layer: TestBlob,
    /// An image index with `artifactType`, `subject` = manifests[4], listing A's two.
    refs_index: TestBlob,
    /// Digest → the annotation value that referrer carries.
    annotation_values: HashMap<String, String>,
    /// A digest nothing in the registry has.
    dummy_digest: String,
}

impl Fixtures {
    fn new(rng: &Rng) -> Self {
        let configs: Vec<TestBlob> = (0..NUM_FIXTURES)
            .map(|_| {
                TestBlob::json(&json!({
                    "author": rng.string(16),
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": { "type": "layers", "diff_ids": [] },
                }))
            })
            .collect();
        let layer = TestBlob::new(tar_gz(
            "conformance.txt",
            b"a small text file inside a gzip-compressed tarball\n",
        ));
        let unspecified: &[u8] = b"a field image-spec does not define";
        let config_descriptor = |c: &TestBlob| descriptor(MT_CONFIG, c, true, Some(unspecified));
        let manifests: Vec<TestBlob> = configs
            .iter()
            .map(|c| {
                TestBlob::json(&json!({
                    "schemaVersion": 2,
                    "mediaType": MT_MANIFEST,
                    "config": config_descriptor(c),
                    "layers": [descriptor(MT_LAYER_GZIP, &layer, false, None)],
                }))
            })
            .collect();
        let empty_layer_manifest = TestBlob::json(&json!({
            "schemaVersion": 2,
            "config": config_descriptor(&configs[1]),
            "layers": [],
        }));

        let empty_json = TestBlob::new(b"{}".to_vec());
        let empty = descriptor(MT_EMPTY, &empty_json, false, None);
        let ref_blob_a = TestBlob::new(b"referrer payload A: an attached document".to_vec());
        let ref_blob_b = TestBlob::new(b"referrer payload B: another attached document".to_vec());
        let subject = |m: &TestBlob| descriptor(MT_MANIFEST, m, false, None);

        let config_artifact = |artifact_type: &str, blob: &TestBlob, note: &str| {
            TestBlob::json(&json!({
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": descriptor(artifact_type, blob, false, None),
                "layers": [empty.clone()],
                "subject": subject(&manifests[4]),
                "annotations": { ANNOTATION_KEY: note },
            }))
        };
        let layer_artifact =
            |artifact_type: &str, blob: &TestBlob, subj: &TestBlob, note: Option<&str>| {
                let mut m = Map::new();
                m.insert("schemaVersion".into(), 2.into());
                m.insert("mediaType".into(), MT_MANIFEST.into());
                m.insert("artifactType".into(), artifact_type.into());
                m.insert("config".into(), empty.clone());
                m.insert(
                    "layers".into(),
                    json!([descriptor(artifact_type, blob, false, None)]),
                );
                m.insert("subject".into(), subject(subj));
                if let Some(n) = note {
                    m.insert("annotations".into(), json!({ ANNOTATION_KEY: n }));
                }
                TestBlob::json(&Value::Object(m))
            };
        let refs_a_config = config_artifact(REF_ARTIFACT_TYPE_A, &ref_blob_a, "config artifact A");
        let refs_b_config = config_artifact(REF_ARTIFACT_TYPE_B, &ref_blob_b, "config artifact B");
        let refs_a_layer = layer_artifact(
            REF_ARTIFACT_TYPE_A,
            &ref_blob_a,
            &manifests[4],
            Some("layer artifact A"),
        );
        let refs_b_layer = layer_artifact(
            REF_ARTIFACT_TYPE_B,
            &ref_blob_b,
            &manifests[4],
            Some("layer artifact B"),
        );
        let refs_c_layer = layer_artifact(REF_ARTIFACT_TYPE_B, &ref_blob_b, &manifests[3], None);
        let refs_index = TestBlob::json(&json!({
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "artifactType": REF_ARTIFACT_TYPE_INDEX,
            "manifests": [
                descriptor(MT_MANIFEST, &refs_a_config, false, None),
                descriptor(MT_MANIFEST, &refs_a_layer, false, None),
            ],
            "subject": subject(&manifests[4]),
            "annotations": { ANNOTATION_KEY: "index artifact" },
        }));
        let annotation_values = [
            (&refs_a_config, "config artifact A"),
            (&refs_b_config, "config artifact B"),
            (&refs_a_layer, "layer artifact A"),
            (&refs_b_layer, "layer artifact B"),
            (&refs_index, "index artifact"),
        ]
        .into_iter()
        .map(|(b, v)| (b.digest.clone(), v.to_owned()))
        .collect();

        Fixtures {
            blob_a: TestBlob::new(rng.bytes(42)),
            dummy_digest: digest_of(b"content that is never pushed to the registry"),
            configs,
            manifests,
            layer,
            empty_layer_manifest,
            empty_json,
            ref_blob_a,
            ref_blob_b,
            refs_a_config,
            refs_b_config,
            refs_a_layer,
            refs_b_layer,
            refs_c_layer,
            refs_index,
            annotation_values,
        }
    }
}

// ---- HTTP ----------------------------------------------------------------------------------

/// A request being built, as the suite builds one with reggie.
struct Req {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Send as Go's net/http would: a `Content-Length` header set by the caller is
    /// not sent as such (the wire value always reflects the body), and an empty
    /// POST/PUT/PATCH carries `Content-Length: 0`. Query parameters are added to any
    /// the URL already has.
    async fn send(self, s: &Suite) -> Result<Resp, String> {
        let mut url = self.url;
        if !self.query.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&serde_urlencoded::to_string(&self.query).unwrap());
        }
        let mut rb = s.http.request(self.method.clone(), &url);
        for (k, v) in &self.headers {
            if !k.eq_ignore_ascii_case("content-length") {
                rb = rb.header(k, v);
            }
        }
        let what = format!("{} {url}", self.method);
        if self.body.is_empty() {
            if matches!(self.method, Method::POST | Method::PUT | Method::PATCH) {
                rb = rb.header("content-length", "0");
            }
        } else {
            rb = rb.body(self.body);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| format!("{what}: request failed: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("{what}: reading the body failed: {e}"))?
            .to_vec();
        Ok(Resp {
            what,
            status,
            headers,
            body,
        })
    }
}

/// A response, with the accessors the suite uses.
#[derive(Clone, Debug)]
struct Resp {
    what: String,
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    /// The header's first value, or "" (Go's `Header.Get`).
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    }

    /// Path and query of `Location`, whether it is absolute or relative (reggie's
    /// `GetRelativeLocation`).
    fn relative_location(&self) -> String {
        let loc = self.header("location");
        if loc.is_empty() {
            return loc;
        }
        match reqwest::Url::parse("http://placeholder.invalid/").and_then(|b| b.join(&loc)) {
            Ok(u) => match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_owned(),
            },
            Err(_) => String::new(),
        }
    }

    /// `Location` as sent (reggie's `GetAbsoluteLocation`).
    fn absolute_location(&self) -> String {
        self.header("location")
    }

    /// The error codes of an OCI error envelope (reggie's `Errors`: fails when the
    /// body is not JSON or the `errors` list is empty).
    fn error_codes(&self) -> Result<Vec<String>, String> {
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("error body is not JSON ({e}): {}", self.describe()))?;
        let errors = v
            .get("errors")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("error body has no `errors` entries: {}", self.describe()))?;
        Ok(errors
            .iter()
            .map(|e| {
                e.get("code")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect())
    }

    /// `tags` of a tag list body; empty when it does not parse (the suite's
    /// `getTagList`).
    fn tag_list(&self) -> Vec<String> {
        self.parse_tag_list().unwrap_or_default()
    }

    /// `tags` of a tag list body, or why it does not parse (`json.Unmarshal` into
    /// `{name string, tags []string}`; a missing or null `tags` is an empty list).
    fn parse_tag_list(&self) -> Result<Vec<String>, String> {
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("tag list is not JSON ({e}): {}", self.describe()))?;
        match v.get("tags") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("tag {t} is not a string"))
                })
                .collect(),
            Some(other) => Err(format!("`tags` is not a list: {other}")),
        }
    }

    /// `manifests` of an image index body (unmarshalled as the suite's `index`; a
    /// missing or null list is empty).
    fn index_manifests(&self) -> Result<Vec<Value>, String> {
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("referrers body is not JSON ({e}): {}", self.describe()))?;
        match v.get("manifests") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(format!("`manifests` is not a list: {other}")),
        }
    }

    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(400).collect();
        format!("{} -> {} (body: {body:?})", self.what, self.status)
    }
}

fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

// ---- the runner ---------------------------------------------------------------------------

enum Status {
    Passed,
    Failed(String),
    Skipped(String),
}

struct Outcome {
    workflow: &'static str,
    context: &'static str,
    spec: &'static str,
    section: &'static str,
    status: Status,
}

/// One run of the suite against one berth instance.
struct Suite {
    http: reqwest::Client,
    base: String,
    /// `OCI_NAMESPACE`.
    name: String,
    /// `OCI_CROSSMOUNT_NAMESPACE` (default: `conformance-<uuid>`).
    crossmount: String,
    f: Fixtures,
    rng: Rng,
    workflow: &'static str,
    /// Checks evaluated so far.
    checks: Cell<usize>,
    outcomes: Vec<Outcome>,
    /// The suite's `Warn(...)` messages (not failures).
    warnings: RefCell<Vec<String>>,
    _dir: tempfile::TempDir,
}

impl Suite {
    /// Open a registry in a fresh directory and serve it on an ephemeral port.
    async fn start() -> Suite {
        let dir = tempfile::tempdir().unwrap();
        let registry =
            berth_registry::Registry::open(dir.path(), berth_registry::Limits::default())
                .await
                .unwrap();
        let app = berth_server::router(Arc::new(registry));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, app).into_future());

        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        println!("conformance run against http://{addr} (random seed {seed})");
        let rng = Rng(Cell::new(seed));
        let f = Fixtures::new(&rng);
        let http = reqwest::Client::builder()
            .user_agent("distribution-spec-conformance-tests")
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Suite {
            http,
            base: format!("http://{addr}"),
            name: NAMESPACE.to_owned(),
            crossmount: format!("conformance-{}", rng.uuid()),
            f,
            rng,
            workflow: "",
            checks: Cell::new(0),
            outcomes: Vec::new(),
            warnings: RefCell::new(Vec::new()),
            _dir: dir,
        }
    }

    /// A request to `path` (reggie: the address, `/`, the path without its leading
    /// slash; `path` may carry a query, e.g. an upload `Location`).
    fn req(&self, method: Method, path: &str) -> Req {
        Req {
            method,
            url: format!("{}/{}", self.base, path.trim_start_matches('/')),
            headers: Vec::new(),
            query: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `/v2/<name>/<tail>` in the default namespace.
    fn path(&self, tail: &str) -> String {
        format!("/v2/{}/{tail}", self.name)
    }

    fn count_check(&self) {
        self.checks.set(self.checks.get() + 1);
    }

    fn record(
        &mut self,
        context: &'static str,
        spec: &'static str,
        section: &'static str,
        status: Status,
    ) {
        let line = match &status {
            Status::Passed => "ok".to_owned(),
            Status::Failed(why) => format!("FAILED: {why}"),
            Status::Skipped(why) => format!("skipped ({why})"),
        };
        println!("[{}] {context} » {spec}: {line}", self.workflow);
        self.outcomes.push(Outcome {
            workflow: self.workflow,
            context,
            spec,
            section,
            status,
        });
    }

    /// The suite's `Warn`: reported, not a failure.
    fn warn(&self, message: &str) {
        println!("[{}] WARNING: {message}", self.workflow);
        self.warnings
            .borrow_mut()
            .push(format!("[{}] {message}", self.workflow));
    }

    /// Print the summary; fail if any spec failed.
    fn finish(self) {
        let count = |p: fn(&Status) -> bool| self.outcomes.iter().filter(|o| p(&o.status)).count();
        let passed = count(|s| matches!(s, Status::Passed));
        let skipped = count(|s| matches!(s, Status::Skipped(_)));
        let mut failures = String::new();
        for o in &self.outcomes {
            if let Status::Failed(why) = &o.status {
                writeln!(
                    failures,
                    "  [{}] {} » {} ({})\n      {why}",
                    o.workflow, o.context, o.spec, o.section
                )
                .unwrap();
            }
        }
        let failed = self.outcomes.len() - passed - skipped;
        println!(
            "\n{} specs: {passed} passed, {failed} failed, {skipped} skipped; {} checks evaluated",
            self.outcomes.len(),
            self.checks.get()
        );
        for w in self.warnings.borrow().iter() {
            println!("WARNING: {w}");
        }
        assert!(
            failed == 0,
            "{failed} conformance spec(s) failed:\n{failures}"
        );
    }
}

/// One check: counts it, and ends the spec with `msg` if `cond` is false.
macro_rules! expect {
    ($s:ident, $cond:expr, $($msg:tt)+) => {{
        $s.count_check();
        if !$cond {
            return Err(format!($($msg)+));
        }
    }};
}

/// The status is exactly `$want`.
macro_rules! expect_status {
    ($s:ident, $resp:expr, $want:expr) => {{
        let r: &Resp = &$resp;
        expect!(
            $s,
            r.status == $want,
            "expected status {}, got {}",
            $want,
            r.describe()
        );
    }};
}

/// The status is one of `[$want, …]`.
macro_rules! expect_status_in {
    ($s:ident, $resp:expr, [$($want:expr),+ $(,)?]) => {{
        let r: &Resp = &$resp;
        let ok: &[u16] = &[$($want),+];
        expect!($s, ok.contains(&r.status), "expected status in {:?}, got {}", ok, r.describe());
    }};
}

/// The status is 2xx, or one of `[$also, …]`.
macro_rules! expect_2xx_or {
    ($s:ident, $resp:expr, [$($also:expr),* $(,)?]) => {{
        let r: &Resp = &$resp;
        let also: &[u16] = &[$($also),*];
        expect!(
            $s,
            is_2xx(r.status) || also.contains(&r.status),
            "expected a 2xx status{}{:?}, got {}",
            if also.is_empty() { "" } else { " or one of " },
            also,
            r.describe()
        );
    }};
}

/// One Ginkgo `g.Specify`: `$context` is the enclosing `g.Context`, `$spec` the
/// spec's description (verbatim from the suite), `$section` the spec.md section.
macro_rules! specify {
    ($s:ident, $context:literal, $spec:literal, $section:literal, $body:block) => {{
        let outcome: Result<(), String> = async {
            $body
            Ok(())
        }
        .await;
        let status = match outcome {
            Ok(()) => Status::Passed,
            Err(why) => Status::Failed(why),
        };
        $s.record($context, $spec, $section, status);
    }};
}

/// A spec the suite would skip under this configuration (`RunOnlyIf` and friends).
macro_rules! skip {
    ($s:ident, $context:literal, $spec:literal, $section:literal, $why:expr) => {{
        let why: String = $why.into();
        $s.record($context, $spec, $section, Status::Skipped(why));
    }};
}

// ---- request helpers shared by the workflows -------------------------------------------------

/// The suite's usual blob push: `POST /blobs/uploads/`, then `PUT <Location>?digest=`
/// with the whole blob. Returns the PUT's response (the suite checks only that).
async fn push_blob(s: &Suite, blob: &TestBlob) -> Result<Resp, String> {
    let post = s
        .req(Method::POST, &s.path("blobs/uploads/"))
        .send(s)
        .await?;
    s.req(Method::PUT, &post.relative_location())
        .query("digest", &blob.digest)
        .header("Content-Type", OCTET_STREAM)
        .header("Content-Length", &blob.length)
        .body(&blob.content)
        .send(s)
        .await
}

/// `PUT /v2/<name>/manifests/<reference>` with `Content-Type: <media_type>`.
async fn put_manifest(
    s: &Suite,
    reference: &str,
    media_type: &str,
    manifest: &TestBlob,
) -> Result<Resp, String> {
    s.req(Method::PUT, &s.path(&format!("manifests/{reference}")))
        .header("Content-Type", media_type)
        .body(&manifest.content)
        .send(s)
        .await
}

async fn delete(s: &Suite, tail: &str) -> Result<Resp, String> {
    s.req(Method::DELETE, &s.path(tail)).send(s).await
}

async fn get(s: &Suite, tail: &str) -> Result<Resp, String> {
    s.req(Method::GET, &s.path(tail)).send(s).await
}

// ---- 01: pull ------------------------------------------------------------------------------

/// `01_pull_test.go`.
async fn pull(s: &mut Suite) {
    s.workflow = "Pull";
    let mut tag = String::new();

    // -- Setup
    specify!(
        s,
        "Setup",
        "Populate registry with test blob",
        "§ Pushing a blob monolithically / POST then PUT (end-4a, end-6)",
        {
            let r = push_blob(s, &s.f.configs[0]).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Populate registry with test blob",
        "§ Pushing a blob monolithically / POST then PUT (end-4a, end-6)",
        {
            let r = push_blob(s, &s.f.configs[1]).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Populate registry with test layer",
        "§ Pushing a blob monolithically / POST then PUT (end-4a, end-6)",
        {
            let r = push_blob(s, &s.f.layer).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Populate registry with test manifest",
        "§ Pushing Manifests (end-7), by tag",
        {
            tag = TEST_TAG.to_owned();
            let r = put_manifest(s, &tag, MT_MANIFEST, &s.f.manifests[0]).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Populate registry with test manifest",
        "§ Pushing Manifests (end-7), by digest",
        {
            let m = &s.f.manifests[1];
            let r = put_manifest(s, &m.digest, MT_MANIFEST, m).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    skip!(
        s,
        "Setup",
        "Get tag name from environment",
        "OCI_TAG_NAME",
        "RunOnlyIfNot(runPullSetup): the setup ran, so the tag is the pushed one"
    );

    // -- Pull blobs
    specify!(
        s,
        "Pull blobs",
        "HEAD request to nonexistent blob should result in 404 response",
        "§ Checking if content exists in the registry (end-2)",
        {
            let r = s
                .req(
                    Method::HEAD,
                    &s.path(&format!("blobs/{}", s.f.dummy_digest)),
                )
                .send(s)
                .await?;
            expect_status!(s, r, 404);
        }
    );
    specify!(
        s,
        "Pull blobs",
        "HEAD request to existing blob should yield 200",
        "§ Checking if content exists in the registry (end-2)",
        {
            let want = &s.f.configs[0].digest;
            let r = s
                .req(Method::HEAD, &s.path(&format!("blobs/{want}")))
                .send(s)
                .await?;
            expect_status!(s, r, 200);
            let h = r.header("Docker-Content-Digest");
            if !h.is_empty() {
                expect!(s, h == *want, "Docker-Content-Digest is {h}, want {want}");
            }
        }
    );
    specify!(
        s,
        "Pull blobs",
        "GET nonexistent blob should result in 404 response",
        "§ Pulling blobs (end-2)",
        {
            let r = get(s, &format!("blobs/{}", s.f.dummy_digest)).await?;
            expect_status!(s, r, 404);
        }
    );
    specify!(
        s,
        "Pull blobs",
        "GET request to existing blob URL should yield 200",
        "§ Pulling blobs (end-2)",
        {
            let r = get(s, &format!("blobs/{}", s.f.configs[0].digest)).await?;
            expect_status!(s, r, 200);
        }
    );

    // -- Pull manifests
    specify!(
        s,
        "Pull manifests",
        "HEAD request to nonexistent manifest should return 404",
        "§ Checking if content exists in the registry (end-3)",
        {
            let r = s
                .req(
                    Method::HEAD,
                    &s.path(&format!("manifests/{NONEXISTENT_MANIFEST}")),
                )
                .send(s)
                .await?;
            expect_status!(s, r, 404);
        }
    );
    specify!(
        s,
        "Pull manifests",
        "HEAD request to manifest[0] path (digest) should yield 200 response",
        "§ Checking if content exists in the registry (end-3)",
        {
            let want = &s.f.manifests[0].digest;
            let r = s
                .req(Method::HEAD, &s.path(&format!("manifests/{want}")))
                .header("Accept", MT_MANIFEST)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
            let h = r.header("Docker-Content-Digest");
            if !h.is_empty() {
                expect!(s, h == *want, "Docker-Content-Digest is {h}, want {want}");
            }
        }
    );
    specify!(
        s,
        "Pull manifests",
        "HEAD request to manifest[1] path (digest) should yield 200 response",
        "§ Checking if content exists in the registry (end-3)",
        {
            let want = &s.f.manifests[1].digest;
            let r = s
                .req(Method::HEAD, &s.path(&format!("manifests/{want}")))
                .header("Accept", MT_MANIFEST)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
            let h = r.header("Docker-Content-Digest");
            if !h.is_empty() {
                expect!(s, h == *want, "Docker-Content-Digest is {h}, want {want}");
            }
        }
    );
    specify!(
        s,
        "Pull manifests",
        "HEAD request to manifest path (tag) should yield 200 response",
        "§ Checking if content exists in the registry (end-3)",
        {
            expect!(s, !tag.is_empty(), "no tag: the setup did not push one");
            let r = s
                .req(Method::HEAD, &s.path(&format!("manifests/{tag}")))
                .header("Accept", MT_MANIFEST)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
            let h = r.header("Docker-Content-Digest");
            let want = &s.f.manifests[0].digest;
            if !h.is_empty() {
                expect!(s, h == *want, "Docker-Content-Digest is {h}, want {want}");
            }
        }
    );
    specify!(
        s,
        "Pull manifests",
        "GET nonexistent manifest should return 404",
        "§ Pulling manifests (end-3)",
        {
            let r = get(s, &format!("manifests/{NONEXISTENT_MANIFEST}")).await?;
            expect_status!(s, r, 404);
        }
    );
    specify!(
        s,
        "Pull manifests",
        "GET request to manifest[0] path (digest) should yield 200 response",
        "§ Pulling manifests (end-3)",
        {
            let r = s
                .req(
                    Method::GET,
                    &s.path(&format!("manifests/{}", s.f.manifests[0].digest)),
                )
                .header("Accept", MT_MANIFEST)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
        }
    );
    specify!(
        s,
        "Pull manifests",
        "GET request to manifest[1] path (digest) should yield 200 response",
        "§ Pulling manifests (end-3)",
        {
            let r = s
                .req(
                    Method::GET,
                    &s.path(&format!("manifests/{}", s.f.manifests[1].digest)),
                )
                .header("Accept", MT_MANIFEST)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
        }
    );
    specify!(
        s,
        "Pull manifests",
        "GET request to manifest path (tag) should yield 200 response",
        "§ Pulling manifests (end-3)",
        {
            expect!(s, !tag.is_empty(), "no tag: the setup did not push one");
            let r = s
                .req(Method::GET, &s.path(&format!("manifests/{tag}")))
                .header("Accept", MT_MANIFEST)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
        }
    );

    // -- Error codes
    specify!(
        s,
        "Error codes",
        "400 response body should contain OCI-conforming JSON message",
        "§ Error Codes",
        {
            // The suite also sets a junk body on this GET; its HTTP client drops bodies
            // of GET requests, so none is sent here either.
            let r = s
                .req(Method::GET, &s.path("manifests/sha256:totallywrong"))
                .header("Content-Type", MT_MANIFEST)
                .send(s)
                .await?;
            expect_status_in!(s, r, [400, 404]);
            if r.status == 400 {
                let codes = r.error_codes();
                expect!(s, codes.is_ok(), "{}", codes.as_ref().unwrap_err());
                let codes = codes.unwrap();
                expect!(s, !codes.is_empty(), "no error entries: {}", r.describe());
                expect!(
                    s,
                    ERROR_CODES.contains(&codes[0].as_str()),
                    "error code {:?} is not one of {ERROR_CODES:?}",
                    codes[0]
                );
            }
        }
    );

    // -- Teardown (manifests before blobs)
    specify!(
        s,
        "Teardown",
        "Delete manifest[0] created in setup",
        "§ Deleting Manifests (end-9)",
        {
            let r = delete(s, &format!("manifests/{}", s.f.manifests[0].digest)).await?;
            expect_2xx_or!(s, r, [405]);
        }
    );
    specify!(
        s,
        "Teardown",
        "Delete manifest[1] created in setup",
        "§ Deleting Manifests (end-9)",
        {
            let r = delete(s, &format!("manifests/{}", s.f.manifests[1].digest)).await?;
            expect_2xx_or!(s, r, [405]);
        }
    );
    specify!(
        s,
        "Teardown",
        "Delete config[0] blob created in setup",
        "§ Deleting Blobs (end-10)",
        {
            let r = delete(s, &format!("blobs/{}", s.f.configs[0].digest)).await?;
            expect_2xx_or!(s, r, [404, 405]);
        }
    );
    specify!(
        s,
        "Teardown",
        "Delete config[1] blob created in setup",
        "§ Deleting Blobs (end-10)",
        {
            let r = delete(s, &format!("blobs/{}", s.f.configs[1].digest)).await?;
            expect_2xx_or!(s, r, [404, 405]);
        }
    );
    specify!(
        s,
        "Teardown",
        "Delete layer blob created in setup",
        "§ Deleting Blobs (end-10)",
        {
            let r = delete(s, &format!("blobs/{}", s.f.layer.digest)).await?;
            expect_2xx_or!(s, r, [404, 405]);
        }
    );
}

// ---- 02: push ------------------------------------------------------------------------------

/// `02_push_test.go`.
async fn push(s: &mut Suite) {
    s.workflow = "Push";
    let mut last: Option<Resp> = None;
    let mut prev: Option<Resp> = None;
    let mut empty_layer_manifest_ref = String::new();
    let mut chunked = ChunkedBlob::new(&s.rng, CHUNKED_BLOB_SIZE);
    let no_previous = || "no response from an earlier spec to continue from".to_owned();

    // -- Setup: none in the suite.

    // -- Blob Upload Streamed
    specify!(
        s,
        "Blob Upload Streamed",
        "PATCH request with blob in body should yield 202 response",
        "§ Pushing a blob in chunks (end-4a, end-5): a PATCH without Content-Range",
        {
            let post = s
                .req(Method::POST, &s.path("blobs/uploads/"))
                .send(s)
                .await?;
            let location = post.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", post.describe());
            let r = s
                .req(Method::PATCH, &post.relative_location())
                .header("Content-Type", OCTET_STREAM)
                .body(&s.f.blob_a.content)
                .send(s)
                .await?;
            expect_status!(s, r, 202);
            last = Some(r);
        }
    );
    specify!(
        s,
        "Blob Upload Streamed",
        "PUT request to session URL with digest should yield 201 response",
        "§ Pushing a blob in chunks: closing PUT without a body (end-6)",
        {
            expect!(s, last.is_some(), "{}", no_previous());
            let l = last.as_ref().unwrap();
            // The suite sets Content-Length to the blob's length but sends no body; on
            // the wire that is `Content-Length: 0`.
            let r = s
                .req(Method::PUT, &l.relative_location())
                .query("digest", &s.f.blob_a.digest)
                .header("Content-Type", OCTET_STREAM)
                .header("Content-Length", &s.f.blob_a.length)
                .send(s)
                .await?;
            expect_status!(s, r, 201);
            let location = r.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", r.describe());
        }
    );

    // -- Blob Upload Monolithic
    specify!(
        s,
        "Blob Upload Monolithic",
        "GET nonexistent blob should result in 404 response",
        "§ Pulling blobs (end-2)",
        {
            let r = get(s, &format!("blobs/{}", s.f.dummy_digest)).await?;
            expect_status!(s, r, 404);
        }
    );
    specify!(
        s,
        "Blob Upload Monolithic",
        "POST request with digest and blob should yield a 201 or 202",
        "§ Pushing a blob monolithically / Single POST (end-4b)",
        {
            let c = &s.f.configs[1];
            let r = s
                .req(Method::POST, &s.path("blobs/uploads/"))
                .header("Content-Length", &c.length)
                .header("Content-Type", OCTET_STREAM)
                .query("digest", &c.digest)
                .body(&c.content)
                .send(s)
                .await?;
            let location = r.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", r.describe());
            expect_status_in!(s, r, [201, 202]);
            last = Some(r);
        }
    );
    specify!(
        s,
        "Blob Upload Monolithic",
        "GET request to blob URL from prior request should yield 200 or 404 based on response code",
        "§ Single POST: 201 means stored, 202 means an upload session (end-2)",
        {
            expect!(s, last.is_some(), "{}", no_previous());
            let r = get(s, &format!("blobs/{}", s.f.configs[1].digest)).await?;
            if last.as_ref().is_some_and(|l| l.status == 202) {
                expect_status!(s, r, 404);
            } else {
                expect_status!(s, r, 200);
            }
        }
    );
    specify!(
        s,
        "Blob Upload Monolithic",
        "POST request should yield a session ID",
        "§ Pushing a blob monolithically / POST then PUT (end-4a)",
        {
            let r = s
                .req(Method::POST, &s.path("blobs/uploads/"))
                .send(s)
                .await?;
            expect_status!(s, r, 202);
            last = Some(r);
        }
    );
    specify!(
        s,
        "Blob Upload Monolithic",
        "PUT upload of a blob should yield a 201 Response",
        "§ Pushing a blob monolithically / POST then PUT (end-6)",
        {
            let l = last.as_ref().ok_or_else(no_previous)?;
            let c = &s.f.configs[1];
            let r = s
                .req(Method::PUT, &l.relative_location())
                .header("Content-Length", &c.length)
                .header("Content-Type", OCTET_STREAM)
                .query("digest", &c.digest)
                .body(&c.content)
                .send(s)
                .await?;
            let location = r.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", r.describe());
            expect_status!(s, r, 201);
        }
    );
    specify!(
        s,
        "Blob Upload Monolithic",
        "GET request to existing blob should yield 200 response",
        "§ Pulling blobs (end-2)",
        {
            let r = get(s, &format!("blobs/{}", s.f.configs[1].digest)).await?;
            expect_status!(s, r, 200);
        }
    );
    specify!(
        s,
        "Blob Upload Monolithic",
        "PUT upload of a layer blob should yield a 201 Response",
        "§ Pushing a blob monolithically / POST then PUT (end-4a, end-6)",
        {
            let post = s
                .req(Method::POST, &s.path("blobs/uploads/"))
                .send(s)
                .await?;
            let l = &s.f.layer;
            let r = s
                .req(Method::PUT, &post.relative_location())
                .header("Content-Length", &l.length)
                .header("Content-Type", OCTET_STREAM)
                .query("digest", &l.digest)
                .body(&l.content)
                .send(s)
                .await?;
            let location = r.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", r.describe());
            expect_status!(s, r, 201);
        }
    );
    specify!(
        s,
        "Blob Upload Monolithic",
        "GET request to existing layer should yield 200 response",
        "§ Pulling blobs (end-2)",
        {
            let r = get(s, &format!("blobs/{}", s.f.layer.digest)).await?;
            expect_status!(s, r, 200);
        }
    );

    // -- Blob Upload Chunked
    specify!(
        s,
        "Blob Upload Chunked",
        "Out-of-order blob upload should return 416",
        "§ Pushing a blob in chunks: \"If a chunk is uploaded out of order, the registry MUST respond with a 416\" (end-5)",
        {
            let post = s
                .req(Method::POST, &s.path("blobs/uploads/"))
                .header("Content-Length", "0")
                .send(s)
                .await?;
            let location = post.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", post.describe());
            // Rebuild the blob if the registry's minimum chunk is larger than chunk 1.
            let min = post.header("OCI-Chunk-Min-Length");
            if !min.is_empty() {
                let parsed = min.parse::<usize>();
                expect!(
                    s,
                    parsed.is_ok(),
                    "OCI-Chunk-Min-Length {min:?} is not an integer"
                );
                let min = parsed.unwrap();
                if min > chunked.chunk1.len() {
                    chunked = ChunkedBlob::new(&s.rng, min * 2 - 2);
                }
            }
            let r = s
                .req(Method::PATCH, &post.relative_location())
                .header("Content-Type", OCTET_STREAM)
                .header("Content-Length", &chunked.chunk2.len().to_string())
                .header("Content-Range", &chunked.range2)
                .body(&chunked.chunk2)
                .send(s)
                .await?;
            expect_status!(s, r, 416);
        }
    );
    specify!(
        s,
        "Blob Upload Chunked",
        "PATCH request with first chunk should return 202",
        "§ Pushing a blob in chunks: 202 with Location and Range: 0-<end-of-range> (end-4a, end-5)",
        {
            let post = s
                .req(Method::POST, &s.path("blobs/uploads/"))
                .header("Content-Length", "0")
                .send(s)
                .await?;
            let location = post.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", post.describe());
            let session = post.relative_location();
            prev = Some(post);
            let r = s
                .req(Method::PATCH, &session)
                .header("Content-Type", OCTET_STREAM)
                .header("Content-Length", &chunked.chunk1.len().to_string())
                .header("Content-Range", &chunked.range1)
                .body(&chunked.chunk1)
                .send(s)
                .await?;
            expect_status!(s, r, 202);
            let range = r.header("Range");
            expect!(
                s,
                range == chunked.range1,
                "Range is {range:?}, want {:?}: {}",
                chunked.range1,
                r.describe()
            );
            last = Some(r);
        }
    );
    specify!(
        s,
        "Blob Upload Chunked",
        "Retry previous blob chunk should return 416",
        "§ Pushing a blob in chunks: out-of-order chunk → 416 (end-5)",
        {
            let p = prev.as_ref().ok_or_else(no_previous)?;
            let r = s
                .req(Method::PATCH, &p.relative_location())
                .header("Content-Type", OCTET_STREAM)
                .header("Content-Length", &chunked.chunk1.len().to_string())
                .header("Content-Range", &chunked.range1)
                .body(&chunked.chunk1)
                .send(s)
                .await?;
            expect_status!(s, r, 416);
        }
    );
    specify!(
        s,
        "Blob Upload Chunked",
        "Get on stale blob upload should return 204 with a range and location",
        "§ Pushing a blob in chunks: upload status, 204 with Location and Range (end-13)",
        {
            let p = prev.as_ref().ok_or_else(no_previous)?;
            let r = s.req(Method::GET, &p.relative_location()).send(s).await?;
            expect_status!(s, r, 204);
            let location = r.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", r.describe());
            let range = r.header("Range");
            expect!(
                s,
                range == chunked.range1,
                "Range is {range:?}, want {:?}: {}",
                chunked.range1,
                r.describe()
            );
            last = Some(r);
        }
    );
    specify!(
        s,
        "Blob Upload Chunked",
        "PATCH request with second chunk should return 202",
        "§ Pushing a blob in chunks (end-5)",
        {
            let l = last.as_ref().ok_or_else(no_previous)?;
            let r = s
                .req(Method::PATCH, &l.relative_location())
                .header("Content-Length", &chunked.chunk2.len().to_string())
                .header("Content-Range", &chunked.range2)
                .header("Content-Type", OCTET_STREAM)
                .body(&chunked.chunk2)
                .send(s)
                .await?;
            let location = r.header("Location");
            expect_status!(s, r, 202);
            expect!(s, !location.is_empty(), "no Location: {}", r.describe());
            last = Some(r);
        }
    );
    specify!(
        s,
        "Blob Upload Chunked",
        "PUT request with digest should return 201",
        "§ Pushing a blob in chunks: closing PUT, 201 with Location (end-6)",
        {
            let l = last.as_ref().ok_or_else(no_previous)?;
            let r = s
                .req(Method::PUT, &l.relative_location())
                .header("Content-Length", "0")
                .header("Content-Type", OCTET_STREAM)
                .query("digest", &chunked.blob.digest)
                .send(s)
                .await?;
            expect_status!(s, r, 201);
            let location = r.header("Location");
            expect!(s, !location.is_empty(), "no Location: {}", r.describe());
        }
    );

    // -- Cross-Repository Blob Mount
    specify!(
        s,
        "Cross-Repository Blob Mount",
        "Cross-mounting of a blob without the from argument should yield session id",
        "§ Mounting a blob from another repository: unable to mount → 202 (end-11)",
        {
            let r = s
                .req(
                    Method::POST,
                    &format!("/v2/{}/blobs/uploads/", s.crossmount),
                )
                .query("mount", &s.f.dummy_digest)
                .send(s)
                .await?;
            expect_status!(s, r, 202);
            expect!(
                s,
                !r.absolute_location().is_empty(),
                "no Location: {}",
                r.describe()
            );
        }
    );
    specify!(
        s,
        "Cross-Repository Blob Mount",
        "POST request to mount another repository's blob should return 201 or 202",
        "§ Mounting a blob from another repository (end-11)",
        {
            let r = s
                .req(
                    Method::POST,
                    &format!("/v2/{}/blobs/uploads/", s.crossmount),
                )
                .query("mount", &s.f.blob_a.digest)
                .query("from", &s.name)
                .send(s)
                .await?;
            expect_status_in!(s, r, [201, 202]);
            last = Some(r);
        }
    );
    let mount_status = last.as_ref().map(|l| l.status);
    if mount_status == Some(201) {
        specify!(
            s,
            "Cross-Repository Blob Mount",
            "GET request to test digest within cross-mount namespace should return 200",
            "§ Mounting a blob from another repository: 201 with the blob's Location (end-11, end-2)",
            {
                let l = last.as_ref().ok_or_else(no_previous)?;
                let want = format!("/v2/{}/blobs/{}", s.crossmount, s.f.blob_a.digest);
                let got = l.relative_location();
                expect!(s, got == want, "mount Location is {got:?}, want {want:?}");
                let r = s.req(Method::GET, &got).send(s).await?;
                expect_status!(s, r, 200);
            }
        );
    } else {
        skip!(
            s,
            "Cross-Repository Blob Mount",
            "GET request to test digest within cross-mount namespace should return 200",
            "§ Mounting a blob from another repository",
            format!("RunOnlyIf(mount returned 201): it returned {mount_status:?}")
        );
    }
    if mount_status == Some(202) {
        specify!(
            s,
            "Cross-Repository Blob Mount",
            "Cross-mounting of nonexistent blob should yield session id",
            "§ Mounting a blob from another repository: 202 starts an upload session (end-11)",
            {
                let l = last.as_ref().ok_or_else(no_previous)?;
                let prefix = format!("/v2/{}/blobs/uploads/", s.crossmount);
                let got = l.relative_location();
                expect!(
                    s,
                    got.starts_with(&prefix),
                    "Location {got:?} does not start with {prefix:?}"
                );
            }
        );
    } else {
        skip!(
            s,
            "Cross-Repository Blob Mount",
            "Cross-mounting of nonexistent blob should yield session id",
            "§ Mounting a blob from another repository",
            format!("RunOnlyIf(mount returned 202): it returned {mount_status:?}")
        );
    }
    // The suite runs these two only when OCI_AUTOMATIC_CROSSMOUNT is set (and the
    // mount above returned 201); "true" expects a mount without `from` to find the
    // blob (201), anything else expects an upload session (202).
    let automatic = std::env::var("OCI_AUTOMATIC_CROSSMOUNT").ok();
    let automatic_enabled = automatic
        .as_deref()
        .is_some_and(|v| matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True"));
    let run_automatic = automatic.is_some() && mount_status == Some(201);
    if run_automatic && automatic_enabled {
        specify!(
            s,
            "Cross-Repository Blob Mount",
            "Cross-mounting without from, and automatic content discovery enabled should return a 201",
            "§ Mounting a blob from another repository: \"MAY treat the from parameter as optional\" (end-11)",
            {
                let r = s
                    .req(
                        Method::POST,
                        &format!("/v2/{}/blobs/uploads/", s.crossmount),
                    )
                    .query("mount", &s.f.blob_a.digest)
                    .send(s)
                    .await?;
                expect_status!(s, r, 201);
            }
        );
    } else {
        skip!(
            s,
            "Cross-Repository Blob Mount",
            "Cross-mounting without from, and automatic content discovery enabled should return a 201",
            "§ Mounting a blob from another repository",
            "RunOnlyIf(OCI_AUTOMATIC_CROSSMOUNT set and true, mount returned 201)"
        );
    }
    if run_automatic && !automatic_enabled {
        specify!(
            s,
            "Cross-Repository Blob Mount",
            "Cross-mounting without from, and automatic content discovery disabled should return a 202",
            "§ Mounting a blob from another repository: unable to mount → 202 (end-11)",
            {
                let r = s
                    .req(
                        Method::POST,
                        &format!("/v2/{}/blobs/uploads/", s.crossmount),
                    )
                    .query("mount", &s.f.blob_a.digest)
                    .send(s)
                    .await?;
                expect_status!(s, r, 202);
            }
        );
    } else {
        skip!(
            s,
            "Cross-Repository Blob Mount",
            "Cross-mounting without from, and automatic content discovery disabled should return a 202",
            "§ Mounting a blob from another repository",
            "RunOnlyIf(OCI_AUTOMATIC_CROSSMOUNT set and false, mount returned 201)"
        );
    }

    // -- Manifest Upload
    specify!(
        s,
        "Manifest Upload",
        "GET nonexistent manifest should return 404",
        "§ Pulling manifests (end-3)",
        {
            let r = get(s, &format!("manifests/{NONEXISTENT_MANIFEST}")).await?;
            expect_status!(s, r, 404);
        }
    );
    specify!(
        s,
        "Manifest Upload",
        "PUT should accept a manifest upload",
        "§ Pushing Manifests: 201 with Location (end-7)",
        {
            for i in 0..4 {
                let r =
                    put_manifest(s, &format!("test{i}"), MT_MANIFEST, &s.f.manifests[1]).await?;
                let location = r.header("Location");
                expect!(s, !location.is_empty(), "no Location: {}", r.describe());
                expect_status!(s, r, 201);
            }
        }
    );
    specify!(
        s,
        "Manifest Upload",
        "Registry should accept a manifest upload with no layers",
        "§ Pushing Manifests: \"the list of blobs MAY be empty\" (end-7)",
        {
            let r =
                put_manifest(s, EMPTY_LAYER_TAG, MT_MANIFEST, &s.f.empty_layer_manifest).await?;
            if r.status == 201 {
                let location = r.header("Location");
                empty_layer_manifest_ref = location.clone();
                expect!(s, !location.is_empty(), "no Location: {}", r.describe());
                expect_status!(s, r, 201);
            } else {
                // The suite only warns when a manifest without layers is refused.
                s.warn(&format!(
                    "image manifest with no layers is not supported: {}",
                    r.describe()
                ));
            }
        }
    );
    specify!(
        s,
        "Manifest Upload",
        "GET request to manifest URL (digest) should yield 200 response",
        "§ Pulling manifests (end-3)",
        {
            let r = s
                .req(
                    Method::GET,
                    &s.path(&format!("manifests/{}", s.f.manifests[1].digest)),
                )
                .header("Accept", MT_MANIFEST)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
        }
    );

    // -- Teardown (manifests before blobs)
    specify!(
        s,
        "Teardown",
        "Delete manifest created in tests",
        "§ Deleting Manifests (end-9)",
        {
            let r = delete(s, &format!("manifests/{}", s.f.manifests[1].digest)).await?;
            expect_2xx_or!(s, r, [405]);
            if !empty_layer_manifest_ref.is_empty() {
                let r =
                    delete(s, &format!("manifests/{}", s.f.empty_layer_manifest.digest)).await?;
                expect_2xx_or!(s, r, [405]);
            }
        }
    );
    specify!(
        s,
        "Teardown",
        "Delete config blob created in tests",
        "§ Deleting Blobs (end-10)",
        {
            let r = delete(s, &format!("blobs/{}", s.f.configs[1].digest)).await?;
            expect_2xx_or!(s, r, [404, 405]);
        }
    );
    specify!(
        s,
        "Teardown",
        "Delete layer blob created in setup",
        "§ Deleting Blobs (end-10)",
        {
            let r = delete(s, &format!("blobs/{}", s.f.layer.digest)).await?;
            expect_2xx_or!(s, r, [404, 405]);
        }
    );
}

// ---- 03: content discovery ----------------------------------------------------------------

/// Check every referrer's annotations: exactly one, with the value that referrer was
/// pushed with (the suite's loop over `index.Manifests`).
fn check_referrer_annotations(s: &Suite, manifests: &[Value]) -> Result<(), String> {
    for m in manifests {
        let digest = m.get("digest").and_then(Value::as_str).unwrap_or_default();
        let annotations = m.get("annotations").and_then(Value::as_object);
        let n = annotations.map_or(0, Map::len);
        expect!(
            s,
            n == 1,
            "referrer {digest} has {n} annotations, want 1: {m}"
        );
        let got = annotations
            .and_then(|a| a.get(ANNOTATION_KEY))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let want = s.f.annotation_values.get(digest).map_or("", String::as_str);
        expect!(
            s,
            got == want,
            "referrer {digest}: annotation {ANNOTATION_KEY} is {got:?}, want {want:?}"
        );
    }
    Ok(())
}

/// `03_discovery_test.go`.
async fn discovery(s: &mut Suite) {
    s.workflow = "Content Discovery";
    let mut num_tags: usize = 4;
    let mut tag_list: Vec<String> = Vec::new();

    // -- Setup
    specify!(
        s,
        "Setup",
        "Populate registry with test blob",
        "§ Pushing a blob monolithically / POST then PUT (end-4a, end-6)",
        {
            let r = push_blob(s, &s.f.configs[2]).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Populate registry with test layer",
        "§ Pushing a blob monolithically / POST then PUT (end-4a, end-6)",
        {
            let r = push_blob(s, &s.f.layer).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Populate registry with test tags",
        "§ Pushing Manifests (end-7)",
        {
            for i in 0..num_tags {
                let tag = format!("test{i}");
                tag_list.push(tag.clone());
                let r = put_manifest(s, &tag, MT_MANIFEST, &s.f.manifests[2]).await?;
                expect_2xx_or!(s, r, []);
            }
            // The suite then re-reads the list, without checking the response.
            if let Ok(r) = get(s, "tags/list").await {
                tag_list = r.tag_list();
            }
        }
    );
    skip!(
        s,
        "Setup",
        "Populate registry with test tags (no push)",
        "OCI_TAG_LIST",
        "RunOnlyIfNot(runContentDiscoverySetup): the setup ran"
    );
    specify!(
        s,
        "Setup",
        "References setup",
        "§ Pushing Manifests with Subject: OCI-Subject (end-7); § Pushing Manifests: a subject need not exist yet",
        {
            expect!(
                s,
                s.f.empty_json.digest == EMPTY_JSON_DIGEST,
                "digest of {{}} is {}, want {EMPTY_JSON_DIGEST}",
                s.f.empty_json.digest
            );
            let m4 = s.f.manifests[4].digest.clone();
            let m3 = s.f.manifests[3].digest.clone();
            let r = push_blob(s, &s.f.empty_json).await?;
            expect_2xx_or!(s, r, []);
            // The referrer's blob, pushed before the image it refers to.
            let r = push_blob(s, &s.f.ref_blob_a).await?;
            expect_2xx_or!(s, r, []);
            // Artifact A (config.mediaType = artifact type), subject not pushed yet.
            let a = &s.f.refs_a_config;
            let r = put_manifest(s, &a.digest, MT_MANIFEST, a).await?;
            expect_2xx_or!(s, r, []);
            let subject = r.header("OCI-Subject");
            expect!(
                s,
                subject == m4,
                "OCI-Subject is {subject:?}, want {m4}: {}",
                r.describe()
            );
            // Artifact A (artifactType, config = empty descriptor).
            let a = &s.f.refs_a_layer;
            let r = put_manifest(s, &a.digest, MT_MANIFEST, a).await?;
            expect_2xx_or!(s, r, []);
            let subject = r.header("OCI-Subject");
            expect!(
                s,
                subject == m4,
                "OCI-Subject is {subject:?}, want {m4}: {}",
                r.describe()
            );
            // The index artifact.
            let i = &s.f.refs_index;
            let r = put_manifest(s, &i.digest, MT_INDEX, i).await?;
            expect_2xx_or!(s, r, []);
            let subject = r.header("OCI-Subject");
            expect!(
                s,
                subject == m4,
                "OCI-Subject is {subject:?}, want {m4}: {}",
                r.describe()
            );
            // The image the referrers point at.
            let r = push_blob(s, &s.f.configs[4]).await?;
            expect_2xx_or!(s, r, []);
            let r = push_blob(s, &s.f.layer).await?;
            expect_2xx_or!(s, r, []);
            let r = put_manifest(s, TEST_TAG, MT_MANIFEST, &s.f.manifests[4]).await?;
            expect_2xx_or!(s, r, []);
            // The referrer's blob, pushed after the image.
            let r = push_blob(s, &s.f.ref_blob_b).await?;
            expect_2xx_or!(s, r, []);
            let b = &s.f.refs_b_config;
            let r = put_manifest(s, &b.digest, MT_MANIFEST, b).await?;
            expect_2xx_or!(s, r, []);
            let subject = r.header("OCI-Subject");
            expect!(
                s,
                subject == m4,
                "OCI-Subject is {subject:?}, want {m4}: {}",
                r.describe()
            );
            let b = &s.f.refs_b_layer;
            let r = put_manifest(s, &b.digest, MT_MANIFEST, b).await?;
            expect_2xx_or!(s, r, []);
            let subject = r.header("OCI-Subject");
            expect!(
                s,
                subject == m4,
                "OCI-Subject is {subject:?}, want {m4}: {}",
                r.describe()
            );
            // A referrer whose subject (manifests[3]) is not in the repository.
            let c = &s.f.refs_c_layer;
            let r = put_manifest(s, &c.digest, MT_MANIFEST, c).await?;
            expect_2xx_or!(s, r, []);
            let subject = r.header("OCI-Subject");
            expect!(
                s,
                subject == m3,
                "OCI-Subject is {subject:?}, want {m3}: {}",
                r.describe()
            );
        }
    );

    // -- Test content discovery endpoints (listing tags)
    specify!(
        s,
        "Test content discovery endpoints (listing tags)",
        "GET request to list tags should yield 200 response",
        "§ Listing Tags (end-8a)",
        {
            let r = get(s, "tags/list").await?;
            expect_status!(s, r, 200);
            tag_list = r.tag_list();
            num_tags = tag_list.len();
        }
    );
    specify!(
        s,
        "Test content discovery endpoints (listing tags)",
        "GET number of tags should be limitable by `n` query parameter",
        "§ Listing Tags: `n` (end-8b)",
        {
            let n = num_tags / 2;
            let r = s
                .req(Method::GET, &s.path("tags/list"))
                .query("n", &n.to_string())
                .send(s)
                .await?;
            expect_status!(s, r, 200);
            tag_list = r.tag_list();
            expect!(
                s,
                tag_list.len() == n,
                "{} tags returned for n={n}: {}",
                tag_list.len(),
                r.describe()
            );
        }
    );
    specify!(
        s,
        "Test content discovery endpoints (listing tags)",
        "GET start of tag is set by `last` query parameter",
        "§ Listing Tags: `last` is excluded, up to `n` tags after it (end-8b)",
        {
            let n = num_tags / 2;
            let r = s
                .req(Method::GET, &s.path("tags/list"))
                .query("n", &n.to_string())
                .send(s)
                .await?;
            expect_status!(s, r, 200);
            tag_list = r.tag_list();
            let last = n.checked_sub(1).and_then(|i| tag_list.get(i)).cloned();
            expect!(
                s,
                last.is_some(),
                "no tag at position n-1 = {n}-1 of {tag_list:?}"
            );
            let last = last.unwrap();
            let r = s
                .req(Method::GET, &s.path("tags/list"))
                .query("n", &n.to_string())
                .query("last", &last)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
            tag_list = r.tag_list();
            expect!(
                s,
                tag_list.len() <= n,
                "{} tags returned for n={n}: {}",
                tag_list.len(),
                r.describe()
            );
            expect!(
                s,
                !tag_list.contains(&last),
                "tags after {last:?} include it: {tag_list:?}"
            );
        }
    );

    // -- Test content discovery endpoints (listing references)
    specify!(
        s,
        "Test content discovery endpoints (listing references)",
        "GET request to nonexistent blob should result in empty 200 response",
        "§ Listing Referrers: no match → empty list, never 404 (end-12a)",
        {
            let r = get(s, &format!("referrers/{}", s.f.dummy_digest)).await?;
            expect_status!(s, r, 200);
            let ct = r.header("Content-Type");
            expect!(s, ct == MT_INDEX, "Content-Type is {ct:?}, want {MT_INDEX}");
            let manifests = r.index_manifests();
            expect!(s, manifests.is_ok(), "{}", manifests.as_ref().unwrap_err());
            let manifests = manifests.unwrap();
            expect!(
                s,
                manifests.is_empty(),
                "{} referrers, want none: {}",
                manifests.len(),
                r.describe()
            );
        }
    );
    specify!(
        s,
        "Test content discovery endpoints (listing references)",
        "GET request to existing blob should yield 200",
        "§ Listing Referrers: descriptors with artifactType and annotations (end-12a)",
        {
            let r = get(s, &format!("referrers/{}", s.f.manifests[4].digest)).await?;
            expect_status!(s, r, 200);
            let ct = r.header("Content-Type");
            expect!(s, ct == MT_INDEX, "Content-Type is {ct:?}, want {MT_INDEX}");
            let manifests = r.index_manifests();
            expect!(s, manifests.is_ok(), "{}", manifests.as_ref().unwrap_err());
            let manifests = manifests.unwrap();
            expect!(
                s,
                manifests.len() == 5,
                "{} referrers, want 5: {}",
                manifests.len(),
                r.describe()
            );
            expect!(
                s,
                manifests[0].get("digest") != manifests[1].get("digest"),
                "the first two referrers have the same digest: {}",
                r.describe()
            );
            check_referrer_annotations(s, &manifests)?;
        }
    );
    specify!(
        s,
        "Test content discovery endpoints (listing references)",
        "GET request to existing blob with filter should yield 200",
        "§ Listing Referrers: artifactType filter and OCI-Filters-Applied (end-12b)",
        {
            let r = s
                .req(
                    Method::GET,
                    &s.path(&format!("referrers/{}", s.f.manifests[4].digest)),
                )
                .query("artifactType", REF_ARTIFACT_TYPE_A)
                .send(s)
                .await?;
            expect_status!(s, r, 200);
            let ct = r.header("Content-Type");
            expect!(s, ct == MT_INDEX, "Content-Type is {ct:?}, want {MT_INDEX}");
            let manifests = r.index_manifests();
            expect!(s, manifests.is_ok(), "{}", manifests.as_ref().unwrap_err());
            let manifests = manifests.unwrap();
            let applied = r.header("OCI-Filters-Applied");
            if applied.is_empty() {
                expect!(
                    s,
                    manifests.len() == 5,
                    "{} referrers, want 5 (unfiltered): {}",
                    manifests.len(),
                    r.describe()
                );
                check_referrer_annotations(s, &manifests)?;
                s.warn("filtering by artifact-type is not implemented");
                return Ok(());
            }
            expect!(
                s,
                manifests.len() == 2,
                "{} referrers, want 2 (filtered): {}",
                manifests.len(),
                r.describe()
            );
            expect!(
                s,
                applied == ARTIFACT_TYPE_FILTER,
                "OCI-Filters-Applied is {applied:?}, want {ARTIFACT_TYPE_FILTER:?}"
            );
            check_referrer_annotations(s, &manifests)?;
        }
    );
    specify!(
        s,
        "Test content discovery endpoints (listing references)",
        "GET request to missing manifest should yield 200",
        "§ Listing Referrers: referrers of a subject that does not exist (end-12a)",
        {
            let r = get(s, &format!("referrers/{}", s.f.manifests[3].digest)).await?;
            expect_status!(s, r, 200);
            let ct = r.header("Content-Type");
            expect!(s, ct == MT_INDEX, "Content-Type is {ct:?}, want {MT_INDEX}");
            let manifests = r.index_manifests();
            expect!(s, manifests.is_ok(), "{}", manifests.as_ref().unwrap_err());
            let manifests = manifests.unwrap();
            expect!(
                s,
                manifests.len() == 1,
                "{} referrers, want 1: {}",
                manifests.len(),
                r.describe()
            );
            let got = manifests[0]
                .get("digest")
                .and_then(Value::as_str)
                .unwrap_or_default();
            expect!(
                s,
                got == s.f.refs_c_layer.digest,
                "referrer is {got}, want {}",
                s.f.refs_c_layer.digest
            );
        }
    );

    // -- Teardown (manifests before blobs)
    specify!(
        s,
        "Teardown",
        "Delete created manifest & associated tags",
        "§ Deleting Manifests (end-9)",
        {
            let references = [
                &s.f.refs_index.digest,
                &s.f.manifests[2].digest,
                &s.f.manifests[4].digest,
                &s.f.refs_a_config.digest,
                &s.f.refs_a_layer.digest,
                &s.f.refs_b_config.digest,
                &s.f.refs_b_layer.digest,
                &s.f.refs_c_layer.digest,
            ];
            for d in references {
                let r = delete(s, &format!("manifests/{d}")).await?;
                expect_2xx_or!(s, r, [404, 405]);
            }
        }
    );
    specify!(
        s,
        "Teardown",
        "Delete config blob created in tests",
        "§ Deleting Blobs (end-10)",
        {
            let r = delete(s, &format!("blobs/{}", s.f.configs[2].digest)).await?;
            expect_2xx_or!(s, r, [404, 405]);
        }
    );
    specify!(
        s,
        "Teardown",
        "Delete layer blob created in setup",
        "§ Deleting Blobs (end-10)",
        {
            let r = delete(s, &format!("blobs/{}", s.f.layer.digest)).await?;
            expect_2xx_or!(s, r, [404, 405]);
        }
    );
    specify!(
        s,
        "Teardown",
        "References teardown",
        "§ Deleting Manifests (end-9); § Deleting Blobs (end-10)",
        {
            let manifests = [
                &s.f.refs_index.digest,
                &s.f.refs_a_config.digest,
                &s.f.refs_a_layer.digest,
                &s.f.manifests[4].digest,
                &s.f.refs_b_config.digest,
                &s.f.refs_b_layer.digest,
            ];
            for d in manifests {
                let r = delete(s, &format!("manifests/{d}")).await?;
                expect_2xx_or!(s, r, [404, 405]);
            }
            let blobs = [
                &s.f.configs[4].digest,
                &s.f.ref_blob_a.digest,
                &s.f.ref_blob_b.digest,
                &s.f.empty_json.digest,
            ];
            for d in blobs {
                let r = delete(s, &format!("blobs/{d}")).await?;
                expect_2xx_or!(s, r, [404, 405]);
            }
        }
    );
}

// ---- 04: content management -------------------------------------------------------------

/// `04_management_test.go`.
async fn management(s: &mut Suite) {
    s.workflow = "Content Management";
    let mut tag_to_delete = String::new();
    let mut num_tags: usize = 0;
    let mut blob_delete_allowed = true;

    // -- Setup
    specify!(
        s,
        "Setup",
        "Populate registry with test config blob",
        "§ Pushing a blob monolithically / POST then PUT (end-4a, end-6)",
        {
            let r = push_blob(s, &s.f.configs[3]).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Populate registry with test layer",
        "§ Pushing a blob monolithically / POST then PUT (end-4a, end-6)",
        {
            let r = push_blob(s, &s.f.layer).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Populate registry with test tag",
        "§ Pushing Manifests (end-7)",
        {
            tag_to_delete = TEST_TAG.to_owned();
            let r = put_manifest(s, &tag_to_delete, MT_MANIFEST, &s.f.manifests[3]).await?;
            expect_2xx_or!(s, r, []);
        }
    );
    specify!(
        s,
        "Setup",
        "Check how many tags there are before anything gets deleted",
        "§ Listing Tags (end-8a)",
        {
            let r = get(s, "tags/list").await?;
            expect_status!(s, r, 200);
            let tags = r.parse_tag_list();
            expect!(s, tags.is_ok(), "{}", tags.as_ref().unwrap_err());
            num_tags = tags.unwrap().len();
        }
    );

    // -- Manifest delete
    specify!(
        s,
        "Manifest delete",
        "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)",
        "§ Deleting tags (end-9)",
        {
            let r = delete(s, &format!("manifests/{tag_to_delete}")).await?;
            expect_status_in!(s, r, [400, 202, 405]);
            if r.status == 400 {
                let codes = r.error_codes();
                expect!(s, codes.is_ok(), "{}", codes.as_ref().unwrap_err());
                let codes = codes.unwrap();
                expect!(s, !codes.is_empty(), "no error entries: {}", r.describe());
                expect!(
                    s,
                    codes[0] == "UNSUPPORTED",
                    "error code is {:?}, want UNSUPPORTED",
                    codes[0]
                );
            }
        }
    );
    specify!(
        s,
        "Manifest delete",
        "DELETE request to manifest (digest) should yield 202 response unless already deleted",
        "§ Deleting Manifests (end-9)",
        {
            let r = delete(s, &format!("manifests/{}", s.f.manifests[3].digest)).await?;
            expect_status_in!(s, r, [202, 404]);
        }
    );
    specify!(
        s,
        "Manifest delete",
        "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed",
        "§ Deleting Manifests: a GET afterwards returns 404 (end-3)",
        {
            let r = get(s, &format!("manifests/{}", s.f.manifests[3].digest)).await?;
            expect_status_in!(s, r, [404, 200]);
        }
    );
    specify!(
        s,
        "Manifest delete",
        "GET request to tags list should reflect manifest deletion",
        "§ Deleting tags / § Listing Tags (end-8a)",
        {
            let r = get(s, "tags/list").await?;
            expect_status!(s, r, 200);
            let tags = r.parse_tag_list();
            expect!(s, tags.is_ok(), "{}", tags.as_ref().unwrap_err());
            let tags = tags.unwrap();
            expect!(
                s,
                tags.len() < num_tags,
                "{} tags after the delete, {num_tags} before: {tags:?}",
                tags.len()
            );
        }
    );

    // -- Blob delete
    specify!(
        s,
        "Blob delete",
        "DELETE request to blob URL should yield 202 response",
        "§ Deleting Blobs (end-10)",
        {
            let r = delete(s, &format!("blobs/{}", s.f.configs[3].digest)).await?;
            expect_status_in!(s, r, [202, 404, 405]);
            let r = delete(s, &format!("blobs/{}", s.f.layer.digest)).await?;
            expect_status_in!(s, r, [202, 404, 405]);
            if r.status == 405 {
                blob_delete_allowed = false;
            }
        }
    );
    if blob_delete_allowed {
        specify!(
            s,
            "Blob delete",
            "GET request to deleted blob URL should yield 404 response",
            "§ Deleting Blobs / § Pulling blobs (end-2)",
            {
                let r = get(s, &format!("blobs/{}", s.f.configs[3].digest)).await?;
                expect_status!(s, r, 404);
            }
        );
    } else {
        skip!(
            s,
            "Blob delete",
            "GET request to deleted blob URL should yield 404 response",
            "§ Deleting Blobs",
            "RunOnlyIf(blobDeleteAllowed): blob deletion answered 405"
        );
    }

    // -- Teardown: none in the suite.
}

// ---- the tests ---------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Workflow {
    Pull,
    Push,
    ContentDiscovery,
    ContentManagement,
}

async fn run(workflows: &[Workflow]) {
    let mut s = Suite::start().await;
    for w in workflows {
        match w {
            Workflow::Pull => pull(&mut s).await,
            Workflow::Push => push(&mut s).await,
            Workflow::ContentDiscovery => discovery(&mut s).await,
            Workflow::ContentManagement => management(&mut s).await,
        }
    }
    s.finish();
}

/// The suite as run for certification: all four workflows, in order, against one
/// registry (`OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1
/// OCI_TEST_CONTENT_MANAGEMENT=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_all_four_workflows() {
    run(&[
        Workflow::Pull,
        Workflow::Push,
        Workflow::ContentDiscovery,
        Workflow::ContentManagement,
    ])
    .await;
}

/// `OCI_TEST_PULL=1` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_pull() {
    run(&[Workflow::Pull]).await;
}

/// `OCI_TEST_PUSH=1` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_push() {
    run(&[Workflow::Push]).await;
}

/// `OCI_TEST_CONTENT_DISCOVERY=1` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_content_discovery() {
    run(&[Workflow::ContentDiscovery]).await;
}

/// `OCI_TEST_CONTENT_MANAGEMENT=1` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_content_management() {
    run(&[Workflow::ContentManagement]).await;
}

/// The fixtures themselves: the layer is a well-formed tar.gz, base64 and JSON match
/// what Go writes, and the empty descriptor has its well-known digest.
#[test]
fn fixtures_are_well_formed() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"hello world"), "aGVsbG8gd29ybGQ=");
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(digest_of(b"{}"), EMPTY_JSON_DIGEST);
    assert_eq!(
        String::from_utf8(go_json(&json!({"a": [], "b": {"c": 1}}))).unwrap(),
        "{\n\t\"a\": [],\n\t\"b\": {\n\t\t\"c\": 1\n\t}\n}"
    );
    let gz = tar_gz("x.txt", b"hi\n");
    assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
    let rng = Rng(Cell::new(7));
    let f = Fixtures::new(&rng);
    assert_eq!(f.configs.len(), NUM_FIXTURES);
    assert_eq!(f.manifests.len(), NUM_FIXTURES);
    let m: Value = serde_json::from_slice(&f.manifests[0].content).unwrap();
    assert_eq!(m["config"]["data"], base64(&f.configs[0].content));
    assert_eq!(m["layers"][0]["newUnspecifiedField"], Value::Null);
    let c = ChunkedBlob::new(&rng, CHUNKED_BLOB_SIZE);
    assert_eq!((c.chunk1.len(), c.chunk2.len()), (22, 20));
    assert_eq!((c.range1.as_str(), c.range2.as_str()), ("0-21", "22-41"));
    let uuid = rng.uuid();
    assert_eq!(uuid.len(), 36);
    assert!(
        uuid.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
    );
}
