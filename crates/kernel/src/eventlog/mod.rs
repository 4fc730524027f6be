//! The kernel event log: one append-only, hash-chained JSON Lines file (KRN-13).
//!
//! Every kernel event (the v1 `task_*` / `run_*` family of the original), every v2 conductor event
//! the kernel keeps, and later the evidence store's receipts, is one line of one file, by default
//! `<workspace>/.lumenflow/kernel/events.jsonl` ([`default_path`]).
//!
//! # On disk
//!
//! ```text
//! {"seq":1,"prev_hash":"000…000","hash":"9f2c…","timestamp":"2026-04-20T00:00:00.000Z","kind":"task_created","schema_version":1,"spec_hash":"…","task_id":"WU-1"}
//! {"seq":2,"prev_hash":"9f2c…","hash":"41d0…","timestamp":"2026-04-20T00:00:01.000Z","kind":"task_claimed",…}
//! ```
//!
//! - `seq` counts from 1 and is consecutive: line *n* holds seq *n*;
//! - `prev_hash` is the previous line's `hash` (64 zeros on the first line);
//! - `hash` is the lowercase hex SHA-256 of the RFC 8785 canonical JSON of the line's object
//!   **without** the `hash` member (so it covers `seq`, `prev_hash`, `timestamp`, `kind` and every
//!   field of the caller);
//! - `timestamp` is RFC 3339 UTC with milliseconds: the caller's own (normalised to UTC, so a v1
//!   batch such as claim + run started keeps its identical timestamps) or, when absent, the time of
//!   the group commit that wrote the line;
//! - `kind` is any non-empty string; the caller's other fields follow in canonical (sorted) order,
//!   each value in its canonical form. Readers must not depend on the order of members.
//!
//! The writer fixes `seq`, `prev_hash` and `hash`; a record that sets them is refused
//! (`RECORD_INVALID`), as is a record holding an integer beyond ±(2^53 − 1): RFC 8785 numbers are
//! doubles, so such an integer could be changed without changing the hash.
//!
//! **v1 and v2 records.** A v1 kernel event is stored flat, exactly its fields (`{schema_version: 1,
//! kind: "task_created", task_id, spec_hash}`; see [`v1_record`]). A v2 conductor event is stored
//! *nested*, `{kind: "<v2 kind>", timestamp: <its emission time>, event: {<the whole v2
//! envelope>}}` ([`v2_record`]): the envelope keeps its own `seq` (the transport's), `timestamp` and
//! `schema_version` untouched, so its content-derived `event_id` can still be re-checked, and
//! nothing of it collides with the log's own members. v2 kinds are namespaced (`conductor:…`), v1
//! kinds are not, so a kind filter never confuses the two.
//!
//! # Writing: group commit, fsync before success
//!
//! [`EventLog::append`] and [`EventLog::append_batch`] return only after the line is written and
//! `fdatasync`'d. Concurrent appenders are batched leader/follower style: the first appender to find
//! no commit in flight becomes the leader, takes every queued record, writes them with one `write`
//! and one `fdatasync`, hands the next commit to the first appender queued meanwhile, and wakes only
//! the followers it committed for (each waits on its own slot, so a commit never wakes the whole
//! queue). One fsync thus covers many records ([`LogStats::fsyncs`] against
//! [`LogStats::records_appended`]), and durability is never traded away. Validation and the
//! canonical encoding of each record happen on the appender's own thread; the leader only chains,
//! hashes and writes.
//!
//! Every [`EventLog::open`] of the same path in a process shares one writer. Several processes
//! may append to one log (a `lumenflow tool call` beside a running sidecar): each commit, and
//! the tail recovery at open, holds the file's exclusive `flock`, and a writer that finds the
//! file longer than it left it checks that the first new line verifies and follows on from its
//! own last record (`seq` and `prev_hash`), then continues the chain after the other process's
//! records. Bytes that do not follow on (a hand edit, a foreign writer that does not lock) are
//! refused (`LOG_CONFLICT`) instead of forking the chain.
//!
//! # Opening: a torn tail is cut
//!
//! A crash can leave the last line incomplete. [`EventLog::open`] reads only the tail of the file:
//! bytes after the last newline are cut; with no such fragment, a last line that fails its check
//! is cut only when it holds NUL bytes (blocks allocated but never written before the crash). A
//! whole line without them that fails its check was changed after it was written: open refuses
//! it (`LOG_CORRUPT`, naming the line) rather than erase an acknowledged record with the trace of
//! the edit. Only that one line is ever cut, and its bytes are first kept in `<log>.cut-<unix
//! ms>` beside the log ([`TornTail::saved_to`]); anything wrong before it is left for [`verify`]
//! to report (or refused at open with [`LogOptions::verify_on_open`]). A cut is never an
//! acknowledged record: that one was fsync'd whole before its appender saw success.
//!
//! # Reading
//!
//! [`replay`] filters by task, kind(s), time range (inclusive) and a `seq` cursor (exclusive), with
//! an optional limit. The cursor is a sequence number, never a timestamp (the original's timestamp
//! cursor skipped records sharing the boundary timestamp), and no limit means every match (the
//! original silently cut internal callers at 100). [`verify`] re-checks the whole chain and names
//! the first bad line, which is what `lumenflow audit verify` prints.

mod error;
mod record;
mod replay;
mod verify;
mod writer;

use std::path::{Path, PathBuf};

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_contracts::kinds::KernelV1Kind;
use serde_json::{Map, Value};

pub use error::{LineProblem, LogError, VerifyError};
pub use record::LogRecord;
pub use replay::{replay, ReplayFilter, ReplayPage};
pub use verify::{verify, VerifySummary};
pub use writer::{record_between, Appended, EventLog, LogOptions, LogStats, ScanEnd, TornTail};

/// Where the log lives, relative to the workspace root.
pub const DEFAULT_RELATIVE_PATH: &str = ".lumenflow/kernel/events.jsonl";

/// The `prev_hash` of the first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Members the log writes itself; a caller's record must not set them.
pub const RESERVED_KEYS: [&str; 3] = ["seq", "prev_hash", "hash"];

/// `<workspace>/.lumenflow/kernel/events.jsonl`.
pub fn default_path(workspace: &Path) -> PathBuf {
    workspace.join(DEFAULT_RELATIVE_PATH)
}

/// A v1 kernel event record: `fields` plus `schema_version: 1` and `kind` (the arguments win over
/// same-named fields).
pub fn v1_record(kind: KernelV1Kind, fields: Map<String, Value>) -> Map<String, Value> {
    let mut record = fields;
    record.insert("schema_version".to_string(), Value::from(1));
    record.insert("kind".to_string(), Value::from(kind.as_str()));
    record
}

/// A v2 event as a log record: `{kind, timestamp, event: <the whole envelope>}` (see the module
/// docs for why it is nested).
pub fn v2_record(event: &KernelEventV2) -> Map<String, Value> {
    let mut envelope = Map::new();
    envelope.insert(
        "schema_version".to_string(),
        Value::from(event.schema_version),
    );
    envelope.insert("kind".to_string(), Value::from(event.kind.as_str()));
    envelope.insert("event_id".to_string(), Value::from(event.event_id.as_str()));
    envelope.insert(
        "timestamp".to_string(),
        Value::from(event.timestamp.as_str()),
    );
    envelope.insert("from".to_string(), Value::from(event.from.as_str()));
    if let Some(seq) = event.seq {
        envelope.insert("seq".to_string(), Value::from(seq));
    }
    envelope.insert("payload".to_string(), Value::Object(event.payload.clone()));
    let mut record = Map::new();
    record.insert("kind".to_string(), Value::from(event.kind.as_str()));
    record.insert(
        "timestamp".to_string(),
        Value::from(event.timestamp.as_str()),
    );
    record.insert("event".to_string(), Value::Object(envelope));
    record
}
