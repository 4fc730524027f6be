//! The trusted-compute bundle (TCD-03 to TCD-09, Q31): sealing, the four checks, stock-tool
//! verification with `openssl` and `sha256sum`, and the attacks a verifier must catch.

use std::fs;
use std::path::Path;
use std::process::Command;

use lumenflow_proof::bundle::{self, SealRequest, REQUIRED_ARTIFACTS};
use lumenflow_proof::{KeyPair, PublicKey};

const FIXTURE_SECRET: [u8; 32] = [7u8; 32];

fn write_artifacts(dir: &Path) {
    for name in REQUIRED_ARTIFACTS {
        let body = match name {
            "tool-calls.jsonl" => String::new(),
            "replay-link.txt" => "http://127.0.0.1:8787/replay/tc-20261121T000000Z-abcdef\n".into(),
            _ => format!("{{\"file\": \"{name}\"}}\n"),
        };
        fs::write(dir.join(name), body).expect("write artifact");
    }
}

fn sealed(key: &KeyPair) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    write_artifacts(dir.path());
    bundle::seal(
        dir.path(),
        key,
        &SealRequest {
            run_id: "tc-20261121T000000Z-abcdef",
            mode: "happy",
            created_at: "2026-11-21T00:00:00.000Z",
        },
    )
    .expect("seal");
    dir
}

fn failed_checks(v: &bundle::Verification) -> Vec<&'static str> {
    v.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect()
}

#[test]
fn a_sealed_bundle_passes_all_four_checks_tcd_06() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
    let v = bundle::verify(dir.path(), None);
    assert!(v.passed(), "{v:#?}");
    assert!(!v.key_pinned);
    let names: Vec<_> = v.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "files_present",
            "schema_supported",
            "hashes_match",
            "signature_valid"
        ]
    );
    assert!(v.checks[3].detail.contains("self-asserted"));
    let pinned = bundle::verify(dir.path(), Some(&key.public()));
    assert!(pinned.passed() && pinned.key_pinned, "{pinned:#?}");
}

#[test]
fn openssl_and_sha256sum_verify_without_lumenflow_code_q31() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
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
        .current_dir(dir.path())
        .output()
        .expect("openssl must be installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"));

    // The same command refuses a tampered manifest.
    let manifest = dir.path().join("manifest.json");
    let text = fs::read_to_string(&manifest).expect("read");
    fs::write(&manifest, text.replace("happy", "hapPy")).expect("write");
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
        .current_dir(dir.path())
        .output()
        .expect("openssl");
    assert!(!out.status.success());
    fs::write(&manifest, text).expect("restore");

    // sha256sum agrees with every artifact hash.
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest).expect("read")).expect("json");
    for name in REQUIRED_ARTIFACTS {
        let out = Command::new("sha256sum")
            .arg(name)
            .current_dir(dir.path())
            .output()
            .expect("sha256sum");
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text.split_whitespace().next().expect("hash");
        assert_eq!(
            m["artifact_hashes"][name],
            format!("sha256:{hex}"),
            "{name}"
        );
    }
    // And the key id is the SHA-256 of the raw key inside the PEM's SPKI (last 32 bytes).
    let der = Command::new("openssl")
        .args([
            "pkey",
            "-pubin",
            "-in",
            "verifier-public-key.pem",
            "-outform",
            "DER",
        ])
        .current_dir(dir.path())
        .output()
        .expect("openssl");
    let raw = &der.stdout[der.stdout.len() - 32..];
    assert_eq!(
        m["signer_key_id"],
        format!("ed25519:{}", lumenflow_contracts::digest::sha256_hex(raw))
    );
}

#[test]
fn a_key_made_by_openssl_signs_bundles_we_verify() {
    let dir = tempfile::tempdir().expect("tmp");
    let key_path = dir.path().join("k.pem");
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key_path)
        .status()
        .expect("openssl");
    assert!(ok.success());
    let pem = fs::read_to_string(&key_path).expect("pem");
    let key = KeyPair::from_pkcs8_pem(&pem, "k.pem").expect("openssl's PKCS#8 parses");
    let b = sealed(&key);
    assert!(bundle::verify(b.path(), Some(&key.public())).passed());
}

/// The other way round: a key we write is one OpenSSL reads, so an operator can derive its
/// public key or move it to other tooling (OpenSSL 3.0 refused the PKCS#8 v2 we used to write).
#[test]
fn a_key_we_write_is_read_by_openssl() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = KeyPair::generate();
    let key_path = dir.path().join("k.pem");
    fs::write(&key_path, key.to_pkcs8_pem().expect("pem")).expect("write");
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key_path)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(public.trim(), key.public().to_pem().trim());
}

#[test]
fn tampering_is_caught_by_the_right_check() {
    let key = KeyPair::generate();

    // An artifact edited after sealing: the hashes no longer match, the signature still does.
    let dir = sealed(&key);
    fs::write(dir.path().join("file-diff.patch"), "evil").expect("w");
    let v = bundle::verify(dir.path(), None);
    assert_eq!(failed_checks(&v), ["hashes_match"], "{v:#?}");
    assert!(v.checks[2].detail.contains("file-diff.patch"));

    // A missing artifact.
    let dir = sealed(&key);
    fs::remove_file(dir.path().join("approval.json")).expect("rm");
    let v = bundle::verify(dir.path(), None);
    assert!(failed_checks(&v).contains(&"files_present"));
    assert!(v.checks[0].detail.contains("approval.json"));

    // A manifest edited to match an edited artifact: the signature catches it.
    let dir = sealed(&key);
    fs::write(dir.path().join("pr-summary.md"), "different").expect("w");
    let manifest = dir.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest).expect("r")).expect("j");
    m["artifact_hashes"]["pr-summary.md"] = format!(
        "sha256:{}",
        lumenflow_contracts::digest::sha256_hex(b"different")
    )
    .into();
    fs::write(&manifest, serde_json::to_vec(&m).expect("j")).expect("w");
    let v = bundle::verify(dir.path(), None);
    // The hashes of a manifest whose signature fails are not checked, so no artifact is blamed
    // (F11).
    assert_eq!(
        failed_checks(&v),
        ["hashes_match", "signature_valid"],
        "{v:#?}"
    );
    assert!(v.checks[2].detail.contains("unsigned manifest"), "{v:#?}");
    assert!(!v.checks[2].detail.contains("pr-summary.md"), "{v:#?}");

    // Re-signed by an attacker with their own key and PEM: passes only when not pinned.
    let attacker = KeyPair::generate();
    let dir = sealed(&attacker);
    assert!(bundle::verify(dir.path(), None).passed());
    let v = bundle::verify(dir.path(), Some(&key.public()));
    assert_eq!(failed_checks(&v), ["signature_valid"]);
    assert!(v.checks[3].detail.contains("pinned key"));

    // A PEM swapped without updating signer_key_id.
    let dir = sealed(&key);
    fs::write(
        dir.path().join("verifier-public-key.pem"),
        attacker.public().to_pem(),
    )
    .expect("w");
    let v = bundle::verify(dir.path(), None);
    assert_eq!(failed_checks(&v), ["hashes_match", "signature_valid"]);
    assert!(v.checks[3].detail.contains("signer_key_id"));

    // A truncated signature.
    let dir = sealed(&key);
    fs::write(dir.path().join("manifest.sig"), [0u8; 10]).expect("w");
    assert_eq!(
        failed_checks(&bundle::verify(dir.path(), None)),
        ["hashes_match", "signature_valid"]
    );
}

#[test]
fn unsupported_schema_and_escaping_names_are_refused() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
    let manifest = dir.path().join("manifest.json");
    let original = fs::read(&manifest).expect("r");
    let mut m: serde_json::Value = serde_json::from_slice(&original).expect("j");

    m["schema_version"] = 2.into();
    fs::write(&manifest, serde_json::to_vec(&m).expect("j")).expect("w");
    let v = bundle::verify(dir.path(), None);
    assert!(!v.passed());
    assert!(failed_checks(&v).contains(&"schema_supported"));
    assert!(
        v.checks.iter().any(|c| c.detail.contains("supports [1]")),
        "{v:#?}"
    );

    // A manifest naming a file outside the bundle never gets it read or hashed, even when the
    // forger re-signs it.
    let mut m: serde_json::Value = serde_json::from_slice(&original).expect("j");
    m["required_artifacts"]
        .as_array_mut()
        .expect("list")
        .push("../outside.txt".into());
    m["artifact_hashes"]["../outside.txt"] = "sha256:00".into();
    let bytes = lumenflow_contracts::canonical_json::to_canonical_string(&m).into_bytes();
    fs::write(&manifest, &bytes).expect("w");
    fs::write(dir.path().join("manifest.sig"), key.sign(&bytes)).expect("w");
    let v = bundle::verify(dir.path(), None);
    assert!(failed_checks(&v).contains(&"files_present"));
    assert!(failed_checks(&v).contains(&"hashes_match"));

    // Garbage manifests are reported, not panicked on.
    for bytes in [&b""[..], b"[]", b"{\"schema_version\": \"1\"}", b"\xff\xfe"] {
        fs::write(&manifest, bytes).expect("w");
        let v = bundle::verify(dir.path(), None);
        assert!(!v.passed());
        assert_eq!(v.checks.len(), 4);
    }
}

#[cfg(unix)]
#[test]
fn a_symlinked_artifact_is_not_followed() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
    let outside = tempfile::NamedTempFile::new().expect("tmp");
    fs::write(outside.path(), "{\"file\": \"ask.json\"}\n").expect("w");
    fs::remove_file(dir.path().join("ask.json")).expect("rm");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("ask.json")).expect("ln");
    let v = bundle::verify(dir.path(), None);
    assert!(failed_checks(&v).contains(&"files_present"), "{v:#?}");
    assert!(failed_checks(&v).contains(&"hashes_match"));
    assert!(
        v.checks[0].detail.contains("ask.json is a symlink"),
        "{v:#?}"
    );
}

/// The bundle format is a contract with third-party verifiers: a fixed key and fixed artifacts
/// must keep producing these exact bytes (Ed25519 signatures are deterministic).
/// `UPDATE_GOLDEN=1` rewrites them; review the diff.
#[test]
fn golden_bundle_bytes_are_stable() {
    let key = KeyPair::from_secret_bytes(&FIXTURE_SECRET);
    let dir = sealed(&key);
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/proof/trusted-compute-v1");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::create_dir_all(&golden).expect("mkdir");
        for entry in fs::read_dir(dir.path()).expect("ls") {
            let entry = entry.expect("entry");
            fs::copy(entry.path(), golden.join(entry.file_name())).expect("copy");
        }
    }
    for name in ["manifest.json", "manifest.sig", "verifier-public-key.pem"] {
        assert_eq!(
            fs::read(dir.path().join(name)).expect("new"),
            fs::read(golden.join(name)).expect("golden (run with UPDATE_GOLDEN=1 once)"),
            "{name} changed"
        );
    }
    // The committed fixture verifies as a bundle in its own right, pinned to the fixture key.
    let pinned = PublicKey::from_pem(
        &fs::read_to_string(golden.join("verifier-public-key.pem")).expect("pem"),
        "fixture",
    )
    .expect("pem");
    assert!(bundle::verify(&golden, Some(&pinned)).passed());
}
