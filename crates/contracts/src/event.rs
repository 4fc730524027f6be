//! The v2 event envelope and its one builder (EVT-01 to EVT-06, REQUIREMENTS Q4 to Q8).
//!
//! Every conductor emission is `{schema_version: 2, kind, event_id, timestamp, from, seq?,
//! payload}`. [`build_kernel_event_v2`] is the only way to make one: it fills `schema_version`,
//! the timestamp and a content-hashed `event_id`, so ids are never assigned by hand and a retry
//! of the same built event re-sends the same id.
//!
//! `event_id` = `evt_` + SHA-256 of RFC 8785 canonical JSON of `{kind, from, idempotency_key}`
//! when an idempotency key is given (the same logical event always gets the same id), else of
//! `{schema_version, kind, from, timestamp, payload}` (never `event_id` or the transport's `seq`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::canonical_json;
use crate::digest::sha256_hex;
use crate::time::Timestamp;

pub const SCHEMA_VERSION: u8 = 2;
pub const EVENT_ID_PREFIX: &str = "evt_";
/// The longest `event_id` or `from` accepted.
pub const MAX_ID_LEN: usize = 256;

/// A v2 event as it travels on the wire and is handed to pack handlers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelEventV2 {
    pub schema_version: u8,
    pub kind: String,
    pub event_id: String,
    /// RFC 3339 UTC with milliseconds; the emission time (`emitted_at`).
    pub timestamp: String,
    /// The workspace or phone-device identity: always the enrollment token subject.
    pub from: String,
    /// Per-channel sequence number, assigned by the transport (Q8); not part of the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default)]
    pub payload: Map<String, Value>,
}

/// Why an event could not be built or is not a valid v2 event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// A required envelope field is missing or empty.
    MissingField(&'static str),
    /// An envelope field has the wrong type or form.
    InvalidField { field: &'static str, reason: String },
    /// The caller tried to set a field only the builder may set.
    ReservedField(&'static str),
    /// `schema_version` is not 2.
    UnsupportedSchemaVersion(Value),
}

impl EventError {
    pub fn code(&self) -> &'static str {
        match self {
            EventError::MissingField(_) | EventError::InvalidField { .. } => "EVENT_INVALID",
            EventError::ReservedField(_) => "EVENT_RESERVED_FIELD",
            EventError::UnsupportedSchemaVersion(_) => "EVENT_SCHEMA_VERSION_UNSUPPORTED",
        }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::MissingField(field) => {
                write!(f, "event field `{field}` is required and must not be empty")
            }
            EventError::InvalidField { field, reason } => {
                write!(f, "event field `{field}`: {reason}")
            }
            EventError::ReservedField(field) => write!(
                f,
                "event field `{field}` is filled by build_kernel_event_v2 and must not be supplied"
            ),
            EventError::UnsupportedSchemaVersion(v) => {
                write!(
                    f,
                    "unsupported schema_version {v}: this runtime reads version 2 events"
                )
            }
        }
    }
}

impl std::error::Error for EventError {}

/// Options of [`build_kernel_event_v2`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Makes `event_id` deterministic across retries (EVT-05), e.g. `<job_id>:completed`.
    pub idempotency_key: Option<String>,
    /// The emission time; `now` when absent (and when the input has no `timestamp`).
    pub timestamp: Option<Timestamp>,
    pub seq: Option<u64>,
}

impl BuildOptions {
    pub fn idempotent(key: impl Into<String>) -> Self {
        BuildOptions {
            idempotency_key: Some(key.into()),
            ..Self::default()
        }
    }
}

/// `<namespace>:<snake_case>` or an unprefixed kernel kind (`task_created`).
pub fn check_kind_syntax(kind: &str) -> Result<(), String> {
    let snake = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let kebab = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.split('-').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
    };
    let ok = match kind.split_once(':') {
        Some((ns, name)) => kebab(ns) && snake(name),
        None => snake(kind),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{kind}` is not a valid kind (expected `<pack-slug>:<snake_case_name>` or an unprefixed kernel kind)"
        ))
    }
}

/// The event id for these envelope parts.
pub fn compute_event_id(
    kind: &str,
    from: &str,
    timestamp: &str,
    payload: &Map<String, Value>,
    idempotency_key: Option<&str>,
) -> String {
    // The canonical JSON of `{kind, from, idempotency_key}` or of `{schema_version, kind, from,
    // timestamp, payload}`, written member by member in RFC 8785 order (the names are ASCII:
    // from < idempotency_key < kind < payload < schema_version < timestamp) rather than built as
    // a `Value`, which cloned the whole payload for every id.
    let mut basis = String::with_capacity(128);
    basis.push_str("{\"from\":");
    canonical_json::write_canonical_str(&mut basis, from);
    match idempotency_key {
        Some(key) => {
            basis.push_str(",\"idempotency_key\":");
            canonical_json::write_canonical_str(&mut basis, key);
            basis.push_str(",\"kind\":");
            canonical_json::write_canonical_str(&mut basis, kind);
        }
        None => {
            basis.push_str(",\"kind\":");
            canonical_json::write_canonical_str(&mut basis, kind);
            basis.push_str(",\"payload\":");
            canonical_json::write_canonical_object(&mut basis, payload);
            basis.push_str(",\"schema_version\":");
            basis.push_str(&SCHEMA_VERSION.to_string());
            basis.push_str(",\"timestamp\":");
            canonical_json::write_canonical_str(&mut basis, timestamp);
        }
    }
    basis.push('}');
    format!("{EVENT_ID_PREFIX}{}", sha256_hex(basis.as_bytes()))
}

/// Build a v2 event from a flat record (Q5): `kind`, `from` and an optional `timestamp` are
/// lifted into the envelope and every other key becomes a payload field. `schema_version`,
/// `event_id` and `seq` are refused: only the builder (or the transport, for `seq`) sets them.
pub fn build_kernel_event_v2(
    input: Map<String, Value>,
    options: BuildOptions,
) -> Result<KernelEventV2, EventError> {
    let mut payload = Map::new();
    let mut kind = None;
    let mut from = None;
    let mut timestamp = None;
    for (key, value) in input {
        match key.as_str() {
            "kind" => kind = Some(value),
            "from" => from = Some(value),
            "timestamp" => timestamp = Some(value),
            "schema_version" => return Err(EventError::ReservedField("schema_version")),
            "event_id" => return Err(EventError::ReservedField("event_id")),
            "seq" => return Err(EventError::ReservedField("seq")),
            _ => {
                payload.insert(key, value);
            }
        }
    }
    let kind = string_field(kind, "kind")?;
    let from = string_field(from, "from")?;
    let timestamp = match (timestamp, options.timestamp) {
        (Some(v), _) => {
            let text = string_field(Some(v), "timestamp")?;
            Timestamp::parse(&text).map_err(|e| EventError::InvalidField {
                field: "timestamp",
                reason: e.to_string(),
            })?
        }
        (None, Some(t)) => t,
        (None, None) => Timestamp::now(),
    };
    build_parts(
        &kind,
        &from,
        timestamp,
        payload,
        options.idempotency_key.as_deref(),
        options.seq,
    )
}

/// The typed form of the builder, for Rust callers that already have a payload map.
pub fn build_event(
    kind: &str,
    from: &str,
    payload: Map<String, Value>,
    options: BuildOptions,
) -> Result<KernelEventV2, EventError> {
    let timestamp = options.timestamp.unwrap_or_else(Timestamp::now);
    build_parts(
        kind,
        from,
        timestamp,
        payload,
        options.idempotency_key.as_deref(),
        options.seq,
    )
}

fn build_parts(
    kind: &str,
    from: &str,
    timestamp: Timestamp,
    payload: Map<String, Value>,
    idempotency_key: Option<&str>,
    seq: Option<u64>,
) -> Result<KernelEventV2, EventError> {
    if kind.is_empty() {
        return Err(EventError::MissingField("kind"));
    }
    check_kind_syntax(kind).map_err(|reason| EventError::InvalidField {
        field: "kind",
        reason,
    })?;
    if from.trim().is_empty() {
        return Err(EventError::MissingField("from"));
    }
    if idempotency_key.is_some_and(|k| k.is_empty()) {
        return Err(EventError::InvalidField {
            field: "idempotency_key",
            reason: "must not be empty when given".into(),
        });
    }
    let timestamp = timestamp.to_rfc3339();
    let event_id = compute_event_id(kind, from, &timestamp, &payload, idempotency_key);
    Ok(KernelEventV2 {
        schema_version: SCHEMA_VERSION,
        kind: kind.to_string(),
        event_id,
        timestamp,
        from: from.to_string(),
        seq,
        payload,
    })
}

fn string_field(value: Option<Value>, field: &'static str) -> Result<String, EventError> {
    match value {
        None => Err(EventError::MissingField(field)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(EventError::MissingField(field)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(EventError::InvalidField {
            field,
            reason: format!("expected a string, found {other}"),
        }),
    }
}

impl KernelEventV2 {
    /// Parse an inbound event strictly: a JSON object with exactly the envelope fields,
    /// `schema_version` 2, non-empty `kind`/`event_id`/`from`, an RFC 3339 `timestamp` and an
    /// object `payload`. Inbound ids are opaque (S2 uses `evt-abc`) and are not recomputed.
    pub fn from_json_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(obj) = value else {
            return Err(EventError::InvalidField {
                field: "(event)",
                reason: "expected a JSON object".into(),
            });
        };
        match obj.get("schema_version") {
            None => return Err(EventError::MissingField("schema_version")),
            Some(v) if v.as_u64() != Some(u64::from(SCHEMA_VERSION)) => {
                return Err(EventError::UnsupportedSchemaVersion(v.clone()))
            }
            Some(_) => {}
        }
        let event: KernelEventV2 =
            serde_json::from_value(Value::Object(obj)).map_err(|e| EventError::InvalidField {
                field: "(event)",
                reason: e.to_string(),
            })?;
        event.check()?;
        Ok(event)
    }

    /// The envelope rules every event must meet, built here or received.
    pub fn check(&self) -> Result<(), EventError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(EventError::UnsupportedSchemaVersion(json!(
                self.schema_version
            )));
        }
        if self.kind.is_empty() {
            return Err(EventError::MissingField("kind"));
        }
        check_kind_syntax(&self.kind).map_err(|reason| EventError::InvalidField {
            field: "kind",
            reason,
        })?;
        for (field, value) in [("event_id", &self.event_id), ("from", &self.from)] {
            if value.trim().is_empty() {
                return Err(EventError::MissingField(field));
            }
            // Ids become replay keys and file-name parts: one printable line, bounded.
            if value.chars().any(char::is_control) || value.len() > MAX_ID_LEN {
                return Err(EventError::InvalidField {
                    field,
                    reason: format!(
                        "must be at most {MAX_ID_LEN} bytes without control characters"
                    ),
                });
            }
        }
        Timestamp::parse(&self.timestamp).map_err(|e| EventError::InvalidField {
            field: "timestamp",
            reason: e.to_string(),
        })?;
        Ok(())
    }

    /// The id this event would get without an idempotency key (to check a content-hashed id).
    pub fn content_id(&self) -> String {
        compute_event_id(&self.kind, &self.from, &self.timestamp, &self.payload, None)
    }

    /// The workspace part of `from` (`<ws>` of `<ws>:phone:<device>`), REQUIREMENTS Q2.
    pub fn workspace_id(&self) -> &str {
        self.from.split(":phone:").next().unwrap_or(&self.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn builder_fills_the_envelope_and_nests_the_payload() {
        // EVT-03, EVT-06, Q5
        let t = Timestamp::parse("2026-04-20T00:00:00Z").expect("t");
        let e = build_kernel_event_v2(
            flat(json!({"kind": "acme-demo:job_completed", "from": "ws-test", "job_id": "job-1", "result": "ok"})),
            BuildOptions {
                timestamp: Some(t),
                ..Default::default()
            },
        )
        .expect("built");
        assert_eq!(e.schema_version, 2);
        assert_eq!(e.timestamp, "2026-04-20T00:00:00.000Z");
        assert_eq!(e.payload, flat(json!({"job_id": "job-1", "result": "ok"})));
        assert!(e.event_id.starts_with("evt_") && e.event_id.len() == 68);
        assert_eq!(e.event_id, e.content_id());
    }

    #[test]
    fn idempotency_key_makes_the_id_independent_of_time_and_payload() {
        // EVT-05
        let a = build_event(
            "acme-demo:job_completed",
            "ws",
            flat(json!({"r": 1})),
            BuildOptions::idempotent("job-1:completed"),
        )
        .expect("a");
        let b = build_event(
            "acme-demo:job_completed",
            "ws",
            flat(json!({"r": 2})),
            BuildOptions {
                idempotency_key: Some("job-1:completed".into()),
                timestamp: Some(Timestamp::from_unix_millis(5)),
                seq: Some(9),
            },
        )
        .expect("b");
        assert_eq!(a.event_id, b.event_id);
        let c = build_event(
            "acme-demo:job_completed",
            "ws",
            Map::new(),
            BuildOptions::idempotent("job-2:completed"),
        )
        .expect("c");
        assert_ne!(a.event_id, c.event_id);
    }

    #[test]
    fn reserved_and_missing_fields_are_refused() {
        for (input, code) in [
            (
                json!({"kind": "a:b", "from": "ws", "event_id": "x"}),
                "EVENT_RESERVED_FIELD",
            ),
            (
                json!({"kind": "a:b", "from": "ws", "schema_version": 2}),
                "EVENT_RESERVED_FIELD",
            ),
            (json!({"from": "ws"}), "EVENT_INVALID"),
            (json!({"kind": "a:b", "from": ""}), "EVENT_INVALID"),
            (json!({"kind": "A:B", "from": "ws"}), "EVENT_INVALID"),
            (
                json!({"kind": "a:b", "from": "ws", "timestamp": "yesterday"}),
                "EVENT_INVALID",
            ),
        ] {
            let err = build_kernel_event_v2(flat(input.clone()), BuildOptions::default())
                .expect_err("refused");
            assert_eq!(err.code(), code, "{input}: {err}");
        }
    }

    #[test]
    fn inbound_events_are_checked_strictly() {
        let ok = json!({"schema_version": 2, "kind": "conductor:recovery_requested", "event_id": "evt-abc",
                        "timestamp": "2026-04-20T00:00:00Z", "from": "ws-test", "payload": {"wu_id": "acme-job-1"}});
        let e = KernelEventV2::from_json_value(ok.clone()).expect("valid");
        assert_eq!(e.payload["wu_id"], "acme-job-1");
        let mut v1 = ok.clone();
        v1["schema_version"] = json!(1);
        assert_eq!(
            KernelEventV2::from_json_value(v1).expect_err("v1").code(),
            "EVENT_SCHEMA_VERSION_UNSUPPORTED"
        );
        let mut extra = ok.clone();
        extra["sneaky"] = json!(true);
        assert!(KernelEventV2::from_json_value(extra).is_err());
        let mut bad_payload = ok;
        bad_payload["payload"] = json!([1]);
        assert!(KernelEventV2::from_json_value(bad_payload).is_err());
        assert_eq!(
            KernelEventV2::from_json_value(
                json!({"schema_version": 2, "kind": "a:b", "event_id": "e",
              "timestamp": "2026-04-20T00:00:00Z", "from": "ws:phone:pixel", "payload": {}})
            )
            .expect("phone")
            .workspace_id(),
            "ws"
        );
    }
}
