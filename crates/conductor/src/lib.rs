//! The conductor sidecar: the workspace's governed HTTP and MCP surface, and its link to the
//! control plane (S3 "conductor mode"; REQUIREMENTS 3.1 to 3.8).
//!
//! What it owns, by module:
//! - [`enrollment`]: `enrollment.json` (0600, atomic), standalone minting with the workspace key,
//!   `devices.json`.
//! - [`auth`]: bearer-token verification (signature, expiry, audience, revocation) and the token
//!   scope a tool needs; 401 `TOKEN_INVALID`, 403 `TOKEN_SCOPE_DENIED`.
//! - [`listing`]: `GET /tools`, filtered by the caller's scopes, with an ETag.
//! - [`server`] and [`openapi`]: the axum router, JSON errors, status mapping, the OpenAPI
//!   document kept in sync with the routes by a test.
//! - [`inbox`]: inbound queue-class events, persisted, handled by pack handlers, acknowledged.
//! - [`outbox`], [`seq`], [`delivery`], [`control_plane`]: queue-class events made durable,
//!   numbered per channel, drained FIFO with backoff; ephemeral events sent once.
//! - [`cloud_approvals`]: approvals decided in the control plane, as the kernel's approval
//!   step, each grant consumed once by an exclusive local marker.
//! - [`mcp`]: the same tools over MCP (stdio and streamable HTTP).
//! - [`sidecar`]: wiring it all together.
//!
//! **Architecture invariant:** the sidecar never decides policy and never runs a tool itself.
//! Every call it receives is handed to the kernel's one dispatch path
//! (`lumenflow_kernel::dispatch::Runtime::dispatch`) with the token subject as the caller's
//! identity; a `from` in a request body is never an identity (ENR-09). It does not depend on the
//! cloud crate: it speaks to the control plane only through the wire contracts.

pub mod auth;
pub mod cloud_approvals;
pub mod command_delivery;
pub mod control_plane;
pub mod delivery;
pub mod enrollment;
mod fsio;
pub mod inbox;
pub mod listing;
pub mod mcp;
pub mod openapi;
pub mod outbox;
pub mod seq;
pub mod server;
pub mod sidecar;

pub use sidecar::{ApprovalsMode, Sidecar, SidecarError, SidecarOptions};
