//! Hostile bundle folders from the auditor walk (walk-G, findings F1, F4, F5, F11, F13, F14):
//! the verifier never follows a link, opens a FIFO or device, reads past its size limit or
//! hangs; files nothing signs, artifacts of another run and manifests that are not the
//! signer's canonical bytes all fail a named check.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use lumenflow_proof::bundle::{self, SealRequest, VerifyOptions, REQUIRED_ARTIFACTS};
use lumenflow_proof::{KeyPair, PublicKey};

const RUN: &str = "tc-20261121T000000Z-abcdef";

fn sealed_with(key: &KeyPair, body: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for name in REQUIRED_ARTIFACTS {
        fs::write(dir.path().join(name), body(name)).expect("write artifact");
    }
    bundle::seal(
        dir.path(),
        key,
        &SealRequest {
            run_id: RUN,
            mode: "happy",
            created_at: "2026-11-21T00:00:00.000Z",
        },
    )
    .expect("seal");
    dir
}

fn sealed(key: &KeyPair) -> tempfile::TempDir {
    sealed_with(key, |name| match name {
        "replay-link.txt" => format!("http://127.0.0.1:8787/replay/{RUN}\n"),
        _ => format!("{{\"file\": \"{name}\", \"run_id\": \"{RUN}\"}}\n"),
    })
}

fn failed(v: &bundle::Verification) -> Vec<&'static str> {
    v.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect()
}

fn detail<'a>(v: &'a bundle::Verification, check: &str) -> &'a str {
    v.checks
        .iter()
        .find(|c| c.name == check)
        .map(|c| c.detail.as_str())
        .expect("check present")
}

/// Verify on another thread and give up after a few seconds, so a hang fails the test instead
/// of blocking the suite.
fn verify_within(dir: &Path, pinned: &PublicKey) -> bundle::Verification {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_path_buf();
    let pinned = *pinned;
    std::thread::spawn(move || {
        let _ = tx.send(bundle::verify(&dir, Some(&pinned)));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("verify returned within 10 s (it must never block on a FIFO or device)")
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(ok.success());
}

// F1: a FIFO in the bundle, a symlink to a FIFO outside it and a symlink to /dev/zero each fail
// at once, named, instead of blocking or spinning forever.
#[cfg(unix)]
#[test]
fn fifos_devices_and_links_fail_at_once_and_by_name_f1() {
    let key = KeyPair::generate();
    let pinned = key.public();

    let dir = sealed(&key);
    fs::remove_file(dir.path().join("ask.json")).expect("rm");
    mkfifo(&dir.path().join("ask.json"));
    let v = verify_within(dir.path(), &pinned);
    assert_eq!(failed(&v), ["files_present", "hashes_match"], "{v:#?}");
    assert!(
        detail(&v, "files_present").contains("ask.json is a FIFO"),
        "{v:#?}"
    );
    assert!(!detail(&v, "files_present").contains("missing"), "{v:#?}");

    let outside = tempfile::tempdir().expect("tmp");
    mkfifo(&outside.path().join("outside.fifo"));
    let dir = sealed(&key);
    fs::remove_file(dir.path().join("node-session.json")).expect("rm");
    std::os::unix::fs::symlink(
        outside.path().join("outside.fifo"),
        dir.path().join("node-session.json"),
    )
    .expect("ln");
    let v = verify_within(dir.path(), &pinned);
    assert!(
        detail(&v, "files_present").contains("node-session.json is a symlink"),
        "{v:#?}"
    );
    assert!(
        detail(&v, "hashes_match").contains("node-session.json is a symlink"),
        "{v:#?}"
    );

    let dir = sealed(&key);
    fs::remove_file(dir.path().join("pr-summary.md")).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("pr-summary.md")).expect("ln");
    let v = verify_within(dir.path(), &pinned);
    assert!(
        detail(&v, "hashes_match").contains("pr-summary.md is a symlink"),
        "{v:#?}"
    );

    // A signature or key that is a link is refused the same way.
    let dir = sealed(&key);
    fs::remove_file(dir.path().join("manifest.sig")).expect("rm");
    mkfifo(&dir.path().join("manifest.sig"));
    let v = verify_within(dir.path(), &pinned);
    assert!(
        detail(&v, "signature_valid").contains("manifest.sig is a FIFO"),
        "{v:#?}"
    );
}

// F1: an artifact over the size limit is refused without being read to the end.
#[test]
fn an_artifact_over_the_size_limit_is_refused_f1() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("file-diff.patch"))
        .expect("open");
    file.set_len(bundle::MAX_ARTIFACT_BYTES + 1)
        .expect("sparse file");
    let started = std::time::Instant::now();
    let v = bundle::verify(dir.path(), Some(&key.public()));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(failed(&v), ["hashes_match"], "{v:#?}");
    assert!(
        detail(&v, "hashes_match").contains("file-diff.patch")
            && detail(&v, "hashes_match").contains("limit"),
        "{v:#?}"
    );
}

// F4: a file the manifest does not cover fails files_present and is named.
#[test]
fn files_nothing_signs_fail_files_present_f4() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
    fs::write(dir.path().join("extra-evidence.json"), "evil").expect("w");
    fs::create_dir(dir.path().join(".hidden")).expect("mkdir");
    let v = bundle::verify(dir.path(), Some(&key.public()));
    assert_eq!(failed(&v), ["files_present"], "{v:#?}");
    let d = detail(&v, "files_present");
    assert!(
        d.contains(".hidden, extra-evidence.json") && d.contains("not covered by the signature"),
        "{d}"
    );
}

// F5: artifacts naming another run fail hashes_match, naming the file; each of the four
// places the demo's writer puts a run id is read.
#[test]
fn artifacts_of_another_run_fail_hashes_match_f5() {
    let key = KeyPair::generate();
    let cases: [(&str, String); 4] = [
        ("ask.json", "{\"run_id\": \"tc-other\"}".into()),
        ("node-session.json", "{\"run_id\": \"tc-other\"}".into()),
        (
            "approval.json",
            "{\"status\": \"approved\", \"record\": {\"context\": {\"run_id\": \"tc-other\"}}}"
                .into(),
        ),
        (
            "replay-link.txt",
            "http://127.0.0.1:8787/replay/tc-other\n".into(),
        ),
    ];
    for (file, body) in cases {
        let dir = sealed_with(&key, |name| {
            if name == file {
                body.clone()
            } else if name == "replay-link.txt" {
                format!("http://127.0.0.1:8787/replay/{RUN}\n")
            } else {
                format!("{{\"run_id\": \"{RUN}\"}}\n")
            }
        });
        let v = bundle::verify(dir.path(), Some(&key.public()));
        assert_eq!(failed(&v), ["hashes_match"], "{file}: {v:#?}");
        assert!(
            detail(&v, "hashes_match").contains(&format!("{file}: names run `tc-other`")),
            "{file}: {v:#?}"
        );
    }
    // A policy-blocked approval.json names no run and passes.
    let dir = sealed_with(&key, |name| match name {
        "approval.json" => "{\"status\": \"not_requested\"}".into(),
        "replay-link.txt" => format!("http://127.0.0.1:8787/replay/{RUN}\n"),
        _ => format!("{{\"run_id\": \"{RUN}\"}}\n"),
    });
    assert!(bundle::verify(dir.path(), Some(&key.public())).passed());
}

// F5: a pinned run id that is not the signed one fails signature_valid; a folder named after
// another run is a warning.
#[test]
fn a_pinned_run_id_must_be_the_signed_one_f5() {
    let key = KeyPair::generate();
    let parent = tempfile::tempdir().expect("tmp");
    let dir = parent.path().join("tc-20261122T070225Z-6d317e");
    fs::create_dir(&dir).expect("mkdir");
    let src = sealed(&key);
    for entry in fs::read_dir(src.path()).expect("ls") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), dir.join(entry.file_name())).expect("cp");
    }
    let pinned = key.public();
    let v = bundle::verify(&dir, Some(&pinned));
    assert!(v.passed(), "{v:#?}");
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("tc-20261122T070225Z-6d317e") && w.contains(RUN)),
        "{v:#?}"
    );
    let v = bundle::verify_with(
        &dir,
        &VerifyOptions {
            pinned: Some(&pinned),
            run_id: Some("tc-20261122T070225Z-6d317e"),
        },
    );
    assert_eq!(failed(&v), ["signature_valid"], "{v:#?}");
    assert!(v.manifest_signed);
    let v = bundle::verify_with(
        &dir,
        &VerifyOptions {
            pinned: Some(&pinned),
            run_id: Some(RUN),
        },
    );
    assert!(v.passed(), "{v:#?}");
}

// F11: a tampered manifest does not get an untouched artifact blamed.
#[test]
fn a_tampered_manifest_blames_the_manifest_not_an_artifact_f11() {
    let key = KeyPair::generate();
    let dir = sealed(&key);
    let path = dir.path().join("manifest.json");
    let text = fs::read_to_string(&path).expect("r");
    let (name, hash) = ("replay-link.txt", "sha256:");
    let at = text.find(&format!("\"{name}\":\"{hash}")).expect("entry") + name.len() + 12;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    fs::write(&path, &bytes).expect("w");
    let v = bundle::verify(dir.path(), Some(&key.public()));
    assert_eq!(failed(&v), ["hashes_match", "signature_valid"], "{v:#?}");
    assert!(!v.manifest_signed);
    let d = detail(&v, "hashes_match");
    assert!(d.contains("unsigned manifest") && !d.contains(name), "{d}");
}

// F13: duplicate keys, non-canonical bytes and unknown fields are refused even when the
// manifest is re-signed by the right key.
#[test]
fn only_the_signers_canonical_manifest_is_accepted_f13() {
    let key = KeyPair::generate();
    let resign = |dir: &Path, bytes: &[u8]| {
        fs::write(dir.join("manifest.json"), bytes).expect("w");
        fs::write(dir.join("manifest.sig"), key.sign(bytes)).expect("w");
    };
    let dir = sealed(&key);
    let text = fs::read_to_string(dir.path().join("manifest.json")).expect("r");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");

    let dup = text.replacen(
        "\"mode\":\"happy\"",
        "\"mode\":\"happy\",\"mode\":\"policy-blocked\"",
        1,
    );
    resign(dir.path(), dup.as_bytes());
    let v = bundle::verify(dir.path(), Some(&key.public()));
    assert!(failed(&v).contains(&"schema_supported"), "{v:#?}");
    assert!(
        detail(&v, "schema_supported").contains("duplicate key `mode`"),
        "{v:#?}"
    );

    let pretty = serde_json::to_string_pretty(&value).expect("json");
    resign(dir.path(), pretty.as_bytes());
    let v = bundle::verify(dir.path(), Some(&key.public()));
    assert!(
        detail(&v, "schema_supported").contains("not in canonical JSON form"),
        "{v:#?}"
    );

    let mut noted = value.clone();
    noted["note"] = "trust me".into();
    resign(
        dir.path(),
        lumenflow_contracts::canonical_json::to_canonical_string(&noted).as_bytes(),
    );
    let v = bundle::verify(dir.path(), Some(&key.public()));
    assert!(
        detail(&v, "schema_supported").contains("unknown field `note`"),
        "{v:#?}"
    );

    resign(dir.path(), text.as_bytes());
    assert!(bundle::verify(dir.path(), Some(&key.public())).passed());
}

// F14: text that is no PEM at all says so, instead of blaming a NUL byte it does not hold.
#[test]
fn a_file_with_no_pem_armour_says_so_f14() {
    let err = PublicKey::from_pem("junk\n", "junk.pem").expect_err("not a key");
    let text = err.to_string();
    assert!(
        text.contains("junk.pem") && text.contains("-----BEGIN PUBLIC KEY-----"),
        "{text}"
    );
    assert!(!text.contains("NUL"), "{text}");
}
