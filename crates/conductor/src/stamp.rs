//! The local stamp of every event (EVT-11, Q34) with group commit.
//!
//! Same file and format as the kernel's ledger (`.lumenflow/state/conductor/events.jsonl`, one v2
//! event per line, read by `lumenflow events tail`), written the way the kernel's event log
//! writes receipts: concurrent appends queue their lines, one of them (the leader) writes
//! everything queued with one `write` and one `fdatasync`, and each append returns only when
//! its lines are durable. Under load many events share one fsync instead of paying one each,
//! which is what lets the sidecar's tool calls run in parallel. The sidecar is the only writer
//! while it runs; the file is repaired (torn tail cut) by the kernel's `Ledger::open` first.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_kernel::events::ledger::Ledger;

#[derive(Debug, thiserror::Error)]
#[error("event ledger `{path}`: {reason}")]
pub struct StampError {
    pub path: PathBuf,
    pub reason: String,
}

impl StampError {
    pub fn code(&self) -> &'static str {
        "LEDGER_WRITE_FAILED"
    }
}

struct Inner {
    file: File,
    pending: Vec<u8>,
    /// Tickets handed out to appends so far.
    issued: u64,
    /// Every ticket up to this one has been written (or has failed).
    done: u64,
    leader: bool,
    /// Failed commits: tickets in `(after, upto]` and why.
    failures: Vec<(u64, u64, String)>,
}

/// A group-committing append handle on the ledger.
pub struct StampLedger {
    path: PathBuf,
    inner: Mutex<Inner>,
    cond: Condvar,
}

impl StampLedger {
    pub fn open(path: &Path) -> Result<StampLedger, StampError> {
        let err = |reason: String| StampError {
            path: path.to_path_buf(),
            reason,
        };
        // The kernel's open cuts a torn last line; then this handle appends.
        drop(Ledger::open(path).map_err(|e| err(e.to_string()))?);
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        Ok(StampLedger {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                pending: Vec::new(),
                issued: 0,
                done: 0,
                leader: false,
                failures: Vec::new(),
            }),
            cond: Condvar::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `events` (one line each); returns once they are durable.
    pub fn append(&self, events: &[KernelEventV2]) -> Result<(), StampError> {
        let err = |reason: String| StampError {
            path: self.path.clone(),
            reason,
        };
        let mut lines = Vec::new();
        for e in events {
            serde_json::to_writer(&mut lines, e).map_err(|e| err(e.to_string()))?;
            lines.push(b'\n');
        }
        let mut g = self
            .inner
            .lock()
            .map_err(|_| err("the ledger lock is poisoned".into()))?;
        g.pending.extend_from_slice(&lines);
        g.issued += 1;
        let ticket = g.issued;
        loop {
            if g.done >= ticket {
                return match g
                    .failures
                    .iter()
                    .find(|(after, upto, _)| ticket > *after && ticket <= *upto)
                {
                    Some((_, _, reason)) => Err(err(reason.clone())),
                    None => Ok(()),
                };
            }
            if !g.leader {
                g.leader = true;
                let batch = std::mem::take(&mut g.pending);
                let (after, upto) = (g.done, g.issued);
                let file = g
                    .file
                    .try_clone()
                    .map_err(|e| err(format!("cannot clone the file handle: {e}")));
                drop(g);
                let result = file.and_then(|mut f| {
                    f.write_all(&batch)
                        .and_then(|()| f.sync_data())
                        .map_err(|e| err(e.to_string()))
                });
                g = self
                    .inner
                    .lock()
                    .map_err(|_| err("the ledger lock is poisoned".into()))?;
                if let Err(e) = result {
                    g.failures.push((after, upto, e.reason));
                    if g.failures.len() > 64 {
                        g.failures.remove(0);
                    }
                }
                g.done = upto;
                g.leader = false;
                self.cond.notify_all();
            } else {
                g = self
                    .cond
                    .wait(g)
                    .map_err(|_| err("the ledger lock is poisoned".into()))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumenflow_contracts::event::{build_event, BuildOptions};
    use serde_json::Map;
    use std::sync::Arc;

    #[test]
    fn concurrent_appends_all_land_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state/conductor/events.jsonl");
        let ledger = Arc::new(StampLedger::open(&path).expect("open"));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let l = ledger.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let e = build_event(
                            "acme-demo:job_completed",
                            "ws",
                            Map::new(),
                            BuildOptions::idempotent(format!("{t}-{i}")),
                        )
                        .expect("event");
                        l.append(&[e]).expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let (events, _) =
            lumenflow_kernel::events::ledger::read_from(&path, 0, None).expect("read");
        assert_eq!(events.len(), 400);
        let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), 400);
    }
}
