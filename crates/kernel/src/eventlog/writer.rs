//! The writer: opening (tail recovery), group commit, stats.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use lumenflow_contracts::time::Timestamp;
use serde_json::{Map, Value};

use super::error::{LineProblem, LogError};
use super::record::{check_line, Prepared};
use super::replay::{replay_reader, ReplayFilter, ReplayPage};
use super::GENESIS_HASH;
use crate::file_lock::FileLock;
use crate::group_commit::{lock, Committer, GroupCommit, HelperTurn};

/// How to open a log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogOptions {
    /// Re-check the whole chain (as [`super::verify`] does) after the tail is recovered, and refuse
    /// to open a log with a bad line. Off by default: `open` reads only the tail, so it costs the
    /// same for a log of any size.
    pub verify_on_open: bool,
    /// At most this many records per group commit (one `write` + one `fdatasync`). A single
    /// `append_batch` is never split, whatever its size. Default 4096.
    pub max_commit_records: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            verify_on_open: false,
            max_commit_records: 4096,
        }
    }
}

impl LogOptions {
    pub fn verify_on_open(mut self, yes: bool) -> Self {
        self.verify_on_open = yes;
        self
    }

    pub fn max_commit_records(mut self, records: usize) -> Self {
        self.max_commit_records = records.max(1);
        self
    }
}

/// What an append returns: the record's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: String,
}

/// What `open` cut from the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// 1-based line number the cut line had.
    pub line: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Why it was cut.
    pub problem: LineProblem,
    /// Where the cut bytes were kept (`<log>.cut-<unix ms>` beside the log).
    pub saved_to: PathBuf,
}

/// Counters of one open log (shared by every handle of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    /// Records written and acknowledged since the log was opened.
    pub records_appended: u64,
    /// Group commits: one `write` and one `fdatasync` each.
    pub commits: u64,
    /// `fdatasync` calls on the append path (equal to `commits`; kept apart so a reader of the
    /// stats need not know that).
    pub fsyncs: u64,
    /// Records in the largest group commit so far.
    pub largest_commit: u64,
    /// `seq` of the last record in the file (0 when empty).
    pub last_seq: u64,
    /// `hash` of the last record (64 zeros when empty).
    pub head: String,
    /// What `open` cut from the end of the file, if anything.
    pub torn_tail: Option<TornTail>,
    /// Commits that first found records another process had appended and continued after
    /// them.
    pub followed: u64,
}

/// Where [`EventLog::scan_lines_from`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// The byte after the last line read: a line start, where a later scan may resume.
    pub end: u64,
    /// Where the last line read starts (`None` when the scan read no line).
    pub last_line: Option<u64>,
}

/// A handle on one open log. Cloning is cheap (an `Arc`); every clone, and every `open` of the
/// same path in this process while a handle is alive, appends through the same writer (such an
/// `open` returns the live handle and ignores its options). `Send + Sync`.
#[derive(Debug, Clone)]
pub struct EventLog {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    options: LogOptions,
    group: GroupCommit<Vec<Prepared>, Vec<Appended>, LogError>,
    writer: Mutex<Writer>,
    /// Bytes of the file known durable: readers through the handle stop here.
    committed_len: AtomicU64,
    broken: AtomicBool,
    records_appended: AtomicU64,
    commits: AtomicU64,
    fsyncs: AtomicU64,
    largest_commit: AtomicU64,
    torn_tail: Option<TornTail>,
    /// A second handle on the writer's open file: `flock` belongs to the open file, so locking
    /// this one locks the writer's, without borrowing the writer.
    lock_file: File,
    /// Commits that found records another process had appended, and continued after them.
    followed: AtomicU64,
    /// The thread that commits for async appends, started by the first one (or why it could
    /// not be).
    helper: OnceLock<Result<(), String>>,
}

#[derive(Debug)]
struct Writer {
    file: File,
    /// Length of the file after the last commit.
    len: u64,
    next_seq: u64,
    last_hash: String,
    /// Set after a failed write or fsync: what reached the disk is unknown.
    failed: Option<String>,
    /// The bytes of the commit being written, kept between commits: a fresh buffer per commit
    /// showed up as page faults (`clear_page_erms`) in the sidecar's profile under load.
    buf: Vec<u8>,
}

/// A commit buffer that grew beyond this is not kept for the next commit.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// Logs open in this process, so that two `open`s of one path share one writer.
static OPEN_LOGS: Mutex<Vec<(PathBuf, Weak<Shared>)>> = Mutex::new(Vec::new());

impl EventLog {
    /// Open the log at `path`, creating it (and its folder) if needed, cutting a torn tail and
    /// recovering the last `seq` and hash. See the module docs for what counts as torn.
    pub fn open(path: &Path, options: LogOptions) -> Result<Self, LogError> {
        let io_err = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        if !existed {
            sync_parent_dir(path).map_err(io_err)?;
        }
        let key = fs::canonicalize(path).map_err(io_err)?;

        let mut registry = lock(&OPEN_LOGS);
        registry.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(shared) = registry
            .iter()
            .filter(|(p, _)| *p == key)
            .find_map(|(_, weak)| weak.upgrade())
            .filter(|shared| !shared.broken.load(Ordering::Acquire))
        {
            return Ok(EventLog { shared });
        }

        let lock_file = file.try_clone().map_err(io_err)?;
        let tail = {
            let _locked = FileLock::exclusive(&lock_file).map_err(io_err)?;
            recover_tail(&mut file, path)?
        };
        if options.verify_on_open {
            super::verify::verify(path)?;
        }
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            options,
            group: GroupCommit::default(),
            committed_len: AtomicU64::new(tail.len),
            broken: AtomicBool::new(false),
            records_appended: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            largest_commit: AtomicU64::new(0),
            torn_tail: tail.cut,
            lock_file,
            followed: AtomicU64::new(0),
            helper: OnceLock::new(),
            writer: Mutex::new(Writer {
                file,
                len: tail.len,
                next_seq: tail.last_seq + 1,
                last_hash: tail.last_hash,
                failed: None,
                buf: Vec::new(),
            }),
        });
        registry.push((key, Arc::downgrade(&shared)));
        Ok(EventLog { shared })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Append one record; returns once its line is written and fsync'd.
    pub fn append(&self, record: Map<String, Value>) -> Result<Appended, LogError> {
        let prepared = Prepared::new(record).map_err(|reason| LogError::RecordInvalid {
            path: self.shared.path.clone(),
            index: None,
            reason,
        })?;
        let mut acks = self.shared.submit(vec![prepared])?;
        acks.pop().ok_or_else(|| LogError::Failed {
            path: self.shared.path.clone(),
            reason: "the commit acknowledged no record".to_string(),
        })
    }

    /// [`EventLog::append`] for async callers: the record is queued at once (so its place in
    /// the chain follows the order of calls), and the future resolves once its line is written
    /// and fsync'd, by a commit it shares with other appends, without a thread waiting for it.
    /// A commit thread of the log does the writing; it is started by the first call.
    pub fn append_async(
        &self,
        record: Map<String, Value>,
    ) -> impl Future<Output = Result<Appended, LogError>> + Send + 'static {
        let submitted = self.submit_async(vec![record]);
        let path = self.shared.path.clone();
        async move {
            let mut acks = submitted?.await?;
            acks.pop().ok_or_else(|| LogError::Failed {
                path,
                reason: "the commit acknowledged no record".to_string(),
            })
        }
    }

    /// [`EventLog::append_batch`] for async callers (see [`EventLog::append_async`]).
    pub fn append_batch_async(
        &self,
        records: Vec<Map<String, Value>>,
    ) -> impl Future<Output = Result<Vec<Appended>, LogError>> + Send + 'static {
        let submitted = self.submit_async(records);
        async move { submitted?.await }
    }

    fn submit_async(
        &self,
        records: Vec<Map<String, Value>>,
    ) -> Result<impl Future<Output = Result<Vec<Appended>, LogError>> + Send + 'static, LogError>
    {
        let shared = &self.shared;
        let prepared = records
            .into_iter()
            .enumerate()
            .map(|(i, record)| {
                Prepared::new(record).map_err(|reason| LogError::RecordInvalid {
                    path: shared.path.clone(),
                    index: Some(i),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Err(reason) = shared.helper.get_or_init(|| spawn_helper(shared)) {
            return Err(LogError::Failed {
                path: shared.path.clone(),
                reason: reason.clone(),
            });
        }
        let pending = shared.group.submit_async(prepared);
        // The future keeps the log open until its commit answers.
        let keep = Arc::clone(shared);
        Ok(async move {
            match pending.await {
                Some(result) => result,
                None => Err(LogError::Failed {
                    path: keep.path.clone(),
                    reason: "the log was closed before the commit".to_string(),
                }),
            }
        })
    }

    /// Append records with consecutive `seq`s in one commit (one fsync); all or none are refused.
    pub fn append_batch(
        &self,
        records: Vec<Map<String, Value>>,
    ) -> Result<Vec<Appended>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = records
            .into_iter()
            .enumerate()
            .map(|(i, record)| {
                Prepared::new(record).map_err(|reason| LogError::RecordInvalid {
                    path: self.shared.path.clone(),
                    index: Some(i),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.shared.submit(prepared)
    }

    /// [`super::replay`], limited to what this handle knows is durable (a commit in flight is not
    /// seen).
    pub fn replay(&self, filter: &ReplayFilter) -> Result<ReplayPage, LogError> {
        let len = self.shared.committed_len.load(Ordering::Acquire);
        let file = File::open(&self.shared.path).map_err(|source| LogError::Io {
            path: self.shared.path.clone(),
            source,
        })?;
        replay_reader(
            io::BufReader::new(file.take(len)),
            &self.shared.path,
            filter,
        )
    }

    /// Every durable line, in order, one at a time (without its newline): for scans of a log of
    /// any size that need a few fields of some records, where [`EventLog::replay`] would hold
    /// every matching record in memory. `f` stops the scan by returning an error.
    pub fn scan_lines(&self, f: impl FnMut(&[u8]) -> Result<(), LogError>) -> Result<(), LogError> {
        self.scan_lines_from(0, f).map(|_| ())
    }

    /// [`EventLog::scan_lines`] from byte `start` (the start of a line, such as a
    /// [`ScanEnd::end`] of an earlier scan); returns where the scan stopped.
    pub fn scan_lines_from(
        &self,
        start: u64,
        mut f: impl FnMut(&[u8]) -> Result<(), LogError>,
    ) -> Result<ScanEnd, LogError> {
        use std::io::BufRead;
        let len = self.shared.committed_len.load(Ordering::Acquire);
        let io_err = |source| LogError::Io {
            path: self.shared.path.clone(),
            source,
        };
        let mut scanned = ScanEnd {
            end: start.min(len),
            last_line: None,
        };
        let mut file = File::open(&self.shared.path).map_err(io_err)?;
        file.seek(SeekFrom::Start(scanned.end)).map_err(io_err)?;
        let mut reader = io::BufReader::with_capacity(1 << 20, file.take(len - scanned.end));
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(io_err)?;
            if read == 0 {
                return Ok(scanned);
            }
            scanned.last_line = Some(scanned.end);
            scanned.end += read as u64;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            f(&line)?;
        }
    }

    /// The `seq` and `hash` of the durable line at `[start, end)` when it is one whole line that
    /// verifies on its own; `None` otherwise (the bytes changed, or the log is shorter). Checks
    /// that a position remembered from an earlier scan still holds the same record.
    pub fn line_between(&self, start: u64, end: u64) -> Result<Option<(u64, String)>, LogError> {
        let len = self.shared.committed_len.load(Ordering::Acquire);
        if start >= end || end > len {
            return Ok(None);
        }
        record_between(&self.shared.path, start, end).map_err(|source| LogError::Io {
            path: self.shared.path.clone(),
            source,
        })
    }

    pub fn stats(&self) -> LogStats {
        let s = &self.shared;
        let (last_seq, head) = {
            let w = lock(&s.writer);
            (w.next_seq - 1, w.last_hash.clone())
        };
        LogStats {
            records_appended: s.records_appended.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            largest_commit: s.largest_commit.load(Ordering::Relaxed),
            last_seq,
            head,
            torn_tail: s.torn_tail.clone(),
            followed: s.followed.load(Ordering::Relaxed),
        }
    }
}

/// The commit thread of a log's async appends. It holds only a weak handle between commits, so
/// it never keeps a log open; it ends when the log is dropped.
fn spawn_helper(shared: &Arc<Shared>) -> Result<(), String> {
    let signal = shared.group.helper_signal();
    let log = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("eventlog-commit".into())
        .spawn(move || {
            while let HelperTurn::Lead = signal.wait() {
                let Some(shared) = log.upgrade() else {
                    return;
                };
                // A panicking commit has already failed its group (the leader's guard answers
                // every waiter, and the panic hook has reported it); the thread must live on, or
                // later async appends would wait for a leader that never comes.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    shared.with_committer(|group, how| group.serve_helper(how))
                }));
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the log's commit thread: {e}"))
}

type LogGroup = GroupCommit<Vec<Prepared>, Vec<Appended>, LogError>;

impl Shared {
    /// Queue `records` and return once a commit holding them is durable (group commit).
    fn submit(&self, records: Vec<Prepared>) -> Result<Vec<Appended>, LogError> {
        self.with_committer(|group, how| group.submit(records, how))
    }

    /// Run `f` with this log's group and how it commits.
    fn with_committer<X>(
        &self,
        f: impl FnOnce(&LogGroup, &Committer<'_, Vec<Prepared>, Vec<Appended>, LogError>) -> X,
    ) -> X {
        let size = |r: &Vec<Prepared>| r.len();
        let commit = |group: &[Vec<Prepared>]| self.commit(group);
        let interrupted = || LogError::Failed {
            path: self.path.clone(),
            reason: "the commit was interrupted by a panic".to_string(),
        };
        f(
            &self.group,
            &Committer {
                cap: self.options.max_commit_records,
                size: &size,
                commit: &commit,
                interrupted: &interrupted,
            },
        )
    }

    /// Write and fsync one group; one result per request, in order.
    fn commit(&self, group: &[Vec<Prepared>]) -> Vec<Result<Vec<Appended>, LogError>> {
        let mut w = lock(&self.writer);
        let fail_all = |err: &dyn Fn() -> LogError| -> Vec<Result<Vec<Appended>, LogError>> {
            group.iter().map(|_| Err(err())).collect()
        };
        if let Some(reason) = &w.failed {
            return fail_all(&|| LogError::Failed {
                path: self.path.clone(),
                reason: reason.clone(),
            });
        }
        let _locked = match FileLock::exclusive(&self.lock_file) {
            Ok(l) => l,
            Err(e) => {
                let (kind, message) = (e.kind(), e.to_string());
                return fail_all(&|| LogError::Io {
                    path: self.path.clone(),
                    source: io::Error::new(kind, message.clone()),
                });
            }
        };
        match w.file.metadata() {
            Ok(meta) if meta.len() == w.len => {}
            Ok(meta) => {
                let found = meta.len();
                if let Err(e) = self.follow(&mut w) {
                    let expected = w.len;
                    w.failed = Some(format!(
                        "the file changed behind the writer (expected {expected} bytes, found {found})"
                    ));
                    self.broken.store(true, Ordering::Release);
                    let message = e.to_string();
                    return fail_all(&|| match &e {
                        LogError::Conflict { .. } => LogError::Conflict {
                            path: self.path.clone(),
                            expected,
                            found,
                        },
                        _ => LogError::Failed {
                            path: self.path.clone(),
                            reason: message.clone(),
                        },
                    });
                }
            }
            Err(e) => {
                let (kind, message) = (e.kind(), e.to_string());
                return fail_all(&|| LogError::Io {
                    path: self.path.clone(),
                    source: io::Error::new(kind, message.clone()),
                });
            }
        }

        let now = format!("\"{}\"", Timestamp::now().to_rfc3339());
        let size: usize = group
            .iter()
            .flat_map(|r| r.iter())
            .map(Prepared::size_hint)
            .sum();
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        buf.reserve(size);
        let mut seq = w.next_seq;
        let mut prev = w.last_hash.clone();
        let mut acks: Vec<Vec<Appended>> = Vec::with_capacity(group.len());
        for request in group {
            let mut request_acks = Vec::with_capacity(request.len());
            for record in request {
                let hash = record.encode(seq, &prev, &now, &mut buf);
                request_acks.push(Appended {
                    seq,
                    hash: hash.clone(),
                });
                prev = hash;
                seq += 1;
            }
            acks.push(request_acks);
        }

        let written = w.file.write_all(&buf).and_then(|()| {
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            w.file.sync_data()
        });
        if let Err(e) = written {
            // Nothing of this group was acknowledged: take it back if we can, and stop, because
            // after a failed fsync what reached the disk is unknown. Reopening re-reads the tail.
            let old_len = w.len;
            let _ = w.file.set_len(old_len).and_then(|()| w.file.sync_all());
            let (kind, message) = (e.kind(), e.to_string());
            w.failed = Some(message.clone());
            self.broken.store(true, Ordering::Release);
            return fail_all(&|| LogError::Io {
                path: self.path.clone(),
                source: io::Error::new(kind, message.clone()),
            });
        }
        let committed = seq - w.next_seq;
        w.len += buf.len() as u64;
        if buf.capacity() <= KEEP_BUFFER_BYTES {
            w.buf = buf;
        }
        w.next_seq = seq;
        w.last_hash = prev;
        self.committed_len.store(w.len, Ordering::Release);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.records_appended
            .fetch_add(committed, Ordering::Relaxed);
        self.largest_commit.fetch_max(committed, Ordering::Relaxed);
        acks.into_iter().map(Ok).collect()
    }
}

impl Shared {
    /// Another process appended since this writer's last commit (under the file lock, so its
    /// lines are whole, but for a torn fragment of a process that died mid-line, which is cut
    /// as at open): continue after its records when the first of them verifies and follows on
    /// from this writer's last. Anything else (a shorter file, a foreign line that does not
    /// verify or does not follow on) is a conflict.
    fn follow(&self, w: &mut Writer) -> Result<(), LogError> {
        let io_err = |source| LogError::Io {
            path: self.path.clone(),
            source,
        };
        let conflict = |found: u64| LogError::Conflict {
            path: self.path.clone(),
            expected: w.len,
            found,
        };
        let found = w.file.metadata().map_err(io_err)?.len();
        if found < w.len {
            return Err(conflict(found));
        }
        let Some(first) = read_line_at(&mut w.file, w.len).map_err(io_err)? else {
            // No whole line behind us: the fragment of a writer that died mid-line.
            w.file
                .set_len(w.len)
                .and_then(|()| w.file.sync_all())
                .map_err(io_err)?;
            return Ok(());
        };
        let joins = match check_line(&first) {
            Ok(line) => line.seq == w.next_seq && line.prev_hash == w.last_hash,
            Err(_) => false,
        };
        if !joins {
            return Err(conflict(found));
        }
        let tail = recover_tail(&mut w.file, &self.path)?;
        if tail.len <= w.len {
            return Err(conflict(found));
        }
        w.len = tail.len;
        w.next_seq = tail.last_seq + 1;
        w.last_hash = tail.last_hash;
        self.committed_len.store(w.len, Ordering::Release);
        self.followed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The line starting at `offset` (without its newline), `None` at the end of the file or when
/// no newline ends it.
fn read_line_at(file: &mut File, offset: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::BufRead;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = io::BufReader::new(Read::by_ref(file));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.pop() == Some(b'\n') {
        Ok(Some(line))
    } else {
        Ok(None)
    }
}

/// Where the file's chain ends after recovery.
struct Tail {
    len: u64,
    last_seq: u64,
    last_hash: String,
    cut: Option<TornTail>,
}

/// Find the last records of the file, cut a torn last line, and return where the chain ends.
fn recover_tail(file: &mut File, path: &Path) -> Result<Tail, LogError> {
    let io_err = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(io_err)?.len();
    if len == 0 {
        return Ok(Tail {
            len: 0,
            last_seq: 0,
            last_hash: GENESIS_HASH.to_string(),
            cut: None,
        });
    }
    let (offset, bytes) = read_tail(file, len).map_err(io_err)?;
    // `bytes` holds the whole file, or at least three newlines: enough for the fragment after
    // the last newline, the last complete line and the one before it.
    let line_starts = |end: usize| -> usize {
        bytes[..end]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)
    };
    let mut end = bytes.len();
    let mut cut: Option<(usize, LineProblem)> = None;
    let fragment_start = line_starts(end);
    if fragment_start < end {
        cut = Some((fragment_start, LineProblem::Incomplete));
        end = fragment_start;
    }
    let mut last = None;
    while end > 0 {
        let start = line_starts(end - 1);
        match check_line(&bytes[start..end - 1]) {
            Ok(checked) => {
                last = Some(checked);
                break;
            }
            // A complete last line is a torn write only when it holds NUL bytes: blocks the
            // file system allocated but never wrote before the crash. A whole line without them
            // that fails its check was changed after it was written, and cutting it would erase
            // an acknowledged record along with the evidence of the edit.
            Err(problem) if cut.is_none() && bytes[start..end - 1].contains(&0) => {
                cut = Some((start, problem));
                end = start;
            }
            Err(problem) => {
                // Only one line is ever cut: this one is corruption, not a torn write.
                let line = count_lines(file, offset + start as u64).map_err(io_err)? + 1;
                return Err(LogError::Corrupt {
                    path: path.to_path_buf(),
                    line,
                    problem,
                });
            }
        }
    }
    let new_len = offset + end as u64;
    let torn = match cut {
        Some((start, problem)) => {
            let line = count_lines(file, offset + start as u64).map_err(io_err)? + 1;
            let saved_to = save_cut(path, &bytes[end..]).map_err(io_err)?;
            file.set_len(new_len).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            Some(TornTail {
                line,
                bytes: len - new_len,
                problem,
                saved_to,
            })
        }
        None => None,
    };
    let (last_seq, last_hash) = match last {
        Some(checked) => (checked.seq, checked.hash),
        None => (0, GENESIS_HASH.to_string()),
    };
    Ok(Tail {
        len: new_len,
        last_seq,
        last_hash,
        cut: torn,
    })
}

/// `seq` and `hash` of the record that is exactly the line at `[start, end)` of the log file, if
/// it is one (read without opening the log for writing, as `audit verify` must).
pub fn record_between(path: &Path, start: u64, end: u64) -> io::Result<Option<(u64, String)>> {
    let mut file = File::open(path)?;
    if start >= end || end > file.metadata()?.len() {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = vec![0u8; (end - start) as usize];
    file.read_exact(&mut bytes)?;
    if bytes.pop() != Some(b'\n') || bytes.contains(&b'\n') {
        return Ok(None);
    }
    Ok(check_line(&bytes).ok().map(|line| (line.seq, line.hash)))
}

/// Keep the bytes about to be cut in a file of their own, synced before the log is shortened:
/// a torn write is worthless, but a cut that was something else must stay available to whoever
/// investigates.
fn save_cut(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // Two cuts within one millisecond (a crash loop) get distinct names, never one file.
    let mut attempt = 0u32;
    let (target, mut out) = loop {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".cut-{millis}"));
        if attempt > 0 {
            name.push(format!("-{attempt}"));
        }
        let target = path.with_file_name(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
        {
            Ok(file) => break (target, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    out.write_all(bytes)?;
    out.sync_all()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(target)
}

/// The end of the file, from an offset such that it holds at least three newlines (or the whole
/// file).
fn read_tail(file: &mut File, len: u64) -> io::Result<(u64, Vec<u8>)> {
    let mut window = 16 * 1024u64;
    loop {
        let offset = len.saturating_sub(window);
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = vec![0u8; (len - offset) as usize];
        file.read_exact(&mut bytes)?;
        if offset == 0 || bytes.iter().filter(|b| **b == b'\n').count() >= 3 {
            return Ok((offset, bytes));
        }
        window = window.saturating_mul(4);
    }
}

/// Newlines in the first `upto` bytes of the file (only on the error and cut paths).
fn count_lines(file: &mut File, upto: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = Read::by_ref(file).take(upto);
    let mut count = 0u64;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(count);
        }
        count += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// Make a newly created file's directory entry durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
