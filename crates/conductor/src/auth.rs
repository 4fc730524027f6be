//! Bearer-token authentication of inbound calls (INV-01, INV-02, ENR-09, Q16).
//!
//! Every request to the sidecar's tool and event routes carries `Authorization: Bearer <token>`.
//! The [`Verifier`] checks the signature against the issuer key recorded in the enrollment, the
//! expiry, that the audience is this workspace, and that the token's `jti` is not on the
//! revocation list pulled from the control plane; only then are subject and scopes taken from the
//! claims. The subject is the caller's identity from there on: nothing in a request body can
//! replace it. Failures map to two statuses: 401 `TOKEN_INVALID` (missing, malformed, forged,
//! expired, wrong audience, revoked, or not checkable because the cached revocation list is
//! unreadable: fail closed until the next pull) and 403 `TOKEN_SCOPE_DENIED` (valid token, scope
//! too narrow).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use lumenflow_contracts::identity::{Subject, TokenClaims};
use lumenflow_kernel::manifest::ToolManifest;
use lumenflow_proof::keys::PublicKey;
use lumenflow_proof::token::{self, TokenError};

use crate::enrollment::EnrollmentWatch;
use crate::fsio::{self, Mode};

pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
/// Every token is refused because `enrollment.json` changed under the running sidecar.
pub const ENROLLMENT_CHANGED: &str = "ENROLLMENT_CHANGED";
pub const TOKEN_SCOPE_DENIED: &str = lumenflow_contracts::tool_output::codes::TOKEN_SCOPE_DENIED;

/// The tool whose name alone implies the `agent:execute-turn` token scope (Q16).
pub const EXECUTE_TURN_TOOL: &str = "agent:execute-turn";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the request has no `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the `Authorization` header is not `Bearer <token>`")]
    NotBearer,
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("the token was revoked")]
    Revoked,
    #[error(
        "the cached revocation list `{path}` is unreadable ({reason}), so no token can be checked \
         against it: every token is refused until the control plane's list is pulled (remove the \
         file if this workspace no longer has a control plane)"
    )]
    RevocationsUnknown { path: String, reason: String },
    #[error(
        "the control plane refused this sidecar's own token when it pulled the revocation list \
         ({reason}): the workspace's enrollment was revoked or has expired, so no token can be \
         checked against a current list and every token is refused; enroll the workspace again \
         (`lumenflow enroll --control-plane URL --code CODE`) and restart the sidecar"
    )]
    EnrollmentRefused { reason: String },
    /// `enrollment.json` no longer holds what this sidecar loaded (walk-F F-6).
    #[error("{0}")]
    EnrollmentChanged(String),
    #[error(
        "the token's scopes (`{scopes}`) do not include `{required}`, which {target} requires"
    )]
    ScopeDenied {
        target: String,
        required: String,
        scopes: String,
    },
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::ScopeDenied { .. } => TOKEN_SCOPE_DENIED,
            AuthError::EnrollmentChanged(_) => ENROLLMENT_CHANGED,
            _ => TOKEN_INVALID,
        }
    }

    /// 401 for an unauthenticated caller, 403 for an authenticated one lacking scope.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::ScopeDenied { .. } => 403,
            // The caller did nothing wrong: the sidecar must be restarted (as for
            // `WORKSPACE_CHANGED`), which is what 503 says.
            AuthError::EnrollmentChanged(_) => 503,
            _ => 401,
        }
    }
}

/// An authenticated caller: the verified claims and the parsed subject.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: TokenClaims,
    pub subject: Subject,
}

impl Caller {
    /// The identity recorded for everything this caller does: the token subject.
    pub fn identity(&self) -> String {
        self.subject.to_string()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims.has_scope(scope)
    }
}

/// The token scope a remote caller needs to see and call `tool` (Q16).
pub fn required_token_scope(tool: &ToolManifest) -> &str {
    tool.required_token_scope()
}

/// May `caller` invoke `tool`? The same answer hides a tool from `GET /tools` (Q17).
pub fn authorize_tool(caller: &Caller, tool: &ToolManifest) -> Result<(), AuthError> {
    let required = required_token_scope(tool);
    if caller.has_scope(required) {
        Ok(())
    } else {
        Err(AuthError::ScopeDenied {
            target: format!("tool `{}`", tool.name),
            required: required.to_string(),
            scopes: caller.claims.scope.clone(),
        })
    }
}

/// May `caller` use a route that needs `scope`?
pub fn authorize_scope(caller: &Caller, scope: &str, target: &str) -> Result<(), AuthError> {
    if caller.has_scope(scope) {
        Ok(())
    } else {
        Err(AuthError::ScopeDenied {
            target: target.to_string(),
            required: scope.to_string(),
            scopes: caller.claims.scope.clone(),
        })
    }
}

/// Verifies bearer tokens for one workspace.
#[derive(Debug)]
pub struct Verifier {
    issuer: PublicKey,
    workspace_id: String,
    revoked: RwLock<Revocations>,
    cache_path: Option<PathBuf>,
    /// Tokens whose signature, audience and subject already verified, by their exact text:
    /// a hit skips only the signature check; expiry and revocation are checked every time.
    verified: Mutex<HashMap<String, (TokenClaims, Subject)>>,
    /// The enrollment the issuer key came from, checked on every request.
    enrollment: Option<EnrollmentWatch>,
}

/// The revoked `jti`s, or why they are not known.
#[derive(Debug)]
enum Revocations {
    Known(HashSet<String>),
    /// The cache exists but could not be read: nothing is accepted until a pull replaces it.
    Unknown {
        path: String,
        reason: String,
    },
    /// The control plane refused the sidecar's own token on the last pull: whatever was revoked
    /// since cannot be known, so nothing is accepted until a pull succeeds.
    Refused {
        reason: String,
    },
}

/// The cached list at `path`: `None` when there is no cache yet.
fn read_revocations(path: &Path) -> Result<Option<HashSet<String>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    serde_json::from_slice::<Vec<String>>(&bytes)
        .map(|list| Some(list.into_iter().collect()))
        .map_err(|e| format!("expected a JSON array of token ids: {e}"))
}

/// Verified tokens remembered at most (the map is cleared when full).
const VERIFIED_CACHE: usize = 4096;

impl Verifier {
    /// A verifier trusting `issuer` for tokens addressed to `workspace_id`. With `cache_path`,
    /// the last revocation list is read from and written to that file, so a restart while the
    /// control plane is unreachable still refuses revoked tokens.
    pub fn new(
        issuer: PublicKey,
        workspace_id: impl Into<String>,
        cache_path: Option<&Path>,
    ) -> Self {
        // Fail closed: a cache that exists but cannot be read is not an empty list.
        let revoked = match cache_path.map(read_revocations) {
            None | Some(Ok(None)) => Revocations::Known(HashSet::new()),
            Some(Ok(Some(list))) => Revocations::Known(list),
            Some(Err(reason)) => {
                let path = cache_path
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                tracing::error!(file = %path, %reason, "the cached revocation list is unreadable: every token is refused until the control plane's list is pulled");
                Revocations::Unknown { path, reason }
            }
        };
        Verifier {
            issuer,
            workspace_id: workspace_id.into(),
            revoked: RwLock::new(revoked),
            cache_path: cache_path.map(Path::to_path_buf),
            verified: Mutex::new(HashMap::new()),
            enrollment: None,
        }
    }

    /// Refuse every token once the enrollment `watch` was loaded from has changed on disk.
    pub fn with_enrollment_watch(mut self, watch: EnrollmentWatch) -> Self {
        self.enrollment = Some(watch);
        self
    }

    pub fn workspace_id(&self) -> &str {
        &self.workspace_id
    }

    /// Replace the revocation list (the control plane's complete list of revoked `jti`s).
    pub fn set_revoked(&self, jtis: Vec<String>) -> std::io::Result<()> {
        let mut sorted = jtis.clone();
        sorted.sort();
        sorted.dedup();
        *self.revoked.write().unwrap_or_else(PoisonError::into_inner) =
            Revocations::Known(jtis.into_iter().collect());
        if let Some(path) = &self.cache_path {
            let bytes = serde_json::to_vec(&sorted).map_err(std::io::Error::other)?;
            fsio::write_atomic(path, &bytes, Mode::Private)?;
        }
        Ok(())
    }

    /// The control plane refused this sidecar's token when asked for the list (revoked or
    /// expired enrollment): refuse every token until a pull succeeds again.
    pub fn set_refused(&self, reason: String) {
        *self.revoked.write().unwrap_or_else(PoisonError::into_inner) =
            Revocations::Refused { reason };
    }

    fn check_revocation(&self, jti: &str) -> Result<(), AuthError> {
        // A poisoned lock is treated as "revoked": fail closed.
        let Ok(revoked) = self.revoked.read() else {
            return Err(AuthError::Revoked);
        };
        match &*revoked {
            Revocations::Known(set) if set.contains(jti) => Err(AuthError::Revoked),
            Revocations::Known(_) => Ok(()),
            Revocations::Unknown { path, reason } => Err(AuthError::RevocationsUnknown {
                path: path.clone(),
                reason: reason.clone(),
            }),
            Revocations::Refused { reason } => Err(AuthError::EnrollmentRefused {
                reason: reason.clone(),
            }),
        }
    }

    /// Authenticate the value of an `Authorization` header.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        // First: a token cannot be judged by a key the workspace no longer uses.
        if let Some(why) = self.enrollment.as_ref().and_then(EnrollmentWatch::changed) {
            return Err(AuthError::EnrollmentChanged(why));
        }
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::NotBearer)?;
        let hit = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(token).cloned());
        let (claims, subject) = match hit {
            Some((claims, subject)) => {
                if claims.exp + token::LEEWAY_SECONDS as i64 <= token::now_unix() {
                    if let Ok(mut m) = self.verified.lock() {
                        m.remove(token);
                    }
                    return Err(AuthError::Token(TokenError::Expired));
                }
                (claims, subject)
            }
            None => {
                let claims = token::verify(token, &self.issuer, &self.workspace_id)?;
                let subject = claims
                    .subject()
                    .map_err(|e| AuthError::Token(TokenError::Subject(e.to_string())))?;
                if subject.workspace_id() != self.workspace_id {
                    return Err(AuthError::Token(TokenError::Subject(format!(
                        "subject `{subject}` belongs to another workspace"
                    ))));
                }
                if let Ok(mut m) = self.verified.lock() {
                    if m.len() >= VERIFIED_CACHE {
                        m.clear();
                    }
                    m.insert(token.to_string(), (claims.clone(), subject.clone()));
                }
                (claims, subject)
            }
        };
        self.check_revocation(&claims.jti)?;
        Ok(Caller { claims, subject })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumenflow_proof::keys::KeyPair;

    fn claims(sub: &str, aud: &str, scope: &str, exp_in: i64) -> TokenClaims {
        let now = token::now_unix();
        TokenClaims {
            iss: "test".into(),
            sub: sub.into(),
            aud: aud.into(),
            scope: scope.into(),
            iat: now,
            exp: now + exp_in,
            jti: token::new_jti(),
            device_name: None,
        }
    }

    fn check(v: &Verifier, key: &KeyPair, c: &TokenClaims) -> Result<Caller, AuthError> {
        let t = token::mint(key, c).expect("mint");
        v.authenticate(Some(&format!("Bearer {t}")))
    }

    #[test]
    fn a_table_of_tokens() {
        let key = KeyPair::generate();
        let other = KeyPair::generate();
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("revocations.json");
        let v = Verifier::new(key.public(), "ws", Some(&cache));
        let good = claims("ws", "ws", "workspace", 600);
        assert_eq!(check(&v, &key, &good).expect("ok").identity(), "ws");
        let phone = claims("ws:phone:p1", "ws", "workspace", 600);
        assert_eq!(
            check(&v, &key, &phone).expect("ok").subject.device_id(),
            Some("p1")
        );
        for (name, k, c) in [
            ("forged", &other, good.clone()),
            ("expired", &key, claims("ws", "ws", "workspace", -3600)),
            ("audience", &key, claims("ws", "ws-2", "workspace", 600)),
            (
                "foreign subject",
                &key,
                claims("ws-2", "ws", "workspace", 600),
            ),
        ] {
            let e = check(&v, k, &c).expect_err(name);
            assert_eq!((e.code(), e.status()), (TOKEN_INVALID, 401), "{name}: {e}");
        }
        assert!(matches!(v.authenticate(None), Err(AuthError::Missing)));
        assert!(matches!(
            v.authenticate(Some("Basic abc")),
            Err(AuthError::NotBearer)
        ));
        // Revocation, and the cache surviving a restart.
        v.set_revoked(vec![good.jti.clone()]).expect("revoke");
        assert!(matches!(check(&v, &key, &good), Err(AuthError::Revoked)));
        // The control plane refusing the sidecar's own token: nothing is accepted (fail
        // closed), until a pull succeeds again.
        let fresh = claims("ws", "ws", "workspace", 600);
        v.set_refused("401 TOKEN_INVALID: the token was revoked".into());
        let e = check(&v, &key, &fresh).expect_err("cut off");
        assert_eq!((e.code(), e.status()), (TOKEN_INVALID, 401), "{e}");
        assert!(e.to_string().contains("enroll the workspace again"), "{e}");
        v.set_revoked(vec![good.jti.clone()]).expect("pull");
        assert!(check(&v, &key, &fresh).is_ok());
        let v2 = Verifier::new(key.public(), "ws", Some(&cache));
        assert!(matches!(check(&v2, &key, &good), Err(AuthError::Revoked)));
    }

    #[test]
    fn an_unreadable_revocation_cache_refuses_every_token_until_a_pull() {
        // Fail closed: a damaged cache is not an empty list (a revoked token would pass).
        let key = KeyPair::generate();
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("revocations.json");
        std::fs::write(&cache, b"[\"jti-1\", ").expect("torn cache");
        let v = Verifier::new(key.public(), "ws", Some(&cache));
        let good = claims("ws", "ws", "workspace", 600);
        let e = check(&v, &key, &good).expect_err("refused");
        assert!(matches!(e, AuthError::RevocationsUnknown { .. }), "{e:?}");
        assert_eq!((e.code(), e.status()), (TOKEN_INVALID, 401));
        assert!(e.to_string().contains("revocations.json"), "{e}");
        // The control plane's list replaces it (and the cache).
        v.set_revoked(vec!["other".into()]).expect("pull");
        assert_eq!(check(&v, &key, &good).expect("ok").identity(), "ws");
        let v2 = Verifier::new(key.public(), "ws", Some(&cache));
        assert_eq!(check(&v2, &key, &good).expect("ok").identity(), "ws");
    }

    #[test]
    fn tool_scopes_follow_q16() {
        let key = KeyPair::generate();
        let v = Verifier::new(key.public(), "ws", None);
        let caller = check(&v, &key, &claims("ws", "ws", "workspace", 600)).expect("ok");
        let tool = |name: &str, scope: Option<&str>| -> ToolManifest {
            serde_json::from_value(serde_json::json!({
                "name": name, "entry": "x.py", "required_scopes": [],
                "token_scope": scope,
            }))
            .expect("tool")
        };
        assert!(authorize_tool(&caller, &tool("software-delivery:wu_claim", None)).is_ok());
        let e = authorize_tool(&caller, &tool(EXECUTE_TURN_TOOL, None)).expect_err("denied");
        assert_eq!((e.code(), e.status()), (TOKEN_SCOPE_DENIED, 403));
        assert!(authorize_tool(&caller, &tool("x:y", Some("operator"))).is_err());
    }
}
