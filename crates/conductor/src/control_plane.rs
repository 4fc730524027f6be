//! The sidecar's HTTP client for the control plane (Q1, the original's v1 API): push events,
//! pull the revocation list, exchange an enrollment code.
//!
//! Every request authenticates with the enrollment token as a bearer credential; the token never
//! appears in a log line or an error message (errors name the URL path and the status only).

use lumenflow_contracts::error_text::with_causes;
use std::time::Duration;

use lumenflow_contracts::identity::Enrollment;
use lumenflow_contracts::wire::{
    paths, Accepted, ApiError, EnrollRequest, EventBatch, RevocationList,
};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("control plane `{url}` is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("control plane answered {status} to {path}: {code}: {message}")]
    Refused {
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("control plane answered {path} with a body that is not {expected}: {reason}")]
    BadResponse {
        path: String,
        expected: &'static str,
        reason: String,
    },
    #[error("control plane endpoint `{0}` is not an http:// or https:// URL")]
    BadEndpoint(String),
}

impl ControlPlaneError {
    pub fn code(&self) -> &'static str {
        match self {
            ControlPlaneError::Unreachable { .. } => "CONTROL_PLANE_UNREACHABLE",
            ControlPlaneError::Refused { .. } => "CONTROL_PLANE_REFUSED",
            ControlPlaneError::BadResponse { .. } => "CONTROL_PLANE_BAD_RESPONSE",
            ControlPlaneError::BadEndpoint(_) => "INVALID_ARGUMENT",
        }
    }
}

/// A client for one control plane.
#[derive(Clone)]
pub struct ControlPlane {
    http: reqwest::Client,
    base: String,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("base", &self.base)
            .finish()
    }
}

impl ControlPlane {
    pub fn new(endpoint: &str, timeout: Duration) -> Result<ControlPlane, ControlPlaneError> {
        let base = endpoint.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ControlPlaneError::BadEndpoint(endpoint.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| ControlPlaneError::Unreachable {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(ControlPlane { http, base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        resp: Result<reqwest::Response, reqwest::Error>,
        expected: &'static str,
    ) -> Result<T, ControlPlaneError> {
        let resp = resp.map_err(|e| ControlPlaneError::Unreachable {
            url: format!("{}{path}", self.base),
            // Without the URL: reqwest's messages may echo it, never the headers.
            reason: with_causes(&e.without_url()),
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ControlPlaneError::Unreachable {
                url: format!("{}{path}", self.base),
                reason: with_causes(&e.without_url()),
            })?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(e) => (e.error.code, e.error.message),
                Err(_) => (
                    "HTTP_ERROR".to_string(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
                ),
            };
            return Err(ControlPlaneError::Refused {
                path: path.to_string(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ControlPlaneError::BadResponse {
            path: path.to_string(),
            expected,
            reason: e.to_string(),
        })
    }

    /// `POST /api/v1/events` with `{workspace_id, events}`.
    pub async fn push_events(
        &self,
        token: &str,
        workspace_id: &str,
        events: Vec<Value>,
    ) -> Result<Accepted, ControlPlaneError> {
        let body = EventBatch {
            workspace_id: workspace_id.to_string(),
            events,
        };
        let resp = self
            .http
            .post(format!("{}{}", self.base, paths::EVENTS))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        self.read(paths::EVENTS, resp, "an `{accepted}` acknowledgement")
            .await
    }

    /// `POST /api/v1/events` with events that are already JSON (outbox files, sent as written).
    pub async fn push_raw_events(
        &self,
        token: &str,
        workspace_id: &str,
        events: &[&[u8]],
    ) -> Result<Accepted, ControlPlaneError> {
        let size: usize = events.iter().map(|e| e.len() + 1).sum();
        let mut body = Vec::with_capacity(size + workspace_id.len() + 40);
        body.extend_from_slice(b"{\"workspace_id\":");
        serde_json::to_writer(&mut body, workspace_id).map_err(|e| {
            ControlPlaneError::BadEndpoint(format!("workspace id not encodable: {e}"))
        })?;
        body.extend_from_slice(b",\"events\":[");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e);
        }
        body.extend_from_slice(b"]}");
        let resp = self
            .http
            .post(format!("{}{}", self.base, paths::EVENTS))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        self.read(paths::EVENTS, resp, "an `{accepted}` acknowledgement")
            .await
    }

    /// `GET /api/v1/revocations?workspace_id=..`.
    pub async fn revocations(
        &self,
        token: &str,
        workspace_id: &str,
    ) -> Result<RevocationList, ControlPlaneError> {
        let resp = self
            .http
            .get(format!("{}{}", self.base, paths::REVOCATIONS))
            .query(&[("workspace_id", workspace_id)])
            .bearer_auth(token)
            .send()
            .await;
        self.read(paths::REVOCATIONS, resp, "a revocation list")
            .await
    }

    /// `POST /api/v1/enroll`: exchange a one-time code for an enrollment record.
    pub async fn enroll(&self, request: &EnrollRequest) -> Result<Enrollment, ControlPlaneError> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, paths::ENROLL))
            .json(request)
            .send()
            .await;
        self.read(paths::ENROLL, resp, "an enrollment record").await
    }
}
