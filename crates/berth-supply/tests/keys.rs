//! cosign key formats: the encrypted private key file, unencrypted imports, the
//! public key, against real cosign-generated files and an independent implementation
//! (the `openssl` command line).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_supply::SupplyError;
use berth_supply::keys::{
    decrypt_private_key, encrypt_private_key, generate, parse_public_key, public_key_pem,
};
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::Value;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run openssl (a declared test dependency, `tests/clients/install-deps.sh`).
fn openssl(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is needed by these tests")
}

fn key_error(err: SupplyError) -> String {
    match err {
        SupplyError::Key(msg) => msg,
        other => panic!("expected SupplyError::Key, got {other:?}"),
    }
}

/// The JSON inside an encrypted key's PEM block.
fn encrypted_json(pem_text: &str) -> (String, Value) {
    let block = pem::parse(pem_text).unwrap();
    let text = String::from_utf8(block.contents().to_vec()).unwrap();
    let value = serde_json::from_str(&text).unwrap();
    (block.tag().to_owned(), value)
}

/// sigstore-rs `kdf.rs` / go-securesystemslib `encrypted`: the JSON cosign writes,
/// `{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":…},
/// "cipher":{"name":"nacl/secretbox","nonce":…},"ciphertext":…}`.
#[test]
fn encrypted_key_has_cosigns_exact_layout() {
    let key = generate();
    let pem_text = encrypt_private_key(&key, b"correct horse").unwrap();
    assert!(pem_text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    assert!(pem_text.ends_with("-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    assert!(!pem_text.contains('\r'), "LF line endings, as Go writes");
    assert!(pem_text.lines().all(|l| l.len() <= 64));

    let (label, json) = encrypted_json(&pem_text);
    assert_eq!(label, "ENCRYPTED SIGSTORE PRIVATE KEY");
    let block = pem::parse(&pem_text).unwrap();
    let raw = std::str::from_utf8(block.contents()).unwrap();
    assert!(
        raw.starts_with(r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":""#),
        "{raw}"
    );
    assert!(
        raw.contains(r#""cipher":{"name":"nacl/secretbox","nonce":""#),
        "{raw}"
    );
    let salt = B64.decode(json["kdf"]["salt"].as_str().unwrap()).unwrap();
    let nonce = B64
        .decode(json["cipher"]["nonce"].as_str().unwrap())
        .unwrap();
    let sealed = B64.decode(json["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(salt.len(), 32);
    assert_eq!(nonce.len(), 24);
    let der = key.to_pkcs8_der().unwrap();
    assert_eq!(
        sealed.len(),
        der.as_bytes().len() + 16,
        "secretbox adds a 16-byte tag"
    );
    assert_eq!(json.as_object().unwrap().len(), 3);
}

#[test]
fn encrypt_then_decrypt_round_trips() {
    let key = generate();
    for password in [&b"hunter2"[..], b"", "pässwörd ✓".as_bytes()] {
        let pem_text = encrypt_private_key(&key, password).unwrap();
        let back = decrypt_private_key(&pem_text, password).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
    }
}

#[test]
fn each_encryption_uses_fresh_salt_and_nonce() {
    let key = generate();
    let (_, a) = encrypted_json(&encrypt_private_key(&key, b"pw").unwrap());
    let (_, b) = encrypted_json(&encrypt_private_key(&key, b"pw").unwrap());
    assert_ne!(a["kdf"]["salt"], b["kdf"]["salt"]);
    assert_ne!(a["cipher"]["nonce"], b["cipher"]["nonce"]);
}

#[test]
fn wrong_password_is_reported_as_such() {
    let key = generate();
    let pem_text = encrypt_private_key(&key, b"right").unwrap();
    let err = decrypt_private_key(&pem_text, b"wrong").unwrap_err();
    assert!(matches!(err, SupplyError::WrongPassword), "{err:?}");
    let err = decrypt_private_key(&pem_text, b"").unwrap_err();
    assert!(matches!(err, SupplyError::WrongPassword), "{err:?}");
}

/// Real encrypted keys written by cosign (and sigstore-rs), with their published
/// passwords; sources in `tests/fixtures/keys/README.md`.
#[test]
fn real_cosign_keys_decrypt() {
    for (file, password) in [
        // cosign pkg/cosign/keys_test.go `pemsigstorekey`: SIGSTORE label, N=32768.
        ("cosign-keys-test-sigstore.key", "hello"),
        // cosign pkg/cosign/keys_test.go `pemcosigneckey`: COSIGN label, N=65536,
        // sealing a SEC1 key (cosign itself rejects it; berth accepts it).
        ("cosign-keys-test-cosign-ec.key", "hello"),
        // cosign pkg/cosign/keys_test.go `pemcosignkey`: COSIGN label, N=32768 (the
        // test calls it an RSA key; it seals a P-256 PKCS#8).
        ("cosign-keys-test-cosign.key", "hello"),
        // sigstore-rs tests/data/keys/ecdsa_encrypted_private.key: COSIGN label.
        ("sigstore-rs-ecdsa-encrypted.key", "123"),
        // sigstore-rs tests/data/keys/cosign_generated_encrypted_empty_private.key:
        // cosign 2.x, empty password, N=65536.
        ("sigstore-rs-cosign-generated-empty-password.key", ""),
    ] {
        let key = decrypt_private_key(&fixture(file), password.as_bytes())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        // The key works: what it signs verifies with its public key.
        let payload = b"berth";
        let sig = berth_supply::signature::sign(&key, payload);
        berth_supply::signature::verify(key.verifying_key(), payload, &sig).unwrap();
        let err = decrypt_private_key(&fixture(file), b"not the password").unwrap_err();
        assert!(matches!(err, SupplyError::WrongPassword), "{file}: {err:?}");
    }
}

/// sigstore-rs's unencrypted PKCS#8 test key (`tests/data/keys/ecdsa_private.key`)
/// reads, and its public half is byte-for-byte what openssl derives from it.
#[test]
fn plain_pkcs8_key_gives_the_public_key_openssl_derives() {
    let key = decrypt_private_key(&fixture("sigstore-rs-ecdsa-private.key"), b"").unwrap();
    let published = fixture("sigstore-rs-ecdsa-public.pub");
    assert_eq!(public_key_pem(key.verifying_key()).unwrap(), published);
    assert_eq!(&parse_public_key(&published).unwrap(), key.verifying_key());
}

/// A sealed key of another algorithm (an Ed25519 PKCS#8, cosign
/// `pkg/cosign/keys_test.go` `ed25519key`, sealed here the way cosign seals, with a
/// cheaper N) decrypts but is refused by name.
#[test]
fn encrypted_ed25519_key_is_refused_by_algorithm() {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let ed25519_pkcs8 = B64
        .decode("MC4CAQAwBQYDK2VwBCIEIALEbo1EFnWFqBK/wC+hhypG/8hXEerwdNetAoFoFVdv")
        .unwrap();
    let (salt, nonce) = ([7u8; 32], [9u8; 24]);
    let mut box_key = [0u8; 32];
    scrypt::scrypt(
        b"pw",
        &salt,
        &scrypt::Params::new(10, 8, 1, 32).unwrap(),
        &mut box_key,
    )
    .unwrap();
    let sealed = crypto_secretbox::XSalsa20Poly1305::new(&box_key.into())
        .encrypt(&nonce.into(), ed25519_pkcs8.as_slice())
        .unwrap();
    let json = format!(
        r#"{{"kdf":{{"name":"scrypt","params":{{"N":1024,"r":8,"p":1}},"salt":"{}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{}"}},"ciphertext":"{}"}}"#,
        B64.encode(salt),
        B64.encode(nonce),
        B64.encode(sealed)
    );
    let msg = key_error(decrypt_private_key(&encrypted_with(&json), b"pw").unwrap_err());
    assert!(
        msg.contains("Ed25519") && msg.contains("only ECDSA P-256"),
        "{msg}"
    );
}

/// Unencrypted keys as cosign's `import-key-pair` accepts them (fixtures from cosign
/// `pkg/cosign/keys_test.go`).
#[test]
fn unencrypted_keys_are_read() {
    let pkcs8 = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmKnLL81dCEYc6Spq
rFukFeTnU5JjtXfeNHAXJj3hYTahRANCAATjp4/Z4tUbZwUdId07GQeUdwLll4Br
YLP25Fk+mBY2G0lyKqjqLG5hxhimbEJH6j+lzg5tcYpQgzXtOJ66Zi0N
-----END PRIVATE KEY-----
";
    let sec1 = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIIGhcmCI5F7BPMH4r3pWCpQdAsveErdU5DjvVQerErJuoAoGCCqGSM49
AwEHoUQDQgAE+9E3Qe+h25ofmz3Uo2T004Dfy49iX06MMbxf9rsGmLkOPrS0KYDl
1QMfFuSbrtf8wTWNT9HNxrW/Foz39mDhHw==
-----END EC PRIVATE KEY-----
";
    for text in [pkcs8, sec1] {
        let key = decrypt_private_key(text, b"ignored").unwrap();
        // Re-encrypting and reading back keeps the key.
        let again = encrypt_private_key(&key, b"pw").unwrap();
        assert_eq!(
            decrypt_private_key(&again, b"pw").unwrap().to_bytes(),
            key.to_bytes()
        );
    }
}

#[test]
fn other_key_types_are_refused_with_their_name() {
    let p384_sec1 = "-----BEGIN EC PRIVATE KEY-----
MIGkAgEBBDDWIebxSdyJVber6J/l5MKnD0+VU0b7fcjY/RbIxuIsHLVIvwJrSohY
r3gJ/iJmIKGgBwYFK4EEACKhZANiAAQeoKZkkc1GafmIgp1tbNbMBjr2EdvX2dtT
lGhzHJgE0YB6TavazcYH1iOBNmX7/pInCopiyWbjF/5olrRKJMG6DQz80td++fYf
O4tr+Z3nyUgRGmf/fqYA4PSN30CuOMU=
-----END EC PRIVATE KEY-----
";
    let ed25519_pkcs8 = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIALEbo1EFnWFqBK/wC+hhypG/8hXEerwdNetAoFoFVdv
-----END PRIVATE KEY-----
";
    let rsa_pkcs1 = "-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu
-----END RSA PRIVATE KEY-----
";
    assert!(key_error(decrypt_private_key(p384_sec1, b"").unwrap_err()).contains("P-256"));
    assert!(key_error(decrypt_private_key(ed25519_pkcs8, b"").unwrap_err()).contains("Ed25519"));
    let msg = key_error(decrypt_private_key(rsa_pkcs1, b"").unwrap_err());
    assert!(
        msg.contains("found PEM label RSA PRIVATE KEY, expected ENCRYPTED SIGSTORE PRIVATE KEY"),
        "{msg}"
    );
    let msg =
        key_error(decrypt_private_key(&fixture("sigstore-rs-ecdsa-public.pub"), b"").unwrap_err());
    assert!(
        msg.contains("found PEM label PUBLIC KEY") && msg.contains("public key"),
        "{msg}"
    );
    let msg = key_error(decrypt_private_key("not a key", b"").unwrap_err());
    assert!(msg.contains("not a PEM private key"), "{msg}");
}

fn encrypted_with(json: &str) -> String {
    pem::encode(&pem::Pem::new(
        "ENCRYPTED SIGSTORE PRIVATE KEY",
        json.as_bytes(),
    ))
}

#[test]
fn hostile_kdf_parameters_are_refused_before_any_work() {
    let doc = |n: u64, r: u64, p: u64| {
        format!(
            r#"{{"kdf":{{"name":"scrypt","params":{{"N":{n},"r":{r},"p":{p}}},"salt":"AAAA"}},"cipher":{{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},"ciphertext":"AAAA"}}"#
        )
    };
    let started = std::time::Instant::now();
    for (n, r, p, why) in [
        (1u64 << 40, 8, 1, "above 2^20"),
        (1 << 21, 1, 1, "above 2^20"),
        (1 << 20, 8, 1, "MiB of memory"),
        (1 << 15, 8, 1 << 20, "p 1..="),
        (1 << 15, 1 << 20, 1, "r must be"),
        (3, 8, 1, "power of two"),
    ] {
        let msg = key_error(decrypt_private_key(&encrypted_with(&doc(n, r, p)), b"x").unwrap_err());
        assert!(msg.contains(why), "N={n} r={r} p={p}: {msg}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn unsupported_kdf_or_cipher_is_named() {
    let kdf = r#"{"kdf":{"name":"argon2","params":{"N":32768,"r":8,"p":1},"salt":""},"cipher":{"name":"nacl/secretbox","nonce":""},"ciphertext":""}"#;
    let cipher = r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":""},"cipher":{"name":"aes-gcm","nonce":""},"ciphertext":""}"#;
    assert!(
        key_error(decrypt_private_key(&encrypted_with(kdf), b"").unwrap_err()).contains("argon2")
    );
    assert!(
        key_error(decrypt_private_key(&encrypted_with(cipher), b"").unwrap_err())
            .contains("aes-gcm")
    );
    let msg = key_error(decrypt_private_key(&encrypted_with("{}"), b"").unwrap_err());
    assert!(msg.contains("cosign's JSON format"), "{msg}");
}

#[test]
fn public_key_round_trips_and_refuses_the_wrong_things() {
    let key = generate();
    let pem_text = public_key_pem(key.verifying_key()).unwrap();
    assert!(pem_text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert_eq!(&parse_public_key(&pem_text).unwrap(), key.verifying_key());

    let private = encrypt_private_key(&key, b"pw").unwrap();
    let msg = key_error(parse_public_key(&private).unwrap_err());
    assert!(msg.contains("that is a private key"), "{msg}");
    let msg = key_error(parse_public_key(&fixture("openssl-p384.pub")).unwrap_err());
    assert!(msg.contains("P-384") && msg.contains("only P-256"), "{msg}");
    let msg = key_error(parse_public_key(&fixture("openssl-ed25519.pub")).unwrap_err());
    assert!(msg.contains("Ed25519"), "{msg}");
    // cosign pkg/cosign/keys_test.go `invalidrsawithpubkey`.
    let rsa = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx5piWVlE62NnZ0UzJ8Z6
oKiKOC4dbOZ1HsNhIRtqkM+Oq4G+25yq6P+0JU/Qvr9veOGEb3R/J9u8JBo+hv2i
5X8OtgvP2V2pi6f1s6vK7L0+6uRb4YTT/UdMshaVf97MgEqbq41Jf/cuvh+3AV0t
Z1BpixZg4aXMKpY6HUP69lbsu27oSUN1myMv7TSgZiV4CYs3l/gkEfpysBptWlcH
Ruw5RsB+C0RbjRtbJ/5VxmE/vd3Mlafd5t1WSpMb8yf0a84u5NFaXwZ7CweMfXeO
ddS0yb19ShSuW3PPRadruBM1mq15js9GfagPxDS75Imcs+fA62lWvHxEujTGjYHx
awIDAQAB
-----END PUBLIC KEY-----
";
    let msg = key_error(parse_public_key(rsa).unwrap_err());
    assert!(msg.contains("RSA"), "{msg}");
    let msg = key_error(
        parse_public_key("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err(),
    );
    assert!(
        msg.contains("found PEM label CERTIFICATE, expected PUBLIC KEY"),
        "{msg}"
    );
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// openssl reads the public key we write as a P-256 SubjectPublicKeyInfo.
#[test]
fn openssl_accepts_our_public_key() {
    let (_guard, dir) = tempdir();
    let key = generate();
    std::fs::write(
        dir.join("pub.pem"),
        public_key_pem(key.verifying_key()).unwrap(),
    )
    .unwrap();
    let out = openssl(&["pkey", "-pubin", "-in", "pub.pem", "-noout"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = openssl(&["ec", "-pubin", "-in", "pub.pem", "-noout", "-text"], &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("prime256v1"),
        "{text}"
    );
}

/// The key we seal is PKCS#8 that openssl reads, and openssl derives from it the
/// same public key we publish.
#[test]
fn openssl_reads_the_decrypted_pkcs8() {
    let (_guard, dir) = tempdir();
    let key =
        decrypt_private_key(&encrypt_private_key(&generate(), b"pw").unwrap(), b"pw").unwrap();
    std::fs::write(dir.join("key.der"), key.to_pkcs8_der().unwrap().as_bytes()).unwrap();
    let out = openssl(
        &[
            "pkcs8", "-nocrypt", "-inform", "DER", "-in", "key.der", "-out", "key.pem",
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = openssl(&["ec", "-in", "key.pem", "-pubout"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        public_key_pem(key.verifying_key()).unwrap()
    );
}
