//! Evidence bundles in the control plane: a workspace uploads the trusted-compute bundle of a
//! run (`PUT /api/v1/runs/{run_id}/bundle`), the control plane verifies it on arrival with the
//! same four checks as `lumenflow proof verify` and stores it with the verdict, and operators
//! download it from the console as a `.tar`.
//!
//! A bundle that fails verification is still stored, marked failed: an operator must be able to
//! see that a run's evidence did not verify, and which check failed. The signer's key comes with
//! the bundle, so a pass alone means only "intact and signed by the key it names".
//!
//! What ties that key to the workspace is a pin (walk-G F3): the first verified bundle of a
//! workspace pins its signer (trust on first use) unless an operator pinned one with `lumenflow
//! cloud signer pin`. A later bundle signed by another key is still stored and verified, but
//! flagged `signer_changed` with both key ids, in the upload's answer, the audit line and the
//! console, so a forger's self-signed bundle never reads as a plain "verified".

use std::collections::BTreeMap;
use std::path::Path;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::put;
use axum::Router;
use base64::Engine as _;
use lumenflow_contracts::canonical_json::to_canonical_string;
use lumenflow_contracts::digest::sha256_hex;
use lumenflow_contracts::identity::{check_id, Subject};
use lumenflow_proof::bundle;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Allow, Caller};
use crate::error::{CloudError, CloudResult};
use crate::server::{
    blocking, check_workspace_id, ok_json, parse_json, read_body, AppState, Audit, Shared,
};
use crate::store::bundles::BundleRow;
use crate::store::now_ms;

/// The most files a bundle may hold (it has twelve).
pub const MAX_BUNDLE_FILES: usize = 64;
/// The most bytes a bundle's files may hold together, decoded (the body limit bounds the base64).
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/api/v1/runs/{run_id}/bundle", put(upload))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadBody {
    /// The workspace the run belongs to (its token must be that workspace's).
    workspace_id: String,
    /// File name -> base64 (standard alphabet, padded) of its bytes.
    files: BTreeMap<String, String>,
}

/// The verifier's verdict on uploaded files.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    /// `[{name, passed, detail}]`, the four checks in order.
    pub checks: Value,
    pub signer_key_id: Option<String>,
    /// The run the manifest names, when it could be read.
    pub manifest_run_id: Option<String>,
}

async fn upload(
    State(state): State<Shared>,
    headers: HeaderMap,
    UrlPath(run_id): UrlPath<String>,
    body: Body,
) -> Response {
    let mut audit = Audit::new("bundles.upload");
    let result = upload_inner(&state, &mut audit, &headers, &run_id, body).await;
    state.finish_with(&headers, audit, result).await
}

async fn upload_inner(
    state: &AppState,
    audit: &mut Audit,
    headers: &HeaderMap,
    run_id: &str,
    body: Body,
) -> CloudResult<Response> {
    const WHAT: &str = "PUT /api/v1/runs/{run_id}/bundle";
    check_id(run_id)
        .map_err(|reason| CloudError::BadRequest(format!("the run id in the path: {reason}")))?;
    let bytes = read_body(body, WHAT).await?;
    let req: UploadBody = parse_json(&bytes, WHAT)?;
    check_workspace_id(&req.workspace_id, "workspace_id")?;
    let caller = state
        .authorize(audit, headers, Some(&req.workspace_id), Allow::Workspace)
        .await?;
    // The bundle is the workspace's own evidence: its workspace token uploads it, not a phone.
    let ws = match &caller {
        Caller::Workspace {
            subject: Subject::Workspace { workspace_id },
            ..
        } => workspace_id.clone(),
        _ => {
            return Err(CloudError::ScopeDenied(
                "a bundle is uploaded with its workspace's token".into(),
            ))
        }
    };
    audit.workspace(&ws);
    let files = decode_files(&req.files)?;
    check_named_workspace(&files, &ws)?;
    let total: usize = files.values().map(Vec::len).sum();
    let verdict = blocking(move || verify_files(&files)).await?;
    if let Some(named) = verdict
        .manifest_run_id
        .as_deref()
        .filter(|named| *named != run_id)
    {
        return Err(CloudError::BadRequest(format!(
            "the bundle's manifest is for run `{named}`, not `{run_id}`"
        )));
    }
    // The pin as it stands before this bundle; a verified bundle pins its signer when none is.
    let before = state.store.workspace_signer(&ws).await?;
    let pinned = match (&before, verdict.signer_key_id.as_deref()) {
        (None, Some(key)) if verdict.passed => Some(
            state
                .store
                .pin_signer_first_use(&ws, key, &audit.entry.subject)
                .await?,
        ),
        _ => before.clone(),
    };
    let pinned_now = before.is_none() && pinned.is_some();
    let digest = files_digest(&req.files);
    let row = BundleRow {
        workspace_id: ws.clone(),
        run_id: run_id.to_string(),
        digest: digest.clone(),
        files: req.files,
        total_bytes: i64::try_from(total).unwrap_or(i64::MAX),
        passed: verdict.passed,
        checks: verdict.checks.clone(),
        signer_key_id: verdict.signer_key_id.clone(),
        pinned_signer_key_id: pinned.as_ref().map(|p| p.key_id.clone()),
        uploaded_by: audit.entry.subject.clone(),
        uploaded_at_ms: now_ms(),
    };
    let stored = state.store.put_bundle(&row).await?;
    if stored.digest != digest {
        return Err(CloudError::Conflict(format!(
            "run `{run_id}` of workspace `{ws}` already has a different bundle ({}); evidence is not replaced",
            stored.digest
        )));
    }
    let mut detail = format!(
        "bundle of run {run_id}: {}",
        if stored.passed {
            "verified".to_string()
        } else {
            format!("failed ({})", failed_checks(&stored.checks).join(", "))
        }
    );
    if stored.signer_changed() {
        detail.push_str(&format!(
            "; SIGNER CHANGED: signed by {} but the workspace's pinned signer is {}",
            stored.signer_key_id.as_deref().unwrap_or("-"),
            stored.pinned_signer_key_id.as_deref().unwrap_or("-"),
        ));
    } else if pinned_now {
        detail.push_str(&format!(
            "; signer {} pinned for the workspace (first use)",
            stored.pinned_signer_key_id.as_deref().unwrap_or("-")
        ));
    }
    audit.entry.detail = Some(detail);
    ok_json(&json!({
        "run_id": run_id,
        "workspace_id": ws,
        "digest": stored.digest,
        "passed": stored.passed,
        "checks": stored.checks,
        "signer_key_id": stored.signer_key_id,
        "pinned_signer_key_id": stored.pinned_signer_key_id,
        "signer_changed": stored.signer_changed(),
        "total_bytes": stored.total_bytes,
    }))
}

/// The names of the checks that failed.
pub fn failed_checks(checks: &Value) -> Vec<String> {
    checks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c.get("passed").and_then(Value::as_bool) != Some(true))
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Decode every file, refusing names that are not plain file names and oversized bundles.
fn decode_files(files: &BTreeMap<String, String>) -> CloudResult<BTreeMap<String, Vec<u8>>> {
    if files.is_empty() {
        return Err(CloudError::BadRequest("`files` is empty".into()));
    }
    if files.len() > MAX_BUNDLE_FILES {
        return Err(CloudError::TooLarge(format!(
            "`files` has {} entries; a bundle has at most {MAX_BUNDLE_FILES}",
            files.len()
        )));
    }
    let mut out = BTreeMap::new();
    let mut total = 0usize;
    for (name, encoded) in files {
        check_id(name).map_err(|reason| {
            CloudError::BadRequest(format!(
                "`files` key `{}` is not a plain file name: {reason}",
                name.chars().take(100).collect::<String>()
            ))
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| CloudError::BadRequest(format!("`files.{name}` is not base64: {e}")))?;
        total += bytes.len();
        if total > MAX_BUNDLE_BYTES {
            return Err(CloudError::TooLarge(format!(
                "the bundle's files hold more than {MAX_BUNDLE_BYTES} bytes"
            )));
        }
        out.insert(name.clone(), bytes);
    }
    Ok(out)
}

/// `sha256:` of the canonical JSON of the uploaded map (same files, same digest).
fn files_digest(files: &BTreeMap<String, String>) -> String {
    let map: serde_json::Map<String, Value> = files
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    format!(
        "sha256:{}",
        sha256_hex(to_canonical_string(&Value::Object(map)).as_bytes())
    )
}

/// The workspace the bundle's signed content names must be the uploader's (walk-G N3). The
/// signature proves who signed a bundle, not whose it is: without this, a workspace could upload
/// another workspace's genuine bundle, and its first-use pin would take over that workspace's
/// key. A bundle the runtime makes names its workspace in `node-session.json` (and `ask.json`
/// may), inside the signature, so another workspace's bundle cannot be made to name the
/// uploader without a new signer, which the pin flags. A file that names no workspace claims
/// none (hand-made bundles such as the golden fixtures), and is compared with nothing. A
/// bundle without `node-session.json` fails `files_present` anyway.
pub fn check_named_workspace(files: &BTreeMap<String, Vec<u8>>, ws: &str) -> CloudResult<()> {
    for name in ["node-session.json", "ask.json"] {
        let Some(bytes) = files.get(name) else {
            continue;
        };
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
            CloudError::BadRequest(format!(
                "`files.{name}`: expected a JSON object naming `workspace_id`: {e}"
            ))
        })?;
        let named = match doc.get("workspace_id") {
            Some(Value::String(named)) => named.as_str(),
            None | Some(Value::Null) => continue,
            _ => {
                return Err(CloudError::BadRequest(format!(
                    "`files.{name}`: expected a string `workspace_id` naming the uploading \
                     workspace `{ws}`"
                )))
            }
        };
        if named != ws {
            let shown = named.chars().take(100).collect::<String>();
            return Err(CloudError::Conflict(format!(
                "`files.{name}`: `workspace_id` is `{shown}`, but the bundle is uploaded by \
                 workspace `{ws}`; a workspace uploads only its own bundles"
            )));
        }
    }
    Ok(())
}

/// Write the files to a private temporary folder and run the bundle verifier on it (it works
/// on a folder, the format's natural form, and never follows links out of it).
pub fn verify_files(files: &BTreeMap<String, Vec<u8>>) -> CloudResult<Verdict> {
    let dir = tempfile::Builder::new()
        .prefix("lumenflow-bundle-")
        .tempdir()
        .map_err(|e| CloudError::Internal(format!("cannot create a folder to verify in: {e}")))?;
    for (name, bytes) in files {
        write_new(&dir.path().join(name), bytes)?;
    }
    let v = bundle::verify(dir.path(), None);
    let checks = serde_json::to_value(&v.checks)
        .map_err(|e| CloudError::Internal(format!("cannot encode the checks: {e}")))?;
    Ok(Verdict {
        passed: v.passed(),
        checks,
        signer_key_id: v.key_id.clone(),
        manifest_run_id: v.manifest.as_ref().map(|m| m.run_id.clone()),
    })
}

fn write_new(path: &Path, bytes: &[u8]) -> CloudResult<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| CloudError::Internal(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| CloudError::Internal(format!("cannot write {}: {e}", path.display())))
}

/// The bundle as a ustar archive: one folder named after the run holding every file, so
/// `tar -xf` yields a folder `lumenflow proof verify` takes as is.
pub fn bundle_tar(row: &BundleRow) -> CloudResult<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mtime = u64::try_from(row.uploaded_at_ms / 1000).unwrap_or(0);
    for (name, encoded) in &row.files {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| CloudError::Storage(format!("stored file `{name}` is not base64: {e}")))?;
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(
                &mut header,
                format!("{}/{name}", row.run_id),
                bytes.as_slice(),
            )
            .map_err(|e| CloudError::Internal(format!("cannot build the archive: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| CloudError::Internal(format!("cannot finish the archive: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> BTreeMap<String, Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/bundles")
            .join(name);
        std::fs::read_dir(&dir)
            .expect("fixture folder")
            .map(|e| e.expect("entry"))
            .filter(|e| e.file_name() != "expected.json")
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("read"),
                )
            })
            .collect()
    }

    fn check(verdict: &Verdict, name: &str) -> bool {
        verdict
            .checks
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["passed"].as_bool())
            .expect("check present")
    }

    #[test]
    fn the_golden_valid_bundle_verifies_on_upload() {
        let v = verify_files(&fixture("valid")).expect("verify");
        assert!(v.passed, "{:?}", v.checks);
        assert!(v.signer_key_id.is_some_and(|k| k.starts_with("ed25519:")));
    }

    #[test]
    fn a_tampered_artifact_fails_only_the_hash_check() {
        let v = verify_files(&fixture("tampered-artifact")).expect("verify");
        assert!(!v.passed);
        assert!(check(&v, "files_present"));
        assert!(!check(&v, "hashes_match"));
        assert!(check(&v, "signature_valid"));
        assert_eq!(failed_checks(&v.checks), vec!["hashes_match".to_string()]);
    }

    #[test]
    fn a_missing_file_fails_files_present() {
        let v = verify_files(&fixture("missing-file")).expect("verify");
        assert!(!v.passed);
        assert!(failed_checks(&v.checks).contains(&"files_present".to_string()));
    }

    #[test]
    fn names_that_leave_the_folder_are_refused() {
        for name in ["../x", "a/b", ".hidden", ""] {
            let files = BTreeMap::from([(name.to_string(), "AA==".to_string())]);
            assert!(decode_files(&files).is_err(), "{name}");
        }
    }

    #[test]
    fn the_archive_holds_every_file_under_the_run_folder() {
        let files: BTreeMap<String, String> = fixture("valid")
            .into_iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        let row = BundleRow {
            workspace_id: "ws".into(),
            run_id: "run-1".into(),
            digest: files_digest(&files),
            files: files.clone(),
            total_bytes: 0,
            passed: true,
            checks: json!([]),
            signer_key_id: None,
            pinned_signer_key_id: None,
            uploaded_by: "ws".into(),
            uploaded_at_ms: 0,
        };
        let bytes = bundle_tar(&row).expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        let expected: Vec<String> = files.keys().map(|k| format!("run-1/{k}")).collect();
        assert_eq!(names, expected);
    }
}
