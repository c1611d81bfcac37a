//! `berth`: one binary for the life of an OCI image. This file only parses
//! arguments, sets up logging and calls the libraries.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_server::Config;
use clap::{Parser, Subcommand};

/// berth: build, store, sign, check and run OCI images.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry (OCI distribution-spec v1.1) on embedded storage.
    Serve {
        /// Address to listen on [config: server.listen; default 127.0.0.1:5000].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Data directory [config: storage.data_dir; default ./berth-data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// TOML configuration file; BERTH_<SECTION>_<KEY> variables override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file (with environment overrides) and report every
    /// problem; exit 0 only when it is valid.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Work with OCI image layouts on disk.
    Layout {
        #[command(subcommand)]
        command: LayoutCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LayoutCommand {
    /// Verify an OCI image layout: every blob's digest, every descriptor's size and
    /// presence, every manifest and index against its media type and the image-spec
    /// JSON schemas. Exit 0 when sound, 1 when anything is wrong (all problems listed).
    Verify {
        /// The layout directory.
        dir: PathBuf,
    },
}

/// Exit codes: 0 success, 1 runtime failure or failed verification, 2 bad usage
/// or configuration.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Layout {
            command: LayoutCommand::Verify { dir },
        } => layout_verify(&dir),
        Command::Serve {
            listen,
            data_dir,
            config,
        } => {
            let mut cfg = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.storage.data_dir = d;
            }
            if let Err(e) = cfg.validate("command line") {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            init_logging(&cfg.log.level);
            match run_serve(&cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth serve: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn layout_verify(dir: &std::path::Path) -> ExitCode {
    let report = berth_oci::layout::Layout::open(dir).and_then(|l| l.verify());
    match report {
        Ok(r) if r.problems.is_empty() => {
            println!(
                "{}: ok ({} blobs, {} manifests verified)",
                dir.display(),
                r.blobs,
                r.manifests
            );
            ExitCode::SUCCESS
        }
        Ok(r) => {
            for p in &r.problems {
                println!("{}: {p}", dir.display());
            }
            eprintln!(
                "{}: {} problem(s) ({} blobs, {} manifests checked)",
                dir.display(),
                r.problems.len(),
                r.blobs,
                r.manifests
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("berth layout verify: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run_serve(cfg: &Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let data_dir = cfg.storage.data_dir.display().to_string();
    rt.block_on(berth_server::serve(
        cfg,
        |addr| {
            println!("berth listening on http://{addr} (data in {data_dir})");
            tracing::info!(%addr, "ready");
        },
        berth_server::shutdown_signal(),
    ))?;
    tracing::info!("stopped");
    Ok(())
}
