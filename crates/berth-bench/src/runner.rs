//! The drivers that run workers and time them: a number of operations
//! ([`run_iterations`]), a duration in closed loop, or a duration in open loop at
//! a fixed rate ([`run_timed`]). A [`Worker`] prepares each operation untimed
//! (random content, digests, JSON) and then runs it timed on its own connection.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::error::BenchError;
use crate::http::{Conn, Target};
use crate::stats::Recorder;

/// The outcome of one operation: payload bytes moved, or an error sample.
pub type OpResult = Result<u64, String>;

/// One worker's operations.
pub trait Worker: Send + 'static {
    /// A prepared operation.
    type Op: Send;

    /// Prepare operation number `index` (untimed). Returns the kind of operation
    /// (an index into the scenario's operation names) and the operation.
    fn prepare(&mut self, index: u64) -> (usize, Self::Op);

    /// Run a prepared operation (timed).
    fn run(&mut self, conn: &mut Conn, op: Self::Op) -> impl Future<Output = OpResult> + Send;
}

/// What a driver measured: one recorder per kind of operation, and the measured
/// wall-clock time.
#[derive(Debug)]
pub struct Measured {
    /// Per kind of operation.
    pub recorders: Vec<Recorder>,
    /// From the start of the measured phase to the end of its last operation.
    pub elapsed: Duration,
    /// TCP connections the workers opened (warm-up included): more than one per
    /// worker means the server closed connections or requests failed.
    pub connections: u64,
}

fn merge_into(total: &mut Vec<Recorder>, part: Vec<Recorder>) {
    if total.len() < part.len() {
        total.resize_with(part.len(), Recorder::default);
    }
    for (t, p) in total.iter_mut().zip(part) {
        t.merge(p);
    }
}

/// Pause after a failure that left no connection, so that a worker facing a dead
/// server retries about a thousand times a second rather than spinning.
pub const FAILED_CONNECTION_PAUSE: Duration = Duration::from_millis(1);

async fn pause_if_disconnected(conn: &Conn, failed: bool) {
    if failed && !conn.is_connected() {
        tokio::time::sleep(FAILED_CONNECTION_PAUSE).await;
    }
}

/// Run one operation, failing it (and dropping its connection, whose state is
/// unknown) when it takes longer than `limit`.
async fn run_op<W: Worker>(w: &mut W, conn: &mut Conn, op: W::Op, limit: Duration) -> OpResult {
    match tokio::time::timeout(limit, w.run(conn, op)).await {
        Ok(result) => result,
        Err(_) => {
            conn.reset();
            Err(format!(
                "operation timed out after {} s",
                limit.as_secs_f64()
            ))
        }
    }
}

fn record(recs: &mut [Recorder], kind: usize, latency: Duration, result: OpResult) {
    if let Some(r) = recs.get_mut(kind) {
        match result {
            Ok(bytes) => r.ok(latency, bytes),
            Err(message) => r.error(message),
        }
    }
}

/// Run `warmup` operations unmeasured, then `iterations` measured, shared among the
/// workers (each on its own connection, opened before the measured phase and kept
/// across both phases).
pub async fn run_iterations<W: Worker>(
    target: &Arc<Target>,
    workers: Vec<W>,
    kinds: usize,
    warmup: u64,
    iterations: u64,
    limit: Duration,
) -> Result<Measured, BenchError> {
    let pairs: Vec<(W, Conn)> = workers
        .into_iter()
        .map(|w| (w, Conn::new(target.clone())))
        .collect();
    let (mut pairs, _) = phase(pairs, kinds, 0, warmup, limit).await?;
    for (_, conn) in &mut pairs {
        conn.warm().await;
    }
    let start = Instant::now();
    let (pairs, recorders) = phase(pairs, kinds, warmup, warmup + iterations, limit).await?;
    let elapsed = start.elapsed();
    Ok(Measured {
        recorders,
        elapsed,
        connections: pairs.iter().map(|(_, c)| c.connects()).sum(),
    })
}

/// Operations `from..to`, taken by the workers from a shared counter.
async fn phase<W: Worker>(
    pairs: Vec<(W, Conn)>,
    kinds: usize,
    from: u64,
    to: u64,
    limit: Duration,
) -> Result<(Vec<(W, Conn)>, Vec<Recorder>), BenchError> {
    let next = Arc::new(AtomicU64::new(from));
    let mut set = JoinSet::new();
    for (mut w, mut conn) in pairs {
        let next = next.clone();
        set.spawn(async move {
            let mut recs = vec![Recorder::default(); kinds];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    break;
                }
                let (kind, op) = w.prepare(i);
                let t0 = Instant::now();
                let result = run_op(&mut w, &mut conn, op, limit).await;
                let failed = result.is_err();
                record(&mut recs, kind, t0.elapsed(), result);
                pause_if_disconnected(&conn, failed).await;
            }
            (w, conn, recs)
        });
    }
    let mut back = Vec::new();
    let mut total = vec![Recorder::default(); kinds];
    while let Some(joined) = set.join_next().await {
        let (w, conn, recs) = joined?;
        back.push((w, conn));
        merge_into(&mut total, recs);
    }
    Ok((back, total))
}

/// The time plan of a timed run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Unmeasured time first.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Open loop: total requests per second over all workers.
    pub rate: Option<f64>,
    /// Longest an operation may run.
    pub op_timeout: Duration,
}

/// Run the workers for `timing.warmup + timing.duration`, each on its own
/// connection (opened before the clock starts). Operations started in the
/// warm-up are not recorded.
///
/// Closed loop (no rate): each worker sends its next request when the previous
/// one is done, and a request's latency is its own duration.
///
/// Open loop (`rate`): request `k` of the whole run is due at `k / rate` seconds,
/// and is sent by worker `k mod workers`; its latency runs from the time it was
/// due, so a slow response that delays the requests behind it is charged to
/// them too (no coordinated omission). When the worker was idle and only its
/// timer woke a little late (the runtime's timer ticks in milliseconds), the
/// latency runs from the actual send instead: that delay is the load
/// generator's, not the server's.
pub async fn run_timed<W: Worker>(
    target: &Arc<Target>,
    workers: Vec<W>,
    kinds: usize,
    timing: Timing,
) -> Result<Measured, BenchError> {
    let count = workers.len() as u64;
    let limit = timing.op_timeout;
    let mut pairs = Vec::with_capacity(workers.len());
    for w in workers {
        let mut conn = Conn::new(target.clone());
        conn.warm().await;
        pairs.push((w, conn));
    }
    let start = Instant::now();
    let warm_end = start + timing.warmup;
    let end = warm_end + timing.duration;
    let mut set = JoinSet::new();
    for (index, (mut w, mut conn)) in pairs.into_iter().enumerate() {
        set.spawn(async move {
            let mut recs = vec![Recorder::default(); kinds];
            let mut i = 0u64;
            loop {
                let (kind, op) = w.prepare(i);
                // `t0`: where the latency starts; `slot`: when the request belongs.
                let (t0, slot) = match timing.rate {
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        (now, now)
                    }
                    Some(rate) => {
                        let k = index as u64 + i * count;
                        let due = start + Duration::from_secs_f64(k as f64 / rate);
                        if due >= end {
                            break;
                        }
                        if Instant::now() < due {
                            tokio::time::sleep_until(due.into()).await;
                            (Instant::now(), due)
                        } else {
                            (due, due)
                        }
                    }
                };
                i += 1;
                let result = run_op(&mut w, &mut conn, op, limit).await;
                let failed = result.is_err();
                if slot >= warm_end {
                    record(&mut recs, kind, t0.elapsed(), result);
                }
                pause_if_disconnected(&conn, failed).await;
            }
            (recs, conn.connects())
        });
    }
    let mut total = vec![Recorder::default(); kinds];
    let mut connections = 0;
    while let Some(joined) = set.join_next().await {
        let (recs, connects) = joined?;
        merge_into(&mut total, recs);
        connections += connects;
    }
    Ok(Measured {
        recorders: total,
        elapsed: Instant::now().saturating_duration_since(warm_end),
        connections,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Sleeps `delay` per operation without touching the network.
    struct Sleeper {
        delay: Duration,
    }

    impl Worker for Sleeper {
        type Op = u64;

        fn prepare(&mut self, index: u64) -> (usize, u64) {
            ((index % 2) as usize, index)
        }

        async fn run(&mut self, _conn: &mut Conn, _op: u64) -> OpResult {
            tokio::time::sleep(self.delay).await;
            Ok(1)
        }
    }

    fn nowhere() -> Arc<Target> {
        // Port 1 on loopback refuses at once; the workers never send anyway.
        Arc::new(Target::new("http://127.0.0.1:1", None).unwrap())
    }

    #[tokio::test]
    async fn iterations_are_shared_and_warmup_is_not_recorded() {
        let workers = (0..3)
            .map(|_| Sleeper {
                delay: Duration::ZERO,
            })
            .collect();
        let m = run_iterations(&nowhere(), workers, 2, 5, 10, Duration::from_secs(5))
            .await
            .unwrap();
        let total: u64 = m.recorders.iter().map(Recorder::requests).sum();
        assert_eq!(total, 10);
        // Indices 5..15: kinds alternate, five each.
        assert_eq!(m.recorders[0].requests(), 5);
        assert_eq!(m.recorders[1].bytes, 5);
    }

    #[tokio::test]
    async fn open_loop_sends_on_schedule() {
        let workers = (0..4)
            .map(|_| Sleeper {
                delay: Duration::ZERO,
            })
            .collect();
        let timing = Timing {
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
            rate: Some(100.0),
            op_timeout: Duration::from_secs(5),
        };
        let m = run_timed(&nowhere(), workers, 2, timing).await.unwrap();
        let total: u64 = m.recorders.iter().map(Recorder::requests).sum();
        // Due at k/100 s for k in 0..40; those due in the first 100 ms are warm-up.
        assert_eq!(total, 30);
        assert!(m.elapsed >= Duration::from_millis(290), "{:?}", m.elapsed);
    }

    #[tokio::test]
    async fn open_loop_charges_the_wait_behind_a_slow_response() {
        // One worker, 100/s scheduled, 50 ms per response: request k waits for
        // k·40 ms more than the one before it, and latencies grow accordingly.
        let workers = vec![Sleeper {
            delay: Duration::from_millis(50),
        }];
        let timing = Timing {
            warmup: Duration::ZERO,
            duration: Duration::from_millis(100),
            rate: Some(100.0),
            op_timeout: Duration::from_secs(5),
        };
        let mut m = run_timed(&nowhere(), workers, 2, timing).await.unwrap();
        let mut all = Recorder::default();
        for r in m.recorders.drain(..) {
            all.merge(r);
        }
        assert_eq!(all.requests(), 10);
        let max = all.latencies_ns.iter().max().copied().unwrap();
        // The tenth request was due at 90 ms and finished at about 500 ms.
        assert!(max >= 380_000_000, "max latency {max} ns");
    }

    #[tokio::test]
    async fn slow_operations_time_out_as_errors() {
        let workers = vec![Sleeper {
            delay: Duration::from_secs(10),
        }];
        let timing = Timing {
            warmup: Duration::ZERO,
            duration: Duration::from_millis(100),
            rate: None,
            op_timeout: Duration::from_millis(30),
        };
        let m = run_timed(&nowhere(), workers, 2, timing).await.unwrap();
        let errors: u64 = m.recorders.iter().map(|r| r.errors).sum();
        assert!(errors >= 2, "{m:?}");
        assert!(m.elapsed < Duration::from_secs(1));
        let sample = &m
            .recorders
            .iter()
            .find(|r| r.errors > 0)
            .unwrap()
            .error_samples[0];
        assert_eq!(sample, "operation timed out after 0.03 s");
    }
}
