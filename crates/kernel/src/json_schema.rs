//! The JSON-Schema subset of the original LumenFlow, compiled once and validated many times.
//!
//! Pack tools' `input_schema` / `output_schema` and a pack's `config_schema` file are JSON Schemas,
//! but the original runtime (`buildZodSchemaFromJsonSchema`) only ever understood a small subset of
//! the language. This module ports that subset exactly, so a schema the original accepted is
//! accepted here and means the same thing; a schema it refused is refused here too, with a
//! [`SchemaError`] naming the schema location.
//!
//! # The subset
//!
//! - A schema is a JSON object, nested at most [`MAX_SCHEMA_DEPTH`] levels below the root (each
//!   `properties.<name>` and `items` is one level).
//! - `const` (a string, number, boolean or null): the value must equal it. `const` wins over
//!   everything else in the same schema, `type` included.
//! - `enum` (a non-empty array): the value must equal one of the members. It wins over `type`.
//! - Otherwise `type` is required, and is one of `object`, `array`, `string`, `number`,
//!   `integer`, `boolean`. `null` and type arrays are not supported.
//!   - `string`: `minLength`, `maxLength` (counted in UTF-16 code units, as JavaScript counts),
//!     `pattern` (searched anywhere in the string, as `RegExp.test` does).
//!   - `number` / `integer`: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, all
//!     numbers. An `integer` has no fractional part and is a safe integer (at most
//!     2^53 - 1 in magnitude), as Zod 4's `.int()` requires.
//!   - `array`: `items` (a schema) is required; `minItems`, `maxItems`.
//!   - `object`: `properties` (default `{}`), `required` (an array of names; members that are not
//!     strings are ignored, and so are names that `properties` does not declare, as in the
//!     original). **Objects are strict unless `additionalProperties` is `true`**: when it is
//!     absent, `false` or a schema, a key that `properties` does not declare is an issue. This
//!     differs from standard JSON Schema on purpose.
//! - Every other keyword (`description`, `title`, `default`, `$schema`, `format`, ...) is ignored,
//!   and so are keywords of another type (`minLength` in a `number` schema).
//! - A keyword of a supported type with a value of the wrong JSON type (`minLength: "3"`,
//!   `required: "name"`) is a compile error.
//!
//! # Patterns
//!
//! `pattern` is written in JavaScript's regular-expression syntax and compiled with the `regex`
//! crate after a small translation that keeps JavaScript's meaning where the two disagree:
//! `\d`, `\w`, `\s`, `\b` and `.` take their JavaScript (ASCII / ECMAScript) meaning instead of the
//! crate's Unicode one, `[` inside a class is a literal, and a `{` that does not start a
//! quantifier is a literal. A pattern the crate cannot compile (look-around, back-references) is
//! a compile error naming the schema location.
//!
//! # Issues
//!
//! [`CompiledSchema::validate`] reports every issue, not just the first, in document order: an
//! object's keys in the order the value lists them, then its missing required properties in the
//! order the schema declares them; an array's length before its elements. Each
//! [`ValidationIssue`] carries the instance path (`gates.0.name`, empty for the root). Values
//! nested more than [`MAX_VALUE_DEPTH`] levels deep are reported as one issue instead of being
//! walked.
//!
//! This module does no I/O and never panics.

use std::fmt;

use indexmap::IndexMap;
use regex::Regex;
use serde_json::{Map, Number, Value};

/// How many levels a schema may nest below its root (`properties.<name>` and `items` each add
/// one). A deeper schema is a compile error.
pub const MAX_SCHEMA_DEPTH: usize = 12;

/// How many levels of arrays and objects a validated value may nest. A deeper value is reported as
/// an issue, never walked.
pub const MAX_VALUE_DEPTH: usize = 128;

/// `Number.MAX_SAFE_INTEGER`: Zod 4's `.int()` only accepts integers up to this magnitude.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

const SUPPORTED_TYPES: &str = "object, array, string, number, integer, boolean";

/// How many characters of a user value a message quotes before cutting it short.
const MAX_QUOTED_CHARS: usize = 60;

/// How many `enum` members a message lists before cutting the list short.
const MAX_LISTED_MEMBERS: usize = 10;

/// A schema compiled from the supported subset, ready to validate values.
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    root: Node,
}

/// Why a schema could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    /// Where in the schema: `properties.gates.properties.minCoverage`, `items`, or `(root)`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// One way a value fails its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationIssue {
    /// Where in the value: keys and array indexes joined with `.` (`gates.0.name`); empty for the
    /// root.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(root): {}", self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Const(Value),
    Enum(Vec<Value>),
    Boolean,
    String(StringRules),
    Number(NumberRules),
    Array(ArrayRules),
    Object(ObjectRules),
}

#[derive(Debug, Clone)]
struct StringRules {
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The pattern as the schema wrote it, for messages.
    source: String,
    regex: Regex,
}

#[derive(Debug, Clone)]
struct NumberRules {
    integer: bool,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    exclusive_minimum: Option<Bound>,
    exclusive_maximum: Option<Bound>,
}

#[derive(Debug, Clone)]
struct Bound {
    value: f64,
    /// The bound as the schema wrote it, for messages.
    text: String,
}

#[derive(Debug, Clone)]
struct ArrayRules {
    items: Box<Node>,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

#[derive(Debug, Clone)]
struct ObjectRules {
    properties: IndexMap<String, Property>,
    additional_properties: bool,
}

#[derive(Debug, Clone)]
struct Property {
    node: Node,
    required: bool,
}

// ---------------------------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------------------------

/// Compiles `schema`, refusing anything outside the supported subset.
pub fn compile(schema: &Value) -> Result<CompiledSchema, SchemaError> {
    let root = compile_node(schema, &SchemaPath::root(), 0)?;
    Ok(CompiledSchema { root })
}

/// A location in the schema, rendered `properties.a.items` or `(root)`.
#[derive(Debug, Clone)]
struct SchemaPath(String);

impl SchemaPath {
    fn root() -> Self {
        SchemaPath(String::new())
    }

    fn child(&self, segment: &str) -> Self {
        if self.0.is_empty() {
            SchemaPath(segment.to_owned())
        } else {
            SchemaPath(format!("{}.{segment}", self.0))
        }
    }

    fn error(&self, message: impl Into<String>) -> SchemaError {
        SchemaError {
            path: self.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SchemaPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(root)")
        } else {
            f.write_str(&self.0)
        }
    }
}

fn compile_node(schema: &Value, path: &SchemaPath, depth: usize) -> Result<Node, SchemaError> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(path.error(format!(
            "schema is nested more than {MAX_SCHEMA_DEPTH} levels deep"
        )));
    }
    let Value::Object(obj) = schema else {
        return Err(path.error(format!(
            "a schema must be a JSON object, found {}",
            describe(schema)
        )));
    };

    if let Some(literal) = obj.get("const") {
        if !is_literal(literal) {
            return Err(path.error(format!(
                "`const` must be a JSON literal (string, number, boolean or null), found {}",
                describe(literal)
            )));
        }
        return Ok(Node::Const(literal.clone()));
    }

    if let Some(members) = obj.get("enum") {
        return match members {
            Value::Array(members) if members.is_empty() => {
                Err(path.error("`enum` must be a non-empty array, found an empty array"))
            }
            Value::Array(members) => {
                if let Some(index) = members
                    .iter()
                    .position(|m| exceeds_depth(m, MAX_VALUE_DEPTH))
                {
                    return Err(path.error(format!(
                        "`enum` member {index} is nested more than {MAX_VALUE_DEPTH} levels deep"
                    )));
                }
                Ok(Node::Enum(members.clone()))
            }
            other => Err(path.error(format!(
                "`enum` must be a non-empty array, found {}",
                describe(other)
            ))),
        };
    }

    let type_name = match obj.get("type") {
        None => {
            return Err(path.error(format!(
                "missing `type` (expected one of {SUPPORTED_TYPES}, or a `const` or `enum`)"
            )))
        }
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(_)) => {
            return Err(path.error(format!(
                "`type` must be a single string, found an array (type arrays are not supported; \
                 expected one of {SUPPORTED_TYPES})"
            )))
        }
        Some(other) => {
            return Err(path.error(format!(
                "`type` must be a string, found {}",
                describe(other)
            )))
        }
    };

    match type_name {
        "boolean" => Ok(Node::Boolean),
        "string" => compile_string(obj, path),
        "number" => compile_number(obj, path, false),
        "integer" => compile_number(obj, path, true),
        "array" => compile_array(obj, path, depth),
        "object" => compile_object(obj, path, depth),
        other => Err(path.error(format!(
            "`type` `{}` at {path} is not supported (expected one of {SUPPORTED_TYPES})",
            quote_str(other)
        ))),
    }
}

fn compile_string(obj: &Map<String, Value>, path: &SchemaPath) -> Result<Node, SchemaError> {
    let min_length = count_keyword(obj, "minLength", path)?;
    let max_length = count_keyword(obj, "maxLength", path)?;
    let pattern = match obj.get("pattern") {
        None => None,
        Some(Value::String(source)) => {
            let regex = Regex::new(&translate_js_pattern(source)).map_err(|err| {
                path.error(format!(
                    "`pattern` `{}` is not a supported regular expression: {}",
                    quote_str(source),
                    regex_error_summary(&err)
                ))
            })?;
            Some(Pattern {
                source: source.clone(),
                regex,
            })
        }
        Some(other) => {
            return Err(path.error(format!(
                "`pattern` must be a string, found {}",
                describe(other)
            )))
        }
    };
    Ok(Node::String(StringRules {
        min_length,
        max_length,
        pattern,
    }))
}

fn compile_number(
    obj: &Map<String, Value>,
    path: &SchemaPath,
    integer: bool,
) -> Result<Node, SchemaError> {
    Ok(Node::Number(NumberRules {
        integer,
        minimum: bound_keyword(obj, "minimum", path)?,
        maximum: bound_keyword(obj, "maximum", path)?,
        exclusive_minimum: bound_keyword(obj, "exclusiveMinimum", path)?,
        exclusive_maximum: bound_keyword(obj, "exclusiveMaximum", path)?,
    }))
}

fn compile_array(
    obj: &Map<String, Value>,
    path: &SchemaPath,
    depth: usize,
) -> Result<Node, SchemaError> {
    const MISSING: &str =
        "missing `items` (a schema for the elements is required when `type` is `array`)";
    const TUPLE: &str =
        "`items` must be a schema object, found an array (tuple `items` are not supported)";
    let items = match obj.get("items") {
        None => return Err(path.error(MISSING)),
        Some(Value::Array(_)) => return Err(path.error(TUPLE)),
        Some(items) => compile_node(items, &path.child("items"), depth + 1)?,
    };
    Ok(Node::Array(ArrayRules {
        items: Box::new(items),
        min_items: count_keyword(obj, "minItems", path)?,
        max_items: count_keyword(obj, "maxItems", path)?,
    }))
}

fn compile_object(
    obj: &Map<String, Value>,
    path: &SchemaPath,
    depth: usize,
) -> Result<Node, SchemaError> {
    let required: Vec<&str> = match obj.get("required") {
        None => Vec::new(),
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        Some(other) => {
            return Err(path.error(format!(
                "`required` must be an array of property names, found {}",
                describe(other)
            )))
        }
    };
    let additional_properties = match obj.get("additionalProperties") {
        None | Some(Value::Object(_)) => false,
        Some(Value::Bool(allowed)) => *allowed,
        Some(other) => {
            return Err(path.error(format!(
                "`additionalProperties` must be a boolean or a schema, found {}",
                describe(other)
            )))
        }
    };
    let mut properties = IndexMap::new();
    match obj.get("properties") {
        None => {}
        Some(Value::Object(declared)) => {
            let properties_path = path.child("properties");
            for (name, schema) in declared {
                let node = compile_node(schema, &properties_path.child(name), depth + 1)?;
                let required = required.contains(&name.as_str());
                properties.insert(name.clone(), Property { node, required });
            }
        }
        Some(other) => {
            return Err(path.error(format!(
                "`properties` must be an object, found {}",
                describe(other)
            )))
        }
    }
    Ok(Node::Object(ObjectRules {
        properties,
        additional_properties,
    }))
}

/// `minLength`, `maxLength`, `minItems`, `maxItems`: a non-negative integer (`3.0` included).
fn count_keyword(
    obj: &Map<String, Value>,
    keyword: &str,
    path: &SchemaPath,
) -> Result<Option<u64>, SchemaError> {
    let Some(value) = obj.get(keyword) else {
        return Ok(None);
    };
    let count = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_SAFE_INTEGER)
                // The filter keeps the value integral and within u64 range.
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match count {
        Some(count) => Ok(Some(count)),
        None => Err(path.error(format!(
            "`{keyword}` must be a non-negative integer, found {}",
            describe(value)
        ))),
    }
}

/// `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`: a number.
fn bound_keyword(
    obj: &Map<String, Value>,
    keyword: &str,
    path: &SchemaPath,
) -> Result<Option<Bound>, SchemaError> {
    match obj.get(keyword) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(value) => Ok(Some(Bound {
                value,
                text: n.to_string(),
            })),
            None => Err(path.error(format!("`{keyword}` must be a finite number, found `{n}`"))),
        },
        Some(Value::Bool(b)) if keyword.starts_with("exclusive") => Err(path.error(format!(
            "`{keyword}` must be a number, found boolean `{b}` (the draft-04 boolean form is not \
             supported)"
        ))),
        Some(other) => Err(path.error(format!(
            "`{keyword}` must be a number, found {}",
            describe(other)
        ))),
    }
}

fn is_literal(value: &Value) -> bool {
    matches!(
        value,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)
    )
}

/// The one-line reason inside a `regex` error (its syntax errors are multi-line diagrams).
fn regex_error_summary(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Rewrites a JavaScript (non-`u`) regular expression so the `regex` crate gives it the same
/// meaning: ASCII `\d` `\w` `\b`, ECMAScript `\s` and `.`, `[` literal inside a class, `{` literal
/// unless it starts a quantifier, `[]` / `[^]` as the empty / full class.
fn translate_js_pattern(source: &str) -> String {
    const DIGIT: &str = "[0-9]";
    const NOT_DIGIT: &str = "[^0-9]";
    const WORD: &str = "[0-9A-Za-z_]";
    const NOT_WORD: &str = "[^0-9A-Za-z_]";
    const SPACE: &str = r"[\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}]";
    const NOT_SPACE: &str = r"[^\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}]";
    const DOT: &str = r"[^\n\r\x{2028}\x{2029}]";
    const EMPTY_CLASS: &str = r"[^\x00-\x{10FFFF}]";
    const FULL_CLASS: &str = r"[\x00-\x{10FFFF}]";

    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 16);
    let mut in_class = false;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '\\' => {
                let Some(&escaped) = chars.get(i) else {
                    out.push('\\');
                    break;
                };
                i += 1;
                match escaped {
                    'd' => out.push_str(DIGIT),
                    'D' => out.push_str(NOT_DIGIT),
                    'w' => out.push_str(WORD),
                    'W' => out.push_str(NOT_WORD),
                    's' => out.push_str(SPACE),
                    'S' => out.push_str(NOT_SPACE),
                    'b' if in_class => out.push_str(r"\x08"),
                    'b' => out.push_str(r"(?-u:\b)"),
                    'B' if !in_class => out.push_str(r"(?-u:\B)"),
                    '0' if !chars.get(i).is_some_and(char::is_ascii_digit) => {
                        out.push_str(r"\x00");
                    }
                    'c' if chars.get(i).is_some_and(char::is_ascii_alphabetic) => {
                        let letter = chars.get(i).copied().map_or(0, u32::from);
                        i += 1;
                        out.push_str(&format!(r"\x{{{:02X}}}", letter % 32));
                    }
                    // `\c` not followed by a letter is a backslash and a `c` in JavaScript.
                    'c' => out.push_str(r"\\c"),
                    // Letters JavaScript gives no meaning to are identity escapes (`\z` is `z`),
                    // while the crate would read some of them as anchors or classes.
                    letter if letter.is_ascii_alphabetic() && !"tnvfrxuk".contains(letter) => {
                        out.push(letter);
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            '[' if in_class => out.push_str(r"\["),
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '[' => {
                let negated = chars.get(i) == Some(&'^');
                let close_at = if negated { i + 1 } else { i };
                if chars.get(close_at) == Some(&']') {
                    out.push_str(if negated { FULL_CLASS } else { EMPTY_CLASS });
                    i = close_at + 1;
                } else {
                    in_class = true;
                    out.push('[');
                    if negated {
                        out.push('^');
                        i += 1;
                    }
                }
            }
            '.' if !in_class => out.push_str(DOT),
            '{' if !in_class => {
                if starts_quantifier(chars.get(i..).unwrap_or_default()) {
                    // Copy the quantifier whole, so its `}` is not escaped below.
                    out.push('{');
                    while let Some(&q) = chars.get(i) {
                        out.push(q);
                        i += 1;
                        if q == '}' {
                            break;
                        }
                    }
                } else {
                    out.push_str(r"\{");
                }
            }
            '}' if !in_class => out.push_str(r"\}"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether `rest` (what follows a `{`) completes a JavaScript quantifier: `n}`, `n,}` or `n,m}`.
fn starts_quantifier(rest: &[char]) -> bool {
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    match rest.get(digits) {
        Some('}') => true,
        Some(',') => {
            let after = rest.get(digits + 1..).unwrap_or_default();
            let more = after.iter().take_while(|c| c.is_ascii_digit()).count();
            after.get(more) == Some(&'}')
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Validating
// ---------------------------------------------------------------------------------------------

impl CompiledSchema {
    /// Checks `value` against the schema. All issues (not just the first), in document order.
    pub fn validate(&self, value: &Value) -> Result<(), Vec<ValidationIssue>> {
        let mut path = String::new();
        if exceeds_depth(value, MAX_VALUE_DEPTH) && find_too_deep(value, 0, &mut path) {
            return Err(vec![ValidationIssue {
                path,
                message: format!("value is nested more than {MAX_VALUE_DEPTH} levels deep"),
            }]);
        }
        let mut issues = Vec::new();
        validate_node(&self.root, value, &mut path, &mut issues);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(issues)
        }
    }

    /// Structural path check used by `config set` for packs with a schema: walks `segments`
    /// through the `properties` of nested object schemas (and array `items` for numeric
    /// segments). `Err(n)` means the first `n` segments are the shortest unknown prefix. A segment
    /// under an object with `additionalProperties: true` is accepted, and everything below it.
    pub fn check_path(&self, segments: &[&str]) -> Result<(), usize> {
        match self.walk(segments) {
            Walk::Reached(_) | Walk::Open => Ok(()),
            Walk::Unknown(prefix_len) => Err(prefix_len),
        }
    }

    /// The property names declared at the object schema reached by `segments`, in schema order
    /// (for did-you-mean suggestions); empty when that is not an object schema or not reachable.
    pub fn known_properties(&self, segments: &[&str]) -> Vec<String> {
        match self.walk(segments) {
            Walk::Reached(Node::Object(rules)) => rules.properties.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the schema reached by `segments` accepts strings only (`type: string`, or a
    /// `const` or `enum` of strings only): `config set` then keeps the text as typed, so a gate
    /// command `true` or a branch `2024` stays a string instead of becoming a boolean or number
    /// the schema would refuse.
    pub fn wants_string(&self, segments: &[&str]) -> bool {
        match self.walk(segments) {
            Walk::Reached(Node::String(_)) => true,
            Walk::Reached(Node::Const(v)) => v.is_string(),
            Walk::Reached(Node::Enum(members)) => members.iter().all(Value::is_string),
            _ => false,
        }
    }

    fn walk(&self, segments: &[&str]) -> Walk<'_> {
        let mut node = &self.root;
        for (index, segment) in segments.iter().enumerate() {
            node = match node {
                Node::Object(rules) => match rules.properties.get(*segment) {
                    Some(property) => &property.node,
                    None if rules.additional_properties => return Walk::Open,
                    None => return Walk::Unknown(index + 1),
                },
                Node::Array(rules) if is_array_index(segment) => &rules.items,
                _ => return Walk::Unknown(index + 1),
            };
        }
        Walk::Reached(node)
    }
}

enum Walk<'a> {
    /// Every segment names a declared property (or an array element); this is the schema there.
    Reached(&'a Node),
    /// A segment went below an object that allows additional properties.
    Open,
    /// The first `n` segments are unknown.
    Unknown(usize),
}

fn is_array_index(segment: &str) -> bool {
    !segment.is_empty()
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'))
}

/// Whether `value` nests arrays and objects more than `limit` levels deep, without recursing
/// further than that.
fn exceeds_depth(value: &Value, limit: usize) -> bool {
    match value {
        Value::Array(items) => limit == 0 || items.iter().any(|v| exceeds_depth(v, limit - 1)),
        Value::Object(map) => limit == 0 || map.values().any(|v| exceeds_depth(v, limit - 1)),
        _ => false,
    }
}

/// Finds the first container nested more than [`MAX_VALUE_DEPTH`] levels deep, leaving its path
/// in `path`. `depth` is the number of containers above `value`; recursion stops at the limit.
fn find_too_deep(value: &Value, depth: usize, path: &mut String) -> bool {
    match value {
        Value::Array(items) => {
            if depth >= MAX_VALUE_DEPTH {
                return true;
            }
            for (index, item) in items.iter().enumerate() {
                let len = push_segment(path, &index.to_string());
                if find_too_deep(item, depth + 1, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        Value::Object(map) => {
            if depth >= MAX_VALUE_DEPTH {
                return true;
            }
            for (key, child) in map {
                let len = push_segment(path, key);
                if find_too_deep(child, depth + 1, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

/// Appends `segment` to an instance path, returning the length to truncate back to.
fn push_segment(path: &mut String, segment: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(segment);
    len
}

fn issue(path: &str, message: String) -> ValidationIssue {
    ValidationIssue {
        path: path.to_owned(),
        message,
    }
}

fn validate_node(node: &Node, value: &Value, path: &mut String, issues: &mut Vec<ValidationIssue>) {
    match node {
        Node::Const(expected) => {
            if !json_eq(expected, value) {
                issues.push(issue(
                    path,
                    format!(
                        "expected `{}`, found {}",
                        render_literal(expected),
                        describe_found(value, std::slice::from_ref(expected))
                    ),
                ));
            }
        }
        Node::Enum(members) => {
            if !members.iter().any(|m| json_eq(m, value)) {
                issues.push(issue(
                    path,
                    format!(
                        "expected one of {}, found {}",
                        render_members(members),
                        describe_found(value, members)
                    ),
                ));
            }
        }
        Node::Boolean => {
            if !value.is_boolean() {
                issues.push(type_mismatch(path, "a boolean", value));
            }
        }
        Node::String(rules) => validate_string(rules, value, path, issues),
        Node::Number(rules) => validate_number(rules, value, path, issues),
        Node::Array(rules) => validate_array(rules, value, path, issues),
        Node::Object(rules) => validate_object(rules, value, path, issues),
    }
}

fn type_mismatch(path: &str, expected: &str, found: &Value) -> ValidationIssue {
    issue(
        path,
        format!("expected {expected}, found {}", describe(found)),
    )
}

fn validate_string(
    rules: &StringRules,
    value: &Value,
    path: &str,
    issues: &mut Vec<ValidationIssue>,
) {
    let Value::String(s) = value else {
        issues.push(type_mismatch(path, "a string", value));
        return;
    };
    let length = s.encode_utf16().count() as u64;
    if let Some(min) = rules.min_length {
        if length < min {
            issues.push(issue(
                path,
                format!(
                    "string is shorter than {min} {} (found {length})",
                    plural(min, "character", "characters")
                ),
            ));
        }
    }
    if let Some(max) = rules.max_length {
        if length > max {
            issues.push(issue(
                path,
                format!(
                    "string is longer than {max} {} (found {length})",
                    plural(max, "character", "characters")
                ),
            ));
        }
    }
    if let Some(pattern) = &rules.pattern {
        if !pattern.regex.is_match(s) {
            issues.push(issue(
                path,
                format!(
                    "string `{}` does not match pattern `{}`",
                    quote_str(s),
                    quote_str(&pattern.source)
                ),
            ));
        }
    }
}

fn validate_number(
    rules: &NumberRules,
    value: &Value,
    path: &str,
    issues: &mut Vec<ValidationIssue>,
) {
    let kind = if rules.integer {
        "an integer"
    } else {
        "a number"
    };
    let Value::Number(n) = value else {
        issues.push(type_mismatch(path, kind, value));
        return;
    };
    let Some(x) = n.as_f64() else {
        issues.push(issue(path, format!("expected {kind}, found `{n}`")));
        return;
    };
    if rules.integer {
        if x.fract() != 0.0 {
            issues.push(issue(path, format!("expected an integer, found `{n}`")));
        } else if x.abs() > MAX_SAFE_INTEGER {
            issues.push(issue(
                path,
                format!(
                    "expected a safe integer (between -9007199254740991 and 9007199254740991), \
                     found `{n}`"
                ),
            ));
        }
    }
    let mut check_bound = |bound: &Option<Bound>, holds: fn(f64, f64) -> bool, relation: &str| {
        if let Some(bound) = bound {
            if !holds(x, bound.value) {
                issues.push(issue(
                    path,
                    format!("expected {kind} {relation} {}, found `{n}`", bound.text),
                ));
            }
        }
    };
    check_bound(&rules.minimum, |x, b| x >= b, "greater than or equal to");
    check_bound(&rules.exclusive_minimum, |x, b| x > b, "greater than");
    check_bound(&rules.maximum, |x, b| x <= b, "less than or equal to");
    check_bound(&rules.exclusive_maximum, |x, b| x < b, "less than");
}

fn validate_array(
    rules: &ArrayRules,
    value: &Value,
    path: &mut String,
    issues: &mut Vec<ValidationIssue>,
) {
    let Value::Array(items) = value else {
        issues.push(type_mismatch(path, "an array", value));
        return;
    };
    let count = items.len() as u64;
    if let Some(min) = rules.min_items {
        if count < min {
            issues.push(issue(
                path,
                format!(
                    "expected at least {min} {}, found {count}",
                    plural(min, "item", "items")
                ),
            ));
        }
    }
    if let Some(max) = rules.max_items {
        if count > max {
            issues.push(issue(
                path,
                format!(
                    "expected at most {max} {}, found {count}",
                    plural(max, "item", "items")
                ),
            ));
        }
    }
    for (index, item) in items.iter().enumerate() {
        let len = push_segment(path, &index.to_string());
        validate_node(&rules.items, item, path, issues);
        path.truncate(len);
    }
}

fn validate_object(
    rules: &ObjectRules,
    value: &Value,
    path: &mut String,
    issues: &mut Vec<ValidationIssue>,
) {
    let Value::Object(map) = value else {
        issues.push(type_mismatch(path, "an object", value));
        return;
    };
    for (key, child) in map {
        match rules.properties.get(key) {
            Some(property) => {
                let len = push_segment(path, key);
                validate_node(&property.node, child, path, issues);
                path.truncate(len);
            }
            None if rules.additional_properties => {}
            None => issues.push(issue(
                path,
                format!(
                    "unknown property `{}` (the schema does not allow additional properties)",
                    quote_str(key)
                ),
            )),
        }
    }
    for (name, property) in &rules.properties {
        if property.required && !map.contains_key(name) {
            issues.push(issue(
                path,
                format!("missing required property `{}`", quote_str(name)),
            ));
        }
    }
}

/// JSON equality as the original compares literals: numbers by value (`1` equals `1.0`), objects
/// regardless of key order. Callers bound the depth of both sides.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|other| json_eq(v, other)))
        }
        _ => a == b,
    }
}

fn number_eq(x: &Number, y: &Number) -> bool {
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => x == y,
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering values in messages
// ---------------------------------------------------------------------------------------------

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// A value described by kind and content: "number `3`", "string `abc`", "an object".
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "`null`".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) if s.is_empty() => "an empty string".to_owned(),
        Value::String(s) => format!("string `{}`", quote_str(s)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// A value found where a `const` or `enum` member was expected: bare ("`c`") when some member
/// has the same JSON type, otherwise described by kind ("string `true`", "an object").
fn describe_found(value: &Value, members: &[Value]) -> String {
    let same_kind = members
        .iter()
        .any(|m| std::mem::discriminant(m) == std::mem::discriminant(value));
    if same_kind {
        format!("`{}`", render_literal(value))
    } else {
        describe(value)
    }
}

/// A `const` / `enum` member as written in a message: strings bare, everything else as JSON.
fn render_literal(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "\"\"".to_owned(),
        Value::String(s) => quote_str(s),
        other => truncate(&other.to_string()),
    }
}

fn render_members(members: &[Value]) -> String {
    let mut rendered: Vec<String> = members
        .iter()
        .take(MAX_LISTED_MEMBERS)
        .map(|m| format!("`{}`", render_literal(m)))
        .collect();
    if members.len() > MAX_LISTED_MEMBERS {
        rendered.push(format!("and {} more", members.len() - MAX_LISTED_MEMBERS));
    }
    rendered.join(", ")
}

/// User text made safe for a one-line, backtick-quoted message: control characters escaped,
/// cut short after [`MAX_QUOTED_CHARS`] characters.
fn quote_str(s: &str) -> String {
    let mut escaped = String::new();
    for c in s.chars().take(MAX_QUOTED_CHARS + 1) {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    truncate(&escaped)
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_QUOTED_CHARS {
        s.to_owned()
    } else {
        let mut cut: String = s.chars().take(MAX_QUOTED_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}
