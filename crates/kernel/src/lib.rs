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
//! - [`authoring`] and [`install`]: `pack author` templates and `pack install`;
//! - [`yaml`] and [`diagnostics`]: the YAML 1.2 reader with source spans that every file above is
//!   read through, and the errors it renders.
//!
//! The kernel never speaks HTTP and knows no particular pack: built-in packs are handed to it by
//! the caller as [`builtin::EmbeddedPack`] values, and anything fetched over the network is fetched
//! by the caller and handed over as bytes.

// Diagnostics carry their source text and spans so they can be rendered where they surface;
// they are built only on the error path, so their size costs nothing on the happy path.
#![allow(clippy::result_large_err)]

pub mod authoring;
pub mod builtin;
pub mod config;
pub mod diagnostics;
pub mod events;
pub mod import_scan;
pub mod install;
pub mod integrity;
pub mod json_schema;
pub mod loader;
pub mod manifest;
pub mod pack_report;
pub mod policy;
pub mod workspace;
pub mod yaml;
