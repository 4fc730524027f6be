//! The conductor sidecar: the workspace's governed HTTP and MCP surface.
//!
//! This crate will own enrollment state, token verification, `GET /tools`, `POST /tools/:name`,
//! inbound events, the outbox and delivery to the control plane. It is still empty: the sidecar
//! lands with the conductor issues.
//!
//! It never decides policy itself: every tool call it receives is handed to the kernel's one
//! dispatch path, with the token subject as the caller's identity.
