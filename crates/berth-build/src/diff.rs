//! Explaining why two images differ — what `berth diff REF1 REF2` reports when a
//! rebuild is not reproducible.
//!
//! Everything here is pure over data the caller fetched: [`diff_images`] compares two
//! manifests and configs (a structural diff reported by JSON pointer) and aligns their
//! layers by position; [`diff_layers`] then streams two layer blobs and compares them
//! entry by entry (content hash, mode, owner, mtime, link target, type, xattrs), also
//! telling apart "same tar, different compression" and "same entries, different
//! order". Every result is [`Serialize`] for `-o json` and has a `render` for text.

mod json;
mod tarball;

use std::collections::HashMap;
use std::io::Read;

use berth_oci::Digest;
use serde::Serialize;
use serde_json::Value;

pub use tarball::{
    Compression, DEFAULT_MAX_ENTRIES, DiffError, LayerDiff, LayerSummary, Side,
    diff_layers_with_limit,
};

/// One image, as the caller fetched it.
#[derive(Debug, Clone)]
pub struct ImageData {
    /// The digest of the manifest bytes.
    pub manifest_digest: Digest,
    /// The image manifest (OCI or Docker schema 2), parsed.
    pub manifest: Value,
    /// The image config, parsed.
    pub config: Value,
}

/// One differing value, at a JSON pointer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// JSON pointer (RFC 6901) of the value, such as `/config/Env/2`.
    pub path: String,
    /// The left value; `None` when absent on the left.
    pub left: Option<Value>,
    /// The right value; `None` when absent on the right.
    pub right: Option<Value>,
}

/// A layer descriptor from a manifest, with its diff_id from the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerInfo {
    /// The descriptor's `digest`, `None` if missing or malformed.
    pub digest: Option<Digest>,
    /// The descriptor's `mediaType`.
    pub media_type: Option<String>,
    /// The descriptor's `size`.
    pub size: Option<u64>,
    /// The config's `rootfs.diff_ids` entry at the same position.
    pub diff_id: Option<Digest>,
}

/// Two images' layers at one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LayerPair {
    /// The same blob on both sides.
    Same {
        /// Position in the manifests' `layers`.
        index: usize,
        /// The common digest.
        digest: Digest,
    },
    /// Different blobs; compare their contents with [`diff_layers`].
    Different {
        /// Position in the manifests' `layers`.
        index: usize,
        /// The left layer.
        left: LayerInfo,
        /// The right layer.
        right: LayerInfo,
        /// Whether the configs give both the same diff_id: the uncompressed content is
        /// identical and only the compression differs.
        same_content: bool,
    },
    /// A layer only the left image has.
    OnlyLeft {
        /// Position in the left manifest's `layers`.
        index: usize,
        /// The layer.
        layer: LayerInfo,
    },
    /// A layer only the right image has.
    OnlyRight {
        /// Position in the right manifest's `layers`.
        index: usize,
        /// The layer.
        layer: LayerInfo,
    },
}

/// Differences between two images at the manifest and config level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageDiff {
    /// Whether the manifest digests are equal (the images are identical).
    pub same: bool,
    /// The left manifest digest.
    pub left_digest: Digest,
    /// The right manifest digest.
    pub right_digest: Digest,
    /// Manifest differences (media types, annotations, the config descriptor, layer
    /// descriptor fields other than digest and size), by JSON pointer.
    pub manifest: Vec<Change>,
    /// Config differences by JSON pointer (`/config/Env/1`, `/created`,
    /// `/history/3/created_by`, `/rootfs/diff_ids/2`, …).
    pub config: Vec<Change>,
    /// The layers, aligned by position.
    pub layers: Vec<LayerPair>,
}

/// Compares the contents of two layer blobs, each given as `(media type, reader of the
/// blob as stored)`, streaming both and keeping only per-path metadata; at most
/// [`DEFAULT_MAX_ENTRIES`] entries per layer.
pub fn diff_layers<R1: Read, R2: Read>(
    left: (&str, R1),
    right: (&str, R2),
) -> Result<LayerDiff, DiffError> {
    diff_layers_with_limit(left, right, DEFAULT_MAX_ENTRIES)
}

/// The layers of a manifest, with diff_ids from the config.
fn layer_infos(image: &ImageData) -> Vec<LayerInfo> {
    let diff_ids = image
        .config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array);
    let Some(layers) = image.manifest.get("layers").and_then(Value::as_array) else {
        return Vec::new();
    };
    layers
        .iter()
        .enumerate()
        .map(|(i, d)| LayerInfo {
            digest: d
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok()),
            media_type: d
                .get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_owned),
            size: d.get("size").and_then(Value::as_u64),
            diff_id: diff_ids
                .and_then(|ids| ids.get(i))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok()),
        })
        .collect()
}

/// Whether a manifest pointer is left to [`ImageDiff::layers`]: a layer's digest and
/// size, or a whole layer present on one side only.
fn layer_covered(path: &str, one_sided: bool) -> bool {
    let Some(rest) = path.strip_prefix("/layers/") else {
        return false;
    };
    let mut parts = rest.splitn(2, '/');
    let index_ok = parts
        .next()
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    match parts.next() {
        None => index_ok && one_sided,
        Some(field) => index_ok && (field == "digest" || field == "size"),
    }
}

/// Compares two images' manifests and configs and aligns their layers by position.
pub fn diff_images(a: &ImageData, b: &ImageData) -> ImageDiff {
    let mut manifest = Vec::new();
    json::diff_values(
        "",
        Some(&a.manifest),
        Some(&b.manifest),
        &layer_covered,
        &mut manifest,
    );
    let mut config = Vec::new();
    json::diff_values(
        "",
        Some(&a.config),
        Some(&b.config),
        &|_, _| false,
        &mut config,
    );

    let (la, lb) = (layer_infos(a), layer_infos(b));
    let mut layers = Vec::new();
    for index in 0..la.len().max(lb.len()) {
        layers.push(match (la.get(index), lb.get(index)) {
            (Some(l), Some(r)) => match (&l.digest, &r.digest) {
                (Some(dl), Some(dr)) if dl == dr => LayerPair::Same {
                    index,
                    digest: dl.clone(),
                },
                _ => LayerPair::Different {
                    index,
                    same_content: l.diff_id.is_some() && l.diff_id == r.diff_id,
                    left: l.clone(),
                    right: r.clone(),
                },
            },
            (Some(l), None) => LayerPair::OnlyLeft {
                index,
                layer: l.clone(),
            },
            (None, Some(r)) => LayerPair::OnlyRight {
                index,
                layer: r.clone(),
            },
            (None, None) => continue,
        });
    }

    ImageDiff {
        same: a.manifest_digest == b.manifest_digest,
        left_digest: a.manifest_digest.clone(),
        right_digest: b.manifest_digest.clone(),
        manifest,
        config,
        layers,
    }
}

/// A JSON value for a report line: compact, `(absent)` for none, long values cut.
fn show(v: Option<&Value>) -> String {
    const MAX: usize = 160;
    let Some(v) = v else {
        return "(absent)".to_owned();
    };
    let s = v.to_string();
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// A layer for a report line.
fn show_layer(l: &LayerInfo) -> String {
    let digest = l
        .digest
        .as_ref()
        .map_or_else(|| "(no valid digest)".to_owned(), ToString::to_string);
    let mut extra = Vec::new();
    if let Some(mt) = &l.media_type {
        extra.push(mt.clone());
    }
    if let Some(size) = l.size {
        extra.push(format!("{size} bytes"));
    }
    if extra.is_empty() {
        digest
    } else {
        format!("{digest} ({})", extra.join(", "))
    }
}

impl ImageDiff {
    /// A human-readable report, ending with a newline: the differing manifest and config
    /// fields, the layer alignment, and hints at the likely cause.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.same {
            s.push_str(&format!(
                "the images are identical (manifest {})\n",
                self.left_digest
            ));
            return s;
        }
        s.push_str(&format!(
            "manifests differ: {} → {}\n",
            self.left_digest, self.right_digest
        ));
        for (title, changes) in [("manifest", &self.manifest), ("config", &self.config)] {
            if changes.is_empty() {
                s.push_str(&format!("{title}: no differences\n"));
                continue;
            }
            s.push_str(&format!("{title}: {} difference(s)\n", changes.len()));
            for c in changes {
                s.push_str(&format!(
                    "  {}: {} → {}\n",
                    c.path,
                    show(c.left.as_ref()),
                    show(c.right.as_ref())
                ));
            }
        }

        s.push_str("layers:\n");
        let mut hints = Vec::new();
        for pair in &self.layers {
            match pair {
                LayerPair::Same { index, digest } => {
                    s.push_str(&format!("  = #{index} {digest}\n"));
                }
                LayerPair::Different {
                    index,
                    left,
                    right,
                    same_content,
                } => {
                    s.push_str(&format!(
                        "  ≠ #{index} {} → {}\n",
                        show_layer(left),
                        show_layer(right)
                    ));
                    if *same_content {
                        s.push_str("      same content (same diff_id), different compression\n");
                    } else {
                        s.push_str("      contents differ; compare the layers entry by entry\n");
                    }
                }
                LayerPair::OnlyLeft { index, layer } => {
                    s.push_str(&format!(
                        "  - #{index} only in left: {}\n",
                        show_layer(layer)
                    ));
                }
                LayerPair::OnlyRight { index, layer } => {
                    s.push_str(&format!(
                        "  + #{index} only in right: {}\n",
                        show_layer(layer)
                    ));
                }
            }
        }
        if self.layers.is_empty() {
            s.push_str("  (none)\n");
        }

        // Layers that moved: the same blob at another position.
        let mut left_at: HashMap<&Digest, usize> = HashMap::new();
        for pair in &self.layers {
            if let LayerPair::Different { index, left, .. }
            | LayerPair::OnlyLeft { index, layer: left } = pair
                && let Some(d) = &left.digest
            {
                left_at.entry(d).or_insert(*index);
            }
        }
        for pair in &self.layers {
            if let LayerPair::Different { index, right, .. }
            | LayerPair::OnlyRight {
                index,
                layer: right,
            } = pair
                && let Some(d) = &right.digest
                && let Some(from) = left_at.get(d)
            {
                hints.push(format!(
                    "layer #{index} on the right is layer #{from} on the left: layers were \
                     inserted, removed or reordered"
                ));
            }
        }
        let time_paths = self.config.iter().filter(|c| {
            c.path == "/created"
                || (c.path.starts_with("/history/") && c.path.ends_with("/created"))
        });
        if time_paths.count() > 0 {
            hints.push(
                "creation timestamps differ: set SOURCE_DATE_EPOCH (or a fixed created time) \
                 for reproducible builds"
                    .to_owned(),
            );
        }
        if self.layers.iter().any(|p| {
            matches!(
                p,
                LayerPair::Different {
                    same_content: true,
                    ..
                }
            )
        }) {
            hints.push(
                "some layers hold the same tar but were compressed differently: pin the \
                 compressor and its level"
                    .to_owned(),
            );
        }
        for h in hints {
            s.push_str(&format!("hint: {h}\n"));
        }
        s
    }
}
