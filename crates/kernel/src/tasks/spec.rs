//! The task spec (`original/dispatch.md` §5.2), read strictly through the kernel YAML reader.

use std::fmt;

use indexmap::IndexMap;
use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_contracts::scope::{NetworkPosture, ToolScope};
use lumenflow_contracts::time::Timestamp;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diagnostics::{self, Diagnostics, FileDiagnostic, SourceFile};
use crate::workspace::WorkspaceSpec;
use crate::yaml::de::suggest;
use crate::yaml::FieldPath;

/// Code of every diagnostic about a task spec (YAML syntax errors keep `YAML_SYNTAX`).
pub const SPEC_INVALID: &str = "TASK_SPEC_INVALID";

/// Longest accepted task id (it is a file name, with `.yaml` appended).
pub const MAX_TASK_ID_LEN: usize = 200;

/// A task spec. Unknown keys are refused (with a did-you-mean), not stripped as in the original;
/// the `spec_hash` of `task_created` is the RFC 8785 hash of this struct as JSON
/// ([`TaskSpec::hash`]), so comments, formatting and key order of the file do not change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub id: String,
    pub workspace_id: String,
    pub lane_id: String,
    /// The pack the task belongs to (claim and completion policies see it as the pack id).
    pub domain: String,
    pub title: String,
    pub description: String,
    pub acceptance: Acceptance,
    /// May be empty; the task layer of the scope intersection.
    pub declared_scopes: Vec<ToolScope>,
    pub risk: Risk,
    #[serde(rename = "type")]
    pub task_type: String,
    pub priority: Priority,
    /// `YYYY-MM-DD`.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_artifacts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Free-form data for packs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

/// Acceptance criteria: a list, or named groups of lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Acceptance {
    List(Vec<String>),
    Groups(IndexMap<String, Vec<String>>),
}

impl<'de> Deserialize<'de> for Acceptance {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than `untagged`, so an error inside names its own item.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Acceptance;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of criteria or a mapping from a group name to a list of criteria",
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Acceptance, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(Acceptance::List(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Acceptance, A::Error> {
                let mut groups = IndexMap::new();
                while let Some((key, items)) = map.next_entry::<String, Vec<String>>()? {
                    groups.insert(key, items);
                }
                Ok(Acceptance::Groups(groups))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    P0,
    P1,
    P2,
    P3,
}

/// One problem found by [`TaskSpec::problems`], at a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub path: FieldPath,
    pub message: String,
    pub help: Option<String>,
}

impl SpecProblem {
    fn new(path: FieldPath, message: impl Into<String>) -> Self {
        SpecProblem {
            path,
            message: message.into(),
            help: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Why `id` cannot be a task id, or `None` when it can: it must be a safe file name,
/// `^[A-Za-z0-9][A-Za-z0-9._-]*$` without `..`, at most [`MAX_TASK_ID_LEN`] characters.
pub fn task_id_problem(id: &str) -> Option<String> {
    let Some(first) = id.chars().next() else {
        return Some("must not be empty".into());
    };
    if !first.is_ascii_alphanumeric() {
        return Some("must start with a letter or digit".into());
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "must contain only letters, digits, `.`, `_` and `-` (found {bad:?})"
        ));
    }
    if id.contains("..") {
        return Some("must not contain `..`".into());
    }
    if id.len() > MAX_TASK_ID_LEN {
        return Some(format!("must be at most {MAX_TASK_ID_LEN} characters"));
    }
    None
}

/// Whether `id` can be a task id (see [`task_id_problem`]).
pub fn is_valid_task_id(id: &str) -> bool {
    task_id_problem(id).is_none()
}

/// Whether `s` is a real calendar date written `YYYY-MM-DD`.
pub fn is_iso_date(s: &str) -> bool {
    s.len() == 10 && s.is_ascii() && Timestamp::parse(&format!("{s}T00:00:00Z")).is_ok()
}

impl TaskSpec {
    /// The spec as JSON (what `spec_hash` covers): absent optional fields are left out.
    pub fn to_json(&self) -> Value {
        // Cannot fail: every map key is a string and every value is plain data.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// `spec_hash`: lowercase hex SHA-256 of the RFC 8785 canonical JSON of the parsed spec.
    pub fn hash(&self) -> String {
        canonical_hash(&self.to_json())
    }

    /// The spec as YAML, as `create` stores a spec that did not come from a file.
    pub fn to_yaml(&self) -> String {
        crate::yaml::emit::to_yaml_string(&self.to_json())
    }

    /// Every rule of the schema serde cannot say: non-empty strings and lists, a safe id, a real
    /// date, allowlist scopes with entries.
    pub fn problems(&self) -> Vec<SpecProblem> {
        let root = FieldPath::root();
        let mut out = Vec::new();
        if let Some(reason) = task_id_problem(&self.id) {
            out.push(
                SpecProblem::new(root.key("id"), format!("invalid task id: {reason}")).with_help(
                    "a task id is used as a file name: start with a letter or digit, then \
                     letters, digits, `.`, `_` or `-` (for example `WU-1726`)",
                ),
            );
        }
        for (key, value) in [
            ("workspace_id", &self.workspace_id),
            ("lane_id", &self.lane_id),
            ("domain", &self.domain),
            ("title", &self.title),
            ("description", &self.description),
            ("type", &self.task_type),
        ] {
            if value.trim().is_empty() {
                out.push(SpecProblem::new(root.key(key), "must not be empty"));
            }
        }
        let acceptance = root.key("acceptance");
        match &self.acceptance {
            Acceptance::List(items) => {
                if items.is_empty() {
                    out.push(SpecProblem::new(
                        acceptance.clone(),
                        "must list at least one criterion",
                    ));
                }
                blank_items(&acceptance, items, &mut out);
            }
            Acceptance::Groups(groups) => {
                for (name, items) in groups {
                    let at = acceptance.key(name.clone());
                    if name.trim().is_empty() {
                        out.push(SpecProblem::new(at.clone(), "group name must not be empty"));
                    }
                    if items.is_empty() {
                        out.push(SpecProblem::new(
                            at.clone(),
                            "must list at least one criterion",
                        ));
                    }
                    blank_items(&at, items, &mut out);
                }
            }
        }
        for (i, scope) in self.declared_scopes.iter().enumerate() {
            let at = root.key("declared_scopes").index(i);
            match scope {
                ToolScope::Path { pattern, .. } if pattern.trim().is_empty() => {
                    out.push(SpecProblem::new(at.key("pattern"), "must not be empty"));
                }
                ToolScope::Network {
                    posture: NetworkPosture::Allowlist,
                    allowlist_entries,
                } => match allowlist_entries {
                    None => out.push(SpecProblem::new(
                        at,
                        "an `allowlist` network scope needs `allowlist_entries`",
                    )),
                    Some(entries) if entries.is_empty() => out.push(SpecProblem::new(
                        at.key("allowlist_entries"),
                        "must list at least one `host:port` or CIDR entry",
                    )),
                    Some(entries) => blank_items(&at.key("allowlist_entries"), entries, &mut out),
                },
                _ => {}
            }
        }
        if !is_iso_date(&self.created) {
            out.push(
                SpecProblem::new(
                    root.key("created"),
                    format!("`{}` is not a date written YYYY-MM-DD", self.created),
                )
                .with_help("for example `created: 2026-04-20`"),
            );
        }
        for (key, list) in [
            ("expected_artifacts", &self.expected_artifacts),
            ("blocks", &self.blocks),
            ("blocked_by", &self.blocked_by),
            ("labels", &self.labels),
        ] {
            if let Some(items) = list {
                blank_items(&root.key(key), items, &mut out);
            }
        }
        out
    }

    /// Problems of the spec against the workspace it is created in: `workspace_id` must be the
    /// workspace's id and `lane_id` one of its lanes.
    pub fn workspace_problems(&self, workspace: &WorkspaceSpec) -> Vec<SpecProblem> {
        let root = FieldPath::root();
        let mut out = Vec::new();
        if self.workspace_id != workspace.id {
            out.push(
                SpecProblem::new(
                    root.key("workspace_id"),
                    format!(
                        "Task workspace mismatch: task is for `{}`, this workspace is `{}`",
                        self.workspace_id, workspace.id
                    ),
                )
                .with_help(format!("set `workspace_id: {}`", workspace.id)),
            );
        }
        if workspace.lane(&self.lane_id).is_none() {
            let lanes: Vec<&str> = workspace.lanes.iter().map(|l| l.id.as_str()).collect();
            out.push(
                SpecProblem::new(
                    root.key("lane_id"),
                    format!("lane `{}` is not declared in workspace.yaml", self.lane_id),
                )
                .with_help(suggest(&self.lane_id, &lanes, "lanes")),
            );
        }
        out
    }
}

fn blank_items(at: &FieldPath, items: &[String], out: &mut Vec<SpecProblem>) {
    for (i, item) in items.iter().enumerate() {
        if item.trim().is_empty() {
            out.push(SpecProblem::new(at.index(i), "must not be empty"));
        }
    }
}

/// Parse and validate a task spec file: YAML syntax, the schema (unknown keys refused with a
/// did-you-mean, types not coerced) and [`TaskSpec::problems`]. Every diagnostic names the file,
/// line and field. `workspace`, when given, adds [`TaskSpec::workspace_problems`].
pub fn parse_task_spec(
    src: &SourceFile,
    workspace: Option<&WorkspaceSpec>,
) -> Result<TaskSpec, Diagnostics> {
    let root = diagnostics::parse_yaml(src)?;
    if root.as_map().is_none() {
        return Err(FileDiagnostic::at_field(
            SPEC_INVALID,
            src,
            &root,
            &FieldPath::root(),
            false,
            format!(
                "expected a mapping (a task spec), found {}",
                root.describe()
            ),
        )
        .into());
    }
    let spec: TaskSpec = diagnostics::from_yaml(src, &root, SPEC_INVALID)?;
    let mut problems = spec.problems();
    if let Some(ws) = workspace {
        problems.extend(spec.workspace_problems(ws));
    }
    let mut out = Diagnostics::default();
    for p in problems {
        let mut d = FileDiagnostic::at_field(SPEC_INVALID, src, &root, &p.path, false, p.message);
        d.help = p.help;
        out.push(d);
    }
    out.into_result()?;
    Ok(spec)
}
