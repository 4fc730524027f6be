//! The task store: immutable spec files plus the event log, and the runtime operations.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_contracts::kinds::KernelV1Kind;
use lumenflow_contracts::time::Timestamp;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::diagnostics::SourceFile;
use crate::eventlog::{v1_record, Appended, EventLog, LogRecord};
use crate::file_lock::LockFile;
use crate::manifest::PackManifest;
use crate::policy::{self, to_tool_call_decisions, Effect, EvalContext, PolicyDecision, Trigger};
use crate::workspace::{self, WorkspaceDocument, WorkspaceSpec};

use super::error::TaskError;
use super::index::{self, TaskIndex};
use super::spec::{is_valid_task_id, parse_task_spec, task_id_problem, TaskSpec};
use super::state::{
    check_transition, Projector, Run, StateAliases, TaskAction, TaskState, TaskStatus,
};

/// Where specs live, relative to the workspace root.
pub const TASKS_RELATIVE_DIR: &str = ".lumenflow/kernel/tasks";

/// The file beside the event log whose exclusive `flock` every process holds for a task
/// operation. The log's own lock cannot serve: it is taken and released by each commit, and
/// `flock` locks are not counted, so a commit ending inside an operation would release it.
pub const OPERATIONS_LOCK_FILE: &str = "tasks.lock";

/// `<workspace>/.lumenflow/kernel/tasks`.
pub fn tasks_dir(workspace_dir: &Path) -> PathBuf {
    workspace_dir.join(TASKS_RELATIVE_DIR)
}

/// Where a pack's facts about a task live, under the pack's own state folder:
/// `.lumenflow/state/<slug>/facts/<task-id>.json`, a JSON object the pack writes (its tools may
/// write `.lumenflow/state/<slug>/**`) and its `when.facts` rules read on claim and completion.
pub fn facts_path(workspace_dir: &Path, pack_slug: &str, task_id: &str) -> PathBuf {
    workspace_dir
        .join(workspace::STATE_DIR)
        .join("state")
        .join(pack_slug)
        .join("facts")
        .join(format!("{task_id}.json"))
}

/// What `claim` needs besides the task id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimRequest {
    /// Who claims (an agent or a person); non-empty.
    pub by: String,
    /// The claiming session; non-empty.
    pub session_id: String,
    /// Optional pack data recorded in `task_claimed`.
    pub domain_data: Option<Map<String, Value>>,
}

impl ClaimRequest {
    pub fn new(by: impl Into<String>, session_id: impl Into<String>) -> Self {
        ClaimRequest {
            by: by.into(),
            session_id: session_id.into(),
            domain_data: None,
        }
    }
}

/// One event as appended: its place in the chain and its content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEvent {
    pub seq: u64,
    pub hash: String,
    pub timestamp: String,
    pub kind: String,
    /// The event's own fields (`task_id`, `run_id`, `reason`, ...), without `kind`/`timestamp`.
    pub fields: Map<String, Value>,
}

impl TaskEvent {
    fn from_record(r: &LogRecord) -> Self {
        TaskEvent {
            seq: r.seq,
            hash: r.hash.clone(),
            timestamp: r.timestamp.clone(),
            kind: r.kind.clone(),
            fields: r.fields.clone(),
        }
    }
}

/// The policy evaluation of a claim or completion, as returned to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyOutcome {
    pub trigger: Trigger,
    /// The effective decision. `approval_required` does not stop a claim or completion (as in
    /// the original, which has no approval flow for them); it is reported here.
    pub decision: Effect,
    /// The decisions, as a tool call would record them (never empty).
    pub decisions: Vec<PolicyDecision>,
    pub warnings: Vec<String>,
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskUpdate {
    pub task_id: String,
    /// `create`, `claim`, ..., `checkpoint`.
    pub action: &'static str,
    /// The state after the operation.
    pub state: TaskState,
    /// The events appended, in order (one commit).
    pub events: Vec<TaskEvent>,
    /// The claim or completion policy evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyOutcome>,
}

/// `create`'s result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreatedTask {
    pub task_id: String,
    pub spec_path: PathBuf,
    pub spec_hash: String,
    pub state: TaskState,
    pub event: TaskEvent,
}

/// Everything about one task (`lumenflow task show`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInspection {
    pub task_id: String,
    pub spec: TaskSpec,
    pub spec_path: PathBuf,
    pub state: TaskState,
    /// Every run, in the order they started.
    pub run_history: Vec<Run>,
    /// Every v1 event of the task, in log order.
    pub events: Vec<TaskEvent>,
}

/// A problem that kept a task of `list` from projecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskProblem {
    pub code: &'static str,
    pub message: String,
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSummary {
    pub task_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane_id: Option<String>,
    /// `None` when the task could not be projected (see `problem`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_run: Option<Run>,
    pub run_count: u32,
    pub created_at: String,
    pub updated_at: String,
    pub event_count: usize,
    /// Why the task could not be projected (a tampered spec, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<TaskProblem>,
}

/// Tasks of one workspace: specs under `.lumenflow/kernel/tasks/`, events in the kernel event log.
///
/// Every operation that changes a task projects it from *all* its events, checks the guard,
/// evaluates policy where the operation has a trigger, and appends its events with one
/// `append_batch` (one commit, fsync'd before the call returns). Operations on one log are
/// serialized within the process (every store over the same log file shares one lock) and across
/// processes (an exclusive `flock` on [`OPERATIONS_LOCK_FILE`] beside the log), and each reads
/// the task's events from the file itself under both locks, so a decision is never taken on a
/// stale projection: of a sidecar and a `lumenflow task claim` claiming one task, one wins.
#[derive(Debug, Clone)]
pub struct TaskStore {
    workspace_dir: PathBuf,
    tasks_dir: PathBuf,
    workspace: WorkspaceSpec,
    log: EventLog,
    packs: Vec<PackManifest>,
    aliases: StateAliases,
    lock: Arc<Mutex<()>>,
    /// Where each task's records are in the log (shared by the stores of this process).
    index: Arc<Mutex<TaskIndex>>,
}

/// One lock per log file, shared by every store of this process writing to it.
static LOCKS: Mutex<Vec<(PathBuf, Weak<Mutex<()>>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn log_lock(path: &Path) -> Arc<Mutex<()>> {
    per_log(&LOCKS, path, || Mutex::new(()))
}

/// The `T` of the log file at `path` in `registry`, made by `make` when no live one is there:
/// what every task store of this process on one file shares.
pub(super) fn per_log<T>(
    registry: &Mutex<Vec<(PathBuf, Weak<T>)>>,
    path: &Path,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    let key = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut entries = lock(registry);
    entries.retain(|(_, w)| w.strong_count() > 0);
    if let Some(existing) = entries
        .iter()
        .filter(|(p, _)| *p == key)
        .find_map(|(_, w)| w.upgrade())
    {
        return existing;
    }
    let fresh = Arc::new(make());
    entries.push((key, Arc::downgrade(&fresh)));
    fresh
}

/// A task loaded for an operation: its verified spec and its projection.
struct Loaded {
    spec: TaskSpec,
    projector: Projector,
    records: Vec<LogRecord>,
}

fn non_blank(field: &'static str, value: &str) -> Result<String, TaskError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(TaskError::InvalidArgument {
            field,
            reason: "must not be empty".into(),
        });
    }
    Ok(trimmed.to_string())
}

fn evidence(refs: &[String]) -> Result<Vec<String>, TaskError> {
    refs.iter().map(|r| non_blank("evidence_refs", r)).collect()
}

/// A v1 record for `task_id` at `at` with `fields`.
fn record(kind: KernelV1Kind, task_id: &str, at: &str, fields: Value) -> Map<String, Value> {
    let mut map = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    map.insert("task_id".into(), Value::from(task_id));
    map.insert("timestamp".into(), Value::from(at));
    v1_record(kind, map)
}

impl TaskStore {
    /// A store for the workspace at `workspace_dir` (its `workspace.yaml` is read now) writing to
    /// `log` (normally `eventlog::default_path(workspace_dir)`). No pack is loaded: add them with
    /// [`TaskStore::with_packs`] so their policies and state aliases take part.
    pub fn open(workspace_dir: &Path, log: EventLog) -> Result<Self, TaskError> {
        let doc = workspace::read_workspace(workspace_dir).map_err(TaskError::Workspace)?;
        Ok(TaskStore::from_workspace(&doc, log))
    }

    /// A store for an already read workspace.
    pub fn from_workspace(doc: &WorkspaceDocument, log: EventLog) -> Self {
        let lock = log_lock(log.path());
        let index = index::for_log(log.path());
        TaskStore {
            workspace_dir: doc.dir.clone(),
            tasks_dir: tasks_dir(&doc.dir),
            workspace: doc.spec.clone(),
            log,
            packs: Vec::new(),
            aliases: StateAliases::default(),
            lock,
            index,
        }
    }

    /// The loaded packs: their manifest `policies` form the pack layer of claim and completion
    /// evaluations, their `state_aliases` the display names of states.
    pub fn with_packs(mut self, packs: impl IntoIterator<Item = PackManifest>) -> Self {
        self.packs = packs.into_iter().collect();
        self.aliases = StateAliases::from_packs(&self.packs);
        self
    }

    pub fn workspace_dir(&self) -> &Path {
        &self.workspace_dir
    }

    pub fn tasks_dir(&self) -> &Path {
        &self.tasks_dir
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn aliases(&self) -> &StateAliases {
        &self.aliases
    }

    /// `<tasks>/<id>.yaml`, for a valid id only (so no id ever leaves the folder).
    pub fn spec_path(&self, task_id: &str) -> Result<PathBuf, TaskError> {
        match task_id_problem(task_id) {
            None => Ok(self.tasks_dir.join(format!("{task_id}.yaml"))),
            Some(reason) => Err(TaskError::InvalidId {
                id: task_id.to_string(),
                reason,
            }),
        }
    }

    /// Parse a spec file strictly and check it against this workspace (id, lane).
    pub fn parse_spec(&self, src: &SourceFile) -> Result<TaskSpec, TaskError> {
        parse_task_spec(src, Some(&self.workspace)).map_err(TaskError::SpecInvalid)
    }

    // -----------------------------------------------------------------------------------------
    // Reading

    /// Hold [`OPERATIONS_LOCK_FILE`] until the guard drops: no other thread or process
    /// operates on a task of this log meanwhile.
    fn lock_across_processes(&self) -> Result<LockFile, TaskError> {
        let path = self.log.path().with_file_name(OPERATIONS_LOCK_FILE);
        LockFile::acquire(&path).map_err(|source| TaskError::Io { path, source })
    }

    /// The task's verified spec and projection, or `TASK_NOT_FOUND` / `SPEC_TAMPERED`.
    fn load(&self, task_id: &str) -> Result<Loaded, TaskError> {
        if !is_valid_task_id(task_id) {
            return Err(TaskError::NotFound {
                task: task_id.to_string(),
            });
        }
        let records = lock(&self.index).records(task_id)?;
        self.load_from(task_id, records)
    }

    fn load_from(&self, task_id: &str, records: Vec<LogRecord>) -> Result<Loaded, TaskError> {
        let mut projector = Projector::new();
        for r in &records {
            projector.apply(
                task_id,
                r.seq,
                Some(&r.hash),
                &r.timestamp,
                &r.kind,
                &r.fields,
            )?;
        }
        let Some(expected) = projector.spec_hash().map(str::to_string) else {
            return Err(TaskError::NotFound {
                task: task_id.to_string(),
            });
        };
        let spec = self.verified_spec(task_id, &expected)?;
        Ok(Loaded {
            spec,
            projector,
            records,
        })
    }

    /// Read the spec file and check it against `task_created.spec_hash`.
    fn verified_spec(&self, task_id: &str, expected: &str) -> Result<TaskSpec, TaskError> {
        let path = self.spec_path(task_id)?;
        let tampered = |actual: Option<String>, problem: Option<String>| TaskError::SpecTampered {
            task: task_id.to_string(),
            path: path.clone(),
            expected: expected.to_string(),
            actual,
            problem,
        };
        let src = SourceFile::read(&path).map_err(|d| tampered(None, Some(d.message)))?;
        // Strict schema only: the workspace may have changed since the task was created.
        let spec = parse_task_spec(&src, None)
            .map_err(|d| tampered(None, Some(format!("it no longer parses: {d}"))))?;
        let actual = spec.hash();
        if actual != expected {
            return Err(tampered(Some(actual), None));
        }
        if spec.id != task_id {
            return Err(tampered(
                None,
                Some(format!("it holds the spec of task `{}`", spec.id)),
            ));
        }
        Ok(spec)
    }

    /// The projected state of a task (all its events, spec hash verified).
    pub fn get_state(&self, task_id: &str) -> Result<TaskState, TaskError> {
        let loaded = self.load(task_id)?;
        Ok(loaded.projector.state(task_id, &loaded.spec, &self.aliases))
    }

    /// The verified spec of a task.
    pub fn get_spec(&self, task_id: &str) -> Result<TaskSpec, TaskError> {
        Ok(self.load(task_id)?.spec)
    }

    /// Spec, state, run history and events of a task.
    pub fn inspect(&self, task_id: &str) -> Result<TaskInspection, TaskError> {
        let loaded = self.load(task_id)?;
        Ok(TaskInspection {
            task_id: task_id.to_string(),
            spec_path: self.spec_path(task_id)?,
            state: loaded.projector.state(task_id, &loaded.spec, &self.aliases),
            run_history: loaded.projector.runs(),
            events: loaded.records.iter().map(TaskEvent::from_record).collect(),
            spec: loaded.spec,
        })
    }

    /// The check the dispatch path makes before a tool call for `task_id`: the task exists
    /// (`TASK_NOT_FOUND` otherwise), its spec is intact (`SPEC_TAMPERED`) and it is `active`
    /// (`TASK_NOT_ACTIVE` otherwise: ready, blocked, waiting or done). On success, the state
    /// carries the lane, the declared scopes and the current run for the receipt.
    pub fn check_callable(&self, task_id: &str) -> Result<TaskState, TaskError> {
        let state = self.get_state(task_id)?;
        if state.status != TaskStatus::Active {
            return Err(TaskError::NotActive {
                task: task_id.to_string(),
                status: state.status,
            });
        }
        Ok(state)
    }

    /// Every task of the log, in creation order. A task that cannot be projected (a tampered
    /// spec, ...) is listed with its `problem` instead of failing the list.
    pub fn list(&self) -> Result<Vec<TaskSummary>, TaskError> {
        let by_task = lock(&self.index).all()?;
        let mut out = Vec::new();
        for (task_id, records) in by_task {
            if !records
                .iter()
                .any(|r| r.kind == KernelV1Kind::TaskCreated.as_str())
            {
                continue;
            }
            let first = records.first().map(|r| r.timestamp.clone());
            let last = records.last().map(|r| r.timestamp.clone());
            let count = records.len();
            out.push(match self.load_from(&task_id, records) {
                Ok(loaded) => {
                    let s = loaded
                        .projector
                        .state(&task_id, &loaded.spec, &self.aliases);
                    TaskSummary {
                        task_id,
                        title: Some(loaded.spec.title.clone()),
                        lane_id: Some(s.lane_id.clone()),
                        status: Some(s.status),
                        display_status: Some(s.display_status.clone()),
                        claimed_by: s.claimed_by.clone(),
                        current_run: s.current_run.clone(),
                        run_count: s.run_count,
                        created_at: s.created_at.clone(),
                        updated_at: s.updated_at.clone(),
                        event_count: s.event_count,
                        problem: None,
                    }
                }
                Err(e) => TaskSummary {
                    task_id,
                    title: None,
                    lane_id: None,
                    status: None,
                    display_status: None,
                    claimed_by: None,
                    current_run: None,
                    run_count: 0,
                    created_at: first.unwrap_or_default(),
                    updated_at: last.unwrap_or_default(),
                    event_count: count,
                    problem: Some(TaskProblem {
                        code: e.code(),
                        message: e.to_string(),
                    }),
                },
            });
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Creating

    /// Create a task from a spec file's text: strict parse (errors name file, line and field),
    /// workspace checks, then the exclusive, atomic write of the file and `task_created`.
    pub fn create_from_source(&self, src: &SourceFile) -> Result<CreatedTask, TaskError> {
        let spec = self.parse_spec(src)?;
        self.create_checked(&spec, src.text.as_bytes())
    }

    /// Create a task from a spec value (stored as YAML). Validated as a file would be.
    pub fn create(&self, spec: &TaskSpec) -> Result<CreatedTask, TaskError> {
        let name = match task_id_problem(&spec.id) {
            None => format!("{}.yaml", spec.id),
            Some(_) => "task spec".to_string(),
        };
        let src = SourceFile::new(name, spec.to_yaml());
        self.create_from_source(&src)
    }

    /// Store the spec at `<tasks>/<id>.yaml` (exclusive, atomic: temp file, fsync, link) and
    /// append `task_created` with its hash; if the append fails, the spec file is removed again.
    fn create_checked(&self, spec: &TaskSpec, bytes: &[u8]) -> Result<CreatedTask, TaskError> {
        let task_id = spec.id.as_str();
        let path = self.spec_path(task_id)?;
        let _guard = lock(&self.lock);
        let _across = self.lock_across_processes()?;
        match self.load(task_id) {
            Err(TaskError::NotFound { .. }) => {}
            Ok(_) | Err(TaskError::SpecTampered { .. }) => {
                return Err(TaskError::Exists {
                    task: task_id.to_string(),
                    path,
                    orphan: false,
                })
            }
            Err(other) => return Err(other),
        }
        let created_file = self.publish(task_id, &path, bytes)?;
        let spec_hash = spec.hash();
        let at = Timestamp::now().to_rfc3339();
        let rec = record(
            KernelV1Kind::TaskCreated,
            task_id,
            &at,
            json!({"spec_hash": spec_hash}),
        );
        let appended = match self.log.append_batch(vec![rec.clone()]) {
            Ok(a) => a,
            Err(e) => {
                if created_file {
                    let _ = fs::remove_file(&path);
                    let _ = sync_dir(&self.tasks_dir);
                }
                return Err(e.into());
            }
        };
        let mut projector = Projector::new();
        let events = apply_appended(&mut projector, task_id, vec![rec], &appended)?;
        let event = events.into_iter().next().ok_or_else(|| {
            TaskError::Log(crate::eventlog::LogError::Failed {
                path: self.log.path().to_path_buf(),
                reason: "the commit acknowledged no record".into(),
            })
        })?;
        Ok(CreatedTask {
            task_id: task_id.to_string(),
            spec_path: path,
            spec_hash,
            state: projector.state(task_id, spec, &self.aliases),
            event,
        })
    }

    /// Publish the spec file; `true` if this call created it, `false` if an identical orphan
    /// (left by a create interrupted before its event) was adopted.
    fn publish(&self, task_id: &str, path: &Path, bytes: &[u8]) -> Result<bool, TaskError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TaskError::Io { path, source }
        };
        if !self.tasks_dir.is_dir() {
            fs::create_dir_all(&self.tasks_dir).map_err(io_err(&self.tasks_dir))?;
            if let Some(parent) = self.tasks_dir.parent() {
                sync_dir(parent).map_err(io_err(parent))?;
            }
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".task-tmp-")
            .tempfile_in(&self.tasks_dir)
            .map_err(io_err(&self.tasks_dir))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_err(tmp.path()))?;
        set_readable(tmp.path()).map_err(io_err(tmp.path()))?;
        match fs::hard_link(tmp.path(), path) {
            Ok(()) => {
                sync_dir(&self.tasks_dir).map_err(io_err(&self.tasks_dir))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // No task_created for it (checked under the lock): an interrupted create.
                let existing = fs::read(path).map_err(io_err(path))?;
                if existing == bytes {
                    Ok(false)
                } else {
                    Err(TaskError::Exists {
                        task: task_id.to_string(),
                        path: path.to_path_buf(),
                        orphan: true,
                    })
                }
            }
            Err(e) => Err(TaskError::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
        // `tmp` is removed when dropped.
    }

    // -----------------------------------------------------------------------------------------
    // Operations

    /// Load the task under the lock, let `build` check and produce the records (all stamped
    /// with one timestamp), append them in one batch and return the new state.
    fn operate(
        &self,
        task_id: &str,
        action: &'static str,
        build: impl FnOnce(
            &Loaded,
            &str,
        )
            -> Result<(Vec<Map<String, Value>>, Option<PolicyOutcome>), TaskError>,
    ) -> Result<TaskUpdate, TaskError> {
        let _guard = lock(&self.lock);
        let _across = self.lock_across_processes()?;
        let mut loaded = self.load(task_id)?;
        let at = Timestamp::now().to_rfc3339();
        let (records, policy) = build(&loaded, &at)?;
        let appended = self.log.append_batch(records.clone())?;
        let events = apply_appended(&mut loaded.projector, task_id, records, &appended)?;
        Ok(TaskUpdate {
            task_id: task_id.to_string(),
            action,
            state: loaded.projector.state(task_id, &loaded.spec, &self.aliases),
            events,
            policy,
        })
    }

    /// Evaluate `trigger` for the task with the workspace, lane and pack layers.
    fn evaluate(
        &self,
        task_id: &str,
        spec: &TaskSpec,
        trigger: Trigger,
        run_id: &str,
        action: &'static str,
    ) -> Result<PolicyOutcome, TaskError> {
        let Some(lane) = self.workspace.lane(&spec.lane_id) else {
            // Without the lane its policy_overrides cannot be applied: refuse (fail closed).
            return Err(TaskError::LaneUnknown {
                task: task_id.to_string(),
                lane: spec.lane_id.clone(),
            });
        };
        let layers = policy::layers_for(
            self.workspace.policies.as_ref(),
            lane.policy_overrides.as_ref(),
            self.packs.iter(),
            &[],
        );
        let facts = match self.facts(task_id) {
            Ok(facts) => facts,
            // Facts that cannot be read are a deny naming the problem (fail closed).
            Err(problem) => {
                return Err(TaskError::PolicyDenied {
                    task: task_id.to_string(),
                    action,
                    decisions: vec![PolicyDecision::new(
                        policy::POLICY_EVALUATION_ERROR,
                        Effect::Deny,
                        Some(problem),
                    )],
                })
            }
        };
        let ctx = EvalContext::new(trigger, run_id)
            .with_task(task_id)
            .with_lane(&spec.lane_id)
            .with_pack(&spec.domain)
            .with_facts(facts);
        let evaluation = policy::evaluate(&layers, &ctx);
        let decisions = to_tool_call_decisions(&evaluation);
        if evaluation.decision == Effect::Deny {
            return Err(TaskError::PolicyDenied {
                task: task_id.to_string(),
                action,
                decisions,
            });
        }
        Ok(PolicyOutcome {
            trigger,
            decision: evaluation.decision,
            decisions,
            warnings: evaluation.warnings,
        })
    }

    /// The facts the loaded packs recorded about `task_id`, by pack slug ([`facts_path`]). A
    /// missing file is no facts; an unreadable one, or one that is not a JSON object, is an error.
    fn facts(&self, task_id: &str) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        for pack in &self.packs {
            let slug = pack.slug();
            let path = facts_path(&self.workspace_dir, slug, task_id);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(format!(
                        "the facts of pack `{slug}` about task `{task_id}` cannot be read: {e}"
                    ))
                }
            };
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(value @ Value::Object(_)) => {
                    out.insert(slug.to_string(), value);
                }
                _ => {
                    return Err(format!(
                        "the facts of pack `{slug}` about task `{task_id}` (`{}`) are not a JSON object",
                        path.display()
                    ))
                }
            }
        }
        Ok(out)
    }

    /// `ready → active`: evaluate `on_claim` (deny refuses), then append `task_claimed` and
    /// `run_started` (same timestamp, one commit). The run id is `run-<task>-<n>-<8 hex>`, n the
    /// run number, the hex from a hash of the claim and the task's last event.
    pub fn claim(&self, task_id: &str, request: ClaimRequest) -> Result<TaskUpdate, TaskError> {
        let by = non_blank("by", &request.by)?;
        let session_id = non_blank("session_id", &request.session_id)?;
        self.operate(task_id, "claim", |loaded, at| {
            check_transition(task_id, TaskAction::Claim, loaded.projector.status())?;
            let n = loaded.projector.run_count().saturating_add(1);
            let run_id = run_id(
                task_id,
                n,
                &by,
                &session_id,
                at,
                loaded.projector.last_hash().unwrap_or(""),
            );
            let outcome =
                self.evaluate(task_id, &loaded.spec, Trigger::OnClaim, &run_id, "claim")?;
            let mut claimed = json!({"by": by, "session_id": session_id});
            if let (Some(data), Value::Object(m)) = (&request.domain_data, &mut claimed) {
                m.insert("domain_data".into(), Value::Object(data.clone()));
            }
            Ok((
                vec![
                    record(KernelV1Kind::TaskClaimed, task_id, at, claimed),
                    record(
                        KernelV1Kind::RunStarted,
                        task_id,
                        at,
                        json!({"run_id": run_id, "by": by, "session_id": session_id}),
                    ),
                ],
                Some(outcome),
            ))
        })
    }

    /// `active → blocked`: `task_blocked` (trimmed reason, non-empty), and `run_paused` for the
    /// executing run.
    pub fn block(&self, task_id: &str, reason: &str) -> Result<TaskUpdate, TaskError> {
        let reason = non_blank("reason", reason)?;
        self.operate(task_id, "block", |loaded, at| {
            check_transition(task_id, TaskAction::Block, loaded.projector.status())?;
            let mut records = vec![record(
                KernelV1Kind::TaskBlocked,
                task_id,
                at,
                json!({"reason": reason}),
            )];
            records.extend(pause_run(loaded, task_id, at, &reason));
            Ok((records, None))
        })
    }

    /// `blocked → active`: `task_unblocked` (the paused run executes again).
    pub fn unblock(&self, task_id: &str) -> Result<TaskUpdate, TaskError> {
        self.operate(task_id, "unblock", |loaded, at| {
            check_transition(task_id, TaskAction::Unblock, loaded.projector.status())?;
            Ok((
                vec![record(KernelV1Kind::TaskUnblocked, task_id, at, json!({}))],
                None,
            ))
        })
    }

    /// `active → waiting`: `task_waiting` (reason, optional `wait_for` such as an approval id),
    /// and `run_paused` for the executing run.
    pub fn wait(
        &self,
        task_id: &str,
        reason: &str,
        wait_for: Option<&str>,
    ) -> Result<TaskUpdate, TaskError> {
        let reason = non_blank("reason", reason)?;
        let wait_for = wait_for.map(|w| non_blank("wait_for", w)).transpose()?;
        self.operate(task_id, "wait", |loaded, at| {
            check_transition(task_id, TaskAction::Wait, loaded.projector.status())?;
            let mut fields = json!({"reason": reason});
            if let (Some(w), Value::Object(m)) = (&wait_for, &mut fields) {
                m.insert("wait_for".into(), Value::from(w.as_str()));
            }
            let mut records = vec![record(KernelV1Kind::TaskWaiting, task_id, at, fields)];
            records.extend(pause_run(loaded, task_id, at, &reason));
            Ok((records, None))
        })
    }

    /// `waiting → active`: `task_resumed` (the paused run executes again).
    pub fn resume(&self, task_id: &str) -> Result<TaskUpdate, TaskError> {
        self.operate(task_id, "resume", |loaded, at| {
            check_transition(task_id, TaskAction::Resume, loaded.projector.status())?;
            Ok((
                vec![record(KernelV1Kind::TaskResumed, task_id, at, json!({}))],
                None,
            ))
        })
    }

    /// `active → ready`: the claimant gives the task back. The current run ends as `failed`
    /// (reason `released: <reason>`: it did not succeed, and the next claim starts a new run),
    /// then `task_released`.
    pub fn release(&self, task_id: &str, reason: &str) -> Result<TaskUpdate, TaskError> {
        let reason = non_blank("reason", reason)?;
        self.operate(task_id, "release", |loaded, at| {
            check_transition(task_id, TaskAction::Release, loaded.projector.status())?;
            let mut records = end_run(loaded, task_id, at, &format!("released: {reason}"), &[]);
            records.push(record(
                KernelV1Kind::TaskReleased,
                task_id,
                at,
                json!({"reason": reason}),
            ));
            Ok((records, None))
        })
    }

    /// `active → ready` because the run failed: `run_failed` (reason, evidence) then
    /// `task_released`, so the task can be claimed again with a new run. (In the original's
    /// projection `run_failed` alone leaves the task `active` with an ended run, from where only
    /// a completion would move it, succeeding a failed run; releasing is the honest outcome.)
    pub fn fail_run(
        &self,
        task_id: &str,
        reason: &str,
        evidence_refs: &[String],
    ) -> Result<TaskUpdate, TaskError> {
        let reason = non_blank("reason", reason)?;
        let refs = evidence(evidence_refs)?;
        self.operate(task_id, "fail_run", |loaded, at| {
            check_transition(task_id, TaskAction::FailRun, loaded.projector.status())?;
            if loaded
                .projector
                .current_run()
                .is_none_or(|r| !r.status.in_progress())
            {
                return Err(TaskError::NoActiveRun {
                    task: task_id.to_string(),
                    action: "fail the run of",
                });
            }
            let mut records = end_run(loaded, task_id, at, &reason, &refs);
            records.push(record(
                KernelV1Kind::TaskReleased,
                task_id,
                at,
                json!({"reason": format!("run failed: {reason}")}),
            ));
            Ok((records, None))
        })
    }

    /// `active | blocked | waiting → done`: evaluate `on_completion` (deny refuses), then
    /// `run_succeeded` and `task_completed`, both with the evidence refs (same timestamp, one
    /// commit). Needs a run in progress (`TASK_NO_ACTIVE_RUN`).
    pub fn complete(
        &self,
        task_id: &str,
        evidence_refs: &[String],
    ) -> Result<TaskUpdate, TaskError> {
        let refs = evidence(evidence_refs)?;
        self.operate(task_id, "complete", |loaded, at| {
            check_transition(task_id, TaskAction::Complete, loaded.projector.status())?;
            let Some(run) = loaded
                .projector
                .current_run()
                .filter(|r| r.status.in_progress())
            else {
                return Err(TaskError::NoActiveRun {
                    task: task_id.to_string(),
                    action: "complete",
                });
            };
            let outcome = self.evaluate(
                task_id,
                &loaded.spec,
                Trigger::OnCompletion,
                &run.run_id,
                "completion",
            )?;
            let mut run_fields = json!({"run_id": run.run_id});
            let mut done_fields = json!({});
            if !refs.is_empty() {
                for f in [&mut run_fields, &mut done_fields] {
                    if let Value::Object(m) = f {
                        m.insert("evidence_refs".into(), json!(refs));
                    }
                }
            }
            Ok((
                vec![
                    record(KernelV1Kind::RunSucceeded, task_id, at, run_fields),
                    record(KernelV1Kind::TaskCompleted, task_id, at, done_fields),
                ],
                Some(outcome),
            ))
        })
    }

    /// A `checkpoint` of the run in progress (task active, blocked or waiting): a note and an
    /// optional progress value (any JSON). No state change.
    pub fn checkpoint(
        &self,
        task_id: &str,
        note: &str,
        progress: Option<Value>,
    ) -> Result<TaskUpdate, TaskError> {
        let note = non_blank("note", note)?;
        self.operate(task_id, "checkpoint", |loaded, at| {
            let status = loaded.projector.status();
            let run = loaded
                .projector
                .current_run()
                .filter(|r| r.status.in_progress());
            let (Some(run), false) = (run, matches!(status, TaskStatus::Ready | TaskStatus::Done))
            else {
                return Err(TaskError::NoActiveRun {
                    task: task_id.to_string(),
                    action: "checkpoint",
                });
            };
            let mut fields = json!({"run_id": run.run_id, "note": note});
            if let (Some(p), Value::Object(m)) = (progress, &mut fields) {
                m.insert("progress".into(), p);
            }
            Ok((
                vec![record(KernelV1Kind::Checkpoint, task_id, at, fields)],
                None,
            ))
        })
    }
}

/// `run_paused` for the executing current run, if there is one.
fn pause_run(loaded: &Loaded, task_id: &str, at: &str, reason: &str) -> Option<Map<String, Value>> {
    let run = loaded
        .projector
        .current_run()
        .filter(|r| r.status == super::state::RunStatus::Executing)?;
    Some(record(
        KernelV1Kind::RunPaused,
        task_id,
        at,
        json!({"run_id": run.run_id, "reason": reason}),
    ))
}

/// `run_failed` for the current run in progress, if there is one.
fn end_run(
    loaded: &Loaded,
    task_id: &str,
    at: &str,
    reason: &str,
    refs: &[String],
) -> Vec<Map<String, Value>> {
    let Some(run) = loaded
        .projector
        .current_run()
        .filter(|r| r.status.in_progress())
    else {
        return Vec::new();
    };
    let mut fields = json!({"run_id": run.run_id, "reason": reason});
    if !refs.is_empty() {
        if let Value::Object(m) = &mut fields {
            m.insert("evidence_refs".into(), json!(refs));
        }
    }
    vec![record(KernelV1Kind::RunFailed, task_id, at, fields)]
}

/// Fold freshly appended records into `projector` and return them as events.
fn apply_appended(
    projector: &mut Projector,
    task_id: &str,
    records: Vec<Map<String, Value>>,
    appended: &[Appended],
) -> Result<Vec<TaskEvent>, TaskError> {
    let mut events = Vec::with_capacity(records.len());
    for (mut fields, ack) in records.into_iter().zip(appended) {
        let kind = match fields.remove("kind") {
            Some(Value::String(k)) => k,
            _ => String::new(),
        };
        let timestamp = match fields.remove("timestamp") {
            Some(Value::String(t)) => t,
            _ => String::new(),
        };
        projector.apply(
            task_id,
            ack.seq,
            Some(&ack.hash),
            &timestamp,
            &kind,
            &fields,
        )?;
        events.push(TaskEvent {
            seq: ack.seq,
            hash: ack.hash.clone(),
            timestamp,
            kind,
            fields,
        });
    }
    Ok(events)
}

/// `run-<task>-<n>-<8 hex>`: the hex is the start of the RFC 8785 hash of the claim (task, run
/// number, claimant, session, time) and the chain hash of the task's last event, so two claims
/// never share an id, even within one millisecond, and nothing random is needed.
pub fn run_id(
    task_id: &str,
    n: u32,
    by: &str,
    session_id: &str,
    at: &str,
    after_hash: &str,
) -> String {
    let digest = canonical_hash(&json!({
        "task_id": task_id,
        "n": n,
        "by": by,
        "session_id": session_id,
        "timestamp": at,
        "after": after_hash,
    }));
    format!("run-{task_id}-{n}-{}", digest.get(..8).unwrap_or(&digest))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Spec files are readable by everyone (`tempfile` creates them 0600).
fn set_readable(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
