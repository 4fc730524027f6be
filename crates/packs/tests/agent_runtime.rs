//! The agent-runtime pack through the real dispatch path, on scratch workspaces: scripted turns,
//! approval waits that resume without re-running side effects, turns killed mid-flight (a real
//! child process, killed), the OpenAI-compatible provider against a local HTTP server speaking
//! the same API, and the bad inputs of issue 8 (invalid model JSON, unknown tool, denied action,
//! HTTP errors).
//!
//! Requirement ids: INV-05, INV-09 (turn result, tool_called per call), ABR-01 to ABR-04,
//! Q22 (turn_aborted with cleanup_status), KRN-09 (approvals), KRN-10 (one dispatch path).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::approvals::{ApprovalProvider, Decision, LocalApprovals};
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::open::ProviderGate;
use lumenflow_kernel::dispatch::{
    BuiltinCall, BuiltinFn, CallOutcome, CallRequest, EvidenceStore, RegisteredTool, Runtime,
    RuntimeEvents, ToolRegistry,
};
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions};
use lumenflow_kernel::events::emit::MemorySink;
use lumenflow_kernel::manifest::{parse_manifest, PackManifest};
use lumenflow_kernel::pack_report::validate_embedded;
use lumenflow_kernel::workspace::read_workspace;
use lumenflow_packs::agent_runtime::{self, reconcile_interrupted_turns, TOOL_NAME};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// A scratch workspace with a test pack and the agent-runtime pack

const TEST_PACK: &str = r#"id: test-tools
version: 1.0.0
task_types: [task]
tools:
  - name: "test:append"
    entry: tools/tool.sh
    description: Append a line to a file under out/.
    permission: write
    required_scopes: [{type: path, pattern: "out/**", access: write}]
    input_schema:
      type: object
      properties: {path: {type: string}, line: {type: string}, wu_id: {type: string}, fail_before_writing: {type: string}}
      required: [path, line]
  - name: "test:read"
    entry: tools/tool.sh
    description: Read a file.
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
  - name: "test:publish"
    entry: tools/tool.sh
    description: Publish the report (needs an approval).
    permission: write
    required_approvals: ["test:publish"]
    required_scopes: [{type: path, pattern: "out/**", access: write}]
  - name: "test:write"
    entry: tools/tool.sh
    description: Write a file under out/.
    permission: write
    required_scopes: [{type: path, pattern: "out/**", access: write}]
  - name: "test:hang"
    entry: tools/tool.sh
    permission: write
    required_scopes: [{type: path, pattern: "out/**", access: write}]
  - name: "test:hang-read"
    entry: tools/tool.sh
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
"#;

fn workspace_yaml(provider_port: Option<u16>) -> String {
    let mut ws = String::from(
        r#"id: ws
name: Test
packs:
  - {id: agent-runtime, version: 0.1.0, integrity: dev, source: local}
  - {id: test-tools, version: 1.0.0, integrity: dev, source: local}
lanes: []
security:
  allowed_scopes:
    - {type: path, pattern: "**", access: read}
    - {type: path, pattern: "out/**", access: write}
    - {type: path, pattern: ".lumenflow/state/agent-runtime/**", access: write}
policies:
  rules:
    - id: ws.no-production-secrets
      trigger: on_tool_request
      decision: deny
      reason: production secrets are off limits to agents
      when:
        tool: "test:write"
        input:
          /path: {starts_with: out/secrets/}
memory_namespace: m
event_namespace: e
sandbox: none
"#,
    );
    if let Some(port) = provider_port {
        ws.push_str(&format!(
            "agent_runtime:\n  provider:\n    base_url: http://127.0.0.1:{port}/v1\n    model: test-model\n    api_key_env: AGENT_RUNTIME_API_KEY\n    timeout_ms: 5000\n"
        ));
    }
    ws
}

/// Counts of how often each test tool really ran (the side effects).
#[derive(Default)]
struct Counters {
    runs: Mutex<HashMap<String, usize>>,
}

impl Counters {
    fn get(&self, tool: &str) -> usize {
        self.runs.lock().unwrap().get(tool).copied().unwrap_or(0)
    }
    fn bump(&self, tool: &str) {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(tool.to_string())
            .or_default() += 1;
    }
}

fn test_tool(name: &str, counters: Arc<Counters>) -> BuiltinFn {
    let name = name.to_string();
    Arc::new(move |call: &BuiltinCall<'_>| {
        counters.bump(&name);
        let input = call.input();
        let root = call.workspace_dir();
        if let Some(code) = input["fail_before_writing"].as_str() {
            return ToolOutput::fail(code, "refused before changing anything");
        }
        match name.as_str() {
            "test:append" | "test:write" | "test:publish" => {
                let rel = input["path"].as_str().unwrap_or("out/published.txt");
                let path = root.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap();
                let line = input["line"].as_str().unwrap_or(name.as_str());
                writeln!(f, "{line}").unwrap();
                ToolOutput::ok(json!({"written": rel}))
            }
            "test:hang" | "test:hang-read" => {
                // Tell the parent test we are inside the call, then never return.
                std::fs::write(root.join("out-ready"), b"").unwrap();
                std::thread::sleep(Duration::from_secs(120));
                ToolOutput::ok(json!({}))
            }
            _ => ToolOutput::ok(json!({"content": "hello"})),
        }
    })
}

struct Fixture {
    _dir: Option<tempfile::TempDir>,
    root: PathBuf,
    runtime: Runtime,
    counters: Arc<Counters>,
    sink: Arc<MemorySink>,
}

fn test_manifest() -> PackManifest {
    parse_manifest(SourceFile::new("manifest.yaml", TEST_PACK))
        .unwrap()
        .manifest
}

/// Write the workspace files into `root`.
fn write_workspace(root: &Path, provider_port: Option<u16>) {
    std::fs::write(root.join("workspace.yaml"), workspace_yaml(provider_port)).unwrap();
    let pack = root.join("packs/test-tools");
    std::fs::create_dir_all(pack.join("tools")).unwrap();
    std::fs::write(pack.join("manifest.yaml"), TEST_PACK).unwrap();
    std::fs::write(pack.join("tools/tool.sh"), "#!/bin/sh\necho '{}'\n").unwrap();
    std::fs::create_dir_all(root.join("out")).unwrap();
}

/// A runtime over the workspace at `root`: the real dispatch path with the durable approvals
/// store and an event output recording into a memory sink.
fn runtime_at(root: &Path, counters: Arc<Counters>, sink: Arc<MemorySink>) -> Runtime {
    let doc = read_workspace(root).unwrap();
    let tests = test_manifest();
    let agent = agent_runtime::manifest();
    let mut registry = ToolRegistry::new();
    for tool in &tests.tools {
        registry
            .register(
                RegisteredTool::builtin(
                    &tests,
                    "dev",
                    &tool.name,
                    test_tool(&tool.name, counters.clone()),
                )
                .unwrap(),
            )
            .unwrap();
    }
    let tools = agent_runtime::tools();
    registry
        .register(
            RegisteredTool::builtin(&agent, "dev", TOOL_NAME, tools[TOOL_NAME].clone()).unwrap(),
        )
        .unwrap();
    let log = EventLog::open(&eventlog::default_path(root), LogOptions::default()).unwrap();
    let evidence = EvidenceStore::open(&root.join(".lumenflow/kernel/evidence")).unwrap();
    let mut runtime = Runtime::new(root, &doc, registry, vec![agent, tests], log, evidence);
    runtime.approvals = Some(Arc::new(ProviderGate(Arc::new(LocalApprovals::open(root)))));
    runtime.events = Some(Arc::new(RuntimeEvents::new("ws-test", sink, None)));
    runtime
}

/// A scratch workspace on disk, with no runtime open on it yet (a process may hold one event
/// log writer per file: the crash tests let their child process write first).
fn scratch(provider_port: Option<u16>) -> (tempfile::TempDir, PathBuf) {
    std::env::set_var("AGENT_RUNTIME_API_KEY", "sk-test-key");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    write_workspace(&root, provider_port);
    (dir, root)
}

fn fixture(provider_port: Option<u16>) -> Fixture {
    let (dir, root) = scratch(provider_port);
    fixture_at(Some(dir), root)
}

fn fixture_at(dir: Option<tempfile::TempDir>, root: PathBuf) -> Fixture {
    let counters = Arc::new(Counters::default());
    let sink = Arc::new(MemorySink::new());
    let runtime = runtime_at(&root, counters.clone(), sink.clone());
    Fixture {
        _dir: dir,
        root,
        runtime,
        counters,
        sink,
    }
}

impl Fixture {
    fn turn(&self, input: Value) -> CallOutcome {
        self.runtime.dispatch(CallRequest {
            caller: "ws-test".into(),
            surface: lumenflow_kernel::dispatch::Surface::Http,
            ..CallRequest::local(TOOL_NAME, input)
        })
    }

    fn lines(&self, rel: &str) -> Vec<String> {
        std::fs::read_to_string(self.root.join(rel))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn events(&self) -> Vec<KernelEventV2> {
        self.sink.pushes().into_iter().flatten().collect()
    }

    fn kinds(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.kind).collect()
    }

    /// The finished receipt of a call.
    fn finished(&self, receipt_id: &str) -> serde_json::Map<String, Value> {
        let records = self.runtime.receipts(receipt_id).unwrap();
        assert_eq!(
            records.len(),
            2,
            "a started and a finished receipt for {receipt_id}"
        );
        records[1].fields.clone()
    }

    fn started(&self, receipt_id: &str) -> serde_json::Map<String, Value> {
        self.runtime.receipts(receipt_id).unwrap()[0].fields.clone()
    }
}

fn data(out: &CallOutcome) -> Value {
    out.output
        .data
        .clone()
        .expect("the turn returns its result as data")
}

fn plan(steps: Value) -> Value {
    json!({"steps": steps})
}

// ---------------------------------------------------------------------------------------------
// The manifest

#[test]
fn the_manifest_passes_pack_validate_and_declares_least_privilege() {
    let report = validate_embedded(&agent_runtime::PACK);
    assert!(report.passed(), "{}", report.render_text());
    let m = agent_runtime::manifest();
    assert_eq!(
        (m.id.as_str(), m.slug()),
        ("agent-runtime", "agent-runtime")
    );
    assert_eq!(m.config_key.as_deref(), Some("agent_runtime"));
    assert_eq!(
        m.emitted_event_kinds,
        vec![
            "agent-runtime:turn_started",
            "agent-runtime:turn_completed",
            "agent-runtime:turn_aborted"
        ]
    );
    let tool = m.tool(TOOL_NAME).unwrap();
    assert_eq!(tool.token_scope.as_deref(), Some("agent:execute-turn"));
    // Writes only to its own state folder; no network scope (the endpoint is operator config).
    let writes: Vec<String> = tool
        .required_scopes
        .iter()
        .filter_map(|s| match s {
            lumenflow_contracts::scope::ToolScope::Path {
                pattern,
                access: lumenflow_contracts::scope::PathAccess::Write,
            } => Some(pattern.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(writes, vec![".lumenflow/state/agent-runtime/**"]);
    assert!(lumenflow_packs::builtin_packs()
        .iter()
        .any(|p| p.id == "agent-runtime"));
    assert!(lumenflow_packs::builtin_tools().contains_key(TOOL_NAME));
    assert!(lumenflow_packs::registrations()
        .iter()
        .any(|r| r.manifest.id == "agent-runtime"));
}

#[test]
fn the_embedded_files_are_exactly_the_files_of_the_pack_folder() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/agent_runtime");
    let mut on_disk: Vec<(String, Vec<u8>)> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    on_disk.sort();
    let mut embedded: Vec<(String, Vec<u8>)> = agent_runtime::PACK
        .files
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    embedded.sort();
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&embedded), names(&on_disk));
    assert!(
        embedded == on_disk,
        "an embedded file differs from the folder: rebuild"
    );
}

#[test]
fn the_config_block_validates_against_the_config_schema() {
    // The block the tests use is accepted by the loader's config check (CONFIG_INVALID otherwise).
    let f = fixture(Some(9));
    let doc = read_workspace(&f.root).unwrap();
    let loader =
        lumenflow_kernel::loader::PackLoader::for_workspace(&doc, lumenflow_packs::builtin_packs());
    let pack = loader.load(&doc.spec, "agent-runtime").unwrap();
    let diags = lumenflow_kernel::config::check_pack_block(&doc, &pack);
    assert!(diags.0.is_empty(), "{diags}");
}

// ---------------------------------------------------------------------------------------------
// Scripted turns

#[test]
fn a_scripted_plan_runs_every_step_through_the_dispatch_path() {
    let f = fixture(None);
    let out = f.turn(json!({
        "goal": "run gates on WU-042",
        "turn_id": "t-scripted",
        "plan": plan(json!([
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "one"}},
            {"tool": "test:read", "input": {"path": "out/log.txt"}},
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "two"}},
        ])),
    }));
    assert!(out.output.success, "{:?}", out.output);
    let result = data(&out);
    assert_eq!(result["status"], "completed");
    assert_eq!(result["tool_calls"], 3);
    assert_eq!(f.lines("out/log.txt"), vec!["one", "two"]);
    // Every step left its own pair of receipts, made on the agent surface by the same caller
    // in the same run as the turn itself.
    let turn_started = f.started(&out.receipt_id);
    let receipts = result["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 3);
    for r in receipts {
        let started = f.started(r.as_str().unwrap());
        assert_eq!(started["surface"], "agent");
        assert_eq!(started["caller"], "ws-test");
        assert_eq!(started["run_id"], turn_started["run_id"]);
        assert_eq!(f.finished(r.as_str().unwrap())["result"], "success");
    }
    // The evidence original of the turn is in the evidence store.
    let evidence = f
        .runtime
        .evidence
        .get(result["evidence_ref"].as_str().unwrap())
        .unwrap();
    assert_eq!(evidence["steps"].as_array().unwrap().len(), 3);
    // The wire trace of INV-09: turn_started, the kernel's tool_called per call, turn_completed
    // (and the kernel's tool_called for the turn itself, last, when its call returns).
    assert_eq!(
        f.kinds(),
        vec![
            "agent-runtime:turn_started",
            "agent-runtime:tool_called",
            "agent-runtime:tool_called",
            "agent-runtime:tool_called",
            "agent-runtime:turn_completed",
            "agent-runtime:tool_called",
        ]
    );
    let completed = f
        .events()
        .into_iter()
        .find(|e| e.kind.ends_with("turn_completed"))
        .unwrap();
    assert_eq!(completed.payload["status"], "succeeded");
    assert_eq!(completed.payload["tool_calls"], 3);
    // Asking again returns the stored result; nothing runs twice.
    let again = f.turn(
        json!({"goal": "run gates on WU-042", "turn_id": "t-scripted", "plan": plan(json!([]))}),
    );
    assert_eq!(data(&again)["status"], "completed");
    assert_eq!(f.counters.get("test:append"), 2);
}

#[test]
fn a_plan_file_in_the_workspace_is_followed_and_paths_outside_plan_files_are_refused() {
    let f = fixture(None);
    std::fs::create_dir_all(f.root.join("plans")).unwrap();
    std::fs::write(
        f.root.join("plans/demo.plan.yaml"),
        "- tool: \"test:append\"\n  input: {path: out/demo.txt, line: from-file}\n- tool: \"test:read\"\n  input: {path: out/demo.txt}\n",
    )
    .unwrap();
    let out = f.turn(json!({"goal": "demo", "plan": {"file": "plans/demo.plan.yaml"}}));
    assert!(out.output.success, "{:?}", out.output);
    assert_eq!(f.lines("out/demo.txt"), vec!["from-file"]);

    for (file, needle) in [
        ("workspace.yaml", "outside the effective read scopes"),
        ("../etc/passwd.plan.json", "`..`"),
        ("plans/missing.plan.json", "cannot be read"),
    ] {
        let out = f.turn(json!({"goal": "demo", "plan": {"file": file}}));
        assert!(!out.output.success);
        assert_eq!(
            out.output.error_code(),
            Some("PLAN_INVALID"),
            "{:?}",
            out.output
        );
        let message = &out.output.error.as_ref().unwrap().message;
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn a_step_that_needs_approval_waits_and_resumes_without_rerunning_earlier_steps() {
    let f = fixture(None);
    let input = json!({
        "goal": "publish the report",
        "turn_id": "t-approval",
        "plan": plan(json!([
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "before"}},
            {"tool": "test:publish", "input": {"path": "out/published.txt", "line": "published"}},
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "after"}},
        ])),
    });
    let first = f.turn(input.clone());
    assert!(first.output.success, "{:?}", first.output);
    let result = data(&first);
    assert_eq!(result["status"], "waiting_approval", "{result:#}");
    let approval_id = result["approval_id"].as_str().unwrap().to_string();
    assert_eq!(result["pending_step"]["tool"], "test:publish");
    assert_eq!(result["pending_step"]["index"], 2);
    assert_eq!(f.lines("out/log.txt"), vec!["before"]);
    assert_eq!(f.counters.get("test:publish"), 0);
    // The refused step has its receipt, with the approval id.
    let pending_receipt = result["steps"][1]["receipt_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        f.finished(&pending_receipt)["error_code"],
        "APPROVAL_REQUIRED"
    );

    // Before the grant: still waiting on the same request, nothing ran again.
    let second = f.turn(input.clone());
    assert_eq!(data(&second)["status"], "waiting_approval");
    assert_eq!(data(&second)["approval_id"], approval_id.as_str());
    assert_eq!(f.lines("out/log.txt"), vec!["before"]);

    // The grant, then the resume: the pending step runs once, the rest follows.
    LocalApprovals::open(&f.root)
        .decide(
            &approval_id,
            Decision::Granted {
                approver: "alice".into(),
                reason: "reviewed".into(),
                decided_at: Timestamp::now(),
            },
        )
        .unwrap();
    let third = f.turn(input.clone());
    assert!(third.output.success, "{:?}", third.output);
    let result = data(&third);
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(f.lines("out/log.txt"), vec!["before", "after"]);
    assert_eq!(f.lines("out/published.txt"), vec!["published"]);
    assert_eq!(f.counters.get("test:append"), 2);
    assert_eq!(f.counters.get("test:publish"), 1);
    let publish_receipt = result["steps"][1]["receipt_id"].as_str().unwrap();
    assert_eq!(
        f.started(publish_receipt)["approval_id"],
        approval_id.as_str()
    );
    // Walk-E finding 12: the turn still links to the approval request's receipt (the step
    // record of the resumed step replaced the waiting one).
    let receipts: Vec<&str> = result["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(receipts.contains(&pending_receipt.as_str()), "{result}");
    assert!(receipts.contains(&publish_receipt), "{result}");
    let approval_receipt_at = receipts.iter().position(|r| *r == pending_receipt).unwrap();
    let publish_at = receipts.iter().position(|r| *r == publish_receipt).unwrap();
    assert!(
        approval_receipt_at < publish_at,
        "the request comes first: {result}"
    );
    // One turn_started, one turn_completed, across the three calls.
    let kinds = f.kinds();
    assert_eq!(
        kinds.iter().filter(|k| k.ends_with("turn_started")).count(),
        1
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.ends_with("turn_completed"))
            .count(),
        1
    );
    // A fourth call is answered from the stored result.
    let fourth = f.turn(input);
    assert_eq!(data(&fourth)["status"], "completed");
    assert_eq!(f.counters.get("test:publish"), 1);
    assert_eq!(f.counters.get("test:append"), 2);
}

/// Q16 through a turn: the steps of a turn started with a bearer token may use only the tools
/// that token opens. A token for `agent:execute-turn` alone used to reach every `workspace` tool
/// by naming it in the plan.
#[test]
fn a_turn_cannot_use_tools_its_callers_token_does_not_open() {
    let f = fixture(None);
    let turn = |scopes: &[&str], line: &str| {
        f.runtime.dispatch(CallRequest {
            caller: "ws-test".into(),
            surface: lumenflow_kernel::dispatch::Surface::Http,
            token_scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
            token_id: None,
            ..CallRequest::local(
                TOOL_NAME,
                json!({"goal": "append", "plan": plan(json!([
                    {"tool": "test:append", "input": {"path": "out/log.txt", "line": line}},
                ]))}),
            )
        })
    };
    let out = turn(&["agent:execute-turn"], "escalated");
    assert_eq!(
        out.output.error_code(),
        Some("TURN_ABORTED"),
        "{:?}",
        out.output
    );
    let result = data(&out);
    assert_eq!(result["error_code"], "TOKEN_SCOPE_DENIED", "{result}");
    assert_eq!(f.counters.get("test:append"), 0, "the step never ran");
    let refused = result["steps"][0]["receipt_id"].as_str().unwrap();
    let receipt = f.finished(refused);
    assert_eq!(receipt["error_code"], "TOKEN_SCOPE_DENIED");
    assert_eq!(receipt["result"], "denied");
    assert!(
        result["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("requires token scope `workspace`"),
        "{result}"
    );

    // With both scopes the same plan runs; a local caller (no token) is not limited.
    let out = turn(&["agent:execute-turn", "workspace"], "allowed");
    assert!(out.output.success, "{:?}", out.output);
    assert_eq!(f.lines("out/log.txt"), vec!["allowed"]);
}

/// Walk-B finding 7: a write step that failed is not described as a change that was kept; it
/// "may have changed" the workspace (a failure code proves nothing either way), and a
/// completed write step is named apart.
#[test]
fn a_failed_write_step_may_have_changed_the_workspace_and_is_not_called_kept() {
    let f = fixture(None);
    let out = f.turn(json!({
        "goal": "claim and gate",
        "plan": plan(json!([
            {"tool": "test:read", "input": {}},
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "x",
                                              "fail_before_writing": "REPO_NOT_FOUND"}},
        ])),
    }));
    let result = data(&out);
    assert_eq!(result["cleanup_status"], "partial", "{result}");
    let prose = result["recovery_action"].as_str().unwrap();
    assert!(
        prose.starts_with(
            "Step 2 `test:append` failed and may have changed the workspace before it failed"
        ),
        "{prose}"
    );
    assert!(!prose.contains("kept"), "{prose}");
    assert!(f.lines("out/log.txt").is_empty());

    let f = fixture(None);
    let out = f.turn(json!({
        "goal": "append then fail",
        "plan": plan(json!([
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "a"}},
            {"tool": "test:write", "input": {"path": "out/b.txt", "line": "b",
                                             "fail_before_writing": "GIT_FAILED"}},
        ])),
    }));
    let prose = data(&out)["recovery_action"].as_str().unwrap().to_string();
    assert!(
        prose.starts_with(
            "Step 1 `test:append` completed and its change was kept; Step 2 `test:write` failed and may have changed"
        ),
        "{prose}"
    );
}

#[test]
fn a_denied_action_ends_the_turn_with_a_refused_call_and_a_receipt() {
    let f = fixture(None);
    let out = f.turn(json!({
        "goal": "write the production secret",
        "plan": plan(json!([
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "claimed"}},
            {"tool": "test:write", "input": {"path": "out/secrets/prod.env", "line": "TOKEN=1"}},
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "never"}},
        ])),
    }));
    assert!(!out.output.success);
    assert_eq!(out.output.error_code(), Some("TURN_ABORTED"));
    let result = data(&out);
    assert_eq!(result["status"], "aborted");
    assert_eq!(result["error_code"], "POLICY_DENIED");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("ws.no-production-secrets"),
        "{result}"
    );
    // The first step changed the workspace and stays: partial, with prose.
    assert_eq!(result["cleanup_status"], "partial");
    assert!(
        result["recovery_action"]
            .as_str()
            .unwrap()
            .starts_with("Step 1 `test:append` completed and its change was kept"),
        "{result}"
    );
    assert_eq!(f.counters.get("test:write"), 0);
    assert_eq!(f.lines("out/log.txt"), vec!["claimed"]);
    assert!(!f.root.join("out/secrets/prod.env").exists());
    let denied = result["steps"][1]["receipt_id"].as_str().unwrap();
    assert_eq!(f.finished(denied)["error_code"], "POLICY_DENIED");
    assert_eq!(f.finished(denied)["result"], "denied");
    let aborted = f
        .events()
        .into_iter()
        .find(|e| e.kind.ends_with("turn_aborted"))
        .unwrap();
    assert_eq!(aborted.payload["cleanup_status"], "partial");
    // The outer call's own receipt records the aborted turn.
    assert_eq!(f.finished(&out.receipt_id)["error_code"], "TURN_ABORTED");

    // The policy-blocked demo: the plan expects the refusal and carries on.
    let out = f.turn(json!({
        "goal": "show the rule",
        "plan": plan(json!([
            {"tool": "test:write", "input": {"path": "out/secrets/prod.env", "line": "x"}, "expect": "refused"},
        ])),
    }));
    assert!(out.output.success, "{:?}", out.output);
    assert_eq!(data(&out)["steps"][0]["outcome"], "denied");
}

#[test]
fn limits_nested_turns_and_missing_providers_are_clear_errors() {
    let f = fixture(None);
    // No plan and no provider: refused before a turn exists.
    let out = f.turn(json!({"goal": "anything"}));
    assert_eq!(
        out.output.error_code(),
        Some("MODEL_PROVIDER_NOT_CONFIGURED")
    );
    // max_steps.
    let out = f.turn(json!({
        "goal": "loop",
        "max_steps": 1,
        "plan": plan(json!([{"tool": "test:read"}, {"tool": "test:read"}])),
    }));
    assert_eq!(data(&out)["error_code"], "TURN_STEP_LIMIT");
    assert_eq!(data(&out)["cleanup_status"], "clean");
    // A turn cannot start a turn.
    let out = f.turn(json!({
        "goal": "recurse",
        "plan": plan(json!([{"tool": TOOL_NAME, "input": {"goal": "inner"}}])),
    }));
    assert_eq!(data(&out)["error_code"], "AGENT_NESTED_TURN");
    // Bad turn ids never become file names.
    let out = f.turn(json!({"goal": "x", "turn_id": "../escape", "plan": plan(json!([]))}));
    assert_eq!(out.output.error_code(), Some("INVALID_INPUT"));
    // A malformed plan.
    let out =
        f.turn(json!({"goal": "x", "plan": {"steps": [{"tool": "test:read", "input": [1]}]}}));
    assert_eq!(
        out.output.error_code(),
        Some("INVALID_INPUT"),
        "{:?}",
        out.output
    );
    // Resuming with another goal is refused.
    let out = f.turn(json!({
        "goal": "a",
        "turn_id": "t-goal",
        "plan": plan(json!([{"tool": "test:publish", "input": {"path": "out/p.txt", "line": "p"}}])),
    }));
    assert_eq!(data(&out)["status"], "waiting_approval");
    let out = f.turn(json!({"goal": "b", "turn_id": "t-goal", "plan": plan(json!([]))}));
    assert_eq!(out.output.error_code(), Some("TURN_MISMATCH"));
    // Only the caller that started a turn may resume it.
    let out = f.runtime.dispatch(CallRequest {
        caller: "someone-else".into(),
        ..CallRequest::local(
            TOOL_NAME,
            json!({"goal": "a", "turn_id": "t-goal", "plan": plan(json!([]))}),
        )
    });
    assert_eq!(out.output.error_code(), Some("TURN_MISMATCH"));
    assert_eq!(f.counters.get("test:publish"), 0);
}

// ---------------------------------------------------------------------------------------------
// Killed mid-flight: a real child process, killed with SIGKILL inside a tool call

const CHILD_ENV: &str = "AGENT_RUNTIME_CRASH_CHILD";

/// Runs only as the child of `a_turn_killed_mid_flight_is_reconciled_as_aborted`.
#[test]
fn crash_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (root, turn_id, plan_json) = {
        let v: Value = serde_json::from_str(&spec).unwrap();
        (
            PathBuf::from(v["root"].as_str().unwrap()),
            v["turn_id"].as_str().unwrap().to_string(),
            v["plan"].clone(),
        )
    };
    let runtime = runtime_at(
        &root,
        Arc::new(Counters::default()),
        Arc::new(MemorySink::new()),
    );
    // The same caller as `Fixture::turn`: a turn is read back only by its starter.
    let _ = runtime.dispatch(CallRequest {
        caller: "ws-test".into(),
        surface: lumenflow_kernel::dispatch::Surface::Http,
        ..CallRequest::local(
            TOOL_NAME,
            json!({"goal": "crash", "turn_id": turn_id, "plan": {"steps": plan_json}}),
        )
    });
    panic!("the hanging tool returned");
}

fn run_child_until_inside_the_call(root: &Path, turn_id: &str, plan: Value) {
    let spec = json!({"root": root, "turn_id": turn_id, "plan": plan}).to_string();
    let _ = std::fs::remove_file(root.join("out-ready"));
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !root.join("out-ready").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited before reaching the hanging call: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the child never reached the hanging call"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup, like a power cut
    child.wait().unwrap();
}

#[test]
fn a_turn_killed_mid_flight_is_reconciled_at_startup_as_aborted_with_its_cleanup_status() {
    let wu_command =
        r#"lumenflow tool call software-delivery:wu_recover --input '{"wu_id":"WU-042"}'"#;
    let cases: [(&str, Value, &str, Option<&str>); 3] = [
        // Killed inside a mutating call about a work unit: needs_recovery, with the verbatim
        // recovery command (never run).
        (
            "t-crash-wu",
            json!([
                {"tool": "test:append", "input": {"path": "out/log.txt", "line": "claimed", "wu_id": "WU-042"}},
                {"tool": "test:hang", "input": {"wu_id": "WU-042"}},
            ]),
            "needs_recovery",
            Some(wu_command),
        ),
        // Killed inside a read-only call, nothing changed before: clean.
        (
            "t-crash-clean",
            json!([{"tool": "test:hang-read"}]),
            "clean",
            None,
        ),
        // Killed inside a read-only call after a change: partial (prose).
        (
            "t-crash-partial",
            json!([
                {"tool": "test:append", "input": {"path": "out/log.txt", "line": "claimed"}},
                {"tool": "test:hang-read"},
            ]),
            "partial",
            None,
        ),
    ];
    for (turn_id, steps, status, action) in cases {
        let (_dir, root) = scratch(None);
        run_child_until_inside_the_call(&root, turn_id, steps);

        // Startup: the kernel settles its orphaned receipts, the pack its turns.
        let sink = Arc::new(MemorySink::new());
        let counters = Arc::new(Counters::default());
        let runtime = runtime_at(&root, counters.clone(), sink.clone());
        // Two per killed turn: the turn's own call and the nested call it was inside.
        assert_eq!(runtime.reconcile_crashed().unwrap(), 2);
        let emitter = RuntimeEvents::new("ws-test", sink.clone(), None)
            .emitter_for(&agent_runtime::manifest());
        let settled = reconcile_interrupted_turns(&root, Some(&emitter)).unwrap();
        assert_eq!(settled.len(), 1, "{settled:?}");
        assert_eq!(settled[0].turn_id, turn_id);
        assert_eq!(settled[0].cleanup_status.as_str(), status, "{settled:?}");
        if let Some(action) = action {
            assert_eq!(settled[0].recovery_action.as_deref(), Some(action));
        }
        if status == "partial" {
            assert!(settled[0]
                .recovery_action
                .as_deref()
                .unwrap()
                .contains("test:append"));
        }
        // Reconciling again finds nothing: each turn is settled once.
        assert!(reconcile_interrupted_turns(&root, Some(&emitter))
            .unwrap()
            .is_empty());

        // One turn_aborted, passing the Q22 payload check (needs_recovery carries a command).
        let aborted: Vec<KernelEventV2> = sink
            .pushes()
            .into_iter()
            .flatten()
            .filter(|e| e.kind == "agent-runtime:turn_aborted")
            .collect();
        assert_eq!(aborted.len(), 1);
        assert_eq!(aborted[0].payload["cleanup_status"], status);
        lumenflow_contracts::payloads::parse_payload(&aborted[0].kind, &aborted[0].payload)
            .unwrap()
            .expect("a known kind");

        // The next call for the turn answers with the reconciled result; the interrupted step
        // is not run again, and the recovery command was not run.
        let f = Fixture {
            _dir: None,
            root: root.clone(),
            runtime,
            counters,
            sink,
        };
        let out = f.turn(json!({"goal": "crash", "turn_id": turn_id, "plan": plan(json!([]))}));
        assert_eq!(out.output.error_code(), Some("TURN_ABORTED"));
        assert_eq!(data(&out)["cleanup_status"], status);
        assert_eq!(data(&out)["error_code"], "TURN_INTERRUPTED");
        assert_eq!(
            f.counters.get("test:hang") + f.counters.get("test:hang-read"),
            0
        );
        assert_eq!(f.counters.get("test:append"), 0);
        let claimed = if status == "clean" { 0 } else { 1 };
        assert_eq!(f.lines("out/log.txt").len(), claimed);
    }
}

#[test]
fn a_killed_turn_is_also_reconciled_by_the_next_call_for_it() {
    let (dir, root) = scratch(None);
    run_child_until_inside_the_call(&root, "t-next-call", json!([{"tool": "test:hang"}]));
    let f = fixture_at(Some(dir), root);
    let out = f.turn(json!({"goal": "crash", "turn_id": "t-next-call", "plan": plan(json!([]))}));
    assert_eq!(
        out.output.error_code(),
        Some("TURN_ABORTED"),
        "{:?}",
        out.output
    );
    let result = data(&out);
    assert_eq!(result["cleanup_status"], "needs_recovery");
    assert_eq!(
        result["recovery_action"],
        r#"lumenflow tool call test:hang --input '{}'"#
    );
    let aborted = f
        .events()
        .into_iter()
        .find(|e| e.kind.ends_with("turn_aborted"))
        .unwrap();
    assert_eq!(aborted.payload["turn_id"], "t-next-call");
    drop(f);

    // Any later turn settles interrupted turns first, not only a call for the same turn.
    let (dir, root) = scratch(None);
    run_child_until_inside_the_call(&root, "t-dead", json!([{"tool": "test:hang-read"}]));
    let f = fixture_at(Some(dir), root);
    let out = f.turn(json!({"goal": "other", "plan": plan(json!([{"tool": "test:read"}]))}));
    assert_eq!(data(&out)["status"], "completed");
    let aborted = f
        .events()
        .into_iter()
        .find(|e| e.kind.ends_with("turn_aborted"))
        .unwrap();
    assert_eq!(aborted.payload["turn_id"], "t-dead");
    assert_eq!(aborted.payload["cleanup_status"], "clean");
}

// ---------------------------------------------------------------------------------------------
// The OpenAI-compatible provider against a local HTTP server speaking the same API

/// One recorded request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// A real HTTP/1.1 server on 127.0.0.1 answering `POST /v1/chat/completions` with the queued
/// `(status, body)` replies in order (the last one repeats).
struct FakeModel {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    hits: Arc<AtomicUsize>,
}

impl FakeModel {
    fn start(replies: Vec<(u16, String)>) -> FakeModel {
        FakeModel::start_slow(replies, Duration::ZERO)
    }

    /// Each reply is sent `delay` after its request arrived (a slow model).
    fn start_slow(replies: Vec<(u16, String)>, delay: Duration) -> FakeModel {
        let replies = replies
            .into_iter()
            .map(|(s, b)| (s, b, String::new()))
            .collect();
        FakeModel::start_with_headers(replies, delay)
    }

    /// Replies with extra header lines (`"retry-after: 1\r\n"`).
    fn start_with_headers(replies: Vec<(u16, String, String)>, delay: Duration) -> FakeModel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (seen2, hits2) = (seen.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = hits2.fetch_add(1, Ordering::SeqCst);
                let (status, body, headers) = replies[n.min(replies.len() - 1)].clone();
                std::thread::sleep(delay);
                if let Some(req) = serve(stream, status, &body, &headers) {
                    seen2.lock().unwrap().push(req);
                }
            }
        });
        FakeModel { port, seen, hits }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, status: u16, body: &str, headers: &str) -> Option<Seen> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut raw = vec![0u8; length];
    reader.read_exact(&mut raw).ok()?;
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
    Some(Seen {
        path,
        authorization,
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
    })
}

fn tool_call_reply(id: &str, function: &str, arguments: &str) -> (u16, String) {
    (
        200,
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "test-model",
            "choices": [{
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{"id": id, "type": "function", "function": {"name": function, "arguments": arguments}}],
                },
            }],
        })
        .to_string(),
    )
}

fn text_reply(text: &str) -> (u16, String) {
    (
        200,
        json!({"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]})
            .to_string(),
    )
}

#[test]
fn the_http_provider_drives_a_turn_against_a_local_openai_compatible_server() {
    let model = FakeModel::start(vec![
        tool_call_reply(
            "call_1",
            "test__append",
            r#"{"path":"out/model.txt","line":"from the model"}"#,
        ),
        text_reply("Appended the line."),
    ]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "append a line", "turn_id": "t-http"}));
    assert!(out.output.success, "{:?}", out.output);
    let result = data(&out);
    assert_eq!(result["status"], "completed");
    assert_eq!(result["provider"], "openai_compatible");
    assert_eq!(result["summary"], "Appended the line.");
    assert_eq!(f.lines("out/model.txt"), vec!["from the model"]);

    let seen = model.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test-key"));
    let first = &seen[0].body;
    assert_eq!(first["model"], "test-model");
    assert_eq!(
        first["messages"][1],
        json!({"role": "user", "content": "append a line"})
    );
    // The function definitions come from the manifests: every pinned, non-internal tool but
    // the turn itself, plus the abort function.
    let functions: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(functions.contains(&"test__append"), "{functions:?}");
    assert!(functions.contains(&"lumenflow_abort_turn"));
    assert!(!functions.iter().any(|f| f.starts_with("agent__")));
    let append = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "test__append")
        .unwrap();
    assert_eq!(
        append["function"]["parameters"]["required"],
        json!(["path", "line"])
    );
    // The second request carries the call and its governed result back to the model.
    let messages = seen[1].body["messages"].as_array().unwrap();
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(messages[3]["tool_call_id"], "call_1");
    let tool_result: Value =
        serde_json::from_str(messages[3]["content"].as_str().unwrap()).unwrap();
    assert_eq!(tool_result["outcome"], "success");
    // The step's receipt is the dispatch path's.
    let receipt = result["steps"][0]["receipt_id"].as_str().unwrap();
    assert_eq!(f.started(receipt)["surface"], "agent");
}

#[test]
fn a_model_reply_that_is_not_valid_json_aborts_the_turn_with_a_clear_error() {
    for reply in [
        tool_call_reply("c1", "test__append", "{not json"),
        (200, "this is not JSON at all".to_string()),
    ] {
        let model = FakeModel::start(vec![reply]);
        let f = fixture(Some(model.port));
        let out = f.turn(json!({"goal": "append a line"}));
        // Walk-E finding 6: a reply the turn cannot use stops this call, not the turn.
        assert_eq!(out.output.error_code(), Some("TURN_PROVIDER_FAILED"));
        let result = data(&out);
        assert_eq!(result["error_code"], "MODEL_REPLY_INVALID", "{result}");
        assert!(
            result["reason"].as_str().unwrap().contains("not"),
            "{result}"
        );
        assert_eq!(result["status"], "provider_failed");
        assert_eq!(result["resumable"], true);
        assert_eq!(f.counters.get("test:append"), 0);
        assert_eq!(
            f.finished(&out.receipt_id)["error_code"],
            "TURN_PROVIDER_FAILED"
        );
        assert!(!f
            .kinds()
            .contains(&"agent-runtime:turn_aborted".to_string()));
    }
}

#[test]
fn a_model_that_names_an_unknown_tool_gets_a_refused_call_with_a_receipt() {
    let model = FakeModel::start(vec![tool_call_reply("c1", "rm__rf", "{}")]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "delete everything"}));
    let result = data(&out);
    assert_eq!(result["status"], "aborted");
    assert_eq!(result["error_code"], "TOOL_NOT_FOUND");
    let receipt = result["steps"][0]["receipt_id"].as_str().unwrap();
    let fin = f.finished(receipt);
    assert_eq!(fin["error_code"], "TOOL_NOT_FOUND");
    assert_eq!(fin["result"], "denied");
}

#[test]
fn a_goal_that_asks_the_model_for_a_denied_action_ends_with_a_refused_call() {
    let model = FakeModel::start(vec![
        tool_call_reply(
            "c1",
            "test__write",
            r#"{"path":"out/secrets/prod.env","line":"TOKEN=1"}"#,
        ),
        text_reply("should never be asked"),
    ]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "write the production secret"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "POLICY_DENIED");
    assert_eq!(result["cleanup_status"], "clean");
    assert_eq!(f.counters.get("test:write"), 0);
    // A refusal is final: the model is not asked again to find a way around it.
    assert_eq!(model.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn http_errors_and_an_unreachable_provider_abort_with_clear_errors() {
    let model = FakeModel::start(vec![(500, r#"{"error":{"message":"overloaded"}}"#.into())]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "anything"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "MODEL_PROVIDER_HTTP_ERROR");
    assert!(result["reason"].as_str().unwrap().contains("500"));
    assert!(result["reason"].as_str().unwrap().contains("overloaded"));

    // Nothing listens on the port any more.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = fixture(Some(port));
    let out = f.turn(json!({"goal": "anything"}));
    assert_eq!(data(&out)["error_code"], "MODEL_PROVIDER_UNAVAILABLE");
    // The API key never appears in a result.
    assert!(!out.output.data.unwrap().to_string().contains("sk-test-key"));
}

#[test]
fn the_model_can_give_up_and_a_step_limit_bounds_a_chatty_model() {
    let model = FakeModel::start(vec![tool_call_reply(
        "c1",
        "lumenflow_abort_turn",
        r#"{"reason":"no such work unit"}"#,
    )]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "run gates on WU-999"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "MODEL_ABORTED");
    assert_eq!(result["reason"], "no such work unit");

    let model = FakeModel::start(vec![tool_call_reply(
        "c1",
        "test__read",
        r#"{"path":"workspace.yaml"}"#,
    )]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "read forever", "max_steps": 3}));
    let result = data(&out);
    assert_eq!(result["error_code"], "TURN_STEP_LIMIT");
    assert_eq!(f.counters.get("test:read"), 3);
}

#[test]
fn allow_tools_narrows_what_the_model_is_offered_and_may_call() {
    let model = FakeModel::start(vec![tool_call_reply(
        "c1",
        "test__append",
        r#"{"path":"out/x.txt","line":"x"}"#,
    )]);
    let (dir, root) = scratch(Some(model.port));
    let mut ws = std::fs::read_to_string(root.join("workspace.yaml")).unwrap();
    ws.push_str("  allow_tools: [\"test:read\"]\n");
    std::fs::write(root.join("workspace.yaml"), ws).unwrap();
    let f = fixture_at(Some(dir), root);
    let out = f.turn(json!({"goal": "append"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "AGENT_TOOL_NOT_ALLOWED", "{result}");
    // Walk-E finding 11: the refusal names the tool an operator can add to `allow_tools`, not
    // the function name the model used.
    assert_eq!(result["steps"][0]["tool"], "test:append", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("`test:append` is not in `agent_runtime.allow_tools`"),
        "{result}"
    );
    assert_eq!(f.counters.get("test:append"), 0);
    assert_refusal_recorded(
        &f,
        &result["steps"][0],
        "test:append",
        "AGENT_TOOL_NOT_ALLOWED",
    );
    let functions: Vec<String> = model.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(functions, vec!["test__read", "lumenflow_abort_turn"]);
}

#[test]
fn the_turn_events_match_the_published_payload_shapes() {
    let f = fixture(None);
    f.turn(json!({"goal": "ok", "plan": plan(json!([{"tool": "test:read"}]))}));
    f.turn(json!({"goal": "denied", "plan": plan(json!([{"tool": "test:write", "input": {"path": "out/secrets/a", "line": "x"}}]))}));
    let events = f.events();
    for kind in [
        "turn_started",
        "turn_completed",
        "turn_aborted",
        "tool_called",
    ] {
        assert!(events.iter().any(|e| e.kind.ends_with(kind)), "no {kind}");
    }
    for e in &events {
        assert_eq!(e.schema_version, 2);
        assert_eq!(e.from, "ws-test");
        lumenflow_contracts::payloads::parse_payload(&e.kind, &e.payload)
            .unwrap()
            .expect("a known kind");
    }
}

#[test]
fn a_model_turn_waits_for_approval_and_resumes_without_asking_the_model_again_for_that_step() {
    let model = FakeModel::start(vec![
        tool_call_reply(
            "c1",
            "test__append",
            r#"{"path":"out/log.txt","line":"before"}"#,
        ),
        tool_call_reply(
            "c2",
            "test__publish",
            r#"{"path":"out/published.txt","line":"p"}"#,
        ),
        text_reply("Published."),
    ]);
    let f = fixture(Some(model.port));
    let input = json!({"goal": "publish", "turn_id": "t-model-approval"});
    let first = f.turn(input.clone());
    let result = data(&first);
    assert_eq!(result["status"], "waiting_approval", "{result}");
    assert_eq!(model.hits.load(Ordering::SeqCst), 2);
    let approval_id = result["approval_id"].as_str().unwrap().to_string();
    LocalApprovals::open(&f.root)
        .decide(
            &approval_id,
            Decision::Granted {
                approver: "alice".into(),
                reason: "ok".into(),
                decided_at: Timestamp::now(),
            },
        )
        .unwrap();
    let second = f.turn(input);
    let result = data(&second);
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["summary"], "Published.");
    // One more model request (after the resumed step), not two: the pending call was stored.
    assert_eq!(model.hits.load(Ordering::SeqCst), 3);
    assert_eq!(f.counters.get("test:append"), 1);
    assert_eq!(f.counters.get("test:publish"), 1);
    let last = &model.requests()[2].body["messages"];
    assert_eq!(
        last.as_array().unwrap().len(),
        6,
        "system, user, two calls with their results"
    );
}

/// The host's start-up hook (`lumenflow_packs::on_runtime_start`, which the sidecar calls) is
/// what settles a killed turn when a runtime restarts, with its event.
#[test]
fn the_runtime_start_hook_settles_killed_turns_once() {
    let (_dir, root) = scratch(None);
    run_child_until_inside_the_call(&root, "t-crash-hook", json!([{"tool": "test:hang-read"}]));
    let sink = Arc::new(MemorySink::new());
    let runtime = runtime_at(&root, Arc::new(Counters::default()), sink.clone());
    assert!(lumenflow_packs::on_runtime_start(&runtime).is_empty());
    assert!(lumenflow_packs::on_runtime_start(&runtime).is_empty());
    let aborted: Vec<KernelEventV2> = sink
        .pushes()
        .into_iter()
        .flatten()
        .filter(|e| e.kind == "agent-runtime:turn_aborted")
        .collect();
    assert_eq!(aborted.len(), 1, "settled once: {aborted:?}");
    assert_eq!(aborted[0].payload["turn_id"], "t-crash-hook");
    assert_eq!(aborted[0].payload["cleanup_status"], "clean");
}

// ---------------------------------------------------------------------------------------------
// Walk-E findings

/// A workspace with extra lines under its `agent_runtime:` block.
fn fixture_with(provider_port: Option<u16>, agent_runtime_lines: &str) -> Fixture {
    let (dir, root) = scratch(provider_port);
    let mut ws = std::fs::read_to_string(root.join("workspace.yaml")).unwrap();
    if provider_port.is_none() {
        ws.push_str("agent_runtime:\n");
    }
    ws.push_str(agent_runtime_lines);
    std::fs::write(root.join("workspace.yaml"), ws).unwrap();
    fixture_at(Some(dir), root)
}

/// Every file under `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
            {
                found.push(path);
            }
        }
    }
    found
}

/// Walk-E finding 1 (ABR-02, ABR-03): a turn left `running` with a step named by a model is
/// settled with a recovery command whose every part is shell-quoted; pasted into a shell, it
/// runs `lumenflow` and nothing else. A name the runtime does not offer is not mutating, so a
/// made-up tool never yields `needs_recovery` at all.
#[test]
fn a_model_chosen_tool_name_cannot_inject_into_the_recovery_command() {
    let f = fixture(None);
    let hostile = "x;touch PWNED;#";
    // An interrupted turn as a dead process leaves it (a turn file from before this fix
    // recorded unknown tools as mutating).
    let store = f.root.join(".lumenflow/state/agent-runtime/turns");
    std::fs::create_dir_all(store.join("running")).unwrap();
    let now = Timestamp::now();
    let state = json!({
        "schema_version": 1, "turn_id": "t-inject", "goal": "inj", "caller": "ws-test",
        "run_id": "run-1", "provider": {"kind": "scripted", "steps": []}, "max_steps": 5,
        "status": "running", "started_at": now, "updated_at": now,
        "steps": [{"index": 1, "call_id": "c1", "tool": hostile, "input": {"a": "it's $(id)"},
                   "mutating": true, "phase": "started", "started_at": now}],
    });
    std::fs::write(store.join("t-inject.json"), state.to_string()).unwrap();
    std::fs::write(store.join("running/t-inject"), b"").unwrap();
    let out = f.turn(json!({"goal": "inj", "turn_id": "t-inject"}));
    let result = data(&out);
    assert_eq!(result["cleanup_status"], "needs_recovery", "{result}");
    let action = result["recovery_action"].as_str().unwrap();
    assert_eq!(
        action,
        r#"lumenflow tool call 'x;touch PWNED;#' --input '{"a":"it'\''s $(id)"}'"#
    );
    // Pasted into a shell with a stand-in `lumenflow` that prints its arguments.
    let bin = f.root.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("lumenflow"), "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("lumenflow"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let run = std::process::Command::new("sh")
        .arg("-c")
        .arg(action)
        .current_dir(&f.root)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    let args = String::from_utf8(run.stdout).unwrap();
    assert_eq!(
        args,
        "tool\ncall\nx;touch PWNED;#\n--input\n{\"a\":\"it's $(id)\"}\n"
    );
    assert!(
        !f.root.join("PWNED").exists(),
        "the pasted command ran the model's shell code"
    );

    // A made-up name from a live model: refused with a receipt, recorded as not mutating.
    let model = FakeModel::start(vec![tool_call_reply("c1", hostile, "{}")]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "inj", "turn_id": "t-inject-live"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "TOOL_NOT_FOUND", "{result}");
    assert_eq!(result["cleanup_status"], "clean");
    let file: Value = serde_json::from_slice(
        &std::fs::read(
            f.root
                .join(".lumenflow/state/agent-runtime/turns/t-inject-live.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(file["steps"][0]["mutating"], false, "{file}");
}

/// Walk-E finding 8: a recovery command does not embed a large input; it reads it from the
/// turn file, so the `turn_aborted` event stays small.
#[test]
fn a_recovery_command_for_a_large_input_reads_it_from_the_turn_file() {
    let (dir, root) = scratch(None);
    let big = "A".repeat(64 * 1024);
    run_child_until_inside_the_call(
        &root,
        "t-big",
        json!([{"tool": "test:hang", "input": {"junk": big}}]),
    );
    let f = fixture_at(Some(dir), root);
    let out = f.turn(json!({"goal": "crash", "turn_id": "t-big"}));
    let result = data(&out);
    assert_eq!(result["cleanup_status"], "needs_recovery", "{result}");
    let action = result["recovery_action"].as_str().unwrap();
    assert_eq!(
        action,
        r#"lumenflow tool call test:hang --input "$(jq -c '.steps[0].input' .lumenflow/state/agent-runtime/turns/t-big.json)""#
    );
    let aborted = f
        .events()
        .into_iter()
        .find(|e| e.kind.ends_with("turn_aborted"))
        .unwrap();
    assert!(Value::Object(aborted.payload.clone()).to_string().len() < 2048);
}

/// Walk-E finding 2 (and 12): a model server that echoes the API key (or any bearer value) in
/// an error body does not get it into the result, the turn file, the evidence or the events;
/// a `base_url` with credentials is refused without quoting them.
#[test]
fn the_api_key_echoed_by_the_model_server_is_redacted_everywhere() {
    let echo = r#"{"error":{"message":"Incorrect API key provided: sk-test-key. Also got Authorization: Bearer sk-proxy-0123456789abcdef and api_key=hunter2hunter2"}}"#;
    let model = FakeModel::start(vec![(401, echo.to_string())]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "anything", "turn_id": "t-leak"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "MODEL_PROVIDER_HTTP_ERROR");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.contains("401") && reason.contains("[redacted]"),
        "{reason}"
    );
    assert!(reason.contains("Incorrect API key provided"), "{reason}");
    for secret in ["sk-test-key", "sk-proxy-0123456789abcdef", "hunter2hunter2"] {
        assert!(!out.output.error.as_ref().unwrap().message.contains(secret));
        assert!(!result.to_string().contains(secret), "{secret} in {result}");
        assert_eq!(
            files_containing(&f.root, secret),
            Vec::<PathBuf>::new(),
            "{secret}"
        );
        assert!(!f.events().iter().any(|e| Value::Object(e.payload.clone())
            .to_string()
            .contains(secret)));
    }
    // The key went where it belongs: the request header.
    assert_eq!(
        model.requests()[0].authorization.as_deref(),
        Some("Bearer sk-test-key")
    );

    // Credentials in base_url are refused, without echoing them.
    let (dir, root) = scratch(None);
    let mut ws = std::fs::read_to_string(root.join("workspace.yaml")).unwrap();
    ws.push_str("agent_runtime:\n  provider:\n    base_url: http://user:pw-secret-99@127.0.0.1:9/v1\n    model: m\n");
    std::fs::write(root.join("workspace.yaml"), ws).unwrap();
    let f = fixture_at(Some(dir), root);
    let out = f.turn(json!({"goal": "anything"}));
    assert_eq!(
        out.output.error_code(),
        Some("MODEL_PROVIDER_NOT_CONFIGURED")
    );
    let message = &out.output.error.as_ref().unwrap().message;
    assert!(!message.contains("pw-secret-99"), "{message}");
    assert!(
        message.contains("http://[redacted]@127.0.0.1:9/v1"),
        "{message}"
    );
}

/// Walk-E finding 3: the workspace's `max_steps` is a ceiling a caller can lower but not raise,
/// and `max_turn_seconds` bounds how long one call drives a turn.
#[test]
fn the_workspace_step_limit_is_a_ceiling_and_a_turn_has_a_time_limit() {
    let model = FakeModel::start(vec![tool_call_reply("c1", "test__read", "{}")]);
    let f = fixture_with(Some(model.port), "  max_steps: 2\n");
    let out = f.turn(json!({"goal": "loop", "max_steps": 40}));
    let result = data(&out);
    assert_eq!(result["error_code"], "TURN_STEP_LIMIT", "{result}");
    assert_eq!(result["max_steps"], 2);
    assert_eq!(f.counters.get("test:read"), 2);
    // Asking for fewer is honoured.
    let out = f.turn(json!({"goal": "loop", "max_steps": 1}));
    assert_eq!(data(&out)["max_steps"], 1);
    assert_eq!(f.counters.get("test:read"), 3);

    // A slow model and a one-second budget: the turn stops at the limit, well before its steps.
    let model = FakeModel::start_slow(
        vec![tool_call_reply("c1", "test__read", "{}")],
        Duration::from_millis(400),
    );
    let f = fixture_with(Some(model.port), "  max_turn_seconds: 1\n");
    let started = Instant::now();
    let out = f.turn(json!({"goal": "loop"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "TURN_TIME_LIMIT", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("`agent_runtime.max_turn_seconds`"),
        "{result}"
    );
    assert!(f.counters.get("test:read") < 5);
    assert!(started.elapsed() < Duration::from_secs(4));
    // The schema and the strict reader both refuse a zero budget.
    let err = agent_runtime::config::AgentRuntimeConfig::from_value(json!({"max_turn_seconds": 0}))
        .unwrap_err();
    assert!(err
        .to_string()
        .contains("`max_turn_seconds` must be between 1 and 86400"));
}

/// Walk-E finding 4: a finished turn is bound to its caller and its goal. Another caller
/// naming its id learns nothing; the starter reusing the id with another goal is refused; the
/// same call again gets the stored result, marked as a replay.
#[test]
fn a_finished_turn_is_read_only_by_its_starter_and_only_for_its_goal() {
    let f = fixture(None);
    let alice = |input: Value| {
        f.runtime.dispatch(CallRequest {
            caller: "ws:phone:alice".into(),
            surface: lumenflow_kernel::dispatch::Surface::Http,
            ..CallRequest::local(TOOL_NAME, input)
        })
    };
    let goal = json!({"goal": "alice private goal", "turn_id": "t-owned",
                      "plan": plan(json!([{"tool": "test:read"}]))});
    let first = alice(goal.clone());
    assert!(first.output.success, "{:?}", first.output);
    assert!(data(&first).get("replayed").is_none());

    let bob = f.runtime.dispatch(CallRequest {
        caller: "ws:phone:bob".into(),
        surface: lumenflow_kernel::dispatch::Surface::Http,
        ..CallRequest::local(TOOL_NAME, json!({"goal": "anything", "turn_id": "t-owned"}))
    });
    assert_eq!(bob.output.error_code(), Some("TURN_MISMATCH"));
    let shown = serde_json::to_string(&bob.output).unwrap();
    assert!(!shown.contains("alice"), "{shown}");
    assert!(!shown.contains("hello"), "{shown}");

    let other_goal = alice(json!({"goal": "tonight's goal", "turn_id": "t-owned",
                                  "plan": plan(json!([{"tool": "test:read"}]))}));
    assert_eq!(other_goal.output.error_code(), Some("TURN_ID_CONFLICT"));
    assert_eq!(f.counters.get("test:read"), 1);

    let again = alice(goal);
    assert!(again.output.success);
    assert_eq!(data(&again)["replayed"], true);
    assert!(data(&again)["ended_at"].is_string());
    assert_eq!(f.counters.get("test:read"), 1, "nothing ran again");
}

/// Walk-E finding 7 (ABR-02): a step the kernel refused before the tool started (the
/// workspace file changed, a missing `required_env`, ...) changed nothing: the turn is
/// `clean`, with no "may have changed" prose and no `wu_recover` hint.
#[test]
fn a_step_refused_before_it_ran_leaves_the_turn_clean() {
    for code in [
        "WORKSPACE_CHANGED",
        "REQUIRED_ENV_MISSING",
        "INTEGRITY_MISMATCH",
    ] {
        let f = fixture(None);
        let out = f.turn(json!({
            "goal": "claim",
            "plan": plan(json!([
                {"tool": "test:append", "input": {"path": "out/log.txt", "line": "x",
                                                  "wu_id": "WU-32", "fail_before_writing": code}},
            ])),
        }));
        let result = data(&out);
        assert_eq!(result["error_code"], code, "{result}");
        assert_eq!(result["cleanup_status"], "clean", "{code}: {result}");
        assert!(result.get("recovery_action").is_none(), "{result}");
    }
    // A failure the tool itself reports still may have changed something.
    let f = fixture(None);
    let out = f.turn(json!({
        "goal": "claim",
        "plan": plan(json!([
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "x",
                                              "fail_before_writing": "GIT_FAILED"}},
        ])),
    }));
    assert_eq!(data(&out)["cleanup_status"], "partial");
}

/// Walk-E finding 8: a model reply larger than 4 MiB and tool arguments larger than 1 MiB
/// abort the turn with a clear error, and nothing runs.
#[test]
fn oversized_model_replies_and_tool_arguments_are_refused() {
    let huge = (200, "x".repeat(5 * 1024 * 1024));
    let model = FakeModel::start(vec![huge]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "huge reply"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "MODEL_REPLY_INVALID", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("larger than 4 MiB"),
        "{result}"
    );

    let args = json!({"path": "out/x.txt", "line": "A".repeat(1024 * 1024 + 1)}).to_string();
    let model = FakeModel::start(vec![tool_call_reply("c1", "test__append", &args)]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "big args"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "MODEL_REPLY_INVALID", "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.contains("at most 1048576 bytes"), "{reason}");
    assert!(
        reason.len() < 1024,
        "the reason does not quote the arguments"
    );
    assert_eq!(f.counters.get("test:append"), 0);
}

/// Walk-E finding 11: a call to the turn itself by its function name is refused as a nested
/// turn, naming the tool.
#[test]
fn a_nested_turn_by_function_name_is_refused_by_tool_name() {
    let model = FakeModel::start(vec![tool_call_reply(
        "c1",
        "agent__execute-turn",
        r#"{"goal":"inner"}"#,
    )]);
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "recurse"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "AGENT_NESTED_TURN", "{result}");
    assert_eq!(result["steps"][0]["tool"], TOOL_NAME);
    assert_refusal_recorded(&f, &result["steps"][0], TOOL_NAME, "AGENT_NESTED_TURN");
    assert_eq!(result["cleanup_status"], "clean");
}

/// Walk-E finding 11 (Q40, KRN-10): a step the turn refuses by its own rule has receipts in the
/// kernel log (started, then `denied` with the code, surface `agent`) and an
/// `agent-runtime:tool_called` event, like every refusal of the dispatch path.
fn assert_refusal_recorded(f: &Fixture, step: &Value, tool: &str, code: &str) {
    assert_eq!(step["outcome"], "denied", "{step}");
    let receipt = step["receipt_id"]
        .as_str()
        .expect("the refused step has a receipt");
    let started = f.started(receipt);
    assert_eq!(started["tool_name"], tool);
    assert_eq!(started["surface"], "agent");
    assert!(started["input_hash"].as_str().is_some(), "{started:?}");
    let finished = f.finished(receipt);
    assert_eq!(finished["result"], "denied");
    assert_eq!(finished["error_code"], code);
    let called: Vec<KernelEventV2> = f
        .events()
        .into_iter()
        .filter(|e| e.kind == "agent-runtime:tool_called" && e.payload["receipt_id"] == receipt)
        .collect();
    assert_eq!(called.len(), 1, "one tool_called for {tool}");
    assert_eq!(called[0].payload["tool_name"], tool);
    assert_eq!(called[0].payload["outcome"], "denied");
    assert_eq!(called[0].payload["error_code"], code);
    assert_eq!(called[0].payload["receipt_id"], receipt);
}

/// Walk-E finding 5: denying a waiting turn's approval ends the turn (`APPROVAL_DENIED`, with
/// its honest cleanup status); calling it again does not dispatch the step or open a new
/// approval.
#[test]
fn a_denied_approval_ends_the_waiting_turn() {
    let f = fixture(None);
    let input = json!({
        "goal": "publish",
        "turn_id": "t-denied",
        "plan": plan(json!([
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "before"}},
            {"tool": "test:publish", "input": {"path": "out/p.txt", "line": "p"}},
        ])),
    });
    let first = f.turn(input.clone());
    assert_eq!(data(&first)["status"], "waiting_approval");
    let approval_id = data(&first)["approval_id"].as_str().unwrap().to_string();
    let approvals = LocalApprovals::open(&f.root);
    approvals
        .decide(
            &approval_id,
            Decision::Denied {
                approver: "alice".into(),
                reason: "no".into(),
                decided_at: Timestamp::now(),
            },
        )
        .unwrap();
    let before = approvals
        .list(&lumenflow_kernel::approvals::ApprovalFilter::all(
            Timestamp::now(),
        ))
        .unwrap()
        .approvals
        .len();
    let second = f.turn(input.clone());
    assert_eq!(second.output.error_code(), Some("TURN_ABORTED"));
    let result = data(&second);
    assert_eq!(result["error_code"], "APPROVAL_DENIED", "{result}");
    assert!(result["reason"].as_str().unwrap().contains("by alice"));
    assert_eq!(result["cleanup_status"], "partial", "step 1 was kept");
    assert_eq!(f.counters.get("test:publish"), 0);
    assert_eq!(
        approvals
            .list(&lumenflow_kernel::approvals::ApprovalFilter::all(
                Timestamp::now()
            ))
            .unwrap()
            .approvals
            .len(),
        before,
        "no new approval was requested"
    );
    // Asked again: the stored ending, nothing dispatched.
    let third = f.turn(input);
    assert_eq!(data(&third)["error_code"], "APPROVAL_DENIED");
    assert_eq!(data(&third)["replayed"], true);
}

/// Walk-E finding 6: a key variable that is not set is refused before the turn exists (no turn
/// file, no `turn_started`, the id is not used up), like a bad `base_url`; once it is exported
/// the same turn_id runs as a new turn, not as a replay of the old error.
#[test]
fn a_missing_api_key_is_refused_before_the_turn_exists() {
    const VAR: &str = "AGENT_RUNTIME_TEST_KEY_FINDING_SIX";
    std::env::remove_var(VAR);
    let model = FakeModel::start(vec![text_reply("done")]);
    let (dir, root) = scratch(Some(model.port));
    let ws = std::fs::read_to_string(root.join("workspace.yaml"))
        .unwrap()
        .replace(
            "api_key_env: AGENT_RUNTIME_API_KEY",
            &format!("api_key_env: {VAR}"),
        );
    std::fs::write(root.join("workspace.yaml"), ws).unwrap();
    let f = fixture_at(Some(dir), root);
    let input = json!({"goal": "hello", "turn_id": "t-key"});
    let out = f.turn(input.clone());
    assert_eq!(
        out.output.error_code(),
        Some("MODEL_PROVIDER_NOT_CONFIGURED"),
        "{:?}",
        out.output
    );
    assert!(out.output.error.as_ref().unwrap().message.contains(VAR));
    assert!(!f
        .root
        .join(".lumenflow/state/agent-runtime/turns/t-key.json")
        .exists());
    assert!(!f
        .kinds()
        .iter()
        .any(|k| k.starts_with("agent-runtime:turn_")));
    assert_eq!(model.hits.load(Ordering::SeqCst), 0);

    std::env::set_var(VAR, "sk-exported-later");
    let out = f.turn(input);
    assert!(out.output.success, "{:?}", out.output);
    let result = data(&out);
    assert_eq!(result["status"], "completed");
    assert!(result.get("replayed").is_none(), "{result}");
    assert_eq!(
        model.requests()[0].authorization.as_deref(),
        Some("Bearer sk-exported-later")
    );
}

/// Walk-E finding 6: HTTP 429 and 5xx are retried with backoff, a `Retry-After` within the cap
/// is honoured, and one beyond it is not waited for.
#[test]
fn transient_provider_failures_are_retried_with_backoff_and_retry_after() {
    let rate_limited = (
        429,
        r#"{"error":{"message":"rate limit"}}"#.to_string(),
        "retry-after: 1\r\n".to_string(),
    );
    let unavailable = (
        503,
        r#"{"error":{"message":"restarting"}}"#.to_string(),
        String::new(),
    );
    let (s, b) = tool_call_reply("c1", "test__read", "{}");
    let (s2, b2) = text_reply("read it");
    let model = FakeModel::start_with_headers(
        vec![
            rate_limited.clone(),
            unavailable,
            (s, b, String::new()),
            (s2, b2, String::new()),
        ],
        Duration::ZERO,
    );
    let f = fixture(Some(model.port));
    let started = Instant::now();
    let out = f.turn(json!({"goal": "read"}));
    assert!(out.output.success, "{:?}", out.output);
    assert_eq!(data(&out)["status"], "completed");
    assert_eq!(model.hits.load(Ordering::SeqCst), 4);
    assert_eq!(f.counters.get("test:read"), 1);
    // 1 s asked by the server, then the 0.5 s backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );

    // A server that wants an hour is not waited for: one attempt, and the turn can resume.
    let model = FakeModel::start_with_headers(
        vec![(429, rate_limited.1, "retry-after: 3600\r\n".to_string())],
        Duration::ZERO,
    );
    let f = fixture(Some(model.port));
    let out = f.turn(json!({"goal": "read"}));
    assert_eq!(out.output.error_code(), Some("TURN_PROVIDER_FAILED"));
    let result = data(&out);
    assert_eq!(result["status"], "provider_failed");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("retry after 3600 s"),
        "{result}"
    );
    assert_eq!(model.hits.load(Ordering::SeqCst), 1);

    // A server that keeps failing: 1 + max_retries attempts, then the turn stops.
    let model = FakeModel::start(vec![(500, r#"{"error":{"message":"down"}}"#.into())]);
    let f = fixture_with(Some(model.port), "    max_retries: 1\n");
    let out = f.turn(json!({"goal": "read"}));
    let result = data(&out);
    assert_eq!(result["error_code"], "MODEL_PROVIDER_HTTP_ERROR");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{result}"
    );
    assert_eq!(model.hits.load(Ordering::SeqCst), 2);
}

/// Walk-E finding 6: a turn stopped by a provider failure resumes with the same turn_id from
/// its last finished step (no step runs twice), and can be cancelled instead (ABR-01, ABR-02,
/// Q22).
#[test]
fn a_provider_failure_leaves_the_turn_resumable() {
    let model = FakeModel::start(vec![
        tool_call_reply("c1", "test__append", r#"{"path":"out/r.txt","line":"one"}"#),
        (500, r#"{"error":{"message":"overloaded"}}"#.into()),
        text_reply("Appended."),
    ]);
    let f = fixture_with(Some(model.port), "    max_retries: 0\n");
    let input = json!({"goal": "append one", "turn_id": "t-resume"});
    let first = f.turn(input.clone());
    assert_eq!(first.output.error_code(), Some("TURN_PROVIDER_FAILED"));
    let result = data(&first);
    assert_eq!(result["status"], "provider_failed", "{result}");
    assert_eq!(result["error_code"], "MODEL_PROVIDER_HTTP_ERROR");
    assert_eq!(result["resumable"], true);
    assert!(!f.kinds().iter().any(|k| k == "agent-runtime:turn_aborted"));

    let second = f.turn(input.clone());
    assert!(second.output.success, "{:?}", second.output);
    let result = data(&second);
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["summary"], "Appended.");
    assert_eq!(result["tool_calls"], 1);
    assert_eq!(f.counters.get("test:append"), 1);
    assert_eq!(f.lines("out/r.txt"), vec!["one"]);
    assert_eq!(model.hits.load(Ordering::SeqCst), 3);

    // The same failure, then a cancel: aborted with its honest cleanup status.
    let model = FakeModel::start(vec![
        tool_call_reply("c1", "test__append", r#"{"path":"out/c.txt","line":"one"}"#),
        (500, r#"{"error":{"message":"overloaded"}}"#.into()),
    ]);
    let f = fixture_with(Some(model.port), "    max_retries: 0\n");
    f.turn(json!({"goal": "append", "turn_id": "t-c"}));
    let out = f.turn(json!({"turn_id": "t-c", "action": "cancel"}));
    assert!(out.output.success, "{:?}", out.output);
    let result = data(&out);
    assert_eq!(result["status"], "aborted");
    assert_eq!(result["error_code"], "TURN_CANCELLED");
    assert_eq!(result["cleanup_status"], "partial", "{result}");
    assert_eq!(model.hits.load(Ordering::SeqCst), 2);
}

/// Walk-E finding 5: `action: status` reads a waiting turn without dispatching anything (no new
/// approval request, no nested receipt); `action: cancel` ends it as aborted with
/// `cleanup_status` and `recovery_action` (ABR-01, ABR-02) and `turn_aborted` (Q22); a replayed
/// ending says it is a replay.
#[test]
fn a_waiting_turn_can_be_checked_read_only_and_cancelled() {
    let f = fixture(None);
    let input = json!({
        "goal": "publish",
        "turn_id": "t-cancel",
        "plan": plan(json!([
            {"tool": "test:append", "input": {"path": "out/log.txt", "line": "before"}},
            {"tool": "test:publish", "input": {"path": "out/p.txt", "line": "p"}},
        ])),
    });
    let first = f.turn(input.clone());
    assert_eq!(data(&first)["status"], "waiting_approval");
    let approval_id = data(&first)["approval_id"].as_str().unwrap().to_string();
    let approvals = LocalApprovals::open(&f.root);
    let all = || {
        approvals
            .list(&lumenflow_kernel::approvals::ApprovalFilter::all(
                Timestamp::now(),
            ))
            .unwrap()
            .approvals
            .len()
    };
    let approvals_before = all();
    let nested_before = f
        .events()
        .iter()
        .filter(|e| e.kind == "agent-runtime:tool_called" && e.payload["tool_name"] != TOOL_NAME)
        .count();
    let turn_file = f
        .root
        .join(".lumenflow/state/agent-runtime/turns/t-cancel.json");
    let file_before = std::fs::read(&turn_file).unwrap();

    for status_input in [
        json!({"turn_id": "t-cancel", "action": "status"}),
        json!({"turn_id": "t-cancel", "action": "status", "goal": "publish"}),
    ] {
        let status = f.turn(status_input);
        assert!(status.output.success, "{:?}", status.output);
        let view = data(&status);
        assert_eq!(view["status"], "waiting_approval", "{view}");
        assert_eq!(view["pending_step"]["tool"], "test:publish");
        assert_eq!(view["approval_id"], approval_id.as_str());
    }
    assert_eq!(all(), approvals_before, "no new approval request");
    assert_eq!(f.counters.get("test:publish"), 0);
    assert_eq!(
        f.events()
            .iter()
            .filter(|e| e.kind == "agent-runtime:tool_called" && e.payload["tool_name"] != TOOL_NAME)
            .count(),
        nested_before,
        "nothing dispatched"
    );
    assert_eq!(
        std::fs::read(&turn_file).unwrap(),
        file_before,
        "nothing written"
    );

    // Only the starter may read or cancel it; an unknown id is named.
    let other = f.runtime.dispatch(CallRequest {
        caller: "someone-else".into(),
        surface: lumenflow_kernel::dispatch::Surface::Http,
        ..CallRequest::local(
            TOOL_NAME,
            json!({"turn_id": "t-cancel", "action": "cancel"}),
        )
    });
    assert_eq!(other.output.error_code(), Some("TURN_MISMATCH"));
    let unknown = f.turn(json!({"turn_id": "t-nope", "action": "status"}));
    assert_eq!(unknown.output.error_code(), Some("TURN_NOT_FOUND"));
    let no_id = f.turn(json!({"action": "status"}));
    assert_eq!(no_id.output.error_code(), Some("INVALID_INPUT"));

    let cancel = f.turn(json!({"turn_id": "t-cancel", "action": "cancel"}));
    assert!(cancel.output.success, "{:?}", cancel.output);
    let result = data(&cancel);
    assert_eq!(result["status"], "aborted");
    assert_eq!(result["error_code"], "TURN_CANCELLED");
    assert_eq!(result["cleanup_status"], "partial", "step 1 was kept");
    assert!(result["recovery_action"]
        .as_str()
        .unwrap()
        .contains("Step 1"));
    assert!(result["reason"].as_str().unwrap().contains(&approval_id));
    let aborted: Vec<KernelEventV2> = f
        .events()
        .into_iter()
        .filter(|e| e.kind == "agent-runtime:turn_aborted")
        .collect();
    assert_eq!(aborted.len(), 1);
    assert_eq!(aborted[0].payload["turn_id"], "t-cancel");
    assert_eq!(aborted[0].payload["cleanup_status"], "partial");
    assert!(aborted[0].payload["recovery_action"].is_string());

    // A grant given now is never used by the cancelled turn.
    approvals
        .decide(
            &approval_id,
            Decision::Granted {
                approver: "alice".into(),
                reason: "late".into(),
                decided_at: Timestamp::now(),
            },
        )
        .unwrap();
    let status = f.turn(json!({"turn_id": "t-cancel", "action": "status"}));
    assert_eq!(data(&status)["status"], "aborted");
    assert_eq!(data(&status)["error_code"], "TURN_CANCELLED");
    let again = f.turn(json!({"turn_id": "t-cancel", "action": "cancel"}));
    assert_eq!(again.output.error_code(), Some("TURN_ALREADY_ENDED"));
    let replay = f.turn(input);
    assert_eq!(replay.output.error_code(), Some("TURN_ABORTED"));
    assert_eq!(data(&replay)["replayed"], true);
    assert!(
        replay
            .output
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("(replayed: this turn ended at"),
        "{:?}",
        replay.output
    );
    assert_eq!(f.counters.get("test:publish"), 0);
}
