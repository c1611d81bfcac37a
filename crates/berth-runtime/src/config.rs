//! Image config → runtime `config.json`: [`convert`] turns an image's configuration (the
//! JSON of `application/vnd.oci.image.config.v1+json`, or Docker's
//! `application/vnd.docker.container.image.v1+json`, which has the same shape) plus the
//! caller's [`RunOptions`] into the runtime-spec configuration of a Linux container, and
//! [`validate`] checks such a configuration against the runtime-spec JSON schema.
//!
//! # Conversion (image-spec `conversion.md`)
//!
//! * `process.args` is `Config.Entrypoint` followed by `Config.Cmd` ("the converter MUST
//!   append the value of `Config.Cmd` to the value of `Config.Entrypoint`"). As with
//!   `docker run`, [`RunOptions::args`] replaces `Cmd` and keeps the entrypoint, and
//!   [`RunOptions::entrypoint`] replaces the entrypoint *and* drops the image's `Cmd`
//!   (only [`RunOptions::args`] follow it). Nothing left to run is [`ConfigError::NoCommand`].
//! * `process.env` is `Config.Env` (a later entry for the same name replaces an earlier one,
//!   in place), then [`RunOptions::env`] overriding or appending. Converter defaults are
//!   added only for names still absent (conversion.md: the converter "SHOULD NOT add entries
//!   that have variable names present in `Config.Env`"): `PATH` ([`DEFAULT_PATH`], first, as
//!   runc's template and Docker do), `HOME` from the user's `etc/passwd` entry (as Docker and
//!   umoci do), and `TERM=xterm` when a terminal is asked for (as Docker does).
//! * `process.cwd` is [`RunOptions::workdir`], else `Config.WorkingDir`, else `/`; it must be
//!   absolute (runtime-spec: "This value MUST be an absolute path").
//! * `process.user` comes from [`RunOptions::user`], else `Config.User` (`user`, `uid`,
//!   `user:group`, `uid:gid`, `uid:group`, `user:gid`), resolved through the rootfs's
//!   `etc/passwd` and `etc/group`, read without ever leaving the rootfs (an image may plant
//!   them as symlinks to host files): see the `user` submodule. With no user at all the
//!   process runs as uid 0, described by its passwd entry when there is one (as runc and
//!   Docker do). A name that does not resolve is [`ConfigError::User`] (conversion.md: "the
//!   converter MUST return an error"). Supplementary groups (`additionalGids`) are added only
//!   when no group is given, for a uid or name that has a passwd entry, as image-spec
//!   `config.md` says and runc, Docker and umoci do; conversion.md's "SHOULD NOT modify
//!   `additionalGids` if … `user` … is numeric" is not followed, since it contradicts
//!   `config.md` ("the default group and supplementary groups of the given `user`/`uid` …
//!   are applied") and every runtime.
//! * Annotations: `Config.Labels` verbatim; then, for keys the labels do not set (labels
//!   take precedence), `org.opencontainers.image.os`, `.architecture`, `.variant`,
//!   `.os.version`, `.os.features` (comma-joined), `.author`, `.created`, `.stopSignal`,
//!   `.exposedPorts` (the `Config.ExposedPorts` keys, sorted by port number then text,
//!   comma-joined) and berth's [`VOLUMES_ANNOTATION`] (the `Config.Volumes` paths, sorted,
//!   comma-joined). conversion.md leaves `Config.Volumes` to the implementation; berth
//!   records it only, and mounts nothing there: writes to a volume path land in the rootfs.
//!
//! # Defaults (runc's `runc spec` template, with the differences listed)
//!
//! `ociVersion` [`OCI_VERSION`] (the pinned runtime-spec, whose schema is vendored);
//! `root` `{path: "rootfs", readonly: RunOptions::read_only}` (runc's template has
//! `readonly: true`; berth follows `docker run`, writable unless asked); `hostname`
//! [`RunOptions::hostname`] or [`DEFAULT_HOSTNAME`]; `terminal` false unless asked (runc's
//! template has true: it is meant for `runc run` from a shell); the mounts of runc's template
//! (`/proc`, `/dev` tmpfs, `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys` read-only sysfs,
//! `/sys/fs/cgroup` read-only); namespaces pid, network (left out for [`Network::Host`]),
//! ipc, uts, mount and cgroup (runc's template adds cgroup on cgroup-v2 hosts; berth always
//! does, as Docker does on cgroup v2, so the output does not depend on the host), plus user
//! when rootless; runc's `maskedPaths` and `readonlyPaths`; [`DEFAULT_CAPABILITIES`] in the
//! bounding, effective and permitted sets with inheritable and ambient empty;
//! `noNewPrivileges: true`; `RLIMIT_NOFILE` 1024/1024; `linux.resources` with runc's
//! deny-all device rule, `memory.limit` from [`RunOptions::memory_bytes`] and
//! `cpu.quota`/`cpu.period` from [`RunOptions::cpus`] (period [`CPU_PERIOD_US`]).
//!
//! The capability set is Docker's default, not runc's three (`CAP_AUDIT_WRITE`, `CAP_KILL`,
//! `CAP_NET_BIND_SERVICE`): images routinely start as root and then `chown` their data and
//! drop to a service user (`setuid`/`setgid`, e.g. the official nginx, redis and postgres
//! images), which runc's set forbids; berth runs images as `docker run` does.
//!
//! Rootless ([`RunOptions::rootless`]), as `runc spec --rootless` does: a user namespace
//! mapping container id 0 to the caller's host uid and gid (size 1); `/sys` bind-mounted
//! read-only from the host instead of a new sysfs (which an unprivileged user namespace may
//! not mount); no `uid=`/`gid=` mount options (devpts' `gid=5` names an unmapped group); no
//! cgroup resources unless memory or CPU limits are asked for (runc's rootless template
//! drops them all, as an unprivileged user usually cannot write the cgroup tree; asked-for
//! limits are kept and need a delegated cgroup v2 tree). Unlike runc's rootless template,
//! the network namespace is kept unless [`Network::Host`] is asked for: an unprivileged
//! user may create one, and it gives the container loopback only, which is what
//! [`Network::None`] promises. With one id mapped, only uid 0 and gid 0 exist in the
//! container: a user resolving to anything else is [`ConfigError::User`], and supplementary
//! groups are dropped (as umoci does).
//!
//! No seccomp profile, AppArmor or SELinux label is set (runc's template sets none either).

mod schema;
mod user;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// The runtime-spec version written to `ociVersion`: the pinned runtime-spec whose schema is
/// vendored in `crates/berth-runtime/schema/`.
pub const OCI_VERSION: &str = "1.3.0";

/// `PATH` added when neither the image nor the caller sets one (runc's template's value,
/// also Docker's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname when [`RunOptions::hostname`] is not given.
pub const DEFAULT_HOSTNAME: &str = "berth";

/// The annotation recording the image's `Config.Volumes`: the paths, sorted, joined with
/// `,`. image-spec conversion.md leaves volumes to the implementation; berth mounts nothing
/// for them.
pub const VOLUMES_ANNOTATION: &str = "dev.berth.image.volumes";

/// `linux.resources.cpu.period` written with a CPU limit, in microseconds (100 ms, the
/// kernel's and Docker's default period).
pub const CPU_PERIOD_US: i64 = 100_000;

/// The capabilities given to the process (bounding, effective and permitted): Docker's
/// default set. See the module documentation for why not runc's.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `linux.maskedPaths`, as runc's template has them.
const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    "/sys/devices/virtual/tpm",
];

/// `linux.readonlyPaths`, as runc's template has them.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Annotation keys the image-spec defines for image config fields (conversion.md,
/// "Annotation Fields" and "Config.ExposedPorts").
const ANNOTATION_OS: &str = "org.opencontainers.image.os";
const ANNOTATION_ARCHITECTURE: &str = "org.opencontainers.image.architecture";
const ANNOTATION_VARIANT: &str = "org.opencontainers.image.variant";
const ANNOTATION_OS_VERSION: &str = "org.opencontainers.image.os.version";
const ANNOTATION_OS_FEATURES: &str = "org.opencontainers.image.os.features";
const ANNOTATION_AUTHOR: &str = "org.opencontainers.image.author";
const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
const ANNOTATION_STOP_SIGNAL: &str = "org.opencontainers.image.stopSignal";
const ANNOTATION_EXPOSED_PORTS: &str = "org.opencontainers.image.exposedPorts";

/// What the caller overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replaces the image's `Cmd` (the entrypoint is kept), as `docker run IMAGE ARGS…`.
    /// `Some(vec![])` clears `Cmd`.
    pub args: Option<Vec<String>>,
    /// Replaces the image's `Entrypoint` and drops its `Cmd`, as `docker run --entrypoint`;
    /// `Some(vec![])` clears the entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries, each replacing the image's value of `KEY` or appended.
    pub env: Vec<String>,
    /// Replaces the image's `WorkingDir`; must be absolute.
    pub workdir: Option<String>,
    /// Replaces the image's `User`, in the same forms (`user`, `uid`, `user:group`, …).
    pub user: Option<String>,
    /// The container's network: its own empty namespace (default) or the host's.
    pub network: Network,
    /// Mount the root filesystem read-only.
    pub read_only: bool,
    /// Memory limit in bytes (`linux.resources.memory.limit`); must be positive.
    pub memory_bytes: Option<i64>,
    /// CPU limit in CPUs (`1.5` = one and a half CPUs), written as a CFS quota per
    /// [`CPU_PERIOD_US`]; at least 0.01.
    pub cpus: Option<f64>,
    /// Attach a pseudo-terminal (`process.terminal`).
    pub terminal: bool,
    /// The container's hostname; [`DEFAULT_HOSTNAME`] when absent.
    pub hostname: Option<String>,
    /// Run rootless: map container id 0 to this host uid and gid.
    pub rootless: Option<IdMapping>,
}

/// The host ids container id 0 maps to in a rootless container (one id each, as
/// `runc spec --rootless` writes: `{containerID: 0, hostID, size: 1}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    /// Host uid that container uid 0 maps to (usually the caller's effective uid).
    pub host_uid: u32,
    /// Host gid that container gid 0 maps to (usually the caller's effective gid).
    pub host_gid: u32,
}

/// The container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A new network namespace with nothing but loopback.
    #[default]
    None,
    /// The host's network namespace (no `network` entry in `linux.namespaces`).
    Host,
}

/// Why an image config could not be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The user (image `Config.User` or [`RunOptions::user`]) is malformed, names a user or
    /// group the rootfs does not have, or cannot run in a rootless container.
    #[error("user {user:?}: {reason}")]
    User {
        /// The user as given.
        user: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of the image config has the wrong type or an unusable value.
    #[error("image config {path}: {reason}")]
    Field {
        /// JSON pointer to the field in the image config (`/config/Env/2`; `""` for the
        /// whole document).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A [`RunOptions`] value is unusable.
    #[error("option {option}: {reason}")]
    RunOption {
        /// The [`RunOptions`] field.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither the image (`Entrypoint`, `Cmd`) nor the caller gives anything to run.
    #[error("nothing to run: the image has neither Entrypoint nor Cmd, and no command was given")]
    NoCommand,
    /// Reading `etc/passwd` or `etc/group` in the rootfs failed, or the file was refused
    /// (not a regular file, too large, or a symlink where `openat2` is unavailable).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or the rootfs itself).
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Convert an image config (the raw JSON of `application/vnd.oci.image.config.v1+json` or
/// Docker's) into a runtime-spec `config.json` value for the bundle whose root filesystem is
/// `rootfs` (written as `root.path: "rootfs"`), resolving `User` through the rootfs's
/// `etc/passwd` and `etc/group` without following any symlink out of the rootfs.
///
/// See the [module documentation](self) for the mapping and every default.
///
/// # Errors
///
/// [`ConfigError::Field`] for a malformed image config (or an `os` other than `linux`),
/// [`ConfigError::RunOption`] for an unusable option, [`ConfigError::NoCommand`] when there is
/// nothing to run, [`ConfigError::User`] when the user does not resolve, and
/// [`ConfigError::Io`] when the rootfs's user databases cannot be read safely.
pub fn convert(
    image_config: &Value,
    rootfs: &Path,
    opts: &RunOptions,
) -> Result<Value, ConfigError> {
    let image = image_config.as_object().ok_or_else(|| ConfigError::Field {
        path: String::new(),
        reason: "an image config must be a JSON object".to_owned(),
    })?;
    let os = optional_string(image, "", "os")?;
    if let Some(os) = os
        && os != "linux"
    {
        return Err(ConfigError::Field {
            path: "/os".to_owned(),
            reason: format!("{os:?} images cannot run here: only linux is supported"),
        });
    }
    let empty = Map::new();
    let config = match image.get("config") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(config)) => config,
        Some(other) => return Err(wrong_type("/config", "an object", other)),
    };

    let args = process_args(config, opts)?;
    let cwd = working_dir(config, opts)?;
    let user_spec = match &opts.user {
        Some(user) => user.clone(),
        None => optional_string(config, "/config", "User")?
            .unwrap_or_default()
            .to_owned(),
    };
    let mut user = user::resolve(&user_spec, rootfs)?;
    if opts.rootless.is_some() {
        if user.uid != 0 || user.gid != 0 {
            return Err(ConfigError::User {
                user: user_spec,
                reason: format!(
                    "resolves to uid {} gid {}, but a rootless container maps only id 0 \
                     (run it as user 0:0)",
                    user.uid, user.gid
                ),
            });
        }
        if !user.additional_gids.is_empty() {
            tracing::debug!(
                gids = ?user.additional_gids,
                "rootless: dropping supplementary groups, which are not mapped"
            );
            user.additional_gids.clear();
        }
    }
    let env = process_env(config, opts, user.home.as_deref())?;
    let annotations = annotations(image, config)?;
    let resources = resources(opts)?;

    let mut process_user = Map::new();
    process_user.insert("uid".to_owned(), json!(user.uid));
    process_user.insert("gid".to_owned(), json!(user.gid));
    if !user.additional_gids.is_empty() {
        process_user.insert("additionalGids".to_owned(), json!(user.additional_gids));
    }

    let mut linux = Map::new();
    if let Some(mapping) = opts.rootless {
        linux.insert(
            "uidMappings".to_owned(),
            json!([{"containerID": 0, "hostID": mapping.host_uid, "size": 1}]),
        );
        linux.insert(
            "gidMappings".to_owned(),
            json!([{"containerID": 0, "hostID": mapping.host_gid, "size": 1}]),
        );
    }
    if let Some(resources) = resources {
        linux.insert("resources".to_owned(), resources);
    }
    linux.insert("namespaces".to_owned(), namespaces(opts));
    linux.insert("maskedPaths".to_owned(), json!(MASKED_PATHS));
    linux.insert("readonlyPaths".to_owned(), json!(READONLY_PATHS));

    let mut spec = Map::new();
    spec.insert("ociVersion".to_owned(), json!(OCI_VERSION));
    spec.insert(
        "process".to_owned(),
        json!({
            "terminal": opts.terminal,
            "user": process_user,
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": DEFAULT_CAPABILITIES,
                "effective": DEFAULT_CAPABILITIES,
                "permitted": DEFAULT_CAPABILITIES,
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        }),
    );
    spec.insert(
        "root".to_owned(),
        json!({"path": "rootfs", "readonly": opts.read_only}),
    );
    spec.insert(
        "hostname".to_owned(),
        json!(opts.hostname.as_deref().unwrap_or(DEFAULT_HOSTNAME)),
    );
    spec.insert("mounts".to_owned(), mounts(opts.rootless.is_some()));
    spec.insert("linux".to_owned(), Value::Object(linux));
    if !annotations.is_empty() {
        spec.insert("annotations".to_owned(), Value::Object(annotations));
    }
    Ok(Value::Object(spec))
}

/// Validate `config` against the vendored runtime-spec schema (`config-schema.json` and the
/// files it references), reporting every violation as `JSON-pointer: message` (`(root)` for
/// the document itself), in document order.
///
/// # Errors
///
/// Every violation found; never empty.
pub fn validate(config: &Value) -> Result<(), Vec<String>> {
    schema::validate(config)
}

/// The vendored runtime-spec schema files, `(file name, text)`, exactly as embedded (and as
/// [`validate`] uses them), in file-name order.
pub fn vendored_schemas() -> impl Iterator<Item = (&'static str, &'static str)> {
    schema::VENDORED.into_iter()
}

/// `Entrypoint` + `Cmd`, with the caller's overrides.
fn process_args(
    config: &Map<String, Value>,
    opts: &RunOptions,
) -> Result<Vec<String>, ConfigError> {
    let mut args = match &opts.entrypoint {
        Some(entrypoint) => entrypoint.clone(),
        None => string_list(config, "/config", "Entrypoint")?,
    };
    match (&opts.args, &opts.entrypoint) {
        (Some(cmd), _) => args.extend(cmd.iter().cloned()),
        // A new entrypoint drops the image's Cmd, as `docker run --entrypoint` does.
        (None, Some(_)) => {}
        (None, None) => args.extend(string_list(config, "/config", "Cmd")?),
    }
    if args.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    Ok(args)
}

/// `process.cwd`: the caller's, the image's, or `/`.
fn working_dir(config: &Map<String, Value>, opts: &RunOptions) -> Result<String, ConfigError> {
    if let Some(workdir) = &opts.workdir {
        if !workdir.starts_with('/') {
            return Err(ConfigError::RunOption {
                option: "workdir",
                reason: format!("{workdir:?} is not an absolute path"),
            });
        }
        return Ok(workdir.clone());
    }
    match optional_string(config, "/config", "WorkingDir")? {
        None | Some("") => Ok("/".to_owned()),
        Some(dir) if dir.starts_with('/') => Ok(dir.to_owned()),
        Some(dir) => Err(ConfigError::Field {
            path: "/config/WorkingDir".to_owned(),
            reason: format!("{dir:?} is not an absolute path"),
        }),
    }
}

/// `process.env`: the image's, the caller's over it, then the defaults for absent names.
fn process_env(
    config: &Map<String, Value>,
    opts: &RunOptions,
    home: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let mut env: Vec<String> = Vec::new();
    for (index, entry) in string_list(config, "/config", "Env")?
        .into_iter()
        .enumerate()
    {
        let name = env_name(&entry).ok_or_else(|| ConfigError::Field {
            path: format!("/config/Env/{index}"),
            reason: format!("{entry:?} is not NAME=VALUE"),
        })?;
        set_env(&mut env, name.len(), entry);
    }
    for entry in &opts.env {
        let name = env_name(entry).ok_or_else(|| ConfigError::RunOption {
            option: "env",
            reason: format!("{entry:?} is not NAME=VALUE"),
        })?;
        set_env(&mut env, name.len(), entry.clone());
    }
    let has = |env: &[String], name: &str| env.iter().any(|entry| env_name(entry) == Some(name));
    if !has(&env, "PATH") {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    if let Some(home) = home
        && !has(&env, "HOME")
    {
        env.push(format!("HOME={home}"));
    }
    if opts.terminal && !has(&env, "TERM") {
        env.push("TERM=xterm".to_owned());
    }
    Ok(env)
}

/// The name of a `NAME=VALUE` entry; `None` when there is no `=` or the name is empty.
fn env_name(entry: &str) -> Option<&str> {
    match entry.split_once('=') {
        Some((name, _)) if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// Replaces the entry with the same name (the first `name_len` bytes and the `=`) in place,
/// or appends.
fn set_env(env: &mut Vec<String>, name_len: usize, entry: String) {
    let prefix = &entry[..=name_len];
    match env.iter_mut().find(|existing| existing.starts_with(prefix)) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// Labels, then the implicit annotations for keys the labels leave unset.
fn annotations(
    image: &Map<String, Value>,
    config: &Map<String, Value>,
) -> Result<Map<String, Value>, ConfigError> {
    let mut annotations = Map::new();
    match config.get("Labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                let Value::String(_) = value else {
                    return Err(wrong_type(
                        &format!("/config/Labels/{}", escape_pointer(key)),
                        "a string",
                        value,
                    ));
                };
                annotations.insert(key.clone(), value.clone());
            }
        }
        Some(other) => return Err(wrong_type("/config/Labels", "an object", other)),
    }

    let mut implicit: Vec<(&str, String)> = Vec::new();
    for (key, field) in [
        (ANNOTATION_OS, "os"),
        (ANNOTATION_ARCHITECTURE, "architecture"),
        (ANNOTATION_VARIANT, "variant"),
        (ANNOTATION_OS_VERSION, "os.version"),
    ] {
        if let Some(value) = optional_string(image, "", field)? {
            implicit.push((key, value.to_owned()));
        }
    }
    let features = string_list(image, "", "os.features")?;
    if !features.is_empty() {
        implicit.push((ANNOTATION_OS_FEATURES, features.join(",")));
    }
    for (key, field) in [
        (ANNOTATION_AUTHOR, "author"),
        (ANNOTATION_CREATED, "created"),
    ] {
        if let Some(value) = optional_string(image, "", field)? {
            implicit.push((key, value.to_owned()));
        }
    }
    if let Some(signal) = optional_string(config, "/config", "StopSignal")? {
        implicit.push((ANNOTATION_STOP_SIGNAL, signal.to_owned()));
    }
    let mut ports = set_keys(config, "ExposedPorts")?;
    if !ports.is_empty() {
        ports.sort_by(|a, b| port_sort_key(a).cmp(&port_sort_key(b)));
        implicit.push((ANNOTATION_EXPOSED_PORTS, ports.join(",")));
    }
    let mut volumes = set_keys(config, "Volumes")?;
    if !volumes.is_empty() {
        volumes.sort();
        implicit.push((VOLUMES_ANNOTATION, volumes.join(",")));
    }
    for (key, value) in implicit {
        if !annotations.contains_key(key) {
            annotations.insert(key.to_owned(), Value::String(value));
        }
    }
    Ok(annotations)
}

/// Sort key of an `ExposedPorts` key (`80/tcp`, `53/udp`, `8080`): the port number first,
/// so `80/tcp` comes before `443/tcp`, then the whole text.
fn port_sort_key(port: &str) -> (u32, &str) {
    let digits = port.split('/').next().unwrap_or_default();
    (digits.parse().unwrap_or(u32::MAX), port)
}

/// `linux.resources`: runc's deny-all device rule (not when rootless) and the limits asked
/// for; `None` when there is nothing to write.
fn resources(opts: &RunOptions) -> Result<Option<Value>, ConfigError> {
    let mut resources = Map::new();
    if opts.rootless.is_none() {
        resources.insert(
            "devices".to_owned(),
            json!([{"allow": false, "access": "rwm"}]),
        );
    }
    if let Some(limit) = opts.memory_bytes {
        if limit <= 0 {
            return Err(ConfigError::RunOption {
                option: "memory_bytes",
                reason: format!("{limit} is not a positive number of bytes"),
            });
        }
        resources.insert("memory".to_owned(), json!({"limit": limit}));
    }
    if let Some(cpus) = opts.cpus {
        // The kernel's smallest quota is 1 ms per period: 0.01 CPU at a 100 ms period.
        let max_cpus = (i64::MAX / CPU_PERIOD_US) as f64;
        if !cpus.is_finite() || !(0.01..=max_cpus).contains(&cpus) {
            return Err(ConfigError::RunOption {
                option: "cpus",
                reason: format!("{cpus} is not a number of CPUs between 0.01 and {max_cpus}"),
            });
        }
        // In range, so the rounded product fits an i64.
        let quota = (cpus * CPU_PERIOD_US as f64).round() as i64;
        resources.insert(
            "cpu".to_owned(),
            json!({"quota": quota, "period": CPU_PERIOD_US}),
        );
    }
    Ok((!resources.is_empty()).then_some(Value::Object(resources)))
}

/// `linux.namespaces`.
fn namespaces(opts: &RunOptions) -> Value {
    let mut namespaces = vec!["pid"];
    if opts.network == Network::None {
        namespaces.push("network");
    }
    namespaces.extend(["ipc", "uts", "mount", "cgroup"]);
    if opts.rootless.is_some() {
        namespaces.push("user");
    }
    Value::Array(
        namespaces
            .into_iter()
            .map(|kind| json!({"type": kind}))
            .collect(),
    )
}

/// `mounts`: runc's template, or its rootless variant.
fn mounts(rootless: bool) -> Value {
    let devpts_options: &[&str] = if rootless {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]
    } else {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]
    };
    let sys = if rootless {
        json!({
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        })
    } else {
        json!({
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        })
    };
    json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": devpts_options,
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        sys,
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ])
}

/// The string at `object[key]`; `None` when absent or null.
fn optional_string<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(wrong_type(
            &format!("{parent}/{}", escape_pointer(key)),
            "a string",
            other,
        )),
    }
}

/// The array of strings at `object[key]`; empty when absent or null.
fn string_list(
    object: &Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Vec<String>, ConfigError> {
    let path = format!("{parent}/{}", escape_pointer(key));
    match object.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(wrong_type(&format!("{path}/{index}"), "a string", other)),
            })
            .collect(),
        Some(other) => Err(wrong_type(&path, "an array of strings", other)),
    }
}

/// The keys of a Go `map[string]struct{}` field of `Config` (`ExposedPorts`, `Volumes`);
/// empty when absent or null.
fn set_keys(config: &Map<String, Value>, key: &str) -> Result<Vec<String>, ConfigError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(set)) => Ok(set.keys().cloned().collect()),
        Some(other) => Err(wrong_type(&format!("/config/{key}"), "an object", other)),
    }
}

/// [`ConfigError::Field`] for a value of the wrong JSON type.
fn wrong_type(path: &str, expected: &str, found: &Value) -> ConfigError {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ConfigError::Field {
        path: path.to_owned(),
        reason: format!("expected {expected}, found {found}"),
    }
}

/// `key` escaped as one JSON pointer token (RFC 6901: `~` → `~0`, `/` → `~1`).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
