//! The Runs page: recent runs, and one run's replay as a timeline (Ask → Dispatch → Rules →
//! Tool calls → Approvals → Proof) with what the run's evidence bundle adds: the Ask as it was
//! submitted, the policy decisions, the diff, the test results and the bundle's verdict, plus a
//! download of the bundle as a `.tar`.
//!
//! The replay itself is the control plane's (`crate::replay`, the same document as
//! `GET /api/v1/runs/{run_id}/replay`); this module only adds to it. No run record carries the
//! Ask, so the Ask stage is filled from the bundle's `ask.json` when one was uploaded, else from
//! the turn request the runtime reported (`agent-runtime:turn_started` carries the goal).

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use lumenflow_contracts::identity::check_id;
use lumenflow_contracts::time::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};

use super::session::Operator;
use crate::bundles::{bundle_tar, failed_checks};
use crate::error::{CloudError, CloudResult};
use crate::server::{replay_doc, Shared};
use crate::store::bundles::BundleRow;
use crate::store::{AuditEntry, StoredEvent};

/// The longest artifact text put in the run document (the download has the whole file).
const MAX_ARTIFACT_TEXT: usize = 256 * 1024;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/console/api/runs", get(list))
        .route("/console/api/runs/{run_id}", get(detail))
        .route("/console/api/runs/{run_id}/bundle", get(download))
}

#[derive(Deserialize, Default)]
struct ListParams {
    workspace_id: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RunParams {
    workspace_id: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_unix_millis(ms).to_rfc3339()
}

fn check(id: &str, what: &str) -> CloudResult<()> {
    check_id(id).map_err(|reason| {
        CloudError::BadRequest(format!(
            "`{}` is not a {what}: {reason}",
            id.chars().take(100).collect::<String>()
        ))
    })
}

async fn list(
    State(state): State<Shared>,
    _op: Operator,
    Query(p): Query<ListParams>,
) -> CloudResult<Response> {
    let ws = p.workspace_id.as_deref().filter(|w| !w.is_empty());
    if let Some(ws) = ws {
        check(ws, "workspace id")?;
    }
    let runs = state.store.recent_runs(ws, p.limit.unwrap_or(100)).await?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let headline = state
            .store
            .run_headline_events(&r.run_id, &r.workspace_id, HEADLINE_EVENTS)
            .await?;
        out.push(json!({
            "workspace_id": r.workspace_id,
            "run_id": r.run_id,
            "first_at": rfc3339(r.first_ms),
            "last_at": rfc3339(r.last_ms),
            "bundle": r.bundle_passed.map(|passed| json!({
                "passed": passed, "signer_key_id": r.signer_key_id,
                "pinned_signer_key_id": r.pinned_signer_key_id,
                "signer_changed": r.signer_changed(),
            })),
            "summary": run_summary(&headline),
        }));
    }
    Ok(Json(json!({ "runs": out })).into_response())
}

/// How many turn and tool-call events the Runs list reads per run to say what it was.
const HEADLINE_EVENTS: u32 = 200;

/// What tells runs apart in the list (walk-B: rows of opaque `run-<hex>` ids): a turn's goal and
/// how it ended, or the tool of a single-call run and its outcome, or the tools of several calls.
/// From stored events only; `null` when the run has none of them (a bundle-only run).
fn run_summary(events: &[StoredEvent]) -> Value {
    let payload = |e: &StoredEvent, field: &str| {
        e.event
            .pointer(&format!("/payload/{field}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let goal = events
        .iter()
        .find(|e| e.kind == "agent-runtime:turn_started")
        .and_then(|e| payload(e, "goal"));
    let turn_end = events.iter().rev().find_map(|e| match e.kind.as_str() {
        "agent-runtime:turn_completed" => Some("completed".to_string()),
        "agent-runtime:turn_aborted" => Some(
            payload(e, "cleanup_status")
                .map_or_else(|| "aborted".to_string(), |c| format!("aborted ({c})")),
        ),
        _ => None,
    });
    let calls: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.kind == "agent-runtime:tool_called")
        .collect();
    let mut tools: Vec<String> = Vec::new();
    for c in &calls {
        if let Some(t) = payload(c, "tool_name") {
            if !tools.contains(&t) {
                tools.push(t);
            }
        }
    }
    let last_call_outcome = calls.last().and_then(|c| {
        let outcome = payload(c, "outcome")?;
        Some(match payload(c, "error_code") {
            Some(code) => format!("{outcome} ({code})"),
            None => outcome,
        })
    });
    if goal.is_none() && turn_end.is_none() && calls.is_empty() {
        return Value::Null;
    }
    let kind = if goal.is_some() || turn_end.is_some() {
        "turn"
    } else {
        "calls"
    };
    json!({
        "kind": kind,
        "goal": goal,
        "tools": tools,
        "calls": calls.len(),
        "outcome": turn_end.or(last_call_outcome),
    })
}

async fn detail(
    State(state): State<Shared>,
    _op: Operator,
    Path(run_id): Path<String>,
    Query(p): Query<RunParams>,
) -> CloudResult<Response> {
    check(&run_id, "run id")?;
    let ws = p.workspace_id.as_deref().filter(|w| !w.is_empty());
    if let Some(ws) = ws {
        check(ws, "workspace id")?;
    }
    let bundle = state.store.run_bundle(&run_id, ws).await?;
    let mut doc = match replay_doc(&state, &run_id).await {
        Ok(doc) => doc,
        // A run known only by its bundle: an empty chain, with the bundle in Proof.
        Err(CloudError::NotFound(_)) if bundle.is_some() => {
            crate::replay::assemble(&run_id, &[], &[], &[])
        }
        Err(e) => return Err(e),
    };
    enrich(&mut doc, bundle.as_ref());
    Ok(Json(doc).into_response())
}

async fn download(
    State(state): State<Shared>,
    op: Operator,
    Path(run_id): Path<String>,
    Query(p): Query<RunParams>,
) -> CloudResult<Response> {
    check(&run_id, "run id")?;
    let ws = p.workspace_id.as_deref().filter(|w| !w.is_empty());
    if let Some(ws) = ws {
        check(ws, "workspace id")?;
    }
    let row = state.store.run_bundle(&run_id, ws).await?.ok_or_else(|| {
        CloudError::NotFound(format!("no bundle was uploaded for run `{run_id}`"))
    })?;
    let tar = bundle_tar(&row)?;
    // Evidence leaving the control plane is worth a line in the audit log.
    state
        .store
        .audit(&AuditEntry {
            workspace_id: Some(row.workspace_id.clone()),
            subject: op.subject(),
            action: "console.bundle.download".into(),
            outcome: "ok".into(),
            detail: Some(format!("run {run_id}, {} bytes", tar.len())),
            ..AuditEntry::default()
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{run_id}.tar\""),
            ),
        ],
        tar,
    )
        .into_response())
}

/// Add the Ask, the bundle's verdict and its artifacts to a replay document.
fn enrich(doc: &mut Value, bundle: Option<&BundleRow>) {
    let artifact = |name: &str| bundle.and_then(|b| artifact_text(b, name));
    let ask = artifact("ask.json")
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        // A bundle's `ask.json` is untrusted input: only one that states a goal is an Ask.
        .filter(|a| a.get("goal").and_then(Value::as_str).is_some())
        .and_then(|a| bundle.map(|b| ask_from_bundle(&a, b)))
        .or_else(|| ask_from_turn_request(doc));
    // The replay already opens with the turn request when there was one; a run without one
    // (only a bundle, or another runtime) gets the Ask the bundle states.
    if let Some(ask) = ask
        .as_ref()
        .filter(|_| stage_items(doc, "ask").next().is_none())
    {
        push_item(doc, "ask", ask.clone());
    }
    let policy: Vec<Value> = artifact("policy-decisions.jsonl")
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|d| d.get("decision").and_then(Value::as_str).is_some())
                .collect()
        })
        .unwrap_or_default();
    let tests = artifact("test-results.json")
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        // A results file states a status (`passed`, `failed`, `not_run`), gates when any ran.
        .filter(|t| t.get("status").and_then(Value::as_str).is_some())
        .or_else(|| tests_from_gate_events(doc));
    let obj = match doc.as_object_mut() {
        Some(o) => o,
        None => return,
    };
    obj.insert("ask".into(), ask.unwrap_or(Value::Null));
    obj.insert("policy_decisions".into(), Value::Array(policy));
    obj.insert("test_results".into(), tests.unwrap_or(Value::Null));
    obj.insert(
        "diff".into(),
        artifact("file-diff.patch").map_or(Value::Null, Value::String),
    );
    obj.insert(
        "pr_summary".into(),
        artifact("pr-summary.md").map_or(Value::Null, Value::String),
    );
    obj.insert(
        "bundle".into(),
        bundle.map_or(Value::Null, |b| {
            let files: Vec<Value> = b
                .files
                .iter()
                .map(|(name, enc)| json!({"name": name, "bytes": decoded_len(enc)}))
                .collect();
            json!({
                "workspace_id": b.workspace_id,
                "passed": b.passed,
                "checks": b.checks,
                "failed_checks": failed_checks(&b.checks),
                "signer_key_id": b.signer_key_id,
                "pinned_signer_key_id": b.pinned_signer_key_id,
                "signer_changed": b.signer_changed(),
                "digest": b.digest,
                "uploaded_by": b.uploaded_by,
                "uploaded_at": rfc3339(b.uploaded_at_ms),
                "total_bytes": b.total_bytes,
                "files": files,
                "download": format!(
                    "/console/api/runs/{}/bundle?workspace_id={}",
                    b.run_id, b.workspace_id
                ),
            })
        }),
    );
}

/// The length of what standard, padded base64 `enc` decodes to.
fn decoded_len(enc: &str) -> usize {
    let pad = enc.bytes().rev().take_while(|b| *b == b'=').count();
    (enc.len() / 4 * 3).saturating_sub(pad)
}

/// A text artifact of the bundle, when present, UTF-8 and not too long.
fn artifact_text(b: &BundleRow, name: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b.files.get(name)?)
        .ok()?;
    if bytes.len() > MAX_ARTIFACT_TEXT {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Whether the bundle's `ask.json` may be called verified, and if not, every reason why
/// (walk-G F3): the Ask must name the very run it is shown under, its bundle must pass all four
/// checks, and be signed by the workspace's pinned signer.
fn ask_verification(a: &Value, b: &BundleRow) -> (bool, Option<String>) {
    let mut why_not = Vec::new();
    match a.get("run_id").and_then(Value::as_str) {
        Some(named) if named == b.run_id => {}
        Some(named) => why_not.push(format!(
            "ask.json names run `{}`, not this run `{}`",
            named.chars().take(256).collect::<String>(),
            b.run_id
        )),
        None => why_not.push("ask.json names no run".to_string()),
    }
    if !b.passed {
        why_not.push(format!(
            "the bundle failed verification ({})",
            failed_checks(&b.checks).join(", ")
        ));
    }
    if b.signer_changed() {
        why_not.push(format!(
            "the bundle is signed by {}, not by the workspace's pinned signer {}",
            b.signer_key_id.as_deref().unwrap_or("-"),
            b.pinned_signer_key_id.as_deref().unwrap_or("-")
        ));
    }
    if why_not.is_empty() {
        (true, None)
    } else {
        (false, Some(why_not.join("; ")))
    }
}

fn ask_from_bundle(a: &Value, b: &BundleRow) -> Value {
    let (verified, why_not) = ask_verification(a, b);
    let plan: Vec<Value> = a
        .pointer("/dispatch/plan")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(|s| s.get("tool").cloned()).collect())
        .unwrap_or_default();
    json!({
        "source": "ask",
        "from": "bundle",
        "verified": verified,
        "not_verified_because": why_not,
        "run_id": a.get("run_id"),
        "goal": a.get("goal"),
        "ask_id": a.get("ask_id"),
        "submitted_by": a.get("submitted_by"),
        "submitted_at": a.get("submitted_at"),
        "workspace_id": a.get("workspace_id"),
        "tool": a.pointer("/dispatch/tool"),
        "turn_id": a.pointer("/dispatch/turn_id"),
        "plan": plan,
    })
}

/// The Ask as the runtime reported it: the replay's first turn request.
fn ask_from_turn_request(doc: &Value) -> Option<Value> {
    let request = stage_items(doc, "ask")
        .find(|i| i.get("source").and_then(Value::as_str) == Some("turn_request"))?;
    Some(json!({
        "source": "ask",
        "from": "turn_started",
        "verified": false,
        "goal": request.get("goal"),
        "submitted_by": request.get("from"),
        "submitted_at": request.get("timestamp"),
        "turn_id": request.get("turn_id"),
        "tool": "agent:execute-turn",
        "plan": [],
    }))
}

/// Test results from the run's gate events, when no bundle carries `test-results.json`.
fn tests_from_gate_events(doc: &Value) -> Option<Value> {
    let gates: Vec<Value> = stage_items(doc, "rules")
        .filter_map(|i| i.get("event"))
        .filter_map(|e| {
            let kind = e.get("kind").and_then(Value::as_str)?;
            let status = match kind.rsplit(':').next()? {
                "gate_passed" => "passed",
                "gate_failed" => "failed",
                _ => return None,
            };
            Some(json!({
                "name": e.pointer("/payload/gate"),
                "status": status,
                "duration_ms": e.pointer("/payload/duration_ms"),
                "exit_code": e.pointer("/payload/exit_code"),
                "summary": e.pointer("/payload/summary"),
            }))
        })
        .collect();
    if gates.is_empty() {
        return None;
    }
    let failed = gates.iter().any(|g| g["status"] == "failed");
    Some(json!({"status": if failed { "failed" } else { "passed" }, "gates": gates}))
}

fn stage_items<'a>(doc: &'a Value, stage: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    doc.get("stages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |s| s.get("stage").and_then(Value::as_str) == Some(stage))
        .filter_map(|s| s.get("items").and_then(Value::as_array))
        .flatten()
}

/// Put `item` first in `stage`, keeping its count right.
fn push_item(doc: &mut Value, stage: &str, item: Value) {
    let Some(stages) = doc.get_mut("stages").and_then(Value::as_array_mut) else {
        return;
    };
    let Some(s) = stages
        .iter_mut()
        .find(|s| s.get("stage").and_then(Value::as_str) == Some(stage))
    else {
        return;
    };
    if let Some(items) = s.get_mut("items").and_then(Value::as_array_mut) {
        items.insert(0, item);
        let n = items.len();
        s["count"] = json!(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_with(events: Vec<Value>) -> Value {
        let stored: Vec<crate::store::StoredEvent> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| crate::store::StoredEvent {
                cursor: i as i64,
                workspace_id: "ws".into(),
                kind: e["kind"].as_str().unwrap_or("").to_string(),
                ts_ms: i as i64,
                seq: None,
                channel: "c".into(),
                run_id: Some("r".into()),
                event: e,
            })
            .collect();
        crate::replay::assemble("r", &stored, &[], &[])
    }

    #[test]
    fn without_a_bundle_the_ask_is_the_turn_request_and_tests_come_from_gates() {
        let mut doc = doc_with(vec![
            json!({"kind": "agent-runtime:turn_started", "from": "ws", "timestamp": "t",
                   "payload": {"turn_id": "turn-1", "goal": "fix the test"}}),
            json!({"kind": "software-delivery:gate_failed", "payload": {"gate": "test", "exit_code": 1}}),
        ]);
        enrich(&mut doc, None);
        assert_eq!(doc["ask"]["goal"], "fix the test");
        assert_eq!(doc["ask"]["from"], "turn_started");
        let ask_stage = doc["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .find(|s| s["stage"] == "ask")
            .expect("ask stage")
            .clone();
        assert_eq!(ask_stage["count"], 1);
        assert_eq!(ask_stage["items"][0]["source"], "turn_request");
        assert_eq!(doc["test_results"]["status"], "failed");
        assert_eq!(doc["test_results"]["gates"][0]["name"], "test");
        assert!(doc["bundle"].is_null());
    }

    fn bundle(run: &str, passed: bool, signer: &str, pinned: &str) -> BundleRow {
        BundleRow {
            workspace_id: "ws".into(),
            run_id: run.into(),
            digest: "sha256:0".into(),
            files: Default::default(),
            total_bytes: 0,
            passed,
            checks: json!([{"name": "hashes_match", "passed": passed, "detail": ""}]),
            signer_key_id: Some(signer.into()),
            pinned_signer_key_id: Some(pinned.into()),
            uploaded_by: "ws".into(),
            uploaded_at_ms: 0,
        }
    }

    /// Regression for walk-G F3: the Ask panel said `verified` for an `ask.json` of another
    /// run, from the bundle's verdict alone; now every reason it is not verified is named.
    #[test]
    fn an_ask_is_verified_only_for_its_own_run_in_a_pinned_passing_bundle() {
        let ask = |run: &str| json!({"goal": "g", "run_id": run});
        let check = |a: Value, b: BundleRow| ask_verification(&a, &b);
        assert_eq!(
            check(ask("r1"), bundle("r1", true, "k1", "k1")),
            (true, None)
        );
        let (ok, why) = check(ask("r2"), bundle("r1", true, "k1", "k1"));
        assert!(!ok);
        assert_eq!(
            why.as_deref(),
            Some("ask.json names run `r2`, not this run `r1`")
        );
        let (ok, why) = check(json!({"goal": "g"}), bundle("r1", true, "k1", "k1"));
        assert_eq!((ok, why.as_deref()), (false, Some("ask.json names no run")));
        let (ok, why) = check(ask("r2"), bundle("r1", false, "k2", "k1"));
        let why = why.unwrap_or_default();
        assert!(!ok);
        for part in [
            "names run `r2`",
            "failed verification (hashes_match)",
            "signed by k2",
            "pinned signer k1",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
    }
}
