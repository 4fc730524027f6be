//! The tools a turn may offer its model: the tools of the runtime the turn runs in.
//!
//! The model needs each tool's name, description and input schema (to build function
//! definitions), and the turn needs to know which tools can change state (to report an honest
//! `cleanup_status` when it stops early). Both come from the manifests the runtime registered,
//! never from the model.
//!
//! What the catalogue does *not* decide is whether a call may run: every call still goes through
//! the dispatch path, which refuses unknown, internal or out-of-scope tools with a receipt.

use lumenflow_kernel::dispatch::BuiltinCall;
use lumenflow_kernel::manifest::Permission;

use super::provider::ToolSpec;
use super::TOOL_NAME;

/// Every non-internal tool of the runtime, sorted by name, without `agent:execute-turn` itself
/// (a turn does not start turns).
pub fn runtime_tools(call: &BuiltinCall<'_>) -> Vec<ToolSpec> {
    let mut tools: Vec<ToolSpec> = call
        .registered_tools()
        .filter(|t| !t.manifest.is_internal() && t.name != TOOL_NAME)
        .map(|t| ToolSpec {
            name: t.name.clone(),
            description: t.manifest.description.clone(),
            input_schema: t.manifest.input_schema.clone(),
            mutating: t.manifest.permission != Permission::Read,
        })
        .collect();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    tools
}
