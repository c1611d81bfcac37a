//! The `Key: value` paragraph format shared by dpkg's database, DEP-5
//! copyright files and Python's core metadata (`METADATA`, `PKG-INFO`).

/// One paragraph: its fields in order, continuation lines joined with `\n`.
#[derive(Debug, Default)]
pub(super) struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    /// The first value of `key` (matched case-insensitively).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (matched case-insensitively), in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, trimmed, if not empty.
    pub fn get_nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Every paragraph of `text` (paragraphs are separated by blank lines).
pub(super) fn stanzas(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut current = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        push_line(&mut current, line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The header paragraph only (Python metadata: the body after the first blank
/// line is the long description).
pub(super) fn headers(text: &str) -> Stanza {
    let mut current = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        push_line(&mut current, line);
    }
    current
}

fn push_line(stanza: &mut Stanza, line: &str) {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.starts_with([' ', '\t']) {
        if let Some((_, value)) = stanza.fields.last_mut() {
            value.push('\n');
            value.push_str(line.trim());
        }
        return;
    }
    if line.starts_with('#') {
        return;
    }
    if let Some((key, value)) = line.split_once(':') {
        stanza
            .fields
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_continuations() {
        let text = "Package: a\nDescription: one\n two\n .\n\n\nPackage: b\r\nVersion: 1:2\r\n";
        let s = stanzas(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("package"), Some("a"));
        assert_eq!(s[0].get("Description"), Some("one\ntwo\n."));
        assert_eq!(s[1].get("Version"), Some("1:2"));
        let h = headers("Name: x\nClassifier: a\nClassifier: b\n\nName: body\n");
        assert_eq!(h.get_all("classifier").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.get("Name"), Some("x"));
    }
}
