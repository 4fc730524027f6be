//! Opening a workspace's runtime: load and verify its packs, build the tool registry, open the
//! event log and evidence store, plug in the sandbox, approvals and tasks, and reconcile calls a
//! crash left open.

use std::collections::HashMap;
use std::path::Path;

use crate::builtin::EmbeddedPack;
use crate::eventlog::{self, EventLog, LogOptions};
use crate::loader::{LoadError, PackLoader};
use crate::workspace;

use super::freshness;

use std::sync::Arc;

use lumenflow_contracts::time::Timestamp;

use crate::approvals::{self, ApprovalProvider, Gate, GateContext, LocalApprovals};

use super::{
    evidence, ApprovalAsk, ApprovalGate, ApprovalRefusal, BuiltinFn, EvidenceStore, Runtime,
    RuntimeOptions, ToolRegistry,
};

/// Kernel state no tool may see, even under a read scope that covers `.lumenflow/`: tokens and
/// keys, the approvals store, the event log and other calls' evidence.
const KERNEL_PRIVATE: &[&str] = &[
    ".lumenflow/state/conductor",
    ".lumenflow/state/keys",
    ".lumenflow/state/approvals",
    ".lumenflow/kernel",
];

/// The dispatch path's task check backed by the task store (KRN-10, KRN-14): a call for an
/// unknown or not-active task is refused; an active task's lane and declared scopes apply.
pub struct StoreTasks(pub crate::tasks::TaskStore);

impl super::TaskGate for StoreTasks {
    fn check_callable(&self, task_id: &str) -> Result<super::TaskFacts, (String, String)> {
        self.0
            .check_callable(task_id)
            .map(|state| super::TaskFacts {
                lane_id: state.lane_id,
                declared_scopes: state.declared_scopes,
                run_id: state.current_run.map(|r| r.run_id),
            })
            .map_err(|e| (e.code().to_string(), e.to_string()))
    }
}

/// The dispatch path's approval step backed by a durable approvals store (KRN-09).
pub struct ProviderGate(pub Arc<dyn ApprovalProvider>);

impl ApprovalGate for ProviderGate {
    fn gate(&self, ask: ApprovalAsk<'_>) -> Result<String, ApprovalRefusal> {
        let ctx = GateContext {
            task: ask.task_id.map(str::to_string),
            run: Some(ask.run_id.to_string()),
            requested_by: ask.requested_by.to_string(),
            ttl: approvals::DEFAULT_TTL,
            reason: if ask.reasons.is_empty() {
                format!(
                    "tool requires approval: {}",
                    ask.required_approval_ids.join(", ")
                )
            } else {
                ask.reasons.join("; ")
            },
            required_ids: ask.required_approval_ids,
        };
        let now = Timestamp::now();
        match approvals::gate(&*self.0, ask.tool, ask.input_hash, ctx, now) {
            Ok(Gate::Proceed { approval_id, .. }) => Ok(approval_id),
            Ok(Gate::Required { approval, .. }) => {
                let mut message = if ask.surface == super::Surface::Cli {
                    approvals::required_message(&approval)
                } else {
                    approvals::required_message_for_agent(&approval)
                };
                if let Some(denied) =
                    approvals::last_denial(&*self.0, ask.tool, ask.input_hash, now)
                {
                    message.push_str(&format!("; {}", approvals::denial_note(&denied)));
                }
                Err(ApprovalRefusal {
                    code: approvals::APPROVAL_REQUIRED.to_string(),
                    message,
                    approval_id: Some(approval.id),
                })
            }
            // Any failure of the approvals store is a refusal, never a pass (fail closed).
            Err(e) => Err(ApprovalRefusal {
                code: e.code().to_string(),
                message: e.to_string(),
                approval_id: None,
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Workspace(crate::diagnostics::Diagnostics),
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("{0}")]
    Registry(#[from] super::registry::RegistryError),
    #[error("{0}")]
    Log(#[from] eventlog::LogError),
    #[error("cannot open the evidence store `{path}`: {source}")]
    Evidence {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Component(String),
}

impl OpenError {
    pub fn code(&self) -> &'static str {
        match self {
            OpenError::Workspace(_) => "WORKSPACE_INVALID",
            OpenError::Load(e) => e.code(),
            OpenError::Registry(e) => e.code(),
            OpenError::Log(e) => e.code(),
            OpenError::Evidence { .. } => "IO_ERROR",
            OpenError::Component(_) => "RUNTIME_INIT_FAILED",
        }
    }
}

/// Open the runtime of the workspace at `dir`. `builtin_packs` and `builtin_tools` come from the
/// packs crate (the kernel knows no particular pack).
pub fn open(
    dir: &Path,
    builtin_packs: &[EmbeddedPack],
    builtin_tools: &HashMap<String, BuiltinFn>,
    options: RuntimeOptions,
) -> Result<Runtime, OpenError> {
    // Fingerprinted before it is parsed: an edit made while opening counts as a change.
    let before_load = freshness::WorkspaceWatch::fingerprint(dir);
    let doc = workspace::read_workspace(dir).map_err(OpenError::Workspace)?;
    let watch = before_load.map(|f| freshness::WorkspaceWatch::new(dir, f, doc.config_hash()));
    let loader = PackLoader::for_workspace(&doc, builtin_packs);
    let packs = loader.load_all(&doc)?;
    let registry = ToolRegistry::from_packs(&packs, builtin_tools)?;
    // Before anything is written under it, so the folder is never committable.
    workspace::ensure_state_dir(dir).map_err(|e| {
        OpenError::Component(format!(
            "cannot create the state folder `{}` with its .gitignore: {e}; check the workspace folder's permissions",
            dir.join(workspace::STATE_DIR).display()
        ))
    })?;
    let log = EventLog::open(&eventlog::default_path(dir), LogOptions::default())?;
    let evidence_root = evidence::default_root(dir);
    let evidence = EvidenceStore::open(&evidence_root).map_err(|source| OpenError::Evidence {
        path: evidence_root.display().to_string(),
        source,
    })?;
    let manifests: Vec<_> = packs.iter().map(|p| p.manifest.manifest.clone()).collect();
    let tasks =
        crate::tasks::TaskStore::from_workspace(&doc, log.clone()).with_packs(manifests.clone());
    let sandbox = super::subprocess::SandboxRunner {
        mode: crate::sandbox::SandboxMode::detect(doc.spec.sandbox, options.sandbox_helper.clone())
            .map_err(|e| e.to_string()),
        deny_overlays: doc
            .spec
            .security
            .deny_overlays
            .iter()
            .cloned()
            .chain(KERNEL_PRIVATE.iter().map(|p| p.to_string()))
            .collect(),
    };
    let mut warnings: Vec<String> = packs.iter().flat_map(|p| p.warnings.clone()).collect();
    if let Some(cut) = log.stats().torn_tail {
        warnings.push(format!(
            "the kernel log's last line {} ({} bytes: {}) was cut as an interrupted write; the \
             bytes are kept in `{}`",
            cut.line,
            cut.bytes,
            cut.problem,
            cut.saved_to.display()
        ));
    }
    let mut runtime = Runtime::new(dir, &doc, registry, manifests, log, evidence);
    runtime.warnings = warnings;
    runtime.workspace_watch = watch;
    runtime.subprocess = Some(Arc::new(sandbox));
    runtime.approvals = Some(Arc::new(ProviderGate(Arc::new(LocalApprovals::open(dir)))));
    runtime.tasks = Some(Arc::new(StoreTasks(tasks)));
    runtime.options = options;
    runtime.reconcile_crashed()?;
    Ok(runtime)
}
