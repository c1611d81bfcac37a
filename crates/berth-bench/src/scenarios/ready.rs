//! `ready`: poll `GET /v2/` every millisecond, on a new connection each time
//! (refused connections are expected), until a response arrives: 2xx or 401
//! (a registry that wants credentials is up). Reports the wall-clock time of that
//! response, so a caller that noted when it started a server can subtract.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::{Method, StatusCode};

use crate::error::BenchError;
use crate::http::Conn;
use crate::options::Options;
use crate::report::{Outcome, ReadyReport};

/// Pause between attempts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Run `ready`.
pub async fn run(opts: &Options) -> Result<Outcome, BenchError> {
    let target = &opts.target;
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut attempts = 0u64;
    let mut last: Option<String> = None;
    loop {
        attempts += 1;
        let mut conn = Conn::new(target.clone());
        let req = target
            .bodyless(Method::GET, "/v2/")
            .map_err(|e| BenchError::Usage(e.to_string()))?;
        match tokio::time::timeout_at(deadline.into(), conn.send(req)).await {
            Ok(Ok(resp)) => {
                let at = SystemTime::now();
                let status = resp.status();
                if status.is_success() || status == StatusCode::UNAUTHORIZED {
                    let ns = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
                    return Ok(Outcome::Ready(ReadyReport {
                        scenario: "ready",
                        url: target.url(),
                        ready_unix_ns: u64::try_from(ns).unwrap_or(u64::MAX),
                        attempts,
                        waited_ms: start.elapsed().as_secs_f64() * 1e3,
                        status: status.as_u16(),
                    }));
                }
                last = Some(format!("status {status}"));
            }
            Ok(Err(e)) => {
                if !e.is_connection_refused() {
                    tracing::debug!(error = %e, "not ready");
                }
                last = Some(e.to_string());
            }
            Err(_) => {
                last.get_or_insert_with(|| "no response before the timeout".to_owned());
                break;
            }
        }
        if Instant::now() + POLL_INTERVAL >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(BenchError::NotReady {
        url: target.url(),
        timeout_secs: opts.timeout.as_secs_f64(),
        attempts,
        last: last.unwrap_or_default(),
    })
}
