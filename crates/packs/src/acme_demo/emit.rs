//! The emitting side of acme-demo: run a (mock) job and announce it (EVT-05, EVT-06, BKP-03).

use lumenflow_contracts::event::{BuildOptions, KernelEventV2};
use lumenflow_kernel::events::emit::{EmitError, PackEmitter};
use serde_json::{json, Map};

use super::JOB_COMPLETED;

/// What a job needs: the pack's emitter (which carries the workspace identity) and the job id.
pub struct JobContext<'a> {
    pub emitter: &'a PackEmitter,
    pub job_id: &'a str,
}

/// What a job did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub job_id: String,
    /// The job's own result (`ok`; the demo job cannot fail).
    pub result: &'static str,
    /// What became of the `acme-demo:job_completed` event.
    pub completion: Completion,
}

/// What became of the completion event.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Built, stamped in the ledger (when the emitter has one) and pushed to the sink.
    Sent(KernelEventV2),
    /// Built and stamped, but the sink refused it. The kind is ephemeral, so the event is
    /// dropped (BKP-03): the job still succeeded and the control plane reconstructs its state
    /// from later events.
    Dropped {
        event: KernelEventV2,
        reason: String,
    },
    /// Not emitted at all: a bug in the pack or the workspace (a kind the manifest does not
    /// declare, a bad payload, a ledger that cannot be written). Never swallowed.
    Failed(EmitError),
}

impl Completion {
    /// The event, when one was built and stamped.
    pub fn event(&self) -> Option<&KernelEventV2> {
        match self {
            Completion::Sent(event) | Completion::Dropped { event, .. } => Some(event),
            Completion::Failed(_) => None,
        }
    }
}

/// Run the job, then emit `acme-demo:job_completed` with payload `{job_id, result}`.
pub fn run_job(ctx: &JobContext<'_>) -> JobResult {
    // Your business logic goes here. The demo job completes instantly.
    let result = "ok";

    let mut payload = Map::new();
    payload.insert("job_id".into(), json!(ctx.job_id));
    payload.insert("result".into(), json!(result));
    // A retry of the same job gets the same event_id, so the control plane dedupes it.
    let options = BuildOptions::idempotent(format!("{}:completed", ctx.job_id));

    let completion = match ctx.emitter.emit(JOB_COMPLETED, payload, options) {
        Ok(event) => Completion::Sent(event),
        // Ephemeral per manifest: fail silent on a sink that is down (the ledger has the stamp).
        Err((Some(event), EmitError::Sink(reason))) => Completion::Dropped { event, reason },
        Err((_, error)) => Completion::Failed(error),
    };
    JobResult {
        job_id: ctx.job_id.to_string(),
        result,
        completion,
    }
}
