//! Crash consistency of the kernel event log (KRN-13), redb style:
//!
//! - `acknowledged_appends_survive_sigkill`: a real child process (this test binary, running only
//!   `child_writer`) appends from several threads and prints every acknowledged `seq` and hash;
//!   the parent SIGKILLs it at a random moment, again and again, and after each kill the log must
//!   open, verify, and hold every acknowledged record exactly as acknowledged;
//! - `the_log_matches_a_model`: random sequences of append / append_batch / refused appends /
//!   reopen / torn-tail injection against the real log and an in-memory model;
//! - `processes_append_to_one_log`: this process and two peer processes (`child_peer`) append
//!   to one log at once, while a third (`child_writer`) is SIGKILLed in the middle: one chain,
//!   every record of every process exactly once, every acknowledged record of the killed one.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lumenflow_kernel::eventlog::{replay, verify, EventLog, LogOptions, LogRecord, ReplayFilter};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};

const CHILD_ENV: &str = "LUMENFLOW_EVENTLOG_CHILD";
const PEER_ENV: &str = "LUMENFLOW_EVENTLOG_PEER";
/// Records each peer process (and each of this process's two threads) appends.
const PEER_RECORDS: u64 = 300;
const KILLS: usize = 32;
const KILLS_PER_LOG: usize = 4;
const CHILD_THREADS: u64 = 4;
/// A commit above this many bytes is announced to the parent as `big`.
const BIG: usize = 128 * 1024;

/// A small xorshift generator: the crash test needs randomness, not a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("EVENTLOG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        | 1
}

/// The child: append until killed, printing `ack <seq> <hash>` for each acknowledged record.
/// Does nothing unless the parent set `LUMENFLOW_EVENTLOG_CHILD` to the log's path.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let log = EventLog::open(Path::new(&path), LogOptions::default()).expect("child opens the log");
    {
        let mut out = std::io::stdout().lock();
        out.write_all(b"\nready\n").expect("stdout");
        out.flush().expect("stdout");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|t| {
            let log = log.clone();
            thread::spawn(move || {
                let mut rng = Rng(seed() ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut n = 0u64;
                while Instant::now() < deadline {
                    // Mostly small records, some big ones (up to 1 MiB) so that a commit spans many
                    // pages and a kill can land inside its `write`: a write to the page cache
                    // stops at a page boundary on SIGKILL, which is what tears a line.
                    let batch = 1 + rng.below(4) as usize;
                    let records: Vec<Map<String, Value>> = (0..batch)
                        .map(|_| {
                            n += 1;
                            let size = match rng.below(64) {
                                0 => 256 * 1024 + rng.below(768 * 1024),
                                1..=16 => rng.below(32 * 1024),
                                _ => rng.below(64),
                            } as usize;
                            obj(json!({
                                "kind": "checkpoint",
                                "task_id": format!("T{t}"),
                                "n": n,
                                "note": "x".repeat(size),
                            }))
                        })
                        .collect();
                    if records
                        .iter()
                        .map(|r| r["note"].as_str().map_or(0, str::len))
                        .sum::<usize>()
                        > BIG
                    {
                        // Tell the parent: killing soon after this has a chance to land in the
                        // big `write`.
                        let mut out = std::io::stdout().lock();
                        out.write_all(b"big\n").expect("stdout");
                        out.flush().expect("stdout");
                    }
                    let acks = if batch == 1 {
                        records
                            .into_iter()
                            .map(|r| log.append(r))
                            .collect::<Result<Vec<_>, _>>()
                    } else {
                        log.append_batch(records)
                    }
                    .expect("child append");
                    let mut text = String::new();
                    for ack in acks {
                        text.push_str(&format!("ack {} {}\n", ack.seq, ack.hash));
                    }
                    // One small write to a pipe is atomic: a line is printed whole or not at all.
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes()).expect("stdout");
                    out.flush().expect("stdout");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("child thread");
    }
}

/// A peer process: append [`PEER_RECORDS`] records tagged with its name from two threads, then
/// print `done`. Does nothing unless the parent set `LUMENFLOW_EVENTLOG_PEER` to
/// `<name>=<log path>`.
#[test]
fn child_peer() {
    let Some(spec) = std::env::var_os(PEER_ENV) else {
        return;
    };
    let spec = spec.to_string_lossy().into_owned();
    let (name, path) = spec.split_once('=').expect("<name>=<path>");
    let log = EventLog::open(Path::new(path), LogOptions::default()).expect("peer opens the log");
    append_tagged(&log, name, PEER_RECORDS / 2, 2);
    let mut out = std::io::stdout().lock();
    out.write_all(b"\ndone\n").expect("stdout");
    out.flush().expect("stdout");
}

/// `per_thread` records tagged `writer` from each of `threads` threads, one or two per commit.
fn append_tagged(log: &EventLog, writer: &str, per_thread: u64, threads: u64) {
    thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let mut n = 0;
                while n < per_thread {
                    let record = |n: u64| {
                        obj(json!({"kind": "peer_record", "writer": writer, "thread": t, "n": n}))
                    };
                    if n % 3 == 2 && n + 1 < per_thread {
                        log.append_batch(vec![record(n), record(n + 1)])
                            .expect("append_batch");
                        n += 2;
                    } else {
                        log.append(record(n)).expect("append");
                        n += 1;
                    }
                }
            });
        }
    });
}

fn spawn_test_child(exe: &Path, test: &str, env: (&str, String)) -> std::process::Child {
    Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a child process")
}

#[test]
fn processes_append_to_one_log() {
    // KRN-13 across processes: a `lumenflow tool call` beside a running sidecar appends to the
    // same log. Commits hold the file's lock, a writer continues after another process's
    // records, and a writer killed mid-commit leaves nothing the others cannot carry on from.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(".lumenflow/kernel/events.jsonl");
    let log = EventLog::open(&path, LogOptions::default()).expect("open");
    let peers: Vec<_> = ["peer-a", "peer-b"]
        .iter()
        .map(|name| {
            let child = spawn_test_child(
                &exe,
                "child_peer",
                (PEER_ENV, format!("{name}={}", path.display())),
            );
            (name.to_string(), child)
        })
        .collect();
    let mut writer = spawn_test_child(
        &exe,
        "child_writer",
        (CHILD_ENV, path.display().to_string()),
    );
    let writer_out = writer.stdout.take().expect("writer stdout");
    let writer_lines = thread::spawn(move || {
        BufReader::new(writer_out)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    thread::scope(|scope| {
        scope.spawn(|| append_tagged(&log, "parent", PEER_RECORDS / 2, 2));
        scope.spawn(|| {
            thread::sleep(Duration::from_millis(150 + seed() % 200));
            writer.kill().expect("SIGKILL the writer");
            writer.wait().expect("reap the writer");
        });
    });
    for (name, child) in peers {
        let out = child.wait_with_output().expect("peer exits");
        assert!(out.status.success(), "{name} failed");
        assert!(String::from_utf8_lossy(&out.stdout).contains("\ndone\n"));
    }
    // After everyone else: whatever the killed writer left at the end is cut or followed.
    append_tagged(&log, "parent-after", 5, 1);
    let acked: Vec<(u64, String)> = writer_lines
        .join()
        .expect("writer stdout reader")
        .iter()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|rest| {
            let (seq, hash) = rest.split_once(' ').expect("ack <seq> <hash>");
            (seq.parse().expect("seq"), hash.to_string())
        })
        .collect();

    let summary = verify(&path).unwrap_or_else(|e| panic!("one chain: {e}"));
    let records = replay(&path, &ReplayFilter::all()).expect("replay").records;
    assert_eq!(summary.records, records.len() as u64);
    let by_hash: std::collections::HashMap<u64, &str> =
        records.iter().map(|r| (r.seq, r.hash.as_str())).collect();
    for (seq, hash) in &acked {
        assert_eq!(
            by_hash.get(seq).copied(),
            Some(hash.as_str()),
            "acknowledged record {seq} of the killed writer"
        );
    }
    for (writer, expected) in [
        ("parent", PEER_RECORDS),
        ("peer-a", PEER_RECORDS),
        ("peer-b", PEER_RECORDS),
        ("parent-after", 5),
    ] {
        let mut seen: Vec<(u64, u64)> = records
            .iter()
            .filter(|r| r.fields.get("writer").and_then(Value::as_str) == Some(writer))
            .map(|r| {
                (
                    r.fields["thread"].as_u64().expect("thread"),
                    r.fields["n"].as_u64().expect("n"),
                )
            })
            .collect();
        let count = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            (count, seen.len() as u64),
            (expected as usize, expected),
            "{writer}: every record exactly once"
        );
    }
    assert!(
        log.stats().followed > 0,
        "this process continued after other processes' records"
    );
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    // KRN-13: fsync'd before success, so an acknowledged record survives any kill; a torn tail
    // is cut on open and the chain always verifies.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = seed();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let (mut total_acked, mut torn_cuts, mut max_torn_bytes, mut max_torn_lines) = (0u64, 0, 0, 0);
    let mut logs = Vec::new();
    for round in 0..KILLS {
        // Each log lives through several kills and reopens; a new one every few rounds keeps the
        // checks (a full verify in a debug build) quick.
        let path = dir.path().join(format!(
            "ws-{}/.lumenflow/kernel/events.jsonl",
            round / KILLS_PER_LOG
        ));
        if round % KILLS_PER_LOG == 0 {
            logs.push(path.clone());
        }
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child writer");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    // A line cut by the kill has no newline: it was never printed whole.
                    Ok(_) if line.last() == Some(&b'\n') => {
                        let text = String::from_utf8_lossy(&line).trim().to_string();
                        if tx.send(text).is_err() {
                            break;
                        }
                    }
                    Ok(_) => break,
                }
            }
        });
        let ready = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx
                .recv_timeout(ready.saturating_duration_since(Instant::now()))
                .expect("the child reports ready");
            if line == "ready" {
                break;
            }
        }
        let mut seen = Vec::new();
        if round % 2 == 1 {
            // Every other round aims at a big commit: wait for the child to announce one, then
            // kill while it is being encoded, written or synced. (A kill tears a line only when
            // it lands inside the `write` itself, well under a millisecond even for 1 MiB, so
            // torn tails stay rare here; the model test below injects them on purpose.)
            let until = Instant::now() + Duration::from_millis(300);
            while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                let big = line == "big";
                seen.push(line);
                if big {
                    break;
                }
            }
            thread::sleep(Duration::from_micros(rng.below(60_000)));
        } else {
            thread::sleep(Duration::from_millis(rng.below(40)));
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        reader.join().expect("stdout reader");
        seen.extend(rx.try_iter());
        let mut acked = Vec::new();
        for line in seen {
            if let Some(rest) = line.strip_prefix("ack ") {
                let (seq, hash) = rest.split_once(' ').expect("ack <seq> <hash>");
                acked.push((seq.parse::<u64>().expect("seq"), hash.to_string()));
            }
        }

        let log = EventLog::open(&path, LogOptions::default()).unwrap_or_else(|e| {
            panic!("round {round} (seed {seed}): open after SIGKILL failed: {e}")
        });
        let stats = log.stats();
        if let Some(torn) = &stats.torn_tail {
            torn_cuts += 1;
            max_torn_bytes = max_torn_bytes.max(torn.bytes);
            max_torn_lines = max_torn_lines.max(1);
        }
        let summary = verify(&path)
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): verify failed: {e}"));
        assert_eq!(summary.last_seq, stats.last_seq);
        let first_acked = acked.iter().map(|(seq, _)| *seq).min().unwrap_or(1);
        let records = replay(&path, &ReplayFilter::all().after(first_acked - 1))
            .expect("replay")
            .records;
        for (seq, hash) in &acked {
            let record = records
                .get((seq - first_acked) as usize)
                .unwrap_or_else(|| {
                    panic!("round {round} (seed {seed}): acknowledged seq {seq} is missing")
                });
            assert_eq!(record.seq, *seq);
            assert_eq!(
                &record.hash, hash,
                "seq {seq} is not the record acknowledged"
            );
        }
        total_acked += acked.len() as u64;
        drop(log);
    }
    let records: u64 = logs
        .iter()
        .map(|path| verify(path).expect("final verify").records)
        .sum();
    eprintln!(
        "eventlog crash test (seed {seed}): {KILLS} kills on {} logs in {:.1?}, {total_acked} records \
         acknowledged, {records} records in the log, torn tails cut on {torn_cuts} opens \
         (at most {max_torn_lines} line, {max_torn_bytes} bytes)",
        logs.len(),
        started.elapsed()
    );
    assert!(total_acked > 0, "the child never got to append");
}

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Model-based test

#[derive(Debug, Clone)]
enum Op {
    Append(Map<String, Value>),
    Batch(Vec<Map<String, Value>>),
    /// A record the log must refuse: nothing changes.
    Refused(Map<String, Value>),
    Reopen,
    /// Drop the handle, damage the end of the file as a crash would, open again.
    Torn(Damage),
}

#[derive(Debug, Clone)]
enum Damage {
    /// Bytes without a newline.
    Fragment(String),
    /// A prefix of the last line, without its newline (a crash mid-write).
    PrefixOfLast(usize),
    /// A complete line holding NUL bytes: blocks a crash left allocated but unwritten.
    UnwrittenLine(String),
    /// A complete line that is not JSON: written by something else, not torn.
    GarbageLine(String),
    /// A copy of the last line claiming the next seq: complete JSON, hash does not verify.
    ForgedNext,
}

impl Damage {
    /// What a crash can leave, which open cuts; the rest is an edit, which open refuses.
    fn is_crash(&self) -> bool {
        matches!(
            self,
            Damage::Fragment(_) | Damage::PrefixOfLast(_) | Damage::UnwrittenLine(_)
        )
    }
}

fn record() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::sample::select(vec![
            "task_created",
            "checkpoint",
            "conductor:recovery_requested",
        ]),
        prop::option::of(0..3u8),
        -1000i64..1000,
        "[a-z \\n\"\\\\é😀]{0,20}",
        prop::option::of(0..5i64),
    )
        .prop_map(|(kind, task, n, note, at)| {
            let mut map = obj(
                json!({"kind": kind, "n": n, "note": note, "nested": {"list": [n, note.len()]}}),
            );
            if let Some(task) = task {
                map.insert("task_id".into(), Value::from(format!("WU-{task}")));
            }
            if let Some(s) = at {
                map.insert(
                    "timestamp".into(),
                    Value::from(format!("2026-04-20T00:00:0{s}.000Z")),
                );
            }
            map
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => record().prop_map(Op::Append),
        3 => prop::collection::vec(record(), 1..6).prop_map(Op::Batch),
        1 => (record(), prop::sample::select(vec!["seq", "prev_hash", "hash"]))
            .prop_map(|(mut r, key)| { r.insert(key.into(), Value::from(1)); Op::Refused(r) }),
        1 => Just(Op::Reopen),
        1 => "[ -~]{1,40}".prop_map(|s| Op::Torn(Damage::Fragment(s))),
        1 => (1usize..400).prop_map(|n| Op::Torn(Damage::PrefixOfLast(n))),
        1 => "[a-z{}\\[ ]{0,30}".prop_map(|s| Op::Torn(Damage::GarbageLine(s))),
        1 => "[a-z{}\\[ ]{0,30}".prop_map(|s| Op::Torn(Damage::UnwrittenLine(s))),
        1 => Just(Op::Torn(Damage::ForgedNext)),
    ]
}

/// What the model knows of a record: kind and the caller's fields (timestamp aside, which the
/// log may stamp).
fn body(record: &LogRecord) -> (String, Map<String, Value>) {
    let mut fields = record.fields.clone();
    fields.remove("timestamp");
    (record.kind.clone(), fields)
}

fn model_body(record: &Map<String, Value>) -> (String, Map<String, Value>) {
    let mut fields = record.clone();
    let kind = fields
        .remove("kind")
        .and_then(|k| k.as_str().map(str::to_string))
        .unwrap_or_default();
    fields.remove("timestamp");
    (kind, fields)
}

fn damage(path: &Path, damage: &Damage) {
    let text = fs::read_to_string(path).expect("read");
    let last = text.lines().last().unwrap_or("").to_string();
    let bytes: Vec<u8> = match damage {
        Damage::Fragment(s) => s.as_bytes().to_vec(),
        Damage::PrefixOfLast(_) if last.is_empty() => b"{".to_vec(),
        Damage::PrefixOfLast(n) => {
            let mut prefix = last.into_bytes();
            prefix.truncate((*n).min(prefix.len().saturating_sub(1)).max(1));
            prefix
        }
        Damage::GarbageLine(s) => format!("{s}\n").into_bytes(),
        Damage::UnwrittenLine(s) => format!("{s}\0\0\0\0\n").into_bytes(),
        Damage::ForgedNext => {
            let seq = text.lines().count();
            let forged = if last.is_empty() {
                "{\"seq\":1}".to_string()
            } else {
                last.replacen(
                    &format!("{{\"seq\":{seq},"),
                    &format!("{{\"seq\":{},", seq + 1),
                    1,
                )
            };
            format!("{forged}\n").into_bytes()
        }
    };
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("damage the tail");
}

fn check(
    log: &EventLog,
    path: &Path,
    model: &[(String, Map<String, Value>)],
) -> Result<(), TestCaseError> {
    let records = replay(path, &ReplayFilter::all()).expect("replay").records;
    let real: Vec<_> = records.iter().map(body).collect();
    prop_assert_eq!(&real, &model.to_vec());
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    prop_assert_eq!(seqs, (1..=model.len() as u64).collect::<Vec<_>>());
    prop_assert_eq!(
        log.replay(&ReplayFilter::all())
            .expect("handle replay")
            .records,
        records
    );
    let summary = verify(path).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(summary.records, model.len() as u64);
    prop_assert_eq!(log.stats().last_seq, model.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 48, failure_persistence: None, ..Config::default() })]

    /// KRN-13: whatever the sequence of appends, refusals, reopens and torn tails, the log
    /// replays exactly the acknowledged records, in order, with a verifying chain; paged replay
    /// by task walks the same records as the model.
    #[test]
    fn the_log_matches_a_model(ops in prop::collection::vec(op(), 1..24), task in 0..3u8, page in 1usize..5) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&path, LogOptions::default()).expect("open");
        let mut model: Vec<(String, Map<String, Value>)> = Vec::new();
        for op in ops {
            match op {
                Op::Append(record) => {
                    let ack = log.append(record.clone()).expect("append");
                    prop_assert_eq!(ack.seq, model.len() as u64 + 1);
                    model.push(model_body(&record));
                }
                Op::Batch(records) => {
                    let acks = log.append_batch(records.clone()).expect("append_batch");
                    let seqs: Vec<u64> = acks.iter().map(|a| a.seq).collect();
                    let expected: Vec<u64> = (model.len() as u64 + 1..=(model.len() + records.len()) as u64).collect();
                    prop_assert_eq!(seqs, expected);
                    model.extend(records.iter().map(model_body));
                }
                Op::Refused(record) => {
                    let err = log.append(record).expect_err("reserved key");
                    prop_assert_eq!(err.code(), "RECORD_INVALID");
                }
                Op::Reopen => {
                    drop(log);
                    log = EventLog::open(&path, LogOptions::default()).expect("reopen");
                    prop_assert_eq!(log.stats().torn_tail, None);
                }
                Op::Torn(d) => {
                    drop(log);
                    let before = fs::metadata(&path).expect("meta").len();
                    damage(&path, &d);
                    if d.is_crash() {
                        log = EventLog::open(&path, LogOptions::default()).expect("open cuts the tail");
                        prop_assert!(log.stats().torn_tail.is_some(), "{:?} was not cut", d);
                    } else {
                        // An edit is refused and left in place; taken away, the log carries on.
                        let err = EventLog::open(&path, LogOptions::default()).expect_err("an edit is refused");
                        prop_assert_eq!(err.code(), "LOG_CORRUPT");
                        prop_assert!(fs::metadata(&path).expect("meta").len() > before);
                        OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(before)).expect("undo");
                        log = EventLog::open(&path, LogOptions::default()).expect("reopen");
                    }
                }
            }
            check(&log, &path, &model)?;
        }

        // Paged replay by task against the model.
        let task = format!("WU-{task}");
        let expected: Vec<u64> = model
            .iter()
            .enumerate()
            .filter(|(_, (_, f))| f.get("task_id").and_then(Value::as_str) == Some(task.as_str()))
            .map(|(i, _)| i as u64 + 1)
            .collect();
        let mut filter = ReplayFilter::all().task(task.clone()).limit(page);
        let mut walked = Vec::new();
        loop {
            let p = log.replay(&filter).expect("page");
            prop_assert!(p.records.len() <= page);
            walked.extend(p.records.iter().map(|r| r.seq));
            match p.next_cursor {
                Some(next) => filter.after_seq = Some(next),
                None => break,
            }
        }
        prop_assert_eq!(walked, expected);
    }
}
