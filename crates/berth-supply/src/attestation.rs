//! in-toto attestations as cosign attaches them (cosign `specs/ATTESTATION_SPEC.md`):
//! an in-toto Statement v1 (in-toto `v1/statement.md`) naming the image by digest,
//! serialized as JSON and signed in a DSSE envelope (in-toto `v1/envelope.md`,
//! DSSE v1.0) with ECDSA P-256 / SHA-256 over the pre-authentication encoding.
//!
//! This module owns the predicate-type names cosign's `--type` accepts, the
//! Statement and Envelope shapes, PAE, signing and verification, and the subject
//! and predicate-type checks a verifier makes.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use berth_oci::Digest;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Result, SupplyError};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of an in-toto Statement v0.1, which cosign still writes; accepted when
/// verifying.
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// DSSE `payloadType` of an in-toto Statement in JSON.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// cosign's predicate-type names (`cosign attest --type`) and the URIs they stand
/// for (cosign `cmd/cosign/cli/options/predicate.go`,
/// `pkg/cosign/attestation/attestation.go`).
const PREDICATE_TYPES: [(&str, &str); 10] = [
    ("custom", "https://cosign.sigstore.dev/attestation/v1"),
    ("slsaprovenance", "https://slsa.dev/provenance/v0.2"),
    ("slsaprovenance02", "https://slsa.dev/provenance/v0.2"),
    ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
    ("spdx", "https://spdx.dev/Document"),
    ("spdxjson", "https://spdx.dev/Document"),
    ("cyclonedx", "https://cyclonedx.org/bom"),
    ("cyclonedxxml", "https://cyclonedx.org/bom"),
    ("link", "https://in-toto.io/Link/v1"),
    ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
];

/// The predicate-type URI for one of cosign's `--type` names (`slsaprovenance`,
/// `slsaprovenance1`, `spdx`, `spdxjson`, `cyclonedx`, `vuln`, `custom`, …), or
/// `name` itself when it is an absolute URI (contains `://`).
///
/// # Errors
///
/// [`SupplyError::Format`] listing the accepted names.
pub fn predicate_type_uri(name: &str) -> Result<String> {
    if let Some((_, uri)) = PREDICATE_TYPES.iter().find(|(n, _)| *n == name) {
        return Ok((*uri).to_owned());
    }
    if name.contains("://") {
        return Ok(name.to_owned());
    }
    let names: Vec<&str> = PREDICATE_TYPES.iter().map(|(n, _)| *n).collect();
    Err(SupplyError::Format(format!(
        "unknown predicate type {name:?}: use one of {} or an absolute URI",
        names.join(", ")
    )))
}

/// An in-toto Statement v1 about the artifact `digest` (named `subject_name`, e.g.
/// the repository as cosign writes it), with the given predicate.
pub fn statement(
    subject_name: &str,
    digest: &Digest,
    predicate_type: &str,
    predicate: Value,
) -> Value {
    json!({
        "_type": STATEMENT_V1,
        "subject": [{
            "name": subject_name,
            "digest": { digest.algorithm().as_str(): digest.hex() },
        }],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// A DSSE envelope (`application/vnd.dsse.envelope.v1+json`), as cosign stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `payloadType`: what the payload is (`application/vnd.in-toto+json`).
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// One or more signatures over the PAE of type and payload.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature in a [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Hint for the key that signed; cosign writes `""`.
    #[serde(default)]
    pub keyid: String,
    /// The signature, base64 (ASN.1 DER for ECDSA).
    pub sig: String,
}

/// DSSE's pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Sign `statement` (the JSON bytes of an in-toto Statement) in a DSSE envelope of
/// type `application/vnd.in-toto+json`: ECDSA P-256 over SHA-256 of the PAE, DER,
/// base64, with an empty `keyid` as cosign writes.
pub fn sign_envelope(key: &SigningKey, statement: &[u8]) -> Envelope {
    let signature: Signature = key.sign(&pae(INTOTO_PAYLOAD_TYPE, statement));
    Envelope {
        payload_type: INTOTO_PAYLOAD_TYPE.to_owned(),
        payload: STANDARD.encode(statement),
        signatures: vec![EnvelopeSignature {
            keyid: String::new(),
            sig: STANDARD.encode(signature.to_der().as_bytes()),
        }],
    }
}

/// Base64 in any of the encodings DSSE allows (standard or URL-safe, padded or not).
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
}

/// Verify `env` with `key` and return the statement it carries. The payload type
/// must be `application/vnd.in-toto+json`; any one signature verifying suffices
/// (ASN.1 DER as cosign writes, or the fixed 64-byte `r‖s` form). Payload and
/// signatures may use standard or URL-safe base64, as DSSE requires.
///
/// # Errors
///
/// [`SupplyError::Format`] for another payload type, an undecodable payload, no
/// signatures, or a payload that is not a JSON object; [`SupplyError::BadSignature`]
/// when no signature verifies.
pub fn verify_envelope(key: &VerifyingKey, env: &Envelope) -> Result<Value> {
    if env.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(SupplyError::Format(format!(
            "DSSE payloadType is {:?}, not {INTOTO_PAYLOAD_TYPE:?}",
            env.payload_type
        )));
    }
    let payload = decode_b64(&env.payload)
        .ok_or_else(|| SupplyError::Format("DSSE payload is not base64".into()))?;
    if env.signatures.is_empty() {
        return Err(SupplyError::Format(
            "DSSE envelope has no signatures".into(),
        ));
    }
    let message = pae(&env.payload_type, &payload);
    let verified = env.signatures.iter().any(|s| {
        decode_b64(&s.sig)
            .and_then(|bytes| {
                // cosign writes ASN.1 DER; the DSSE reference implementation writes
                // the fixed 64-byte r‖s. Both name the same signature.
                Signature::from_der(&bytes)
                    .or_else(|_| Signature::from_slice(&bytes))
                    .ok()
            })
            .is_some_and(|sig| key.verify(&message, &sig).is_ok())
    });
    if !verified {
        return Err(SupplyError::BadSignature);
    }
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| SupplyError::Format(format!("DSSE payload is not JSON: {e}")))?;
    if !statement.is_object() {
        return Err(SupplyError::Format(
            "DSSE payload is not a JSON object".into(),
        ));
    }
    Ok(statement)
}

/// Check a verified statement against what the verifier asked for: it is an in-toto
/// Statement (v1, or v0.1 as cosign writes), one of its subjects has
/// `expected_digest`, and its `predicateType` is `predicate_type` when given.
///
/// # Errors
///
/// [`SupplyError::Format`] when it is not an in-toto Statement;
/// [`SupplyError::Mismatch`] naming both values otherwise.
pub fn check_statement(
    stmt: &Value,
    expected_digest: &Digest,
    predicate_type: Option<&str>,
) -> Result<()> {
    let kind = stmt.get("_type").and_then(Value::as_str).unwrap_or("");
    if kind != STATEMENT_V1 && kind != STATEMENT_V01 {
        return Err(SupplyError::Format(format!(
            "attestation _type is {kind:?}, not an in-toto Statement ({STATEMENT_V1})"
        )));
    }
    let subjects = stmt
        .get("subject")
        .and_then(Value::as_array)
        .ok_or_else(|| SupplyError::Format("attestation has no subject array".into()))?;
    let algorithm = expected_digest.algorithm().as_str();
    let matches = subjects.iter().any(|s| {
        s.get("digest")
            .and_then(|d| d.get(algorithm))
            .and_then(Value::as_str)
            .is_some_and(|hex| hex.eq_ignore_ascii_case(expected_digest.hex()))
    });
    if !matches {
        let found: Vec<String> = subjects
            .iter()
            .filter_map(|s| s.get("digest").and_then(Value::as_object))
            .flat_map(|d| {
                d.iter()
                    .map(|(alg, hex)| format!("{alg}:{}", hex.as_str().unwrap_or("?")))
            })
            .collect();
        let found = if found.is_empty() {
            "no digest".to_owned()
        } else {
            found.join(", ")
        };
        return Err(SupplyError::Mismatch(format!(
            "attestation is for {found}, not {expected_digest}"
        )));
    }
    if let Some(want) = predicate_type {
        let got = stmt
            .get("predicateType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if got != want {
            return Err(SupplyError::Mismatch(format!(
                "attestation predicateType is {got:?}, not {want:?}"
            )));
        }
    }
    Ok(())
}
