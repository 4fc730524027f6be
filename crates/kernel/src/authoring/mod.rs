//! `pack author`: new packs generated from vetted templates (PAK-01).
//!
//! Why it exists: writing a manifest and a tool by hand is where packs go wrong (a `'**'` write
//! scope, a tool that can fetch any URL). `pack author` asks for a few facts (pack id, task types,
//! and per tool a template, a name and a scope or URL list), validates them strictly, and generates
//! a pack that passes `pack validate` without edits and asks for the least privilege the tool needs.
//!
//! The flow, one submodule per step:
//! - [`request`]: the request ([`AuthoringRequest`], what a `--spec-file` holds; strict serde types,
//!   unknown keys rejected at every level) and [`validate_request`], which reports *every* problem
//!   at once as [`AuthoringIssue`]s with a path such as `templates[1].scope_pattern`;
//! - [`wizard`]: [`run_wizard`], the interactive questions over any reader and writer;
//! - [`generate`](mod@generate): [`generate`], the deterministic generation of `manifest.yaml`,
//!   one Python 3 script per tool under `tool-impl/` and a `README.md` (same request, same bytes);
//! - [`write`]: [`write_pack`], writing `<output>/<pack_id>/` atomically (staged beside the target,
//!   fsync'd, renamed into place).
//!
//! The three templates: `file.read_text` and `file.write_text` (a path scope that must start with a
//! literal directory; wildcard-everything scopes are refused for reads and writes alike) and
//! `http.get_json` (a fixed list of https URLs, declared as a network *allowlist* scope of their
//! `host:port`s, and as an `enum` in the input schema). Generated tools are stdlib-only Python 3
//! scripts speaking the kernel's subprocess protocol: one JSON object `{export, input, cwd}` on
//! stdin, one ToolOutput object on stdout, exit code 0 even when the tool fails.
//!
//! What this module never does: parse spec-file text (the YAML reader does, and hands over a
//! value that deserializes into [`AuthoringRequest`]), run `pack validate` (the caller does, on the
//! written directory), or touch the network.

pub mod generate;
pub mod request;
mod scripts;
pub mod wizard;
pub mod write;

use std::fmt;
use std::path::PathBuf;

pub use generate::{generate, manifest_value, GeneratedFile, GeneratedPack, MANIFEST_HEADER};
pub use request::{
    validate_request, AuthoringRequest, FileTemplate, HttpGetJsonTemplate, TemplateRequest,
    TEMPLATE_IDS,
};
pub use wizard::run_wizard;
pub use write::write_pack;

/// One problem with an authoring request: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthoringIssue {
    /// The field, as a path into the request: `pack_id`, `templates[1].scope_pattern`,
    /// `templates[2].allowed_urls[0]`.
    pub path: String,
    /// What is wrong, lowercase, without a trailing period; user input in backticks.
    pub message: String,
}

impl AuthoringIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for AuthoringIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why `pack author` failed. Each variant has a stable [`code`](AuthoringError::code).
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    /// The request (or a wizard answer) is invalid; every problem is listed.
    #[error("invalid pack authoring request: {}", join_issues(.0))]
    Invalid(Vec<AuthoringIssue>),
    /// The pack directory exists and `force` was not given; nothing was written.
    #[error("pack directory `{}` already exists (use --force to replace it)", .path.display())]
    AlreadyExists { path: PathBuf },
    /// A generated file path is absolute or leaves the pack directory, or the pack id is not a
    /// safe directory name; nothing was written.
    #[error("generated path `{path}` is not a relative path inside the pack directory")]
    ScopeViolation { path: String },
    /// The wizard's input ended before all questions were answered.
    #[error("pack authoring cancelled")]
    Cancelled,
    /// Reading the wizard's answers, or writing, syncing or renaming the pack, failed.
    #[error("i/o error on `{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AuthoringError {
    /// The stable error code: `TEMPLATE_VALIDATION_ERROR`, `PACK_ALREADY_EXISTS`,
    /// `SCOPE_VIOLATION`, `CANCELLED_BY_USER` or `IO_ERROR`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthoringError::Invalid(_) => "TEMPLATE_VALIDATION_ERROR",
            AuthoringError::AlreadyExists { .. } => "PACK_ALREADY_EXISTS",
            AuthoringError::ScopeViolation { .. } => "SCOPE_VIOLATION",
            AuthoringError::Cancelled => "CANCELLED_BY_USER",
            AuthoringError::Io { .. } => "IO_ERROR",
        }
    }

    /// The issues of an [`AuthoringError::Invalid`], empty for the other variants.
    pub fn issues(&self) -> &[AuthoringIssue] {
        match self {
            AuthoringError::Invalid(issues) => issues,
            _ => &[],
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuthoringError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<Vec<AuthoringIssue>> for AuthoringError {
    fn from(issues: Vec<AuthoringIssue>) -> Self {
        AuthoringError::Invalid(issues)
    }
}

fn join_issues(issues: &[AuthoringIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
