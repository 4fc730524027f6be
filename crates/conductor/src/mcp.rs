//! The MCP surface: `lumenflow mcp` (stdio) and `/mcp` on the sidecar (streamable HTTP), with
//! the official Rust SDK (`rmcp`).
//!
//! It is the same surface as `GET /tools` and `POST /tools/{name}`, not a second one: `tools/list`
//! is the caller's filtered listing ([`ListingCache`](crate::listing::ListingCache)) and
//! `tools/call` goes through [`governed_call`] (token scope, then the kernel's dispatch path with
//! the token subject as caller, [`Surface::Mcp`]). A refusal comes back as a tool error
//! (`isError: true`) whose text starts with its code; `_meta` carries the error object
//! (`lumenflow/error`: code, message, details), the receipt, the run and an approval id, and a
//! success's `_meta` its receipt and run.
//!
//! Over HTTP the caller is the bearer token verified by the sidecar's middleware (it puts the
//! [`Caller`] in the request extensions). Over stdio there is no header: the caller is the token
//! given to `lumenflow mcp` (`LUMENFLOW_TOKEN`), or the enrollment's own token, verified the same
//! way on every request, so a token that expires or is revoked mid-session stops working there
//! as it does over HTTP.
//!
//! A call runs on a task of its own and is counted in [`InFlight`]: a session that ends (stdin
//! closed, the sidecar stopping, the client gone) does not cut a governed call between its
//! started and finished receipts. `serve_stdio` returns, and a stopping sidecar ends its `/mcp`
//! sessions, only once the calls in flight have finished (the sidecar's grace bounds the wait).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::Method;
use lumenflow_kernel::dispatch::Surface;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::Caller;
use crate::server::{governed_call, parse_call_body, Shared};

/// Where the streamable HTTP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";
/// The methods of the streamable HTTP transport.
pub const MCP_METHODS: [Method; 3] = [Method::GET, Method::POST, Method::DELETE];

/// Browser origins allowed on `/mcp`: pages served from this machine's loopback.
pub const LOOPBACK_ORIGINS: [&str; 3] =
    ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];
/// Room for the JSON-RPC envelope around a call's input.
const MCP_ENVELOPE_BYTES: usize = 16 * 1024;

/// The `/mcp` service type.
pub type McpHttpService = StreamableHttpService<McpServer, LocalSessionManager>;

/// The MCP tool calls still running, across sessions.
#[derive(Clone, Default)]
pub struct InFlight(Arc<InFlightInner>);

#[derive(Default)]
struct InFlightInner {
    count: AtomicUsize,
    idle: Notify,
}

/// Held by a running call; dropping it counts the call out.
struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0 .0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0 .0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// How many calls are running.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::SeqCst)
    }

    /// Resolves once no call is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One MCP session's handler.
#[derive(Clone)]
pub struct McpServer {
    state: Shared,
    /// The token of a stdio session, checked on every request; HTTP sessions read their caller
    /// from each request.
    stdio_token: Option<String>,
    in_flight: InFlight,
    /// The token (its `jti`) an HTTP session first acted with: later requests of the session
    /// must carry the same one, so a session id cannot be reused with another identity or
    /// scope (the transport spec asks sessions to be bound to the user).
    session_token: Arc<std::sync::OnceLock<String>>,
}

impl McpServer {
    pub fn stdio(state: Shared, token: String) -> Self {
        McpServer {
            state,
            stdio_token: Some(token),
            in_flight: InFlight::default(),
            session_token: Arc::default(),
        }
    }

    /// The calls of this server still running.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
        if let Some(token) = &self.stdio_token {
            return self
                .state
                .verifier
                .authenticate(Some(&format!("Bearer {token}")))
                .map_err(|e| {
                    McpError::invalid_request(
                        format!("{}: the session's token: {e}", e.code()),
                        None,
                    )
                });
        }
        let caller = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .cloned()
            .ok_or_else(|| {
                McpError::invalid_request(
                    "TOKEN_INVALID: the request carries no verified bearer token",
                    None,
                )
            })?;
        let owner = self.session_token.get_or_init(|| caller.claims.jti.clone());
        if *owner != caller.claims.jti {
            return Err(McpError::invalid_request(
                "TOKEN_INVALID: this MCP session was opened with another token; start a new \
                 session (initialize) to act with this one",
                None,
            ));
        }
        Ok(caller)
    }
}

/// The `/mcp` streamable HTTP service over the sidecar's state. Cancelling `stop` ends every
/// session (an open session's event stream would otherwise hold a stopping server forever).
pub fn http_service(state: Shared, stop: CancellationToken, calls: InFlight) -> McpHttpService {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(stop)
        // A web page on another origin must not drive the sidecar through a user's browser
        // (DNS rebinding); clients that send no `Origin` (every SDK, curl) are not affected.
        .with_allowed_origins(LOOPBACK_ORIGINS)
        .enforce_origin_validation();
    // One limit for a call on every HTTP surface: a JSON-RPC envelope around the same input
    // `POST /tools` takes.
    config.max_request_body_bytes = crate::server::MAX_BODY_BYTES + MCP_ENVELOPE_BYTES;
    StreamableHttpService::new(
        move || {
            Ok(McpServer {
                state: state.clone(),
                stdio_token: None,
                in_flight: calls.clone(),
                session_token: Arc::default(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Serve MCP on stdin/stdout until the client closes it or `shutdown` resolves (SIGTERM: MCP
/// clients close stdin, then terminate the server). Either way the calls already running get up
/// to `grace` to finish and be recorded before this returns.
pub async fn serve_stdio(
    server: McpServer,
    shutdown: impl std::future::Future<Output = ()>,
    grace: std::time::Duration,
) -> Result<(), String> {
    let calls = server.in_flight();
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP session did not start: {e}"))?;
    let stop = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let ended = tokio::select! {
        ended = &mut waiting => ended
            .map(|_| ())
            .map_err(|e| format!("the MCP session stopped: {e}")),
        () = shutdown => {
            // Not waiting for the session itself: its transport may sit in a read of stdin
            // that only the client's closing ends.
            stop.cancel();
            Ok(())
        }
    };
    // The client may be gone, but its calls still get their finished receipts.
    if calls.count() > 0 {
        tracing::info!(
            calls = calls.count(),
            "the MCP session ended with calls running; waiting for them to finish"
        );
        if tokio::time::timeout(grace, calls.idle()).await.is_err() {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "calls were still running when the grace period ended; stopping anyway"
            );
        }
    }
    ended
}

/// The `_meta` keys a result carries besides its content: what `POST /tools` returns beside
/// `output`, so an MCP client can cite the receipt and act on a refusal without parsing text.
pub const META_RECEIPT: &str = "lumenflow/receipt_id";
pub const META_RUN: &str = "lumenflow/run_id";
pub const META_ERROR: &str = "lumenflow/error";
pub const META_APPROVAL: &str = "lumenflow/approval_id";

fn meta(entries: Vec<(&str, Value)>) -> Option<rmcp::model::MetaObject> {
    let map: Map<String, Value> = entries
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    (!map.is_empty()).then_some(rmcp::model::MetaObject(map))
}

/// A refusal or failure. No structured content: it would have to match the tool's output
/// schema, and clients that check it (the TypeScript SDK) would turn the refusal into an
/// exception instead of handing the code to the agent.
fn tool_error(
    error: &lumenflow_contracts::tool_output::ToolError,
    outcome: Option<&lumenflow_kernel::dispatch::CallOutcome>,
    receipt_id: Option<&str>,
) -> CallToolResult {
    let mut text = format!("{}: {}", error.code, error.message);
    if let Some(details) = &error.details {
        text.push_str(&format!("\ndetails: {details}"));
    }
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.meta = meta(vec![
        (META_ERROR, json!(error)),
        (META_RECEIPT, json!(receipt_id)),
        (META_RUN, json!(outcome.map(|o| o.run_id.as_str()))),
        (
            META_APPROVAL,
            json!(outcome.and_then(|o| o.approval_id.as_deref())),
        ),
    ]);
    result
}

fn plain_error(code: &str, message: &str, receipt_id: Option<&str>) -> CallToolResult {
    let error = lumenflow_contracts::tool_output::ToolError {
        code: code.to_string(),
        message: message.to_string(),
        details: None,
    };
    tool_error(&error, None, receipt_id)
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("lumenflow", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "LumenFlow governed tools: every call goes through the workspace kernel's dispatch path (scopes, rules, approvals, evidence).",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = self.caller(&context)?;
        let scopes: Vec<&str> = caller.claims.scopes().collect();
        let rendered = self
            .state
            .listings
            .get(&self.state.runtime.registry, &scopes);
        let tools = rendered
            .listing
            .tools
            .iter()
            .map(|d| {
                let schema = match &d.input_schema {
                    Value::Object(m) => m.clone(),
                    _ => Map::new(),
                };
                // What `GET /tools` says beside the schema, where an agent reads it: whether the
                // tool only reads, and which approval a call will wait for.
                let mut description = d.description.clone();
                if !d.required_approvals.is_empty() {
                    let note = format!(
                        "Every call needs an operator's approval: {}.",
                        d.required_approvals.join(", ")
                    );
                    description = if description.trim().is_empty() {
                        note
                    } else {
                        format!("{description} ({note})")
                    };
                }
                let mut tool = Tool::new(d.name.clone(), description, schema);
                if let Some(Value::Object(out)) = &d.output_schema {
                    tool.output_schema = Some(Arc::new(out.clone()));
                }
                tool.with_annotations(
                    rmcp::model::ToolAnnotations::new().read_only(d.permission == "read"),
                )
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        // A token that expired or was revoked mid-session is the call's refusal, with its
        // code, like any other: clients hand tool errors to the agent, protocol errors not.
        let caller = match self.caller(&context) {
            Ok(caller) => caller,
            Err(e) => {
                let (code, message) = e
                    .message
                    .split_once(": ")
                    .map(|(c, m)| (c.to_string(), m.to_string()))
                    .unwrap_or_else(|| ("TOKEN_INVALID".into(), e.message.to_string()));
                return Ok(plain_error(&code, &message, None).into());
            }
        };
        let name = request.name.to_string();
        let input = Value::Object(request.arguments.unwrap_or_default());
        let declares_from = self
            .state
            .runtime
            .registry
            .get(&name)
            .and_then(|t| t.manifest.input_schema.as_ref())
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .is_some_and(|p| p.contains_key("from"));
        let parsed = match parse_call_body(input, declares_from) {
            Ok(p) => p,
            Err(m) => return Ok(plain_error("INVALID_INPUT", &m, None).into()),
        };
        let guard = self.in_flight.enter();
        let state = self.state.clone();
        let call = tokio::spawn(async move {
            let _guard = guard;
            governed_call(&state, &caller, Surface::Mcp, &name, parsed).await
        });
        let done = call.await.map_err(|e| {
            McpError::internal_error(format!("the governed call stopped: {e}"), None)
        })?;
        let result = match done {
            Ok(outcome) => {
                let receipt = outcome.receipt_id.as_str();
                if outcome.output.success {
                    let data = outcome.output.data.clone().unwrap_or(Value::Null);
                    let text = serde_json::to_string(&data).unwrap_or_default();
                    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
                    r.structured_content = Some(match data {
                        Value::Object(_) => data,
                        other => json!({ "value": other }),
                    });
                    r.meta = meta(vec![
                        (META_RECEIPT, json!(receipt)),
                        (META_RUN, json!(outcome.run_id)),
                    ]);
                    r
                } else {
                    let error = outcome.output.error.clone().unwrap_or_else(|| {
                        lumenflow_contracts::tool_output::ToolError {
                            code: "TOOL_EXECUTION_FAILED".into(),
                            message: "the tool reported failure".into(),
                            details: None,
                        }
                    });
                    tool_error(&error, Some(&outcome), Some(receipt))
                }
            }
            Err(f) => plain_error(&f.code, &f.message, f.receipt_id.as_deref()),
        };
        Ok(result.into())
    }
}
