//! Edits that keep the rest of a YAML file as the user wrote it.
//!
//! `config set` and `pack install` change one value of `workspace.yaml`; rewriting the whole file
//! would drop the owner's comments and layout. [`set_value`] splices the new value into the
//! original text where it can, then re-reads the result and compares it with the intended
//! document. Only if the splice would not produce exactly that document (an unusual layout, a
//! flow mapping to extend) is the file re-emitted from scratch, and the caller is told so.

use serde_json::{Map, Value};

use super::emit::{scalar_to_yaml, to_yaml_string};
use super::{parse, CollectionStyle, Node, NodeKind};

/// The new text, and whether the original layout and comments were kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    pub text: String,
    pub preserved_layout: bool,
}

/// Set the value at `path` (mapping keys from the root), creating missing mappings on the way.
/// The root must be a mapping.
pub fn set_value(text: &str, path: &[String], value: &Value) -> Result<Edited, String> {
    let root = parse(text).map_err(|e| e.message)?;
    let mut expected = root.to_json();
    if !expected.is_object() {
        return Err("the document root must be a mapping".into());
    }
    set_in_json(&mut expected, path, value.clone())?;
    let spliced = splice(text, &root, path, value);
    if let Some(candidate) = spliced {
        if parse(&candidate).is_ok_and(|n| n.to_json() == expected) {
            return Ok(Edited {
                text: candidate,
                preserved_layout: true,
            });
        }
    }
    Ok(Edited {
        text: to_yaml_string(&expected),
        preserved_layout: false,
    })
}

/// Put `value` at `path` in a JSON object tree, replacing non-object intermediates.
pub fn set_in_json(target: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        *target = value;
        return Ok(());
    };
    let mut node = target;
    for key in parents {
        let obj = match node {
            Value::Object(m) => m,
            other => {
                *other = Value::Object(Map::new());
                match other {
                    Value::Object(m) => m,
                    _ => return Err("internal: failed to create mapping".into()),
                }
            }
        };
        node = obj
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
    }
    match node {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        _ => Err("internal: parent is not a mapping".into()),
    }
}

fn splice(text: &str, root: &Node, path: &[String], value: &Value) -> Option<String> {
    // Walk down as far as the path exists.
    let mut node = root;
    let mut key_col = None::<usize>;
    let mut depth = 0;
    for key in path {
        match node.entry(key) {
            Some(entry) => {
                key_col = Some(column(text, entry.key_span.start));
                node = &entry.value;
                depth += 1;
            }
            None => break,
        }
    }
    if depth == path.len() {
        return replace_node(text, node, key_col?, value);
    }
    // Insert the missing remainder as one new key of the deepest existing mapping.
    let NodeKind::Map(entries, CollectionStyle::Block) = &node.kind else {
        return None;
    };
    let first = entries.first()?;
    let indent = column(text, first.key_span.start);
    let mut remainder = value.clone();
    for key in path[depth + 1..].iter().rev() {
        let mut m = Map::new();
        m.insert(key.clone(), remainder);
        remainder = Value::Object(m);
    }
    let key = &path[depth];
    let insert_at = node.span.end;
    let mut piece = String::from("\n");
    piece.push_str(&" ".repeat(indent));
    piece.push_str(&render_key(key));
    piece.push(':');
    piece.push_str(&render_after_key(&remainder, indent));
    Some(format!(
        "{}{}{}",
        &text[..insert_at],
        piece,
        &text[insert_at..]
    ))
}

/// Replace an existing node's text with `value`; `key_col` is the column of the key holding it.
fn replace_node(text: &str, node: &Node, key_col: usize, value: &Value) -> Option<String> {
    let span = node.span;
    let replacement = match (&node.kind, scalar_to_yaml(value)) {
        // A scalar replaces a scalar or a flow collection in place.
        (
            NodeKind::Seq(_, CollectionStyle::Flow) | NodeKind::Map(_, CollectionStyle::Flow),
            Some(s),
        ) => s,
        (NodeKind::Seq(..) | NodeKind::Map(..), Some(_)) => return None,
        (_, Some(s)) => s,
        // A block collection replaced by a collection: same indentation as the current children.
        (NodeKind::Seq(items, CollectionStyle::Block), None) if !items.is_empty() => {
            return splice_seq(text, items, value, column(text, span.start));
        }
        (NodeKind::Map(entries, CollectionStyle::Block), None) if !entries.is_empty() => {
            if is_empty_collection(value) {
                return None;
            }
            let col = column(text, span.start);
            block(value, col)
        }
        // A scalar or flow collection replaced by a collection: a new block under the key.
        (_, None) => {
            // Only when the node sits on the key's line (`key: value`).
            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            if text[line_start..span.start].trim_start().is_empty() {
                return None;
            }
            let rendered = render_after_key(value, key_col);
            let trimmed_start = text[..span.start].trim_end_matches([' ', '\t']).len();
            // Keep a trailing comment on the key's line, above the new block.
            let line_end = text[span.end..]
                .find('\n')
                .map_or(text.len(), |i| span.end + i);
            let rest = &text[span.end..line_end];
            if !(rest.trim().is_empty() || rest.trim_start().starts_with('#')) {
                return None;
            }
            return Some(format!(
                "{}{}{}{}",
                &text[..trimmed_start],
                rest.trim_end(),
                rendered,
                &text[line_end..]
            ));
        }
    };
    Some(format!(
        "{}{}{}",
        &text[..span.start],
        replacement,
        &text[span.end..]
    ))
}

/// Replace changed items and append new ones, leaving unchanged items (and their comments)
/// untouched. `dash_col` is the column of the items' `-`.
fn splice_seq(text: &str, items: &[Node], value: &Value, dash_col: usize) -> Option<String> {
    let new = value.as_array()?;
    if new.len() < items.len() {
        return None;
    }
    let mut out = text.to_string();
    // After the last item's line, so a trailing comment stays with the item it annotates.
    let last_end = items.last()?.span.end;
    let last_end = text[last_end..]
        .find('\n')
        .map_or(text.len(), |i| last_end + i);
    let mut appended = String::new();
    for v in &new[items.len()..] {
        appended.push('\n');
        appended.push_str(&" ".repeat(dash_col));
        appended.push_str("- ");
        appended.push_str(&item_text(v, dash_col + 2));
    }
    out.insert_str(last_end, &appended);
    for (item, v) in items.iter().zip(new).rev() {
        if item.to_json() != *v {
            let col = column(text, item.span.start);
            out.replace_range(item.span.start..item.span.end, &item_text(v, col));
        }
    }
    Some(out)
}

fn item_text(v: &Value, col: usize) -> String {
    match scalar_to_yaml(v) {
        Some(s) => s,
        None if is_empty_collection(v) => if v.is_array() { "[]" } else { "{}" }.to_string(),
        None => block(v, col),
    }
}

fn is_empty_collection(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.is_empty()) || matches!(v, Value::Object(m) if m.is_empty())
}

/// What follows `key:`: ` scalar`, ` []`, or a newline and an indented block.
fn render_after_key(value: &Value, key_col: usize) -> String {
    if let Some(s) = scalar_to_yaml(value) {
        return format!(" {s}");
    }
    if is_empty_collection(value) {
        return format!(" {}", if value.is_array() { "[]" } else { "{}" });
    }
    let col = key_col + 2;
    format!("\n{}{}", " ".repeat(col), block(value, col))
}

/// The emitter's block text for `value`, with every line after the first indented by `col`
/// (the first line is placed by the caller).
fn block(value: &Value, col: usize) -> String {
    let rendered = to_yaml_string(value);
    let pad = " ".repeat(col);
    rendered
        .trim_end_matches('\n')
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 || line.is_empty() {
                line.to_string()
            } else {
                format!("{pad}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_key(key: &str) -> String {
    scalar_to_yaml(&Value::String(key.to_string())).unwrap_or_else(|| key.to_string())
}

/// Byte column of `offset` within its line (indentation is ASCII spaces, so bytes are columns).
fn column(text: &str, offset: usize) -> usize {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    offset - line_start
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(text: &str, path: &[&str], value: Value) -> Edited {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        set_value(text, &path, &value).expect("edit")
    }

    #[test]
    fn replaces_a_scalar_and_keeps_comments() {
        let text = "# top comment\nid: ws # inline\ncontrol_plane:\n  sync_interval: 30 # seconds\n  org_id: acme\n";
        let out = set(text, &["control_plane", "sync_interval"], json!(60));
        assert!(out.preserved_layout);
        assert_eq!(out.text, "# top comment\nid: ws # inline\ncontrol_plane:\n  sync_interval: 60 # seconds\n  org_id: acme\n");
    }

    #[test]
    fn inserts_missing_keys_at_the_right_indentation() {
        let text = "id: ws\nsoftware_delivery:\n  gates:\n    minCoverage: 80\n# end\n";
        let out = set(
            text,
            &["software_delivery", "gates", "maxWarnings"],
            json!(3),
        );
        assert!(out.preserved_layout);
        assert_eq!(out.text, "id: ws\nsoftware_delivery:\n  gates:\n    minCoverage: 80\n    maxWarnings: 3\n# end\n");
        let out = set(text, &["acme_demo", "retries", "max"], json!(5));
        assert!(out.preserved_layout);
        assert_eq!(
            parse(&out.text).expect("yaml").to_json()["acme_demo"],
            json!({"retries": {"max": 5}})
        );
        assert!(out.text.contains("# end"));
    }

    #[test]
    fn replaces_and_appends_list_items() {
        let text = "packs:\n  - id: a\n    version: 1.0.0 # pinned\nname: x\n";
        let out = set(
            text,
            &["packs"],
            json!([{"id": "a", "version": "1.0.0"}, {"id": "b", "version": "2.0.0"}]),
        );
        assert!(out.preserved_layout);
        assert_eq!(out.text, "packs:\n  - id: a\n    version: 1.0.0 # pinned\n  - id: b\n    version: 2.0.0\nname: x\n");
        let out = set(text, &["packs"], json!([{"id": "a", "version": "1.1.0"}]));
        assert!(out.preserved_layout);
        assert_eq!(
            out.text,
            "packs:\n  - id: a\n    version: 1.1.0 # pinned\nname: x\n"
        );
        let text = "id: w\npacks: [] # none yet\nname: x\n";
        let out = set(text, &["packs"], json!([{"id": "b", "version": "2.0.0"}]));
        assert!(out.preserved_layout, "{}", out.text);
        assert_eq!(
            out.text,
            "id: w\npacks: # none yet\n  - id: b\n    version: 2.0.0\nname: x\n"
        );
    }

    #[test]
    fn falls_back_to_a_full_rewrite_when_splicing_cannot_work() {
        let text = "a: {b: 1}\n";
        let out = set(text, &["a", "c"], json!(2));
        assert!(!out.preserved_layout);
        assert_eq!(
            parse(&out.text).expect("yaml").to_json(),
            json!({"a": {"b": 1, "c": 2}})
        );
    }
}
