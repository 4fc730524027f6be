//! Tasks (KRN-14): the original's task spec, states and transitions (`original/dispatch.md` §5),
//! with guards that check the *source* state, and the runtime operations over the event log.
//!
//! # Storage
//!
//! - the spec of task `<id>` is `<workspace>/.lumenflow/kernel/tasks/<id>.yaml`, written once:
//!   temp file, fsync, `link` to the final name (so creation is exclusive and the file is never
//!   seen half written), directory fsync. A second create is `TASK_EXISTS`. The file keeps the
//!   author's text (comments included); it is validated strictly: an unknown key is an error with
//!   a did-you-mean, and every error names file, line and field;
//! - `task_created` carries `spec_hash`, the RFC 8785 canonical hash of the *parsed* spec
//!   ([`TaskSpec::hash`]); if appending it fails, the spec file is removed again. A spec file
//!   left by a crash between the two (no `task_created`) is adopted by a create with the same
//!   bytes and reported as an orphan otherwise;
//! - everything else is events in the kernel event log (v1 kinds, `original/dispatch.md` §4.5).
//!   A task exists once its `task_created` is in the log.
//!
//! # States and operations
//!
//! The transition table is the original's ([`TaskStatus::allowed_next`]): ready → active;
//! active → blocked | waiting | done | ready; blocked → active | done; waiting → active | done;
//! done is terminal. Each operation may start only from its own states
//! ([`TaskAction::sources`]); anything else is `TASK_ILLEGAL_TRANSITION` with the original's
//! message (`Illegal state transition for <id>: <from> -> <to>[ (…)]. Allowed next states: …`):
//!
//! | operation | from | events (one `append_batch`, one timestamp) |
//! |---|---|---|
//! | `claim` | ready | `on_claim` policy (deny refuses), `task_claimed`, `run_started` |
//! | `block` | active | `task_blocked`, `run_paused` |
//! | `unblock` | blocked | `task_unblocked` (the paused run executes again) |
//! | `wait` | active | `task_waiting` (`reason`, `wait_for`), `run_paused` |
//! | `resume` | waiting | `task_resumed` (the paused run executes again) |
//! | `release` | active | `run_failed` (`released: <reason>`), `task_released` |
//! | `fail_run` | active | `run_failed`, `task_released`: the task is ready for a new run |
//! | `complete` | active, blocked, waiting | `on_completion` policy (deny refuses), `run_succeeded`, `task_completed` |
//! | `checkpoint` | active, blocked, waiting | `checkpoint` (`run_id`, `note`, `progress`) |
//!
//! Claim and completion evaluate the policy cascade with the workspace `policies:`, the lane's
//! `policy_overrides`, the loaded packs' manifest policies (context: task id, lane, pack = the
//! task's domain, the run id) and the task's pack facts ([`facts_path`]: what a pack's tools
//! recorded, read by `when.facts` rules, so a failed gate can refuse a completion). As in the original, `approval_required` does not stop them (there
//! is no approval flow for claims); the outcome reports it.
//!
//! # Projection
//!
//! [`TaskStore::get_state`] replays *every* event of the task (no page limit), folds them in log
//! order ([`Projector`]) and checks the spec file against `task_created.spec_hash`: a changed,
//! unparsable or removed spec is `SPEC_TAMPERED`, naming both hashes when it can. State aliases
//! of the packs change only `display_status`.
//!
//! # Concurrency
//!
//! Operations on one log are serialized within the process (every store over the same log file
//! shares one lock), and each decides on a projection read through the log handle, so two
//! claims of one task never both succeed: the second sees `active`. Another process appending
//! meanwhile makes the append fail with `LOG_CONFLICT` (the log's single-writer check) instead of
//! acting on a stale projection. Reads (`get_state`, `inspect`, `list`, `check_callable`) read the
//! whole file, so they also see what another process appended.
//!
//! # The dispatch check
//!
//! [`TaskStore::check_callable`] is what a tool call asks first: an unknown task is
//! `TASK_NOT_FOUND`, a task that is not `active` (ready, blocked, waiting, done) is
//! `TASK_NOT_ACTIVE`, a tampered one `SPEC_TAMPERED`; an active task's state carries its lane,
//! declared scopes and current run.

mod error;
mod index;
mod spec;
mod state;
mod store;

pub use error::TaskError;
pub use spec::{
    is_iso_date, is_valid_task_id, parse_task_spec, task_id_problem, Acceptance, Priority, Risk,
    SpecProblem, TaskSpec, MAX_TASK_ID_LEN, SPEC_INVALID,
};
pub use state::{
    check_transition, Projector, Run, RunStatus, StateAliases, TaskAction, TaskState, TaskStatus,
};
pub use store::{
    facts_path, run_id, tasks_dir, ClaimRequest, CreatedTask, PolicyOutcome, TaskEvent,
    TaskInspection, TaskProblem, TaskStore, TaskSummary, TaskUpdate, TASKS_RELATIVE_DIR,
};
