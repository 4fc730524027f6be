//! What an agent turn adds per tool call over a direct dispatch of the same tool (issue 8,
//! "Figures").
//!
//! Both sides go through the same `Runtime::dispatch` on a scratch workspace, with the same
//! in-process tool (it does nothing, so only the governance is measured): the direct side
//! dispatches it; the turn side dispatches `agent:execute-turn` with a scripted plan of
//! [`STEPS`] calls of it, and its time is divided by [`STEPS`]. The difference is the turn's own
//! work per call: the durable turn state written before and after each step (temp file, fsync,
//! rename, directory fsync), the nested dispatch and its receipts, plus the turn's fixed cost
//! (its own receipts, config, catalogue, evidence) spread over the steps.
//!
//! After criterion's report, a plain measurement prints the ratio:
//! `cargo bench -p lumenflow-packs --bench turn_overhead`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::{
    BuiltinCall, CallRequest, EvidenceStore, RegisteredTool, Runtime, ToolRegistry,
};
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions};
use lumenflow_kernel::manifest::parse_manifest;
use lumenflow_kernel::workspace::read_workspace;
use lumenflow_packs::agent_runtime::{self, TOOL_NAME};
use serde_json::{json, Value};

/// Calls per scripted turn.
const STEPS: usize = 20;

const BENCH_PACK: &str = r#"id: bench-tools
version: 1.0.0
task_types: [task]
tools:
  - name: "bench:noop"
    entry: tools/tool.sh
    permission: read
    required_scopes: [{type: path, pattern: "**", access: read}]
    input_schema:
      type: object
      properties: {n: {type: integer}}
"#;

const WORKSPACE: &str = r#"id: ws
name: Bench
packs:
  - {id: agent-runtime, version: 0.1.0, integrity: dev, source: local}
  - {id: bench-tools, version: 1.0.0, integrity: dev, source: local}
lanes: []
security:
  allowed_scopes:
    - {type: path, pattern: "**", access: read}
    - {type: path, pattern: ".lumenflow/state/agent-runtime/**", access: write}
memory_namespace: m
event_namespace: e
sandbox: none
"#;

fn runtime(root: &Path) -> Runtime {
    std::fs::write(root.join("workspace.yaml"), WORKSPACE).unwrap();
    let pack = root.join("packs/bench-tools");
    std::fs::create_dir_all(pack.join("tools")).unwrap();
    std::fs::write(pack.join("manifest.yaml"), BENCH_PACK).unwrap();
    std::fs::write(pack.join("tools/tool.sh"), "#!/bin/sh\n").unwrap();
    let doc = read_workspace(root).unwrap();
    let bench = parse_manifest(SourceFile::new("manifest.yaml", BENCH_PACK))
        .unwrap()
        .manifest;
    let agent = agent_runtime::manifest();
    let mut registry = ToolRegistry::new();
    registry
        .register(
            RegisteredTool::builtin(
                &bench,
                "dev",
                "bench:noop",
                Arc::new(|_: &BuiltinCall<'_>| ToolOutput::ok(json!({"ok": true}))),
            )
            .unwrap(),
        )
        .unwrap();
    registry
        .register(
            RegisteredTool::builtin(
                &agent,
                "dev",
                TOOL_NAME,
                agent_runtime::tools()[TOOL_NAME].clone(),
            )
            .unwrap(),
        )
        .unwrap();
    let log = EventLog::open(&eventlog::default_path(root), LogOptions::default()).unwrap();
    let evidence = EvidenceStore::open(&root.join(".lumenflow/kernel/evidence")).unwrap();
    Runtime::new(root, &doc, registry, vec![agent, bench], log, evidence)
}

fn direct(rt: &Runtime, n: usize) {
    let out = rt.dispatch(CallRequest::local("bench:noop", json!({"n": n})));
    assert!(out.output.success, "{:?}", out.output);
}

fn turn(rt: &Runtime, plan: &Value) {
    let out = rt.dispatch(CallRequest::local(
        TOOL_NAME,
        json!({"goal": "bench", "plan": {"steps": plan}, "max_steps": STEPS}),
    ));
    assert!(out.output.success, "{:?}", out.output);
}

fn plan() -> Value {
    Value::Array(
        (0..STEPS)
            .map(|n| json!({"tool": "bench:noop", "input": {"n": n}}))
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir.path().canonicalize().unwrap());
    let plan = plan();
    let mut group = c.benchmark_group("turn_overhead");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("direct_dispatch_per_call", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            direct(&rt, n)
        })
    });
    group.bench_function("scripted_turn_per_call", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                turn(&rt, &plan);
            }
            start.elapsed() / STEPS as u32
        })
    });
    group.finish();
}

/// The ratio, measured plainly after criterion (criterion does not hand its estimates back),
/// on the disk of the temp folder and, where it exists, on `/dev/shm` (memory: fsync is nearly
/// free there, so what remains is the CPU cost of the turn).
fn ratio() {
    ratio_in("disk (temp folder)", &std::env::temp_dir());
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        ratio_in("memory (/dev/shm)", shm);
    }
}

fn ratio_in(label: &str, parent: &Path) {
    let dir = tempfile::tempdir_in(parent).unwrap();
    let rt = runtime(&dir.path().canonicalize().unwrap());
    let plan = plan();
    // Warm up both paths (catalogue cache, prepared scopes, page cache).
    for n in 0..50 {
        direct(&rt, n);
    }
    turn(&rt, &plan);
    let turns = 25;
    let calls = turns * STEPS;
    let start = Instant::now();
    for n in 0..calls {
        direct(&rt, n);
    }
    let direct_per_call = start.elapsed() / calls as u32;
    let start = Instant::now();
    for _ in 0..turns {
        turn(&rt, &plan);
    }
    let turn_per_call = start.elapsed() / calls as u32;
    println!(
        "turn_overhead [{label}]: direct dispatch {:.1} µs/call, scripted turn ({STEPS} steps) {:.1} µs/call, ratio {:.2}x, overhead {:.1} µs/call",
        direct_per_call.as_secs_f64() * 1e6,
        turn_per_call.as_secs_f64() * 1e6,
        turn_per_call.as_secs_f64() / direct_per_call.as_secs_f64(),
        (turn_per_call.as_secs_f64() - direct_per_call.as_secs_f64()) * 1e6,
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio();
}
