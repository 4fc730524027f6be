//! YAML text for JSON-shaped values: the one place the kernel *writes* YAML.
//!
//! Why it exists: `pack author` generates `manifest.yaml`, and other commands rewrite
//! `workspace.yaml` or change one value in place. People read and edit those files, and other
//! readers must get the same data back: our own YAML 1.2 reader, the original TypeScript runtime's
//! `yaml` package (YAML 1.2 core schema) and, for safety, YAML 1.1 readers such as PyYAML. The
//! values are always JSON-shaped (`serde_json::Value`), so a small, predictable emitter is enough.
//!
//! The style is fixed, so output is deterministic and diffs stay small:
//! - block mappings and block sequences, 2-space indentation, a sequence under a mapping key
//!   indented beneath it (`key:\n  - a`), a mapping inside a sequence starting on the dash line
//!   (`- name: x\n  entry: y`);
//! - empty containers inline (`[]`, `{}`); keys in the value's own order (serde_json is built with
//!   `preserve_order`); a trailing newline;
//! - a key longer than [`MAX_IMPLICIT_KEY_CHARS`] uses the explicit `? key` form, because YAML caps
//!   implicit keys at 1024 characters.
//!
//! Scalars are written plain whenever a reader gets the same value back, and quoted otherwise:
//! - strings with a character that needs an escape (control characters, line breaks including
//!   U+0085/U+2028/U+2029, a byte-order mark, non-printable characters) are double-quoted with
//!   JSON-style escapes, so the quoted text is also a valid JSON string;
//! - other strings that would not read back as themselves are single-quoted (`'` doubled): empty
//!   strings; YAML 1.2 core-schema nulls, booleans, integers and floats; YAML 1.1 booleans
//!   (`yes`, `no`, `on`, `off`, `y`, `n` in any case), YAML 1.1 numbers (`1_000`, `0b101`, `1:30`)
//!   and timestamps (`2024-01-31`) for readers that still use 1.1 rules, and the merge/value keys
//!   `<<` and `=`; strings starting or ending with whitespace; strings starting with an indicator
//!   (`-?:,[]{}#&*!|>'"%@` or a backtick; `-` followed by a non-space character such as `-foo` stays
//!   plain) or with a document marker (`---`, `...`); strings containing `: ` or ` #` or ending
//!   with `:`;
//! - integers as they are; floats in their shortest round-trip form, always with a `.` in the
//!   mantissa and a signed exponent when there is one (`1.0`, `0.5`, `1.0e+300`), so that YAML 1.1
//!   readers, which need both, also read a float.
//!
//! Keys follow the same rules as string values.

use serde_json::{Map, Number, Value};
use std::sync::LazyLock;

/// Keys whose written form is longer than this use the explicit `? key` syntax (YAML limits
/// implicit keys to 1024 characters including the separator; this leaves room).
pub const MAX_IMPLICIT_KEY_CHARS: usize = 1000;

/// Block-style YAML for a JSON value: 2-space indentation, sequences of a mapping key indented under
/// it (`key:\n  - a`), empty containers inline (`[]`, `{}`), keys in the value's order (serde_json
/// uses preserve_order), a trailing newline. Scalars are quoted exactly when a YAML 1.2 core-schema
/// reader would otherwise read them as something else or fail (plus the YAML 1.1 look-alikes listed
/// in the module docs).
pub fn to_yaml_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_mapping(&mut out, map, 0, ""),
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0, ""),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

/// One scalar as it would appear inline (used for in-place edits): `a`, `'1.0'`, `30`, `true`,
/// `null`, `'x: y'`, `"line\nbreak"`. `None` for arrays and objects.
pub fn scalar_to_yaml(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("null".to_owned()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.to_owned()),
        Value::Number(n) => Some(number_text(n)),
        Value::String(s) => Some(string_text(s)),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// A scalar, or an empty container in flow form. Only called for values that are not non-empty
/// containers.
fn inline(value: &Value) -> String {
    match value {
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
        scalar => scalar_to_yaml(scalar).unwrap_or_default(),
    }
}

/// True for values written as an indented block on the following lines.
fn is_block(value: &Value) -> bool {
    match value {
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        _ => false,
    }
}

/// Writes a non-empty mapping whose lines start at `indent`; the first line starts with `lead`
/// instead when `lead` is not empty (a sequence item's `"  - "`), which has the same width.
fn write_mapping(out: &mut String, map: &Map<String, Value>, indent: usize, lead: &str) {
    let pad = " ".repeat(indent);
    for (i, (key, value)) in map.iter().enumerate() {
        out.push_str(if i == 0 && !lead.is_empty() {
            lead
        } else {
            &pad
        });
        let key_text = string_text(key);
        if key_text.chars().count() > MAX_IMPLICIT_KEY_CHARS {
            out.push_str("? ");
            out.push_str(&key_text);
            out.push('\n');
            out.push_str(&pad);
            out.push(':');
        } else {
            out.push_str(&key_text);
            out.push(':');
        }
        write_value_after_indicator(out, value, indent + 2);
    }
}

/// Writes a non-empty sequence; see [`write_mapping`] for `lead`.
fn write_sequence(out: &mut String, items: &[Value], indent: usize, lead: &str) {
    let pad = " ".repeat(indent);
    for (i, item) in items.iter().enumerate() {
        let line_start = if i == 0 && !lead.is_empty() {
            lead
        } else {
            &pad
        };
        if is_block(item) {
            // The nested block starts on the dash line: `- key: v` or `- - a`.
            let item_lead = format!("{line_start}- ");
            write_block(out, item, indent + 2, &item_lead);
        } else {
            out.push_str(line_start);
            out.push_str("- ");
            out.push_str(&inline(item));
            out.push('\n');
        }
    }
}

/// After `key:` (or an explicit `:`): a scalar on the same line, or a block on the next lines.
fn write_value_after_indicator(out: &mut String, value: &Value, child_indent: usize) {
    if is_block(value) {
        out.push('\n');
        write_block(out, value, child_indent, "");
    } else {
        out.push(' ');
        out.push_str(&inline(value));
        out.push('\n');
    }
}

fn write_block(out: &mut String, value: &Value, indent: usize, lead: &str) {
    match value {
        Value::Object(map) => write_mapping(out, map, indent, lead),
        Value::Array(items) => write_sequence(out, items, indent, lead),
        _ => {}
    }
}

/// Integers as they are; floats in shortest round-trip form with a `.` in the mantissa and a
/// signed exponent when one is used.
fn number_text(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let magnitude = f.abs();
    if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
        // `Display` for f64 is the shortest text that reads back as the same value.
        let text = f.to_string();
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        // `LowerExp` is also shortest round-trip: `1e300`, `1.5e-7`.
        let text = format!("{f:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_owned()
        } else {
            format!("{mantissa}.0")
        };
        let exponent = if exponent.starts_with('-') {
            exponent.to_owned()
        } else {
            format!("+{exponent}")
        };
        format!("{mantissa}e{exponent}")
    }
}

/// A string as a plain, single-quoted or double-quoted scalar.
fn string_text(s: &str) -> String {
    if s.chars().any(needs_escape) {
        double_quoted(s)
    } else if needs_quotes(s) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        s.to_owned()
    }
}

/// YAML's printable set (`c-printable`).
fn is_printable(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{85}' | '\u{a0}'..='\u{d7ff}'
        | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
}

/// Characters that only a double-quoted scalar can carry: everything non-printable, tabs and line
/// breaks (including the YAML 1.1 ones), and the byte-order mark.
fn needs_escape(c: char) -> bool {
    !is_printable(c)
        || matches!(
            c,
            '\t' | '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
        )
}

/// Double-quoted with JSON-style escapes (the result is also a valid JSON string literal).
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if needs_escape(c) => {
                // Every character that needs an escape is in the BMP (all astral characters are
                // printable), so one `\uXXXX` is enough.
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

type Pattern = LazyLock<Result<regex::Regex, regex::Error>>;

/// Matches `text` against a compiled pattern; a pattern that failed to compile (a bug caught by
/// the unit tests) matches everything, so the emitter errs on the side of quoting.
fn matches(pattern: &Pattern, text: &str) -> bool {
    pattern.as_ref().map_or(true, |re| re.is_match(text))
}

/// Plain scalars that a YAML 1.2 core-schema reader resolves to null, bool, int or float.
static CORE_SCHEMA_NON_STRING: Pattern = LazyLock::new(|| {
    regex::Regex::new(concat!(
        r"^(?:~|null|Null|NULL",
        r"|true|True|TRUE|false|False|FALSE",
        r"|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+",
        r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?",
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ))
});

/// Plain scalars that YAML 1.1 readers resolve to something other than a string: booleans in any
/// case, binary/octal/hex/sexagesimal/underscored numbers, timestamps, and the merge and value keys.
static YAML11_NON_STRING: Pattern = LazyLock::new(|| {
    regex::Regex::new(concat!(
        r"^(?:(?i:y|yes|n|no|on|off|true|false)",
        r"|[-+]?0b[01_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?0[0-7_]+",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?",
        r"|[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?",
        r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?",
        r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?",
        r"|<<|=)$"
    ))
});

/// Whether a string without escape-needing characters must still be quoted to read back as itself.
fn needs_quotes(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    if first.is_whitespace() || s.chars().next_back().is_some_and(char::is_whitespace) {
        return true;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return true;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-` followed by a non-space character cannot start a sequence entry: `-foo` is plain.
        let second = s[first.len_utf8()..].chars().next();
        let plain_dash = first == '-' && second.is_some_and(|c| c != ' ');
        if !plain_dash {
            return true;
        }
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return true;
    }
    matches(&CORE_SCHEMA_NON_STRING, s) || matches(&YAML11_NON_STRING, s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        assert!(CORE_SCHEMA_NON_STRING.is_ok());
        assert!(YAML11_NON_STRING.is_ok());
    }

    #[test]
    fn floats_keep_a_fraction_and_a_signed_exponent() {
        let cases = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.5, "0.5"),
            (1e300, "1.0e+300"),
            (1.5e-7, "1.5e-7"),
            (123456.75, "123456.75"),
            (1e16, "1.0e+16"),
        ];
        for (f, expected) in cases {
            let n = Number::from_f64(f).unwrap();
            assert_eq!(number_text(&n), expected, "{f}");
        }
    }
}
