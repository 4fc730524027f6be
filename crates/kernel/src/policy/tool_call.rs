//! The decision list of a tool call (`original/dispatch.md` §2.4) and its verdict.

use super::{
    evaluate_trigger, Effect, EvalContext, Evaluation, Layer, PolicyDecision, Trigger,
    POLICY_APPROVAL_REQUIRED, POLICY_BUILTIN_DEFAULT, POLICY_EVALUATION_ERROR,
    POLICY_PROC_EXEC_DEFAULT_DENY, POLICY_RUNTIME_FALLBACK,
};

/// Switches of the builtin hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolCallOptions {
    /// Let `proc:exec` through the builtin hook (the original's `allowInternalProcExec`).
    pub allow_internal_proc_exec: bool,
}

const FALLBACK_REASON: &str = "Effective policy decision without explicit matching rules";

/// The builtin hook: `proc:exec` is denied unless allowed by `options`; every other tool starts
/// with one `allow` decision.
pub fn builtin_decisions(tool_name: &str, options: ToolCallOptions) -> Vec<PolicyDecision> {
    if tool_name == "proc:exec" && !options.allow_internal_proc_exec {
        vec![PolicyDecision::new(
            POLICY_PROC_EXEC_DEFAULT_DENY,
            Effect::Deny,
            Some("proc:exec is denied by default".into()),
        )]
    } else {
        vec![PolicyDecision::new(
            POLICY_BUILTIN_DEFAULT,
            Effect::Allow,
            Some("Builtin tool allowed by default policy".into()),
        )]
    }
}

/// An engine result as tool-call decisions: the matched decisions, plus a synthetic decision
/// carrying the effective decision when no matched rule states it.
pub fn to_tool_call_decisions(evaluation: &Evaluation) -> Vec<PolicyDecision> {
    if evaluation.decisions.is_empty() {
        return vec![PolicyDecision::new(
            POLICY_RUNTIME_FALLBACK,
            evaluation.decision,
            Some(FALLBACK_REASON.into()),
        )];
    }
    let mut out = evaluation.decisions.clone();
    let stated = |effect: Effect| out.iter().any(|d| d.decision == effect);
    match evaluation.decision {
        Effect::ApprovalRequired if !stated(Effect::ApprovalRequired) => {
            out.push(PolicyDecision::new(
                POLICY_APPROVAL_REQUIRED,
                Effect::ApprovalRequired,
                Some(
                    "Effective policy decision requires approval without an explicit matching rule"
                        .into(),
                ),
            ));
        }
        Effect::Deny if !stated(Effect::Deny) => {
            out.push(PolicyDecision::new(
                POLICY_RUNTIME_FALLBACK,
                Effect::Deny,
                Some(FALLBACK_REASON.into()),
            ));
        }
        _ => {}
    }
    out
}

/// Every decision of a tool call, in the order the receipt records them: the builtin hook's, then
/// (unless the builtin hook denied) the cascade's for `on_tool_request`, whatever `ctx.trigger`
/// says. A context without a tool name is refused.
pub fn tool_call_decisions(
    layers: &[Layer],
    ctx: &EvalContext,
    options: ToolCallOptions,
) -> Vec<PolicyDecision> {
    let Some(tool) = ctx.tool_name.as_deref() else {
        return vec![PolicyDecision::new(
            POLICY_EVALUATION_ERROR,
            Effect::Deny,
            Some("a tool call was evaluated without a tool name".into()),
        )];
    };
    let mut out = builtin_decisions(tool, options);
    if out.iter().any(|d| d.decision == Effect::Deny) {
        return out;
    }
    let evaluation = evaluate_trigger(layers, ctx, Trigger::OnToolRequest);
    out.extend(to_tool_call_decisions(&evaluation));
    out
}

/// The verdict of a decision list: any `deny` → deny, else any `approval_required` →
/// approval_required, else allow. An empty list is a deny (nothing authorised the call); lists
/// from [`tool_call_decisions`] are never empty.
pub fn reduce(decisions: &[PolicyDecision]) -> Effect {
    if decisions.is_empty() || decisions.iter().any(|d| d.decision == Effect::Deny) {
        Effect::Deny
    } else if decisions
        .iter()
        .any(|d| d.decision == Effect::ApprovalRequired)
    {
        Effect::ApprovalRequired
    } else {
        Effect::Allow
    }
}
