//! The one dispatch path (KRN-10) and the attacks it must refuse, each with a receipt.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::{
    ApprovalAsk, ApprovalGate, ApprovalRefusal, BuiltinFn, CallRequest, EvidenceStore,
    Implementation, RegisteredTool, Runtime, Surface, TaskFacts, TaskGate, ToolRegistry,
    RECONCILED_FILE,
};
use lumenflow_kernel::eventlog::{self, ReplayFilter};
use lumenflow_kernel::manifest::parse_manifest;
use lumenflow_kernel::workspace::parse_workspace;
use serde_json::{json, Value};

mod notes_pack;

use notes_pack::{PACK, WS};

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    runtime: Runtime,
    calls: Arc<AtomicUsize>,
}

fn counting(calls: Arc<AtomicUsize>, out: Value) -> BuiltinFn {
    Arc::new(move |_call: &lumenflow_kernel::dispatch::BuiltinCall<'_>| {
        calls.fetch_add(1, Ordering::SeqCst);
        ToolOutput::ok(out.clone())
    })
}

fn fixture(extra_ws: &str) -> Fixture {
    let (dir, root) = notes_pack::workspace_dir();
    let calls = Arc::new(AtomicUsize::new(0));
    let runtime = notes_pack::runtime(&root, extra_ws, |tool| {
        let data = if tool == "notes:write" {
            json!({"bytes": 3})
        } else {
            json!({"ok": true})
        };
        counting(calls.clone(), data)
    });
    Fixture {
        _dir: dir,
        root,
        runtime,
        calls,
    }
}

fn call(f: &Fixture, tool: &str, input: Value) -> lumenflow_kernel::dispatch::CallOutcome {
    f.runtime.dispatch(CallRequest::local(tool, input))
}

/// The finished receipt of a call, checking the chain still verifies.
fn finished(f: &Fixture, receipt_id: &str) -> serde_json::Map<String, Value> {
    let records = f.runtime.receipts(receipt_id).expect("receipts");
    assert_eq!(records.len(), 2, "a started and a finished receipt");
    assert_eq!(records[0].kind, "tool_call_started");
    eventlog::verify(&eventlog::default_path(&f.root)).expect("chain verifies");
    records[1].fields.clone()
}

fn assert_refused(f: &Fixture, out: &lumenflow_kernel::dispatch::CallOutcome, code: &str) {
    assert!(!out.output.success, "{out:?}");
    assert_eq!(out.output.error_code(), Some(code), "{:?}", out.output);
    let fin = finished(f, &out.receipt_id);
    assert_eq!(fin["error_code"], code);
    assert_ne!(fin["result"], "success");
}

#[test]
fn an_allowed_call_runs_once_with_durable_receipts() {
    let f = fixture("");
    let out = call(&f, "notes:read", json!({"path": "reports/a.md"}));
    assert!(out.output.success, "{out:?}");
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    let fin = finished(&f, &out.receipt_id);
    assert_eq!(fin["result"], "success");
    let started = &f.runtime.receipts(&out.receipt_id).expect("r")[0].fields;
    let input_ref = started["input_ref"].as_str().expect("ref");
    assert_eq!(
        f.runtime.evidence.get(input_ref).expect("cas"),
        json!({"path": "reports/a.md"})
    );
    assert!(started["input_hash"]
        .as_str()
        .expect("hash")
        .starts_with("sha256:"));
}

#[test]
fn writes_outside_the_effective_scope_are_refused() {
    let f = fixture("");
    let out = call(
        &f,
        "notes:write",
        json!({"path": "secrets/prod.env", "content": "x"}),
    );
    assert_refused(&f, &out, "SCOPE_DENIED");
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn dot_dot_and_absolute_paths_in_input_are_refused() {
    let f = fixture("");
    for path in [
        "reports/../secrets/prod.env",
        "/etc/passwd",
        "reports/../../outside",
    ] {
        let out = call(&f, "notes:write", json!({"path": path}));
        assert_refused(&f, &out, "SCOPE_DENIED");
    }
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn symlink_escapes_are_refused() {
    let f = fixture("");
    std::os::unix::fs::symlink(f.root.join("secrets"), f.root.join("reports/link"))
        .expect("symlink");
    let out = call(&f, "notes:write", json!({"path": "reports/link/prod.env"}));
    assert_refused(&f, &out, "SCOPE_DENIED");
    assert!(out.output.error.expect("err").message.contains("symlink"));
    let outside = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::symlink(outside.path(), f.root.join("reports/out")).expect("symlink");
    let out = call(&f, "notes:write", json!({"path": "reports/out/x.md"}));
    assert_refused(&f, &out, "SCOPE_DENIED");
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn dangling_and_chained_symlink_escapes_are_refused() {
    // KRN-11: a write through a dangling symlink creates its target, so the target is what the
    // scopes must allow; chains and `..` inside link targets are followed too.
    let f = fixture("");
    let outside = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::symlink(
        outside.path().join("not-yet/created.md"),
        f.root.join("reports/dangling.md"),
    )
    .expect("symlink");
    let out = call(&f, "notes:write", json!({"path": "reports/dangling.md"}));
    assert_refused(&f, &out, "SCOPE_DENIED");
    std::os::unix::fs::symlink("../secrets", f.root.join("reports/up")).expect("symlink");
    std::os::unix::fs::symlink("up/prod.env", f.root.join("reports/chain")).expect("symlink");
    let out = call(&f, "notes:write", json!({"path": "reports/chain"}));
    assert_refused(&f, &out, "SCOPE_DENIED");
    std::os::unix::fs::symlink("loop-b", f.root.join("reports/loop-a")).expect("symlink");
    std::os::unix::fs::symlink("loop-a", f.root.join("reports/loop-b")).expect("symlink");
    let out = call(&f, "notes:write", json!({"path": "reports/loop-a"}));
    assert_refused(&f, &out, "SCOPE_DENIED");
    assert!(out.output.error.expect("err").message.contains("symlinks"));
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
    // A link that stays inside the scopes is followed and allowed.
    std::fs::create_dir_all(f.root.join("reports/real")).expect("dir");
    std::os::unix::fs::symlink("real", f.root.join("reports/alias")).expect("symlink");
    let out = call(&f, "notes:write", json!({"path": "reports/alias/new.md"}));
    assert!(out.output.success, "{out:?}");
}

#[test]
fn reading_a_path_no_layer_allows_is_refused() {
    // The lane of a task narrows reads; without the task the workspace layer applies.
    let f = fixture("");
    let out = call(&f, "notes:read", json!({"path": "../elsewhere"}));
    assert_refused(&f, &out, "SCOPE_DENIED");
}

#[test]
fn writes_under_lumenflow_are_reserved_except_the_packs_state_folder() {
    let f = fixture("");
    let out = call(&f, "notes:kernel-write", json!({}));
    assert_refused(&f, &out, "SCOPE_DENIED");
    assert!(out.output.error.expect("err").message.contains("reserved"));
    let out = call(
        &f,
        "notes:state",
        json!({"path": ".lumenflow/state/notes-pack/cache.json"}),
    );
    assert!(out.output.success, "{out:?}");
    let out = call(
        &f,
        "notes:state",
        json!({"path": ".lumenflow/kernel/events.jsonl"}),
    );
    assert_refused(&f, &out, "SCOPE_DENIED");
}

#[test]
fn full_network_under_a_workspace_allowlist_is_denied_not_downgraded() {
    let f = fixture("");
    let out = call(&f, "notes:fetch", json!({}));
    assert_refused(&f, &out, "SCOPE_DENIED");
    let started = &f.runtime.receipts(&out.receipt_id).expect("r")[0].fields;
    assert!(
        started["scope_notes"]
            .to_string()
            .contains("full network requested under an allowlist"),
        "{started:?}"
    );
}

#[test]
fn network_under_posture_off_is_refused() {
    let ws = WS.replace(
        "{type: network, posture: allowlist, allowlist_entries: [\"api.example.com:443\"]}",
        "{type: network, posture: \"off\"}",
    );
    let f = {
        let mut f = fixture("");
        let doc = parse_workspace(SourceFile::new("workspace.yaml", ws), &f.root).expect("ws");
        f.runtime.spec = doc.spec;
        f
    };
    let out = call(&f, "notes:fetch", json!({}));
    assert_refused(&f, &out, "SCOPE_DENIED");
}

#[test]
fn policy_denies_and_evaluation_errors_fail_closed() {
    let f = fixture(
        "policies:\n  rules:\n    - id: ws.no-drafts\n      trigger: on_tool_request\n      decision: deny\n      reason: drafts are private\n      when:\n        tool: \"notes:*\"\n        input:\n          /path: {starts_with: reports/drafts/}\n",
    );
    let out = call(&f, "notes:read", json!({"path": "reports/drafts/x.md"}));
    assert_refused(&f, &out, "POLICY_DENIED");
    assert!(out
        .policy_decisions
        .iter()
        .any(|d| d.policy_id == "ws.no-drafts"));
    let out = call(&f, "notes:read", json!({"path": "reports/ok.md"}));
    assert!(out.output.success, "{out:?}");
    // The condition needs `/path`; an input without it cannot be evaluated: deny, with a reason.
    let out = call(&f, "notes:write", json!({"content": "x"}));
    assert_refused(&f, &out, "POLICY_DENIED");
    assert!(
        out.policy_decisions
            .iter()
            .any(|d| d.policy_id == "kernel.policy.evaluation-error"),
        "{:?}",
        out.policy_decisions
    );
}

#[test]
fn invalid_input_unknown_and_internal_tools_leave_receipts() {
    let f = fixture("");
    let out = call(&f, "notes:read", json!({"path": ""}));
    assert_refused(&f, &out, "INVALID_INPUT");
    let out = call(&f, "notes:read", json!("not an object"));
    assert_refused(&f, &out, "INVALID_INPUT");
    let out = call(&f, "notes:nope", json!({}));
    assert_refused(&f, &out, "TOOL_NOT_FOUND");
    let mut remote = CallRequest::local("notes:internal", json!({}));
    remote.surface = Surface::Http;
    let out = f.runtime.dispatch(remote);
    assert_refused(&f, &out, "TOOL_NOT_FOUND");
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
}

struct Gate(std::sync::Mutex<Vec<String>>);

impl ApprovalGate for Gate {
    fn gate(&self, ask: ApprovalAsk<'_>) -> Result<String, ApprovalRefusal> {
        let mut granted = self.0.lock().expect("lock");
        match granted.iter().position(|h| h == ask.input_hash) {
            Some(i) => Ok(format!("apr_{}", granted.remove(i))),
            None => Err(ApprovalRefusal {
                code: "APPROVAL_REQUIRED".into(),
                message: format!(
                    "Tool execution requires human approval: {}",
                    ask.required_approval_ids.join(", ")
                ),
                approval_id: Some("apr_pending".into()),
            }),
        }
    }
}

#[test]
fn required_approvals_block_until_a_bound_grant_exists() {
    let mut f = fixture("");
    let out = call(&f, "notes:risky", json!({"path": "reports/a.md"}));
    assert_refused(&f, &out, "APPROVAL_REQUIRED");
    let hash = f.runtime.receipts(&out.receipt_id).expect("r")[0].fields["input_hash"]
        .as_str()
        .expect("h")
        .to_string();
    f.runtime.approvals = Some(Arc::new(Gate(std::sync::Mutex::new(vec![hash]))));
    let out = call(&f, "notes:risky", json!({"path": "reports/a.md"}));
    assert!(out.output.success, "{out:?}");
    assert!(out.approval_id.is_some());
    // The grant was for this input once: a second call, or other input, asks again.
    assert_refused(
        &f,
        &call(&f, "notes:risky", json!({"path": "reports/a.md"})),
        "APPROVAL_REQUIRED",
    );
    assert_refused(
        &f,
        &call(&f, "notes:risky", json!({"path": "reports/b.md"})),
        "APPROVAL_REQUIRED",
    );
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
}

struct Tasks(HashMap<String, Result<TaskFacts, (String, String)>>);

impl TaskGate for Tasks {
    fn check_callable(&self, id: &str) -> Result<TaskFacts, (String, String)> {
        self.0.get(id).cloned().unwrap_or_else(|| {
            Err((
                "TASK_NOT_FOUND".into(),
                format!("task `{id}` does not exist"),
            ))
        })
    }
}

#[test]
fn calls_for_unknown_or_finished_tasks_are_refused_and_task_scopes_narrow() {
    let mut f = fixture("");
    let mut tasks = HashMap::new();
    tasks.insert(
        "T-1".to_string(),
        Err((
            "TASK_NOT_ACTIVE".to_string(),
            "task `T-1` is done".to_string(),
        )),
    );
    tasks.insert(
        "T-2".to_string(),
        Ok(TaskFacts {
            lane_id: "core".into(),
            declared_scopes: vec![lumenflow_contracts::scope::ToolScope::path(
                "reports/public/**",
                lumenflow_contracts::scope::PathAccess::Write,
            )],
            run_id: None,
        }),
    );
    f.runtime.tasks = Some(Arc::new(Tasks(tasks)));
    for (task, code) in [("T-1", "TASK_NOT_ACTIVE"), ("T-9", "TASK_NOT_FOUND")] {
        let mut req = CallRequest::local("notes:write", json!({"path": "reports/a.md"}));
        req.task_id = Some(task.into());
        assert_refused(&f, &f.runtime.dispatch(req), code);
    }
    let mut req = CallRequest::local("notes:write", json!({"path": "reports/a.md"}));
    req.task_id = Some("T-2".into());
    assert_refused(&f, &f.runtime.dispatch(req), "SCOPE_DENIED");
    let mut req = CallRequest::local("notes:write", json!({"path": "reports/public/a.md"}));
    req.task_id = Some("T-2".into());
    let out = f.runtime.dispatch(req);
    assert!(out.output.success && out.scope_narrowed, "{out:?}");
}

#[test]
fn invalid_output_is_caught_and_a_crash_is_reconciled() {
    let mut f = fixture("");
    let manifest = f.runtime.registry.get("notes:write").expect("tool").clone();
    let mut registry = ToolRegistry::new();
    registry
        .register(RegisteredTool {
            implementation: Implementation::Builtin(Arc::new(
                |_c: &lumenflow_kernel::dispatch::BuiltinCall<'_>| {
                    ToolOutput::ok(json!({"bytes": "three"}))
                },
            )),
            ..manifest
        })
        .expect("register");
    f.runtime.registry = registry;
    let out = call(&f, "notes:write", json!({"path": "reports/a.md"}));
    assert_refused(&f, &out, "INVALID_OUTPUT");

    // A started receipt without its finish (the process died mid-call) becomes `crashed`.
    let mut started = serde_json::Map::new();
    started.insert("kind".into(), "tool_call_started".into());
    started.insert("receipt_id".into(), "rcpt_dead".into());
    f.runtime.log.append(started).expect("append");
    assert_eq!(f.runtime.reconcile_crashed().expect("reconcile"), 1);
    let fin = finished(&f, "rcpt_dead");
    assert_eq!(fin["result"], "crashed");
    assert_eq!(f.runtime.reconcile_crashed().expect("again"), 0);

    // While another runtime lives (a `lumenflow tool call` beside a running sidecar, or as here
    // a second runtime of this process), an open receipt may be its call still running: no
    // runtime closes it until one is alone in the workspace.
    let doc = parse_workspace(SourceFile::new("workspace.yaml", WS.to_string()), &f.root)
        .expect("workspace");
    let other = Runtime::new(
        &f.root,
        &doc,
        ToolRegistry::new(),
        vec![],
        f.runtime.log.clone(),
        EvidenceStore::open(&f.root.join(".lumenflow/kernel/evidence")).expect("evidence"),
    );
    let mut running = serde_json::Map::new();
    running.insert("kind".into(), "tool_call_started".into());
    running.insert("receipt_id".into(), "rcpt_running".into());
    f.runtime.log.append(running).expect("append");
    assert_eq!(other.reconcile_crashed().expect("not alone"), 0);
    assert_eq!(f.runtime.reconcile_crashed().expect("not alone"), 0);
    assert!(f
        .runtime
        .log
        .replay(&ReplayFilter::all())
        .expect("replay")
        .records
        .iter()
        .all(
            |r| r.fields.get("receipt_id").and_then(Value::as_str) != Some("rcpt_running")
                || r.kind == "tool_call_started"
        ));
    // The skipped conversion kept this runtime's share of the lock: alone again, it reconciles.
    drop(other);
    assert_eq!(f.runtime.reconcile_crashed().expect("alone"), 1);
    assert_eq!(finished(&f, "rcpt_running")["result"], "crashed");
}

#[test]
fn reconciliation_resumes_after_the_position_it_remembered() {
    // KRN-12 at every runtime start without rescanning the whole log: the position scanned to
    // is remembered, trusted only while the line before it still has the same seq and hash.
    let f = fixture("");
    let log_path = eventlog::default_path(&f.root);
    let remembered = f.root.join(".lumenflow/kernel").join(RECONCILED_FILE);
    let start = |id: &str| {
        let mut started = serde_json::Map::new();
        started.insert("kind".into(), "tool_call_started".into());
        started.insert("receipt_id".into(), id.into());
        f.runtime.log.append(started).expect("append");
    };
    let last_line = || {
        let bytes = fs::read(&log_path).expect("log");
        let end = bytes.len();
        let line_start = bytes[..end - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let line: Value = serde_json::from_slice(&bytes[line_start..end - 1]).expect("line");
        (line_start, end, line)
    };

    start("rcpt_a");
    assert_eq!(f.runtime.reconcile_crashed().expect("first"), 1);
    let through: Value =
        serde_json::from_slice(&fs::read(&remembered).expect("remembered")).expect("json");
    // The scan's end, before the crashed finish it appended.
    assert!(through["end"].as_u64().expect("end") < fs::metadata(&log_path).expect("m").len());

    // A call started after the position is found.
    start("rcpt_b");
    assert_eq!(f.runtime.reconcile_crashed().expect("second"), 1);
    assert_eq!(finished(&f, "rcpt_b")["result"], "crashed");

    // What lies before the position is not read again: a position that claims the whole log
    // (with its real last line) leaves an open receipt before it alone.
    start("rcpt_hidden");
    let (line_start, end, line) = last_line();
    let claim = |hash: &Value| {
        serde_json::to_vec(&json!({
            "line_start": line_start, "end": end, "seq": line["seq"], "hash": hash,
        }))
        .expect("json")
    };
    fs::write(&remembered, claim(&line["hash"])).expect("write");
    assert_eq!(f.runtime.reconcile_crashed().expect("bounded"), 0);

    // A position whose line no longer matches means records were removed or the log replaced:
    // refused, since the chain alone cannot show it. Removing the position (an older log
    // restored on purpose) accepts the log with a full scan.
    fs::write(&remembered, claim(&json!("0".repeat(64)))).expect("write");
    let err = f.runtime.reconcile_crashed().expect_err("shortened");
    assert_eq!(err.code(), "LOG_SHORTENED");
    assert!(err.to_string().contains("reconciled.json"), "{err}");
    assert!(lumenflow_kernel::dispatch::check_position(&log_path).is_err());
    fs::remove_file(&remembered).expect("accept the log");
    assert_eq!(f.runtime.reconcile_crashed().expect("full"), 1);
    assert_eq!(finished(&f, "rcpt_hidden")["result"], "crashed");
    // So is a damaged file.
    fs::write(&remembered, b"{not json").expect("write");
    assert_eq!(f.runtime.reconcile_crashed().expect("full again"), 0);
    assert!(serde_json::from_slice::<Value>(&fs::read(&remembered).expect("r")).is_ok());
}

#[test]
fn only_the_dispatch_path_can_run_a_tool() {
    // BuiltinCall and SubprocessCall have fields private to the dispatch module, so no other
    // code can construct the argument a tool needs; the compile_fail doctests on those types
    // check it from outside the crate. Here: the source tree has no other caller of a runner.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("dispatch/mod.rs")
            {
                let text = fs::read_to_string(&path).expect("read");
                if text.contains("SubprocessCall {")
                    || text.contains("BuiltinCall {\n        input")
                {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "tool calls constructed outside dispatch: {offenders:?}"
    );
}

#[test]
fn durable_grants_run_exactly_once_for_exactly_their_input_and_expire() {
    // KRN-09 through the dispatch path with the real approvals store: replay of a grant for a
    // second call or for different input is refused; an expired grant is a deny.
    use lumenflow_contracts::time::Timestamp;
    use lumenflow_kernel::approvals::{
        self, ApprovalProvider, Decision, GateContext, LocalApprovals,
    };
    use lumenflow_kernel::dispatch::open::ProviderGate;

    let mut f = fixture("");
    let store = Arc::new(LocalApprovals::open(&f.root));
    f.runtime.approvals = Some(Arc::new(ProviderGate(store.clone())));
    let grant = |id: &str| {
        store
            .decide(
                id,
                Decision::Granted {
                    approver: "alice".into(),
                    reason: "reviewed".into(),
                    decided_at: Timestamp::now(),
                },
            )
            .expect("grant")
    };

    let out = call(&f, "notes:risky", json!({"path": "reports/a.md"}));
    assert_refused(&f, &out, "APPROVAL_REQUIRED");
    let first = out.approval_id.clone().expect("pending id");
    // Asking again before a decision reuses the pending request.
    let again = call(&f, "notes:risky", json!({"path": "reports/a.md"}));
    assert_eq!(again.approval_id.as_deref(), Some(first.as_str()));
    grant(&first);
    let out = call(&f, "notes:risky", json!({"path": "reports/a.md"}));
    assert!(out.output.success, "{out:?}");
    assert_eq!(out.approval_id.as_deref(), Some(first.as_str()));
    let started = &f.runtime.receipts(&out.receipt_id).expect("r")[0].fields;
    assert_eq!(started["approval_id"], first.as_str());
    let replay = call(&f, "notes:risky", json!({"path": "reports/a.md"}));
    assert_refused(&f, &replay, "APPROVAL_REQUIRED");
    assert_ne!(replay.approval_id.as_deref(), Some(first.as_str()));
    let other = call(&f, "notes:risky", json!({"path": "reports/b.md"}));
    assert_refused(&f, &other, "APPROVAL_REQUIRED");
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);

    // A grant that expired before use never runs the tool.
    let input = json!({"path": "reports/late.md"});
    let hash = approvals::input_hash(&input);
    let mut ctx = GateContext::new("alice", "short-lived");
    ctx.ttl = std::time::Duration::from_millis(400);
    let pending = match approvals::gate(&*store, "notes:risky", &hash, ctx, Timestamp::now())
        .expect("gate")
    {
        approvals::Gate::Required { approval, .. } => approval,
        other => panic!("expected a pending request, got {other:?}"),
    };
    grant(&pending.id);
    // Granted in time, used too late.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let late = call(&f, "notes:risky", input);
    assert_refused(&f, &late, "APPROVAL_REQUIRED");
    assert_ne!(late.approval_id.as_deref(), Some(pending.id.as_str()));
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_builtin_registers_only_for_a_tool_its_manifest_declares() {
    let manifest = parse_manifest(SourceFile::new("manifest.yaml", PACK))
        .expect("manifest")
        .manifest;
    let f: BuiltinFn =
        Arc::new(|_c: &lumenflow_kernel::dispatch::BuiltinCall<'_>| ToolOutput::ok(json!({})));
    let err = RegisteredTool::builtin(&manifest, "dev", "notes:undeclared", f.clone())
        .err()
        .expect("refused");
    assert_eq!(err.code(), "ENTRY_INVALID");
    let tool = RegisteredTool::builtin(&manifest, "dev", "notes:read", f).expect("declared");
    assert!(
        tool.input_schema.is_some(),
        "the manifest's input_schema is compiled"
    );
}

#[test]
fn an_output_that_cannot_be_stored_is_still_committed_to_by_hash() {
    // KRN-12: a full evidence disk must not leave a receipt silently without `output_hash`, nor
    // half-written temp files. The call ran and stands; its receipt commits to the output's hash
    // and says why the blob is missing.
    let f = fixture("");
    let input = json!({"path": "reports/a.md"});
    assert!(call(&f, "notes:read", input.clone()).output.success);
    // The evidence folder becomes unwritable (here: not a folder any more); the input is known
    // to this process, so only the new output has to be written.
    let inputs = f.runtime.evidence.root().join("inputs");
    fs::rename(&inputs, inputs.with_extension("moved")).expect("move");
    fs::write(&inputs, b"not a folder").expect("block");
    let out = call(&f, "notes:write", input);
    assert!(out.output.success, "{out:?}");
    let fin = finished(&f, &out.receipt_id);
    let expected = lumenflow_contracts::digest::Sha256Digest::of(
        &lumenflow_contracts::canonical_json::to_canonical_vec(&json!({"bytes": 3})),
    );
    assert_eq!(fin["output_hash"], expected.to_string());
    assert!(fin.get("output_ref").is_none());
    assert!(
        fin["output_evidence_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{fin:?}"
    );
}
