//! The policy cascade (KRN-08): which rules allow, deny or ask for approval of a tool call, a claim
//! or a completion.
//!
//! Rules live in four layers, always evaluated in the order workspace → lane → pack → task
//! ([`LayerLevel`]). [`evaluate`] is the original engine's cascade, step for step
//! (`original/dispatch.md` §2.2):
//!
//! - the effective decision starts at `deny`; the first layer's `default_decision` replaces it;
//! - a later layer's default replaces it too, except that turning a `deny` into `allow` needs that
//!   layer's `allow_loosening` (otherwise a warning, and the deny stays);
//! - every matching rule is recorded as a [`PolicyDecision`], in evaluation order; a `deny` rule is
//!   sticky and final, an `approval_required` rule is sticky unless a deny wins, an `allow` rule
//!   cannot loosen a `deny` without `allow_loosening` (a warning again);
//! - so `deny` > `approval_required` > `allow`, and no lower layer ever loosens a rule's deny.
//!
//! Two things are new. Rules carry a declarative [`RuleCondition`] (`when:`), so one pack rule
//! does not hit every tool; see [`condition`] for its YAML form and exactly when it matches. And
//! the engine cannot fail open: a condition that cannot be evaluated (a missing or ill-typed
//! argument, an invalid glob) makes the rule produce a `deny` decision with the id
//! [`POLICY_EVALUATION_ERROR`] whose reason names the rule and the problem, whatever the rule's own
//! decision. [`validate_rules`] and [`validate_condition`] find the static problems when a manifest
//! or `workspace.yaml` is loaded, so they are reported with file and line long before a call.
//!
//! [`layers_for`] builds the four layers from the real configuration (the workspace `policies:`
//! block, the lane's `policy_overrides`, the loaded packs' manifest `policies`, the task's rules);
//! [`tool_call_decisions`] is the decision list a tool call records in its receipt (§2.4) and
//! [`reduce`] turns such a list into the verdict.
//!
//! This module decides; it performs no I/O and knows nothing about approvals, receipts or scopes.

pub mod condition;
mod layers;
mod tool_call;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::manifest::{
    Permission, PolicyDecisionKind as Effect, PolicyManifest, PolicyTrigger as Trigger,
};
pub use condition::{
    validate_condition, GlobPattern, InputMatch, PermissionSet, RuleCondition, RuleProblem,
};
pub use layers::{layers_for, validate_rules, Layer};
pub use tool_call::{
    builtin_decisions, reduce, to_tool_call_decisions, tool_call_decisions, ToolCallOptions,
};

/// A rule: a manifest `policies` entry, a workspace `policies.rules` entry, or a task rule.
pub type Rule = PolicyManifest;

/// Id of the decision recorded when a rule's condition cannot be evaluated.
pub const POLICY_EVALUATION_ERROR: &str = "kernel.policy.evaluation-error";
/// Id of the decision carrying the effective decision when no rule says it (§2.4).
pub const POLICY_RUNTIME_FALLBACK: &str = "kernel.policy.runtime-fallback";
/// Id of the decision added when the effective decision needs approval but no rule says so.
pub const POLICY_APPROVAL_REQUIRED: &str = "kernel.policy.approval-required";
/// Id of the builtin allow decision every tool call starts with.
pub const POLICY_BUILTIN_DEFAULT: &str = "kernel.policy.builtin-default";
/// Id of the builtin deny of `proc:exec`.
pub const POLICY_PROC_EXEC_DEFAULT_DENY: &str = "kernel.policy.proc-exec-default-deny";

/// The four layers, in evaluation order (the derived `Ord` is that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerLevel {
    Workspace,
    Lane,
    Pack,
    Task,
}

impl LayerLevel {
    pub const ALL: [LayerLevel; 4] = [
        LayerLevel::Workspace,
        LayerLevel::Lane,
        LayerLevel::Pack,
        LayerLevel::Task,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LayerLevel::Workspace => "workspace",
            LayerLevel::Lane => "lane",
            LayerLevel::Pack => "pack",
            LayerLevel::Task => "task",
        }
    }
}

/// What a rule is evaluated against.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalContext {
    pub trigger: Trigger,
    pub run_id: String,
    pub tool_name: Option<String>,
    pub task_id: Option<String>,
    pub lane_id: Option<String>,
    /// The tool's pack for a tool call; the task's domain for a claim or completion.
    pub pack_id: Option<String>,
    /// The tool's declared permission.
    pub permission: Option<Permission>,
    /// The tool input when it is a JSON object.
    pub tool_arguments: Option<Map<String, Value>>,
    /// What packs recorded about the task, by pack slug (claim and completion only; see
    /// [`condition`]). `None` when nothing was recorded.
    pub facts: Option<Map<String, Value>>,
}

impl EvalContext {
    pub fn new(trigger: Trigger, run_id: impl Into<String>) -> Self {
        EvalContext {
            trigger,
            run_id: run_id.into(),
            tool_name: None,
            task_id: None,
            lane_id: None,
            pack_id: None,
            permission: None,
            tool_arguments: None,
            facts: None,
        }
    }

    /// An `on_tool_request` context for `tool`.
    pub fn tool_request(run_id: impl Into<String>, tool: impl Into<String>) -> Self {
        EvalContext::new(Trigger::OnToolRequest, run_id).with_tool(tool)
    }

    pub fn with_tool(mut self, tool: impl Into<String>) -> Self {
        self.tool_name = Some(tool.into());
        self
    }

    pub fn with_task(mut self, task: impl Into<String>) -> Self {
        self.task_id = Some(task.into());
        self
    }

    pub fn with_lane(mut self, lane: impl Into<String>) -> Self {
        self.lane_id = Some(lane.into());
        self
    }

    pub fn with_pack(mut self, pack: impl Into<String>) -> Self {
        self.pack_id = Some(pack.into());
        self
    }

    pub fn with_permission(mut self, permission: Permission) -> Self {
        self.permission = Some(permission);
        self
    }

    /// The task's pack facts, by pack slug; an empty map is no facts.
    pub fn with_facts(mut self, facts: Map<String, Value>) -> Self {
        self.facts = (!facts.is_empty()).then_some(facts);
        self
    }

    /// The tool input; kept only when it is a JSON object, as in the original.
    pub fn with_input(mut self, input: &Value) -> Self {
        self.tool_arguments = input.as_object().cloned();
        self
    }
}

/// One decision, as persisted in receipts (`policy_decisions`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDecision {
    pub policy_id: String,
    pub decision: Effect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PolicyDecision {
    pub fn new(policy_id: impl Into<String>, decision: Effect, reason: Option<String>) -> Self {
        PolicyDecision {
            policy_id: policy_id.into(),
            decision,
            reason,
        }
    }
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The effective decision.
    pub decision: Effect,
    /// One per matching rule (and per rule that could not be evaluated), in evaluation order.
    pub decisions: Vec<PolicyDecision>,
    /// Attempted loosenings that were refused.
    pub warnings: Vec<String>,
}

impl Rule {
    /// A rule without reason or condition.
    pub fn new(id: impl Into<String>, trigger: Trigger, decision: Effect) -> Self {
        PolicyManifest {
            id: id.into(),
            trigger,
            decision,
            reason: None,
            when: None,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_when(mut self, when: RuleCondition) -> Self {
        self.when = Some(when);
        self
    }

    /// Whether this rule applies to `ctx`; `Err` when its condition cannot be evaluated.
    pub fn applies_to(&self, ctx: &EvalContext, trigger: Trigger) -> Result<bool, String> {
        if self.trigger != trigger {
            return Ok(false);
        }
        match &self.when {
            None => Ok(true),
            Some(when) => when.matches(ctx),
        }
    }
}

/// Run the cascade over `layers` (sorted by level, stably) for `ctx`.
pub fn evaluate(layers: &[Layer], ctx: &EvalContext) -> Evaluation {
    evaluate_trigger(layers, ctx, ctx.trigger)
}

/// [`evaluate`] with the trigger given explicitly (tool calls always use `on_tool_request`).
pub(crate) fn evaluate_trigger(
    layers: &[Layer],
    ctx: &EvalContext,
    trigger: Trigger,
) -> Evaluation {
    let mut ordered: Vec<&Layer> = layers.iter().collect();
    ordered.sort_by_key(|l| l.level);

    let mut effective = Effect::Deny;
    let mut initialized = false;
    let mut hard_deny = false;
    let mut approval = false;
    let mut decisions = Vec::new();
    let mut warnings = Vec::new();

    for layer in ordered {
        let level = layer.level.as_str();
        if !initialized {
            if let Some(d) = layer.default_decision {
                effective = d;
            }
            initialized = true;
        } else if let Some(d) = layer.default_decision {
            if effective == Effect::Deny && d == Effect::Allow && !layer.allow_loosening {
                warnings.push(format!(
                    "layer `{level}` attempted loosening default decision without explicit opt-in"
                ));
            } else {
                effective = d;
            }
        }

        for rule in &layer.rules {
            let decision = match rule.applies_to(ctx, trigger) {
                Ok(false) => continue,
                Ok(true) => PolicyDecision::new(&rule.id, rule.decision, rule.reason.clone()),
                Err(problem) => PolicyDecision::new(
                    POLICY_EVALUATION_ERROR,
                    Effect::Deny,
                    Some(format!(
                        "rule `{}` in layer `{level}` could not be evaluated: {problem}",
                        rule.id
                    )),
                ),
            };
            // A deny in force may only be replaced by a layer that opted in to loosening.
            let may_replace = effective != Effect::Deny || layer.allow_loosening;
            match decision.decision {
                Effect::Deny => {
                    hard_deny = true;
                    effective = Effect::Deny;
                }
                Effect::ApprovalRequired => {
                    approval = true;
                    if may_replace {
                        effective = Effect::ApprovalRequired;
                    }
                }
                Effect::Allow => {
                    if may_replace {
                        effective = Effect::Allow;
                    } else {
                        warnings.push(format!(
                            "layer `{level}` attempted loosening via rule `{}` without explicit opt-in",
                            rule.id
                        ));
                    }
                }
            }
            decisions.push(decision);
        }
    }

    let decision = if hard_deny {
        Effect::Deny
    } else if approval {
        Effect::ApprovalRequired
    } else {
        effective
    };
    Evaluation {
        decision,
        decisions,
        warnings,
    }
}
