//! `GET /tools` (SCR-02 to SCR-05, Q17, Q41): the tool surface as a caller is allowed to see it.
//!
//! The listing is derived from the loaded pack manifests only (nothing is reflected or
//! generated): every registered, non-`internal_only` tool whose token scope the caller holds,
//! sorted by name. Visibility uses the same decision as `POST /tools/{name}`
//! ([`auth::authorize_tool`](crate::auth::authorize_tool)), so a listed tool is exactly a
//! callable one. Each listing carries an `ETag`, the hash of its canonical JSON, so the control
//! plane can refresh its registry with `If-None-Match` and get `304` while nothing changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_contracts::wire::{ToolDescriptor, ToolListing};
use lumenflow_kernel::dispatch::{RegisteredTool, ToolRegistry};
use serde_json::{json, Value};

use crate::auth::required_token_scope;

/// One rendered listing: the JSON body and its entity tag.
#[derive(Debug, Clone)]
pub struct RenderedListing {
    pub listing: ToolListing,
    pub body: Vec<u8>,
    /// A strong entity tag, quoted as HTTP wants it: `"sha256:<hex>"`.
    pub etag: String,
}

/// The descriptor of one tool (Q17).
pub fn describe(tool: &RegisteredTool) -> ToolDescriptor {
    let m = &tool.manifest;
    ToolDescriptor {
        name: tool.name.clone(),
        pack_id: tool.pack_id.clone(),
        pack_version: tool.pack_version.clone(),
        description: m.description.clone().unwrap_or_default(),
        permission: m.permission.as_str().to_string(),
        required_scopes: m.required_scopes.clone(),
        token_scope: required_token_scope(m).to_string(),
        required_approvals: m.required_approvals.clone(),
        input_schema: m
            .input_schema
            .clone()
            .map(|s| advertised(Value::Object(s)))
            .unwrap_or_else(|| json!({"type": "object"})),
        output_schema: m
            .output_schema
            .clone()
            .map(|s| advertised(Value::Object(s))),
        decision: if m.required_approvals.is_empty() {
            "allow".to_string()
        } else {
            "approval_required".to_string()
        },
    }
}

/// The tools a holder of `scopes` may see and call.
pub fn listing_for<'a>(
    registry: &ToolRegistry,
    scopes: impl IntoIterator<Item = &'a str> + Clone,
) -> ToolListing {
    let tools = registry
        .tools()
        .filter(|t| !t.manifest.is_internal())
        .filter(|t| {
            let need = required_token_scope(&t.manifest);
            scopes.clone().into_iter().any(|s| s == need)
        })
        .map(describe)
        .collect();
    ToolListing { tools }
}

/// The whole remote tool surface (every non-`internal_only` tool, whatever the token scope):
/// its entity tag changes exactly when the surface does (SCR-05).
pub fn surface(registry: &ToolRegistry) -> RenderedListing {
    render(ToolListing {
        tools: registry
            .tools()
            .filter(|t| !t.manifest.is_internal())
            .map(describe)
            .collect(),
    })
}

/// Render a listing with its entity tag.
pub fn render(listing: ToolListing) -> RenderedListing {
    let value = serde_json::to_value(&listing).unwrap_or(Value::Null);
    let etag = format!("\"sha256:{}\"", canonical_hash(&value));
    let body = serde_json::to_vec(&value).unwrap_or_default();
    RenderedListing {
        listing,
        body,
        etag,
    }
}

/// Does an `If-None-Match` header value match `etag` (a list, weak tags, or `*`)?
pub fn if_none_match_hits(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Listings by scope set. The registry of a running sidecar never changes, so a listing is
/// computed once per distinct set of scopes.
#[derive(Default)]
pub struct ListingCache {
    by_scopes: Mutex<HashMap<String, Arc<RenderedListing>>>,
}

impl ListingCache {
    pub fn get(&self, registry: &ToolRegistry, scopes: &[&str]) -> Arc<RenderedListing> {
        let mut key: Vec<&str> = scopes.to_vec();
        key.sort_unstable();
        key.dedup();
        let key = key.join(" ");
        if let Ok(map) = self.by_scopes.lock() {
            if let Some(hit) = map.get(&key) {
                return hit.clone();
            }
        }
        let rendered = Arc::new(render(listing_for(registry, scopes.iter().copied())));
        if let Ok(mut map) = self.by_scopes.lock() {
            map.insert(key, rendered.clone());
        }
        rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let tag = "\"sha256:ab\"";
        assert!(if_none_match_hits("\"sha256:ab\"", tag));
        assert!(if_none_match_hits("W/\"sha256:ab\"", tag));
        assert!(if_none_match_hits("\"x\", \"sha256:ab\"", tag));
        assert!(if_none_match_hits("*", tag));
        assert!(!if_none_match_hits("\"sha256:cd\"", tag));
    }

    #[test]
    fn an_empty_registry_lists_nothing_with_a_stable_tag() {
        let reg = ToolRegistry::new();
        let a = render(listing_for(&reg, ["workspace"]));
        let b = render(listing_for(&reg, ["workspace"]));
        assert!(a.listing.tools.is_empty());
        assert_eq!(a.etag, b.etag);
        assert!(a.etag.starts_with("\"sha256:"));
    }
}

/// A manifest schema as a standard JSON Schema reader understands it. The kernel's objects are
/// strict unless `additionalProperties` is `true` (the original's subset); standard readers take
/// an absent `additionalProperties` as "anything goes", so an agent would send keys the kernel
/// refuses. Every object that is strict says so explicitly.
pub fn advertised(schema: Value) -> Value {
    match schema {
        Value::Object(mut m) => {
            let is_object = m.get("type").and_then(Value::as_str) == Some("object")
                && !m.contains_key("const")
                && !m.contains_key("enum");
            if is_object && m.get("additionalProperties") != Some(&Value::Bool(true)) {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for v in props.values_mut() {
                    *v = advertised(std::mem::take(v));
                }
            }
            if let Some(items) = m.get_mut("items") {
                *items = advertised(std::mem::take(items));
            }
            Value::Object(m)
        }
        other => other,
    }
}

#[cfg(test)]
mod advertised_tests {
    use super::advertised;
    use serde_json::json;

    #[test]
    fn strict_objects_say_so_and_open_ones_stay_open() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "open": {"type": "object", "additionalProperties": true},
            "list": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"}}},
            "pick": {"type": "object", "enum": [{"x": 1}]}
        }});
        let out = advertised(schema);
        assert_eq!(out["additionalProperties"], false);
        assert_eq!(out["properties"]["a"]["additionalProperties"], false);
        assert_eq!(out["properties"]["open"]["additionalProperties"], true);
        assert_eq!(
            out["properties"]["list"]["items"]["additionalProperties"], false,
            "a schema there is strict too in the kernel's subset"
        );
        assert!(out["properties"]["pick"]
            .get("additionalProperties")
            .is_none());
    }
}
