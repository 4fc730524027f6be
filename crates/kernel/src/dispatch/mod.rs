//! The one dispatch path (KRN-10). Every tool call, from the CLI, the sidecar, MCP or an agent
//! turn, is [`Runtime::dispatch`] or, for async callers (the sidecar's HTTP and MCP surfaces),
//! [`Runtime::dispatch_async`], which runs the same stages (`phases`) awaiting its receipts;
//! nothing else in the product executes a tool.
//!
//! Order of a call: lookup (`TOOL_NOT_FOUND`) → input validated against `input_schema`
//! (`INVALID_INPUT`) → task state (`TASK_STATE_INVALID`) → scopes (`SCOPE_DENIED`: the four layers
//! intersected, reserved `.lumenflow/` writes, every path in the input checked after `..` and
//! symlinks are resolved) → rules (`POLICY_DENIED`) → approvals (`APPROVAL_REQUIRED`) → the
//! started receipt, durable → execute (`TOOL_EXECUTION_FAILED`, `TOOL_TIMEOUT`) → output
//! validated (`INVALID_OUTPUT`) → the finished receipt, durable. A refused call still leaves a
//! started and a finished receipt with its decisions, written in one commit.
//!
//! Receipts are records of the kernel's hash-chained event log, so they share its group commit:
//! the caller sees a result only after its receipts are fsync'd.

mod async_path;
pub mod events_out;
pub mod evidence;
pub mod freshness;
mod liveness;
pub mod open;
mod phases;
mod prepared;
mod reconcile;
pub mod registry;
pub mod subprocess;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumenflow_contracts::scope::ToolScope;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::{codes, ToolOutput};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::eventlog::{self, EventLog, LogError, ReplayFilter};
use crate::manifest::PackManifest;
use crate::policy::{self, EvalContext, PolicyDecision, ToolCallOptions};
use crate::scope::EffectiveScopes;
use crate::workspace::WorkspaceSpec;

pub use events_out::RuntimeEvents;
pub use evidence::EvidenceStore;
pub use liveness::LOCK_FILE as DISPATCHERS_LOCK_FILE;
use phases::{Admitted, Blocking, Checked, MayBlock, Refused};
pub use prepared::PreparedCache;
pub use reconcile::{check_position, RECONCILED_FILE};
pub use registry::{BuiltinCall, BuiltinFn, Implementation, RegisteredTool, ToolRegistry};

pub const TOOL_CALL_STARTED: &str = "tool_call_started";
pub const TOOL_CALL_FINISHED: &str = "tool_call_finished";

/// The output stored as evidence, or its hash and why it could not be stored.
pub(crate) type OutputEvidence = Result<evidence::Stored, (String, String)>;

/// Where a call came from; remote surfaces never see `internal_only` tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    Cli,
    Http,
    Mcp,
    Agent,
}

/// One tool call.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub tool: String,
    pub input: Value,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    /// The authenticated identity (token subject, or the local user); never a body field.
    pub caller: String,
    pub surface: Surface,
    /// The scopes of the bearer token the call came with (HTTP, MCP); `None` for a local
    /// caller. The calls a tool makes in turn (an agent turn's steps) carry them too, and may
    /// use only the tools they open (Q16): a token for `agent:execute-turn` alone cannot reach
    /// `workspace` tools through a turn.
    pub token_scopes: Option<Vec<String>>,
    /// The `jti` of that token, recorded in the started receipt: tokens of one subject given to
    /// different agents are told apart by it. Nested calls carry it too.
    pub token_id: Option<String>,
}

impl CallRequest {
    pub fn local(tool: impl Into<String>, input: Value) -> Self {
        CallRequest {
            tool: tool.into(),
            input,
            task_id: None,
            run_id: None,
            caller: "local".into(),
            surface: Surface::Cli,
            token_scopes: None,
            token_id: None,
        }
    }
}

/// What a call returned and what was recorded about it.
#[derive(Debug, Clone, Serialize)]
pub struct CallOutcome {
    pub output: ToolOutput,
    pub receipt_id: String,
    /// The run the call belongs to (the request's, or one derived from the receipt id).
    pub run_id: String,
    pub policy_decisions: Vec<PolicyDecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    pub scope_narrowed: bool,
    /// False only when even the receipts could not be written (the output then says why).
    pub recorded: bool,
}

/// The task facts the dispatch path needs; the task store implements it.
pub trait TaskGate: Send + Sync {
    /// The lane and declared scopes of a task that may run tools now, or why it may not
    /// (`(code, message)`: unknown task, task not active, ...).
    fn check_callable(&self, task_id: &str) -> Result<TaskFacts, (String, String)>;
}

#[derive(Debug, Clone)]
pub struct TaskFacts {
    pub lane_id: String,
    pub declared_scopes: Vec<ToolScope>,
    pub run_id: Option<String>,
}

/// Runs subprocess tools; the sandbox implements it (kept behind a trait so the dispatch path
/// is testable without bubblewrap, and so there is exactly one caller of it: `dispatch`).
pub trait SubprocessRunner: Send + Sync {
    fn run(&self, call: SubprocessCall<'_>) -> SubprocessResult;
}

/// One subprocess execution. Like [`BuiltinCall`], only the dispatch path can make one, so a
/// [`SubprocessRunner`] is never driven from outside it.
pub struct SubprocessCall<'a> {
    tool: &'a RegisteredTool,
    program: &'a Path,
    pack_root: &'a Path,
    export: Option<&'a str>,
    input: &'a Value,
    workspace_dir: &'a Path,
    effective: &'a EffectiveScopes,
    env: Vec<(String, String)>,
    receipt_id: &'a str,
    run_id: &'a str,
    task_id: Option<&'a str>,
    timeout: Duration,
    max_output_bytes: usize,
}

impl<'a> SubprocessCall<'a> {
    pub fn tool(&self) -> &'a RegisteredTool {
        self.tool
    }
    pub fn program(&self) -> &'a Path {
        self.program
    }
    pub fn pack_root(&self) -> &'a Path {
        self.pack_root
    }
    pub fn export(&self) -> Option<&'a str> {
        self.export
    }
    pub fn input(&self) -> &'a Value {
        self.input
    }
    pub fn workspace_dir(&self) -> &'a Path {
        self.workspace_dir
    }
    pub fn effective(&self) -> &'a EffectiveScopes {
        self.effective
    }
    /// The tool's declared `required_env`, resolved from the runtime's environment.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
    pub fn receipt_id(&self) -> &'a str {
        self.receipt_id
    }
    pub fn run_id(&self) -> &'a str {
        self.run_id
    }
    pub fn task_id(&self) -> Option<&'a str> {
        self.task_id
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    pub fn max_output_bytes(&self) -> usize {
        self.max_output_bytes
    }
}

pub struct SubprocessResult {
    pub output: ToolOutput,
    /// `bubblewrap` or `none`: recorded in the receipt.
    pub sandbox: &'static str,
}

/// Decides approvals for a call that needs one (KRN-09); the durable approvals store
/// implements it.
pub trait ApprovalGate: Send + Sync {
    /// `Ok(Some(approval_id))`: a grant bound to this tool and input hash was consumed, proceed.
    /// `Err(refusal)`: no usable grant; `refusal.approval_id` is the pending request.
    fn gate(&self, request: ApprovalAsk<'_>) -> Result<String, ApprovalRefusal>;
}

pub struct ApprovalAsk<'a> {
    pub tool: &'a str,
    pub input_hash: &'a str,
    pub task_id: Option<&'a str>,
    pub run_id: &'a str,
    pub requested_by: &'a str,
    /// Where the call came from: only a local operator's CLI is told how to grant it.
    pub surface: Surface,
    pub reasons: Vec<String>,
    pub required_approval_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ApprovalRefusal {
    pub code: String,
    pub message: String,
    pub approval_id: Option<String>,
}

/// Limits and identity of a runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub default_timeout: Duration,
    pub max_output_bytes: usize,
    pub runtime_version: String,
    /// The executable whose `__sandbox-init` subcommand relays allowlisted network traffic
    /// (the `lumenflow` binary); without it, allowlist-network tools are refused.
    pub sandbox_helper: Option<PathBuf>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            default_timeout: Duration::from_secs(60),
            max_output_bytes: 4 * 1024 * 1024,
            runtime_version: concat!("lumenflow-rs/", env!("CARGO_PKG_VERSION")).to_string(),
            sandbox_helper: None,
        }
    }
}

/// Everything a workspace needs to dispatch tool calls.
pub struct Runtime {
    pub workspace_dir: PathBuf,
    pub spec: WorkspaceSpec,
    pub config_hash: String,
    pub registry: ToolRegistry,
    pub pack_manifests: Vec<PackManifest>,
    pub log: EventLog,
    pub evidence: EvidenceStore,
    pub subprocess: Option<Arc<dyn SubprocessRunner>>,
    pub approvals: Option<Arc<dyn ApprovalGate>>,
    pub tasks: Option<Arc<dyn TaskGate>>,
    pub options: RuntimeOptions,
    /// Intersections, compiled globs and policy layers per (tool, task context): the layers
    /// are static for a runtime, so they are evaluated once, not on every call.
    pub cache: PreparedCache,
    /// Where the runtime's events go (the sidecar's delivery); `None` emits nothing.
    pub events: Option<Arc<RuntimeEvents>>,
    /// What loading the packs warned about (a `dev` pin), for the host to show its user.
    pub warnings: Vec<String>,
    /// The `workspace.yaml` this runtime loaded: calls stop when it changes on disk.
    pub workspace_watch: Option<freshness::WorkspaceWatch>,
    /// This runtime's shared lock on the workspace's `dispatchers.lock`.
    liveness: liveness::Liveness,
}

/// How deep built-in tools may nest calls (an agent turn calling tools): deep enough for a turn
/// that delegates once, shallow enough that a tool calling itself stops at once.
pub const MAX_NESTED_DEPTH: u8 = 4;

static RECEIPT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A receipt id unique across processes: a hash of this process's identity (pid, start time) and
/// a counter (no RNG needed; the identity is formatted once, not on every call).
fn new_receipt_id() -> String {
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        format!(
            "{}:{}:{:?}",
            std::process::id(),
            Timestamp::now().unix_millis(),
            Instant::now()
        )
    });
    let n = RECEIPT_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut basis = String::with_capacity(process.len() + 21);
    basis.push_str(process);
    basis.push(':');
    basis.push_str(&n.to_string());
    format!(
        "rcpt_{}",
        &lumenflow_contracts::digest::sha256_hex(basis.as_bytes())[..24]
    )
}

struct Draft {
    receipt_id: String,
    run_id: String,
    started: Instant,
    record: Map<String, Value>,
}

impl Draft {
    /// What the call returns, before its receipts are known to be written.
    fn outcome(
        self,
        output: ToolOutput,
        policy_decisions: Vec<PolicyDecision>,
        approval_id: Option<String>,
        scope_narrowed: bool,
    ) -> CallOutcome {
        CallOutcome {
            output,
            run_id: self.run_id,
            receipt_id: self.receipt_id,
            policy_decisions,
            approval_id,
            scope_narrowed,
            recorded: false,
        }
    }
}

impl Runtime {
    /// A runtime over already-opened parts, with no sandbox runner, approval gate or task store
    /// (a call that needs one is refused) and default options. [`open::open`] builds the full
    /// runtime of a workspace; embedders and tests plug in the parts they need.
    pub fn new(
        workspace_dir: &Path,
        workspace: &crate::workspace::WorkspaceDocument,
        registry: ToolRegistry,
        pack_manifests: Vec<PackManifest>,
        log: EventLog,
        evidence: EvidenceStore,
    ) -> Runtime {
        let kernel_dir = log
            .path()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Runtime {
            liveness: liveness::Liveness::join(&kernel_dir),
            workspace_dir: workspace_dir.to_path_buf(),
            spec: workspace.spec.clone(),
            config_hash: workspace.config_hash(),
            registry,
            pack_manifests,
            log,
            evidence,
            subprocess: None,
            approvals: None,
            tasks: None,
            options: RuntimeOptions::default(),
            cache: PreparedCache::default(),
            events: None,
            warnings: Vec::new(),
            workspace_watch: None,
        }
    }

    /// Reconcile receipts a crash left without a finished record: each gets a `crashed`
    /// finish (KRN-12). Returns how many. Call once when the runtime starts.
    ///
    /// Only a runtime alone in its workspace reconciles (see the `dispatchers.lock` of
    /// [`DISPATCHERS_LOCK_FILE`]): while another runtime lives, in this process or another, an
    /// open receipt may be its call still running, so nothing is closed and this returns 0.
    ///
    /// Only the part of the log after the last reconciled position ([`RECONCILED_FILE`]) is
    /// scanned, streamed, keeping only the ids of calls still open (see `dispatch::reconcile`).
    pub fn reconcile_crashed(&self) -> Result<usize, LogError> {
        self.liveness
            .alone(|| self.reconcile_crashed_alone())
            .unwrap_or(Ok(0))
    }

    /// Dispatch one tool call through every check, recording it (KRN-10).
    pub fn dispatch(&self, req: CallRequest) -> CallOutcome {
        self.dispatch_at_depth(req, 0)
    }

    pub(crate) fn dispatch_at_depth(&self, req: CallRequest, depth: u8) -> CallOutcome {
        let outcome = if depth > MAX_NESTED_DEPTH {
            let draft = self.draft(&req);
            let refused = self.refusal(
                draft,
                codes::TOOL_EXECUTION_FAILED,
                format!(
                    "tool `{}` was called at nesting depth {depth}; built-in tools may nest calls at most {MAX_NESTED_DEPTH} deep",
                    req.tool
                ),
                vec![],
                false,
                None,
            );
            self.write_refusal(refused)
        } else {
            let input = self.evidence.put(&req.input).map_err(|e| e.to_string());
            self.dispatch_with_input(&req, &input, depth)
        };
        if let Some(events) = &self.events {
            events.tool_called(&req.tool, &req.input, &outcome);
        }
        outcome
    }

    /// A call a built-in tool refuses on its own before dispatching it (see
    /// [`BuiltinCall::refuse`]): recorded exactly like a refusal of the checks below (input as
    /// evidence, a started and a `denied` finished receipt in one commit, and
    /// `agent-runtime:tool_called`), and nothing is looked up or run.
    pub(crate) fn record_refusal(
        &self,
        req: CallRequest,
        code: &str,
        message: String,
    ) -> CallOutcome {
        let mut draft = self.draft(&req);
        // Inputs are evidence even when the call is refused; if the input cannot be stored the
        // refusal is still recorded, only without its hash.
        if let Ok(stored) = self.evidence.put(&req.input) {
            draft
                .record
                .insert("input_hash".into(), stored.hash.clone().into());
            draft
                .record
                .insert("input_ref".into(), stored.reference.into());
        }
        let outcome = self.write_refusal(self.refusal(draft, code, message, vec![], false, None));
        if let Some(events) = &self.events {
            events.tool_called_as(&req.tool, &req.input, &outcome, Some("denied"));
        }
        outcome
    }

    fn draft(&self, req: &CallRequest) -> Draft {
        let receipt_id = new_receipt_id();
        let run_id = req
            .run_id
            .clone()
            .unwrap_or_else(|| format!("run-{}", &receipt_id[5..]));
        let mut draft = Draft {
            receipt_id: receipt_id.clone(),
            run_id: run_id.clone(),
            started: Instant::now(),
            record: obj(json!({
                "kind": TOOL_CALL_STARTED,
                "receipt_id": receipt_id,
                "run_id": run_id,
                "task_id": req.task_id,
                "caller": req.caller,
                "surface": req.surface,
                "tool_name": req.tool,
                "workspace_config_hash": self.config_hash,
                "runtime_version": self.options.runtime_version,
            })),
        };
        if let Some(token) = &req.token_id {
            draft.record.insert("token_id".into(), token.clone().into());
        }
        draft
    }

    /// A call whose input is already evidence (or could not be stored), on a thread that may
    /// block: checks, the started receipt, the tool, the finished receipt.
    fn dispatch_with_input(
        &self,
        req: &CallRequest,
        input: &Result<evidence::Stored, String>,
        depth: u8,
    ) -> CallOutcome {
        let Ok(checked) = self.check::<MayBlock>(req, input);
        let mut admitted = match checked {
            Checked::Refused(refused) => return self.write_refusal(refused),
            Checked::Admitted(admitted) => admitted,
        };
        if let Err(e) = self.log.append(admitted.take_started()) {
            return admitted.not_started(e);
        }
        let (output, sandbox) = self.execute(
            req,
            &admitted.tool,
            &admitted.prepared.effective,
            &admitted.draft.receipt_id,
            &admitted.draft.run_id,
            depth,
        );
        let output = self.check_output(&admitted.tool, output);
        let output_evidence = self.output_evidence(&output);
        let (finished, outcome) = self.finish(req, admitted, output, sandbox, output_evidence);
        let recorded = self.log.append(finished).is_ok();
        CallOutcome {
            recorded,
            ..outcome
        }
    }

    /// Steps 1 to 6 and the started receipt's content: refused (both receipts to write in one
    /// commit) or admitted (the started receipt to make durable before the tool runs). With
    /// `B = Inline`, stops with [`WouldBlock`] before the first check that may block.
    fn check<B: Blocking>(
        &self,
        req: &CallRequest,
        input: &Result<evidence::Stored, String>,
    ) -> Result<Checked, B::Stop> {
        let mut draft = self.draft(req);

        // Inputs are evidence even when the call is refused.
        let input_hash = match input {
            Ok(stored) => {
                draft
                    .record
                    .insert("input_hash".into(), stored.hash.clone().into());
                draft
                    .record
                    .insert("input_ref".into(), stored.reference.clone().into());
                stored.hash.as_str()
            }
            Err(e) => {
                return Ok(self.refused(
                    draft,
                    codes::RECORD_FAILED,
                    format!("cannot store the call's input as evidence: {e}"),
                    vec![],
                    false,
                    None,
                ));
            }
        };

        // 0. The rules in force are the file's, not a stale copy of them.
        if let Some(why) = self.workspace_watch.as_ref().and_then(|w| w.changed()) {
            return Ok(self.refused(
                draft,
                freshness::WORKSPACE_CHANGED,
                why,
                vec![],
                false,
                None,
            ));
        }

        // 1. Lookup. Internal tools do not exist for remote callers.
        let tool = match self.registry.get_shared(&req.tool) {
            Some(t) if !(t.manifest.is_internal() && req.surface != Surface::Cli) => t,
            _ => {
                return Ok(self.refused(
                    draft,
                    codes::TOOL_NOT_FOUND,
                    format!("Tool \"{}\" is not registered", req.tool),
                    vec![],
                    false,
                    None,
                ));
            }
        };
        // Checked here too, not only by the sidecar in front: a nested call never passes it.
        if let Some(scopes) = &req.token_scopes {
            let required = tool.manifest.required_token_scope();
            if !scopes.iter().any(|s| s == required) {
                return Ok(self.refused(
                    draft,
                    codes::TOKEN_SCOPE_DENIED,
                    format!(
                        "the caller's token (scopes: {}) does not open tool `{}`, which requires token scope `{required}`",
                        if scopes.is_empty() { "none".to_string() } else { scopes.join(" ") },
                        req.tool
                    ),
                    vec![],
                    false,
                    None,
                ));
            }
        }
        draft
            .record
            .insert("execution_mode".into(), tool.implementation.mode().into());
        draft
            .record
            .insert("pack_id".into(), tool.pack_id.clone().into());
        draft
            .record
            .insert("pack_version".into(), tool.pack_version.clone().into());
        draft
            .record
            .insert("tool_version".into(), tool.pack_version.clone().into());
        draft
            .record
            .insert("pack_integrity".into(), tool.pack_integrity.clone().into());
        draft.record.insert(
            "scope_requested".into(),
            json!(tool.manifest.required_scopes),
        );

        // 2. Input.
        let Value::Object(input_map) = &req.input else {
            return Ok(self.refused(
                draft,
                codes::INVALID_INPUT,
                "tool input must be a JSON object".into(),
                vec![],
                false,
                None,
            ));
        };
        if let Some(schema) = &tool.input_schema {
            if let Err(issues) = schema.validate(&req.input) {
                let text = issues
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Ok(self.refused(
                    draft,
                    codes::INVALID_INPUT,
                    format!(
                        "input does not match the input_schema of `{}`: {text}",
                        tool.name
                    ),
                    vec![],
                    false,
                    None,
                ));
            }
        }

        // 3. Task state.
        let task = match (&req.task_id, &self.tasks) {
            (Some(id), Some(tasks)) => {
                B::about_to_block()?;
                match tasks.check_callable(id) {
                    Ok(facts) => Some(facts),
                    Err((code, message)) => {
                        return Ok(self.refused(draft, &code, message, vec![], false, None));
                    }
                }
            }
            (Some(id), None) => {
                return Ok(self.refused(
                    draft,
                    codes::TASK_STATE,
                    format!("task `{id}` cannot be checked: this runtime has no task store"),
                    vec![],
                    false,
                    None,
                ));
            }
            (None, _) => None,
        };

        // 4. Scopes: workspace ∩ lane ∩ task ∩ tool; without a task, the lane and task layers
        // are the workspace's (they cannot widen anything).
        let prepared = match self.cache.get_or_prepare(self, &tool, task.as_ref()) {
            Ok(p) => p,
            Err(refusal) => {
                return Ok(self.refused(
                    draft,
                    codes::SCOPE_DENIED,
                    refusal.message,
                    vec![scope_decision(refusal.policy_id, &refusal.reason)],
                    false,
                    None,
                ));
            }
        };
        let effective = &prepared.effective;
        draft
            .record
            .insert("scope_allowed".into(), prepared.enforced_json.clone());
        draft
            .record
            .insert("scope_enforced".into(), prepared.enforced_json.clone());
        draft
            .record
            .insert("scope_narrowed".into(), effective.narrowed.into());
        if !effective.notes.is_empty() {
            draft
                .record
                .insert("scope_notes".into(), json!(effective.notes));
        }
        if effective.is_empty() {
            return Ok(self.refused(
                draft,
                codes::SCOPE_DENIED,
                empty_intersection_message(&effective.notes),
                vec![scope_decision(
                    "kernel.scope.boundary",
                    "empty scope intersection",
                )],
                effective.narrowed,
                None,
            ));
        }
        if prepared::has_input_paths(input_map) {
            // Paths are resolved on disk (symlinks).
            B::about_to_block()?;
            let checked = self.cache.root(&self.workspace_dir).and_then(|root| {
                let slugs: Vec<&str> = tool.state_slugs.iter().map(String::as_str).collect();
                prepared.check_input_paths(&root, input_map, &slugs)
            });
            if let Err(message) = checked {
                return Ok(self.refused(
                    draft,
                    codes::SCOPE_DENIED,
                    message,
                    vec![scope_decision(
                        "kernel.scope.path",
                        "input path outside the effective scopes",
                    )],
                    effective.narrowed,
                    None,
                ));
            }
        }

        // 5. Rules.
        let mut ctx = EvalContext::tool_request(draft.run_id.clone(), tool.name.clone())
            .with_pack(tool.pack_id.clone())
            .with_permission(tool.manifest.permission)
            .with_input(&req.input);
        if let Some(id) = &req.task_id {
            ctx = ctx.with_task(id.clone());
        }
        if let Some(facts) = &task {
            ctx = ctx.with_lane(facts.lane_id.clone());
        }
        let decisions =
            policy::tool_call_decisions(&prepared.policy_layers, &ctx, ToolCallOptions::default());
        let verdict = policy::reduce(&decisions);
        if verdict == policy::Effect::Deny {
            return Ok(self.refused(
                draft,
                codes::POLICY_DENIED,
                deny_message(&decisions),
                decisions,
                effective.narrowed,
                None,
            ));
        }

        // 6. Approvals: from a rule or from the tool's own required_approvals.
        let mut approval_id = None;
        if verdict == policy::Effect::ApprovalRequired
            || !tool.manifest.required_approvals.is_empty()
        {
            let Some(gate) = &self.approvals else {
                return Ok(self.refused(draft, codes::APPROVAL_REQUIRED, "Tool execution requires human approval, and this runtime has no approval provider".into(), decisions, effective.narrowed, None));
            };
            // A durable store, or an operator's decision.
            B::about_to_block()?;
            let reasons: Vec<String> = decisions
                .iter()
                .filter(|d| d.decision == policy::Effect::ApprovalRequired)
                .map(|d| d.reason.clone().unwrap_or_else(|| d.policy_id.clone()))
                .collect();
            match gate.gate(ApprovalAsk {
                tool: &tool.name,
                input_hash,
                task_id: req.task_id.as_deref(),
                run_id: &draft.run_id,
                requested_by: &req.caller,
                surface: req.surface,
                reasons,
                required_approval_ids: tool.manifest.required_approvals.clone(),
            }) {
                Ok(id) => approval_id = Some(id),
                Err(refusal) => {
                    return Ok(self.refused(
                        draft,
                        &refusal.code,
                        refusal.message,
                        decisions,
                        effective.narrowed,
                        refusal.approval_id,
                    ));
                }
            }
        }
        if let Some(id) = &approval_id {
            draft.record.insert("approval_id".into(), id.clone().into());
        }

        // 7. The started receipt's last field; the caller makes it durable before anything runs.
        let sandbox_label = match &tool.implementation {
            Implementation::Builtin(_) => "in-process",
            Implementation::Subprocess { .. } => "pending",
        };
        draft.record.insert("sandbox".into(), sandbox_label.into());
        Ok(Checked::Admitted(Admitted {
            draft,
            tool,
            prepared,
            decisions,
            approval_id,
        }))
    }

    /// Step 8, execute: a built-in function, or a subprocess through the sandbox runner.
    fn execute(
        &self,
        req: &CallRequest,
        tool: &RegisteredTool,
        effective: &EffectiveScopes,
        receipt_id: &str,
        run_id: &str,
        depth: u8,
    ) -> (ToolOutput, &'static str) {
        match &tool.implementation {
            Implementation::Builtin(f) => {
                let call = BuiltinCall {
                    input: &req.input,
                    workspace_dir: &self.workspace_dir,
                    effective,
                    receipt_id,
                    run_id,
                    task_id: req.task_id.as_deref(),
                    caller: &req.caller,
                    surface: req.surface,
                    token_scopes: req.token_scopes.as_deref(),
                    token_id: req.token_id.as_deref(),
                    tool,
                    runtime: self,
                    depth,
                };
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&call)))
                    .unwrap_or_else(|_| {
                        ToolOutput::fail(
                            codes::TOOL_EXECUTION_FAILED,
                            format!("built-in tool `{}` panicked", tool.name),
                        )
                    });
                (out, "in-process")
            }
            Implementation::Subprocess {
                program,
                export,
                pack_root,
                verified_hash,
            } => match &self.subprocess {
                _ if verified_hash
                    .as_ref()
                    .is_some_and(|loaded| !pack_unchanged(pack_root, loaded)) =>
                {
                    (
                        ToolOutput::fail(
                            PACK_CHANGED,
                            format!(
                                "the files of pack `{}` changed after this process loaded and verified them against its pin (`{}`), so `{}` does not run; restore them, or re-pin the pack and restart the sidecar or `lumenflow mcp`",
                                tool.pack_id,
                                pack_root.display(),
                                tool.name
                            ),
                        ),
                        "none",
                    )
                }
                None => (
                    ToolOutput::fail(
                        codes::SANDBOX_UNAVAILABLE,
                        "Subprocess execution unavailable: no sandbox runner is configured",
                    ),
                    "none",
                ),
                Some(runner) => {
                    let env = match resolve_env(tool) {
                        Ok(env) => env,
                        Err(missing) => {
                            return (
                                ToolOutput::fail(
                                    REQUIRED_ENV_MISSING,
                                    format!(
                                        "tool `{}` declares `required_env` {}, which the process serving this call does not have; set {} in the environment the sidecar, `lumenflow mcp` or `lumenflow tool call` starts with (the tool did not run)",
                                        tool.name,
                                        missing.join(", "),
                                        if missing.len() == 1 { "it" } else { "them" },
                                    ),
                                ),
                                "none",
                            )
                        }
                    };
                    let result = runner.run(SubprocessCall {
                        tool,
                        program,
                        pack_root,
                        export: export.as_deref(),
                        input: &req.input,
                        workspace_dir: &self.workspace_dir,
                        effective,
                        env,
                        receipt_id,
                        run_id,
                        task_id: req.task_id.as_deref(),
                        timeout: self.options.default_timeout,
                        max_output_bytes: self.options.max_output_bytes,
                    });
                    (result.output, result.sandbox)
                }
            },
        }
    }

    /// Step 9, output: a successful result must match the tool's `output_schema`.
    fn check_output(&self, tool: &RegisteredTool, output: ToolOutput) -> ToolOutput {
        if !output.success {
            return output;
        }
        let (Some(schema), Some(data)) = (&tool.output_schema, &output.data) else {
            return output;
        };
        match schema.validate(data) {
            Ok(()) => output,
            Err(issues) => {
                let text = issues
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                ToolOutput::fail(
                    codes::INVALID_OUTPUT,
                    format!(
                        "output of `{}` does not match its output_schema: {text}",
                        tool.name
                    ),
                )
            }
        }
    }

    /// The output as evidence, when there is one. When it cannot be stored (a full disk), the
    /// receipt still commits to its hash and says why the blob is missing: the call ran and its
    /// effects stand, so failing it would misreport them, and a receipt silently without
    /// `output_hash` proved nothing about what the tool returned.
    fn output_evidence(&self, output: &ToolOutput) -> Option<OutputEvidence> {
        output.data.as_ref().map(|data| {
            self.evidence.put(data).map_err(|e| {
                let bytes = lumenflow_contracts::canonical_json::to_canonical_vec(data);
                let hash = lumenflow_contracts::digest::Sha256Digest::of(&bytes).to_string();
                (hash, e.to_string())
            })
        })
    }

    /// Step 10: the finished receipt of an admitted call, and the outcome to return once it
    /// is written.
    fn finish(
        &self,
        req: &CallRequest,
        admitted: Admitted,
        output: ToolOutput,
        sandbox: &'static str,
        output_evidence: Option<OutputEvidence>,
    ) -> (Map<String, Value>, CallOutcome) {
        let Admitted {
            draft,
            prepared,
            decisions,
            approval_id,
            ..
        } = admitted;
        let narrowed = prepared.effective.narrowed;
        let mut finished = obj(json!({
            "kind": TOOL_CALL_FINISHED,
            "receipt_id": draft.receipt_id,
            "result": if output.success { "success" } else if output.error_code() == Some(codes::SCOPE_DENIED) { "denied" } else { "failure" },
            "duration_ms": draft.started.elapsed().as_millis() as u64,
            "policy_decisions": decisions,
            "artifacts_written": output.artifacts_written(),
            "sandbox": sandbox,
            "scope_narrowed": narrowed,
        }));
        if let Some(code) = output.error_code() {
            finished.insert("error_code".into(), code.into());
        }
        // Receipts carry the task so replay by task finds both halves of every call.
        if let Some(task) = &req.task_id {
            finished.insert("task_id".into(), task.clone().into());
        }
        match output_evidence {
            Some(Ok(stored)) => {
                finished.insert("output_hash".into(), stored.hash.into());
                finished.insert("output_ref".into(), stored.reference.into());
            }
            Some(Err((hash, error))) => {
                finished.insert("output_hash".into(), hash.into());
                finished.insert("output_evidence_error".into(), error.into());
            }
            None => {}
        }
        (
            finished,
            draft.outcome(output, decisions, approval_id, narrowed),
        )
    }

    /// [`Runtime::refusal`] as the result of the checks.
    fn refused(
        &self,
        draft: Draft,
        code: &str,
        message: String,
        decisions: Vec<PolicyDecision>,
        narrowed: bool,
        approval_id: Option<String>,
    ) -> Checked {
        Checked::Refused(self.refusal(draft, code, message, decisions, narrowed, approval_id))
    }

    /// A refused call: started + finished (`denied` or `failure`), to be written in one commit.
    fn refusal(
        &self,
        mut draft: Draft,
        code: &str,
        message: String,
        decisions: Vec<PolicyDecision>,
        narrowed: bool,
        approval_id: Option<String>,
    ) -> Refused {
        let output = ToolOutput::fail(code, message);
        let result = match code {
            codes::INVALID_INPUT | codes::RECORD_FAILED => "failure",
            _ => "denied",
        };
        if let Some(id) = &approval_id {
            draft.record.insert("approval_id".into(), id.clone().into());
        }
        let mut finished = obj(json!({
            "kind": TOOL_CALL_FINISHED,
            "receipt_id": draft.receipt_id,
            "result": result,
            "duration_ms": draft.started.elapsed().as_millis() as u64,
            "policy_decisions": decisions,
            "artifacts_written": [],
            "error_code": code,
            "scope_narrowed": narrowed,
        }));
        if let Some(task) = draft.record.get("task_id").filter(|t| !t.is_null()) {
            finished.insert("task_id".into(), task.clone());
        }
        let started = std::mem::take(&mut draft.record);
        Refused {
            records: vec![started, finished],
            outcome: draft.outcome(output, decisions, approval_id, narrowed),
        }
    }

    fn write_refusal(&self, refused: Refused) -> CallOutcome {
        let recorded = self.log.append_batch(refused.records).is_ok();
        CallOutcome {
            recorded,
            ..refused.outcome
        }
    }

    /// The receipts of one call, in log order.
    pub fn receipts(&self, receipt_id: &str) -> Result<Vec<eventlog::LogRecord>, LogError> {
        let page = self.log.replay(&ReplayFilter {
            kinds: vec![
                TOOL_CALL_STARTED.to_string(),
                TOOL_CALL_FINISHED.to_string(),
            ],
            ..ReplayFilter::default()
        })?;
        Ok(page
            .records
            .into_iter()
            .filter(|r| r.fields.get("receipt_id").and_then(Value::as_str) == Some(receipt_id))
            .collect())
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub(crate) fn scope_decision(id: &str, reason: &str) -> PolicyDecision {
    PolicyDecision::new(id, policy::Effect::Deny, Some(reason.to_string()))
}

fn deny_message(decisions: &[PolicyDecision]) -> String {
    let reasons: Vec<String> = decisions
        .iter()
        .filter(|d| d.decision == policy::Effect::Deny)
        .map(|d| match &d.reason {
            Some(r) => format!("{} ({r})", d.policy_id),
            None => d.policy_id.clone(),
        })
        .collect();
    format!("Policy denied tool execution: {}", reasons.join("; "))
}

/// The refusal of a call whose scopes intersect to nothing, with the layer notes that say
/// which layer took what away (they are in the receipt too).
fn empty_intersection_message(notes: &[String]) -> String {
    let mut message =
        String::from("Scope intersection denied: no allowed scopes remain after intersection.");
    if notes.is_empty() {
        return message;
    }
    message.push_str(&format!(" Why: {}.", notes.join("; ")));
    if notes.iter().any(|n| n.starts_with("network")) {
        message.push_str(
            " Network reaches a tool only when every layer grants it: a `{type: network, \
             posture: allowlist, allowlist_entries: [\"host:443\"]}` entry (or `posture: full`) \
             in `security.allowed_scopes` of workspace.yaml, and in the lane's `allowed_scopes` \
             for calls in a task.",
        );
    }
    message
}

/// A pinned pack's files changed under a running runtime: its tools do not run.
pub const PACK_CHANGED: &str = "INTEGRITY_MISMATCH";

/// The pack folder still hashes to what was verified at load (an unreadable folder does not).
fn pack_unchanged(root: &Path, loaded: &crate::integrity::PackHash) -> bool {
    crate::integrity::compute_pack_hash(root).is_ok_and(|now| now == *loaded)
}

/// A subprocess tool's `required_env` is not all set: it does not start (a tool that talks to
/// an API without its key fails later, more confusingly, or does the wrong thing).
pub const REQUIRED_ENV_MISSING: &str = "REQUIRED_ENV_MISSING";

/// The tool's declared `required_env`, read from this process's environment (nothing else is
/// passed into the sandbox); `Err` with the names that are unset.
fn resolve_env(tool: &RegisteredTool) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in tool.manifest.required_env.iter().flatten() {
        match std::env::var(name) {
            Ok(v) => found.push((name.clone(), v)),
            Err(_) => missing.push(name.clone()),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(missing)
    }
}
