//! The kernel event log (KRN-13): append, replay, verify, torn tails, group commit.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_contracts::kinds::KernelV1Kind;
use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::eventlog::{
    self, replay, v1_record, v2_record, verify, EventLog, LineProblem, LogOptions, LogRecord,
    ReplayFilter, VerifyError, GENESIS_HASH,
};
use serde_json::{json, Map, Value};

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn temp_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = eventlog::default_path(dir.path());
    (dir, path)
}

fn open(path: &Path) -> EventLog {
    EventLog::open(path, LogOptions::default()).expect("open the log")
}

fn all(path: &Path) -> Vec<LogRecord> {
    let page = replay(path, &ReplayFilter::all()).expect("replay");
    assert_eq!(page.next_cursor, None);
    page.records
}

fn seqs(records: &[LogRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

/// `2026-04-20T00:00:SS.000Z` plus `s` seconds.
fn at(s: i64) -> String {
    Timestamp::from_unix_millis(1_776_643_200_000 + s * 1000).to_rfc3339()
}

fn ts(s: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_776_643_200_000 + s * 1000)
}

fn checkpoint(task: &str, n: u64) -> Map<String, Value> {
    obj(json!({"kind": "checkpoint", "task_id": task, "note": format!("step {n}")}))
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read the log")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).expect("rewrite the log");
}

fn bad_line(err: VerifyError) -> (u64, LineProblem) {
    match err {
        VerifyError::BadLine { line, problem, .. } => (line, problem),
        other => panic!("expected a bad line, got {other}"),
    }
}

#[test]
fn append_replay_verify_round_trip() {
    // KRN-13: seq from 1, prev_hash chain, hash over the canonical record, verify re-checks it.
    let (_dir, path) = temp_log();
    let log = open(&path);
    let created = log
        .append(v1_record(
            KernelV1Kind::TaskCreated,
            obj(json!({"task_id": "WU-1", "spec_hash": "ab".repeat(32), "timestamp": at(0)})),
        ))
        .expect("append task_created");
    assert_eq!(created.seq, 1);
    let claim = log
        .append_batch(vec![
            v1_record(
                KernelV1Kind::TaskClaimed,
                obj(json!({"task_id": "WU-1", "by": "agent", "session_id": "s1", "timestamp": at(1)})),
            ),
            v1_record(
                KernelV1Kind::RunStarted,
                obj(json!({"task_id": "WU-1", "run_id": "run-1", "by": "agent", "session_id": "s1", "timestamp": at(1)})),
            ),
        ])
        .expect("append the claim batch");
    assert_eq!(seqs_of(&claim), vec![2, 3]);
    let stamped = log
        .append(obj(
            json!({"kind": "workspace_warning", "message": "no timestamp given"}),
        ))
        .expect("append without a timestamp");
    assert_eq!(stamped.seq, 4);

    let records = all(&path);
    assert_eq!(seqs(&records), vec![1, 2, 3, 4]);
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    assert_eq!(records[0].hash, created.hash);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(records[0].kind, "task_created");
    assert_eq!(records[0].fields["schema_version"], json!(1));
    assert_eq!(records[0].fields["spec_hash"], json!("ab".repeat(32)));
    assert_eq!(
        records[1].timestamp, records[2].timestamp,
        "the batch keeps its timestamps"
    );
    assert!(Timestamp::parse(&records[3].timestamp).is_ok());
    assert!(records[3].timestamp.ends_with('Z') && records[3].timestamp.len() == 24);

    // The line itself: the log's members first, readable with `head`.
    let first = &lines(&path)[0];
    assert!(
        first.starts_with(&format!(
            "{{\"seq\":1,\"prev_hash\":\"{GENESIS_HASH}\",\"hash\":\"{}\",\"timestamp\":\"2026-04-20T00:00:00.000Z\",\"kind\":\"task_created\",",
            created.hash
        )),
        "{first}"
    );

    let summary = verify(&path).expect("the chain verifies");
    assert_eq!(summary.records, 4);
    assert_eq!(summary.last_seq, 4);
    assert_eq!(summary.last_hash, stamped.hash);
    assert_eq!(
        summary.to_string(),
        format!("chain ok: 4 records, last seq 4, head {}", stamped.hash)
    );
    let stats = log.stats();
    assert_eq!(
        (stats.last_seq, stats.head.as_str()),
        (4, stamped.hash.as_str())
    );
    assert_eq!(stats.records_appended, 4);
    assert_eq!(stats.torn_tail, None);

    // The handle's own replay and a reopened log see the same thing; seq continues.
    assert_eq!(
        log.replay(&ReplayFilter::all()).expect("replay").records,
        records
    );
    drop(log);
    let log = open(&path);
    assert_eq!(log.stats().last_seq, 4);
    let next = log
        .append(checkpoint("WU-1", 5))
        .expect("append after reopen");
    assert_eq!(next.seq, 5);
    assert_eq!(all(&path)[4].prev_hash, stamped.hash);
    verify(&path).expect("still verifies");
}

fn seqs_of(acks: &[eventlog::Appended]) -> Vec<u64> {
    acks.iter().map(|a| a.seq).collect()
}

#[test]
fn v2_events_are_stored_nested_and_replayed_by_kind() {
    // KRN-13: v2 conductor events share the log, their envelope untouched under `event`.
    let (_dir, path) = temp_log();
    let log = open(&path);
    let event = KernelEventV2 {
        schema_version: 2,
        kind: "conductor:recovery_requested".to_string(),
        event_id: format!("evt_{}", "cd".repeat(32)),
        timestamp: "2026-04-20T00:00:05.000Z".to_string(),
        from: "ws-1".to_string(),
        seq: Some(7),
        payload: obj(json!({"wu_id": "acme-job-1"})),
    };
    log.append(v1_record(
        KernelV1Kind::TaskCreated,
        obj(json!({"task_id": "WU-1"})),
    ))
    .expect("v1");
    log.append(v2_record(&event)).expect("v2");
    let page = replay(
        &path,
        &ReplayFilter::all().kind("conductor:recovery_requested"),
    )
    .expect("replay");
    assert_eq!(page.records.len(), 1);
    let record = &page.records[0];
    assert_eq!(record.seq, 2);
    assert_eq!(record.timestamp, event.timestamp);
    let back: KernelEventV2 =
        serde_json::from_value(record.fields["event"].clone()).expect("the envelope parses");
    assert_eq!(back, event);
    verify(&path).expect("verifies");
}

/// 1 task_created + 150 alternating task_waiting/task_resumed for WU-1, one second apart, and a
/// task_created for WU-2 in the middle (the original's pagination seed, made bigger than 100).
fn seed(path: &Path) -> EventLog {
    let log = open(path);
    let mut batch = vec![obj(
        json!({"kind": "task_created", "task_id": "WU-1", "timestamp": at(0)}),
    )];
    for i in 1..=150 {
        let kind = if i % 2 == 1 {
            "task_waiting"
        } else {
            "task_resumed"
        };
        batch.push(obj(
            json!({"kind": kind, "task_id": "WU-1", "reason": "approval", "timestamp": at(i)}),
        ));
        if i == 75 {
            batch.push(obj(
                json!({"kind": "task_created", "task_id": "WU-2", "timestamp": at(i)}),
            ));
        }
    }
    log.append_batch(batch).expect("seed");
    log
}

#[test]
fn replay_filters_by_task_kind_time_and_cursor() {
    // KRN-13: replay by task, kind, inclusive time range and an exclusive seq cursor.
    let (_dir, path) = temp_log();
    let _log = seed(&path);
    assert_eq!(
        all(&path).len(),
        152,
        "no limit returns every record, not 100"
    );

    let wu1 = replay(&path, &ReplayFilter::all().task("WU-1")).expect("task filter");
    assert_eq!(wu1.records.len(), 151);
    assert!(wu1.records.iter().all(|r| r.task_id() == Some("WU-1")));
    let wu2 = replay(&path, &ReplayFilter::all().task("WU-2")).expect("task filter");
    assert_eq!(seqs(&wu2.records), vec![77]);

    let waiting = replay(&path, &ReplayFilter::all().kind("task_waiting")).expect("kind");
    assert_eq!(waiting.records.len(), 75);
    let created = replay(&path, &ReplayFilter::all().kind("task_created")).expect("kind");
    assert_eq!(seqs(&created.records), vec![1, 77]);
    let two_kinds = replay(
        &path,
        &ReplayFilter::all()
            .kind("task_created")
            .kind("task_resumed"),
    )
    .expect("kinds");
    assert_eq!(two_kinds.records.len(), 77);
    let none = replay(&path, &ReplayFilter::all().kind("no_such_kind")).expect("kind");
    assert!(none.records.is_empty() && none.next_cursor.is_none());

    // Both ends inclusive: seconds 10..=12 hold the records of seq 11, 12, 13.
    let range = replay(&path, &ReplayFilter::all().since(ts(10)).until(ts(12))).expect("range");
    assert_eq!(seqs(&range.records), vec![11, 12, 13]);
    let at_75 = replay(&path, &ReplayFilter::all().since(ts(75)).until(ts(75))).expect("range");
    assert_eq!(
        seqs(&at_75.records),
        vec![76, 77],
        "both records of second 75"
    );
    let after_end = replay(&path, &ReplayFilter::all().since(ts(1000))).expect("range");
    assert!(after_end.records.is_empty());

    // The cursor is an exclusive lower bound on seq.
    let after_3 = replay(&path, &ReplayFilter::all().after(3).limit(3)).expect("cursor");
    assert_eq!(seqs(&after_3.records), vec![4, 5, 6]);
    assert_eq!(after_3.next_cursor, Some(6));
    let future = replay(&path, &ReplayFilter::all().after(10_000).limit(5)).expect("cursor");
    assert!(future.records.is_empty());
    assert_eq!(future.next_cursor, None);
    let last = replay(&path, &ReplayFilter::all().after(150).limit(5)).expect("cursor");
    assert_eq!(seqs(&last.records), vec![151, 152]);
    assert_eq!(
        last.next_cursor, None,
        "no cursor once the last match is returned"
    );
    let exact = replay(&path, &ReplayFilter::all().after(147).limit(5)).expect("cursor");
    assert_eq!(seqs(&exact.records), vec![148, 149, 150, 151, 152]);
    assert_eq!(exact.next_cursor, None, "a full page with nothing after it");

    // Combined filters page together: WU-1's task_resumed records in pages of 7.
    let filter = ReplayFilter::all()
        .task("WU-1")
        .kind("task_resumed")
        .limit(7);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let mut f = filter.clone();
        f.after_seq = cursor;
        let page = replay(&path, &f).expect("page");
        assert!(page.records.len() <= 7);
        seen.extend(page.records.iter().map(|r| r.seq));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 75);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "no duplicate, no reorder"
    );
}

#[test]
fn records_sharing_a_timestamp_are_never_skipped_across_pages() {
    // KRN-13 (original §4.6 pitfall 1): the cursor is a seq, so ties in timestamp do not skip.
    let (_dir, path) = temp_log();
    let log = open(&path);
    let batch = (0..10)
        .map(|i| obj(json!({"kind": if i % 2 == 0 { "task_claimed" } else { "run_started" }, "task_id": "WU-9", "timestamp": at(0)})))
        .collect();
    log.append_batch(batch).expect("ten records, one timestamp");
    let mut seen = Vec::new();
    let mut filter = ReplayFilter::all().task("WU-9").limit(3);
    loop {
        let page = replay(&path, &filter).expect("page");
        seen.extend(seqs(&page.records));
        match page.next_cursor {
            Some(next) => filter.after_seq = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
}

#[test]
fn a_torn_tail_is_cut_on_open_and_the_chain_continues() {
    // KRN-13: a partial last line (a crash mid-append) is cut when the log is opened.
    let (_dir, path) = temp_log();
    let log = open(&path);
    for n in 1..=3 {
        log.append(checkpoint("WU-1", n)).expect("append");
    }
    let head = log.stats().head;
    drop(log);
    let intact = fs::metadata(&path).expect("meta").len();
    let torn = b"{\"seq\":4,\"prev_hash\":\"0123";
    OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(torn))
        .expect("write a torn tail by hand");
    // Before open: replay skips the fragment, verify reports it.
    assert_eq!(all(&path).len(), 3);
    let (line, problem) = bad_line(verify(&path).expect_err("torn tail"));
    assert_eq!((line, problem), (4, LineProblem::Incomplete));

    let log = open(&path);
    let cut = log.stats().torn_tail.expect("the tail was cut");
    assert_eq!((cut.line, cut.bytes), (4, torn.len() as u64));
    assert_eq!(cut.problem, LineProblem::Incomplete);
    assert_eq!(fs::metadata(&path).expect("meta").len(), intact);
    assert_eq!(log.stats().head, head);
    assert_eq!(log.append(checkpoint("WU-1", 4)).expect("append").seq, 4);
    assert_eq!(verify(&path).expect("verifies").records, 4);
}

#[test]
fn a_torn_last_line_is_cut_and_kept_but_a_changed_one_is_refused() {
    // KRN-13: a torn tail is cut on open (the bytes kept beside the log); a complete last line
    // that fails its check is the trace of an edit, not of a crash, and open refuses it instead
    // of erasing an acknowledged record. Only one line is ever cut, and corruption before the
    // last line is left for verify.
    let (_dir, path) = temp_log();
    let log = open(&path);
    for n in 1..=4 {
        log.append(checkpoint("WU-1", n)).expect("append");
    }
    drop(log);
    let good = lines(&path);
    let pristine = fs::read(&path).expect("read");

    // A fragment without its newline: cut, and kept.
    let mut bytes = pristine.clone();
    bytes.extend_from_slice(b"{\"seq\":5,\"prev_ha");
    fs::write(&path, &bytes).expect("write");
    let log = open(&path);
    let cut = log.stats().torn_tail.expect("cut");
    assert_eq!(cut.line, 5);
    assert_eq!(cut.problem, LineProblem::Incomplete);
    assert_eq!(
        fs::read(&cut.saved_to).expect("the cut bytes are kept"),
        b"{\"seq\":5,\"prev_ha"
    );
    assert_eq!(lines(&path), good);
    drop(log);

    // A whole line holding NUL bytes: blocks never written before a crash. Cut.
    let mut bytes = pristine.clone();
    bytes.extend_from_slice(b"{\"seq\":5,\"prev_ha\0\0\0\0\0\0\n");
    fs::write(&path, &bytes).expect("write");
    let log = open(&path);
    let cut = log.stats().torn_tail.expect("cut");
    assert_eq!(cut.line, 5);
    assert!(
        matches!(cut.problem, LineProblem::InvalidJson(_)),
        "{:?}",
        cut.problem
    );
    assert_eq!(lines(&path), good);
    drop(log);

    // Valid JSON whose hash does not verify (the last record changed after it was written):
    // refused, and the file is left exactly as found.
    let mut text = good.clone();
    text[3] = text[3].replace("step 4", "step X");
    write_lines(&path, &text);
    let edited = fs::read(&path).expect("read");
    let err = EventLog::open(&path, LogOptions::default()).expect_err("an edited last record");
    assert_eq!(err.code(), "LOG_CORRUPT");
    assert!(err.to_string().contains("line 4"), "{err}");
    assert_eq!(fs::read(&path).expect("read"), edited, "nothing was cut");

    // A whole line of something else (not JSON) appended by hand: refused too.
    let mut text = good.clone();
    text.push("garbage appended by hand".to_string());
    write_lines(&path, &text);
    let err = EventLog::open(&path, LogOptions::default()).expect_err("a foreign line");
    assert!(err.to_string().contains("line 5"), "{err}");
    fs::write(&path, &pristine).expect("restore");
    let log = open(&path);
    assert_eq!(log.append(checkpoint("WU-1", 5)).expect("append").seq, 5);
    drop(log);
    verify(&path).expect("verifies");

    // A broken complete line followed by a fragment: two bad lines, so not a torn write.
    let good = lines(&path);
    let mut text = good.clone();
    text.push("garbage".to_string());
    let mut bytes = text.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n{\"seq\":6");
    fs::write(&path, bytes).expect("write");
    let err = EventLog::open(&path, LogOptions::default()).expect_err("two bad lines");
    assert_eq!(err.code(), "LOG_CORRUPT");
    let message = err.to_string();
    assert!(
        message.contains("line 6") && message.contains("events.jsonl"),
        "{message}"
    );

    // A broken middle line: open reads only the tail and succeeds, verify names the line, and
    // open with verify_on_open refuses.
    let mut text = good.clone();
    text[1] = text[1].replace("step 2", "step Y");
    write_lines(&path, &text);
    let log = open(&path);
    assert_eq!(log.stats().torn_tail, None);
    drop(log);
    let (line, problem) = bad_line(verify(&path).expect_err("middle corruption"));
    assert_eq!(line, 2);
    assert!(matches!(problem, LineProblem::HashMismatch { .. }));
    let err = EventLog::open(&path, LogOptions::default().verify_on_open(true))
        .expect_err("verify on open");
    assert_eq!(err.code(), "LOG_CORRUPT");
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn a_flipped_byte_is_reported_on_its_line() {
    // KRN-13: `audit verify` names the first bad line.
    let (_dir, path) = temp_log();
    let log = open(&path);
    for n in 1..=10 {
        log.append(checkpoint("WU-1", n)).expect("append");
    }
    drop(log);
    let pristine = fs::read(&path).expect("read");
    let line_start = |n: usize| -> usize {
        pristine
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(n - 2)
            .map(|(i, _)| i + 1)
            .expect("line start")
    };
    let line_5 = line_start(5);
    let line_5_len = line_start(6) - line_5 - 1;

    // A flip inside the note keeps the JSON valid: the hash catches it.
    let note = pristine[line_5..]
        .windows(6)
        .position(|w| w == b"step 5")
        .expect("note")
        + line_5;
    let mut bytes = pristine.clone();
    bytes[note + 5] ^= 0x01;
    fs::write(&path, &bytes).expect("flip");
    let err = verify(&path).expect_err("flipped byte");
    assert_eq!(err.code(), "LOG_CORRUPT");
    assert!(
        err.short().starts_with("line 5: hash does not match"),
        "{}",
        err.short()
    );
    assert_eq!(err.line(), Some(5));

    // Any other single flipped byte of that line is reported on line 5 too.
    for offset in (0..line_5_len).step_by(7) {
        let mut bytes = pristine.clone();
        bytes[line_5 + offset] ^= 0x20;
        fs::write(&path, &bytes).expect("flip");
        let err = verify(&path).expect_err("flipped byte");
        assert_eq!(err.line(), Some(5), "flip at offset {offset}: {err}");
    }
}

#[test]
fn a_deleted_middle_line_breaks_the_chain_where_it_was() {
    // KRN-13: "line L: prev_hash does not match line L-1".
    let (_dir, path) = temp_log();
    let log = open(&path);
    for n in 1..=6 {
        log.append(checkpoint("WU-1", n)).expect("append");
    }
    drop(log);
    let mut text = lines(&path);
    text.remove(3);
    write_lines(&path, &text);
    let err = verify(&path).expect_err("deleted line");
    assert_eq!(err.short(), "line 4: prev_hash does not match line 3");
    assert!(err.to_string().contains("events.jsonl` line 4"), "{err}");

    // Deleting the first line: the log no longer starts at its beginning.
    let mut text = lines(&path);
    text.remove(0);
    write_lines(&path, &text);
    let (line, problem) = bad_line(verify(&path).expect_err("deleted first line"));
    assert_eq!((line, problem), (1, LineProblem::FirstPrevHashNotZero));

    // A repeated line.
    let (_dir2, path) = temp_log();
    let log = open(&path);
    for n in 1..=3 {
        log.append(checkpoint("WU-1", n)).expect("append");
    }
    drop(log);
    let mut text = lines(&path);
    text.push(text[2].clone());
    write_lines(&path, &text);
    let (line, _) = bad_line(verify(&path).expect_err("repeated line"));
    assert_eq!(line, 4);
}

#[test]
fn invalid_records_are_refused_and_nothing_is_written() {
    // KRN-13: RECORD_INVALID for a record without `kind` or with a reserved member.
    let (_dir, path) = temp_log();
    let log = open(&path);
    for (record, needle) in [
        (
            json!({"kind": "checkpoint", "seq": 9}),
            "`seq` is assigned by the log",
        ),
        (
            json!({"kind": "checkpoint", "prev_hash": GENESIS_HASH}),
            "`prev_hash`",
        ),
        (json!({"kind": "checkpoint", "hash": "00"}), "`hash`"),
        (json!({"task_id": "WU-1"}), "needs a `kind`"),
        (json!({"kind": ""}), "`kind` must not be empty"),
        (
            json!({"kind": "checkpoint", "timestamp": "2026-04-20"}),
            "RFC 3339",
        ),
        (
            json!({"kind": "checkpoint", "n": 9_007_199_254_740_993u64}),
            "`n` is the integer",
        ),
    ] {
        let err = log.append(obj(record)).expect_err(needle);
        assert_eq!(err.code(), "RECORD_INVALID");
        let message = err.to_string();
        assert!(message.contains(needle), "{message}");
        assert!(message.contains("events.jsonl"), "{message}");
    }
    let err = log
        .append_batch(vec![
            checkpoint("WU-1", 1),
            obj(json!({"kind": "x", "hash": "y"})),
        ])
        .expect_err("batch");
    assert!(err.to_string().contains("record 1 of the batch"), "{err}");
    assert_eq!(
        fs::metadata(&path).expect("meta").len(),
        0,
        "all or nothing"
    );
    assert_eq!(
        log.append_batch(Vec::new()).expect("empty batch"),
        Vec::new()
    );
    assert_eq!(log.append(checkpoint("WU-1", 1)).expect("valid").seq, 1);
}

#[test]
fn many_threads_append_with_group_commit() {
    // KRN-13: concurrent appenders get consecutive seqs, the chain verifies, and one fsync covers
    // many records.
    const THREADS: usize = 16;
    const PER_THREAD: usize = 200;
    let (_dir, path) = temp_log();
    let log = open(&path);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            thread::spawn(move || {
                let mut acked = Vec::with_capacity(PER_THREAD);
                for n in 0..PER_THREAD {
                    let ack = log
                        .append(obj(
                            json!({"kind": "checkpoint", "task_id": format!("T{t}"), "n": n}),
                        ))
                        .expect("append");
                    acked.push(ack.seq);
                }
                acked
            })
        })
        .collect();
    let mut all_acked = HashSet::new();
    for handle in handles {
        let acked = handle.join().expect("appender thread");
        assert!(
            acked.windows(2).all(|w| w[0] < w[1]),
            "a thread's own appends stay in order"
        );
        all_acked.extend(acked);
    }
    let total = (THREADS * PER_THREAD) as u64;
    assert_eq!(all_acked.len() as u64, total);
    let records = all(&path);
    assert_eq!(seqs(&records), (1..=total).collect::<Vec<_>>());
    for t in 0..THREADS {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.task_id() == Some(format!("T{t}").as_str()))
            .map(|r| r.fields["n"].as_u64().expect("n"))
            .collect();
        assert_eq!(mine, (0..PER_THREAD as u64).collect::<Vec<_>>());
    }
    assert_eq!(verify(&path).expect("verifies").records, total);
    let stats = log.stats();
    eprintln!(
        "group commit: {} records, {} fsyncs, largest commit {}",
        stats.records_appended, stats.fsyncs, stats.largest_commit
    );
    assert_eq!(stats.records_appended, total);
    assert_eq!(stats.fsyncs, stats.commits);
    assert!(
        stats.fsyncs * 2 <= total,
        "group commit should batch: {} fsyncs for {total} records",
        stats.fsyncs
    );
    assert!(stats.largest_commit > 1);
}

#[test]
fn handles_share_one_writer_and_a_second_writer_is_refused() {
    // KRN-13: one writer per log. Two opens in one process share it; bytes appended behind its
    // back are refused instead of forking the chain.
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<EventLog>();

    let (_dir, path) = temp_log();
    let a = open(&path);
    let b = open(&path);
    a.append(checkpoint("WU-1", 1)).expect("a");
    assert_eq!(b.append(checkpoint("WU-1", 2)).expect("b").seq, 2);
    assert_eq!(a.stats().last_seq, 2);
    verify(&path).expect("one chain");

    OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"{\"not\":\"ours\"}\n"))
        .expect("a second writer");
    let err = a.append(checkpoint("WU-1", 3)).expect_err("conflict");
    assert_eq!(err.code(), "LOG_CONFLICT");
    assert!(
        err.to_string().contains("changed behind its writer"),
        "{err}"
    );
    assert_eq!(
        b.append(checkpoint("WU-1", 3)).expect_err("still").code(),
        "LOG_FAILED"
    );
    drop((a, b));
    // Reopening refuses the foreign last line (complete, and not a record) instead of erasing
    // it; once it is taken away, the log carries on.
    let err = EventLog::open(&path, LogOptions::default()).expect_err("a foreign line");
    assert_eq!(err.code(), "LOG_CORRUPT");
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.ends_with("{\"not\":\"ours\"}\n"), "kept as found");
    fs::write(&path, text.trim_end_matches("{\"not\":\"ours\"}\n")).expect("take it away");
    let log = open(&path);
    assert_eq!(log.append(checkpoint("WU-1", 3)).expect("append").seq, 3);
    verify(&path).expect("verifies");
}

#[test]
fn verify_and_replay_of_empty_and_missing_logs() {
    // KRN-13: an empty log verifies; a missing one replays as empty and fails verify with LOG_IO.
    let (dir, path) = temp_log();
    let _log = open(&path);
    let summary = verify(&path).expect("empty log");
    assert_eq!(
        summary.to_string(),
        format!("chain ok: 0 records, last seq 0, head {GENESIS_HASH}")
    );
    let missing = dir.path().join("nope.jsonl");
    assert!(replay(&missing, &ReplayFilter::all())
        .expect("missing")
        .records
        .is_empty());
    let err = verify(&missing).expect_err("missing");
    assert_eq!(err.code(), "LOG_IO");
    assert!(err.to_string().contains("nope.jsonl"), "{err}");
}

#[test]
fn replay_reports_an_unreadable_line_by_number() {
    // KRN-13: replay never skips a bad complete line silently.
    let (_dir, path) = temp_log();
    let log = open(&path);
    for n in 1..=3 {
        log.append(checkpoint("WU-1", n)).expect("append");
    }
    drop(log);
    let mut text = lines(&path);
    text[1] = "{\"seq\":2,\"oops\"".to_string();
    write_lines(&path, &text);
    let err = replay(&path, &ReplayFilter::all()).expect_err("bad line");
    assert_eq!(err.code(), "LOG_CORRUPT");
    assert!(err.to_string().contains("line 2"), "{err}");
    // A cursor past the bad line does not need to read it.
    let page = replay(&path, &ReplayFilter::all().after(2)).expect("cursor past it");
    assert_eq!(seqs(&page.records), vec![3]);
}
