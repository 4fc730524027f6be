//! Claiming a work unit (`software-delivery:wu_claim`) and repairing a claim
//! (`software-delivery:wu_recover`).
//!
//! A claim is a branch `lane/<lane-slug>/<wu-id-lowercase>` checked out in a git worktree at
//! `worktrees/<lane-slug>-<wu-id-lowercase>` inside the workspace, forked from the base
//! (`software_delivery.base_branch`, else the branch the workspace has checked out), plus a
//! record in `.lumenflow/state/software-delivery/claims/<wu_id>.json` that the other tools read.
//! Claiming again on the same lane answers the same claim (`created: false`); claiming on
//! another lane is `WU_ALREADY_CLAIMED`.
//!
//! Recovery changes git state (locks, worktree registrations), so it is never automatic: the
//! manifest marks it `permission: admin` with `required_approvals: [software-delivery:wu-recover]`,
//! and the dispatch path refuses it until an operator granted that exact call.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lumenflow_contracts::event::BuildOptions;
use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::dispatch::BuiltinCall;
use lumenflow_kernel::file_lock::LockFile;
use serde_json::{json, Value};

use super::common::{
    self, errors, fail, git_in, git_line, git_ok, recovery_details, require, Claim, ToolResult,
    STATE_REL,
};
use super::WU_CLAIMED;

/// Claims and recoveries are serialized within the process, and across processes by
/// [`claims_lock`]: a second claimer (a `lumenflow tool call` beside the sidecar) then finds the
/// first one's claim instead of racing it to `git worktree add` and failing.
static CLAIMS: Mutex<()> = Mutex::new(());

/// The exclusive lock of every claim and recovery of the workspace at `ws`.
fn claims_lock(ws: &Path) -> ToolResult<LockFile> {
    let path = ws.join(STATE_REL).join(".claims.lock");
    LockFile::acquire(&path).map_err(|e| {
        fail(
            errors::STATE_IO,
            format!("cannot lock `{}`: {e}", path.display()),
        )
    })
}

/// One entry of `git worktree list --porcelain`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorktreeEntry {
    pub path: PathBuf,
    pub branch: Option<String>,
    pub locked: bool,
    pub prunable: bool,
}

/// The worktrees git knows about.
pub fn worktrees(ws: &Path) -> ToolResult<Vec<WorktreeEntry>> {
    let out = git_ok(ws, ws, &["worktree", "list", "--porcelain"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut list = Vec::new();
    let mut current: Option<WorktreeEntry> = None;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            list.extend(current.take());
            current = Some(WorktreeEntry {
                path: PathBuf::from(path),
                ..WorktreeEntry::default()
            });
        } else if let Some(entry) = current.as_mut() {
            if let Some(b) = line.strip_prefix("branch ") {
                entry.branch = Some(b.trim_start_matches("refs/heads/").to_string());
            } else if line == "locked" || line.starts_with("locked ") {
                entry.locked = true;
            } else if line == "prunable" || line.starts_with("prunable ") {
                entry.prunable = true;
            }
        }
    }
    list.extend(current);
    Ok(list)
}

fn find_entry<'a>(list: &'a [WorktreeEntry], path: &Path) -> Option<&'a WorktreeEntry> {
    list.iter().find(|e| e.path == path)
}

fn branch_exists(ws: &Path, branch: &str) -> ToolResult<bool> {
    let r = format!("refs/heads/{branch}");
    Ok(git_in(ws, ws, &["rev-parse", "--verify", "--quiet", &r], None)?.success())
}

/// The base to fork from and its commit.
fn resolve_base(ws: &Path) -> ToolResult<(String, String)> {
    let config = common::pack_config(ws)?;
    let configured = config
        .get("base_branch")
        .and_then(Value::as_str)
        .map(str::to_string);
    let base = match configured {
        // A base is a revision, never an option: `-x` would be read as one by git.
        Some(b) if b.starts_with('-') || b.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Err(fail(
                errors::CONFIG_INVALID,
                format!("`software_delivery.base_branch` = `{b}` is not a branch name"),
            ))
        }
        Some(b) => b,
        None => {
            let head = git_in(
                ws,
                ws,
                &["symbolic-ref", "--quiet", "--short", "HEAD"],
                None,
            )?;
            let name = String::from_utf8_lossy(&head.stdout).trim().to_string();
            if !head.success() || name.is_empty() {
                // Recording `HEAD` would make every later answer (and the PR description) name
                // a moving target that is no branch at all.
                return Err(fail(
                    errors::BASE_BRANCH_REQUIRED,
                    "the workspace repository is on a detached HEAD, so there is no branch for work units to fork from and merge into; set one with `lumenflow config set --key software_delivery.base_branch --value <branch>` (or check out a branch), then claim again",
                ));
            }
            name
        }
    };
    let rev = format!("{base}^{{commit}}");
    let commit = git_in(ws, ws, &["rev-parse", "--verify", "--quiet", &rev], None)?;
    let sha = String::from_utf8_lossy(&commit.stdout).trim().to_string();
    if !commit.success() || sha.is_empty() {
        // An empty repository and a misspelt base need different fixes.
        let any_commit = git_in(ws, ws, &["rev-list", "-n", "1", "--all"], None)?;
        if any_commit.success() && !any_commit.stdout.trim_ascii().is_empty() {
            return Err(fail(
                errors::BASE_NOT_FOUND,
                format!("the base `{base}` names no branch or commit of the workspace repository; set `software_delivery.base_branch` to an existing branch (`git branch --list` shows them)"),
            ));
        }
        return Err(fail(
            errors::REPO_HAS_NO_COMMITS,
            format!("the workspace repository has no commits yet, so the base `{base}` names none; commit something first"),
        ));
    }
    Ok((base, sha))
}

/// The scopes a claim or a recovery writes.
fn require_claim_scopes(call: &BuiltinCall<'_>, claim: &Claim) -> ToolResult<()> {
    require(call, &claim.worktree, PathAccess::Write)?;
    require(call, ".git/worktrees", PathAccess::Write)?;
    require(call, &Claim::rel_path(&claim.wu_id), PathAccess::Write)
}

/// What a claim did beyond recording itself: `Some(commits)` when it adopted a branch that
/// already existed (left over from an abandoned claim), with how many commits it carries
/// beyond the base.
type Adopted = Option<u64>;

fn claim_output(
    claim: &Claim,
    path: &Path,
    created: bool,
    adopted: Adopted,
    caller: &str,
) -> Value {
    let mut out = json!({
        "wu_id": claim.wu_id,
        "lane": claim.lane,
        "worktree_path": path.to_string_lossy(),
        "branch": claim.branch,
        "base": claim.base,
        "base_commit": claim.base_commit,
        "created": created,
        "claimed_by": claim.claimed_by.as_deref().unwrap_or("unknown"),
        "claimed_at": claim.claimed_at.as_deref().unwrap_or("unknown"),
        "adopted_existing_branch": adopted.is_some(),
    });
    if let (Some(n), Some(map)) = (adopted, out.as_object_mut()) {
        map.insert("commits_ahead".into(), json!(n));
    }
    // Claiming is idempotent, so a second agent gets the same worktree: say so, or both
    // would patch one folder believing it their own.
    if let (Some(by), Some(map)) = (claim.claimed_by.as_deref(), out.as_object_mut()) {
        if by != caller {
            map.insert(
                "note".into(),
                json!(format!(
                    "work unit `{}` was claimed by `{by}`{}, not by you (`{caller}`): you share its worktree and branch",
                    claim.wu_id,
                    claim.claimed_at.as_deref().map(|t| format!(" at {t}")).unwrap_or_default()
                )),
            );
        }
    }
    out
}

/// How many commits `branch` has that `base_commit` does not.
fn commits_ahead(ws: &Path, base_commit: &str, branch: &str) -> ToolResult<u64> {
    let range = format!("{base_commit}..{branch}");
    let n = git_line(ws, ws, &["rev-list", "--count", &range])?;
    n.parse().map_err(|_| {
        fail(
            errors::GIT_FAILED,
            format!("`git rev-list --count {range}` answered `{n}`, not a number"),
        )
    })
}

/// `software-delivery:wu_claim {wu_id, lane}`.
pub fn wu_claim(call: &BuiltinCall<'_>) -> ToolOutput {
    claim_inner(call).unwrap_or_else(|e| *e)
}

fn claim_inner(call: &BuiltinCall<'_>) -> ToolResult<ToolOutput> {
    let input = common::input(call)?;
    let wu_id = common::wu_id(input)?;
    let mut lane = common::req_str(input, "lane")?.trim().to_string();
    // A lane the workspace does not declare is a typo, not a new lane: its claim would have
    // none of the lane's scopes or policies behind it. A lane named by its id is recorded by
    // its title, so both name the same claim.
    let lanes = &call.workspace().lanes;
    if let Some(declared) = lanes.iter().find(|l| l.title == lane || l.id == lane) {
        lane = declared.title.clone();
    } else if !lanes.is_empty() {
        let declared: Vec<String> = lanes
            .iter()
            .map(|l| format!("`{}` ({})", l.title, l.id))
            .collect();
        return Err(fail(
            errors::LANE_INVALID,
            format!(
                "lane `{lane}` is not declared in workspace.yaml; its lanes (title or id): {}",
                declared.join(", ")
            ),
        ));
    }
    let ws = common::repo_root(call)?;
    // The paths first (without base): the scopes are checked before anything is touched.
    let planned = Claim::for_wu(&wu_id, &lane, String::new(), String::new())?;
    require_claim_scopes(call, &planned)?;

    let _guard = CLAIMS.lock().unwrap_or_else(|p| p.into_inner());
    let _across = claims_lock(&ws)?;
    let path = ws.join(&planned.worktree);
    let mut artifacts = Vec::new();
    if let Some(first) = Claim::case_twin(&ws, &wu_id)? {
        let existing = Claim::load(&ws, &first)?;
        return Err(fail(
            errors::WU_ALREADY_CLAIMED,
            format!(
                "work unit `{wu_id}` differs from the claimed `{first}` only in case, and work units share branches and worktrees by their lower-case id{}; use `{first}`, or another id",
                existing
                    .map(|c| format!(" (`{first}` is on lane `{}`, worktree `{}`)", c.lane, c.worktree))
                    .unwrap_or_default()
            ),
        ));
    }
    let (claim, created, adopted) = match Claim::load(&ws, &wu_id)? {
        Some(existing) if existing.lane != lane => {
            return Err(fail(
                errors::WU_ALREADY_CLAIMED,
                format!(
                    "work unit `{wu_id}` is already claimed on lane `{}` (worktree `{}`)",
                    existing.lane, existing.worktree
                ),
            ))
        }
        Some(existing) => {
            let list = worktrees(&ws)?;
            let healthy = common::worktree_gitdir(&ws, &path).is_some()
                && find_entry(&list, &path)
                    .is_some_and(|e| e.branch.as_deref() == Some(existing.branch.as_str()));
            if !healthy {
                return Err(common::fail_with(
                    errors::WORKTREE_MISSING,
                    format!(
                        "work unit `{wu_id}` is claimed but its worktree `{}` is missing or not on `{}`",
                        existing.worktree, existing.branch
                    ),
                    recovery_details(&wu_id),
                ));
            }
            (existing, false, None)
        }
        None => {
            let (base, base_commit) = resolve_base(&ws)?;
            let mut claim = Claim::for_wu(&wu_id, &lane, base, base_commit)?;
            let list = worktrees(&ws)?;
            let rel = claim.worktree.clone();
            let base_sha = claim.base_commit.clone();
            let mut adopted = None;
            match find_entry(&list, &path) {
                Some(e)
                    if e.branch.as_deref() == Some(claim.branch.as_str())
                        && common::worktree_gitdir(&ws, &path).is_some() =>
                {
                    // A worktree from a claim whose record was lost: adopt it.
                    claim.base_commit =
                        git_line(&ws, &ws, &["merge-base", &claim.base_commit, &claim.branch])?;
                    adopted = Some(commits_ahead(&ws, &base_sha, &claim.branch)?);
                }
                Some(_) => {
                    return Err(fail(
                        errors::WORKTREE_PATH_CONFLICT,
                        format!("`{rel}` is already a worktree of another branch"),
                    ))
                }
                None if path.exists() => {
                    return Err(fail(
                        errors::WORKTREE_PATH_CONFLICT,
                        format!("`{rel}` already exists and is not a worktree of `{}`; move it away or pick another lane", claim.branch),
                    ))
                }
                None if branch_exists(&ws, &claim.branch)? => {
                    // A branch left by an abandoned claim: its commits come with it, which the
                    // answer says (`adopted_existing_branch`, `commits_ahead`).
                    git_ok(&ws, &ws, &["worktree", "add", &rel, &claim.branch])?;
                    claim.base_commit =
                        git_line(&ws, &ws, &["merge-base", &claim.base_commit, &claim.branch])?;
                    adopted = Some(commits_ahead(&ws, &base_sha, &claim.branch)?);
                }
                None => {
                    git_ok(
                        &ws,
                        &ws,
                        &[
                            "worktree",
                            "add",
                            "-b",
                            &claim.branch,
                            &rel,
                            &claim.base_commit,
                        ],
                    )?;
                }
            }
            let claim = claim.stamped(call.caller());
            let record = Claim::rel_path(&wu_id);
            common::write_json(&ws.join(&record), &claim.to_json())?;
            artifacts.push(record);
            artifacts.push(rel);
            (claim, true, adopted)
        }
    };
    let resolved = path.canonicalize().map_err(|e| {
        fail(
            errors::WORKTREE_MISSING,
            format!("cannot resolve the worktree `{}`: {e}", claim.worktree),
        )
    })?;

    let mut emit_errors = Vec::new();
    common::emit(
        call,
        WU_CLAIMED,
        json!({"wu_id": claim.wu_id, "lane": claim.lane, "worktree_path": claim.worktree}),
        BuildOptions::idempotent(format!("{WU_CLAIMED}:{}:{}", claim.wu_id, claim.branch)),
        &mut emit_errors,
    );
    Ok(common::success(
        claim_output(&claim, &resolved, created, adopted, call.caller()),
        &artifacts,
        &emit_errors,
    ))
}

/// `software-delivery:wu_recover {wu_id}`: make the recorded claim whole again. Each repair it
/// made is listed in `actions` (empty when the claim was healthy).
pub fn wu_recover(call: &BuiltinCall<'_>) -> ToolOutput {
    recover_inner(call).unwrap_or_else(|e| *e)
}

fn recover_inner(call: &BuiltinCall<'_>) -> ToolResult<ToolOutput> {
    let input = common::input(call)?;
    let wu_id = common::wu_id(input)?;
    let ws = common::repo_root(call)?;
    // The record is read under the lock: a rebuilt record must not race a claim writing one.
    let _guard = CLAIMS.lock().unwrap_or_else(|p| p.into_inner());
    let _across = claims_lock(&ws)?;
    let mut actions: Vec<String> = Vec::new();
    let claim = match Claim::load_or_damaged(&ws, &wu_id)? {
        Ok(Some(claim)) => {
            require_claim_scopes(call, &claim)?;
            claim
        }
        Ok(None) => {
            return Err(fail(
                errors::WU_NOT_CLAIMED,
                format!("work unit `{wu_id}` has no claim record to recover; claim it with software-delivery:wu_claim (which adopts an existing `lane/<lane>/{}` branch and its worktree)", wu_id.to_ascii_lowercase()),
            ))
        }
        Err(damaged) => {
            let claim = rebuild_claim(call, &ws, &wu_id, &damaged)?;
            require_claim_scopes(call, &claim)?;
            common::write_json(&damaged.path, &claim.to_json())?;
            actions.push(format!(
                "rebuilt the damaged claim record `{}` from the branch `{}` (lane `{}`)",
                Claim::rel_path(&wu_id),
                claim.branch,
                claim.lane
            ));
            claim
        }
    };
    let path = ws.join(&claim.worktree);
    let rel = claim.worktree.clone();

    let list = worktrees(&ws)?;
    let entry = find_entry(&list, &path).cloned();
    if entry.as_ref().is_some_and(|e| e.locked) {
        git_ok(&ws, &ws, &["worktree", "unlock", &rel])?;
        actions.push(format!("unlocked the worktree `{rel}`"));
    }
    // A `.git` file that points outside the repository's `.git/worktrees/` (rewritten by a
    // gate before gates were sandboxed, or by hand) is put back by git itself, run from the
    // workspace so nothing of the foreign gitdir is read.
    if entry.is_some()
        && path.join(".git").is_file()
        && common::worktree_gitdir(&ws, &path).is_none()
    {
        git_ok(&ws, &ws, &["worktree", "repair", &rel])?;
        if common::worktree_gitdir(&ws, &path).is_none() {
            return Err(fail(
                errors::RECOVERY_NEEDS_OPERATOR,
                format!(
                    "the `.git` file of `{rel}` points outside the repository's .git/worktrees/ \
                     and `git worktree repair` did not put it back: inspect it, then remove \
                     the folder and claim the work unit again"
                ),
            ));
        }
        actions.push(format!(
            "pointed the `.git` file of `{rel}` back at the repository"
        ));
    }
    let dir_ok = common::worktree_gitdir(&ws, &path).is_some();
    if entry.is_some() && !dir_ok {
        git_ok(&ws, &ws, &["worktree", "prune"])?;
        actions.push(format!("pruned the stale registration of `{rel}`"));
    }
    if entry.is_none() && path.exists() {
        // A folder git does not know as a worktree: try git's own repair, else hand it back.
        let repaired = git_in(&ws, &ws, &["worktree", "repair", &rel], None)?;
        let known = find_entry(&worktrees(&ws)?, &path).is_some();
        if !repaired.success() || !known {
            return Err(fail(
                errors::RECOVERY_NEEDS_OPERATOR,
                format!("`{rel}` exists but is not a worktree git can repair; move it away and run software-delivery:wu_recover again"),
            ));
        }
        actions.push(format!("repaired the worktree link of `{rel}`"));
    }
    if !path.exists() {
        if branch_exists(&ws, &claim.branch)? {
            git_ok(&ws, &ws, &["worktree", "add", &rel, &claim.branch])?;
            actions.push(format!(
                "re-added the worktree `{rel}` on `{}`",
                claim.branch
            ));
        } else {
            git_ok(
                &ws,
                &ws,
                &[
                    "worktree",
                    "add",
                    "-b",
                    &claim.branch,
                    &rel,
                    &claim.base_commit,
                ],
            )?;
            actions.push(format!(
                "re-created the branch `{}` at the base commit and its worktree `{rel}`",
                claim.branch
            ));
        }
    }
    // A worktree switched to another branch by hand: switched back when nothing would be
    // lost, else handed to the operator.
    if common::worktree_gitdir(&ws, &path).is_some() {
        if let Some(on) = claim.checked_out_elsewhere(&ws, &path)? {
            let status = git_ok(&path, &ws, &["status", "--porcelain=v1", "-z"])?;
            if !status.stdout.is_empty() {
                return Err(fail(
                    errors::RECOVERY_NEEDS_OPERATOR,
                    format!(
                        "the worktree `{rel}` is on {on}, not on `{}`, and has uncommitted changes; commit or stash them, then `git -C {rel} switch {}`",
                        claim.branch, claim.branch
                    ),
                ));
            }
            git_ok(&path, &ws, &["switch", "--quiet", &claim.branch])?;
            actions.push(format!(
                "switched the worktree `{rel}` from {on} back to `{}`",
                claim.branch
            ));
        }
    }
    // A stale index lock left by a killed git process.
    if let Some(lock) = index_lock(&ws, &path) {
        if lock.exists() {
            std::fs::remove_file(&lock).map_err(|e| {
                fail(
                    errors::STATE_IO,
                    format!("cannot remove the stale `{}`: {e}", lock.display()),
                )
            })?;
            actions.push(format!("removed the stale index lock of `{rel}`"));
        }
    }
    let resolved = path.canonicalize().map_err(|e| {
        fail(
            errors::WORKTREE_MISSING,
            format!("the worktree `{rel}` is still missing after recovery: {e}"),
        )
    })?;
    let artifacts = if actions.is_empty() {
        Vec::new()
    } else {
        vec![rel.clone(), format!("{STATE_REL}/claims/{wu_id}.json")]
    };
    Ok(common::success(
        json!({
            "wu_id": wu_id,
            "worktree_path": resolved.to_string_lossy(),
            "branch": claim.branch,
            "actions": actions,
        }),
        &artifacts,
        &[],
    ))
}

/// A claim record rebuilt from what git knows: the branch `lane/<slug>/<wu>` names the lane
/// (its title from the damaged record or the workspace's lanes when one of them has that slug),
/// the worktree follows from both, and the base from the record when it still holds a usable
/// one, else from the configured base. When git holds no such branch, or several, nothing can be
/// rebuilt safely and the answer says what to do by hand (never "run wu_recover" again).
fn rebuild_claim(
    call: &BuiltinCall<'_>,
    ws: &Path,
    wu_id: &str,
    damaged: &common::DamagedClaim,
) -> ToolResult<Claim> {
    let wu = wu_id.to_ascii_lowercase();
    let record = Claim::rel_path(wu_id);
    let refs = git_line(
        ws,
        ws,
        &["for-each-ref", "--format=%(refname)", "refs/heads/lane/"],
    )?;
    let mut slugs: Vec<String> = refs
        .lines()
        .filter_map(|r| r.strip_prefix("refs/heads/lane/"))
        .filter_map(|r| r.strip_suffix(&format!("/{wu}")))
        .filter(|slug| !slug.is_empty() && !slug.contains('/'))
        .map(str::to_string)
        .collect();
    slugs.sort();
    slugs.dedup();
    let partial = |k: &str| damaged.partial.get(k).and_then(Value::as_str);
    let slug = match slugs.as_slice() {
        [] => {
            return Err(fail(
                errors::RECOVERY_NEEDS_OPERATOR,
                format!(
                    "the claim record `{record}` is damaged ({}) and git has no branch `lane/<lane>/{wu}` to rebuild it from, so nothing of the claim is left; delete `{record}`, then claim the work unit again with software-delivery:wu_claim",
                    damaged.reason
                ),
            ))
        }
        [one] => one.clone(),
        many => {
            // The damaged record may still say which lane it was.
            let from_record = partial("lane")
                .and_then(|l| common::lane_slug(l).ok())
                .filter(|s| many.contains(s));
            match from_record {
                Some(s) => s,
                None => {
                    return Err(fail(
                        errors::RECOVERY_NEEDS_OPERATOR,
                        format!(
                            "the claim record `{record}` is damaged ({}) and git has several branches for work unit `{wu_id}` ({}), so which one is the claim cannot be told; delete `{record}`, then call software-delivery:wu_claim on the lane whose branch holds the work (it adopts that branch and its worktree)",
                            damaged.reason,
                            many.iter()
                                .map(|s| format!("`lane/{s}/{wu}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            }
        }
    };
    let slug_of = |l: &str| common::lane_slug(l).ok();
    let lane = partial("lane")
        .filter(|l| slug_of(l).as_deref() == Some(slug.as_str()))
        .map(str::to_string)
        .or_else(|| {
            call.workspace()
                .lanes
                .iter()
                .find(|l| slug_of(&l.title).as_deref() == Some(slug.as_str()))
                .map(|l| l.title.clone())
        })
        .unwrap_or_else(|| slug.clone());
    let mut claim = Claim::for_wu(wu_id, &lane, String::new(), String::new())?;
    // The recorded base when it still names a commit the branch grew from, else the base a
    // claim would use today, forked where the branch left it.
    let recorded = match (partial("base"), partial("base_commit")) {
        (Some(base), Some(sha))
            if !base.starts_with('-')
                && !sha.starts_with('-')
                && git_in(
                    ws,
                    ws,
                    &["merge-base", "--is-ancestor", sha, &claim.branch],
                    None,
                )?
                .success() =>
        {
            Some((base.to_string(), sha.to_string()))
        }
        _ => None,
    };
    let (base, base_commit) = match recorded {
        Some(found) => found,
        None => {
            let (base, sha) = resolve_base(ws)?;
            let fork = git_line(ws, ws, &["merge-base", &sha, &claim.branch])?;
            (base, fork)
        }
    };
    claim.base = base;
    claim.base_commit = base_commit;
    claim.claimed_by = partial("claimed_by").map(str::to_string);
    claim.claimed_at = partial("claimed_at").map(str::to_string);
    Ok(claim)
}

/// `<gitdir>/index.lock` of the worktree at `path`, from its `.git` file, when that gitdir is
/// where git keeps worktrees (`<ws>/.git/worktrees/`): a `.git` file pointing anywhere else is
/// not followed.
fn index_lock(ws: &Path, path: &Path) -> Option<PathBuf> {
    common::worktree_gitdir(ws, path).map(|gitdir| gitdir.join("index.lock"))
}
