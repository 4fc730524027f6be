//! The cross-process lock of an append-only file (`flock`, exclusive), held until dropped.
//!
//! Every process that appends to the kernel log or the event ledger takes it around each commit
//! and around the tail repair at open, so two processes never interleave bytes of one line and
//! a torn tail is only cut when no one is writing. `flock` belongs to the open file, so the lock
//! is taken on a second handle of the writer's file ([`File::try_clone`]): the writer itself
//! stays free to be borrowed mutably while the lock is held.

use std::fs::File;
use std::io;

pub(crate) struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// Block until this process holds the file's exclusive lock.
    pub(crate) fn exclusive(file: &'a File) -> io::Result<Self> {
        file.lock()?;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
