//! Building one `agent-runtime:tool_called` event (payload map -> envelope -> RFC 8785 canonical
//! JSON -> SHA-256 `event_id`) and serializing it for the wire, beside the floor every emitter
//! pays: plain `serde_json::to_string` of the same, already built envelope. Target: under 5 µs per
//! event, since the sidecar emits one for every tool call (Q40). Prints the ratio at the end.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use lumenflow_contracts::digest::Sha256Digest;
use lumenflow_contracts::event::{build_event, BuildOptions, KernelEventV2};
use lumenflow_contracts::payloads::{Payload, ToolCalled, ToolOutcome};
use lumenflow_contracts::time::Timestamp;
use serde_json::{Map, Value};

const KIND: &str = "agent-runtime:tool_called";
const FROM: &str = "ws-42";

fn payload() -> Payload {
    Payload::ToolCalled(ToolCalled {
        tool_name: "software-delivery:gates".into(),
        envelope_hash: Sha256Digest::of(
            br#"{"input":{"wu_id":"WU-042"},"tool_name":"software-delivery:gates"}"#,
        ),
        outcome: ToolOutcome::Success,
        error_code: None,
        receipt_id: Some("rcpt-20260420-000117".into()),
    })
}

fn options(timestamp: Timestamp) -> BuildOptions {
    BuildOptions {
        idempotency_key: None,
        timestamp: Some(timestamp),
        seq: None,
    }
}

/// What an emitter does per event: build (envelope + content hash), then serialize.
fn build_hash_serialize(map: &Map<String, Value>, timestamp: Timestamp) -> String {
    let event = build_event(KIND, FROM, map.clone(), options(timestamp)).expect("valid event");
    serde_json::to_string(&event).expect("serializes")
}

/// The same, from the typed payload, validated first (`Payload::to_event`).
fn typed_validate_build_serialize(payload: &Payload, timestamp: Timestamp) -> String {
    let event = payload
        .to_event(FROM, options(timestamp))
        .expect("valid event");
    serde_json::to_string(&event).expect("serializes")
}

fn baseline_serialize(event: &KernelEventV2) -> String {
    serde_json::to_string(event).expect("serializes")
}

fn bench(c: &mut Criterion) {
    let timestamp = Timestamp::parse("2026-04-20T00:00:00Z").expect("valid");
    let typed = payload();
    let map = typed.to_map();
    let built = build_event(KIND, FROM, map.clone(), options(timestamp)).expect("valid event");

    let mut group = c.benchmark_group("tool_called_event");
    group.bench_function("baseline_serialize", |b| {
        b.iter(|| baseline_serialize(black_box(&built)))
    });
    group.bench_function("build_hash_serialize", |b| {
        b.iter(|| build_hash_serialize(black_box(&map), black_box(timestamp)))
    });
    group.bench_function("typed_validate_build_serialize", |b| {
        b.iter(|| typed_validate_build_serialize(black_box(&typed), black_box(timestamp)))
    });
    group.finish();

    // A plain ratio, measured in this process, for the closing note.
    let rounds = 200_000;
    let per_event = |f: &dyn Fn() -> String| {
        for _ in 0..rounds / 10 {
            black_box(f());
        }
        let t = Instant::now();
        for _ in 0..rounds {
            black_box(f());
        }
        t.elapsed().as_secs_f64() / f64::from(rounds) * 1e6
    };
    let base = per_event(&|| baseline_serialize(black_box(&built)));
    let full = per_event(&|| build_hash_serialize(black_box(&map), black_box(timestamp)));
    let typed_full =
        per_event(&|| typed_validate_build_serialize(black_box(&typed), black_box(timestamp)));
    println!(
        "event build+hash+serialize: {full:.2} µs, baseline serialize {base:.2} µs, ratio {:.1}x \
         (typed payload with validation: {typed_full:.2} µs)",
        full / base
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
