//! Repository name patterns (globs) used by access rules and lifecycle policies.

/// One `/`-separated component of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more whole components.
    AnyComponents,
    /// A component made of literal characters, `*` and `?`.
    Component(Vec<Token>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: zero or more characters within the component.
    Star,
    /// `?`: exactly one character.
    Question,
}

/// A compiled repository glob: `*` and `?` within one `/`-separated component,
/// `**` as a whole component matching zero or more components.
///
/// Hand-written rather than `globset`: the semantics wanted are exactly
/// "`*`/`?` within one component, `**` only as a whole component matching
/// zero or more components", with no character classes, braces or escapes
/// (none of which can appear in OCI repository names), and the trailing
/// `/**` must also match the bare prefix (`team-a/**` matches `team-a`),
/// which is a few lines here and awkward to express through globset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoPattern {
    text: String,
    segments: Vec<Segment>,
    /// Specificity: (length in characters, no wildcard at all).
    rank: (usize, bool),
}

impl RepoPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Specificity: (length in characters, no wildcard at all); greater is more specific.
    pub fn rank(&self) -> (usize, bool) {
        self.rank
    }

    /// Compile `text`; the error says what is wrong with it.
    pub fn compile(text: &str) -> Result<RepoPattern, String> {
        if text.is_empty() {
            return Err("empty pattern".to_owned());
        }
        let mut segments = Vec::new();
        for component in text.split('/') {
            if component.is_empty() {
                return Err("empty path component (leading, trailing or double '/')".to_owned());
            }
            if component == "**" {
                // Consecutive `**` are equivalent to one.
                if segments.last() != Some(&Segment::AnyComponents) {
                    segments.push(Segment::AnyComponents);
                }
                continue;
            }
            if component.contains("**") {
                return Err("'**' must be a whole path component".to_owned());
            }
            if let Some(c) = component
                .chars()
                .find(|c| c.is_control() || c.is_whitespace())
            {
                return Err(format!("character {c:?} not allowed"));
            }
            let tokens = component
                .chars()
                .map(|c| match c {
                    '*' => Token::Star,
                    '?' => Token::Question,
                    c => Token::Literal(c),
                })
                .collect();
            segments.push(Segment::Component(tokens));
        }
        let literal = !text.contains(['*', '?']);
        Ok(RepoPattern {
            text: text.to_owned(),
            segments,
            rank: (text.chars().count(), literal),
        })
    }

    /// Whether `repo` matches.
    pub fn matches(&self, repo: &str) -> bool {
        let components: Vec<&str> = repo.split('/').collect();
        match_segments(&self.segments, &components)
    }
}

fn match_segments(segments: &[Segment], components: &[&str]) -> bool {
    match segments.split_first() {
        None => components.is_empty(),
        Some((Segment::AnyComponents, rest)) => {
            (0..=components.len()).any(|skip| match_segments(rest, &components[skip..]))
        }
        Some((Segment::Component(tokens), rest)) => match components.split_first() {
            Some((first, others)) => {
                let chars: Vec<char> = first.chars().collect();
                match_component(tokens, &chars) && match_segments(rest, others)
            }
            None => false,
        },
    }
}

/// Match one component: classic `*`/`?` wildcard matching with backtracking
/// to the last `*` (linear in practice, no exponential blow-up).
fn match_component(tokens: &[Token], text: &[char]) -> bool {
    let (mut t, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < text.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, s));
                t += 1;
            }
            Some(Token::Question) => {
                t += 1;
                s += 1;
            }
            Some(Token::Literal(c)) if text.get(s) == Some(c) => {
                t += 1;
                s += 1;
            }
            _ => match star {
                Some((st, ss)) => {
                    t = st + 1;
                    s = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t.min(tokens.len())..]
        .iter()
        .all(|tok| *tok == Token::Star)
}
