//! What a run measured: per-operation recorders filled by the workers, merged at the
//! end, and latency summaries with nearest-rank percentiles.

use std::time::Duration;

use serde::Serialize;

/// Most distinct error messages kept as samples.
pub const MAX_ERROR_SAMPLES: usize = 5;

/// Measurements of one kind of operation (one per scenario, four in `mixed`).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Latency of every successful measured operation, in nanoseconds.
    pub latencies_ns: Vec<u64>,
    /// Failed measured operations.
    pub errors: u64,
    /// Up to [`MAX_ERROR_SAMPLES`] distinct error messages.
    pub error_samples: Vec<String>,
    /// Payload bytes moved by successful measured operations.
    pub bytes: u64,
}

impl Recorder {
    /// Record a successful operation.
    pub fn ok(&mut self, latency: Duration, bytes: u64) {
        self.latencies_ns
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        self.bytes += bytes;
    }

    /// Record a failed operation.
    pub fn error(&mut self, message: String) {
        self.errors += 1;
        self.add_sample(message);
    }

    fn add_sample(&mut self, message: String) {
        if self.error_samples.len() < MAX_ERROR_SAMPLES && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }

    /// Successful plus failed operations.
    pub fn requests(&self) -> u64 {
        self.latencies_ns.len() as u64 + self.errors
    }

    /// Add everything `other` recorded.
    pub fn merge(&mut self, other: Recorder) {
        self.latencies_ns.extend(other.latencies_ns);
        self.errors += other.errors;
        self.bytes += other.bytes;
        for s in other.error_samples {
            self.add_sample(s);
        }
    }
}

/// Latency percentiles and mean, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl LatencySummary {
    /// Summarize `latencies_ns` (sorted in place); `None` when empty.
    pub fn of(latencies_ns: &mut [u64]) -> Option<LatencySummary> {
        if latencies_ns.is_empty() {
            return None;
        }
        latencies_ns.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        let sum: u128 = latencies_ns.iter().map(|&v| u128::from(v)).sum();
        let mean = sum as f64 / latencies_ns.len() as f64 / 1e6;
        Some(LatencySummary {
            p50: ms(nearest_rank(latencies_ns, 50.0)?),
            p90: ms(nearest_rank(latencies_ns, 90.0)?),
            p99: ms(nearest_rank(latencies_ns, 99.0)?),
            max: ms(*latencies_ns.last()?),
            mean,
        })
    }
}

/// The nearest-rank `p`-th percentile of `sorted` (ascending): the smallest value
/// such that at least `p`% of the values are less than or equal to it, i.e.
/// `sorted[ceil(p/100 · n) − 1]`. `None` for an empty slice.
pub fn nearest_rank(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // p·n first: exact for whole percentiles, so 99% of 100 values is rank 99.
    let rank = (p * n as f64 / 100.0).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    sorted.get(index).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn nearest_rank_matches_the_definition() {
        // The classic example: 15, 20, 35, 40, 50.
        let v = [15, 20, 35, 40, 50];
        assert_eq!(nearest_rank(&v, 5.0), Some(15));
        assert_eq!(nearest_rank(&v, 30.0), Some(20));
        assert_eq!(nearest_rank(&v, 40.0), Some(20));
        assert_eq!(nearest_rank(&v, 50.0), Some(35));
        assert_eq!(nearest_rank(&v, 100.0), Some(50));
        assert_eq!(nearest_rank(&v, 0.0), Some(15));
        assert_eq!(nearest_rank(&[], 50.0), None);
        assert_eq!(nearest_rank(&[7], 99.0), Some(7));
    }

    #[test]
    fn percentiles_of_1_to_100() {
        let mut v: Vec<u64> = (1..=100).rev().map(|ms| ms * 1_000_000).collect();
        let s = LatencySummary::of(&mut v).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert!(LatencySummary::of(&mut []).is_none());
    }

    #[test]
    fn recorder_merges_and_keeps_few_distinct_samples() {
        let mut a = Recorder::default();
        a.ok(Duration::from_millis(2), 10);
        a.error("x".into());
        a.error("x".into());
        let mut b = Recorder::default();
        b.ok(Duration::from_millis(1), 5);
        for i in 0..10 {
            b.error(format!("e{i}"));
        }
        a.merge(b);
        assert_eq!(a.requests(), 14);
        assert_eq!(a.errors, 12);
        assert_eq!(a.bytes, 15);
        assert_eq!(a.error_samples, ["x", "e0", "e1", "e2", "e3"]);
    }
}
