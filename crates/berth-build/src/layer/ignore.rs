//! `.berthignore`: which files of a build directory stay out of the layer.
//!
//! The syntax and meaning are those of Docker's `.dockerignore` (moby `patternmatcher`),
//! not gitignore's, which is why the matcher is written here rather than borrowed from a
//! gitignore crate:
//!
//! - one pattern per line; blank lines and lines starting with `#` are ignored; surrounding
//!   whitespace is trimmed;
//! - `!pattern` is an exception (re-includes what an earlier pattern excluded);
//! - patterns are cleaned like Go's `filepath.Clean` (`./a//b/` is `a/b`) and a leading `/`
//!   is dropped: every pattern is anchored at the build directory's root, so `foo` means
//!   `./foo` only, never `sub/foo` (gitignore would match it at any depth);
//! - `*` matches any run of characters other than `/`, `?` one character other than `/`,
//!   `[...]` a character class (`[^...]` negated, `a-z` ranges), `\` escapes the next
//!   character; `**` matches any number of directories including none (`**/x`, `a/**/b`),
//!   and a trailing `**` matches everything below;
//! - a pattern that matches a directory matches everything under it;
//! - the last pattern that matches a path decides: excluded, or re-included by `!`.
//!
//! One deliberate difference from moby: moby only compares a pattern against the ancestor
//! with the same number of components as the pattern, so `**/foo` fails to exclude
//! `a/b/foo/x` when exceptions force a walk into `a/b/foo`; here a pattern matches a path
//! when it matches the path or any of its ancestors, which is what the documentation of
//! both tools says.
//!
//! The `.berthignore` file itself is kept in the layer unless a pattern excludes it, as
//! Docker keeps `.dockerignore` in the build context (its documentation: "You can even use
//! the `.dockerignore` file to exclude the Dockerfile and `.dockerignore` files").

use std::fmt;

/// Why a `.berthignore` pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A literal character.
    Literal(char),
    /// `*`: any run of non-`/` characters.
    Star,
    /// `?`: one non-`/` character.
    Question,
    /// `[...]`: one non-`/` character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` or `**/` before more pattern: `(.*/)?`.
    AnyDirs,
    /// `**` at the end: `.*`.
    AnyRest,
}

/// One compiled line of a `.berthignore`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    exception: bool,
    tokens: Vec<Token>,
}

/// A compiled `.berthignore`: decides whether a path relative to the build directory
/// is excluded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

impl IgnoreMatcher {
    /// Compiles the text of a `.berthignore` file.
    ///
    /// # Errors
    ///
    /// [`PatternError`] for a malformed pattern (an unterminated `[` class or a trailing
    /// `\`).
    pub fn parse(text: &str) -> Result<IgnoreMatcher, PatternError> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(body);
            if cleaned.is_empty() {
                // `/` or `.`: Docker's Clean gives "." which matches nothing useful.
                continue;
            }
            let tokens = compile(&cleaned).map_err(|reason| PatternError {
                pattern: line.to_owned(),
                reason,
            })?;
            patterns.push(Pattern { exception, tokens });
        }
        Ok(IgnoreMatcher { patterns })
    }

    /// Whether any pattern is an exception (`!`): if none is, an excluded directory's
    /// contents can be skipped without looking at them.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the build directory, `/`-separated, no leading `/`)
    /// is excluded: the last pattern matching it or one of its ancestors decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let chars: Vec<char> = path.trim_matches('/').chars().collect();
        // Ends of the path and of each ancestor: "a/b/c" → "a", "a/b", "a/b/c".
        let mut ends: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(i, _)| i)
            .collect();
        ends.push(chars.len());
        let mut excluded = false;
        for pattern in &self.patterns {
            let hit = ends
                .iter()
                .any(|&end| matches(&pattern.tokens, chars.get(..end).unwrap_or(&[])));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

/// Lexical cleaning as Go's `filepath.Clean`, then the leading `/` dropped: duplicate
/// slashes and `.` components removed, `..` resolved (never above the root), no trailing
/// slash.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Turns a cleaned pattern into tokens, following moby's regexp translation.
fn compile(pattern: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '*' => {
                if chars.get(i) == Some(&'*') {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i >= chars.len() {
                        tokens.push(Token::AnyRest);
                    } else {
                        tokens.push(Token::AnyDirs);
                    }
                } else {
                    tokens.push(Token::Star);
                }
            }
            '?' => tokens.push(Token::Question),
            '\\' => {
                let escaped = chars.get(i).ok_or("trailing backslash")?;
                i += 1;
                tokens.push(Token::Literal(*escaped));
            }
            '[' => {
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut closed = false;
                while let Some(&c) = chars.get(i) {
                    i += 1;
                    if c == ']' && !ranges.is_empty() {
                        closed = true;
                        break;
                    }
                    let lo = if c == '\\' {
                        let e = chars.get(i).ok_or("trailing backslash")?;
                        i += 1;
                        *e
                    } else {
                        c
                    };
                    let hi = if chars.get(i) == Some(&'-')
                        && chars.get(i + 1).is_some_and(|c| *c != ']')
                    {
                        let mut h = *chars.get(i + 1).ok_or("unterminated range")?;
                        i += 2;
                        if h == '\\' {
                            h = *chars.get(i).ok_or("trailing backslash")?;
                            i += 1;
                        }
                        h
                    } else {
                        lo
                    };
                    if hi < lo {
                        return Err("character range is out of order");
                    }
                    ranges.push((lo, hi));
                }
                if !closed {
                    return Err("unterminated character class");
                }
                tokens.push(Token::Class { negated, ranges });
            }
            c => tokens.push(Token::Literal(c)),
        }
    }
    Ok(tokens)
}

/// Whether `tokens` match all of `s` (anchored at both ends), by backtracking.
fn matches(tokens: &[Token], s: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match first {
        Token::Literal(c) => s.first() == Some(c) && matches(rest, &s[1..]),
        Token::Question => s.first().is_some_and(|c| *c != '/') && matches(rest, &s[1..]),
        Token::Class { negated, ranges } => {
            s.first().is_some_and(|c| {
                *c != '/' && (ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
            }) && matches(rest, &s[1..])
        }
        Token::Star => {
            let mut k = 0;
            loop {
                if matches(rest, &s[k..]) {
                    return true;
                }
                match s.get(k) {
                    Some(c) if *c != '/' => k += 1,
                    _ => return false,
                }
            }
        }
        Token::AnyDirs => {
            // `(.*/)?`: nothing, or anything ending with a `/`.
            matches(rest, s)
                || s.iter()
                    .enumerate()
                    .any(|(j, c)| *c == '/' && matches(rest, &s[j + 1..]))
        }
        Token::AnyRest => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> IgnoreMatcher {
        IgnoreMatcher::parse(text).unwrap()
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let i = m("# comment\n\n  target  \n");
        assert!(i.is_excluded("target"));
        assert!(!i.is_excluded("# comment"));
    }

    #[test]
    fn patterns_are_anchored_at_the_root_unlike_gitignore() {
        let i = m("foo\n*.md");
        assert!(i.is_excluded("foo"));
        assert!(!i.is_excluded("sub/foo"));
        assert!(i.is_excluded("README.md"));
        assert!(!i.is_excluded("docs/README.md"));
    }

    #[test]
    fn leading_slash_and_dots_are_cleaned() {
        let i = m("/foo\n./bar/\nbaz//qux\na/../c");
        assert!(i.is_excluded("foo"));
        assert!(i.is_excluded("bar"));
        assert!(i.is_excluded("baz/qux"));
        assert!(i.is_excluded("c"));
        assert!(!i.is_excluded("a"));
    }

    #[test]
    fn directory_match_excludes_everything_below() {
        let i = m("node_modules");
        assert!(i.is_excluded("node_modules/x/y.js"));
        assert!(!i.is_excluded("node_modules2/x"));
    }

    #[test]
    fn star_does_not_cross_slashes() {
        let i = m("a/*.txt");
        assert!(i.is_excluded("a/b.txt"));
        assert!(!i.is_excluded("a/b/c.txt"));
        // `*` also matches the empty string.
        assert!(i.is_excluded("a/.txt"));
    }

    #[test]
    fn double_star_matches_zero_or_more_directories() {
        let i = m("**/*.log");
        assert!(i.is_excluded("x.log"));
        assert!(i.is_excluded("a/b/c/x.log"));
        assert!(!i.is_excluded("a/x.logs"));
        let j = m("a/**/b");
        assert!(j.is_excluded("a/b"));
        assert!(j.is_excluded("a/x/y/b"));
        assert!(j.is_excluded("a/x/b/inside"));
        assert!(!j.is_excluded("a/xb"));
        let k = m("build/**");
        assert!(k.is_excluded("build/x/y"));
        assert!(!k.is_excluded("build"));
        assert!(m("**").is_excluded("anything/at/all"));
    }

    #[test]
    fn question_mark_and_classes() {
        let i = m("file?.txt\nlog[0-9]\nx[^ab]");
        assert!(i.is_excluded("file1.txt"));
        assert!(!i.is_excluded("file12.txt"));
        assert!(!i.is_excluded("file/.txt"));
        assert!(i.is_excluded("log7"));
        assert!(!i.is_excluded("logx"));
        assert!(i.is_excluded("xc"));
        assert!(!i.is_excluded("xa"));
    }

    #[test]
    fn escapes() {
        let i = m(r"\*literal\?");
        assert!(i.is_excluded("*literal?"));
        assert!(!i.is_excluded("xliteralx"));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let i = m("*.md\n!README.md");
        assert!(i.is_excluded("CHANGES.md"));
        assert!(!i.is_excluded("README.md"));
        // Order matters: a later exclusion overrides an earlier exception.
        let j = m("!README.md\n*.md");
        assert!(j.is_excluded("README.md"));
        // An exception inside an excluded directory.
        let k = m("docs\n!docs/keep.txt");
        assert!(k.is_excluded("docs"));
        assert!(k.is_excluded("docs/other.txt"));
        assert!(!k.is_excluded("docs/keep.txt"));
        assert!(k.has_exceptions());
        // An exception naming a directory re-includes its contents.
        let l = m("*\n!src");
        assert!(!l.is_excluded("src/main.rs"));
        assert!(l.is_excluded("target"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(IgnoreMatcher::parse("[abc").is_err());
        assert!(IgnoreMatcher::parse("abc\\").is_err());
        assert!(IgnoreMatcher::parse("[z-a]").is_err());
    }

    #[test]
    fn root_only_patterns_are_dropped() {
        let i = m("/\n.");
        assert!(i.is_empty());
        assert!(!i.is_excluded("x"));
    }
}
