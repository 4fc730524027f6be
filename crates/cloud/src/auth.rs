//! Who is calling, and the tokens the control plane issues (Q16).
//!
//! The control plane signs every token with one Ed25519 key (created 0600 on first use). Three
//! kinds of token exist: a workspace's enrollment token (`sub` = `aud` = the workspace id, scope
//! `workspace`), short-lived tokens it mints to call a workspace's sidecar (`GET /tools`, `POST
//! /tools/{name}`), and operator tokens (`aud` = [`OPERATOR_AUDIENCE`], scope `operator`) for the
//! console and the CLI. A request for a workspace is verified with that workspace as the expected
//! audience, so a token of another workspace is refused (403) before anything is read or stored.

use std::path::Path;

use axum::http::HeaderMap;
use lumenflow_contracts::identity::{
    Subject, TokenClaims, SCOPE_EXECUTE_TURN, SCOPE_OPERATOR, SCOPE_WORKSPACE,
};
use lumenflow_contracts::time::Timestamp;
use lumenflow_proof::keys::{KeyPair, PublicKey};
use lumenflow_proof::token::{self, TokenError};
use sha2::{Digest, Sha256};

use crate::error::{CloudError, CloudResult};
use crate::store::{Store, TokenRecord};

/// `iss` of every token the control plane signs.
pub const ISSUER: &str = "lumenflow-cloud";
/// `aud` of operator tokens (never a valid workspace id: it contains no workspace).
pub const OPERATOR_AUDIENCE: &str = "lumenflow-cloud-operator";
/// Lifetime of an enrollment token.
pub const ENROLLMENT_TTL_SECONDS: i64 = 365 * 24 * 3600;
/// Lifetime of the tokens minted to call a sidecar.
pub const SIDECAR_TTL_SECONDS: i64 = 300;
/// Default lifetime of an operator token.
pub const OPERATOR_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// Default lifetime of an enrollment code.
pub const CODE_TTL_SECONDS: i64 = 24 * 3600;
/// The key file name beside the database when `--key` is not given.
pub const KEY_FILE_NAME: &str = "lumenflow-cloud.key";

/// The signing key and what is derived from it.
#[derive(Debug)]
pub struct Authority {
    key: KeyPair,
    public: PublicKey,
    public_pem: String,
    key_id: String,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    Operator {
        claims: TokenClaims,
    },
    Workspace {
        claims: TokenClaims,
        subject: Subject,
    },
}

impl Caller {
    pub fn subject_text(&self) -> &str {
        match self {
            Caller::Operator { claims } | Caller::Workspace { claims, .. } => &claims.sub,
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::Operator { .. })
    }
}

/// What a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    Operator,
    Workspace,
    Either,
}

/// A fresh one-time enrollment code (shown once) and the hash that is stored.
pub fn new_enrollment_code() -> (String, String) {
    let code = format!("lfe_{}{}", token::new_jti(), token::new_jti());
    let hash = hash_code(&code);
    (code, hash)
}

/// The stored form of an enrollment code.
pub fn hash_code(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().as_bytes()))
}

fn key_error(path: &Path, e: impl std::fmt::Display) -> CloudError {
    CloudError::Internal(format!(
        "cannot load the control-plane key `{}`: {e}",
        path.display()
    ))
}

impl Authority {
    /// Load the key at `path`, creating it (0600) when missing.
    pub fn load_or_create(path: &Path) -> CloudResult<Authority> {
        let key = KeyPair::load_or_create(path).map_err(|e| key_error(path, e))?;
        Ok(Authority::from_key(key))
    }

    /// The key of `store`'s control plane, created only when the file is missing and either the
    /// database has issued nothing yet or `new_key` says to start over on purpose. Refusing is
    /// the point: a key silently made beside a restored or moved database signs tokens no one
    /// holds, and every enrollment and token issued before is refused (walk-F F-3).
    pub async fn load_or_create_for(
        path: &Path,
        store: &crate::store::Store,
        new_key: bool,
    ) -> CloudResult<Authority> {
        if !path.exists() && !new_key && store.holds_credentials().await? {
            return Err(CloudError::KeyMissing(format!(
                "no signing key at `{}`, but the database `{}` holds tokens and enrollment codes \
                 signed with a key: restore the key file from the backup taken with the database \
                 (or pass its path with `--key PATH`); to start over with a new key on purpose, \
                 pass `--new-key` (every token and code issued so far is then refused and every \
                 workspace must enroll again)",
                crate::store::absolute(path).display(),
                store.display()
            )));
        }
        Authority::load_or_create(path)
    }

    /// The key a control plane already signs with; refuses to create one (a token signed by a
    /// new key would be refused by the running server).
    pub fn load(path: &Path) -> CloudResult<Authority> {
        if !path.exists() {
            return Err(CloudError::NotInitialized(format!(
                "no control-plane signing key at `{}`: tokens are signed with the key \
                 `lumenflow cloud serve` uses (`--key PATH`, default beside an SQLite database, \
                 or `{KEY_FILE_NAME}` in the working folder for PostgreSQL); pass it with `--key`, \
                 or create it with `lumenflow cloud init`",
                crate::store::absolute(path).display()
            )));
        }
        let key = KeyPair::load(path).map_err(|e| key_error(path, e))?;
        Ok(Authority::from_key(key))
    }

    pub fn from_key(key: KeyPair) -> Authority {
        let public = key.public();
        Authority {
            public_pem: public.to_pem(),
            key_id: public.key_id(),
            public,
            key,
        }
    }

    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message)
    }

    /// Mint a token and record its `jti` (so it can be listed and revoked).
    #[allow(clippy::too_many_arguments)]
    pub async fn mint(
        &self,
        store: &Store,
        workspace_id: &str,
        sub: &str,
        aud: &str,
        scope: &str,
        ttl_seconds: i64,
        purpose: &str,
    ) -> CloudResult<(String, TokenClaims)> {
        self.mint_with_device(
            store,
            workspace_id,
            sub,
            aud,
            scope,
            ttl_seconds,
            purpose,
            None,
        )
        .await
    }

    /// [`Authority::mint`] with the optional `device_name` claim of a phone subject.
    #[allow(clippy::too_many_arguments)]
    pub async fn mint_with_device(
        &self,
        store: &Store,
        workspace_id: &str,
        sub: &str,
        aud: &str,
        scope: &str,
        ttl_seconds: i64,
        purpose: &str,
        device_name: Option<String>,
    ) -> CloudResult<(String, TokenClaims)> {
        let now = token::now_unix();
        let claims = TokenClaims {
            iss: ISSUER.to_string(),
            sub: sub.to_string(),
            aud: aud.to_string(),
            scope: scope.to_string(),
            iat: now,
            exp: now + ttl_seconds.max(1),
            jti: token::new_jti(),
            device_name,
        };
        let text = token::mint(&self.key, &claims)
            .map_err(|e| CloudError::Internal(format!("cannot sign a token: {e}")))?;
        store
            .record_token(&TokenRecord {
                jti: claims.jti.clone(),
                workspace_id: workspace_id.to_string(),
                subject: sub.to_string(),
                scope: scope.to_string(),
                purpose: purpose.to_string(),
                issued_at_ms: now * 1000,
                expires_at_ms: claims.exp * 1000,
            })
            .await?;
        Ok((text, claims))
    }

    /// A token for a workspace's sidecar (`sub` = `aud` = the workspace).
    pub async fn mint_sidecar_token(
        &self,
        store: &Store,
        workspace_id: &str,
        scope: &str,
        purpose: &str,
    ) -> CloudResult<String> {
        self.mint(
            store,
            workspace_id,
            workspace_id,
            workspace_id,
            scope,
            SIDECAR_TTL_SECONDS,
            purpose,
        )
        .await
        .map(|(t, _)| t)
    }

    /// An operator token (`lumenflow cloud operator-token`).
    pub async fn mint_operator_token(
        &self,
        store: &Store,
        name: &str,
        ttl_seconds: i64,
    ) -> CloudResult<(String, TokenClaims)> {
        self.mint(
            store,
            OPERATOR_AUDIENCE,
            name,
            OPERATOR_AUDIENCE,
            SCOPE_OPERATOR,
            ttl_seconds,
            "operator",
        )
        .await
    }

    /// Verify the bearer token of a request. `workspace` is the workspace the request is about
    /// (required for workspace callers). Revoked tokens are refused.
    pub async fn authorize(
        &self,
        store: &Store,
        headers: &HeaderMap,
        workspace: Option<&str>,
        allow: Allow,
    ) -> CloudResult<Caller> {
        let token = bearer(headers)?;
        let caller = match token::verify(token, &self.public, OPERATOR_AUDIENCE) {
            Ok(claims) => {
                if !claims.has_scope(SCOPE_OPERATOR) {
                    return Err(CloudError::ScopeDenied(
                        "the operator token lacks scope `operator`".into(),
                    ));
                }
                Caller::Operator { claims }
            }
            Err(TokenError::WrongAudience { found, .. }) => {
                let Some(ws) = workspace else {
                    return Err(CloudError::ScopeDenied(format!(
                        "this route needs an operator token; the token is for workspace `{found}`"
                    )));
                };
                match token::verify(token, &self.public, ws) {
                    Ok(claims) => {
                        let subject = claims.subject().map_err(|e| {
                            CloudError::Unauthorized(format!("the token's subject is invalid: {e}"))
                        })?;
                        if subject.workspace_id() != ws {
                            return Err(CloudError::WrongWorkspace(format!(
                                "the token's subject `{}` is not of workspace `{ws}`",
                                claims.sub
                            )));
                        }
                        if !(claims.has_scope(SCOPE_WORKSPACE)
                            || claims.has_scope(SCOPE_EXECUTE_TURN))
                        {
                            return Err(CloudError::ScopeDenied(format!(
                                "the token has scopes `{}`; this route needs `workspace`",
                                claims.scope
                            )));
                        }
                        Caller::Workspace { claims, subject }
                    }
                    Err(TokenError::WrongAudience { found, .. }) => {
                        return Err(CloudError::WrongWorkspace(format!(
                            "the token is for workspace `{found}`, not `{ws}`"
                        )))
                    }
                    Err(e) => return Err(CloudError::Unauthorized(e.to_string())),
                }
            }
            Err(e) => return Err(CloudError::Unauthorized(e.to_string())),
        };
        match (allow, &caller) {
            (Allow::Operator, Caller::Workspace { .. }) => {
                return Err(CloudError::ScopeDenied(
                    "this route needs an operator token (scope `operator`)".into(),
                ))
            }
            (Allow::Workspace, Caller::Operator { .. }) => {
                return Err(CloudError::ScopeDenied(
                    "this route needs the workspace's enrollment token, not an operator token"
                        .into(),
                ))
            }
            _ => {}
        }
        let jti = match &caller {
            Caller::Operator { claims } | Caller::Workspace { claims, .. } => &claims.jti,
        };
        if store.is_revoked(jti).await? {
            return Err(CloudError::Unauthorized(format!(
                "the token `{jti}` was revoked"
            )));
        }
        Ok(caller)
    }
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> CloudResult<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            CloudError::Unauthorized("missing `Authorization: Bearer <token>`".into())
        })?;
    let text = value
        .to_str()
        .map_err(|_| CloudError::Unauthorized("the Authorization header is not text".into()))?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CloudError::Unauthorized("the Authorization header is not `Bearer <token>`".into())
        })?;
    Ok(token)
}

/// RFC 3339 text of a Unix time in seconds.
pub fn rfc3339_seconds(secs: i64) -> String {
    Timestamp::from_unix_millis(secs.saturating_mul(1000)).to_rfc3339()
}
