//! Black-box tests of access control in `berth serve` (issue 4), written against
//! the contract "berth serve access control (issue 4) — the contract tests are
//! written against" (`auth.md`, quoted as *contract*), the OCI distribution-spec
//! (`spec.md`) and Docker's token authentication specs (`auth-token.md`,
//! `auth-jwt.md`, `auth-oauth.md`, `auth-scope.md`).
//!
//! Every server is the real binary run as `berth serve --config FILE` with
//! `BERTH_LOG=debug` and an `[audit] file`. Users are created with the real
//! `berth passwd`. At the end of every test all servers are stopped and their
//! stderr, their audit files and every CLI output are searched for each password,
//! Basic credential and token the test used (contract: "No password or token ever
//! appears in any log (stderr or audit)").
//!
//! 1. the authorization matrix (anonymous / reader / writer / admin × base, catalog,
//!    pull, HEAD, tags, blob GET, push (upload, PUT manifest, upload status, PATCH,
//!    cancel), delete (manifest, blob), referrers, mount × allowed and refused
//!    repositories), htpasswd mode and token mode, with every token's `access`
//!    claim checked against the policy; repository patterns and the most specific
//!    rule;
//! 2. rejected tokens (expired, not yet valid, bad signature, foreign key, wrong
//!    audience, unknown issuer, `alg: none`, HS256) and `insufficient_scope`;
//!    trusted external issuers (PEM keys and JWKS);
//! 3. the OAuth2 side of the token service (`POST /token`, refresh tokens);
//! 4. rate limits per address and per user (429 `TOOMANYREQUESTS` +
//!    `Retry-After`, the client backs off) and failed-login limits;
//! 5. startup refusals (world-readable secrets, anonymous on a network address),
//!    `check-config`;
//! 6. (in every test) secrets never logged, audit lines;
//! 7. TLS with a test CA, certificate reload, and `berth login/push/pull` over TLS.
//!
//! Tests collect every deviation they find and fail once at the end with the
//! whole list, so one run reports everything that is wrong.

// Helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/fault_servers.rs"]
mod fault_servers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fault_servers::{Blob, MT_INDEX, MT_MANIFEST, TestImage};
use futures_util::StreamExt as _;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

const TEAM_A: &str = "team-a/app";
const TEAM_B: &str = "team-b/app";
const PUBLIC: &str = "public/app";
/// Longest a CLI run may take (a push through a 1 request/s limit included).
const CLI_TIMEOUT: Duration = Duration::from_secs(50);
/// Artifact type of the referrer pushed into every repository.
const SIG_TYPE: &str = "application/vnd.example.signature.v1";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";

// ---- the harness: servers, CLI runs, secrets ---------------------------------------

/// A running `berth serve --config FILE`.
struct Server {
    name: String,
    scheme: String,
    port: u16,
    audit: PathBuf,
    child: Mutex<Option<Child>>,
    /// stdout and stderr, as the process wrote them.
    log: Arc<Mutex<Vec<u8>>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

impl Server {
    /// `http(s)://127.0.0.1:PORT`.
    fn base(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// `127.0.0.1:PORT`.
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    fn audit_text(&self) -> String {
        std::fs::read_to_string(&self.audit).unwrap_or_default()
    }

    /// The audit file's lines, parsed (contract: "Audit: one JSON line per event").
    /// A line that is not JSON is returned as a JSON string so it shows up in
    /// failures.
    fn audit_events(&self) -> Vec<Value> {
        self.audit_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned())))
            .collect()
    }

    /// SIGKILL the process, reap it and wait for its output to be read.
    fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let readers: Vec<JoinHandle<()>> = self.readers.lock().unwrap().drain(..).collect();
        for t in readers {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One CLI run's outcome.
struct CliRun {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl CliRun {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
    fn describe(&self) -> String {
        format!(
            "`berth {}` exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

/// Everything one test needs: a temp dir, its servers, the secrets it used.
struct Harness {
    dir: TempDir,
    servers: Mutex<Vec<Arc<Server>>>,
    /// Passwords, Basic credentials and tokens that must never be logged.
    secrets: Mutex<BTreeSet<String>>,
    /// Output of CLI runs and of servers that refused to start.
    other_logs: Mutex<Vec<(String, String)>>,
    counter: AtomicU64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            dir: tempfile::tempdir().expect("temp dir"),
            servers: Mutex::new(Vec::new()),
            secrets: Mutex::new(BTreeSet::new()),
            other_logs: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh path in the temp dir.
    fn unique(&self, stem: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.path(&format!("{stem}-{n}"))
    }

    fn secret(&self, s: &str) {
        if !s.is_empty() {
            self.secrets.lock().unwrap().insert(s.to_owned());
        }
    }

    /// Record a token: the whole of it, and its signature alone (the part that
    /// cannot be guessed, so a partly logged token is found too).
    fn secret_token(&self, t: &str) {
        self.secret(t);
        if let Some(sig) = t.rsplit('.').next()
            && sig.len() >= 16
        {
            self.secret(sig);
        }
    }

    /// The configuration file text for server `name`: `[server]`, `[storage]` and
    /// `[audit]`, then `body`.
    fn write_config(&self, name: &str, listen: &str, body: &str) -> (PathBuf, PathBuf, PathBuf) {
        let data = self.path(&format!("{name}-data"));
        let audit = self.path(&format!("{name}-audit.log"));
        let config = self.path(&format!("{name}.toml"));
        let text = format!(
            "[server]\nlisten = \"{listen}\"\n\n[storage]\ndata_dir = {}\n\n[audit]\nfile = {}\n\n{body}\n",
            q(&data),
            q(&audit)
        );
        std::fs::write(&config, text).expect("write config");
        (config, data, audit)
    }

    fn serve_command(config: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("serve").arg("--config").arg(config);
        // BERTH_<SECTION>_<KEY> variables override the file: keep the test's own
        // environment from leaking into the server.
        for (k, _) in std::env::vars() {
            if k.starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("BERTH_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Start a server on 127.0.0.1:0 and wait for its ready line.
    fn start(&self, name: &str, body: &str) -> Arc<Server> {
        let (config, data, audit) = self.write_config(name, "127.0.0.1:0", body);
        let mut child = Self::serve_command(&config)
            .spawn()
            .expect("spawn berth serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                use std::io::BufRead as _;
                let mut sent = false;
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if !sent && line.starts_with("berth listening on ") {
                        let _ = tx.send(line.clone());
                        sent = true;
                    }
                    let mut l = log.lock().unwrap();
                    l.extend_from_slice(line.as_bytes());
                    l.push(b'\n');
                }
            }));
        }
        {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                let mut stderr = stderr;
                let mut buf = [0u8; 8192];
                loop {
                    match stderr.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => log.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            }));
        }
        let line = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                for t in readers {
                    let _ = t.join();
                }
                panic!(
                    "server {name}: no ready line within 15 s ({e}); exit {status:?}; output:\n{}",
                    String::from_utf8_lossy(&log.lock().unwrap())
                );
            }
        };
        // "berth listening on http(s)://127.0.0.1:PORT (data in DIR)"
        let rest = line
            .strip_prefix("berth listening on ")
            .expect("ready line prefix");
        let (scheme, rest) = rest
            .split_once("://127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        let (port, tail) = rest
            .split_once(' ')
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        assert_eq!(
            tail,
            format!("(data in {})", data.display()),
            "ready line {line:?}"
        );
        let server = Arc::new(Server {
            name: name.to_owned(),
            scheme: scheme.to_owned(),
            port: port.parse().expect("port"),
            audit,
            child: Mutex::new(Some(child)),
            log,
            readers: Mutex::new(readers),
        });
        self.servers.lock().unwrap().push(server.clone());
        server
    }

    /// Run a server that must refuse to start: its exit code and output.
    fn serve_expect_exit(&self, name: &str, listen: &str, body: &str) -> (Option<i32>, String) {
        let (config, _, _) = self.write_config(name, listen, body);
        let mut child = Self::serve_command(&config)
            .spawn()
            .expect("spawn berth serve");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        self.other_logs
            .lock()
            .unwrap()
            .push((format!("refused server {name}"), out.clone()));
        match status {
            Some(s) => (s.code(), out),
            None => (None, format!("[still running after 10 s]\n{out}")),
        }
    }

    /// Run the `berth` CLI in a sandbox (its own credential files and home).
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> CliRun {
        let d = self.path("cli");
        for sub in ["docker", "xdg-runtime", "xdg-config", "home"] {
            std::fs::create_dir_all(d.join(sub)).expect("sandbox dir");
        }
        let env = [
            ("BERTH_AUTH_FILE", d.join("berth-auth.json")),
            ("DOCKER_CONFIG", d.join("docker")),
            ("REGISTRY_AUTH_FILE", d.join("registry-auth.json")),
            ("XDG_RUNTIME_DIR", d.join("xdg-runtime")),
            ("XDG_CONFIG_HOME", d.join("xdg-config")),
            ("HOME", d.join("home")),
        ];
        self.cli_env(args, stdin, &env)
    }

    /// Run the `berth` CLI with exactly `env` added to the test's environment (no
    /// inherited BERTH_* or proxy variables).
    fn cli_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, PathBuf)]) -> CliRun {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        for (k, _) in std::env::vars() {
            if k.starts_with("BERTH_") || k.to_ascii_lowercase().ends_with("_proxy") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn berth");
        if let Some(input) = stdin {
            let mut si = child.stdin.take().expect("stdin");
            si.write_all(input.as_bytes()).expect("write stdin");
        }
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(CLI_TIMEOUT) {
            Ok(out) => out.expect("wait for berth"),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                let mut out = rx.recv().expect("killed berth").expect("wait for berth");
                out.stderr
                    .extend_from_slice(b"\n[test: killed after the CLI timeout]");
                out
            }
        };
        let run = CliRun {
            args: args.join(" "),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("[cli] berth {} -> {:?}", run.args, run.code);
        self.other_logs.lock().unwrap().push((
            format!("cli `berth {}`", run.args),
            format!("{}\n{}", run.stdout, run.stderr),
        ));
        run
    }

    /// `berth passwd FILE USER [--argon2]` with the password on stdin.
    fn passwd(&self, file: &Path, user: &str, password: &str, argon2: bool) {
        let f = file.to_str().expect("utf-8 path");
        let mut args = vec!["passwd", f, user];
        if argon2 {
            args.push("--argon2");
        }
        let run = self.cli(&args, Some(&format!("{password}\n")));
        assert!(run.ok(), "berth passwd failed: {}", run.describe());
    }

    /// Users reader, writer (bcrypt) and admin (argon2id) in a fresh htpasswd file
    /// made by `berth passwd` (contract: "writes a bcrypt (or argon2id) hash,
    /// creates FILE 0600").
    fn users(&self) -> Users {
        let file = self.unique("htpasswd");
        let mut pw = HashMap::new();
        for c in [Caller::Reader, Caller::Writer, Caller::Admin] {
            let user = c.user();
            let p = format!("{user}-pw-{:016x}", rand::random::<u64>());
            self.secret(&p);
            self.secret(&STANDARD.encode(format!("{user}:{p}")));
            self.passwd(&file, user, &p, c == Caller::Admin);
            let mode = std::fs::metadata(&file)
                .expect("htpasswd")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "berth passwd must leave {} mode 0600, it is {:o}",
                file.display(),
                mode & 0o777
            );
            pw.insert(c, p);
        }
        let text = std::fs::read_to_string(&file).expect("read htpasswd");
        for (c, p) in &pw {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{}:", c.user())))
                .unwrap_or_else(|| panic!("no line for {} in htpasswd:\n{text}", c.user()));
            let hash = &line[c.user().len() + 1..];
            let want = if *c == Caller::Admin {
                "$argon2id$"
            } else {
                "$2"
            };
            assert!(
                hash.starts_with(want),
                "{}'s hash should start with {want}: {line}",
                c.user()
            );
            assert!(
                !text.contains(p.as_str()),
                "htpasswd holds a plain password"
            );
        }
        Users { file, pw }
    }

    /// Stop every server and search every log for every secret. Returns problems.
    fn finish(&self) -> Vec<String> {
        let servers = self.servers.lock().unwrap().clone();
        for s in &servers {
            s.stop();
        }
        let mut logs: Vec<(String, String)> = Vec::new();
        let mut problems = Vec::new();
        for s in &servers {
            let text = s.log_text();
            if text.trim().is_empty() {
                problems.push(format!(
                    "server {}: BERTH_LOG=debug produced no output at all, so the secret grep of its log proves nothing",
                    s.name
                ));
            }
            logs.push((format!("server {} stderr", s.name), text));
            logs.push((format!("server {} audit file", s.name), s.audit_text()));
        }
        logs.extend(self.other_logs.lock().unwrap().iter().cloned());
        let secrets = self.secrets.lock().unwrap().clone();
        for secret in &secrets {
            if secret.len() < 8 {
                continue;
            }
            for (name, text) in &logs {
                if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
                    problems.push(format!(
                        "SECRET LOGGED: {name} contains {:?}… in line: {}",
                        &secret[..secret.len().min(12)],
                        shorten(line, 400)
                    ));
                }
            }
        }
        eprintln!(
            "[secrets] searched {} logs for {} secrets",
            logs.len(),
            secrets.len()
        );
        problems
    }
}

/// A path as a TOML string.
fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn shorten(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_owned()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// Fail with every collected problem.
#[track_caller]
fn report(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

macro_rules! check {
    ($p:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $p.push(format!($($fmt)+));
        }
    };
}

// ---- callers and the policy --------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Caller {
    Anonymous,
    Reader,
    Writer,
    Admin,
}

const CALLERS: [Caller; 4] = [
    Caller::Anonymous,
    Caller::Reader,
    Caller::Writer,
    Caller::Admin,
];

impl Caller {
    fn user(self) -> &'static str {
        match self {
            Caller::Anonymous => "",
            Caller::Reader => "reader",
            Caller::Writer => "writer",
            Caller::Admin => "admin",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            c => c.user(),
        }
    }
}

struct Users {
    file: PathBuf,
    pw: HashMap<Caller, String>,
}

impl Users {
    fn password(&self, c: Caller) -> &str {
        &self.pw[&c]
    }
    fn basic(&self, c: Caller) -> Auth {
        match c {
            Caller::Anonymous => Auth::Anon,
            c => Auth::Basic(c.user().to_owned(), self.password(c).to_owned()),
        }
    }
}

/// The `[auth]` section every access test uses:
/// - `admin` is in `admins` (contract: "everything everywhere");
/// - `reader` may pull `team-a/**`;
/// - `writer`, through group `writers`, may pull and push `team-a/**`;
/// - anyone, anonymous or not, may pull `public/**`.
///
/// `extra` is added to the `[auth]` table (before the sub-tables).
fn auth_section(mode: &str, users: &Users, extra: &str) -> String {
    format!(
        r#"[auth]
mode = "{mode}"
htpasswd = {htpasswd}
admins = ["admin"]
{extra}

[auth.groups]
writers = ["writer"]

[[auth.rules]]
repositories = ["team-a/**"]
users = ["reader"]
actions = ["pull"]

[[auth.rules]]
repositories = ["team-a/**"]
groups = ["writers"]
actions = ["pull", "push"]

[[auth.rules]]
repositories = ["public/**"]
anonymous = true
authenticated = true
actions = ["pull"]
"#,
        htpasswd = q(&users.file)
    )
}

/// What the policy above grants `caller` on repository `repo`.
fn policy_allows(caller: Caller, repo: &str) -> &'static [&'static str] {
    let under = |ns: &str| repo == ns || repo.starts_with(&format!("{ns}/"));
    match caller {
        Caller::Admin => &["pull", "push", "delete"],
        Caller::Writer if under("team-a") => &["pull", "push"],
        Caller::Reader if under("team-a") => &["pull"],
        _ if under("public") => &["pull"],
        _ => &[],
    }
}

// ---- HTTP ----------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Auth {
    Anon,
    Basic(String, String),
    Bearer(String),
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn h(&self, name: &str) -> Option<String> {
        common::header_value(&self.headers, name)
    }
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// `errors[0].code` of an OCI error body.
    fn code(&self) -> Option<String> {
        self.json()?["errors"][0]["code"]
            .as_str()
            .map(str::to_owned)
    }
    fn challenge(&self) -> Option<String> {
        self.h("www-authenticate")
    }
    fn show(&self) -> String {
        format!(
            "{} www-authenticate={:?} retry-after={:?} location={:?} body={}",
            self.status,
            self.challenge(),
            self.h("retry-after"),
            self.h("location"),
            shorten(&String::from_utf8_lossy(&self.body), 300)
        )
    }
}

#[derive(Clone)]
struct Reg {
    http: reqwest::Client,
    base: String,
}

impl Reg {
    fn new(base: &str) -> Reg {
        Reg {
            http: common::client(),
            base: base.to_owned(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        self.send_h(method, path, auth, body, &[]).await
    }

    async fn send_h(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, String)],
    ) -> Resp {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req = match auth {
            Auth::Anon => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Bearer(t) => req.bearer_auth(t),
        };
        if path.contains("/manifests/") && method == Method::GET {
            req = req.header("accept", format!("{MT_MANIFEST}, {MT_INDEX}"));
        }
        match body {
            Some((ct, b)) => req = req.header("content-type", ct).body(b),
            None if method == Method::POST || method == Method::PUT => {
                req = req.header("content-length", "0").body(Vec::new())
            }
            None => {}
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.base));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("read body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, auth: &Auth) -> Resp {
        self.send(Method::GET, path, auth, None).await
    }

    /// `GET /token?service=…&scope=…` (auth-token.md § Requesting a Token).
    async fn token_get(
        &self,
        auth: &Auth,
        service: &str,
        scopes: &[String],
        offline: bool,
    ) -> Resp {
        let mut path = format!("/token?service={service}");
        for s in scopes {
            path.push_str(&format!("&scope={s}"));
        }
        if offline {
            path.push_str("&offline_token=true");
        }
        self.get(&path, auth).await
    }

    /// `POST /token` with a form (auth-oauth.md § Getting a token).
    async fn token_post(&self, form: &[(&str, &str)]) -> Resp {
        let resp = self
            .http
            .post(format!("{}/token", self.base))
            .form(form)
            .send()
            .await
            .expect("POST /token");
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.expect("body").to_vec(),
        }
    }
}

/// The token of a 200 `/token` response (`token` and/or `access_token`, which
/// "should be equivalent" — auth-token.md § Token Response Fields).
fn token_of(resp: &Resp) -> Result<String, String> {
    if resp.status != 200 {
        return Err(format!("GET /token answered {}", resp.show()));
    }
    let v = resp.json().ok_or("token response is not JSON")?;
    let t = v["token"].as_str();
    let a = v["access_token"].as_str();
    match (t, a) {
        (Some(t), Some(a)) if t != a => Err(format!("token and access_token differ: {v}")),
        (Some(t), _) | (None, Some(t)) => Ok(t.to_owned()),
        (None, None) => Err(format!("no token in {v}")),
    }
}

// ---- JWTs ----------------------------------------------------------------------------

fn b64url(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("not base64url ({e}): {s}"))
}

/// The JOSE header and the claim set of a JWT (not verified).
fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    (
        serde_json::from_slice(&b64url(parts[0])).expect("JWT header is JSON"),
        serde_json::from_slice(&b64url(parts[1])).expect("JWT claims are JSON"),
    )
}

/// The `access` claim (auth-jwt.md § Claim Set) as (type, name) → actions.
fn access_of(claims: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    if let Some(entries) = claims["access"].as_array() {
        for e in entries {
            let key = (
                e["type"].as_str().unwrap_or("?").to_owned(),
                e["name"].as_str().unwrap_or("?").to_owned(),
            );
            let actions = out.entry(key).or_default();
            for a in e["actions"].as_array().into_iter().flatten() {
                actions.insert(a.as_str().unwrap_or("?").to_owned());
            }
        }
    }
    out
}

/// `repository:NAME:a,b` → (type, name, actions).
fn parse_scope(scope: &str) -> (String, String, BTreeSet<String>) {
    let (resource, actions) = scope.rsplit_once(':').expect("scope has actions");
    let (typ, name) = resource.split_once(':').expect("scope has a type");
    (
        typ.to_owned(),
        name.to_owned(),
        actions.split(',').map(str::to_owned).collect(),
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Check a token issued to `caller` for `scopes` (auth-jwt.md, contract: "scopes
/// are cut down to what the policy allows (anonymous gets the anonymous rules)";
/// auth-token.md: "it will take the intersection of the set of requested actions
/// on each resource and the set of actions that the client has in fact been
/// granted").
fn check_token(
    what: &str,
    token: &str,
    caller: Caller,
    scopes: &[String],
    issuer: &str,
    service: &str,
) -> Vec<String> {
    let mut p = Vec::new();
    let (header, claims) = jwt_parts(token);
    // contract: "Tokens are ES256 JWTs"; auth-jwt.md: typ "Must be equal to JWT".
    check!(
        p,
        header["alg"] == "ES256",
        "{what}: header alg is {}, want ES256",
        header["alg"]
    );
    check!(
        p,
        header["typ"] == "JWT",
        "{what}: header typ is {}, want JWT",
        header["typ"]
    );
    check!(
        p,
        claims["iss"] == issuer,
        "{what}: iss {} != {issuer:?}",
        claims["iss"]
    );
    let aud_ok = claims["aud"] == service
        || claims["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == service));
    check!(p, aud_ok, "{what}: aud {} != {service:?}", claims["aud"]);
    // auth-jwt.md: sub "should be empty (\"\") if the client did not authenticate".
    check!(
        p,
        claims["sub"].as_str().unwrap_or("") == caller.user(),
        "{what}: sub {} != {:?}",
        claims["sub"],
        caller.user()
    );
    let now = now_secs();
    let exp = claims["exp"].as_u64().unwrap_or(0);
    check!(
        p,
        exp >= now,
        "{what}: exp {exp} is in the past (now {now})"
    );
    check!(
        p,
        claims["nbf"].as_u64().unwrap_or(0) <= now + 1,
        "{what}: nbf {} is in the future",
        claims["nbf"]
    );
    let granted = access_of(&claims);
    let mut expected: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in scopes {
        let (typ, name, actions) = parse_scope(s);
        if typ != "repository" {
            continue;
        }
        let allowed: BTreeSet<String> = policy_allows(caller, &name)
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = expected.entry((typ, name)).or_default();
        e.extend(actions.intersection(&allowed).cloned());
    }
    for ((typ, name), want) in &expected {
        let got = granted
            .get(&(typ.clone(), name.clone()))
            .cloned()
            .unwrap_or_default();
        check!(
            p,
            &got == want,
            "{what}: token grants {got:?} on {typ}:{name}, the policy allows {want:?} of what was asked"
        );
    }
    for ((typ, name), got) in &granted {
        if typ == "repository"
            && !got.is_empty()
            && !expected.contains_key(&(typ.clone(), name.clone()))
        {
            p.push(format!(
                "{what}: token grants {got:?} on unrequested {typ}:{name}"
            ));
        }
    }
    p
}

/// Sign `input` with the P-256 key in `key` (PEM) using the openssl CLI: the
/// 64-byte JWS signature (r ‖ s, RFC 7518 §3.4).
fn es256_sign(h: &Harness, key: &Path, input: &[u8]) -> Vec<u8> {
    let msg = h.unique("jws-input");
    let sig = h.unique("jws-sig");
    std::fs::write(&msg, input).expect("write signing input");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key.to_str().expect("path"),
        "-out",
        sig.to_str().expect("path"),
        msg.to_str().expect("path"),
    ]);
    der_to_raw(&std::fs::read(&sig).expect("read signature"))
}

/// ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) → r ‖ s, 32 bytes each.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "DER signature is a SEQUENCE");
    let mut i = if der[1] & 0x80 != 0 {
        2 + (der[1] & 0x7f) as usize
    } else {
        2
    };
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER");
        let len = der[i + 1] as usize;
        let mut int = &der[i + 2..i + 2 + len];
        while int.len() > 32 && int[0] == 0 {
            int = &int[1..];
        }
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn enc_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

/// An ES256 JWT with `header` and `claims`, signed with `key`.
fn craft_es256(h: &Harness, header: &Value, claims: &Value, key: &Path) -> String {
    let input = format!("{}.{}", enc_json(header), enc_json(claims));
    let sig = es256_sign(h, key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

// ---- content ---------------------------------------------------------------------------

fn desc(media_type: &str, data: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": common::sha256(data), "size": data.len() })
}

/// An image manifest over `img`'s config and layers, made unique by `note`.
fn manifest_with(img: &TestImage, note: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": img.config.descriptor(),
        "layers": img.layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        "annotations": { "org.example.note": note },
    }))
    .expect("manifest")
}

/// What each repository holds before the matrix runs.
struct Seed {
    img: TestImage,
    /// Digest of the manifest tagged `v1`.
    v1: String,
    /// Digest of the one referrer of `v1` (artifactType [`SIG_TYPE`]).
    referrer: String,
    /// A manifest (tagged `del-CALLER`) for each caller to try to delete.
    del: HashMap<Caller, String>,
    /// A blob only this repository holds, per caller, for that caller to try to
    /// mount into the other team's repository.
    mount: HashMap<Caller, String>,
    /// A blob per caller to try to delete.
    deletable: HashMap<Caller, String>,
    /// An upload session (path) admin opened, per caller, for refused callers to
    /// try to use.
    sessions: HashMap<Caller, String>,
}

async fn push_blob(reg: &Reg, repo: &str, auth: &Auth, data: &[u8]) -> String {
    let digest = common::sha256(data);
    let r = reg
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            auth,
            Some(("application/octet-stream", data.to_vec())),
        )
        .await;
    assert_eq!(r.status, 201, "seed blob into {repo}: {}", r.show());
    digest
}

async fn put_manifest(reg: &Reg, repo: &str, reference: &str, auth: &Auth, m: &[u8]) -> String {
    let r = reg
        .send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            auth,
            Some((MT_MANIFEST, m.to_vec())),
        )
        .await;
    assert_eq!(
        r.status,
        201,
        "seed manifest {repo}:{reference}: {}",
        r.show()
    );
    common::sha256(m)
}

async fn seed_repo(reg: &Reg, repo: &str, auth: &Auth, seed: u64) -> Seed {
    let img =
        fault_servers::build_image(&mut SmallRng::seed_from_u64(seed), "amd64", &[1024], repo);
    for b in img.blobs() {
        push_blob(reg, repo, auth, &b.bytes).await;
    }
    push_blob(reg, repo, auth, b"{}").await;
    let v1 = put_manifest(reg, repo, "v1", auth, &img.manifest.bytes).await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": SIG_TYPE,
        "config": desc(EMPTY_TYPE, b"{}"),
        "layers": [desc(EMPTY_TYPE, b"{}")],
        "subject": img.manifest.descriptor(),
    }))
    .expect("referrer");
    let referrer = put_manifest(reg, repo, &common::sha256(&referrer), auth, &referrer).await;
    let mut del = HashMap::new();
    let mut mount = HashMap::new();
    let mut deletable = HashMap::new();
    let mut sessions = HashMap::new();
    for c in CALLERS {
        let m = manifest_with(&img, &format!("delete-me-{}", c.label()));
        del.insert(
            c,
            put_manifest(reg, repo, &format!("del-{}", c.label()), auth, &m).await,
        );
        let blob = format!("mountable {repo} for {} {seed}", c.label());
        mount.insert(c, push_blob(reg, repo, auth, blob.as_bytes()).await);
        let blob = format!("deletable {repo} for {} {seed}", c.label());
        deletable.insert(c, push_blob(reg, repo, auth, blob.as_bytes()).await);
        let r = reg
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                auth,
                None,
            )
            .await;
        assert_eq!(r.status, 202, "seed upload session in {repo}: {}", r.show());
        let loc = r.h("location").expect("Location");
        sessions.insert(c, loc.strip_prefix(&reg.base).unwrap_or(&loc).to_owned());
    }
    Seed {
        img,
        v1,
        referrer,
        del,
        mount,
        deletable,
        sessions,
    }
}

// ---- 1. the authorization matrix -----------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Htpasswd,
    Token,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `GET /v2/`
    Base,
    /// `GET /v2/_catalog`
    Catalog,
    /// `GET /v2/NAME/manifests/v1`
    Pull,
    /// `POST /v2/NAME/blobs/uploads/`
    Upload,
    /// `PUT /v2/NAME/manifests/push-CALLER`
    PutManifest,
    /// `DELETE /v2/NAME/manifests/<del-CALLER digest>`
    Delete,
    /// `GET /v2/NAME/referrers/<v1 digest>`
    Referrers,
    /// `POST /v2/NAME/blobs/uploads/?mount=D&from=OTHER` where D is only in OTHER.
    Mount,
    /// `HEAD /v2/NAME/manifests/v1`
    Head,
    /// `GET /v2/NAME/tags/list`
    Tags,
    /// `GET /v2/NAME/blobs/<layer>`
    BlobGet,
    /// `DELETE /v2/NAME/blobs/<deletable-CALLER>`
    BlobDelete,
    /// `GET <upload session>`
    UploadStatus,
    /// `PATCH <upload session>`
    UploadChunk,
    /// `DELETE <upload session>`
    UploadCancel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// This exact 2xx status.
    Ok(u16),
    /// contract: "Anonymous caller not allowed → 401 `UNAUTHORIZED` (OCI error
    /// body) with `WWW-Authenticate`".
    Unauth,
    /// contract: "Authenticated caller the policy refuses → 403 `DENIED`".
    Denied,
}

use Want::{Denied as D, Unauth as U};

const fn ok(s: u16) -> Want {
    Want::Ok(s)
}

/// The matrix. Columns: anonymous, reader, writer, admin.
///
/// contract: "GET/HEAD manifests, blobs, tags/list, referrers → pull; PUT manifest,
/// POST/PATCH/PUT/GET/DELETE uploads → push; DELETE manifest/blob → delete; `/v2/`
/// → any valid credentials; `/v2/_catalog` → any authenticated caller, result
/// filtered to repositories the caller may pull." and "Cross-repository mount
/// (`POST …/blobs/uploads/?mount=D&from=SRC`) without pull on SRC → 202 and a
/// normal upload session (no 201, nothing revealed)."
#[rustfmt::skip]
const MATRIX: &[(Op, &str, [Want; 4])] = &[
    //  op                repository   anonymous  reader    writer    admin
    (Op::Base,        "",       [U,        ok(200),  ok(200),  ok(200)]),
    (Op::Catalog,     "",       [U,        ok(200),  ok(200),  ok(200)]),
    (Op::Pull,        TEAM_A,   [U,        ok(200),  ok(200),  ok(200)]),
    (Op::Pull,        TEAM_B,   [U,        D,        D,        ok(200)]),
    (Op::Pull,        PUBLIC,   [ok(200),  ok(200),  ok(200),  ok(200)]),
    (Op::Upload,      TEAM_A,   [U,        D,        ok(202),  ok(202)]),
    (Op::Upload,      TEAM_B,   [U,        D,        D,        ok(202)]),
    (Op::Upload,      PUBLIC,   [U,        D,        D,        ok(202)]),
    (Op::PutManifest, TEAM_A,   [U,        D,        ok(201),  ok(201)]),
    (Op::PutManifest, TEAM_B,   [U,        D,        D,        ok(201)]),
    (Op::Delete,      TEAM_A,   [U,        D,        D,        ok(202)]),
    (Op::Delete,      TEAM_B,   [U,        D,        D,        ok(202)]),
    (Op::Referrers,   TEAM_A,   [U,        ok(200),  ok(200),  ok(200)]),
    (Op::Referrers,   TEAM_B,   [U,        D,        D,        ok(200)]),
    (Op::Referrers,   PUBLIC,   [ok(200),  ok(200),  ok(200),  ok(200)]),
    // mount INTO the repository FROM the other team's repository
    (Op::Mount,       TEAM_A,   [U,        D,        ok(202),  ok(201)]),
    (Op::Mount,       TEAM_B,   [U,        D,        D,        ok(201)]),
    (Op::Head,        TEAM_A,   [U,        ok(200),  ok(200),  ok(200)]),
    (Op::Head,        TEAM_B,   [U,        D,        D,        ok(200)]),
    (Op::Head,        PUBLIC,   [ok(200),  ok(200),  ok(200),  ok(200)]),
    (Op::Tags,        TEAM_A,   [U,        ok(200),  ok(200),  ok(200)]),
    (Op::Tags,        TEAM_B,   [U,        D,        D,        ok(200)]),
    (Op::Tags,        PUBLIC,   [ok(200),  ok(200),  ok(200),  ok(200)]),
    (Op::BlobGet,     TEAM_A,   [U,        ok(200),  ok(200),  ok(200)]),
    (Op::BlobGet,     TEAM_B,   [U,        D,        D,        ok(200)]),
    (Op::BlobGet,     PUBLIC,   [ok(200),  ok(200),  ok(200),  ok(200)]),
    (Op::BlobDelete,  TEAM_A,   [U,        D,        D,        ok(202)]),
    (Op::BlobDelete,  TEAM_B,   [U,        D,        D,        ok(202)]),
    (Op::UploadStatus, TEAM_A,  [U,        D,        ok(204),  ok(204)]),
    (Op::UploadStatus, TEAM_B,  [U,        D,        D,        ok(204)]),
    (Op::UploadChunk, TEAM_A,   [U,        D,        ok(202),  ok(202)]),
    (Op::UploadChunk, TEAM_B,   [U,        D,        D,        ok(202)]),
    (Op::UploadCancel, TEAM_A,  [U,        D,        ok(204),  ok(204)]),
    (Op::UploadCancel, TEAM_B,  [U,        D,        D,        ok(204)]),
];

fn other_team(repo: &str) -> &'static str {
    if repo == TEAM_A { TEAM_B } else { TEAM_A }
}

struct Matrix<'a> {
    h: &'a Harness,
    reg: Reg,
    mode: Mode,
    users: &'a Users,
    seeds: HashMap<&'static str, Seed>,
}

/// One request of the matrix.
struct Call {
    method: Method,
    path: String,
    body: Option<(&'static str, Vec<u8>)>,
    headers: Vec<(&'static str, String)>,
    /// Token scopes the request needs (auth-scope.md).
    scopes: Vec<String>,
    /// Acceptable `WWW-Authenticate` values (token mode) for an anonymous 401.
    challenges: Vec<String>,
}

impl Matrix<'_> {
    /// The request for `op`; `session` is the upload session path for the upload
    /// operations.
    fn call(&self, op: Op, repo: &str, caller: Caller, session: Option<&str>) -> Call {
        let realm = format!("Bearer realm=\"{}/token\",service=\"berth\"", self.reg.base);
        let with_scope = |s: &str| format!("{realm},scope=\"{s}\"");
        let pull = format!("repository:{repo}:pull");
        let push = format!("repository:{repo}:pull,push");
        let seed = self.seeds.get(repo);
        let session = || session.expect("upload session").to_owned();
        let mut headers = Vec::new();
        let (method, path, body, scopes, challenges) = match op {
            Op::Head => (
                Method::HEAD,
                format!("/v2/{repo}/manifests/v1"),
                None,
                vec![pull.clone()],
                vec![with_scope(&pull)],
            ),
            Op::Tags => (
                Method::GET,
                format!("/v2/{repo}/tags/list"),
                None,
                vec![pull.clone()],
                vec![with_scope(&pull)],
            ),
            Op::BlobGet => (
                Method::GET,
                format!(
                    "/v2/{repo}/blobs/{}",
                    seed.expect("seed").img.layers[0].digest
                ),
                None,
                vec![pull.clone()],
                vec![with_scope(&pull)],
            ),
            Op::BlobDelete => {
                let d = format!("repository:{repo}:delete");
                (
                    Method::DELETE,
                    format!(
                        "/v2/{repo}/blobs/{}",
                        seed.expect("seed").deletable[&caller]
                    ),
                    None,
                    vec![d.clone()],
                    vec![with_scope(&d)],
                )
            }
            Op::UploadStatus => (
                Method::GET,
                session(),
                None,
                vec![push.clone()],
                vec![with_scope(&push)],
            ),
            Op::UploadChunk => {
                headers.push(("content-range", "0-4".to_owned()));
                (
                    Method::PATCH,
                    session(),
                    Some(("application/octet-stream", b"chunk".to_vec())),
                    vec![push.clone()],
                    vec![with_scope(&push)],
                )
            }
            Op::UploadCancel => (
                Method::DELETE,
                session(),
                None,
                vec![push.clone()],
                vec![with_scope(&push)],
            ),
            Op::Base => (
                Method::GET,
                "/v2/".to_owned(),
                None,
                vec![],
                vec![realm.clone()],
            ),
            Op::Catalog => (
                Method::GET,
                "/v2/_catalog".to_owned(),
                None,
                vec!["registry:catalog:*".to_owned()],
                vec![with_scope("registry:catalog:*")],
            ),
            Op::Pull => (
                Method::GET,
                format!("/v2/{repo}/manifests/v1"),
                None,
                vec![pull.clone()],
                vec![with_scope(&pull)],
            ),
            Op::Referrers => (
                Method::GET,
                format!("/v2/{repo}/referrers/{}", seed.expect("seed").v1),
                None,
                vec![pull.clone()],
                vec![with_scope(&pull)],
            ),
            Op::Upload => (
                Method::POST,
                format!("/v2/{repo}/blobs/uploads/"),
                None,
                vec![push.clone()],
                vec![with_scope(&push)],
            ),
            Op::PutManifest => (
                Method::PUT,
                format!("/v2/{repo}/manifests/push-{}", caller.label()),
                Some((
                    MT_MANIFEST,
                    manifest_with(
                        &seed.expect("seed").img,
                        &format!("pushed by {}", caller.label()),
                    ),
                )),
                vec![push.clone()],
                vec![with_scope(&push)],
            ),
            Op::Delete => {
                let d = format!("repository:{repo}:delete");
                (
                    Method::DELETE,
                    format!("/v2/{repo}/manifests/{}", seed.expect("seed").del[&caller]),
                    None,
                    vec![d.clone()],
                    vec![with_scope(&d)],
                )
            }
            Op::Mount => {
                let from = other_team(repo);
                let blob = &self.seeds[from].mount[&caller];
                let from_pull = format!("repository:{from}:pull");
                (
                    Method::POST,
                    format!("/v2/{repo}/blobs/uploads/?mount={blob}&from={from}"),
                    None,
                    vec![push.clone(), from_pull.clone()],
                    vec![
                        with_scope(&push),
                        with_scope(&format!("{push} {from_pull}")),
                    ],
                )
            }
        };
        let challenges = match self.mode {
            Mode::Htpasswd => vec!["Basic realm=\"berth\"".to_owned()],
            Mode::Token => challenges,
        };
        Call {
            method,
            path,
            body,
            headers,
            scopes,
            challenges,
        }
    }

    /// Credentials of `caller` for `scopes`: Basic in htpasswd mode, a token from
    /// `GET /token` in token mode (its claims checked).
    async fn auth(&self, caller: Caller, scopes: &[String], p: &mut Vec<String>) -> Auth {
        if caller == Caller::Anonymous || self.mode == Mode::Htpasswd {
            return self.users.basic(caller);
        }
        self.token(caller, scopes, p).await
    }

    async fn token(&self, caller: Caller, scopes: &[String], p: &mut Vec<String>) -> Auth {
        let r = self
            .reg
            .token_get(&self.users.basic(caller), "berth", scopes, false)
            .await;
        match token_of(&r) {
            Ok(t) => {
                self.h.secret_token(&t);
                let what = format!("token for {} {scopes:?}", caller.label());
                p.extend(check_token(&what, &t, caller, scopes, "berth", "berth"));
                let v = r.json().unwrap_or_default();
                check!(
                    p,
                    v["expires_in"].as_u64() == Some(300),
                    "{what}: expires_in {} != token_ttl_secs 300",
                    v["expires_in"]
                );
                Auth::Bearer(t)
            }
            Err(e) => {
                p.push(format!(
                    "{} asking /token for {scopes:?}: {e}",
                    caller.label()
                ));
                Auth::Anon
            }
        }
    }

    async fn send(&self, call: &Call, auth: &Auth) -> Resp {
        self.reg
            .send_h(
                call.method.clone(),
                &call.path,
                auth,
                call.body.clone(),
                &call.headers,
            )
            .await
    }

    async fn run_case(
        &self,
        op: Op,
        repo: &'static str,
        caller: Caller,
        want: Want,
    ) -> Vec<String> {
        let mut p = Vec::new();
        let what = format!(
            "[{:?}] {} {op:?} {}",
            self.mode,
            caller.label(),
            if repo.is_empty() { "-" } else { repo }
        );
        let is_upload = matches!(op, Op::UploadStatus | Op::UploadChunk | Op::UploadCancel);
        let scopes = self.call(op, repo, caller, Some("")).scopes;
        let auth = self.auth(caller, &scopes, &mut p).await;
        // Upload operations: a caller allowed to push works on a session it opened
        // itself; a refused caller tries the one admin opened for it.
        let session = if !is_upload {
            None
        } else if matches!(want, Want::Ok(_)) {
            let r = self
                .reg
                .send(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/"),
                    &auth,
                    None,
                )
                .await;
            if r.status != 202 {
                p.push(format!("{what}: opening an upload session: {}", r.show()));
                return p;
            }
            Some(self.path_of(&r.h("location").unwrap_or_default()))
        } else {
            Some(self.seeds[repo].sessions[&caller].clone())
        };
        let call = self.call(op, repo, caller, session.as_deref());
        let mut r = self.send(&call, &auth).await;
        // An anonymous Docker client first tries without a token; on a Bearer
        // challenge it asks the token service anonymously and retries
        // (auth-token.md § How to authenticate).
        if caller == Caller::Anonymous
            && self.mode == Mode::Token
            && matches!(want, Want::Ok(_))
            && r.status == 401
        {
            let t = self.token(caller, &call.scopes, &mut p).await;
            r = self.send(&call, &t).await;
        }
        let desc = format!("{what}: {} {} -> {}", call.method, call.path, r.show());
        match want {
            Want::Unauth => {
                check!(p, r.status == 401, "{desc}: want 401 UNAUTHORIZED");
                check!(
                    p,
                    call.method == Method::HEAD || r.code().as_deref() == Some("UNAUTHORIZED"),
                    "{desc}: want error code UNAUTHORIZED"
                );
                let ch = r.challenge().unwrap_or_default();
                check!(
                    p,
                    call.challenges.contains(&ch),
                    "{desc}: WWW-Authenticate {ch:?}, want {:?}",
                    call.challenges
                );
                // The token service gives an anonymous caller nothing here, and a
                // request with that token is still refused.
                if self.mode == Mode::Token && !repo.is_empty() {
                    let t = self.token(caller, &call.scopes, &mut p).await;
                    if let Auth::Bearer(_) = t {
                        let r2 = self.send(&call, &t).await;
                        check!(
                            p,
                            r2.status == 401
                                && (call.method == Method::HEAD
                                    || r2.code().as_deref() == Some("UNAUTHORIZED")),
                            "{what} with an anonymous token: want 401 UNAUTHORIZED, got {}",
                            r2.show()
                        );
                    }
                }
            }
            Want::Denied => {
                check!(p, r.status == 403, "{desc}: want 403 DENIED");
                check!(
                    p,
                    call.method == Method::HEAD || r.code().as_deref() == Some("DENIED"),
                    "{desc}: want error code DENIED"
                );
            }
            Want::Ok(s) => {
                check!(p, r.status == s, "{desc}: want {s}");
                if r.status == s {
                    p.extend(self.check_success(op, repo, caller, &r, &desc));
                }
            }
        }
        p
    }

    /// A Location (absolute URL or path) as a path on this server.
    fn path_of(&self, location: &str) -> String {
        location
            .strip_prefix(&self.reg.base)
            .unwrap_or(location)
            .to_owned()
    }

    /// What a successful answer must contain.
    fn check_success(
        &self,
        op: Op,
        repo: &str,
        caller: Caller,
        r: &Resp,
        desc: &str,
    ) -> Vec<String> {
        let mut p = Vec::new();
        match op {
            Op::Base | Op::Delete | Op::BlobDelete | Op::UploadCancel | Op::UploadChunk => {}
            Op::Head => {
                let want = &self.seeds[repo].v1;
                check!(
                    p,
                    r.h("docker-content-digest").as_deref() == Some(want.as_str()),
                    "{desc}: Docker-Content-Digest should be {want}"
                );
            }
            Op::Tags => {
                let v = r.json().unwrap_or_default();
                check!(
                    p,
                    v["name"] == repo
                        && v["tags"]
                            .as_array()
                            .is_some_and(|t| t.iter().any(|t| t == "v1")),
                    "{desc}: tags/list should name {repo} and list v1"
                );
            }
            Op::BlobGet => {
                let want = &self.seeds[repo].img.layers[0].bytes;
                check!(p, &r.body == want, "{desc}: blob content differs");
            }
            Op::UploadStatus => {
                check!(
                    p,
                    r.h("range").is_some() || r.h("location").is_some(),
                    "{desc}: upload status without Range/Location"
                );
            }
            Op::Catalog => {
                // contract: "result filtered to repositories the caller may pull"
                let want: Vec<&str> = [PUBLIC, TEAM_A, TEAM_B]
                    .into_iter()
                    .filter(|r| policy_allows(caller, r).contains(&"pull"))
                    .collect();
                let got: Vec<String> = r.json().unwrap_or_default()["repositories"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| v.as_str().unwrap_or("?").to_owned())
                    .collect();
                check!(
                    p,
                    got == want,
                    "{desc}: catalog lists {got:?}, want {want:?}"
                );
            }
            Op::Pull => {
                let want = &self.seeds[repo].v1;
                check!(
                    p,
                    r.h("docker-content-digest").as_deref() == Some(want.as_str()),
                    "{desc}: Docker-Content-Digest should be {want}"
                );
            }
            Op::Referrers => {
                let v = r.json().unwrap_or_default();
                let got: Vec<&str> = v["manifests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["digest"].as_str())
                    .collect();
                let want = self.seeds[repo].referrer.as_str();
                check!(p, got == [want], "{desc}: referrers {got:?}, want [{want}]");
            }
            Op::Upload => {
                let loc = r.h("location").unwrap_or_default();
                check!(
                    p,
                    loc.contains(&format!("/v2/{repo}/blobs/uploads/")),
                    "{desc}: Location {loc:?} is not an upload session of {repo}"
                );
            }
            Op::PutManifest => {
                check!(
                    p,
                    r.h("docker-content-digest")
                        .is_some_and(|d| d.starts_with("sha256:")),
                    "{desc}: no Docker-Content-Digest"
                );
            }
            Op::Mount => {
                let blob = &self.seeds[other_team(repo)].mount[&caller];
                let loc = r.h("location").unwrap_or_default();
                if r.status == 201 {
                    // spec § Mounting a blob: "MUST contain … Location: <blob-location>"
                    check!(
                        p,
                        loc.ends_with(&format!("/v2/{repo}/blobs/{blob}")),
                        "{desc}: 201 Location {loc:?} is not the mounted blob"
                    );
                } else {
                    // contract: "→ 202 and a normal upload session (no 201, nothing revealed)"
                    check!(
                        p,
                        loc.contains(&format!("/v2/{repo}/blobs/uploads/")),
                        "{desc}: 202 Location {loc:?} is not an upload session of {repo}"
                    );
                    check!(
                        p,
                        r.h("docker-content-digest").is_none(),
                        "{desc}: a refused mount reveals Docker-Content-Digest"
                    );
                }
            }
        }
        p
    }
}

async fn authorization_matrix(mode: Mode) {
    let h = Harness::new();
    let users = h.users();
    let mode_name = match mode {
        Mode::Htpasswd => "htpasswd",
        Mode::Token => "token",
    };
    let srv = h.start(
        &format!("matrix-{mode_name}"),
        &format!(
            "{}\n[rate_limit]\nfailed_logins_per_minute = 100\n",
            auth_section(mode_name, &users, "")
        ),
    );
    let reg = Reg::new(&srv.base());
    let mut p = Vec::new();
    let mut m = Matrix {
        h: &h,
        reg: reg.clone(),
        mode,
        users: &users,
        seeds: HashMap::new(),
    };

    // Seed every repository as admin.
    for (i, repo) in [TEAM_A, TEAM_B, PUBLIC].into_iter().enumerate() {
        let scope = [format!("repository:{repo}:pull,push")];
        let auth = m.auth(Caller::Admin, &scope, &mut p).await;
        let seed = seed_repo(&reg, repo, &auth, 100 + i as u64).await;
        m.seeds.insert(repo, seed);
    }

    // A wrong password is refused "the same way" (contract: "Wrong password → 401
    // the same way"), and audited as login_failed.
    let bad = Auth::Basic("reader".into(), "not-the-reader-password".into());
    h.secret("not-the-reader-password");
    match mode {
        Mode::Htpasswd => {
            for path in ["/v2/", "/v2/team-a/app/manifests/v1"] {
                let r = reg.get(path, &bad).await;
                check!(
                    p,
                    r.status == 401
                        && r.code().as_deref() == Some("UNAUTHORIZED")
                        && r.challenge().as_deref() == Some("Basic realm=\"berth\""),
                    "[htpasswd] GET {path} with a wrong password: want 401 UNAUTHORIZED + Basic realm=\"berth\", got {}",
                    r.show()
                );
            }
            let r = reg
                .get(
                    "/v2/",
                    &Auth::Basic("nobody".into(), "whatever-password".into()),
                )
                .await;
            check!(
                p,
                r.status == 401 && r.code().as_deref() == Some("UNAUTHORIZED"),
                "[htpasswd] GET /v2/ as an unknown user: want 401 UNAUTHORIZED, got {}",
                r.show()
            );
        }
        Mode::Token => {
            let r = reg
                .token_get(&bad, "berth", &[format!("repository:{TEAM_A}:pull")], false)
                .await;
            // auth-token.md: "If an attempt to authenticate to the token server
            // fails, the token server should return a 401 Unauthorized response"
            check!(
                p,
                r.status == 401,
                "[token] GET /token with a wrong password: want 401, got {}",
                r.show()
            );
        }
    }

    // The matrix itself, 8 cases at a time.
    let cases: Vec<(Op, &'static str, Caller, Want)> = MATRIX
        .iter()
        .flat_map(|(op, repo, wants)| {
            CALLERS
                .iter()
                .zip(wants.iter())
                .map(move |(c, w)| (*op, *repo, *c, *w))
        })
        .collect();
    let n = cases.len();
    let m_ref = &m;
    let results: Vec<Vec<String>> = futures_util::stream::iter(cases)
        .map(|(op, repo, caller, want)| m_ref.run_case(op, repo, caller, want))
        .buffer_unordered(8)
        .collect()
        .await;
    p.extend(results.into_iter().flatten());
    eprintln!("[matrix {mode_name}] {n} cases run");

    // The refused mount really did not mount: the writer's blob from team-b is not
    // in team-a (HEAD as admin).
    let blob = &m.seeds[TEAM_B].mount[&Caller::Writer];
    let auth = m
        .auth(
            Caller::Admin,
            &[format!("repository:{TEAM_A}:pull")],
            &mut p,
        )
        .await;
    let r = reg
        .send(
            Method::HEAD,
            &format!("/v2/{TEAM_A}/blobs/{blob}"),
            &auth,
            None,
        )
        .await;
    check!(
        p,
        r.status == 404,
        "after writer's refused mount of {blob} from {TEAM_B}, HEAD it in {TEAM_A} as admin: want 404, got {}",
        r.show()
    );
    // And the admin's mount did.
    let blob = &m.seeds[TEAM_B].mount[&Caller::Admin];
    let r = reg
        .send(
            Method::HEAD,
            &format!("/v2/{TEAM_A}/blobs/{blob}"),
            &auth,
            None,
        )
        .await;
    check!(
        p,
        r.status == 200,
        "after admin's mount of {blob} into {TEAM_A}: HEAD want 200, got {}",
        r.show()
    );

    // An upload session belongs to its repository: writer (push on team-a only)
    // must not finish, through a team-a URL, a session admin opened in team-b
    // (spec: upload URLs are `/v2/<name>/blobs/uploads/<reference>`).
    let admin_b = m
        .auth(
            Caller::Admin,
            &[format!("repository:{TEAM_B}:pull,push")],
            &mut p,
        )
        .await;
    let r = reg
        .send(
            Method::POST,
            &format!("/v2/{TEAM_B}/blobs/uploads/"),
            &admin_b,
            None,
        )
        .await;
    let loc = m.path_of(&r.h("location").unwrap_or_default());
    if r.status == 202 && loc.starts_with(&format!("/v2/{TEAM_B}/")) {
        let smuggled = format!("/v2/{TEAM_A}/{}", &loc[format!("/v2/{TEAM_B}/").len()..]);
        let data = b"smuggled into team-b by writer".to_vec();
        let digest = common::sha256(&data);
        let writer_a = m
            .auth(
                Caller::Writer,
                &[format!("repository:{TEAM_A}:pull,push")],
                &mut p,
            )
            .await;
        let r = reg
            .send(
                Method::PUT,
                &common::with_query(&smuggled, "digest", &digest),
                &writer_a,
                Some(("application/octet-stream", data)),
            )
            .await;
        check!(
            p,
            r.status == 404,
            "writer finishing admin's {TEAM_B} upload session through {smuggled}: want 404 BLOB_UPLOAD_UNKNOWN, got {}",
            r.show()
        );
        let r = reg
            .send(
                Method::HEAD,
                &format!("/v2/{TEAM_B}/blobs/{digest}"),
                &admin_b,
                None,
            )
            .await;
        check!(
            p,
            r.status == 404,
            "SECURITY: writer wrote a blob into {TEAM_B} through a {TEAM_A} URL (HEAD as admin: {})",
            r.show()
        );
    } else {
        p.push(format!("admin POST upload in {TEAM_B}: {}", r.show()));
    }

    p.extend(h.finish());

    // contract: "Audit: one JSON line per event {"audit": "push"|"tag"|"delete"|
    // "login_failed"|"denied"|"token", "ts_ms", "user", "addr", "method",
    // "repository", "reference", "status"}"
    let events = srv.audit_events();
    let has = |kinds: &[&str], user: &str, repo: Option<&str>, status: Option<u64>| {
        events.iter().any(|e| {
            kinds.iter().any(|k| e["audit"] == *k)
                && e["user"] == user
                && repo.is_none_or(|r| e["repository"] == r)
                && status.is_none_or(|s| {
                    e["status"].as_u64() == Some(s) || e["status"].as_str() == Some(&s.to_string())
                })
        })
    };
    let tag = format!("[{mode_name}] audit");
    check!(p, !events.is_empty(), "{tag}: the audit file is empty");
    for e in &events {
        check!(
            p,
            e.is_object() && e["audit"].is_string() && e["ts_ms"].is_u64(),
            "{tag}: malformed audit line {e}"
        );
        for k in ["user", "addr", "method", "status"] {
            check!(
                p,
                e.get(k).is_some(),
                "{tag}: audit line without {k:?}: {e}"
            );
        }
    }
    check!(
        p,
        has(&["login_failed"], "reader", None, None),
        "{tag}: no login_failed line for user reader"
    );
    check!(
        p,
        events
            .iter()
            .filter(|e| e["audit"] == "login_failed")
            .all(|e| e["addr"] == "127.0.0.1"),
        "{tag}: login_failed lines should give addr \"127.0.0.1\""
    );
    if mode == Mode::Token {
        check!(
            p,
            has(&["token"], "writer", None, None),
            "{tag}: no \"token\" line for a token issued to writer"
        );
    }
    check!(
        p,
        has(&["denied"], "reader", Some(TEAM_B), Some(403)),
        "{tag}: no denied line (status 403) for reader on {TEAM_B}"
    );
    check!(
        p,
        has(&["denied"], "writer", Some(TEAM_B), Some(403)),
        "{tag}: no denied line (status 403) for writer on {TEAM_B}"
    );
    check!(
        p,
        has(&["push", "tag"], "writer", Some(TEAM_A), None),
        "{tag}: no push/tag line for writer on {TEAM_A}"
    );
    check!(
        p,
        has(&["delete"], "admin", Some(TEAM_A), None),
        "{tag}: no delete line for admin on {TEAM_A}"
    );
    if !p.is_empty() {
        eprintln!("[{mode_name}] audit file:\n{}", srv.audit_text());
    }
    report(&p);
}

/// Authorization matrix with HTTP Basic against an htpasswd file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_htpasswd() {
    authorization_matrix(Mode::Htpasswd).await;
}

/// Authorization matrix with berth's token service: every token's `access` claim
/// is checked against the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_token() {
    authorization_matrix(Mode::Token).await;
}

// ---- 2. token rejection ----------------------------------------------------------------

/// contract: "Tokens are ES256 JWTs; rejected (401, `error="invalid_token"`):
/// expired, not yet valid, bad signature, wrong audience, unknown issuer, `alg:
/// none`, HS256." and "a valid token lacking a scope the user's policy would grant
/// → 401 with `error="insufficient_scope"` in the challenge".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_rejected() {
    let h = Harness::new();
    let users = h.users();
    let key = h.path("token-key.pem"); // missing: the server generates it
    let cfg = |extra: &str| {
        auth_section(
            "token",
            &users,
            &format!("token_key = {}\n{extra}", q(&key)),
        )
    };
    let mut p = Vec::new();
    let scope = vec![format!("repository:{TEAM_A}:pull")];
    let writer = users.basic(Caller::Writer);

    // A server whose tokens live one second, started first so its token has
    // expired by the end of the test.
    let short = h.start("short-ttl", &cfg("token_ttl_secs = 1"));
    let main = h.start("main", &cfg(""));
    // contract: "token_key = … ES256 key, generated 0600 if missing"
    check!(
        p,
        key.exists(),
        "token_key {} was not generated",
        key.display()
    );
    check!(
        p,
        mode_of(&key) == 0o600,
        "generated token_key has mode {:o}, want 600",
        mode_of(&key)
    );
    let short_reg = Reg::new(&short.base());
    let r = short_reg.token_get(&writer, "berth", &scope, false).await;
    let short_token = token_of(&r).expect("token from the short-ttl server");
    let short_issued = Instant::now();
    h.secret_token(&short_token);
    check!(
        p,
        r.json().unwrap_or_default()["expires_in"] == 1,
        "token_ttl_secs = 1: expires_in is {}",
        r.json().unwrap_or_default()["expires_in"]
    );
    let r = short_reg
        .get("/v2/", &Auth::Bearer(short_token.clone()))
        .await;
    check!(
        p,
        r.status == 200,
        "fresh 1-second token: GET /v2/ want 200, got {}",
        r.show()
    );

    // Same key, other audience / other issuer.
    let other_aud = h.start("other-aud", &cfg("service = \"other\""));
    let other_iss = h.start("other-iss", &cfg("issuer = \"elsewhere\""));

    let reg = Reg::new(&main.base());
    let good = token_of(&reg.token_get(&writer, "berth", &scope, false).await).expect("token");
    h.secret_token(&good);
    p.extend(check_token(
        "main token",
        &good,
        Caller::Writer,
        &scope,
        "berth",
        "berth",
    ));
    for path in ["/v2/", "/v2/team-a/app/tags/list"] {
        let r = reg.get(path, &Auth::Bearer(good.clone())).await;
        check!(
            p,
            r.status == 200 || (r.status == 404 && path.contains("tags")),
            "control: GET {path} with a good token: want 200 (404 for an empty repository), got {}",
            r.show()
        );
    }

    let (header, claims) = jwt_parts(&good);
    let parts: Vec<&str> = good.split('.').collect();
    let now = now_secs();
    let mut bad: Vec<(String, String)> = Vec::new();

    // Control for the crafted tokens: the same header and claims (new jti), signed
    // with the server's own key, are accepted.
    let mut c = claims.clone();
    c["jti"] = json!("crafted-control");
    let control = craft_es256(&h, &header, &c, &key);
    h.secret_token(&control);
    let r = reg.get("/v2/", &Auth::Bearer(control.clone())).await;
    check!(
        p,
        r.status == 200,
        "control: a token crafted by the test with the server's key and valid claims is refused ({}), so the crafted negatives below prove less",
        r.show()
    );

    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    bad.push((
        "signature with one character flipped".into(),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            sig.iter().collect::<String>()
        ),
    ));
    let foreign = h.path("foreign-key.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        foreign.to_str().expect("path"),
    ]);
    bad.push((
        "signed by a foreign P-256 key".into(),
        craft_es256(&h, &header, &claims, &foreign),
    ));
    let mut c = claims.clone();
    c["exp"] = json!(now - 3600);
    c["iat"] = json!(now - 7200);
    c["nbf"] = json!(now - 7200);
    bad.push((
        "expired an hour ago".into(),
        craft_es256(&h, &header, &c, &key),
    ));
    let mut c = claims.clone();
    c["nbf"] = json!(now + 3600);
    c["iat"] = json!(now);
    c["exp"] = json!(now + 7200);
    bad.push((
        "not valid for another hour".into(),
        craft_es256(&h, &header, &c, &key),
    ));
    let mut c = claims.clone();
    c["aud"] = json!("other");
    bad.push((
        "audience \"other\"".into(),
        craft_es256(&h, &header, &c, &key),
    ));
    let mut c = claims.clone();
    c["iss"] = json!("mallory");
    bad.push((
        "issuer \"mallory\"".into(),
        craft_es256(&h, &header, &c, &key),
    ));
    let mut c = claims.clone();
    c.as_object_mut().expect("claims object").remove("exp");
    bad.push(("without exp".into(), craft_es256(&h, &header, &c, &key)));
    bad.push((
        "alg none".into(),
        format!(
            "{}.{}.",
            enc_json(&json!({"alg": "none", "typ": "JWT"})),
            parts[1]
        ),
    ));
    let mut hn = header.clone();
    hn["alg"] = json!("none");
    bad.push((
        "alg none keeping the kid".into(),
        format!("{}.{}.", enc_json(&hn), parts[1]),
    ));
    let hs = enc_json(&json!({"alg": "HS256", "typ": "JWT"}));
    let input = format!("{hs}.{}", parts[1]);
    bad.push((
        "HS256 with key \"secret\"".into(),
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(hmac_sha256(b"secret", input.as_bytes()))
        ),
    ));
    // The classic key confusion: HMAC keyed with the server's public key.
    let public = openssl(&["pkey", "-in", key.to_str().expect("path"), "-pubout"]);
    let mut hh = header.clone();
    hh["alg"] = json!("HS256");
    let input = format!("{}.{}", enc_json(&hh), parts[1]);
    bad.push((
        "HS256 keyed with the server's public key".into(),
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(hmac_sha256(public.as_bytes(), input.as_bytes()))
        ),
    ));
    bad.push(("not a JWT at all".into(), "not-a-jwt-at-all".into()));

    // Tokens from real servers sharing the key.
    let oa = Reg::new(&other_aud.base());
    let t = token_of(&oa.token_get(&writer, "other", &scope, false).await);
    match t {
        Ok(t) => {
            h.secret_token(&t);
            let r = oa.get("/v2/", &Auth::Bearer(t.clone())).await;
            check!(
                p,
                r.status == 200,
                "control: service=\"other\" server accepts its own token: got {}",
                r.show()
            );
            check!(
                p,
                jwt_parts(&t).1["aud"] == "other",
                "service=\"other\" token has aud {}",
                jwt_parts(&t).1["aud"]
            );
            bad.push((
                "issued by a server with service = \"other\" (same key)".into(),
                t,
            ));
        }
        Err(e) => p.push(format!("server with service=\"other\": no token: {e}")),
    }
    let oi = Reg::new(&other_iss.base());
    match token_of(&oi.token_get(&writer, "berth", &scope, false).await) {
        Ok(t) => {
            h.secret_token(&t);
            check!(
                p,
                jwt_parts(&t).1["iss"] == "elsewhere",
                "issuer=\"elsewhere\" token has iss {}",
                jwt_parts(&t).1["iss"]
            );
            bad.push((
                "issued by a server with issuer = \"elsewhere\" (same key)".into(),
                t,
            ));
        }
        Err(e) => p.push(format!("server with issuer=\"elsewhere\": no token: {e}")),
    }

    let check_rejected = |label: &str, r: &Resp, path: &str, p: &mut Vec<String>| {
        let ch = r.challenge().unwrap_or_default();
        let realm = format!("Bearer realm=\"{}/token\",service=\"berth\"", reg.base);
        check!(
            p,
            r.status == 401
                && r.code().as_deref() == Some("UNAUTHORIZED")
                && ch.starts_with(&realm)
                && ch.contains("error=\"invalid_token\""),
            "token {label}: GET {path} want 401 UNAUTHORIZED with a challenge {realm}… error=\"invalid_token\", got {}",
            r.show()
        );
    };
    for (label, t) in &bad {
        h.secret_token(t);
        for path in ["/v2/", "/v2/team-a/app/tags/list"] {
            let r = reg.get(path, &Auth::Bearer(t.clone())).await;
            check_rejected(label, &r, path, &mut p);
        }
    }

    // insufficient_scope: writer's pull-only token on a push, which writer's
    // policy would grant…
    let r = reg
        .send(
            Method::POST,
            "/v2/team-a/app/blobs/uploads/",
            &Auth::Bearer(good.clone()),
            None,
        )
        .await;
    let ch = r.challenge().unwrap_or_default();
    check!(
        p,
        r.status == 401
            && r.code().as_deref() == Some("UNAUTHORIZED")
            && ch.contains("error=\"insufficient_scope\"")
            && ch.contains("scope=\"repository:team-a/app:pull,push\""),
        "writer's pull-only token on POST upload: want 401 with error=\"insufficient_scope\" and scope=\"repository:team-a/app:pull,push\", got {}",
        r.show()
    );
    // …whereas reader's policy would not: 403 DENIED.
    let rt = token_of(
        &reg.token_get(&users.basic(Caller::Reader), "berth", &scope, false)
            .await,
    )
    .expect("reader token");
    h.secret_token(&rt);
    let r = reg
        .send(
            Method::POST,
            "/v2/team-a/app/blobs/uploads/",
            &Auth::Bearer(rt),
            None,
        )
        .await;
    check!(
        p,
        r.status == 403 && r.code().as_deref() == Some("DENIED"),
        "reader's token on POST upload (policy grants no push): want 403 DENIED, got {}",
        r.show()
    );

    // The really expired token (token_ttl_secs = 1), 2.5 s after it was issued.
    let wait = Duration::from_millis(2500).saturating_sub(short_issued.elapsed());
    tokio::time::sleep(wait).await;
    for (name, r) in [("short-ttl", &short_reg), ("main", &reg)] {
        let resp = r.get("/v2/", &Auth::Bearer(short_token.clone())).await;
        check!(
            p,
            resp.status == 401
                && resp
                    .challenge()
                    .unwrap_or_default()
                    .contains("error=\"invalid_token\""),
            "a token_ttl_secs = 1 token 2.5 s after issue, on server {name}: want 401 error=\"invalid_token\", got {}",
            resp.show()
        );
    }

    p.extend(h.finish());
    report(&p);
}

// ---- 3. POST /token -------------------------------------------------------------------

/// contract: "`POST /token` form `grant_type=password&username&password&service&
/// scope[&access_type=offline]` or `grant_type=refresh_token&refresh_token=…` →
/// `{"access_token","expires_in"[, "refresh_token"]}`; errors are OAuth2 JSON
/// `{"error":…}` with 400/401." (auth-oauth.md § Getting a token)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_password_and_refresh_grants() {
    let h = Harness::new();
    let users = h.users();
    let srv = h.start("oauth", &auth_section("token", &users, ""));
    let reg = Reg::new(&srv.base());
    let mut p = Vec::new();
    let pw = users.password(Caller::Writer).to_owned();
    let push_scope = format!("repository:{TEAM_A}:pull,push");

    let r = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "writer"),
            ("password", &pw),
            ("service", "berth"),
            ("client_id", "berth-access-tests"),
            ("access_type", "offline"),
            ("scope", &push_scope),
        ])
        .await;
    let v = r.json().unwrap_or_default();
    check!(
        p,
        r.status == 200,
        "password grant (offline): want 200, got {}",
        r.show()
    );
    let access = v["access_token"].as_str().unwrap_or_default().to_owned();
    let refresh = v["refresh_token"].as_str().unwrap_or_default().to_owned();
    h.secret_token(&access);
    h.secret(&refresh);
    check!(
        p,
        !access.is_empty(),
        "password grant: no access_token in {v}"
    );
    check!(
        p,
        v["expires_in"].is_u64(),
        "password grant: no numeric expires_in in {v}"
    );
    check!(
        p,
        !refresh.is_empty(),
        "password grant with access_type=offline: no refresh_token in {v}"
    );
    if !access.is_empty() {
        p.extend(check_token(
            "password-grant token",
            &access,
            Caller::Writer,
            std::slice::from_ref(&push_scope),
            "berth",
            "berth",
        ));
        let r = reg
            .send(
                Method::POST,
                "/v2/team-a/app/blobs/uploads/",
                &Auth::Bearer(access.clone()),
                None,
            )
            .await;
        check!(
            p,
            r.status == 202,
            "password-grant token on POST upload: want 202, got {}",
            r.show()
        );
    }

    // Without access_type=offline: no refresh token (auth-oauth.md: "This field will
    // only be set when access_type=offline is provided").
    let r = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "writer"),
            ("password", &pw),
            ("service", "berth"),
            ("client_id", "berth-access-tests"),
            ("scope", &push_scope),
        ])
        .await;
    let v = r.json().unwrap_or_default();
    check!(
        p,
        r.status == 200,
        "password grant (online): want 200, got {}",
        r.show()
    );
    if let Some(t) = v["access_token"].as_str() {
        h.secret_token(t);
    }
    check!(
        p,
        v.get("refresh_token").is_none(),
        "online password grant returned a refresh_token: {v}"
    );

    if !refresh.is_empty() {
        // The refresh token gives a new access token for (another) scope.
        let r = reg
            .token_post(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("service", "berth"),
                ("client_id", "berth-access-tests"),
                ("scope", &push_scope),
            ])
            .await;
        let v = r.json().unwrap_or_default();
        check!(
            p,
            r.status == 200,
            "refresh_token grant: want 200, got {}",
            r.show()
        );
        let fresh = v["access_token"].as_str().unwrap_or_default().to_owned();
        h.secret_token(&fresh);
        if let Some(rt) = v["refresh_token"].as_str() {
            h.secret(rt);
        }
        check!(
            p,
            !fresh.is_empty(),
            "refresh_token grant: no access_token in {v}"
        );
        if !fresh.is_empty() {
            check!(
                p,
                fresh != access,
                "refresh_token grant returned the old access token"
            );
            p.extend(check_token(
                "refreshed token",
                &fresh,
                Caller::Writer,
                std::slice::from_ref(&push_scope),
                "berth",
                "berth",
            ));
            let r = reg
                .send(
                    Method::POST,
                    "/v2/team-a/app/blobs/uploads/",
                    &Auth::Bearer(fresh.clone()),
                    None,
                )
                .await;
            check!(
                p,
                r.status == 202,
                "refreshed token on POST upload: want 202, got {}",
                r.show()
            );
        }
        // A refresh token is not an access token.
        let r = reg.get("/v2/", &Auth::Bearer(refresh.clone())).await;
        check!(
            p,
            r.status == 401
                && r.challenge()
                    .unwrap_or_default()
                    .contains("error=\"invalid_token\""),
            "refresh token used as a Bearer access token: want 401 error=\"invalid_token\", got {}",
            r.show()
        );
    }

    // A reader's refresh token cannot be stretched to push.
    let r = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "reader"),
            ("password", users.password(Caller::Reader)),
            ("service", "berth"),
            ("client_id", "berth-access-tests"),
            ("access_type", "offline"),
        ])
        .await;
    let v = r.json().unwrap_or_default();
    if let Some(t) = v["access_token"].as_str() {
        h.secret_token(t);
    }
    match v["refresh_token"].as_str() {
        Some(rrt) => {
            h.secret(rrt);
            let r = reg
                .token_post(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rrt),
                    ("service", "berth"),
                    ("client_id", "berth-access-tests"),
                    ("scope", &push_scope),
                ])
                .await;
            match r.json().unwrap_or_default()["access_token"].as_str() {
                Some(t) => {
                    h.secret_token(t);
                    p.extend(check_token(
                        "reader's refreshed token",
                        t,
                        Caller::Reader,
                        std::slice::from_ref(&push_scope),
                        "berth",
                        "berth",
                    ));
                }
                None => p.push(format!(
                    "reader's refresh_token grant: want 200 with a token, got {}",
                    r.show()
                )),
            }
        }
        None => p.push(format!(
            "reader's offline password grant without scope: want 200 with a refresh_token, got {}",
            r.show()
        )),
    }

    // GET /token?offline_token=true (auth-token.md: refresh_token "will only be set
    // when offline_token=true is provided").
    let r = reg
        .token_get(
            &users.basic(Caller::Writer),
            "berth",
            std::slice::from_ref(&push_scope),
            true,
        )
        .await;
    let v = r.json().unwrap_or_default();
    if let Ok(t) = token_of(&r) {
        h.secret_token(&t);
    }
    match v["refresh_token"].as_str() {
        Some(rt) => h.secret(rt),
        None => p.push(format!(
            "GET /token?offline_token=true: no refresh_token: {}",
            r.show()
        )),
    }

    // Garbage refresh token → invalid_grant (the brief: 401; RFC 6749 §5.2: 400).
    let r = reg
        .token_post(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "garbage-refresh-token-0123456789"),
            ("service", "berth"),
            ("client_id", "berth-access-tests"),
        ])
        .await;
    check!(
        p,
        r.status == 401 && r.json().unwrap_or_default()["error"] == "invalid_grant",
        "garbage refresh token: want 401 {{\"error\":\"invalid_grant\"}}, got {}",
        r.show()
    );
    // Wrong password → an OAuth2 error, no token.
    let r = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "writer"),
            ("password", "wrong-writer-password"),
            ("service", "berth"),
            ("client_id", "berth-access-tests"),
        ])
        .await;
    h.secret("wrong-writer-password");
    let v = r.json().unwrap_or_default();
    check!(
        p,
        (r.status == 400 || r.status == 401)
            && v["error"].is_string()
            && v.get("access_token").is_none(),
        "password grant with a wrong password: want 400/401 {{\"error\":…}}, got {}",
        r.show()
    );
    // Unknown grant type.
    let r = reg
        .token_post(&[
            ("grant_type", "authorization_code"),
            ("service", "berth"),
            ("client_id", "x"),
        ])
        .await;
    check!(
        p,
        (r.status == 400 || r.status == 401) && r.json().unwrap_or_default()["error"].is_string(),
        "grant_type=authorization_code: want 400/401 {{\"error\":…}}, got {}",
        r.show()
    );

    p.extend(h.finish());
    report(&p);
}

// ---- 4. rate limits ------------------------------------------------------------------

/// A `Retry-After` of whole seconds ≥ 1.
fn retry_after_secs(r: &Resp) -> Option<u64> {
    r.h("retry-after")?.trim().parse().ok().filter(|s| *s >= 1)
}

/// contract: "Rate limits → 429 `TOOMANYREQUESTS` with `Retry-After: N` (seconds ≥
/// 1)"; issue 4: "Rate limiting returns 429 with `Retry-After`, and the client
/// backs off and succeeds."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_429_and_the_client_backs_off() {
    let h = Harness::new();
    let users = h.users();
    let srv = h.start(
        "ratelimit",
        &format!(
            "{}\n[rate_limit]\nper_address_per_second = 1\nper_address_burst = 3\nfailed_logins_per_minute = 100\n",
            auth_section("token", &users, "")
        ),
    );
    let reg = Reg::new(&srv.base());
    let mut p = Vec::new();

    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let r = reg.get("/v2/", &Auth::Anon).await;
        statuses.push(r.status);
        last = Some(r);
    }
    let last = last.expect("four requests");
    check!(
        p,
        statuses[..3].iter().all(|s| *s == 401),
        "burst 3: the first three quick requests should pass the limiter (401 challenge), got {statuses:?}"
    );
    check!(
        p,
        last.status == 429 && last.code().as_deref() == Some("TOOMANYREQUESTS"),
        "4th quick request: want 429 TOOMANYREQUESTS, got {}",
        last.show()
    );
    let wait = retry_after_secs(&last);
    check!(
        p,
        wait.is_some(),
        "429 without Retry-After ≥ 1: {}",
        last.show()
    );
    tokio::time::sleep(Duration::from_secs(wait.unwrap_or(1))).await;
    let r = reg.get("/v2/", &Auth::Anon).await;
    check!(
        p,
        r.status == 401,
        "after waiting Retry-After the next request is served: want 401, got {}",
        r.show()
    );

    // The bucket is empty again: the client meets 429s and must back off.
    let image = fault_servers::build_image(
        &mut SmallRng::seed_from_u64(7),
        "amd64",
        &[4096, 2048],
        "rl",
    );
    let layout = h.path("rl-layout");
    fault_servers::write_image_layout(&layout, &image, "v1");
    let host = srv.host();
    let opts = ["--retry-base-delay-ms", "50", "--retries", "10", "--quiet"];
    let mut args = vec!["login", host.as_str(), "-u", "writer", "--password-stdin"];
    args.extend(opts);
    let run = h.cli(
        &args,
        Some(&format!("{}\n", users.password(Caller::Writer))),
    );
    check!(
        p,
        run.ok(),
        "login through the rate limit: {}",
        run.describe()
    );
    let src = format!("oci:{}:v1", layout.display());
    let dst = format!("{host}/team-a/app:rate-limited");
    let mut args = vec!["push", src.as_str(), dst.as_str()];
    args.extend(opts);
    let run = h.cli(&args, None);
    check!(
        p,
        run.ok(),
        "push through the rate limit: {}",
        run.describe()
    );
    let out = h.path("rl-pulled");
    let out_ref = format!("oci:{}:rate-limited", out.display());
    let mut args = vec!["pull", dst.as_str(), out_ref.as_str()];
    args.extend(opts);
    let run = h.cli(&args, None);
    check!(
        p,
        run.ok(),
        "pull through the rate limit: {}",
        run.describe()
    );
    if run.ok() {
        let idx = fault_servers::read_index_json(&out);
        check!(
            p,
            idx["manifests"][0]["digest"] == image.manifest.digest.as_str(),
            "pulled layout index.json names {}, want {}",
            idx["manifests"][0]["digest"],
            image.manifest.digest
        );
    }
    // Evidence the CLI really met the limiter (informational: the log format is
    // not part of the contract).
    let limited = srv.log_text().matches("429").count();
    eprintln!("[ratelimit] the server log mentions 429 {limited} times");

    p.extend(h.finish());
    report(&p);
}

/// contract: "Failed logins above failed_logins_per_minute from one address → 429
/// even with right credentials until the bucket refills."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_and_per_user_limits() {
    let h = Harness::new();
    let users = h.users();
    let rl = "\n[rate_limit]\nfailed_logins_per_minute = 3\n";
    let basic = h.start(
        "failed-basic",
        &format!("{}{rl}", auth_section("htpasswd", &users, "")),
    );
    let token = h.start(
        "failed-token",
        &format!("{}{rl}", auth_section("token", &users, "")),
    );
    let mut p = Vec::new();
    let right = users.basic(Caller::Reader);
    let wrong = |i: usize| {
        let pw = format!("wrong-reader-password-{i}");
        h.secret(&pw);
        Auth::Basic("reader".into(), pw)
    };

    // HTTP Basic on the registry.
    let reg = Reg::new(&basic.base());
    for i in 0..3 {
        let r = reg.get("/v2/", &wrong(i)).await;
        check!(
            p,
            r.status == 401
                && r.code().as_deref() == Some("UNAUTHORIZED")
                && r.challenge().as_deref() == Some("Basic realm=\"berth\""),
            "[htpasswd] wrong password #{}: want 401 UNAUTHORIZED Basic realm=\"berth\", got {}",
            i + 1,
            r.show()
        );
    }
    let r = reg.get("/v2/", &wrong(3)).await;
    check!(
        p,
        r.status == 429
            && r.code().as_deref() == Some("TOOMANYREQUESTS")
            && retry_after_secs(&r).is_some(),
        "[htpasswd] 4th wrong password: want 429 TOOMANYREQUESTS + Retry-After ≥ 1, got {}",
        r.show()
    );
    let r = reg.get("/v2/", &right).await;
    check!(
        p,
        r.status == 429
            && r.code().as_deref() == Some("TOOMANYREQUESTS")
            && retry_after_secs(&r).is_some(),
        "[htpasswd] right password after 4 failures: want 429 TOOMANYREQUESTS + Retry-After, got {}",
        r.show()
    );

    // The token service.
    let reg = Reg::new(&token.base());
    let scope = [format!("repository:{TEAM_A}:pull")];
    for i in 0..3 {
        let r = reg.token_get(&wrong(10 + i), "berth", &scope, false).await;
        check!(
            p,
            r.status == 401,
            "[token] GET /token wrong password #{}: want 401, got {}",
            i + 1,
            r.show()
        );
    }
    let r = reg.token_get(&wrong(13), "berth", &scope, false).await;
    check!(
        p,
        r.status == 429 && retry_after_secs(&r).is_some(),
        "[token] 4th wrong password at /token: want 429 + Retry-After ≥ 1, got {}",
        r.show()
    );
    let r = reg.token_get(&right, "berth", &scope, false).await;
    if let Ok(t) = token_of(&r) {
        h.secret_token(&t);
    }
    check!(
        p,
        r.status == 429 && retry_after_secs(&r).is_some(),
        "[token] right password after 4 failures at /token: want 429 + Retry-After, got {}",
        r.show()
    );
    let r = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "reader"),
            ("password", users.password(Caller::Reader)),
            ("service", "berth"),
            ("client_id", "berth-access-tests"),
        ])
        .await;
    if let Some(t) = r.json().unwrap_or_default()["access_token"].as_str() {
        h.secret_token(t);
    }
    check!(
        p,
        r.status == 429,
        "[token] POST /token password grant after 4 failures: want 429, got {}",
        r.show()
    );

    // Per user: writer's bucket runs dry, reader (same address) is unaffected
    // (contract: per_user_per_second / per_user_burst).
    let per_user = h.start(
        "per-user",
        &format!(
            "{}\n[rate_limit]\nper_user_per_second = 1\nper_user_burst = 2\n",
            auth_section("htpasswd", &users, "")
        ),
    );
    let reg = Reg::new(&per_user.base());
    let writer = users.basic(Caller::Writer);
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let r = reg.get("/v2/", &writer).await;
        statuses.push(r.status);
        last = Some(r);
    }
    let last = last.expect("three requests");
    check!(
        p,
        statuses[..2] == [200, 200]
            && last.status == 429
            && last.code().as_deref() == Some("TOOMANYREQUESTS")
            && retry_after_secs(&last).is_some(),
        "per_user_burst = 2: writer's 3 quick GET /v2/ want [200, 200, 429 TOOMANYREQUESTS + Retry-After], got {statuses:?}; last {}",
        last.show()
    );
    let r = reg.get("/v2/", &right).await;
    check!(
        p,
        r.status == 200,
        "per-user limit: reader from the same address right after writer was limited: want 200, got {}",
        r.show()
    );

    p.extend(h.finish());
    for srv in [&basic, &token] {
        let n = srv
            .audit_events()
            .iter()
            .filter(|e| e["audit"] == "login_failed" && e["user"] == "reader")
            .count();
        check!(
            p,
            n >= 3,
            "server {}: {n} login_failed audit lines for reader, want ≥ 3; audit:\n{}",
            srv.name,
            srv.audit_text()
        );
    }
    report(&p);
}

// ---- repository patterns ---------------------------------------------------------------

/// contract: "most specific matching repository pattern wins; `*` within a path
/// component, `**` any number of components (team-a/** matches team-a and
/// below)"; issue 4: "longest match wins". The contract leaves open whether the
/// winner is chosen among all rules or among those that apply to the caller;
/// berth documents the latter (README: "the most specific matching pattern wins
/// (its actions replace, not add to, those of broader patterns)"; `Policy::allowed`:
/// "Among the rules that apply to `who` …"), so a narrower rule for writer does not
/// take reader's access away, but does replace writer's own broader grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_patterns_and_most_specific_rule() {
    let h = Harness::new();
    let users = h.users();
    let body = format!(
        r#"[auth]
mode = "htpasswd"
htpasswd = {}
admins = ["admin"]

[[auth.rules]]
repositories = ["team-a/**"]
users = ["reader"]
actions = ["pull"]

[[auth.rules]]
repositories = ["team-a/**"]
users = ["writer"]
actions = ["pull", "push"]

[[auth.rules]]
repositories = ["team-a/private/**"]
users = ["writer"]
actions = ["pull"]

[[auth.rules]]
repositories = ["lib/*/app"]
users = ["reader"]
actions = ["pull"]
"#,
        q(&users.file)
    );
    let srv = h.start("patterns", &body);
    let reg = Reg::new(&srv.base());
    let admin = users.basic(Caller::Admin);
    let mut p = Vec::new();
    // (repository, reader may pull, writer may pull, writer may push)
    let table: &[(&str, bool, bool, bool)] = &[
        ("team-a", true, true, true),
        ("team-a/x/y/z", true, true, true),
        ("team-a/private/db", true, true, false),
        ("team-ab/app", false, false, false),
        ("team-a-evil/app", false, false, false),
        ("lib/foo/app", true, false, false),
        ("lib/foo/bar/app", false, false, false),
        ("lib/app", false, false, false),
    ];
    for (i, (repo, ..)) in table.iter().enumerate() {
        seed_plain(&reg, repo, &admin, 500 + i as u64).await;
    }
    for (repo, reader_ok, writer_ok, writer_push) in table {
        let r = reg
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &users.basic(Caller::Writer),
                None,
            )
            .await;
        let want = if *writer_push { 202 } else { 403 };
        check!(
            p,
            r.status == want,
            "writer POST /v2/{repo}/blobs/uploads/: want {want}, got {}",
            r.show()
        );
        for (caller, allowed) in [(Caller::Reader, reader_ok), (Caller::Writer, writer_ok)] {
            let r = reg
                .get(&format!("/v2/{repo}/manifests/v1"), &users.basic(caller))
                .await;
            let (want, code) = if *allowed {
                (200, None)
            } else {
                (403, Some("DENIED"))
            };
            check!(
                p,
                r.status == want && (code.is_none() || r.code().as_deref() == code),
                "{} GET /v2/{repo}/manifests/v1: want {want}{}, got {}",
                caller.label(),
                code.map(|c| format!(" {c}")).unwrap_or_default(),
                r.show()
            );
        }
    }
    let r = reg.get("/v2/_catalog", &users.basic(Caller::Reader)).await;
    let mut want: Vec<&str> = table.iter().filter(|t| t.1).map(|t| t.0).collect();
    want.sort();
    let got: Vec<String> = r.json().unwrap_or_default()["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or("?").to_owned())
        .collect();
    check!(
        p,
        r.status == 200 && got == want,
        "reader's catalog: want {want:?}, got {got:?} ({})",
        r.show()
    );
    p.extend(h.finish());
    report(&p);
}

/// Push one small image tagged v1 into `repo`.
async fn seed_plain(reg: &Reg, repo: &str, auth: &Auth, seed: u64) {
    let img = fault_servers::build_image(&mut SmallRng::seed_from_u64(seed), "amd64", &[256], repo);
    for b in img.blobs() {
        push_blob(reg, repo, auth, &b.bytes).await;
    }
    put_manifest(reg, repo, "v1", auth, &img.manifest.bytes).await;
}

// ---- trusted external issuers ------------------------------------------------------------

/// The uncompressed P-256 point (x, y) of the key in `key` (PEM).
fn p256_public_xy(h: &Harness, key: &Path) -> (Vec<u8>, Vec<u8>) {
    let der = h.unique("pub.der");
    openssl(&[
        "pkey",
        "-in",
        key.to_str().expect("path"),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        der.to_str().expect("path"),
    ]);
    let der = std::fs::read(&der).expect("read DER");
    let point = &der[der.len() - 65..];
    assert_eq!(point[0], 4, "uncompressed point");
    (point[1..33].to_vec(), point[33..].to_vec())
}

fn gen_p256(path: &Path) {
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path.to_str().expect("path"),
    ]);
    chmod(path, 0o600);
}

/// contract: "`[[auth.trusted_issuers]]` # external JWT issuers: issuer, audience,
/// jwks = \"/path/jwks.json\" # or public_keys = [\"/path/pub.pem\"], algorithms";
/// issue 4: "external token issuers: accept JWTs signed by configured public keys
/// or a JWKS file (`iss`, `aud`, `exp`, `nbf` checked; algorithm allow-list)";
/// `realm` "optional; default derived from Host header".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_external_issuers() {
    let h = Harness::new();
    let users = h.users();
    let pem_key = h.path("idp-pem.key");
    let jwks_key = h.path("idp-jwks.key");
    gen_p256(&pem_key);
    gen_p256(&jwks_key);
    let pub_pem = h.path("idp-pem.pub");
    std::fs::write(
        &pub_pem,
        openssl(&["pkey", "-in", pem_key.to_str().expect("path"), "-pubout"]),
    )
    .expect("write public key");
    let (x, y) = p256_public_xy(&h, &jwks_key);
    let jwks = h.path("idp.jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_vec(&json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&x), "y": URL_SAFE_NO_PAD.encode(&y),
        }]}))
        .expect("jwks"),
    )
    .expect("write jwks");
    let body = format!(
        r#"{}
[[auth.trusted_issuers]]
issuer = "https://idp.example"
audience = "berth"
public_keys = [{}]
algorithms = ["ES256"]

[[auth.trusted_issuers]]
issuer = "https://jwks.example"
audience = "berth"
jwks = {}
"#,
        auth_section(
            "token",
            &users,
            "realm = \"https://auth.example.test/token\""
        ),
        q(&pub_pem),
        q(&jwks)
    );
    let srv = h.start("trusted", &body);
    let reg = Reg::new(&srv.base());
    let mut p = Vec::new();

    // A configured realm is what the challenge names.
    let r = reg.get("/v2/", &Auth::Anon).await;
    check!(
        p,
        r.status == 401
            && r.challenge().as_deref()
                == Some("Bearer realm=\"https://auth.example.test/token\",service=\"berth\""),
        "with realm configured, anonymous GET /v2/: want 401 Bearer realm=\"https://auth.example.test/token\",service=\"berth\", got {}",
        r.show()
    );

    let now = now_secs();
    let claims = |iss: &str| {
        json!({
            "iss": iss, "sub": "writer", "aud": "berth",
            "exp": now + 300, "nbf": now - 5, "iat": now - 5, "jti": format!("ext-{iss}"),
            "access": [{"type": "repository", "name": TEAM_A, "actions": ["pull", "push"]}],
        })
    };
    let hdr = json!({"alg": "ES256", "typ": "JWT"});
    let hdr_kid = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
    let good_pem = craft_es256(&h, &hdr, &claims("https://idp.example"), &pem_key);
    let good_jwks = craft_es256(&h, &hdr_kid, &claims("https://jwks.example"), &jwks_key);
    for (label, t) in [("PEM-key issuer", &good_pem), ("JWKS issuer", &good_jwks)] {
        h.secret_token(t);
        let r = reg.get("/v2/", &Auth::Bearer(t.clone())).await;
        check!(
            p,
            r.status == 200,
            "{label} token: GET /v2/ want 200, got {}",
            r.show()
        );
        let r = reg
            .send(
                Method::POST,
                &format!("/v2/{TEAM_A}/blobs/uploads/"),
                &Auth::Bearer(t.clone()),
                None,
            )
            .await;
        check!(
            p,
            r.status == 202,
            "{label} token (push on {TEAM_A}): POST upload want 202, got {}",
            r.show()
        );
    }

    let mut bad = Vec::new();
    bad.push((
        "idp.example claims signed with the JWKS issuer's key",
        craft_es256(&h, &hdr, &claims("https://idp.example"), &jwks_key),
    ));
    bad.push((
        "jwks.example claims signed with the PEM issuer's key",
        craft_es256(&h, &hdr_kid, &claims("https://jwks.example"), &pem_key),
    ));
    let mut c = claims("https://idp.example");
    c["aud"] = json!("someone-else");
    bad.push((
        "external token for another audience",
        craft_es256(&h, &hdr, &c, &pem_key),
    ));
    let mut c = claims("https://idp.example");
    c["exp"] = json!(now - 3600);
    c["iat"] = json!(now - 7200);
    c["nbf"] = json!(now - 7200);
    bad.push((
        "expired external token",
        craft_es256(&h, &hdr, &c, &pem_key),
    ));
    let mut c = claims("https://idp.example");
    c["nbf"] = json!(now + 3600);
    bad.push((
        "external token not yet valid",
        craft_es256(&h, &hdr, &c, &pem_key),
    ));
    let mut c = claims("https://idp.example");
    c["iss"] = json!("https://unknown.example");
    bad.push((
        "unknown external issuer",
        craft_es256(&h, &hdr, &c, &pem_key),
    ));
    let payload = enc_json(&claims("https://idp.example"));
    bad.push((
        "external claims with alg none",
        format!(
            "{}.{payload}.",
            enc_json(&json!({"alg": "none", "typ": "JWT"}))
        ),
    ));
    let input = format!(
        "{}.{payload}",
        enc_json(&json!({"alg": "HS256", "typ": "JWT"}))
    );
    let pem_text = std::fs::read(&pub_pem).expect("read pub");
    bad.push((
        "external claims HS256-signed with the issuer's public key",
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(hmac_sha256(&pem_text, input.as_bytes()))
        ),
    ));
    for (label, t) in &bad {
        h.secret_token(t);
        let r = reg.get("/v2/", &Auth::Bearer(t.clone())).await;
        check!(
            p,
            r.status == 401
                && r.code().as_deref() == Some("UNAUTHORIZED")
                && r.challenge()
                    .unwrap_or_default()
                    .contains("error=\"invalid_token\""),
            "{label}: GET /v2/ want 401 UNAUTHORIZED error=\"invalid_token\", got {}",
            r.show()
        );
    }
    p.extend(h.finish());
    report(&p);
}

// ---- 5. startup refusals -------------------------------------------------------------

/// contract: htpasswd "refused if world-readable"; TLS key "refused if
/// world-readable (mode & 0o004)"; mode "none" "only allowed on a loopback listen
/// address unless allow_anonymous_on_network = true".
#[test]
fn serve_refuses_unsafe_configurations() {
    let h = Harness::new();
    let users = h.users();
    let mut p = Vec::new();
    let mentions_mode = |out: &str| {
        let o = out.to_ascii_lowercase();
        ["readable", "mode", "chmod", "permission", "group or others"]
            .iter()
            .any(|w| o.contains(w))
    };

    // World-readable htpasswd.
    chmod(&users.file, 0o644);
    let (code, out) = h.serve_expect_exit(
        "htpasswd-644",
        "127.0.0.1:0",
        &auth_section("htpasswd", &users, ""),
    );
    let f = users.file.display().to_string();
    check!(
        p,
        code.is_some_and(|c| c != 0) && out.contains(&f) && mentions_mode(&out),
        "world-readable htpasswd: want a non-zero exit naming {f} and its mode; got exit {code:?}: {out}"
    );
    chmod(&users.file, 0o600);
    let s = h.start("htpasswd-600", &auth_section("htpasswd", &users, ""));
    s.stop();

    // Anonymous on a network address.
    let (code, out) = h.serve_expect_exit("none-network", "0.0.0.0:0", "[auth]\nmode = \"none\"\n");
    check!(
        p,
        code == Some(2) && out.contains("auth.allow_anonymous_on_network"),
        "mode = \"none\" on 0.0.0.0:0: want exit 2 naming auth.allow_anonymous_on_network; got exit {code:?}: {out}"
    );
    let (code, out) = h.serve_expect_exit("default-network", "0.0.0.0:0", "");
    check!(
        p,
        code == Some(2) && out.contains("auth.allow_anonymous_on_network"),
        "no [auth] (mode none by default) on 0.0.0.0:0: want exit 2 naming auth.allow_anonymous_on_network; got exit {code:?}: {out}"
    );

    // World-readable TLS key.
    let ca = make_ca(&h, "refuse");
    let (crt, key) = make_server_cert(&h, "refuse-server", &ca, 4242);
    chmod(&key, 0o644);
    let tls = format!("[tls]\ncert = {}\nkey = {}\n", q(&crt), q(&key));
    let (code, out) = h.serve_expect_exit(
        "tls-key-644",
        "127.0.0.1:0",
        &format!("{tls}\n{}", auth_section("htpasswd", &users, "")),
    );
    let k = key.display().to_string();
    check!(
        p,
        code.is_some_and(|c| c != 0) && out.contains(&k) && mentions_mode(&out),
        "world-readable TLS key: want a non-zero exit naming {k} and its mode; got exit {code:?}: {out}"
    );
    chmod(&key, 0o600);
    let s = h.start(
        "tls-key-600",
        &format!("{tls}\n{}", auth_section("htpasswd", &users, "")),
    );
    check!(
        p,
        s.scheme == "https",
        "with [tls] the ready line should say https://, it says {}://",
        s.scheme
    );
    s.stop();

    // World-readable token signing key (issue 4: "refuse to start with a
    // world-readable key or htpasswd file").
    let tk = h.path("token-key-644.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        tk.to_str().expect("path"),
    ]);
    chmod(&tk, 0o644);
    let (code, out) = h.serve_expect_exit(
        "token-key-644",
        "127.0.0.1:0",
        &auth_section("token", &users, &format!("token_key = {}", q(&tk))),
    );
    let t = tk.display().to_string();
    check!(
        p,
        code.is_some_and(|c| c != 0) && out.contains(&t) && mentions_mode(&out),
        "world-readable token_key: want a non-zero exit naming {t} and its mode; got exit {code:?}: {out}"
    );
    chmod(&tk, 0o600);
    let s = h.start(
        "token-key-600",
        &auth_section("token", &users, &format!("token_key = {}", q(&tk))),
    );
    s.stop();

    p.extend(h.finish());
    report(&p);
}

// ---- 7. TLS ----------------------------------------------------------------------------

/// A test CA: (certificate, key).
fn make_ca(h: &Harness, name: &str) -> (PathBuf, PathBuf) {
    let crt = h.path(&format!("{name}-ca.crt"));
    let key = h.path(&format!("{name}-ca.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().expect("path"),
        "-out",
        crt.to_str().expect("path"),
        "-days",
        "2",
        "-subj",
        &format!("/CN=berth access test CA {name}"),
    ]);
    chmod(&key, 0o600);
    (crt, key)
}

/// A server certificate for 127.0.0.1 and localhost signed by `ca`, with `serial`:
/// (certificate, key mode 0600).
fn make_server_cert(
    h: &Harness,
    name: &str,
    ca: &(PathBuf, PathBuf),
    serial: u32,
) -> (PathBuf, PathBuf) {
    let crt = h.path(&format!("{name}.crt"));
    let key = h.path(&format!("{name}.key"));
    let csr = h.path(&format!("{name}.csr"));
    let ext = h.path(&format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().expect("path"),
        "-out",
        csr.to_str().expect("path"),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    chmod(&key, 0o600);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().expect("path"),
        "-CA",
        ca.0.to_str().expect("path"),
        "-CAkey",
        ca.1.to_str().expect("path"),
        "-set_serial",
        &serial.to_string(),
        "-days",
        "2",
        "-out",
        crt.to_str().expect("path"),
        "-extfile",
        ext.to_str().expect("path"),
    ]);
    (crt, key)
}

/// A client trusting `ca` (PEM file) besides the built-in roots; fresh
/// connections each request so a certificate change is seen.
fn tls_client(ca: Option<&Path>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0);
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("read CA");
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"));
    }
    b.build().expect("client")
}

/// The serial number of the certificate served at `port` (`serial=…`).
fn served_serial(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn cert_serial(crt: &Path) -> String {
    openssl(&[
        "x509",
        "-in",
        crt.to_str().expect("path"),
        "-noout",
        "-serial",
    ])
    .trim()
    .to_owned()
}

/// contract `[tls]`: "HTTPS when both set … reload_interval_secs = 1 # files re-read
/// when their mtime changes"; issue 4: "TLS with rustls: certificate and key
/// files, reload on change without restart".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_test_ca_and_certificate_reload() {
    let h = Harness::new();
    let users = h.users();
    let mut p = Vec::new();
    let ca1 = make_ca(&h, "one");
    let (crt, key) = make_server_cert(&h, "server", &ca1, 1001);
    check!(p, mode_of(&key) == 0o600, "test key mode");
    let srv = h.start(
        "tls",
        &format!(
            "[tls]\ncert = {}\nkey = {}\nreload_interval_secs = 1\n\n{}",
            q(&crt),
            q(&key),
            auth_section("token", &users, "")
        ),
    );
    assert_eq!(
        srv.scheme, "https",
        "with [tls] the ready line must say https://"
    );
    let base = srv.base();

    // A client trusting CA 1: the challenge's realm is https (contract: default
    // realm "{http|https}://{Host}/token"), the token service works over TLS.
    let reg = Reg {
        http: tls_client(Some(&ca1.0)),
        base: base.clone(),
    };
    // reqwest negotiates HTTP/2 over TLS (ALPN), where the authority is the
    // `:authority` pseudo-header, not a Host header; check HTTP/1.1 too.
    let h1 = Reg {
        http: reqwest::Client::builder()
            .http1_only()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&ca1.0).expect("CA"))
                    .expect("CA PEM"),
            )
            .build()
            .expect("client"),
        base: base.clone(),
    };
    let want = format!("Bearer realm=\"{base}/token\",service=\"berth\"");
    for (proto, client) in [("HTTP/2 (ALPN)", &reg), ("HTTP/1.1", &h1)] {
        let r = client.get("/v2/", &Auth::Anon).await;
        check!(
            p,
            r.status == 401 && r.challenge().as_deref() == Some(want.as_str()),
            "over TLS with {proto}, anonymous GET /v2/: want 401 with {want}, got {}",
            r.show()
        );
    }
    let scope = [format!("repository:{TEAM_A}:pull")];
    match token_of(
        &reg.token_get(&users.basic(Caller::Writer), "berth", &scope, false)
            .await,
    ) {
        Ok(t) => {
            h.secret_token(&t);
            let r = reg.get("/v2/", &Auth::Bearer(t)).await;
            check!(
                p,
                r.status == 200,
                "over TLS with a token, GET /v2/: want 200, got {}",
                r.show()
            );
        }
        Err(e) => p.push(format!("over TLS: {e}")),
    }

    // Without the CA the handshake fails.
    let r = tls_client(None).get(format!("{base}/v2/")).send().await;
    check!(
        p,
        r.is_err(),
        "a client without the test CA completed a request: {:?}",
        r.map(|r| r.status())
    );
    check!(
        p,
        served_serial(srv.port) == cert_serial(&crt),
        "served serial {:?}, want {:?}",
        served_serial(srv.port),
        cert_serial(&crt)
    );

    // Replace the certificate and key (rename over them, as a cert manager does).
    let ca2 = make_ca(&h, "two");
    let (crt2, key2) = make_server_cert(&h, "server-two", &ca2, 2002);
    std::fs::rename(&key2, &key).expect("replace key");
    std::fs::rename(&crt2, &crt).expect("replace cert");
    check!(p, mode_of(&key) == 0o600, "replaced key mode");
    let new_client = tls_client(Some(&ca2.0));
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut reloaded = false;
    while Instant::now() < deadline {
        if new_client.get(format!("{base}/v2/")).send().await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check!(
        p,
        reloaded,
        "8 s after replacing the certificate (reload_interval_secs = 1) a client trusting only the new CA still cannot connect"
    );
    if reloaded {
        check!(
            p,
            served_serial(srv.port) == cert_serial(&crt),
            "after reload the served serial is {:?}, want {:?}",
            served_serial(srv.port),
            cert_serial(&crt)
        );
        let r = tls_client(Some(&ca1.0))
            .get(format!("{base}/v2/"))
            .send()
            .await;
        check!(
            p,
            r.is_err(),
            "after reload a client trusting only the old CA still connects"
        );
    }

    p.extend(h.finish());
    report(&p);
}

/// issue 4: "Real clients with credentials against berth with the token service on
/// TLS (a test CA generated in the test): … `berth login/push/pull`"; contract:
/// "`berth push/pull … --ca-cert CA.pem` (or env BERTH_CA_CERT) to trust a test CA".
#[test]
fn tls_berth_login_push_pull() {
    let h = Harness::new();
    let users = h.users();
    let mut p = Vec::new();
    let ca = make_ca(&h, "cli");
    let (crt, key) = make_server_cert(&h, "cli-server", &ca, 3003);
    let srv = h.start(
        "tls-cli",
        &format!(
            "[tls]\ncert = {}\nkey = {}\n\n{}",
            q(&crt),
            q(&key),
            auth_section("token", &users, "")
        ),
    );
    let host = srv.host();
    let ca_path = ca.0.to_str().expect("path").to_owned();
    let pw = format!("{}\n", users.password(Caller::Writer));

    let run = h.cli(
        &["login", &host, "-u", "writer", "--password-stdin"],
        Some(&pw),
    );
    check!(
        p,
        !run.ok(),
        "login over TLS without the test CA succeeded: {}",
        run.describe()
    );
    let run = h.cli(
        &[
            "login",
            &host,
            "-u",
            "writer",
            "--password-stdin",
            "--ca-cert",
            &ca_path,
        ],
        Some(&pw),
    );
    check!(
        p,
        run.ok(),
        "login over TLS with --ca-cert: {}",
        run.describe()
    );

    let image =
        fault_servers::build_image(&mut SmallRng::seed_from_u64(9), "amd64", &[3000], "tls");
    let layout = h.path("tls-layout");
    fault_servers::write_image_layout(&layout, &image, "v1");
    let src = format!("oci:{}:v1", layout.display());
    let dst = format!("{host}/team-a/app:tls");
    let run = h.cli(
        &["push", &src, &dst, "--ca-cert", &ca_path, "--quiet"],
        None,
    );
    check!(p, run.ok(), "push over TLS: {}", run.describe());
    let out = h.path("tls-pulled");
    let out_ref = format!("oci:{}:tls", out.display());
    let run = h.cli(
        &["pull", &dst, &out_ref, "--ca-cert", &ca_path, "--quiet"],
        None,
    );
    check!(p, run.ok(), "pull over TLS: {}", run.describe());
    if run.ok() {
        let idx = fault_servers::read_index_json(&out);
        check!(
            p,
            idx["manifests"][0]["digest"] == image.manifest.digest.as_str(),
            "pulled layout names {}, want {}",
            idx["manifests"][0]["digest"],
            image.manifest.digest
        );
    }
    // reader may not push to team-a.
    let run = h.cli(
        &[
            "login",
            &host,
            "-u",
            "reader",
            "--password-stdin",
            "--ca-cert",
            &ca_path,
        ],
        Some(&format!("{}\n", users.password(Caller::Reader))),
    );
    check!(p, run.ok(), "reader login over TLS: {}", run.describe());
    let dst2 = format!("{host}/team-a/app:by-reader");
    let run = h.cli(
        &["push", &src, &dst2, "--ca-cert", &ca_path, "--quiet"],
        None,
    );
    check!(
        p,
        !run.ok(),
        "reader pushed to team-a over TLS: {}",
        run.describe()
    );

    p.extend(h.finish());
    let events = srv.audit_events();
    check!(
        p,
        events
            .iter()
            .any(|e| (e["audit"] == "push" || e["audit"] == "tag")
                && e["user"] == "writer"
                && e["repository"] == TEAM_A),
        "no push/tag audit line for writer's CLI push; audit:\n{}",
        srv.audit_text()
    );
    check!(
        p,
        events
            .iter()
            .any(|e| e["audit"] == "denied" && e["user"] == "reader"),
        "no denied audit line for reader's CLI push; audit:\n{}",
        srv.audit_text()
    );
    report(&p);
}

/// `berth check-config` accepts the configuration the tests use, also with the
/// client's own `BERTH_AUTH_FILE` set (the client CLI contract: "berth writes only
/// its own file (`$BERTH_AUTH_FILE`, …)"; `berth serve --config`: "BERTH_<SECTION>_<KEY>
/// variables override it" — the two must not collide now that `[auth]` exists);
/// `berth passwd` on an existing user replaces its hash and keeps the file 0600.
#[test]
fn check_config_and_passwd_update() {
    let h = Harness::new();
    let users = h.users();
    let mut p = Vec::new();
    let (config, _, _) = h.write_config(
        "check",
        "127.0.0.1:0",
        &format!(
            "{}\n[rate_limit]\nper_address_per_second = 1\nper_address_burst = 3\nfailed_logins_per_minute = 3\n",
            auth_section("token", &users, "token_ttl_secs = 1")
        ),
    );
    let cfg = config.to_str().expect("path");
    let run = h.cli_env(&["check-config", cfg], None, &[]);
    check!(p, run.ok(), "check-config: {}", run.describe());
    let auth_file = h.path("client-auth.json");
    let run = h.cli_env(
        &["check-config", cfg],
        None,
        &[("BERTH_AUTH_FILE", auth_file.clone())],
    );
    check!(
        p,
        run.ok(),
        "check-config with the client's BERTH_AUTH_FILE set in the environment: {}",
        run.describe()
    );
    let before = std::fs::read_to_string(&users.file).expect("read");
    h.passwd(&users.file, "reader", "a-new-reader-password", false);
    h.secret("a-new-reader-password");
    let after = std::fs::read_to_string(&users.file).expect("read");
    check!(
        p,
        mode_of(&users.file) == 0o600,
        "htpasswd mode after an update: {:o}",
        mode_of(&users.file)
    );
    check!(
        p,
        after.lines().filter(|l| l.starts_with("reader:")).count() == 1,
        "one line per user:\n{after}"
    );
    check!(p, before != after, "the reader's hash did not change");
    p.extend(h.finish());
    report(&p);
}

// ---- client certificates and per-action limits -------------------------------------

/// A client certificate for `cn` signed by `ca` (clientAuth), as one PEM holding
/// the certificate and its PKCS#8 key (what `reqwest::Identity::from_pem` reads).
fn make_client_identity(h: &Harness, cn: &str, ca: &(PathBuf, PathBuf)) -> Vec<u8> {
    let key = h.unique(&format!("client-{cn}.key"));
    let csr = h.unique(&format!("client-{cn}.csr"));
    let crt = h.unique(&format!("client-{cn}.crt"));
    let ext = h.unique(&format!("client-{cn}.ext"));
    std::fs::write(
        &ext,
        "extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n",
    )
    .expect("write ext");
    let s = |p: &Path| p.to_str().expect("path").to_owned();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
        "-subj",
        &format!("/CN={cn}"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca.0),
        "-CAkey",
        &s(&ca.1),
        "-set_serial",
        "4242",
        "-days",
        "2",
        "-out",
        &s(&crt),
        "-extfile",
        &s(&ext),
    ]);
    let mut pem = std::fs::read(&crt).expect("client cert");
    pem.extend(std::fs::read(&key).expect("client key"));
    pem
}

/// issue 4 §3: with `tls.client_ca`, a client certificate signed by that CA is
/// verified in the handshake and its subject CN is the user — the policy then
/// applies as for a password login; a certificate from another CA is refused in
/// the handshake; no certificate at all still gets the ordinary 401 challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_log_in_as_their_subject() {
    let h = Harness::new();
    let users = h.users();
    let mut p = Vec::new();
    let ca = make_ca(&h, "mtls");
    let other_ca = make_ca(&h, "stranger");
    let (crt, key) = make_server_cert(&h, "mtls-server", &ca, 77);
    let srv = h.start(
        "mtls",
        &format!(
            "[tls]\ncert = {}\nkey = {}\nclient_ca = {}\n\n{}",
            q(&crt),
            q(&key),
            q(&ca.0),
            auth_section("htpasswd", &users, "")
        ),
    );
    let with_identity = |pem: Option<Vec<u8>>| {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&ca.0).expect("CA")).expect("CA PEM"),
            );
        if let Some(pem) = pem {
            b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
        }
        Reg {
            http: b.build().expect("client"),
            base: srv.base(),
        }
    };
    let writer = with_identity(Some(make_client_identity(&h, "writer", &ca)));
    let reader = with_identity(Some(make_client_identity(&h, "reader", &ca)));
    let nobody = with_identity(None);
    let stranger = with_identity(Some(make_client_identity(&h, "writer", &other_ca)));

    let r = writer.get("/v2/", &Auth::Anon).await;
    check!(
        p,
        r.status == 200,
        "writer certificate, GET /v2/: want 200, got {}",
        r.show()
    );
    let r = writer
        .send(
            Method::POST,
            &format!("/v2/{TEAM_A}/blobs/uploads/"),
            &Auth::Anon,
            None,
        )
        .await;
    check!(
        p,
        r.status == 202,
        "writer certificate may push to {TEAM_A}: want 202, got {}",
        r.show()
    );
    let r = reader
        .send(
            Method::POST,
            &format!("/v2/{TEAM_A}/blobs/uploads/"),
            &Auth::Anon,
            None,
        )
        .await;
    check!(
        p,
        r.status == 403 && r.code().as_deref() == Some("DENIED"),
        "reader certificate may not push: want 403 DENIED, got {}",
        r.show()
    );
    let r = reader
        .get(&format!("/v2/{TEAM_A}/tags/list"), &Auth::Anon)
        .await;
    check!(
        p,
        r.status == 404 || r.status == 200,
        "reader certificate may pull: got {}",
        r.show()
    );
    let r = nobody.get("/v2/", &Auth::Anon).await;
    check!(
        p,
        r.status == 401 && r.challenge().as_deref() == Some("Basic realm=\"berth\""),
        "no certificate: want the Basic challenge, got {}",
        r.show()
    );
    let r = nobody.get("/v2/", &users.basic(Caller::Writer)).await;
    check!(
        p,
        r.status == 200,
        "no certificate but a password: want 200, got {}",
        r.show()
    );
    let refused = stranger
        .http
        .get(format!("{}/v2/", srv.base()))
        .send()
        .await;
    check!(
        p,
        refused.as_ref().map(|r| r.status().as_u16()).unwrap_or(0) != 200,
        "a certificate from another CA must not log in: {refused:?}"
    );
    p.extend(h.finish());
    report(&p);
}

/// issue 4 §4: limits per action (`rate_limit.pull_per_second`, …) count each
/// caller's requests of that kind separately; over the limit → 429
/// `TOOMANYREQUESTS` with `Retry-After`, while other kinds of request go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_action_rate_limits() {
    let h = Harness::new();
    let users = h.users();
    let mut p = Vec::new();
    let srv = h.start(
        "per-action",
        &format!(
            "{}\n[rate_limit]\npull_per_second = 0.2\nper_action_burst = 2\n",
            auth_section("htpasswd", &users, "")
        ),
    );
    let reg = Reg::new(&srv.base());
    let writer = users.basic(Caller::Writer);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(reg.get(&format!("/v2/{TEAM_A}/tags/list"), &writer).await);
    }
    let last = &statuses[2];
    check!(
        p,
        statuses[..2].iter().all(|r| r.status != 429)
            && last.status == 429
            && last.code().as_deref() == Some("TOOMANYREQUESTS")
            && last
                .h("retry-after")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|s| s >= 1),
        "third pull within the burst of 2: want 429 TOOMANYREQUESTS with Retry-After, got {:?}",
        statuses.iter().map(Resp::show).collect::<Vec<_>>()
    );
    let r = reg
        .send(
            Method::POST,
            &format!("/v2/{TEAM_A}/blobs/uploads/"),
            &writer,
            None,
        )
        .await;
    check!(
        p,
        r.status == 202,
        "a push is not limited by the pull limit: got {}",
        r.show()
    );
    let r = reg
        .get(
            &format!("/v2/{TEAM_A}/tags/list"),
            &users.basic(Caller::Reader),
        )
        .await;
    check!(
        p,
        r.status != 429,
        "another user's pulls have their own bucket: got {}",
        r.show()
    );
    p.extend(h.finish());
    report(&p);
}

/// issue 4 §4: the per-address limit also holds without authentication (an open
/// registry on loopback is still protected from one busy client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit_without_auth() {
    let h = Harness::new();
    let mut p = Vec::new();
    let srv = h.start(
        "open-limited",
        "[rate_limit]\nper_address_per_second = 0.2\nper_address_burst = 2\n",
    );
    let reg = Reg::new(&srv.base());
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(reg.get("/v2/", &Auth::Anon).await);
    }
    check!(
        p,
        got[0].status == 200
            && got[1].status == 200
            && got[2].status == 429
            && got[2].code().as_deref() == Some("TOOMANYREQUESTS")
            && got[2].h("retry-after").is_some(),
        "open registry, burst 2: want 200, 200, 429 with Retry-After; got {:?}",
        got.iter().map(Resp::show).collect::<Vec<_>>()
    );
    p.extend(h.finish());
    report(&p);
}
