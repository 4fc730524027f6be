//! Tool scopes: what a tool, task, lane or workspace may touch.
//!
//! The wire form is the original LumenFlow `ToolScope` tagged union (`type: path | network`).
//! Deserialization is strict: unknown keys and the wrong keys for a type are rejected, so a typo
//! can never silently widen or drop a scope.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Access mode of a path scope. A `write` grant never satisfies a `read` requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathAccess {
    Read,
    Write,
}

impl PathAccess {
    pub const VALUES: &'static [PathAccess] = &[PathAccess::Read, PathAccess::Write];

    pub fn as_str(self) -> &'static str {
        match self {
            PathAccess::Read => "read",
            PathAccess::Write => "write",
        }
    }
}

impl fmt::Display for PathAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Network posture of a network scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkPosture {
    Off,
    Allowlist,
    Full,
}

impl NetworkPosture {
    pub const VALUES: &'static [NetworkPosture] = &[
        NetworkPosture::Off,
        NetworkPosture::Allowlist,
        NetworkPosture::Full,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPosture::Off => "off",
            NetworkPosture::Allowlist => "allowlist",
            NetworkPosture::Full => "full",
        }
    }
}

impl fmt::Display for NetworkPosture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scope entry: a path glob with an access mode, or a network posture.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolScope {
    Path {
        pattern: String,
        access: PathAccess,
    },
    Network {
        posture: NetworkPosture,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allowlist_entries: Option<Vec<String>>,
    },
}

impl ToolScope {
    pub fn path(pattern: impl Into<String>, access: PathAccess) -> Self {
        ToolScope::Path {
            pattern: pattern.into(),
            access,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ScopeType {
    Path,
    Network,
}

/// All keys any scope may carry; which ones are allowed depends on `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    #[serde(rename = "type")]
    kind: ScopeType,
    pattern: Option<String>,
    access: Option<PathAccess>,
    posture: Option<NetworkPosture>,
    allowlist_entries: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for ToolScope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawScope::deserialize(deserializer)?;
        match raw.kind {
            ScopeType::Path => {
                if raw.posture.is_some() || raw.allowlist_entries.is_some() {
                    return Err(D::Error::custom(
                        "a `path` scope takes `pattern` and `access`, not `posture` or `allowlist_entries`",
                    ));
                }
                let pattern = raw
                    .pattern
                    .ok_or_else(|| D::Error::custom("a `path` scope needs a `pattern`"))?;
                let access = raw.access.ok_or_else(|| {
                    D::Error::custom("a `path` scope needs an `access` (`read` or `write`)")
                })?;
                Ok(ToolScope::Path { pattern, access })
            }
            ScopeType::Network => {
                if raw.pattern.is_some() || raw.access.is_some() {
                    return Err(D::Error::custom(
                        "a `network` scope takes `posture` and `allowlist_entries`, not `pattern` or `access`",
                    ));
                }
                let posture = raw.posture.ok_or_else(|| {
                    D::Error::custom(
                        "a `network` scope needs a `posture` (`off`, `allowlist` or `full`)",
                    )
                })?;
                Ok(ToolScope::Network {
                    posture,
                    allowlist_entries: raw.allowlist_entries,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_scope_round_trips() {
        let scope: ToolScope =
            serde_json::from_str(r#"{"type":"path","pattern":"src/**","access":"read"}"#)
                .expect("valid scope");
        assert_eq!(scope, ToolScope::path("src/**", PathAccess::Read));
        let json = serde_json::to_string(&scope).expect("serializes");
        assert_eq!(
            json,
            r#"{"type":"path","pattern":"src/**","access":"read"}"#
        );
    }

    #[test]
    fn network_scope_keeps_entries() {
        let scope: ToolScope = serde_json::from_str(
            r#"{"type":"network","posture":"allowlist","allowlist_entries":["a.example:443"]}"#,
        )
        .expect("valid scope");
        assert_eq!(
            scope,
            ToolScope::Network {
                posture: NetworkPosture::Allowlist,
                allowlist_entries: Some(vec!["a.example:443".into()])
            }
        );
    }

    #[test]
    fn rejects_mixed_and_unknown_keys() {
        for bad in [
            r#"{"type":"path","pattern":"x","access":"admin"}"#,
            r#"{"type":"network","posture":"limited"}"#,
            r#"{"type":"path","pattern":"x","access":"read","posture":"off"}"#,
            r#"{"type":"path","pattern":"x","acces":"read"}"#,
            r#"{"type":"path","access":"read"}"#,
            r#"{"type":"file","pattern":"x","access":"read"}"#,
        ] {
            assert!(
                serde_json::from_str::<ToolScope>(bad).is_err(),
                "{bad} should fail"
            );
        }
    }
}
