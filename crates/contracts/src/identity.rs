//! Who is calling: token claims, subjects and the enrollment record (ENR-01 to ENR-11, Q16).
//!
//! A token is a JWT signed with Ed25519 by the control plane, or by the workspace's own key in
//! standalone mode; `lumenflow-proof::token` signs and verifies it. These are the shapes both
//! sides agree on. The subject is the identity of every event and every inbound call: a
//! workspace (`<workspace_id>`) or a phone device of one (`<workspace_id>:phone:<device_id>`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Token scope that lets a caller invoke ordinary workspace tools.
pub const SCOPE_WORKSPACE: &str = "workspace";
/// Token scope needed to start an agent turn (INV-02).
pub const SCOPE_EXECUTE_TURN: &str = "agent:execute-turn";
/// Token scope of an operator console or control-plane service account.
pub const SCOPE_OPERATOR: &str = "operator";

/// Where the enrollment record lives inside a workspace (ENR-07).
pub const ENROLLMENT_FILE: &str = ".lumenflow/state/conductor/enrollment.json";
/// Device registrations for phone subjects (Q37).
pub const DEVICES_FILE: &str = ".lumenflow/state/conductor/devices.json";

const PHONE_SEPARATOR: &str = ":phone:";
const MAX_ID_LEN: usize = 128;

/// The claims of a LumenFlow token (Q16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub sub: String,
    /// The workspace id the token is for.
    pub aud: String,
    /// Space-separated scopes, e.g. `workspace agent:execute-turn`.
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
}

impl TokenClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// The parsed subject; a token whose `sub` does not parse is invalid.
    pub fn subject(&self) -> Result<Subject, SubjectError> {
        Subject::parse(&self.sub)
    }
}

/// A parsed token subject (ENR-02, ENR-03).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Workspace {
        workspace_id: String,
    },
    Phone {
        workspace_id: String,
        device_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subject `{subject}` is invalid: {reason}; expected `<workspace_id>` or `<workspace_id>:phone:<device_id>` with ids of letters, digits, `.`, `_` or `-`")]
pub struct SubjectError {
    pub subject: String,
    pub reason: &'static str,
}

impl Subject {
    pub fn parse(raw: &str) -> Result<Subject, SubjectError> {
        let err = |reason| SubjectError {
            subject: raw.chars().take(200).collect(),
            reason,
        };
        match raw.split_once(PHONE_SEPARATOR) {
            Some((ws, device)) => {
                check_id(ws).map_err(err)?;
                check_id(device).map_err(err)?;
                Ok(Subject::Phone {
                    workspace_id: ws.to_string(),
                    device_id: device.to_string(),
                })
            }
            None => {
                check_id(raw).map_err(err)?;
                Ok(Subject::Workspace {
                    workspace_id: raw.to_string(),
                })
            }
        }
    }

    /// The workspace part (the `workspace_id` of an event batch, Q2).
    pub fn workspace_id(&self) -> &str {
        match self {
            Subject::Workspace { workspace_id } | Subject::Phone { workspace_id, .. } => {
                workspace_id
            }
        }
    }

    pub fn device_id(&self) -> Option<&str> {
        match self {
            Subject::Workspace { .. } => None,
            Subject::Phone { device_id, .. } => Some(device_id),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Workspace { workspace_id } => f.write_str(workspace_id),
            Subject::Phone {
                workspace_id,
                device_id,
            } => write!(f, "{workspace_id}{PHONE_SEPARATOR}{device_id}"),
        }
    }
}

/// Whether `id` is usable as a workspace or device id: 1 to 128 characters of ASCII letters,
/// digits, `.`, `_` and `-`, not starting with `.` (ids become file and URL path segments).
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("an id is empty");
    }
    if id.len() > MAX_ID_LEN {
        return Err("an id is longer than 128 characters");
    }
    if id.starts_with('.') {
        return Err("an id starts with `.`");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("an id contains a character other than letters, digits, `.`, `_` or `-`");
    }
    Ok(())
}

/// `.lumenflow/state/conductor/enrollment.json` (Q16). Holds a secret (`token`): written 0600,
/// never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    pub schema_version: u32,
    pub token: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub issued_at: String,
    pub expires_at: String,
    pub issuer: String,
    pub issuer_public_key_pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<String>,
    pub workspace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

impl fmt::Debug for Enrollment {
    // The token is a bearer secret: never let a `{:?}` put it in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment")
            .field("schema_version", &self.schema_version)
            .field("token", &"<redacted>")
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("issuer", &self.issuer)
            .field("control_plane_endpoint", &self.control_plane_endpoint)
            .field("workspace_id", &self.workspace_id)
            .field("device_id", &self.device_id)
            .finish()
    }
}

/// A registered phone device (ENR-04, Q37): `devices.json` is a list of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRegistration {
    pub device_id: String,
    pub name: String,
    pub registered_at: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_per_enr_02_and_03() {
        assert_eq!(
            Subject::parse("ws-1").unwrap(),
            Subject::Workspace {
                workspace_id: "ws-1".into()
            }
        );
        let phone = Subject::parse("ws-1:phone:pixel_7").unwrap();
        assert_eq!(phone.workspace_id(), "ws-1");
        assert_eq!(phone.device_id(), Some("pixel_7"));
        assert_eq!(phone.to_string(), "ws-1:phone:pixel_7");
        for bad in [
            "",
            "ws:1",
            "ws-1:phone:",
            ":phone:dev",
            "ws/../x",
            ".hidden",
            "ws-1:phone:a:phone:b",
        ] {
            assert!(Subject::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn enrollment_debug_never_shows_the_token() {
        let e = Enrollment {
            schema_version: 1,
            token: "secret-token-value".into(),
            subject: "ws".into(),
            scopes: vec!["workspace".into()],
            issued_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: "2026-01-02T00:00:00.000Z".into(),
            issuer: "lumenflow-cloud".into(),
            issuer_public_key_pem: String::new(),
            control_plane_endpoint: None,
            workspace_id: "ws".into(),
            device_id: None,
        };
        assert!(!format!("{e:?}").contains("secret-token-value"));
    }

    #[test]
    fn scopes_split_on_whitespace() {
        let c = TokenClaims {
            iss: "i".into(),
            sub: "ws".into(),
            aud: "ws".into(),
            scope: "workspace  agent:execute-turn".into(),
            iat: 0,
            exp: 1,
            jti: "j".into(),
            device_name: None,
        };
        assert!(c.has_scope(SCOPE_EXECUTE_TURN));
        assert!(!c.has_scope("agent"));
    }
}
