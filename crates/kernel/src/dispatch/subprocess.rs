//! Subprocess tools run in the sandbox (KRN-11): the request `{"export", "input", "cwd"}` on
//! stdin, one ToolOutput on stdout. Every way the process can go wrong (no sandbox, timeout,
//! crash, output too large, not a ToolOutput) becomes a ToolOutput failure with its own code; the
//! dispatch path records it like any other result.

use lumenflow_contracts::tool_output::{codes, ToolOutput};
use serde_json::json;

use super::{SubprocessCall, SubprocessResult, SubprocessRunner};
use crate::sandbox::{self, NetworkPolicy, RunIds, RunSpec, SandboxMode, SandboxProfile};

/// Runs subprocess tools under the workspace's sandbox mode.
pub struct SandboxRunner {
    /// The mode, or why the sandbox is unavailable (every subprocess call is then refused,
    /// fail closed, unless the workspace opted out with `sandbox: none`).
    pub mode: Result<SandboxMode, String>,
    /// `security.deny_overlays` of the workspace.
    pub deny_overlays: Vec<String>,
}

fn fail(code: &str, message: impl Into<String>, sandbox: &'static str) -> SubprocessResult {
    SubprocessResult {
        output: ToolOutput::fail(code, message),
        sandbox,
    }
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.char_indices().rev().nth(1999).map_or(0, |(i, _)| i);
    text[start..].to_string()
}

impl SubprocessRunner for SandboxRunner {
    fn run(&self, call: SubprocessCall<'_>) -> SubprocessResult {
        let mode = match &self.mode {
            Ok(m) => m,
            Err(why) => return fail(codes::SANDBOX_UNAVAILABLE, why.clone(), "none"),
        };
        let label = match mode {
            SandboxMode::None => "none",
            SandboxMode::Bubblewrap { .. } => "bubblewrap",
        };
        let effective = call.effective();
        let network = match NetworkPolicy::from_grant(effective.network.as_ref()) {
            Ok(n) => n,
            Err(e) => return fail(e.code(), e.to_string(), label),
        };
        let profile = SandboxProfile {
            workspace_root: call.workspace_dir().to_path_buf(),
            read: effective.read.clone(),
            write: effective.write.clone(),
            network,
            env: call.env().to_vec(),
            deny_overlays: self.deny_overlays.clone(),
        };
        let request = json!({
            "export": call.export(),
            "input": call.input(),
            "cwd": call.workspace_dir(),
        });
        let spec = RunSpec {
            program: call.program().to_path_buf(),
            args: Vec::new(),
            stdin: serde_json::to_vec(&request).unwrap_or_default(),
            cwd: call.workspace_dir().to_path_buf(),
            timeout: call.timeout(),
            max_output_bytes: call.max_output_bytes(),
            ids: RunIds {
                receipt_id: call.receipt_id().to_string(),
                run_id: call.run_id().to_string(),
                task_id: call.task_id().unwrap_or_default().to_string(),
            },
            pack_root: Some(call.pack_root().to_path_buf()),
        };
        let outcome = match sandbox::run(mode, &profile, &spec) {
            Ok(o) => o,
            Err(e) => return fail(e.code(), e.to_string(), label),
        };
        let name = &call.tool().name;
        if outcome.timed_out {
            return fail(
                codes::TOOL_TIMEOUT,
                format!(
                    "tool `{name}` did not finish within {:?} and was killed",
                    call.timeout()
                ),
                outcome.sandbox,
            );
        }
        if outcome.output_truncated {
            return fail(
                codes::TOOL_EXECUTION_FAILED,
                format!(
                    "tool `{name}` wrote more than {} bytes on stdout and was stopped",
                    call.max_output_bytes()
                ),
                outcome.sandbox,
            );
        }
        if outcome.exit_code != Some(0) {
            return fail(
                codes::TOOL_EXECUTION_FAILED,
                format!(
                    "tool `{name}` {}: {}",
                    match outcome.exit_code {
                        Some(code) => format!("exited with status {code}"),
                        None => "ended without an exit status".to_string(),
                    },
                    tail(&outcome.stderr)
                ),
                outcome.sandbox,
            );
        }
        match serde_json::from_slice::<ToolOutput>(&outcome.stdout) {
            Ok(output) => SubprocessResult {
                output,
                sandbox: outcome.sandbox,
            },
            Err(e) => fail(
                codes::INVALID_OUTPUT,
                format!(
                    "tool `{name}` did not write one ToolOutput JSON object on stdout ({e}); stdout began: {}",
                    String::from_utf8_lossy(&outcome.stdout).chars().take(200).collect::<String>()
                ),
                outcome.sandbox,
            ),
        }
    }
}
