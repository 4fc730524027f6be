//! YAML 1.2 documents with source spans.
//!
//! Every file the kernel reads from a user (`manifest.yaml`, `workspace.yaml`, authoring spec
//! files) goes through this module, so that every error can point at the byte range, line and
//! field that caused it. The reader follows the YAML 1.2 core schema, as the original LumenFlow
//! did: `yes` stays a string, timestamps stay strings, `<<` is an ordinary key, and a duplicate
//! key is an error rather than a silent overwrite.
//!
//! Parsing is two steps: [`parse`] builds a [`Node`] tree that remembers where everything came
//! from, then [`de::from_node`] turns it into typed structs through serde, tracking the field path
//! so that a type error or an unknown key names `tools[0].permission` and points at it.

pub mod de;
pub mod edit;
pub mod emit;
mod path;
mod reader;

pub use path::{FieldPath, Seg};
pub use reader::{parse, YamlError};

use serde_json::Value;

/// A byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// How a scalar was written; edits keep quoted strings quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    Quoted,
    Block,
}

/// How a collection was written: block (indented lines) or flow (`[a, b]`, `{a: 1}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionStyle {
    Block,
    Flow,
}

/// One node of a parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String, ScalarStyle),
    Seq(Vec<Node>, CollectionStyle),
    Map(Vec<Entry>, CollectionStyle),
}

/// A mapping entry. Keys are scalars, kept as the string they read as (JSON object semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    /// Short description of the node's type for error messages ("a string", "a mapping", ...).
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "null".to_string(),
            NodeKind::Bool(b) => format!("boolean `{b}`"),
            NodeKind::Int(i) => format!("integer `{i}`"),
            NodeKind::Float(f) => format!("number `{f:?}`"),
            NodeKind::Str(s, _) => format!("string `{s}`"),
            NodeKind::Seq(..) => "a list".to_string(),
            NodeKind::Map(..) => "a mapping".to_string(),
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(entries, _) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items, _) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s, _) => Some(s),
            _ => None,
        }
    }

    /// The entry for `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The JSON value this node stands for. Non-finite floats become `null`, as `JSON.stringify`
    /// does in the original.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeKind::Str(s, _) => Value::String(s.clone()),
            NodeKind::Seq(items, _) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries, _) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// The node at `path`, if every segment exists.
    pub fn at(&self, path: &[Seg]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match seg {
                Seg::Key(k) => node.get(k)?,
                Seg::Index(i) => node.as_seq()?.get(*i)?,
            };
        }
        Some(node)
    }

    /// The best span to underline for a diagnostic about `path`: the deepest node that exists on
    /// the way. A collection is pointed at through the key that holds it, so the label sits on one
    /// line instead of spanning the whole block. With `at_key`, the key itself is underlined.
    pub fn locate(&self, path: &[Seg], at_key: bool) -> Span {
        let mut node = self;
        let mut holder_key: Option<Span> = None;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match seg {
                Seg::Key(k) => match node.entry(k) {
                    Some(entry) => {
                        if last && at_key {
                            return entry.key_span;
                        }
                        holder_key = Some(entry.key_span);
                        node = &entry.value;
                    }
                    None => return holder_key.unwrap_or_else(|| first_line(node)),
                },
                Seg::Index(idx) => match node.as_seq().and_then(|items| items.get(*idx)) {
                    Some(item) => {
                        holder_key = None;
                        node = item;
                    }
                    None => return holder_key.unwrap_or_else(|| first_line(node)),
                },
            }
        }
        match node.kind {
            NodeKind::Map(..) | NodeKind::Seq(..) => holder_key.unwrap_or_else(|| first_line(node)),
            _ => node.span,
        }
    }
}

/// A one-line span at the start of a collection: its first key, or its first item.
fn first_line(node: &Node) -> Span {
    match &node.kind {
        NodeKind::Map(entries, _) => entries
            .first()
            .map(|e| e.key_span)
            .unwrap_or(Span::new(node.span.start, node.span.start)),
        NodeKind::Seq(items, _) => items
            .first()
            .map(first_line)
            .unwrap_or(Span::new(node.span.start, node.span.start)),
        _ => node.span,
    }
}

/// Parse YAML text into a JSON value (YAML 1.2 core schema).
pub fn parse_value(text: &str) -> Result<Value, YamlError> {
    parse(text).map(|node| node.to_json())
}
