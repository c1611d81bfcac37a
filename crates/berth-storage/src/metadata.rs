//! Repositories, blob links, manifests, tags, referrers and upload sessions in an
//! embedded SQLite database.
//!
//! One writer connection (serialised by a mutex, every change in an `IMMEDIATE`
//! transaction) and a small pool of reader connections; WAL mode lets readers run
//! beside the writer and never see a half-applied change. Calls block; async callers
//! run them on the blocking pool.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_oci::Digest;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{Result, StorageError, UploadId, now_secs};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
-- Every committed blob file that some repository links (size as verified on upload).
CREATE TABLE IF NOT EXISTS blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
-- A blob is visible in a repository only through a link.
CREATE TABLE IF NOT EXISTS repo_blobs (
    repo_id     INTEGER NOT NULL REFERENCES repositories(id),
    digest      TEXT NOT NULL REFERENCES blobs(digest),
    linked_at   INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
-- The exact bytes of every manifest, stored once.
CREATE TABLE IF NOT EXISTS manifest_content (
    digest      TEXT PRIMARY KEY,
    content     BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS manifests (
    repo_id       INTEGER NOT NULL REFERENCES repositories(id),
    digest        TEXT NOT NULL REFERENCES manifest_content(digest),
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    subject       TEXT,
    artifact_type TEXT,
    annotations   TEXT,
    pushed_at     INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifests_by_subject ON manifests(repo_id, subject)
    WHERE subject IS NOT NULL;
-- What each manifest references (blobs and child manifests), for deletes and GC.
CREATE TABLE IF NOT EXISTS manifest_refs (
    repo_id          INTEGER NOT NULL,
    manifest_digest  TEXT NOT NULL,
    target_digest    TEXT NOT NULL,
    PRIMARY KEY (repo_id, manifest_digest, target_digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
    repo_id     INTEGER NOT NULL REFERENCES repositories(id),
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name)
) WITHOUT ROWID;
-- Listing order of tags/list and _catalog (lexical, case-insensitive first).
CREATE INDEX IF NOT EXISTS tags_sorted ON tags(repo_id, name COLLATE NOCASE, name);
CREATE INDEX IF NOT EXISTS repositories_sorted ON repositories(name COLLATE NOCASE, name);
CREATE TABLE IF NOT EXISTS uploads (
    id          TEXT PRIMARY KEY,
    repo_id     INTEGER NOT NULL REFERENCES repositories(id),
    started_at  INTEGER NOT NULL
) WITHOUT ROWID;
-- Objects scrub found corrupt or missing, moved aside and no longer served.
CREATE TABLE IF NOT EXISTS quarantine (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    repositories  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    moved_to      TEXT,
    found_at      INTEGER NOT NULL
);
"#;

/// Changes to tables that already exist, applied in order; `PRAGMA user_version`
/// counts how many a database has had. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: last-pulled time per manifest (retention), written in batches.
    "ALTER TABLE manifests ADD COLUMN last_pulled_at INTEGER",
];

const READERS: usize = 4;

/// The metadata database.
#[derive(Debug)]
pub struct Metadata {
    path: std::path::PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// A manifest about to be stored.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    /// Digest of `content`.
    pub digest: Digest,
    /// Media type it was pushed with.
    pub media_type: String,
    /// The exact bytes pushed.
    pub content: Vec<u8>,
    /// `subject` digest, if any.
    pub subject: Option<Digest>,
    /// Artifact type reported by the referrers API.
    pub artifact_type: Option<String>,
    /// `annotations` as JSON text, if any.
    pub annotations: Option<String>,
    /// Blobs that must be linked in the repository, with the size the manifest
    /// declares for each.
    pub blobs: Vec<(Digest, u64)>,
    /// Manifests that must exist in the repository, with their declared sizes.
    pub manifests: Vec<(Digest, u64)>,
}

/// Why a manifest could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    /// Referenced blobs or manifests are not in the repository.
    #[error("manifest references {} unknown blobs or manifests", .0.len())]
    Missing(Vec<Digest>),
    /// A descriptor's size differs from the stored content's size.
    #[error("descriptor of {digest} declares {declared} bytes but the stored content has {actual}")]
    SizeMismatch {
        /// The referenced digest.
        digest: Digest,
        /// Size in the descriptor.
        declared: u64,
        /// Size stored.
        actual: u64,
    },
    /// A tag to be moved is protected by an immutability rule.
    #[error("tag {tag} is immutable (rule {rule})")]
    ImmutableTag {
        /// The tag.
        tag: String,
        /// The rule protecting it.
        rule: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Says whether a tag is immutable: `Some(rule name)` if it is.
pub type TagGuard<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The outcome of linking a blob into a repository under a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// Linked (or already was).
    Yes,
    /// Not linked: the repository would exceed its quota; `used` is its usage now.
    OverQuota {
        /// Bytes of unique blobs the repository links now.
        used: u64,
    },
}

/// The outcome of a cross-repository mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mounted {
    /// Linked; the blob's size.
    Yes(u64),
    /// The source repository does not link the blob.
    NotInSource,
    /// Not linked: the repository would exceed its quota.
    OverQuota {
        /// Bytes of unique blobs the repository links now.
        used: u64,
    },
}

/// The outcome of deleting a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted, with its tags.
    Yes,
    /// No such manifest in the repository.
    NotFound,
    /// A tag pointing at it is immutable; nothing was changed.
    Protected {
        /// The tag.
        tag: String,
        /// The rule protecting it.
        rule: String,
    },
}

impl From<rusqlite::Error> for PutManifestError {
    fn from(e: rusqlite::Error) -> Self {
        PutManifestError::Storage(e.into())
    }
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The exact bytes (empty when only metadata was asked for).
    pub content: bytes::Bytes,
}

/// One manifest whose `subject` is a given digest.
#[derive(Debug, Clone)]
pub struct ReferrerRow {
    /// Manifest digest.
    pub digest: Digest,
    /// Manifest media type.
    pub media_type: String,
    /// Manifest size.
    pub size: u64,
    /// Artifact type to report.
    pub artifact_type: Option<String>,
    /// Annotations as JSON text.
    pub annotations: Option<String>,
}

/// An open upload session.
#[derive(Debug, Clone)]
pub struct UploadSession {
    /// Repository the upload belongs to.
    pub repo: String,
    /// When it began (Unix seconds).
    pub started_at: i64,
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a transaction acknowledged to a client survives power loss too.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Apply the migrations this database has not had, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

pub(crate) fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    s.parse::<Digest>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(crate) fn repo_id(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM repositories WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
}

fn ensure_repo(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO repositories (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
        params![name, now_secs()],
    )?;
    conn.query_row("SELECT id FROM repositories WHERE name = ?1", [name], |r| {
        r.get(0)
    })
}

/// Bytes of unique blobs `repo` links.
pub(crate) fn repo_usage(conn: &Connection, repo: i64) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(b.size), 0) FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest
         WHERE rb.repo_id = ?1",
    )?
    .query_row([repo], |r| r.get::<_, i64>(0))
    .map(|n| n as u64)
}

/// Whether linking `digest` (of `size` bytes) into `repo` keeps it within `quota`;
/// a blob already linked there costs nothing.
fn quota_allows(
    conn: &Connection,
    repo: i64,
    digest: &str,
    size: u64,
    quota: Option<u64>,
) -> rusqlite::Result<Linked> {
    let Some(quota) = quota else {
        return Ok(Linked::Yes);
    };
    let linked: bool = conn
        .prepare_cached("SELECT 1 FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2")?
        .exists(params![repo, digest])?;
    if linked {
        return Ok(Linked::Yes);
    }
    let used = repo_usage(conn, repo)?;
    Ok(if used.saturating_add(size) > quota {
        Linked::OverQuota { used }
    } else {
        Linked::Yes
    })
}

/// Delete manifest `d` of repository `id` with its tags, references and (if no
/// other repository holds it) its bytes. False if it was not there.
pub(crate) fn delete_manifest_tx(conn: &Connection, id: i64, d: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2",
        params![id, d],
    )?;
    if n == 0 {
        return Ok(false);
    }
    conn.execute(
        "DELETE FROM tags WHERE repo_id = ?1 AND digest = ?2",
        params![id, d],
    )?;
    conn.execute(
        "DELETE FROM manifest_refs WHERE repo_id = ?1 AND manifest_digest = ?2",
        params![id, d],
    )?;
    conn.execute(
        "DELETE FROM manifest_content WHERE digest = ?1
         AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)",
        [d],
    )?;
    Ok(true)
}

fn link_blob_tx(conn: &Connection, repo: i64, digest: &str, size: u64) -> rusqlite::Result<()> {
    let now = now_secs();
    conn.execute(
        "INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![digest, size as i64, now],
    )?;
    conn.execute(
        "INSERT INTO repo_blobs (repo_id, digest, linked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO UPDATE SET linked_at = excluded.linked_at",
        params![repo, digest, now],
    )?;
    Ok(())
}

/// SQL condition: `name` sorts after `?2` in the spec's lexical (case-insensitive,
/// then bytewise) order. The leading `>=` is a range the `*_sorted` indexes can
/// seek to, so a page deep in 100,000 tags costs what the first page costs; the
/// caller passes `""` (before every name) for the first page.
const AFTER_LAST: &str = "name COLLATE NOCASE >= ?2 AND (name COLLATE NOCASE > ?2 OR name > ?2)";

/// One page of a repository's tags: `?1` repository id, `?2` last name seen
/// (`""` for the first page), `?3` page size.
fn tags_page_sql() -> String {
    format!(
        "SELECT name FROM tags WHERE repo_id = ?1 AND {AFTER_LAST}
         ORDER BY name COLLATE NOCASE, name LIMIT ?3"
    )
}

/// One page of the catalog: `?1` page size, `?2` last name seen (`""` first).
fn catalog_page_sql() -> String {
    format!(
        "SELECT name FROM repositories r WHERE {AFTER_LAST}
         AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)
              OR EXISTS (SELECT 1 FROM repo_blobs b WHERE b.repo_id = r.id))
         ORDER BY name COLLATE NOCASE, name LIMIT ?1"
    )
}

impl Metadata {
    /// Open (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = open_conn(path)?;
        writer.execute_batch(SCHEMA)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| open_conn(path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Metadata {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = self.readers[i]
            .lock()
            .map_err(|_| StorageError::Task("reader connection poisoned".into()))?;
        Ok(f(&conn)?)
    }

    /// Run a long read (a maintenance pass) on a connection of its own, so that
    /// requests never queue behind it for one of the shared reader connections.
    pub(crate) fn read_apart<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = open_conn(&self.path)?;
        Ok(f(&conn)?)
    }

    pub(crate) fn write<T, E: From<rusqlite::Error> + From<StorageError>>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| StorageError::Task("writer connection poisoned".into()))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Answer a trivial query (readiness: the database can be read).
    pub fn ping(&self) -> Result<()> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
        })
    }

    /// Whether the repository exists.
    pub fn repo_exists(&self, repo: &str) -> Result<bool> {
        self.read(|c| repo_id(c, repo).map(|r| r.is_some()))
    }

    /// Size of `digest` if it is linked in `repo`.
    pub fn blob_in_repo(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.read(|c| {
            c.query_row(
                "SELECT b.size FROM repo_blobs rb
                 JOIN repositories r ON r.id = rb.repo_id
                 JOIN blobs b ON b.digest = rb.digest
                 WHERE r.name = ?1 AND rb.digest = ?2",
                params![repo, digest.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|s| s as u64))
        })
    }

    /// Size of `digest` if any repository links it.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.read(|c| {
            c.query_row(
                "SELECT size FROM blobs WHERE digest = ?1",
                [digest.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|s| s as u64))
        })
    }

    /// Record a committed blob and link it into `repo`, unless that would take
    /// `repo` over `quota` bytes; if `upload` is given, the upload session ends in
    /// the same transaction (whatever the outcome).
    pub fn link_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        upload: Option<UploadId>,
        quota: Option<u64>,
    ) -> Result<Linked> {
        self.write(|tx| -> Result<Linked> {
            let id = ensure_repo(tx, repo)?;
            let d = digest.to_string();
            if let Some(u) = upload {
                tx.execute("DELETE FROM uploads WHERE id = ?1", [u.to_string()])?;
            }
            let allowed = quota_allows(tx, id, &d, size, quota)?;
            if allowed == Linked::Yes {
                link_blob_tx(tx, id, &d, size)?;
            }
            Ok(allowed)
        })
    }

    /// Bytes of unique blobs `repo` links (0 if it does not exist).
    pub fn usage_of(&self, repo: &str) -> Result<u64> {
        self.read(|c| match repo_id(c, repo)? {
            Some(id) => repo_usage(c, id),
            None => Ok(0),
        })
    }

    /// Link `digest` into `repo` if `from` links it and `repo` stays within `quota`.
    pub fn mount_blob(
        &self,
        repo: &str,
        from: &str,
        digest: &Digest,
        quota: Option<u64>,
    ) -> Result<Mounted> {
        self.write(|tx| -> Result<Mounted> {
            let d = digest.to_string();
            let size: Option<i64> = tx
                .query_row(
                    "SELECT b.size FROM repo_blobs rb
                     JOIN repositories r ON r.id = rb.repo_id
                     JOIN blobs b ON b.digest = rb.digest
                     WHERE r.name = ?1 AND rb.digest = ?2",
                    params![from, d],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(size) = size else {
                return Ok(Mounted::NotInSource);
            };
            let id = ensure_repo(tx, repo)?;
            if let Linked::OverQuota { used } = quota_allows(tx, id, &d, size as u64, quota)? {
                return Ok(Mounted::OverQuota { used });
            }
            link_blob_tx(tx, id, &d, size as u64)?;
            Ok(Mounted::Yes(size as u64))
        })
    }

    /// Remove the link of `digest` from `repo`; false if it was not linked.
    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.write(|tx| -> Result<bool> {
            let n = tx.execute(
                "DELETE FROM repo_blobs WHERE digest = ?2
                 AND repo_id = (SELECT id FROM repositories WHERE name = ?1)",
                params![repo, digest.to_string()],
            )?;
            Ok(n > 0)
        })
    }

    /// Store a manifest in `repo` and point each of `tags` at it, in one
    /// transaction that first checks every referenced blob and manifest exists there.
    ///
    /// A tag that `immutable` protects may be created, or pushed again with the
    /// same manifest, but never moved to another one.
    ///
    /// Returns each distinct tag (in the order given) with the digest it pointed
    /// at before, read in the same transaction: `None` for a new tag.
    pub fn put_manifest(
        &self,
        repo: &str,
        m: &ManifestRecord,
        tags: &[String],
        immutable: TagGuard<'_>,
    ) -> std::result::Result<Vec<(String, Option<Digest>)>, PutManifestError> {
        self.write(|tx| -> std::result::Result<_, PutManifestError> {
            let id = ensure_repo(tx, repo)?;
            let digest = m.digest.to_string();
            let mut previous: Vec<(String, Option<Digest>)> = Vec::with_capacity(tags.len());
            for tag in tags {
                if previous.iter().any(|(t, _)| t == tag) {
                    continue;
                }
                let current: Option<Digest> = tx
                    .prepare_cached("SELECT digest FROM tags WHERE repo_id = ?1 AND name = ?2")?
                    .query_row(params![id, tag], |r| parse_digest(r.get(0)?))
                    .optional()?;
                if let Some(rule) = immutable(tag)
                    && current.as_ref().is_some_and(|c| c.to_string() != digest)
                {
                    return Err(PutManifestError::ImmutableTag {
                        tag: tag.clone(),
                        rule,
                    });
                }
                previous.push((tag.clone(), current));
            }
            let mut missing = Vec::new();
            let mut mismatch = None;
            {
                let mut blob_q = tx.prepare_cached(
                    "SELECT b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest
                     WHERE rb.repo_id = ?1 AND rb.digest = ?2",
                )?;
                let mut man_q = tx
                    .prepare_cached("SELECT size FROM manifests WHERE repo_id = ?1 AND digest = ?2")?;
                for (list, is_blob) in [(&m.blobs, true), (&m.manifests, false)] {
                    for (d, declared) in list {
                        let q = if is_blob { &mut blob_q } else { &mut man_q };
                        let actual: Option<i64> = q
                            .query_row(params![id, d.to_string()], |r| r.get(0))
                            .optional()?;
                        match actual {
                            None => {
                                if !missing.contains(d) {
                                    missing.push(d.clone());
                                }
                            }
                            Some(a) if a as u64 != *declared && mismatch.is_none() => {
                                mismatch = Some(PutManifestError::SizeMismatch {
                                    digest: d.clone(),
                                    declared: *declared,
                                    actual: a as u64,
                                });
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
            if !missing.is_empty() {
                return Err(PutManifestError::Missing(missing));
            }
            if let Some(e) = mismatch {
                return Err(e);
            }
            let now = now_secs();
            tx.execute(
                "INSERT INTO manifest_content (digest, content) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![digest, m.content],
            )?;
            tx.execute(
                "INSERT INTO manifests (repo_id, digest, media_type, size, subject, artifact_type, annotations, pushed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(repo_id, digest) DO UPDATE SET media_type = excluded.media_type, pushed_at = excluded.pushed_at",
                params![
                    id,
                    digest,
                    m.media_type,
                    m.content.len() as i64,
                    m.subject.as_ref().map(|s| s.to_string()),
                    m.artifact_type,
                    m.annotations,
                    now
                ],
            )?;
            {
                let mut refs = tx.prepare_cached(
                    "INSERT INTO manifest_refs (repo_id, manifest_digest, target_digest) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )?;
                for (t, _) in m.blobs.iter().chain(&m.manifests) {
                    refs.execute(params![id, digest, t.to_string()])?;
                }
            }
            for tag in tags {
                tx.execute(
                    "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                    params![id, tag, digest, now],
                )?;
            }
            Ok(previous)
        })
    }

    /// Resolve a tag to a manifest digest.
    pub fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        self.read(|c| {
            c.query_row(
                "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id
                 WHERE r.name = ?1 AND t.name = ?2",
                params![repo, tag],
                |r| parse_digest(r.get(0)?),
            )
            .optional()
        })
    }

    /// A manifest in `repo` by digest; `with_content` also loads its bytes.
    pub fn manifest(
        &self,
        repo: &str,
        digest: &Digest,
        with_content: bool,
    ) -> Result<Option<StoredManifest>> {
        let sql = if with_content {
            "SELECT m.media_type, m.size, c.content FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             JOIN manifest_content c ON c.digest = m.digest
             WHERE r.name = ?1 AND m.digest = ?2"
        } else {
            "SELECT m.media_type, m.size, x'' FROM manifests m
             JOIN repositories r ON r.id = m.repo_id
             WHERE r.name = ?1 AND m.digest = ?2"
        };
        self.read(|c| {
            c.prepare_cached(sql)?
                .query_row(params![repo, digest.to_string()], |r| {
                    Ok(StoredManifest {
                        digest: digest.clone(),
                        media_type: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        content: bytes::Bytes::from(r.get::<_, Vec<u8>>(2)?),
                    })
                })
                .optional()
        })
    }

    /// Remove a tag; returns the digest it pointed at, `None` if it did not exist.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        self.write(|tx| -> Result<Option<Digest>> {
            tx.prepare_cached(
                "DELETE FROM tags WHERE name = ?2
                 AND repo_id = (SELECT id FROM repositories WHERE name = ?1)
                 RETURNING digest",
            )?
            .query_row(params![repo, tag], |r| parse_digest(r.get(0)?))
            .optional()
            .map_err(Into::into)
        })
    }

    /// Remove a manifest and every tag pointing at it, unless `immutable` protects
    /// one of those tags.
    pub fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        immutable: TagGuard<'_>,
    ) -> Result<Deleted> {
        self.write(|tx| -> Result<Deleted> {
            let Some(id) = repo_id(tx, repo)? else {
                return Ok(Deleted::NotFound);
            };
            let d = digest.to_string();
            let tags: Vec<String> = tx
                .prepare_cached("SELECT name FROM tags WHERE repo_id = ?1 AND digest = ?2")?
                .query_map(params![id, d], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for tag in tags {
                if let Some(rule) = immutable(&tag) {
                    return Ok(Deleted::Protected { tag, rule });
                }
            }
            Ok(if delete_manifest_tx(tx, id, &d)? {
                Deleted::Yes
            } else {
                Deleted::NotFound
            })
        })
    }

    /// Tags of `repo` in lexical order after `last`, at most `n`; `None` if the
    /// repository does not exist.
    pub fn list_tags(&self, repo: &str, n: u32, last: Option<&str>) -> Result<Option<Vec<String>>> {
        self.read(|c| {
            let Some(id) = repo_id(c, repo)? else {
                return Ok(None);
            };
            let mut q = c.prepare_cached(&tags_page_sql())?;
            let rows = q.query_map(params![id, last.unwrap_or(""), n], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map(Some)
        })
    }

    /// Repositories holding at least one manifest or blob, in lexical order after
    /// `last`, at most `n`.
    pub fn catalog(&self, n: u32, last: Option<&str>) -> Result<Vec<String>> {
        self.read(|c| {
            let mut q = c.prepare_cached(&catalog_page_sql())?;
            let rows = q.query_map(params![n, last.unwrap_or("")], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Manifests in `repo` whose `subject` is `subject`, optionally only those of
    /// `artifact_type`, oldest first.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRow>> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
                 FROM manifests m JOIN repositories r ON r.id = m.repo_id
                 WHERE r.name = ?1 AND m.subject = ?2 AND (?3 IS NULL OR m.artifact_type = ?3)
                 ORDER BY m.pushed_at, m.digest",
            )?;
            let rows = q.query_map(params![repo, subject.to_string(), artifact_type], |r| {
                Ok(ReferrerRow {
                    digest: parse_digest(r.get(0)?)?,
                    media_type: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    artifact_type: r.get(3)?,
                    annotations: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Record a new upload session for `repo`.
    pub fn create_upload(&self, id: UploadId, repo: &str) -> Result<()> {
        self.write(|tx| -> Result<()> {
            let rid = ensure_repo(tx, repo)?;
            tx.execute(
                "INSERT INTO uploads (id, repo_id, started_at) VALUES (?1, ?2, ?3)",
                params![id.to_string(), rid, now_secs()],
            )?;
            Ok(())
        })
    }

    /// An upload session, if it exists.
    pub fn upload(&self, id: UploadId) -> Result<Option<UploadSession>> {
        self.read(|c| {
            c.query_row(
                "SELECT r.name, u.started_at FROM uploads u JOIN repositories r ON r.id = u.repo_id
                 WHERE u.id = ?1",
                [id.to_string()],
                |r| {
                    Ok(UploadSession {
                        repo: r.get(0)?,
                        started_at: r.get(1)?,
                    })
                },
            )
            .optional()
        })
    }

    /// End an upload session; false if it did not exist.
    pub fn delete_upload(&self, id: UploadId) -> Result<bool> {
        self.write(|tx| -> Result<bool> {
            Ok(tx.execute("DELETE FROM uploads WHERE id = ?1", [id.to_string()])? > 0)
        })
    }

    /// Ids of all open upload sessions.
    pub fn upload_ids(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut q = c.prepare("SELECT id FROM uploads")?;
            let rows = q.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No tag is immutable.
    fn free(_: &str) -> Option<String> {
        None
    }

    fn db() -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().unwrap();
        let m = Metadata::open(&dir.path().join("meta.db")).unwrap();
        (dir, m)
    }

    fn record(content: &[u8], blobs: Vec<(Digest, u64)>) -> ManifestRecord {
        ManifestRecord {
            digest: Digest::sha256_of(content),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: content.to_vec(),
            subject: None,
            artifact_type: None,
            annotations: None,
            blobs,
            manifests: vec![],
        }
    }

    #[test]
    fn manifest_requires_linked_blobs() {
        let (_d, m) = db();
        let blob = Digest::sha256_of(b"layer");
        let rec = record(b"{}", vec![(blob.clone(), 5)]);
        match m.put_manifest("a", &rec, &["v1".to_string()], &free) {
            Err(PutManifestError::Missing(v)) => assert_eq!(v, vec![blob.clone()]),
            other => panic!("{other:?}"),
        }
        // Nothing was stored by the failed put.
        assert_eq!(m.resolve_tag("a", "v1").unwrap(), None);
        m.link_blob("a", &blob, 5, None, None).unwrap();
        // A descriptor size that disagrees with the stored blob is refused.
        let wrong = record(b"{}", vec![(blob.clone(), 6)]);
        assert!(matches!(
            m.put_manifest("a", &wrong, &[], &free),
            Err(PutManifestError::SizeMismatch {
                declared: 6,
                actual: 5,
                ..
            })
        ));
        m.put_manifest("a", &rec, &["v1".to_string()], &free)
            .unwrap();
        assert_eq!(m.resolve_tag("a", "v1").unwrap(), Some(rec.digest.clone()));
        let got = m.manifest("a", &rec.digest, true).unwrap().unwrap();
        assert_eq!(&got.content[..], b"{}");
        // A blob linked in another repository does not count.
        assert!(matches!(
            m.put_manifest("b", &rec, &[], &free),
            Err(PutManifestError::Missing(_))
        ));
    }

    #[test]
    fn tags_sorted_and_paged() {
        let (_d, m) = db();
        let rec = record(b"{}", vec![]);
        for t in ["b", "B", "a", "c", "A1"] {
            m.put_manifest("r", &rec, &[t.to_string()], &free).unwrap();
        }
        assert_eq!(
            m.list_tags("r", 100, None).unwrap().unwrap(),
            ["a", "A1", "B", "b", "c"]
        );
        assert_eq!(
            m.list_tags("r", 2, Some("A1")).unwrap().unwrap(),
            ["B", "b"]
        );
        assert_eq!(m.list_tags("r", 2, Some("B")).unwrap().unwrap(), ["b", "c"]);
        assert_eq!(m.list_tags("nope", 2, None).unwrap(), None);
    }

    /// A page deep in a long tag list seeks in the sorted index instead of
    /// scanning (or sorting) every tag before it: the plan is the contract.
    #[test]
    fn tag_and_catalog_pages_seek_in_the_sorted_indexes() {
        let (_d, m) = db();
        let plan = |sql: String, p: &[&dyn rusqlite::ToSql]| -> String {
            m.read(|c| {
                let mut q = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = q.query_map(p, |r| r.get::<_, String>(3))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap()
            .join("; ")
        };
        let tags = plan(tags_page_sql(), params![1, "t5", 10]);
        assert!(
            tags.contains("tags_sorted (repo_id=? AND name>?)"),
            "{tags}"
        );
        assert!(!tags.contains("TEMP B-TREE"), "{tags}");
        let repos = plan(catalog_page_sql(), params![10, "r5"]);
        assert!(repos.contains("repositories_sorted (name>?)"), "{repos}");
        assert!(!repos.contains("TEMP B-TREE"), "{repos}");
    }

    #[test]
    fn put_manifest_reports_previous_tag_digests() {
        let (_d, m) = db();
        let one = record(b"{\"a\":1}", vec![]);
        let two = record(b"{\"a\":2}", vec![]);
        let tags = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let got = m
            .put_manifest("r", &one, &tags(&["x", "y", "x"]), &free)
            .unwrap();
        assert_eq!(got, vec![("x".to_string(), None), ("y".to_string(), None)]);
        let got = m
            .put_manifest("r", &two, &tags(&["y", "z"]), &free)
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("y".to_string(), Some(one.digest.clone())),
                ("z".to_string(), None)
            ]
        );
        let got = m.put_manifest("r", &two, &tags(&["y"]), &free).unwrap();
        assert_eq!(got, vec![("y".to_string(), Some(two.digest.clone()))]);
        assert_eq!(m.delete_tag("r", "y").unwrap(), Some(two.digest.clone()));
        assert_eq!(m.delete_tag("r", "y").unwrap(), None);
        assert_eq!(m.delete_tag("nowhere", "y").unwrap(), None);
    }

    #[test]
    fn delete_manifest_removes_its_tags_only() {
        let (_d, m) = db();
        let one = record(b"{\"a\":1}", vec![]);
        let two = record(b"{\"a\":2}", vec![]);
        m.put_manifest("r", &one, &["x".to_string()], &free)
            .unwrap();
        m.put_manifest("r", &one, &["y".to_string()], &free)
            .unwrap();
        m.put_manifest("r", &two, &["z".to_string()], &free)
            .unwrap();
        assert!(m.delete_manifest("r", &one.digest, &free).unwrap() == Deleted::Yes);
        assert!(m.delete_manifest("r", &one.digest, &free).unwrap() == Deleted::NotFound);
        assert_eq!(m.list_tags("r", 10, None).unwrap().unwrap(), ["z"]);
        assert!(m.manifest("r", &one.digest, true).unwrap().is_none());
    }

    #[test]
    fn mount_needs_source_link() {
        let (_d, m) = db();
        let blob = Digest::sha256_of(b"x");
        assert_eq!(
            m.mount_blob("to", "from", &blob, None).unwrap(),
            Mounted::NotInSource
        );
        m.link_blob("from", &blob, 1, None, None).unwrap();
        assert_eq!(
            m.mount_blob("to", "from", &blob, None).unwrap(),
            Mounted::Yes(1)
        );
        assert_eq!(m.blob_in_repo("to", &blob).unwrap(), Some(1));
        assert!(m.unlink_blob("to", &blob).unwrap());
        assert_eq!(m.blob_in_repo("to", &blob).unwrap(), None);
        assert_eq!(m.blob_in_repo("from", &blob).unwrap(), Some(1));
    }

    #[test]
    fn upload_sessions_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let id = UploadId::new();
        {
            let m = Metadata::open(&path).unwrap();
            m.create_upload(id, "r").unwrap();
        }
        let m = Metadata::open(&path).unwrap();
        assert_eq!(m.upload(id).unwrap().unwrap().repo, "r");
        assert!(m.delete_upload(id).unwrap());
        assert!(m.upload(id).unwrap().is_none());
    }
}
