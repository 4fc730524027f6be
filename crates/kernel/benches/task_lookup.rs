//! Loading one task from a long event log (the check every governed call with a `task_id` makes,
//! and every `lumenflow task` command). `cargo bench -p lumenflow-kernel --bench task_lookup`.
//!
//! The log holds one task's records among RECEIPTS receipt-sized records (TASK_LOOKUP_RECEIPTS,
//! default 100 000, about 600 bytes each, as tool calls write them).
//!
//! - `get_state_warm`: `TaskStore::get_state` with the store's index built (a sidecar after
//!   its first task lookup): the index checks the log for new lines, reads the task's lines,
//!   verifies the spec and projects.
//! - `get_state_cold`: the same with a fresh index (a one-shot `lumenflow task` command): one
//!   pass over the log that skips what is not a task record without building it.
//! - `baseline_full_replay`: `eventlog::replay` of the task's records, which parses every line
//!   of the log (how a task was loaded before the index).
//!
//! After the criterion group a manual loop prints the three means and the ratios.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use lumenflow_contracts::kinds::KERNEL_V1_EVENT_KIND_VALUES;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions, ReplayFilter};
use lumenflow_kernel::tasks::{TaskStatus, TaskStore};
use lumenflow_kernel::workspace::parse_workspace;
use serde_json::{json, Map, Value};

const WORKSPACE: &str = "id: ws-bench\nname: Bench\npacks: []\nlanes:\n  - {id: default, title: Default, allowed_scopes: [{type: path, pattern: \"**\", access: write}]}\nsecurity:\n  allowed_scopes:\n    - {type: path, pattern: \"**\", access: write}\nmemory_namespace: m\nevent_namespace: e\n";

const SPEC: &str = "id: WU-1\nworkspace_id: ws-bench\nlane_id: default\ndomain: software-delivery\ntitle: Bench task\ndescription: One task among many receipts.\nacceptance:\n  - it is found\ndeclared_scopes:\n  - type: path\n    pattern: \"reports/**\"\n    access: write\nrisk: low\ntype: docs\npriority: P2\ncreated: 2026-04-20\n";

struct Rig {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
}

fn receipt(i: usize) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "kind": if i.is_multiple_of(2) { "tool_call_started" } else { "tool_call_finished" },
        "receipt_id": format!("rcpt_{i:024}"),
        "run_id": format!("run-{i:024}"),
        "task_id": null,
        "caller": "ws-bench",
        "surface": "http",
        "tool_name": "bench:noop",
        "input_hash": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "input_ref": "inputs/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "scope_enforced": [{"type": "path", "pattern": "**", "access": "read"}],
        "workspace_config_hash": "0d3c6f4e2b1a99887766554433221100ffeeddccbbaa99887766554433221100",
        "runtime_version": "lumenflow-rs/0.1.0",
    }) else {
        unreachable!("a literal object")
    };
    map
}

impl Rig {
    fn new(receipts: usize) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("workspace.yaml"), WORKSPACE).expect("workspace.yaml");
        {
            let store = store(&root);
            store
                .create_from_source(&SourceFile::new("WU-1.yaml", SPEC.to_string()))
                .expect("create");
            let log = store.log();
            let batch = 1_000;
            for start in (0..receipts).step_by(batch) {
                let records: Vec<_> = (start..(start + batch).min(receipts))
                    .map(receipt)
                    .collect();
                log.append_batch(records).expect("append");
            }
        }
        Rig { _dir: dir, root }
    }
}

fn store(root: &Path) -> TaskStore {
    let doc = parse_workspace(
        SourceFile::new("workspace.yaml", WORKSPACE.to_string()),
        root,
    )
    .expect("workspace");
    let log = EventLog::open(&eventlog::default_path(root), LogOptions::default()).expect("log");
    TaskStore::from_workspace(&doc, log)
}

fn get_state(store: &TaskStore) {
    let state = store.get_state("WU-1").expect("task");
    assert_eq!(state.status, TaskStatus::Ready);
}

fn full_replay(root: &Path) {
    let filter = ReplayFilter {
        task_id: Some("WU-1".into()),
        kinds: KERNEL_V1_EVENT_KIND_VALUES
            .iter()
            .map(|k| k.to_string())
            .collect(),
        ..ReplayFilter::default()
    };
    let page = eventlog::replay(&eventlog::default_path(root), &filter).expect("replay");
    assert_eq!(page.records.len(), 1);
}

fn bench(c: &mut Criterion) {
    let receipts: usize = std::env::var("TASK_LOOKUP_RECEIPTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let rig = Rig::new(receipts);
    let size = std::fs::metadata(eventlog::default_path(&rig.root))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "task_lookup: one task among {receipts} receipts ({:.0} MB of log)",
        size as f64 / 1e6
    );
    let warm = store(&rig.root);
    get_state(&warm);

    let mut group = c.benchmark_group("task_lookup");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("get_state_warm", |b| b.iter(|| get_state(&warm)));
    group.bench_function("baseline_full_replay", |b| {
        b.iter(|| full_replay(&rig.root))
    });
    group.finish();
    drop(warm);

    // The three, interleaved in rounds so that machine weather hits them alike. A fresh store
    // has a fresh index (the process keeps one per log only while a store holds it): its first
    // lookup is the cold one.
    let (mut t_warm, mut t_cold, mut t_full) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let rounds = 5u32;
    let warm_per_round = 200u32;
    for _ in 0..rounds {
        let fresh = store(&rig.root);
        let start = Instant::now();
        get_state(&fresh);
        t_cold += start.elapsed();
        let start = Instant::now();
        for _ in 0..warm_per_round {
            get_state(&fresh);
        }
        t_warm += start.elapsed();
        drop(fresh);
        let start = Instant::now();
        full_replay(&rig.root);
        t_full += start.elapsed();
    }
    let warm_mean = t_warm / (rounds * warm_per_round);
    let cold_mean = t_cold / rounds;
    let full_mean = t_full / rounds;
    println!(
        "task_lookup means over {rounds} rounds: warm {warm_mean:?}, cold {cold_mean:?}, \
         full replay (baseline) {full_mean:?}; full replay / warm = {:.0}x, full replay / cold = {:.1}x",
        full_mean.as_secs_f64() / warm_mean.as_secs_f64(),
        full_mean.as_secs_f64() / cold_mean.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
