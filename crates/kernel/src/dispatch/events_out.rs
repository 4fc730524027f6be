//! Events a runtime sends out: the kernel's own `agent-runtime:tool_called` for every call
//! (Q40) and the events built-in tools emit for their pack.
//!
//! A runtime without [`RuntimeEvents`] (the plain CLI) emits nothing; the sidecar plugs in its
//! delivery as the sink, with the enrollment subject as the identity, so every event's `from`
//! is the token subject (ENR-08) and never something a tool chose.

use std::sync::Arc;

use lumenflow_contracts::canonical_json;
use lumenflow_contracts::digest::sha256_hex;
use lumenflow_contracts::event::{build_event, BuildOptions, KernelEventV2};
use lumenflow_contracts::kinds::AgentRuntimeKind;
use lumenflow_contracts::tool_output::codes;
use serde_json::{Map, Value};

use crate::events::emit::{EmitError, EventSink, PackEmitter};
use crate::events::ledger::Ledger;
use crate::manifest::PackManifest;

/// Where a runtime's events go: stamped in the ledger (when one is given), then pushed.
#[derive(Clone)]
pub struct RuntimeEvents {
    identity: String,
    sink: Arc<dyn EventSink>,
    ledger: Option<Arc<Ledger>>,
}

impl RuntimeEvents {
    pub fn new(
        identity: impl Into<String>,
        sink: Arc<dyn EventSink>,
        ledger: Option<Arc<Ledger>>,
    ) -> Self {
        RuntimeEvents {
            identity: identity.into(),
            sink,
            ledger,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// An emitter for one pack's own kinds (checked against its manifest at every emit).
    pub fn emitter_for(&self, manifest: &PackManifest) -> PackEmitter {
        PackEmitter::new(
            Arc::new(manifest.clone()),
            self.identity.clone(),
            self.sink.clone(),
            self.ledger.clone(),
        )
    }

    /// `agent-runtime:tool_called` for one finished call. Ephemeral (BKP-02): a failed push
    /// is dropped; the ledger stamp and the receipts in the event log remain.
    pub(crate) fn tool_called(&self, tool_name: &str, input: &Value, call: &super::CallOutcome) {
        self.tool_called_as(tool_name, input, call, None);
    }

    /// [`tool_called`](Self::tool_called) with the outcome given by the caller when the error
    /// code alone does not tell it (a refusal a built-in tool made with its own code).
    pub(crate) fn tool_called_as(
        &self,
        tool_name: &str,
        input: &Value,
        call: &super::CallOutcome,
        outcome: Option<&'static str>,
    ) {
        let output = &call.output;
        let envelope_hash = envelope_hash(tool_name, input);
        let code = output.error_code();
        let outcome = outcome.unwrap_or(match code {
            None if output.success => "success",
            Some(codes::APPROVAL_REQUIRED) => "approval_required",
            Some(
                codes::SCOPE_DENIED
                | codes::POLICY_DENIED
                | codes::TOOL_NOT_FOUND
                | codes::TASK_STATE,
            ) => "denied",
            _ => "failure",
        });
        let mut payload = Map::new();
        payload.insert("tool_name".into(), tool_name.into());
        payload.insert("envelope_hash".into(), envelope_hash.into());
        payload.insert("outcome".into(), outcome.into());
        if let Some(code) = code {
            payload.insert("error_code".into(), code.into());
        }
        if call.recorded {
            payload.insert("receipt_id".into(), call.receipt_id.clone().into());
        }
        // The run lets the control plane put the call in its replay (Ask → ... → Proof).
        payload.insert("run_id".into(), call.run_id.clone().into());
        let kind = AgentRuntimeKind::ToolCalled.as_str();
        let Ok(event) = build_event(kind, &self.identity, payload, BuildOptions::default()) else {
            return;
        };
        self.deliver(event);
    }

    fn deliver(&self, event: KernelEventV2) {
        if let Some(ledger) = &self.ledger {
            let _ = ledger.append(std::slice::from_ref(&event));
        }
        let _ = self.sink.push(std::slice::from_ref(&event));
    }

    pub(crate) fn emit_for(
        &self,
        manifest: &PackManifest,
        kind: &str,
        payload: Map<String, Value>,
        options: BuildOptions,
    ) -> Result<KernelEventV2, EmitError> {
        self.emitter_for(manifest)
            .emit(kind, payload, options)
            .map_err(|(_, e)| e)
    }
}

/// Q40's `envelope_hash`: `sha256:` and the hex SHA-256 of the canonical JSON of
/// `{"tool_name": ..., "input": ...}`. Written member by member in RFC 8785 order (`input` before
/// `tool_name`): building it as a `Value` copied the whole input for every call.
fn envelope_hash(tool_name: &str, input: &Value) -> String {
    let mut envelope = String::with_capacity(64);
    envelope.push_str("{\"input\":");
    canonical_json::write_canonical(&mut envelope, input);
    envelope.push_str(",\"tool_name\":");
    canonical_json::write_canonical_str(&mut envelope, tool_name);
    envelope.push('}');
    format!("sha256:{}", sha256_hex(envelope.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::json_value;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        /// Q40: the hash is that of the canonical envelope object, whatever the input and name.
        #[test]
        fn envelope_hash_is_the_hash_of_the_canonical_envelope(
            tool in "\\PC{0,16}",
            input in json_value(),
        ) {
            let expected = canonical_json::canonical_hash(&json!({"tool_name": tool, "input": input}));
            prop_assert_eq!(envelope_hash(&tool, &input), format!("sha256:{expected}"));
        }
    }
}
