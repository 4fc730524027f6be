//! Durable turns: one JSON file per turn under `.lumenflow/state/agent-runtime/turns/`, rewritten
//! atomically (temp file, fsync, rename, directory fsync) before and after every step.
//!
//! Why a file per turn and why before *and* after: a turn outlives the call that started it. A
//! step that needs an approval ends the call with `waiting_approval`; the next call with the same
//! `turn_id` must know which steps already ran (their side effects must not happen twice) and
//! which one is pending. And a process killed in the middle of a step must leave enough behind
//! for the next call, or the next start of the runtime, to say honestly what state the workspace
//! is in (`cleanup_status`, ABR-02): the step is written as `started` before it is dispatched, so
//! a `started` step without a result is exactly "killed mid-flight".
//!
//! A turn is driven by one process at a time: `<turn_id>.lock` is held with an exclusive
//! advisory lock while a call works on the turn. The operating system releases it when the
//! process dies, so a `running` turn whose lock can be taken has no driver left. An empty
//! `running/<turn_id>` marker exists while a turn is `running`, so finding the turns a dead
//! process left behind lists a handful of markers, not every turn ever run.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use lumenflow_contracts::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::provider::Expect;

/// Where turns live, relative to the workspace (inside the pack's own `.lumenflow/state/<slug>/`).
pub const TURNS_DIR: &str = ".lumenflow/state/agent-runtime/turns";

/// The version of the turn file format.
pub const SCHEMA_VERSION: u32 = 1;

/// `turns/<turn_id>.json` under the workspace.
pub fn turns_dir(workspace_dir: &Path) -> PathBuf {
    workspace_dir.join(TURNS_DIR)
}

/// A turn id is a file name: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}` (no separators, no `..`).
pub fn check_turn_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !id.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "turn_id `{}` must be 1 to 64 characters of letters, digits, `_`, `.` or `-`, starting with a letter or digit",
            id.escape_default()
        ))
    }
}

/// Where a turn stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    /// A call is driving it (or was, until it died: see [`StepPhase::Started`]).
    Running,
    /// A step waits for a human's grant; call again with the same `turn_id` to resume.
    WaitingApproval,
    /// The model server failed (after the client's retries); call again with the same
    /// `turn_id` to resume from the last finished step, or cancel it (walk-E finding 6).
    ProviderFailed,
    Completed,
    Aborted,
}

impl TurnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnStatus::Running => "running",
            TurnStatus::WaitingApproval => "waiting_approval",
            TurnStatus::ProviderFailed => "provider_failed",
            TurnStatus::Completed => "completed",
            TurnStatus::Aborted => "aborted",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, TurnStatus::Completed | TurnStatus::Aborted)
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPhase {
    /// Written before the dispatch: if the turn is found like this, the process died mid-call.
    Started,
    /// The dispatch returned; `outcome` says how.
    Done,
}

/// How a dispatched step came out (the Q40 outcome vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Success,
    /// The tool ran (or its input or output was invalid) and failed.
    Failure,
    /// The dispatch path refused it (scope, rule, unknown tool, task state, the turn's own checks).
    Denied,
    /// It waits for a grant (`approval_id`).
    ApprovalRequired,
}

/// One step of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based.
    pub index: u32,
    /// The provider's id for the call (echoed to a chat model as `tool_call_id`).
    pub call_id: String,
    pub tool: String,
    pub input: Value,
    #[serde(default)]
    pub expect: Expect,
    /// The tool may change state (from its manifest; a tool the runtime does not offer is
    /// refused before it runs, so it is not mutating).
    pub mutating: bool,
    pub phase: StepPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<StepOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The receipts of earlier dispatches of this step that were answered
    /// `APPROVAL_REQUIRED` (the approval requests), kept when the step is dispatched again after
    /// the grant, so the turn still links to its approval request (walk-E finding 12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_receipts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The tool's `data`, for the model's next request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
}

impl StepRecord {
    /// The step changed (or may have changed) state: a mutating tool that ran, to success or
    /// to a failure (a tool can fail halfway). Refused calls and rejected input never ran.
    pub fn mutated(&self) -> bool {
        self.completed_write() || self.may_have_changed()
    }

    /// A mutating step that completed: its change is in the workspace and was kept.
    pub fn completed_write(&self) -> bool {
        self.mutating && self.outcome == Some(StepOutcome::Success)
    }

    /// A mutating step that ran and failed. A failure code does not prove the tool changed
    /// nothing before it failed (it may have stopped halfway), so it "may have changed" the
    /// workspace; only the kernel's refusals before the tool starts ([`never_ran`]) prove it
    /// did not run.
    pub fn may_have_changed(&self) -> bool {
        self.mutating
            && self.outcome == Some(StepOutcome::Failure)
            && !self.error_code.as_deref().is_some_and(never_ran)
    }
}

/// The failure codes the dispatch path returns only when the tool never started: rejected
/// input, a workspace file or pack that changed under the process, no sandbox, a missing
/// `required_env`, a task that may not run tools, a started receipt that could not be
/// written. A step failed with one of them changed nothing, so it never makes a turn
/// `partial` or suggests a recovery (walk-E finding 7, ABR-02).
pub fn never_ran(code: &str) -> bool {
    use lumenflow_contracts::tool_output::codes;
    use lumenflow_kernel::dispatch as d;
    [
        codes::INVALID_INPUT,
        codes::RECORD_FAILED,
        codes::SANDBOX_UNAVAILABLE,
        codes::TASK_STATE,
        d::freshness::WORKSPACE_CHANGED,
        d::PACK_CHANGED,
        d::REQUIRED_ENV_MISSING,
    ]
    .contains(&code)
}

/// The provider a turn was started with, so a resumed turn talks to the same one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderRecord {
    Scripted {
        steps: Vec<super::scripted::PlanStep>,
    },
    OpenaiCompatible {
        base_url: String,
        model: String,
    },
}

/// Everything known about a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnState {
    pub schema_version: u32,
    pub turn_id: String,
    pub goal: String,
    /// Who started it (the dispatch caller: token subject or local user).
    pub caller: String,
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub provider: ProviderRecord,
    pub max_steps: u32,
    pub status: TurnStatus,
    pub steps: Vec<StepRecord>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    /// The result returned by the call that ended the turn (returned again to later calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl TurnState {
    /// The step written as started whose dispatch never returned (the process died).
    pub fn in_flight(&self) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.phase == StepPhase::Started)
    }

    /// The step waiting for a grant: the last one, answered `APPROVAL_REQUIRED` when the plan
    /// did not expect a refusal (a turn stops at such a step, so it is always the last).
    pub fn pending(&self) -> Option<&StepRecord> {
        self.steps.last().filter(|s| {
            s.outcome == Some(StepOutcome::ApprovalRequired) && s.expect != Expect::Refused
        })
    }
}

/// Why a turn file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("turn file `{path}` is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("turn `{0}` is being driven by another call; try again when it returns")]
    Busy(String),
}

impl StateError {
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Io { .. } => "TURN_STATE_IO",
            StateError::Corrupt { .. } => "TURN_STATE_CORRUPT",
            StateError::Busy(_) => "TURN_BUSY",
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// The turn files of one workspace.
#[derive(Debug, Clone)]
pub struct TurnStore {
    dir: PathBuf,
}

/// An exclusive hold on one turn, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct TurnLock {
    _file: File,
}

impl TurnStore {
    pub fn open(workspace_dir: &Path) -> Self {
        TurnStore {
            dir: turns_dir(workspace_dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, turn_id: &str) -> PathBuf {
        self.dir.join(format!("{turn_id}.json"))
    }

    fn lock_path(&self, turn_id: &str) -> PathBuf {
        self.dir.join(format!("{turn_id}.lock"))
    }

    fn ensure_dir(&self) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))
    }

    /// Take the turn's lock without waiting; [`StateError::Busy`] when another call holds it.
    pub fn lock(&self, turn_id: &str) -> Result<TurnLock, StateError> {
        self.ensure_dir()?;
        let path = self.lock_path(turn_id);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(TurnLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StateError::Busy(turn_id.to_string())),
            Err(fs::TryLockError::Error(e)) => Err(io("lock", &path)(e)),
        }
    }

    /// The turn, if it exists.
    pub fn load(&self, turn_id: &str) -> Result<Option<TurnState>, StateError> {
        let path = self.path(turn_id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let state: TurnState = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if state.schema_version != SCHEMA_VERSION || state.turn_id != turn_id {
            return Err(StateError::Corrupt {
                path: path.display().to_string(),
                reason: format!(
                    "expected schema_version {SCHEMA_VERSION} and turn_id `{turn_id}`, found {} and `{}`",
                    state.schema_version, state.turn_id
                ),
            });
        }
        Ok(Some(state))
    }

    /// Write the turn atomically and durably (the caller holds its lock).
    pub fn save(&self, state: &mut TurnState) -> Result<(), StateError> {
        self.ensure_dir()?;
        state.updated_at = Timestamp::now();
        let path = self.path(&state.turn_id);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StateError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        lumenflow_kernel::install::write_file_atomically(&path, &bytes).map_err(io("write", &path))
    }

    /// The ids of every stored turn, sorted.
    pub fn turn_ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &self.dir)(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json")
                    .filter(|id| check_turn_id(id).is_ok())
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}
