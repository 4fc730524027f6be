//! `Runtime::dispatch_async`, the sidecar's way into the one dispatch path (KRN-10): it must
//! decide and record exactly what `Runtime::dispatch` does, for allowed calls and every kind of
//! refusal, while its receipts are awaited rather than waited for by a blocked thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::dispatch::{
    ApprovalAsk, ApprovalGate, ApprovalRefusal, BuiltinFn, CallOutcome, CallRequest, Runtime,
    Surface, TaskFacts, TaskGate,
};
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions, LogRecord, ReplayFilter};
use serde_json::{json, Map, Value};

mod notes_pack;

/// Added to the shared workspace: a rule the policy-deny case trips.
const POLICY: &str = r#"policies:
  rules:
    - id: ws.no-secrets
      trigger: on_tool_request
      decision: deny
      reason: secrets stay home
      when:
        tool: "notes:list"
        input:
          /mode: {starts_with: secret}
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    runtime: Arc<Runtime>,
    calls: Arc<AtomicUsize>,
}

/// Refuses every approval, naming a pending request.
struct NoGrants;

impl ApprovalGate for NoGrants {
    fn gate(&self, ask: ApprovalAsk<'_>) -> Result<String, ApprovalRefusal> {
        Err(ApprovalRefusal {
            code: "APPROVAL_REQUIRED".into(),
            message: format!(
                "Tool execution requires human approval: {}",
                ask.required_approval_ids.join(", ")
            ),
            approval_id: Some("apr_pending".into()),
        })
    }
}

struct Tasks(HashMap<String, TaskFacts>);

impl TaskGate for Tasks {
    fn check_callable(&self, id: &str) -> Result<TaskFacts, (String, String)> {
        self.0.get(id).cloned().ok_or_else(|| {
            (
                "TASK_NOT_FOUND".into(),
                format!("task `{id}` does not exist"),
            )
        })
    }
}

fn builtin(calls: Arc<AtomicUsize>, name: &str) -> BuiltinFn {
    let name = name.to_string();
    Arc::new(move |call: &lumenflow_kernel::dispatch::BuiltinCall<'_>| {
        calls.fetch_add(1, Ordering::SeqCst);
        match name.as_str() {
            "notes:bad-output" => ToolOutput::ok(json!({"bytes": "three"})),
            "notes:slow" => {
                std::thread::sleep(Duration::from_millis(300));
                ToolOutput::ok(json!({"slept": true}))
            }
            _ => ToolOutput::ok(json!({"echo": call.input().clone()})),
        }
    })
}

fn fixture() -> Fixture {
    let (dir, root) = notes_pack::workspace_dir();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut runtime = notes_pack::runtime(&root, POLICY, |tool| builtin(calls.clone(), tool));
    runtime.approvals = Some(Arc::new(NoGrants));
    let mut tasks = HashMap::new();
    tasks.insert(
        "T-1".to_string(),
        TaskFacts {
            lane_id: "core".into(),
            declared_scopes: vec![lumenflow_contracts::scope::ToolScope::path(
                "reports/**",
                lumenflow_contracts::scope::PathAccess::Read,
            )],
            run_id: None,
        },
    );
    runtime.tasks = Some(Arc::new(Tasks(tasks)));
    Fixture {
        _dir: dir,
        root,
        runtime: Arc::new(runtime),
        calls,
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

fn records(root: &Path) -> Vec<LogRecord> {
    let log = EventLog::open(&eventlog::default_path(root), LogOptions::default()).expect("log");
    log.replay(&ReplayFilter::default())
        .expect("replay")
        .records
}

/// A receipt without what differs between any two calls (ids, times, chain position).
fn comparable(record: &LogRecord) -> Map<String, Value> {
    let mut fields = record.fields.clone();
    for volatile in ["receipt_id", "run_id", "duration_ms"] {
        fields.remove(volatile);
    }
    fields.insert("kind".into(), record.kind.clone().into());
    fields
}

fn request(tool: &str, input: Value, surface: Surface, task: Option<&str>) -> CallRequest {
    let mut req = CallRequest::local(tool, input);
    req.surface = surface;
    req.task_id = task.map(str::to_string);
    req
}

fn cases() -> Vec<(&'static str, CallRequest)> {
    vec![
        (
            "allowed, no paths",
            request(
                "notes:list",
                json!({"mode": "open", "n": 1}),
                Surface::Http,
                None,
            ),
        ),
        (
            "allowed, a path looked up on disk",
            request(
                "notes:read",
                json!({"path": "reports/a.md"}),
                Surface::Http,
                None,
            ),
        ),
        (
            "path escape",
            request(
                "notes:read",
                json!({"path": "../../etc/passwd"}),
                Surface::Http,
                None,
            ),
        ),
        (
            "input not an object",
            request("notes:list", json!("nope"), Surface::Http, None),
        ),
        (
            "input against the schema",
            request("notes:read", json!({"path": ""}), Surface::Http, None),
        ),
        (
            "unknown tool",
            request("notes:nope", json!({}), Surface::Http, None),
        ),
        (
            "internal tool from a remote surface",
            request("notes:internal", json!({}), Surface::Http, None),
        ),
        (
            "full network under an allowlist",
            request("notes:fetch", json!({}), Surface::Http, None),
        ),
        (
            "policy deny",
            request(
                "notes:list",
                json!({"mode": "secret-dump"}),
                Surface::Http,
                None,
            ),
        ),
        (
            "approval required",
            request("notes:risky", json!({}), Surface::Http, None),
        ),
        (
            "invalid output",
            request("notes:bad-output", json!({}), Surface::Http, None),
        ),
        (
            "unknown task",
            request(
                "notes:list",
                json!({"mode": "open"}),
                Surface::Http,
                Some("T-9"),
            ),
        ),
        (
            "task narrows the scopes",
            request(
                "notes:read",
                json!({"path": "reports/b.md"}),
                Surface::Http,
                Some("T-1"),
            ),
        ),
        (
            "task refuses a path outside its scopes",
            request(
                "notes:read",
                json!({"path": "other.md"}),
                Surface::Http,
                Some("T-1"),
            ),
        ),
    ]
}

fn summary(out: &CallOutcome) -> Value {
    json!({
        "success": out.output.success,
        "error_code": out.output.error_code(),
        "message": out.output.error.as_ref().map(|e| e.message.clone()),
        "data": out.output.data,
        "approval_id": out.approval_id,
        "scope_narrowed": out.scope_narrowed,
        "recorded": out.recorded,
        "decisions": out.policy_decisions.iter().map(|d| d.policy_id.clone()).collect::<Vec<_>>(),
    })
}

#[test]
fn the_async_path_decides_and_records_exactly_like_the_sync_path() {
    // KRN-10: one dispatch path, whichever way in.
    let sync = fixture();
    let asynchronous = fixture();
    let tokio = tokio_runtime();
    for (what, req) in cases() {
        let expected = sync.runtime.dispatch(req.clone());
        let got = tokio
            .block_on(asynchronous.runtime.clone().dispatch_async(req))
            .expect("the call's task ran");
        assert_eq!(summary(&got), summary(&expected), "{what}");
        let should_run = what.starts_with("allowed") || what == "task narrows the scopes";
        assert_eq!(expected.output.success, should_run, "{what}: {expected:?}");
        let by_id = |root: &Path, id: &str| -> Vec<Map<String, Value>> {
            records(root)
                .iter()
                .filter(|r| r.fields.get("receipt_id").and_then(Value::as_str) == Some(id))
                .map(comparable)
                .collect()
        };
        let want = by_id(&sync.root, &expected.receipt_id);
        assert_eq!(want.len(), 2, "{what}: a started and a finished receipt");
        assert_eq!(
            by_id(&asynchronous.root, &got.receipt_id),
            want,
            "{what}: the same receipts"
        );
    }
    assert_eq!(
        sync.calls.load(Ordering::SeqCst),
        asynchronous.calls.load(Ordering::SeqCst),
        "the same tools ran"
    );
    for f in [&sync, &asynchronous] {
        eventlog::verify(&eventlog::default_path(&f.root)).expect("the chain verifies");
    }
}

#[test]
fn concurrent_async_calls_share_commits_and_each_has_its_receipts_and_evidence() {
    // KRN-10, KRN-12: 200 calls at once, each with a new input.
    let f = fixture();
    let tokio = tokio_runtime();
    let outcomes: Vec<CallOutcome> = tokio.block_on(async {
        let calls: Vec<_> = (0..200)
            .map(|n| {
                let req = request(
                    "notes:list",
                    json!({"mode": "open", "n": n}),
                    Surface::Http,
                    None,
                );
                tokio::spawn(f.runtime.clone().dispatch_async(req))
            })
            .collect();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.expect("join").expect("the call's task ran"));
        }
        outcomes
    });
    for out in &outcomes {
        assert!(out.output.success && out.recorded, "{out:?}");
    }
    let all = records(&f.root);
    for out in &outcomes {
        let mine: Vec<&LogRecord> = all
            .iter()
            .filter(|r| r.fields.get("receipt_id").and_then(Value::as_str) == Some(&out.receipt_id))
            .collect();
        assert_eq!(mine.len(), 2, "{}", out.receipt_id);
        assert_eq!(mine[0].kind, "tool_call_started");
        assert_eq!(mine[1].kind, "tool_call_finished");
        for key in ["input_ref", "output_ref"] {
            let reference = mine[0].fields.get(key).or(mine[1].fields.get(key));
            let reference = reference.and_then(Value::as_str).expect(key);
            assert!(
                f.root
                    .join(".lumenflow/kernel/evidence")
                    .join(reference)
                    .is_file(),
                "{key} {reference} is on disk"
            );
        }
    }
    let stats = f.runtime.log.stats();
    assert_eq!(stats.records_appended, 400);
    assert!(
        stats.commits < 400,
        "concurrent calls share commits ({} commits)",
        stats.commits
    );
    eventlog::verify(&eventlog::default_path(&f.root)).expect("the chain verifies");
}

#[test]
fn a_call_whose_caller_hung_up_still_runs_to_its_finished_receipt() {
    // KRN-12: no started receipt is left without its finish by a dropped future.
    let f = fixture();
    let tokio = tokio_runtime();
    let req = request("notes:slow", json!({}), Surface::Http, None);
    let call = f.runtime.clone().dispatch_async(req);
    let gave_up =
        tokio.block_on(async { tokio::time::timeout(Duration::from_millis(50), call).await });
    assert!(gave_up.is_err(), "the caller stopped waiting");
    let finished = |root: &Path| {
        records(root)
            .iter()
            .filter(|r| r.kind == "tool_call_finished")
            .count()
    };
    for _ in 0..100 {
        if finished(&f.root) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(finished(&f.root), 1, "the call finished and was recorded");
    assert_eq!(f.calls.load(Ordering::SeqCst), 1, "the tool ran once");
    drop(tokio);
    eventlog::verify(&eventlog::default_path(&f.root)).expect("the chain verifies");
}
