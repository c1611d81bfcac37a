//! SPDX 2.3 JSON output: the document, one package for the image (purpose
//! CONTAINER), one for the distribution (OPERATING_SYSTEM) and one per
//! catalogued package, and the relationships DOCUMENT DESCRIBES image, image
//! CONTAINS each of the others.

use std::collections::HashSet;

use serde_json::{Value, json};
use sha2::Digest as _;

use super::license;
use super::{Catalog, Package, SubjectInfo};

/// The tool name and version written as the SBOMs' creator.
pub(super) const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The SPDX 2.3 JSON document for an image's catalogue. The
/// `documentNamespace` includes a fresh UUID, so two calls differ there.
pub fn to_spdx(catalog: &Catalog, subject: &SubjectInfo, created: time::OffsetDateTime) -> Value {
    let image_name = if subject.name.is_empty() {
        subject.digest.to_string()
    } else {
        subject.name.clone()
    };
    let image_id = format!("SPDXRef-Image-{}", id_chars(&image_name, 100));
    let namespace = format!(
        "https://berth.invalid/spdx/{}-{}",
        id_chars(&image_name, 100),
        uuid::Uuid::new_v4()
    );
    let algorithm = subject.digest.algorithm().as_str().to_ascii_uppercase();
    let mut packages = vec![json!({
        "name": image_name,
        "SPDXID": image_id,
        "versionInfo": subject.digest.to_string(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{ "algorithm": algorithm, "checksumValue": subject.digest.hex() }],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    let mut contains = |id: &str| {
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    };
    if let Some(distro) = &catalog.distro {
        let id = format!("SPDXRef-OperatingSystem-{}", id_chars(&distro.id, 64));
        let mut os = json!({
            "name": distro.id,
            "SPDXID": id,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            // The SPDX 2.3 JSON schema's spelling; the spec's clause 7.24
            // writes OPERATING-SYSTEM (tag-value).
            "primaryPackagePurpose": "OPERATING_SYSTEM",
        });
        if let Some(v) = &distro.version_id {
            os["versionInfo"] = json!(v);
        }
        if let Some(p) = &distro.pretty_name {
            os["description"] = json!(p);
        }
        packages.push(os);
        contains(&id);
    }
    for (package, reference) in catalog.packages.iter().zip(package_refs(catalog)) {
        let id = format!("SPDXRef-{reference}");
        packages.push(package_json(package, &id));
        contains(&id);
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": image_name,
        "documentNamespace": namespace,
        "creationInfo": {
            "created": timestamp(created),
            "creators": [format!("Tool: berth-{TOOL_VERSION}")],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn package_json(p: &Package, id: &str) -> Value {
    let spdx_licence = p.license.as_deref().and_then(license::to_spdx);
    let mut out = json!({
        "name": p.name,
        "SPDXID": id,
        "versionInfo": p.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": spdx_licence.as_ref().map_or("NOASSERTION", |l| l.expression.as_str()),
        "copyrightText": "NOASSERTION",
        "sourceInfo": format!(
            "{} package catalogued by berth from /{} in layer {}",
            p.ecosystem, p.location, p.layer
        ),
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": p.purl,
        }],
    });
    if let Some(supplier) = p.supplier.as_deref().and_then(actor) {
        out["supplier"] = json!(supplier);
    }
    if let (Some(declared), None) = (&p.license, &spdx_licence) {
        out["comment"] = json!(format!(
            "declared licence (not an SPDX expression): {declared}"
        ));
    }
    out
}

/// `Name <email>` as an SPDX actor, `Person: Name (email)`.
fn actor(raw: &str) -> Option<String> {
    let (name, email) = match raw.split_once('<') {
        Some((name, rest)) => (name, rest.split('>').next().map(str::trim)),
        None => (raw, None),
    };
    let name: String = name
        .chars()
        .filter(|c| !matches!(c, '(' | ')' | '<' | '>') && !c.is_control())
        .collect();
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some(
        match email.filter(|e| !e.is_empty() && !e.contains(['(', ')'])) {
            Some(email) => format!("Person: {name} ({email})"),
            None => format!("Person: {name}"),
        },
    )
}

/// A unique reference per package, made of SPDX id characters only
/// (`[A-Za-z0-9.-]`): `Package-<type>-<name>-<hash>`, the hash over what
/// identifies the package and where it was found. Used as the SPDX id (after
/// `SPDXRef-`) and as the CycloneDX `bom-ref`.
pub(super) fn package_refs(catalog: &Catalog) -> Vec<String> {
    let mut seen = HashSet::new();
    catalog
        .packages
        .iter()
        .map(|p| {
            let mut h = sha2::Sha256::new();
            for part in [
                p.ecosystem.as_str(),
                &p.name,
                &p.version,
                &p.purl,
                &p.layer,
                &p.location,
            ] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            let hash = hex::encode(&h.finalize()[..8]);
            let base = format!("Package-{}-{}-{hash}", p.ecosystem, id_chars(&p.name, 64));
            let mut candidate = base.clone();
            let mut n = 1;
            while !seen.insert(candidate.clone()) {
                n += 1;
                candidate = format!("{base}-{n}");
            }
            candidate
        })
        .collect()
}

/// `s` with every character outside `[A-Za-z0-9.-]` replaced by `-`, cut to
/// `max` characters (`x` if empty).
pub(super) fn id_chars(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.is_empty() { "x".to_owned() } else { out }
}

/// RFC 3339 in UTC to the second, e.g. `2024-05-01T12:00:00Z`.
pub(super) fn timestamp(t: time::OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    let utc = utc.replace_nanosecond(0).unwrap_or(utc);
    utc.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_and_ids() {
        assert_eq!(
            actor("GNU Libc Maintainers <debian-glibc@lists.debian.org>").as_deref(),
            Some("Person: GNU Libc Maintainers (debian-glibc@lists.debian.org)")
        );
        assert_eq!(
            actor("Someone (the one)").as_deref(),
            Some("Person: Someone the one")
        );
        assert_eq!(actor(" <a@b>"), None);
        assert_eq!(id_chars("@scope/name_x", 64), "-scope-name-x");
        assert_eq!(id_chars("", 64), "x");
    }

    #[test]
    fn timestamps_are_utc_seconds() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(timestamp(t), "2023-11-14T22:13:20Z");
    }
}
