//! The storage suite, run against both backends: an SQLite file and the real PostgreSQL server
//! (`LUMENFLOW_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`), each test
//! in a fresh schema that is dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use lumenflow_cloud::store::operators::TOUCH_EVERY_MS;
use lumenflow_cloud::store::{
    now_ms, AuditEntry, EventCursor, EventQuery, EventRow, ReceiptRow, RedeemRefusal,
    ResolveRefusal, Store, TokenRecord,
};
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::wire::{ApprovalListInput, ApprovalRecord};
use serde_json::json;

fn pg_base() -> String {
    std::env::var("LUMENFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database for one test; `finish` drops the PostgreSQL schema.
struct TestDb {
    store: Store,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cloud.db").display());
        TestDb {
            store: Store::open(&url).await.unwrap(),
            schema: None,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> TestDb {
        let schema = format!("lf_test_{}", lumenflow_proof::token::new_jti());
        let admin = Store::connect(&pg_base()).await.unwrap();
        drop(admin);
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_base())
            .await
            .expect("PostgreSQL must be running (LUMENFLOW_TEST_DATABASE_URL)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = schema_url(&schema);
        TestDb {
            store: Store::open(&url).await.unwrap(),
            schema: Some(schema),
            _dir: None,
        }
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some(schema) = self.schema {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_base())
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

fn schema_url(schema: &str) -> String {
    let base = pg_base();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = super::TestDb::sqlite().await;
                super::$name(&db.store).await;
                db.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = super::TestDb::postgres().await;
                super::$name(&db.store).await;
                db.finish().await;
            }
        }
    };
}

both!(migrations_are_idempotent);
both!(enrollment_codes_are_single_use);
both!(ingest_dedupes_and_audits_in_one_transaction);
both!(concurrent_overlapping_batches_are_each_counted_and_audited);
both!(content_ids_and_idempotent_ids_dedupe_across_resends);
both!(queries_order_by_timestamp_then_seq_and_page);
both!(approvals_decide_once_and_expire);
both!(revocation_and_devices);
both!(registry_and_receipts);
both!(operators_and_sessions);
both!(console_views);
both!(run_bundles_and_recovery_requests);

fn row(
    ws: &str,
    id: &str,
    kind: &str,
    ts_ms: i64,
    channel: &str,
    seq: Option<i64>,
    run: Option<&str>,
) -> EventRow {
    let ts = Timestamp::from_unix_millis(ts_ms).to_rfc3339();
    EventRow {
        workspace_id: ws.into(),
        schema_version: 2,
        event_id: id.into(),
        kind: kind.into(),
        ts_ms,
        timestamp: ts.clone(),
        channel: channel.into(),
        seq,
        run_id: run.map(str::to_string),
        raw: json!({"schema_version": 2, "kind": kind, "event_id": id, "timestamp": ts,
                    "from": channel, "seq": seq, "payload": {"run_id": run}})
        .to_string(),
        time_keyed: false,
    }
}

fn audit(ws: &str, action: &str) -> AuditEntry {
    AuditEntry {
        workspace_id: Some(ws.into()),
        subject: ws.into(),
        action: action.into(),
        outcome: "ok".into(),
        ..AuditEntry::default()
    }
}

async fn migrations_are_idempotent(store: &Store) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let all: Vec<i64> = lumenflow_cloud::store::migrations::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(store.schema_versions().await.unwrap(), all);
    assert_eq!(
        all,
        (1..=all.len() as i64).collect::<Vec<_>>(),
        "contiguous versions"
    );
}

async fn enrollment_codes_are_single_use(store: &Store) {
    let far = now_ms() + 60_000;
    store
        .create_enrollment_code("ws-a", None, "h1", far)
        .await
        .unwrap();
    store
        .create_enrollment_code("ws-a", Some("p1"), "h2", now_ms() - 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_enrollment_code("h1", Some("http://x"))
            .await
            .unwrap(),
        Ok(("ws-a".to_string(), None))
    );
    assert_eq!(
        store.redeem_enrollment_code("h1", None).await.unwrap(),
        Err(RedeemRefusal::AlreadyUsed)
    );
    assert_eq!(
        store.redeem_enrollment_code("h2", None).await.unwrap(),
        Err(RedeemRefusal::Expired)
    );
    assert_eq!(
        store.redeem_enrollment_code("nope", None).await.unwrap(),
        Err(RedeemRefusal::Unknown)
    );
    store
        .create_enrollment_code("ws-a", Some("p1"), "h4", far)
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_enrollment_code("h4", Some("http://phone"))
            .await
            .unwrap(),
        Ok(("ws-a".to_string(), Some("p1".to_string())))
    );
    let ws = store.workspace("ws-a").await.unwrap().unwrap();
    assert_eq!(ws.sidecar_url.as_deref(), Some("http://x"));
    assert!(ws.enrolled_at_ms.is_some());

    // Racing redeemers: exactly one wins.
    store
        .create_enrollment_code("ws-b", None, "h3", far)
        .await
        .unwrap();
    let store = Arc::new(store.clone());
    let mut handles = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            s.redeem_enrollment_code("h3", None).await
        }));
    }
    let mut wins = 0;
    for h in handles {
        if h.await.unwrap().unwrap().is_ok() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

async fn ingest_dedupes_and_audits_in_one_transaction(store: &Store) {
    let t = 1_800_000_000_000;
    let batch = vec![
        row("ws", "e1", "acme:a", t, "ws", Some(1), None),
        row("ws", "e2", "acme:a", t + 1, "ws", Some(2), None),
        row("ws", "e1", "acme:a", t, "ws", Some(1), None),
    ];
    let out = store
        .ingest(&batch, &audit("ws", "events.push"))
        .await
        .unwrap();
    assert_eq!((out.accepted, out.duplicates), (3, 1));
    assert_eq!(out.fresh, 2);
    // Cursors follow batch order.
    let all = EventQuery {
        workspace_id: "ws".into(),
        limit: 10,
        ..EventQuery::default()
    };
    let stored = store.query_events(&all).await.unwrap().0;
    assert_eq!(stored.len(), 2);
    assert!(stored[0].cursor < stored[1].cursor, "cursors increase");
    assert_eq!(
        store
            .events_after("ws", None, stored[0].cursor, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.last_event_id("ws").await.unwrap(), stored[1].cursor);
    let again = store
        .ingest(&batch, &audit("ws", "events.push"))
        .await
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (3, 3));
    assert_eq!(again.fresh, 0);
    // The same event id in another workspace is another event.
    let other = store
        .ingest(
            &[row("ws2", "e1", "acme:a", t, "ws2", Some(1), None)],
            &audit("ws2", "events.push"),
        )
        .await
        .unwrap();
    assert_eq!(other.duplicates, 0);
    assert_eq!(store.count_events("ws").await.unwrap(), 2);
    let lines = store.audit_log(Some("ws"), 10).await.unwrap();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.entry.action == "events.push"));

    // A big batch (beyond one INSERT chunk) is one transaction too.
    let big: Vec<EventRow> = (0..4500)
        .map(|i| row("ws", &format!("b{i}"), "acme:b", t + i, "ws", Some(i), None))
        .collect();
    let out = store
        .ingest(&big, &audit("ws", "events.push"))
        .await
        .unwrap();
    assert_eq!((out.accepted, out.duplicates), (4500, 0));
    assert_eq!(store.count_events("ws").await.unwrap(), 4502);
}

async fn concurrent_overlapping_batches_are_each_counted_and_audited(store: &Store) {
    // DLV, Q1: on SQLite concurrent batches share one transaction (group commit); each request
    // must still get its own fresh/duplicate count and its own audit line, and every event is
    // stored once whichever batch carried it first.
    let t = 1_800_000_000_000i64;
    let tasks: Vec<_> = (0..16i64)
        .map(|k| {
            let store = store.clone();
            tokio::spawn(async move {
                let batch: Vec<EventRow> = (k * 200..k * 200 + 300)
                    .map(|i| {
                        row(
                            "ws-g",
                            &format!("g{i}"),
                            "acme:g",
                            t + i,
                            "ws-g",
                            Some(i),
                            None,
                        )
                    })
                    .collect();
                store
                    .ingest(&batch, &audit("ws-g", "events.group"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        let out = task.await.unwrap();
        assert_eq!(out.accepted, 300);
        assert_eq!(out.fresh + out.duplicates, 300);
        fresh += out.fresh;
    }
    assert_eq!(
        fresh,
        15 * 200 + 300,
        "every distinct event counted fresh exactly once"
    );
    assert_eq!(store.count_events("ws-g").await.unwrap(), 3300);
    let lines = store.audit_log(Some("ws-g"), 100).await.unwrap();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.entry.action == "events.group")
            .count(),
        16
    );
}

async fn content_ids_and_idempotent_ids_dedupe_across_resends(store: &Store) {
    // DLV, EVT-05: a content-hashed id covers the timestamp, so its dedupe key leads with it;
    // an idempotency-keyed id does not (a retry may carry a new timestamp), and must still be
    // found as a duplicate when it comes back later with another timestamp.
    use lumenflow_cloud::ingest::batch_rows;
    use lumenflow_contracts::event::{build_event, BuildOptions};
    use lumenflow_contracts::identity::Subject;
    let subject = Subject::parse("ws-k").unwrap();
    let event = |key: Option<&str>, ms: i64, n: i64| {
        let mut payload = serde_json::Map::new();
        payload.insert("n".into(), n.into());
        let e = build_event(
            "acme:job_done",
            "ws-k",
            payload,
            BuildOptions {
                idempotency_key: key.map(str::to_string),
                timestamp: Some(Timestamp::from_unix_millis(ms)),
                seq: None,
            },
        )
        .unwrap();
        serde_json::to_value(e).unwrap()
    };
    let t = 1_800_000_000_000i64;
    let first = vec![
        event(None, t, 1),
        event(None, t + 1, 2),
        event(Some("job-7:done"), t + 2, 3),
    ];
    let rows = batch_rows("ws-k", &subject, first.clone()).unwrap();
    assert!(
        rows[0].time_keyed && rows[1].time_keyed,
        "content ids are time-keyed"
    );
    assert!(!rows[2].time_keyed, "an idempotency-keyed id is not");
    assert_ne!(rows[0].dedupe_key(), rows[1].dedupe_key());
    let out = store
        .ingest(&rows, &audit("ws-k", "events.push"))
        .await
        .unwrap();
    assert_eq!((out.fresh, out.duplicates), (3, 0));
    // The same events again, and the idempotent one re-emitted an hour later.
    let mut again = first;
    again.push(event(Some("job-7:done"), t + 3_600_000, 3));
    let rows = batch_rows("ws-k", &subject, again).unwrap();
    assert_eq!(rows[3].event_id, rows[2].event_id);
    let out = store
        .ingest(&rows, &audit("ws-k", "events.push"))
        .await
        .unwrap();
    assert_eq!((out.fresh, out.duplicates), (0, 4));
    assert_eq!(store.count_events("ws-k").await.unwrap(), 3);
    // Keys sort by time: a later content-hashed event's key is greater.
    assert!(rows[1].dedupe_key() > rows[0].dedupe_key());
}

async fn queries_order_by_timestamp_then_seq_and_page(store: &Store) {
    let t = 1_800_000_000_000;
    // Two channels; the same timestamp is ordered by seq.
    let rows = vec![
        row(
            "ws",
            "p2",
            "acme:b",
            t + 10,
            "ws:phone:p",
            Some(2),
            Some("r1"),
        ),
        row("ws", "s1", "acme:a", t, "ws", Some(1), Some("r1")),
        row("ws", "s2", "acme:a", t + 10, "ws", Some(1), None),
        row(
            "ws",
            "p1",
            "acme:b",
            t + 5,
            "ws:phone:p",
            Some(1),
            Some("r1"),
        ),
    ];
    store
        .ingest(&rows, &audit("ws", "events.push"))
        .await
        .unwrap();
    let ids = |evs: &[lumenflow_cloud::store::StoredEvent]| {
        evs.iter()
            .map(|e| e.event["event_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let all = EventQuery {
        workspace_id: "ws".into(),
        limit: 100,
        ..EventQuery::default()
    };
    let (evs, next) = store.query_events(&all).await.unwrap();
    assert_eq!(ids(&evs), ["s1", "p1", "s2", "p2"]);
    assert!(next.is_none());

    // Paging with the cursor walks the same order.
    let mut q = EventQuery {
        limit: 3,
        ..all.clone()
    };
    let (page1, next) = store.query_events(&q).await.unwrap();
    assert_eq!(ids(&page1), ["s1", "p1", "s2"]);
    let next = next.unwrap();
    assert_eq!(EventCursor::parse(&next.render()), Some(next));
    q.after = Some(next);
    let (page2, next) = store.query_events(&q).await.unwrap();
    assert_eq!(ids(&page2), ["p2"]);
    assert!(next.is_none());

    let filtered = |f: EventQuery| async move { ids(&store.query_events(&f).await.unwrap().0) };
    assert_eq!(
        filtered(EventQuery {
            kind: Some("acme:b".into()),
            ..all.clone()
        })
        .await,
        ["p1", "p2"]
    );
    assert_eq!(
        filtered(EventQuery {
            run_id: Some("r1".into()),
            ..all.clone()
        })
        .await,
        ["s1", "p1", "p2"]
    );
    assert_eq!(
        filtered(EventQuery {
            channel: Some("ws:phone:p".into()),
            ..all.clone()
        })
        .await,
        ["p1", "p2"]
    );
    assert_eq!(
        filtered(EventQuery {
            since_ms: Some(t + 5),
            until_ms: Some(t + 9),
            ..all.clone()
        })
        .await,
        ["p1"]
    );
    assert!(filtered(EventQuery {
        workspace_id: "other".into(),
        ..all.clone()
    })
    .await
    .is_empty());
    let run = store.run_events("r1", None).await.unwrap();
    assert_eq!(ids(&run), ["s1", "p1", "p2"]);
}

fn approval(id: &str, ws: &str) -> ApprovalRecord {
    ApprovalRecord {
        approval_id: id.into(),
        workspace_id: ws.into(),
        approval_type: "tool_call".into(),
        status: "pending".into(),
        subject: json!({"tool": "t", "input_hash": "sha256:00"}),
        context: Some(json!({"run_id": "run-9"})),
        requester_id: Some(ws.into()),
        requester_type: Some("agent".into()),
        reviewer_id: None,
        reviewer_type: None,
        decision_reason: None,
        requested_at: Timestamp::now().to_rfc3339(),
        decided_at: None,
        expires_at: None,
    }
}

async fn approvals_decide_once_and_expire(store: &Store) {
    store
        .insert_approval(&approval("a1", "ws"), Some(now_ms() + 60_000))
        .await
        .unwrap();
    store
        .insert_approval(&approval("a2", "ws"), Some(now_ms() - 1))
        .await
        .unwrap();
    store
        .insert_approval(&approval("a3", "ws"), None)
        .await
        .unwrap();
    let list = |status: Option<&str>| {
        let input = ApprovalListInput {
            workspace_id: "ws".into(),
            status: status.map(str::to_string),
            approval_type: None,
            limit: None,
            cursor: None,
        };
        async move {
            store
                .list_approvals(&input)
                .await
                .unwrap()
                .approvals
                .into_iter()
                .map(|a| a.approval_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Some("pending")).await, ["a1", "a3"]);
    assert_eq!(list(Some("expired")).await, ["a2"]);
    assert_eq!(
        store.approval("a2").await.unwrap().unwrap().status,
        "expired"
    );
    assert_eq!(
        store
            .resolve_approval("ws", "a2", "approved", None, None, None)
            .await
            .unwrap(),
        Err(ResolveRefusal::AlreadyDecided("expired".into()))
    );
    assert_eq!(
        store
            .resolve_approval("other", "a1", "approved", None, None, None)
            .await
            .unwrap(),
        Err(ResolveRefusal::NotFound)
    );
    let decided = store
        .resolve_approval(
            "ws",
            "a1",
            "approved",
            Some("looks fine"),
            Some("alice"),
            Some("user"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decided.status, "approved");
    assert_eq!(decided.decision_reason.as_deref(), Some("looks fine"));
    assert!(decided.decided_at.is_some());
    assert_eq!(store.approval("a1").await.unwrap().unwrap(), decided);
    assert_eq!(
        store
            .resolve_approval("ws", "a1", "rejected", None, None, None)
            .await
            .unwrap(),
        Err(ResolveRefusal::AlreadyDecided("approved".into()))
    );
    assert_eq!(list(Some("approved")).await, ["a1"]);
    assert_eq!(list(None).await, ["a1", "a2", "a3"]);
    // Paging.
    let page = store
        .list_approvals(&ApprovalListInput {
            workspace_id: "ws".into(),
            status: None,
            approval_type: None,
            limit: Some(2),
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(page.approvals.len(), 2);
    let rest = store
        .list_approvals(&ApprovalListInput {
            workspace_id: "ws".into(),
            status: None,
            approval_type: None,
            limit: Some(2),
            cursor: page.next_cursor,
        })
        .await
        .unwrap();
    assert_eq!(rest.approvals.len(), 1);
    assert!(rest.next_cursor.is_none());
    assert_eq!(store.run_approvals("run-9").await.unwrap().len(), 3);

    // Racing deciders: exactly one wins.
    let shared = Arc::new(store.clone());
    let mut handles = Vec::new();
    for i in 0..8 {
        let s = shared.clone();
        let decision = if i % 2 == 0 { "approved" } else { "rejected" };
        handles.push(tokio::spawn(async move {
            s.resolve_approval("ws", "a3", decision, None, None, None)
                .await
        }));
    }
    let mut wins = 0;
    for h in handles {
        if h.await.unwrap().unwrap().is_ok() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

async fn revocation_and_devices(store: &Store) {
    for (jti, exp) in [
        ("j1", now_ms() + 60_000),
        ("j2", now_ms() + 60_000),
        ("j3", now_ms() - 1),
    ] {
        store
            .record_token(&TokenRecord {
                jti: jti.into(),
                workspace_id: "ws".into(),
                subject: "ws".into(),
                scope: "workspace".into(),
                purpose: "enrollment".into(),
                issued_at_ms: now_ms(),
                expires_at_ms: exp,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.tokens("ws").await.unwrap().len(), 3);
    assert!(store.revoke("ws", "j1", Some("lost laptop")).await.unwrap());
    assert!(!store.revoke("ws", "j1", None).await.unwrap());
    // Only a token issued for the workspace can be revoked through it.
    for (ws, jti) in [("ws", "never-issued"), ("other", "j2")] {
        let refused = store.revoke(ws, jti, None).await.unwrap_err();
        assert_eq!(refused.code(), "NOT_FOUND", "{ws} {jti}: {refused}");
    }
    assert!(!store.is_revoked("never-issued").await.unwrap());
    assert!(store.is_revoked("j1").await.unwrap());
    assert!(!store.is_revoked("j2").await.unwrap());
    // Only unexpired tokens need revoking.
    assert_eq!(store.revoke_workspace("ws", None).await.unwrap(), 1);
    assert_eq!(store.revoked_jtis("ws").await.unwrap(), ["j1", "j2"]);
    assert!(store.revoked_jtis("other").await.unwrap().is_empty());

    store.add_device("ws", "p1", "Ana's phone").await.unwrap();
    let d = store.add_device("ws", "p1", "Ana's Pixel").await.unwrap();
    assert_eq!(d.name, "Ana's Pixel");
    assert_eq!(
        store.device_name("ws", "p1").await.unwrap().as_deref(),
        Some("Ana's Pixel")
    );
    assert_eq!(store.device_name("ws2", "p1").await.unwrap(), None);
    assert_eq!(store.devices("ws").await.unwrap().len(), 1);
}

async fn registry_and_receipts(store: &Store) {
    assert!(store.tools("ws").await.unwrap().is_none());
    store
        .put_tools("ws", "{\"tools\":[]}", Some("\"e1\""))
        .await
        .unwrap();
    let first = store.tools("ws").await.unwrap().unwrap();
    assert_eq!(first.etag.as_deref(), Some("\"e1\""));
    store.touch_tools("ws").await.unwrap();
    assert!(store.tools("ws").await.unwrap().unwrap().fetched_at_ms >= first.fetched_at_ms);

    let r = ReceiptRow {
        receipt_id: "rcpt_1".into(),
        workspace_id: "ws".into(),
        run_id: Some("run-1".into()),
        content_digest: "sha256:00".into(),
        receipt: json!({"a": 1}),
        seal: json!({"signature": "first"}),
        sealed_at_ms: now_ms(),
    };
    assert_eq!(store.put_receipt(&r).await.unwrap(), r);
    let again = ReceiptRow {
        seal: json!({"signature": "second"}),
        ..r.clone()
    };
    assert_eq!(
        store.put_receipt(&again).await.unwrap().seal,
        json!({"signature": "first"})
    );
    assert_eq!(store.run_receipts("run-1").await.unwrap().len(), 1);
    assert_eq!(
        store
            .put_sync_records("ws", "telemetry", &[json!({"metric": "m"})])
            .await
            .unwrap(),
        1
    );
}

async fn operators_and_sessions(store: &Store) {
    store.add_operator("alice", "$argon2id$fake").await.unwrap();
    let again = store
        .add_operator("alice", "$argon2id$other")
        .await
        .unwrap_err();
    assert_eq!(again.code(), "CONFLICT");
    let alice = store.operator("alice").await.unwrap().unwrap();
    assert_eq!(
        (alice.password_hash.as_str(), alice.disabled),
        ("$argon2id$fake", false)
    );
    assert!(store.operator("nobody").await.unwrap().is_none());

    // Sessions slide their idle expiry (written at most once a minute) and die when expired,
    // disabled or removed.
    let t0 = now_ms();
    let idle = 10 * TOUCH_EVERY_MS;
    let touch = |at: i64| store.touch_session("h1", at, idle);
    store
        .create_session("h1", "alice", "csrf1", t0, idle)
        .await
        .unwrap();
    let s = touch(t0 + 1_000).await.unwrap().unwrap();
    assert_eq!(
        (s.operator.as_str(), s.csrf_token.as_str()),
        ("alice", "csrf1")
    );
    assert_eq!(s.expires_at_ms, t0 + idle, "not slid within the minute");
    let s = touch(t0 + TOUCH_EVERY_MS).await.unwrap().unwrap();
    assert_eq!(s.expires_at_ms, t0 + TOUCH_EVERY_MS + idle);
    // Valid past the first expiry, and slid again (a minute passed) to t0 + 2 * idle + 1.
    assert!(
        touch(t0 + idle + 1).await.unwrap().is_some(),
        "slid past the first expiry"
    );
    assert!(touch(t0 + 2 * idle + 1).await.unwrap().is_none());
    assert!(store
        .touch_session("unknown", t0, idle)
        .await
        .unwrap()
        .is_none());

    store
        .create_session("h2", "alice", "csrf2", t0, 4 * idle)
        .await
        .unwrap();
    assert_eq!(
        store.session_count("alice", t0 + 3 * idle).await.unwrap(),
        1,
        "h1 idled out"
    );
    assert!(store.set_operator_disabled("alice", true).await.unwrap());
    assert!(store
        .touch_session("h2", t0 + 1, 60_000)
        .await
        .unwrap()
        .is_none());
    assert!(store.set_operator_disabled("alice", false).await.unwrap());
    assert!(!store.set_operator_disabled("nobody", true).await.unwrap());

    store
        .create_session("h3", "alice", "csrf3", t0, 60_000)
        .await
        .unwrap();
    assert!(store.delete_session("h3").await.unwrap());
    assert!(!store.delete_session("h3").await.unwrap());
    store
        .create_session("h4", "alice", "csrf4", t0, 60_000)
        .await
        .unwrap();
    store
        .create_session("h5", "alice", "csrf5", t0, 60_000)
        .await
        .unwrap();
    assert_eq!(store.remove_operator("alice").await.unwrap(), (true, 2));
    assert!(store
        .touch_session("h4", t0 + 1, 60_000)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.remove_operator("alice").await.unwrap(), (false, 0));
    assert!(store.operators().await.unwrap().is_empty());
}

async fn console_views(store: &Store) {
    store.ensure_workspace("ws-b").await.unwrap();
    store.ensure_workspace("ws-a").await.unwrap();
    let ids: Vec<String> = store
        .all_workspaces()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.workspace_id)
        .collect();
    assert_eq!(ids, ["ws-a", "ws-b"]);

    // Last seen counts the workspace's own requests and events, not operators acting on it.
    assert_eq!(store.last_seen("ws-a").await.unwrap().newest(), None);
    store.audit(&audit("ws-a", "events.push")).await.unwrap();
    store
        .audit(&AuditEntry {
            subject: "operator:alice".into(),
            ..audit("ws-b", "console.approvals.decide")
        })
        .await
        .unwrap();
    assert!(store.last_seen("ws-a").await.unwrap().request_ms.is_some());
    assert_eq!(store.last_seen("ws-b").await.unwrap().newest(), None);

    // Approvals across workspaces: pending oldest first, decided newest first.
    let far = now_ms() + 60_000;
    for (id, ws) in [("a1", "ws-a"), ("b1", "ws-b"), ("a2", "ws-a")] {
        store
            .insert_approval(&approval(id, ws), Some(far))
            .await
            .unwrap();
    }
    store
        .resolve_approval(
            "ws-b",
            "b1",
            "approved",
            Some("ok"),
            Some("operator:alice"),
            Some("user"),
        )
        .await
        .unwrap()
        .unwrap();
    let pending: Vec<String> = store
        .approvals_overview(true, now_ms(), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.approval_id)
        .collect();
    assert_eq!(pending, ["a1", "a2"]);
    let decided = store
        .approvals_overview(false, now_ms(), 100)
        .await
        .unwrap();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].reviewer_id.as_deref(), Some("operator:alice"));
    // Past their expiry, pending ones read as decided (expired).
    let later = store.approvals_overview(false, far + 1, 100).await.unwrap();
    assert_eq!(later.len(), 3);
    assert!(later.iter().filter(|a| a.status == "expired").count() == 2);

    // The newest events of a filter, oldest first.
    let rows: Vec<EventRow> = (0..5)
        .map(|i| {
            row(
                "ws-a",
                &format!("e{i}"),
                if i % 2 == 0 { "k:even" } else { "k:odd" },
                1_000 + i,
                "ws-a",
                Some(i),
                Some("run-x"),
            )
        })
        .collect();
    store
        .ingest(&rows, &audit("ws-a", "events.push"))
        .await
        .unwrap();
    let recent = store
        .recent_events("ws-a", Some("k:even"), Some("run-x"), 2)
        .await
        .unwrap();
    let kinds: Vec<i64> = recent.iter().map(|e| e.ts_ms).collect();
    assert_eq!(kinds, [1_002, 1_004]);
    assert!(store
        .recent_events("ws-a", None, Some("other"), 10)
        .await
        .unwrap()
        .is_empty());

    // Remembered call inputs, replaced by hash, forgotten after a week.
    store
        .record_call_input("ws-a", "sha256:1", "t:x", "{\"a\":1}", now_ms())
        .await
        .unwrap();
    store
        .record_call_input("ws-a", "sha256:1", "t:y", "{\"a\":1}", now_ms())
        .await
        .unwrap();
    assert_eq!(
        store.call_input("ws-a", "sha256:1").await.unwrap(),
        Some(("t:y".to_string(), "{\"a\":1}".to_string()))
    );
    assert!(store
        .call_input("ws-b", "sha256:1")
        .await
        .unwrap()
        .is_none());
    let week = 7 * 24 * 3600 * 1000;
    store
        .record_call_input("ws-a", "sha256:2", "t:z", "{}", now_ms() + week + 1)
        .await
        .unwrap();
    assert!(store
        .call_input("ws-a", "sha256:1")
        .await
        .unwrap()
        .is_none());
}

async fn run_bundles_and_recovery_requests(store: &Store) {
    use lumenflow_cloud::store::bundles::BundleRow;
    use lumenflow_cloud::store::recovery::RecoveryRequestRow;

    // Runs come from events, sealed receipts and bundles alike, newest first.
    let a = audit("ws-r", "events.push");
    store
        .ingest(
            &[row(
                "ws-r",
                "e1",
                "k:a",
                1_000,
                "c",
                None,
                Some("run-events"),
            )],
            &a,
        )
        .await
        .unwrap();
    store
        .put_receipt(&ReceiptRow {
            receipt_id: "rcpt_r".into(),
            workspace_id: "ws-r".into(),
            run_id: Some("run-sealed".into()),
            content_digest: "sha256:00".into(),
            receipt: json!({}),
            seal: json!({}),
            sealed_at_ms: 2_000,
        })
        .await
        .unwrap();
    let bundle = |run: &str, digest: &str, passed: bool| BundleRow {
        workspace_id: "ws-r".into(),
        run_id: run.into(),
        digest: digest.into(),
        files: [("manifest.json".to_string(), "e30=".to_string())].into(),
        total_bytes: 2,
        passed,
        checks: json!([{"name": "hashes_match", "passed": passed, "detail": "d"}]),
        signer_key_id: Some("ed25519:ab".into()),
        pinned_signer_key_id: Some("ed25519:ab".into()),
        uploaded_by: "ws-r".into(),
        uploaded_at_ms: 3_000,
    };
    let stored = store
        .put_bundle(&bundle("run-events", "sha256:1", false))
        .await
        .unwrap();
    assert!(!stored.passed);
    assert_eq!(
        stored.files.get("manifest.json").map(String::as_str),
        Some("e30=")
    );
    // The first bundle of a run is kept.
    let again = store
        .put_bundle(&bundle("run-events", "sha256:2", true))
        .await
        .unwrap();
    assert_eq!(again.digest, "sha256:1");
    store
        .put_bundle(&bundle("run-bundle-only", "sha256:3", true))
        .await
        .unwrap();
    let runs = store.recent_runs(Some("ws-r"), 10).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    // Both bundles were uploaded at 3 000 (a tie, broken by run id), after the receipt at 2 000.
    assert_eq!(ids, ["run-bundle-only", "run-events", "run-sealed"]);
    assert_eq!(runs[0].bundle_passed, Some(true));
    assert_eq!(runs[1].bundle_passed, Some(false));
    assert_eq!((runs[1].first_ms, runs[1].last_ms), (1_000, 3_000));
    assert_eq!(runs[2].bundle_passed, None);
    assert!(store
        .recent_runs(Some("ws-other"), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .run_bundle("run-sealed", None)
        .await
        .unwrap()
        .is_none());

    // Recovery requests: recorded with the sidecar's answer, newest first.
    let mut req = RecoveryRequestRow {
        id: 0,
        workspace_id: "ws-r".into(),
        turn_event_id: "evt_t".into(),
        turn_id: "turn-1".into(),
        wu_id: "WU-1".into(),
        reason: Some("why".into()),
        requested_by: "operator:alice".into(),
        requested_at_ms: 4_000,
        event_id: "evt_r1".into(),
        outcome: "refused".into(),
        sidecar_status: Some(422),
        sidecar_answer: Some("{}".into()),
    };
    let first = store.insert_recovery_request(&req).await.unwrap();
    req.event_id = "evt_r2".into();
    req.outcome = "unreachable".into();
    req.sidecar_status = None;
    let second = store.insert_recovery_request(&req).await.unwrap();
    assert!(second > first);
    let listed = store.recovery_requests(Some("ws-r"), 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].event_id, "evt_r2");
    assert_eq!(listed[0].sidecar_status, None);
    assert_eq!(listed[1].sidecar_status, Some(422));
    assert_eq!(listed[1].requested_by, "operator:alice");
    assert!(store
        .recovery_requests(Some("ws-other"), 10)
        .await
        .unwrap()
        .is_empty());
}
