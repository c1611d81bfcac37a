//! `tags`: `GET /v2/<repo>/tags/list?n=<page>` requests per second.
//!
//! Setup makes sure the repository has `--tags` tags (`t000000`, `t000001`, … on
//! the small image, put by `-c` workers) unless it already has that many. Each
//! measured request must answer 200 with at least `min(page, tags)` tags. A
//! registry that ignores `n` and returns more than `page` tags is tolerated (it is
//! a spec violation, but counting it as an error would make the comparison
//! useless): the report's `note` says so. With `--all-pages`, a measured request
//! follows `Link` headers to the end and must see at least `--tags` tags.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::error::BenchError;
use crate::http::{Conn, collect, describe_status};
use crate::oci::{self, count_tags_in, next_link};
use crate::options::Options;
use crate::report::{Outcome, Report};
use crate::runner::{OpResult, Worker, run_iterations, run_timed};

use super::{small_image, uri};

/// The name of tag number `i`.
pub fn tag_name(i: u64) -> String {
    format!("t{i:06}")
}

/// Puts a manifest under tag number `index` (setup of tags and seed).
pub struct TagWorker {
    /// Repositories, one after the other, `tags` tags each.
    pub repos: Arc<Vec<String>>,
    /// Tags per repository.
    pub tags: u64,
    /// The manifest.
    pub manifest: Bytes,
    /// The kind number its operations are recorded under.
    pub kind: usize,
}

impl Worker for TagWorker {
    type Op = (usize, u64);

    fn prepare(&mut self, index: u64) -> (usize, (usize, u64)) {
        (self.kind, ((index / self.tags) as usize, index % self.tags))
    }

    async fn run(&mut self, conn: &mut Conn, (repo, tag): (usize, u64)) -> OpResult {
        let repo = self
            .repos
            .get(repo)
            .ok_or_else(|| format!("no repository number {repo}"))?;
        oci::put_manifest(conn, repo, &tag_name(tag), &self.manifest)
            .await
            .map(|()| self.manifest.len() as u64)
            .map_err(|f| f.sample())
    }
}

struct TagsWorker {
    path: String,
    expected: u64,
    page: u64,
    all_pages: bool,
    /// Most tags seen in one response.
    most: Arc<AtomicU64>,
}

impl TagsWorker {
    async fn page(
        &self,
        conn: &mut Conn,
        path: &str,
    ) -> Result<(u64, Bytes, Option<String>), String> {
        let fail = |p: String| format!("GET tags/list: {p}");
        let req = conn
            .target()
            .bodyless(Method::GET, path)
            .map_err(|e| fail(e.to_string()))?;
        let resp = conn.send(req).await.map_err(|e| fail(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = collect(body).await.map_err(|e| fail(e.to_string()))?;
        if parts.status != StatusCode::OK {
            return Err(fail(describe_status(parts.status, &body)));
        }
        let count = count_tags_in(&body).map_err(fail)? as u64;
        self.most.fetch_max(count, Ordering::Relaxed);
        let next = next_link(&parts.headers).and_then(|l| conn.target().resolve_location(path, &l));
        Ok((count, body, next))
    }
}

impl Worker for TagsWorker {
    type Op = ();

    fn prepare(&mut self, _index: u64) -> (usize, ()) {
        (0, ())
    }

    async fn run(&mut self, conn: &mut Conn, (): ()) -> OpResult {
        let (mut count, body, mut next) = self.page(conn, &self.path).await?;
        let mut bytes = body.len() as u64;
        if !self.all_pages {
            if count < self.expected {
                return Err(format!(
                    "GET tags/list: {count} tags for n={}, expected {}",
                    self.page, self.expected
                ));
            }
            return Ok(bytes);
        }
        let mut pages = 1u64;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > 1_000_000 {
                return Err("GET tags/list: more than a million pages".to_owned());
            }
            let (c, body, n) = self.page(conn, &path).await?;
            count += c;
            bytes += body.len() as u64;
            next = n;
        }
        if count < self.expected {
            return Err(format!(
                "GET tags/list: {count} tags in all pages, expected {}",
                self.expected
            ));
        }
        Ok(bytes)
    }
}

/// Run `tags`.
pub async fn run(opts: &Options) -> Result<Outcome, BenchError> {
    let image = small_image();
    let mut notes = Vec::new();
    let mut conn = Conn::new(opts.target.clone());
    let tags = u64::from(opts.tags);
    let have = oci::count_tags(&mut conn, &opts.repo).await?;
    if have < tags {
        // Upload notes are about the setup, not about what is measured.
        let mode = super::probe(&mut conn, &opts.repo, &mut Vec::new()).await?;
        oci::ensure_image(&mut conn, &opts.repo, &image, &tag_name(0), mode).await?;
        let repos = Arc::new(vec![opts.repo.clone()]);
        let workers = (0..opts.concurrency)
            .map(|_| TagWorker {
                repos: repos.clone(),
                tags,
                manifest: image.manifest.clone(),
                kind: 0,
            })
            .collect();
        let done = run_iterations(&opts.target, workers, 1, 0, tags, opts.op_timeout).await?;
        if let Some(r) = done.recorders.iter().find(|r| r.errors > 0) {
            return Err(BenchError::Setup {
                request: format!("PUT /v2/{}/manifests/t…", opts.repo),
                problem: format!(
                    "{} of {tags} tag pushes failed: {}",
                    r.errors,
                    r.error_samples.join("; ")
                ),
            });
        }
    }
    let page = u64::from(opts.page);
    let path = format!("/v2/{}/tags/list?n={page}", opts.repo);
    uri(&path)?;
    let most = Arc::new(AtomicU64::new(0));
    let expected = if opts.all_pages { tags } else { page.min(tags) };
    let workers = (0..opts.concurrency)
        .map(|_| TagsWorker {
            path: path.clone(),
            expected,
            page,
            all_pages: opts.all_pages,
            most: most.clone(),
        })
        .collect();
    let measured = run_timed(&opts.target, workers, 1, super::manifest::timing(opts)).await?;
    let most = most.load(Ordering::Relaxed);
    if most > page {
        notes.push(format!(
            "the registry ignored n={page}: it returned up to {most} tags in one response"
        ));
    }
    let what = if opts.all_pages {
        format!("GET {path} and every Link after it (at least {tags} tags in all)")
    } else {
        format!("GET {path} (200, at least {expected} tags)")
    };
    let mut info = super::info(opts, what);
    info.notes = notes;
    Ok(Outcome::Run(Box::new(Report::new(
        info,
        measured,
        &["tags"],
    ))))
}
