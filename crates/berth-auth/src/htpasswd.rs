//! Apache-style htpasswd files: `user:hash` lines checked by HTTP basic auth.
//!
//! Supported hashes are bcrypt (`$2y$`, `$2b$`, `$2a$`, as written by
//! `htpasswd -B`) and Argon2 PHC strings (`$argon2id$`, `$argon2i$`,
//! `$argon2d$`). Weak or obsolete schemes that Apache also accepts (MD5
//! `$apr1$`, `{SHA}`, MD5-crypt, DES crypt, plain text) are refused at load
//! time with an error that names the scheme, the file and the line, so a
//! registry never silently runs with a password file it cannot check well.
//!
//! No error or log message produced here contains a password or a hash.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use argon2::password_hash::phc::{Output, Salt};
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// bcrypt cost used by [`hash_password`] (2^10 rounds, ~50–80 ms per check).
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// bcrypt only looks at the first 72 bytes of a password.
pub const BCRYPT_MAX_PASSWORD_LEN: usize = 72;

/// The hash functions [`hash_password`] can produce.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    /// bcrypt, written as `$2y$` like `htpasswd -B` (the default: every
    /// htpasswd consumer understands it).
    #[default]
    Bcrypt,
    /// Argon2id with the RustCrypto defaults (m=19456 KiB, t=2, p=1), as a PHC string.
    Argon2id,
}

impl HashAlgorithm {
    /// The lowercase name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgorithm::Bcrypt => "bcrypt",
            HashAlgorithm::Argon2id => "argon2id",
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HashAlgorithm {
    type Err = String;

    /// Accepts `bcrypt`, `argon2id` and `argon2` (an alias of `argon2id`), in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "bcrypt" => Ok(HashAlgorithm::Bcrypt),
            "argon2id" | "argon2" => Ok(HashAlgorithm::Argon2id),
            _ => Err(format!(
                "unknown hash algorithm {s:?} (expected bcrypt or argon2id)"
            )),
        }
    }
}

/// Everything that can go wrong reading, writing or hashing for htpasswd files.
#[derive(thiserror::Error, Debug)]
pub enum HtpasswdError {
    /// Reading or writing the file failed.
    #[error("htpasswd file {}: {source}", path.display())]
    Io {
        /// The file (or its temporary sibling) being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file can be read by every local user; berth refuses to use it.
    #[error(
        "htpasswd file {} is readable by other users (mode {mode:04o}); restrict it, e.g. chmod 600",
        path.display()
    )]
    WorldReadable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not `user:hash`, or repeats a user.
    #[error("htpasswd file {} line {line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never contains the line's text, which may hold a secret).
        reason: String,
    },
    /// A user's password is stored with a scheme berth does not accept.
    #[error(
        "htpasswd file {} line {line}: user {user:?} uses unsupported hash {scheme}; \
         re-create it with bcrypt (htpasswd -B or berth passwd)",
        path.display()
    )]
    UnsupportedHash {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The user whose entry it is.
        user: String,
        /// The scheme found, e.g. `Apache MD5 ($apr1$)`, `SHA-1 ({SHA})`, `DES crypt`.
        scheme: String,
    },
    /// A user name that cannot be stored in an htpasswd file.
    #[error(
        "invalid user name {0:?}: it must be non-empty and contain no ':', whitespace or control characters"
    )]
    BadUser(String),
    /// A hash given to [`set_user`] that berth could not load back.
    #[error("invalid password hash: {0}")]
    BadHash(String),
    /// bcrypt would silently ignore the bytes past [`BCRYPT_MAX_PASSWORD_LEN`].
    #[error("password too long for bcrypt: at most {max} bytes are allowed; use argon2id")]
    PasswordTooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// The hash function itself failed (random source, parameters).
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// A stored, validated password hash.
#[derive(Clone)]
enum StoredHash {
    /// A bcrypt string (`$2y$…`, `$2b$…`, `$2a$…`).
    Bcrypt(String),
    /// A parsed Argon2 PHC string.
    Argon2(Box<PasswordHash>),
}

impl StoredHash {
    fn verify(&self, password: &str) -> bool {
        match self {
            StoredHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            StoredHash::Argon2(hash) => Argon2::default()
                .verify_password(password.as_bytes(), hash.as_ref())
                .is_ok(),
        }
    }
}

/// Why a hash string was not accepted.
enum HashProblem {
    /// A known scheme berth refuses.
    Unsupported(String),
    /// Looks like a supported scheme but does not parse.
    Invalid(String),
}

impl HashProblem {
    fn describe(self) -> String {
        match self {
            HashProblem::Unsupported(scheme) => format!("unsupported scheme {scheme}"),
            HashProblem::Invalid(reason) => reason,
        }
    }
}

/// Recognise and validate one stored hash.
fn classify(hash: &str) -> Result<StoredHash, HashProblem> {
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        let parts = bcrypt::HashParts::from_str(hash)
            .map_err(|_| HashProblem::Invalid("invalid bcrypt hash".to_owned()))?;
        if !(4..=31).contains(&parts.get_cost()) {
            return Err(HashProblem::Invalid(format!(
                "invalid bcrypt cost {} (must be 4 to 31)",
                parts.get_cost()
            )));
        }
        return Ok(StoredHash::Bcrypt(hash.to_owned()));
    }
    if ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        let parsed = PasswordHash::new(hash)
            .map_err(|_| HashProblem::Invalid("invalid argon2 PHC string".to_owned()))?;
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err(HashProblem::Invalid(
                "argon2 PHC string without salt or hash".to_owned(),
            ));
        }
        if argon2::Params::try_from(&parsed).is_err() {
            return Err(HashProblem::Invalid("invalid argon2 parameters".to_owned()));
        }
        return Ok(StoredHash::Argon2(Box::new(parsed)));
    }
    let scheme = if hash.starts_with("$2x$") {
        "bcrypt $2x$ (the legacy buggy variant)".to_owned()
    } else if hash.starts_with("$apr1$") {
        "Apache MD5 ($apr1$)".to_owned()
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})".to_owned()
    } else if hash.starts_with("$1$") {
        "MD5-crypt ($1$)".to_owned()
    } else if hash.starts_with("$5$") {
        "SHA-256-crypt ($5$)".to_owned()
    } else if hash.starts_with("$6$") {
        "SHA-512-crypt ($6$)".to_owned()
    } else if hash.starts_with("$y$") {
        "yescrypt ($y$)".to_owned()
    } else if hash.starts_with("$7$") || hash.starts_with("$scrypt$") {
        "scrypt".to_owned()
    } else if let Some(rest) = hash.strip_prefix('$') {
        // The identifier of a modular-crypt/PHC string is not secret; anything
        // else on the line might be, so only a short, tame identifier is shown.
        let id: String = rest
            .chars()
            .take_while(|c| *c != '$')
            .take(24)
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        format!("${id}$")
    } else if hash.len() == 13
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        "DES crypt".to_owned()
    } else {
        "plain text or unknown format".to_owned()
    };
    Err(HashProblem::Unsupported(scheme))
}

/// Whether `user` may appear in an htpasswd file.
fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && !user
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
}

/// A fixed bcrypt salt+checksum for the dummy hash checked for unknown users.
const DUMMY_BCRYPT_TAIL: &str = "L6Bc/AlTQHyd9liGgGEZyOFLPHNgyxeEPfgYfBCVxJ7JIlwxyVU3u";

/// A hash costing as much to check as the file's typical entry, used for
/// unknown users so that timing does not reveal which users exist: a bcrypt
/// hash with the most common bcrypt cost of the file, else an Argon2 hash with
/// the parameters of the file's first Argon2 entry, else bcrypt at the default cost.
fn dummy_hash(entries: &BTreeMap<String, StoredHash>) -> StoredHash {
    let mut costs: HashMap<u32, usize> = HashMap::new();
    let mut first_argon2 = None;
    for hash in entries.values() {
        match hash {
            StoredHash::Bcrypt(s) => {
                if let Ok(parts) = bcrypt::HashParts::from_str(s) {
                    *costs.entry(parts.get_cost()).or_default() += 1;
                }
            }
            StoredHash::Argon2(ph) => {
                if first_argon2.is_none() {
                    first_argon2 = Some(ph);
                }
            }
        }
    }
    let bcrypt_dummy = |cost: u32| StoredHash::Bcrypt(format!("$2y${cost:02}${DUMMY_BCRYPT_TAIL}"));
    if let Some((cost, _)) = costs.into_iter().max_by_key(|(cost, n)| (*n, *cost)) {
        return bcrypt_dummy(cost);
    }
    if let Some(ph) = first_argon2 {
        let mut dummy = ph.as_ref().clone();
        let out_len = dummy.hash.map_or(32, |h| h.len());
        let filler = [0x42u8; Output::MAX_LENGTH];
        let out = filler
            .get(..out_len)
            .and_then(|bytes| Output::new(bytes).ok());
        if let (Ok(salt), Some(out)) = (Salt::new(&[0x5a; 16]), out) {
            dummy.salt = Some(salt);
            dummy.hash = Some(out);
            return StoredHash::Argon2(Box::new(dummy));
        }
    }
    bcrypt_dummy(DEFAULT_BCRYPT_COST)
}

/// A loaded htpasswd file: user names and their validated password hashes.
#[derive(Clone)]
pub struct Htpasswd {
    entries: BTreeMap<String, StoredHash>,
    dummy: StoredHash,
}

impl fmt::Debug for Htpasswd {
    /// Lists the users only; hashes are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.entries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Htpasswd {
    /// Load a `user:hash` file (Apache htpasswd format; bcrypt `$2y$`/`$2b$`/`$2a$`,
    /// Argon2 `$argon2id$`/`$argon2i$`/`$argon2d$` PHC strings; blank lines and
    /// `#` comments skipped).
    ///
    /// Refuses a file readable by "other" (mode & 0o004) with
    /// [`HtpasswdError::WorldReadable`] naming the path and mode. The mode is
    /// taken from the opened file itself, so it is the file that is read.
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let io_err = |source| HtpasswdError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = fs::File::open(path).map_err(io_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o7777;
            if mode & 0o004 != 0 {
                return Err(HtpasswdError::WorldReadable {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io_err)?;
        Htpasswd::parse(&text, path)
    }

    /// Parse htpasswd text; `path_for_errors` is only used in error messages.
    ///
    /// Every line must be blank, a comment (first non-blank character `#`) or
    /// `user:hash` with a valid user name and a supported hash; a user may
    /// appear only once. Trailing whitespace (and `\r`) is ignored.
    pub fn parse(text: &str, path_for_errors: &Path) -> Result<Htpasswd, HtpasswdError> {
        let malformed = |line: usize, reason: String| HtpasswdError::Malformed {
            path: path_for_errors.to_owned(),
            line,
            reason,
        };
        let mut entries = BTreeMap::new();
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim_end();
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(malformed(line_no, "expected user:hash".to_owned()));
            };
            if !valid_user(user) {
                return Err(malformed(
                    line_no,
                    "invalid user name (empty, or contains whitespace or control characters)"
                        .to_owned(),
                ));
            }
            if hash.is_empty() {
                return Err(malformed(
                    line_no,
                    format!("user {user:?} has no password hash"),
                ));
            }
            if let Some(first) = first_seen.get(user) {
                return Err(malformed(
                    line_no,
                    format!("user {user:?} appears again (first on line {first})"),
                ));
            }
            let stored = match classify(hash) {
                Ok(stored) => stored,
                Err(HashProblem::Unsupported(scheme)) => {
                    return Err(HtpasswdError::UnsupportedHash {
                        path: path_for_errors.to_owned(),
                        line: line_no,
                        user: user.to_owned(),
                        scheme,
                    });
                }
                Err(HashProblem::Invalid(reason)) => {
                    return Err(malformed(line_no, format!("user {user:?}: {reason}")));
                }
            };
            first_seen.insert(user.to_owned(), line_no);
            entries.insert(user.to_owned(), stored);
        }
        let dummy = dummy_hash(&entries);
        Ok(Htpasswd { entries, dummy })
    }

    /// Check `password` for `user`.
    ///
    /// Constant-time-ish: an unknown user still costs one hash verification
    /// (against a fixed dummy hash of the same cost as the file's entries), so
    /// timing does not reveal which users exist. Hash comparisons inside bcrypt
    /// and argon2 are constant-time. Each call costs a full hash (bcrypt cost
    /// 10: ~50–80 ms), so run it off the async executor (`spawn_blocking`).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (hash, known) = match self.entries.get(user) {
            Some(hash) => (hash, true),
            None => (&self.dummy, false),
        };
        let matches = hash.verify(password);
        // Non-short-circuit `&`: both operands are always evaluated.
        known & matches
    }

    /// The user names in the file, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.entries.contains_key(user)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Hash `password` for an htpasswd file with `alg` (bcrypt at cost
/// [`DEFAULT_BCRYPT_COST`], or Argon2id with default parameters).
///
/// bcrypt refuses passwords longer than [`BCRYPT_MAX_PASSWORD_LEN`] bytes
/// ([`HtpasswdError::PasswordTooLong`]) instead of silently ignoring the rest.
pub fn hash_password(password: &str, alg: HashAlgorithm) -> Result<String, HtpasswdError> {
    match alg {
        HashAlgorithm::Bcrypt => hash_password_with_cost(password, DEFAULT_BCRYPT_COST),
        HashAlgorithm::Argon2id => Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| HtpasswdError::Hash(e.to_string())),
    }
}

/// Hash `password` with bcrypt at `cost` (4 to 31; tests use 4 to be fast),
/// written as `$2y$` like `htpasswd -B`.
pub fn hash_password_with_cost(password: &str, cost: u32) -> Result<String, HtpasswdError> {
    if password.len() > BCRYPT_MAX_PASSWORD_LEN {
        return Err(HtpasswdError::PasswordTooLong {
            max: BCRYPT_MAX_PASSWORD_LEN,
        });
    }
    bcrypt::hash_with_result(password, cost)
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoY))
        .map_err(|e| HtpasswdError::Hash(e.to_string()))
}

/// Add or replace a user in an htpasswd file.
///
/// The file is created with mode 0600 if missing. Otherwise the first line of
/// `user` is replaced in place (later duplicates dropped) or a line appended,
/// keeping every other line and comment as it was. The write is atomic: a
/// temporary file in the same directory is written, fsynced and renamed over
/// the file (a symlink is followed and its target replaced), then the
/// directory is fsynced. An existing file keeps its owner and group (best
/// effort) and its permission bits minus any for "other", since
/// [`Htpasswd::load`] refuses world-readable files anyway.
///
/// Refuses user names that are empty or contain `:`, whitespace or control
/// characters ([`HtpasswdError::BadUser`]) and hashes that [`Htpasswd::load`]
/// would not accept ([`HtpasswdError::BadHash`]). Concurrent writers are not
/// serialised: the last rename wins.
pub fn set_user(path: &Path, user: &str, hash: &str) -> Result<(), HtpasswdError> {
    if !valid_user(user) {
        return Err(HtpasswdError::BadUser(user.to_owned()));
    }
    if hash.is_empty() || hash.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(HtpasswdError::BadHash(
            "empty, or contains whitespace or control characters".to_owned(),
        ));
    }
    classify(hash).map_err(|p| HtpasswdError::BadHash(p.describe()))?;

    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| HtpasswdError::Io { path, source }
    };

    // Follow a symlink so the link keeps pointing at the updated file.
    let target = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_owned(),
        Err(e) => return Err(io_err(path)(e)),
    };
    let existing = match fs::File::open(&target) {
        Ok(mut file) => {
            let meta = file.metadata().map_err(io_err(&target))?;
            let mut text = String::new();
            file.read_to_string(&mut text).map_err(io_err(&target))?;
            Some((text, meta))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&target)(e)),
    };

    let new_line = format!("{user}:{hash}");
    let mut out = String::new();
    let mut replaced = false;
    if let Some((text, _)) = &existing {
        for line in text.lines() {
            let trimmed = line.trim_start();
            let is_entry = !trimmed.is_empty() && !trimmed.starts_with('#');
            if is_entry && line.split_once(':').map(|(u, _)| u) == Some(user) {
                if !replaced {
                    out.push_str(&new_line);
                    out.push('\n');
                    replaced = true;
                }
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&new_line);
        out.push('\n');
    }

    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    // tempfile creates the file with mode 0600 and removes it if we fail.
    let mut tmp = tempfile::Builder::new()
        .prefix(".htpasswd.")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(io_err(&dir))?;
    let tmp_path = tmp.path().to_owned();
    #[cfg(unix)]
    if let Some((_, meta)) = &existing {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o770;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp_path))?;
        if let Err(e) = std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid()))
        {
            tracing::warn!(
                path = %target.display(),
                error = %e,
                "could not keep the owner of the htpasswd file"
            );
        }
    }
    tmp.write_all(out.as_bytes()).map_err(io_err(&tmp_path))?;
    tmp.as_file().sync_all().map_err(io_err(&tmp_path))?;
    tmp.persist(&target).map_err(|e| io_err(&target)(e.error))?;
    #[cfg(unix)]
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.htpasswd")
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn bcrypt_and_argon2_round_trip() {
        let b = hash_password_with_cost("s3cret", 4).unwrap();
        assert!(b.starts_with("$2y$04$"), "{b}");
        let a = hash_password("hunter2", HashAlgorithm::Argon2id).unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        let text = format!("# users\n\nalice:{b}\r\n  # indented comment\nbob:{a}\n");
        let h = Htpasswd::parse(&text, p()).unwrap();
        assert_eq!(h.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(h.verify("alice", "s3cret"));
        assert!(!h.verify("alice", "s3cret "));
        assert!(!h.verify("alice", "hunter2"));
        assert!(h.verify("bob", "hunter2"));
        assert!(!h.verify("bob", "s3cret"));
        assert!(!h.verify("carol", "s3cret"));
        assert!(!h.verify("", ""));
        assert!(h.contains("bob") && !h.contains("carol"));
        assert_eq!(h.len(), 2);
        // Debug shows users, never hashes.
        let dbg = format!("{h:?}");
        assert!(dbg.contains("alice") && !dbg.contains("$2y$"), "{dbg}");
    }

    #[test]
    fn default_bcrypt_cost_is_10() {
        let h = hash_password("pw", HashAlgorithm::Bcrypt).unwrap();
        assert!(h.starts_with("$2y$10$"), "{h}");
        let file = Htpasswd::parse(&format!("u:{h}\n"), p()).unwrap();
        assert!(file.verify("u", "pw"));
    }

    #[test]
    fn known_hashes_from_other_tools() {
        // `htpasswd -nbB -C 4 alice secret` style ($2y$), and $2a$/$2b$ variants
        // of the same hash, all verify.
        let h = hash_password_with_cost("secret", 4).unwrap();
        let tail = &h[3..];
        for prefix in ["$2y", "$2b", "$2a"] {
            let text = format!("alice:{prefix}{tail}\n");
            let f = Htpasswd::parse(&text, p()).unwrap();
            assert!(f.verify("alice", "secret"), "{prefix}");
        }
        // argon2i and argon2d PHC strings.
        for alg in [argon2::Algorithm::Argon2i, argon2::Algorithm::Argon2d] {
            let hasher = Argon2::new(alg, argon2::Version::V0x13, argon2::Params::default());
            let hash = hasher.hash_password(b"pw").unwrap().to_string();
            let f = Htpasswd::parse(&format!("x:{hash}"), p()).unwrap();
            assert!(f.verify("x", "pw"), "{hash}");
            assert!(!f.verify("x", "pw2"));
        }
    }

    #[test]
    fn interoperates_with_apache_htpasswd_and_reference_argon2() {
        // Made by Apache `htpasswd -nbB -C 5 alice 'correct horse'`,
        // `htpasswd -nbm bob pw`, `htpasswd -nbs carol pw`, and the reference
        // `argon2` CLI (`echo -n hunter2 | argon2 somesaltsomesalt -id -t 2 -m 12 -p 1 -e`,
        // and `-i -t 2 -m 10 -p 2`).
        let text = "\
alice:$2y$05$og.WI.GnZVZlk21GrdOER.sosfZfr78J0OYagrSkK9b6fBTzgppmW
dave:$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$QnBG2OMxDYQJFTkMlhjXB7K/CdUcKYaCbELTM3dvBqw
erin:$argon2i$v=19$m=1024,t=2,p=2$c29tZXNhbHRzb21lc2FsdA$6sn6rCTU2wvWSfdc3gk5QCDuYH08qmLauLcd/e5wrvI
";
        let f = Htpasswd::parse(text, p()).unwrap();
        assert!(f.verify("alice", "correct horse"));
        assert!(!f.verify("alice", "correct horse!"));
        assert!(f.verify("dave", "hunter2"));
        assert!(!f.verify("dave", "hunter3"));
        assert!(f.verify("erin", "hunter2"));
        assert!(!f.verify("erin", "Hunter2"));
        for line in [
            "bob:$apr1$qdZIM5VP$LWzlwXmsqxTVuSvBVn.kD/",
            "carol:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=",
        ] {
            assert!(matches!(
                Htpasswd::parse(line, p()),
                Err(HtpasswdError::UnsupportedHash { .. })
            ));
        }
    }

    #[test]
    fn unsupported_hashes_are_named() {
        let cases = [
            ("$apr1$abcdefgh$0123456789abcdefghijkl", "Apache MD5"),
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("$1$saltsalt$0123456789abcdefghijkl", "MD5-crypt"),
            ("$5$saltsalt$0123456789abcdefghijkl", "SHA-256-crypt"),
            ("$6$saltsalt$0123456789abcdefghijkl", "SHA-512-crypt"),
            ("$y$j9T$salt$hash", "yescrypt"),
            ("abJnggxhB/yWI", "DES crypt"),
            ("plaintextpassword", "plain text"),
            (
                "$2x$04$L6Bc/AlTQHyd9liGgGEZyOFLPHNgyxeEPfgYfBCVxJ7JIlwxyVU3u",
                "$2x$",
            ),
            ("$pbkdf2-sha256$x$y", "$pbkdf2-sha256$"),
        ];
        for (hash, scheme) in cases {
            let text = format!("# c\nalice:{hash}\n");
            match Htpasswd::parse(&text, p()) {
                Err(HtpasswdError::UnsupportedHash {
                    path,
                    line,
                    user,
                    scheme: s,
                }) => {
                    assert_eq!(path, p());
                    assert_eq!(line, 2);
                    assert_eq!(user, "alice");
                    assert!(s.contains(scheme), "{s} vs {scheme}");
                }
                other => panic!("{hash}: {other:?}"),
            }
        }
        let err = Htpasswd::parse("bob:plaintextpassword", p()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("test.htpasswd") && msg.contains("line 1"),
            "{msg}"
        );
        assert!(!msg.contains("plaintextpassword"), "{msg}");
    }

    #[test]
    fn malformed_lines() {
        let good = hash_password_with_cost("x", 4).unwrap();
        let cases = [
            "no-colon-here".to_owned(),
            format!(":{good}"),
            "alice:".to_owned(),
            format!("al ice:{good}"),
            format!("alice:{good}\nalice:{good}"),
            "alice:$2y$04$tooshort".to_owned(),
            "alice:$2y$99$L6Bc/AlTQHyd9liGgGEZyOFLPHNgyxeEPfgYfBCVxJ7JIlwxyVU3u".to_owned(),
            "alice:$argon2id$v=19$m=nonsense".to_owned(),
        ];
        for text in cases {
            match Htpasswd::parse(&text, p()) {
                Err(HtpasswdError::Malformed { line, reason, .. }) => {
                    assert!(line >= 1, "{reason}");
                    assert!(!reason.contains("tooshort"), "{reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        match Htpasswd::parse(&format!("a:{good}\n\nb:{good}\na:{good}\n"), p()) {
            Err(HtpasswdError::Malformed {
                line: 4, reason, ..
            }) => {
                assert!(reason.contains("line 1"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_file_has_no_users() {
        let h = Htpasswd::parse("# nothing\n\n", p()).unwrap();
        assert!(h.is_empty());
        assert!(!h.verify("anyone", ""));
    }

    #[test]
    fn dummy_matches_the_file_cost() {
        let h4 = hash_password_with_cost("x", 4).unwrap();
        let h5 = hash_password_with_cost("x", 5).unwrap();
        let f = Htpasswd::parse(&format!("a:{h4}\nb:{h5}\nc:{h4}\n"), p()).unwrap();
        match &f.dummy {
            // The dummy must really cost a full hash: it has to parse, so
            // that verification runs and fails instead of erroring out early.
            StoredHash::Bcrypt(s) => {
                assert!(s.starts_with("$2y$04$"), "{s}");
                assert!(!bcrypt::verify("x", s).unwrap());
            }
            StoredHash::Argon2(_) => panic!("expected bcrypt"),
        }
        let a = hash_password("x", HashAlgorithm::Argon2id).unwrap();
        let f = Htpasswd::parse(&format!("a:{a}\n"), p()).unwrap();
        match &f.dummy {
            StoredHash::Argon2(ph) => {
                assert_eq!(ph.params, PasswordHash::new(&a).unwrap().params);
                assert_eq!(
                    Argon2::default().verify_password(b"x", ph.as_ref()),
                    Err(argon2::password_hash::Error::PasswordInvalid)
                );
            }
            StoredHash::Bcrypt(_) => panic!("expected argon2"),
        }
        let empty = Htpasswd::parse("", p()).unwrap();
        match &empty.dummy {
            StoredHash::Bcrypt(s) => {
                assert!(s.starts_with("$2y$10$"), "{s}");
                assert!(!bcrypt::verify("x", s).unwrap());
            }
            StoredHash::Argon2(_) => panic!("expected bcrypt"),
        }
    }

    #[test]
    fn bcrypt_refuses_long_passwords() {
        let long = "x".repeat(73);
        assert!(matches!(
            hash_password(&long, HashAlgorithm::Bcrypt),
            Err(HtpasswdError::PasswordTooLong { max: 72 })
        ));
        assert!(hash_password_with_cost(&"x".repeat(72), 4).is_ok());
        let a = hash_password(&long, HashAlgorithm::Argon2id).unwrap();
        let f = Htpasswd::parse(&format!("u:{a}"), p()).unwrap();
        assert!(f.verify("u", &long));
        assert!(!f.verify("u", &"x".repeat(72)));
    }

    #[test]
    fn algorithm_names() {
        assert_eq!("bcrypt".parse::<HashAlgorithm>(), Ok(HashAlgorithm::Bcrypt));
        assert_eq!(
            "Argon2".parse::<HashAlgorithm>(),
            Ok(HashAlgorithm::Argon2id)
        );
        assert_eq!(
            "argon2id".parse::<HashAlgorithm>(),
            Ok(HashAlgorithm::Argon2id)
        );
        assert!("md5".parse::<HashAlgorithm>().is_err());
        assert_eq!(HashAlgorithm::Argon2id.to_string(), "argon2id");
        assert_eq!(HashAlgorithm::default(), HashAlgorithm::Bcrypt);
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_world_readable_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = hash_password_with_cost("pw", 4).unwrap();
        fs::write(&path, format!("alice:{hash}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        match Htpasswd::load(&path) {
            Err(HtpasswdError::WorldReadable { path: p, mode }) => {
                assert_eq!(p, path);
                assert_eq!(mode, 0o644);
                let err = Htpasswd::load(&path).unwrap_err().to_string();
                assert!(err.contains("0644") && err.contains("htpasswd"), "{err}");
            }
            other => panic!("{other:?}"),
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let h = Htpasswd::load(&path).unwrap();
        assert!(h.verify("alice", "pw"));

        let missing = dir.path().join("missing");
        assert!(matches!(
            Htpasswd::load(&missing),
            Err(HtpasswdError::Io { path, .. }) if path == missing
        ));
    }

    #[cfg(unix)]
    #[test]
    fn set_user_creates_replaces_and_keeps_other_lines() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let h1 = hash_password_with_cost("one", 4).unwrap();
        set_user(&path, "alice", &h1).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("alice:{h1}\n"));

        // Add comments and another user by hand, without a final newline.
        let hb = hash_password_with_cost("bee", 4).unwrap();
        fs::write(
            &path,
            format!("# team\nalice:{h1}\n\n# bob below\nbob:{hb}"),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();

        let h2 = hash_password("two", HashAlgorithm::Argon2id).unwrap();
        set_user(&path, "alice", &h2).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("# team\nalice:{h2}\n\n# bob below\nbob:{hb}\n")
        );
        assert_eq!(mode_of(&path), 0o640, "mode kept");

        let h3 = hash_password_with_cost("three", 4).unwrap();
        set_user(&path, "carol", &h3).unwrap();
        let f = Htpasswd::load(&path).unwrap();
        assert_eq!(f.users().collect::<Vec<_>>(), ["alice", "bob", "carol"]);
        assert!(f.verify("alice", "two") && !f.verify("alice", "one"));
        assert!(f.verify("bob", "bee"));
        assert!(f.verify("carol", "three"));

        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["htpasswd"]);
    }

    #[cfg(unix)]
    #[test]
    fn set_user_drops_world_bits_and_follows_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        let h = hash_password_with_cost("pw", 4).unwrap();
        fs::write(&real, format!("a:{h}\na:{h}\n")).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_user(&link, "a", &h).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(mode_of(&real), 0o640);
        // The duplicate line was dropped.
        assert_eq!(fs::read_to_string(&real).unwrap(), format!("a:{h}\n"));
    }

    #[test]
    fn set_user_refuses_bad_names_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let h = hash_password_with_cost("pw", 4).unwrap();
        for user in ["", "a:b", "a b", "a\tb", "a\nb", "\u{7f}"] {
            assert!(
                matches!(set_user(&path, user, &h), Err(HtpasswdError::BadUser(u)) if u == user),
                "{user:?}"
            );
        }
        for hash in [
            "",
            "plain",
            "$apr1$abcdefgh$0123456789abcdefghijkl",
            "$2y$04$short",
            &format!("{h}\nmallory:{h}"),
        ] {
            assert!(
                matches!(
                    set_user(&path, "alice", hash),
                    Err(HtpasswdError::BadHash(_))
                ),
                "{hash:?}"
            );
        }
        assert!(!path.exists());
    }
}
