//! [`LocalApprovals`]: the approvals store as files under the workspace (see the module docs of
//! [`crate::approvals`] for the format).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use lumenflow_contracts::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    check_input_hash, ApprovalError, ApprovalFilter, ApprovalList, ApprovalProvider,
    ApprovalRequest, ApprovalStatus, ConsumeOutcome, Decision, NewApproval, UnreadableApproval,
};
use crate::file_lock::LockFile;
use crate::install::write_file_atomically;
use crate::workspace::STATE_DIR;

/// Version of every file this store writes.
const SCHEMA_VERSION: u32 = 1;
const ID_PREFIX: &str = "apr_";
const ID_LEN: usize = 20;
/// Lowercase Crockford base32: no `i`, `l`, `o`, `u`.
const ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const RECORD_EXT: &str = "json";
const DECISION_EXT: &str = "decision";
const CONSUMED_EXT: &str = "consumed";
/// The file whose exclusive `flock` makes find-pending-or-create atomic across processes (the
/// listing reads only `apr_*.json`).
const CREATE_LOCK: &str = ".create.lock";
/// Larger files are not records this store wrote.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// `<workspace>/.lumenflow/state/approvals`.
pub fn approvals_dir(workspace_dir: &Path) -> PathBuf {
    workspace_dir
        .join(STATE_DIR)
        .join("state")
        .join("approvals")
}

/// Approvals kept as files in one folder (normally [`approvals_dir`]). Several handles, threads
/// and processes may use the same folder at once: decisions and consumption are arbitrated by
/// exclusive file creation, reuse of a pending request by a lock file, not by this handle.
#[derive(Debug)]
pub struct LocalApprovals {
    dir: PathBuf,
    /// Makes find-pending-or-create atomic among this handle's threads; [`CREATE_LOCK`] does
    /// among handles and processes.
    create_lock: Mutex<()>,
}

/// `<id>.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRecord {
    schema_version: u32,
    id: String,
    tool: String,
    input_hash: String,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    run: Option<String>,
    requested_by: String,
    requested_at: Timestamp,
    expires_at: Timestamp,
    reason: String,
    required_approval_ids: Vec<String>,
    #[serde(default)]
    decision: Option<Decision>,
}

/// `<id>.decision`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredDecision {
    schema_version: u32,
    id: String,
    decision: Decision,
}

/// `<id>.consumed` (its existence is what counts; the content is for people).
#[derive(Debug, Serialize, Deserialize)]
struct StoredConsumption {
    schema_version: u32,
    id: String,
    tool: String,
    input_hash: String,
    consumed_at: Timestamp,
}

impl LocalApprovals {
    /// The store of the workspace at `workspace_dir`. Touches nothing until used.
    pub fn open(workspace_dir: &Path) -> Self {
        Self::at(approvals_dir(workspace_dir))
    }

    /// A store in `dir` itself.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        LocalApprovals {
            dir: dir.into(),
            create_lock: Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record file of `id` (whether or not it exists).
    pub fn record_path(&self, id: &str) -> PathBuf {
        self.file(id, RECORD_EXT)
    }

    fn file(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    fn ensure_dir(&self) -> Result<(), ApprovalError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir).map_err(ApprovalError::io("create", &self.dir))?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Publish `bytes` as `path` only if nothing is there: temp file, fsync, `link` (which fails
    /// on an existing name), directory fsync. `false` when the name was taken.
    fn publish_exclusive(&self, path: &Path, bytes: &[u8]) -> Result<bool, ApprovalError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".apr-tmp-")
            .tempfile_in(&self.dir)
            .map_err(ApprovalError::io("create a temporary file in", &self.dir))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(ApprovalError::io("write", tmp.path()))?;
        set_mode_0644(tmp.path()).map_err(ApprovalError::io("set permissions of", tmp.path()))?;
        match fs::hard_link(tmp.path(), path) {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(ApprovalError::Io {
                action: "create",
                path: path.to_path_buf(),
                source: e,
            }),
        }
        // `tmp` is removed when dropped.
    }

    /// Read the approval `id`: its record, the decision that arbitrates it, and the consumed
    /// marker. The record is read first: a decision copied into it was published in
    /// `<id>.decision` before, so a concurrent decision cannot make a sound store look corrupt.
    fn load(&self, id: &str) -> Result<ApprovalRequest, ApprovalError> {
        if !is_valid_id(id) {
            return Err(ApprovalError::NotFound { id: id.to_string() });
        }
        let record_path = self.file(id, RECORD_EXT);
        let Some(bytes) = read_optional(&record_path)? else {
            return Err(ApprovalError::NotFound { id: id.to_string() });
        };
        let corrupt = |path: &Path, reason: String| ApprovalError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let record: StoredRecord = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(&record_path, format!("not an approval record: {e}")))?;
        if record.schema_version != SCHEMA_VERSION {
            return Err(corrupt(
                &record_path,
                format!("unsupported schema_version {}", record.schema_version),
            ));
        }
        if record.id != id {
            return Err(corrupt(
                &record_path,
                format!("holds approval `{}`, not `{id}`", record.id),
            ));
        }
        check_input_hash(&record.input_hash).map_err(|e| corrupt(&record_path, e.to_string()))?;

        let decision_path = self.file(id, DECISION_EXT);
        let decision = match read_optional(&decision_path)? {
            None => None,
            Some(bytes) => {
                let stored: StoredDecision = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(&decision_path, format!("not a decision: {e}")))?;
                if stored.schema_version != SCHEMA_VERSION || stored.id != id {
                    return Err(corrupt(
                        &decision_path,
                        format!(
                            "expected schema_version {SCHEMA_VERSION} and id `{id}`, found {} and `{}`",
                            stored.schema_version, stored.id
                        ),
                    ));
                }
                Some(stored.decision)
            }
        };
        match (&record.decision, &decision) {
            (Some(_), None) => {
                return Err(corrupt(
                    &record_path,
                    format!("records a decision that `{id}.{DECISION_EXT}` does not confirm"),
                ))
            }
            (Some(copy), Some(arbiter)) if copy != arbiter => {
                return Err(corrupt(
                    &record_path,
                    format!("its decision differs from the one in `{id}.{DECISION_EXT}`"),
                ))
            }
            // (None, Some): a crash between publishing the decision and copying it; the
            // published decision holds.
            _ => {}
        }

        let consumed_path = self.file(id, CONSUMED_EXT);
        let (consumed, consumed_at) = match read_optional(&consumed_path)? {
            None => (false, None),
            // An empty or torn marker (a crash while writing it) still means consumed.
            Some(bytes) => (
                true,
                serde_json::from_slice::<StoredConsumption>(&bytes)
                    .ok()
                    .map(|c| c.consumed_at),
            ),
        };

        Ok(ApprovalRequest {
            id: record.id,
            tool: record.tool,
            input_hash: record.input_hash,
            task: record.task,
            run: record.run,
            requested_by: record.requested_by,
            requested_at: record.requested_at,
            expires_at: record.expires_at,
            reason: record.reason,
            required_approval_ids: record.required_approval_ids,
            decision,
            consumed,
            consumed_at,
        })
    }

    /// Every approval of the folder, oldest request first, and the files that could not be read.
    fn scan(&self) -> Result<ApprovalList, ApprovalError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ApprovalList::default()),
            Err(e) => {
                return Err(ApprovalError::Io {
                    action: "read",
                    path: self.dir.clone(),
                    source: e,
                })
            }
        };
        let mut list = ApprovalList::default();
        for entry in entries {
            let entry = entry.map_err(ApprovalError::io("read", &self.dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|id| id.starts_with(ID_PREFIX))
            else {
                continue;
            };
            if !is_valid_id(id) {
                list.unreadable.push(UnreadableApproval {
                    file: entry.path().display().to_string(),
                    reason: "not a name this store writes".to_string(),
                });
                continue;
            }
            match self.load(id) {
                Ok(approval) => list.approvals.push(approval),
                // Removed while listing.
                Err(ApprovalError::NotFound { .. }) => {}
                Err(e @ (ApprovalError::Corrupt { .. } | ApprovalError::Io { .. })) => {
                    let file = match &e {
                        ApprovalError::Corrupt { path, .. } | ApprovalError::Io { path, .. } => {
                            path.display().to_string()
                        }
                        _ => entry.path().display().to_string(),
                    };
                    list.unreadable.push(UnreadableApproval {
                        file,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        list.approvals
            .sort_by(|a, b| (a.requested_at, &a.id).cmp(&(b.requested_at, &b.id)));
        list.unreadable.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(list)
    }

    /// The readable approvals bound to `tool` + `input_hash` in `status` at `now`.
    fn bound(
        &self,
        tool: &str,
        input_hash: &str,
        status: ApprovalStatus,
        now: Timestamp,
    ) -> Result<Vec<ApprovalRequest>, ApprovalError> {
        Ok(self
            .scan()?
            .approvals
            .into_iter()
            .filter(|a| a.is_bound_to(tool, input_hash) && a.status(now) == status)
            .collect())
    }
}

impl ApprovalProvider for LocalApprovals {
    fn request(&self, req: NewApproval) -> Result<ApprovalRequest, ApprovalError> {
        req.validate()?;
        self.ensure_dir()?;
        let expires_at = req.expires_at();
        let mut record = StoredRecord {
            schema_version: SCHEMA_VERSION,
            id: String::new(),
            tool: req.tool,
            input_hash: req.input_hash,
            task: req.task,
            run: req.run,
            requested_by: req.requested_by,
            requested_at: req.requested_at,
            expires_at,
            reason: req.reason,
            required_approval_ids: req.required_approval_ids,
            decision: None,
        };
        for _ in 0..16 {
            record.id = new_id(&record.tool, &record.input_hash, record.requested_at);
            let path = self.file(&record.id, RECORD_EXT);
            if self.publish_exclusive(&path, &to_json_bytes(&record, &path)?)? {
                return self.load(&record.id);
            }
        }
        Err(ApprovalError::Io {
            action: "create",
            path: self.dir.clone(),
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                "no unused approval id after 16 attempts",
            ),
        })
    }

    fn find_pending(
        &self,
        tool: &str,
        input_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ApprovalRequest>, ApprovalError> {
        // `scan` sorts by request time: the oldest pending request is the one already reported.
        Ok(self
            .bound(tool, input_hash, ApprovalStatus::Pending, now)?
            .into_iter()
            .next())
    }

    fn request_or_reuse(&self, req: NewApproval) -> Result<(ApprovalRequest, bool), ApprovalError> {
        req.validate()?;
        // A poisoned lock only means another thread panicked while holding it; the files are
        // the state, so carry on.
        let _guard = self
            .create_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // And across processes: a sidecar and a `lumenflow tool call` asking for one call.
        let lock_path = self.dir.join(CREATE_LOCK);
        let _across =
            LockFile::acquire(&lock_path).map_err(ApprovalError::io("lock", &lock_path))?;
        match self.find_pending(&req.tool, &req.input_hash, req.requested_at)? {
            Some(pending) => Ok((pending, false)),
            None => self.request(req).map(|created| (created, true)),
        }
    }

    fn find_grant(
        &self,
        tool: &str,
        input_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ApprovalRequest>, ApprovalError> {
        Ok(self
            .bound(tool, input_hash, ApprovalStatus::Granted, now)?
            .into_iter()
            .min_by(|a, b| (a.expires_at, &a.id).cmp(&(b.expires_at, &b.id))))
    }

    fn consume(
        &self,
        id: &str,
        tool: &str,
        input_hash: &str,
        now: Timestamp,
    ) -> Result<ConsumeOutcome, ApprovalError> {
        let approval = self.load(id)?;
        if !approval.is_bound_to(tool, input_hash) {
            return Err(ApprovalError::BindingMismatch {
                id: approval.id,
                bound_tool: approval.tool,
                bound_input_hash: approval.input_hash,
                tool: tool.to_string(),
                input_hash: input_hash.to_string(),
            });
        }
        match approval.status(now) {
            ApprovalStatus::Granted => {}
            ApprovalStatus::Consumed => {
                return Err(ApprovalError::AlreadyConsumed { id: approval.id })
            }
            ApprovalStatus::Expired => {
                return Err(ApprovalError::Expired {
                    id: approval.id,
                    expires_at: approval.expires_at,
                })
            }
            status @ (ApprovalStatus::Pending | ApprovalStatus::Denied) => {
                return Err(ApprovalError::NotGranted {
                    id: approval.id,
                    status,
                })
            }
        }
        let path = self.file(id, CONSUMED_EXT);
        // The exclusive create is the consumption: whoever creates the marker owns the one run.
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ApprovalError::AlreadyConsumed { id: approval.id })
            }
            Err(e) => {
                return Err(ApprovalError::Io {
                    action: "create",
                    path,
                    source: e,
                })
            }
        };
        let marker = StoredConsumption {
            schema_version: SCHEMA_VERSION,
            id: approval.id.clone(),
            tool: approval.tool.clone(),
            input_hash: approval.input_hash.clone(),
            consumed_at: now,
        };
        // From here on the grant is used up: a failure below refuses the run (the caller sees an
        // error) and never gives the grant back.
        file.write_all(&to_json_bytes(&marker, &path)?)
            .and_then(|()| file.sync_all())
            .map_err(ApprovalError::io("write", &path))?;
        drop(file);
        sync_dir(&self.dir)?;
        Ok(ConsumeOutcome {
            approval: ApprovalRequest {
                consumed: true,
                consumed_at: Some(now),
                ..approval
            },
            consumed_at: now,
        })
    }

    fn get(&self, id: &str) -> Result<ApprovalRequest, ApprovalError> {
        self.load(id)
    }

    fn list(&self, filter: &ApprovalFilter) -> Result<ApprovalList, ApprovalError> {
        let mut list = self.scan()?;
        list.approvals.retain(|a| filter.matches(a));
        Ok(list)
    }

    fn decide(&self, id: &str, decision: Decision) -> Result<ApprovalRequest, ApprovalError> {
        let current = self.load(id)?;
        refuse_decided(&current, decision.decided_at())?;
        for (field, value) in [
            ("approver", decision.approver()),
            ("reason", decision.reason()),
        ] {
            if value.trim().is_empty() {
                return Err(ApprovalError::Invalid {
                    what: "decision",
                    reason: format!("the {field} is empty"),
                });
            }
        }
        let decision_path = self.file(id, DECISION_EXT);
        let stored = StoredDecision {
            schema_version: SCHEMA_VERSION,
            id: current.id.clone(),
            decision: decision.clone(),
        };
        if !self.publish_exclusive(&decision_path, &to_json_bytes(&stored, &decision_path)?)? {
            // Another decision won the race: report it.
            let winner = self.load(id)?;
            refuse_decided(&winner, decision.decided_at())?;
            return Err(ApprovalError::Corrupt {
                path: decision_path,
                reason: "exists but holds no decision".to_string(),
            });
        }
        // The decision is durable and final now. The record gets a readable copy; if that write
        // fails the published decision still holds (a record without its copy reads fine).
        let record_path = self.file(id, RECORD_EXT);
        let record = StoredRecord {
            schema_version: SCHEMA_VERSION,
            id: current.id.clone(),
            tool: current.tool.clone(),
            input_hash: current.input_hash.clone(),
            task: current.task.clone(),
            run: current.run.clone(),
            requested_by: current.requested_by.clone(),
            requested_at: current.requested_at,
            expires_at: current.expires_at,
            reason: current.reason.clone(),
            required_approval_ids: current.required_approval_ids.clone(),
            decision: Some(decision.clone()),
        };
        if let Ok(bytes) = to_json_bytes(&record, &record_path) {
            let _ = write_file_atomically(&record_path, &bytes);
        }
        Ok(ApprovalRequest {
            decision: Some(decision),
            ..current
        })
    }
}

/// Refuse a decision on an approval that is not pending at `at`.
fn refuse_decided(approval: &ApprovalRequest, at: Timestamp) -> Result<(), ApprovalError> {
    match approval.status(at) {
        ApprovalStatus::Pending => Ok(()),
        ApprovalStatus::Consumed => Err(ApprovalError::AlreadyConsumed {
            id: approval.id.clone(),
        }),
        ApprovalStatus::Expired => Err(ApprovalError::Expired {
            id: approval.id.clone(),
            expires_at: approval.expires_at,
        }),
        ApprovalStatus::Granted | ApprovalStatus::Denied => {
            let (outcome, approver) = approval
                .decision
                .as_ref()
                .map(|d| (d.outcome(), d.approver().to_string()))
                .unwrap_or(("decided", String::new()));
            Err(ApprovalError::AlreadyDecided {
                id: approval.id.clone(),
                outcome,
                approver,
            })
        }
    }
}

/// `apr_` + 20 characters of the id alphabet.
pub(crate) fn is_valid_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX)
        .is_some_and(|rest| rest.len() == ID_LEN && rest.bytes().all(|b| ID_ALPHABET.contains(&b)))
}

/// A fresh id: a hash of the binding, the request time, a process-wide counter, the process id and
/// the clock. Unique per workspace because the record is created exclusively (a collision retries).
fn new_id(tool: &str, input_hash: &str, requested_at: Timestamp) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(tool.as_bytes());
    hasher.update([0]);
    hasher.update(input_hash.as_bytes());
    hasher.update([0]);
    hasher.update(requested_at.unix_millis().to_le_bytes());
    hasher.update(counter.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(nanos.to_le_bytes());
    let digest = hasher.finalize();
    // 20 characters × 5 bits = the first 100 bits of the digest.
    let mut id = String::with_capacity(ID_PREFIX.len() + ID_LEN);
    id.push_str(ID_PREFIX);
    for i in 0..ID_LEN {
        let bit = i * 5;
        let hi = u16::from(digest[bit / 8]) << 8;
        let lo = u16::from(digest.get(bit / 8 + 1).copied().unwrap_or(0));
        let index = ((hi | lo) >> (11 - bit % 8)) & 0x1f;
        id.push(char::from(ID_ALPHABET[usize::from(index)]));
    }
    id
}

fn to_json_bytes<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>, ApprovalError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| ApprovalError::Io {
        action: "encode",
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The file's bytes, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ApprovalError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ApprovalError::Io {
                action: "read",
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    if !meta.is_file() {
        return Err(ApprovalError::Corrupt {
            path: path.to_path_buf(),
            reason: "not a regular file".to_string(),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ApprovalError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{} bytes, more than this store ever writes", meta.len()),
        });
    }
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApprovalError::Io {
            action: "read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ApprovalError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ApprovalError::io("sync", dir))
}

#[cfg(unix)]
fn set_mode_0644(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_mode_0644(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape_and_differ() {
        let at = Timestamp::from_unix_millis(0);
        let a = new_id("t", "h", at);
        let b = new_id("t", "h", at);
        assert!(is_valid_id(&a), "{a}");
        assert!(is_valid_id(&b), "{b}");
        assert_ne!(a, b);
    }

    #[test]
    fn ids_that_could_escape_the_folder_are_refused() {
        for id in [
            "",
            "apr_",
            "../../etc/passwd",
            "apr_../../../../etc/pw",
            "apr_ABCDEFGHJKMNPQRSTVWX",
            "apr_0123456789abcdefghjk/",
            "apr_0123456789abcdefghj",
        ] {
            assert!(!is_valid_id(id), "{id}");
        }
        assert!(is_valid_id("apr_0123456789abcdefghjk"));
    }
}
