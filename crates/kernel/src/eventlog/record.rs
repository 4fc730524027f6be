//! One line of the log: validating and pre-encoding a caller's record, encoding it at its place in
//! the chain, and checking a line read back.

use std::cmp::Ordering;

use lumenflow_contracts::canonical_json::{
    canonicalize_str, to_canonical_string, write_canonical, write_canonical_str,
};
use lumenflow_contracts::digest::{lower_hex, sha256_hex};
use lumenflow_contracts::time::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::error::LineProblem;
use super::RESERVED_KEYS;

/// Largest integer a double holds exactly (RFC 8785 numbers are IEEE 754 doubles).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A record as read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    pub kind: String,
    /// Every other member of the line: the caller's fields.
    pub fields: Map<String, Value>,
}

impl LogRecord {
    /// The `task_id` field, when it is a string.
    pub fn task_id(&self) -> Option<&str> {
        self.fields.get("task_id").and_then(Value::as_str)
    }

    /// The whole line as a JSON object (`seq`, `prev_hash`, `hash`, `timestamp`, `kind`, fields).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("seq".to_string(), Value::from(self.seq));
        map.insert(
            "prev_hash".to_string(),
            Value::from(self.prev_hash.as_str()),
        );
        map.insert("hash".to_string(), Value::from(self.hash.as_str()));
        map.insert(
            "timestamp".to_string(),
            Value::from(self.timestamp.as_str()),
        );
        map.insert("kind".to_string(), Value::from(self.kind.as_str()));
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.clone());
        }
        map
    }

    /// Take a parsed line apart; `None` names the first member that is missing or malformed.
    pub(crate) fn from_map(mut map: Map<String, Value>) -> Result<Self, LineProblem> {
        let seq = read_seq(&map)?;
        let prev_hash = read_hex(&map, "prev_hash")?;
        let hash = read_hex(&map, "hash")?;
        let timestamp = read_timestamp(&map)?;
        let kind = read_kind(&map)?;
        for key in ["seq", "prev_hash", "hash", "timestamp", "kind"] {
            map.remove(key);
        }
        Ok(LogRecord {
            seq,
            prev_hash,
            hash,
            timestamp,
            kind,
            fields: map,
        })
    }
}

/// A record validated and canonically encoded on the appender's thread; the commit leader only has
/// to put it in its place in the chain.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Every member as `"key":<canonical value>`, sorted by key in RFC 8785 order (UTF-16 code
    /// units), concatenated without separators. One buffer instead of one string per member.
    body: String,
    /// Per member, in `body` order: its key and where its text ends in `body` (it starts where the
    /// previous one ends).
    members: Vec<Member>,
    /// The `kind` member's value (canonical JSON of the string), as a range of `body`.
    kind: Span,
    /// The caller's timestamp member's value, normalised to UTC milliseconds, as a range of
    /// `body`; `None` when the commit's timestamp is used.
    timestamp: Option<Span>,
    /// Bytes of the line, roughly, for sizing the commit buffer.
    size_hint: usize,
}

#[derive(Debug)]
struct Member {
    key: String,
    /// Where the member ends in `body`.
    end: usize,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

/// Members the log adds to every line, in RFC 8785 order among themselves.
const EXTRA_KEYS: [&str; 3] = ["prev_hash", "seq", "timestamp"];

impl Prepared {
    /// Validate a caller's record; the error is the reason, for `RECORD_INVALID`.
    pub(crate) fn new(mut record: Map<String, Value>) -> Result<Self, String> {
        for key in RESERVED_KEYS {
            if record.contains_key(key) {
                return Err(format!(
                    "`{key}` is assigned by the log and must not be set by the caller"
                ));
            }
        }
        match record.get("kind") {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(Value::String(_)) => return Err("`kind` must not be empty".to_string()),
            Some(_) => return Err("`kind` must be a string".to_string()),
            None => return Err("a record needs a `kind`".to_string()),
        }
        let has_timestamp = match record.get_mut("timestamp") {
            None => false,
            Some(Value::String(s)) => {
                let t = Timestamp::parse(s).map_err(|e| format!("`timestamp`: {e}"))?;
                *s = t.to_rfc3339();
                true
            }
            Some(_) => return Err("`timestamp` must be an RFC 3339 string".to_string()),
        };
        let mut path = String::new();
        for (key, value) in &record {
            path.clear();
            path.push_str(key);
            check_integers(value, &mut path)?;
        }
        let mut entries: Vec<(String, Value)> = record.into_iter().collect();
        entries.sort_by(|a, b| key_cmp(&a.0, &b.0));
        let mut body = String::with_capacity(256);
        let mut members = Vec::with_capacity(entries.len());
        let mut kind = None;
        let mut timestamp = None;
        for (key, value) in entries {
            write_canonical_str(&mut body, &key);
            body.push(':');
            let value_start = body.len();
            write_canonical(&mut body, &value);
            let span = Span {
                start: value_start,
                end: body.len(),
            };
            match key.as_str() {
                "kind" => kind = Some(span),
                "timestamp" if has_timestamp => timestamp = Some(span),
                _ => {}
            }
            members.push(Member {
                key,
                end: body.len(),
            });
        }
        // `kind` was checked above to be present.
        let kind = kind.ok_or_else(|| "a record needs a `kind`".to_string())?;
        let size_hint = body.len() + members.len() + 200;
        Ok(Prepared {
            body,
            members,
            kind,
            timestamp,
            size_hint,
        })
    }

    pub(crate) fn size_hint(&self) -> usize {
        self.size_hint
    }

    fn span(&self, span: Span) -> &str {
        &self.body[span.start..span.end]
    }

    /// Append the line for this record at `seq` after `prev_hash` to `out` and return its hash.
    /// `now` is the canonical JSON of the commit's timestamp, used when the caller gave none.
    pub(crate) fn encode(&self, seq: u64, prev_hash: &str, now: &str, out: &mut Vec<u8>) -> String {
        let seq_text = seq_text(seq);
        let timestamp = match self.timestamp {
            Some(span) => self.span(span),
            None => now,
        };
        // The hash is of RFC 8785 of the line without `hash`: every member sorted by key, the
        // log's own merged in. It is fed to the hasher piece by piece instead of being built.
        let mut hasher = Sha256::new();
        hasher.update(b"{");
        let extras = if self.timestamp.is_none() { 3 } else { 2 };
        let mut next_extra = 0;
        let mut first = true;
        let push_extra = |index: usize, hasher: &mut Sha256, first: &mut bool| {
            if !*first {
                hasher.update(b",");
            }
            *first = false;
            match index {
                0 => {
                    hasher.update(b"\"prev_hash\":\"");
                    hasher.update(prev_hash.as_bytes());
                    hasher.update(b"\"");
                }
                1 => {
                    hasher.update(b"\"seq\":");
                    hasher.update(seq_text.as_bytes());
                }
                _ => {
                    hasher.update(b"\"timestamp\":");
                    hasher.update(now.as_bytes());
                }
            }
        };
        let mut start = 0;
        for member in &self.members {
            while next_extra < extras
                && key_cmp(EXTRA_KEYS[next_extra], &member.key) == Ordering::Less
            {
                push_extra(next_extra, &mut hasher, &mut first);
                next_extra += 1;
            }
            if !first {
                hasher.update(b",");
            }
            first = false;
            hasher.update(&self.body.as_bytes()[start..member.end]);
            start = member.end;
        }
        while next_extra < extras {
            push_extra(next_extra, &mut hasher, &mut first);
            next_extra += 1;
        }
        hasher.update(b"}");
        let hash = lower_hex(&hasher.finalize());

        out.reserve(self.size_hint + prev_hash.len());
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(seq_text.as_bytes());
        out.extend_from_slice(b",\"prev_hash\":\"");
        out.extend_from_slice(prev_hash.as_bytes());
        out.extend_from_slice(b"\",\"hash\":\"");
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(b"\",\"timestamp\":");
        out.extend_from_slice(timestamp.as_bytes());
        out.extend_from_slice(b",\"kind\":");
        out.extend_from_slice(self.span(self.kind).as_bytes());
        let mut start = 0;
        for member in &self.members {
            if member.key != "kind" && member.key != "timestamp" {
                out.push(b',');
                out.extend_from_slice(&self.body.as_bytes()[start..member.end]);
            }
            start = member.end;
        }
        out.extend_from_slice(b"}\n");
        hash
    }
}

/// Canonical JSON of `seq`: RFC 8785 writes numbers as doubles, which for integers up to 2^53 is
/// their decimal form.
fn seq_text(seq: u64) -> String {
    if seq <= MAX_SAFE_INTEGER {
        seq.to_string()
    } else {
        to_canonical_string(&Value::from(seq))
    }
}

/// RFC 8785 member order: by the UTF-16 code units of the names.
fn key_cmp(a: &str, b: &str) -> Ordering {
    lumenflow_contracts::canonical_json::utf16_key_order(a, b)
}

/// Refuse integers a double cannot hold: they would hash like their rounded neighbours.
fn check_integers(value: &Value, path: &mut String) -> Result<(), String> {
    match value {
        Value::Number(n) => {
            let too_big = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u > MAX_SAFE_INTEGER,
                (None, Some(i)) => i.unsigned_abs() > MAX_SAFE_INTEGER,
                (None, None) => false,
            };
            if too_big {
                return Err(format!(
                    "`{path}` is the integer {n}, beyond ±(2^53 - 1): RFC 8785 hashes numbers as \
                     doubles, so it could change without changing the hash; store it as a string"
                ));
            }
            Ok(())
        }
        Value::Array(items) => {
            let len = path.len();
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                check_integers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            let len = path.len();
            for (key, item) in map {
                path.push('.');
                path.push_str(key);
                check_integers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// A line that passed [`check_line`].
#[derive(Debug)]
pub(crate) struct CheckedLine {
    pub(crate) seq: u64,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

/// Check one line (without its newline) on its own: strict JSON object, the log's members well
/// formed, and the stored hash equal to the hash of the rest. Links to other lines are the
/// caller's business.
pub(crate) fn check_line(bytes: &[u8]) -> Result<CheckedLine, LineProblem> {
    if bytes.is_empty() {
        return Err(LineProblem::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| LineProblem::InvalidJson(e.to_string()))?;
    // Strict parse first: a duplicate member name would let two readers see two records.
    canonicalize_str(text).map_err(|e| LineProblem::InvalidJson(e.to_string()))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| LineProblem::InvalidJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(LineProblem::NotObject);
    };
    let seq = read_seq(&map)?;
    let prev_hash = read_hex(&map, "prev_hash")?;
    let hash = read_hex(&map, "hash")?;
    read_timestamp(&map)?;
    read_kind(&map)?;
    map.remove("hash");
    let computed = sha256_hex(to_canonical_string(&Value::Object(map)).as_bytes());
    if computed != hash {
        return Err(LineProblem::HashMismatch {
            stored: hash,
            computed,
        });
    }
    Ok(CheckedLine {
        seq,
        prev_hash,
        hash,
    })
}

fn read_seq(map: &Map<String, Value>) -> Result<u64, LineProblem> {
    match map.get("seq") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(seq) if seq >= 1 => Ok(seq),
            _ => Err(bad("seq", "must be an integer from 1")),
        },
        Some(_) => Err(bad("seq", "must be an integer from 1")),
        None => Err(bad("seq", "is missing")),
    }
}

fn read_hex(map: &Map<String, Value>, field: &'static str) -> Result<String, LineProblem> {
    match map.get(field) {
        Some(Value::String(s))
            if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(s.clone())
        }
        Some(_) => Err(bad(field, "must be 64 lowercase hex digits")),
        None => Err(bad(field, "is missing")),
    }
}

fn read_timestamp(map: &Map<String, Value>) -> Result<String, LineProblem> {
    match map.get("timestamp") {
        Some(Value::String(s)) => match Timestamp::parse(s) {
            Ok(_) => Ok(s.clone()),
            Err(e) => Err(LineProblem::BadField {
                field: "timestamp",
                reason: e.to_string(),
            }),
        },
        Some(_) => Err(bad("timestamp", "must be an RFC 3339 string")),
        None => Err(bad("timestamp", "is missing")),
    }
}

fn read_kind(map: &Map<String, Value>) -> Result<String, LineProblem> {
    match map.get("kind") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(bad("kind", "must be a non-empty string")),
        None => Err(bad("kind", "is missing")),
    }
}

fn bad(field: &'static str, reason: &str) -> LineProblem {
    LineProblem::BadField {
        field,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::json_value;
    use proptest::prelude::*;

    fn encode_one(record: Map<String, Value>, seq: u64, prev: &str) -> (String, String) {
        let prepared = Prepared::new(record).expect("valid record");
        let mut out = Vec::new();
        let hash = prepared.encode(seq, prev, "\"2026-04-20T00:00:00.000Z\"", &mut out);
        (String::from_utf8(out).expect("utf-8"), hash)
    }

    #[test]
    fn the_line_has_the_log_members_first_and_verifies_on_its_own() {
        // KRN-13: seq, prev_hash, hash, timestamp, kind, then the caller's fields.
        let record =
            serde_json::json!({"task_id": "WU-1", "kind": "task_created", "schema_version": 1});
        let Value::Object(record) = record else {
            unreachable!()
        };
        let (line, hash) = encode_one(record, 1, super::super::GENESIS_HASH);
        assert!(line.starts_with(&format!(
            "{{\"seq\":1,\"prev_hash\":\"{}\",\"hash\":\"{hash}\",\"timestamp\":\"2026-04-20T00:00:00.000Z\",\"kind\":\"task_created\",\"schema_version\":1,\"task_id\":\"WU-1\"}}\n",
            super::super::GENESIS_HASH
        )), "{line}");
        let checked = check_line(line.trim_end().as_bytes()).expect("verifies");
        assert_eq!(checked.hash, hash);
        assert_eq!(checked.seq, 1);
    }

    #[test]
    fn reserved_members_and_unsafe_integers_are_refused() {
        for (record, needle) in [
            (serde_json::json!({"kind": "x", "seq": 1}), "`seq`"),
            (
                serde_json::json!({"kind": "x", "prev_hash": "a"}),
                "`prev_hash`",
            ),
            (serde_json::json!({"kind": "x", "hash": "a"}), "`hash`"),
            (serde_json::json!({"task_id": "a"}), "needs a `kind`"),
            (serde_json::json!({"kind": ""}), "must not be empty"),
            (serde_json::json!({"kind": 3}), "must be a string"),
            (
                serde_json::json!({"kind": "x", "timestamp": "yesterday"}),
                "RFC 3339",
            ),
            (
                serde_json::json!({"kind": "x", "a": {"b": [1, 9007199254740993u64]}}),
                "`a.b[1]`",
            ),
        ] {
            let Value::Object(record) = record else {
                unreachable!()
            };
            let err = Prepared::new(record).expect_err(needle);
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    proptest! {
        /// KRN-13, KRN-15: the leader's merged encoding is exactly RFC 8785 of the line minus its
        /// hash, for any keys (astral characters, `_` against digits, upper case) and values.
        #[test]
        fn encoding_hash_is_the_canonical_hash(
            fields in prop::collection::btree_map("[a-zA-Z_0-9\\x{e000}\\x{1f600}]{0,6}", json_value(), 0..6),
            seq in 1u64..1_000_000,
            with_ts in any::<bool>(),
        ) {
            let mut record: Map<String, Value> = fields
                .into_iter()
                .filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str()) && k != "timestamp")
                .collect();
            record.insert("kind".to_string(), Value::from("checkpoint"));
            if with_ts {
                record.insert("timestamp".to_string(), Value::from("2026-04-20T02:00:00+02:00"));
            }
            let (line, hash) = encode_one(record, seq, &"ab".repeat(32));
            let checked = check_line(line.trim_end_matches('\n').as_bytes());
            prop_assert!(checked.is_ok(), "{checked:?} for {line}");
            prop_assert_eq!(checked.expect("checked").hash, hash);
        }
    }
}
