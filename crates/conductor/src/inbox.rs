//! Inbound queue-class events (`POST /events`; Q20, Q37, ABR-05, BKP-04).
//!
//! A command or recovery request reaching the workspace is first made durable: it is written to
//! `.lumenflow/state/conductor/inbox/<seq>.json` (fsync'd) with the authenticated subject, then
//! handed to the kernel's inbound path ([`lumenflow_kernel::events::inbound::receive`]), which
//! checks it and runs every subscribed pack handler. The file is deleted (the event acknowledged)
//! only when every handler succeeded or the event was refused for good; a handler failure keeps
//! it, and it is delivered again at the next start (handlers are idempotent through their replay
//! logs, so a redelivery never repeats an effect).
//!
//! Identity comes from the token, never from the body (ENR-09): the event's `from` is replaced by
//! the token subject and a differing claimed `from` is kept in the inbox record. A phone subject
//! must be a registered device (`devices.json`), and its name is recorded (ENR-05). Only kinds
//! whose direction is inbound and whose class is queue are accepted here.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lumenflow_contracts::identity::Subject;
use lumenflow_contracts::kinds::{DeliveryClass, Direction, KnownKind};
use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::eventlog::EventLog;
use lumenflow_kernel::events::host::{Delivery, DeliveryResult, PackHost};
use lumenflow_kernel::events::inbound;
use lumenflow_kernel::file_lock::LockFile;
use serde::Serialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::enrollment;
use crate::fsio::{self, Mode};

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("body is not a JSON object: {0}")]
    NotJson(String),
    #[error("`{0}` is not an inbound queue-class kind; this route accepts {1}")]
    NotInbound(String, String),
    #[error("device `{0}` is not registered in devices.json (run `lumenflow device add {0} --name NAME`)")]
    UnknownDevice(String),
    #[error("{code}: {reason}")]
    Rejected { code: String, reason: String },
    #[error("a handler failed, the event stays in the inbox and will be delivered again: {0}")]
    HandlerFailed(String),
    #[error("inbox `{path}`: {reason}")]
    Io { path: PathBuf, reason: String },
}

impl InboxError {
    pub fn code(&self) -> String {
        match self {
            InboxError::NotJson(_) => "EVENT_NOT_JSON".into(),
            InboxError::NotInbound(..) => "EVENT_KIND_NOT_INBOUND".into(),
            InboxError::UnknownDevice(_) => "DEVICE_UNKNOWN".into(),
            InboxError::Rejected { code, .. } => code.clone(),
            InboxError::HandlerFailed(_) => "HANDLER_FAILED".into(),
            InboxError::Io { .. } => "INBOX_IO".into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            InboxError::NotJson(_) | InboxError::NotInbound(..) => 400,
            InboxError::UnknownDevice(_) => 403,
            InboxError::Rejected { .. } => 422,
            InboxError::HandlerFailed(_) => 503,
            InboxError::Io { .. } => 500,
        }
    }
}

/// What happened to an accepted event.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub event_id: String,
    pub kind: String,
    pub from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    pub deliveries: Vec<Delivery>,
}

/// The inbox folder and the pack host its events go to.
pub struct Inbox {
    dir: PathBuf,
    workspace_dir: PathBuf,
    host: Mutex<PackHost>,
    next: AtomicU64,
    /// The kernel's audit log: every inbound event is recorded with its subject and device.
    log: Option<EventLog>,
}

/// The file beside the inbox folder whose exclusive `flock` a process holds while it names,
/// handles and acknowledges inbox events. A sidecar and a `lumenflow mcp` of one workspace
/// share the inbox: without the lock, both could pick one file name, and the redelivery at one's
/// start-up could run the handlers of an event the other still has in hand (their replay logs
/// keep a redelivery single only when the deliveries do not overlap).
const HANDLING_LOCK: &str = "inbox.lock";

/// The kernel log kind of an inbound event the sidecar took in.
pub const RECEIVED_KIND: &str = "sidecar_event_received";

/// `<workspace>/.lumenflow/state/conductor/inbox`.
pub fn default_dir(workspace_dir: &Path) -> PathBuf {
    lumenflow_kernel::events::conductor_state_dir(workspace_dir).join("inbox")
}

/// The kinds this route takes.
pub fn inbound_queue_kinds() -> Vec<&'static str> {
    KnownKind::all()
        .into_iter()
        .filter(|k| k.direction() == Direction::In && k.delivery() == DeliveryClass::Queue)
        .map(KnownKind::as_str)
        .collect()
}

impl Inbox {
    pub fn open(
        workspace_dir: &Path,
        host: PackHost,
        log: Option<EventLog>,
    ) -> Result<Inbox, InboxError> {
        let dir = default_dir(workspace_dir);
        fs::create_dir_all(&dir).map_err(|e| InboxError::Io {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        let next = pending_files(&dir)
            .last()
            .and_then(|(seq, _)| seq.checked_add(1))
            .unwrap_or(1);
        Ok(Inbox {
            dir,
            workspace_dir: workspace_dir.to_path_buf(),
            host: Mutex::new(host),
            next: AtomicU64::new(next),
            log,
        })
    }

    /// Persist, hand to the handlers, acknowledge. Blocking (fsync, handlers): call it from a
    /// blocking thread.
    pub fn accept(&self, caller: &Caller, body: &[u8]) -> Result<Received, InboxError> {
        let mut value: Value =
            serde_json::from_slice(body).map_err(|e| InboxError::NotJson(e.to_string()))?;
        let Some(obj) = value.as_object_mut() else {
            return Err(InboxError::NotJson("the top level is not an object".into()));
        };
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let accepted = inbound_queue_kinds();
        if !accepted.contains(&kind.as_str()) {
            return Err(InboxError::NotInbound(kind, accepted.join(", ")));
        }
        let device_name = match &caller.subject {
            Subject::Phone { device_id, .. } => {
                let devices =
                    enrollment::load_devices(&self.workspace_dir).map_err(|e| InboxError::Io {
                        path: enrollment::devices_path(&self.workspace_dir),
                        reason: e.to_string(),
                    })?;
                match devices.into_iter().find(|d| &d.device_id == device_id) {
                    Some(d) => Some(d.name),
                    None => return Err(InboxError::UnknownDevice(device_id.clone())),
                }
            }
            Subject::Workspace { .. } => None,
        };
        let subject = caller.identity();
        let claimed = obj.insert("from".into(), Value::String(subject.clone()));
        let claimed_from = claimed
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|c| *c != subject);
        // The lock excludes this process's other threads too, so `next` is read and moved on
        // in one step; the name is past every file of the folder, so one another process used
        // is never taken.
        let _handling = self.handling()?;
        let seq = pending_files(&self.dir)
            .last()
            .and_then(|(seq, _)| seq.checked_add(1))
            .unwrap_or(1)
            .max(self.next.load(Ordering::Relaxed));
        self.next.store(seq.saturating_add(1), Ordering::Relaxed);
        let path = self.dir.join(format!("{seq:020}.json"));
        let record = json!({
            "received_at": Timestamp::now().to_rfc3339(),
            "subject": subject,
            "device_name": device_name,
            "claimed_from": claimed_from,
            "jti": caller.claims.jti,
            "event": value,
        });
        let bytes = serde_json::to_vec(&record).map_err(|e| InboxError::NotJson(e.to_string()))?;
        fsio::write_atomic(&path, &bytes, Mode::Private).map_err(|e| InboxError::Io {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(claimed) = &claimed_from {
            tracing::info!(subject = %subject, claimed_from = %claimed, "inbound event claimed another `from`; the token subject was recorded");
        }
        let result = self.process(&path, &value, device_name.clone());
        self.audit(&value, &subject, device_name, claimed_from, &result);
        result
    }

    /// ENR-05: the raw subject and the resolved device name of every inbound event, with what
    /// became of it, in the kernel's hash-chained log.
    fn audit(
        &self,
        event: &Value,
        subject: &str,
        device_name: Option<String>,
        claimed_from: Option<String>,
        result: &Result<Received, InboxError>,
    ) {
        let Some(log) = &self.log else { return };
        let (outcome, code, deliveries) = match result {
            Ok(r) => ("handled", None, json!(r.deliveries)),
            Err(e) => ("refused", Some(e.code()), Value::Null),
        };
        let record = json!({
            "kind": RECEIVED_KIND,
            "event_kind": event.get("kind"),
            "event_id": event.get("event_id"),
            "subject": subject,
            "device_name": device_name,
            "claimed_from": claimed_from,
            "outcome": outcome,
            "error_code": code,
            "deliveries": deliveries,
        });
        if let Value::Object(map) = record {
            if let Err(e) = log.append(map) {
                tracing::error!(
                    code = e.code(),
                    "cannot record an inbound event in the kernel log: {e}"
                );
            }
        }
    }

    fn process(
        &self,
        path: &Path,
        event: &Value,
        device_name: Option<String>,
    ) -> Result<Received, InboxError> {
        let bytes = serde_json::to_vec(event).map_err(|e| InboxError::NotJson(e.to_string()))?;
        let host = self.host.lock().map_err(|_| InboxError::Io {
            path: path.to_path_buf(),
            reason: "the pack host lock is poisoned".into(),
        })?;
        match inbound::receive(&host, &bytes) {
            Ok((event, deliveries)) => {
                let failed: Vec<String> = deliveries
                    .iter()
                    .filter_map(|d| match &d.result {
                        DeliveryResult::Failed { error } => {
                            Some(format!("pack `{}`: {error}", d.pack_id))
                        }
                        DeliveryResult::Ok(_) => None,
                    })
                    .collect();
                if !failed.is_empty() {
                    return Err(InboxError::HandlerFailed(failed.join("; ")));
                }
                self.ack(path)?;
                Ok(Received {
                    event_id: event.event_id,
                    kind: event.kind,
                    from: event.from,
                    device_name,
                    deliveries,
                })
            }
            Err(rejection) => {
                // Refused for good (and recorded by the kernel): nothing to retry.
                self.ack(path)?;
                Err(InboxError::Rejected {
                    code: rejection.code.to_string(),
                    reason: rejection.reason,
                })
            }
        }
    }

    fn ack(&self, path: &Path) -> Result<(), InboxError> {
        let io = |e: std::io::Error| InboxError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        fs::remove_file(path).map_err(io)?;
        fsio::sync_dir(&self.dir).map_err(io)
    }

    /// Hold [`HANDLING_LOCK`] until the returned file is dropped.
    fn handling(&self) -> Result<LockFile, InboxError> {
        let path = self.dir.with_file_name(HANDLING_LOCK);
        LockFile::acquire(&path).map_err(|e| InboxError::Io {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// Deliver events a previous run left unacknowledged, oldest first. Returns how many were
    /// acknowledged now.
    pub fn redeliver_pending(&self) -> usize {
        let _handling = match self.handling() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("inbox redelivery postponed to the next start: {e}");
                return 0;
            }
        };
        let mut done = 0;
        for (_, path) in pending_files(&self.dir) {
            let bytes = match fs::read(&path) {
                Ok(b) => Some(b),
                // Acknowledged by another process of the workspace since the folder was listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => None,
            };
            let record: Option<Value> = bytes.and_then(|b| serde_json::from_slice(&b).ok());
            let Some(record) = record else {
                tracing::error!(file = %path.display(), "unreadable inbox record left in place");
                continue;
            };
            let device = record
                .get("device_name")
                .and_then(Value::as_str)
                .map(str::to_string);
            let event = record.get("event").cloned().unwrap_or(Value::Null);
            match self.process(&path, &event, device) {
                Ok(_) | Err(InboxError::Rejected { .. }) => done += 1,
                Err(e) => tracing::warn!(file = %path.display(), "inbox redelivery: {e}"),
            }
        }
        done
    }

    /// How many events wait for a successful handler run.
    pub fn pending(&self) -> usize {
        pending_files(&self.dir).len()
    }
}

fn pending_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let seq = name.strip_suffix(".json")?.parse::<u64>().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort();
    out
}
