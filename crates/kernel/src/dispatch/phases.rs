//! The stages a call passes through, shared by the sync and the async way in: the checks end in
//! [`Checked`], an admitted call's started receipt is made durable before its tool runs.

use std::sync::Arc;

use lumenflow_contracts::tool_output::{codes, ToolOutput};
use serde_json::{Map, Value};

use super::{prepared, CallOutcome, Draft, RegisteredTool};
use crate::eventlog::LogError;
use crate::policy::PolicyDecision;

/// Whether the checks may block the calling thread. The sync path may; the async path's first
/// attempt may not, and stops with [`WouldBlock`] before a check that would (a task's state
/// read from the log, input paths looked up on disk, an approval), to run the call on a
/// blocking thread instead.
pub(super) trait Blocking {
    type Stop;
    fn about_to_block() -> Result<(), Self::Stop>;
}

pub(super) struct MayBlock;

impl Blocking for MayBlock {
    type Stop = std::convert::Infallible;
    fn about_to_block() -> Result<(), Self::Stop> {
        Ok(())
    }
}

pub(super) struct Inline;

/// A check of the async path's first attempt would block.
pub(super) struct WouldBlock;

impl Blocking for Inline {
    type Stop = WouldBlock;
    fn about_to_block() -> Result<(), Self::Stop> {
        Err(WouldBlock)
    }
}

/// Where the checks left a call.
pub(super) enum Checked {
    Refused(Refused),
    Admitted(Admitted),
}

/// A refused call's two receipts (written in one commit) and what to return once they are.
pub(super) struct Refused {
    pub(super) records: Vec<Map<String, Value>>,
    pub(super) outcome: CallOutcome,
}

/// A call that passed every check; its started receipt is in `draft.record`.
pub(super) struct Admitted {
    pub(super) draft: Draft,
    pub(super) tool: Arc<RegisteredTool>,
    pub(super) prepared: Arc<prepared::Prepared>,
    pub(super) decisions: Vec<PolicyDecision>,
    pub(super) approval_id: Option<String>,
}

impl Admitted {
    pub(super) fn take_started(&mut self) -> Map<String, Value> {
        std::mem::take(&mut self.draft.record)
    }

    /// The started receipt could not be written, so the tool does not run.
    pub(super) fn not_started(self, e: LogError) -> CallOutcome {
        let message =
            format!("the started receipt could not be written, so the tool did not run: {e}");
        let narrowed = self.prepared.effective.narrowed;
        self.draft.outcome(
            ToolOutput::fail(codes::RECORD_FAILED, message),
            self.decisions,
            self.approval_id,
            narrowed,
        )
    }
}
