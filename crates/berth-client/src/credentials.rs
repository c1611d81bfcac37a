//! Registry credentials, stored the way docker and podman store them, so that a
//! `docker login` or `podman login` is honoured by berth and `berth login` writes a
//! file in the same format.
//!
//! A credentials file is JSON:
//!
//! ```json
//! {
//!     "auths": {
//!         "https://index.docker.io/v1/": { "auth": "base64(user:password)" },
//!         "registry.example.com:5000": { "username": "u", "password": "p" },
//!         "quay.io": { "identitytoken": "…" }
//!     },
//!     "credHelpers": { "123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login" },
//!     "credsStore": "desktop"
//! }
//! ```
//!
//! berth writes only its own file (`$BERTH_AUTH_FILE`, else
//! `$XDG_CONFIG_HOME/berth/auth.json`, else `~/.config/berth/auth.json`) and reads, after
//! it, docker's and podman's files. A credential helper is the program
//! `docker-credential-NAME`, run with `get`, `store` or `erase` and speaking docker's
//! JSON protocol on stdin/stdout.
//!
//! Registry keys are compared by host: a scheme and a path are ignored
//! (`https://host/v2/`, `host` and `host/namespace` all name `host`), hosts are
//! ASCII-case-insensitive, and Docker Hub's names (`docker.io`, `index.docker.io`,
//! `registry-1.docker.io`) all mean the key `https://index.docker.io/v1/`. Secrets are
//! never logged nor put in an error message.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::{Deserialize, Serialize as _};
use serde_json::{Map, Value};

/// The key docker uses for Docker Hub in `auths` and with credential helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The username by which docker marks a secret that is an identity (refresh) token.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";

/// Host names that all mean Docker Hub; the first is the one comparisons use.
const DOCKER_HUB_HOSTS: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// What a helper prints when it has nothing for the server (docker-credential-helpers'
/// `credentials not found in native keychain`).
const NOT_FOUND_TEXT: &str = "credentials not found";

/// A username and its secret (a password, a personal access token, or — with the
/// username [`IDENTITY_TOKEN_USERNAME`] — an identity token). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The username (`<token>` for an identity token).
    pub username: String,
    /// The password or token. Never logged.
    pub secret: String,
}

impl Credential {
    /// A credential from its parts.
    pub fn new(username: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: secret.into(),
        }
    }

    /// Whether the secret is an identity token (to be sent as an OAuth2
    /// `refresh_token` to the token server) rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USERNAME
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why credentials could not be read, stored or erased. Every variant names the file
/// (and field) or the helper; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A credentials file exists but could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A credentials file is not JSON.
    #[error("credentials file {path} is not valid JSON: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where the JSON is broken.
        source: serde_json::Error,
    },
    /// A field of a credentials file has the wrong type or an unusable value.
    #[error("credentials file {path}: {field} {problem}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field, as a JSON path (`auths["quay.io"].auth`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// berth's own credentials file (or its directory) could not be written.
    #[error("cannot write credentials file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// No executable `docker-credential-NAME` on the search path.
    #[error("credential helper docker-credential-{helper} was not found on the search path")]
    HelperNotFound {
        /// The helper's NAME.
        helper: String,
    },
    /// The helper could not be started or talked to.
    #[error("credential helper docker-credential-{helper} could not be run: {source}")]
    HelperSpawn {
        /// The helper's NAME.
        helper: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The helper exited unsuccessfully (other than "credentials not found").
    #[error("credential helper docker-credential-{helper} failed to {action}: {message}")]
    HelperFailed {
        /// The helper's NAME.
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// The first line of its output, or its exit status.
        message: String,
    },
    /// The helper succeeded but its answer is not the expected JSON.
    #[error(
        "credential helper docker-credential-{helper} gave an unusable answer to {action}: {problem}"
    )]
    HelperOutput {
        /// The helper's NAME.
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// What is wrong (never the output itself, which may hold a secret).
        problem: String,
    },
}

/// Where credentials are looked up and stored: berth's own file (read and written)
/// followed by read-only files (docker's, podman's), and where credential helpers are
/// searched for.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    own: PathBuf,
    read_only: Vec<PathBuf>,
    /// Directories searched for `docker-credential-*`; `None` means `$PATH`.
    helper_dirs: Option<Vec<PathBuf>>,
}

impl CredentialStore {
    /// The files of the environment.
    ///
    /// berth's file: `$BERTH_AUTH_FILE`, else `$XDG_CONFIG_HOME/berth/auth.json`, else
    /// `~/.config/berth/auth.json`. Read-only, in this order after berth's own:
    /// `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`),
    /// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `$XDG_CONFIG_HOME/containers/auth.json` (else `~/.config/containers/auth.json`).
    /// Empty variables count as unset; a path listed twice is read once. Helpers are
    /// searched on `$PATH`.
    pub fn from_env() -> CredentialStore {
        let (own, read_only) = default_paths(|name| std::env::var_os(name), std::env::home_dir());
        Self::with_paths(own, read_only)
    }

    /// Explicit files: `own` is read first and is the one written; `read_only` are read
    /// after it, in order. Helpers are searched on `$PATH`.
    pub fn with_paths(own: PathBuf, read_only: Vec<PathBuf>) -> CredentialStore {
        CredentialStore {
            own,
            read_only,
            helper_dirs: None,
        }
    }

    /// Searches credential helpers in `dirs` (in order) instead of `$PATH`.
    pub fn with_helper_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.helper_dirs = Some(dirs);
        self
    }

    /// berth's own credentials file (the one [`store`](Self::store) writes).
    pub fn own_path(&self) -> &Path {
        &self.own
    }

    /// The read-only files, in lookup order.
    pub fn read_only_paths(&self) -> &[PathBuf] {
        &self.read_only
    }

    /// The credential for registry `host` (`docker.io`, `registry.example.com:5000`).
    ///
    /// Files are read in order (berth's own first); the first hit wins. In each file:
    /// the helper of `credHelpers[host]`, else `auths[host]` (`identitytoken` →
    /// username `<token>`; else base64 `user:password` in `auth`; else
    /// `username`/`password`), else the file's `credsStore` helper. A helper answering
    /// "credentials not found" is no hit. Missing files are skipped; an unreadable or
    /// malformed file, or a failing helper, is an error.
    pub fn get(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        let target = Target::new(host);
        for path in std::iter::once(&self.own).chain(&self.read_only) {
            let Some(root) = read_file(path)? else {
                continue;
            };
            if let Some(cred) = self.lookup(path, &root, &target)? {
                return Ok(Some(cred));
            }
        }
        tracing::debug!(host = %target.host, "no credentials found");
        Ok(None)
    }

    /// Stores `cred` for `host`, answering where it went (a path or a helper), for
    /// display.
    ///
    /// When berth's own file names a helper for the host (`credHelpers`) or for all
    /// hosts (`credsStore`), the helper stores it (and plain-text entries for the host
    /// are removed from the file so they cannot shadow it). Otherwise the file gets
    /// `auths[key] = {"auth": base64(user:secret)}` (or `{"identitytoken": secret}` for
    /// an identity token), replacing every entry for the same host and keeping all
    /// other content. The file and its directories are created as needed; it is
    /// written atomically (mode 0600 temp file, fsync, rename; a symlink is followed).
    pub fn store(&self, host: &str, cred: &Credential) -> Result<String, CredentialError> {
        let target = Target::new(host);
        let mut root = read_file(&self.own)?.unwrap_or_default();
        if let Some(helper) = own_helper(&self.own, &root, &target)? {
            let input = serde_json::json!({
                "ServerURL": target.key,
                "Username": cred.username,
                "Secret": cred.secret,
            });
            let input = serde_json::to_vec(&input).map_err(|e| CredentialError::HelperSpawn {
                helper: helper.clone(),
                source: io::Error::other(e),
            })?;
            match self.run_helper(&helper, Action::Store, &input)? {
                HelperAnswer::Output(_) => {}
                HelperAnswer::NotFound => {
                    return Err(CredentialError::HelperFailed {
                        helper,
                        action: Action::Store.name(),
                        message: "it answered \"credentials not found\"".to_owned(),
                    });
                }
            }
            if remove_entries(&self.own, &mut root, &target)? {
                self.write_own(&root)?;
            }
            tracing::debug!(helper, host = %target.host, "credentials stored by helper");
            return Ok(format!("credential helper docker-credential-{helper}"));
        }

        let entry = if cred.is_identity_token() {
            serde_json::json!({ "identitytoken": cred.secret })
        } else {
            if cred.username.contains(':') {
                return Err(CredentialError::Field {
                    path: self.own.clone(),
                    field: entry_field(&target.key, "auth"),
                    problem: "cannot hold a username containing ':'".to_owned(),
                });
            }
            let pair = format!("{}:{}", cred.username, cred.secret);
            serde_json::json!({ "auth": STANDARD.encode(pair) })
        };
        remove_entries_except(&self.own, &mut root, &target, &target.key)?;
        if matches!(root.get("auths"), None | Some(Value::Null)) {
            root.insert("auths".to_owned(), Value::Object(Map::new()));
        }
        let Some(Value::Object(auths)) = root.get_mut("auths") else {
            return Err(not_an_object(&self.own, "auths"));
        };
        auths.insert(target.key.clone(), entry);
        self.write_own(&root)?;
        tracing::debug!(file = %self.own.display(), host = %target.host, "credentials stored");
        Ok(self.own.display().to_string())
    }

    /// Removes the credential for `host` from berth's own file (every entry naming the
    /// host) and, when the file names a helper for it, from the helper. `Ok(false)`
    /// when nothing was stored. A missing file is not created.
    pub fn erase(&self, host: &str) -> Result<bool, CredentialError> {
        let target = Target::new(host);
        let Some(mut root) = read_file(&self.own)? else {
            return Ok(false);
        };
        let mut erased = false;
        if let Some(helper) = own_helper(&self.own, &root, &target)? {
            match self.run_helper(&helper, Action::Erase, target.key.as_bytes())? {
                HelperAnswer::Output(_) => {
                    tracing::debug!(helper, host = %target.host, "credentials erased by helper");
                    erased = true;
                }
                HelperAnswer::NotFound => {}
            }
        }
        if remove_entries(&self.own, &mut root, &target)? {
            self.write_own(&root)?;
            tracing::debug!(file = %self.own.display(), host = %target.host, "credentials erased");
            erased = true;
        }
        Ok(erased)
    }

    /// The credential for `target` from one file's content, or `None`.
    fn lookup(
        &self,
        path: &Path,
        root: &Map<String, Value>,
        target: &Target,
    ) -> Result<Option<Credential>, CredentialError> {
        if let Some(helper) = cred_helper(path, root, target)?
            && let Some(cred) = self.helper_get(&helper, &target.key)?
        {
            tracing::debug!(helper, file = %path.display(), host = %target.host, "credentials found by credHelpers helper");
            return Ok(Some(cred));
        }
        let entries = matching_entries(path, root, target)?;
        for (key, value) in &entries {
            if let Some(cred) = decode_entry(path, key, value)? {
                tracing::debug!(file = %path.display(), key = %key, "credentials found in file");
                return Ok(Some(cred));
            }
        }
        if let Some(helper) = creds_store(path, root)? {
            // docker asks with its key; a file written by another tool may have used
            // another spelling, which the (empty) `auths` entries record.
            let mut servers = vec![target.key.as_str()];
            for (key, _) in &entries {
                if !servers.contains(&key.as_str()) {
                    servers.push(key);
                }
            }
            for server in servers {
                if let Some(cred) = self.helper_get(&helper, server)? {
                    tracing::debug!(helper, file = %path.display(), host = %target.host, "credentials found by credsStore helper");
                    return Ok(Some(cred));
                }
            }
        }
        Ok(None)
    }

    /// `docker-credential-NAME get` for `server`.
    fn helper_get(
        &self,
        helper: &str,
        server: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        let stdout = match self.run_helper(helper, Action::Get, server.as_bytes())? {
            HelperAnswer::Output(stdout) => stdout,
            HelperAnswer::NotFound => return Ok(None),
        };
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let answer: Answer = serde_json::from_slice(&stdout).map_err(|e| {
            // serde's message may quote the output, which may hold the secret.
            let what = match e.classify() {
                serde_json::error::Category::Data => {
                    "a JSON object without string Username and Secret"
                }
                _ => "not JSON",
            };
            CredentialError::HelperOutput {
                helper: helper.to_owned(),
                action: Action::Get.name(),
                problem: format!(
                    "the output is {what} (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            }
        })?;
        if answer.username.is_empty() && answer.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credential::new(answer.username, answer.secret)))
    }

    /// Runs `docker-credential-NAME ACTION` with `input` on stdin.
    fn run_helper(
        &self,
        helper: &str,
        action: Action,
        input: &[u8],
    ) -> Result<HelperAnswer, CredentialError> {
        let program = self.find_helper(helper)?;
        let spawn_error = |source| CredentialError::HelperSpawn {
            helper: helper.to_owned(),
            source,
        };
        let mut attempt = 0;
        let mut child = loop {
            let spawned = Command::new(&program)
                .arg(action.name())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match spawned {
                Ok(child) => break child,
                // A file just written may briefly be "busy" while another thread's
                // fork still holds its write descriptor; that passes.
                Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempt < 10 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 * attempt));
                }
                Err(e) => return Err(spawn_error(e)),
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            match stdin.write_all(input) {
                // A helper may exit without reading its input; its status tells.
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(spawn_error(e));
                }
            }
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if output.status.success() {
            return Ok(HelperAnswer::Output(output.stdout));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stdout.to_ascii_lowercase().contains(NOT_FOUND_TEXT)
            || stderr.to_ascii_lowercase().contains(NOT_FOUND_TEXT)
        {
            return Ok(HelperAnswer::NotFound);
        }
        let first_line = [stdout.trim(), stderr.trim()]
            .into_iter()
            .find(|s| !s.is_empty())
            .and_then(|s| s.lines().next())
            .map(|line| {
                let clean: String = line
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(200)
                    .collect();
                clean.trim().to_owned()
            });
        let message = match first_line {
            Some(line) if !line.is_empty() => format!("{line} ({})", output.status),
            _ => output.status.to_string(),
        };
        Err(CredentialError::HelperFailed {
            helper: helper.to_owned(),
            action: action.name(),
            message,
        })
    }

    /// The executable `docker-credential-NAME` in the search path.
    fn find_helper(&self, helper: &str) -> Result<PathBuf, CredentialError> {
        let file_name = format!("docker-credential-{helper}{}", std::env::consts::EXE_SUFFIX);
        let dirs: Vec<PathBuf> = match &self.helper_dirs {
            Some(dirs) => dirs.clone(),
            None => std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect())
                .unwrap_or_default(),
        };
        dirs.iter()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(&file_name))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| CredentialError::HelperNotFound {
                helper: helper.to_owned(),
            })
    }

    /// Writes berth's own file atomically: a 0600 temp file beside it, fsync, rename,
    /// fsync of the directory. A symlink is followed, so its target is replaced.
    fn write_own(&self, root: &Map<String, Value>) -> Result<(), CredentialError> {
        let write_error = |path: &Path, source| CredentialError::Write {
            path: path.to_owned(),
            source,
        };
        let target = match fs::symlink_metadata(&self.own) {
            Ok(meta) if meta.file_type().is_symlink() => {
                fs::canonicalize(&self.own).map_err(|e| write_error(&self.own, e))?
            }
            _ => self.own.clone(),
        };
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir).map_err(|e| write_error(&dir, e))?;

        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        root.serialize(&mut serializer)
            .map_err(|e| write_error(&target, io::Error::other(e)))?;
        bytes.push(b'\n');

        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let file_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "auth.json".to_owned());
        let temp = dir.join(format!(
            ".{file_name}.tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, &target)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(write_error(&target, e));
        }
        // Make the rename durable; some filesystems cannot fsync a directory.
        if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
            tracing::debug!(dir = %dir.display(), error = %e, "could not fsync directory");
        }
        Ok(())
    }
}

/// The three credential helper actions.
#[derive(Clone, Copy)]
enum Action {
    Get,
    Store,
    Erase,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::Store => "store",
            Action::Erase => "erase",
        }
    }
}

/// A helper's successful answer, or its "credentials not found".
enum HelperAnswer {
    Output(Vec<u8>),
    NotFound,
}

/// The registry being looked up: its comparison host and the key docker writes.
struct Target {
    /// Lowercased `host[:port]`, Docker Hub's aliases folded into `docker.io`.
    host: String,
    /// The `auths` key and helper server URL: [`DOCKER_HUB_KEY`] for Docker Hub, else
    /// `host`.
    key: String,
}

impl Target {
    fn new(host: &str) -> Self {
        let host = registry_host(host);
        let key = if host == DOCKER_HUB_HOSTS[0] {
            DOCKER_HUB_KEY.to_owned()
        } else {
            host.clone()
        };
        Target { host, key }
    }
}

/// The registry a key or host names: scheme and path dropped, ASCII-lowercased,
/// Docker Hub's names folded into `docker.io`.
fn registry_host(key: &str) -> String {
    let rest = key.trim();
    let rest = match rest.find("://") {
        Some(i) => rest.get(i + 3..).unwrap_or(""),
        None => rest,
    };
    let host = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        DOCKER_HUB_HOSTS[0].to_owned()
    } else {
        host
    }
}

/// How well a key matching the host names it: 0 exactly docker's key, 1 the host with
/// at most an API path (`/`, `/v1/`, `/v2/`), 2 a repository namespace (podman's
/// `host/namespace` keys).
fn key_rank(key: &str, target: &Target) -> u8 {
    if key == target.key {
        return 0;
    }
    let rest = match key.find("://") {
        Some(i) => key.get(i + 3..).unwrap_or(""),
        None => key,
    };
    let path = rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("");
    match path.trim_matches('/') {
        "" | "v1" | "v2" => 1,
        _ => 2,
    }
}

/// Reads and parses a credentials file; `None` when it does not exist. An empty
/// file is an empty object (as docker treats it).
fn read_file(path: &Path) -> Result<Option<Map<String, Value>>, CredentialError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(root)) => Ok(Some(root)),
        Ok(_) => Err(CredentialError::Field {
            path: path.to_owned(),
            field: "the top level".to_owned(),
            problem: "is not a JSON object".to_owned(),
        }),
        Err(source) => Err(CredentialError::Malformed {
            path: path.to_owned(),
            source,
        }),
    }
}

fn not_an_object(path: &Path, field: &str) -> CredentialError {
    CredentialError::Field {
        path: path.to_owned(),
        field: field.to_owned(),
        problem: "is not a JSON object".to_owned(),
    }
}

/// `auths["key"].name`, for error messages.
fn entry_field(key: &str, name: &str) -> String {
    format!("auths[{key:?}].{name}")
}

/// The object under `name` at the top level, `None` when absent or null.
fn top_object<'a>(
    path: &Path,
    root: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, CredentialError> {
    match root.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(not_an_object(path, name)),
    }
}

/// The `auths` entries naming the target, best match first (then in file order).
fn matching_entries<'a>(
    path: &Path,
    root: &'a Map<String, Value>,
    target: &Target,
) -> Result<Vec<(&'a String, &'a Value)>, CredentialError> {
    let Some(auths) = top_object(path, root, "auths")? else {
        return Ok(Vec::new());
    };
    let mut entries: Vec<_> = auths
        .iter()
        .filter(|(key, _)| registry_host(key) == target.host)
        .collect();
    entries.sort_by_key(|(key, _)| key_rank(key, target));
    Ok(entries)
}

/// A helper name from a file, checked to be a plain name (it becomes part of a file
/// name); `None` when empty.
fn helper_name(
    path: &Path,
    field: String,
    value: &Value,
) -> Result<Option<String>, CredentialError> {
    let problem = |problem: &str| CredentialError::Field {
        path: path.to_owned(),
        field: field.clone(),
        problem: problem.to_owned(),
    };
    match value {
        Value::Null => Ok(None),
        Value::String(name) if name.is_empty() => Ok(None),
        Value::String(name) => {
            if name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
                Err(problem("is not a plain helper name"))
            } else {
                Ok(Some(name.clone()))
            }
        }
        _ => Err(problem("is not a string")),
    }
}

/// The `credHelpers` helper for the target, if any.
fn cred_helper(
    path: &Path,
    root: &Map<String, Value>,
    target: &Target,
) -> Result<Option<String>, CredentialError> {
    let Some(helpers) = top_object(path, root, "credHelpers")? else {
        return Ok(None);
    };
    let mut matching: Vec<_> = helpers
        .iter()
        .filter(|(key, _)| registry_host(key) == target.host)
        .collect();
    matching.sort_by_key(|(key, _)| key_rank(key, target));
    for (key, value) in matching {
        if let Some(name) = helper_name(path, format!("credHelpers[{key:?}]"), value)? {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// The file-level `credsStore` helper, if any.
fn creds_store(path: &Path, root: &Map<String, Value>) -> Result<Option<String>, CredentialError> {
    match root.get("credsStore") {
        None => Ok(None),
        Some(value) => helper_name(path, "credsStore".to_owned(), value),
    }
}

/// The helper berth's own file routes the target to (`credHelpers`, else
/// `credsStore`).
fn own_helper(
    path: &Path,
    root: &Map<String, Value>,
    target: &Target,
) -> Result<Option<String>, CredentialError> {
    match cred_helper(path, root, target)? {
        Some(helper) => Ok(Some(helper)),
        None => creds_store(path, root),
    }
}

/// The credential in one `auths` entry, `None` when it holds none (docker's `{}`
/// placeholder for a `credsStore` login).
fn decode_entry(
    path: &Path,
    key: &str,
    value: &Value,
) -> Result<Option<Credential>, CredentialError> {
    let field_error = |name: &str, problem: &str| CredentialError::Field {
        path: path.to_owned(),
        field: entry_field(key, name),
        problem: problem.to_owned(),
    };
    let entry = match value {
        Value::Null => return Ok(None),
        Value::Object(entry) => entry,
        _ => {
            return Err(CredentialError::Field {
                path: path.to_owned(),
                field: format!("auths[{key:?}]"),
                problem: "is not a JSON object".to_owned(),
            });
        }
    };
    let string = |name: &str| -> Result<Option<&str>, CredentialError> {
        match entry.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(field_error(name, "is not a string")),
        }
    };
    if let Some(token) = string("identitytoken")? {
        return Ok(Some(Credential::new(IDENTITY_TOKEN_USERNAME, token)));
    }
    if let Some(auth) = string("auth")? {
        // docker writes padded standard base64; accept it unpadded and with
        // surrounding whitespace too.
        let lenient = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let bytes = lenient
            .decode(auth.trim())
            .map_err(|_| field_error("auth", "is not valid base64"))?;
        let pair = String::from_utf8(bytes)
            .map_err(|_| field_error("auth", "does not decode to UTF-8 text"))?;
        let (username, secret) = pair
            .split_once(':')
            .ok_or_else(|| field_error("auth", "does not decode to \"username:password\""))?;
        if !username.is_empty() || !secret.is_empty() {
            return Ok(Some(Credential::new(username, secret)));
        }
    }
    if let Some(username) = string("username")? {
        let secret = string("password")?.unwrap_or("");
        return Ok(Some(Credential::new(username, secret)));
    }
    Ok(None)
}

/// Removes every `auths` entry naming the target; whether any was removed.
fn remove_entries(
    path: &Path,
    root: &mut Map<String, Value>,
    target: &Target,
) -> Result<bool, CredentialError> {
    remove_entries_except(path, root, target, "")
}

/// Removes every `auths` entry naming the target except the one under `keep` (whose
/// position is kept when it is replaced); whether any was removed. Other entries keep
/// their order.
fn remove_entries_except(
    path: &Path,
    root: &mut Map<String, Value>,
    target: &Target,
    keep: &str,
) -> Result<bool, CredentialError> {
    let auths = match root.get_mut("auths") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Object(auths)) => auths,
        Some(_) => return Err(not_an_object(path, "auths")),
    };
    let doomed: Vec<String> = auths
        .keys()
        .filter(|key| key.as_str() != keep && registry_host(key) == target.host)
        .cloned()
        .collect();
    for key in &doomed {
        auths.shift_remove(key);
    }
    Ok(!doomed.is_empty())
}

/// Creates `dir` and its missing parents (0700 on Unix, as docker does).
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Whether `path` is a file this process may execute.
fn is_executable(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// berth's file and the read-only files for an environment (`env` reads a variable,
/// `home` is the home directory). See [`CredentialStore::from_env`].
fn default_paths(
    env: impl Fn(&str) -> Option<OsString>,
    home: Option<PathBuf>,
) -> (PathBuf, Vec<PathBuf>) {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    // Without a home directory, paths are relative to the working directory.
    let home = home.unwrap_or_default();
    let config_home = var("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
    let own = var("BERTH_AUTH_FILE").unwrap_or_else(|| config_home.join("berth").join("auth.json"));
    let mut candidates = vec![
        var("DOCKER_CONFIG")
            .unwrap_or_else(|| home.join(".docker"))
            .join("config.json"),
    ];
    candidates.extend(var("REGISTRY_AUTH_FILE"));
    candidates.extend(var("XDG_RUNTIME_DIR").map(|dir| dir.join("containers").join("auth.json")));
    candidates.push(config_home.join("containers").join("auth.json"));
    let mut read_only: Vec<PathBuf> = Vec::new();
    for path in candidates {
        if path != own && !read_only.contains(&path) {
            read_only.push(path);
        }
    }
    (own, read_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A temp directory with berth's own file and docker's file in it (neither
    /// created), and a store over them that finds helpers only in the directory.
    struct Fixture {
        dir: tempfile::TempDir,
        store: CredentialStore,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = CredentialStore::with_paths(
                dir.path().join("berth").join("auth.json"),
                vec![
                    dir.path().join("docker.json"),
                    dir.path().join("podman.json"),
                ],
            )
            .with_helper_dirs(vec![dir.path().to_owned()]);
            Fixture { dir, store }
        }

        fn own(&self) -> &Path {
            self.store.own_path()
        }

        fn docker(&self) -> PathBuf {
            self.dir.path().join("docker.json")
        }

        fn podman(&self) -> PathBuf {
            self.dir.path().join("podman.json")
        }

        fn write(&self, path: &Path, json: &str) {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, json).unwrap();
        }

        fn read_json(&self, path: &Path) -> Value {
            serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
        }

        fn get(&self, host: &str) -> Option<Credential> {
            self.store.get(host).unwrap()
        }
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn cred(user: &str, secret: &str) -> Credential {
        Credential::new(user, secret)
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = cred("alice", "hunter2");
        let shown = format!("{c:?} {:#?}", c);
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn reads_docker_config_auth() {
        let f = Fixture::new();
        f.write(
            &f.docker(),
            &format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}},
                    "registry.example.com:5000": {{"auth": "{}"}}}},
                    "HttpHeaders": {{"User-Agent": "x"}}}}"#,
                b64("hubuser:hubpass"),
                b64("bob:pa:ss")
            ),
        );
        assert_eq!(f.get("docker.io"), Some(cred("hubuser", "hubpass")));
        // The password may contain ':'.
        assert_eq!(
            f.get("registry.example.com:5000"),
            Some(cred("bob", "pa:ss"))
        );
        // The port is part of the host.
        assert_eq!(f.get("registry.example.com"), None);
        assert_eq!(f.get("other.example.com"), None);
    }

    #[test]
    fn reads_podman_auth_json() {
        let f = Fixture::new();
        f.write(
            &f.podman(),
            &format!(
                r#"{{"auths": {{"docker.io": {{"auth": "{}"}},
                    "quay.io": {{"username": "q", "password": "qp"}}}}}}"#,
                b64("pod:man")
            ),
        );
        assert_eq!(f.get("docker.io"), Some(cred("pod", "man")));
        assert_eq!(f.get("index.docker.io"), Some(cred("pod", "man")));
        assert_eq!(f.get("QUAY.io"), Some(cred("q", "qp")));
    }

    #[test]
    fn reads_identity_token() {
        let f = Fixture::new();
        f.write(
            &f.docker(),
            &format!(
                r#"{{"auths": {{"myregistry.azurecr.io": {{"auth": "{}", "identitytoken": "eyJhbGciOi"}}}}}}"#,
                b64("00000000-0000-0000-0000-000000000000:")
            ),
        );
        let c = f.get("myregistry.azurecr.io").unwrap();
        assert_eq!(c, cred("<token>", "eyJhbGciOi"));
        assert!(c.is_identity_token());
    }

    #[test]
    fn own_file_comes_before_docker_and_podman() {
        let f = Fixture::new();
        let entry = |u: &str, p: &str| {
            format!(
                r#"{{"auths": {{"reg.example.com": {{"auth": "{}"}}}}}}"#,
                b64(&format!("{u}:{p}"))
            )
        };
        f.write(&f.docker(), &entry("docker", "d"));
        f.write(&f.podman(), &entry("podman", "p"));
        assert_eq!(f.get("reg.example.com"), Some(cred("docker", "d")));
        f.write(f.own(), &entry("berth", "b"));
        assert_eq!(f.get("reg.example.com"), Some(cred("berth", "b")));
        // An entry without a credential (docker's credsStore placeholder) is no hit.
        f.write(f.own(), r#"{"auths": {"reg.example.com": {}}}"#);
        assert_eq!(f.get("reg.example.com"), Some(cred("docker", "d")));
    }

    #[test]
    fn missing_files_are_skipped() {
        let f = Fixture::new();
        assert_eq!(f.get("docker.io"), None);
        // Empty files are empty configurations, as for docker.
        f.write(&f.docker(), "  \n");
        assert_eq!(f.get("docker.io"), None);
    }

    #[test]
    fn docker_hub_names_share_one_key() {
        let f = Fixture::new();
        for host in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            f.store.store(host, &cred("u", host)).unwrap();
            let json = f.read_json(f.own());
            let auths = json["auths"].as_object().unwrap();
            assert_eq!(
                auths.keys().collect::<Vec<_>>(),
                vec![DOCKER_HUB_KEY],
                "after storing {host}"
            );
            for alias in [
                "docker.io",
                "index.docker.io",
                "registry-1.docker.io",
                "Docker.IO",
            ] {
                assert_eq!(
                    f.get(alias),
                    Some(cred("u", host)),
                    "{alias} after storing {host}"
                );
            }
        }
        // Docker's key is preferred to another spelling in the same file.
        f.write(
            &f.docker(),
            &format!(
                r#"{{"auths": {{"registry-1.docker.io": {{"auth": "{}"}}, "https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
                b64("alias:a"),
                b64("canonical:c")
            ),
        );
        fs::remove_file(f.own()).unwrap();
        assert_eq!(f.get("docker.io"), Some(cred("canonical", "c")));
    }

    #[test]
    fn other_hosts_match_any_key_spelling() {
        let f = Fixture::new();
        let keys = [
            ("https://a.example.com", "a.example.com"),
            ("http://b.example.com:5000/v2/", "b.example.com:5000"),
            ("C.Example.com/", "c.example.com"),
            ("d.example.com/some/namespace", "d.example.com"),
        ];
        let auths: Map<String, Value> = keys
            .iter()
            .map(|(key, _)| {
                (
                    (*key).to_owned(),
                    serde_json::json!({"auth": b64(&format!("u:{key}"))}),
                )
            })
            .collect();
        f.write(
            &f.docker(),
            &serde_json::json!({ "auths": auths }).to_string(),
        );
        for (key, host) in keys {
            assert_eq!(f.get(host), Some(cred("u", key)), "{host}");
        }
        assert_eq!(f.get("b.example.com"), None);
        // A host-level key is preferred to a namespace key of the same host.
        f.write(
            &f.podman(),
            &format!(
                r#"{{"auths": {{"e.example.com/team": {{"auth": "{}"}}, "e.example.com": {{"auth": "{}"}}}}}}"#,
                b64("team:t"),
                b64("host:h")
            ),
        );
        assert_eq!(f.get("e.example.com"), Some(cred("host", "h")));
    }

    #[test]
    fn store_keeps_other_content_and_writes_0600() {
        let f = Fixture::new();
        let original = format!(
            r#"{{"zzz": 1, "auths": {{"keep.example.com": {{"auth": "{}", "email": "x@y"}},
                "https://reg.example.com": {{"auth": "{}"}}, "after.example.com": {{}}}},
                "HttpHeaders": {{"X-Custom": "v"}}, "aaa": [1, 2, {{"n": null}}]}}"#,
            b64("k:k"),
            b64("old:old")
        );
        f.write(f.own(), &original);
        let at = f
            .store
            .store("reg.example.com", &cred("new", "s3cret"))
            .unwrap();
        assert_eq!(at, f.own().display().to_string());

        let json = f.read_json(f.own());
        let mut expected: Value = serde_json::from_str(&original).unwrap();
        let auths = expected["auths"].as_object_mut().unwrap();
        auths.shift_remove("https://reg.example.com");
        auths.insert(
            "reg.example.com".to_owned(),
            serde_json::json!({"auth": b64("new:s3cret")}),
        );
        assert_eq!(json, expected);
        // Key order is kept too.
        let top: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(top, ["zzz", "auths", "HttpHeaders", "aaa"]);
        assert_eq!(f.get("reg.example.com"), Some(cred("new", "s3cret")));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(f.own()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(f.own().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["auth.json"]);
    }

    #[test]
    fn store_creates_directories_and_file() {
        let f = Fixture::new();
        let own = f.dir.path().join("a").join("b").join("auth.json");
        let store = CredentialStore::with_paths(own.clone(), vec![]);
        store.store("reg.example.com", &cred("u", "p")).unwrap();
        store.store("docker.io", &cred("<token>", "idtok")).unwrap();
        let json = f.read_json(&own);
        assert_eq!(
            json,
            serde_json::json!({"auths": {
                "reg.example.com": {"auth": b64("u:p")},
                DOCKER_HUB_KEY: {"identitytoken": "idtok"},
            }})
        );
        assert_eq!(
            store.get("docker.io").unwrap(),
            Some(cred("<token>", "idtok"))
        );
        // docker's tab indentation.
        assert!(fs::read_to_string(&own).unwrap().contains("\n\t\"auths\""));
    }

    #[cfg(unix)]
    #[test]
    fn store_follows_a_symlink() {
        let f = Fixture::new();
        let real = f.dir.path().join("real.json");
        f.write(&real, "{}");
        fs::create_dir_all(f.own().parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&real, f.own()).unwrap();
        f.store.store("reg.example.com", &cred("u", "p")).unwrap();
        assert!(
            fs::symlink_metadata(f.own())
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            f.read_json(&real)["auths"]["reg.example.com"]["auth"],
            b64("u:p")
        );
    }

    #[test]
    fn store_rejects_a_username_with_a_colon() {
        let f = Fixture::new();
        let err = f
            .store
            .store("reg.example.com", &cred("a:b", "p"))
            .unwrap_err();
        assert!(matches!(err, CredentialError::Field { .. }), "{err}");
        assert!(!f.own().exists());
    }

    #[test]
    fn erase_removes_every_spelling_and_nothing_else() {
        let f = Fixture::new();
        let original = format!(
            r#"{{"auths": {{"https://reg.example.com/v2/": {{"auth": "{0}"}}, "reg.example.com": {{"auth": "{0}"}},
                "other.example.com": {{"auth": "{0}"}}}}, "credHelpers": {{}}}}"#,
            b64("u:p")
        );
        f.write(f.own(), &original);
        assert!(f.store.erase("reg.example.com").unwrap());
        assert_eq!(
            f.read_json(f.own()),
            serde_json::json!({"auths": {"other.example.com": {"auth": b64("u:p")}}, "credHelpers": {}})
        );
        assert_eq!(f.get("reg.example.com"), None);
        assert!(!f.store.erase("reg.example.com").unwrap());
        assert!(!f.store.erase("never.example.com").unwrap());
        // Read-only files are never touched.
        f.write(
            &f.docker(),
            &format!(
                r#"{{"auths": {{"ro.example.com": {{"auth": "{}"}}}}}}"#,
                b64("r:o")
            ),
        );
        assert!(!f.store.erase("ro.example.com").unwrap());
        assert_eq!(f.get("ro.example.com"), Some(cred("r", "o")));
    }

    #[test]
    fn erase_without_a_file_creates_none() {
        let f = Fixture::new();
        assert!(!f.store.erase("docker.io").unwrap());
        assert!(!f.own().exists());
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file_and_field() {
        let f = Fixture::new();
        f.write(&f.docker(), r#"{"auths": {"reg.example.com": "#);
        let err = f.store.get("reg.example.com").unwrap_err();
        assert!(matches!(err, CredentialError::Malformed { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&f.docker().display().to_string()),
            "{err}"
        );

        let cases: &[(&str, &str)] = &[
            (r#"[1]"#, "the top level"),
            (r#"{"auths": []}"#, "auths"),
            (
                r#"{"auths": {"reg.example.com": 3}}"#,
                r#"auths["reg.example.com"]"#,
            ),
            (
                r#"{"auths": {"reg.example.com": {"auth": 3}}}"#,
                r#"auths["reg.example.com"].auth"#,
            ),
            (
                r#"{"auths": {"reg.example.com": {"auth": "!!!"}}}"#,
                r#"auths["reg.example.com"].auth"#,
            ),
            (
                r#"{"auths": {"reg.example.com": {"auth": "bm9jb2xvbg=="}}}"#,
                r#"auths["reg.example.com"].auth"#,
            ),
            (
                r#"{"auths": {"reg.example.com": {"username": "u", "password": 1}}}"#,
                r#"auths["reg.example.com"].password"#,
            ),
            (
                r#"{"credHelpers": {"reg.example.com": 1}}"#,
                r#"credHelpers["reg.example.com"]"#,
            ),
            (
                r#"{"credHelpers": {"reg.example.com": "../../bin/sh"}}"#,
                r#"credHelpers["reg.example.com"]"#,
            ),
            (r#"{"credsStore": "a/b"}"#, "credsStore"),
            (r#"{"credsStore": false}"#, "credsStore"),
        ];
        for (json, field) in cases {
            f.write(&f.docker(), json);
            let err = f.store.get("reg.example.com").unwrap_err();
            let CredentialError::Field {
                path, field: got, ..
            } = &err
            else {
                panic!("{json}: {err:?}");
            };
            assert_eq!(path, &f.docker(), "{json}");
            assert_eq!(got, field, "{json}");
            let text = err.to_string();
            assert!(
                text.contains(&f.docker().display().to_string()) && text.contains(field),
                "{text}"
            );
        }
        // A broken entry of another host does not matter.
        f.write(
            &f.docker(),
            r#"{"auths": {"other.example.com": {"auth": "!!!"}}}"#,
        );
        assert_eq!(f.get("reg.example.com"), None);
        // A directory where the file should be cannot be read.
        fs::remove_file(f.docker()).unwrap();
        fs::create_dir(f.docker()).unwrap();
        let err = f.store.get("reg.example.com").unwrap_err();
        assert!(matches!(err, CredentialError::Read { .. }), "{err:?}");
    }

    #[test]
    fn default_paths_follow_the_environment() {
        let home = PathBuf::from("/home/u");
        let paths = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, OsString> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
                .collect();
            default_paths(|name| vars.get(name).cloned(), Some(home.clone()))
        };
        assert_eq!(
            paths(&[]),
            (
                PathBuf::from("/home/u/.config/berth/auth.json"),
                vec![
                    PathBuf::from("/home/u/.docker/config.json"),
                    PathBuf::from("/home/u/.config/containers/auth.json"),
                ]
            )
        );
        assert_eq!(
            paths(&[
                ("XDG_CONFIG_HOME", "/cfg"),
                ("DOCKER_CONFIG", "/dk"),
                ("REGISTRY_AUTH_FILE", "/ra.json"),
                ("XDG_RUNTIME_DIR", "/run/user/1"),
            ]),
            (
                PathBuf::from("/cfg/berth/auth.json"),
                vec![
                    PathBuf::from("/dk/config.json"),
                    PathBuf::from("/ra.json"),
                    PathBuf::from("/run/user/1/containers/auth.json"),
                    PathBuf::from("/cfg/containers/auth.json"),
                ]
            )
        );
        // BERTH_AUTH_FILE wins; empty variables are unset; duplicates are read once.
        assert_eq!(
            paths(&[
                ("BERTH_AUTH_FILE", "/b.json"),
                ("XDG_CONFIG_HOME", ""),
                ("REGISTRY_AUTH_FILE", "/run/user/1/containers/auth.json"),
                ("XDG_RUNTIME_DIR", "/run/user/1"),
            ]),
            (
                PathBuf::from("/b.json"),
                vec![
                    PathBuf::from("/home/u/.docker/config.json"),
                    PathBuf::from("/run/user/1/containers/auth.json"),
                    PathBuf::from("/home/u/.config/containers/auth.json"),
                ]
            )
        );
    }

    /// A fake `docker-credential-test`: knows `registry.example.com` and the Docker Hub
    /// key, fails for `broken.example.com`, says "not found" otherwise; `store` saves
    /// its input beside itself, `erase` removes it.
    #[cfg(unix)]
    fn install_helper(dir: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        let script = r#"#!/bin/sh
here=$(dirname "$0")
case "$1" in
get)
    read -r url || true
    case "$url" in
    registry.example.com|https://index.docker.io/v1/)
        printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper-secret"}\n' "$url" ;;
    broken.example.com)
        echo "keychain is locked" >&2; exit 3 ;;
    garbage.example.com)
        echo "helper-secret is not JSON" ;;
    *)
        echo "credentials not found in native keychain"; exit 1 ;;
    esac ;;
store)
    cat > "$here/stored.json" ;;
erase)
    read -r url || true
    if [ -f "$here/stored.json" ]; then rm "$here/stored.json"; echo "$url" > "$here/erased"
    else echo "credentials not found in native keychain"; exit 1; fi ;;
*)
    exit 2 ;;
esac
"#;
        let path = dir.join("docker-credential-test");
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn cred_helpers_answer_for_their_hosts() {
        let f = Fixture::new();
        install_helper(f.dir.path());
        f.write(
            &f.docker(),
            &format!(
                r#"{{"credHelpers": {{"registry.example.com": "test", "notfound.example.com": "test",
                    "broken.example.com": "test", "garbage.example.com": "test", "index.docker.io": "test",
                    "missing.example.com": "nosuchhelper"}},
                    "auths": {{"notfound.example.com": {{"auth": "{}"}}}}}}"#,
                b64("file:f")
            ),
        );
        assert_eq!(
            f.get("registry.example.com"),
            Some(cred("helper-user", "helper-secret"))
        );
        // Docker Hub's helper is asked with docker's key.
        assert_eq!(
            f.get("registry-1.docker.io"),
            Some(cred("helper-user", "helper-secret"))
        );
        // "Not found" falls through to the file's entry.
        assert_eq!(f.get("notfound.example.com"), Some(cred("file", "f")));

        let err = f.store.get("broken.example.com").unwrap_err();
        assert!(
            matches!(&err, CredentialError::HelperFailed { helper, action: "get", message } if helper == "test" && message.contains("keychain is locked")),
            "{err:?}"
        );
        assert!(err.to_string().contains("docker-credential-test"), "{err}");

        let err = f.store.get("garbage.example.com").unwrap_err();
        assert!(
            matches!(&err, CredentialError::HelperOutput { helper, .. } if helper == "test"),
            "{err:?}"
        );
        assert!(!err.to_string().contains("helper-secret"), "{err}");

        let err = f.store.get("missing.example.com").unwrap_err();
        assert!(
            matches!(&err, CredentialError::HelperNotFound { helper } if helper == "nosuchhelper"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("docker-credential-nosuchhelper"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn creds_store_serves_all_hosts_and_stores_and_erases() {
        let f = Fixture::new();
        install_helper(f.dir.path());
        f.write(
            f.own(),
            &format!(
                r#"{{"credsStore": "test", "auths": {{"registry.example.com": {{"auth": "{}"}}, "keep.example.com": {{}}}}}}"#,
                b64("stale:s")
            ),
        );
        // A plain-text entry comes before the credsStore helper…
        assert_eq!(f.get("registry.example.com"), Some(cred("stale", "s")));
        assert_eq!(f.get("unknown.example.com"), None);

        // …so storing through the helper removes it.
        let at = f
            .store
            .store("registry.example.com", &cred("new-user", "new-secret"))
            .unwrap();
        assert!(at.contains("docker-credential-test"), "{at}");
        let sent: Value =
            serde_json::from_str(&fs::read_to_string(f.dir.path().join("stored.json")).unwrap())
                .unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"ServerURL": "registry.example.com", "Username": "new-user", "Secret": "new-secret"})
        );
        assert_eq!(
            f.read_json(f.own()),
            serde_json::json!({"credsStore": "test", "auths": {"keep.example.com": {}}})
        );
        assert_eq!(
            f.get("registry.example.com"),
            Some(cred("helper-user", "helper-secret"))
        );

        assert!(f.store.erase("registry.example.com").unwrap());
        assert_eq!(
            fs::read_to_string(f.dir.path().join("erased"))
                .unwrap()
                .trim(),
            "registry.example.com"
        );
        assert!(!f.store.erase("registry.example.com").unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn helpers_are_searched_in_order_and_must_be_executable() {
        let f = Fixture::new();
        let empty = f.dir.path().join("empty");
        let with_helper = f.dir.path().join("bin");
        fs::create_dir_all(&empty).unwrap();
        fs::create_dir_all(&with_helper).unwrap();
        // Not executable: skipped.
        fs::write(empty.join("docker-credential-test"), "#!/bin/sh\nexit 9\n").unwrap();
        install_helper(&with_helper);
        let store = CredentialStore::with_paths(f.own().to_owned(), vec![])
            .with_helper_dirs(vec![empty.clone(), with_helper]);
        f.write(
            f.own(),
            r#"{"credHelpers": {"registry.example.com": "test"}}"#,
        );
        assert_eq!(
            store.get("registry.example.com").unwrap(),
            Some(cred("helper-user", "helper-secret"))
        );
        let store = store.with_helper_dirs(vec![empty]);
        assert!(matches!(
            store.get("registry.example.com"),
            Err(CredentialError::HelperNotFound { .. })
        ));
    }
}
