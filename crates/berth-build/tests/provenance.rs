//! The SLSA provenance v1 predicate (https://slsa.dev/provenance/v1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use berth_build::provenance::{
    BUILD_TYPE, BaseParam, BuildParams, LayerParam, PREDICATE_TYPE, builder_id, predicate,
};
use berth_oci::Digest;
use serde_json::json;

fn params() -> BuildParams {
    BuildParams {
        base: Some(BaseParam {
            reference: "alpine:3.20".to_owned(),
            repository: "docker.io/library/alpine".to_owned(),
            manifest_digest: Digest::sha256_of(b"base"),
        }),
        layers: vec![
            LayerParam {
                dest: "/app".to_owned(),
                diff_id: Digest::sha256_of(b"layer1"),
            },
            LayerParam {
                dest: "/etc/app".to_owned(),
                diff_id: Digest::sha256_of(b"layer2"),
            },
        ],
        entrypoint: Some(vec!["/app/server".to_owned()]),
        cmd: None,
        env: vec![("MODE".to_owned(), "prod".to_owned())],
        labels: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
        platform: "linux/arm64".to_owned(),
        compression: "zstd".to_owned(),
        source_date_epoch: 1_700_000_000,
        invocation_id: None,
    }
}

#[test]
fn predicate_has_the_slsa_v1_shape() {
    assert_eq!(PREDICATE_TYPE, "https://slsa.dev/provenance/v1");
    let p = predicate(&params());
    // SLSA provenance v1: predicate = { buildDefinition, runDetails }.
    let bd = &p["buildDefinition"];
    assert_eq!(bd["buildType"], BUILD_TYPE);
    assert_eq!(
        bd["externalParameters"],
        json!({
            "from": "alpine:3.20",
            "layers": [{"dest": "/app"}, {"dest": "/etc/app"}],
            "entrypoint": ["/app/server"],
            "env": ["MODE=prod"],
            "labels": {"a": "b"},
            "platform": "linux/arm64",
            "compression": "zstd",
            "source_date_epoch": 1_700_000_000,
        })
    );
    assert_eq!(bd["internalParameters"], json!({}));
    // resolvedDependencies are in-toto ResourceDescriptors with DigestSets.
    assert_eq!(
        bd["resolvedDependencies"],
        json!([
            {
                "uri": "oci://docker.io/library/alpine",
                "name": "alpine:3.20",
                "digest": {"sha256": Digest::sha256_of(b"base").hex()},
            },
            {"name": "/app", "digest": {"sha256": Digest::sha256_of(b"layer1").hex()}},
            {"name": "/etc/app", "digest": {"sha256": Digest::sha256_of(b"layer2").hex()}},
        ])
    );
    let rd = &p["runDetails"];
    assert_eq!(rd["builder"]["id"], builder_id());
    assert!(
        builder_id().starts_with("https://berth.example/berth@"),
        "{}",
        builder_id()
    );
    // No timestamps: reproducible.
    assert_eq!(rd["metadata"], json!({}));
    assert_eq!(p, predicate(&params()));
}

#[test]
fn scratch_and_invocation_id() {
    let mut ps = params();
    ps.base = None;
    ps.invocation_id = Some("https://ci.example/run/1".to_owned());
    let p = predicate(&ps);
    assert_eq!(
        p["buildDefinition"]["externalParameters"]["from"],
        "scratch"
    );
    let deps = p["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert_eq!(deps.len(), 2);
    assert!(deps.iter().all(|d| d.get("uri").is_none()));
    assert_eq!(
        p["runDetails"]["metadata"],
        json!({"invocationId": "https://ci.example/run/1"})
    );
}
