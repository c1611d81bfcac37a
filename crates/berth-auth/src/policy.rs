//! Authorization: which actions (`pull`, `push`, `delete`) a caller may do on
//! which repositories.
//!
//! A [`PolicyConfig`] (the `[auth]` policy part of the server configuration,
//! in TOML) lists admins, groups of users and rules. Each rule names
//! repository patterns, who it applies to and the actions it grants.
//! [`Policy::allowed`] picks, among the rules that apply to the caller and
//! whose pattern matches the repository, the most specific pattern — so a rule
//! for `team-a/secret/**` overrides one for `team-a/**`, which overrides `**`.
//! A rule's actions are therefore complete on their own: a rule granting
//! `push` on a namespace should usually also grant `pull`.
//!
//! ```toml
//! admins = ["root"]                 # every action everywhere, and the catalog
//!
//! [groups]
//! devs = ["alice", "bob"]
//!
//! [[rules]]
//! repositories = ["**"]
//! authenticated = true              # any logged-in user
//! actions = ["pull"]
//!
//! [[rules]]
//! repositories = ["public/**"]
//! anonymous = true                  # callers without credentials
//! actions = ["pull"]
//!
//! [[rules]]
//! repositories = ["team-a/**"]
//! users = ["alice"]
//! groups = ["devs"]
//! actions = ["pull", "push", "delete"]
//! ```

use berth_oci::RepoPattern;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// Something a caller can do to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests, create tags, mount blobs into the repository.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action, in display order.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The lowercase name used in configuration and token scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    /// Parses `pull`, `push` or `delete` (exactly, as in token scopes).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pull" => Ok(Action::Pull),
            "push" => Ok(Action::Push),
            "delete" => Ok(Action::Delete),
            _ => Err(format!(
                "unknown action {s:?} (expected pull, push or delete)"
            )),
        }
    }
}

/// A set of [`Action`]s.
///
/// Displays as a comma-separated list in the order pull, push, delete
/// (e.g. `pull,push`), and as the empty string when empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    /// No action.
    pub const NONE: Actions = Actions(0);
    /// Every action.
    pub const ALL: Actions = Actions(7);

    /// The empty set.
    pub fn empty() -> Actions {
        Actions::NONE
    }

    /// Whether `action` is in the set.
    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    /// Whether every action of `other` is in the set.
    pub fn contains_all(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Add `action` to the set.
    pub fn insert(&mut self, action: Action) {
        self.0 |= action.bit();
    }

    /// Remove `action` from the set.
    pub fn remove(&mut self, action: Action) {
        self.0 &= !action.bit();
    }

    /// The actions in either set.
    #[must_use]
    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    /// The actions in both sets.
    #[must_use]
    pub fn intersection(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// The actions in the set, in the order pull, push, delete.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl From<Action> for Actions {
    fn from(action: Action) -> Actions {
        Actions(action.bit())
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Actions {
        let mut set = Actions::NONE;
        for action in iter {
            set.insert(action);
        }
        set
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, action) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action.as_str())?;
        }
        Ok(())
    }
}

/// Who is asking. `user` `None` = anonymous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated user name, or `None` for an anonymous caller.
    pub user: Option<String>,
}

impl Identity {
    /// An anonymous caller.
    pub fn anonymous() -> Identity {
        Identity { user: None }
    }

    /// An authenticated user.
    pub fn user(name: impl Into<String>) -> Identity {
        Identity {
            user: Some(name.into()),
        }
    }

    /// Whether the caller is anonymous.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
    }
}

/// The policy part of the configuration, as written in TOML (see the module
/// documentation). Every field may be left out.
#[derive(serde::Deserialize, serde::Serialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Users allowed every action on every repository, and the full catalog.
    pub admins: Vec<String>,
    /// Named groups of users, usable in [`RuleConfig::groups`].
    pub groups: BTreeMap<String, Vec<String>>,
    /// The rules, in any order (order does not matter).
    pub rules: Vec<RuleConfig>,
}

/// One `[[rules]]` entry: `actions` on `repositories` for the listed callers.
#[derive(serde::Deserialize, serde::Serialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Repository patterns: `/`-separated components where `*` matches within
    /// one component, `?` one character, and `**` as a whole component zero
    /// or more components (`team-a/**` matches `team-a`, `team-a/x`, `team-a/x/y`).
    pub repositories: Vec<String>,
    /// Users the rule applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups (keys of [`PolicyConfig::groups`]) whose members the rule applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether the rule applies to anonymous callers.
    #[serde(default)]
    pub anonymous: bool,
    /// Whether the rule applies to every authenticated user.
    #[serde(default)]
    pub authenticated: bool,
    /// The actions granted; must not be empty.
    pub actions: Vec<Action>,
}

/// A policy configuration that cannot be used. `field` names the culprit,
/// e.g. `rules[2].repositories[0]`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// A repository pattern is not a valid glob.
    #[error("{field}: invalid repository pattern {pattern:?}: {reason}")]
    BadPattern {
        /// Where the pattern is.
        field: String,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A rule names a group missing from `[groups]`.
    #[error("{field}: unknown group {group:?} (not defined under [groups])")]
    UnknownGroup {
        /// Where the group is named.
        field: String,
        /// The group.
        group: String,
    },
    /// A required list is empty (`rules[i].actions`, `rules[i].repositories`).
    #[error("{field} must not be empty")]
    Empty {
        /// The empty list.
        field: String,
    },
    /// A rule has no users, groups, `anonymous` or `authenticated`, so it applies to nobody.
    #[error(
        "{field} applies to nobody: give it users, groups, anonymous = true or authenticated = true"
    )]
    NoSubjects {
        /// The rule, e.g. `rules[3]`.
        field: String,
    },
    /// An empty or otherwise invalid user or group name.
    #[error("{field}: invalid name {name:?}")]
    BadName {
        /// Where the name is.
        field: String,
        /// The name.
        name: String,
    },
}

/// A validated rule.
#[derive(Clone, Debug)]
struct Rule {
    patterns: Vec<RepoPattern>,
    users: HashSet<String>,
    groups: Vec<String>,
    anonymous: bool,
    authenticated: bool,
    actions: Actions,
}

/// A compiled, validated policy. Cheap to query; share it behind an `Arc`.
#[derive(Clone, Debug)]
pub struct Policy {
    admins: HashSet<String>,
    /// Group name → members.
    groups: HashMap<String, BTreeSet<String>>,
    rules: Vec<Rule>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl Policy {
    /// Validate and compile `cfg`.
    ///
    /// Errors name the offending field: a bad glob (`rules[i].repositories[j]`),
    /// an unknown group (`rules[i].groups[j]`), empty `rules[i].actions` or
    /// `rules[i].repositories`, a rule that applies to nobody (`rules[i]`), or
    /// an empty user or group name.
    pub fn new(cfg: &PolicyConfig) -> Result<Policy, PolicyError> {
        let bad_name = |field: String, name: &str| PolicyError::BadName {
            field,
            name: name.to_owned(),
        };
        for (j, admin) in cfg.admins.iter().enumerate() {
            if !valid_name(admin) {
                return Err(bad_name(format!("admins[{j}]"), admin));
            }
        }
        let mut groups = HashMap::new();
        for (group, members) in &cfg.groups {
            if !valid_name(group) {
                return Err(bad_name("groups".to_owned(), group));
            }
            for (j, member) in members.iter().enumerate() {
                if !valid_name(member) {
                    return Err(bad_name(format!("groups.{group}[{j}]"), member));
                }
            }
            groups.insert(group.clone(), members.iter().cloned().collect());
        }
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for (i, rc) in cfg.rules.iter().enumerate() {
            if rc.repositories.is_empty() {
                return Err(PolicyError::Empty {
                    field: format!("rules[{i}].repositories"),
                });
            }
            if rc.actions.is_empty() {
                return Err(PolicyError::Empty {
                    field: format!("rules[{i}].actions"),
                });
            }
            if rc.users.is_empty() && rc.groups.is_empty() && !rc.anonymous && !rc.authenticated {
                return Err(PolicyError::NoSubjects {
                    field: format!("rules[{i}]"),
                });
            }
            let mut patterns = Vec::with_capacity(rc.repositories.len());
            for (j, text) in rc.repositories.iter().enumerate() {
                let pattern =
                    RepoPattern::compile(text).map_err(|reason| PolicyError::BadPattern {
                        field: format!("rules[{i}].repositories[{j}]"),
                        pattern: text.clone(),
                        reason,
                    })?;
                patterns.push(pattern);
            }
            for (j, user) in rc.users.iter().enumerate() {
                if !valid_name(user) {
                    return Err(bad_name(format!("rules[{i}].users[{j}]"), user));
                }
            }
            for (j, group) in rc.groups.iter().enumerate() {
                if !groups.contains_key(group) {
                    return Err(PolicyError::UnknownGroup {
                        field: format!("rules[{i}].groups[{j}]"),
                        group: group.clone(),
                    });
                }
            }
            rules.push(Rule {
                patterns,
                users: rc.users.iter().cloned().collect(),
                groups: rc.groups.clone(),
                anonymous: rc.anonymous,
                authenticated: rc.authenticated,
                actions: rc.actions.iter().copied().collect(),
            });
        }
        Ok(Policy {
            admins: cfg.admins.iter().cloned().collect(),
            groups,
            rules,
        })
    }

    /// Whether `rule` applies to `who`.
    fn applies(&self, rule: &Rule, who: &Identity) -> bool {
        match &who.user {
            None => rule.anonymous,
            Some(user) => {
                rule.authenticated
                    || rule.users.contains(user)
                    || rule.groups.iter().any(|g| {
                        self.groups
                            .get(g)
                            .is_some_and(|members| members.contains(user))
                    })
            }
        }
    }

    /// The actions `who` may do on `repo`.
    ///
    /// Among the rules that apply to `who` (listed user, member of a listed
    /// group, `anonymous = true` for anonymous callers, `authenticated = true`
    /// for any logged-in user) and whose pattern matches `repo`, the most
    /// specific pattern wins (longest pattern; literal beats glob at equal
    /// length), and the actions of all applying rules with that winning
    /// pattern are unioned (different patterns of equal length and kind
    /// that both match are unioned too). No match → nothing. Admins → everything.
    pub fn allowed(&self, who: &Identity, repo: &str) -> Actions {
        if self.is_admin(who) {
            return Actions::ALL;
        }
        let mut best: Option<(usize, bool)> = None;
        let mut actions = Actions::NONE;
        for rule in self.rules.iter().filter(|r| self.applies(r, who)) {
            for pattern in &rule.patterns {
                if best.is_some_and(|b| pattern.rank() < b) || !pattern.matches(repo) {
                    continue;
                }
                if best.is_none_or(|b| pattern.rank() > b) {
                    best = Some(pattern.rank());
                    actions = Actions::NONE;
                }
                actions = actions.union(rule.actions);
            }
        }
        actions
    }

    /// Whether `who` is an admin (anonymous callers never are).
    pub fn is_admin(&self, who: &Identity) -> bool {
        who.user.as_ref().is_some_and(|u| self.admins.contains(u))
    }

    /// Whether anything at all is allowed for `who` (to decide 401-vs-403
    /// style answers elsewhere): admins, and anyone some rule applies to.
    pub fn may_anything(&self, who: &Identity) -> bool {
        self.is_admin(who) || self.rules.iter().any(|r| self.applies(r, who))
    }

    /// The patterns of the rules that apply to `who`, for diagnostics
    /// (e.g. `berth` explaining a denial). Admins get `["**"]`.
    pub fn patterns_for(&self, who: &Identity) -> Vec<&str> {
        if self.is_admin(who) {
            return vec!["**"];
        }
        self.rules
            .iter()
            .filter(|r| self.applies(r, who))
            .flat_map(|r| r.patterns.iter().map(|p| p.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acts(list: &[Action]) -> Actions {
        list.iter().copied().collect()
    }

    #[test]
    fn glob_matching_table() {
        let table: &[(&str, &str, bool)] = &[
            ("team-a/**", "team-a", true),
            ("team-a/**", "team-a/x", true),
            ("team-a/**", "team-a/x/y", true),
            ("team-a/**", "team-ab", false),
            ("team-a/**", "team-b/x", false),
            ("team-a/**", "other/team-a/x", false),
            ("**", "a", true),
            ("**", "a/b/c", true),
            ("**/x", "x", true),
            ("**/x", "a/b/x", true),
            ("**/x", "a/b/xy", false),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("a/**/z", "a/b/c", false),
            ("a/**/**/z", "a/z", true),
            ("*", "a", true),
            ("*", "a/b", false),
            ("team-*", "team-a", true),
            ("team-*", "team-", true),
            ("team-*", "team-a/x", false),
            ("team-*/*", "team-a/x", true),
            ("*/app", "team-a/app", true),
            ("*/app", "app", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b*c", "acbc", true),
            ("*x*", "aaxaa", true),
            ("ap?", "app", true),
            ("ap?", "ap", false),
            ("ap?", "appp", false),
            ("a/?", "a/b", true),
            ("a?b", "a/b", false),
            ("library/alpine", "library/alpine", true),
            ("library/alpine", "library/alpine2", false),
            ("library/alpine", "library", false),
            ("library", "library/alpine", false),
            ("a.b/c_d-e", "a.b/c_d-e", true),
        ];
        for (pattern, repo, expected) in table {
            let p = RepoPattern::compile(pattern).unwrap();
            assert_eq!(p.matches(repo), *expected, "{pattern} vs {repo}");
        }
    }

    #[test]
    fn bad_patterns() {
        for pattern in [
            "", "/a", "a/", "a//b", "a**", "**b/c", "a/b**", "a b", "a\tb",
        ] {
            assert!(RepoPattern::compile(pattern).is_err(), "{pattern:?}");
        }
    }

    fn sample() -> Policy {
        let cfg: PolicyConfig = toml::from_str(
            r#"
            admins = ["root"]
            [groups]
            devs = ["alice", "bob"]
            ops = ["olga"]

            [[rules]]
            repositories = ["**"]
            authenticated = true
            actions = ["pull"]

            [[rules]]
            repositories = ["public/**"]
            anonymous = true
            actions = ["pull"]

            [[rules]]
            repositories = ["team-a/**"]
            users = ["alice"]
            actions = ["pull", "push"]

            [[rules]]
            repositories = ["team-a/**"]
            groups = ["ops"]
            actions = ["delete"]

            [[rules]]
            repositories = ["team-a/secret/**"]
            groups = ["devs"]
            actions = ["pull"]

            [[rules]]
            repositories = ["team-a/secret/**"]
            users = ["carol"]
            actions = ["push"]

            [[rules]]
            repositories = ["team-a/app"]
            users = ["bob"]
            actions = ["push"]

            [[rules]]
            repositories = ["team-a/ap?"]
            users = ["bob"]
            actions = ["delete"]
            "#,
        )
        .unwrap();
        Policy::new(&cfg).unwrap()
    }

    #[test]
    fn precedence_table() {
        use Action::*;
        let policy = sample();
        let anon = Identity::anonymous();
        let alice = Identity::user("alice");
        let bob = Identity::user("bob");
        let carol = Identity::user("carol");
        let olga = Identity::user("olga");
        let root = Identity::user("root");
        let zed = Identity::user("zed");
        let table: &[(&Identity, &str, &[Action])] = &[
            // Anonymous: only public/**.
            (&anon, "public/x", &[Pull]),
            (&anon, "public", &[Pull]),
            (&anon, "team-a/x", &[]),
            (&anon, "library/alpine", &[]),
            // Any authenticated user: pull everywhere via `**`.
            (&zed, "library/alpine", &[Pull]),
            (&zed, "team-a/x", &[Pull]),
            (&zed, "public/x", &[Pull]),
            // alice: team-a/** beats ** (its actions replace, not add).
            (&alice, "team-a", &[Pull, Push]),
            (&alice, "team-a/x", &[Pull, Push]),
            (&alice, "team-a/x/y", &[Pull, Push]),
            (&alice, "team-b/x", &[Pull]),
            // alice is a dev: team-a/secret/** (pull only) beats team-a/**.
            (&alice, "team-a/secret/x", &[Pull]),
            (&alice, "team-a/secret", &[Pull]),
            // olga (ops): delete on team-a/** — without pull, since it wins over **.
            (&olga, "team-a/x", &[Delete]),
            (&olga, "team-b/x", &[Pull]),
            // carol (not a dev): her own team-a/secret/** rule beats ** — push only.
            (&carol, "team-a/secret/x", &[Push]),
            // bob: the literal team-a/app beats the glob team-a/ap? of equal length.
            (&bob, "team-a/app", &[Push]),
            (&bob, "team-a/apx", &[Delete]),
            (&bob, "team-a/x", &[Pull]),
            (&bob, "team-a/secret/x", &[Pull]),
            // Admin: everything everywhere.
            (&root, "anything/at/all", &[Pull, Push, Delete]),
            (&root, "team-a/secret/x", &[Pull, Push, Delete]),
        ];
        for (who, repo, expected) in table {
            assert_eq!(
                policy.allowed(who, repo),
                acts(expected),
                "{:?} on {repo}",
                who.user
            );
        }
    }

    #[test]
    fn shared_winning_pattern_unions_actions() {
        let cfg: PolicyConfig = toml::from_str(
            r#"
            [groups]
            devs = ["alice"]
            [[rules]]
            repositories = ["x/**"]
            users = ["alice"]
            actions = ["pull"]
            [[rules]]
            repositories = ["y", "x/**"]
            groups = ["devs"]
            actions = ["push"]
            [[rules]]
            repositories = ["x/**"]
            anonymous = true
            actions = ["delete"]
            "#,
        )
        .unwrap();
        let p = Policy::new(&cfg).unwrap();
        let alice = Identity::user("alice");
        assert_eq!(
            p.allowed(&alice, "x/1"),
            acts(&[Action::Pull, Action::Push])
        );
        assert_eq!(p.allowed(&alice, "y"), acts(&[Action::Push]));
        assert_eq!(
            p.allowed(&Identity::anonymous(), "x/1"),
            acts(&[Action::Delete])
        );
        assert_eq!(p.allowed(&Identity::anonymous(), "y"), Actions::NONE);
    }

    #[test]
    fn admin_and_may_anything() {
        let policy = sample();
        assert!(policy.is_admin(&Identity::user("root")));
        assert!(!policy.is_admin(&Identity::user("alice")));
        assert!(!policy.is_admin(&Identity::anonymous()));
        assert!(policy.may_anything(&Identity::anonymous()));
        assert!(policy.may_anything(&Identity::user("zed")));

        let cfg: PolicyConfig = toml::from_str(
            r#"
            admins = ["root"]
            [[rules]]
            repositories = ["team-a/**"]
            users = ["alice"]
            actions = ["pull"]
            "#,
        )
        .unwrap();
        let p = Policy::new(&cfg).unwrap();
        assert!(!p.may_anything(&Identity::anonymous()));
        assert!(!p.may_anything(&Identity::user("zed")));
        assert!(p.may_anything(&Identity::user("alice")));
        assert!(p.may_anything(&Identity::user("root")));
        assert_eq!(p.patterns_for(&Identity::user("alice")), ["team-a/**"]);
        assert_eq!(p.patterns_for(&Identity::user("root")), ["**"]);
        assert!(p.patterns_for(&Identity::anonymous()).is_empty());
    }

    #[test]
    fn empty_policy_allows_nothing() {
        let p = Policy::new(&PolicyConfig::default()).unwrap();
        assert_eq!(p.allowed(&Identity::user("a"), "x"), Actions::NONE);
        assert_eq!(p.allowed(&Identity::anonymous(), "x"), Actions::NONE);
        assert!(!p.may_anything(&Identity::user("a")));
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"[[rules]]
                repositories = ["ok", "bad**"]
                users = ["a"]
                actions = ["pull"]"#,
                "rules[0].repositories[1]",
            ),
            (
                r#"[groups]
                devs = ["a"]
                [[rules]]
                repositories = ["x"]
                users = ["a"]
                actions = ["pull"]
                [[rules]]
                repositories = ["x"]
                groups = ["devs", "nope"]
                actions = ["pull"]"#,
                "rules[1].groups[1]",
            ),
            (
                r#"[[rules]]
                repositories = ["x"]
                users = ["a"]
                actions = []"#,
                "rules[0].actions",
            ),
            (
                r#"[[rules]]
                repositories = []
                users = ["a"]
                actions = ["pull"]"#,
                "rules[0].repositories",
            ),
            (
                r#"[[rules]]
                repositories = ["x"]
                actions = ["pull"]"#,
                "rules[0]",
            ),
            (r#"admins = [""]"#, "admins[0]"),
        ];
        for (text, field) in cases {
            let cfg: PolicyConfig = toml::from_str(text).unwrap();
            let err = Policy::new(&cfg).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(field), "{msg} should name {field}");
        }
    }

    #[test]
    fn toml_is_strict() {
        // Unknown keys and unknown actions are refused by deserialization.
        assert!(toml::from_str::<PolicyConfig>("admin = [\"x\"]").is_err());
        assert!(
            toml::from_str::<PolicyConfig>(
                "[[rules]]\nrepositories = [\"x\"]\nuser = [\"a\"]\nactions = [\"pull\"]"
            )
            .is_err()
        );
        assert!(
            toml::from_str::<PolicyConfig>(
                "[[rules]]\nrepositories = [\"x\"]\nusers = [\"a\"]\nactions = [\"write\"]"
            )
            .is_err()
        );
        assert_eq!(
            toml::from_str::<PolicyConfig>("").unwrap(),
            PolicyConfig::default()
        );
    }

    #[test]
    fn actions_set() {
        let mut a = Actions::empty();
        assert!(a.is_empty());
        assert_eq!(a.to_string(), "");
        a.insert(Action::Push);
        a.insert(Action::Pull);
        assert_eq!(a.to_string(), "pull,push");
        assert!(a.contains(Action::Pull) && !a.contains(Action::Delete));
        assert_eq!(a.iter().collect::<Vec<_>>(), [Action::Pull, Action::Push]);
        let b = a.union(Action::Delete.into());
        assert_eq!(b, Actions::ALL);
        assert_eq!(b.to_string(), "pull,push,delete");
        assert!(b.contains_all(a) && !a.contains_all(b));
        assert_eq!(b.intersection(Action::Push.into()), Action::Push.into());
        a.remove(Action::Pull);
        assert_eq!(a.to_string(), "push");
        assert_eq!("delete".parse::<Action>(), Ok(Action::Delete));
        assert!("*".parse::<Action>().is_err());
        assert_eq!(serde_json::to_string(&Action::Pull).unwrap(), "\"pull\"");
    }
}
