//! Wire types and constants shared by every LumenFlow component.
//!
//! This crate owns the shapes that cross a process or trust boundary and the rules that make them
//! comparable across implementations:
//!
//! - [`canonical_json`]: RFC 8785 (JCS) canonical JSON, the only serialization we ever hash;
//! - [`digest`]: SHA-256 helpers and the `sha256:<hex>` form used wherever a digest is shown;
//! - [`scope`]: the tool scope types (`path` and `network`) that manifests, workspaces, tasks and
//!   tokens are written in.
//!
//! It never does I/O, never spawns tasks and never decides policy: those belong to the kernel, the
//! conductor and the control plane, which all depend on this crate and on nothing of each other's.

pub mod canonical_json;
pub mod digest;
pub mod scope;
