//! Errors of the task store, each with a stable `code()`.

use std::io;
use std::path::PathBuf;

use crate::diagnostics::Diagnostics;
use crate::eventlog::LogError;
use crate::policy::{Effect, PolicyDecision};

use super::state::{TaskAction, TaskStatus};

/// Why a task operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// No `task_created` event for this id (also for ids that cannot be task ids at all).
    #[error("Task spec not found for {task}")]
    NotFound { task: String },
    /// The id is not a safe file name (`^[A-Za-z0-9][A-Za-z0-9._-]*$`, no `..`).
    #[error("invalid task id `{id}`: {reason}")]
    InvalidId { id: String, reason: String },
    /// A task with this id was created before; specs are immutable.
    #[error("Task spec already exists for {task} and is immutable.")]
    Exists {
        task: String,
        path: PathBuf,
        /// The spec file exists but the log has no `task_created` for it (an interrupted create
        /// with other content): remove the file to create the task again.
        orphan: bool,
    },
    /// The spec file is not a valid task spec; every diagnostic names file, line and field.
    #[error("{0}")]
    SpecInvalid(Diagnostics),
    /// The transition is not allowed from the task's current state.
    #[error("{}", illegal_message(task, *action, *from, *to, allowed))]
    IllegalTransition {
        task: String,
        action: TaskAction,
        from: TaskStatus,
        to: TaskStatus,
        /// The states the transition table allows next from `from`.
        allowed: Vec<TaskStatus>,
    },
    /// Tool calls need an `active` task.
    #[error("Task {task} is {status}, not active: {}", not_active_hint(task, *status))]
    NotActive { task: String, status: TaskStatus },
    /// The operation needs the task's current run and there is none in progress.
    #[error("Cannot {action} {task}: no active run found.")]
    NoActiveRun { task: String, action: &'static str },
    /// A policy rule denied the claim or the completion.
    #[error("Policy denied {action} for {task}: {}", deny_reasons(decisions))]
    PolicyDenied {
        task: String,
        /// `claim` or `completion`.
        action: &'static str,
        /// Every decision of the evaluation (the deny ones are named in the message).
        decisions: Vec<PolicyDecision>,
    },
    /// The stored spec no longer is the spec the task was created with.
    #[error("{}", tampered_message(task, expected, actual.as_deref(), problem.as_deref()))]
    SpecTampered {
        task: String,
        path: PathBuf,
        /// `spec_hash` of the `task_created` event.
        expected: String,
        /// Canonical hash of the spec file as it is now (`None` when it cannot be read or parsed).
        actual: Option<String>,
        /// Why the file could not be hashed, when it could not.
        problem: Option<String>,
    },
    /// The task's lane is not (or no longer) declared in `workspace.yaml`, so its lane policies
    /// cannot be evaluated.
    #[error("lane `{lane}` of task {task} is not declared in workspace.yaml")]
    LaneUnknown { task: String, lane: String },
    /// An argument of the operation is invalid (an empty reason, ...).
    #[error("`{field}` {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// The log holds a task event the store cannot read (a `task_created` without `spec_hash`).
    #[error("event log record {seq} ({kind}) of task {task}: {problem}")]
    BadRecord {
        task: String,
        seq: u64,
        kind: String,
        problem: String,
    },
    /// `workspace.yaml` could not be read.
    #[error("{0}")]
    Workspace(Diagnostics),
    /// The event log refused the append or could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Reading or writing a spec file failed.
    #[error("task spec `{}`: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// What makes a task of `status` callable again: a done task never is, so its refusal must not
/// tell the caller to claim it.
fn not_active_hint(task: &str, status: TaskStatus) -> String {
    match status {
        TaskStatus::Ready => format!("tool calls are refused until it is claimed (`lumenflow task claim {task}`)"),
        TaskStatus::Blocked => format!("tool calls are refused until it is unblocked (`lumenflow task unblock {task}`)"),
        TaskStatus::Waiting => format!("tool calls are refused until it is resumed (`lumenflow task resume {task}`)"),
        TaskStatus::Done => "a done task takes no more tool calls; create a new task for further work, or call the tool without `--task`".to_string(),
        TaskStatus::Active => "tool calls are refused until it is claimed".to_string(),
    }
}

impl TaskError {
    /// Stable code: `TASK_NOT_FOUND`, `TASK_ID_INVALID`, `TASK_EXISTS`, `TASK_SPEC_INVALID`,
    /// `TASK_ILLEGAL_TRANSITION`, `TASK_NOT_ACTIVE`, `TASK_NO_ACTIVE_RUN`, `POLICY_DENIED`,
    /// `SPEC_TAMPERED`, `TASK_LANE_UNKNOWN`, `TASK_INVALID_ARGUMENT`, `TASK_LOG_INVALID`,
    /// `WORKSPACE_INVALID` (or the workspace diagnostic's own code), `TASK_IO`, or the event
    /// log's code (`LOG_IO`, `LOG_CONFLICT`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            TaskError::NotFound { .. } => "TASK_NOT_FOUND",
            TaskError::InvalidId { .. } => "TASK_ID_INVALID",
            TaskError::Exists { .. } => "TASK_EXISTS",
            TaskError::SpecInvalid(_) => "TASK_SPEC_INVALID",
            TaskError::IllegalTransition { .. } => "TASK_ILLEGAL_TRANSITION",
            TaskError::NotActive { .. } => "TASK_NOT_ACTIVE",
            TaskError::NoActiveRun { .. } => "TASK_NO_ACTIVE_RUN",
            TaskError::PolicyDenied { .. } => "POLICY_DENIED",
            TaskError::SpecTampered { .. } => "SPEC_TAMPERED",
            TaskError::LaneUnknown { .. } => "TASK_LANE_UNKNOWN",
            TaskError::InvalidArgument { .. } => "TASK_INVALID_ARGUMENT",
            TaskError::BadRecord { .. } => "TASK_LOG_INVALID",
            TaskError::Workspace(d) => d.0.first().map(|d| d.code).unwrap_or("WORKSPACE_INVALID"),
            TaskError::Log(e) => e.code(),
            TaskError::Io { .. } => "TASK_IO",
        }
    }

    /// What to do about it, when there is something to say.
    pub fn help(&self) -> Option<String> {
        match self {
            TaskError::NotFound { .. } => {
                Some("create it first with `lumenflow task create --spec FILE`".into())
            }
            TaskError::Exists {
                path, orphan: true, ..
            } => Some(format!(
                "`{}` was left by an interrupted create (the event log has no task_created for it) \
                 and differs from this spec; remove it and create the task again",
                path.display()
            )),
            TaskError::Exists { .. } => {
                Some("task specs are immutable: create a task with a new id instead".into())
            }
            TaskError::IllegalTransition { action, .. } => Some(format!(
                "`{}` applies only to {} tasks",
                action.as_str(),
                join_states(action.sources())
            )),
            TaskError::SpecTampered { path, .. } => Some(format!(
                "restore `{}` to the content it was created with; task specs are immutable",
                path.display()
            )),
            TaskError::LaneUnknown { .. } => {
                Some("declare the lane again in workspace.yaml `lanes:`".into())
            }
            _ => None,
        }
    }
}

/// `ready, active` / `(none)`.
pub(crate) fn join_states(states: &[TaskStatus]) -> String {
    if states.is_empty() {
        "(none)".to_string()
    } else {
        states
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The original's message (`Illegal state transition for <id>: <from> -> <to>[ (done is a
/// terminal state)]. Allowed next states: <list or (none)>`), naming the operation when the
/// table would allow the pair but the operation does not start from `from`.
fn illegal_message(
    task: &str,
    action: TaskAction,
    from: TaskStatus,
    to: TaskStatus,
    allowed: &[TaskStatus],
) -> String {
    let why = if from == TaskStatus::Done {
        " (done is a terminal state)".to_string()
    } else if allowed.contains(&to) {
        format!(
            " (`{}` applies only to {} tasks)",
            action.as_str(),
            join_states(action.sources())
        )
    } else {
        String::new()
    };
    format!(
        "Illegal state transition for {task}: {} -> {}{why}. Allowed next states: {}",
        from.as_str(),
        to.as_str(),
        join_states(allowed)
    )
}

fn deny_reasons(decisions: &[PolicyDecision]) -> String {
    let reasons: Vec<String> = decisions
        .iter()
        .filter(|d| d.decision == Effect::Deny)
        .map(|d| match &d.reason {
            Some(r) => format!("{} ({})", r, d.policy_id),
            None => d.policy_id.clone(),
        })
        .collect();
    if reasons.is_empty() {
        "denied by the effective policy".to_string()
    } else {
        reasons.join("; ")
    }
}

fn tampered_message(
    task: &str,
    expected: &str,
    actual: Option<&str>,
    problem: Option<&str>,
) -> String {
    match (actual, problem) {
        (Some(actual), _) => {
            format!("Spec hash mismatch for {task}: expected {expected}, actual {actual}")
        }
        (None, Some(problem)) => format!(
            "Spec of {task} was altered or removed after creation ({problem}); expected hash {expected}"
        ),
        (None, None) => format!(
            "Spec of {task} was altered or removed after creation; expected hash {expected}"
        ),
    }
}
