//! Recovery requests an operator sent from the console: which aborted turn they were about, the
//! `conductor:recovery_requested` event sent, and what the workspace's sidecar answered.

use sqlx::{QueryBuilder, Row};

use super::{Backend, Store};
use crate::error::CloudResult;

/// One recovery request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRequestRow {
    pub id: i64,
    pub workspace_id: String,
    /// The `event_id` of the `agent-runtime:turn_aborted` event the request answers.
    pub turn_event_id: String,
    pub turn_id: String,
    pub wu_id: String,
    pub reason: Option<String>,
    /// `operator:<name>`.
    pub requested_by: String,
    pub requested_at_ms: i64,
    /// The `event_id` of the `conductor:recovery_requested` event sent.
    pub event_id: String,
    /// `delivered` (the sidecar took it), `refused` (it answered with an error) or
    /// `unreachable` (no answer).
    pub outcome: String,
    pub sidecar_status: Option<i64>,
    /// The sidecar's answer body (truncated), or why it could not be reached.
    pub sidecar_answer: Option<String>,
}

/// The columns in the order [`Store::recovery_requests`] reads them (a macro, so the statement
/// stays a `&'static str` literal).
macro_rules! recovery_columns {
    () => {
        "id, workspace_id, turn_event_id, turn_id, wu_id, reason, requested_by, requested_at_ms, \
         event_id, outcome, sidecar_status, sidecar_answer"
    };
}

impl Store {
    /// Record a recovery request (its `id` is assigned here); returns the id.
    pub async fn insert_recovery_request(&self, r: &RecoveryRequestRow) -> CloudResult<i64> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "INSERT INTO recovery_requests (workspace_id, turn_event_id, turn_id, wu_id, reason, \
                 requested_by, requested_at_ms, event_id, outcome, sidecar_status, sidecar_answer) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(&r.workspace_id)
            .bind(&r.turn_event_id)
            .bind(&r.turn_id)
            .bind(&r.wu_id)
            .bind(r.reason.as_deref())
            .bind(&r.requested_by)
            .bind(r.requested_at_ms)
            .bind(&r.event_id)
            .bind(&r.outcome)
            .bind(r.sidecar_status)
            .bind(r.sidecar_answer.as_deref())
            .fetch_one(pool)
            .await?;
            Ok(row.try_get(0)?)
        })
    }

    /// The newest `limit` recovery requests, of one workspace or all, newest first.
    pub async fn recovery_requests(
        &self,
        workspace_id: Option<&str>,
        limit: u32,
    ) -> CloudResult<Vec<RecoveryRequestRow>> {
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(concat!(
                "SELECT ",
                recovery_columns!(),
                " FROM recovery_requests"
            ));
            if let Some(ws) = workspace_id {
                qb.push(" WHERE workspace_id = ").push_bind(ws);
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit.clamp(1, 1_000)));
            let rows = qb.build().fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(RecoveryRequestRow {
                        id: r.try_get(0)?,
                        workspace_id: r.try_get(1)?,
                        turn_event_id: r.try_get(2)?,
                        turn_id: r.try_get(3)?,
                        wu_id: r.try_get(4)?,
                        reason: r.try_get(5)?,
                        requested_by: r.try_get(6)?,
                        requested_at_ms: r.try_get(7)?,
                        event_id: r.try_get(8)?,
                        outcome: r.try_get(9)?,
                        sidecar_status: r.try_get(10)?,
                        sidecar_answer: r.try_get(11)?,
                    })
                })
                .collect()
        })
    }
}
