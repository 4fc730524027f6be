//! KRN-11: network allowlists are enforced, not advisory, through the `lumenflow __sandbox-init`
//! relay helper, against the real bubblewrap.
//!
//! The test tool (`fixtures/sandbox/probe.py`) ignores proxy variables and connects with raw
//! sockets. Servers run on the host's loopback; the sandbox has its own network namespace, so the
//! only way to them is the relay. Each test prints a notice and passes when `bwrap` is missing.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use lumenflow_kernel::sandbox::{
    detect_bwrap, run, NetworkPolicy, RunIds, RunOutcome, RunSpec, SandboxMode, SandboxProfile,
};
use serde_json::{json, Value};

macro_rules! mode_or_skip {
    () => {
        match detect_bwrap() {
            Some(bwrap) => SandboxMode::Bubblewrap {
                bwrap,
                helper_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_lumenflow"))),
            },
            None => {
                eprintln!("SKIPPED (KRN-11): bubblewrap (`bwrap`) is not installed");
                return;
            }
        }
    };
}

fn probe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/sandbox/probe.py")
        .canonicalize()
        .expect("fixture")
}

/// A TCP server on the host's loopback: answers `<name>` to a silent client, and
/// `<name>:<what it got>` to one that sends a line.
fn server(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut conn = conn;
                let _ = conn.set_read_timeout(Some(Duration::from_millis(300)));
                let mut buf = [0u8; 1024];
                let reply = match conn.read(&mut buf) {
                    Ok(n) if n > 0 => format!("{name}:{}", String::from_utf8_lossy(&buf[..n])),
                    _ => name.to_string(),
                };
                let _ = conn.write_all(reply.as_bytes());
            });
        }
    });
    port
}

fn setup(network: NetworkPolicy) -> (tempfile::TempDir, SandboxProfile) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("docs")).expect("mkdir");
    let profile = SandboxProfile {
        read: vec!["docs/**".into()],
        network,
        ..SandboxProfile::new(dir.path())
    };
    (dir, profile)
}

fn spec(dir: &Path, input: Value) -> RunSpec {
    RunSpec {
        program: probe(),
        args: Vec::new(),
        stdin: serde_json::to_vec(&json!({"export": null, "input": input, "cwd": dir}))
            .expect("json"),
        cwd: dir.to_path_buf(),
        timeout: Duration::from_secs(30),
        max_output_bytes: 1 << 20,
        ids: RunIds {
            receipt_id: "rcpt_net".into(),
            run_id: "run_net".into(),
            task_id: "task_net".into(),
        },
        pack_root: None,
    }
}

fn call(mode: &SandboxMode, profile: &SandboxProfile, input: Value) -> (RunOutcome, Value) {
    let out = run(mode, profile, &spec(&profile.workspace_root, input)).expect("runs");
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): exit {:?}\nstdout: {}\nstderr: {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, value)
}

fn error_message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// KRN-11: only the allowlisted `127.0.0.1:A` is reachable; port B on the same address, another
// IP and an unlisted name are not, although the tool ignores proxies and connects directly.
#[test]
fn an_allowlist_reaches_only_the_listed_destination() {
    let mode = mode_or_skip!();
    let a = server("server-a");
    let b = server("server-b");
    let (_dir, p) = setup(NetworkPolicy::Allowlist(vec![("127.0.0.1".into(), a)]));

    let (out, v) = call(
        &mode,
        &p,
        json!({"op": "connect", "host": "127.0.0.1", "port": a}),
    );
    assert_eq!(out.exit_code, Some(0), "{v}");
    assert_eq!(v["data"]["received"], "server-a", "{v}");

    let (_, v) = call(
        &mode,
        &p,
        json!({"op": "connect", "host": "127.0.0.1", "port": a, "send": "ping"}),
    );
    assert_eq!(
        v["data"]["received"], "server-a:ping",
        "both directions: {v}"
    );

    let (_, v) = call(
        &mode,
        &p,
        json!({"op": "connect", "host": "127.0.0.1", "port": b}),
    );
    assert!(
        v["success"] == json!(false),
        "port B must be unreachable: {v}"
    );
    assert!(error_message(&v).contains("ConnectionRefused"), "{v}");

    let started = Instant::now();
    let (_, v) = call(
        &mode,
        &p,
        json!({"op": "connect", "host": "203.0.113.7", "port": 80, "timeout": 5}),
    );
    assert!(
        v["success"] == json!(false),
        "another IP must be unreachable: {v}"
    );
    assert!(
        error_message(&v).contains("unreachable"),
        "no route, not a timeout: {v}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let (_, v) = call(
        &mode,
        &p,
        json!({"op": "connect", "host": "example.com", "port": 80}),
    );
    assert_eq!(v["error"]["code"], "RESOLVE_FAILED", "{v}");
}

// KRN-11: an allowlisted name resolves, inside, to its relay address through the generated
// /etc/hosts, and reaches the host's server; the same port on the plain loopback does not.
#[test]
fn an_allowlisted_name_resolves_to_the_relay() {
    let mode = mode_or_skip!();
    let a = server("server-a");
    let (_dir, p) = setup(NetworkPolicy::Allowlist(vec![("localhost".into(), a)]));

    let (_, v) = call(
        &mode,
        &p,
        json!({"op": "connect", "host": "localhost", "port": a}),
    );
    assert_eq!(v["data"]["received"], "server-a", "{v}");
    assert_eq!(v["data"]["address"], "127.100.0.1", "{v}");

    let (_, v) = call(
        &mode,
        &p,
        json!({"op": "connect", "host": "127.0.0.1", "port": a}),
    );
    assert!(v["success"] == json!(false), "{v}");
}

// KRN-11: a privileged port (443) can be listened for inside the namespace, and a destination
// that refuses on the host side closes the connection instead of hanging the tool.
#[test]
fn a_privileged_port_is_relayed() {
    let mode = mode_or_skip!();
    // Nothing listens on the host's 127.0.0.1:443 in the test environment (or something does,
    // and the connection is relayed to it): either way the tool's connect succeeds inside.
    let (_dir, p) = setup(NetworkPolicy::Allowlist(vec![("127.0.0.1".into(), 443)]));
    let (out, v) = call(
        &mode,
        &p,
        json!({"op": "connect", "host": "127.0.0.1", "port": 443, "timeout": 15}),
    );
    assert_eq!(
        out.exit_code,
        Some(0),
        "{v} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["success"], json!(true), "{v}");
}

// KRN-11: the timeout also kills the helper and the tool of an allowlisted sandbox.
#[test]
fn the_timeout_kills_an_allowlisted_sandbox() {
    let mode = mode_or_skip!();
    let a = server("server-a");
    let (_dir, p) = setup(NetworkPolicy::Allowlist(vec![("127.0.0.1".into(), a)]));
    let mut s = spec(&p.workspace_root, json!({"op": "sleep", "seconds": 60}));
    s.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let out = run(&mode, &p, &s).expect("runs");
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(started.elapsed() < Duration::from_secs(10));
}

// The helper subcommand is hidden from people.
#[test]
fn the_helper_subcommand_is_hidden() {
    let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .arg("--help")
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sandbox-init"));
    // Outside a sandbox it just runs the command and passes its status through.
    let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(["__sandbox-init", "--", "sh", "-c", "exit 7"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(7));
}
