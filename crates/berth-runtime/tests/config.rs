//! Image config → runtime `config.json` conversion (`berth_runtime::config::convert`),
//! checked against image-spec `conversion.md` and runtime-spec `config.md` /
//! `config-linux.md`. Every produced configuration is also validated against the vendored
//! runtime-spec schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use berth_runtime::config::{
    ConfigError, DEFAULT_CAPABILITIES, DEFAULT_HOSTNAME, DEFAULT_PATH, IdMapping, Network,
    OCI_VERSION, RunOptions, VOLUMES_ANNOTATION, convert, validate,
};
use serde_json::{Value, json};
use tempfile::TempDir;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
nohome:x:1002:100::
";

const GROUP: &str = "\
root:x:0:
wheel:x:10:root,alice
staff:x:50:alice,bob
alice:x:1000:
bob:x:1001:
users:x:100:
audio:x:29:alice
";

/// A bundle directory whose `rootfs/` has `etc/passwd` and `etc/group`.
struct Bundle {
    dir: TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let bundle = Bundle::empty();
        std::fs::create_dir_all(bundle.rootfs().join("etc")).unwrap();
        std::fs::write(bundle.rootfs().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(bundle.rootfs().join("etc/group"), GROUP).unwrap();
        bundle
    }

    /// A bundle whose rootfs has no `etc` at all.
    fn empty() -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        Bundle { dir }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

/// An image config with only a command.
fn minimal_image() -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": []}
    })
}

/// `image` with `config.User` set to `user`.
fn image_with_user(user: &str) -> Value {
    let mut image = minimal_image();
    image["config"]["User"] = json!(user);
    image
}

/// Converts, and checks the result against the runtime-spec schema.
fn convert_ok(image: &Value, rootfs: &Path, opts: &RunOptions) -> Value {
    let config = convert(image, rootfs, opts).unwrap_or_else(|error| panic!("{error}"));
    if let Err(violations) = validate(&config) {
        panic!(
            "converted config breaks the runtime-spec schema:\n{}\n{config:#}",
            violations.join("\n")
        );
    }
    config
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item.as_str().unwrap())
        .collect()
}

fn namespaces(config: &Value) -> Vec<&str> {
    config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["type"].as_str().unwrap())
        .collect()
}

fn mount<'a>(config: &'a Value, destination: &str) -> &'a Value {
    config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|mount| mount["destination"] == destination)
        .unwrap_or_else(|| panic!("no {destination} mount"))
}

/// image-spec `conversion.md`, "Verbatim Fields": "A compliant configuration converter MUST
/// extract the following fields verbatim …: `Config.WorkingDir` → `process.cwd`,
/// `Config.Env` → `process.env`, `Config.Entrypoint` / `Config.Cmd` → `process.args`" and
/// "If both `Config.Entrypoint` and `Config.Cmd` are specified, the converter MUST append the
/// value of `Config.Cmd` to the value of `Config.Entrypoint`"; "Annotation Fields": `os`,
/// `architecture`, `variant`, `os.version`, `os.features`, `author`, `created`,
/// `Config.Labels`, `Config.StopSignal` → `annotations` ("The value of this field MUST be set
/// as the value of `org.opencontainers.image.…`"); "Optional Fields": "converters SHOULD set
/// the `org.opencontainers.image.exposedPorts` annotation … the list of values that
/// correspond to the keys defined for `Config.ExposedPorts` (string, comma-separated
/// values)"; `Config.Volumes` is implementation-defined (berth: an annotation).
#[test]
fn a_full_image_config_converts_field_by_field() {
    let bundle = Bundle::new();
    let image = json!({
        "created": "2015-10-31T22:22:56.015925234Z",
        "author": "Alyssa P. Hacker <alyspdev@example.com>",
        "architecture": "arm64",
        "variant": "v8",
        "os": "linux",
        "os.version": "6.1",
        "os.features": ["a", "b"],
        "config": {
            "User": "alice",
            "ExposedPorts": {"8080/tcp": {}, "443/tcp": {}, "53/udp": {}, "80": {}},
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "FOO=oci_is_a",
                "BAR=well_written_spec"
            ],
            "Entrypoint": ["/bin/my-app-binary"],
            "Cmd": ["--foreground", "--config", "/etc/my-app.d/default.cfg"],
            "Volumes": {"/var/log/my-app-logs": {}, "/var/job-result-data": {}},
            "WorkingDir": "/home/alice",
            "Labels": {
                "com.example.project.git.url": "https://example.com/project.git",
                "com.example.project.git.commit": "45a939b2999782a3f005621a8d0f29aa387e1d6b"
            },
            "StopSignal": "SIGRTMIN+3",
            "ArgsEscaped": true,
            "Healthcheck": {"Test": ["CMD", "true"]}
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created_by": "/bin/sh -c #(nop) CMD [\"sh\"]", "empty_layer": true}]
    });
    let config = convert_ok(&image, &bundle.rootfs(), &RunOptions::default());
    let process = &config["process"];
    assert_eq!(
        strings(&process["args"]),
        [
            "/bin/my-app-binary",
            "--foreground",
            "--config",
            "/etc/my-app.d/default.cfg"
        ]
    );
    assert_eq!(
        strings(&process["env"]),
        [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "FOO=oci_is_a",
            "BAR=well_written_spec",
            "HOME=/home/alice"
        ]
    );
    assert_eq!(process["cwd"], "/home/alice");
    assert_eq!(
        process["user"],
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 50, 29]})
    );
    assert_eq!(
        config["annotations"],
        json!({
            "com.example.project.git.url": "https://example.com/project.git",
            "com.example.project.git.commit": "45a939b2999782a3f005621a8d0f29aa387e1d6b",
            "org.opencontainers.image.os": "linux",
            "org.opencontainers.image.architecture": "arm64",
            "org.opencontainers.image.variant": "v8",
            "org.opencontainers.image.os.version": "6.1",
            "org.opencontainers.image.os.features": "a,b",
            "org.opencontainers.image.author": "Alyssa P. Hacker <alyspdev@example.com>",
            "org.opencontainers.image.created": "2015-10-31T22:22:56.015925234Z",
            "org.opencontainers.image.stopSignal": "SIGRTMIN+3",
            "org.opencontainers.image.exposedPorts": "53/udp,80,443/tcp,8080/tcp",
            VOLUMES_ANNOTATION: "/var/job-result-data,/var/log/my-app-logs"
        })
    );
    // Volumes are recorded, not mounted.
    assert_eq!(config["mounts"].as_array().unwrap().len(), 7);
}

/// The defaults berth adds (conversion.md: "The values of runtime configuration properties
/// not specified by this document are implementation-defined"), modelled on `runc spec`.
/// runtime-spec `config.md`: "`ociVersion` (string, REQUIRED) MUST be in SemVer v2.0.0
/// format"; "`root` … `path` … The value SHOULD be the conventional `rootfs`";
/// `config-linux.md`, "Default Filesystems": "/proc proc, /sys sysfs, /dev/pts devpts,
/// /dev/shm tmpfs SHOULD be made available".
#[test]
fn defaults_follow_the_runc_template() {
    let bundle = Bundle::new();
    let config = convert_ok(&minimal_image(), &bundle.rootfs(), &RunOptions::default());
    assert_eq!(config["ociVersion"], OCI_VERSION);
    assert_eq!(OCI_VERSION, "1.3.0");
    assert_eq!(config["root"], json!({"path": "rootfs", "readonly": false}));
    assert_eq!(config["hostname"], DEFAULT_HOSTNAME);
    let process = &config["process"];
    assert_eq!(process["terminal"], false);
    assert_eq!(process["cwd"], "/");
    assert_eq!(process["noNewPrivileges"], true);
    assert_eq!(
        process["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
    );
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(strings(&process["capabilities"][set]), DEFAULT_CAPABILITIES);
    }
    for set in ["inheritable", "ambient"] {
        assert_eq!(process["capabilities"][set], json!([]));
    }
    // No user: uid 0, described by root's passwd entry (root is in wheel).
    assert_eq!(
        process["user"],
        json!({"uid": 0, "gid": 0, "additionalGids": [10]})
    );
    assert_eq!(strings(&process["env"]), [DEFAULT_PATH, "HOME=/root"]);

    let destinations: Vec<&str> = config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mount| mount["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        destinations,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup"
        ]
    );
    assert_eq!(mount(&config, "/sys")["type"], "sysfs");
    assert!(strings(&mount(&config, "/sys")["options"]).contains(&"ro"));
    assert!(strings(&mount(&config, "/sys/fs/cgroup")["options"]).contains(&"ro"));
    assert!(strings(&mount(&config, "/dev/pts")["options"]).contains(&"gid=5"));
    assert_eq!(
        namespaces(&config),
        ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    );
    assert_eq!(
        config["linux"]["resources"],
        json!({"devices": [{"allow": false, "access": "rwm"}]})
    );
    assert!(strings(&config["linux"]["maskedPaths"]).contains(&"/proc/kcore"));
    assert!(strings(&config["linux"]["readonlyPaths"]).contains(&"/proc/sys"));
    assert!(config["linux"].get("uidMappings").is_none());
    // Only the implicit annotations the image has.
    assert_eq!(
        config["annotations"],
        json!({
            "org.opencontainers.image.os": "linux",
            "org.opencontainers.image.architecture": "amd64"
        })
    );
}

/// image-spec `config.md`, `Cmd`: "Default arguments to the entrypoint of the container.
/// These values act as defaults and may be replaced by any specified when creating a
/// container"; `Entrypoint`: "may be replaced by an entrypoint specified when creating a
/// container"; conversion.md: externally provided inputs "are considered to be a
/// modification of the [image config] … and such modifications have no restrictions".
#[test]
fn run_arguments_replace_cmd_and_keep_the_entrypoint() {
    let bundle = Bundle::new();
    let mut image = minimal_image();
    image["config"]["Entrypoint"] = json!(["/entry", "-v"]);
    image["config"]["Cmd"] = json!(["default"]);
    let args = |opts: RunOptions| {
        let config = convert_ok(&image, &bundle.rootfs(), &opts);
        strings(&config["process"]["args"])
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(args(RunOptions::default()), ["/entry", "-v", "default"]);
    assert_eq!(
        args(RunOptions {
            args: Some(vec!["one".into(), "two".into()]),
            ..RunOptions::default()
        }),
        ["/entry", "-v", "one", "two"]
    );
    assert_eq!(
        args(RunOptions {
            args: Some(vec![]),
            ..RunOptions::default()
        }),
        ["/entry", "-v"]
    );
    // A new entrypoint drops the image's Cmd, as `docker run --entrypoint` does.
    assert_eq!(
        args(RunOptions {
            entrypoint: Some(vec!["/bin/echo".into()]),
            ..RunOptions::default()
        }),
        ["/bin/echo"]
    );
    assert_eq!(
        args(RunOptions {
            entrypoint: Some(vec!["/bin/echo".into()]),
            args: Some(vec!["hi".into()]),
            ..RunOptions::default()
        }),
        ["/bin/echo", "hi"]
    );
    // An emptied entrypoint leaves the arguments to name the program.
    assert_eq!(
        args(RunOptions {
            entrypoint: Some(vec![]),
            args: Some(vec!["/bin/true".into()]),
            ..RunOptions::default()
        }),
        ["/bin/true"]
    );
}

/// runtime-spec `config.md`, `process.args`: "at least one entry is REQUIRED (non-Windows)";
/// image-spec `config.md`: "If an `Entrypoint` value is not specified, then the first entry
/// of the `Cmd` array SHOULD be interpreted as the executable to run".
#[test]
fn cmd_alone_runs_and_nothing_to_run_is_a_clear_error() {
    let bundle = Bundle::new();
    let config = convert_ok(&minimal_image(), &bundle.rootfs(), &RunOptions::default());
    assert_eq!(strings(&config["process"]["args"]), ["/bin/sh"]);

    for image in [
        json!({"os": "linux", "architecture": "amd64", "config": {}}),
        json!({"os": "linux", "architecture": "amd64", "config": null}),
        json!({"os": "linux", "architecture": "amd64"}),
        json!({"config": {"Entrypoint": [], "Cmd": null}}),
    ] {
        let error = convert(&image, &bundle.rootfs(), &RunOptions::default()).unwrap_err();
        assert!(matches!(error, ConfigError::NoCommand), "{error:?}");
        assert!(error.to_string().contains("neither Entrypoint nor Cmd"));
        let config = convert_ok(
            &image,
            &bundle.rootfs(),
            &RunOptions {
                args: Some(vec!["/bin/true".into()]),
                ..RunOptions::default()
            },
        );
        assert_eq!(strings(&config["process"]["args"]), ["/bin/true"]);
    }
    let error = convert(
        &minimal_image(),
        &bundle.rootfs(),
        &RunOptions {
            entrypoint: Some(vec![]),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(error, ConfigError::NoCommand), "{error:?}");
}

/// image-spec `config.md`, `Env`: "These values act as defaults and are merged with any
/// specified when creating a container"; conversion.md, note 1: "The converter MAY add
/// additional entries to `process.env` but it SHOULD NOT add entries that have variable
/// names present in `Config.Env`" and "an implementation-defined default SHOULD NOT result
/// in an environment variable being removed or changed".
#[test]
fn environment_merges_options_over_the_image_and_defaults_only_fill_gaps() {
    let bundle = Bundle::new();
    let mut image = minimal_image();
    image["config"]["Env"] = json!(["A=1", "B=2=two", "HOME=/custom", "A=3"]);
    let config = convert_ok(
        &image,
        &bundle.rootfs(),
        &RunOptions {
            env: vec!["B=changed".into(), "C=".into(), "TERM=dumb".into()],
            terminal: true,
            ..RunOptions::default()
        },
    );
    // PATH was absent: the default comes first. The image's HOME is kept over root's
    // passwd home, the caller's TERM over the terminal default; a repeated name keeps its
    // first place and its last value.
    assert_eq!(
        strings(&config["process"]["env"]),
        [
            DEFAULT_PATH,
            "A=3",
            "B=changed",
            "HOME=/custom",
            "C=",
            "TERM=dumb"
        ]
    );
    assert_eq!(config["process"]["terminal"], true);

    // A terminal with no TERM gets TERM=xterm; an image PATH is never replaced.
    let mut image = minimal_image();
    image["config"]["Env"] = json!(["PATH=/opt/bin"]);
    let config = convert_ok(
        &image,
        &bundle.rootfs(),
        &RunOptions {
            terminal: true,
            ..RunOptions::default()
        },
    );
    assert_eq!(
        strings(&config["process"]["env"]),
        ["PATH=/opt/bin", "HOME=/root", "TERM=xterm"]
    );

    let mut image = minimal_image();
    image["config"]["Env"] = json!(["OK=1", "NOEQUALS"]);
    match convert(&image, &bundle.rootfs(), &RunOptions::default()).unwrap_err() {
        ConfigError::Field { path, .. } => assert_eq!(path, "/config/Env/1"),
        other => panic!("{other:?}"),
    }
    let error = convert(
        &minimal_image(),
        &bundle.rootfs(),
        &RunOptions {
            env: vec!["=value".into()],
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, ConfigError::RunOption { option: "env", .. }),
        "{error:?}"
    );
}

/// runtime-spec `config.md`: "`cwd` (string, REQUIRED) is the working directory that will be
/// set for the executable. This value MUST be an absolute path."; image-spec `WorkingDir`:
/// "This value acts as a default and may be replaced by a working directory specified when
/// creating a container."
#[test]
fn working_dir_defaults_to_root_and_must_be_absolute() {
    let bundle = Bundle::new();
    let cwd = |image: &Value, opts: &RunOptions| {
        convert_ok(image, &bundle.rootfs(), opts)["process"]["cwd"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut image = minimal_image();
    assert_eq!(cwd(&image, &RunOptions::default()), "/");
    image["config"]["WorkingDir"] = json!("");
    assert_eq!(cwd(&image, &RunOptions::default()), "/");
    image["config"]["WorkingDir"] = json!("/srv/app");
    assert_eq!(cwd(&image, &RunOptions::default()), "/srv/app");
    let override_dir = RunOptions {
        workdir: Some("/tmp".into()),
        ..RunOptions::default()
    };
    assert_eq!(cwd(&image, &override_dir), "/tmp");

    image["config"]["WorkingDir"] = json!("relative/dir");
    match convert(&image, &bundle.rootfs(), &RunOptions::default()).unwrap_err() {
        ConfigError::Field { path, .. } => assert_eq!(path, "/config/WorkingDir"),
        other => panic!("{other:?}"),
    }
    let error = convert(
        &minimal_image(),
        &bundle.rootfs(),
        &RunOptions {
            workdir: Some("tmp".into()),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::RunOption {
                option: "workdir",
                ..
            }
        ),
        "{error:?}"
    );
}

/// conversion.md, "Annotations": "If there is a conflict (same key but different value)
/// between an implicit annotation … and an explicitly specified annotation in
/// `Config.Labels`, the value specified in `Config.Labels` MUST take precedence" and "A
/// converter MUST NOT modify the values of annotations specified in the image".
#[test]
fn labels_take_precedence_over_implicit_annotations() {
    let bundle = Bundle::new();
    let mut image = minimal_image();
    image["author"] = json!("someone");
    image["config"]["StopSignal"] = json!("SIGQUIT");
    image["config"]["ExposedPorts"] = json!({"80/tcp": {}});
    image["config"]["Volumes"] = json!({"/data": {}});
    image["config"]["Labels"] = json!({
        "org.opencontainers.image.architecture": "label-arch",
        "org.opencontainers.image.author": "",
        "org.opencontainers.image.stopSignal": "SIGKILL",
        "org.opencontainers.image.exposedPorts": "9999/tcp",
        VOLUMES_ANNOTATION: "/label"
    });
    let config = convert_ok(&image, &bundle.rootfs(), &RunOptions::default());
    let annotations = &config["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.architecture"],
        "label-arch"
    );
    assert_eq!(annotations["org.opencontainers.image.author"], "");
    assert_eq!(
        annotations["org.opencontainers.image.stopSignal"],
        "SIGKILL"
    );
    assert_eq!(
        annotations["org.opencontainers.image.exposedPorts"],
        "9999/tcp"
    );
    assert_eq!(annotations[VOLUMES_ANNOTATION], "/label");
    assert_eq!(annotations["org.opencontainers.image.os"], "linux");
}

/// image-spec `config.md`, "Properties": "Any OPTIONAL field MAY also be set to null, which
/// is equivalent to being absent"; fields of the wrong type are errors naming the field.
/// Docker's config (`application/vnd.docker.container.image.v1+json`) has the same `config`
/// object and converts the same way.
#[test]
fn nulls_are_absent_and_wrong_types_name_the_field() {
    let bundle = Bundle::new();
    let image = json!({
        "architecture": "amd64",
        "os": "linux",
        "author": null,
        "config": {
            "Hostname": "",
            "User": null,
            "Env": null,
            "Entrypoint": null,
            "Cmd": ["/bin/sh"],
            "Labels": null,
            "ExposedPorts": null,
            "Volumes": null,
            "WorkingDir": null,
            "StopSignal": null,
            "OnBuild": null
        },
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"/bin/sh\"]"]},
        "docker_version": "20.10.7",
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let config = convert_ok(&image, &bundle.rootfs(), &RunOptions::default());
    assert_eq!(strings(&config["process"]["args"]), ["/bin/sh"]);

    let field_error = |image: Value| match convert(&image, &bundle.rootfs(), &RunOptions::default())
    {
        Err(ConfigError::Field { path, .. }) => path,
        other => panic!("{other:?}"),
    };
    assert_eq!(field_error(json!([1, 2])), "");
    assert_eq!(field_error(json!({"config": "x"})), "/config");
    assert_eq!(
        field_error(json!({"config": {"Cmd": "sh -c true"}})),
        "/config/Cmd"
    );
    assert_eq!(
        field_error(json!({"config": {"Cmd": ["sh", 1]}})),
        "/config/Cmd/1"
    );
    assert_eq!(
        field_error(json!({"config": {"Cmd": ["sh"], "Labels": {"a/b": 1}}})),
        "/config/Labels/a~1b"
    );
    assert_eq!(
        field_error(json!({"config": {"Cmd": ["sh"], "ExposedPorts": ["80"]}})),
        "/config/ExposedPorts"
    );
    assert_eq!(
        field_error(json!({"config": {"Cmd": ["sh"], "User": 1000}})),
        "/config/User"
    );
    assert_eq!(
        field_error(json!({"os": "windows", "config": {"Cmd": ["cmd.exe"]}})),
        "/os"
    );
}

/// The result of converting an image whose `Config.User` is `user`: `(uid, gid,
/// additionalGids, HOME)`.
fn resolved(
    bundle: &Bundle,
    user: &str,
) -> Result<(u64, u64, Vec<u64>, Option<String>), ConfigError> {
    let config = convert(
        &image_with_user(user),
        &bundle.rootfs(),
        &RunOptions::default(),
    )?;
    if let Err(violations) = validate(&config) {
        panic!("{violations:?}");
    }
    let process_user = &config["process"]["user"];
    let gids = process_user
        .get("additionalGids")
        .map(|gids| {
            gids.as_array()
                .unwrap()
                .iter()
                .map(|gid| gid.as_u64().unwrap())
                .collect()
        })
        .unwrap_or_default();
    let home = strings(&config["process"]["env"])
        .into_iter()
        .find_map(|entry| entry.strip_prefix("HOME="))
        .map(str::to_owned);
    Ok((
        process_user["uid"].as_u64().unwrap(),
        process_user["gid"].as_u64().unwrap(),
        gids,
        home,
    ))
}

/// image-spec `config.md`, `User`: "For Linux based systems, all of the following are
/// valid: `user`, `uid`, `user:group`, `uid:gid`, `uid:group`, `user:gid`. If `group`/`gid`
/// is not specified, the default group and supplementary groups of the given `user`/`uid`
/// in `/etc/passwd` and `/etc/group` from the container are applied. If `group`/`gid` is
/// specified, supplementary groups from the container are ignored."; conversion.md,
/// `Config.User`: "If the values of `user` or `group` in `Config.User` are numeric (`uid`
/// or `gid`) then the values MUST be copied verbatim to `process.user.uid` and
/// `process.user.gid` respectively … [else] parsing `/etc/passwd` from the extracted
/// container's root filesystem".
#[test]
fn users_and_groups_resolve_through_the_rootfs() {
    let bundle = Bundle::new();
    let home = |path: &str| Some(path.to_owned());
    // name: primary group and home from passwd, supplementary groups from group lists.
    assert_eq!(
        resolved(&bundle, "alice").unwrap(),
        (1000, 1000, vec![10, 50, 29], home("/home/alice"))
    );
    assert_eq!(
        resolved(&bundle, "bob").unwrap(),
        (1001, 1001, vec![50], home("/home/bob"))
    );
    // name:group and name:gid: that group, no supplementary groups.
    assert_eq!(
        resolved(&bundle, "alice:staff").unwrap(),
        (1000, 50, vec![], home("/home/alice"))
    );
    assert_eq!(
        resolved(&bundle, "alice:4242").unwrap(),
        (1000, 4242, vec![], home("/home/alice"))
    );
    // uid only: verbatim, with the entry's group and groups when the uid has one.
    assert_eq!(
        resolved(&bundle, "1000").unwrap(),
        (1000, 1000, vec![10, 50, 29], home("/home/alice"))
    );
    assert_eq!(resolved(&bundle, "4242").unwrap(), (4242, 0, vec![], None));
    // An entry with an empty home sets no HOME.
    assert_eq!(
        resolved(&bundle, "nohome").unwrap(),
        (1002, 100, vec![], None)
    );
    // uid:gid verbatim; uid:group resolves the group.
    assert_eq!(
        resolved(&bundle, "1001:1234").unwrap(),
        (1001, 1234, vec![], home("/home/bob"))
    );
    assert_eq!(
        resolved(&bundle, "4242:staff").unwrap(),
        (4242, 50, vec![], None)
    );
    assert_eq!(
        resolved(&bundle, "0:0").unwrap(),
        (0, 0, vec![], home("/root"))
    );

    // The caller's user replaces the image's.
    let config = convert_ok(
        &image_with_user("alice"),
        &bundle.rootfs(),
        &RunOptions {
            user: Some("daemon".into()),
            ..RunOptions::default()
        },
    );
    assert_eq!(config["process"]["user"], json!({"uid": 1, "gid": 1}));
}

/// conversion.md, `Config.User`: "If `Config.User` does not correspond to a user in the
/// container's context, the converter MUST return an error."
#[test]
fn unknown_users_and_groups_are_errors() {
    let bundle = Bundle::new();
    for (user, reason) in [
        ("mallory", "no user named \"mallory\""),
        ("alice:nogroup", "no group named \"nogroup\""),
        ("1000:nogroup", "no group named \"nogroup\""),
        ("a:b:c", "more than one ':'"),
        (":staff", "user before ':' is empty"),
        ("alice:", "group after ':' is empty"),
        ("4294967295", "out of range"),
    ] {
        match resolved(&bundle, user) {
            Err(ConfigError::User {
                user: got,
                reason: got_reason,
            }) => {
                assert_eq!(got, user);
                assert!(got_reason.contains(reason), "{user}: {got_reason}");
            }
            other => panic!("{user}: {other:?}"),
        }
    }

    // A rootfs without etc/passwd or etc/group: names cannot resolve, numbers still do.
    let empty = Bundle::empty();
    assert!(matches!(
        resolved(&empty, "alice"),
        Err(ConfigError::User { .. })
    ));
    assert!(matches!(
        resolved(&empty, "1000:staff"),
        Err(ConfigError::User { .. })
    ));
    assert_eq!(resolved(&empty, "1000").unwrap(), (1000, 0, vec![], None));
    assert_eq!(resolved(&empty, "1000:7").unwrap(), (1000, 7, vec![], None));
    assert_eq!(resolved(&empty, "").unwrap(), (0, 0, vec![], None));
}

/// The image controls every file in the rootfs: `etc/passwd` planted as a symlink to a file
/// outside the rootfs (absolute, or climbing with `..`), or `etc` itself planted as a
/// symlink to a host directory, must never be read. The planted host file here names a user
/// `evil` (uid 4321); converting with `User: evil` must fail rather than resolve it.
#[test]
fn symlinks_planted_by_the_image_are_never_followed_out_of_the_rootfs() {
    let bundle = Bundle::new();
    let outside = bundle.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(
        outside.join("passwd"),
        "evil:x:4321:4321::/evil:/bin/sh\nalice:x:4321:4321::/evil:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(outside.join("group"), "evilgroup:x:4321:alice\n").unwrap();
    let passwd = bundle.rootfs().join("etc/passwd");
    let group = bundle.rootfs().join("etc/group");

    let absolute = outside.join("passwd").to_str().unwrap().to_owned();
    let through_proc = format!("/proc/self/root{absolute}");
    for target in [
        absolute.as_str(),
        "../../outside/passwd",
        "../../../../../../../../../etc/passwd",
        through_proc.as_str(),
    ] {
        std::fs::remove_file(&passwd).unwrap();
        std::os::unix::fs::symlink(target, &passwd).unwrap();
        let result = resolved(&bundle, "evil");
        assert!(
            matches!(
                result,
                Err(ConfigError::User { .. } | ConfigError::Io { .. })
            ),
            "{target}: {result:?}"
        );
    }

    // etc/group pointing outside: alice's supplementary groups never include 4321.
    std::fs::remove_file(&passwd).unwrap();
    std::fs::write(&passwd, PASSWD).unwrap();
    std::fs::remove_file(&group).unwrap();
    std::os::unix::fs::symlink(outside.join("group"), &group).unwrap();
    match resolved(&bundle, "alice") {
        Ok((uid, gid, gids, _)) => {
            assert_eq!((uid, gid), (1000, 1000));
            assert!(!gids.contains(&4321), "{gids:?}");
        }
        Err(error) => assert!(matches!(error, ConfigError::Io { .. }), "{error:?}"),
    }
    assert!(resolved(&bundle, "alice:evilgroup").is_err());

    // The whole etc directory replaced by a symlink to the host directory.
    std::fs::remove_dir_all(bundle.rootfs().join("etc")).unwrap();
    std::os::unix::fs::symlink(&outside, bundle.rootfs().join("etc")).unwrap();
    let result = resolved(&bundle, "evil");
    assert!(
        matches!(
            result,
            Err(ConfigError::User { .. } | ConfigError::Io { .. })
        ),
        "{result:?}"
    );
    let result = resolved(&bundle, "alice");
    assert!(
        !matches!(result, Ok((4321, ..))),
        "read the host's passwd through etc: {result:?}"
    );
}

/// A symlink that stays inside the rootfs is resolved as the container would see it: an
/// absolute target is relative to the rootfs, not to the host's `/`. (Where `openat2` is
/// unavailable, berth refuses every symlink instead, which is also safe.)
#[test]
fn symlinks_inside_the_rootfs_resolve_against_the_rootfs() {
    let bundle = Bundle::new();
    let lib = bundle.rootfs().join("usr/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(
        lib.join("passwd"),
        "carol:x:2000:2000::/home/carol:/bin/sh\n",
    )
    .unwrap();
    let passwd = bundle.rootfs().join("etc/passwd");
    std::fs::remove_file(&passwd).unwrap();
    std::os::unix::fs::symlink("/usr/lib/passwd", &passwd).unwrap();
    match resolved(&bundle, "carol") {
        Ok(found) => assert_eq!(found, (2000, 2000, vec![], Some("/home/carol".to_owned()))),
        Err(ConfigError::Io { source, .. }) => {
            assert!(
                source.to_string().contains("openat2 is unavailable"),
                "{source}"
            )
        }
        Err(other) => panic!("{other:?}"),
    }
}

/// runtime-spec `config-linux.md`, "Namespaces": "If a namespace type is not specified in
/// the `namespaces` array, the container MUST inherit the runtime namespace of that type";
/// `network`: "the container will have its own network stack".
#[test]
fn network_none_gets_a_namespace_and_host_shares_the_hosts() {
    let bundle = Bundle::new();
    let none = convert_ok(&minimal_image(), &bundle.rootfs(), &RunOptions::default());
    assert!(namespaces(&none).contains(&"network"));
    let host = convert_ok(
        &minimal_image(),
        &bundle.rootfs(),
        &RunOptions {
            network: Network::Host,
            ..RunOptions::default()
        },
    );
    assert_eq!(namespaces(&host), ["pid", "ipc", "uts", "mount", "cgroup"]);
}

/// runtime-spec `config.md`, `root.readonly`: "If true then the root filesystem MUST be
/// read-only inside the container, defaults to false"; `hostname`: "specifies the
/// container's hostname as seen by processes running inside the container".
#[test]
fn read_only_root_and_hostname() {
    let bundle = Bundle::new();
    let config = convert_ok(
        &minimal_image(),
        &bundle.rootfs(),
        &RunOptions {
            read_only: true,
            hostname: Some("web-1".into()),
            ..RunOptions::default()
        },
    );
    assert_eq!(config["root"], json!({"path": "rootfs", "readonly": true}));
    assert_eq!(config["hostname"], "web-1");
}

/// runtime-spec `config-linux.md`, "Memory": "`limit` (int64, OPTIONAL) - sets limit of
/// memory usage in bytes"; "CPU": "`quota` (int64, OPTIONAL) - specifies the total amount
/// of time in microseconds for which all tasks in a cgroup can run during one period (as
/// defined by `period` below)", "`period` (uint64, OPTIONAL) - specifies a period of time
/// in microseconds for how regularly a cgroup's access to CPU resources should be
/// reallocated".
#[test]
fn memory_and_cpu_limits() {
    let bundle = Bundle::new();
    let config = convert_ok(
        &minimal_image(),
        &bundle.rootfs(),
        &RunOptions {
            memory_bytes: Some(512 * 1024 * 1024),
            cpus: Some(1.5),
            ..RunOptions::default()
        },
    );
    assert_eq!(
        config["linux"]["resources"],
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 536870912},
            "cpu": {"quota": 150000, "period": 100000}
        })
    );
    let quota = |cpus: f64| {
        convert_ok(
            &minimal_image(),
            &bundle.rootfs(),
            &RunOptions {
                cpus: Some(cpus),
                ..RunOptions::default()
            },
        )["linux"]["resources"]["cpu"]["quota"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(quota(0.01), 1000);
    assert_eq!(quota(0.333), 33300);
    assert_eq!(quota(64.0), 6_400_000);

    for cpus in [0.0, -1.0, 0.001, f64::NAN, f64::INFINITY, 1e300] {
        let error = convert(
            &minimal_image(),
            &bundle.rootfs(),
            &RunOptions {
                cpus: Some(cpus),
                ..RunOptions::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::RunOption { option: "cpus", .. }),
            "{cpus}: {error:?}"
        );
    }
    for bytes in [0, -1] {
        let error = convert(
            &minimal_image(),
            &bundle.rootfs(),
            &RunOptions {
                memory_bytes: Some(bytes),
                ..RunOptions::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::RunOption {
                    option: "memory_bytes",
                    ..
                }
            ),
            "{bytes}: {error:?}"
        );
    }
}

/// runtime-spec `config-linux.md`, "User namespace mappings": "`uidMappings` … describes
/// the user namespace uid mappings from the host to the container … `containerID` … is the
/// starting uid/gid in the container. `hostID` … is the starting uid/gid on the host to be
/// mapped to `containerID`. `size` … is the number of ids to be mapped"; the rest as
/// `runc spec --rootless` writes it (`/sys` bind-mounted, no `gid=` option on devpts, no
/// cgroup resources).
#[test]
fn rootless_maps_id_zero_and_adapts_mounts() {
    let bundle = Bundle::new();
    let rootless = Some(IdMapping {
        host_uid: 1234,
        host_gid: 5678,
    });
    let config = convert_ok(
        &minimal_image(),
        &bundle.rootfs(),
        &RunOptions {
            rootless,
            ..RunOptions::default()
        },
    );
    let linux = &config["linux"];
    assert_eq!(
        linux["uidMappings"],
        json!([{"containerID": 0, "hostID": 1234, "size": 1}])
    );
    assert_eq!(
        linux["gidMappings"],
        json!([{"containerID": 0, "hostID": 5678, "size": 1}])
    );
    assert_eq!(
        namespaces(&config),
        ["pid", "network", "ipc", "uts", "mount", "cgroup", "user"]
    );
    assert!(linux.get("resources").is_none());
    assert_eq!(
        mount(&config, "/sys"),
        &json!({
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
        })
    );
    assert_eq!(
        strings(&mount(&config, "/dev/pts")["options"]),
        [
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620"
        ]
    );
    // Root's supplementary group (wheel) is not mapped: dropped.
    assert_eq!(config["process"]["user"], json!({"uid": 0, "gid": 0}));

    // Limits asked for are kept, without the device rule.
    let config = convert_ok(
        &minimal_image(),
        &bundle.rootfs(),
        &RunOptions {
            rootless,
            memory_bytes: Some(1 << 30),
            network: Network::Host,
            ..RunOptions::default()
        },
    );
    assert_eq!(
        config["linux"]["resources"],
        json!({"memory": {"limit": 1073741824}})
    );
    assert_eq!(
        namespaces(&config),
        ["pid", "ipc", "uts", "mount", "cgroup", "user"]
    );

    // Only id 0 exists in the container: another user cannot run.
    for user in ["alice", "0:50", "1000"] {
        let error = convert(
            &image_with_user(user),
            &bundle.rootfs(),
            &RunOptions {
                rootless,
                ..RunOptions::default()
            },
        )
        .unwrap_err();
        match error {
            ConfigError::User { reason, .. } => assert!(reason.contains("rootless"), "{reason}"),
            other => panic!("{user}: {other:?}"),
        }
    }
    let config = convert_ok(
        &image_with_user("alice"),
        &bundle.rootfs(),
        &RunOptions {
            rootless,
            user: Some("0".into()),
            ..RunOptions::default()
        },
    );
    assert_eq!(config["process"]["user"], json!({"uid": 0, "gid": 0}));
}
