//! The OCI manifests that carry signatures, attestations and SBOMs through a
//! registry, in both schemes cosign uses. Everything here is pure: it returns the
//! bytes and descriptors, and the caller uploads the blobs, then the manifest.
//!
//! - **Tag scheme** (cosign `specs/SIGNATURE_SPEC.md` § Tag-based Discovery,
//!   `ATTESTATION_SPEC.md`, `SBOM_SPEC.md`): one image manifest per signed object,
//!   tagged `sha256-<hex>.sig` / `.att` / `.sbom` ([`tag_for`]), each signature or
//!   attestation a layer; a new one is appended to the layers already there
//!   ([`tag_scheme_manifest`]). The config is the image config cosign writes through
//!   go-containerregistry: empty `architecture`/`os`, zero `created`, one history
//!   entry and one `rootfs.diff_ids` entry per layer.
//! - **Referrers scheme** (image-spec v1.1 `manifest.md` § Guidelines for Artifact
//!   Usage, distribution-spec referrers API): one manifest per artifact with
//!   `artifactType`, the empty config descriptor and a `subject` naming the signed
//!   manifest ([`referrer_manifest`]).
//!
//! [`layers_of`] reads either kind back for verifiers.

use std::collections::BTreeMap;

use berth_oci::media_type::{OCI_CONFIG, OCI_EMPTY, OCI_MANIFEST};
use berth_oci::{Descriptor, Digest};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Result, SupplyError};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Media type of a DSSE envelope layer (an attestation).
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Layer annotation holding the base64 signature of a simple-signing payload (cosign
/// writes it empty on attestation layers, whose signature is inside the envelope).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// Manifest annotation with the creation time (RFC 3339) of a referrer.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// `artifactType` of a signature referrer (cosign `--registry-referrers-mode=oci-1-1`:
/// `ArtifactType("sig")`).
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// `artifactType` of an attestation referrer (cosign `WriteAttestationsReferrer`:
/// the in-toto payload type, since the layers are DSSE envelopes of statements).
pub const ATTESTATION_ARTIFACT_TYPE: &str = "application/vnd.in-toto+json";
/// `artifactType` (and layer media type) of an SPDX JSON SBOM referrer.
pub const SBOM_SPDX_ARTIFACT_TYPE: &str = "application/spdx+json";
/// `artifactType` (and layer media type) of a CycloneDX JSON SBOM referrer.
pub const SBOM_CYCLONEDX_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";

/// Tag suffix of the signatures manifest (`sha256-<hex>.sig`).
pub const SIGNATURE_TAG_SUFFIX: &str = "sig";
/// Tag suffix of the attestations manifest (`sha256-<hex>.att`).
pub const ATTESTATION_TAG_SUFFIX: &str = "att";
/// Tag suffix of the SBOM manifest (`sha256-<hex>.sbom`).
pub const SBOM_TAG_SUFFIX: &str = "sbom";

/// The `{}` blob the empty descriptor names (image-spec `manifest.md` § Guidance for
/// an Empty Descriptor).
const EMPTY_JSON: &[u8] = b"{}";
/// go-containerregistry's zero `v1.Time`, which cosign's configs carry.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The tag cosign's tag scheme uses for `digest`: `sha256-<hex>.<suffix>`, e.g.
/// `tag_for(d, "sig")`. A leading `.` on `suffix` is ignored.
pub fn tag_for(digest: &Digest, suffix: &str) -> String {
    format!(
        "{}-{}.{}",
        digest.algorithm().as_str(),
        digest.hex(),
        suffix.trim_start_matches('.')
    )
}

/// A blob to upload and describe in a manifest: a signature payload, an envelope,
/// an SBOM, a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The descriptor's `mediaType`.
    pub media_type: String,
    /// The content.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`.
    pub digest: Digest,
    /// The descriptor's `annotations`.
    pub annotations: BTreeMap<String, String>,
}

impl Blob {
    /// A blob of `media_type` without annotations.
    pub fn new(media_type: impl Into<String>, bytes: Vec<u8>) -> Blob {
        let digest = Digest::sha256_of(&bytes);
        Blob {
            media_type: media_type.into(),
            bytes,
            digest,
            annotations: BTreeMap::new(),
        }
    }

    /// A simple-signing payload layer carrying its base64 signature in the
    /// `dev.cosignproject.cosign/signature` annotation.
    pub fn signature(payload: Vec<u8>, sig_b64: &str) -> Blob {
        let mut blob = Blob::new(SIMPLE_SIGNING_MEDIA_TYPE, payload);
        blob.annotations
            .insert(SIGNATURE_ANNOTATION.to_owned(), sig_b64.to_owned());
        blob
    }

    /// A DSSE envelope layer, annotated as cosign does: `predicateType` and an empty
    /// `dev.cosignproject.cosign/signature`.
    pub fn attestation(envelope_json: Vec<u8>, predicate_type: &str) -> Blob {
        let mut blob = Blob::new(DSSE_MEDIA_TYPE, envelope_json);
        blob.annotations
            .insert(SIGNATURE_ANNOTATION.to_owned(), String::new());
        blob.annotations.insert(
            PREDICATE_TYPE_ANNOTATION.to_owned(),
            predicate_type.to_owned(),
        );
        blob
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn descriptor(&self) -> DescriptorJson<'_> {
        DescriptorJson {
            media_type: &self.media_type,
            size: self.size(),
            digest: self.digest.to_string(),
            annotations: (!self.annotations.is_empty()).then_some(&self.annotations),
        }
    }
}

/// A manifest ready to push, with the config blob it names (to upload first, along
/// with the layers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The manifest bytes, to push exactly as they are.
    pub manifest: Vec<u8>,
    /// The manifest's media type (the OCI image manifest).
    pub media_type: &'static str,
    /// SHA-256 of `manifest`.
    pub digest: Digest,
    /// The config blob the manifest names.
    pub config: Blob,
}

impl Built {
    fn new(manifest: Vec<u8>, config: Blob) -> Built {
        Built {
            digest: Digest::sha256_of(&manifest),
            manifest,
            media_type: OCI_MANIFEST,
            config,
        }
    }
}

/// A descriptor in go-containerregistry's field order.
#[derive(Serialize)]
struct DescriptorJson<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a BTreeMap<String, String>>,
}

/// The image config cosign's signature images carry.
#[derive(Serialize)]
struct SignatureConfig<'a> {
    architecture: &'static str,
    created: &'static str,
    history: Vec<History>,
    os: &'static str,
    rootfs: RootFs<'a>,
    config: Map<String, Value>,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<&'a str>,
}

#[derive(Serialize)]
struct TagSchemeManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: DescriptorJson<'a>,
    layers: Vec<Value>,
}

#[derive(Serialize)]
struct ReferrerManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    #[serde(rename = "artifactType")]
    artifact_type: &'a str,
    config: DescriptorJson<'a>,
    layers: [DescriptorJson<'a>; 1],
    subject: SubjectJson<'a>,
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct SubjectJson<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: String,
}

fn to_json(value: &impl Serialize, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| SupplyError::Format(format!("encoding {what}: {e}")))
}

/// The `.sig` / `.att` / `.sbom` manifest after adding `new`: the layers of
/// `existing` (the manifest currently at the tag, if any) kept as they are, then
/// `new` unless an identical layer (same digest, media type and annotations) is
/// already there, which makes re-attaching idempotent. A layer with the same
/// digest but other annotations (the same payload signed by another key) is
/// added. The config is rebuilt for the resulting layers.
///
/// # Errors
///
/// [`SupplyError::Format`] when `existing` is not an image manifest with a valid
/// `layers` array.
pub fn tag_scheme_manifest(existing: Option<&[u8]>, new: &Blob) -> Result<Built> {
    let mut layers: Vec<Value> = match existing {
        None => Vec::new(),
        Some(bytes) => existing_layers(bytes)?,
    };
    let new_layer = serde_json::to_value(new.descriptor())
        .map_err(|e| SupplyError::Format(format!("encoding the layer descriptor: {e}")))?;
    let parsed_new = layer_ref(&new_layer, layers.len())?;
    let present = layers
        .iter()
        .enumerate()
        .any(|(i, l)| layer_ref(l, i).is_ok_and(|l| l == parsed_new));
    if !present {
        layers.push(new_layer);
    }

    let digests = layers
        .iter()
        .enumerate()
        .map(|(i, l)| layer_ref(l, i).map(|l| l.digest.to_string()))
        .collect::<Result<Vec<String>>>()?;
    let config = SignatureConfig {
        architecture: "",
        created: ZERO_TIME,
        history: digests
            .iter()
            .map(|_| History { created: ZERO_TIME })
            .collect(),
        os: "",
        rootfs: RootFs {
            kind: "layers",
            diff_ids: digests.iter().map(String::as_str).collect(),
        },
        config: Map::new(),
    };
    let config = Blob::new(OCI_CONFIG, to_json(&config, "the signature config")?);
    let manifest = TagSchemeManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        config: config.descriptor(),
        layers,
    };
    let manifest = to_json(&manifest, "the manifest")?;
    Ok(Built::new(manifest, config))
}

/// The layer descriptors of an existing tag-scheme manifest, verbatim.
fn existing_layers(bytes: &[u8]) -> Result<Vec<Value>> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| SupplyError::Format(format!("existing manifest is not JSON: {e}")))?;
    let layers = doc
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| SupplyError::Format("existing manifest has no layers array".into()))?;
    for (i, layer) in layers.iter().enumerate() {
        layer_ref(layer, i)?;
    }
    Ok(layers.clone())
}

/// An OCI 1.1 referrer: an image manifest of `artifact_type` whose config is the
/// empty descriptor, whose one layer is `blob`, and whose `subject` is the signed
/// manifest. `annotations` are written on the manifest, with
/// `org.opencontainers.image.created` set to now (RFC 3339, UTC) unless given.
/// The returned [`Built::config`] is the `{}` blob, which must be uploaded too.
///
/// # Errors
///
/// [`SupplyError::Format`] when `artifact_type` is not a media type.
pub fn referrer_manifest(
    artifact_type: &str,
    subject: &Descriptor,
    blob: &Blob,
    annotations: &BTreeMap<String, String>,
) -> Result<Built> {
    if !artifact_type.contains('/') || artifact_type.trim() != artifact_type {
        return Err(SupplyError::Format(format!(
            "artifactType {artifact_type:?} is not a media type"
        )));
    }
    let mut annotations = annotations.clone();
    if !annotations.contains_key(CREATED_ANNOTATION) {
        annotations.insert(CREATED_ANNOTATION.to_owned(), now_rfc3339()?);
    }
    let config = Blob::new(OCI_EMPTY, EMPTY_JSON.to_vec());
    let manifest = ReferrerManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        artifact_type,
        config: config.descriptor(),
        layers: [blob.descriptor()],
        subject: SubjectJson {
            media_type: &subject.media_type,
            size: subject.size,
            digest: subject.digest.to_string(),
        },
        annotations: &annotations,
    };
    let manifest = to_json(&manifest, "the referrer manifest")?;
    Ok(Built::new(manifest, config))
}

/// The current time as RFC 3339 in UTC, whole seconds (as cosign writes it).
fn now_rfc3339() -> Result<String> {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| SupplyError::Format(format!("formatting the creation time: {e}")))
}

/// One layer of a signature, attestation or SBOM manifest, as a reader needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// `mediaType`.
    pub media_type: String,
    /// `digest`.
    pub digest: Digest,
    /// `size`.
    pub size: u64,
    /// `annotations` (empty when absent).
    pub annotations: BTreeMap<String, String>,
}

/// The layers of a tag-scheme or referrer manifest, with their annotations.
///
/// # Errors
///
/// [`SupplyError::Format`] when the bytes are not an image manifest berth accepts
/// (checked by `berth_oci::manifest::parse`) or a layer is malformed.
pub fn layers_of(manifest: &[u8]) -> Result<Vec<LayerRef>> {
    let parsed = berth_oci::manifest::parse(None, manifest)
        .map_err(|e| SupplyError::Format(format!("not a valid manifest: {e}")))?;
    if berth_oci::media_type::is_index(&parsed.media_type) {
        return Err(SupplyError::Format(format!(
            "manifest is an index ({}), not an image manifest",
            parsed.media_type
        )));
    }
    let doc: Value = serde_json::from_slice(manifest)
        .map_err(|e| SupplyError::Format(format!("not a valid manifest: {e}")))?;
    doc.get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| SupplyError::Format("manifest has no layers array".into()))?
        .iter()
        .enumerate()
        .map(|(i, l)| layer_ref(l, i))
        .collect()
}

/// Read one layer descriptor; `index` names it in errors.
fn layer_ref(layer: &Value, index: usize) -> Result<LayerRef> {
    let path = format!("layers[{index}]");
    let d = berth_oci::manifest::parse_descriptor(layer, &path)
        .map_err(|e| SupplyError::Format(format!("manifest {e}")))?;
    let annotations = match layer.get("annotations") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(SupplyError::Format(format!(
                    "manifest field {path}.annotations.{k}: must be a string"
                ))),
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(SupplyError::Format(format!(
                "manifest field {path}.annotations: must be an object"
            )));
        }
    };
    Ok(LayerRef {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
        annotations,
    })
}
