//! Reading the log back, filtered and paged by `seq`.

use std::fs::File;
use std::io::{self, BufRead};
use std::path::Path;

use lumenflow_contracts::time::Timestamp;
use serde_json::Value;

use super::error::{LineProblem, LogError};
use super::record::LogRecord;

/// Which records to return. Every condition given must hold; the default returns everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Only records whose `task_id` member is this string.
    pub task_id: Option<String>,
    /// Only records of one of these kinds (empty = any kind).
    pub kinds: Vec<String>,
    /// Only records at or after this instant (inclusive).
    pub since: Option<Timestamp>,
    /// Only records at or before this instant (inclusive).
    pub until: Option<Timestamp>,
    /// Cursor: only records with a `seq` strictly greater than this.
    pub after_seq: Option<u64>,
    /// At most this many records; `None` returns every match (what internal callers such as task
    /// projection must use). `Some(0)` returns none, with `next_cursor` set when a match exists.
    pub limit: Option<usize>,
}

impl ReplayFilter {
    /// Every record.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn task(mut self, task_id: impl Into<String>) -> Self {
        self.task_id = Some(task_id.into());
        self
    }

    /// Add a kind to the accepted kinds.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kinds.push(kind.into());
        self
    }

    pub fn since(mut self, at: Timestamp) -> Self {
        self.since = Some(at);
        self
    }

    pub fn until(mut self, at: Timestamp) -> Self {
        self.until = Some(at);
        self
    }

    /// Continue after the record with this `seq` (a previous page's `next_cursor`).
    pub fn after(mut self, seq: u64) -> Self {
        self.after_seq = Some(seq);
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    fn matches(&self, record: &LogRecord) -> bool {
        if let Some(task) = &self.task_id {
            if record.task_id() != Some(task.as_str()) {
                return false;
            }
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&record.kind) {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            // The writer only writes valid timestamps; a line that has none is outside any range.
            let Ok(at) = Timestamp::parse(&record.timestamp) else {
                return false;
            };
            if self.since.is_some_and(|since| at < since)
                || self.until.is_some_and(|until| at > until)
            {
                return false;
            }
        }
        true
    }
}

/// One page of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayPage {
    /// Matching records, in log order.
    pub records: Vec<LogRecord>,
    /// When more matching records follow: the `seq` to pass as [`ReplayFilter::after_seq`] for
    /// the next page (the last returned record's). `None` when this page holds the last match.
    pub next_cursor: Option<u64>,
}

/// Read the log at `path` and return the records `filter` selects, in log order.
///
/// A missing file is an empty log. A final line without its newline (a write in flight, or a
/// torn tail not yet cut by `open`) is not a record and is skipped; any other unreadable line is
/// `LOG_CORRUPT` naming it. Replay does not re-hash lines: that is [`super::verify`]'s job.
pub fn replay(path: &Path, filter: &ReplayFilter) -> Result<ReplayPage, LogError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(ReplayPage {
                records: Vec::new(),
                next_cursor: None,
            })
        }
        Err(source) => {
            return Err(LogError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    replay_reader(io::BufReader::with_capacity(256 * 1024, file), path, filter)
}

pub(crate) fn replay_reader(
    mut reader: impl BufRead,
    path: &Path,
    filter: &ReplayFilter,
) -> Result<ReplayPage, LogError> {
    let corrupt = |line: u64, problem: LineProblem| LogError::Corrupt {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut records = Vec::new();
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| LogError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 || buf.last() != Some(&b'\n') {
            // End of file, or an unfinished last line: not a record.
            return Ok(ReplayPage {
                records,
                next_cursor: None,
            });
        }
        line_no += 1;
        let line = &buf[..buf.len() - 1];
        // The writer puts `seq` first: skip lines before the cursor without parsing them.
        if let (Some(after), Some(seq)) = (filter.after_seq, leading_seq(line)) {
            if seq <= after {
                continue;
            }
        }
        if line.is_empty() {
            return Err(corrupt(line_no, LineProblem::Empty));
        }
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| corrupt(line_no, LineProblem::InvalidJson(e.to_string())))?;
        let Value::Object(map) = value else {
            return Err(corrupt(line_no, LineProblem::NotObject));
        };
        let record = LogRecord::from_map(map).map_err(|problem| corrupt(line_no, problem))?;
        if filter.after_seq.is_some_and(|after| record.seq <= after) || !filter.matches(&record) {
            continue;
        }
        if filter.limit.is_some_and(|limit| records.len() >= limit) {
            // One match beyond the page: there is a next page.
            let cursor = records
                .last()
                .map(|r: &LogRecord| r.seq)
                .unwrap_or(filter.after_seq.unwrap_or(0));
            return Ok(ReplayPage {
                records,
                next_cursor: Some(cursor),
            });
        }
        records.push(record);
    }
}

/// The `seq` of a line written by the log (`{"seq":123,...`), without parsing the rest.
fn leading_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}
