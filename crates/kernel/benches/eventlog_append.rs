//! What the event log's append costs next to the fsync it cannot avoid (KRN-13).
//! `cargo bench -p lumenflow-kernel --bench eventlog_append`.
//!
//! - `append_1_appender`: `EventLog::append` of a typical kernel event (validation, canonical
//!   JSON, SHA-256 chain, one `write`, one `fdatasync`);
//! - `baseline_write_fdatasync`: a plain `write` + `fdatasync` of the very same line bytes (taken
//!   from a log written beforehand), no hashing, one writer.
//!
//! After the criterion group, a manual loop prints records/s for 1 appender and for 64 concurrent
//! appenders (threads), p50/p99 append latency for 1 appender, each beside the baseline measured in
//! the same run, and the ratios. With 64 appenders group commit shares one fsync among many
//! records, so the log beats the one-fsync-per-record baseline by a wide margin.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use lumenflow_kernel::eventlog::{EventLog, LogOptions};
use serde_json::{json, Map, Value};

const THREADS: usize = 64;

fn record(n: u64) -> Map<String, Value> {
    match json!({
        "kind": "checkpoint",
        "schema_version": 1,
        "task_id": "WU-1870",
        "run_id": "run-WU-1870-1-0a1b2c3d",
        "note": format!("bench checkpoint {n:08}"),
    }) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The exact lines the log writes for `count` records, to replay through the baseline.
fn log_lines(dir: &Path, count: u64) -> Vec<Vec<u8>> {
    let path = dir.join("lines.jsonl");
    let log = EventLog::open(&path, LogOptions::default()).expect("open");
    log.append_batch((0..count).map(record).collect())
        .expect("append");
    drop(log);
    let text = fs::read(&path).expect("read");
    text.split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn baseline_file(dir: &Path, name: &str) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("baseline file")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

struct Run {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn summarize(mut latencies: Vec<Duration>, elapsed: Duration) -> Run {
    latencies.sort();
    Run {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = log_lines(dir.path(), 4096);
    let line_len = lines.first().map_or(0, Vec::len);

    let log =
        EventLog::open(&dir.path().join("criterion.jsonl"), LogOptions::default()).expect("open");
    let mut baseline = baseline_file(dir.path(), "criterion-baseline.jsonl");
    let mut group = c.benchmark_group("eventlog_append");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let mut n = 0u64;
    group.bench_function("append_1_appender", |b| {
        b.iter(|| {
            n += 1;
            log.append(record(n)).expect("append")
        })
    });
    let mut i = 0usize;
    group.bench_function("baseline_write_fdatasync", |b| {
        b.iter(|| {
            i += 1;
            baseline.write_all(&lines[i % lines.len()]).expect("write");
            baseline.sync_data().expect("fdatasync");
        })
    });
    group.finish();
    drop(log);

    // Manual loop: 1 appender and the baseline interleaved in rounds (so disk weather hits both
    // alike), then 64 appenders.
    let log =
        EventLog::open(&dir.path().join("single.jsonl"), LogOptions::default()).expect("open");
    let mut baseline = baseline_file(dir.path(), "baseline.jsonl");
    let (rounds, per_round) = (8, 250u64);
    let (mut log_lat, mut base_lat) = (Vec::new(), Vec::new());
    let (mut log_time, mut base_time) = (Duration::ZERO, Duration::ZERO);
    let mut n = 0u64;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            n += 1;
            let t = Instant::now();
            log.append(record(n)).expect("append");
            log_lat.push(t.elapsed());
        }
        log_time += start.elapsed();
        let start = Instant::now();
        for k in 0..per_round {
            let line = &lines[((n - per_round + k) as usize) % lines.len()];
            let t = Instant::now();
            baseline.write_all(line).expect("write");
            baseline.sync_data().expect("fdatasync");
            base_lat.push(t.elapsed());
        }
        base_time += start.elapsed();
    }
    drop(log);
    let single = summarize(log_lat, log_time);
    let base = summarize(base_lat, base_time);

    let log =
        EventLog::open(&dir.path().join("concurrent.jsonl"), LogOptions::default()).expect("open");
    let per_thread = 200u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let log = log.clone();
            thread::spawn(move || {
                for k in 0..per_thread {
                    log.append(record(t * per_thread + k)).expect("append");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("appender");
    }
    let elapsed = start.elapsed();
    let stats = log.stats();
    let concurrent = (THREADS as u64 * per_thread) as f64 / elapsed.as_secs_f64();

    println!(
        "eventlog_append manual loop (line {line_len} bytes):\n\
         \x20 1 appender : {:>9.0} records/s, p50 {:>9.1?}, p99 {:>9.1?}\n\
         \x20 baseline   : {:>9.0} records/s, p50 {:>9.1?}, p99 {:>9.1?}  (write + fdatasync per record, 1 writer, same bytes)\n\
         \x20 ratio 1 appender / baseline: throughput {:.2}x, p50 latency {:.2}x, p99 latency {:.2}x\n\
         \x20 {THREADS} appenders: {:>9.0} records/s ({} records, {} fsyncs, {:.1} records/fsync, largest commit {}), {:.1}x the baseline",
        single.per_sec,
        single.p50,
        single.p99,
        base.per_sec,
        base.p50,
        base.p99,
        single.per_sec / base.per_sec,
        single.p50.as_secs_f64() / base.p50.as_secs_f64(),
        single.p99.as_secs_f64() / base.p99.as_secs_f64(),
        concurrent,
        stats.records_appended,
        stats.fsyncs,
        stats.records_appended as f64 / stats.fsyncs.max(1) as f64,
        stats.largest_commit,
        concurrent / base.per_sec,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
