//! One error type for the control plane, with a stable `code()` and the HTTP status it maps to.
//!
//! Handlers return `CloudError`; `IntoResponse` turns it into the contracts' `ApiError` body
//! `{"error": {"code", "message"}}` in exactly one place, so every route fails the same way.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lumenflow_contracts::wire::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The request body or a parameter is malformed (names the field or index).
    #[error("{0}")]
    BadRequest(String),
    /// An event of a batch has an unknown `schema_version`.
    #[error("{0}")]
    SchemaVersion(String),
    /// An event is not valid (names its index and field).
    #[error("{0}")]
    EventInvalid(String),
    /// The body or the batch is too large.
    #[error("{0}")]
    TooLarge(String),
    /// No bearer token, or one that does not verify, expired or was revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but for another workspace.
    #[error("{0}")]
    WrongWorkspace(String),
    /// The token lacks the scope the route needs.
    #[error("{0}")]
    ScopeDenied(String),
    /// An event's `from` is not the authenticated subject.
    #[error("{0}")]
    FromMismatch(String),
    /// An enrollment code that is unknown or expired.
    #[error("{0}")]
    EnrollmentCodeInvalid(String),
    /// An enrollment code that was already exchanged.
    #[error("{0}")]
    EnrollmentCodeUsed(String),
    /// An enrollment code for another workspace than the caller expects (not used up).
    #[error("{0}")]
    EnrollmentWorkspaceMismatch(String),
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow the change (e.g. an approval already decided).
    #[error("{0}")]
    Conflict(String),
    /// A receipt whose `content_digest` does not match its content.
    #[error("{0}")]
    DigestMismatch(String),
    /// The workspace's sidecar could not be reached or answered badly.
    #[error("{0}")]
    Sidecar(String),
    /// The console request has no live operator session (missing, expired or logged out).
    #[error("{0}")]
    SessionRequired(String),
    /// A console login with an unknown name or a wrong password (the message never says which).
    #[error("{0}")]
    LoginFailed(String),
    /// A state-changing console request without the session's CSRF token, or from another origin.
    #[error("{0}")]
    CsrfRejected(String),
    /// Too many failed attempts; try again later.
    #[error("{0}")]
    RateLimited(String),
    /// The listen address cannot be bound (in use, not local, no permission).
    #[error("{0}")]
    ListenFailed(String),
    /// An administration command named a database or signing key no control plane has created.
    #[error("{0}")]
    NotInitialized(String),
    /// The signing key file is missing beside a database whose tokens and codes it signed.
    #[error("{0}")]
    KeyMissing(String),
    /// The database failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// Keys, tokens or other internal failures.
    #[error("{0}")]
    Internal(String),
}

impl CloudError {
    /// The stable machine-readable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            CloudError::BadRequest(_) => "BAD_REQUEST",
            CloudError::SchemaVersion(_) => "EVENT_SCHEMA_VERSION_UNSUPPORTED",
            CloudError::EventInvalid(_) => "EVENT_INVALID",
            CloudError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            CloudError::Unauthorized(_) => "TOKEN_INVALID",
            CloudError::WrongWorkspace(_) => "TOKEN_WORKSPACE_MISMATCH",
            CloudError::ScopeDenied(_) => "TOKEN_SCOPE_DENIED",
            CloudError::FromMismatch(_) => "EVENT_FROM_MISMATCH",
            CloudError::EnrollmentCodeInvalid(_) => "ENROLLMENT_CODE_INVALID",
            CloudError::EnrollmentCodeUsed(_) => "ENROLLMENT_CODE_USED",
            CloudError::EnrollmentWorkspaceMismatch(_) => "ENROLLMENT_WORKSPACE_MISMATCH",
            CloudError::NotFound(_) => "NOT_FOUND",
            CloudError::Conflict(_) => "CONFLICT",
            CloudError::DigestMismatch(_) => "RECEIPT_DIGEST_MISMATCH",
            CloudError::Sidecar(_) => "SIDECAR_UNAVAILABLE",
            CloudError::SessionRequired(_) => "SESSION_REQUIRED",
            CloudError::LoginFailed(_) => "LOGIN_FAILED",
            CloudError::CsrfRejected(_) => "CSRF_REJECTED",
            CloudError::RateLimited(_) => "RATE_LIMITED",
            CloudError::ListenFailed(_) => "LISTEN_FAILED",
            CloudError::NotInitialized(_) => "CONTROL_PLANE_NOT_INITIALIZED",
            CloudError::KeyMissing(_) => "SIGNING_KEY_MISSING",
            CloudError::Storage(_) => "STORAGE_ERROR",
            CloudError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status of the error (the one table mapping codes to statuses).
    pub fn status(&self) -> StatusCode {
        match self {
            CloudError::BadRequest(_)
            | CloudError::SchemaVersion(_)
            | CloudError::EventInvalid(_)
            | CloudError::DigestMismatch(_) => StatusCode::BAD_REQUEST,
            CloudError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            CloudError::Unauthorized(_)
            | CloudError::EnrollmentCodeInvalid(_)
            | CloudError::SessionRequired(_)
            | CloudError::LoginFailed(_) => StatusCode::UNAUTHORIZED,
            CloudError::CsrfRejected(_) => StatusCode::FORBIDDEN,
            CloudError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            CloudError::WrongWorkspace(_)
            | CloudError::ScopeDenied(_)
            | CloudError::FromMismatch(_) => StatusCode::FORBIDDEN,
            CloudError::EnrollmentCodeUsed(_)
            | CloudError::EnrollmentWorkspaceMismatch(_)
            | CloudError::Conflict(_) => StatusCode::CONFLICT,
            CloudError::NotFound(_) => StatusCode::NOT_FOUND,
            CloudError::Sidecar(_) => StatusCode::BAD_GATEWAY,
            CloudError::ListenFailed(_)
            | CloudError::NotInitialized(_)
            | CloudError::KeyMissing(_)
            | CloudError::Storage(_)
            | CloudError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn to_api(&self) -> ApiError {
        ApiError::new(self.code(), self.to_string())
    }
}

impl From<sqlx::Error> for CloudError {
    fn from(e: sqlx::Error) -> Self {
        CloudError::Storage(e.to_string())
    }
}

impl IntoResponse for CloudError {
    fn into_response(self) -> Response {
        // The client sees the message, but the operator must too: a storage failure that only
        // reached the client left no trace on the server (walk-F F-1).
        if self.status().is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        }
        (self.status(), axum::Json(self.to_api())).into_response()
    }
}

pub type CloudResult<T> = Result<T, CloudError>;
