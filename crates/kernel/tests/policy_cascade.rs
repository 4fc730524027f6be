//! The policy cascade (KRN-08): the original engine's reference vectors (`original/dispatch.md`
//! §2.6) with declarative `when` conditions, the tool-call decision list (§2.4), the workspace
//! `policies:` block, failing closed, and the YAML form of `when`.
//!
//! Layers are written the way a workspace author writes them (a `policies:`-shaped block read
//! through the kernel's strict YAML reader), and every expectation is the rendered evaluation, so
//! each test reads as a table row. `check` is the only place that calls the engine.

use std::collections::BTreeMap;
use std::path::Path;

use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::manifest::parse_manifest;
use lumenflow_kernel::policy::{
    evaluate, layers_for, reduce, tool_call_decisions, validate_rules, Effect, EvalContext,
    Evaluation, GlobPattern, InputMatch, Layer, LayerLevel, Permission, PermissionSet,
    PolicyDecision, Rule, RuleCondition, ToolCallOptions, Trigger, POLICY_EVALUATION_ERROR,
};
use lumenflow_kernel::workspace::{parse_workspace, WorkspacePolicies};
use lumenflow_kernel::yaml::{self, FieldPath};
use proptest::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

fn effect(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::ApprovalRequired => "approval_required",
    }
}

fn render(e: &Evaluation) -> String {
    let mut out = vec![effect(e.decision).to_string()];
    for d in &e.decisions {
        match &d.reason {
            Some(r) => out.push(format!("{}: {} ({r})", d.policy_id, effect(d.decision))),
            None => out.push(format!("{}: {}", d.policy_id, effect(d.decision))),
        }
    }
    for w in &e.warnings {
        out.push(format!("warning: {w}"));
    }
    out.join("\n")
}

fn render_list(decisions: &[PolicyDecision]) -> String {
    let mut out = vec![effect(reduce(decisions)).to_string()];
    for d in decisions {
        out.push(format!("{}: {}", d.policy_id, effect(d.decision)));
    }
    out.join("\n")
}

/// Trim every line of an indented expectation.
fn lines(expect: &str) -> String {
    expect
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Evaluate and compare with the rendered expectation.
#[track_caller]
fn check(layers: &[Layer], ctx: &EvalContext, expect: &str) {
    let got = render(&evaluate(layers, ctx));
    assert_eq!(got, lines(expect), "\n--- got:\n{got}\n");
}

/// The tool-call decision list (§2.4) and its reduction, rendered.
#[track_caller]
fn check_tool_call(layers: &[Layer], ctx: &EvalContext, expect: &str) {
    let got = render_list(&tool_call_decisions(
        layers,
        ctx,
        ToolCallOptions::default(),
    ));
    assert_eq!(got, lines(expect), "\n--- got:\n{got}\n");
}

/// A value read through the kernel's strict YAML reader.
fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let node = yaml::parse(text).map_err(|e| e.to_string())?;
    yaml::de::from_node(&node).map_err(|e| {
        format!(
            "{e}{}",
            e.help
                .as_ref()
                .map(|h| format!(" (help: {h})"))
                .unwrap_or_default()
        )
    })
}

/// A layer written as a `policies:` block; its rules must pass load-time validation.
#[track_caller]
fn layer(level: LayerLevel, text: &str) -> Layer {
    let block: WorkspacePolicies = from_yaml(text).expect("valid policies block");
    let problems = validate_rules(&block.rules, &FieldPath::root().key("rules"));
    assert!(problems.is_empty(), "{problems:?}");
    Layer::from_policies(level, &block)
}

fn empty(level: LayerLevel) -> Layer {
    Layer::new(level)
}

fn tool(name: &str) -> EvalContext {
    EvalContext::tool_request("run-1", name)
}

use LayerLevel::{Lane, Pack, Task, Workspace};

// ---------------------------------------------------------------------------------------------
// The reference vectors of `policy-engine.test.ts` (§2.6), one test each.

#[test]
fn v01_a_lane_deny_wins_over_allow_rules_above_and_below() {
    let layers = [
        layer(
            Workspace,
            "rules:\n  - {id: workspace.allow.all, trigger: on_tool_request, decision: allow}\n",
        ),
        layer(
            Lane,
            r#"
rules:
  - id: lane.deny.proc
    trigger: on_tool_request
    decision: deny
    when: {tool: "proc:exec"}
"#,
        ),
        empty(Pack),
        layer(
            Task,
            "rules:\n  - {id: task.allow.all, trigger: on_tool_request, decision: allow}\n",
        ),
    ];
    check(
        &layers,
        &tool("proc:exec"),
        "
        deny
        workspace.allow.all: allow
        lane.deny.proc: deny
        task.allow.all: allow
        warning: layer `workspace` attempted loosening via rule `workspace.allow.all` without explicit opt-in
        warning: layer `task` attempted loosening via rule `task.allow.all` without explicit opt-in
        ",
    );
}

#[test]
fn v02_loosening_without_opt_in_is_refused_with_a_warning() {
    let layers = [
        layer(Workspace, "default_decision: deny\n"),
        empty(Lane),
        empty(Pack),
        layer(
            Task,
            "rules:\n  - {id: task.allow, trigger: on_tool_request, decision: allow}\n",
        ),
    ];
    check(
        &layers,
        &tool("fs:write"),
        "
        deny
        task.allow: allow
        warning: layer `task` attempted loosening via rule `task.allow` without explicit opt-in
        ",
    );
}

#[test]
fn v03_loosening_with_opt_in_allows() {
    let layers = [
        layer(Workspace, "default_decision: deny\n"),
        empty(Lane),
        empty(Pack),
        layer(
            Task,
            "allow_loosening: true\nrules:\n  - {id: task.allow, trigger: on_tool_request, decision: allow}\n",
        ),
    ];
    check(
        &layers,
        &tool("fs:write"),
        "
        allow
        task.allow: allow
        ",
    );
}

#[test]
fn v04_opt_in_cannot_beat_an_upstream_rule_deny() {
    let layers = [
        layer(
            Workspace,
            "rules:\n  - {id: workspace.deny.proc, trigger: on_tool_request, decision: deny, when: {tool: \"proc:exec\"}}\n",
        ),
        empty(Lane),
        empty(Pack),
        layer(
            Task,
            "allow_loosening: true\nrules:\n  - {id: task.allow, trigger: on_tool_request, decision: allow}\n",
        ),
    ];
    check(
        &layers,
        &tool("proc:exec"),
        "
        deny
        workspace.deny.proc: deny
        task.allow: allow
        ",
    );
}

#[test]
fn v05_every_trigger_is_evaluated() {
    let ws = layer(
        Workspace,
        r#"
default_decision: deny
allow_loosening: true
rules:
  - {id: allow.tool, trigger: on_tool_request, decision: allow}
  - {id: allow.claim, trigger: on_claim, decision: allow}
  - {id: allow.completion, trigger: on_completion, decision: allow}
  - {id: allow.evidence, trigger: on_evidence_added, decision: allow}
"#,
    );
    for (trigger, id) in [
        (Trigger::OnToolRequest, "allow.tool"),
        (Trigger::OnClaim, "allow.claim"),
        (Trigger::OnCompletion, "allow.completion"),
        (Trigger::OnEvidenceAdded, "allow.evidence"),
    ] {
        let ctx = EvalContext::new(trigger, "run-1").with_task("WU-1");
        check(
            std::slice::from_ref(&ws),
            &ctx,
            &format!("allow\n{id}: allow"),
        );
    }
}

#[test]
fn v06_a_full_context_with_default_allow() {
    let ws = layer(
        Workspace,
        "default_decision: allow\nrules:\n  - {id: workspace.allow, trigger: on_tool_request, decision: allow}\n",
    );
    let ctx = tool("fs:write")
        .with_task("WU-1")
        .with_lane("framework-core")
        .with_pack("software-delivery");
    check(&[ws], &ctx, "allow\nworkspace.allow: allow");
}

#[test]
fn v07_a_default_loosening_warning_names_the_layer_once() {
    let layers = [
        layer(Workspace, "default_decision: deny\n"),
        empty(Lane),
        layer(Pack, "default_decision: allow\n"),
        empty(Task),
    ];
    check(
        &layers,
        &tool("fs:write"),
        "
        deny
        warning: layer `pack` attempted loosening default decision without explicit opt-in
        ",
    );
}

#[test]
fn v08_a_rule_loosening_warning_names_the_rule_once() {
    let layers = [
        layer(Workspace, "default_decision: deny\n"),
        empty(Lane),
        empty(Pack),
        layer(
            Task,
            "rules:\n  - {id: task.allow.filesystem, trigger: on_tool_request, decision: allow}\n",
        ),
    ];
    check(
        &layers,
        &tool("fs:write"),
        "
        deny
        task.allow.filesystem: allow
        warning: layer `task` attempted loosening via rule `task.allow.filesystem` without explicit opt-in
        ",
    );
}

#[test]
fn v09_an_approval_rule_on_a_dangerous_tool() {
    let layers = [
        layer(Workspace, "default_decision: allow\n"),
        empty(Lane),
        layer(
            Pack,
            r#"
rules:
  - id: pack.approval.dangerous-tool
    trigger: on_tool_request
    decision: approval_required
    reason: dangerous
    when: {tool: "proc:*"}
"#,
        ),
        empty(Task),
    ];
    check(
        &layers,
        &tool("proc:exec"),
        "approval_required\npack.approval.dangerous-tool: approval_required (dangerous)",
    );
    // The condition keeps the rule off every other tool (the original hit them all).
    check(&layers, &tool("fs:read"), "allow");
}

#[test]
fn v10_approval_beats_allow() {
    let layers = [
        layer(
            Workspace,
            "default_decision: allow\nrules:\n  - {id: workspace.allow, trigger: on_tool_request, decision: allow}\n",
        ),
        layer(
            Lane,
            "rules:\n  - {id: lane.approval, trigger: on_tool_request, decision: approval_required}\n",
        ),
    ];
    check(
        &layers,
        &tool("fs:write"),
        "
        approval_required
        workspace.allow: allow
        lane.approval: approval_required
        ",
    );
}

#[test]
fn v11_deny_beats_approval() {
    let layers = [
        layer(
            Workspace,
            "rules:\n  - {id: workspace.deny.proc, trigger: on_tool_request, decision: deny, when: {tool: \"proc:exec\"}}\n",
        ),
        layer(
            Lane,
            "rules:\n  - {id: lane.approval.proc, trigger: on_tool_request, decision: approval_required, when: {tool: \"proc:exec\"}}\n",
        ),
    ];
    check(
        &layers,
        &tool("proc:exec"),
        "
        deny
        workspace.deny.proc: deny
        lane.approval.proc: approval_required
        ",
    );
}

fn etc_layers() -> Vec<Layer> {
    vec![layer(
        Workspace,
        r#"
default_decision: allow
rules:
  - id: workspace.deny.etc
    trigger: on_tool_request
    decision: deny
    reason: nothing under /etc
    when:
      input:
        /path: {starts_with: /etc/}
"#,
    )]
}

#[test]
fn v12_an_argument_predicate() {
    let layers = etc_layers();
    check(
        &layers,
        &tool("fs:write").with_input(&json!({"path": "/etc/passwd"})),
        "deny\nworkspace.deny.etc: deny (nothing under /etc)",
    );
    check(
        &layers,
        &tool("fs:write").with_input(&json!({"path": "/home/user/file.txt"})),
        "allow",
    );
}

#[test]
fn v13_no_arguments_means_the_predicate_is_false() {
    check(&etc_layers(), &tool("fs:write"), "allow");
    // Input that is not a JSON object is not an argument object either (as in the original).
    check(
        &etc_layers(),
        &tool("fs:write").with_input(&json!("/etc/passwd")),
        "allow",
    );
}

// ---------------------------------------------------------------------------------------------
// Cascade properties beyond the vectors.

#[test]
fn layers_are_evaluated_in_level_order_whatever_order_they_are_given_in() {
    let ws = layer(Workspace, "default_decision: deny\n");
    let task = layer(
        Task,
        "allow_loosening: true\nrules:\n  - {id: task.allow, trigger: on_tool_request, decision: allow}\n",
    );
    check(
        &[task.clone(), ws.clone()],
        &tool("fs:write"),
        "allow\ntask.allow: allow",
    );
    // Two layers of one level keep their relative order.
    let deny_default = layer(Lane, "default_decision: deny\n");
    let loosen = layer(Lane, "default_decision: allow\nallow_loosening: true\n");
    check(
        &[loosen.clone(), ws.clone(), deny_default.clone()],
        &tool("fs:write"),
        "deny",
    );
    check(&[deny_default, ws, loosen], &tool("fs:write"), "allow");
}

#[test]
fn no_layers_or_no_defaults_deny() {
    check(&[], &tool("fs:write"), "deny");
    check(
        &[empty(Workspace), empty(Lane), empty(Pack), empty(Task)],
        &tool("fs:write"),
        "deny",
    );
}

#[test]
fn a_rule_deny_cannot_be_loosened_by_any_lower_layer() {
    // KRN-08: a lower layer can never loosen a higher deny, whatever it sets.
    for (i, high) in LayerLevel::ALL.iter().enumerate() {
        let mut layers = vec![Layer::new(Workspace).with_default(Effect::Allow)];
        layers.push(Layer::new(*high).with_rule(Rule::new(
            "high.deny",
            Trigger::OnToolRequest,
            Effect::Deny,
        )));
        for low in &LayerLevel::ALL[i + 1..] {
            layers.push(
                Layer::new(*low)
                    .with_default(Effect::Allow)
                    .with_loosening()
                    .with_rule(Rule::new(
                        format!("{}.allow", low.as_str()),
                        Trigger::OnToolRequest,
                        Effect::Allow,
                    ))
                    .with_rule(Rule::new(
                        format!("{}.approval", low.as_str()),
                        Trigger::OnToolRequest,
                        Effect::ApprovalRequired,
                    )),
            );
        }
        let e = evaluate(&layers, &tool("fs:write"));
        assert_eq!(e.decision, Effect::Deny, "deny in {high:?}: {}", render(&e));
        let list = tool_call_decisions(&layers, &tool("fs:write"), ToolCallOptions::default());
        assert_eq!(reduce(&list), Effect::Deny);
    }
}

#[test]
fn approval_required_is_sticky() {
    // An approval rule anywhere survives every lower default and allow rule, with opt-in.
    for (i, high) in LayerLevel::ALL.iter().enumerate() {
        let mut layers = vec![
            Layer::new(Workspace).with_default(Effect::Allow),
            Layer::new(*high).with_rule(Rule::new(
                "high.approval",
                Trigger::OnToolRequest,
                Effect::ApprovalRequired,
            )),
        ];
        for low in &LayerLevel::ALL[i + 1..] {
            layers.push(
                Layer::new(*low)
                    .with_default(Effect::Allow)
                    .with_loosening()
                    .with_rule(Rule::new(
                        "low.allow",
                        Trigger::OnToolRequest,
                        Effect::Allow,
                    )),
            );
        }
        let e = evaluate(&layers, &tool("fs:write"));
        assert_eq!(e.decision, Effect::ApprovalRequired, "{}", render(&e));
    }
}

#[test]
fn rules_of_other_triggers_do_not_apply() {
    let layers = [layer(
        Workspace,
        "default_decision: allow\nrules:\n  - {id: claim.deny, trigger: on_claim, decision: deny}\n",
    )];
    check(&layers, &tool("fs:write"), "allow");
    check(
        &layers,
        &EvalContext::new(Trigger::OnClaim, "run-1"),
        "deny\nclaim.deny: deny",
    );
}

#[test]
fn conditions_are_conjunctions_over_tool_pack_lane_permission_and_input() {
    let layers = [layer(
        Workspace,
        r#"
default_decision: allow
rules:
  - id: deny.prod-writes
    trigger: on_tool_request
    decision: deny
    when:
      tool: "fs:*"
      pack: software-delivery
      lane: "ops-*"
      permission: [write, admin]
      input:
        /path: {glob: "deploy/**"}
        /mode: {one_of: [overwrite, truncate]}
        /dry_run: {exists: false}
"#,
    )];
    let all = || {
        tool("fs:write")
            .with_pack("software-delivery")
            .with_lane("ops-prod")
            .with_permission(Permission::Write)
            .with_input(&json!({"path": "deploy/prod/app.yaml", "mode": "overwrite"}))
    };
    check(&layers, &all(), "deny\ndeny.prod-writes: deny");
    let mut ctx = all();
    ctx.tool_name = Some("git:commit".into());
    check(&layers, &ctx, "allow");
    let ctx = all().with_pack("other-pack");
    check(&layers, &ctx, "allow");
    let ctx = all().with_lane("dev");
    check(&layers, &ctx, "allow");
    let ctx = all().with_permission(Permission::Read);
    check(&layers, &ctx, "allow");
    let mut ctx = all();
    ctx.lane_id = None; // absent context field: does not match
    check(&layers, &ctx, "allow");
    let ctx = all().with_input(&json!({"path": "src/main.rs", "mode": "overwrite"}));
    check(&layers, &ctx, "allow");
    let ctx = all().with_input(&json!({"path": "deploy/x", "mode": "append"}));
    check(&layers, &ctx, "allow");
    let ctx = all().with_input(&json!({"path": "deploy/x", "mode": "overwrite", "dry_run": true}));
    check(&layers, &ctx, "allow");
}

#[test]
fn equals_compares_json_values_and_numbers_by_value() {
    let layers = [layer(
        Workspace,
        r#"
default_decision: allow
rules:
  - {id: deny.force, trigger: on_tool_request, decision: deny, when: {input: {/force: {equals: true}}}}
  - {id: deny.level, trigger: on_tool_request, decision: deny, when: {input: {/opts/level: {equals: 3}}}}
"#,
    )];
    let with = |v: Value| tool("x:y").with_input(&v);
    check(
        &layers,
        &with(json!({"force": true, "opts": {"level": 3.0}})),
        "deny\ndeny.force: deny\ndeny.level: deny",
    );
    check(
        &layers,
        &with(json!({"force": "true", "opts": {"level": "3"}})),
        "allow",
    );
}

// ---------------------------------------------------------------------------------------------
// Failing closed.

#[test]
fn a_condition_on_a_missing_argument_is_a_deny_naming_the_rule() {
    // Even an `allow` rule: an evaluation error is a deny, never "does not match".
    let layers = [layer(
        Workspace,
        r#"
default_decision: allow
rules:
  - id: allow.tmp-writes
    trigger: on_tool_request
    decision: allow
    when:
      tool: "fs:*"
      input:
        /path: {starts_with: /tmp/}
"#,
    )];
    check(
        &layers,
        &tool("fs:write").with_input(&json!({"file": "/tmp/x"})),
        "
        deny
        kernel.policy.evaluation-error: deny (rule `allow.tmp-writes` in layer `workspace` could not be evaluated: `/path` is missing from the tool arguments, so `starts_with` cannot be checked)
        ",
    );
    // A tool the rule is not about never reaches the argument check.
    check(&layers, &tool("git:status").with_input(&json!({})), "allow");
}

#[test]
fn a_condition_on_an_ill_typed_argument_is_a_deny() {
    let layers = etc_layers();
    check(
        &layers,
        &tool("fs:write").with_input(&json!({"path": 42})),
        "
        deny
        kernel.policy.evaluation-error: deny (rule `workspace.deny.etc` in layer `workspace` could not be evaluated: `/path` is a number, but `starts_with` needs a string)
        ",
    );
    check(
        &[layer(
            Workspace,
            "default_decision: allow\nrules:\n  - {id: g, trigger: on_tool_request, decision: allow, when: {input: {/p: {glob: \"a/*\"}}}}\n",
        )],
        &tool("fs:write").with_input(&json!({"p": ["a/b"]})),
        "deny\nkernel.policy.evaluation-error: deny (rule `g` in layer `workspace` could not be evaluated: `/p` is a list, but `glob` needs a string)",
    );
    // The tool call records the error decision and is denied.
    let list = tool_call_decisions(
        &layers,
        &tool("fs:write").with_input(&json!({"path": 42})),
        ToolCallOptions::default(),
    );
    assert_eq!(reduce(&list), Effect::Deny);
    assert!(list.iter().any(|d| d.policy_id == POLICY_EVALUATION_ERROR));
}

#[test]
fn an_invalid_glob_is_refused_at_validation_and_denies_if_evaluated_anyway() {
    let rule =
        Rule::new("bad.glob", Trigger::OnToolRequest, Effect::Allow).with_when(RuleCondition {
            tool: Some(GlobPattern::new("fs:[")),
            ..RuleCondition::default()
        });
    let problems = validate_rules(
        std::slice::from_ref(&rule),
        &FieldPath::root().key("policies").key("rules"),
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path.to_string(), "policies.rules[0].when.tool");
    assert!(problems[0]
        .message
        .starts_with("`fs:[` is not a valid glob"));

    let layers = [Layer::new(Workspace)
        .with_default(Effect::Allow)
        .with_rule(rule)];
    // Static problems are errors for every call, even one the glob could not have matched.
    let e = evaluate(&layers, &tool("git:status"));
    assert_eq!(e.decision, Effect::Deny);
    assert_eq!(e.decisions[0].policy_id, POLICY_EVALUATION_ERROR);
    let reason = e.decisions[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("`bad.glob`") && reason.contains("`when.tool`"),
        "{reason}"
    );
}

#[test]
fn validation_finds_every_static_problem_of_a_condition() {
    let rules: Vec<Rule> = from_yaml(
        r#"
- id: a
  trigger: on_tool_request
  decision: deny
  when: {}
- id: a
  trigger: on_tool_request
  decision: deny
  reason: " "
  when:
    pack: "{unclosed"
    permission: []
    input:
      path: {exists: true}
      /x~2: {equals: 1}
      /y: {glob: "[z"}
      /z: {one_of: []}
"#,
    )
    .expect("structurally valid");
    let problems: Vec<String> = validate_rules(&rules, &FieldPath::root().key("rules"))
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    let expected = [
        "rules[0].when: `when` must set at least one of `tool`, `pack`, `lane`, `permission`, `input`",
        "rules[1].id: duplicate policy id `a`",
        "rules[1].reason: reason must not be empty when given",
        "rules[1].when.pack: `{unclosed` is not a valid glob: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
        "rules[1].when.permission: permission list must not be empty",
        "rules[1].when.input[\"/x~2\"]: `/x~2` is not a valid JSON pointer: `~` must be followed by `0` or `1`",
        "rules[1].when.input[\"/y\"].glob: `[z` is not a valid glob: unclosed character class; missing ']'",
        "rules[1].when.input[\"/z\"].one_of: `one_of` must list at least one value",
        "rules[1].when.input.path: `path` is not a JSON pointer into the tool arguments: it must start with `/`",
    ];
    assert_eq!(problems, expected);
}

#[test]
fn a_bad_when_in_a_manifest_is_reported_with_file_and_line() {
    let text = "id: notes-pack\nversion: 1.0.0\ntask_types: [task]\npolicies:\n  - id: notes.deny\n    trigger: on_tool_request\n    decision: deny\n    when:\n      tool: \"notes:[\"\n";
    let err = parse_manifest(SourceFile::new("packs/notes/manifest.yaml", text))
        .expect_err("invalid glob");
    let d = &err.0[0];
    assert_eq!(d.code, "MANIFEST_INVALID");
    assert_eq!(d.location(), "packs/notes/manifest.yaml:9:13");
    assert_eq!(d.field.as_deref(), Some("policies[0].when.tool"));
    assert!(d.help.is_some());

    // A misspelt matcher is a structural error with a did-you-mean.
    let text = "id: notes-pack\nversion: 1.0.0\ntask_types: [task]\npolicies:\n  - id: notes.deny\n    trigger: on_tool_request\n    decision: deny\n    when:\n      input:\n        /path: {startswith: /etc/}\n";
    let err = parse_manifest(SourceFile::new("manifest.yaml", text)).expect_err("typo");
    let d = &err.0[0];
    assert_eq!(d.location(), "manifest.yaml:10:17");
    assert!(
        d.message.contains("unknown field `startswith`"),
        "{}",
        d.message
    );
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .starts_with("did you mean `starts_with`?"),
        "{:?}",
        d.help
    );
}

// ---------------------------------------------------------------------------------------------
// The tool-call decision list (§2.4).

#[test]
fn tool_call_decisions_follow_the_runtime_hook() {
    let default_layers = layers_for(None, None, [], &[]);
    // No matching rule: the builtin allow plus a fallback carrying the effective decision.
    check_tool_call(
        &default_layers,
        &tool("fs:read"),
        "
        allow
        kernel.policy.builtin-default: allow
        kernel.policy.runtime-fallback: allow
        ",
    );
    // proc:exec is denied by the builtin hook; the engine is not consulted.
    check_tool_call(
        &default_layers,
        &tool("proc:exec"),
        "
        deny
        kernel.policy.proc-exec-default-deny: deny
        ",
    );
    let allowed = tool_call_decisions(
        &default_layers,
        &tool("proc:exec"),
        ToolCallOptions {
            allow_internal_proc_exec: true,
        },
    );
    assert_eq!(reduce(&allowed), Effect::Allow);
    // A deny from a default with the allow rule refused: a fallback deny is appended.
    let refused = [
        layer(Workspace, "default_decision: deny\n"),
        layer(
            Task,
            "rules:\n  - {id: task.allow, trigger: on_tool_request, decision: allow}\n",
        ),
    ];
    check_tool_call(
        &refused,
        &tool("fs:write"),
        "
        deny
        kernel.policy.builtin-default: allow
        task.allow: allow
        kernel.policy.runtime-fallback: deny
        ",
    );
    // Approval from a default, no approval rule: kernel.policy.approval-required is appended.
    let by_default = [
        layer(
            Workspace,
            "default_decision: allow\nrules:\n  - {id: workspace.allow, trigger: on_tool_request, decision: allow}\n",
        ),
        layer(Lane, "default_decision: approval_required\n"),
    ];
    check(
        &by_default,
        &tool("fs:write"),
        "approval_required\nworkspace.allow: allow",
    );
    check_tool_call(
        &by_default,
        &tool("fs:write"),
        "
        approval_required
        kernel.policy.builtin-default: allow
        workspace.allow: allow
        kernel.policy.approval-required: approval_required
        ",
    );
    // Matched rules as they are; the tool-call trigger is used whatever the context says.
    let mut ctx = tool("proc:run");
    ctx.trigger = Trigger::OnClaim;
    check_tool_call(
        &[
            layer(Workspace, "default_decision: allow\n"),
            layer(
                Pack,
                "rules:\n  - {id: pack.ask, trigger: on_tool_request, decision: approval_required, when: {tool: \"proc:*\"}}\n",
            ),
        ],
        &ctx,
        "
        approval_required
        kernel.policy.builtin-default: allow
        pack.ask: approval_required
        ",
    );
    // A context without a tool name cannot be a tool call.
    let nameless = EvalContext::new(Trigger::OnToolRequest, "run-1");
    check_tool_call(
        &default_layers,
        &nameless,
        "deny\nkernel.policy.evaluation-error: deny",
    );
}

#[test]
fn reduce_is_deny_then_approval_then_allow() {
    let d = |decision| PolicyDecision::new("p", decision, None);
    assert_eq!(reduce(&[]), Effect::Deny);
    assert_eq!(reduce(&[d(Effect::Allow)]), Effect::Allow);
    assert_eq!(
        reduce(&[d(Effect::Allow), d(Effect::ApprovalRequired)]),
        Effect::ApprovalRequired
    );
    assert_eq!(
        reduce(&[
            d(Effect::Deny),
            d(Effect::ApprovalRequired),
            d(Effect::Allow)
        ]),
        Effect::Deny
    );
}

#[test]
fn policy_decisions_serialize_as_the_receipt_field() {
    let decisions = vec![
        PolicyDecision::new("pack.ask", Effect::ApprovalRequired, None),
        PolicyDecision::new("ws.deny", Effect::Deny, Some("no".into())),
    ];
    let v = serde_json::to_value(&decisions).expect("json");
    assert_eq!(
        v,
        json!([
            {"policy_id": "pack.ask", "decision": "approval_required"},
            {"policy_id": "ws.deny", "decision": "deny", "reason": "no"}
        ])
    );
    let back: Vec<PolicyDecision> = serde_json::from_value(v).expect("back");
    assert_eq!(back, decisions);
}

// ---------------------------------------------------------------------------------------------
// The real configuration: workspace `policies:`, lane `policy_overrides`, pack manifests.

const WORKSPACE: &str = r#"id: ws
name: Test
packs: []
lanes:
  - id: core
    title: Core
  - id: ops
    title: Ops
    policy_overrides:
      rules:
        - id: lane.ops.ask-writes
          trigger: on_tool_request
          decision: approval_required
          when: {permission: write}
security:
  allowed_scopes:
    - type: path
      pattern: "**"
      access: read
memory_namespace: mem
event_namespace: evt
policies:
  default_decision: deny
  allow_loosening: true
  rules:
    - id: workspace.allow.notes
      trigger: on_tool_request
      decision: allow
      when: {tool: "notes:*"}
    - id: workspace.deny.secrets
      trigger: on_tool_request
      decision: deny
      reason: secrets stay put
      when:
        input:
          /path: {glob: "secrets/**"}
"#;

const NOTES_MANIFEST: &str = r#"id: notes-pack
version: 1.0.0
task_types: [task]
policies:
  - id: notes.deny.etc
    trigger: on_tool_request
    decision: deny
    reason: nothing under /etc
    when:
      tool: "notes:*"
      input:
        /path: {starts_with: /etc/}
  - id: notes.gate.format
    trigger: on_completion
    decision: allow
"#;

#[test]
fn the_workspace_policies_block_and_lane_overrides_are_honoured() {
    let doc = parse_workspace(SourceFile::new("workspace.yaml", WORKSPACE), Path::new("."))
        .expect("valid workspace");
    let pack = parse_manifest(SourceFile::new("manifest.yaml", NOTES_MANIFEST))
        .expect("valid manifest")
        .manifest;
    let layers_in = |lane: &str| {
        layers_for(
            doc.spec.policies.as_ref(),
            doc.spec
                .lane(lane)
                .and_then(|l| l.policy_overrides.as_ref()),
            [&pack],
            &[],
        )
    };
    let notes = |path: &str| {
        tool("notes:write")
            .with_pack("notes-pack")
            .with_permission(Permission::Write)
            .with_input(&json!({"path": path}))
    };
    check(
        &layers_in("core"),
        &notes("notes/a.md"),
        "allow\nworkspace.allow.notes: allow",
    );
    // The workspace default is deny: a tool no rule allows is refused.
    check(
        &layers_in("core"),
        &tool("fs:write").with_input(&json!({"path": "a"})),
        "deny",
    );
    check(
        &layers_in("core"),
        &notes("secrets/k.pem"),
        "
        deny
        workspace.allow.notes: allow
        workspace.deny.secrets: deny (secrets stay put)
        ",
    );
    check(
        &layers_in("core"),
        &notes("/etc/hosts"),
        "
        deny
        workspace.allow.notes: allow
        notes.deny.etc: deny (nothing under /etc)
        ",
    );
    check(
        &layers_in("ops"),
        &notes("notes/a.md"),
        "
        approval_required
        workspace.allow.notes: allow
        lane.ops.ask-writes: approval_required
        ",
    );
    // Pack rules of other triggers apply to their trigger only, and a pack's allow rule cannot
    // loosen the workspace's default deny (the pack layer has no `allow_loosening`).
    check(
        &layers_in("core"),
        &EvalContext::new(Trigger::OnCompletion, "run-1").with_pack("notes-pack"),
        "
        deny
        notes.gate.format: allow
        warning: layer `pack` attempted loosening via rule `notes.gate.format` without explicit opt-in
        ",
    );
}

#[test]
fn without_a_policies_block_the_original_default_allow_applies() {
    let layers = layers_for(None, None, [], &[]);
    assert_eq!(layers.len(), 4);
    assert_eq!(
        layers.iter().map(|l| l.level).collect::<Vec<_>>(),
        LayerLevel::ALL
    );
    assert_eq!(layers[0].default_decision, Some(Effect::Allow));
    assert!(layers[0].allow_loosening);
    check(&layers, &tool("fs:write"), "allow");
    // A block that only lists rules keeps default allow: one deny rule must not deny every
    // other call. Default deny is asked for explicitly.
    let block = WorkspacePolicies::default();
    check(
        &layers_for(Some(&block), None, [], &[]),
        &tool("fs:write"),
        "allow",
    );
    let strict = WorkspacePolicies {
        default_decision: Some(Effect::Deny),
        ..WorkspacePolicies::default()
    };
    check(
        &layers_for(Some(&strict), None, [], &[]),
        &tool("fs:write"),
        "deny",
    );
}

#[test]
fn a_bad_when_in_the_workspace_is_reported_with_its_line() {
    let text = WORKSPACE.replace("{tool: \"notes:*\"}", "{tool: \"notes:[\"}");
    let err = parse_workspace(SourceFile::new("workspace.yaml", text), Path::new("."))
        .expect_err("invalid glob");
    let d = &err.0[0];
    assert_eq!(d.code, "WORKSPACE_INVALID");
    assert_eq!(d.field.as_deref(), Some("policies.rules[0].when.tool"));
    assert_eq!(d.line, 29);
    let text = WORKSPACE.replace("{permission: write}", "{permission: wrte}");
    let err = parse_workspace(SourceFile::new("workspace.yaml", text), Path::new("."))
        .expect_err("bad permission");
    assert_eq!(
        err.0[0].field.as_deref(),
        Some("lanes[1].policy_overrides.rules[0].when.permission")
    );
}

// ---------------------------------------------------------------------------------------------
// The YAML form of `when`.

#[test]
fn the_when_form_round_trips_through_the_strict_reader() {
    let text = r#"
id: pack.deny.etc
trigger: on_tool_request
decision: deny
reason: nothing under /etc
when:
  tool: "fs:*"
  pack: notes-*
  lane: ops
  permission: [write, admin]
  input:
    /path: {starts_with: /etc/}
    /mode: {one_of: [overwrite, 3, null]}
    /force: {equals: null}
    /dry_run: {exists: false}
    /target: {glob: "deploy/**"}
"#;
    let rule: Rule = from_yaml(text).expect("valid rule");
    let when = rule.when.clone().expect("when");
    assert_eq!(when.tool, Some(GlobPattern::new("fs:*")));
    assert_eq!(
        when.permission,
        Some(PermissionSet(vec![Permission::Write, Permission::Admin]))
    );
    let input = when.input.clone().expect("input");
    let expected: BTreeMap<String, InputMatch> = [
        ("/path", InputMatch::StartsWith("/etc/".into())),
        (
            "/mode",
            InputMatch::OneOf(vec![json!("overwrite"), json!(3), Value::Null]),
        ),
        ("/force", InputMatch::Equals(Value::Null)),
        ("/dry_run", InputMatch::Exists(false)),
        ("/target", InputMatch::Glob(GlobPattern::new("deploy/**"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(input, expected);

    let as_json = serde_json::to_value(&rule).expect("json");
    assert_eq!(as_json["when"]["input"]["/force"], json!({"equals": null}));
    assert_eq!(as_json["when"]["permission"], json!(["write", "admin"]));
    let emitted = yaml::emit::to_yaml_string(&as_json);
    let back: Rule = from_yaml(&emitted).expect("emitted yaml reads back");
    assert_eq!(back, rule);

    // One permission is written as a scalar.
    let one: RuleCondition = from_yaml("permission: admin\n").expect("one");
    assert_eq!(one.permission, Some(PermissionSet::from(Permission::Admin)));
    assert_eq!(
        serde_json::to_value(&one).expect("json"),
        json!({"permission": "admin"})
    );
}

#[test]
fn the_when_form_is_strict() {
    for (text, message) in [
        (
            "tools: \"fs:*\"\n",
            "`tools`: unknown field `tools` (help: did you mean `tool`?",
        ),
        (
            "input:\n  /p: {starts_with: /a, glob: \"b\"}\n",
            "`input[\"/p\"]`: expected exactly one matcher (`equals`, `starts_with`, `glob`, `exists`, `one_of`), found 2",
        ),
        (
            "input:\n  /p: {}\n",
            "expected exactly one matcher (`equals`, `starts_with`, `glob`, `exists`, `one_of`), found 0",
        ),
        (
            "input:\n  /p: {starts_with: 3}\n",
            "`input[\"/p\"].starts_with`: expected a string, found integer `3`",
        ),
        (
            "permission: [read, owner]\n",
            "`permission[1]`: unknown value `owner`",
        ),
        ("permission: 3\n", "`permission`: expected a permission"),
    ] {
        let err = from_yaml::<RuleCondition>(text).expect_err(text);
        assert!(err.contains(message), "{text}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

fn arb_effect() -> impl Strategy<Value = Effect> {
    prop_oneof![
        Just(Effect::Allow),
        Just(Effect::Deny),
        Just(Effect::ApprovalRequired)
    ]
}

fn arb_level() -> impl Strategy<Value = LayerLevel> {
    prop_oneof![Just(Workspace), Just(Lane), Just(Pack), Just(Task)]
}

/// Conditions that match, do not match, or fail on the generated contexts.
fn arb_when() -> impl Strategy<Value = Option<RuleCondition>> {
    let tool = |g: &str| RuleCondition {
        tool: Some(GlobPattern::new(g)),
        ..RuleCondition::default()
    };
    let input = |m: InputMatch| RuleCondition {
        input: Some([("/path".to_string(), m)].into_iter().collect()),
        ..RuleCondition::default()
    };
    prop_oneof![
        Just(None),
        Just(Some(tool("fs:*"))),
        Just(Some(tool("proc:exec"))),
        Just(Some(tool("fs:["))),
        Just(Some(input(InputMatch::StartsWith("/etc/".into())))),
        Just(Some(input(InputMatch::Exists(true)))),
        Just(Some(RuleCondition {
            permission: Some(PermissionSet::from(Permission::Write)),
            ..RuleCondition::default()
        })),
    ]
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    (
        0u8..4,
        arb_effect(),
        prop_oneof![
            4 => Just(Trigger::OnToolRequest),
            1 => Just(Trigger::OnClaim)
        ],
        arb_when(),
    )
        .prop_map(|(n, decision, trigger, when)| Rule {
            id: format!("rule.{n}"),
            trigger,
            decision,
            reason: None,
            when,
        })
}

fn arb_layer() -> impl Strategy<Value = Layer> {
    (
        arb_level(),
        proptest::option::of(arb_effect()),
        any::<bool>(),
        proptest::collection::vec(arb_rule(), 0..4),
    )
        .prop_map(|(level, default_decision, allow_loosening, rules)| Layer {
            level,
            default_decision,
            allow_loosening,
            rules,
        })
}

fn arb_ctx() -> impl Strategy<Value = EvalContext> {
    (
        prop_oneof![Just("fs:write"), Just("proc:exec"), Just("git:status")],
        prop_oneof![
            Just(None),
            Just(Some(json!({"path": "/etc/passwd"}))),
            Just(Some(json!({"path": "/home/a"}))),
            Just(Some(json!({"path": 7}))),
            Just(Some(json!({}))),
        ],
        proptest::option::of(prop_oneof![Just(Permission::Read), Just(Permission::Write)]),
    )
        .prop_map(|(name, input, permission)| {
            let mut ctx = tool(name);
            if let Some(v) = input {
                ctx = ctx.with_input(&v);
            }
            ctx.permission = permission;
            ctx
        })
}

/// 0 = deny, 1 = approval_required, 2 = allow.
fn permissiveness(e: Effect) -> u8 {
    match e {
        Effect::Deny => 0,
        Effect::ApprovalRequired => 1,
        Effect::Allow => 2,
    }
}

/// What a layer's own rules force on the result: a matched deny (or a rule that cannot be
/// evaluated) forces deny; a matched approval forces at most approval_required.
fn sticky_outcome(layer: &Layer, ctx: &EvalContext) -> Option<Effect> {
    let mut out = None;
    for rule in &layer.rules {
        let forced = match rule.applies_to(ctx, ctx.trigger) {
            Ok(false) => continue,
            Err(_) => Effect::Deny,
            Ok(true) if rule.decision == Effect::Allow => continue,
            Ok(true) => rule.decision,
        };
        out = Some(match out {
            Some(prev) if permissiveness(prev) < permissiveness(forced) => prev,
            _ => forced,
        });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// KRN-08: adding a deny rule to any layer never turns a deny into anything else, and adding
    /// a deny rule that applies always yields deny.
    #[test]
    fn adding_a_deny_rule_never_loosens(
        layers in proptest::collection::vec(arb_layer(), 0..5),
        ctx in arb_ctx(),
        target in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        when in arb_when(),
    ) {
        let before = evaluate(&layers, &ctx);
        let mut after_layers = layers.clone();
        if after_layers.is_empty() {
            after_layers.push(Layer::new(Workspace));
        }
        let t = target.index(after_layers.len());
        let rules = &mut after_layers[t].rules;
        let at = position.index(rules.len() + 1);
        let mut deny = Rule::new("added.deny", Trigger::OnToolRequest, Effect::Deny);
        deny.when = when;
        let applies = deny.applies_to(&ctx, ctx.trigger).unwrap_or(true);
        rules.insert(at, deny);
        let after = evaluate(&after_layers, &ctx);
        if before.decision == Effect::Deny {
            prop_assert_eq!(after.decision, Effect::Deny, "{}\n->\n{}", render(&before), render(&after));
        }
        if applies {
            prop_assert_eq!(after.decision, Effect::Deny);
        }
        // And never more permissive than before, in any case.
        prop_assert!(permissiveness(after.decision) <= permissiveness(before.decision));
    }

    /// The result is never more permissive than any layer's own sticky outcome.
    #[test]
    fn never_more_permissive_than_a_layers_sticky_outcome(
        layers in proptest::collection::vec(arb_layer(), 0..5),
        ctx in arb_ctx(),
    ) {
        let e = evaluate(&layers, &ctx);
        for layer in &layers {
            if let Some(forced) = sticky_outcome(layer, &ctx) {
                prop_assert!(
                    permissiveness(e.decision) <= permissiveness(forced),
                    "{:?} forces {:?}, got {}", layer.level, forced, render(&e)
                );
            }
        }
        // The tool-call list reduces to the same verdict as the engine whenever the builtin hook
        // allows, and never to something more permissive.
        let list = tool_call_decisions(&layers, &ctx, ToolCallOptions::default());
        let verdict = reduce(&list);
        prop_assert!(permissiveness(verdict) <= permissiveness(e.decision));
        if ctx.tool_name.as_deref() != Some("proc:exec") {
            prop_assert_eq!(verdict, e.decision);
        }
    }
}
