//! Validation of a runtime `config.json` against the OCI runtime-spec JSON schema.
//!
//! The runtime-spec v1.3.0 schema files that `config-schema.json` needs are vendored in
//! `crates/berth-runtime/schema/` and embedded with `include_str!`, so nothing is read from
//! disk at run time. The files declare no `id`; their `$ref`s name each other by relative
//! file name (`defs.json#/definitions/uint32`), so every file is registered under one
//! made-up base URI ([`BASE_URI`]) and the references resolve against it. Retrieval is
//! switched off: a reference to anything else fails instead of being fetched. The schemas
//! are compiled once, on first use, by `boon` as draft-04 (what `config-schema.json`
//! declares), with `format` asserted.
//!
//! One upstream typo is repaired in memory, not in the vendored files (which stay
//! byte-identical to the pinned copies): `defs.json`'s `ArrayOfUint32` refers to
//! `#definitions/uint32`, a fragment without the leading `/` of a JSON pointer, which
//! draft-04 reads as an anchor that does not exist, so the schema would not compile. Such a
//! reference is read as the pointer `#/definitions/uint32` it means ([`repair_refs`]).
//!
//! This follows `berth_oci::schema`, which does the same for the image-spec schemas.

use std::sync::LazyLock;

use boon::{Compiler, Draft, SchemaIndex, Schemas, UrlLoader};
use serde_json::Value;

/// The vendored schema files, by file name, as embedded in the binary: `config-schema.json`
/// and every file it reaches through `$ref`.
pub(super) const VENDORED: [(&str, &str); 13] = [
    (
        "config-freebsd.json",
        include_str!("../../schema/config-freebsd.json"),
    ),
    (
        "config-linux.json",
        include_str!("../../schema/config-linux.json"),
    ),
    (
        "config-schema.json",
        include_str!("../../schema/config-schema.json"),
    ),
    (
        "config-solaris.json",
        include_str!("../../schema/config-solaris.json"),
    ),
    (
        "config-vm.json",
        include_str!("../../schema/config-vm.json"),
    ),
    (
        "config-windows.json",
        include_str!("../../schema/config-windows.json"),
    ),
    (
        "config-zos.json",
        include_str!("../../schema/config-zos.json"),
    ),
    (
        "defs-freebsd.json",
        include_str!("../../schema/defs-freebsd.json"),
    ),
    (
        "defs-linux.json",
        include_str!("../../schema/defs-linux.json"),
    ),
    ("defs-vm.json", include_str!("../../schema/defs-vm.json")),
    (
        "defs-windows.json",
        include_str!("../../schema/defs-windows.json"),
    ),
    ("defs-zos.json", include_str!("../../schema/defs-zos.json")),
    ("defs.json", include_str!("../../schema/defs.json")),
];

/// The base URI every vendored file is registered under. The runtime-spec schemas declare
/// no `id`, so any base works as long as all files share it; this one is never fetched.
const BASE_URI: &str = "https://opencontainers.org/schema/runtime/";

/// The root schema: the container configuration.
const ROOT_FILE: &str = "config-schema.json";

/// See [`super::validate`].
pub(super) fn validate(config: &Value) -> Result<(), Vec<String>> {
    let compiled = match COMPILED.as_ref() {
        Ok(compiled) => compiled,
        Err(message) => {
            return Err(vec![format!(
                "(schema): the embedded runtime-spec JSON schemas did not compile: {message}"
            )]);
        }
    };
    match compiled.schemas.validate(config, compiled.root) {
        Ok(()) => Ok(()),
        Err(error) => Err(berth_oci::schema::violations(&error)
            .into_iter()
            .map(|v| (v.instance_path, v.message))
            .map(|(path, message)| {
                if path.is_empty() {
                    format!("(root): {message}")
                } else {
                    format!("{path}: {message}")
                }
            })
            .collect()),
    }
}

/// The compiled schemas and the root, `config-schema.json`.
struct Compiled {
    /// Every compiled schema.
    schemas: Schemas,
    /// The container configuration schema.
    root: SchemaIndex,
}

/// The schemas, compiled on first use, or why they could not be.
static COMPILED: LazyLock<Result<Compiled, String>> = LazyLock::new(compile);

/// Refuses every URL: all references must resolve to a registered vendored file.
struct NoRetrieval;

impl UrlLoader for NoRetrieval {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is not a vendored runtime-spec schema; nothing is fetched").into())
    }
}

/// Rewrites every `$ref` of the form `[file]#definitions/…` (a JSON pointer missing its
/// leading `/`, an upstream typo) to `[file]#/definitions/…`.
fn repair_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(reference) = child
                    && let Some((file, fragment)) = reference.split_once('#')
                    && fragment.starts_with("definitions/")
                {
                    *reference = format!("{file}#/{fragment}");
                } else {
                    repair_refs(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(repair_refs),
        _ => {}
    }
}

/// Parses the vendored files, registers each under [`BASE_URI`], and compiles
/// `config-schema.json` as draft-04 with retrieval off and `format` asserted.
fn compile() -> Result<Compiled, String> {
    let mut compiler = Compiler::new();
    compiler.set_default_draft(Draft::V4);
    compiler.enable_format_assertions();
    compiler.use_loader(Box::new(NoRetrieval));
    for (name, text) in VENDORED {
        let mut value: Value =
            serde_json::from_str(text).map_err(|error| format!("{name}: {error}"))?;
        repair_refs(&mut value);
        compiler
            .add_resource(&format!("{BASE_URI}{name}"), value)
            .map_err(|error| format!("{name}: {error:#}"))?;
    }
    let mut schemas = Schemas::new();
    let root = compiler
        .compile(&format!("{BASE_URI}{ROOT_FILE}"), &mut schemas)
        .map_err(|error| format!("{ROOT_FILE}: {error:#}"))?;
    Ok(Compiled { schemas, root })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_schemas_compile_offline() {
        if let Err(message) = COMPILED.as_ref() {
            panic!("{message}");
        }
    }

    #[test]
    fn pointer_typos_in_refs_are_repaired() {
        let mut value = serde_json::json!({
            "a": {"$ref": "#definitions/uint32"},
            "b": [{"$ref": "defs.json#definitions/x"}],
            "c": {"$ref": "defs.json#/definitions/y"},
            "d": {"$ref": "#anchor"},
        });
        repair_refs(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "a": {"$ref": "#/definitions/uint32"},
                "b": [{"$ref": "defs.json#/definitions/x"}],
                "c": {"$ref": "defs.json#/definitions/y"},
                "d": {"$ref": "#anchor"},
            })
        );
    }
}
