//! The HTTP face of the berth registry.
//!
//! A request's path is parsed into a typed [`Endpoint`] before any handler runs
//! ([`endpoint`]); handlers ([`handlers`]) call `berth-registry` and never touch
//! files or SQL; every failure becomes a response through the one mapping in
//! [`error`]. [`config`] loads and validates `berth serve`'s configuration, and
//! [`serve`] runs the listener with graceful shutdown, the lifecycle schedule
//! ([`maintenance`]) and the admin socket ([`admin`]).

pub mod access;
pub mod admin;
pub mod audit;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod handlers;
pub mod maintenance;
pub mod telemetry;
pub mod tls;
mod unread_body;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::serve::ListenerExt;
use berth_registry::{Limits, Registry};

pub use access::Access;
pub use config::{Config, ConfigError};
pub use endpoint::Endpoint;
use handlers::AppState;

/// Build the application router around an open registry, with no access control.
pub fn router(registry: Arc<Registry>) -> Router {
    let access = Access::from_config(&Config::default())
        .map(Arc::new)
        .unwrap_or_else(|e| panic!("default access control: {e}"));
    router_with_access(registry, access)
}

/// Build the application router with access control (and the token service at
/// `/token` when it is configured).
pub fn router_with_access(registry: Arc<Registry>, access: Arc<Access>) -> Router {
    router_with(registry, access, telemetry::Telemetry::standalone())
}

/// Build the application router with access control and telemetry (metrics,
/// events, access logs).
pub fn router_with(
    registry: Arc<Registry>,
    access: Arc<Access>,
    telemetry: Arc<telemetry::Telemetry>,
) -> Router {
    let mut router = Router::new()
        .route("/token", axum::routing::get(token).post(token))
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz));
    if telemetry.metrics_on_main {
        router = router.route("/metrics", axum::routing::get(metrics));
    }
    router
        .fallback(handlers::dispatch)
        .with_state(AppState {
            registry,
            access,
            telemetry: telemetry.clone(),
        })
        .layer(axum::middleware::map_response(api_version_header))
        .layer(axum::middleware::from_fn(unread_body::close_if_body_unread))
        .layer(axum::middleware::from_fn_with_state(
            telemetry,
            telemetry::layer::track,
        ))
}

/// `GET`/`POST /token`.
async fn token(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
) -> Response {
    use axum::response::IntoResponse as _;
    let addr = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let method = req.method().as_str().to_owned();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let form: Vec<(String, String)> = if method == "POST" {
        match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
            Ok(b) => serde_urlencoded::from_bytes(&b).unwrap_or_default(),
            Err(_) => {
                return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "form too large")
                    .into_response();
            }
        }
    } else {
        Vec::new()
    };
    state
        .access
        .token_endpoint(&method, &headers, &query, &form, addr)
}

/// A small JSON response.
fn json_status(status: axum::http::StatusCode, body: serde_json::Value) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `GET /healthz`: the process is up and answering (no authentication, for
/// orchestrators' liveness probes).
async fn healthz() -> Response {
    json_status(
        axum::http::StatusCode::OK,
        serde_json::json!({ "status": "ok" }),
    )
}

/// `GET /readyz`: 200 when storage can be used, 503 otherwise (the cause is
/// logged, not sent: probes need no internals).
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.registry.ready().await {
        Ok(()) => json_status(
            axum::http::StatusCode::OK,
            serde_json::json!({ "status": "ready" }),
        ),
        Err(e) => {
            tracing::error!(error = %e, "not ready");
            json_status(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "unavailable" }),
            )
        }
    }
}

/// `GET /metrics` on the main listener.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    telemetry::render(&state.registry, &state.telemetry).await
}

async fn api_version_header(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// Failures starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry's storage could not be opened.
    #[error("cannot open data directory {dir}: {source}")]
    Storage {
        /// The data directory.
        dir: String,
        /// Why.
        source: berth_registry::RegistryError,
    },
    /// Access control could not be set up (htpasswd, keys, policy).
    #[error(transparent)]
    Access(#[from] access::AccessError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listener could not be bound or failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Open the registry in `config.storage.data_dir`.
pub async fn open_registry(config: &Config) -> Result<Registry, ServeError> {
    let limits = Limits {
        max_manifest_bytes: config.limits.max_manifest_bytes,
        manifest_cache_bytes: config.limits.manifest_cache_bytes,
    };
    let lifecycle = berth_registry::Lifecycle::compile(&config.lifecycle())
        .map_err(|problems| ServeError::Config(ConfigError { problems }))?;
    Registry::open_with(&config.storage.data_dir, limits, lifecycle)
        .await
        .map(|r| r.with_direct_io(config.storage.direct_io))
        .map_err(|source| ServeError::Storage {
            dir: config.storage.data_dir.display().to_string(),
            source,
        })
}

/// Run the registry until `shutdown` resolves; then stop accepting, let in-flight
/// requests finish (at most `server.shutdown_timeout_secs`), and return.
/// `on_ready` is called with the bound address once the listener is up.
pub async fn serve(
    config: &Config,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = config.listen_addr()?;
    let registry = Arc::new(open_registry(config).await?);
    let access = Arc::new(Access::from_config(config)?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Listen { addr, source })?;
    let telemetry = telemetry::Telemetry::from_config(config);
    let metrics_listener = match (&config.metrics.listen, config.metrics.enabled) {
        (Some(a), true) => {
            let maddr: SocketAddr = a.parse().map_err(|e| {
                ServeError::Config(ConfigError {
                    problems: vec![format!("metrics.listen {a:?}: {e}")],
                })
            })?;
            let l = tokio::net::TcpListener::bind(maddr)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: maddr,
                    source,
                })?;
            Some(l)
        }
        _ => None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (metrics_stop_tx, metrics_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(a) = l.local_addr() {
            tracing::info!(addr = %a, "metrics at http://{a}/metrics");
        }
        tokio::spawn(telemetry::serve_metrics(
            l,
            registry.clone(),
            telemetry.clone(),
            async move {
                let _ = metrics_stop_rx.await;
            },
        ))
    });
    let background = maintenance::spawn(registry.clone(), telemetry.clone());
    let admin_path = config.storage.data_dir.join(admin::SOCKET_NAME);
    let admin_task = match admin::bind(&admin_path) {
        Ok(l) => Some(tokio::spawn(admin::serve(
            l,
            registry.clone(),
            telemetry.clone(),
        ))),
        Err(e) => {
            tracing::warn!(path = %admin_path.display(), error = %e, "no admin socket: `berth gc` and friends cannot reach this server");
            None
        }
    };
    let flush_on_exit = registry.clone();
    let app = router_with(registry, access, telemetry);
    let stop = async move {
        shutdown.await;
        let _ = tx.send(());
    };
    let server: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        if config.tls.enabled() {
            let state = tls::TlsState::new(&config.tls)?;
            Box::pin(tls::serve(listener, app, state, stop))
        } else {
            // No Nagle: small responses (manifests, small blobs) must not wait for
            // the client's delayed ACK.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
            });
            Box::pin(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(stop)
                .await
            })
        };
    on_ready(bound);
    let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
    let deadline = async move {
        if rx.await.is_ok() {
            tracing::info!("shutting down; waiting for in-flight requests");
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        res = server => res.map_err(|source| ServeError::Listen { addr: bound, source }),
        () = deadline => {
            tracing::warn!(seconds = grace.as_secs(), "in-flight requests did not finish in time");
            Ok(())
        }
    };
    background.abort();
    let _ = metrics_stop_tx.send(());
    if let Some(t) = metrics_task {
        t.abort();
    }
    if let Some(t) = admin_task {
        t.abort();
    }
    let _ = std::fs::remove_file(&admin_path);
    if let Err(e) = flush_on_exit.flush_pulls().await {
        tracing::warn!(error = %e, "could not record the last pulls");
    }
    result
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
