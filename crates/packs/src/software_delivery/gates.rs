//! `software-delivery:gates {wu_id, gates?}`: run the work unit's gates in its worktree.
//!
//! The gates are the commands of `software_delivery.gates` in `workspace.yaml`, one per name
//! (`format`, `lint`, `typecheck`, `test`, `coverage`), each `{command, timeout_seconds}`
//! (default 600 s). A command runs as `/bin/sh -c <command>` in the worktree, in its own process
//! group, with `PATH` and the few toolchain variables of [`GATE_ENV_PASSTHROUGH`] plus
//! `LUMENFLOW_WU_ID` and `LUMENFLOW_GATE`; at its timeout the whole group is killed, and so is
//! every process carrying the run's `LUMENFLOW_GATE_RUN` (a child that left the group).
//! The commands are the workspace owner's, but the code they run (tests) is the agent's, so
//! they run under bubblewrap unless the workspace set `sandbox: none` (see [`GateSandbox`]; the
//! mode is recorded in every result as `sandbox`).
//!
//! For each gate the outcome is `passed`, `failed`, `timed_out` or `not_configured`; the
//! command, exit code and captured stdout/stderr (at most [`OUTPUT_CAP`] bytes each) are stored
//! in the content-addressed evidence store (`evidence_ref`), and `software-delivery:gate_passed`
//! or `software-delivery:gate_failed` is emitted (ephemeral).
//!
//! The results are also recorded as the task's *facts*
//! (`.lumenflow/state/software-delivery/facts/<task>.json`, see
//! `lumenflow_kernel::tasks::facts_path`), keyed by the call's task, or by the work unit id when
//! the call has no task. The manifest's `software-delivery.gate.<name>` completion rules read
//! them, so a task whose gate failed or timed out cannot complete until the gate passes again.
//! The latest result per gate is kept in `.lumenflow/state/software-delivery/gates/<wu_id>.json`.
//!
//! When every gate that ran passed the call succeeds; otherwise it fails with `GATE_FAILED` (or
//! `GATE_TIMEOUT` when the only problems were timeouts) and still carries the full results as
//! its data, so the receipt references them.

use std::process::Command;
use std::time::Duration;

use lumenflow_contracts::event::BuildOptions;
use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::{ToolError, ToolOutput};
use lumenflow_kernel::dispatch::BuiltinCall;
use serde_json::{json, Map, Value};

pub use super::common::GATE_ENV_PASSTHROUGH;
use super::common::{self, errors, fail, require, Claim, ToolResult, STATE_REL};
use super::orphans;
use super::{GATE_FAILED, GATE_PASSED, ID};

/// The gates, in the order they run.
pub const GATE_NAMES: [&str; 5] = ["format", "lint", "typecheck", "test", "coverage"];

/// A gate's timeout when `timeout_seconds` is not configured.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 600;

/// The most of a gate's stdout, and of its stderr, kept as evidence.
pub const OUTPUT_CAP: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
struct GateConfig {
    command: String,
    timeout: Duration,
}

/// The configured gates, by name.
fn configured(config: &Value) -> ToolResult<Map<String, Value>> {
    match config.get("gates") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(fail(
            errors::CONFIG_INVALID,
            "`software_delivery.gates` must be a mapping of gate names to `{command, timeout_seconds}`",
        )),
    }
}

fn gate_config(gates: &Map<String, Value>, name: &str) -> ToolResult<Option<GateConfig>> {
    let Some(entry) = gates.get(name) else {
        return Ok(None);
    };
    let command = entry
        .get("command")
        .and_then(Value::as_str)
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            fail(
                errors::CONFIG_INVALID,
                format!("`software_delivery.gates.{name}.command` must be a non-empty string"),
            )
        })?;
    let seconds = match entry.get("timeout_seconds") {
        None => DEFAULT_TIMEOUT_SECONDS,
        Some(v) => v.as_u64().filter(|s| (1..=86_400).contains(s)).ok_or_else(|| {
            fail(
                errors::CONFIG_INVALID,
                format!("`software_delivery.gates.{name}.timeout_seconds` must be an integer from 1 to 86400"),
            )
        })?,
    };
    Ok(Some(GateConfig {
        command: command.to_string(),
        timeout: Duration::from_secs(seconds),
    }))
}

/// The requested gates in run order (all five when none are named).
fn requested(input: &Map<String, Value>) -> ToolResult<Vec<&'static str>> {
    let Some(list) = input.get("gates") else {
        return Ok(GATE_NAMES.to_vec());
    };
    let names: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(unknown) = names.iter().find(|n| !GATE_NAMES.contains(n)) {
        return Err(fail(
            lumenflow_contracts::tool_output::codes::INVALID_INPUT,
            format!(
                "unknown gate `{unknown}` (expected {})",
                GATE_NAMES.join(", ")
            ),
        ));
    }
    Ok(GATE_NAMES
        .iter()
        .copied()
        .filter(|g| names.contains(g))
        .collect())
}

fn tail_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A one-line summary for the event: the last non-empty line of stderr, else of stdout.
fn summary(status: &str, stdout: &[u8], stderr: &[u8]) -> String {
    let last = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().chars().take(200).collect::<String>())
    };
    match last(stderr).or_else(|| last(stdout)) {
        Some(line) => format!("{status}: {line}"),
        None => status.to_string(),
    }
}

/// How gate commands are isolated: the workspace's `sandbox` setting, as for subprocess tools.
///
/// A gate runs code the agent wrote (its patches change the tests), so under bubblewrap it
/// sees the host read-only (toolchains under `$HOME` stay usable), its own worktree
/// read-write, a fresh `/tmp`, and `<workspace>/.lumenflow` as an empty read-only folder: no
/// approvals to decide, no signing key or enrollment to read, no kernel log to write. The
/// workspace's repository (its `.git` included) is read-only. The network is the host's, as in
/// CI (dependency downloads). `--unshare-pid` and `--die-with-parent` put every process of the
/// gate in one pid namespace that dies with bubblewrap, so a daemonised child cannot outlive the
/// timeout. All capabilities are dropped: with them a root sandbox user could remount the
/// read-only binds writable.
enum GateSandbox {
    Bubblewrap(std::path::PathBuf),
    None,
}

impl GateSandbox {
    fn for_call(call: &BuiltinCall<'_>) -> ToolResult<GateSandbox> {
        match call.workspace().sandbox {
            lumenflow_kernel::workspace::SandboxMode::None => Ok(GateSandbox::None),
            lumenflow_kernel::workspace::SandboxMode::Bubblewrap => {
                match lumenflow_kernel::sandbox::detect_bwrap() {
                    Some(bwrap) => Ok(GateSandbox::Bubblewrap(bwrap)),
                    None => {
                        let e = lumenflow_kernel::sandbox::SandboxError::Unavailable {
                            detail: "`bwrap` was not found on PATH, and gate commands run the \
                                     work unit's code"
                                .into(),
                        };
                        Err(fail(e.code(), e.to_string()))
                    }
                }
            }
        }
    }

    fn is_bubblewrap(&self) -> bool {
        matches!(self, GateSandbox::Bubblewrap(_))
    }

    /// For the gate results and their evidence, as receipts record it for tools.
    fn label(&self) -> &'static str {
        match self {
            GateSandbox::Bubblewrap(_) => "bubblewrap",
            GateSandbox::None => "none",
        }
    }

    fn program(&self) -> String {
        match self {
            GateSandbox::Bubblewrap(bwrap) => bwrap.display().to_string(),
            GateSandbox::None => "/bin/sh".into(),
        }
    }

    /// `/bin/sh -c <command>` in `worktree`, inside bubblewrap unless the workspace opted out.
    /// `ws` and `worktree` are canonical (the binds are made at those paths).
    fn command(&self, ws: &std::path::Path, worktree: &std::path::Path, command: &str) -> Command {
        let GateSandbox::Bubblewrap(bwrap) = self else {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(command);
            return cmd;
        };
        let mut cmd = Command::new(bwrap);
        cmd.args([
            "--die-with-parent",
            "--unshare-all",
            "--share-net",
            "--cap-drop",
            "ALL",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
        ]);
        // Shown again after the fresh /tmp: a workspace under /tmp would be hidden otherwise.
        cmd.arg("--ro-bind").arg(ws).arg(ws);
        let state = ws.join(".lumenflow");
        if state.is_dir() {
            cmd.arg("--tmpfs")
                .arg(&state)
                .arg("--remount-ro")
                .arg(&state);
        }
        cmd.arg("--bind").arg(worktree).arg(worktree);
        // The worktree's `.git` file stays read-only: pointed at a gitdir of the gate's making,
        // its config (a clean filter) would run in the next unsandboxed git call of a tool.
        let dot_git = worktree.join(".git");
        if dot_git.is_file() {
            cmd.arg("--ro-bind").arg(&dot_git).arg(&dot_git);
        }
        cmd.arg("--chdir")
            .arg(worktree)
            .args(["--", "/bin/sh", "-c", command]);
        cmd
    }
}

/// `software-delivery:gates`.
pub fn gates(call: &BuiltinCall<'_>) -> ToolOutput {
    inner(call).unwrap_or_else(|e| *e)
}

fn inner(call: &BuiltinCall<'_>) -> ToolResult<ToolOutput> {
    let input = common::input(call)?;
    let wu_id = common::wu_id(input)?;
    let names = requested(input)?;
    let ws = common::repo_root(call)?;
    let (claim, worktree) = Claim::require(&ws, &wu_id)?;
    // The facts of task T decide whether T can complete: gates run on another work unit's
    // worktree must not speak for it.
    if let Some(task) = call.task_id().filter(|t| *t != wu_id) {
        return Err(fail(
            errors::TASK_WU_MISMATCH,
            format!(
                "the call runs in task `{task}` but `wu_id` is `{wu_id}`: gate results become the task's completion facts, so they must come from its own work unit; run the gates with `wu_id` `{task}`, or without a task"
            ),
        ));
    }
    let facts_key = call.task_id().unwrap_or(&wu_id).to_string();
    let facts_rel = format!("{STATE_REL}/facts/{facts_key}.json");
    let results_rel = format!("{STATE_REL}/gates/{wu_id}.json");
    require(call, &claim.worktree, PathAccess::Write)?;
    require(call, &facts_rel, PathAccess::Write)?;
    require(call, &results_rel, PathAccess::Write)?;
    let config = configured(&common::pack_config(&ws)?)?;
    let sandbox = GateSandbox::for_call(call)?;
    let reaped = orphans::reap(&ws);
    // Every requested gate's configuration is checked before any of them runs.
    let mut plan = Vec::new();
    for name in &names {
        plan.push((*name, gate_config(&config, name)?));
    }

    let mut results = Vec::new();
    let mut facts_gates = Map::new();
    let mut emit_errors = Vec::new();
    let (mut failed, mut timed_out) = (0usize, 0usize);
    for (name, gate) in plan {
        let ran_at = Timestamp::now().to_rfc3339();
        let Some(gate) = gate else {
            results.push(json!({"name": name, "status": "not_configured", "duration_ms": 0}));
            facts_gates.insert(
                name.into(),
                json!({"status": "not_configured", "ran_at": ran_at, "wu_id": wu_id}),
            );
            continue;
        };
        let run_id = format!("{}-{name}", call.receipt_id());
        let mut cmd = sandbox.command(&ws, &worktree, &gate.command);
        common::gate_env(&mut cmd);
        if sandbox.is_bubblewrap() {
            // The host's TMPDIR is not visible: the sandbox's /tmp is its own.
            cmd.env("TMPDIR", "/tmp");
        }
        cmd.current_dir(&worktree)
            .env("LUMENFLOW_WU_ID", &wu_id)
            .env("LUMENFLOW_GATE", name)
            .env(orphans::RUN_ENV, &run_id);
        // Recorded while it runs, so a later runtime can kill it if this one dies first.
        let _tracked = orphans::track(&ws, &run_id, &wu_id, name);
        let kill_run = || {
            orphans::kill_run(&run_id);
        };
        let captured =
            common::run_with(cmd, None, gate.timeout, OUTPUT_CAP, &kill_run).map_err(|e| {
                fail(
                    errors::GATE_FAILED,
                    format!(
                        "cannot start the `{name}` gate (`{}`): {e}",
                        sandbox.program()
                    ),
                )
            })?;
        // A process the gate left behind (a daemon that closed its output) ends with the gate.
        let left_behind = orphans::kill_run(&run_id);
        let status = if captured.timed_out {
            timed_out += 1;
            "timed_out"
        } else if captured.success() {
            "passed"
        } else {
            failed += 1;
            "failed"
        };
        let duration_ms = u64::try_from(captured.duration.as_millis()).unwrap_or(u64::MAX);
        let evidence = json!({
            "kind": "gate-run",
            "pack": ID,
            "wu_id": wu_id,
            "gate": name,
            "command": gate.command,
            "timeout_seconds": gate.timeout.as_secs(),
            "status": status,
            "exit_code": captured.exit_code,
            "duration_ms": duration_ms,
            "stdout": tail_text(&captured.stdout),
            "stderr": tail_text(&captured.stderr),
            "output_truncated": captured.truncated,
            "ran_at": ran_at,
            "sandbox": sandbox.label(),
        });
        let stored = call.evidence().put(&evidence).map_err(|e| {
            fail(
                errors::STATE_IO,
                format!("cannot store the `{name}` gate's output as evidence: {e}"),
            )
        })?;
        let mut result = json!({
            "name": name,
            "status": status,
            "duration_ms": duration_ms,
            "evidence_ref": stored.reference,
            "command": gate.command,
            "sandbox": sandbox.label(),
        });
        if left_behind > 0 {
            result["killed_left_behind"] = left_behind.into();
        }
        let mut fact = json!({
            "status": status,
            "duration_ms": duration_ms,
            "evidence_ref": stored.reference,
            "ran_at": ran_at,
            "wu_id": wu_id,
        });
        if let Some(code) = captured.exit_code {
            for v in [&mut result, &mut fact] {
                if let Value::Object(m) = v {
                    m.insert("exit_code".into(), code.into());
                }
            }
        }
        results.push(result);
        facts_gates.insert(name.into(), fact);

        let kind = if status == "passed" {
            GATE_PASSED
        } else {
            GATE_FAILED
        };
        let mut payload = json!({
            "wu_id": wu_id,
            "gate": name,
            "duration_ms": duration_ms,
            "summary": summary(status, &captured.stdout, &captured.stderr),
        });
        if let (Some(code), Value::Object(m)) = (captured.exit_code, &mut payload) {
            m.insert("exit_code".into(), code.into());
        }
        common::emit(
            call,
            kind,
            payload,
            BuildOptions::default(),
            &mut emit_errors,
        );
    }

    // The facts the completion rules read: earlier results of gates not run now are kept.
    let facts_path = lumenflow_kernel::tasks::facts_path(&ws, ID, &facts_key);
    let mut facts = match common::read_json(&facts_path) {
        Ok(Some(Value::Object(m))) => m,
        // A damaged file is replaced: the new results are the truth.
        _ => Map::new(),
    };
    let mut all_gates = match facts.remove("gates") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for name in GATE_NAMES {
        all_gates
            .entry(name.to_string())
            .or_insert_with(|| json!({"status": "not_run"}));
    }
    for (name, fact) in &facts_gates {
        all_gates.insert(name.clone(), fact.clone());
    }
    facts.insert("gates".into(), Value::Object(all_gates.clone()));
    facts.insert("updated_at".into(), Timestamp::now().to_rfc3339().into());
    common::write_json(&facts_path, &Value::Object(facts))?;
    common::write_json(
        &ws.join(&results_rel),
        &json!({"wu_id": wu_id, "facts_key": facts_key, "gates": all_gates}),
    )?;

    let ran = results
        .iter()
        .filter(|r| r["status"] != "not_configured")
        .count();
    let mut data = json!({
        "wu_id": wu_id,
        "worktree_path": worktree.to_string_lossy(),
        // Nothing that ran is not "all passed": a caller must not read it as green.
        "all_passed": ran > 0 && failed == 0 && timed_out == 0,
        "gates_run": ran,
        "facts_key": facts_key,
        "sandbox": sandbox.label(),
        "results": results,
    });
    if ran == 0 {
        data["note"] = json!(format!(
            "no gate ran: none of {} is configured under `software_delivery.gates` in workspace.yaml",
            names.join(", ")
        ));
    }
    if !reaped.is_empty() {
        // Gate runs of a runtime that died, killed before these ran.
        data["reaped_orphans"] = json!(reaped);
    }
    let artifacts = [facts_rel, results_rel];
    if failed == 0 && timed_out == 0 {
        return Ok(common::success(data, &artifacts, &emit_errors));
    }
    // Named in the message, so a person reading one line knows which gate to look at; the
    // results (with each run's evidence) are the data.
    let not_passed: Vec<String> = results
        .iter()
        .filter_map(|r| {
            let name = r["name"].as_str().unwrap_or_default();
            match (r["status"].as_str(), r["exit_code"].as_i64()) {
                (Some("timed_out"), _) => Some(format!("`{name}` timed out")),
                (Some("failed"), Some(code)) => Some(format!("`{name}` exited {code}")),
                (Some("failed"), None) => Some(format!("`{name}` failed")),
                _ => None,
            }
        })
        .collect();
    let (code, message) = if failed == 0 {
        (
            errors::GATE_TIMEOUT,
            format!(
                "{timed_out} gate(s) of `{wu_id}` timed out (their process groups were killed): {}",
                not_passed.join(", ")
            ),
        )
    } else {
        (
            errors::GATE_FAILED,
            format!(
                "{} gate(s) of `{wu_id}` did not pass ({failed} failed, {timed_out} timed out): {}",
                failed + timed_out,
                not_passed.join(", ")
            ),
        )
    };
    // A failure that still carries the results, so the receipt references them.
    Ok(ToolOutput {
        success: false,
        data: Some(data),
        error: Some(ToolError {
            code: code.to_string(),
            message,
            details: None,
        }),
        metadata: common::metadata(&artifacts, &emit_errors),
    })
}
