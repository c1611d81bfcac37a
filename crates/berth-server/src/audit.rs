//! The audit log: one JSON line per push, delete, tag change, login failure and
//! denied request — who, from where, what, and the result. Never a secret: the
//! fields are chosen here, not copied from requests.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Where audit lines go.
pub struct Audit {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audit")
    }
}

/// One audit event.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// `push`, `delete`, `tag`, `login_failed`, `denied`, `token`.
    pub kind: &'a str,
    /// The user, if known.
    pub user: Option<&'a str>,
    /// The client address.
    pub addr: Option<IpAddr>,
    /// HTTP method.
    pub method: &'a str,
    /// The repository, if any.
    pub repository: Option<&'a str>,
    /// Tag or digest, if any.
    pub reference: Option<&'a str>,
    /// HTTP status of the answer.
    pub status: u16,
}

impl Audit {
    /// Audit to `file` (appended, created 0600), or to standard error.
    pub fn open(file: Option<&Path>) -> std::io::Result<Audit> {
        let out: Box<dyn Write + Send> = match file {
            Some(p) => {
                let mut o = std::fs::OpenOptions::new();
                o.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                Box::new(o.open(p)?)
            }
            None => Box::new(std::io::stderr()),
        };
        Ok(Audit {
            out: Mutex::new(out),
        })
    }

    /// Write one event.
    pub fn record(&self, e: Event<'_>) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let line = json!({
            "audit": e.kind,
            "ts_ms": ts,
            "user": e.user,
            "addr": e.addr.map(|a| a.to_string()),
            "method": e.method,
            "repository": e.repository,
            "reference": e.reference,
            "status": e.status,
        });
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
