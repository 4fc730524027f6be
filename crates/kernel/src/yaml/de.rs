//! serde over a [`Node`] tree, keeping track of where every value came from.
//!
//! Errors carry the field path (`tools[0].permission`) and whether they are about a key (an
//! unknown field) or a value, so the caller can underline the right bytes. Unknown keys and enum
//! values come with a did-you-mean. Types are not coerced: `version: 1.0` is a number, not the
//! string `"1.0"`, and the error says so.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use super::{FieldPath, Node, NodeKind};

/// A deserialization error with the path of the field it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub path: Option<FieldPath>,
    /// The error is about the key at `path` (unknown field), not its value.
    pub at_key: bool,
    pub message: String,
    pub help: Option<String>,
}

impl DeError {
    fn located(mut self, path: &FieldPath, at_key: bool) -> Self {
        if self.path.is_none() {
            self.path = Some(path.clone());
            self.at_key = at_key;
        }
        self
    }

    fn with_help(mut self, help: String) -> Self {
        self.help = Some(help);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) if !path.is_root() => write!(f, "`{path}`: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            path: None,
            at_key: false,
            message: msg.to_string(),
            help: None,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let expected = exp.to_string();
        let found = unexpected(&unexp);
        let err = Self::custom(format!("expected {expected}, found {found}"));
        let numeric = matches!(
            unexp,
            de::Unexpected::Float(_) | de::Unexpected::Signed(_) | de::Unexpected::Unsigned(_)
        );
        if numeric && expected.contains("string") {
            err.with_help(
                "quote the value (for example `\"1.0\"`) so YAML reads it as a string".into(),
            )
        } else {
            err
        }
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!(
            "invalid value {}, expected {exp}",
            unexpected(&unexp)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let err = Self::custom(format!("unknown field `{field}`"));
        err.with_help(suggest(field, expected, "fields"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let err = Self::custom(format!("unknown value `{variant}`"));
        err.with_help(suggest(variant, expected, "values"))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("missing required field `{field}`"))
    }
}

fn unexpected(unexp: &de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Str(s) => format!("string `{s}`"),
        de::Unexpected::Signed(i) => format!("integer `{i}`"),
        de::Unexpected::Unsigned(u) => format!("integer `{u}`"),
        de::Unexpected::Float(f) => format!("number `{f:?}`"),
        de::Unexpected::Bool(b) => format!("boolean `{b}`"),
        de::Unexpected::Unit => "null".to_string(),
        de::Unexpected::Seq => "a list".to_string(),
        de::Unexpected::Map => "a mapping".to_string(),
        other => other.to_string(),
    }
}

/// "did you mean `x`?" when a known name is close, then the full list.
pub fn suggest(given: &str, known: &[&str], noun: &str) -> String {
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(given, known.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? valid {noun}: {list}"),
        None if known.is_empty() => format!("no {noun} are accepted here"),
        None => format!("valid {noun}: {list}"),
    }
}

/// The known name closest to `given`, if it is close enough to be a plausible typo.
pub fn closest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for candidate in known {
        let score = strsim::jaro_winkler(&given.to_lowercase(), &candidate.to_lowercase());
        if score >= 0.8 && best.is_none_or(|(_, s)| score > s) {
            best = Some((candidate, score));
        }
    }
    best.map(|(c, _)| c)
}

/// Deserialize a typed value from a node; errors name the field path.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: FieldPath::root(),
    })
}

struct NodeDe<'a> {
    node: &'a Node,
    path: FieldPath,
}

impl<'a> NodeDe<'a> {
    fn fail<T>(&self, err: DeError) -> Result<T, DeError> {
        Err(err.located(&self.path, false))
    }

    fn locate<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|e| e.located(&self.path, false))
    }

    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.kind {
            NodeKind::Null => de::Unexpected::Unit,
            NodeKind::Bool(b) => de::Unexpected::Bool(*b),
            NodeKind::Int(i) => de::Unexpected::Signed(*i),
            NodeKind::Float(f) => de::Unexpected::Float(*f),
            NodeKind::Str(s, _) => de::Unexpected::Str(s),
            NodeKind::Seq(..) => de::Unexpected::Seq,
            NodeKind::Map(..) => de::Unexpected::Map,
        }
    }

    fn type_error<V: Visitor<'a>>(&self, visitor: &V) -> DeError {
        <DeError as de::Error>::invalid_type(self.unexpected(), visitor)
    }
}

macro_rules! forward_to_any {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(i) => visitor.visit_i64(*i),
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Str(s, _) => visitor.visit_borrowed_str(s),
            NodeKind::Seq(items, _) => visitor.visit_seq(Items {
                items: items.iter(),
                index: 0,
                path: &self.path,
            }),
            NodeKind::Map(entries, _) => visitor.visit_map(Entries {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        self.locate(result)
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_i128 deserialize_u128
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Str(s, _) => {
                let r = visitor.visit_borrowed_str(s);
                self.locate(r)
            }
            _ => {
                let err = self.type_error(&visitor);
                self.fail(err)
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Null => {
                let r = visitor.visit_none();
                self.locate(r)
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Seq(..) => self.deserialize_any(visitor),
            _ => {
                let err = self.type_error(&visitor);
                self.fail(err)
            }
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Map(..) => self.deserialize_any(visitor),
            _ => {
                let err = self.type_error(&visitor);
                self.fail(err)
            }
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Str(s, _) => {
                let r = visitor.visit_enum(s.as_str().into_deserializer());
                self.locate(r)
            }
            _ => {
                let err = self.type_error(&visitor);
                self.fail(err)
            }
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct Items<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p FieldPath,
}

impl<'de> SeqAccess<'de> for Items<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = self.path.index(self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a, 'p> {
    entries: std::slice::Iter<'a, super::Entry>,
    value: Option<&'a super::Entry>,
    path: &'p FieldPath,
}

impl<'de> MapAccess<'de> for Entries<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key_path = self.path.key(entry.key.clone());
        seed.deserialize(KeyDe { key: &entry.key })
            .map(Some)
            .map_err(|e| e.located(&key_path, true))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(entry) = self.value.take() else {
            return Err(<DeError as de::Error>::custom(
                "mapping value requested before its key",
            ));
        };
        seed.deserialize(NodeDe {
            node: &entry.value,
            path: self.path.key(entry.key.clone()),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Keys are always strings (JSON object semantics), whatever scalar they were written as.
struct KeyDe<'a> {
    key: &'a str,
}

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.key)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(self.key.into_deserializer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Tool {
        name: String,
        #[serde(default)]
        permission: Option<Perm>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Perm {
        Read,
        Write,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        version: String,
        tools: Vec<Tool>,
    }

    fn de(text: &str) -> Result<Doc, DeError> {
        from_node(&parse(text).expect("valid yaml"))
    }

    #[test]
    fn reads_typed_values() {
        let doc = de("version: 1.0.0\ntools:\n  - name: a\n    permission: write\n").expect("ok");
        assert_eq!(doc.tools[0].permission, Some(Perm::Write));
    }

    #[test]
    fn unknown_field_points_at_the_key_with_a_suggestion() {
        let err =
            de("version: 1.0.0\ntools:\n  - name: a\n    permision: read\n").expect_err("unknown");
        assert_eq!(
            err.path.as_ref().map(|p| p.to_string()).as_deref(),
            Some("tools[0].permision")
        );
        assert!(err.at_key);
        assert_eq!(err.message, "unknown field `permision`");
        assert!(err
            .help
            .as_deref()
            .unwrap_or("")
            .starts_with("did you mean `permission`?"));
    }

    #[test]
    fn wrong_types_name_the_field_and_suggest_quoting() {
        let err = de("version: 1.0\ntools: []\n").expect_err("number");
        assert_eq!(
            err.to_string(),
            "`version`: expected a string, found number `1.0`"
        );
        assert!(err.help.is_some());
        let err = de("version: x\ntools:\n  - name: a\n    tags: [1]\n").expect_err("int");
        assert_eq!(
            err.path.map(|p| p.to_string()).as_deref(),
            Some("tools[0].tags[0]")
        );
    }

    #[test]
    fn bad_enum_values_and_missing_fields() {
        let err =
            de("version: x\ntools:\n  - name: a\n    permission: wrtie\n").expect_err("variant");
        assert_eq!(err.message, "unknown value `wrtie`");
        assert!(err
            .help
            .as_deref()
            .unwrap_or("")
            .contains("did you mean `write`?"));
        let err = de("version: x\ntools:\n  - permission: read\n").expect_err("missing");
        assert_eq!(err.to_string(), "`tools[0]`: missing required field `name`");
        let err = de("- a\n").expect_err("not a map");
        assert!(
            err.message.starts_with("expected struct Doc, found a list"),
            "{}",
            err.message
        );
    }
}
