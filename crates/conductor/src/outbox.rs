//! The outbox of queue-class events (BKP-04, BKP-05, Q19): `.lumenflow/state/conductor/outbox/`.
//!
//! One JSON file per queued event, named `<zero-padded enqueue seq>-<event_id>.json`, so the
//! lexical order of the folder is the FIFO order. A file is written to a temporary name, fsync'd,
//! renamed, and the folder fsync'd, before the enqueue returns: an event that was accepted
//! survives a crash. Enqueue dedupes by `event_id` (a retried emit does not queue twice). The
//! drain ([`crate::delivery`]) reads the oldest files, sends them, and calls [`Outbox::remove`]
//! only after the control plane acknowledged them; a crash between the acknowledgement and the
//! removal re-sends them, which the control plane's dedupe by `event_id` absorbs (DLV-01).
//! Removal moves the files to `acked/`, and a background sweeper deletes them there.
//!
//! Several processes of one workspace (`lumenflow sidecar` and `lumenflow mcp`) may queue into
//! one outbox: names carry the event id, so they never collide. One process at a time drains it
//! ([`Outbox::lead_drain`]: an exclusive `flock` on `.drain.lock`, held while the handle lives),
//! so no two processes send or move the same files; the drainer takes in what the others queued
//! with [`Outbox::rescan`], and when it stops another process takes over.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use lumenflow_contracts::event::KernelEventV2;

use crate::fsio::{self, Mode};

/// Width of the enqueue sequence in file names (fits every `u64`).
const SEQ_WIDTH: usize = 20;
/// Where unreadable files are moved so they never block the queue.
const QUARANTINE: &str = "quarantine";
/// Acknowledged files wait here for the sweeper: out of the queue at once (a rename), deleted
/// in the background. On ext4 a rename cost ~10 µs where an unlink that frees the file's block
/// cost 45-70 µs, and the drain waited for the unlinks.
const ACKED: &str = "acked";
/// Batches at least this large are read and fsync'd by several threads: the file system
/// commits concurrent fsyncs together, and reads overlap.
const PARALLEL_MIN: usize = 64;
/// Threads for a large batch.
const IO_THREADS: usize = 4;
/// The file whose exclusive `flock` the draining process holds.
const DRAIN_LOCK: &str = ".drain.lock";
/// A temporary file of an enqueue lives a few milliseconds; one this old was left by an enqueue
/// that never returned. Younger ones may belong to another process's enqueue in flight.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// fsync every file, several at a time for a large batch; the error names the file's index.
fn sync_all_parallel(files: &[fs::File]) -> Result<(), (usize, std::io::Error)> {
    if files.len() < PARALLEL_MIN {
        for (i, f) in files.iter().enumerate() {
            f.sync_data().map_err(|e| (i, e))?;
        }
        return Ok(());
    }
    let chunk = files.len().div_ceil(IO_THREADS * 4);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                scope.spawn(move || {
                    for (i, f) in part.iter().enumerate() {
                        f.sync_data().map_err(|e| (c * chunk + i, e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| (0, std::io::Error::other("an fsync thread panicked")))??;
        }
        Ok(())
    })
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "event id `{0}` cannot name an outbox file: expected letters, digits, `_`, `-` or `.`"
    )]
    BadEventId(String),
    #[error("the outbox lock is poisoned")]
    Poisoned,
}

impl OutboxError {
    pub fn code(&self) -> &'static str {
        match self {
            OutboxError::Io { .. } => "OUTBOX_IO",
            OutboxError::BadEventId(_) => "OUTBOX_EVENT_ID_INVALID",
            OutboxError::Poisoned => "OUTBOX_POISONED",
        }
    }
}

/// One queued event, as read back for sending.
#[derive(Debug, Clone)]
pub struct Pending {
    pub file: String,
    pub event: KernelEventV2,
}

/// One queued event as its file's bytes (a checked v2 event).
#[derive(Debug, Clone)]
pub struct RawPending {
    pub file: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// File name → event id, in FIFO (lexical) order.
    files: BTreeMap<String, String>,
    ids: HashSet<String>,
}

/// The outbox folder and this process's index of it (see the module docs for several
/// processes).
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    state: Mutex<State>,
    /// The open `.drain.lock` while this handle leads the drain.
    drain_lock: Mutex<Option<fs::File>>,
}

/// `<workspace>/.lumenflow/state/conductor/outbox`.
pub fn default_dir(workspace_dir: &Path) -> PathBuf {
    lumenflow_kernel::events::conductor_state_dir(workspace_dir).join("outbox")
}

fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Left by an enqueue that never returned: a temporary name, and old enough that no enqueue in
/// flight (of this process or another) can own it.
fn stale_temp(entry: &fs::DirEntry, name: &str) -> bool {
    name.starts_with('.')
        && name.ends_with(".tmp")
        && entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= STALE_TEMP)
}

/// The queued files of `dir` (by `parse_name`), as `(name, seq, event_id)`.
fn list_queued(dir: &Path) -> std::io::Result<Vec<(String, u64, String)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some((seq, id)) = parse_name(&name) {
            let id = id.to_string();
            out.push((name, seq, id));
        }
    }
    Ok(out)
}

/// `(seq, event_id)` of a queued file's name.
fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (seq, id) = stem.split_once('-')?;
    if seq.len() != SEQ_WIDTH || !safe_id(id) {
        return None;
    }
    Some((seq.parse().ok()?, id))
}

impl Outbox {
    /// Open (creating) the outbox at `dir` and index the queued files. Temporary files of an
    /// enqueue that never returned are removed once they are [`STALE_TEMP`] old (a younger one
    /// may be another process's enqueue in flight).
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        let io = |source| OutboxError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if stale_temp(&entry, &name) {
                let _ = fs::remove_file(entry.path());
            }
        }
        let outbox = Outbox {
            dir: dir.to_path_buf(),
            state: Mutex::new(State::default()),
            drain_lock: Mutex::new(None),
        };
        outbox.rescan()?;
        Ok(outbox)
    }

    /// Take the lead of the drain if no other process holds it; `true` while this handle leads
    /// (it keeps the lead until dropped). Only the leader sends and removes files. Taking the
    /// lead sweeps acknowledged batches that a stopped leader left unswept.
    pub fn lead_drain(&self) -> bool {
        let Ok(mut held) = self.drain_lock.lock() else {
            return false;
        };
        if held.is_some() {
            return true;
        }
        let path = self.dir.join(DRAIN_LOCK);
        let file = match fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(file = %path.display(), "cannot open the outbox drain lock: {e}");
                return false;
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return false,
            // Without `flock` (some FUSE mounts): one process per outbox, as the lock assumes.
            Err(fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {}
            Err(fs::TryLockError::Error(e)) => {
                tracing::error!(file = %path.display(), "cannot lock the outbox drain lock: {e}");
                return false;
            }
        }
        *held = Some(file);
        if let Ok(batches) = fs::read_dir(self.dir.join(ACKED)) {
            for batch in batches.filter_map(Result::ok) {
                let names = fs::read_dir(batch.path())
                    .map(|files| {
                        files
                            .filter_map(Result::ok)
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                sweep(batch.path(), names);
            }
        }
        true
    }

    /// Bring the index in line with the folder: files another process queued join it (FIFO by
    /// name), files another process's drain took out leave it. Returns how many joined. A
    /// second file for an event already queued is deleted by the drain's leader.
    pub fn rescan(&self) -> Result<usize, OutboxError> {
        // Under the lock, so an enqueue of this handle is either wholly listed or not begun.
        let mut state = self.state.lock().map_err(|_| OutboxError::Poisoned)?;
        let listed = list_queued(&self.dir).map_err(|source| OutboxError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let present: HashSet<&str> = listed.iter().map(|(n, _, _)| n.as_str()).collect();
        let gone: Vec<String> = state
            .files
            .keys()
            .filter(|n| !present.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(id) = state.files.remove(&name) {
                state.ids.remove(&id);
            }
        }
        let leading = self.drain_lock.lock().map(|h| h.is_some()).unwrap_or(false);
        let mut joined = 0;
        let mut listed = listed;
        listed.sort_unstable();
        for (name, seq, id) in listed {
            state.next = state.next.max(seq + 1);
            if state.files.contains_key(&name) {
                continue;
            }
            if state.ids.insert(id.clone()) {
                state.files.insert(name, id);
                joined += 1;
            } else if leading {
                // Two processes queued one event (its id derives from its content): keep one.
                let _ = fs::remove_file(self.dir.join(&name));
            }
        }
        Ok(joined)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.files.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Persist `events` in order; events already queued are skipped. Returns how many were
    /// added. Durable when it returns: every file and the folder are fsync'd.
    pub fn enqueue(&self, events: &[KernelEventV2]) -> Result<usize, OutboxError> {
        let io = |path: &Path, source| OutboxError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut state = self.state.lock().map_err(|_| OutboxError::Poisoned)?;
        let mut staged: Vec<(PathBuf, PathBuf, String, String)> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut next = state.next;
        let mut files: Vec<fs::File> = Vec::new();
        let result = (|| {
            for event in events {
                if !safe_id(&event.event_id) {
                    return Err(OutboxError::BadEventId(event.event_id.clone()));
                }
                if state.ids.contains(&event.event_id) || !seen.insert(&event.event_id) {
                    continue;
                }
                let name = format!("{next:0width$}-{}.json", event.event_id, width = SEQ_WIDTH);
                next += 1;
                let tmp = self.dir.join(format!(".{name}.tmp"));
                let bytes =
                    serde_json::to_vec(event).map_err(|e| io(&tmp, std::io::Error::other(e)))?;
                let mut f = fsio::create_file(&tmp, Mode::Private).map_err(|e| io(&tmp, e))?;
                f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
                files.push(f);
                staged.push((tmp, self.dir.join(&name), name, event.event_id.clone()));
            }
            sync_all_parallel(&files).map_err(|(i, e)| {
                io(
                    staged.get(i).map_or(self.dir.as_path(), |s| s.0.as_path()),
                    e,
                )
            })?;
            files.clear();
            for (tmp, path, _, _) in &staged {
                fs::rename(tmp, path).map_err(|e| io(path, e))?;
            }
            if !staged.is_empty() {
                fsio::sync_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (tmp, _, _, _) in &staged {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
        state.next = next;
        let added = staged.len();
        for (_, _, name, id) in staged {
            state.ids.insert(id.clone());
            state.files.insert(name, id);
        }
        Ok(added)
    }

    /// The oldest `max` events, in FIFO order. A file that cannot be read as an event is moved
    /// to `quarantine/` (and reported in the log) so it never blocks the queue.
    pub fn peek(&self, max: usize) -> Result<Vec<Pending>, OutboxError> {
        Ok(self
            .peek_raw(None, max)?
            .into_iter()
            .filter_map(|r| {
                serde_json::from_slice(&r.bytes).ok().map(|event| Pending {
                    file: r.file,
                    event,
                })
            })
            .collect())
    }

    /// Like [`Outbox::peek`], starting after file `after` (the drain reads the next batch while
    /// the previous one is in flight), and keeping each file's bytes as written: they are
    /// checked to be a v2 event, then sent as they are.
    pub fn peek_raw(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<RawPending>, OutboxError> {
        use std::ops::Bound;
        let names: Vec<String> = {
            let state = self.state.lock().map_err(|_| OutboxError::Poisoned)?;
            let lower = match after {
                Some(a) => Bound::Excluded(a.to_string()),
                None => Bound::Unbounded,
            };
            state
                .files
                .range((lower, Bound::Unbounded))
                .take(max)
                .map(|(k, _)| k.clone())
                .collect()
        };
        // `Ok(None)`: the file is gone (a drain of another process took it out before this
        // one led), not unreadable.
        let read = |name: &String| match fs::read(self.dir.join(name)) {
            Ok(b) => serde_json::from_slice::<KernelEventV2>(&b)
                .map(|_| Some(b))
                .map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        let results: Vec<Result<Option<Vec<u8>>, String>> = if names.len() >= PARALLEL_MIN {
            std::thread::scope(|scope| {
                let chunk = names.len().div_ceil(IO_THREADS);
                let handles: Vec<_> = names
                    .chunks(chunk)
                    .map(|part| {
                        (
                            part.len(),
                            scope.spawn(move || part.iter().map(read).collect::<Vec<_>>()),
                        )
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|(len, h)| {
                        h.join().unwrap_or_else(|_| {
                            vec![Err("an outbox reader thread panicked".to_string()); len]
                        })
                    })
                    .collect()
            })
        } else {
            names.iter().map(read).collect()
        };
        let mut out = Vec::with_capacity(names.len());
        for (name, checked) in names.into_iter().zip(results) {
            let path = self.dir.join(&name);
            match checked {
                Ok(Some(bytes)) => out.push(RawPending { file: name, bytes }),
                Ok(None) => self.forget(&[name])?,
                Err(reason) => {
                    tracing::error!(file = %path.display(), %reason, "unreadable outbox file moved to quarantine");
                    let q = self.dir.join(QUARANTINE);
                    let _ = fs::create_dir_all(&q);
                    let _ = fs::rename(&path, q.join(&name));
                    self.forget(&[name])?;
                }
            }
        }
        Ok(out)
    }

    /// Take acknowledged files out of the queue (moved to `acked/`, and the folder fsync'd);
    /// a background sweeper deletes them. A crash before the move is durable re-sends them
    /// (the control plane dedupes); one after it leaves them for the next open to sweep.
    pub fn remove(&self, files: &[String]) -> Result<(), OutboxError> {
        let Some(first) = files.first() else {
            return Ok(());
        };
        // One folder per batch (named after its first file, unique in the queue): a rename
        // locks its target folder, an unlink its file's, so the sweeper deleting older batches
        // never holds up the renames of this one.
        let acked = self.dir.join(ACKED).join(first.trim_end_matches(".json"));
        fs::create_dir_all(&acked).map_err(|source| OutboxError::Io {
            path: acked.clone(),
            source,
        })?;
        let move_out = |part: &[String]| -> Result<(), OutboxError> {
            for name in part {
                let path = self.dir.join(name);
                match fs::rename(&path, acked.join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(OutboxError::Io { path, source }),
                }
            }
            Ok(())
        };
        if files.len() >= PARALLEL_MIN {
            std::thread::scope(|scope| {
                let handles: Vec<_> = files
                    .chunks(files.len().div_ceil(IO_THREADS))
                    .map(|part| scope.spawn(move || move_out(part)))
                    .collect();
                for h in handles {
                    h.join().map_err(|_| OutboxError::Io {
                        path: self.dir.clone(),
                        source: std::io::Error::other("an outbox mover thread panicked"),
                    })??;
                }
                Ok::<(), OutboxError>(())
            })?;
        } else {
            move_out(files)?;
        }
        fsio::sync_dir(&self.dir).map_err(|source| OutboxError::Io {
            path: self.dir.clone(),
            source,
        })?;
        self.forget(files)?;
        sweep(acked, files.to_vec());
        Ok(())
    }

    fn forget(&self, files: &[String]) -> Result<(), OutboxError> {
        let mut state = self.state.lock().map_err(|_| OutboxError::Poisoned)?;
        for name in files {
            if let Some(id) = state.files.remove(name) {
                state.ids.remove(&id);
            }
        }
        Ok(())
    }
}

/// Delete the files `names` of the acknowledged batch folder `batch`, then the folder, on a
/// background thread. Nothing waits for it: what it has not deleted when the process stops (or
/// if the thread cannot start) is swept at the next open.
fn sweep(batch: PathBuf, names: Vec<String>) {
    let _ = std::thread::Builder::new()
        .name("outbox-sweep".into())
        .spawn(move || {
            for name in &names {
                let _ = fs::remove_file(batch.join(name));
            }
            let _ = fs::remove_dir(&batch);
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumenflow_contracts::event::{build_event, BuildOptions};
    use serde_json::Map;

    fn event(i: usize) -> KernelEventV2 {
        let mut p = Map::new();
        p.insert("approval_id".into(), format!("a-{i}").into());
        build_event(
            "sidekick:approval_requested",
            "ws",
            p,
            BuildOptions::idempotent(format!("k{i}")),
        )
        .expect("event")
    }

    #[test]
    fn fifo_dedupe_and_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = Outbox::open(dir.path()).expect("open");
        let evs: Vec<_> = (0..5).map(event).collect();
        assert_eq!(ob.enqueue(&evs[..3]).expect("enqueue"), 3);
        assert_eq!(
            ob.enqueue(&evs[1..]).expect("enqueue"),
            2,
            "dedupe by event_id"
        );
        assert_eq!(ob.len(), 5);
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| parse_name(n).is_some()), "{names:?}");
        let first = ob.peek(2).expect("peek");
        assert_eq!(
            first
                .iter()
                .map(|p| p.event.event_id.clone())
                .collect::<Vec<_>>(),
            vec![evs[0].event_id.clone(), evs[1].event_id.clone()]
        );
        ob.remove(&first.iter().map(|p| p.file.clone()).collect::<Vec<_>>())
            .expect("remove");
        drop(ob);
        // A torn enqueue leaves a temp file; reopening removes it once it is stale and keeps
        // the order. A young one may be another process's enqueue in flight: it stays.
        let torn = dir.path().join(".00000000000000000099-evt_x.json.tmp");
        fs::write(&torn, b"{").expect("tmp");
        let old = std::time::SystemTime::now() - STALE_TEMP - Duration::from_secs(1);
        fs::File::options()
            .write(true)
            .open(&torn)
            .and_then(|f| f.set_modified(old))
            .expect("age the temp file");
        let in_flight = dir.path().join(".00000000000000000100-evt_y.json.tmp");
        fs::write(&in_flight, b"{").expect("tmp");
        let ob = Outbox::open(dir.path()).expect("reopen");
        assert!(!torn.exists() && in_flight.exists());
        assert_eq!(ob.len(), 3);
        assert_eq!(ob.enqueue(&[event(9)]).expect("enqueue"), 1);
        let rest = ob.peek(10).expect("peek");
        let ids: Vec<_> = rest.iter().map(|p| p.event.event_id.clone()).collect();
        assert_eq!(
            ids,
            vec![
                evs[2].event_id.clone(),
                evs[3].event_id.clone(),
                evs[4].event_id.clone(),
                event(9).event_id
            ]
        );
    }

    #[test]
    fn acknowledged_files_leave_the_queue_at_once_and_are_swept() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = Outbox::open(dir.path()).expect("open");
        let evs: Vec<_> = (0..200).map(event).collect();
        ob.enqueue(&evs).expect("enqueue");
        let batch: Vec<String> = ob
            .peek(150)
            .expect("peek")
            .into_iter()
            .map(|p| p.file)
            .collect();
        ob.remove(&batch).expect("remove");
        assert_eq!(ob.len(), 50);
        let queued = |d: &Path| {
            fs::read_dir(d)
                .map(|e| {
                    e.filter_map(Result::ok)
                        .filter(|e| e.path().is_file())
                        .count()
                })
                .unwrap_or(0)
        };
        assert_eq!(queued(dir.path()), 50, "out of the queue folder at once");
        let acked = dir.path().join(ACKED);
        let entries = |d: &Path| fs::read_dir(d).map(|e| e.count()).unwrap_or(0);
        let swept = |d: &Path| {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while entries(d) > 0 && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            entries(d) == 0
        };
        assert!(
            swept(&acked),
            "the sweeper deletes the files and their batch folder"
        );
        // Left over by a process that stopped before its sweeper finished: swept at open.
        drop(ob);
        let left = acked.join("00000000000000000001-left");
        fs::create_dir_all(&left).expect("batch");
        fs::write(left.join("00000000000000000001-left.json"), b"{}").expect("leftover");
        let ob = Outbox::open(dir.path()).expect("reopen");
        assert_eq!(ob.len(), 50, "acknowledged files are not queued again");
        assert!(ob.lead_drain());
        assert!(swept(&acked), "the new leader sweeps them");
    }

    #[test]
    fn one_process_leads_the_drain_and_takes_in_what_others_queue() {
        // Two handles on one folder stand for two processes: `flock` locks belong to the open
        // file, so the second handle's lock conflicts as another process's would.
        let dir = tempfile::tempdir().expect("tmp");
        let a = Outbox::open(dir.path()).expect("open a");
        let b = Outbox::open(dir.path()).expect("open b");
        assert!(a.lead_drain());
        assert!(a.lead_drain(), "the leader keeps the lead");
        assert!(!b.lead_drain(), "one leader at a time");

        let evs: Vec<_> = (0..10).map(event).collect();
        assert_eq!(b.enqueue(&evs).expect("b queues"), 10);
        assert_eq!(a.len(), 0);
        assert_eq!(a.rescan().expect("rescan"), 10);
        assert_eq!(a.rescan().expect("rescan"), 0, "nothing joins twice");
        let got = a.peek(100).expect("peek");
        let ids: Vec<_> = got.iter().map(|p| p.event.event_id.clone()).collect();
        let want: Vec<_> = evs.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids, want, "FIFO");
        a.remove(&got.into_iter().map(|p| p.file).collect::<Vec<_>>())
            .expect("remove");
        assert_eq!(b.len(), 10, "b has not looked yet");
        b.rescan().expect("rescan");
        assert_eq!(b.len(), 0, "what the leader took out leaves b's index");

        // Both queue one event (ids derive from content) under different names: the leader
        // keeps one file. (Under one name, the second rename replaced the same event.)
        b.enqueue(&[event(98)]).expect("b queues");
        a.enqueue(&[event(99)]).expect("a queues");
        b.enqueue(&[event(99)]).expect("b queues");
        let files = || list_queued(dir.path()).expect("ls").len();
        assert_eq!(files(), 3);
        a.rescan().expect("rescan");
        assert_eq!((files(), a.len()), (2, 2));

        // A queued file another drain took out before this one read it is forgotten, not
        // quarantined.
        b.enqueue(&[event(100)]).expect("b queues");
        a.rescan().expect("rescan");
        let gone = list_queued(dir.path())
            .expect("ls")
            .into_iter()
            .find(|(_, _, id)| *id == event(100).event_id)
            .expect("queued");
        fs::remove_file(dir.path().join(&gone.0)).expect("taken out");
        assert_eq!(a.peek(10).expect("peek").len(), 2);
        assert_eq!(a.len(), 2);
        assert!(!dir.path().join(QUARANTINE).exists());

        drop(a);
        assert!(b.lead_drain(), "the lead passes when the leader stops");
    }

    #[test]
    fn a_corrupt_file_is_quarantined_not_blocking() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = Outbox::open(dir.path()).expect("open");
        ob.enqueue(&[event(1), event(2)]).expect("enqueue");
        let first = ob.peek(1).expect("peek").remove(0);
        fs::write(dir.path().join(&first.file), b"not json").expect("corrupt");
        let got = ob.peek(10).expect("peek");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event.event_id, event(2).event_id);
        assert!(dir.path().join(QUARANTINE).join(&first.file).exists());
    }
}
