//! Tasks (KRN-14): spec, states and source-state guards, the operations as one-commit event
//! batches, projection over every event, spec tampering, claim/completion policy, and the check
//! the dispatch path makes (KRN-10: a call for an unknown or finished task is refused).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::Path;

use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions, ReplayFilter};
use lumenflow_kernel::manifest::parse_manifest;
use lumenflow_kernel::tasks::{
    check_transition, parse_task_spec, ClaimRequest, RunStatus, TaskAction, TaskError, TaskSpec,
    TaskState, TaskStatus, TaskStore,
};
use lumenflow_kernel::workspace::initial_workspace_yaml;
use serde_json::{json, Value};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

const WS_ID: &str = "ws-test";

fn spec_yaml(id: &str) -> String {
    format!(
        r#"# a task
id: {id}
workspace_id: {WS_ID}
lane_id: default
domain: software-delivery
title: Do the thing
description: Something useful
acceptance:
  - it works
declared_scopes:
  - type: path
    pattern: "src/**"
    access: read
risk: low
type: feature
priority: P1
created: 2026-04-20
"#
    )
}

struct Ws {
    dir: TempDir,
    store: TaskStore,
}

impl Ws {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> std::path::PathBuf {
        eventlog::default_path(self.path())
    }

    fn create(&self, id: &str) -> TaskState {
        self.store
            .create_from_source(&SourceFile::new(format!("{id}.yaml"), spec_yaml(id)))
            .unwrap()
            .state
    }

    fn claim(&self, id: &str) -> lumenflow_kernel::tasks::TaskUpdate {
        self.store
            .claim(id, ClaimRequest::new("agent-1", "session-1"))
            .unwrap()
    }

    /// A fresh task `id` in `state`.
    fn task_in(&self, id: &str, state: TaskStatus) {
        self.create(id);
        match state {
            TaskStatus::Ready => {}
            TaskStatus::Active => {
                self.claim(id);
            }
            TaskStatus::Blocked => {
                self.claim(id);
                self.store.block(id, "needs input").unwrap();
            }
            TaskStatus::Waiting => {
                self.claim(id);
                self.store.wait(id, "approval", Some("apr-1")).unwrap();
            }
            TaskStatus::Done => {
                self.claim(id);
                self.store.complete(id, &[]).unwrap();
            }
        }
        assert_eq!(self.store.get_state(id).unwrap().status, state);
    }

    /// Every record of the log, as JSON lines.
    fn records(&self) -> Vec<Value> {
        eventlog::replay(&self.log_path(), &ReplayFilter::all())
            .unwrap()
            .records
            .into_iter()
            .map(|r| Value::Object(r.to_json()))
            .collect()
    }
}

fn workspace_with(yaml: &str) -> Ws {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("workspace.yaml"), yaml).unwrap();
    let log = EventLog::open(&eventlog::default_path(dir.path()), LogOptions::default()).unwrap();
    let store = TaskStore::open(dir.path(), log).unwrap();
    Ws { dir, store }
}

fn workspace() -> Ws {
    workspace_with(&initial_workspace_yaml(WS_ID, "Test"))
}

fn code<T: std::fmt::Debug>(r: Result<T, TaskError>) -> (&'static str, String) {
    let e = r.expect_err("refused");
    (e.code(), e.to_string())
}

/// Perform `action` on `id` with ordinary arguments.
fn perform(ws: &Ws, id: &str, action: TaskAction) -> Result<(), TaskError> {
    let s = &ws.store;
    match action {
        TaskAction::Claim => s.claim(id, ClaimRequest::new("agent-2", "session-2")),
        TaskAction::Block => s.block(id, "blocked on review"),
        TaskAction::Unblock => s.unblock(id),
        TaskAction::Wait => s.wait(id, "waiting for approval", None),
        TaskAction::Resume => s.resume(id),
        TaskAction::Release => s.release(id, "handing over"),
        TaskAction::Complete => s.complete(id, &["evidence/1".to_string()]),
        TaskAction::FailRun => s.fail_run(id, "tests failed", &[]),
    }
    .map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// States and transitions

#[test]
fn the_transition_table_is_the_originals() {
    // KRN-14: original/dispatch.md §5.1.
    use TaskStatus::*;
    let table: Vec<(TaskStatus, Vec<TaskStatus>)> = TaskStatus::ALL
        .iter()
        .map(|s| (*s, s.allowed_next().to_vec()))
        .collect();
    assert_eq!(
        table,
        vec![
            (Ready, vec![Active]),
            (Active, vec![Blocked, Waiting, Done, Ready]),
            (Blocked, vec![Active, Done]),
            (Waiting, vec![Active, Done]),
            (Done, vec![]),
        ]
    );
    // Every operation's move is one the table allows, from each of its source states.
    for action in TaskAction::ALL {
        for from in action.sources() {
            assert!(
                from.allowed_next().contains(&action.target()),
                "{action}: {from} -> {}",
                action.target()
            );
        }
    }
}

#[test]
fn every_operation_from_every_state_is_allowed_only_from_its_source_states() {
    // KRN-14: guards check the source state; table-driven over 8 operations x 5 states.
    use TaskAction::*;
    use TaskStatus::*;
    let legal: &[(TaskAction, &[TaskStatus])] = &[
        (Claim, &[Ready]),
        (Block, &[Active]),
        (Unblock, &[Blocked]),
        (Wait, &[Active]),
        (Resume, &[Waiting]),
        (Release, &[Active]),
        (Complete, &[Active, Blocked, Waiting]),
        (FailRun, &[Active]),
    ];
    let ws = workspace();
    let mut n = 0;
    for (action, sources) in legal {
        assert_eq!(action.sources(), *sources, "{action}");
        for from in TaskStatus::ALL {
            n += 1;
            let id = format!("T-{n}");
            ws.task_in(&id, from);
            let before = ws.store.get_state(&id).unwrap();
            let result = perform(&ws, &id, *action);
            let after = ws.store.get_state(&id).unwrap();
            if sources.contains(&from) {
                result.unwrap_or_else(|e| panic!("{action} from {from}: {e}"));
                assert_eq!(after.status, action.target(), "{action} from {from}");
                assert!(after.last_seq > before.last_seq);
            } else {
                let err = result.expect_err("illegal");
                assert_eq!(
                    err.code(),
                    "TASK_ILLEGAL_TRANSITION",
                    "{action} from {from}"
                );
                let TaskError::IllegalTransition {
                    task,
                    action: a,
                    from: f,
                    to,
                    allowed,
                } = &err
                else {
                    panic!("{err:?}")
                };
                assert_eq!(
                    (task.as_str(), *a, *f, *to),
                    (id.as_str(), *action, from, action.target())
                );
                assert_eq!(allowed, &from.allowed_next().to_vec());
                let msg = err.to_string();
                assert!(
                    msg.starts_with(&format!(
                        "Illegal state transition for {id}: {} -> {}",
                        from,
                        action.target()
                    )),
                    "{msg}"
                );
                assert!(msg.contains("Allowed next states: "), "{msg}");
                if from == Done {
                    assert!(msg.contains("(done is a terminal state)"), "{msg}");
                    assert!(msg.ends_with("Allowed next states: (none)"), "{msg}");
                }
                // Nothing was appended and nothing changed.
                assert_eq!(after, before, "{action} from {from}");
            }
        }
    }
    assert_eq!(n, 40);
}

#[test]
fn source_guards_are_stricter_than_the_originals_target_guards() {
    // KRN-14: the original let `claim` start from blocked/waiting and `unblock` from ready.
    let err = check_transition("WU-1", TaskAction::Claim, TaskStatus::Blocked).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Illegal state transition for WU-1: blocked -> active (`claim` applies only to ready \
         tasks). Allowed next states: active, done"
    );
    let err = check_transition("WU-1727", TaskAction::Complete, TaskStatus::Ready).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Illegal state transition for WU-1727: ready -> done. Allowed next states: active"
    );
    assert!(check_transition("WU-1", TaskAction::Unblock, TaskStatus::Ready).is_err());
    assert!(check_transition("WU-1", TaskAction::Unblock, TaskStatus::Waiting).is_err());
    assert!(check_transition("WU-1", TaskAction::Resume, TaskStatus::Blocked).is_err());
}

// ---------------------------------------------------------------------------------------------
// Operations as batches

#[test]
fn claim_appends_task_claimed_and_run_started_in_one_commit_with_one_timestamp() {
    // KRN-14, original/dispatch.md §5.4: one appendAll, identical timestamps.
    let ws = workspace();
    ws.create("WU-1");
    let before = ws.store.log().stats();
    let update = ws.claim("WU-1");
    let after = ws.store.log().stats();
    assert_eq!(after.commits - before.commits, 1, "one commit");
    assert_eq!(after.fsyncs - before.fsyncs, 1, "one fsync");
    assert_eq!(after.records_appended - before.records_appended, 2);

    let kinds: Vec<&str> = update.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["task_claimed", "run_started"]);
    assert_eq!(update.events[1].seq, update.events[0].seq + 1);
    assert_eq!(update.events[0].timestamp, update.events[1].timestamp);

    let records = ws.records();
    assert_eq!(records.len(), 3);
    let (claimed, started) = (&records[1], &records[2]);
    assert_eq!(claimed["timestamp"], started["timestamp"]);
    assert_eq!(claimed["schema_version"], 1);
    assert_eq!(claimed["by"], "agent-1");
    assert_eq!(claimed["session_id"], "session-1");
    assert_eq!(started["by"], "agent-1");
    let run_id = started["run_id"].as_str().unwrap();
    let hex = run_id.strip_prefix("run-WU-1-1-").expect(run_id);
    assert_eq!(hex.len(), 8);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

    let state = update.state;
    assert_eq!(state.status, TaskStatus::Active);
    assert_eq!(state.claimed_by.as_deref(), Some("agent-1"));
    assert_eq!(state.run_count, 1);
    let run = state.current_run.unwrap();
    assert_eq!(
        (run.run_id.as_str(), run.status),
        (run_id, RunStatus::Executing)
    );
    // The in-memory state after the append is the projection of the log.
    assert_eq!(
        ws.store.get_state("WU-1").unwrap().current_run.unwrap(),
        run
    );
    let policy = update.policy.unwrap();
    assert_eq!(
        policy.decisions[0].policy_id,
        "kernel.policy.runtime-fallback"
    );
}

#[test]
fn complete_appends_run_succeeded_and_task_completed_in_one_commit() {
    // KRN-14: [run_succeeded, task_completed], both with the evidence refs.
    let ws = workspace();
    ws.create("WU-2");
    let run_id = ws.claim("WU-2").state.current_run.unwrap().run_id;
    let before = ws.store.log().stats();
    let refs = vec!["evidence/inputs/abc".to_string(), "report.md".to_string()];
    let update = ws.store.complete("WU-2", &refs).unwrap();
    let after = ws.store.log().stats();
    assert_eq!(after.commits - before.commits, 1);
    let kinds: Vec<&str> = update.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["run_succeeded", "task_completed"]);
    assert_eq!(update.events[0].timestamp, update.events[1].timestamp);
    assert_eq!(update.events[0].fields["run_id"], run_id.as_str());
    for e in &update.events {
        assert_eq!(e.fields["evidence_refs"], json!(refs));
    }
    let state = ws.store.get_state("WU-2").unwrap();
    assert_eq!(state.status, TaskStatus::Done);
    assert_eq!(
        state.completed_at.as_deref(),
        Some(update.events[1].timestamp.as_str())
    );
    let run = state.current_run.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.evidence_refs, refs);
    assert_eq!(state.run_count, 1);
}

#[test]
fn block_and_wait_pause_the_run_and_unblock_and_resume_restart_it() {
    // KRN-14: run paused while the task is blocked or waiting.
    let ws = workspace();
    ws.create("WU-3");
    ws.claim("WU-3");
    let update = ws.store.block("WU-3", "  needs a review  ").unwrap();
    let kinds: Vec<&str> = update.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["task_blocked", "run_paused"]);
    assert_eq!(update.events[0].fields["reason"], "needs a review");
    assert_eq!(
        update.state.blocked_reason.as_deref(),
        Some("needs a review")
    );
    assert_eq!(update.state.current_run.unwrap().status, RunStatus::Paused);

    let update = ws.store.unblock("WU-3").unwrap();
    assert_eq!(update.state.status, TaskStatus::Active);
    assert_eq!(update.state.blocked_reason, None);
    assert_eq!(
        update.state.current_run.unwrap().status,
        RunStatus::Executing
    );

    let update = ws.store.wait("WU-3", "approval", Some("apr-7")).unwrap();
    assert_eq!(update.state.status, TaskStatus::Waiting);
    assert_eq!(update.state.wait_for.as_deref(), Some("apr-7"));
    assert_eq!(update.events[0].fields["wait_for"], "apr-7");
    assert_eq!(update.state.current_run.unwrap().status, RunStatus::Paused);
    let update = ws.store.resume("WU-3").unwrap();
    assert_eq!(update.state.status, TaskStatus::Active);
    assert_eq!(
        update.state.current_run.unwrap().status,
        RunStatus::Executing
    );

    // An empty reason is refused before anything is appended.
    assert_eq!(
        code(ws.store.block("WU-3", "  ")).0,
        "TASK_INVALID_ARGUMENT"
    );
    assert_eq!(
        code(ws.store.claim("WU-3", ClaimRequest::new("", "s"))).0,
        "TASK_INVALID_ARGUMENT"
    );
}

#[test]
fn release_and_fail_run_end_the_run_and_a_new_claim_starts_another() {
    // KRN-14: run failed; task back to ready; run ids unique and numbered.
    let ws = workspace();
    ws.create("WU-4");
    let first = ws.claim("WU-4").state.current_run.unwrap().run_id;
    let update = ws.store.release("WU-4", "handing over").unwrap();
    let kinds: Vec<&str> = update.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["run_failed", "task_released"]);
    assert_eq!(update.state.status, TaskStatus::Ready);
    assert_eq!(update.state.session_id, None);
    assert_eq!(
        update.state.claimed_by.as_deref(),
        Some("agent-1"),
        "claimed_* kept"
    );
    let run = update.state.current_run.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.reason.as_deref(), Some("released: handing over"));

    let second = ws.claim("WU-4").state.current_run.unwrap().run_id;
    assert!(second.starts_with("run-WU-4-2-"), "{second}");
    assert_ne!(first, second);
    let update = ws
        .store
        .fail_run("WU-4", "tests failed", &["log.txt".to_string()])
        .unwrap();
    let kinds: Vec<&str> = update.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["run_failed", "task_released"]);
    assert_eq!(update.state.status, TaskStatus::Ready);
    let run = update.state.current_run.unwrap();
    assert_eq!(
        (run.status, run.reason.as_deref()),
        (RunStatus::Failed, Some("tests failed"))
    );
    assert_eq!(run.evidence_refs, ["log.txt"]);

    let third = ws.claim("WU-4").state;
    assert_eq!(third.run_count, 3);
    let history = ws.store.inspect("WU-4").unwrap().run_history;
    let ids: Vec<&str> = history.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], first);
    assert_eq!(ids[1], second);
    assert!(ids[2].starts_with("run-WU-4-3-"));
}

#[test]
fn checkpoints_belong_to_a_run_in_progress() {
    // KRN-14: checkpoint {note, progress}, no state change.
    let ws = workspace();
    ws.create("WU-5");
    assert_eq!(
        code(ws.store.checkpoint("WU-5", "early", None)).0,
        "TASK_NO_ACTIVE_RUN"
    );
    let run = ws.claim("WU-5").state.current_run.unwrap().run_id;
    let update = ws
        .store
        .checkpoint("WU-5", "half way", Some(json!({"percent": 50})))
        .unwrap();
    assert_eq!(update.events.len(), 1);
    let e = &update.events[0];
    assert_eq!(e.kind, "checkpoint");
    assert_eq!(e.fields["run_id"], run.as_str());
    assert_eq!(e.fields["note"], "half way");
    assert_eq!(e.fields["progress"], json!({"percent": 50}));
    assert_eq!(update.state.status, TaskStatus::Active);
    ws.store.complete("WU-5", &[]).unwrap();
    assert_eq!(
        code(ws.store.checkpoint("WU-5", "late", None)).0,
        "TASK_NO_ACTIVE_RUN"
    );
}

// ---------------------------------------------------------------------------------------------
// Projection

#[test]
fn projection_replays_every_event_beyond_150() {
    // KRN-14, original/dispatch.md §4.6 pitfall 2: the original projected only the first 100.
    let ws = workspace();
    ws.create("WU-1870");
    ws.claim("WU-1870");
    for i in 0..40 {
        ws.store.block("WU-1870", &format!("block {i}")).unwrap();
        ws.store.unblock("WU-1870").unwrap();
    }
    for i in 0..25 {
        ws.store
            .wait("WU-1870", &format!("wait {i}"), None)
            .unwrap();
        ws.store.resume("WU-1870").unwrap();
    }
    // 1 + 2 + 40 * 3 + 25 * 3 = 198 events; the last ones decide the state.
    let state = ws.store.get_state("WU-1870").unwrap();
    assert_eq!(state.event_count, 198);
    assert_eq!(state.status, TaskStatus::Active);
    assert_eq!(
        state.current_run.as_ref().unwrap().status,
        RunStatus::Executing
    );
    ws.store.block("WU-1870", "the 199th").unwrap();
    let state = ws.store.get_state("WU-1870").unwrap();
    assert_eq!(state.event_count, 200);
    assert_eq!(state.status, TaskStatus::Blocked);
    assert_eq!(state.blocked_reason.as_deref(), Some("the 199th"));
    let done = ws.store.complete("WU-1870", &[]).unwrap().state;
    assert_eq!(done.status, TaskStatus::Done);
    assert_eq!(done.event_count, 202);
    assert_eq!(ws.store.inspect("WU-1870").unwrap().events.len(), 202);
    // Another task's events in between do not leak in.
    ws.create("OTHER");
    assert_eq!(ws.store.get_state("WU-1870").unwrap().event_count, 202);
}

#[test]
fn a_tampered_or_removed_spec_is_detected_with_both_hashes() {
    // KRN-14: spec hash verified against task_created.spec_hash.
    let ws = workspace();
    let created = ws
        .store
        .create_from_source(&SourceFile::new("WU-1726.yaml", spec_yaml("WU-1726")))
        .unwrap();
    ws.claim("WU-1726");
    let path = created.spec_path.clone();
    assert_eq!(path, ws.path().join(".lumenflow/kernel/tasks/WU-1726.yaml"));

    // Comments and formatting are not content: the hash is over the parsed spec.
    let reformatted = spec_yaml("WU-1726").replace("# a task\n", "") + "# trailing comment\n";
    fs::write(&path, reformatted).unwrap();
    assert_eq!(
        ws.store.get_state("WU-1726").unwrap().status,
        TaskStatus::Active
    );

    let tampered = spec_yaml("WU-1726").replace("title: Do the thing", "title: Do another thing");
    fs::write(&path, &tampered).unwrap();
    let actual = parse_task_spec(&SourceFile::new("x", tampered), None)
        .unwrap()
        .hash();
    for result in [
        ws.store.get_state("WU-1726"),
        ws.store.check_callable("WU-1726"),
    ] {
        let (code, message) = code(result);
        assert_eq!(code, "SPEC_TAMPERED");
        assert_eq!(
            message,
            format!(
                "Spec hash mismatch for WU-1726: expected {}, actual {actual}",
                created.spec_hash
            )
        );
    }
    // Operations refuse too, and append nothing.
    let len = ws.records().len();
    assert_eq!(code(ws.store.complete("WU-1726", &[])).0, "SPEC_TAMPERED");
    assert_eq!(ws.records().len(), len);

    fs::write(&path, "id: [unclosed").unwrap();
    let (code_, message) = code(ws.store.get_state("WU-1726"));
    assert_eq!(code_, "SPEC_TAMPERED");
    assert!(message.contains(&created.spec_hash), "{message}");
    fs::remove_file(&path).unwrap();
    let (code_, message) = code(ws.store.get_state("WU-1726"));
    assert_eq!(code_, "SPEC_TAMPERED");
    assert!(message.contains("file not found"), "{message}");
    assert_eq!(code(ws.store.check_callable("WU-1726")).0, "SPEC_TAMPERED");
}

#[test]
fn spec_hash_is_the_canonical_hash_of_the_parsed_spec() {
    // KRN-14, KRN-15: spec_hash = RFC 8785 hash of the parsed spec (absent options left out).
    let ws = workspace();
    let created = ws
        .store
        .create_from_source(&SourceFile::new("WU-9.yaml", spec_yaml("WU-9")))
        .unwrap();
    let expected = canonical_hash(&json!({
        "id": "WU-9",
        "workspace_id": WS_ID,
        "lane_id": "default",
        "domain": "software-delivery",
        "title": "Do the thing",
        "description": "Something useful",
        "acceptance": ["it works"],
        "declared_scopes": [{"type": "path", "pattern": "src/**", "access": "read"}],
        "risk": "low",
        "type": "feature",
        "priority": "P1",
        "created": "2026-04-20",
    }));
    assert_eq!(created.spec_hash, expected);
    assert_eq!(created.event.kind, "task_created");
    assert_eq!(created.event.fields["spec_hash"], expected.as_str());
    assert_eq!(created.state.status, TaskStatus::Ready);
    // The author's text is stored as written.
    assert_eq!(
        fs::read_to_string(&created.spec_path).unwrap(),
        spec_yaml("WU-9")
    );

    // A spec value round-trips through its YAML form with the same hash.
    let spec: TaskSpec = created_spec(&ws, "WU-9");
    let mut other = spec.clone();
    other.id = "WU-10".into();
    other.labels = Some(vec!["a".into()]);
    other.extensions = Some(
        json!({"x": {"y": [1, 2.5, true, null]}})
            .as_object()
            .unwrap()
            .clone(),
    );
    let c = ws.store.create(&other).unwrap();
    assert_eq!(c.spec_hash, other.hash());
    assert_eq!(ws.store.get_spec("WU-10").unwrap(), other);
}

fn created_spec(ws: &Ws, id: &str) -> TaskSpec {
    ws.store.get_spec(id).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Creation

#[test]
fn a_second_create_is_task_exists_and_the_spec_stays_immutable() {
    // KRN-14: exclusive create.
    let ws = workspace();
    ws.create("WU-1");
    let changed = spec_yaml("WU-1").replace("Do the thing", "Something else");
    let (code_, message) = code(
        ws.store
            .create_from_source(&SourceFile::new("WU-1.yaml", changed)),
    );
    assert_eq!(code_, "TASK_EXISTS");
    assert_eq!(
        message,
        "Task spec already exists for WU-1 and is immutable."
    );
    assert_eq!(
        code(
            ws.store
                .create_from_source(&SourceFile::new("x", spec_yaml("WU-1")))
        )
        .0,
        "TASK_EXISTS"
    );
    let tasks_dir = ws.path().join(".lumenflow/kernel/tasks");
    assert_eq!(
        fs::read_to_string(tasks_dir.join("WU-1.yaml")).unwrap(),
        spec_yaml("WU-1")
    );
    // No temporary files are left behind.
    let names: Vec<String> = fs::read_dir(&tasks_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["WU-1.yaml"]);
    assert_eq!(ws.records().len(), 1);
}

#[test]
fn an_orphan_spec_file_is_adopted_only_when_identical() {
    // KRN-14: a crash between the spec write and task_created leaves a file without event.
    let ws = workspace();
    let dir = ws.path().join(".lumenflow/kernel/tasks");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("WU-A.yaml"), spec_yaml("WU-A")).unwrap();
    assert_eq!(
        ws.store.get_state("WU-A").map(|_| ()).unwrap_err().code(),
        "TASK_NOT_FOUND"
    );
    ws.create("WU-A");
    assert_eq!(
        ws.store.get_state("WU-A").unwrap().status,
        TaskStatus::Ready
    );

    fs::write(dir.join("WU-B.yaml"), "something else").unwrap();
    let err = ws
        .store
        .create_from_source(&SourceFile::new("WU-B.yaml", spec_yaml("WU-B")))
        .unwrap_err();
    assert_eq!(err.code(), "TASK_EXISTS");
    assert!(err.help().unwrap().contains("interrupted create"));
}

#[test]
fn a_failed_append_removes_the_spec_file() {
    // KRN-14: if task_created cannot be appended, the spec file is removed.
    let ws = workspace();
    ws.create("WU-1");
    // Another writer appends a record that does not continue the chain (a copy of the last
    // line under a later `seq`): it reads as a record, but the store's next commit is refused.
    let text = fs::read_to_string(ws.log_path()).unwrap();
    let last = text.lines().last().unwrap();
    let mut copy: serde_json::Map<String, Value> = serde_json::from_str(last).unwrap();
    let seq = copy["seq"].as_u64().unwrap();
    copy.insert("seq".into(), json!(seq + 7));
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(ws.log_path())
        .unwrap();
    writeln!(f, "{}", Value::Object(copy)).unwrap();
    drop(f);
    let err = ws
        .store
        .create_from_source(&SourceFile::new("WU-2.yaml", spec_yaml("WU-2")))
        .unwrap_err();
    assert_eq!(err.code(), "LOG_CONFLICT");
    assert!(!ws.path().join(".lumenflow/kernel/tasks/WU-2.yaml").exists());
    assert!(ws.path().join(".lumenflow/kernel/tasks/WU-1.yaml").exists());
}

#[test]
fn bad_spec_files_name_file_line_and_field() {
    // KRN-14: strict schema through the kernel YAML reader.
    let ws = workspace();
    let base = spec_yaml("WU-1");
    let cases: Vec<(String, usize, &str, &str, Option<&str>)> = vec![
        (
            base.replace("title:", "titel:"),
            6,
            "titel",
            "unknown field `titel`",
            Some("did you mean `title`?"),
        ),
        (
            base.replace("priority: P1", "priority: P5"),
            16,
            "priority",
            "unknown value `P5`",
            Some("valid values: `P0`, `P1`, `P2`, `P3`"),
        ),
        (
            base.replace("risk: low", "risk: lo"),
            14,
            "risk",
            "unknown value `lo`",
            Some("did you mean `low`?"),
        ),
        (
            base.replace("created: 2026-04-20", "created: 2026-02-30"),
            17,
            "created",
            "`2026-02-30` is not a date written YYYY-MM-DD",
            None,
        ),
        (
            base.replace("id: WU-1", "id: ../escape"),
            2,
            "id",
            "invalid task id: must start with a letter or digit",
            None,
        ),
        (
            base.replace("id: WU-1", "id: a..b"),
            2,
            "id",
            "invalid task id: must not contain `..`",
            None,
        ),
        (
            base.replace("id: WU-1", "id: a/b"),
            2,
            "id",
            "invalid task id: must contain only letters",
            None,
        ),
        (
            base.replace("lane_id: default", "lane_id: defualt"),
            4,
            "lane_id",
            "lane `defualt` is not declared in workspace.yaml",
            Some("did you mean `default`?"),
        ),
        (
            base.replace("workspace_id: ws-test", "workspace_id: other"),
            3,
            "workspace_id",
            "Task workspace mismatch",
            None,
        ),
        (
            base.replace("  - it works\n", "  - \"\"\n"),
            9,
            "acceptance[0]",
            "must not be empty",
            None,
        ),
        (
            base.replace("    access: read\n", "    access: read\n  - type: file\n"),
            14,
            "declared_scopes[1].type",
            "unknown value `file`",
            None,
        ),
        (
            base.replace(
                "  - type: path\n    pattern: \"src/**\"\n    access: read\n",
                "  - {type: network, posture: allowlist}\n",
            ),
            11,
            "declared_scopes[0]",
            "`allowlist` network scope needs `allowlist_entries`",
            None,
        ),
        (
            base.replace("type: feature", "type: 7"),
            15,
            "type",
            "expected a string, found integer `7`",
            None,
        ),
        (
            base.replace("description: Something useful\n", ""),
            0,
            "",
            "missing required field `description`",
            None,
        ),
    ];
    for (text, line, field, message, help) in cases {
        let err = ws
            .store
            .create_from_source(&SourceFile::new("specs/task.yaml", text.clone()))
            .unwrap_err();
        assert_eq!(err.code(), "TASK_SPEC_INVALID", "{text}");
        let TaskError::SpecInvalid(diags) = &err else {
            panic!("{err:?}")
        };
        let d = &diags.0[0];
        assert_eq!(d.file, "specs/task.yaml");
        assert!(
            d.message.contains(message),
            "{} should contain {message}",
            d.message
        );
        if line > 0 {
            assert_eq!(d.line, line, "{message}: {}", d.one_line());
            assert_eq!(d.field.as_deref(), Some(field), "{message}");
        } else {
            assert!(d.line > 0, "{}", d.one_line());
        }
        if let Some(help) = help {
            assert!(
                d.help.as_deref().unwrap_or("").contains(help),
                "{:?} should contain {help}",
                d.help
            );
        }
    }
    // YAML syntax errors name the line too.
    let err = ws
        .store
        .create_from_source(&SourceFile::new("t.yaml", "id: WU-1\ntitle: [unclosed\n"))
        .unwrap_err();
    let TaskError::SpecInvalid(diags) = &err else {
        panic!("{err:?}")
    };
    assert!(diags.0[0].line >= 2, "{}", diags.0[0].one_line());
    // Nothing was written.
    assert!(ws.records().is_empty());
    assert!(!ws.path().join(".lumenflow/kernel/tasks/WU-1.yaml").exists());
}

#[test]
fn acceptance_may_be_a_map_of_lists() {
    // KRN-14, original/dispatch.md §5.2.
    let ws = workspace();
    let text = spec_yaml("WU-M").replace(
        "acceptance:\n  - it works\n",
        "acceptance:\n  api:\n    - returns 200\n  ui:\n    - shows the list\n",
    );
    let c = ws
        .store
        .create_from_source(&SourceFile::new("m.yaml", text))
        .unwrap();
    let spec = ws.store.get_spec(&c.task_id).unwrap();
    assert_eq!(
        spec.to_json()["acceptance"],
        json!({"api": ["returns 200"], "ui": ["shows the list"]})
    );
    let bad = spec_yaml("WU-N").replace("acceptance:\n  - it works\n", "acceptance:\n  api: []\n");
    let err = ws
        .store
        .create_from_source(&SourceFile::new("n.yaml", bad))
        .unwrap_err();
    let TaskError::SpecInvalid(d) = err else {
        panic!()
    };
    assert_eq!(d.0[0].field.as_deref(), Some("acceptance.api"));
}

// ---------------------------------------------------------------------------------------------
// Policy

const POLICY_WS: &str = r#"id: ws-test
name: Test
packs: []
lanes:
  - id: default
    title: Default
  - id: frozen
    title: Frozen
    policy_overrides:
      rules:
        - id: lane.no-claims
          trigger: on_claim
          decision: deny
          reason: the lane is frozen
security:
  allowed_scopes:
    - {type: path, pattern: "**", access: read}
memory_namespace: ws-test
event_namespace: ws-test
policies:
  rules:
    - id: ws.no-completion-for-docs
      trigger: on_completion
      decision: deny
      reason: docs tasks are completed by the docs team
      when:
        pack: docs
"#;

#[test]
fn a_policy_deny_on_claim_refuses_with_its_reasons_and_appends_nothing() {
    // KRN-14, KRN-08: on_claim with the lane layer.
    let ws = workspace_with(POLICY_WS);
    let text = spec_yaml("WU-F").replace("lane_id: default", "lane_id: frozen");
    ws.store
        .create_from_source(&SourceFile::new("f.yaml", text))
        .unwrap();
    let before = ws.records().len();
    let err = ws
        .store
        .claim("WU-F", ClaimRequest::new("a", "s"))
        .unwrap_err();
    assert_eq!(err.code(), "POLICY_DENIED");
    assert_eq!(
        err.to_string(),
        "Policy denied claim for WU-F: the lane is frozen (lane.no-claims)"
    );
    let TaskError::PolicyDenied { decisions, .. } = &err else {
        panic!()
    };
    assert_eq!(decisions[0].policy_id, "lane.no-claims");
    assert_eq!(ws.records().len(), before);
    assert_eq!(
        ws.store.get_state("WU-F").unwrap().status,
        TaskStatus::Ready
    );
    // The default lane is not frozen.
    ws.create("WU-G");
    ws.claim("WU-G");
}

#[test]
fn a_policy_deny_on_completion_refuses_and_the_task_stays_active() {
    // KRN-14, KRN-08: on_completion, workspace layer with a `when` on the task's domain.
    let ws = workspace_with(POLICY_WS);
    let text = spec_yaml("WU-D").replace("domain: software-delivery", "domain: docs");
    ws.store
        .create_from_source(&SourceFile::new("d.yaml", text))
        .unwrap();
    ws.claim("WU-D");
    let before = ws.records().len();
    let (code_, message) = code(ws.store.complete("WU-D", &[]));
    assert_eq!(code_, "POLICY_DENIED");
    assert!(
        message.starts_with("Policy denied completion for WU-D: docs tasks"),
        "{message}"
    );
    assert_eq!(ws.records().len(), before);
    let state = ws.store.get_state("WU-D").unwrap();
    assert_eq!(state.status, TaskStatus::Active);
    assert_eq!(state.current_run.unwrap().status, RunStatus::Executing);
    // Other domains complete.
    ws.create("WU-E");
    ws.claim("WU-E");
    ws.store.complete("WU-E", &[]).unwrap();
}

#[test]
fn pack_policies_and_state_aliases_take_part() {
    // KRN-14, KRN-08: the pack layer; aliases for display only.
    let manifest = parse_manifest(SourceFile::new(
        "manifest.yaml",
        "id: notes-pack\nversion: 1.0.0\ntask_types: [task]\nstate_aliases:\n  active: in_progress\npolicies:\n  - id: notes.no-claims\n    trigger: on_claim\n    decision: deny\n    reason: claims are closed\n    when:\n      pack: notes-pack\n",
    ))
    .unwrap()
    .manifest;
    let ws = workspace();
    let store = ws.store.clone().with_packs([manifest]);
    ws.create("WU-1");
    let text = spec_yaml("WU-2").replace("domain: software-delivery", "domain: notes-pack");
    store
        .create_from_source(&SourceFile::new("n.yaml", text))
        .unwrap();
    let (code_, message) = code(store.claim("WU-2", ClaimRequest::new("a", "s")));
    assert_eq!(code_, "POLICY_DENIED");
    assert!(
        message.contains("claims are closed (notes.no-claims)"),
        "{message}"
    );

    let state = store
        .claim("WU-1", ClaimRequest::new("a", "s"))
        .unwrap()
        .state;
    assert_eq!(state.status, TaskStatus::Active);
    assert_eq!(state.display_status, "in_progress");
    assert_eq!(ws.store.get_state("WU-1").unwrap().display_status, "active");
    assert_eq!(
        serde_json::to_value(&state).unwrap()["status"],
        "active",
        "stored and checked as the canonical state"
    );
}

// ---------------------------------------------------------------------------------------------
// The dispatch check

#[test]
fn check_callable_refuses_unknown_and_inactive_tasks() {
    // KRN-14, KRN-10: a call for an unknown or finished task is refused.
    let ws = workspace();
    let (c, m) = code(ws.store.check_callable("WU-404"));
    assert_eq!(
        (c, m.as_str()),
        ("TASK_NOT_FOUND", "Task spec not found for WU-404")
    );
    // Ids that cannot be task ids are unknown, and never reach the file system.
    for bad in ["../../etc/passwd", "", "a/b", ".hidden", "a..b"] {
        assert_eq!(
            code(ws.store.check_callable(bad)).0,
            "TASK_NOT_FOUND",
            "{bad}"
        );
    }

    ws.create("WU-1");
    let (c, m) = code(ws.store.check_callable("WU-1"));
    assert_eq!(c, "TASK_NOT_ACTIVE");
    assert!(m.starts_with("Task WU-1 is ready, not active"), "{m}");
    assert!(m.contains("lumenflow task claim WU-1"), "{m}");

    let run = ws.claim("WU-1").state.current_run.unwrap().run_id;
    let state = ws.store.check_callable("WU-1").unwrap();
    assert_eq!(state.status, TaskStatus::Active);
    assert_eq!(state.lane_id, "default");
    assert_eq!(state.current_run.unwrap().run_id, run);
    assert_eq!(
        serde_json::to_value(&state.declared_scopes).unwrap(),
        json!([{"type": "path", "pattern": "src/**", "access": "read"}])
    );

    ws.store.block("WU-1", "x").unwrap();
    let (c, m) = code(ws.store.check_callable("WU-1"));
    assert_eq!(c, "TASK_NOT_ACTIVE");
    assert!(m.contains("lumenflow task unblock WU-1"), "{m}");
    ws.store.unblock("WU-1").unwrap();
    ws.store.check_callable("WU-1").unwrap();

    ws.store.complete("WU-1", &[]).unwrap();
    let (c, m) = code(ws.store.check_callable("WU-1"));
    assert_eq!(c, "TASK_NOT_ACTIVE");
    assert!(m.starts_with("Task WU-1 is done, not active"), "{m}");
    // Finding 14 (walk H): a done task cannot be claimed again, so the refusal must not say so.
    assert!(!m.contains("claim"), "{m}");
    assert!(m.contains("create a new task"), "{m}");
}

#[test]
fn the_store_can_be_shared_across_threads() {
    // KRN-14: the dispatch path holds the store behind an Arc.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TaskStore>();

    // Concurrent claims of one task: exactly one wins, the others are illegal transitions.
    let ws = workspace();
    ws.create("WU-RACE");
    let store = std::sync::Arc::new(ws.store.clone());
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                store
                    .claim("WU-RACE", ClaimRequest::new(format!("agent-{i}"), "s"))
                    .map(|_| ())
                    .map_err(|e| e.code())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results
        .iter()
        .filter_map(|r| r.err())
        .all(|c| c == "TASK_ILLEGAL_TRANSITION"));
    assert_eq!(ws.store.get_state("WU-RACE").unwrap().run_count, 1);
}

/// Set by [`claims_from_several_processes_never_both_win`] for its peers: `<name>=<workspace>`.
const CLAIMER_ENV: &str = "LUMENFLOW_TASKS_CLAIMER";
const RACED_TASKS: usize = 40;

/// Claim every raced task in turn, as `agent-<name>`, once `<workspace>/go` exists.
fn claim_all(store: &TaskStore, name: &str, workspace: &Path) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !workspace.join("go").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    (0..RACED_TASKS)
        .filter(|i| {
            match store.claim(
                &format!("WU-{i}"),
                ClaimRequest::new(format!("agent-{name}"), name),
            ) {
                Ok(_) => true,
                Err(e) => {
                    assert_eq!(e.code(), "TASK_ILLEGAL_TRANSITION", "{name}: {e}");
                    false
                }
            }
        })
        .count()
}

/// A peer process of [`claims_from_several_processes_never_both_win`]; does nothing unless the
/// parent set [`CLAIMER_ENV`].
#[test]
fn child_claimer() {
    let Some(spec) = std::env::var_os(CLAIMER_ENV) else {
        return;
    };
    let spec = spec.to_string_lossy().into_owned();
    let (name, dir) = spec.split_once('=').expect("<name>=<workspace>");
    let dir = Path::new(dir);
    let log = EventLog::open(&eventlog::default_path(dir), LogOptions::default()).unwrap();
    let store = TaskStore::open(dir, log).unwrap();
    let won = claim_all(&store, name, dir);
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nwon {won}").unwrap();
    out.flush().unwrap();
}

#[test]
fn claims_from_several_processes_never_both_win() {
    // KRN-14 across processes: a sidecar and `lumenflow task claim` share one workspace. Each
    // operation decides on the task's events as every process has written them, so of several
    // processes claiming one task, exactly one wins.
    let ws = workspace();
    for i in 0..RACED_TASKS {
        ws.create(&format!("WU-{i}"));
    }
    let exe = std::env::current_exe().unwrap();
    let peers: Vec<_> = ["b", "c"]
        .iter()
        .map(|name| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_claimer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CLAIMER_ENV, format!("{name}={}", ws.path().display()))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Let the peers open the workspace before the start signal.
    std::thread::sleep(std::time::Duration::from_millis(300));
    fs::write(ws.path().join("go"), b"").unwrap();
    let mut won = claim_all(&ws.store, "a", ws.path());
    for peer in peers {
        let out = peer.wait_with_output().unwrap();
        assert!(out.status.success(), "a peer failed: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        won += text
            .lines()
            .find_map(|l| l.strip_prefix("won "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no result from a peer: {text}"));
    }
    let claims = ws
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "task_claimed")
        .count();
    assert_eq!(claims, RACED_TASKS, "one task_claimed per task");
    assert_eq!(won, RACED_TASKS, "one winner per task");
    for i in 0..RACED_TASKS {
        assert_eq!(ws.store.get_state(&format!("WU-{i}")).unwrap().run_count, 1);
    }
    eventlog::verify(&ws.log_path()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Listing

#[test]
fn list_shows_every_task_and_flags_a_tampered_one() {
    // KRN-14.
    let ws = workspace();
    ws.create("WU-1");
    ws.create("WU-2");
    ws.claim("WU-2");
    ws.create("WU-3");
    fs::write(
        ws.path().join(".lumenflow/kernel/tasks/WU-3.yaml"),
        spec_yaml("WU-3").replace("risk: low", "risk: high"),
    )
    .unwrap();
    let list = ws.store.list().unwrap();
    let ids: Vec<&str> = list.iter().map(|s| s.task_id.as_str()).collect();
    assert_eq!(ids, ["WU-1", "WU-2", "WU-3"]);
    assert_eq!(list[0].status, Some(TaskStatus::Ready));
    assert_eq!(list[0].title.as_deref(), Some("Do the thing"));
    assert_eq!(list[1].status, Some(TaskStatus::Active));
    assert_eq!(list[1].claimed_by.as_deref(), Some("agent-1"));
    assert_eq!(list[1].event_count, 3);
    assert_eq!(list[2].status, None);
    assert_eq!(list[2].problem.as_ref().unwrap().code, "SPEC_TAMPERED");
}

// ---------------------------------------------------------------------------------------------
// The original's projection vectors

fn fold(events: &[(&str, &str, Value)]) -> lumenflow_kernel::tasks::Projector {
    let mut p = lumenflow_kernel::tasks::Projector::new();
    for (i, (kind, at, fields)) in events.iter().enumerate() {
        let fields = fields.as_object().cloned().unwrap_or_default();
        p.apply("WU-1726", i as u64 + 1, None, at, kind, &fields)
            .unwrap();
    }
    p
}

#[test]
fn projection_matches_the_originals_vectors() {
    // KRN-14, original/dispatch.md §8 (event-store and integration tests).
    let spec = parse_task_spec(&SourceFile::new("s.yaml", spec_yaml("WU-1726")), None).unwrap();
    let aliases = lumenflow_kernel::tasks::StateAliases::default();
    let h = json!({"spec_hash": "ab".repeat(32)});
    let p = fold(&[
        ("task_created", "2026-02-16T22:00:00.000Z", h.clone()),
        (
            "task_claimed",
            "2026-02-16T22:00:01.000Z",
            json!({"by": "a", "session_id": "s"}),
        ),
        (
            "task_blocked",
            "2026-02-16T22:00:02.000Z",
            json!({"reason": "r"}),
        ),
        ("task_unblocked", "2026-02-16T22:00:03.000Z", json!({})),
        ("task_completed", "2026-02-16T22:00:04.000Z", json!({})),
    ]);
    let s = p.state("WU-1726", &spec, &aliases);
    assert_eq!(s.status, TaskStatus::Done);
    assert_eq!(s.completed_at.as_deref(), Some("2026-02-16T22:00:04.000Z"));
    assert_eq!(s.run_count, 0);

    let p = fold(&[
        ("workspace_updated", "2026-02-16T23:00:00.000Z", json!({})),
        ("task_created", "2026-02-16T23:00:01.000Z", h.clone()),
        (
            "task_claimed",
            "2026-02-16T23:00:02.000Z",
            json!({"by": "a", "session_id": "s"}),
        ),
        (
            "run_started",
            "2026-02-16T23:00:03.000Z",
            json!({"run_id": "run-1", "by": "a", "session_id": "s"}),
        ),
        (
            "run_succeeded",
            "2026-02-16T23:00:04.000Z",
            json!({"run_id": "run-1"}),
        ),
        ("task_completed", "2026-02-16T23:00:05.000Z", json!({})),
    ]);
    let s = p.state("WU-1726", &spec, &aliases);
    assert_eq!(s.status, TaskStatus::Done);
    assert_eq!(s.run_count, 1);
    assert_eq!(s.current_run.unwrap().status, RunStatus::Succeeded);
    assert_eq!(s.completed_at.as_deref(), Some("2026-02-16T23:00:05.000Z"));

    // A run event for an unknown run makes a placeholder; an illegal log still projects.
    let p = fold(&[
        ("task_created", "2026-02-16T22:00:00.000Z", h),
        (
            "run_failed",
            "2026-02-16T22:00:01.000Z",
            json!({"run_id": "ghost", "reason": "x"}),
        ),
        ("task_completed", "2026-02-16T22:00:02.000Z", json!({})),
        (
            "task_claimed",
            "2026-02-16T22:00:03.000Z",
            json!({"by": "a", "session_id": "s"}),
        ),
    ]);
    let s = p.state("WU-1726", &spec, &aliases);
    assert_eq!(s.status, TaskStatus::Active);
    let run = s.current_run.unwrap();
    assert_eq!(
        (run.by.as_str(), run.status),
        ("unknown", RunStatus::Failed)
    );
}

// ---------------------------------------------------------------------------------------------
// Never a panic on input

mod never_panics {
    use super::*;
    use lumenflow_kernel::tasks::{is_valid_task_id, task_id_problem};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// KRN-14: any text is a spec or diagnostics, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,200}") {
            let _ = parse_task_spec(&SourceFile::new("t.yaml", text), None);
        }

        /// KRN-14: a spec with one value replaced by arbitrary YAML text.
        #[test]
        fn any_field_value_parses_or_is_refused(field in 0usize..16, value in "\\PC{0,30}") {
            let base = spec_yaml("WU-1");
            let lines: Vec<String> = base
                .lines()
                .enumerate()
                .map(|(i, l)| match l.split_once(": ") {
                    Some((k, _)) if i == field + 1 => format!("{k}: {value}"),
                    _ => l.to_string(),
                })
                .collect();
            let _ = parse_task_spec(&SourceFile::new("t.yaml", lines.join("\n")), None);
        }

        /// KRN-14: valid ids are exactly `^[A-Za-z0-9][A-Za-z0-9._-]*$` without `..`.
        #[test]
        fn task_ids_are_safe_file_names(id in "[A-Za-z0-9./_\\\\-]{0,12}") {
            let re = regex::Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]*$").unwrap();
            let expected = re.is_match(&id) && !id.contains("..");
            prop_assert_eq!(is_valid_task_id(&id), expected, "{:?}", task_id_problem(&id));
        }
    }
}
