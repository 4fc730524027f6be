//! The original LumenFlow JSON-Schema subset (`original/packs.md` §5.4, KRN-06): every keyword
//! accepting and rejecting, strict objects, compile errors, path checks, issue order.

use lumenflow_kernel::json_schema::{compile, CompiledSchema, SchemaError};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Compiles `schema`, validates `value`, and compares the rendered issues with `expect`
/// (empty: the value is accepted). The only place these tests validate through the API.
#[track_caller]
fn check(schema: Value, value: Value, expect: &[&str]) {
    let compiled = compiled(&schema);
    let actual: Vec<String> = match compiled.validate(&value) {
        Ok(()) => Vec::new(),
        Err(issues) => {
            assert!(!issues.is_empty(), "Err(vec![]) for {value}");
            issues.iter().map(ToString::to_string).collect()
        }
    };
    assert_eq!(actual, expect, "schema {schema}\nvalue {value}");
}

/// Compiles `schema`, expecting the rendered compile error `expect`.
#[track_caller]
fn check_compile_error(schema: Value, expect: &str) {
    match compile(&schema) {
        Ok(_) => panic!("schema compiled, expected `{expect}`: {schema}"),
        Err(err) => assert_eq!(err.to_string(), expect, "schema {schema}"),
    }
}

#[track_caller]
fn compiled(schema: &Value) -> CompiledSchema {
    match compile(schema) {
        Ok(compiled) => compiled,
        Err(err) => panic!("schema does not compile: {err}\n{schema}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Keywords, one row each way
// ------------------------------------------------------------------------------------------------

#[test]
fn const_keyword() {
    let rows: &[(Value, Value, &[&str])] = &[
        (json!({"const": "a"}), json!("a"), &[]),
        (
            json!({"const": "a"}),
            json!("b"),
            &["(root): expected `a`, found `b`"],
        ),
        (json!({"const": 1}), json!(1.0), &[]),
        (
            json!({"const": 1}),
            json!(2),
            &["(root): expected `1`, found `2`"],
        ),
        (json!({"const": true}), json!(true), &[]),
        (
            json!({"const": true}),
            json!("true"),
            &["(root): expected `true`, found string `true`"],
        ),
        (json!({"const": null}), json!(null), &[]),
        (
            json!({"const": null}),
            json!({}),
            &["(root): expected `null`, found an object"],
        ),
        // `const` wins over `type`, as in the original.
        (json!({"const": "x", "type": "number"}), json!("x"), &[]),
    ];
    for (schema, value, expect) in rows {
        check(schema.clone(), value.clone(), expect);
    }
}

#[test]
fn enum_keyword() {
    let rows: &[(Value, Value, &[&str])] = &[
        (json!({"enum": ["a", "b"]}), json!("b"), &[]),
        (
            json!({"enum": ["a", "b"]}),
            json!("c"),
            &["(root): expected one of `a`, `b`, found `c`"],
        ),
        (
            json!({"enum": ["a", "b"]}),
            json!([]),
            &["(root): expected one of `a`, `b`, found an array"],
        ),
        (json!({"enum": [1, "one", null]}), json!(1.0), &[]),
        (json!({"enum": [1, "one", null]}), json!(null), &[]),
        (
            json!({"enum": [1, "one", null]}),
            json!(false),
            &["(root): expected one of `1`, `one`, `null`, found boolean `false`"],
        ),
        (json!({"enum": [{"a": [1]}]}), json!({"a": [1]}), &[]),
        (
            json!({"enum": [{"a": [1]}]}),
            json!({"a": [2]}),
            &["(root): expected one of `{\"a\":[1]}`, found `{\"a\":[2]}`"],
        ),
        (
            json!({"type": "object", "properties": {"mode": {"enum": ["fast", "slow"]}}}),
            json!({"mode": "medium"}),
            &["`mode`: expected one of `fast`, `slow`, found `medium`"],
        ),
    ];
    for (schema, value, expect) in rows {
        check(schema.clone(), value.clone(), expect);
    }
}

#[test]
fn boolean_type() {
    check(json!({"type": "boolean"}), json!(false), &[]);
    check(
        json!({"type": "boolean"}),
        json!("false"),
        &["(root): expected a boolean, found string `false`"],
    );
    check(
        json!({"type": "boolean"}),
        json!(null),
        &["(root): expected a boolean, found `null`"],
    );
}

#[test]
fn string_type_and_keywords() {
    let rows: &[(Value, Value, &[&str])] = &[
        (json!({"type": "string"}), json!(""), &[]),
        (
            json!({"type": "string"}),
            json!(3),
            &["(root): expected a string, found number `3`"],
        ),
        (
            json!({"type": "string"}),
            json!({"a": 1}),
            &["(root): expected a string, found an object"],
        ),
        (json!({"type": "string", "minLength": 3}), json!("abc"), &[]),
        (
            json!({"type": "string", "minLength": 3}),
            json!("ab"),
            &["(root): string is shorter than 3 characters (found 2)"],
        ),
        (
            json!({"type": "string", "minLength": 1}),
            json!(""),
            &["(root): string is shorter than 1 character (found 0)"],
        ),
        (
            json!({"type": "string", "maxLength": 10}),
            json!("0123456789"),
            &[],
        ),
        (
            json!({"type": "string", "maxLength": 10}),
            json!("0123456789a"),
            &["(root): string is longer than 10 characters (found 11)"],
        ),
        // UTF-16 code units, as JavaScript counts: one astral character is two.
        (json!({"type": "string", "maxLength": 1}), json!("é"), &[]),
        (
            json!({"type": "string", "maxLength": 1}),
            json!("😀"),
            &["(root): string is longer than 1 character (found 2)"],
        ),
        (json!({"type": "string", "minLength": 2}), json!("😀"), &[]),
        (
            json!({"type": "string", "pattern": "^[a-z]+$"}),
            json!("abc"),
            &[],
        ),
        (
            json!({"type": "string", "pattern": "^[a-z]+$"}),
            json!("aBc"),
            &["(root): string `aBc` does not match pattern `^[a-z]+$`"],
        ),
        // Unanchored search, as `RegExp.test`.
        (json!({"type": "string", "pattern": "b"}), json!("abc"), &[]),
        (
            json!({"type": "string", "pattern": "x"}),
            json!("abc"),
            &["(root): string `abc` does not match pattern `x`"],
        ),
        // JavaScript meanings: `\d` is ASCII, `.` stops at `\r`, `\/` and a lone `{` are literals.
        (
            json!({"type": "string", "pattern": "^\\d+$"}),
            json!("0123"),
            &[],
        ),
        (
            json!({"type": "string", "pattern": "^\\d+$"}),
            json!("١٢"),
            &["(root): string `١٢` does not match pattern `^\\d+$`"],
        ),
        (
            json!({"type": "string", "pattern": "^a.b$"}),
            json!("a\rb"),
            &["(root): string `a\\rb` does not match pattern `^a.b$`"],
        ),
        (
            json!({"type": "string", "pattern": "^a\\/b{2}$"}),
            json!("a/bb"),
            &[],
        ),
        (
            json!({"type": "string", "pattern": "^{x}$"}),
            json!("{x}"),
            &[],
        ),
        // `\w` and `\b` are ASCII, inside a class too; `\s` includes U+FEFF; `[` in a class is literal.
        (
            json!({"type": "string", "pattern": "^[\\w-]+$"}),
            json!("a-b_9"),
            &[],
        ),
        (
            json!({"type": "string", "pattern": "^[\\w-]+$"}),
            json!("é"),
            &["(root): string `é` does not match pattern `^[\\w-]+$`"],
        ),
        (
            json!({"type": "string", "pattern": "\\bcat\\b"}),
            json!("a cat!"),
            &[],
        ),
        (
            json!({"type": "string", "pattern": "\\bcat\\b"}),
            json!("écat"),
            &[],
        ),
        (
            json!({"type": "string", "pattern": "\\bcat\\b"}),
            json!("bobcat"),
            &["(root): string `bobcat` does not match pattern `\\bcat\\b`"],
        ),
        (
            json!({"type": "string", "pattern": "^\\s$"}),
            json!("\u{feff}"),
            &[],
        ),
        (
            json!({"type": "string", "pattern": "^[[]$"}),
            json!("["),
            &[],
        ),
        // All failing string checks are reported, in keyword order.
        (
            json!({"type": "string", "minLength": 5, "pattern": "^z"}),
            json!("abc"),
            &[
                "(root): string is shorter than 5 characters (found 3)",
                "(root): string `abc` does not match pattern `^z`",
            ],
        ),
    ];
    for (schema, value, expect) in rows {
        check(schema.clone(), value.clone(), expect);
    }
}

#[test]
fn number_and_integer_types_and_keywords() {
    let rows: &[(Value, Value, &[&str])] = &[
        (json!({"type": "number"}), json!(1.5), &[]),
        (json!({"type": "number"}), json!("1"), &["(root): expected a number, found string `1`"]),
        (json!({"type": "number"}), json!(true), &["(root): expected a number, found boolean `true`"]),
        (json!({"type": "integer"}), json!(3), &[]),
        (json!({"type": "integer"}), json!(3.0), &[]),
        (json!({"type": "integer"}), json!(-7), &[]),
        (json!({"type": "integer"}), json!(1.5), &["(root): expected an integer, found `1.5`"]),
        (json!({"type": "integer"}), json!("3"), &["(root): expected an integer, found string `3`"]),
        (json!({"type": "integer"}), json!(9_007_199_254_740_991_i64), &[]),
        (json!({"type": "integer"}), json!(9_007_199_254_740_993_i64), &[
            "(root): expected a safe integer (between -9007199254740991 and 9007199254740991), found `9007199254740993`",
        ]),
        (json!({"type": "number", "minimum": 1}), json!(1), &[]),
        (json!({"type": "number", "minimum": 1}), json!(0.5), &["(root): expected a number greater than or equal to 1, found `0.5`"]),
        (json!({"type": "number", "maximum": 1}), json!(1), &[]),
        (json!({"type": "number", "maximum": 1}), json!(2), &["(root): expected a number less than or equal to 1, found `2`"]),
        (json!({"type": "number", "exclusiveMinimum": 0}), json!(0.1), &[]),
        (json!({"type": "number", "exclusiveMinimum": 0}), json!(0), &["(root): expected a number greater than 0, found `0`"]),
        (json!({"type": "number", "exclusiveMaximum": 1.5}), json!(1), &[]),
        (json!({"type": "number", "exclusiveMaximum": 1.5}), json!(1.5), &["(root): expected a number less than 1.5, found `1.5`"]),
        (json!({"type": "integer", "minimum": 0, "maximum": 100}), json!(101), &["(root): expected an integer less than or equal to 100, found `101`"]),
        // A fractional value below the minimum: both issues.
        (json!({"type": "integer", "minimum": 0}), json!(-0.5), &[
            "(root): expected an integer, found `-0.5`",
            "(root): expected an integer greater than or equal to 0, found `-0.5`",
        ]),
    ];
    for (schema, value, expect) in rows {
        check(schema.clone(), value.clone(), expect);
    }
}

#[test]
fn array_type_and_keywords() {
    let strings = || json!({"type": "array", "items": {"type": "string"}});
    let rows: &[(Value, Value, &[&str])] = &[
        (strings(), json!([]), &[]),
        (strings(), json!(["a", "b"]), &[]),
        (
            strings(),
            json!("a"),
            &["(root): expected an array, found string `a`"],
        ),
        (
            strings(),
            json!(["a", 2, "c", false]),
            &[
                "`1`: expected a string, found number `2`",
                "`3`: expected a string, found boolean `false`",
            ],
        ),
        (
            json!({"type": "array", "items": {"type": "string"}, "minItems": 1}),
            json!(["a"]),
            &[],
        ),
        (
            json!({"type": "array", "items": {"type": "string"}, "minItems": 1}),
            json!([]),
            &["(root): expected at least 1 item, found 0"],
        ),
        (
            json!({"type": "array", "items": {"type": "string"}, "maxItems": 2}),
            json!(["a", "b"]),
            &[],
        ),
        (
            json!({"type": "array", "items": {"type": "string"}, "maxItems": 2}),
            json!(["a", "b", "c"]),
            &["(root): expected at most 2 items, found 3"],
        ),
        // Length first, then the elements.
        (
            json!({"type": "array", "items": {"type": "integer"}, "maxItems": 1}),
            json!([1, 2.5]),
            &[
                "(root): expected at most 1 item, found 2",
                "`1`: expected an integer, found `2.5`",
            ],
        ),
    ];
    for (schema, value, expect) in rows {
        check(schema.clone(), value.clone(), expect);
    }
}

#[test]
fn objects_are_strict_unless_additional_properties_is_true() {
    let person = |extra: Option<Value>| {
        let mut schema = json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", 7],
        });
        if let (Some(extra), Some(map)) = (extra, schema.as_object_mut()) {
            map.insert("additionalProperties".into(), extra);
        }
        schema
    };
    let rows: &[(Value, Value, &[&str])] = &[
        (person(None), json!({"name": "ada"}), &[]),
        (person(None), json!({"name": "ada", "age": 36}), &[]),
        (person(None), json!({"age": 36}), &["(root): missing required property `name`"]),
        (person(None), json!({"name": "ada", "colour": "red"}),
            &["(root): unknown property `colour` (the schema does not allow additional properties)"]),
        (person(Some(json!(false))), json!({"name": "ada", "colour": "red"}),
            &["(root): unknown property `colour` (the schema does not allow additional properties)"]),
        // A schema for additional properties is not `true`: still strict, as in the original.
        (person(Some(json!({"type": "string"}))), json!({"name": "ada", "colour": "red"}),
            &["(root): unknown property `colour` (the schema does not allow additional properties)"]),
        (person(Some(json!(true))), json!({"name": "ada", "colour": "red", "n": [1, {}]}), &[]),
        // Declared properties are still checked when extras are allowed.
        (person(Some(json!(true))), json!({"name": 1, "colour": "red"}), &["`name`: expected a string, found number `1`"]),
        (person(None), json!(["ada"]), &["(root): expected an object, found an array"]),
        // No `properties`: the strict empty object.
        (json!({"type": "object"}), json!({}), &[]),
        (json!({"type": "object"}), json!({"a": 1}), &["(root): unknown property `a` (the schema does not allow additional properties)"]),
        // `required` names that `properties` does not declare are ignored, as in the original.
        (json!({"type": "object", "required": ["ghost"], "additionalProperties": true}), json!({}), &[]),
    ];
    for (schema, value, expect) in rows {
        check(schema.clone(), value.clone(), expect);
    }
}

#[test]
fn other_keywords_are_ignored() {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "t",
        "description": "d",
        "type": "object",
        "default": {"x": 1},
        "examples": [],
        "properties": {
            "x": {"type": "integer", "format": "int32", "multipleOf": 5, "minLength": "ignored here"},
        },
    });
    check(schema.clone(), json!({"x": 3}), &[]);
    check(
        schema,
        json!({"x": "3"}),
        &["`x`: expected an integer, found string `3`"],
    );
}

// ------------------------------------------------------------------------------------------------
// Issues: all of them, in document order, with instance paths
// ------------------------------------------------------------------------------------------------

#[test]
fn multiple_issues_are_reported_in_document_order() {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "gates": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "minCoverage": {"type": "number", "maximum": 100}},
                    "required": ["name"],
                },
            },
            "mode": {"enum": ["a", "b"]},
        },
        "required": ["name", "mode"],
    });
    let value = json!({
        "gates": [
            {"name": 3, "minCoverage": 120},
            {"name": "lint"},
            {"minCoverage": 50, "extra": true},
        ],
        "colour": "red",
        "mode": "c",
    });
    check(
        schema,
        value,
        &[
            "`gates.0.name`: expected a string, found number `3`",
            "`gates.0.minCoverage`: expected a number less than or equal to 100, found `120`",
            "`gates.2`: unknown property `extra` (the schema does not allow additional properties)",
            "`gates.2`: missing required property `name`",
            "(root): unknown property `colour` (the schema does not allow additional properties)",
            "`mode`: expected one of `a`, `b`, found `c`",
            "(root): missing required property `name`",
        ],
    );
}

#[test]
fn issue_fields_and_display() {
    let schema = compiled(&json!({"type": "object", "properties": {"a": {"type": "string"}}}));
    let issues = match schema.validate(&json!({"a": 1})) {
        Ok(()) => panic!("expected an issue"),
        Err(issues) => issues,
    };
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].path, "a");
    assert_eq!(issues[0].message, "expected a string, found number `1`");
    assert_eq!(
        issues[0].to_string(),
        "`a`: expected a string, found number `1`"
    );
}

#[test]
fn long_and_control_character_values_are_quoted_safely() {
    let long = "x".repeat(200);
    let quoted = format!("{}…", "x".repeat(59));
    check(
        json!({"type": "number"}),
        json!(long),
        &[&format!(
            "(root): expected a number, found string `{quoted}`"
        )],
    );
    check(
        json!({"type": "number"}),
        json!("a\nb"),
        &["(root): expected a number, found string `a\\nb`"],
    );
    check(
        json!({"type": "number"}),
        json!(""),
        &["(root): expected a number, found an empty string"],
    );
}

#[test]
fn values_nested_too_deep_are_an_issue_not_a_crash() {
    // Built by hand: `json!([value])` would re-serialise (and recurse through) `value`.
    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    }
    let open = json!({"type": "object", "additionalProperties": true});
    check(open.clone(), json!({"a": nested(127)}), &[]);
    let mut expected_path = vec!["a".to_owned()];
    expected_path.extend(std::iter::repeat_n("0".to_owned(), 127));
    check(
        open,
        json!({"a": nested(128)}),
        &[&format!(
            "`{}`: value is nested more than 128 levels deep",
            expected_path.join(".")
        )],
    );
    // Far deeper than any stack allows for naive recursion through validation.
    let deep = compiled(&json!({"enum": [1]}));
    let value = nested(100_000);
    let issues = deep.validate(&value).err().unwrap_or_default();
    assert_eq!(issues.len(), 1);
    assert_eq!(
        issues[0].message,
        "value is nested more than 128 levels deep"
    );
    // serde_json drops values recursively; leak this one rather than overflow on drop.
    std::mem::forget(value);
}

// ------------------------------------------------------------------------------------------------
// Compile errors
// ------------------------------------------------------------------------------------------------

#[test]
fn compile_errors_name_the_schema_path() {
    let rows: &[(Value, &str)] = &[
        (json!("string"), "(root): a schema must be a JSON object, found string `string`"),
        (json!(true), "(root): a schema must be a JSON object, found boolean `true`"),
        (json!({}), "(root): missing `type` (expected one of object, array, string, number, integer, boolean, or a `const` or `enum`)"),
        (json!({"description": "no type"}), "(root): missing `type` (expected one of object, array, string, number, integer, boolean, or a `const` or `enum`)"),
        (json!({"type": "null"}), "(root): `type` `null` at (root) is not supported (expected one of object, array, string, number, integer, boolean)"),
        (json!({"type": "object", "properties": {"a": {"type": "date"}}}),
            "properties.a: `type` `date` at properties.a is not supported (expected one of object, array, string, number, integer, boolean)"),
        (json!({"type": ["string", "null"]}), "(root): `type` must be a single string, found an array (type arrays are not supported; expected one of object, array, string, number, integer, boolean)"),
        (json!({"type": 3}), "(root): `type` must be a string, found number `3`"),
        (json!({"const": {"a": 1}}), "(root): `const` must be a JSON literal (string, number, boolean or null), found an object"),
        (json!({"const": [1]}), "(root): `const` must be a JSON literal (string, number, boolean or null), found an array"),
        (json!({"enum": []}), "(root): `enum` must be a non-empty array, found an empty array"),
        (json!({"enum": "a"}), "(root): `enum` must be a non-empty array, found string `a`"),
        (json!({"type": "array"}), "(root): missing `items` (a schema for the elements is required when `type` is `array`)"),
        (json!({"type": "object", "properties": {"tags": {"type": "array", "items": [{"type": "string"}]}}}),
            "properties.tags: `items` must be a schema object, found an array (tuple `items` are not supported)"),
        (json!({"type": "array", "items": {"type": "array", "items": {}}}),
            "items.items: missing `type` (expected one of object, array, string, number, integer, boolean, or a `const` or `enum`)"),
        (json!({"type": "string", "pattern": "("}), "(root): `pattern` `(` is not a supported regular expression: unclosed group"),
        (json!({"type": "object", "properties": {"id": {"type": "string", "pattern": "^a(?=b)"}}}),
            "properties.id: `pattern` `^a(?=b)` is not a supported regular expression: look-around, including look-ahead and look-behind, is not supported"),
        (json!({"type": "string", "pattern": 5}), "(root): `pattern` must be a string, found number `5`"),
        (json!({"type": "string", "minLength": "3"}), "(root): `minLength` must be a non-negative integer, found string `3`"),
        (json!({"type": "string", "maxLength": -1}), "(root): `maxLength` must be a non-negative integer, found number `-1`"),
        (json!({"type": "array", "items": {"type": "string"}, "minItems": 1.5}), "(root): `minItems` must be a non-negative integer, found number `1.5`"),
        (json!({"type": "array", "items": {"type": "string"}, "maxItems": null}), "(root): `maxItems` must be a non-negative integer, found `null`"),
        (json!({"type": "number", "minimum": "0"}), "(root): `minimum` must be a number, found string `0`"),
        (json!({"type": "integer", "maximum": [1]}), "(root): `maximum` must be a number, found an array"),
        (json!({"type": "number", "exclusiveMinimum": true}),
            "(root): `exclusiveMinimum` must be a number, found boolean `true` (the draft-04 boolean form is not supported)"),
        (json!({"type": "number", "exclusiveMaximum": "1"}), "(root): `exclusiveMaximum` must be a number, found string `1`"),
        (json!({"type": "object", "required": "name"}), "(root): `required` must be an array of property names, found string `name`"),
        (json!({"type": "object", "properties": []}), "(root): `properties` must be an object, found an array"),
        (json!({"type": "object", "additionalProperties": "yes"}), "(root): `additionalProperties` must be a boolean or a schema, found string `yes`"),
        (json!({"type": "object", "properties": {"gates": {"type": "object", "properties": {"minCoverage": {"type": "number", "minimum": "80"}}}}}),
            "properties.gates.properties.minCoverage: `minimum` must be a number, found string `80`"),
        (json!({"type": "object", "properties": {"a": 1}}), "properties.a: a schema must be a JSON object, found number `1`"),
    ];
    for (schema, expect) in rows {
        check_compile_error(schema.clone(), expect);
    }
}

#[test]
fn compile_error_fields() {
    let err = compile(&json!({"type": "object", "properties": {"a": {"type": "null"}}})).err();
    assert_eq!(
        err,
        Some(SchemaError {
            path: "properties.a".to_owned(),
            message: "`type` `null` at properties.a is not supported (expected one of object, \
                      array, string, number, integer, boolean)"
                .to_owned(),
        })
    );
}

/// A chain of `levels` nested schemas below the root, alternating `properties` and `items`.
fn nested_schema(levels: usize) -> (Value, Value, String) {
    let mut schema = json!({"type": "string"});
    let mut value = json!("leaf");
    let mut path = Vec::new();
    for level in 0..levels {
        if level % 2 == 0 {
            schema = json!({"type": "object", "properties": {"k": schema}, "required": ["k"]});
            value = json!({"k": value});
            path.push("properties.k");
        } else {
            schema = json!({"type": "array", "items": schema});
            value = json!([value]);
            path.push("items");
        }
    }
    path.reverse();
    (schema, value, path.join("."))
}

#[test]
fn schema_depth_12_compiles_and_13_does_not() {
    let (schema, value, _) = nested_schema(12);
    check(schema, value, &[]);
    let (schema, _, path) = nested_schema(13);
    check_compile_error(
        schema,
        &format!("{path}: schema is nested more than 12 levels deep"),
    );
}

// ------------------------------------------------------------------------------------------------
// Path checks for `config set`
// ------------------------------------------------------------------------------------------------

fn config_schema() -> CompiledSchema {
    compiled(&json!({
        "type": "object",
        "properties": {
            "gates": {
                "type": "object",
                "properties": {"minCoverage": {"type": "number"}, "lint": {"type": "boolean"}},
            },
            "lanes": {
                "type": "array",
                "items": {"type": "object", "properties": {"id": {"type": "string"}}},
            },
            "extensions": {"type": "object", "additionalProperties": true, "properties": {"known": {"type": "object"}}},
            "name": {"type": "string"},
        },
    }))
}

#[test]
fn check_path_walks_properties_and_items() {
    let schema = config_schema();
    let rows: &[(&[&str], Result<(), usize>)] = &[
        (&[], Ok(())),
        (&["gates"], Ok(())),
        (&["gates", "minCoverage"], Ok(())),
        (&["gates", "unknown_key"], Err(2)),
        (&["completely_unknown_section", "foo"], Err(1)),
        (&["unknown_top_level_key"], Err(1)),
        (&["gates", "minCoverage", "deeper"], Err(3)),
        (&["name", "x"], Err(2)),
        (&["lanes", "0", "id"], Ok(())),
        (&["lanes", "12", "nope"], Err(3)),
        (&["lanes", "first"], Err(2)),
        (&["lanes", "01"], Err(2)),
        // Below `additionalProperties: true`, anything goes; declared properties are still walked.
        (&["extensions", "anything", "below"], Ok(())),
        (&["extensions", "known"], Ok(())),
        (&["extensions", "known", "x"], Err(3)),
    ];
    for (segments, expect) in rows {
        assert_eq!(&schema.check_path(segments), expect, "{segments:?}");
    }
}

#[test]
fn known_properties_lists_the_object_reached() {
    let schema = config_schema();
    let rows: &[(&[&str], &[&str])] = &[
        (&[], &["gates", "lanes", "extensions", "name"]),
        (&["gates"], &["minCoverage", "lint"]),
        (&["lanes", "3"], &["id"]),
        (&["gates", "minCoverage"], &[]),
        (&["lanes"], &[]),
        (&["nope"], &[]),
        (&["extensions", "free"], &[]),
    ];
    for (segments, expect) in rows {
        assert_eq!(schema.known_properties(segments), *expect, "{segments:?}");
    }
}

// ------------------------------------------------------------------------------------------------
// Property: validation never panics, and a value's own shape accepts it
// ------------------------------------------------------------------------------------------------

/// A schema in the subset that accepts `value`: its own shape, down to the depth limit.
fn schema_of(value: &Value) -> Value {
    fn go(value: &Value, depth: usize) -> Value {
        if depth >= 12 {
            return json!({"enum": [value]});
        }
        match value {
            Value::Null => json!({"const": null}),
            Value::Bool(_) => json!({"type": "boolean"}),
            Value::Number(n)
                if (n.is_i64() || n.is_u64())
                    && n.as_f64()
                        .is_some_and(|f| f.abs() <= 9_007_199_254_740_991.0) =>
            {
                json!({"type": "integer"})
            }
            Value::Number(_) => json!({"type": "number"}),
            Value::String(s) => {
                let len = s.encode_utf16().count();
                json!({"type": "string", "minLength": len, "maxLength": len})
            }
            Value::Array(items) => {
                let schemas: Vec<Value> = items.iter().map(|v| go(v, depth + 1)).collect();
                let items_schema = match schemas.first() {
                    Some(first) if schemas.iter().all(|s| s == first) => first.clone(),
                    Some(_) => json!({"enum": items}),
                    None => json!({"type": "string"}),
                };
                json!({"type": "array", "items": items_schema, "minItems": items.len(), "maxItems": items.len()})
            }
            Value::Object(map) => {
                let properties: Map<String, Value> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), go(v, depth + 1)))
                    .collect();
                let required: Vec<&String> = map.keys().collect();
                json!({"type": "object", "properties": properties, "required": required})
            }
        }
    }
    go(value, 0)
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(16, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z.]{0,6}", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn arb_schema() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "string", "minLength": 1, "pattern": "^[a-z]"})),
        Just(json!({"type": "integer", "minimum": 0, "exclusiveMaximum": 10})),
        Just(json!({"type": "array", "items": {"type": "number"}, "maxItems": 2})),
        Just(
            json!({"type": "object", "properties": {"a": {"enum": [1, "a", null]}}, "required": ["a"]})
        ),
        Just(json!({"type": "object", "additionalProperties": true})),
    ]
}

proptest! {
    #[test]
    fn validation_never_panics_and_own_shape_accepts(value in arb_json(), schema in arb_schema()) {
        // Any schema against any value: an answer, never a panic, and never an empty issue list.
        let compiled = compile(&schema).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Err(issues) = compiled.validate(&value) {
            prop_assert!(!issues.is_empty());
        }
        let own = schema_of(&value);
        let own_compiled = compile(&own).map_err(|e| TestCaseError::fail(format!("{e}\n{own}")))?;
        prop_assert_eq!(own_compiled.validate(&value), Ok(()), "schema {}", own);
    }
}
