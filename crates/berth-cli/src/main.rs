//! `berth`: one binary for the life of an OCI image. This file only parses
//! arguments, sets up logging and calls the libraries.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_client::platform::Platform;
use berth_server::Config;
use berth_server::admin::AdminRequest;
use clap::{CommandFactory, Parser, Subcommand};

mod build;
mod client;
mod image;
mod maintenance;
mod progress;
mod run;
mod stream;
mod supply;

use client::{ClientArgs, TransferArgs};

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
    /// Collect garbage online: delete manifests no tag, index or live subject
    /// reaches, blobs no live manifest references, and stale uploads (older than
    /// gc.grace). Runs through the admin socket of a running server.
    Gc {
        /// Report what would be deleted and the bytes freed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: maintenance::StoreArgs,
    },
    /// Retention rules ([retention] in the configuration).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Re-hash every stored blob and manifest; quarantine corrupt ones and check
    /// that tags, manifests and blobs point at each other. Exit 1 if anything is wrong.
    Scrub {
        /// Most bytes read per second (e.g. 64MiB; 0 for no limit) [config: scrub.rate].
        #[arg(long, value_name = "SIZE")]
        rate: Option<String>,
        #[command(flatten)]
        store: maintenance::StoreArgs,
    },
    /// Storage used per repository (unique blob bytes) with quotas.
    Usage {
        #[command(flatten)]
        store: maintenance::StoreArgs,
    },
    /// List objects scrub has quarantined.
    Quarantine {
        #[command(flatten)]
        store: maintenance::StoreArgs,
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
    /// Check credentials for a registry and store them (docker config.json format).
    Login {
        /// Registry host[:port].
        host: String,
        /// User name.
        #[arg(short, long)]
        username: Option<String>,
        /// Password (visible in the process list; prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove stored credentials for a registry.
    Logout {
        /// Registry host[:port].
        host: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Push an image from an OCI layout to a registry.
    Push {
        /// oci:DIR[:TAG]
        source: String,
        /// Registry reference.
        destination: String,
        #[command(flatten)]
        transfer: TransferArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pull an image from a registry into an OCI layout (created if missing).
    Pull {
        /// Registry reference.
        source: String,
        /// oci:DIR[:TAG]
        destination: String,
        #[command(flatten)]
        transfer: TransferArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Copy an image between registries and/or OCI layouts.
    Copy {
        /// Registry reference or oci:DIR[:TAG].
        source: String,
        /// Registry reference or oci:DIR[:TAG].
        destination: String,
        #[command(flatten)]
        transfer: TransferArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a manifest: media type, config, layers, or an index's platforms.
    Inspect {
        /// Registry reference or oci:DIR[:TAG].
        reference: String,
        /// Print the manifest's exact bytes.
        #[arg(long)]
        raw: bool,
        /// For an index: inspect this platform's manifest instead.
        #[arg(long, value_name = "PLATFORM")]
        platform: Option<Platform>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a repository's tags.
    Tags {
        /// Registry reference (its tag is ignored).
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Give the manifest REF names another tag in the same repository.
    Tag {
        /// Registry reference.
        reference: String,
        /// The new tag.
        new_tag: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete the manifest a reference names (a tag is resolved to its digest).
    Rm {
        /// Registry reference.
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the digest-pinned form of a reference.
    Resolve {
        /// Registry reference.
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a registry's repositories.
    Catalog {
        /// Registry host[:port].
        host: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the manifests that refer to REF (signatures, SBOMs, attestations).
    Referrers {
        /// Registry reference.
        reference: String,
        /// Only referrers of this artifact type.
        #[arg(long, value_name = "TYPE")]
        artifact_type: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Work with image indexes (multi-platform images).
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Add a user to an htpasswd file, or change their password (bcrypt; the
    /// password is read from the first line of stdin). The file is created 0600.
    Passwd {
        /// The htpasswd file.
        file: PathBuf,
        /// The user name.
        user: String,
        /// Hash with argon2id instead of bcrypt.
        #[arg(long)]
        argon2: bool,
    },
    /// Load-test an OCI registry over plain HTTP (any registry): push, push-chunked,
    /// pull, manifest, tags, mixed, seed, or wait until it answers (ready). Set-up and
    /// warm-up are never measured. Exit 0 when every measured request succeeded, 1
    /// when some failed (the report is still printed) or ready timed out, 2 for bad
    /// usage or a failed set-up.
    Bench(berth_bench::BenchArgs),
    /// Generate an ECDSA P-256 key pair in cosign's formats: PREFIX.key (encrypted
    /// with the password from BERTH_PASSWORD or a prompt, mode 0600) and PREFIX.pub.
    Keygen {
        /// File name prefix.
        #[arg(
            long = "output-key-prefix",
            default_value = "cosign",
            value_name = "PREFIX"
        )]
        prefix: String,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Sign an image's manifest digest (cosign simple signing), stored by cosign's
    /// tag scheme and/or as an OCI 1.1 referrer.
    Sign {
        #[command(flatten)]
        sign: supply::SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify an image's signatures (either scheme) with a public key; exit 0 only
    /// when at least one valid signature names the image's digest.
    Verify {
        #[command(flatten)]
        verify: supply::VerifyArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Attach a signed in-toto attestation (DSSE envelope) to an image.
    Attest {
        #[command(flatten)]
        attest: supply::AttestArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify an image's attestations with a public key and print their predicates.
    VerifyAttestation {
        #[command(flatten)]
        verify: supply::VerifyAttestationArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Catalogue an image's packages from its layers (whiteouts applied) as an SBOM
    /// (SPDX 2.3 or CycloneDX 1.6 JSON); optionally attach it to the image.
    Sbom {
        #[command(flatten)]
        sbom: supply::SbomArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an image and everything attached to it (signatures, attestations,
    /// SBOMs), by the tag scheme and as referrers.
    Tree {
        /// Registry reference.
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Unpack an image into an OCI runtime bundle: rootfs/ from the layers (safely:
    /// nothing outside the bundle is ever written) and config.json from the image
    /// config.
    Unpack {
        #[command(flatten)]
        unpack: run::UnpackArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run an image with an OCI runtime (runc): pull into the local cache, unpack
    /// once, run; exit with the container's exit code (125 when berth fails).
    Run {
        #[command(flatten)]
        run: run::RunArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Build an image reproducibly from directories on a base (or scratch): the same
    /// inputs give the same digest. Pushes to a registry or writes a layout.
    Build {
        #[command(flatten)]
        build: build::BuildArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Explain why two images differ: manifest, config fields, and for each layer
    /// that differs, the files and metadata. Exit 0 when they are the same, 1 when not.
    Diff {
        #[command(flatten)]
        diff: build::DiffArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Delete the tags the rules select (the next gc frees their space).
    Apply {
        /// Report what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: maintenance::StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Build an OCI image index from existing manifests of one registry (platforms
    /// read from their configs) and push it to REF.
    Create {
        /// Where to push the index.
        reference: String,
        /// A manifest to include (repeat).
        #[arg(long = "manifest", value_name = "REF", required = true)]
        manifests: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
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
        Command::Passwd { file, user, argon2 } => passwd(&file, &user, argon2),
        Command::Gc { dry_run, store } => {
            maintenance::run("gc", &store, AdminRequest::Gc { dry_run })
        }
        Command::Retention {
            command: RetentionCommand::Apply { dry_run, store },
        } => maintenance::run(
            "retention apply",
            &store,
            AdminRequest::Retention { dry_run },
        ),
        Command::Scrub { rate, store } => {
            let rate = match rate.map(|r| berth_registry::policy::Amount::Text(r).bytes()) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(e)) => {
                    eprintln!("berth scrub: --rate: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            maintenance::run("scrub", &store, AdminRequest::Scrub { rate })
        }
        Command::Usage { store } => maintenance::run("usage", &store, AdminRequest::Usage),
        Command::Quarantine { store } => {
            maintenance::run("quarantine", &store, AdminRequest::Quarantine)
        }
        Command::Bench(args) => bench(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Login {
            host,
            username,
            password,
            password_stdin,
            client: c,
        } => client::run("login", &c, |cl| {
            client::login(cl, &host, username, password, password_stdin)
        }),
        Command::Logout { host, client: c } => client::run("logout", &c, |_| client::logout(&host)),
        Command::Push {
            source,
            destination,
            transfer,
            client: c,
        } => client::run_transfer("push", &source, &destination, &transfer, &c),
        Command::Pull {
            source,
            destination,
            transfer,
            client: c,
        } => client::run_transfer("pull", &source, &destination, &transfer, &c),
        Command::Copy {
            source,
            destination,
            transfer,
            client: c,
        } => client::run_transfer("copy", &source, &destination, &transfer, &c),
        Command::Inspect {
            reference,
            raw,
            platform,
            client: c,
        } => client::run("inspect", &c, |cl| {
            client::inspect(cl, &reference, raw, platform, &c)
        }),
        Command::Tags {
            reference,
            client: c,
        } => client::run("tags", &c, |cl| client::tags(cl, &reference, &c)),
        Command::Tag {
            reference,
            new_tag,
            client: c,
        } => client::run("tag", &c, |cl| client::tag(cl, &reference, &new_tag)),
        Command::Rm {
            reference,
            client: c,
        } => client::run("rm", &c, |cl| client::rm(cl, &reference)),
        Command::Resolve {
            reference,
            client: c,
        } => client::run("resolve", &c, |cl| client::resolve(cl, &reference, &c)),
        Command::Catalog { host, client: c } => {
            client::run("catalog", &c, |cl| client::catalog(cl, &host, &c))
        }
        Command::Referrers {
            reference,
            artifact_type,
            client: c,
        } => client::run("referrers", &c, |cl| {
            client::referrers(cl, &reference, artifact_type.as_deref(), &c)
        }),
        Command::Index {
            command:
                IndexCommand::Create {
                    reference,
                    manifests,
                    client: c,
                },
        } => client::run("index create", &c, |cl| {
            client::index_create(cl, &reference, &manifests, &c)
        }),
        Command::Keygen { prefix, force } => {
            init_logging("warn");
            match supply::keygen(&prefix, force) {
                Ok(()) => ExitCode::SUCCESS,
                Err(client::Failure::Usage(m)) => {
                    eprintln!("berth keygen: {m}");
                    ExitCode::from(EXIT_CONFIG)
                }
                Err(client::Failure::Client(e)) => {
                    eprintln!("berth keygen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sign { sign, client: c } => {
            client::run("sign", &c, |cl| supply::sign(cl, &sign, &c))
        }
        Command::Verify { verify, client: c } => {
            client::run("verify", &c, |cl| supply::verify(cl, &verify, &c))
        }
        Command::Attest { attest, client: c } => {
            client::run("attest", &c, |cl| supply::attest(cl, &attest, &c))
        }
        Command::VerifyAttestation { verify, client: c } => {
            client::run("verify-attestation", &c, |cl| {
                supply::verify_attestation(cl, &verify, &c)
            })
        }
        Command::Sbom { sbom, client: c } => {
            client::run("sbom", &c, |cl| supply::sbom(cl, &sbom, &c))
        }
        Command::Tree {
            reference,
            client: c,
        } => client::run("tree", &c, |cl| supply::tree(cl, &reference, &c)),
        Command::Unpack { unpack, client: c } => {
            client::run("unpack", &c, |cl| run::unpack(cl, &unpack, &c))
        }
        Command::Run { run: r, client: c } => run::run_command(&r, &c),
        Command::Build {
            build: b,
            client: c,
        } => client::run("build", &c, |cl| build::build(cl, &b, &c)),
        Command::Diff { diff: d, client: c } => {
            client::run("diff", &c, |cl| build::diff(cl, &d, &c))
        }
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
            init_server_logging(&cfg.log);
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

fn passwd(file: &std::path::Path, user: &str, argon2: bool) -> ExitCode {
    use berth_auth::htpasswd::{HashAlgorithm, hash_password, set_user};
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("berth passwd: reading the password from stdin: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!(
            "berth passwd: give the password on stdin (echo \"$PASSWORD\" | berth passwd FILE USER)"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let alg = if argon2 {
        HashAlgorithm::Argon2id
    } else {
        HashAlgorithm::Bcrypt
    };
    let result = hash_password(password, alg).and_then(|h| set_user(file, user, &h));
    match result {
        Ok(()) => {
            println!("{}: password set for {user}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth passwd: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn bench(args: berth_bench::BenchArgs) -> ExitCode {
    init_logging("warn");
    let opts = match args.into_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("berth bench: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = berth_bench::run(&opts)
        .with_context(|| format!("{} against {}", opts.scenario.name(), opts.target.url()));
    match result {
        Ok(outcome) => {
            match opts.output {
                berth_bench::Output::Json => println!("{}", outcome.to_json()),
                berth_bench::Output::Text => print!("{}", outcome.to_text()),
            }
            if outcome.has_errors() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("berth bench: {e:#}");
            let code = e
                .downcast_ref::<berth_bench::BenchError>()
                .map_or(EXIT_CONFIG, berth_bench::BenchError::exit_code);
            ExitCode::from(code)
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

/// Set up `berth serve`'s logging to stderr: `[log] level` (unless BERTH_LOG
/// says otherwise) in `[log] format`.
fn init_server_logging(log: &berth_server::config::LogConfig) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    // Access lines are asked for by `[log] access`, whatever the level.
    if log.access
        && let Ok(d) = "berth::access=info".parse()
    {
        filter = filter.add_directive(d);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        berth_server::config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        berth_server::config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Set up logging to stderr at `level`, unless BERTH_LOG says otherwise.
pub(crate) fn init_logging(level: &str) {
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
    let scheme = if cfg.tls.enabled() { "https" } else { "http" };
    rt.block_on(berth_server::serve(
        cfg,
        |addr| {
            println!("berth listening on {scheme}://{addr} (data in {data_dir})");
            tracing::info!(%addr, "ready");
        },
        berth_server::shutdown_signal(),
    ))?;
    tracing::info!("stopped");
    Ok(())
}
