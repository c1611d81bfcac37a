//! Command-line arguments ([`BenchArgs`], clap) and the checked settings of a run
//! ([`Options`]): `BenchArgs::into_options` validates every flag against the
//! scenario and names the flag in its error.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use berth_oci::RepoName;
use clap::{Args, ValueEnum};

use crate::error::BenchError;
use crate::http::Target;
use crate::sizes::{SizeError, parse_size};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Monolithic blob pushes (`POST ?digest=` with the body).
    Push,
    /// Chunked blob pushes (`POST`, `PATCH`…, `PUT ?digest=`).
    PushChunked,
    /// Blob downloads.
    Pull,
    /// Manifest `GET`/`HEAD` requests per second.
    Manifest,
    /// `tags/list` requests per second.
    Tags,
    /// Weighted mix: 70% manifest GET, 20% blob GET, 5% blob HEAD, 5% push.
    Mixed,
    /// Create many repositories and tags (cross-repository mounts).
    Seed,
    /// Wait until `GET /v2/` answers; print when.
    Ready,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Push => "push",
            Scenario::PushChunked => "push-chunked",
            Scenario::Pull => "pull",
            Scenario::Manifest => "manifest",
            Scenario::Tags => "tags",
            Scenario::Mixed => "mixed",
            Scenario::Seed => "seed",
            Scenario::Ready => "ready",
        }
    }

    /// Whether the scenario runs for a duration (else for a number of operations).
    pub fn is_timed(self) -> bool {
        matches!(self, Scenario::Manifest | Scenario::Tags | Scenario::Mixed)
    }

    /// Whether `--size` means something to this scenario.
    pub fn uses_size(self) -> bool {
        matches!(
            self,
            Scenario::Push | Scenario::PushChunked | Scenario::Pull | Scenario::Mixed
        )
    }
}

/// How the manifest scenario names the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    /// `/manifests/latest`.
    Tag,
    /// `/manifests/sha256:…`.
    Digest,
}

/// The manifest scenario's request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManifestMethod {
    /// Headers and body.
    Get,
    /// Headers only.
    Head,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A short table for people.
    Text,
    /// One JSON object on stdout.
    Json,
}

fn size_arg(s: &str) -> Result<u64, SizeError> {
    parse_size(s)
}

/// `berth bench` arguments. Plain HTTP only; `--user` sends HTTP Basic
/// credentials (no token flow).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of the registry, e.g. http://127.0.0.1:5000 (plain HTTP).
    #[arg(value_name = "URL")]
    pub url: String,
    /// What to measure.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Repository (seed: prefix; repositories are REPO-0, REPO-1, …).
    #[arg(long, default_value = "bench/s", value_name = "NAME")]
    pub repo: String,
    /// Blob size for push, push-chunked, pull and mixed (binary units: KiB/k,
    /// MiB/M, GiB/G). In mixed it is the blob 20% of requests read: pass a small
    /// one such as 1MiB.
    #[arg(long, default_value = "64MiB", value_name = "BYTES", value_parser = size_arg)]
    pub size: u64,
    /// push-chunked: bytes per PATCH.
    #[arg(long, default_value = "16MiB", value_name = "BYTES", value_parser = size_arg)]
    pub chunk_size: u64,
    /// Workers, one connection each.
    #[arg(short, long, default_value_t = 1, value_name = "N")]
    pub concurrency: usize,
    /// Measured seconds for manifest, tags and mixed.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub duration: f64,
    /// Measured operations for push, push-chunked and pull.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub iterations: u64,
    /// Un-measured warm-up: operations (push, push-chunked, pull) or seconds
    /// (manifest, tags, mixed). Excluded from every statistic.
    #[arg(long, default_value_t = 1.0, value_name = "N")]
    pub warmup: f64,
    /// manifest: reference by tag or by digest.
    #[arg(long, value_enum, default_value = "tag")]
    pub by: By,
    /// manifest: request method.
    #[arg(long, value_enum, default_value = "get")]
    pub method: ManifestMethod,
    /// tags: tags in the repository [default 1000]; seed: tags per repository
    /// [default 10].
    #[arg(long, value_name = "N")]
    pub tags: Option<u32>,
    /// tags: page size (`n=`) of each measured tags/list request.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub page: u32,
    /// tags: each measured request follows `Link` headers to the last page.
    #[arg(long)]
    pub all_pages: bool,
    /// seed: number of repositories.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub repos: u32,
    /// pull, mixed: hash every Nth blob body and compare it with the digest (0:
    /// never; status and length are always checked).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub verify_every: u64,
    /// manifest, mixed: open loop at R requests per second in total, latency
    /// measured from each request's scheduled time (default: closed loop).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// ready: give up after this many seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// An operation still running after this many seconds fails (and its
    /// connection is dropped), so a stalled server cannot hang the run.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub op_timeout: f64,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// HTTP Basic credentials USER:PASS.
    #[arg(long, value_name = "USER:PASS")]
    pub user: Option<String>,
    /// Runtime threads of the load generator [default: 1 with -c 1, else the
    /// number of CPUs].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// The checked settings of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// What to measure.
    pub scenario: Scenario,
    /// The registry.
    pub target: Arc<Target>,
    /// Repository (validated).
    pub repo: String,
    /// Blob size in bytes.
    pub size: u64,
    /// PATCH size for push-chunked.
    pub chunk_size: u64,
    /// Workers.
    pub concurrency: usize,
    /// Measured time of timed scenarios.
    pub duration: Duration,
    /// Measured operations of push/pull.
    pub iterations: u64,
    /// Warm-up operations of push/pull.
    pub warmup_ops: u64,
    /// Warm-up time of timed scenarios.
    pub warmup: Duration,
    /// Manifest reference kind.
    pub by: By,
    /// Manifest method.
    pub method: ManifestMethod,
    /// Tags (tags: in the repository; seed: per repository).
    pub tags: u32,
    /// `n=` of tags/list.
    pub page: u32,
    /// Follow `Link` headers.
    pub all_pages: bool,
    /// Repositories to seed.
    pub repos: u32,
    /// Hash every Nth blob (0 never).
    pub verify_every: u64,
    /// Open-loop rate (requests/s in total).
    pub rate: Option<f64>,
    /// ready: give up after this.
    pub timeout: Duration,
    /// Longest an operation may run before it counts as failed.
    pub op_timeout: Duration,
    /// Report format.
    pub output: Output,
    /// Runtime threads.
    pub threads: usize,
}

fn usage(msg: impl Into<String>) -> BenchError {
    BenchError::Usage(msg.into())
}

fn seconds(flag: &str, v: f64, allow_zero: bool) -> Result<Duration, BenchError> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) || v > 1e9 {
        let what = if allow_zero {
            "0 or more"
        } else {
            "more than 0"
        };
        return Err(usage(format!("{flag} must be {what} seconds, not {v}")));
    }
    Ok(Duration::from_secs_f64(v))
}

impl BenchArgs {
    /// Check the arguments against each other and the scenario.
    pub fn into_options(self) -> Result<Options, BenchError> {
        let s = self.scenario;
        let target =
            Target::new(&self.url, self.user.as_deref()).map_err(|e| usage(e.to_string()))?;
        RepoName::from_str(&self.repo)
            .map_err(|e| usage(format!("--repo {:?}: {e}", self.repo)))?;
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err(usage(format!(
                "--concurrency must be 1 to 10000, not {}",
                self.concurrency
            )));
        }
        if s.uses_size() && self.size == 0 {
            return Err(usage("--size must be at least 1 byte"));
        }
        if usize::try_from(self.size).is_err() {
            return Err(usage("--size does not fit in memory on this machine"));
        }
        if self.chunk_size == 0 {
            return Err(usage("--chunk-size must be at least 1 byte"));
        }
        if self.iterations == 0 {
            return Err(usage("--iterations must be at least 1"));
        }
        let duration = seconds("--duration", self.duration, false)?;
        let warmup = seconds("--warmup", self.warmup, true)?;
        let warmup_ops = if s.is_timed() {
            0
        } else if self.warmup.fract() != 0.0 {
            return Err(usage(format!(
                "--warmup counts operations for {}: a whole number, not {}",
                s.name(),
                self.warmup
            )));
        } else {
            self.warmup as u64
        };
        if let Some(r) = self.rate {
            if !matches!(s, Scenario::Manifest | Scenario::Mixed) {
                return Err(usage(
                    "--rate applies to the manifest and mixed scenarios only",
                ));
            }
            if !r.is_finite() || r <= 0.0 || r > 10_000_000.0 {
                return Err(usage(format!(
                    "--rate must be more than 0 requests/s, not {r}"
                )));
            }
        }
        let tags = self
            .tags
            .unwrap_or(if s == Scenario::Seed { 10 } else { 1000 });
        if tags == 0 || tags > 1_000_000 {
            return Err(usage(format!("--tags must be 1 to 1000000, not {tags}")));
        }
        if self.page == 0 {
            return Err(usage("--page must be at least 1"));
        }
        if self.repos == 0 || self.repos > 1_000_000 {
            return Err(usage(format!(
                "--repos must be 1 to 1000000, not {}",
                self.repos
            )));
        }
        let timeout = seconds("--timeout", self.timeout, false)?;
        let op_timeout = seconds("--op-timeout", self.op_timeout, false)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match self.threads {
            Some(0) => return Err(usage("--threads must be at least 1")),
            Some(t) => t,
            None if self.concurrency == 1 => 1,
            None => cpus.min(self.concurrency),
        };
        Ok(Options {
            scenario: s,
            target: Arc::new(target),
            repo: self.repo,
            size: self.size,
            chunk_size: self.chunk_size,
            concurrency: self.concurrency,
            duration,
            iterations: self.iterations,
            warmup_ops,
            warmup,
            by: self.by,
            method: self.method,
            tags,
            page: self.page,
            all_pages: self.all_pages,
            repos: self.repos,
            verify_every: self.verify_every,
            rate: self.rate,
            timeout,
            op_timeout,
            output: self.output,
            threads,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::Parser;
    use rstest::rstest;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<Options, String> {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.args.into_options().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let o = parse(&["http://127.0.0.1:5000", "--scenario", "push"]).unwrap();
        assert_eq!(o.size, 64 << 20);
        assert_eq!(o.chunk_size, 16 << 20);
        assert_eq!((o.concurrency, o.iterations, o.warmup_ops), (1, 5, 1));
        assert_eq!(o.repo, "bench/s");
        assert_eq!(o.tags, 1000);
        assert_eq!(o.threads, 1);
        let o = parse(&["http://h:1", "--scenario", "seed"]).unwrap();
        assert_eq!((o.tags, o.repos), (10, 100));
        let o = parse(&[
            "http://h:1",
            "--scenario",
            "manifest",
            "-c",
            "50",
            "--duration",
            "0.5",
            "--warmup",
            "0.25",
            "--by",
            "digest",
            "--method",
            "head",
            "--rate",
            "1000",
        ])
        .unwrap();
        assert_eq!(o.duration, Duration::from_millis(500));
        assert_eq!(o.warmup, Duration::from_millis(250));
        assert_eq!(
            (o.by, o.method, o.rate),
            (By::Digest, ManifestMethod::Head, Some(1000.0))
        );
        let o = parse(&[
            "http://h:1",
            "--scenario",
            "push-chunked",
            "--size",
            "3M",
            "--chunk-size",
            "512k",
        ])
        .unwrap();
        assert_eq!((o.size, o.chunk_size), (3 << 20, 512 << 10));
    }

    #[rstest]
    #[case(&["--scenario", "push", "--size", "10MB"], "--size")]
    #[case(&["--scenario", "push", "--size", "lots"], "--size")]
    #[case(&["--scenario", "push-chunked", "--chunk-size", "1.5M"], "--chunk-size")]
    #[case(&["--scenario", "push", "--size", "0"], "--size must be at least 1 byte")]
    #[case(&["--scenario", "push-chunked", "--chunk-size", "0"], "--chunk-size must be at least 1")]
    #[case(&["--scenario", "nope"], "--scenario")]
    #[case(&["--scenario", "push", "-c", "0"], "--concurrency")]
    #[case(&["--scenario", "push", "--iterations", "0"], "--iterations")]
    #[case(&["--scenario", "push", "--warmup", "0.5"], "--warmup counts operations")]
    #[case(&["--scenario", "manifest", "--duration", "0"], "--duration must be more than 0")]
    #[case(&["--scenario", "manifest", "--duration", "NaN"], "--duration")]
    #[case(&["--scenario", "tags", "--warmup=-1"], "--warmup must be 0 or more")]
    #[case(&["--scenario", "pull", "--rate", "100"], "--rate applies to the manifest and mixed")]
    #[case(&["--scenario", "manifest", "--rate", "0"], "--rate must be more than 0")]
    #[case(&["--scenario", "tags", "--page", "0"], "--page")]
    #[case(&["--scenario", "seed", "--repos", "0"], "--repos")]
    #[case(&["--scenario", "tags", "--tags", "0"], "--tags")]
    #[case(&["--scenario", "ready", "--timeout", "0"], "--timeout")]
    #[case(&["--scenario", "pull", "--op-timeout", "0"], "--op-timeout must be more than 0")]
    #[case(&["--scenario", "push", "--repo", "Bad/Name"], "--repo")]
    #[case(&["--scenario", "push", "--user", "alice"], "--user must be USER:PASS")]
    #[case(&["--scenario", "push", "--threads", "0"], "--threads")]
    #[case(&["--scenario", "manifest", "--by", "name"], "--by")]
    fn bad_arguments_name_the_flag(#[case] args: &[&str], #[case] want: &str) {
        let mut all = vec!["http://127.0.0.1:5000"];
        all.extend_from_slice(args);
        let err = parse(&all).expect_err("must fail");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    #[test]
    fn bad_urls() {
        let err = parse(&["https://127.0.0.1:5000", "--scenario", "ready"]).unwrap_err();
        assert!(err.contains("plain HTTP"), "{err}");
        let err = parse(&["127.0.0.1:5000", "--scenario", "ready"]).unwrap_err();
        assert!(err.contains("URL"), "{err}");
    }
}
