//! The proof files, built from the records the run left behind: the workspace's hash-chained
//! kernel log (receipts with their policy decisions), its evidence store, the files the tools
//! wrote, and the control plane's approval record. Nothing here is a template: a file that has
//! no record to come from says so (`not_run`, `not_requested`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use lumenflow_kernel::dispatch::{evidence, EvidenceStore};
use lumenflow_kernel::eventlog::{self, LogRecord, ReplayFilter};
use serde_json::{json, Map, Value};

use crate::output::CliError;

/// One governed call of the run: its started and finished receipts joined.
#[derive(Debug, Clone)]
pub struct Call {
    pub receipt_id: String,
    pub tool: String,
    pub surface: String,
    pub caller: String,
    pub started_at: String,
    pub finished_at: String,
    pub result: String,
    pub error_code: Option<String>,
    pub duration_ms: u64,
    pub input_hash: String,
    pub input: Value,
    pub output_hash: Option<String>,
    pub approval_id: Option<String>,
    pub decisions: Vec<Value>,
    pub scope_enforced: Value,
}

/// Every call whose started receipt carries `run_id`, in log order.
pub fn calls_of_run(workspace: &Path, run_id: &str) -> Result<Vec<Call>, CliError> {
    let page = eventlog::replay(
        &eventlog::default_path(workspace),
        &ReplayFilter::all()
            .kind("tool_call_started")
            .kind("tool_call_finished"),
    )
    .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    let store = EvidenceStore::open(&evidence::default_root(workspace))
        .map_err(|e| CliError::new("IO_ERROR", format!("evidence store: {e}")))?;
    let mut started: BTreeMap<String, (u64, LogRecord)> = BTreeMap::new();
    let mut finished: BTreeMap<String, LogRecord> = BTreeMap::new();
    for r in page.records {
        let Some(id) = r.fields.get("receipt_id").and_then(Value::as_str) else {
            continue;
        };
        let id = id.to_string();
        if r.kind == "tool_call_started" {
            if r.fields.get("run_id").and_then(Value::as_str) == Some(run_id) {
                started.insert(id, (r.seq, r));
            }
        } else {
            finished.insert(id, r);
        }
    }
    let mut calls: Vec<(u64, Call)> = Vec::new();
    for (id, (seq, s)) in started {
        let Some(f) = finished.remove(&id) else {
            continue;
        };
        let text = |r: &LogRecord, k: &str| {
            r.fields
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let input = s
            .fields
            .get("input_ref")
            .and_then(Value::as_str)
            .and_then(|r| store.get(r).ok())
            .unwrap_or(Value::Null);
        calls.push((
            seq,
            Call {
                receipt_id: id,
                tool: text(&s, "tool_name"),
                surface: text(&s, "surface"),
                caller: text(&s, "caller"),
                started_at: s.timestamp.clone(),
                finished_at: f.timestamp.clone(),
                result: text(&f, "result"),
                error_code: f
                    .fields
                    .get("error_code")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                duration_ms: f
                    .fields
                    .get("duration_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                input_hash: text(&s, "input_hash"),
                input,
                output_hash: f
                    .fields
                    .get("output_hash")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                approval_id: s
                    .fields
                    .get("approval_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                decisions: f
                    .fields
                    .get("policy_decisions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                scope_enforced: s
                    .fields
                    .get("scope_enforced")
                    .cloned()
                    .unwrap_or(Value::Null),
            },
        ));
    }
    calls.sort_by_key(|(seq, _)| *seq);
    Ok(calls.into_iter().map(|(_, c)| c).collect())
}

/// The path scopes a call asked for: the paths its input names (which the kernel checked), or
/// else the scopes the kernel enforced for it.
fn scopes_of(call: &Call) -> Vec<Value> {
    let access = if matches!(call.tool.as_str(), "git:status" | "git:diff") {
        "read"
    } else {
        "write"
    };
    let mut out = Vec::new();
    if let Value::Object(input) = &call.input {
        for (k, v) in input {
            let named = |k: &str| k == "path" || k.ends_with("_path");
            let listed = |k: &str| k == "paths" || k.ends_with("_paths");
            match v {
                Value::String(p) if named(k) => {
                    out.push(json!({"type": "path", "pattern": p, "access": access}))
                }
                Value::Array(items) if listed(k) => out.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|p| json!({"type": "path", "pattern": p, "access": access})),
                ),
                _ => {}
            }
        }
    }
    if out.is_empty() {
        if let Value::Array(enforced) = &call.scope_enforced {
            out.extend(enforced.iter().cloned());
        }
    }
    out
}

/// `policy-decisions.jsonl`: one line per decision of every call of the run, with the scope it
/// was about (Q32: kernel PolicyDecision + scope + timestamp).
pub fn policy_decisions(calls: &[Call]) -> String {
    let mut out = String::new();
    for call in calls {
        let scopes = scopes_of(call);
        let decisions: Vec<Value> = if call.decisions.is_empty() {
            // A call the rules had nothing to say about was allowed by its scopes alone.
            vec![
                json!({"policy_id": "kernel.scope.intersection", "decision": "allow",
                        "reason": "inside the intersection of workspace, lane and tool scopes"}),
            ]
        } else {
            call.decisions.clone()
        };
        // The rules may allow a call whose tool still needs a person: that pause (or the grant
        // it ran on) is a decision too, and the Rules evidence must show it (TCD-07).
        let approval = match (call.error_code.as_deref(), &call.approval_id) {
            (Some("APPROVAL_REQUIRED"), id) => Some(json!({
                "policy_id": "kernel.required_approvals", "decision": "approval_required",
                "reason": format!("the tool needs an approval{}", id.as_deref().map(|i| format!(": {i}")).unwrap_or_default())})),
            (None, Some(id)) => Some(json!({
                "policy_id": "kernel.required_approvals", "decision": "allow",
                "reason": format!("approved: {id}")})),
            _ => None,
        };
        for d in decisions.into_iter().chain(approval) {
            let mut line = Map::new();
            // Rules decide when a call is admitted, so the line carries its start.
            line.insert("timestamp".into(), json!(call.started_at));
            line.insert("receipt_id".into(), json!(call.receipt_id));
            line.insert("tool".into(), json!(call.tool));
            line.insert(
                "policy_id".into(),
                d.get("policy_id").cloned().unwrap_or(Value::Null),
            );
            line.insert(
                "decision".into(),
                d.get("decision").cloned().unwrap_or(Value::Null),
            );
            if let Some(reason) = d.get("reason").filter(|r| !r.is_null()) {
                line.insert("reason".into(), reason.clone());
            }
            line.insert("scopes".into(), json!(scopes));
            out.push_str(&Value::Object(line).to_string());
            out.push('\n');
        }
    }
    out
}

/// `tool-calls.jsonl`: every call the agent made that ran (refused calls are not tool calls:
/// they are policy decisions), with a one-line summary of what it did.
pub fn tool_calls(calls: &[Call], step_data: &BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    for call in calls
        .iter()
        .filter(|c| c.surface == "agent" && c.result != "denied")
    {
        let data = step_data.get(&call.receipt_id);
        let line = json!({
            "receipt_id": call.receipt_id,
            "tool": call.tool,
            "caller": call.caller,
            "started_at": call.started_at,
            "finished_at": call.finished_at,
            "duration_ms": call.duration_ms,
            "result": call.result,
            "error_code": call.error_code,
            "input_hash": call.input_hash,
            "output_hash": call.output_hash,
            "approval_id": call.approval_id,
            "summary": summarize(&call.tool, data, call),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

fn summarize(tool: &str, data: Option<&Value>, call: &Call) -> String {
    let d = data.cloned().unwrap_or(Value::Null);
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    match (tool, call.result.as_str()) {
        (_, r) if r != "success" => format!(
            "{tool} ended {r}{}",
            call.error_code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        ("software-delivery:wu_claim", _) => format!(
            "claimed {} on branch {} in {}",
            s("wu_id"),
            s("branch"),
            s("worktree_path")
        ),
        ("software-delivery:apply_patch", _) => {
            let files: Vec<&str> = d
                .get("files")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("applied a patch to {}", files.join(", "))
        }
        ("software-delivery:gates", _) => {
            let gates: Vec<String> = d
                .get("results")
                .or_else(|| d.get("gates"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|g| {
                            format!(
                                "{} {}",
                                g.get("name").and_then(Value::as_str).unwrap_or("?"),
                                g.get("status").and_then(Value::as_str).unwrap_or("?")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("ran gates: {}", gates.join(", "))
        }
        ("software-delivery:pr_prepare", _) => {
            format!("prepared the pull request for {}", s("wu_id"))
        }
        _ => format!("{tool} succeeded"),
    }
}

/// Read a workspace-relative or absolute file the tools wrote; `None` when absent.
pub fn read_tool_file(workspace: &Path, path: &str) -> Option<String> {
    let p = Path::new(path);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        workspace.join(p)
    };
    let full = full.canonicalize().ok()?;
    // Only files inside the workspace the demo created.
    if !full.starts_with(workspace) {
        return None;
    }
    fs::read_to_string(full).ok()
}
