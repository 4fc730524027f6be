//! `lumenflow tool call`, `approvals` and `audit verify` end to end with the real binary, a real
//! authored pack (Python tools) and real bubblewrap (KRN-09, KRN-10, KRN-11, KRN-13).

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lumenflow")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run lumenflow")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "`lumenflow {}` failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_err(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(dir, &all);
    assert!(
        !out.status.success(),
        "`lumenflow {}` should fail",
        args.join(" ")
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document on stdout")
}

fn sandbox_available() -> bool {
    let found = Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("NOTICE: bubblewrap is not installed; .ci/run installs it. Skipping the sandboxed calls.");
    }
    found
}

const SPEC: &str = "pack_id: notes-ops\nversion: 1.0.0\ntask_types: [task]\ntemplates:\n  - template_id: file.read_text\n    tool_name: read-notes\n    scope_pattern: notes/**/*.md\n  - template_id: file.write_text\n    tool_name: write-report\n    scope_pattern: reports/**/*.md\n";

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let ws = dir.path();
    ok(ws, &["init"]);
    std::fs::write(ws.join("spec.yaml"), SPEC).expect("spec");
    ok(ws, &["pack", "author", "--spec-file", "spec.yaml"]);
    ok(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "notes-ops",
            "--source",
            "local",
            "--version",
            "1.0.0",
        ],
    );
    std::fs::create_dir_all(ws.join("notes")).expect("mkdir");
    std::fs::write(ws.join("notes/a.md"), "hello").expect("note");
    std::fs::write(ws.join("secret.md"), "top secret").expect("secret");
    dir
}

#[test]
fn sandboxed_pack_tools_run_through_the_dispatch_path_and_refuse_escapes() {
    if !sandbox_available() {
        return;
    }
    let dir = workspace();
    let ws = dir.path();
    let out = ok(
        ws,
        &[
            "tool",
            "call",
            "read-notes",
            "--input",
            r#"{"path":"notes/a.md"}"#,
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["output"]["data"]["content"], "hello");
    assert!(v["receipt_id"]
        .as_str()
        .expect("receipt")
        .starts_with("rcpt_"));

    ok(
        ws,
        &[
            "tool",
            "call",
            "write-report",
            "--input",
            r#"{"path":"reports/r.md","content":"done"}"#,
        ],
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("reports/r.md")).expect("written"),
        "done"
    );

    // Escapes: `..`, a path outside every scope, a symlink out of the scope.
    for input in [r#"{"path":"../../etc/passwd"}"#, r#"{"path":"secret.md"}"#] {
        let e = json_err(ws, &["tool", "call", "read-notes", "--input", input]);
        assert_eq!(e["output"]["error"]["code"], "SCOPE_DENIED", "{e}");
    }
    std::os::unix::fs::symlink(ws.join("secret.md"), ws.join("notes/link.md")).expect("symlink");
    let e = json_err(
        ws,
        &[
            "tool",
            "call",
            "read-notes",
            "--input",
            r#"{"path":"notes/link.md"}"#,
        ],
    );
    assert_eq!(e["output"]["error"]["code"], "SCOPE_DENIED", "{e}");
    let e = json_err(
        ws,
        &[
            "tool",
            "call",
            "write-report",
            "--input",
            r#"{"path":"notes/a.md","content":"x"}"#,
        ],
    );
    assert_eq!(e["output"]["error"]["code"], "SCOPE_DENIED", "{e}");
    assert_eq!(
        std::fs::read_to_string(ws.join("notes/a.md")).expect("note"),
        "hello"
    );

    // Every call, refused or not, is in the chain; a flipped byte is found and located.
    let verified = ok(ws, &["audit", "verify"]);
    assert!(verified.starts_with("chain ok: 12 records"), "{verified}");
    let log = ws.join(".lumenflow/kernel/events.jsonl");
    let mut bytes = std::fs::read(&log).expect("log");
    let third_line = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .map(|(i, _)| i + 10)
        .expect("line 3");
    bytes[third_line] ^= 0x01;
    std::fs::write(&log, bytes).expect("tamper");
    let e = json_err(ws, &["audit", "verify"]);
    assert!(
        e["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("line 3"),
        "{e}"
    );
    assert_eq!(e["error"]["code"], "LOG_CORRUPT", "{e}");
    assert!(
        e["error"]["help"]
            .as_str()
            .is_some_and(|h| h.contains("changed after it was written")),
        "{e}"
    );

    // A removed log is not reported as a clean chain: it cannot be told from one never written.
    std::fs::remove_file(&log).expect("remove");
    let e = json_err(ws, &["audit", "verify"]);
    assert_eq!(e["error"]["code"], "LOG_MISSING", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("or the log was removed")),
        "{e}"
    );
}

#[test]
fn approvals_gate_a_risky_tool_once_per_grant() {
    if !sandbox_available() {
        return;
    }
    let dir = workspace();
    let ws = dir.path();
    // Make the write tool risky: it now needs the `notes-ops:publish` approval.
    let manifest = ws.join("packs/notes-ops/manifest.yaml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let text = text.replacen(
        "    permission: write\n",
        "    permission: write\n    required_approvals: [notes-ops:publish]\n",
        1,
    );
    std::fs::write(&manifest, text).expect("write");
    // Re-pinning an edited pack is deliberate (KRN-04): `--force`.
    ok(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "notes-ops",
            "--source",
            "local",
            "--version",
            "1.0.0",
            "--force",
        ],
    );

    let input = r#"{"path":"reports/p.md","content":"publish me"}"#;
    let e = json_err(ws, &["tool", "call", "write-report", "--input", input]);
    assert_eq!(e["output"]["error"]["code"], "APPROVAL_REQUIRED", "{e}");
    let id = e["approval_id"].as_str().expect("approval id").to_string();
    assert!(!ws.join("reports/p.md").exists());
    let listed = ok(ws, &["approvals", "list", "--json"]);
    assert!(listed.contains(&id));
    ok(
        ws,
        &[
            "approvals",
            "grant",
            &id,
            "--reason",
            "reviewed the report",
            "--by",
            "alice",
        ],
    );
    // KRN-09, KRN-13: the decision is in the hash chain, with the name given and the login
    // that gave it, not only in the approvals folder's editable file.
    let log = std::fs::read_to_string(ws.join(".lumenflow/kernel/events.jsonl")).expect("log");
    let decided: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["kind"] == "approval_decided")
        .expect("an approval_decided record");
    assert_eq!(decided["approval_id"], id.as_str());
    assert_eq!(decided["decision"], "granted");
    assert_eq!(decided["approver"], "alice");
    assert_eq!(decided["reason"], "reviewed the report");
    assert!(
        decided["decided_as"]
            .as_str()
            .is_some_and(|s| s.starts_with("os:")),
        "{decided}"
    );
    ok(ws, &["tool", "call", "write-report", "--input", input]);
    assert_eq!(
        std::fs::read_to_string(ws.join("reports/p.md")).expect("written"),
        "publish me"
    );
    // The grant was consumed: the same call asks again.
    let e = json_err(ws, &["tool", "call", "write-report", "--input", input]);
    assert_eq!(e["output"]["error"]["code"], "APPROVAL_REQUIRED");
    assert_ne!(e["approval_id"].as_str(), Some(id.as_str()));
}

#[test]
fn a_task_narrows_its_calls_and_a_finished_task_runs_nothing() {
    if !sandbox_available() {
        return;
    }
    let dir = workspace();
    let ws = dir.path();
    let ws_id = ok(ws, &["config", "get", "--key", "memory_namespace"])
        .trim()
        .to_string();
    std::fs::write(
        ws.join("task.yaml"),
        format!(
            "id: WU-7\nworkspace_id: {ws_id}\nlane_id: default\ndomain: notes-ops\ntitle: Read the notes\ndescription: Read one note.\nacceptance: [the note is read]\ndeclared_scopes:\n  - {{type: path, pattern: \"notes/**\", access: read}}\nrisk: low\ntype: task\npriority: P2\ncreated: 2026-11-21\n"
        ),
    )
    .expect("task spec");
    ok(ws, &["task", "create", "--spec", "task.yaml"]);
    // Not claimed yet: no tool call may run for it.
    let e = json_err(
        ws,
        &[
            "tool",
            "call",
            "read-notes",
            "--task",
            "WU-7",
            "--input",
            r#"{"path":"notes/a.md"}"#,
        ],
    );
    assert_eq!(e["output"]["error"]["code"], "TASK_NOT_ACTIVE", "{e}");
    ok(ws, &["task", "claim", "WU-7"]);
    ok(
        ws,
        &[
            "tool",
            "call",
            "read-notes",
            "--task",
            "WU-7",
            "--input",
            r#"{"path":"notes/a.md"}"#,
        ],
    );
    ok(ws, &["task", "complete", "WU-7"]);
    let e = json_err(
        ws,
        &[
            "tool",
            "call",
            "read-notes",
            "--task",
            "WU-7",
            "--input",
            r#"{"path":"notes/a.md"}"#,
        ],
    );
    assert_eq!(e["output"]["error"]["code"], "TASK_NOT_ACTIVE", "{e}");
    let e = json_err(
        ws,
        &[
            "tool",
            "call",
            "read-notes",
            "--task",
            "WU-404",
            "--input",
            r#"{"path":"notes/a.md"}"#,
        ],
    );
    assert_eq!(e["output"]["error"]["code"], "TASK_NOT_FOUND", "{e}");
    let log = ok(ws, &["events", "log", "--task", "WU-7", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log).expect("json");
    let kinds: Vec<&str> = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    for kind in [
        "task_created",
        "task_claimed",
        "run_started",
        "tool_call_started",
        "tool_call_finished",
        "task_completed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}

// KRN-13: an edit of the newest record is refused at open and kept, not cut as if a crash had
// torn it (which erased a succeeded call and left `audit verify` saying "chain ok"); records cut
// off the end at a line boundary are found through the position the runtime remembered.
#[test]
fn the_newest_record_edited_or_records_cut_off_are_reported_not_erased() {
    let dir = workspace();
    let ws = dir.path();
    let call = [
        "tool",
        "call",
        "read-notes",
        "--input",
        r#"{"path":"notes/a.md"}"#,
    ];
    for _ in 0..3 {
        ok(ws, &call);
    }
    let log = ws.join(".lumenflow/kernel/events.jsonl");
    let pristine = std::fs::read_to_string(&log).expect("log");

    // The newest record says the call failed instead.
    let edited = {
        let mut lines: Vec<&str> = pristine.lines().collect();
        let last = lines.pop().expect("a record");
        assert!(last.contains(r#""result":"success""#), "{last}");
        let changed = last.replace(r#""result":"success""#, r#""result":"failure""#);
        format!("{}\n{changed}\n", lines.join("\n"))
    };
    std::fs::write(&log, &edited).expect("edit");
    let e = json_err(ws, &call);
    assert_eq!(e["error"]["code"], "LOG_CORRUPT", "{e}");
    assert!(
        e["error"]["help"]
            .as_str()
            .is_some_and(|h| h.contains("audit verify")),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        edited,
        "the edited record is kept for investigation"
    );
    assert_eq!(
        json_err(ws, &["audit", "verify"])["error"]["code"],
        "LOG_CORRUPT"
    );

    // Records cut off at a line boundary: the chain that is left holds, but it is shorter than
    // the runtime saw it when it last started (the third call's start remembered seq 4).
    let kept: Vec<&str> = pristine.lines().collect();
    assert_eq!(kept.len(), 6);
    let shorter = format!("{}\n", kept[..3].join("\n"));
    std::fs::write(&log, &shorter).expect("cut");
    let e = json_err(ws, &["audit", "verify"]);
    assert_eq!(e["error"]["code"], "LOG_SHORTENED", "{e}");
    assert!(
        e["error"]["help"]
            .as_str()
            .is_some_and(|h| h.contains("remove `.lumenflow/kernel/reconciled.json`")),
        "{e}"
    );
    assert_eq!(json_err(ws, &call)["error"]["code"], "LOG_SHORTENED");
    // Made to look like a crash (a fragment after the cut), it is still a shortened log.
    std::fs::write(&log, format!("{shorter}{{\"seq\":4,\"prev")).expect("fragment");
    assert_eq!(
        json_err(ws, &["audit", "verify"])["error"]["code"],
        "LOG_SHORTENED"
    );
    // An emptied log too.
    std::fs::write(&log, "").expect("empty");
    assert_eq!(
        json_err(ws, &["audit", "verify"])["error"]["code"],
        "LOG_SHORTENED"
    );

    // Restored whole, everything works again.
    std::fs::write(&log, &pristine).expect("restore");
    ok(ws, &call);
    assert!(ok(ws, &["audit", "verify"]).starts_with("chain ok"));
}

// walk-F F-10 (KRN-12, KRN-13): `audit verify` said "chain ok" for a backup restored without
// `kernel/evidence/`. It now checks that every `input_ref`/`output_ref` is in the store and
// hashes to its digest, and names the first receipt that cannot be proven, with its line.
#[test]
fn audit_verify_checks_the_evidence_receipts_point_to() {
    let dir = workspace();
    let ws = dir.path();
    ok(
        ws,
        &[
            "tool",
            "call",
            "read-notes",
            "--input",
            r#"{"path":"notes/a.md"}"#,
        ],
    );
    let said = ok(ws, &["audit", "verify"]);
    assert!(said.contains("evidence ok: 2 references"), "{said}");
    // walk-G F14: plain `lumenflow audit` verifies instead of printing help with status 2.
    assert_eq!(ok(ws, &["audit"]), said);

    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(ws.join(".lumenflow/kernel/events.jsonl"))
            .expect("log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
    let (line, started) = records
        .iter()
        .enumerate()
        .find(|(_, r)| r["kind"] == "tool_call_started")
        .expect("a started receipt");
    let blob = ws
        .join(".lumenflow/kernel/evidence")
        .join(started["input_ref"].as_str().expect("input_ref"));
    let kept = std::fs::read(&blob).expect("blob");

    std::fs::remove_file(&blob).expect("rm");
    let e = json_err(ws, &["audit", "verify"]);
    assert_eq!(e["error"]["code"], "EVIDENCE_MISSING", "{e}");
    let message = e["error"]["message"].as_str().expect("message");
    let receipt = started["receipt_id"].as_str().expect("receipt");
    assert!(
        message.contains(&format!("line {}", line + 1))
            && message.contains(receipt)
            && message.contains("input_ref"),
        "{message}"
    );

    std::fs::write(&blob, b"{\"path\":\"secret.md\"}").expect("alter");
    let e = json_err(ws, &["audit", "verify"]);
    assert_eq!(e["error"]["code"], "EVIDENCE_MISMATCH", "{e}");

    std::fs::write(&blob, kept).expect("restore");
    assert!(ok(ws, &["audit", "verify"]).contains("evidence ok"));
}

// walk-F F-11 (KRN-13): a last line without its newline (a crash during a write) is reported
// as an interrupted write with its own code and exit status 3, not as tampering; the next call
// cuts it and `audit verify` passes again.
#[test]
fn audit_verify_tells_a_torn_last_line_from_tampering() {
    let dir = workspace();
    let ws = dir.path();
    let call = [
        "tool",
        "call",
        "read-notes",
        "--input",
        r#"{"path":"notes/a.md"}"#,
    ];
    ok(ws, &call);
    let log = ws.join(".lumenflow/kernel/events.jsonl");
    let records = std::fs::read_to_string(&log).expect("log").lines().count();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    std::io::Write::write_all(&mut f, br#"{"seq":99,"kind":"tool_call_sta"#).expect("torn");
    drop(f);

    let out = run(ws, &["audit", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(3), "a distinct exit status");
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(e["error"]["code"], "LOG_TORN_TAIL", "{e}");
    let message = e["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("line {} is an interrupted write", records + 1))
            && message.contains(&format!("the {records} records before it verify")),
        "{message}"
    );
    let help = e["error"]["help"].as_str().expect("help");
    assert!(
        help.contains("cuts the fragment") && !help.contains("changed after it was written"),
        "{help}"
    );

    ok(ws, &call);
    assert!(ok(ws, &["audit", "verify"]).starts_with("chain ok"));
}
