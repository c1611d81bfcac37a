//! npm packages: the `package.json` at the top of each `node_modules/<name>/`
//! or `node_modules/@scope/<name>/` directory.

use serde_json::Value;

use super::{Ecosystem, RawPackage};

/// The package a `package.json` describes (`name`, `version`), with its
/// licence: `license` as a string or `{ "type": … }`, else the legacy
/// `licenses` array (joined with ` OR `).
pub(super) fn parse_package_json(bytes: &[u8], path: &str) -> Option<RawPackage> {
    let json: Value = match serde_json::from_slice(bytes) {
        Ok(json) => json,
        Err(e) => {
            tracing::debug!(path, error = %e, "sbom: skipping a package.json that is not JSON");
            return None;
        }
    };
    let name = json.get("name")?.as_str()?.trim();
    let version = json.get("version")?.as_str()?.trim();
    if name.is_empty() || version.is_empty() {
        return None;
    }
    let mut p = RawPackage::new(Ecosystem::Npm, name, version);
    p.license = json.get("license").and_then(licence_value).or_else(|| {
        let names: Vec<String> = json
            .get("licenses")?
            .as_array()?
            .iter()
            .filter_map(licence_value)
            .collect();
        (!names.is_empty()).then(|| names.join(" OR "))
    });
    Some(p)
}

fn licence_value(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("type")?.as_str()?,
        _ => return None,
    };
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licence_shapes() {
        let p =
            parse_package_json(br#"{"name":"a","version":"1.0.0","license":"MIT"}"#, "x").unwrap();
        assert_eq!(p.license.as_deref(), Some("MIT"));
        let p = parse_package_json(
            br#"{"name":"@s/a","version":"1.0.0","license":{"type":"ISC"}}"#,
            "x",
        )
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.license.as_deref()),
            ("@s/a", Some("ISC"))
        );
        let p = parse_package_json(
            br#"{"name":"b","version":"2","licenses":[{"type":"MIT"},{"type":"Apache-2.0"}]}"#,
            "x",
        )
        .unwrap();
        assert_eq!(p.license.as_deref(), Some("MIT OR Apache-2.0"));
        assert!(parse_package_json(br#"{"name":"c"}"#, "x").is_none());
        assert!(parse_package_json(b"{not json", "x").is_none());
    }
}
