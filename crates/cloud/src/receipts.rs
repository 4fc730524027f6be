//! The receipts `POST /api/v1/receipts/seal` accepts, parsed strictly before anything is signed
//! (walk-G F2, TEV-05 to TEV-07, Q25).
//!
//! The seal is the control plane's word that it saw this receipt for this workspace, so it never
//! signs an arbitrary object: the body must be one of the known receipt kinds of schema version 1,
//! with every required field, no unknown field, typed digests and RFC 3339 timestamps. The
//! refusal names the field. The workspace is `workspace_id` only: `tenant_id` is the customer
//! whose evidence a bundle holds, never the workspace a token is checked against (walk-G F12).

use lumenflow_contracts::digest::Sha256Digest;
use lumenflow_contracts::receipt::{
    ReceiptRecord, CANONICAL_RECEIPT_SCHEMA_VERSION, TENANT_PROOF_BUNDLE_RECEIPT_KIND,
};
use lumenflow_contracts::time::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{CloudError, CloudResult};
use crate::store::bundles::BundleRow;

/// `receipt_kind` of a trusted-compute bundle's receipt (`lumenflow trusted-compute`).
pub const TRUSTED_COMPUTE_BUNDLE_RECEIPT_KIND: &str = "trusted_compute_bundle";

/// A tenant's proof bundle receipt: the contracts' `CanonicalReceipt`, plus the optional
/// `run_id` that places it in a run's replay.
#[allow(dead_code)] // Parsed for validation; the fields document the accepted shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantProofBundle {
    schema_version: u32,
    receipt_kind: String,
    workspace_id: String,
    tenant_id: String,
    bundle_id: String,
    created_at: Timestamp,
    approval_id: String,
    records: Vec<ReceiptRecord>,
    content_digest: Sha256Digest,
    #[serde(default)]
    run_id: Option<String>,
}

/// One artifact of a trusted-compute bundle (`record_kind` is always `artifact`).
#[allow(dead_code)] // Parsed for validation; the fields document the accepted shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactRecord {
    record_kind: ArtifactKind,
    record_id: String,
    content_digest: Sha256Digest,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ArtifactKind {
    Artifact,
}

/// A trusted-compute bundle's receipt: every artifact by name and digest, bound to its run.
#[allow(dead_code)] // Parsed for validation; the fields document the accepted shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedComputeBundle {
    schema_version: u32,
    receipt_kind: String,
    workspace_id: String,
    run_id: String,
    bundle_id: String,
    created_at: Timestamp,
    signer_key_id: String,
    records: Vec<ArtifactRecord>,
    content_digest: Sha256Digest,
}

/// What the sealer needs from a checked receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedReceipt {
    pub kind: &'static str,
    pub workspace_id: String,
    pub run_id: Option<String>,
    /// A trusted-compute bundle receipt's artifacts: `(record_id, content_digest)`, in order.
    pub artifacts: Vec<(String, String)>,
    /// A trusted-compute bundle receipt's `signer_key_id`.
    pub signer_key_id: Option<String>,
}

const ROUTE: &str = "POST /api/v1/receipts/seal";

fn bad(message: String) -> CloudError {
    CloudError::BadRequest(format!("{ROUTE}: {message}"))
}

/// Check `receipt` strictly; the error names the field and what was expected.
pub fn check(receipt: &Map<String, Value>) -> CloudResult<CheckedReceipt> {
    match receipt.get("schema_version") {
        Some(Value::Number(n))
            if n.as_u64() == Some(u64::from(CANONICAL_RECEIPT_SCHEMA_VERSION)) => {}
        Some(other) => {
            return Err(bad(format!(
                "`schema_version` is {other}; this control plane seals version \
                 {CANONICAL_RECEIPT_SCHEMA_VERSION}"
            )))
        }
        None => return Err(bad("the receipt has no `schema_version`".into())),
    }
    let kind = match receipt.get("receipt_kind").and_then(Value::as_str) {
        Some(TENANT_PROOF_BUNDLE_RECEIPT_KIND) => TENANT_PROOF_BUNDLE_RECEIPT_KIND,
        Some(TRUSTED_COMPUTE_BUNDLE_RECEIPT_KIND) => TRUSTED_COMPUTE_BUNDLE_RECEIPT_KIND,
        Some(other) => {
            return Err(bad(format!(
                "`receipt_kind` `{other}` is unknown; expected \
                 `{TENANT_PROOF_BUNDLE_RECEIPT_KIND}` or `{TRUSTED_COMPUTE_BUNDLE_RECEIPT_KIND}`"
            )))
        }
        None => return Err(bad("the receipt has no string `receipt_kind`".into())),
    };
    // serde's message for a bad value does not say which field held it; the timestamp is
    // checked alone so the refusal names it.
    if let Some(at) = receipt.get("created_at") {
        serde_json::from_value::<Timestamp>(at.clone())
            .map_err(|e| bad(format!("`created_at`: {e}")))?;
    }
    let value = Value::Object(receipt.clone());
    let shape = |e: serde_json::Error| bad(format!("not a valid `{kind}` receipt: {e}"));
    let (workspace_id, run_id, artifacts, signer_key_id) =
        if kind == TENANT_PROOF_BUNDLE_RECEIPT_KIND {
            let r: TenantProofBundle = serde_json::from_value(value).map_err(shape)?;
            (r.workspace_id, r.run_id, Vec::new(), None)
        } else {
            let r: TrustedComputeBundle = serde_json::from_value(value).map_err(shape)?;
            let artifacts = r
                .records
                .into_iter()
                .map(|a| (a.record_id, a.content_digest.to_string()))
                .collect();
            (
                r.workspace_id,
                Some(r.run_id),
                artifacts,
                Some(r.signer_key_id),
            )
        };
    for (field, v) in [
        ("workspace_id", Some(&workspace_id)),
        ("run_id", run_id.as_ref()),
    ] {
        if v.is_some_and(|s| s.trim().is_empty()) {
            return Err(bad(format!("`{field}` is empty")));
        }
    }
    Ok(CheckedReceipt {
        kind,
        workspace_id,
        run_id,
        artifacts,
        signer_key_id,
    })
}

/// A trusted-compute bundle receipt against the bundle stored for its run: every artifact it
/// names must be a file of that bundle with that digest, and its signer the bundle's. A
/// mismatch is a `409 CONFLICT` naming the artifact (the stored evidence wins).
pub fn match_bundle(checked: &CheckedReceipt, bundle: &BundleRow) -> CloudResult<()> {
    use base64::Engine as _;
    let run = &bundle.run_id;
    for (name, claimed) in &checked.artifacts {
        let shown = name.chars().take(100).collect::<String>();
        let encoded = bundle.files.get(name).ok_or_else(|| {
            CloudError::Conflict(format!(
                "{ROUTE}: artifact `{shown}` of the receipt is not a file of the bundle stored \
                 for run `{run}`"
            ))
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| {
                CloudError::Storage(format!(
                    "stored file `{name}` of run `{run}` is not base64: {e}"
                ))
            })?;
        let actual = format!("sha256:{}", lumenflow_contracts::digest::sha256_hex(&bytes));
        if &actual != claimed {
            return Err(CloudError::Conflict(format!(
                "{ROUTE}: artifact `{shown}` is `{claimed}` in the receipt but `{actual}` in the \
                 bundle stored for run `{run}`"
            )));
        }
    }
    if let (Some(claimed), Some(stored)) = (&checked.signer_key_id, &bundle.signer_key_id) {
        if claimed != stored {
            return Err(CloudError::Conflict(format!(
                "{ROUTE}: `signer_key_id` is `{claimed}` in the receipt but the bundle stored for \
                 run `{run}` is signed by `{stored}`"
            )));
        }
    }
    Ok(())
}
