//! The bench's error type. Failed *measured* requests are not errors here: they
//! are counted in the report. These are the failures that stop a run.

use thiserror::Error;

/// Why a run could not be made or finished.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The arguments do not make a run (names the flag).
    #[error("{0}")]
    Usage(String),
    /// A setup request failed (names the request and the server's answer).
    #[error("setup failed: {request}: {problem}")]
    Setup {
        /// e.g. `PUT /v2/bench/s/manifests/latest`.
        request: String,
        /// Status and OCI error, or the transport error.
        problem: String,
    },
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A worker task panicked or was cancelled.
    #[error("a worker task failed: {0}")]
    Worker(String),
    /// `ready`: no answer before the timeout.
    #[error(
        "{url} did not answer GET /v2/ within {timeout_secs} s ({attempts} attempts; last: {last})"
    )]
    NotReady {
        /// The base URL.
        url: String,
        /// `--timeout`.
        timeout_secs: f64,
        /// Connection attempts made.
        attempts: u64,
        /// The last problem seen.
        last: String,
    },
}

impl BenchError {
    /// The process exit code: 1 when a server never became ready, 2 for usage and
    /// setup problems (a run with failed measured requests exits 1, without an error).
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::NotReady { .. } => 1,
            _ => 2,
        }
    }
}

impl From<tokio::task::JoinError> for BenchError {
    fn from(e: tokio::task::JoinError) -> Self {
        BenchError::Worker(e.to_string())
    }
}
