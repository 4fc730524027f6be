//! The tools a turn may offer its model, read from the manifests of the packs the workspace pins.
//!
//! The model needs each tool's name, description and input schema (to build function
//! definitions), and the turn needs to know which tools can change state (to report an honest
//! `cleanup_status` when it stops early). Both come from the manifests, never from the model.
//! Manifests are read with the kernel's own loader, the same resolution and checks the runtime
//! opened the workspace with, and cached per workspace and `workspace.yaml` content.
//!
//! What the catalogue does *not* decide is whether a call may run: every call still goes through
//! the dispatch path, which refuses unknown, internal or out-of-scope tools with a receipt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use lumenflow_kernel::loader::PackLoader;
use lumenflow_kernel::manifest::Permission;
use lumenflow_kernel::workspace::WorkspaceDocument;

use super::provider::ToolSpec;
use super::TOOL_NAME;

type Cache = Mutex<HashMap<(PathBuf, String), Arc<Vec<ToolSpec>>>>;

static CACHE: LazyLock<Cache> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Every non-internal tool of every pack the workspace pins and that loads, sorted by name,
/// without `agent:execute-turn` itself (a turn does not start turns). Empty without a workspace.
pub fn workspace_tools(doc: Option<&WorkspaceDocument>) -> Arc<Vec<ToolSpec>> {
    let Some(doc) = doc else {
        return Arc::new(Vec::new());
    };
    let key = (doc.dir.clone(), doc.config_hash());
    if let Some(hit) = CACHE.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return hit;
    }
    let loader = PackLoader::for_workspace(doc, crate::builtin_packs());
    let mut tools: Vec<ToolSpec> = Vec::new();
    for pin in &doc.spec.packs {
        // A pack that does not load here did not load in the runtime either: it has no tools.
        let Ok(pack) = loader.load(&doc.spec, &pin.id) else {
            continue;
        };
        for tool in &pack.manifest.manifest.tools {
            if tool.is_internal() || tool.name == TOOL_NAME {
                continue;
            }
            tools.push(ToolSpec {
                name: tool.name.clone(),
                description: tool.description.clone(),
                input_schema: tool.input_schema.clone(),
                mutating: tool.permission != Permission::Read,
            });
        }
    }
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    let tools = Arc::new(tools);
    if let Ok(mut cache) = CACHE.lock() {
        cache.insert(key, tools.clone());
    }
    tools
}
