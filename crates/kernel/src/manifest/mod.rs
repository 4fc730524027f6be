//! Pack manifests (`manifest.yaml`): every field of the original LumenFlow manifest plus the
//! conductor fields, read strictly (KRN-01).
//!
//! The original silently dropped unknown keys; a misspelt `required_scopes` then meant a tool with
//! no scopes at all. Here an unknown key is an error with a did-you-mean, and every error names the
//! file, line and field. Parsing is [`parse_manifest`] (structure and types, through serde) followed
//! by [`validate`] (the value rules: kebab-case ids, semver, non-empty lists, entry syntax, ...).
//! The security lint of `pack validate` is separate, in [`lint`], because a manifest can be valid
//! and still unsafe.

pub mod lint;
mod validate;

use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use lumenflow_contracts::scope::ToolScope;

use crate::diagnostics::{self, Diagnostics, FileDiagnostic, SourceFile};
use crate::yaml::Node;

pub use validate::{
    is_config_key, is_env_name, is_kebab_case, is_semver, parse_entry, validate, EntryRef,
    KERNEL_OWNED_ROOT_KEYS, RESERVED_SLUGS,
};

pub const MANIFEST_FILE_NAME: &str = "manifest.yaml";

/// A domain pack's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackManifest {
    pub id: String,
    pub version: String,
    /// Event namespace of the pack; defaults to `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// May be empty only for a pack without tools (an event-only pack).
    pub task_types: Vec<String>,
    #[serde(default)]
    pub tools: Vec<ToolManifest>,
    #[serde(default)]
    pub policies: Vec<PolicyManifest>,
    #[serde(default)]
    pub evidence_types: Vec<String>,
    /// Kernel task state -> the pack's display name for it.
    #[serde(default)]
    pub state_aliases: IndexMap<String, String>,
    #[serde(default)]
    pub lane_templates: Vec<LaneTemplate>,
    /// The `workspace.yaml` root key this pack's configuration lives under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_key: Option<String>,
    /// JSON Schema file (relative to the pack root) for the config block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_factory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_factory: Option<String>,
    #[serde(default)]
    pub emitted_event_kinds: Vec<String>,
    #[serde(default)]
    pub subscribed_event_kinds: Vec<String>,
    /// Approval ids this pack's destructive surfaces need (checked against the workspace's
    /// approval providers when the workspace loads).
    #[serde(default)]
    pub required_approvals: Vec<String>,
    #[serde(default = "default_surfaces")]
    pub surfaces_required: Vec<Surface>,
    #[serde(default)]
    pub backpressure_policy: IndexMap<String, Backpressure>,
    /// Slugs of other packs this pack lets write under its `.lumenflow/state/<slug>/` (Q26).
    /// Consent is two-sided: the writer must list this pack's slug in its `state_folders`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_writers: Vec<String>,
    /// Slugs of other packs whose state folder this pack writes (each must list this pack's
    /// slug in its `state_writers`, and be loaded, or the writes stay reserved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_folders: Vec<String>,
}

fn default_surfaces() -> Vec<Surface> {
    vec![Surface::Http]
}

impl PackManifest {
    /// The event namespace: `slug`, or `id` when no slug is given.
    pub fn slug(&self) -> &str {
        self.slug.as_deref().unwrap_or(&self.id)
    }

    pub fn tool(&self, name: &str) -> Option<&ToolManifest> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// One tool a pack provides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolManifest {
    pub name: String,
    /// `relative/path[#export]`, resolved inside the pack root.
    pub entry: String,
    #[serde(default)]
    pub permission: Permission,
    pub required_scopes: Vec<ToolScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_env: Option<Vec<String>>,
    /// Hidden from external callers (HTTP, MCP, agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Map<String, Value>>,
    /// Approvals that must be granted before this tool runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_approvals: Vec<String>,
    /// The token scope a remote caller needs (default: `agent:execute-turn` for that tool,
    /// `workspace` for every other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_scope: Option<String>,
}

impl ToolManifest {
    pub fn is_internal(&self) -> bool {
        self.internal_only.unwrap_or(false)
    }

    /// The bearer-token scope a remote caller needs to see and call this tool (Q16): its
    /// `token_scope`, else `agent:execute-turn` for the tool of that name, else `workspace`.
    pub fn required_token_scope(&self) -> &str {
        use lumenflow_contracts::identity::{SCOPE_EXECUTE_TURN, SCOPE_WORKSPACE};
        match &self.token_scope {
            Some(scope) => scope,
            None if self.name == SCOPE_EXECUTE_TURN => SCOPE_EXECUTE_TURN,
            None => SCOPE_WORKSPACE,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    #[default]
    Read,
    Write,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

/// A rule a pack contributes to the policy cascade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyManifest {
    pub id: String,
    pub trigger: PolicyTrigger,
    pub decision: PolicyDecisionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which evaluations the rule applies to; absent, every evaluation of its trigger (KRN-08).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<crate::policy::RuleCondition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyTrigger {
    OnToolRequest,
    OnClaim,
    OnCompletion,
    OnEvidenceAdded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDecisionKind {
    Allow,
    Deny,
    ApprovalRequired,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneTemplate {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Where a pack must be reachable for it to be useful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Surface {
    Http,
    Mcp,
    SidekickChannel,
}

/// What happens to an emitted event when the control plane is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backpressure {
    /// Sent once, dropped on failure.
    Ephemeral,
    /// Kept in the outbox until acknowledged.
    Queue,
}

/// A parsed manifest together with the text it came from, so later checks can point into it.
#[derive(Debug, Clone)]
pub struct ManifestDocument {
    pub manifest: PackManifest,
    pub source: SourceFile,
    pub root: Node,
}

impl ManifestDocument {
    /// A diagnostic about the field at `path` of this manifest.
    pub fn diagnostic(
        &self,
        code: &'static str,
        path: &crate::yaml::FieldPath,
        message: impl Into<String>,
    ) -> FileDiagnostic {
        FileDiagnostic::at_field(code, &self.source, &self.root, path, false, message)
    }
}

/// Parse and validate manifest text. All value-rule violations are reported together.
pub fn parse_manifest(source: SourceFile) -> Result<ManifestDocument, Diagnostics> {
    let root = diagnostics::parse_yaml(&source)?;
    let manifest: PackManifest = diagnostics::from_yaml(&source, &root, "MANIFEST_INVALID")?;
    let doc = ManifestDocument {
        manifest,
        source,
        root,
    };
    validate(&doc).into_result()?;
    Ok(doc)
}

/// Read `<pack_root>/manifest.yaml`; the diagnostics show `display_root/manifest.yaml`.
pub fn read_manifest(pack_root: &Path) -> Result<ManifestDocument, Diagnostics> {
    let path = pack_root.join(MANIFEST_FILE_NAME);
    let source = SourceFile::read(&path).map_err(|mut d| {
        if d.code == "FILE_NOT_READABLE" {
            d.code = "MANIFEST_NOT_FOUND";
        }
        d
    })?;
    parse_manifest(source)
}
