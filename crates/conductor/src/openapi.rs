//! The OpenAPI 3.1 document of the sidecar, served at `GET /openapi.json`.
//!
//! Written by hand next to the router; `server::tests` checks that it lists exactly the routes
//! and methods the router serves, so a route added without documentation fails the build.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The document.
pub fn document() -> Value {
    let auth_errors = json!({
        "401": error_response("TOKEN_INVALID: missing, malformed, forged, expired, wrong-audience or revoked token"),
        "403": error_response("TOKEN_SCOPE_DENIED, or a kernel refusal (POLICY_DENIED, SCOPE_DENIED, APPROVAL_REQUIRED)"),
        "503": error_response("ENROLLMENT_CHANGED: enrollment.json changed after the sidecar started; restart it"),
    });
    let merge = |mut base: Value, extra: &Value| {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            // A route's own description of a status wins over the shared one.
            for (k, v) in e {
                b.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        base
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "LumenFlow conductor sidecar",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The governed tool surface of one workspace. Every tool call goes through the kernel's dispatch path with the bearer token's subject as the caller. Errors are {\"error\": {\"code\", \"message\"}}."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"}},
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "receipt_id": {"type": "string"}}}}
                },
                "ToolOutput": {
                    "type": "object", "required": ["success"],
                    "properties": {
                        "success": {"type": "boolean"}, "data": {}, "metadata": {"type": "object"},
                        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}},
                        "receipt_id": {"type": "string"}, "approval_id": {"type": "string"}
                    }
                },
                "ToolListing": {
                    "type": "object", "required": ["tools"],
                    "properties": {"tools": {"type": "array", "items": {"type": "object", "required": ["name", "pack_id", "pack_version", "description", "permission", "required_scopes", "token_scope", "required_approvals", "input_schema", "decision"]}}}
                },
                "EventV2": {
                    "type": "object", "required": ["schema_version", "kind", "event_id", "timestamp", "payload"],
                    "properties": {"schema_version": {"const": 2}, "kind": {"type": "string"}, "event_id": {"type": "string"}, "timestamp": {"type": "string"}, "from": {"type": "string", "description": "replaced by the token subject"}, "payload": {"type": "object"}}
                }
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {
                "summary": "Liveness, outbox depth and delivery counters", "security": [],
                "responses": {"200": {"description": "running"}}
            }},
            "/tools": {"get": {
                "summary": "The tools this token may call (Q17), with an ETag",
                "parameters": [{"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"}}],
                "responses": merge(json!({
                    "200": {"description": "the listing", "headers": {"ETag": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ToolListing"}}}},
                    "304": {"description": "unchanged since the given ETag"}
                }), &auth_errors)
            }},
            "/tools/{name}": {"post": {
                "summary": "Call a tool through the governed dispatch path",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}, "description": "tool name; colons may be percent-encoded"}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"oneOf": [
                    {"type": "object", "description": "the tool input itself"},
                    {"type": "object", "required": ["input"], "properties": {"input": {"type": "object"}, "context": {"type": "object", "properties": {"task_id": {"type": "string"}, "run_id": {"type": "string"}}}}}
                ]}}}},
                "responses": merge(json!({
                    "200": {"description": "the tool ran (success true), or failed while running (success false)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ToolOutput"}}}},
                    "400": error_response("INVALID_JSON or INVALID_INPUT"),
                    "404": error_response("TOOL_NOT_FOUND"),
                    "413": error_response("BODY_TOO_LARGE")
                }), &auth_errors)
            }},
            "/events": {"post": {
                "summary": "Deliver an inbound queue-class event (sidekick:command_received, conductor:recovery_requested) to the subscribed pack handlers",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventV2"}}}},
                "responses": merge(json!({
                    "200": {"description": "persisted, handled and acknowledged"},
                    "400": error_response("EVENT_NOT_JSON or EVENT_KIND_NOT_INBOUND"),
                    "413": error_response("BODY_TOO_LARGE"),
                    "422": error_response("refused by the kernel's inbound checks (recorded in rejected.jsonl)"),
                    "503": error_response("HANDLER_FAILED: kept in the inbox, delivered again; or ENROLLMENT_CHANGED: restart the sidecar")
                }), &auth_errors)
            }},
            "/openapi.json": {"get": {
                "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}}
            }},
            "/mcp": {
                "post": {"summary": "MCP streamable HTTP: JSON-RPC requests (tools/list, tools/call)", "responses": merge(json!({"200": {"description": "JSON-RPC response or event stream"}}), &auth_errors)},
                "get": {"summary": "MCP streamable HTTP: server event stream", "responses": merge(json!({"200": {"description": "event stream"}}), &auth_errors)},
                "delete": {"summary": "MCP streamable HTTP: end a session", "responses": merge(json!({"200": {"description": "session closed"}}), &auth_errors)}
            }
        }
    })
}
