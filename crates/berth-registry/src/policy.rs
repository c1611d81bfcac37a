//! Lifecycle policy: garbage collection, scrub, retention, immutable tags and
//! quotas, as configured (`*Config`, deserialised from `berth.toml`) and as
//! compiled ([`Lifecycle`]: patterns and regexes checked once, durations and
//! sizes parsed). Compiling reports every problem at once, each naming its field.

use std::time::Duration;

use berth_oci::RepoPattern;
use serde::Deserialize;

/// A duration or size written as a number or as text with a unit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    /// A bare number: seconds for durations, bytes for sizes.
    Number(u64),
    /// Text such as `"30d"`, `"90s"`, `"10GiB"`, `"off"`.
    Text(String),
}

impl Amount {
    fn text(s: &str) -> Self {
        Amount::Text(s.to_owned())
    }

    /// A duration: a number of seconds or `<n><unit>` with unit `s`, `m`, `h`,
    /// `d` or `w`; `"off"` or `0` is `None`.
    pub fn duration(&self) -> Result<Option<Duration>, String> {
        let secs = match self {
            Amount::Number(n) => *n,
            Amount::Text(t) => {
                let t = t.trim();
                if t.eq_ignore_ascii_case("off") {
                    return Ok(None);
                }
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let n: u64 = num.parse().map_err(|_| {
                    format!("{t:?} is not a duration like \"90s\", \"12h\" or \"30d\"")
                })?;
                let mult = match unit.trim() {
                    "" | "s" => 1,
                    "m" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    "w" => 7 * 86_400,
                    u => {
                        return Err(format!(
                            "unknown duration unit {u:?} in {t:?} (s, m, h, d, w)"
                        ));
                    }
                };
                n.checked_mul(mult)
                    .ok_or_else(|| format!("{t:?} is too long"))?
            }
        };
        Ok((secs > 0).then(|| Duration::from_secs(secs)))
    }

    /// A size: a number of bytes or `<n><unit>` with unit `B`, `KB`, `MB`, `GB`,
    /// `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Amount::Number(n) => Ok(*n),
            Amount::Text(t) => {
                let t = t.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let n: u64 = num
                    .parse()
                    .map_err(|_| format!("{t:?} is not a size like \"500MB\" or \"10GiB\""))?;
                let mult: u64 = match unit.trim() {
                    "" | "B" => 1,
                    "KB" | "kB" => 1_000,
                    "MB" => 1_000_000,
                    "GB" => 1_000_000_000,
                    "TB" => 1_000_000_000_000,
                    "KiB" => 1 << 10,
                    "MiB" => 1 << 20,
                    "GiB" => 1 << 30,
                    "TiB" => 1 << 40,
                    u => return Err(format!("unknown size unit {u:?} in {t:?}")),
                };
                n.checked_mul(mult)
                    .ok_or_else(|| format!("{t:?} is too large"))
            }
        }
    }
}

/// `[gc]`: online garbage collection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// How often the server collects garbage (`"off"` for never; `berth gc` still works).
    pub interval: Amount,
    /// Nothing written, linked or pushed more recently than this is collected:
    /// the time a push in progress has between uploading a blob and pushing the
    /// manifest that references it.
    pub grace: Amount,
    /// `"delete"`: untagged manifests that nothing live references are collected;
    /// `"keep"`: they are kept (referrers of deleted manifests still go).
    pub untagged: String,
    /// Upload sessions idle for longer than this are purged.
    pub upload_max_age: Amount,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: Amount::text("1h"),
            grace: Amount::text("1h"),
            untagged: "delete".into(),
            upload_max_age: Amount::text("24h"),
        }
    }
}

/// `[scrub]`: re-hashing stored content in the background.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// How often a full scrub starts (`"off"` for never; `berth scrub` still works).
    pub interval: Amount,
    /// Most bytes per second read while scrubbing (0: as fast as the disk goes).
    pub rate: Amount,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            interval: Amount::text("7d"),
            rate: Amount::text("64MiB"),
        }
    }
}

/// `[retention]`: which tags to delete.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How often the server applies the rules (`"off"` for never).
    pub interval: Amount,
    /// The rules; for each repository the first rule that matches it applies.
    pub rules: Vec<RetentionRuleConfig>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            interval: Amount::text("24h"),
            rules: Vec::new(),
        }
    }
}

/// One `[[retention.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionRuleConfig {
    /// Repository patterns (`*`, `?` within a component, `**` across).
    pub repositories: Vec<String>,
    /// Always keep this many most recently pushed tags.
    pub keep_last: Option<u64>,
    /// Always keep tags matching this regular expression (whole name).
    pub keep_tags: Option<String>,
    /// Delete only tags pushed longer ago than this.
    pub older_than: Option<Amount>,
    /// Delete only tags not pulled (or, never pulled, not pushed) for this long.
    pub not_pulled_for: Option<Amount>,
    /// Never delete a tag whose manifest has a signature.
    pub keep_signed: bool,
}

/// `[immutable_tags]`: tags that may not be moved or deleted.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ImmutableConfig {
    /// The rules; a tag is immutable if any rule covers it.
    pub rules: Vec<ImmutableRuleConfig>,
}

/// One `[[immutable_tags.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ImmutableRuleConfig {
    /// Repository patterns.
    pub repositories: Vec<String>,
    /// Tags covered: a regular expression matched against the whole name
    /// (default: every tag).
    pub tags: Option<String>,
    /// Tag names the rule never covers, e.g. `["latest"]`.
    pub except: Vec<String>,
}

/// `[quotas]`: storage limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// The rules; for each repository the first rule that matches it applies.
    pub rules: Vec<QuotaRuleConfig>,
}

/// One `[[quotas.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRuleConfig {
    /// Repository patterns; each matching repository gets its own limit.
    pub repositories: Vec<String>,
    /// Most bytes of unique blobs one such repository may hold.
    pub limit: Amount,
}

/// Every lifecycle section, as configured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LifecycleConfig {
    /// `[gc]`.
    pub gc: GcConfig,
    /// `[scrub]`.
    pub scrub: ScrubConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[immutable_tags]`.
    pub immutable_tags: ImmutableConfig,
    /// `[quotas]`.
    pub quotas: QuotaConfig,
}

/// Compiled garbage-collection settings.
#[derive(Debug, Clone)]
pub struct GcPolicy {
    /// Schedule, if any.
    pub interval: Option<Duration>,
    /// Grace period (see [`GcConfig::grace`]).
    pub grace: Duration,
    /// Keep untagged manifests that have no subject.
    pub keep_untagged: bool,
    /// Idle time after which an upload session is purged.
    pub upload_max_age: Duration,
}

/// Compiled scrub settings.
#[derive(Debug, Clone)]
pub struct ScrubPolicy {
    /// Schedule, if any.
    pub interval: Option<Duration>,
    /// Bytes per second (0: unlimited).
    pub rate: u64,
}

/// A compiled retention rule.
#[derive(Debug, Clone)]
pub struct RetentionRule {
    /// `retention.rules[i]`, for reports.
    pub name: String,
    repositories: Vec<RepoPattern>,
    /// Keep this many newest tags.
    pub keep_last: Option<usize>,
    keep_tags: Option<regex::Regex>,
    /// Delete only tags older than this.
    pub older_than: Option<Duration>,
    /// Delete only tags not pulled for this long.
    pub not_pulled_for: Option<Duration>,
    /// Keep signed tags.
    pub keep_signed: bool,
}

impl RetentionRule {
    /// Whether the rule applies to `repo`.
    pub fn covers(&self, repo: &str) -> bool {
        self.repositories.iter().any(|p| p.matches(repo))
    }

    /// Whether `tag` matches the rule's `keep_tags`.
    pub fn keeps_by_name(&self, tag: &str) -> bool {
        self.keep_tags.as_ref().is_some_and(|r| r.is_match(tag))
    }
}

/// A compiled immutability rule.
#[derive(Debug, Clone)]
struct ImmutableRule {
    name: String,
    repositories: Vec<RepoPattern>,
    tags: Option<regex::Regex>,
    except: Vec<String>,
}

/// A compiled quota rule.
#[derive(Debug, Clone)]
struct QuotaRule {
    repositories: Vec<RepoPattern>,
    limit: u64,
}

/// The lifecycle policy in force.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// Garbage collection.
    pub gc: GcPolicy,
    /// Scrub.
    pub scrub: ScrubPolicy,
    /// Retention schedule.
    pub retention_interval: Option<Duration>,
    /// Retention rules, first match per repository wins.
    pub retention: Vec<RetentionRule>,
    immutable: Vec<ImmutableRule>,
    quotas: Vec<QuotaRule>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        // The defaults always compile.
        Lifecycle::compile(&LifecycleConfig::default()).unwrap_or_else(|_| Lifecycle {
            gc: GcPolicy {
                interval: None,
                grace: Duration::from_secs(3600),
                keep_untagged: false,
                upload_max_age: Duration::from_secs(86_400),
            },
            scrub: ScrubPolicy {
                interval: None,
                rate: 0,
            },
            retention_interval: None,
            retention: Vec::new(),
            immutable: Vec::new(),
            quotas: Vec::new(),
        })
    }
}

/// Compile a whole-name regular expression.
fn whole(field: &str, re: &str, problems: &mut Vec<String>) -> Option<regex::Regex> {
    match regex::Regex::new(&format!("^(?:{re})$")) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.push(format!("{field}: invalid regular expression {re:?}: {e}"));
            None
        }
    }
}

fn patterns(field: &str, list: &[String], problems: &mut Vec<String>) -> Vec<RepoPattern> {
    if list.is_empty() {
        problems.push(format!(
            "{field}.repositories: at least one pattern is needed"
        ));
    }
    list.iter()
        .filter_map(|p| match RepoPattern::compile(p) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(format!("{field}.repositories: invalid pattern {p:?}: {e}"));
                None
            }
        })
        .collect()
}

fn duration(field: &str, a: &Amount, problems: &mut Vec<String>) -> Option<Duration> {
    a.duration().unwrap_or_else(|e| {
        problems.push(format!("{field}: {e}"));
        None
    })
}

impl Lifecycle {
    /// Check and compile the configuration; every problem is reported, each
    /// naming its field (`gc.grace`, `retention.rules[2].keep_tags`, …).
    pub fn compile(c: &LifecycleConfig) -> Result<Lifecycle, Vec<String>> {
        let mut problems = Vec::new();
        let keep_untagged = match c.gc.untagged.as_str() {
            "keep" => true,
            "delete" => false,
            other => {
                problems.push(format!(
                    "gc.untagged: {other:?} is neither \"delete\" nor \"keep\""
                ));
                false
            }
        };
        let gc = GcPolicy {
            interval: duration("gc.interval", &c.gc.interval, &mut problems),
            grace: duration("gc.grace", &c.gc.grace, &mut problems).unwrap_or(Duration::ZERO),
            keep_untagged,
            upload_max_age: duration("gc.upload_max_age", &c.gc.upload_max_age, &mut problems)
                .unwrap_or(Duration::from_secs(86_400)),
        };
        let scrub = ScrubPolicy {
            interval: duration("scrub.interval", &c.scrub.interval, &mut problems),
            rate: c.scrub.rate.bytes().unwrap_or_else(|e| {
                problems.push(format!("scrub.rate: {e}"));
                0
            }),
        };
        let mut retention = Vec::new();
        for (i, r) in c.retention.rules.iter().enumerate() {
            let name = format!("retention.rules[{i}]");
            let older_than = r
                .older_than
                .as_ref()
                .and_then(|a| duration(&format!("{name}.older_than"), a, &mut problems));
            let not_pulled_for = r
                .not_pulled_for
                .as_ref()
                .and_then(|a| duration(&format!("{name}.not_pulled_for"), a, &mut problems));
            if r.keep_last.is_none() && older_than.is_none() && not_pulled_for.is_none() {
                problems.push(format!(
                    "{name}: set keep_last, older_than or not_pulled_for (a rule with none deletes nothing)"
                ));
            }
            retention.push(RetentionRule {
                repositories: patterns(&name, &r.repositories, &mut problems),
                keep_last: r
                    .keep_last
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                keep_tags: r
                    .keep_tags
                    .as_deref()
                    .and_then(|re| whole(&format!("{name}.keep_tags"), re, &mut problems)),
                older_than,
                not_pulled_for,
                keep_signed: r.keep_signed,
                name,
            });
        }
        let mut immutable = Vec::new();
        for (i, r) in c.immutable_tags.rules.iter().enumerate() {
            let name = format!("immutable_tags.rules[{i}]");
            immutable.push(ImmutableRule {
                repositories: patterns(&name, &r.repositories, &mut problems),
                tags: r
                    .tags
                    .as_deref()
                    .and_then(|re| whole(&format!("{name}.tags"), re, &mut problems)),
                except: r.except.clone(),
                name,
            });
        }
        let mut quotas = Vec::new();
        for (i, r) in c.quotas.rules.iter().enumerate() {
            let name = format!("quotas.rules[{i}]");
            let limit = r.limit.bytes().unwrap_or_else(|e| {
                problems.push(format!("{name}.limit: {e}"));
                0
            });
            quotas.push(QuotaRule {
                repositories: patterns(&name, &r.repositories, &mut problems),
                limit,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Lifecycle {
            gc,
            scrub,
            retention_interval: c.retention.interval.duration().ok().flatten(),
            retention,
            immutable,
            quotas,
        })
    }

    /// The rule that makes `tag` of `repo` immutable, if any (its name and patterns).
    pub fn immutable_rule(&self, repo: &str, tag: &str) -> Option<String> {
        self.immutable
            .iter()
            .find(|r| {
                r.repositories.iter().any(|p| p.matches(repo))
                    && !r.except.iter().any(|e| e == tag)
                    && r.tags.as_ref().is_none_or(|re| re.is_match(tag))
            })
            .map(|r| {
                let pats: Vec<&str> = r.repositories.iter().map(|p| p.as_str()).collect();
                format!("{} ({})", r.name, pats.join(", "))
            })
    }

    /// Whether any immutability rule exists.
    pub fn has_immutable_rules(&self) -> bool {
        !self.immutable.is_empty()
    }

    /// The quota of `repo` in bytes, if a rule sets one.
    pub fn quota(&self, repo: &str) -> Option<u64> {
        self.quotas
            .iter()
            .find(|q| q.repositories.iter().any(|p| p.matches(repo)))
            .map(|q| q.limit)
    }

    /// The retention rule for `repo`: the first that covers it.
    pub fn retention_rule(&self, repo: &str) -> Option<&RetentionRule> {
        self.retention.iter().find(|r| r.covers(repo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        let d = |s: &str| Amount::text(s).duration();
        assert_eq!(d("90s").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(d("2h").unwrap(), Some(Duration::from_secs(7200)));
        assert_eq!(d("30d").unwrap(), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(d("off").unwrap(), None);
        assert_eq!(Amount::Number(0).duration().unwrap(), None);
        assert!(d("3 fortnights").is_err());
        assert!(d("h").is_err());
        let b = |s: &str| Amount::text(s).bytes();
        assert_eq!(b("10GiB").unwrap(), 10 << 30);
        assert_eq!(b("500MB").unwrap(), 500_000_000);
        assert_eq!(b("123").unwrap(), 123);
        assert!(b("5 parsecs").is_err());
        assert!(b("99999999999999999999TiB").is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let c = LifecycleConfig {
            gc: GcConfig {
                untagged: "sometimes".into(),
                grace: Amount::text("1y"),
                ..GcConfig::default()
            },
            retention: RetentionConfig {
                rules: vec![RetentionRuleConfig {
                    repositories: vec!["a//b".into()],
                    keep_tags: Some("(".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            quotas: QuotaConfig {
                rules: vec![QuotaRuleConfig {
                    repositories: vec![],
                    limit: Amount::text("lots"),
                }],
            },
            ..Default::default()
        };
        let problems = Lifecycle::compile(&c).unwrap_err().join("\n");
        for needle in [
            "gc.untagged",
            "gc.grace",
            "retention.rules[0]: set keep_last",
            "retention.rules[0].repositories: invalid pattern",
            "retention.rules[0].keep_tags",
            "quotas.rules[0].repositories: at least one",
            "quotas.rules[0].limit",
        ] {
            assert!(
                problems.contains(needle),
                "missing {needle:?} in\n{problems}"
            );
        }
    }

    #[test]
    fn immutable_rules_and_quotas_match_by_pattern() {
        let c = LifecycleConfig {
            immutable_tags: ImmutableConfig {
                rules: vec![ImmutableRuleConfig {
                    repositories: vec!["prod/**".into()],
                    tags: Some("v[0-9].*".into()),
                    except: vec!["v0-dev".into()],
                }],
            },
            quotas: QuotaConfig {
                rules: vec![
                    QuotaRuleConfig {
                        repositories: vec!["small/*".into()],
                        limit: Amount::text("1MiB"),
                    },
                    QuotaRuleConfig {
                        repositories: vec!["**".into()],
                        limit: Amount::Number(10),
                    },
                ],
            },
            ..Default::default()
        };
        let l = Lifecycle::compile(&c).unwrap();
        assert!(l.immutable_rule("prod/app", "v1.2").is_some());
        assert!(l.immutable_rule("prod/app", "v0-dev").is_none());
        assert!(l.immutable_rule("prod/app", "latest").is_none());
        assert!(l.immutable_rule("dev/app", "v1.2").is_none());
        // The regex must match the whole tag, not a part of it.
        assert!(l.immutable_rule("prod/app", "xv1").is_none());
        assert_eq!(l.quota("small/x"), Some(1 << 20));
        assert_eq!(l.quota("other"), Some(10));
    }
}
