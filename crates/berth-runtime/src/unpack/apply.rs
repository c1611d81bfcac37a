//! Applying one layer's entries: what each entry type does, its metadata, whiteouts,
//! and the directory metadata that can only be set once the layer is complete.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::rc::Rc;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags, chmodat, chownat,
    fchmod, fchown, flistxattr, fremovexattr, fsetxattr, futimens, linkat, lsetxattr, makedev,
    mkdirat, mknodat, openat, symlinkat, utimensat,
};
use rustix::io::Errno;

use super::fsops::{self, DIR_READ_FLAGS, file_type, is_dir, lstat_at};
use super::path::{self, EntryPath, NameProblem};
use super::stream::{self, StreamState};
use super::{LayerStats, Limit, UnpackError, UnpackOptions};

/// Prefix of a whiteout name.
const WH_PREFIX: &[u8] = b".wh.";
/// Prefix of AUFS bookkeeping names (never applied, except the opaque marker).
const WH_META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker.
const WH_OPAQUE: &[u8] = b".wh..wh..opq";
/// Buffer for copying file data.
const COPY_BUFFER: usize = 256 * 1024;

/// Metadata to restore on a directory when the layer is complete.
#[derive(Debug)]
pub(super) struct DirMeta {
    /// Permission bits to set, when they could not be set (or were widened) earlier.
    pub(super) mode: Option<u32>,
    /// Times to set: the entry's, or those the directory had before this layer.
    pub(super) times: Option<Timestamps>,
    /// Whether the layer has an entry for this directory.
    pub(super) declared: bool,
}

/// Why looking up a directory inside the root failed.
#[derive(Debug)]
pub(super) enum Lookup {
    /// The path goes through a symlink.
    Symlink,
    /// The path crosses a mount point.
    CrossDevice,
    /// A component is not a directory.
    NotDirectory,
    /// Some other system error.
    Io(&'static str, Errno),
}

impl Lookup {
    pub(super) fn from_errno(op: &'static str, e: Errno) -> Lookup {
        match e {
            Errno::LOOP => Lookup::Symlink,
            Errno::XDEV => Lookup::CrossDevice,
            Errno::NOTDIR => Lookup::NotDirectory,
            e => Lookup::Io(op, e),
        }
    }
}

/// What a filesystem object gets its metadata through: an open descriptor, or a
/// name in a directory (symlinks, device nodes, fifos), never followed.
#[derive(Clone, Copy)]
enum Node<'f> {
    Fd(BorrowedFd<'f>),
    At(BorrowedFd<'f>, &'f [u8]),
}

/// An entry's metadata, from its header and PAX records.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: Timestamps,
    device: (u32, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The state of applying one layer.
pub(super) struct Applier<'a> {
    pub(super) root: BorrowedFd<'a>,
    pub(super) layer: &'a str,
    pub(super) opts: &'a UnpackOptions,
    pub(super) euid: u32,
    /// Running as root: chown, mknod and privileged xattrs are expected to work, and
    /// permission bits never get in the way.
    pub(super) privileged: bool,
    state: Rc<StreamState>,
    /// Paths this layer created, with their ancestors (whiteouts spare them).
    pub(super) upper: HashSet<Vec<u8>>,
    /// Directory metadata to apply at the end of the layer.
    pub(super) dirs: HashMap<Vec<u8>, DirMeta>,
    /// The last directory looked up.
    pub(super) cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    stats: LayerStats,
    written: u64,
    buf: Vec<u8>,
}

impl<'a> Applier<'a> {
    pub(super) fn new(
        root: BorrowedFd<'a>,
        layer: &'a str,
        opts: &'a UnpackOptions,
        euid: u32,
        state: Rc<StreamState>,
    ) -> Self {
        Applier {
            root,
            layer,
            opts,
            euid,
            privileged: euid == 0,
            state,
            upper: HashSet::new(),
            dirs: HashMap::new(),
            cache: None,
            stats: LayerStats::default(),
            written: 0,
            buf: Vec::new(),
        }
    }

    /// Applies every entry of the archive.
    pub(super) fn run<R: Read>(
        &mut self,
        archive: &mut tar::Archive<R>,
    ) -> Result<(), UnpackError> {
        let mut entries = archive.entries().map_err(|e| self.stream_err(e))?;
        loop {
            self.state.begin_header();
            let next = entries.next();
            self.state.end_header();
            let mut entry = match next {
                None => return Ok(()),
                Some(Ok(entry)) => entry,
                Some(Err(e)) => return Err(self.stream_err(e)),
            };
            self.stats.entries += 1;
            if self.stats.entries > self.opts.max_entries {
                return Err(UnpackError::TooLarge {
                    layer: self.layer.to_owned(),
                    limit: Limit::Entries,
                    max: self.opts.max_entries,
                });
            }
            self.entry(&mut entry)?;
            // Whatever data the entry has left (a hard link or directory with a
            // size, say) is read here, as data rather than as the next header.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| self.stream_err(e))?;
        }
    }

    /// Sets directory modes and times now that no more children will be added,
    /// deepest first; returns the layer's statistics.
    pub(super) fn finish(mut self) -> Result<LayerStats, UnpackError> {
        // Looking directories up again can, unprivileged, widen a directory's mode
        // and record it for restoring; a few rounds settle that.
        for _ in 0..4 {
            if self.dirs.is_empty() {
                break;
            }
            let mut todo: Vec<(usize, Vec<u8>, DirMeta)> = self
                .dirs
                .drain()
                .map(|(rel, meta)| (path::depth(&rel), rel, meta))
                .collect();
            todo.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            for (_, rel, meta) in todo {
                self.restore_dir(&rel, &meta)?;
            }
        }
        Ok(self.stats)
    }

    fn restore_dir(&mut self, rel: &[u8], meta: &DirMeta) -> Result<(), UnpackError> {
        let shown = path::show(rel);
        let Some((parent_rel, name)) = path::split_last(rel) else {
            if let Some(mode) = meta.mode {
                fchmod(self.root, Mode::from_raw_mode(mode))
                    .map_err(|e| self.io("/", "chmod directory", e))?;
            }
            if let Some(times) = &meta.times {
                futimens(self.root, times).map_err(|e| self.io("/", "set directory times", e))?;
            }
            return Ok(());
        };
        let parent = match self.resolve(parent_rel, false) {
            Ok(Some(parent)) => parent,
            // Removed or replaced later in the layer: nothing to restore.
            Ok(None) | Err(Lookup::NotDirectory | Lookup::Symlink | Lookup::CrossDevice) => {
                return Ok(());
            }
            Err(l) => return Err(self.lookup_err(&shown, l)),
        };
        match lstat_at(parent.as_fd(), name) {
            Ok(Some(st)) if is_dir(&st) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(self.io(&shown, "stat directory", e)),
        }
        if let Some(mode) = meta.mode {
            // chmodat follows a final symlink, but this was just seen to be a directory.
            chmodat(&*parent, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|e| self.io(&shown, "chmod directory", e))?;
        }
        if let Some(times) = &meta.times {
            utimensat(&*parent, name, times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.io(&shown, "set directory times", e))?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let shown = path::show(&raw);
        let kind = entry.header().entry_type();
        let flag = entry.header().as_old().linkflag[0];
        if kind.is_pax_global_extensions() {
            tracing::debug!(
                layer = self.layer,
                entry = shown,
                "PAX global header ignored"
            );
            return Ok(());
        }
        let path = EntryPath::parse(&raw).map_err(|p| self.name_problem(&shown, p))?;
        if let Some((parent, name)) = path.split_last()
            && name.starts_with(WH_PREFIX)
        {
            return self.whiteout(parent, name, &shown);
        }
        // An old-style regular file whose name ends in `/` is a directory.
        let is_dir = kind.is_dir() || (flag == 0 && raw.ends_with(b"/"));
        let meta = read_meta(entry).map_err(|m| self.corrupt(format!("entry {shown:?}: {m}")))?;

        let created = if path.is_root() {
            if !is_dir {
                return Err(self.escape(&shown, "entry would replace the root directory"));
            }
            let root = self.root;
            self.dir_metadata(root, b"", &meta, &shown)?;
            true
        } else if is_dir {
            self.directory(&path, &meta, &shown)?;
            true
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            let size = entry.size();
            self.regular(&path, &meta, entry, size, &shown)?;
            true
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().map(|t| t.into_owned());
            self.symlink(&path, &meta, target, &shown)?;
            true
        } else if kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| t.into_owned());
            self.hard_link(&path, target, &shown)?;
            true
        } else if kind.is_fifo() {
            self.special(&path, &meta, FileType::Fifo, &shown)?
        } else if kind.is_character_special() {
            self.special(&path, &meta, FileType::CharacterDevice, &shown)?
        } else if kind.is_block_special() {
            self.special(&path, &meta, FileType::BlockDevice, &shown)?
        } else {
            self.skip(
                &shown,
                format!("entry type {:?} not supported", char::from(flag)),
            );
            false
        };
        if created {
            for p in path::self_and_ancestors(path.as_bytes()) {
                // Ancestors of a recorded path are recorded already.
                if !self.upper.insert(p.to_vec()) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The entry's parent directory (made if missing) and its final component.
    fn slot<'p>(
        &mut self,
        path: &'p EntryPath,
        shown: &str,
    ) -> Result<(Rc<OwnedFd>, &'p [u8]), UnpackError> {
        let Some((parent_rel, name)) = path.split_last() else {
            return Err(self.escape(shown, "entry would replace the root directory"));
        };
        let parent = match self.resolve(parent_rel, true) {
            Ok(Some(parent)) => parent,
            Ok(None) => {
                return Err(self.io(shown, "create parent directory", Errno::NOENT));
            }
            Err(l) => return Err(self.lookup_err(shown, l)),
        };
        self.touch(parent_rel, parent.as_fd())
            .map_err(|e| self.io(shown, "stat parent directory", e))?;
        Ok((parent, name))
    }

    /// Makes room for a new entry at `name`: removes what is there, except a
    /// directory when `keep_dir` (returned, for merging).
    fn clear_slot(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        keep_dir: bool,
        shown: &str,
    ) -> Result<Option<rustix::fs::Stat>, UnpackError> {
        let st = lstat_at(parent, name).map_err(|e| self.io(shown, "stat", e))?;
        match st {
            None => Ok(None),
            Some(st) if keep_dir && is_dir(&st) => Ok(Some(st)),
            Some(st) => {
                self.remove_path(parent, name, &st, shown)?;
                Ok(None)
            }
        }
    }

    fn regular<R: Read>(
        &mut self,
        path: &EntryPath,
        meta: &Meta,
        data: &mut R,
        size: u64,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let (parent, name) = self.slot(path, shown)?;
        self.clear_slot(parent.as_fd(), name, false, shown)?;
        let fd = openat(
            &*parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io(shown, "create file", e))?;
        let mut file = File::from(fd);
        let copied = self.copy_data(data, &mut file, shown)?;
        if copied != size {
            return Err(self.corrupt(format!(
                "entry {shown:?}: data truncated ({copied} of {size} bytes)"
            )));
        }
        let node = Node::Fd(file.as_fd());
        self.chown(node, meta, shown)?;
        self.chmod(node, meta.mode, shown)?;
        self.set_xattrs(node, meta, true, shown);
        self.set_times(node, &meta.times, shown)
    }

    fn copy_data<R: Read>(
        &mut self,
        data: &mut R,
        file: &mut File,
        shown: &str,
    ) -> Result<u64, UnpackError> {
        if self.buf.is_empty() {
            self.buf = vec![0; COPY_BUFFER];
        }
        let mut copied = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => return Ok(copied),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_err(e)),
            };
            copied += n as u64;
            // Sparse entries expand beyond their stream size: bound what is written.
            self.written += n as u64;
            if self.written > self.opts.max_layer_bytes {
                return Err(UnpackError::TooLarge {
                    layer: self.layer.to_owned(),
                    limit: Limit::LayerBytes,
                    max: self.opts.max_layer_bytes,
                });
            }
            if let Err(e) = file.write_all(&self.buf[..n]) {
                return Err(UnpackError::Io {
                    layer: self.layer.to_owned(),
                    entry: shown.to_owned(),
                    op: "write file",
                    source: e,
                });
            }
        }
    }

    fn directory(&mut self, path: &EntryPath, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        let (parent, name) = self.slot(path, shown)?;
        match self.clear_slot(parent.as_fd(), name, true, shown)? {
            // A directory over a directory merges: keep it, take the new metadata.
            Some(st) => self.make_accessible(parent.as_fd(), name, &st, None, shown)?,
            None => mkdirat(&*parent, name, Mode::from_raw_mode(0o700))
                .map_err(|e| self.io(shown, "create directory", e))?,
        }
        let fd = openat(&*parent, name, DIR_READ_FLAGS, Mode::empty())
            .map_err(|e| self.io(shown, "open directory", e))?;
        self.dir_metadata(fd.as_fd(), path.as_bytes(), meta, shown)
    }

    /// Owner, mode and xattrs now; times (and a mode that would lock us out, when
    /// unprivileged) at the end of the layer, since adding children changes them.
    fn dir_metadata(
        &mut self,
        fd: BorrowedFd<'_>,
        rel: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let node = Node::Fd(fd);
        self.chown(node, meta, shown)?;
        let defer = !self.privileged && meta.mode & 0o700 != 0o700;
        let now = if defer { meta.mode | 0o700 } else { meta.mode };
        self.chmod(node, now, shown)?;
        self.set_xattrs(node, meta, true, shown);
        self.dirs.insert(
            rel.to_vec(),
            DirMeta {
                mode: defer.then_some(meta.mode),
                times: Some(meta.times.clone()),
                declared: true,
            },
        );
        Ok(())
    }

    fn symlink(
        &mut self,
        path: &EntryPath,
        meta: &Meta,
        target: Option<Vec<u8>>,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let target = match target {
            Some(t) if !t.is_empty() && !t.contains(&0) => t,
            _ => {
                return Err(
                    self.corrupt(format!("entry {shown:?}: symlink without a valid target"))
                );
            }
        };
        let (parent, name) = self.slot(path, shown)?;
        self.clear_slot(parent.as_fd(), name, false, shown)?;
        // The target is stored as is: it is never followed while unpacking.
        symlinkat(target.as_slice(), &*parent, name)
            .map_err(|e| self.io(shown, "create symlink", e))?;
        let node = Node::At(parent.as_fd(), name);
        self.chown(node, meta, shown)?;
        self.set_xattrs(node, meta, false, shown);
        self.set_times(node, &meta.times, shown)
    }

    fn hard_link(
        &mut self,
        path: &EntryPath,
        target: Option<Vec<u8>>,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let Some(raw) = target.filter(|t| !t.is_empty()) else {
            return Err(self.corrupt(format!("entry {shown:?}: hard link without a target")));
        };
        let target = EntryPath::parse(&raw).map_err(|p| {
            let why = format!("hard link target {:?}: {}", path::show(&raw), p.describe());
            if p.is_escape() {
                self.escape(shown, why)
            } else {
                self.corrupt(format!("entry {shown:?}: {why}"))
            }
        })?;
        let Some((target_parent_rel, target_name)) = target.split_last() else {
            return Err(self.escape(shown, "hard link to the root directory"));
        };
        if target == *path {
            return Err(self.corrupt(format!("entry {shown:?}: hard link to itself")));
        }
        let missing = || {
            format!(
                "entry {shown:?}: hard link target {:?} does not exist",
                path::show(&raw)
            )
        };
        let target_parent = match self.resolve(target_parent_rel, false) {
            Ok(Some(p)) => p,
            Ok(None) | Err(Lookup::NotDirectory) => return Err(self.corrupt(missing())),
            Err(Lookup::Symlink) => {
                return Err(self.escape(shown, "hard link target goes through a symlink"));
            }
            Err(l) => return Err(self.lookup_err(shown, l)),
        };
        match lstat_at(target_parent.as_fd(), target_name) {
            Ok(Some(st)) if is_dir(&st) => {
                return Err(self.corrupt(format!("entry {shown:?}: hard link to a directory")));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(self.corrupt(missing())),
            Err(e) => return Err(self.io(shown, "stat hard link target", e)),
        }
        let (parent, name) = self.slot(path, shown)?;
        self.clear_slot(parent.as_fd(), name, false, shown)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(
            &*target_parent,
            target_name,
            &*parent,
            name,
            AtFlags::empty(),
        )
        .map_err(|e| self.io(shown, "create hard link", e))
    }

    /// A fifo or device node. Returns whether it was created: a device node is
    /// skipped when mknod is not permitted.
    fn special(
        &mut self,
        path: &EntryPath,
        meta: &Meta,
        kind: FileType,
        shown: &str,
    ) -> Result<bool, UnpackError> {
        let (parent, name) = self.slot(path, shown)?;
        self.clear_slot(parent.as_fd(), name, false, shown)?;
        let (major, minor) = meta.device;
        let dev = if kind == FileType::Fifo {
            0
        } else {
            makedev(major, minor)
        };
        match mknodat(
            &*parent,
            name,
            kind,
            Mode::from_raw_mode(meta.mode & 0o777),
            dev,
        ) {
            Ok(()) => {}
            Err(Errno::PERM) if kind != FileType::Fifo => {
                let what = if kind == FileType::BlockDevice {
                    "block"
                } else {
                    "character"
                };
                self.skip(
                    shown,
                    format!("{what} device {major}:{minor} not created: mknod not permitted"),
                );
                return Ok(false);
            }
            Err(e) => return Err(self.io(shown, "mknod", e)),
        }
        let node = Node::At(parent.as_fd(), name);
        self.chown(node, meta, shown)?;
        self.chmod(node, meta.mode, shown)?;
        self.set_xattrs(node, meta, false, shown);
        self.set_times(node, &meta.times, shown)?;
        Ok(true)
    }

    fn whiteout(&mut self, parent_rel: &[u8], name: &[u8], shown: &str) -> Result<(), UnpackError> {
        if name == WH_OPAQUE {
            return self.opaque(parent_rel, shown);
        }
        if name.starts_with(WH_META_PREFIX) {
            self.skip(shown, "AUFS metadata entry ignored".to_owned());
            return Ok(());
        }
        let target = &name[WH_PREFIX.len()..];
        match target {
            b"" => return Err(self.corrupt(format!("entry {shown:?}: whiteout names nothing"))),
            b"." | b".." => return Err(self.escape(shown, "whiteout of `.` or `..`")),
            _ => {}
        }
        let parent = match self.resolve(parent_rel, false) {
            Ok(Some(parent)) => parent,
            // Nothing there to remove.
            Ok(None) | Err(Lookup::NotDirectory) => return Ok(()),
            Err(l) => return Err(self.lookup_err(shown, l)),
        };
        let Some(st) = lstat_at(parent.as_fd(), target).map_err(|e| self.io(shown, "stat", e))?
        else {
            return Ok(());
        };
        self.touch(parent_rel, parent.as_fd())
            .map_err(|e| self.io(shown, "stat parent directory", e))?;
        let rel = path::join(parent_rel, target);
        self.remove_lower(parent.as_fd(), target, &rel, &st, shown)
    }

    fn opaque(&mut self, dir_rel: &[u8], shown: &str) -> Result<(), UnpackError> {
        let dir = match self.resolve(dir_rel, false) {
            Ok(Some(dir)) => dir,
            Ok(None) | Err(Lookup::NotDirectory) => return Ok(()),
            Err(l) => return Err(self.lookup_err(shown, l)),
        };
        self.touch(dir_rel, dir.as_fd())
            .map_err(|e| self.io(shown, "stat directory", e))?;
        let top = fsops::reopen(dir.as_fd()).map_err(|e| self.io(shown, "open directory", e))?;
        self.sweep(top, dir_rel.to_vec(), false, shown)
    }

    fn chown(&self, node: Node<'_>, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        if self.opts.rootless {
            return Ok(());
        }
        let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
        let result = match node {
            Node::Fd(fd) => fchown(fd, uid, gid),
            Node::At(dir, name) => chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
        };
        result.map_err(|e| {
            let op = if e == Errno::PERM && !self.privileged {
                "chown (not permitted unprivileged: use rootless mode)"
            } else {
                "chown"
            };
            self.io(shown, op, e)
        })
    }

    fn chmod(&self, node: Node<'_>, mode: u32, shown: &str) -> Result<(), UnpackError> {
        let mode = Mode::from_raw_mode(mode);
        let result = match node {
            Node::Fd(fd) => fchmod(fd, mode),
            Node::At(dir, name) => match lstat_at(dir, name) {
                // chmodat follows a final symlink; this is the node just made.
                Ok(Some(st)) if file_type(&st) != FileType::Symlink => {
                    chmodat(dir, name, mode, AtFlags::empty())
                }
                Ok(_) => Err(Errno::NOENT),
                Err(e) => Err(e),
            },
        };
        result.map_err(|e| self.io(shown, "chmod", e))
    }

    fn set_times(
        &self,
        node: Node<'_>,
        times: &Timestamps,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let result = match node {
            Node::Fd(fd) => futimens(fd, times),
            Node::At(dir, name) => utimensat(dir, name, times, AtFlags::SYMLINK_NOFOLLOW),
        };
        result.map_err(|e| self.io(shown, "set times", e))
    }

    /// Best effort: an xattr that cannot be set is skipped, with a warning.
    fn set_xattrs(&mut self, node: Node<'_>, meta: &Meta, clear: bool, shown: &str) {
        if clear && let Node::Fd(fd) = node {
            clear_xattrs(fd);
        }
        for (name, value) in &meta.xattrs {
            let xname = path::show(name);
            if name.as_slice() == b"security.selinux" {
                self.skip(shown, format!("xattr {xname} not applied: host-specific"));
                continue;
            }
            let needs_privilege = name.starts_with(b"security.") || name.starts_with(b"trusted.");
            if needs_privilege && !self.privileged {
                self.skip(shown, format!("xattr {xname} not applied: needs privilege"));
                continue;
            }
            let result = match node {
                Node::Fd(fd) => fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()),
                Node::At(dir, file) => lsetxattr(
                    proc_path(dir, file),
                    name.as_slice(),
                    value,
                    XattrFlags::empty(),
                ),
            };
            if let Err(e) = result {
                self.skip(shown, format!("xattr {xname} not applied: {e}"));
            }
        }
    }

    fn skip(&mut self, shown: &str, what: String) {
        tracing::warn!(layer = self.layer, entry = shown, "{what}");
        self.stats.skipped.push(format!("{shown}: {what}"));
    }

    pub(super) fn stream_err(&self, e: io::Error) -> UnpackError {
        stream::classify(self.layer, &self.state, e)
    }

    pub(super) fn escape(&self, shown: &str, reason: impl Into<String>) -> UnpackError {
        UnpackError::Escape {
            layer: self.layer.to_owned(),
            entry: shown.to_owned(),
            reason: reason.into(),
        }
    }

    pub(super) fn corrupt(&self, message: String) -> UnpackError {
        UnpackError::Corrupt {
            layer: self.layer.to_owned(),
            message,
        }
    }

    pub(super) fn io(&self, shown: &str, op: &'static str, e: Errno) -> UnpackError {
        UnpackError::Io {
            layer: self.layer.to_owned(),
            entry: shown.to_owned(),
            op,
            source: e.into(),
        }
    }

    pub(super) fn lookup_err(&self, shown: &str, l: Lookup) -> UnpackError {
        match l {
            Lookup::Symlink => self.escape(shown, "path goes through a symlink"),
            Lookup::CrossDevice => self.escape(shown, "path crosses a mount point"),
            Lookup::NotDirectory => {
                self.corrupt(format!("entry {shown:?}: a parent is not a directory"))
            }
            Lookup::Io(op, e) => self.io(shown, op, e),
        }
    }

    fn name_problem(&self, shown: &str, p: NameProblem) -> UnpackError {
        if p.is_escape() {
            self.escape(shown, p.describe())
        } else {
            self.corrupt(format!("entry {shown:?}: {}", p.describe()))
        }
    }
}

/// Reads an entry's metadata; the error says what is malformed.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, String> {
    let h = entry.header();
    let uid = h.uid().map_err(|e| format!("bad uid: {e}"))?;
    let gid = h.gid().map_err(|e| format!("bad gid: {e}"))?;
    let mode = h.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777;
    let mtime = h.mtime().map_err(|e| format!("bad mtime: {e}"))?;
    // Other entry types often leave the device fields blank.
    let kind = h.entry_type();
    let (major, minor) = if kind.is_character_special() || kind.is_block_special() {
        let major = h
            .device_major()
            .map_err(|e| format!("bad device major: {e}"))?;
        let minor = h
            .device_minor()
            .map_err(|e| format!("bad device minor: {e}"))?;
        (major, minor)
    } else {
        (None, None)
    };
    // u32::MAX is -1, "leave unchanged", to chown.
    let id = |v: u64, what: &str| {
        u32::try_from(v)
            .ok()
            .filter(|v| *v != u32::MAX)
            .ok_or_else(|| format!("{what} {v} out of range"))
    };
    let (uid, gid) = (id(uid, "uid")?, id(gid, "gid")?);
    let mut mtime = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(records) = entry
        .pax_extensions()
        .map_err(|e| format!("bad PAX header: {e}"))?
    {
        for record in records {
            let record = record.map_err(|e| format!("bad PAX record: {e}"))?;
            match record.key_bytes() {
                b"mtime" => {
                    if let Some(t) = parse_pax_time(record.value_bytes()) {
                        mtime = t;
                    }
                }
                b"atime" => atime = parse_pax_time(record.value_bytes()),
                key => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    Ok(Meta {
        uid,
        gid,
        mode,
        times: Timestamps {
            last_access: atime.unwrap_or(mtime),
            last_modification: mtime,
        },
        device: (major.unwrap_or(0), minor.unwrap_or(0)),
        xattrs,
    })
}

/// A PAX time value: decimal seconds, optionally negative, optionally with a
/// fraction (nanoseconds kept, finer digits dropped).
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let secs: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nsec: i64 = 0;
    let mut scale = 100_000_000;
    for b in frac.bytes().take(9) {
        nsec += i64::from(b - b'0') * scale;
        scale /= 10;
    }
    Some(match (negative, nsec) {
        (false, _) => Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        (true, 0) => Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        },
        (true, _) => Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nsec,
        },
    })
}

/// Removes the xattrs a new or merged object has (inherited ACLs, a merged
/// directory's old ones), so that it ends with exactly the entry's.
fn clear_xattrs(fd: BorrowedFd<'_>) {
    let mut small = [0u8; 1024];
    let list = match flistxattr(fd, &mut small[..]) {
        Ok(0) => return,
        Ok(n) => small[..n].to_vec(),
        Err(Errno::RANGE) => {
            let mut big = vec![0u8; 64 * 1024];
            match flistxattr(fd, &mut big[..]) {
                Ok(n) => {
                    big.truncate(n);
                    big
                }
                Err(_) => return,
            }
        }
        // Unsupported by the filesystem, or similar: nothing to clear.
        Err(_) => return,
    };
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name == b"security.selinux" {
            continue;
        }
        if let Err(e) = fremovexattr(fd, name) {
            tracing::debug!(xattr = %path::show(name), error = %e, "could not clear xattr");
        }
    }
}

/// `/proc/self/fd/N/name`: names `name` in the directory open as `N` for the `l*xattr`
/// calls, which have no `*at` form. The final component is not followed.
fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    PathBuf::from(OsString::from_vec(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(tv_sec: i64, tv_nsec: i64) -> Option<Timespec> {
        Some(Timespec { tv_sec, tv_nsec })
    }

    #[test]
    fn pax_times() {
        let cases: &[(&[u8], Option<Timespec>)] = &[
            (b"1700000000", ts(1_700_000_000, 0)),
            (b"1700000000.5", ts(1_700_000_000, 500_000_000)),
            (b"1700000000.123456789123", ts(1_700_000_000, 123_456_789)),
            (b"-1.5", ts(-2, 500_000_000)),
            (b"-3", ts(-3, 0)),
            (b".25", ts(0, 250_000_000)),
            (b"", None),
            (b".", None),
            (b"12a", None),
            (b"1.-2", None),
        ];
        for (raw, want) in cases {
            let got = parse_pax_time(raw);
            assert_eq!(
                got.map(|t| (t.tv_sec, t.tv_nsec)),
                want.map(|t| (t.tv_sec, t.tv_nsec)),
                "{}",
                path::show(raw)
            );
        }
    }
}
