//! The runtime-spec schema validator (`berth_runtime::config::validate`) and the vendored
//! schema files: the validator accepts real configurations (runc's template, the
//! runtime-spec's own examples), rejects broken ones naming every offending JSON pointer,
//! and the vendored files are the pinned runtime-spec's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::config::{RunOptions, convert, validate, vendored_schemas};
use serde_json::{Value, json};

/// runc's `runc spec` template (`libcontainer/specconv/example.go`), as it writes it.
const RUNC_SPEC: &str = r#"{
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": true,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {
            "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": true
    },
    "root": {"path": "rootfs", "readonly": true},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
    ],
    "linux": {
        "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                       {"type": "mount"}, {"type": "cgroup"}],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
                        "/sys/devices/virtual/tpm"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    }
}"#;

/// The project's pinned runtime-spec copy, beside the repository (possibly absent).
fn pinned_runtime_spec() -> Option<PathBuf> {
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs/runtime-spec");
    if pinned.join("schema").is_dir() {
        Some(pinned)
    } else {
        println!(
            "note: {} does not exist; skipping",
            pinned.join("schema").display()
        );
        None
    }
}

/// `value` with the JSON pointer `pointer` set to `new` (or removed when `new` is None).
fn with(mut value: Value, pointer: &str, new: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = value.pointer_mut(parent).unwrap();
    match (parent, new) {
        (Value::Object(map), Some(new)) => {
            map.insert(key.to_owned(), new);
        }
        (Value::Object(map), None) => {
            map.remove(key).unwrap();
        }
        (Value::Array(items), Some(new)) => items[key.parse::<usize>().unwrap()] = new,
        (other, _) => panic!("{pointer}: cannot edit {other}"),
    }
    value
}

fn runc_spec() -> Value {
    serde_json::from_str(RUNC_SPEC).unwrap()
}

/// A configuration berth produced, from an image with only a command.
fn converted() -> Value {
    let rootfs = tempfile::tempdir().unwrap();
    let image = json!({"os": "linux", "architecture": "amd64", "config": {"Cmd": ["/bin/sh"]}});
    convert(&image, rootfs.path(), &RunOptions::default()).unwrap()
}

/// runtime-spec `config.md`: "there is a JSON Schema in `schema/config-schema.json`". runc's
/// own template must pass, or the validator (not the template) is wrong.
#[test]
fn runcs_template_validates() {
    validate(&runc_spec()).unwrap();
    validate(&converted()).unwrap();
}

/// Sanity of the validator against the real thing: when runc is installed, what `runc spec`
/// and `runc spec --rootless` write validates.
#[test]
fn runc_spec_output_validates_when_runc_is_installed() {
    let runc = ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .or_else(|| {
            Command::new("runc")
                .arg("--version")
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|_| PathBuf::from("runc"))
        });
    let Some(runc) = runc else {
        println!("note: runc is not installed; skipping");
        return;
    };
    for flags in [&[][..], &["--rootless"][..]] {
        let bundle = tempfile::tempdir().unwrap();
        let output = Command::new(&runc)
            .arg("spec")
            .args(flags)
            .current_dir(bundle.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "runc spec {flags:?}: {output:?}");
        let text = std::fs::read_to_string(bundle.path().join("config.json")).unwrap();
        let config: Value = serde_json::from_str(&text).unwrap();
        if let Err(violations) = validate(&config) {
            panic!("runc spec {flags:?}: {violations:#?}");
        }
    }
}

/// The validator can fail, and says where: each broken document gives (at least) a
/// violation at the given JSON pointer whose message mentions the given text. The rules
/// come from runtime-spec `config.md` ("`ociVersion` (string, REQUIRED)", "`cwd` (string,
/// REQUIRED)", "`uid` (int, REQUIRED)" as a uint32 in the schema, "`type` … RLIMIT_…") and
/// `config-linux.md` ("The following namespace types SHOULD be supported: pid, network,
/// mount, ipc, uts, user, cgroup, time", "`containerID` *(uint32, REQUIRED)*").
#[test]
fn broken_configs_fail_with_json_pointers() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(converted(), "/ociVersion", None),
            "(root)",
            "missing properties 'ociVersion'",
        ),
        (
            with(converted(), "/process/cwd", None),
            "/process",
            "missing properties 'cwd'",
        ),
        (
            with(converted(), "/process/cwd", Some(json!(7))),
            "/process/cwd",
            "want string",
        ),
        (
            with(converted(), "/process/user/uid", Some(json!(-1))),
            "/process/user/uid",
            "must be >=0",
        ),
        (
            with(converted(), "/process/args/0", Some(json!(null))),
            "/process/args/0",
            "want string",
        ),
        (
            with(
                converted(),
                "/process/rlimits/0/type",
                Some(json!("NOFILE")),
            ),
            "/process/rlimits/0/type",
            "does not match pattern",
        ),
        (
            with(
                converted(),
                "/linux/namespaces/0/type",
                Some(json!("bogus")),
            ),
            "/linux/namespaces/0/type",
            "value must be one of 'mount', 'pid'",
        ),
        (
            with(
                runc_spec(),
                "/linux/uidMappings",
                Some(json!([{"hostID": 1000, "size": 1}])),
            ),
            "/linux/uidMappings/0",
            "missing properties 'containerID'",
        ),
        (
            with(runc_spec(), "/mounts/0/destination", None),
            "/mounts/0",
            "missing properties 'destination'",
        ),
        (
            with(runc_spec(), "/root/readonly", Some(json!("yes"))),
            "/root/readonly",
            "want boolean",
        ),
        (
            with(converted(), "/annotations", Some(json!({"k": 1}))),
            "/annotations/k",
            "want string",
        ),
        (
            with(
                converted(),
                "/linux/resources/memory",
                Some(json!({"limit": 1.5})),
            ),
            "/linux/resources/memory/limit",
            "want integer",
        ),
        (json!([]), "(root)", "want object"),
    ];
    for (document, pointer, message) in cases {
        let violations = validate(&document).expect_err(pointer);
        let prefix = format!("{pointer}: ");
        assert!(
            violations
                .iter()
                .any(|v| v.starts_with(&prefix) && v.contains(message)),
            "no violation at {pointer:?} mentioning {message:?} in {violations:#?}"
        );
    }
}

/// "every violation with its JSON pointer": several faults give several violations, in
/// document order.
#[test]
fn every_violation_is_reported() {
    let document = with(
        with(converted(), "/ociVersion", Some(json!(1))),
        "/hostname",
        Some(json!(["x"])),
    );
    let violations = validate(&document).unwrap_err();
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations[0].starts_with("/ociVersion: "),
        "{violations:#?}"
    );
    assert!(violations[1].starts_with("/hostname: "), "{violations:#?}");
}

/// The runtime-spec's own schema test documents (`schema/test/config/{good,bad}`) sort as
/// upstream intends: every good one validates, every bad one that parses fails.
#[test]
fn upstream_schema_test_documents_sort_as_intended() {
    let Some(pinned) = pinned_runtime_spec() else {
        return;
    };
    let dir = pinned.join("schema/test/config");
    if !dir.is_dir() {
        println!("note: {} does not exist; skipping", dir.display());
        return;
    }
    let mut seen = 0;
    for (kind, should_pass) in [("good", true), ("bad", false)] {
        for entry in std::fs::read_dir(dir.join(kind)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let Ok(document) = serde_json::from_str::<Value>(&text) else {
                assert!(!should_pass, "{} does not parse", path.display());
                continue;
            };
            let result = validate(&document);
            assert_eq!(
                result.is_ok(),
                should_pass,
                "{}: {result:?}",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen > 5, "only {seen} upstream documents");
}

/// The vendored schema files must stay byte-identical to the project's pinned runtime-spec
/// copy, `shared/specs/runtime-spec/` beside the repository (outside it, so possibly
/// absent), and every vendored `.json` file must be embedded.
#[test]
fn vendored_schemas_match_the_pinned_copies() {
    let vendored_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let mut on_disk: Vec<String> = std::fs::read_dir(&vendored_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    on_disk.sort();
    let embedded: Vec<&str> = vendored_schemas().map(|(name, _)| name).collect();
    assert_eq!(on_disk, embedded, "every vendored .json file is embedded");
    for (name, text) in vendored_schemas() {
        assert_eq!(
            std::fs::read(vendored_dir.join(name)).unwrap(),
            text.as_bytes(),
            "embedded {name}"
        );
    }
    assert!(vendored_dir.join("LICENSE").is_file());

    let Some(pinned) = pinned_runtime_spec() else {
        return;
    };
    for (name, text) in vendored_schemas() {
        let expected = std::fs::read(pinned.join("schema").join(name)).unwrap();
        assert_eq!(text.as_bytes(), expected.as_slice(), "{name}");
    }
    assert_eq!(
        std::fs::read(vendored_dir.join("LICENSE")).unwrap(),
        std::fs::read(pinned.join("LICENSE")).unwrap(),
        "LICENSE"
    );
}

/// Everything `config-schema.json` references is vendored: a `$ref` to a file that is not
/// would fail compilation (retrieval is off), and a valid document would be reported
/// invalid, so validating the runtime-spec's full example (`config.md`, "Configuration
/// Schema Example", with hooks, devices, seccomp, …) proves the whole tree resolves.
#[test]
fn the_spec_example_validates() {
    let Some(pinned) = pinned_runtime_spec() else {
        return;
    };
    let example = pinned.join("schema/test/config/good/spec-example.json");
    if !example.is_file() {
        return;
    }
    let document: Value = serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    validate(&document).unwrap();
}
