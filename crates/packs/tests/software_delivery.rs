//! The software-delivery pack through the kernel's dispatch path, on real git repositories in
//! temp folders with real gate commands: the seed's claim of WU-042 (INV-08), patches that stay
//! inside the worktree, gates with timeouts and evidence, the completion gate policies, the
//! approval-gated PR preparation and recovery, and the bad input of issue 8 (each refused with a
//! receipt, never a crash).
//!
//! Requirement ids: INV-08 (claim wire example), BKP-02 (gate events ephemeral), KRN-08
//! (completion rules), KRN-09 (approvals), KRN-10 (receipts for refused calls), Q26 (state
//! writes under `.lumenflow/state/software-delivery/**`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::ToolOutput;
use lumenflow_kernel::approvals::{ApprovalProvider, Decision, LocalApprovals};
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::open::open;
use lumenflow_kernel::dispatch::{
    CallOutcome, CallRequest, Runtime, RuntimeEvents, RuntimeOptions,
};
use lumenflow_kernel::events::emit::MemorySink;
use lumenflow_kernel::events::host::PackHost;
use lumenflow_kernel::manifest::{Backpressure, Permission, Surface};
use lumenflow_kernel::pack_report::{validate_embedded, validate_pack_dir};
use lumenflow_kernel::tasks::{ClaimRequest, TaskStore};
use lumenflow_packs::software_delivery::{self, manifest, PACK};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

const SCOPES: &str = r#"      - {type: path, pattern: "**", access: read}
      - {type: path, pattern: "worktrees/**", access: write}
      - {type: path, pattern: ".git/**", access: write}
      - {type: path, pattern: ".lumenflow/state/software-delivery/**", access: write}
"#;

const GATES: &str = r#"software_delivery:
  gates:
    format: {command: "test -f README.md", timeout_seconds: 10}
    lint: {command: "test -f LINT_OK", timeout_seconds: 10}
    test: {command: "sh -c 'exit 1'", timeout_seconds: 10}
    coverage: {command: "sleep 60", timeout_seconds: 1}
"#;

fn workspace_yaml(gates: &str) -> String {
    format!(
        r#"id: ws-test
name: Software delivery test
packs:
  - id: software-delivery
    version: 0.1.0
    integrity: dev
    source: local
lanes:
  - id: site-comms
    title: "Content: Site Comms"
    allowed_scopes:
{SCOPES}security:
  allowed_scopes:
{SCOPES}memory_namespace: m
event_namespace: e
{gates}"#
    )
}

/// `git` for the test's own setup, with no user configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Ws {
    _dir: tempfile::TempDir,
    root: PathBuf,
    runtime: Runtime,
    sink: Arc<MemorySink>,
}

impl Ws {
    fn new(gates: &str) -> Ws {
        Ws::with_yaml(&workspace_yaml(gates))
    }

    fn with_yaml(yaml: &str) -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("workspace.yaml"), yaml).unwrap();
        fs::write(root.join("README.md"), "# site\n\nhello\n").unwrap();
        fs::write(root.join(".gitignore"), ".lumenflow/\nworktrees/\n").unwrap();
        git(&root, &["init", "--quiet", "--initial-branch=main"]);
        git(&root, &["add", "README.md", ".gitignore", "workspace.yaml"]);
        git(&root, &["commit", "--quiet", "-m", "initial"]);
        let mut runtime = open(
            &root,
            lumenflow_packs::builtin_packs(),
            &lumenflow_packs::builtin_tools(),
            RuntimeOptions::default(),
        )
        .unwrap_or_else(|e| panic!("open: {e}"));
        let sink = Arc::new(MemorySink::new());
        runtime.events = Some(Arc::new(RuntimeEvents::new("ws-42", sink.clone(), None)));
        Ws {
            _dir: dir,
            root,
            runtime,
            sink,
        }
    }

    fn call(&self, tool: &str, input: Value) -> CallOutcome {
        self.runtime.dispatch(CallRequest::local(tool, input))
    }

    fn call_in_task(&self, tool: &str, input: Value, task: &str) -> CallOutcome {
        let mut req = CallRequest::local(tool, input);
        req.task_id = Some(task.to_string());
        self.runtime.dispatch(req)
    }

    fn claim(&self) -> Value {
        let out = self.call(
            "software-delivery:wu_claim",
            json!({"wu_id": "WU-042", "lane": "Content: Site Comms"}),
        );
        data(&out)
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.sink
            .pushes()
            .into_iter()
            .flatten()
            .filter(|e| e.kind == kind)
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    fn grant(&self, approval_id: &str) {
        LocalApprovals::open(&self.root)
            .decide(
                approval_id,
                Decision::Granted {
                    approver: "operator".into(),
                    reason: "reviewed".into(),
                    decided_at: Timestamp::now(),
                },
            )
            .unwrap();
    }

    /// Task WU-042 from `spec`, created and claimed (active), and the store holding it.
    fn active_task(&self, spec: &str) -> TaskStore {
        let tasks = TaskStore::open(&self.root, self.runtime.log.clone())
            .unwrap()
            .with_packs(self.runtime.pack_manifests.clone());
        tasks
            .create_from_source(&SourceFile::new("WU-042.yaml", spec))
            .unwrap_or_else(|e| panic!("create: {e}"));
        tasks
            .claim(
                "WU-042",
                ClaimRequest {
                    by: "agent".into(),
                    session_id: "s1".into(),
                    ..ClaimRequest::default()
                },
            )
            .unwrap();
        tasks
    }

    fn worktree(&self) -> PathBuf {
        self.root.join("worktrees/content-site-comms-wu-042")
    }
}

fn data(out: &CallOutcome) -> Value {
    assert!(
        out.output.success,
        "call failed: {:?}",
        out.output.error.as_ref()
    );
    out.output.data.clone().unwrap()
}

fn code(out: &CallOutcome) -> String {
    assert!(
        !out.output.success,
        "call should fail: {:?}",
        out.output.data
    );
    out.output.error_code().unwrap_or("").to_string()
}

/// A refused or failed call left its started and finished receipts, the latter with the code.
fn assert_receipt(ws: &Ws, out: &CallOutcome, expected_code: &str) {
    let receipts = ws.runtime.receipts(&out.receipt_id).unwrap();
    assert_eq!(receipts.len(), 2, "started + finished: {receipts:?}");
    let finished = &receipts[1].fields;
    assert_eq!(finished["error_code"], expected_code, "{finished:?}");
    assert_ne!(finished["result"], "success");
}

const PATCH_README: &str = "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # site\n \n-hello\n+hello, world\n";

const PATCH_NEW_FILE: &str = "diff --git a/src/page.md b/src/page.md\nnew file mode 100644\n--- /dev/null\n+++ b/src/page.md\n@@ -0,0 +1,2 @@\n+# Page\n+Comms update\n";

// ---------------------------------------------------------------------------------------------
// The manifest and the embedded folder

#[test]
fn the_manifest_passes_pack_validate_with_least_privilege_scopes() {
    // KRN-01, KRN-02: `lumenflow pack validate --builtin software-delivery`.
    let report = validate_embedded(&PACK);
    assert!(report.passed(), "{}", report.render_text());
    // `lumenflow pack validate crates/packs/src/software_delivery`: the folder on disk too.
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/software_delivery");
    let report = validate_pack_dir(&folder, &[], None);
    assert!(report.passed(), "{}", report.render_text());
    let m = manifest();
    assert_eq!(
        (m.id.as_str(), m.slug()),
        ("software-delivery", "software-delivery")
    );
    let names: Vec<&str> = m.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "git:status",
            "git:diff",
            "software-delivery:wu_claim",
            "software-delivery:apply_patch",
            "software-delivery:gates",
            "software-delivery:pr_prepare",
            "software-delivery:wu_recover",
        ]
    );
    for tool in &m.tools {
        assert!(
            tool.input_schema.is_some() && tool.output_schema.is_some(),
            "{}",
            tool.name
        );
        for scope in &tool.required_scopes {
            let s = serde_json::to_value(scope).unwrap();
            if s["access"] == "write" {
                let p = s["pattern"].as_str().unwrap();
                assert!(
                    !["*", "**", "**/*", "./**", "./**/*"].contains(&p),
                    "{}: wildcard write {p}",
                    tool.name
                );
                assert!(
                    !p.starts_with(".lumenflow/")
                        || p.starts_with(".lumenflow/state/software-delivery/"),
                    "{}: reserved write {p}",
                    tool.name
                );
            }
        }
    }
    for read_only in ["git:status", "git:diff"] {
        assert_eq!(m.tool(read_only).unwrap().permission, Permission::Read);
    }
    assert_eq!(
        m.tool("software-delivery:pr_prepare")
            .unwrap()
            .required_approvals,
        ["software-delivery:pr-create"]
    );
    let recover = m.tool("software-delivery:wu_recover").unwrap();
    assert_eq!(recover.permission, Permission::Admin);
    assert_eq!(recover.required_approvals, ["software-delivery:wu-recover"]);
    // BKP-02: gate and claim events are ephemeral.
    assert_eq!(m.emitted_event_kinds.len(), 3);
    for kind in &m.emitted_event_kinds {
        assert_eq!(
            m.backpressure_policy[kind],
            Backpressure::Ephemeral,
            "{kind}"
        );
    }
    let gate_policies: Vec<&str> = m.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        gate_policies,
        [
            "software-delivery.gate.format",
            "software-delivery.gate.lint",
            "software-delivery.gate.typecheck",
            "software-delivery.gate.test",
            "software-delivery.gate.coverage",
        ]
    );
    // The event host accepts the registration (emits only, subscribes to nothing).
    let dir = tempfile::tempdir().unwrap();
    let mut host = PackHost::new(dir.path(), &[Surface::Http]);
    host.register(software_delivery::registration()).unwrap();
    assert!(lumenflow_packs::builtin_packs()
        .iter()
        .any(|p| p.id == "software-delivery"));
    let tools = lumenflow_packs::builtin_tools();
    assert!(names.iter().all(|n| tools.contains_key(*n)));
}

#[test]
fn the_embedded_files_are_exactly_the_files_of_the_pack_folder() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/software_delivery");
    let mut on_disk: Vec<(String, Vec<u8>)> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            assert!(
                e.file_type().unwrap().is_file(),
                "sub-folders are not embedded"
            );
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    on_disk.sort();
    let mut embedded: Vec<(String, Vec<u8>)> = PACK
        .files
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    embedded.sort();
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&embedded), names(&on_disk));
    assert!(
        embedded == on_disk,
        "an embedded file differs from the file on disk"
    );
}

// ---------------------------------------------------------------------------------------------
// wu_claim

#[test]
fn claiming_wu_042_returns_the_resolved_worktree_path_and_is_idempotent() {
    // INV-08: POST /tools/software-delivery:wu_claim {wu_id: WU-042, lane: "Content: Site Comms"}.
    let second_lane =
        format!("  - id: backend\n    title: Backend\n    allowed_scopes:\n{SCOPES}security:");
    let ws = Ws::with_yaml(&workspace_yaml(GATES).replacen("security:", &second_lane, 1));
    let first = ws.claim();
    let path = PathBuf::from(first["worktree_path"].as_str().unwrap());
    assert!(path.is_absolute());
    assert_eq!(path, ws.worktree().canonicalize().unwrap());
    assert!(path.join("README.md").is_file());
    assert_eq!(first["branch"], "lane/content-site-comms/wu-042");
    assert_eq!(first["base"], "main");
    assert_eq!(first["base_commit"], git(&ws.root, &["rev-parse", "main"]));
    assert_eq!(first["created"], true);
    assert_eq!(
        git(&path, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "lane/content-site-comms/wu-042"
    );

    // The same claim again: the same answer, nothing new created.
    let again = ws.claim();
    assert_eq!(again["worktree_path"], first["worktree_path"]);
    assert_eq!(again["created"], false);

    // The event, with the workspace identity and the relative worktree (one id for both claims).
    let events = ws.events("software-delivery:wu_claimed");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["from"], "ws-42");
    assert_eq!(events[0]["payload"]["wu_id"], "WU-042");
    assert_eq!(events[0]["payload"]["lane"], "Content: Site Comms");
    assert_eq!(
        events[0]["payload"]["worktree_path"],
        "worktrees/content-site-comms-wu-042"
    );
    assert_eq!(events[0]["event_id"], events[1]["event_id"]);

    // Another lane for the same work unit is a conflict.
    let other = ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-042", "lane": "Backend"}),
    );
    assert_eq!(code(&other), "WU_ALREADY_CLAIMED");
    assert_receipt(&ws, &other, "WU_ALREADY_CLAIMED");
    // The lane's id names the same lane as its title: the same claim, not a conflict.
    let by_id = ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-042", "lane": "site-comms"}),
    );
    assert_eq!(data(&by_id)["created"], false, "{:?}", by_id.output);
}

/// Set by [`claims_from_several_processes_each_succeed_once`] for its peers: the workspace.
const CLAIMER_ENV: &str = "LUMENFLOW_SD_CLAIMER";
const RACED_WUS: usize = 6;

/// Claim WU-0.. in turn on one lane once `<workspace>/go` exists; one line per claim:
/// `WU-i ok created` / `WU-i ok existing` / `WU-i <code>`.
fn claim_all(runtime: &Runtime, root: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !root.join("go").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    (0..RACED_WUS)
        .map(|i| {
            let out = runtime.dispatch(CallRequest::local(
                "software-delivery:wu_claim",
                json!({"wu_id": format!("WU-{i}"), "lane": "Content: Site Comms"}),
            ));
            match (&out.output.data, out.output.error_code()) {
                (Some(d), None) if d["created"] == true => format!("WU-{i} ok created"),
                (Some(_), None) => format!("WU-{i} ok existing"),
                (_, code) => format!("WU-{i} {}", code.unwrap_or("?")),
            }
        })
        .collect()
}

/// A peer process of [`claims_from_several_processes_each_succeed_once`]; does nothing unless
/// the parent set [`CLAIMER_ENV`].
#[test]
fn child_wu_claimer() {
    let Some(root) = std::env::var_os(CLAIMER_ENV) else {
        return;
    };
    let root = PathBuf::from(root);
    let runtime = open(
        &root,
        lumenflow_packs::builtin_packs(),
        &lumenflow_packs::builtin_tools(),
        RuntimeOptions::default(),
    )
    .unwrap_or_else(|e| panic!("open: {e}"));
    for line in claim_all(&runtime, &root) {
        println!("\n{line}");
    }
}

#[test]
fn claims_from_several_processes_each_succeed_once() {
    // A sidecar and a `lumenflow tool call` claiming one work unit on one lane: the claim is
    // idempotent, so every caller succeeds, and exactly one of them creates the worktree.
    let ws = Ws::new(GATES);
    let exe = std::env::current_exe().unwrap();
    let peers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_wu_claimer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CLAIMER_ENV, &ws.root)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    fs::write(ws.root.join("go"), b"").unwrap();
    let mut lines = claim_all(&ws.runtime, &ws.root);
    for peer in peers {
        let out = peer.wait_with_output().unwrap();
        assert!(out.status.success(), "a peer failed: {:?}", out.status);
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("WU-"))
                .map(str::to_string),
        );
    }
    assert_eq!(lines.len(), 3 * RACED_WUS, "{lines:?}");
    for i in 0..RACED_WUS {
        let mine: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("WU-{i} ")))
            .collect();
        assert!(
            mine.iter().all(|l| l.contains(" ok ")),
            "every claim succeeds: {mine:?}"
        );
        assert_eq!(
            mine.iter().filter(|l| l.ends_with("created")).count(),
            1,
            "one creates the worktree: {mine:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// apply_patch

#[test]
fn a_patch_is_applied_inside_the_claimed_worktree_only() {
    let ws = Ws::new(GATES);
    ws.claim();
    let out = ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": format!("{PATCH_README}{PATCH_NEW_FILE}")}),
    );
    let d = data(&out);
    assert_eq!(d["files"], json!(["README.md", "src/page.md"]));
    let wt = ws.worktree();
    assert_eq!(
        fs::read_to_string(wt.join("README.md")).unwrap(),
        "# site\n\nhello, world\n"
    );
    assert!(wt.join("src/page.md").is_file());
    // The workspace's own checkout is untouched.
    assert_eq!(
        fs::read_to_string(ws.root.join("README.md")).unwrap(),
        "# site\n\nhello\n"
    );

    // The read-only tools see the change.
    let status = data(&ws.call("git:status", json!({"wu_id": "WU-042"})));
    assert_eq!(status["clean"], false);
    assert_eq!(status["branch"], "lane/content-site-comms/wu-042");
    let paths: Vec<&str> = status["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"README.md") && paths.contains(&"src/page.md"),
        "{paths:?}"
    );
    let diff = data(&ws.call("git:diff", json!({"wu_id": "WU-042"})));
    assert!(diff["diff"].as_str().unwrap().contains("+hello, world"));
    let ws_status = data(&ws.call("git:status", json!({})));
    assert_eq!(ws_status["clean"], true, "{ws_status}");
}

#[test]
fn patches_escaping_the_worktree_are_refused_with_a_receipt() {
    let ws = Ws::new(GATES);
    ws.claim();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.worktree().join("out")).unwrap();
    let cases = [
        (
            "../ climbing out",
            "--- a/../escape.txt\n+++ b/../escape.txt\n@@ -0,0 +1 @@\n+x\n".to_string(),
            "PATCH_ESCAPES_WORKTREE",
        ),
        (
            "an absolute path",
            "--- /dev/null\n+++ /tmp/escape.txt\n@@ -0,0 +1 @@\n+x\n".to_string(),
            "PATCH_ESCAPES_WORKTREE",
        ),
        (
            "through a symlink",
            "diff --git a/out/x.txt b/out/x.txt\nnew file mode 100644\n--- /dev/null\n+++ b/out/x.txt\n@@ -0,0 +1 @@\n+x\n".to_string(),
            "PATCH_ESCAPES_WORKTREE",
        ),
        (
            "a rename out of it",
            "diff --git a/README.md b/README.md\nsimilarity index 100%\nrename from README.md\nrename to ../../stolen.md\n".to_string(),
            "PATCH_ESCAPES_WORKTREE",
        ),
        (
            "git metadata",
            "--- /dev/null\n+++ b/.git/hooks/post-checkout\n@@ -0,0 +1 @@\n+x\n".to_string(),
            "PATCH_ESCAPES_WORKTREE",
        ),
        (
            "a new symlink",
            "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n".to_string(),
            "PATCH_SYMLINK_REFUSED",
        ),
        ("not a diff", "rm -rf /\n".to_string(), "PATCH_INVALID"),
        (
            "a patch that does not apply",
            PATCH_README.replace("-hello\n", "-goodbye\n"),
            "PATCH_DOES_NOT_APPLY",
        ),
    ];
    for (what, patch, expected) in cases {
        let out = ws.call(
            "software-delivery:apply_patch",
            json!({"wu_id": "WU-042", "patch": patch}),
        );
        assert_eq!(code(&out), expected, "{what}: {:?}", out.output.error);
        assert_receipt(&ws, &out, expected);
    }
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(!ws.root.join("escape.txt").exists() && !Path::new("/tmp/escape.txt").exists());
    assert_eq!(
        fs::read_to_string(ws.worktree().join("README.md")).unwrap(),
        "# site\n\nhello\n"
    );
}

#[test]
fn a_symlinked_worktrees_folder_does_not_lead_the_claim_outside_the_workspace() {
    let ws = Ws::new(GATES);
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.root.join("worktrees")).unwrap();
    let out = ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-042", "lane": "Content: Site Comms"}),
    );
    assert_eq!(code(&out), "SCOPE_DENIED", "{:?}", out.output.error);
    assert_receipt(&ws, &out, "SCOPE_DENIED");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn bad_input_ends_in_a_clear_refusal_never_a_crash() {
    let ws = Ws::new(GATES);
    // Not claimed yet.
    let out = ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-7", "patch": PATCH_README}),
    );
    assert_eq!(code(&out), "WU_NOT_CLAIMED");
    assert_receipt(&ws, &out, "WU_NOT_CLAIMED");
    // Ids that would name other files or branches never reach the tool.
    for bad in ["../etc", "WU 1", "", "-x"] {
        let out = ws.call(
            "software-delivery:wu_claim",
            json!({"wu_id": bad, "lane": "Content: Site Comms"}),
        );
        assert_eq!(code(&out), "INVALID_INPUT", "{bad}");
    }
    let out = ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-1", "lane": "::: ---"}),
    );
    assert_eq!(code(&out), "LANE_INVALID");
    // A lane workspace.yaml does not declare is a typo, refused with the declared ones; the
    // lane's id works as well as its title.
    let out = ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-1", "lane": "Content: Site Coms"}),
    );
    assert_eq!(code(&out), "LANE_INVALID");
    assert!(
        out.output
            .error
            .as_ref()
            .unwrap()
            .message
            .ends_with("its lanes (title or id): `Content: Site Comms` (site-comms)"),
        "{:?}",
        out.output.error
    );
    assert!(!ws
        .root
        .join("worktrees")
        .join("content-site-coms-wu-1")
        .exists());
    let out = ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-1", "lane": "site-comms"}),
    );
    assert!(out.output.success, "{:?}", out.output);
    let out = ws.call(
        "software-delivery:gates",
        json!({"wu_id": "WU-1", "gates": ["deploy"]}),
    );
    assert_eq!(code(&out), "INVALID_INPUT");
}

// ---------------------------------------------------------------------------------------------
// gates

#[test]
fn gates_run_real_commands_with_timeouts_evidence_and_events() {
    let ws = Ws::new(GATES);
    ws.claim();
    let started = Instant::now();
    let out = ws.call("software-delivery:gates", json!({"wu_id": "WU-042"}));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the hanging gate must be killed at its 1 s timeout"
    );
    assert_eq!(code(&out), "GATE_FAILED");
    // One line names what to look at: lint (no LINT_OK), test (exit 1), coverage (timeout).
    assert!(
        out.output.error.as_ref().unwrap().message.ends_with(
            "3 gate(s) of `WU-042` did not pass (2 failed, 1 timed out): `lint` exited 1, `test` exited 1, `coverage` timed out"
        ),
        "{:?}",
        out.output.error
    );
    let d = out
        .output
        .data
        .clone()
        .expect("failed gates still carry their results");
    assert_eq!(d["all_passed"], false);
    let by_name = |n: &str| {
        d["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap()
    };
    let format = by_name("format");
    assert_eq!(
        (format["status"].as_str(), format["exit_code"].as_i64()),
        (Some("passed"), Some(0))
    );
    let lint = by_name("lint");
    assert_eq!(
        (lint["status"].as_str(), lint["exit_code"].as_i64()),
        (Some("failed"), Some(1))
    );
    let test = by_name("test");
    assert_eq!(test["status"], "failed");
    let coverage = by_name("coverage");
    assert_eq!(coverage["status"], "timed_out");
    assert!(coverage.get("exit_code").is_none());
    assert!(coverage["duration_ms"].as_u64().unwrap() < 10_000);
    assert_eq!(by_name("typecheck")["status"], "not_configured");

    // Captured output is evidence.
    let evidence = ws
        .runtime
        .evidence
        .get(lint["evidence_ref"].as_str().unwrap())
        .unwrap();
    assert_eq!(evidence["command"], "test -f LINT_OK");
    assert_eq!(evidence["status"], "failed");

    // One event per gate that ran (BKP-02: ephemeral kinds).
    assert_eq!(ws.events("software-delivery:gate_passed").len(), 1);
    let failed = ws.events("software-delivery:gate_failed");
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|e| e["payload"]["wu_id"] == "WU-042"));

    // The receipt records the failure and references the results.
    let receipts = ws.runtime.receipts(&out.receipt_id).unwrap();
    assert_eq!(receipts[1].fields["error_code"], "GATE_FAILED");
    assert!(receipts[1].fields["output_ref"].is_string());

    // Only the passing gate: success.
    let ok = ws.call(
        "software-delivery:gates",
        json!({"wu_id": "WU-042", "gates": ["format"]}),
    );
    assert_eq!(data(&ok)["all_passed"], true);

    // A timeout alone is GATE_TIMEOUT.
    let slow = ws.call(
        "software-delivery:gates",
        json!({"wu_id": "WU-042", "gates": ["coverage"]}),
    );
    assert_eq!(code(&slow), "GATE_TIMEOUT");
}

/// The evidence of one gate result of `out`.
fn gate_evidence(ws: &Ws, out: &CallOutcome, gate: &str) -> Value {
    let d = out.output.data.clone().unwrap();
    let result = d["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == gate)
        .cloned()
        .unwrap();
    ws.runtime
        .evidence
        .get(result["evidence_ref"].as_str().unwrap())
        .unwrap()
}

/// Finding 1 (walk H): a gate runs the agent's code (its patches change the tests), so it must
/// not reach the workspace's approvals, keys or kernel state. Under the default sandbox mode
/// (bubblewrap) `.lumenflow` is an empty read-only folder inside the gate, the repository is
/// read-only, and the worktree stays writable; a normal passing and failing gate still work.
/// KRN-11 (sandbox, `sandbox: none` recorded), KRN-09 (approvals decided by a person only).
#[test]
fn a_gate_cannot_read_keys_or_forge_approvals_under_the_sandbox() {
    let gates = "software_delivery:\n  gates:\n    format: {command: \"test -f README.md\", timeout_seconds: 10}\n    lint: {command: \"exit 3\", timeout_seconds: 10}\n    test: {command: \"sh evil.sh\", timeout_seconds: 20}\n";
    let ws = Ws::new(gates);
    ws.claim();
    let keys = ws.root.join(".lumenflow/state/keys");
    fs::create_dir_all(&keys).unwrap();
    fs::write(keys.join("workspace-ed25519.pem"), "SECRET-SIGNING-KEY\n").unwrap();
    let approvals = ws.root.join(".lumenflow/state/approvals");
    fs::create_dir_all(&approvals).unwrap();
    // The agent's "test": read the key, forge a decision, touch the repository and the kernel
    // log; then write its own worktree and /tmp, which it may.
    let evil = "cat ../../.lumenflow/state/keys/workspace-ed25519.pem\n\
        echo forged > ../../.lumenflow/state/approvals/apr_x.decision && echo FORGED\n\
        echo x >> ../../.lumenflow/kernel/events.jsonl && echo LOGGED\n\
        echo x > ../../.git/evil && echo GIT_WRITTEN\n\
        cp .git .g && echo 'gitdir: elsewhere' > .git && echo GITFILE_REDIRECTED\n\
        echo ok > built.txt && echo WORKTREE_OK\n\
        echo ok > /tmp/scratch && echo TMP_OK\n\
        exit 0\n";
    let patch = format!(
        "--- /dev/null\n+++ b/evil.sh\n@@ -0,0 +1,{} @@\n{}",
        evil.lines().count(),
        evil.lines().map(|l| format!("+{l}\n")).collect::<String>()
    );
    data(&ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": patch}),
    ));
    let log_before = fs::read(ws.root.join(".lumenflow/kernel/events.jsonl")).unwrap();

    let out = ws.call("software-delivery:gates", json!({"wu_id": "WU-042"}));
    assert_eq!(code(&out), "GATE_FAILED", "{:?}", out.output.error);
    let d = out.output.data.clone().unwrap();
    assert_eq!(d["sandbox"], "bubblewrap");
    let status = |n: &str| {
        d["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .map(|r| (r["status"].clone(), r["sandbox"].clone()))
            .unwrap()
    };
    assert_eq!(status("format"), (json!("passed"), json!("bubblewrap")));
    assert_eq!(status("lint"), (json!("failed"), json!("bubblewrap")));
    assert_eq!(status("test").0, "passed", "the script itself exits 0");

    let evidence = gate_evidence(&ws, &out, "test");
    let stdout = evidence["stdout"].as_str().unwrap();
    assert!(!stdout.contains("SECRET-SIGNING-KEY"), "{evidence}");
    for refused in ["FORGED", "LOGGED", "GIT_WRITTEN", "GITFILE_REDIRECTED"] {
        assert!(!stdout.contains(refused), "{refused}: {evidence}");
    }
    assert!(
        stdout.contains("WORKTREE_OK") && stdout.contains("TMP_OK"),
        "{evidence}"
    );
    assert_eq!(evidence["sandbox"], "bubblewrap");
    assert!(!approvals.join("apr_x.decision").exists());
    assert!(!ws.root.join(".git/evil").exists());
    assert!(ws.worktree().join("built.txt").is_file());
    let log_after = fs::read(ws.root.join(".lumenflow/kernel/events.jsonl")).unwrap();
    assert!(
        log_after.starts_with(&log_before) && !log_after.ends_with(b"x\n"),
        "the gate appended to the kernel log"
    );
}

/// `sandbox: none` opts gates out, as it does tools, and every result says so (KRN-11).
/// Finding 12: a child that left the process group (`setsid`) is killed at the timeout with
/// the group, the call does not overrun, and what the gate printed before is kept.
#[test]
fn without_the_sandbox_a_daemonised_gate_child_dies_at_the_timeout_and_output_is_kept() {
    let gates = "software_delivery:\n  gates:\n    typecheck: {command: \"echo started; setsid sleep 302; echo x\", timeout_seconds: 2}\n    lint: {command: \"setsid sleep 301 & echo done\", timeout_seconds: 10}\n";
    let ws = Ws::with_yaml(&format!("{}sandbox: none\n", workspace_yaml(gates)));
    ws.claim();
    let started = Instant::now();
    let out = ws.call(
        "software-delivery:gates",
        json!({"wu_id": "WU-042", "gates": ["typecheck"]}),
    );
    let elapsed = started.elapsed();
    assert_eq!(code(&out), "GATE_TIMEOUT");
    assert!(elapsed < Duration::from_secs(5), "overran: {elapsed:?}");
    let d = out.output.data.clone().unwrap();
    assert_eq!(d["sandbox"], "none");
    let evidence = gate_evidence(&ws, &out, "typecheck");
    assert_eq!(evidence["stdout"], "started\n", "{evidence}");
    assert_eq!(evidence["sandbox"], "none");
    assert!(gate_processes(&format!("{}-typecheck", out.receipt_id)).is_empty());

    // A gate that passes but leaves a daemon behind: the daemon ends with the gate.
    let out = ws.call(
        "software-delivery:gates",
        json!({"wu_id": "WU-042", "gates": ["lint"]}),
    );
    let d = data(&out);
    assert_eq!(d["results"][0]["status"], "passed");
    assert!(gate_processes(&format!("{}-lint", out.receipt_id)).is_empty());
}

/// Under bubblewrap the same daemonised child dies with the gate's pid namespace.
#[test]
fn under_the_sandbox_a_daemonised_gate_child_dies_at_the_timeout() {
    let gates = "software_delivery:\n  gates:\n    typecheck: {command: \"echo started; setsid sleep 303; echo x\", timeout_seconds: 2}\n";
    let ws = Ws::new(gates);
    ws.claim();
    let started = Instant::now();
    let out = ws.call("software-delivery:gates", json!({"wu_id": "WU-042"}));
    assert_eq!(code(&out), "GATE_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(gate_evidence(&ws, &out, "typecheck")["stdout"], "started\n");
    std::thread::sleep(Duration::from_millis(200));
    assert!(gate_processes(&format!("{}-typecheck", out.receipt_id)).is_empty());
}

const GATE_RUNNER_ENV: &str = "LUMENFLOW_SD_GATE_RUNNER";

/// The runtime [`a_gate_whose_runtime_was_killed_is_reaped_by_the_next_gates_call`] kills:
/// runs the workspace's slow `coverage` gate; does nothing unless the parent set
/// [`GATE_RUNNER_ENV`].
#[test]
fn child_gate_runner() {
    let Some(root) = std::env::var_os(GATE_RUNNER_ENV) else {
        return;
    };
    let runtime = open(
        Path::new(&root),
        lumenflow_packs::builtin_packs(),
        &lumenflow_packs::builtin_tools(),
        RuntimeOptions::default(),
    )
    .unwrap_or_else(|e| panic!("open: {e}"));
    runtime.dispatch(CallRequest::local(
        "software-delivery:gates",
        json!({"wu_id": "WU-042", "gates": ["coverage"]}),
    ));
}

/// The pids whose environment carries gate run `run_id`.
fn gate_processes(run_id: &str) -> Vec<String> {
    let needle = format!("LUMENFLOW_GATE_RUN={run_id}");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .filter(|p| {
            fs::read(format!("/proc/{p}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// A runtime killed (SIGKILL) while a gate runs leaves the gate's processes with nobody to
/// enforce their timeout; the next `gates` call kills exactly those processes (found by the
/// run id in their environment, never by a pid that may have been reused) and says so.
/// Without the sandbox (`sandbox: none`): under bubblewrap (`--die-with-parent`, its own pid
/// namespace) the gate dies with its runtime, so there is nothing left to reap.
#[test]
fn a_gate_whose_runtime_was_killed_is_reaped_by_the_next_gates_call() {
    let gates = "software_delivery:\n  gates:\n    lint: {command: \"true\", timeout_seconds: 10}\n    coverage: {command: \"sleep 60\", timeout_seconds: 120}\n";
    let ws = Ws::with_yaml(&format!("{}sandbox: none\n", workspace_yaml(gates)));
    ws.claim();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_gate_runner", "--nocapture"])
        .env(GATE_RUNNER_ENV, &ws.root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = ws.root.join(".lumenflow/state/software-delivery/running");
    let deadline = Instant::now() + Duration::from_secs(30);
    let run_id = loop {
        let record = fs::read_dir(&running)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| fs::read(e.path()).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if let Some(run_id) = record.and_then(|r| r["run_id"].as_str().map(str::to_string)) {
            if !gate_processes(&run_id).is_empty() {
                break run_id;
            }
        }
        assert!(Instant::now() < deadline, "the gate never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !gate_processes(&run_id).is_empty(),
        "the gate outlives its killed runtime"
    );

    let out = ws.call(
        "software-delivery:gates",
        json!({"wu_id": "WU-042", "gates": ["lint"]}),
    );
    let d = data(&out);
    assert_eq!(d["reaped_orphans"].as_array().map(Vec::len), Some(1), "{d}");
    assert!(
        d["reaped_orphans"][0]
            .as_str()
            .unwrap()
            .starts_with("WU-042/coverage: "),
        "{d}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gate_processes(&run_id).is_empty() {
        assert!(Instant::now() < deadline, "the orphaned gate still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        fs::read_dir(&running).unwrap().count(),
        0,
        "records removed"
    );
}

#[test]
fn a_failed_gate_refuses_task_completion_until_it_passes() {
    // KRN-08: the pack's on_completion gate policies follow the gate results.
    let gates = "software_delivery:\n  gates:\n    lint: {command: \"test -f LINT_OK\", timeout_seconds: 10}\n";
    let ws = Ws::new(gates);
    ws.claim();
    let spec = format!(
        "id: WU-042\nworkspace_id: ws-test\nlane_id: site-comms\ndomain: software-delivery\ntitle: Site comms\ndescription: Update the site\nacceptance:\n  - gates pass\ndeclared_scopes:\n{}risk: low\ntype: feature\npriority: P1\ncreated: 2026-04-20\n",
        SCOPES.replace("      - ", "  - ")
    );
    let tasks = ws.active_task(&spec);

    let out = ws.call_in_task(
        "software-delivery:gates",
        json!({"wu_id": "WU-042", "gates": ["lint"]}),
        "WU-042",
    );
    assert_eq!(code(&out), "GATE_FAILED", "{:?}", out.output.error);
    assert_eq!(out.output.data.as_ref().unwrap()["facts_key"], "WU-042");

    let refused = tasks.complete("WU-042", &[]).unwrap_err();
    assert_eq!(refused.code(), "POLICY_DENIED");
    assert!(
        refused.to_string().contains("software-delivery.gate.lint"),
        "{refused}"
    );

    // Facts that cannot be read deny too (fail closed), naming the problem.
    let facts = ws
        .root
        .join(".lumenflow/state/software-delivery/facts/WU-042.json");
    let fact = serde_json::from_slice::<Value>(&fs::read(&facts).unwrap()).unwrap();
    assert_eq!(fact["gates"]["lint"]["status"], "failed");
    assert_eq!(fact["gates"]["test"]["status"], "not_run");
    fs::write(&facts, "{not json").unwrap();
    let damaged = tasks.complete("WU-042", &[]).unwrap_err();
    assert_eq!(damaged.code(), "POLICY_DENIED");
    assert!(
        damaged.to_string().contains("not a JSON object"),
        "{damaged}"
    );

    // Fix it in the worktree, run the gate again: the completion goes through.
    let fix = "--- /dev/null\n+++ b/LINT_OK\n@@ -0,0 +1 @@\n+ok\n";
    data(&ws.call_in_task(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": fix}),
        "WU-042",
    ));
    let passed = ws.call_in_task(
        "software-delivery:gates",
        json!({"wu_id": "WU-042", "gates": ["lint"]}),
        "WU-042",
    );
    assert_eq!(data(&passed)["all_passed"], true);
    tasks
        .complete("WU-042", &[])
        .unwrap_or_else(|e| panic!("complete: {e}"));
}

/// Finding 4 (walk H): gates run in task T on another work unit's worktree are refused (they
/// would file T's completion facts from code that is not T's), and a run where no gate is
/// configured is not `all_passed`. KRN-08 (completion rules read only the task's own facts).
#[test]
fn gates_for_a_task_run_only_on_its_own_work_unit_and_nothing_run_is_not_a_pass() {
    let gates = "software_delivery:\n  gates:\n    lint: {command: \"test -f LINT_OK\", timeout_seconds: 10}\n";
    let ws = Ws::new(gates);
    ws.claim();
    data(&ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-043", "lane": "Content: Site Comms"}),
    ));
    let spec = format!(
        "id: WU-042\nworkspace_id: ws-test\nlane_id: site-comms\ndomain: software-delivery\ntitle: Site comms\ndescription: Update the site\nacceptance:\n  - gates pass\ndeclared_scopes:\n{}risk: low\ntype: feature\npriority: P1\ncreated: 2026-04-20\n",
        SCOPES.replace("      - ", "  - ")
    );
    let _tasks = ws.active_task(&spec);
    let other = ws.call_in_task(
        "software-delivery:gates",
        json!({"wu_id": "WU-043", "gates": ["lint"]}),
        "WU-042",
    );
    assert_eq!(code(&other), "TASK_WU_MISMATCH");
    assert_receipt(&ws, &other, "TASK_WU_MISMATCH");
    assert!(!ws
        .root
        .join(".lumenflow/state/software-delivery/facts/WU-042.json")
        .exists());

    // Nothing configured among the requested gates: success, but not a pass.
    let none = data(&ws.call(
        "software-delivery:gates",
        json!({"wu_id": "WU-043", "gates": ["format", "test"]}),
    ));
    assert_eq!(none["all_passed"], false);
    assert_eq!(none["gates_run"], 0);
    assert!(
        none["note"].as_str().unwrap().starts_with("no gate ran"),
        "{none}"
    );
}

// ---------------------------------------------------------------------------------------------
// pr_prepare and wu_recover: operator consent

#[test]
fn pr_prepare_needs_the_pr_create_approval_and_a_grant_runs_it_once() {
    // KRN-09: required_approvals [software-delivery:pr-create], single use.
    let ws = Ws::new(GATES);
    let claim = ws.claim();
    data(&ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_README}),
    ));
    let input =
        json!({"wu_id": "WU-042", "title": "Say hello to the world", "body": "Closes WU-042."});
    let asked = ws.call("software-delivery:pr_prepare", input.clone());
    assert_eq!(code(&asked), "APPROVAL_REQUIRED");
    assert_receipt(&ws, &asked, "APPROVAL_REQUIRED");
    let approval = asked.approval_id.clone().expect("a pending approval");
    assert!(!ws
        .root
        .join(".lumenflow/state/software-delivery/prs")
        .exists());

    ws.grant(&approval);
    let out = ws.call("software-delivery:pr_prepare", input.clone());
    let d = data(&out);
    assert_eq!(out.approval_id.as_deref(), Some(approval.as_str()));
    assert_eq!(d["committed"], true);
    assert_eq!(
        (
            d["files_changed"].as_u64(),
            d["insertions"].as_u64(),
            d["deletions"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(d["base_commit"], claim["base_commit"]);
    let diff = fs::read_to_string(ws.root.join(d["diff_path"].as_str().unwrap())).unwrap();
    assert!(
        diff.contains("+hello, world") && diff.contains("-hello"),
        "{diff}"
    );
    let description =
        fs::read_to_string(ws.root.join(d["description_path"].as_str().unwrap())).unwrap();
    assert!(description.starts_with("# Say hello to the world\n\nCloses WU-042."));
    // The commit is on the work unit's branch, with the pack's fixed identity.
    let wt = ws.worktree();
    assert_eq!(
        git(&wt, &["log", "-1", "--format=%an <%ae>|%s"]),
        "LumenFlow <lumenflow@localhost>|WU-042: Say hello to the world"
    );
    assert_eq!(
        git(&wt, &["rev-parse", "HEAD"]),
        d["head_commit"].as_str().unwrap()
    );
    assert_eq!(
        git(&ws.root, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "main"
    );

    // The branch now carries the change: git:diff against the base shows it, against HEAD not.
    let vs_base = data(&ws.call("git:diff", json!({"wu_id": "WU-042", "against": "base"})));
    assert!(vs_base["diff"].as_str().unwrap().contains("+hello, world"));
    let vs_head = data(&ws.call("git:diff", json!({"wu_id": "WU-042"})));
    assert_eq!(vs_head["diff"], "");

    // The grant was consumed: the same call asks again.
    let again = ws.call("software-delivery:pr_prepare", input);
    assert_eq!(code(&again), "APPROVAL_REQUIRED");
    assert_ne!(again.approval_id.as_deref(), Some(approval.as_str()));
}

/// Finding 5 (walk H): a command run from inside a work unit's worktree (which holds a
/// checked-out `workspace.yaml`) finds the owning workspace, not a second empty one; a
/// runtime's `.lumenflow/` always gets its `.gitignore`; and `pr_prepare` never stages a
/// `.lumenflow/` folder, even one the repository's `.gitignore` does not ignore. KRN-12/13
/// (one evidence store and log per workspace).
#[test]
fn a_worktree_is_never_a_workspace_of_its_own_and_lumenflow_is_never_committed() {
    let ws = Ws::new(GATES);
    ws.claim();
    let wt = ws.worktree();
    assert!(wt.join("workspace.yaml").is_file());
    fs::create_dir_all(wt.join("src/deep")).unwrap();
    for start in [wt.clone(), wt.join("src/deep")] {
        assert_eq!(
            lumenflow_kernel::workspace::find_workspace_root(&start).as_deref(),
            Some(ws.root.as_path()),
            "from {start:?}"
        );
    }
    // A plain repository with workspace.yaml is still its own workspace.
    assert_eq!(
        lumenflow_kernel::workspace::find_workspace_root(&ws.root).as_deref(),
        Some(ws.root.as_path())
    );
    // `Ws` never ran `init`: opening the runtime wrote the state folder's .gitignore.
    assert_eq!(
        fs::read_to_string(ws.root.join(".lumenflow/.gitignore")).unwrap(),
        "# Kernel state: logs, evidence, keys. Not for version control.\n*\n"
    );

    // A `.lumenflow/` left in the worktree (by an older runtime) that git does not ignore.
    fs::write(wt.join(".gitignore"), "worktrees/\n").unwrap();
    fs::create_dir_all(wt.join(".lumenflow/kernel")).unwrap();
    fs::write(wt.join(".lumenflow/kernel/events.jsonl"), "{}\n").unwrap();
    fs::create_dir_all(wt.join("src/.lumenflow")).unwrap();
    fs::write(wt.join("src/.lumenflow/x"), "x\n").unwrap();
    data(&ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_README}),
    ));
    let input = json!({"wu_id": "WU-042", "title": "Hello"});
    let asked = ws.call("software-delivery:pr_prepare", input.clone());
    ws.grant(&asked.approval_id.clone().expect("a pending approval"));
    let d = data(&ws.call("software-delivery:pr_prepare", input));
    assert_eq!(d["committed"], true);
    let files = git(&wt, &["show", "--name-only", "--format=", "HEAD"]);
    assert_eq!(files, ".gitignore\nREADME.md", "{files}");
    assert!(git(&wt, &["status", "--porcelain"]).contains(".lumenflow/"));
}

/// All files under `dir`, read (for "is this secret stored anywhere").
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).contains(needle) {
            found.push(path);
        }
    }
    found
}

/// Finding 2 (walk H): `git:diff` leaves out the files `security.deny_overlays` hide (their
/// content would otherwise reach the caller and the evidence store), says which, and still
/// shows everything else; on the workspace and on a worktree `against: base`. KRN-11 (deny
/// overlays), KRN-12 (what the evidence store keeps).
#[test]
fn git_diff_leaves_out_files_the_deny_overlays_hide() {
    let yaml = workspace_yaml(GATES).replace(
        "memory_namespace: m",
        "  deny_overlays: [\".env\", \"**/*.pem\"]\nmemory_namespace: m",
    );
    let ws = Ws::with_yaml(&yaml);
    fs::write(ws.root.join(".env"), "API_KEY=old\n").unwrap();
    fs::create_dir_all(ws.root.join("deploy")).unwrap();
    fs::write(ws.root.join("deploy/key.pem"), "-----BEGIN-----\n").unwrap();
    git(&ws.root, &["add", "-f", ".env", "deploy/key.pem"]);
    git(&ws.root, &["commit", "--quiet", "-m", "secrets"]);
    ws.claim();

    fs::write(ws.root.join(".env"), "API_KEY=sk-live-NEW-SECRET\n").unwrap();
    fs::write(
        ws.root.join("deploy/key.pem"),
        "-----BEGIN-----\nPEM-SECRET\n",
    )
    .unwrap();
    fs::write(ws.root.join("README.md"), "# site\n\nvisible change\n").unwrap();
    let d = data(&ws.call("git:diff", json!({})));
    let diff = d["diff"].as_str().unwrap();
    assert!(diff.contains("+visible change"), "{diff}");
    assert!(
        !diff.contains("NEW-SECRET") && !diff.contains("PEM-SECRET"),
        "{diff}"
    );
    assert_eq!(
        d["hidden_by_deny_overlays"],
        json!([".env", "deploy/key.pem"])
    );

    // In the worktree, committed on the branch and against the base.
    let wt = ws.worktree();
    fs::write(wt.join(".env"), "API_KEY=sk-live-WT-SECRET\n").unwrap();
    fs::write(wt.join("deploy/key.pem"), "WT-PEM-SECRET\n").unwrap();
    git(&wt, &["commit", "--quiet", "-am", "wt secrets"]);
    fs::write(wt.join("README.md"), "# site\n\nworktree change\n").unwrap();
    let d = data(&ws.call("git:diff", json!({"wu_id": "WU-042", "against": "base"})));
    let diff = d["diff"].as_str().unwrap();
    assert!(diff.contains("+worktree change"), "{diff}");
    assert!(
        !diff.contains("WT-SECRET") && !diff.contains("WT-PEM-SECRET"),
        "{diff}"
    );
    assert_eq!(
        d["hidden_by_deny_overlays"],
        json!([".env", "deploy/key.pem"])
    );

    for secret in ["NEW-SECRET", "PEM-SECRET", "WT-SECRET"] {
        assert_eq!(
            files_containing(&ws.root.join(".lumenflow"), secret),
            Vec::<PathBuf>::new(),
            "{secret} stored"
        );
    }
}

/// Finding 6 (walk H): ids that differ only in case name the same branch and worktree, so the
/// second claim is `WU_ALREADY_CLAIMED` naming the first, on any lane (INV-08 idempotency is
/// for the same id only).
#[test]
fn work_unit_ids_differing_only_in_case_never_share_a_worktree() {
    let ws = Ws::new(GATES);
    ws.claim();
    for (id, lane) in [("Wu-042", "Content: Site Comms"), ("wu-042", "site-comms")] {
        let out = ws.call(
            "software-delivery:wu_claim",
            json!({"wu_id": id, "lane": lane}),
        );
        assert_eq!(code(&out), "WU_ALREADY_CLAIMED", "{id}");
        let message = &out.output.error.as_ref().unwrap().message;
        assert!(message.contains("`WU-042`"), "{message}");
        assert_receipt(&ws, &out, "WU_ALREADY_CLAIMED");
    }
    let claims: Vec<_> = fs::read_dir(ws.root.join(".lumenflow/state/software-delivery/claims"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(claims, vec!["WU-042.json".to_string()]);
    // The same id still answers the same claim.
    assert_eq!(ws.claim()["created"], false);
}

/// Finding 7 (walk H): a worktree switched to another branch by hand is refused by every tool
/// on the work unit (pr_prepare never commits to the other branch), and wu_recover switches a
/// clean worktree back. KRN-09 (the approved call still refuses rather than commit elsewhere).
#[test]
fn a_worktree_off_its_branch_is_refused_and_recovered() {
    let ws = Ws::new(GATES);
    ws.claim();
    let wt = ws.worktree();
    git(&wt, &["checkout", "--quiet", "-b", "experiment"]);
    let patch = ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_README}),
    );
    assert_eq!(code(&patch), "WORKTREE_MISSING");
    let message = &patch.output.error.as_ref().unwrap().message;
    assert!(
        message.contains("is on `experiment`, not on its branch `lane/content-site-comms/wu-042`"),
        "{message}"
    );
    assert_eq!(
        code(&ws.call("software-delivery:gates", json!({"wu_id": "WU-042"}))),
        "WORKTREE_MISSING"
    );
    fs::write(wt.join("README.md"), "# site\n\nby hand\n").unwrap();
    let input = json!({"wu_id": "WU-042", "title": "t"});
    let asked = ws.call("software-delivery:pr_prepare", input.clone());
    ws.grant(&asked.approval_id.clone().unwrap());
    assert_eq!(
        code(&ws.call("software-delivery:pr_prepare", input)),
        "WORKTREE_MISSING"
    );
    assert_eq!(
        git(&ws.root, &["rev-parse", "experiment"]),
        git(&ws.root, &["rev-parse", "main"]),
        "nothing committed on the other branch"
    );

    // Dirty: the operator decides. Clean: switched back.
    let recover = json!({"wu_id": "WU-042"});
    let asked = ws.call("software-delivery:wu_recover", recover.clone());
    ws.grant(&asked.approval_id.clone().unwrap());
    assert_eq!(
        code(&ws.call("software-delivery:wu_recover", recover.clone())),
        "RECOVERY_NEEDS_OPERATOR"
    );
    git(&wt, &["checkout", "--quiet", "README.md"]);
    let asked = ws.call("software-delivery:wu_recover", recover.clone());
    ws.grant(&asked.approval_id.clone().unwrap());
    let d = data(&ws.call("software-delivery:wu_recover", recover));
    assert!(
        d["actions"][0]
            .as_str()
            .unwrap()
            .starts_with("switched the worktree"),
        "{d}"
    );
    data(&ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_README}),
    ));
}

#[test]
fn wu_recover_never_runs_without_operator_consent() {
    let ws = Ws::new(GATES);
    ws.claim();
    // A claim gone bad: the worktree was locked, then its folder deleted behind git's back.
    git(
        &ws.root,
        &["worktree", "lock", "worktrees/content-site-comms-wu-042"],
    );
    fs::remove_dir_all(ws.worktree()).unwrap();
    let broken = ws.call("software-delivery:gates", json!({"wu_id": "WU-042"}));
    assert_eq!(code(&broken), "WORKTREE_MISSING");
    let details = broken
        .output
        .error
        .as_ref()
        .unwrap()
        .details
        .clone()
        .unwrap();
    assert_eq!(details["cleanup_status"], "needs_recovery");
    assert!(details["recovery_action"]
        .as_str()
        .unwrap()
        .contains("software-delivery:wu_recover"));

    let input = json!({"wu_id": "WU-042"});
    let asked = ws.call("software-delivery:wu_recover", input.clone());
    assert_eq!(code(&asked), "APPROVAL_REQUIRED");
    assert_receipt(&ws, &asked, "APPROVAL_REQUIRED");
    assert!(!ws.worktree().exists(), "nothing ran without consent");

    ws.grant(asked.approval_id.as_deref().unwrap());
    let out = ws.call("software-delivery:wu_recover", input.clone());
    let d = data(&out);
    let actions: Vec<&str> = d["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        actions.iter().any(|a| a.starts_with("unlocked")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a.starts_with("re-added")),
        "{actions:?}"
    );
    assert_eq!(
        git(&ws.worktree(), &["rev-parse", "--abbrev-ref", "HEAD"]),
        "lane/content-site-comms/wu-042"
    );
    assert!(ws.worktree().join("README.md").is_file());
    assert_eq!(ws.claim()["created"], false);
    // Single use again.
    assert_eq!(
        code(&ws.call("software-delivery:wu_recover", input)),
        "APPROVAL_REQUIRED"
    );
}

#[test]
fn a_tool_output_failure_is_never_a_panic() {
    // Every tool answers a claimless workspace with a coded failure.
    let ws = Ws::new(GATES);
    for (tool, input) in [
        ("software-delivery:gates", json!({"wu_id": "WU-1"})),
        ("git:status", json!({"wu_id": "WU-1"})),
        ("git:diff", json!({"wu_id": "WU-1", "against": "base"})),
    ] {
        let out: ToolOutput = ws.call(tool, input).output;
        assert_eq!(out.error_code(), Some("WU_NOT_CLAIMED"), "{tool}");
    }
    let out = ws.call("git:diff", json!({"against": "base"}));
    assert_eq!(code(&out), "INVALID_INPUT");
    let _ = software_delivery::tools();
}

/// What a patch writes is decided by its content, so every file it names is checked: against the
/// call's write scopes (a task may open single files of a worktree; the whole worktree folder
/// used to be required, so such a task could apply nothing) and against the workspace's deny
/// overlays (a patch could create `deploy/key.pem` although the sandbox hides `**/*.pem`).
#[test]
fn each_file_a_patch_writes_is_held_to_the_scopes_and_the_deny_overlays() {
    let yaml = workspace_yaml(GATES).replace(
        "memory_namespace: m",
        "  deny_overlays: [\"**/*.pem\"]\nmemory_namespace: m",
    );
    let ws = Ws::with_yaml(&yaml);
    ws.claim();
    let wt = "worktrees/content-site-comms-wu-042";
    let key = "diff --git a/deploy/key.pem b/deploy/key.pem\nnew file mode 100644\n--- /dev/null\n+++ b/deploy/key.pem\n@@ -0,0 +1 @@\n+-----BEGIN PRIVATE KEY-----\n";
    let out = ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": key}),
    );
    assert_eq!(code(&out), "SCOPE_DENIED", "{:?}", out.output.error);
    assert!(
        out.output
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("deny_overlays"),
        "{:?}",
        out.output.error
    );
    assert_receipt(&ws, &out, "SCOPE_DENIED");
    assert!(!ws.root.join(wt).join("deploy/key.pem").exists());

    // A task that opens only the worktree's README: that file applies, a new file does not.
    let spec = "id: WU-042\nworkspace_id: ws-test\nlane_id: site-comms\ndomain: software-delivery\ntitle: Site comms\ndescription: README only\nacceptance:\n  - README says hello, world\ndeclared_scopes:\n  - {type: path, pattern: \"**\", access: read}\n  - {type: path, pattern: \"worktrees/*/README.md\", access: write}\nrisk: low\ntype: feature\npriority: P1\ncreated: 2026-04-20\n";
    ws.active_task(spec);
    let out = ws.call_in_task(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_NEW_FILE}),
        "WU-042",
    );
    assert_eq!(code(&out), "SCOPE_DENIED", "{:?}", out.output.error);
    assert!(!ws.root.join(wt).join("src/page.md").exists());
    let out = ws.call_in_task(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_README}),
        "WU-042",
    );
    assert!(out.output.success, "{:?}", out.output);
    assert_eq!(
        fs::read_to_string(ws.root.join(wt).join("README.md")).unwrap(),
        "# site\n\nhello, world\n"
    );
}

#[test]
fn declared_paths_are_checked_by_the_kernel_and_held_by_the_tool() {
    let ws = Ws::new(GATES);
    ws.claim();
    let wt = "worktrees/content-site-comms-wu-042";

    // A declared write outside the write scopes (a production secret at the workspace root) is
    // refused by the dispatch path before the tool runs, with a receipt and a path decision.
    let out = ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_NEW_FILE, "paths": ["secrets/production.env"]}),
    );
    assert_eq!(
        out.output.error_code(),
        Some("SCOPE_DENIED"),
        "{:?}",
        out.output
    );
    assert_eq!(out.policy_decisions[0].policy_id, "kernel.scope.path");
    assert!(!ws.root.join(wt).join("src/page.md").exists());

    // A declaration that understates what the patch writes is refused by the tool.
    let out = ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": format!("{PATCH_README}{PATCH_NEW_FILE}"),
               "paths": [format!("{wt}/README.md")]}),
    );
    assert_eq!(
        out.output.error_code(),
        Some("PATCH_PATHS_MISMATCH"),
        "{:?}",
        out.output
    );
    assert!(!ws.root.join(wt).join("src/page.md").exists());

    // An exact declaration applies.
    let out = ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": format!("{PATCH_README}{PATCH_NEW_FILE}"),
               "paths": [format!("{wt}/README.md"), format!("{wt}/src/page.md")]}),
    );
    assert!(out.output.success, "{:?}", out.output);
    assert!(ws.root.join(wt).join("src/page.md").is_file());
}

/// Finding 9 (walk H): a damaged claim record names `wu_recover`, and `wu_recover` (after its
/// approval) rebuilds the record from the branch git holds, instead of failing the same way and
/// using up the approval. KRN-09 (approvals), Q26 (state under the pack's folder).
#[test]
fn wu_recover_rebuilds_a_damaged_or_truncated_claim_record_from_git() {
    let ws = Ws::new(GATES);
    let first = ws.claim();
    let record = ws
        .root
        .join(".lumenflow/state/software-delivery/claims/WU-042.json");
    for damage in [r#"{"wu_id":"WU-042"}"#, r#"{"wu_id":"WU-042","#] {
        fs::write(&record, damage).unwrap();
        let broken = ws.call("software-delivery:gates", json!({"wu_id": "WU-042"}));
        assert_eq!(code(&broken), "CLAIM_RECORD_DAMAGED", "{damage}");
        let error = broken.output.error.as_ref().unwrap();
        // The hint names wu_recover and the manual way out, so it never loops.
        assert!(error.message.contains("wu_recover"), "{}", error.message);
        assert!(
            error.message.contains("delete the record"),
            "{}",
            error.message
        );
        assert!(error.details.as_ref().unwrap()["recovery_action"]
            .as_str()
            .unwrap()
            .contains("software-delivery:wu_recover"));

        let input = json!({"wu_id": "WU-042"});
        let asked = ws.call("software-delivery:wu_recover", input.clone());
        assert_eq!(code(&asked), "APPROVAL_REQUIRED");
        ws.grant(asked.approval_id.as_deref().unwrap());
        let d = data(&ws.call("software-delivery:wu_recover", input));
        let actions = d["actions"].as_array().unwrap();
        assert!(
            actions.iter().any(|a| a
                .as_str()
                .unwrap()
                .starts_with("rebuilt the damaged claim record")),
            "{actions:?}"
        );
        assert_eq!(d["branch"], "lane/content-site-comms/wu-042");
        // The record is whole again, with the lane's title and the original base.
        let rebuilt: Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
        assert_eq!(rebuilt["lane"], "Content: Site Comms");
        assert_eq!(rebuilt["base_commit"], first["base_commit"]);
        assert_eq!(rebuilt["base"], "main");
        data(&ws.call("git:status", json!({"wu_id": "WU-042"})));
        assert_eq!(ws.claim()["created"], false);
    }
}

/// Finding 9: when git holds no branch of the work unit, `wu_recover` cannot rebuild the record
/// and says what to do by hand; following that advice works.
#[test]
fn a_damaged_claim_record_without_a_branch_gets_manual_steps_that_work() {
    let ws = Ws::new(GATES);
    let record = ws
        .root
        .join(".lumenflow/state/software-delivery/claims/WU-042.json");
    fs::create_dir_all(record.parent().unwrap()).unwrap();
    fs::write(&record, "{\"wu_id\":").unwrap();
    let input = json!({"wu_id": "WU-042"});
    let asked = ws.call("software-delivery:wu_recover", input.clone());
    ws.grant(asked.approval_id.as_deref().unwrap());
    let out = ws.call("software-delivery:wu_recover", input);
    assert_eq!(code(&out), "RECOVERY_NEEDS_OPERATOR");
    let message = &out.output.error.as_ref().unwrap().message;
    assert!(
        message.contains("delete `.lumenflow/state/software-delivery/claims/WU-042.json`")
            && message.contains("software-delivery:wu_claim"),
        "{message}"
    );
    assert!(
        !message.contains("run software-delivery:wu_recover"),
        "{message}"
    );
    fs::remove_file(&record).unwrap();
    assert_eq!(ws.claim()["created"], true);
}

/// Finding 10 (walk H): the claim's answer says who holds it and since when, and says so when
/// the caller is someone else; a branch left by an abandoned claim is reported with its
/// commits. INV-08 (the claim's sync response).
#[test]
fn a_claim_names_its_holder_and_an_adopted_branch_with_its_commits() {
    let ws = Ws::new(GATES);
    // An abandoned claim's branch, two commits ahead of main, whose record was deleted.
    git(&ws.root, &["branch", "lane/content-site-comms/wu-042"]);
    let wt = ws.root.join("old");
    git(
        &ws.root,
        &[
            "worktree",
            "add",
            "--quiet",
            "old",
            "lane/content-site-comms/wu-042",
        ],
    );
    for n in ["1", "2"] {
        fs::write(wt.join(format!("old{n}.txt")), n).unwrap();
        git(&wt, &["add", "."]);
        git(&wt, &["commit", "--quiet", "-m", n]);
    }
    git(&ws.root, &["worktree", "remove", "old"]);

    let first = ws.claim();
    assert_eq!(first["created"], true);
    assert_eq!(first["adopted_existing_branch"], true);
    assert_eq!(first["commits_ahead"], 2);
    assert_eq!(first["claimed_by"], "local");
    assert!(first["claimed_at"].as_str().unwrap().starts_with("20"));
    assert!(first.get("note").is_none(), "{first}");

    // Another agent claiming the same work unit on the same lane is told it shares the claim.
    let mut req = CallRequest::local(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-042", "lane": "Content: Site Comms"}),
    );
    req.caller = "agent-b".into();
    let second = data(&ws.runtime.dispatch(req));
    assert_eq!(second["created"], false);
    assert_eq!(second["claimed_by"], "local");
    assert_eq!(second["claimed_at"], first["claimed_at"]);
    assert_eq!(second["adopted_existing_branch"], false);
    let note = second["note"].as_str().unwrap();
    assert!(
        note.contains("`local`") && note.contains("`agent-b`"),
        "{note}"
    );

    // A fresh branch adopts nothing.
    let other = data(&ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-043", "lane": "Content: Site Comms"}),
    ));
    assert_eq!(other["adopted_existing_branch"], false);
    assert!(other.get("commits_ahead").is_none(), "{other}");
}

/// Finding 11 (walk H): on a detached HEAD with no `software_delivery.base_branch`, a claim is
/// refused naming the key to set (no base `HEAD` recorded); finding 14: a base that names
/// nothing in a repository with commits is `BASE_NOT_FOUND`, not `REPO_HAS_NO_COMMITS`.
#[test]
fn a_claim_needs_a_real_base_branch() {
    let ws = Ws::new(GATES);
    git(&ws.root, &["checkout", "--quiet", "--detach", "HEAD"]);
    let out = ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-042", "lane": "Content: Site Comms"}),
    );
    assert_eq!(code(&out), "BASE_BRANCH_REQUIRED");
    assert_receipt(&ws, &out, "BASE_BRANCH_REQUIRED");
    let message = &out.output.error.as_ref().unwrap().message;
    assert!(
        message.contains("software_delivery.base_branch"),
        "{message}"
    );
    assert!(!ws.worktree().exists());
    assert!(!ws
        .root
        .join(".lumenflow/state/software-delivery/claims/WU-042.json")
        .exists());

    let ws = Ws::new(&format!("{GATES}  base_branch: develop\n"));
    let out = ws.call(
        "software-delivery:wu_claim",
        json!({"wu_id": "WU-042", "lane": "Content: Site Comms"}),
    );
    assert_eq!(code(&out), "BASE_NOT_FOUND");
    assert!(out
        .output
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("`develop`"));
}

/// `config set` on this pack's keys, as the CLI calls it (KRN-06, PAK-02).
fn config_set(ws: &Ws, key: &str, raw: &str) -> Result<Value, String> {
    use lumenflow_kernel::config;
    let doc = lumenflow_kernel::workspace::read_workspace(&ws.root).unwrap();
    let loader =
        lumenflow_kernel::loader::PackLoader::for_workspace(&doc, lumenflow_packs::builtin_packs());
    let owners = config::config_owners(&doc, &loader);
    config::set(&doc, key, raw, &owners)
        .map(|o| o.value)
        .map_err(|e| format!("{}: {e}", e.code()))
}

/// Finding 14 (walk H): `config set` types a value by this pack's schema (the placeholder gate
/// command `true` is stored as the string `true`), and refuses at set time the base branch the
/// schema refuses (`--orphan`), leaving workspace.yaml untouched. KRN-06, PAK-02.
#[test]
fn config_set_follows_the_pack_schema_for_gate_commands_and_the_base_branch() {
    let ws = Ws::new(GATES);
    assert_eq!(
        config_set(&ws, "software_delivery.gates.format.command", "true").unwrap(),
        json!("true")
    );
    assert_eq!(
        config_set(&ws, "software_delivery.gates.format.timeout_seconds", "30").unwrap(),
        json!(30)
    );
    assert_eq!(
        config_set(&ws, "software_delivery.base_branch", "2024").unwrap(),
        json!("2024")
    );
    let doc = lumenflow_kernel::workspace::read_workspace(&ws.root).unwrap();
    let block = lumenflow_kernel::workspace::root_value(&doc, "software_delivery").unwrap();
    assert_eq!(block["gates"]["format"]["command"], "true");
    assert_eq!(block["base_branch"], "2024");

    let before = fs::read_to_string(ws.root.join("workspace.yaml")).unwrap();
    for bad in ["--orphan", "-b", "main branch", "tab\there"] {
        let err = config_set(&ws, "software_delivery.base_branch", bad).unwrap_err();
        assert!(err.starts_with("CONFIG_VALUE_INVALID"), "{bad}: {err}");
        assert!(err.contains("base_branch"), "{bad}: {err}");
    }
    assert_eq!(
        fs::read_to_string(ws.root.join("workspace.yaml")).unwrap(),
        before
    );
    // A claim with the gate command `true` stored as a string runs it.
    config_set(&ws, "software_delivery.base_branch", "main").unwrap();
    let mut ws = ws;
    ws.runtime = open(
        &ws.root,
        lumenflow_packs::builtin_packs(),
        &lumenflow_packs::builtin_tools(),
        RuntimeOptions::default(),
    )
    .unwrap_or_else(|e| panic!("open: {e}"));
    ws.claim();
}

/// Finding 3 (walk H): an approval binds the input only. With `expect_tree` (the tree the
/// approver reviewed, from git:status) in the input, a patch applied after the grant makes
/// pr_prepare refuse with CONTENT_CHANGED and commit nothing; the approved tree itself is
/// committed, and the answer names its tree and diffstat. KRN-09 (approvals), INV-05/07 (the
/// call is the audit record).
#[test]
fn pr_prepare_with_expect_tree_commits_only_the_reviewed_content() {
    let ws = Ws::new(GATES);
    ws.claim();
    data(&ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_README}),
    ));
    let objects_before = git(&ws.root, &["count-objects"]);
    let index = ws
        .root
        .join(".git/worktrees/content-site-comms-wu-042/index");
    let index_before = fs::read(&index).unwrap();
    let status = data(&ws.call("git:status", json!({"wu_id": "WU-042"})));
    let reviewed = status["tree"].as_str().unwrap().to_string();
    // Reading the tree id changed neither the repository's objects nor the worktree's index.
    assert_eq!(git(&ws.root, &["count-objects"]), objects_before);
    assert_eq!(fs::read(&index).unwrap(), index_before);
    // The workspace's own status has no work-unit tree.
    assert!(data(&ws.call("git:status", json!({})))
        .get("tree")
        .is_none());

    let input = json!({"wu_id": "WU-042", "title": "hello", "expect_tree": reviewed});
    let asked = ws.call("software-delivery:pr_prepare", input.clone());
    assert_eq!(code(&asked), "APPROVAL_REQUIRED");
    ws.grant(asked.approval_id.as_deref().unwrap());
    // A change after the grant.
    data(&ws.call(
        "software-delivery:apply_patch",
        json!({"wu_id": "WU-042", "patch": PATCH_NEW_FILE}),
    ));
    let head_before = git(&ws.worktree(), &["rev-parse", "HEAD"]);
    let refused = ws.call("software-delivery:pr_prepare", input);
    assert_eq!(code(&refused), "CONTENT_CHANGED");
    assert_receipt(&ws, &refused, "CONTENT_CHANGED");
    assert!(refused
        .output
        .error
        .as_ref()
        .unwrap()
        .message
        .contains(&reviewed));
    assert_eq!(git(&ws.worktree(), &["rev-parse", "HEAD"]), head_before);

    // Reviewed again: the current tree is committed, and the answer names it.
    let now = data(&ws.call("git:status", json!({"wu_id": "WU-042"})))["tree"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(now, reviewed);
    let input = json!({"wu_id": "WU-042", "title": "hello", "expect_tree": now});
    let asked = ws.call("software-delivery:pr_prepare", input.clone());
    ws.grant(asked.approval_id.as_deref().unwrap());
    let d = data(&ws.call("software-delivery:pr_prepare", input));
    assert_eq!(d["committed"], true);
    assert_eq!(d["tree"], now);
    assert_eq!(git(&ws.worktree(), &["rev-parse", "HEAD^{tree}"]), now);
    let diffstat = d["diffstat"].as_str().unwrap();
    assert!(
        diffstat.contains("README.md") && diffstat.contains("src/page.md"),
        "{diffstat}"
    );
    let meta: Value = serde_json::from_slice(
        &fs::read(
            ws.root
                .join(".lumenflow/state/software-delivery/prs/WU-042/pr.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["tree"], now);
}

// walk-H recheck N1: a worktree's `.git` file pointed at a gitdir of someone's making (with a
// clean filter in its config) would make the next git call of a read tool run that filter,
// unsandboxed. Every work-unit tool refuses such a worktree before git reads it.
#[test]
fn a_worktree_whose_git_file_points_elsewhere_is_refused() {
    let ws = Ws::new("");
    ws.claim();
    let dot_git = ws.worktree().join(".git");
    let fake = ws.root.join("fake-gitdir");
    fs::create_dir_all(&fake).unwrap();
    fs::write(&dot_git, format!("gitdir: {}\n", fake.display())).unwrap();
    let out = ws.call("software-delivery:gates", json!({"wu_id": "WU-042"}));
    assert_eq!(code(&out), "WORKTREE_MISSING", "{:?}", out.output.error);
}
