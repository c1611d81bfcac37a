//! CloudEvents for registry changes, delivered to webhooks (`[events]`).
//!
//! STUB: the API below is the contract; the implementation is being written.

use crate::config::EventsConfig;

/// The kinds an endpoint can filter on (`types` in `[[events.endpoints]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A manifest was pushed.
    Push,
    /// A manifest, tag or blob was deleted.
    Delete,
    /// A tag was created or moved.
    Tag,
    /// Scrub found something wrong.
    Scrub,
}

/// One event, before it gets its CloudEvents envelope.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its kind, for filtering.
    pub kind: EventKind,
    /// CloudEvents `type`, e.g. `dev.berth.manifest.pushed`.
    pub event_type: &'static str,
    /// The repository it concerns, if any (for filtering).
    pub repository: Option<String>,
    /// CloudEvents `subject`, e.g. `library/alpine:3.20` or `library/alpine@sha256:…`.
    pub subject: Option<String>,
    /// CloudEvents `data` (JSON).
    pub data: serde_json::Value,
}

/// The event dispatcher: cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Events {}

impl Events {
    /// Start one delivery task per configured endpoint (needs a Tokio runtime);
    /// the endpoints' metrics are registered in `registry`.
    pub fn start(
        _config: &EventsConfig,
        _source: &str,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> Events {
        Events {}
    }

    /// No endpoints: every event is discarded.
    pub fn disabled() -> Events {
        Events {}
    }

    /// Queue `event` for every endpoint whose filters match; never waits.
    pub fn emit(&self, _event: Event) {}
}
