//! Layer entry names, checked and normalised before they touch the filesystem.

/// Longest entry or hard-link name accepted (bytes). Far beyond `PATH_MAX`; it bounds
/// how many directories one entry can make.
pub(super) const MAX_NAME_BYTES: usize = 16 * 1024;

/// What is wrong with an entry name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameProblem {
    /// Starts with `/`.
    Absolute,
    /// Has a `..` component.
    DotDot,
    /// Contains a NUL byte.
    Nul,
    /// Is empty.
    Empty,
    /// Longer than [`MAX_NAME_BYTES`].
    TooLong,
}

impl NameProblem {
    /// Whether the name tries to leave the root (as opposed to being malformed).
    pub(super) fn is_escape(self) -> bool {
        matches!(self, NameProblem::Absolute | NameProblem::DotDot)
    }

    /// Says what is wrong, for error messages.
    pub(super) fn describe(self) -> &'static str {
        match self {
            NameProblem::Absolute => "absolute path",
            NameProblem::DotDot => "path has a `..` component",
            NameProblem::Nul => "name contains a NUL byte",
            NameProblem::Empty => "empty name",
            NameProblem::TooLong => "name is too long",
        }
    }
}

/// A checked entry path relative to the root: components joined by single `/`, no
/// `.`, `..` or empty components. The empty path is the root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntryPath {
    rel: Vec<u8>,
}

impl EntryPath {
    /// Checks and normalises a name as written in a layer.
    pub(super) fn parse(raw: &[u8]) -> Result<EntryPath, NameProblem> {
        if raw.is_empty() {
            return Err(NameProblem::Empty);
        }
        if raw.len() > MAX_NAME_BYTES {
            return Err(NameProblem::TooLong);
        }
        if raw.contains(&0) {
            return Err(NameProblem::Nul);
        }
        if raw[0] == b'/' {
            return Err(NameProblem::Absolute);
        }
        let mut rel = Vec::with_capacity(raw.len());
        for comp in raw.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => return Err(NameProblem::DotDot),
                c => {
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(c);
                }
            }
        }
        Ok(EntryPath { rel })
    }

    /// The normalised path (`a/b/c`; empty for the root).
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.rel
    }

    /// Whether this is the root itself.
    pub(super) fn is_root(&self) -> bool {
        self.rel.is_empty()
    }

    /// The parent's path and the final component; `None` for the root.
    pub(super) fn split_last(&self) -> Option<(&[u8], &[u8])> {
        split_last(&self.rel)
    }
}

/// Splits a normalised relative path into parent and final component.
pub(super) fn split_last(rel: &[u8]) -> Option<(&[u8], &[u8])> {
    if rel.is_empty() {
        return None;
    }
    Some(match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&rel[..0], rel),
    })
}

/// `parent/name` for a normalised parent (which may be the empty root path).
pub(super) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parent.len() + 1 + name.len());
    v.extend_from_slice(parent);
    if !parent.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// The components of a normalised relative path.
pub(super) fn components(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.split(|b| *b == b'/').filter(|c| !c.is_empty())
}

/// Number of components (0 for the root).
pub(super) fn depth(rel: &[u8]) -> usize {
    components(rel).count()
}

/// The path and all its ancestors except the root, deepest first.
pub(super) fn self_and_ancestors(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut next = (!rel.is_empty()).then_some(rel);
    std::iter::from_fn(move || {
        let cur = next?;
        next = split_last(cur)
            .map(|(parent, _)| parent)
            .filter(|p| !p.is_empty());
        Some(cur)
    })
}

/// Lossy text for messages.
pub(super) fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cases() {
        let ok: &[(&[u8], &[u8])] = &[
            (b"etc/passwd", b"etc/passwd"),
            (b"./etc/passwd", b"etc/passwd"),
            (b"./", b""),
            (b".", b""),
            (b"etc//x/./y/", b"etc/x/y"),
            (b"a/.wh...", b"a/.wh..."),
            (b"...", b"..."),
            (b"..a/b..", b"..a/b.."),
        ];
        for (raw, want) in ok {
            let p = EntryPath::parse(raw).unwrap();
            assert_eq!(p.as_bytes(), *want, "{}", show(raw));
        }
        let bad: &[(&[u8], NameProblem)] = &[
            (b"", NameProblem::Empty),
            (b"/etc/passwd", NameProblem::Absolute),
            (b"/", NameProblem::Absolute),
            (b"..", NameProblem::DotDot),
            (b"../escape", NameProblem::DotDot),
            (b"a/../../b", NameProblem::DotDot),
            (b"a/..", NameProblem::DotDot),
            (b"a\0b", NameProblem::Nul),
        ];
        for (raw, want) in bad {
            assert_eq!(EntryPath::parse(raw), Err(*want), "{}", show(raw));
        }
        assert_eq!(
            EntryPath::parse(&vec![b'a'; MAX_NAME_BYTES + 1]),
            Err(NameProblem::TooLong)
        );
    }

    #[test]
    fn splitting_and_joining() {
        assert_eq!(split_last(b"a/b/c"), Some((&b"a/b"[..], &b"c"[..])));
        assert_eq!(split_last(b"c"), Some((&b""[..], &b"c"[..])));
        assert_eq!(split_last(b""), None);
        assert_eq!(join(b"", b"x"), b"x");
        assert_eq!(join(b"a/b", b"x"), b"a/b/x");
        assert_eq!(depth(b""), 0);
        assert_eq!(depth(b"a/b"), 2);
        let anc: Vec<&[u8]> = self_and_ancestors(b"a/b/c").collect();
        assert_eq!(anc, vec![&b"a/b/c"[..], b"a/b", b"a"]);
        assert_eq!(self_and_ancestors(b"").count(), 0);
    }
}
