//! Errors of the approvals store, each with a stable `code()`.

use std::io;
use std::path::PathBuf;

use lumenflow_contracts::time::Timestamp;

use super::ApprovalStatus;

/// Why an approval operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// No approval with this id (or the id is not one this store could have issued).
    #[error("no approval `{id}` in this workspace")]
    NotFound { id: String },
    /// A decision was already recorded; a grant or a deny is final.
    #[error("approval `{id}` was already {outcome} by `{approver}`; a decision is final")]
    AlreadyDecided {
        id: String,
        /// `granted` or `denied`.
        outcome: &'static str,
        approver: String,
    },
    /// The request (or its grant) expired; expiry counts as a deny.
    #[error("approval `{id}` expired at {expires_at}; an expired approval counts as denied")]
    Expired { id: String, expires_at: Timestamp },
    /// The grant was already used by one execution.
    #[error("approval `{id}` was already consumed by an earlier call; a grant runs exactly once")]
    AlreadyConsumed { id: String },
    /// The grant is bound to another tool or another input.
    #[error(
        "approval `{id}` is bound to tool `{bound_tool}` with input `{bound_input_hash}`, \
         not to tool `{tool}` with input `{input_hash}`"
    )]
    BindingMismatch {
        id: String,
        bound_tool: String,
        bound_input_hash: String,
        tool: String,
        input_hash: String,
    },
    /// Consumption was attempted on an approval that is not granted (pending or denied).
    #[error("approval `{id}` is {status}, not granted")]
    NotGranted { id: String, status: ApprovalStatus },
    /// The caller's request or decision is malformed (empty tool, bad input hash, blank reason).
    #[error("invalid approval {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// A file of the store cannot be read as what the store writes; it is never taken as a grant.
    #[error("approval file `{}` is unreadable: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// Reading, writing or syncing a file failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl ApprovalError {
    /// Stable code: `APPROVAL_NOT_FOUND`, `APPROVAL_ALREADY_DECIDED`, `APPROVAL_EXPIRED`,
    /// `APPROVAL_ALREADY_CONSUMED`, `APPROVAL_BINDING_MISMATCH`, `APPROVAL_NOT_GRANTED`,
    /// `INVALID_ARGUMENT`, `APPROVAL_STORE_CORRUPT`, `IO_ERROR`.
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalError::NotFound { .. } => "APPROVAL_NOT_FOUND",
            ApprovalError::AlreadyDecided { .. } => "APPROVAL_ALREADY_DECIDED",
            ApprovalError::Expired { .. } => "APPROVAL_EXPIRED",
            ApprovalError::AlreadyConsumed { .. } => "APPROVAL_ALREADY_CONSUMED",
            ApprovalError::BindingMismatch { .. } => "APPROVAL_BINDING_MISMATCH",
            ApprovalError::NotGranted { .. } => "APPROVAL_NOT_GRANTED",
            ApprovalError::Invalid { .. } => "INVALID_ARGUMENT",
            ApprovalError::Corrupt { .. } => "APPROVAL_STORE_CORRUPT",
            ApprovalError::Io { .. } => "IO_ERROR",
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ApprovalError::Io {
            action,
            path,
            source,
        }
    }
}
