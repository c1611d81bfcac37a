//! Manifest parsing and validation (image-spec `manifest.md`, `image-index.md`,
//! `descriptor.md`; Docker manifest v2 schema 2).
//!
//! A received manifest is never re-serialized: callers keep the exact bytes and digest
//! them. This module only reads them to learn what they reference, reporting the first
//! problem with the JSON path of the offending field.

use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::media_type::{self, essence};

/// A content descriptor as found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `mediaType`.
    pub media_type: String,
    /// `digest`.
    pub digest: Digest,
    /// `size` in bytes.
    pub size: u64,
    /// `artifactType`, when present.
    pub artifact_type: Option<String>,
    /// Whether the descriptor lists `urls` to fetch the content from elsewhere.
    pub has_urls: bool,
}

impl Descriptor {
    /// Whether the content may live outside the registry (Docker foreign layers and
    /// OCI non-distributable layers that name `urls`), so need not be pushed.
    pub fn is_foreign(&self) -> bool {
        self.has_urls
            && (self.media_type == media_type::DOCKER_FOREIGN_LAYER
                || self
                    .media_type
                    .starts_with(media_type::OCI_NONDISTRIBUTABLE_PREFIX))
    }
}

/// Why manifest bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not a JSON object.
    #[error("manifest is not a JSON object: {0}")]
    NotJson(String),
    /// Neither the Content-Type nor the body names a manifest media type berth knows.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// Content-Type and the body's `mediaType` disagree.
    #[error("Content-Type {content_type:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch {
        /// The request's Content-Type.
        content_type: String,
        /// The body's `mediaType`.
        body: String,
    },
    /// A field is missing or has the wrong shape.
    #[error("field {path}: {reason}")]
    Field {
        /// JSON path of the field, e.g. `layers[2].digest`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ManifestError {
    fn field(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ManifestError::Field {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// What a registry needs to know about a manifest it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    /// The manifest's media type (from the body, else the Content-Type).
    pub media_type: String,
    /// Blobs it references (config and layers), which must exist in the repository,
    /// foreign layers excluded.
    pub blobs: Vec<Descriptor>,
    /// Manifests it references (index entries), which must exist in the repository.
    pub manifests: Vec<Descriptor>,
    /// The `subject` descriptor, if any.
    pub subject: Option<Descriptor>,
    /// The artifact type the referrers API reports: `artifactType`, or for an image
    /// manifest without one, the config's media type.
    pub artifact_type: Option<String>,
    /// `annotations`, as found.
    pub annotations: Option<Map<String, Value>>,
}

/// Parse one descriptor object; `path` names it in errors (e.g. `manifests[0]`).
pub fn parse_descriptor(v: &Value, path: &str) -> Result<Descriptor, ManifestError> {
    descriptor(v, path)
}

fn descriptor(v: &Value, path: &str) -> Result<Descriptor, ManifestError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ManifestError::field(path, "must be a descriptor object"))?;
    let media_type = obj
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| ManifestError::field(format!("{path}.mediaType"), "must be a string"))?
        .to_owned();
    let digest = obj
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| ManifestError::field(format!("{path}.digest"), "must be a string"))?
        .parse::<Digest>()
        .map_err(|e| ManifestError::field(format!("{path}.digest"), e.to_string()))?;
    let size = obj.get("size").and_then(Value::as_u64).ok_or_else(|| {
        ManifestError::field(format!("{path}.size"), "must be a non-negative integer")
    })?;
    let artifact_type = optional_str(obj, "artifactType", path)?;
    let has_urls = match obj.get("urls") {
        None => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => {
            return Err(ManifestError::field(
                format!("{path}.urls"),
                "must be an array",
            ));
        }
    };
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type,
        has_urls,
    })
}

fn optional_str(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, ManifestError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => {
            let full = if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
            Err(ManifestError::field(full, "must be a string"))
        }
    }
}

fn descriptor_list(obj: &Map<String, Value>, key: &str) -> Result<Vec<Descriptor>, ManifestError> {
    let arr = obj
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| ManifestError::field(key, "must be an array of descriptors"))?;
    arr.iter()
        .enumerate()
        .map(|(i, v)| descriptor(v, &format!("{key}[{i}]")))
        .collect()
}

/// Parse and validate manifest bytes pushed with `content_type` (the request's
/// Content-Type header, if any).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<ParsedManifest, ManifestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ManifestError::NotJson(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ManifestError::NotJson("top level is not an object".into()))?;

    let body_type = optional_str(obj, "mediaType", "")?;
    let header_type = content_type.map(essence).filter(|ct| ct_is_specific(ct));
    let media_type = match (header_type, body_type) {
        (Some(ct), Some(bt)) if ct != bt => {
            return Err(ManifestError::MediaTypeMismatch {
                content_type: ct.to_owned(),
                body: bt,
            });
        }
        (_, Some(bt)) => bt,
        (Some(ct), None) => ct.to_owned(),
        (None, None) => return Err(ManifestError::UnsupportedMediaType(String::new())),
    };
    if !media_type::is_manifest(&media_type) {
        return Err(ManifestError::UnsupportedMediaType(media_type));
    }

    match obj.get("schemaVersion").and_then(Value::as_u64) {
        Some(2) => {}
        _ => return Err(ManifestError::field("schemaVersion", "must be 2")),
    }

    let subject = obj
        .get("subject")
        .filter(|v| !v.is_null())
        .map(|v| descriptor(v, "subject"))
        .transpose()?;
    let annotations = match obj.get("annotations") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(ManifestError::field("annotations", "must be an object")),
    };
    if let Some(a) = &annotations
        && let Some((k, _)) = a.iter().find(|(_, v)| !v.is_string())
    {
        return Err(ManifestError::field(
            format!("annotations.{k}"),
            "must be a string",
        ));
    }
    let artifact_type = optional_str(obj, "artifactType", "")?;

    if media_type::is_index(&media_type) {
        let manifests = descriptor_list(obj, "manifests")?;
        Ok(ParsedManifest {
            media_type,
            blobs: Vec::new(),
            manifests,
            subject,
            artifact_type,
            annotations,
        })
    } else {
        let config = descriptor(
            obj.get("config")
                .ok_or_else(|| ManifestError::field("config", "is required"))?,
            "config",
        )?;
        let layers = descriptor_list(obj, "layers")?;
        let artifact_type = artifact_type.or_else(|| Some(config.media_type.clone()));
        let mut blobs = Vec::with_capacity(layers.len() + 1);
        blobs.push(config);
        blobs.extend(layers.into_iter().filter(|l| !l.is_foreign()));
        Ok(ParsedManifest {
            media_type,
            blobs,
            manifests: Vec::new(),
            subject,
            artifact_type,
            annotations,
        })
    }
}

/// A Content-Type that names something specific, as opposed to the generic types
/// some clients send for any body (those defer to the body's `mediaType`).
fn ct_is_specific(ct: &str) -> bool {
    !matches!(
        ct,
        "" | "application/json" | "application/octet-stream" | "text/plain"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::*;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const D2: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":0}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":2}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let m = parse(Some(OCI_MANIFEST), image("").as_bytes()).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.artifact_type.as_deref(), Some(OCI_CONFIG));
        assert!(m.subject.is_none());
    }

    #[test]
    fn subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":9}},"annotations":{{"a":"b"}}"#
        );
        let m = parse(Some(OCI_MANIFEST), image(&extra).as_bytes()).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.sig"));
        assert_eq!(m.subject.unwrap().digest.to_string(), D2);
        assert_eq!(m.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn index_lists_manifests() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let m = parse(Some(OCI_INDEX), body.as_bytes()).unwrap();
        assert_eq!(m.manifests.len(), 1);
        assert!(m.blobs.is_empty());
        assert_eq!(m.artifact_type, None);
    }

    #[test]
    fn content_type_mismatch_is_rejected() {
        let err = parse(Some(OCI_INDEX), image("").as_bytes()).unwrap_err();
        assert!(matches!(err, ManifestError::MediaTypeMismatch { .. }));
    }

    #[test]
    fn generic_content_type_defers_to_body() {
        let m = parse(Some("application/json"), image("").as_bytes()).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
    }

    #[test]
    fn media_type_from_header_when_body_has_none() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":0}},"layers":[]}}"#
        );
        let m = parse(Some(DOCKER_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let cases = [
            ("not json", "not a JSON object"),
            ("[]", "not a JSON object"),
            (r#"{"schemaVersion":2}"#, "unsupported manifest media type"),
            (
                &format!(r#"{{"schemaVersion":1,"mediaType":"{OCI_MANIFEST}"}}"#),
                "schemaVersion",
            ),
            (
                &format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#),
                "field config",
            ),
            (
                &image("").replace(D2, "sha256:nothex"),
                "field layers[0].digest",
            ),
            (
                &image("").replace("\"size\":2", "\"size\":-1"),
                "layers[0].size",
            ),
            (&image(r#","annotations":{"a":1}"#), "annotations.a"),
            (
                &format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_SCHEMA1}"}}"#),
                "unsupported manifest media type",
            ),
        ];
        for (body, want) in cases {
            let err = parse(None, body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn foreign_layers_need_not_exist() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{D1}","size":0}},"layers":[{{"mediaType":"{DOCKER_FOREIGN_LAYER}","digest":"{D2}","size":2,"urls":["https://example.com/l"]}}]}}"#
        );
        let m = parse(Some(DOCKER_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.blobs.len(), 1);
    }
}
