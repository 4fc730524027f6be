//! `software-delivery:pr_prepare {wu_id, title, body?}`: everything a pull request needs, on
//! disk, without talking to any forge.
//!
//! Uncommitted changes in the worktree (tracked or not, respecting `.gitignore`) are first
//! committed on the work unit's branch as `<wu_id>: <title>`, with the fixed identity
//! `LumenFlow <lumenflow@localhost>` and no hooks, so the branch *is* the pull request. Then
//! `git diff <base_commit>...HEAD` (the base recorded at claim time) is written with the
//! description to `.lumenflow/state/software-delivery/prs/<wu_id>/`: `description.md`,
//! `changes.diff` and `pr.json` (branch, base, commits, counts).
//!
//! Opening a pull request is the risky step, so the manifest gives this tool
//! `required_approvals: [software-delivery:pr-create]`: the dispatch path refuses it until an
//! operator granted this exact call (tool and input), and a grant runs it once.

use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::dispatch::BuiltinCall;
use serde_json::json;

use super::common::{self, fail, git_line, git_ok, require, Claim, ToolResult, STATE_REL};

/// `software-delivery:pr_prepare`.
pub fn pr_prepare(call: &BuiltinCall<'_>) -> ToolOutput {
    inner(call).unwrap_or_else(|e| *e)
}

/// The code of a refusal because the worktree's content is not the tree the caller expected.
pub const CONTENT_CHANGED: &str = "CONTENT_CHANGED";

fn inner(call: &BuiltinCall<'_>) -> ToolResult<ToolOutput> {
    let input = common::input(call)?;
    let wu_id = common::wu_id(input)?;
    let title = common::req_str(input, "title")?.trim().to_string();
    let body = common::opt_str(input, "body")?
        .unwrap_or("")
        .trim()
        .to_string();
    if title.is_empty() || title.contains('\n') {
        return Err(fail(
            lumenflow_contracts::tool_output::codes::INVALID_INPUT,
            "`title` must be one non-empty line",
        ));
    }
    let expect_tree = common::opt_str(input, "expect_tree")?;
    if let Some(t) = expect_tree {
        if !(t.len() == 40 || t.len() == 64) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail(
                lumenflow_contracts::tool_output::codes::INVALID_INPUT,
                format!("`expect_tree` = `{t}` must be a git tree id (40 or 64 hex digits), as `git:status` returns it in `tree`"),
            ));
        }
    }
    let ws = common::repo_root(call)?;
    let (claim, worktree) = Claim::require(&ws, &wu_id)?;
    let dir_rel = format!("{STATE_REL}/prs/{wu_id}");
    require(call, &claim.worktree, PathAccess::Read)?;
    require(call, ".git/objects", PathAccess::Write)?;
    require(call, &format!("{dir_rel}/pr.json"), PathAccess::Write)?;

    // A `.lumenflow/` in the worktree (kernel log, evidence, keys of a runtime started there
    // by mistake) is never staged: it must not reach the PR branch or the forge.
    let mut status_args = vec!["status", "--porcelain=v1", "-z", "--"];
    status_args.extend(common::STAGED);
    let status = git_ok(&worktree, &ws, &status_args)?;
    // The approval binds the input only; `expect_tree` in the input binds the content too:
    // what would be committed now must be the tree the approver saw, else nothing is committed.
    if let Some(expected) = expect_tree {
        let now = common::content_tree(&ws, &worktree)?;
        if !now.eq_ignore_ascii_case(expected) {
            return Err(fail(
                CONTENT_CHANGED,
                format!("the worktree `{}` of work unit `{wu_id}` now holds tree `{now}`, not the `expect_tree` `{expected}` this call was approved with, so it changed after the review; nothing was committed. Review it again (git:diff, git:status shows the current `tree`) and ask for a new approval with that tree", claim.worktree),
            ));
        }
    }
    let committed = !status.stdout.is_empty();
    if committed {
        let mut add_args = vec!["add", "-A", "--"];
        add_args.extend(common::STAGED);
        git_ok(&worktree, &ws, &add_args)?;
        let message = format!("{wu_id}: {title}");
        git_ok(
            &worktree,
            &ws,
            &["commit", "--quiet", "--no-verify", "-m", &message],
        )?;
    }
    let head = git_line(&worktree, &ws, &["rev-parse", "HEAD"])?;
    let tree = git_line(&worktree, &ws, &["rev-parse", "HEAD^{tree}"])?;
    let range = format!("{}...HEAD", claim.base_commit);
    let diff = git_ok(
        &worktree,
        &ws,
        &["diff", "--no-color", "--no-ext-diff", "--binary", &range],
    )?;
    let numstat = git_line(
        &worktree,
        &ws,
        &["diff", "--no-color", "--no-ext-diff", "--numstat", &range],
    )?;
    let diffstat = git_line(
        &worktree,
        &ws,
        &["diff", "--no-color", "--no-ext-diff", "--stat=200", &range],
    )?;
    let (mut files, mut insertions, mut deletions) = (0u64, 0u64, 0u64);
    let mut changed = Vec::new();
    for line in numstat.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, '\t');
        let added = parts
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let removed = parts
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        files += 1;
        insertions += added;
        deletions += removed;
        if let Some(name) = parts.next() {
            changed.push(name.to_string());
        }
    }
    let commits = git_line(
        &worktree,
        &ws,
        &[
            "log",
            "--format=%H %s",
            &format!("{}..HEAD", claim.base_commit),
        ],
    )?;

    let mut description = format!("# {title}\n\n");
    if !body.is_empty() {
        description.push_str(&body);
        description.push_str("\n\n");
    }
    description.push_str(&format!(
        "---\n\nWork unit: {wu_id} (lane: {})\nBranch: `{}` into `{}` (base commit `{}`)\nChanges: {files} file(s), +{insertions} -{deletions}\n",
        claim.lane, claim.branch, claim.base, claim.base_commit
    ));
    if !changed.is_empty() {
        description.push_str("\nFiles:\n");
        for f in &changed {
            description.push_str(&format!("- `{f}`\n"));
        }
    }

    let description_rel = format!("{dir_rel}/description.md");
    let diff_rel = format!("{dir_rel}/changes.diff");
    let meta_rel = format!("{dir_rel}/pr.json");
    common::write_atomic(&ws.join(&description_rel), description.as_bytes())?;
    common::write_atomic(&ws.join(&diff_rel), &diff.stdout)?;
    let data = json!({
        "wu_id": wu_id,
        "branch": claim.branch,
        "base": claim.base,
        "base_commit": claim.base_commit,
        "head_commit": head,
        "tree": tree,
        "diffstat": diffstat,
        "committed": committed,
        "description_path": description_rel,
        "diff_path": diff_rel,
        "files_changed": files,
        "insertions": insertions,
        "deletions": deletions,
    });
    let mut meta = data.clone();
    if let serde_json::Value::Object(m) = &mut meta {
        m.insert("title".into(), title.into());
        m.insert("lane".into(), claim.lane.clone().into());
        m.insert("commits".into(), json!(commits.lines().collect::<Vec<_>>()));
        m.insert("files".into(), json!(changed));
        m.insert("prepared_by".into(), call.caller().into());
        m.insert("prepared_at".into(), Timestamp::now().to_rfc3339().into());
    }
    common::write_json(&ws.join(&meta_rel), &meta)?;
    Ok(common::success(
        data,
        &[description_rel, diff_rel, meta_rel],
        &[],
    ))
}
