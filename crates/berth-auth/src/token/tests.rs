//! Tests of the token service and verifier as a whole.
//!
//! The PEM keys below are throwaway test fixtures generated with `openssl` for these
//! tests only.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};

use super::*;

const RSA_PRIVATE: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAuiCFnhsNDRYZQjpT9vrmWsvA/WHmaDOVery4Z69/vMd6rhxk
5TaOdt4BKWfvDb5Z5jf//KO9vD/2cljhcrILWv0jkuPNsKdBhvWpHQEZ8Mtlcv4w
8D8Ko/SM3qT44M04pHZ1Vklvj08QjBcAxvrfQc+QrOGCvTQ5NRldpU2excgidxJw
G9d/adm0Cx6DSNNIloGcFKCPpxk6SuH1PFaxMPMofS2iv1gIIDkFP/K5jpxCnpDW
EngCapg//+owUREFeH4KXkKZ/x55Y9dwzfCSzLCAQr4hrl9awu/BVQKNlmrfqZ+y
/4L1fXYod/Y9m0W/cjHRBAm95VEOsDb+3UHEQwIDAQABAoIBAAs2BUZaM8WLhLb4
A3G3eCOU7Ul12aaCIOlVL7hTGlsZGtsc67jgueEQCzrev0fxJMIYsmsZw8Zwhdwq
XV4GumdfIwLohM20rV4/MtID7HeUEMbF59W4vl/UzZ1li3Yi9lv1pKivYLBdn04I
3qudldAFfB3lsXXLDP0VS4426C7afk+G3K6hdNIAMSGyubZDVpx7JP9oo+47Yu6Q
dnyPPWN43OmB3ZQlul7Yj96P8ZYAg4tbvjjnL3c/iyhfJu6NXvnVziKBkZ8QnHlV
7iAF/t8UIr/3hnXWIrpcTGbEITdqj0O0L4C42iDaEJXxl1Nv7Flbt6avgv+0gvdb
TiP8flECgYEA7iV+w3PYiEQ2eYC9ZhV1T/QLJzQWCbDikgWrKSLBC/mFXLBk7nzh
wONqCqmp+whLAKFi69H79zRmmuqquH0RkS2CPVaPpivvkAuVlwKETXiCqSxTKjJ+
GGEFxIuA9QAEBJHUPsj3LyGtqQiXa69uTRyb6Miy9wHVrwGvvZEzQbECgYEAyBSr
n5bVdr6Wm0XwLnv29pqAejlQO4VaFnz14MDrFxTYzts6UVxZpTO71XOiIchtPPBa
RJzOYYAfp54g75hQrbSLBtMfu2VPbo1xAAcDac2D4FrJGlmydwq4S2Hv2Bsy9pKg
SDewt5/EYkBfzsYt6Dcqg1RktTwqTHZAmZK0DjMCgYEArFtmy37kkHsOEhIjAec1
6I/wIoeIC6uBz71ai4MjxM7qvpLL+e9YVIpDDUSOSalO3z3uok5v1hKO0EBXHv8l
37TYNhyYCuRxlgdMVOb1ajx2FIqIBlpU+L//tKhixO8l+UiyHF7Gx83QKi6VqNJn
OlgiXvAi1rL1PJwz3TdhqYECgYAkqaz9NF1vQeNFFp65VdveOld6jhAGqBvm7QT9
Jzys4RQNa5yXFg4TOJSdu2+lMx3ZQc24rucedKTYSSCN5uI5wlCLcppo81qHzoE7
WQ2mEJOuw9P/8RnDuIImxg52Eh3Xkuyt7w6Bx1PsERG9SRFWcO1oXUmK8DhsBGs3
+OrngwKBgQDVRO91O56V6i169QI9Oeu8WCTtZg6vZWFSCKyfHqOLjGDy4RFNHo5b
n9iR2TgqVdAgDnexiBEwLme7qdGlFj7sMGBz+pQrQvhjclVcwtkikXhX86hHkQJ1
bHRb7C7AXXywjvGH4fELIpY12e5f1GKM41ht54k06+JHC3ks8Cs9zw==
-----END RSA PRIVATE KEY-----
";

const RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuiCFnhsNDRYZQjpT9vrm
WsvA/WHmaDOVery4Z69/vMd6rhxk5TaOdt4BKWfvDb5Z5jf//KO9vD/2cljhcrIL
Wv0jkuPNsKdBhvWpHQEZ8Mtlcv4w8D8Ko/SM3qT44M04pHZ1Vklvj08QjBcAxvrf
Qc+QrOGCvTQ5NRldpU2excgidxJwG9d/adm0Cx6DSNNIloGcFKCPpxk6SuH1PFax
MPMofS2iv1gIIDkFP/K5jpxCnpDWEngCapg//+owUREFeH4KXkKZ/x55Y9dwzfCS
zLCAQr4hrl9awu/BVQKNlmrfqZ+y/4L1fXYod/Y9m0W/cjHRBAm95VEOsDb+3UHE
QwIDAQAB
-----END PUBLIC KEY-----
";

const ED_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGodWyvqQ+oraAYisSksVEozPu0gmkzXYp4vcROgGoJ6
-----END PRIVATE KEY-----
";

const ED_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAApb/h/ld+kISu/6UDfiAZCH8AEKXiqj+dJpLBAFfeck=
-----END PUBLIC KEY-----
";

const EC_SEC1_PRIVATE: &str = "\
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIHBHyAVU+T7ixg6b9msJ8B2533hbrOx5AgBRl2ZZ1d7ZoAoGCCqGSM49
AwEHoUQDQgAEsEkQkEO1QIx7kdNEfKm+hFfP84lC3CDiNkS5HKbEadjDzbyKixX9
EaOorijMl5cEbAG0H7GtE2P/5xpX8bSbqA==
-----END EC PRIVATE KEY-----
";

const EC_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBgzCCASmgAwIBAgIUMHTl4cLLen1Ttrf5uiekSrHtYQkwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLdGVzdC1pc3N1ZXIwIBcNMjYxMTI4MDAzOTEyWhgPMjEyNjEx
MDQwMDM5MTJaMBYxFDASBgNVBAMMC3Rlc3QtaXNzdWVyMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEsEkQkEO1QIx7kdNEfKm+hFfP84lC3CDiNkS5HKbEadjDzbyK
ixX9EaOorijMl5cEbAG0H7GtE2P/5xpX8bSbqKNTMFEwHQYDVR0OBBYEFP4+XTEE
Syba6ePH/zPv4F/vHKHfMB8GA1UdIwQYMBaAFP4+XTEESyba6ePH/zPv4F/vHKHf
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAIiEBbtrwNBOScUP
PWb60cXIAlW4EAwpDTFh8wbdAeX1AiAHAJFML+jc6N9piJsywVRKasVuw+nvhHZ4
whwwTSzmug==
-----END CERTIFICATE-----
";

/// The example key and token of auth-jwt.md.
const SPEC_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6","x":"m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q","y":"dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"}"#;
const SPEC_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiIsImtpZCI6IlBZWU86VEVXVTpWN0pIOjI2SlY6QVFUWjpMSkMzOlNYVko6WEdIQTozNEYyOjJMQVE6WlJNSzpaN1E2In0.eyJpc3MiOiJhdXRoLmRvY2tlci5jb20iLCJzdWIiOiJqbGhhd24iLCJhdWQiOiJyZWdpc3RyeS5kb2NrZXIuY29tIiwiZXhwIjoxNDE1Mzg3MzE1LCJuYmYiOjE0MTUzODcwMTUsImlhdCI6MTQxNTM4NzAxNSwianRpIjoidFlKQ08xYzZjbnl5N2tBbjBjN3JLUGdiVjFIMWJGd3MiLCJhY2Nlc3MiOlt7InR5cGUiOiJyZXBvc2l0b3J5IiwibmFtZSI6InNhbWFsYmEvbXktYXBwIiwiYWN0aW9ucyI6WyJwdXNoIl19XX0.QhflHPfbd6eVF4lM9bwYpFZIV0PfikbyXuLx959ykRTBpe3CYnzs6YBK8FToVb5R47920PVLrh8zuLzdCr9t3w";

fn cfg() -> IssuerConfig {
    IssuerConfig {
        issuer: "berth-token".into(),
        audience: "registry.example".into(),
        lifetime: Duration::from_secs(300),
        refresh_lifetime: Duration::from_secs(86_400),
    }
}

fn issuer_in(dir: &Path) -> TokenIssuer {
    TokenIssuer::load_or_generate(&dir.join("token.key"), cfg()).unwrap()
}

fn pull_push(name: &str) -> Vec<Access> {
    vec![Access::new("repository", name, ["pull", "push"])]
}

/// Claims valid now, as `issue` would make them.
fn valid_claims() -> Claims {
    let now = now_unix();
    Claims {
        iss: "berth-token".into(),
        sub: "alice".into(),
        aud: "registry.example".into(),
        exp: now + 300,
        nbf: now,
        iat: now,
        jti: "j".into(),
        access: pull_push("team-a/app"),
    }
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    path
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn issue_then_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let access = vec![
        Access::new("repository", "team-a/app", ["pull", "push"]),
        Access::new("registry", "catalog", ["*"]),
    ];
    let (token, expires_in) = issuer.issue("alice", access.clone()).unwrap();
    assert_eq!(expires_in, 300);

    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], issuer.kid());
    assert_eq!(issuer.kid().len(), 59, "libtrust id: 12 groups of 4");

    let claims = issuer.verifier().verify(&token).unwrap();
    assert_eq!(claims.iss, "berth-token");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.aud, "registry.example");
    assert_eq!(claims.access, access);
    assert_eq!(claims.exp, claims.iat + 300);
    assert!(claims.nbf <= now_unix());
    assert!(!claims.jti.is_empty());

    // Anonymous token: empty subject, no access.
    let (anon, _) = issuer.issue("", vec![]).unwrap();
    let claims = issuer.verifier().verify(&anon).unwrap();
    assert_eq!(claims.sub, "");
    assert!(claims.access.is_empty());
    // Distinct token ids.
    let (other, _) = issuer.issue("", vec![]).unwrap();
    assert_ne!(issuer.verifier().verify(&other).unwrap().jti, claims.jti);
}

#[test]
fn expired_token_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let now = now_unix();
    let mut claims = valid_claims();
    claims.iat = now - 1000;
    claims.nbf = now - 1000;
    claims.exp = now - 2;
    let token = issuer.sign_claims(&claims).unwrap();
    assert!(matches!(
        issuer.verifier().verify(&token),
        Err(TokenError::Expired)
    ));
    // Up to its `exp` second it is accepted; no leeway after that.
    claims.exp = now + 5;
    let token = issuer.sign_claims(&claims).unwrap();
    issuer.verifier().verify(&token).unwrap();
    assert!(matches!(
        issuer.verifier().verify_at(&token, now + 6),
        Err(TokenError::Expired)
    ));

    // A zero-lifetime token expires once the leeway has passed.
    let zero = TokenIssuer::load_or_generate(
        &dir.path().join("token.key"),
        IssuerConfig {
            lifetime: Duration::ZERO,
            ..cfg()
        },
    )
    .unwrap();
    let (token, expires_in) = zero.issue("alice", vec![]).unwrap();
    assert_eq!(expires_in, 0);
    let verifier = zero.verifier();
    verifier.verify_at(&token, now_unix()).unwrap();
    assert!(matches!(
        verifier.verify_at(&token, now_unix() + LEEWAY_SECS + 2),
        Err(TokenError::Expired)
    ));
}

#[test]
fn token_without_exp_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let mut claims = serde_json::to_value(valid_claims()).unwrap();
    claims.as_object_mut().unwrap().remove("exp");
    let header = Header {
        kid: Some(issuer.kid().to_owned()),
        ..Header::new(Algorithm::ES256)
    };
    // Sign with the issuer's own key through a second issuer loading the same file.
    let key = fs::read_to_string(dir.path().join("token.key")).unwrap();
    let encoding = EncodingKey::from_ec_der(pem::parse(key).unwrap().contents());
    let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    match issuer.verifier().verify(&token) {
        Err(TokenError::Malformed(reason)) => assert!(reason.contains("exp")),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn not_yet_valid_token_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let mut claims = valid_claims();
    claims.nbf = now_unix() + LEEWAY_SECS + 100;
    claims.exp = claims.nbf + 300;
    let token = issuer.sign_claims(&claims).unwrap();
    assert!(matches!(
        issuer.verifier().verify(&token),
        Err(TokenError::NotYetValid)
    ));
}

#[test]
fn wrong_audience_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let mut claims = valid_claims();
    claims.aud = "other-registry".into();
    let token = issuer.sign_claims(&claims).unwrap();
    match issuer.verifier().verify(&token) {
        Err(TokenError::BadAudience { got }) => assert_eq!(got, "other-registry"),
        other => panic!("expected BadAudience, got {other:?}"),
    }
}

#[test]
fn audience_array_is_accepted_when_it_contains_ours() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let key = fs::read_to_string(dir.path().join("token.key")).unwrap();
    let encoding = EncodingKey::from_ec_der(pem::parse(key).unwrap().contents());
    let header = Header::new(Algorithm::ES256);
    let mut claims = serde_json::to_value(valid_claims()).unwrap();
    claims["aud"] = serde_json::json!(["x", "registry.example"]);
    let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    assert_eq!(
        issuer.verifier().verify(&token).unwrap().aud,
        "registry.example"
    );
    claims["aud"] = serde_json::json!(["x", "y"]);
    let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    assert!(matches!(
        issuer.verifier().verify(&token),
        Err(TokenError::BadAudience { .. })
    ));
}

#[test]
fn unknown_issuer_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let mut claims = valid_claims();
    claims.iss = "evil-issuer".into();
    let token = issuer.sign_claims(&claims).unwrap();
    match issuer.verifier().verify(&token) {
        Err(TokenError::UnknownIssuer { got }) => assert_eq!(got, "evil-issuer"),
        other => panic!("expected UnknownIssuer, got {other:?}"),
    }
    // A verifier trusting nobody knows no issuer.
    let (token, _) = issuer.issue("alice", vec![]).unwrap();
    assert!(matches!(
        TokenVerifier::default().verify(&token),
        Err(TokenError::UnknownIssuer { .. })
    ));
}

#[test]
fn token_signed_by_another_key_is_rejected() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let issuer = issuer_in(ours.path());
    // Same issuer name and audience, different key.
    let impostor = issuer_in(theirs.path());
    assert_ne!(issuer.kid(), impostor.kid());
    let (token, _) = impostor.issue("alice", pull_push("team-a/app")).unwrap();
    assert!(matches!(
        issuer.verifier().verify(&token),
        Err(TokenError::BadSignature)
    ));

    // A tampered payload fails too, even with our kid.
    let (good, _) = issuer.issue("bob", pull_push("team-a/app")).unwrap();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = "admin".into();
    parts[1] = b64(&claims);
    assert!(matches!(
        issuer.verifier().verify(&parts.join(".")),
        Err(TokenError::BadSignature)
    ));

    // Trusting both issuers' keys (same name) accepts both.
    let both = issuer.verifier().with(impostor.verifier());
    both.verify(&token).unwrap();
    both.verify(&good).unwrap();
}

#[test]
fn alg_none_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let claims = serde_json::to_value(valid_claims()).unwrap();
    for alg in ["none", "None", "NONE"] {
        let header = serde_json::json!({"alg": alg, "typ": "JWT"});
        for signature in ["", "AAAA"] {
            let token = format!("{}.{}.{signature}", b64(&header), b64(&claims));
            match issuer.verifier().verify(&token) {
                Err(TokenError::AlgorithmNotAllowed { alg: got }) => assert_eq!(got, alg),
                other => panic!("alg {alg}: expected AlgorithmNotAllowed, got {other:?}"),
            }
        }
    }
    // With our kid in the header too.
    let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": issuer.kid()});
    let token = format!("{}.{}.", b64(&header), b64(&claims));
    assert!(matches!(
        issuer.verifier().verify(&token),
        Err(TokenError::AlgorithmNotAllowed { .. })
    ));
}

#[test]
fn hmac_with_the_public_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let jwk = &issuer.jwks()["keys"][0];
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    let public = p256::PublicKey::from_sec1_bytes(&point).unwrap();
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    let secrets: Vec<Vec<u8>> = vec![
        point.clone(),
        public.to_public_key_der().unwrap().as_bytes().to_vec(),
        public
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
            .into_bytes(),
        serde_json::to_vec(jwk).unwrap(),
    ];
    let claims = valid_claims();
    let mut verifier_with_hs = issuer.verifier().issuers().to_vec();
    // Even an issuer configured (by bypassing `parse_algorithms`) with HS256.
    verifier_with_hs[0].algorithms.push(Algorithm::HS256);
    let verifier_with_hs = TokenVerifier::new(verifier_with_hs);
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        for secret in &secrets {
            let header = Header {
                kid: Some(issuer.kid().to_owned()),
                ..Header::new(alg)
            };
            let token =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
            for verifier in [issuer.verifier(), verifier_with_hs.clone()] {
                assert!(
                    matches!(
                        verifier.verify(&token),
                        Err(TokenError::AlgorithmNotAllowed { .. })
                    ),
                    "{alg:?}"
                );
            }
        }
    }
    // And HS* cannot be configured.
    assert!(matches!(
        parse_algorithms(&["ES256".into(), "HS256".into()]),
        Err(TokenError::AlgorithmNotAllowed { .. })
    ));
    assert!(parse_algorithms(&["none".into()]).is_err());
    assert!(parse_algorithms(&["rs256".into()]).is_err());
    assert_eq!(
        parse_algorithms(&["ES256".into(), "EdDSA".into(), "ES256".into()]).unwrap(),
        vec![Algorithm::ES256, Algorithm::EdDSA]
    );
    assert_eq!(parse_algorithms(&[]).unwrap(), DEFAULT_ALGORITHMS.to_vec());
}

#[test]
fn algorithm_outside_the_allow_list_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let jwks = write(dir.path(), "jwks.json", &issuer.jwks().to_string());
    // The only key is EC P-256: an RS256-only allow-list cannot be configured…
    assert!(matches!(
        TrustedIssuer::from_jwks_file("berth-token", "registry.example", &jwks, &["RS256".into()]),
        Err(TokenError::Config(_))
    ));
    // …and a token claiming RS256 against an ES256 allow-list is refused.
    let rsa_der = pem::parse(RSA_PRIVATE).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &valid_claims(),
        &EncodingKey::from_rsa_der(rsa_der.contents()),
    )
    .unwrap();
    assert!(matches!(
        issuer.verifier().verify(&token),
        Err(TokenError::AlgorithmNotAllowed { .. })
    ));
}

#[test]
fn refresh_tokens_are_not_access_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let refresh = issuer.issue_refresh("alice").unwrap();
    assert!(matches!(
        issuer.verifier().verify(&refresh),
        Err(TokenError::IsRefreshToken)
    ));
    assert_eq!(issuer.verify_refresh(&refresh).unwrap(), "alice");

    // An access token is not a refresh token.
    let (access, _) = issuer.issue("alice", pull_push("a")).unwrap();
    assert!(matches!(
        issuer.verify_refresh(&access),
        Err(TokenError::NotRefreshToken)
    ));
    // Another service's refresh token is not ours.
    let other = issuer_in(tempfile::tempdir().unwrap().path());
    let foreign = other.issue_refresh("alice").unwrap();
    assert!(matches!(
        issuer.verify_refresh(&foreign),
        Err(TokenError::BadSignature)
    ));
    // Refresh tokens expire after the refresh lifetime.
    assert!(matches!(
        issuer.verify_refresh_at(&refresh, now_unix() + 86_400 + LEEWAY_SECS + 5),
        Err(TokenError::Expired)
    ));
    issuer
        .verify_refresh_at(&refresh, now_unix() + 86_000)
        .unwrap();
    // A refresh token carries no access.
    let payload: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(refresh.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(payload.get("access").is_none());
    assert_eq!(payload["aud"], "registry.example");
}

#[cfg(unix)]
#[test]
fn generated_key_is_private_and_reloads_to_the_same_kid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/token.key");
    let first = TokenIssuer::load_or_generate(&path, cfg()).unwrap();
    assert_eq!(mode(&path), 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    // No temporary files left behind.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("token.key")]);

    let second = TokenIssuer::load_or_generate(&path, cfg()).unwrap();
    assert_eq!(first.kid(), second.kid());
    assert_eq!(first.jwks(), second.jwks());
    // Tokens of the first load verify with the second.
    let (token, _) = first.issue("alice", vec![]).unwrap();
    second.verifier().verify(&token).unwrap();
}

#[cfg(unix)]
#[test]
fn group_or_world_accessible_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    TokenIssuer::load_or_generate(&path, cfg()).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o660, 0o602] {
        chmod(&path, bad);
        match TokenIssuer::load_or_generate(&path, cfg()) {
            Err(e @ TokenError::KeyPermissions { .. }) => {
                let TokenError::KeyPermissions { path: p, mode } = &e else {
                    unreachable!()
                };
                assert_eq!(p, &path);
                assert_eq!(*mode, bad);
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
                assert!(msg.contains(&format!("{bad:04o}")), "{msg}");
            }
            other => panic!("mode {bad:o}: expected KeyPermissions, got {other:?}"),
        }
    }
    chmod(&path, 0o400);
    TokenIssuer::load_or_generate(&path, cfg()).unwrap();
}

#[cfg(unix)]
#[test]
fn sec1_key_file_from_openssl_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ec.pem", EC_SEC1_PRIVATE);
    chmod(&path, 0o600);
    let issuer = TokenIssuer::load_or_generate(&path, cfg()).unwrap();
    // The file is left as it was.
    assert_eq!(fs::read_to_string(&path).unwrap(), EC_SEC1_PRIVATE);

    // Its certificate, as an external issuer's PEM, verifies its tokens.
    let cert = write(dir.path(), "issuer.crt", EC_CERT);
    let trusted = TrustedIssuer::from_pem_files(
        "berth-token",
        "registry.example",
        &[cert],
        &["ES256".into()],
    )
    .unwrap();
    assert_eq!(trusted.keys[0].kids()[0], issuer.kid());
    let (token, _) = issuer.issue("alice", pull_push("x")).unwrap();
    TokenVerifier::new(vec![trusted]).verify(&token).unwrap();
}

#[test]
fn garbage_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "token.key", "not a key\n");
    #[cfg(unix)]
    chmod(&path, 0o600);
    assert!(matches!(
        TokenIssuer::load_or_generate(&path, cfg()),
        Err(TokenError::Key { .. })
    ));
    let rsa = write(dir.path(), "rsa.key", RSA_PRIVATE);
    #[cfg(unix)]
    chmod(&rsa, 0o600);
    assert!(matches!(
        TokenIssuer::load_or_generate(&rsa, cfg()),
        Err(TokenError::Key { .. })
    ));
}

#[test]
fn jwks_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let jwks = issuer.jwks();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["kid"], issuer.kid());
    assert!(key.get("d").is_none(), "no private part");

    let path = write(
        dir.path(),
        "jwks.json",
        &serde_json::to_string_pretty(&jwks).unwrap(),
    );
    let trusted =
        TrustedIssuer::from_jwks_file("berth-token", "registry.example", &path, &["ES256".into()])
            .unwrap();
    let verifier = TokenVerifier::new(vec![trusted]);
    let (token, _) = issuer.issue("alice", pull_push("team-a/app")).unwrap();
    let claims = verifier.verify(&token).unwrap();
    assert_eq!(claims.access, pull_push("team-a/app"));

    // The same JWKS with another audience refuses the token.
    let elsewhere = TrustedIssuer::from_jwks_file("berth-token", "elsewhere", &path, &[]).unwrap();
    assert!(matches!(
        TokenVerifier::new(vec![elsewhere]).verify(&token),
        Err(TokenError::BadAudience { .. })
    ));
}

#[test]
fn jwks_files_with_bad_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("not json", "not JSON"),
        (r#"{"keys": {}}"#, "not an array"),
        (r#"{"keys": []}"#, "no signing keys"),
        (
            r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
            "symmetric",
        ),
        (
            r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}"#,
            "P-256",
        ),
        (r#"{"keys": [{"kty": "XYZ"}]}"#, "unsupported key type"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("{i}.json"), text);
        match TrustedIssuer::from_jwks_file("i", "a", &path, &[]) {
            Err(TokenError::Key { reason, .. }) => assert!(reason.contains(want), "{reason}"),
            other => panic!("{text}: expected Key error, got {other:?}"),
        }
    }
    // Encryption keys are skipped.
    let enc_only = write(
        dir.path(),
        "enc.json",
        &format!(r#"{{"keys": [{{"kty": "oct", "k": "c2VjcmV0", "use": "enc"}}, {SPEC_JWK}]}}"#),
    );
    let trusted = TrustedIssuer::from_jwks_file("i", "a", &enc_only, &[]).unwrap();
    assert_eq!(trusted.keys.len(), 1);
}

/// The private part (`d`) of the auth-jwt.md example key.
const SPEC_D: &str = "R7OnbfMaD5J2jl7GeE8ESo7CnHSBm_1N2k9IXYFrKJA";

#[cfg(unix)]
#[test]
fn spec_example_key_interoperates() {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let dir = tempfile::tempdir().unwrap();
    let secret = p256::SecretKey::from_slice(&URL_SAFE_NO_PAD.decode(SPEC_D).unwrap()).unwrap();
    let key_path = write(
        dir.path(),
        "spec.key",
        &secret.to_pkcs8_pem(LineEnding::LF).unwrap(),
    );
    chmod(&key_path, 0o600);
    let issuer = TokenIssuer::load_or_generate(
        &key_path,
        IssuerConfig {
            issuer: "auth.docker.com".into(),
            audience: "registry.docker.com".into(),
            ..cfg()
        },
    )
    .unwrap();
    // Our key id is the one Docker's libtrust derives for this key.
    assert_eq!(
        issuer.kid(),
        "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"
    );
    assert_eq!(
        issuer.jwks()["keys"][0]["x"],
        "m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q"
    );

    // The spec's claim set, signed by us, verifies against the spec's public JWK.
    let path = write(
        dir.path(),
        "jwks.json",
        &format!(r#"{{"keys": [{SPEC_JWK}]}}"#),
    );
    let trusted = TrustedIssuer::from_jwks_file(
        "auth.docker.com",
        "registry.docker.com",
        &path,
        &["ES256".into()],
    )
    .unwrap();
    let verifier = TokenVerifier::new(vec![trusted]);
    let spec_claims = SPEC_TOKEN.split('.').nth(1).unwrap();
    let claims: Claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(spec_claims).unwrap()).unwrap();
    let token = issuer.sign_claims(&claims).unwrap();
    assert_eq!(
        token.split('.').nth(1).unwrap(),
        spec_claims,
        "same claim encoding"
    );
    let verified = verifier.verify_at(&token, 1_415_387_100).unwrap();
    assert_eq!(verified, claims);
    assert!(matches!(verifier.verify(&token), Err(TokenError::Expired)));

    // The spec's own example signature is not valid (checked independently with
    // Python's `cryptography`), so it must be refused.
    assert!(matches!(
        verifier.verify_at(SPEC_TOKEN, 1_415_387_100),
        Err(TokenError::BadSignature)
    ));
}

#[test]
fn rsa_and_ed25519_issuers_from_pem_files() {
    let dir = tempfile::tempdir().unwrap();
    let rsa_pub = write(dir.path(), "rsa.pub", RSA_PUBLIC);
    let ed_pub = write(dir.path(), "ed.pub", ED_PUBLIC);
    let trusted = TrustedIssuer::from_pem_files(
        "ext",
        "registry.example",
        &[rsa_pub, ed_pub],
        &["RS256".into(), "PS256".into(), "EdDSA".into()],
    )
    .unwrap();
    let verifier = TokenVerifier::new(vec![trusted]);
    let mut claims = valid_claims();
    claims.iss = "ext".into();

    let rsa = EncodingKey::from_rsa_der(pem::parse(RSA_PRIVATE).unwrap().contents());
    let ed = EncodingKey::from_ed_der(pem::parse(ED_PRIVATE).unwrap().contents());
    for (alg, key) in [
        (Algorithm::RS256, &rsa),
        (Algorithm::PS256, &rsa),
        (Algorithm::EdDSA, &ed),
    ] {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().sub, "alice", "{alg:?}");
    }
    // RS512 is not in the allow-list.
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS512), &claims, &rsa).unwrap();
    assert!(matches!(
        verifier.verify(&token),
        Err(TokenError::AlgorithmNotAllowed { .. })
    ));
    // An unknown kid falls back to trying every key.
    let header = Header {
        kid: Some("no-such-key".into()),
        ..Header::new(Algorithm::EdDSA)
    };
    let token = jsonwebtoken::encode(&header, &claims, &ed).unwrap();
    verifier.verify(&token).unwrap();
}

#[test]
fn malformed_tokens_are_rejected_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let (good, _) = issuer.issue("alice", pull_push("a")).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        "secret-looking-garbage".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("!!!.{}.{}", parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::json!([1, 2])),
            parts[2]
        ),
        "a".repeat(20_000),
    ];
    for token in &cases {
        let err = issuer.verifier().verify(token).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
        let msg = err.to_string();
        if !token.is_empty() {
            assert!(!msg.contains(token.as_str()), "{msg}");
        }
        assert!(!msg.contains(parts[1]), "{msg}");
    }
    // No error message of any kind quotes the token.
    for err in [
        issuer
            .verifier()
            .verify(&format!("{}.{}.AAAA", parts[0], parts[1])),
        issuer.verify_refresh(&good).map(|_| valid_claims()),
    ] {
        let msg = err.unwrap_err().to_string();
        assert!(!msg.contains(parts[1]) && !msg.contains(parts[2]), "{msg}");
    }
}

#[test]
fn long_claim_values_are_shortened_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer_in(dir.path());
    let mut claims = valid_claims();
    claims.iss = format!("{}\n{}", "x".repeat(100), "y".repeat(100));
    let token = issuer.sign_claims(&claims).unwrap();
    let TokenError::UnknownIssuer { got } = issuer.verifier().verify(&token).unwrap_err() else {
        panic!("expected UnknownIssuer");
    };
    assert!(got.chars().count() <= 65);
    assert!(!got.contains('\n'));
}
