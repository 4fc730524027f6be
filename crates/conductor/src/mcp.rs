//! The MCP surface: `lumenflow mcp` (stdio) and `/mcp` on the sidecar (streamable HTTP), with
//! the official Rust SDK (`rmcp`).
//!
//! It is the same surface as `GET /tools` and `POST /tools/{name}`, not a second one: `tools/list`
//! is the caller's filtered listing ([`ListingCache`](crate::listing::ListingCache)) and
//! `tools/call` goes through [`governed_call`] (token scope, then the kernel's dispatch path with
//! the token subject as caller, [`Surface::Mcp`]). A refusal comes back as a tool error
//! (`isError: true`) whose text starts with its code and whose structured content is
//! `{"error": {"code", "message"}, "receipt_id"}`.
//!
//! Over HTTP the caller is the bearer token verified by the sidecar's middleware (it puts the
//! [`Caller`] in the request extensions). Over stdio there is no header: the caller is the token
//! given to `lumenflow mcp` (`LUMENFLOW_TOKEN`), or the enrollment's own token, verified the same
//! way.

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
use tokio_util::sync::CancellationToken;

use crate::auth::Caller;
use crate::server::{governed_call, parse_call_body, Shared};

/// Where the streamable HTTP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";
/// The methods of the streamable HTTP transport.
pub const MCP_METHODS: [Method; 3] = [Method::GET, Method::POST, Method::DELETE];

/// The `/mcp` service type.
pub type McpHttpService = StreamableHttpService<McpServer, LocalSessionManager>;

/// One MCP session's handler.
#[derive(Clone)]
pub struct McpServer {
    state: Shared,
    /// The caller of a stdio session; HTTP sessions read theirs from each request.
    fixed_caller: Option<Caller>,
}

impl McpServer {
    pub fn stdio(state: Shared, caller: Caller) -> Self {
        McpServer {
            state,
            fixed_caller: Some(caller),
        }
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
        if let Some(c) = &self.fixed_caller {
            return Ok(c.clone());
        }
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .cloned()
            .ok_or_else(|| {
                McpError::invalid_request(
                    "TOKEN_INVALID: the request carries no verified bearer token",
                    None,
                )
            })
    }
}

/// The `/mcp` streamable HTTP service over the sidecar's state. Cancelling `stop` ends every
/// session (an open session's event stream would otherwise hold a stopping server forever).
pub fn http_service(state: Shared, stop: CancellationToken) -> McpHttpService {
    let config = StreamableHttpServerConfig::default().with_cancellation_token(stop);
    StreamableHttpService::new(
        move || {
            Ok(McpServer {
                state: state.clone(),
                fixed_caller: None,
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Serve MCP on stdin/stdout until the client closes it.
pub async fn serve_stdio(server: McpServer) -> Result<(), String> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP session did not start: {e}"))?;
    running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| format!("the MCP session stopped: {e}"))
}

fn tool_error(code: &str, message: &str, receipt_id: Option<&str>) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("{code}: {message}"))]);
    result.structured_content = Some(json!({
        "error": {"code": code, "message": message},
        "receipt_id": receipt_id,
    }));
    result
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
                let mut tool = Tool::new(d.name.clone(), d.description.clone(), schema);
                if let Some(Value::Object(out)) = &d.output_schema {
                    tool.output_schema = Some(Arc::new(out.clone()));
                }
                tool
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = self.caller(&context)?;
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
            Err(m) => return Ok(tool_error("INVALID_INPUT", &m, None).into()),
        };
        let result = match governed_call(&self.state, &caller, Surface::Mcp, &name, parsed).await {
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
                    r
                } else {
                    let (code, message) = outcome
                        .output
                        .error
                        .as_ref()
                        .map(|e| (e.code.clone(), e.message.clone()))
                        .unwrap_or_else(|| {
                            (
                                "TOOL_EXECUTION_FAILED".into(),
                                "the tool reported failure".into(),
                            )
                        });
                    tool_error(&code, &message, Some(receipt))
                }
            }
            Err(f) => tool_error(&f.code, &f.message, f.receipt_id.as_deref()),
        };
        Ok(result.into())
    }
}
