//! Maintenance on demand: garbage collection, retention, scrub, usage and the
//! quarantine list, as one [`AdminRequest`] → one JSON report.
//!
//! `berth serve` answers these on a Unix socket, `<data_dir>/admin.sock`, made
//! mode 0600: whoever can open it can already read and write the data directory,
//! so file permissions are the authentication and no network port is exposed.
//! The protocol is one JSON request line, one JSON response line
//! (`{"ok":true,"report":…}` or `{"ok":false,"error":"…"}`). When no server holds
//! the data directory, the CLI opens it and runs the same [`run`] itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_registry::{Registry, RegistryError};

use crate::telemetry::Telemetry;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// Longest request line accepted.
const MAX_LINE: usize = 4096;

/// One maintenance request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Collect garbage.
    Gc {
        /// Report only.
        #[serde(default)]
        dry_run: bool,
    },
    /// Apply the retention rules.
    Retention {
        /// Report only.
        #[serde(default)]
        dry_run: bool,
    },
    /// Re-hash everything stored.
    Scrub {
        /// Bytes per second (0: unlimited; absent: the configured rate).
        #[serde(default)]
        rate: Option<u64>,
    },
    /// Storage use per repository.
    Usage,
    /// Objects quarantined so far.
    Quarantine,
}

/// Failures talking to a running server.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket could not be reached or the exchange failed.
    #[error("admin socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The server answered with an error.
    #[error("{0}")]
    Server(String),
    /// The answer was not what the protocol says.
    #[error("admin socket {path}: unreadable answer: {reason}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Run one request against an open registry; the report as JSON. With
/// `telemetry` (a running server), passes are recorded in its metrics and
/// findings sent as events.
pub async fn run(
    registry: &Registry,
    telemetry: Option<&Telemetry>,
    req: &AdminRequest,
) -> Result<serde_json::Value, RegistryError> {
    let value = match (req, telemetry) {
        (AdminRequest::Gc { dry_run }, Some(t)) => {
            serde_json::to_value(t.gc(registry, *dry_run).await?)
        }
        (AdminRequest::Gc { dry_run }, None) => serde_json::to_value(registry.gc(*dry_run).await?),
        (AdminRequest::Retention { dry_run }, Some(t)) => {
            serde_json::to_value(t.retention(registry, *dry_run).await?)
        }
        (AdminRequest::Retention { dry_run }, None) => {
            serde_json::to_value(registry.apply_retention(*dry_run).await?)
        }
        (AdminRequest::Scrub { rate }, Some(t)) => {
            serde_json::to_value(t.scrub(registry, *rate).await?)
        }
        (AdminRequest::Scrub { rate }, None) => serde_json::to_value(registry.scrub(*rate).await?),
        (AdminRequest::Usage, _) => serde_json::to_value(registry.usage().await?),
        (AdminRequest::Quarantine, _) => serde_json::to_value(registry.quarantined().await?),
    };
    Ok(value.unwrap_or(serde_json::Value::Null))
}

/// Bind the admin socket at `path` (replacing a stale one: the caller holds the
/// data directory's lock) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Connecting needs write permission on the socket file; until the chmod the
    // umask's mode applies (others never have write with the usual 022).
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answer requests on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::UnixListener,
    registry: Arc<Registry>,
    telemetry: Arc<Telemetry>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &registry, &telemetry).await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

async fn answer(
    stream: tokio::net::UnixStream,
    registry: &Registry,
    telemetry: &Telemetry,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_LINE as u64));
    reader.read_line(&mut line).await?;
    let reply = match serde_json::from_str::<AdminRequest>(line.trim()) {
        Err(e) => serde_json::json!({ "ok": false, "error": format!("bad request: {e}") }),
        Ok(req) => {
            tracing::info!(request = ?req, "admin request");
            match run(registry, Some(telemetry), &req).await {
                Ok(report) => serde_json::json!({ "ok": true, "report": report }),
                Err(e) => {
                    tracing::error!(error = %e, "admin request failed");
                    serde_json::json!({ "ok": false, "error": e.to_string() })
                }
            }
        }
    };
    let mut out = reply.to_string();
    out.push('\n');
    write.write_all(out.as_bytes()).await?;
    write.shutdown().await
}

/// Send `req` to the server listening on `path`; its report.
pub async fn request(path: &Path, req: &AdminRequest) -> Result<serde_json::Value, AdminError> {
    let io = |source| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    let stream = tokio::net::UnixStream::connect(path).await.map_err(io)?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(req).map_err(|e| AdminError::Protocol {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    line.push('\n');
    write.write_all(line.as_bytes()).await.map_err(io)?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(io)?;
    let v: serde_json::Value =
        serde_json::from_str(answer.trim()).map_err(|e| AdminError::Protocol {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if v["ok"] == serde_json::Value::Bool(true) {
        Ok(v["report"].clone())
    } else {
        Err(AdminError::Server(
            v["error"].as_str().unwrap_or("unknown error").to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_ops_are_refused() {
        for req in [
            AdminRequest::Gc { dry_run: true },
            AdminRequest::Retention { dry_run: false },
            AdminRequest::Scrub { rate: Some(5) },
            AdminRequest::Usage,
            AdminRequest::Quarantine,
        ] {
            let text = serde_json::to_string(&req).unwrap();
            assert_eq!(serde_json::from_str::<AdminRequest>(&text).unwrap(), req);
        }
        assert_eq!(
            serde_json::from_str::<AdminRequest>(r#"{"op":"gc"}"#).unwrap(),
            AdminRequest::Gc { dry_run: false }
        );
        assert!(serde_json::from_str::<AdminRequest>(r#"{"op":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<AdminRequest>(r#"{"op":"gc","force":1}"#).is_err());
    }
}
