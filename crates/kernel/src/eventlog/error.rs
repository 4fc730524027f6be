//! Errors of the event log, one enum per operation family, each with a stable `code()`.

use std::io;
use std::path::PathBuf;

/// Why opening, appending to or replaying the log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// Reading, writing or syncing the file failed.
    #[error("event log `{}`: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A line of the file is not what the log writes (reported by `open` for the tail and by
    /// `replay` for a line it cannot read; `verify` checks every line).
    #[error("event log `{}` line {line}: {problem}", path.display())]
    Corrupt {
        path: PathBuf,
        line: u64,
        problem: LineProblem,
    },
    /// The caller's record cannot be logged (no `kind`, a reserved member set, ...).
    #[error("event log `{}`: {}refused: {reason}", path.display(), record_label(*index))]
    RecordInvalid {
        path: PathBuf,
        /// Position in the batch for `append_batch`, `None` for `append`.
        index: Option<usize>,
        reason: String,
    },
    /// The file changed behind this writer in a way that does not continue its chain (a hand
    /// edit, a writer that does not take the file lock, a truncation).
    #[error(
        "event log `{}` changed behind its writer (expected {expected} bytes, found {found}) and \
         the new bytes do not continue its chain: another program wrote to it without the log's \
         lock; drop every handle and open it again",
        path.display()
    )]
    Conflict {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// An earlier write or fsync failed; the handle refuses further appends because what reached
    /// the disk is unknown. Opening the log again re-reads (and if needed cuts) its tail.
    #[error(
        "event log `{}` stopped after an earlier write failure ({reason}); drop every handle and \
         open it again",
        path.display()
    )]
    Failed { path: PathBuf, reason: String },
    /// The log no longer holds a record that `reconciled.json` saw in it: records were removed
    /// from its end, or the file was replaced.
    #[error(
        "event log `{}` no longer holds record seq {seq} (hash {hash}), which `{}` recorded when \
         the log was last checked: records were removed from it or it was replaced",
        path.display(),
        anchor.display()
    )]
    Shortened {
        path: PathBuf,
        anchor: PathBuf,
        seq: u64,
        hash: String,
    },
}

fn record_label(index: Option<usize>) -> String {
    match index {
        Some(i) => format!("record {i} of the batch "),
        None => "record ".to_string(),
    }
}

impl LogError {
    /// Stable code: `LOG_IO`, `LOG_CORRUPT`, `RECORD_INVALID`, `LOG_CONFLICT`, `LOG_FAILED`,
    /// `LOG_SHORTENED`.
    pub fn code(&self) -> &'static str {
        match self {
            LogError::Io { .. } => "LOG_IO",
            LogError::Corrupt { .. } => "LOG_CORRUPT",
            LogError::RecordInvalid { .. } => "RECORD_INVALID",
            LogError::Conflict { .. } => "LOG_CONFLICT",
            LogError::Failed { .. } => "LOG_FAILED",
            LogError::Shortened { .. } => "LOG_SHORTENED",
        }
    }
}

/// Why `verify` rejected the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The file could not be read.
    #[error("event log `{}`: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The first bad line: its 1-based number, its `seq` when it could be read, and what is wrong.
    #[error("event log `{}` line {line}: {problem}", path.display())]
    BadLine {
        path: PathBuf,
        line: u64,
        seq: Option<u64>,
        problem: LineProblem,
    },
}

impl VerifyError {
    /// Stable code: `LOG_IO` or `LOG_CORRUPT`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Io { .. } => "LOG_IO",
            VerifyError::BadLine { .. } => "LOG_CORRUPT",
        }
    }

    /// The 1-based number of the first bad line, if the chain (not the file system) is at fault.
    pub fn line(&self) -> Option<u64> {
        match self {
            VerifyError::BadLine { line, .. } => Some(*line),
            VerifyError::Io { .. } => None,
        }
    }

    /// What a CLI prints: `line L: <problem>` (or the I/O error).
    pub fn short(&self) -> String {
        match self {
            VerifyError::BadLine { line, problem, .. } => format!("line {line}: {problem}"),
            VerifyError::Io { source, .. } => source.to_string(),
        }
    }
}

impl From<VerifyError> for LogError {
    fn from(err: VerifyError) -> Self {
        match err {
            VerifyError::Io { path, source } => LogError::Io { path, source },
            VerifyError::BadLine {
                path,
                line,
                problem,
                ..
            } => LogError::Corrupt {
                path,
                line,
                problem,
            },
        }
    }
}

/// What is wrong with one line of the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineProblem {
    /// The file ends without a newline: a write was cut short. Opening the log cuts it.
    #[error("incomplete last line (no newline at the end): a write was cut short; opening the log cuts it")]
    Incomplete,
    /// A blank line (the writer never writes one).
    #[error("empty line")]
    Empty,
    /// Not JSON, or JSON with a duplicate member name.
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// A member the log needs is missing or malformed.
    #[error("`{field}` {reason}")]
    BadField { field: &'static str, reason: String },
    /// The stored `hash` is not the hash of the line's content: the line was changed.
    #[error("hash does not match the record's content (stored {stored}, computed {computed})")]
    HashMismatch { stored: String, computed: String },
    /// `prev_hash` is not the previous line's `hash`: a line was removed, inserted or reordered.
    #[error("prev_hash does not match line {previous_line}")]
    PrevHashMismatch { previous_line: u64 },
    /// The first line's `prev_hash` is not 64 zeros: the log does not start at its beginning.
    #[error(
        "prev_hash of the first record is not 64 zeros: the log does not start at its first record"
    )]
    FirstPrevHashNotZero,
    /// `seq` is not the previous line's plus one.
    #[error(
        "seq {found} where {expected} was expected: a record is missing, repeated or out of order"
    )]
    SeqMismatch { expected: u64, found: u64 },
}
