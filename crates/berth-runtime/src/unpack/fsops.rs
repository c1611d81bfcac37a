//! Thin wrappers over the `*at` system calls the applier uses. None of them follows
//! a symlink in the final component; multi-component lookups go through `openat2`
//! with symlinks, magic links and mount crossings all refused.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, openat,
    openat2, statat,
};
use rustix::io::Errno;

/// Flags for a directory handle used only as a lookup base.
pub(super) const DIR_PATH_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Flags for a directory handle that can be read and have its metadata changed.
pub(super) const DIR_READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// How every lookup below the root resolves: scoped to the root, and refusing
/// symlinks (`ELOOP`), magic links and mount points (`EXDEV`) on the way.
pub(super) const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Opens the directory `rel` (one or more components, never `..`) below `dir` as a
/// lookup handle, with [`RESOLVE`]. A symlink anywhere in `rel`, the last component
/// included, fails with `ELOOP`.
pub(super) fn open_dir_beneath(dir: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    // Not O_NOFOLLOW: with it a final symlink would be opened as itself (and fail
    // O_DIRECTORY with ENOTDIR); without it, RESOLVE_NO_SYMLINKS refuses it (ELOOP).
    const FLAGS: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    // EAGAIN means a concurrent rename raced the lookup; try again a few times.
    let mut tries = 0;
    loop {
        match openat2(dir, rel, FLAGS, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN) if tries < 8 => tries += 1,
            other => return other,
        }
    }
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub(super) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The file type in a `stat` result.
pub(super) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Whether a `stat` result is a directory.
pub(super) fn is_dir(st: &Stat) -> bool {
    file_type(st) == FileType::Directory
}

/// Permission bits (including set-id and sticky) of a `stat` result.
pub(super) fn perm_bits(st: &Stat) -> u32 {
    st.st_mode & 0o7777
}

/// Access and modification times of a `stat` result.
// The field types differ between architectures (`c_long`, `i64`, `c_ulong`, `u32`).
#[allow(clippy::unnecessary_cast)]
pub(super) fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as i64,
            tv_nsec: st.st_atime_nsec as i64,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as i64,
            tv_nsec: st.st_mtime_nsec as i64,
        },
    }
}

/// The names in a directory, without `.` and `..`. `dir` may be a lookup handle.
pub(super) fn list_dir<Fd: AsFd>(dir: Fd) -> Result<Vec<Vec<u8>>, Errno> {
    let fd = openat(dir, ".", DIR_READ_FLAGS, Mode::empty())?;
    let mut names = Vec::new();
    for entry in Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Clones a lookup handle (for a directory known to be inside the root).
pub(super) fn reopen(dir: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    openat(dir, ".", DIR_PATH_FLAGS, Mode::empty())
}
