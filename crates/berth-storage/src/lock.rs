//! An exclusive lock on a data directory, so two processes never serve (and
//! corrupt) the same storage. The kernel releases it when the process dies, so a
//! crash never leaves a stale lock behind.

use std::fs::{File, TryLockError};
use std::path::Path;

use crate::{Result, StorageError};

/// Held for as long as the data directory is in use.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Take the lock on `data_dir`, failing at once if another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<DirLock> {
        let path = data_dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StorageError::Locked(data_dir.to_owned())),
            Err(TryLockError::Error(e)) => Err(StorageError::io("lock", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(StorageError::Locked(_))
        ));
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
