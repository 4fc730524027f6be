//! The sidecar's HTTP surface (SCR-01, INV-01 to INV-07, Q15 to Q17, Q20, Q39, Q41).
//!
//! One axum router. Every failure is a JSON body `{"error": {"code", "message"}}`: extractor
//! rejections, an unknown route (404), a wrong method (405), a body over the limit (413), bad
//! JSON (400), bad tokens (401 `TOKEN_INVALID`), narrow scopes (403 `TOKEN_SCOPE_DENIED`). A tool
//! call goes through the kernel's one dispatch path with the token subject as the caller; its
//! outcome maps to a status with [`status_for`] (the original's table), and the body is the
//! tool's `ToolOutput` plus the receipt id. Refusals that happen before dispatch (token, scope)
//! are recorded in the kernel's event log too, so every remote attempt leaves a receipt.
//!
//! [`RouteTable`] records each route as it is added to the router; the OpenAPI document is
//! checked against that record by a test, so the two cannot drift.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use lumenflow_contracts::event::{build_event, BuildOptions};
use lumenflow_contracts::identity::SCOPE_WORKSPACE;
use lumenflow_contracts::kinds::SidekickKind;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::{codes, ToolOutput};
use lumenflow_kernel::dispatch::{CallOutcome, CallRequest, Runtime, Surface};
use lumenflow_kernel::events::emit::EventSink;
use serde_json::{json, Map, Value};

use crate::auth::{self, AuthError, Caller, Verifier};
use crate::delivery::DeliveryStats;
use crate::inbox::Inbox;
use crate::listing::{if_none_match_hits, ListingCache};
use crate::outbox::Outbox;

/// The largest request body accepted (a tool input or an inbound event).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The kernel log kind of a call refused before it reached the dispatch path.
pub const REFUSED_KIND: &str = "sidecar_call_refused";
/// The kernel log kind noting a `from` claim in a body that the token subject overrode.
pub const CLAIMED_FROM_KIND: &str = "sidecar_claimed_from_ignored";

/// Everything a request handler needs.
pub struct AppState {
    pub runtime: Arc<Runtime>,
    pub verifier: Arc<Verifier>,
    pub listings: ListingCache,
    pub inbox: Arc<Inbox>,
    pub outbox: Arc<Outbox>,
    pub stats: Arc<DeliveryStats>,
    pub subject: String,
    pub control_plane: Option<String>,
    /// Where the sidecar's own events go (the same sink and ledger as the runtime's).
    pub events: Option<EventsOut>,
}

/// The sink the sidecar emits its own events into (it stamps, numbers and routes them).
#[derive(Clone)]
pub struct EventsOut {
    pub sink: Arc<dyn EventSink>,
}

pub type Shared = Arc<AppState>;

/// A JSON error response.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub receipt_id: Option<String>,
}

impl ApiFailure {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiFailure {
            status,
            code: code.into(),
            message: message.into(),
            receipt_id: None,
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some(id), Some(obj)) = (self.receipt_id, error.as_object_mut()) {
            obj.insert("receipt_id".into(), id.into());
        }
        (self.status, axum::Json(json!({ "error": error }))).into_response()
    }
}

fn auth_failure(e: &AuthError) -> ApiFailure {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    ApiFailure::new(status, e.code(), e.to_string())
}

fn body_failure(r: BytesRejection) -> ApiFailure {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiFailure::new(
            status,
            "BODY_TOO_LARGE",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    } else {
        ApiFailure::new(status, "BODY_UNREADABLE", r.body_text())
    }
}

/// The HTTP status of a dispatch outcome (the original's table; Q16 for approvals).
pub fn status_for(output: &ToolOutput) -> StatusCode {
    if output.success {
        return StatusCode::OK;
    }
    match output.error_code() {
        Some(codes::TOOL_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            codes::POLICY_DENIED
            | codes::SCOPE_DENIED
            | codes::APPROVAL_REQUIRED
            | crate::cloud_approvals::DENIED
            | crate::cloud_approvals::EXPIRED,
        ) => StatusCode::FORBIDDEN,
        Some(codes::INVALID_INPUT) => StatusCode::BAD_REQUEST,
        // The sidecar must be restarted to load the changed workspace.yaml.
        Some(lumenflow_kernel::dispatch::freshness::WORKSPACE_CHANGED) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        // The control plane that decides approvals is down: the call was refused (fail closed)
        // and may succeed later, which is what 503 says.
        Some(crate::cloud_approvals::UNAVAILABLE) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
}

/// A route as registered: path (OpenAPI syntax) and methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub path: &'static str,
    pub methods: Vec<Method>,
}

/// The router under construction and the record of what it serves.
pub struct RouteTable {
    router: Router<Shared>,
    pub routes: Vec<RouteSpec>,
}

impl RouteTable {
    fn new() -> Self {
        RouteTable {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    fn route(mut self, path: &'static str, methods: &[Method], mr: MethodRouter<Shared>) -> Self {
        self.router = self.router.route(path, mr);
        self.routes.push(RouteSpec {
            path,
            methods: methods.to_vec(),
        });
        self
    }

    fn service(
        mut self,
        path: &'static str,
        methods: &[Method],
        svc: crate::mcp::McpHttpService,
    ) -> Self {
        self.router = self.router.route_service(path, svc);
        self.routes.push(RouteSpec {
            path,
            methods: methods.to_vec(),
        });
        self
    }
}

/// The routes of the sidecar without state (what the OpenAPI test compares against).
pub fn route_table(mcp: Option<crate::mcp::McpHttpService>) -> RouteTable {
    let mut t = RouteTable::new()
        .route("/healthz", &[Method::GET], get(healthz))
        .route("/tools", &[Method::GET], get(list_tools))
        .route("/tools/{name}", &[Method::POST], post(call_tool))
        .route("/events", &[Method::POST], post(post_event))
        .route("/openapi.json", &[Method::GET], get(openapi));
    if let Some(svc) = mcp {
        t = t.service(crate::mcp::MCP_PATH, &crate::mcp::MCP_METHODS, svc);
    }
    t
}

/// The complete router with its state, limits and JSON fallbacks.
pub fn router(state: Shared, mcp: Option<crate::mcp::McpHttpService>) -> Router {
    let table = route_table(mcp);
    table
        .router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate_mcp,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiFailure {
    ApiFailure::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiFailure {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} does not accept {method}", uri.path()),
    )
}

/// `/mcp` requests carry a bearer token like every other route; the verified caller is put in
/// the request's extensions, where the MCP handler finds it.
async fn authenticate_mcp(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    if req.uri().path() != crate::mcp::MCP_PATH {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.verifier.authenticate(header) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            record_refusal(&state, "mcp", None, &e, None).await;
            auth_failure(&e).into_response()
        }
    }
}

async fn healthz(State(state): State<Shared>) -> Response {
    let body = json!({
        "status": "ok",
        "workspace_id": state.verifier.workspace_id(),
        "subject": state.subject,
        "control_plane": state.control_plane,
        "outbox_pending": state.outbox.len(),
        "delivery": state.stats.snapshot(),
    });
    axum::Json(body).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn list_tools(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let caller = match state.verifier.authenticate(bearer(&headers)) {
        Ok(c) => c,
        Err(e) => {
            record_refusal(&state, "http", None, &e, None).await;
            return auth_failure(&e).into_response();
        }
    };
    let scopes: Vec<&str> = caller.claims.scopes().collect();
    let rendered = state.listings.get(&state.runtime.registry, &scopes);
    let etag = HeaderValue::from_str(&rendered.etag).ok();
    if let (Some(inm), Some(tag)) = (
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
        etag.clone(),
    ) {
        if if_none_match_hits(inm, &rendered.etag) {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
        }
    }
    let mut resp = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        rendered.body.clone(),
    )
        .into_response();
    if let Some(tag) = etag {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

/// A parsed `POST /tools/{name}` body (Q15).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    pub input: Value,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    /// A `from` the body claimed; never used as the identity (ENR-09).
    pub claimed_from: Option<Value>,
}

/// Envelope form when the object's keys are `input` plus optionally `context` and `from`;
/// otherwise the whole body is the input. A top-level `from` of a bare input is an identity
/// claim and is removed, unless the tool's input schema declares a `from` property.
pub fn parse_call_body(body: Value, tool_declares_from: bool) -> Result<ParsedCall, String> {
    let Value::Object(mut map) = body else {
        return Err(
            "the body must be a JSON object: the tool input, or {\"input\", \"context\"}".into(),
        );
    };
    let envelope = map.contains_key("input")
        && map
            .keys()
            .all(|k| matches!(k.as_str(), "input" | "context" | "from"));
    if envelope {
        let input = map.remove("input").unwrap_or(Value::Null);
        let mut claimed_from = map.remove("from");
        let (mut task_id, mut run_id) = (None, None);
        match map.remove("context") {
            None | Some(Value::Null) => {}
            Some(Value::Object(mut ctx)) => {
                let text = |v: Option<Value>, field: &str| match v {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s)),
                    Some(_) => Err(format!("context.{field} must be a string")),
                };
                task_id = text(ctx.remove("task_id"), "task_id")?;
                run_id = text(ctx.remove("run_id"), "run_id")?;
                if let Some(f) = ctx.remove("from") {
                    claimed_from.get_or_insert(f);
                }
            }
            Some(_) => return Err("`context` must be an object".into()),
        }
        return Ok(ParsedCall {
            input,
            task_id,
            run_id,
            claimed_from,
        });
    }
    let claimed_from = if tool_declares_from {
        None
    } else {
        map.remove("from")
    };
    Ok(ParsedCall {
        input: Value::Object(map),
        task_id: None,
        run_id: None,
        claimed_from,
    })
}

fn declares_from(runtime: &Runtime, tool: &str) -> bool {
    runtime
        .registry
        .get(tool)
        .and_then(|t| t.manifest.input_schema.as_ref())
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key("from"))
}

async fn call_tool(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match state.verifier.authenticate(bearer(&headers)) {
        Ok(c) => c,
        Err(e) => {
            record_refusal(&state, "http", Some(&name), &e, None).await;
            return auth_failure(&e).into_response();
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_failure(r).into_response(),
    };
    let value: Value = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return ApiFailure::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_JSON",
                    format!("the body of POST /tools/{name} is not valid JSON: {e}"),
                )
                .into_response()
            }
        }
    };
    let parsed = match parse_call_body(value, declares_from(&state.runtime, &name)) {
        Ok(p) => p,
        Err(m) => {
            return ApiFailure::new(StatusCode::BAD_REQUEST, codes::INVALID_INPUT, m)
                .into_response()
        }
    };
    match governed_call(&state, &caller, Surface::Http, &name, parsed).await {
        Ok(outcome) => outcome_response(&outcome),
        Err(f) => f.into_response(),
    }
}

/// The one way the sidecar's surfaces (HTTP and MCP) call a tool: token scope, then the kernel's
/// dispatch path with the token subject as the caller (Q39 steps 3 to 7).
pub async fn governed_call(
    state: &AppState,
    caller: &Caller,
    surface: Surface,
    name: &str,
    parsed: ParsedCall,
) -> Result<CallOutcome, ApiFailure> {
    let surface_name = match surface {
        Surface::Mcp => "mcp",
        _ => "http",
    };
    if let Some(tool) = state.runtime.registry.get(name) {
        if !tool.manifest.is_internal() {
            if let Err(e) = auth::authorize_tool(caller, &tool.manifest) {
                let receipt =
                    record_refusal(state, surface_name, Some(name), &e, Some(caller)).await;
                let mut f = auth_failure(&e);
                f.receipt_id = receipt;
                return Err(f);
            }
        }
    }
    let request = CallRequest {
        tool: name.to_string(),
        input: parsed.input,
        task_id: parsed.task_id,
        run_id: parsed.run_id,
        caller: caller.identity(),
        surface,
        token_scopes: Some(caller.claims.scopes().map(str::to_string).collect()),
        token_id: Some(caller.claims.jti.clone()),
    };
    let outcome = state
        .runtime
        .clone()
        .dispatch_async(request)
        .await
        .map_err(|e| ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "DISPATCH_FAILED", e))?;
    if outcome.output.error_code() == Some(codes::APPROVAL_REQUIRED) {
        if let Some(approval_id) = &outcome.approval_id {
            announce_approval(state, caller, name, approval_id, &outcome.output).await;
        }
    }
    if let Some(claimed) = parsed.claimed_from {
        let record = json!({
            "kind": CLAIMED_FROM_KIND,
            "receipt_id": outcome.receipt_id,
            "tool_name": name,
            "subject": caller.identity(),
            "claimed_from": claimed,
            "surface": surface_name,
        });
        append_log(state, record).await;
    }
    Ok(outcome)
}

/// `sidekick:approval_requested` (queue class, KND-03, BKP-08) for a call that now waits on an
/// operator: the control plane shows it to the approvers (a phone, the console). Its id derives
/// from the approval id, so asking again for the same pending approval queues nothing new.
async fn announce_approval(
    state: &AppState,
    caller: &Caller,
    tool: &str,
    approval_id: &str,
    output: &ToolOutput,
) {
    let Some(out) = state.events.clone() else {
        return;
    };
    let mut payload = Map::new();
    payload.insert("approval_id".into(), approval_id.into());
    payload.insert("tool_name".into(), tool.into());
    if let Some(e) = &output.error {
        payload.insert("reason".into(), e.message.clone().into());
    }
    let kind = SidekickKind::ApprovalRequested.as_str();
    let event = match build_event(
        kind,
        &state.subject,
        payload,
        BuildOptions::idempotent(format!("approval:{approval_id}")),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("cannot build {kind}: {e}");
            return;
        }
    };
    let requested_by = caller.identity();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = out.sink.push(std::slice::from_ref(&event)) {
            tracing::error!(%requested_by, "cannot queue {kind}: {e}");
        }
    })
    .await;
}

fn outcome_response(outcome: &CallOutcome) -> Response {
    let mut body = serde_json::to_value(&outcome.output).unwrap_or(Value::Null);
    if let Some(obj) = body.as_object_mut() {
        obj.insert("receipt_id".into(), outcome.receipt_id.clone().into());
        if let Some(id) = &outcome.approval_id {
            obj.insert("approval_id".into(), id.clone().into());
        }
    }
    (status_for(&outcome.output), axum::Json(body)).into_response()
}

/// Record a call refused before dispatch in the kernel log; returns its receipt id.
pub async fn record_refusal(
    state: &AppState,
    surface: &str,
    tool: Option<&str>,
    error: &AuthError,
    caller: Option<&Caller>,
) -> Option<String> {
    let receipt_id = format!(
        "rcpt_{}",
        &lumenflow_contracts::digest::sha256_hex(
            format!(
                "{}:{}:{:?}",
                std::process::id(),
                Timestamp::now().unix_millis(),
                std::time::Instant::now()
            )
            .as_bytes()
        )[..24]
    );
    let record = json!({
        "kind": REFUSED_KIND,
        "receipt_id": receipt_id,
        "surface": surface,
        "tool_name": tool,
        "result": "denied",
        "error_code": error.code(),
        "reason": error.to_string(),
        "caller": caller.map(Caller::identity),
        "jti": caller.map(|c| c.claims.jti.clone()),
    });
    if append_log(state, record).await {
        Some(receipt_id)
    } else {
        None
    }
}

async fn append_log(state: &AppState, record: Value) -> bool {
    let Value::Object(map) = record else {
        return false;
    };
    let runtime = state.runtime.clone();
    match tokio::task::spawn_blocking(move || runtime.log.append(map)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::error!(code = e.code(), "cannot record in the kernel log: {e}");
            false
        }
        Err(e) => {
            tracing::error!("kernel log writer stopped: {e}");
            false
        }
    }
}

async fn post_event(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match state.verifier.authenticate(bearer(&headers)) {
        Ok(c) => c,
        Err(e) => {
            record_refusal(&state, "events", None, &e, None).await;
            return auth_failure(&e).into_response();
        }
    };
    if let Err(e) = auth::authorize_scope(&caller, SCOPE_WORKSPACE, "`POST /events`") {
        record_refusal(&state, "events", None, &e, Some(&caller)).await;
        return auth_failure(&e).into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_failure(r).into_response(),
    };
    let inbox = state.inbox.clone();
    let result = tokio::task::spawn_blocking(move || inbox.accept(&caller, &body)).await;
    match result {
        Ok(Ok(received)) => (StatusCode::OK, axum::Json(json!(received))).into_response(),
        Ok(Err(e)) => ApiFailure::new(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.code(),
            e.to_string(),
        )
        .into_response(),
        Err(e) => ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INBOX_FAILED",
            format!("the inbox thread stopped: {e}"),
        )
        .into_response(),
    }
}

async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_forms_per_q15() {
        let p = parse_call_body(json!({"wu_id": "WU-042", "from": "evil"}), false).expect("bare");
        assert_eq!(p.input, json!({"wu_id": "WU-042"}));
        assert_eq!(p.claimed_from, Some(json!("evil")));
        let p = parse_call_body(json!({"wu_id": "WU-042", "from": "2026"}), true).expect("bare");
        assert_eq!(p.input, json!({"wu_id": "WU-042", "from": "2026"}));
        assert_eq!(p.claimed_from, None);
        let p = parse_call_body(
            json!({"input": {"a": 1}, "context": {"task_id": "t1", "run_id": "r1", "from": "x"}}),
            false,
        )
        .expect("envelope");
        assert_eq!(p.input, json!({"a": 1}));
        assert_eq!(p.task_id.as_deref(), Some("t1"));
        assert_eq!(p.run_id.as_deref(), Some("r1"));
        assert_eq!(p.claimed_from, Some(json!("x")));
        // An `input` key beside other keys is a bare input that happens to have `input`.
        let p = parse_call_body(json!({"input": 1, "other": 2}), false).expect("bare");
        assert_eq!(p.input, json!({"input": 1, "other": 2}));
        assert!(parse_call_body(json!([1]), false).is_err());
        assert!(parse_call_body(json!({"input": {}, "context": 3}), false).is_err());
    }

    #[test]
    fn statuses_follow_the_original_table() {
        let f = |code: &str| status_for(&ToolOutput::fail(code, "m"));
        assert_eq!(status_for(&ToolOutput::ok(json!({}))), StatusCode::OK);
        assert_eq!(f(codes::TOOL_NOT_FOUND), StatusCode::NOT_FOUND);
        assert_eq!(f(codes::POLICY_DENIED), StatusCode::FORBIDDEN);
        assert_eq!(f(codes::SCOPE_DENIED), StatusCode::FORBIDDEN);
        assert_eq!(f(codes::APPROVAL_REQUIRED), StatusCode::FORBIDDEN);
        assert_eq!(
            f(crate::cloud_approvals::UNAVAILABLE),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(f(codes::INVALID_INPUT), StatusCode::BAD_REQUEST);
        assert_eq!(f(codes::TOOL_EXECUTION_FAILED), StatusCode::OK);
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_router_routes() {
        let table = route_table(None);
        let mut served: Vec<(String, String)> = table
            .routes
            .iter()
            .flat_map(|r| {
                r.methods
                    .iter()
                    .map(|m| (r.path.to_string(), m.as_str().to_lowercase()))
            })
            .collect();
        // The MCP route is added when the sidecar runs, with these methods.
        for m in crate::mcp::MCP_METHODS {
            served.push((crate::mcp::MCP_PATH.into(), m.as_str().to_lowercase()));
        }
        served.sort();
        let doc = crate::openapi::document();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .expect("ops")
                    .keys()
                    .map(|m| (p.clone(), m.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        documented.sort();
        assert_eq!(documented, served);
    }
}
