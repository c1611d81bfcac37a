//! The client commands (`push`, `pull`, `copy`, `inspect`, `tags`, …): argument
//! types, and thin functions that call `berth-client` and print the result as text
//! or JSON. Exit codes: 0 ok, 1 not found or verification failed, 2 usage or
//! runtime error.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth_client::credentials::{Credential, CredentialStore};
use berth_client::platform::Platform;
use berth_client::registry::Registry;
use berth_client::retry::RetryPolicy;
use berth_client::source::Source;
use berth_client::transfer::{CopyOptions, CopyReport};
use berth_client::{Client, ClientError, ClientOptions};
use berth_oci::digest::Digest;
use berth_oci::manifest;
use berth_oci::media_type;
use berth_oci::name::{Reference, Tag};
use berth_oci::reference::{ImageReference, Location};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::progress::Display;

/// Output format of read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON document.
    Json,
}

/// Options every client command takes.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Allow plain HTTP to registries that are not loopback (localhost and
    /// 127.0.0.0/8 always may).
    #[arg(long)]
    pub insecure: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: Output,
    /// Retries per request on connection errors, 5xx and 429.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
    /// First backoff delay in milliseconds; doubles each retry, with full jitter.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub retry_base_delay_ms: u64,
    /// Trust this CA certificate (PEM) for HTTPS, besides the built-in roots
    /// (repeatable; also BERTH_CA_CERT).
    #[arg(long, value_name = "FILE", env = "BERTH_CA_CERT")]
    pub ca_cert: Vec<std::path::PathBuf>,
}

/// Options of the transfer commands.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Platform to copy from an index, os/arch[/variant] [default: the host's].
    #[arg(long, value_name = "PLATFORM", conflicts_with = "all_platforms")]
    pub platform: Option<Platform>,
    /// Copy the whole index and every manifest in it.
    #[arg(long)]
    pub all_platforms: bool,
    /// Blobs transferred in parallel.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Upload chunk size in bytes; larger blobs go in chunks that resume after a
    /// failure.
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(4096..=(1u64 << 31)))]
    pub chunk_size: u64,
}

/// A command's failure: bad usage (exit 2) or a client error (exit 1 or 2).
pub enum Failure {
    /// Wrong arguments.
    Usage(String),
    /// The operation failed.
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

pub(crate) type Res<T = ()> = std::result::Result<T, Failure>;

/// Run `f` on a fresh runtime; report a failure as `berth NAME: …` with the
/// documented exit code.
pub fn run<F, Fut>(name: &str, args: &ClientArgs, f: F) -> ExitCode
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Res>,
{
    // Client commands log warnings and errors only, unless BERTH_LOG says otherwise.
    crate::init_logging("warn");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth {name}: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ClientOptions {
        insecure: args.insecure,
        retry: RetryPolicy {
            retries: args.retries,
            base_delay: Duration::from_millis(args.retry_base_delay_ms),
            ..RetryPolicy::default()
        },
        ca_certs: args.ca_cert.clone(),
    };
    let client = match Client::new(opts, CredentialStore::from_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth {name}: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(f(client)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("berth {name}: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Client(e)) => {
            eprintln!("berth {name}: {}", chain(&e));
            ExitCode::from(if e.is_not_found_or_unverified() { 1 } else { 2 })
        }
    }
}

/// The error and its sources, `: `-separated (reqwest hides the cause otherwise).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

pub(crate) fn location(s: &str) -> Res<Location> {
    s.parse().map_err(|e| Failure::Usage(format!("{s}: {e}")))
}

pub(crate) fn registry_ref(s: &str) -> Res<ImageReference> {
    match location(s)? {
        Location::Registry(r) => Ok(r),
        Location::Layout { .. } => Err(Failure::Usage(format!(
            "{s}: expected a registry reference, not a layout"
        ))),
    }
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Run `push`, `pull` or `copy` (`kind`).
pub fn run_transfer(
    kind: &str,
    src: &str,
    dst: &str,
    t: &TransferArgs,
    args: &ClientArgs,
) -> ExitCode {
    run(kind, args, |cl| transfer(cl, kind, src, dst, t, args))
}

/// `push`, `pull` and `copy`: `kind` checks which sides must be what.
async fn transfer(
    client: Client,
    kind: &str,
    src: &str,
    dst: &str,
    t: &TransferArgs,
    args: &ClientArgs,
) -> Res {
    let (s, d) = (location(src)?, location(dst)?);
    match (kind, &s, &d) {
        ("push", Location::Layout { .. }, Location::Registry(_))
        | ("pull", Location::Registry(_), Location::Layout { .. })
        | ("copy", _, _) => {}
        ("push", _, _) => {
            return Err(Failure::Usage(
                "push copies oci:DIR[:TAG] to a registry reference".into(),
            ));
        }
        _ => {
            return Err(Failure::Usage(
                "pull copies a registry reference to oci:DIR[:TAG]".into(),
            ));
        }
    }
    let opts = CopyOptions {
        platform: t.platform.clone(),
        all_platforms: t.all_platforms,
        jobs: usize::from(t.jobs),
        chunk_size: usize::try_from(t.chunk_size).unwrap_or(8 << 20),
    };
    let display = Arc::new(Display::new(args.quiet));
    let report = berth_client::transfer::copy(&client, &s, &d, &opts, display.clone()).await?;
    report_copy(&report, src, dst, args, &display);
    Ok(())
}

fn report_copy(r: &CopyReport, src: &str, dst: &str, args: &ClientArgs, display: &Display) {
    if args.output == Output::Json {
        print_json(&json!({
            "source": src, "destination": dst, "digest": r.digest.to_string(),
            "mediaType": r.media_type, "size": r.size, "manifests": r.manifests,
            "blobsCopied": r.copied, "blobsSkipped": r.skipped, "blobsMounted": r.mounted,
            "bytes": r.bytes,
        }));
        return;
    }
    display.line(&format!(
        "{src} -> {dst}: {} manifest(s); blobs: {} copied ({} bytes), {} already present, {} mounted",
        r.manifests, r.copied, r.bytes, r.skipped, r.mounted
    ));
    println!("{}", r.digest);
}

/// `berth inspect`.
pub async fn inspect(
    client: Client,
    reference: &str,
    raw: bool,
    platform: Option<Platform>,
    args: &ClientArgs,
) -> Res {
    let loc = location(reference)?;
    let source = Source::open(&client, &loc)?;
    let (mut m, _) = source.top().await?;
    if let Some(p) = &platform
        && media_type::is_index(&m.media_type)
    {
        let index: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
        let i = berth_client::platform::select(&index, p).map_err(|available| {
            ClientError::PlatformNotFound {
                reference: reference.to_owned(),
                wanted: p.to_string(),
                available,
            }
        })?;
        let desc =
            manifest::parse_descriptor(&index["manifests"][i], "manifests").map_err(|e| {
                ClientError::InvalidManifest {
                    what: reference.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        m = source.manifest(&desc).await?;
    }
    if raw {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(&m.bytes)
            .and_then(|()| out.flush())
            .map_err(|e| {
                Failure::Client(ClientError::Io {
                    op: "writing to stdout".into(),
                    source: e,
                })
            });
    }
    let parsed = manifest::parse(Some(&m.media_type), &m.bytes).map_err(|e| {
        ClientError::InvalidManifest {
            what: reference.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let body: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let mut out = json!({
        "reference": reference, "digest": m.digest.to_string(),
        "mediaType": m.media_type, "size": m.bytes.len(),
    });
    if media_type::is_index(&m.media_type) {
        let list: Vec<Value> = body["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let mut o =
                    json!({"digest": e["digest"], "mediaType": e["mediaType"], "size": e["size"]});
                if let Some(p) = e.get("platform") {
                    o["platform"] = p.clone();
                }
                o
            })
            .collect();
        out["manifests"] = Value::Array(list);
    } else {
        let config_desc = manifest::parse_descriptor(&body["config"], "config").map_err(|e| {
            ClientError::InvalidManifest {
                what: reference.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let mut config = json!({"digest": config_desc.digest.to_string(), "mediaType": config_desc.media_type, "size": config_desc.size});
        if config_desc.media_type == media_type::OCI_CONFIG
            || config_desc.media_type == "application/vnd.docker.container.image.v1+json"
        {
            let bytes = source
                .small_blob(&config_desc, client.retry_policy())
                .await?;
            let c: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            for k in ["os", "architecture", "variant", "created"] {
                if let Some(v) = c.get(k).filter(|v| !v.is_null()) {
                    config[k] = v.clone();
                }
            }
        }
        out["config"] = config;
        out["layers"] = body["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|l| json!({"digest": l["digest"], "mediaType": l["mediaType"], "size": l["size"]}))
            .collect();
        if let Some(s) = &parsed.subject {
            out["subject"] = json!(s.digest.to_string());
        }
    }
    if let Some(a) = parsed.annotations {
        out["annotations"] = Value::Object(a);
    }
    if args.output == Output::Json {
        print_json(&out);
        return Ok(());
    }
    println!("Reference:  {reference}");
    println!("Digest:     {}", m.digest);
    println!("Media type: {}", m.media_type);
    println!("Size:       {}", m.bytes.len());
    if let Some(list) = out["manifests"].as_array() {
        println!("Manifests:");
        for e in list {
            let p = berth_client::platform::Platform::from_json(&e["platform"])
                .map_or_else(|| "-".to_owned(), |p| p.to_string());
            println!(
                "  {:<16} {}  {} bytes",
                p,
                e["digest"].as_str().unwrap_or("?"),
                e["size"]
            );
        }
    } else {
        let c = &out["config"];
        let plat = berth_client::platform::Platform::from_json(c)
            .map_or_else(|| "-".to_owned(), |p| p.to_string());
        println!(
            "Config:     {}  {plat}{}",
            c["digest"].as_str().unwrap_or("?"),
            c["created"]
                .as_str()
                .map(|s| format!("  created {s}"))
                .unwrap_or_default()
        );
        println!("Layers:");
        for l in out["layers"].as_array().into_iter().flatten() {
            println!(
                "  {}  {} bytes  {}",
                l["digest"].as_str().unwrap_or("?"),
                l["size"],
                l["mediaType"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

fn reg_of(client: &Client, r: &ImageReference) -> Arc<Registry> {
    client.registry(r.registry())
}

/// The digest a reference names (`HEAD`, else `GET` when the registry sends no
/// digest header).
async fn digest_of(client: &Client, r: &ImageReference) -> Res<Digest> {
    if let Some(d) = r.digest() {
        return Ok(d.clone());
    }
    let reg = reg_of(client, r);
    let repo = r.repository().as_str();
    match reg.head_manifest(repo, &r.manifest_reference()).await? {
        Some((d, _, _)) => Ok(d),
        None => Ok(reg
            .get_manifest(repo, &r.manifest_reference())
            .await?
            .digest),
    }
}

/// `berth resolve`.
pub async fn resolve(client: Client, reference: &str, args: &ClientArgs) -> Res {
    let r = registry_ref(reference)?;
    let d = digest_of(&client, &r).await?;
    let pinned = format!("{}/{}@{d}", r.registry(), r.repository());
    if args.output == Output::Json {
        print_json(&json!({"reference": pinned, "digest": d.to_string()}));
    } else {
        println!("{pinned}");
    }
    Ok(())
}

/// `berth tags`.
pub async fn tags(client: Client, reference: &str, args: &ClientArgs) -> Res {
    let r = registry_ref(reference)?;
    let repo = r.repository().as_str();
    let tags = reg_of(&client, &r).tags(repo).await?;
    if args.output == Output::Json {
        print_json(&json!({"name": repo, "tags": tags}));
    } else {
        for t in tags {
            println!("{t}");
        }
    }
    Ok(())
}

/// `berth tag`.
pub async fn tag(client: Client, reference: &str, new_tag: &str) -> Res {
    let r = registry_ref(reference)?;
    let t: Tag = new_tag
        .parse()
        .map_err(|e| Failure::Usage(format!("{new_tag}: {e}")))?;
    let reg = reg_of(&client, &r);
    let repo = r.repository().as_str();
    let m = reg.get_manifest(repo, &r.manifest_reference()).await?;
    reg.put_manifest(repo, &Reference::Tag(t.clone()), &m.media_type, m.bytes)
        .await?;
    println!("{}/{repo}:{t}@{}", r.registry(), m.digest);
    Ok(())
}

/// `berth rm`.
pub async fn rm(client: Client, reference: &str) -> Res {
    let r = registry_ref(reference)?;
    let d = digest_of(&client, &r).await?;
    reg_of(&client, &r)
        .delete_manifest(r.repository().as_str(), &Reference::Digest(d.clone()))
        .await?;
    println!("deleted {}/{}@{d}", r.registry(), r.repository());
    Ok(())
}

/// The host part of a `HOST` argument (a bare host or anything with a path).
fn host_arg(host: &str) -> Res<String> {
    let h = host
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r: ImageReference = format!("{h}/x")
        .parse()
        .map_err(|e| Failure::Usage(format!("{host}: not a registry host: {e}")))?;
    if r.registry() != h.to_ascii_lowercase()
        && !(r.registry() == "docker.io" && h.contains("docker.io"))
    {
        return Err(Failure::Usage(format!(
            "{host}: not a registry host (expected host[:port])"
        )));
    }
    Ok(r.registry().to_owned())
}

/// `berth catalog`.
pub async fn catalog(client: Client, host: &str, args: &ClientArgs) -> Res {
    let host = host_arg(host)?;
    let repos = client.registry(&host).catalog().await?;
    if args.output == Output::Json {
        print_json(&json!({"repositories": repos}));
    } else {
        for r in repos {
            println!("{r}");
        }
    }
    Ok(())
}

/// `berth referrers`.
pub async fn referrers(
    client: Client,
    reference: &str,
    artifact_type: Option<&str>,
    args: &ClientArgs,
) -> Res {
    let r = registry_ref(reference)?;
    let d = digest_of(&client, &r).await?;
    let list = reg_of(&client, &r)
        .referrers(r.repository().as_str(), &d, artifact_type)
        .await?;
    if args.output == Output::Json {
        print_json(&Value::Array(list));
    } else {
        for m in list {
            println!(
                "{} {} {}",
                m["digest"].as_str().unwrap_or("?"),
                m["artifactType"].as_str().unwrap_or("-"),
                m["size"]
            );
        }
    }
    Ok(())
}

/// `berth index create`.
pub async fn index_create(
    client: Client,
    reference: &str,
    manifests: &[String],
    args: &ClientArgs,
) -> Res {
    let target = registry_ref(reference)?;
    let reg = reg_of(&client, &target);
    let repo = target.repository().as_str();
    let mut entries = Vec::new();
    for m in manifests {
        let r = registry_ref(m)?;
        if r.registry() != target.registry() {
            return Err(Failure::Usage(format!(
                "{m}: must be on {} like the index",
                target.registry()
            )));
        }
        let src = Location::Registry(r.clone());
        let source = Source::open(&client, &src)?;
        let (fetched, _) = source.top().await?;
        if media_type::is_index(&fetched.media_type) {
            return Err(Failure::Usage(format!(
                "{m} is an index; name image manifests"
            )));
        }
        let body: Value = serde_json::from_slice(&fetched.bytes).unwrap_or(Value::Null);
        let config = manifest::parse_descriptor(&body["config"], "config").map_err(|e| {
            ClientError::InvalidManifest {
                what: m.clone(),
                reason: e.to_string(),
            }
        })?;
        let cfg: Value =
            serde_json::from_slice(&source.small_blob(&config, client.retry_policy()).await?)
                .unwrap_or(Value::Null);
        let platform = Platform::from_json(&cfg).ok_or_else(|| ClientError::InvalidManifest {
            what: format!("config of {m}"),
            reason: "no os/architecture".into(),
        })?;
        if r.repository() != target.repository() {
            // Bring the manifest (and, by mount, its blobs) into the index's repository.
            let pinned = ImageReference::new(
                r.registry(),
                r.repository().clone(),
                None,
                Some(fetched.digest.clone()),
            )
            .map_err(|e| Failure::Usage(e.to_string()))?;
            let dst = ImageReference::new(
                target.registry(),
                target.repository().clone(),
                None,
                Some(fetched.digest.clone()),
            )
            .map_err(|e| Failure::Usage(e.to_string()))?;
            berth_client::transfer::copy(
                &client,
                &Location::Registry(pinned),
                &Location::Registry(dst),
                &CopyOptions::default(),
                Arc::new(Display::new(true)),
            )
            .await?;
        }
        let mut p = json!({"architecture": platform.architecture, "os": platform.os});
        if let Some(v) = &platform.variant {
            p["variant"] = json!(v);
        }
        entries.push(json!({
            "mediaType": fetched.media_type, "digest": fetched.digest.to_string(),
            "size": fetched.bytes.len(), "platform": p,
        }));
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": entries});
    let bytes = bytes::Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
    let digest = Digest::sha256_of(&bytes);
    reg.put_manifest(
        repo,
        &target.manifest_reference(),
        media_type::OCI_INDEX,
        bytes,
    )
    .await?;
    if args.output == Output::Json {
        print_json(&json!({"reference": reference, "digest": digest.to_string()}));
    } else {
        println!("{digest}");
    }
    Ok(())
}

/// `berth login`.
pub async fn login(
    client: Client,
    host: &str,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> Res {
    let host = host_arg(host)?;
    let Some(username) = username else {
        return Err(Failure::Usage("give a user name with -u/--username".into()));
    };
    let password = match (password, password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_line(&mut s)
                .map_err(|e| Failure::Usage(format!("reading the password from stdin: {e}")))?;
            s.trim_end_matches(['\r', '\n']).to_owned()
        }
        (Some(_), true) => {
            return Err(Failure::Usage(
                "give either --password or --password-stdin".into(),
            ));
        }
        (None, false) => {
            return Err(Failure::Usage(
                "give a password with --password-stdin (or -p)".into(),
            ));
        }
    };
    if password.is_empty() {
        return Err(Failure::Usage("the password is empty".into()));
    }
    let cred = Credential::new(username, password);
    let reg = client.registry(&host);
    reg.use_credential(cred.clone());
    reg.ping().await?;
    let store = CredentialStore::from_env();
    let h = host.clone();
    let where_ = tokio::task::spawn_blocking(move || store.store(&h, &cred))
        .await
        .map_err(|e| Failure::Usage(format!("storing credentials: {e}")))?
        .map_err(ClientError::from)?;
    eprintln!("credentials for {host} saved in {where_}");
    println!("Login succeeded");
    Ok(())
}

/// `berth logout`.
pub async fn logout(host: &str) -> Res {
    let host = host_arg(host)?;
    let store = CredentialStore::from_env();
    let h = host.clone();
    let removed = tokio::task::spawn_blocking(move || store.erase(&h))
        .await
        .map_err(|e| Failure::Usage(format!("removing credentials: {e}")))?
        .map_err(ClientError::from)?;
    if removed {
        println!("Removed login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(())
}
