//! `berth gc`, `berth retention apply`, `berth scrub` and `berth usage`: run a
//! maintenance request against the data directory — through the running
//! server's admin socket when `berth serve` holds the directory, or directly
//! when nothing does — and print its report as text or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_registry::{Limits, Registry, RegistryError};
use berth_server::Config;
use berth_server::admin::{self, AdminRequest};
use berth_storage::StorageError;
use serde_json::Value;

/// Where the registry's data is, and how to print.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// TOML configuration file (the one `berth serve` uses: data directory and
    /// lifecycle rules).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [config: storage.data_dir; default ./berth-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Lines for people.
    Text,
    /// The whole report as one JSON document.
    Json,
}

/// Run `req` and print its report; exit 1 when scrub found a problem.
pub(crate) fn run(what: &str, args: &StoreArgs, req: AdminRequest) -> ExitCode {
    let mut cfg = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    if let Some(d) = &args.data_dir {
        cfg.storage.data_dir = d.clone();
    }
    crate::init_logging("warn");
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(execute(&cfg, &req)));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth {what}: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match args.output {
        Format::Json => println!("{report:#}"),
        Format::Text => print!("{}", text(&req, &report)),
    }
    let troubled = matches!(req, AdminRequest::Scrub { .. })
        && (count(&report["corrupt"]) > 0 || count(&report["inconsistencies"]) > 0);
    if troubled {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn execute(cfg: &Config, req: &AdminRequest) -> anyhow::Result<Value> {
    let dir = &cfg.storage.data_dir;
    if !dir.join("meta.db").exists() {
        anyhow::bail!("{} holds no registry data (no meta.db)", dir.display());
    }
    let lifecycle = berth_registry::Lifecycle::compile(&cfg.lifecycle())
        .map_err(|p| anyhow::anyhow!("{}", p.join("\n")))?;
    let limits = Limits {
        max_manifest_bytes: cfg.limits.max_manifest_bytes,
        manifest_cache_bytes: 0,
    };
    match Registry::open_with(dir, limits, lifecycle).await {
        Ok(registry) => Ok(admin::run(&registry, None, req).await?),
        Err(RegistryError::Storage(StorageError::Locked(_))) => {
            let socket = dir.join(admin::SOCKET_NAME);
            admin::request(&socket, req).await.with_context(|| {
                format!(
                    "{} is in use by a running berth serve; asking it through {}",
                    dir.display(),
                    socket.display()
                )
            })
        }
        Err(e) => Err(e).with_context(|| format!("opening {}", dir.display())),
    }
}

fn count(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

fn bytes(v: &Value) -> String {
    let n = v.as_u64().unwrap_or(0);
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

/// A count, as a plain number that honours the column width.
fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The report as lines for people.
fn text(req: &AdminRequest, r: &Value) -> String {
    let mut out = String::new();
    match req {
        AdminRequest::Gc { dry_run } => {
            let verb = if *dry_run { "would delete" } else { "deleted" };
            for m in r["manifests"].as_array().into_iter().flatten() {
                out += &format!("{verb} manifest {}\n", s(m));
            }
            for l in r["links"].as_array().into_iter().flatten() {
                out += &format!("{verb} link {}\n", s(l));
            }
            for b in r["blobs"].as_array().into_iter().flatten() {
                out += &format!("{verb} blob {} ({})\n", s(&b["digest"]), bytes(&b["size"]));
            }
            for b in r["orphan_files"].as_array().into_iter().flatten() {
                out += &format!(
                    "{verb} orphan file {} ({})\n",
                    s(&b["digest"]),
                    bytes(&b["size"])
                );
            }
            for u in r["uploads"].as_array().into_iter().flatten() {
                out += &format!("{verb} stale upload {}\n", s(u));
            }
            out += &format!(
                "gc{}: {} manifests, {} links, {} blobs, {} orphan files, {} uploads; {} {}; {} kept by re-check; {} ms\n",
                if *dry_run { " (dry run)" } else { "" },
                count(&r["manifests"]),
                count(&r["links"]),
                count(&r["blobs"]),
                count(&r["orphan_files"]),
                count(&r["uploads"]),
                if *dry_run { "would free" } else { "freed" },
                bytes(&r["bytes_freed"]),
                r["kept_by_recheck"],
                r["duration_ms"],
            );
        }
        AdminRequest::Retention { dry_run } => {
            let verb = if *dry_run { "would delete" } else { "deleted" };
            for d in r["deleted"].as_array().into_iter().flatten() {
                out += &format!(
                    "{verb} {}:{} ({}) by {}: {}\n",
                    s(&d["repository"]),
                    s(&d["tag"]),
                    s(&d["digest"]),
                    s(&d["rule"]),
                    s(&d["reason"])
                );
            }
            for d in r["kept"].as_array().into_iter().flatten() {
                out += &format!(
                    "kept {}:{} ({}) by {}: {}\n",
                    s(&d["repository"]),
                    s(&d["tag"]),
                    s(&d["digest"]),
                    s(&d["rule"]),
                    s(&d["reason"])
                );
            }
            out += &format!(
                "retention{}: {} tags {verb}, {} kept\n",
                if *dry_run { " (dry run)" } else { "" },
                count(&r["deleted"]),
                count(&r["kept"])
            );
        }
        AdminRequest::Scrub { .. } => {
            for c in r["corrupt"].as_array().into_iter().flatten() {
                let repos: Vec<&str> = c["repositories"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                out += &format!(
                    "corrupt {} {} in {}: {}{}\n",
                    s(&c["kind"]),
                    s(&c["digest"]),
                    if repos.is_empty() {
                        "no repository".to_owned()
                    } else {
                        repos.join(", ")
                    },
                    s(&c["reason"]),
                    c["moved_to"]
                        .as_str()
                        .map(|p| format!("; moved to {p}"))
                        .unwrap_or_default()
                );
            }
            for i in r["inconsistencies"].as_array().into_iter().flatten() {
                out += &format!(
                    "inconsistent {}: {} → {}: {}\n",
                    s(&i["repository"]),
                    s(&i["from"]),
                    s(&i["missing"]),
                    s(&i["problem"])
                );
            }
            out += &format!(
                "scrub: {} blobs ({}) and {} manifests checked; {} corrupt, {} inconsistencies; {} ms\n",
                r["blobs_checked"],
                bytes(&r["bytes_checked"]),
                r["manifests_checked"],
                count(&r["corrupt"]),
                count(&r["inconsistencies"]),
                r["duration_ms"]
            );
        }
        AdminRequest::Usage => {
            out += &format!(
                "{:<40} {:>8} {:>12} {:>10} {:>8} {:>12}\n",
                "REPOSITORY", "BLOBS", "BYTES", "MANIFESTS", "TAGS", "QUOTA"
            );
            for u in r["repositories"].as_array().into_iter().flatten() {
                out += &format!(
                    "{:<40} {:>8} {:>12} {:>10} {:>8} {:>12}\n",
                    s(&u["repository"]),
                    num(&u["blobs"]),
                    num(&u["bytes"]),
                    num(&u["manifests"]),
                    num(&u["tags"]),
                    u["quota"]
                        .as_u64()
                        .map_or("-".to_owned(), |q| q.to_string())
                );
            }
            out += &format!(
                "unique blobs stored: {} ({})\n",
                r["unique_blobs"],
                bytes(&r["unique_bytes"])
            );
        }
        AdminRequest::Quarantine => {
            for q in r.as_array().into_iter().flatten() {
                out += &format!(
                    "{} {} {}: {}\n",
                    q["found_at"],
                    s(&q["kind"]),
                    s(&q["digest"]),
                    s(&q["reason"])
                );
            }
        }
    }
    out
}
