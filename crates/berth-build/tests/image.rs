//! Composing image configs and manifests on a base or on scratch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use berth_build::image::{Composed, ImageSpec, LayerRecord, compose};
use berth_build::layer::{Compression, LayerOptions, build_layer};
use berth_oci::Digest;
use berth_oci::schema::{SchemaKind, validate};
use serde_json::{Value, json};

fn digest(n: u8) -> Digest {
    Digest::sha256_of(&[n])
}

fn record(n: u8, dest: &str) -> LayerRecord {
    LayerRecord {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
        digest: digest(n),
        size: 100 + u64::from(n),
        diff_id: digest(n + 100),
        dest: dest.to_owned(),
    }
}

/// A Docker-style base config, keys deliberately unsorted, with Docker-only fields.
fn docker_base() -> (Vec<u8>, Vec<Value>) {
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "variant": "v1",
        "docker_version": "24.0.7",
        "container_config": { "Hostname": "abc" },
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
            "Cmd": ["/bin/sh"],
            "Labels": { "maintainer": "base", "keep": "yes" },
            "ExposedPorts": { "22/tcp": {} },
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [digest(200).to_string()] },
        "history": [{ "created": "2020-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /" }],
        "created": "2020-01-01T00:00:00Z",
    });
    let layers = vec![json!({
        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "size": 1234,
        "digest": digest(201).to_string(),
    })];
    (serde_json::to_vec(&config).unwrap(), layers)
}

fn spec() -> ImageSpec {
    ImageSpec {
        entrypoint: Some(vec!["/app/server".to_owned()]),
        cmd: None,
        env: vec![
            ("PATH".to_owned(), "/app:/usr/bin:/bin".to_owned()),
            ("MODE".to_owned(), "prod".to_owned()),
        ],
        workdir: Some("/app".to_owned()),
        user: Some("1000:1000".to_owned()),
        labels: BTreeMap::from([
            ("maintainer".to_owned(), "me".to_owned()),
            (
                "org.opencontainers.image.source".to_owned(),
                "https://example.com/x".to_owned(),
            ),
        ]),
        exposed_ports: vec!["8080".to_owned(), "53/udp".to_owned()],
        created: 1_700_000_000,
        os: "linux".to_owned(),
        architecture: "arm64".to_owned(),
        variant: Some("v8".to_owned()),
    }
}

fn compose_on_docker_base() -> Composed {
    let (config, layers) = docker_base();
    let base_digest = digest(250);
    compose(
        Some((&config, &layers)),
        Some(("docker.io/library/alpine:3.20", &base_digest)),
        &[record(1, "/app"), record(2, "/etc/app")],
        &spec(),
    )
    .unwrap()
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn output_validates_against_the_image_spec_schemas() {
    let c = compose_on_docker_base();
    validate(SchemaKind::ImageConfig, &c.config).unwrap();
    validate(SchemaKind::ImageManifest, &c.manifest).unwrap();
    let s = compose(None, None, &[record(1, "/")], &ImageSpec::default()).unwrap();
    validate(SchemaKind::ImageConfig, &s.config).unwrap();
    validate(SchemaKind::ImageManifest, &s.manifest).unwrap();
}

#[test]
fn composing_twice_is_byte_identical_and_digests_match() {
    let a = compose_on_docker_base();
    let b = compose_on_docker_base();
    assert_eq!(a, b);
    assert_eq!(Digest::sha256_of(&a.config), a.config_digest);
    assert_eq!(Digest::sha256_of(&a.manifest), a.manifest_digest);
    // The base's key order does not matter: the config is re-serialised with sorted keys.
    let (config, layers) = docker_base();
    let reordered: serde_json::Map<String, Value> = json_of(&config)
        .as_object()
        .unwrap()
        .iter()
        .rev()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reordered = serde_json::to_vec(&reordered).unwrap();
    assert_ne!(reordered, config);
    let base_digest = digest(250);
    let c = compose(
        Some((&reordered, &layers)),
        Some(("docker.io/library/alpine:3.20", &base_digest)),
        &[record(1, "/app"), record(2, "/etc/app")],
        &spec(),
    )
    .unwrap();
    assert_eq!(c.config, a.config);
    let text = String::from_utf8(a.config.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"architecture":"arm64","config":{"#),
        "{text}"
    );
}

#[test]
fn config_merges_onto_the_base() {
    let c = compose_on_docker_base();
    let config = json_of(&c.config);
    // config.md § Properties.
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_eq!(config["os"], "linux");
    // Docker-only fields are kept ("Any extra fields … MUST NOT generate an error").
    assert_eq!(config["docker_version"], "24.0.7");
    assert_eq!(config["container_config"]["Hostname"], "abc");
    let exec = &config["config"];
    // Env: PATH replaced in place, LANG kept, MODE appended.
    assert_eq!(
        exec["Env"],
        json!(["PATH=/app:/usr/bin:/bin", "LANG=C", "MODE=prod"])
    );
    assert_eq!(exec["Entrypoint"], json!(["/app/server"]));
    // Setting an entrypoint drops the base's Cmd, as a Dockerfile's ENTRYPOINT does.
    assert!(exec.get("Cmd").is_none());
    assert_eq!(exec["WorkingDir"], "/app");
    assert_eq!(exec["User"], "1000:1000");
    assert_eq!(
        exec["Labels"],
        json!({"keep": "yes", "maintainer": "me", "org.opencontainers.image.source": "https://example.com/x"})
    );
    assert_eq!(
        exec["ExposedPorts"],
        json!({"22/tcp": {}, "53/udp": {}, "8080/tcp": {}})
    );
    // config.md § rootfs / history: extended in order.
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": [
            digest(200).to_string(), digest(101).to_string(), digest(102).to_string()
        ]})
    );
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["created_by"], "ADD rootfs.tar /");
    assert_eq!(
        history[1],
        json!({"created": "2023-11-14T22:13:20Z", "created_by": "berth build --layer /app"})
    );
    assert_eq!(history[2]["created_by"], "berth build --layer /etc/app");
}

#[test]
fn cmd_is_kept_unless_the_entrypoint_changes() {
    let (config, layers) = docker_base();
    let s = ImageSpec {
        variant: None,
        ..ImageSpec::default()
    };
    let c = compose::<LayerRecord>(Some((&config, &layers)), None, &[], &s).unwrap();
    let v = json_of(&c.config);
    assert_eq!(v["config"]["Cmd"], json!(["/bin/sh"]));
    assert!(v.get("variant").is_none());
    let s = ImageSpec {
        entrypoint: Some(vec!["/e".to_owned()]),
        cmd: Some(vec!["--flag".to_owned()]),
        ..ImageSpec::default()
    };
    let v = json_of(
        &compose::<LayerRecord>(Some((&config, &layers)), None, &[], &s)
            .unwrap()
            .config,
    );
    assert_eq!(v["config"]["Cmd"], json!(["--flag"]));
}

#[test]
fn manifest_lists_base_layers_verbatim_then_new_ones() {
    let c = compose_on_docker_base();
    let m = json_of(&c.manifest);
    // manifest.md § Image Manifest Property Descriptions.
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"],
        json!({
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": c.config_digest.to_string(),
            "size": c.config.len(),
        })
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers[0], docker_base().1[0]);
    assert_eq!(
        layers[1],
        json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest(1).to_string(),
            "size": 101,
        })
    );
    assert_eq!(layers.len(), 3);
    assert_eq!(
        m["annotations"],
        json!({
            "org.opencontainers.image.base.digest": digest(250).to_string(),
            "org.opencontainers.image.base.name": "docker.io/library/alpine:3.20",
            "org.opencontainers.image.created": "2023-11-14T22:13:20Z",
        })
    );
}

#[test]
fn scratch_image_from_a_built_layer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello"), b"hi\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let opts = LayerOptions {
        dest: "/app".to_owned(),
        compression: Compression::Zstd,
        ..LayerOptions::default()
    };
    let layer = build_layer(dir.path(), &opts, out.path()).unwrap();
    let s = ImageSpec {
        cmd: Some(vec!["/app/hello".to_owned()]),
        ..ImageSpec::default()
    };
    let c = compose(None, None, &[LayerRecord::from(&layer)], &s).unwrap();
    // A BuiltLayer can be passed directly too.
    assert_eq!(
        compose(None, None, std::slice::from_ref(&layer), &s).unwrap(),
        c
    );
    let config = json_of(&c.config);
    assert_eq!(
        config,
        json!({
            "architecture": "amd64",
            "config": { "Cmd": ["/app/hello"] },
            "created": "1970-01-01T00:00:00Z",
            "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "berth build --layer /app" }],
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [layer.diff_id.to_string()] },
        })
    );
    let m = json_of(&c.manifest);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(m["layers"][0]["digest"], layer.digest.to_string());
    assert_eq!(m["layers"][0]["size"], layer.size);
    assert_eq!(
        m["annotations"],
        json!({"org.opencontainers.image.created": "1970-01-01T00:00:00Z"})
    );
    validate(SchemaKind::ImageConfig, &c.config).unwrap();
    validate(SchemaKind::ImageManifest, &c.manifest).unwrap();
}

#[test]
fn null_fields_in_a_base_config_are_replaced() {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Env": null, "Labels": null, "Cmd": null },
        "rootfs": { "type": "layers", "diff_ids": [] },
        "history": null,
    }))
    .unwrap();
    let s = ImageSpec {
        env: vec![("A".to_owned(), "1".to_owned())],
        labels: BTreeMap::from([("l".to_owned(), "v".to_owned())]),
        ..ImageSpec::default()
    };
    let c = compose(Some((&config, &[])), None, &[record(1, "/")], &s).unwrap();
    let v = json_of(&c.config);
    assert_eq!(v["config"]["Env"], json!(["A=1"]));
    assert_eq!(v["config"]["Labels"], json!({"l": "v"}));
    assert_eq!(v["history"].as_array().unwrap().len(), 1);
    validate(SchemaKind::ImageConfig, &c.config).unwrap();
}

#[test]
fn invalid_inputs_are_errors() {
    let (config, layers) = docker_base();
    // diff_ids and manifest layers disagree.
    assert!(
        compose::<LayerRecord>(Some((&config, &[])), None, &[], &ImageSpec::default()).is_err()
    );
    // Not JSON / not an object.
    assert!(compose::<LayerRecord>(Some((b"[]", &[])), None, &[], &ImageSpec::default()).is_err());
    assert!(compose::<LayerRecord>(Some((b"{", &[])), None, &[], &ImageSpec::default()).is_err());
    // Bad descriptor.
    let bad = vec![json!({"mediaType": "x", "size": 1})];
    assert!(
        compose::<LayerRecord>(Some((&config, &bad)), None, &[], &ImageSpec::default()).is_err()
    );
    for port in ["http", "70000", "80/icmp", ""] {
        let s = ImageSpec {
            exposed_ports: vec![port.to_owned()],
            ..ImageSpec::default()
        };
        assert!(
            compose::<LayerRecord>(Some((&config, &layers)), None, &[], &s).is_err(),
            "{port}"
        );
    }
    let s = ImageSpec {
        env: vec![("A=B".to_owned(), "1".to_owned())],
        ..ImageSpec::default()
    };
    assert!(compose::<LayerRecord>(None, None, &[], &s).is_err());
}
