//! A bundle as an in-toto Statement in a DSSE envelope, for supply-chain tooling.
//!
//! The Statement's subjects are the bundle's artifacts with their SHA-256 digests (the same ones
//! `manifest.json` lists); its predicate carries the manifest's run facts. The envelope is signed
//! over DSSE's pre-authentication encoding (PAE) with the key that signed the bundle, so the
//! export proves the same thing as `manifest.sig`, in the format in-toto verifiers read.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::bundle::BundleManifest;
use crate::keys::{KeyPair, PublicKey};

pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://lumenflow.dev/attestations/trusted-compute/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 (standard) of the Statement's bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub keyid: String,
    /// Base64 (standard) of the raw 64-byte Ed25519 signature over the PAE.
    pub sig: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    #[error("the signing key {found} is not the bundle's signer {expected}")]
    WrongKey { expected: String, found: String },
    #[error("the envelope is malformed: {0}")]
    Malformed(String),
    #[error("the envelope's signature does not verify against {0}")]
    BadSignature(String),
}

impl DsseError {
    pub fn code(&self) -> &'static str {
        match self {
            DsseError::WrongKey { .. } => "KEY_MISMATCH",
            DsseError::Malformed(_) => "DSSE_MALFORMED",
            DsseError::BadSignature(_) => "SIGNATURE_INVALID",
        }
    }
}

/// DSSE v1 pre-authentication encoding: `DSSEv1 SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The in-toto Statement of a (verified) bundle manifest.
pub fn statement(manifest: &BundleManifest) -> Value {
    let subjects: Vec<Value> = manifest
        .artifact_hashes
        .iter()
        .map(|(name, digest)| {
            json!({"name": name, "digest": {"sha256": digest.trim_start_matches("sha256:")}})
        })
        .collect();
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "bundle_kind": manifest.bundle_kind,
            "schema_version": manifest.schema_version,
            "run_id": manifest.run_id,
            "mode": manifest.mode,
            "created_at": manifest.created_at,
            "signer_key_id": manifest.signer_key_id,
            "signature_algorithm": manifest.signature_algorithm,
        },
    })
}

/// Sign the Statement of `manifest` with `key`, which must be the bundle's signer.
pub fn export(manifest: &BundleManifest, key: &KeyPair) -> Result<Envelope, DsseError> {
    let key_id = key.public().key_id();
    if key_id != manifest.signer_key_id {
        return Err(DsseError::WrongKey {
            expected: manifest.signer_key_id.clone(),
            found: key_id,
        });
    }
    let body = serde_json::to_vec(&statement(manifest))
        .map_err(|e| DsseError::Malformed(e.to_string()))?;
    let sig = key.sign(&pae(PAYLOAD_TYPE, &body));
    Ok(Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: STANDARD.encode(&body),
        signatures: vec![EnvelopeSignature {
            keyid: key_id,
            sig: STANDARD.encode(sig),
        }],
    })
}

/// Check an envelope's signature by `public` and return its Statement.
pub fn verify(envelope: &Envelope, public: &PublicKey) -> Result<Value, DsseError> {
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(DsseError::Malformed(format!(
            "payloadType is `{}`, expected `{PAYLOAD_TYPE}`",
            envelope.payload_type
        )));
    }
    let body = STANDARD
        .decode(&envelope.payload)
        .map_err(|e| DsseError::Malformed(format!("payload is not base64: {e}")))?;
    let message = pae(&envelope.payload_type, &body);
    let key_id = public.key_id();
    let verified = envelope.signatures.iter().any(|s| {
        s.keyid == key_id
            && STANDARD
                .decode(&s.sig)
                .is_ok_and(|sig| public.verify(&message, &sig).is_ok())
    });
    if !verified {
        return Err(DsseError::BadSignature(key_id));
    }
    serde_json::from_slice(&body).map_err(|e| DsseError::Malformed(format!("payload: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // From the DSSE protocol document: type "http://example.com/HelloWorld", body "hello world".
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }
}
