//! `lumenflow approvals list|show|grant|deny` against the real binary (KRN-09): approvals are
//! requested through the kernel's own gate in a workspace made by `lumenflow init`, decided on the
//! command line, and the decision is what the kernel's next gate call sees.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::approvals::{
    gate, input_hash, ApprovalProvider, ApprovalRequest, Gate, GateContext, LocalApprovals,
};
use serde_json::{json, Value};
use tempfile::TempDir;

const TOOL: &str = "tenant-evidence:export";

fn lumenflow(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lumenflow"));
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("USER", "tester")
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

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(dir, &all)).unwrap()
}

/// Runs with `--json`, expects exit 1 and returns the error code.
fn fails_with(dir: &Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(dir, &all);
    assert_eq!(
        out.status.code(),
        Some(1),
        "lumenflow {}: {}\n{}",
        all.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["error"]["code"].as_str().unwrap().to_string()
}

fn workspace() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lumenflow-approvals-test-")
        .tempdir()
        .unwrap();
    ok(dir.path(), &["init", "--id", "test-ws", "--name", "Test"]);
    dir
}

fn ctx(ttl: Duration) -> GateContext {
    GateContext {
        task: Some("WU-7".into()),
        run: Some("run-7".into()),
        requested_by: "agent-7".into(),
        ttl,
        reason: "rule `ws.export.approval` requires approval".into(),
        required_ids: vec!["ws.export.approval".into()],
    }
}

/// A pending approval for `input`, requested the way dispatch does.
fn request(ws: &Path, input: Value) -> ApprovalRequest {
    let store = LocalApprovals::open(ws);
    match gate(
        &store,
        TOOL,
        &input_hash(&input),
        ctx(Duration::from_secs(3600)),
        Timestamp::now(),
    )
    .unwrap()
    {
        Gate::Required { approval, .. } => approval,
        other => panic!("{other:?}"),
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn krn09_list_grant_and_refusals() {
    let ws = workspace();
    let dir = ws.path();
    let input = json!({"bundle": "b-1"});
    let pending = request(dir, input.clone());
    let id = pending.id.as_str();

    // Listed as pending (the default), with its binding and who asked.
    let list = ok_json(dir, &["approvals", "list"]);
    assert_eq!(list["status"], "pending");
    assert_eq!(ids(&list), vec![id]);
    let a = &list["approvals"][0];
    assert_eq!(a["status"], "pending");
    assert_eq!(a["tool"], TOOL);
    assert_eq!(a["input_hash"], input_hash(&input));
    assert_eq!(a["task"], "WU-7");
    assert_eq!(a["requested_by"], "agent-7");
    assert!(a["requested_at"].is_string() && a["expires_at"].is_string());
    let human = ok(dir, &["approvals", "list"]);
    assert!(
        human.contains(id) && human.contains("pending") && human.contains("WU-7"),
        "{human}"
    );
    let short = &input_hash(&input)[..19];
    assert!(
        human.contains(short) && !human.contains(&input_hash(&input)),
        "{human}"
    );

    // `--reason` is required: clap refuses, nothing is decided.
    let out = run(dir, &["approvals", "grant", id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
    let out = run(dir, &["approvals", "deny", id]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(ids(&ok_json(dir, &["approvals", "list"])), vec![id]);
    // A blank reason is refused by the kernel.
    assert_eq!(
        fails_with(dir, &["approvals", "grant", id, "--reason", " "]),
        "INVALID_ARGUMENT"
    );

    // Grant it.
    let granted = ok_json(
        dir,
        &[
            "approvals",
            "grant",
            id,
            "--reason",
            "checked the bundle",
            "--by",
            "alice",
        ],
    );
    let a = &granted["approval"];
    assert_eq!(a["status"], "granted");
    assert_eq!(a["decision"]["outcome"], "granted");
    assert_eq!(a["decision"]["approver"], "alice");
    assert_eq!(a["decision"]["reason"], "checked the bundle");
    assert!(a["decision"]["decided_at"].is_string());

    // Now listed as granted, no longer pending.
    assert_eq!(
        ids(&ok_json(dir, &["approvals", "list", "--status", "granted"])),
        vec![id]
    );
    assert!(ids(&ok_json(dir, &["approvals", "list"])).is_empty());
    assert_eq!(
        ids(&ok_json(dir, &["approvals", "list", "--all"])),
        vec![id]
    );
    let out = run(dir, &["approvals", "list", "--all", "--status", "denied"]);
    assert_eq!(out.status.code(), Some(2));

    // A decision is final: deny (or grant again) of a granted approval is refused.
    assert_eq!(
        fails_with(
            dir,
            &["approvals", "deny", id, "--reason", "changed my mind"]
        ),
        "APPROVAL_ALREADY_DECIDED"
    );
    assert_eq!(
        fails_with(dir, &["approvals", "grant", id, "--reason", "again"]),
        "APPROVAL_ALREADY_DECIDED"
    );

    // Unknown ids (and anything that is not an id) are not found.
    for unknown in ["apr_00000000000000000000", "../workspace.yaml"] {
        assert_eq!(
            fails_with(dir, &["approvals", "show", unknown]),
            "APPROVAL_NOT_FOUND"
        );
        assert_eq!(
            fails_with(dir, &["approvals", "grant", unknown, "--reason", "x"]),
            "APPROVAL_NOT_FOUND"
        );
        assert_eq!(
            fails_with(dir, &["approvals", "deny", unknown, "--reason", "x"]),
            "APPROVAL_NOT_FOUND"
        );
    }
    let out = run(dir, &["approvals", "show", "apr_00000000000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APPROVAL_NOT_FOUND"));

    // The kernel's next gate call for the same input runs once; the one after asks again.
    let store = LocalApprovals::open(dir);
    let hash = input_hash(&input);
    let g = gate(
        &store,
        TOOL,
        &hash,
        ctx(Duration::from_secs(3600)),
        Timestamp::now(),
    )
    .unwrap();
    assert!(
        matches!(&g, Gate::Proceed { approval_id, .. } if approval_id == id),
        "{g:?}"
    );
    let g = gate(
        &store,
        TOOL,
        &hash,
        ctx(Duration::from_secs(3600)),
        Timestamp::now(),
    )
    .unwrap();
    assert!(
        matches!(
            &g,
            Gate::Required {
                newly_created: true,
                ..
            }
        ),
        "{g:?}"
    );
    assert_eq!(
        ids(&ok_json(
            dir,
            &["approvals", "list", "--status", "consumed"]
        )),
        vec![id]
    );
    assert_eq!(
        fails_with(dir, &["approvals", "deny", id, "--reason", "late"]),
        "APPROVAL_ALREADY_CONSUMED"
    );
}

#[test]
fn krn09_show_deny_default_approver_and_expiry() {
    let ws = workspace();
    let dir = ws.path();
    let pending = request(dir, json!({"n": 1}));
    let id = pending.id.as_str();

    let shown = ok_json(dir, &["approvals", "show", id]);
    let a = &shown["approval"];
    assert_eq!(a["id"], id);
    assert_eq!(a["run"], "run-7");
    assert_eq!(a["reason"], "rule `ws.export.approval` requires approval");
    assert_eq!(a["required_approval_ids"], json!(["ws.export.approval"]));
    assert!(
        a.get("input").is_none(),
        "the input itself is not stored here"
    );
    let human = ok(dir, &["approvals", "show", id]);
    assert!(
        human.contains(&pending.input_hash) && human.contains("agent-7"),
        "{human}"
    );

    // Without --by the approver is $USER.
    let denied = ok_json(dir, &["approvals", "deny", id, "--reason", "not now"]);
    assert_eq!(denied["approval"]["status"], "denied");
    assert_eq!(denied["approval"]["decision"]["approver"], "tester");
    assert_eq!(
        fails_with(dir, &["approvals", "grant", id, "--reason", "ok"]),
        "APPROVAL_ALREADY_DECIDED"
    );
    assert_eq!(
        ids(&ok_json(dir, &["approvals", "list", "--status", "denied"])),
        vec![id]
    );

    // ... and `local-operator` without $USER.
    let other = request(dir, json!({"n": 2}));
    let out = lumenflow(
        dir,
        &[
            "approvals",
            "grant",
            &other.id,
            "--reason",
            "fine",
            "--json",
        ],
    )
    .env_remove("USER")
    .output()
    .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["approval"]["decision"]["approver"], "local-operator");

    // An expired request cannot be granted: expiry is a deny.
    let store = LocalApprovals::open(dir);
    let stale = match gate(
        &store,
        TOOL,
        &input_hash(&json!({"n": 3})),
        ctx(Duration::from_secs(1)),
        Timestamp::from_unix_millis(Timestamp::now().unix_millis() - 60_000),
    )
    .unwrap()
    {
        Gate::Required { approval, .. } => approval,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        fails_with(
            dir,
            &["approvals", "grant", &stale.id, "--reason", "too late"]
        ),
        "APPROVAL_EXPIRED"
    );
    assert_eq!(
        ids(&ok_json(dir, &["approvals", "list", "--status", "expired"])),
        vec![stale.id.clone()]
    );
    assert_eq!(store.get(&stale.id).unwrap().decision, None);
}

#[test]
fn krn09_a_damaged_file_is_reported_not_granted() {
    let ws = workspace();
    let dir = ws.path();
    let good = request(dir, json!({"n": "good"}));
    let bad = request(dir, json!({"n": "bad"}));
    let store = LocalApprovals::open(dir);
    std::fs::write(store.record_path(&bad.id), b"{\"decision\": \"granted\"").unwrap();

    let list = ok_json(dir, &["approvals", "list", "--all"]);
    assert_eq!(ids(&list), vec![good.id.clone()]);
    let unreadable = list["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1);
    assert!(unreadable[0]["file"]
        .as_str()
        .unwrap()
        .ends_with(&format!("{}.json", bad.id)));
    let out = run(dir, &["approvals", "list", "--all"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&bad.id));

    assert_eq!(
        fails_with(dir, &["approvals", "show", &bad.id]),
        "APPROVAL_STORE_CORRUPT"
    );
    assert_eq!(
        fails_with(dir, &["approvals", "grant", &bad.id, "--reason", "x"]),
        "APPROVAL_STORE_CORRUPT"
    );
}

#[test]
fn krn09_approvals_need_a_workspace() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        fails_with(dir.path(), &["approvals", "list"]),
        "WORKSPACE_NOT_FOUND"
    );
    let elsewhere = dir.path().to_str().unwrap();
    assert_eq!(
        fails_with(
            dir.path(),
            &[
                "--workspace",
                elsewhere,
                "approvals",
                "show",
                "apr_00000000000000000000"
            ]
        ),
        "WORKSPACE_NOT_FOUND"
    );
    // An empty workspace lists nothing, in both renderings.
    let ws = workspace();
    assert_eq!(
        ids(&ok_json(ws.path(), &["approvals", "list"])),
        Vec::<String>::new()
    );
    assert!(ok(ws.path(), &["approvals", "list"]).contains("no pending approvals"));
}

/// `tool call`'s help follows the approval's state: while it waits, how to grant it; once the
/// call ran on it and the tool itself failed, that the approval is spent (the help used to
/// suggest granting the spent approval again).
#[test]
fn a_failed_call_on_a_spent_grant_does_not_suggest_granting_it_again() {
    let dir = workspace();
    let ws = dir.path();
    for pack in ["campus-telemetry", "tenant-evidence"] {
        ok(
            ws,
            &[
                "pack",
                "install",
                "--id",
                pack,
                "--version",
                "0.1.0",
                "--source",
                "local",
            ],
        );
    }
    // Without `approvals` in the input the tool refuses by itself, after the kernel's grant.
    let input = r#"{"tenant_id":"tenant-a","bundle_id":"b-1","records":[{"record_kind":"checkpoint","record_id":"cp-1"}]}"#;
    let call = || {
        run(
            ws,
            &[
                "tool",
                "call",
                "proof:export_attested_bundle",
                "--input",
                input,
            ],
        )
    };

    let first = call();
    let stderr = String::from_utf8_lossy(&first.stderr).to_string();
    assert_eq!(first.status.code(), Some(1), "{stderr}");
    let id = ids(&ok_json(ws, &["approvals", "list"]))
        .pop()
        .expect("a pending approval");
    assert!(
        stderr.contains(&format!("lumenflow approvals grant {id}")),
        "{stderr}"
    );

    // The operator sees what they approve: the exact input, read back from the call's evidence.
    let shown = ok(ws, &["approvals", "show", &id]);
    assert!(
        shown.contains("input:") && shown.contains("\"bundle_id\": \"b-1\""),
        "{shown}"
    );
    let shown = ok_json(ws, &["approvals", "show", &id]);
    assert_eq!(
        shown["approval"]["input"],
        serde_json::from_str::<Value>(input).unwrap()
    );

    ok(ws, &["approvals", "grant", &id, "--reason", "test"]);
    let second = call();
    let stderr = String::from_utf8_lossy(&second.stderr).to_string();
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("APPROVAL_REQUIRED"),
        "the tool's own refusal: {stderr}"
    );
    assert!(
        !stderr.contains("approvals grant"),
        "a spent approval is not offered again: {stderr}"
    );
    assert!(
        stderr.contains(&format!("the call ran on approval {id}, which is now used")),
        "{stderr}"
    );
}
