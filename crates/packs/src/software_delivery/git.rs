//! `git:status` and `git:diff`: read-only views of a claimed work unit's worktree (with
//! `wu_id`) or of the workspace repository (without). They run git with no user or system
//! configuration and `GIT_OPTIONAL_LOCKS=0`, so even the index refresh a status would do is
//! skipped: nothing is written.

use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::dispatch::BuiltinCall;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

use super::common::{self, git_in, git_ok, require, Claim, ToolResult};

/// The most of a diff returned inline (the rest is cut and `truncated` is set).
pub const DIFF_CAP: usize = 1024 * 1024;

/// The folder to look at: the work unit's worktree, or the workspace.
fn target(
    call: &BuiltinCall<'_>,
    input: &Map<String, Value>,
) -> ToolResult<(PathBuf, PathBuf, Option<Claim>)> {
    let ws = common::repo_root(call)?;
    match common::opt_str(input, "wu_id")? {
        Some(_) => {
            let wu_id = common::wu_id(input)?;
            let (claim, worktree) = Claim::require(&ws, &wu_id)?;
            require(call, &claim.worktree, PathAccess::Read)?;
            Ok((ws, worktree, Some(claim)))
        }
        None => {
            require(call, ".git/HEAD", PathAccess::Read)?;
            Ok((ws.clone(), ws, None))
        }
    }
}

fn current_branch(dir: &std::path::Path, ws: &std::path::Path) -> ToolResult<String> {
    let head = git_in(
        dir,
        ws,
        &["symbolic-ref", "--quiet", "--short", "HEAD"],
        None,
    )?;
    let name = String::from_utf8_lossy(&head.stdout).trim().to_string();
    Ok(if head.success() && !name.is_empty() {
        name
    } else {
        "HEAD".to_string()
    })
}

/// `git:status {wu_id?}`.
pub fn git_status(call: &BuiltinCall<'_>) -> ToolOutput {
    status_inner(call).unwrap_or_else(|e| *e)
}

fn status_inner(call: &BuiltinCall<'_>) -> ToolResult<ToolOutput> {
    let input = common::input(call)?;
    let (ws, dir, claim) = target(call, input)?;
    // What pr_prepare would commit now, for an approver to pin with `expect_tree`.
    let tree = match claim {
        Some(_) => Some(common::content_tree(&ws, &dir)?),
        None => None,
    };
    let out = git_ok(
        &dir,
        &ws,
        &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut entries = Vec::new();
    let mut tokens = text.split('\0').filter(|t| !t.is_empty());
    while let Some(token) = tokens.next() {
        let (status, path) = (token.get(..2).unwrap_or(""), token.get(3..).unwrap_or(""));
        if status.contains('R') || status.contains('C') {
            // The original name follows as its own token.
            let _ = tokens.next();
        }
        entries.push(json!({"status": status, "path": path}));
    }
    let mut data = json!({
        "worktree_path": dir.to_string_lossy(),
        "branch": current_branch(&dir, &ws)?,
        "clean": entries.is_empty(),
        "entries": entries,
    });
    if let (Some(tree), Some(map)) = (tree, data.as_object_mut()) {
        map.insert("tree".into(), tree.into());
    }
    Ok(common::success(data, &[], &[]))
}

/// `git:diff {wu_id?, against?: head|base}`: the working tree against `HEAD`, or (for a work
/// unit) against its base commit, including what was already committed on its branch.
pub fn git_diff(call: &BuiltinCall<'_>) -> ToolOutput {
    diff_inner(call).unwrap_or_else(|e| *e)
}

fn diff_inner(call: &BuiltinCall<'_>) -> ToolResult<ToolOutput> {
    let input = common::input(call)?;
    let against = common::opt_str(input, "against")?.unwrap_or("head");
    let (ws, dir, claim) = target(call, input)?;
    let rev = match (against, &claim) {
        ("base", Some(c)) => c.base_commit.clone(),
        ("base", None) => {
            return Err(common::fail(
                lumenflow_contracts::tool_output::codes::INVALID_INPUT,
                "`against: base` needs a `wu_id` (the workspace itself has no base)",
            ))
        }
        _ => "HEAD".to_string(),
    };
    // Renames off: a secret renamed to an innocent name would otherwise show its content
    // under the new name only.
    let base_args = ["diff", "--no-color", "--no-ext-diff", "--no-renames"];
    let hidden = hidden_files(call, &dir, &ws, claim.as_ref(), &base_args, &rev)?;
    let excludes: Vec<String> = hidden
        .iter()
        .map(|f| format!(":(top,exclude,literal){f}"))
        .collect();
    let mut args: Vec<&str> = base_args.to_vec();
    args.extend([rev.as_str(), "--", "."]);
    args.extend(excludes.iter().map(String::as_str));
    let out = git_ok(&dir, &ws, &args)?;
    let truncated = out.stdout.len() > DIFF_CAP || out.truncated;
    let mut bytes = out.stdout;
    bytes.truncate(DIFF_CAP);
    let mut data = json!({
        "worktree_path": dir.to_string_lossy(),
        "against": against,
        "diff": String::from_utf8_lossy(&bytes),
        "truncated": truncated,
    });
    if !hidden.is_empty() {
        data["hidden_by_deny_overlays"] = json!(hidden);
    }
    Ok(common::success(data, &[], &[]))
}

/// The changed files (repository-relative) that `security.deny_overlays` cover: left out of
/// the diff, as the sandbox hides them from tools (their names may show, their content never;
/// the diff is also stored as evidence). A file in a worktree counts as covered when either
/// its workspace path (`worktrees/<dir>/.env`) or its repository path (`.env`) is: the
/// worktree's copy is the same secret.
fn hidden_files(
    call: &BuiltinCall<'_>,
    dir: &std::path::Path,
    ws: &std::path::Path,
    claim: Option<&Claim>,
    base_args: &[&str],
    rev: &str,
) -> ToolResult<Vec<String>> {
    if call.workspace().security.deny_overlays.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = base_args.to_vec();
    args.extend(["--name-only", "-z", rev]);
    let names = git_ok(dir, ws, &args)?;
    let mut hidden = Vec::new();
    for name in String::from_utf8_lossy(&names.stdout)
        .split('\0')
        .filter(|n| !n.is_empty())
    {
        let mut paths = vec![name.to_string()];
        if let Some(c) = claim {
            paths.push(format!("{}/{name}", c.worktree));
        }
        for rel in &paths {
            let covered = call.deny_overlay_covers(rel).map_err(|e| {
                common::fail(
                    common::errors::CONFIG_INVALID,
                    format!("`security.deny_overlays` in workspace.yaml: {e}; fix the pattern"),
                )
            })?;
            if covered {
                hidden.push(name.to_string());
                break;
            }
        }
    }
    Ok(hidden)
}
