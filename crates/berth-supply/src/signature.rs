//! cosign "simple signing" signatures (cosign `specs/SIGNATURE_SPEC.md` § Payloads,
//! § Signature Schemes): the JSON payload that names an image manifest by digest,
//! its ECDSA P-256 / SHA-256 signature (ASN.1 DER, base64), and the checks a
//! verifier makes on the signed claims.
//!
//! [`payload`] writes the bytes exactly as cosign does (sigstore's
//! `payload.Cosign.MarshalJSON`, Go `encoding/json`): keys in that order,
//! `"optional":null` when there are no annotations, HTML-sensitive characters
//! escaped. The payload is stored as its own blob, so a verifier checks the bytes it
//! was given and never needs to re-create them.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_oci::Digest;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Result, SupplyError};

/// The `critical.type` of a cosign signature payload.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Serialize)]
struct SimpleSigning<'a> {
    critical: Critical<'a>,
    optional: Option<&'a BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct Critical<'a> {
    identity: Identity<'a>,
    image: Image,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Identity<'a> {
    #[serde(rename = "docker-reference")]
    docker_reference: &'a str,
}

#[derive(Serialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The simple-signing payload cosign signs for the manifest `manifest_digest` in
/// repository `docker_reference` (cosign writes the repository without tag or
/// digest, e.g. `registry.example/team/app`). `annotations` become the `optional`
/// object, which is `null` when there are none.
pub fn payload(
    docker_reference: &str,
    manifest_digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let doc = SimpleSigning {
        critical: Critical {
            identity: Identity { docker_reference },
            image: Image {
                docker_manifest_digest: manifest_digest.to_string(),
            },
            kind: COSIGN_SIGNATURE_TYPE,
        },
        optional: (!annotations.is_empty()).then_some(annotations),
    };
    // Serializing plain strings and string maps cannot fail.
    let json = serde_json::to_string(&doc).unwrap_or_default();
    go_escape(&json).into_bytes()
}

/// Escape what Go's `encoding/json` escapes and serde_json does not (`<`, `>`, `&`,
/// U+2028, U+2029). Those characters can only occur inside JSON strings, where the
/// `\uXXXX` form means the same thing, so the document is unchanged in meaning.
fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Sign `payload` as cosign does: ECDSA P-256 over SHA-256(payload), the signature
/// ASN.1 DER-encoded, then standard base64 (the value of the
/// `dev.cosignproject.cosign/signature` annotation).
pub fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let signature: Signature = key.sign(payload);
    B64.encode(signature.to_der().as_bytes())
}

/// Check a base64 ASN.1 DER ECDSA P-256 / SHA-256 signature over `payload`.
///
/// # Errors
///
/// [`SupplyError::Format`] when `signature_b64` is not base64;
/// [`SupplyError::BadSignature`] when it is not a DER signature or does not verify.
pub fn verify(key: &VerifyingKey, payload: &[u8], signature_b64: &str) -> Result<()> {
    let der = B64
        .decode(signature_b64.trim())
        .map_err(|e| SupplyError::Format(format!("signature is not base64: {e}")))?;
    let signature = Signature::from_der(&der).map_err(|_| SupplyError::BadSignature)?;
    key.verify(payload, &signature)
        .map_err(|_| SupplyError::BadSignature)
}

/// What a simple-signing payload claims.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claims {
    /// `critical.identity.docker-reference` (cosign does not check it).
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`, as written.
    pub manifest_digest: String,
    /// `critical.type`.
    pub kind: String,
    /// `optional`, empty when `null` or absent.
    pub annotations: BTreeMap<String, Value>,
}

/// Read the claims of a simple-signing payload.
///
/// Field names match case-insensitively after an exact match fails, as Go's
/// `encoding/json` does when cosign reads a payload (the spec's own example spells
/// `Docker-manifest-digest`).
///
/// # Errors
///
/// [`SupplyError::Format`] naming the missing or mistyped field, e.g.
/// `critical.image.docker-manifest-digest`.
pub fn parse_payload(bytes: &[u8]) -> Result<Claims> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| SupplyError::Format(format!("signature payload is not JSON: {e}")))?;
    let root = doc
        .as_object()
        .ok_or_else(|| SupplyError::Format("signature payload is not a JSON object".into()))?;
    let critical = object(root, "critical", "critical")?;
    let identity = object(critical, "identity", "critical.identity")?;
    let image = object(critical, "image", "critical.image")?;
    let docker_reference = string(
        identity,
        "docker-reference",
        "critical.identity.docker-reference",
    )?;
    let manifest_digest = string(
        image,
        "docker-manifest-digest",
        "critical.image.docker-manifest-digest",
    )?;
    let kind = string(critical, "type", "critical.type")?;
    let annotations = match field(root, "optional") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => {
            return Err(SupplyError::Format(
                "signature payload field optional must be an object or null".into(),
            ));
        }
    };
    Ok(Claims {
        docker_reference,
        manifest_digest,
        kind,
        annotations,
    })
}

/// `obj[key]`, falling back to a case-insensitive match like Go's decoder.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Map<String, Value>> {
    match field(obj, key) {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(SupplyError::Format(format!(
            "signature payload field {path} must be an object"
        ))),
        None => Err(SupplyError::Format(format!(
            "signature payload has no {path}"
        ))),
    }
}

fn string(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String> {
    match field(obj, key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(SupplyError::Format(format!(
            "signature payload field {path} must be a string"
        ))),
        None => Err(SupplyError::Format(format!(
            "signature payload has no {path}"
        ))),
    }
}

/// Check signed claims against what the verifier asked for: the payload is a cosign
/// signature, for `expected_digest`, carrying every `required` annotation with the
/// required value.
///
/// # Errors
///
/// [`SupplyError::Mismatch`] naming both values, e.g. `signature is for sha256:…,
/// not sha256:…` or `annotation env: expected prod, signed dev`.
pub fn check_claims(
    claims: &Claims,
    expected_digest: &Digest,
    required: &BTreeMap<String, String>,
) -> Result<()> {
    if claims.kind != COSIGN_SIGNATURE_TYPE {
        return Err(SupplyError::Mismatch(format!(
            "signature payload type is {:?}, not {COSIGN_SIGNATURE_TYPE:?}",
            claims.kind
        )));
    }
    let expected = expected_digest.to_string();
    if claims.manifest_digest != expected {
        return Err(SupplyError::Mismatch(format!(
            "signature is for {}, not {expected}",
            claims.manifest_digest
        )));
    }
    for (key, want) in required {
        match claims.annotations.get(key) {
            Some(Value::String(got)) if got == want => {}
            Some(Value::String(got)) => {
                return Err(SupplyError::Mismatch(format!(
                    "annotation {key}: expected {want}, signed {got}"
                )));
            }
            Some(other) => {
                return Err(SupplyError::Mismatch(format!(
                    "annotation {key}: expected {want}, signed {other}"
                )));
            }
            None => {
                return Err(SupplyError::Mismatch(format!(
                    "annotation {key}: expected {want}, not signed"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escape_matches_encoding_json() {
        assert_eq!(
            go_escape(r#"{"a":"<b>&c \u2028"}"#),
            r#"{"a":"\u003cb\u003e\u0026c \u2028"}"#
        );
        assert_eq!(
            go_escape("{\"a\":\"\u{2028}\u{2029}\"}"),
            r#"{"a":"\u2028\u2029"}"#
        );
    }
}
