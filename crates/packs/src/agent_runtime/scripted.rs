//! The scripted planner: a "model" that follows a plan, step by step, for reproducible runs,
//! tests and the trusted-compute demo (claim, patch, gates, PR that waits for approval).
//!
//! A plan is a list of steps `{tool, input?, expect?}` (`expect: success` by default, or
//! `refused` for a step that shows a rule at work), given inline in the call (`plan.steps`) or in
//! a `*.plan.json` / `*.plan.yaml` file of the workspace (`plan.file`). The planner is a pure
//! function of the transcript length, so a resumed turn picks up exactly where it stopped; the
//! resolved steps are stored with the turn, so editing the file later cannot change a turn that
//! is already under way.

use std::path::Path;

use lumenflow_contracts::scope::PathAccess;
use lumenflow_kernel::scope::EffectiveScopes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::provider::{Expect, ModelProvider, ProviderError, Step, TurnView};

/// Plan files bigger than this are refused (a plan is a handful of steps).
pub const MAX_PLAN_BYTES: u64 = 1024 * 1024;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    pub tool: String,
    #[serde(default = "empty_object")]
    pub input: Value,
    #[serde(default)]
    pub expect: Expect,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A plan file is either a list of steps or `{steps: [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum PlanDoc {
    List(Vec<PlanStep>),
    Wrapped { steps: Vec<PlanStep> },
}

/// Parse plan steps from a JSON value (the inline `plan.steps`, or a parsed file).
pub fn parse_steps(value: Value) -> Result<Vec<PlanStep>, ProviderError> {
    let steps = match serde_json::from_value::<PlanDoc>(value) {
        Ok(PlanDoc::List(s)) | Ok(PlanDoc::Wrapped { steps: s }) => s,
        Err(_) => {
            return Err(ProviderError::Plan(
                "a plan is a list of steps `{tool, input?, expect?: success|refused}` (or `{steps: [...]}`), \
                 and every step names a tool"
                    .into(),
            ))
        }
    };
    for (i, step) in steps.iter().enumerate() {
        if step.tool.trim().is_empty() {
            return Err(ProviderError::Plan(format!(
                "plan step {} has an empty `tool`",
                i + 1
            )));
        }
        if !step.input.is_object() {
            return Err(ProviderError::Plan(format!(
                "plan step {} (`{}`): `input` must be a JSON object",
                i + 1,
                step.tool
            )));
        }
    }
    Ok(steps)
}

/// Read a plan file: a workspace-relative path the call's effective read scopes allow (the
/// manifest grants `**/*.plan.json|yaml|yml`), not escaping the workspace through `..` or a
/// symlink, at most [`MAX_PLAN_BYTES`].
pub fn load_plan_file(
    workspace_dir: &Path,
    effective: &EffectiveScopes,
    raw: &str,
) -> Result<Vec<PlanStep>, ProviderError> {
    let refuse = |why: String| ProviderError::Plan(format!("plan file `{raw}`: {why}"));
    let rel =
        lumenflow_kernel::scope::normalize_rel_path(raw).map_err(|e| refuse(e.to_string()))?;
    if !effective.allows_path(&rel, PathAccess::Read) {
        return Err(refuse(
            "is outside the effective read scopes of `agent:execute-turn` (plan files are `*.plan.json`, `*.plan.yaml` or `*.plan.yml`)".into(),
        ));
    }
    let root = workspace_dir
        .canonicalize()
        .map_err(|e| refuse(format!("cannot resolve the workspace folder: {e}")))?;
    let full = root
        .join(&rel)
        .canonicalize()
        .map_err(|e| refuse(format!("cannot be read: {e}")))?;
    let inside = full
        .strip_prefix(&root)
        .map_err(|_| refuse("resolves outside the workspace (through a symlink)".into()))?
        .to_string_lossy()
        .replace('\\', "/");
    if !effective.allows_path(&inside, PathAccess::Read) {
        return Err(refuse(format!(
            "resolves through a symlink to `{inside}`, outside the effective read scopes"
        )));
    }
    let meta = std::fs::metadata(&full).map_err(|e| refuse(format!("cannot be read: {e}")))?;
    if meta.len() > MAX_PLAN_BYTES {
        return Err(refuse(format!(
            "is {} bytes; plans are limited to {MAX_PLAN_BYTES} bytes",
            meta.len()
        )));
    }
    let text =
        std::fs::read_to_string(&full).map_err(|e| refuse(format!("cannot be read: {e}")))?;
    let value = if rel.ends_with(".json") {
        serde_json::from_str::<Value>(&text)
            .map_err(|e| refuse(format!("is not valid JSON: {e}")))?
    } else {
        lumenflow_kernel::yaml::parse_value(&text)
            .map_err(|e| refuse(format!("is not valid YAML: {e}")))?
    };
    parse_steps(value).map_err(|e| refuse(e.to_string()))
}

/// The planner itself: step `n` of the turn is step `n` of the plan; then finish.
#[derive(Debug, Clone)]
pub struct ScriptedPlanner {
    steps: Vec<PlanStep>,
}

impl ScriptedPlanner {
    pub fn new(steps: Vec<PlanStep>) -> Self {
        ScriptedPlanner { steps }
    }

    pub fn steps(&self) -> &[PlanStep] {
        &self.steps
    }
}

impl ModelProvider for ScriptedPlanner {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn answers_instantly(&self) -> bool {
        true
    }

    fn next_step(&mut self, view: &TurnView<'_>) -> Result<Step, ProviderError> {
        let n = view.transcript.len();
        Ok(match self.steps.get(n) {
            Some(step) => Step::Call {
                call_id: Some(format!("step-{}", n + 1)),
                tool: step.tool.clone(),
                input: step.input.clone(),
                expect: step.expect,
            },
            None => Step::Finish {
                summary: format!("plan completed: {} step(s)", self.steps.len()),
            },
        })
    }
}
