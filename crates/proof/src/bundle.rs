//! The trusted-compute evidence bundle (TCD-02 to TCD-09, Q31): nine proof files, a
//! `manifest.json` that lists and hashes them, `manifest.sig` (the raw 64-byte Ed25519
//! signature over the exact bytes of `manifest.json`) and `verifier-public-key.pem` (SPKI).
//!
//! The format is chosen so that a third party needs no LumenFlow code:
//! `openssl pkeyutl -verify -pubin -inkey <signer key they already trust> -rawin -in
//! manifest.json -sigfile manifest.sig` checks the signature and `sha256sum` checks the hashes.
//! The key must come from outside the bundle (the demo keeps it in
//! `../.keys/signer-ed25519.pub.pem`): `verifier-public-key.pem` only says which key the bundle
//! claims, and a forger ships their own, so checking against it proves the bundle is
//! self-consistent and nothing about who made it.
//!
//! [`verify`] does the same four checks and reports each; the signature is checked before the
//! hashes are trusted. A bundle's bytes are untrusted input, so nothing in it can make the
//! verifier panic, follow a link, open a FIFO or device, read outside the bundle folder, read
//! more than [`MAX_ARTIFACT_BYTES`] of one file, or pass a check it should fail; a file in the
//! folder that the manifest does not list fails `files_present`.

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
/// The largest proof file the verifier hashes (and the signer seals): a diff or a test log of
/// a real run fits many times over, and a bigger file is refused instead of read for minutes.
pub const MAX_ARTIFACT_BYTES: u64 = 64 * 1024 * 1024;

/// Unknown fields are refused: the signer writes exactly these, and a field no verifier reads
/// would be signed text an auditor might take for evidence (F13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
        let digest = hash_file(&path, MAX_ARTIFACT_BYTES).map_err(|source| BundleError::Io {
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
    hash_reader(fs::File::open(path)?, limit)
}

fn hash_reader(file: fs::File, limit: u64) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    // Read one byte past the limit, so a file that grows while it is hashed is still refused.
    let mut reader = file.take(limit.saturating_add(1));
    loop {
        let n = reader.read(&mut buf)?;
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

/// What a directory entry is, for a file that is not a regular file (F1).
fn kind_of(file_type: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Why `name` in `dir` is not a plain regular file, or `None` when it is one.
fn not_regular(dir: &Path, name: &str) -> Option<String> {
    match fs::symlink_metadata(dir.join(name)) {
        Ok(m) if m.file_type().is_file() => None,
        Ok(m) => Some(format!(
            "{name} is {} (not a regular file)",
            kind_of(&m.file_type())
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!("{name} is missing")),
        Err(e) => Some(format!("{name} cannot be inspected: {e}")),
    }
}

/// Open `name` in `dir` for reading only if it is a regular file of at most `limit` bytes.
///
/// The entry is `lstat`ed first (a symlink, FIFO or device is refused before any `open`, with a
/// message naming what it is), the open itself neither follows a final link nor waits for a
/// FIFO's writer (see [`open_no_follow`]), and the opened handle is `fstat`ed and must be the
/// very inode that was inspected: a file swapped for anything else in between is refused.
fn open_regular(dir: &Path, name: &str, limit: u64) -> Result<fs::File, String> {
    let path = dir.join(name);
    let before = fs::symlink_metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{name} is missing"),
        _ => format!("{name} cannot be inspected: {e}"),
    })?;
    if !before.file_type().is_file() {
        return Err(format!(
            "{name} is {} (not a regular file)",
            kind_of(&before.file_type())
        ));
    }
    let file = open_no_follow(&path).map_err(|e| format!("{name} cannot be opened: {e}"))?;
    let after = file
        .metadata()
        .map_err(|e| format!("{name} cannot be inspected: {e}"))?;
    if !after.file_type().is_file() {
        return Err(format!("{name} is not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (before.dev(), before.ino()) != (after.dev(), after.ino()) {
            return Err(format!("{name} was replaced while it was being opened"));
        }
    }
    if after.len() > limit {
        return Err(format!(
            "{name} is {} bytes, more than the {limit}-byte limit",
            after.len()
        ));
    }
    Ok(file)
}

/// Open for reading without following a final symlink and without waiting for a FIFO's writer
/// (`O_NOFOLLOW | O_NONBLOCK`): a file swapped for either after the `lstat` above fails here or
/// at the `fstat` after, instead of leading outside the folder or blocking forever. Neither
/// flag changes how a regular file reads.
#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<fs::File> {
    fs::File::open(path)
}

fn read_limited(dir: &Path, name: &str, limit: u64) -> Result<Vec<u8>, String> {
    let file = open_regular(dir, name, limit)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name} cannot be read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{name} is more than the {limit}-byte limit"));
    }
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
    /// The manifest's bytes verify under the key shipped with it: its fields are what that
    /// key's holder signed, whether or not that holder is the one the caller expects.
    pub manifest_signed: bool,
    /// Things an auditor should see that fail no check, such as a folder named after another
    /// run than the one signed (F5).
    pub warnings: Vec<String>,
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
///
/// The signer always writes canonical JSON (RFC 8785), so anything else is refused: duplicate
/// member names (which a first-wins reader and a last-wins reader would read differently) and
/// bytes that are not their own canonical form (F13).
pub fn parse_manifest(bytes: &[u8]) -> Result<BundleManifest, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("{MANIFEST_FILE} is not UTF-8 text: {e}"))?;
    let canonical = canonical_json::canonicalize_str(text)
        .map_err(|e| format!("{MANIFEST_FILE} is not JSON the signer writes: {e}"))?;
    let value: Value = serde_json::from_str(&canonical)
        .map_err(|e| format!("{MANIFEST_FILE} is not JSON: {e}"))?;
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
    let manifest: BundleManifest =
        serde_json::from_value(value).map_err(|e| format!("{MANIFEST_FILE}: {e}"))?;
    if canonical != text {
        return Err(format!(
            "{MANIFEST_FILE} is not in canonical JSON form (RFC 8785: sorted keys, no whitespace, no trailing newline), which is the only form the signer writes"
        ));
    }
    Ok(manifest)
}

/// What [`verify_with`] checks besides the bundle's own consistency.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions<'a> {
    /// The expected signer; without it the key shipped in the bundle is only self-asserted.
    pub pinned: Option<&'a PublicKey>,
    /// The run the caller expects; a bundle signed for another run fails `signature_valid`.
    pub run_id: Option<&'a str>,
}

/// Check a bundle folder: required files present, schema supported, hashes match, signature
/// valid (against `pinned` when given, which must also be the key the bundle names).
pub fn verify(dir: &Path, pinned: Option<&PublicKey>) -> Verification {
    verify_with(
        dir,
        &VerifyOptions {
            pinned,
            run_id: None,
        },
    )
}

/// The most names of uncovered files listed in one report; a folder could hold millions.
const MAX_LISTED_EXTRAS: usize = 20;

/// [`verify`] with a pinned run id as well.
pub fn verify_with(dir: &Path, options: &VerifyOptions<'_>) -> Verification {
    let mut v = Verification {
        dir: dir.to_path_buf(),
        checks: Vec::new(),
        key_id: None,
        key_pinned: options.pinned.is_some(),
        manifest: None,
        manifest_signed: false,
        warnings: Vec::new(),
    };
    let fail = |v: &mut Verification, name: &'static str, detail: String| {
        v.checks.push(Check {
            name,
            passed: false,
            detail,
        });
    };

    // 1. Files present: every expected name is a regular file, and nothing else is there.
    let mut problems: Vec<String> = [MANIFEST_FILE, SIGNATURE_FILE, PUBLIC_KEY_FILE]
        .iter()
        .chain(REQUIRED_ARTIFACTS.iter())
        .filter_map(|f| not_regular(dir, f))
        .collect();
    let manifest_bytes = read_limited(dir, MANIFEST_FILE, MAX_MANIFEST_BYTES);
    let parsed = match &manifest_bytes {
        Ok(bytes) => parse_manifest(bytes),
        Err(e) => Err(format!("{MANIFEST_FILE} cannot be read: {e}")),
    };
    let mut covered: Vec<&str> = [MANIFEST_FILE, SIGNATURE_FILE, PUBLIC_KEY_FILE]
        .into_iter()
        .chain(REQUIRED_ARTIFACTS)
        .collect();
    if let Ok(m) = &parsed {
        for name in &m.required_artifacts {
            if !is_plain_name(name) {
                problems.push(format!("{name} is not a plain file name"));
            } else if !covered.contains(&name.as_str()) {
                covered.push(name);
                problems.extend(not_regular(dir, name));
            }
        }
        for name in REQUIRED_ARTIFACTS {
            if !m.required_artifacts.iter().any(|a| a == name) {
                problems.push(format!("{name} is not listed in required_artifacts"));
            }
        }
    }
    // A file the manifest does not list reads as evidence to anyone handed the folder, yet
    // nothing vouches for it (F4).
    match fs::read_dir(dir) {
        Ok(entries) => {
            let mut extras: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !covered.contains(&n.as_str()))
                .collect();
            extras.sort();
            if !extras.is_empty() {
                let more = extras.len().saturating_sub(MAX_LISTED_EXTRAS);
                extras.truncate(MAX_LISTED_EXTRAS);
                let mut list = extras.join(", ");
                if more > 0 {
                    list.push_str(&format!(" and {more} more"));
                }
                problems.push(format!(
                    "{list}: in the folder but not covered by the signature (the manifest does not list them)"
                ));
            }
        }
        Err(e) => problems.push(format!("the folder cannot be listed: {e}")),
    }
    if problems.is_empty() {
        v.checks.push(Check {
            name: "files_present",
            passed: true,
            detail: format!(
                "all {} proof files, the manifest, its signature and the public key are present, and nothing else",
                REQUIRED_ARTIFACTS.len()
            ),
        });
    } else {
        fail(&mut v, "files_present", problems.join("; "));
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

    // The signature comes before the hashes: until the manifest is known to be signed, its
    // hashes are a stranger's claims, and a mismatch would blame an untouched artifact (F11).
    let manifest_bytes = manifest_bytes.ok();
    let signature = signature_check(dir, &manifest, manifest_bytes.as_deref(), options);
    v.key_id = Some(manifest.signer_key_id.clone());
    v.manifest_signed = signature.authentic;

    // 3. Hashes match, for every listed artifact (the nine at least), and the artifacts that
    // name a run name the signed one.
    if signature.authentic {
        let problems = artifact_problems(dir, &manifest);
        if problems.is_empty() {
            v.checks.push(Check {
                name: "hashes_match",
                passed: true,
                detail: format!(
                    "{} artifact hashes match, and every run id in them is `{}`",
                    manifest.required_artifacts.len(),
                    manifest.run_id
                ),
            });
        } else {
            fail(&mut v, "hashes_match", problems.join("; "));
        }
    } else {
        fail(
            &mut v,
            "hashes_match",
            format!(
                "not checked: the signature over {MANIFEST_FILE} does not verify, so its artifact hashes come from an unsigned manifest and say nothing about the artifacts"
            ),
        );
    }

    // 4. Signature valid, by the key the manifest names (and the pinned one, if any), for the
    // run the caller expects (if any).
    match signature.verdict {
        Ok(detail) => v.checks.push(Check {
            name: "signature_valid",
            passed: true,
            detail,
        }),
        Err(detail) => fail(&mut v, "signature_valid", detail),
    }
    if let Some(folder) = dir.file_name().and_then(|n| n.to_str()) {
        if folder != manifest.run_id {
            v.warnings.push(format!(
                "the folder is named `{folder}` but the signed run_id is `{}`; the signature speaks for that run, whatever the folder is called",
                manifest.run_id
            ));
        }
    }
    v.manifest = Some(manifest);
    v
}

/// Hash mismatches and run-id disagreements of the listed artifacts.
fn artifact_problems(dir: &Path, manifest: &BundleManifest) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names: Vec<&String> = manifest.required_artifacts.iter().collect();
    names.sort();
    names.dedup();
    for name in names {
        if !is_plain_name(name) {
            problems.push(format!("{name}: not a plain file name"));
            continue;
        }
        let Some(expected) = manifest.artifact_hashes.get(name) else {
            problems.push(format!("{name}: no entry in artifact_hashes"));
            continue;
        };
        let actual = open_regular(dir, name, MAX_ARTIFACT_BYTES).and_then(|file| {
            hash_reader(file, MAX_ARTIFACT_BYTES).map_err(|e| format!("{name} cannot be read: {e}"))
        });
        match actual {
            Ok(actual) if *expected == format!("sha256:{actual}") => {
                if let Some(problem) = run_id_problem(dir, name, &manifest.run_id) {
                    problems.push(problem);
                }
            }
            Ok(actual) => problems.push(format!(
                "{name}: expected {expected}, found sha256:{actual}"
            )),
            Err(e) => problems.push(e),
        }
    }
    problems
}

/// The run id an artifact names, where the demo's writer puts one (`trusted_compute::write_bundle`):
/// `run_id` in `ask.json` and `node-session.json`, `record.context.run_id` in a decided
/// `approval.json`, and the last path segment after `/replay/` in `replay-link.txt`.
fn run_id_problem(dir: &Path, name: &str, run_id: &str) -> Option<String> {
    let pointers: &[&str] = match name {
        "ask.json" | "node-session.json" => &["/run_id"],
        "approval.json" => &["/run_id", "/record/context/run_id"],
        "replay-link.txt" => &[],
        _ => return None,
    };
    // Already hashed, so within the limit; a read error here was reported by the hash.
    let bytes = read_limited(dir, name, MAX_ARTIFACT_BYTES).ok()?;
    let found: Vec<String> = if name == "replay-link.txt" {
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .rsplit_once("/replay/")
            .map(|(_, rest)| {
                rest.split(['?', '#', '/'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .into_iter()
            .collect()
    } else {
        // Not JSON is not this check's business: the file is signed as it is.
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        pointers
            .iter()
            .filter_map(|p| value.pointer(p))
            .filter(|v| !v.is_null())
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect()
    };
    found
        .into_iter()
        .find(|f| f != run_id)
        .map(|f| format!("{name}: names run `{f}`, but the manifest is for run `{run_id}`"))
}

struct SignatureOutcome {
    /// The manifest bytes verify under the key shipped in the bundle, so its hashes are what
    /// that key's holder signed (whoever that is: pinning is a separate question).
    authentic: bool,
    verdict: Result<String, String>,
}

fn signature_check(
    dir: &Path,
    manifest: &BundleManifest,
    manifest_bytes: Option<&[u8]>,
    options: &VerifyOptions<'_>,
) -> SignatureOutcome {
    let refused = |detail: String| SignatureOutcome {
        authentic: false,
        verdict: Err(detail),
    };
    let Some(bytes) = manifest_bytes else {
        return refused("the manifest could not be read".into());
    };
    let pem = match read_limited(dir, PUBLIC_KEY_FILE, MAX_PEM_BYTES) {
        Ok(pem) => pem,
        Err(e) => return refused(format!("{PUBLIC_KEY_FILE} cannot be read: {e}")),
    };
    let Ok(pem) = String::from_utf8(pem) else {
        return refused(format!("{PUBLIC_KEY_FILE} is not text"));
    };
    let bundled = match PublicKey::from_pem(&pem, PUBLIC_KEY_FILE) {
        Ok(key) => key,
        Err(e) => return refused(e.to_string()),
    };
    let sig = match read_limited(dir, SIGNATURE_FILE, 1024) {
        Ok(sig) => sig,
        Err(e) => return refused(format!("{SIGNATURE_FILE} cannot be read: {e}")),
    };
    let verified = bundled.verify(bytes, &sig);
    let outcome = |verdict| SignatureOutcome {
        authentic: verified.is_ok(),
        verdict,
    };
    if bundled.key_id() != manifest.signer_key_id {
        return outcome(Err(format!(
            "signer_key_id is {} but {PUBLIC_KEY_FILE} is {}",
            manifest.signer_key_id,
            bundled.key_id()
        )));
    }
    if let Err(e) = &verified {
        return outcome(Err(format!(
            "{e}; {MANIFEST_FILE} is not what the key in {PUBLIC_KEY_FILE} signed"
        )));
    }
    if let Some(pinned) = options.pinned {
        if *pinned != bundled {
            return outcome(Err(format!(
                "the bundle was signed by {}, not by the pinned key {}",
                bundled.key_id(),
                pinned.key_id()
            )));
        }
    }
    if let Some(expected) = options.run_id {
        if expected != manifest.run_id {
            return outcome(Err(format!(
                "the signature is for run `{}`, not the expected run `{expected}`",
                manifest.run_id
            )));
        }
    }
    outcome(Ok(if options.pinned.is_some() {
        format!(
            "Ed25519 signature by the pinned key {} over run `{}`",
            bundled.key_id(),
            manifest.run_id
        )
    } else {
        format!(
            "Ed25519 signature by {} (self-asserted: the key came with the bundle, so anyone could have made it; pass --pubkey to pin it)",
            bundled.key_id()
        )
    }))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    use std::os::unix::fs::FileTypeExt;

    // walk-G recheck N1: a file swapped for a FIFO or a link between the `lstat` and the open
    // made verify block forever or leave the folder. The open itself now does neither.
    #[test]
    fn the_open_neither_waits_for_a_fifo_nor_follows_a_link() {
        let dir = tempfile::tempdir().expect("tmp");
        let fifo = dir.path().join("ask.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        // No writer: a blocking open would never return.
        let opened = open_no_follow(&fifo).expect("a FIFO opens without waiting");
        assert!(opened.metadata().expect("fstat").file_type().is_fifo());

        let target = dir.path().join("target.json");
        fs::write(&target, b"{}").expect("write");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(
            open_no_follow(&link).is_err(),
            "a final symlink is not followed"
        );
        assert!(open_no_follow(&target).is_ok());
    }
}
