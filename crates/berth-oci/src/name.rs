//! Repository names, tags and manifest references, per distribution-spec § Pulling
//! manifests ("`<name>` MUST match …", "`<reference>` as a tag MUST be at most 128
//! characters …").
//!
//! The grammars are small and regular, so they are matched by hand in one linear pass
//! rather than through a regex engine.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (clients limit host + `/` + name to 255).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted.
pub const MAX_TAG_LEN: usize = 128;

/// Why a repository name, tag or reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Name does not match the spec's `<name>` grammar.
    #[error(
        "repository name {0:?} does not match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*"
    )]
    BadName(String),
    /// Name longer than [`MAX_NAME_LEN`].
    #[error("repository name is {0} characters long; at most {MAX_NAME_LEN} are allowed")]
    NameTooLong(usize),
    /// Tag does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    BadTag(String),
    /// Reference contains `:` but is not a valid digest.
    #[error(transparent)]
    BadDigest(#[from] DigestError),
}

/// A validated repository name such as `library/alpine`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or `-+`, always followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong(s.len()));
        }
        if s.split('/').all(valid_component) {
            Ok(RepoName(s.to_owned()))
        } else {
            Err(NameError::BadName(s.to_owned()))
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A validated tag such as `v1.2.3`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if first_ok && rest_ok && b.len() <= MAX_TAG_LEN {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::BadTag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The `<reference>` of a manifest URL: a tag or a digest, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag.
    Tag(Tag),
    /// A digest.
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("alpine", true)]
    #[case("library/alpine", true)]
    #[case("a/b/c/d", true)]
    #[case("my-app", true)]
    #[case("my--app", true)]
    #[case("my__app", true)]
    #[case("my.app_x-y", true)]
    #[case("a0/b1.c2", true)]
    #[case("my___app", false)]
    #[case("My/app", false)]
    #[case("-app", false)]
    #[case("app-", false)]
    #[case("a//b", false)]
    #[case("/a", false)]
    #[case("a/", false)]
    #[case("a..b", false)]
    #[case("a._b", false)]
    #[case("", false)]
    #[case("a b", false)]
    #[case("a:b", false)]
    fn repo_names(#[case] input: &str, #[case] valid: bool) {
        assert_eq!(input.parse::<RepoName>().is_ok(), valid, "{input}");
    }

    #[test]
    fn name_length_limit() {
        let ok = "a".repeat(MAX_NAME_LEN);
        assert!(ok.parse::<RepoName>().is_ok());
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            long.parse::<RepoName>(),
            Err(NameError::NameTooLong(MAX_NAME_LEN + 1))
        );
    }

    #[rstest]
    #[case("latest", true)]
    #[case("_x", true)]
    #[case("V1.2.3-rc_1", true)]
    #[case(".x", false)]
    #[case("-x", false)]
    #[case("", false)]
    #[case("a/b", false)]
    #[case("a+b", false)]
    fn tags(#[case] input: &str, #[case] valid: bool) {
        assert_eq!(input.parse::<Tag>().is_ok(), valid, "{input}");
    }

    #[test]
    fn tag_length_limit() {
        assert!("a".repeat(128).parse::<Tag>().is_ok());
        assert!("a".repeat(129).parse::<Tag>().is_err());
    }

    #[test]
    fn references() {
        assert!(matches!("v1".parse::<Reference>(), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!(matches!(
            "sha256:zz".parse::<Reference>(),
            Err(NameError::BadDigest(_))
        ));
    }
}
