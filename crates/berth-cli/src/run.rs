//! `berth unpack` (an image → an OCI runtime bundle) and `berth run` (pull into
//! the local cache, unpack once, run with an OCI runtime). Layer application and
//! config conversion live in `berth-runtime`; this module fetches, times and
//! drives them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth_client::platform::Platform;
use berth_client::source::Source;
use berth_client::{Client, ClientError};
use berth_oci::layout::Layout;
use berth_oci::reference::Location;
use berth_runtime::cache::{Cache, ContainerRootfs, remove_tree};
use berth_runtime::config::{self as rconfig, IdMapping, Network, RunOptions};
use berth_runtime::runtime::{self, OciRuntime};
use berth_runtime::unpack::{UnpackOptions, Unpacker};
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::client::{ClientArgs, Failure, Res, location};

/// Options of `berth unpack`.
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// Registry reference or oci:DIR[:TAG].
    pub reference: String,
    /// The bundle directory to create (must not exist, or be empty).
    pub bundle: PathBuf,
    /// For an index: this platform's image [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<Platform>,
    #[command(flatten)]
    pub unpack: UnpackFlags,
}

/// Layer-application options shared by `unpack` and `run`.
#[derive(Debug, Args)]
pub struct UnpackFlags {
    /// Don't chown; map the container's root to the calling user with a user
    /// namespace in config.json instead (default when not run as root).
    #[arg(long)]
    pub rootless: bool,
    /// Refuse a layer that expands to more than this many bytes (decompression
    /// bombs), e.g. 8GiB.
    #[arg(long, value_name = "SIZE", default_value = "64GiB", value_parser = parse_size)]
    pub max_layer_size: u64,
}

impl UnpackFlags {
    fn rootless(&self) -> bool {
        self.rootless || !rustix::process::geteuid().is_root()
    }
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// A new network namespace with only loopback.
    None,
    /// The host's network namespace.
    Host,
}

/// Options of `berth run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Registry reference or oci:DIR[:TAG].
    pub reference: String,
    /// Command and arguments, replacing the image's Cmd (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
    /// Remove the container's filesystem when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (repeatable): -e KEY=VALUE.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User: name, uid, name:group or uid:gid (names from the image's /etc/passwd).
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Replace the image's Entrypoint.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Network.
    #[arg(long, value_enum, default_value = "none")]
    pub network: NetworkArg,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit, e.g. 256MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPU limit in CPUs, e.g. 0.5.
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// The OCI runtime binary [default: runc from PATH].
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
    /// Print pull, unpack, create and start durations (M3) to stderr.
    #[arg(long)]
    pub timing: bool,
    /// For an index: this platform's image [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<Platform>,
    /// The cache directory [default: $BERTH_CACHE, else ~/.cache/berth].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub unpack: UnpackFlags,
}

/// Parse `123`, `64KiB`, `256MiB`, `8GiB` (also `k`, `m`, `g`, `KB`, …, all
/// powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size like 512MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("{s:?}: unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

fn fail(m: impl Into<String>) -> Failure {
    Failure::Client(ClientError::Protocol(m.into()))
}

/// Apply every layer of `image` into `rootfs` (created), in order, each streamed
/// and verified by digest.
async fn apply_layers(
    client: &Client,
    source: &Source,
    image: &crate::image::Image,
    rootfs: &Path,
    flags: &UnpackFlags,
    what: &str,
) -> Res {
    let opts = UnpackOptions {
        rootless: flags.rootless(),
        max_layer_bytes: flags.max_layer_size,
        ..UnpackOptions::default()
    };
    let mut unpacker =
        Unpacker::new(rootfs, opts).map_err(|e| fail(format!("{}: {e}", rootfs.display())))?;
    for (i, desc) in image.layers.iter().enumerate() {
        let digest = desc.digest.clone();
        let mt = desc.media_type.clone();
        let (back, result) = crate::stream::stream_blob(
            source,
            desc,
            client.retry_policy(),
            &format!("layer {i} of {what}"),
            move |reader| {
                let r = unpacker.apply_layer(&digest, &mt, reader);
                (unpacker, r)
            },
        )
        .await?;
        unpacker = back;
        let stats = result.map_err(|e| fail(format!("{what}: {e}")))?;
        for s in &stats.skipped {
            tracing::warn!(layer = %desc.digest, "skipped {s}");
        }
    }
    Ok(())
}

/// Write `bytes` to `path` through a temp file in the same directory, fsynced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Res {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let err = |e: std::io::Error| fail(format!("writing {}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Convert, validate and write the bundle's `config.json`.
fn write_runtime_config(image_config: &Value, bundle: &Path, opts: &RunOptions) -> Res {
    let rootfs = bundle.join("rootfs");
    let cfg = rconfig::convert(image_config, &rootfs, opts).map_err(|e| usage(e.to_string()))?;
    if let Err(problems) = rconfig::validate(&cfg) {
        return Err(fail(format!(
            "the generated config.json does not match the runtime-spec schema: {}",
            problems.join("; ")
        )));
    }
    let mut text = serde_json::to_vec_pretty(&cfg).unwrap_or_default();
    text.push(b'\n');
    write_atomic(&bundle.join("config.json"), &text)
}

fn id_mapping(rootless: bool) -> Option<IdMapping> {
    rootless.then(|| IdMapping {
        host_uid: rustix::process::geteuid().as_raw(),
        host_gid: rustix::process::getegid().as_raw(),
    })
}

/// `berth unpack`: the bundle appears complete or not at all (built beside it,
/// then renamed).
pub async fn unpack(client: Client, a: &UnpackArgs, _args: &ClientArgs) -> Res {
    let bundle = &a.bundle;
    if bundle.exists() {
        let empty = std::fs::read_dir(bundle)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(usage(format!(
                "{} exists and is not empty",
                bundle.display()
            )));
        }
        let _ = std::fs::remove_dir(bundle);
    }
    let parent = match bundle.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = bundle
        .file_name()
        .ok_or_else(|| usage(format!("{}: not a directory name", bundle.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.unpacking-", name.to_string_lossy()))
        .tempdir_in(&parent)
        .map_err(|e| fail(format!("creating a directory in {}: {e}", parent.display())))?;
    // The staging directory is removed by hand on failure: an unpacked tree may hold
    // read-only directories that TempDir's own clean-up cannot remove as non-root.
    let staged = staging.keep();
    let made = async {
        let source = Source::open(&client, &location(&a.reference)?)?;
        let image =
            crate::image::fetch_image(&client, &source, a.platform.as_ref(), &a.reference).await?;
        apply_layers(
            &client,
            &source,
            &image,
            &staged.join("rootfs"),
            &a.unpack,
            &a.reference,
        )
        .await?;
        let opts = RunOptions {
            rootless: id_mapping(a.unpack.rootless()),
            ..RunOptions::default()
        };
        write_runtime_config(&image.config, &staged, &opts)
    }
    .await;
    if let Err(e) = made {
        remove_tree(&staged);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&staged, bundle) {
        remove_tree(&staged);
        return Err(fail(format!(
            "moving the bundle to {}: {e}",
            bundle.display()
        )));
    }
    println!("{}", bundle.display());
    Ok(())
}

/// Durations of `berth run`'s steps.
#[derive(Default)]
struct Timing {
    pull: Duration,
    unpack: Duration,
    cached: bool,
    create: Duration,
    start: Duration,
}

impl Timing {
    fn report(&self) {
        eprintln!(
            "berth run: timing pull={:.3}s unpack={:.3}s{} create={:.3}s start={:.3}s",
            self.pull.as_secs_f64(),
            self.unpack.as_secs_f64(),
            if self.cached { " (cached)" } else { "" },
            self.create.as_secs_f64(),
            self.start.as_secs_f64()
        );
    }
}

/// `berth run`: the container's exit code (or 125 when berth itself failed, as
/// docker does).
pub fn run_command(a: &RunArgs, args: &ClientArgs) -> ExitCode {
    let code = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(125));
    let out = code.clone();
    let result = crate::client::run("run", args, |cl| async move {
        let c = run(cl, a).await?;
        out.store(c, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });
    if result != ExitCode::SUCCESS {
        return ExitCode::from(125);
    }
    let c = code.load(std::sync::atomic::Ordering::SeqCst);
    ExitCode::from(u8::try_from(c & 0xff).unwrap_or(1))
}

async fn run(client: Client, a: &RunArgs) -> Res<i32> {
    let mut timing = Timing::default();
    let rootless = a.unpack.rootless();
    let cache_root = a.cache_dir.clone().unwrap_or_else(Cache::default_dir);
    let cache = Cache::open(&cache_root).map_err(|e| fail(e.to_string()))?;
    let runtime = OciRuntime::find(a.runtime.as_deref())
        .map_err(|e| usage(e.to_string()))?
        .with_root(cache.state_dir());

    // 1. Pull (into the cache's layout) unless the source is a layout already.
    let t = Instant::now();
    let loc = location(&a.reference)?;
    let source = match &loc {
        Location::Layout { .. } => Source::open(&client, &loc)?,
        Location::Registry(r) => {
            let reg = client.registry(r.registry());
            let m = reg
                .get_manifest(r.repository().as_str(), &r.manifest_reference())
                .await?;
            let wanted = a.platform.clone().unwrap_or_else(Platform::host);
            // One cache entry per (manifest, platform): an index pulled for two
            // platforms keeps both.
            let tag = format!(
                "{}-{}-{}",
                m.digest.algorithm().as_str(),
                m.digest.hex(),
                wanted.to_string().replace('/', "-")
            );
            let layout_dir = cache.layout_dir();
            let have = Layout::open(&layout_dir)
                .ok()
                .and_then(|l| l.resolve(Some(&tag)).ok())
                .is_some();
            let dst = Location::Layout {
                dir: layout_dir.clone(),
                tag: Some(tag.clone()),
            };
            if !have {
                let pinned = Location::Registry(r.with_digest(m.digest.clone()));
                let opts = berth_client::transfer::CopyOptions {
                    platform: Some(wanted),
                    ..Default::default()
                };
                berth_client::transfer::copy(
                    &client,
                    &pinned,
                    &dst,
                    &opts,
                    std::sync::Arc::new(crate::progress::Display::new(true)),
                )
                .await?;
            }
            Source::open(&client, &dst)?
        }
    };
    let image =
        crate::image::fetch_image(&client, &source, a.platform.as_ref(), &a.reference).await?;
    timing.pull = t.elapsed();

    // 2. Unpack once per image.
    let t = Instant::now();
    let image_dir = if cache.has_image(&image.digest, rootless) {
        timing.cached = true;
        cache.image_dir(&image.digest, rootless)
    } else {
        let staging = cache.staging_dir().map_err(|e| fail(e.to_string()))?;
        let unpacked = async {
            apply_layers(
                &client,
                &source,
                &image,
                &staging.join("rootfs"),
                &a.unpack,
                &a.reference,
            )
            .await?;
            let cfg = serde_json::to_vec(&image.config).unwrap_or_default();
            write_atomic(&staging.join("image-config.json"), &cfg)
        }
        .await;
        if let Err(e) = unpacked {
            remove_tree(&staging);
            return Err(e);
        }
        cache
            .publish(&staging, &image.digest, rootless)
            .map_err(|e| fail(e.to_string()))?
    };
    timing.unpack = t.elapsed();

    // 3. The container's bundle: a writable root over the cached one, config.json.
    let (id, bundle) = cache.new_container().map_err(|e| fail(e.to_string()))?;
    let rootfs = match ContainerRootfs::prepare(&image_dir.join("rootfs"), &bundle) {
        Ok(r) => r,
        Err(e) => {
            remove_tree(&bundle);
            return Err(fail(e.to_string()));
        }
    };
    let outcome = run_in_bundle(&runtime, &id, &bundle, &image, a, rootless, &mut timing).await;
    let _ = runtime.delete(&id);
    rootfs.release();
    // A failed run leaves nothing worth keeping; a finished one is kept unless --rm.
    if a.rm || outcome.is_err() {
        remove_tree(&bundle);
    } else {
        eprintln!(
            "berth run: container {id} kept in {} (--rm removes it)",
            bundle.display()
        );
    }
    if a.timing {
        timing.report();
    }
    outcome
}

async fn run_in_bundle(
    runtime: &OciRuntime,
    id: &str,
    bundle: &Path,
    image: &crate::image::Image,
    a: &RunArgs,
    rootless: bool,
    timing: &mut Timing,
) -> Res<i32> {
    let opts = RunOptions {
        args: (!a.args.is_empty()).then(|| a.args.clone()),
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        network: match a.network {
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        },
        read_only: a.read_only,
        memory_bytes: a.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
        cpus: a.cpus,
        rootless: id_mapping(rootless),
        ..RunOptions::default()
    };
    write_runtime_config(&image.config, bundle, &opts)?;
    runtime::become_subreaper().map_err(|e| fail(e.to_string()))?;
    let t = Instant::now();
    let pid = {
        let (rt, id, b) = (runtime.clone(), id.to_owned(), bundle.to_path_buf());
        tokio::task::spawn_blocking(move || rt.create(&id, &b))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?
    };
    timing.create = t.elapsed();
    let t = Instant::now();
    runtime.start(id).map_err(|e| fail(e.to_string()))?;
    timing.start = t.elapsed();
    let waiter = tokio::task::spawn_blocking(move || runtime::wait_exit_code(pid));
    wait_forwarding_signals(pid, waiter).await
}

/// Wait for the container's exit code, forwarding SIGINT, SIGTERM, SIGHUP,
/// SIGQUIT, SIGUSR1 and SIGUSR2 to its process meanwhile.
async fn wait_forwarding_signals(
    pid: rustix::process::Pid,
    waiter: tokio::task::JoinHandle<Result<i32, runtime::RuntimeError>>,
) -> Res<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ];
    let mut forwarders = Vec::new();
    for k in kinds {
        if let Ok(mut s) = signal(k) {
            let n = k.as_raw_value();
            forwarders.push(tokio::spawn(async move {
                while s.recv().await.is_some() {
                    let _ = runtime::forward_signal(pid, n);
                }
            }));
        }
    }
    let done = waiter.await;
    for f in forwarders {
        f.abort();
    }
    done.map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))
}
