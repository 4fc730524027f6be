//! The tools a runtime can dispatch: every tool of every loaded pack, each with its
//! implementation (a Rust function for built-in packs, an entry file run as a sandboxed
//! subprocess for packs on disk) and its compiled input and output schemas.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use lumenflow_contracts::tool_output::ToolOutput;
use serde_json::Value;

use crate::json_schema::{self, CompiledSchema};
use crate::loader::{LoadedPack, PackLocation};
use crate::manifest::{parse_entry, ToolManifest};
use crate::scope::EffectiveScopes;

/// What a built-in tool function receives. Only the dispatch path can make one (its fields are
/// private to it), so a [`BuiltinFn`] cannot be invoked from anywhere else: the "one dispatch
/// path" invariant is enforced by the type system, not by convention:
///
/// ```compile_fail
/// use lumenflow_kernel::dispatch::BuiltinCall;
/// let effective = Default::default();
/// let input = serde_json::json!({});
/// // Error: the fields of BuiltinCall are private to the dispatch path.
/// let call = BuiltinCall { input: &input, workspace_dir: std::path::Path::new("."),
///     effective: &effective, receipt_id: "r", run_id: "r", task_id: None };
/// ```
pub struct BuiltinCall<'a> {
    pub(in crate::dispatch) input: &'a Value,
    pub(in crate::dispatch) workspace_dir: &'a std::path::Path,
    pub(in crate::dispatch) effective: &'a EffectiveScopes,
    pub(in crate::dispatch) receipt_id: &'a str,
    pub(in crate::dispatch) run_id: &'a str,
    pub(in crate::dispatch) task_id: Option<&'a str>,
    pub(in crate::dispatch) caller: &'a str,
    pub(in crate::dispatch) surface: super::Surface,
    pub(in crate::dispatch) token_scopes: Option<&'a [String]>,
    pub(in crate::dispatch) token_id: Option<&'a str>,
    pub(in crate::dispatch) tool: &'a RegisteredTool,
    pub(in crate::dispatch) runtime: &'a super::Runtime,
    pub(in crate::dispatch) depth: u8,
}

impl<'a> BuiltinCall<'a> {
    pub fn input(&self) -> &'a Value {
        self.input
    }
    pub fn workspace_dir(&self) -> &'a std::path::Path {
        self.workspace_dir
    }
    /// The workspace's `workspace.yaml`, as the runtime loaded it.
    pub fn workspace(&self) -> &'a crate::workspace::WorkspaceSpec {
        &self.runtime.spec
    }
    /// `Err` naming the pattern's problem, or whether the workspace's `security.deny_overlays`
    /// cover the workspace-relative `rel` (the files the sandbox hides from subprocess tools).
    pub fn deny_overlay_covers(&self, rel: &str) -> Result<bool, String> {
        crate::sandbox::deny_overlay_covers(
            &self.runtime.spec.security.deny_overlays,
            self.workspace_dir,
            rel,
        )
    }
    /// The effective scopes the call was admitted with (a tool touching a path it was not
    /// given must refuse).
    pub fn effective(&self) -> &'a EffectiveScopes {
        self.effective
    }
    pub fn receipt_id(&self) -> &'a str {
        self.receipt_id
    }
    pub fn run_id(&self) -> &'a str {
        self.run_id
    }
    pub fn task_id(&self) -> Option<&'a str> {
        self.task_id
    }
    /// The authenticated identity the call was made by (a token subject, or `local`).
    pub fn caller(&self) -> &'a str {
        self.caller
    }
    pub fn surface(&self) -> super::Surface {
        self.surface
    }
    pub fn tool_name(&self) -> &'a str {
        &self.tool.name
    }
    /// Every tool this runtime can dispatch, as registered (name, manifest, schemas): what an
    /// agent turn offers its model. Listing a tool grants nothing; calls still go through
    /// [`dispatch`](Self::dispatch).
    pub fn registered_tools(&self) -> impl Iterator<Item = &'a RegisteredTool> {
        self.runtime.registry.tools()
    }
    /// The content-addressed evidence store (for outputs too large for the receipt, such as a
    /// gate's captured log).
    pub fn evidence(&self) -> &'a super::EvidenceStore {
        &self.runtime.evidence
    }

    /// Emit one event of this tool's pack: checked against the pack's `emitted_event_kinds`
    /// and payload shapes, stamped in the ledger, pushed to the runtime's sink, with the
    /// runtime's identity as `from`, and the call's `run_id` in the payload unless the tool set
    /// one. `Ok(None)` when the runtime has no event output (the
    /// plain CLI), so tools need not care where they run.
    pub fn emit(
        &self,
        kind: &str,
        payload: serde_json::Map<String, Value>,
        options: lumenflow_contracts::event::BuildOptions,
    ) -> Result<Option<lumenflow_contracts::event::KernelEventV2>, crate::events::emit::EmitError>
    {
        let Some(events) = &self.runtime.events else {
            return Ok(None);
        };
        // An event a tool emits belongs to the run of the call that emitted it.
        let mut payload = payload;
        payload
            .entry("run_id")
            .or_insert_with(|| Value::from(self.run_id));
        let manifest = self
            .runtime
            .pack_manifests
            .iter()
            .find(|m| m.id == self.tool.pack_id);
        match manifest {
            Some(m) => events.emit_for(m, kind, payload, options).map(Some),
            None => Err(crate::events::emit::EmitError::UnknownKind {
                pack: self.tool.pack_id.clone(),
                kind: kind.to_string(),
            }),
        }
    }

    /// Record a call this tool refuses by its own rule before dispatching it (an agent turn's
    /// `allow_tools`, a turn proposing another turn): the same receipts, input evidence and
    /// `agent-runtime:tool_called` event (`denied`, with `code`) as a refusal of the dispatch
    /// path, with the caller, task and run of [`dispatch`](Self::dispatch). Nothing runs, so a
    /// refusal never needs the tool to exist.
    pub fn refuse(
        &self,
        tool: &str,
        input: Value,
        code: &str,
        message: String,
    ) -> super::CallOutcome {
        self.runtime
            .record_refusal(self.nested_request(tool, input), code, message)
    }

    fn nested_request(&self, tool: &str, input: Value) -> super::CallRequest {
        super::CallRequest {
            tool: tool.to_string(),
            input,
            task_id: self.task_id.map(str::to_string),
            run_id: Some(self.run_id.to_string()),
            caller: self.caller.to_string(),
            surface: super::Surface::Agent,
            token_scopes: self.token_scopes.map(<[String]>::to_vec),
            token_id: self.token_id.map(str::to_string),
        }
    }

    /// A nested call through the same dispatch path (scopes, rules, approvals, receipts): same
    /// caller, task and run, surface `Agent`. This is how an agent turn runs the tools its
    /// model proposes; there is no other way for a tool to run a tool.
    pub fn dispatch(&self, tool: &str, input: Value) -> super::CallOutcome {
        self.runtime
            .dispatch_at_depth(self.nested_request(tool, input), self.depth + 1)
    }
}

/// A built-in tool: a Rust function the kernel calls only from the dispatch path.
pub type BuiltinFn = Arc<dyn Fn(&BuiltinCall<'_>) -> ToolOutput + Send + Sync>;

#[derive(Clone)]
pub enum Implementation {
    Builtin(BuiltinFn),
    /// An entry file inside the pack root, run under bubblewrap speaking JSON on stdin/stdout.
    Subprocess {
        program: PathBuf,
        export: Option<String>,
        /// The pack folder, bound read-only so a script can load its siblings.
        pack_root: PathBuf,
        /// The pack's hash as loaded when its pin holds one (not for `integrity: dev`): the
        /// folder is hashed again before each run, so files edited while a long-lived runtime
        /// serves are not run under a pin they no longer match.
        verified_hash: Option<crate::integrity::PackHash>,
    },
}

impl Implementation {
    pub fn mode(&self) -> &'static str {
        match self {
            Implementation::Builtin(_) => "in-process",
            Implementation::Subprocess { .. } => "subprocess",
        }
    }
}

/// One dispatchable tool.
#[derive(Clone)]
pub struct RegisteredTool {
    pub name: String,
    pub pack_id: String,
    pub pack_slug: String,
    /// The state folders (`.lumenflow/state/<slug>/`) the tool's pack may write: its own slug
    /// first, then those of loaded packs that listed it in `state_writers` while it lists them
    /// in `state_folders` (consent on both sides, Q26).
    pub state_slugs: Vec<String>,
    pub pack_version: String,
    pub pack_integrity: String,
    pub manifest: ToolManifest,
    pub input_schema: Option<CompiledSchema>,
    pub output_schema: Option<CompiledSchema>,
    pub implementation: Implementation,
}

impl RegisteredTool {
    /// The manifest tool `name` of `pack`, implemented by a Rust function (how a built-in pack
    /// registers its tools), with its schemas compiled.
    pub fn builtin(
        pack: &crate::manifest::PackManifest,
        integrity: &str,
        name: &str,
        function: BuiltinFn,
    ) -> Result<RegisteredTool, RegistryError> {
        let tool = pack
            .tool(name)
            .ok_or_else(|| RegistryError::Entry {
                tool: name.to_string(),
                pack: pack.id.clone(),
                reason: "the manifest declares no such tool".into(),
            })?
            .clone();
        Ok(RegisteredTool {
            name: tool.name.clone(),
            pack_id: pack.id.clone(),
            pack_slug: pack.slug().to_string(),
            state_slugs: vec![pack.slug().to_string()],
            pack_version: pack.version.clone(),
            pack_integrity: integrity.to_string(),
            input_schema: compile(&tool.input_schema, &tool.name, &pack.id)?,
            output_schema: compile(&tool.output_schema, &tool.name, &pack.id)?,
            manifest: tool,
            implementation: Implementation::Builtin(function),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("tool `{tool}` is provided by both pack `{first}` and pack `{second}`")]
    Duplicate {
        tool: String,
        first: String,
        second: String,
    },
    #[error("tool `{tool}` of built-in pack `{pack}` has no implementation in this binary")]
    MissingBuiltin { tool: String, pack: String },
    #[error("tool `{tool}` of pack `{pack}`: {reason}")]
    Schema {
        tool: String,
        pack: String,
        reason: String,
    },
    #[error("tool `{tool}` of pack `{pack}`: {reason}")]
    Entry {
        tool: String,
        pack: String,
        reason: String,
    },
}

impl RegistryError {
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::Duplicate { .. } => "TOOL_DUPLICATE",
            RegistryError::MissingBuiltin { .. } => "TOOL_IMPLEMENTATION_MISSING",
            RegistryError::Schema { .. } => "TOOL_SCHEMA_INVALID",
            RegistryError::Entry { .. } => "ENTRY_INVALID",
        }
    }
}

#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<RegisteredTool>>,
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, tool: RegisteredTool) -> Result<(), RegistryError> {
        if let Some(existing) = self.tools.get(&tool.name) {
            return Err(RegistryError::Duplicate {
                tool: tool.name.clone(),
                first: existing.pack_id.clone(),
                second: tool.pack_id,
            });
        }
        self.tools.insert(tool.name.clone(), Arc::new(tool));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&RegisteredTool> {
        self.tools.get(name).map(|t| &**t)
    }

    /// [`ToolRegistry::get`] as a shared handle, for a call that outlives the borrow (the
    /// async dispatch path hands the tool to a blocking thread).
    pub fn get_shared(&self, name: &str) -> Option<Arc<RegisteredTool>> {
        self.tools.get(name).cloned()
    }

    /// Every tool, sorted by name.
    pub fn tools(&self) -> impl Iterator<Item = &RegisteredTool> {
        self.tools.values().map(|t| &**t)
    }

    /// The tools of loaded packs. Built-in packs take their functions from `builtins` (by tool
    /// name); packs on disk run their entry file.
    pub fn from_packs(
        packs: &[LoadedPack],
        builtins: &HashMap<String, BuiltinFn>,
    ) -> Result<Self, RegistryError> {
        let mut registry = ToolRegistry::new();
        let manifests: Vec<&crate::manifest::PackManifest> =
            packs.iter().map(|p| &p.manifest.manifest).collect();
        for pack in packs {
            let m = &pack.manifest.manifest;
            let state_slugs = shared_state_slugs(m, &manifests);
            for tool in &m.tools {
                let implementation = match &pack.location {
                    PackLocation::Builtin(_) => match builtins.get(&tool.name) {
                        Some(f) => Implementation::Builtin(f.clone()),
                        None => {
                            return Err(RegistryError::MissingBuiltin {
                                tool: tool.name.clone(),
                                pack: m.id.clone(),
                            })
                        }
                    },
                    PackLocation::Dir(dir) => {
                        let entry =
                            parse_entry(&tool.entry).map_err(|reason| RegistryError::Entry {
                                tool: tool.name.clone(),
                                pack: m.id.clone(),
                                reason,
                            })?;
                        let program = crate::manifest::lint::resolve_inside(dir, entry.module)
                            .map_err(|reason| RegistryError::Entry {
                                tool: tool.name.clone(),
                                pack: m.id.clone(),
                                reason,
                            })?;
                        Implementation::Subprocess {
                            program,
                            export: entry.export.map(str::to_string),
                            pack_root: dir.canonicalize().unwrap_or_else(|_| dir.clone()),
                            verified_hash: match pack.pin.integrity {
                                crate::workspace::Integrity::Sha256(_) => Some(pack.hash.clone()),
                                crate::workspace::Integrity::Dev => None,
                            },
                        }
                    }
                };
                registry.register(RegisteredTool {
                    name: tool.name.clone(),
                    pack_id: m.id.clone(),
                    pack_slug: m.slug().to_string(),
                    state_slugs: state_slugs.clone(),
                    pack_version: m.version.clone(),
                    pack_integrity: pack.pin.integrity.to_string(),
                    manifest: tool.clone(),
                    input_schema: compile(&tool.input_schema, &tool.name, &m.id)?,
                    output_schema: compile(&tool.output_schema, &tool.name, &m.id)?,
                    implementation,
                })?;
            }
        }
        Ok(registry)
    }
}

/// The state folders `m`'s tools may write: its own, and each of its `state_folders` whose
/// owner is loaded and lists `m`'s slug in `state_writers`. A one-sided claim grants nothing.
pub fn shared_state_slugs(
    m: &crate::manifest::PackManifest,
    loaded: &[&crate::manifest::PackManifest],
) -> Vec<String> {
    let mut out = vec![m.slug().to_string()];
    for folder in &m.state_folders {
        let consented = loaded.iter().any(|owner| {
            owner.slug() == folder
                && owner.id != m.id
                && owner.state_writers.iter().any(|w| w == m.slug())
                && !crate::manifest::RESERVED_SLUGS.contains(&folder.as_str())
        });
        if consented && !out.contains(folder) {
            out.push(folder.clone());
        }
    }
    out
}

fn compile(
    schema: &Option<serde_json::Map<String, Value>>,
    tool: &str,
    pack: &str,
) -> Result<Option<CompiledSchema>, RegistryError> {
    schema
        .as_ref()
        .map(|s| {
            json_schema::compile(&Value::Object(s.clone())).map_err(|e| RegistryError::Schema {
                tool: tool.to_string(),
                pack: pack.to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()
}
