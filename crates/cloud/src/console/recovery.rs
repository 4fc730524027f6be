//! The Recovery page: aborted turns (`agent-runtime:turn_aborted`) with their `cleanup_status`
//! and `recovery_action`, and the one action an operator can take on them: ask the workspace to
//! recover the work unit by sending a v2 `conductor:recovery_requested` event to its sidecar's
//! `POST /events`.
//!
//! The control plane never runs the `recovery_action` (ABR-04: it is shown, never executed); it
//! only forwards the operator's request, after the operator confirmed it in the console, and
//! what the workspace does with it is up to the packs that subscribe there. Every request is
//! recorded with the sidecar's answer and audited as `operator:<name>`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lumenflow_contracts::event::{build_event, BuildOptions};
use lumenflow_contracts::identity::{check_id, SCOPE_WORKSPACE};
use lumenflow_contracts::time::Timestamp;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::session::Operator;
use crate::error::{CloudError, CloudResult};
use crate::server::{sidecar_url, AppState, Shared};
use crate::store::recovery::RecoveryRequestRow;
use crate::store::{now_ms, AuditEntry, StoredEvent};

/// The kind of an aborted turn.
pub const TURN_ABORTED: &str = "agent-runtime:turn_aborted";
/// The kind sent to the sidecar.
pub const RECOVERY_REQUESTED: &str = "conductor:recovery_requested";
/// Aborted turns looked at per workspace.
const TURNS_PER_WORKSPACE: u32 = 500;
/// How much of the sidecar's answer is kept.
const MAX_ANSWER_CHARS: usize = 2_000;
/// The longest reason accepted.
const MAX_REASON_CHARS: usize = 1_000;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/console/api/recovery", get(list).post(request))
}

#[derive(Deserialize, Default)]
struct ListParams {
    workspace_id: Option<String>,
}

fn check(id: &str, field: &str) -> CloudResult<()> {
    check_id(id).map_err(|reason| {
        CloudError::BadRequest(format!(
            "`{field}` `{}` is not valid: {reason}",
            id.chars().take(100).collect::<String>()
        ))
    })
}

/// The work unit a recovery action names: the `wu_id` of a `software-delivery:wu_recover` input
/// (what the agent runtime and the software-delivery pack write), or the `--id` of a
/// `wu:recover` command.
pub fn work_unit_of(action: &str) -> Option<String> {
    let from_json = action.find("\"wu_id\"").and_then(|at| {
        let rest = action[at + "\"wu_id\"".len()..].trim_start();
        let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
        rest.split('"').next().map(str::to_string)
    });
    let from_flag = || {
        let mut words = action.split_whitespace();
        while let Some(w) = words.next() {
            if w == "--id" {
                return words
                    .next()
                    .map(|v| v.trim_matches(['\'', '"']).to_string());
            }
        }
        None
    };
    from_json
        .or_else(from_flag)
        .filter(|wu| check_id(wu).is_ok())
}

/// The workspaces to look at: the one asked for, else every workspace.
async fn workspaces(state: &AppState, only: Option<&str>) -> CloudResult<Vec<String>> {
    match only {
        Some(ws) => {
            check(ws, "workspace_id")?;
            Ok(vec![ws.to_string()])
        }
        None => Ok(state
            .store
            .all_workspaces()
            .await?
            .into_iter()
            .map(|w| w.workspace_id)
            .collect()),
    }
}

fn turn_json(e: &StoredEvent, requests: &[&RecoveryRequestRow]) -> Value {
    let payload = e.event.get("payload").cloned().unwrap_or(Value::Null);
    let action = payload.get("recovery_action").and_then(Value::as_str);
    json!({
        "workspace_id": e.workspace_id,
        "event_id": e.event.get("event_id"),
        "timestamp": e.event.get("timestamp"),
        "run_id": e.run_id,
        "turn_id": payload.get("turn_id"),
        "cleanup_status": payload.get("cleanup_status"),
        "recovery_action": action,
        "reason": payload.get("reason"),
        "wu_id": action.and_then(work_unit_of),
        "event": e.event,
        "requests": requests.iter().map(|r| request_json(r)).collect::<Vec<_>>(),
    })
}

fn request_json(r: &RecoveryRequestRow) -> Value {
    json!({
        "id": r.id,
        "workspace_id": r.workspace_id,
        "turn_event_id": r.turn_event_id,
        "turn_id": r.turn_id,
        "wu_id": r.wu_id,
        "reason": r.reason,
        "requested_by": r.requested_by,
        "requested_at": Timestamp::from_unix_millis(r.requested_at_ms).to_rfc3339(),
        "event_id": r.event_id,
        "outcome": r.outcome,
        "sidecar_status": r.sidecar_status,
        "sidecar_answer": r.sidecar_answer,
    })
}

async fn list(
    State(state): State<Shared>,
    _op: Operator,
    Query(p): Query<ListParams>,
) -> CloudResult<Response> {
    let only = p.workspace_id.as_deref().filter(|w| !w.is_empty());
    let mut turns: Vec<StoredEvent> = Vec::new();
    for ws in workspaces(&state, only).await? {
        turns.extend(
            state
                .store
                .recent_events(&ws, Some(TURN_ABORTED), None, TURNS_PER_WORKSPACE)
                .await?,
        );
    }
    turns.sort_by(|a, b| b.ts_ms.cmp(&a.ts_ms).then(b.cursor.cmp(&a.cursor)));
    let requests = state.store.recovery_requests(only, 1_000).await?;
    let mut by_turn: HashMap<(&str, &str), Vec<&RecoveryRequestRow>> = HashMap::new();
    for r in &requests {
        by_turn
            .entry((r.workspace_id.as_str(), r.turn_event_id.as_str()))
            .or_default()
            .push(r);
    }
    let out: Vec<Value> = turns
        .iter()
        .map(|e| {
            let id = e
                .event
                .get("event_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let rs = by_turn
                .get(&(e.workspace_id.as_str(), id))
                .cloned()
                .unwrap_or_default();
            turn_json(e, &rs)
        })
        .collect();
    Ok(Json(json!({"turns": out})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryBody {
    workspace_id: String,
    /// The `event_id` of the aborted turn.
    turn_event_id: String,
    /// The work unit to recover (prefilled from the recovery action in the console).
    wu_id: String,
    reason: Option<String>,
}

async fn request(
    State(state): State<Shared>,
    op: Operator,
    body: Result<Json<RecoveryBody>, axum::extract::rejection::JsonRejection>,
) -> CloudResult<Response> {
    let Json(req) = body.map_err(|e| {
        CloudError::BadRequest(format!(
            "the body of POST /console/api/recovery: {}",
            e.body_text()
        ))
    })?;
    check(&req.workspace_id, "workspace_id")?;
    check(&req.wu_id, "wu_id")?;
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(MAX_REASON_CHARS).collect::<String>());
    let mut audit = AuditEntry {
        workspace_id: Some(req.workspace_id.clone()),
        subject: op.subject(),
        action: "console.recovery.request".into(),
        outcome: "ok".into(),
        ..AuditEntry::default()
    };
    let result = send(&state, &op, &req, reason.clone()).await;
    match &result {
        Ok(row) => {
            audit.outcome = if row.outcome == "delivered" {
                "ok"
            } else {
                "refused"
            }
            .into();
            audit.code = (row.outcome != "delivered").then(|| row.outcome.to_uppercase());
            audit.detail = Some(format!(
                "turn {} work unit {}: {} sent, sidecar {}",
                row.turn_id,
                row.wu_id,
                row.event_id,
                row.sidecar_status
                    .map_or_else(|| "unreachable".to_string(), |s| s.to_string())
            ));
        }
        Err(e) => {
            audit.outcome = "refused".into();
            audit.code = Some(e.code().to_string());
            audit.detail = Some(e.to_string().chars().take(500).collect());
        }
    }
    state.store.audit(&audit).await?;
    let row = result?;
    Ok(Json(request_json(&row)).into_response())
}

/// Check the turn, build the event, send it to the sidecar and record what it answered.
async fn send(
    state: &AppState,
    op: &Operator,
    req: &RecoveryBody,
    reason: Option<String>,
) -> CloudResult<RecoveryRequestRow> {
    let turn = state
        .store
        .recent_events(
            &req.workspace_id,
            Some(TURN_ABORTED),
            None,
            TURNS_PER_WORKSPACE,
        )
        .await?
        .into_iter()
        .find(|e| e.event.get("event_id").and_then(Value::as_str) == Some(&req.turn_event_id))
        .ok_or_else(|| {
            CloudError::NotFound(format!(
                "workspace `{}` has no aborted turn with event id `{}`",
                req.workspace_id, req.turn_event_id
            ))
        })?;
    let turn_id = turn
        .event
        .pointer("/payload/turn_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let sidecar = sidecar_url(&state.store, &req.workspace_id).await?;
    let mut payload = Map::new();
    payload.insert("wu_id".into(), json!(req.wu_id));
    if let Some(r) = &reason {
        payload.insert("reason".into(), json!(r));
    }
    payload.insert("requested_by".into(), json!(op.subject()));
    // `from` is the subject the sidecar token carries (the workspace): the sidecar records the
    // token's subject as the sender, and the operator is named in `requested_by`.
    let event = build_event(
        RECOVERY_REQUESTED,
        &req.workspace_id,
        payload,
        BuildOptions::default(),
    )
    .map_err(|e| CloudError::Internal(format!("cannot build the recovery event: {e}")))?;
    let token = state
        .authority
        .mint_sidecar_token(&state.store, &req.workspace_id, SCOPE_WORKSPACE, "recovery")
        .await?;
    let url = format!("{sidecar}/events");
    let answer = state
        .http
        .post(&url)
        .bearer_auth(token)
        .json(&event)
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let (outcome, status, text) = match answer {
        Ok(resp) => {
            let status = i64::from(resp.status().as_u16());
            let ok = resp.status().is_success();
            let text = resp
                .text()
                .await
                .unwrap_or_else(|e| format!("the answer could not be read: {e}"));
            (if ok { "delivered" } else { "refused" }, Some(status), text)
        }
        Err(e) => ("unreachable", None, format!("POST {url} failed: {e}")),
    };
    let mut row = RecoveryRequestRow {
        id: 0,
        workspace_id: req.workspace_id.clone(),
        turn_event_id: req.turn_event_id.clone(),
        turn_id,
        wu_id: req.wu_id.clone(),
        reason,
        requested_by: op.subject(),
        requested_at_ms: now_ms(),
        event_id: event.event_id.clone(),
        outcome: outcome.into(),
        sidecar_status: status,
        sidecar_answer: Some(text.chars().take(MAX_ANSWER_CHARS).collect()),
    };
    row.id = state.store.insert_recovery_request(&row).await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_unit_comes_from_the_recovery_command() {
        for (action, wu) in [
            (
                r#"lumenflow tool call software-delivery:wu_recover --input '{"wu_id":"WU-042"}'"#,
                Some("WU-042"),
            ),
            ("pnpm wu:recover --id WU-7", Some("WU-7")),
            ("Steps 1 `x` completed and their changes were kept.", None),
            (r#"{"wu_id":"../etc"}"#, None),
        ] {
            assert_eq!(work_unit_of(action).as_deref(), wu, "{action}");
        }
    }
}
