//! The four layers built from the real configuration, and load-time validation of rules.

use std::collections::HashSet;

use crate::manifest::PackManifest;
use crate::workspace::WorkspacePolicies;
use crate::yaml::FieldPath;

use super::condition::{validate_condition, RuleProblem};
use super::{Effect, LayerLevel, Rule};

/// One layer of the cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub level: LayerLevel,
    pub default_decision: Option<Effect>,
    /// Lets this layer's default or `allow` rules replace a `deny` that came from a default.
    /// It never lifts a rule's deny.
    pub allow_loosening: bool,
    pub rules: Vec<Rule>,
}

impl Layer {
    /// An empty layer: no default, no loosening, no rules.
    pub fn new(level: LayerLevel) -> Self {
        Layer {
            level,
            default_decision: None,
            allow_loosening: false,
            rules: Vec::new(),
        }
    }

    /// A layer from a `policies:` block (the workspace's, or a lane's `policy_overrides`).
    pub fn from_policies(level: LayerLevel, policies: &WorkspacePolicies) -> Self {
        Layer {
            level,
            default_decision: policies.default_decision,
            allow_loosening: policies.allow_loosening,
            rules: policies.rules.clone(),
        }
    }

    pub fn with_default(mut self, decision: Effect) -> Self {
        self.default_decision = Some(decision);
        self
    }

    pub fn with_loosening(mut self) -> Self {
        self.allow_loosening = true;
        self
    }

    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}

/// The four layers for one evaluation, in order:
///
/// - workspace: the `policies:` block of `workspace.yaml` as written; without a block, the
///   original runtime's default `{default_decision: allow, allow_loosening: true}` (§2.3). A block
///   without `default_decision` starts from `deny`, as any first layer without a default does;
/// - lane: the lane's `policy_overrides`, or an empty layer;
/// - pack: every loaded pack's manifest `policies`, pack by pack in the given order, no default;
/// - task: the task's rules, no default, no loosening.
pub fn layers_for<'a>(
    workspace: Option<&WorkspacePolicies>,
    lane: Option<&WorkspacePolicies>,
    packs: impl IntoIterator<Item = &'a PackManifest>,
    task_rules: &[Rule],
) -> Vec<Layer> {
    // A workspace block that only lists rules keeps the original's default (allow, loosening
    // allowed): writing one deny rule must not silently deny every other call. A workspace that
    // wants default-deny says `default_decision: deny`.
    let workspace = match workspace {
        Some(p) if p.default_decision.is_some() => Layer::from_policies(LayerLevel::Workspace, p),
        Some(p) => {
            let mut layer = Layer::from_policies(LayerLevel::Workspace, p)
                .with_default(Effect::Allow)
                .with_loosening();
            layer.allow_loosening = true;
            layer
        }
        None => Layer::new(LayerLevel::Workspace)
            .with_default(Effect::Allow)
            .with_loosening(),
    };
    let lane = match lane {
        Some(p) => Layer::from_policies(LayerLevel::Lane, p),
        None => Layer::new(LayerLevel::Lane),
    };
    let mut pack = Layer::new(LayerLevel::Pack);
    for manifest in packs {
        pack.rules.extend(manifest.policies.iter().cloned());
    }
    let mut task = Layer::new(LayerLevel::Task);
    task.rules = task_rules.to_vec();
    vec![workspace, lane, pack, task]
}

/// Everything wrong with a list of rules at `at` (e.g. `policies.rules` of `workspace.yaml`):
/// empty or duplicate ids, empty reasons and every problem of each rule's `when`.
pub fn validate_rules(rules: &[Rule], at: &FieldPath) -> Vec<RuleProblem> {
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let p = at.index(i);
        if rule.id.trim().is_empty() {
            out.push(RuleProblem {
                path: p.key("id"),
                message: "policy id must not be empty".into(),
                help: None,
            });
        } else if !ids.insert(rule.id.as_str()) {
            out.push(RuleProblem {
                path: p.key("id"),
                message: format!("duplicate policy id `{}`", rule.id),
                help: None,
            });
        }
        if rule.reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
            out.push(RuleProblem {
                path: p.key("reason"),
                message: "reason must not be empty when given".into(),
                help: None,
            });
        }
        if let Some(when) = &rule.when {
            out.extend(validate_condition(when, &p.key("when")));
        }
    }
    out
}
