//! In-process tests of every distribution-spec endpoint (end-1 … end-13), success
//! and failure side by side. Each test quotes the spec section it checks.

// Test helpers panic on anything unexpected; that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use berth_oci::Digest;
use berth_registry::{Limits, Registry};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

struct App {
    router: Router,
    dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    /// The error codes of an error envelope.
    fn codes(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn app_with(limits: Limits) -> App {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path(), limits).await.unwrap();
    App {
        router: berth_server::router(Arc::new(registry)),
        dir,
    }
}

async fn app() -> App {
    app_with(Limits::default()).await
}

impl App {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Resp {
        self.send(Method::GET, uri, &[], vec![]).await
    }

    /// Push a blob monolithically; returns its digest.
    async fn blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        d
    }

    async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[("content-length", "0")],
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        r.header("location").to_owned()
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
        .await
    }
}

fn descriptor(media_type: &str, data_digest: &Digest, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": data_digest.to_string(), "size": size})
}

/// An OCI image manifest over a pushed config and layer.
async fn image(app: &App, repo: &str, seed: &str) -> Vec<u8> {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer {seed}");
    let c = app.blob(repo, config.as_bytes()).await;
    let l = app.blob(repo, layer.as_bytes()).await;
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &c, config.len()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &l, layer.len())],
    }))
    .unwrap()
}

// ---- end-1 -----------------------------------------------------------------------

/// § Determining Support: `GET /v2/` answers 200; Docker clients need the API
/// version header on every response.
#[tokio::test]
async fn base_endpoint() {
    let app = app().await;
    let r = app.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    let r = app.get("/v2/nothing-here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
}

/// `/healthz` answers while the process runs; `/readyz` says whether storage can
/// be used, and when it cannot says 503 without naming paths or causes.
#[tokio::test]
async fn health_and_readiness() {
    let app = app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    let r = app.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ready");
    // The blob store's directory disappears: not ready.
    let blobs = app.dir.path().join("blobs");
    let moved = app.dir.path().join("blobs-away");
    std::fs::rename(&blobs, &moved).unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json(), serde_json::json!({ "status": "unavailable" }));
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    std::fs::rename(&moved, &blobs).unwrap();
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
}

// ---- end-4b: monolithic POST ----------------------------------------------------------

/// § Single POST: "Successful completion of the request MUST return a 201 Created
/// and MUST include the following header: Location"; the digest MUST match.
#[tokio::test]
async fn monolithic_post_good_and_bad() {
    let app = app().await;
    let data = b"hello blob";
    let d = Digest::sha256_of(data);
    let r = app
        .send(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={d}"),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/a/blobs/{d}"));
    assert_eq!(r.header("docker-content-digest"), d.to_string());

    // Wrong digest: DIGEST_INVALID, and nothing becomes visible.
    let other = Digest::sha256_of(b"something else");
    let r = app
        .send(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={other}"),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);
    assert_eq!(
        app.get(&format!("/v2/a/blobs/{other}")).await.status,
        StatusCode::NOT_FOUND
    );

    // Malformed digest and unsupported algorithm.
    for bad in ["sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "nope"] {
        let r = app
            .send(
                Method::POST,
                &format!("/v2/a/blobs/uploads/?digest={bad}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.codes(), ["DIGEST_INVALID"], "{bad}");
    }

    // sha512 is supported.
    let d512 = Digest::of(berth_oci::Algorithm::Sha512, data);
    let r = app
        .send(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={d512}"),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(app.get(&format!("/v2/a/blobs/{d512}")).await.body, data);

    // No temp files left by the failures.
    assert_eq!(
        std::fs::read_dir(app.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

// ---- end-4a, end-5, end-6, end-13: sessions and chunks ------------------------------

/// § Pushing a blob in chunks: 202 with Location and `Range: 0-<end>`; chunks in
/// order; "If a chunk is uploaded out of order, the registry MUST respond with a
/// 416"; GET status answers 204 with Location and Range; PUT closes with 201.
#[tokio::test]
async fn chunked_upload_with_out_of_order_and_overlap() {
    let app = app().await;
    let loc = app.start_upload("repo/x").await;
    assert!(loc.starts_with("/v2/repo/x/blobs/uploads/"));

    let r = app
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"01234".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-4");
    assert_eq!(r.header("location"), loc);
    assert!(!r.header("docker-upload-uuid").is_empty());

    // A gap (out of order) and an overlap: 416 with the current Range.
    for range in ["7-9", "3-5", "0-2"] {
        let r = app
            .send(
                Method::PATCH,
                &loc,
                &[("content-range", range)],
                b"xxx".to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.header("range"), "0-4", "{range}");
        assert_eq!(r.header("location"), loc);
    }
    // Malformed Content-Range.
    let r = app
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "five-six")],
            b"56".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["BLOB_UPLOAD_INVALID"]);
    // Range that disagrees with the body length: SIZE_INVALID, upload unchanged.
    let r = app
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "5-9")],
            b"56".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["SIZE_INVALID"]);

    // end-13: status.
    let r = app.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-4");
    assert_eq!(r.header("location"), loc);

    // A streamed chunk without Content-Range, as skopeo/podman/docker send it.
    let r = app.send(Method::PATCH, &loc, &[], b"567".to_vec()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-7");

    // Close with a final chunk.
    let whole = b"0123456789";
    let d = Digest::sha256_of(whole);
    let r = app
        .send(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-range", "8-9")],
            b"89".to_vec(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("location"), format!("/v2/repo/x/blobs/{d}"));
    assert_eq!(app.get(&format!("/v2/repo/x/blobs/{d}")).await.body, whole);
    // The session is over.
    let r = app.get(&loc).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["BLOB_UPLOAD_UNKNOWN"]);
}

/// § POST then PUT: the whole blob in the closing PUT; a wrong digest is
/// DIGEST_INVALID and ends the session.
#[tokio::test]
async fn post_then_put_and_wrong_digest() {
    let app = app().await;
    let loc = app.start_upload("a").await;
    let d = Digest::sha256_of(b"whole");
    let r = app
        .send(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[],
            b"whole".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let loc = app.start_upload("a").await;
    let r = app
        .send(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[],
            b"not whole".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);
    assert_eq!(app.get(&loc).await.status, StatusCode::NOT_FOUND);

    // Missing digest parameter.
    let loc = app.start_upload("a").await;
    let r = app.send(Method::PUT, &loc, &[], b"x".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);
}

/// Unknown sessions, sessions of another repository, and DELETE of a session.
#[tokio::test]
async fn upload_unknown_and_cancel() {
    let app = app().await;
    let unknown = "/v2/a/blobs/uploads/7b0e4d1c-58f8-4c5e-9d36-6f0e8e0f0a11";
    for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
        let r = app.send(method.clone(), unknown, &[], vec![]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(r.codes(), ["BLOB_UPLOAD_UNKNOWN"], "{method}");
    }
    let r = app.get("/v2/a/blobs/uploads/not-a-uuid").await;
    assert_eq!(r.codes(), ["BLOB_UPLOAD_UNKNOWN"]);

    let loc = app.start_upload("a").await;
    let elsewhere = loc.replace("/v2/a/", "/v2/b/");
    assert_eq!(app.get(&elsewhere).await.status, StatusCode::NOT_FOUND);

    let r = app.send(Method::DELETE, &loc, &[], vec![]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&loc).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        std::fs::read_dir(app.dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

// ---- end-11: mount ---------------------------------------------------------------

/// § Mounting a blob: 201 when mounted; "if a registry … is unable to mount the
/// requested blob, it SHOULD return a 202" (an upload session, never an error).
#[tokio::test]
async fn cross_repository_mount() {
    let app = app().await;
    let d = app.blob("src", b"shared layer").await;
    let r = app
        .send(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/dst/blobs/{d}"));
    assert_eq!(
        app.get(&format!("/v2/dst/blobs/{d}")).await.body,
        b"shared layer"
    );

    // Not in the source: a normal upload session.
    let missing = Digest::sha256_of(b"absent");
    let r = app
        .send(
            Method::POST,
            &format!("/v2/dst2/blobs/uploads/?mount={missing}&from=src"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.header("location").to_owned();
    assert_eq!(app.get(&loc).await.status, StatusCode::NO_CONTENT);
    // Without `from`, or from a repository that does not exist: also 202.
    for q in [format!("mount={d}"), format!("mount={d}&from=nowhere")] {
        let r = app
            .send(
                Method::POST,
                &format!("/v2/dst3/blobs/uploads/?{q}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{q}");
    }
    // An invalid source name is NAME_INVALID.
    let r = app
        .send(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=Bad//Name"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["NAME_INVALID"]);
}

// ---- end-2, end-10: blobs ----------------------------------------------------------

/// § Pulling blobs (200, digest header, Range per RFC 9110) and § Deleting Blobs
/// (202, then 404).
#[tokio::test]
async fn blob_get_head_range_delete() {
    let app = app().await;
    let data = b"0123456789abcdef";
    let d = app.blob("a", data).await;
    let url = format!("/v2/a/blobs/{d}");

    let r = app.get(&url).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, data);
    assert_eq!(r.header("docker-content-digest"), d.to_string());
    assert_eq!(r.header("content-length"), "16");

    let r = app.send(Method::HEAD, &url, &[], vec![]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), "16");
    assert!(r.body.is_empty());

    let r = app
        .send(Method::GET, &url, &[("range", "bytes=4-7")], vec![])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, b"4567");
    assert_eq!(r.header("content-range"), "bytes 4-7/16");
    let r = app
        .send(Method::GET, &url, &[("range", "bytes=-3")], vec![])
        .await;
    assert_eq!(r.body, b"def");
    let r = app
        .send(Method::GET, &url, &[("range", "bytes=16-")], vec![])
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), "bytes */16");

    // Unknown blob, and a blob of another repository.
    let other = Digest::sha256_of(b"other");
    let r = app.get(&format!("/v2/a/blobs/{other}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["BLOB_UNKNOWN"]);
    assert_eq!(
        app.get(&format!("/v2/b/blobs/{d}")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .send(Method::HEAD, &format!("/v2/a/blobs/{other}"), &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = app.send(Method::DELETE, &url, &[], vec![]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(app.get(&url).await.status, StatusCode::NOT_FOUND);
    let r = app.send(Method::DELETE, &url, &[], vec![]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["BLOB_UNKNOWN"]);
}

// ---- end-3, end-7, end-9: manifests ---------------------------------------------------

/// § Pushing Manifests: 201 with Location and Docker-Content-Digest; "The registry
/// MUST store the manifest in the exact byte representation provided"; § Pulling
/// manifests by tag and digest, served with the pushed Content-Type.
#[tokio::test]
async fn manifest_put_get_head_exact_bytes() {
    let app = app().await;
    let m = image(&app, "a", "one").await;
    // Unusual but valid formatting must survive byte for byte.
    let mut pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&m).unwrap()).unwrap();
    pretty.extend_from_slice(b"\n\n");
    let d = Digest::sha256_of(&pretty);
    let r = app.put_manifest("a", "v1", OCI_MANIFEST, &pretty).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("docker-content-digest"), d.to_string());
    assert_eq!(r.header("location"), format!("/v2/a/manifests/{d}"));

    for reference in ["v1".to_owned(), d.to_string()] {
        let r = app
            .send(
                Method::GET,
                &format!("/v2/a/manifests/{reference}"),
                &[("accept", DOCKER_MANIFEST)],
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, pretty, "exact bytes by {reference}");
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), d.to_string());
        let r = app
            .send(
                Method::HEAD,
                &format!("/v2/a/manifests/{reference}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-length"), pretty.len().to_string());
        assert!(r.body.is_empty());
    }

    // PUT by digest: the digest must match the bytes.
    let r = app
        .put_manifest("a", &d.to_string(), OCI_MANIFEST, &pretty)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let wrong = Digest::sha256_of(b"x");
    let r = app
        .put_manifest("a", &wrong.to_string(), OCI_MANIFEST, &pretty)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);

    // Unknown manifests.
    for reference in ["nope".to_owned(), wrong.to_string()] {
        let r = app.get(&format!("/v2/a/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.codes(), ["MANIFEST_UNKNOWN"]);
    }
    let r = app.get("/v2/never/pushed/manifests/latest").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// `PUT /manifests/<digest>?tag=a&tag=b` tags the manifest with each tag.
#[tokio::test]
async fn manifest_put_by_digest_with_tags() {
    let app = app().await;
    let m = image(&app, "a", "t").await;
    let d = Digest::sha256_of(&m);
    let r = app
        .put_manifest("a", &format!("{d}?tag=one&tag=two"), OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        app.get("/v2/a/tags/list").await.json()["tags"],
        json!(["one", "two"])
    );
    let r = app
        .put_manifest("a", &format!("{d}?tag=-bad"), OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// § Push: "When a manifest is rejected for this reason, it MUST result in one or
/// more MANIFEST_BLOB_UNKNOWN errors" — one entry per missing digest here.
#[tokio::test]
async fn manifest_with_missing_blobs() {
    let app = app().await;
    let c = Digest::sha256_of(b"config");
    let l = Digest::sha256_of(b"layer");
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &c, 6),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &l, 5)],
    }))
    .unwrap();
    let r = app.put_manifest("a", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.codes(),
        ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]
    );
    let details: Vec<String> = r.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"]["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(details, [c.to_string(), l.to_string()]);
    // Nothing was stored: the tag does not exist.
    assert_eq!(
        app.get("/v2/a/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );

    // A blob in another repository does not count.
    app.blob("other", b"config").await;
    app.blob("other", b"layer").await;
    let r = app.put_manifest("a", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.codes().len(), 2);

    // Present blobs, but a descriptor size that disagrees with the stored blob:
    // clients would fail to verify the pull, so the push is refused.
    app.blob("a", b"config").await;
    app.blob("a", b"layer").await;
    let mut wrong = serde_json::from_slice::<Value>(&m).unwrap();
    wrong["layers"][0]["size"] = json!(99);
    let r = app
        .put_manifest(
            "a",
            "v1",
            OCI_MANIFEST,
            &serde_json::to_vec(&wrong).unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["MANIFEST_INVALID"]);
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("99")
    );
    assert_eq!(
        app.put_manifest("a", "v1", OCI_MANIFEST, &m).await.status,
        StatusCode::CREATED
    );

    // An index whose child manifest is not in the repository.
    let child = Digest::sha256_of(b"child");
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &child, 5)],
    }))
    .unwrap();
    let r = app.put_manifest("a", "idx", OCI_INDEX, &idx).await;
    assert_eq!(r.codes(), ["MANIFEST_BLOB_UNKNOWN"]);
}

/// Bodies that do not parse as their declared media type are MANIFEST_INVALID;
/// § Pushing Manifests: over the size limit → 413.
#[tokio::test]
async fn invalid_and_oversized_manifests() {
    let app = app_with(Limits {
        max_manifest_bytes: 2048,
        ..Limits::default()
    })
    .await;
    let good = image(&app, "a", "x").await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"{not json".to_vec()),
        (OCI_MANIFEST, b"[1,2]".to_vec()),
        (OCI_INDEX, good.clone()), // declared index, body says manifest
        ("application/vnd.docker.distribution.manifest.v1+prettyjws", b"{\"schemaVersion\":1}".to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#.to_vec()),
    ];
    for (ct, body) in cases {
        let r = app.put_manifest("a", "bad", ct, &body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            r.codes(),
            ["MANIFEST_INVALID"],
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    let mut big = serde_json::from_slice::<Value>(&good).unwrap();
    big["annotations"] = json!({"pad": "x".repeat(4096)});
    let r = app
        .put_manifest("a", "big", OCI_MANIFEST, &serde_json::to_vec(&big).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.codes(), ["MANIFEST_INVALID"]);
    // Invalid names and tags.
    let r = app.put_manifest("Bad", "v1", OCI_MANIFEST, &good).await;
    assert_eq!(r.codes(), ["NAME_INVALID"]);
    let r = app.put_manifest("a", ".v1", OCI_MANIFEST, &good).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["MANIFEST_INVALID"]);
    // A malformed tag names nothing: GET and HEAD find no manifest there (404).
    let r = app.get("/v2/a/manifests/.v1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["MANIFEST_UNKNOWN"]);
    let r = app
        .send(Method::HEAD, "/v2/a/manifests/.v1", &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // None of this disturbed what is stored.
    assert_eq!(app.get("/v2/a/tags/list").await.json()["tags"], json!([]));
}

/// Docker v2 schema 2 manifests and manifest lists are accepted and served with
/// their own media type even when `Accept` does not list it.
#[tokio::test]
async fn docker_media_types() {
    let app = app().await;
    let c = app.blob("d", b"{}").await;
    let l = app.blob("d", b"layer").await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", &c, 2),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", &l, 5)],
    }))
    .unwrap();
    let md = Digest::sha256_of(&m);
    assert_eq!(
        app.put_manifest("d", "img", DOCKER_MANIFEST, &m)
            .await
            .status,
        StatusCode::CREATED
    );
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": md.to_string(), "size": m.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    assert_eq!(
        app.put_manifest("d", "list", DOCKER_LIST, &list)
            .await
            .status,
        StatusCode::CREATED
    );
    let r = app
        .send(
            Method::GET,
            "/v2/d/manifests/list",
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), DOCKER_LIST);
    assert_eq!(r.body, list);
}

/// § Deleting tags (202; only the tag goes) and § Deleting Manifests (202; every
/// tag pointing at it then 404s).
#[tokio::test]
async fn delete_tag_and_manifest() {
    let app = app().await;
    let m = image(&app, "a", "del").await;
    let d = Digest::sha256_of(&m);
    app.put_manifest("a", "one", OCI_MANIFEST, &m).await;
    app.put_manifest("a", "two", OCI_MANIFEST, &m).await;

    let r = app
        .send(Method::DELETE, "/v2/a/manifests/one", &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.get("/v2/a/manifests/one").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v2/a/manifests/{d}")).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/v2/a/manifests/two").await.status, StatusCode::OK);
    let r = app
        .send(Method::DELETE, "/v2/a/manifests/one", &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["MANIFEST_UNKNOWN"]);

    let r = app
        .send(Method::DELETE, &format!("/v2/a/manifests/{d}"), &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.get(&format!("/v2/a/manifests/{d}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v2/a/manifests/two").await.status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .send(Method::DELETE, &format!("/v2/a/manifests/{d}"), &[], vec![])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The manifest read cache never serves an answer a change has made stale: every
/// read below follows reads that filled the cache (and the same sequence runs with
/// the cache off, which must give the same answers).
#[tokio::test]
async fn manifest_reads_follow_overwrites_and_deletes() {
    for cache_bytes in [8 << 20, 0] {
        let app = app_with(Limits {
            manifest_cache_bytes: cache_bytes,
            ..Limits::default()
        })
        .await;
        let first = image(&app, "c", "first").await;
        let second = image(&app, "c", "second").await;
        let (d1, d2) = (Digest::sha256_of(&first), Digest::sha256_of(&second));
        app.put_manifest("c", "t", OCI_MANIFEST, &first).await;
        app.put_manifest("c", "keep", OCI_MANIFEST, &first).await;
        for _ in 0..2 {
            assert_eq!(app.get("/v2/c/manifests/t").await.body, first);
            assert_eq!(app.get(&format!("/v2/c/manifests/{d1}")).await.body, first);
        }
        // Overwrite the tag: the very next read sees the new manifest.
        app.put_manifest("c", "t", OCI_MANIFEST, &second).await;
        let r = app.get("/v2/c/manifests/t").await;
        assert_eq!(r.body, second, "cache {cache_bytes}");
        assert_eq!(r.header("docker-content-digest"), d2.to_string());
        let head = app
            .send(Method::HEAD, "/v2/c/manifests/t", &[], vec![])
            .await;
        assert_eq!(head.header("docker-content-digest"), d2.to_string());
        // Delete the tag.
        app.send(Method::DELETE, "/v2/c/manifests/t", &[], vec![])
            .await;
        assert_eq!(
            app.get("/v2/c/manifests/t").await.status,
            StatusCode::NOT_FOUND
        );
        // Delete the first manifest by digest: it and the tag naming it are gone.
        assert_eq!(app.get("/v2/c/manifests/keep").await.body, first);
        app.send(
            Method::DELETE,
            &format!("/v2/c/manifests/{d1}"),
            &[],
            vec![],
        )
        .await;
        for uri in [
            format!("/v2/c/manifests/{d1}"),
            "/v2/c/manifests/keep".into(),
        ] {
            let r = app.get(&uri).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{uri}, cache {cache_bytes}"
            );
            assert_eq!(r.codes(), ["MANIFEST_UNKNOWN"]);
        }
        // The other manifest is untouched.
        assert_eq!(app.get(&format!("/v2/c/manifests/{d2}")).await.body, second);
    }
}

// ---- end-8: tags ---------------------------------------------------------------------

/// § Listing Tags: lexical order, `n`, `last`, `Link: <…>; rel="next"`, and "When
/// `n` is zero, this endpoint MUST return an empty list, and MUST NOT include a
/// Link header"; an unknown repository is 404 NAME_UNKNOWN.
#[tokio::test]
async fn tags_pagination() {
    let app = app().await;
    let m = image(&app, "t", "tags").await;
    for tag in ["c", "a", "B", "b", "d", "e"] {
        assert_eq!(
            app.put_manifest("t", tag, OCI_MANIFEST, &m).await.status,
            StatusCode::CREATED
        );
    }
    let r = app.get("/v2/t/tags/list").await;
    assert_eq!(
        r.json(),
        json!({"name": "t", "tags": ["a", "B", "b", "c", "d", "e"]})
    );
    assert!(r.headers.get("link").is_none());

    let r = app.get("/v2/t/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["a", "B"]));
    assert_eq!(
        r.header("link"),
        "</v2/t/tags/list?n=2&last=B>; rel=\"next\""
    );
    let r = app.get("/v2/t/tags/list?n=2&last=B").await;
    assert_eq!(r.json()["tags"], json!(["b", "c"]));
    let r = app.get("/v2/t/tags/list?n=2&last=d").await;
    assert_eq!(r.json()["tags"], json!(["e"]));
    assert!(r.headers.get("link").is_none());
    let r = app.get("/v2/t/tags/list?last=c").await;
    assert_eq!(r.json()["tags"], json!(["d", "e"]));
    let r = app.get("/v2/t/tags/list?n=0").await;
    assert_eq!(r.json()["tags"], json!([]));
    assert!(r.headers.get("link").is_none());

    let r = app.get("/v2/unknown/tags/list").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.codes(), ["NAME_UNKNOWN"]);
    let r = app.get("/v2/t/tags/list?n=lots").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// `GET /v2/_catalog` with `n`/`last` pagination.
#[tokio::test]
async fn catalog_pagination() {
    let app = app().await;
    for repo in ["zeta", "alpha", "mid/dle"] {
        image(&app, repo, repo).await;
    }
    let r = app.get("/v2/_catalog").await;
    assert_eq!(
        r.json(),
        json!({"repositories": ["alpha", "mid/dle", "zeta"]})
    );
    let r = app.get("/v2/_catalog?n=1").await;
    assert_eq!(r.json()["repositories"], json!(["alpha"]));
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?n=1&last=alpha>; rel=\"next\""
    );
    let r = app.get("/v2/_catalog?n=5&last=alpha").await;
    assert_eq!(r.json()["repositories"], json!(["mid/dle", "zeta"]));
}

// ---- end-12: referrers ----------------------------------------------------------------

/// § Pushing Manifests with Subject ("MUST respond with the response header
/// OCI-Subject") and § Listing Referrers (artifactType from the manifest or its
/// config, annotations copied, filter with OCI-Filters-Applied, empty index for an
/// unknown digest, 400 for a bad digest).
#[tokio::test]
async fn referrers_api() {
    let app = app().await;
    let subject = image(&app, "r", "subject").await;
    let sd = Digest::sha256_of(&subject);
    // Referrers may be pushed before their subject.
    let empty = app.blob("r", b"{}").await;
    let sig_blob = app.blob("r", b"signature").await;
    let referrer = |artifact_type: Option<&str>, config_type: &str, note: &str| {
        let mut v = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(config_type, &empty, 2),
            "layers": [descriptor("application/octet-stream", &sig_blob, 9)],
            "subject": descriptor(OCI_MANIFEST, &sd, subject.len()),
            "annotations": {"note": note},
        });
        if let Some(at) = artifact_type {
            v["artifactType"] = json!(at);
        }
        serde_json::to_vec(&v).unwrap()
    };
    let sig = referrer(
        Some("application/vnd.example.sig"),
        "application/vnd.oci.empty.v1+json",
        "sig",
    );
    let sbom = referrer(None, "application/vnd.example.sbom", "sbom");
    for (m, tag) in [(&sig, "sig"), (&sbom, "sbom")] {
        let r = app.put_manifest("r", tag, OCI_MANIFEST, m).await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.header("oci-subject"), sd.to_string());
    }
    app.put_manifest("r", "subject", OCI_MANIFEST, &subject)
        .await;
    let r = app.put_manifest("r", "plain", OCI_MANIFEST, &subject).await;
    assert!(r.headers.get("oci-subject").is_none());

    let r = app.get(&format!("/v2/r/referrers/{sd}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert!(r.headers.get("oci-filters-applied").is_none());
    let idx = r.json();
    assert_eq!(idx["schemaVersion"], 2);
    assert_eq!(idx["mediaType"], OCI_INDEX);
    let mut got: Vec<(String, String, String)> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_owned(),
                d["artifactType"].as_str().unwrap().to_owned(),
                d["annotations"]["note"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (
            Digest::sha256_of(&sig).to_string(),
            "application/vnd.example.sig".to_owned(),
            "sig".to_owned(),
        ),
        (
            Digest::sha256_of(&sbom).to_string(),
            "application/vnd.example.sbom".to_owned(),
            "sbom".to_owned(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    let sizes: Vec<u64> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.contains(&(sig.len() as u64)));

    let r = app
        .get(&format!(
            "/v2/r/referrers/{sd}?artifactType=application/vnd.example.sbom"
        ))
        .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        r.json()["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );

    // Unknown subject and unknown repository: 200 with an empty index, never 404.
    let unknown = Digest::sha256_of(b"nothing");
    for url in [
        format!("/v2/r/referrers/{unknown}"),
        format!("/v2/nope/referrers/{sd}"),
    ] {
        let r = app.get(&url).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["manifests"], json!([]));
    }
    let r = app.get("/v2/r/referrers/sha256:123").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.codes(), ["DIGEST_INVALID"]);

    // Deleting a referrer removes it from the list.
    let sig_d = Digest::sha256_of(&sig);
    app.send(
        Method::DELETE,
        &format!("/v2/r/manifests/{sig_d}"),
        &[],
        vec![],
    )
    .await;
    let r = app.get(&format!("/v2/r/referrers/{sd}")).await;
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
}

/// Methods an endpoint does not support are 405 UNSUPPORTED.
#[tokio::test]
async fn unsupported_methods() {
    let app = app().await;
    for (method, uri) in [
        (Method::POST, "/v2/a/manifests/latest"),
        (Method::PATCH, "/v2/a/tags/list"),
        (Method::PUT, "/v2/_catalog"),
        (
            Method::POST,
            "/v2/a/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ] {
        let r = app.send(method.clone(), uri, &[], vec![]).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.codes(), ["UNSUPPORTED"]);
    }
}

/// "An upload session survives a server restart and can be continued."
#[tokio::test]
async fn upload_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let loc;
    {
        let registry = Registry::open(dir.path(), Limits::default()).await.unwrap();
        let app = App {
            router: berth_server::router(Arc::new(registry)),
            dir: tempfile::tempdir().unwrap(),
        };
        loc = app.start_upload("a").await;
        let r = app
            .send(
                Method::PATCH,
                &loc,
                &[("content-range", "0-2")],
                b"abc".to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let registry = Registry::open(dir.path(), Limits::default()).await.unwrap();
    let app = App {
        router: berth_server::router(Arc::new(registry)),
        dir,
    };
    let r = app.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-2");
    let d = Digest::sha256_of(b"abcdef");
    let r = app
        .send(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-range", "3-5")],
            b"def".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(app.get(&format!("/v2/a/blobs/{d}")).await.body, b"abcdef");
}
