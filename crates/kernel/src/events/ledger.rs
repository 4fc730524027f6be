//! The local ledger of emitted v2 events, `.lumenflow/state/conductor/events.jsonl` (Q34, EVT-11).
//!
//! Every event a pack or the runtime emits is appended here (one JSON line, fsync'd) before it is
//! pushed anywhere, so the workspace keeps a stamp for every event even when the control plane is
//! down or the event is ephemeral. `lumenflow events tail` reads it. A torn last line left by a
//! crash is cut when the ledger is opened for writing and skipped when it is read.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::file_lock::FileLock;
use crate::group_commit::{lock, Committer, GroupCommit};

use lumenflow_contracts::event::KernelEventV2;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("event ledger `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("event ledger `{path}` line {line} is not a v2 event: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl LedgerError {
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Io { .. } => "IO_ERROR",
            LedgerError::Corrupt { .. } => "LEDGER_CORRUPT",
        }
    }
}

/// An append handle on the ledger. Concurrent appends share commits (group commit, one `write`
/// and one `fdatasync` for everything queued), and each returns only when its lines are durable.
/// One handle per file in a process; other processes may append to the same file (each commit
/// holds the file's lock).
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    group: GroupCommit<Vec<u8>, (), LedgerError>,
    writer: Mutex<Writer>,
    /// A second handle on the writer's file, for the cross-process lock ([`FileLock`]).
    lock_file: File,
}

#[derive(Debug)]
struct Writer {
    file: File,
    /// Length after the last commit: a failed write is cut back to it.
    len: u64,
    /// Set after a failed write or fsync: what reached the disk is unknown until reopened.
    failed: Option<(std::io::ErrorKind, String)>,
}

impl Ledger {
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io {
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
        let lock_file = file.try_clone().map_err(io)?;
        let complete = {
            let _locked = FileLock::exclusive(&lock_file).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            let complete = complete_len(&mut file, len).map_err(io)?;
            if complete < len {
                file.set_len(complete).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
            complete
        };
        Ok(Ledger {
            path: path.to_path_buf(),
            group: GroupCommit::default(),
            lock_file,
            writer: Mutex::new(Writer {
                file,
                len: complete,
                failed: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append events, one line each; returns once they are written and fsync'd.
    pub fn append(&self, events: &[KernelEventV2]) -> Result<(), LedgerError> {
        let mut buf = Vec::new();
        for e in events {
            serde_json::to_writer(&mut buf, e).map_err(|e| LedgerError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
            buf.push(b'\n');
        }
        if buf.is_empty() {
            return Ok(());
        }
        let size = |_: &Vec<u8>| 1;
        let commit = |group: &[Vec<u8>]| self.commit(group);
        let interrupted = || LedgerError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("the commit was interrupted by a panic"),
        };
        self.group.submit(
            buf,
            &Committer {
                cap: 4096,
                size: &size,
                commit: &commit,
                interrupted: &interrupted,
            },
        )
    }

    fn commit(&self, group: &[Vec<u8>]) -> Vec<Result<(), LedgerError>> {
        let mut w = lock(&self.writer);
        let fail_all = |kind: std::io::ErrorKind, message: &str| {
            group
                .iter()
                .map(|_| {
                    Err(LedgerError::Io {
                        path: self.path.clone(),
                        source: std::io::Error::new(kind, message.to_string()),
                    })
                })
                .collect()
        };
        if let Some((kind, message)) = &w.failed {
            return fail_all(*kind, message);
        }
        // Another process (a `lumenflow mcp` beside the sidecar) may append too: under the lock
        // its lines are whole, but for the fragment of one that died mid-line, which is cut as
        // at open; the length is re-read so a failed write is cut back to the end of theirs.
        let _locked = match FileLock::exclusive(&self.lock_file) {
            Ok(l) => l,
            Err(e) => return fail_all(e.kind(), &e.to_string()),
        };
        let found = match w.file.metadata() {
            Ok(meta) => meta.len(),
            Err(e) => return fail_all(e.kind(), &e.to_string()),
        };
        if found != w.len {
            let caught_up = complete_len(&mut w.file, found).and_then(|complete| {
                if complete < found {
                    w.file.set_len(complete)?;
                    w.file.sync_all()?;
                }
                Ok(complete)
            });
            match caught_up {
                Ok(complete) => w.len = complete,
                Err(e) => return fail_all(e.kind(), &e.to_string()),
            }
        }
        let buf: Vec<u8> = group.concat();
        let written = w.file.write_all(&buf).and_then(|()| w.file.sync_data());
        if let Err(e) = written {
            // Nothing of this group was acknowledged: take back a partial line if we can, and
            // stop, because after a failed fsync what reached the disk is unknown.
            let old = w.len;
            let _ = w.file.set_len(old).and_then(|()| w.file.sync_all());
            let (kind, message) = (e.kind(), e.to_string());
            w.failed = Some((kind, message.clone()));
            return fail_all(kind, &message);
        }
        w.len += buf.len() as u64;
        group.iter().map(|_| Ok(())).collect()
    }
}

/// The length of the file up to and including its last newline, reading backwards from the end
/// in growing windows (the ledger of a long-lived sidecar is many megabytes; opening it must not
/// read it all).
fn complete_len(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = vec![0u8; (len - start) as usize];
        file.read_exact(&mut bytes)?;
        if let Some(i) = bytes.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        if start == 0 {
            return Ok(0);
        }
        window = window.saturating_mul(4);
    }
}

/// Events from byte `offset` on whose kind passes `kind` (all when `None`), and the offset after
/// the last complete line (the next read starts there; a line still being written is left).
pub fn read_from(
    path: &Path,
    offset: u64,
    kind: Option<&str>,
) -> Result<(Vec<KernelEventV2>, u64), LedgerError> {
    let io = |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(e)),
    };
    let len = file.metadata().map_err(io)?.len();
    // The file was truncated or replaced: start again.
    let offset = if offset > len { 0 } else { offset };
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut events = Vec::new();
    for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let event: KernelEventV2 =
            serde_json::from_slice(line).map_err(|e| LedgerError::Corrupt {
                path: path.to_path_buf(),
                // Counted only on this error path: it reads the file from the start.
                line: count_lines(path, offset) + i,
                reason: e.to_string(),
            })?;
        if kind.is_none_or(|k| event.kind == k) {
            events.push(event);
        }
    }
    Ok((events, offset + complete as u64))
}

/// 1-based line number at byte `offset` (for error messages only).
fn count_lines(path: &Path, offset: u64) -> usize {
    if offset == 0 {
        return 1;
    }
    fs::read(path)
        .map(|b| {
            b[..(offset as usize).min(b.len())]
                .iter()
                .filter(|c| **c == b'\n')
                .count()
                + 1
        })
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumenflow_contracts::event::{build_event, BuildOptions};
    use serde_json::Map;

    #[test]
    fn open_cuts_only_a_torn_tail_longer_than_the_read_window() {
        // A torn last line longer than the first backwards window (64 KiB) is still found and
        // cut, and the complete lines before it are kept.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("events.jsonl");
        let ledger = Ledger::open(&path).expect("open");
        let e = build_event(
            "acme-demo:job_completed",
            "ws",
            Map::new(),
            BuildOptions::idempotent("x"),
        )
        .expect("event");
        ledger.append(std::slice::from_ref(&e)).expect("append");
        drop(ledger);
        let kept = fs::metadata(&path).expect("meta").len();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&vec![b'x'; 200 * 1024]))
            .expect("torn");
        let ledger = Ledger::open(&path).expect("reopen");
        assert_eq!(fs::metadata(&path).expect("meta").len(), kept);
        ledger.append(std::slice::from_ref(&e)).expect("append");
        let (events, _) = read_from(&path, 0, None).expect("read");
        assert_eq!(events.len(), 2);
        // A file with no newline at all is cut to nothing.
        fs::write(&path, vec![b'y'; 100 * 1024]).expect("garbage");
        drop(ledger);
        Ledger::open(&path).expect("reopen");
        assert_eq!(fs::metadata(&path).expect("meta").len(), 0);
    }

    #[test]
    fn concurrent_appends_all_land_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state/conductor/events.jsonl");
        let ledger = std::sync::Arc::new(Ledger::open(&path).expect("open"));
        std::thread::scope(|s| {
            for t in 0..8 {
                let ledger = ledger.clone();
                s.spawn(move || {
                    for i in 0..50 {
                        let e = build_event(
                            "acme-demo:job_completed",
                            "ws",
                            Map::new(),
                            BuildOptions::idempotent(format!("{t}-{i}")),
                        )
                        .expect("event");
                        ledger.append(&[e]).expect("append");
                    }
                });
            }
        });
        let (events, _) = read_from(&path, 0, None).expect("read");
        assert_eq!(events.len(), 400);
        let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), 400);
    }

    #[test]
    fn two_writers_of_one_file_interleave_whole_lines() {
        // Two handles (as two processes: each has its own open file, so the lock is between
        // them) append at once, and a third writer dies mid-line in between: every event lands
        // once, whole, and the fragment is cut before the next commit.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("events.jsonl");
        let a = Ledger::open(&path).expect("a");
        let b = Ledger::open(&path).expect("b");
        let event = |tag: String| {
            build_event(
                "acme-demo:job_completed",
                "ws",
                Map::new(),
                BuildOptions::idempotent(tag),
            )
            .expect("event")
        };
        std::thread::scope(|s| {
            for (name, ledger) in [("a", &a), ("b", &b)] {
                for t in 0..4 {
                    s.spawn(move || {
                        for i in 0..40 {
                            ledger
                                .append(&[event(format!("{name}-{t}-{i}"))])
                                .expect("append");
                        }
                    });
                }
            }
        });
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"schema_version\":2,\"ki"))
            .expect("a writer that died mid-line");
        b.append(&[event("after".into())]).expect("b continues");
        a.append(&[event("after-a".into())]).expect("a continues");
        let (events, _) = read_from(&path, 0, None).expect("every line parses");
        assert_eq!(events.len(), 322);
        let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), 322);
    }

    #[test]
    fn appends_reads_filters_and_skips_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state/conductor/events.jsonl");
        let ledger = Ledger::open(&path).expect("open");
        let a = build_event(
            "acme-demo:job_completed",
            "ws",
            Map::new(),
            BuildOptions::idempotent("a"),
        )
        .expect("a");
        let b = build_event(
            "campus:pue_sampled",
            "ws",
            Map::new(),
            BuildOptions::idempotent("b"),
        )
        .expect("b");
        ledger.append(&[a.clone(), b.clone()]).expect("append");
        let (all, off) = read_from(&path, 0, None).expect("read");
        assert_eq!(all, vec![a.clone(), b.clone()]);
        let (only, _) = read_from(&path, 0, Some("campus:pue_sampled")).expect("read");
        assert_eq!(only, vec![b]);
        // A writer crashed mid-line: readers stop before it, the next open cuts it.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"schema"))
            .expect("torn");
        let (more, off2) = read_from(&path, off, None).expect("read");
        assert!(more.is_empty());
        assert_eq!(off2, off);
        drop(ledger);
        let ledger = Ledger::open(&path).expect("reopen");
        ledger
            .append(std::slice::from_ref(&a))
            .expect("append after repair");
        let (next, _) = read_from(&path, off, None).expect("read");
        assert_eq!(next, vec![a]);
    }
}
