//! What a runtime sends out (Q40) and what a built-in tool may do from inside the dispatch
//! path: emit its pack's events and make nested calls that are governed like any other.

use std::fs;
use std::sync::Arc;

use lumenflow_contracts::event::BuildOptions;
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::{
    BuiltinCall, BuiltinFn, CallRequest, EvidenceStore, RegisteredTool, Runtime, RuntimeEvents,
    ToolRegistry, MAX_NESTED_DEPTH,
};
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions};
use lumenflow_kernel::events::emit::MemorySink;
use lumenflow_kernel::events::ledger::Ledger;
use lumenflow_kernel::manifest::parse_manifest;
use lumenflow_kernel::workspace::parse_workspace;
use serde_json::{json, Map, Value};

const WS: &str = r#"id: ws
name: Test
packs: []
lanes: []
security:
  allowed_scopes:
    - {type: path, pattern: "**", access: read}
memory_namespace: m
event_namespace: e
"#;

const PACK: &str = r#"id: tpack
version: 1.0.0
task_types: [task]
emitted_event_kinds: [tpack:thing_happened]
backpressure_policy:
  tpack:thing_happened: ephemeral
tools:
  - name: tpack:echo
    entry: tools/echo.py
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
  - name: tpack:emit
    entry: tools/emit.py
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
  - name: tpack:nested
    entry: tools/nested.py
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
  - name: tpack:recurse
    entry: tools/recurse.py
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
"#;

fn tool(f: impl Fn(&BuiltinCall<'_>) -> ToolOutput + Send + Sync + 'static) -> BuiltinFn {
    Arc::new(f)
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    runtime: Runtime,
    sink: Arc<MemorySink>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().canonicalize().expect("canon");
    let doc = parse_workspace(SourceFile::new("workspace.yaml", WS), &root).expect("workspace");
    let manifest = parse_manifest(SourceFile::new("manifest.yaml", PACK))
        .expect("manifest")
        .manifest;
    let functions: Vec<(&str, BuiltinFn)> = vec![
        (
            "tpack:echo",
            tool(|c| ToolOutput::ok(json!({"echo": c.input(), "caller": c.caller()}))),
        ),
        (
            "tpack:emit",
            tool(|c| {
                let mut payload = Map::new();
                payload.insert("n".into(), json!(1));
                let declared = c.emit("tpack:thing_happened", payload, BuildOptions::default());
                let undeclared = c.emit("tpack:other", Map::new(), BuildOptions::default());
                ToolOutput::ok(json!({
                    "declared": declared.map(|e| e.map(|e| e.kind)).map_err(|e| e.to_string()),
                    "undeclared_refused": undeclared.is_err(),
                }))
            }),
        ),
        (
            "tpack:nested",
            tool(|c| {
                let inner = c.dispatch("tpack:echo", json!({"from": "nested"}));
                ToolOutput::ok(json!({
                    "inner_success": inner.output.success,
                    "inner_receipt": inner.receipt_id,
                    "inner_data": inner.output.data,
                }))
            }),
        ),
        (
            "tpack:recurse",
            tool(|c| {
                let inner = c.dispatch("tpack:recurse", json!({}));
                if inner.output.success {
                    ToolOutput::ok(json!({}))
                } else {
                    inner.output
                }
            }),
        ),
    ];
    let mut registry = ToolRegistry::new();
    for (name, f) in functions {
        registry
            .register(RegisteredTool::builtin(&manifest, "dev", name, f).expect("tool"))
            .expect("register");
    }
    let log = EventLog::open(&eventlog::default_path(&root), LogOptions::default()).expect("log");
    let evidence = EvidenceStore::open(&root.join(".lumenflow/kernel/evidence")).expect("evidence");
    let mut runtime = Runtime::new(&root, &doc, registry, vec![manifest], log, evidence);
    let sink = Arc::new(MemorySink::new());
    let ledger =
        Ledger::open(&root.join(".lumenflow/state/conductor/events.jsonl")).expect("ledger");
    runtime.events = Some(Arc::new(RuntimeEvents::new(
        "ws:phone:dev1",
        sink.clone(),
        Some(Arc::new(ledger)),
    )));
    Fixture {
        _dir: dir,
        root,
        runtime,
        sink,
    }
}

fn events(f: &Fixture) -> Vec<lumenflow_contracts::event::KernelEventV2> {
    f.sink.pushes().into_iter().flatten().collect()
}

#[test]
fn every_call_emits_tool_called_with_the_runtime_identity_q40() {
    let f = fixture();
    let mut req = CallRequest::local("tpack:echo", json!({"x": 1}));
    req.caller = "ws:phone:dev1".into();
    let ok = f.runtime.dispatch(req);
    assert!(ok.output.success, "{:?}", ok.output);
    let refused = f
        .runtime
        .dispatch(CallRequest::local("tpack:missing", json!({})));
    assert!(!refused.output.success);

    let evs = events(&f);
    assert_eq!(evs.len(), 2, "{evs:?}");
    let first = serde_json::to_value(&evs[0]).expect("json");
    assert_eq!(first["kind"], "agent-runtime:tool_called");
    assert_eq!(first["from"], "ws:phone:dev1");
    assert_eq!(first["payload"]["tool_name"], "tpack:echo");
    assert_eq!(first["payload"]["outcome"], "success");
    assert_eq!(first["payload"]["receipt_id"], ok.receipt_id.as_str());
    assert_eq!(first["payload"]["run_id"], ok.run_id.as_str());
    let expected = lumenflow_contracts::canonical_json::canonical_hash(
        &json!({"tool_name": "tpack:echo", "input": {"x": 1}}),
    );
    assert_eq!(
        first["payload"]["envelope_hash"],
        format!("sha256:{expected}")
    );
    let second = serde_json::to_value(&evs[1]).expect("json");
    assert_eq!(second["payload"]["outcome"], "denied");
    assert_eq!(second["payload"]["error_code"], "TOOL_NOT_FOUND");

    // Each event is stamped in the local ledger too (EVT-11).
    let ledger =
        fs::read_to_string(f.root.join(".lumenflow/state/conductor/events.jsonl")).expect("ledger");
    assert_eq!(ledger.lines().count(), 2);
}

#[test]
fn builtins_emit_only_their_packs_declared_kinds() {
    let f = fixture();
    let out = f
        .runtime
        .dispatch(CallRequest::local("tpack:emit", json!({})));
    let data = out.output.data.expect("data");
    assert_eq!(data["declared"]["Ok"], "tpack:thing_happened", "{data}");
    assert_eq!(data["undeclared_refused"], true);
    let emitted = serde_json::to_value(&events(&f)[0]).expect("json");
    assert_eq!(
        emitted["payload"]["run_id"],
        out.run_id.as_str(),
        "events carry their call's run"
    );
    let kinds: Vec<String> = events(&f).into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["tpack:thing_happened", "agent-runtime:tool_called"]);
}

#[test]
fn nested_calls_go_through_dispatch_with_their_own_receipts() {
    let f = fixture();
    let mut req = CallRequest::local("tpack:nested", json!({}));
    req.caller = "ws".into();
    let out = f.runtime.dispatch(req);
    assert!(out.output.success, "{:?}", out.output);
    let data = out.output.data.expect("data");
    assert_eq!(data["inner_success"], true);
    assert_eq!(
        data["inner_data"]["caller"], "ws",
        "the caller carries over"
    );
    let inner_receipt = data["inner_receipt"].as_str().expect("receipt");
    let records = f.runtime.receipts(inner_receipt).expect("receipts");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].fields["surface"], "agent");
    assert_eq!(
        records[0].fields["run_id"],
        f.runtime.receipts(&out.receipt_id).expect("r")[0].fields["run_id"]
    );
    let tools: Vec<Value> = events(&f)
        .into_iter()
        .map(|e| serde_json::to_value(e).expect("json")["payload"]["tool_name"].clone())
        .collect();
    assert_eq!(tools, [json!("tpack:echo"), json!("tpack:nested")]);
}

#[test]
fn a_tool_calling_itself_stops_at_the_nesting_limit() {
    let f = fixture();
    let out = f
        .runtime
        .dispatch(CallRequest::local("tpack:recurse", json!({})));
    assert!(!out.output.success);
    let message = out
        .output
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(message.contains("nesting depth"), "{message}");
    // The outer call plus MAX_NESTED_DEPTH nested ones plus the refused one.
    assert_eq!(events(&f).len(), MAX_NESTED_DEPTH as usize + 2);
    eventlog::verify(&eventlog::default_path(&f.root)).expect("chain verifies");
}
