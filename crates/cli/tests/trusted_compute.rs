//! `lumenflow demo trusted-compute` end to end (TCD-01 to TCD-11): the real binary starts a real
//! control plane and a real sidecar, and the bundle it writes is checked here the way a third
//! party would check it: `lumenflow proof verify`, `openssl pkeyutl` and the files' contents.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn demo(mode: &str, root: &Path, run_id: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args([
            "--json",
            "demo",
            "trusted-compute",
            "--mode",
            mode,
            "--approve",
            "--run-id",
            run_id,
        ])
        .arg("--work-dir")
        .arg(root.join("work"))
        .arg("--out")
        .arg(root.join("evidence"))
        .output()
        .expect("run the demo");
    assert!(
        out.status.success(),
        "demo {mode} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json output")
}

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("read")).expect("json")
}

fn verify_like_a_third_party(bundle: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(["proof", "verify", "--pubkey"])
        .arg(bundle.join("verifier-public-key.pem"))
        .arg(bundle)
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "verifier-public-key.pem",
            "-rawin",
            "-in",
            "manifest.json",
            "-sigfile",
            "manifest.sig",
        ])
        .current_dir(bundle)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn policy_blocked_mode_stops_before_any_tool_call_and_still_signs_tcd_08() {
    let root = tempfile::tempdir().expect("tmp");
    let report = demo("policy-blocked", root.path(), "tc-test-blocked");
    let bundle = root.path().join("evidence/tc-test-blocked");
    assert_eq!(report["bundle"], bundle.to_str().expect("utf-8"));
    verify_like_a_third_party(&bundle);

    assert_eq!(
        fs::read(bundle.join("tool-calls.jsonl"))
            .expect("read")
            .len(),
        0
    );
    let decisions = lines(&bundle.join("policy-decisions.jsonl"));
    let deny = decisions
        .iter()
        .find(|d| d["decision"] == "deny")
        .expect("a deny entry");
    assert_eq!(deny["scopes"][0]["pattern"], "secrets/production.env");
    assert_eq!(deny["scopes"][0]["access"], "write");
    assert_eq!(json(&bundle.join("test-results.json"))["status"], "not_run");
    assert_eq!(
        json(&bundle.join("approval.json"))["status"],
        "not_requested"
    );
    assert_eq!(
        fs::read(bundle.join("file-diff.patch"))
            .expect("read")
            .len(),
        0
    );
    assert!(fs::read_to_string(bundle.join("pr-summary.md"))
        .expect("read")
        .contains("secrets/production.env"));
    // The secret was never written anywhere in the workspace.
    assert!(!root.path().join("work/workspace/secrets").exists());
    // walk-B #10, walk-G F8: the summary gives the replay's own Rules count (a blocked run has
    // no rule events) and, beside it, what the bundle lists (the deny among the decisions).
    let replay = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find_map(|s| {
            s["detail"]
                .as_str()
                .filter(|d| d.contains("replay stages:"))
        })
        .expect("a replay step");
    assert!(
        replay.contains(&format!(
            "rules 0 ({} decisions in the bundle)",
            decisions.len()
        )),
        "{replay}"
    );
    let manifest = json(&bundle.join("manifest.json"));
    assert_eq!(manifest["mode"], "policy-blocked");
    assert_eq!(manifest["run_id"], "tc-test-blocked");
}

#[test]
fn happy_mode_runs_the_chain_through_an_approval_tcd_07() {
    let root = tempfile::tempdir().expect("tmp");
    let report = demo("happy", root.path(), "tc-test-happy");
    let bundle = root.path().join("evidence/tc-test-happy");
    verify_like_a_third_party(&bundle);

    let calls = lines(&bundle.join("tool-calls.jsonl"));
    let tools: Vec<&str> = calls.iter().filter_map(|c| c["tool"].as_str()).collect();
    assert_eq!(
        tools,
        [
            "software-delivery:wu_claim",
            "software-delivery:apply_patch",
            "software-delivery:gates",
            "software-delivery:pr_prepare"
        ]
    );
    assert!(calls.iter().all(|c| c["result"] == "success"), "{calls:?}");
    assert!(
        calls[3]["approval_id"].is_string(),
        "the PR ran on the grant"
    );

    // The session names the exact pack code that governed the run: real pins, the hashes
    // `lumenflow pack hash` computes for the built-in packs, never `integrity: dev`.
    let session = json(&bundle.join("node-session.json"));
    // TCD-03: the bundle's files agree with each other, and the signed session anchors the
    // workspace's kernel log: the head it names is the hash of the log's record at that seq.
    assert_eq!(session["tool_calls"], calls.len(), "{session}");
    assert!(session["governed_calls"].as_u64() > session["tool_calls"].as_u64());
    let anchored = session["kernel_log"]["last_seq"].as_u64().expect("seq");
    let log = lines(
        &root
            .path()
            .join("work/workspace/.lumenflow/kernel/events.jsonl"),
    );
    let at = log
        .iter()
        .find(|r| r["seq"].as_u64() == Some(anchored))
        .expect("the anchored record is in the log");
    assert_eq!(at["hash"], session["kernel_log"]["head"], "{session}");
    // The PR step paused on its approval, and then ran on the grant: both are Rules evidence.
    let decisions = lines(&bundle.join("policy-decisions.jsonl"));
    let required: Vec<&str> = decisions
        .iter()
        .filter(|d| d["policy_id"] == "kernel.required_approvals")
        .filter_map(|d| d["decision"].as_str())
        .collect();
    assert_eq!(required, ["approval_required", "allow"], "{decisions:?}");
    let packs = session["packs"].as_array().expect("packs");
    assert_eq!(packs.len(), 2, "{session}");
    for pin in packs {
        let id = pin["id"].as_str().expect("id");
        let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
            .args(["--json", "pack", "hash", "--id", id])
            .current_dir(root.path().join("work/workspace"))
            .output()
            .expect("pack hash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hashed: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(pin["integrity"], hashed["integrity"], "{pin}");
    }
    let yaml = fs::read_to_string(root.path().join("work/workspace/workspace.yaml")).expect("read");
    assert!(!yaml.contains("integrity: dev"), "{yaml}");

    let diff = fs::read_to_string(bundle.join("file-diff.patch")).expect("read");
    assert!(diff.contains("+  echo $(( $1 + $2 ))"), "{diff}");
    let tests = json(&bundle.join("test-results.json"));
    assert_eq!(tests["status"], "passed");
    assert_eq!(
        tests["baseline"]["status"], "failed",
        "the test failed before the fix"
    );
    let approval = json(&bundle.join("approval.json"));
    assert_eq!(approval["status"], "approved");
    assert_eq!(approval["transitions"][0]["status"], "pending");
    assert_eq!(approval["transitions"][1]["status"], "approved");
    assert_eq!(approval["approval_id"], calls[3]["approval_id"]);
    assert!(fs::read_to_string(bundle.join("pr-summary.md"))
        .expect("read")
        .contains("calc: add sums its arguments"));
    let link = fs::read_to_string(bundle.join("replay-link.txt")).expect("read");
    assert!(link.trim().ends_with("/replay/tc-test-happy"), "{link}");
    assert!(lines(&bundle.join("policy-decisions.jsonl"))
        .iter()
        .all(|d| d["decision"] != "deny"));
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    // The control plane assembled a replay of this run from the events that reached it.
    let replay = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find_map(|s| {
            s["detail"]
                .as_str()
                .filter(|d| d.contains("replay stages:"))
        })
        .expect("a replay step");
    assert!(!replay.contains("tool_calls 0"), "{replay}");
    assert!(!replay.contains("approvals 0"), "{replay}");
    assert!(
        !replay.contains("proof 0"),
        "the sealed bundle receipt is in the replay: {replay}"
    );
    for stage in [
        "Cloud",
        "Connection",
        "Ask",
        "Dispatch",
        "Tool calls",
        "Approvals",
        "Proof",
    ] {
        assert!(steps.contains(&stage), "{stage} missing from {steps:?}");
    }
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

/// walk-B #3: the printed verify hint pinned `verifier-public-key.pem` from inside the bundle, so
/// a forged bundle carrying its own key "verified with the pinned key". The hint must pin the
/// signer's public key kept next to its private key, and that private key must be one OpenSSL
/// 3.0 reads (an existing PKCS#8 v2 file, as earlier versions wrote, is rewritten as v1).
#[test]
fn verify_hint_pins_the_signers_public_key_kept_outside_the_bundle_walk_b_3() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tmp");
    // A PKCS#8 v2 key (public key attached), as ed25519-dalek wrote it before this fix.
    let original = root.path().join("original.pem");
    let original_s = original.to_str().expect("utf-8");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", original_s]);
    let v1_der = openssl(&["pkey", "-in", original_s, "-outform", "DER"]);
    let spki_der = openssl(&["pkey", "-in", original_s, "-pubout", "-outform", "DER"]);
    let original_pub =
        String::from_utf8(openssl(&["pkey", "-in", original_s, "-pubout"])).expect("utf-8");
    assert_eq!(v1_der.len(), 48);
    let mut v2_der = vec![0x30, 0x51, 0x02, 0x01, 0x01];
    v2_der.extend_from_slice(&v1_der[5..48]);
    v2_der.extend_from_slice(&[0x81, 0x21, 0x00]);
    v2_der.extend_from_slice(&spki_der[spki_der.len() - 32..]);
    let keys = root.path().join("evidence/.keys");
    fs::create_dir_all(&keys).expect("mkdir");
    let private = keys.join("signer-ed25519.pem");
    fs::write(&private, pem("PRIVATE KEY", &v2_der)).expect("write");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).expect("chmod");
    let private_s = private.to_str().expect("utf-8");
    // The premise: OpenSSL 3.0 cannot read the v2 file (if a newer OpenSSL can, the rest of
    // the test still checks the rewrite keeps the key).
    let v2_readable = Command::new("openssl")
        .args(["pkey", "-in", private_s, "-pubout"])
        .output()
        .expect("openssl")
        .status
        .success();
    eprintln!("openssl reads the v2 key: {v2_readable}");

    let report = demo("policy-blocked", root.path(), "tc-test-pin");
    let bundle = root.path().join("evidence/tc-test-pin");
    let hint = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["detail"].as_str())
        .flat_map(str::lines)
        .find_map(|l| l.strip_prefix("verify: lumenflow proof verify --pubkey "))
        .expect("a verify hint")
        .to_string();
    let (pinned, hinted_bundle) = hint.split_once(' ').expect("two arguments");
    let pinned = Path::new(pinned);
    assert_eq!(Path::new(hinted_bundle), bundle);
    assert_eq!(pinned, keys.join("signer-ed25519.pub.pem"), "{hint}");
    assert!(pinned.is_file(), "{hint}");
    assert!(
        !pinned.starts_with(&bundle),
        "the pinned key must not ship in the bundle: {hint}"
    );
    assert_eq!(report["signer_public_key"], pinned.to_str().expect("utf-8"));

    let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(["proof", "verify", "--pubkey"])
        .arg(pinned)
        .arg(&bundle)
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = fs::read_to_string(pinned).expect("read");
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        pinned.to_str().expect("utf-8"),
        "-noout",
    ]);
    let derived =
        String::from_utf8(openssl(&["pkey", "-in", private_s, "-pubout"])).expect("utf-8");
    assert_eq!(derived, written, "OpenSSL reads the private key; same key");
    assert_eq!(written, original_pub, "the rewrite kept the key");
    assert_eq!(
        fs::metadata(&private).expect("stat").permissions().mode() & 0o777,
        0o600
    );

    // A second run reuses the key and the public file as they are.
    fs::remove_dir_all(root.path().join("work")).expect("clear the scratch folder");
    demo("policy-blocked", root.path(), "tc-test-pin-2");
    assert_eq!(fs::read_to_string(pinned).expect("read"), written);
    assert_eq!(
        String::from_utf8(openssl(&["pkey", "-in", private_s, "-pubout"])).expect("utf-8"),
        written
    );
}

// The README's first command must work on a fresh machine, which may have no bubblewrap: gates
// run the agent's code sandboxed where bwrap exists, and the demo's workspace otherwise says
// `sandbox: none` in the open (recorded in every gate result), so the happy chain still
// completes instead of aborting at the test gate while the command reported success.
#[test]
fn happy_mode_completes_where_bubblewrap_is_missing() {
    let root = tempfile::tempdir().expect("tmp");
    // A PATH with what the demo runs (git, sh) and no bwrap.
    let bin = root.path().join("bin");
    fs::create_dir_all(&bin).expect("mkdir");
    for tool in ["git", "sh"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is on PATH"));
        std::os::unix::fs::symlink(found, bin.join(tool)).expect("link");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(["--json", "demo", "trusted-compute", "--mode", "happy"])
        .args(["--approve", "--run-id", "tc-test-nobwrap"])
        .arg("--work-dir")
        .arg(root.path().join("work"))
        .arg("--out")
        .arg(root.path().join("evidence"))
        .env("PATH", &bin)
        .output()
        .expect("run the demo");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = fs::read_to_string(root.path().join("work/workspace/workspace.yaml")).expect("yaml");
    assert!(yaml.contains("\nsandbox: none\n"), "{yaml}");
    let bundle = root.path().join("evidence/tc-test-nobwrap");
    let tests = json(&bundle.join("test-results.json"));
    assert_eq!(tests["status"], "passed", "{tests}");
    assert_eq!(json(&bundle.join("approval.json"))["status"], "approved");
}
