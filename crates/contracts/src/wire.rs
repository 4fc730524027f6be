//! The HTTP shapes the sidecar and the control plane exchange (Q1, Q15 to Q17, Q19, and the
//! original's v1 API in `original/control-plane.md` §2). Both sides deserialize with these types,
//! so a field renamed here is renamed on both ends at once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Control-plane paths (the original's v1 API plus ours).
pub mod paths {
    pub const EVENTS: &str = "/api/v1/events";
    pub const ENROLL: &str = "/api/v1/enroll";
    pub const REVOCATIONS: &str = "/api/v1/revocations";
    pub const APPROVALS_REQUEST: &str = "/api/v1/approvals/request";
    pub const APPROVALS_RESOLVE: &str = "/api/v1/approvals/resolve";
    pub const APPROVALS_LIST: &str = "/api/v1/approvals/list";
    pub const RECEIPTS_SEAL: &str = "/api/v1/receipts/seal";
    pub const POLICIES: &str = "/api/v1/policies";
    pub const CONFIG: &str = "/api/v1/config";
    pub const HEARTBEAT: &str = "/api/v1/heartbeat";
    pub const TELEMETRY: &str = "/api/v1/telemetry";
    pub const EVIDENCE: &str = "/api/v1/evidence";
    pub const AUTHENTICATE: &str = "/api/v1/authenticate";
}

/// Every error body of the sidecar and the control plane: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: ApiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            error: ApiErrorBody {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// `POST /api/v1/events` (Q1): v1 and v2 events in one body, told apart by `schema_version`.
/// Events stay raw JSON here: the receiver validates each one and names the index of a bad one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    pub workspace_id: String,
    pub events: Vec<Value>,
}

/// The answer to a push: `accepted` counts every event of the batch that is now durably stored,
/// re-sent duplicates included (Q19: the sender deletes its outbox files only when `accepted`
/// covers them); `duplicates` says how many were already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub accepted: u64,
    #[serde(default)]
    pub duplicates: u64,
}

/// `GET /tools` (Q17).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolListing {
    pub tools: Vec<ToolDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDescriptor {
    pub name: String,
    pub pack_id: String,
    pub pack_version: String,
    pub description: String,
    pub permission: String,
    pub required_scopes: Vec<crate::scope::ToolScope>,
    pub token_scope: String,
    pub required_approvals: Vec<String>,
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// `allow` or `approval_required`.
    pub decision: String,
}

/// `POST /api/v1/enroll`: a one-time code exchanged for an [`Enrollment`](crate::identity::Enrollment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub code: String,
    /// Where the control plane reaches this workspace's sidecar (registry refresh and invoke).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_url: Option<String>,
    /// The workspace the caller expects the code to enroll. When given, a code for another
    /// workspace is refused without being used up (optional: the original's clients omit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}

/// `GET /api/v1/revocations?workspace_id=..`: the `jti`s of revoked tokens the sidecar refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    pub workspace_id: String,
    pub revoked_jtis: Vec<String>,
    pub generated_at: String,
}

/// The original's approval record (`control-plane-sdk`), `status` one of `pending`, `approved`,
/// `rejected`, `expired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub approval_id: String,
    pub workspace_id: String,
    #[serde(rename = "type")]
    pub approval_type: String,
    pub status: String,
    pub subject: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    pub requested_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequestInput {
    pub workspace_id: String,
    #[serde(rename = "type")]
    pub approval_type: String,
    /// For a tool call: `{tool, input_hash, required_approvals}` (the grant is bound to both).
    pub subject: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalResolveInput {
    pub workspace_id: String,
    pub approval_id: String,
    /// `approved`, `rejected` or `expired`.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalListInput {
    pub workspace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub approval_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalList {
    pub approvals: Vec<ApprovalRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
