//! `tenant-evidence`: a tenant's proof records, read-only, and the approval-gated export of an
//! unsealed CanonicalReceipt of a proof bundle (MD2, TEV-01 to TEV-08, Q23 to Q25).
//!
//! | tool | does | module |
//! |---|---|---|
//! | `proof:checkpoint_record`, `proof:gate_record`, `proof:approval_record`, `proof:attestation_record` | one record of a tenant with its `content_digest`; read scope `.lumenflow/state/campus/evidence/**` | [`records`] |
//! | `proof:export_attested_bundle` | writes `exports/<bundle_id>.json`, a CanonicalReceipt with no seal; needs a durable `tenant-evidence:export` grant **and** the approval in `input.approvals` | [`export`] |
//!
//! Governance (GOV-01 to GOV-03): the pack reads evidence and serializes a receipt; it never
//! actuates a device and never seals (the control plane does, `POST /api/v1/receipts/seal`).
//! Its only write scope is the exports subtree. No vendor is named in its types or values.
//!
//! The tool contracts it must honour are `lumenflow_contracts::tools::TENANT_EVIDENCE_TOOL_CONTRACTS`;
//! `tests/tenant_evidence.rs` checks the manifest against them.

pub mod export;
pub mod records;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use lumenflow_contracts::event::BuildOptions;
use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::tool_output::{codes, ToolOutput};
use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::dispatch::{BuiltinCall, BuiltinFn};
use lumenflow_kernel::events::host::PackRegistration;
use lumenflow_kernel::loader::read_embedded_manifest;
use lumenflow_kernel::manifest::PackManifest;
use serde_json::{Map, Value};

/// The pack id, which is also its slug (its event namespace).
pub const ID: &str = "tenant-evidence";

/// Where evidence records live, one folder per record kind.
pub const EVIDENCE_ROOT: &str = ".lumenflow/state/campus/evidence";
/// Where exported receipts are written.
pub const EXPORTS_ROOT: &str = ".lumenflow/state/campus/evidence/exports";

pub const PROOF_RECORD_READ: &str = "tenant-evidence:proof_record_read";
pub const PROOF_BUNDLE_EXPORTED: &str = "tenant-evidence:proof_bundle_exported";

pub const CHECKPOINT_RECORD: &str = "proof:checkpoint_record";
pub const GATE_RECORD: &str = "proof:gate_record";
pub const APPROVAL_RECORD: &str = "proof:approval_record";
pub const ATTESTATION_RECORD: &str = "proof:attestation_record";
pub const EXPORT_ATTESTED_BUNDLE: &str = "proof:export_attested_bundle";

/// Error codes of this pack's tools (besides the dispatch codes of
/// `lumenflow_contracts::tool_output::codes`).
pub mod errors {
    pub const RECORD_NOT_FOUND: &str = "RECORD_NOT_FOUND";
    pub const RECORD_INVALID: &str = "RECORD_INVALID";
    pub const BUNDLE_EXISTS: &str = "BUNDLE_EXISTS";
    pub const STATE_IO: &str = "STATE_IO_FAILED";
    pub const EVENT_EMIT_FAILED: &str = "EVENT_EMIT_FAILED";
}

/// The pack folder, embedded: the manifest and every source file, so the integrity hash
/// changes whenever the code does. A test checks this list against the folder on disk.
pub const PACK: EmbeddedPack = EmbeddedPack {
    id: ID,
    files: &[
        ("export.rs", include_bytes!("export.rs")),
        ("manifest.yaml", include_bytes!("manifest.yaml")),
        ("mod.rs", include_bytes!("mod.rs")),
        ("records.rs", include_bytes!("records.rs")),
    ],
};

static MANIFEST: LazyLock<PackManifest> = LazyLock::new(|| match read_embedded_manifest(&PACK) {
    Ok(doc) => doc.manifest,
    // Unreachable in a tested build: `tests/tenant_evidence.rs` parses and validates this file.
    Err(diagnostics) => {
        panic!("the embedded tenant-evidence manifest.yaml is invalid: {diagnostics:?}")
    }
});

/// The manifest, parsed from the embedded `manifest.yaml`.
pub fn manifest() -> PackManifest {
    MANIFEST.clone()
}

/// The pack as the event host registers it: it emits kinds and subscribes to none.
pub fn registration() -> PackRegistration {
    PackRegistration::new(manifest())
}

/// The Rust function behind each tool, by tool name.
pub fn tools() -> HashMap<String, BuiltinFn> {
    let entries: [(&str, BuiltinFn); 5] = [
        (CHECKPOINT_RECORD, Arc::new(records::checkpoint_record)),
        (GATE_RECORD, Arc::new(records::gate_record)),
        (APPROVAL_RECORD, Arc::new(records::approval_record)),
        (ATTESTATION_RECORD, Arc::new(records::attestation_record)),
        (
            EXPORT_ATTESTED_BUNDLE,
            Arc::new(export::export_attested_bundle),
        ),
    ];
    entries
        .into_iter()
        .map(|(name, f)| (name.to_string(), f))
        .collect()
}

pub(crate) type ToolResult<T> = Result<T, Box<ToolOutput>>;

pub(crate) fn fail(code: &str, message: impl Into<String>) -> Box<ToolOutput> {
    Box::new(ToolOutput::fail(code, message))
}

/// An id that is one plain file-name segment: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` and no `..`.
pub(crate) fn safe_id(field: &str, id: &str) -> ToolResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !id.contains("..");
    if ok {
        Ok(())
    } else {
        Err(fail(
            codes::INVALID_INPUT,
            format!(
                "input `{field}` = `{}` must be 1 to 128 letters, digits, `.`, `_` or `-`, \
                 starting with a letter or digit, without `..`",
                id.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// Refuse unless the call's effective scopes allow `access` to the workspace-relative `rel`.
pub(crate) fn require(call: &BuiltinCall<'_>, rel: &str, access: PathAccess) -> ToolResult<()> {
    if call.effective().allows_path(rel, access) {
        Ok(())
    } else {
        Err(fail(
            codes::SCOPE_DENIED,
            format!("`{rel}` is outside the effective {access} scopes of this call"),
        ))
    }
}

/// Emit one event of this pack; a failure fails the call (an export without its event did not
/// happen).
pub(crate) fn emit(
    call: &BuiltinCall<'_>,
    kind: &str,
    payload: Map<String, Value>,
) -> ToolResult<()> {
    call.emit(kind, payload, BuildOptions::default())
        .map(|_| ())
        .map_err(|e| {
            fail(
                errors::EVENT_EMIT_FAILED,
                format!("cannot emit `{kind}`: {e}"),
            )
        })
}
