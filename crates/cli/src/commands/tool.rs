//! `lumenflow tool call` and `lumenflow audit verify`: a local caller of the one dispatch path,
//! and the check of the hash-chained log it writes to.

use std::collections::HashMap;
use std::sync::Arc;

use clap::Subcommand;
use lumenflow_kernel::dispatch::{self, CallRequest, RuntimeOptions, Surface};
use lumenflow_kernel::eventlog;
use lumenflow_kernel::events::ledger::Ledger;
use serde_json::{json, Value};

use super::delivery::CommandEvents;
use super::Context;
use crate::output::{escape_controls, print_ok, CliError};

#[derive(Subcommand, Debug)]
pub enum ToolCommand {
    /// Call a tool through scopes, rules, approvals, the sandbox and the evidence log.
    Call {
        /// The tool name, e.g. `read-customer-notes`.
        name: String,
        /// The tool input as a JSON object.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Run the call as part of this task (its lane and declared scopes apply).
        #[arg(long)]
        task: Option<String>,
    },
    /// List the tools of the workspace's pinned packs.
    List,
}

/// `lumenflow audit [verify]`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Re-check the hash chain of the kernel event log (first bad line) and that every receipt's
    /// evidence is present and matches its hash. Exit 0 ok, 1 tampered or missing, 3 a last line
    /// torn by a crash.
    Verify,
}

fn caller() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "local".into())
}

pub fn run_tool(ctx: &Context, cmd: ToolCommand) -> Result<(), CliError> {
    let dir = ctx.workspace_dir()?;
    let builtin_tools: HashMap<String, dispatch::BuiltinFn> = lumenflow_packs::builtin_tools();
    let mut runtime = dispatch::open::open(
        &dir,
        lumenflow_packs::builtin_packs(),
        &builtin_tools,
        RuntimeOptions {
            // This binary's `__sandbox-init` relays allowlisted network traffic.
            sandbox_helper: std::env::current_exe().ok(),
            ..RuntimeOptions::default()
        },
    )
    .map_err(|e| match e {
        dispatch::open::OpenError::Workspace(d) => CliError::from(d),
        other => log_help(CliError::new(other.code(), other.to_string())),
    })?;
    for w in &runtime.warnings {
        crate::output::warn(ctx.json, w);
    }
    match cmd {
        ToolCommand::List => {
            let tools: Vec<Value> = runtime
                .registry
                .tools()
                .map(|t| {
                    json!({"name": t.name, "pack": t.pack_id, "permission": t.manifest.permission,
                           "execution": t.implementation.mode(), "description": t.manifest.description,
                           "required_approvals": t.manifest.required_approvals})
                })
                .collect();
            let mut human = String::new();
            for t in runtime.registry.tools() {
                human.push_str(&format!(
                    "{:<32} {:<20} {:?}\n",
                    t.name, t.pack_id, t.manifest.permission
                ));
            }
            if human.is_empty() {
                human = "(no tools: pin a pack with `lumenflow pack install`)\n".into();
            }
            print_ok(ctx.json, &json!({"tools": tools}), &human);
            Ok(())
        }
        ToolCommand::Call { name, input, task } => {
            // The identity first, so a bad enrollment is reported as itself, not as the event
            // delivery it also stops. Only "not enrolled" falls back to the workspace id: a
            // damaged or world-readable enrollment is an error to show, not a reason to record
            // another identity.
            let identity = match lumenflow_conductor::enrollment::load(&dir) {
                Ok(e) => e.subject,
                Err(lumenflow_conductor::enrollment::EnrollmentError::NotEnrolled { .. }) => {
                    runtime.spec.id.clone()
                }
                Err(e) => return Err(CliError::new(e.code(), e.to_string())),
            };
            // The events the call emits (its pack's and `agent-runtime:tool_called`) are stamped
            // in the ledger and routed as the sidecar routes them (Q34).
            let events = CommandEvents::open(&dir, &runtime.pack_manifests, ctx.json)?;
            let ledger = Ledger::open(&lumenflow_kernel::events::ledger_path(&dir))
                .map_err(|e| CliError::new("LEDGER_UNAVAILABLE", e.to_string()))?;
            runtime.events = Some(Arc::new(dispatch::RuntimeEvents::new(
                identity,
                events.sink(),
                Some(Arc::new(ledger)),
            )));
            let input: Value = serde_json::from_str(&input).map_err(|e| {
                CliError::new(
                    "INVALID_ARGUMENT",
                    format!("--input is not valid JSON: {e}"),
                )
            })?;
            let outcome = runtime.dispatch(CallRequest {
                tool: name,
                input,
                task_id: task,
                run_id: None,
                caller: caller(),
                surface: Surface::Cli,
                token_scopes: None,
                token_id: None,
            });
            drop(events);
            let value = serde_json::to_value(&outcome).unwrap_or(Value::Null);
            if outcome.output.success {
                let human = serde_json::to_string_pretty(&outcome.output.data).unwrap_or_default();
                print_ok(
                    ctx.json,
                    &value,
                    &format!("{human}\n(receipt {})", outcome.receipt_id),
                );
                Ok(())
            } else {
                let error = outcome.output.error.clone();
                let (code, message) = error.map(|e| (e.code, e.message)).unwrap_or_else(|| {
                    (
                        "TOOL_EXECUTION_FAILED".into(),
                        "the tool reported failure".into(),
                    )
                });
                if ctx.json {
                    print_ok(true, &value, "");
                    return Err(CliError::new(code, message).already_reported(true));
                }
                // Details a tool gives beside its message (a `recovery_action`, ...) are part
                // of what a person needs; text mode used to show them only with --json.
                let details: String = outcome
                    .output
                    .error
                    .as_ref()
                    .and_then(|e| e.details.as_ref())
                    .and_then(Value::as_object)
                    .map(|d| {
                        d.iter()
                            // One line per detail: a value's own line breaks are escaped too,
                            // so a model's text cannot print a fake `status:` line.
                            .map(|(k, v)| match v.as_str() {
                                Some(s) => format!("\n  {k}: {}", escape_controls(s, false)),
                                None => format!("\n  {k}: {v}"),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut err = CliError::new(
                    code,
                    format!(
                        "{} (receipt {}){details}",
                        escape_controls(&message, false),
                        outcome.receipt_id
                    ),
                );
                if let Some(id) = &outcome.approval_id {
                    if let Some(help) = approval_help(&dir, id) {
                        err = err.with_help(help);
                    }
                }
                Err(err)
            }
        }
    }
}

/// What to do about approval `id` of a failed call. While it waits, the kernel's message says
/// how to grant it; once used, the call ran on it and the failure is the tool's own, so granting
/// is no longer the way on (the help used to name the spent approval, and repeated the message's
/// grant advice for a waiting one).
fn approval_help(workspace_dir: &std::path::Path, id: &str) -> Option<String> {
    use lumenflow_kernel::approvals::{ApprovalProvider, ApprovalStatus, LocalApprovals};
    let now = lumenflow_contracts::time::Timestamp::now();
    match LocalApprovals::open(workspace_dir).get(id) {
        Ok(a) => match a.status(now) {
            // The kernel's message already says how to grant it.
            ApprovalStatus::Pending => None,
            ApprovalStatus::Consumed => Some(format!(
                "the call ran on approval {id}, which is now used: the failure above is the tool's own; a new call with the same input asks for a new approval"
            )),
            ApprovalStatus::Granted | ApprovalStatus::Denied | ApprovalStatus::Expired => None,
        },
        // Not in the workspace's store (decided elsewhere, or unreadable): nothing to suggest.
        Err(_) => None,
    }
}

pub fn run_audit(ctx: &Context, cmd: AuditCommand) -> Result<(), CliError> {
    match cmd {
        AuditCommand::Verify => {
            let dir = ctx.workspace_dir()?;
            let path = eventlog::default_path(&dir);
            if !path.exists() {
                // Not "ok": a log that was deleted looks the same as one never written.
                return Err(CliError::new(
                    "LOG_MISSING",
                    format!(
                        "there is no kernel event log at `{}`: either no tool call has run in \
                         this workspace yet, or the log was removed",
                        path.display()
                    ),
                )
                .with_help(
                    "if calls have run here, restore the log from a backup \
                     (docs/workspace-layout.md); there is nothing to verify",
                ));
            }
            match eventlog::verify(&path) {
                Ok(summary) => {
                    // A chain that holds can still be shorter than it was: the position the
                    // runtime remembered says how long it was at least.
                    if let Err(e) = dispatch::check_position(&path) {
                        return Err(log_help(CliError::new(e.code(), e.to_string())));
                    }
                    let evidence = verify_evidence(&dir, &path)?;
                    print_ok(
                        ctx.json,
                        &json!({"ok": true, "path": path, "records": summary.records, "last_seq": summary.last_seq, "head": summary.last_hash,
                                "evidence": {"references": evidence.references, "blobs": evidence.blobs}}),
                        &format!(
                            "chain ok: {} records, last seq {}, head {}\nevidence ok: {} \
                             references to {} blobs, each present and matching its hash",
                            summary.records,
                            summary.last_seq,
                            summary.last_hash,
                            evidence.references,
                            evidence.blobs
                        ),
                    );
                    Ok(())
                }
                // A crash in the middle of an append leaves a last line without its newline;
                // the next process that opens the log for writing cuts it (KRN-13). That is not
                // tampering, and an alarm after every power cut would teach operators to ignore
                // the real one (walk-F F-11). It is not "ok" either: the log is not in the state
                // the next writer leaves it in, and a record cut short by hand looks the same,
                // so it has its own code and exit status (3) that a monitor can tell apart.
                // A fragment below the remembered position is not a crash's: records that
                // were acknowledged are gone, which is the graver finding (walk-F recheck N2).
                Err(eventlog::VerifyError::BadLine {
                    problem: eventlog::LineProblem::Incomplete,
                    ..
                }) if dispatch::check_position(&path).is_err() => {
                    let shortened = dispatch::check_position(&path).err();
                    Err(log_help(match shortened {
                        Some(e) => CliError::new(e.code(), e.to_string()),
                        None => CliError::new("LOG_SHORTENED", "the log was shortened"),
                    }))
                }
                Err(eventlog::VerifyError::BadLine {
                    line,
                    problem: eventlog::LineProblem::Incomplete,
                    ..
                }) => Err(CliError::new(
                    LOG_TORN_TAIL,
                    format!(
                        "{}: line {line} is an interrupted write (no newline at the end); the {} \
                         records before it verify",
                        path.display(),
                        line - 1
                    ),
                )
                .with_help(
                    "this happens when a process is killed or the machine stops during a write: \
                     the next `lumenflow` command that writes to the log (a tool call, `lumenflow \
                     sidecar`) cuts the fragment and closes its call as `crashed`; run `audit \
                     verify` again after that. If no crash happened, keep the file for \
                     investigation: a record cut short by hand looks the same",
                )),
                Err(e) => {
                    let err = CliError::new(e.code(), format!("{}: {}", path.display(), e.short()));
                    // Only a bad line is evidence of tampering; an unreadable file is not.
                    Err(if e.line().is_some() {
                        err.with_help(
                            "the log was changed after it was written; keep the file for \
                             investigation (the runtime refuses to append to it: move it aside \
                             only once it is preserved, and note its head for the record)",
                        )
                    } else {
                        err
                    })
                }
            }
        }
    }
}

/// The code of a kernel log whose last line is an interrupted write; it exits with status 3.
pub const LOG_TORN_TAIL: &str = "LOG_TORN_TAIL";

/// Every receipt's `input_ref`/`output_ref` is in the evidence store and hashes to its digest
/// (walk-F F-10): a chain that holds proves nothing about a call whose evidence is gone.
fn verify_evidence(
    dir: &std::path::Path,
    log: &std::path::Path,
) -> Result<dispatch::evidence::EvidenceSummary, CliError> {
    let root = dispatch::evidence::default_root(dir);
    match dispatch::evidence::verify_references(log, &root) {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(problem)) => Err(CliError::new(
            problem.code(),
            format!(
                "the chain holds, but evidence does not: {}: {problem}",
                root.display()
            ),
        )
        .with_help(
            "restore `.lumenflow/kernel/evidence/` from the same backup as the log \
             (docs/workspace-layout.md); a receipt's hash is provable only with its evidence",
        )),
        Err(e) => Err(CliError::new(
            "LOG_IO",
            format!("cannot read `{}` to check its evidence: {e}", log.display()),
        )),
    }
}

/// What to do about a kernel log the runtime will not open.
fn log_help(err: CliError) -> CliError {
    match err.code.as_str() {
        "LOG_SHORTENED" => err.with_help(
            "keep `.lumenflow/kernel/events.jsonl` and `reconciled.json` for investigation; if \
             you restored an older log on purpose, remove `.lumenflow/kernel/reconciled.json` to \
             accept it",
        ),
        "LOG_CORRUPT" => err.with_help(
            "the log was changed after it was written: `lumenflow audit verify` names the line; \
             keep the file for investigation",
        ),
        _ => err,
    }
}

/// `lumenflow events log`: replay the kernel event log by task, kind, time range and cursor.
pub fn run_log(
    ctx: &Context,
    task: Option<String>,
    kinds: Vec<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
) -> Result<(), CliError> {
    use lumenflow_contracts::time::Timestamp;
    let dir = ctx.workspace_dir()?;
    let time = |flag: &str, v: Option<String>| -> Result<Option<Timestamp>, CliError> {
        v.map(|s| {
            Timestamp::parse(&s)
                .map_err(|e| CliError::new("INVALID_ARGUMENT", format!("--{flag}: {e}")))
        })
        .transpose()
    };
    let filter = eventlog::ReplayFilter {
        task_id: task,
        kinds,
        since: time("since", since)?,
        until: time("until", until)?,
        after_seq: after,
        limit,
    };
    let page = eventlog::replay(&eventlog::default_path(&dir), &filter)
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    let mut human = String::new();
    let mut records = Vec::new();
    for r in &page.records {
        let mut line = serde_json::Map::new();
        line.insert("seq".into(), r.seq.into());
        line.insert("timestamp".into(), r.timestamp.clone().into());
        line.insert("kind".into(), r.kind.clone().into());
        line.extend(r.fields.clone());
        human.push_str(&format!(
            "{:>6}  {}  {:<20}  {}\n",
            r.seq,
            r.timestamp,
            r.kind,
            serde_json::to_string(&r.fields).unwrap_or_default()
        ));
        records.push(Value::Object(line));
    }
    if let Some(next) = page.next_cursor {
        human.push_str(&format!("(more: --after {next})\n"));
    }
    print_ok(
        ctx.json,
        &json!({"records": records, "next_cursor": page.next_cursor}),
        &human,
    );
    Ok(())
}
