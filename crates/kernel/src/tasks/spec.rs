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

/// The keys every task spec has (the fields of [`TaskSpec`] without a default).
const REQUIRED_KEYS: [&str; 12] = [
    "id",
    "workspace_id",
    "lane_id",
    "domain",
    "title",
    "description",
    "acceptance",
    "declared_scopes",
    "risk",
    "type",
    "priority",
    "created",
];

/// A complete spec to start from, shown when keys are missing.
const EXAMPLE: &str = "  id: WU-1
  workspace_id: <the id in workspace.yaml>
  lane_id: <a lane of workspace.yaml>
  domain: software-delivery
  title: Fix the failing test
  description: add() subtracts; make it add.
  acceptance: [sh test.sh passes]
  declared_scopes: []        # may narrow the lane's scopes for this task
  risk: low                  # low, medium, high, critical
  type: bug
  priority: P2               # P0 to P3
  created: 2026-01-31";

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

/// One diagnostic naming every key in `missing`, with [`EXAMPLE`] as help (the workspace's id
/// and first lane filled in when known).
fn missing_keys(
    src: &SourceFile,
    root: &crate::yaml::Node,
    missing: &[&str],
    workspace: Option<&WorkspaceSpec>,
) -> FileDiagnostic {
    let names: Vec<String> = missing.iter().map(|k| format!("`{k}`")).collect();
    let message = match names.as_slice() {
        [one] => format!("missing required field {one}"),
        many => format!("missing required fields {}", many.join(", ")),
    };
    let mut example = EXAMPLE.to_string();
    if let Some(ws) = workspace {
        example = example.replace("<the id in workspace.yaml>", &ws.id);
        if let Some(lane) = ws.lanes.first() {
            example = example.replace("<a lane of workspace.yaml>", &lane.id);
        }
    }
    FileDiagnostic::at_field(SPEC_INVALID, src, root, &FieldPath::root(), false, message)
        .with_help(format!("a complete task spec, to start from:\n{example}"))
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
    // Every missing key at once, with a complete spec to copy: the schema reader stops at the
    // first, which made writing a first spec a dozen round trips.
    let missing: Vec<&str> = REQUIRED_KEYS
        .into_iter()
        .filter(|k| root.get(k).is_none())
        .collect();
    let spec: TaskSpec = match diagnostics::from_yaml(src, &root, SPEC_INVALID) {
        Ok(spec) => spec,
        Err(found) if missing.is_empty() => return Err(found.into()),
        Err(found) => {
            // Keep what the reader found besides a missing key (an unknown `titel` with its
            // did-you-mean comes first), then one diagnostic naming every missing key.
            let mut out = Diagnostics::default();
            if !found.message.starts_with("missing required field") {
                out.push(found);
            }
            out.push(missing_keys(src, &root, &missing, workspace));
            return Err(out);
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// [`EXAMPLE`] as a file, its placeholders filled in.
    fn example() -> String {
        EXAMPLE
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("<the id in workspace.yaml>", "ws")
            .replace("<a lane of workspace.yaml>", "default")
    }

    #[test]
    fn the_example_shown_for_missing_keys_is_a_valid_spec_with_exactly_the_required_keys() {
        let spec = parse_task_spec(&SourceFile::new("t.yaml", example()), None).expect("valid");
        // With no optional field set, the serialized spec holds exactly the required keys: a
        // field added to `TaskSpec` without a default must be added to REQUIRED_KEYS too.
        let mut keys: Vec<String> = spec
            .to_json()
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        let mut required: Vec<String> = REQUIRED_KEYS.iter().map(|k| k.to_string()).collect();
        required.sort();
        assert_eq!(keys, required);
    }

    #[test]
    fn every_missing_key_is_reported_at_once_with_the_example() {
        let err = parse_task_spec(&SourceFile::new("t.yaml", "id: WU-1\ntitle: t\n"), None)
            .expect_err("incomplete");
        assert_eq!(err.0.len(), 1, "{err:?}");
        let d = &err.0[0];
        assert_eq!((d.code, d.file.as_str()), (SPEC_INVALID, "t.yaml"));
        let named: Vec<String> = REQUIRED_KEYS
            .iter()
            .filter(|k| !["id", "title"].contains(k))
            .map(|k| format!("`{k}`"))
            .collect();
        assert_eq!(
            d.message,
            format!("missing required fields {}", named.join(", "))
        );
        let help = d.help.as_deref().unwrap_or_default();
        assert!(
            help.contains("workspace_id: <the id in workspace.yaml>"),
            "{help}"
        );

        // One key missing from a complete spec: exactly that one is named.
        for key in REQUIRED_KEYS {
            let text: String = example()
                .lines()
                .filter(|l| !l.starts_with(&format!("{key}:")))
                .collect::<Vec<_>>()
                .join("\n");
            let err = parse_task_spec(&SourceFile::new("t.yaml", text), None).expect_err(key);
            assert_eq!(err.0.len(), 1, "{key}");
            assert_eq!(err.0[0].message, format!("missing required field `{key}`"));
        }

        // A misspelt key keeps its did-you-mean first; the key it replaces is named as missing.
        let typo = example().replace("title:", "titel:");
        let err = parse_task_spec(&SourceFile::new("t.yaml", typo), None).expect_err("typo");
        let messages: Vec<&str> = err.0.iter().map(|d| d.message.as_str()).collect();
        assert!(
            messages[0].contains("unknown field `titel`"),
            "{messages:?}"
        );
        assert_eq!(messages[1..], ["missing required field `title`"]);
    }
}
