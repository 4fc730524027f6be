//! The Workspaces page: every enrolled workspace with its devices, when it was last seen, whether
//! the control plane reaches its sidecar, and the tools its registry lists (scope, approvals).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lumenflow_contracts::identity::check_id;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::wire::ToolListing;
use serde_json::{json, Value};

use super::session::Operator;
use crate::error::{CloudError, CloudResult};
use crate::server::{refresh_tools, Shared};
use crate::store::{now_ms, AuditEntry, WorkspaceRow};

/// A registry fetched longer ago than this reads `stale` (the refresher runs every minute by
/// default, so two missed rounds and more).
const ONLINE_WITHIN_MS: i64 = 5 * 60 * 1000;
/// Opening a workspace refreshes its registry when the stored one is older than this.
const REFRESH_AFTER_MS: i64 = 60 * 1000;

fn ts(ms: Option<i64>) -> Value {
    ms.map(|m| Value::String(Timestamp::from_unix_millis(m).to_rfc3339()))
        .unwrap_or(Value::Null)
}

/// `no_sidecar`, `unreachable` (the last attempt to reach the sidecar failed: a registry
/// refresh in the background or by an operator, or a forwarded call), `never_fetched`, `online`
/// or `stale`.
fn connection(
    sidecar_url: Option<&str>,
    fetched_at_ms: Option<i64>,
    error: Option<&str>,
    now: i64,
) -> &'static str {
    match (sidecar_url, error, fetched_at_ms) {
        (None, _, _) => "no_sidecar",
        (Some(_), Some(_), _) => "unreachable",
        (Some(_), None, None) => "never_fetched",
        (Some(_), None, Some(at)) if now - at <= ONLINE_WITHIN_MS => "online",
        _ => "stale",
    }
}

fn check_ws(ws: &str) -> CloudResult<()> {
    check_id(ws).map_err(|reason| {
        CloudError::BadRequest(format!(
            "`{}` is not a workspace id: {reason}",
            ws.chars().take(100).collect::<String>()
        ))
    })
}

async fn list(State(state): State<Shared>, _op: Operator) -> CloudResult<Response> {
    let now = now_ms();
    let mut pending: HashMap<String, usize> = HashMap::new();
    for a in state.store.approvals_overview(true, now, 1_000).await? {
        *pending.entry(a.workspace_id).or_default() += 1;
    }
    let mut out = Vec::new();
    for w in state.store.all_workspaces().await? {
        let devices = state.store.devices(&w.workspace_id).await?.len();
        let tools = state.store.tools(&w.workspace_id).await?;
        let tool_count = tools
            .as_ref()
            .and_then(|t| serde_json::from_str::<ToolListing>(&t.listing).ok())
            .map(|l| l.tools.len());
        let fetched = tools.as_ref().map(|t| t.fetched_at_ms);
        let seen = state.store.last_seen(&w.workspace_id).await?;
        let failure = state.store.sidecar_failure(&w.workspace_id).await?;
        out.push(json!({
            "workspace_id": w.workspace_id,
            "sidecar_url": w.sidecar_url,
            "enrolled_at": ts(w.enrolled_at_ms),
            "last_seen": ts(seen.newest()),
            "devices": devices,
            "tools": tool_count,
            "registry_fetched_at": ts(fetched),
            "connection": connection(
                w.sidecar_url.as_deref(),
                fetched,
                failure.as_ref().map(|(_, e)| e.as_str()),
                now,
            ),
            "unreachable_since": ts(failure.as_ref().map(|(at, _)| *at)),
            "unreachable_error": failure.map(|(_, e)| e),
            "pending_approvals": pending.get(&w.workspace_id).copied().unwrap_or(0),
        }));
    }
    Ok(Json(json!({"workspaces": out})).into_response())
}

async fn workspace_row(state: &Shared, ws: &str) -> CloudResult<WorkspaceRow> {
    check_ws(ws)?;
    state
        .store
        .workspace(ws)
        .await?
        .ok_or_else(|| CloudError::NotFound(format!("workspace `{ws}` is not known")))
}

async fn detail(
    State(state): State<Shared>,
    _op: Operator,
    Path(ws): Path<String>,
) -> CloudResult<Response> {
    let row = workspace_row(&state, &ws).await?;
    let now = now_ms();
    let mut registry_error = None;
    let stored = state.store.tools(&ws).await?;
    let stale = stored
        .as_ref()
        .is_none_or(|t| now - t.fetched_at_ms > REFRESH_AFTER_MS);
    if stale && row.sidecar_url.is_some() {
        if let Err(e) = refresh_tools(&state.store, &state.authority, &state.http, &ws).await {
            registry_error = Some(e.to_string());
        }
    }
    detail_json(&state, &row, registry_error).await
}

async fn detail_json(
    state: &Shared,
    row: &WorkspaceRow,
    registry_error: Option<String>,
) -> CloudResult<Response> {
    let ws = row.workspace_id.as_str();
    let now = now_ms();
    let stored = state.store.tools(ws).await?;
    let listing = match &stored {
        Some(t) => Some(
            serde_json::from_str::<ToolListing>(&t.listing).map_err(|e| {
                CloudError::Storage(format!(
                    "the stored tool listing of `{ws}` is not valid: {e}"
                ))
            })?,
        ),
        None => None,
    };
    let tools: Vec<Value> = listing
        .map(|l| l.tools)
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let needs_approval =
                t.decision == "approval_required" || !t.required_approvals.is_empty();
            json!({
                "name": t.name,
                "pack_id": t.pack_id,
                "pack_version": t.pack_version,
                "description": t.description,
                "permission": t.permission,
                "token_scope": t.token_scope,
                "required_scopes": t.required_scopes,
                "required_approvals": t.required_approvals,
                "decision": t.decision,
                "needs_approval": needs_approval,
            })
        })
        .collect();
    let devices: Vec<Value> = state
        .store
        .devices(ws)
        .await?
        .into_iter()
        .map(|d| {
            json!({"device_id": d.device_id, "name": d.name,
                   "registered_at": ts(Some(d.registered_at_ms))})
        })
        .collect();
    let seen = state.store.last_seen(ws).await?;
    let fetched = stored.as_ref().map(|t| t.fetched_at_ms);
    // This request's own failure, else the last recorded one (a background refresh, an invoke,
    // another operator's refresh), so the list and this page say the same.
    let failure = state.store.sidecar_failure(ws).await?;
    let registry_error = registry_error.or_else(|| failure.as_ref().map(|(_, e)| e.clone()));
    Ok(Json(json!({
        "workspace_id": ws,
        "sidecar_url": row.sidecar_url,
        "created_at": ts(Some(row.created_at_ms)),
        "enrolled_at": ts(row.enrolled_at_ms),
        "last_seen": ts(seen.newest()),
        "last_event_at": ts(seen.event_ms),
        "last_request_at": ts(seen.request_ms),
        "connection": connection(row.sidecar_url.as_deref(), fetched, registry_error.as_deref(), now),
        "unreachable_since": ts(failure.as_ref().map(|(at, _)| *at)),
        "registry": {
            "fetched_at": ts(fetched),
            "etag": stored.as_ref().and_then(|t| t.etag.clone()),
            "error": registry_error,
        },
        "devices": devices,
        "tools": tools,
    }))
    .into_response())
}

/// Fetch the workspace's registry now (the operator's "Refresh" button).
async fn refresh(
    State(state): State<Shared>,
    op: Operator,
    Path(ws): Path<String>,
) -> CloudResult<Response> {
    let row = workspace_row(&state, &ws).await?;
    let outcome = refresh_tools(&state.store, &state.authority, &state.http, &ws).await;
    let entry = AuditEntry {
        workspace_id: Some(ws.clone()),
        subject: op.subject(),
        action: "console.registry.refresh".into(),
        outcome: if outcome.is_ok() { "ok" } else { "refused" }.into(),
        code: outcome.as_ref().err().map(|e| e.code().to_string()),
        detail: outcome.as_ref().err().map(|e| e.to_string()),
        ..AuditEntry::default()
    };
    state.store.audit(&entry).await?;
    detail_json(&state, &row, outcome.err().map(|e| e.to_string())).await
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/console/api/workspaces", get(list))
        .route("/console/api/workspaces/{ws}", get(detail))
        .route("/console/api/workspaces/{ws}/refresh", post(refresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_states() {
        let now = 10 * ONLINE_WITHIN_MS;
        assert_eq!(connection(None, Some(now), None, now), "no_sidecar");
        assert_eq!(
            connection(Some("u"), Some(now), Some("refused"), now),
            "unreachable"
        );
        assert_eq!(connection(Some("u"), None, None, now), "never_fetched");
        assert_eq!(
            connection(Some("u"), Some(now - 1_000), None, now),
            "online"
        );
        assert_eq!(
            connection(Some("u"), Some(now - ONLINE_WITHIN_MS - 1), None, now),
            "stale"
        );
    }
}
