//! The Approvals inbox: pending approvals of every workspace with the exact input they bind,
//! and the operator's decision, taken through the same store path as
//! `lumenflow cloud approvals approve|reject` (so a sidecar waiting on the approval proceeds) and
//! audited as `operator:<name>`.
//!
//! An approval binds a tool and the hash of its input (`subject.input_hash`); the input itself
//! reaches the control plane only when the call was invoked through it, so invoke remembers it
//! (see [`remember_call_input`]) and the inbox shows it after checking it still hashes to the
//! bound value. A call made directly at the sidecar shows its hash alone.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_contracts::wire::ApprovalRecord;
use serde::Deserialize;
use serde_json::{json, Value};

use super::session::Operator;
use crate::error::{CloudError, CloudResult};
use crate::server::Shared;
use crate::store::{now_ms, AttributedApproval, AuditEntry, Decider, ResolveRefusal, Store};

/// Inputs larger than this are not remembered (the inbox then shows the hash only).
const MAX_REMEMBERED_INPUT_BYTES: usize = 64 * 1024;
/// The longest decision reason accepted.
const MAX_REASON_CHARS: usize = 2_000;

/// `sha256:<hex>` of the canonical JSON of `input`: the `input_hash` an approval binds.
fn input_hash(input: &Value) -> String {
    format!("sha256:{}", canonical_hash(input))
}

/// Remember the input of a call invoked through the control plane, so an approval it causes can
/// show it. A failure only costs that display, so it is logged, never returned.
pub(crate) async fn remember_call_input(
    store: &Store,
    workspace_id: &str,
    tool: &str,
    input: &Value,
    invoked_by: &str,
) {
    let input = call_input_of(input);
    let text = input.to_string();
    if text.len() > MAX_REMEMBERED_INPUT_BYTES {
        return;
    }
    if let Err(e) = store
        .record_call_input_by(
            workspace_id,
            &input_hash(input),
            tool,
            &text,
            now_ms(),
            Some(invoked_by),
        )
        .await
    {
        tracing::warn!(error = %e, workspace = %workspace_id, "cannot remember a call input");
    }
}

/// The tool input of a forwarded body: the sidecar reads `{input, context?, from?}` as an
/// envelope and anything else as the input itself (Q15).
fn call_input_of(body: &Value) -> &Value {
    match body {
        Value::Object(m)
            if m.contains_key("input")
                && m.keys()
                    .all(|k| matches!(k.as_str(), "input" | "context" | "from")) =>
        {
            m.get("input").unwrap_or(body)
        }
        _ => body,
    }
}

/// Remember who invoked the call the sidecar answered with `answer` (its `receipt_id`), so the
/// run the call belongs to can name the operator instead of the workspace. Best effort, as
/// [`remember_call_input`].
pub(crate) async fn remember_invocation(
    store: &Store,
    workspace_id: &str,
    tool: &str,
    input: &Value,
    answer: &[u8],
    invoked_by: &str,
) {
    let Some(receipt_id) = serde_json::from_slice::<Value>(answer).ok().and_then(|v| {
        v.get("receipt_id")
            .and_then(Value::as_str)
            .map(str::to_string)
    }) else {
        return;
    };
    let envelope = json!({"tool_name": tool, "input": call_input_of(input)});
    let envelope_hash = format!("sha256:{}", canonical_hash(&envelope));
    if let Err(e) = store
        .record_invocation(
            workspace_id,
            &receipt_id,
            &envelope_hash,
            tool,
            invoked_by,
            now_ms(),
        )
        .await
    {
        tracing::warn!(error = %e, workspace = %workspace_id, "cannot remember an invocation");
    }
}

/// The input behind an approval, when known, checked against the bound hash.
async fn bound_input(store: &Store, a: &ApprovalRecord) -> CloudResult<Value> {
    let Some(hash) = a.subject.get("input_hash").and_then(Value::as_str) else {
        return Ok(json!({"hash": null, "value": null, "status": "not_bound"}));
    };
    let inline = a
        .subject
        .get("input")
        .or_else(|| a.context.as_ref().and_then(|c| c.get("input")))
        .cloned();
    let candidate = match inline {
        Some(v) => Some(v),
        None => match store.call_input(&a.workspace_id, hash).await? {
            Some((_, text)) => serde_json::from_str::<Value>(&text).ok(),
            None => None,
        },
    };
    Ok(match candidate {
        Some(v) if input_hash(&v) == hash => {
            json!({"hash": hash, "value": v, "status": "verified"})
        }
        Some(_) => json!({"hash": hash, "value": null, "status": "mismatch"}),
        None => json!({"hash": hash, "value": null, "status": "unknown"}),
    })
}

/// Who asked and who decided, as the control plane knows them, beside what the callers stated.
///
/// - `asked_by`: the subject of the token that requested the approval; `invoked_by`: the operator
///   who invoked the call through the control plane when the sidecar asked on its behalf (the
///   sidecar only holds the control plane's workspace token, so it asks as the workspace);
/// - `stated_requester`: a `requester_id` the request named that is not its subject (shown as
///   "stated by <asked_by>", like the reasons in its context);
/// - `decided_by`: who decided (operator session, token subject, the CLI's OS user);
///   `stated_reviewer`: a reviewer named in the decision that is not its subject.
///
/// Approvals stored before this was recorded have no `asked_by`/`decided_by`; their
/// `requester_id`/`reviewer_id` are then shown as stated, never as authenticated.
async fn attribution(store: &Store, a: &AttributedApproval) -> CloudResult<Value> {
    let r = &a.record;
    let invoked_by = match r.subject.get("input_hash").and_then(Value::as_str) {
        Some(hash) => store.call_invoker(&r.workspace_id, hash).await?,
        None => None,
    };
    let stated_requester = r
        .requester_id
        .as_deref()
        .filter(|claimed| a.requested_by.as_deref() != Some(*claimed));
    let stated_reviewer = a.stated_reviewer.as_deref().or_else(|| {
        r.reviewer_id
            .as_deref()
            .filter(|claimed| a.decided_by.as_deref() != Some(*claimed))
    });
    Ok(json!({
        "asked_by": a.requested_by,
        "invoked_by": invoked_by.filter(|i| a.requested_by.as_deref() != Some(i.as_str())),
        "stated_requester": stated_requester,
        "decided_by": a.decided_by,
        "stated_reviewer": stated_reviewer,
    }))
}

#[derive(Deserialize)]
struct ListParams {
    /// `pending` (default) or `decided`.
    status: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(state): State<Shared>,
    _op: Operator,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> CloudResult<Response> {
    let Query(p) = params.map_err(|e| CloudError::BadRequest(e.body_text()))?;
    let pending = match p.status.as_deref().unwrap_or("pending") {
        "pending" => true,
        "decided" => false,
        other => {
            return Err(CloudError::BadRequest(format!(
                "`status` `{}` is not one of pending, decided",
                other.chars().take(50).collect::<String>()
            )))
        }
    };
    let now = now_ms();
    let records = state
        .store
        .approvals_attributed(pending, now, p.limit.unwrap_or(100))
        .await?;
    let mut out = Vec::with_capacity(records.len());
    for a in records {
        let input = bound_input(&state.store, &a.record).await?;
        let attribution = attribution(&state.store, &a).await?;
        let mut v = serde_json::to_value(&a.record)
            .map_err(|e| CloudError::Internal(format!("cannot encode an approval: {e}")))?;
        if let (Value::Object(m), Value::Object(extra)) = (&mut v, attribution) {
            m.insert("input".into(), input);
            m.extend(extra);
        }
        out.push(v);
    }
    Ok(Json(json!({"approvals": out, "server_time": lumenflow_contracts::time::Timestamp::from_unix_millis(now).to_rfc3339()})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideRequest {
    decision: String,
    reason: String,
}

async fn decide(
    State(state): State<Shared>,
    op: Operator,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> CloudResult<Response> {
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| CloudError::TooLarge("the decision body is larger than 64 KiB".into()))?;
    let req: DecideRequest = serde_json::from_slice(&body).map_err(|e| {
        CloudError::BadRequest(format!(
            "the body must be {{\"decision\": \"approved\"|\"rejected\", \"reason\"}}: {e}"
        ))
    })?;
    let mut entry = AuditEntry {
        subject: op.subject(),
        action: "console.approvals.decide".into(),
        outcome: "ok".into(),
        detail: Some(format!(
            "approval {} {}",
            id.chars().take(100).collect::<String>(),
            req.decision.chars().take(20).collect::<String>()
        )),
        ..AuditEntry::default()
    };
    let result = decide_inner(&state, &op, &id, &req, &mut entry).await;
    if let Err(e) = &result {
        entry.outcome = "refused".into();
        entry.code = Some(e.code().to_string());
    }
    // An action that cannot be audited is not acknowledged (as on the API).
    state.store.audit(&entry).await?;
    result.map(|r| Json(r).into_response())
}

async fn decide_inner(
    state: &Shared,
    op: &Operator,
    id: &str,
    req: &DecideRequest,
    entry: &mut AuditEntry,
) -> CloudResult<ApprovalRecord> {
    if !matches!(req.decision.as_str(), "approved" | "rejected") {
        return Err(CloudError::BadRequest(format!(
            "`decision` `{}` is not one of approved, rejected",
            req.decision.chars().take(50).collect::<String>()
        )));
    }
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(CloudError::BadRequest("`reason` must not be empty".into()));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(CloudError::BadRequest(format!(
            "`reason` is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let current = state
        .store
        .approval(id)
        .await?
        .ok_or_else(|| CloudError::NotFound(format!("approval `{id}` does not exist")))?;
    entry.workspace_id = Some(current.workspace_id.clone());
    match state
        .store
        .resolve_approval_by(
            &current.workspace_id,
            id,
            &req.decision,
            Some(reason),
            Decider {
                subject: Some(&op.subject()),
                reviewer_id: Some(&op.subject()),
                reviewer_type: Some("user"),
                stated: None,
            },
        )
        .await?
    {
        Ok(record) => Ok(record),
        Err(ResolveRefusal::NotFound) => Err(CloudError::NotFound(format!(
            "approval `{id}` does not exist"
        ))),
        Err(ResolveRefusal::AlreadyDecided(status)) => Err(CloudError::Conflict(format!(
            "approval `{id}` is already {status}"
        ))),
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/console/api/approvals", get(list))
        .route("/console/api/approvals/{id}/decide", post(decide))
}
