//! What the inbound handler path costs next to the one fsync it cannot avoid (HND-03, Q21).
//! `cargo bench -p lumenflow-kernel --bench event_handler`.
//!
//! - `inbound_receive_handle_put`: `inbound::receive` of a `conductor:recovery_requested` body
//!   with a new `event_id` each iteration (parse, envelope and payload checks, routing), delivered
//!   to a handler that checks the replay log, runs a trivial effect and records the key with
//!   `ReplayLog::put` (append + fsync).
//! - `baseline_fsync_append`: a plain append of a line of the same size as the replay record,
//!   then `sync_data`, to a file in the same folder.
//!
//! The difference is the runtime's overhead per inbound event; the fsync dominates both. After the
//! criterion group a manual timing loop prints the two means and their ratio.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use lumenflow_contracts::event::KernelEventV2;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::events::handler::{HandlerContext, HandlerError, HandlerOutcome};
use lumenflow_kernel::events::host::{PackHost, PackRegistration};
use lumenflow_kernel::events::inbound;
use lumenflow_kernel::manifest::{parse_manifest, Surface};

const MANIFEST: &str = "id: bench-pack\nversion: 0.1.0\ntask_types: []\nsubscribed_event_kinds: [conductor:recovery_requested]\n";

/// A host on `workspace` with one pack whose handler does the replay dance around a counter.
fn host(workspace: &Path, effects: Arc<AtomicU64>) -> PackHost {
    let manifest = parse_manifest(SourceFile::new(
        "bench-pack/manifest.yaml",
        MANIFEST.to_string(),
    ))
    .expect("bench manifest")
    .manifest;
    let handler = move |event: &KernelEventV2, ctx: &HandlerContext<'_>| {
        let key = format!("bench-pack:recover:{}", event.event_id);
        if ctx.replay_log.has(&key) {
            return Ok(HandlerOutcome::replayed());
        }
        effects.fetch_add(1, Ordering::Relaxed);
        ctx.replay_log
            .put(&key)
            .map_err(|e| HandlerError::new(e.to_string()))?;
        Ok(HandlerOutcome::handled("recovered"))
    };
    let mut host = PackHost::new(workspace, &[Surface::Http]);
    host.register(PackRegistration::new(manifest).handler("conductor:recovery_requested", handler))
        .expect("register the bench pack");
    host
}

fn body(n: u64) -> Vec<u8> {
    format!(
        r#"{{"schema_version":2,"kind":"conductor:recovery_requested","event_id":"evt-{n:012}","timestamp":"2026-04-20T00:00:00Z","from":"ws-bench","payload":{{"wu_id":"acme-job-{n}"}}}}"#
    )
    .into_bytes()
}

/// A line as long as the replay record `put` appends for event `n`.
fn baseline_line(n: u64) -> Vec<u8> {
    format!("{{\"key\":\"bench-pack:recover:evt-{n:012}\",\"at\":\"2026-04-20T00:00:00.000Z\"}}\n")
        .into_bytes()
}

/// The two operations under test, each with its own state.
struct Rig {
    _dir: tempfile::TempDir,
    host: PackHost,
    effects: Arc<AtomicU64>,
    next_event: u64,
    baseline: File,
    next_line: u64,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let effects = Arc::new(AtomicU64::new(0));
        let host = host(dir.path(), effects.clone());
        let baseline = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("baseline.jsonl"))
            .expect("baseline file");
        Rig {
            _dir: dir,
            host,
            effects,
            next_event: 0,
            baseline,
            next_line: 0,
        }
    }

    fn receive(&mut self) {
        self.next_event += 1;
        let (_, deliveries) =
            inbound::receive(&self.host, &body(self.next_event)).expect("accepted");
        assert!(
            deliveries.len() == 1 && deliveries[0].outcome().is_some(),
            "{deliveries:?}"
        );
    }

    fn append(&mut self) {
        self.next_line += 1;
        self.baseline
            .write_all(&baseline_line(self.next_line))
            .expect("append");
        self.baseline.sync_data().expect("fsync");
    }
}

fn bench(c: &mut Criterion) {
    let mut rig = Rig::new();
    let mut group = c.benchmark_group("event_handler");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("inbound_receive_handle_put", |b| b.iter(|| rig.receive()));
    group.bench_function("baseline_fsync_append", |b| b.iter(|| rig.append()));
    group.finish();
    assert_eq!(
        rig.effects.load(Ordering::Relaxed),
        rig.next_event,
        "every event handled once"
    );

    // The same two operations, interleaved in rounds so that disk weather hits both alike.
    let mut rig = Rig::new();
    let (mut handler, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let rounds = 20;
    let per_round = 50;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            rig.receive();
        }
        handler += start.elapsed();
        let start = Instant::now();
        for _ in 0..per_round {
            rig.append();
        }
        baseline += start.elapsed();
    }
    let n = (rounds * per_round) as u32;
    let (h, b) = (handler / n, baseline / n);
    println!(
        "event_handler manual loop ({n} each): inbound+handler+put {h:?}/event, fsync'd append {b:?}/line, ratio {:.2}x (line {} bytes, body {} bytes)",
        h.as_secs_f64() / b.as_secs_f64(),
        baseline_line(1).len(),
        body(1).len(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
