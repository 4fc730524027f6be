//! RFC 8785 (JCS) conformance of `lumenflow_contracts::canonical_json`, requirement KRN-15.
//!
//! The vectors live as files under `fixtures/canonical-json/` (see its README for where each one
//! comes from) and are compared byte for byte. The property tests cover what fixed vectors cannot:
//! round-tripping, idempotence, independence from member order and the absence of whitespace.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use lumenflow_contracts::canonical_json::{
    canonical_hash, canonicalize, canonicalize_str, to_canonical_string, to_canonical_vec,
    CanonicalJsonError,
};
use lumenflow_contracts::digest::{sha256_hex, Sha256Digest};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/canonical-json")
}

fn read_fixture(relative: &str) -> Vec<u8> {
    let path = fixture_dir().join(relative);
    fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// 1. RFC 8785 vectors

/// The vector names that must be present; a deleted or renamed fixture fails the test.
const REFERENCE_VECTORS: &[&str] = &[
    "arrays",
    "french",
    "rfc8785-section-3.2.2",
    "rfc8785-section-3.2.3",
    "simpleString",
    "structures",
    "unicode",
    "values",
    "weird",
];

// KRN-15: every input/output pair canonicalizes to exactly the expected bytes.
#[test]
fn reference_vectors_canonicalize_byte_for_byte() {
    let mut found = BTreeSet::new();
    let entries = fs::read_dir(fixture_dir().join("input")).expect("fixtures/canonical-json/input");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("utf-8 file name")
            .to_owned();
        let input =
            String::from_utf8(read_fixture(&format!("input/{name}.json"))).expect("input is utf-8");
        let expected = read_fixture(&format!("output/{name}.json"));

        let canonical = canonicalize_str(&input)
            .unwrap_or_else(|err| panic!("{name}: canonicalize_str failed: {err}"));
        assert_eq!(
            canonical.as_bytes(),
            expected.as_slice(),
            "{name}: got {canonical:?}, expected {:?}",
            String::from_utf8_lossy(&expected)
        );

        // The lenient path (serde_json parse, then the Value writer) agrees.
        let value: Value = serde_json::from_str(&input).expect("reference input parses");
        assert_eq!(
            to_canonical_vec(&value),
            expected,
            "{name}: to_canonical_vec"
        );
        // Canonical output is a fixed point.
        let again = canonicalize_str(&canonical).expect("canonical output parses");
        assert_eq!(again, canonical, "{name}: not idempotent");
        found.insert(name);
    }
    let expected: BTreeSet<String> = REFERENCE_VECTORS.iter().map(|s| s.to_string()).collect();
    assert_eq!(found, expected, "fixture set changed");
}

// KRN-15: RFC 8785 §3.2.4 gives the exact bytes of the §3.2.2 sample; check them independently of
// the fixture file, spelled out as in the RFC.
#[test]
fn rfc8785_section_3_2_4_utf8_bytes() {
    let hex = "7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
               75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
               5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
               65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
               5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
               30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d";
    let expected: Vec<u8> = hex
        .split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
        .collect();
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    let canonical = canonicalize_str(input).expect("rfc sample");
    assert_eq!(canonical.as_bytes(), expected.as_slice(), "{canonical}");
    assert_eq!(read_fixture("output/rfc8785-section-3.2.2.json"), expected);
}

/// Rows of `numbers.txt`: (IEEE 754 bits, expected text).
fn number_table() -> Vec<(u64, String)> {
    let text = String::from_utf8(read_fixture("numbers.txt")).expect("numbers.txt is utf-8");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (bits, expected) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad row {line:?}"));
            assert_eq!(bits.len(), 16, "bad row {line:?}");
            let bits = u64::from_str_radix(bits, 16).expect("16 hex digits");
            (bits, expected.trim().to_owned())
        })
        .collect()
}

// KRN-15: RFC 8785 Appendix B, every finite row.
#[test]
fn rfc8785_appendix_b_numbers() {
    let table = number_table();
    assert_eq!(table.len(), 24, "Appendix B has 24 finite rows");
    let mut failures = Vec::new();
    for (bits, expected) in &table {
        let float = f64::from_bits(*bits);
        let value = Value::from(float);
        assert!(value.is_number(), "{bits:016x} is finite");
        let through_value = to_canonical_string(&value);
        let through_serialize = canonicalize(&float).expect("finite");
        // Parsing the expected text must land on the same double and print the same text.
        let through_text = canonicalize_str(expected).expect("expected text parses");
        for (path, got) in [
            ("to_canonical_string", &through_value),
            ("canonicalize", &through_serialize),
            ("canonicalize_str", &through_text),
        ] {
            if got != expected {
                failures.push(format!(
                    "{bits:016x} via {path}: got {got}, expected {expected}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// KRN-15: RFC 8785 §3.2.2.3, every number is a double: integers beyond 2^53 are rounded, -0 is
// 0, and an integral double is written without a fraction.
#[test]
fn integers_are_serialized_as_doubles() {
    for (text, expected) in [
        ("9007199254740993", "9007199254740992"),
        ("-9007199254740993", "-9007199254740992"),
        ("18446744073709551615", "18446744073709552000"),
        ("-9223372036854775808", "-9223372036854776000"),
        ("123456789012345678901", "123456789012345680000"),
        ("100000000000000000000000", "1e+23"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("1.0", "1"),
        ("1e2", "100"),
        ("[0.1, 1E-7, 5E-324]", "[0.1,1e-7,5e-324]"),
    ] {
        assert_eq!(canonicalize_str(text).expect("number"), expected, "{text}");
    }
    assert_eq!(
        to_canonical_string(&json!(u64::MAX)),
        "18446744073709552000"
    );
    assert_eq!(
        to_canonical_string(&json!(i64::MIN)),
        "-9223372036854776000"
    );
    assert_eq!(canonicalize(&i64::MAX).expect("i64"), "9223372036854776000");
}

// KRN-15: the NaN and Infinity rows of Appendix B have no JSON form and must be errors.
#[test]
fn rfc8785_appendix_b_non_finite_rows_are_errors() {
    for bits in [
        0x7fff_ffff_ffff_ffff_u64,
        0x7ff0_0000_0000_0000,
        0xfff0_0000_0000_0000,
    ] {
        let float = f64::from_bits(bits);
        assert!(!float.is_finite());
        let err = canonicalize(&float).expect_err("non-finite");
        assert!(
            matches!(err, CanonicalJsonError::NonFiniteNumber),
            "{err:?}"
        );
        let err = canonicalize(&Some(vec![0.5, float])).expect_err("nested non-finite");
        assert!(
            matches!(err, CanonicalJsonError::NonFiniteNumber),
            "{err:?}"
        );
    }
    // As JSON text they are not numbers at all, and overflowing literals are not Infinity.
    for text in ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"] {
        assert!(
            matches!(
                canonicalize_str(text),
                Err(CanonicalJsonError::InvalidJson(_))
            ),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Vectors from the original LumenFlow

// KRN-15: same canonical text and SHA-256 as the original implementation.
#[test]
fn original_lumenflow_vectors() {
    let cases = [
        (
            json!({"b": 2, "a": 1}),
            r#"{"b":2,"a":1}"#,
            r#"{"a":1,"b":2}"#,
            "43258cff783fe7036d8a43033f830adfc60ec037382473548ac742b888292777",
        ),
        (
            json!({"z": [{"d": 1, "c": 2}, "x"], "y": null, "x": true}),
            r#"{"z":[{"d":1,"c":2},"x"],"y":null,"x":true}"#,
            r#"{"x":true,"y":null,"z":[{"c":2,"d":1},"x"]}"#,
            "64913f864d3b91ed6644f8c5f915c90effd8b6bc0bd9bcf1a5af987a5199796f",
        ),
    ];
    for (value, text, canonical, hash) in cases {
        assert_eq!(to_canonical_string(&value), canonical);
        assert_eq!(canonicalize_str(text).expect("parses"), canonical);
        assert_eq!(canonicalize(&value).expect("serializes"), canonical);
        assert_eq!(canonical_hash(&value), hash);
        assert_eq!(sha256_hex(canonical.as_bytes()), hash);
        assert_eq!(
            Sha256Digest::of(&to_canonical_vec(&value)).to_string(),
            format!("sha256:{hash}")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Strict parsing

// KRN-15: duplicate member names are rejected, naming the key, at any depth.
#[test]
fn duplicate_keys_are_rejected_with_the_key() {
    let cases = [
        (r#"{"a":1,"a":2}"#, "a", 1),
        (r#"{"a":1,"a":1}"#, "a", 1),
        (
            "{\n  \"ok\": [\n    {\"x\": 1,\n     \"x\": 2}\n  ]\n}",
            "x",
            4,
        ),
        // Names are compared after unescaping: "\u0061" is "a".
        (r#"{"a":1,"\u0061":2}"#, "a", 1),
        (r#"{"\ud83d\ude00":1,"😀":2}"#, "😀", 1),
        (r#"{"":1,"":2}"#, "", 1),
        (r#"{"back`tick\n":1,"back`tick\n":2}"#, "back`tick\n", 1),
    ];
    for (text, key, line) in cases {
        let err = canonicalize_str(text).expect_err("duplicate");
        match &err {
            CanonicalJsonError::DuplicateKey {
                key: found,
                line: found_line,
                column,
            } => {
                assert_eq!(found, key, "{text}");
                assert_eq!(*found_line, line, "{text}");
                assert!(*column > 0, "{text}");
            }
            other => panic!("{text}: expected DuplicateKey, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "duplicate key `{}` in object at line {line} column ",
                key.escape_debug()
            )),
            "{message}"
        );
    }
    // The same name in different objects is fine.
    assert_eq!(
        canonicalize_str(r#"[{"a":1},{"a":2,"b":{"a":3}}]"#).expect("no duplicates"),
        r#"[{"a":1},{"a":2,"b":{"a":3}}]"#
    );
}

// KRN-15: lone surrogates (RFC 8785 §3.2.2.2) and other malformed text are errors, not panics.
#[test]
fn lone_surrogates_and_malformed_text_are_rejected() {
    for text in [
        r#""\ud800""#,
        r#""\udfff""#,
        r#"{"\udead":1}"#,
        r#"["\ud83d\u0041"]"#,
        r#""\ud83dx""#,
        r#""\ude00\ud83d""#,
    ] {
        let err = canonicalize_str(text).expect_err("lone surrogate");
        assert!(
            matches!(err, CanonicalJsonError::InvalidJson(_)),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains("hex escape"), "{text}: {err}");
    }
    // A proper pair is fine and is emitted as raw UTF-8.
    assert_eq!(
        canonicalize_str(r#""\ud83d\ude00""#).expect("pair"),
        "\"😀\""
    );
    for text in [
        "",
        " ",
        "{",
        "}",
        "[1 2]",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "01",
        "1.",
        "+1",
        "tru",
    ] {
        assert!(
            matches!(
                canonicalize_str(text),
                Err(CanonicalJsonError::InvalidJson(_))
            ),
            "{text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Properties

fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64;
    f64::POSITIVE | f64::NEGATIVE | f64::NORMAL | f64::SUBNORMAL | f64::ZERO
}

/// Strings that exercise escaping and UTF-16 ordering: controls, quotes, backslashes, BMP
/// characters above the surrogate range, astral characters and plain ASCII.
fn json_string() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '"',
        '\\',
        '/',
        '\u{7f}',
        '\u{80}',
        '\u{2028}',
        '\u{2029}',
        '\u{d7ff}',
        '\u{e000}',
        '\u{fb33}',
        '\u{fffd}',
        '\u{ffff}',
        '\u{10000}',
        '\u{1f600}',
        '\u{10ffff}',
        'é',
        '€',
    ]);
    let character = prop_oneof![
        4 => prop::char::range('a', 'e'),
        2 => prop::char::range('\0', '\u{1f}'),
        2 => special,
        2 => any::<char>(),
    ];
    prop::collection::vec(character, 0..6).prop_map(|chars| chars.into_iter().collect())
}

fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        finite_f64().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        (-1000i64..1000, 0u32..6).prop_map(|(n, e)| Value::from(n as f64 / 10f64.powi(e as i32))),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_string(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Numbers compared as the doubles RFC 8785 says they are (`-0` and `0` are the same number).
fn normalize(value: &Value) -> Value {
    match value {
        Value::Number(number) => {
            let float = number.as_f64().expect("finite number") + 0.0;
            Value::from(float)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(name, member)| (name.clone(), normalize(member)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Characters outside string literals, and raw control characters inside them.
fn whitespace_outside_strings(canonical: &str) -> Option<(usize, char)> {
    let mut in_string = false;
    let mut escaped = false;
    for (index, character) in canonical.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            } else if u32::from(character) < 0x20 {
                return Some((index, character));
            }
        } else if character == '"' {
            in_string = true;
        } else if character.is_whitespace() {
            return Some((index, character));
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // KRN-15 (a): the canonical text parses back to the same data, numbers compared as doubles.
    #[test]
    fn canonical_output_round_trips(value in json_value()) {
        let canonical = to_canonical_string(&value);
        let parsed: Value = serde_json::from_str(&canonical)
            .map_err(|err| TestCaseError::fail(format!("{canonical}: {err}")))?;
        prop_assert_eq!(normalize(&parsed), normalize(&value), "{}", canonical);
        prop_assert_eq!(canonicalize(&value).expect("a Value always serializes"), canonical.clone());
        prop_assert_eq!(canonical_hash(&value), sha256_hex(canonical.as_bytes()));
    }

    // KRN-15 (b): canonicalizing canonical text changes nothing, and any other spelling of the
    // same data (serde_json compact and pretty output) canonicalizes to the same text.
    #[test]
    fn canonicalization_is_idempotent(value in json_value()) {
        let canonical = to_canonical_string(&value);
        prop_assert_eq!(canonicalize_str(&canonical).expect("canonical text parses"), canonical.clone());
        let compact = serde_json::to_string(&value).expect("serializes");
        prop_assert_eq!(canonicalize_str(&compact).expect("compact parses"), canonical.clone());
        let pretty = serde_json::to_string_pretty(&value).expect("serializes");
        prop_assert_eq!(canonicalize_str(&pretty).expect("pretty parses"), canonical);
    }

    // KRN-15 (c): the order members were inserted in never shows in the output.
    #[test]
    fn member_order_does_not_matter(
        (members, shuffled) in prop::collection::btree_map(json_string(), json_value(), 0..8)
            .prop_map(|members| members.into_iter().collect::<Vec<_>>())
            .prop_flat_map(|members| (Just(members.clone()), Just(members).prop_shuffle()))
    ) {
        let original: Map<String, Value> = members.into_iter().collect();
        let reordered: Map<String, Value> = shuffled.into_iter().collect();
        let canonical = to_canonical_string(&Value::Object(original.clone()));
        prop_assert_eq!(to_canonical_string(&Value::Object(reordered.clone())), canonical.clone());
        // Nested one level down as well.
        let nested_a = json!({"outer": Value::Object(original), "list": [Value::Object(reordered.clone())]});
        let nested_b = json!({"list": [Value::Object(reordered.clone())], "outer": Value::Object(reordered)});
        prop_assert_eq!(to_canonical_string(&nested_a), to_canonical_string(&nested_b));
    }

    // KRN-15 (d): no whitespace between tokens and no raw control characters in strings.
    #[test]
    fn output_has_no_whitespace_outside_strings(value in json_value()) {
        let canonical = to_canonical_string(&value);
        prop_assert_eq!(whitespace_outside_strings(&canonical), None, "{}", canonical);
    }

    // KRN-15: object members come out in strictly increasing UTF-16 order.
    #[test]
    fn members_are_sorted_by_utf16(members in prop::collection::btree_map(json_string(), Just(Value::Null), 0..10)) {
        let object = Value::Object(members.into_iter().collect());
        let canonical = to_canonical_string(&object);
        let reparsed: Map<String, Value> = serde_json::from_str(&canonical).expect("parses");
        let names: Vec<Vec<u16>> = reparsed.keys().map(|name| name.encode_utf16().collect()).collect();
        prop_assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "{}", canonical);
    }

    // KRN-15: every finite double is written in a form that reads back as the same double.
    #[test]
    fn numbers_round_trip_exactly(float in finite_f64()) {
        let text = to_canonical_string(&Value::from(float));
        let back: f64 = text.parse().map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
        prop_assert!(back == float, "{} -> {} -> {}", float, text, back);
        prop_assert!(!text.contains('E') && !text.starts_with('+') && !text.ends_with('.'), "{}", text);
    }

    // KRN-15: an integer is written exactly as the double it rounds to.
    #[test]
    fn integers_match_their_double(signed in any::<i64>(), unsigned in any::<u64>()) {
        prop_assert_eq!(
            to_canonical_string(&Value::from(signed)),
            to_canonical_string(&Value::from(signed as f64))
        );
        prop_assert_eq!(
            to_canonical_string(&Value::from(unsigned)),
            to_canonical_string(&Value::from(unsigned as f64))
        );
    }

    // KRN-15: no input text makes canonicalize_str panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,40}|[\\[\\]{}\":,0-9eE.+\\-\\\\u ]{0,40}") {
        let _ = canonicalize_str(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The member-order shortcut agrees with comparing UTF-16 code units, for names that share
    /// prefixes and mix ASCII, BMP and astral characters (where UTF-8 and UTF-16 orders differ).
    #[test]
    fn key_order_shortcut_matches_utf16_order(
        prefix in "[a-z\u{e9}\u{ff5e}\u{1f600}]{0,3}",
        a in "[a-z\u{e000}\u{ffff}\u{10000}\u{1f600}]{0,4}",
        b in "[a-z\u{e000}\u{ffff}\u{10000}\u{1f600}]{0,4}",
    ) {
        let (a, b) = (format!("{prefix}{a}"), format!("{prefix}{b}"));
        prop_assert_eq!(
            lumenflow_contracts::canonical_json::utf16_key_order(&a, &b),
            a.encode_utf16().cmp(b.encode_utf16())
        );
    }
}
