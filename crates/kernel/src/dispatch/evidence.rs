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
}
