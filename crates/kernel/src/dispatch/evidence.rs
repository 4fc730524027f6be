//! Content-addressed evidence (KRN-12): tool inputs and outputs stored once under
//! `evidence/inputs/<sha256>` as their RFC 8785 canonical JSON, referenced by relative paths so a
//! workspace can be moved or archived without breaking its receipts.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lumenflow_contracts::canonical_json::to_canonical_vec;
use lumenflow_contracts::digest::Sha256Digest;
use serde_json::Value;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `<workspace>/.lumenflow/kernel/evidence`.
pub fn default_root(workspace_dir: &Path) -> PathBuf {
    workspace_dir
        .join(".lumenflow")
        .join("kernel")
        .join("evidence")
}

/// A stored value: its digest and where it lives relative to the evidence root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `sha256:<hex>` of the canonical JSON.
    pub hash: String,
    /// `inputs/<hex>`, relative to the evidence root.
    pub reference: String,
}

impl Stored {
    fn of(digest: &Sha256Digest) -> Stored {
        Stored {
            hash: digest.to_string(),
            reference: format!("inputs/{}", digest.hex()),
        }
    }
}

/// What [`EvidenceStore::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// Stored before by this process: nothing to write.
    Known(Stored),
    /// Not known here: [`EvidenceStore::write`] stores it.
    New(NewBlob),
}

/// A value's canonical bytes and digest, not yet known to be on disk.
#[derive(Debug)]
pub struct NewBlob {
    bytes: Vec<u8>,
    digest: Sha256Digest,
}

#[derive(Debug, Clone)]
pub struct EvidenceStore {
    root: PathBuf,
    /// Blobs this process already stored or saw: a repeated input costs no syscall.
    known: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>,
}

impl EvidenceStore {
    pub fn open(root: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(root.join("inputs"))?;
        Ok(EvidenceStore {
            root: root.to_path_buf(),
            known: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Store `value` (idempotent: an existing blob with the same digest is left as is). A new
    /// blob is fsync'd before this returns, so a receipt never points at a blob a crash lost.
    pub fn put(&self, value: &Value) -> std::io::Result<Stored> {
        match self.lookup(value) {
            Lookup::Known(stored) => Ok(stored),
            Lookup::New(blob) => self.write(blob),
        }
    }

    /// The first half of [`EvidenceStore::put`], without I/O: `value`'s canonical form and
    /// digest, and whether this process already stored or saw that blob. Async callers write a
    /// [`Lookup::New`] blob on a blocking thread.
    pub fn lookup(&self, value: &Value) -> Lookup {
        let bytes = to_canonical_vec(value);
        let digest = Sha256Digest::of(&bytes);
        let known = self
            .known
            .lock()
            .map(|k| k.contains(digest.as_bytes()))
            .unwrap_or(false);
        if known {
            Lookup::Known(Stored::of(&digest))
        } else {
            Lookup::New(NewBlob { bytes, digest })
        }
    }

    /// The second half of [`EvidenceStore::put`]: write a blob [`EvidenceStore::lookup`] did not
    /// know (unless it is on disk already), fsync'd with its folder.
    pub fn write(&self, blob: NewBlob) -> std::io::Result<Stored> {
        let NewBlob { bytes, digest } = blob;
        let stored = Stored::of(&digest);
        let path = self.root.join(&stored.reference);
        if !path.exists() {
            let hex = digest.hex();
            // Each writer has its own temp file: two threads (or processes) storing the same new
            // blob at once must not truncate or rename away each other's file.
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = self
                .root
                .join("inputs")
                .join(format!(".{hex}.tmp-{}-{n}", std::process::id()));
            let written = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&tmp)
                .and_then(|mut f| {
                    f.write_all(&bytes)?;
                    f.sync_data()
                });
            // A half-written temp file (a full disk) would keep the disk full.
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            // Rename is atomic; two writers of the same blob write identical bytes. The folder
            // is synced too, or a crash could lose the name while a receipt points at it.
            if let Err(e) = fs::rename(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            fs::File::open(self.root.join("inputs"))?.sync_all()?;
        }
        if let Ok(mut k) = self.known.lock() {
            if k.len() > 100_000 {
                k.clear();
            }
            k.insert(*digest.as_bytes());
        }
        Ok(stored)
    }

    /// Read a stored value back and check it still has its digest.
    pub fn get(&self, reference: &str) -> std::io::Result<Value> {
        let rel = Path::new(reference);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "evidence reference must stay inside the store",
            ));
        }
        let bytes = fs::read(self.root.join(rel))?;
        let expected = reference.trim_start_matches("inputs/");
        if Sha256Digest::of(&bytes).hex() != expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("evidence blob `{reference}` does not match its digest"),
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Receipts whose evidence is on disk and intact: what `lumenflow audit verify` adds to the chain
/// check (walk-F F-10). A receipt's hash proves nothing without the blob it names, so a backup
/// restored without `kernel/evidence/` must not pass as "ok".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EvidenceSummary {
    /// References checked (`input_ref` and `output_ref` of every receipt).
    pub references: u64,
    /// Distinct blobs read and hashed.
    pub blobs: u64,
}

/// Why a receipt cannot be proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceFault {
    /// The blob the reference names is not in the store.
    Missing,
    /// The blob's content does not hash to the digest its name and the receipt record.
    Mismatch { computed: String },
    /// The reference is not `inputs/<64 hex>`, or the receipt's hash names another digest.
    BadReference(String),
    /// The blob exists but cannot be read.
    Unreadable(String),
}

/// The first receipt whose evidence fails, and how many references fail in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceProblem {
    /// The log line (= `seq`) of the receipt.
    pub line: u64,
    pub receipt_id: Option<String>,
    /// `input_ref` or `output_ref`.
    pub field: &'static str,
    pub reference: String,
    pub fault: EvidenceFault,
    /// References that fail, this one included.
    pub failing: u64,
    pub summary: EvidenceSummary,
}

impl EvidenceProblem {
    /// `EVIDENCE_MISSING` or `EVIDENCE_MISMATCH`.
    pub fn code(&self) -> &'static str {
        match self.fault {
            EvidenceFault::Missing => "EVIDENCE_MISSING",
            _ => "EVIDENCE_MISMATCH",
        }
    }
}

impl std::fmt::Display for EvidenceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let receipt = self.receipt_id.as_deref().unwrap_or("(no receipt id)");
        write!(
            f,
            "line {}: receipt `{receipt}` {} `{}` ",
            self.line, self.field, self.reference
        )?;
        match &self.fault {
            EvidenceFault::Missing => write!(f, "is not in the evidence store")?,
            EvidenceFault::Mismatch { computed } => write!(
                f,
                "does not hash to its digest (computed sha256:{computed})"
            )?,
            EvidenceFault::BadReference(why) => write!(f, "is not a valid reference: {why}")?,
            EvidenceFault::Unreadable(why) => write!(f, "cannot be read: {why}")?,
        }
        write!(
            f,
            "; {} of {} evidence references cannot be proven",
            self.failing, self.summary.references
        )
    }
}

/// The digest a reference names: `inputs/<64 lowercase hex>` and nothing else, so a reference
/// edited into `../../somewhere` is a fault, never a file read outside the store.
fn referenced_digest(reference: &str) -> Result<Sha256Digest, String> {
    reference
        .strip_prefix("inputs/")
        .ok_or_else(|| "expected `inputs/<sha256 hex>`".to_string())
        .and_then(|hex| {
            Sha256Digest::parse_hex(hex).map_err(|e| format!("expected `inputs/<sha256 hex>`: {e}"))
        })
}

/// The SHA-256 of the file at `path`, read in chunks (outputs can be large).
fn hash_file(path: &Path) -> std::io::Result<Sha256Digest> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
}

/// Check every `input_ref`/`output_ref` of the kernel log at `log_path` against the store at
/// `root`: the blob exists, hashes to the digest in its name, and that digest is the receipt's
/// `input_hash`/`output_hash`. The log is read line by line (run it after the chain verified);
/// each distinct blob is hashed once. `Err` names the first failing receipt and counts the rest.
pub fn verify_references(
    log_path: &Path,
    root: &Path,
) -> std::io::Result<Result<EvidenceSummary, EvidenceProblem>> {
    use std::io::BufRead;
    let reader = std::io::BufReader::with_capacity(256 * 1024, fs::File::open(log_path)?);
    let mut summary = EvidenceSummary::default();
    // Blob digest → its fault (`None`: intact), so a blob many receipts share is read once.
    let mut seen: std::collections::HashMap<[u8; 32], Option<EvidenceFault>> =
        std::collections::HashMap::new();
    let mut first: Option<(u64, Option<String>, &'static str, String, EvidenceFault)> = None;
    let mut failing = 0u64;
    for (index, line) in reader.split(b'\n').enumerate() {
        let line_no = index as u64 + 1;
        let bytes = line?;
        // A torn or bad line is the chain check's to report, not this one's.
        let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        for (field, hash_field) in [("input_ref", "input_hash"), ("output_ref", "output_hash")] {
            let Some(reference) = record.get(field).and_then(Value::as_str) else {
                continue;
            };
            summary.references += 1;
            let fault = match referenced_digest(reference) {
                Err(why) => Some(EvidenceFault::BadReference(why)),
                Ok(digest) => {
                    let recorded = record.get(hash_field).and_then(Value::as_str);
                    if recorded.is_some_and(|h| h != digest.to_string()) {
                        Some(EvidenceFault::BadReference(format!(
                            "the receipt's `{hash_field}` is `{}`",
                            recorded.unwrap_or_default()
                        )))
                    } else {
                        seen.entry(*digest.as_bytes())
                            .or_insert_with(|| {
                                summary.blobs += 1;
                                match hash_file(&root.join(reference)) {
                                    Ok(d) if d == digest => None,
                                    Ok(d) => Some(EvidenceFault::Mismatch { computed: d.hex() }),
                                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                        Some(EvidenceFault::Missing)
                                    }
                                    Err(e) => Some(EvidenceFault::Unreadable(e.to_string())),
                                }
                            })
                            .clone()
                    }
                }
            };
            if let Some(fault) = fault {
                failing += 1;
                if first.is_none() {
                    let receipt = record
                        .get("receipt_id")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    first = Some((line_no, receipt, field, reference.to_string(), fault));
                }
            }
        }
    }
    Ok(match first {
        None => Ok(summary),
        Some((line, receipt_id, field, reference, fault)) => Err(EvidenceProblem {
            line,
            receipt_id,
            field,
            reference,
            fault,
            failing,
            summary,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stores_canonical_json_once_and_detects_tampering() {
        // KRN-12
        let dir = tempfile::tempdir().expect("tmp");
        let store = EvidenceStore::open(dir.path()).expect("open");
        let a = store
            .put(&json!({"b": 1, "a": [2, {"d": null, "c": true}]}))
            .expect("put");
        let b = store
            .put(&json!({"a": [2, {"c": true, "d": null}], "b": 1}))
            .expect("put");
        assert_eq!(a, b);
        assert_eq!(
            fs::read_to_string(dir.path().join(&a.reference)).expect("read"),
            r#"{"a":[2,{"c":true,"d":null}],"b":1}"#
        );
        assert_eq!(
            store.get(&a.reference).expect("get"),
            json!({"a": [2, {"c": true, "d": null}], "b": 1})
        );
        fs::write(dir.path().join(&a.reference), "{}").expect("tamper");
        assert!(store.get(&a.reference).is_err());
        assert!(store.get("../../etc/passwd").is_err());
    }

    #[test]
    fn concurrent_writers_of_one_new_blob_all_succeed() {
        // KRN-12: 64 callers with the same new input at once (the dispatch bench found two
        // threads sharing one temp file name, so one rename failed).
        let dir = tempfile::tempdir().expect("tmp");
        let store = EvidenceStore::open(dir.path()).expect("open");
        let value = json!({"path": "data/x.csv", "n": 7});
        let results: Vec<std::io::Result<Stored>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    let store = store.clone();
                    let value = value.clone();
                    s.spawn(move || store.put(&value))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        });
        for r in &results {
            assert!(r.is_ok(), "{r:?}");
        }
        let stored = results[0].as_ref().expect("stored");
        assert_eq!(store.get(&stored.reference).expect("get"), value);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("inputs"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    /// walk-F F-10 (KRN-12, KRN-13): missing, altered and redirected evidence is found, with the
    /// first receipt's line and the count; a shared blob is hashed once.
    #[test]
    fn references_are_checked_against_the_store() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = EvidenceStore::open(dir.path()).expect("open");
        let a = store.put(&json!({"a": 1})).expect("put");
        let b = store.put(&json!({"b": 2})).expect("put");
        let log = dir.path().join("events.jsonl");
        let lines = [
            json!({"kind": "tool_call_started", "receipt_id": "r1", "input_ref": a.reference, "input_hash": a.hash}),
            json!({"kind": "tool_call_finished", "receipt_id": "r1", "output_ref": b.reference, "output_hash": b.hash}),
            json!({"kind": "tool_call_started", "receipt_id": "r2", "input_ref": a.reference, "input_hash": a.hash}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        fs::write(&log, &text).expect("write");
        let check = || verify_references(&log, dir.path()).expect("io");
        assert_eq!(
            check(),
            Ok(EvidenceSummary {
                references: 3,
                blobs: 2
            })
        );

        fs::remove_file(dir.path().join(&a.reference)).expect("rm");
        let p = check().expect_err("missing");
        assert_eq!(
            (
                p.line,
                p.receipt_id.as_deref(),
                p.field,
                p.failing,
                p.code()
            ),
            (1, Some("r1"), "input_ref", 2, "EVIDENCE_MISSING")
        );
        fs::write(dir.path().join(&a.reference), "{}").expect("tamper");
        let p = check().expect_err("mismatch");
        assert!(matches!(p.fault, EvidenceFault::Mismatch { .. }), "{p}");
        assert_eq!(p.code(), "EVIDENCE_MISMATCH");

        let evil = text.replace(&b.reference, "inputs/../../../etc/passwd");
        fs::write(dir.path().join(&a.reference), r#"{"a":1}"#).expect("restore");
        fs::write(&log, evil).expect("write");
        let p = check().expect_err("bad reference");
        assert_eq!((p.line, p.field), (2, "output_ref"));
        assert!(matches!(p.fault, EvidenceFault::BadReference(_)), "{p}");
    }
}
