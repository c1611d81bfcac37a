//! Where an image is read from — a registry or an OCI image layout — with every
//! manifest verified against its digest and every blob streamed through a reader
//! that enforces the declared size and resumes a registry download that breaks
//! off (HTTP `Range`).

use std::io::Read;
use std::sync::Arc;

use berth_oci::digest::Digest;
use berth_oci::layout::Layout;
use berth_oci::manifest::Descriptor;
use berth_oci::name::Reference;
use berth_oci::reference::{ImageReference, Location};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::{ClientError, Result};
use crate::registry::{Client, FetchedManifest, Registry, manifest_media_type};
use crate::retry::RetryPolicy;

/// Bytes read from a layout blob at a time.
const FILE_CHUNK: usize = 1 << 20;

/// An image source.
pub enum Source {
    /// A repository in a registry.
    Registry {
        /// The registry.
        registry: Arc<Registry>,
        /// The reference given.
        reference: ImageReference,
    },
    /// An OCI image layout.
    Layout {
        /// The layout.
        layout: Layout,
        /// The `index.json` ref name, if given.
        tag: Option<String>,
    },
}

impl Source {
    /// Open `location` for reading (a layout must exist).
    pub fn open(client: &Client, location: &Location) -> Result<Source> {
        Ok(match location {
            Location::Registry(r) => Source::Registry {
                registry: client.registry(r.registry()),
                reference: r.clone(),
            },
            Location::Layout { dir, tag } => Source::Layout {
                layout: Layout::open(dir)?,
                tag: tag.clone(),
            },
        })
    }

    /// A human name for messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Registry { reference, .. } => reference.to_string(),
            Source::Layout { layout, tag } => match tag {
                Some(t) => format!("oci:{}:{t}", layout.root().display()),
                None => format!("oci:{}", layout.root().display()),
            },
        }
    }

    /// The top-level manifest the location names, verified, with the descriptor
    /// that points at it (from `index.json` for a layout, built for a registry).
    pub async fn top(&self) -> Result<(FetchedManifest, Value)> {
        match self {
            Source::Registry {
                registry,
                reference,
            } => {
                let repo = reference.repository().as_str();
                let m = registry
                    .get_manifest(repo, &reference.manifest_reference())
                    .await?;
                let desc = json!({"mediaType": m.media_type, "digest": m.digest.to_string(), "size": m.bytes.len()});
                Ok((m, desc))
            }
            Source::Layout { layout, tag } => {
                let entry = layout.resolve(tag.as_deref()).map_err(|e| match e {
                    berth_oci::layout::LayoutError::RefNotFound(m) => ClientError::NotFound(m),
                    other => ClientError::Layout(other),
                })?;
                let m = self.manifest(&entry.descriptor).await?;
                let mut raw = entry.raw.clone();
                if let Some(a) = raw.get_mut("annotations").and_then(Value::as_object_mut) {
                    a.remove(berth_oci::layout::REF_NAME);
                    if a.is_empty() {
                        raw.as_object_mut().map(|o| o.remove("annotations"));
                    }
                }
                Ok((m, raw))
            }
        }
    }

    /// The manifest `desc` points at, verified against its digest and size.
    pub async fn manifest(&self, desc: &Descriptor) -> Result<FetchedManifest> {
        let what = format!("manifest {} in {}", desc.digest, self.describe());
        let m = match self {
            Source::Registry {
                registry,
                reference,
            } => {
                registry
                    .get_manifest(
                        reference.repository().as_str(),
                        &Reference::Digest(desc.digest.clone()),
                    )
                    .await?
            }
            Source::Layout { layout, .. } => {
                let bytes =
                    tokio::task::block_in_place(|| layout.read_verified(&desc.digest, None))
                        .map_err(|e| ClientError::from_layout(&what, e))?;
                let media_type = manifest_media_type(&bytes, Some(&desc.media_type), &what)?;
                FetchedManifest {
                    bytes: Bytes::from(bytes),
                    media_type,
                    digest: desc.digest.clone(),
                }
            }
        };
        if m.bytes.len() as u64 != desc.size {
            return Err(ClientError::SizeMismatch {
                what,
                expected: desc.size,
                actual: m.bytes.len() as u64,
            });
        }
        Ok(m)
    }

    /// The repository, when the source is a registry.
    pub fn registry_repo(&self) -> Option<(&Arc<Registry>, &str)> {
        match self {
            Source::Registry {
                registry,
                reference,
            } => Some((registry, reference.repository().as_str())),
            Source::Layout { .. } => None,
        }
    }

    /// Start reading blob `desc`.
    pub async fn blob(&self, desc: &Descriptor, retry: RetryPolicy) -> Result<BlobReader> {
        let inner = match self {
            Source::Registry {
                registry,
                reference,
            } => Inner::Http {
                registry: registry.clone(),
                repo: reference.repository().as_str().to_owned(),
                resp: None,
                delivered: 0,
                skip: 0,
                retry,
                failures: 0,
            },
            Source::Layout { layout, .. } => Inner::File(
                layout
                    .open_blob(&desc.digest)
                    .map_err(|e| ClientError::from_layout(&format!("blob {}", desc.digest), e))?,
            ),
        };
        Ok(BlobReader {
            inner,
            digest: desc.digest.clone(),
            size: desc.size,
            read: 0,
        })
    }

    /// A small blob (a config) read whole and verified.
    pub async fn small_blob(&self, desc: &Descriptor, retry: RetryPolicy) -> Result<Bytes> {
        if desc.size > crate::registry::MAX_MANIFEST_BYTES as u64 {
            return Err(ClientError::Protocol(format!(
                "blob {} is {} bytes, too large to read whole",
                desc.digest, desc.size
            )));
        }
        let mut r = self.blob(desc, retry).await?;
        let mut buf = Vec::with_capacity(desc.size as usize);
        let mut digester = berth_oci::digest::Digester::new(desc.digest.algorithm());
        while let Some(c) = r.next().await? {
            digester.update(&c);
            buf.extend_from_slice(&c);
        }
        let actual = digester.finish();
        if actual != desc.digest {
            return Err(ClientError::DigestMismatch {
                what: format!("blob in {}", self.describe()),
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(Bytes::from(buf))
    }
}

enum Inner {
    File(std::fs::File),
    Http {
        registry: Arc<Registry>,
        repo: String,
        resp: Option<Box<reqwest::Response>>,
        /// Bytes handed out so far.
        delivered: u64,
        /// Bytes still to drop from the current response (a restart from 0).
        skip: u64,
        retry: RetryPolicy,
        /// Failures since the last byte arrived.
        failures: u32,
    },
}

/// A blob being read: yields chunks, never more than the declared size, and an
/// error if the content ends early. Digest verification is the consumer's (it
/// hashes what it writes).
pub struct BlobReader {
    inner: Inner,
    digest: Digest,
    size: u64,
    read: u64,
}

impl BlobReader {
    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The next chunk, or `None` at the end (after exactly the declared size).
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        let chunk = match &mut self.inner {
            Inner::File(f) => {
                let mut buf = vec![0u8; FILE_CHUNK];
                let n = tokio::task::block_in_place(|| f.read(&mut buf)).map_err(|e| {
                    ClientError::Io {
                        op: format!("reading blob {}", self.digest),
                        source: e,
                    }
                })?;
                buf.truncate(n);
                (n > 0).then(|| Bytes::from(buf))
            }
            Inner::Http { .. } => self.next_http().await?,
        };
        match chunk {
            Some(c) => {
                self.read += c.len() as u64;
                if self.read > self.size {
                    return Err(ClientError::SizeMismatch {
                        what: format!("blob {}", self.digest),
                        expected: self.size,
                        actual: self.read,
                    });
                }
                Ok(Some(c))
            }
            None if self.read < self.size => Err(ClientError::SizeMismatch {
                what: format!("blob {} (content ended early)", self.digest),
                expected: self.size,
                actual: self.read,
            }),
            None => Ok(None),
        }
    }

    async fn next_http(&mut self) -> Result<Option<Bytes>> {
        let Inner::Http {
            registry,
            repo,
            resp,
            delivered,
            skip,
            retry,
            failures,
        } = &mut self.inner
        else {
            return Ok(None);
        };
        loop {
            if resp.is_none() {
                let (r, ranged) = registry.get_blob(repo, &self.digest, *delivered).await?;
                *skip = if ranged { 0 } else { *delivered };
                *resp = Some(Box::new(r));
            }
            let Some(r) = resp.as_mut() else { continue };
            match r.chunk().await {
                Ok(Some(mut c)) => {
                    if *skip > 0 {
                        let drop_n = (*skip).min(c.len() as u64) as usize;
                        *skip -= drop_n as u64;
                        c = c.slice(drop_n..);
                        if c.is_empty() {
                            continue;
                        }
                    }
                    // Only new bytes count as progress: a registry that ignores
                    // `Range` and breaks off at the same place every time must
                    // still run out of retries.
                    *failures = 0;
                    *delivered += c.len() as u64;
                    return Ok(Some(c));
                }
                Ok(None) if *delivered < self.size && *skip == 0 && *failures < retry.retries => {
                    // Ended early without an error: treat like a broken connection.
                    *failures += 1;
                    *resp = None;
                    tokio::time::sleep(retry.delay(*failures, None)).await;
                }
                Ok(None) => return Ok(None),
                Err(e) if *failures < retry.retries => {
                    tracing::debug!(digest = %self.digest, at = *delivered, error = %e, "blob download broke off; resuming");
                    *failures += 1;
                    *resp = None;
                    tokio::time::sleep(retry.delay(*failures, None)).await;
                }
                Err(e) => {
                    return Err(ClientError::Http {
                        op: format!(
                            "fetching blob {} from {}/{repo} ({} of {} bytes received)",
                            self.digest,
                            registry.host(),
                            delivered,
                            self.size
                        ),
                        source: e,
                    });
                }
            }
        }
    }
}
