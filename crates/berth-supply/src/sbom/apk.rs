//! Alpine packages: apk's `lib/apk/db/installed` database (blank-line separated
//! records of `X:value` lines).

use super::{Ecosystem, RawPackage};

/// Every package of an apk `installed` database: `P:` name, `V:` version,
/// `A:` arch, `L:` licence, `o:` origin, `m:` maintainer.
pub(super) fn parse_installed(text: &str) -> Vec<RawPackage> {
    let mut out = Vec::new();
    let mut fields: Vec<(char, &str)> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if let Some(p) = record(&fields) {
                out.push(p);
            }
            fields.clear();
            continue;
        }
        let mut chars = line.chars();
        if let (Some(key), Some(':')) = (chars.next(), chars.next()) {
            fields.push((key, chars.as_str().trim()));
        }
    }
    out
}

fn record(fields: &[(char, &str)]) -> Option<RawPackage> {
    let get = |key: char| {
        fields
            .iter()
            .find(|(k, v)| *k == key && !v.is_empty())
            .map(|(_, v)| (*v).to_owned())
    };
    let name = get('P')?;
    let version = get('V')?;
    let mut p = RawPackage::new(Ecosystem::Apk, name, version);
    p.arch = get('A');
    p.license = get('L');
    p.supplier = get('m');
    p.upstream = get('o').filter(|o| *o != p.name);
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let text = "\
C:Q1abc=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:383152
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
F:lib

P:libcrypto3
V:3.1.4-r5
A:x86_64
L:Apache-2.0
o:openssl
";
        let pkgs = parse_installed(text);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "musl");
        assert_eq!(pkgs[0].upstream, None);
        assert_eq!(
            pkgs[0].supplier.as_deref(),
            Some("Timo Teräs <timo.teras@iki.fi>")
        );
        assert_eq!(pkgs[1].license.as_deref(), Some("Apache-2.0"));
        assert_eq!(pkgs[1].upstream.as_deref(), Some("openssl"));
    }
}
