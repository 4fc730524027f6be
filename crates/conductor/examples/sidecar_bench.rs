//! The processes `bench/sidecar.sh` runs; not part of the product binary.
//!
//! - `bare --listen ADDR`: a bare axum JSON endpoint, `POST /tools/{name}` parsing the body and
//!   answering a fixed ToolOutput (the baseline: HTTP + JSON, no governance).
//! - `sidecar --dir DIR --listen ADDR`: the real sidecar (`lumenflow_conductor::Sidecar`, the
//!   same code `lumenflow sidecar` runs) with one extra built-in pack, `bench-noop`, whose tool
//!   `bench:noop` does nothing: what is measured is the sidecar and the dispatch path around it.
//! - `sink --listen ADDR`: a control-plane stand-in for `POST /api/v1/events` that dedupes by
//!   `event_id` in memory (isolates the sidecar's drain rate from a database).
//! - `fill --dir DIR --count N`: queue N `sidekick:approval_requested` events in the
//!   workspace's outbox, as an outage would leave them.
//!
//! `cargo run --release -p lumenflow-conductor --example sidecar_bench -- <mode> ...`

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The allocator the `lumenflow` binary uses, for the sidecar and the bare endpoint alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use lumenflow_conductor::outbox::{self, Outbox};
use lumenflow_conductor::{Sidecar, SidecarOptions};
use lumenflow_contracts::event::{build_event, BuildOptions};
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_contracts::wire::{Accepted, EventBatch};
use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::dispatch::BuiltinCall;
use serde_json::{json, Map, Value};

const MANIFEST: &str = "id: bench-noop\nversion: 1.0.0\ntask_types: [task]\ntools:\n  - name: \"bench:noop\"\n    entry: noop.rs\n    description: Does nothing (benchmark)\n    permission: read\n    required_scopes: [{type: path, pattern: \"data/**\", access: read}]\n    input_schema: {type: object, properties: {note: {type: string}}}\n";

const PACK: EmbeddedPack = EmbeddedPack {
    id: "bench-noop",
    files: &[
        ("manifest.yaml", MANIFEST.as_bytes()),
        ("noop.rs", b"// bench:noop returns {} and touches nothing\n"),
    ],
};

fn noop(_: &BuiltinCall<'_>) -> ToolOutput {
    ToolOutput::ok(json!({}))
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn listen(args: &[String]) -> tokio::net::TcpListener {
    let addr: SocketAddr = arg(args, "--listen")
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .expect("--listen ADDR");
    let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
    println!("listening on http://{}", l.local_addr().expect("addr"));
    use std::io::Write;
    std::io::stdout().flush().ok();
    l
}

async fn bare_tool(body: Bytes) -> Json<Value> {
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = std::hint::black_box(input);
    Json(json!({"success": true, "data": {}, "receipt_id": "rcpt_bare"}))
}

#[derive(Default)]
struct Sink {
    ids: HashSet<String>,
    received: u64,
}

async fn sink_events(
    State(s): State<Arc<Mutex<Sink>>>,
    Json(batch): Json<EventBatch>,
) -> Json<Accepted> {
    let mut s = s.lock().unwrap();
    let mut dup = 0;
    for e in &batch.events {
        s.received += 1;
        if !s
            .ids
            .insert(e["event_id"].as_str().unwrap_or_default().to_string())
        {
            dup += 1;
        }
    }
    Json(Accepted {
        accepted: batch.events.len() as u64,
        duplicates: dup,
    })
}

async fn sink_stats(State(s): State<Arc<Mutex<Sink>>>) -> Json<Value> {
    let s = s.lock().unwrap();
    Json(json!({"unique": s.ids.len(), "received": s.received}))
}

async fn revocations() -> Json<Value> {
    Json(
        json!({"workspace_id": "", "revoked_jtis": [], "generated_at": "2026-01-01T00:00:00.000Z"}),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bare") => {
            let app = Router::new().route("/tools/{name}", post(bare_tool));
            axum::serve(listen(&args).await, app).await.expect("serve");
        }
        Some("sidecar") => {
            let dir = PathBuf::from(arg(&args, "--dir").expect("--dir DIR"));
            let mut options = SidecarOptions::new(&dir);
            options.builtin_packs.push(PACK);
            options
                .builtin_tools
                .insert("bench:noop".into(), Arc::new(noop));
            if let Some(n) = arg(&args, "--batch-size") {
                options.delivery.batch_size = n.parse().expect("--batch-size N");
            }
            let sidecar = Sidecar::start(options).await.expect("start the sidecar");
            let listener = listen(&args).await;
            sidecar
                .serve(listener, std::future::pending())
                .await
                .expect("serve");
        }
        Some("sink") => {
            let state = Arc::new(Mutex::new(Sink::default()));
            let app = Router::new()
                .route("/api/v1/events", post(sink_events))
                .route("/api/v1/revocations", get(revocations))
                .route("/stats", get(sink_stats))
                .with_state(state);
            axum::serve(listen(&args).await, app).await.expect("serve");
        }
        Some("fill") => {
            let dir = PathBuf::from(arg(&args, "--dir").expect("--dir DIR"));
            let count: usize = arg(&args, "--count")
                .and_then(|c| c.parse().ok())
                .unwrap_or(10_000);
            let from = arg(&args, "--from").unwrap_or_else(|| "ws-bench".into());
            let ob = Outbox::open(&outbox::default_dir(&dir)).expect("outbox");
            // Fresh ids on every fill: a second fill into one workspace is new work for the
            // control plane, not a re-send it dedupes.
            let fill_id = lumenflow_proof::token::new_jti();
            let mut chunk = Vec::with_capacity(1000);
            for i in 0..count {
                let mut p = Map::new();
                p.insert("approval_id".into(), format!("bench-{i}").into());
                let mut e = build_event(
                    "sidekick:approval_requested",
                    &from,
                    p,
                    BuildOptions::idempotent(format!("bench:{fill_id}:{i}")),
                )
                .expect("event");
                e.seq = Some(i as u64 + 1);
                chunk.push(e);
                if chunk.len() == 1000 {
                    ob.enqueue(&chunk).expect("enqueue");
                    chunk.clear();
                }
            }
            ob.enqueue(&chunk).expect("enqueue");
            println!("queued {count}");
        }
        _ => {
            eprintln!("usage: sidecar_bench bare|sidecar|sink|fill [--listen ADDR] [--dir DIR] [--count N]");
            std::process::exit(2);
        }
    }
}
