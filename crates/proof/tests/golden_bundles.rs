//! Golden bundles under `fixtures/bundles/` (issue 10): a valid one and five broken ones, each
//! with the verdict the verifier must give (`<case>.expected.json`, beside the folder: inside it
//! would be a file the signature does not cover, which fails `files_present`), checked with the signer pinned to
//! `fixtures/bundles/signer.pem`. Also the DSSE export of the valid bundle, checked by us and by
//! `openssl` over the pre-authentication encoding. `UPDATE_GOLDEN=1` regenerates the folders
//! (deterministically: fixed keys, fixed artifacts, Ed25519 signatures); review the diff.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use lumenflow_proof::bundle::{self, SealRequest, REQUIRED_ARTIFACTS};
use lumenflow_proof::{dsse, KeyPair, PublicKey};
use serde_json::{json, Value};

const SIGNER: [u8; 32] = [7u8; 32];
const OTHER: [u8; 32] = [9u8; 32];
const CASES: [&str; 9] = [
    "valid",
    "tampered-artifact",
    "missing-file",
    "wrong-key",
    "unknown-schema",
    "truncated-signature",
    "unlisted-file",
    "duplicate-key",
    "foreign-run-id",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bundles")
}

fn seal(dir: &Path, key: &KeyPair) {
    fs::create_dir_all(dir).unwrap();
    for name in REQUIRED_ARTIFACTS {
        let body = match name {
            "tool-calls.jsonl" => {
                "{\"tool\":\"software-delivery:wu_claim\",\"result\":\"success\"}\n".to_string()
            }
            "replay-link.txt" => "http://127.0.0.1:8787/replay/tc-golden\n".to_string(),
            "file-diff.patch" => "--- a/calc.sh\n+++ b/calc.sh\n@@ -1 +1 @@\n-a\n+b\n".to_string(),
            _ => format!("{{\"file\": \"{name}\", \"run_id\": \"tc-golden\"}}\n"),
        };
        fs::write(dir.join(name), body).unwrap();
    }
    bundle::seal(
        dir,
        key,
        &SealRequest {
            run_id: "tc-golden",
            mode: "happy",
            created_at: "2026-11-21T00:00:00.000Z",
        },
    )
    .unwrap();
}

/// Build one case into `dir` and return the verdict it must get.
fn build(case: &str, dir: &Path) -> Value {
    let signer = KeyPair::from_secret_bytes(&SIGNER);
    let _ = fs::remove_dir_all(dir);
    match case {
        "wrong-key" => seal(dir, &KeyPair::from_secret_bytes(&OTHER)),
        "foreign-run-id" => {
            // Sealed by the right key, but ask.json is another run's (F5): its hash matches,
            // its run id does not.
            fs::create_dir_all(dir).unwrap();
            for name in REQUIRED_ARTIFACTS {
                fs::write(dir.join(name), "{\"run_id\": \"tc-golden\"}\n").unwrap();
            }
            fs::write(dir.join("ask.json"), "{\"run_id\": \"tc-other\"}\n").unwrap();
            fs::write(
                dir.join("replay-link.txt"),
                "http://127.0.0.1:8787/replay/tc-golden\n",
            )
            .unwrap();
            bundle::seal(
                dir,
                &signer,
                &SealRequest {
                    run_id: "tc-golden",
                    mode: "happy",
                    created_at: "2026-11-21T00:00:00.000Z",
                },
            )
            .unwrap();
        }
        _ => seal(dir, &signer),
    }
    let failed: Vec<&str> = match case {
        "valid" => vec![],
        "tampered-artifact" => {
            fs::write(
                dir.join("file-diff.patch"),
                "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+evil\n",
            )
            .unwrap();
            vec!["hashes_match"]
        }
        "missing-file" => {
            fs::remove_file(dir.join("approval.json")).unwrap();
            vec!["files_present", "hashes_match"]
        }
        "wrong-key" => vec!["signature_valid"],
        "unknown-schema" => {
            // Re-signed by the right key: only the version is wrong.
            let path = dir.join("manifest.json");
            let mut m: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            m["schema_version"] = json!(2);
            let bytes = lumenflow_contracts::canonical_json::to_canonical_string(&m).into_bytes();
            fs::write(&path, &bytes).unwrap();
            fs::write(dir.join("manifest.sig"), signer.sign(&bytes)).unwrap();
            vec!["schema_supported", "hashes_match", "signature_valid"]
        }
        "truncated-signature" => {
            let sig = fs::read(dir.join("manifest.sig")).unwrap();
            fs::write(dir.join("manifest.sig"), &sig[..32]).unwrap();
            // An unsigned manifest's hashes are not checked against the artifacts (F11).
            vec!["hashes_match", "signature_valid"]
        }
        "unlisted-file" => {
            // Nothing signs it, yet it sits among the evidence (F4).
            fs::write(
                dir.join("extra-evidence.json"),
                "{\"status\": \"passed\"}\n",
            )
            .unwrap();
            vec!["files_present"]
        }
        "duplicate-key" => {
            // Re-signed by the right key: `mode` twice, which readers resolve differently (F13).
            let path = dir.join("manifest.json");
            let text = fs::read_to_string(&path).unwrap();
            let bytes = text
                .replacen(
                    "\"mode\":\"happy\"",
                    "\"mode\":\"happy\",\"mode\":\"policy-blocked\"",
                    1,
                )
                .into_bytes();
            fs::write(&path, &bytes).unwrap();
            fs::write(dir.join("manifest.sig"), signer.sign(&bytes)).unwrap();
            vec!["schema_supported", "hashes_match", "signature_valid"]
        }
        "foreign-run-id" => vec!["hashes_match"],
        other => panic!("unknown case {other}"),
    };
    json!({"passed": failed.is_empty(), "failed_checks": failed})
}

#[test]
fn every_golden_bundle_gets_its_verdict() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let signer = KeyPair::from_secret_bytes(&SIGNER);
    if update {
        fs::create_dir_all(root()).unwrap();
        fs::write(root().join("signer.pem"), signer.public().to_pem()).unwrap();
        for case in CASES {
            let expected = build(case, &root().join(case));
            fs::write(
                root().join(format!("{case}.expected.json")),
                format!("{}\n", serde_json::to_string_pretty(&expected).unwrap()),
            )
            .unwrap();
        }
    }
    let pinned = PublicKey::from_pem(
        &fs::read_to_string(root().join("signer.pem")).expect("fixtures/bundles (UPDATE_GOLDEN=1)"),
        "signer.pem",
    )
    .unwrap();
    assert_eq!(pinned, signer.public());
    for case in CASES {
        let dir = root().join(case);
        let expected: Value = serde_json::from_slice(
            &fs::read(root().join(format!("{case}.expected.json"))).unwrap(),
        )
        .unwrap();
        let v = bundle::verify(&dir, Some(&pinned));
        let failed: Vec<&str> = v
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            json!({"passed": v.passed(), "failed_checks": failed}),
            expected,
            "{case}: {v:#?}"
        );
        // The committed bytes are what the generator makes: the fixtures are reproducible.
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(build(case, fresh.path()), expected, "{case}");
        for name in ["manifest.json", "manifest.sig"] {
            assert_eq!(
                fs::read(dir.join(name)).unwrap(),
                fs::read(fresh.path().join(name)).unwrap(),
                "{case}/{name} is not what the generator makes"
            );
        }
    }
}

#[test]
fn the_dsse_export_carries_every_artifact_and_verifies_with_openssl() {
    let signer = KeyPair::from_secret_bytes(&SIGNER);
    let dir = root().join("valid");
    let v = bundle::verify(&dir, Some(&signer.public()));
    let manifest = v.manifest.clone().unwrap();
    let envelope = dsse::export(&manifest, &signer).unwrap();
    let statement = dsse::verify(&envelope, &signer.public()).unwrap();
    assert_eq!(statement["_type"], dsse::STATEMENT_TYPE);
    let subjects = statement["subject"].as_array().unwrap();
    assert_eq!(subjects.len(), REQUIRED_ARTIFACTS.len());
    for s in subjects {
        let name = s["name"].as_str().unwrap();
        let bytes = fs::read(dir.join(name)).unwrap();
        assert_eq!(
            s["digest"]["sha256"],
            lumenflow_contracts::digest::sha256_hex(&bytes)
        );
    }
    assert_eq!(statement["predicate"]["run_id"], "tc-golden");

    // Another key cannot export it, and a tampered payload does not verify.
    let other = KeyPair::from_secret_bytes(&OTHER);
    assert_eq!(
        dsse::export(&manifest, &other).unwrap_err().code(),
        "KEY_MISMATCH"
    );
    let mut forged = envelope.clone();
    forged.payload = base64::engine::general_purpose::STANDARD.encode(b"{\"_type\":\"x\"}");
    assert!(dsse::verify(&forged, &signer.public()).is_err());

    // A third party: PAE bytes and the signature, checked by openssl.
    let tmp = tempfile::tempdir().unwrap();
    let body = base64::engine::general_purpose::STANDARD
        .decode(&envelope.payload)
        .unwrap();
    fs::write(
        tmp.path().join("pae.bin"),
        dsse::pae(&envelope.payload_type, &body),
    )
    .unwrap();
    fs::write(
        tmp.path().join("sig.bin"),
        base64::engine::general_purpose::STANDARD
            .decode(&envelope.signatures[0].sig)
            .unwrap(),
    )
    .unwrap();
    fs::write(tmp.path().join("key.pem"), signer.public().to_pem()).unwrap();
    let out = Command::new("openssl")
        .args([
            "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-rawin", "-in", "pae.bin",
            "-sigfile", "sig.bin",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
