//! [`Runtime::dispatch_async`]: the one dispatch path for async callers.

use std::sync::Arc;

use lumenflow_contracts::tool_output::{codes, ToolOutput};

use super::evidence::Lookup;
use super::phases::{Checked, Inline, WouldBlock};
use super::{prepared, CallOutcome, CallRequest, RegisteredTool, Runtime};

impl Runtime {
    /// [`Runtime::dispatch`] for async callers (the sidecar): the same checks, receipts and
    /// events, in the same order, but no thread waits while a receipt is made durable. The
    /// receipts are awaited (their commits are shared with every other call's); only what may
    /// block runs on a blocking thread: writing a new input's evidence, checks that read the
    /// disk or wait for a decision (a task's state, input paths, an approval; then the whole
    /// call runs there, as [`Runtime::dispatch`]), and the tool itself.
    ///
    /// Must be called within a tokio runtime. The call runs to its end even if the returned
    /// future is dropped: a client that hangs up never leaves a started receipt without its
    /// finish. `Err` only when the call's task itself stopped (a bug), with why.
    ///
    /// `agent-runtime:tool_called` is emitted on the async task: the runtime's
    /// [`super::RuntimeEvents`] should have no ledger of its own and a sink that hands events
    /// off without waiting for the disk (the sidecar's stamps them on a thread of its own).
    pub async fn dispatch_async(self: Arc<Self>, req: CallRequest) -> Result<CallOutcome, String> {
        // Shared, not cloned, with the blocking threads that may need it: an input can be large.
        let req = Arc::new(req);
        let task = tokio::spawn(async move {
            let outcome = self.run_async(&req).await?;
            if let Some(events) = &self.events {
                events.tool_called(&req.tool, &req.input, &outcome);
            }
            Ok(outcome)
        });
        task.await
            .map_err(|e| format!("the dispatch task stopped: {e}"))?
    }

    async fn run_async(self: &Arc<Self>, req: &Arc<CallRequest>) -> Result<CallOutcome, String> {
        let input = match self.evidence.lookup(&req.input) {
            Lookup::Known(stored) => Ok(stored),
            Lookup::New(blob) => {
                let evidence = self.evidence.clone();
                on_blocking_thread(move || evidence.write(blob).map_err(|e| e.to_string()))
                    .await
                    .and_then(|written| written)
            }
        };
        let checked = match self.check::<Inline>(req, &input) {
            Ok(checked) => checked,
            Err(WouldBlock) => {
                let (rt, req) = (Arc::clone(self), Arc::clone(req));
                return on_blocking_thread(move || rt.dispatch_with_input(&req, &input, 0)).await;
            }
        };
        let mut admitted = match checked {
            Checked::Refused(refused) => {
                let recorded = self.log.append_batch_async(refused.records).await.is_ok();
                return Ok(CallOutcome {
                    recorded,
                    ..refused.outcome
                });
            }
            Checked::Admitted(admitted) => admitted,
        };
        if let Err(e) = self.log.append_async(admitted.take_started()).await {
            return Ok(admitted.not_started(e));
        }
        let job = Execution {
            runtime: Arc::clone(self),
            req: Arc::clone(req),
            tool: Arc::clone(&admitted.tool),
            prepared: Arc::clone(&admitted.prepared),
            receipt_id: admitted.draft.receipt_id.clone(),
            run_id: admitted.draft.run_id.clone(),
        };
        let (output, sandbox, output_evidence) = on_blocking_thread(move || job.run())
            .await
            .unwrap_or_else(|stopped| {
                let message = format!("the thread running `{}` stopped: {stopped}", req.tool);
                (
                    ToolOutput::fail(codes::TOOL_EXECUTION_FAILED, message),
                    "none",
                    None,
                )
            });
        let (finished, outcome) = self.finish(req, admitted, output, sandbox, output_evidence);
        let recorded = self.log.append_async(finished).await.is_ok();
        Ok(CallOutcome {
            recorded,
            ..outcome
        })
    }
}

/// What the async path hands to a blocking thread to run an admitted call's tool.
struct Execution {
    runtime: Arc<Runtime>,
    req: Arc<CallRequest>,
    tool: Arc<RegisteredTool>,
    prepared: Arc<prepared::Prepared>,
    receipt_id: String,
    run_id: String,
}

impl Execution {
    /// Steps 8 and 9, and the output's evidence.
    fn run(self) -> (ToolOutput, &'static str, Option<super::OutputEvidence>) {
        let rt = &self.runtime;
        let (output, sandbox) = rt.execute(
            &self.req,
            &self.tool,
            &self.prepared.effective,
            &self.receipt_id,
            &self.run_id,
            0,
        );
        let output = rt.check_output(&self.tool, output);
        let stored = rt.output_evidence(&output);
        (output, sandbox, stored)
    }
}

/// Run `f` on the tokio runtime's blocking threads; `Err` says why it did not finish.
async fn on_blocking_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}
