//! Validation against the OCI image-spec JSON schemas.
//!
//! This module owns the image-spec v1.1.1 JSON schemas vendored in `crates/berth-oci/schema/`
//! (embedded with `include_str!`, so nothing is read from disk at run time) and the validators
//! compiled from them: [`validate`] checks an image manifest, image index, image config, the
//! `oci-layout` file or a single content descriptor against the schema the spec publishes for
//! it, and reports every violation with the JSON pointer of the offending value
//! ([`SchemaError`]). [`SchemaKind::for_media_type`] picks the schema for a blob's media type.
//!
//! The schemas `$ref` each other by relative file name, resolved against the draft-04 `id`s
//! they declare (`https://opencontainers.org/schema/…`). Every vendored file is registered
//! under each of those base URIs, and retrieval is switched off, so every reference resolves
//! to an embedded file and nothing is ever fetched. The schemas are compiled once, on first use,
//! by the `boon` crate as draft-04, with the `format`s they use (`date-time`, `uri`) asserted.
//!
//! The schemas check structure only: a digest that matches the pattern but names the wrong
//! content, or a media type that is well formed but unexpected, is the business of
//! [`crate::manifest`] and of the callers.

use std::fmt;
use std::sync::LazyLock;

use boon::{Compiler, Draft, ErrorKind, SchemaIndex, Schemas, UrlLoader, ValidationError};
use serde_json::Value;

use crate::media_type;

/// The vendored schema files, by file name, as embedded in the binary.
const VENDORED: [(&str, &str); 7] = [
    (
        "config-schema.json",
        include_str!("../schema/config-schema.json"),
    ),
    (
        "content-descriptor.json",
        include_str!("../schema/content-descriptor.json"),
    ),
    (
        "defs-descriptor.json",
        include_str!("../schema/defs-descriptor.json"),
    ),
    ("defs.json", include_str!("../schema/defs.json")),
    (
        "image-index-schema.json",
        include_str!("../schema/image-index-schema.json"),
    ),
    (
        "image-layout-schema.json",
        include_str!("../schema/image-layout-schema.json"),
    ),
    (
        "image-manifest-schema.json",
        include_str!("../schema/image-manifest-schema.json"),
    ),
];

/// The base URIs the schemas' relative `$ref`s resolve against: the files declare `id`s both
/// directly under `/schema/` (the content descriptor) and under `/schema/image/` (the rest).
const BASE_URIS: [&str; 2] = [
    "https://opencontainers.org/schema/image/",
    "https://opencontainers.org/schema/",
];

/// Longest violation message kept, in characters: the library quotes the offending value,
/// which can be a whole document.
const MAX_MESSAGE_CHARS: usize = 300;

/// Which image-spec document a JSON value is checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// An image manifest (`application/vnd.oci.image.manifest.v1+json`),
    /// `image-manifest-schema.json`.
    ImageManifest,
    /// An image index (`application/vnd.oci.image.index.v1+json`), `image-index-schema.json`.
    ImageIndex,
    /// An image config (`application/vnd.oci.image.config.v1+json`), `config-schema.json`.
    ImageConfig,
    /// The `oci-layout` file at the root of an image layout, `image-layout-schema.json`.
    ImageLayout,
    /// A single content descriptor, `content-descriptor.json`.
    Descriptor,
}

impl SchemaKind {
    /// Every kind, in declaration order.
    pub const ALL: [SchemaKind; 5] = [
        SchemaKind::ImageManifest,
        SchemaKind::ImageIndex,
        SchemaKind::ImageConfig,
        SchemaKind::ImageLayout,
        SchemaKind::Descriptor,
    ];

    /// The schema for a blob of media type `media_type` (parameters such as `; charset=utf-8`
    /// are ignored): the OCI manifest, index and config types have one. Every other type,
    /// including the Docker v2.2 manifest, manifest list and config types, gives `None`: the
    /// OCI schemas do not apply to them.
    pub fn for_media_type(media_type: &str) -> Option<SchemaKind> {
        match media_type::essence(media_type) {
            media_type::OCI_MANIFEST => Some(SchemaKind::ImageManifest),
            media_type::OCI_INDEX => Some(SchemaKind::ImageIndex),
            media_type::OCI_CONFIG => Some(SchemaKind::ImageConfig),
            _ => None,
        }
    }

    /// The file name of this kind's schema in the image-spec `schema/` folder.
    pub fn schema_file(self) -> &'static str {
        match self {
            SchemaKind::ImageManifest => "image-manifest-schema.json",
            SchemaKind::ImageIndex => "image-index-schema.json",
            SchemaKind::ImageConfig => "config-schema.json",
            SchemaKind::ImageLayout => "image-layout-schema.json",
            SchemaKind::Descriptor => "content-descriptor.json",
        }
    }

    /// Position in [`SchemaKind::ALL`] and in the compiled validators.
    fn index(self) -> usize {
        match self {
            SchemaKind::ImageManifest => 0,
            SchemaKind::ImageIndex => 1,
            SchemaKind::ImageConfig => 2,
            SchemaKind::ImageLayout => 3,
            SchemaKind::Descriptor => 4,
        }
    }
}

impl fmt::Display for SchemaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaKind::ImageManifest => "image manifest",
            SchemaKind::ImageIndex => "image index",
            SchemaKind::ImageConfig => "image config",
            SchemaKind::ImageLayout => "oci-layout file",
            SchemaKind::Descriptor => "content descriptor",
        })
    }
}

/// One place where a document breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer (RFC 6901) to the offending value in the document: `""` for the document
    /// itself, `/layers/0/digest` for the digest of the first layer.
    pub instance_path: String,
    /// Absolute location of the schema keyword that failed (after following `$ref`s), e.g.
    /// `https://opencontainers.org/schema/defs-descriptor.json#/definitions/digest/pattern`:
    /// the last path segment before `#` names the vendored file.
    pub schema_location: String,
    /// What is wrong, in the JSON-schema library's words, e.g. `missing properties
    /// 'config'`; at most 300 characters.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.instance_path.is_empty() {
            "(root)"
        } else {
            &self.instance_path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Why a document failed [`validate`].
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The bytes are not a JSON document at all.
    #[error("{kind} is not valid JSON: {source}")]
    NotJson {
        /// The kind the document was checked as.
        kind: SchemaKind,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// The document is JSON but breaks its schema; `violations` holds every violation found,
    /// in the order the validator met them, and is never empty. Displayed as a summary line
    /// followed by one line per violation.
    #[error("{}", invalid_summary(*.kind, .violations))]
    Invalid {
        /// The kind the document was checked as.
        kind: SchemaKind,
        /// Every violation found.
        violations: Vec<Violation>,
    },
    /// The embedded schemas could not be compiled. It cannot happen with the vendored files
    /// (a test compiles them all); it is reported rather than panicking.
    #[error("the embedded image-spec JSON schemas did not compile: {message}")]
    SchemasUnavailable {
        /// What the schema library said.
        message: String,
    },
}

impl SchemaError {
    /// The violations found: empty unless this is [`SchemaError::Invalid`].
    pub fn violations(&self) -> &[Violation] {
        match self {
            SchemaError::Invalid { violations, .. } => violations,
            SchemaError::NotJson { .. } | SchemaError::SchemasUnavailable { .. } => &[],
        }
    }
}

/// Display text of [`SchemaError::Invalid`]: a summary, then each violation on its own line.
fn invalid_summary(kind: SchemaKind, violations: &[Violation]) -> String {
    let count = violations.len();
    let mut text = format!(
        "{kind} does not match the image-spec JSON schema ({count} violation{}):",
        if count == 1 { "" } else { "s" }
    );
    for violation in violations {
        text.push_str("\n  ");
        text.push_str(&violation.to_string());
    }
    text
}

/// Checks `json` as a document of kind `kind` against the vendored image-spec schema.
///
/// # Errors
///
/// [`SchemaError::NotJson`] when `json` does not parse, [`SchemaError::Invalid`] with every
/// violation when it breaks the schema, and [`SchemaError::SchemasUnavailable`] should the
/// embedded schemas not compile.
pub fn validate(kind: SchemaKind, json: &[u8]) -> Result<(), SchemaError> {
    let value: Value =
        serde_json::from_slice(json).map_err(|source| SchemaError::NotJson { kind, source })?;
    validate_value(kind, &value)
}

/// Checks an already parsed document, as [`validate`] does.
///
/// # Errors
///
/// [`SchemaError::Invalid`] with every violation when `value` breaks the schema, and
/// [`SchemaError::SchemasUnavailable`] should the embedded schemas not compile.
pub fn validate_value(kind: SchemaKind, value: &Value) -> Result<(), SchemaError> {
    let compiled = COMPILED
        .as_ref()
        .map_err(|message| SchemaError::SchemasUnavailable {
            message: message.clone(),
        })?;
    let root =
        *compiled
            .roots
            .get(kind.index())
            .ok_or_else(|| SchemaError::SchemasUnavailable {
                message: format!("no compiled schema for the {kind}"),
            })?;
    match compiled.schemas.validate(value, root) {
        Ok(()) => Ok(()),
        Err(error) => Err(SchemaError::Invalid {
            kind,
            violations: violations(&error),
        }),
    }
}

/// Every violation in a `boon` validation error, in document order, messages cut to a
/// readable length: the leaves of its tree, a failed `oneOf`/`anyOf` as one violation
/// listing why each alternative failed, or the failure itself when it has no causes.
/// Shared by every crate that validates against vendored JSON schemas.
pub fn violations(error: &ValidationError<'_, '_>) -> Vec<Violation> {
    let mut out = Vec::new();
    collect_violations(error, &mut out);
    if out.is_empty() {
        // A failure with no cause below it: report the failure itself.
        out.push(violation(error, error.kind.to_string()));
    }
    out
}

/// Flattens the validator's tree of errors into `out`, in document order: every leaf is a
/// violation, except below a failed `oneOf`/`anyOf`, which is one violation whose message
/// lists why each alternative failed.
fn collect_violations(error: &ValidationError<'_, '_>, out: &mut Vec<Violation>) {
    let alternatives = matches!(error.kind, ErrorKind::OneOf(None) | ErrorKind::AnyOf);
    if error.causes.is_empty() {
        out.push(violation(error, error.kind.to_string()));
    } else if alternatives {
        let mut reasons = Vec::new();
        for cause in &error.causes {
            collect_violations(cause, &mut reasons);
        }
        let here = error.instance_location.to_string();
        let reasons: Vec<String> = reasons
            .into_iter()
            .map(|reason| {
                if reason.instance_path == here {
                    reason.message
                } else {
                    format!("{}: {}", reason.instance_path, reason.message)
                }
            })
            .collect();
        out.push(violation(
            error,
            format!("{} ({})", error.kind, reasons.join("; ")),
        ));
    } else {
        for cause in &error.causes {
            collect_violations(cause, out);
        }
    }
}

/// The [`Violation`] for one node of the validator's error tree.
fn violation(error: &ValidationError<'_, '_>, message: String) -> Violation {
    let schema_location = match error.kind.keyword_path() {
        Some(keyword) => format!("{}/{keyword}", error.schema_url),
        None => error.schema_url.to_owned(),
    };
    Violation {
        instance_path: error.instance_location.to_string(),
        schema_location,
        message: shorten(message),
    }
}

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters, with an ellipsis when cut.
fn shorten(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

/// The compiled schemas and, indexed by [`SchemaKind::index`], the root of each kind.
struct Compiled {
    /// Every compiled schema.
    schemas: Schemas,
    /// The root schema of each kind, in [`SchemaKind::ALL`] order.
    roots: Vec<SchemaIndex>,
}

/// The schemas, compiled on first use, or why they could not be.
static COMPILED: LazyLock<Result<Compiled, String>> = LazyLock::new(compile);

/// Refuses every URL: all references must resolve to a registered vendored file.
struct NoRetrieval;

impl UrlLoader for NoRetrieval {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is not a vendored image-spec schema; nothing is fetched").into())
    }
}

/// Parses the vendored files, registers each under every base URI, and compiles the root
/// schema of each [`SchemaKind`] as draft-04 with retrieval off and `format` asserted (as
/// the image-spec's own validator does for `date-time` and `uri`).
fn compile() -> Result<Compiled, String> {
    let mut compiler = Compiler::new();
    compiler.set_default_draft(Draft::V4);
    compiler.enable_format_assertions();
    compiler.use_loader(Box::new(NoRetrieval));
    for base in BASE_URIS {
        for (name, text) in VENDORED {
            let value: Value =
                serde_json::from_str(text).map_err(|error| format!("{name}: {error}"))?;
            compiler
                .add_resource(&format!("{base}{name}"), value)
                .map_err(|error| format!("{name}: {error:#}"))?;
        }
    }
    let mut schemas = Schemas::new();
    let mut roots = Vec::with_capacity(SchemaKind::ALL.len());
    for kind in SchemaKind::ALL {
        let file = kind.schema_file();
        let root = compiler
            .compile(&format!("{}{file}", BASE_URIS[0]), &mut schemas)
            .map_err(|error| format!("{file}: {error:#}"))?;
        roots.push(root);
    }
    Ok(Compiled { schemas, roots })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;
    use std::path::Path;

    /// `image-spec/manifest.md`, "Example Image Manifest".
    const SPEC_MANIFEST: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7",
        "size": 7023
      },
      "layers": [
        {
          "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
          "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0",
          "size": 32654
        },
        {
          "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
          "digest": "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b",
          "size": 16724
        }
      ],
      "subject": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        "size": 7682
      },
      "annotations": {
        "com.example.key1": "value1",
        "com.example.key2": "value2"
      }
    }"#;

    /// `image-spec/manifest.md`, artifact guidance: an artifact with the empty config and data
    /// embedded in the empty descriptor.
    const SPEC_ARTIFACT_MANIFEST: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "artifactType": "application/vnd.example+type",
      "config": {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
        "data": "e30="
      },
      "layers": [
        {
          "mediaType": "application/vnd.oci.empty.v1+json",
          "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
          "size": 2
        }
      ],
      "annotations": {
        "oci.opencontainers.image.created": "2023-01-02T03:04:05Z",
        "com.example.data": "payload"
      }
    }"#;

    /// `image-spec/image-index.md`, "Example Image Index" (with a nested index).
    const SPEC_INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 7143,
          "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
          "platform": {
            "architecture": "ppc64le",
            "os": "linux"
          }
        },
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 7682,
          "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
          "platform": {
            "architecture": "arm64",
            "os": "linux",
            "variant": "v8",
            "os.features": ["sse4"]
          }
        },
        {
          "mediaType": "application/vnd.oci.image.index.v1+json",
          "size": 7682,
          "digest": "sha256:601570aaff1b68a61eb9c85b8beca1644e698003e0cdb5bce960f193d265a8b7"
        }
      ],
      "annotations": {
        "com.example.key1": "value1",
        "com.example.key2": "value2"
      }
    }"#;

    /// `image-spec/image-layout.md`, the example `index.json` of a layout.
    const SPEC_LAYOUT_INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {
          "mediaType": "application/vnd.oci.image.index.v1+json",
          "size": 7143,
          "digest": "sha256:0228f90e926ba6b96e4f39cf294b2586d38fbb5a1e385c05cd1ee40ea54fe7fd",
          "annotations": {
            "org.opencontainers.image.ref.name": "stable-release"
          }
        },
        {
          "mediaType": "application/xml",
          "size": 7143,
          "digest": "sha256:b3d63d132d21c3ff4c35a061adf23cf43da8ae054247e32faa95494d904a007e",
          "annotations": {
            "org.freedesktop.specifications.metainfo.version": "1.0"
          }
        }
      ],
      "annotations": {
        "com.example.index.revision": "r124356"
      }
    }"#;

    /// `image-spec/config.md`, "Example".
    const SPEC_CONFIG: &str = r#"{
      "created": "2015-10-31T22:22:56.015925234Z",
      "author": "Alyssa P. Hacker <alyspdev@example.com>",
      "architecture": "amd64",
      "os": "linux",
      "config": {
        "User": "alice",
        "ExposedPorts": { "8080/tcp": {} },
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Entrypoint": ["/bin/my-app-binary"],
        "Cmd": ["--foreground", "--config", "/etc/my-app.d/default.cfg"],
        "Volumes": { "/var/job-result-data": {}, "/var/log/my-app-logs": {} },
        "WorkingDir": "/home/alice",
        "Labels": { "com.example.project.git.url": "https://example.com/project.git" }
      },
      "rootfs": {
        "diff_ids": [
          "sha256:c6f988f4874bb0add23a778f753c65efe992244e148a1d2ec2a8b664fb66bbd1",
          "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
        ],
        "type": "layers"
      },
      "history": [
        {
          "created": "2015-10-31T22:22:54.690851953Z",
          "created_by": "/bin/sh -c #(nop) ADD file:a3bc1e842b69636f9df5256c49c5374fb4eef1e281fe3f282c65fb853ee171c5 in /"
        },
        {
          "created": "2015-10-31T22:22:55.613815829Z",
          "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]",
          "empty_layer": true
        }
      ]
    }"#;

    const DIGEST_A: &str =
        "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0";
    const DIGEST_B: &str =
        "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7";

    /// A small valid manifest, to break one field at a time.
    fn manifest() -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": DIGEST_B,
                "size": 1469
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": DIGEST_A,
                "size": 3623807
            }]
        })
    }

    /// A small valid index, to break one field at a time.
    fn index() -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": DIGEST_A,
                "size": 528,
                "platform": { "architecture": "amd64", "os": "linux" }
            }]
        })
    }

    /// A minimal valid image config, to break one field at a time.
    fn config() -> Value {
        json!({
            "architecture": "arm64",
            "variant": "v8",
            "os": "linux",
            "created": "2024-05-01T12:00:00Z",
            "config": { "Env": ["PATH=/bin"], "Cmd": null },
            "rootfs": { "type": "layers", "diff_ids": [DIGEST_A] }
        })
    }

    fn descriptor() -> Value {
        json!({
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
            "data": "e30=",
            "urls": ["https://example.com/blob"]
        })
    }

    /// `value` with the JSON pointer `pointer` set to `new` (or removed when `new` is None).
    fn with(mut value: Value, pointer: &str, new: Option<Value>) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let parent = value.pointer_mut(parent).unwrap();
        match (parent, new) {
            (Value::Object(map), Some(new)) => {
                map.insert(key.to_owned(), new);
            }
            (Value::Object(map), None) => {
                map.remove(key).unwrap();
            }
            (Value::Array(items), Some(new)) => items[key.parse::<usize>().unwrap()] = new,
            (other, _) => panic!("{pointer}: cannot edit {other}"),
        }
        value
    }

    fn violations(kind: SchemaKind, value: &Value) -> Vec<Violation> {
        match validate(kind, value.to_string().as_bytes()) {
            Err(SchemaError::Invalid {
                kind: got,
                violations,
            }) => {
                assert_eq!(got, kind);
                assert!(!violations.is_empty());
                violations
            }
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn every_vendored_schema_compiles_offline() {
        let compiled = COMPILED.as_ref().unwrap();
        assert_eq!(compiled.roots.len(), SchemaKind::ALL.len());
        for kind in SchemaKind::ALL {
            assert_eq!(SchemaKind::ALL[kind.index()], kind);
            assert!(VENDORED.iter().any(|(name, _)| *name == kind.schema_file()));
        }
    }

    #[rstest]
    #[case::spec_manifest(SchemaKind::ImageManifest, SPEC_MANIFEST)]
    #[case::spec_artifact_manifest(SchemaKind::ImageManifest, SPEC_ARTIFACT_MANIFEST)]
    #[case::spec_index(SchemaKind::ImageIndex, SPEC_INDEX)]
    #[case::spec_layout_index(SchemaKind::ImageIndex, SPEC_LAYOUT_INDEX)]
    #[case::spec_config(SchemaKind::ImageConfig, SPEC_CONFIG)]
    #[case::oci_layout(SchemaKind::ImageLayout, r#"{"imageLayoutVersion": "1.0.0"}"#)]
    #[case::empty_descriptor(
        SchemaKind::Descriptor,
        r#"{"mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2, "data": "e30="}"#
    )]
    fn spec_examples_pass(#[case] kind: SchemaKind, #[case] document: &str) {
        validate(kind, document.as_bytes()).unwrap();
    }

    #[rstest]
    #[case::manifest(SchemaKind::ImageManifest, manifest())]
    #[case::index(SchemaKind::ImageIndex, index())]
    #[case::config(SchemaKind::ImageConfig, config())]
    #[case::descriptor(SchemaKind::Descriptor, descriptor())]
    #[case::index_without_media_type(SchemaKind::ImageIndex, with(index(), "/mediaType", None))]
    #[case::config_null_labels(
        SchemaKind::ImageConfig,
        with(config(), "/config/Labels", Some(Value::Null))
    )]
    fn small_documents_pass(#[case] kind: SchemaKind, #[case] document: Value) {
        validate_value(kind, &document).unwrap();
        validate(
            kind,
            serde_json::to_vec_pretty(&document).unwrap().as_slice(),
        )
        .unwrap();
    }

    #[rstest]
    #[case::missing_config(
        SchemaKind::ImageManifest,
        with(manifest(), "/config", None),
        "",
        "missing properties 'config'"
    )]
    #[case::schema_version_1(
        SchemaKind::ImageManifest,
        with(manifest(), "/schemaVersion", Some(json!(1))),
        "/schemaVersion",
        "must be >=2, but got 1"
    )]
    #[case::schema_version_string(
        SchemaKind::ImageManifest,
        with(manifest(), "/schemaVersion", Some(json!("2"))),
        "/schemaVersion",
        "integer"
    )]
    #[case::malformed_layer_digest(
        SchemaKind::ImageManifest,
        with(manifest(), "/layers/0/digest", Some(json!("sha256/9834876dcfb05cb1"))),
        "/layers/0/digest",
        "does not match"
    )]
    #[case::size_as_string(
        SchemaKind::ImageManifest,
        with(manifest(), "/config/size", Some(json!("1469"))),
        "/config/size",
        "want integer, but got string"
    )]
    #[case::no_layers(
        SchemaKind::ImageManifest,
        with(manifest(), "/layers", Some(json!([]))),
        "/layers",
        "minimum 1 items required, but got 0"
    )]
    #[case::bad_media_type(
        SchemaKind::ImageManifest,
        with(manifest(), "/layers/0/mediaType", Some(json!("tarball"))),
        "/layers/0/mediaType",
        "does not match"
    )]
    #[case::annotation_not_a_string(
        SchemaKind::ImageManifest,
        with(manifest(), "/annotations", Some(json!({"com.example.n": 1}))),
        "/annotations/com.example.n",
        "want string, but got number"
    )]
    #[case::manifest_is_an_array(SchemaKind::ImageManifest, json!([]), "", "want object, but got array")]
    #[case::platform_without_os(
        SchemaKind::ImageIndex,
        with(index(), "/manifests/0/platform", Some(json!({"architecture": "amd64"}))),
        "/manifests/0/platform",
        "missing properties 'os'"
    )]
    #[case::platform_architecture_number(
        SchemaKind::ImageIndex,
        with(index(), "/manifests/0/platform/architecture", Some(json!(64))),
        "/manifests/0/platform/architecture",
        "want string, but got number"
    )]
    #[case::platform_features_not_a_list(
        SchemaKind::ImageIndex,
        with(index(), "/manifests/0/platform/os.features", Some(json!("sse4"))),
        "/manifests/0/platform/os.features",
        "want array, but got string"
    )]
    #[case::index_entry_without_digest(
        SchemaKind::ImageIndex,
        with(index(), "/manifests/0/digest", None),
        "/manifests/0",
        "missing properties 'digest'"
    )]
    #[case::index_without_manifests(
        SchemaKind::ImageIndex,
        with(index(), "/manifests", None),
        "",
        "missing properties 'manifests'"
    )]
    #[case::config_created_not_a_date(
        SchemaKind::ImageConfig,
        with(config(), "/created", Some(json!("yesterday"))),
        "/created",
        "date-time"
    )]
    #[case::config_without_rootfs(
        SchemaKind::ImageConfig,
        with(config(), "/rootfs", None),
        "",
        "missing properties 'rootfs'"
    )]
    #[case::config_rootfs_type(
        SchemaKind::ImageConfig,
        with(config(), "/rootfs/type", Some(json!("layer"))),
        "/rootfs/type",
        "value must be 'layers'"
    )]
    #[case::config_cmd_string(
        SchemaKind::ImageConfig,
        with(config(), "/config/Cmd", Some(json!("sh -c true"))),
        "/config/Cmd",
        "oneOf failed, none matched (want array, but got string; want null, but got string)"
    )]
    #[case::config_cmd_with_a_number(
        SchemaKind::ImageConfig,
        with(config(), "/config/Cmd", Some(json!(["sh", 1]))),
        "/config/Cmd",
        "(/config/Cmd/1: want string, but got number; want null, but got array)"
    )]
    #[case::layout_version(
        SchemaKind::ImageLayout,
        json!({"imageLayoutVersion": "1.1.0"}),
        "/imageLayoutVersion",
        "1.0.0"
    )]
    #[case::layout_empty(SchemaKind::ImageLayout, json!({}), "", "missing properties 'imageLayoutVersion'")]
    #[case::descriptor_fractional_size(
        SchemaKind::Descriptor,
        with(descriptor(), "/size", Some(json!(-1.5))),
        "/size",
        "integer"
    )]
    #[case::descriptor_url_not_a_uri(
        SchemaKind::Descriptor,
        with(descriptor(), "/urls/0", Some(json!("not a uri"))),
        "/urls/0",
        "uri"
    )]
    fn invalid_documents_name_the_path(
        #[case] kind: SchemaKind,
        #[case] document: Value,
        #[case] path: &str,
        #[case] message: &str,
    ) {
        let found = violations(kind, &document);
        assert!(
            found
                .iter()
                .any(|v| v.instance_path == path && v.message.contains(message)),
            "no violation at {path:?} mentioning {message:?} in {found:#?}"
        );
    }

    #[test]
    fn every_violation_is_reported_and_displayed_one_per_line() {
        let document = with(
            with(manifest(), "/schemaVersion", Some(json!(1))),
            "/layers/0/digest",
            Some(json!("not-a-digest")),
        );
        let error =
            validate(SchemaKind::ImageManifest, document.to_string().as_bytes()).unwrap_err();
        let paths: Vec<&str> = error
            .violations()
            .iter()
            .map(|v| v.instance_path.as_str())
            .collect();
        assert_eq!(paths, ["/schemaVersion", "/layers/0/digest"]);
        assert_eq!(
            error.violations()[1].schema_location,
            "https://opencontainers.org/schema/defs-descriptor.json#/definitions/digest/pattern"
        );

        let text = error.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0],
            "image manifest does not match the image-spec JSON schema (2 violations):"
        );
        assert_eq!(lines[1], "  /schemaVersion: must be >=2, but got 1");
        assert!(lines[2].starts_with("  /layers/0/digest: 'not-a-digest' does not match pattern"));
    }

    #[test]
    fn a_root_violation_is_shown_as_root() {
        let error = validate(SchemaKind::ImageLayout, b"{}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "oci-layout file does not match the image-spec JSON schema (1 violation):\n  \
             (root): missing properties 'imageLayoutVersion'"
        );
    }

    #[test]
    fn long_messages_are_shortened() {
        let huge = "x".repeat(10_000);
        let found = violations(
            SchemaKind::Descriptor,
            &with(descriptor(), "/digest", Some(json!(huge))),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(found[0].message.ends_with('…'));
        assert_eq!(
            shorten("é".repeat(400)).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
        assert_eq!(shorten("short".to_owned()), "short");
    }

    #[test]
    fn bytes_that_are_not_json_are_reported_as_such() {
        let error = validate(SchemaKind::ImageIndex, b"{\"schemaVersion\": 2,").unwrap_err();
        assert!(matches!(
            error,
            SchemaError::NotJson {
                kind: SchemaKind::ImageIndex,
                ..
            }
        ));
        assert!(error.violations().is_empty());
        assert!(
            error
                .to_string()
                .starts_with("image index is not valid JSON: ")
        );
    }

    #[rstest]
    #[case(media_type::OCI_MANIFEST, Some(SchemaKind::ImageManifest))]
    #[case(media_type::OCI_INDEX, Some(SchemaKind::ImageIndex))]
    #[case(media_type::OCI_CONFIG, Some(SchemaKind::ImageConfig))]
    #[case(
        "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
        Some(SchemaKind::ImageManifest)
    )]
    #[case(media_type::DOCKER_MANIFEST, None)]
    #[case(media_type::DOCKER_MANIFEST_LIST, None)]
    #[case("application/vnd.docker.container.image.v1+json", None)]
    #[case(media_type::OCI_EMPTY, None)]
    #[case("application/vnd.oci.image.layer.v1.tar+gzip", None)]
    #[case("", None)]
    fn media_types_map_to_schemas(#[case] media_type: &str, #[case] kind: Option<SchemaKind>) {
        assert_eq!(SchemaKind::for_media_type(media_type), kind);
    }

    /// The vendored files must stay byte-identical to the project's pinned image-spec copy,
    /// `shared/specs/image-spec/` beside the repository (outside it, so possibly absent).
    #[test]
    fn vendored_files_match_the_pinned_copies() {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let pinned = crate_dir.join("../../../shared/specs/image-spec");
        if !pinned.join("schema").is_dir() {
            println!(
                "note: {} does not exist; skipping the comparison with the pinned schemas",
                pinned.join("schema").display()
            );
            return;
        }
        let vendored_dir = crate_dir.join("schema");
        let mut on_disk = Vec::new();
        for entry in std::fs::read_dir(&vendored_dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                on_disk.push(name);
            }
        }
        on_disk.sort();
        let embedded: Vec<&str> = VENDORED.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, embedded, "every vendored .json file is embedded");

        for (name, text) in VENDORED {
            let expected = std::fs::read(pinned.join("schema").join(name)).unwrap();
            assert_eq!(
                std::fs::read(vendored_dir.join(name)).unwrap(),
                expected,
                "{name}"
            );
            assert_eq!(text.as_bytes(), expected.as_slice(), "embedded {name}");
        }
        assert_eq!(
            std::fs::read(vendored_dir.join("LICENSE")).unwrap(),
            std::fs::read(pinned.join("LICENSE")).unwrap(),
            "LICENSE"
        );
    }
}
