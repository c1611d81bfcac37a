//! Generated content: random bytes from a fast RNG, blobs with many cheap
//! variants ([`VariedBlob`]), and the small image (config, one layer, manifest)
//! the manifest, tags, mixed and seed scenarios use ([`Image`]).

use std::ops::Range;

use berth_oci::media_type;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Request bodies are sent in slices of this many bytes (one frame each).
pub const SLICE: usize = 1 << 20;

/// Media type of generated layers.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// `len` random bytes: reproducible for a given `seed` (so a later run finds a
/// blob it pushed before), fresh otherwise.
pub fn random_bytes(len: usize, seed: Option<u64>) -> Bytes {
    let mut rng = match seed {
        Some(s) => SmallRng::seed_from_u64(s),
        None => SmallRng::from_os_rng(),
    };
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    Bytes::from(v)
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// `sha256:<hex>` of what `hasher` has seen.
pub fn finish_digest(hasher: Sha256) -> String {
    format!("sha256:{:x}", hasher.finalize())
}

/// A random blob of a fixed size with any number of variants, which differ only in
/// their last (up to) 8 bytes. All variants share one buffer, so a variant's body
/// costs no memory and no copy, and its digest costs one hash of the blob up front
/// plus a few bytes per variant: the SHA-256 state after the shared prefix is
/// kept. (Varying the first bytes instead would mean hashing the whole blob again
/// for every variant.)
#[derive(Debug, Clone)]
pub struct VariedBlob {
    base: Bytes,
    prefix_state: Sha256,
    hashed: usize,
    tail_len: usize,
    nonce: u64,
}

impl VariedBlob {
    /// A blob of `size` bytes; variants are numbered from `nonce`.
    pub fn new(size: usize, seed: Option<u64>, nonce: u64) -> VariedBlob {
        let tail_len = size.min(8);
        let base = random_bytes(size - tail_len, seed);
        let hashed = base.len() - base.len() % 64;
        let mut prefix_state = Sha256::new();
        prefix_state.update(&base[..hashed]);
        VariedBlob {
            base,
            prefix_state,
            hashed,
            tail_len,
            nonce,
        }
    }

    /// Size of every variant.
    pub fn size(&self) -> u64 {
        (self.base.len() + self.tail_len) as u64
    }

    fn tail(&self, variant: u64) -> Bytes {
        let bytes = self.nonce.wrapping_add(variant).to_le_bytes();
        Bytes::copy_from_slice(&bytes[..self.tail_len])
    }

    /// The digest of variant `variant`.
    pub fn digest(&self, variant: u64) -> String {
        let mut h = self.prefix_state.clone();
        h.update(&self.base[self.hashed..]);
        h.update(self.tail(variant));
        finish_digest(h)
    }

    /// The bytes `range` of variant `variant`, as slices of at most [`SLICE`]
    /// bytes that share the blob's buffer.
    pub fn parts(&self, variant: u64, range: Range<u64>) -> Vec<Bytes> {
        let base_len = self.base.len() as u64;
        let end = range.end.min(self.size());
        let mut parts = Vec::new();
        let mut at = range.start;
        while at < end.min(base_len) {
            let stop = (at + SLICE as u64).min(end.min(base_len));
            parts.push(self.base.slice(at as usize..stop as usize));
            at = stop;
        }
        if end > base_len {
            let from = range.start.max(base_len) - base_len;
            let to = end - base_len;
            parts.push(self.tail(variant).slice(from as usize..to as usize));
        }
        parts
    }

    /// Variant `variant`, whole, copied into one buffer (for tests and checks).
    pub fn to_vec(&self, variant: u64) -> Vec<u8> {
        self.parts(variant, 0..self.size())
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect()
    }
}

/// Slices of at most [`SLICE`] bytes of `bytes` (shared, not copied).
pub fn slices(bytes: &Bytes) -> Vec<Bytes> {
    (0..bytes.len())
        .step_by(SLICE)
        .map(|at| bytes.slice(at..(at + SLICE).min(bytes.len())))
        .collect()
}

/// The OCI empty JSON blob `{}`, which every registry accepts and many already have.
pub const EMPTY_JSON: &[u8] = b"{}";

/// A single-platform image with one layer: what the manifest, tags, mixed and seed
/// scenarios push and read.
#[derive(Debug, Clone)]
pub struct Image {
    /// Config JSON.
    pub config: Bytes,
    /// Its digest.
    pub config_digest: String,
    /// The layer.
    pub layer: Bytes,
    /// Its digest.
    pub layer_digest: String,
    /// The OCI image manifest.
    pub manifest: Bytes,
    /// Its digest.
    pub manifest_digest: String,
}

impl Image {
    /// An image whose one layer is `layer`; `label` goes into the config.
    pub fn new(layer: Bytes, label: &str) -> Image {
        let layer_digest = sha256_digest(&layer);
        let config = Bytes::from(
            json!({
                "architecture": "amd64",
                "os": "linux",
                "config": { "Labels": { "org.example.berth-bench": label } },
                "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            })
            .to_string(),
        );
        let config_digest = sha256_digest(&config);
        let manifest = manifest_json(
            &config_digest,
            config.len() as u64,
            &layer_digest,
            layer.len() as u64,
        );
        let manifest_digest = sha256_digest(&manifest);
        Image {
            config,
            config_digest,
            layer,
            layer_digest,
            manifest,
            manifest_digest,
        }
    }
}

/// The bytes of an OCI image manifest with one config and one layer.
pub fn manifest_json(
    config_digest: &str,
    config_size: u64,
    layer_digest: &str,
    layer_size: u64,
) -> Bytes {
    Bytes::from(
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {
                "mediaType": media_type::OCI_CONFIG,
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": layer_digest,
                "size": layer_size,
            }],
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_and_digests_match_their_bytes() {
        for size in [0usize, 3, 8, 63, 64, 65, 1000, SLICE + 100] {
            let blob = VariedBlob::new(size, Some(7), 42);
            assert_eq!(blob.size(), size as u64);
            let a = blob.to_vec(0);
            let b = blob.to_vec(1);
            assert_eq!(a.len(), size);
            assert_eq!(blob.digest(0), sha256_digest(&a), "size {size}");
            assert_eq!(blob.digest(1), sha256_digest(&b), "size {size}");
            if size > 0 {
                assert_ne!(blob.digest(0), blob.digest(1));
            }
        }
    }

    #[test]
    fn parts_of_ranges_concatenate_to_the_blob() {
        let blob = VariedBlob::new(SLICE * 2 + 5, None, 1);
        let whole = blob.to_vec(3);
        let parts = blob.parts(3, 0..blob.size());
        assert!(parts.iter().all(|p| p.len() <= SLICE));
        for range in [
            0..10,
            10..(SLICE as u64 * 2 + 1),
            (SLICE as u64 * 2)..(SLICE as u64 * 2 + 5),
        ] {
            let got: Vec<u8> = blob
                .parts(3, range.clone())
                .iter()
                .flat_map(|b| b.iter().copied())
                .collect();
            assert_eq!(got, whole[range.start as usize..range.end as usize]);
        }
    }

    #[test]
    fn seeded_bytes_repeat_and_slices_cover() {
        assert_eq!(random_bytes(100, Some(1)), random_bytes(100, Some(1)));
        assert_ne!(random_bytes(100, None), random_bytes(100, None));
        let b = random_bytes(SLICE * 2 + 1, Some(2));
        let s = slices(&b);
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().map(Bytes::len).sum::<usize>(), b.len());
    }

    #[test]
    fn image_references_its_blobs() {
        let img = Image::new(random_bytes(1024, Some(3)), "t");
        let m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap_or_default();
        assert_eq!(m["layers"][0]["digest"], img.layer_digest.as_str());
        assert_eq!(m["config"]["size"], img.config.len());
        assert_eq!(img.manifest_digest, sha256_digest(&img.manifest));
    }
}
