//! The pack event bus: what packs may emit, who handles what comes in, and the durable records
//! that make at-least-once delivery safe (EVT-07, MAN-05, BKP-07, HND-01 to HND-09, Q34, Q43).
//!
//! - [`emit`]: the emitting side. A [`emit::PackEmitter`] is the only handle pack code gets: it
//!   refuses kinds the pack did not declare ("Unknown kind at emit") or that are outside its
//!   namespace ("Pack slug prefix mismatch"), builds the event with the workspace identity as
//!   `from`, stamps it in the local ledger, then pushes it to the sink.
//! - [`host`]: the registry of `{manifest, handlers}`, refusing a pack whose conductor fields are
//!   inconsistent, and routing inbound events to every subscribed handler, across packs.
//! - [`handler`] and [`replay`]: the handler trait with typed outcomes, and the durable per-pack
//!   replay log handlers use to stay idempotent.
//! - [`inbound`]: untrusted bytes in, events delivered or rejections recorded; never a panic.
//! - [`ledger`]: `.lumenflow/state/conductor/events.jsonl`, one line per emitted event.
//! - [`conformance`]: the public harness a pack's tests call to prove emit and replay behaviour.

pub mod conformance;
pub mod emit;
pub mod handler;
pub mod host;
pub mod inbound;
pub mod ledger;
pub mod replay;

use std::path::{Path, PathBuf};

/// `<workspace>/.lumenflow/state/conductor`.
pub fn conductor_state_dir(workspace_dir: &Path) -> PathBuf {
    workspace_dir
        .join(".lumenflow")
        .join("state")
        .join("conductor")
}

/// `<workspace>/.lumenflow/state/conductor/events.jsonl`, the local ledger (Q34).
pub fn ledger_path(workspace_dir: &Path) -> PathBuf {
    conductor_state_dir(workspace_dir).join("events.jsonl")
}

/// `<workspace>/.lumenflow/state/conductor/rejected.jsonl`, inbound events that were refused.
pub fn rejections_path(workspace_dir: &Path) -> PathBuf {
    conductor_state_dir(workspace_dir).join("rejected.jsonl")
}

/// `<workspace>/.lumenflow/state/conductor/replay/<pack-id>.jsonl` (Q21).
pub fn replay_log_path(workspace_dir: &Path, pack_id: &str) -> PathBuf {
    conductor_state_dir(workspace_dir)
        .join("replay")
        .join(format!("{pack_id}.jsonl"))
}
