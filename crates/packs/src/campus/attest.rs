//! GPU-TEE attestation (Q38): an attestation token is verified before anything is recorded.
//!
//! The token is an Entity Attestation Token (RFC 9711) in its JWT form, signed by an
//! attestation service whose public keys the workspace configures (`campus.attestation
//! .verifiers` in workspace.yaml, EdDSA or ES256). Verification checks, in order: the signature
//! against a configured verifier whose issuer is the token's `iss`; expiry (`exp`, with the
//! configured clock skew) and issue time (`iat` not in the future, not older than the nonce
//! lifetime); the nonce (`eat_nonce`, a string or an array of strings) is the one this workspace
//! issued for that facility and node with [`issue_nonce`], unexpired and never used before (a
//! nonce is spent by the first verification that presents it, whether it passes or not); and
//! every expected measurement of the workspace's policy (`campus.attestation
//! .expected_measurements`) is reported in the token's `measurements` claim with the same value.
//!
//! Only a token that passes is recorded (`.lumenflow/state/campus/attestations/<facility>.jsonl`)
//! and announced as `campus:gpu_attestation_recorded`; a failing one is refused with the reason
//! and leaves no record. Verifier ids and measurement names are opaque labels (GOV-02).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lumenflow_contracts::canonical_json::to_canonical_vec;
use lumenflow_contracts::digest::Sha256Digest;
use lumenflow_contracts::kinds::CampusKind;
use lumenflow_contracts::payloads::GpuAttestationRecorded;
use lumenflow_contracts::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::Recorder;
use super::model::valid_id;
use super::store::{append_bytes, read_json, with_lock, write_json, Store, StoreError};

/// Default lifetime of a nonce, and the oldest `iat` accepted, in seconds.
pub const DEFAULT_NONCE_TTL_SECONDS: i64 = 300;
/// Default tolerance for clock differences with the attestation service, in seconds.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;

/// Why an attestation was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The workspace's attestation configuration is missing or invalid.
    #[error("attestation configuration: {0}")]
    Config(String),
    /// The token did not verify; nothing was recorded.
    #[error("attestation refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Emit(String),
}

impl AttestError {
    pub fn code(&self) -> &'static str {
        match self {
            AttestError::Config(_) => "CONFIG_INVALID",
            AttestError::Refused(_) => "ATTESTATION_REFUSED",
            AttestError::Invalid(_) => "INVALID_INPUT",
            AttestError::Store(e) => e.code(),
            AttestError::Emit(_) => "LEDGER_WRITE_FAILED",
        }
    }
}

/// One configured attestation service.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifierConfig {
    /// Opaque identifier, recorded as the attestation's `verifier`.
    pub id: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// `EdDSA` or `ES256`.
    pub algorithm: String,
    /// Its public key (SPKI PEM).
    pub public_key_pem: String,
}

/// The workspace's attestation policy (`campus.attestation`).
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub verifiers: Vec<VerifierConfig>,
    #[serde(default)]
    pub expected_measurements: BTreeMap<String, String>,
    #[serde(default)]
    pub nonce_ttl_seconds: Option<i64>,
    #[serde(default)]
    pub max_clock_skew_seconds: Option<u64>,
}

impl Policy {
    /// From the `campus` block of workspace.yaml.
    pub fn load(workspace_dir: &Path) -> Result<Policy, AttestError> {
        let doc = lumenflow_kernel::workspace::read_workspace(workspace_dir)
            .map_err(|d| AttestError::Config(format!("cannot read workspace.yaml: {d}")))?;
        let block = lumenflow_kernel::workspace::root_value(&doc, super::CONFIG_KEY)
            .and_then(|c| c.get("attestation").cloned())
            .ok_or_else(|| {
                AttestError::Config(
                    "workspace.yaml has no `campus.attestation` block (verifiers and expected measurements)".into(),
                )
            })?;
        Policy::from_value(block)
    }

    pub fn from_value(value: Value) -> Result<Policy, AttestError> {
        // Checked here, not by the config schema (see config.schema.json), and per key, so the
        // message names the measurement.
        if let Some(Value::Object(expected)) = value.get("expected_measurements") {
            for (name, v) in expected {
                if v.as_str().is_none_or(str::is_empty) {
                    return Err(AttestError::Config(format!(
                        "`campus.attestation.expected_measurements.{name}`: expected a non-empty string (the value the token must report), found {v}"
                    )));
                }
            }
        }
        let policy: Policy = serde_json::from_value(value)
            .map_err(|e| AttestError::Config(format!("`campus.attestation`: {e}")))?;
        if policy.verifiers.is_empty() {
            return Err(AttestError::Config(
                "`campus.attestation.verifiers` is empty: no attestation service is trusted".into(),
            ));
        }
        if policy.expected_measurements.is_empty() {
            return Err(AttestError::Config(
                "`campus.attestation.expected_measurements` is empty: nothing to check the reported measurements against".into(),
            ));
        }
        for v in &policy.verifiers {
            algorithm(&v.algorithm)
                .map_err(|m| AttestError::Config(format!("verifier `{}`: {m}", v.id)))?;
            decoding_key(v)
                .map_err(|m| AttestError::Config(format!("verifier `{}`: {m}", v.id)))?;
        }
        Ok(policy)
    }

    fn nonce_ttl(&self) -> i64 {
        self.nonce_ttl_seconds
            .unwrap_or(DEFAULT_NONCE_TTL_SECONDS)
            .max(1)
    }

    fn skew(&self) -> u64 {
        self.max_clock_skew_seconds
            .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS)
    }
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "EdDSA" => Ok(Algorithm::EdDSA),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(format!(
            "algorithm `{other}` is not supported (expected `EdDSA` or `ES256`)"
        )),
    }
}

fn decoding_key(v: &VerifierConfig) -> Result<DecodingKey, String> {
    let pem = v.public_key_pem.as_bytes();
    match algorithm(&v.algorithm)? {
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => DecodingKey::from_ec_pem(pem),
    }
    .map_err(|e| format!("`public_key_pem` is not a usable public key: {e}"))
}

/// A nonce this workspace issued for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: String,
    pub facility_id: String,
    pub node_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default)]
    pub used: bool,
}

fn nonces_path(store: &Store) -> PathBuf {
    store.root().join("attestations").join("nonces.json")
}

fn attestations_path(store: &Store, facility_id: &str) -> PathBuf {
    store
        .root()
        .join("attestations")
        .join(format!("{facility_id}.jsonl"))
}

fn check_ids(store: &Store, facility_id: &str, node_id: &str) -> Result<(), AttestError> {
    if !valid_id(node_id) {
        return Err(AttestError::Invalid(format!(
            "`{node_id}` is not a valid node id"
        )));
    }
    if store.facility(facility_id)?.is_none() {
        return Err(AttestError::Invalid(format!(
            "facility `{facility_id}` is not registered"
        )));
    }
    Ok(())
}

/// Issue a fresh nonce for `node_id` (the challenge the attestation service must echo in
/// `eat_nonce`). Expired nonces are dropped from the store.
pub fn issue_nonce(
    store: &Store,
    policy: &Policy,
    facility_id: &str,
    node_id: &str,
) -> Result<Challenge, AttestError> {
    check_ids(store, facility_id, node_id)?;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let now = Timestamp::now();
    let challenge = Challenge {
        nonce: nonce.clone(),
        facility_id: facility_id.to_string(),
        node_id: node_id.to_string(),
        issued_at: now,
        expires_at: Timestamp::from_unix_millis(now.unix_millis() + policy.nonce_ttl() * 1000),
        used: false,
    };
    let path = nonces_path(store);
    with_lock(&path, || {
        let mut all: BTreeMap<String, Challenge> = read_json(&path)?.unwrap_or_default();
        all.retain(|_, c| c.expires_at > now);
        all.insert(nonce, challenge.clone());
        write_json(&path, &all)?;
        Ok::<_, AttestError>(())
    })?;
    Ok(challenge)
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verified {
    pub attestation_id: String,
    pub verifier: String,
    pub measurements: BTreeMap<String, String>,
}

/// Verify a token's signature, times, nonce and measurements (no state is read or written).
pub fn verify_token(
    policy: &Policy,
    token: &str,
    expected_nonce: &str,
    now: Timestamp,
) -> Result<Verified, AttestError> {
    let refused = |m: String| AttestError::Refused(m);
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| refused(format!("the token is not a signed JWT: {e}")))?;
    let mut failures = Vec::new();
    let mut verified = None;
    for v in &policy.verifiers {
        let Ok(alg) = algorithm(&v.algorithm) else {
            continue;
        };
        if alg != header.alg {
            continue;
        }
        if header.kid.as_deref().is_some_and(|kid| kid != v.id) {
            continue;
        }
        let Ok(key) = decoding_key(v) else { continue };
        let mut validation = Validation::new(alg);
        validation.leeway = policy.skew();
        validation.validate_aud = false;
        validation.set_issuer(&[v.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        match jsonwebtoken::decode::<Value>(token, &key, &validation) {
            Ok(data) => {
                verified = Some((v, data.claims));
                break;
            }
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                let reason = match e.kind() {
                    ErrorKind::InvalidSignature => "the signature does not verify".to_string(),
                    ErrorKind::ExpiredSignature => "the token has expired (`exp`)".to_string(),
                    ErrorKind::ImmatureSignature => {
                        "the token is not valid yet (`nbf`)".to_string()
                    }
                    ErrorKind::InvalidIssuer => format!("the issuer is not `{}`", v.issuer),
                    ErrorKind::MissingRequiredClaim(c) => format!("the claim `{c}` is missing"),
                    _ => e.to_string(),
                };
                failures.push(format!("verifier `{}`: {reason}", v.id));
            }
        }
    }
    let Some((verifier, claims)) = verified else {
        return Err(refused(if failures.is_empty() {
            format!(
                "no configured attestation verifier uses the token's algorithm `{:?}`{}",
                header.alg,
                header
                    .kid
                    .map(|k| format!(" and key id `{k}`"))
                    .unwrap_or_default()
            )
        } else {
            failures.join("; ")
        }));
    };
    let now_s = now.unix_millis() / 1000;
    let skew = policy.skew() as i64;
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| refused("the claim `iat` is missing".into()))?;
    if iat > now_s + skew {
        return Err(refused("the token was issued in the future (`iat`)".into()));
    }
    if now_s - iat > policy.nonce_ttl() + skew {
        return Err(refused(format!(
            "the token is stale: issued {}s ago, the limit is {}s",
            now_s - iat,
            policy.nonce_ttl()
        )));
    }
    let nonces: Vec<&str> = match claims.get("eat_nonce") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(refused("the claim `eat_nonce` is missing".into())),
    };
    if !nonces.contains(&expected_nonce) {
        return Err(refused(
            "the token's `eat_nonce` is not the nonce issued for this attestation".into(),
        ));
    }
    let reported: BTreeMap<String, String> = match claims.get("measurements") {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect(),
        _ => {
            return Err(refused(
                "the claim `measurements` is missing or not an object".into(),
            ))
        }
    };
    let mut mismatches = Vec::new();
    for (name, expected) in &policy.expected_measurements {
        match reported.get(name) {
            None => mismatches.push(format!("`{name}` is not reported")),
            Some(found) if found != expected => {
                mismatches.push(format!("`{name}` is `{found}`, expected `{expected}`"))
            }
            Some(_) => {}
        }
    }
    if !mismatches.is_empty() {
        return Err(refused(format!(
            "the measurements do not match the workspace's policy: {}",
            mismatches.join(", ")
        )));
    }
    let attestation_id = claims
        .get("jti")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("att-{}", &Sha256Digest::of(token.as_bytes()).hex()[..32]));
    Ok(Verified {
        attestation_id,
        verifier: verifier.id.clone(),
        measurements: reported,
    })
}

/// Spend the nonce, verify the token, and only then record the attestation and emit
/// `campus:gpu_attestation_recorded`.
pub fn record(
    store: &Store,
    recorder: &Recorder,
    policy: &Policy,
    facility_id: &str,
    node_id: &str,
    token: &str,
    nonce: &str,
) -> Result<GpuAttestationRecorded, AttestError> {
    check_ids(store, facility_id, node_id)?;
    let token = token.trim();
    let now = Timestamp::now();
    let path = nonces_path(store);
    // Check and spend under the lock: two records of one nonce never both find it unused.
    with_lock(&path, || {
        let mut all: BTreeMap<String, Challenge> = read_json(&path)?.unwrap_or_default();
        let challenge = all.get_mut(nonce).ok_or_else(|| {
            AttestError::Refused("the nonce was not issued by this workspace (run `lumenflow campus attest challenge` first)".into())
        })?;
        if challenge.facility_id != facility_id || challenge.node_id != node_id {
            return Err(AttestError::Refused(format!(
                "the nonce was issued for node `{}` of facility `{}`",
                challenge.node_id, challenge.facility_id
            )));
        }
        if challenge.used {
            return Err(AttestError::Refused(
                "the nonce has already been used (replay)".into(),
            ));
        }
        if challenge.expires_at <= now {
            return Err(AttestError::Refused(
                "the nonce has expired; issue a new challenge".into(),
            ));
        }
        challenge.used = true;
        write_json(&path, &all)?;
        Ok(())
    })?;

    let verified = verify_token(policy, token, nonce, now)?;
    let measurements = serde_json::to_value(&verified.measurements)
        .map_err(|e| AttestError::Invalid(e.to_string()))?;
    let payload = GpuAttestationRecorded {
        facility_id: facility_id.to_string(),
        node_id: node_id.to_string(),
        attestation_id: verified.attestation_id.clone(),
        verifier: verified.verifier.clone(),
        verified_at: now,
        evidence_digest: Sha256Digest::of(token.as_bytes()),
        measurements_digest: Sha256Digest::of(&to_canonical_vec(&measurements)),
    };
    let event = recorder
        .build(
            CampusKind::GpuAttestationRecorded.as_str(),
            &payload,
            Some(format!(
                "attestation:{facility_id}:{node_id}:{}",
                verified.attestation_id
            )),
            now,
        )
        .map_err(|e| AttestError::Emit(e.to_string()))?;
    let mut line = serde_json::to_vec(&serde_json::json!({
        "attestation": payload,
        "measurements": verified.measurements,
    }))
    .map_err(|e| AttestError::Invalid(e.to_string()))?;
    line.push(b'\n');
    append_bytes(&attestations_path(store, facility_id), &line)?;
    recorder
        .record(&[event])
        .map_err(|e| AttestError::Emit(e.to_string()))?;
    Ok(payload)
}

/// The attestations recorded for a facility.
pub fn recorded(store: &Store, facility_id: &str) -> Result<Vec<Value>, AttestError> {
    Ok(super::store::read_lines(&attestations_path(
        store,
        facility_id,
    ))?)
}
