//! The distribution, from an `os-release` file (`KEY=value` lines, values
//! optionally quoted).

use super::Distro;

/// `ID`, `VERSION_ID` and `PRETTY_NAME` of an os-release file; `None` without an `ID`.
pub(super) fn parse(text: &str) -> Option<Distro> {
    let mut id = None;
    let mut version_id = None;
    let mut pretty_name = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "ID" => id = Some(value.to_ascii_lowercase()),
            "VERSION_ID" => version_id = Some(value),
            "PRETTY_NAME" => pretty_name = Some(value),
            _ => {}
        }
    }
    Some(Distro {
        id: id?,
        version_id,
        pretty_name,
    })
}

/// Removes shell quoting: `"…"` (with `\` escapes) or `'…'`.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_and_alpine() {
        let d = parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n").unwrap();
        assert_eq!(d.id, "debian");
        assert_eq!(d.version_id.as_deref(), Some("12"));
        assert_eq!(
            d.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let d = parse("NAME='Alpine Linux'\nID=alpine\nVERSION_ID=3.20.1\n").unwrap();
        assert_eq!(
            (d.id.as_str(), d.version_id.as_deref()),
            ("alpine", Some("3.20.1"))
        );
        assert!(parse("NAME=x\n").is_none());
    }
}
