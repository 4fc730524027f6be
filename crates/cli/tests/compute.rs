//! `lumenflow compute resolve --request FILE`, run as the real binary (CRS-05, CRS-07).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

fn resolve(dir: &Path, request: &Value, extra: &[&str]) -> (Option<i32>, Value, String) {
    let file = dir.join("request.json");
    std::fs::write(&file, serde_json::to_vec_pretty(request).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(["compute", "resolve", "--request"])
        .arg(&file)
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}\n{stderr}"));
    (out.status.code(), value, stderr)
}

fn reviewer_request() -> Value {
    json!({
        "workload_id": "review-7",
        "role": "reviewer",
        "required_capability_tier": "tier-b",
        "author_provider_family": "family-a",
        "candidates": [
            {"id": "a1", "kind": "campus-node", "capability_tier": "tier-b",
             "provider_family": "family-a", "campus_affinity": "campus-north"},
            {"id": "low", "kind": "runner-node", "capability_tier": "tier-a",
             "provider_family": "family-b"}
        ]
    })
}

#[test]
fn compute_resolve_prints_each_outcome_as_json() {
    let dir = tempfile::tempdir().unwrap();
    // Only a same-family reviewer of the tier (the other family is a lower tier): refused.
    let (code, v, stderr) = resolve(dir.path(), &reviewer_request(), &[]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["outcome"], "refused");
    assert_eq!(v["code"], "SAME_FAMILY_REVIEWER");
    assert!(stderr.contains("refused:"), "{stderr}");

    // The operator's opt-out: permitted, with the audit warning in the JSON and on stderr.
    let (code, v, stderr) = resolve(
        dir.path(),
        &reviewer_request(),
        &["--allow-same-family-reviewer"],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["outcome"], "permitted-with-warning");
    assert_eq!(v["target"]["id"], "a1");
    assert!(v["audit_warning"].as_str().unwrap().contains("family-a"));
    assert!(stderr.contains("warning:"), "{stderr}");

    // An executor: resolved.
    let mut req = reviewer_request();
    req["role"] = json!("executor");
    let (code, v, _) = resolve(dir.path(), &req, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        v,
        json!({"outcome": "resolved", "target": reviewer_request()["candidates"][0]})
    );
}

#[test]
fn a_malformed_request_file_is_an_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = reviewer_request();
    req["candidates"][0]["kind"] = json!("edge-node");
    let (code, v, _) = resolve(dir.path(), &req, &["--json"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["error"]["code"], "REQUEST_INVALID");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("edge-node") && msg.contains("request.json"),
        "{msg}"
    );
}

#[test]
fn a_missing_request_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(["compute", "resolve", "--request", "absent.json", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "REQUEST_UNREADABLE");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("absent.json"));
}
