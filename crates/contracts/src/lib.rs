//! Wire types and constants shared by every LumenFlow component.
//!
//! This crate owns the shapes that cross a process or trust boundary and the rules that make them
//! comparable across implementations:
//!
//! - [`canonical_json`]: RFC 8785 (JCS) canonical JSON, the only serialization we ever hash;
//! - [`error_text`]: error messages that carry their causes (the part a person can act on);
//! - [`digest`]: SHA-256 helpers and the `sha256:<hex>` form used wherever a digest is shown;
//! - [`scope`]: the tool scope types (`path` and `network`) that manifests, workspaces, tasks and
//!   tokens are written in;
//! - [`event`]: the v2 event envelope and `build_kernel_event_v2`, the only way to make one;
//! - [`kinds`]: the kind catalogues of every event family, with direction and delivery class;
//! - [`payloads`]: the payload shapes of the known kinds, for emit and inbound validation;
//! - [`time`]: RFC 3339 timestamps, always UTC with milliseconds;
//! - [`tool_output`]: the ToolOutput every tool returns, and the dispatch error codes.
//! - [`identity`]: token claims, subjects (`<ws>` or `<ws>:phone:<device>`), the enrollment record;
//! - [`wire`]: the HTTP bodies the sidecar and the control plane exchange;
//! - [`tools`]: campus and tenant-evidence tool names, tool contracts and channel ids (SDK-01);
//! - [`receipt`]: the unsealed CanonicalReceipt of a tenant's proof bundle and its `content_digest`;
//! - [`resolver`]: PeerDescriptor, the compute resolve request, policy and result union (CRS-01).
//!
//! It never does I/O, never spawns tasks and never decides policy: those belong to the kernel, the
//! conductor and the control plane, which all depend on this crate and on nothing of each other's.

pub mod canonical_json;
pub mod digest;
pub mod error_text;
pub mod event;
pub mod identity;
pub mod kinds;
pub mod payloads;
pub mod receipt;
pub mod resolver;
pub mod scope;
pub mod time;
pub mod tool_output;
pub mod tools;
pub mod wire;
