//! HTTPS for `berth serve`: rustls with the certificate chain and key from PEM
//! files, re-read when either file changes (checked every
//! `tls.reload_interval_secs`; a broken new pair is logged and the old one kept),
//! optional client certificates (`tls.client_ca`: a certificate signed by that CA
//! is verified during the handshake and its subject common name becomes the user;
//! clients without one may still use passwords or tokens), and a hand-rolled
//! accept loop (tokio-rustls + hyper-util) so each request carries its peer
//! address and certificate user, with graceful shutdown like the plain listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt as _;

use crate::access::ClientCertUser;
use crate::config::TlsConfig;

/// The subject common name of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty()).then(|| cn.to_owned())
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file is readable by other users.
    #[error("{path}: private key is readable by other users (mode {mode:o}); chmod 600 it")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Build a rustls server configuration from the certificate and key files, and
/// the client CA bundle when client certificates are accepted.
pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(key)
            .map_err(|e| file_err(key, e))?
            .permissions()
            .mode();
        if mode & 0o004 != 0 {
            return Err(TlsError::KeyPermissions {
                path: key.to_owned(),
                mode: mode & 0o777,
            });
        }
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e))?;
    if certs.is_empty() {
        return Err(file_err(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| file_err(ca, e))? {
                roots
                    .add(c.map_err(|e| file_err(ca, e))?)
                    .map_err(|e| file_err(ca, e))?;
            }
            if roots.is_empty() {
                return Err(file_err(ca, "no CA certificate in the file"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The current TLS configuration, swapped when the files change.
pub struct TlsState {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    interval: Duration,
    current: RwLock<Arc<ServerConfig>>,
}

fn mtimes(paths: &[&Path]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl TlsState {
    /// Load the configured pair (errors stop the server from starting).
    pub fn new(cfg: &TlsConfig) -> Result<Arc<TlsState>, TlsError> {
        let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
            return Err(TlsError::Rustls("tls.cert and tls.key are required".into()));
        };
        let sc = load(cert, key, cfg.client_ca.as_deref())?;
        Ok(Arc::new(TlsState {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: cfg.client_ca.clone(),
            interval: Duration::from_secs(cfg.reload_interval_secs.max(1)),
            current: RwLock::new(Arc::new(sc)),
        }))
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Watch the files; reload when they change. Runs until the task is dropped.
    async fn watch(self: Arc<Self>) {
        let files = || {
            let mut f: Vec<&Path> = vec![&self.cert, &self.key];
            if let Some(ca) = &self.client_ca {
                f.push(ca);
            }
            mtimes(&f)
        };
        let mut seen = files();
        loop {
            tokio::time::sleep(self.interval).await;
            let now = files();
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.cert, &self.key, self.client_ca.as_deref()) {
                Ok(sc) => {
                    *self
                        .current
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(sc);
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate")
                }
            }
        }
    }
}

/// Serve `app` over TLS on `listener` until `shutdown` resolves, then stop
/// accepting and wait for open connections to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<TlsState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let watcher = tokio::spawn(tls.clone().watch());
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let app = app.clone();
        let builder = builder.clone();
        let watch = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            // The handshake verified the chain; the subject CN names the user.
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c.as_ref()));
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    if let Some(u) = &cert_user {
                        req.extensions_mut().insert(ClientCertUser(u.clone()));
                    }
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            if let Err(e) = watch.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    watcher.abort();
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
