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
    pub bundle_id: String,
    /// `created_at` in Unix milliseconds.
    pub created_at_ms: i64,
}

/// How far a receipt's `created_at` may lie ahead of the control plane's clock: the two
/// machines' clocks differ a little, a receipt made after its seal does not exist.
pub const CREATED_AT_SKEW_MS: i64 = 5 * 60 * 1000;

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
    let (workspace_id, run_id, artifacts, signer_key_id, bundle_id, created_at) =
        if kind == TENANT_PROOF_BUNDLE_RECEIPT_KIND {
            let r: TenantProofBundle = serde_json::from_value(value).map_err(shape)?;
            (
                r.workspace_id,
                r.run_id,
                Vec::new(),
                None,
                r.bundle_id,
                r.created_at,
            )
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
                r.bundle_id,
                r.created_at,
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
        bundle_id,
        created_at_ms: created_at.unix_millis(),
    })
}

/// A trusted-compute bundle receipt against its run (walk-G N2): the bundle it describes is
/// the run's (`bundle_id` is the run id, as `lumenflow demo trusted-compute` writes it), and
/// `created_at` lies neither after the seal (beyond [`CREATED_AT_SKEW_MS`]) nor before the
/// run's first event (`first_event_ms`, when the control plane holds any).
pub fn check_run_bounds(
    checked: &CheckedReceipt,
    now_ms: i64,
    first_event_ms: Option<i64>,
) -> CloudResult<()> {
    let run = checked.run_id.as_deref().unwrap_or_default();
    if checked.bundle_id != run {
        let shown = checked.bundle_id.chars().take(100).collect::<String>();
        return Err(bad(format!(
            "`bundle_id` is `{shown}`; a `{TRUSTED_COMPUTE_BUNDLE_RECEIPT_KIND}` receipt \
             describes its run's bundle, so expected `bundle_id` = `run_id` `{run}`"
        )));
    }
    if checked.created_at_ms > now_ms.saturating_add(CREATED_AT_SKEW_MS) {
        return Err(bad(format!(
            "`created_at` is {} s after this control plane's clock; expected a time no later \
             than now (plus {} s of clock skew)",
            (checked.created_at_ms - now_ms) / 1000,
            CREATED_AT_SKEW_MS / 1000
        )));
    }
    if let Some(first) = first_event_ms.filter(|first| checked.created_at_ms < *first) {
        return Err(bad(format!(
            "`created_at` is {} s before the first event of run `{run}`; expected a time after \
             the run started",
            (first - checked.created_at_ms) / 1000
        )));
    }
    Ok(())
}

/// A trusted-compute bundle receipt against the bundle stored for its run: every artifact it
/// names must be a file of that bundle with that digest, and its signer the bundle's. A
/// mismatch is a `409 CONFLICT` naming the artifact (the stored evidence wins).
pub fn match_bundle(checked: &CheckedReceipt, bundle: &BundleRow) -> CloudResult<()> {
    use base64::Engine as _;
    use std::collections::BTreeSet;
    let run = &bundle.run_id;
    // Each artifact once and none left out (walk-G N2): a seal over a subset or a repeated
    // record would vouch for "the bundle" while naming only part of it.
    let mut seen = BTreeSet::new();
    for (name, _) in &checked.artifacts {
        if !seen.insert(name.as_str()) {
            let shown = name.chars().take(100).collect::<String>();
            return Err(CloudError::Conflict(format!(
                "{ROUTE}: `records` names artifact `{shown}` more than once; expected each \
                 artifact of the bundle stored for run `{run}` exactly once"
            )));
        }
    }
    let listed = bundle_artifacts(bundle)?;
    let missing: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|name| !seen.contains(name))
        .collect();
    if !missing.is_empty() {
        return Err(CloudError::Conflict(format!(
            "{ROUTE}: `records` leaves out artifact(s) {} of the bundle stored for run `{run}`; \
             expected every artifact its manifest lists, each once",
            missing
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
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

/// The artifact names the stored bundle's `manifest.json` lists (its `artifact_hashes`). A
/// stored bundle without a readable manifest has nothing a receipt could match: 409.
fn bundle_artifacts(bundle: &BundleRow) -> CloudResult<Vec<String>> {
    use base64::Engine as _;
    let run = &bundle.run_id;
    let unreadable = |why: String| {
        CloudError::Conflict(format!(
            "{ROUTE}: the bundle stored for run `{run}` has no readable `manifest.json` \
             ({why}), so no receipt can match it"
        ))
    };
    let encoded = bundle
        .files
        .get("manifest.json")
        .ok_or_else(|| unreadable("no such file".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| unreadable(e.to_string()))?;
    let manifest: Value = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    let hashes = manifest
        .get("artifact_hashes")
        .and_then(Value::as_object)
        .ok_or_else(|| unreadable("no `artifact_hashes` object".into()))?;
    Ok(hashes.keys().cloned().collect())
}
