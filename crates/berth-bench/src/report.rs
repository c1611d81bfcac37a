//! The report of a run: built from what the driver measured, written as one JSON
//! object (`--output json`) or as a short table for people.

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::runner::Measured;
use crate::sizes::{format_rate, format_size};
use crate::stats::{LatencySummary, Recorder};

/// Closed loop or open loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// Each worker sends its next request when the previous one is done.
    #[serde(rename = "closed-loop")]
    ClosedLoop,
    /// Requests are sent at fixed intervals whatever the server does.
    #[serde(rename = "open-loop")]
    OpenLoop,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::ClosedLoop => "closed-loop",
            Mode::OpenLoop => "open-loop",
        }
    }
}

/// Statistics of one kind of operation in the mixed scenario.
#[derive(Debug, Clone, Serialize)]
pub struct OperationReport {
    /// Measured operations, successful or not.
    pub requests: u64,
    /// Failed ones.
    pub errors: u64,
    /// Up to 5 distinct error messages.
    pub error_samples: Vec<String>,
    /// Payload bytes of successful operations.
    pub bytes: u64,
    /// Successful operations per second.
    pub requests_per_sec: f64,
    /// Latency of successful operations.
    pub latency_ms: Option<LatencySummary>,
}

impl OperationReport {
    fn of(mut r: Recorder, secs: f64) -> OperationReport {
        let ok = r.latencies_ns.len() as f64;
        OperationReport {
            requests: r.requests(),
            errors: r.errors,
            bytes: r.bytes,
            requests_per_sec: per_sec(ok, secs),
            latency_ms: LatencySummary::of(&mut r.latencies_ns),
            error_samples: r.error_samples,
        }
    }
}

/// Per-operation statistics, serialized as an object in a fixed order.
#[derive(Debug, Clone, Default)]
pub struct Operations(pub Vec<(String, OperationReport)>);

impl Operations {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Operations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, op) in &self.0 {
            map.serialize_entry(name, op)?;
        }
        map.end()
    }
}

fn per_sec(n: f64, secs: f64) -> f64 {
    if secs > 0.0 { n / secs } else { 0.0 }
}

/// What the report says about the run besides the measurements.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Scenario name.
    pub scenario: &'static str,
    /// Base URL.
    pub url: String,
    /// Loop mode.
    pub mode: Mode,
    /// Workers.
    pub concurrency: usize,
    /// Blob size, where it applies.
    pub size_bytes: Option<u64>,
    /// Chunk size (push-chunked).
    pub chunk_size_bytes: Option<u64>,
    /// Open-loop rate.
    pub target_rate: Option<f64>,
    /// Warm-up operations excluded (push, pull).
    pub warmup_operations: Option<u64>,
    /// Warm-up seconds excluded (timed scenarios).
    pub warmup_secs: Option<f64>,
    /// What one measured operation is.
    pub operation: String,
    /// Remarks about the server or the method (e.g. no single-POST uploads).
    pub notes: Vec<String>,
}

/// The report of a measured run (every scenario but `ready`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// Base URL.
    pub url: String,
    /// `closed-loop` or `open-loop`.
    pub mode: Mode,
    /// Workers (one connection each).
    pub concurrency: usize,
    /// Blob size, where it applies.
    pub size_bytes: Option<u64>,
    /// Chunk size (push-chunked).
    pub chunk_size_bytes: Option<u64>,
    /// Measured wall-clock seconds.
    pub measured_secs: f64,
    /// Measured operations, successful or not.
    pub requests: u64,
    /// Failed measured operations.
    pub errors: u64,
    /// Up to 5 distinct error messages.
    pub error_samples: Vec<String>,
    /// Payload bytes moved by successful measured operations.
    pub bytes: u64,
    /// `bytes / measured_secs`.
    pub throughput_bytes_per_sec: f64,
    /// Successful operations per second.
    pub requests_per_sec: f64,
    /// Latency of successful operations (null when there was none).
    pub latency_ms: Option<LatencySummary>,
    /// TCP connections opened by the workers (one each unless the server closed
    /// some or requests failed).
    pub connections_opened: u64,
    /// Open-loop rate asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Warm-up operations excluded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_operations: Option<u64>,
    /// Warm-up seconds excluded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_secs: Option<f64>,
    /// What one measured operation is.
    pub operation: String,
    /// Remarks (joined with "; ").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Per kind of operation (mixed only).
    #[serde(skip_serializing_if = "Operations::is_empty")]
    pub operations: Operations,
}

impl Report {
    /// Build the report from what was measured; `names` names the kinds of
    /// operation (a per-operation breakdown is given when there are several).
    pub fn new(info: RunInfo, measured: Measured, names: &[&str]) -> Report {
        let secs = measured.elapsed.as_secs_f64();
        let connections = measured.connections;
        let mut all = Recorder::default();
        for r in &measured.recorders {
            all.merge(r.clone());
        }
        let operations = if names.len() > 1 {
            Operations(
                names
                    .iter()
                    .zip(measured.recorders)
                    .map(|(n, r)| ((*n).to_owned(), OperationReport::of(r, secs)))
                    .collect(),
            )
        } else {
            Operations::default()
        };
        let ok = all.latencies_ns.len() as f64;
        Report {
            scenario: info.scenario,
            url: info.url,
            mode: info.mode,
            concurrency: info.concurrency,
            size_bytes: info.size_bytes,
            chunk_size_bytes: info.chunk_size_bytes,
            measured_secs: secs,
            requests: all.requests(),
            errors: all.errors,
            bytes: all.bytes,
            throughput_bytes_per_sec: per_sec(all.bytes as f64, secs),
            requests_per_sec: per_sec(ok, secs),
            latency_ms: LatencySummary::of(&mut all.latencies_ns),
            connections_opened: connections,
            error_samples: all.error_samples,
            target_rate: info.target_rate,
            warmup_operations: info.warmup_operations,
            warmup_secs: info.warmup_secs,
            operation: info.operation,
            note: (!info.notes.is_empty()).then(|| info.notes.join("; ")),
            operations,
        }
    }

    /// The report as a table for people.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "berth bench {} against {}", self.scenario, self.url);
        let _ = writeln!(s, "  operation     {}", self.operation);
        let warm = match (self.warmup_operations, self.warmup_secs) {
            (Some(n), _) => format!("{n} warm-up operation(s) excluded"),
            (_, Some(secs)) => format!("{secs} s warm-up excluded"),
            _ => "no warm-up".to_owned(),
        };
        let rate = self
            .target_rate
            .map(|r| format!(" at {r} requests/s"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  mode          {}{rate}, {} worker(s), {} connection(s) opened, {warm}",
            self.mode.as_str(),
            self.concurrency,
            self.connections_opened
        );
        if let Some(size) = self.size_bytes {
            let chunk = self
                .chunk_size_bytes
                .map(|c| format!(" in chunks of {}", format_size(c)))
                .unwrap_or_default();
            let _ = writeln!(s, "  blob size     {}{chunk}", format_size(size));
        }
        let _ = writeln!(s, "  measured      {:.3} s", self.measured_secs);
        let _ = writeln!(
            s,
            "  requests      {} ({} errors), {:.1}/s",
            self.requests, self.errors, self.requests_per_sec
        );
        let _ = writeln!(
            s,
            "  transferred   {}, {}",
            format_size(self.bytes),
            format_rate(self.throughput_bytes_per_sec)
        );
        let _ = writeln!(
            s,
            "  latency ms    {}",
            latency_line(self.latency_ms.as_ref())
        );
        if !self.operations.is_empty() {
            let _ = writeln!(s, "  per operation:");
            for (name, op) in &self.operations.0 {
                let _ = writeln!(
                    s,
                    "    {name:<13} {:>8} req {:>5} err {:>10.1}/s  {}",
                    op.requests,
                    op.errors,
                    op.requests_per_sec,
                    latency_line(op.latency_ms.as_ref())
                );
            }
        }
        if let Some(note) = &self.note {
            let _ = writeln!(s, "  note          {note}");
        }
        for e in &self.error_samples {
            let _ = writeln!(s, "  error         {e}");
        }
        s
    }
}

fn latency_line(l: Option<&LatencySummary>) -> String {
    match l {
        Some(l) => format!(
            "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.max, l.mean
        ),
        None => "none (no successful request)".to_owned(),
    }
}

/// The report of the `ready` scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyReport {
    /// Always `ready`.
    pub scenario: &'static str,
    /// Base URL.
    pub url: String,
    /// Wall-clock time (UNIX epoch, nanoseconds) when the first response arrived.
    pub ready_unix_ns: u64,
    /// Connection attempts, the successful one included.
    pub attempts: u64,
    /// Time from the start of polling to the first response, in milliseconds.
    pub waited_ms: f64,
    /// Status of the first response.
    pub status: u16,
}

impl ReadyReport {
    /// The report as text.
    pub fn to_text(&self) -> String {
        format!(
            "{} answered GET /v2/ ({}) after {:.1} ms and {} attempt(s); ready_unix_ns {}\n",
            self.url, self.status, self.waited_ms, self.attempts, self.ready_unix_ns
        )
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A measured scenario.
    Run(Box<Report>),
    /// The ready scenario.
    Ready(ReadyReport),
}

impl Outcome {
    /// One JSON object.
    pub fn to_json(&self) -> String {
        let v = match self {
            Outcome::Run(r) => serde_json::to_string(r),
            Outcome::Ready(r) => serde_json::to_string(r),
        };
        v.unwrap_or_else(|e| format!("{{\"error\":\"serializing the report: {e}\"}}"))
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        match self {
            Outcome::Run(r) => r.to_text(),
            Outcome::Ready(r) => r.to_text(),
        }
    }

    /// Whether any measured request failed (exit code 1).
    pub fn has_errors(&self) -> bool {
        matches!(self, Outcome::Run(r) if r.errors > 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    fn info(names: usize) -> RunInfo {
        RunInfo {
            scenario: if names > 1 { "mixed" } else { "push" },
            url: "http://h:1".into(),
            mode: Mode::ClosedLoop,
            concurrency: 2,
            size_bytes: Some(100),
            chunk_size_bytes: None,
            target_rate: None,
            warmup_operations: Some(1),
            warmup_secs: None,
            operation: "POST".into(),
            notes: vec![],
        }
    }

    #[test]
    fn json_has_the_contract_fields() {
        let mut r = Recorder::default();
        r.ok(Duration::from_millis(10), 100);
        r.ok(Duration::from_millis(30), 100);
        r.error("POST x: 500".into());
        let m = Measured {
            recorders: vec![r],
            elapsed: Duration::from_secs(2),
            connections: 2,
        };
        let rep = Report::new(info(1), m, &["push"]);
        let v: serde_json::Value =
            serde_json::from_str(&Outcome::Run(Box::new(rep)).to_json()).unwrap();
        assert_eq!(v["scenario"], "push");
        assert_eq!(v["mode"], "closed-loop");
        assert_eq!(v["chunk_size_bytes"], serde_json::Value::Null);
        assert_eq!(v["requests"], 3);
        assert_eq!(v["errors"], 1);
        assert_eq!(v["bytes"], 200);
        assert_eq!(v["throughput_bytes_per_sec"], 100.0);
        assert_eq!(v["requests_per_sec"], 1.0);
        assert_eq!(v["latency_ms"]["p50"], 10.0);
        assert_eq!(v["latency_ms"]["max"], 30.0);
        assert_eq!(v["latency_ms"]["mean"], 20.0);
        assert_eq!(v["error_samples"][0], "POST x: 500");
        assert!(v.get("operations").is_none());
        assert!(v.get("note").is_none());
    }

    #[test]
    fn mixed_has_operations_in_order_and_text_mentions_warmup() {
        let mut a = Recorder::default();
        a.ok(Duration::from_millis(1), 5);
        let m = Measured {
            recorders: vec![a, Recorder::default()],
            elapsed: Duration::from_secs(1),
            connections: 2,
        };
        let mut i = info(2);
        i.notes = vec!["a".into(), "b".into()];
        let rep = Report::new(i, m, &["manifest_get", "blob_get"]);
        let json = serde_json::to_string(&rep).unwrap();
        assert!(json.find("manifest_get").unwrap() < json.find("blob_get").unwrap());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["operations"]["blob_get"]["latency_ms"],
            serde_json::Value::Null
        );
        assert_eq!(v["note"], "a; b");
        let text = rep.to_text();
        assert!(text.contains("closed-loop"), "{text}");
        assert!(text.contains("warm-up operation(s) excluded"), "{text}");
        assert!(text.contains("manifest_get"), "{text}");
    }
}
