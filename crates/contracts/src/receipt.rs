//! The CanonicalReceipt of a tenant's proof bundle (TEV-05 to TEV-07, Q25).
//!
//! The tenant-evidence pack serializes this receipt; the control plane seals it
//! (`POST /api/v1/receipts/seal`). The receipt therefore **has no seal, signature or `sig`
//! field**: [`content_digest`](CanonicalReceipt::content_digest) is a plain content reference
//! the cloud sealer binds its signature to, never a signature itself.
//!
//! `content_digest` = `sha256:` + lowercase hex SHA-256 of the RFC 8785 canonical JSON of the
//! receipt object **without** its `content_digest` member. Anyone can recompute it with a JCS
//! implementation and `sha256sum`; `fixtures/receipts/v1/tenant_proof_bundle.json` is the golden
//! vector.
//!
//! Wire shape (schema version 1):
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "receipt_kind": "tenant_proof_bundle",
//!   "workspace_id": "ws-42",
//!   "tenant_id": "tenant-a",
//!   "bundle_id": "bundle-2026-11-21",
//!   "created_at": "2026-11-21T08:00:00.000Z",
//!   "approval_id": "tenant-evidence:export",
//!   "records": [{"record_kind": "checkpoint", "record_id": "cp-1", "content_digest": "sha256:..."}],
//!   "content_digest": "sha256:..."
//! }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical_json::to_canonical_string;
use crate::digest::Sha256Digest;
use crate::payloads::RecordKind;
use crate::time::Timestamp;

/// The receipt schema version this crate writes.
pub const CANONICAL_RECEIPT_SCHEMA_VERSION: u32 = 1;
/// `receipt_kind` of a tenant's proof bundle receipt.
pub const TENANT_PROOF_BUNDLE_RECEIPT_KIND: &str = "tenant_proof_bundle";
/// Keys a CanonicalReceipt must never carry: sealing is the control plane's (TEV-06).
pub const FORBIDDEN_RECEIPT_KEYS: &[&str] = &["seal", "signature", "sig"];

/// One record a proof bundle covers, by reference: its kind, its id and the digest of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRecord {
    pub record_kind: RecordKind,
    pub record_id: String,
    /// `sha256:` of the canonical JSON of the record file's content.
    pub content_digest: Sha256Digest,
}

/// The unsealed receipt of a tenant's proof bundle (Q25). Build it with [`CanonicalReceipt::new`],
/// which computes `content_digest`; check a received one with [`verify_receipt_value`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalReceipt {
    pub schema_version: u32,
    /// Always [`TENANT_PROOF_BUNDLE_RECEIPT_KIND`] for now.
    pub receipt_kind: String,
    /// The workspace that exported the bundle (the control plane authorizes the seal by it).
    pub workspace_id: String,
    /// The tenant whose evidence the bundle holds.
    pub tenant_id: String,
    pub bundle_id: String,
    pub created_at: Timestamp,
    /// The operator decision the export was made under (`tenant-evidence:export`, TEV-03).
    pub approval_id: String,
    pub records: Vec<ReceiptRecord>,
    /// `sha256:` of the canonical JSON of this receipt without this field (TEV-07).
    pub content_digest: Sha256Digest,
}

/// The fields of a receipt before its digest is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptContent {
    pub workspace_id: String,
    pub tenant_id: String,
    pub bundle_id: String,
    pub created_at: Timestamp,
    pub approval_id: String,
    pub records: Vec<ReceiptRecord>,
}

/// Why a receipt was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("a CanonicalReceipt must be a JSON object")]
    NotAnObject,
    #[error("a CanonicalReceipt has no `{0}` field (TEV-06): sealing is the control plane's")]
    ForbiddenKey(String),
    #[error("the receipt has no string `content_digest`")]
    MissingDigest,
    #[error(
        "`content_digest` is `{claimed}` but the receipt's canonical JSON hashes to `{computed}`"
    )]
    DigestMismatch { claimed: String, computed: String },
    #[error("invalid receipt: {0}")]
    Shape(String),
}

impl ReceiptError {
    /// Stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiptError::DigestMismatch { .. } => "DIGEST_MISMATCH",
            _ => "INVALID_RECEIPT",
        }
    }
}

impl CanonicalReceipt {
    /// A schema-version-1 tenant proof bundle receipt of `content`, with its digest computed.
    pub fn new(content: ReceiptContent) -> Self {
        let mut receipt = CanonicalReceipt {
            schema_version: CANONICAL_RECEIPT_SCHEMA_VERSION,
            receipt_kind: TENANT_PROOF_BUNDLE_RECEIPT_KIND.to_string(),
            workspace_id: content.workspace_id,
            tenant_id: content.tenant_id,
            bundle_id: content.bundle_id,
            created_at: content.created_at,
            approval_id: content.approval_id,
            records: content.records,
            content_digest: Sha256Digest::from_bytes([0; 32]),
        };
        receipt.content_digest = receipt.compute_digest();
        receipt
    }

    /// The receipt as a JSON object (field order irrelevant: hashing canonicalizes).
    pub fn to_value(&self) -> Value {
        // Every field serializes infallibly (strings, integers, digests, timestamps, enums).
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// What `content_digest` must be for the other fields as they are now.
    pub fn compute_digest(&self) -> Sha256Digest {
        match self.to_value() {
            Value::Object(map) => digest_without_content_digest(&map),
            _ => Sha256Digest::from_bytes([0; 32]),
        }
    }

    /// Does `content_digest` match the other fields?
    pub fn verify(&self) -> Result<(), ReceiptError> {
        let computed = self.compute_digest();
        if computed == self.content_digest {
            Ok(())
        } else {
            Err(ReceiptError::DigestMismatch {
                claimed: self.content_digest.to_string(),
                computed: computed.to_string(),
            })
        }
    }
}

/// `sha256:` of the canonical JSON of `receipt` with its `content_digest` member removed (Q25).
pub fn digest_without_content_digest(receipt: &Map<String, Value>) -> Sha256Digest {
    let mut body = receipt.clone();
    body.remove("content_digest");
    Sha256Digest::of(to_canonical_string(&Value::Object(body)).as_bytes())
}

/// Checks a received receipt as the sealer does: an object, no seal/signature/sig key anywhere
/// at its top level, a `content_digest` equal to the digest of the rest, and the version-1 shape.
pub fn verify_receipt_value(value: &Value) -> Result<CanonicalReceipt, ReceiptError> {
    let Value::Object(map) = value else {
        return Err(ReceiptError::NotAnObject);
    };
    for key in FORBIDDEN_RECEIPT_KEYS {
        if map.contains_key(*key) {
            return Err(ReceiptError::ForbiddenKey((*key).to_string()));
        }
    }
    let claimed = map
        .get("content_digest")
        .and_then(Value::as_str)
        .ok_or(ReceiptError::MissingDigest)?;
    let computed = digest_without_content_digest(map);
    if claimed != computed.to_string() {
        return Err(ReceiptError::DigestMismatch {
            claimed: claimed.to_string(),
            computed: computed.to_string(),
        });
    }
    serde_json::from_value(value.clone()).map_err(|e| ReceiptError::Shape(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    const GOLDEN: &str = include_str!("../../../fixtures/receipts/v1/tenant_proof_bundle.json");
    /// The canonical JSON the golden digest is taken over, checked by hand with
    /// `printf %s "$CANONICAL" | sha256sum`.
    const GOLDEN_CANONICAL: &str = r#"{"approval_id":"tenant-evidence:export","bundle_id":"bundle-0001","created_at":"2026-11-21T08:00:00.000Z","receipt_kind":"tenant_proof_bundle","records":[{"content_digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","record_id":"cp-1","record_kind":"checkpoint"},{"content_digest":"sha256:0000000000000000000000000000000000000000000000000000000000000002","record_id":"gate-1","record_kind":"gate"}],"schema_version":1,"tenant_id":"tenant-a","workspace_id":"ws-42"}"#;

    fn sample() -> CanonicalReceipt {
        let d = |n: u8| {
            let mut b = [0u8; 32];
            b[31] = n;
            Sha256Digest::from_bytes(b)
        };
        CanonicalReceipt::new(ReceiptContent {
            workspace_id: "ws-42".into(),
            tenant_id: "tenant-a".into(),
            bundle_id: "bundle-0001".into(),
            created_at: Timestamp::parse("2026-11-21T08:00:00.000Z").unwrap(),
            approval_id: "tenant-evidence:export".into(),
            records: vec![
                ReceiptRecord {
                    record_kind: RecordKind::Checkpoint,
                    record_id: "cp-1".into(),
                    content_digest: d(1),
                },
                ReceiptRecord {
                    record_kind: RecordKind::Gate,
                    record_id: "gate-1".into(),
                    content_digest: d(2),
                },
            ],
        })
    }

    #[test]
    fn the_digest_is_sha256_of_the_canonical_json_without_content_digest() {
        // TEV-07, Q25.
        let r = sample();
        let mut map = r.to_value().as_object().unwrap().clone();
        map.remove("content_digest");
        let canonical = to_canonical_string(&Value::Object(map));
        assert_eq!(canonical, GOLDEN_CANONICAL);
        assert_eq!(r.content_digest, Sha256Digest::of(canonical.as_bytes()));
        assert!(r.content_digest.to_string().starts_with("sha256:"));
        r.verify().unwrap();
    }

    #[test]
    fn the_golden_vector_matches_and_verifies() {
        let golden: Value = serde_json::from_str(GOLDEN).unwrap();
        assert_eq!(golden, sample().to_value());
        let parsed = verify_receipt_value(&golden).unwrap();
        assert_eq!(parsed, sample());
        // Independently computed with `printf %s "$GOLDEN_CANONICAL" | sha256sum`.
        assert_eq!(
            golden["content_digest"],
            "sha256:2c993b074cdc743640283bc68a139e738216efc52266b8d3d0dea6c0756cb8a2"
        );
    }

    #[test]
    fn a_receipt_has_no_seal_signature_or_sig_field() {
        // TEV-06, Q25: the serialized receipt carries none of the forbidden keys.
        let v = sample().to_value();
        for key in FORBIDDEN_RECEIPT_KEYS {
            assert!(v.get(*key).is_none(), "{key}");
        }
        for key in v.as_object().unwrap().keys() {
            let k = key.to_ascii_lowercase();
            assert!(!k.contains("seal") && !k.contains("signature"), "{key}");
        }
    }

    #[test]
    fn a_sealed_or_tampered_receipt_is_rejected() {
        let mut v = sample().to_value();
        v["seal"] = json!({"signature": "x"});
        assert_eq!(
            verify_receipt_value(&v).unwrap_err(),
            ReceiptError::ForbiddenKey("seal".into())
        );
        let mut v = sample().to_value();
        v["tenant_id"] = json!("tenant-b");
        let err = verify_receipt_value(&v).unwrap_err();
        assert_eq!(err.code(), "DIGEST_MISMATCH");
        let mut v = sample().to_value();
        v.as_object_mut().unwrap().remove("content_digest");
        assert_eq!(
            verify_receipt_value(&v).unwrap_err(),
            ReceiptError::MissingDigest
        );
        assert_eq!(
            verify_receipt_value(&json!([])).unwrap_err(),
            ReceiptError::NotAnObject
        );
        // A field this version does not know changes the digest and is refused by the shape.
        let mut v = sample().to_value();
        v["extra"] = json!(1);
        let map = v.as_object().unwrap().clone();
        v["content_digest"] = json!(digest_without_content_digest(&map).to_string());
        assert!(matches!(
            verify_receipt_value(&v).unwrap_err(),
            ReceiptError::Shape(_)
        ));
    }
}
