//! `berth run`'s local content cache, one directory (mode 0700):
//!
//! ```text
//! CACHE/oci/                       an OCI image layout: every blob pulled (shared by all images)
//! CACHE/images/<alg>-<hex>[-rootless]/rootfs/   an image unpacked once, reused by later runs
//! CACHE/images/<alg>-<hex>[-rootless]/image-config.json
//! CACHE/tmp/                       unpacking in progress (renamed into images/ when complete)
//! CACHE/containers/<id>/           one run's bundle: config.json, rootfs/ (+ overlay upper/work)
//! CACHE/state/                     the OCI runtime's --root
//! ```
//!
//! An image directory appears only complete (unpacked in `tmp/`, then renamed), so
//! a crash mid-unpack leaves nothing a later run would use. A run gets its own
//! writable root: an overlay mount over the cached rootfs when berth may mount
//! (root), otherwise a copy.

use std::path::{Path, PathBuf};

use berth_oci::Digest;

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct CacheError {
    /// What was being done.
    pub op: String,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> CacheError {
    let op = op.into();
    move |source| CacheError { op, source }
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `$BERTH_CACHE`, else `$XDG_CACHE_HOME/berth`, else `~/.cache/berth`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("BERTH_CACHE") {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(d).join("berth");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        home.join(".cache").join("berth")
    }

    /// Open (creating, mode 0700) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        use std::os::unix::fs::DirBuilderExt;
        for d in ["", "images", "tmp", "containers", "state"] {
            let p = root.join(d);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(io(format!("creating {}", p.display())))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI image layout that holds every pulled blob.
    pub fn layout_dir(&self) -> PathBuf {
        self.root.join("oci")
    }

    /// The runtime's state directory (`--root`).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// Where image `digest` is (or will be) unpacked.
    pub fn image_dir(&self, digest: &Digest, rootless: bool) -> PathBuf {
        let suffix = if rootless { "-rootless" } else { "" };
        self.root.join("images").join(format!(
            "{}-{}{suffix}",
            digest.algorithm().as_str(),
            digest.hex()
        ))
    }

    /// Whether image `digest` is already unpacked.
    pub fn has_image(&self, digest: &Digest, rootless: bool) -> bool {
        let d = self.image_dir(digest, rootless);
        d.join("rootfs").is_dir() && d.join("image-config.json").is_file()
    }

    /// A fresh, empty directory under `tmp/` to unpack into.
    pub fn staging_dir(&self) -> Result<PathBuf, CacheError> {
        let d = self.root.join("tmp").join(unique_name("unpack"));
        std::fs::create_dir(&d).map_err(io(format!("creating {}", d.display())))?;
        Ok(d)
    }

    /// Make the unpacked image in `staging` visible as image `digest` (atomic
    /// rename). If another run published it meanwhile, `staging` is removed and
    /// theirs is used.
    pub fn publish(
        &self,
        staging: &Path,
        digest: &Digest,
        rootless: bool,
    ) -> Result<PathBuf, CacheError> {
        let dst = self.image_dir(digest, rootless);
        match std::fs::rename(staging, &dst) {
            Ok(()) => Ok(dst),
            Err(_) if self.has_image(digest, rootless) => {
                remove_tree(staging);
                Ok(dst)
            }
            Err(e) => Err(io(format!(
                "moving {} to {}",
                staging.display(),
                dst.display()
            ))(e)),
        }
    }

    /// A new, empty directory for one container's bundle, and its id.
    pub fn new_container(&self) -> Result<(String, PathBuf), CacheError> {
        let id = unique_name("berth");
        let d = self.root.join("containers").join(&id);
        std::fs::create_dir(&d).map_err(io(format!("creating {}", d.display())))?;
        Ok((id, d))
    }
}

/// `PREFIX-<pid>-<random hex>`: unique among concurrent runs.
fn unique_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{prefix}-{}-{:016x}", std::process::id(), h.finish())
}

/// Remove a directory tree, best effort (unpacked trees may hold read-only
/// directories: they are made writable first).
pub fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() {
        return;
    }
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+rwX"])
        .arg(path)
        .status();
    let _ = std::fs::remove_dir_all(path);
}

/// A container's writable root filesystem over a cached image rootfs.
#[derive(Debug)]
pub struct ContainerRootfs {
    /// The directory to use as the bundle's `rootfs`.
    pub path: PathBuf,
    /// Whether it is an overlay mount (to unmount when done).
    pub mounted: bool,
}

impl ContainerRootfs {
    /// Set up `bundle/rootfs` over `lower`: an overlay mount (upper and work
    /// directories in the bundle) when permitted, else a copy of `lower` (`cp -a`,
    /// with reflinks where the filesystem has them).
    pub fn prepare(lower: &Path, bundle: &Path) -> Result<ContainerRootfs, CacheError> {
        let path = bundle.join("rootfs");
        std::fs::create_dir(&path).map_err(io(format!("creating {}", path.display())))?;
        if rustix::process::geteuid().is_root() && overlay(lower, bundle, &path).is_ok() {
            return Ok(ContainerRootfs {
                path,
                mounted: true,
            });
        }
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg("--reflink=auto")
            .arg(format!("{}/.", lower.display()))
            .arg(&path)
            .status()
            .map_err(io("running cp"))?;
        if !status.success() {
            return Err(CacheError {
                op: format!("copying {} to {}", lower.display(), path.display()),
                source: std::io::Error::other(format!("cp: {status}")),
            });
        }
        Ok(ContainerRootfs {
            path,
            mounted: false,
        })
    }

    /// Unmount (if mounted); the caller removes the bundle.
    pub fn release(&self) {
        if self.mounted {
            let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// Mount an overlay at `target`: `lower` read-only below, upper and work
/// directories in `bundle`. Paths with characters overlayfs options cannot
/// carry (`,`, `:`, `\`) are refused (the caller then copies).
fn overlay(lower: &Path, bundle: &Path, target: &Path) -> std::io::Result<()> {
    let upper = bundle.join("upper");
    let work = bundle.join("work");
    std::fs::create_dir(&upper)?;
    std::fs::create_dir(&work)?;
    let paths = [lower, &upper, &work];
    if paths
        .iter()
        .any(|p| p.to_str().is_none_or(|s| s.contains([',', ':', '\\'])))
    {
        return Err(std::io::Error::other("path unsuitable for overlay options"));
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let data = std::ffi::CString::new(data).map_err(std::io::Error::other)?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(std::io::Error::from)
}
