//! The lifecycle schedule of a running server: pulls written every few seconds,
//! garbage collection, retention and scrub each at its configured interval.
//! Each job runs on its own timer and the registry runs one maintenance pass at
//! a time; a failed pass is logged and retried at the next tick.

use std::sync::Arc;
use std::time::Duration;

use berth_registry::Registry;

use crate::telemetry::Telemetry;

/// How often noted pulls are written to the database.
const PULL_FLUSH: Duration = Duration::from_secs(5);

/// Start every scheduled job; abort the handle to stop them.
pub fn spawn(registry: Arc<Registry>, telemetry: Arc<Telemetry>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let policy = registry.lifecycle().clone();
        let mut jobs = tokio::task::JoinSet::new();
        let r = registry.clone();
        jobs.spawn(every(PULL_FLUSH, "pull times", move || {
            let r = r.clone();
            async move { r.flush_pulls().await }
        }));
        if let Some(period) = policy.gc.interval {
            let (r, t) = (registry.clone(), telemetry.clone());
            jobs.spawn(every(period, "garbage collection", move || {
                let (r, t) = (r.clone(), t.clone());
                async move { t.gc(&r, false).await.map(|_| ()) }
            }));
        }
        if let Some(period) = policy.retention_interval
            && !policy.retention.is_empty()
        {
            let (r, t) = (registry.clone(), telemetry.clone());
            jobs.spawn(every(period, "retention", move || {
                let (r, t) = (r.clone(), t.clone());
                async move { t.retention(&r, false).await.map(|_| ()) }
            }));
        }
        if let Some(period) = policy.scrub.interval {
            let (r, t) = (registry.clone(), telemetry.clone());
            jobs.spawn(every(period, "scrub", move || {
                let (r, t) = (r.clone(), t.clone());
                async move { t.scrub(&r, None).await.map(|_| ()) }
            }));
        }
        while jobs.join_next().await.is_some() {}
    })
}

/// Run `job` every `period` (first after one period), forever.
async fn every<F, Fut>(period: Duration, what: &'static str, job: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = berth_registry::Result<()>>,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = job().await {
            tracing::error!(job = what, error = %e, "scheduled maintenance failed");
        }
    }
}
