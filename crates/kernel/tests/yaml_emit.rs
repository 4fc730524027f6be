//! `yaml::emit`: the YAML writer behind generated manifests (PAK-01) and in-place config edits.
//!
//! Three kinds of checks: a table of tricky scalars with their exact output, golden documents for
//! the block layout, and properties: every generated value reads back through our own YAML 1.2
//! reader (`yaml::parse_value`) and, when it is installed, through an independent reader, PyYAML
//! (a YAML 1.1 reader, the stricter case for the look-alikes we quote).

#![allow(clippy::unwrap_used)]

use lumenflow_kernel::yaml::emit::{scalar_to_yaml, to_yaml_string, MAX_IMPLICIT_KEY_CHARS};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

fn check(input: Value, expected: &str) {
    assert_eq!(
        scalar_to_yaml(&input).as_deref(),
        Some(expected),
        "scalar {input}"
    );
}

#[test]
fn tricky_scalars() {
    let table: &[(&str, &str)] = &[
        // plain
        ("a", "a"),
        ("hello world", "hello world"),
        ("1.0.0", "1.0.0"),
        ("notes/**/*.md", "notes/**/*.md"),
        (
            "https://api.example.com/v1/customer/profile",
            "https://api.example.com/v1/customer/profile",
        ),
        ("api.example.com:443", "api.example.com:443"),
        ("a:b", "a:b"),
        ("a#b", "a#b"),
        ("it's", "it's"),
        ("-foo", "-foo"),
        ("--flag", "--flag"),
        ("0o8", "0o8"),
        ("0x", "0x"),
        ("é日本語😀", "é日本語😀"),
        ("a\u{a0}b", "a\u{a0}b"),
        ("wu", "wu"),
        // empty, whitespace at the ends
        ("", "''"),
        (" a", "' a'"),
        ("a ", "'a '"),
        // YAML 1.2 core schema: null, bool, int, float
        ("null", "'null'"),
        ("Null", "'Null'"),
        ("NULL", "'NULL'"),
        ("~", "'~'"),
        ("true", "'true'"),
        ("False", "'False'"),
        ("TRUE", "'TRUE'"),
        ("1", "'1'"),
        ("-12", "'-12'"),
        ("+7", "'+7'"),
        ("0o17", "'0o17'"),
        ("0x1F", "'0x1F'"),
        ("1.0", "'1.0'"),
        ("1.", "'1.'"),
        (".5", "'.5'"),
        ("1e5", "'1e5'"),
        ("-.inf", "'-.inf'"),
        (".Inf", "'.Inf'"),
        (".NaN", "'.NaN'"),
        // YAML 1.1 look-alikes
        ("yes", "'yes'"),
        ("No", "'No'"),
        ("ON", "'ON'"),
        ("off", "'off'"),
        ("y", "'y'"),
        ("N", "'N'"),
        ("yEs", "'yEs'"),
        ("1_000", "'1_000'"),
        ("0b101", "'0b101'"),
        ("1:30", "'1:30'"),
        ("2024-01-31", "'2024-01-31'"),
        ("2024-01-31T10:00:00Z", "'2024-01-31T10:00:00Z'"),
        ("<<", "'<<'"),
        ("=", "'='"),
        // indicators and document markers
        ("-", "'-'"),
        ("- a", "'- a'"),
        ("---", "'---'"),
        ("---x", "'---x'"),
        ("...", "'...'"),
        ("?a", "'?a'"),
        (":a", "':a'"),
        ("#a", "'#a'"),
        ("&a", "'&a'"),
        ("*a", "'*a'"),
        ("**", "'**'"),
        ("!a", "'!a'"),
        ("|a", "'|a'"),
        (">a", "'>a'"),
        ("%a", "'%a'"),
        ("@a", "'@a'"),
        ("`a", "'`a'"),
        ("[a", "'[a'"),
        ("]a", "']a'"),
        ("{a", "'{a'"),
        ("}a", "'}a'"),
        (",a", "',a'"),
        ("'x'", "'''x'''"),
        ("\"x\"", "'\"x\"'"),
        // separators inside
        ("a: b", "'a: b'"),
        ("x: 'y'", "'x: ''y'''"),
        ("a #b", "'a #b'"),
        ("a:", "'a:'"),
        // escapes: double quotes with JSON-style escapes
        ("line\nbreak", "\"line\\nbreak\""),
        ("tab\there", "\"tab\\there\""),
        ("cr\r", "\"cr\\r\""),
        ("bell\u{7}", "\"bell\\u0007\""),
        ("nul\u{0}", "\"nul\\u0000\""),
        ("del\u{7f}", "\"del\\u007f\""),
        ("nel\u{85}", "\"nel\\u0085\""),
        ("ls\u{2028}", "\"ls\\u2028\""),
        ("\u{feff}bom", "\"\\ufeffbom\""),
        ("\u{fffe}", "\"\\ufffe\""),
        ("q\"b\\\n", "\"q\\\"b\\\\\\n\""),
        ("'a'\n", "\"'a'\\n\""),
    ];
    for (input, expected) in table {
        check(json!(input), expected);
    }
}

#[test]
fn other_scalars() {
    check(json!(null), "null");
    check(json!(true), "true");
    check(json!(false), "false");
    check(json!(30), "30");
    check(json!(-5), "-5");
    check(json!(u64::MAX), "18446744073709551615");
    check(json!(1.0), "1.0");
    check(json!(0.5), "0.5");
    check(json!(-2.25), "-2.25");
    check(json!(1e300), "1.0e+300");
    check(json!(1.5e-7), "1.5e-7");
    assert_eq!(scalar_to_yaml(&json!([])), None);
    assert_eq!(scalar_to_yaml(&json!({"a": 1})), None);
}

#[test]
fn golden_documents() {
    let cases: Vec<(Value, &str)> = vec![
        (json!("a"), "a\n"),
        (json!("1.0"), "'1.0'\n"),
        (json!("---"), "'---'\n"),
        (json!(null), "null\n"),
        (json!([]), "[]\n"),
        (json!({}), "{}\n"),
        (json!(["a", 1, true]), "- a\n- 1\n- true\n"),
        (json!({"b": 1, "a": 2}), "b: 1\na: 2\n"),
        (
            json!({"key": ["a", "b"], "empty": [], "obj": {}, "nested": {"x": {"y": "z"}}}),
            "key:\n  - a\n  - b\nempty: []\nobj: {}\nnested:\n  x:\n    'y': z\n",
        ),
        (
            json!([["a", "b"], [], [["c"]], {}]),
            "- - a\n  - b\n- []\n- - - c\n- {}\n",
        ),
        (
            json!({"tools": [{"name": "x", "scopes": [{"type": "path", "pattern": "**"}], "count": 1}]}),
            "tools:\n  - name: x\n    scopes:\n      - type: path\n        pattern: '**'\n    count: 1\n",
        ),
        (
            json!({"": 1, "1": "1", "a: b": "x\ny", "true": null}),
            "'': 1\n'1': '1'\n'a: b': \"x\\ny\"\n'true': null\n",
        ),
        (
            json!([{"a": [1, 2]}, {"b": {"c": []}}]),
            "- a:\n    - 1\n    - 2\n- b:\n    c: []\n",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(to_yaml_string(&value), expected, "document for {value}");
    }
}

#[test]
fn long_keys_use_the_explicit_form() {
    let long = "k".repeat(MAX_IMPLICIT_KEY_CHARS + 1);
    let value = json!({ long.clone(): {"a": 1}, "short": [long.clone()] });
    let expected = format!("? {long}\n:\n  a: 1\nshort:\n  - {long}\n");
    assert_eq!(to_yaml_string(&value), expected);
    let in_sequence = json!([{ long.clone(): 1 }]);
    assert_eq!(to_yaml_string(&in_sequence), format!("- ? {long}\n  : 1\n"));
}

#[test]
fn manifest_shaped_document() {
    let manifest = json!({
        "id": "customer-ops",
        "version": "1.0.0",
        "task_types": ["incident", "wu"],
        "tools": [{
            "name": "fetch-customer-profile",
            "permission": "read",
            "required_scopes": [{
                "type": "network",
                "posture": "allowlist",
                "allowlist_entries": ["api.example.com:443"]
            }],
            "input_schema": {"type": "object", "additionalProperties": false}
        }],
        "policies": [],
        "state_aliases": {}
    });
    let expected = "\
id: customer-ops
version: 1.0.0
task_types:
  - incident
  - wu
tools:
  - name: fetch-customer-profile
    permission: read
    required_scopes:
      - type: network
        posture: allowlist
        allowlist_entries:
          - api.example.com:443
    input_schema:
      type: object
      additionalProperties: false
policies: []
state_aliases: {}
";
    assert_eq!(to_yaml_string(&manifest), expected);
}

/// Strings biased towards the characters that matter to YAML.
fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,12}",
        "[-?:,\\[\\]{}#&*!|>'\"%@`~ .a-z0-9_+\t\n]{0,8}",
        prop::sample::select(vec![
            "", "null", "~", "true", "no", "Y", "0x1f", "0o7", "1_0", "1:2", "2020-1-2", ".inf",
            "-.5", "1e3", "---", "...", "- ", "? ", ": ", " #", "<<", "=", "\u{85}", "\u{feff}",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Numbers: any i64, any finite f64, short decimals, and (with `big`) u64 above `i64::MAX`.
fn arb_number(big: bool) -> impl Strategy<Value = Value> {
    let unsigned = if big { u64::MAX } else { i64::MAX as u64 };
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (0..=unsigned).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-1000i32..1000, 0u32..4)
            .prop_map(|(m, e)| Value::from(f64::from(m) / 10f64.powi(e as i32))),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_json_with(true)
}

fn arb_json_with(big_numbers: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        arb_number(big_numbers),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Reads back one quoted or plain scalar without a YAML reader: double-quoted text is a JSON
/// string, single-quoted text doubles its quotes, plain text is the string itself.
fn unquote(text: &str) -> String {
    if text.starts_with('"') {
        serde_json::from_str(text).expect("double-quoted output is a JSON string")
    } else if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
        text[1..text.len() - 1].replace("''", "'")
    } else {
        text.to_owned()
    }
}

proptest! {
    /// Every string comes back from its scalar form, and plain output is never a look-alike.
    #[test]
    fn string_scalars_read_back(s in arb_string()) {
        let text = scalar_to_yaml(&Value::String(s.clone())).unwrap();
        prop_assert_eq!(unquote(&text), s.clone());
        prop_assert!(!text.contains('\n'));
        if text == s {
            // Plain: an independent, cruder oracle of what must never be plain.
            let lower = s.to_ascii_lowercase();
            prop_assert!(!s.is_empty());
            if s.parse::<f64>().is_ok() {
                // Rust also reads `inf`, `NaN` and `infinity`, which YAML leaves as strings.
                let word = lower.trim_start_matches(['+', '-']);
                prop_assert!(["inf", "infinity", "nan"].contains(&word), "{:?} is plain", s);
            }
            prop_assert!(!["null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"].contains(&lower.as_str()));
            prop_assert!(!s.contains(": ") && !s.contains(" #") && !s.ends_with(':'));
            prop_assert!(!s.starts_with(' ') && !s.ends_with(' '));
            prop_assert!(s.chars().all(|c| !c.is_control()));
        }
    }

    /// Documents are line-based with even indentation and a trailing newline.
    #[test]
    fn documents_are_well_formed(v in arb_json()) {
        let text = to_yaml_string(&v);
        prop_assert!(text.ends_with('\n'));
        for line in text.lines() {
            let indent = line.len() - line.trim_start_matches(' ').len();
            prop_assert_eq!(indent % 2, 0, "line {:?}", line);
        }
        prop_assert_eq!(text.clone(), to_yaml_string(&v), "deterministic");
    }
}

/// Our own YAML 1.2 reader (`yaml::parse_value`).
fn parse_back(s: &str) -> Value {
    lumenflow_kernel::yaml::parse_value(s)
        .unwrap_or_else(|e| panic!("our reader rejected the output: {e}\n--- yaml ---\n{s}"))
}

proptest! {
    /// `to_yaml_string` then our reader gives the value back. (Integers above `i64::MAX` are
    /// left out: our reader reads them as floats.)
    #[test]
    fn round_trips_through_our_reader(v in arb_json_with(false)) {
        let text = to_yaml_string(&v);
        prop_assert_eq!(parse_back(&text), v, "yaml:\n{}", text);
    }
}

#[test]
fn golden_documents_round_trip_through_our_reader() {
    let long = "k".repeat(MAX_IMPLICIT_KEY_CHARS + 1);
    for value in [
        json!({ long.clone(): {"a": 1}, "short": [long.clone()] }),
        json!([{ long: 1 }]),
        json!([["a", "b"], [], [["c"]], {}]),
        json!({"": 1, "1": "1", "a: b": "x\ny", "true": null, "y": "n"}),
    ] {
        assert_eq!(parse_back(&to_yaml_string(&value)), value);
    }
}

/// Runs PyYAML on `yaml` and returns what it read, as JSON; `None` when PyYAML is not installed.
fn pyyaml_read(yaml: &str) -> Option<Value> {
    let probe = Command::new("python3")
        .args(["-c", "import yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(status) if status.success()) {
        return None;
    }
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             value = yaml.load(sys.stdin.buffer.read().decode('utf-8'), Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))\n\
             def tag(v):\n\
             \x20   if isinstance(v, float): return '__f64__' + repr(v)\n\
             \x20   if isinstance(v, list): return [tag(x) for x in v]\n\
             \x20   if isinstance(v, dict): return {k: tag(x) for k, x in v.items()}\n\
             \x20   return v\n\
             sys.stdout.write(json.dumps(tag(value)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyYAML could not read the output: {}\n--- yaml ---\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tagged: Value = serde_json::from_slice(&out.stdout).expect("python printed JSON");
    Some(untag_floats(tagged))
}

/// Python prints floats as `__f64__<repr>`: serde_json (without `float_roundtrip`) may be off by an
/// ulp when parsing decimal text, `str::parse` is exact.
fn untag_floats(value: Value) -> Value {
    match value {
        Value::String(s) => match s.strip_prefix("__f64__") {
            Some(repr) => Value::from(repr.parse::<f64>().expect("python float repr")),
            None => Value::String(s),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(untag_floats).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, untag_floats(v))).collect())
        }
        other => other,
    }
}

/// PyYAML reads back a few thousand generated values (and the scalar table) exactly.
#[test]
fn an_independent_reader_reads_values_back() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = arb_json();
    let mut values: Vec<Value> = (0..3000)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    for s in [
        "",
        "null",
        "yes",
        "y",
        "n",
        "on",
        "0b1",
        "1_0",
        "1:30",
        "2024-01-31",
        "<<",
        "=",
        "-",
        "---",
        "...",
        "- a",
        "a: b",
        "a #b",
        "a:",
        "\u{85}",
        "\u{2028}",
        "\u{feff}x",
        "-#",
        "?x",
        ":x",
    ] {
        values.push(json!(s));
        values.push(json!({ s: s }));
    }
    values.push(json!({ "k".repeat(2000): ["v"] }));
    let document = Value::Array(values);
    let Some(read_back) = pyyaml_read(&to_yaml_string(&document)) else {
        println!("notice: PyYAML (python3 -c 'import yaml') is not available; skipping the independent reader check");
        return;
    };
    let (Value::Array(expected), Value::Array(actual)) = (&document, &read_back) else {
        panic!("not an array");
    };
    assert_eq!(expected.len(), actual.len());
    for (e, a) in expected.iter().zip(actual) {
        assert_eq!(e, a, "\n--- yaml ---\n{}", to_yaml_string(e));
    }
}
