//! Per-channel sequence numbers (DLV-03, DLV-04, Q8, Q9).
//!
//! Each channel (the sidecar's HTTP transport, a phone endpoint, ...) numbers the events it sends
//! with a `seq` that only grows, across restarts too, so the control plane can order what one
//! channel emitted. To avoid an fsync per event, numbers are leased in blocks: the file
//! `.lumenflow/state/conductor/seq/<channel>.json` records the end of the current lease, written
//! atomically before any number of the block is handed out. After a crash the counter restarts
//! at the lease end: numbers may skip, never repeat or go back.
//!
//! Two processes may send on one channel (`lumenflow mcp` beside the sidecar). A lease is
//! renewed under an exclusive `flock` on `<channel>.lock`, after re-reading the file, and starts
//! no lower than what the other process leased: the two never hand out the same number.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lumenflow_kernel::file_lock::LockFile;
use serde::{Deserialize, Serialize};

use crate::fsio::{self, Mode};

/// How many numbers one lease covers.
pub const LEASE_BLOCK: u64 = 4096;

/// The channel of events the sidecar sends to the control plane.
pub const SIDECAR_CHANNEL: &str = "http-sidecar";

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    channel: String,
    /// Every number below this one may have been used.
    next_free: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    #[error("sequence file `{path}`: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("channel id `{0}` is invalid: expected letters, digits, `-` or `_`")]
    Channel(String),
}

impl SeqError {
    pub fn code(&self) -> &'static str {
        match self {
            SeqError::File { .. } => "SEQ_STATE_INVALID",
            SeqError::Channel(_) => "INVALID_ARGUMENT",
        }
    }
}

#[derive(Debug)]
struct State {
    next: u64,
    leased_until: u64,
}

/// A persisted, monotonic counter for one channel.
#[derive(Debug)]
pub struct SeqCounter {
    channel: String,
    path: PathBuf,
    state: Mutex<State>,
}

/// `<workspace>/.lumenflow/state/conductor/seq/<channel>.json`.
pub fn default_path(workspace_dir: &Path, channel: &str) -> PathBuf {
    lumenflow_kernel::events::conductor_state_dir(workspace_dir)
        .join("seq")
        .join(format!("{channel}.json"))
}

impl SeqCounter {
    pub fn open(path: &Path, channel: &str) -> Result<SeqCounter, SeqError> {
        if channel.is_empty()
            || !channel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SeqError::Channel(channel.to_string()));
        }
        let start = match std::fs::read(path) {
            Ok(bytes) => {
                let lease: Lease = serde_json::from_slice(&bytes).map_err(|e| SeqError::File {
                    path: path.to_path_buf(),
                    reason: format!("{e}; expected {{\"channel\", \"next_free\"}}"),
                })?;
                lease.next_free
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => {
                return Err(SeqError::File {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        Ok(SeqCounter {
            channel: channel.to_string(),
            path: path.to_path_buf(),
            state: Mutex::new(State {
                next: start,
                leased_until: start,
            }),
        })
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Reserve `n` consecutive numbers; returns the first.
    pub fn take(&self, n: u64) -> Result<u64, SeqError> {
        let err = |reason: String| SeqError::File {
            path: self.path.clone(),
            reason,
        };
        let mut s = self
            .state
            .lock()
            .map_err(|_| err("the counter lock is poisoned".into()))?;
        let overflow = || err("the counter overflowed".into());
        if s.next.checked_add(n).ok_or_else(overflow)? > s.leased_until {
            // Held until the new lease is written; closing the file releases it.
            let _lease_lock = self.lease_lock()?;
            let leased_elsewhere = self.read_next_free()?;
            if leased_elsewhere > s.next {
                // Another process leased the numbers from here: start after its lease.
                s.next = leased_elsewhere;
            }
            let until = s
                .next
                .checked_add(n)
                .ok_or_else(overflow)?
                .saturating_add(LEASE_BLOCK);
            let lease = Lease {
                channel: self.channel.clone(),
                next_free: until,
            };
            let bytes = serde_json::to_vec(&lease).map_err(|e| err(e.to_string()))?;
            fsio::write_atomic(&self.path, &bytes, Mode::Private)
                .map_err(|e| err(e.to_string()))?;
            s.leased_until = until;
        }
        let first = s.next;
        s.next = first + n;
        Ok(first)
    }

    /// The exclusive `flock` on `<channel>.lock`, held while a lease is renewed.
    fn lease_lock(&self) -> Result<LockFile, SeqError> {
        let path = self.path.with_extension("lock");
        LockFile::acquire(&path).map_err(|e| SeqError::File {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// The end of the last lease written by any process (1 before the first).
    fn read_next_free(&self) -> Result<u64, SeqError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<Lease>(&bytes)
                .map(|lease| lease.next_free)
                .map_err(|e| SeqError::File {
                    path: self.path.clone(),
                    reason: format!("{e}; expected {{\"channel\", \"next_free\"}}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
            Err(e) => Err(SeqError::File {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_processes_on_one_channel_never_share_a_number() {
        // Two counters on one file, each with its own lock handle, as two processes would be:
        // both opened before either leased, so both start at 1.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("seq/http-sidecar.json");
        let a = SeqCounter::open(&path, SIDECAR_CHANNEL).expect("a");
        let b = SeqCounter::open(&path, SIDECAR_CHANNEL).expect("b");
        let mut seen = std::collections::HashSet::new();
        let (mut last_a, mut last_b) = (0, 0);
        for i in 0..3 * LEASE_BLOCK {
            let (counter, last) = if i % 3 == 0 {
                (&b, &mut last_b)
            } else {
                (&a, &mut last_a)
            };
            let first = counter.take(1 + i % 2).expect("take");
            assert!(first > *last, "each counter only grows");
            *last = first + i % 2;
            for n in first..=*last {
                assert!(seen.insert(n), "{n} handed out twice");
            }
        }
    }

    #[test]
    fn numbers_grow_across_restarts() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("seq/http-sidecar.json");
        let c = SeqCounter::open(&path, SIDECAR_CHANNEL).expect("open");
        assert_eq!(c.take(1).expect("take"), 1);
        assert_eq!(c.take(3).expect("take"), 2);
        let last = c.take(1).expect("take");
        drop(c);
        let c = SeqCounter::open(&path, SIDECAR_CHANNEL).expect("reopen");
        assert!(c.take(1).expect("take") > last);
        assert!(SeqCounter::open(&path, "../x").is_err());
    }
}
