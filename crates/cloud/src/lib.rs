//! The control plane ("cloud governs").
//!
//! This crate will own storage (SQLite or PostgreSQL behind one trait), enrollment codes, the device
//! and tool registries, invoke, event ingest with dedupe, approvals, receipt sealing, replay and the
//! web console. It is still empty: the control plane lands with its own issue.
//!
//! It never imports the kernel: it speaks only the wire contracts of `lumenflow-contracts` and the
//! bundle format of `lumenflow-proof`, so a workspace it governs can run any conforming runtime.
