//! Ingest throughput (`bench/ingest.sh`): v2 events in batches of 1 000 through the real HTTP
//! ingest path (token check, per-event validation, dedupe insert, audit line, commit, answer),
//! beside the raw insert rate of the same rows into the same database (one multi-row `INSERT`
//! per batch into a table without the dedupe constraint, one transaction per batch).
//!
//! `cargo run --release -p lumenflow-cloud --example ingest_bench -- sqlite|postgres [EVENTS]`
//! PostgreSQL: `LUMENFLOW_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! in a fresh schema dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lumenflow_cloud::ingest::batch_rows;
use lumenflow_cloud::server::{self, ServeConfig};
use lumenflow_cloud::store::Store;
use lumenflow_contracts::event::{build_event, BuildOptions};
use lumenflow_contracts::identity::Subject;
use lumenflow_contracts::time::Timestamp;
use serde_json::{json, Value};

// The allocator the `lumenflow` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1_000;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "sqlite".into());
    let total: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let clients: usize = std::env::var("INGEST_CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let pg_base = std::env::var("LUMENFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("lf_bench_{}", lumenflow_proof::token::new_jti());
    let database = match backend.as_str() {
        "sqlite" => format!("sqlite://{}", dir.path().join("bench.db").display()),
        "postgres" => {
            admin(&pg_base, &format!("CREATE SCHEMA {schema}")).await;
            let sep = if pg_base.contains('?') { '&' } else { '?' };
            format!("{pg_base}{sep}options=-csearch_path%3D{schema}")
        }
        other => panic!("backend `{other}`: expected sqlite or postgres"),
    };

    // The events: distinct v2 events of one workspace, in batches of 1 000.
    let ws = "ws-bench";
    let t0 = 1_800_000_000_000i64;
    let events: Vec<Value> = (0..total)
        .map(|i| {
            let Value::Object(payload) =
                json!({"run_id": format!("run-{}", i / 100), "n": i, "note": "benchmark event"})
            else {
                unreachable!()
            };
            let e = build_event(
                "acme:job_progress",
                ws,
                payload,
                BuildOptions {
                    seq: Some(i as u64),
                    timestamp: Some(Timestamp::from_unix_millis(t0 + i as i64)),
                    ..BuildOptions::default()
                },
            )
            .unwrap();
            serde_json::to_value(e).unwrap()
        })
        .collect();
    let bodies: Vec<Vec<u8>> = events
        .chunks(BATCH)
        .map(|c| serde_json::to_vec(&json!({"workspace_id": ws, "events": c})).unwrap())
        .collect();

    // The real server, in process, on the database.
    let config = ServeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database: database.clone(),
        key_path: Some(dir.path().join("bench.key")),
        public_url: None,
        registry_refresh: Duration::ZERO,
        new_key: false,
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let bound = listener.local_addr().unwrap();
    let state = server::open_state(&config, bound).await.unwrap();
    let (token, _) = state
        .authority
        .mint(&state.store, ws, ws, ws, "workspace", 3600, "bench")
        .await
        .unwrap();
    tokio::spawn(axum::serve(listener, server::router(state.clone())).into_future());
    let url = format!("http://{bound}/api/v1/events");
    let http = reqwest::Client::new();

    let send_all = |bodies: Vec<Vec<u8>>| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let per = bodies.len().div_ceil(clients.max(1));
            let mut tasks = Vec::new();
            for chunk in bodies.chunks(per.max(1)) {
                let chunk = chunk.to_vec();
                let (http, url, token) = (http.clone(), url.clone(), token.clone());
                tasks.push(tokio::spawn(async move {
                    let mut dup = 0u64;
                    for body in chunk {
                        let resp = http
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .unwrap();
                        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
                        let v: Value = resp.json().await.unwrap();
                        dup += v["duplicates"].as_u64().unwrap();
                    }
                    dup
                }));
            }
            let mut dup = 0;
            for t in tasks {
                dup += t.await.unwrap();
            }
            dup
        }
    };

    let start = Instant::now();
    let dup_first = send_all(bodies.clone()).await;
    let ingest = start.elapsed();
    let start = Instant::now();
    let dup_again = send_all(bodies.clone()).await;
    let resend = start.elapsed();
    assert_eq!(dup_first, 0);
    assert_eq!(dup_again, total as u64);
    assert_eq!(state.store.count_events(ws).await.unwrap(), total as i64);

    // Raw: the same rows, the same database, one plain insert per batch.
    let subject = Subject::parse(ws).unwrap();
    let rows: Vec<_> = events
        .chunks(BATCH)
        .map(|c| batch_rows(ws, &subject, c.to_vec()).unwrap())
        .collect();
    let raw_store = Store::connect(&database).await.unwrap();
    let start = Instant::now();
    for batch in &rows {
        raw_store.raw_insert_for_bench(batch, false).await.unwrap();
    }
    let raw = start.elapsed();
    let start = Instant::now();
    for batch in &rows {
        raw_store.raw_insert_for_bench(batch, true).await.unwrap();
    }
    let raw_indexed = start.elapsed();

    // The store's ingest alone (no HTTP, no JSON), same rows under another workspace id.
    let audit = lumenflow_cloud::store::AuditEntry {
        workspace_id: Some("ws-direct".into()),
        subject: "ws-direct".into(),
        action: "bench".into(),
        outcome: "ok".into(),
        ..Default::default()
    };
    let direct_rows: Vec<Vec<_>> = rows
        .iter()
        .map(|b| {
            b.iter()
                .cloned()
                .map(|mut r| {
                    r.workspace_id = "ws-direct".into();
                    r
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    for batch in direct_rows {
        raw_store.ingest_owned(batch, &audit).await.unwrap();
    }
    let direct = start.elapsed();

    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "{backend}: {total} v2 events, batches of {BATCH}, {clients} client(s)\n  \
         ingest (HTTP, validate, dedupe, audit, commit): {:>9.0} events/s\n  \
         re-send (all duplicates):                       {:>9.0} events/s\n  \
         store ingest alone (no HTTP):                   {:>9.0} events/s\n  \
         raw insert, bare table (same rows, same db):    {:>9.0} events/s\n  \
         raw insert, same indexes, no dedupe clause:     {:>9.0} events/s\n  \
         ingest / raw bare:                              {:>9.2}x\n  \
         ingest / raw same indexes:                      {:>9.2}x",
        rate(ingest),
        rate(resend),
        rate(direct),
        rate(raw),
        rate(raw_indexed),
        raw.as_secs_f64() / ingest.as_secs_f64(),
        raw_indexed.as_secs_f64() / ingest.as_secs_f64()
    );
    // One line for bench/ingest.sh, which takes medians over rounds.
    println!(
        "RESULT {backend} {clients} {:.0} {:.0} {:.0}",
        rate(ingest),
        rate(raw),
        rate(raw_indexed)
    );
    raw_store.close().await;
    state.store.close().await;
    if backend == "postgres" {
        admin(&pg_base, &format!("DROP SCHEMA {schema} CASCADE")).await;
    }
}

async fn admin(url: &str, sql: &str) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .expect("PostgreSQL must be running (LUMENFLOW_TEST_DATABASE_URL)");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
}
