//! The scratch workspace of the demo: a small real git repository (a shell project whose test
//! fails), a `workspace.yaml` that pins the software-delivery and agent-runtime packs, lets
//! agents write only inside work-unit worktrees, and runs the project's test as a gate.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::output::CliError;

pub const WORKSPACE_ID: &str = "tc-demo";
pub const WU_ID: &str = "WU-042";
pub const LANE: &str = "Content: Site Comms";
pub const SECRET_PATH: &str = "secrets/production.env";

const CALC: &str =
    "#!/bin/sh\n# add A B: print the sum of two integers.\nadd() {\n  echo $(( $1 - $2 ))\n}\n";

const TEST: &str = r#"#!/bin/sh
# The project's test suite: one test of add.
. ./calc.sh
got=$(add 2 3)
if [ "$got" != "5" ]; then
  echo "FAIL add_two_numbers: add 2 3 = $got, expected 5"
  exit 1
fi
echo "ok add_two_numbers: add 2 3 = 5"
"#;

/// The fix the agent applies (paths relative to the worktree, as `git diff` writes them).
pub const FIX_PATCH: &str = "diff --git a/calc.sh b/calc.sh\n--- a/calc.sh\n+++ b/calc.sh\n@@ -2,4 +2,4 @@\n # add A B: print the sum of two integers.\n add() {\n-  echo $(( $1 - $2 ))\n+  echo $(( $1 + $2 ))\n }\n";

/// What the policy-blocked Ask makes the agent try: write a production secret.
pub const SECRET_PATCH: &str = "diff --git a/secrets/production.env b/secrets/production.env\nnew file mode 100644\n--- /dev/null\n+++ b/secrets/production.env\n@@ -0,0 +1 @@\n+DATABASE_PASSWORD=rotated-by-agent\n";

const SCOPES: &str = r#"      - {type: path, pattern: "**", access: read}
      - {type: path, pattern: "worktrees/**", access: write}
      - {type: path, pattern: ".git/**", access: write}
      - {type: path, pattern: ".lumenflow/state/software-delivery/**", access: write}
      - {type: path, pattern: ".lumenflow/state/agent-runtime/**", access: write}
"#;

/// The packs the demo pins, built into the binary.
const PACKS: [&str; 2] = ["software-delivery", "agent-runtime"];
const PACK_VERSION: &str = "0.1.0";

/// The pins of [`PACKS`] with their real hashes, so the demo loads exactly as production would
/// (an `integrity: dev` pin skips verification and is refused there): `{id, version, integrity}`.
fn pins() -> Result<Vec<Value>, CliError> {
    PACKS
        .iter()
        .map(|id| {
            let pack = lumenflow_packs::builtin_packs()
                .iter()
                .find(|p| p.id == *id)
                .ok_or_else(|| {
                    CliError::new(
                        "INTERNAL_ERROR",
                        format!("the built-in pack `{id}` the demo needs is not in this binary"),
                    )
                })?;
            Ok(json!({"id": id, "version": PACK_VERSION, "integrity": pack.hash().prefixed()}))
        })
        .collect()
}

fn workspace_yaml(pins: &[Value], unsandboxed: bool) -> String {
    // Gates run the work unit's code under bubblewrap; on a machine without it the demo still
    // runs its chain, opted out in the open (every gate result and receipt records `none`).
    let sandbox = if unsandboxed {
        "# bubblewrap was not found when the demo ran: gates run unsandboxed (install bubblewrap).\nsandbox: none\n"
    } else {
        ""
    };
    let packs: String = pins
        .iter()
        .map(|p| {
            format!(
                "  - {{id: {}, version: {}, integrity: \"{}\", source: local}}\n",
                p["id"].as_str().unwrap_or_default(),
                p["version"].as_str().unwrap_or_default(),
                p["integrity"].as_str().unwrap_or_default()
            )
        })
        .collect();
    format!(
        r#"# The trusted-compute demo's scratch workspace (written by `lumenflow demo trusted-compute`).
id: {WORKSPACE_ID}
name: Trusted compute demo
{sandbox}packs:
{packs}lanes:
  - id: site-comms
    title: "{LANE}"
    allowed_scopes:
{SCOPES}security:
  # Agents write only inside work-unit worktrees and the packs' own state; nothing else, and
  # in particular nothing under secrets/, is writable by any tool.
  allowed_scopes:
{SCOPES}memory_namespace: tc-demo
event_namespace: tc-demo
software_delivery:
  base_branch: main
  gates:
    lint: {{command: "sh -n calc.sh && sh -n test.sh", timeout_seconds: 30}}
    test: {{command: "sh test.sh", timeout_seconds: 60}}
"#
    )
}

fn git(dir: &Path, args: &[&str]) -> Result<String, CliError> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "LumenFlow demo")
        .env("GIT_AUTHOR_EMAIL", "demo@lumenflow.invalid")
        .env("GIT_COMMITTER_NAME", "LumenFlow demo")
        .env("GIT_COMMITTER_EMAIL", "demo@lumenflow.invalid")
        .output()
        .map_err(|e| {
            CliError::new(
                "GIT_UNAVAILABLE",
                format!("the demo needs git on PATH to create its scratch repository: {e}"),
            )
        })?;
    if !out.status.success() {
        return Err(CliError::new(
            "DEMO_STEP_FAILED",
            format!(
                "git {} in {}: {}",
                args.join(" "),
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub struct Scratch {
    pub root: PathBuf,
    pub head: String,
    /// The project's test run before any change: the failing test the Ask is about.
    pub baseline_test: Value,
    /// The packs pinned in `workspace.yaml`: `{id, version, integrity}`.
    pub pins: Vec<Value>,
    /// No bubblewrap here: the workspace says `sandbox: none`.
    pub unsandboxed: bool,
}

/// Create the workspace in `root` (which must not exist or be empty).
pub fn create(root: &Path) -> Result<Scratch, CliError> {
    let io = |e: std::io::Error| CliError::new("IO_ERROR", format!("{}: {e}", root.display()));
    fs::create_dir_all(root).map_err(io)?;
    if fs::read_dir(root).map_err(io)?.next().is_some() {
        return Err(CliError::new(
            "DEMO_DIR_NOT_EMPTY",
            format!(
                "{} is not empty; the demo creates its workspace in a new or empty folder",
                root.display()
            ),
        ));
    }
    let root = root.canonicalize().map_err(io)?;
    let pins = pins()?;
    let unsandboxed = lumenflow_kernel::sandbox::detect_bwrap().is_none();
    for (name, body) in [
        ("calc.sh", CALC),
        ("test.sh", TEST),
        (
            "README.md",
            "# calc\n\nA tiny shell library with one test (`sh test.sh`).\n",
        ),
        (".gitignore", ".lumenflow/\nworktrees/\n"),
        ("workspace.yaml", &workspace_yaml(&pins, unsandboxed)),
    ] {
        fs::write(root.join(name), body).map_err(io)?;
    }
    git(&root, &["init", "--quiet", "--initial-branch=main"])?;
    git(&root, &["add", "."])?;
    git(
        &root,
        &["commit", "--quiet", "-m", "calc: add, with its test"],
    )?;
    let head = git(&root, &["rev-parse", "HEAD"])?;
    let out = Command::new("sh")
        .arg("test.sh")
        .current_dir(&root)
        .output()
        .map_err(io)?;
    let baseline_test = json!({
        "command": "sh test.sh",
        "exit_code": out.status.code(),
        "status": if out.status.success() { "passed" } else { "failed" },
        "output": String::from_utf8_lossy(&out.stdout).trim(),
    });
    Ok(Scratch {
        root,
        head,
        baseline_test,
        pins,
        unsandboxed,
    })
}
