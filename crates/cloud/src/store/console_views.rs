//! Read models of the web console that span workspaces: the workspace list with when each was
//! last seen, approvals across workspaces, the newest events of a filter, and the inputs of
//! calls invoked through the control plane (so an approval's `input_hash` can be shown as the
//! exact input it binds).

use lumenflow_contracts::wire::ApprovalRecord;
use sqlx::{QueryBuilder, Row};

use super::{
    parse_json, read_approval, AttributedApproval, Backend, Store, StoredEvent, WorkspaceRow,
};
use crate::error::CloudResult;

/// How long a remembered call input is kept (longer than any approval lives by default).
const CALL_INPUT_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long who invoked a call is remembered (as long as its input).
const INVOCATION_KEEP_MS: i64 = CALL_INPUT_KEEP_MS;

/// When a workspace was last heard from, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastSeen {
    /// Newest event stored for the workspace (receive time).
    pub event_ms: Option<i64>,
    /// Newest accepted request the workspace (or one of its phones) made, from the audit log
    /// (event pushes, heartbeats, approval requests, ...).
    pub request_ms: Option<i64>,
}

impl LastSeen {
    pub fn newest(&self) -> Option<i64> {
        self.event_ms.max(self.request_ms)
    }
}

impl Store {
    /// Every workspace, by id.
    pub async fn all_workspaces(&self) -> CloudResult<Vec<WorkspaceRow>> {
        with_reader!(self, pool => {
            let rows = sqlx::query(
                "SELECT workspace_id, sidecar_url, created_at_ms, enrolled_at_ms, policies, config \
                 FROM workspaces ORDER BY workspace_id",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(WorkspaceRow {
                        workspace_id: r.try_get(0)?,
                        sidecar_url: r.try_get(1)?,
                        created_at_ms: r.try_get(2)?,
                        enrolled_at_ms: r.try_get(3)?,
                        policies: r.try_get(4)?,
                        config: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    /// When the workspace was last seen: its newest event and its newest accepted request.
    pub async fn last_seen(&self, workspace_id: &str) -> CloudResult<LastSeen> {
        // A phone's subject is `<ws>:phone:<id>`; operator actions on the workspace do not count.
        let phones = format!("{workspace_id}:%");
        with_reader!(self, pool => {
            let events = sqlx::query("SELECT MAX(received_at_ms) FROM events WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_one(pool)
                .await?;
            let requests = sqlx::query(
                "SELECT MAX(at_ms) FROM audit_log WHERE workspace_id = $1 AND outcome = 'ok' \
                 AND (subject = $1 OR subject LIKE $2)",
            )
            .bind(workspace_id)
            .bind(phones)
            .fetch_one(pool)
            .await?;
            Ok(LastSeen {
                event_ms: events.try_get(0)?,
                request_ms: requests.try_get(0)?,
            })
        })
    }

    /// Approvals of every workspace as they read now: pending (unexpired) ones oldest first, or
    /// decided and expired ones newest first.
    pub async fn approvals_overview(
        &self,
        pending: bool,
        now_ms: i64,
        limit: u32,
    ) -> CloudResult<Vec<ApprovalRecord>> {
        Ok(self
            .approvals_attributed(pending, now_ms, limit)
            .await?
            .into_iter()
            .map(|a| a.record)
            .collect())
    }

    /// [`Store::approvals_overview`] with who asked and who decided as authenticated. Decided
    /// ones are selected and ordered by when they were decided (an expired one by its expiry),
    /// so a fresh decision on an old request is on the first page.
    pub async fn approvals_attributed(
        &self,
        pending: bool,
        now_ms: i64,
        limit: u32,
    ) -> CloudResult<Vec<AttributedApproval>> {
        let limit = i64::from(limit.clamp(1, 1_000));
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT status, record, expires_at_ms, requested_by, decided_by, stated_reviewer, \
                 decided_at_ms FROM approvals WHERE ",
            );
            if pending {
                qb.push("status = 'pending' AND (expires_at_ms IS NULL OR expires_at_ms > ")
                    .push_bind(now_ms)
                    .push(") ORDER BY seq");
            } else {
                qb.push("NOT (status = 'pending' AND (expires_at_ms IS NULL OR expires_at_ms > ")
                    .push_bind(now_ms)
                    .push(")) ORDER BY COALESCE(decided_at_ms, expires_at_ms, requested_at_ms) DESC, seq DESC");
            }
            qb.push(" LIMIT ").push_bind(limit);
            let rows = qb.build().fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(AttributedApproval {
                        record: read_approval(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, now_ms)?,
                        requested_by: r.try_get(3)?,
                        decided_by: r.try_get(4)?,
                        stated_reviewer: r.try_get(5)?,
                        decided_at_ms: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }

    /// The newest `limit` events of a workspace matching the filters, oldest first.
    pub async fn recent_events(
        &self,
        workspace_id: &str,
        kind: Option<&str>,
        run_id: Option<&str>,
        limit: u32,
    ) -> CloudResult<Vec<StoredEvent>> {
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT id, workspace_id, kind, ts_ms, seq, channel, run_id, raw FROM events WHERE workspace_id = ",
            );
            qb.push_bind(workspace_id);
            if let Some(k) = kind {
                push_kind_filter!(qb, k);
            }
            if let Some(run) = run_id {
                qb.push(" AND run_id = ").push_bind(run);
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit.clamp(1, 1_000)));
            let rows = qb.build().fetch_all(pool).await?;
            let mut out = super::stored_events!(rows)?;
            out.reverse();
            Ok(out)
        })
    }

    /// Remember the input of a call invoked through the control plane, by its input hash, and
    /// forget ones older than a week.
    pub async fn record_call_input(
        &self,
        workspace_id: &str,
        input_hash: &str,
        tool: &str,
        input: &str,
        now_ms: i64,
    ) -> CloudResult<()> {
        self.record_call_input_by(workspace_id, input_hash, tool, input, now_ms, None)
            .await
    }

    /// [`Store::record_call_input`], remembering who invoked the call.
    pub async fn record_call_input_by(
        &self,
        workspace_id: &str,
        input_hash: &str,
        tool: &str,
        input: &str,
        now_ms: i64,
        invoked_by: Option<&str>,
    ) -> CloudResult<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM call_inputs WHERE recorded_at_ms < $1")
                .bind(now_ms - CALL_INPUT_KEEP_MS)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO call_inputs (workspace_id, input_hash, tool, input, recorded_at_ms, invoked_by) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id, input_hash) \
                 DO UPDATE SET tool = $3, input = $4, recorded_at_ms = $5, invoked_by = $6",
            )
            .bind(workspace_id)
            .bind(input_hash)
            .bind(tool)
            .bind(input)
            .bind(now_ms)
            .bind(invoked_by)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// A remembered call input: `(tool, input JSON text)`.
    pub async fn call_input(
        &self,
        workspace_id: &str,
        input_hash: &str,
    ) -> CloudResult<Option<(String, String)>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT tool, input FROM call_inputs WHERE workspace_id = $1 AND input_hash = $2",
            )
            .bind(workspace_id)
            .bind(input_hash)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
            }
        })
    }

    /// Who invoked, through the control plane, the newest call of `input_hash` in a workspace.
    pub async fn call_invoker(
        &self,
        workspace_id: &str,
        input_hash: &str,
    ) -> CloudResult<Option<String>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT invoked_by FROM call_inputs WHERE workspace_id = $1 AND input_hash = $2",
            )
            .bind(workspace_id)
            .bind(input_hash)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(r.try_get(0)?),
            }
        })
    }

    /// Remember that `invoked_by` made the call the sidecar answered with `receipt_id`.
    pub async fn record_invocation(
        &self,
        workspace_id: &str,
        receipt_id: &str,
        envelope_hash: &str,
        tool: &str,
        invoked_by: &str,
        now_ms: i64,
    ) -> CloudResult<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM invocations WHERE at_ms < $1")
                .bind(now_ms - INVOCATION_KEEP_MS)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO invocations (workspace_id, receipt_id, envelope_hash, tool, invoked_by, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id, receipt_id) DO NOTHING",
            )
            .bind(workspace_id)
            .bind(receipt_id)
            .bind(envelope_hash)
            .bind(tool)
            .bind(invoked_by)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Who invoked the call with `receipt_id` through the control plane, if anyone did.
    pub async fn invoker_of_receipt(
        &self,
        workspace_id: &str,
        receipt_id: &str,
    ) -> CloudResult<Option<String>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT invoked_by FROM invocations WHERE workspace_id = $1 AND receipt_id = $2",
            )
            .bind(workspace_id)
            .bind(receipt_id)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(r.try_get(0)?)),
            }
        })
    }

    /// Record the outcome of reaching a workspace's sidecar: `error` `None` for a success.
    pub async fn record_sidecar_contact(
        &self,
        workspace_id: &str,
        error: Option<&str>,
        now_ms: i64,
    ) -> CloudResult<()> {
        with_pool!(self, pool => {
            let sql = if error.is_some() {
                "INSERT INTO sidecar_contact (workspace_id, failed_at_ms, error) VALUES ($1, $2, $3) \
                 ON CONFLICT (workspace_id) DO UPDATE SET failed_at_ms = $2, error = $3"
            } else {
                "INSERT INTO sidecar_contact (workspace_id, ok_at_ms, error) VALUES ($1, $2, $3) \
                 ON CONFLICT (workspace_id) DO UPDATE SET ok_at_ms = $2, error = NULL"
            };
            sqlx::query(sql)
                .bind(workspace_id)
                .bind(now_ms)
                .bind(error)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The last failed attempt to reach a workspace's sidecar, when no success followed it:
    /// `(failed_at_ms, error)`.
    pub async fn sidecar_failure(&self, workspace_id: &str) -> CloudResult<Option<(i64, String)>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT failed_at_ms, error FROM sidecar_contact WHERE workspace_id = $1 \
                 AND failed_at_ms IS NOT NULL AND (ok_at_ms IS NULL OR ok_at_ms < failed_at_ms)",
            )
            .bind(workspace_id)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some((
                    r.try_get(0)?,
                    r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
                ))),
            }
        })
    }
}
