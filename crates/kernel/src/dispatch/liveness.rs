//! Which runtimes dispatch in a workspace, so crash reconciliation never closes a call that
//! another live process is still running.
//!
//! Every runtime holds a shared `flock` on `dispatchers.lock` beside the kernel log for as long
//! as it lives (the operating system drops it when the process dies, however it dies).
//! Reconciliation needs that lock alone: it converts its own shared lock to an exclusive one and
//! gives up when any other runtime, of this process or another, holds it. The open receipts may
//! then belong to calls still running (a `lumenflow tool call` beside a running sidecar); they
//! are left for the next runtime that starts alone.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// The lock file's name, in the kernel log's folder.
pub const LOCK_FILE: &str = "dispatchers.lock";

/// This runtime's share of the workspace's dispatch lock.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// `None` when the lock file cannot be opened or locked (a read-only or lockless file
    /// system): reconciliation then runs as if alone, as it did before the lock existed.
    file: Option<File>,
}

impl Liveness {
    /// Take a shared lock on `dir/dispatchers.lock` (creating the file).
    pub(crate) fn join(dir: &Path) -> Liveness {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .and_then(|f| f.lock_shared().map(|()| f))
            .ok();
        Liveness { file }
    }

    /// Run `f` when no other runtime holds the lock; `None` (and `f` not run) when one does.
    pub(crate) fn alone<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        let Some(file) = &self.file else {
            return Some(f());
        };
        match file.try_lock() {
            Ok(()) => {
                let out = f();
                // Back to shared: this runtime goes on dispatching.
                let _ = file.lock_shared();
                Some(out)
            }
            Err(TryLockError::WouldBlock) => {
                // A failed conversion may have dropped the shared lock (flock converts by
                // unlocking first): take it again.
                let _ = file.lock_shared();
                None
            }
            Err(TryLockError::Error(_)) => {
                let _ = file.lock_shared();
                Some(f())
            }
        }
    }
}
