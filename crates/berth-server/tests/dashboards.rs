//! The Grafana dashboards (deploy/grafana/*.json) and the Prometheus rules
//! (deploy/prometheus/berth-rules.yml) only query metrics berth exports (issue 7,
//! items 2 and 3): every metric name in every PromQL expression is a series in
//! `GET /metrics` of a server with an events endpoint configured, a recording rule
//! of berth-rules.yml, or one of the few series Prometheus makes itself (`up`).
//! PromQL syntax itself is checked by promtool in deploy/check.sh.

// Test helpers panic on anything unexpected; that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_server::Config;
use berth_server::telemetry::Telemetry;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const DASHBOARDS: [&str; 3] = ["executive.json", "on-call.json", "debug.json"];

/// Series Prometheus writes itself rather than scraping them from berth.
const PROMETHEUS_SERIES: [&str; 3] = ["up", "ALERTS", "ALERTS_FOR_STATE"];

/// PromQL keywords that look like identifiers: aggregation operators, their and
/// the binary operators' modifiers, set operators, `offset`, and number literals.
const KEYWORDS: &[&str] = &[
    "sum",
    "avg",
    "max",
    "min",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "offset",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesised list of label names, not expressions.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- the PromQL tokenizer ---------------------------------------------------------

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index just past the string literal opening at `start` (`"`, `'` or `` ` ``).
fn skip_string(chars: &[char], start: usize) -> Result<usize, String> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string at {start}"))
}

/// The index just past the bracket closing the one at `start` (`{`, `[` or `(`),
/// skipping strings inside.
fn skip_group(chars: &[char], start: usize) -> Result<usize, String> {
    let (open, close) = match chars[start] {
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        '(' => ('(', ')'),
        c => return Err(format!("no group opens with {c:?} at {start}")),
    };
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i)?;
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("unclosed {open:?} at {start}"))
}

/// The metric name given by a `__name__="…"` matcher inside `{…}`, if any.
fn name_matcher(selector: &str) -> Option<String> {
    let rest = selector.split("__name__").nth(1)?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_string())
}

/// Every metric name `expr` selects, in order. Skipped: function names (an
/// identifier followed by `(`), keywords and modifiers, label matchers `{…}`,
/// label lists after `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`,
/// ranges and subqueries `[…]`, strings, numbers and durations, comments, and
/// Grafana variables (`$var`, `${var}`, `$__rate_interval`).
fn metric_names(expr: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i)?;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(&chars, i)?;
            } else {
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
            }
        } else if c == '[' {
            i = skip_group(&chars, i)?;
        } else if c == '{' {
            // A selector without a name before it: `{__name__="…"}`.
            let end = skip_group(&chars, i)?;
            let selector: String = chars[i..end].iter().collect();
            names.extend(name_matcher(&selector));
            i = end;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers (1, 0.95, 1e-3, 0x1f) and durations (5m, 1h30m).
            let mut prev = c;
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                let exponent_sign = matches!(d, '+' | '-') && matches!(prev, 'e' | 'E');
                if !(d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign) {
                    break;
                }
                prev = d;
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let lower = ident.to_ascii_lowercase();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let paren_follows = chars.get(next) == Some(&'(');
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if paren_follows {
                    i = skip_group(&chars, next)?;
                }
            } else if KEYWORDS.contains(&lower.as_str()) || paren_follows {
                // A keyword, or a function or aggregation applied to what follows.
            } else {
                names.push(ident);
                if chars.get(next) == Some(&'{') {
                    i = skip_group(&chars, next)?;
                }
            }
        } else {
            // Operators, parentheses, commas, `@`.
            i += 1;
        }
    }
    Ok(names)
}

/// The metric names in `expr` that are not in `known`.
fn unknown_metrics(expr: &str, known: &BTreeSet<String>) -> Result<Vec<String>, String> {
    Ok(metric_names(expr)?
        .into_iter()
        .filter(|name| !known.contains(name))
        .collect())
}

// ---- what berth exports -------------------------------------------------------------

/// Series names in an OpenMetrics text exposition: every sample's name, and the
/// names each `# TYPE` line's family is queried by (`_total` of a counter;
/// `_bucket`, `_sum`, `_count` of a histogram), even while it has no sample.
fn exposition_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(family), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// What a server with one events endpoint exports.
async fn exported_names() -> BTreeSet<String> {
    let config = Config::parse(
        "[[events.endpoints]]\nname = \"t\"\nurl = \"http://127.0.0.1:9/\"\n",
        "test",
        &[],
    )
    .unwrap();
    let telemetry = Telemetry::from_config(&config);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, telemetry.registry()).unwrap();
    exposition_names(&text)
}

// ---- the rules and dashboards -------------------------------------------------------

struct Rules {
    /// Names of the recording rules.
    recorded: BTreeSet<String>,
    /// (rule name, expression) of every rule.
    exprs: Vec<(String, String)>,
}

fn rules() -> Rules {
    let docs = YamlLoader::load_from_str(&read("deploy/prometheus/berth-rules.yml")).unwrap();
    let mut recorded = BTreeSet::new();
    let mut exprs = Vec::new();
    let groups = docs[0]["groups"].as_vec().expect("groups");
    for group in groups {
        for rule in group["rules"].as_vec().expect("rules") {
            let name = match (&rule["record"], &rule["alert"]) {
                (Yaml::String(r), _) => {
                    recorded.insert(r.clone());
                    r.clone()
                }
                (_, Yaml::String(a)) => a.clone(),
                _ => panic!("rule neither records nor alerts: {rule:?}"),
            };
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no expr"));
            exprs.push((name, expr.to_string()));
        }
    }
    Rules { recorded, exprs }
}

fn dashboard(file: &str) -> Value {
    serde_json::from_str(&read(&format!("deploy/grafana/{file}")))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every string `expr` field anywhere in `value`.
fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The metric of each `label_values(metric, label)` templating query.
fn templating_metrics(dash: &Value) -> Vec<String> {
    let mut metrics = Vec::new();
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        let Some(definition) = var["definition"].as_str() else {
            continue;
        };
        if let Some(args) = definition.strip_prefix("label_values(") {
            let args = args.trim_end_matches(')');
            if let Some((metric, _label)) = args.rsplit_once(',') {
                metrics.extend(metric_names(metric).unwrap());
            }
        }
    }
    metrics
}

// ---- the tests ----------------------------------------------------------------------

#[tokio::test]
async fn every_dashboard_and_rule_query_uses_exported_metrics() {
    let exported = exported_names().await;
    let rules = rules();
    let mut known = exported.clone();
    known.extend(rules.recorded.iter().cloned());
    known.extend(PROMETHEUS_SERIES.iter().map(|s| s.to_string()));

    let mut problems = Vec::new();
    let mut checked = 0;
    for (rule, expr) in &rules.exprs {
        checked += 1;
        match unknown_metrics(expr, &known) {
            Ok(unknown) if unknown.is_empty() => {}
            Ok(unknown) => problems.push(format!("berth-rules.yml {rule}: {unknown:?}")),
            Err(e) => problems.push(format!("berth-rules.yml {rule}: {e}")),
        }
    }
    for file in DASHBOARDS {
        let dash = dashboard(file);
        let mut exprs = Vec::new();
        collect_exprs(&dash, &mut exprs);
        for expr in &exprs {
            checked += 1;
            match unknown_metrics(expr, &known) {
                Ok(unknown) if unknown.is_empty() => {}
                Ok(unknown) => problems.push(format!("{file}: {unknown:?} in {expr}")),
                Err(e) => problems.push(format!("{file}: {e} in {expr}")),
            }
        }
        for metric in templating_metrics(&dash) {
            if !exported.contains(&metric) {
                problems.push(format!("{file}: templating uses {metric}"));
            }
        }
    }
    assert!(checked > 100, "only {checked} expressions found");
    assert!(
        problems.is_empty(),
        "queries use metrics berth does not export (exported: {exported:?}):\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn the_slis_of_docs_metrics_md_are_exported() {
    // The series the rules' SLIs are built on, by their queried names.
    let exported = exported_names().await;
    let needed = [
        "berth_pulls_total",
        "berth_pull_duration_seconds_bucket",
        "berth_pull_first_byte_seconds_bucket",
        "berth_pushed_image_bytes_sum",
        "berth_pushed_image_bytes_count",
        "berth_manifest_validation_failures_total",
        "berth_http_requests_total",
        "berth_http_request_duration_seconds_bucket",
        "berth_images_tagged",
        "berth_images_signed",
        "berth_images_with_sbom",
        "berth_gc_runs_total",
        "berth_scrub_corrupt_objects_total",
        "berth_events_sent_total",
    ];
    let missing: Vec<_> = needed.iter().filter(|n| !exported.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:?} (exported: {exported:?})"
    );
}

#[test]
fn dashboards_are_well_formed() {
    let mut uids = BTreeSet::new();
    for file in DASHBOARDS {
        let dash = dashboard(file);
        let title = dash["title"].as_str().unwrap_or_default();
        assert!(title.starts_with("berth / "), "{file}: title {title:?}");
        let uid = dash["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty() && uid.len() <= 40, "{file}: uid {uid:?}");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        assert!(
            dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
            "{file}: schemaVersion"
        );
        let vars = dash["templating"]["list"].as_array().expect("templating");
        assert!(
            vars.iter()
                .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
            "{file}: no DS_PROMETHEUS datasource variable"
        );

        let panels = dash["panels"].as_array().expect("panels");
        let mut ids = BTreeSet::new();
        let mut queried = 0;
        for panel in panels {
            let ptitle = panel["title"].as_str().unwrap_or_default();
            assert!(!ptitle.is_empty(), "{file}: panel without a title");
            assert!(
                ids.insert(panel["id"].as_u64().expect("id")),
                "{file}: id twice"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert!(
                ["timeseries", "stat", "gauge", "table"].contains(&panel["type"].as_str().unwrap()),
                "{file} {ptitle}: type {}",
                panel["type"]
            );
            assert_eq!(
                panel["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{file} {ptitle}"
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file} {ptitle}: no targets");
            let mut refs = BTreeSet::new();
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{file} {ptitle}: empty expr");
                assert!(
                    !metric_names(expr).unwrap().is_empty(),
                    "{file} {ptitle}: {expr}"
                );
                assert!(
                    refs.insert(target["refId"].to_string()),
                    "{file} {ptitle}: refId twice"
                );
            }
            queried += 1;
        }
        assert!(queried >= 6, "{file}: only {queried} panels with queries");
    }
}

#[test]
fn rules_file_parses_and_records_the_slis() {
    let rules = rules();
    for name in [
        "berth:pull_success:objective",
        "berth:http_success:objective",
        "berth:pull_success:ratio_rate5m",
        "berth:pull_errors:ratio_rate6h",
        "berth:pull_success_first_attempt:ratio_rate5m",
        "berth_kind:pull_duration_seconds:p95_rate5m",
        "berth_kind:pull_first_byte_seconds:p95_rate5m",
        "berth:pushed_image_bytes:mean_rate1h",
        "berth_reason:manifest_validation_failures:rate5m",
        "berth:http_5xx:ratio_rate30m",
        "berth_operation:http_5xx:ratio_rate1h",
        "berth:images_signed:ratio",
        "berth:images_with_sbom:ratio",
    ] {
        assert!(rules.recorded.contains(name), "{name} not recorded");
    }
    let alerts: BTreeSet<_> = rules
        .exprs
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !rules.recorded.contains(*n))
        .collect();
    for alert in [
        "BerthPullErrorBudgetFastBurn",
        "BerthPullErrorBudgetBurn",
        "BerthHTTPErrorBudgetFastBurn",
        "BerthHTTPErrorBudgetBurn",
        "BerthDown",
        "BerthGCFailing",
        "BerthScrubFoundCorruption",
    ] {
        assert!(alerts.contains(alert), "no alert {alert}");
    }
}

#[test]
fn checker_flags_a_metric_berth_does_not_export() {
    let known: BTreeSet<String> = ["berth_pulls_total", "berth:pull_success:ratio_rate5m"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let expr = r#"sum(rate(berth_not_a_metric_total{job=~"$job"}[5m])) / sum(rate(berth_pulls_total[5m]))"#;
    assert_eq!(
        unknown_metrics(expr, &known).unwrap(),
        ["berth_not_a_metric_total"]
    );
    assert_eq!(
        unknown_metrics("berth:pull_success:ratio_rate5m > 0.99", &known).unwrap(),
        Vec::<String>::new()
    );
    // Also when the unknown name hides in a recording rule or a bare selector.
    assert_eq!(
        unknown_metrics("berth:made_up:ratio or {__name__=\"berth_nope\"}", &known).unwrap(),
        ["berth:made_up:ratio", "berth_nope"]
    );
}

#[test]
fn tokenizer_skips_functions_keywords_labels_ranges_and_variables() {
    let cases: &[(&str, &[&str])] = &[
        ("up == 0", &["up"]),
        (
            r#"sum by (job) (rate(berth_pulls_total{result=~"success|aborted"}[5m]))"#,
            &["berth_pulls_total"],
        ),
        (
            "histogram_quantile(0.95, sum by (le, kind) (rate(berth_pull_duration_seconds_bucket[$__rate_interval])))",
            &["berth_pull_duration_seconds_bucket"],
        ),
        (
            "sum(rate(a_total[5m])) without (instance) / ignoring (x) group_left (y) b",
            &["a_total", "b"],
        ),
        (
            "a:r:ratio_rate1h / on() group_left() (1 - scalar(b:objective))",
            &["a:r:ratio_rate1h", "b:objective"],
        ),
        (
            r#"x > bool 1e-3 and y unless z or count_values("label", w) offset 1h"#,
            &["x", "y", "z", "w"],
        ),
        (
            r#"m{job=~"${job}", operation!="health", by="sum(rate(fake[1m]))"}"#,
            &["m"],
        ),
        (
            r#"max_over_time(m[1h:5m]) * on (job) group_right n offset -30m + Inf - NaN + 0x1F + .5"#,
            &["m", "n"],
        ),
        (
            "time() - max by (instance) (berth_gc_last_run_timestamp_seconds{job=~\"$job\"} > 0)",
            &["berth_gc_last_run_timestamp_seconds"],
        ),
        (
            "SUM BY (job) (RATE(m_total[5m])) # a comment naming fake_metric",
            &["m_total"],
        ),
        (
            r#"label_replace(m, "dst", "$1", "src", "(.*)") @ 1609746000"#,
            &["m"],
        ),
        ("vector(0.999)", &[]),
    ];
    for (expr, want) in cases {
        assert_eq!(&metric_names(expr).unwrap(), want, "{expr}");
    }
    assert!(
        metric_names("sum(rate(m[5m])").is_ok(),
        "open ( is promtool's business"
    );
    assert!(metric_names(r#"m{job="x}"#).is_err());
    assert!(metric_names("m[5m").is_err());
}

#[test]
fn exposition_names_cover_openmetrics_suffixes() {
    let text = "# HELP berth_pulls Pulls.\n# TYPE berth_pulls counter\n\
        berth_pulls_total{kind=\"blob\"} 0\n\
        # TYPE berth_pull_duration_seconds histogram\n# UNIT berth_pull_duration_seconds seconds\n\
        # TYPE berth_tags gauge\nberth_tags 3\n# EOF\n";
    let names = exposition_names(text);
    let want: BTreeSet<String> = [
        "berth_pulls_total",
        "berth_pull_duration_seconds_bucket",
        "berth_pull_duration_seconds_sum",
        "berth_pull_duration_seconds_count",
        "berth_tags",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names, want);
}
