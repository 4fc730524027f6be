//! The built-in packs.
//!
//! Each built-in pack is a folder beside this file with its `manifest.yaml` and the Rust functions
//! that implement its tools; the folder is embedded in the binary so that the pack loader can
//! resolve it (after `<workspace>/packs/<id>` and `<workspace>/packages/@lumenflow/packs/<id>`) and
//! hash it exactly as it hashes a pack on disk.
//!
//! Built-in packs never bypass the kernel's dispatch path: they register functions, the kernel
//! decides when they run.

use lumenflow_kernel::builtin::EmbeddedPack;

/// Every pack compiled into this binary, in id order.
///
/// Empty until the first built-in pack (software-delivery, agent-runtime, campus, acme-demo) lands.
pub fn builtin_packs() -> &'static [EmbeddedPack] {
    &[]
}
