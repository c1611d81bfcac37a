//! cosign's key formats for ECDSA P-256: generating a key, the password-encrypted
//! private key file (`cosign generate-key-pair` writes it as `cosign.key`), the
//! unencrypted PKCS#8 and SEC1 files cosign imports, and the SPKI public key
//! (`cosign.pub`).
//!
//! The encrypted file is a PEM block labelled `ENCRYPTED SIGSTORE PRIVATE KEY`
//! (older cosign: `ENCRYPTED COSIGN PRIVATE KEY`) whose contents are the JSON that
//! go-securesystemslib's `encrypted` package writes:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<base64, 32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64, 24 bytes>"},
//!  "ciphertext":"<base64>"}
//! ```
//!
//! The plaintext is the PKCS#8 DER of the private key; the 32-byte NaCl secretbox
//! (XSalsa20-Poly1305, tag first) key is `scrypt(password, salt, N, r, p)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key as BoxKey, Nonce as BoxNonce, XSalsa20Poly1305};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
    ObjectIdentifier, PrivateKeyInfo,
};
use rand::TryRngCore as _;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SupplyError};

/// PEM label cosign (v1.4 and later) writes for an encrypted private key.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label older cosign wrote for an encrypted private key (still accepted).
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// PEM label of an unencrypted PKCS#8 private key.
pub const PKCS8_PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
/// PEM label of an unencrypted SEC1 EC private key.
pub const SEC1_PRIVATE_KEY_LABEL: &str = "EC PRIVATE KEY";
/// PEM label of a public key (SubjectPublicKeyInfo DER).
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// The scrypt cost cosign uses: N = 2^15 (go-securesystemslib's `encrypted.Encrypt`).
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const KDF_SCRYPT: &str = "scrypt";
const CIPHER_SECRETBOX: &str = "nacl/secretbox";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const BOX_KEY_LEN: usize = 32;

/// Largest scrypt N accepted when decrypting (2^20; cosign writes 2^15 or 2^16).
const MAX_SCRYPT_LOG_N: u32 = 20;
/// Largest scrypt r accepted when decrypting (cosign writes 8).
const MAX_SCRYPT_R: u64 = 32;
/// Largest scrypt p accepted when decrypting (cosign writes 1).
const MAX_SCRYPT_P: u64 = 16;
/// Most memory scrypt may need (128·N·r bytes) for a file we decrypt: 256 MiB.
const MAX_SCRYPT_MEMORY: u64 = 256 << 20;
/// Most work (N·r·p) a file may ask of us: 16 times cosign's strongest preset.
const MAX_SCRYPT_WORK: u64 = 1 << 24;

/// The labels [`decrypt_private_key`] understands, for error messages.
const PRIVATE_LABELS: &str = "ENCRYPTED SIGSTORE PRIVATE KEY, ENCRYPTED COSIGN PRIVATE KEY, \
                              PRIVATE KEY or EC PRIVATE KEY";

/// `id-ecPublicKey` (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1` / `prime256v1` (RFC 5480).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// The JSON inside an encrypted key's PEM block; field order as Go writes it.
#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// A new random ECDSA P-256 signing key, from the operating system's RNG.
///
/// # Panics
///
/// If the operating system cannot provide random bytes (`getrandom` fails), as
/// there is no safe way to make a key without them.
pub fn generate() -> SigningKey {
    // A random 32-byte string is a valid scalar unless it is zero or ≥ the group
    // order (probability ~2^-32); draw again in that case.
    let mut rng = rand::rngs::OsRng.unwrap_err();
    loop {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rng, &mut bytes);
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// Fill `buf` from the operating system's RNG.
fn os_random(buf: &mut [u8]) -> Result<()> {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| SupplyError::Key(format!("operating system RNG failed: {e}")))
}

/// The secretbox key for `password`: scrypt with the given parameters.
fn derive_box_key(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> Result<[u8; 32]> {
    let params = scrypt::Params::new(log_n, r, p, BOX_KEY_LEN)
        .map_err(|e| SupplyError::Key(format!("invalid scrypt parameters: {e}")))?;
    let mut key = [0u8; BOX_KEY_LEN];
    scrypt::scrypt(password, salt, &params, &mut key)
        .map_err(|e| SupplyError::Key(format!("scrypt failed: {e}")))?;
    Ok(key)
}

/// `key` as cosign writes `cosign.key`: PKCS#8 DER sealed with NaCl secretbox under
/// a key derived from `password` by scrypt (N=32768, r=8, p=1, 32-byte random salt),
/// PEM-encoded with the label `ENCRYPTED SIGSTORE PRIVATE KEY`.
pub fn encrypt_private_key(key: &SigningKey, password: &[u8]) -> Result<String> {
    let der = key
        .to_pkcs8_der()
        .map_err(|e| SupplyError::Key(format!("encoding the private key as PKCS#8: {e}")))?;
    let mut salt = [0u8; SALT_LEN];
    os_random(&mut salt)?;
    let mut nonce = [0u8; NONCE_LEN];
    os_random(&mut nonce)?;
    let box_key = derive_box_key(password, &salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)?;
    let cipher = XSalsa20Poly1305::new(BoxKey::from_slice(&box_key));
    let sealed = cipher
        .encrypt(BoxNonce::from_slice(&nonce), der.as_bytes())
        .map_err(|_| SupplyError::Key("sealing the private key failed".into()))?;
    let doc = EncryptedKey {
        kdf: Kdf {
            name: KDF_SCRYPT.into(),
            params: ScryptParams {
                n: 1 << SCRYPT_LOG_N,
                r: SCRYPT_R.into(),
                p: SCRYPT_P.into(),
            },
            salt: B64.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_SECRETBOX.into(),
            nonce: B64.encode(nonce),
        },
        ciphertext: B64.encode(sealed),
    };
    let json = serde_json::to_vec(&doc)
        .map_err(|e| SupplyError::Key(format!("encoding the encrypted key: {e}")))?;
    Ok(pem_encode(SIGSTORE_PRIVATE_KEY_LABEL, json))
}

/// PEM with LF line endings and 64-column lines, as Go's `pem.EncodeToMemory` writes.
fn pem_encode(label: &str, contents: Vec<u8>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, contents), config)
}

/// Read a private key file: cosign's encrypted formats (`ENCRYPTED SIGSTORE PRIVATE
/// KEY`, `ENCRYPTED COSIGN PRIVATE KEY`), decrypted with `password`, or an
/// unencrypted PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) key, for which the
/// password is ignored. The key must be ECDSA P-256.
///
/// # Errors
///
/// [`SupplyError::WrongPassword`] when the password does not open the key;
/// [`SupplyError::Key`] for anything else (another PEM label, an unsupported KDF or
/// cipher, scrypt parameters too costly to try, a key that is not P-256…).
pub fn decrypt_private_key(pem_text: &str, password: &[u8]) -> Result<SigningKey> {
    let block = pem::parse(pem_text)
        .map_err(|e| SupplyError::Key(format!("not a PEM private key: {e}")))?;
    match block.tag() {
        SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL => {
            let der = open_encrypted(block.contents(), password)?;
            // cosign always seals PKCS#8; some early files sealed SEC1, accept both.
            signing_key_from_pkcs8(&der).or_else(|pkcs8_err| {
                p256::SecretKey::from_sec1_der(&der)
                    .map(SigningKey::from)
                    .map_err(|_| pkcs8_err)
            })
        }
        PKCS8_PRIVATE_KEY_LABEL => signing_key_from_pkcs8(block.contents()),
        SEC1_PRIVATE_KEY_LABEL => p256::SecretKey::from_sec1_der(block.contents())
            .map(SigningKey::from)
            .map_err(|e| {
                SupplyError::Key(format!(
                    "EC PRIVATE KEY is not a SEC1 ECDSA P-256 key (other curves are not supported): {e}"
                ))
            }),
        PUBLIC_KEY_LABEL => Err(SupplyError::Key(format!(
            "found PEM label {PUBLIC_KEY_LABEL}: that is a public key; signing needs the \
             private key ({PRIVATE_LABELS})"
        ))),
        other => Err(SupplyError::Key(format!(
            "found PEM label {other}, expected {PRIVATE_LABELS}"
        ))),
    }
}

/// Decrypt the JSON document of an encrypted key file to the sealed DER.
fn open_encrypted(json: &[u8], password: &[u8]) -> Result<Vec<u8>> {
    let doc: EncryptedKey = serde_json::from_slice(json)
        .map_err(|e| SupplyError::Key(format!("encrypted key is not cosign's JSON format: {e}")))?;
    if doc.kdf.name != KDF_SCRYPT {
        return Err(SupplyError::Key(format!(
            "encrypted key uses KDF {:?}, only {KDF_SCRYPT:?} is supported",
            doc.kdf.name
        )));
    }
    if doc.cipher.name != CIPHER_SECRETBOX {
        return Err(SupplyError::Key(format!(
            "encrypted key uses cipher {:?}, only {CIPHER_SECRETBOX:?} is supported",
            doc.cipher.name
        )));
    }
    let (log_n, r, p) = checked_scrypt_params(&doc.kdf.params)?;
    let field = |name: &str, value: &str| {
        B64.decode(value)
            .map_err(|e| SupplyError::Key(format!("encrypted key: {name} is not base64: {e}")))
    };
    let salt = field("kdf.salt", &doc.kdf.salt)?;
    let nonce = field("cipher.nonce", &doc.cipher.nonce)?;
    let sealed = field("ciphertext", &doc.ciphertext)?;
    if nonce.len() != NONCE_LEN {
        return Err(SupplyError::Key(format!(
            "encrypted key: cipher.nonce is {} bytes, secretbox needs {NONCE_LEN}",
            nonce.len()
        )));
    }
    let box_key = derive_box_key(password, &salt, log_n, r, p)?;
    XSalsa20Poly1305::new(BoxKey::from_slice(&box_key))
        .decrypt(BoxNonce::from_slice(&nonce), sealed.as_slice())
        .map_err(|_| SupplyError::WrongPassword)
}

/// The scrypt parameters of a file we were handed, refused when they are malformed or
/// would cost more memory or time than any cosign-written key needs.
fn checked_scrypt_params(params: &ScryptParams) -> Result<(u8, u32, u32)> {
    let ScryptParams { n, r, p } = *params;
    let bad = |why: String| {
        Err(SupplyError::Key(format!(
            "encrypted key asks for scrypt N={n}, r={r}, p={p}: {why}"
        )))
    };
    if n < 2 || !n.is_power_of_two() {
        return bad("N must be a power of two greater than 1".into());
    }
    let log_n = n.trailing_zeros();
    if log_n > MAX_SCRYPT_LOG_N {
        return bad(format!("N above 2^{MAX_SCRYPT_LOG_N} is refused"));
    }
    if !(1..=MAX_SCRYPT_R).contains(&r) || !(1..=MAX_SCRYPT_P).contains(&p) {
        return bad(format!(
            "r must be 1..={MAX_SCRYPT_R} and p 1..={MAX_SCRYPT_P}"
        ));
    }
    if 128 * n * r > MAX_SCRYPT_MEMORY {
        return bad(format!(
            "it would need {} MiB of memory (limit {} MiB)",
            (128 * n * r) >> 20,
            MAX_SCRYPT_MEMORY >> 20
        ));
    }
    if n * r * p > MAX_SCRYPT_WORK {
        return bad("the work factor N·r·p is too large".into());
    }
    // All three fit: log_n ≤ 20, r ≤ 32, p ≤ 16.
    let (Ok(log_n), Ok(r), Ok(p)) = (u8::try_from(log_n), u32::try_from(r), u32::try_from(p))
    else {
        return bad("out of range".into());
    };
    Ok((log_n, r, p))
}

/// A P-256 signing key from PKCS#8 DER, naming the algorithm when it is another.
fn signing_key_from_pkcs8(der: &[u8]) -> Result<SigningKey> {
    let info = PrivateKeyInfo::try_from(der)
        .map_err(|e| SupplyError::Key(format!("not a PKCS#8 private key: {e}")))?;
    check_algorithm(
        info.algorithm.oid,
        info.algorithm.parameters_oid().ok(),
        "private",
    )?;
    SigningKey::from_pkcs8_der(der)
        .map_err(|e| SupplyError::Key(format!("invalid ECDSA P-256 private key: {e}")))
}

/// Refuse keys that are not ECDSA P-256, saying what they are.
fn check_algorithm(
    oid: ObjectIdentifier,
    curve: Option<ObjectIdentifier>,
    which: &str,
) -> Result<()> {
    if oid != OID_EC_PUBLIC_KEY {
        return Err(SupplyError::Key(format!(
            "the {which} key is {}, only ECDSA P-256 keys are supported",
            algorithm_name(oid)
        )));
    }
    match curve {
        Some(c) if c == OID_P256 => Ok(()),
        Some(c) => Err(SupplyError::Key(format!(
            "the {which} key is ECDSA on curve {}, only P-256 is supported",
            curve_name(c)
        ))),
        None => Err(SupplyError::Key(format!(
            "the {which} key is ECDSA without a named curve, only P-256 is supported"
        ))),
    }
}

fn algorithm_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        other => format!("algorithm {other}"),
    }
}

fn curve_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        "1.3.132.0.33" => "P-224".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        other => other.to_owned(),
    }
}

/// The public key as cosign writes `cosign.pub`: SubjectPublicKeyInfo DER in a
/// `PUBLIC KEY` PEM block.
pub fn public_key_pem(key: &VerifyingKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| SupplyError::Key(format!("encoding the public key: {e}")))
}

/// Read a `PUBLIC KEY` PEM block (SubjectPublicKeyInfo) holding an ECDSA P-256 key.
///
/// # Errors
///
/// [`SupplyError::Key`] naming what was found instead: a private key, another PEM
/// label, an RSA/Ed25519 key, another curve.
pub fn parse_public_key(pem_text: &str) -> Result<VerifyingKey> {
    let block =
        pem::parse(pem_text).map_err(|e| SupplyError::Key(format!("not a PEM public key: {e}")))?;
    match block.tag() {
        PUBLIC_KEY_LABEL => {}
        label @ (SIGSTORE_PRIVATE_KEY_LABEL
        | COSIGN_PRIVATE_KEY_LABEL
        | PKCS8_PRIVATE_KEY_LABEL
        | SEC1_PRIVATE_KEY_LABEL) => {
            return Err(SupplyError::Key(format!(
                "found PEM label {label}: that is a private key; verification needs the \
                 public key ({PUBLIC_KEY_LABEL}, e.g. cosign.pub)"
            )));
        }
        other => {
            return Err(SupplyError::Key(format!(
                "found PEM label {other}, expected {PUBLIC_KEY_LABEL}"
            )));
        }
    }
    let spki = SubjectPublicKeyInfoRef::try_from(block.contents())
        .map_err(|e| SupplyError::Key(format!("not a SubjectPublicKeyInfo public key: {e}")))?;
    check_algorithm(
        spki.algorithm.oid,
        spki.algorithm.parameters_oid().ok(),
        "public",
    )?;
    VerifyingKey::from_public_key_der(block.contents())
        .map_err(|e| SupplyError::Key(format!("invalid ECDSA P-256 public key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: u64, r: u64, p: u64) -> ScryptParams {
        ScryptParams { n, r, p }
    }

    #[test]
    fn scrypt_params_within_limits_pass() {
        assert_eq!(
            checked_scrypt_params(&params(32768, 8, 1)).ok(),
            Some((15, 8, 1))
        );
        assert_eq!(
            checked_scrypt_params(&params(65536, 8, 1)).ok(),
            Some((16, 8, 1))
        );
        assert_eq!(
            checked_scrypt_params(&params(131072, 8, 1)).ok(),
            Some((17, 8, 1))
        );
    }

    #[test]
    fn absurd_scrypt_params_are_refused() {
        for (n, r, p, why) in [
            (1 << 21, 1, 1, "above 2^20"),
            (1 << 20, 8, 1, "MiB of memory"),
            (1 << 17, 16, 16, "work factor"),
            (1000, 8, 1, "power of two"),
            (0, 8, 1, "power of two"),
            (1 << 15, 0, 1, "r must be"),
            (1 << 15, 8, 0, "r must be"),
            (1 << 15, 1 << 40, 1, "r must be"),
        ] {
            let err = checked_scrypt_params(&params(n, r, p))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "N={n} r={r} p={p}: {err}");
        }
    }
}
