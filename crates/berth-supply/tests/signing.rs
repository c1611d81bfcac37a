//! Simple-signing signatures, in-toto attestations in DSSE envelopes, and the OCI
//! manifests that carry them: checked against cosign's and sigstore's own test
//! vectors, the pinned specs (quoted per test), berth's manifest validator and an
//! independent implementation (the `openssl` command line).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_oci::media_type::{OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};
use berth_oci::schema::{SchemaKind, validate};
use berth_oci::{Descriptor, Digest};
use berth_supply::SupplyError;
use berth_supply::attach::{
    self, ATTESTATION_ARTIFACT_TYPE, Blob, CREATED_ANNOTATION, DSSE_MEDIA_TYPE,
    PREDICATE_TYPE_ANNOTATION, SBOM_SPDX_ARTIFACT_TYPE, SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT_TYPE, SIMPLE_SIGNING_MEDIA_TYPE, layers_of, referrer_manifest, tag_for,
    tag_scheme_manifest,
};
use berth_supply::attestation::{
    self, Envelope, check_statement, pae, predicate_type_uri, sign_envelope, statement,
    verify_envelope,
};
use berth_supply::keys::{generate, parse_public_key, public_key_pem};
use berth_supply::signature::{self, Claims, check_claims, parse_payload, payload, sign, verify};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};

/// The digest sigstore's payload tests use.
const D34DB33F: &str = "sha256:d34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33f";

fn digest(s: &str) -> Digest {
    s.parse().unwrap()
}

fn no_annotations() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is needed by these tests")
}

/// `openssl dgst -sha256 -verify pub.pem -signature sig.der message`.
fn openssl_verify(key: &SigningKey, message: &[u8], der: &[u8]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pub.pem"),
        public_key_pem(key.verifying_key()).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("sig.der"), der).unwrap();
    std::fs::write(dir.path().join("message"), message).unwrap();
    let out = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.der",
            "message",
        ],
        dir.path(),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

// ---------------------------------------------------------------- signatures

/// sigstore `pkg/signature/payload/payload_test.go` `TestMarshalCosign`, "no claims":
/// cosign writes `"optional":null` when there are no annotations.
#[test]
fn payload_is_byte_for_byte_what_cosign_writes() {
    let got = payload(
        "example.com/test/image",
        &digest(D34DB33F),
        &no_annotations(),
    );
    let want = r#"{"critical":{"identity":{"docker-reference":"example.com/test/image"},"image":{"docker-manifest-digest":"sha256:d34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33f"},"type":"cosign container image signature"},"optional":null}"#;
    assert_eq!(String::from_utf8(got).unwrap(), want);

    // Annotations in Go's (sorted) map order, HTML characters escaped as Go does.
    let got = payload(
        "example.com/atomic/test/image",
        &digest(D34DB33F),
        &annotations(&[("creator", "atomic"), ("CamelCase WithSpace", "a<b>&c")]),
    );
    let want = r#"{"critical":{"identity":{"docker-reference":"example.com/atomic/test/image"},"image":{"docker-manifest-digest":"sha256:d34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33f"},"type":"cosign container image signature"},"optional":{"CamelCase WithSpace":"a\u003cb\u003e\u0026c","creator":"atomic"}}"#;
    assert_eq!(String::from_utf8(got).unwrap(), want);
}

/// A real cosign signature (sigstore-rs `src/cosign/signature_layers.rs`
/// `build_correct_signature_layer_without_bundle`): the payload we write for the same
/// image is the one cosign signed, and the signature verifies with cosign's key.
#[test]
fn real_cosign_signature_verifies_over_our_payload() {
    let key = parse_public_key(
        "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----
",
    )
    .unwrap();
    let image = digest("sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b");
    let bytes = payload(
        "registry-testing.svc.lan/busybox",
        &image,
        &no_annotations(),
    );
    let sig = "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";
    verify(&key, &bytes, sig).unwrap();
    let claims = parse_payload(&bytes).unwrap();
    check_claims(&claims, &image, &no_annotations()).unwrap();

    let mut tampered = bytes.clone();
    tampered[20] ^= 1;
    assert!(matches!(
        verify(&key, &tampered, sig),
        Err(SupplyError::BadSignature)
    ));
}

#[test]
fn sign_verify_round_trip_and_failures() {
    let key = generate();
    let bytes = payload("r.example/app", &digest(D34DB33F), &no_annotations());
    let sig = sign(&key, &bytes);
    verify(key.verifying_key(), &bytes, &sig).unwrap();

    let other = generate();
    assert!(matches!(
        verify(other.verifying_key(), &bytes, &sig),
        Err(SupplyError::BadSignature)
    ));
    let mut tampered = bytes.clone();
    tampered.push(b' ');
    assert!(matches!(
        verify(key.verifying_key(), &tampered, &sig),
        Err(SupplyError::BadSignature)
    ));
    assert!(matches!(
        verify(key.verifying_key(), &bytes, "not base64!"),
        Err(SupplyError::Format(_))
    ));
    assert!(matches!(
        verify(key.verifying_key(), &bytes, &B64.encode(b"not DER")),
        Err(SupplyError::BadSignature)
    ));
}

/// SIGNATURE_SPEC.md § Signature Schemes: "ECDSA-P256" with "sha256"; § Signature:
/// "This signature MUST be generated by a supported scheme". openssl verifies our
/// signature over the payload as an ASN.1 DER ECDSA-with-SHA256 signature, and fails
/// it once the payload is changed.
#[test]
fn openssl_verifies_our_signature() {
    let key = generate();
    let bytes = payload(
        "r.example/app",
        &digest(D34DB33F),
        &annotations(&[("env", "prod")]),
    );
    let der = B64.decode(sign(&key, &bytes)).unwrap();

    let (ok, stdout) = openssl_verify(&key, &bytes, &der);
    assert!(ok && stdout.contains("Verified OK"), "{stdout}");

    let mut tampered = bytes.clone();
    tampered[10] ^= 0x20;
    let (ok, stdout) = openssl_verify(&key, &tampered, &der);
    assert!(!ok && stdout.contains("Verification failure"), "{stdout}");
}

/// And the other way: what openssl signs with our key verifies with `verify`
/// (openssl does not normalize S, so this also covers high-S signatures).
#[test]
fn we_verify_openssl_signatures() {
    let key = generate();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("key.der"),
        key.to_pkcs8_der().unwrap().as_bytes(),
    )
    .unwrap();
    let bytes = payload("r.example/app", &digest(D34DB33F), &no_annotations());
    std::fs::write(dir.path().join("payload.json"), &bytes).unwrap();
    for _ in 0..4 {
        let out = openssl(
            &[
                "dgst",
                "-sha256",
                "-keyform",
                "DER",
                "-sign",
                "key.der",
                "-out",
                "sig.der",
                "payload.json",
            ],
            dir.path(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = std::fs::read(dir.path().join("sig.der")).unwrap();
        verify(key.verifying_key(), &bytes, &B64.encode(der)).unwrap();
    }
}

/// SIGNATURE_SPEC.md § Simple Signing, its example payload: `Docker-manifest-digest`
/// capitalised and numeric optional claims; cosign (Go's case-insensitive decoder)
/// reads it, and so do we.
#[test]
fn parse_payload_reads_the_spec_example() {
    let example = br#"{
    "critical": {
           "identity": {
               "docker-reference": "testing/manifest"
           },
           "image": {
               "Docker-manifest-digest": "sha256:20be0000000000000000000000000000000000000000000000000000000fe55"
           },
           "type": "cosign container image signature"
    },
    "optional": {
           "creator": "atomic",
           "timestamp": 1458239713
    }
}"#;
    let claims = parse_payload(example).unwrap();
    assert_eq!(
        claims,
        Claims {
            docker_reference: "testing/manifest".into(),
            manifest_digest:
                "sha256:20be0000000000000000000000000000000000000000000000000000000fe55".into(),
            kind: signature::COSIGN_SIGNATURE_TYPE.into(),
            annotations: [
                ("creator".to_owned(), json!("atomic")),
                ("timestamp".to_owned(), json!(1458239713)),
            ]
            .into_iter()
            .collect(),
        }
    );
    let no_optional = br#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:x"},"type":"t"}}"#;
    assert!(parse_payload(no_optional).unwrap().annotations.is_empty());
}

#[test]
fn parse_payload_names_the_missing_field() {
    let cases: [(&str, &str); 8] = [
        ("[]", "not a JSON object"),
        ("nope", "not JSON"),
        ("{}", "no critical"),
        (r#"{"critical":{}}"#, "no critical.identity"),
        (
            r#"{"critical":{"identity":{},"image":{}}}"#,
            "no critical.identity.docker-reference",
        ),
        (
            r#"{"critical":{"identity":{"docker-reference":"a"},"image":{},"type":"t"}}"#,
            "no critical.image.docker-manifest-digest",
        ),
        (
            r#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":1}}}"#,
            "critical.image.docker-manifest-digest must be a string",
        ),
        (
            r#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"d"},"type":"t"},"optional":[]}"#,
            "optional must be an object or null",
        ),
    ];
    for (body, want) in cases {
        match parse_payload(body.as_bytes()) {
            Err(SupplyError::Format(msg)) => assert!(msg.contains(want), "{body}: {msg}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn check_claims_reports_both_sides() {
    let signed = digest(D34DB33F);
    let other = digest(&format!("sha256:{}", "a".repeat(64)));
    let bytes = payload("r.example/app", &signed, &annotations(&[("env", "dev")]));
    let claims = parse_payload(&bytes).unwrap();

    check_claims(&claims, &signed, &annotations(&[("env", "dev")])).unwrap();
    let mismatch = |required: &[(&str, &str)], want: &Digest| match check_claims(
        &claims,
        want,
        &annotations(required),
    ) {
        Err(SupplyError::Mismatch(msg)) => msg,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        mismatch(&[], &other),
        format!("signature is for {signed}, not {other}")
    );
    assert_eq!(
        mismatch(&[("env", "prod")], &signed),
        "annotation env: expected prod, signed dev"
    );
    assert_eq!(
        mismatch(&[("team", "a")], &signed),
        "annotation team: expected a, not signed"
    );

    let mut wrong_type = claims.clone();
    wrong_type.kind = "atomic container signature".into();
    assert!(matches!(
        check_claims(&wrong_type, &signed, &no_annotations()),
        Err(SupplyError::Mismatch(m)) if m.contains("atomic container signature")
    ));
}

// ---------------------------------------------------------------- attestations

/// cosign `cmd/cosign/cli/options/predicate.go` `PredicateTypeMap` and
/// `pkg/cosign/attestation/attestation.go`.
#[test]
fn predicate_type_names_map_as_in_cosign() {
    for (name, uri) in [
        ("slsaprovenance", "https://slsa.dev/provenance/v0.2"),
        ("slsaprovenance02", "https://slsa.dev/provenance/v0.2"),
        ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
        ("spdx", "https://spdx.dev/Document"),
        ("spdxjson", "https://spdx.dev/Document"),
        ("cyclonedx", "https://cyclonedx.org/bom"),
        ("link", "https://in-toto.io/Link/v1"),
        ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
        ("custom", "https://cosign.sigstore.dev/attestation/v1"),
        (
            "https://example.com/review/v1",
            "https://example.com/review/v1",
        ),
    ] {
        assert_eq!(predicate_type_uri(name).unwrap(), uri, "{name}");
    }
    match predicate_type_uri("provenance") {
        Err(SupplyError::Format(msg)) => {
            assert!(
                msg.contains("slsaprovenance1") && msg.contains("cyclonedx"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// in-toto `v1/statement.md` § Schema: `_type` `https://in-toto.io/Statement/v1`,
/// `subject` [{name, digest: {<ALGORITHM>: <HEX_VALUE>}}], `predicateType`,
/// `predicate`.
#[test]
fn statement_has_the_v1_shape() {
    let d = digest(D34DB33F);
    let s = statement(
        "r.example/app",
        &d,
        "https://slsa.dev/provenance/v1",
        json!({"a": 1}),
    );
    assert_eq!(
        s,
        json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "r.example/app", "digest": {"sha256": d.hex()}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"a": 1},
        })
    );
}

/// DSSE v1.0 `protocol.md` § Signature definition, its test vector:
/// `PAE("http://example.com/HelloWorld", "hello world")` =
/// `DSSEv1 29 http://example.com/HelloWorld 11 hello world`.
#[test]
fn pae_matches_the_dsse_test_vector() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    // Lengths count bytes, not characters.
    assert_eq!(pae("t", "é".as_bytes()), "DSSEv1 1 t 2 é".as_bytes());
}

/// DSSE v1.0 `protocol.md` § Test Vectors: ECDSA P-256 / SHA-256 with
/// deterministic RFC 6979 over the PAE; the same key signs the same bytes to the
/// published `r‖s`, and a raw `r‖s` signature is accepted by `verify_envelope`.
#[test]
fn dsse_reference_vector() {
    use p256::ecdsa::signature::Signer as _;
    let d =
        hex::decode("d73ec437fd6346e3619c5ebfdfff0f6916804955ad32ac9ac492b0ede1f6ffb7").unwrap();
    let key = SigningKey::from_slice(&d).unwrap();
    let message = pae("http://example.com/HelloWorld", b"hello world");
    let signature: p256::ecdsa::Signature = key.sign(&message);
    assert_eq!(
        B64.encode(signature.to_bytes()),
        "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="
    );

    // The same raw form over an in-toto envelope verifies.
    let d34 = digest(D34DB33F);
    let (mut env, bytes) = signed_statement(&key, &d34);
    let raw: p256::ecdsa::Signature = key.sign(&pae(&env.payload_type, &bytes));
    env.signatures[0].sig = B64.encode(raw.to_bytes());
    verify_envelope(key.verifying_key(), &env).unwrap();
    // And URL-safe base64, which verifiers MUST accept.
    env.payload = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
    env.signatures[0].sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_bytes());
    verify_envelope(key.verifying_key(), &env).unwrap();
}

fn signed_statement(key: &SigningKey, d: &Digest) -> (Envelope, Vec<u8>) {
    let stmt = statement(
        "r.example/app",
        d,
        "https://slsa.dev/provenance/v1",
        json!({}),
    );
    let bytes = serde_json::to_vec(&stmt).unwrap();
    (sign_envelope(key, &bytes), bytes)
}

/// in-toto `v1/envelope.md` § Fields: "`payloadType` MUST be set to
/// `application/vnd.in-toto+json`…", "`payload` MUST be a base64-encoded JSON
/// Statement"; cosign writes `"keyid":""`.
#[test]
fn envelope_round_trip() {
    let key = generate();
    let d = digest(D34DB33F);
    let (env, bytes) = signed_statement(&key, &d);
    let json_text = serde_json::to_string(&env).unwrap();
    assert!(
        json_text.starts_with(r#"{"payloadType":"application/vnd.in-toto+json","payload":""#),
        "{json_text}"
    );
    assert!(
        json_text.contains(r#""signatures":[{"keyid":"","sig":""#),
        "{json_text}"
    );
    assert_eq!(B64.decode(&env.payload).unwrap(), bytes);

    let parsed: Envelope = serde_json::from_str(&json_text).unwrap();
    let stmt = verify_envelope(key.verifying_key(), &parsed).unwrap();
    check_statement(&stmt, &d, Some("https://slsa.dev/provenance/v1")).unwrap();
    check_statement(&stmt, &d, None).unwrap();

    // An envelope without keyid (DSSE makes it optional) still reads.
    let no_keyid = json_text.replace(r#""keyid":"","#, "");
    let parsed: Envelope = serde_json::from_str(&no_keyid).unwrap();
    verify_envelope(key.verifying_key(), &parsed).unwrap();
}

#[test]
fn tampered_or_foreign_envelopes_fail() {
    let key = generate();
    let d = digest(D34DB33F);
    let (env, bytes) = signed_statement(&key, &d);

    let mut tampered = env.clone();
    let mut other_bytes = bytes.clone();
    other_bytes.extend_from_slice(b" ");
    tampered.payload = B64.encode(&other_bytes);
    assert!(matches!(
        verify_envelope(key.verifying_key(), &tampered),
        Err(SupplyError::BadSignature)
    ));

    assert!(matches!(
        verify_envelope(generate().verifying_key(), &env),
        Err(SupplyError::BadSignature)
    ));

    // The payload type is signed too: changing it breaks the signature, and
    // anything but in-toto JSON is refused up front.
    let mut retyped = env.clone();
    retyped.payload_type = "application/json".into();
    assert!(matches!(
        verify_envelope(key.verifying_key(), &retyped),
        Err(SupplyError::Format(m)) if m.contains("application/json")
    ));

    let mut unsigned = env.clone();
    unsigned.signatures.clear();
    assert!(matches!(
        verify_envelope(key.verifying_key(), &unsigned),
        Err(SupplyError::Format(_))
    ));

    // Any one good signature among others suffices.
    let mut several = env.clone();
    several.signatures.insert(
        0,
        attestation::EnvelopeSignature {
            keyid: "other".into(),
            sig: "bm90IGEgc2lnbmF0dXJl".into(),
        },
    );
    verify_envelope(key.verifying_key(), &several).unwrap();
}

/// ATTESTATION_SPEC.md § Subject Verification: "implementations MUST verify the
/// relationship between the `subject` field and the container image".
#[test]
fn statement_for_another_digest_fails_the_check() {
    let key = generate();
    let attested = digest(D34DB33F);
    let asked = digest(&format!("sha256:{}", "b".repeat(64)));
    let (env, _) = signed_statement(&key, &attested);
    let stmt = verify_envelope(key.verifying_key(), &env).unwrap();
    match check_statement(&stmt, &asked, None) {
        Err(SupplyError::Mismatch(msg)) => {
            assert_eq!(msg, format!("attestation is for {attested}, not {asked}"))
        }
        other => panic!("{other:?}"),
    }
    match check_statement(&stmt, &attested, Some("https://spdx.dev/Document")) {
        Err(SupplyError::Mismatch(msg)) => assert!(
            msg.contains("https://slsa.dev/provenance/v1")
                && msg.contains("https://spdx.dev/Document"),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
    // cosign still writes Statement v0.1; it is accepted. Anything else is not.
    let mut v01 = stmt.clone();
    v01["_type"] = json!("https://in-toto.io/Statement/v0.1");
    check_statement(&v01, &attested, None).unwrap();
    let mut other = stmt.clone();
    other["_type"] = json!("https://example.com/Other");
    assert!(matches!(
        check_statement(&other, &attested, None),
        Err(SupplyError::Format(_))
    ));
}

/// An independent check of the DSSE signature: openssl verifies our envelope's
/// signature over the PAE bytes.
#[test]
fn openssl_verifies_our_envelope_signature() {
    let key = generate();
    let (env, bytes) = signed_statement(&key, &digest(D34DB33F));
    let der = B64.decode(&env.signatures[0].sig).unwrap();
    let (ok, stdout) = openssl_verify(&key, &pae(&env.payload_type, &bytes), &der);
    assert!(ok && stdout.contains("Verified OK"), "{stdout}");
    let (ok, _) = openssl_verify(&key, &bytes, &der);
    assert!(!ok, "the signature is over the PAE, not the bare payload");
}

// ---------------------------------------------------------------- manifests

/// SIGNATURE_SPEC.md § Tag-based Discovery: "Replace the `:` character with a `-`",
/// "Append the `.sig` suffix".
#[test]
fn tags_follow_the_tag_scheme() {
    let d = digest("sha256:97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36");
    assert_eq!(
        tag_for(&d, "sig"),
        "sha256-97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36.sig"
    );
    assert!(tag_for(&d, ".att").ends_with("e36.att"));
    assert!(tag_for(&d, attach::SBOM_TAG_SUFFIX).ends_with("e36.sbom"));
}

fn assert_valid_image_manifest(built: &attach::Built) -> berth_oci::ParsedManifest {
    assert_eq!(built.media_type, OCI_MANIFEST);
    assert_eq!(built.digest, Digest::sha256_of(&built.manifest));
    validate(SchemaKind::ImageManifest, &built.manifest).unwrap();
    berth_oci::manifest::parse(Some(OCI_MANIFEST), &built.manifest).unwrap()
}

fn signature_blob(key: &SigningKey, image: &Digest) -> Blob {
    let bytes = payload("r.example/app", image, &no_annotations());
    let sig = sign(key, &bytes);
    Blob::signature(bytes, &sig)
}

/// SIGNATURE_SPEC.md § OCI Image Manifest V1: the payload is a layer of media type
/// `application/vnd.dev.cosign.simplesigning.v1+json`, the signature "is stored as an
/// `annotation` on the layer" under `dev.cosignproject.cosign/signature`; the config
/// is the image config cosign writes (233 bytes for one layer, as in
/// ATTESTATION_SPEC.md's example).
#[test]
fn tag_scheme_signature_manifest() {
    let key = generate();
    let image = digest(D34DB33F);
    let blob = signature_blob(&key, &image);
    let built = tag_scheme_manifest(None, &blob).unwrap();
    let parsed = assert_valid_image_manifest(&built);

    let config = String::from_utf8(built.config.bytes.clone()).unwrap();
    assert_eq!(
        config,
        format!(
            r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
            blob.digest
        )
    );
    assert_eq!(built.config.bytes.len(), 233);
    assert_eq!(built.config.media_type, OCI_CONFIG);
    validate(SchemaKind::ImageConfig, &built.config.bytes).unwrap();
    assert_eq!(parsed.blobs[0].digest, built.config.digest);
    assert_eq!(parsed.artifact_type.as_deref(), Some(OCI_CONFIG));

    let manifest: Value = serde_json::from_slice(&built.manifest).unwrap();
    assert_eq!(
        manifest["layers"][0],
        json!({
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "size": blob.bytes.len(),
            "digest": blob.digest.to_string(),
            "annotations": {SIGNATURE_ANNOTATION: blob.annotations[SIGNATURE_ANNOTATION]},
        })
    );
    assert!(
        String::from_utf8(built.manifest.clone())
            .unwrap()
            .starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":233,"digest":"sha256:"#)
    );
}

/// SIGNATURE_SPEC.md § OCI Image Manifest V1: "Multiple signatures can be embedded in
/// one image manifest." Appending keeps the layers already there, and re-attaching
/// the same signature changes nothing.
#[test]
fn tag_scheme_appends_and_is_idempotent() {
    let image = digest(D34DB33F);
    let (alice, bob) = (generate(), generate());
    let first = tag_scheme_manifest(None, &signature_blob(&alice, &image)).unwrap();

    // Same signature again: the very same manifest.
    let again =
        tag_scheme_manifest(Some(&first.manifest), &signature_blob(&alice, &image)).unwrap();
    assert_eq!(again, first);

    // Same payload signed by another key: same layer digest, another signature, so a
    // second layer.
    let bob_blob = signature_blob(&bob, &image);
    let second = tag_scheme_manifest(Some(&first.manifest), &bob_blob).unwrap();
    assert_valid_image_manifest(&second);
    let layers = layers_of(&second.manifest).unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0].digest, layers[1].digest);
    assert_ne!(
        layers[0].annotations[SIGNATURE_ANNOTATION],
        layers[1].annotations[SIGNATURE_ANNOTATION]
    );
    let config: Value = serde_json::from_slice(&second.config.bytes).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
    validate(SchemaKind::ImageConfig, &second.config.bytes).unwrap();
    let third = tag_scheme_manifest(Some(&second.manifest), &bob_blob).unwrap();
    assert_eq!(third, second);
}

/// Layers written by cosign (with annotations berth does not produce, such as a Rekor
/// bundle) are carried over untouched.
#[test]
fn tag_scheme_keeps_existing_layers_verbatim() {
    let existing = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": 233, "digest": D34DB33F},
        "layers": [{
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "size": 250,
            "digest": format!("sha256:{}", "c".repeat(64)),
            "annotations": {
                SIGNATURE_ANNOTATION: "MEUCIQ==",
                "dev.sigstore.cosign/bundle": "{\"SignedEntryTimestamp\":\"x\"}",
            },
        }],
    });
    let existing_bytes = serde_json::to_vec(&existing).unwrap();
    let built = tag_scheme_manifest(
        Some(&existing_bytes),
        &signature_blob(&generate(), &digest(D34DB33F)),
    )
    .unwrap();
    let manifest: Value = serde_json::from_slice(&built.manifest).unwrap();
    assert_eq!(manifest["layers"][0], existing["layers"][0]);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);

    for bad in [
        &b"not json"[..],
        br#"{"schemaVersion":2}"#,
        br#"{"layers":[{"mediaType":"x"}]}"#,
    ] {
        assert!(matches!(
            tag_scheme_manifest(Some(bad), &signature_blob(&generate(), &digest(D34DB33F))),
            Err(SupplyError::Format(_))
        ));
    }
}

/// ATTESTATION_SPEC.md § Overall Layout: each attestation is a layer of media type
/// `application/vnd.dsse.envelope.v1+json`; cosign annotates it with `predicateType`.
#[test]
fn tag_scheme_attestation_manifest() {
    let key = generate();
    let image = digest(D34DB33F);
    let (env, _) = signed_statement(&key, &image);
    let blob = Blob::attestation(
        serde_json::to_vec(&env).unwrap(),
        "https://slsa.dev/provenance/v1",
    );
    assert_eq!(blob.media_type, DSSE_MEDIA_TYPE);
    let built = tag_scheme_manifest(None, &blob).unwrap();
    assert_valid_image_manifest(&built);
    let layers = layers_of(&built.manifest).unwrap();
    assert_eq!(
        layers[0].annotations,
        annotations(&[
            (PREDICATE_TYPE_ANNOTATION, "https://slsa.dev/provenance/v1"),
            (SIGNATURE_ANNOTATION, ""),
        ])
    );
    // A reader gets the envelope back by digest and verifies it.
    assert_eq!(layers[0].digest, blob.digest);
    let read: Envelope = serde_json::from_slice(&blob.bytes).unwrap();
    let stmt = verify_envelope(key.verifying_key(), &read).unwrap();
    check_statement(
        &stmt,
        &image,
        Some(&layers[0].annotations[PREDICATE_TYPE_ANNOTATION]),
    )
    .unwrap();
}

fn subject() -> Descriptor {
    Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: digest(D34DB33F),
        size: 1234,
        artifact_type: None,
        has_urls: false,
    }
}

/// image-spec `manifest.md` § Guidelines for Artifact Usage: "specify the
/// `artifactType`, include the artifact in the `layers`, and set `config` to the
/// empty descriptor value"; § Guidance for an Empty Descriptor: "The blob digest of
/// `{}` is `sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a`".
#[test]
fn referrer_manifest_is_an_oci_11_artifact() {
    let key = generate();
    let blob = signature_blob(&key, &digest(D34DB33F));
    let built = referrer_manifest(
        SIGNATURE_ARTIFACT_TYPE,
        &subject(),
        &blob,
        &no_annotations(),
    )
    .unwrap();
    let parsed = assert_valid_image_manifest(&built);
    assert_eq!(
        parsed.artifact_type.as_deref(),
        Some(SIGNATURE_ARTIFACT_TYPE)
    );
    assert_eq!(parsed.subject.as_ref().unwrap().digest, digest(D34DB33F));
    assert_eq!(parsed.subject.as_ref().unwrap().size, 1234);

    assert_eq!(built.config.bytes, b"{}");
    assert_eq!(built.config.media_type, OCI_EMPTY);
    assert_eq!(
        built.config.digest.to_string(),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(B64.encode(&built.config.bytes), "e30=");

    let manifest: Value = serde_json::from_slice(&built.manifest).unwrap();
    assert_eq!(
        manifest["config"],
        json!({"mediaType": OCI_EMPTY, "size": 2, "digest": built.config.digest.to_string()})
    );
    let created = manifest["annotations"][CREATED_ANNOTATION]
        .as_str()
        .unwrap();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{created}: {e}"));
    assert!(
        created.ends_with('Z') && !created.contains('.'),
        "{created}"
    );

    let layers = layers_of(&built.manifest).unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].media_type, SIMPLE_SIGNING_MEDIA_TYPE);
    assert_eq!(layers[0].annotations, blob.annotations);
}

#[test]
fn referrer_manifest_keeps_caller_annotations() {
    let sbom = Blob::new(
        SBOM_SPDX_ARTIFACT_TYPE,
        br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec(),
    );
    let given = annotations(&[(CREATED_ANNOTATION, "2024-01-02T03:04:05Z"), ("k", "v")]);
    let built = referrer_manifest(SBOM_SPDX_ARTIFACT_TYPE, &subject(), &sbom, &given).unwrap();
    assert_valid_image_manifest(&built);
    let manifest: Value = serde_json::from_slice(&built.manifest).unwrap();
    assert_eq!(
        manifest["annotations"],
        json!({CREATED_ANNOTATION: "2024-01-02T03:04:05Z", "k": "v"})
    );
    // Fixed inputs give fixed bytes.
    let again = referrer_manifest(SBOM_SPDX_ARTIFACT_TYPE, &subject(), &sbom, &given).unwrap();
    assert_eq!(again.digest, built.digest);

    let (env, _) = signed_statement(&generate(), &digest(D34DB33F));
    let att = Blob::attestation(
        serde_json::to_vec(&env).unwrap(),
        "https://slsa.dev/provenance/v1",
    );
    let built = referrer_manifest(ATTESTATION_ARTIFACT_TYPE, &subject(), &att, &given).unwrap();
    assert_eq!(
        assert_valid_image_manifest(&built).artifact_type.as_deref(),
        Some("application/vnd.in-toto+json")
    );

    assert!(matches!(
        referrer_manifest("", &subject(), &sbom, &given),
        Err(SupplyError::Format(_))
    ));
}

#[test]
fn layers_of_refuses_what_is_not_an_image_manifest() {
    let index = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
    for bad in [b"{}".to_vec(), b"nope".to_vec(), index.into_bytes()] {
        assert!(matches!(layers_of(&bad), Err(SupplyError::Format(_))));
    }
    let bad_annotation = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","size":2,"digest":"{D34DB33F}"}},"layers":[{{"mediaType":"x/y","size":1,"digest":"{D34DB33F}","annotations":{{"a":1}}}}]}}"#
    );
    assert!(matches!(
        layers_of(bad_annotation.as_bytes()),
        Err(SupplyError::Format(m)) if m.contains("layers[0].annotations.a")
    ));
}

/// The whole key-based flow as `berth sign` / `berth verify` will run it: sign,
/// build the `.sig` manifest, then from the manifest and the blobs alone, verify.
#[test]
fn sign_then_verify_from_the_manifest_alone() {
    let key = generate();
    let image = digest(D34DB33F);
    let blob = signature_blob(&key, &image);
    let built = tag_scheme_manifest(None, &blob).unwrap();
    let blobs: BTreeMap<Digest, Vec<u8>> = [(blob.digest.clone(), blob.bytes.clone())].into();

    let public = parse_public_key(&public_key_pem(key.verifying_key()).unwrap()).unwrap();
    let verified = layers_of(&built.manifest)
        .unwrap()
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .filter(|l| {
            let bytes = &blobs[&l.digest];
            Digest::sha256_of(bytes) == l.digest
                && verify(&public, bytes, &l.annotations[SIGNATURE_ANNOTATION]).is_ok()
        })
        .map(|l| parse_payload(&blobs[&l.digest]).unwrap())
        .filter(|c| check_claims(c, &image, &no_annotations()).is_ok())
        .count();
    assert_eq!(verified, 1);
}
