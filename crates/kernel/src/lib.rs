//! The LumenFlow kernel: where governance happens.
//!
//! The kernel owns everything a workspace needs to decide whether, and how, a tool call may run:
//!
//! - [`manifest`]: pack manifests (`manifest.yaml`) parsed into typed structs, strictly, with
//!   diagnostics that name the file, line and field, and the safety lint behind `pack validate`;
//! - [`integrity`]: the pack integrity hash, byte-for-byte the original LumenFlow algorithm;
//! - [`import_scan`]: the import-boundary scan for script packs;
//! - [`workspace`]: `workspace.yaml` (pins, scopes, lanes, policies, pack config blocks, the
//!   `control_plane` block) and [`config`] (`config get|set` routed to the owning pack);
//! - [`loader`]: resolving, verifying and loading pinned packs;
//! - [`policy`]: the rule cascade (workspace > lane > pack > task) with declarative `when`
//!   conditions, failing closed;
//! - [`scope`]: the four scope layers (workspace, lane, task, tool) intersected into the
//!   effective scopes of a call, concrete path checks and the reserved `.lumenflow/` writes;
//! - [`approvals`]: durable approvals bound to tool + input hash, consumed exactly once, with
//!   expiry as deny, behind the `ApprovalProvider` trait (local files; the control plane later);
//! - [`authoring`] and [`install`]: `pack author` templates and `pack install`;
//! - [`eventlog`]: the kernel event log, one append-only hash-chained JSON Lines file with group
//!   commit (fsync before success), torn-tail recovery, replay by `seq` cursor and `verify`;
//! - [`tasks`]: task specs, states and transitions (guards on the source state), claim /
//!   block / complete and the rest as event-log batches, projection and the dispatch check;
//! - [`sandbox`]: subprocess tools under bubblewrap built from the effective scopes (KRN-11):
//!   cleared environment with the call's ids, timeout, output cap, deny overlays, and network
//!   allowlists enforced by a relay;
//! - [`resolver`]: the compute resolver (CRS-02): a pure function from a resolve request and the
//!   operator's policy to `resolved`, `refused` or `permitted-with-warning`;
//! - [`yaml`] and [`diagnostics`]: the YAML 1.2 reader with source spans that every file above is
//!   read through, and the errors it renders.
//!
//! The kernel never speaks HTTP and knows no particular pack: built-in packs are handed to it by
//! the caller as [`builtin::EmbeddedPack`] values, and anything fetched over the network is fetched
//! by the caller and handed over as bytes.

// Diagnostics carry their source text and spans so they can be rendered where they surface;
// they are built only on the error path, so their size costs nothing on the happy path.
#![allow(clippy::result_large_err)]

pub mod approvals;
pub mod authoring;
pub mod builtin;
pub mod config;
pub mod diagnostics;
pub mod dispatch;
pub mod eventlog;
pub mod events;
pub mod file_lock;
mod group_commit;
pub mod import_scan;
pub mod install;
pub mod integrity;
pub mod json_schema;
pub mod loader;
pub mod manifest;
pub mod pack_report;
pub mod policy;
pub mod resolver;
pub mod sandbox;
pub mod scope;
pub mod tasks;
#[cfg(test)]
mod test_values;
pub mod workspace;
pub mod yaml;
