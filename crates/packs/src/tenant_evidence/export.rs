//! `proof:export_attested_bundle` (TEV-02 to TEV-07, Q23, Q25): serializes an **unsealed**
//! CanonicalReceipt of a tenant's proof bundle to
//! `.lumenflow/state/campus/evidence/exports/<bundle_id>.json`.
//!
//! Two locks, both required (refuse over fallback, GOV-03):
//!
//! 1. the kernel's approval step: the manifest declares `required_approvals:
//!    [tenant-evidence:export]`, so the dispatch path runs the tool only with a durable grant
//!    bound to this tool and this exact input (single use);
//! 2. the caller's own statement (TEV-04): `input.approvals` must name `tenant-evidence:export`,
//!    as a string or as an object `{approval_id | id, type?, status: "approved"}`. Without it the
//!    call fails with `APPROVAL_REQUIRED` and nothing is written.
//!
//! Input: `{tenant_id, bundle_id, records: [{record_kind, record_id}], approvals}`. Every record
//! must exist, belong to the tenant and be well formed, or the export is refused as a whole; an
//! existing bundle is never overwritten (`BUNDLE_EXISTS`). The receipt carries no seal or
//! signature: the control plane seals it (`POST /api/v1/receipts/seal`).

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use lumenflow_contracts::payloads::RecordKind;
use lumenflow_contracts::receipt::{CanonicalReceipt, ReceiptContent, ReceiptRecord};
use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::{codes, ToolOutput};
use lumenflow_contracts::tools::TENANT_EVIDENCE_EXPORT_APPROVAL_ID;
use lumenflow_kernel::dispatch::BuiltinCall;
use serde_json::{json, Map, Value};

use super::records::{load_record, record_path};
use super::{errors, fail, require, safe_id, ToolResult, EXPORTS_ROOT, PROOF_BUNDLE_EXPORTED};

/// The input keys the export accepts.
const INPUT_KEYS: &[&str] = &["tenant_id", "bundle_id", "records", "approvals"];

/// Workspace-relative path of an exported receipt.
pub fn export_path(bundle_id: &str) -> String {
    format!("{EXPORTS_ROOT}/{bundle_id}.json")
}

/// Does `input.approvals` name [`TENANT_EVIDENCE_EXPORT_APPROVAL_ID`] (Q23)? A string item must
/// equal it; an object item must name it in `approval_id` (or `id`) and have status `approved`.
pub fn check_input_approvals(input: &Value) -> ToolResult<()> {
    let wanted = TENANT_EVIDENCE_EXPORT_APPROVAL_ID;
    let missing = |detail: &str| {
        fail(
            codes::APPROVAL_REQUIRED,
            format!(
                "the export needs the `{wanted}` approval in `input.approvals` (TEV-04): {detail}"
            ),
        )
    };
    let items = match input.get("approvals") {
        None | Some(Value::Null) => return Err(missing("`approvals` is absent")),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(fail(
                codes::INVALID_INPUT,
                "input `approvals` must be an array of approval ids or approval objects",
            ))
        }
    };
    let mut seen_unapproved = None;
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(id) if id == wanted => return Ok(()),
            Value::String(_) => {}
            Value::Object(o) => {
                let id = o
                    .get("approval_id")
                    .or_else(|| o.get("id"))
                    .and_then(Value::as_str);
                if id == Some(wanted) {
                    match o.get("status").and_then(Value::as_str) {
                        Some("approved") => return Ok(()),
                        status => {
                            seen_unapproved = Some(format!(
                                "`approvals[{i}]` names it with status `{}`, not `approved`",
                                status.unwrap_or("(none)")
                            ))
                        }
                    }
                }
            }
            _ => {
                return Err(fail(
                    codes::INVALID_INPUT,
                    format!("input `approvals[{i}]` must be a string or an object"),
                ))
            }
        }
    }
    Err(missing(
        seen_unapproved.as_deref().unwrap_or("no item names it"),
    ))
}

/// The records an export covers, parsed from `input.records`, without duplicates.
fn parse_records(input: &Value) -> ToolResult<Vec<(RecordKind, String)>> {
    let items = input
        .get("records")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            fail(
                codes::INVALID_INPUT,
                "input `records` must be a non-empty array of {record_kind, record_id}",
            )
        })?;
    let mut out = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("record_kind")
            .and_then(Value::as_str)
            .and_then(RecordKind::from_wire)
            .ok_or_else(|| {
                fail(
                    codes::INVALID_INPUT,
                    format!(
                        "input `records[{i}].record_kind` must be one of checkpoint, gate, \
                         approval, attestation"
                    ),
                )
            })?;
        let id = item
            .get("record_id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                fail(
                    codes::INVALID_INPUT,
                    format!("input `records[{i}].record_id` must be a string"),
                )
            })?;
        safe_id(&format!("records[{i}].record_id"), id)?;
        if !seen.insert((kind, id.to_string())) {
            return Err(fail(
                codes::INVALID_INPUT,
                format!("input `records[{i}]`: the {kind} record `{id}` is listed twice"),
            ));
        }
        out.push((kind, id.to_string()));
    }
    Ok(out)
}

/// The receipt of a bundle: every record loaded and checked, nothing written.
pub fn build_receipt(
    workspace_dir: &Path,
    workspace_id: &str,
    tenant_id: &str,
    bundle_id: &str,
    records: &[(RecordKind, String)],
    created_at: Timestamp,
) -> ToolResult<CanonicalReceipt> {
    safe_id("tenant_id", tenant_id)?;
    safe_id("bundle_id", bundle_id)?;
    let mut refs = Vec::with_capacity(records.len());
    for (kind, id) in records {
        let loaded = load_record(workspace_dir, *kind, tenant_id, id)?;
        refs.push(ReceiptRecord {
            record_kind: *kind,
            record_id: id.clone(),
            content_digest: loaded.content_digest,
        });
    }
    Ok(CanonicalReceipt::new(ReceiptContent {
        workspace_id: workspace_id.to_string(),
        tenant_id: tenant_id.to_string(),
        bundle_id: bundle_id.to_string(),
        created_at,
        approval_id: TENANT_EVIDENCE_EXPORT_APPROVAL_ID.to_string(),
        records: refs,
    }))
}

/// Writes `bytes` to `path` without ever replacing an existing file: a temp file, fsync, then a
/// hard link to the final name (which fails if it exists), then the temp file is removed.
fn write_new(path: &Path, bytes: &[u8]) -> ToolResult<()> {
    let dir = path
        .parent()
        .ok_or_else(|| fail(errors::STATE_IO, "an export needs a parent folder"))?;
    let io_fail = |e: std::io::Error| {
        fail(
            errors::STATE_IO,
            format!("cannot write `{}`: {e}", path.display()),
        )
    };
    fs::create_dir_all(dir).map_err(io_fail)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A temporary name of its own per write: two exports at once never share one.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(fail(
            errors::BUNDLE_EXISTS,
            format!(
                "`{}` already exists; a bundle is never overwritten",
                path.display()
            ),
        )),
        Err(e) => Err(io_fail(e)),
    }
}

/// `proof:export_attested_bundle`.
pub fn export_attested_bundle(call: &BuiltinCall<'_>) -> ToolOutput {
    match export_inner(call) {
        Ok(v) => ToolOutput::ok(v),
        Err(out) => *out,
    }
}

fn export_inner(call: &BuiltinCall<'_>) -> ToolResult<Value> {
    let input = call.input();
    let Some(obj) = input.as_object() else {
        return Err(fail(codes::INVALID_INPUT, "the input must be an object"));
    };
    if let Some(extra) = obj.keys().find(|k| !INPUT_KEYS.contains(&k.as_str())) {
        return Err(fail(
            codes::INVALID_INPUT,
            format!("input `{extra}` is not a field of the export"),
        ));
    }
    // TEV-04 first: without the operator's approval nothing else is even looked at.
    check_input_approvals(input)?;
    let str_field = |name: &str| -> ToolResult<&str> {
        obj.get(name).and_then(Value::as_str).ok_or_else(|| {
            fail(
                codes::INVALID_INPUT,
                format!("input `{name}` must be a string"),
            )
        })
    };
    let tenant_id = str_field("tenant_id")?;
    let bundle_id = str_field("bundle_id")?;
    safe_id("tenant_id", tenant_id)?;
    safe_id("bundle_id", bundle_id)?;
    let records = parse_records(input)?;
    for (kind, id) in &records {
        require(call, &record_path(*kind, id), PathAccess::Read)?;
    }
    let rel = export_path(bundle_id);
    require(call, &rel, PathAccess::Write)?;
    let ws = call.workspace_dir();
    let full = ws.join(&rel);
    if full.exists() {
        return Err(fail(
            errors::BUNDLE_EXISTS,
            format!("`{rel}` already exists; a bundle is never overwritten"),
        ));
    }
    let workspace_id = lumenflow_kernel::workspace::read_workspace(ws)
        .map(|doc| doc.spec.id)
        .map_err(|d| {
            fail(
                errors::STATE_IO,
                format!("cannot read the workspace id from workspace.yaml: {d:?}"),
            )
        })?;
    let receipt = build_receipt(
        ws,
        &workspace_id,
        tenant_id,
        bundle_id,
        &records,
        Timestamp::now(),
    )?;
    let value = receipt.to_value();
    let mut bytes = serde_json::to_vec_pretty(&value)
        .map_err(|e| fail(errors::STATE_IO, format!("cannot encode the receipt: {e}")))?;
    bytes.push(b'\n');
    write_new(&full, &bytes)?;
    let mut payload = Map::new();
    payload.insert("bundle_id".into(), json!(bundle_id));
    payload.insert(
        "content_digest".into(),
        json!(receipt.content_digest.to_string()),
    );
    payload.insert(
        "approval_id".into(),
        json!(TENANT_EVIDENCE_EXPORT_APPROVAL_ID),
    );
    if let Err(e) = super::emit(call, PROOF_BUNDLE_EXPORTED, payload) {
        // Nothing half-done: without its event the export did not happen.
        let _ = fs::remove_file(&full);
        return Err(e);
    }
    Ok(json!({
        "bundle_id": bundle_id,
        "path": rel,
        "content_digest": receipt.content_digest.to_string(),
        "receipt": value,
    }))
}
