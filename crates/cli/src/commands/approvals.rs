//! `lumenflow approvals list|show|grant|deny`: the local approval provider (KRN-09).
//!
//! Approvals live in `<workspace>/.lumenflow/state/approvals/` and are read and decided through
//! the kernel's [`LocalApprovals`]; this module only renders them. A grant lets exactly one call
//! of the bound tool with the bound input run; the agent repeats its call after the grant.

use clap::{Args, Subcommand, ValueEnum};
use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::approvals::{
    ApprovalError, ApprovalFilter, ApprovalProvider, ApprovalRequest, ApprovalStatus, Decision,
    LocalApprovals,
};
use lumenflow_kernel::workspace::WORKSPACE_FILE_NAME;
use serde_json::{json, Value};

use super::{display_path, Context};
use crate::output::{print_ok, warn, CliError};

/// The approver recorded when neither `--by` nor `$USER` names one.
const DEFAULT_APPROVER: &str = "local-operator";

#[derive(Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// List approvals (default: the pending ones).
    List(ListArgs),
    /// Show one approval in full.
    Show {
        /// The approval id (`apr_...`).
        id: String,
    },
    /// Grant a pending approval: the bound tool call may then run exactly once.
    Grant(DecideArgs),
    /// Deny a pending approval (final).
    Deny(DecideArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Every approval, whatever its status.
    #[arg(long, conflicts_with = "status")]
    all: bool,
    /// Only approvals in this status.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    /// The approval id (`apr_...`).
    id: String,
    /// Why (recorded with the decision).
    #[arg(long)]
    reason: String,
    /// Who decides (default: $USER, else `local-operator`).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StatusArg {
    Pending,
    Granted,
    Denied,
    Consumed,
    Expired,
}

impl From<StatusArg> for ApprovalStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Pending => ApprovalStatus::Pending,
            StatusArg::Granted => ApprovalStatus::Granted,
            StatusArg::Denied => ApprovalStatus::Denied,
            StatusArg::Consumed => ApprovalStatus::Consumed,
            StatusArg::Expired => ApprovalStatus::Expired,
        }
    }
}

pub fn run(ctx: &Context, command: ApprovalsCommand) -> Result<(), CliError> {
    match command {
        ApprovalsCommand::List(a) => list(
            ctx,
            if a.all {
                None
            } else {
                Some(
                    a.status
                        .map_or(ApprovalStatus::Pending, ApprovalStatus::from),
                )
            },
        ),
        ApprovalsCommand::Show { id } => show(ctx, &id),
        ApprovalsCommand::Grant(a) => decide(ctx, &a.id, true, a.reason, a.by),
        ApprovalsCommand::Deny(a) => decide(ctx, &a.id, false, a.reason, a.by),
    }
}

/// The workspace's store; the workspace must exist (its `workspace.yaml` need not be valid, so
/// approvals can still be denied while the configuration is being fixed).
fn store(ctx: &Context) -> Result<LocalApprovals, CliError> {
    let dir = ctx.workspace_dir()?;
    if !dir.join(WORKSPACE_FILE_NAME).is_file() {
        return Err(CliError::new(
            "WORKSPACE_NOT_FOUND",
            format!("no {WORKSPACE_FILE_NAME} in `{}`", display_path(&dir)),
        )
        .with_help("run `lumenflow init` to create a workspace, or pass --workspace DIR"));
    }
    Ok(LocalApprovals::open(&dir))
}

fn error(e: ApprovalError) -> CliError {
    let help = match &e {
        ApprovalError::NotFound { .. } => {
            Some("see the pending approvals with `lumenflow approvals list`".to_string())
        }
        ApprovalError::Expired { .. } => {
            Some("the agent must make its call again, which asks for a new approval".to_string())
        }
        ApprovalError::AlreadyDecided { .. } | ApprovalError::AlreadyConsumed { .. } => {
            Some("a new call of the tool with the same input asks for a new approval".to_string())
        }
        ApprovalError::Corrupt { path, .. } => Some(format!(
            "the store never treats a damaged file as a grant; move `{}` aside to clear it",
            display_path(path)
        )),
        _ => None,
    };
    let err = CliError::new(e.code(), e.to_string());
    match help {
        Some(h) => err.with_help(h),
        None => err,
    }
}

/// The approval as JSON, with its status at `now`.
fn to_json(approval: &ApprovalRequest, now: Timestamp) -> Value {
    let mut value = serde_json::to_value(approval).unwrap_or_else(|_| json!({"id": approval.id}));
    if let Value::Object(map) = &mut value {
        map.insert("status".into(), json!(approval.status(now).as_str()));
    }
    value
}

/// `sha256:` and the first 12 hex digits.
fn short_hash(hash: &str) -> String {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    let head: String = hex.chars().take(12).collect();
    if hex.chars().count() > 12 {
        format!("sha256:{head}…")
    } else {
        format!("sha256:{head}")
    }
}

pub fn list(ctx: &Context, status: Option<ApprovalStatus>) -> Result<(), CliError> {
    let store = store(ctx)?;
    let now = Timestamp::now();
    let filter = ApprovalFilter {
        status,
        tool: None,
        now,
    };
    let found = store.list(&filter).map_err(error)?;
    for u in &found.unreadable {
        warn(ctx.json, &format!("skipped {}", u.reason));
    }
    let what = status.map_or("all", ApprovalStatus::as_str);
    let value = json!({
        "status": what,
        "approvals": found.approvals.iter().map(|a| to_json(a, now)).collect::<Vec<_>>(),
        "unreadable": found.unreadable,
    });
    let human = if found.approvals.is_empty() {
        match status {
            Some(s) => format!("no {s} approvals in {}", display_path(store.dir())),
            None => format!("no approvals in {}", display_path(store.dir())),
        }
    } else {
        table(&found.approvals, now)
    };
    print_ok(ctx.json, &value, &human);
    Ok(())
}

fn table(approvals: &[ApprovalRequest], now: Timestamp) -> String {
    let header = [
        "ID",
        "STATUS",
        "TOOL",
        "INPUT",
        "TASK",
        "REQUESTED BY",
        "REQUESTED",
        "EXPIRES",
    ]
    .map(String::from);
    let rows: Vec<[String; 8]> = approvals
        .iter()
        .map(|a| {
            [
                a.id.clone(),
                a.status(now).to_string(),
                a.tool.clone(),
                short_hash(&a.input_hash),
                a.task.clone().unwrap_or_else(|| "-".into()),
                a.requested_by.clone(),
                a.requested_at.to_string(),
                a.expires_at.to_string(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn show(ctx: &Context, id: &str) -> Result<(), CliError> {
    let store = store(ctx)?;
    let now = Timestamp::now();
    let approval = store.get(id).map_err(error)?;
    // What the operator is asked to approve: the exact input, from the evidence the call stored
    // (its digest is the approval's input hash, so it cannot be another input).
    let input = stored_input(&ctx.workspace_dir()?, &approval.input_hash);
    let mut human = describe(&approval, now);
    match &input {
        Some(value) => {
            let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
            human.push_str("\ninput:\n");
            for line in pretty.lines().take(INPUT_LINES) {
                human.push_str(&format!("  {line}\n"));
            }
            if pretty.lines().count() > INPUT_LINES {
                human.push_str("  … (the whole input: --json)\n");
            }
        }
        None => human.push_str("\ninput:         not in the evidence store\n"),
    }
    let mut value = to_json(&approval, now);
    if let Some(input) = input {
        value["input"] = input;
    }
    print_ok(ctx.json, &json!({ "approval": value }), &human);
    Ok(())
}

/// Lines of the input `approvals show` prints (the rest is in `--json`).
const INPUT_LINES: usize = 60;

/// The input whose digest is `input_hash`, as the dispatch path stored it as evidence.
fn stored_input(workspace_dir: &std::path::Path, input_hash: &str) -> Option<Value> {
    let hex = input_hash.strip_prefix("sha256:")?;
    let root = lumenflow_kernel::dispatch::evidence::default_root(workspace_dir);
    if !root.is_dir() {
        return None;
    }
    lumenflow_kernel::dispatch::evidence::EvidenceStore::open(&root)
        .ok()?
        .get(&format!("inputs/{hex}"))
        .ok()
}

fn describe(a: &ApprovalRequest, now: Timestamp) -> String {
    let mut lines = vec![
        format!("id:            {}", a.id),
        format!("status:        {}", a.status(now)),
        format!("tool:          {}", a.tool),
        format!("input hash:    {}", a.input_hash),
        format!("task:          {}", a.task.as_deref().unwrap_or("-")),
        format!("run:           {}", a.run.as_deref().unwrap_or("-")),
        format!("requested by:  {}", a.requested_by),
        format!("requested at:  {}", a.requested_at),
        format!("expires at:    {}", a.expires_at),
        format!("reason:        {}", a.reason),
    ];
    if !a.required_approval_ids.is_empty() {
        lines.push(format!(
            "required by:   {}",
            a.required_approval_ids.join(", ")
        ));
    }
    if let Some(d) = &a.decision {
        lines.push(format!(
            "decision:      {} by {} at {}: {}",
            d.outcome(),
            d.approver(),
            d.decided_at(),
            d.reason()
        ));
    }
    if a.consumed {
        lines.push(format!(
            "consumed at:   {}",
            a.consumed_at
                .map_or_else(|| "unknown".to_string(), |t| t.to_string())
        ));
    }
    lines.join("\n")
}

/// The decision as a record of the kernel log, so who decided, as whom and why is in the hash
/// chain and not only in an editable file beside it. `approver` is the name given (`--by`);
/// `decided_as` is the operating-system login that ran the command.
fn record_decision(ctx: &Context, approval: &ApprovalRequest) -> Result<(), CliError> {
    use lumenflow_kernel::eventlog::{self, EventLog, LogOptions};
    let Some(decision) = &approval.decision else {
        return Ok(());
    };
    let dir = ctx.workspace_dir()?;
    let path = eventlog::default_path(&dir);
    let Value::Object(record) = json!({
        "kind": "approval_decided",
        "approval_id": approval.id,
        "tool_name": approval.tool,
        "input_hash": approval.input_hash,
        "decision": decision.outcome(),
        "approver": decision.approver(),
        "decided_as": super::os_subject(),
        "reason": decision.reason(),
    }) else {
        return Ok(());
    };
    let appended = EventLog::open(&path, LogOptions::default()).and_then(|log| log.append(record));
    appended.map(|_| ()).map_err(|e| {
        CliError::new(
            e.code(),
            format!(
                "approval {} was {} (recorded in the approvals folder), but its record could not \
                 be added to the kernel log: {e}",
                approval.id,
                decision.outcome()
            ),
        )
    })
}

fn approver(by: Option<String>) -> String {
    by.filter(|b| !b.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_APPROVER.to_string())
}

pub fn decide(
    ctx: &Context,
    id: &str,
    grant: bool,
    reason: String,
    by: Option<String>,
) -> Result<(), CliError> {
    let store = store(ctx)?;
    let now = Timestamp::now();
    let approver = approver(by);
    let decision = if grant {
        Decision::Granted {
            approver,
            reason,
            decided_at: now,
        }
    } else {
        Decision::Denied {
            approver,
            reason,
            decided_at: now,
        }
    };
    let approval = store.decide(id, decision).map_err(error)?;
    record_decision(ctx, &approval)?;
    let human = if grant {
        format!(
            "granted {} by {}\nthe next call of `{}` with input {} runs once (until {})",
            approval.id,
            approval.decision.as_ref().map_or("", Decision::approver),
            approval.tool,
            short_hash(&approval.input_hash),
            approval.expires_at
        )
    } else {
        format!(
            "denied {} by {}\n`{}` with input {} will not run on this request",
            approval.id,
            approval.decision.as_ref().map_or("", Decision::approver),
            approval.tool,
            short_hash(&approval.input_hash)
        )
    };
    print_ok(
        ctx.json,
        &json!({"approval": to_json(&approval, now)}),
        &human,
    );
    Ok(())
}
