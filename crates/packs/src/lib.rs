//! The built-in packs.
//!
//! Each built-in pack is a folder beside this file with its `manifest.yaml` and the Rust functions
//! that implement its tools and event handlers; the folder is embedded in the binary so that the
//! pack loader can resolve it (after `<workspace>/packs/<id>` and
//! `<workspace>/packages/@lumenflow/packs/<id>`) and hash it exactly as it hashes a pack on disk.
//!
//! Built-in packs never bypass the kernel's dispatch path: they register functions, the kernel
//! decides when they run. `docs/pack-authoring.md` shows how to add one, using [`acme_demo`].

use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::events::host::PackRegistration;

pub mod acme_demo;
pub mod agent_runtime;
pub mod campus;
pub mod shell;
pub mod software_delivery;
pub mod tenant_evidence;

/// Every pack compiled into this binary, in id order.
pub fn builtin_packs() -> &'static [EmbeddedPack] {
    &[
        acme_demo::PACK,
        agent_runtime::PACK,
        campus::PACK,
        software_delivery::PACK,
        tenant_evidence::PACK,
    ]
}

/// The event-bus registration (manifest and handlers) of every built-in pack, in id order, for a
/// [`PackHost`](lumenflow_kernel::events::host::PackHost).
pub fn registrations() -> Vec<PackRegistration> {
    vec![
        acme_demo::registration(),
        agent_runtime::registration(),
        campus::registration(),
        software_delivery::registration(),
        tenant_evidence::registration(),
    ]
}

/// The Rust functions behind the tools of the built-in packs, by tool name. The kernel calls
/// them only from its dispatch path (it alone can build their argument).
pub fn builtin_tools() -> std::collections::HashMap<String, lumenflow_kernel::dispatch::BuiltinFn> {
    // acme-demo is an event-only pack: no tools.
    let mut tools = std::collections::HashMap::new();
    tools.extend(agent_runtime::tools());
    tools.extend(campus::tools());
    tools.extend(software_delivery::tools());
    tools.extend(tenant_evidence::tools());
    tools
}

/// What the built-in packs do when a runtime starts (the kernel knows no pack, so the host, the
/// sidecar, calls this once after opening a runtime): agent-runtime settles the turns a killed
/// process left running, as `turn_aborted` with their `cleanup_status` (recovery commands are
/// reported, never run). Returns one line per problem; none is fatal.
pub fn on_runtime_start(runtime: &lumenflow_kernel::dispatch::Runtime) -> Vec<String> {
    let emitter = match (&runtime.events, agent_runtime_manifest(runtime)) {
        (Some(events), Some(manifest)) => Some(events.emitter_for(manifest)),
        _ => None,
    };
    let mut notes: Vec<String> = software_delivery::orphans::reap(&runtime.workspace_dir)
        .into_iter()
        .map(|r| format!("software-delivery: killed a gate run whose runtime died: {r}"))
        .collect();
    if let Err(e) =
        agent_runtime::reconcile_interrupted_turns(&runtime.workspace_dir, emitter.as_ref())
    {
        notes.push(format!(
            "agent-runtime: interrupted turns not reconciled: {e}"
        ));
    }
    notes
}

fn agent_runtime_manifest(
    runtime: &lumenflow_kernel::dispatch::Runtime,
) -> Option<&lumenflow_kernel::manifest::PackManifest> {
    runtime
        .pack_manifests
        .iter()
        .find(|m| m.id == agent_runtime::PACK.id)
}
