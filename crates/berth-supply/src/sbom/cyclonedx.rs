//! CycloneDX 1.6 JSON output: the image as `metadata.component` (type
//! container), the distribution as an `operating-system` component, and one
//! `library` component per catalogued package with its purl, declared licence
//! and where it was found (`berth:layer`, `berth:location` properties).

use serde_json::{Value, json};

use super::license;
use super::spdx::{TOOL_VERSION, id_chars, package_refs, timestamp};
use super::{Catalog, Package, SubjectInfo};

/// The CycloneDX 1.6 JSON BOM for an image's catalogue. The `serialNumber` is
/// a fresh UUID URN, so two calls differ there.
pub fn to_cyclonedx(
    catalog: &Catalog,
    subject: &SubjectInfo,
    created: time::OffsetDateTime,
) -> Value {
    let image_ref = format!("Image-{}", subject.digest.hex());
    let image_name = if subject.name.is_empty() {
        subject.digest.to_string()
    } else {
        subject.name.clone()
    };
    let alg = match subject.digest.algorithm() {
        berth_oci::Algorithm::Sha256 => "SHA-256",
        berth_oci::Algorithm::Sha512 => "SHA-512",
    };
    let mut components = Vec::new();
    if let Some(distro) = &catalog.distro {
        let mut os = json!({
            "type": "operating-system",
            "bom-ref": format!("OperatingSystem-{}", id_chars(&distro.id, 64)),
            "name": distro.id,
        });
        if let Some(v) = &distro.version_id {
            os["version"] = json!(v);
        }
        if let Some(p) = &distro.pretty_name {
            os["description"] = json!(p);
        }
        components.push(os);
    }
    for (package, reference) in catalog.packages.iter().zip(package_refs(catalog)) {
        components.push(component(package, &reference));
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "version": 1,
        "metadata": {
            "timestamp": timestamp(created),
            "tools": {
                "components": [{ "type": "application", "name": "berth", "version": TOOL_VERSION }],
            },
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": image_name,
                "version": subject.digest.to_string(),
                "hashes": [{ "alg": alg, "content": subject.digest.hex() }],
            },
        },
        "components": components,
    })
}

fn component(p: &Package, reference: &str) -> Value {
    let mut out = json!({
        "type": "library",
        "bom-ref": reference,
        "name": p.name,
        "version": p.version,
        "purl": p.purl,
    });
    if let Some(supplier) = &p.supplier {
        out["publisher"] = json!(supplier);
    }
    if let Some(declared) = &p.license {
        out["licenses"] = match license::to_spdx(declared) {
            Some(l) if l.single => {
                json!([{ "license": { "id": l.expression, "acknowledgement": "declared" } }])
            }
            Some(l) => json!([{ "expression": l.expression, "acknowledgement": "declared" }]),
            None => json!([{ "license": { "name": declared, "acknowledgement": "declared" } }]),
        };
    }
    let mut properties = vec![
        json!({ "name": "berth:layer", "value": p.layer }),
        json!({ "name": "berth:location", "value": p.location }),
    ];
    if let Some(arch) = &p.arch {
        properties.push(json!({ "name": "berth:arch", "value": arch }));
    }
    out["properties"] = json!(properties);
    out
}
