//! `lumenflow proof verify` (TCD-06): the real binary on sealed and tampered bundles.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use lumenflow_proof::bundle::{self, SealRequest, REQUIRED_ARTIFACTS};
use lumenflow_proof::KeyPair;

fn lumenflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(args)
        .output()
        .expect("run lumenflow")
}

fn sealed(key: &KeyPair) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for name in REQUIRED_ARTIFACTS {
        fs::write(dir.path().join(name), format!("{name}\n")).expect("w");
    }
    bundle::seal(
        dir.path(),
        key,
        &SealRequest {
            run_id: "tc-1",
            mode: "policy-blocked",
            created_at: "2026-11-21T00:00:00.000Z",
        },
    )
    .expect("seal");
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn verify_reports_each_check_and_exits_zero_only_when_all_pass() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
    let out = lumenflow(&["proof", "verify", path(dir.path())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "files_present",
        "schema_supported",
        "hashes_match",
        "signature_valid",
    ] {
        assert!(stdout.contains(check), "{stdout}");
    }
    assert!(stdout.contains("self-asserted"));

    // Outside the bundle: a file inside it that the manifest does not list fails (F4).
    let keys = tempfile::tempdir().expect("tmp");
    let pem = keys.path().join("pinned.pem");
    fs::write(&pem, key.public().to_pem()).expect("w");
    let out = lumenflow(&[
        "--json",
        "proof",
        "verify",
        "--pubkey",
        path(&pem),
        path(dir.path()),
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["verification"]["key_pinned"], true);
    assert_eq!(
        v["verification"]["checks"].as_array().map(Vec::len),
        Some(4)
    );

    fs::write(
        dir.path().join("test-results.json"),
        "{\"status\": \"passed\"}",
    )
    .expect("w");
    let out = lumenflow(&["proof", "verify", path(dir.path())]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FAIL hashes_match"), "{stderr}");
    assert!(stderr.contains("test-results.json"), "{stderr}");
}

#[test]
fn a_bundle_signed_by_another_key_fails_when_pinned() {
    let dir = sealed(&KeyPair::generate());
    let keys = tempfile::tempdir().expect("tmp");
    let pem = keys.path().join("pinned.pem");
    fs::write(&pem, KeyPair::generate().public().to_pem()).expect("w");
    let out = lumenflow(&["proof", "verify", "--pubkey", path(&pem), path(dir.path())]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAIL signature_valid"));

    let out = lumenflow(&["proof", "verify", "/definitely/not/here"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a folder"));

    // A pinned key that cannot be read names the flag it came from.
    let missing = dir.path().join("no-such-key.pem");
    let out = lumenflow(&[
        "proof",
        "verify",
        "--pubkey",
        path(&missing),
        path(dir.path()),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--pubkey") && stderr.contains("no-such-key.pem"),
        "{stderr}"
    );
}

#[test]
fn export_dsse_signs_a_verified_bundle_with_its_own_key() {
    let root = tempfile::tempdir().expect("tmp");
    let key_path = root.path().join(".keys/signer-ed25519.pem");
    let key = KeyPair::load_or_create(&key_path).expect("key");
    let bundle_dir = root.path().join("tc-1");
    fs::create_dir_all(&bundle_dir).expect("mkdir");
    for name in REQUIRED_ARTIFACTS {
        fs::write(bundle_dir.join(name), format!("{name}\n")).expect("w");
    }
    bundle::seal(
        &bundle_dir,
        &key,
        &SealRequest {
            run_id: "tc-1",
            mode: "happy",
            created_at: "2026-11-21T00:00:00.000Z",
        },
    )
    .expect("seal");

    // The default key is the one `demo trusted-compute` keeps beside its bundles.
    let out = lumenflow(&["proof", "export", "--dsse", path(&bundle_dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envelope: lumenflow_proof::dsse::Envelope =
        serde_json::from_slice(&out.stdout).expect("envelope");
    let statement = lumenflow_proof::dsse::verify(&envelope, &key.public()).expect("verifies");
    assert_eq!(statement["subject"].as_array().map(Vec::len), Some(9));

    // A tampered bundle is not exported.
    fs::write(bundle_dir.join("ask.json"), "changed").expect("w");
    let out = lumenflow(&["proof", "export", "--dsse", path(&bundle_dir)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hashes_match"));
}

// F6 (Q31): an unpinned pass still exits 0, but its last line and the JSON say that nothing
// ties the bundle to a known signer. F5: the signed run is shown.
#[test]
fn an_unpinned_pass_says_the_signer_is_not_pinned_f6() {
    let dir = sealed(&KeyPair::generate());
    let out = lumenflow(&["proof", "verify", path(dir.path())]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains("SIGNER NOT PINNED") && last.contains("nothing ties this bundle"),
        "{stdout}"
    );
    assert!(!last.starts_with("verified"), "{stdout}");
    assert!(
        stdout.contains(
            "signed run_id tc-1, mode policy-blocked, created_at 2026-11-21T00:00:00.000Z"
        ),
        "{stdout}"
    );
    let out = lumenflow(&["--json", "proof", "verify", path(dir.path())]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["signer_pinned"], false);
    assert_eq!(v["run_id"], "tc-1");
}

// F5: `--run-id` fails a bundle signed for another run, whatever its folder is called; a
// folder named after another run is a warning.
#[test]
fn run_id_pins_the_signed_run_f5() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
    let out = lumenflow(&["proof", "verify", "--run-id", "tc-2", path(dir.path())]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FAIL signature_valid") && stderr.contains("not the expected run `tc-2`"),
        "{stderr}"
    );
    let out = lumenflow(&["proof", "verify", "--run-id", "tc-1", path(dir.path())]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("warning: the folder is named") && stdout.contains("`tc-1`"),
        "{stdout}"
    );
}

// F10: an --out that cannot be written names --out, not --pubkey.
#[test]
fn export_out_errors_name_out_f10() {
    let root = tempfile::tempdir().expect("tmp");
    let key_path = root.path().join(".keys/signer-ed25519.pem");
    let key = KeyPair::load_or_create(&key_path).expect("key");
    let bundle_dir = root.path().join("tc-1");
    fs::create_dir_all(&bundle_dir).expect("mkdir");
    for name in REQUIRED_ARTIFACTS {
        fs::write(bundle_dir.join(name), format!("{name}\n")).expect("w");
    }
    bundle::seal(
        &bundle_dir,
        &key,
        &SealRequest {
            run_id: "tc-1",
            mode: "happy",
            created_at: "2026-11-21T00:00:00.000Z",
        },
    )
    .expect("seal");
    let out_path = root.path().join("no-such-dir/env.json");
    let out = lumenflow(&[
        "proof",
        "export",
        "--dsse",
        "--out",
        path(&out_path),
        path(&bundle_dir),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--out") && stderr.contains("cannot write the envelope"),
        "{stderr}"
    );
    assert!(!stderr.contains("--pubkey"), "{stderr}");
}
