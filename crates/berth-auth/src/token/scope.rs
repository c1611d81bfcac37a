//! Resource scopes (`auth-scope.md`) and the `access` claim entries they become
//! (`auth-jwt.md`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::{TokenError, shorten};

/// One entry of a token's `access` claim, and one resource scope of a token request:
/// a resource (`type` and `name`) and the actions requested or granted on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Resource type, e.g. `repository` or `registry` (any resource class such as
    /// `(plugin)` is dropped when parsing: the spec deprecates and ignores it).
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name, e.g. `team-a/app` or `catalog`.
    pub name: String,
    /// Actions, e.g. `pull`, `push`, `delete`, `*`. A JSON `null` reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub actions: Vec<String>,
}

impl Access {
    /// An entry for `kind`/`name` with `actions`.
    pub fn new(
        kind: impl Into<String>,
        name: impl Into<String>,
        actions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Access {
        Access {
            kind: kind.into(),
            name: name.into(),
            actions: actions.into_iter().map(Into::into).collect(),
        }
    }
}

/// The scope string form, `type:name:action[,action]*`, as used in a
/// `WWW-Authenticate` challenge's `scope` parameter.
impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// Deserializes a JSON `null` (what Go emits for a nil slice) as an empty vector.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Parses a `scope` parameter value: space-separated resource scopes
/// `resourcetype[(class)]:resourcename:action[,action]*`.
///
/// The type ends at the first `:` and the actions start after the last one, so a
/// resource name may contain a `:` (a registry host with a port). The class is
/// dropped; empty action items (`pull,,push`) are skipped and duplicates removed.
/// An empty string yields no scopes. Errors name the offending scope.
pub fn parse_scopes(s: &str) -> Result<Vec<Access>, TokenError> {
    s.split_whitespace().map(parse_scope).collect()
}

/// Parses one resource scope `resourcetype[(class)]:resourcename:action[,action]*`
/// (see [`parse_scopes`]).
pub fn parse_scope(scope: &str) -> Result<Access, TokenError> {
    let bad = |reason: &str| TokenError::BadScope {
        scope: shorten(scope),
        reason: reason.to_owned(),
    };
    let (Some(first), Some(last)) = (scope.find(':'), scope.rfind(':')) else {
        return Err(bad("expected resourcetype:resourcename:actions"));
    };
    if first == last {
        return Err(bad("expected resourcetype:resourcename:actions"));
    }
    let kind = parse_resource_type(&scope[..first]).map_err(bad)?;
    let name = &scope[first + 1..last];
    if name.is_empty() {
        return Err(bad("empty resource name"));
    }
    if !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad("resource name has characters outside printable ASCII"));
    }
    let mut actions: Vec<String> = Vec::new();
    for action in scope[last + 1..].split(',').filter(|a| !a.is_empty()) {
        let valid = action == "*"
            || action
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(bad("an action must be lowercase letters (or `*`)"));
        }
        if !actions.iter().any(|a| a == action) {
            actions.push(action.to_owned());
        }
    }
    if actions.is_empty() {
        return Err(bad("no actions"));
    }
    Ok(Access {
        kind,
        name: name.to_owned(),
        actions,
    })
}

/// `resourcetypevalue [ '(' resourcetypevalue ')' ]` → the type without its class.
fn parse_resource_type(s: &str) -> Result<String, &'static str> {
    let is_value = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let kind = match s.split_once('(') {
        None => s,
        Some((kind, class)) => {
            let Some(class) = class.strip_suffix(')') else {
                return Err("resource class is not closed by `)`");
            };
            if !is_value(class) {
                return Err("resource class must be lowercase letters and digits");
            }
            kind
        }
    };
    if !is_value(kind) {
        return Err("resource type must be lowercase letters and digits");
    }
    Ok(kind.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(kind: &str, name: &str, actions: &[&str]) -> Access {
        Access::new(kind, name, actions.iter().copied())
    }

    #[test]
    fn parses_valid_scopes() {
        let cases: &[(&str, Vec<Access>)] = &[
            ("", vec![]),
            (
                "repository:samalba/my-app:pull,push",
                vec![acc("repository", "samalba/my-app", &["pull", "push"])],
            ),
            (
                "repository:host:5000/ns/app:pull,push",
                vec![acc("repository", "host:5000/ns/app", &["pull", "push"])],
            ),
            (
                "registry:catalog:*",
                vec![acc("registry", "catalog", &["*"])],
            ),
            (
                "repository(plugin):vieux/sshfs:pull",
                vec![acc("repository", "vieux/sshfs", &["pull"])],
            ),
            (
                "repository:a/b:pull  repository:c:push,delete\tregistry:catalog:*",
                vec![
                    acc("repository", "a/b", &["pull"]),
                    acc("repository", "c", &["push", "delete"]),
                    acc("registry", "catalog", &["*"]),
                ],
            ),
            (
                "repository:a:pull,,pull,push,",
                vec![acc("repository", "a", &["pull", "push"])],
            ),
            (
                "repository:localhost:5000/x:pull",
                vec![acc("repository", "localhost:5000/x", &["pull"])],
            ),
        ];
        for (input, want) in cases {
            let got = parse_scopes(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(&got, want, "{input:?}");
        }
    }

    #[test]
    fn rejects_bad_scopes_naming_them() {
        let cases = [
            "repository",
            "repository:foo",
            ":foo:pull",
            "repository::pull",
            "Repository:foo:pull",
            "repo sitory:foo:pull",
            "repository(plugin:foo:pull",
            "repository(Plugin):foo:pull",
            "repository():foo:pull",
            "repository:foo:",
            "repository:foo:,",
            "repository:foo:PULL",
            "repository:foo:pull;rm",
            "repository:fo\u{7f}o:pull",
        ];
        for input in cases {
            match parse_scopes(input) {
                Err(TokenError::BadScope { scope, reason }) => {
                    assert!(!reason.is_empty());
                    // "repo sitory:foo:pull" fails on its first word.
                    let first = input.split_whitespace().next().unwrap_or_default();
                    assert_eq!(scope, shorten(first), "{input:?}");
                }
                other => panic!("{input:?}: expected BadScope, got {other:?}"),
            }
        }
        // One bad scope among good ones fails the whole value.
        assert!(parse_scopes("repository:a:pull bad").is_err());
    }

    #[test]
    fn display_round_trips() {
        let a = acc("repository", "host:5000/ns/app", &["pull", "push"]);
        assert_eq!(a.to_string(), "repository:host:5000/ns/app:pull,push");
        assert_eq!(parse_scope(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn access_json_matches_spec() {
        let a = acc("repository", "samalba/my-app", &["pull", "push"]);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"type":"repository","name":"samalba/my-app","actions":["pull","push"]}"#
        );
        let null: Access =
            serde_json::from_str(r#"{"type":"repository","name":"x","actions":null}"#).unwrap();
        assert!(null.actions.is_empty());
    }
}
