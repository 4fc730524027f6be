//! How the campus pack's observations become v2 events outside a tool call: the operator
//! commands (`lumenflow campus facility add`, `ingest`, `poll`, `attest`) record through a
//! [`Recorder`], which checks every kind against the pack's manifest (the kernel's
//! [`check_emit`]), builds events with the contracts' builder and stamps them in the workspace's
//! local ledger (`.lumenflow/state/conductor/events.jsonl`) in batches, one fsync per batch.
//! `from` is the identity the recorder was made with (the enrollment subject, else the
//! workspace id), never something a row supplies.

use std::sync::Arc;

use lumenflow_contracts::event::{build_event, BuildOptions, KernelEventV2};
use lumenflow_contracts::payloads::parse_payload;
use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::events::emit::{check_emit, EmitError, EventSink};
use lumenflow_kernel::events::ledger::Ledger;
use lumenflow_kernel::manifest::PackManifest;
use serde::Serialize;
use serde_json::{Map, Value};

/// Events per ledger append (one fsync each).
pub const LEDGER_BATCH: usize = 16_384;

/// Builds and stamps the pack's events for operator commands.
#[derive(Clone)]
pub struct Recorder {
    manifest: Arc<PackManifest>,
    identity: String,
    ledger: Option<Arc<Ledger>>,
    sink: Option<Arc<dyn EventSink>>,
}

impl Recorder {
    /// A recorder stamping into `ledger` (when given) and pushing to `sink` (when given).
    pub fn new(
        identity: impl Into<String>,
        ledger: Option<Arc<Ledger>>,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Self {
        Recorder {
            manifest: Arc::new(super::manifest()),
            identity: identity.into(),
            ledger,
            sink,
        }
    }

    /// A recorder on the workspace's local ledger.
    pub fn open(workspace_dir: &std::path::Path, identity: &str) -> Result<Self, EmitError> {
        let path = lumenflow_kernel::events::ledger_path(workspace_dir);
        let ledger = Ledger::open(&path).map_err(|e| EmitError::Ledger(e.to_string()))?;
        Ok(Recorder::new(identity, Some(Arc::new(ledger)), None))
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Build one event from a typed payload (whose struct already holds the contract's value
    /// rules), checked against the manifest.
    pub fn build<P: Serialize>(
        &self,
        kind: &str,
        payload: &P,
        key: Option<String>,
        at: Timestamp,
    ) -> Result<KernelEventV2, EmitError> {
        check_emit(&self.manifest, kind)?;
        let map = match serde_json::to_value(payload) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(EmitError::Payload(format!(
                    "payload of `{kind}` is not an object"
                )))
            }
            Err(e) => return Err(EmitError::Payload(e.to_string())),
        };
        build_event(
            kind,
            &self.identity,
            map,
            BuildOptions {
                idempotency_key: key,
                timestamp: Some(at),
                seq: None,
            },
        )
        .map_err(EmitError::Event)
    }

    /// Build one event from a payload map the caller assembled field by field from checked
    /// values (the bulk path of ingestion: no serializer round trip). The ingestion tests parse
    /// every such event with the contract's `parse_payload`.
    pub fn build_map(
        &self,
        kind: &str,
        payload: Map<String, Value>,
        key: Option<String>,
        at: Timestamp,
    ) -> Result<KernelEventV2, EmitError> {
        check_emit(&self.manifest, kind)?;
        build_event(
            kind,
            &self.identity,
            payload,
            BuildOptions {
                idempotency_key: key,
                timestamp: Some(at),
                seq: None,
            },
        )
        .map_err(EmitError::Event)
    }

    /// Build one event from an untyped payload, validated against the kind's shape first.
    pub fn build_checked(
        &self,
        kind: &str,
        payload: Map<String, Value>,
        key: Option<String>,
    ) -> Result<KernelEventV2, EmitError> {
        check_emit(&self.manifest, kind)?;
        parse_payload(kind, &payload).map_err(|e| EmitError::Payload(e.to_string()))?;
        build_event(
            kind,
            &self.identity,
            payload,
            BuildOptions {
                idempotency_key: key,
                ..BuildOptions::default()
            },
        )
        .map_err(EmitError::Event)
    }

    /// Stamp events in the ledger (batched), then push them to the sink. The kinds are
    /// ephemeral (BKP-02): a sink failure is returned as a warning, the stamps stay.
    pub fn record(&self, events: &[KernelEventV2]) -> Result<Option<String>, EmitError> {
        if let Some(ledger) = &self.ledger {
            for chunk in events.chunks(LEDGER_BATCH) {
                ledger
                    .append(chunk)
                    .map_err(|e| EmitError::Ledger(e.to_string()))?;
            }
        }
        if let Some(sink) = &self.sink {
            for chunk in events.chunks(LEDGER_BATCH) {
                if let Err(m) = sink.push(chunk) {
                    return Ok(Some(format!("event sink refused the events: {m}")));
                }
            }
        }
        Ok(None)
    }
}
