//! Approvals decided in the control plane (issue 6 §5, Q36): the kernel's approval step for an
//! enrolled workspace.
//!
//! A call that needs an approval asks the control plane (`/api/v1/approvals/request`, the
//! original's shapes, subject `{tool, input_hash, required_approvals}`), then waits, polling,
//! until an operator decides or the wait runs out. An `approved` record is a grant bound to that
//! tool and input hash; it is consumed here, once, by exclusively creating a marker file under
//! `.lumenflow/state/conductor/approvals-consumed/` (fsync'd before the tool runs), so a grant
//! lets exactly one execution through even if the control plane is asked again. Anything that
//! goes wrong talking to the control plane is a refusal, never a pass (fail closed).

use lumenflow_contracts::error_text::with_causes;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lumenflow_contracts::identity::Enrollment;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::wire::{
    paths, ApprovalList, ApprovalListInput, ApprovalRecord, ApprovalRequestInput,
};
use lumenflow_kernel::dispatch::{ApprovalAsk, ApprovalGate, ApprovalRefusal};
use lumenflow_kernel::file_lock::LockFile;
use serde_json::json;

/// Beside `approvals-consumed/`: held while a call looks for its request and asks for one.
const REQUEST_LOCK: &str = "approvals-request.lock";
/// The approval `type` of a governed tool call.
pub const TOOL_CALL_APPROVAL: &str = "tool_call";
/// The refusal code when the control plane cannot be asked (HTTP 503 on the sidecar).
pub const UNAVAILABLE: &str = "APPROVAL_PROVIDER_UNAVAILABLE";
const REQUIRED: &str = "APPROVAL_REQUIRED";
/// An operator rejected the call's approval while it waited (HTTP 403 on the sidecar).
pub const DENIED: &str = "APPROVAL_DENIED";
/// The call's approval expired undecided while it waited (HTTP 403).
pub const EXPIRED: &str = "APPROVAL_EXPIRED";

/// How long a pending request lives in the control plane before it reads as `expired`.
pub const REQUEST_TTL: Duration = Duration::from_secs(60 * 60);

pub struct CloudApprovalGate {
    endpoint: String,
    token: String,
    workspace_id: String,
    consumed_dir: PathBuf,
    /// How long one call waits for a decision before answering `APPROVAL_REQUIRED`.
    wait: Duration,
    poll: Duration,
    // Async client driven through the sidecar's runtime handle: dispatch runs on blocking
    // threads, where `Handle::block_on` is allowed, and nothing here owns a runtime that would
    // have to be dropped inside async code.
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

impl CloudApprovalGate {
    /// A gate for the workspace at `workspace_dir`, enrolled with a control plane. Its calls
    /// run on `handle`'s runtime and must come from outside async code (dispatch runs on
    /// blocking threads).
    pub fn new(
        enrollment: &Enrollment,
        workspace_dir: &Path,
        wait: Duration,
        handle: tokio::runtime::Handle,
    ) -> Result<CloudApprovalGate, String> {
        let endpoint = enrollment
            .control_plane_endpoint
            .clone()
            .ok_or("the enrollment names no control plane endpoint")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the approvals HTTP client: {e}"))?;
        Ok(CloudApprovalGate {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: enrollment.token.clone(),
            workspace_id: enrollment.workspace_id.clone(),
            consumed_dir: workspace_dir.join(".lumenflow/state/conductor/approvals-consumed"),
            wait,
            poll: Duration::from_millis(250),
            client,
            handle,
        })
    }

    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, String> {
        let url = format!("{}{path}", self.endpoint);
        let request = self.client.post(&url).bearer_auth(&self.token).json(body);
        self.handle.block_on(async {
            let resp = request
                .send()
                .await
                .map_err(|e| format!("POST {url}: {}", with_causes(&e)))?;
            read_json(resp, &url).await
        })
    }

    fn get_record(&self, id: &str) -> Result<ApprovalRecord, String> {
        let url = format!("{}/api/v1/approvals/{id}", self.endpoint);
        let request = self.client.get(&url).bearer_auth(&self.token);
        self.handle.block_on(async {
            let resp = request
                .send()
                .await
                .map_err(|e| format!("GET {url}: {}", with_causes(&e)))?;
            read_json(resp, &url).await
        })
    }

    /// Every tool-call approval of this workspace bound to exactly this tool and input.
    fn bound(&self, tool: &str, input_hash: &str) -> Result<Vec<ApprovalRecord>, String> {
        let mut out = Vec::new();
        let mut cursor = None;
        // A bounded walk: a workspace with more than 50 000 approvals has bigger problems.
        for _ in 0..250 {
            let page: ApprovalList = self.post(
                paths::APPROVALS_LIST,
                &ApprovalListInput {
                    workspace_id: self.workspace_id.clone(),
                    status: None,
                    approval_type: Some(TOOL_CALL_APPROVAL.into()),
                    limit: Some(200),
                    cursor: cursor.clone(),
                },
            )?;
            out.extend(page.approvals.into_iter().filter(|a| {
                a.subject.get("tool").and_then(|v| v.as_str()) == Some(tool)
                    && a.subject.get("input_hash").and_then(|v| v.as_str()) == Some(input_hash)
            }));
            match page.next_cursor {
                Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }

    fn is_consumed(&self, id: &str) -> bool {
        self.consumed_dir.join(marker_name(id)).exists()
    }

    /// Claim a grant for one execution; `false` when another call got there first.
    fn consume(
        &self,
        record: &ApprovalRecord,
        tool: &str,
        input_hash: &str,
    ) -> Result<bool, String> {
        fs::create_dir_all(&self.consumed_dir)
            .map_err(|e| format!("{}: {e}", self.consumed_dir.display()))?;
        let path = self.consumed_dir.join(marker_name(&record.approval_id));
        let mut file = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let body = json!({
            "schema_version": 1,
            "approval_id": record.approval_id,
            "tool": tool,
            "input_hash": input_hash,
            "reviewer_id": record.reviewer_id,
            "consumed_at": Timestamp::now().to_rfc3339(),
        });
        file.write_all(body.to_string().as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if let Ok(d) = fs::File::open(&self.consumed_dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    }

    fn gate_inner(&self, ask: &ApprovalAsk<'_>) -> Result<Result<String, ApprovalRefusal>, String> {
        // Find-or-request under a lock of the workspace: calls for one tool and input at once
        // (threads of the sidecar, or another process) share one pending request in the
        // control plane. The lock is released before waiting for the decision.
        let lock_path = self.consumed_dir.with_file_name(REQUEST_LOCK);
        let held =
            LockFile::acquire(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
        let records = self.bound(ask.tool, ask.input_hash)?;
        for r in records.iter().filter(|r| r.status == "approved") {
            if !self.is_consumed(&r.approval_id) && self.consume(r, ask.tool, ask.input_hash)? {
                return Ok(Ok(r.approval_id.clone()));
            }
        }
        let pending = records.into_iter().find(|r| r.status == "pending");
        let mut record = match pending {
            Some(r) => r,
            None => {
                let expires = Timestamp::from_unix_millis(
                    Timestamp::now().unix_millis() + REQUEST_TTL.as_millis() as i64,
                );
                self.post(
                    paths::APPROVALS_REQUEST,
                    &ApprovalRequestInput {
                        workspace_id: self.workspace_id.clone(),
                        approval_type: TOOL_CALL_APPROVAL.into(),
                        subject: json!({
                            "tool": ask.tool,
                            "input_hash": ask.input_hash,
                            "required_approvals": ask.required_approval_ids,
                        }),
                        context: Some(json!({
                            "task_id": ask.task_id,
                            "run_id": ask.run_id,
                            "reasons": ask.reasons,
                        })),
                        requester_id: Some(ask.requested_by.to_string()),
                        requester_type: Some("agent".into()),
                        expires_at: Some(expires.to_rfc3339()),
                    },
                )?
            }
        };
        drop(held);
        let deadline = Instant::now() + self.wait;
        while record.status == "pending" && Instant::now() < deadline {
            std::thread::sleep(
                self.poll
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
            record = self.get_record(&record.approval_id)?;
        }
        match record.status.as_str() {
            "approved" => {
                if self.consume(&record, ask.tool, ask.input_hash)? {
                    Ok(Ok(record.approval_id))
                } else {
                    Ok(Err(refusal(
                        REQUIRED,
                        format!(
                            "approval {} was already used by another call; ask again",
                            record.approval_id
                        ),
                        None,
                    )))
                }
            }
            "pending" => Ok(Err(refusal(
                REQUIRED,
                format!(
                    "Tool execution requires approval {} ({}); waiting for an operator in the control plane",
                    record.approval_id,
                    ask.required_approval_ids.join(", ")
                ),
                Some(record.approval_id),
            ))),
            other => Ok(Err(refusal(
                match other {
                    "rejected" => DENIED,
                    "expired" => EXPIRED,
                    _ => REQUIRED,
                },
                format!(
                    "approval {} was {other}{}{}; a new call with the same input asks again",
                    record.approval_id,
                    record
                        .reviewer_id
                        .as_deref()
                        .map(|r| format!(" by {r}"))
                        .unwrap_or_default(),
                    record
                        .decision_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                Some(record.approval_id),
            ))),
        }
    }
}

impl ApprovalGate for CloudApprovalGate {
    fn gate(&self, ask: ApprovalAsk<'_>) -> Result<String, ApprovalRefusal> {
        match self.gate_inner(&ask) {
            Ok(result) => result,
            Err(message) => Err(refusal(
                UNAVAILABLE,
                format!("the control plane's approvals could not be reached, so the call is refused: {message}"),
                None,
            )),
        }
    }
}

fn refusal(code: &str, message: String, approval_id: Option<String>) -> ApprovalRefusal {
    ApprovalRefusal {
        code: code.to_string(),
        message,
        approval_id,
    }
}

/// Approval ids come from the network: keep only characters safe in a file name.
fn marker_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{safe}-{}.json",
        &lumenflow_contracts::digest::sha256_hex(id.as_bytes())[..12]
    )
}

async fn read_json<R: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    url: &str,
) -> Result<R, String> {
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        let short: String = text.chars().take(300).collect();
        return Err(format!("{url} answered HTTP {status}: {short}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{url} answered unexpected JSON: {e}"))
}
