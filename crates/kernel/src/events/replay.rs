//! A durable set of replay keys per pack (HND-03, Q21).
//!
//! A handler checks `has(key)` before its effect and calls `put(key)` after it. `put` returns only
//! once the key is on disk (appended and fsync'd), so a crash between the effect and the `put`
//! re-runs an idempotent effect, and a crash after it never re-runs it. A torn last line (a crash
//! mid-append) is cut when the log is opened.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lumenflow_contracts::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("replay key must be non-empty and on one line, got {0:?}")]
    BadKey(String),
    #[error("replay log `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replay log `{path}` line {line} is not a replay record: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl ReplayError {
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::BadKey(_) => "REPLAY_KEY_INVALID",
            ReplayError::Io { .. } => "IO_ERROR",
            ReplayError::Corrupt { .. } => "REPLAY_LOG_CORRUPT",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    key: String,
    at: String,
}

/// One pack's replay log.
#[derive(Debug)]
pub struct ReplayLog {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    keys: HashSet<String>,
    file: File,
}

impl ReplayLog {
    /// Open (or create) the log at `path`, loading every key and cutting a torn last line.
    pub fn open(path: &Path) -> Result<Self, ReplayError> {
        let io = |source| ReplayError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            // A crash mid-append left a partial line: that key was never acknowledged.
            file.set_len(complete as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let mut keys = HashSet::new();
        for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let record: Record =
                serde_json::from_slice(line).map_err(|e| ReplayError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: e.to_string(),
                })?;
            keys.insert(record.key);
        }
        Ok(ReplayLog {
            path: path.to_path_buf(),
            state: Mutex::new(State { keys, file }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn has(&self, key: &str) -> bool {
        self.state
            .lock()
            .map(|s| s.keys.contains(key))
            .unwrap_or(false)
    }

    /// Record `key` durably. Recording a key twice is a no-op.
    pub fn put(&self, key: &str) -> Result<(), ReplayError> {
        if key.is_empty() || key.contains(['\n', '\r']) {
            return Err(ReplayError::BadKey(key.to_string()));
        }
        let io = |source| ReplayError::Io {
            path: self.path.clone(),
            source,
        };
        let mut state = self.state.lock().map_err(|_| {
            io(std::io::Error::other(
                "replay log lock poisoned by a panicking handler",
            ))
        })?;
        if state.keys.contains(key) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&Record {
            key: key.to_string(),
            at: Timestamp::now().to_rfc3339(),
        })
        .map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        state.file.write_all(&line).map_err(io)?;
        state.file.sync_data().map_err(io)?;
        state.keys.insert(key.to_string());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.keys.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_reopening_and_a_torn_tail_is_cut() {
        // HND-03: the key is durable once put returns.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("replay/acme-demo.jsonl");
        let log = ReplayLog::open(&path).expect("open");
        assert!(!log.has("acme-demo:recover:evt-1"));
        log.put("acme-demo:recover:evt-1").expect("put");
        log.put("acme-demo:recover:evt-1").expect("idempotent put");
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).expect("append");
        f.write_all(b"{\"key\":\"acme-demo:recover:evt-2\",\"at\"")
            .expect("torn");
        drop(f);
        let log = ReplayLog::open(&path).expect("reopen");
        assert!(log.has("acme-demo:recover:evt-1"));
        assert!(!log.has("acme-demo:recover:evt-2"));
        assert_eq!(log.len(), 1);
        assert_eq!(fs::read_to_string(&path).expect("read").lines().count(), 1);
        assert!(log.put("bad\nkey").is_err());
    }

    #[test]
    fn a_corrupt_middle_line_is_reported_not_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.jsonl");
        fs::write(
            &path,
            "{\"key\":\"a\",\"at\":\"x\"}\nnot json\n{\"key\":\"b\",\"at\":\"x\"}\n",
        )
        .expect("w");
        let err = ReplayLog::open(&path).expect_err("corrupt");
        assert_eq!(err.code(), "REPLAY_LOG_CORRUPT");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
