//! `agent-runtime`: the governed agent turn (issue 8; INV-02, INV-05, INV-09, ABR-01 to ABR-04,
//! Q22), built into the binary.
//!
//! One tool, `agent:execute-turn` with `{goal, plan?, max_steps?, turn_id?, action?}` (`action`
//! `status` reads a turn without side effects, `cancel` ends a waiting one): a model proposes
//! tool calls, and each one is sent through the kernel's dispatch path like any other call, so
//! scopes, rules, approvals and receipts apply to what an agent does exactly as they apply to
//! what a person does. The original pack (`original/control-plane.md` §2.16) ran one model
//! request per call and emitted no events; this one runs the whole loop, durably, and emits the
//! `turn_*` family.
//!
//! - [`provider`]: the [`ModelProvider`] trait; [`openai`]: an OpenAI-compatible chat-completions
//!   client configured in `workspace.yaml` (`agent_runtime.provider`, see [`config`]);
//!   [`scripted`]: a planner that follows a plan, for reproducible runs and the demo.
//! - [`turn`]: the loop, the events, the cleanup status of a turn that stops early, and the
//!   reconciliation of turns a dead process left behind.
//! - [`state`]: the turn files under `.lumenflow/state/agent-runtime/turns/`.
//! - [`catalog`]: the tools a model may be offered, from the pinned packs' manifests.
//!
//! Only tokens with the `agent:execute-turn` scope may start a turn (INV-02): the manifest says
//! so (`token_scope`), and the sidecar enforces it before the call reaches the kernel.
//!
//! `manifest.yaml` is the single source of truth for what the pack declares; [`manifest`] parses
//! the embedded file with the kernel's own parser.

pub mod catalog;
pub mod config;
pub mod openai;
pub mod provider;
pub mod scripted;
pub mod state;
pub mod turn;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::dispatch::BuiltinFn;
use lumenflow_kernel::events::host::PackRegistration;
use lumenflow_kernel::loader::read_embedded_manifest;
use lumenflow_kernel::manifest::PackManifest;

pub use provider::{Expect, ModelProvider, ProviderError, Step, ToolSpec, TurnView};
pub use turn::{execute_turn, reconcile_interrupted_turns, Reconciled};

/// The pack id, which is also its slug (its event namespace).
pub const ID: &str = "agent-runtime";

/// The one tool.
pub const TOOL_NAME: &str = "agent:execute-turn";

/// The kinds this pack emits (all ephemeral, Q22).
pub const TURN_STARTED: &str = "agent-runtime:turn_started";
pub const TURN_COMPLETED: &str = "agent-runtime:turn_completed";
pub const TURN_ABORTED: &str = "agent-runtime:turn_aborted";

/// The pack folder, embedded: the manifest, the config schema and every source file, so the
/// pack's integrity hash changes whenever its code does. A test checks this list against the
/// folder on disk.
pub const PACK: EmbeddedPack = EmbeddedPack {
    id: ID,
    files: &[
        ("catalog.rs", include_bytes!("catalog.rs")),
        ("config.rs", include_bytes!("config.rs")),
        ("config.schema.json", include_bytes!("config.schema.json")),
        ("manifest.yaml", include_bytes!("manifest.yaml")),
        ("mod.rs", include_bytes!("mod.rs")),
        ("openai.rs", include_bytes!("openai.rs")),
        ("provider.rs", include_bytes!("provider.rs")),
        ("scripted.rs", include_bytes!("scripted.rs")),
        ("state.rs", include_bytes!("state.rs")),
        ("turn.rs", include_bytes!("turn.rs")),
    ],
};

static MANIFEST: LazyLock<PackManifest> = LazyLock::new(|| match read_embedded_manifest(&PACK) {
    Ok(doc) => doc.manifest,
    // Unreachable in a tested build: `tests/agent_runtime.rs` parses and validates this file.
    Err(diagnostics) => {
        panic!("the embedded agent-runtime manifest.yaml is invalid: {diagnostics:?}")
    }
});

/// The manifest, parsed from the embedded `manifest.yaml`.
pub fn manifest() -> PackManifest {
    MANIFEST.clone()
}

/// The pack as the event host registers it (it emits, it subscribes to nothing).
pub fn registration() -> PackRegistration {
    PackRegistration::new(manifest())
}

/// The Rust functions behind the pack's tools, by tool name.
pub fn tools() -> HashMap<String, BuiltinFn> {
    let execute: BuiltinFn = Arc::new(turn::execute_turn);
    HashMap::from([(TOOL_NAME.to_string(), execute)])
}
