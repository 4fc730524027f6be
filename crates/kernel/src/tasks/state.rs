//! States, the transition table, the source-state guards of each operation, and the projection
//! of a task's events into its state (`original/dispatch.md` §5.1, §5.3).

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use lumenflow_contracts::kinds::KernelV1Kind;
use lumenflow_contracts::scope::ToolScope;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::PackManifest;

use super::error::TaskError;

/// The five task states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Ready,
    Active,
    Blocked,
    Waiting,
    Done,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Ready,
        TaskStatus::Active,
        TaskStatus::Blocked,
        TaskStatus::Waiting,
        TaskStatus::Done,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Ready => "ready",
            TaskStatus::Active => "active",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Waiting => "waiting",
            TaskStatus::Done => "done",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        TaskStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The states the original's table allows next (§5.1).
    pub const fn allowed_next(self) -> &'static [TaskStatus] {
        match self {
            TaskStatus::Ready => &[TaskStatus::Active],
            TaskStatus::Active => &[
                TaskStatus::Blocked,
                TaskStatus::Waiting,
                TaskStatus::Done,
                TaskStatus::Ready,
            ],
            TaskStatus::Blocked => &[TaskStatus::Active, TaskStatus::Done],
            TaskStatus::Waiting => &[TaskStatus::Active, TaskStatus::Done],
            TaskStatus::Done => &[],
        }
    }

    pub fn is_terminal(self) -> bool {
        self.allowed_next().is_empty()
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operations that move a task, each with the states it may start from. The guard checks the
/// *source* state (the original only checked that the target was reachable, so `claim` also
/// worked from `blocked` and `waiting`, and `unblock` from `ready` and `waiting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskAction {
    Claim,
    Block,
    Unblock,
    Wait,
    Resume,
    Release,
    Complete,
    FailRun,
}

impl TaskAction {
    pub const ALL: [TaskAction; 8] = [
        TaskAction::Claim,
        TaskAction::Block,
        TaskAction::Unblock,
        TaskAction::Wait,
        TaskAction::Resume,
        TaskAction::Release,
        TaskAction::Complete,
        TaskAction::FailRun,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TaskAction::Claim => "claim",
            TaskAction::Block => "block",
            TaskAction::Unblock => "unblock",
            TaskAction::Wait => "wait",
            TaskAction::Resume => "resume",
            TaskAction::Release => "release",
            TaskAction::Complete => "complete",
            TaskAction::FailRun => "fail_run",
        }
    }

    /// The states this operation may start from.
    pub const fn sources(self) -> &'static [TaskStatus] {
        match self {
            TaskAction::Claim => &[TaskStatus::Ready],
            TaskAction::Block | TaskAction::Wait | TaskAction::Release | TaskAction::FailRun => {
                &[TaskStatus::Active]
            }
            TaskAction::Unblock => &[TaskStatus::Blocked],
            TaskAction::Resume => &[TaskStatus::Waiting],
            TaskAction::Complete => &[TaskStatus::Active, TaskStatus::Blocked, TaskStatus::Waiting],
        }
    }

    /// The state this operation leads to.
    pub const fn target(self) -> TaskStatus {
        match self {
            TaskAction::Claim | TaskAction::Unblock | TaskAction::Resume => TaskStatus::Active,
            TaskAction::Block => TaskStatus::Blocked,
            TaskAction::Wait => TaskStatus::Waiting,
            TaskAction::Release | TaskAction::FailRun => TaskStatus::Ready,
            TaskAction::Complete => TaskStatus::Done,
        }
    }
}

impl fmt::Display for TaskAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guard: `action` may run on a task in state `from`, or `TASK_ILLEGAL_TRANSITION`.
pub fn check_transition(
    task_id: &str,
    action: TaskAction,
    from: TaskStatus,
) -> Result<(), TaskError> {
    let to = action.target();
    if action.sources().contains(&from) && from.allowed_next().contains(&to) {
        return Ok(());
    }
    Err(TaskError::IllegalTransition {
        task: task_id.to_string(),
        action,
        from,
        to,
        allowed: from.allowed_next().to_vec(),
    })
}

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Planned,
    Executing,
    Paused,
    Failed,
    Succeeded,
}

impl RunStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Planned => "planned",
            RunStatus::Executing => "executing",
            RunStatus::Paused => "paused",
            RunStatus::Failed => "failed",
            RunStatus::Succeeded => "succeeded",
        }
    }

    /// Executing or paused: the run has not ended.
    pub fn in_progress(self) -> bool {
        matches!(self, RunStatus::Executing | RunStatus::Paused)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run of a task (one claim).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub run_id: String,
    pub task_id: String,
    pub status: RunStatus,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub by: String,
    pub session_id: String,
    /// Why the run is paused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_refs: Vec<String>,
}

/// The projected state of a task, with the facts of its (verified) spec a caller needs most.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub task_id: String,
    pub status: TaskStatus,
    /// `status` through the packs' `state_aliases` (display only; equal to `status` without one).
    pub display_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The reason of the last block or wait, while blocked or waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    /// What a waiting task waits for (an approval id, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The run touched by the last run event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_run: Option<Run>,
    /// Distinct run ids seen.
    pub run_count: u32,
    /// From the spec.
    pub lane_id: String,
    /// From the spec: the pack the task belongs to.
    pub domain: String,
    /// From the spec: the task layer of the scope intersection.
    pub declared_scopes: Vec<ToolScope>,
    /// `spec_hash` of `task_created`, verified against the spec file.
    pub spec_hash: String,
    /// Timestamp of `task_created`.
    pub created_at: String,
    /// Timestamp of the task's last event.
    pub updated_at: String,
    /// Events of the task (all of them: projection is never truncated).
    pub event_count: usize,
    /// `seq` of the task's last event.
    pub last_seq: u64,
}

impl TaskState {
    /// The current run when it has not ended (executing or paused).
    pub fn run_in_progress(&self) -> Option<&Run> {
        self.current_run.as_ref().filter(|r| r.status.in_progress())
    }
}

/// Display aliases for states, merged from the packs' `state_aliases` (later packs win; keys that
/// are not states, blank aliases and aliases that would make two states look alike are ignored,
/// with a warning). Aliases change what is shown, never what is stored or checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateAliases {
    aliases: BTreeMap<TaskStatus, String>,
    pub warnings: Vec<String>,
}

impl StateAliases {
    pub fn from_packs<'a>(packs: impl IntoIterator<Item = &'a PackManifest>) -> Self {
        let mut merged: IndexMap<TaskStatus, (String, String)> = IndexMap::new();
        let mut warnings = Vec::new();
        for pack in packs {
            for (key, alias) in &pack.state_aliases {
                match TaskStatus::from_name(key) {
                    None => warnings.push(format!(
                        "pack `{}`: state_aliases key `{key}` is not a task state; ignored",
                        pack.id
                    )),
                    Some(_) if alias.trim().is_empty() => warnings.push(format!(
                        "pack `{}`: state_aliases `{key}` is blank; ignored",
                        pack.id
                    )),
                    Some(state) => {
                        merged.insert(state, (alias.trim().to_string(), pack.id.clone()));
                    }
                }
            }
        }
        let mut aliases = BTreeMap::new();
        for (state, (alias, pack)) in &merged {
            let clash = TaskStatus::ALL
                .iter()
                .any(|other| other != state && other.as_str() == alias)
                || merged
                    .iter()
                    .any(|(other, (a, _))| other != state && a == alias);
            if clash {
                warnings.push(format!(
                    "pack `{pack}`: alias `{alias}` for `{state}` is ambiguous (another state has that name or alias); ignored"
                ));
            } else {
                aliases.insert(*state, alias.clone());
            }
        }
        StateAliases { aliases, warnings }
    }

    pub fn with_alias(mut self, state: TaskStatus, alias: impl Into<String>) -> Self {
        self.aliases.insert(state, alias.into());
        self
    }

    /// How `state` is shown.
    pub fn display(&self, state: TaskStatus) -> &str {
        self.aliases
            .get(&state)
            .map(String::as_str)
            .unwrap_or(state.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
    }
}

/// The fold of a task's events into its state (§5.3), one event at a time, in log order.
///
/// As in the original: `task_created` → ready; `task_claimed` → active (claimed_at/by,
/// session_id; reason cleared); `task_blocked` → blocked + reason; `task_unblocked` → active;
/// `task_waiting` → waiting + reason (and `wait_for`); `task_resumed` → active;
/// `task_completed` → done + completed_at; `task_released` → ready, session_id cleared
/// (claimed_* kept); `task_delegated` and `checkpoint` change nothing. Runs: `run_started` → a
/// fresh executing run; `run_paused` → paused; `run_failed` / `run_succeeded` → ended with
/// completed_at; a run event for an unknown run makes a `planned` placeholder (by/session
/// `unknown`) first; `current_run` is the run of the last run event, `run_count` the number of
/// distinct run ids. Transitions are not validated: an illegal log still projects.
///
/// Two differences: events are folded in log (`seq`) order, not re-sorted by timestamp, since
/// callers may supply timestamps; and `task_unblocked` / `task_resumed` set a *paused* current run
/// back to executing, because this store pauses the run when it blocks or parks a task.
#[derive(Debug, Clone, Default)]
pub struct Projector {
    created: Option<Created>,
    status: Option<TaskStatus>,
    claimed_at: Option<String>,
    claimed_by: Option<String>,
    session_id: Option<String>,
    blocked_reason: Option<String>,
    wait_for: Option<String>,
    completed_at: Option<String>,
    runs: IndexMap<String, Run>,
    current_run: Option<String>,
    event_count: usize,
    last_seq: u64,
    updated_at: String,
    last_hash: Option<String>,
}

#[derive(Debug, Clone)]
struct Created {
    spec_hash: String,
    at: String,
}

fn text(fields: &Map<String, Value>, key: &str) -> Option<String> {
    fields.get(key).and_then(Value::as_str).map(str::to_string)
}

fn texts(fields: &Map<String, Value>, key: &str) -> Vec<String> {
    fields
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Projector {
    pub fn new() -> Self {
        Projector::default()
    }

    /// Fold one event of the task. `hash` is the record's chain hash (kept to derive run ids).
    pub fn apply(
        &mut self,
        task_id: &str,
        seq: u64,
        hash: Option<&str>,
        timestamp: &str,
        kind: &str,
        fields: &Map<String, Value>,
    ) -> Result<(), TaskError> {
        let Some(kind_enum) = KernelV1Kind::from_name(kind) else {
            return Ok(());
        };
        self.event_count += 1;
        self.last_seq = seq;
        self.updated_at = timestamp.to_string();
        if let Some(h) = hash {
            self.last_hash = Some(h.to_string());
        }
        let at = || timestamp.to_string();
        match kind_enum {
            KernelV1Kind::TaskCreated => {
                if self.created.is_none() {
                    let Some(spec_hash) = text(fields, "spec_hash") else {
                        return Err(TaskError::BadRecord {
                            task: task_id.to_string(),
                            seq,
                            kind: kind.to_string(),
                            problem: "`spec_hash` is missing".into(),
                        });
                    };
                    self.created = Some(Created {
                        spec_hash,
                        at: at(),
                    });
                }
                self.status = Some(TaskStatus::Ready);
            }
            KernelV1Kind::TaskClaimed => {
                self.status = Some(TaskStatus::Active);
                self.claimed_at = Some(at());
                self.claimed_by = text(fields, "by");
                self.session_id = text(fields, "session_id");
                self.blocked_reason = None;
                self.wait_for = None;
            }
            KernelV1Kind::TaskBlocked => {
                self.status = Some(TaskStatus::Blocked);
                self.blocked_reason = text(fields, "reason");
                self.wait_for = None;
            }
            KernelV1Kind::TaskUnblocked | KernelV1Kind::TaskResumed => {
                self.status = Some(TaskStatus::Active);
                self.blocked_reason = None;
                self.wait_for = None;
                if let Some(run) = self.current_run_mut() {
                    if run.status == RunStatus::Paused {
                        run.status = RunStatus::Executing;
                        run.reason = None;
                    }
                }
            }
            KernelV1Kind::TaskWaiting => {
                self.status = Some(TaskStatus::Waiting);
                self.blocked_reason = text(fields, "reason");
                self.wait_for = text(fields, "wait_for");
            }
            KernelV1Kind::TaskCompleted => {
                self.status = Some(TaskStatus::Done);
                self.completed_at = Some(at());
                self.blocked_reason = None;
                self.wait_for = None;
            }
            KernelV1Kind::TaskReleased => {
                self.status = Some(TaskStatus::Ready);
                self.session_id = None;
                self.blocked_reason = None;
                self.wait_for = None;
            }
            KernelV1Kind::RunStarted => {
                let run_id = text(fields, "run_id").unwrap_or_default();
                let run = Run {
                    run_id: run_id.clone(),
                    task_id: task_id.to_string(),
                    status: RunStatus::Executing,
                    started_at: at(),
                    completed_at: None,
                    by: text(fields, "by").unwrap_or_else(|| "unknown".into()),
                    session_id: text(fields, "session_id").unwrap_or_else(|| "unknown".into()),
                    reason: None,
                    evidence_refs: Vec::new(),
                };
                // A restarted run id keeps its place in the history.
                self.runs.insert(run_id.clone(), run);
                self.current_run = Some(run_id);
            }
            KernelV1Kind::RunPaused | KernelV1Kind::RunFailed | KernelV1Kind::RunSucceeded => {
                let run_id = text(fields, "run_id").unwrap_or_default();
                let run = self.runs.entry(run_id.clone()).or_insert_with(|| Run {
                    run_id: run_id.clone(),
                    task_id: task_id.to_string(),
                    status: RunStatus::Planned,
                    started_at: timestamp.to_string(),
                    completed_at: None,
                    by: "unknown".into(),
                    session_id: "unknown".into(),
                    reason: None,
                    evidence_refs: Vec::new(),
                });
                match kind_enum {
                    KernelV1Kind::RunPaused => {
                        run.status = RunStatus::Paused;
                        run.reason = text(fields, "reason");
                    }
                    KernelV1Kind::RunFailed => {
                        run.status = RunStatus::Failed;
                        run.completed_at = Some(timestamp.to_string());
                        run.reason = text(fields, "reason");
                        run.evidence_refs = texts(fields, "evidence_refs");
                    }
                    _ => {
                        run.status = RunStatus::Succeeded;
                        run.completed_at = Some(timestamp.to_string());
                        run.reason = None;
                        run.evidence_refs = texts(fields, "evidence_refs");
                    }
                }
                self.current_run = Some(run_id);
            }
            _ => {}
        }
        Ok(())
    }

    fn current_run_mut(&mut self) -> Option<&mut Run> {
        let id = self.current_run.as_ref()?;
        self.runs.get_mut(id)
    }

    /// Whether a `task_created` has been folded.
    pub fn is_created(&self) -> bool {
        self.created.is_some()
    }

    /// `spec_hash` of the first `task_created`.
    pub fn spec_hash(&self) -> Option<&str> {
        self.created.as_ref().map(|c| c.spec_hash.as_str())
    }

    pub fn status(&self) -> TaskStatus {
        self.status.unwrap_or(TaskStatus::Ready)
    }

    pub fn run_count(&self) -> u32 {
        u32::try_from(self.runs.len()).unwrap_or(u32::MAX)
    }

    pub fn current_run(&self) -> Option<&Run> {
        self.current_run.as_ref().and_then(|id| self.runs.get(id))
    }

    /// Every run, in the order they started.
    pub fn runs(&self) -> Vec<Run> {
        self.runs.values().cloned().collect()
    }

    /// Chain hash of the task's last event.
    pub fn last_hash(&self) -> Option<&str> {
        self.last_hash.as_deref()
    }

    /// The state, with the spec facts and the display alias filled in.
    pub fn state(
        &self,
        task_id: &str,
        spec: &super::spec::TaskSpec,
        aliases: &StateAliases,
    ) -> TaskState {
        let status = self.status();
        TaskState {
            task_id: task_id.to_string(),
            status,
            display_status: aliases.display(status).to_string(),
            claimed_at: self.claimed_at.clone(),
            claimed_by: self.claimed_by.clone(),
            session_id: self.session_id.clone(),
            blocked_reason: self.blocked_reason.clone(),
            wait_for: self.wait_for.clone(),
            completed_at: self.completed_at.clone(),
            current_run: self.current_run().cloned(),
            run_count: self.run_count(),
            lane_id: spec.lane_id.clone(),
            domain: spec.domain.clone(),
            declared_scopes: spec.declared_scopes.clone(),
            spec_hash: self
                .created
                .as_ref()
                .map(|c| c.spec_hash.clone())
                .unwrap_or_default(),
            created_at: self
                .created
                .as_ref()
                .map(|c| c.at.clone())
                .unwrap_or_default(),
            updated_at: self.updated_at.clone(),
            event_count: self.event_count,
            last_seq: self.last_seq,
        }
    }
}
