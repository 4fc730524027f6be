//! Inbound events: untrusted bytes in; delivered to handlers, or rejected with a reason and
//! recorded. Nothing that fails a check ever reaches a handler, and nothing panics.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_contracts::payloads::parse_payload;
use lumenflow_contracts::time::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

use super::host::{Delivery, PackHost};

/// How much of a rejected body is kept in the record.
const MAX_RECORDED_BYTES: usize = 4096;

/// Why an inbound event was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub code: &'static str,
    pub reason: String,
    pub kind: Option<String>,
    pub event_id: Option<String>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Check `bytes` as one inbound v2 event and deliver it; on refusal, append the rejection to
/// `.lumenflow/state/conductor/rejected.jsonl` (best effort is not enough here: a failure to
/// record is reported in the reason).
pub fn receive(host: &PackHost, bytes: &[u8]) -> Result<(KernelEventV2, Vec<Delivery>), Rejection> {
    match check(host, bytes) {
        Ok(event) => {
            let deliveries = host.deliver(&event);
            Ok((event, deliveries))
        }
        Err(mut rejection) => {
            if let Err(e) = record_rejection(
                &super::rejections_path(host.workspace_dir()),
                &rejection,
                bytes,
            ) {
                rejection
                    .reason
                    .push_str(&format!(" (and the rejection could not be recorded: {e})"));
            }
            Err(rejection)
        }
    }
}

/// The checks alone, in order: JSON, envelope (schema version 2, fields), a subscriber for the
/// kind, the payload shape of a known kind.
pub fn check(host: &PackHost, bytes: &[u8]) -> Result<KernelEventV2, Rejection> {
    let reject = |code, reason: String, kind: Option<String>, event_id: Option<String>| Rejection {
        code,
        reason,
        kind,
        event_id,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        reject(
            "EVENT_NOT_JSON",
            format!("body is not valid JSON: {e}"),
            None,
            None,
        )
    })?;
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_string);
    let event_id = value
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let event = KernelEventV2::from_json_value(value)
        .map_err(|e| reject(e.code(), e.to_string(), kind.clone(), event_id.clone()))?;
    if !host.has_subscriber(&event.kind) {
        return Err(reject(
            "NO_SUBSCRIBER",
            format!("no registered pack subscribes to `{}`", event.kind),
            kind,
            event_id,
        ));
    }
    parse_payload(&event.kind, &event.payload).map_err(|e| {
        reject(
            "EVENT_PAYLOAD_INVALID",
            e.to_string(),
            kind.clone(),
            event_id.clone(),
        )
    })?;
    Ok(event)
}

fn record_rejection(path: &Path, rejection: &Rejection, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let kept = &bytes[..bytes.len().min(MAX_RECORDED_BYTES)];
    let line = json!({
        "at": Timestamp::now().to_rfc3339(),
        "code": rejection.code,
        "reason": rejection.reason,
        "kind": rejection.kind,
        "event_id": rejection.event_id,
        "body": String::from_utf8_lossy(kept),
        "body_truncated": bytes.len() > MAX_RECORDED_BYTES,
    });
    let mut out = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
    out.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(&out)?;
    f.sync_data()
}

/// The recorded rejections (for `lumenflow events rejected` and tests).
pub fn read_rejections(workspace_dir: &Path) -> Vec<Value> {
    let path: PathBuf = super::rejections_path(workspace_dir);
    fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}
