//! Turning an inbound event batch into rows (Q1, Q2, DLV).
//!
//! A batch is all or nothing: every event is checked before anything is stored, and the first bad
//! one refuses the whole batch with an error naming its index. v1 and v2 events travel in one body,
//! told apart by `schema_version`. A v2 event must come from the authenticated subject (or, for a
//! workspace's sidecar relaying them, one of the workspace's phone subjects, which the server then
//! checks against the registered and enrolled phones, since that needs the store); its `from` is its
//! delivery channel (DLV-03) and `seq` orders it within that channel. v1 events have no id, so
//! their dedupe key is `v1_` + the canonical-JSON hash of the event.

use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_contracts::event::KernelEventV2;
use lumenflow_contracts::identity::Subject;
use lumenflow_contracts::time::Timestamp;
use serde_json::Value;

use crate::error::{CloudError, CloudResult};
use crate::store::EventRow;

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 5_000;
/// Largest request body.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Check every event of a batch for `workspace_id` sent by `subject` and build the rows.
pub fn batch_rows(
    workspace_id: &str,
    subject: &Subject,
    events: Vec<Value>,
) -> CloudResult<Vec<EventRow>> {
    let texts: Vec<String> = events.iter().map(Value::to_string).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    batch_rows_raw(workspace_id, subject, &texts)
}

/// [`batch_rows`] over each event's JSON text as received (the server's path: a v2 event is
/// parsed once, straight into its envelope, and stored as sent instead of re-serialized).
pub fn batch_rows_raw(
    workspace_id: &str,
    subject: &Subject,
    events: &[&str],
) -> CloudResult<Vec<EventRow>> {
    if events.len() > MAX_BATCH_EVENTS {
        return Err(CloudError::TooLarge(format!(
            "the batch has {} events; at most {MAX_BATCH_EVENTS} are accepted per request",
            events.len()
        )));
    }
    let subject_text = subject.to_string();
    let check = |offset: usize, part: &[&str]| -> CloudResult<Vec<EventRow>> {
        part.iter()
            .enumerate()
            .map(|(i, text)| event_row(workspace_id, subject, &subject_text, offset + i, text))
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_CHECK_THREADS);
    if events.len() < PARALLEL_CHECK_MIN || threads < 2 {
        return check(0, events);
    }
    // A single client waits for its whole batch to be checked before anything is stored; split
    // across cores, that wait shrinks. The parts are joined in order, so the first error found
    // is still the one at the lowest index.
    let chunk = events.len().div_ceil(threads);
    let parts: Vec<CloudResult<Vec<EventRow>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = events
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || check(n * chunk, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(CloudError::Internal(
                        "a thread checking the batch stopped".into(),
                    ))
                })
            })
            .collect()
    });
    let mut rows = Vec::with_capacity(events.len());
    for part in parts {
        rows.extend(part?);
    }
    Ok(rows)
}

/// Batches at least this large are checked on several threads.
const PARALLEL_CHECK_MIN: usize = 256;
/// Most threads checking one batch.
const MAX_CHECK_THREADS: usize = 4;

/// Only the field that tells v1 from v2 (serde skips the rest without building it).
#[derive(serde::Deserialize)]
struct VersionProbe {
    schema_version: Option<Value>,
}

/// Check one event (at `index` in its batch) and build its row.
fn event_row(
    workspace_id: &str,
    subject: &Subject,
    subject_text: &str,
    index: usize,
    text: &str,
) -> CloudResult<EventRow> {
    // Nearly every event is v2: parse it straight into its envelope. Anything else (v1, a bad
    // event) is probed for its version first, so its error names what was wrong.
    if let Ok(event) = serde_json::from_str::<KernelEventV2>(text) {
        if event.schema_version == 2 {
            return v2_row_parsed(workspace_id, subject, subject_text, index, text, event);
        }
    }
    let version = match serde_json::from_str::<VersionProbe>(text) {
        Ok(probe) => probe.schema_version,
        // Not an object: it has no schema_version either.
        Err(_) => None,
    };
    match version.as_ref().and_then(Value::as_u64) {
        Some(2) => v2_row(workspace_id, subject, subject_text, index, text),
        Some(1) => {
            let value = serde_json::from_str(text)
                .map_err(|e| CloudError::EventInvalid(format!("events[{index}]: {e}")))?;
            v1_row(workspace_id, subject_text, index, value)
        }
        _ => {
            let shown = version.map_or_else(|| "missing".to_string(), |v| v.to_string());
            Err(CloudError::SchemaVersion(format!(
                "events[{index}]: schema_version {shown} is not supported; expected 1 or 2"
            )))
        }
    }
}

fn v2_row(
    workspace_id: &str,
    subject: &Subject,
    subject_text: &str,
    index: usize,
    text: &str,
) -> CloudResult<EventRow> {
    let event: KernelEventV2 = serde_json::from_str(text)
        .map_err(|e| CloudError::EventInvalid(format!("events[{index}]: {e}")))?;
    v2_row_parsed(workspace_id, subject, subject_text, index, text, event)
}

fn v2_row_parsed(
    workspace_id: &str,
    subject: &Subject,
    subject_text: &str,
    index: usize,
    text: &str,
    event: KernelEventV2,
) -> CloudResult<EventRow> {
    event
        .check()
        .map_err(|e| CloudError::EventInvalid(format!("events[{index}]: {e}")))?;
    let raw = text.to_string();
    let allowed = match subject {
        Subject::Phone { .. } => event.from == subject_text,
        Subject::Workspace { .. } => {
            event.from == subject_text
                || matches!(Subject::parse(&event.from),
                    Ok(Subject::Phone { workspace_id: ref ws, .. }) if ws == workspace_id)
        }
    };
    if !allowed {
        return Err(CloudError::FromMismatch(format!(
            "events[{index}]: `from` is `{}` but the token's subject is `{subject_text}`; \
             events must come from the authenticated subject or one of its phone devices",
            event.from
        )));
    }
    let ts = Timestamp::parse(&event.timestamp)
        .map_err(|e| CloudError::EventInvalid(format!("events[{index}]: timestamp: {e}")))?;
    let seq = match event.seq {
        None => None,
        Some(s) => Some(i64::try_from(s).map_err(|_| {
            CloudError::EventInvalid(format!("events[{index}]: seq {s} is too large"))
        })?),
    };
    let run_id = event
        .payload
        .get("run_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    // A content-hashed id covers the timestamp, so the dedupe key may lead with it.
    let time_keyed = event.content_id() == event.event_id;
    Ok(EventRow {
        time_keyed,
        workspace_id: workspace_id.to_string(),
        schema_version: 2,
        event_id: event.event_id,
        kind: event.kind,
        ts_ms: ts.unix_millis(),
        timestamp: event.timestamp,
        channel: event.from,
        seq,
        run_id,
        raw,
    })
}

fn v1_row(
    workspace_id: &str,
    subject_text: &str,
    index: usize,
    value: Value,
) -> CloudResult<EventRow> {
    let bad = |reason: String| CloudError::EventInvalid(format!("events[{index}]: {reason}"));
    let Value::Object(obj) = &value else {
        return Err(bad("expected a JSON object".into()));
    };
    let kind = match obj.get("kind") {
        Some(Value::String(k)) if !k.trim().is_empty() => k.clone(),
        _ => return Err(bad("`kind` must be a non-empty string".into())),
    };
    let timestamp = match obj.get("timestamp") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(bad("`timestamp` must be an RFC 3339 string".into())),
    };
    let ts = Timestamp::parse(&timestamp).map_err(|e| bad(format!("timestamp: {e}")))?;
    if let Some(ws) = obj.get("workspace_id") {
        if ws.as_str() != Some(workspace_id) {
            return Err(CloudError::FromMismatch(format!(
                "events[{index}]: `workspace_id` is {ws} but the batch is for `{workspace_id}`"
            )));
        }
    }
    let run_id = obj
        .get("run_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(EventRow {
        // The v1 id is the hash of the whole event, timestamp included.
        time_keyed: true,
        workspace_id: workspace_id.to_string(),
        schema_version: 1,
        event_id: format!("v1_{}", canonical_hash(&value)),
        kind,
        ts_ms: ts.unix_millis(),
        timestamp,
        channel: subject_text.to_string(),
        seq: None,
        run_id,
        raw: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ws() -> Subject {
        Subject::parse("ws-1").unwrap()
    }

    fn v2(from: &str) -> Value {
        json!({"schema_version": 2, "kind": "acme:job_done", "event_id": "evt_1",
               "timestamp": "2026-04-20T00:00:00.000Z", "from": from, "seq": 3,
               "payload": {"run_id": "r1"}})
    }

    #[test]
    fn v1_and_v2_events_become_rows() {
        let v1 = json!({"schema_version": 1, "kind": "task_created", "timestamp": "2026-04-20T00:00:00Z",
                        "task_id": "t", "run_id": "r1"});
        let rows = batch_rows("ws-1", &ws(), vec![v2("ws-1"), v1]).unwrap();
        assert_eq!(rows[0].seq, Some(3));
        assert_eq!(rows[0].run_id.as_deref(), Some("r1"));
        assert!(rows[1].event_id.starts_with("v1_"));
        assert_eq!(rows[1].run_id.as_deref(), Some("r1"));
    }

    #[test]
    fn a_big_batch_keeps_order_and_names_the_lowest_bad_index() {
        let good: Vec<Value> = (0..1000).map(|_| v2("ws-1")).collect();
        let mut batch = good.clone();
        for (i, e) in batch.iter_mut().enumerate() {
            e["seq"] = json!(i);
        }
        let rows = batch_rows("ws-1", &ws(), batch.clone()).unwrap();
        let seqs: Vec<i64> = rows.iter().filter_map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            (0..1000).collect::<Vec<i64>>(),
            "rows keep batch order"
        );
        batch[930] = json!({"schema_version": 9});
        batch[610] = v2("ws-2");
        let e = batch_rows("ws-1", &ws(), batch.clone()).unwrap_err();
        assert!(e.to_string().contains("events[610]"), "{e}");
        // Checked in parts on several threads: an error in an early part still wins over one
        // found first in a later part.
        batch[3] = json!({"schema_version": 2, "kind": 7});
        let e = batch_rows("ws-1", &ws(), batch).unwrap_err();
        assert!(e.to_string().contains("events[3]"), "{e}");
    }

    #[test]
    fn raw_texts_are_checked_as_strictly_and_stored_as_sent() {
        let sent = r#"{"schema_version": 2, "kind": "acme:job_done", "event_id": "evt_1",
            "timestamp": "2026-04-20T00:00:00.000Z", "from": "ws-1", "payload": {}}"#;
        let rows = batch_rows_raw("ws-1", &ws(), &[sent]).unwrap();
        assert_eq!(rows[0].raw, sent, "the event is stored as it was sent");
        let e = batch_rows_raw("ws-1", &ws(), &[sent, "5"]).unwrap_err();
        assert_eq!(e.code(), "EVENT_SCHEMA_VERSION_UNSUPPORTED");
        assert!(e.to_string().contains("events[1]"), "{e}");
        let extra = sent.replace(r#""payload": {}"#, r#""payload": {}, "admin": true"#);
        let e = batch_rows_raw("ws-1", &ws(), &[&extra]).unwrap_err();
        assert_eq!(
            e.code(),
            "EVENT_INVALID",
            "unknown envelope fields are refused: {e}"
        );
        let twice = sent.replace(r#""from": "ws-1""#, r#""from": "ws-1", "from": "ws-2""#);
        let e = batch_rows_raw("ws-1", &ws(), &[&twice]).unwrap_err();
        assert_eq!(
            e.code(),
            "EVENT_INVALID",
            "a repeated field is refused: {e}"
        );
    }

    #[test]
    fn bad_events_are_refused_by_index() {
        let e = batch_rows(
            "ws-1",
            &ws(),
            vec![v2("ws-1"), json!({"schema_version": 9})],
        )
        .unwrap_err();
        assert_eq!(e.code(), "EVENT_SCHEMA_VERSION_UNSUPPORTED");
        assert!(e.to_string().contains("events[1]"));
        // A v2 event that does not parse as one is refused for what is wrong with it, not
        // for its version (it takes the slower probing path).
        let e =
            batch_rows("ws-1", &ws(), vec![json!({"schema_version": 2, "kind": 7})]).unwrap_err();
        assert_eq!(e.code(), "EVENT_INVALID", "{e}");
        assert!(e.to_string().contains("events[0]"), "{e}");
        let e = batch_rows("ws-1", &ws(), vec![v2("ws-2")]).unwrap_err();
        assert_eq!(e.code(), "EVENT_FROM_MISMATCH");
        assert!(batch_rows("ws-1", &ws(), vec![v2("ws-1:phone:p1")]).is_ok());
        let phone = Subject::parse("ws-1:phone:p1").unwrap();
        assert!(batch_rows("ws-1", &phone, vec![v2("ws-1")]).is_err());
    }
}
