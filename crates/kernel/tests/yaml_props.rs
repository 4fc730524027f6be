//! Property tests for the YAML reader and the comment-preserving editor: they read untrusted
//! bytes and rewrite users' files, so they must never panic and never write the wrong document.

use lumenflow_kernel::yaml::{self, edit::set_value};
use proptest::prelude::*;
use serde_json::{json, Value};

fn yamlish() -> impl Strategy<Value = String> {
    // Fragments that exercise indentation, flow collections, quotes, anchors and comments.
    let piece = prop_oneof![
        Just("a: 1\n".to_string()),
        Just("- x\n".to_string()),
        Just("  b: [1, {c: d}]\n".to_string()),
        Just("k: &x {y: 2}\nz: *x\n".to_string()),
        Just("q: 'it''s'\n".to_string()),
        Just("s: \"\\u00e9\\n\"\n".to_string()),
        Just("# comment\n".to_string()),
        Just("? complex\n: value\n".to_string()),
        Just("t: |\n  block\n".to_string()),
        Just("---\n".to_string()),
        "[ -~]{0,12}\n",
        "\\PC{0,6}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        "[a-z0-9 _.:#'-]{0,10}".prop_map(Value::String),
        Just(Value::Null),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const BASE: &str = "# owner's notes\nid: ws # the id\nname: Test\npacks:\n  - id: a\n    version: 1.0.0 # pinned\nsoftware_delivery:\n  gates:\n    minCoverage: 80\nlist: [1, 2]\nempty: {}\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reader_never_panics(text in yamlish()) {
        let _ = yaml::parse(&text);
    }

    #[test]
    fn reader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = yaml::parse(&text);
    }

    #[test]
    fn edits_always_produce_exactly_the_intended_document(
        path in prop::collection::vec(prop_oneof![
            Just("id".to_string()), Just("packs".to_string()), Just("software_delivery".to_string()),
            Just("gates".to_string()), Just("minCoverage".to_string()), Just("list".to_string()),
            Just("empty".to_string()), "[a-z_]{1,5}",
        ], 1..4),
        value in json_value(),
    ) {
        let edited = set_value(BASE, &path, &value).expect("edit");
        let mut expected = yaml::parse_value(BASE).expect("base");
        yaml::edit::set_in_json(&mut expected, &path, value).expect("json set");
        prop_assert_eq!(yaml::parse_value(&edited.text).expect("edited parses"), expected);
        if edited.preserved_layout && path[0] != "id" {
            prop_assert!(edited.text.contains("# owner's notes"));
        }
    }
}
