//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Everything LumenFlow hashes or signs (manifests, task specs, evidence records) is hashed as the
//! canonical JSON text of the value, never as whatever bytes a serializer happened to produce. Two
//! implementations (this crate, the original TypeScript LumenFlow, a third-party verifier) agree on
//! a digest only if they agree on those bytes byte for byte, so the rules are the published ones of
//! RFC 8785 rather than anything of our own:
//!
//! - no whitespace between tokens;
//! - object members sorted by the UTF-16 code units of their names (not by UTF-8 bytes, which
//!   differ for names mixing astral characters with U+E000..U+FFFF);
//! - every number is an IEEE 754 double written as ECMAScript `Number.prototype.toString` does
//!   (`ryu-js` implements exactly that), so integers beyond 2^53 lose precision by design;
//! - strings escape only `"`, `\` and U+0000..U+001F, everything else is raw UTF-8;
//! - NaN and Infinity have no JSON form and are errors, as are duplicate member names and lone
//!   surrogates when the input is JSON text.
//!
//! The writer recurses once per nesting level. Parsed input is bounded by `serde_json`'s recursion
//! limit (128 levels); a [`Value`] built in code is trusted to be of reasonable depth, as it is for
//! `serde_json`'s own serializer.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize};
use serde_json::{Map, Number, Value};

use crate::digest::sha256_hex;

/// Why a value or a JSON text could not be canonicalized.
#[derive(Debug)]
#[non_exhaustive]
pub enum CanonicalJsonError {
    /// The text is not JSON (syntax error, trailing characters, a lone surrogate in a `\u` escape,
    /// a number out of the `f64` range, nesting deeper than 128 levels).
    InvalidJson(serde_json::Error),
    /// An object names the same member twice (RFC 8785 §3.1 requires I-JSON, which forbids it).
    /// `line` and `column` are 1-based and point just past the repeated name.
    DuplicateKey {
        /// The repeated member name, unescaped.
        key: String,
        /// Line of the repeated name.
        line: usize,
        /// Column just past the repeated name.
        column: usize,
    },
    /// A NaN or infinite float, which JSON cannot express (RFC 8785 §3.2.2.3).
    NonFiniteNumber,
    /// The value's `Serialize` implementation failed, or produced something that is not JSON
    /// (for example a map whose keys are not strings).
    Serialize(String),
}

impl fmt::Display for CanonicalJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJson(err) => write!(f, "invalid json: {err}"),
            Self::DuplicateKey { key, line, column } => write!(
                f,
                "duplicate key `{}` in object at line {line} column {column}",
                key.escape_debug()
            ),
            Self::NonFiniteNumber => {
                f.write_str("non-finite number (nan or infinity) has no canonical json form")
            }
            Self::Serialize(message) => write!(f, "cannot serialize value to json: {message}"),
        }
    }
}

impl std::error::Error for CanonicalJsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidJson(err) => Some(err),
            _ => None,
        }
    }
}

/// Canonical JSON text (RFC 8785) of a serde_json value.
///
/// A [`Value`] cannot hold NaN or Infinity, so this cannot fail. (Only with serde_json's
/// `arbitrary_precision` feature could a number overflow `f64`; it is then written as `null`, as
/// ECMAScript's `JSON.stringify` does. Use [`canonicalize`] to get an error instead.)
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, NonFinite::WriteNull);
    out
}

/// [`to_canonical_string`] appended to an existing buffer, so a caller encoding many values can
/// reuse one allocation.
pub fn write_canonical(out: &mut String, value: &Value) {
    write_value(out, value, NonFinite::WriteNull);
}

/// The canonical JSON text (RFC 8785) of a string, quoted and escaped, appended to `out`: the same
/// bytes as `to_canonical_string(&Value::from(text))` without building a [`Value`].
pub fn write_canonical_str(out: &mut String, text: &str) {
    write_string(out, text);
}

/// The canonical JSON text of an object given as its map, appended to `out`: the same bytes as
/// [`write_canonical`] of `Value::Object(map.clone())`, without the clone.
pub fn write_canonical_object(out: &mut String, map: &Map<String, Value>) {
    write_object(out, map, NonFinite::WriteNull);
}

/// RFC 8785 member order (§3.2.3): by the UTF-16 code units of the names. Where two names first
/// differ in an ASCII byte, that byte decides (UTF-8 and UTF-16 agree on it), so the common
/// case never re-encodes either name.
pub fn utf16_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    match x.iter().zip(y).position(|(p, q)| p != q) {
        // One is a prefix of the other (or they are equal): the shorter comes first, in any
        // encoding.
        None => x.len().cmp(&y.len()),
        Some(i) if x[i] < 0x80 && y[i] < 0x80 => x[i].cmp(&y[i]),
        Some(_) => a.encode_utf16().cmp(b.encode_utf16()),
    }
}

/// [`to_canonical_string`] as UTF-8 bytes, the form that is hashed or signed.
pub fn to_canonical_vec(value: &Value) -> Vec<u8> {
    to_canonical_string(value).into_bytes()
}

/// Serialize any `T: Serialize` to a [`Value`], then canonicalize.
///
/// Errors only if serialization fails or produces a non-finite float (which `serde_json` would
/// otherwise silently turn into `null`).
pub fn canonicalize<T: Serialize + ?Sized>(value: &T) -> Result<String, CanonicalJsonError> {
    value.serialize(FiniteProbe).map_err(|err| match err {
        ProbeError::NonFinite => CanonicalJsonError::NonFiniteNumber,
        ProbeError::Custom(message) => CanonicalJsonError::Serialize(message),
    })?;
    let value = serde_json::to_value(value)
        .map_err(|err| CanonicalJsonError::Serialize(err.to_string()))?;
    let mut out = String::new();
    if write_value(&mut out, &value, NonFinite::Fail) {
        Ok(out)
    } else {
        Err(CanonicalJsonError::NonFiniteNumber)
    }
}

/// Parse JSON text strictly and return its canonical form.
///
/// Strict means: duplicate member names are an error naming the key (RFC 8785 §3.1), and so are
/// lone surrogates in `\u` escapes (§3.2.2.2), trailing characters and numbers that overflow `f64`.
pub fn canonicalize_str(json: &str) -> Result<String, CanonicalJsonError> {
    let value = parse_strict(json)?;
    let mut out = String::new();
    if write_value(&mut out, &value, NonFinite::Fail) {
        Ok(out)
    } else {
        Err(CanonicalJsonError::NonFiniteNumber)
    }
}

/// Lowercase hex SHA-256 of the canonical bytes (no prefix).
pub fn canonical_hash(value: &Value) -> String {
    sha256_hex(to_canonical_string(value).as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Writer

/// What the writer does with a number that has no finite `f64` value.
#[derive(Clone, Copy)]
enum NonFinite {
    WriteNull,
    Fail,
}

/// Appends the canonical form of `value` to `out`. Returns `false` (leaving `out` partial) only
/// in [`NonFinite::Fail`] mode on a number that is not a finite `f64`.
fn write_value(out: &mut String, value: &Value, non_finite: NonFinite) -> bool {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => return write_number(out, number, non_finite),
        Value::String(string) => write_string(out, string),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                if !write_value(out, item, non_finite) {
                    return false;
                }
            }
            out.push(']');
        }
        Value::Object(members) => return write_object(out, members, non_finite),
    }
    true
}

fn write_object(out: &mut String, members: &Map<String, Value>, non_finite: NonFinite) -> bool {
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| utf16_key_order(a, b));
    out.push('{');
    for (index, (name, member)) in sorted.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        if !write_value(out, member, non_finite) {
            return false;
        }
    }
    out.push('}');
    true
}

/// Every JSON number is an IEEE 754 double (RFC 8785 §3.2.2.3): integers held as `i64`/`u64` are
/// rounded to the nearest double first, then everything is written by ECMAScript's rules.
fn write_number(out: &mut String, number: &Number, non_finite: NonFinite) -> bool {
    match number.as_f64().filter(|float| float.is_finite()) {
        Some(float) => {
            let mut buffer = ryu_js::Buffer::new();
            out.push_str(buffer.format_finite(float));
            true
        }
        None => match non_finite {
            NonFinite::WriteNull => {
                out.push_str("null");
                true
            }
            NonFinite::Fail => false,
        },
    }
}

/// RFC 8785 §3.2.2.2: escape `"`, `\` and U+0000..U+001F (with the five short forms), nothing
/// else.
fn write_string(out: &mut String, string: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut run_start = 0;
    for (index, byte) in string.bytes().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `index` is always a char boundary.
        out.push_str(&string[run_start..index]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        } else {
            out.push_str(escape);
        }
        run_start = index + 1;
    }
    out.push_str(&string[run_start..]);
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Strict parser: serde_json tokenizes, this seed builds the `Value` and refuses duplicate names.

fn parse_strict(json: &str) -> Result<Value, CanonicalJsonError> {
    let duplicate = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let parsed = StrictValue {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|err| match duplicate.take() {
        Some(key) => CanonicalJsonError::DuplicateKey {
            key,
            line: err.line(),
            column: err.column(),
        },
        None => CanonicalJsonError::InvalidJson(err),
    })
}

/// Seed for one JSON value. A repeated member name is reported through `duplicate` (the serde
/// error only carries a message; the caller wants the key and serde_json's position).
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    duplicate: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                let message = format!("duplicate key `{}`", key.escape_debug());
                self.duplicate.set(Some(key));
                return Err(de::Error::custom(message));
            }
            let member = map.next_value_seed(self)?;
            members.insert(key, member);
        }
        Ok(Value::Object(members))
    }
}

// ---------------------------------------------------------------------------------------------
// Non-finite probe: `serde_json::to_value` maps NaN and Infinity to `null` without a word, so
// `canonicalize` first walks the value with this serializer, which only looks at floats.

#[derive(Debug)]
enum ProbeError {
    NonFinite,
    Custom(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonFinite => f.write_str("non-finite number"),
            Self::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ProbeError {}

impl ser::Error for ProbeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Custom(message.to_string())
    }
}

#[derive(Clone, Copy)]
struct FiniteProbe;

impl FiniteProbe {
    fn check(value: f64) -> Result<(), ProbeError> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(ProbeError::NonFinite)
        }
    }
}

impl ser::Serializer for FiniteProbe {
    type Ok = ();
    type Error = ProbeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_f32(self, value: f32) -> Result<(), ProbeError> {
        Self::check(f64::from(value))
    }
    fn serialize_f64(self, value: f64) -> Result<(), ProbeError> {
        Self::check(value)
    }
    fn serialize_char(self, _: char) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), ProbeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, ProbeError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, ProbeError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, ProbeError> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, ProbeError> {
        Ok(self)
    }
}

impl ser::SerializeSeq for FiniteProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl ser::SerializeTuple for FiniteProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for FiniteProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for FiniteProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl ser::SerializeMap for FiniteProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ProbeError> {
        key.serialize(*self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl ser::SerializeStruct for FiniteProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for FiniteProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        value.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // KRN-15: the five short escapes, lowercase \u00XX for the other controls, nothing else.
    #[test]
    fn escapes_only_quote_backslash_and_c0_controls() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        let expected = concat!(
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007",
            "\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f",
            "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017",
            "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
        );
        assert_eq!(to_canonical_string(&json!(all_controls)), expected);
        let raw = "\"\\/\u{7f}\u{80}\u{2028}\u{2029}é€😀<>&'";
        assert_eq!(
            to_canonical_string(&json!(raw)),
            "\"\\\"\\\\/\u{7f}\u{80}\u{2028}\u{2029}é€😀<>&'\""
        );
    }

    // KRN-15: names are ordered by UTF-16 code units. U+FB33 (one unit 0xFB33) sorts after
    // U+1F600 (units 0xD83D 0xDE00) although its UTF-8 bytes sort first.
    #[test]
    fn sorts_by_utf16_code_units_not_bytes() {
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2, "\u{e000}": 3, "a": 4});
        assert_eq!(
            to_canonical_string(&value),
            "{\"a\":4,\"\u{1f600}\":2,\"\u{e000}\":3,\"\u{fb33}\":1}"
        );
    }

    // KRN-15: integers are doubles; -0 is 0; large integers lose precision as in ECMAScript.
    #[test]
    fn integers_are_written_as_doubles() {
        assert_eq!(to_canonical_string(&json!(-0.0)), "0");
        assert_eq!(to_canonical_string(&json!(56.0)), "56");
        assert_eq!(
            to_canonical_string(&json!(u64::MAX)),
            "18446744073709552000"
        );
        assert_eq!(
            to_canonical_string(&json!(i64::MIN)),
            "-9223372036854776000"
        );
        assert_eq!(
            to_canonical_string(&json!(9_007_199_254_740_993_u64)),
            "9007199254740992"
        );
        assert_eq!(to_canonical_string(&json!(1e21)), "1e+21");
        assert_eq!(to_canonical_string(&json!(1e20)), "100000000000000000000");
        assert_eq!(to_canonical_string(&json!(1e-7)), "1e-7");
        assert_eq!(to_canonical_string(&json!(1e-6)), "0.000001");
    }

    // KRN-15: `canonicalize` refuses what serde_json would silently turn into null.
    #[test]
    fn canonicalize_rejects_non_finite_floats() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = canonicalize(&vec![1.0, value]).expect_err("must fail");
            assert!(
                matches!(err, CanonicalJsonError::NonFiniteNumber),
                "{err:?}"
            );
        }
        let err = canonicalize(&f32::NAN).expect_err("must fail");
        assert!(
            matches!(err, CanonicalJsonError::NonFiniteNumber),
            "{err:?}"
        );
        let mut map = std::collections::BTreeMap::new();
        map.insert("x", Some(f64::INFINITY));
        assert!(matches!(
            canonicalize(&map),
            Err(CanonicalJsonError::NonFiniteNumber)
        ));
        assert_eq!(
            canonicalize(&CanonicalJsonError::NonFiniteNumber.to_string()).expect("must succeed"),
            "\"non-finite number (nan or infinity) has no canonical json form\""
        );
    }

    // KRN-15: canonicalize on a derived struct agrees with to_canonical_string on its Value.
    #[test]
    fn canonicalize_serializes_structs() {
        #[derive(serde::Serialize)]
        struct Task {
            zeta: u32,
            alpha: Option<f64>,
            nested: Vec<(String, bool)>,
        }
        let task = Task {
            zeta: 7,
            alpha: Some(0.5),
            nested: vec![("q".into(), true)],
        };
        assert_eq!(
            canonicalize(&task).expect("must succeed"),
            r#"{"alpha":0.5,"nested":[["q",true]],"zeta":7}"#
        );
    }

    // KRN-15: a Serialize impl that is not JSON-shaped is an error, not a panic.
    #[test]
    fn canonicalize_reports_serialization_failures() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        let err = canonicalize(&map).expect_err("must fail");
        assert!(matches!(err, CanonicalJsonError::Serialize(_)), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("cannot serialize value to json: "));
    }

    // KRN-15: strict parsing errors carry the key and a position; they are never panics.
    #[test]
    fn strict_parse_errors() {
        let err = canonicalize_str("{\n  \"b\": 1,\n  \"a\": {\"x\": 1, \"x\": 2}\n}")
            .expect_err("must fail");
        match &err {
            CanonicalJsonError::DuplicateKey { key, line, .. } => {
                assert_eq!(key, "x");
                assert_eq!(*line, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err
            .to_string()
            .starts_with("duplicate key `x` in object at line 3 column "));

        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1} x",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "1e400",
            "NaN",
            "[Infinity]",
            "'a'",
        ] {
            let err = canonicalize_str(bad).expect_err("must fail");
            assert!(
                matches!(err, CanonicalJsonError::InvalidJson(_)),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().starts_with("invalid json: "), "{err}");
        }
        let deep = "[".repeat(100_000);
        assert!(canonicalize_str(&deep).is_err());
    }
}
