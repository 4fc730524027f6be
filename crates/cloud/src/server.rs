//! The HTTP API of the control plane (axum).
//!
//! Every handler follows one shape: read the body within the size limit, parse it (a malformed
//! body is a 400 naming the reason), authorize the bearer token for the workspace the request is
//! about, do the work in the store, and write one audit line (ENR-05: raw subject and resolved
//! device name) whatever the outcome. Errors leave through `CloudError`'s one status table as
//! `{"error": {"code", "message"}}`. An event batch is acknowledged only after its transaction
//! (which carries its audit line) committed; live consumers are told after commit through a
//! broadcast channel that feeds the server-sent-events stream of this process.

use lumenflow_contracts::error_text::with_causes;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::stream::Stream;
use lumenflow_contracts::canonical_json::to_canonical_string;
use lumenflow_contracts::digest::sha256_hex;
use lumenflow_contracts::identity::{
    check_id, Enrollment, Subject, SCOPE_EXECUTE_TURN, SCOPE_WORKSPACE,
};
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::wire::{
    Accepted, ApprovalListInput, ApprovalRecord, ApprovalRequestInput, ApprovalResolveInput,
    EnrollRequest, RevocationList, ToolListing,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use crate::auth::{self, Allow, Authority, Caller};
use crate::error::{CloudError, CloudResult};
use crate::ingest::{self, MAX_BODY_BYTES};
use crate::replay;
use crate::store::{
    now_ms, AuditEntry, EventCursor, EventQuery, PhoneStanding, ReceiptRow, RedeemRefusal,
    ResolveRefusal, Store,
};

/// How `lumenflow cloud serve` is configured.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database: String,
    /// The signing key; default: beside the SQLite file, else `./lumenflow-cloud.key`.
    pub key_path: Option<PathBuf>,
    /// The base URL workspaces reach this server at (put in enrollments).
    pub public_url: Option<String>,
    /// How often every workspace's `GET /tools` is refreshed.
    pub registry_refresh: Duration,
    /// Create a new key even though the database holds tokens signed by another (`--new-key`).
    pub new_key: bool,
}

/// Default approval lifetime when a request names none.
pub const DEFAULT_APPROVAL_TTL_MS: i64 = 24 * 3600 * 1000;
/// A stored tool listing older than this is refreshed on read.
const REGISTRY_STALE_MS: i64 = 60_000;

/// A wake-up for the live streams of this process: a workspace stored new events.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub workspace_id: String,
}

/// Shared state of the handlers.
pub struct AppState {
    pub store: Store,
    pub authority: Arc<Authority>,
    pub public_url: String,
    pub live: broadcast::Sender<Arc<LiveEvent>>,
    pub http: reqwest::Client,
    /// The web console's in-memory state (failed-login counters).
    pub console: crate::console::ConsoleState,
    /// Set once when the server starts stopping: live streams end so connections can drain.
    pub stopping: watch::Sender<bool>,
    /// When each caller's successful read-only polls were last audited (see [`POLL_ACTIONS`]).
    pub(crate) polls: PollAudit,
}

/// Read-only actions a client repeats in a loop: a sidecar waiting for an approval asks every
/// 250 ms, and every sidecar pulls the revocation list. One audit line per poll buried the log
/// (walk-C: 497 lines in 67 s), so a *successful* one is audited at most once per
/// [`POLL_AUDIT_EVERY`] per (subject, action) on each server process, and that line says how many
/// were left out since. Refusals and every other action are always audited.
const POLL_ACTIONS: [&str; 3] = ["approvals.get", "approvals.list", "revocations.pull"];
const POLL_AUDIT_EVERY: Duration = Duration::from_secs(60);
/// Past this many callers, entries older than [`POLL_AUDIT_EVERY`] are dropped (they would be
/// written again anyway), so the map stays bounded by the callers of the last minute.
const POLL_AUDIT_PRUNE_AT: usize = 10_000;

/// (subject, action) -> when it was last audited and how many polls were left out since.
#[derive(Default)]
pub(crate) struct PollAudit(
    std::sync::Mutex<std::collections::HashMap<(String, String), (Instant, u64)>>,
);

impl PollAudit {
    /// `None`: leave this successful poll out of the audit log. `Some(n)`: write it, noting
    /// `n` polls that were left out since the last line.
    fn admit(&self, subject: &str, action: &str) -> Option<u64> {
        // A poisoned lock only means another request panicked mid-update; the map is still a
        // usable cache, and auditing must not stop because of it.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= POLL_AUDIT_PRUNE_AT {
            map.retain(|_, (at, _)| now.duration_since(*at) < POLL_AUDIT_EVERY);
        }
        match map.get_mut(&(subject.to_string(), action.to_string())) {
            Some((at, skipped)) if now.duration_since(*at) < POLL_AUDIT_EVERY => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                let left_out = *skipped;
                *at = now;
                *skipped = 0;
                Some(left_out)
            }
            None => {
                map.insert((subject.to_string(), action.to_string()), (now, 0));
                Some(0)
            }
        }
    }
}

pub(crate) type Shared = Arc<AppState>;

/// Where the key lives when `--key` is not given.
pub fn default_key_path(database: &str) -> PathBuf {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return PathBuf::from(auth::KEY_FILE_NAME);
    }
    let path = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database);
    let path = path.split('?').next().unwrap_or(path);
    let parent = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    parent.join(auth::KEY_FILE_NAME)
}

/// Build the shared state: open the store (migrating it) and load or create the key.
pub async fn open_state(config: &ServeConfig, bound: SocketAddr) -> CloudResult<Shared> {
    let store = Store::open(&config.database).await?;
    let key_path = config
        .key_path
        .clone()
        .unwrap_or_else(|| default_key_path(&config.database));
    let authority = Authority::load_or_create_for(&key_path, &store, config.new_key).await?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"))
        .trim_end_matches('/')
        .to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| CloudError::Internal(format!("cannot build the HTTP client: {e}")))?;
    let (live, _) = broadcast::channel(4096);
    Ok(Arc::new(AppState {
        store,
        authority: Arc::new(authority),
        public_url,
        live,
        http,
        console: crate::console::ConsoleState::default(),
        stopping: watch::Sender::new(false),
        polls: PollAudit::default(),
    }))
}

/// How long a stopping server waits for requests in flight (a tool call forwarded to a sidecar,
/// an ingest batch being committed) before it exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serve until `shutdown` completes. `ready` is called with the bound address once listening.
///
/// Stopping: no new connection is accepted, live event streams end, and requests in flight get
/// up to [`SHUTDOWN_GRACE`] to finish; then the store is closed (SQLite checkpoints its WAL).
/// Nothing acknowledged is at risk either way: a batch is acknowledged only after its commit.
pub async fn serve(
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> CloudResult<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            CloudError::ListenFailed(format!("cannot listen on {}: {e}", config.listen))
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| CloudError::Internal(format!("cannot read the bound address: {e}")))?;
    let state = open_state(&config, bound).await?;
    spawn_registry_refresher(state.clone(), config.registry_refresh);
    ready(bound);
    // With the peer address: the console limits failed logins per client address.
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let signalled = state.clone();
    let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("stopping: no new connections; live streams end");
        signalled.stopping.send_replace(true);
    });
    let mut stopping = state.stopping.subscribe();
    let drained = tokio::select! {
        served = std::future::IntoFuture::into_future(graceful) => {
            served.map_err(|e| CloudError::Internal(format!("the server stopped: {e}")))?;
            true
        }
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => false,
    };
    if !drained {
        tracing::warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "requests were still open when the grace period ended; stopping anyway"
        );
    }
    state.store.close().await;
    Ok(())
}

/// Every route.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(crate::console::router())
        .merge(crate::bundles::routes())
        .route("/healthz", get(healthz))
        .route("/api/v1/enroll", post(enroll))
        .route("/api/v1/enroll-codes", post(create_enroll_code))
        .route("/api/v1/events", post(push_events).get(query_events))
        .route("/api/v1/events/stream", get(stream_events))
        .route("/api/v1/workspaces/{ws}/tools", get(list_tools))
        .route("/api/v1/workspaces/{ws}/tools/{name}", post(invoke_tool))
        .route(
            "/api/v1/workspaces/{ws}/registry/refresh",
            post(refresh_registry),
        )
        .route("/api/v1/workspaces/{ws}/sidecar", post(set_sidecar))
        .route("/api/v1/approvals/request", post(approval_request))
        .route("/api/v1/approvals/resolve", post(approval_resolve))
        .route("/api/v1/approvals/list", post(approval_list))
        .route("/api/v1/approvals/{id}", get(approval_get))
        .route("/api/v1/revoke", post(revoke))
        .route("/api/v1/revocations", get(revocations))
        .route("/api/v1/devices", post(add_device).get(list_devices))
        .route("/api/v1/receipts/seal", post(seal_receipt))
        .route("/api/v1/receipts/{id}", get(get_receipt))
        .route("/api/v1/runs/{run_id}/replay", get(replay_json))
        .route("/replay/{run_id}", get(replay_page))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/policies", post(v1_policies))
        .route("/api/v1/config", post(v1_config))
        .route("/api/v1/heartbeat", post(v1_heartbeat))
        .route("/api/v1/telemetry", post(v1_telemetry))
        .route("/api/v1/evidence", post(v1_evidence))
        .route("/api/v1/authenticate", post(v1_authenticate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Plumbing: body reading, audit

/// The audit context of one request, filled in as the request is understood.
pub(crate) struct Audit {
    pub(crate) entry: AuditEntry,
    /// Set when the store already wrote the line in the request's own transaction.
    pub(crate) written: bool,
}

impl Audit {
    pub(crate) fn new(action: &str) -> Audit {
        Audit {
            entry: AuditEntry {
                subject: "-".into(),
                action: action.into(),
                outcome: "ok".into(),
                ..AuditEntry::default()
            },
            written: false,
        }
    }

    pub(crate) fn workspace(&mut self, ws: &str) {
        self.entry.workspace_id = Some(ws.to_string());
    }
}

impl AppState {
    /// Authorize and note the caller in the audit line (resolving a phone subject's device).
    pub(crate) async fn authorize(
        &self,
        audit: &mut Audit,
        headers: &HeaderMap,
        workspace: Option<&str>,
        allow: Allow,
    ) -> CloudResult<Caller> {
        if let Some(ws) = workspace {
            audit.workspace(ws);
        }
        // Even a refused token's claimed subject is worth recording; it is not trusted.
        let caller = self
            .authority
            .authorize(&self.store, headers, workspace, allow)
            .await;
        match &caller {
            Ok(c) => {
                audit.entry.subject = c.subject_text().to_string();
                if let Caller::Workspace {
                    subject:
                        Subject::Phone {
                            workspace_id,
                            device_id,
                        },
                    ..
                } = c
                {
                    audit.entry.device_name =
                        self.store.device_name(workspace_id, device_id).await?;
                }
            }
            Err(_) => {
                if let Some(sub) = unverified_subject(headers) {
                    audit.entry.subject = format!("unverified:{sub}");
                }
            }
        }
        caller
    }

    /// [`AppState::finish`] for a request that carried `headers`: a refusal that came before
    /// the token was looked at (malformed JSON, an oversized body, a bad parameter) still names
    /// the caller, verified when the token verifies, else as `unverified:<sub>`.
    pub(crate) async fn finish_with(
        &self,
        headers: &HeaderMap,
        mut audit: Audit,
        result: CloudResult<Response>,
    ) -> Response {
        if result.is_err() && audit.entry.subject == "-" && auth::bearer(headers).is_ok() {
            self.note_caller(&mut audit, headers).await;
        }
        self.finish(audit, result).await
    }

    /// Name the caller of a refused request in its audit line. The workspace a workspace token
    /// is for is its audience, read from the token and then verified with it (signature,
    /// expiry, revocation), exactly as a request naming that workspace would be.
    async fn note_caller(&self, audit: &mut Audit, headers: &HeaderMap) {
        let audience = unverified_claim(headers, "aud");
        let workspace = audience
            .as_deref()
            .filter(|aud| *aud != auth::OPERATOR_AUDIENCE && check_id(aud).is_ok());
        let mut probe = Audit::new(&audit.entry.action);
        match self
            .authorize(&mut probe, headers, workspace, Allow::Either)
            .await
        {
            Ok(_) => {
                audit.entry.subject = probe.entry.subject;
                audit.entry.device_name = probe.entry.device_name;
                if audit.entry.workspace_id.is_none() {
                    audit.entry.workspace_id = workspace.map(str::to_string);
                }
            }
            Err(_) => audit.entry.subject = probe.entry.subject,
        }
    }

    /// Write the audit line and turn the result into a response.
    pub(crate) async fn finish(&self, mut audit: Audit, result: CloudResult<Response>) -> Response {
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                audit.entry.outcome = "refused".into();
                audit.entry.code = Some(e.code().to_string());
                audit.entry.detail = Some(e.to_string().chars().take(500).collect());
                e.into_response()
            }
        };
        if !audit.written
            && audit.entry.outcome == "ok"
            && POLL_ACTIONS.contains(&audit.entry.action.as_str())
        {
            match self.polls.admit(&audit.entry.subject, &audit.entry.action) {
                None => return response,
                Some(0) => {}
                Some(n) => {
                    let note = format!("{n} more since the last line not written");
                    audit.entry.detail = Some(match audit.entry.detail.take() {
                        Some(d) => format!("{d}; {note}"),
                        None => note,
                    });
                }
            }
        }
        if !audit.written {
            if let Err(e) = self.store.audit(&audit.entry).await {
                tracing::error!(error = %e, "cannot write the audit line");
                if response.status().is_success() {
                    // An action that cannot be audited is not acknowledged.
                    return e.into_response();
                }
            }
        }
        response
    }
}

/// The `sub` claim of a bearer token, read without verifying (for the audit line only).
fn unverified_subject(headers: &HeaderMap) -> Option<String> {
    unverified_claim(headers, "sub")
}

/// A string claim of a bearer token, read without verifying.
fn unverified_claim(headers: &HeaderMap, claim: &str) -> Option<String> {
    let token = auth::bearer(headers).ok()?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let text = value.get(claim)?.as_str()?;
    Some(text.chars().take(200).collect())
}

pub(crate) async fn read_body(body: Body, what: &str) -> CloudResult<Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("length limit") {
                CloudError::TooLarge(format!(
                    "the body of {what} is larger than {MAX_BODY_BYTES} bytes"
                ))
            } else {
                CloudError::BadRequest(format!("cannot read the body of {what}: {text}"))
            }
        })
}

/// Run CPU-bound work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> CloudResult<T> + Send + 'static,
) -> CloudResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CloudError::Internal(format!("a worker failed: {e}")))?
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> CloudResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| CloudError::BadRequest(format!("malformed JSON in the body of {what}: {e}")))
}

async fn read_json<T: DeserializeOwned>(body: Body, what: &str) -> CloudResult<T> {
    let bytes = read_body(body, what).await?;
    parse_json(&bytes, what)
}

pub(crate) fn check_workspace_id(ws: &str, field: &str) -> CloudResult<()> {
    check_id(ws).map_err(|reason| {
        CloudError::BadRequest(format!(
            "`{field}` `{}` is not a workspace id: {reason}",
            ws.chars().take(100).collect::<String>()
        ))
    })
}

pub(crate) fn ok_json<T: serde::Serialize>(value: &T) -> CloudResult<Response> {
    Ok(Json(value).into_response())
}

/// The workspace a workspace caller belongs to, or the one an operator names.
fn caller_workspace(caller: &Caller) -> Option<&str> {
    match caller {
        Caller::Workspace { subject, .. } => Some(subject.workspace_id()),
        Caller::Operator { .. } => None,
    }
}

async fn healthz(State(state): State<Shared>) -> Response {
    Json(
        json!({"status": "ok", "backend": state.store.backend_name(),
                "key_id": state.authority.key_id()}),
    )
    .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(lumenflow_contracts::wire::ApiError::new(
            "METHOD_NOT_ALLOWED",
            "this route does not take that method",
        )),
    )
        .into_response()
}

async fn not_found() -> Response {
    CloudError::NotFound("no such route".into()).into_response()
}

// ---------------------------------------------------------------------------------------------
// Enrollment, codes, devices, revocation

async fn enroll(State(state): State<Shared>, body: Body) -> Response {
    let mut audit = Audit::new("enroll");
    let result = enroll_inner(&state, &mut audit, body).await;
    state.finish(audit, result).await
}

async fn enroll_inner(state: &AppState, audit: &mut Audit, body: Body) -> CloudResult<Response> {
    let req: EnrollRequest = read_json(body, "POST /api/v1/enroll").await?;
    audit.entry.subject = "enrollment-code".into();
    if let Some(url) = &req.sidecar_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CloudError::BadRequest(format!(
                "`sidecar_url` `{url}` is not an http(s) URL"
            )));
        }
    }
    let hash = auth::hash_code(&req.code);
    if let Some(expected) = &req.workspace_id {
        // Checked before the code is redeemed: enrolling the wrong folder must not use it up.
        if let Some(ws) = state.store.code_workspace(&hash).await? {
            if &ws != expected {
                audit.workspace(&ws);
                return Err(CloudError::EnrollmentWorkspaceMismatch(format!(
                    "this enrollment code is for workspace `{ws}`, but the caller is workspace \
                     `{expected}`; the code was not used (enroll from `{ws}`, or ask for a code \
                     for `{expected}`)"
                )));
            }
        }
    }
    let (ws, device_id) = match state
        .store
        .redeem_enrollment_code(&hash, req.sidecar_url.as_deref())
        .await?
    {
        Ok(found) => found,
        Err(refusal) => {
            if let Some(ws) = state.store.code_workspace(&hash).await? {
                audit.workspace(&ws);
            }
            return Err(refusal_error(refusal));
        }
    };
    audit.workspace(&ws);
    let subject = match &device_id {
        Some(device) => Subject::Phone {
            workspace_id: ws.clone(),
            device_id: device.clone(),
        }
        .to_string(),
        None => ws.clone(),
    };
    audit.entry.subject = subject.clone();
    let device_name = match &device_id {
        Some(device) => state.store.device_name(&ws, device).await?,
        None => None,
    };
    audit.entry.device_name = device_name.clone();
    let (token, claims) = state
        .authority
        .mint_with_device(
            &state.store,
            &ws,
            &subject,
            &ws,
            SCOPE_WORKSPACE,
            auth::ENROLLMENT_TTL_SECONDS,
            "enrollment",
            device_name,
        )
        .await?;
    let enrollment = Enrollment {
        schema_version: 1,
        token,
        subject: subject.clone(),
        scopes: claims.scopes().map(str::to_string).collect(),
        issued_at: auth::rfc3339_seconds(claims.iat),
        expires_at: auth::rfc3339_seconds(claims.exp),
        issuer: auth::ISSUER.to_string(),
        issuer_public_key_pem: state.authority.public_pem().to_string(),
        control_plane_endpoint: Some(state.public_url.clone()),
        workspace_id: ws.clone(),
        device_id: device_id.clone(),
    };
    audit.entry.detail = Some(format!("jti {}", claims.jti));
    if req.sidecar_url.is_some() && device_id.is_none() {
        let shared = state_refresh_handle(state, &ws);
        tokio::spawn(shared);
    }
    ok_json(&enrollment)
}

fn refusal_error(refusal: RedeemRefusal) -> CloudError {
    match refusal {
        RedeemRefusal::AlreadyUsed => CloudError::EnrollmentCodeUsed(
            "the enrollment code was already used; ask the operator for a new one \
                 (`lumenflow cloud enroll-code --workspace WS`)"
                .into(),
        ),
        RedeemRefusal::Expired => {
            CloudError::EnrollmentCodeInvalid("the enrollment code expired".into())
        }
        RedeemRefusal::Unknown => CloudError::EnrollmentCodeInvalid(
            "the enrollment code is not known to this control plane".into(),
        ),
    }
}

/// A registry refresh to run in the background after enrollment (the sidecar may not be up).
fn state_refresh_handle(
    state: &AppState,
    ws: &str,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let store = state.store.clone();
    let http = state.http.clone();
    let authority = state.authority.clone();
    let ws = ws.to_string();
    async move {
        if let Err(e) = refresh_tools(&store, &authority, &http, &ws).await {
            tracing::info!(workspace = %ws, error = %e, "registry refresh after enrollment failed");
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    workspace_id: String,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

async fn create_enroll_code(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut audit = Audit::new("enroll_code.create");
    let result = async {
        let req: CodeRequest = read_json(body, "POST /api/v1/enroll-codes").await?;
        check_workspace_id(&req.workspace_id, "workspace_id")?;
        state
            .authorize(&mut audit, &headers, None, Allow::Operator)
            .await?;
        audit.workspace(&req.workspace_id);
        let issued = issue_enrollment_code(
            &state.store,
            &req.workspace_id,
            req.device_id.as_deref(),
            req.ttl_seconds,
        )
        .await?;
        ok_json(&issued)
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

/// Create a one-time code for a workspace (used by the HTTP route and the CLI alike).
pub async fn issue_enrollment_code(
    store: &Store,
    workspace_id: &str,
    device_id: Option<&str>,
    ttl_seconds: Option<i64>,
) -> CloudResult<Value> {
    check_workspace_id(workspace_id, "workspace_id")?;
    if let Some(device) = device_id {
        check_id(device)
            .map_err(|r| CloudError::BadRequest(format!("`device_id` is not a device id: {r}")))?;
    }
    let ttl = ttl_seconds.unwrap_or(auth::CODE_TTL_SECONDS);
    if ttl <= 0 {
        return Err(CloudError::BadRequest(format!(
            "`ttl_seconds` must be positive, got {ttl}"
        )));
    }
    let (code, hash) = auth::new_enrollment_code();
    let expires = now_ms().saturating_add(ttl.saturating_mul(1000));
    store
        .create_enrollment_code(workspace_id, device_id, &hash, expires)
        .await?;
    Ok(json!({
        "workspace_id": workspace_id,
        "device_id": device_id,
        "code": code,
        "expires_at": Timestamp::from_unix_millis(expires).to_rfc3339(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceRequest {
    workspace_id: String,
    device_id: String,
    name: String,
}

async fn add_device(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("device.add");
    let result = async {
        let req: DeviceRequest = read_json(body, "POST /api/v1/devices").await?;
        check_workspace_id(&req.workspace_id, "workspace_id")?;
        check_id(&req.device_id)
            .map_err(|r| CloudError::BadRequest(format!("`device_id` is not a device id: {r}")))?;
        if req.name.trim().is_empty() || req.name.len() > 200 {
            return Err(CloudError::BadRequest(
                "`name` must be 1 to 200 characters".into(),
            ));
        }
        state
            .authorize(
                &mut audit,
                &headers,
                Some(&req.workspace_id),
                Allow::Operator,
            )
            .await?;
        let d = state
            .store
            .add_device(&req.workspace_id, &req.device_id, req.name.trim())
            .await?;
        ok_json(&device_json(&d))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

fn device_json(d: &crate::store::DeviceRow) -> Value {
    json!({"workspace_id": d.workspace_id, "device_id": d.device_id, "name": d.name,
           "registered_at": Timestamp::from_unix_millis(d.registered_at_ms).to_rfc3339()})
}

#[derive(Deserialize)]
struct WorkspaceParam {
    workspace_id: String,
}

async fn list_devices(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<WorkspaceParam>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut audit = Audit::new("device.list");
    let result = async {
        let Query(q) = q.map_err(|e| CloudError::BadRequest(e.body_text()))?;
        state
            .authorize(&mut audit, &headers, Some(&q.workspace_id), Allow::Either)
            .await?;
        let devices = state.store.devices(&q.workspace_id).await?;
        ok_json(&json!({"workspace_id": q.workspace_id,
                        "devices": devices.iter().map(device_json).collect::<Vec<_>>()}))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    workspace_id: String,
    #[serde(default)]
    jti: Option<String>,
    /// Revoke every unexpired token of the workspace.
    #[serde(default)]
    all: bool,
    #[serde(default)]
    reason: Option<String>,
}

async fn revoke(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("revoke");
    let result = async {
        let req: RevokeRequest = read_json(body, "POST /api/v1/revoke").await?;
        check_workspace_id(&req.workspace_id, "workspace_id")?;
        state
            .authorize(
                &mut audit,
                &headers,
                Some(&req.workspace_id),
                Allow::Operator,
            )
            .await?;
        let revoked = match (&req.jti, req.all) {
            (Some(jti), false) => u64::from(
                state
                    .store
                    .revoke(&req.workspace_id, jti, req.reason.as_deref())
                    .await?,
            ),
            (None, true) => {
                state
                    .store
                    .revoke_workspace(&req.workspace_id, req.reason.as_deref())
                    .await?
            }
            _ => {
                return Err(CloudError::BadRequest(
                    "give exactly one of `jti` or `all: true`".into(),
                ))
            }
        };
        audit.entry.detail = Some(format!("revoked {revoked}"));
        ok_json(&json!({"workspace_id": req.workspace_id, "revoked": revoked}))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn revocations(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<WorkspaceParam>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut audit = Audit::new("revocations.pull");
    let result = async {
        let Query(q) = q.map_err(|e| CloudError::BadRequest(e.body_text()))?;
        check_workspace_id(&q.workspace_id, "workspace_id")?;
        state
            .authorize(&mut audit, &headers, Some(&q.workspace_id), Allow::Either)
            .await?;
        let list = RevocationList {
            revoked_jtis: state.store.revoked_jtis(&q.workspace_id).await?,
            workspace_id: q.workspace_id,
            generated_at: Timestamp::now().to_rfc3339(),
        };
        ok_json(&list)
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

// ---------------------------------------------------------------------------------------------
// Events

async fn push_events(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("events.push");
    let result = push_events_inner(&state, &mut audit, &headers, body).await;
    state.finish_with(&headers, audit, result).await
}

/// The wire's `EventBatch` with each event kept as its JSON text: parsed once, by the check.
#[derive(Deserialize)]
struct RawEventBatch {
    workspace_id: String,
    events: Vec<Box<serde_json::value::RawValue>>,
}

async fn push_events_inner(
    state: &AppState,
    audit: &mut Audit,
    headers: &HeaderMap,
    body: Body,
) -> CloudResult<Response> {
    let bytes = read_body(body, "POST /api/v1/events").await?;
    // Parsing and checking thousands of events is CPU work: off the async workers.
    let batch: RawEventBatch = blocking(move || parse_json(&bytes, "POST /api/v1/events")).await?;
    check_workspace_id(&batch.workspace_id, "workspace_id")?;
    let caller = state
        .authorize(audit, headers, Some(&batch.workspace_id), Allow::Workspace)
        .await?;
    let Caller::Workspace { subject, .. } = &caller else {
        return Err(CloudError::ScopeDenied(
            "events are pushed with a workspace token".into(),
        ));
    };
    let count = batch.events.len();
    let subject_text = subject.to_string();
    let (ws, subject, events) = (batch.workspace_id.clone(), subject.clone(), batch.events);
    let rows = blocking(move || {
        let texts: Vec<&str> = events.iter().map(|e| e.get()).collect();
        ingest::batch_rows_raw(&ws, &subject, &texts)
    })
    .await?;
    check_relayed_phones(state, &batch.workspace_id, &subject_text, &rows).await?;
    audit.entry.detail = Some(format!("{count} events"));
    let outcome = state.store.ingest_owned(rows, &audit.entry).await?;
    audit.written = true;
    if state.live.receiver_count() > 0 && outcome.fresh > 0 {
        let _ = state.live.send(Arc::new(LiveEvent {
            workspace_id: batch.workspace_id.clone(),
        }));
    }
    ok_json(&Accepted {
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
    })
}

/// A sidecar relays its phones' events (`from` = `WS:phone:ID`). Refuse a batch naming a phone
/// the workspace does not know or whose tokens are all revoked: the stored event would be
/// attributed to a device that does not exist, or to a lost phone. Checked once per phone, so a
/// large batch costs a query per distinct phone, not per event.
async fn check_relayed_phones(
    state: &AppState,
    workspace_id: &str,
    subject_text: &str,
    rows: &[crate::store::EventRow],
) -> CloudResult<()> {
    let mut seen = std::collections::HashSet::new();
    for (index, row) in rows.iter().enumerate() {
        if row.channel == subject_text || !seen.insert(row.channel.as_str()) {
            continue;
        }
        let Ok(Subject::Phone { device_id, .. }) = Subject::parse(&row.channel) else {
            continue;
        };
        let why = match state.store.phone_standing(workspace_id, &device_id).await? {
            PhoneStanding::Known => continue,
            PhoneStanding::Unknown => "is not a registered or enrolled phone of",
            PhoneStanding::Revoked => "had every token revoked in",
        };
        return Err(CloudError::FromMismatch(format!(
            "events[{index}]: `from` is `{}`, which {why} workspace `{workspace_id}`; \
             a sidecar relays events of its workspace's active phones only (register one with \
             `lumenflow cloud device add`)",
            row.channel
        )));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
struct EventsParams {
    workspace_id: Option<String>,
    kind: Option<String>,
    run_id: Option<String>,
    channel: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn query_events(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut audit = Audit::new("events.query");
    let result = async {
        let Query(p) = q.map_err(|e| CloudError::BadRequest(e.body_text()))?;
        let ws = p.workspace_id.clone().ok_or_else(|| {
            CloudError::BadRequest("query parameter `workspace_id` is required".into())
        })?;
        check_workspace_id(&ws, "workspace_id")?;
        state
            .authorize(&mut audit, &headers, Some(&ws), Allow::Either)
            .await?;
        let time = |v: &Option<String>, name: &str| -> CloudResult<Option<i64>> {
            v.as_deref()
                .map(|t| {
                    Timestamp::parse(t)
                        .map(|t| t.unix_millis())
                        .map_err(|e| CloudError::BadRequest(format!("`{name}`: {e}")))
                })
                .transpose()
        };
        let after = match &p.cursor {
            None => None,
            Some(c) => Some(EventCursor::parse(c).ok_or_else(|| {
                CloudError::BadRequest(format!("`cursor` `{c}` is not a cursor this server issued"))
            })?),
        };
        let query = EventQuery {
            workspace_id: ws.clone(),
            kind: p.kind.clone(),
            run_id: p.run_id.clone(),
            channel: p.channel.clone(),
            since_ms: time(&p.since, "since")?,
            until_ms: time(&p.until, "until")?,
            after,
            limit: p.limit.unwrap_or(500),
        };
        let (events, next) = state.store.query_events(&query).await?;
        ok_json(&json!({
            "workspace_id": ws,
            "events": events.into_iter().map(|e| e.event).collect::<Vec<_>>(),
            "next_cursor": next.map(|c| c.render()),
        }))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn stream_events(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut audit = Audit::new("events.stream");
    let result = async {
        let Query(p) = q.map_err(|e| CloudError::BadRequest(e.body_text()))?;
        check_workspace_id(&p.workspace_id, "workspace_id")?;
        state
            .authorize(&mut audit, &headers, Some(&p.workspace_id), Allow::Either)
            .await?;
        // Only the bearer token is kept for the periodic re-check, not the whole request.
        let mut token_headers = HeaderMap::new();
        if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
            token_headers.insert(axum::http::header::AUTHORIZATION, v.clone());
        }
        // Resume after `Last-Event-ID` (or `?after=`), else start with what arrives next.
        let resume = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| p.after.clone());
        let last = match resume {
            Some(text) => text.trim().parse::<i64>().map_err(|_| {
                CloudError::BadRequest(format!(
                    "`Last-Event-ID`/`after` `{text}` is not an event cursor"
                ))
            })?,
            None => state.store.last_event_id(&p.workspace_id).await?,
        };
        let tail = Tail {
            store: state.store.clone(),
            workspace_id: p.workspace_id,
            kind: p.kind,
            last,
            wake: state.live.subscribe(),
            buffer: std::collections::VecDeque::new(),
            first: true,
            stopping: state.stopping.subscribe(),
            authority: state.authority.clone(),
            token_headers,
            subject: audit.entry.subject.clone(),
            token_checked: Instant::now(),
            ended: false,
        };
        Ok(Sse::new(tail_stream(tail))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response())
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

#[derive(Deserialize)]
struct StreamParams {
    workspace_id: String,
    kind: Option<String>,
    after: Option<String>,
}

/// How often a stream looks at the database without being woken (events ingested by another
/// control-plane process on the same database wake no one here).
const TAIL_POLL: Duration = Duration::from_millis(500);

/// The state of one live stream: it tails the workspace's events by cursor, from the database,
/// so it sees what any process stored, in commit order, and resumes after a reconnect.
struct Tail {
    store: Store,
    workspace_id: String,
    kind: Option<String>,
    last: i64,
    wake: broadcast::Receiver<Arc<LiveEvent>>,
    buffer: std::collections::VecDeque<crate::store::StoredEvent>,
    first: bool,
    /// The server is stopping: the stream ends (a client reconnects elsewhere with its cursor).
    stopping: watch::Receiver<bool>,
    authority: Arc<Authority>,
    /// The request's `Authorization` header, verified again every [`TOKEN_RECHECK`].
    token_headers: HeaderMap,
    /// The authenticated subject, for the audit line when the stream is cut.
    subject: String,
    token_checked: Instant,
    /// The token stopped being valid and the stream said so: nothing more is sent.
    ended: bool,
}

/// How often an open stream verifies its token again (as the console re-checks its sessions):
/// a token revoked or expired while the stream is open stops reading events within this time.
const TOKEN_RECHECK: Duration = Duration::from_secs(2);

impl Tail {
    /// `Some(refusal)` once the token no longer authorizes this stream (revoked, expired past
    /// the leeway). A storage failure keeps the stream: an unreachable database is not a
    /// revocation, and the events query fails too, so nothing is sent meanwhile.
    async fn token_refused(&mut self) -> Option<CloudError> {
        if self.token_checked.elapsed() < TOKEN_RECHECK {
            return None;
        }
        self.token_checked = Instant::now();
        match self
            .authority
            .authorize(
                &self.store,
                &self.token_headers,
                Some(&self.workspace_id),
                Allow::Either,
            )
            .await
        {
            Ok(_) => None,
            Err(e @ CloudError::Storage(_)) => {
                tracing::warn!(error = %e, "event stream could not re-check its token");
                None
            }
            Err(e) => Some(e),
        }
    }

    /// The stream's last message, and its audit line, when the token stops being valid.
    async fn end(&mut self, refusal: &CloudError) -> SseEvent {
        self.ended = true;
        let message = format!("the stream ended: {refusal}");
        let entry = AuditEntry {
            workspace_id: Some(self.workspace_id.clone()),
            subject: self.subject.clone(),
            device_name: None,
            action: "events.stream".into(),
            outcome: "refused".into(),
            code: Some(refusal.code().to_string()),
            detail: Some(message.chars().take(500).collect()),
        };
        if let Err(e) = self.store.audit(&entry).await {
            tracing::error!(error = %e, "cannot write the audit line");
        }
        SseEvent::default()
            .event("token_rejected")
            .data(json!({"code": refusal.code(), "message": message}).to_string())
    }
}

fn tail_stream(tail: Tail) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if t.ended || *t.stopping.borrow() {
                return None;
            }
            if let Some(refusal) = t.token_refused().await {
                let last = t.end(&refusal).await;
                return Some((Ok(last), t));
            }
            if let Some(e) = t.buffer.pop_front() {
                let event = SseEvent::default()
                    .id(e.cursor.to_string())
                    .event("event")
                    .data(e.event.to_string());
                return Some((Ok(event), t));
            }
            if !t.first {
                tokio::select! {
                    woken = t.wake.recv() => {
                        if matches!(woken, Err(broadcast::error::RecvError::Closed)) {
                            tokio::time::sleep(TAIL_POLL).await;
                        }
                    }
                    _ = tokio::time::sleep(TAIL_POLL) => {}
                    _ = t.stopping.changed() => continue,
                }
            }
            t.first = false;
            match t
                .store
                .events_after(&t.workspace_id, t.kind.as_deref(), t.last, 500)
                .await
            {
                Ok(events) => {
                    if let Some(e) = events.last() {
                        t.last = e.cursor;
                    }
                    t.buffer.extend(events);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live stream query failed");
                    tokio::time::sleep(TAIL_POLL).await;
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Registry and invoke

/// Fetch a workspace's `GET /tools` (with `If-None-Match`) and store it. Whether the sidecar
/// answered is recorded, so every page (and the background refresher's failures, which nobody
/// watches) reads the same connection state.
pub async fn refresh_tools(
    store: &Store,
    authority: &Authority,
    http: &reqwest::Client,
    ws: &str,
) -> CloudResult<&'static str> {
    let result = fetch_tools(store, authority, http, ws).await;
    match &result {
        Ok(_) => note_sidecar_contact(store, ws, None).await,
        Err(e @ CloudError::Sidecar(_)) => {
            note_sidecar_contact(store, ws, Some(&e.to_string())).await
        }
        Err(_) => {}
    }
    result
}

/// Record whether a workspace's sidecar answered. Losing the record only costs the display,
/// so a failure is logged, never returned.
pub(crate) async fn note_sidecar_contact(store: &Store, ws: &str, error: Option<&str>) {
    if let Err(e) = store.record_sidecar_contact(ws, error, now_ms()).await {
        tracing::warn!(workspace = %ws, error = %e, "cannot record the sidecar's reachability");
    }
}

async fn fetch_tools(
    store: &Store,
    authority: &Authority,
    http: &reqwest::Client,
    ws: &str,
) -> CloudResult<&'static str> {
    let sidecar = sidecar_url(store, ws).await?;
    let token = authority
        .mint_sidecar_token(store, ws, "workspace agent:execute-turn", "registry")
        .await?;
    let previous = store.tools(ws).await?;
    let mut req = http
        .get(format!("{sidecar}/tools"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(15));
    if let Some(etag) = previous.as_ref().and_then(|p| p.etag.clone()) {
        req = req.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    let resp = req.send().await.map_err(|e| {
        CloudError::Sidecar(format!("GET {sidecar}/tools failed: {}", with_causes(&e)))
    })?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED && previous.is_some() {
        store.touch_tools(ws).await?;
        return Ok("not_modified");
    }
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(CloudError::Sidecar(format!(
            "GET {sidecar}/tools answered {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp
        .text()
        .await
        .map_err(|e| CloudError::Sidecar(format!("GET {sidecar}/tools: {}", with_causes(&e))))?;
    let listing: ToolListing = serde_json::from_str(&text).map_err(|e| {
        CloudError::Sidecar(format!("GET {sidecar}/tools returned no tool listing: {e}"))
    })?;
    let canonical = serde_json::to_string(&listing)
        .map_err(|e| CloudError::Internal(format!("cannot encode the listing: {e}")))?;
    store.put_tools(ws, &canonical, etag.as_deref()).await?;
    Ok("updated")
}

pub(crate) async fn sidecar_url(store: &Store, ws: &str) -> CloudResult<String> {
    let row = store
        .workspace(ws)
        .await?
        .ok_or_else(|| CloudError::NotFound(format!("workspace `{ws}` is not known")))?;
    row.sidecar_url
        .map(|u| u.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            CloudError::NotFound(format!(
                "workspace `{ws}` has no sidecar URL (give `sidecar_url` at enrollment or \
                 POST /api/v1/workspaces/{ws}/sidecar)"
            ))
        })
}

fn spawn_registry_refresher(state: Shared, every: Duration) {
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Ok(list) = state.store.workspaces_with_sidecar().await else {
                continue;
            };
            for (ws, _) in list {
                if let Err(e) =
                    refresh_tools(&state.store, &state.authority, &state.http, &ws).await
                {
                    tracing::debug!(workspace = %ws, error = %e, "registry refresh failed");
                }
            }
        }
    });
}

async fn list_tools(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(ws): Path<String>,
) -> Response {
    let mut audit = Audit::new("tools.list");
    let result = async {
        check_workspace_id(&ws, "workspace")?;
        state
            .authorize(&mut audit, &headers, Some(&ws), Allow::Operator)
            .await?;
        let stored = state.store.tools(&ws).await?;
        let stale = stored
            .as_ref()
            .is_none_or(|s| now_ms() - s.fetched_at_ms > REGISTRY_STALE_MS);
        let mut refresh_error = None;
        if stale {
            if let Err(e) = refresh_tools(&state.store, &state.authority, &state.http, &ws).await {
                refresh_error = Some(e);
            }
        }
        let Some(row) = state.store.tools(&ws).await? else {
            return Err(refresh_error.unwrap_or_else(|| {
                CloudError::NotFound(format!("no tool listing for workspace `{ws}` yet"))
            }));
        };
        let listing: Value = serde_json::from_str(&row.listing)
            .map_err(|e| CloudError::Storage(format!("stored listing is not JSON: {e}")))?;
        ok_json(&json!({
            "workspace_id": ws,
            "tools": listing.get("tools").cloned().unwrap_or(Value::Array(vec![])),
            "etag": row.etag,
            "fetched_at": Timestamp::from_unix_millis(row.fetched_at_ms).to_rfc3339(),
            "stale": refresh_error.map(|e| e.to_string()),
        }))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn refresh_registry(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(ws): Path<String>,
) -> Response {
    let mut audit = Audit::new("tools.refresh");
    let result = async {
        check_workspace_id(&ws, "workspace")?;
        state
            .authorize(&mut audit, &headers, Some(&ws), Allow::Operator)
            .await?;
        let outcome = refresh_tools(&state.store, &state.authority, &state.http, &ws).await?;
        ok_json(&json!({"workspace_id": ws, "refresh": outcome}))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SidecarRequest {
    sidecar_url: Option<String>,
}

async fn set_sidecar(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(ws): Path<String>,
    body: Body,
) -> Response {
    let mut audit = Audit::new("workspace.sidecar");
    let result = async {
        check_workspace_id(&ws, "workspace")?;
        let req: SidecarRequest = read_json(body, "POST /api/v1/workspaces/{ws}/sidecar").await?;
        state
            .authorize(&mut audit, &headers, Some(&ws), Allow::Operator)
            .await?;
        state
            .store
            .set_sidecar_url(&ws, req.sidecar_url.as_deref())
            .await?;
        ok_json(&json!({"workspace_id": ws, "sidecar_url": req.sidecar_url}))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn invoke_tool(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((ws, name)): Path<(String, String)>,
    body: Body,
) -> Response {
    let mut audit = Audit::new("tools.invoke");
    let result = async {
        check_workspace_id(&ws, "workspace")?;
        let bytes = read_body(body, "POST /api/v1/workspaces/{ws}/tools/{name}").await?;
        let input: Value = parse_json(&bytes, "POST /api/v1/workspaces/{ws}/tools/{name}")?;
        let caller = state
            .authorize(&mut audit, &headers, Some(&ws), Allow::Operator)
            .await?;
        // The sidecar sees only the control plane's workspace token, so its events and approval
        // requests name the workspace; remembering who invoked lets the console name them.
        let invoked_by = caller.subject_text().to_string();
        crate::console::approvals::remember_call_input(
            &state.store,
            &ws,
            &name,
            &input,
            &invoked_by,
        )
        .await;
        audit.entry.detail = Some(format!("tool {name}"));
        let sidecar = sidecar_url(&state.store, &ws).await?;
        let scope = tool_scope(&state.store, &ws, &name).await;
        let token = state
            .authority
            .mint_sidecar_token(&state.store, &ws, &scope, "invoke")
            .await?;
        let url = format!("{sidecar}/tools/{}", encode_segment(&name));
        let resp = state
            .http
            .post(&url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes.to_vec())
            .send()
            .await
            .map_err(|e| CloudError::Sidecar(format!("POST {url} failed: {}", with_causes(&e))));
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                note_sidecar_contact(&state.store, &ws, Some(&e.to_string())).await;
                return Err(e);
            }
        };
        note_sidecar_contact(&state.store, &ws, None).await;
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
            .unwrap_or(HeaderValue::from_static("application/json"));
        let body = resp
            .bytes()
            .await
            .map_err(|e| CloudError::Sidecar(format!("POST {url}: {}", with_causes(&e))))?;
        audit.entry.detail = Some(format!("tool {name} -> {status}"));
        crate::console::approvals::remember_invocation(
            &state.store,
            &ws,
            &name,
            &input,
            &body,
            &invoked_by,
        )
        .await;
        Ok((
            status,
            [(header::CONTENT_TYPE, content_type)],
            body.to_vec(),
        )
            .into_response())
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

/// The scopes of the token an operator's call of `name` is forwarded with, from the stored
/// listing: the tool's own (`workspace` when unknown). An agent turn runs other tools on the
/// operator's behalf and the sidecar checks each of its steps against this token (Q16), so a
/// turn's token also carries the scope of every tool the operator could call directly.
async fn tool_scope(store: &Store, ws: &str, name: &str) -> String {
    let listing = match store.tools(ws).await {
        Ok(Some(row)) => serde_json::from_str::<ToolListing>(&row.listing).ok(),
        _ => None,
    };
    let Some(listing) = listing else {
        return SCOPE_WORKSPACE.to_string();
    };
    let scope_of = |t: &lumenflow_contracts::wire::ToolDescriptor| {
        Some(t.token_scope.trim().to_string()).filter(|s| !s.is_empty())
    };
    let own = listing
        .tools
        .iter()
        .find(|t| t.name == name)
        .and_then(scope_of)
        .unwrap_or_else(|| SCOPE_WORKSPACE.to_string());
    if own != SCOPE_EXECUTE_TURN {
        return own;
    }
    let mut scopes: Vec<String> = listing.tools.iter().filter_map(scope_of).collect();
    scopes.push(own);
    scopes.sort();
    scopes.dedup();
    scopes.join(" ")
}

/// Percent-encode a path segment (colons stay, Q15).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Approvals

async fn approval_request(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("approvals.request");
    let result = async {
        let input: ApprovalRequestInput = read_json(body, "POST /api/v1/approvals/request").await?;
        check_workspace_id(&input.workspace_id, "workspace_id")?;
        let caller = state
            .authorize(
                &mut audit,
                &headers,
                Some(&input.workspace_id),
                Allow::Either,
            )
            .await?;
        if input.approval_type.trim().is_empty() {
            return Err(CloudError::BadRequest("`type` must not be empty".into()));
        }
        if !input.subject.is_object() {
            return Err(CloudError::BadRequest(
                "`subject` must be a JSON object".into(),
            ));
        }
        if input.context.as_ref().is_some_and(|c| !c.is_object()) {
            return Err(CloudError::BadRequest(
                "`context` must be a JSON object".into(),
            ));
        }
        let now = Timestamp::now();
        let expires = match &input.expires_at {
            Some(t) => Timestamp::parse(t)
                .map_err(|e| CloudError::BadRequest(format!("`expires_at`: {e}")))?,
            None => Timestamp::from_unix_millis(now.unix_millis() + DEFAULT_APPROVAL_TTL_MS),
        };
        let record = ApprovalRecord {
            approval_id: format!("apr_{}", lumenflow_proof::token::new_jti()),
            workspace_id: input.workspace_id.clone(),
            approval_type: input.approval_type.clone(),
            status: "pending".into(),
            subject: input.subject.clone(),
            context: input.context.clone(),
            requester_id: input
                .requester_id
                .clone()
                .or_else(|| Some(caller.subject_text().to_string())),
            requester_type: input.requester_type.clone(),
            reviewer_id: None,
            reviewer_type: None,
            decision_reason: None,
            requested_at: now.to_rfc3339(),
            decided_at: None,
            expires_at: Some(expires.to_rfc3339()),
        };
        // The record keeps the requester the body stated (the wire shape); who actually asked
        // is the token's subject, stored beside it for the console.
        state
            .store
            .insert_approval_by(
                &record,
                Some(expires.unix_millis()),
                Some(caller.subject_text()),
            )
            .await?;
        audit.entry.detail = Some(format!("approval {}", record.approval_id));
        let mut out = record;
        out.status =
            crate::store::effective_status(&out.status, Some(expires.unix_millis()), now_ms());
        ok_json(&out)
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn approval_resolve(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("approvals.resolve");
    let result = async {
        let input: ApprovalResolveInput = read_json(body, "POST /api/v1/approvals/resolve").await?;
        check_workspace_id(&input.workspace_id, "workspace_id")?;
        let caller = state
            .authorize(
                &mut audit,
                &headers,
                Some(&input.workspace_id),
                Allow::Operator,
            )
            .await?;
        if !matches!(input.decision.as_str(), "approved" | "rejected" | "expired") {
            return Err(CloudError::BadRequest(format!(
                "`decision` `{}` is not one of approved, rejected, expired",
                input.decision
            )));
        }
        audit.entry.detail = Some(format!("approval {} {}", input.approval_id, input.decision));
        // The decider is the token's subject. A `reviewer_id` naming someone else is not
        // refused (scripts such as the demo name a reviewer), but it is kept only as a stated
        // reviewer, so nobody reads it as who decided.
        let subject = caller.subject_text().to_string();
        let stated = input
            .reviewer_id
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty() && *r != subject);
        if let Some(stated) = stated {
            audit.entry.detail = Some(format!(
                "approval {} {} (stated reviewer {})",
                input.approval_id,
                input.decision,
                stated.chars().take(100).collect::<String>()
            ));
        }
        match state
            .store
            .resolve_approval_by(
                &input.workspace_id,
                &input.approval_id,
                &input.decision,
                input.reason.as_deref(),
                crate::store::Decider {
                    subject: Some(&subject),
                    reviewer_id: Some(&subject),
                    reviewer_type: Some(input.reviewer_type.as_deref().unwrap_or("user")),
                    stated,
                },
            )
            .await?
        {
            Ok(record) => ok_json(&record),
            Err(ResolveRefusal::NotFound) => Err(CloudError::NotFound(format!(
                "approval `{}` does not exist in workspace `{}`",
                input.approval_id, input.workspace_id
            ))),
            Err(ResolveRefusal::AlreadyDecided(status)) => Err(CloudError::Conflict(format!(
                "approval `{}` is already {status}",
                input.approval_id
            ))),
        }
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn approval_list(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("approvals.list");
    let result = async {
        let input: ApprovalListInput = read_json(body, "POST /api/v1/approvals/list").await?;
        check_workspace_id(&input.workspace_id, "workspace_id")?;
        state
            .authorize(
                &mut audit,
                &headers,
                Some(&input.workspace_id),
                Allow::Either,
            )
            .await?;
        if let Some(s) = &input.status {
            if !matches!(s.as_str(), "pending" | "approved" | "rejected" | "expired") {
                return Err(CloudError::BadRequest(format!(
                    "`status` `{s}` is not one of pending, approved, rejected, expired"
                )));
            }
        }
        ok_json(&state.store.list_approvals(&input).await?)
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn approval_get(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut audit = Audit::new("approvals.get");
    let result = async {
        let record = state.store.approval(&id).await?;
        // Authorize against the record's workspace; an unknown id is a 404 only for callers
        // who could see it, so first check the token is at least valid for something.
        let ws = record.as_ref().map(|r| r.workspace_id.clone());
        let caller = state
            .authorize(&mut audit, &headers, ws.as_deref(), Allow::Either)
            .await?;
        let record = record
            .ok_or_else(|| CloudError::NotFound(format!("approval `{id}` does not exist")))?;
        if let Some(own) = caller_workspace(&caller) {
            if own != record.workspace_id {
                return Err(CloudError::WrongWorkspace(format!(
                    "approval `{id}` belongs to another workspace"
                )));
            }
        }
        ok_json(&record)
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

// ---------------------------------------------------------------------------------------------
// Sealing and replay

async fn seal_receipt(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("receipts.seal");
    let result = seal_inner(&state, &mut audit, &headers, body).await;
    state.finish_with(&headers, audit, result).await
}

/// `sha256:<hex>` of the canonical JSON of `receipt` without `content_digest` (Q25).
pub fn receipt_digest(receipt: &serde_json::Map<String, Value>) -> String {
    let mut body = receipt.clone();
    body.remove("content_digest");
    format!(
        "sha256:{}",
        sha256_hex(to_canonical_string(&Value::Object(body)).as_bytes())
    )
}

async fn seal_inner(
    state: &AppState,
    audit: &mut Audit,
    headers: &HeaderMap,
    body: Body,
) -> CloudResult<Response> {
    const WHAT: &str = "POST /api/v1/receipts/seal";
    let bytes = read_body(body, WHAT).await?;
    // Strictly, duplicate member names refused (walk-G F13): with last-wins parsing a body
    // naming `workspace_id` twice is authorized against one value while a reader of the sealed
    // bytes may take the other. The contracts' canonicalizer is the strict parser; its output
    // is plain JSON again.
    let canonical = std::str::from_utf8(&bytes)
        .map_err(|e| CloudError::BadRequest(format!("the body of {WHAT} is not UTF-8: {e}")))
        .and_then(|text| {
            lumenflow_contracts::canonical_json::canonicalize_str(text).map_err(|e| {
                CloudError::BadRequest(format!("malformed JSON in the body of {WHAT}: {e}"))
            })
        })?;
    let value: Value = parse_json(canonical.as_bytes(), WHAT)?;
    let Value::Object(receipt) = value else {
        return Err(CloudError::BadRequest(
            "the body of POST /api/v1/receipts/seal must be a CanonicalReceipt object".into(),
        ));
    };
    for forbidden in ["seal", "signature", "sig"] {
        if receipt.contains_key(forbidden) {
            return Err(CloudError::BadRequest(format!(
                "a CanonicalReceipt has no `{forbidden}` field (TEV-06); send the unsealed receipt"
            )));
        }
    }
    // The shape first, so a malformed body is refused as such and not as a token problem
    // (walk-G F12); the workspace is `workspace_id`, never the tenant.
    let checked = crate::receipts::check(&receipt)?;
    let ws = checked.workspace_id.clone();
    state
        .authorize(audit, headers, Some(&ws), Allow::Either)
        .await?;
    if checked.kind == crate::receipts::TRUSTED_COMPUTE_BUNDLE_RECEIPT_KIND {
        // A bundle receipt vouches for a run: sealed only for a run of this workspace the control
        // plane knows (its events or its uploaded bundle), never for one made up (walk-G F2).
        let run = checked.run_id.as_deref().unwrap_or_default();
        let stored = state.store.run_bundle(run, Some(&ws)).await?;
        let events = state.store.run_events(run, Some(&ws)).await?;
        let known = stored.is_some() || !events.is_empty();
        if known {
            // Events come in time order; the first bounds when a receipt of the run can be made.
            audit.workspace(&ws);
            let first_event_ms = events.first().map(|e| e.ts_ms);
            crate::receipts::check_run_bounds(
                &checked,
                Timestamp::now().unix_millis(),
                first_event_ms,
            )?;
        }
        if let Some(bundle) = &stored {
            // The receipt names the bundle's artifacts by digest: when the bundle is stored,
            // the seal vouches only for the files the control plane actually holds, never for
            // other bytes under the same names.
            audit.workspace(&ws);
            crate::receipts::match_bundle(&checked, bundle)?;
        }
        if !known {
            audit.workspace(&ws);
            return Err(CloudError::NotFound(format!(
                "POST /api/v1/receipts/seal: `run_id` `{run}` is no run of workspace `{ws}` this \
                 control plane knows (no events, no uploaded bundle); upload the bundle first"
            )));
        }
    } else if let Some(run) = checked.run_id.as_deref() {
        // A tenant receipt's `run_id` places it in that run's replay: only in a run of this
        // workspace that exists, never in a made-up one (walk-G N2).
        let known = state.store.run_bundle(run, Some(&ws)).await?.is_some()
            || !state.store.run_events(run, Some(&ws)).await?.is_empty();
        if !known {
            audit.workspace(&ws);
            return Err(CloudError::NotFound(format!(
                "POST /api/v1/receipts/seal: `run_id` `{run}` is no run of workspace `{ws}` this \
                 control plane knows (no events, no uploaded bundle); leave `run_id` out or \
                 name a run of the workspace"
            )));
        }
    }
    audit.workspace(&ws);
    let claimed = receipt
        .get("content_digest")
        .and_then(Value::as_str)
        .ok_or_else(|| CloudError::BadRequest("the receipt has no string `content_digest`".into()))?
        .to_string();
    let computed = receipt_digest(&receipt);
    if claimed != computed {
        return Err(CloudError::DigestMismatch(format!(
            "`content_digest` is `{claimed}` but the receipt's canonical JSON hashes to `{computed}`"
        )));
    }
    let sealed_at = Timestamp::now();
    let signature = state.authority.sign(computed.as_bytes());
    let seal = json!({
        "algorithm": "ed25519",
        "key_id": state.authority.key_id(),
        "sealed_at": sealed_at.to_rfc3339(),
        "signature": base64::engine::general_purpose::STANDARD.encode(signature),
    });
    let receipt_id = format!(
        "rcpt_{}",
        computed.strip_prefix("sha256:").unwrap_or(&computed)
    );
    let run_id = receipt
        .get("run_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let stored = state
        .store
        .put_receipt(&ReceiptRow {
            receipt_id: receipt_id.clone(),
            workspace_id: ws,
            run_id,
            content_digest: computed.clone(),
            receipt: Value::Object(receipt),
            seal,
            sealed_at_ms: sealed_at.unix_millis(),
        })
        .await?;
    audit.entry.detail = Some(format!("receipt {receipt_id}"));
    ok_json(&json!({
        "receipt_id": stored.receipt_id,
        "content_digest": stored.content_digest,
        "seal": stored.seal,
    }))
}

async fn get_receipt(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut audit = Audit::new("receipts.get");
    let result = async {
        let row = state.store.receipt(&id).await?;
        let ws = row.as_ref().map(|r| r.workspace_id.clone());
        state
            .authorize(&mut audit, &headers, ws.as_deref(), Allow::Either)
            .await?;
        let row =
            row.ok_or_else(|| CloudError::NotFound(format!("receipt `{id}` does not exist")))?;
        ok_json(
            &json!({"receipt_id": row.receipt_id, "workspace_id": row.workspace_id,
                        "content_digest": row.content_digest, "receipt": row.receipt,
                        "seal": row.seal, "public_key_pem": state.authority.public_pem()}),
        )
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

pub(crate) async fn replay_doc(state: &AppState, run_id: &str) -> CloudResult<Value> {
    if run_id.is_empty() || run_id.len() > 256 {
        return Err(CloudError::BadRequest(
            "the run id must be 1 to 256 characters".into(),
        ));
    }
    let events = state.store.run_events(run_id, None).await?;
    let approvals = state.store.run_approvals(run_id).await?;
    let receipts = state.store.run_receipts(run_id).await?;
    if events.is_empty() && approvals.is_empty() && receipts.is_empty() {
        return Err(CloudError::NotFound(format!(
            "nothing is stored for run `{run_id}`"
        )));
    }
    Ok(replay::assemble(run_id, &events, &approvals, &receipts))
}

async fn replay_json(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Response {
    let mut audit = Audit::new("replay");
    let result = async {
        state
            .authorize(&mut audit, &headers, None, Allow::Operator)
            .await?;
        audit.entry.detail = Some(format!("run {run_id}"));
        ok_json(&replay_doc(&state, &run_id).await?)
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn replay_page(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Response {
    let mut audit = Audit::new("replay.page");
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let result = async {
        state
            .authorize(&mut audit, &headers, None, Allow::Operator)
            .await?;
        let doc = replay_doc(&state, &run_id).await?;
        if wants_json {
            ok_json(&doc)
        } else {
            Ok(Html(replay::render_html(&doc)).into_response())
        }
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

#[derive(Deserialize)]
struct AuditParams {
    workspace_id: Option<String>,
    limit: Option<u32>,
}

async fn audit_log(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut audit = Audit::new("audit.read");
    let result = async {
        let Query(p) = q.map_err(|e| CloudError::BadRequest(e.body_text()))?;
        state
            .authorize(&mut audit, &headers, None, Allow::Operator)
            .await?;
        let lines = state
            .store
            .audit_log(p.workspace_id.as_deref(), p.limit.unwrap_or(200))
            .await?;
        let lines: Vec<Value> = lines
            .into_iter()
            .map(|r| {
                json!({"id": r.id, "at": Timestamp::from_unix_millis(r.at_ms).to_rfc3339(),
                       "workspace_id": r.entry.workspace_id, "subject": r.entry.subject,
                       "device_name": r.entry.device_name, "action": r.entry.action,
                       "outcome": r.entry.outcome, "code": r.entry.code, "detail": r.entry.detail})
            })
            .collect();
        ok_json(&json!({"entries": lines}))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

// ---------------------------------------------------------------------------------------------
// The original's v1 sync endpoints (original/control-plane.md §2.1, §2.2)

/// Read a v1 body, require its `workspace_id` and authorize the workspace token for it.
async fn v1_body(
    state: &AppState,
    audit: &mut Audit,
    headers: &HeaderMap,
    body: Body,
    path: &str,
) -> CloudResult<(String, serde_json::Map<String, Value>)> {
    let value: Value = read_json(body, &format!("POST {path}")).await?;
    let Value::Object(obj) = value else {
        return Err(CloudError::BadRequest(format!(
            "the body of POST {path} must be a JSON object"
        )));
    };
    let ws = obj
        .get("workspace_id")
        .and_then(Value::as_str)
        .ok_or_else(|| CloudError::BadRequest(format!("POST {path}: `workspace_id` is required")))?
        .to_string();
    check_workspace_id(&ws, "workspace_id")?;
    state
        .authorize(audit, headers, Some(&ws), Allow::Either)
        .await?;
    Ok((ws, obj))
}

async fn v1_policies(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("v1.policies");
    let result = async {
        let (ws, _) = v1_body(&state, &mut audit, &headers, body, "/api/v1/policies").await?;
        let stored = state.store.workspace(&ws).await?.and_then(|w| w.policies);
        let policies = match stored {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| CloudError::Storage(format!("stored policies are not JSON: {e}")))?,
            None => json!({"default_decision": "allow", "rules": []}),
        };
        ok_json(&policies)
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn v1_config(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("v1.config");
    let result = async {
        let (ws, _) = v1_body(&state, &mut audit, &headers, body, "/api/v1/config").await?;
        let stored = state.store.workspace(&ws).await?.and_then(|w| w.config);
        let config = match stored {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| CloudError::Storage(format!("stored config is not JSON: {e}")))?,
            None => json!({
                "id": ws,
                "control_plane": {
                    "endpoint": state.public_url,
                    "org_id": ws,
                    "project_id": ws,
                    "sync_interval": 30,
                    "policy_mode": "tighten-only",
                    "auth": {"token_env": "LUMENFLOW_CONTROL_PLANE_TOKEN"},
                },
            }),
        };
        ok_json(&config)
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn v1_heartbeat(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("v1.heartbeat");
    let result = async {
        let (ws, obj) = v1_body(&state, &mut audit, &headers, body, "/api/v1/heartbeat").await?;
        if !obj.get("session_id").is_some_and(Value::is_string) {
            return Err(CloudError::BadRequest(
                "POST /api/v1/heartbeat: `session_id` is required".into(),
            ));
        }
        state
            .store
            .put_sync_records(&ws, "heartbeat", &[Value::Object(obj)])
            .await?;
        ok_json(&json!({
            "status": "ok",
            "server_time": Timestamp::now().to_rfc3339(),
            "next_heartbeat_ms": 30_000,
            "coalesced_signals": 0,
        }))
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn v1_telemetry(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("v1.telemetry");
    let result = async {
        let (ws, obj) = v1_body(&state, &mut audit, &headers, body, "/api/v1/telemetry").await?;
        let records = obj
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| CloudError::BadRequest("POST /api/v1/telemetry: `records` must be an array".into()))?;
        for (i, r) in records.iter().enumerate() {
            let ok = r.get("metric").is_some_and(Value::is_string)
                && r.get("value").is_some_and(Value::is_number)
                && r.get("timestamp").is_some_and(Value::is_string);
            if !ok {
                return Err(CloudError::BadRequest(format!(
                    "POST /api/v1/telemetry: records[{i}] needs `metric` (string), `value` (number) and `timestamp` (string)"
                )));
            }
        }
        let n = state.store.put_sync_records(&ws, "telemetry", records).await?;
        ok_json(&Accepted { accepted: n, duplicates: 0 })
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn v1_evidence(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("v1.evidence");
    let result = async {
        let (ws, obj) = v1_body(&state, &mut audit, &headers, body, "/api/v1/evidence").await?;
        let refs = obj
            .get("evidence_refs")
            .and_then(Value::as_array)
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or_else(|| {
                CloudError::BadRequest(
                    "POST /api/v1/evidence: `evidence_refs` must be an array of strings".into(),
                )
            })?;
        let n = state.store.put_sync_records(&ws, "evidence", refs).await?;
        ok_json(&Accepted {
            accepted: n,
            duplicates: 0,
        })
    }
    .await;
    state.finish_with(&headers, audit, result).await
}

async fn v1_authenticate(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let mut audit = Audit::new("v1.authenticate");
    let result = async {
        let (ws, obj) = v1_body(&state, &mut audit, &headers, body, "/api/v1/authenticate").await?;
        let field = |name: &str| -> CloudResult<String> {
            obj.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    CloudError::BadRequest(format!(
                        "POST /api/v1/authenticate: `{name}` is required"
                    ))
                })
        };
        let org_id = field("org_id")?;
        let agent_id = field("agent_id")?;
        let (token, _) = state
            .authority
            .mint(
                &state.store,
                &ws,
                &ws,
                &ws,
                SCOPE_WORKSPACE,
                24 * 3600,
                "authenticate",
            )
            .await?;
        ok_json(
            &json!({"workspace_id": ws, "org_id": org_id, "agent_id": agent_id, "token": token}),
        )
    }
    .await;
    state.finish_with(&headers, audit, result).await
}
