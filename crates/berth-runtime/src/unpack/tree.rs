//! Directory lookups inside the root, and removing trees (replaced entries,
//! whiteouts, opaque directories) without recursion and with a bounded number of open
//! descriptors.

use std::rc::Rc;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, Stat, chmodat, fstat, mkdirat, openat, unlinkat};
use rustix::io::Errno;

use super::UnpackError;
use super::apply::{Applier, DirMeta, Lookup};
use super::fsops::{self, DIR_PATH_FLAGS, is_dir, list_dir, lstat_at, perm_bits, times_of};
use super::path;

/// A directory being emptied.
struct Frame {
    /// Its name in its parent.
    name: Vec<u8>,
    /// Its path from the root (kept only when sparing this layer's paths).
    rel: Vec<u8>,
    /// Children not yet handled.
    pending: Vec<Vec<u8>>,
    /// Whether everything below goes (else only what this layer did not create).
    remove: bool,
}

impl Applier<'_> {
    /// Opens directory `rel` below the root; with `create`, makes missing
    /// components (mode 0755). `None` when it does not exist and `create` is off.
    ///
    /// Every step refuses symlinks (see [`fsops::RESOLVE`]). Unprivileged, a
    /// directory the owner cannot enter or write is opened up (`u+rwx`) and its mode
    /// restored at the end of the layer.
    pub(super) fn resolve(
        &mut self,
        rel: &[u8],
        create: bool,
    ) -> Result<Option<Rc<OwnedFd>>, Lookup> {
        if let Some((cached, fd)) = &self.cache
            && cached.as_slice() == rel
        {
            return Ok(Some(fd.clone()));
        }
        let fast = if self.privileged {
            match fsops::open_dir_beneath(self.root, rel) {
                Ok(fd) => Some(fd),
                Err(Errno::NOENT) if !create => return Ok(None),
                // Missing components to make, a directory to open up, or a path
                // longer than one syscall takes: one component at a time.
                Err(Errno::NOENT | Errno::ACCESS | Errno::NAMETOOLONG) => None,
                Err(e) => return Err(Lookup::from_errno("open directory", e)),
            }
        } else {
            None
        };
        let fd = match fast {
            Some(fd) => fd,
            None => match self.walk(rel, create)? {
                Some(fd) => fd,
                None => return Ok(None),
            },
        };
        let fd = Rc::new(fd);
        self.cache = Some((rel.to_vec(), fd.clone()));
        Ok(Some(fd))
    }

    /// [`Applier::resolve`] one component at a time.
    fn walk(&mut self, rel: &[u8], create: bool) -> Result<Option<OwnedFd>, Lookup> {
        let mut cur = fsops::reopen(self.root).map_err(|e| Lookup::Io("open root", e))?;
        let mut cur_rel = Vec::new();
        for comp in path::components(rel) {
            let next_rel = path::join(&cur_rel, comp);
            let fd = match fsops::open_dir_beneath(cur.as_fd(), comp) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    self.touch(&cur_rel, cur.as_fd())
                        .map_err(|e| Lookup::Io("stat directory", e))?;
                    match mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                        // Independent of the umask.
                        Ok(()) => chmodat(&cur, comp, Mode::from_raw_mode(0o755), AtFlags::empty())
                            .map_err(|e| Lookup::Io("chmod directory", e))?,
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(Lookup::Io("create directory", e)),
                    }
                    fsops::open_dir_beneath(cur.as_fd(), comp)
                        .map_err(|e| Lookup::from_errno("open directory", e))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(Lookup::from_errno("open directory", e)),
            };
            if !self.privileged {
                let st = fstat(&fd).map_err(|e| Lookup::Io("stat directory", e))?;
                if st.st_uid == self.euid && perm_bits(&st) & 0o700 != 0o700 {
                    self.remember_mode(&next_rel, &st);
                    chmodat(
                        &cur,
                        comp,
                        Mode::from_raw_mode(perm_bits(&st) | 0o700),
                        AtFlags::empty(),
                    )
                    .map_err(|e| Lookup::Io("make directory accessible", e))?;
                }
            }
            cur = fd;
            cur_rel = next_rel;
        }
        Ok(Some(cur))
    }

    /// Notes directory `rel`'s times before this layer changes its content, so that
    /// they can be put back unless the layer sets its own.
    pub(super) fn touch(&mut self, rel: &[u8], dir: BorrowedFd<'_>) -> Result<(), Errno> {
        if !self.dirs.contains_key(rel) {
            let st = fstat(dir)?;
            self.remember(rel, &st);
        }
        Ok(())
    }

    fn remember(&mut self, rel: &[u8], st: &Stat) {
        if !self.dirs.contains_key(rel) {
            self.dirs.insert(
                rel.to_vec(),
                DirMeta {
                    mode: None,
                    times: Some(times_of(st)),
                    declared: false,
                },
            );
        }
    }

    /// Notes directory `rel`'s mode before widening it.
    fn remember_mode(&mut self, rel: &[u8], st: &Stat) {
        self.remember(rel, st);
        if let Some(meta) = self.dirs.get_mut(rel)
            && !meta.declared
            && meta.mode.is_none()
        {
            meta.mode = Some(perm_bits(st));
        }
    }

    /// Unprivileged, gives the owner `rwx` on directory `name` so it can be listed
    /// and emptied; with `restore`, its mode is put back at the end of the layer.
    pub(super) fn make_accessible(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
        restore: Option<&[u8]>,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if self.privileged || st.st_uid != self.euid || perm_bits(st) & 0o700 == 0o700 {
            return Ok(());
        }
        if let Some(rel) = restore {
            self.remember_mode(rel, st);
        }
        // chmodat follows a final symlink, but `st` shows a directory.
        chmodat(
            parent,
            name,
            Mode::from_raw_mode(perm_bits(st) | 0o700),
            AtFlags::empty(),
        )
        .map_err(|e| self.io(shown, "make directory accessible", e))
    }

    /// Removes `name` in `parent` and everything below it.
    pub(super) fn remove_path(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
        shown: &str,
    ) -> Result<(), UnpackError> {
        self.cache = None;
        if !is_dir(st) {
            return unlinkat(parent, name, AtFlags::empty())
                .map_err(|e| self.io(shown, "remove", e));
        }
        self.make_accessible(parent, name, st, None, shown)?;
        let top = openat(parent, name, DIR_PATH_FLAGS, Mode::empty())
            .map_err(|e| self.io(shown, "open directory", e))?;
        self.sweep(top, Vec::new(), true, shown)?;
        unlinkat(parent, name, AtFlags::REMOVEDIR)
            .map_err(|e| self.io(shown, "remove directory", e))
    }

    /// A whiteout of `rel` (`name` in `parent`): removes it and what is below it,
    /// sparing paths this layer created and their ancestors, since a whiteout only
    /// hides lower layers.
    pub(super) fn remove_lower(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        st: &Stat,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if !self.upper.contains(rel) {
            return self.remove_path(parent, name, st, shown);
        }
        if !is_dir(st) {
            return Ok(());
        }
        self.remember(rel, st);
        self.make_accessible(parent, name, st, Some(rel), shown)?;
        let top = openat(parent, name, DIR_PATH_FLAGS, Mode::empty())
            .map_err(|e| self.io(shown, "open directory", e))?;
        self.sweep(top, rel.to_vec(), false, shown)
    }

    /// Empties directory `top` (path `top_rel`): of everything, when `remove_all`,
    /// else of what this layer did not create. `top` itself stays.
    ///
    /// Iterative, holding one directory descriptor at a time: going back up opens
    /// `..` of the directory just emptied, which is its parent since nothing else
    /// changes the tree meanwhile.
    pub(super) fn sweep(
        &mut self,
        top: OwnedFd,
        top_rel: Vec<u8>,
        remove_all: bool,
        shown: &str,
    ) -> Result<(), UnpackError> {
        self.cache = None;
        let pending = list_dir(&top).map_err(|e| self.io(shown, "list directory", e))?;
        let mut stack = vec![Frame {
            name: Vec::new(),
            rel: top_rel,
            pending,
            remove: remove_all,
        }];
        let mut cur = top;
        while let Some(frame) = stack.last_mut() {
            let Some(child) = frame.pending.pop() else {
                let done = stack.pop();
                if stack.is_empty() {
                    break;
                }
                let parent = openat(&cur, "..", DIR_PATH_FLAGS, Mode::empty())
                    .map_err(|e| self.io(shown, "open parent directory", e))?;
                if let Some(done) = done
                    && done.remove
                {
                    unlinkat(&parent, done.name.as_slice(), AtFlags::REMOVEDIR)
                        .map_err(|e| self.io(shown, "remove directory", e))?;
                }
                cur = parent;
                continue;
            };
            let child_rel = if frame.remove {
                Vec::new()
            } else {
                path::join(&frame.rel, &child)
            };
            let remove = frame.remove || !self.upper.contains(&child_rel);
            let Some(st) = lstat_at(cur.as_fd(), &child).map_err(|e| self.io(shown, "stat", e))?
            else {
                continue;
            };
            if !is_dir(&st) {
                if remove {
                    unlinkat(&cur, child.as_slice(), AtFlags::empty())
                        .map_err(|e| self.io(shown, "remove", e))?;
                }
                continue;
            }
            if !remove {
                // Kept, but its lower-layer children go: its times change.
                self.remember(&child_rel, &st);
            }
            let restore = (!remove).then_some(child_rel.as_slice());
            self.make_accessible(cur.as_fd(), &child, &st, restore, shown)?;
            let fd = openat(&cur, child.as_slice(), DIR_PATH_FLAGS, Mode::empty())
                .map_err(|e| self.io(shown, "open directory", e))?;
            let pending = list_dir(&fd).map_err(|e| self.io(shown, "list directory", e))?;
            stack.push(Frame {
                name: child,
                rel: child_rel,
                pending,
                remove,
            });
            cur = fd;
        }
        Ok(())
    }
}
