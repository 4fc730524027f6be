//! `lumenflow task ...`: create, claim, block, unblock, wait, resume, release, fail, checkpoint,
//! complete, show and list tasks (KRN-14). The logic is `lumenflow_kernel::tasks`; this renders.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::eventlog::{self, EventLog, LogOptions};
use lumenflow_kernel::loader::PackLoader;
use lumenflow_kernel::tasks::{
    ClaimRequest, Run, TaskError, TaskInspection, TaskState, TaskStore, TaskUpdate,
};
use lumenflow_kernel::workspace::WorkspaceDocument;
use serde_json::{json, Value};

use super::{display_path, Context};
use crate::output::{print_ok, warn, CliError};

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Create a task from a YAML spec file (stored immutably under .lumenflow/kernel/tasks/).
    Create {
        /// The task spec (YAML).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
    },
    /// Claim a ready task: evaluates on_claim policies and starts a run.
    Claim {
        id: String,
        /// Who claims (default: $USER, else `cli`).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// The claiming session (default: `cli-<pid>`).
        #[arg(long, value_name = "S")]
        session: Option<String>,
    },
    /// Block an active task (its run is paused).
    Block {
        id: String,
        #[arg(long, value_name = "R")]
        reason: String,
    },
    /// Unblock a blocked task.
    Unblock { id: String },
    /// Park an active task waiting for something (an approval, ...).
    Wait {
        id: String,
        #[arg(long, value_name = "R")]
        reason: String,
        /// What it waits for (an approval id, ...).
        #[arg(long, value_name = "ID")]
        wait_for: Option<String>,
    },
    /// Resume a waiting task.
    Resume { id: String },
    /// Give an active task back (its run ends; the task is ready again).
    Release {
        id: String,
        #[arg(long, value_name = "R")]
        reason: String,
    },
    /// Record that the current run failed (the task is ready again for a new run).
    Fail {
        id: String,
        #[arg(long, value_name = "R")]
        reason: String,
        /// Evidence reference (repeatable).
        #[arg(long = "evidence", value_name = "REF")]
        evidence: Vec<String>,
    },
    /// Record a checkpoint of the current run.
    Checkpoint {
        id: String,
        #[arg(long)]
        note: String,
        /// Progress, as JSON (a number, a string, an object, ...).
        #[arg(long, value_name = "JSON")]
        progress: Option<String>,
    },
    /// Complete a task: evaluates on_completion policies; the run succeeds.
    Complete {
        id: String,
        /// Evidence reference (repeatable).
        #[arg(long = "evidence", value_name = "REF")]
        evidence: Vec<String>,
    },
    /// Show a task: state, current run, run history and events.
    Show { id: String },
    /// List the workspace's tasks.
    List,
}

pub fn run(ctx: &Context, command: TaskCommand) -> Result<(), CliError> {
    match command {
        TaskCommand::Create { spec } => create(ctx, &spec),
        TaskCommand::Claim { id, by, session } => {
            let store = store(ctx, true)?;
            let request = ClaimRequest::new(
                by.unwrap_or_else(default_by),
                session.unwrap_or_else(|| format!("cli-{}", std::process::id())),
            );
            updated(ctx, store.claim(&id, request))
        }
        TaskCommand::Block { id, reason } => updated(ctx, store(ctx, false)?.block(&id, &reason)),
        TaskCommand::Unblock { id } => updated(ctx, store(ctx, false)?.unblock(&id)),
        TaskCommand::Wait {
            id,
            reason,
            wait_for,
        } => updated(
            ctx,
            store(ctx, false)?.wait(&id, &reason, wait_for.as_deref()),
        ),
        TaskCommand::Resume { id } => updated(ctx, store(ctx, false)?.resume(&id)),
        TaskCommand::Release { id, reason } => {
            updated(ctx, store(ctx, false)?.release(&id, &reason))
        }
        TaskCommand::Fail {
            id,
            reason,
            evidence,
        } => updated(ctx, store(ctx, false)?.fail_run(&id, &reason, &evidence)),
        TaskCommand::Checkpoint { id, note, progress } => {
            let progress = progress
                .map(|p| {
                    serde_json::from_str::<Value>(&p).map_err(|e| {
                        CliError::new(
                            "INVALID_ARGUMENT",
                            format!("--progress is not JSON: {e}"),
                        )
                        .with_help("quote strings as JSON, e.g. --progress '\"half way\"' or --progress 0.5")
                    })
                })
                .transpose()?;
            updated(ctx, store(ctx, false)?.checkpoint(&id, &note, progress))
        }
        TaskCommand::Complete { id, evidence } => {
            updated(ctx, store(ctx, true)?.complete(&id, &evidence))
        }
        TaskCommand::Show { id } => show(ctx, &id),
        TaskCommand::List => list(ctx),
    }
}

fn default_by() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "cli".to_string())
}

/// A task error as a CLI error: its code, message and help; spec diagnostics kept as such.
pub fn task_error(e: TaskError) -> CliError {
    let help = e.help();
    let err = match e {
        TaskError::SpecInvalid(d) => {
            let message = match d.0.as_slice() {
                [one] => one.one_line(),
                all => format!("{} problems in the task spec", all.len()),
            };
            CliError::from_diagnostics("TASK_SPEC_INVALID", message, d)
        }
        TaskError::Workspace(d) => CliError::from(d),
        other => CliError::new(other.code(), other.to_string()),
    };
    match help {
        Some(h) => err.with_help(h),
        None => err,
    }
}

/// The task store of the workspace. `policies` loads the pinned packs (their policies take part
/// in claims and completions, so a pack that does not load refuses the operation); otherwise the
/// packs are loaded only for their state aliases, and a load failure is a warning.
fn store(ctx: &Context, policies: bool) -> Result<TaskStore, CliError> {
    let doc = ctx.workspace()?;
    lumenflow_kernel::workspace::ensure_state_dir(&doc.dir).map_err(|e| {
        CliError::new(
            "IO_ERROR",
            format!(
                "cannot create `{}` with its .gitignore: {e}",
                doc.dir
                    .join(lumenflow_kernel::workspace::STATE_DIR)
                    .display()
            ),
        )
    })?;
    let log = EventLog::open(&eventlog::default_path(&doc.dir), LogOptions::default())
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    let store = TaskStore::from_workspace(&doc, log);
    match packs(&doc) {
        Ok(packs) => Ok(store.with_packs(packs)),
        Err(e) if policies => Err(e.with_help(
            "the pinned packs' policies take part in claims and completions; fix the pack and retry",
        )),
        Err(e) => {
            warn(
                ctx.json,
                &format!("packs not loaded, states shown without aliases: {}", e.message),
            );
            Ok(store)
        }
    }
}

fn packs(
    doc: &WorkspaceDocument,
) -> Result<Vec<lumenflow_kernel::manifest::PackManifest>, CliError> {
    if doc.spec.packs.is_empty() {
        return Ok(Vec::new());
    }
    let loader = PackLoader::for_workspace(doc, lumenflow_packs::builtin_packs());
    let loaded = loader
        .load_all(doc)
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    Ok(loaded.into_iter().map(|p| p.manifest.manifest).collect())
}

fn create(ctx: &Context, spec: &Path) -> Result<(), CliError> {
    let src = SourceFile::read(spec).map_err(CliError::from)?;
    let store = store(ctx, false)?;
    let created = store.create_from_source(&src).map_err(task_error)?;
    let human = format!(
        "Created task {} ({}) at {}\nspec_hash {}\n",
        created.task_id,
        created.state.display_status,
        display_path(&created.spec_path),
        created.spec_hash
    );
    print_ok(
        ctx.json,
        &serde_json::to_value(&created).unwrap_or(Value::Null),
        &human,
    );
    Ok(())
}

fn updated(ctx: &Context, result: Result<TaskUpdate, TaskError>) -> Result<(), CliError> {
    let update = result.map_err(task_error)?;
    let s = &update.state;
    let mut human = format!(
        "{} {}: {}",
        past(update.action),
        update.task_id,
        s.display_status
    );
    if let Some(run) = &s.current_run {
        human.push_str(&format!(" (run {} {})", run.run_id, run.status));
    }
    human.push('\n');
    if let Some(policy) = &update.policy {
        for w in &policy.warnings {
            warn(ctx.json, w);
        }
    }
    print_ok(
        ctx.json,
        &serde_json::to_value(&update).unwrap_or(Value::Null),
        &human,
    );
    Ok(())
}

fn past(action: &str) -> &'static str {
    match action {
        "claim" => "Claimed",
        "block" => "Blocked",
        "unblock" => "Unblocked",
        "wait" => "Waiting:",
        "resume" => "Resumed",
        "release" => "Released",
        "fail_run" => "Run failed for",
        "complete" => "Completed",
        "checkpoint" => "Checkpoint of",
        _ => "Updated",
    }
}

fn run_line(run: &Run) -> String {
    let mut line = format!(
        "{}  {}  by {}  started {}",
        run.run_id, run.status, run.by, run.started_at
    );
    if let Some(end) = &run.completed_at {
        line.push_str(&format!("  ended {end}"));
    }
    if let Some(reason) = &run.reason {
        line.push_str(&format!("  ({reason})"));
    }
    line
}

fn show(ctx: &Context, id: &str) -> Result<(), CliError> {
    let store = store(ctx, false)?;
    let view: TaskInspection = store.inspect(id).map_err(task_error)?;
    let s: &TaskState = &view.state;
    let mut human = format!(
        "{}  {}\n  status:    {}\n  lane:      {}\n  domain:    {}\n  spec:      {}\n  spec_hash: {}\n",
        view.task_id,
        view.spec.title,
        s.display_status,
        s.lane_id,
        s.domain,
        display_path(&view.spec_path),
        s.spec_hash
    );
    if let Some(by) = &s.claimed_by {
        human.push_str(&format!(
            "  claimed:   by {by} at {}\n",
            s.claimed_at.as_deref().unwrap_or("?")
        ));
    }
    if let Some(reason) = &s.blocked_reason {
        human.push_str(&format!("  reason:    {reason}\n"));
    }
    if let Some(w) = &s.wait_for {
        human.push_str(&format!("  wait_for:  {w}\n"));
    }
    if let Some(at) = &s.completed_at {
        human.push_str(&format!("  completed: {at}\n"));
    }
    match &s.current_run {
        Some(run) => human.push_str(&format!("  run:       {}\n", run_line(run))),
        None => human.push_str("  run:       (none)\n"),
    }
    if view.run_history.len() > 1 {
        human.push_str("runs:\n");
        for run in &view.run_history {
            human.push_str(&format!("  {}\n", run_line(run)));
        }
    }
    human.push_str(&format!("events ({}):\n", view.events.len()));
    for e in &view.events {
        let mut extra: Vec<String> = e
            .fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "task_id" | "schema_version" | "spec_hash"))
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        extra.sort();
        human.push_str(&format!(
            "  #{:<5} {}  {:<15} {}\n",
            e.seq,
            e.timestamp,
            e.kind,
            extra.join(" ")
        ));
    }
    let value = json!({
        "task_id": view.task_id,
        "spec_path": view.spec_path,
        "spec": view.spec,
        "state": view.state,
        "current_run": view.state.current_run,
        "run_history": view.run_history,
        "events": view.events,
    });
    print_ok(ctx.json, &value, &human);
    Ok(())
}

fn list(ctx: &Context) -> Result<(), CliError> {
    let store = store(ctx, false)?;
    let tasks = store.list().map_err(task_error)?;
    let mut human = String::new();
    if tasks.is_empty() {
        human.push_str("no tasks (create one with `lumenflow task create --spec FILE`)\n");
    }
    for t in &tasks {
        match &t.problem {
            None => human.push_str(&format!(
                "{:<20} {:<12} {:<12} {}\n",
                t.task_id,
                t.display_status.as_deref().unwrap_or("?"),
                t.lane_id.as_deref().unwrap_or("?"),
                t.title.as_deref().unwrap_or("")
            )),
            Some(p) => human.push_str(&format!(
                "{:<20} {:<12} {}: {}\n",
                t.task_id, "error", p.code, p.message
            )),
        }
    }
    print_ok(ctx.json, &json!({ "tasks": tasks }), &human);
    Ok(())
}
