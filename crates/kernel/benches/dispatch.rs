//! The full governed path with durable receipts, beside the same work without governance.
//!
//! Prints, for a built-in no-op tool: throughput with 1 and 64 concurrent callers and p50/p99
//! latency of a single caller, each beside a baseline run in the same process (the raw tool call
//! plus one plain fsync'd append of a receipt-sized line), and the governance overhead with fsync
//! excluded (the same runtime with its log and evidence on tmpfs, where fsync costs nothing,
//! minus the tmpfs baseline).
//!
//! Also: 64 callers of a tool whose input has no path, once as 64 threads calling
//! `Runtime::dispatch` and once as 64 tasks on a 2-worker tokio runtime calling
//! `Runtime::dispatch_async` (the sidecar's way in, which awaits receipts instead of holding a
//! thread per call).
//!
//! `LUMENFLOW_BENCH_DIR` picks the disk folder (default: a temp folder under `target/`).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::{
    BuiltinCall, CallRequest, EvidenceStore, RegisteredTool, Runtime, ToolRegistry,
};
use lumenflow_kernel::eventlog::{EventLog, LogOptions};
use lumenflow_kernel::manifest::parse_manifest;
use lumenflow_kernel::workspace::parse_workspace;
use serde_json::json;

const WS: &str = "id: bench\nname: Bench\npacks: []\nlanes: []\nsecurity:\n  allowed_scopes:\n    - {type: path, pattern: \"**\", access: read}\n    - {type: path, pattern: \"out/**\", access: write}\nmemory_namespace: m\nevent_namespace: e\n";
const PACK: &str = "id: bench-pack\nversion: 1.0.0\ntask_types: [task]\ntools:\n  - name: bench:noop\n    entry: noop.rs\n    permission: read\n    required_scopes: [{type: path, pattern: \"data/**\", access: read}]\n    input_schema: {type: object, properties: {path: {type: string}}, required: [path]}\n  - name: bench:plain\n    entry: noop.rs\n    permission: read\n    required_scopes: [{type: path, pattern: \"data/**\", access: read}]\n    input_schema: {type: object, properties: {note: {type: string}}}\n";

fn noop(_: &BuiltinCall<'_>) -> ToolOutput {
    ToolOutput::ok(json!({"ok": true}))
}

fn runtime(dir: &Path) -> Runtime {
    let doc = parse_workspace(SourceFile::new("workspace.yaml", WS), dir).expect("workspace");
    let manifest = parse_manifest(SourceFile::new("manifest.yaml", PACK))
        .expect("manifest")
        .manifest;
    let mut registry = ToolRegistry::new();
    for name in ["bench:noop", "bench:plain"] {
        registry
            .register(
                RegisteredTool::builtin(&manifest, "dev", name, Arc::new(noop)).expect("tool"),
            )
            .expect("register");
    }
    Runtime::new(
        dir,
        &doc,
        registry,
        vec![manifest],
        EventLog::open(&dir.join("events.jsonl"), LogOptions::default()).expect("log"),
        EvidenceStore::open(&dir.join("evidence")).expect("evidence"),
    )
}

fn governed(rt: &Runtime) {
    let out = rt.dispatch(CallRequest::local(
        "bench:noop",
        json!({"path": "data/x.csv"}),
    ));
    assert!(out.output.success && out.recorded, "{out:?}");
}

fn plain() -> CallRequest {
    CallRequest::local("bench:plain", json!({"note": "bench"}))
}

/// `calls` calls of `bench:plain` by `tasks` concurrent tasks on a 2-worker tokio runtime.
fn async_throughput(rt: &Arc<Runtime>, tasks: usize, per_task: usize) -> f64 {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let start = Instant::now();
    tokio.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let rt = rt.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let out = rt.clone().dispatch_async(plain()).await.expect("task");
                        assert!(out.output.success && out.recorded, "{out:?}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("join");
        }
    });
    (tasks * per_task) as f64 / start.elapsed().as_secs_f64()
}

/// The raw tool call plus one plain fsync'd append of a line the size of two receipts.
struct Baseline {
    file: std::sync::Mutex<std::fs::File>,
}

impl Baseline {
    fn new(path: &Path) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("baseline file");
        Baseline {
            file: std::sync::Mutex::new(file),
        }
    }

    fn call(&self) {
        let out = std::hint::black_box(noop as fn(&BuiltinCall<'_>) -> ToolOutput);
        let _ = out;
        let line = vec![b'x'; 1100];
        let mut f = self.file.lock().expect("lock");
        f.write_all(&line).expect("write");
        f.write_all(b"\n").expect("write");
        f.sync_data().expect("fsync");
    }
}

fn throughput(threads: usize, per_thread: usize, f: impl Fn() + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    f();
                }
            });
        }
    });
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

fn latencies(n: usize, f: impl Fn()) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    (samples[n / 2], samples[(n * 99) / 100])
}

fn bench(c: &mut Criterion) {
    let base = std::env::var_os("LUMENFLOW_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-dispatch")
        });
    std::fs::create_dir_all(&base).expect("bench dir");
    let disk = tempfile::tempdir_in(&base).expect("disk dir");
    let shm =
        tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().expect("tmp"));

    let rt = runtime(disk.path());
    let baseline = Baseline::new(&disk.path().join("baseline.jsonl"));
    let mut group = c.benchmark_group("dispatch");
    group.sample_size(20);
    group.bench_function("governed_noop_durable", |b| b.iter(|| governed(&rt)));
    group.bench_function("baseline_call_plus_fsync_append", |b| {
        b.iter(|| baseline.call())
    });
    group.finish();

    let (p50, p99) = latencies(400, || governed(&rt));
    let (bp50, bp99) = latencies(400, || baseline.call());
    let t1 = throughput(1, 400, || governed(&rt));
    let b1 = throughput(1, 400, || baseline.call());
    let t64 = throughput(64, 60, || governed(&rt));
    let b64 = throughput(64, 60, || baseline.call());
    let rt = Arc::new(rt);
    let threads64 = throughput(64, 60, || {
        let out = rt.dispatch(plain());
        assert!(out.output.success && out.recorded, "{out:?}");
    });
    let tasks64 = async_throughput(&rt, 64, 60);

    let rt_mem = runtime(shm.path());
    let baseline_mem = Baseline::new(&shm.path().join("baseline.jsonl"));
    let n = 3000;
    let t = Instant::now();
    for _ in 0..n {
        governed(&rt_mem);
    }
    let gov_mem = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        baseline_mem.call();
    }
    let base_mem = t.elapsed() / n;

    println!(
        "governed no-op tool, durable receipts (disk: {}):",
        disk.path().display()
    );
    println!(
        "  1 caller:   {t1:>9.0} calls/s   baseline {b1:>9.0}/s   ratio {:.2}x",
        t1 / b1
    );
    println!(
        "  64 callers: {t64:>9.0} calls/s   baseline {b64:>9.0}/s   ratio {:.2}x",
        t64 / b64
    );
    println!(
        "  64 callers, no input path: threads (dispatch) {threads64:>9.0} calls/s   tasks (dispatch_async) {tasks64:>9.0} calls/s   ratio {:.2}x",
        tasks64 / threads64
    );
    println!("  1 caller latency: p50 {p50:?} p99 {p99:?}   baseline p50 {bp50:?} p99 {bp99:?}");
    println!(
        "  governance overhead, fsync excluded (tmpfs): {gov_mem:?} per call vs baseline {base_mem:?} -> {:?}",
        gov_mem.saturating_sub(base_mem)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
