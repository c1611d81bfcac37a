//! SLSA provenance v1 (<https://slsa.dev/provenance/v1>) for a berth build.
//!
//! [`predicate`] produces the predicate of an in-toto Statement v1 with predicate type
//! [`PREDICATE_TYPE`]; wrapping it in a Statement (subject: the image manifest digest)
//! and signing it is left to the caller (`berth-supply`'s attestation code).
//!
//! - `buildDefinition.buildType` is [`BUILD_TYPE`], a stable URI versioned with the
//!   shape of `externalParameters`.
//! - `externalParameters` holds what the user asked for (base, layer destinations, exec
//!   config, platform, compression, `SOURCE_DATE_EPOCH`); host paths of the layer
//!   directories are deliberately left out, so two machines building the same sources
//!   produce the same predicate.
//! - `internalParameters` is empty: berth has no settings beyond those.
//! - `resolvedDependencies` lists the base image (`oci://<registry>/<repository>` with its
//!   manifest digest) and each layer's content (`name` = destination, digest = `diff_id`).
//! - `runDetails.builder.id` is [`BUILDER_ID_PREFIX`] + the berth version;
//!   `runDetails.metadata` omits `startedOn`/`finishedOn` (and `invocationId` unless
//!   given) so the predicate is reproducible: the build's time is `SOURCE_DATE_EPOCH`,
//!   already in `externalParameters`.

use std::collections::BTreeMap;

use berth_oci::Digest;
use serde_json::{Map, Value, json};

/// The in-toto predicate type of SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// `buildDefinition.buildType` of a berth build.
pub const BUILD_TYPE: &str = "https://berth.example/build/v1";
/// Prefix of `runDetails.builder.id`; the berth version follows.
pub const BUILDER_ID_PREFIX: &str = "https://berth.example/berth@";

/// The base image of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseParam {
    /// The reference as the user wrote it (`alpine:3.20`).
    pub reference: String,
    /// The repository, fully qualified (`docker.io/library/alpine`).
    pub repository: String,
    /// The digest of the base manifest that was used.
    pub manifest_digest: Digest,
}

/// One layer of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerParam {
    /// Destination inside the image (`/app`).
    pub dest: String,
    /// The layer's `diff_id`.
    pub diff_id: Digest,
}

/// The parameters of a build, as recorded in the provenance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildParams {
    /// The base image; `None` for `scratch`.
    pub base: Option<BaseParam>,
    /// The layers, in order.
    pub layers: Vec<LayerParam>,
    /// The entrypoint, if set.
    pub entrypoint: Option<Vec<String>>,
    /// The command, if set.
    pub cmd: Option<Vec<String>>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Target platform (`linux/amd64`, `linux/arm/v7`).
    pub platform: String,
    /// Layer compression (`gzip`, `zstd`, `none`).
    pub compression: String,
    /// `SOURCE_DATE_EPOCH` of the build.
    pub source_date_epoch: i64,
    /// An invocation id for `runDetails.metadata` (e.g. a CI run URL); `None` omits it.
    pub invocation_id: Option<String>,
}

/// The berth version recorded in `runDetails.builder.id`.
pub fn builder_id() -> String {
    format!("{BUILDER_ID_PREFIX}{}", env!("CARGO_PKG_VERSION"))
}

/// A `DigestSet` (in-toto `digest_set.md`): `{"sha256": "<hex>"}`.
fn digest_set(d: &Digest) -> Value {
    let mut m = Map::new();
    m.insert(
        d.algorithm().as_str().to_owned(),
        Value::String(d.hex().to_owned()),
    );
    Value::Object(m)
}

/// The SLSA provenance v1 predicate for a build.
pub fn predicate(params: &BuildParams) -> Value {
    let mut external = Map::new();
    external.insert(
        "from".to_owned(),
        match &params.base {
            Some(b) => Value::String(b.reference.clone()),
            None => Value::String("scratch".to_owned()),
        },
    );
    external.insert(
        "layers".to_owned(),
        Value::Array(
            params
                .layers
                .iter()
                .map(|l| json!({ "dest": l.dest }))
                .collect(),
        ),
    );
    if let Some(e) = &params.entrypoint {
        external.insert("entrypoint".to_owned(), json!(e));
    }
    if let Some(c) = &params.cmd {
        external.insert("cmd".to_owned(), json!(c));
    }
    if !params.env.is_empty() {
        external.insert(
            "env".to_owned(),
            Value::Array(
                params
                    .env
                    .iter()
                    .map(|(k, v)| Value::String(format!("{k}={v}")))
                    .collect(),
            ),
        );
    }
    if !params.labels.is_empty() {
        external.insert("labels".to_owned(), json!(params.labels));
    }
    external.insert("platform".to_owned(), json!(params.platform));
    external.insert("compression".to_owned(), json!(params.compression));
    external.insert(
        "source_date_epoch".to_owned(),
        json!(params.source_date_epoch),
    );

    let mut dependencies = Vec::new();
    if let Some(b) = &params.base {
        dependencies.push(json!({
            "uri": format!("oci://{}", b.repository),
            "name": b.reference,
            "digest": digest_set(&b.manifest_digest),
        }));
    }
    for l in &params.layers {
        dependencies.push(json!({
            "name": l.dest,
            "digest": digest_set(&l.diff_id),
        }));
    }

    let mut metadata = Map::new();
    if let Some(id) = &params.invocation_id {
        metadata.insert("invocationId".to_owned(), Value::String(id.clone()));
    }

    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": {},
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": { "id": builder_id() },
            "metadata": metadata,
        },
    })
}
