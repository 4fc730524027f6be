//! Durable approvals (KRN-09): a tool call that needs a human's approval asks once, waits for a
//! grant bound to exactly that tool and input, and runs exactly once per grant.
//!
//! The original kept pending approvals in memory, recorded no grant and so asked again on every
//! retry (`original/dispatch.md` §2.5). Here an approval is a record in a store behind the
//! [`ApprovalProvider`] trait: [`LocalApprovals`] keeps it in files under the workspace; the control
//! plane can provide the same trait later (DESIGN.md, "Approvals are durable").
//!
//! # Life of an approval
//!
//! ```text
//!            grant               consume (one execution)
//! pending ─────────▶ granted ──────────────────────────▶ consumed
//!    │  deny               │
//!    ├──────▶ denied       │ now > expires_at
//!    │ now > expires_at    ▼
//!    └────────────────▶ expired   (= denied)
//! ```
//!
//! - A request is bound to a tool name and an input hash, `sha256:<hex>` of the RFC 8785
//!   canonical JSON of the tool input ([`input_hash`]); a grant only ever lets *that* call run.
//! - A decision (grant or deny) records approver, reason and time and is final: deciding again,
//!   or granting something expired or consumed, is refused with the code.
//! - Expiry is computed when an approval is read ([`ApprovalRequest::status`]): past `expires_at`
//!   a pending request or an unused grant is `expired`, which counts as a deny. The default time
//!   to live is [`DEFAULT_TTL`] (24 h), and a grant expires with its request.
//! - A granted approval is consumed by exactly one execution, even with concurrent processes,
//!   *before* the tool runs; a second call with the same input asks again.
//!
//! # The dispatch path
//!
//! [`gate`] is the one call dispatch makes once the policy said `approval_required`:
//!
//! 1. a granted, unexpired, unconsumed approval bound to this tool + input hash → consume it and
//!    return [`Gate::Proceed`] (the caller runs the tool once and puts `approval_id` in its
//!    receipts);
//! 2. else a pending, unexpired request for the same tool + input hash → return it as
//!    [`Gate::Required`] (no duplicate requests pile up while a human decides);
//! 3. else a new pending request → [`Gate::Required`] with `newly_created: true`. The caller
//!    answers `APPROVAL_REQUIRED` ([`APPROVAL_REQUIRED`], [`required_message`]).
//!
//! Denied, expired and consumed approvals are never proceeded, and a file of the store that
//! cannot be read is never taken for a grant (fail closed).
//!
//! # On disk ([`LocalApprovals`])
//!
//! `<workspace>/.lumenflow/state/approvals/`, three kinds of file per approval:
//!
//! - `<id>.json`, the record: `{schema_version: 1, id, tool, input_hash, task, run, requested_by,
//!   requested_at, expires_at, reason, required_approval_ids, decision}`, created exclusively
//!   (temp file, fsync, `link`, directory fsync), so ids are unique per workspace and a record is
//!   never seen half written; after a decision it is rewritten atomically with the decision, as a
//!   readable copy;
//! - `<id>.decision`, `{schema_version: 1, id, decision: {outcome: granted|denied, approver,
//!   reason, decided_at}}`, created exclusively the same way: the one arbiter of the decision, so
//!   a concurrent grant and deny cannot both succeed;
//! - `<id>.consumed`, `{schema_version: 1, id, tool, input_hash, consumed_at}`, created with
//!   `O_CREAT|O_EXCL` and fsync'd (file and directory) before the tool runs: its existence is the
//!   one source of truth for "consumed", so exactly one caller ever consumes a grant; a crash after
//!   creating it burns the grant rather than risking a second run.
//!
//! Beside them, `.create.lock` (empty): its exclusive `flock` is held while a request looks for
//! a pending approval of its call and creates one if there is none, so two processes asking for
//! one call share one pending request.
//!
//! A record whose decision copy is not confirmed by `<id>.decision`, or differs from it, is corrupt
//! (`APPROVAL_STORE_CORRUPT`, naming the file), never a grant.

mod error;
mod local;

use std::time::Duration;

use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_contracts::digest::{Sha256Digest, SHA256_PREFIX};
use lumenflow_contracts::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::ApprovalError;
pub use local::{approvals_dir, LocalApprovals};

/// The code a tool call answers with while it waits for a grant.
pub const APPROVAL_REQUIRED: &str = "APPROVAL_REQUIRED";

/// How long a request waits for a decision (and a grant waits for its execution) by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The input hash a request is bound to: `sha256:<hex>` of the RFC 8785 canonical JSON of `input`.
pub fn input_hash(input: &Value) -> String {
    format!("{SHA256_PREFIX}{}", canonical_hash(input))
}

/// One approval: the request, and what happened to it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// `apr_` followed by 20 characters of `[0-9a-z]`.
    pub id: String,
    /// The tool the approval is bound to.
    pub tool: String,
    /// `sha256:<hex>` of the canonical JSON of the tool input ([`input_hash`]).
    pub input_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    pub requested_by: String,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    /// Why approval is needed, for the person deciding (the rules or required approvals behind it).
    pub reason: String,
    /// The rule ids and `required_approvals` ids that asked for approval.
    #[serde(default)]
    pub required_approval_ids: Vec<String>,
    /// The grant or deny, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The grant was used by one execution.
    #[serde(default)]
    pub consumed: bool,
    /// When it was consumed, if the store could tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_at: Option<Timestamp>,
}

impl ApprovalRequest {
    /// Where the approval stands at `now`. Expiry is strict: at `expires_at` exactly the approval
    /// is still valid; a millisecond later a pending request or unused grant is `expired`.
    pub fn status(&self, now: Timestamp) -> ApprovalStatus {
        if self.consumed {
            return ApprovalStatus::Consumed;
        }
        match &self.decision {
            Some(Decision::Denied { .. }) => ApprovalStatus::Denied,
            _ if now > self.expires_at => ApprovalStatus::Expired,
            Some(Decision::Granted { .. }) => ApprovalStatus::Granted,
            None => ApprovalStatus::Pending,
        }
    }

    /// Is this approval bound to exactly this tool and input?
    pub fn is_bound_to(&self, tool: &str, input_hash: &str) -> bool {
        self.tool == tool && self.input_hash == input_hash
    }
}

/// A human's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    Granted {
        approver: String,
        reason: String,
        decided_at: Timestamp,
    },
    Denied {
        approver: String,
        reason: String,
        decided_at: Timestamp,
    },
}

impl Decision {
    pub fn approver(&self) -> &str {
        match self {
            Decision::Granted { approver, .. } | Decision::Denied { approver, .. } => approver,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Granted { reason, .. } | Decision::Denied { reason, .. } => reason,
        }
    }

    pub fn decided_at(&self) -> Timestamp {
        match self {
            Decision::Granted { decided_at, .. } | Decision::Denied { decided_at, .. } => {
                *decided_at
            }
        }
    }

    pub fn is_grant(&self) -> bool {
        matches!(self, Decision::Granted { .. })
    }

    /// `granted` or `denied`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Granted { .. } => "granted",
            Decision::Denied { .. } => "denied",
        }
    }
}

/// Where an approval stands (computed at read time, see [`ApprovalRequest::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Granted,
    Denied,
    Consumed,
    Expired,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 5] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Granted,
        ApprovalStatus::Denied,
        ApprovalStatus::Consumed,
        ApprovalStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Granted => "granted",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Consumed => "consumed",
            ApprovalStatus::Expired => "expired",
        }
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a new request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    pub tool: String,
    /// `sha256:<64 lowercase hex>`, see [`input_hash`].
    pub input_hash: String,
    pub task: Option<String>,
    pub run: Option<String>,
    pub requested_by: String,
    pub reason: String,
    pub required_approval_ids: Vec<String>,
    pub requested_at: Timestamp,
    /// `expires_at` = `requested_at` + `ttl`.
    pub ttl: Duration,
}

impl NewApproval {
    /// `requested_at + ttl`, saturating.
    pub fn expires_at(&self) -> Timestamp {
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_unix_millis(self.requested_at.unix_millis().saturating_add(ttl))
    }

    /// Refuses an empty tool or requester and an input hash that is not `sha256:<64 hex>`.
    pub fn validate(&self) -> Result<(), ApprovalError> {
        let invalid = |reason: String| ApprovalError::Invalid {
            what: "request",
            reason,
        };
        if self.tool.trim().is_empty() {
            return Err(invalid("the tool name is empty".into()));
        }
        if self.requested_by.trim().is_empty() {
            return Err(invalid("`requested_by` is empty".into()));
        }
        check_input_hash(&self.input_hash)
    }
}

/// Refuses anything but `sha256:<64 lowercase hex>`.
pub fn check_input_hash(input_hash: &str) -> Result<(), ApprovalError> {
    Sha256Digest::parse_prefixed(input_hash)
        .map(|_| ())
        .map_err(|e| ApprovalError::Invalid {
            what: "input hash",
            reason: format!("`{}`: {e}", short(input_hash, 80)),
        })
}

/// A successful consumption: the caller holds the only right to run the tool once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeOutcome {
    /// The approval, now `consumed`.
    pub approval: ApprovalRequest,
    pub consumed_at: Timestamp,
}

/// Which approvals [`ApprovalProvider::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Only approvals in this status at `now`; `None` for all.
    pub status: Option<ApprovalStatus>,
    /// Only approvals for this tool.
    pub tool: Option<String>,
    /// The time statuses are computed at.
    pub now: Timestamp,
}

impl ApprovalFilter {
    pub fn all(now: Timestamp) -> Self {
        ApprovalFilter {
            status: None,
            tool: None,
            now,
        }
    }

    pub fn status(status: ApprovalStatus, now: Timestamp) -> Self {
        ApprovalFilter {
            status: Some(status),
            tool: None,
            now,
        }
    }

    pub fn matches(&self, approval: &ApprovalRequest) -> bool {
        self.status.is_none_or(|s| approval.status(self.now) == s)
            && self.tool.as_deref().is_none_or(|t| approval.tool == t)
    }
}

/// A file of the store that could not be read (listed, never used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableApproval {
    /// The file, as the provider names it (a path for [`LocalApprovals`]).
    pub file: String,
    pub reason: String,
}

/// What [`ApprovalProvider::list`] found, oldest request first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalList {
    pub approvals: Vec<ApprovalRequest>,
    /// Records the provider could not read; they are never granted.
    pub unreadable: Vec<UnreadableApproval>,
}

/// A store of approvals: local files ([`LocalApprovals`]) or, later, the control plane.
///
/// Every method that changes state returns only after the change is durable. Implementations
/// must make [`consume`](ApprovalProvider::consume) exactly-once across processes and
/// [`decide`](ApprovalProvider::decide) final (one decision wins, the others are refused).
pub trait ApprovalProvider: Send + Sync {
    /// Store a new pending request (always a new one; see
    /// [`request_or_reuse`](ApprovalProvider::request_or_reuse)).
    fn request(&self, req: NewApproval) -> Result<ApprovalRequest, ApprovalError>;

    /// A pending request, unexpired at `now`, bound to exactly this tool and input hash (the
    /// oldest if several).
    fn find_pending(
        &self,
        tool: &str,
        input_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ApprovalRequest>, ApprovalError>;

    /// The pending request for this binding if there is one (`false`), else a new one (`true`).
    /// The default is [`find_pending`](ApprovalProvider::find_pending) then
    /// [`request`](ApprovalProvider::request); a provider should make the pair atomic.
    fn request_or_reuse(&self, req: NewApproval) -> Result<(ApprovalRequest, bool), ApprovalError> {
        req.validate()?;
        match self.find_pending(&req.tool, &req.input_hash, req.requested_at)? {
            Some(pending) => Ok((pending, false)),
            None => self.request(req).map(|created| (created, true)),
        }
    }

    /// A granted approval, unexpired and unconsumed at `now`, bound to exactly this tool and input
    /// hash (the one expiring first if several). Unreadable records are skipped: never a grant.
    fn find_grant(
        &self,
        tool: &str,
        input_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ApprovalRequest>, ApprovalError>;

    /// Use the grant `id` for one execution of `tool` with `input_hash`. `Ok` means this caller,
    /// and no other, may run the tool once; the consumption is durable before this returns.
    fn consume(
        &self,
        id: &str,
        tool: &str,
        input_hash: &str,
        now: Timestamp,
    ) -> Result<ConsumeOutcome, ApprovalError>;

    /// One approval by id.
    fn get(&self, id: &str) -> Result<ApprovalRequest, ApprovalError>;

    /// The approvals matching `filter`, oldest request first.
    fn list(&self, filter: &ApprovalFilter) -> Result<ApprovalList, ApprovalError>;

    /// Grant or deny a pending, unexpired request (expiry judged at the decision's `decided_at`).
    /// Returns the approval with its decision.
    fn decide(&self, id: &str, decision: Decision) -> Result<ApprovalRequest, ApprovalError>;
}

/// What the dispatch path knows about the call that needs approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateContext {
    pub task: Option<String>,
    pub run: Option<String>,
    /// Who asks (the agent or session making the call).
    pub requested_by: String,
    /// Time to live of a new request ([`DEFAULT_TTL`] with [`GateContext::new`]).
    pub ttl: Duration,
    /// Why approval is needed, for the person deciding.
    pub reason: String,
    /// The rule ids and `required_approvals` ids behind it.
    pub required_ids: Vec<String>,
}

impl GateContext {
    /// A context with no task or run, no ids and the default time to live.
    pub fn new(requested_by: impl Into<String>, reason: impl Into<String>) -> Self {
        GateContext {
            task: None,
            run: None,
            requested_by: requested_by.into(),
            ttl: DEFAULT_TTL,
            reason: reason.into(),
            required_ids: Vec::new(),
        }
    }
}

/// What [`gate`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// A grant was consumed for this call: run the tool once, with `approval_id` in its receipts.
    Proceed {
        approval_id: String,
        /// The consumed approval (approver, reason and time are in its decision).
        approval: ApprovalRequest,
    },
    /// No usable grant: answer `APPROVAL_REQUIRED` with the pending request's id.
    Required {
        approval: ApprovalRequest,
        /// `false` when an existing pending request for the same tool + input was returned.
        newly_created: bool,
    },
}

/// How often [`gate`] looks for another grant after losing one to a concurrent caller.
const GRANT_ATTEMPTS: usize = 16;

/// The approvals step of a tool call (KRN-10, after the rules): consume a matching grant, else
/// return the pending request for this call, creating it if needed. See the module docs.
pub fn gate(
    provider: &dyn ApprovalProvider,
    tool: &str,
    input_hash: &str,
    ctx: GateContext,
    now: Timestamp,
) -> Result<Gate, ApprovalError> {
    check_input_hash(input_hash)?;
    for _ in 0..GRANT_ATTEMPTS {
        let Some(grant) = provider.find_grant(tool, input_hash, now)? else {
            break;
        };
        match provider.consume(&grant.id, tool, input_hash, now) {
            Ok(outcome) => {
                return Ok(Gate::Proceed {
                    approval_id: outcome.approval.id.clone(),
                    approval: outcome.approval,
                })
            }
            // Another caller got there first (or the grant vanished meanwhile): look again.
            Err(
                ApprovalError::AlreadyConsumed { .. }
                | ApprovalError::Expired { .. }
                | ApprovalError::NotGranted { .. }
                | ApprovalError::NotFound { .. },
            ) => continue,
            Err(e) => return Err(e),
        }
    }
    let (approval, newly_created) = provider.request_or_reuse(NewApproval {
        tool: tool.to_string(),
        input_hash: input_hash.to_string(),
        task: ctx.task,
        run: ctx.run,
        requested_by: ctx.requested_by,
        reason: ctx.reason,
        required_approval_ids: ctx.required_ids,
        requested_at: now,
        ttl: ctx.ttl,
    })?;
    Ok(Gate::Required {
        approval,
        newly_created,
    })
}

/// The `APPROVAL_REQUIRED` message for a pending request: what needs approval, why, and how to
/// grant it locally.
pub fn required_message(approval: &ApprovalRequest) -> String {
    let why = if approval.reason.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", approval.reason)
    };
    format!(
        "Tool execution requires human approval{why} (approval `{}`, expires {}); grant it with \
         `lumenflow approvals grant {} --reason \"...\"` and call the tool again with the same input",
        approval.id, approval.expires_at, approval.id
    )
}

/// The `APPROVAL_REQUIRED` message for a caller that is not the local operator (an agent over
/// HTTP or MCP): what waits for whom, without the command that grants it. An agent with a shell
/// as the same user could run that command itself; it is the operator's to run.
pub fn required_message_for_agent(approval: &ApprovalRequest) -> String {
    let why = if approval.reason.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", approval.reason)
    };
    format!(
        "Tool execution requires human approval{why} (approval `{}`, expires {}); an operator \
         must decide it, then call the tool again with the same input",
        approval.id, approval.expires_at
    )
}

/// The latest denial of a call to `tool` with this input, if the operator said no before: a
/// caller that asks again should hear it, not only see a new request.
pub fn last_denial(
    provider: &dyn ApprovalProvider,
    tool: &str,
    input_hash: &str,
    now: Timestamp,
) -> Option<ApprovalRequest> {
    let filter = ApprovalFilter {
        status: Some(ApprovalStatus::Denied),
        tool: Some(tool.to_string()),
        now,
    };
    provider
        .list(&filter)
        .ok()?
        .approvals
        .into_iter()
        .filter(|a| a.input_hash == input_hash)
        .filter_map(|a| {
            let at = match &a.decision {
                Some(Decision::Denied { decided_at, .. }) => decided_at.unix_millis(),
                _ => return None,
            };
            Some((at, a))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, a)| a)
}

/// How a previous denial reads in a new request's message.
pub fn denial_note(denied: &ApprovalRequest) -> String {
    match &denied.decision {
        Some(Decision::Denied {
            approver,
            reason,
            decided_at,
        }) => format!(
            "the same call was denied before: approval `{}` by {approver} at {decided_at}: \"{}\"",
            denied.id,
            short(reason, 200)
        ),
        _ => format!("the same call was denied before (approval `{}`)", denied.id),
    }
}

/// At most `max` characters of `s`, for messages.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}
