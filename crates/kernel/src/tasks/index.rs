//! Where each task's records are in the kernel event log.
//!
//! Loading a task used to parse every line of the log, and the log holds two receipts for every
//! tool call: on a log of 194 000 lines (185 MB) one `task show` took 0.8 s, and every governed
//! call made with a `task_id` paid the same to check the task is active. The index remembers
//! the offset of each task record (`task_*`, `run_*`, `checkpoint`: the v1 kinds with a string
//! `task_id`), so loading a task reads only its own lines.
//!
//! There is one index per log file in a process. It is built by one pass the first time a task
//! is looked up, and brought up to date from where it stopped before every lookup, so records
//! that other processes appended are found (a task operation looks up and appends while holding
//! the cross-process operations lock). A log that got shorter or was replaced by another file is
//! indexed again from the start. Like [`crate::eventlog::replay`], the index stops before an
//! unfinished last line, and refuses a line that is not a JSON object with a `seq` and a `kind`
//! (`LOG_CORRUPT`, naming the line); it does not re-hash lines, which `lumenflow audit verify`
//! does.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use indexmap::IndexMap;
use lumenflow_contracts::kinds::KERNEL_V1_EVENT_KIND_VALUES;
use serde::Deserialize;
use serde_json::Value;

use crate::eventlog::{LineProblem, LogError, LogRecord};

/// One record of a task: where its line starts, how long it is (without the newline), and its
/// 1-based line number for error messages.
#[derive(Debug, Clone, Copy)]
struct Place {
    offset: u64,
    len: u32,
    line: u64,
}

/// What the index needs of every line; serde skips the other members without building them.
#[derive(Deserialize)]
struct Probe<'a> {
    /// Required (the writer puts it on every line), not used.
    #[serde(rename = "seq")]
    _seq: u64,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    task_id: Option<TaskIdMember<'a>>,
}

/// `task_id` as written: a string, or anything else (null in receipts of calls without a task).
#[derive(Deserialize)]
#[serde(untagged)]
enum TaskIdMember<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

#[derive(Debug)]
pub(crate) struct TaskIndex {
    path: PathBuf,
    /// The file read, with its identity when the platform has one.
    file: Option<(File, Option<(u64, u64)>)>,
    /// Bytes indexed: the offset after the last complete line read.
    scanned: u64,
    /// Lines indexed.
    lines: u64,
    /// Each task's records in log order; tasks in the order of their first record.
    by_task: IndexMap<String, Vec<Place>>,
}

impl TaskIndex {
    fn new(path: &Path) -> TaskIndex {
        TaskIndex {
            path: path.to_path_buf(),
            file: None,
            scanned: 0,
            lines: 0,
            by_task: IndexMap::new(),
        }
    }

    fn io(&self, source: io::Error) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, line: u64, problem: LineProblem) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            line,
            problem,
        }
    }

    fn forget(&mut self) {
        self.file = None;
        self.scanned = 0;
        self.lines = 0;
        self.by_task.clear();
    }

    /// Index what was appended since the last call.
    fn refresh(&mut self) -> Result<(), LogError> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget();
                return Ok(());
            }
            Err(e) => return Err(self.io(e)),
        };
        let identity = file_identity(&meta);
        let replaced = match &self.file {
            Some((_, known)) => *known != identity || meta.len() < self.scanned,
            None => true,
        };
        if replaced {
            self.forget();
            let file = File::open(&self.path).map_err(|e| self.io(e))?;
            self.file = Some((file, identity));
        }
        if meta.len() == self.scanned {
            return Ok(());
        }
        let Some((file, _)) = &self.file else {
            return Ok(());
        };
        let mut file = file;
        file.seek(SeekFrom::Start(self.scanned))
            .map_err(|e| self.io(e))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file.take(meta.len() - self.scanned));
        let mut buf = Vec::new();
        let mut offset = self.scanned;
        let mut line_no = self.lines;
        let mut found: Vec<(String, Place)> = Vec::new();
        let outcome = loop {
            buf.clear();
            let n = match reader.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(e) => break Err(self.io(e)),
            };
            if n == 0 || buf.last() != Some(&b'\n') {
                // End of what was there, or a line still being written: not a record yet.
                break Ok(());
            }
            line_no += 1;
            let line = &buf[..n - 1];
            if line.is_empty() {
                break Err(self.corrupt(line_no, LineProblem::Empty));
            }
            let probe: Probe<'_> = match serde_json::from_slice(line) {
                Ok(p) => p,
                Err(e) => {
                    let problem = match serde_json::from_slice::<Value>(line) {
                        Ok(Value::Object(_)) => LineProblem::BadField {
                            field: "seq/kind",
                            reason: e.to_string(),
                        },
                        Ok(_) => LineProblem::NotObject,
                        Err(e) => LineProblem::InvalidJson(e.to_string()),
                    };
                    break Err(self.corrupt(line_no, problem));
                }
            };
            if let Some(TaskIdMember::Text(task)) = probe.task_id {
                if KERNEL_V1_EVENT_KIND_VALUES.contains(&probe.kind.as_ref()) {
                    found.push((
                        task.into_owned(),
                        Place {
                            offset,
                            len: (n - 1) as u32,
                            line: line_no,
                        },
                    ));
                }
            }
            offset += n as u64;
            self.scanned = offset;
            self.lines = line_no;
        };
        // What was read before a bad line stays indexed; the bad line is refused again next time.
        for (task, place) in found {
            self.by_task.entry(task).or_default().push(place);
        }
        outcome
    }

    fn read(&self, place: Place) -> Result<LogRecord, LogError> {
        let Some((file, _)) = &self.file else {
            return Err(self.io(io::Error::other("the log is not open")));
        };
        let mut file = file;
        let mut bytes = vec![0u8; place.len as usize];
        file.seek(SeekFrom::Start(place.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| self.io(e))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(place.line, LineProblem::InvalidJson(e.to_string())))?;
        let Value::Object(map) = value else {
            return Err(self.corrupt(place.line, LineProblem::NotObject));
        };
        LogRecord::from_map(map).map_err(|problem| self.corrupt(place.line, problem))
    }

    /// The records of `task_id`, in log order.
    pub(crate) fn records(&mut self, task_id: &str) -> Result<Vec<LogRecord>, LogError> {
        self.refresh()?;
        let places = self.by_task.get(task_id).cloned().unwrap_or_default();
        places.into_iter().map(|p| self.read(p)).collect()
    }

    /// Every task's records; tasks in the order of their first record.
    pub(crate) fn all(&mut self) -> Result<IndexMap<String, Vec<LogRecord>>, LogError> {
        self.refresh()?;
        let mut out = IndexMap::with_capacity(self.by_task.len());
        for (task, places) in &self.by_task {
            let records = places
                .iter()
                .map(|p| self.read(*p))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(task.clone(), records);
        }
        Ok(out)
    }
}

#[cfg(unix)]
fn file_identity(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_identity(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The index of the log at `path`, shared by every task store of this process on that file.
pub(crate) fn for_log(path: &Path) -> Arc<Mutex<TaskIndex>> {
    static INDEXES: Mutex<Vec<(PathBuf, Weak<Mutex<TaskIndex>>)>> = Mutex::new(Vec::new());
    super::store::per_log(&INDEXES, path, || Mutex::new(TaskIndex::new(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::{self, EventLog, LogOptions, ReplayFilter};
    use serde_json::{json, Map};
    use std::io::Write;

    /// A log at `path` holding one `task_created` for task `a`, and a handle appending to it
    /// past the log's writer (as a torn or foreign line would be).
    fn log_with_task_a(path: &Path) -> fs::File {
        let log = EventLog::open(path, LogOptions::default()).expect("log");
        log.append(record(json!({"kind": "task_created", "task_id": "a"})))
            .expect("append");
        fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open")
    }

    fn record(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("a record literal is an object"),
        }
    }

    /// The index answers what a full replay answers, for every task, while the log grows.
    #[test]
    fn lookups_match_a_full_replay_as_the_log_grows() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("events.jsonl");
        let log = EventLog::open(&path, LogOptions::default()).expect("log");
        let mut index = TaskIndex::new(&path);
        assert!(index.records("t-1").expect("empty").is_empty());
        for round in 0..4 {
            for i in 0..30 {
                let task = format!("t-{}", i % 5);
                log.append(record(
                    json!({"kind": "task_claimed", "task_id": task, "n": round}),
                ))
                .expect("append");
                // Receipts with and without a task, and a v2-looking kind with a task id: not
                // task records.
                log.append(record(
                    json!({"kind": "tool_call_started", "task_id": task}),
                ))
                .expect("append");
                log.append(record(
                    json!({"kind": "tool_call_finished", "task_id": null}),
                ))
                .expect("append");
            }
            log.append(record(
                json!({"kind": "run_started", "task_id": "t-\u{e9}\"q"}),
            ))
            .expect("append");
            for task in ["t-0", "t-3", "t-4", "t-\u{e9}\"q", "absent"] {
                let filter = ReplayFilter {
                    task_id: Some(task.to_string()),
                    kinds: KERNEL_V1_EVENT_KIND_VALUES
                        .iter()
                        .map(|k| k.to_string())
                        .collect(),
                    ..ReplayFilter::default()
                };
                let expected = eventlog::replay(&path, &filter).expect("replay").records;
                assert_eq!(
                    index.records(task).expect("index"),
                    expected,
                    "round {round}, {task}"
                );
            }
        }
        let all = index.all().expect("all");
        assert_eq!(
            all.keys().take(5).cloned().collect::<Vec<_>>(),
            ["t-0", "t-1", "t-2", "t-3", "t-4"]
        );
        assert_eq!(all["t-0"].len(), 24);
    }

    #[test]
    fn an_unfinished_line_waits_and_a_replaced_log_is_read_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("events.jsonl");
        let mut index = TaskIndex::new(&path);
        // A line being written: not a record yet.
        let mut f = log_with_task_a(&path);
        assert_eq!(index.records("a").expect("a").len(), 1);
        f.write_all(br#"{"seq":2,"kind":"task_claimed","task_id":"a""#)
            .expect("write");
        assert_eq!(index.records("a").expect("a").len(), 1);
        drop(f);

        // Another log in its place (same path, new file): indexed from the start.
        let other = dir.path().join("other.jsonl");
        let log2 = EventLog::open(&other, LogOptions::default()).expect("log");
        log2.append(record(json!({"kind": "task_created", "task_id": "b"})))
            .expect("append");
        drop(log2);
        fs::rename(&other, &path).expect("replace");
        assert!(index.records("a").expect("a").is_empty());
        assert_eq!(index.records("b").expect("b").len(), 1);
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number_every_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("events.jsonl");
        let mut f = log_with_task_a(&path);
        f.write_all(b"{not json}\n").expect("write");
        drop(f);
        let mut index = TaskIndex::new(&path);
        for _ in 0..2 {
            match index.records("a") {
                Err(LogError::Corrupt {
                    line: 2,
                    problem: LineProblem::InvalidJson(_),
                    ..
                }) => {}
                other => panic!("expected line 2 to be refused, got {other:?}"),
            }
        }
    }
}
