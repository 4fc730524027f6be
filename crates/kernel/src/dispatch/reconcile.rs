//! Crash reconciliation (KRN-12): a started receipt with no finished receipt gets a `crashed`
//! finish, because the process that ran the call stopped before it returned.
//!
//! The log is streamed and only the ids of calls still open are kept. After each run the
//! position scanned to is remembered in `reconciled.json` beside the log: up to there no call
//! is open (every one finished, or was just closed as crashed), so the next run scans only
//! what came after. Every runtime start reconciles (each `lumenflow tool call` is one), and a
//! full scan costs about half a second per 366 MB of log. The position is trusted only while
//! the line just before it still has the remembered `seq` and `hash`; since every hash covers
//! the one before it, that pins the whole prefix. When it does not hold, records were removed
//! from the log or the log was replaced: the runtime refuses to open (`LOG_SHORTENED`) instead of
//! carrying on from a shorter chain, which the chain alone cannot show. An older log restored
//! on purpose is accepted by removing `reconciled.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{Runtime, TOOL_CALL_FINISHED, TOOL_CALL_STARTED};
use crate::eventlog::LogError;

/// The file name of the remembered position, in the log's folder.
pub const RECONCILED_FILE: &str = "reconciled.json";

/// Up to `end` the log has no open call; the line at `[line_start, end)` has `seq` and `hash`.
#[derive(Debug, Serialize, Deserialize)]
struct ReconciledThrough {
    line_start: u64,
    end: u64,
    seq: u64,
    hash: String,
}

#[derive(Deserialize)]
struct ReceiptLine<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    receipt_id: Option<std::borrow::Cow<'a, str>>,
}

/// Only lines holding this can be receipts: the rest are skipped without parsing.
const MARK: &[u8] = b"\"kind\":\"tool_call_";

impl Runtime {
    fn reconciled_path(&self) -> PathBuf {
        self.log
            .path()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(RECONCILED_FILE)
    }

    /// Where to start scanning: the remembered position, which must still hold.
    fn reconciled_through(&self, path: &Path) -> Result<u64, LogError> {
        let Some(through) = read_position(path) else {
            return Ok(0);
        };
        match self.log.line_between(through.line_start, through.end)? {
            Some((seq, hash)) if seq == through.seq && hash == through.hash => Ok(through.end),
            _ => Err(shortened(self.log.path(), path, through)),
        }
    }

    pub(super) fn reconcile_crashed_alone(&self) -> Result<usize, LogError> {
        let remembered = self.reconciled_path();
        let start = self.reconciled_through(&remembered)?;
        // Open receipt id -> the order it started in (crashed finishes follow that order).
        let mut open: HashMap<String, u64> = HashMap::new();
        let mut started = 0u64;
        let scanned = self.log.scan_lines_from(start, |line| {
            if !line.windows(MARK.len()).any(|w| w == MARK) {
                return Ok(());
            }
            let Ok(record) = serde_json::from_slice::<ReceiptLine<'_>>(line) else {
                return Ok(());
            };
            let Some(id) = record.receipt_id else {
                return Ok(());
            };
            match record.kind.as_ref() {
                TOOL_CALL_STARTED => {
                    started += 1;
                    open.insert(id.into_owned(), started);
                }
                TOOL_CALL_FINISHED => {
                    open.remove(id.as_ref());
                }
                _ => {}
            }
            Ok(())
        })?;
        let mut open: Vec<(String, u64)> = open.into_iter().collect();
        open.sort_by_key(|(_, order)| *order);
        let records: Vec<Map<String, Value>> =
            open.iter().map(|(id, _)| crashed_finish(id)).collect();
        let n = records.len();
        if n > 0 {
            self.log.append_batch(records)?;
        }
        // Only now is nothing before `scanned.end` open. A position that cannot be written
        // costs the next start a full scan, nothing else.
        if let Some(line_start) = scanned.last_line {
            if let Some((seq, hash)) = self.log.line_between(line_start, scanned.end)? {
                remember(
                    &remembered,
                    &ReconciledThrough {
                        line_start,
                        end: scanned.end,
                        seq,
                        hash,
                    },
                );
            }
        }
        Ok(n)
    }
}

fn read_position(path: &Path) -> Option<ReconciledThrough> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<ReconciledThrough>(&b).ok())
}

fn shortened(log: &Path, anchor: &Path, through: ReconciledThrough) -> LogError {
    LogError::Shortened {
        path: log.to_path_buf(),
        anchor: anchor.to_path_buf(),
        seq: through.seq,
        hash: through.hash,
    }
}

/// Does the log at `log_path` still hold the record its `reconciled.json` remembers? Nothing to
/// compare (no position, or one that cannot be read) is not an error. The position pins the
/// whole prefix of the log up to it, so a log emptied, cut at a line boundary or replaced
/// since is found here, where the chain alone cannot show it (`lumenflow audit verify`).
pub fn check_position(log_path: &Path) -> Result<(), LogError> {
    let anchor = log_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(RECONCILED_FILE);
    let Some(through) = read_position(&anchor) else {
        return Ok(());
    };
    let found = crate::eventlog::record_between(log_path, through.line_start, through.end)
        .map_err(|source| LogError::Io {
            path: log_path.to_path_buf(),
            source,
        })?;
    match found {
        Some((seq, hash)) if seq == through.seq && hash == through.hash => Ok(()),
        _ => Err(shortened(log_path, &anchor, through)),
    }
}

fn crashed_finish(receipt_id: &str) -> Map<String, Value> {
    super::obj(json!({
        "kind": TOOL_CALL_FINISHED,
        "receipt_id": receipt_id,
        "result": "crashed",
        "duration_ms": 0,
        "policy_decisions": [{"policy_id": "kernel.reconciliation", "decision": "deny",
            "reason": "Orphaned started receipt without a finished receipt (the process stopped mid-call)"}],
        "artifacts_written": [],
    }))
}

/// Write the position (temp file and rename; only ever one writer: reconciliation holds the
/// workspace's dispatch lock alone).
fn remember(path: &Path, through: &ReconciledThrough) {
    let Ok(bytes) = serde_json::to_vec(through) else {
        return;
    };
    let tmp = path.with_extension("json.tmp");
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}
