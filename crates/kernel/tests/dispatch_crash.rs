//! KRN-13 reliability through the dispatch path: a process dispatching calls from several threads
//! is SIGKILLed at random moments, many times. After each kill the log opens, `verify` passes,
//! and every call whose result was returned (printed by the child) has its finished receipt.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::{
    BuiltinCall, CallRequest, EvidenceStore, RegisteredTool, Runtime, ToolRegistry,
};
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions, ReplayFilter};
use lumenflow_kernel::manifest::parse_manifest;
use lumenflow_kernel::workspace::parse_workspace;
use serde_json::json;

const WS: &str = "id: crash\nname: Crash\npacks: []\nlanes: []\nsecurity:\n  allowed_scopes:\n    - {type: path, pattern: \"**\", access: read}\nmemory_namespace: m\nevent_namespace: e\n";
const PACK: &str = "id: crash-pack\nversion: 1.0.0\ntask_types: [task]\ntools:\n  - name: crash:noop\n    entry: noop.rs\n    required_scopes: [{type: path, pattern: \"**\", access: read}]\n";

fn runtime(dir: &Path) -> Runtime {
    let doc = parse_workspace(SourceFile::new("workspace.yaml", WS), dir).expect("ws");
    let manifest = parse_manifest(SourceFile::new("manifest.yaml", PACK))
        .expect("manifest")
        .manifest;
    let mut registry = ToolRegistry::new();
    registry
        .register(
            RegisteredTool::builtin(
                &manifest,
                "dev",
                "crash:noop",
                Arc::new(|c: &BuiltinCall<'_>| ToolOutput::ok(c.input().clone())),
            )
            .expect("tool"),
        )
        .expect("register");
    Runtime::new(
        dir,
        &doc,
        registry,
        vec![manifest],
        EventLog::open(&eventlog::default_path(dir), LogOptions::default()).expect("log"),
        EvidenceStore::open(&dir.join(".lumenflow/kernel/evidence")).expect("evidence"),
    )
}

/// The child: dispatch from 4 threads forever, print each receipt id once its result returned.
#[test]
fn child_dispatcher() {
    let Some(dir) = std::env::var_os("DISPATCH_CRASH_CHILD") else {
        return;
    };
    let rt = Arc::new(runtime(Path::new(&dir)));
    let _ = rt.reconcile_crashed();
    std::thread::scope(|s| {
        for t in 0..4 {
            let rt = rt.clone();
            s.spawn(move || {
                for i in 0u64.. {
                    let out =
                        rt.dispatch(CallRequest::local("crash:noop", json!({"t": t, "i": i})));
                    if out.output.success && out.recorded {
                        println!("{}", out.receipt_id);
                    }
                }
            });
        }
    });
}

#[test]
fn every_returned_call_survives_sigkill_and_the_chain_verifies() {
    let dir = tempfile::tempdir().expect("tmp");
    let exe = std::env::current_exe().expect("test binary");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_dispatcher",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("DISPATCH_CRASH_CHILD", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.starts_with("rcpt_"))
                .collect::<Vec<_>>()
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(60 + seed % 240);
        let start = Instant::now();
        while start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let printed = reader.join().expect("reader");
        acknowledged.extend(printed);

        let log_path = eventlog::default_path(dir.path());
        let rt = runtime(dir.path());
        rt.reconcile_crashed().expect("reconcile");
        eventlog::verify(&log_path)
            .unwrap_or_else(|e| panic!("round {round}: chain broken: {}", e.short()));
        let finished = eventlog::replay(
            &log_path,
            &ReplayFilter {
                kinds: vec!["tool_call_finished".into()],
                ..ReplayFilter::default()
            },
        )
        .expect("replay");
        let done: std::collections::HashSet<String> = finished
            .records
            .iter()
            .filter(|r| r.fields.get("result").and_then(|v| v.as_str()) == Some("success"))
            .filter_map(|r| {
                r.fields
                    .get("receipt_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .collect();
        for id in &acknowledged {
            assert!(
                done.contains(id),
                "round {round}: returned call {id} has no finished receipt"
            );
        }
    }
    assert!(
        acknowledged.len() > 50,
        "the child should have completed calls ({} did)",
        acknowledged.len()
    );
    eprintln!(
        "dispatch crash test: 20 kills, {} acknowledged calls all recorded",
        acknowledged.len()
    );
}
