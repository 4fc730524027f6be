//! What a model is to the turn loop: something that, given the goal, the tools it may use and the
//! transcript so far, proposes the next step.
//!
//! The loop never lets a provider execute anything. A provider only *proposes* a call; the loop
//! sends it through the kernel's dispatch path (scopes, rules, approvals, receipts) and hands
//! back what came out. That is why one trait covers a real model server
//! ([`OpenAiCompatible`](super::openai::OpenAiCompatible)) and a scripted plan
//! ([`ScriptedPlanner`](super::scripted::ScriptedPlanner)): the governance does not depend on
//! which one is talking.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::state::StepRecord;

/// A tool the turn may call, as the model sees it (built from the tool's manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// The manifest's `input_schema` (a JSON Schema object), when it declares one.
    pub input_schema: Option<Map<String, Value>>,
    /// The tool may change state (`write` or `admin` permission). A name outside the catalogue
    /// is not mutating: the dispatch path refuses it before anything runs.
    pub mutating: bool,
}

/// What the plan says about a step's outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The call must succeed; any refusal or failure ends the turn.
    #[default]
    Success,
    /// The call must be refused (a plan that shows a rule at work); a success ends the turn.
    Refused,
}

/// The next step a provider proposes.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Call `tool` with `input` (through the dispatch path).
    Call {
        /// The provider's id for the call (an OpenAI `tool_call_id`), echoed in the transcript.
        call_id: Option<String>,
        tool: String,
        input: Value,
        expect: Expect,
    },
    /// The goal is reached (or the plan is done).
    Finish { summary: String },
    /// The model gives up; the turn is aborted with this reason.
    Abort { reason: String },
}

/// What a provider sees when asked for the next step.
pub struct TurnView<'a> {
    pub turn_id: &'a str,
    pub goal: &'a str,
    /// The tools the turn may call (empty when the catalogue is not needed, for scripted plans).
    pub tools: &'a [ToolSpec],
    /// Every step taken so far, with its outcome, in order.
    pub transcript: &'a [StepRecord],
}

/// Why a provider could not propose a step, with its code. A plan error aborts the turn; the
/// others (after the client's retries of transient ones) leave it `provider_failed`, resumable
/// by calling it again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// No provider is configured for a turn without a plan.
    #[error("{0}")]
    NotConfigured(String),
    /// The plan is unreadable or malformed.
    #[error("{0}")]
    Plan(String),
    /// The server could not be reached (connection, timeout, TLS).
    #[error("model provider unreachable: {0}")]
    Transport(String),
    /// The server answered with an HTTP error status.
    #[error("model provider answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// The server answered, but not with a reply the loop can use (not JSON, wrong shape,
    /// tool arguments that are not a JSON object).
    #[error("model reply is invalid: {0}")]
    InvalidReply(String),
}

impl ProviderError {
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::NotConfigured(_) => "MODEL_PROVIDER_NOT_CONFIGURED",
            ProviderError::Plan(_) => "PLAN_INVALID",
            ProviderError::Transport(_) => "MODEL_PROVIDER_UNAVAILABLE",
            ProviderError::Http { .. } => "MODEL_PROVIDER_HTTP_ERROR",
            ProviderError::InvalidReply(_) => "MODEL_REPLY_INVALID",
        }
    }
}

/// A model, or anything that plays one.
pub trait ModelProvider: Send {
    /// `openai_compatible` or `scripted`: recorded in the turn state and result.
    fn kind(&self) -> &'static str;

    /// The next step, given everything so far. Must not execute anything itself.
    fn next_step(&mut self, view: &TurnView<'_>) -> Result<Step, ProviderError>;

    /// True when [`next_step`](Self::next_step) is a pure, instant computation (a script): the
    /// loop may then write a step's result together with the next step's start.
    fn answers_instantly(&self) -> bool {
        false
    }
}
