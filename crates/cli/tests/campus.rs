//! `lumenflow campus` with the real binary: register a facility, ingest the fixture readings,
//! list what was stored, and refuse a bad file naming its line, writing nothing.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn lumenflow(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run lumenflow")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = lumenflow(dir, args);
    assert!(
        out.status.success(),
        "lumenflow {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A workspace `campus-ws` with the built-in campus-telemetry pack pinned.
fn campus_workspace(ws: &Path) {
    ok(ws, &["init", "--id", "campus-ws", "--name", "Campus"]);
    ok(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "campus-telemetry",
            "--version",
            "0.1.0",
            "--source",
            "local",
        ],
    );
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/campus")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn facilities_are_registered_readings_ingested_and_bad_rows_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = tmp.path();
    ok(ws, &["init", "--id", "campus-ws", "--name", "Campus"]);
    ok(
        ws,
        &[
            "campus",
            "facility",
            "add",
            "--id",
            "campus-fac-001",
            "--region",
            "eu-west-1",
        ],
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(ws, &["--json", "campus", "facility", "list"])).expect("json");
    assert!(listed.to_string().contains("campus-fac-001"), "{listed}");

    ok(
        ws,
        &["campus", "ingest", "--file", &fixture("readings.jsonl")],
    );
    let ledger =
        fs::read_to_string(ws.join(".lumenflow/state/conductor/events.jsonl")).expect("ledger");
    for kind in ["campus:pue_sampled", "campus:power_signal_ingested"] {
        assert!(ledger.contains(kind), "{kind} missing from the ledger");
    }
    assert!(ledger.lines().all(|l| l.contains("\"from\":\"campus-ws\"")));

    // A bad row: refused with its line and field, and nothing of the file is stored.
    let before = fs::read_to_string(ws.join(".lumenflow/state/conductor/events.jsonl")).expect("l");
    let bad = ws.join("bad.jsonl");
    fs::write(
        &bad,
        "{\"type\":\"pue\",\"facility_id\":\"campus-fac-001\",\"pue\":1.2,\"sampled_at\":\"2026-07-01T00:00:00.000Z\"}\n{\"type\":\"pue\",\"facility_id\":\"campus-fac-001\",\"pue\":0.5,\"sampled_at\":\"2026-07-01T01:00:00.000Z\"}\n",
    )
    .expect("write");
    let out = lumenflow(
        ws,
        &["campus", "ingest", "--file", bad.to_str().expect("utf-8")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":2"), "the error names line 2: {stderr}");
    assert!(stderr.contains("pue"), "{stderr}");
    let after = fs::read_to_string(ws.join(".lumenflow/state/conductor/events.jsonl")).expect("l");
    assert_eq!(before, after, "nothing of a refused file is written");
}

/// The documented `campus.attestation` block is accepted by the kernel (its config schema, as
/// the loader checks it for every command) and by `campus attest`: the schema used to declare
/// `expected_measurements` with a schema-valued `additionalProperties`, which the kernel's
/// subset (as the original's) treats as strict, so every measurement name was an unknown
/// property and no workspace could have both attestation and the campus tools.
#[test]
fn an_attestation_policy_with_measurements_passes_the_pack_config_schema() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = tmp.path();
    campus_workspace(ws);
    ok(ws, &["campus", "facility", "add", "--id", "campus-fac-001"]);
    let key = lumenflow_proof::keys::KeyPair::generate();
    let pem = key.public().to_pem();
    let policy = |measurement: &str| {
        format!(
            "campus:\n  attestation:\n    verifiers:\n      - id: attestation-service-a\n        issuer: https://attest.example\n        algorithm: EdDSA\n        public_key_pem: {}\n    expected_measurements:\n      firmware: {measurement}\n",
            serde_json::to_string(&pem).expect("json")
        )
    };
    let base = fs::read_to_string(ws.join("workspace.yaml")).expect("read");
    fs::write(
        ws.join("workspace.yaml"),
        format!("{base}{}", policy("\"sha256:1111\"")),
    )
    .expect("write");

    let tools = ok(ws, &["tool", "list"]);
    assert!(tools.contains("campus:"), "{tools}");
    let challenge = ok(
        ws,
        &[
            "--json",
            "campus",
            "attest",
            "challenge",
            "--facility",
            "campus-fac-001",
            "--node",
            "node-a",
        ],
    );
    assert!(challenge.contains("nonce"), "{challenge}");

    // A measurement that is not a string is named by `campus attest`, key and all.
    fs::write(ws.join("workspace.yaml"), format!("{base}{}", policy("42"))).expect("write");
    let out = lumenflow(
        ws,
        &[
            "campus",
            "attest",
            "challenge",
            "--facility",
            "campus-fac-001",
            "--node",
            "node-a",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("CONFIG_INVALID")
            && stderr.contains("`campus.attestation.expected_measurements.firmware`"),
        "{stderr}"
    );
}

/// `campus poll` with a facility that is not registered stops at once with the way out, instead
/// of warning every interval forever; a zero interval or timeout is refused, not raised to 1 s.
#[test]
fn poll_refuses_an_unregistered_facility_and_zero_intervals_up_front() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = tmp.path();
    ok(ws, &["init", "--id", "campus-ws", "--name", "Campus"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args([
            "campus",
            "poll",
            "--redfish",
            "http://127.0.0.1:9",
            "--facility",
            "nope",
            "--interval",
            "1",
        ])
        .current_dir(ws)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`campus poll` kept running for an unregistered facility");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("FACILITY_NOT_FOUND")
            && stderr.contains("lumenflow campus facility add --id nope"),
        "{stderr}"
    );

    for flag in ["--interval", "--timeout"] {
        let out = lumenflow(
            ws,
            &[
                "campus",
                "poll",
                "--redfish",
                "http://127.0.0.1:9",
                "--facility",
                "nope",
                flag,
                "0",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(flag) && stderr.contains('0'), "{stderr}");
    }
}

/// Outside a sidecar, a standalone workspace (enrolled, no control plane) keeps its events'
/// ledger stamps and says nothing about delivery: there is no control plane to deliver to, so a
/// "not delivered" warning on every call would be noise (it was, briefly).
#[test]
fn a_standalone_workspace_stamps_command_events_without_delivery_warnings() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = tmp.path();
    campus_workspace(ws);
    ok(ws, &["enroll", "--standalone"]);
    for args in [
        &["campus", "facility", "add", "--id", "campus-fac-001"][..],
        &["tool", "call", "campus:list_facilities"],
    ] {
        let out = lumenflow(ws, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("not delivered"), "{args:?}: {stderr}");
    }
    let ledger =
        fs::read_to_string(ws.join(".lumenflow/state/conductor/events.jsonl")).expect("ledger");
    assert!(ledger.contains("campus:facility_registered"), "{ledger}");
    assert!(ledger.contains("agent-runtime:tool_called"), "{ledger}");
}
