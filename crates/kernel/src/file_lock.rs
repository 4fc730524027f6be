//! The cross-process lock of an append-only file (`flock`, exclusive), held until dropped.
//!
//! Every process that appends to the kernel log or the event ledger takes it around each commit
//! and around the tail repair at open, so two processes never interleave bytes of one line and
//! a torn tail is only cut when no one is writing. `flock` belongs to the open file, so the lock
//! is taken on a second handle of the writer's file ([`File::try_clone`]): the writer itself
//! stays free to be borrowed mutably while the lock is held.
//!
//! [`LockFile`] is the other kind: a file that exists only to be locked, around a
//! read-modify-write of some state (a task operation, a pending approval, the conductor's
//! inbox, a pack's state file), shared by the threads and processes of a workspace.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

pub(crate) struct FileLock<'a>(Option<&'a File>);

impl<'a> FileLock<'a> {
    /// Block until this process holds the file's exclusive lock. On a file system without
    /// `flock` (some FUSE mounts) the guard holds nothing: one process per file, as before the
    /// lock existed, rather than no appends at all.
    pub(crate) fn exclusive(file: &'a File) -> io::Result<Self> {
        match file.lock() {
            Ok(()) => Ok(FileLock(Some(file))),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(FileLock(None)),
            Err(e) => Err(e),
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.0 {
            let _ = file.unlock();
        }
    }
}

/// An exclusive `flock` on a lock file, held until dropped (closing the file releases it).
/// Every acquire opens the file anew, and `flock` belongs to the open file, so a holder excludes
/// other threads of its process as well as other processes.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
}

impl LockFile {
    /// Open `path` (creating it and its folder) and block until this holder has its lock. On a
    /// file system without `flock` (some FUSE mounts) the lock is not taken: one process per
    /// workspace, as before the locks existed, rather than no access at all.
    pub fn acquire(path: &Path) -> io::Result<LockFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.lock() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
            Err(e) => return Err(e),
        }
        Ok(LockFile { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn holders_exclude_each_other_across_threads() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/state.lock");
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let _held = LockFile::acquire(&path).expect("lock");
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1, "one holder at a time");
    }
}
