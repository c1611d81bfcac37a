//! The layered view of catalogued files: a map from image path to what was
//! parsed there, with the OCI whiteout rules (image-spec `layer.md` § Whiteouts)
//! applied as layers are stacked.
//!
//! Lower layers live in `lower`; the layer being read collects its own files in
//! `current` and its deletions (whiteouts, opaque directories, paths replaced by
//! another file) in `removals`. Whiteouts only ever apply to lower layers, so the
//! order of entries within a layer does not matter (an opaque marker after the
//! directory's new entries is handled the same as one before). At the end of the
//! layer the removals are applied to `lower`, then `current` is merged over it.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::paths::Kind;
use super::{Distro, RawPackage};

/// What was parsed from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// An `os-release` file.
    Distro(Distro),
    /// Packages from a package database, a metadata file or a binary.
    Packages(Vec<RawPackage>),
    /// The licences of a DEP-5 `copyright` file.
    DebLicence(String),
    /// A symbolic link's target (normalised, resolved against its directory).
    Link(String),
}

/// A catalogued file: what it held and the layer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// Digest or label of the layer the file came from.
    pub layer: String,
    /// How the file was read (for hard links to it).
    pub kind: Kind,
    /// What it held.
    pub found: Found,
}

/// A deletion, by the layer being read, of files from lower layers.
#[derive(Debug)]
enum Removal {
    /// The path and everything under it (`.wh.NAME`, or a file replacing a directory).
    Tree(String),
    /// Just the path (a directory replacing a file).
    Exact(String),
    /// Everything under a directory (`.wh..wh..opq`); `""` is the root.
    Children(String),
}

/// The whiteout-aware map of catalogued files.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    lower: BTreeMap<String, Record>,
    current: BTreeMap<String, Record>,
    removals: Vec<Removal>,
    layer: String,
}

impl Overlay {
    /// Starts reading a layer.
    pub fn begin_layer(&mut self, label: &str) {
        self.current.clear();
        self.removals.clear();
        label.clone_into(&mut self.layer);
    }

    /// Applies the layer read since [`Overlay::begin_layer`] over the lower ones.
    pub fn commit_layer(&mut self) {
        for removal in std::mem::take(&mut self.removals) {
            match removal {
                Removal::Tree(path) => {
                    self.lower.remove(&path);
                    remove_under(&mut self.lower, &path);
                }
                Removal::Exact(path) => {
                    self.lower.remove(&path);
                }
                Removal::Children(dir) if dir.is_empty() => self.lower.clear(),
                Removal::Children(dir) => remove_under(&mut self.lower, &dir),
            }
        }
        self.lower.append(&mut self.current);
    }

    /// Forgets the layer read since [`Overlay::begin_layer`].
    pub fn abort_layer(&mut self) {
        self.current.clear();
        self.removals.clear();
    }

    /// The label of the layer being read.
    pub fn layer(&self) -> &str {
        &self.layer
    }

    /// `.wh.NAME`: `path` (the directory joined with `NAME`) and everything
    /// under it are gone from lower layers.
    pub fn whiteout(&mut self, path: &str) {
        if self.lower_has_tree(path) {
            self.removals.push(Removal::Tree(path.to_owned()));
        }
    }

    /// `.wh..wh..opq` in `dir` (`""` for the root): every lower-layer entry
    /// under `dir` is gone; this layer's own entries stay.
    pub fn opaque(&mut self, dir: &str) {
        let any = if dir.is_empty() {
            !self.lower.is_empty()
        } else {
            has_under(&self.lower, dir)
        };
        if any {
            self.removals.push(Removal::Children(dir.to_owned()));
        }
    }

    /// A non-directory entry at `path`: it replaces whatever was there, in this
    /// layer or below (a lower directory at that path included).
    pub fn replaced_by_file(&mut self, path: &str) {
        self.current.remove(path);
        if self.lower_has_tree(path) {
            self.removals.push(Removal::Tree(path.to_owned()));
        }
    }

    /// A directory entry at `path`: it replaces a file there but merges with a
    /// lower directory.
    pub fn replaced_by_dir(&mut self, path: &str) {
        self.current.remove(path);
        if self.lower.contains_key(path) {
            self.removals.push(Removal::Exact(path.to_owned()));
        }
    }

    /// Records what this layer's file at `path` held.
    pub fn insert(&mut self, path: String, kind: Kind, found: Found) {
        let layer = self.layer.clone();
        self.current.insert(path, Record { layer, kind, found });
    }

    /// What is recorded at `path`, in this layer or below (for hard links).
    pub fn get(&self, path: &str) -> Option<&Record> {
        self.current.get(path).or_else(|| self.lower.get(path))
    }

    /// Every surviving record, by path.
    pub fn into_records(self) -> BTreeMap<String, Record> {
        self.lower
    }

    fn lower_has_tree(&self, path: &str) -> bool {
        self.lower.contains_key(path) || has_under(&self.lower, path)
    }
}

/// Whether any key lies strictly under directory `dir`.
fn has_under(map: &BTreeMap<String, Record>, dir: &str) -> bool {
    let prefix = format!("{dir}/");
    map.range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        .next()
        .is_some_and(|(k, _)| k.starts_with(&prefix))
}

/// Removes every key strictly under directory `dir`.
fn remove_under(map: &mut BTreeMap<String, Record>, dir: &str) {
    let prefix = format!("{dir}/");
    let doomed: Vec<String> = map
        .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for key in doomed {
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str) -> Found {
        Found::DebLicence(name.to_owned())
    }

    fn keys(o: &Overlay) -> Vec<(String, String)> {
        o.lower
            .iter()
            .map(|(k, r)| (k.clone(), r.layer.clone()))
            .collect()
    }

    fn base() -> Overlay {
        let mut o = Overlay::default();
        o.begin_layer("L0");
        for p in ["a/b/c", "a/bc", "a/b2", "d", "e/f"] {
            o.insert(p.into(), Kind::CargoLock, found(p));
        }
        o.commit_layer();
        o
    }

    #[test]
    fn whiteout_removes_tree_but_not_siblings_sharing_a_prefix() {
        let mut o = base();
        o.begin_layer("L1");
        o.whiteout("a/b");
        o.commit_layer();
        let k: Vec<_> = keys(&o).into_iter().map(|(k, _)| k).collect();
        assert_eq!(k, ["a/b2", "a/bc", "d", "e/f"]);
    }

    #[test]
    fn opaque_keeps_same_layer_entries_in_any_order() {
        let mut o = base();
        o.begin_layer("L1");
        o.insert("a/new".into(), Kind::CargoLock, found("x"));
        o.opaque("a");
        o.commit_layer();
        assert_eq!(
            keys(&o),
            [
                ("a/new".to_owned(), "L1".to_owned()),
                ("d".to_owned(), "L0".to_owned()),
                ("e/f".to_owned(), "L0".to_owned())
            ]
        );
    }

    #[test]
    fn root_opaque_and_abort() {
        let mut o = base();
        o.begin_layer("L1");
        o.opaque("");
        o.abort_layer();
        assert_eq!(keys(&o).len(), 5, "an aborted layer changes nothing");
        o.begin_layer("L2");
        o.opaque("");
        o.insert("z".into(), Kind::CargoLock, found("z"));
        o.commit_layer();
        assert_eq!(keys(&o), [("z".to_owned(), "L2".to_owned())]);
    }

    #[test]
    fn file_replacing_directory_and_directory_replacing_file() {
        let mut o = base();
        o.begin_layer("L1");
        o.replaced_by_file("e");
        o.replaced_by_dir("d");
        o.replaced_by_dir("a");
        o.commit_layer();
        let k: Vec<_> = keys(&o).into_iter().map(|(k, _)| k).collect();
        assert_eq!(k, ["a/b/c", "a/b2", "a/bc"]);
    }
}
