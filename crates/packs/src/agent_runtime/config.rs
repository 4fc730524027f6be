//! The `agent_runtime` block of `workspace.yaml`: which model server a turn talks to and how long a
//! turn may run.
//!
//! The model endpoint is the operator's decision, so it lives in the workspace file and never in a
//! call's input: a remote caller holding an `agent:execute-turn` token cannot point a turn (and the
//! tool results it carries) at a server of its choosing. `config.schema.json` beside this file is
//! what `lumenflow config set` and the loader validate the block against; this module reads it
//! again at the start of every turn, strictly, so a block edited by hand fails with a clear error
//! instead of a guess.

use std::path::Path;

use lumenflow_kernel::workspace::WorkspaceDocument;
use serde::Deserialize;
use serde_json::Value;

/// The `workspace.yaml` root key of this pack's configuration.
pub const CONFIG_KEY: &str = "agent_runtime";

/// Steps a turn may take when the workspace does not say (a call may ask for fewer, never more).
pub const DEFAULT_MAX_STEPS: u32 = 12;

/// The most steps any turn may take, whatever the call or workspace asks for.
pub const MAX_STEPS_LIMIT: u32 = 200;

/// How long one model request may take when the workspace does not say.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// How long one call may drive a turn when the workspace does not say: one hour.
pub const DEFAULT_MAX_TURN_SECONDS: u64 = 3_600;

/// The longest `max_turn_seconds` the workspace may set: one day.
pub const MAX_TURN_SECONDS_LIMIT: u64 = 86_400;

/// The workspace at `dir`, or `None` when the folder has no `workspace.yaml` (an embedder that
/// built its runtime from parts).
pub fn read_workspace(dir: &Path) -> Result<Option<WorkspaceDocument>, ConfigError> {
    if !dir.join("workspace.yaml").is_file() {
        return Ok(None);
    }
    lumenflow_kernel::workspace::read_workspace(dir)
        .map(Some)
        .map_err(|d| ConfigError::Workspace(d.to_string()))
}

/// The pack's configuration block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRuntimeConfig {
    /// The model server; without it only scripted plans can run.
    #[serde(default)]
    pub provider: Option<ProviderConfig>,
    /// The step limit of a turn: the operator's ceiling. A call's `max_steps` can only lower it
    /// (walk-E finding 3: it used to be a default a caller could raise to 200).
    #[serde(default)]
    pub max_steps: Option<u32>,
    /// How long one call may drive a turn, in seconds (model requests and tool calls together).
    /// Checked before each model request and each tool call; a step already running finishes.
    /// Time spent waiting for an approval between calls does not count.
    #[serde(default)]
    pub max_turn_seconds: Option<u64>,
    /// When set, the only tools a turn may call (least privilege for the model).
    #[serde(default)]
    pub allow_tools: Option<Vec<String>>,
}

/// An OpenAI-compatible chat-completions server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Only `openai_compatible` exists today.
    #[serde(default)]
    pub kind: Option<String>,
    /// The API root, e.g. `https://api.openai.com/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key (never the key itself); without it no
    /// `Authorization` header is sent (local servers).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Retries of a transient model failure (HTTP 429 or 5xx, timeout, connection refused),
    /// 0 to 5; [`super::openai::DEFAULT_MAX_RETRIES`] when absent.
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
}

/// Why the configuration could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read workspace.yaml: {0}")]
    Workspace(String),
    #[error("invalid `agent_runtime` block in workspace.yaml: {0}")]
    Invalid(String),
}

impl ConfigError {
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Workspace(_) => "WORKSPACE_INVALID",
            ConfigError::Invalid(_) => "CONFIG_INVALID",
        }
    }
}

impl AgentRuntimeConfig {
    /// The block of the workspace at `dir`; the defaults when the workspace has no block (or, for
    /// an embedder that built its runtime without one, no `workspace.yaml` at all).
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        Self::from_workspace(read_workspace(dir)?.as_ref())
    }

    /// The block of an already parsed workspace (the defaults without one).
    pub fn from_workspace(doc: Option<&WorkspaceDocument>) -> Result<Self, ConfigError> {
        match doc.and_then(|d| d.spec.pack_config.get(CONFIG_KEY)) {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(block) => Self::from_value(block.clone()),
        }
    }

    /// Parse a block (the value under `agent_runtime:`).
    pub fn from_value(block: Value) -> Result<Self, ConfigError> {
        let config: AgentRuntimeConfig =
            serde_json::from_value(block).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(p) = &config.provider {
            if let Some(kind) = p.kind.as_deref().filter(|k| *k != "openai_compatible") {
                return Err(ConfigError::Invalid(format!(
                    "`provider.kind` is `{kind}`; expected `openai_compatible`"
                )));
            }
            if let Some(n) = p
                .max_retries
                .filter(|n| *n > super::openai::MAX_RETRIES_LIMIT)
            {
                return Err(ConfigError::Invalid(format!(
                    "`provider.max_retries` must be between 0 and {}, got {n}",
                    super::openai::MAX_RETRIES_LIMIT
                )));
            }
            if let Some(name) = &p.api_key_env {
                if !lumenflow_kernel::manifest::is_env_name(name) {
                    return Err(ConfigError::Invalid(format!(
                        "`provider.api_key_env` must be an uppercase environment variable name, got `{name}`"
                    )));
                }
            }
        }
        if let Some(n) = config.max_steps {
            if n == 0 || n > MAX_STEPS_LIMIT {
                return Err(ConfigError::Invalid(format!(
                    "`max_steps` must be between 1 and {MAX_STEPS_LIMIT}, got {n}"
                )));
            }
        }
        if let Some(n) = config.max_turn_seconds {
            if n == 0 || n > MAX_TURN_SECONDS_LIMIT {
                return Err(ConfigError::Invalid(format!(
                    "`max_turn_seconds` must be between 1 and {MAX_TURN_SECONDS_LIMIT}, got {n}"
                )));
            }
        }
        Ok(config)
    }

    /// The steps a turn may take: the call's `max_steps` when it asks for fewer than the
    /// workspace allows, else the workspace's (or the default).
    pub fn step_limit(&self, requested: Option<u32>) -> u32 {
        let ceiling = self.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
        requested
            .map_or(ceiling, |n| n.min(ceiling))
            .clamp(1, MAX_STEPS_LIMIT)
    }

    /// How long one call may drive a turn.
    pub fn turn_time_limit(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.max_turn_seconds.unwrap_or(DEFAULT_MAX_TURN_SECONDS))
    }
}
