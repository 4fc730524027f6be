//! Per-channel sequence numbers (DLV-03, DLV-04, Q8, Q9).
//!
//! Each channel (the sidecar's HTTP transport, a phone endpoint, ...) numbers the events it sends
//! with a `seq` that only grows, across restarts too, so the control plane can order what one
//! channel emitted. To avoid an fsync per event, numbers are leased in blocks: the file
//! `.lumenflow/state/conductor/seq/<channel>.json` records the end of the current lease, written
//! atomically before any number of the block is handed out. After a crash the counter restarts
//! at the lease end: numbers may skip, never repeat or go back.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
        let first = s.next;
        let end = first
            .checked_add(n)
            .ok_or_else(|| err("the counter overflowed".into()))?;
        if end > s.leased_until {
            let until = end.saturating_add(LEASE_BLOCK);
            let lease = Lease {
                channel: self.channel.clone(),
                next_free: until,
            };
            let bytes = serde_json::to_vec(&lease).map_err(|e| err(e.to_string()))?;
            fsio::write_atomic(&self.path, &bytes, Mode::Private)
                .map_err(|e| err(e.to_string()))?;
            s.leased_until = until;
        }
        s.next = end;
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
