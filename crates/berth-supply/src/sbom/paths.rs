//! Image paths: normalising tar entry names and deciding, from a path alone,
//! which cataloguer (if any) reads a file.

/// Which cataloguer reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `etc/os-release`, `usr/lib/os-release`.
    OsRelease,
    /// `var/lib/dpkg/status`.
    DpkgStatus,
    /// `var/lib/dpkg/status.d/<file>` (distroless).
    DpkgStatusD,
    /// `usr/share/doc/<pkg>/copyright`.
    DebCopyright,
    /// A symbolic link `usr/share/doc/<pkg>` (to another package's doc directory).
    DebDocLink,
    /// `lib/apk/db/installed`.
    ApkInstalled,
    /// A Python `METADATA` or `PKG-INFO` (or `*.egg-info` file).
    PythonMetadata,
    /// `node_modules/[@scope/]<name>/package.json`.
    NpmPackage,
    /// `Cargo.lock`.
    CargoLock,
    /// An ELF binary (recognised by content, not path).
    Elf,
}

/// Normalises a tar entry name to a relative path without `./`, leading or
/// trailing `/`, or empty components. `None` if it has a `..` component (such
/// an entry would escape the root: it is skipped). The root itself is `""`.
pub(super) fn normalise(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(part);
            }
        }
    }
    Some(out)
}

/// Splits a normalised path into its directory (`""` at the root) and base name.
pub(super) fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, base)) => (dir, base),
        None => ("", path),
    }
}

/// Joins a directory (`""` for the root) and a name.
pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Which cataloguer reads the regular file at `path`, judged by path alone.
pub(super) fn classify(path: &str) -> Option<Kind> {
    match path {
        "etc/os-release" | "usr/lib/os-release" => return Some(Kind::OsRelease),
        "var/lib/dpkg/status" => return Some(Kind::DpkgStatus),
        "lib/apk/db/installed" | "usr/lib/apk/db/installed" => return Some(Kind::ApkInstalled),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("var/lib/dpkg/status.d/") {
        let skip = rest.contains('/') || rest.ends_with(".md5sums") || rest.starts_with('.');
        return (!skip).then_some(Kind::DpkgStatusD);
    }
    if deb_copyright_package(path).is_some() {
        return Some(Kind::DebCopyright);
    }
    let (dir, base) = split_parent(path);
    match base {
        "METADATA" if dir.ends_with(".dist-info") => Some(Kind::PythonMetadata),
        "PKG-INFO" if dir.ends_with(".egg-info") => Some(Kind::PythonMetadata),
        "package.json" if is_npm_package_dir(dir) => Some(Kind::NpmPackage),
        "Cargo.lock" => Some(Kind::CargoLock),
        _ if base.ends_with(".egg-info") && base.len() > ".egg-info".len() => {
            Some(Kind::PythonMetadata)
        }
        _ => None,
    }
}

/// The package whose `usr/share/doc/<pkg>/copyright` this is, if it is one.
pub(super) fn deb_copyright_package(path: &str) -> Option<&str> {
    let pkg = path
        .strip_prefix("usr/share/doc/")?
        .strip_suffix("/copyright")?;
    (!pkg.is_empty() && !pkg.contains('/')).then_some(pkg)
}

/// The package whose doc directory `usr/share/doc/<pkg>` this is, if it is one.
pub(super) fn deb_doc_dir(path: &str) -> Option<&str> {
    let pkg = path.strip_prefix("usr/share/doc/")?;
    (!pkg.is_empty() && !pkg.contains('/')).then_some(pkg)
}

/// Resolves a symbolic link's target against the directory holding the link,
/// to a normalised path; `None` if it climbs above the root.
pub(super) fn resolve_link(dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// Whether `dir` is `…node_modules/<name>` or `…node_modules/@scope/<name>`:
/// only a package's own `package.json` counts, not one in its test fixtures.
fn is_npm_package_dir(dir: &str) -> bool {
    let mut parts = dir.rsplit('/');
    let Some(name) = parts.next() else {
        return false;
    };
    if name.is_empty() || name.starts_with('.') || name == "node_modules" {
        return false;
    }
    match parts.next() {
        Some("node_modules") => !name.starts_with('@'),
        Some(scope) if scope.starts_with('@') && scope.len() > 1 => {
            parts.next() == Some("node_modules")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_tar_names() {
        assert_eq!(
            normalise("./etc/os-release").as_deref(),
            Some("etc/os-release")
        );
        assert_eq!(normalise("/usr//lib/./x/").as_deref(), Some("usr/lib/x"));
        assert_eq!(normalise("./").as_deref(), Some(""));
        assert_eq!(normalise("../etc/passwd"), None);
        assert_eq!(normalise("a/../../b"), None);
        assert_eq!(
            resolve_link("usr/share/doc", "gcc-12-base").as_deref(),
            Some("usr/share/doc/gcc-12-base")
        );
        assert_eq!(
            resolve_link("usr/share/doc", "../doc/./x/").as_deref(),
            Some("usr/share/doc/x")
        );
        assert_eq!(
            resolve_link("usr/share/doc", "/usr/share/doc/y").as_deref(),
            Some("usr/share/doc/y")
        );
        assert_eq!(resolve_link("a", "../../b"), None);
    }

    #[test]
    fn classifies_files_of_interest() {
        use Kind::*;
        let cases = [
            ("var/lib/dpkg/status", Some(DpkgStatus)),
            ("var/lib/dpkg/status-old", None),
            ("var/lib/dpkg/status.d/libc6", Some(DpkgStatusD)),
            ("var/lib/dpkg/status.d/libc6.md5sums", None),
            ("usr/share/doc/libc6/copyright", Some(DebCopyright)),
            ("usr/share/doc/libc6/x/copyright", None),
            ("lib/apk/db/installed", Some(ApkInstalled)),
            (
                "usr/lib/python3/site-packages/six-1.16.0.dist-info/METADATA",
                Some(PythonMetadata),
            ),
            (
                "usr/lib/python3/site-packages/foo.egg-info/PKG-INFO",
                Some(PythonMetadata),
            ),
            (
                "usr/lib/python3/site-packages/foo-1.0.egg-info",
                Some(PythonMetadata),
            ),
            ("app/node_modules/left-pad/package.json", Some(NpmPackage)),
            (
                "app/node_modules/@types/node/package.json",
                Some(NpmPackage),
            ),
            (
                "app/node_modules/a/node_modules/b/package.json",
                Some(NpmPackage),
            ),
            ("app/node_modules/left-pad/test/fixture/package.json", None),
            ("app/node_modules/@types/package.json", None),
            ("app/package.json", None),
            ("src/app/Cargo.lock", Some(CargoLock)),
            ("etc/os-release", Some(OsRelease)),
            ("usr/bin/true", None),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path), want, "{path}");
        }
    }
}
