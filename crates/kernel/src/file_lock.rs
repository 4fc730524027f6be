//! The cross-process lock of an append-only file (`flock`, exclusive), held until dropped.
//!
//! Every process that appends to the kernel log or the event ledger takes it around each commit
//! and around the tail repair at open, so two processes never interleave bytes of one line and
//! a torn tail is only cut when no one is writing. `flock` belongs to the open file, so the lock
//! is taken on a second handle of the writer's file ([`File::try_clone`]): the writer itself
//! stays free to be borrowed mutably while the lock is held.

use std::fs::File;
use std::io;

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
