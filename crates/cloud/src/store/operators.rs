//! Console operators and their sessions (schema version 2).
//!
//! An operator row holds an argon2id PHC string, never a password. A session row is keyed by the
//! SHA-256 of the random session id the browser holds, so the database alone cannot be replayed
//! as a cookie. Sessions expire when idle: authenticated requests slide `expires_at_ms` forward
//! (written at most once a minute), and a disabled or removed operator's sessions stop working
//! at once (the check joins the operator row).

use sqlx::Row;

use super::{Backend, Store};
use crate::error::{CloudError, CloudResult};

/// A session's `last_seen_ms` (and so its idle expiry) is written at most this often.
pub const TOUCH_EVERY_MS: i64 = 60_000;

/// A console operator as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub name: String,
    /// argon2id PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    pub created_at_ms: i64,
    pub disabled: bool,
}

/// A live session, as the session check returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub operator: String,
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

impl Store {
    /// Add an operator; `Conflict` when the name is taken.
    pub async fn add_operator(&self, name: &str, password_hash: &str) -> CloudResult<()> {
        with_pool!(self, pool => {
            let done = sqlx::query(
                "INSERT INTO operators (name, password_hash, created_at_ms, disabled) \
                 VALUES ($1, $2, $3, FALSE) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(password_hash)
            .bind(super::now_ms())
            .execute(pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(CloudError::Conflict(format!(
                    "operator `{name}` already exists (remove it first to set a new password)"
                )));
            }
            Ok(())
        })
    }

    pub async fn operator(&self, name: &str) -> CloudResult<Option<OperatorRow>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT name, password_hash, created_at_ms, disabled FROM operators WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(OperatorRow {
                    name: r.try_get(0)?,
                    password_hash: r.try_get(1)?,
                    created_at_ms: r.try_get(2)?,
                    disabled: r.try_get(3)?,
                })),
            }
        })
    }

    /// Every operator, by name.
    pub async fn operators(&self) -> CloudResult<Vec<OperatorRow>> {
        with_reader!(self, pool => {
            let rows = sqlx::query(
                "SELECT name, password_hash, created_at_ms, disabled FROM operators ORDER BY name",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(OperatorRow {
                        name: r.try_get(0)?,
                        password_hash: r.try_get(1)?,
                        created_at_ms: r.try_get(2)?,
                        disabled: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    /// Remove an operator and end every session of it, in one transaction. Returns whether the
    /// operator existed and how many sessions ended.
    pub async fn remove_operator(&self, name: &str) -> CloudResult<(bool, u64)> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let ended = sqlx::query("DELETE FROM console_sessions WHERE operator = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let existed = sqlx::query("DELETE FROM operators WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            tx.commit().await?;
            Ok((existed, ended))
        })
    }

    /// Disable or re-enable an operator; disabling ends its sessions. Returns whether it exists.
    pub async fn set_operator_disabled(&self, name: &str, disabled: bool) -> CloudResult<bool> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let found = sqlx::query("UPDATE operators SET disabled = $1 WHERE name = $2")
                .bind(disabled)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if disabled {
                sqlx::query("DELETE FROM console_sessions WHERE operator = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(found)
        })
    }

    /// Store a new session (by the hash of its id) and drop expired ones.
    pub async fn create_session(
        &self,
        id_hash: &str,
        operator: &str,
        csrf_token: &str,
        now_ms: i64,
        idle_ms: i64,
    ) -> CloudResult<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM console_sessions WHERE expires_at_ms <= $1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (id_hash, operator, csrf_token, created_at_ms, \
                 expires_at_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $5, $4)",
            )
            .bind(id_hash)
            .bind(operator)
            .bind(csrf_token)
            .bind(now_ms)
            .bind(now_ms + idle_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The live session with this id hash, its idle expiry slid forward to `now_ms + idle_ms`;
    /// `None` when unknown, expired, or its operator is removed or disabled.
    ///
    /// The check is a read; the slide is written at most once a minute per session, so the
    /// console's polling does not queue behind event ingest for SQLite's one writer.
    pub async fn touch_session(
        &self,
        id_hash: &str,
        now_ms: i64,
        idle_ms: i64,
    ) -> CloudResult<Option<SessionRow>> {
        let found = with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT s.operator, s.csrf_token, s.created_at_ms, s.expires_at_ms, s.last_seen_ms \
                 FROM console_sessions s JOIN operators o ON o.name = s.operator \
                 WHERE s.id_hash = $1 AND s.expires_at_ms > $2 AND o.disabled = FALSE",
            )
            .bind(id_hash)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok::<_, CloudError>(None),
                Some(r) => Ok(Some((
                    SessionRow {
                        operator: r.try_get(0)?,
                        csrf_token: r.try_get(1)?,
                        created_at_ms: r.try_get(2)?,
                        expires_at_ms: r.try_get(3)?,
                    },
                    r.try_get::<i64, _>(4)?,
                ))),
            }
        })?;
        let Some((mut session, last_seen_ms)) = found else {
            return Ok(None);
        };
        if now_ms - last_seen_ms >= TOUCH_EVERY_MS {
            with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE console_sessions SET last_seen_ms = $2, expires_at_ms = $3 \
                     WHERE id_hash = $1 AND expires_at_ms > $2",
                )
                .bind(id_hash)
                .bind(now_ms)
                .bind(now_ms + idle_ms)
                .execute(pool)
                .await?;
                Ok::<(), CloudError>(())
            })?;
            session.expires_at_ms = now_ms + idle_ms;
        }
        Ok(Some(session))
    }

    /// Whether the session with this id hash is still live (known, unexpired, its operator
    /// neither removed nor disabled), without sliding its expiry: a long-lived event stream
    /// re-checks its session with this, and an open page alone must not keep a session alive.
    pub async fn session_live(&self, id_hash: &str, now_ms: i64) -> CloudResult<bool> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT 1 FROM console_sessions s JOIN operators o ON o.name = s.operator \
                 WHERE s.id_hash = $1 AND s.expires_at_ms > $2 AND o.disabled = FALSE",
            )
            .bind(id_hash)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
    }

    /// End one session. Returns whether it existed.
    pub async fn delete_session(&self, id_hash: &str) -> CloudResult<bool> {
        with_pool!(self, pool => {
            let n = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
    }

    /// How many unexpired sessions an operator has (for `operator list`).
    pub async fn session_count(&self, operator: &str, now_ms: i64) -> CloudResult<i64> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT COUNT(*) FROM console_sessions WHERE operator = $1 AND expires_at_ms > $2",
            )
            .bind(operator)
            .bind(now_ms)
            .fetch_one(pool)
            .await?;
            Ok(row.try_get(0)?)
        })
    }
}
