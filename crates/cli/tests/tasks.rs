//! `lumenflow task ...` against the real binary in a workspace made by `lumenflow init` (KRN-14).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("USER", "tester")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "lumenflow {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A failing `--json` command: exit code 1 and the error document on stdout.
fn err_json(dir: &Path, args: &[&str]) -> Value {
    let out = run(dir, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "lumenflow {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["error"].clone()
}

const SPEC: &str = "# The first task.
id: WU-1
workspace_id: test-ws
lane_id: default
domain: software-delivery
title: Write the report
description: A short report.
acceptance:
  - the report exists
declared_scopes:
  - type: path
    pattern: \"reports/**\"
    access: write
risk: low
type: docs
priority: P2
created: 2026-04-20
";

fn workspace() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lumenflow-tasks-test-")
        .tempdir()
        .unwrap();
    ok_json(
        dir.path(),
        &["--json", "init", "--id", "test-ws", "--name", "Test"],
    );
    std::fs::write(dir.path().join("task.yaml"), SPEC).unwrap();
    dir
}

#[test]
fn create_claim_show_complete_and_a_second_claim_is_refused() {
    // KRN-14: the task lifecycle through the real binary.
    let ws = workspace();
    let dir = ws.path();

    let created = ok_json(dir, &["--json", "task", "create", "--spec", "task.yaml"]);
    assert_eq!(created["task_id"], "WU-1");
    assert_eq!(created["state"]["status"], "ready");
    let spec_hash = created["spec_hash"].as_str().unwrap();
    assert_eq!(spec_hash.len(), 64);
    assert_eq!(created["event"]["kind"], "task_created");
    assert!(dir.join(".lumenflow/kernel/tasks/WU-1.yaml").is_file());

    let claimed = ok_json(
        dir,
        &["--json", "task", "claim", "WU-1", "--session", "sess-1"],
    );
    assert_eq!(claimed["state"]["status"], "active");
    assert_eq!(
        claimed["state"]["claimed_by"], "tester",
        "default --by is $USER"
    );
    let events = claimed["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["kind"], "task_claimed");
    assert_eq!(events[1]["kind"], "run_started");
    assert_eq!(events[0]["timestamp"], events[1]["timestamp"]);
    let run_id = events[1]["fields"]["run_id"].as_str().unwrap().to_string();
    assert!(run_id.starts_with("run-WU-1-1-"), "{run_id}");

    let shown = ok_json(dir, &["--json", "task", "show", "WU-1"]);
    assert_eq!(shown["state"]["status"], "active");
    assert_eq!(shown["state"]["spec_hash"], spec_hash);
    assert_eq!(shown["current_run"]["run_id"], run_id.as_str());
    assert_eq!(shown["current_run"]["status"], "executing");
    assert_eq!(shown["current_run"]["session_id"], "sess-1");
    assert_eq!(shown["run_history"].as_array().unwrap().len(), 1);
    let kinds: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["task_created", "task_claimed", "run_started"]);
    assert_eq!(shown["spec"]["title"], "Write the report");

    let blocked = ok_json(
        dir,
        &["--json", "task", "block", "WU-1", "--reason", "needs data"],
    );
    assert_eq!(blocked["state"]["status"], "blocked");
    assert_eq!(blocked["state"]["blocked_reason"], "needs data");
    let unblocked = ok_json(dir, &["--json", "task", "unblock", "WU-1"]);
    assert_eq!(unblocked["state"]["status"], "active");

    let completed = ok_json(
        dir,
        &[
            "--json",
            "task",
            "complete",
            "WU-1",
            "--evidence",
            "reports/summary.md",
            "--evidence",
            "reports/data.csv",
        ],
    );
    assert_eq!(completed["state"]["status"], "done");
    let events = completed["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["run_succeeded", "task_completed"]);
    assert_eq!(
        events[1]["fields"]["evidence_refs"],
        serde_json::json!(["reports/summary.md", "reports/data.csv"])
    );
    assert_eq!(completed["state"]["current_run"]["status"], "succeeded");

    // A second claim of a done task: exit 1 and the code.
    let err = err_json(dir, &["--json", "task", "claim", "WU-1"]);
    assert_eq!(err["code"], "TASK_ILLEGAL_TRANSITION");
    assert!(
        err["message"].as_str().unwrap().starts_with(
            "Illegal state transition for WU-1: done -> active (done is a terminal state)"
        ),
        "{err}"
    );
    // The same without --json: exit 1, the code on stderr.
    let out = run(dir, &["task", "claim", "WU-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TASK_ILLEGAL_TRANSITION"));

    let list = ok_json(dir, &["--json", "task", "list"]);
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["task_id"], "WU-1");
    assert_eq!(tasks[0]["status"], "done");

    // Human output names the task and its state.
    let out = run(dir, &["task", "show", "WU-1"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("WU-1  Write the report"), "{text}");
    assert!(text.contains("status:    done"), "{text}");
    assert!(text.contains(&run_id), "{text}");
}

#[test]
fn errors_carry_codes_and_spec_errors_name_file_line_and_field() {
    // KRN-14: TASK_EXISTS, TASK_NOT_FOUND, and spec diagnostics with file/line/field.
    let ws = workspace();
    let dir = ws.path();
    ok_json(dir, &["--json", "task", "create", "--spec", "task.yaml"]);
    let err = err_json(dir, &["--json", "task", "create", "--spec", "task.yaml"]);
    assert_eq!(err["code"], "TASK_EXISTS");
    assert_eq!(
        err["message"],
        "Task spec already exists for WU-1 and is immutable."
    );

    let err = err_json(dir, &["--json", "task", "show", "WU-404"]);
    assert_eq!(err["code"], "TASK_NOT_FOUND");
    let err = err_json(dir, &["--json", "task", "unblock", "WU-1"]);
    assert_eq!(err["code"], "TASK_ILLEGAL_TRANSITION");

    let bad = SPEC
        .replace("id: WU-1", "id: WU-2")
        .replace("priority: P2", "prio: P2");
    std::fs::write(dir.join("bad.yaml"), bad).unwrap();
    let err = err_json(dir, &["--json", "task", "create", "--spec", "bad.yaml"]);
    assert_eq!(err["code"], "TASK_SPEC_INVALID");
    let d = &err["diagnostics"][0];
    assert_eq!(d["file"], "bad.yaml");
    assert_eq!(d["line"], 16);
    assert_eq!(d["field"], "prio");
    assert!(d["message"]
        .as_str()
        .unwrap()
        .contains("unknown field `prio`"));
    assert!(d["help"]
        .as_str()
        .unwrap()
        .starts_with("did you mean `priority`?"));
    assert!(!dir.join(".lumenflow/kernel/tasks/WU-2.yaml").exists());

    // Without --json the line is shown under the file name.
    let out = run(dir, &["task", "create", "--spec", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml:16"), "{stderr}");

    let err = err_json(dir, &["--json", "task", "create", "--spec", "missing.yaml"]);
    assert_eq!(err["code"], "FILE_NOT_READABLE");
}

#[test]
fn a_workspace_policy_deny_refuses_the_claim() {
    // KRN-14, KRN-08: on_claim deny from workspace.yaml `policies:`.
    let ws = workspace();
    let dir = ws.path();
    let path = dir.join("workspace.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "policies:\n  rules:\n    - id: ws.freeze\n      trigger: on_claim\n      decision: deny\n      reason: release freeze\n",
    );
    std::fs::write(&path, text).unwrap();
    ok_json(dir, &["--json", "task", "create", "--spec", "task.yaml"]);
    let err = err_json(dir, &["--json", "task", "claim", "WU-1"]);
    assert_eq!(err["code"], "POLICY_DENIED");
    assert_eq!(
        err["message"],
        "Policy denied claim for WU-1: release freeze (ws.freeze)"
    );
    let shown = ok_json(dir, &["--json", "task", "show", "WU-1"]);
    assert_eq!(shown["state"]["status"], "ready");
}
