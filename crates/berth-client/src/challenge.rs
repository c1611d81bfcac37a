//! `WWW-Authenticate` header values (RFC 9110 §11.6.1, formerly RFC 7235 §4.1) as
//! registries send them with a `401` (the Docker token auth flow answers
//! `Bearer realm="…",service="…",scope="…"`).
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! The comma separates both challenges and the parameters of one challenge; an
//! element of the form `name = value` belongs to the challenge before it, anything
//! else starts a new challenge. The parser is lenient where real servers are sloppy
//! (empty list elements, odd whitespace, unquoted values containing `/` or `:`,
//! a missing space after the scheme before a comma) and never fails: what cannot be
//! parsed is skipped up to the next comma, and an unterminated quoted string ends the
//! header. A token68 is stored under the parameter name `""`.

use std::collections::BTreeMap;

/// One authentication challenge: a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme, ASCII-lowercased (`bearer`, `basic`, …).
    pub scheme: String,
    /// The parameters, names ASCII-lowercased; a token68 is stored under `""`. When a
    /// name occurs twice (which RFC 9110 forbids), the first value is kept.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// The value of parameter `name` (matched case-insensitively).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Whether this is a `Bearer` challenge (the Docker token auth flow).
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    /// Whether this is a `Basic` challenge.
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// Parses one `WWW-Authenticate` header value into its challenges, in order.
///
/// Never fails: malformed parts are skipped and whatever parsed is returned (an
/// empty vector for a value with no recognisable challenge). Several
/// `WWW-Authenticate` headers are parsed one by one and their results concatenated.
pub fn parse_challenges(header_value: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header_value,
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_separators();
        if p.at_end() {
            break;
        }
        let element = p.pos;
        let scheme = p.token();
        p.skip_ws();
        if scheme.is_empty() || p.peek() == Some(b'=') {
            // Not a challenge (a stray `=`, quote, a parameter with no scheme before
            // it, …): skip this list element.
            p.pos = element;
            p.skip_element();
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        if let Some(token68) = p.token68() {
            challenge.params.insert(String::new(), token68.to_owned());
            out.push(challenge);
            continue;
        }
        let complete = p.params(&mut challenge.params);
        out.push(challenge);
        if !complete {
            break;
        }
    }
    out
}

/// A cursor over the header value. Every delimiter it looks for is ASCII, so byte
/// positions it stops at are always `char` boundaries.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// Skips spaces and tabs (RFC 9110 OWS/BWS).
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and commas (empty list elements are allowed).
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// Takes the longest run of bytes satisfying `f` (possibly empty).
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    fn token(&mut self) -> &'a str {
        self.take_while(is_tchar)
    }

    /// A token68 standing alone as the challenge's credentials: the run of token68
    /// characters and trailing `=` must be followed by the end or a comma. Restores
    /// the position and answers `None` otherwise.
    fn token68(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let body = self.take_while(is_token68_char);
        if body.is_empty() {
            self.pos = start;
            return None;
        }
        self.take_while(|b| b == b'=');
        let end = self.pos;
        self.skip_ws();
        let alone = match self.peek() {
            None => true,
            // `Foo a=, b=c` is a parameter list with an (invalid) empty value, not
            // a token68 followed by garbage.
            Some(b',') => !self.param_follows(),
            Some(_) => false,
        };
        if alone {
            self.s.get(start..end)
        } else {
            self.pos = start;
            None
        }
    }

    /// Whether the next list element starts with `token BWS "="` (a parameter rather
    /// than a new challenge). Does not move the position.
    fn param_follows(&mut self) -> bool {
        let start = self.pos;
        self.skip_separators();
        let is_param = !self.token().is_empty() && {
            self.skip_ws();
            self.peek() == Some(b'=')
        };
        self.pos = start;
        is_param
    }

    /// Reads `name = value` parameters into `params` until the next element is not a
    /// parameter (then the position is left at its start) or the end. Returns `false`
    /// when the header ended inside a quoted string, so parsing must stop.
    fn params(&mut self, params: &mut BTreeMap<String, String>) -> bool {
        loop {
            self.skip_separators();
            let element = self.pos;
            let name = self.token();
            if name.is_empty() {
                if self.at_end() {
                    return true;
                }
                // Garbage where a parameter or scheme should start: skip the element.
                self.skip_element();
                continue;
            }
            self.skip_ws();
            if self.peek() != Some(b'=') {
                // `name` is the scheme of the next challenge.
                self.pos = element;
                return true;
            }
            self.pos += 1;
            self.skip_ws();
            let value = if self.peek() == Some(b'"') {
                match self.quoted_string() {
                    Some(v) => v,
                    None => return false,
                }
            } else {
                // RFC 9110 wants a token; accept anything up to a delimiter so that
                // unquoted URLs (`realm=https://…`) still work.
                self.take_while(|b| !matches!(b, b',' | b' ' | b'\t' | b'"'))
                    .to_owned()
            };
            params.entry(name.to_ascii_lowercase()).or_insert(value);
            self.skip_ws();
            match self.peek() {
                None | Some(b',') => {}
                // Trailing garbage after the value: drop the rest of the element.
                Some(_) => self.skip_element(),
            }
        }
    }

    /// A quoted-string starting at the current `"`, unescaped. `None` when it is not
    /// terminated (the position is then at the end).
    fn quoted_string(&mut self) -> Option<String> {
        let rest = self.rest();
        let mut value = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Some(value);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                c => value.push(c),
            }
        }
        self.pos = self.s.len();
        None
    }

    /// Skips to the next comma outside a quoted string, always advancing by at least
    /// one byte.
    fn skip_element(&mut self) {
        if self.at_end() {
            return;
        }
        if self.peek() != Some(b'"') {
            self.pos += 1;
        }
        while let Some(b) = self.peek() {
            match b {
                b',' => return,
                b'"' => {
                    if self.quoted_string().is_none() {
                        return;
                    }
                }
                _ => self.pos += 1,
            }
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// RFC 9110 `token68` characters, without the trailing `=` padding.
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the expected challenge list from `(scheme, [(name, value)])`.
    fn ch(list: &[(&str, &[(&str, &str)])]) -> Vec<Challenge> {
        list.iter()
            .map(|(scheme, params)| Challenge {
                scheme: (*scheme).to_owned(),
                params: params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            })
            .collect()
    }

    type Case = (
        &'static str,
        &'static [(&'static str, &'static [(&'static str, &'static str)])],
    );

    /// Well-formed (or tolerably sloppy) header values and what they mean.
    const GOOD: &[Case] = &[
        // The exact example from the Docker token auth spec.
        (
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
            &[(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:samalba/my-app:pull,push"),
                ],
            )],
        ),
        (r#"Basic realm="x""#, &[("basic", &[("realm", "x")])]),
        (
            r#"Basic realm="x", Bearer realm="y",scope="a b""#,
            &[
                ("basic", &[("realm", "x")]),
                ("bearer", &[("realm", "y"), ("scope", "a b")]),
            ],
        ),
        // Case of scheme and names is folded; values are kept.
        (
            r#"BEARER Realm="R",SERVICE=Svc"#,
            &[("bearer", &[("realm", "R"), ("service", "Svc")])],
        ),
        // Escapes, and commas / `=` inside quotes.
        (
            r#"Bearer realm="a\"b\\c\d", scope="x=1,y=2""#,
            &[("bearer", &[("realm", r#"a"b\cd"#), ("scope", "x=1,y=2")])],
        ),
        // Empty quoted value.
        (r#"Bearer realm="""#, &[("bearer", &[("realm", "")])]),
        // Odd whitespace: BWS around `=`, tabs, leading/trailing spaces, empty elements.
        (
            " \tBearer   realm = \"r\" ,\t, service\t=\tsvc ,  ",
            &[("bearer", &[("realm", "r"), ("service", "svc")])],
        ),
        (
            ",, Basic realm=\"a\" ,, , Bearer realm=\"b\"",
            &[("basic", &[("realm", "a")]), ("bearer", &[("realm", "b")])],
        ),
        // Unquoted values, including a URL (not a token, but servers send it).
        (
            "Bearer realm=https://auth.example.com/token,service=reg",
            &[(
                "bearer",
                &[
                    ("realm", "https://auth.example.com/token"),
                    ("service", "reg"),
                ],
            )],
        ),
        // Scheme alone, and several of them.
        ("Negotiate", &[("negotiate", &[])]),
        (
            "Negotiate, Basic realm=\"x\"",
            &[("negotiate", &[]), ("basic", &[("realm", "x")])],
        ),
        // token68 forms.
        (
            "Negotiate YIIGhgYGKwYBBQUC==",
            &[("negotiate", &[("", "YIIGhgYGKwYBBQUC==")])],
        ),
        (
            "Newauth abc/+._~-=, Basic realm=\"x\"",
            &[
                ("newauth", &[("", "abc/+._~-=")]),
                ("basic", &[("realm", "x")]),
            ],
        ),
        ("Foo a=", &[("foo", &[("", "a=")])]),
        // Duplicate parameter: the first wins.
        (
            r#"Bearer realm="a", realm="b""#,
            &[("bearer", &[("realm", "a")])],
        ),
        // Non-ASCII inside quotes survives.
        (
            r#"Basic realm="Bücher ☃""#,
            &[("basic", &[("realm", "Bücher ☃")])],
        ),
        // RFC 9110 §11.6.1 example.
        (
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
            &[
                (
                    "newauth",
                    &[
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", r#"Login to "apps""#),
                    ],
                ),
                ("basic", &[("realm", "simple")]),
            ],
        ),
    ];

    /// Malformed values: whatever parsed is returned, and nothing panics.
    const BAD: &[Case] = &[
        ("", &[]),
        ("   ", &[]),
        (",,,", &[]),
        ("=", &[]),
        ("\"", &[]),
        ("\"unterminated, Basic realm=x", &[]),
        ("=== , Basic realm=x", &[("basic", &[("realm", "x")])]),
        // Unterminated quoted string ends the header; earlier parameters are kept.
        (
            r#"Bearer service="s", realm="https://x"#,
            &[("bearer", &[("service", "s")])],
        ),
        (r#"Bearer realm="a\"#, &[("bearer", &[])]),
        // Garbage after a value drops the rest of that element only.
        (
            r#"Bearer realm="r" junk, service="s""#,
            &[("bearer", &[("realm", "r"), ("service", "s")])],
        ),
        // Garbage where a parameter should be.
        (
            r#"Bearer realm="r", "oops", service="s""#,
            &[("bearer", &[("realm", "r"), ("service", "s")])],
        ),
        (
            r#"Bearer realm="r", =x, service=s"#,
            &[("bearer", &[("realm", "r"), ("service", "s")])],
        ),
        // Empty unquoted value.
        (
            "Bearer realm=, service=s",
            &[("bearer", &[("realm", ""), ("service", "s")])],
        ),
        // Alone, `realm=` reads as a token68 (an auth-param value cannot be empty).
        ("Bearer realm=", &[("bearer", &[("", "realm=")])]),
        // A parameter with no scheme before it is skipped.
        ("realm=x, Basic realm=y", &[("basic", &[("realm", "y")])]),
        ("realm = \"x,y\", Basic", &[("basic", &[])]),
        // `a` is not followed by `=`, so it is the next challenge's scheme.
        ("Basic a b", &[("basic", &[]), ("a", &[("", "b")])]),
        // Garbage up to the next comma is skipped.
        ("@@@ Basic, Bearer", &[("bearer", &[])]),
    ];

    #[test]
    fn good_inputs() {
        for (input, expected) in GOOD {
            assert_eq!(parse_challenges(input), ch(expected), "input {input:?}");
        }
    }

    #[test]
    fn bad_inputs_return_what_parsed() {
        for (input, expected) in BAD {
            assert_eq!(parse_challenges(input), ch(expected), "input {input:?}");
        }
    }

    #[test]
    fn accessors() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert!(c.is_bearer());
        assert!(!c.is_basic());
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("SERVICE"), Some("registry.docker.io"));
        assert_eq!(
            c.param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
        assert_eq!(c.param("missing"), None);

        let b = parse_challenges("basic realm=x");
        assert!(b[0].is_basic());
        assert!(!b[0].is_bearer());
    }

    /// Every prefix and many byte-level mutations of the inputs above parse without
    /// panicking (slicing at a non-boundary, looping forever, …).
    #[test]
    fn never_panics_on_prefixes_and_mutations() {
        let inputs = GOOD.iter().chain(BAD).map(|(s, _)| *s);
        let specials = ['"', '\\', ',', '=', ' ', '\t', 'é', '\0'];
        for input in inputs {
            for (i, _) in input.char_indices() {
                let _ = parse_challenges(&input[..i]);
                let _ = parse_challenges(&input[i..]);
                for sp in specials {
                    let mut m = input.to_owned();
                    m.insert(i, sp);
                    let _ = parse_challenges(&m);
                }
            }
        }
    }
}
