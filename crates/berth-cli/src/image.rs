//! Reading one image from a registry or a layout: the manifest the reference names
//! (for an index, the one for the wanted platform, by default the host's), its
//! config and its layer descriptors. Shared by `sbom`, `unpack`, `run`, `build` and
//! `diff`.

use berth_client::platform::Platform;
use berth_client::registry::FetchedManifest;
use berth_client::source::Source;
use berth_client::{Client, ClientError};
use berth_oci::digest::Digest;
use berth_oci::manifest::{self, Descriptor};
use berth_oci::media_type;
use bytes::Bytes;
use serde_json::Value;

use crate::client::{Failure, Res};

fn invalid(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Client(ClientError::InvalidManifest {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// The image manifest `source` names: itself, or for an index the entry for
/// `platform` (default: the host's). `what` names the source in errors.
pub async fn platform_manifest(
    source: &Source,
    platform: Option<&Platform>,
    what: &str,
) -> Res<FetchedManifest> {
    let (m, _) = source.top().await?;
    if !media_type::is_index(&m.media_type) {
        return Ok(m);
    }
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let index: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let i = berth_client::platform::select(&index, &wanted).map_err(|available| {
        ClientError::PlatformNotFound {
            reference: what.to_owned(),
            wanted: wanted.to_string(),
            available,
        }
    })?;
    let desc = manifest::parse_descriptor(&index["manifests"][i], "manifests")
        .map_err(|e| invalid(what, e))?;
    Ok(source.manifest(&desc).await?)
}

/// An image manifest with its config and layers.
pub struct Image {
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest as JSON.
    pub manifest: Value,
    /// The config's descriptor.
    pub config_desc: Descriptor,
    /// The config's exact bytes (verified).
    pub config_bytes: Bytes,
    /// The config as JSON.
    pub config: Value,
    /// The layers, in order.
    pub layers: Vec<Descriptor>,
}

/// Fetch the image `source` names (see [`platform_manifest`]) with its config.
pub async fn fetch_image(
    client: &Client,
    source: &Source,
    platform: Option<&Platform>,
    what: &str,
) -> Res<Image> {
    let m = platform_manifest(source, platform, what).await?;
    let body: Value = serde_json::from_slice(&m.bytes).map_err(|e| invalid(what, e))?;
    let config_desc =
        manifest::parse_descriptor(&body["config"], "config").map_err(|e| invalid(what, e))?;
    let layers = body["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, l)| manifest::parse_descriptor(l, &format!("layers[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| invalid(what, e))?
        .unwrap_or_default();
    let config_bytes = source
        .small_blob(&config_desc, client.retry_policy())
        .await?;
    let config: Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| invalid(&format!("config of {what}"), e))?;
    Ok(Image {
        digest: m.digest,
        manifest: body,
        config_desc,
        config_bytes,
        config,
        layers,
    })
}
