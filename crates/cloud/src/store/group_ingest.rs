//! Group commit of event batches.
//!
//! Event ids are hashes, and a batch of 1 000 events touches many pages of the unique dedupe
//! index; committed one after another, concurrent batches each paid a WAL/fsync round and
//! rewrote those pages. Batches that arrive while a commit is in flight now queue, and the next
//! writer commits all of them in one transaction, so those pages are written once for the whole
//! group. Each batch keeps its own audit line and its own fresh/duplicate count, and each
//! request is answered only after the transaction holding its batch committed.
//!
//! On PostgreSQL the transaction first takes the advisory lock of every workspace in the group,
//! in sorted order (no two groups can deadlock), so a workspace still has one writer at a time
//! across control-plane processes and its cursors follow commit order. SQLite has one writer.
//!
//! There is no background task: the request that takes the writer lock commits what is queued
//! (the leader), the others find their answer when they get the lock. The commit itself runs in
//! a spawned task, so a leader whose client hangs up does not abort the other batches' commit.

use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::QueryBuilder;
use tokio::sync::oneshot;

use super::{now_ms, AuditEntry, EventRow, IngestOutcome, INSERT_CHUNK};
use crate::error::{CloudError, CloudResult};

/// Most events committed in one transaction (a bigger group only makes its waiters wait longer).
const MAX_GROUP_EVENTS: usize = 50_000;

/// The database a group is committed to.
#[derive(Clone)]
pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The queue and writer lock of one store (shared by its clones).
#[derive(Default)]
pub(super) struct GroupIngest {
    queue: Mutex<Vec<Job>>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for GroupIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupIngest")
            .field("queued", &lock(&self.queue).len())
            .finish()
    }
}

struct Job {
    rows: Vec<EventRow>,
    audit: AuditEntry,
    reply: oneshot::Sender<CloudResult<IngestOutcome>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GroupIngest {
    /// Store `rows` with `audit` in a transaction that may hold other queued batches too; returns
    /// once it committed.
    pub(super) async fn ingest(
        &self,
        pool: Pool,
        rows: Vec<EventRow>,
        audit: &AuditEntry,
    ) -> CloudResult<IngestOutcome> {
        let (reply, mut answer) = oneshot::channel();
        lock(&self.queue).push(Job {
            rows,
            audit: audit.clone(),
            reply,
        });
        loop {
            let guard = Arc::clone(&self.writer).lock_owned().await;
            match answer.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(CloudError::Internal(
                        "the commit holding this batch stopped before answering".into(),
                    ))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let group = take_group(&mut lock(&self.queue));
            if group.is_empty() {
                // Not answered and not queued cannot happen; do not spin if it ever does.
                return Err(CloudError::Internal(
                    "this batch left the ingest queue without an answer".into(),
                ));
            }
            let pool = pool.clone();
            let commit = tokio::spawn(async move {
                let _writer = guard;
                commit_group(&pool, group).await;
            });
            if let Err(e) = commit.await {
                return Err(CloudError::Internal(format!(
                    "the ingest commit failed: {e}"
                )));
            }
        }
    }
}

/// Whole jobs from the front of the queue, at least one, up to [`MAX_GROUP_EVENTS`].
fn take_group(queue: &mut Vec<Job>) -> Vec<Job> {
    let mut events = 0usize;
    let mut take = 0usize;
    for job in queue.iter() {
        if take > 0 && events + job.rows.len() > MAX_GROUP_EVENTS {
            break;
        }
        events += job.rows.len();
        take += 1;
    }
    queue.drain(..take).collect()
}

/// Commit `group` in one transaction and answer every job.
async fn commit_group(pool: &Pool, group: Vec<Job>) {
    let written = match pool {
        Pool::Sqlite(pool) => write_group_sqlite(pool, &group).await,
        Pool::Postgres(pool) => write_group_postgres(pool, &group).await,
    };
    match written {
        Ok(fresh) => {
            for (job, fresh) in group.into_iter().zip(fresh) {
                let accepted = job.rows.len() as u64;
                let _ = job.reply.send(Ok(IngestOutcome {
                    accepted,
                    duplicates: accepted.saturating_sub(fresh),
                    fresh,
                }));
            }
        }
        Err(e) => {
            // Every waiter gets the same error; the `Storage` variant is kept as it is so its
            // message is not prefixed twice.
            let message = match e {
                CloudError::Storage(m) => m,
                other => other.to_string(),
            };
            for job in group {
                let _ = job.reply.send(Err(CloudError::Storage(message.clone())));
            }
        }
    }
}

/// One batch's rows (duplicates skipped by the dedupe key) and run spans, in `$tx`; evaluates
/// to the rows newly stored. `$min`/`$max` are the backend's two-argument min and max.
macro_rules! insert_batch {
    ($tx:expr, $rows:expr, $received:expr, $min:literal, $max:literal) => {{
        let tx = $tx;
        let rows: &[EventRow] = $rows;
        let keyed: Vec<(Vec<u8>, &EventRow)> = rows.iter().map(|r| (r.dedupe_key(), r)).collect();
        let mut fresh = 0u64;
        for chunk in keyed.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO events (workspace_id, schema_version, event_id, kind, ts_ms, \
                 timestamp, channel, seq, run_id, raw, received_at_ms, dedupe_key) ",
            );
            qb.push_values(chunk, |mut b, (key, r)| {
                b.push_bind(r.workspace_id.as_str())
                    .push_bind(r.schema_version)
                    .push_bind(r.event_id.as_str())
                    .push_bind(r.kind.as_str())
                    .push_bind(r.ts_ms)
                    .push_bind(r.timestamp.as_str())
                    .push_bind(r.channel.as_str())
                    .push_bind(r.seq)
                    .push_bind(r.run_id.as_deref())
                    .push_bind(r.raw.as_str())
                    .push_bind($received)
                    .push_bind(key.as_slice());
            });
            qb.push(" ON CONFLICT (dedupe_key) DO NOTHING");
            fresh += qb.build().execute(&mut **tx).await?.rows_affected();
        }
        let runs = super::run_spans(rows);
        for chunk in runs.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO event_runs (workspace_id, run_id, first_ts_ms, last_ts_ms) ",
            );
            qb.push_values(chunk, |mut b, ((ws, run), (first, last))| {
                b.push_bind(*ws)
                    .push_bind(*run)
                    .push_bind(*first)
                    .push_bind(*last);
            });
            qb.push(concat!(
                " ON CONFLICT (workspace_id, run_id) DO UPDATE SET first_ts_ms = ",
                $min,
                "(event_runs.first_ts_ms, excluded.first_ts_ms), last_ts_ms = ",
                $max,
                "(event_runs.last_ts_ms, excluded.last_ts_ms)"
            ));
            qb.build().execute(&mut **tx).await?;
        }
        fresh
    }};
}

/// The statements of every job, in queue order, in one transaction; the fresh-row count of each.
///
/// The rows are acknowledged only when this returns `Ok`, so `Ok` must mean a real `COMMIT` of
/// the outermost transaction (walk-F F-1). On any error the writer connection is closed rather
/// than returned to the pool: after a full disk SQLite may already have rolled the transaction
/// back itself, sqlx's own `ROLLBACK` then fails and its transaction count stays one too high,
/// and every later "transaction" became a savepoint inside one that was never committed. Closing
/// the connection rolls back whatever is open; the pool opens a fresh one for the next group.
async fn write_group_sqlite(pool: &SqlitePool, group: &[Job]) -> CloudResult<Vec<u64>> {
    let mut conn = pool.acquire().await?;
    let written = write_group_sqlite_on(&mut conn, group).await;
    if let Err(e) = &written {
        tracing::error!(error = %e, "event batch not stored; the writer connection is reopened");
        if let Err(close) = sqlx::Connection::close(conn.detach()).await {
            tracing::warn!(error = %close, "closing the failed writer connection");
        }
    }
    written
}

async fn write_group_sqlite_on(
    conn: &mut sqlx::SqliteConnection,
    group: &[Job],
) -> CloudResult<Vec<u64>> {
    use sqlx::Connection as _;
    let received = now_ms();
    // An explicit `BEGIN IMMEDIATE` (not sqlx's nesting `begin`): sqlx refuses it when it thinks
    // a transaction is open and checks that SQLite really started one, so the `COMMIT` below is
    // always the outermost one. `IMMEDIATE` also takes the write lock up front, where the busy
    // timeout applies, instead of failing a half-written group on lock upgrade.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut counts = Vec::with_capacity(group.len());
    for job in group {
        counts.push(insert_batch!(&mut tx, &job.rows, received, "MIN", "MAX"));
        insert_audit!(&mut *tx, &job.audit);
    }
    tx.commit().await?;
    Ok(counts)
}

/// [`write_group_sqlite`] on PostgreSQL, under the advisory locks of the group's workspaces.
async fn write_group_postgres(pool: &PgPool, group: &[Job]) -> CloudResult<Vec<u64>> {
    let received = now_ms();
    let mut tx = pool.begin().await?;
    let workspaces: std::collections::BTreeSet<&str> = group
        .iter()
        .flat_map(|job| job.rows.iter().map(|r| r.workspace_id.as_str()))
        .collect();
    for ws in workspaces {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(ws)
            .execute(&mut *tx)
            .await?;
    }
    let mut counts = Vec::with_capacity(group.len());
    for job in group {
        counts.push(insert_batch!(
            &mut tx, &job.rows, received, "LEAST", "GREATEST"
        ));
        insert_audit!(&mut *tx, &job.audit);
    }
    tx.commit().await?;
    Ok(counts)
}
