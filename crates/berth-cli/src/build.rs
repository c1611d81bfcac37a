//! `berth build` (a reproducible image from directories on a base, into a registry
//! or a layout) and `berth diff` (why two images differ). Layers, configs,
//! provenance and the comparison live in `berth-build`; this module fetches the
//! base, stages the image in a temporary OCI layout and copies it to its
//! destination with `berth-client`'s transfer (so pushes get HEAD-skips, mounts and
//! resumable uploads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_build::diff::{self as bdiff, ImageData, LayerPair};
use berth_build::image::{ImageSpec, compose};
use berth_build::layer::{BuiltLayer, Compression, LayerOptions, build_layer};
use berth_client::platform::Platform;
use berth_client::source::Source;
use berth_client::{Client, ClientError};
use berth_oci::layout::Layout;
use berth_oci::manifest::Descriptor;
use berth_oci::media_type;
use berth_oci::reference::Location;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::client::{ClientArgs, Failure, Output, Res, location, print_json};

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// gzip, fixed settings.
    Gzip,
    /// zstd, fixed settings.
    Zstd,
    /// None.
    None,
}

/// Options of `berth build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Base image (registry reference or oci:DIR[:TAG]), or `scratch`.
    #[arg(long, value_name = "BASE")]
    pub from: String,
    /// A directory to add as one layer, at DEST in the image (default /); repeatable,
    /// in order.
    #[arg(long = "layer", value_name = "DIR[:DEST]")]
    pub layers: Vec<String>,
    /// Entrypoint: a JSON array, or one word.
    #[arg(long, value_name = "JSON|WORD", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Cmd: a JSON array, or one word.
    #[arg(long, value_name = "JSON|WORD", allow_hyphen_values = true)]
    pub cmd: Option<String>,
    /// Environment variable (repeatable): KEY=VALUE.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Label (repeatable): KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Exposed port (repeatable): 8080 or 8080/udp.
    #[arg(long = "expose", value_name = "PORT")]
    pub expose: Vec<String>,
    /// Target platform, os/arch[/variant] [default: the host's]; picks the base's
    /// manifest from an index.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<Platform>,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// Owner of the files in the new layers, UID:GID.
    #[arg(long, value_name = "UID:GID", default_value = "0:0")]
    pub owner: String,
    /// Write an in-toto SLSA provenance predicate for the build to FILE (for
    /// `berth attest --type slsaprovenance1`).
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Where to put the image: registry reference or oci:DIR[:TAG].
    #[arg(long, value_name = "REF")]
    pub tag: String,
}

/// Options of `berth diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First image (registry reference or oci:DIR[:TAG]).
    pub left: String,
    /// Second image.
    pub right: String,
    /// For an index: compare this platform's images [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<Platform>,
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

fn fail(m: impl Into<String>) -> Failure {
    Failure::Client(ClientError::Protocol(m.into()))
}

fn key_value(s: &str, what: &str) -> Res<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(usage(format!("{what} {s:?}: expected KEY=VALUE"))),
    }
}

/// `["a","b"]` → a, b; anything else → one word.
fn words(s: &str, what: &str) -> Res<Vec<String>> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s)
            .map_err(|e| usage(format!("{what}: not a JSON array of strings: {e}")))
    } else {
        Ok(vec![s.to_owned()])
    }
}

/// `SOURCE_DATE_EPOCH`, else 0: every timestamp in the image.
fn source_date_epoch() -> Res<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map_err(|_| {
            usage(format!(
                "SOURCE_DATE_EPOCH={v:?}: expected seconds since 1970"
            ))
        }),
        Err(_) => Ok(0),
    }
}

/// Copy blob `desc` from `source` into `layout` (verified by digest on the way).
async fn copy_blob(client: &Client, source: &Source, desc: &Descriptor, layout: &Path) -> Res {
    let root = layout.to_path_buf();
    let d = desc.clone();
    let written = crate::stream::stream_blob(
        source,
        desc,
        client.retry_policy(),
        &format!("blob {}", desc.digest),
        move |reader| {
            Layout::open(&root).and_then(|l| l.write_blob(&d.digest, Some(d.size), reader))
        },
    )
    .await?;
    written.map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// `berth build`.
pub async fn build(client: Client, a: &BuildArgs, args: &ClientArgs) -> Res {
    if a.layers.is_empty() && a.from == "scratch" {
        return Err(usage(
            "nothing to build: give --layer DIR (and/or a base with --from)",
        ));
    }
    let epoch = source_date_epoch()?;
    let platform = a.platform.clone().unwrap_or_else(Platform::host);
    let (uid, gid) = a
        .owner
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u64>().ok()?, g.parse::<u64>().ok()?)))
        .ok_or_else(|| usage(format!("--owner {:?}: expected UID:GID", a.owner)))?;
    let dest = location(&a.tag)?;
    let staging = tempfile::Builder::new()
        .prefix("berth-build-")
        .tempdir()
        .map_err(|e| fail(format!("creating a staging directory: {e}")))?;
    let stage_dir = staging.path().join("oci");
    Layout::create(&stage_dir).map_err(|e| fail(e.to_string()))?;

    // 1. The base, pinned to the digest it has now.
    let base = if a.from == "scratch" {
        None
    } else {
        let loc = location(&a.from)?;
        let source = Source::open(&client, &loc)?;
        let f = crate::image::fetch_image(&client, &source, Some(&platform), &a.from).await?;
        copy_blob(&client, &source, &f.config_desc, &stage_dir).await?;
        for l in &f.layers {
            copy_blob(&client, &source, l, &stage_dir).await?;
        }
        Some(f)
    };

    // 2. One deterministic layer per directory.
    let mut built: Vec<(BuiltLayer, String)> = Vec::new();
    for spec in &a.layers {
        let (dir, dest_path) = match spec.rsplit_once(':') {
            Some((d, p)) if p.starts_with('/') => (PathBuf::from(d), p.to_owned()),
            _ => (PathBuf::from(spec), "/".to_owned()),
        };
        if !dir.is_dir() {
            return Err(usage(format!(
                "--layer {spec}: {} is not a directory",
                dir.display()
            )));
        }
        let opts = LayerOptions {
            dest: dest_path.clone(),
            mtime: epoch,
            uid,
            gid,
            compression: match a.compression {
                CompressionArg::Gzip => Compression::Gzip,
                CompressionArg::Zstd => Compression::Zstd,
                CompressionArg::None => Compression::None,
            },
            ..LayerOptions::default()
        };
        let out = staging.path().to_path_buf();
        let d2 = dir.clone();
        let layer = tokio::task::spawn_blocking(move || build_layer(&d2, &opts, &out))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| usage(format!("--layer {spec}: {e}")))?;
        for w in &layer.warnings {
            eprintln!("berth build: warning: {}: {w}", dir.display());
        }
        let file = std::fs::File::open(&layer.path)
            .map_err(|e| fail(format!("{}: {e}", layer.path.display())))?;
        Layout::open(&stage_dir)
            .and_then(|l| l.write_blob(&layer.digest, Some(layer.size), file))
            .map_err(|e| fail(e.to_string()))?;
        built.push((layer, dest_path));
    }

    // 3. Config and manifest.
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = key_value(l, "--label")?;
        labels.insert(k, v);
    }
    let env = a
        .env
        .iter()
        .map(|e| key_value(e, "--env"))
        .collect::<Res<Vec<_>>>()?;
    let spec = ImageSpec {
        entrypoint: a
            .entrypoint
            .as_deref()
            .map(|s| words(s, "--entrypoint"))
            .transpose()?,
        cmd: a.cmd.as_deref().map(|s| words(s, "--cmd")).transpose()?,
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        labels,
        exposed_ports: a.expose.clone(),
        created: epoch,
        os: platform.os.clone(),
        architecture: platform.architecture.clone(),
        variant: platform.variant.clone(),
    };
    let base_layers: Vec<Value> = base
        .as_ref()
        .map(|b| b.manifest["layers"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    let base_ref_name = base.as_ref().map(|_| a.from.clone());
    let composed = compose(
        base.as_ref()
            .map(|b| (b.config_bytes.as_ref(), base_layers.as_slice())),
        base.as_ref()
            .zip(base_ref_name.as_deref())
            .map(|(b, n)| (n, &b.digest)),
        &built.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
        &spec,
    )
    .map_err(|e| usage(e.to_string()))?;
    let layout = Layout::open(&stage_dir).map_err(|e| fail(e.to_string()))?;
    layout
        .write_bytes(&composed.config)
        .and_then(|_| layout.write_bytes(&composed.manifest))
        .and_then(|_| {
            layout.set_ref(
                json!({"mediaType": media_type::OCI_MANIFEST,
                       "digest": composed.manifest_digest.to_string(),
                       "size": composed.manifest.len()}),
                Some("build"),
            )
        })
        .map_err(|e| fail(e.to_string()))?;

    // 4. Deliver.
    let src = Location::Layout {
        dir: stage_dir.clone(),
        tag: Some("build".into()),
    };
    berth_client::transfer::copy(
        &client,
        &src,
        &dest,
        &berth_client::transfer::CopyOptions::default(),
        Arc::new(crate::progress::Display::new(true)),
    )
    .await?;

    if let Some(p) = &a.provenance {
        use berth_build::provenance::{BaseParam, BuildParams, LayerParam, predicate};
        let repository = match location(&a.from) {
            Ok(Location::Registry(r)) => format!("{}/{}", r.registry(), r.repository()),
            _ => a.from.clone(),
        };
        let predicate = predicate(&BuildParams {
            base: base.as_ref().map(|b| BaseParam {
                reference: a.from.clone(),
                repository,
                manifest_digest: b.digest.clone(),
            }),
            layers: built
                .iter()
                .map(|(l, d)| LayerParam {
                    dest: d.clone(),
                    diff_id: l.diff_id.clone(),
                })
                .collect(),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: spec.env.clone(),
            labels: spec.labels.clone(),
            platform: platform.to_string(),
            compression: format!("{:?}", a.compression).to_lowercase(),
            source_date_epoch: epoch,
            invocation_id: None,
        });
        let mut text = serde_json::to_vec_pretty(&predicate).unwrap_or_default();
        text.push(b'\n');
        std::fs::write(p, text).map_err(|e| usage(format!("writing {}: {e}", p.display())))?;
    }
    if args.output == Output::Json {
        print_json(&json!({
            "reference": a.tag, "digest": composed.manifest_digest.to_string(),
            "base": base.as_ref().map(|b| b.digest.to_string()),
            "layers": built.iter().map(|(l, d)| json!({"dest": d, "digest": l.digest.to_string(), "diffID": l.diff_id.to_string(), "size": l.size})).collect::<Vec<_>>(),
        }));
    } else {
        println!("{}", composed.manifest_digest);
    }
    Ok(())
}

/// `berth diff`: exit 0 when the images are the same, 1 when they differ.
pub async fn diff(client: Client, a: &DiffArgs, args: &ClientArgs) -> Res {
    let platform = a.platform.clone().unwrap_or_else(Platform::host);
    let ls = Source::open(&client, &location(&a.left)?)?;
    let rs = Source::open(&client, &location(&a.right)?)?;
    let l = crate::image::fetch_image(&client, &ls, Some(&platform), &a.left).await?;
    let r = crate::image::fetch_image(&client, &rs, Some(&platform), &a.right).await?;
    let data = |f: &crate::image::Image| ImageData {
        manifest_digest: f.digest.clone(),
        manifest: f.manifest.clone(),
        config: f.config.clone(),
    };
    let image_diff = bdiff::diff_images(&data(&l), &data(&r));
    // Contents of the layers that differ, each side spooled to a temp file.
    let tmp = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let mut layer_diffs = Vec::new();
    for pair in &image_diff.layers {
        let LayerPair::Different { index, .. } = pair else {
            continue;
        };
        let (Some(ld), Some(rd)) = (l.layers.get(*index), r.layers.get(*index)) else {
            continue;
        };
        let lp = tmp.path().join(format!("l{index}"));
        let rp = tmp.path().join(format!("r{index}"));
        spool(&client, &ls, ld, &lp).await?;
        spool(&client, &rs, rd, &rp).await?;
        let (lmt, rmt) = (ld.media_type.clone(), rd.media_type.clone());
        let d = tokio::task::spawn_blocking(move || -> Result<bdiff::LayerDiff, String> {
            let lf = std::fs::File::open(&lp).map_err(|e| e.to_string())?;
            let rf = std::fs::File::open(&rp).map_err(|e| e.to_string())?;
            bdiff::diff_layers((lmt.as_str(), lf), (rmt.as_str(), rf)).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(format!("comparing layer {index}: {e}")))?;
        layer_diffs.push((*index, d));
    }
    if args.output == Output::Json {
        print_json(&json!({
            "left": a.left, "right": a.right, "same": image_diff.same,
            "image": image_diff,
            "layers": layer_diffs.iter().map(|(i, d)| json!({"index": i, "diff": d})).collect::<Vec<_>>(),
        }));
    } else {
        print!("{}", image_diff.render());
        for (i, d) in &layer_diffs {
            println!("layer {i}:");
            print!("{}", d.render());
        }
    }
    if image_diff.same {
        Ok(())
    } else {
        Err(Failure::Client(ClientError::Verification(format!(
            "{} and {} differ",
            a.left, a.right
        ))))
    }
}

/// Download blob `desc` to `path` (verified by digest).
async fn spool(client: &Client, source: &Source, desc: &Descriptor, path: &Path) -> Res {
    let p = path.to_path_buf();
    let r = crate::stream::stream_blob(
        source,
        desc,
        client.retry_policy(),
        &format!("layer {}", desc.digest),
        move |mut reader| -> std::io::Result<u64> {
            let mut f = std::fs::File::create(&p)?;
            std::io::copy(&mut reader, &mut f)
        },
    )
    .await?;
    r.map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(())
}
