//! What the dispatch path computes once per (tool, task context) and reuses: the scope
//! intersection, the compiled globs of every layer, the receipt form of the enforced scopes and
//! the policy layers. A workspace's layers do not change while a runtime is open, so re-deriving
//! them on every call only cost time (the glob compilation dominated a call's CPU).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_contracts::scope::{PathAccess, ToolScope};
use serde_json::{json, Map, Value};

use super::{RegisteredTool, Runtime, TaskFacts};
use crate::manifest::Permission;
use crate::policy::{self, Layer};
use crate::scope::{self, EffectiveScopes, PathGlob, ScopeLayers};

/// A call's static facts.
pub struct Prepared {
    pub effective: EffectiveScopes,
    pub enforced_json: Value,
    pub policy_layers: Vec<Layer>,
    access: PathAccess,
    effective_globs: Vec<PathGlob>,
    /// Per layer (workspace, lane, task, tool): the compiled patterns for `access`.
    layer_globs: [Vec<PathGlob>; 4],
}

pub struct Refusal {
    pub message: String,
    pub reason: String,
    pub policy_id: &'static str,
}

#[derive(Default)]
pub struct PreparedCache {
    entries: Mutex<HashMap<String, Arc<Prepared>>>,
    root: std::sync::OnceLock<std::path::PathBuf>,
}

impl PreparedCache {
    /// The canonical workspace folder, resolved once.
    pub fn root(&self, workspace_dir: &Path) -> Result<std::path::PathBuf, String> {
        if let Some(r) = self.root.get() {
            return Ok(r.clone());
        }
        let r = workspace_dir
            .canonicalize()
            .map_err(|e| format!("cannot resolve the workspace folder: {e}"))?;
        Ok(self.root.get_or_init(|| r).clone())
    }

    pub fn get_or_prepare(
        &self,
        rt: &Runtime,
        tool: &RegisteredTool,
        task: Option<&TaskFacts>,
    ) -> Result<Arc<Prepared>, Refusal> {
        let key = match task {
            None => format!("{}\u{0}-", tool.name),
            Some(t) => format!(
                "{}\u{0}{}\u{0}{}",
                tool.name,
                t.lane_id,
                canonical_hash(&json!(t.declared_scopes))
            ),
        };
        if let Some(p) = self.entries.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(p);
        }
        let prepared = Arc::new(prepare(rt, tool, task)?);
        if let Ok(mut m) = self.entries.lock() {
            m.insert(key, prepared.clone());
        }
        Ok(prepared)
    }
}

fn prepare(
    rt: &Runtime,
    tool: &RegisteredTool,
    task: Option<&TaskFacts>,
) -> Result<Prepared, Refusal> {
    let workspace_layer = &rt.spec.security.allowed_scopes;
    let lane = match task {
        Some(facts) => Some(rt.spec.lane(&facts.lane_id).ok_or_else(|| Refusal {
            message: format!(
                "task lane `{}` is not declared in workspace.yaml",
                facts.lane_id
            ),
            reason: "unknown lane".into(),
            policy_id: "kernel.scope.boundary",
        })?),
        None => None,
    };
    // Without a task, the lane and task layers are the workspace's: they cannot widen anything.
    let lane_layer: &[ToolScope] = lane
        .map(|l| l.allowed_scopes.as_slice())
        .unwrap_or(workspace_layer);
    let task_layer: &[ToolScope] = task
        .map(|t| t.declared_scopes.as_slice())
        .unwrap_or(workspace_layer);
    let layers = ScopeLayers {
        workspace: workspace_layer,
        lane: lane_layer,
        task: task_layer,
        tool: &tool.manifest.required_scopes,
    };
    let slugs: Vec<&str> = tool.state_slugs.iter().map(String::as_str).collect();
    let reserved = scope::reserved_write_scopes_for(&tool.manifest.required_scopes, &slugs);
    if !reserved.is_empty() {
        return Err(Refusal {
            message: format!(
                "reserved scope violation: writes under `.lumenflow/**` are the kernel's (a pack may write only `.lumenflow/state/{}/**`): {}",
                tool.pack_slug,
                reserved.join(", ")
            ),
            reason: "write scope under .lumenflow/".into(),
            policy_id: "kernel.scope.reserved-path",
        });
    }
    let effective = scope::intersect(&layers).map_err(|e| Refusal {
        message: format!("scope evaluation failed (denied): {e}"),
        reason: e.to_string(),
        policy_id: "kernel.scope.invalid",
    })?;
    let access = match tool.manifest.permission {
        Permission::Read => PathAccess::Read,
        Permission::Write | Permission::Admin => PathAccess::Write,
    };
    let compile = |scopes: &[ToolScope]| -> Vec<PathGlob> {
        scopes
            .iter()
            .filter_map(|s| match s {
                ToolScope::Path { pattern, access: a } if *a == access => {
                    PathGlob::new(pattern).ok()
                }
                _ => None,
            })
            .collect()
    };
    let effective_globs = effective
        .patterns(access)
        .iter()
        .filter_map(|p| PathGlob::new(p).ok())
        .collect();
    let layer_globs = [
        compile(layers.workspace),
        compile(layers.lane),
        compile(layers.task),
        compile(layers.tool),
    ];
    let policy_layers = policy::layers_for(
        rt.spec.policies.as_ref(),
        lane.and_then(|l| l.policy_overrides.as_ref()),
        rt.pack_manifests.iter(),
        &[],
    );
    Ok(Prepared {
        enforced_json: json!(effective.as_tool_scopes()),
        effective,
        policy_layers,
        access,
        effective_globs,
        layer_globs,
    })
}

impl Prepared {
    fn allowed(&self, rel: &str) -> bool {
        self.effective_globs.iter().any(|g| g.is_match(rel))
            && self
                .layer_globs
                .iter()
                .all(|layer| layer.iter().any(|g| g.is_match(rel)))
    }

    /// Every path-like field of the input (`path`, `*_path`, `paths`, `*_paths`) must be a
    /// relative path that every scope layer allows for the tool's access, both as written and
    /// after symlinks are resolved, and a write must not land in a reserved `.lumenflow/` folder.
    pub fn check_input_paths(
        &self,
        root: &Path,
        input: &Map<String, Value>,
        state_slugs: &[&str],
    ) -> Result<(), String> {
        let access = self.access;
        let paths = input_paths(input);
        if paths.is_empty() {
            return Ok(());
        }
        for (field, raw) in paths {
            let rel = scope::normalize_rel_path(raw)
                .map_err(|e| format!("input `{field}` = `{raw}` is refused: {e}"))?;
            if !self.allowed(&rel) {
                return Err(format!(
                    "input `{field}` = `{raw}` is outside the effective {access} scopes"
                ));
            }
            if access == PathAccess::Write && scope::is_reserved_write_path_for(&rel, state_slugs) {
                return Err(format!(
                    "input `{field}` = `{raw}` writes under `.lumenflow/`, which is reserved"
                ));
            }
            // Resolve symlinks (dangling ones too): the target must still be inside the
            // workspace and inside the scopes.
            let resolved = resolve_under(root, &rel)
                .map_err(|e| format!("cannot resolve input `{field}` = `{raw}`: {e}"))?;
            let Ok(inside) = resolved.strip_prefix(root) else {
                return Err(format!(
                    "input `{field}` = `{raw}` resolves outside the workspace (through a symlink)"
                ));
            };
            let inside = inside.to_string_lossy().replace('\\', "/");
            if inside != rel && !self.allowed(&inside) {
                return Err(format!(
                    "input `{field}` = `{raw}` resolves through a symlink to `{inside}`, outside the effective {access} scopes"
                ));
            }
            if access == PathAccess::Write
                && scope::is_reserved_write_path_for(&inside, state_slugs)
            {
                return Err(format!(
                    "input `{field}` = `{raw}` resolves under `.lumenflow/`, which is reserved"
                ));
            }
        }
        Ok(())
    }
}

/// The path-like fields of an input (`path`, `*_path`, `paths`, `*_paths`): `(field, path)`.
fn input_paths(input: &Map<String, Value>) -> Vec<(&str, &str)> {
    let mut paths: Vec<(&str, &str)> = Vec::new();
    for (key, value) in input {
        let is_path = key == "path" || key.ends_with("_path");
        let is_paths = key == "paths" || key.ends_with("_paths");
        match value {
            Value::String(s) if is_path => paths.push((key, s)),
            Value::Array(items) if is_paths => paths.extend(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| (key.as_str(), s)),
            ),
            _ => {}
        }
    }
    paths
}

/// Whether [`Prepared::check_input_paths`] has paths to look up on disk.
pub(crate) fn has_input_paths(input: &Map<String, Value>) -> bool {
    !input_paths(input).is_empty()
}

/// Most symlinks a path may pass through, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: usize = 40;

/// Where `rel` (normalized, relative) under the canonical `root` really leads: every component
/// is looked at with `lstat`, a symlink is replaced by its target (dangling or not: a write
/// through a dangling link creates its target), and the part that does not exist yet is kept as
/// written. One `lstat` per existing component; `canonicalize` instead cost a `readlink` per
/// component of the whole absolute path, and missed dangling links.
pub(crate) fn resolve_under(root: &Path, rel: &str) -> std::io::Result<std::path::PathBuf> {
    use std::path::Component;
    let mut resolved = root.to_path_buf();
    let mut pending: Vec<std::ffi::OsString> = Path::new(rel)
        .components()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut hops = 0usize;
    // Once a component is missing, nothing below it exists: the rest is only lexical.
    let mut missing = false;
    while let Some(part) = pending.pop() {
        match Path::new(&part).components().next() {
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            Some(Component::Normal(_)) => {}
            Some(Component::RootDir) => {
                resolved = std::path::PathBuf::from("/");
                continue;
            }
            _ => continue,
        }
        let candidate = resolved.join(&part);
        if missing {
            resolved = candidate;
            continue;
        }
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(std::io::Error::other(format!(
                        "more than {MAX_SYMLINK_HOPS} symlinks"
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                for c in target.components().rev() {
                    pending.push(c.as_os_str().to_os_string());
                }
            }
            Ok(_) => resolved = candidate,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(20 /* ENOTDIR */) =>
            {
                missing = true;
                resolved = candidate;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}
