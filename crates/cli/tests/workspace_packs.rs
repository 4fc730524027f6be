//! A hand-written workspace pack with Python script tools, end to end with the real binary:
//! pins that hold against edits made in place (KRN-04), `pack validate` held to the pin, the
//! sandbox confining a glob scope whatever the input field (KRN-07, KRN-11), `required_env`,
//! stderr limits, refusals that say why (KRN-10), a denial a caller hears about (KRN-09), the
//! lint on the kernel's folder (KRN-02) and git sources (KRN-04).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lumenflow")
}

fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("OPS_TEAM")
        .env_remove("LUMENFLOW_ENV");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run lumenflow")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    run_env(dir, args, &[])
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "`lumenflow {}` failed:\n{}",
        args.join(" "),
        text(&out)
    );
    out
}

/// The JSON error of a command expected to fail.
fn refusal(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run_env(dir, &all, env);
    assert!(
        !out.status.success(),
        "`lumenflow {}` should fail:\n{}",
        args.join(" "),
        text(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}):\n{}", text(&out)))
}

fn call_json(dir: &Path, tool: &str, input: &str, env: &[(&str, &str)]) -> Value {
    let out = run_env(
        dir,
        &["tool", "call", tool, "--input", input, "--json"],
        env,
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}):\n{}", text(&out)))
}

fn sandbox_available() -> bool {
    let found = Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("NOTICE: bubblewrap is not installed; .ci/run installs it. Skipping the sandboxed calls.");
    }
    found
}

const MANIFEST: &str = r#"id: ops
version: 0.1.0
task_types: [misc]
tools:
  - name: read-any
    entry: bin/read.py
    required_scopes: [{type: path, pattern: "notes/**/*.md", access: read}]
    input_schema:
      type: object
      properties: {file: {type: string}}
      required: [file]
    output_schema:
      type: object
      properties: {text: {type: string}}
      required: [text]
  - name: chatty
    entry: bin/chatty.py
    permission: write
    required_env: [OPS_TEAM]
    required_scopes: [{type: path, pattern: "out/**", access: write}]
    input_schema: &chatty_in
      type: object
      properties:
        path: {type: string}
        log_bytes: {type: integer, minimum: 0}
        exit: {type: integer}
      required: [path]
    output_schema: &chatty_out
      type: object
      properties: {written: {type: string}, team: {type: string}}
      required: [written]
  - name: archive
    entry: bin/chatty.py
    permission: write
    required_env: [OPS_TEAM]
    required_scopes: [{type: path, pattern: "out/**", access: write}]
    input_schema: *chatty_in
    output_schema: *chatty_out
  - name: fetch
    entry: bin/read.py
    required_scopes: [{type: network, posture: allowlist, allowlist_entries: ["api.example.com:443"]}]
    input_schema:
      type: object
      properties: {url: {type: string, enum: ["https://api.example.com/v1/x"]}}
      required: [url]
policies:
  - id: ops.archive-needs-a-person
    trigger: on_tool_request
    decision: approval_required
    reason: archiving needs a person
    when: {tool: archive}
"#;

const READ_PY: &str = r#"import json, os, sys
req = json.load(sys.stdin)
inp = req["input"]
if "file" not in inp:
    print(json.dumps({"success": True, "data": {"text": ""}}))
    sys.exit(0)
try:
    with open(os.path.join(req["cwd"], inp["file"])) as f:
        text = f.read()
except OSError as e:
    print(json.dumps({"success": False, "error": {"code": "READ_FAILED", "message": str(e)}}))
    sys.exit(0)
print(json.dumps({"success": True, "data": {"text": text}}))
"#;

const CHATTY_PY: &str = r#"import json, os, sys
req = json.load(sys.stdin)
inp = req["input"]
path = os.path.join(req["cwd"], inp["path"])
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "a") as f:
    f.write("line\n")
n = inp.get("log_bytes", 0)
while n > 0:
    sys.stderr.write("d" * min(n, 65536))
    n -= 65536
sys.stderr.flush()
if inp.get("exit"):
    sys.stderr.write("something broke\n")
    sys.exit(inp["exit"])
print(json.dumps({"success": True, "data": {"written": inp["path"], "team": os.environ.get("OPS_TEAM", "")}}))
"#;

/// A fresh workspace with the `ops` pack written into `packs/ops` (not yet pinned).
fn workspace_with_pack() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let ws = dir.path();
    ok(ws, &["init"]);
    let pack = ws.join("packs/ops");
    std::fs::create_dir_all(pack.join("bin")).expect("mkdir");
    std::fs::write(pack.join("manifest.yaml"), MANIFEST).expect("manifest");
    std::fs::write(pack.join("bin/read.py"), READ_PY).expect("read.py");
    std::fs::write(pack.join("bin/chatty.py"), CHATTY_PY).expect("chatty.py");
    std::fs::create_dir_all(ws.join("notes")).expect("mkdir");
    std::fs::write(ws.join("notes/a.md"), "hello").expect("note");
    std::fs::write(ws.join("notes/creds.txt"), "db_password=hunter2").expect("creds");
    dir
}

const INSTALL: [&str; 8] = [
    "pack",
    "install",
    "--id",
    "ops",
    "--source",
    "local",
    "--version",
    "0.1.0",
];

fn installed() -> tempfile::TempDir {
    let dir = workspace_with_pack();
    ok(dir.path(), &INSTALL);
    dir
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .or_else(|| v["output"]["error"]["code"].as_str())
        .unwrap_or_default()
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .or_else(|| v["output"]["error"]["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

// KRN-04: re-running the install line on the installed folder used to re-pin whatever had been
// edited there ("Pinned (already installed, identical)"), blessing a tampered pack.
#[test]
fn an_edited_pack_is_not_re_pinned_silently() {
    let dir = installed();
    let ws = dir.path();
    let pin_before = std::fs::read_to_string(ws.join("workspace.yaml")).expect("yaml");
    let script = ws.join("packs/ops/bin/read.py");
    let mut edited = std::fs::read_to_string(&script).expect("read");
    edited.push_str("# edited\n");
    std::fs::write(&script, edited).expect("tamper");

    let err = refusal(ws, &INSTALL, &[]);
    assert_eq!(code(&err), "INTEGRITY_MISMATCH", "{err}");
    let m = message(&err);
    assert!(
        m.contains("no longer matches its pin") && m.contains("--force"),
        "{m}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("workspace.yaml")).expect("yaml"),
        pin_before,
        "the pin did not move"
    );

    // The command a user runs to diagnose it agrees with the loader.
    let out = run(ws, &["pack", "validate", "--id", "ops"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("does not match the workspace's pin"),
        "{}",
        text(&out)
    );
    let err = refusal(ws, &["tool", "list"], &[]);
    assert!(
        message(&err).contains(
            "re-pin with `lumenflow pack install --id ops --version 0.1.0 --source local --force`"
        ),
        "{err}"
    );

    // Deliberately, with --force, and the output says what the pin was.
    let mut forced = INSTALL.to_vec();
    forced.push("--force");
    let out = ok(ws, &forced);
    let shown = text(&out);
    assert!(
        shown.contains("Re-pinned") && shown.contains("was:"),
        "{shown}"
    );
    ok(ws, &["tool", "list"]);
    ok(ws, &["pack", "validate", "--id", "ops"]);
}

// KRN-04: a `dev` pin warns whenever the pack is loaded, not only at install.
#[test]
fn a_dev_pin_warns_on_every_load() {
    let dir = workspace_with_pack();
    let ws = dir.path();
    let mut dev = INSTALL.to_vec();
    dev.push("--dev");
    ok(ws, &dev);
    let out = ok(ws, &["tool", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loaded with integrity: dev (verification skipped)"),
        "{stderr}"
    );
    let err = refusal(ws, &["tool", "list"], &[("LUMENFLOW_ENV", "production")]);
    assert!(
        message(&err).contains("LUMENFLOW_ALLOW_DEV_INTEGRITY=1"),
        "{err}"
    );
}

// KRN-07, KRN-11, KRN-10: the sandboxed script tools.
#[test]
fn script_tools_are_confined_and_their_failures_say_why() {
    if !sandbox_available() {
        return;
    }
    let dir = installed();
    let ws = dir.path();
    let team = [("OPS_TEAM", "blue")];

    // The scope is `notes/**/*.md`; the input field is not named like a path, so only the
    // sandbox stands between the tool and `notes/creds.txt`.
    let v = call_json(ws, "read-any", r#"{"file":"notes/a.md"}"#, &[]);
    assert_eq!(v["output"]["data"]["text"], "hello", "{v}");
    // Hidden under `/dev/null`: it reads empty or not at all, never its content.
    let v = call_json(ws, "read-any", r#"{"file":"notes/creds.txt"}"#, &[]);
    assert!(
        !v.to_string().contains("hunter2"),
        "a file outside the glob is hidden: {v}"
    );

    // `required_env` unset: refused before the tool starts.
    let v = refusal(
        ws,
        &[
            "tool",
            "call",
            "chatty",
            "--input",
            r#"{"path":"out/a.txt"}"#,
        ],
        &[],
    );
    assert_eq!(code(&v), "REQUIRED_ENV_MISSING", "{v}");
    assert!(message(&v).contains("OPS_TEAM"), "{v}");
    assert!(!ws.join("out/a.txt").exists(), "the tool did not run");

    // A tool that logs megabytes on stderr succeeded: its log is cut, its result stands.
    let v = call_json(
        ws,
        "chatty",
        r#"{"path":"out/a.txt","log_bytes":5000000}"#,
        &team,
    );
    assert_eq!(v["output"]["success"], true, "{v}");
    assert_eq!(v["output"]["data"]["team"], "blue");

    // A non-zero exit reads as a status, not as Rust's debug output.
    let v = refusal(
        ws,
        &[
            "tool",
            "call",
            "chatty",
            "--input",
            r#"{"path":"out/a.txt","exit":3}"#,
        ],
        &team,
    );
    let m = message(&v);
    assert!(
        m.contains("exited with status 3") && m.contains("something broke"),
        "{m}"
    );
}

// KRN-10: a scope refusal says which layer took the network away, and how to grant it.
#[test]
fn a_network_refusal_names_the_layer() {
    let dir = installed();
    let ws = dir.path();
    let v = refusal(
        ws,
        &[
            "tool",
            "call",
            "fetch",
            "--input",
            r#"{"url":"https://api.example.com/v1/x"}"#,
        ],
        &[],
    );
    assert_eq!(code(&v), "SCOPE_DENIED", "{v}");
    let m = message(&v);
    assert!(
        m.contains("Why: network") && m.contains("security.allowed_scopes"),
        "{m}"
    );
}

// KRN-09: an operator's "no" reaches the caller who asks again; it is not lost behind a new
// request.
#[test]
fn asking_again_after_a_denial_names_the_denial() {
    let dir = installed();
    let ws = dir.path();
    let args = [
        "tool",
        "call",
        "archive",
        "--input",
        r#"{"path":"out/b.txt"}"#,
    ];
    let v = refusal(ws, &args, &[]);
    assert_eq!(code(&v), "APPROVAL_REQUIRED", "{v}");
    let list: Value =
        serde_json::from_slice(&ok(ws, &["approvals", "list", "--json"]).stdout).expect("json");
    let id = list["approvals"][0]["id"]
        .as_str()
        .expect("an approval")
        .to_string();
    ok(
        ws,
        &[
            "approvals",
            "deny",
            &id,
            "--reason",
            "not this week",
            "--by",
            "ops-lead",
        ],
    );
    let v = refusal(ws, &args, &[]);
    assert_eq!(code(&v), "APPROVAL_REQUIRED", "{v}");
    let m = message(&v);
    assert!(
        m.contains("denied before")
            && m.contains(&id)
            && m.contains("ops-lead")
            && m.contains("not this week"),
        "{m}"
    );
}

// KRN-02: a write scope inside `.lumenflow/` other than the pack's own state is refused by the
// lint, not first by every call.
#[test]
fn the_lint_refuses_writes_into_the_kernels_folder() {
    let dir = workspace_with_pack();
    let ws = dir.path();
    let manifest = ws.join("packs/ops/manifest.yaml");
    let bad = MANIFEST.replacen(
        r#"pattern: "out/**", access: write"#,
        r#"pattern: ".lumenflow/**", access: write"#,
        1,
    );
    std::fs::write(&manifest, &bad).expect("write");
    let out = run(ws, &["pack", "validate", "--id", "ops"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is under `.lumenflow/`, which is the kernel's"),
        "{}",
        text(&out)
    );
    let own = MANIFEST.replacen(
        r#"pattern: "out/**", access: write"#,
        r#"pattern: ".lumenflow/state/ops/**", access: write"#,
        1,
    );
    std::fs::write(&manifest, own).expect("write");
    ok(ws, &["pack", "validate", "--id", "ops"]);
}

// KRN-08: installing a pack whose rules govern every pack's tools says so.
#[test]
fn a_pack_with_workspace_wide_rules_is_announced() {
    let dir = workspace_with_pack();
    let ws = dir.path();
    let wide = MANIFEST.replace("    when: {tool: archive}\n", "");
    std::fs::write(ws.join("packs/ops/manifest.yaml"), wide).expect("write");
    let out = ok(ws, &INSTALL);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`ops.archive-needs-a-person`")
            && stderr.contains("applies to the tools of every pack"),
        "{stderr}"
    );
    // Scoped rules are not announced.
    let dir = workspace_with_pack();
    let out = ok(dir.path(), &INSTALL);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("every pack")
            && !String::from_utf8_lossy(&out.stderr).contains("matches none"),
        "{}",
        text(&out)
    );
    // A typo in `when.tool` would make a rule that never fires: install says so.
    let dir = workspace_with_pack();
    let typo = MANIFEST.replace("when: {tool: archive}", "when: {tool: archiv}");
    std::fs::write(dir.path().join("packs/ops/manifest.yaml"), typo).expect("write");
    let out = ok(dir.path(), &INSTALL);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`when.tool: archiv`, which matches none of the tools"),
        "{stderr}"
    );
}

// KRN-04: git sources name a missing revision and a missing version tag plainly, and never
// pass a revision to git as an option.
#[test]
fn git_installs_explain_revisions() {
    let src = workspace_with_pack();
    let repo = src.path().join("packs/ops");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "ops 0.1.0"]);
    git(&["tag", "v0.1.0"]);
    let url = repo.display().to_string();

    let dir = tempfile::tempdir().expect("tmp");
    let ws = dir.path();
    ok(ws, &["init"]);
    let install = |version: &str, rev: Option<&str>| {
        let args = [
            "pack",
            "install",
            "--id",
            "ops",
            "--source",
            "git",
            "--url",
            url.as_str(),
            "--version",
            version,
        ];
        let mut args = args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        if let Some(r) = rev {
            args.push(format!("--rev={r}"));
        }
        args
    };

    let err = refusal(ws, &as_refs(&install("0.1.0", Some("nope"))), &[]);
    assert!(
        message(&err).contains("revision `nope` is not a tag, branch or commit"),
        "{err}"
    );
    let err = refusal(
        ws,
        &as_refs(&install("0.1.0", Some("--upload-pack=x"))),
        &[],
    );
    assert!(
        message(&err).contains("is not a tag, branch or commit name"),
        "{err}"
    );
    let err = refusal(ws, &as_refs(&install("0.3.0", None)), &[]);
    assert_eq!(code(&err), "MANIFEST_MISMATCH", "{err}");
    assert!(
        message(&err).contains("has no tag `v0.3.0`, so its default branch was used"),
        "{err}"
    );
    ok(ws, &as_refs(&install("0.1.0", Some("main"))));
}

/// KRN-04 in a long-lived runtime: a pinned pack's files edited while a sidecar serves are not
/// run under the pin they no longer match (the loader checked them only at start).
#[test]
fn a_running_sidecar_does_not_run_pack_files_edited_under_it() {
    if !sandbox_available() {
        return;
    }
    use std::io::{BufRead, BufReader};
    let dir = installed();
    let ws = dir.path();
    ok(ws, &["enroll", "--standalone"]);
    let token = String::from_utf8(ok(ws, &["token", "mint", "--scope", "workspace"]).stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let mut child = Command::new(bin())
        .args(["sidecar", "--listen", "127.0.0.1:0"])
        .current_dir(ws)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sidecar");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let url = line.trim().rsplit(' ').next().expect("url").to_string();
    let call = || -> Value {
        reqwest::blocking::Client::new()
            .post(format!("{url}/tools/read-any"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"file": "notes/a.md"}))
            .send()
            .expect("send")
            .json()
            .expect("json")
    };
    let v = call();
    assert_eq!(v["data"]["text"], "hello", "{v}");

    let script = ws.join("packs/ops/bin/read.py");
    let mut edited = std::fs::read_to_string(&script).expect("read");
    edited.push_str("# edited while the sidecar runs\n");
    std::fs::write(&script, edited).expect("tamper");
    let v = call();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(v["error"]["code"], "INTEGRITY_MISMATCH", "{v}");
    assert!(
        message(&v).contains("changed after this process loaded"),
        "{v}"
    );
}

// KRN-04: a pinned pack whose folder is gone stops every load (its rules may be the ones that
// deny); the refusal says how to get it back and how to stop pinning it.
#[test]
fn a_missing_pack_folder_names_the_way_back() {
    let dir = installed();
    let ws = dir.path();
    std::fs::rename(ws.join("packs/ops"), ws.join("ops-moved-away")).expect("move");
    let err = refusal(ws, &["tool", "list"], &[]);
    assert_eq!(code(&err), "PACK_NOT_INSTALLED", "{err}");
    let m = message(&err);
    assert!(
        m.contains("restore the folder `packs/ops/`")
            && m.contains("remove `ops` from `packs:` in workspace.yaml"),
        "{m}"
    );
    // Put back as it was, it loads again: the pin checks it is the same pack.
    std::fs::rename(ws.join("ops-moved-away"), ws.join("packs/ops")).expect("move back");
    ok(ws, &["tool", "list"]);
}
