//! `lumenflow events tail` against the real binary (Q34, Q42, EVT-11): events are written with
//! the kernel's own `Ledger` into a workspace made by `lumenflow init`, then read back.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lumenflow_contracts::event::{build_event, BuildOptions, KernelEventV2};
use lumenflow_kernel::events::ledger::Ledger;
use lumenflow_kernel::events::ledger_path;
use serde_json::{json, Value};
use tempfile::TempDir;

fn lumenflow(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lumenflow"));
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    lumenflow(dir, args).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "lumenflow {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn workspace() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lumenflow-events-test-")
        .tempdir()
        .unwrap();
    ok(dir.path(), &["init", "--id", "test-ws", "--name", "Test"]);
    dir
}

fn event(kind: &str, key: &str, payload: Value) -> KernelEventV2 {
    let Value::Object(payload) = payload else {
        panic!("payload must be an object")
    };
    build_event(kind, "ws-test", payload, BuildOptions::idempotent(key)).unwrap()
}

fn append(ws: &Path, events: &[KernelEventV2]) {
    Ledger::open(&ledger_path(ws))
        .unwrap()
        .append(events)
        .unwrap();
}

fn sample(ws: &Path) -> Vec<KernelEventV2> {
    let events = vec![
        event(
            "acme-demo:job_completed",
            "acme-job-1:completed",
            json!({"job_id": "acme-job-1", "result": "ok"}),
        ),
        event(
            "campus:pue_sampled",
            "pue-1",
            json!({"facility_id": "f1", "pue": 1.2}),
        ),
        event(
            "acme-demo:job_completed",
            "acme-job-2:completed",
            json!({"job_id": "acme-job-2", "result": "ok"}),
        ),
    ];
    append(ws, &events);
    events
}

fn line(e: &KernelEventV2) -> String {
    format!(
        "{}  {}  {}  from={}  {}",
        e.timestamp,
        e.kind,
        e.event_id,
        e.from,
        serde_json::to_string(&e.payload).unwrap()
    )
}

#[test]
fn tail_prints_every_event_one_line_each() {
    let ws = workspace();
    let events = sample(ws.path());
    let out = ok(ws.path(), &["events", "tail"]);
    let expected: Vec<String> = events.iter().map(line).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
    assert!(out.contains("acme-demo:job_completed  evt_"));
    assert!(out.contains("from=ws-test  {\"job_id\":\"acme-job-1\",\"result\":\"ok\"}"));
}

#[test]
fn tail_filters_by_kind_and_limits_to_the_last_n() {
    let ws = workspace();
    let events = sample(ws.path());
    let out = ok(
        ws.path(),
        &["events", "tail", "--kind", "acme-demo:job_completed"],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![line(&events[0]), line(&events[2])]
    );
    let out = ok(ws.path(), &["events", "tail", "--limit", "1"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec![line(&events[2])]);
    let out = ok(
        ws.path(),
        &[
            "events",
            "tail",
            "--kind",
            "acme-demo:job_completed",
            "--limit",
            "1",
        ],
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), vec![line(&events[2])]);
    let out = ok(
        ws.path(),
        &["events", "tail", "--kind", "campus:facility_registered"],
    );
    assert!(out.is_empty());
}

#[test]
fn tail_json_prints_one_event_object_per_line() {
    let ws = workspace();
    let events = sample(ws.path());
    let out = ok(ws.path(), &["--json", "events", "tail"]);
    let parsed: Vec<KernelEventV2> = out
        .lines()
        .map(|l| KernelEventV2::from_json_value(serde_json::from_str(l).unwrap()).unwrap())
        .collect();
    assert_eq!(parsed, events);
}

#[test]
fn tail_of_a_workspace_without_events_prints_nothing_and_succeeds() {
    let ws = workspace();
    let out = run(ws.path(), &["events", "tail"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no events in"));

    // With --kind over a ledger that has events, the message says which kind found none.
    sample(ws.path());
    let out = run(
        ws.path(),
        &["events", "tail", "--kind", "acme-demo:never_emitted"],
    );
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no `acme-demo:never_emitted` events in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tail_refuses_a_malformed_kind_and_a_corrupt_ledger() {
    let ws = workspace();
    let out = run(
        ws.path(),
        &["--json", "events", "tail", "--kind", "Not A Kind"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "INVALID_ARGUMENT");

    sample(ws.path());
    let path = ledger_path(ws.path());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("not an event\n");
    std::fs::write(&path, text).unwrap();
    let out = run(ws.path(), &["--json", "events", "tail"]);
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "LEDGER_CORRUPT");
    assert!(err["error"]["message"].as_str().unwrap().contains("line 4"));
}

/// A `tail --follow` child whose stdout lines arrive on a channel; killed when dropped.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn spawn(ws: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["events", "tail", "--follow"];
        args.extend_from_slice(extra);
        let mut child = lumenflow(ws, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    /// The next line, within a few seconds.
    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(5))
            .expect("a line from `events tail --follow` within 5 s")
    }

    /// No line for a while.
    fn quiet(&self, for_: Duration) {
        if let Ok(line) = self.lines.recv_timeout(for_) {
            panic!("unexpected line: {line}");
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_prints_events_appended_after_it_started() {
    let ws = workspace();
    let before = sample(ws.path());
    let follower = Follower::spawn(
        ws.path(),
        &["--limit", "1", "--kind", "acme-demo:job_completed"],
    );
    assert_eq!(follower.next(), line(&before[2]));

    let started = Instant::now();
    let other = event(
        "campus:pue_sampled",
        "pue-2",
        json!({"facility_id": "f1", "pue": 1.3}),
    );
    let new = event(
        "acme-demo:job_completed",
        "acme-job-3:completed",
        json!({"job_id": "acme-job-3", "result": "ok"}),
    );
    append(ws.path(), &[other, new.clone()]);
    assert_eq!(follower.next(), line(&new));
    assert!(started.elapsed() < Duration::from_secs(5));
    follower.quiet(Duration::from_millis(600));
}

#[test]
fn follow_starts_before_the_ledger_exists_and_survives_truncation() {
    let ws = workspace();
    let follower = Follower::spawn(ws.path(), &[]);
    follower.quiet(Duration::from_millis(400));

    let first = event(
        "acme-demo:job_completed",
        "a",
        json!({"job_id": "a", "result": "ok"}),
    );
    append(ws.path(), std::slice::from_ref(&first));
    assert_eq!(follower.next(), line(&first));

    // The ledger is emptied (rotated by hand) and written again.
    std::fs::write(ledger_path(ws.path()), "").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let second = event(
        "acme-demo:job_completed",
        "b",
        json!({"job_id": "b", "result": "ok"}),
    );
    append(ws.path(), std::slice::from_ref(&second));
    assert_eq!(follower.next(), line(&second));

    // Replaced by a new file (a rename over it), whatever its size.
    let replacement = ws.path().join("events.new");
    let third = event(
        "acme-demo:job_completed",
        "c",
        json!({"job_id": "c", "result": "ok"}),
    );
    let fourth = event(
        "acme-demo:job_completed",
        "d",
        json!({"job_id": "d", "result": "ok"}),
    );
    let mut text = String::new();
    for e in [&third, &fourth] {
        text.push_str(&serde_json::to_string(e).unwrap());
        text.push('\n');
    }
    std::fs::write(&replacement, text).unwrap();
    std::fs::rename(&replacement, ledger_path(ws.path())).unwrap();
    assert_eq!(follower.next(), line(&third));
    assert_eq!(follower.next(), line(&fourth));
}

#[test]
fn tail_outside_a_workspace_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--json", "events", "tail"]);
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "WORKSPACE_NOT_FOUND");
}
