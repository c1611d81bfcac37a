//! Keys: the service's EC P-256 signing key (loaded from or generated into a `0600`
//! PEM file), key ids, and the public keys of trusted issuers read from PEM files
//! (SPKI public keys, PKCS#1 RSA public keys, X.509 certificates) or JWKS files.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::der::asn1::{AnyRef, ObjectIdentifier};
use p256::pkcs8::der::{self, Decode, Encode, Reader, Tagged};
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use super::TokenError;

/// Largest key or key set file read, in bytes.
const MAX_KEY_FILE: u64 = 1 << 20;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A public key trusted to sign tokens, with the key ids it is known by and the
/// algorithms it can verify (from its type, narrowed by a JWK's `alg`).
#[derive(Clone)]
pub struct TrustedKey {
    pub(crate) key: DecodingKey,
    pub(crate) kids: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) description: String,
}

impl TrustedKey {
    /// Key ids this key answers to: a JWK's explicit `kid`, the libtrust key id (as
    /// Docker's token servers put in `kid`) and the RFC 7638 thumbprint where they
    /// can be derived.
    pub fn kids(&self) -> &[String] {
        &self.kids
    }

    /// Algorithms this key can verify.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// A P-256 public key, known by its libtrust key id and RFC 7638 thumbprint.
    pub(crate) fn from_p256(public: &p256::PublicKey, description: String) -> TrustedKey {
        let point = public.to_encoded_point(false);
        let x = URL_SAFE_NO_PAD.encode(point.x().map(|x| x.as_slice()).unwrap_or_default());
        let y = URL_SAFE_NO_PAD.encode(point.y().map(|y| y.as_slice()).unwrap_or_default());
        let mut kids = Vec::new();
        if let Ok(spki) = public.to_public_key_der() {
            kids.push(libtrust_key_id(spki.as_bytes()));
        }
        kids.push(ec_thumbprint("P-256", &x, &y));
        TrustedKey {
            key: DecodingKey::from_ec_der(point.as_bytes()),
            kids,
            algorithms: vec![Algorithm::ES256],
            description,
        }
    }
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey")
            .field("description", &self.description)
            .field("kids", &self.kids)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// The key id libtrust (and so Docker's registry and token servers) derives from a
/// public key: SHA-256 of its DER SubjectPublicKeyInfo, truncated to 240 bits,
/// base32, in twelve `:`-separated groups of four.
pub(crate) fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = base32(&digest[..30]);
    let groups: Vec<&str> = encoded
        .as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// RFC 7638 thumbprint (SHA-256, base64url) of the canonical JWK JSON `members`.
fn thumbprint(members: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(members.as_bytes()))
}

fn ec_thumbprint(crv: &str, x: &str, y: &str) -> String {
    thumbprint(&format!(
        r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#
    ))
}

// ---------------------------------------------------------------------------------
// The signing key.

/// The service's signing key, ready for use.
pub(crate) struct SigningKey {
    pub(crate) encoding: EncodingKey,
    pub(crate) public: p256::PublicKey,
    pub(crate) kid: String,
}

impl SigningKey {
    fn from_secret(secret: &p256::SecretKey, path: &Path) -> Result<SigningKey, TokenError> {
        let pkcs8 = secret.to_pkcs8_der().map_err(|e| TokenError::Key {
            path: path.to_owned(),
            reason: format!("cannot encode the key: {e}"),
        })?;
        let public = secret.public_key();
        let spki = public.to_public_key_der().map_err(|e| TokenError::Key {
            path: path.to_owned(),
            reason: format!("cannot encode the public key: {e}"),
        })?;
        Ok(SigningKey {
            encoding: EncodingKey::from_ec_der(pkcs8.as_bytes()),
            public,
            kid: libtrust_key_id(spki.as_bytes()),
        })
    }

    /// The public key as a JWK (with `kid`, `use` and `alg`).
    pub(crate) fn public_jwk(&self) -> serde_json::Value {
        let point = self.public.to_encoded_point(false);
        let x = URL_SAFE_NO_PAD.encode(point.x().map(|x| x.as_slice()).unwrap_or_default());
        let y = URL_SAFE_NO_PAD.encode(point.y().map(|y| y.as_slice()).unwrap_or_default());
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x,
            "y": y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }
}

/// Loads the EC P-256 private key at `path` (PKCS#8 or SEC1 PEM), or generates one
/// and stores it there (PKCS#8 PEM, mode 0600, written atomically) if the file does
/// not exist. A key file accessible by group or others is refused.
pub(crate) fn load_or_generate_signing_key(path: &Path) -> Result<SigningKey, TokenError> {
    if let Some(secret) = read_private_key(path)? {
        return SigningKey::from_secret(&secret, path);
    }
    let secret = generate_p256(path)?;
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| TokenError::Signing(format!("cannot encode the new key: {e}")))?;
    if !write_new_private_file(path, pem.as_bytes())? {
        // Another process created the key first: use theirs.
        return match read_private_key(path)? {
            Some(secret) => SigningKey::from_secret(&secret, path),
            None => Err(TokenError::Key {
                path: path.to_owned(),
                reason: "key file vanished while being created".into(),
            }),
        };
    }
    tracing::info!(path = %path.display(), "generated a new token signing key");
    SigningKey::from_secret(&secret, path)
}

fn generate_p256(path: &Path) -> Result<p256::SecretKey, TokenError> {
    let mut bytes = [0u8; 32];
    // A random 256-bit string is a valid scalar except with probability ~2^-32.
    for _ in 0..8 {
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| TokenError::Signing(format!("no randomness for a new key: {e}")))?;
        if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
            bytes.fill(0);
            return Ok(secret);
        }
    }
    Err(TokenError::Key {
        path: path.to_owned(),
        reason: "could not generate a valid P-256 key".into(),
    })
}

/// Reads a private key file; `None` if it does not exist.
fn read_private_key(path: &Path) -> Result<Option<p256::SecretKey>, TokenError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TokenError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    check_private_permissions(&file, path)?;
    let text = read_limited(file, path)?;
    parse_private_key(&text)
        .map(Some)
        .map_err(|reason| TokenError::Key {
            path: path.to_owned(),
            reason,
        })
}

#[cfg(unix)]
fn check_private_permissions(file: &fs::File, path: &Path) -> Result<(), TokenError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = file.metadata().map_err(|source| TokenError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TokenError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_permissions(_file: &fs::File, _path: &Path) -> Result<(), TokenError> {
    Ok(())
}

fn read_limited(file: fs::File, path: &Path) -> Result<String, TokenError> {
    let mut text = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|source| TokenError::Io {
            path: path.to_owned(),
            source,
        })?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(TokenError::Key {
            path: path.to_owned(),
            reason: format!("larger than {MAX_KEY_FILE} bytes"),
        });
    }
    Ok(text)
}

fn read_public_file(path: &Path) -> Result<String, TokenError> {
    let file = fs::File::open(path).map_err(|source| TokenError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_limited(file, path)
}

/// Parses the first private key block of a PEM file (PKCS#8 `PRIVATE KEY` or SEC1
/// `EC PRIVATE KEY`, other blocks such as `EC PARAMETERS` ignored).
fn parse_private_key(text: &str) -> Result<p256::SecretKey, String> {
    let blocks = pem::parse_many(text).map_err(|_| "not a PEM file".to_owned())?;
    for block in &blocks {
        match block.tag() {
            "PRIVATE KEY" => {
                return p256::SecretKey::from_pkcs8_der(block.contents())
                    .map_err(|_| "the PKCS#8 key is not an EC P-256 private key".to_owned());
            }
            "EC PRIVATE KEY" => {
                return p256::SecretKey::from_sec1_der(block.contents())
                    .map_err(|_| "the SEC1 key is not an EC P-256 private key".to_owned());
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err("encrypted private keys are not supported".to_owned());
            }
            _ => {}
        }
    }
    Err("no `PRIVATE KEY` or `EC PRIVATE KEY` PEM block".to_owned())
}

/// Creates `path` with `contents`, mode 0600, atomically: written to a temporary
/// file in the same directory, synced, then linked into place. Returns `false`
/// (writing nothing) if `path` appeared meanwhile.
fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<bool, TokenError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TokenError::Io { path, source }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir).map_err(io_err(&dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = open_private_new(&tmp).map_err(io_err(&tmp))?;
        file.write_all(contents).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            // Filesystems without hard links: rename (which may replace a key created
            // in the same instant by another process; both are valid keys).
            Err(_) => fs::rename(&tmp, path).map(|()| true).map_err(io_err(path)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    if let Ok(true) = result
        && let Ok(d) = fs::File::open(&dir)
    {
        let _ = d.sync_all();
    }
    result
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private_new(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private_new(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

// ---------------------------------------------------------------------------------
// Trusted public keys.

/// Reads every public key in a PEM file: `PUBLIC KEY` (SPKI: EC P-256/P-384, RSA,
/// Ed25519), `RSA PUBLIC KEY` (PKCS#1) and `CERTIFICATE` blocks (only the subject
/// public key is used; the certificate itself is not validated). Private key blocks
/// are refused.
pub(crate) fn load_pem_public_keys(path: &Path) -> Result<Vec<TrustedKey>, TokenError> {
    let text = read_public_file(path)?;
    let key_err = |reason: String| TokenError::Key {
        path: path.to_owned(),
        reason,
    };
    let blocks = pem::parse_many(&text).map_err(|_| key_err("not a PEM file".into()))?;
    let mut keys = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let description = format!("{} (PEM block {})", path.display(), i + 1);
        let at = |reason: String| key_err(format!("PEM block {}: {reason}", i + 1));
        match block.tag() {
            "PUBLIC KEY" => keys.push(key_from_spki(block.contents(), description).map_err(at)?),
            "CERTIFICATE" => {
                let spki = certificate_spki(block.contents())
                    .map_err(|e| at(format!("cannot read the certificate: {e}")))?;
                keys.push(key_from_spki(&spki, description).map_err(at)?);
            }
            "RSA PUBLIC KEY" => keys.push(TrustedKey {
                key: DecodingKey::from_rsa_der(block.contents()),
                kids: Vec::new(),
                algorithms: RSA_ALGORITHMS.to_vec(),
                description,
            }),
            tag if tag.contains("PRIVATE KEY") => {
                return Err(at(
                    "a private key; configure the issuer's public key or certificate".into(),
                ));
            }
            _ => {}
        }
    }
    if keys.is_empty() {
        return Err(key_err(
            "no `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE` PEM block".into(),
        ));
    }
    Ok(keys)
}

/// The DER SubjectPublicKeyInfo inside a DER X.509 certificate.
fn certificate_spki(cert: &[u8]) -> der::Result<Vec<u8>> {
    let cert = AnyRef::from_der(cert)?;
    let tbs = cert.sequence(|r| {
        let tbs = AnyRef::decode(r)?;
        while !r.is_finished() {
            AnyRef::decode(r)?;
        }
        Ok(tbs)
    })?;
    tbs.sequence(|r| {
        let mut item = AnyRef::decode(r)?;
        if item.tag().is_context_specific() {
            // [0] version; the serial number follows.
            item = AnyRef::decode(r)?;
        }
        let _serial = item;
        for _ in 0..4 {
            // signature algorithm, issuer, validity, subject
            AnyRef::decode(r)?;
        }
        let spki = AnyRef::decode(r)?;
        while !r.is_finished() {
            AnyRef::decode(r)?;
        }
        spki.to_der()
    })
}

/// A trusted key from a DER SubjectPublicKeyInfo.
fn key_from_spki(der: &[u8], description: String) -> Result<TrustedKey, String> {
    let spki = SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    let key_bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| "public key is not a whole number of bytes".to_owned())?;
    let libtrust = libtrust_key_id(der);
    let oid = spki.algorithm.oid;
    if oid == OID_EC_PUBLIC_KEY {
        let curve: ObjectIdentifier = spki
            .algorithm
            .parameters
            .ok_or_else(|| "EC key without a named curve".to_owned())?
            .decode_as()
            .map_err(|_| "EC key without a named curve".to_owned())?;
        if curve == OID_P256 {
            let public = p256::PublicKey::from_public_key_der(der)
                .map_err(|_| "invalid P-256 public key".to_owned())?;
            let mut key = TrustedKey::from_p256(&public, description);
            key.kids.retain(|k| *k != libtrust);
            key.kids.insert(0, libtrust);
            Ok(key)
        } else if curve == OID_P384 {
            Ok(TrustedKey {
                key: DecodingKey::from_ec_der(key_bytes),
                kids: vec![libtrust],
                algorithms: vec![Algorithm::ES384],
                description,
            })
        } else {
            Err("unsupported EC curve (P-256 and P-384 are supported)".into())
        }
    } else if oid == OID_RSA {
        Ok(TrustedKey {
            key: DecodingKey::from_rsa_der(key_bytes),
            kids: vec![libtrust],
            algorithms: RSA_ALGORITHMS.to_vec(),
            description,
        })
    } else if oid == OID_ED25519 {
        let x = URL_SAFE_NO_PAD.encode(key_bytes);
        Ok(TrustedKey {
            key: DecodingKey::from_ed_der(key_bytes),
            kids: vec![
                libtrust,
                thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#)),
            ],
            algorithms: vec![Algorithm::EdDSA],
            description,
        })
    } else {
        Err(format!(
            "unsupported public key algorithm {oid} (EC, RSA and Ed25519 are supported)"
        ))
    }
}

/// Reads the signing keys of a JWKS file (RFC 7517 `{"keys": [...]}`; a single JWK
/// object is accepted too). Keys marked `"use": "enc"` are skipped; symmetric
/// (`oct`) keys are refused.
pub(crate) fn load_jwks(path: &Path) -> Result<Vec<TrustedKey>, TokenError> {
    let text = read_public_file(path)?;
    let key_err = |reason: String| TokenError::Key {
        path: path.to_owned(),
        reason,
    };
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| key_err(format!("not JSON: {e}")))?;
    let jwks: Vec<serde_json::Value> = match doc.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.clone(),
        Some(_) => return Err(key_err("`keys` is not an array".into())),
        None if doc.get("kty").is_some() => vec![doc],
        None => return Err(key_err("no `keys` array".into())),
    };
    let mut keys = Vec::new();
    for (i, jwk) in jwks.iter().enumerate() {
        if jwk.get("use").and_then(|u| u.as_str()) == Some("enc") {
            continue;
        }
        let description = format!("{} (key {})", path.display(), i + 1);
        let key = key_from_jwk(jwk, description)
            .map_err(|reason| key_err(format!("key {}: {reason}", i + 1)))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(key_err("no signing keys".into()));
    }
    Ok(keys)
}

fn key_from_jwk(jwk: &serde_json::Value, description: String) -> Result<TrustedKey, String> {
    let field = |name: &str| -> Result<&str, String> {
        jwk.get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("missing string member `{name}`"))
    };
    let kty = field("kty")?;
    let mut key = match kty {
        "EC" => {
            let (crv, x, y) = (field("crv")?, field("x")?, field("y")?);
            let decoding = DecodingKey::from_ec_components(x, y)
                .map_err(|_| "`x`/`y` are not base64url".to_owned())?;
            match crv {
                "P-256" => {
                    let mut point = vec![0x04];
                    point.extend(decode_b64(x)?);
                    point.extend(decode_b64(y)?);
                    let public = p256::PublicKey::from_sec1_bytes(&point)
                        .map_err(|_| "not a point on P-256".to_owned())?;
                    TrustedKey::from_p256(&public, description)
                }
                "P-384" => TrustedKey {
                    key: decoding,
                    kids: vec![ec_thumbprint(crv, x, y)],
                    algorithms: vec![Algorithm::ES384],
                    description,
                },
                _ => return Err(format!("unsupported curve {crv:?}")),
            }
        }
        "RSA" => {
            let (n, e) = (field("n")?, field("e")?);
            TrustedKey {
                key: DecodingKey::from_rsa_components(n, e)
                    .map_err(|_| "`n`/`e` are not base64url".to_owned())?,
                kids: vec![thumbprint(&format!(
                    r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#
                ))],
                algorithms: RSA_ALGORITHMS.to_vec(),
                description,
            }
        }
        "OKP" => {
            let (crv, x) = (field("crv")?, field("x")?);
            if crv != "Ed25519" {
                return Err(format!("unsupported curve {crv:?}"));
            }
            TrustedKey {
                key: DecodingKey::from_ed_components(x)
                    .map_err(|_| "`x` is not base64url".to_owned())?,
                kids: vec![thumbprint(&format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#
                ))],
                algorithms: vec![Algorithm::EdDSA],
                description,
            }
        }
        "oct" => return Err("symmetric (`oct`) keys are never accepted".into()),
        other => return Err(format!("unsupported key type {other:?}")),
    };
    if let Some(kid) = jwk.get("kid").and_then(|k| k.as_str()) {
        key.kids.retain(|k| k != kid);
        key.kids.insert(0, kid.to_owned());
    }
    if let Some(alg) = jwk.get("alg").and_then(|a| a.as_str()) {
        let alg: Algorithm = alg
            .parse()
            .map_err(|_| format!("unsupported `alg` {alg:?}"))?;
        if !key.algorithms.contains(&alg) {
            return Err(format!("`alg` {alg:?} does not fit a {kty} key"));
        }
        key.algorithms = vec![alg];
    }
    Ok(key)
}

fn decode_b64(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "not base64url".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key of auth-jwt.md and its libtrust key id.
    const SPEC_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6","x":"m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q","y":"dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"}"#;

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn libtrust_kid_of_the_spec_key() {
        let jwk: serde_json::Value = serde_json::from_str(SPEC_JWK).unwrap();
        let mut stripped = jwk.clone();
        stripped.as_object_mut().unwrap().remove("kid");
        let key = key_from_jwk(&stripped, "spec".into()).unwrap();
        assert_eq!(key.kids[0], jwk["kid"].as_str().unwrap());
        assert_eq!(key.algorithms, vec![Algorithm::ES256]);
    }

    #[test]
    fn oct_and_mismatched_alg_jwks_are_refused() {
        let oct = serde_json::json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(
            key_from_jwk(&oct, "t".into())
                .unwrap_err()
                .contains("symmetric")
        );
        let mut hs: serde_json::Value = serde_json::from_str(SPEC_JWK).unwrap();
        hs["alg"] = "HS256".into();
        assert!(key_from_jwk(&hs, "t".into()).is_err());
        let mut rs: serde_json::Value = serde_json::from_str(SPEC_JWK).unwrap();
        rs["alg"] = "RS256".into();
        assert!(key_from_jwk(&rs, "t".into()).is_err());
    }

    #[test]
    fn pem_public_key_and_sec1_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let public = secret.public_key();

        // SEC1 private key (with an EC PARAMETERS block first, as `openssl ecparam
        // -genkey` writes) parses to the same key.
        let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
        let text = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            sec1.as_str()
        );
        assert_eq!(parse_private_key(&text).unwrap(), secret);

        let pem_path = dir.path().join("pub.pem");
        fs::write(&pem_path, public.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
        let keys = load_pem_public_keys(&pem_path).unwrap();
        assert_eq!(keys.len(), 1);
        let spki = public.to_public_key_der().unwrap();
        assert_eq!(keys[0].kids[0], libtrust_key_id(spki.as_bytes()));
        assert_eq!(keys[0].algorithms, vec![Algorithm::ES256]);

        // A private key is not a trusted public key.
        let priv_path = dir.path().join("priv.pem");
        fs::write(&priv_path, sec1.as_bytes()).unwrap();
        assert!(matches!(
            load_pem_public_keys(&priv_path),
            Err(TokenError::Key { .. })
        ));
    }
}
