//! The typed parts of `workspace.yaml` and their value rules.

use std::collections::HashSet;
use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use lumenflow_contracts::scope::ToolScope;

use super::WorkspaceDocument;
use crate::diagnostics::Diagnostics;
use crate::manifest::{is_env_name, is_semver, PolicyDecisionKind, PolicyManifest};
use crate::yaml::FieldPath;

/// Everything `workspace.yaml` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceSpec {
    pub id: String,
    pub name: String,
    pub packs: Vec<PackPin>,
    pub lanes: Vec<LaneSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<WorkspacePolicies>,
    pub security: SecuritySpec,
    /// The raw `control_plane` block; see [`WorkspaceSpec::control_plane`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<Value>,
    pub memory_namespace: String,
    pub event_namespace: String,
    pub sandbox: SandboxMode,
    /// Every root key that is not the kernel's: pack config blocks, by key, in file order.
    #[serde(flatten)]
    pub pack_config: IndexMap<String, Value>,
}

impl WorkspaceSpec {
    pub fn pin(&self, id: &str) -> Option<&PackPin> {
        self.packs.iter().find(|p| p.id == id)
    }

    pub fn lane(&self, id: &str) -> Option<&LaneSpec> {
        self.lanes.iter().find(|l| l.id == id)
    }

    /// The `control_plane` block, complete and typed, or every reason it is not (with the
    /// original's messages). A workspace may hold a block that is still being filled in with
    /// `config set`; it is only required to be complete when something connects with it.
    pub fn control_plane(&self) -> Option<Result<ControlPlaneConfig, Vec<String>>> {
        let raw = self.control_plane.as_ref()?;
        let issues = check_control_plane(raw, false);
        if !issues.is_empty() {
            return Some(Err(issues.into_iter().map(|(_, m)| m).collect()));
        }
        Some(serde_json::from_value(raw.clone()).map_err(|e| vec![e.to_string()]))
    }
}

/// A pinned pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackPin {
    pub id: String,
    pub version: String,
    pub integrity: Integrity,
    pub source: PackSource,
    /// Where a `git` pack was cloned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The git revision (tag, branch or commit) that was installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_url: Option<String>,
}

/// `dev` (verification skipped, refused in production) or a pinned content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    Dev,
    /// Bare lowercase hex of the pack hash.
    Sha256(String),
}

impl Integrity {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "dev" {
            return Ok(Integrity::Dev);
        }
        match s.strip_prefix("sha256:") {
            Some(hex)
                if hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Integrity::Sha256(hex.to_string()))
            }
            _ => Err(format!("Expected dev or sha256:<64-hex>, found `{s}`")),
        }
    }
}

impl fmt::Display for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Integrity::Dev => f.write_str("dev"),
            Integrity::Sha256(hex) => write!(f, "sha256:{hex}"),
        }
    }
}

impl Serialize for Integrity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Integrity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Integrity::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackSource {
    Local,
    Git,
    Registry,
}

impl PackSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PackSource::Local => "local",
            PackSource::Git => "git",
            PackSource::Registry => "registry",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneSpec {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub allowed_scopes: Vec<ToolScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wip_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_overrides: Option<WorkspacePolicies>,
}

/// Workspace-level rules, evaluated before every lane, pack and task rule.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePolicies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_decision: Option<PolicyDecisionKind>,
    /// Lets this layer's default or `allow` rules replace a deny that came from a higher layer's
    /// default (never a rule's deny).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_loosening: bool,
    #[serde(default)]
    pub rules: Vec<PolicyManifest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySpec {
    pub allowed_scopes: Vec<ToolScope>,
    #[serde(default)]
    pub network_default: NetworkDefault,
    #[serde(default)]
    pub deny_overlays: Vec<String>,
    /// Bare package names script packs may import (KRN-05); the original hard-coded `simple-git`.
    #[serde(default = "default_import_allowlist")]
    pub import_allowlist: Vec<String>,
}

fn default_import_allowlist() -> Vec<String> {
    vec!["simple-git".to_string()]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkDefault {
    #[default]
    Off,
    Full,
}

/// How subprocess tools are isolated. `none` must be chosen explicitly and is recorded in every
/// receipt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    #[default]
    Bubblewrap,
    None,
}

/// The `control_plane` block: strict, as the original's kernel schema, plus the two optional keys
/// its telemetry reads (REQUIREMENTS Q30).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    pub endpoint: String,
    pub org_id: String,
    pub project_id: String,
    pub sync_interval: u64,
    pub policy_mode: PolicyMode,
    pub auth: ControlPlaneAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneAuth {
    pub token_env: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    Authoritative,
    TightenOnly,
    DevOverride,
}

/// The `control_plane` keys, for did-you-mean and `config set` validation.
pub const CONTROL_PLANE_KEYS: &[&str] = &[
    "endpoint",
    "org_id",
    "project_id",
    "sync_interval",
    "policy_mode",
    "auth",
    "batch_size",
    "timeout_ms",
];

/// Check a `control_plane` value with the original's messages (`original/control-plane.md` §2.4).
/// `partial` allows missing fields (a `config set` in progress); unknown keys are always refused.
pub fn check_control_plane(value: &Value, partial: bool) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    let Some(obj) = value.as_object() else {
        issues.push((
            "control_plane".into(),
            "Invalid control_plane config: expected an object".into(),
        ));
        return issues;
    };
    for key in obj.keys() {
        if !CONTROL_PLANE_KEYS.contains(&key.as_str()) {
            issues.push((
                format!("control_plane.{key}"),
                format!("Invalid control_plane config: unknown field control_plane.{key}"),
            ));
        }
    }
    if !partial {
        for field in [
            "endpoint",
            "org_id",
            "project_id",
            "sync_interval",
            "policy_mode",
            "auth",
        ] {
            if !obj.contains_key(field) {
                issues.push((
                    "control_plane".into(),
                    format!("Invalid control_plane config: missing required field control_plane.{field}"),
                ));
            }
        }
    }
    if let Some(v) = obj.get("endpoint") {
        match v.as_str() {
            Some(s) if !s.trim().is_empty() => {
                if url::Url::parse(s).is_err() {
                    issues.push((
                        "control_plane.endpoint".into(),
                        "Invalid control_plane.endpoint: expected a valid URL".into(),
                    ));
                }
            }
            _ => issues.push((
                "control_plane.endpoint".into(),
                "Invalid control_plane.endpoint: expected a non-empty string".into(),
            )),
        }
    }
    for field in ["org_id", "project_id"] {
        if let Some(v) = obj.get(field) {
            if v.as_str().is_none_or(|s| s.trim().is_empty()) {
                issues.push((
                    format!("control_plane.{field}"),
                    format!("Invalid control_plane.{field}: expected a non-empty string"),
                ));
            }
        }
    }
    for field in ["sync_interval", "batch_size", "timeout_ms"] {
        if let Some(v) = obj.get(field) {
            if v.as_u64().is_none_or(|n| n == 0) {
                issues.push((
                    format!("control_plane.{field}"),
                    format!("Invalid control_plane.{field}: expected a positive integer"),
                ));
            }
        }
    }
    if let Some(v) = obj.get("policy_mode") {
        if !matches!(
            v.as_str(),
            Some("authoritative" | "tighten-only" | "dev-override")
        ) {
            issues.push((
                "control_plane.policy_mode".into(),
                "Invalid control_plane.policy_mode: expected one of authoritative, tighten-only, dev-override".into(),
            ));
        }
    }
    if let Some(v) = obj.get("auth") {
        match v.as_object() {
            None => issues.push((
                "control_plane.auth".into(),
                "Invalid control_plane.auth: expected an object".into(),
            )),
            Some(auth) => {
                for key in auth.keys() {
                    if key != "token_env" {
                        issues.push((
                            format!("control_plane.auth.{key}"),
                            format!("Invalid control_plane.auth: unknown field control_plane.auth.{key}"),
                        ));
                    }
                }
                match auth.get("token_env").and_then(Value::as_str) {
                    Some(name) if is_env_name(name) => {}
                    None if partial => {}
                    _ => issues.push((
                        "control_plane.auth.token_env".into(),
                        "Invalid control_plane.auth.token_env: expected an uppercase env var name"
                            .into(),
                    )),
                }
            }
        }
    }
    issues
}

/// Value rules of the typed parts.
pub(super) fn validate_spec(doc: &WorkspaceDocument) -> Diagnostics {
    const CODE: &str = "WORKSPACE_INVALID";
    let mut out = Diagnostics::default();
    let spec = &doc.spec;
    let root = FieldPath::root();
    let mut err = |path: FieldPath, message: String| out.push(doc.diagnostic(CODE, &path, message));

    for (key, value) in [
        ("id", &spec.id),
        ("name", &spec.name),
        ("memory_namespace", &spec.memory_namespace),
        ("event_namespace", &spec.event_namespace),
    ] {
        if value.trim().is_empty() {
            err(root.key(key), format!("{key} must be a non-empty string"));
        }
    }
    let mut pin_ids = HashSet::new();
    for (i, pin) in spec.packs.iter().enumerate() {
        let p = root.key("packs").index(i);
        if pin.id.trim().is_empty() {
            err(p.key("id"), "pin id must not be empty".into());
        } else if !pin_ids.insert(pin.id.as_str()) {
            err(
                p.key("id"),
                format!("pack `{}` is pinned more than once", pin.id),
            );
        }
        if !is_semver(&pin.version) {
            err(
                p.key("version"),
                format!(
                    "expected a semantic version such as `1.0.0`, found `{}`",
                    pin.version
                ),
            );
        }
        for (field, value) in [("url", &pin.url), ("registry_url", &pin.registry_url)] {
            if let Some(v) = value {
                if url::Url::parse(v).is_err() && !(field == "url" && is_scp_like_git_url(v)) {
                    err(p.key(field), format!("`{v}` is not a valid URL"));
                }
            }
        }
        if pin.source == PackSource::Git && pin.url.is_none() {
            err(
                p.clone(),
                format!(
                    "pack `{}` has source git but no url; add a `url` field",
                    pin.id
                ),
            );
        }
    }
    let mut lane_ids = HashSet::new();
    for (i, lane) in spec.lanes.iter().enumerate() {
        let p = root.key("lanes").index(i);
        if lane.id.trim().is_empty() {
            err(p.key("id"), "lane id must not be empty".into());
        } else if !lane_ids.insert(lane.id.as_str()) {
            err(p.key("id"), format!("duplicate lane id `{}`", lane.id));
        }
        if lane.title.trim().is_empty() {
            err(p.key("title"), "lane title must not be empty".into());
        }
        if lane.wip_limit == Some(0) {
            err(
                p.key("wip_limit"),
                "wip_limit must be a positive integer".into(),
            );
        }
    }
    for (i, overlay) in spec.security.deny_overlays.iter().enumerate() {
        if overlay.trim().is_empty() {
            err(
                root.key("security").key("deny_overlays").index(i),
                "deny overlay must not be empty".into(),
            );
        }
    }
    if let Some(cp) = doc.root.get("control_plane") {
        for (path, message) in check_control_plane(&cp.to_json(), true) {
            let segs: Vec<&str> = path.split('.').collect();
            let mut fp = FieldPath::root();
            for s in segs {
                fp = fp.key(s);
            }
            err(fp, message);
        }
    }
    let rule_lists = spec
        .policies
        .iter()
        .map(|p| (root.key("policies").key("rules"), p))
        .chain(spec.lanes.iter().enumerate().filter_map(|(i, lane)| {
            let p = lane.policy_overrides.as_ref()?;
            Some((
                root.key("lanes")
                    .index(i)
                    .key("policy_overrides")
                    .key("rules"),
                p,
            ))
        }));
    for (at, policies) in rule_lists {
        for problem in crate::policy::validate_rules(&policies.rules, &at) {
            let mut d = doc.diagnostic(CODE, &problem.path, problem.message);
            if let Some(help) = problem.help {
                d = d.with_help(help);
            }
            out.push(d);
        }
    }
    out
}

/// `git@host:owner/repo.git`, which `url` does not parse but git accepts.
fn is_scp_like_git_url(s: &str) -> bool {
    match s.split_once(':') {
        Some((user_host, path)) => {
            user_host.contains('@') && !path.is_empty() && !user_host.contains('/')
        }
        None => false,
    }
}

/// The text `lumenflow init` writes: a complete, valid workspace to start from, with comments
/// that say what each block is for. `id` must already be a plain identifier.
pub fn initial_workspace_yaml(id: &str, name: &str) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"workspace\"".into());
    format!(
        r#"# LumenFlow workspace. Pins, scopes and lanes here bound what every tool call may do.
id: {id}
name: {name}
# Pinned packs; add them with `lumenflow pack install`.
packs: []
lanes:
  - id: default
    title: Default
    allowed_scopes:
      - type: path
        pattern: "**"
        access: read
      - type: path
        pattern: "**"
        access: write
security:
  # The widest any tool call may ever reach; lanes, tasks and tools can only narrow it.
  allowed_scopes:
    - type: path
      pattern: "**"
      access: read
    - type: path
      pattern: "**"
      access: write
    - type: network
      posture: "off"
  network_default: "off"
  deny_overlays:
    - .env
    - .env.*
    - "**/*.pem"
  # Bare package names script packs may import besides Node built-ins.
  import_allowlist:
    - simple-git
memory_namespace: {id}
event_namespace: {id}
"#
    )
}
