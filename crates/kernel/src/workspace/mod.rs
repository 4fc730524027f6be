//! `workspace.yaml`: pins, scopes, lanes, policies, pack config blocks and the `control_plane`
//! block (KRN-04, KRN-06).
//!
//! The root is read key by key: the kernel's own keys are typed and strict, every other key is a
//! pack's config block and is kept as JSON until the packs are loaded and [`validate_root_keys`]
//! can tell a pinned pack's `config_key` from a typo.

mod replace;
mod spec;

pub use replace::{replace_workspace_text, workspace_lock_path, ReplaceError, WORKSPACE_LOCK_FILE};
pub use spec::*;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diagnostics::{self, Diagnostics, FileDiagnostic, SourceFile};
use crate::manifest::KERNEL_OWNED_ROOT_KEYS;
use crate::yaml::{self, de::closest, FieldPath, Node};

pub const WORKSPACE_FILE_NAME: &str = "workspace.yaml";

/// The directory holding the kernel's state inside a workspace.
pub const STATE_DIR: &str = ".lumenflow";

/// A parsed workspace file with the text it came from.
#[derive(Debug, Clone)]
pub struct WorkspaceDocument {
    pub spec: WorkspaceSpec,
    pub source: SourceFile,
    pub root: Node,
    /// The directory containing `workspace.yaml`.
    pub dir: PathBuf,
}

impl WorkspaceDocument {
    pub fn diagnostic(
        &self,
        code: &'static str,
        path: &FieldPath,
        message: impl Into<String>,
    ) -> FileDiagnostic {
        FileDiagnostic::at_field(code, &self.source, &self.root, path, false, message)
    }

    /// Hash of the workspace configuration: RFC 8785 canonical JSON of the parsed YAML, so
    /// comments and formatting do not change it.
    pub fn config_hash(&self) -> String {
        lumenflow_contracts::canonical_json::canonical_hash(&self.root.to_json())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(STATE_DIR)
    }
}

/// Find `workspace.yaml` in `start` or the nearest parent directory that has one.
///
/// A linked git worktree of a workspace's repository (software-delivery's
/// `worktrees/<lane>-<wu>`) holds a checked-out copy of `workspace.yaml`, but it is not a
/// workspace of its own: discovery from inside it answers the owning workspace
/// ([`owning_workspace`]), so a command run there sees the real tasks, log and approvals instead
/// of starting an empty `.lumenflow/` that a commit could carry into the PR branch.
pub fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    let found = start
        .ancestors()
        .find(|dir| dir.join(WORKSPACE_FILE_NAME).is_file())?;
    Some(owning_workspace(found).unwrap_or_else(|| found.to_path_buf()))
}

/// When `dir` is a linked git worktree (its `.git` is a file `gitdir: <repo>/.git/worktrees/<name>`)
/// of a repository whose root holds `workspace.yaml`, that root.
pub fn owning_workspace(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    if !dot_git.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let gitdir = Path::new(text.trim().strip_prefix("gitdir:")?.trim());
    let gitdir = dir.join(gitdir).canonicalize().ok()?;
    let worktrees = gitdir.parent()?;
    let repo_git = worktrees.parent()?;
    if worktrees.file_name()? != "worktrees" || repo_git.file_name()? != ".git" {
        return None;
    }
    let repo = repo_git.parent()?;
    repo.join(WORKSPACE_FILE_NAME)
        .is_file()
        .then(|| repo.to_path_buf())
}

/// The `.gitignore` of `.lumenflow/`: everything in it is local state.
pub const STATE_GITIGNORE: &[u8] =
    b"# Kernel state: logs, evidence, keys. Not for version control.\n*\n";

/// Create `<dir>/.lumenflow/` if needed, always with its `.gitignore` (kept if present): a state
/// folder created by a runtime rather than by `init` must not be committable either.
pub fn ensure_state_dir(dir: &Path) -> std::io::Result<PathBuf> {
    let state = dir.join(STATE_DIR);
    std::fs::create_dir_all(&state)?;
    let gitignore = state.join(".gitignore");
    if !gitignore.exists() {
        crate::install::write_file_atomically(&gitignore, STATE_GITIGNORE)?;
    }
    Ok(state)
}

/// Read and validate `<dir>/workspace.yaml`.
pub fn read_workspace(dir: &Path) -> Result<WorkspaceDocument, Diagnostics> {
    let path = dir.join(WORKSPACE_FILE_NAME);
    let source = SourceFile::read(&path).map_err(|mut d| {
        if d.code == "FILE_NOT_READABLE" {
            d.code = "WORKSPACE_NOT_FOUND";
            d.help = Some("run `lumenflow init` to create a workspace here".into());
        }
        d
    })?;
    parse_workspace(source, dir)
}

/// Parse workspace text. Pack config keys are not checked here; see [`validate_root_keys`].
pub fn parse_workspace(source: SourceFile, dir: &Path) -> Result<WorkspaceDocument, Diagnostics> {
    let root = diagnostics::parse_yaml(&source)?;
    let spec = spec_from_root(&source, &root)?;
    let doc = WorkspaceDocument {
        spec,
        source,
        root,
        dir: dir.to_path_buf(),
    };
    spec::validate_spec(&doc).into_result()?;
    Ok(doc)
}

fn spec_from_root(src: &SourceFile, root: &Node) -> Result<WorkspaceSpec, Diagnostics> {
    let code = "WORKSPACE_INVALID";
    let Some(entries) = root.as_map() else {
        return Err(FileDiagnostic::at_field(
            code,
            src,
            root,
            &FieldPath::root(),
            false,
            format!(
                "expected a mapping at the top of the workspace file, found {}",
                root.describe()
            ),
        )
        .into());
    };
    let mut errors = Diagnostics::default();
    let mut required = |key: &str| -> Option<&Node> {
        let node = root.get(key);
        if node.is_none() {
            errors.push(
                FileDiagnostic::at_field(
                    code,
                    src,
                    root,
                    &FieldPath::root(),
                    false,
                    format!("missing required field `{key}`"),
                )
                .with_help("`lumenflow init` writes a complete workspace.yaml to start from"),
            );
        }
        node
    };
    let id = required("id");
    let name = required("name");
    let packs = required("packs");
    let lanes = required("lanes");
    let security = required("security");
    let memory_namespace = required("memory_namespace");
    let event_namespace = required("event_namespace");

    fn field<T: DeserializeOwned>(
        src: &SourceFile,
        root: &Node,
        key: &str,
        node: Option<&Node>,
        errors: &mut Diagnostics,
    ) -> Option<T> {
        let node = node?;
        match yaml::de::from_node::<T>(node) {
            Ok(v) => Some(v),
            Err(mut e) => {
                let mut segs = vec![yaml::Seg::Key(key.to_string())];
                segs.extend(e.path.take().map(|p| p.0).unwrap_or_default());
                e.path = Some(FieldPath(segs));
                errors.push(diagnostics::de_error(src, root, "WORKSPACE_INVALID", e));
                None
            }
        }
    }

    let id: Option<String> = field(src, root, "id", id, &mut errors);
    let name: Option<String> = field(src, root, "name", name, &mut errors);
    let packs: Option<Vec<PackPin>> = field(src, root, "packs", packs, &mut errors);
    let lanes: Option<Vec<LaneSpec>> = field(src, root, "lanes", lanes, &mut errors);
    let security: Option<SecuritySpec> = field(src, root, "security", security, &mut errors);
    let memory_namespace: Option<String> =
        field(src, root, "memory_namespace", memory_namespace, &mut errors);
    let event_namespace: Option<String> =
        field(src, root, "event_namespace", event_namespace, &mut errors);
    let policies: Option<WorkspacePolicies> =
        field(src, root, "policies", root.get("policies"), &mut errors);
    let control_plane = root.get("control_plane").map(Node::to_json);
    let sandbox: Option<SandboxMode> =
        field(src, root, "sandbox", root.get("sandbox"), &mut errors);

    let mut pack_config = IndexMap::new();
    for entry in entries {
        if !KERNEL_OWNED_ROOT_KEYS.contains(&entry.key.as_str()) {
            pack_config.insert(entry.key.clone(), entry.value.to_json());
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match (
        id,
        name,
        packs,
        lanes,
        security,
        memory_namespace,
        event_namespace,
    ) {
        (
            Some(id),
            Some(name),
            Some(packs),
            Some(lanes),
            Some(security),
            Some(memory_namespace),
            Some(event_namespace),
        ) => Ok(WorkspaceSpec {
            id,
            name,
            packs,
            lanes,
            policies,
            security,
            control_plane,
            memory_namespace,
            event_namespace,
            sandbox: sandbox.unwrap_or_default(),
            pack_config,
        }),
        _ => Err(errors),
    }
}

/// The strict root-key check, run once the pinned packs are loaded: every root key is either the
/// kernel's or a loaded pack's `config_key` (`config_keys` maps key -> pack id). `available` lists
/// packs that exist but are not pinned, for the migration hint.
pub fn validate_root_keys(
    doc: &WorkspaceDocument,
    config_keys: &IndexMap<String, String>,
    available: &[(String, String)],
) -> Diagnostics {
    let mut out = Diagnostics::default();
    for key in doc.spec.pack_config.keys() {
        if config_keys.contains_key(key) {
            continue;
        }
        let path = FieldPath::root().key(key.clone());
        let mut d = FileDiagnostic::at_field(
            "WORKSPACE_UNKNOWN_KEY",
            &doc.source,
            &doc.root,
            &path,
            true,
            String::new(),
        );
        if let Some(pack_id) = well_known_config_key(key) {
            let version = available
                .iter()
                .find(|(id, _)| id == pack_id)
                .map(|(_, v)| v.as_str())
                .unwrap_or("latest");
            d.message = format!(
                "your workspace has a `{key}` block but the `{pack_id}` pack is not pinned; pack config keys need the pack pinned"
            );
            d.help = Some(format!(
                "run `lumenflow pack install --id {pack_id} --source registry --version {version}`"
            ));
        } else {
            d.message = format!("Unknown workspace root key \"{key}\"");
            let known: Vec<&str> = KERNEL_OWNED_ROOT_KEYS
                .iter()
                .copied()
                .chain(config_keys.keys().map(String::as_str))
                .collect();
            let mut help = String::new();
            if let Some(best) = closest(key, known.iter().copied()) {
                help.push_str(&format!("did you mean `{best}`? "));
            }
            help.push_str("Only kernel-owned keys and pack-declared config_keys are allowed. If this key belongs to a pack, ensure the pack is pinned and declares config_key in its manifest.");
            d.help = Some(help);
        }
        out.push(d);
    }
    out
}

/// Config keys of packs whose blocks predate pack pinning (the original's migration case).
fn well_known_config_key(key: &str) -> Option<&'static str> {
    match key {
        "software_delivery" => Some("software-delivery"),
        "agent_runtime" => Some("agent-runtime"),
        _ => None,
    }
}

/// The raw JSON of a pack config block, or of any root key.
pub fn root_value(doc: &WorkspaceDocument, key: &str) -> Option<Value> {
    doc.root.get(key).map(Node::to_json)
}
