//! GPU-TEE attestation (Q38): a token is verified (signature by a configured issuer key,
//! expiry, nonce freshness and single use, expected measurements) before
//! `campus:gpu_attestation_recorded` is recorded; every failing token is refused with its
//! reason and leaves no record and no event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lumenflow_kernel::events::ledger::read_from;
use lumenflow_kernel::events::ledger_path;
use lumenflow_packs::campus::attest::{self, AttestError, Policy};
use lumenflow_packs::campus::events::Recorder;
use lumenflow_packs::campus::ingest;
use lumenflow_packs::campus::store::Store;
use serde_json::{json, Value};

const ISSUER: &str = "https://attestation.example";

struct Ws {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    recorder: Recorder,
    policy: Policy,
    key: SigningKey,
}

fn now() -> i64 {
    lumenflow_contracts::time::Timestamp::now().unix_millis() / 1000
}

fn workspace() -> Ws {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let yaml = format!(
        r#"id: ws-campus
name: Campus attestation test
packs: []
lanes: []
security:
  allowed_scopes: []
memory_namespace: m
event_namespace: e
campus:
  attestation:
    nonce_ttl_seconds: 300
    verifiers:
      - id: attestation-service-a
        issuer: "{ISSUER}"
        algorithm: EdDSA
        public_key_pem: {pem}
    expected_measurements:
      firmware: "sha256:1111"
      driver: "sha256:2222"
"#,
        pem = serde_json::to_string(&pem).unwrap()
    );
    fs::write(root.join("workspace.yaml"), yaml).unwrap();
    let store = Store::new(&root);
    let recorder = Recorder::open(&root, "ws-campus").unwrap();
    ingest::add_facility(&store, &recorder, "campus-fac-001", None, Some("eu-west-1")).unwrap();
    let policy = Policy::load(&root).unwrap_or_else(|e| panic!("{e}"));
    Ws {
        _dir: dir,
        root,
        store,
        recorder,
        policy,
        key,
    }
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let der = key.to_pkcs8_der().unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("attestation-service-a".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
}

fn claims(nonce: &str) -> Value {
    json!({
        "iss": ISSUER,
        "iat": now(),
        "exp": now() + 120,
        "jti": "att-0001",
        "eat_nonce": nonce,
        "ueid": "opaque-device-1",
        "measurements": {"firmware": "sha256:1111", "driver": "sha256:2222", "extra": "x"}
    })
}

fn refused(err: AttestError) -> String {
    match err {
        AttestError::Refused(reason) => reason,
        other => panic!("expected a refusal, got {other}"),
    }
}

fn attestation_events(ws: &Ws) -> usize {
    read_from(&ledger_path(&ws.root), 0, None)
        .unwrap()
        .0
        .iter()
        .filter(|e| e.kind == "campus:gpu_attestation_recorded")
        .count()
}

#[test]
fn a_verified_token_is_recorded_once_with_its_digests() {
    let ws = workspace();
    let c = attest::issue_nonce(&ws.store, &ws.policy, "campus-fac-001", "node-a").unwrap();
    let token = sign(&ws.key, &claims(&c.nonce));
    let recorded = attest::record(
        &ws.store,
        &ws.recorder,
        &ws.policy,
        "campus-fac-001",
        "node-a",
        &token,
        &c.nonce,
    )
    .unwrap();
    assert_eq!(recorded.attestation_id, "att-0001");
    assert_eq!(recorded.verifier, "attestation-service-a");
    assert_eq!(
        recorded.evidence_digest,
        lumenflow_contracts::digest::Sha256Digest::of(token.as_bytes())
    );
    assert_eq!(
        attest::recorded(&ws.store, "campus-fac-001").unwrap().len(),
        1
    );
    let events: Vec<_> = read_from(&ledger_path(&ws.root), 0, None)
        .unwrap()
        .0
        .into_iter()
        .filter(|e| e.kind == "campus:gpu_attestation_recorded")
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload["node_id"], "node-a");
    lumenflow_contracts::payloads::parse_payload(&events[0].kind, &events[0].payload).unwrap();

    // The same nonce again is a replay.
    let again = attest::record(
        &ws.store,
        &ws.recorder,
        &ws.policy,
        "campus-fac-001",
        "node-a",
        &token,
        &c.nonce,
    )
    .unwrap_err();
    assert!(refused(again).contains("already been used"));
    assert_eq!(attestation_events(&ws), 1);
}

#[test]
fn failing_tokens_are_refused_with_the_reason_and_leave_nothing() {
    let ws = workspace();
    let other_key = SigningKey::from_bytes(&[9u8; 32]);
    type Case = (
        &'static str,
        Box<dyn Fn(&str) -> (SigningKey, Value)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "wrong key",
            Box::new(move |n| (other_key.clone(), claims(n))),
            "signature does not verify",
        ),
        (
            "expired",
            Box::new(|n| {
                let mut c = claims(n);
                c["exp"] = json!(now() - 3600);
                (SigningKey::from_bytes(&[7u8; 32]), c)
            }),
            "expired",
        ),
        (
            "wrong issuer",
            Box::new(|n| {
                let mut c = claims(n);
                c["iss"] = json!("https://elsewhere.example");
                (SigningKey::from_bytes(&[7u8; 32]), c)
            }),
            "issuer",
        ),
        (
            "stale",
            Box::new(|n| {
                let mut c = claims(n);
                c["iat"] = json!(now() - 3600);
                (SigningKey::from_bytes(&[7u8; 32]), c)
            }),
            "stale",
        ),
        (
            "other nonce",
            Box::new(|_| (SigningKey::from_bytes(&[7u8; 32]), claims("not-the-nonce"))),
            "eat_nonce",
        ),
        (
            "measurement mismatch",
            Box::new(|n| {
                let mut c = claims(n);
                c["measurements"]["driver"] = json!("sha256:9999");
                (SigningKey::from_bytes(&[7u8; 32]), c)
            }),
            "`driver` is `sha256:9999`, expected `sha256:2222`",
        ),
        (
            "measurement missing",
            Box::new(|n| {
                let mut c = claims(n);
                c["measurements"]
                    .as_object_mut()
                    .unwrap()
                    .remove("firmware");
                (SigningKey::from_bytes(&[7u8; 32]), c)
            }),
            "`firmware` is not reported",
        ),
    ];
    for (name, make, reason) in cases {
        let c = attest::issue_nonce(&ws.store, &ws.policy, "campus-fac-001", "node-a").unwrap();
        let (key, claims) = make(&c.nonce);
        let token = sign(&key, &claims);
        let err = attest::record(
            &ws.store,
            &ws.recorder,
            &ws.policy,
            "campus-fac-001",
            "node-a",
            &token,
            &c.nonce,
        )
        .unwrap_err();
        assert_eq!(err.code(), "ATTESTATION_REFUSED", "{name}");
        let message = refused(err);
        assert!(message.contains(reason), "{name}: {message}");
    }
    // Not a JWT; a nonce never issued; a nonce for another node.
    let c = attest::issue_nonce(&ws.store, &ws.policy, "campus-fac-001", "node-a").unwrap();
    let err = attest::record(
        &ws.store,
        &ws.recorder,
        &ws.policy,
        "campus-fac-001",
        "node-a",
        "garbage",
        &c.nonce,
    )
    .unwrap_err();
    assert!(refused(err).contains("not a signed JWT"));
    let token = sign(&ws.key, &claims("feed"));
    let err = attest::record(
        &ws.store,
        &ws.recorder,
        &ws.policy,
        "campus-fac-001",
        "node-a",
        &token,
        "feed",
    )
    .unwrap_err();
    assert!(refused(err).contains("not issued by this workspace"));
    let c = attest::issue_nonce(&ws.store, &ws.policy, "campus-fac-001", "node-b").unwrap();
    let token = sign(&ws.key, &claims(&c.nonce));
    let err = attest::record(
        &ws.store,
        &ws.recorder,
        &ws.policy,
        "campus-fac-001",
        "node-a",
        &token,
        &c.nonce,
    )
    .unwrap_err();
    assert!(refused(err).contains("issued for node `node-b`"));

    assert!(attest::recorded(&ws.store, "campus-fac-001")
        .unwrap()
        .is_empty());
    assert_eq!(attestation_events(&ws), 0);
}

#[test]
fn a_policy_without_verifiers_or_measurements_is_refused() {
    let err = Policy::from_value(json!({"verifiers": [], "expected_measurements": {"a": "b"}}))
        .unwrap_err();
    assert_eq!(err.code(), "CONFIG_INVALID");
    let err = Policy::from_value(json!({
        "verifiers": [{"id": "v", "issuer": "i", "algorithm": "EdDSA", "public_key_pem": "nope"}],
        "expected_measurements": {"a": "b"}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("public key"), "{err}");
    let err = Policy::from_value(json!({
        "verifiers": [{"id": "v", "issuer": "i", "algorithm": "HS256", "public_key_pem": "x"}],
        "expected_measurements": {"a": "b"}
    }))
    .unwrap_err();
    assert!(err.to_string().contains("HS256"), "{err}");
}

#[test]
fn a_nonce_is_spent_once_by_concurrent_records() {
    // A replay raced against the first use: threads here, the sidecar and a
    // `lumenflow campus attest record` in practice. Exactly one record spends the nonce.
    for round in 0..5 {
        let ws = workspace();
        let c = attest::issue_nonce(&ws.store, &ws.policy, "campus-fac-001", "node-a").unwrap();
        let token = sign(&ws.key, &claims(&c.nonce));
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<Result<String, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (ws, c, token, barrier) = (&ws, &c, &token, &barrier);
                    s.spawn(move || {
                        let store = Store::new(&ws.root);
                        barrier.wait();
                        attest::record(
                            &store,
                            &ws.recorder,
                            &ws.policy,
                            "campus-fac-001",
                            "node-a",
                            token,
                            &c.nonce,
                        )
                        .map(|r| r.attestation_id)
                        .map_err(refused)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let spent = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(spent, 1, "round {round}: {results:?}");
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|reason| reason.contains("already been used")));
        assert_eq!(attestation_events(&ws), 1);
        assert_eq!(
            attest::recorded(&ws.store, "campus-fac-001").unwrap().len(),
            1
        );
    }
}

#[test]
fn concurrent_challenges_are_all_kept() {
    // Issuing rewrites the nonce store: two at once must not drop one.
    let ws = workspace();
    let nonces: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let ws = &ws;
                s.spawn(move || {
                    let store = Store::new(&ws.root);
                    let node = format!("node-{i}");
                    attest::issue_nonce(&store, &ws.policy, "campus-fac-001", &node)
                        .unwrap()
                        .nonce
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, nonce) in nonces.iter().enumerate() {
        let token = sign(&ws.key, &claims(nonce));
        let node = format!("node-{i}");
        attest::record(
            &ws.store,
            &ws.recorder,
            &ws.policy,
            "campus-fac-001",
            &node,
            &token,
            nonce,
        )
        .unwrap_or_else(|e| panic!("nonce {i} was lost: {e}"));
    }
}

#[test]
fn concurrent_facility_registrations_are_all_kept() {
    // Registering rewrites facilities.json: eight at once (threads here; the sidecar and a
    // `lumenflow campus facility add` in practice) must leave all eight.
    let ws = workspace();
    std::thread::scope(|s| {
        for i in 0..8 {
            let ws = &ws;
            s.spawn(move || {
                let store = Store::new(&ws.root);
                ingest::add_facility(&store, &ws.recorder, &format!("fac-{i}"), None, None)
                    .unwrap();
            });
        }
    });
    let ids: Vec<String> = ws
        .store
        .facilities()
        .unwrap()
        .into_iter()
        .map(|f| f.facility_id)
        .collect();
    assert_eq!(ids.len(), 9, "{ids:?}");
}

#[test]
fn concurrent_ingests_of_one_energy_window_store_it_once() {
    // The checks against stored windows and the append are one step: of four ingests of the
    // same window at once, one stores it and the others are refused as overlapping.
    let ws = workspace();
    let file = ws.root.join("window.jsonl");
    fs::write(
        &file,
        r#"{"type":"energy","facility_id":"campus-fac-001","source":"facility_meter:a","valid_from":"2026-06-13T15:30:00.000Z","valid_to":"2026-06-13T15:45:00.000Z","quantity_joules":975000,"energy_source":"smart_meter","energy_provenance":"measured"}
"#,
    )
    .unwrap();
    let results: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (ws, file) = (&ws, &file);
                s.spawn(move || {
                    let store = Store::new(&ws.root);
                    ingest::ingest_file(
                        &store,
                        &ws.recorder,
                        file,
                        ingest::IngestOptions {
                            skip_bad_rows: false,
                            format: None,
                        },
                    )
                    .is_ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    assert_eq!(ws.store.energy("campus-fac-001").unwrap().len(), 1);
}
