//! `agent:execute-turn`: the turn loop, entered only through the kernel's dispatch path.
//!
//! A turn asks its provider for a step, runs the proposed call through [`BuiltinCall::dispatch`]
//! (the same path every other call takes: lookup, schema, task, scopes, rules, approvals,
//! receipts), records the outcome, and asks again, until the provider finishes or gives up, the
//! step limit is reached, or a call is refused or fails in a way the plan did not expect. A
//! provider can only propose: nothing here executes a tool any other way.
//!
//! Durability (see [`super::state`]): every step is written as `started` before it is
//! dispatched and as done after, so
//! - a step answered `APPROVAL_REQUIRED` ends the call with `waiting_approval` (the approval id
//!   and the pending step); the next call with the same `turn_id` dispatches that step again
//!   (the grant, bound to the same tool and input, lets it through once) and carries on, without
//!   running any earlier step again;
//! - a model provider failure (after the client's retries) ends the call with `provider_failed`;
//!   the next call with the same `turn_id` asks the model again from the last finished step;
//! - `action: status` reads a turn and changes nothing; `action: cancel` ends a waiting or
//!   `provider_failed` turn as aborted with its cleanup status;
//! - a turn whose process died mid-step is found `running` with a `started` step and nobody
//!   holding its lock: the next call for it, any later turn, or [`reconcile_interrupted_turns`]
//!   at startup marks it aborted with the `cleanup_status` the recorded steps justify (ABR-02)
//!   and emits `agent-runtime:turn_aborted` (Q22). A recovery command is shown, never run
//!   (ABR-03, ABR-04).
//!
//! Events: `agent-runtime:turn_started` when a turn is created, `turn_completed` when it
//! finishes, `turn_aborted` when it stops early; each with an idempotency key derived from the
//! turn id, so a retried emission dedupes. The kernel itself emits `agent-runtime:tool_called`
//! for every nested call (Q40).

use std::path::Path;

use lumenflow_contracts::event::BuildOptions;
use lumenflow_contracts::payloads::CleanupStatus;
use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::{codes, ToolOutput};
use lumenflow_kernel::dispatch::{freshness, BuiltinCall, CallOutcome};
use lumenflow_kernel::events::emit::{EmitError, PackEmitter};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::config::AgentRuntimeConfig;
use super::openai::{function_name, OpenAiCompatible};
use super::provider::{Expect, ModelProvider, ProviderError, Step, ToolSpec, TurnView};
use super::scripted::{self, ScriptedPlanner};
use super::state::{
    check_turn_id, ProviderRecord, StateError, StepOutcome, StepPhase, StepRecord, TurnState,
    TurnStatus, TurnStore, SCHEMA_VERSION, TURNS_DIR,
};
use super::{TOOL_NAME, TURN_ABORTED, TURN_COMPLETED, TURN_STARTED};

/// The error code of a turn that stopped before its goal (the cause is in the result).
pub const TURN_ABORTED_CODE: &str = "TURN_ABORTED";

/// The error code of a call that stopped at a model provider failure; the turn is
/// `provider_failed` and resumes when called again.
pub const TURN_PROVIDER_FAILED_CODE: &str = "TURN_PROVIDER_FAILED";

/// The turn's own refusals (recorded through [`BuiltinCall::refuse`]).
const NESTED_TURN: &str = "AGENT_NESTED_TURN";
const TOOL_NOT_ALLOWED: &str = "AGENT_TOOL_NOT_ALLOWED";

/// A step's output kept in the turn (and shown to the model) up to this size.
pub const MAX_STEP_DATA_BYTES: usize = 64 * 1024;

/// The input of `agent:execute-turn`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnInput {
    /// Required to run a turn; optional for `status` and `cancel`, which then only check the
    /// caller (and the goal when it is given).
    #[serde(default)]
    goal: Option<String>,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    plan: Option<PlanInput>,
    #[serde(default)]
    max_steps: Option<u32>,
    #[serde(default)]
    turn_id: Option<String>,
}

/// What a call does with its turn (walk-E finding 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    /// Start the turn, resume it (after a grant or a provider failure), or replay its ending.
    #[default]
    Run,
    /// Read where the turn stands: nothing is dispatched, settled or written.
    Status,
    /// End a turn that waits (for an approval, or after a provider failure) as aborted with its
    /// cleanup status (ABR-01, ABR-02) and `turn_aborted` (Q22).
    Cancel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanInput {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    steps: Option<Value>,
}

/// Where the turn's events go: the runtime's event output, or a pack emitter at startup.
trait EventOut {
    /// `Ok` when sent, dropped by an ephemeral sink, or when there is no event output.
    fn send(
        &self,
        kind: &str,
        payload: Map<String, Value>,
        options: BuildOptions,
    ) -> Result<(), String>;
}

impl EventOut for BuiltinCall<'_> {
    fn send(
        &self,
        kind: &str,
        payload: Map<String, Value>,
        options: BuildOptions,
    ) -> Result<(), String> {
        match self.emit(kind, payload, options) {
            Ok(_) => Ok(()),
            // The turn kinds are ephemeral (BKP-03): a sink that is down drops them silently.
            Err(EmitError::Sink(_)) => Ok(()),
            Err(e) => Err(format!("{}: {e}", e.code())),
        }
    }
}

impl EventOut for PackEmitter {
    fn send(
        &self,
        kind: &str,
        payload: Map<String, Value>,
        options: BuildOptions,
    ) -> Result<(), String> {
        match self.emit(kind, payload, options) {
            Ok(_) | Err((_, EmitError::Sink(_))) => Ok(()),
            Err((_, e)) => Err(format!("{}: {e}", e.code())),
        }
    }
}

/// No event output at all.
struct NoEvents;

impl EventOut for NoEvents {
    fn send(&self, _: &str, _: Map<String, Value>, _: BuildOptions) -> Result<(), String> {
        Ok(())
    }
}

/// The built-in function behind `agent:execute-turn`. Never panics on input: every problem is a
/// failed [`ToolOutput`] with a code, and the kernel has already recorded the call's receipt.
pub fn execute_turn(call: &BuiltinCall<'_>) -> ToolOutput {
    match run(call) {
        Ok(out) => out,
        Err(Failure { code, message }) => ToolOutput::fail(code, message),
    }
}

/// A call that could not run its turn at all (bad input, unreadable state, no provider).
struct Failure {
    code: String,
    message: String,
}

fn fail(code: &str, message: impl Into<String>) -> Failure {
    Failure {
        code: code.to_string(),
        message: message.into(),
    }
}

fn state_fail(e: StateError) -> Failure {
    fail(e.code(), e.to_string())
}

fn run(call: &BuiltinCall<'_>) -> Result<ToolOutput, Failure> {
    let input: TurnInput = serde_json::from_value(call.input().clone())
        .map_err(|e| fail(codes::INVALID_INPUT, format!("invalid turn input: {e}")))?;
    if input.goal.as_deref().is_some_and(|g| g.trim().is_empty()) {
        return Err(fail(codes::INVALID_INPUT, "`goal` must not be empty"));
    }
    let action = input.action.unwrap_or_default();
    let dir = call.workspace_dir();
    // The manifest asks for the pack's own state folder; the workspace may not grant it.
    if !call
        .effective()
        .allows_path(&format!("{TURNS_DIR}/x.json"), PathAccess::Write)
    {
        return Err(fail(
            codes::SCOPE_DENIED,
            format!("`{TOOL_NAME}` needs write access to `{TURNS_DIR}/`, which the effective scopes of this call do not grant"),
        ));
    }
    let store = TurnStore::open(dir);
    if action != Action::Run {
        let Some(turn_id) = input.turn_id.as_deref() else {
            return Err(fail(
                codes::INVALID_INPUT,
                format!(
                    "`turn_id` is required with action `{}`; expected the id of an existing turn",
                    action_name(action)
                ),
            ));
        };
        check_turn_id(turn_id).map_err(|m| fail(codes::INVALID_INPUT, m))?;
        return match action {
            Action::Status => turn_status(call, &store, turn_id, input.goal.as_deref()),
            _ => cancel_turn(call, &store, turn_id, input.goal.as_deref()),
        };
    }
    let Some(goal) = input.goal.clone() else {
        return Err(fail(
            codes::INVALID_INPUT,
            "`goal` is required to run a turn; expected a non-empty string",
        ));
    };
    // Turns whose process died are settled first (their events go out with this call's).
    let _ = reconcile_with(&store, call);

    let turn_id = match &input.turn_id {
        Some(id) => {
            check_turn_id(id).map_err(|m| fail(codes::INVALID_INPUT, m))?;
            id.clone()
        }
        None => format!(
            "turn-{}",
            &lumenflow_contracts::digest::sha256_hex(call.receipt_id().as_bytes())[..20]
        ),
    };
    let _lock = store.lock(&turn_id).map_err(state_fail)?;
    let workspace =
        super::config::read_workspace(dir).map_err(|e| fail(e.code(), e.to_string()))?;
    let config = AgentRuntimeConfig::from_workspace(workspace.as_ref())
        .map_err(|e| fail(e.code(), e.to_string()))?;
    // The catalogue only informs (function definitions, which tools mutate); the dispatch path
    // decides. Tools it does not know count as mutating.
    let catalogue = std::sync::Arc::new(super::catalog::runtime_tools(call));

    let mut state = match store.load(&turn_id).map_err(state_fail)? {
        Some(mut state) => {
            if state.status == TurnStatus::Running {
                // We hold its lock, so whoever drove it is gone: it was killed mid-flight. It
                // is settled whoever asks (reconciliation), but only its starter sees it.
                settle_interrupted(&store, &mut state, call).map_err(state_fail)?;
            }
            check_owner(call, &state, Some(&goal))?;
            if state.status.is_final() {
                // Asking again about a finished turn returns its result, marked as a replay;
                // nothing runs again.
                return Ok(stored_result(&state));
            }
            state
        }
        None => {
            let provider = new_provider_record(call, &input, &config)
                .map_err(|e| fail(e.code(), e.to_string()))?;
            // The workspace's limit is a ceiling the caller can lower, never raise.
            let max_steps = config.step_limit(input.max_steps);
            let now = Timestamp::now();
            let mut state = TurnState {
                schema_version: SCHEMA_VERSION,
                turn_id: turn_id.clone(),
                goal: goal.clone(),
                caller: call.caller().to_string(),
                run_id: call.run_id().to_string(),
                task_id: call.task_id().map(str::to_string),
                provider,
                max_steps,
                status: TurnStatus::Running,
                steps: Vec::new(),
                started_at: now,
                updated_at: now,
                result: None,
            };
            mark_running(&store, &turn_id).map_err(state_fail)?;
            store.save(&mut state).map_err(state_fail)?;
            let mut payload = Map::new();
            payload.insert("turn_id".into(), json!(turn_id));
            payload.insert("goal".into(), json!(state.goal));
            let mut warnings = Vec::new();
            note(
                &mut warnings,
                call.send(TURN_STARTED, payload, key(&turn_id, "started")),
            );
            return drive(call, &store, &config, &catalogue, state, warnings);
        }
    };
    // Waiting for an approval (carry on from the pending step) or stopped by a provider failure
    // (ask the model again from the last finished step). The old result no longer holds.
    state.status = TurnStatus::Running;
    state.result = None;
    mark_running(&store, &turn_id).map_err(state_fail)?;
    store.save(&mut state).map_err(state_fail)?;
    drive(call, &store, &config, &catalogue, state, Vec::new())
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Run => "run",
        Action::Status => "status",
        Action::Cancel => "cancel",
    }
}

/// A turn belongs to its caller and its goal, whatever its status: another caller naming its
/// id learns nothing of it (not even who started it), and the same caller reusing an id for
/// another goal is told so instead of getting the old result as a success (walk-E finding 4).
/// `goal` is `None` for `status` and `cancel` calls that do not repeat it.
fn check_owner(
    call: &BuiltinCall<'_>,
    state: &TurnState,
    goal: Option<&str>,
) -> Result<(), Failure> {
    let turn_id = &state.turn_id;
    if state.caller != call.caller() {
        return Err(fail(
            "TURN_MISMATCH",
            format!(
                "turn `{turn_id}` was started by another caller; only its starter may resume or read it (use a new turn_id)"
            ),
        ));
    }
    match goal {
        Some(goal) if goal != state.goal => {
            let (code, what) = if state.status.is_final() {
                ("TURN_ID_CONFLICT", "already ran")
            } else {
                ("TURN_MISMATCH", "was started")
            };
            Err(fail(
                code,
                format!(
                    "turn `{turn_id}` {what} with goal `{}`, not `{}`; call it with the same goal, or use a new turn_id",
                    one_line(&state.goal),
                    one_line(goal)
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn turn_not_found(turn_id: &str) -> Failure {
    fail(
        "TURN_NOT_FOUND",
        format!("no turn `{turn_id}` exists in this workspace; expected the id of a started turn"),
    )
}

/// `action: status`: where a turn stands, read from its file. Nothing is dispatched, settled,
/// emitted or written, so checking a waiting turn never opens a new approval request (walk-E
/// finding 5). A turn found `running` is either driven by a live call (`driven: true`) or was
/// left by a dead process (`interrupted: true`; the next `run` or `cancel` call settles it).
fn turn_status(
    call: &BuiltinCall<'_>,
    store: &TurnStore,
    turn_id: &str,
    goal: Option<&str>,
) -> Result<ToolOutput, Failure> {
    let state = store
        .load(turn_id)
        .map_err(state_fail)?
        .ok_or_else(|| turn_not_found(turn_id))?;
    check_owner(call, &state, goal)?;
    let mut view = base_result(&state, None, &[]);
    if let Some(Value::Object(stored)) = &state.result {
        for k in [
            "error_code",
            "reason",
            "cleanup_status",
            "recovery_action",
            "summary",
            "evidence_ref",
            "resumable",
        ] {
            if let Some(v) = stored.get(k) {
                view.insert(k.into(), v.clone());
            }
        }
    }
    if state.status == TurnStatus::WaitingApproval {
        insert_pending(&state, &mut view);
    }
    if state.status == TurnStatus::Running {
        // A lock we can take means nobody drives the turn; it is released at once, and the
        // turn is left for a `run` or `cancel` call to settle.
        match store.lock(turn_id) {
            Ok(_) => {
                view.insert("interrupted".into(), json!(true));
            }
            Err(StateError::Busy(_)) => {
                view.insert("driven".into(), json!(true));
            }
            Err(e) => return Err(state_fail(e)),
        }
    }
    view.insert("action".into(), json!("status"));
    view.insert("updated_at".into(), json!(state.updated_at));
    Ok(ToolOutput::ok(Value::Object(view)))
}

/// `action: cancel`: end a turn that waits for an approval or stopped after a provider failure
/// as `aborted` (`TURN_CANCELLED`), with the cleanup status its steps justify (ABR-01, ABR-02)
/// and `agent-runtime:turn_aborted` (Q22). A turn a live call drives cannot be cancelled from
/// outside (`TURN_BUSY`); one a dead process left is settled as interrupted. The pending
/// approval request is left as it is: a grant given later is never used by this turn.
fn cancel_turn(
    call: &BuiltinCall<'_>,
    store: &TurnStore,
    turn_id: &str,
    goal: Option<&str>,
) -> Result<ToolOutput, Failure> {
    let _lock = store.lock(turn_id).map_err(state_fail)?;
    let mut state = store
        .load(turn_id)
        .map_err(state_fail)?
        .ok_or_else(|| turn_not_found(turn_id))?;
    check_owner(call, &state, goal)?;
    if state.status == TurnStatus::Running {
        settle_interrupted(store, &mut state, call).map_err(state_fail)?;
        let mut out = stored_result(&state);
        out.success = true;
        out.error = None;
        return Ok(out);
    }
    if state.status.is_final() {
        return Err(fail(
            "TURN_ALREADY_ENDED",
            format!(
                "turn `{turn_id}` already ended ({}) at {}; there is nothing to cancel (use action `status` to read it)",
                state.status.as_str(),
                state.updated_at
            ),
        ));
    }
    let reason = match state.pending() {
        Some(p) => format!(
            "the turn was cancelled by `{}` while step {} `{}` waited for approval `{}` (a later grant is not used)",
            call.caller(),
            p.index,
            p.tool,
            p.approval_id.as_deref().unwrap_or("")
        ),
        None => format!(
            "the turn was cancelled by `{}` after a model provider failure",
            call.caller()
        ),
    };
    let stop = Stop {
        code: "TURN_CANCELLED".into(),
        reason,
    };
    let out = finish_aborted(call, store, state, stop, Vec::new())?;
    // The cancel did what was asked: the call succeeds, and its data is the aborted turn.
    Ok(ToolOutput::ok(out.data.unwrap_or(Value::Null)))
}

/// The pending step of a waiting turn, in its result or status.
fn insert_pending(state: &TurnState, result: &mut Map<String, Value>) {
    if let Some(p) = state.steps.last() {
        result.insert("approval_id".into(), json!(p.approval_id));
        result.insert(
            "pending_step".into(),
            json!({"index": p.index, "tool": p.tool, "input": p.input, "approval_id": p.approval_id}),
        );
        result.insert(
            "summary".into(),
            json!(format!(
                "step {} `{}` waits for approval `{}`; call `{TOOL_NAME}` again with turn_id `{}` after the grant, or with action `cancel` to end the turn",
                p.index,
                p.tool,
                p.approval_id.as_deref().unwrap_or(""),
                state.turn_id
            )),
        );
    }
}

fn key(turn_id: &str, what: &str) -> BuildOptions {
    BuildOptions::idempotent(format!("agent-runtime:{turn_id}:{what}"))
}

fn note(warnings: &mut Vec<String>, r: Result<(), String>) {
    if let Err(e) = r {
        warnings.push(format!("event not emitted: {e}"));
    }
}

fn new_provider_record(
    call: &BuiltinCall<'_>,
    input: &TurnInput,
    config: &AgentRuntimeConfig,
) -> Result<ProviderRecord, ProviderError> {
    match &input.plan {
        Some(PlanInput {
            file: Some(_),
            steps: Some(_),
        }) => Err(ProviderError::Plan(
            "a plan is either `file` or `steps`, not both".into(),
        )),
        Some(PlanInput {
            file: Some(file), ..
        }) => Ok(ProviderRecord::Scripted {
            steps: scripted::load_plan_file(call.workspace_dir(), call.effective(), file)?,
        }),
        Some(PlanInput {
            steps: Some(steps), ..
        }) => Ok(ProviderRecord::Scripted {
            steps: scripted::parse_steps(steps.clone())?,
        }),
        Some(PlanInput {
            file: None,
            steps: None,
        }) => Err(ProviderError::Plan(
            "`plan` needs `file` (a `*.plan.json|yaml` path) or `steps` (a list)".into(),
        )),
        None => match &config.provider {
            Some(p) => {
                // Check the endpoint and the key now, so a misconfigured workspace or a shell
                // without the key fails before the turn exists and uses up its id (walk-E
                // finding 6).
                super::openai::endpoint(&p.base_url)?;
                super::openai::api_key(p)?;
                Ok(ProviderRecord::OpenaiCompatible {
                    base_url: p.base_url.clone(),
                    model: p.model.clone(),
                })
            }
            None => Err(ProviderError::NotConfigured(
                "no `plan` was given and workspace.yaml configures no model (`agent_runtime.provider` with `base_url` and `model`)".into(),
            )),
        },
    }
}

fn provider_for(
    state: &TurnState,
    config: &AgentRuntimeConfig,
) -> Result<Box<dyn ModelProvider>, ProviderError> {
    match &state.provider {
        ProviderRecord::Scripted { steps } => Ok(Box::new(ScriptedPlanner::new(steps.clone()))),
        ProviderRecord::OpenaiCompatible { .. } => match &config.provider {
            Some(p) => Ok(Box::new(OpenAiCompatible::from_config(p)?)),
            None => Err(ProviderError::NotConfigured(
                "this turn talks to a model, but workspace.yaml no longer configures `agent_runtime.provider`".into(),
            )),
        },
    }
}

/// How a turn stopped early.
struct Stop {
    code: String,
    reason: String,
}

/// The loop, from the state as it stands (a new turn, or one resuming at its pending step).
fn drive(
    call: &BuiltinCall<'_>,
    store: &TurnStore,
    config: &AgentRuntimeConfig,
    catalogue: &[ToolSpec],
    mut state: TurnState,
    warnings: Vec<String>,
) -> Result<ToolOutput, Failure> {
    let offered: Vec<ToolSpec> = match &config.allow_tools {
        Some(allow) => catalogue
            .iter()
            .filter(|t| allow.iter().any(|a| a == &t.name))
            .cloned()
            .collect(),
        None => catalogue.to_vec(),
    };
    // A tool outside the catalogue is not registered for this surface (unknown, internal, or
    // the turn itself): the dispatch path refuses it before anything runs, so it cannot have
    // changed anything, and it never yields a `needs_recovery` command naming a tool a model
    // made up (walk-E finding 1).
    let mutating = |tool: &str| {
        catalogue
            .iter()
            .find(|t| t.name == tool)
            .is_some_and(|t| t.mutating)
    };

    let mut provider = match provider_for(&state, config) {
        Ok(p) => p,
        Err(e) => return finish_provider_error(call, store, state, e, warnings),
    };

    // A pending step (waiting for its approval) is dispatched again before anything else,
    // unless the operator denied that approval: then the turn ends (walk-E finding 5).
    // Dispatching again would only open a new request and leave the turn waiting forever.
    if let Some(denied) = state.pending().and_then(|p| denied_approval(call, p)) {
        let stop = Stop {
            code: "APPROVAL_DENIED".into(),
            reason: denied,
        };
        return finish_aborted(call, store, state, stop, warnings);
    }
    let mut pending: Option<StepRecord> = match state.pending() {
        Some(_) => state.steps.pop(),
        None => None,
    };

    // The wall-clock budget of this call (walk-E finding 3): without it, 200 steps of slow
    // model requests could hold a turn, its lock and the model spend for a day and more.
    let limit = config.turn_time_limit();
    let started = std::time::Instant::now();
    let out_of_time = |next: &str| {
        Stop {
        code: "TURN_TIME_LIMIT".into(),
        reason: format!(
            "the turn ran for its limit of {} s (`agent_runtime.max_turn_seconds`) before the goal; {next}",
            limit.as_secs()
        ),
    }
    };

    loop {
        let mut approval_receipts: Option<Vec<String>> = None;
        let (call_id, tool, input, expect, index) = match pending.take() {
            Some(p) => {
                let mut earlier = p.approval_receipts;
                earlier.extend(p.receipt_id);
                approval_receipts = Some(earlier);
                (p.call_id, p.tool, p.input, p.expect, p.index)
            }
            None => {
                if started.elapsed() >= limit {
                    let stop = out_of_time("the model was not asked for another step");
                    return finish_aborted(call, store, state, stop, warnings);
                }
                let next = provider.next_step(&TurnView {
                    turn_id: &state.turn_id,
                    goal: &state.goal,
                    tools: &offered,
                    transcript: &state.steps,
                });
                match next {
                    Err(e) => return finish_provider_error(call, store, state, e, warnings),
                    Ok(Step::Finish { summary }) => {
                        return finish_completed(call, store, state, summary, warnings)
                    }
                    Ok(Step::Abort { reason }) => {
                        let stop = Stop {
                            code: "MODEL_ABORTED".into(),
                            reason,
                        };
                        return finish_aborted(call, store, state, stop, warnings);
                    }
                    Ok(Step::Call {
                        call_id,
                        tool,
                        input,
                        expect,
                    }) => {
                        let tool = tool_name(catalogue, tool);
                        if started.elapsed() >= limit {
                            let stop = out_of_time(&format!(
                                "the next proposed call, `{tool}`, was not made"
                            ));
                            return finish_aborted(call, store, state, stop, warnings);
                        }
                        // The limit counts tool calls: a provider may still finish after the last.
                        if state.steps.len() >= state.max_steps as usize {
                            let stop = Stop {
                                code: "TURN_STEP_LIMIT".into(),
                                reason: format!(
                                    "the turn reached its limit of {} tool call(s) before the goal (the next proposed call was `{tool}`)",
                                    state.max_steps
                                ),
                            };
                            return finish_aborted(call, store, state, stop, warnings);
                        }
                        let index = state.steps.len() as u32 + 1;
                        let call_id = call_id.unwrap_or_else(|| format!("call-{index}"));
                        (call_id, tool, input, expect, index)
                    }
                }
            }
        };

        let mut record = StepRecord {
            index,
            call_id,
            mutating: mutating(&tool),
            tool,
            input,
            expect,
            phase: StepPhase::Started,
            outcome: None,
            receipt_id: None,
            approval_id: None,
            approval_receipts: Vec::new(),
            error_code: None,
            error_message: None,
            data: None,
            started_at: Timestamp::now(),
            finished_at: None,
        };

        // The turn's own refusals, before anything is dispatched.
        let local_refusal = if record.tool == TOOL_NAME {
            Some((NESTED_TURN, "a turn cannot start another turn".to_string()))
        } else if config
            .allow_tools
            .as_ref()
            .is_some_and(|allow| !allow.iter().any(|a| a == &record.tool))
        {
            Some((
                TOOL_NOT_ALLOWED,
                format!(
                    "`{}` is not in `agent_runtime.allow_tools` of workspace.yaml",
                    record.tool
                ),
            ))
        } else {
            None
        };

        if let Some((code, message)) = local_refusal {
            // Recorded by the kernel like every other refusal (receipts, input evidence,
            // `tool_called`), so the audit trail shows what the model tried (walk-E finding 11).
            // Nothing runs, so no `started` step record is needed first.
            let out = call.refuse(&record.tool, record.input.clone(), code, message);
            apply_outcome(&mut record, &out);
        } else {
            // Durable intent before the effect: a crash from here on is "killed mid-flight".
            state.steps.push(record.clone());
            store.save(&mut state).map_err(state_fail)?;
            state.steps.pop();
            let out = call.dispatch(&record.tool, record.input.clone());
            apply_outcome(&mut record, &out);
            // The approval request's receipt stays linked when its step runs after the grant.
            if let Some(earlier) = approval_receipts {
                record.approval_receipts = earlier;
            }
        }
        let outcome = record.outcome.unwrap_or(StepOutcome::Failure);
        let expected_refusal = record.expect == Expect::Refused;
        state.steps.push(record);
        // Before a model request (seconds, and a crash is likely there) the result is made
        // durable at once. A scripted planner answers instantly: the result is written together
        // with the next step's `started` record or the ending, one fsync'd write instead of
        // two. A kill in that microsecond window shows the step as in flight, which only makes
        // the cleanup status more cautious, never less.
        if !provider.answers_instantly() {
            store.save(&mut state).map_err(state_fail)?;
        }
        let Some(last) = state.steps.last() else {
            continue;
        };
        match outcome {
            StepOutcome::ApprovalRequired if !expected_refusal && last.approval_id.is_some() => {
                return finish_waiting(call, store, state, warnings);
            }
            StepOutcome::Success if expected_refusal => {
                let stop = Stop {
                    code: "PLAN_EXPECTATION_FAILED".into(),
                    reason: format!(
                        "step {} `{}` was expected to be refused, but it succeeded",
                        last.index, last.tool
                    ),
                };
                return finish_aborted(call, store, state, stop, warnings);
            }
            StepOutcome::Success => {}
            _ if expected_refusal => {}
            _ => {
                let code = last
                    .error_code
                    .clone()
                    .unwrap_or_else(|| codes::TOOL_EXECUTION_FAILED.to_string());
                let verb = if outcome == StepOutcome::Failure {
                    "failed"
                } else {
                    "was refused"
                };
                let stop = Stop {
                    reason: format!(
                        "step {} `{}` {verb} ({code}): {}",
                        last.index,
                        last.tool,
                        last.error_message.clone().unwrap_or_default()
                    ),
                    code,
                };
                return finish_aborted(call, store, state, stop, warnings);
            }
        }
    }
}

/// Why the pending step may not run, when the workspace's approvals store shows its approval
/// denied. An approval the store does not hold (decided by a control plane) is left to the
/// dispatch path, which checks it again.
fn denied_approval(call: &BuiltinCall<'_>, pending: &StepRecord) -> Option<String> {
    use lumenflow_kernel::approvals::{ApprovalProvider, Decision, LocalApprovals};
    let id = pending.approval_id.as_deref()?;
    let request = LocalApprovals::open(call.workspace_dir()).get(id).ok()?;
    match request.decision {
        Some(Decision::Denied {
            approver, reason, ..
        }) => Some(format!(
            "step {} `{}` was denied: approval `{id}` by {approver}: \"{}\"",
            pending.index,
            pending.tool,
            one_line(&reason)
        )),
        _ => None,
    }
}

/// The tool a proposed name means. A model only knows function names (`pack__tool`), and the
/// provider maps back only the tools it was offered; a name of any other registered tool (or of
/// the turn itself) is mapped here, so refusals, receipts and `allow_tools` speak of
/// `pack:tool`, the name an operator can act on (walk-E finding 11). Anything else stays as
/// proposed, for the dispatch path to refuse with a receipt.
fn tool_name(catalogue: &[ToolSpec], proposed: String) -> String {
    if proposed.contains(':') {
        return proposed;
    }
    if proposed == function_name(TOOL_NAME) {
        return TOOL_NAME.to_string();
    }
    catalogue
        .iter()
        .find(|t| function_name(&t.name) == proposed)
        .map(|t| t.name.clone())
        .unwrap_or(proposed)
}

/// Record what the dispatch path returned.
fn apply_outcome(record: &mut StepRecord, out: &CallOutcome) {
    record.phase = StepPhase::Done;
    record.finished_at = Some(Timestamp::now());
    record.receipt_id = Some(out.receipt_id.clone());
    record.approval_id = out.approval_id.clone();
    record.data = out.output.data.as_ref().map(|data| {
        // The turn file is rewritten at every step: a large output stays in the evidence store
        // (the finished receipt's `output_ref`) and the turn keeps a pointer to it.
        let size = data.to_string().len();
        if size <= MAX_STEP_DATA_BYTES {
            data.clone()
        } else {
            json!({
                "truncated": true,
                "bytes": size,
                "note": format!("the output is larger than {MAX_STEP_DATA_BYTES} bytes; it is stored as evidence with receipt `{}`", out.receipt_id),
            })
        }
    });
    if let Some(err) = &out.output.error {
        record.error_code = Some(err.code.clone());
        record.error_message = Some(err.message.clone());
    }
    record.outcome = Some(if out.output.success {
        StepOutcome::Success
    } else {
        match out.output.error_code() {
            Some(codes::APPROVAL_REQUIRED) if out.approval_id.is_some() => {
                StepOutcome::ApprovalRequired
            }
            Some(
                codes::SCOPE_DENIED
                | codes::POLICY_DENIED
                | codes::TOOL_NOT_FOUND
                | codes::TASK_STATE
                | codes::APPROVAL_REQUIRED
                | freshness::WORKSPACE_CHANGED
                | NESTED_TURN
                | TOOL_NOT_ALLOWED,
            ) => StepOutcome::Denied,
            Some(c) if c.starts_with("APPROVAL_") || c.starts_with("TOKEN_") => StepOutcome::Denied,
            _ => StepOutcome::Failure,
        }
    });
}

fn outcome_str(o: Option<StepOutcome>) -> &'static str {
    match o {
        Some(StepOutcome::Success) => "success",
        Some(StepOutcome::Failure) => "failure",
        Some(StepOutcome::Denied) => "denied",
        Some(StepOutcome::ApprovalRequired) => "approval_required",
        None => "interrupted",
    }
}

/// The result every ending shares.
fn base_result(
    state: &TurnState,
    evidence_ref: Option<String>,
    warnings: &[String],
) -> Map<String, Value> {
    let steps: Vec<Value> = state
        .steps
        .iter()
        .map(|s| {
            let mut v = json!({
                "index": s.index,
                "tool": s.tool,
                "outcome": outcome_str(s.outcome),
            });
            if let Some(obj) = v.as_object_mut() {
                for (k, val) in [
                    ("receipt_id", s.receipt_id.clone().map(Value::from)),
                    ("approval_id", s.approval_id.clone().map(Value::from)),
                    ("error_code", s.error_code.clone().map(Value::from)),
                    ("error_message", s.error_message.clone().map(Value::from)),
                    ("data", s.data.clone()),
                ] {
                    if let Some(val) = val {
                        obj.insert(k.into(), val);
                    }
                }
            }
            v
        })
        .collect();
    // A step that waited for an approval lists the request's receipt(s) before its own.
    let receipts: Vec<&str> = state
        .steps
        .iter()
        .flat_map(|s| {
            s.approval_receipts
                .iter()
                .map(String::as_str)
                .chain(s.receipt_id.as_deref())
        })
        .collect();
    let mut m = Map::new();
    m.insert("turn_id".into(), json!(state.turn_id));
    m.insert("status".into(), json!(state.status.as_str()));
    m.insert("goal".into(), json!(state.goal));
    m.insert(
        "provider".into(),
        json!(match state.provider {
            ProviderRecord::Scripted { .. } => "scripted",
            ProviderRecord::OpenaiCompatible { .. } => "openai_compatible",
        }),
    );
    m.insert("run_id".into(), json!(state.run_id));
    m.insert("max_steps".into(), json!(state.max_steps));
    m.insert("tool_calls".into(), json!(state.steps.len()));
    m.insert("steps".into(), Value::Array(steps));
    m.insert("receipts".into(), json!(receipts));
    if let Some(r) = evidence_ref {
        m.insert("evidence_ref".into(), json!(r));
    }
    if !warnings.is_empty() {
        m.insert("warnings".into(), json!(warnings));
    }
    m
}

/// The full step records, content-addressed in the evidence store (the turn's "originals").
fn store_evidence(
    call: &BuiltinCall<'_>,
    state: &TurnState,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let record = json!({"turn_id": state.turn_id, "goal": state.goal, "steps": state.steps});
    match call.evidence().put(&record) {
        Ok(stored) => Some(stored.reference),
        Err(e) => {
            warnings.push(format!("turn evidence not stored: {e}"));
            None
        }
    }
}

fn finish_completed(
    call: &BuiltinCall<'_>,
    store: &TurnStore,
    mut state: TurnState,
    summary: String,
    mut warnings: Vec<String>,
) -> Result<ToolOutput, Failure> {
    state.status = TurnStatus::Completed;
    let mut payload = Map::new();
    payload.insert("turn_id".into(), json!(state.turn_id));
    payload.insert("status".into(), json!("succeeded"));
    payload.insert("tool_calls".into(), json!(state.steps.len()));
    payload.insert("summary".into(), json!(one_line(&summary)));
    note(
        &mut warnings,
        call.send(TURN_COMPLETED, payload, key(&state.turn_id, "completed")),
    );
    let evidence = store_evidence(call, &state, &mut warnings);
    let mut result = base_result(&state, evidence, &warnings);
    result.insert("summary".into(), json!(summary));
    let result = Value::Object(result);
    state.result = Some(result.clone());
    store.save(&mut state).map_err(state_fail)?;
    clear_running(store, &state.turn_id);
    Ok(ToolOutput::ok(result))
}

fn finish_waiting(
    call: &BuiltinCall<'_>,
    store: &TurnStore,
    mut state: TurnState,
    mut warnings: Vec<String>,
) -> Result<ToolOutput, Failure> {
    state.status = TurnStatus::WaitingApproval;
    let evidence = store_evidence(call, &state, &mut warnings);
    let mut result = base_result(&state, evidence, &warnings);
    insert_pending(&state, &mut result);
    // The result of a waiting turn is not stored as final: the next call resumes it.
    store.save(&mut state).map_err(state_fail)?;
    clear_running(store, &state.turn_id);
    Ok(ToolOutput::ok(Value::Object(result)))
}

/// A provider error ends this call. A scripted plan that cannot go on aborts the turn (the
/// plan will not change); a model server that failed (after the client's retries), a reply it
/// could not use, or a key or provider block missing on resume leaves the turn
/// `provider_failed`: calling it again resumes from the last finished step, without running
/// any step again (walk-E finding 6). No `turn_aborted` is emitted: the turn has not ended, and
/// `cancel` ends it with its cleanup status.
fn finish_provider_error(
    call: &BuiltinCall<'_>,
    store: &TurnStore,
    mut state: TurnState,
    error: ProviderError,
    mut warnings: Vec<String>,
) -> Result<ToolOutput, Failure> {
    if matches!(error, ProviderError::Plan(_)) {
        let stop = Stop {
            code: error.code().into(),
            reason: error.to_string(),
        };
        return finish_aborted(call, store, state, stop, warnings);
    }
    state.status = TurnStatus::ProviderFailed;
    let evidence = store_evidence(call, &state, &mut warnings);
    let mut result = base_result(&state, evidence, &warnings);
    let reason = error.to_string();
    result.insert("error_code".into(), json!(error.code()));
    result.insert("reason".into(), json!(reason));
    result.insert("resumable".into(), json!(true));
    result.insert(
        "summary".into(),
        json!(format!(
            "the model provider failed after {} finished step(s); call `{TOOL_NAME}` again with turn_id `{}` and the same goal to resume, or with action `cancel` to end the turn",
            state.steps.len(),
            state.turn_id
        )),
    );
    let result = Value::Object(result);
    // Kept for `status`; cleared when the turn resumes.
    state.result = Some(result.clone());
    store.save(&mut state).map_err(state_fail)?;
    clear_running(store, &state.turn_id);
    let mut out = ToolOutput::fail(
        TURN_PROVIDER_FAILED_CODE,
        format!(
            "turn `{}` stopped at a model provider failure and can be resumed: {reason}",
            state.turn_id
        ),
    )
    .with_details(result.clone());
    out.data = Some(result);
    Ok(out)
}

fn finish_aborted(
    call: &BuiltinCall<'_>,
    store: &TurnStore,
    mut state: TurnState,
    stop: Stop,
    mut warnings: Vec<String>,
) -> Result<ToolOutput, Failure> {
    state.status = TurnStatus::Aborted;
    let cleanup = cleanup_for(&state);
    let evidence = store_evidence(call, &state, &mut warnings);
    note(
        &mut warnings,
        call.send(
            TURN_ABORTED,
            aborted_payload(&state.turn_id, &cleanup, &stop.reason),
            key(&state.turn_id, "aborted"),
        ),
    );
    let mut result = base_result(&state, evidence, &warnings);
    result.insert("error_code".into(), json!(stop.code));
    result.insert("reason".into(), json!(stop.reason));
    cleanup.insert_into(&mut result);
    let result = Value::Object(result);
    state.result = Some(result.clone());
    store.save(&mut state).map_err(state_fail)?;
    clear_running(store, &state.turn_id);
    Ok(aborted_output(&result))
}

fn aborted_output(result: &Value) -> ToolOutput {
    let reason = result.get("reason").and_then(Value::as_str).unwrap_or("");
    let turn_id = result.get("turn_id").and_then(Value::as_str).unwrap_or("");
    // A replayed ending says so in the message too, so an old error is not read as new
    // (walk-E finding 6: a key exported after the failure, then the same turn_id again).
    let replay = match result.get("ended_at").and_then(Value::as_str) {
        Some(at) if result.get("replayed") == Some(&Value::Bool(true)) => {
            format!(" (replayed: this turn ended at {at}; nothing ran again)")
        }
        _ => String::new(),
    };
    let mut out = ToolOutput::fail(
        TURN_ABORTED_CODE,
        format!("turn `{turn_id}` aborted: {reason}{replay}"),
    )
    .with_details(result.clone());
    out.data = Some(result.clone());
    out
}

/// What a stored turn answers when asked again: its result, with `replayed: true` and the
/// time it ended, so a caller cannot take an old answer for a new run.
fn stored_result(state: &TurnState) -> ToolOutput {
    let mut result = match &state.result {
        Some(Value::Object(r)) => r.clone(),
        _ => base_result(state, None, &[]),
    };
    result.insert("replayed".into(), json!(true));
    result.insert("ended_at".into(), json!(state.updated_at));
    let result = Value::Object(result);
    match state.status {
        TurnStatus::Aborted => aborted_output(&result),
        _ => ToolOutput::ok(result),
    }
}

fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Cleanup status (ABR-01, ABR-02) and interrupted turns

/// What an early stop left behind.
pub struct Cleanup {
    pub status: CleanupStatus,
    pub recovery_action: Option<String>,
}

impl Cleanup {
    fn insert_into(&self, m: &mut Map<String, Value>) {
        m.insert("cleanup_status".into(), json!(self.status.as_str()));
        if let Some(a) = &self.recovery_action {
            m.insert("recovery_action".into(), json!(a));
        }
    }
}

/// A recovery command embeds a step's input up to this size; a larger input (a model may send
/// up to [`super::openai::MAX_ARGUMENT_BYTES`]) is read from the turn file instead, so the
/// `turn_aborted` event and the console hint stay small (walk-E finding 8).
pub const MAX_RECOVERY_INPUT_BYTES: usize = 4 * 1024;

/// The work unit a turn was about, from the steps' inputs (`wu_id`), latest first.
fn work_unit<'a>(steps: impl DoubleEndedIterator<Item = &'a StepRecord>) -> Option<String> {
    steps
        .rev()
        .find_map(|s| s.input.get("wu_id").and_then(Value::as_str))
        .map(str::to_string)
}

fn wu_recover_command(wu_id: &str) -> String {
    crate::shell::tool_call_command("software-delivery:wu_recover", &json!({"wu_id": wu_id}))
}

/// The interrupted call itself, for the operator to re-run once they have checked its effect.
/// Every part is shell-quoted: the tool name and the input were proposed by a model.
fn rerun_command(turn_id: &str, step: &StepRecord) -> String {
    if step.input.to_string().len() <= MAX_RECOVERY_INPUT_BYTES {
        return crate::shell::tool_call_command(&step.tool, &step.input);
    }
    // Steps are stored in order, so step N is `steps[N-1]` of the turn file.
    let file = format!("{TURNS_DIR}/{turn_id}.json");
    let filter = format!(".steps[{}].input", step.index.saturating_sub(1));
    format!(
        "lumenflow tool call {} --input \"$(jq -c {} {})\"",
        crate::shell::quote(&step.tool),
        crate::shell::quote(&filter),
        crate::shell::quote(&file)
    )
}

/// ABR-02 for a turn that stopped early:
/// - a mutating step that started and never returned → `needs_recovery`: the workspace may be
///   half-changed; the action is a verbatim command (`software-delivery:wu_recover` for the work
///   unit the turn touched, else the interrupted call itself, to be re-run once the operator has
///   checked its effect);
/// - otherwise, mutating steps that completed → `partial`: consistent but incomplete, with prose;
/// - otherwise `clean`.
pub fn cleanup_for(state: &TurnState) -> Cleanup {
    let in_flight = state.in_flight().filter(|s| s.mutating);
    if let Some(step) = in_flight {
        let action = match work_unit(state.steps.iter()) {
            Some(wu) => wu_recover_command(&wu),
            None => rerun_command(&state.turn_id, step),
        };
        return Cleanup {
            status: CleanupStatus::NeedsRecovery,
            recovery_action: Some(action),
        };
    }
    let mutated: Vec<&StepRecord> = state.steps.iter().filter(|s| s.mutated()).collect();
    if mutated.is_empty() {
        return Cleanup {
            status: CleanupStatus::Clean,
            recovery_action: None,
        };
    }
    // Completed steps changed the workspace; failed ones may have (a tool can fail halfway),
    // and the prose says which is which rather than claiming a change nobody saw.
    let describe = |steps: &[&&StepRecord], one: &str, many: &str| {
        let list = steps
            .iter()
            .map(|s| format!("{} `{}`", s.index, s.tool))
            .collect::<Vec<_>>()
            .join(", ");
        if steps.len() == 1 {
            format!("Step {list} {one}")
        } else {
            format!("Steps {list} {many}")
        }
    };
    let completed: Vec<&&StepRecord> = mutated.iter().filter(|s| s.completed_write()).collect();
    let failed: Vec<&&StepRecord> = mutated.iter().filter(|s| !s.completed_write()).collect();
    let mut parts = Vec::new();
    if !completed.is_empty() {
        parts.push(describe(
            &completed,
            "completed and its change was kept",
            "completed and their changes were kept",
        ));
    }
    if !failed.is_empty() {
        parts.push(describe(
            &failed,
            "failed and may have changed the workspace before it failed",
            "failed and may have changed the workspace before they failed",
        ));
    }
    let mut prose = format!(
        "{} (nothing was rolled back); the rest of the goal was not done. Review the receipts, then start a new turn for what remains.",
        parts.join("; ")
    );
    // wu_recover repairs a work unit's claim and worktree; no tool abandons one.
    if let Some(wu) = work_unit(mutated.into_iter()) {
        prose.push_str(&format!(
            " If the work unit's worktree is missing or damaged, the operator can repair it with: {}",
            wu_recover_command(&wu)
        ));
    }
    Cleanup {
        status: CleanupStatus::Partial,
        recovery_action: Some(prose),
    }
}

fn aborted_payload(turn_id: &str, cleanup: &Cleanup, reason: &str) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("turn_id".into(), json!(turn_id));
    payload.insert("cleanup_status".into(), json!(cleanup.status.as_str()));
    if let Some(a) = &cleanup.recovery_action {
        payload.insert("recovery_action".into(), json!(a));
    }
    payload.insert("reason".into(), json!(one_line(reason)));
    payload
}

/// `turns/running/`: one empty file per turn that is (or was, until its process died) running.
fn running_dir(store: &TurnStore) -> std::path::PathBuf {
    store.dir().join("running")
}

fn running_marker(store: &TurnStore, turn_id: &str) -> std::path::PathBuf {
    running_dir(store).join(turn_id)
}

/// A marker per running turn, so reconciliation lists a few markers instead of reading every
/// turn ever run. Written before the state says `running`.
fn mark_running(store: &TurnStore, turn_id: &str) -> Result<(), StateError> {
    let path = running_marker(store, turn_id);
    let dir = running_dir(store);
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, b""))
        // The marker must survive a power cut as surely as the state that says `running`.
        .and_then(|_| std::fs::File::open(&dir).and_then(|d| d.sync_all()))
        .map_err(|source| StateError::Io {
            action: "write",
            path: path.display().to_string(),
            source,
        })
}

fn clear_running(store: &TurnStore, turn_id: &str) {
    let _ = std::fs::remove_file(running_marker(store, turn_id));
}

/// Mark a turn found `running` with nobody driving it as aborted (killed mid-flight), emit
/// `agent-runtime:turn_aborted`, and store the result. The caller holds the turn's lock.
fn settle_interrupted(
    store: &TurnStore,
    state: &mut TurnState,
    events: &dyn EventOut,
) -> Result<Cleanup, StateError> {
    let cleanup = cleanup_for(state);
    let reason = match state.in_flight() {
        Some(s) => format!(
            "the turn was interrupted during step {} `{}` (the process stopped before the call returned)",
            s.index, s.tool
        ),
        None => "the turn was interrupted between steps (the process stopped)".to_string(),
    };
    state.status = TurnStatus::Aborted;
    let mut warnings = Vec::new();
    note(
        &mut warnings,
        events.send(
            TURN_ABORTED,
            aborted_payload(&state.turn_id, &cleanup, &reason),
            key(&state.turn_id, "aborted"),
        ),
    );
    let mut result = base_result(state, None, &warnings);
    // The interrupted step is reported as such (it has no receipt the turn knows of).
    result.insert("error_code".into(), json!("TURN_INTERRUPTED"));
    result.insert("reason".into(), json!(reason));
    cleanup.insert_into(&mut result);
    state.result = Some(Value::Object(result));
    store.save(state)?;
    clear_running(store, &state.turn_id);
    Ok(cleanup)
}

/// One turn settled by reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    pub turn_id: String,
    pub cleanup_status: CleanupStatus,
    pub recovery_action: Option<String>,
}

fn reconcile_with(store: &TurnStore, events: &dyn EventOut) -> Result<Vec<Reconciled>, StateError> {
    let entries = match std::fs::read_dir(running_dir(store)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                action: "list",
                path: running_dir(store).display().to_string(),
                source,
            })
        }
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            Some(e.file_name().to_string_lossy().into_owned())
                .filter(|id| check_turn_id(id).is_ok())
        })
        .collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        // Held by a live call: not interrupted.
        let Ok(_lock) = store.lock(&id) else { continue };
        // One unreadable turn must not keep the others unsettled: it stays marked, and a
        // call for it reports the corruption with its file.
        match store.load(&id) {
            Ok(Some(mut state)) if state.status == TurnStatus::Running => {
                if let Ok(cleanup) = settle_interrupted(store, &mut state, events) {
                    out.push(Reconciled {
                        turn_id: id,
                        cleanup_status: cleanup.status,
                        recovery_action: cleanup.recovery_action,
                    });
                }
            }
            Ok(_) => clear_running(store, &id),
            Err(_) => {}
        }
    }
    Ok(out)
}

/// Settle every turn of the workspace that a dead process left `running` (call once when a
/// runtime starts; `agent:execute-turn` also does it on every call). Each is marked aborted with
/// its `cleanup_status`, and `agent-runtime:turn_aborted` goes to `emitter` when one is given.
/// Recovery commands are reported, never run.
pub fn reconcile_interrupted_turns(
    workspace_dir: &Path,
    emitter: Option<&PackEmitter>,
) -> Result<Vec<Reconciled>, StateError> {
    let store = TurnStore::open(workspace_dir);
    match emitter {
        Some(e) => reconcile_with(&store, e),
        None => reconcile_with(&store, &NoEvents),
    }
}
