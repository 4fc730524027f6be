//! The ToolOutput contract every tool returns, built-in or subprocess (PAK-04).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{success, data?, error?{code, message, details?}, metadata?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ToolError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ToolOutput {
    pub fn ok(data: Value) -> Self {
        ToolOutput {
            success: true,
            data: Some(data),
            error: None,
            metadata: None,
        }
    }

    pub fn fail(code: impl Into<String>, message: impl Into<String>) -> Self {
        ToolOutput {
            success: false,
            data: None,
            error: Some(ToolError {
                code: code.into(),
                message: message.into(),
                details: None,
            }),
            metadata: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        if let Some(e) = self.error.as_mut() {
            e.details = Some(details);
        }
        self
    }

    pub fn error_code(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.code.as_str())
    }

    /// `metadata.artifacts_written` when it is a list of strings.
    pub fn artifacts_written(&self) -> Vec<String> {
        self.metadata
            .as_ref()
            .and_then(|m| m.get("artifacts_written"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The stable error codes of the dispatch path (KRN-10).
pub mod codes {
    pub const TOOL_NOT_FOUND: &str = "TOOL_NOT_FOUND";
    pub const INVALID_INPUT: &str = "INVALID_INPUT";
    pub const SCOPE_DENIED: &str = "SCOPE_DENIED";
    /// The caller's bearer token does not open the tool (Q16).
    pub const TOKEN_SCOPE_DENIED: &str = "TOKEN_SCOPE_DENIED";
    pub const POLICY_DENIED: &str = "POLICY_DENIED";
    pub const APPROVAL_REQUIRED: &str = "APPROVAL_REQUIRED";
    pub const TASK_STATE: &str = "TASK_STATE_INVALID";
    pub const TOOL_EXECUTION_FAILED: &str = "TOOL_EXECUTION_FAILED";
    pub const TOOL_TIMEOUT: &str = "TOOL_TIMEOUT";
    pub const INVALID_OUTPUT: &str = "INVALID_OUTPUT";
    pub const SANDBOX_UNAVAILABLE: &str = "SUBPROCESS_SANDBOX_UNAVAILABLE";
    pub const SPEC_TAMPERED: &str = "SPEC_TAMPERED";
    pub const RECORD_FAILED: &str = "EVIDENCE_WRITE_FAILED";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shape_matches_the_contract() {
        let out = ToolOutput::fail("SCOPE_DENIED", "no").with_details(json!({"path": "x"}));
        assert_eq!(
            serde_json::to_value(&out).expect("ser"),
            json!({"success": false, "error": {"code": "SCOPE_DENIED", "message": "no", "details": {"path": "x"}}})
        );
        let parsed: ToolOutput =
            serde_json::from_value(json!({"success": true, "data": {"a": 1}, "metadata": {"artifacts_written": ["r.md", 3]}}))
                .expect("parse");
        assert_eq!(parsed.artifacts_written(), vec!["r.md".to_string()]);
        assert!(serde_json::from_value::<ToolOutput>(json!({"data": 1})).is_err());
    }
}
