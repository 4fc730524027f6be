//! The control plane ("cloud governs").
//!
//! It owns durable storage (SQLite or PostgreSQL behind one [`store::Store`]), enrollment codes
//! and the tokens they are exchanged for, device registrations, revocation, the tool registry and
//! invoke, event ingest with dedupe, approvals, receipt sealing and replay, runs' evidence bundles
//! ([`bundles`], verified on upload), all served over HTTP by [`server`], and the operator web
//! console ([`console`]).
//!
//! It never imports the kernel: it speaks only the wire contracts of `lumenflow-contracts` and
//! the keys and tokens of `lumenflow-proof`, so a workspace it governs can run any conforming
//! runtime.

pub mod auth;
pub mod bundles;
pub mod console;
pub mod error;
pub mod ingest;
pub mod receipts;
pub mod replay;
pub mod server;
pub mod store;

pub use error::{CloudError, CloudResult};
pub use store::Store;
