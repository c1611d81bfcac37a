//! Driving an OCI runtime (`runc` or a compatible one) through its standard
//! command line, as runtime-spec `runtime.md` § Operations describes them:
//! `create`, `start`, `kill`, `delete`. berth waits for the container's process
//! itself: it makes itself a child subreaper before `create`, so the container's
//! init (forked by the runtime, which then exits) is re-parented to berth and its
//! exit status can be collected with `waitpid`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::process::{Pid, Signal, WaitOptions};

/// Why talking to the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No runtime binary was found.
    #[error("no OCI runtime found: {0}")]
    NotFound(String),
    /// The runtime could not be started.
    #[error("running {binary}: {source}")]
    Spawn {
        /// The runtime binary.
        binary: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime reported a failure.
    #[error("{binary} {operation} failed ({status}){stderr}")]
    Failed {
        /// The runtime binary.
        binary: String,
        /// `create`, `start`, …
        operation: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr, if captured (prefixed with ": ").
        stderr: String,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was being done.
        op: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// An OCI runtime binary with its state directory (`--root`).
#[derive(Debug, Clone)]
pub struct OciRuntime {
    binary: PathBuf,
    root: Option<PathBuf>,
}

/// Where `runc` is looked for when it is not on `PATH` (Debian installs it in
/// `/usr/sbin`, which an unprivileged user's `PATH` may lack).
const FALLBACK_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/sbin"];

impl OciRuntime {
    /// The runtime at `explicit`, or `runc` from `PATH` (then `/usr/sbin`, …).
    pub fn find(explicit: Option<&Path>) -> Result<OciRuntime, RuntimeError> {
        if let Some(p) = explicit {
            if p.is_file() {
                return Ok(OciRuntime {
                    binary: p.to_path_buf(),
                    root: None,
                });
            }
            return Err(RuntimeError::NotFound(format!(
                "{} is not a file",
                p.display()
            )));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::env::split_paths(&path).chain(FALLBACK_DIRS.iter().map(PathBuf::from));
        for d in dirs {
            let c = d.join("runc");
            if c.is_file() {
                return Ok(OciRuntime {
                    binary: c,
                    root: None,
                });
            }
        }
        Err(RuntimeError::NotFound(
            "runc is not on PATH (install Debian's runc, or pass --runtime PATH)".into(),
        ))
    }

    /// Keep the runtime's container state under `root` (its `--root` option).
    pub fn with_root(mut self, root: PathBuf) -> OciRuntime {
        self.root = Some(root);
        self
    }

    /// The runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        c
    }

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    /// Run `cmd`; stdio inherited unless `quiet` (then stderr is captured for the
    /// error message).
    fn run(&self, operation: &str, mut cmd: Command, quiet: bool) -> Result<(), RuntimeError> {
        if quiet {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
        }
        let out = cmd.output().map_err(|source| RuntimeError::Spawn {
            binary: self.name(),
            source,
        })?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(RuntimeError::Failed {
            binary: self.name(),
            operation: operation.to_owned(),
            status: out.status.to_string(),
            stderr: if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            },
        })
    }

    /// `create`: set up container `id` from `bundle`; the container's process waits
    /// for [`start`](Self::start). Its stdio is this process's stdio. Returns its pid.
    pub fn create(&self, id: &str, bundle: &Path) -> Result<Pid, RuntimeError> {
        let pid_file = bundle.join("container.pid");
        let mut cmd = self.command();
        cmd.arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id);
        // The container inherits our stdio (runc's "pass-through" mode).
        let status = cmd.status().map_err(|source| RuntimeError::Spawn {
            binary: self.name(),
            source,
        })?;
        if !status.success() {
            return Err(RuntimeError::Failed {
                binary: self.name(),
                operation: "create".into(),
                status: status.to_string(),
                stderr: String::new(),
            });
        }
        let text = std::fs::read_to_string(&pid_file).map_err(|source| RuntimeError::Sys {
            op: format!("reading {}", pid_file.display()),
            source,
        })?;
        text.trim()
            .parse::<i32>()
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| RuntimeError::Sys {
                op: format!("reading {}", pid_file.display()),
                source: std::io::Error::other(format!("not a pid: {text:?}")),
            })
    }

    /// `start`: run the user process of a created container.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("start").arg(id);
        self.run("start", cmd, true)
    }

    /// `kill`: send `signal` (e.g. `"TERM"`, `"KILL"`) to the container's process.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("kill").arg(id).arg(signal);
        self.run("kill", cmd, true)
    }

    /// `delete --force`: remove the container (killing it if it still runs).
    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("delete").arg("--force").arg(id);
        self.run("delete", cmd, true)
    }
}

/// Make this process the subreaper of its descendants, so a container's init
/// process (forked by the runtime) becomes its child when the runtime exits.
pub fn become_subreaper() -> Result<(), RuntimeError> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|e| {
        RuntimeError::Sys {
            op: "prctl(PR_SET_CHILD_SUBREAPER)".into(),
            source: e.into(),
        }
    })
}

/// Wait for process `pid` (a child, or re-parented to this subreaper) and return
/// its exit code as a shell reports it: the code, or 128 + the signal number.
pub fn wait_exit_code(pid: Pid) -> Result<i32, RuntimeError> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return Ok(code);
                }
                if let Some(sig) = status.terminating_signal() {
                    return Ok(128 + sig);
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(RuntimeError::Sys {
                    op: format!("waiting for process {}", pid.as_raw_nonzero()),
                    source: e.into(),
                });
            }
        }
    }
}

/// Send signal number `sig` to `pid` (forwarding a signal berth received).
pub fn forward_signal(pid: Pid, sig: i32) -> Result<(), RuntimeError> {
    let Some(signal) = Signal::from_named_raw(sig) else {
        return Ok(());
    };
    rustix::process::kill_process(pid, signal).map_err(|e| RuntimeError::Sys {
        op: format!("forwarding signal {sig}"),
        source: e.into(),
    })
}
