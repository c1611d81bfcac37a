//! Package URLs (purl-spec): `pkg:type/namespace/name@version?qualifiers`.
//!
//! Each component is percent-encoded per the spec's "Character encoding": the
//! alphanumerics, `.-_~` and the colon stay as they are (so a Debian epoch
//! reads `1:2.4`), everything else becomes `%XX` (`+` → `%2B`, a scope's `@` →
//! `%40`). Qualifiers are sorted by key and empty ones left out. Type rules:
//! deb and apk use the distribution id as namespace (`debian`/`alpine` when
//! unknown) and lowercase names, with `arch`, `distro` (`<id>-<version_id>`)
//! and `upstream` (the source package) qualifiers; pypi names are normalised
//! as PEP 503 says; npm names are lowercased and a scope is the namespace; a Go
//! module path is split into namespace and name at its last `/` (case kept, as
//! module paths are case-sensitive), and the standard library is
//! `pkg:golang/stdlib@1.x.y`.

use std::fmt::Write;

use super::{DEVEL_VERSION, Distro, Ecosystem, RawPackage};

/// The purl of a catalogued package.
pub(super) fn for_package(p: &RawPackage, distro: Option<&Distro>) -> String {
    match p.ecosystem {
        Ecosystem::Deb | Ecosystem::Apk => {
            let default_ns = if p.ecosystem == Ecosystem::Deb {
                "debian"
            } else {
                "alpine"
            };
            let ns = distro
                .map_or(default_ns, |d| d.id.as_str())
                .to_ascii_lowercase();
            let distro_q = distro.map(|d| match &d.version_id {
                Some(v) => format!("{}-{v}", d.id),
                None => d.id.clone(),
            });
            build(
                p.ecosystem.as_str(),
                &[&ns],
                &p.name.to_lowercase(),
                Some(&p.version),
                &[
                    ("arch", p.arch.as_deref()),
                    ("distro", distro_q.as_deref()),
                    ("upstream", p.upstream.as_deref()),
                ],
            )
        }
        Ecosystem::Python => build("pypi", &[], &pypi_name(&p.name), Some(&p.version), &[]),
        Ecosystem::Npm => {
            let lower = p.name.to_lowercase();
            match lower.split_once('/') {
                Some((scope, name)) if scope.starts_with('@') => {
                    build("npm", &[scope], name, Some(&p.version), &[])
                }
                _ => build("npm", &[], &lower, Some(&p.version), &[]),
            }
        }
        Ecosystem::Cargo => build("cargo", &[], &p.name, Some(&p.version), &[]),
        Ecosystem::Go => {
            let version = (p.version != DEVEL_VERSION).then_some(p.version.as_str());
            if p.name == "stdlib" {
                let version = version.map(|v| v.strip_prefix("go").unwrap_or(v));
                return build("golang", &[], "stdlib", version, &[]);
            }
            let segments: Vec<&str> = p.name.split('/').filter(|s| !s.is_empty()).collect();
            match segments.split_last() {
                Some((name, namespace)) => build("golang", namespace, name, version, &[]),
                None => build("golang", &[], &p.name, version, &[]),
            }
        }
    }
}

/// Assembles a purl from its components (encoding each).
pub(super) fn build(
    ty: &str,
    namespace: &[&str],
    name: &str,
    version: Option<&str>,
    qualifiers: &[(&str, Option<&str>)],
) -> String {
    let mut out = format!("pkg:{ty}/");
    for segment in namespace {
        encode(segment, &mut out);
        out.push('/');
    }
    encode(name, &mut out);
    if let Some(version) = version.filter(|v| !v.is_empty()) {
        out.push('@');
        encode(version, &mut out);
    }
    let mut qualifiers: Vec<(&str, &str)> = qualifiers
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect();
    qualifiers.sort_unstable();
    for (i, (key, value)) in qualifiers.into_iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        encode(value, &mut out);
    }
    out
}

/// Percent-encodes one component: alphanumerics, `.-_~` and `:` stay.
fn encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// PEP 503 normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
fn pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(eco: Ecosystem, name: &str, version: &str) -> RawPackage {
        RawPackage::new(eco, name, version)
    }

    #[test]
    fn deb_with_epoch_plus_and_qualifiers() {
        let mut p = raw(Ecosystem::Deb, "libc6", "1:2.36-9+deb12u4");
        p.arch = Some("amd64".into());
        p.upstream = Some("glibc".into());
        let d = Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            pretty_name: None,
        };
        assert_eq!(
            for_package(&p, Some(&d)),
            "pkg:deb/debian/libc6@1:2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
        p.upstream = None;
        p.arch = None;
        assert_eq!(
            for_package(&p, None),
            "pkg:deb/debian/libc6@1:2.36-9%2Bdeb12u4"
        );
    }

    #[test]
    fn apk_pypi_npm_cargo() {
        let mut p = raw(Ecosystem::Apk, "musl", "1.2.4_git20230717-r4");
        p.arch = Some("x86_64".into());
        let d = Distro {
            id: "alpine".into(),
            version_id: Some("3.19.1".into()),
            pretty_name: None,
        };
        assert_eq!(
            for_package(&p, Some(&d)),
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1"
        );
        assert_eq!(
            for_package(
                &raw(Ecosystem::Python, "Zope.Interface__X", "5.0+local"),
                None
            ),
            "pkg:pypi/zope-interface-x@5.0%2Blocal"
        );
        assert_eq!(
            for_package(&raw(Ecosystem::Npm, "@Types/Node", "20.1.0"), None),
            "pkg:npm/%40types/node@20.1.0"
        );
        assert_eq!(
            for_package(&raw(Ecosystem::Npm, "left-pad", "1.3.0"), None),
            "pkg:npm/left-pad@1.3.0"
        );
        assert_eq!(
            for_package(&raw(Ecosystem::Cargo, "serde_json", "1.0.0"), None),
            "pkg:cargo/serde_json@1.0.0"
        );
    }

    #[test]
    fn golang() {
        assert_eq!(
            for_package(
                &raw(Ecosystem::Go, "github.com/BurntSushi/toml", "v1.3.2"),
                None
            ),
            "pkg:golang/github.com/BurntSushi/toml@v1.3.2"
        );
        assert_eq!(
            for_package(&raw(Ecosystem::Go, "example.com/app", "(devel)"), None),
            "pkg:golang/example.com/app"
        );
        assert_eq!(
            for_package(&raw(Ecosystem::Go, "stdlib", "go1.22.1"), None),
            "pkg:golang/stdlib@1.22.1"
        );
        assert_eq!(
            for_package(
                &raw(
                    Ecosystem::Go,
                    "golang.org/x/net",
                    "v0.0.0-20210226172049-e18ecbb05110+incompatible"
                ),
                None
            ),
            "pkg:golang/golang.org/x/net@v0.0.0-20210226172049-e18ecbb05110%2Bincompatible"
        );
    }

    #[test]
    fn encoding() {
        let mut s = String::new();
        encode("a b/c@d?e#f%g+h:i~j", &mut s);
        assert_eq!(s, "a%20b%2Fc%40d%3Fe%23f%25g%2Bh:i~j");
        let mut s = String::new();
        encode("é", &mut s);
        assert_eq!(s, "%C3%A9");
    }
}
