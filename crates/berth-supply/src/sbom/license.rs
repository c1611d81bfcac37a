//! Declared licences as SPDX licence expressions: a declared licence is used
//! as SPDX only when it parses as an expression (`AND`, `OR`, `WITH`,
//! parentheses; operators in either case) whose licence and exception ids are
//! all on the embedded SPDX list (`spdx-license-ids.txt`,
//! `spdx-exception-ids.txt`). Ids are matched case-insensitively and written in
//! their canonical case; the deprecated GNU ids (`GPL-2.0+`…), Debian's short
//! names (`GPL-2+`, `Expat`…) and common spellings in Python and npm metadata
//! (`MIT License`, `Apache 2.0`, `BSD 3-Clause`…) are mapped to current ids.
//! Anything else (`LicenseRef-…` included: it would need its text) is not
//! SPDX, and the writers fall back to NOASSERTION or a licence name.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A declared licence that is a valid SPDX expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SpdxLicence {
    /// The expression, in canonical form.
    pub expression: String,
    /// Whether it is a single licence id (no operator).
    pub single: bool,
}

/// The longest declared licence considered for parsing.
const MAX_LEN: usize = 1000;
/// The deepest parenthesis nesting accepted.
const MAX_DEPTH: usize = 16;

static LICENCES: LazyLock<HashMap<String, &'static str>> =
    LazyLock::new(|| id_map(include_str!("spdx-license-ids.txt")));
static EXCEPTIONS: LazyLock<HashMap<String, &'static str>> =
    LazyLock::new(|| id_map(include_str!("spdx-exception-ids.txt")));

fn id_map(list: &'static str) -> HashMap<String, &'static str> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|id| (id.to_ascii_lowercase(), id))
        .collect()
}

/// Names that are not SPDX ids but say which SPDX licence they mean
/// (lowercase, single spaces).
const ALIASES: &[(&str, &str)] = &[
    // Deprecated SPDX ids.
    ("gpl-1.0", "GPL-1.0-only"),
    ("gpl-1.0+", "GPL-1.0-or-later"),
    ("gpl-2.0", "GPL-2.0-only"),
    ("gpl-2.0+", "GPL-2.0-or-later"),
    ("gpl-3.0", "GPL-3.0-only"),
    ("gpl-3.0+", "GPL-3.0-or-later"),
    ("lgpl-2.0", "LGPL-2.0-only"),
    ("lgpl-2.0+", "LGPL-2.0-or-later"),
    ("lgpl-2.1", "LGPL-2.1-only"),
    ("lgpl-2.1+", "LGPL-2.1-or-later"),
    ("lgpl-3.0", "LGPL-3.0-only"),
    ("lgpl-3.0+", "LGPL-3.0-or-later"),
    ("agpl-1.0", "AGPL-1.0-only"),
    ("agpl-3.0", "AGPL-3.0-only"),
    ("gfdl-1.1", "GFDL-1.1-only"),
    ("gfdl-1.2", "GFDL-1.2-only"),
    ("gfdl-1.3", "GFDL-1.3-only"),
    // Debian (DEP-5) short names and old Alpine spellings.
    ("gpl-1", "GPL-1.0-only"),
    ("gpl-1+", "GPL-1.0-or-later"),
    ("gpl-2", "GPL-2.0-only"),
    ("gpl-2+", "GPL-2.0-or-later"),
    ("gpl-3", "GPL-3.0-only"),
    ("gpl-3+", "GPL-3.0-or-later"),
    ("gpl2", "GPL-2.0-only"),
    ("gpl2+", "GPL-2.0-or-later"),
    ("gpl3", "GPL-3.0-only"),
    ("gpl3+", "GPL-3.0-or-later"),
    ("gplv2", "GPL-2.0-only"),
    ("gplv2+", "GPL-2.0-or-later"),
    ("gplv3", "GPL-3.0-only"),
    ("gplv3+", "GPL-3.0-or-later"),
    ("lgpl-2", "LGPL-2.0-only"),
    ("lgpl-2+", "LGPL-2.0-or-later"),
    ("lgpl2", "LGPL-2.0-only"),
    ("lgpl2+", "LGPL-2.0-or-later"),
    ("lgpl2.1", "LGPL-2.1-only"),
    ("lgpl2.1+", "LGPL-2.1-or-later"),
    ("lgplv2.1", "LGPL-2.1-only"),
    ("lgplv2.1+", "LGPL-2.1-or-later"),
    ("lgpl-3", "LGPL-3.0-only"),
    ("lgpl-3+", "LGPL-3.0-or-later"),
    ("lgplv3", "LGPL-3.0-only"),
    ("lgplv3+", "LGPL-3.0-or-later"),
    ("agpl-3", "AGPL-3.0-only"),
    ("agpl-3+", "AGPL-3.0-or-later"),
    ("expat", "MIT"),
    ("apache-2", "Apache-2.0"),
    ("mpl-2", "MPL-2.0"),
    // Python classifiers and common spellings.
    ("mit license", "MIT"),
    ("the mit license", "MIT"),
    ("mit license (mit)", "MIT"),
    ("apache 2.0", "Apache-2.0"),
    ("apache 2", "Apache-2.0"),
    ("apache2", "Apache-2.0"),
    ("apache license 2.0", "Apache-2.0"),
    ("apache license, version 2.0", "Apache-2.0"),
    ("apache license version 2.0", "Apache-2.0"),
    ("apache software license 2.0", "Apache-2.0"),
    ("apache-2.0 license", "Apache-2.0"),
    ("bsd 3-clause", "BSD-3-Clause"),
    ("bsd-3", "BSD-3-Clause"),
    ("3-clause bsd", "BSD-3-Clause"),
    ("new bsd", "BSD-3-Clause"),
    ("new bsd license", "BSD-3-Clause"),
    ("modified bsd", "BSD-3-Clause"),
    ("modified bsd license", "BSD-3-Clause"),
    ("bsd 3-clause license", "BSD-3-Clause"),
    ("bsd 2-clause", "BSD-2-Clause"),
    ("bsd-2", "BSD-2-Clause"),
    ("simplified bsd", "BSD-2-Clause"),
    ("bsd 2-clause license", "BSD-2-Clause"),
    ("isc license", "ISC"),
    ("isc license (iscl)", "ISC"),
    ("python software foundation license", "PSF-2.0"),
    ("psf", "PSF-2.0"),
    ("psfl", "PSF-2.0"),
    ("mozilla public license 2.0 (mpl 2.0)", "MPL-2.0"),
    ("mpl 2.0", "MPL-2.0"),
    ("the unlicense (unlicense)", "Unlicense"),
    ("zlib/libpng license", "Zlib"),
    ("boost software license 1.0 (bsl-1.0)", "BSL-1.0"),
    ("eclipse public license 2.0 (epl-2.0)", "EPL-2.0"),
    (
        "cc0 1.0 universal (cc0 1.0) public domain dedication",
        "CC0-1.0",
    ),
    ("gnu general public license v2 (gplv2)", "GPL-2.0-only"),
    (
        "gnu general public license v2 or later (gplv2+)",
        "GPL-2.0-or-later",
    ),
    ("gnu general public license v3 (gplv3)", "GPL-3.0-only"),
    (
        "gnu general public license v3 or later (gplv3+)",
        "GPL-3.0-or-later",
    ),
    (
        "gnu lesser general public license v2 (lgplv2)",
        "LGPL-2.0-only",
    ),
    (
        "gnu lesser general public license v2 or later (lgplv2+)",
        "LGPL-2.0-or-later",
    ),
    (
        "gnu lesser general public license v3 (lgplv3)",
        "LGPL-3.0-only",
    ),
    (
        "gnu lesser general public license v3 or later (lgplv3+)",
        "LGPL-3.0-or-later",
    ),
    ("gnu affero general public license v3", "AGPL-3.0-only"),
    (
        "gnu affero general public license v3 or later (agplv3+)",
        "AGPL-3.0-or-later",
    ),
];

/// The licence id a term stands for: an alias, or an id on the list.
fn licence_id(term: &str) -> Option<&'static str> {
    let key = term
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map(|(_, id)| *id)
        .or_else(|| LICENCES.get(&key).copied())
}

/// The exception id a term stands for: an id on the list, also when written
/// the Debian way (`Linux-syscall-note exception`, `LLVM exception`).
fn exception_id(term: &str) -> Option<&'static str> {
    let key = term
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let bare = key.strip_suffix(" exception");
    [
        Some(key.clone()),
        bare.map(str::to_owned),
        bare.map(|b| format!("{b}-exception")),
    ]
    .into_iter()
    .flatten()
    .find_map(|k| EXCEPTIONS.get(&k).copied())
}

/// The declared licence as an SPDX expression, if it is one (see the module doc).
pub(super) fn to_spdx(declared: &str) -> Option<SpdxLicence> {
    let declared = declared.trim();
    if declared.is_empty() || declared.len() > MAX_LEN {
        return None;
    }
    if let Some(id) = licence_id(declared) {
        return Some(SpdxLicence {
            expression: id.to_owned(),
            single: true,
        });
    }
    let tokens = tokenise(declared);
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        depth: 0,
    };
    let expression = parser.or_expr()?;
    if parser.pos != tokens.len() {
        return None;
    }
    let single = tokens.len() == 1;
    Some(SpdxLicence { expression, single })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    With,
    /// One or more words between operators (a licence name may have spaces;
    /// a parenthesised part right after a word belongs to the name).
    Term(String),
}

fn tokenise(s: &str) -> Vec<Token> {
    let mut lexemes: Vec<&str> = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() || c == '(' || c == ')' {
            if let Some(st) = start.take() {
                lexemes.push(&s[st..i]);
            }
            if c != ' ' && !c.is_whitespace() {
                lexemes.push(&s[i..i + 1]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        lexemes.push(&s[st..]);
    }
    let mut tokens = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let flush = |words: &mut Vec<String>, tokens: &mut Vec<Token>| {
        if !words.is_empty() {
            tokens.push(Token::Term(words.join(" ")));
            words.clear();
        }
    };
    let mut i = 0;
    while i < lexemes.len() {
        let lexeme = lexemes[i];
        i += 1;
        match lexeme {
            "(" if !words.is_empty() => {
                // `Name (ABBR)`: the parenthesised part is part of the name.
                let mut depth = 1usize;
                let mut part = String::from("(");
                while i < lexemes.len() && depth > 0 {
                    let l = lexemes[i];
                    i += 1;
                    match l {
                        "(" => depth += 1,
                        ")" => depth -= 1,
                        _ => {}
                    }
                    if !(part.ends_with('(') || l == ")") {
                        part.push(' ');
                    }
                    part.push_str(l);
                }
                words.push(part);
            }
            "(" => {
                flush(&mut words, &mut tokens);
                tokens.push(Token::Open);
            }
            ")" => {
                flush(&mut words, &mut tokens);
                tokens.push(Token::Close);
            }
            w if w == "AND" || w == "and" => {
                flush(&mut words, &mut tokens);
                tokens.push(Token::And);
            }
            w if w == "OR" || w == "or" => {
                flush(&mut words, &mut tokens);
                tokens.push(Token::Or);
            }
            w if w == "WITH" || w == "with" => {
                flush(&mut words, &mut tokens);
                tokens.push(Token::With);
            }
            w => words.push(w.to_owned()),
        }
    }
    flush(&mut words, &mut tokens);
    tokens
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn eat(&mut self, t: &Token) -> bool {
        if self.tokens.get(self.pos) == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or_expr(&mut self) -> Option<String> {
        let mut out = self.and_expr()?;
        while self.eat(&Token::Or) {
            let right = self.and_expr()?;
            out = format!("{out} OR {right}");
        }
        Some(out)
    }

    fn and_expr(&mut self) -> Option<String> {
        let mut out = self.primary()?;
        while self.eat(&Token::And) {
            let right = self.primary()?;
            out = format!("{out} AND {right}");
        }
        Some(out)
    }

    fn primary(&mut self) -> Option<String> {
        match self.tokens.get(self.pos)? {
            Token::Open => {
                self.pos += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                let inner = self.or_expr()?;
                if !self.eat(&Token::Close) {
                    return None;
                }
                self.depth -= 1;
                Some(format!("({inner})"))
            }
            Token::Term(term) => {
                self.pos += 1;
                let id = licence_id(term)?;
                if self.eat(&Token::With) {
                    let Some(Token::Term(exception)) = self.tokens.get(self.pos) else {
                        return None;
                    };
                    self.pos += 1;
                    let exception = exception_id(exception)?;
                    return Some(format!("{id} WITH {exception}"));
                }
                Some(id.to_owned())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spdx(s: &str) -> Option<(String, bool)> {
        to_spdx(s).map(|l| (l.expression, l.single))
    }

    #[test]
    fn valid_expressions_are_canonicalised() {
        assert_eq!(spdx("MIT"), Some(("MIT".into(), true)));
        assert_eq!(spdx("mit"), Some(("MIT".into(), true)));
        assert_eq!(spdx("MIT License"), Some(("MIT".into(), true)));
        assert_eq!(spdx("GPL-2+"), Some(("GPL-2.0-or-later".into(), true)));
        assert_eq!(
            spdx("MIT OR Apache-2.0"),
            Some(("MIT OR Apache-2.0".into(), false))
        );
        assert_eq!(
            spdx("(mit or apache-2.0) and bsd-3-clause"),
            Some(("(MIT OR Apache-2.0) AND BSD-3-Clause".into(), false))
        );
        assert_eq!(
            spdx("GPL-2.0-or-later WITH Classpath-exception-2.0"),
            Some((
                "GPL-2.0-or-later WITH Classpath-exception-2.0".into(),
                false
            ))
        );
        assert_eq!(
            spdx("GPL-2 with Linux-syscall-note exception"),
            Some(("GPL-2.0-only WITH Linux-syscall-note".into(), false))
        );
        assert_eq!(
            spdx("GPL-2+ with LLVM exception"),
            Some(("GPL-2.0-or-later WITH LLVM-exception".into(), false))
        );
        assert_eq!(
            spdx("MIT License OR Apache Software License 2.0"),
            Some(("MIT OR Apache-2.0".into(), false))
        );
        assert_eq!(
            spdx("Mozilla Public License 2.0 (MPL 2.0) OR MIT"),
            Some(("MPL-2.0 OR MIT".into(), false))
        );
        assert_eq!(
            spdx("Zlib AND (GPL-2+ or Artistic-1.0-Perl)"),
            Some((
                "Zlib AND (GPL-2.0-or-later OR Artistic-1.0-Perl)".into(),
                false
            ))
        );
    }

    #[test]
    fn anything_else_is_not_spdx() {
        for s in [
            "",
            "BSD",
            "Apache Software License",
            "public-domain",
            "custom",
            "LicenseRef-foo",
            "MIT AND",
            "(MIT",
            "MIT)",
            "MIT WITH MIT",
            "MIT WITH",
            "Apache-2.0+",
            "MIT (see LICENSE file)",
            "GPL-2.0-only WITH",
            "AND",
            "MIT, Apache-2.0",
        ] {
            assert_eq!(spdx(s), None, "{s:?}");
        }
        let deep = format!("{}MIT{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(spdx(&deep), None);
        assert_eq!(spdx(&"MIT OR ".repeat(300)), None);
    }
}
