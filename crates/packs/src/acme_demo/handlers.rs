//! The subscriber side of acme-demo: recover this pack's jobs on `conductor:recovery_requested`
//! (ABR-05, HND-01 to HND-05).
//!
//! Delivery is at least once (DLV-01), so the handler is idempotent twice over: it dedupes by
//! `event_id` through the pack's replay log, and its effect is upsert-shaped, so even a crash
//! between the effect and the replay record (which re-runs the effect) leaves the same state.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_contracts::payloads::RecoveryRequested;
use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::events::handler::{
    HandlerContext, HandlerError, HandlerOutcome, PackEventHandler,
};
use serde_json::{json, Map, Value};

use super::JOB_ID_PREFIX;

/// Where the handler's effect lands. The effect must be upsert-shaped: marking a job twice
/// leaves the same state as marking it once.
pub trait JobStore: Send + Sync {
    fn mark_job_recovered(
        &self,
        job_id: &str,
        ctx: &HandlerContext<'_>,
    ) -> Result<(), HandlerError>;
}

/// Handles `conductor:recovery_requested` for jobs whose id starts with `acme-job-`.
pub struct OnRecoveryRequested<S: JobStore> {
    store: S,
}

impl<S: JobStore> OnRecoveryRequested<S> {
    pub fn new(store: S) -> Self {
        OnRecoveryRequested { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: JobStore> PackEventHandler for OnRecoveryRequested<S> {
    fn handle(
        &self,
        event: &KernelEventV2,
        ctx: &HandlerContext<'_>,
    ) -> Result<HandlerOutcome, HandlerError> {
        let replay_key = format!("acme-demo:recover:{}", event.event_id);

        if ctx.replay_log.has(&replay_key) {
            return Ok(HandlerOutcome::replayed());
        }

        // Only handle recoveries targeted at this pack's jobs.
        let request = RecoveryRequested::from_map(&event.payload)
            .map_err(|e| HandlerError::new(e.to_string()))?;
        if !request.wu_id.starts_with(JOB_ID_PREFIX) {
            return Ok(HandlerOutcome::ignored("wrong-pack"));
        }

        // The effect first, then the replay record (HND-03): a crash in between re-runs an
        // upsert, a crash after it never re-runs anything.
        self.store.mark_job_recovered(&request.wu_id, ctx)?;
        ctx.replay_log
            .put(&replay_key)
            .map_err(|e| HandlerError::new(e.to_string()))?;

        Ok(HandlerOutcome::handled("recovered"))
    }
}

/// The file the real job store keeps, in the pack's state folder.
pub const RECOVERED_JOBS_FILE: &str = "recovered-jobs.json";

/// The real job store: `<state_dir>/recovered-jobs.json`, `{"<job_id>": {"recovered_at": ...}}`,
/// rewritten atomically (temp file, fsync, rename, fsync of the folder) on each new job.
///
/// Marking a job that is already there changes nothing (its first `recovered_at` is kept), so the
/// effect is idempotent. Writers in one process are serialised; the host delivers events to a
/// pack one at a time, so there is no writer in another process.
#[derive(Debug, Default)]
pub struct FileJobStore {
    lock: Mutex<()>,
}

impl JobStore for FileJobStore {
    fn mark_job_recovered(
        &self,
        job_id: &str,
        ctx: &HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let _guard = self
            .lock
            .lock()
            .map_err(|_| HandlerError::new("job store lock poisoned by a panicking handler"))?;
        let path = ctx.state_dir.join(RECOVERED_JOBS_FILE);
        let mut jobs = recovered_jobs(&ctx.state_dir)?;
        if jobs.contains_key(job_id) {
            return Ok(());
        }
        jobs.insert(
            job_id.to_string(),
            json!({"recovered_at": Timestamp::now().to_rfc3339()}),
        );
        let mut bytes =
            serde_json::to_vec_pretty(&jobs).map_err(|e| HandlerError::new(e.to_string()))?;
        bytes.push(b'\n');
        fs::create_dir_all(&ctx.state_dir)
            .and_then(|()| lumenflow_kernel::install::write_file_atomically(&path, &bytes))
            .map_err(|e| HandlerError::new(format!("cannot write `{}`: {e}", path.display())))
    }
}

/// The jobs recorded in `<state_dir>/recovered-jobs.json` (empty when the file does not exist).
pub fn recovered_jobs(state_dir: &Path) -> Result<Map<String, Value>, HandlerError> {
    let path = state_dir.join(RECOVERED_JOBS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => {
            return Err(HandlerError::new(format!(
                "cannot read `{}`: {e}",
                path.display()
            )))
        }
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(jobs)) => Ok(jobs),
        // Never overwrite a file we cannot read: the event stays unacknowledged instead.
        Ok(_) => Err(HandlerError::new(format!(
            "`{}` is not a JSON object",
            path.display()
        ))),
        Err(e) => Err(HandlerError::new(format!(
            "`{}` is not valid JSON: {e}",
            path.display()
        ))),
    }
}
