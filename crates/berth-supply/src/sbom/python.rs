//! Python distributions: core metadata in `*.dist-info/METADATA` (wheels, pip)
//! and `*.egg-info/PKG-INFO` or `*.egg-info` files (setuptools, distro packages).

use super::{Ecosystem, RawPackage, rfc822};

/// The longest `License:` value taken as a licence name; longer ones (or
/// multi-line ones) are usually the whole licence text.
const LICENSE_NAME_MAX: usize = 100;

/// The distribution a metadata file describes (`Name`, `Version`), with its
/// licence: `License-Expression`, else a short `License`, else the
/// `License ::` classifiers' last segments (joined with ` OR `).
pub(super) fn parse_metadata(text: &str) -> Option<RawPackage> {
    let headers = rfc822::headers(text);
    let name = headers.get_nonempty("Name")?;
    let version = headers.get_nonempty("Version")?;
    let mut p = RawPackage::new(Ecosystem::Python, name, version);
    p.license = headers
        .get_nonempty("License-Expression")
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get_nonempty("License")
                .filter(|l| {
                    !l.contains('\n')
                        && l.len() <= LICENSE_NAME_MAX
                        && !l.eq_ignore_ascii_case("UNKNOWN")
                })
                .map(str::to_owned)
        })
        .or_else(|| {
            let mut leaves: Vec<&str> = Vec::new();
            for classifier in headers.get_all("Classifier") {
                let parts: Vec<&str> = classifier.split("::").map(str::trim).collect();
                if parts.len() < 2 || parts[0] != "License" {
                    continue;
                }
                if let Some(leaf) = parts.last().copied()
                    && leaf != "OSI Approved"
                    && !leaves.contains(&leaf)
                {
                    leaves.push(leaf);
                }
            }
            (!leaves.is_empty()).then(|| leaves.join(" OR "))
        });
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licence_sources_in_order() {
        let p = parse_metadata(
            "Metadata-Version: 2.4\nName: Foo_Bar\nVersion: 1.0\nLicense-Expression: MIT OR Apache-2.0\nLicense: BSD\n",
        )
        .unwrap();
        assert_eq!(p.name, "Foo_Bar");
        assert_eq!(p.license.as_deref(), Some("MIT OR Apache-2.0"));

        let p = parse_metadata(
            "Name: six\nVersion: 1.16.0\nLicense: UNKNOWN\nClassifier: License :: OSI Approved :: MIT License\nClassifier: Programming Language :: Python\n\nLicense: body text\n",
        )
        .unwrap();
        assert_eq!(p.license.as_deref(), Some("MIT License"));

        let p = parse_metadata(
            "Name: x\nVersion: 2\nLicense: Copyright (c) x\n        Permission is hereby granted\n",
        )
        .unwrap();
        assert_eq!(p.license, None, "a pasted licence text is not a name");
        assert!(parse_metadata("Name: x\n").is_none());
    }
}
