//! The bundle's files go to the control plane (`PUT /api/v1/runs/{run_id}/bundle`) with the
//! workspace's own token: the workspace produced the evidence, and the control plane verifies
//! it on arrival so operators see the run's proof (and a download) in the console.

use lumenflow_contracts::error_text::with_causes;
use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};

use super::{http_error, io_err, Operator};
use crate::output::CliError;

/// Upload every file of `dir`; returns the control plane's verdict.
pub(super) fn upload_bundle(
    operator: &Operator,
    enrollment: &Value,
    workspace_id: &str,
    run_id: &str,
    dir: &Path,
) -> Result<Value, CliError> {
    let token = enrollment
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::new("ENROLLMENT_INVALID", "the enrollment has no `token`"))?;
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if !entry.file_type().map_err(io_err(dir))?.is_file() {
            continue;
        }
        let path = entry.path();
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            base64::engine::general_purpose::STANDARD.encode(bytes),
        );
    }
    let url = format!("{}/api/v1/runs/{run_id}/bundle", operator.base);
    let what = format!("PUT {url}");
    let resp = operator
        .http
        .put(&url)
        .bearer_auth(token)
        .json(&json!({"workspace_id": workspace_id, "files": files}))
        .send()
        .map_err(|e| {
            CliError::new(
                "CONTROL_PLANE_UNREACHABLE",
                format!("{what}: {}", with_causes(&e)),
            )
        })?;
    let status = resp.status().as_u16();
    let text = resp.text().map_err(|e| {
        CliError::new(
            "CONTROL_PLANE_UNREACHABLE",
            format!("{what}: {}", with_causes(&e)),
        )
    })?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !(200..300).contains(&status) {
        return Err(http_error(&what, status, &body));
    }
    Ok(body)
}
