//! What a running server tells the outside about itself: Prometheus metrics
//! ([`metrics`]), the request layer that feeds them and writes access logs
//! ([`layer`]), and CloudEvents to webhooks ([`crate::events`]).

pub mod layer;
pub mod metrics;

use std::sync::Arc;

use crate::config::Config;
use crate::events::Events;
pub use metrics::Metrics;

/// Metrics, events and access logging of one server.
#[derive(Debug)]
pub struct Telemetry {
    /// Counters and histograms.
    pub metrics: Metrics,
    /// Event delivery.
    pub events: Events,
    /// Whether every request is logged (target `berth::access`).
    pub access_log: bool,
    /// Whether `/metrics` is served on the main listener.
    pub metrics_on_main: bool,
    registry: prometheus_client::registry::Registry,
}

impl Telemetry {
    /// Set up from the configuration; starts the event delivery tasks (needs a
    /// Tokio runtime when endpoints are configured).
    pub fn from_config(config: &Config) -> Arc<Telemetry> {
        let mut registry = prometheus_client::registry::Registry::default();
        let retry_window = config
            .metrics
            .retry_window
            .duration()
            .ok()
            .flatten()
            .unwrap_or_default();
        let metrics = Metrics::register(&mut registry, retry_window);
        let events = if config.events.endpoints.is_empty() {
            Events::disabled()
        } else {
            Events::start(&config.events, &event_source(config), &mut registry)
        };
        Arc::new(Telemetry {
            metrics,
            events,
            access_log: config.log.access,
            metrics_on_main: config.metrics.enabled && config.metrics.listen.is_none(),
            registry,
        })
    }

    /// Metrics on the main listener, no events, no access log (tests, defaults).
    pub fn standalone() -> Arc<Telemetry> {
        Telemetry::from_config(&Config::default())
    }

    /// The Prometheus registry, for encoding.
    pub fn registry(&self) -> &prometheus_client::registry::Registry {
        &self.registry
    }
}

/// CloudEvents `source` of this server: `berth://<listen address>`.
fn event_source(config: &Config) -> String {
    format!("berth://{}", config.server.listen)
}
