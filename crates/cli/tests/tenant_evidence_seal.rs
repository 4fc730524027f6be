//! The tenant-evidence receipt meets the real control plane (issue 9, TEV-05 to TEV-07): the
//! pack serializes an unsealed CanonicalReceipt of a proof bundle, the real `lumenflow cloud
//! serve` accepts it at `POST /api/v1/receipts/seal`, recomputes the same `content_digest` and
//! signs it; the signature verifies with the control plane's public key. A tampered receipt and
//! a receipt carrying a seal are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use lumenflow_contracts::payloads::RecordKind;
use lumenflow_contracts::time::Timestamp;
use lumenflow_packs::tenant_evidence::export::build_receipt;
use lumenflow_proof::PublicKey;
use serde_json::{json, Value};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lumenflow(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lumenflow"));
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("LUMENFLOW_CLOUD_DATABASE")
        .stdin(Stdio::null());
    cmd
}

fn serve(dir: &Path, database: &str, key: &Path) -> Server {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut child = lumenflow(
        dir,
        &[
            "cloud",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            database,
            "--key",
            key.to_str().unwrap(),
            "--registry-refresh",
            "0",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::from(log))
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "server did not start: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            )
        });
    let url = line
        .split("listening on ")
        .nth(1)
        .expect("`listening on URL` line")
        .trim()
        .to_string();
    Server { child, url }
}

fn send(url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let req = match body {
        Some(b) => client
            .post(url)
            .header("content-type", "application/json")
            .body(b.to_string()),
        None => client.get(url),
    };
    let resp = req.bearer_auth(token).send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A workspace folder with two evidence records of `tenant-a`.
fn evidence_workspace(dir: &Path) {
    for (kind, folder, id) in [
        ("checkpoint", "checkpoints", "cp-1"),
        ("attestation", "attestations", "att-1"),
    ] {
        let d = dir.join(".lumenflow/state/campus/evidence").join(folder);
        std::fs::create_dir_all(&d).unwrap();
        let body = json!({"record_id": id, "record_kind": kind, "tenant_id": "tenant-a",
                          "recorded_at": "2026-11-21T08:00:00.000Z", "data": {"n": 1}});
        std::fs::write(d.join(format!("{id}.json")), body.to_string()).unwrap();
    }
}

#[test]
fn the_exported_receipt_is_sealed_by_the_real_control_plane() {
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", home.path().join("cloud.db").display());
    let key = home.path().join("cloud.key");
    let server = serve(home.path(), &database, &key);
    let out = lumenflow(
        home.path(),
        &[
            "cloud",
            "operator-token",
            "--database",
            &database,
            "--key",
            key.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let ws = tempfile::tempdir().unwrap();
    evidence_workspace(ws.path());
    let receipt = build_receipt(
        ws.path(),
        "ws-42",
        "tenant-a",
        "bundle-1",
        &[
            (RecordKind::Checkpoint, "cp-1".into()),
            (RecordKind::Attestation, "att-1".into()),
        ],
        Timestamp::now(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let body = receipt.to_value();
    let digest = receipt.content_digest.to_string();

    let seal_url = format!("{}/api/v1/receipts/seal", server.url);
    let (status, sealed) = send(&seal_url, &token, Some(&body));
    assert_eq!(status, 200, "{sealed}");
    // The control plane computed the same digest over the same canonical JSON (Q25).
    assert_eq!(sealed["content_digest"], digest);
    assert_eq!(sealed["seal"]["algorithm"], "ed25519");
    let receipt_id = sealed["receipt_id"].as_str().unwrap();

    // The seal is a signature over the digest string, by the control plane's key.
    let (status, stored) = send(
        &format!("{}/api/v1/receipts/{receipt_id}", server.url),
        &token,
        None,
    );
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["receipt"], body);
    assert_eq!(stored["workspace_id"], "ws-42");
    let public =
        PublicKey::from_pem(stored["public_key_pem"].as_str().unwrap(), "control plane").unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sealed["seal"]["signature"].as_str().unwrap())
        .unwrap();
    public.verify(digest.as_bytes(), &sig).unwrap();

    // Tampered after export, or carrying a seal: refused.
    let mut tampered = body.clone();
    tampered["tenant_id"] = json!("tenant-b");
    let (status, err) = send(&seal_url, &token, Some(&tampered));
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "RECEIPT_DIGEST_MISMATCH");
    let mut with_seal = body.clone();
    with_seal["signature"] = json!("x");
    assert_eq!(send(&seal_url, &token, Some(&with_seal)).0, 400);
}
