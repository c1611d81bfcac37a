//! The image config and manifest of a build, on top of a base image or `scratch`.
//!
//! [`compose`] appends new layers to a base image: the base config is kept field for
//! field (Docker `application/vnd.docker.container.image.v1+json` configs have the same
//! shape and are accepted), `rootfs.diff_ids` and `history` are extended, the execution
//! parameters of [`ImageSpec`] are applied, and the result is always an OCI image config
//! and OCI image manifest (`config.md`, `manifest.md`).
//!
//! # Reproducibility
//!
//! - The config is re-serialised compactly with every object's keys sorted (recursively),
//!   so identical inputs give byte-identical configs whatever key order the base used.
//! - Every time stamp (`created`, each new `history[].created`, the
//!   `org.opencontainers.image.created` annotation) is [`ImageSpec::created`]
//!   (`SOURCE_DATE_EPOCH`) in RFC 3339.
//! - A new history entry records `created_by: "berth build --layer <DEST>"` (the
//!   destination inside the image, never the host directory) and nothing else: no layer
//!   digest, so the config — like the `diff_ids` — does not depend on the compression.
//! - The manifest's keys are in the conventional order (`schemaVersion`, `mediaType`,
//!   `config`, `layers`, `annotations`) with annotations sorted; the base's layer
//!   descriptors are copied as given.
//!
//! # Merge rules
//!
//! - `Env`: a variable already in the base is replaced in place, new ones are appended
//!   in order.
//! - `Entrypoint`/`Cmd`: replaced when given; as in a Dockerfile, setting `Entrypoint`
//!   without `Cmd` drops the base's `Cmd`.
//! - `User`, `WorkingDir`: replaced when given.
//! - `Labels`, `ExposedPorts`: merged, new values win; a port without protocol gets
//!   `/tcp`.
//! - `os`, `architecture` are set; `variant` is set, or removed when `None`.

use std::collections::BTreeMap;

use berth_oci::Digest;
use berth_oci::media_type::{OCI_CONFIG, OCI_MANIFEST};
use serde_json::{Map, Value, json};

use crate::layer::{BuildError, BuiltLayer};

/// Annotation naming the base image's manifest digest (`annotations.md`).
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// Annotation naming the base image (`annotations.md`).
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
/// Annotation with the creation time (`annotations.md`).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// What the build sets in the image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// `config.Entrypoint`; `None` keeps the base's.
    pub entrypoint: Option<Vec<String>>,
    /// `config.Cmd`; `None` keeps the base's (unless `entrypoint` is set).
    pub cmd: Option<Vec<String>>,
    /// Environment variables merged into `config.Env`.
    pub env: Vec<(String, String)>,
    /// `config.WorkingDir`; `None` keeps the base's.
    pub workdir: Option<String>,
    /// `config.User`; `None` keeps the base's.
    pub user: Option<String>,
    /// Labels merged into `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// Ports merged into `config.ExposedPorts` (`"8080"` becomes `"8080/tcp"`).
    pub exposed_ports: Vec<String>,
    /// Seconds since the Unix epoch (`SOURCE_DATE_EPOCH`) used for every time stamp.
    pub created: i64,
    /// `os` (`linux`).
    pub os: String,
    /// `architecture` (`amd64`, `arm64`, …).
    pub architecture: String,
    /// `variant` (`v7`, `v8`); `None` removes the base's.
    pub variant: Option<String>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            workdir: None,
            user: None,
            labels: BTreeMap::new(),
            exposed_ports: Vec::new(),
            created: 0,
            os: "linux".to_owned(),
            architecture: "amd64".to_owned(),
            variant: None,
        }
    }
}

/// A new layer as [`compose`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// The layer's media type.
    pub media_type: String,
    /// Digest of the blob.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Destination inside the image (`/app`), recorded in the history.
    pub dest: String,
}

impl From<&BuiltLayer> for LayerRecord {
    fn from(layer: &BuiltLayer) -> Self {
        LayerRecord {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: layer.diff_id.clone(),
            dest: layer.dest.clone(),
        }
    }
}

/// What [`compose`] reads from a new layer: implemented by [`LayerRecord`] and by
/// [`BuiltLayer`], so either can be passed.
pub trait LayerInfo {
    /// The layer's media type.
    fn media_type(&self) -> &str;
    /// Digest of the blob.
    fn digest(&self) -> &Digest;
    /// Size of the blob in bytes.
    fn size(&self) -> u64;
    /// Digest of the uncompressed tar.
    fn diff_id(&self) -> &Digest;
    /// Destination inside the image, recorded in the history.
    fn dest(&self) -> &str;
}

impl LayerInfo for LayerRecord {
    fn media_type(&self) -> &str {
        &self.media_type
    }
    fn digest(&self) -> &Digest {
        &self.digest
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn diff_id(&self) -> &Digest {
        &self.diff_id
    }
    fn dest(&self) -> &str {
        &self.dest
    }
}

impl LayerInfo for BuiltLayer {
    fn media_type(&self) -> &str {
        &self.media_type
    }
    fn digest(&self) -> &Digest {
        &self.digest
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn diff_id(&self) -> &Digest {
        &self.diff_id
    }
    fn dest(&self) -> &str {
        &self.dest
    }
}

/// The config and manifest of a composed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// The image config (`application/vnd.oci.image.config.v1+json`).
    pub config: Vec<u8>,
    /// Its digest.
    pub config_digest: Digest,
    /// The image manifest (`application/vnd.oci.image.manifest.v1+json`).
    pub manifest: Vec<u8>,
    /// Its digest.
    pub manifest_digest: Digest,
}

/// Composes the config and manifest of an image made of `base` plus `layers`.
///
/// `base` is `None` for `scratch`, else the base config's bytes and the base manifest's
/// `layers` descriptors (copied verbatim into the new manifest). `base_ref`, the base's
/// name and manifest digest, becomes the `org.opencontainers.image.base.*` annotations.
///
/// # Errors
///
/// [`BuildError::InvalidBase`] when the base config is not a JSON object with a
/// `rootfs` of type `layers` whose `diff_ids` match the base layers in number, or a base
/// layer descriptor lacks `mediaType`, `digest` or `size`; [`BuildError::InvalidOption`]
/// for an empty env name or one containing `=`, an invalid port, or a time stamp outside
/// RFC 3339's range.
pub fn compose<L: LayerInfo>(
    base: Option<(&[u8], &[Value])>,
    base_ref: Option<(&str, &Digest)>,
    layers: &[L],
    spec: &ImageSpec,
) -> Result<Composed, BuildError> {
    let created = rfc3339(spec.created)?;
    let (mut config, base_layers) = match base {
        Some((bytes, descriptors)) => {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| BuildError::InvalidBase(format!("config is not JSON: {e}")))?;
            let Value::Object(map) = value else {
                return Err(BuildError::InvalidBase(
                    "config is not a JSON object".to_owned(),
                ));
            };
            for d in descriptors {
                check_descriptor(d)?;
            }
            (map, descriptors.to_vec())
        }
        None => (Map::new(), Vec::new()),
    };

    config.insert("created".to_owned(), Value::String(created.clone()));
    config.insert("os".to_owned(), Value::String(spec.os.clone()));
    config.insert(
        "architecture".to_owned(),
        Value::String(spec.architecture.clone()),
    );
    match &spec.variant {
        Some(v) => {
            config.insert("variant".to_owned(), Value::String(v.clone()));
        }
        None => {
            config.remove("variant");
        }
    }
    apply_exec_config(object_field(&mut config, "config"), spec)?;

    // rootfs
    let rootfs = object_field(&mut config, "rootfs");
    if base.is_some() {
        if rootfs.get("type").and_then(Value::as_str) != Some("layers") {
            return Err(BuildError::InvalidBase(
                "config rootfs.type is not \"layers\"".to_owned(),
            ));
        }
    } else {
        rootfs.insert("type".to_owned(), Value::String("layers".to_owned()));
    }
    let diff_ids = array_field(rootfs, "diff_ids");
    if diff_ids.len() != base_layers.len() {
        return Err(BuildError::InvalidBase(format!(
            "config has {} diff_ids but the manifest {} layers",
            diff_ids.len(),
            base_layers.len()
        )));
    }
    diff_ids.extend(
        layers
            .iter()
            .map(|l| Value::String(l.diff_id().to_string())),
    );

    let history = array_field(&mut config, "history");
    for layer in layers {
        history.push(json!({
            "created": created,
            "created_by": format!("berth build --layer {}", layer.dest()),
        }));
    }

    let config_bytes = serde_json::to_vec(&canonical(Value::Object(config)))?;
    let config_digest = Digest::sha256_of(&config_bytes);

    let mut all_layers = base_layers;
    all_layers.extend(layers.iter().map(|l| {
        json!({
            "mediaType": l.media_type(),
            "digest": l.digest().to_string(),
            "size": l.size(),
        })
    }));
    let mut annotations = BTreeMap::new();
    if let Some((name, digest)) = base_ref {
        annotations.insert(ANNOTATION_BASE_DIGEST, digest.to_string());
        annotations.insert(ANNOTATION_BASE_NAME, name.to_owned());
    }
    annotations.insert(ANNOTATION_CREATED, created);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": all_layers,
        "annotations": annotations,
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = Digest::sha256_of(&manifest_bytes);
    Ok(Composed {
        config: config_bytes,
        config_digest,
        manifest: manifest_bytes,
        manifest_digest,
    })
}

/// Applies the execution parameters to the config's `config` object.
fn apply_exec_config(exec: &mut Map<String, Value>, spec: &ImageSpec) -> Result<(), BuildError> {
    if !spec.env.is_empty() {
        let env = array_field(exec, "Env");
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains('=') {
                return Err(BuildError::InvalidOption(format!(
                    "environment variable name {key:?} is empty or contains `=`"
                )));
            }
            let line = Value::String(format!("{key}={value}"));
            let existing = env.iter_mut().find(|e| {
                e.as_str()
                    .is_some_and(|s| s.split_once('=').map_or(s, |(k, _)| k) == key)
            });
            match existing {
                Some(slot) => *slot = line,
                None => env.push(line),
            }
        }
    }
    if let Some(entrypoint) = &spec.entrypoint {
        exec.insert("Entrypoint".to_owned(), json!(entrypoint));
        if spec.cmd.is_none() {
            exec.remove("Cmd");
        }
    }
    if let Some(cmd) = &spec.cmd {
        exec.insert("Cmd".to_owned(), json!(cmd));
    }
    if let Some(workdir) = &spec.workdir {
        exec.insert("WorkingDir".to_owned(), Value::String(workdir.clone()));
    }
    if let Some(user) = &spec.user {
        exec.insert("User".to_owned(), Value::String(user.clone()));
    }
    if !spec.labels.is_empty() {
        let labels = object_field(exec, "Labels");
        for (k, v) in &spec.labels {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
    }
    if !spec.exposed_ports.is_empty() {
        let mut normalised = Vec::new();
        for port in &spec.exposed_ports {
            normalised.push(normalise_port(port)?);
        }
        let ports = object_field(exec, "ExposedPorts");
        for port in normalised {
            ports.insert(port, json!({}));
        }
    }
    Ok(())
}

/// `8080` → `8080/tcp`; `53/udp` kept; the protocol lowercased. Port ranges
/// (`8000-8010`) are accepted.
fn normalise_port(port: &str) -> Result<String, BuildError> {
    let (number, proto) = match port.split_once('/') {
        Some((n, p)) => (n, p.to_ascii_lowercase()),
        None => (port, "tcp".to_owned()),
    };
    let valid_number = |s: &str| {
        !s.is_empty()
            && s.len() <= 5
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|n| n <= 65535)
    };
    let number_ok = match number.split_once('-') {
        Some((a, b)) => valid_number(a) && valid_number(b),
        None => valid_number(number),
    };
    if !number_ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(BuildError::InvalidOption(format!(
            "exposed port {port:?} is not PORT[/tcp|udp|sctp]"
        )));
    }
    Ok(format!("{number}/{proto}"))
}

/// Checks that a base layer descriptor has the fields a manifest needs.
fn check_descriptor(d: &Value) -> Result<(), BuildError> {
    let ok = d.get("mediaType").and_then(Value::as_str).is_some()
        && d.get("size").and_then(Value::as_u64).is_some()
        && d.get("digest")
            .and_then(Value::as_str)
            .is_some_and(|s| s.parse::<Digest>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(BuildError::InvalidBase(format!(
            "layer descriptor {d} lacks a mediaType, size or valid digest"
        )))
    }
}

/// The object at `key`, created (replacing `null` or a non-object) if needed.
fn object_field<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The array at `key`, created (replacing `null` or a non-array) if needed.
fn array_field<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(a) => a,
        _ => unreachable!("just made an array"),
    }
}

/// The value with every object's keys sorted, recursively.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> =
                map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Seconds since the epoch as RFC 3339 (`2024-01-02T03:04:05Z`).
pub fn rfc3339(epoch: i64) -> Result<String, BuildError> {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch)
        .map_err(|e| BuildError::InvalidOption(format!("time stamp {epoch}: {e}")))?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| BuildError::InvalidOption(format!("time stamp {epoch}: {e}")))
}
