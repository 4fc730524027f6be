//! Properties of the content-hashed `event_id` (EVT-04, EVT-05, REQUIREMENTS Q4) and of the wire
//! round trip of a built event (EVT-02, EVT-10).
//!
//! Without an idempotency key the id hashes `{schema_version, kind, from, timestamp, payload}`: it
//! must not depend on the order payload keys were inserted in (serde_json keeps insertion order,
//! so two equal maps can serialize differently) and must change when any hashed part changes. With
//! a key it hashes `{kind, from, idempotency_key}` only, so retries of the same logical event get
//! the same id whatever their time, payload or transport `seq`.

use lumenflow_contracts::event::{build_event, BuildOptions, KernelEventV2};
use lumenflow_contracts::time::Timestamp;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Number, Value};

/// Kinds to draw from: known kinds and a pack's own.
const KINDS: &[&str] = &[
    "agent-runtime:tool_called",
    "conductor:recovery_requested",
    "campus:pue_sampled",
    "acme-demo:job_completed",
    "emit:energy_meter_recorded",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        // Finite doubles only: JSON has no NaN or infinity.
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Payload entries with distinct keys, in a random order.
fn entries() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::btree_map("[a-z][a-z0-9_]{0,7}", json_value(), 1..8)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

fn map_of(entries: &[(String, Value)]) -> Map<String, Value> {
    entries.iter().cloned().collect()
}

/// The same value with the key order of every object reversed, at every depth.
fn reversed(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reversed(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

fn at(ms: i64) -> BuildOptions {
    BuildOptions {
        idempotency_key: None,
        timestamp: Some(Timestamp::from_unix_millis(ms)),
        seq: None,
    }
}

fn keyed(key: &str, ms: i64, seq: Option<u64>) -> BuildOptions {
    BuildOptions {
        idempotency_key: Some(key.to_string()),
        timestamp: Some(Timestamp::from_unix_millis(ms)),
        seq,
    }
}

fn id(kind: &str, from: &str, payload: Map<String, Value>, options: BuildOptions) -> String {
    build_event(kind, from, payload, options)
        .expect("valid event")
        .event_id
}

/// Millisecond instants between 1970 and 9999.
const MS: std::ops::Range<i64> = 0..253_402_300_799_999;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn id_ignores_the_insertion_order_of_payload_keys(
        kind in prop::sample::select(KINDS),
        from in "ws-[a-z0-9]{1,8}",
        ms in MS,
        (first, shuffled) in entries().prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle())),
    ) {
        let original = map_of(&first);
        // The same entries inserted in another order, and with every object's keys reversed at
        // every depth.
        let shuffled = map_of(&shuffled);
        let deep: Map<String, Value> = original.iter().rev().map(|(k, v)| (k.clone(), reversed(v))).collect();
        let a = id(kind, &from, original.clone(), at(ms));
        prop_assert_eq!(&original, &shuffled);
        prop_assert_eq!(&a, &id(kind, &from, shuffled, at(ms)));
        prop_assert_eq!(&a, &id(kind, &from, deep, at(ms)));
        // Transport `seq` is not hashed (Q8).
        let with_seq = BuildOptions { seq: Some(7), ..at(ms) };
        prop_assert_eq!(&a, &id(kind, &from, original, with_seq));
    }

    #[test]
    fn id_changes_when_any_hashed_field_changes(
        kind in prop::sample::select(KINDS),
        other_kind in prop::sample::select(KINDS),
        from in "ws-[a-z0-9]{1,8}",
        ms in MS,
        delta in 1i64..86_400_000,
        first in entries(),
        which in any::<Index>(),
        extra in json_value(),
    ) {
        let payload = map_of(&first);
        let base = id(kind, &from, payload.clone(), at(ms));
        prop_assert!(base.starts_with("evt_") && base.len() == 68);
        if other_kind != kind {
            prop_assert_ne!(&base, &id(other_kind, &from, payload.clone(), at(ms)));
        }
        prop_assert_ne!(&base, &id(kind, &format!("{from}:phone:p1"), payload.clone(), at(ms)));
        prop_assert_ne!(&base, &id(kind, &from, payload.clone(), at(ms + delta)));
        // Change one payload value: wrapping it in an array always changes its canonical form.
        let (key, value) = &first[which.index(first.len())];
        let mut changed = payload.clone();
        changed.insert(key.clone(), Value::Array(vec![value.clone()]));
        prop_assert_ne!(&base, &id(kind, &from, changed, at(ms)));
        // Add a field.
        let mut added = payload.clone();
        if !added.contains_key("zz_added") {
            added.insert("zz_added".into(), extra);
            prop_assert_ne!(&base, &id(kind, &from, added, at(ms)));
        }
        // Remove a field.
        let mut removed = payload;
        removed.remove(key);
        prop_assert_ne!(&base, &id(kind, &from, removed, at(ms)));
    }

    #[test]
    fn with_a_key_the_id_depends_only_on_kind_from_and_key(
        kind in prop::sample::select(KINDS),
        other_kind in prop::sample::select(KINDS),
        from in "ws-[a-z0-9]{1,8}",
        key in "[a-z0-9-]{1,12}:completed",
        ms in MS,
        ms2 in MS,
        seq in any::<Option<u64>>(),
        first in entries(),
        second in entries(),
    ) {
        let a = id(kind, &from, map_of(&first), keyed(&key, ms, None));
        // Different time, payload and seq: same id (EVT-05).
        prop_assert_eq!(&a, &id(kind, &from, map_of(&second), keyed(&key, ms2, seq)));
        // The id is not the content hash once a key is given.
        prop_assert_ne!(&a, &id(kind, &from, map_of(&first), at(ms)));
        prop_assert_ne!(&a, &id(kind, &from, map_of(&first), keyed(&format!("{key}-retry"), ms, None)));
        prop_assert_ne!(&a, &id(kind, &format!("{from}x"), map_of(&first), keyed(&key, ms, None)));
        if other_kind != kind {
            prop_assert_ne!(&a, &id(other_kind, &from, map_of(&first), keyed(&key, ms, None)));
        }
    }

    #[test]
    fn build_serialize_parse_gives_back_an_equal_event(
        kind in prop::sample::select(KINDS),
        from in "ws-[a-z0-9]{1,8}(:phone:[a-z0-9-]{1,8})?",
        ms in MS,
        seq in any::<Option<u64>>(),
        key in prop::option::of("[a-z0-9-]{1,12}"),
        first in entries(),
        pretty in any::<bool>(),
    ) {
        let options = BuildOptions { idempotency_key: key, timestamp: Some(Timestamp::from_unix_millis(ms)), seq };
        let event = build_event(kind, &from, map_of(&first), options).expect("valid event");
        let text = if pretty {
            serde_json::to_string_pretty(&event).expect("ser")
        } else {
            serde_json::to_string(&event).expect("ser")
        };
        let value: Value = serde_json::from_str(&text).expect("own output is JSON");
        // No envelope `seq` without a transport number (a payload may have its own `seq` key).
        if event.seq.is_none() {
            prop_assert!(value.get("seq").is_none());
        }
        let back = KernelEventV2::from_json_value(value).expect("own output is a valid event");
        prop_assert_eq!(&back, &event);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The id is written member by member; it must equal the definition (EVT-04, EVT-05): the
    /// RFC 8785 canonical JSON of the basis object, hashed, for any payload, key and strings
    /// that need escaping.
    #[test]
    fn the_id_is_the_hash_of_the_canonical_basis(
        entries in entries(),
        odd_key in "\\PC{0,6}",
        odd_value in json_value(),
        kind in "\\PC{0,12}",
        from in "\\PC{0,12}",
        timestamp in "\\PC{0,24}",
        key in proptest::option::of("\\PC{0,12}"),
    ) {
        use lumenflow_contracts::canonical_json::canonical_hash;
        use lumenflow_contracts::event::compute_event_id;
        let mut payload = map_of(&entries);
        payload.insert(odd_key, odd_value);
        let basis = match &key {
            Some(k) => serde_json::json!({"kind": kind, "from": from, "idempotency_key": k}),
            None => serde_json::json!({
                "schema_version": 2, "kind": kind, "from": from,
                "timestamp": timestamp, "payload": payload,
            }),
        };
        prop_assert_eq!(
            compute_event_id(&kind, &from, &timestamp, &payload, key.as_deref()),
            format!("evt_{}", canonical_hash(&basis))
        );
    }
}
