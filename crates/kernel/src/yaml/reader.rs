//! Events from `saphyr-parser` turned into a [`Node`] tree, with YAML 1.2 core-schema scalar
//! resolution and byte spans.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle as YScalarStyle, Span as YSpan, Tag};

use super::{CollectionStyle, Entry, Node, NodeKind, ScalarStyle, Span};

/// Aliases are expanded by copying; this bounds the copies so a "billion laughs" document is an
/// error, not an out-of-memory.
const MAX_NODES: usize = 1_000_000;
const MAX_DEPTH: usize = 256;

/// A YAML syntax or structure error, with where it happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub message: String,
    pub span: Span,
    /// A second place worth pointing at (the first occurrence of a duplicate key).
    pub related: Option<(Span, String)>,
}

impl YamlError {
    fn at(span: Span, message: impl Into<String>) -> Self {
        YamlError {
            message: message.into(),
            span,
            related: None,
        }
    }
}

/// Char index -> byte offset. The parser counts characters; diagnostics and edits need bytes.
struct Offsets {
    ascii: bool,
    table: Vec<usize>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Self {
        if text.is_ascii() {
            return Offsets {
                ascii: true,
                table: Vec::new(),
                len: text.len(),
            };
        }
        let mut table: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        table.push(text.len());
        Offsets {
            ascii: false,
            table,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.ascii {
            char_index.min(self.len)
        } else {
            self.table.get(char_index).copied().unwrap_or(self.len)
        }
    }

    fn span(&self, span: YSpan) -> Span {
        Span::new(self.byte(span.start.index()), self.byte(span.end.index()))
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: usize,
        style: CollectionStyle,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        pending_key: Option<(String, Span)>,
        start: usize,
        style: CollectionStyle,
        anchor: usize,
    },
}

/// Parse one YAML document. An empty document is `null`; more than one document is an error.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let offsets = Offsets::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;

    while let Some(next) = parser.next_event() {
        let (event, yspan) = next.map_err(|e| {
            let at = offsets.byte(e.marker().index());
            YamlError::at(Span::new(at, at + 1), format!("invalid YAML: {}", e.info()))
        })?;
        let span = offsets.span(yspan);
        let completed: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::at(
                        span,
                        "expected a single YAML document, found a second one (remove the `---` separator)",
                    ));
                }
                None
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or_else(|| {
                    YamlError::at(
                        span,
                        "alias refers to an anchor that is not defined before it",
                    )
                })?;
                nodes += count(&node);
                if nodes > MAX_NODES {
                    return Err(YamlError::at(
                        span,
                        "document expands to too many nodes through aliases",
                    ));
                }
                Some((Node { span, ..node }, 0))
            }
            Event::Scalar(value, style, anchor, tag) => {
                nodes += 1;
                let kind = resolve_scalar(&value, style, tag.as_deref(), span)?;
                Some((Node { kind, span }, anchor))
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", span)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError::at(span, "document is nested too deeply"));
                }
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    start: span.start,
                    style: collection_style(text, span.start, '['),
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", span)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError::at(span, "document is nested too deeply"));
                }
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    start: span.start,
                    style: collection_style(text, span.start, '{'),
                    anchor,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    start,
                    style,
                    anchor,
                }) => {
                    nodes += 1;
                    let end = collection_end(style, span, items.last().map(|n| n.span.end));
                    Some((
                        Node {
                            kind: NodeKind::Seq(items, style),
                            span: Span::new(start, end),
                        },
                        anchor,
                    ))
                }
                _ => return Err(YamlError::at(span, "unbalanced sequence end")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    start,
                    style,
                    anchor,
                    ..
                }) => {
                    nodes += 1;
                    let end = collection_end(style, span, entries.last().map(|e| e.value.span.end));
                    Some((
                        Node {
                            kind: NodeKind::Map(entries, style),
                            span: Span::new(start, end),
                        },
                        anchor,
                    ))
                }
                _ => return Err(YamlError::at(span, "unbalanced mapping end")),
            },
        };

        let Some((node, anchor)) = completed else {
            continue;
        };
        if nodes > MAX_NODES {
            return Err(YamlError::at(node.span, "document has too many nodes"));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = key_string(&node)?;
                    if let Some(first) = entries.iter().find(|e| e.key == key) {
                        return Err(YamlError {
                            message: format!("duplicate key `{key}` in mapping"),
                            span: node.span,
                            related: Some((first.key_span, "first defined here".to_string())),
                        });
                    }
                    *pending_key = Some((key, node.span));
                }
                Some((key, key_span)) => entries.push(Entry {
                    key,
                    key_span,
                    value: node,
                }),
            },
        }
    }

    Ok(root.unwrap_or(Node {
        kind: NodeKind::Null,
        span: Span::new(0, 0),
    }))
}

fn count(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Seq(items, _) => 1 + items.iter().map(count).sum::<usize>(),
        NodeKind::Map(entries, _) => 1 + entries.iter().map(|e| 1 + count(&e.value)).sum::<usize>(),
        _ => 1,
    }
}

fn collection_style(text: &str, start: usize, open: char) -> CollectionStyle {
    if text[start.min(text.len())..].starts_with(open) {
        CollectionStyle::Flow
    } else {
        CollectionStyle::Block
    }
}

/// A block collection ends where its last child ends (the parser's end event sits at the next
/// token, past comments and blank lines); a flow collection ends at its closing bracket.
fn collection_end(style: CollectionStyle, end_event: Span, last_child_end: Option<usize>) -> usize {
    match (style, last_child_end) {
        (CollectionStyle::Block, Some(end)) => end,
        // The end event starts at the closing bracket; its span runs on over trailing comments.
        (CollectionStyle::Flow, _) => end_event.start + 1,
        _ => end_event.end.max(end_event.start),
    }
}

fn key_string(node: &Node) -> Result<String, YamlError> {
    Ok(match &node.kind {
        NodeKind::Str(s, _) => s.clone(),
        NodeKind::Null => "null".to_string(),
        NodeKind::Bool(b) => b.to_string(),
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => format!("{f}"),
        NodeKind::Seq(..) | NodeKind::Map(..) => {
            return Err(YamlError::at(
                node.span,
                "mapping keys must be plain scalars, not lists or mappings",
            ))
        }
    })
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str, span: Span) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(t) if t.is_yaml_core_schema() && t.suffix == expected => Ok(()),
        Some(t) => Err(YamlError::at(span, format!("unsupported YAML tag `{t}`"))),
    }
}

fn resolve_scalar(
    value: &str,
    style: YScalarStyle,
    tag: Option<&Tag>,
    span: Span,
) -> Result<NodeKind, YamlError> {
    let our_style = match style {
        YScalarStyle::Plain => ScalarStyle::Plain,
        YScalarStyle::SingleQuoted | YScalarStyle::DoubleQuoted => ScalarStyle::Quoted,
        _ => ScalarStyle::Block,
    };
    if let Some(tag) = tag {
        if !tag.is_yaml_core_schema() {
            return Err(YamlError::at(span, format!("unsupported YAML tag `{tag}`")));
        }
        let explicit = match tag.suffix.as_str() {
            "str" => Some(NodeKind::Str(value.to_string(), our_style)),
            "null" => core_null(value).then_some(NodeKind::Null),
            "bool" => core_bool(value).map(NodeKind::Bool),
            "int" => core_int(value),
            "float" => core_float(value)
                .map(NodeKind::Float)
                .or_else(|| core_int(value).map(int_as_float)),
            other => {
                return Err(YamlError::at(
                    span,
                    format!("unsupported YAML tag `!!{other}`"),
                ));
            }
        };
        return explicit
            .ok_or_else(|| YamlError::at(span, format!("`{value}` is not a valid `{tag}` value")));
    }
    if our_style != ScalarStyle::Plain {
        return Ok(NodeKind::Str(value.to_string(), our_style));
    }
    if core_null(value) {
        return Ok(NodeKind::Null);
    }
    if let Some(b) = core_bool(value) {
        return Ok(NodeKind::Bool(b));
    }
    if let Some(int) = core_int(value) {
        return Ok(int);
    }
    if let Some(f) = core_float(value) {
        return Ok(NodeKind::Float(f));
    }
    Ok(NodeKind::Str(value.to_string(), ScalarStyle::Plain))
}

fn int_as_float(kind: NodeKind) -> NodeKind {
    match kind {
        NodeKind::Int(i) => NodeKind::Float(i as f64),
        other => other,
    }
}

fn core_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn core_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Core-schema integers: `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`. Values beyond i64 read as
/// floats, as they would in the original (JavaScript numbers).
fn core_int(s: &str) -> Option<NodeKind> {
    let (digits, radix) = if let Some(rest) = s.strip_prefix("0o") {
        (rest, 8)
    } else if let Some(rest) = s.strip_prefix("0x") {
        (rest, 16)
    } else {
        let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(match s.parse::<i64>() {
            Ok(i) => NodeKind::Int(i),
            Err(_) => NodeKind::Float(s.parse::<f64>().ok()?),
        });
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(match i64::from_str_radix(digits, radix) {
        Ok(i) => NodeKind::Int(i),
        Err(_) => NodeKind::Float(u128::from_str_radix(digits, radix).ok()? as f64),
    })
}

/// Core-schema floats: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `.inf`, `.nan`.
fn core_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let negative = s.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == s.len() => return Some(f64::NAN),
        _ => {}
    }
    let bytes = unsigned.as_bytes();
    let mut i = 0;
    let int_digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp == 0 {
            return None;
        }
        i += exp;
    }
    if i != bytes.len() {
        return None;
    }
    s.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(text: &str) -> serde_json::Value {
        parse(text).expect("parses").to_json()
    }

    #[test]
    fn core_schema_scalars_match_the_original() {
        // The original's canonical_json vectors (packs.md §4.1): YAML 1.2 core, not 1.1.
        assert_eq!(
            value("a: 1.0\nb: 0x1F\nc: .inf\nd: 1e3\ne: 007\n"),
            json!({"a": 1.0, "b": 31, "c": null, "d": 1000.0, "e": 7})
        );
        assert_eq!(
            value("a: yes\nb: true\nc: ~\n"),
            json!({"a": "yes", "b": true, "c": null})
        );
        assert_eq!(
            value("d: 2026-02-16\nt: 2026-02-16T22:00:00Z\n"),
            json!({"d": "2026-02-16", "t": "2026-02-16T22:00:00Z"})
        );
        assert_eq!(value(""), json!(null));
        assert_eq!(
            value("v: 1.0.0\nq: '1.0'\nn: -3\nm: +4\n"),
            json!({"v": "1.0.0", "q": "1.0", "n": -3, "m": 4})
        );
        assert_eq!(value("<<: x\n"), json!({"<<": "x"}));
        assert_eq!(value("a: !!str 12\n"), json!({"a": "12"}));
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_places() {
        let err = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(err.message, "duplicate key `a` in mapping");
        assert_eq!(err.span, Span::new(10, 11));
        assert_eq!(err.related.map(|r| r.0), Some(Span::new(0, 1)));
    }

    #[test]
    fn spans_are_bytes_even_after_multibyte_text() {
        let text = "é: ü\nkey: value\n";
        let node = parse(text).expect("parses");
        let entry = node.entry("key").expect("key");
        assert_eq!(&text[entry.key_span.start..entry.key_span.end], "key");
        assert_eq!(&text[entry.value.span.start..entry.value.span.end], "value");
    }

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        assert_eq!(
            value("a: &x [1, 2]\nb: *x\n"),
            json!({"a": [1, 2], "b": [1, 2]})
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse(&bomb).expect_err("too big");
        assert!(err.message.contains("too many nodes"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_and_multiple_documents_are_reported() {
        assert!(parse("a: [1, 2\n").is_err());
        let err = parse("a: 1\n---\nb: 2\n").expect_err("two docs");
        assert!(err.message.contains("single YAML document"));
        assert!(parse("? [a]\n: 1\n").is_err());
        assert!(parse("a: !custom x\n").is_err());
    }

    #[test]
    fn block_collection_spans_end_at_their_last_child() {
        let text = "packs:\n  - id: a\n    version: 1.0.0\n# trailing comment\nname: x\n";
        let node = parse(text).expect("parses");
        let packs = node.get("packs").expect("packs");
        assert_eq!(
            &text[packs.span.start..packs.span.end],
            "- id: a\n    version: 1.0.0"
        );
        let flow = parse("a: [1, 2]\n").expect("parses");
        let a = flow.get("a").expect("a");
        assert_eq!(&"a: [1, 2]\n"[a.span.start..a.span.end], "[1, 2]");
    }
}
