//! What every software-delivery tool shares: error codes, the workspace and its repository, the
//! pack's state files, scope checks, the claim record, and running a child process with a
//! controlled environment, a wall-clock timeout that kills its whole process group, and capped
//! output.
//!
//! Tools return `Result<_, Box<ToolOutput>>` internally: the `Err` side is already the failure the
//! caller sees (a stable code and a message), so `?` turns any refusal into the tool's answer and
//! nothing here panics on input.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use lumenflow_contracts::event::BuildOptions;
use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::{codes, ToolOutput};
use lumenflow_kernel::dispatch::BuiltinCall;
use serde_json::{json, Map, Value};

/// Stable error codes of this pack (besides the kernel's `SCOPE_DENIED`, `INVALID_INPUT`).
pub mod errors {
    pub const WU_NOT_CLAIMED: &str = "WU_NOT_CLAIMED";
    pub const WU_ALREADY_CLAIMED: &str = "WU_ALREADY_CLAIMED";
    pub const WORKTREE_MISSING: &str = "WORKTREE_MISSING";
    pub const WORKTREE_PATH_CONFLICT: &str = "WORKTREE_PATH_CONFLICT";
    pub const LANE_INVALID: &str = "LANE_INVALID";
    pub const PATCH_INVALID: &str = "PATCH_INVALID";
    pub const PATCH_ESCAPES_WORKTREE: &str = "PATCH_ESCAPES_WORKTREE";
    pub const PATCH_SYMLINK_REFUSED: &str = "PATCH_SYMLINK_REFUSED";
    pub const PATCH_DOES_NOT_APPLY: &str = "PATCH_DOES_NOT_APPLY";
    pub const PATCH_PATHS_MISMATCH: &str = "PATCH_PATHS_MISMATCH";
    pub const GATE_FAILED: &str = "GATE_FAILED";
    pub const GATE_TIMEOUT: &str = "GATE_TIMEOUT";
    pub const REPO_NOT_FOUND: &str = "REPO_NOT_FOUND";
    pub const REPO_HAS_NO_COMMITS: &str = "REPO_HAS_NO_COMMITS";
    pub const GIT_UNAVAILABLE: &str = "GIT_UNAVAILABLE";
    pub const GIT_FAILED: &str = "GIT_FAILED";
    pub const CONFIG_INVALID: &str = "CONFIG_INVALID";
    pub const STATE_IO: &str = "STATE_IO_FAILED";
    pub const RECOVERY_NEEDS_OPERATOR: &str = "RECOVERY_NEEDS_OPERATOR";
    pub const TASK_WU_MISMATCH: &str = "TASK_WU_MISMATCH";
    pub const BASE_NOT_FOUND: &str = "BASE_NOT_FOUND";
    pub const BASE_BRANCH_REQUIRED: &str = "BASE_BRANCH_REQUIRED";
    pub const CLAIM_RECORD_DAMAGED: &str = "CLAIM_RECORD_DAMAGED";
}

/// A tool's internal result: the `Err` side is the failure the caller sees, boxed (a
/// `ToolOutput` is large and most results are not failures).
pub type ToolResult<T> = Result<T, Box<ToolOutput>>;

pub fn fail(code: &str, message: impl Into<String>) -> Box<ToolOutput> {
    Box::new(ToolOutput::fail(code, message))
}

/// [`fail`] with `error.details`.
pub fn fail_with(code: &str, message: impl Into<String>, details: Value) -> Box<ToolOutput> {
    Box::new(ToolOutput::fail(code, message).with_details(details))
}

/// The pack's state folder, relative to the workspace (the one `.lumenflow/` folder a pack may
/// write).
pub const STATE_REL: &str = ".lumenflow/state/software-delivery";

/// Where claimed worktrees live, relative to the workspace (the tools' `worktrees/**` scope).
pub const WORKTREES_REL: &str = "worktrees";

/// The identity of every commit this pack makes (pr_prepare), whatever the user's git config.
pub const AUTHOR_NAME: &str = "LumenFlow";
pub const AUTHOR_EMAIL: &str = "lumenflow@localhost";

// ---------------------------------------------------------------------------------------------
// Input

/// The input object of the call (the kernel validated it against the input schema already).
pub fn input<'a>(call: &BuiltinCall<'a>) -> ToolResult<&'a Map<String, Value>> {
    call.input()
        .as_object()
        .ok_or_else(|| fail(codes::INVALID_INPUT, "tool input must be a JSON object"))
}

pub fn req_str<'a>(input: &'a Map<String, Value>, field: &str) -> ToolResult<&'a str> {
    input
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| fail(codes::INVALID_INPUT, format!("`{field}` must be a string")))
}

pub fn opt_str<'a>(input: &'a Map<String, Value>, field: &str) -> ToolResult<Option<&'a str>> {
    match input.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(fail(
            codes::INVALID_INPUT,
            format!("`{field}` must be a string"),
        )),
    }
}

/// `wu_id`, checked again here (it names files and branches): a letter, then up to 63 letters,
/// digits, `_` or `-`.
pub fn wu_id(input: &Map<String, Value>) -> ToolResult<String> {
    let id = req_str(input, "wu_id")?;
    if valid_wu_id(id) {
        Ok(id.to_string())
    } else {
        Err(fail(
            codes::INVALID_INPUT,
            format!("`wu_id` = `{id}` must be a letter followed by up to 63 letters, digits, `_` or `-` (for example `WU-042`)"),
        ))
    }
}

pub fn valid_wu_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `Content: Site Comms` -> `content-site-comms`: lower case, every run of other characters one
/// `-`, at most 48 characters.
pub fn lane_slug(lane: &str) -> ToolResult<String> {
    let mut slug = String::new();
    for c in lane.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(48).collect();
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        return Err(fail(
            errors::LANE_INVALID,
            format!("lane `{lane}` has no letters or digits to name a branch and a folder after"),
        ));
    }
    Ok(slug)
}

// ---------------------------------------------------------------------------------------------
// Workspace, scopes, state files

/// The workspace folder, resolved, which must be the root of a git repository (a `.git`
/// folder): every path this pack touches is then inside the workspace.
pub fn repo_root(call: &BuiltinCall<'_>) -> ToolResult<PathBuf> {
    let ws = call.workspace_dir().canonicalize().map_err(|e| {
        fail(
            errors::REPO_NOT_FOUND,
            format!("cannot resolve the workspace folder: {e}"),
        )
    })?;
    if !ws.join(".git").is_dir() {
        return Err(fail(
            errors::REPO_NOT_FOUND,
            format!(
                "the workspace `{}` is not the root of a git repository (no `.git` folder); software-delivery keeps its worktrees inside the workspace's own repository",
                ws.display()
            ),
        ));
    }
    Ok(ws)
}

/// Refuse unless the call's effective scopes allow `access` to the workspace-relative `rel`
/// (the kernel checked the tool's declared scopes against the layers; the workspace may have
/// narrowed them), and unless the part of `rel` that exists resolves inside the workspace (a
/// symlinked `worktrees/` or state folder does not lead the tool elsewhere).
pub fn require(call: &BuiltinCall<'_>, rel: &str, access: PathAccess) -> ToolResult<()> {
    if !call.effective().allows_path(rel, access) {
        return Err(fail(
            codes::SCOPE_DENIED,
            format!("`{rel}` is outside the effective {access} scopes of this call"),
        ));
    }
    let ws = call.workspace_dir().canonicalize().map_err(|e| {
        fail(
            errors::REPO_NOT_FOUND,
            format!("cannot resolve the workspace folder: {e}"),
        )
    })?;
    let mut existing = ws.join(rel);
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if parent.starts_with(&ws) => existing = parent.to_path_buf(),
            _ => break,
        }
    }
    match existing.canonicalize() {
        Ok(resolved) if resolved.starts_with(&ws) => Ok(()),
        _ => Err(fail(
            codes::SCOPE_DENIED,
            format!("`{rel}` resolves outside the workspace (through a symlink)"),
        )),
    }
}

/// The gitdir the `.git` file of the worktree at `path` names, when it lies where git keeps
/// this repository's worktrees (`<ws>/.git/worktrees/`); `None` for a missing `.git` file or
/// one pointing anywhere else, which is then not to be followed.
pub fn worktree_gitdir(ws: &Path, path: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(path.join(".git")).ok()?;
    let gitdir = Path::new(text.trim().strip_prefix("gitdir:")?.trim());
    let gitdir = if gitdir.is_absolute() {
        gitdir.to_path_buf()
    } else {
        path.join(gitdir)
    };
    let gitdir = gitdir.canonicalize().ok()?;
    let worktrees = ws.canonicalize().ok()?.join(".git").join("worktrees");
    gitdir.starts_with(worktrees).then_some(gitdir)
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename), creating the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> ToolResult<()> {
    let io_fail = |e: io::Error| {
        fail(
            errors::STATE_IO,
            format!("cannot write `{}`: {e}", path.display()),
        )
    };
    let dir = path
        .parent()
        .ok_or_else(|| fail(errors::STATE_IO, "a state file needs a parent folder"))?;
    fs::create_dir_all(dir).map_err(io_fail)?;
    // A temporary name of its own per write: two threads writing one file (two gate runs of
    // one work unit) used to truncate or rename away each other's temporary file.
    lumenflow_kernel::install::write_file_atomically(path, bytes).map_err(io_fail)
}

pub fn write_json(path: &Path, value: &Value) -> ToolResult<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| fail(errors::STATE_IO, format!("cannot encode state: {e}")))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// A JSON state file: `Ok(None)` when it does not exist.
pub fn read_json(path: &Path) -> ToolResult<Option<Value>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            fail(
                errors::STATE_IO,
                format!("`{}` is not valid JSON: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(
            errors::STATE_IO,
            format!("cannot read `{}`: {e}", path.display()),
        )),
    }
}

/// The `software_delivery` block of `workspace.yaml` (`Null` when absent).
pub fn pack_config(ws: &Path) -> ToolResult<Value> {
    let doc = lumenflow_kernel::workspace::read_workspace(ws).map_err(|d| {
        fail(
            errors::CONFIG_INVALID,
            format!("cannot read workspace.yaml: {d}"),
        )
    })?;
    Ok(lumenflow_kernel::workspace::root_value(&doc, "software_delivery").unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------------
// The claim record

/// What `wu_claim` recorded: `.lumenflow/state/software-delivery/claims/<wu_id>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub wu_id: String,
    pub lane: String,
    pub branch: String,
    pub base: String,
    pub base_commit: String,
    /// Relative to the workspace: `worktrees/<lane-slug>-<wu-id-lowercase>`.
    pub worktree: String,
    /// Who claimed it and when (RFC 3339), as recorded; `None` on a claim not yet written, or
    /// on a record from before these were kept.
    pub claimed_by: Option<String>,
    pub claimed_at: Option<String>,
}

/// Why a claim record could not be read: what `wu_recover` needs to rebuild it.
#[derive(Debug, Clone)]
pub struct DamagedClaim {
    pub path: PathBuf,
    /// The record's fields that could still be read (empty when it is not JSON at all).
    pub partial: Map<String, Value>,
    pub reason: String,
}

impl Claim {
    pub fn for_wu(wu_id: &str, lane: &str, base: String, base_commit: String) -> ToolResult<Self> {
        let slug = lane_slug(lane)?;
        let wu = wu_id.to_ascii_lowercase();
        Ok(Claim {
            wu_id: wu_id.to_string(),
            lane: lane.to_string(),
            branch: format!("lane/{slug}/{wu}"),
            base,
            base_commit,
            worktree: format!("{WORKTREES_REL}/{slug}-{wu}"),
            claimed_by: None,
            claimed_at: None,
        })
    }

    pub fn rel_path(wu_id: &str) -> String {
        format!("{STATE_REL}/claims/{wu_id}.json")
    }

    /// The record to write: `claimed_by` and `claimed_at` are filled in (with `caller` and now)
    /// when the claim does not carry them yet.
    pub fn stamped(mut self, caller: &str) -> Self {
        self.claimed_by.get_or_insert_with(|| caller.to_string());
        self.claimed_at
            .get_or_insert_with(|| Timestamp::now().to_rfc3339());
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "wu_id": self.wu_id,
            "lane": self.lane,
            "branch": self.branch,
            "base": self.base,
            "base_commit": self.base_commit,
            "worktree": self.worktree,
            "claimed_by": self.claimed_by,
            "claimed_at": self.claimed_at,
        })
    }

    fn from_json(v: &Value) -> Option<Claim> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let claim = Claim {
            wu_id: s("wu_id")?,
            lane: s("lane")?,
            branch: s("branch")?,
            base: s("base")?,
            base_commit: s("base_commit")?,
            worktree: s("worktree")?,
            claimed_by: s("claimed_by"),
            claimed_at: s("claimed_at"),
        };
        // A record edited to point elsewhere is not trusted.
        let expected =
            Claim::for_wu(&claim.wu_id, &claim.lane, String::new(), String::new()).ok()?;
        (expected.worktree == claim.worktree && expected.branch == claim.branch).then_some(claim)
    }

    /// The recorded claim of `wu_id`, or `None`. A record that is not JSON, misses a field, or
    /// names a branch or worktree other than its lane's is `CLAIM_RECORD_DAMAGED`, naming
    /// `wu_recover`, which rebuilds it from git (see [`Claim::load_or_damaged`]).
    pub fn load(ws: &Path, wu_id: &str) -> ToolResult<Option<Claim>> {
        match Claim::load_or_damaged(ws, wu_id)? {
            Ok(claim) => Ok(claim),
            Err(damaged) => Err(fail_with(
                errors::CLAIM_RECORD_DAMAGED,
                format!(
                    "the claim record `{}` of work unit `{wu_id}` is damaged ({}); run software-delivery:wu_recover, which rebuilds it from the work unit's worktree and branch (or, by hand: delete the record, then call software-delivery:wu_claim again on the same lane, which adopts the existing worktree and branch)",
                    damaged.path.display(),
                    damaged.reason
                ),
                recovery_details(wu_id),
            )),
        }
    }

    /// [`Claim::load`], with a damaged record handed back (`Ok(Err(..))`) instead of refused:
    /// only I/O errors other than "not found" are errors here.
    pub fn load_or_damaged(
        ws: &Path,
        wu_id: &str,
    ) -> ToolResult<Result<Option<Claim>, DamagedClaim>> {
        let path = ws.join(Claim::rel_path(wu_id));
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(None)),
            Err(e) => {
                return Err(fail(
                    errors::STATE_IO,
                    format!("cannot read `{}`: {e}", path.display()),
                ))
            }
        };
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(DamagedClaim {
                    path,
                    partial: Map::new(),
                    reason: format!("not valid JSON: {e}"),
                }))
            }
        };
        match Claim::from_json(&value) {
            Some(claim) if claim.wu_id == wu_id => Ok(Ok(Some(claim))),
            _ => Ok(Err(DamagedClaim {
                path,
                partial: value.as_object().cloned().unwrap_or_default(),
                reason: "a field is missing, or its branch or worktree is not the one its work unit and lane name".into(),
            })),
        }
    }

    /// The claim of `wu_id` with its worktree, which must exist: `WU_NOT_CLAIMED` or
    /// `WORKTREE_MISSING` (the worktree is then repaired by `software-delivery:wu_recover`).
    pub fn require(ws: &Path, wu_id: &str) -> ToolResult<(Claim, PathBuf)> {
        let claim = Claim::load(ws, wu_id)?.ok_or_else(|| {
            fail(
                errors::WU_NOT_CLAIMED,
                format!("work unit `{wu_id}` is not claimed; claim it with software-delivery:wu_claim first"),
            )
        })?;
        let dir = ws.join(&claim.worktree);
        let resolved = dir.canonicalize().ok().filter(|p| p.is_dir());
        // The `.git` file must still lead into the repository's own `.git/worktrees/`: git
        // follows it, and a gitdir of the agent's making (a gate, or a hand, rewrote it) brings
        // its own config, whose filters and hooks would run in this process, unsandboxed.
        let worktree = match resolved {
            Some(p) if p.starts_with(ws) && worktree_gitdir(ws, &p).is_some() => p,
            _ => {
                return Err(fail_with(
                    errors::WORKTREE_MISSING,
                    format!(
                        "the worktree `{}` of work unit `{wu_id}` is missing or damaged",
                        claim.worktree
                    ),
                    recovery_details(wu_id),
                ))
            }
        };
        // A worktree switched to another branch by hand: patches, gates and commits would land
        // on that branch while every answer names the claim's.
        if let Some(on) = claim.checked_out_elsewhere(ws, &worktree)? {
            return Err(fail_with(
                errors::WORKTREE_MISSING,
                format!(
                    "the worktree `{}` of work unit `{wu_id}` is on {on}, not on its branch `{}`; switch it back (`git -C {} switch {}`, after committing or stashing), or run software-delivery:wu_recover, which switches a clean worktree back",
                    claim.worktree, claim.branch, claim.worktree, claim.branch
                ),
                recovery_details(wu_id),
            ));
        }
        Ok((claim, worktree))
    }

    /// `Some(what)` when `worktree` has something other than the claim's branch checked out
    /// (`` `experiment` `` or `a detached HEAD`).
    pub fn checked_out_elsewhere(&self, ws: &Path, worktree: &Path) -> ToolResult<Option<String>> {
        let head = git_in(worktree, ws, &["symbolic-ref", "--quiet", "HEAD"], None)?;
        let name = String::from_utf8_lossy(&head.stdout).trim().to_string();
        if !head.success() || name.is_empty() {
            return Ok(Some("a detached HEAD".into()));
        }
        let branch = name.strip_prefix("refs/heads/").unwrap_or(&name);
        Ok((branch != self.branch).then(|| format!("`{branch}`")))
    }

    /// The id of an existing claim record that differs from `wu_id` only in case: branch and
    /// folder names are lower case, so the two would share one worktree (and on a
    /// case-insensitive file system, one record).
    pub fn case_twin(ws: &Path, wu_id: &str) -> ToolResult<Option<String>> {
        let dir = ws.join(STATE_REL).join("claims");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(fail(
                    errors::STATE_IO,
                    format!("cannot list `{}`: {e}", dir.display()),
                ))
            }
        };
        Ok(entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .find(|other| other != wu_id && other.eq_ignore_ascii_case(wu_id)))
    }
}

/// The `needs_recovery` hint: the verbatim call an operator confirms (never run automatically).
pub fn recovery_details(wu_id: &str) -> Value {
    json!({
        "cleanup_status": "needs_recovery",
        // Quoted by the shell module: the id is validated today, but the line is pasted into a
        // shell, so it must stay safe whatever reaches it.
        "recovery_action": crate::shell::tool_call_command(
            "software-delivery:wu_recover",
            &json!({"wu_id": wu_id}),
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Output

/// A success with `metadata.artifacts_written` (workspace-relative paths, for the receipt) and
/// `metadata.emit_errors` when an ephemeral event could not be emitted.
pub fn success(data: Value, artifacts: &[String], emit_errors: &[String]) -> ToolOutput {
    let mut out = ToolOutput::ok(data);
    out.metadata = metadata(artifacts, emit_errors);
    out
}

pub fn metadata(artifacts: &[String], emit_errors: &[String]) -> Option<Map<String, Value>> {
    let mut meta = Map::new();
    if !artifacts.is_empty() {
        meta.insert("artifacts_written".into(), json!(artifacts));
    }
    if !emit_errors.is_empty() {
        meta.insert("emit_errors".into(), json!(emit_errors));
    }
    (!meta.is_empty()).then_some(meta)
}

/// Emit one of the pack's (ephemeral) events. A failure does not fail the tool: it is reported
/// in `emit_errors` (ephemeral events are fail-silent by contract, BKP-02).
pub fn emit(
    call: &BuiltinCall<'_>,
    kind: &str,
    payload: Value,
    options: BuildOptions,
    emit_errors: &mut Vec<String>,
) {
    let Value::Object(map) = payload else {
        emit_errors.push(format!("{kind}: payload is not an object"));
        return;
    };
    if let Err(e) = call.emit(kind, map, options) {
        emit_errors.push(format!("{kind}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// What a child did.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `None` when it timed out; a signal `n` is `128 + n`.
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    /// Some output beyond the cap was read and dropped.
    pub truncated: bool,
    pub duration: Duration,
}

impl Captured {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// How long a child may keep its output pipes open after it exits (a background grandchild)
/// before its group is killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The environment every child starts from: nothing inherited but `PATH` (and, for gate
/// commands, the few variables toolchains need; see [`gate_env`]).
pub fn base_env(cmd: &mut Command) {
    cmd.env_clear().env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    cmd.env("LC_ALL", "C");
}

/// What a reader thread has kept so far, shared with [`run`] so the output read before a
/// grandchild stopped the pipe from closing is not lost.
#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Read `pipe` to its end on a thread, keeping the first `cap` bytes in the returned buffer;
/// the channel says when the pipe closed.
fn reader(
    mut pipe: impl Read + Send + 'static,
    cap: usize,
) -> (mpsc::Receiver<()>, Arc<Mutex<Kept>>) {
    let (tx, rx) = mpsc::channel();
    let kept = Arc::new(Mutex::new(Kept::default()));
    let shared = Arc::clone(&kept);
    thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    // A poisoned lock only means another reader panicked: keep the bytes.
                    let mut k = shared.lock().unwrap_or_else(|p| p.into_inner());
                    let room = cap.saturating_sub(k.bytes.len());
                    if n > room {
                        k.truncated = true;
                    }
                    k.bytes.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    (rx, kept)
}

/// Kill the process group `pgid`.
fn kill_group(pgid: u32) {
    sigkill(&format!("-{pgid}"));
}

/// SIGKILL `target` (a pid, or `-pgid` for a group) through the system `kill`: this crate has
/// no `unsafe`.
pub(crate) fn sigkill(target: &str) {
    for kill in ["/usr/bin/kill", "/bin/kill"] {
        if Path::new(kill).is_file() {
            let _ = Command::new(kill)
                .args(["-9", "--", target])
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            return;
        }
    }
}

/// Run `cmd` in its own process group with `stdin`, a wall-clock `timeout` (after which the
/// whole group is killed) and at most `cap` bytes kept of stdout and of stderr each.
pub fn run(
    cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    cap: usize,
) -> io::Result<Captured> {
    run_with(cmd, stdin, timeout, cap, &|| {})
}

/// [`run`], calling `kill_more` wherever the process group is killed: a child that left the
/// group (`setsid`) is out of reach of the group kill, so the caller kills it by other means
/// (gates: every process carrying the run's `LUMENFLOW_GATE_RUN`), at the timeout and when such
/// a child keeps the output pipes open after the command exited.
pub fn run_with(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    cap: usize,
    kill_more: &dyn Fn(),
) -> io::Result<Captured> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pgid = child.id();
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
        thread::spawn(move || {
            // A child that exits without reading its input closes the pipe: not an error.
            let _ = pipe.write_all(&bytes);
        });
    }
    let pipes: Vec<_> = [
        child.stdout.take().map(|p| reader(p, cap)),
        child.stderr.take().map(|p| reader(p, cap)),
    ]
    .into_iter()
    .collect();

    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => {
                kill_group(pgid);
                kill_more();
                let _ = child.kill();
                break child.wait().ok();
            }
        }
        if started.elapsed() >= timeout {
            timed_out = true;
            kill_group(pgid);
            // Before waiting for the pipes: a daemonised child holding them would otherwise
            // keep the call waiting past its timeout.
            kill_more();
            let _ = child.kill();
            break child.wait().ok();
        }
        thread::sleep(Duration::from_millis(5));
    };

    // The child is gone; a grandchild still holding the pipes gets one grace period (both
    // pipes together), then is killed with the group, and what was read is kept either way.
    let mut closed: Vec<bool> = pipes.iter().map(Option::is_none).collect();
    let mut drain = |deadline: Instant| {
        for (i, pipe) in pipes.iter().enumerate() {
            if let (Some((rx, _)), Some(false)) = (pipe, closed.get(i).copied()) {
                let left = deadline.saturating_duration_since(Instant::now());
                closed[i] = rx.recv_timeout(left).is_ok();
            }
        }
        closed.iter().all(|c| *c)
    };
    let mut complete = drain(Instant::now() + DRAIN_GRACE);
    if !complete {
        kill_group(pgid);
        kill_more();
        complete = drain(Instant::now() + DRAIN_GRACE);
    }
    let take = |i: usize| -> (Vec<u8>, bool) {
        match pipes.get(i).and_then(Option::as_ref) {
            None => (Vec::new(), false),
            Some((_, kept)) => {
                let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
                (std::mem::take(&mut k.bytes), k.truncated || !complete)
            }
        }
    };
    let (stdout, t1) = take(0);
    let (stderr, t2) = take(1);
    let exit_code = if timed_out {
        None
    } else {
        status.and_then(|s| s.code().or_else(|| s.signal().map(|n| 128 + n)))
    };
    Ok(Captured {
        exit_code,
        stdout,
        stderr,
        timed_out,
        truncated: t1 || t2,
        duration: started.elapsed(),
    })
}

/// How long one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of a git command's output that is kept (diffs are capped again by their tools).
const GIT_OUTPUT_CAP: usize = 64 * 1024 * 1024;

/// Run `git args` in `cwd` with no user or system configuration, no hooks, no prompts, a fixed
/// identity and repository discovery stopped at the workspace (`ceiling`'s parent).
pub fn git_in(
    cwd: &Path,
    ceiling: &Path,
    args: &[&str],
    stdin: Option<Vec<u8>>,
) -> ToolResult<Captured> {
    git_in_env(cwd, ceiling, args, stdin, &[])
}

/// [`git_in`] with extra environment variables (a temporary index or object folder).
pub fn git_in_env(
    cwd: &Path,
    ceiling: &Path,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    env: &[(&str, &Path)],
) -> ToolResult<Captured> {
    let mut cmd = Command::new("git");
    base_env(&mut cmd);
    cmd.current_dir(cwd)
        .env("HOME", ceiling)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
        .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
        .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL);
    if let Some(parent) = ceiling.parent() {
        cmd.env("GIT_CEILING_DIRECTORIES", parent);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "advice.detachedHead=false",
    ])
    .args(args);
    run(cmd, stdin, GIT_TIMEOUT, GIT_OUTPUT_CAP).map_err(|e| {
        fail(
            errors::GIT_UNAVAILABLE,
            format!("cannot run git (is it installed and on PATH?): {e}"),
        )
    })
}

/// [`git_in`] that must succeed: `GIT_FAILED` with git's own message otherwise.
pub fn git_ok(cwd: &Path, ceiling: &Path, args: &[&str]) -> ToolResult<Captured> {
    let out = git_in(cwd, ceiling, args, None)?;
    if out.success() {
        Ok(out)
    } else {
        Err(fail(
            errors::GIT_FAILED,
            format!(
                "`git {}` failed: {}",
                args.join(" "),
                if out.timed_out {
                    "timed out".to_string()
                } else {
                    out.stderr_text()
                }
            ),
        ))
    }
}

/// The pathspecs `pr_prepare` stages: everything but any `.lumenflow` folder, at any depth.
pub const STAGED: [&str; 3] = [
    ".",
    ":(exclude,glob)**/.lumenflow",
    ":(exclude,glob)**/.lumenflow/**",
];

/// The tree id of what `pr_prepare` would commit in `worktree` now: `HEAD` plus every change
/// it stages ([`STAGED`], `.gitignore` respected). Computed in a copy of the worktree's index
/// and a temporary object folder (the repository's objects as an alternate), so neither the
/// worktree's index nor the repository's objects change: a read tool may call it.
pub fn content_tree(ws: &Path, worktree: &Path) -> ToolResult<String> {
    let tmp = tempfile::Builder::new()
        .prefix("lumenflow-tree-")
        .tempdir()
        .map_err(|e| {
            fail(
                errors::STATE_IO,
                format!("cannot create a temporary folder: {e}"),
            )
        })?;
    let index = tmp.path().join("index");
    let objects = tmp.path().join("objects");
    fs::create_dir_all(&objects).map_err(|e| {
        fail(
            errors::STATE_IO,
            format!("cannot create `{}`: {e}", objects.display()),
        )
    })?;
    // The worktree's own index, copied, keeps git's stat cache (files are not all hashed
    // again) and whatever was staged already, which pr_prepare commits too.
    let own_index = PathBuf::from(git_line(
        worktree,
        ws,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    )?);
    if own_index.is_file() {
        fs::copy(&own_index, &index).map_err(|e| {
            fail(
                errors::STATE_IO,
                format!("cannot copy `{}`: {e}", own_index.display()),
            )
        })?;
    }
    let shared = PathBuf::from(git_line(
        worktree,
        ws,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )?)
    .join("objects");
    let env: [(&str, &Path); 3] = [
        ("GIT_INDEX_FILE", &index),
        ("GIT_OBJECT_DIRECTORY", &objects),
        ("GIT_ALTERNATE_OBJECT_DIRECTORIES", &shared),
    ];
    let run = |args: &[&str]| -> ToolResult<String> {
        let out = git_in_env(worktree, ws, args, None, &env)?;
        if !out.success() {
            return Err(fail(
                errors::GIT_FAILED,
                format!("`git {}` failed: {}", args.join(" "), out.stderr_text()),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if !own_index.is_file() {
        run(&["read-tree", "HEAD"])?;
    }
    let mut add = vec!["add", "-A", "--"];
    add.extend(STAGED);
    run(&add)?;
    run(&["write-tree"])
}

/// The trimmed stdout of a successful git command.
pub fn git_line(cwd: &Path, ceiling: &Path, args: &[&str]) -> ToolResult<String> {
    git_ok(cwd, ceiling, args).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The variables a gate command gets besides `PATH`: the ones build tools need to find their
/// toolchains and caches, when set in the runtime's environment.
pub const GATE_ENV_PASSTHROUGH: &[&str] = &[
    "HOME",
    "USER",
    "LANG",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
];

pub fn gate_env(cmd: &mut Command) {
    base_env(cmd);
    for name in GATE_ENV_PASSTHROUGH {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
}
