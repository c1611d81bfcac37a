//! Token-bucket rate limiting, keyed by a string (a client address, a user
//! name, `login:<address>`, …).
//!
//! Each key has a bucket holding up to [`Rate::burst`] tokens, refilled at
//! [`Rate::per_second`]; a request takes one token (or `cost` tokens) and is
//! refused when there are not enough, with the time to wait as the
//! `Retry-After` value. A new key starts with a full bucket.
//!
//! Buckets that have refilled completely are indistinguishable from absent
//! ones, so they are dropped lazily (at most once a minute, or sooner when the
//! map has doubled in size since the last sweep): memory stays proportional
//! to the keys active within about one refill period.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A token-bucket rate: `burst` requests at once, then `per_second` on average.
#[derive(serde::Deserialize, serde::Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Tokens added per second (may be fractional, e.g. `0.1` = one per 10 s).
    pub per_second: f64,
    /// Bucket size: how many requests may come at once.
    pub burst: u32,
}

impl Rate {
    /// Check the values: `per_second` must be finite and positive, `burst` at least 1.
    ///
    /// [`RateLimiter::new`] accepts any value (a non-positive or non-finite
    /// `per_second` never refills; a `burst` of 0 acts as 1), so call this
    /// when loading configuration to report mistakes.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(format!(
                "per_second must be a positive number, not {}",
                self.per_second
            ));
        }
        if self.burst == 0 {
            return Err("burst must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// The longest `Retry-After` ever returned (for rates that never refill).
const MAX_RETRY: Duration = Duration::from_secs(24 * 60 * 60);

/// How often idle buckets are swept at the latest.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Sweep early once the map holds this many buckets (doubled after each sweep).
const MIN_SWEEP_LEN: usize = 1024;

/// Tolerance for floating-point rounding when comparing token counts.
const EPSILON: f64 = 1e-9;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<String, Bucket>,
    last_sweep: Instant,
    sweep_at_len: usize,
}

/// Token buckets keyed by string, safe to share between threads.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    /// Tokens per second actually used (0 when the rate is invalid).
    refill: f64,
    /// Capacity actually used (at least 1).
    capacity: f64,
    state: Mutex<State>,
}

impl RateLimiter {
    /// A limiter where every key gets `rate`. See [`Rate::validate`] for the
    /// treatment of invalid values.
    pub fn new(rate: Rate) -> Self {
        let refill = if rate.per_second.is_finite() && rate.per_second > 0.0 {
            rate.per_second
        } else {
            0.0
        };
        RateLimiter {
            rate,
            refill,
            capacity: f64::from(rate.burst.max(1)),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                last_sweep: Instant::now(),
                sweep_at_len: MIN_SWEEP_LEN,
            }),
        }
    }

    /// The rate this limiter was made with.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Take one token for `key` now. `Err` carries the `Retry-After`: the time
    /// until a token is available, rounded up to whole seconds, at least 1 s.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, 1, Instant::now())
    }

    /// Take `cost` tokens for `key` now (e.g. a higher cost for expensive
    /// requests). See [`RateLimiter::check_at`].
    pub fn check_cost(&self, key: &str, cost: u32) -> Result<(), Duration> {
        self.check_at(key, cost, Instant::now())
    }

    /// Take `cost` tokens for `key` at time `now` (for tests, with an injected
    /// clock; `now` earlier than a previous call counts as no time passing).
    ///
    /// A `cost` above the burst is treated as the burst (so it can succeed
    /// with a full bucket); a cost of 0 always succeeds. On refusal nothing is
    /// taken and `Err` holds the time until `cost` tokens are available,
    /// rounded up to whole seconds, at least 1 s (at most a day, for a rate
    /// that never refills).
    pub fn check_at(&self, key: &str, cost: u32, now: Instant) -> Result<(), Duration> {
        let cost = f64::from(cost).min(self.capacity);
        let mut state = self.lock();
        self.maybe_sweep(&mut state, now);
        let capacity = self.capacity;
        let refill = self.refill;
        let bucket = state.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated);
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * refill).min(capacity);
        bucket.updated = bucket.updated.max(now);
        if bucket.tokens + EPSILON >= cost {
            bucket.tokens = (bucket.tokens - cost).max(0.0);
            return Ok(());
        }
        let missing = cost - bucket.tokens;
        Err(retry_after(missing, refill))
    }

    /// Whether `key` has no whole token left, without taking one: the wait until
    /// it has (used to lock out an address after too many failed logins before
    /// even checking its next password).
    pub fn exhausted(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let state = self.lock();
        let b = state.buckets.get(key)?;
        let elapsed = now.saturating_duration_since(b.updated);
        let tokens = (b.tokens + elapsed.as_secs_f64() * self.refill).min(self.capacity);
        (tokens + EPSILON < 1.0).then(|| retry_after(1.0 - tokens, self.refill))
    }

    /// The number of keys currently tracked (full buckets may already be gone).
    pub fn tracked_keys(&self) -> usize {
        self.lock().buckets.len()
    }

    /// Drop every bucket, e.g. after a configuration reload.
    pub fn clear(&self) {
        self.lock().buckets.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a bucket half-updated in
        // a harmful way, so a poisoned lock is simply taken over.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remove buckets that are full again at `now`, if a sweep is due.
    fn maybe_sweep(&self, state: &mut State, now: Instant) {
        let due = now.saturating_duration_since(state.last_sweep) >= SWEEP_INTERVAL
            || state.buckets.len() >= state.sweep_at_len;
        if !due {
            return;
        }
        let (capacity, refill) = (self.capacity, self.refill);
        state.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * refill + EPSILON < capacity
        });
        state.last_sweep = now;
        state.sweep_at_len = (state.buckets.len() * 2).max(MIN_SWEEP_LEN);
    }
}

/// Seconds until `missing` tokens arrive at `refill` per second, rounded up, 1 s to a day.
fn retry_after(missing: f64, refill: f64) -> Duration {
    if refill <= 0.0 {
        return MAX_RETRY;
    }
    let secs = (missing / refill).ceil().max(1.0);
    if secs >= MAX_RETRY.as_secs_f64() {
        MAX_RETRY
    } else {
        Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn burst_allowed_then_refused() {
        let l = RateLimiter::new(rate(1.0, 3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at("k", 1, t0), Ok(()));
        }
        assert_eq!(l.check_at("k", 1, t0), Err(Duration::from_secs(1)));
        // Refusals take nothing: still refused, same answer.
        assert_eq!(l.check_at("k", 1, t0), Err(Duration::from_secs(1)));
    }

    #[test]
    fn refill_over_time() {
        let l = RateLimiter::new(rate(2.0, 2));
        let t0 = Instant::now();
        assert!(l.check_at("k", 1, t0).is_ok());
        assert!(l.check_at("k", 1, t0).is_ok());
        assert!(l.check_at("k", 1, t0).is_err());
        // 2 tokens per second: one after 0.5 s.
        assert!(l.check_at("k", 1, t0 + secs(0.4)).is_err());
        assert!(l.check_at("k", 1, t0 + secs(0.5)).is_ok());
        assert!(l.check_at("k", 1, t0 + secs(0.5)).is_err());
        // Long idle refills only up to the burst.
        let later = t0 + secs(100.0);
        assert!(l.check_at("k", 1, later).is_ok());
        assert!(l.check_at("k", 1, later).is_ok());
        assert!(l.check_at("k", 1, later).is_err());
    }

    #[test]
    fn distinct_keys_are_independent() {
        let l = RateLimiter::new(rate(1.0, 1));
        let t0 = Instant::now();
        assert!(l.check_at("10.0.0.1", 1, t0).is_ok());
        assert!(l.check_at("10.0.0.1", 1, t0).is_err());
        assert!(l.check_at("10.0.0.2", 1, t0).is_ok());
        assert!(l.check_at("user:alice", 1, t0).is_ok());
        assert!(l.check_at("10.0.0.2", 1, t0).is_err());
    }

    #[test]
    fn retry_after_values() {
        let t0 = Instant::now();
        // One token per 10 s: wait 10 s from empty, 4 s after 6 s.
        let slow = RateLimiter::new(rate(0.1, 1));
        assert!(slow.check_at("k", 1, t0).is_ok());
        assert_eq!(slow.check_at("k", 1, t0), Err(Duration::from_secs(10)));
        assert_eq!(
            slow.check_at("k", 1, t0 + secs(6.0)),
            Err(Duration::from_secs(4))
        );
        // 3.5 s left rounds up to 4.
        assert_eq!(
            slow.check_at("k", 1, t0 + secs(6.5)),
            Err(Duration::from_secs(4))
        );
        assert!(slow.check_at("k", 1, t0 + secs(10.0)).is_ok());

        // Fast rates still answer at least 1 s.
        let fast = RateLimiter::new(rate(100.0, 1));
        assert!(fast.check_at("k", 1, t0).is_ok());
        assert_eq!(fast.check_at("k", 1, t0), Err(Duration::from_secs(1)));

        // Cost above 1: time until all of it is there; cost above burst is capped.
        let l = RateLimiter::new(rate(1.0, 5));
        assert!(l.check_at("k", 5, t0).is_ok());
        assert_eq!(l.check_at("k", 3, t0), Err(Duration::from_secs(3)));
        assert_eq!(l.check_at("k", 50, t0), Err(Duration::from_secs(5)));
        assert!(l.check_at("k", 50, t0 + secs(5.0)).is_ok());
        assert!(l.check_at("k", 0, t0 + secs(5.0)).is_ok());

        // A rate that never refills answers a day.
        let never = RateLimiter::new(rate(0.0, 1));
        assert!(never.check_at("k", 1, t0).is_ok());
        assert_eq!(never.check_at("k", 1, t0), Err(MAX_RETRY));
    }

    #[test]
    fn clock_going_backwards_adds_nothing() {
        let l = RateLimiter::new(rate(1.0, 1));
        let t0 = Instant::now() + secs(10.0);
        assert!(l.check_at("k", 1, t0).is_ok());
        assert!(l.check_at("k", 1, t0 - secs(5.0)).is_err());
        assert!(l.check_at("k", 1, t0 + secs(1.0)).is_ok());
    }

    #[test]
    fn cleanup_drops_full_buckets_only() {
        let l = RateLimiter::new(rate(1.0, 2));
        let t0 = Instant::now();
        assert!(l.check_at("idle", 1, t0).is_ok());
        assert!(l.check_at("busy", 1, t0).is_ok());
        assert_eq!(l.tracked_keys(), 2);
        // After a sweep interval, "idle" has refilled (removed); "busy" is
        // drained just before and kept.
        let t1 = t0 + SWEEP_INTERVAL - secs(0.1);
        assert!(l.check_at("busy", 2, t1).is_ok());
        assert_eq!(l.tracked_keys(), 2, "no sweep before the interval");
        let t2 = t0 + SWEEP_INTERVAL;
        assert!(l.check_at("other", 1, t2).is_ok());
        let mut keys: Vec<String> = l.lock().buckets.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["busy", "other"]);
        // The kept bucket still remembers its state.
        assert!(l.check_at("busy", 2, t2).is_err());
    }

    #[test]
    fn cleanup_when_the_map_grows() {
        let l = RateLimiter::new(rate(1000.0, 1));
        let t0 = Instant::now();
        for i in 0..MIN_SWEEP_LEN {
            assert!(l.check_at(&format!("k{i}"), 1, t0).is_ok());
        }
        assert_eq!(l.tracked_keys(), MIN_SWEEP_LEN);
        // 1 s later every bucket is full again; the next check sweeps them.
        assert!(l.check_at("new", 1, t0 + secs(1.0)).is_ok());
        assert_eq!(l.tracked_keys(), 1);
        l.clear();
        assert_eq!(l.tracked_keys(), 0);
    }

    #[test]
    fn validate_and_deserialize() {
        assert!(rate(1.0, 1).validate().is_ok());
        assert!(rate(0.0, 1).validate().is_err());
        assert!(rate(-1.0, 1).validate().is_err());
        assert!(rate(f64::NAN, 1).validate().is_err());
        assert!(rate(f64::INFINITY, 1).validate().is_err());
        assert!(rate(1.0, 0).validate().is_err());
        let r: Rate = toml::from_str("per_second = 0.5\nburst = 10").unwrap();
        assert_eq!(r, rate(0.5, 10));
        assert!(toml::from_str::<Rate>("per_second = 1\nburst = 1\nextra = 1").is_err());
        // Burst 0 behaves as 1.
        let l = RateLimiter::new(rate(1.0, 0));
        let t0 = Instant::now();
        assert!(l.check_at("k", 1, t0).is_ok());
        assert!(l.check_at("k", 1, t0).is_err());
        assert_eq!(l.rate(), rate(1.0, 0));
    }

    #[test]
    fn check_uses_the_real_clock() {
        let l = RateLimiter::new(rate(1.0, 1));
        assert_eq!(l.check("k"), Ok(()));
        assert_eq!(l.check_cost("k", 1), Err(Duration::from_secs(1)));
    }

    #[test]
    fn shared_between_threads() {
        let l = std::sync::Arc::new(RateLimiter::new(rate(0.001, 100)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..50).filter(|_| l.check("k").is_ok()).count())
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 100);
    }
}
