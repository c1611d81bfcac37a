//! Heuristics for files that look like secrets and probably should not be baked into an
//! image layer. They only produce warnings: the layer is built regardless.

/// How many leading bytes of a file are scanned for key material.
pub(crate) const SCAN_BYTES: usize = 1024;

/// Why a file's name suggests a secret, if it does.
pub(crate) fn name_reason(name: &str) -> Option<&'static str> {
    match name {
        ".env" => Some("environment file (.env) often holds secrets"),
        "id_rsa" | "id_ed25519" | "id_ecdsa" | "id_dsa" => Some("named like an SSH private key"),
        ".npmrc" | ".pypirc" | ".netrc" | ".git-credentials" => {
            Some("credentials file for a package registry or git")
        }
        "credentials.json" => Some("named like a credentials file"),
        n if n.ends_with(".pem") => Some("PEM file (certificate or private key)"),
        n if n.ends_with(".key") => Some("named like a private key (.key)"),
        _ => None,
    }
}

/// Why a file's first bytes suggest a secret, if they do.
pub(crate) fn content_reason(head: &[u8]) -> Option<&'static str> {
    if has_private_key_block(head) {
        return Some("contains a PEM private key block");
    }
    if has_aws_access_key_id(head) {
        return Some("contains what looks like an AWS access key id (AKIA…)");
    }
    None
}

/// `-----BEGIN ` followed, on the same line, by `PRIVATE KEY-----`.
fn has_private_key_block(head: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"PRIVATE KEY-----";
    head.windows(BEGIN.len())
        .enumerate()
        .filter(|(_, w)| *w == BEGIN)
        .any(|(i, _)| {
            let rest = &head[i + BEGIN.len()..];
            let line = rest.split(|b| *b == b'\n').next().unwrap_or(&[]);
            line.windows(END.len()).any(|w| w == END)
        })
}

/// `AKIA` followed by 16 characters from `[0-9A-Z]`.
fn has_aws_access_key_id(head: &[u8]) -> bool {
    head.windows(20).any(|w| {
        w.starts_with(b"AKIA")
            && w[4..]
                .iter()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for n in [
            ".env",
            "server.pem",
            "id_rsa",
            "id_ed25519",
            "tls.key",
            ".npmrc",
            ".pypirc",
            ".netrc",
            ".git-credentials",
            "credentials.json",
        ] {
            assert!(name_reason(n).is_some(), "{n}");
        }
        for n in ["env", ".env.example", "id_rsa.pub", "keys.txt", "main.rs"] {
            assert!(name_reason(n).is_none(), "{n}");
        }
    }

    #[test]
    fn contents() {
        assert!(content_reason(b"x\n-----BEGIN RSA PRIVATE KEY-----\nMII").is_some());
        assert!(content_reason(b"-----BEGIN OPENSSH PRIVATE KEY-----").is_some());
        assert!(content_reason(b"-----BEGIN CERTIFICATE-----\nPRIVATE KEY-----").is_none());
        assert!(content_reason(b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE").is_some());
        assert!(content_reason(b"AKIAiosfodnn7example").is_none());
        assert!(content_reason(b"AKIA123").is_none());
        assert!(content_reason(b"hello world").is_none());
    }
}
