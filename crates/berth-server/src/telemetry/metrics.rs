//! STUB being written.
use std::time::Duration;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {}

impl Metrics {
    /// Create every metric and register it.
    pub fn register(_r: &mut prometheus_client::registry::Registry, _w: Duration) -> Metrics {
        Metrics {}
    }
}
