//! What a running server tells the outside about itself: Prometheus metrics
//! ([`metrics`]), the request layer that feeds them and writes access logs
//! ([`layer`]), and CloudEvents to webhooks ([`crate::events`]).

pub mod layer;
pub mod metrics;

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

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

impl Telemetry {
    /// Collect garbage, recording the pass in the metrics.
    pub async fn gc(
        &self,
        registry: &berth_registry::Registry,
        dry_run: bool,
    ) -> berth_registry::Result<berth_registry::GcReport> {
        let res = registry.gc(dry_run).await;
        self.metrics.gc_done(res.as_ref().map_err(|_| ()));
        res
    }

    /// Apply retention, recording the pass and sending a `tag.deleted` event per
    /// tag deleted.
    pub async fn retention(
        &self,
        registry: &berth_registry::Registry,
        dry_run: bool,
    ) -> berth_registry::Result<berth_registry::RetentionReport> {
        let res = registry.apply_retention(dry_run).await;
        self.metrics.retention_done(res.as_ref().map_err(|_| ()));
        if let Ok(r) = &res {
            self.events.retention_deleted(r);
        }
        res
    }

    /// Scrub, recording the pass and sending an event per finding.
    pub async fn scrub(
        &self,
        registry: &berth_registry::Registry,
        rate: Option<u64>,
    ) -> berth_registry::Result<berth_registry::ScrubReport> {
        let res = registry.scrub(rate).await;
        self.metrics.scrub_done(res.as_ref().map_err(|_| ()));
        if let Ok(r) = &res {
            self.events.scrub_findings(r);
        }
        res
    }
}

/// The Prometheus exposition: storage gauges refreshed from the database, then
/// every metric in OpenMetrics text format.
pub async fn render(registry: &berth_registry::Registry, telemetry: &Telemetry) -> Response {
    match registry.counts().await {
        Ok(c) => telemetry.metrics.set_storage(&c),
        // Stale storage gauges are better than no metrics at all.
        Err(e) => tracing::warn!(error = %e, "cannot count storage for /metrics"),
    }
    let mut text = String::with_capacity(32 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, telemetry.registry()) {
        tracing::error!(error = %e, "cannot encode metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// Content type of the exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serve only `GET /metrics` on `listener` (the `[metrics] listen` address)
/// until `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Arc<berth_registry::Registry>,
    telemetry: Arc<Telemetry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            let telemetry = telemetry.clone();
            async move { render(&registry, &telemetry).await }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// CloudEvents `source` of this server: `berth://<listen address>`.
fn event_source(config: &Config) -> String {
    format!("berth://{}", config.server.listen)
}
