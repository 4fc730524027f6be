//! The handler side of a pack (HND-01, HND-02): a handler receives an inbound event and says what
//! it did, with a typed status and a short action word.

use std::fmt;
use std::path::{Path, PathBuf};

use lumenflow_contracts::event::KernelEventV2;
use serde::Serialize;

use super::replay::ReplayLog;

/// What a handler did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerStatus {
    /// The effect ran (this time).
    Handled,
    /// The event was seen before (its replay key is recorded); nothing ran.
    Replayed,
    /// Not for this handler (another pack's job, a stale request); nothing ran.
    Ignored,
}

/// A handler's result: status plus an action (`recovered`, `noop`, `wrong-pack`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandlerOutcome {
    pub status: HandlerStatus,
    pub action: String,
}

impl HandlerOutcome {
    pub fn handled(action: impl Into<String>) -> Self {
        HandlerOutcome {
            status: HandlerStatus::Handled,
            action: action.into(),
        }
    }

    pub fn replayed() -> Self {
        HandlerOutcome {
            status: HandlerStatus::Replayed,
            action: "noop".into(),
        }
    }

    pub fn ignored(action: impl Into<String>) -> Self {
        HandlerOutcome {
            status: HandlerStatus::Ignored,
            action: action.into(),
        }
    }
}

/// A handler failed; the event stays unacknowledged and will be delivered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    pub message: String,
}

impl HandlerError {
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HandlerError {}

/// What a handler may use: its pack's replay log and state folder, and the workspace.
pub struct HandlerContext<'a> {
    pub pack_id: &'a str,
    pub replay_log: &'a ReplayLog,
    pub workspace_dir: &'a Path,
    /// `<workspace>/.lumenflow/state/<slug>`: the one place under `.lumenflow/` a pack may write.
    pub state_dir: PathBuf,
}

/// A subscriber for one event kind. Implementations must be idempotent: delivery is at least
/// once (DLV-02), so check the replay log before the effect and record the key after it.
pub trait PackEventHandler: Send + Sync {
    fn handle(
        &self,
        event: &KernelEventV2,
        ctx: &HandlerContext<'_>,
    ) -> Result<HandlerOutcome, HandlerError>;
}

impl<F> PackEventHandler for F
where
    F: Fn(&KernelEventV2, &HandlerContext<'_>) -> Result<HandlerOutcome, HandlerError>
        + Send
        + Sync,
{
    fn handle(
        &self,
        event: &KernelEventV2,
        ctx: &HandlerContext<'_>,
    ) -> Result<HandlerOutcome, HandlerError> {
        self(event, ctx)
    }
}
