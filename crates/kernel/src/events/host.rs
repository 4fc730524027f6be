//! The pack host (Q43, HND-06, HND-09): a registry of `{manifest, handlers}` that refuses a pack
//! whose conductor fields do not hold together, and routes each inbound event to every pack that
//! subscribes to its kind.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lumenflow_contracts::event::{check_kind_syntax, KernelEventV2};
use lumenflow_contracts::kinds::is_intrinsic;
use serde::Serialize;

use super::emit::{check_emit, EventSink, PackEmitter};
use super::handler::{HandlerContext, HandlerError, HandlerOutcome, PackEventHandler};
use super::ledger::Ledger;
use super::replay::ReplayLog;
use crate::manifest::{PackManifest, Surface};

/// A pack offered to the host: its manifest and a handler for each subscribed kind.
pub struct PackRegistration {
    pub manifest: PackManifest,
    pub handlers: BTreeMap<String, Arc<dyn PackEventHandler>>,
}

impl PackRegistration {
    pub fn new(manifest: PackManifest) -> Self {
        PackRegistration {
            manifest,
            handlers: BTreeMap::new(),
        }
    }

    pub fn handler(
        mut self,
        kind: impl Into<String>,
        handler: impl PackEventHandler + 'static,
    ) -> Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }
}

/// Why a pack was refused activation. The messages carry the phrases of the authoring guide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("pack `{0}` is already registered")]
    Duplicate(String),
    #[error("pack `{pack}` wants slug `{slug}`, which pack `{other}` already uses (a slug is one pack's event namespace and state folder)")]
    SlugTaken {
        pack: String,
        slug: String,
        other: String,
    },
    #[error("pack `{pack}` wants slug `{slug}`, which is reserved for the runtime's own state")]
    SlugReserved { pack: String, slug: String },
    #[error("Pack slug prefix mismatch: pack `{pack}` declares emitted kind `{kind}` outside its namespace `{slug}:`")]
    PrefixMismatch {
        pack: String,
        slug: String,
        kind: String,
    },
    #[error("Missing backpressure_policy entry: pack `{pack}` emits `{kind}` without choosing `ephemeral` or `queue`")]
    MissingBackpressure { pack: String, kind: String },
    #[error("pack `{pack}`: `{kind}` is not a valid event kind: {reason}")]
    BadKind {
        pack: String,
        kind: String,
        reason: String,
    },
    #[error("pack `{pack}` subscribes to `{kind}` but registers no handler for it")]
    MissingHandler { pack: String, kind: String },
    #[error(
        "pack `{pack}` registers a handler for `{kind}`, which its manifest does not subscribe to"
    )]
    UnsubscribedHandler { pack: String, kind: String },
    #[error("pack `{pack}` requires surface `{surface}`, which this runtime does not provide")]
    SurfaceUnavailable { pack: String, surface: String },
    #[error("pack `{pack}`: cannot open its replay log: {reason}")]
    ReplayLog { pack: String, reason: String },
}

impl RegisterError {
    pub fn code(&self) -> &'static str {
        match self {
            RegisterError::Duplicate(_) => "PACK_ALREADY_REGISTERED",
            RegisterError::SlugTaken { .. } => "PACK_SLUG_TAKEN",
            RegisterError::SlugReserved { .. } => "PACK_SLUG_RESERVED",
            RegisterError::PrefixMismatch { .. } => "PACK_SLUG_PREFIX_MISMATCH",
            RegisterError::MissingBackpressure { .. } => "MISSING_BACKPRESSURE_POLICY",
            RegisterError::BadKind { .. } => "EVENT_KIND_INVALID",
            RegisterError::MissingHandler { .. } => "MISSING_HANDLER",
            RegisterError::UnsubscribedHandler { .. } => "UNSUBSCRIBED_HANDLER",
            RegisterError::SurfaceUnavailable { .. } => "SURFACE_UNAVAILABLE",
            RegisterError::ReplayLog { .. } => "REPLAY_LOG_UNAVAILABLE",
        }
    }
}

struct Registered {
    manifest: Arc<PackManifest>,
    handlers: BTreeMap<String, Arc<dyn PackEventHandler>>,
    replay: ReplayLog,
}

/// One handler's result for one delivered event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub pack_id: String,
    pub kind: String,
    pub event_id: String,
    #[serde(flatten)]
    pub result: DeliveryResult,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DeliveryResult {
    Ok(HandlerOutcome),
    Failed { error: String },
}

impl Delivery {
    pub fn outcome(&self) -> Option<&HandlerOutcome> {
        match &self.result {
            DeliveryResult::Ok(o) => Some(o),
            DeliveryResult::Failed { .. } => None,
        }
    }
}

/// The registry of active packs for one workspace.
pub struct PackHost {
    workspace_dir: PathBuf,
    surfaces: Vec<Surface>,
    packs: Vec<Registered>,
    routes: HashMap<String, Vec<usize>>,
}

impl PackHost {
    /// A host for `workspace_dir` offering `surfaces` (a pack needing another one is refused).
    pub fn new(workspace_dir: &Path, surfaces: &[Surface]) -> Self {
        PackHost {
            workspace_dir: workspace_dir.to_path_buf(),
            surfaces: surfaces.to_vec(),
            packs: Vec::new(),
            routes: HashMap::new(),
        }
    }

    pub fn workspace_dir(&self) -> &Path {
        &self.workspace_dir
    }

    /// Validate and activate a pack. Nothing is registered when any check fails.
    pub fn register(&mut self, reg: PackRegistration) -> Result<(), RegisterError> {
        let m = &reg.manifest;
        let pack = m.id.clone();
        if self.packs.iter().any(|p| p.manifest.id == pack) {
            return Err(RegisterError::Duplicate(pack));
        }
        if let Some(other) = self.packs.iter().find(|p| p.manifest.slug() == m.slug()) {
            return Err(RegisterError::SlugTaken {
                pack,
                slug: m.slug().to_string(),
                other: other.manifest.id.clone(),
            });
        }
        if crate::manifest::RESERVED_SLUGS.contains(&m.slug()) {
            return Err(RegisterError::SlugReserved {
                pack,
                slug: m.slug().to_string(),
            });
        }
        check_conductor_fields(m)?;
        for kind in &m.subscribed_event_kinds {
            if !reg.handlers.contains_key(kind) {
                return Err(RegisterError::MissingHandler {
                    pack,
                    kind: kind.clone(),
                });
            }
        }
        if let Some(kind) = reg
            .handlers
            .keys()
            .find(|k| !m.subscribed_event_kinds.contains(k))
        {
            return Err(RegisterError::UnsubscribedHandler {
                pack,
                kind: kind.clone(),
            });
        }
        for surface in &m.surfaces_required {
            if !self.surfaces.contains(surface) {
                return Err(RegisterError::SurfaceUnavailable {
                    pack,
                    surface: surface_name(*surface).to_string(),
                });
            }
        }
        let replay =
            ReplayLog::open(&super::replay_log_path(&self.workspace_dir, &pack)).map_err(|e| {
                RegisterError::ReplayLog {
                    pack: pack.clone(),
                    reason: e.to_string(),
                }
            })?;
        let index = self.packs.len();
        for kind in &m.subscribed_event_kinds {
            self.routes.entry(kind.clone()).or_default().push(index);
        }
        self.packs.push(Registered {
            manifest: Arc::new(reg.manifest),
            handlers: reg.handlers,
            replay,
        });
        Ok(())
    }

    /// Is any pack subscribed to `kind`?
    pub fn has_subscriber(&self, kind: &str) -> bool {
        self.routes.get(kind).is_some_and(|r| !r.is_empty())
    }

    pub fn manifest(&self, pack_id: &str) -> Option<Arc<PackManifest>> {
        self.packs
            .iter()
            .find(|p| p.manifest.id == pack_id)
            .map(|p| p.manifest.clone())
    }

    /// The emitter a registered pack's code uses.
    pub fn emitter(
        &self,
        pack_id: &str,
        identity: &str,
        sink: Arc<dyn EventSink>,
        ledger: Option<Arc<Ledger>>,
    ) -> Option<PackEmitter> {
        self.manifest(pack_id)
            .map(|m| PackEmitter::new(m, identity, sink, ledger))
    }

    /// Deliver `event` to every subscribed handler, in registration order. A handler error is
    /// reported in its delivery and does not stop the others.
    pub fn deliver(&self, event: &KernelEventV2) -> Vec<Delivery> {
        let Some(indices) = self.routes.get(&event.kind) else {
            return Vec::new();
        };
        indices
            .iter()
            .filter_map(|&i| self.packs.get(i))
            .filter_map(|pack| {
                let handler = pack.handlers.get(&event.kind)?;
                let ctx = HandlerContext {
                    pack_id: &pack.manifest.id,
                    replay_log: &pack.replay,
                    workspace_dir: &self.workspace_dir,
                    state_dir: self
                        .workspace_dir
                        .join(".lumenflow")
                        .join("state")
                        .join(pack.manifest.slug()),
                };
                let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handler.handle(event, &ctx)
                })) {
                    Ok(Ok(outcome)) => DeliveryResult::Ok(outcome),
                    Ok(Err(HandlerError { message })) => DeliveryResult::Failed { error: message },
                    // A panicking handler is a failed delivery, not a crashed runtime.
                    Err(_) => DeliveryResult::Failed {
                        error: "handler panicked".to_string(),
                    },
                };
                Some(Delivery {
                    pack_id: pack.manifest.id.clone(),
                    kind: event.kind.clone(),
                    event_id: event.event_id.clone(),
                    result,
                })
            })
            .collect()
    }
}

/// The conductor fields of a manifest on their own (also checked when a pack is loaded, before
/// any handler exists): every emitted kind well-formed, in the pack's namespace (or a shared one,
/// never a kernel kind) and with a backpressure class; every subscribed kind well-formed.
pub fn check_conductor_fields(m: &PackManifest) -> Result<(), RegisterError> {
    let pack = m.id.clone();
    for kind in &m.emitted_event_kinds {
        check_kind_syntax(kind).map_err(|reason| RegisterError::BadKind {
            pack: pack.clone(),
            kind: kind.clone(),
            reason,
        })?;
        if let Err(super::emit::EmitError::PrefixMismatch { slug, .. }) = check_emit(m, kind) {
            return Err(RegisterError::PrefixMismatch {
                pack,
                slug,
                kind: kind.clone(),
            });
        }
        if is_intrinsic(kind) {
            return Err(RegisterError::PrefixMismatch {
                pack,
                slug: m.slug().to_string(),
                kind: kind.clone(),
            });
        }
        if !m.backpressure_policy.contains_key(kind) {
            return Err(RegisterError::MissingBackpressure {
                pack,
                kind: kind.clone(),
            });
        }
    }
    for kind in &m.subscribed_event_kinds {
        check_kind_syntax(kind).map_err(|reason| RegisterError::BadKind {
            pack: pack.clone(),
            kind: kind.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn surface_name(s: Surface) -> &'static str {
    match s {
        Surface::Http => "http",
        Surface::Mcp => "mcp",
        Surface::SidekickChannel => "sidekick-channel",
    }
}
