//! The four `proof:*_record` read tools (TEV-01) and the record files they read.
//!
//! A record is one JSON file, `.lumenflow/state/campus/evidence/<folder>/<record_id>.json`, with
//! `<folder>` one of `checkpoints`, `gates`, `approvals`, `attestations`. Whoever produces the
//! evidence writes these files (the campus pack does not); this pack only reads them. Shape
//! (strict: an unknown key is refused):
//!
//! ```json
//! {
//!   "record_id": "cp-1",                      // = the file name without `.json`
//!   "record_kind": "checkpoint",              // = the folder's kind
//!   "tenant_id": "tenant-a",
//!   "recorded_at": "2026-11-21T08:00:00.000Z",
//!   "summary": "optional, one line",
//!   "data": {}                                // any JSON object: the evidence itself
//! }
//! ```
//!
//! A read returns the record with its `content_digest` (`sha256:` of the canonical JSON of the
//! whole file), the reference an exported receipt carries. A record of another tenant is
//! reported as not found: a tenant cannot probe another tenant's evidence by id.

use std::fs;
use std::path::Path;

use lumenflow_contracts::canonical_json::to_canonical_string;
use lumenflow_contracts::digest::Sha256Digest;
use lumenflow_contracts::payloads::RecordKind;
use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::dispatch::BuiltinCall;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{errors, fail, require, safe_id, ToolResult, EVIDENCE_ROOT, PROOF_RECORD_READ};

/// The folder of a record kind under [`EVIDENCE_ROOT`].
pub fn folder(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Checkpoint => "checkpoints",
        RecordKind::Gate => "gates",
        RecordKind::Approval => "approvals",
        RecordKind::Attestation => "attestations",
    }
}

/// Workspace-relative path of a record file.
pub fn record_path(kind: RecordKind, record_id: &str) -> String {
    format!("{EVIDENCE_ROOT}/{}/{record_id}.json", folder(kind))
}

/// One evidence record file, as documented in the module page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    pub record_id: String,
    pub record_kind: RecordKind,
    pub tenant_id: String,
    pub recorded_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    pub data: Map<String, Value>,
}

/// A record read from disk, with the digest of its content.
#[derive(Debug, Clone)]
pub struct LoadedRecord {
    pub record: EvidenceRecord,
    pub value: Value,
    pub content_digest: Sha256Digest,
}

/// Reads and checks the `kind` record `record_id` of `tenant_id`. Does not check scopes (the
/// tools do, with [`require`]); refuses ids that are not a plain file name and files that
/// resolve outside the workspace.
pub fn load_record(
    workspace_dir: &Path,
    kind: RecordKind,
    tenant_id: &str,
    record_id: &str,
) -> ToolResult<LoadedRecord> {
    safe_id("record_id", record_id)?;
    safe_id("tenant_id", tenant_id)?;
    let rel = record_path(kind, record_id);
    let not_found = || {
        fail(
            errors::RECORD_NOT_FOUND,
            format!("no {kind} record `{record_id}` of tenant `{tenant_id}` (looked at `{rel}`)"),
        )
    };
    let full = workspace_dir.join(&rel);
    let ws = workspace_dir.canonicalize().map_err(|e| {
        fail(
            errors::STATE_IO,
            format!("cannot resolve the workspace folder: {e}"),
        )
    })?;
    match full.canonicalize() {
        Ok(resolved) if resolved.starts_with(&ws) => {}
        Ok(_) => {
            return Err(fail(
                lumenflow_contracts::tool_output::codes::SCOPE_DENIED,
                format!("`{rel}` resolves outside the workspace (through a symlink)"),
            ))
        }
        Err(_) => return Err(not_found()),
    }
    let bytes = match fs::read(&full) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(fail(errors::STATE_IO, format!("cannot read `{rel}`: {e}"))),
    };
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| fail(errors::RECORD_INVALID, format!("`{rel}` is not JSON: {e}")))?;
    let record: EvidenceRecord = serde_json::from_value(value.clone()).map_err(|e| {
        fail(
            errors::RECORD_INVALID,
            format!("`{rel}` is not an evidence record: {e}"),
        )
    })?;
    if record.record_id != record_id {
        return Err(fail(
            errors::RECORD_INVALID,
            format!(
                "`{rel}`: `record_id` is `{}` but the file is named for `{record_id}`",
                record.record_id
            ),
        ));
    }
    if record.record_kind != kind {
        return Err(fail(
            errors::RECORD_INVALID,
            format!(
                "`{rel}`: `record_kind` is `{}` but the file is in the {kind} folder",
                record.record_kind
            ),
        ));
    }
    if record.tenant_id != tenant_id {
        return Err(not_found());
    }
    let content_digest = Sha256Digest::of(to_canonical_string(&value).as_bytes());
    Ok(LoadedRecord {
        record,
        value,
        content_digest,
    })
}

fn read_tool(call: &BuiltinCall<'_>, kind: RecordKind) -> ToolOutput {
    match read_inner(call, kind) {
        Ok(v) => ToolOutput::ok(v),
        Err(out) => *out,
    }
}

fn read_inner(call: &BuiltinCall<'_>, kind: RecordKind) -> ToolResult<Value> {
    let input = call.input();
    let field = |name: &str| -> ToolResult<String> {
        input
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                fail(
                    lumenflow_contracts::tool_output::codes::INVALID_INPUT,
                    format!("input `{name}` must be a string"),
                )
            })
    };
    let tenant_id = field("tenant_id")?;
    let record_id = field("record_id")?;
    safe_id("record_id", &record_id)?;
    require(call, &record_path(kind, &record_id), PathAccess::Read)?;
    let loaded = load_record(call.workspace_dir(), kind, &tenant_id, &record_id)?;
    let mut payload = Map::new();
    payload.insert("record_kind".into(), json!(kind.as_str()));
    payload.insert("record_id".into(), json!(record_id));
    super::emit(call, PROOF_RECORD_READ, payload)?;
    Ok(json!({
        "record_kind": kind.as_str(),
        "record_id": loaded.record.record_id,
        "tenant_id": loaded.record.tenant_id,
        "recorded_at": loaded.record.recorded_at.to_rfc3339(),
        "content_digest": loaded.content_digest.to_string(),
        "record": loaded.value,
    }))
}

/// `proof:checkpoint_record`.
pub fn checkpoint_record(call: &BuiltinCall<'_>) -> ToolOutput {
    read_tool(call, RecordKind::Checkpoint)
}

/// `proof:gate_record`.
pub fn gate_record(call: &BuiltinCall<'_>) -> ToolOutput {
    read_tool(call, RecordKind::Gate)
}

/// `proof:approval_record`.
pub fn approval_record(call: &BuiltinCall<'_>) -> ToolOutput {
    read_tool(call, RecordKind::Approval)
}

/// `proof:attestation_record`.
pub fn attestation_record(call: &BuiltinCall<'_>) -> ToolOutput {
    read_tool(call, RecordKind::Attestation)
}
