//! The trusted-compute evidence bundle (TCD-02 to TCD-09, Q31): nine proof files, a
//! `manifest.json` that lists and hashes them, `manifest.sig` (the raw 64-byte Ed25519
//! signature over the exact bytes of `manifest.json`) and `verifier-public-key.pem` (SPKI).
//!
//! The format is chosen so that a third party needs no LumenFlow code:
//! `openssl pkeyutl -verify -pubin -inkey verifier-public-key.pem -rawin -in manifest.json
//! -sigfile manifest.sig` checks the signature and `sha256sum` checks the hashes. [`verify`]
//! does the same four checks and reports each; a bundle's bytes are untrusted input, so
//! nothing in it can make the verifier panic, read outside the bundle folder or pass a check
//! it should fail.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use lumenflow_contracts::canonical_json;
use lumenflow_contracts::digest::lower_hex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::keys::{KeyPair, PublicKey};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "manifest.sig";
pub const PUBLIC_KEY_FILE: &str = "verifier-public-key.pem";
pub const BUNDLE_KIND_TRUSTED_COMPUTE: &str = "trusted-compute";
pub const SIGNATURE_ALGORITHM: &str = "ed25519";
/// Manifest schema versions this verifier understands (Q31).
pub const SUPPORTED_SCHEMA_VERSIONS: &[u64] = &[1];

/// The nine proof files every trusted-compute bundle carries, in both modes (Q32).
pub const REQUIRED_ARTIFACTS: [&str; 9] = [
    "ask.json",
    "node-session.json",
    "policy-decisions.jsonl",
    "tool-calls.jsonl",
    "file-diff.patch",
    "test-results.json",
    "approval.json",
    "pr-summary.md",
    "replay-link.txt",
];

/// A manifest bigger than this is not a manifest (it would only list nine hashes).
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
const MAX_PEM_BYTES: u64 = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub schema_version: u64,
    pub bundle_kind: String,
    pub run_id: String,
    pub mode: String,
    pub created_at: String,
    pub required_artifacts: Vec<String>,
    pub artifact_hashes: BTreeMap<String, String>,
    pub signer_key_id: String,
    pub signature_algorithm: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the bundle in {dir} is missing the proof file `{file}`")]
    MissingArtifact { dir: PathBuf, file: String },
}

impl BundleError {
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Io { .. } => "IO_ERROR",
            BundleError::MissingArtifact { .. } => "BUNDLE_INCOMPLETE",
        }
    }
}

/// What to put in a new manifest besides the hashes.
pub struct SealRequest<'a> {
    pub run_id: &'a str,
    pub mode: &'a str,
    pub created_at: &'a str,
}

/// Hash the nine proof files already written in `dir`, then write `manifest.json`, its
/// signature and the public key, each fsync'd. The manifest is canonical JSON (RFC 8785), so
/// the same bundle always yields the same bytes to sign.
pub fn seal(
    dir: &Path,
    key: &KeyPair,
    request: &SealRequest<'_>,
) -> Result<BundleManifest, BundleError> {
    let mut hashes = BTreeMap::new();
    for file in REQUIRED_ARTIFACTS {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(BundleError::MissingArtifact {
                dir: dir.to_path_buf(),
                file: file.to_string(),
            });
        }
        let digest = hash_file(&path, u64::MAX).map_err(|source| BundleError::Io {
            path: path.clone(),
            source,
        })?;
        hashes.insert(file.to_string(), format!("sha256:{digest}"));
    }
    let public = key.public();
    let manifest = BundleManifest {
        schema_version: 1,
        bundle_kind: BUNDLE_KIND_TRUSTED_COMPUTE.into(),
        run_id: request.run_id.into(),
        mode: request.mode.into(),
        created_at: request.created_at.into(),
        required_artifacts: REQUIRED_ARTIFACTS.iter().map(|s| s.to_string()).collect(),
        artifact_hashes: hashes,
        signer_key_id: public.key_id(),
        signature_algorithm: SIGNATURE_ALGORITHM.into(),
    };
    let value = serde_json::to_value(&manifest).unwrap_or(Value::Null);
    let bytes = canonical_json::to_canonical_string(&value).into_bytes();
    let signature = key.sign(&bytes);
    write_synced(&dir.join(MANIFEST_FILE), &bytes)?;
    write_synced(&dir.join(SIGNATURE_FILE), &signature)?;
    write_synced(&dir.join(PUBLIC_KEY_FILE), public.to_pem().as_bytes())?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(manifest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Streamed SHA-256 of a file, refusing one longer than `limit` bytes.
fn hash_file(path: &Path, limit: u64) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(std::io::Error::other(format!(
                "larger than the {limit}-byte limit"
            )));
        }
        hasher.update(&buf[..n]);
    }
    Ok(lower_hex(&hasher.finalize()))
}

fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {limit}-byte limit",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// One of the four checks of TCD-06.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `files_present`, `schema_supported`, `hashes_match` or `signature_valid`.
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// The verdict on a bundle: every check, and whether the key was pinned by the caller or only
/// asserted by the bundle itself.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub dir: PathBuf,
    pub checks: Vec<Check>,
    pub key_id: Option<String>,
    pub key_pinned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<BundleManifest>,
}

impl Verification {
    /// True only when all four checks passed.
    pub fn passed(&self) -> bool {
        self.checks.len() == 4 && self.checks.iter().all(|c| c.passed)
    }
}

/// A plain file name inside the bundle folder (no separators, no `..`), so a manifest cannot
/// point the verifier at a file elsewhere.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
}

/// Parse manifest bytes; every failure is a sentence naming the field.
pub fn parse_manifest(bytes: &[u8]) -> Result<BundleManifest, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{MANIFEST_FILE} is not JSON: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err(format!("{MANIFEST_FILE} is not a JSON object"));
    };
    if let Some(v) = obj.get("schema_version") {
        if !v
            .as_u64()
            .is_some_and(|n| SUPPORTED_SCHEMA_VERSIONS.contains(&n))
        {
            return Err(format!(
                "{MANIFEST_FILE} has schema_version {v}; this verifier supports {SUPPORTED_SCHEMA_VERSIONS:?}"
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| format!("{MANIFEST_FILE}: {e}"))
}

/// Check a bundle folder: required files present, schema supported, hashes match, signature
/// valid (against `pinned` when given, which must also be the key the bundle names).
pub fn verify(dir: &Path, pinned: Option<&PublicKey>) -> Verification {
    let mut v = Verification {
        dir: dir.to_path_buf(),
        checks: Vec::new(),
        key_id: None,
        key_pinned: pinned.is_some(),
        manifest: None,
    };
    let fail = |v: &mut Verification, name: &'static str, detail: String| {
        v.checks.push(Check {
            name,
            passed: false,
            detail,
        });
    };

    // 1. Files present.
    let mut missing: Vec<String> = [MANIFEST_FILE, SIGNATURE_FILE, PUBLIC_KEY_FILE]
        .iter()
        .chain(REQUIRED_ARTIFACTS.iter())
        .filter(|f| !fs::symlink_metadata(dir.join(f)).is_ok_and(|m| m.file_type().is_file()))
        .map(|f| f.to_string())
        .collect();
    let manifest_bytes = read_limited(&dir.join(MANIFEST_FILE), MAX_MANIFEST_BYTES);
    let parsed = match &manifest_bytes {
        Ok(bytes) => parse_manifest(bytes),
        Err(e) => Err(format!("{MANIFEST_FILE} cannot be read: {e}")),
    };
    if let Ok(m) = &parsed {
        for name in &m.required_artifacts {
            if !is_plain_name(name) {
                missing.push(format!("{name} (not a plain file name)"));
            } else if !missing.contains(name)
                && !fs::symlink_metadata(dir.join(name)).is_ok_and(|md| md.file_type().is_file())
            {
                missing.push(name.clone());
            }
        }
        for name in REQUIRED_ARTIFACTS {
            if !m.required_artifacts.iter().any(|a| a == name) {
                missing.push(format!("{name} (not listed in required_artifacts)"));
            }
        }
    }
    if missing.is_empty() {
        v.checks.push(Check {
            name: "files_present",
            passed: true,
            detail: format!(
                "all {} proof files, the manifest, its signature and the public key are present",
                REQUIRED_ARTIFACTS.len()
            ),
        });
    } else {
        fail(
            &mut v,
            "files_present",
            format!("missing: {}", missing.join(", ")),
        );
    }

    // 2. Schema supported.
    let manifest = match parsed {
        Ok(m) => m,
        Err(e) => {
            fail(&mut v, "schema_supported", e);
            fail(
                &mut v,
                "hashes_match",
                "no readable manifest to check against".into(),
            );
            fail(
                &mut v,
                "signature_valid",
                "no readable manifest to check".into(),
            );
            return v;
        }
    };
    let mut schema_problems = Vec::new();
    if manifest.bundle_kind != BUNDLE_KIND_TRUSTED_COMPUTE {
        schema_problems.push(format!(
            "bundle_kind is `{}`, expected `{BUNDLE_KIND_TRUSTED_COMPUTE}`",
            manifest.bundle_kind
        ));
    }
    if manifest.signature_algorithm != SIGNATURE_ALGORITHM {
        schema_problems.push(format!(
            "signature_algorithm is `{}`, expected `{SIGNATURE_ALGORITHM}`",
            manifest.signature_algorithm
        ));
    }
    if schema_problems.is_empty() {
        v.checks.push(Check {
            name: "schema_supported",
            passed: true,
            detail: format!(
                "schema_version {} of bundle kind `{}`",
                manifest.schema_version, manifest.bundle_kind
            ),
        });
    } else {
        fail(&mut v, "schema_supported", schema_problems.join("; "));
    }

    // 3. Hashes match, for every listed artifact (the nine at least).
    let mut mismatches = Vec::new();
    let mut names: Vec<&String> = manifest.required_artifacts.iter().collect();
    names.sort();
    names.dedup();
    for name in names {
        if !is_plain_name(name) {
            mismatches.push(format!("{name}: not a plain file name"));
            continue;
        }
        let Some(expected) = manifest.artifact_hashes.get(name) else {
            mismatches.push(format!("{name}: no entry in artifact_hashes"));
            continue;
        };
        let path = dir.join(name);
        let regular = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        match (regular, hash_file(&path, u64::MAX)) {
            (true, Ok(actual)) if *expected == format!("sha256:{actual}") => {}
            (true, Ok(actual)) => mismatches.push(format!(
                "{name}: expected {expected}, found sha256:{actual}"
            )),
            (false, _) => mismatches.push(format!("{name}: not a regular file")),
            (true, Err(e)) => mismatches.push(format!("{name}: cannot be read: {e}")),
        }
    }
    if mismatches.is_empty() {
        v.checks.push(Check {
            name: "hashes_match",
            passed: true,
            detail: format!(
                "{} artifact hashes match",
                manifest.required_artifacts.len()
            ),
        });
    } else {
        fail(&mut v, "hashes_match", mismatches.join("; "));
    }

    // 4. Signature valid, by the key the manifest names (and the pinned one, if any).
    let signature = signature_check(dir, &manifest, manifest_bytes.as_deref().ok(), pinned);
    v.key_id = Some(manifest.signer_key_id.clone());
    match signature {
        Ok(detail) => v.checks.push(Check {
            name: "signature_valid",
            passed: true,
            detail,
        }),
        Err(detail) => fail(&mut v, "signature_valid", detail),
    }
    v.manifest = Some(manifest);
    v
}

fn signature_check(
    dir: &Path,
    manifest: &BundleManifest,
    manifest_bytes: Option<&[u8]>,
    pinned: Option<&PublicKey>,
) -> Result<String, String> {
    let bytes = manifest_bytes.ok_or("the manifest could not be read")?;
    let pem = read_limited(&dir.join(PUBLIC_KEY_FILE), MAX_PEM_BYTES)
        .map_err(|e| format!("{PUBLIC_KEY_FILE} cannot be read: {e}"))?;
    let pem = String::from_utf8(pem).map_err(|_| format!("{PUBLIC_KEY_FILE} is not text"))?;
    let bundled = PublicKey::from_pem(&pem, PUBLIC_KEY_FILE).map_err(|e| e.to_string())?;
    if bundled.key_id() != manifest.signer_key_id {
        return Err(format!(
            "signer_key_id is {} but {PUBLIC_KEY_FILE} is {}",
            manifest.signer_key_id,
            bundled.key_id()
        ));
    }
    if let Some(pinned) = pinned {
        if *pinned != bundled {
            return Err(format!(
                "the bundle was signed by {}, not by the pinned key {}",
                bundled.key_id(),
                pinned.key_id()
            ));
        }
    }
    let sig = read_limited(&dir.join(SIGNATURE_FILE), 1024)
        .map_err(|e| format!("{SIGNATURE_FILE} cannot be read: {e}"))?;
    bundled.verify(bytes, &sig).map_err(|e| e.to_string())?;
    Ok(if pinned.is_some() {
        format!("Ed25519 signature by the pinned key {}", bundled.key_id())
    } else {
        format!(
            "Ed25519 signature by {} (self-asserted: the key came with the bundle; pass --pubkey to pin it)",
            bundled.key_id()
        )
    })
}
