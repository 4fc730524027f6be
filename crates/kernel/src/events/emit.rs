//! The emitting side: kind checks at emit (EVT-07, EVT-08, Q7, Q13) and the event sink (Q3).

use std::fmt;
use std::sync::{Arc, Mutex};

use lumenflow_contracts::event::{build_event, BuildOptions, EventError, KernelEventV2};
use lumenflow_contracts::kinds::{is_intrinsic, SHARED_EVENT_NAMESPACES};
use lumenflow_contracts::payloads::parse_payload;
use serde_json::{Map, Value};

use super::ledger::{Ledger, LedgerError};
use crate::manifest::PackManifest;

/// Why an emit was refused. Messages start with the phrases pack authors search for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitError {
    UnknownKind {
        pack: String,
        kind: String,
    },
    PrefixMismatch {
        pack: String,
        slug: String,
        kind: String,
    },
    Event(EventError),
    Payload(String),
    Ledger(String),
    Sink(String),
}

impl EmitError {
    pub fn code(&self) -> &'static str {
        match self {
            EmitError::UnknownKind { .. } => "UNKNOWN_KIND_AT_EMIT",
            EmitError::PrefixMismatch { .. } => "PACK_SLUG_PREFIX_MISMATCH",
            EmitError::Event(e) => e.code(),
            EmitError::Payload(_) => "EVENT_PAYLOAD_INVALID",
            EmitError::Ledger(_) => "LEDGER_WRITE_FAILED",
            EmitError::Sink(_) => "EVENT_SINK_FAILED",
        }
    }
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::UnknownKind { pack, kind } => write!(
                f,
                "Unknown kind at emit: `{kind}` is not in the emitted_event_kinds of pack `{pack}` (declare it in manifest.yaml with a backpressure_policy entry)"
            ),
            EmitError::PrefixMismatch { pack, slug, kind } => write!(
                f,
                "Pack slug prefix mismatch: pack `{pack}` may emit `{slug}:<event_name>` or a shared namespace ({}), not `{kind}`",
                SHARED_EVENT_NAMESPACES.iter().map(|n| format!("`{n}:`")).collect::<Vec<_>>().join(", ")
            ),
            EmitError::Event(e) => write!(f, "{e}"),
            EmitError::Payload(m) => write!(f, "{m}"),
            EmitError::Ledger(m) => write!(f, "cannot stamp the event in the local ledger: {m}"),
            EmitError::Sink(m) => write!(f, "event sink refused the event: {m}"),
        }
    }
}

impl std::error::Error for EmitError {}

/// May `manifest`'s pack emit `kind`? Kernel-intrinsic kinds are the runtime's, not a pack's.
pub fn check_emit(manifest: &PackManifest, kind: &str) -> Result<(), EmitError> {
    let slug = manifest.slug();
    match kind.split_once(':') {
        Some((ns, _)) if ns != slug && !SHARED_EVENT_NAMESPACES.contains(&ns) => {
            return Err(EmitError::PrefixMismatch {
                pack: manifest.id.clone(),
                slug: slug.to_string(),
                kind: kind.to_string(),
            })
        }
        None => {
            return Err(EmitError::PrefixMismatch {
                pack: manifest.id.clone(),
                slug: slug.to_string(),
                kind: kind.to_string(),
            })
        }
        _ => {}
    }
    if !manifest.emitted_event_kinds.iter().any(|k| k == kind) {
        return Err(EmitError::UnknownKind {
            pack: manifest.id.clone(),
            kind: kind.to_string(),
        });
    }
    Ok(())
}

/// Where built events go: the control plane's event port, a test recorder, ... (Q3: the
/// pack-facing sink takes a slice of v2 events; the transport adds `workspace_id`).
pub trait EventSink: Send + Sync {
    fn push(&self, events: &[KernelEventV2]) -> Result<(), String>;
}

/// A sink that records every push (the conformance harness and tests use it).
#[derive(Debug, Default)]
pub struct MemorySink {
    pushes: Mutex<Vec<Vec<KernelEventV2>>>,
    fail_with: Mutex<Option<String>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every push so far, each a batch of events.
    pub fn pushes(&self) -> Vec<Vec<KernelEventV2>> {
        self.pushes.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Make every later push fail (a disconnected control plane).
    pub fn fail(&self, message: impl Into<String>) {
        if let Ok(mut f) = self.fail_with.lock() {
            *f = Some(message.into());
        }
    }
}

impl EventSink for MemorySink {
    fn push(&self, events: &[KernelEventV2]) -> Result<(), String> {
        if let Ok(mut p) = self.pushes.lock() {
            p.push(events.to_vec());
        }
        match self.fail_with.lock().ok().and_then(|f| f.clone()) {
            Some(message) => Err(message),
            None => Ok(()),
        }
    }
}

/// The handle pack code emits through. `from` is always the workspace identity it was made with
/// (the enrollment token subject), never something the pack supplies (ENR-08, ENR-10).
#[derive(Clone)]
pub struct PackEmitter {
    manifest: Arc<PackManifest>,
    identity: String,
    sink: Arc<dyn EventSink>,
    ledger: Option<Arc<Ledger>>,
}

impl PackEmitter {
    pub fn new(
        manifest: Arc<PackManifest>,
        identity: impl Into<String>,
        sink: Arc<dyn EventSink>,
        ledger: Option<Arc<Ledger>>,
    ) -> Self {
        PackEmitter {
            manifest,
            identity: identity.into(),
            sink,
            ledger,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Build (checked), stamp in the ledger, push. The built event is returned even when only
    /// the push failed, so an ephemeral emitter can drop the error (BKP-03) knowing the stamp
    /// is kept.
    pub fn emit(
        &self,
        kind: &str,
        payload: Map<String, Value>,
        options: BuildOptions,
    ) -> Result<KernelEventV2, (Option<KernelEventV2>, EmitError)> {
        let event = self.build(kind, payload, options).map_err(|e| (None, e))?;
        if let Some(ledger) = &self.ledger {
            ledger
                .append(std::slice::from_ref(&event))
                .map_err(|e: LedgerError| {
                    (Some(event.clone()), EmitError::Ledger(e.to_string()))
                })?;
        }
        self.sink
            .push(std::slice::from_ref(&event))
            .map_err(|m| (Some(event.clone()), EmitError::Sink(m)))?;
        Ok(event)
    }

    /// Build and check without sending (for callers that batch).
    pub fn build(
        &self,
        kind: &str,
        payload: Map<String, Value>,
        options: BuildOptions,
    ) -> Result<KernelEventV2, EmitError> {
        if is_intrinsic(kind) {
            return Err(EmitError::PrefixMismatch {
                pack: self.manifest.id.clone(),
                slug: self.manifest.slug().to_string(),
                kind: kind.to_string(),
            });
        }
        check_emit(&self.manifest, kind)?;
        parse_payload(kind, &payload).map_err(|e| EmitError::Payload(e.to_string()))?;
        build_event(kind, &self.identity, payload, options).map_err(EmitError::Event)
    }
}
