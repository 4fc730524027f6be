//! Durable state of the control plane behind one API, on SQLite or PostgreSQL.
//!
//! [`Store`] is one type with two real backends (an enum over sqlx pools) rather than a trait
//! object: every query is written once, in SQL both databases accept (`$n` placeholders, `ON
//! CONFLICT`, `RETURNING`), and expanded for each pool by the `with_pool!` macro. Anything that
//! must be atomic (a batch of events with its audit row, an enrollment code's single use, an
//! approval's decision) is one transaction or one conditional statement, so two control-plane
//! processes on one PostgreSQL database never double-spend a code or double-decide an approval.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: a batch is acknowledged only after its
//! transaction committed, and a committed transaction survives a killed process.

pub mod migrations;

use std::str::FromStr;
use std::time::Duration;

use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::wire::{ApprovalList, ApprovalListInput, ApprovalRecord};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};

use crate::error::{CloudError, CloudResult};

/// The default database of `lumenflow cloud serve` with no flags.
pub const DEFAULT_DATABASE: &str = "sqlite://lumenflow-cloud.db";

/// Rows per multi-row `INSERT` (11 binds each stays under both databases' parameter limits).
const INSERT_CHUNK: usize = 2_000;

/// The dedupe key of an event (see `migrations` for why it is not the text columns): the first
/// 128 bits of SHA-256 of the workspace id, a NUL byte and the event id, led by
///
/// - `0x01` and the timestamp (milliseconds, big-endian) when `time_key` is given: the id is
///   derived from the content including the timestamp, so every re-send of the event carries
///   the same timestamp, and keys of events arriving in time order land next to each other in
///   the unique index instead of on random pages (25 bytes);
/// - `0x00` otherwise (an id made from an idempotency key may come back with a new timestamp),
///   17 bytes.
///
/// The two forms never collide (different lengths), and neither collides with the 16-byte keys
/// of schema version 1, which migration 4 rewrites.
pub fn dedupe_key(workspace_id: &str, event_id: &str, time_key: Option<i64>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(workspace_id.as_bytes());
    h.update([0u8]);
    h.update(event_id.as_bytes());
    let digest = h.finalize();
    let mut key = Vec::with_capacity(25);
    match time_key {
        Some(ms) => {
            key.push(1u8);
            // Order-preserving for every i64 (a pre-1970 timestamp still sorts first).
            key.extend_from_slice(&((ms as u64) ^ (1u64 << 63)).to_be_bytes());
        }
        None => key.push(0u8),
    }
    key.extend_from_slice(&digest[..16]);
    key
}

/// Whether a stored event's id covers its timestamp (v1 ids are the hash of the whole event;
/// a v2 id does when it is the event's content id).
pub fn id_covers_timestamp(schema_version: i64, raw: &str) -> bool {
    match schema_version {
        1 => true,
        _ => serde_json::from_str::<lumenflow_contracts::event::KernelEventV2>(raw)
            .map(|e| e.content_id() == e.event_id)
            .unwrap_or(false),
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    Timestamp::now().unix_millis()
}

/// Each run's first and last timestamp in a batch (upserted into `event_runs`).
type RunSpans<'a> = Vec<((&'a str, &'a str), (i64, i64))>;

fn run_spans(rows: &[EventRow]) -> RunSpans<'_> {
    let mut runs: std::collections::BTreeMap<(&str, &str), (i64, i64)> = Default::default();
    for r in rows {
        if let Some(run) = r.run_id.as_deref() {
            let span = runs
                .entry((r.workspace_id.as_str(), run))
                .or_insert((r.ts_ms, r.ts_ms));
            span.0 = span.0.min(r.ts_ms);
            span.1 = span.1.max(r.ts_ms);
        }
    }
    runs.into_iter().collect()
}

#[derive(Debug, Clone)]
enum Backend {
    /// One writer connection (its page cache stays warm across batches: a second writing
    /// connection would invalidate it on every commit) and a pool of readers.
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// The control plane's storage (cheap to clone: it holds a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// The database URL with any password removed, for messages.
    display: String,
    /// Concurrent event batches share one transaction (see `group_ingest`).
    group: std::sync::Arc<group_ingest::GroupIngest>,
}

macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { write: $pool, .. } => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// [`with_pool!`] for statements that only read (the SQLite reader pool).
macro_rules! with_reader {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { read: $pool, .. } => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// `rows` of `SELECT id, workspace_id, kind, ts_ms, seq, channel, run_id, raw FROM events …`
/// (in that order) as [`StoredEvent`]s; a macro because SQLite's and PostgreSQL's rows are
/// different types.
macro_rules! stored_events {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|r| {
                let raw: String = r.try_get(7)?;
                Ok(StoredEvent {
                    cursor: r.try_get(0)?,
                    workspace_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    ts_ms: r.try_get(3)?,
                    seq: r.try_get(4)?,
                    channel: r.try_get(5)?,
                    run_id: r.try_get(6)?,
                    event: parse_json(&raw, "event")?,
                })
            })
            .collect::<CloudResult<Vec<StoredEvent>>>()
    };
}
pub(crate) use stored_events;

/// The kind filter of an event query: an exact kind (`campus:pue_sampled`), or a pack prefix
/// ending in `:` (`campus:`), which no exact kind can be. `SUBSTR` rather than `LIKE`, so `_` and
/// `%` in a kind are never wildcards; the length is our own count, pushed as a literal because
/// PostgreSQL's `substr` takes an `integer`, not the `bigint` a bound `i64` would be.
macro_rules! push_kind_filter {
    ($qb:expr, $kind:expr) => {{
        let k: &str = $kind;
        if k.ends_with(':') {
            $qb.push(format!(" AND SUBSTR(kind, 1, {}) = ", k.chars().count()))
                .push_bind(k.to_string());
        } else {
            $qb.push(" AND kind = ").push_bind(k.to_string());
        }
    }};
}

macro_rules! insert_audit {
    ($exec:expr, $entry:expr) => {{
        let e: &AuditEntry = $entry;
        sqlx::query(
            "INSERT INTO audit_log (at_ms, workspace_id, subject, device_name, action, outcome, code, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now_ms())
        .bind(e.workspace_id.as_deref())
        .bind(e.subject.as_str())
        .bind(e.device_name.as_deref())
        .bind(e.action.as_str())
        .bind(e.outcome.as_str())
        .bind(e.code.as_deref())
        .bind(e.detail.as_deref())
        .execute($exec)
        .await?;
    }};
}

/// Migration 4: rewrite the dedupe key of every event stored with the 16-byte form, in pages,
/// inside the migration's transaction.
macro_rules! rekey_events {
    ($tx:expr) => {{
        let tx = $tx;
        loop {
            let rows = sqlx::query(
                "SELECT id, workspace_id, event_id, schema_version, ts_ms, raw FROM events \
                 WHERE length(dedupe_key) = 16 ORDER BY id LIMIT 2000",
            )
            .fetch_all(&mut **tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let id: i64 = row.try_get(0)?;
                let ws: String = row.try_get(1)?;
                let event_id: String = row.try_get(2)?;
                let version: i64 = row.try_get(3)?;
                let ts_ms: i64 = row.try_get(4)?;
                let raw: String = row.try_get(5)?;
                let key = dedupe_key(
                    &ws,
                    &event_id,
                    id_covers_timestamp(version, &raw).then_some(ts_ms),
                );
                sqlx::query("UPDATE events SET dedupe_key = $1 WHERE id = $2")
                    .bind(key)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }};
}

// After the macros, which they use (textual scope).
pub mod bundles;
pub mod console_views;
mod group_ingest;
pub mod operators;
pub mod recovery;

/// One event as stored: the envelope fields the queries use, plus the raw JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub workspace_id: String,
    pub schema_version: i64,
    /// v2: the envelope's `event_id`; v1: `v1_` + the canonical hash of the event (v1 has no id).
    pub event_id: String,
    pub kind: String,
    pub ts_ms: i64,
    pub timestamp: String,
    /// The delivery channel (DLV-03): the sender's subject.
    pub channel: String,
    pub seq: Option<i64>,
    pub run_id: Option<String>,
    pub raw: String,
    /// The id covers the timestamp ([`id_covers_timestamp`]): the dedupe key leads with it.
    pub time_keyed: bool,
}

impl EventRow {
    pub fn dedupe_key(&self) -> Vec<u8> {
        dedupe_key(
            &self.workspace_id,
            &self.event_id,
            self.time_keyed.then_some(self.ts_ms),
        )
    }
}

/// What a batch ingest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub duplicates: u64,
    /// How many events of the batch were newly stored.
    pub fresh: u64,
}

/// A stored event with its cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub cursor: i64,
    pub workspace_id: String,
    pub kind: String,
    pub ts_ms: i64,
    pub seq: Option<i64>,
    pub channel: String,
    pub run_id: Option<String>,
    pub event: Value,
}

/// Filters of the event query API; results are ordered by timestamp, then `seq`, then cursor.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub workspace_id: String,
    pub kind: Option<String>,
    pub run_id: Option<String>,
    pub channel: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub after: Option<EventCursor>,
    pub limit: u32,
}

/// A position in the `(timestamp, seq, cursor)` order; written `<ts_ms>.<seq>.<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub ts_ms: i64,
    pub seq: i64,
    pub id: i64,
}

impl EventCursor {
    pub fn parse(text: &str) -> Option<EventCursor> {
        let mut parts = text.split('.');
        let ts_ms = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let id = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(EventCursor { ts_ms, seq, id })
    }

    pub fn render(&self) -> String {
        format!("{}.{}.{}", self.ts_ms, self.seq, self.id)
    }
}

/// One audit-log line (ENR-05): raw subject and resolved device name of an inbound action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    pub workspace_id: Option<String>,
    pub subject: String,
    pub device_name: Option<String>,
    pub action: String,
    /// `ok` or `refused`.
    pub outcome: String,
    pub code: Option<String>,
    pub detail: Option<String>,
}

/// See [`Store::phone_standing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneStanding {
    /// Registered or enrolled, and not every token of it revoked.
    Known,
    /// Neither registered nor ever enrolled for the workspace.
    Unknown,
    /// Enrolled, and every token it was issued is revoked.
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    pub entry: AuditEntry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRow {
    pub workspace_id: String,
    pub sidecar_url: Option<String>,
    pub created_at_ms: i64,
    pub enrolled_at_ms: Option<i64>,
    pub policies: Option<String>,
    pub config: Option<String>,
}

/// A token the control plane issued (so it can be listed and revoked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub jti: String,
    pub workspace_id: String,
    pub subject: String,
    pub scope: String,
    /// `enrollment`, `operator`, `invoke`, `registry`, `authenticate`.
    pub purpose: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// Why an enrollment code was not exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedeemRefusal {
    Unknown,
    Expired,
    AlreadyUsed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub workspace_id: String,
    pub device_id: String,
    pub name: String,
    pub registered_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolsRow {
    pub listing: String,
    pub etag: Option<String>,
    pub fetched_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRow {
    pub receipt_id: String,
    pub workspace_id: String,
    pub run_id: Option<String>,
    pub content_digest: String,
    pub receipt: Value,
    pub seal: Value,
    pub sealed_at_ms: i64,
}

/// Who decides an approval. `subject` is who the control plane knows acted (an operator's
/// session, a token's subject, the OS user of the CLI); `stated` is a reviewer the caller named
/// that is not its subject, kept apart so it is never shown as the decider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decider<'a> {
    pub subject: Option<&'a str>,
    /// The record's `reviewer_id`.
    pub reviewer_id: Option<&'a str>,
    pub reviewer_type: Option<&'a str>,
    pub stated: Option<&'a str>,
}

/// An approval with who asked and who decided as authenticated (the record's `requester_id` and
/// `reviewer_id` are what the callers stated).
#[derive(Debug, Clone, PartialEq)]
pub struct AttributedApproval {
    pub record: ApprovalRecord,
    /// The subject of the request that created it (`None` for approvals stored before this was
    /// recorded).
    pub requested_by: Option<String>,
    pub decided_by: Option<String>,
    pub stated_reviewer: Option<String>,
    pub decided_at_ms: Option<i64>,
}

/// Why an approval could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveRefusal {
    NotFound,
    /// Already decided (or expired): the current status.
    AlreadyDecided(String),
}

fn parse_json(text: &str, what: &str) -> CloudResult<Value> {
    serde_json::from_str(text)
        .map_err(|e| CloudError::Storage(format!("stored {what} is not valid JSON: {e}")))
}

/// Refuse a URL whose scheme is neither SQLite nor PostgreSQL (it would otherwise be taken for
/// an SQLite file name).
fn check_scheme(url: &str) -> CloudResult<()> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Ok(());
    };
    if matches!(scheme, "sqlite" | "postgres" | "postgresql") {
        return Ok(());
    }
    Err(CloudError::BadRequest(format!(
        "`{}`: the database URL scheme `{scheme}` is not supported; expected `sqlite://PATH`, \
         a file path, or `postgres://USER@HOST/DB`",
        redact(url)
    )))
}

/// The file of an SQLite `url` (`None` for PostgreSQL and in-memory databases).
fn sqlite_file(url: &str) -> CloudResult<Option<std::path::PathBuf>> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if in_memory || url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(None);
    }
    let options = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|e| {
            CloudError::Storage(format!("`{}` is not an SQLite URL: {e}", redact(url)))
        })?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    Ok(Some(options.get_filename().to_path_buf()))
}

/// The database holds operators' password hashes, session CSRF tokens, call inputs and the
/// audit log: like the signing key, it is readable by its owner only. A missing file is created
/// 0600 before SQLite opens it (an empty file is a valid new database), so it is never readable
/// by others even for a moment; an existing one with wider permissions is tightened, with a
/// warning.
fn private_database_file(path: &std::path::Path, create: bool) -> CloudResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if create && !path.exists() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => return Ok(()),
            // Created meanwhile by another process: tighten it like any existing file.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // Left to SQLite, which reports why it cannot create the file.
            Err(_) => return Ok(()),
        }
    }
    tighten(path)
}

/// Make `path` (when it exists) readable and writable by its owner only. The warning goes to
/// stderr, where `serve` and the administration commands report.
fn tighten(path: &std::path::Path) -> CloudResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).map_err(|e| {
        CloudError::Storage(format!(
            "`{}` is readable by others (mode {mode:o}) and cannot be made private: {e}",
            absolute(path).display()
        ))
    })?;
    eprintln!(
        "warning: `{}` was readable by others (mode {mode:o}); made owner-only",
        absolute(path).display()
    );
    Ok(())
}

/// Whether the SQLite file at `path` has been migrated by a control plane, opened read-only.
async fn sqlite_has_schema(path: &std::path::Path) -> CloudResult<bool> {
    use sqlx::{ConnectOptions, Connection};
    let shown = path.display();
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| CloudError::Storage(format!("cannot open `{shown}`: {e}")))?;
    let tables: i64 = sqlx::query(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
         AND name = 'lf_schema_migrations'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| CloudError::Storage(format!("`{shown}` is not a readable SQLite database: {e}")))?
    .try_get(0)?;
    let _ = conn.close().await;
    Ok(tables > 0)
}

/// `path` from the filesystem root, for messages (the working directory is the usual surprise).
pub(crate) fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The status an approval reads as at `now_ms`: a pending one past its expiry is `expired`.
pub fn effective_status(status: &str, expires_at_ms: Option<i64>, now_ms: i64) -> String {
    match expires_at_ms {
        Some(exp) if status == "pending" && exp <= now_ms => "expired".to_string(),
        _ => status.to_string(),
    }
}

impl Store {
    /// Open (creating when missing) the database at `url` and bring its schema up to date.
    /// `sqlite://path`, `sqlite:path`, a bare file path, or `postgres://...`.
    pub async fn open(url: &str) -> CloudResult<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Whether the database already holds credentials signed by some key: tokens (workspace,
    /// phone, invoke or operator) or enrollment codes. A new key beside such a database would
    /// make every one of them fail (walk-F F-3), so `serve` and `init` only create a key for a
    /// database without them.
    pub async fn holds_credentials(&self) -> CloudResult<bool> {
        with_reader!(self, pool => {
            let n: i64 = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM tokens) + (SELECT COUNT(*) FROM enrollment_codes)",
            )
            .fetch_one(pool)
            .await?
            .try_get(0)?;
            Ok(n > 0)
        })
    }

    /// Write a consistent copy of an SQLite database to `out` with `VACUUM INTO` (one read
    /// snapshot, safe while the server writes). A plain copy of a WAL database misses what is
    /// still in `-wal`, often everything (walk-F F-4). The copy holds token hashes and operator
    /// password hashes, so it is created owner-only; an existing `out` is never overwritten.
    pub async fn backup_into(&self, out: &std::path::Path) -> CloudResult<()> {
        let Backend::Sqlite { read, .. } = &self.backend else {
            return Err(CloudError::BadRequest(format!(
                "`{}` is PostgreSQL: back it up with `pg_dump`, and keep the signing key with it",
                self.display
            )));
        };
        if out.exists() {
            return Err(CloudError::BadRequest(format!(
                "`{}` already exists: name a new file for the backup",
                absolute(out).display()
            )));
        }
        let target = out.to_str().ok_or_else(|| {
            CloudError::BadRequest(format!(
                "the backup path `{}` is not valid UTF-8",
                out.display()
            ))
        })?;
        // Created empty and owner-only first: VACUUM INTO writes into an existing empty file and
        // keeps its mode, so the copy is never readable by others, not even for a moment.
        private_database_file(out, true)?;
        sqlx::query("VACUUM INTO ?1")
            .bind(target)
            .execute(read)
            .await?;
        Ok(())
    }

    /// Open the database a control plane already uses (its schema brought up to date), and
    /// refuse one that does not exist or holds no control-plane tables: administration commands
    /// run in the wrong folder would otherwise create an empty database beside the real one,
    /// and an enrollment code or operator minted there is unknown to the running server.
    pub async fn open_existing(url: &str) -> CloudResult<Store> {
        let missing = |what: String| {
            CloudError::NotInitialized(format!(
                "{what}: administration commands work on the database `lumenflow cloud serve` \
                 uses; run them in its folder, pass `--database URL` (or set \
                 LUMENFLOW_CLOUD_DATABASE), or create it with `lumenflow cloud init`"
            ))
        };
        // Before anything reads the URL as a file name: `mysql://…` is not a SQLite path.
        check_scheme(url)?;
        let display = redact(url);
        let no_tables = || missing(format!("`{display}` holds no control-plane tables"));
        if let Some(path) = sqlite_file(url)? {
            if !path.exists() {
                return Err(missing(format!(
                    "no control-plane database at `{}`",
                    absolute(&path).display()
                )));
            }
            // Looked at read-only first: the writer's settings (WAL, page size) would already
            // change a file that turns out not to be ours.
            if !sqlite_has_schema(&path).await? {
                return Err(no_tables());
            }
        }
        let store = Store::connect_with(url, false).await?;
        if let Backend::Postgres(pool) = &store.backend {
            let tables: i64 = sqlx::query(
                "SELECT COUNT(*) FROM pg_catalog.pg_tables \
                 WHERE tablename = 'lf_schema_migrations' \
                 AND schemaname = ANY (current_schemas(false))",
            )
            .fetch_one(pool)
            .await?
            .try_get(0)?;
            if tables == 0 {
                store.close().await;
                return Err(no_tables());
            }
        }
        store.migrate().await?;
        Ok(store)
    }

    /// Connect without migrating (creating an SQLite file when missing).
    pub async fn connect(url: &str) -> CloudResult<Store> {
        Store::connect_with(url, true).await
    }

    async fn connect_with(url: &str, create: bool) -> CloudResult<Store> {
        let display = redact(url);
        let storage = |e: sqlx::Error| CloudError::Storage(format!("cannot open `{display}`: {e}"));
        check_scheme(url)?;
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(storage)?;
            // One plain connection first: the pool retries a refused connection until its
            // acquire timeout and then reports only "pool timed out", hiding the cause.
            let probe = tokio::time::timeout(
                Duration::from_secs(30),
                sqlx::ConnectOptions::connect(&options),
            )
            .await
            .map_err(|_| {
                CloudError::Storage(format!(
                    "cannot open `{display}`: no answer from the server within 30 s"
                ))
            })?
            .map_err(storage)?;
            let _ = sqlx::Connection::close(probe).await;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(storage)?;
            Backend::Postgres(pool)
        } else {
            let options = if url.starts_with("sqlite:") {
                SqliteConnectOptions::from_str(url).map_err(storage)?
            } else {
                SqliteConnectOptions::new().filename(url)
            };
            if create {
                if let Some(parent) = sqlite_file(url)?
                    .as_deref()
                    .and_then(std::path::Path::parent)
                {
                    if !parent.as_os_str().is_empty() && !parent.is_dir() {
                        return Err(CloudError::Storage(format!(
                            "cannot open `{display}`: the folder `{}` does not exist",
                            absolute(parent).display()
                        )));
                    }
                }
            }
            let file = sqlite_file(url)?;
            if let Some(path) = &file {
                private_database_file(path, create)?;
            }
            let options = options
                .create_if_missing(create)
                // 8 KiB pages measured best for the random-insert dedupe index (only takes
                // effect when the file is created).
                .page_size(8192)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                // 64 MiB of page cache: the dedupe index takes random inserts, and a small
                // cache spills dirty pages to the WAL mid-transaction.
                .pragma("cache_size", "-65536")
                .pragma("temp_store", "memory")
                // Checkpoint every ~40 MiB of WAL rather than every 4 MiB: fewer copies of the
                // index pages that every batch dirties.
                .pragma("wal_autocheckpoint", "10000");
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                // A writer handed back while sqlx still counts a transaction (a failed ROLLBACK
                // or COMMIT, as after a full disk) is closed, never reused: on it the next
                // `begin` would open a savepoint inside a transaction that no one commits, and
                // acknowledged writes would never reach the file (walk-F F-1). The query first
                // waits for the rollback a dropped transaction queued, so the count is current.
                .after_release(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("SELECT 1").execute(&mut *conn).await?;
                        Ok(!sqlx::Connection::is_in_transaction(conn))
                    })
                })
                .connect_with(options.clone())
                .await
                .map_err(storage)?;
            let read = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(storage)?;
            // SQLite gives `-wal` and `-shm` the main file's mode; files left from before (or
            // made by another tool) are tightened like the main file.
            if let Some(path) = &file {
                for suffix in ["-wal", "-shm"] {
                    let mut side = path.clone().into_os_string();
                    side.push(suffix);
                    tighten(std::path::Path::new(&side))?;
                }
            }
            Backend::Sqlite { write, read }
        };
        Ok(Store {
            backend,
            display,
            group: Default::default(),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The database URL without its password.
    pub fn display(&self) -> &str {
        &self.display
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { write, read, .. } => {
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Apply every migration not yet recorded, in order, in one transaction.
    pub async fn migrate(&self) -> CloudResult<()> {
        const TABLE: &str =
            "CREATE TABLE IF NOT EXISTS lf_schema_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";
        let postgres = matches!(self.backend, Backend::Postgres(_));
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if postgres {
                // Serialise concurrent starts; released at commit.
                sqlx::query("SELECT pg_advisory_xact_lock(7364021)")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(TABLE).execute(&mut *tx).await?;
            let done: Vec<i64> = sqlx::query("SELECT version FROM lf_schema_migrations")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<_, _>>()?;
            for m in migrations::MIGRATIONS {
                if done.contains(&m.version) {
                    continue;
                }
                let statements = if postgres { m.postgres } else { m.sqlite };
                for statement in statements {
                    sqlx::query(*statement).execute(&mut *tx).await.map_err(|e| {
                        CloudError::Storage(format!(
                            "migration {} ({}) failed: {e}",
                            m.version, m.name
                        ))
                    })?;
                }
                if m.version == migrations::REKEY_VERSION {
                    rekey_events!(&mut tx);
                }
                sqlx::query(
                    "INSERT INTO lf_schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
                )
                .bind(m.version)
                .bind(m.name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The schema versions applied, ascending.
    pub async fn schema_versions(&self) -> CloudResult<Vec<i64>> {
        with_reader!(self, pool => {
            let rows = sqlx::query("SELECT version FROM lf_schema_migrations ORDER BY version")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| r.try_get::<i64, _>(0).map_err(CloudError::from))
                .collect()
        })
    }

    // -----------------------------------------------------------------------------------------
    // Workspaces and enrollment codes

    /// Create the workspace row when missing.
    pub async fn ensure_workspace(&self, workspace_id: &str) -> CloudResult<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO workspaces (workspace_id, created_at_ms) VALUES ($1, $2) \
                 ON CONFLICT (workspace_id) DO NOTHING",
            )
            .bind(workspace_id)
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Store a new one-time code (only its hash) for `workspace_id`, or for one of its phone
    /// devices when `device_id` is given (the token's subject is then `<ws>:phone:<device>`).
    pub async fn create_enrollment_code(
        &self,
        workspace_id: &str,
        device_id: Option<&str>,
        code_hash: &str,
        expires_at_ms: i64,
    ) -> CloudResult<()> {
        self.ensure_workspace(workspace_id).await?;
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO enrollment_codes (code_hash, workspace_id, created_at_ms, expires_at_ms, device_id) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(code_hash)
            .bind(workspace_id)
            .bind(now_ms())
            .bind(expires_at_ms)
            .bind(device_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Spend a code: exactly one caller (across processes) gets the workspace id (and the
    /// device id of a phone code). A phone code never changes the workspace's sidecar URL.
    pub async fn redeem_enrollment_code(
        &self,
        code_hash: &str,
        sidecar_url: Option<&str>,
    ) -> CloudResult<Result<(String, Option<String>), RedeemRefusal>> {
        let now = now_ms();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let spent = sqlx::query(
                "UPDATE enrollment_codes SET used_at_ms = $1 \
                 WHERE code_hash = $2 AND used_at_ms IS NULL AND expires_at_ms > $1 \
                 RETURNING workspace_id, device_id",
            )
            .bind(now)
            .bind(code_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = spent else {
                let found = sqlx::query(
                    "SELECT used_at_ms, expires_at_ms FROM enrollment_codes WHERE code_hash = $1",
                )
                .bind(code_hash)
                .fetch_optional(&mut *tx)
                .await?;
                tx.rollback().await?;
                return Ok(Err(match found {
                    None => RedeemRefusal::Unknown,
                    Some(r) if r.try_get::<Option<i64>, _>(0)?.is_some() => RedeemRefusal::AlreadyUsed,
                    Some(_) => RedeemRefusal::Expired,
                }));
            };
            let workspace_id: String = row.try_get(0)?;
            let device_id: Option<String> = row.try_get(1)?;
            let sidecar_url = if device_id.is_some() { None } else { sidecar_url };
            sqlx::query(
                "INSERT INTO workspaces (workspace_id, sidecar_url, created_at_ms, enrolled_at_ms) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (workspace_id) DO UPDATE SET \
                 sidecar_url = COALESCE(excluded.sidecar_url, workspaces.sidecar_url), \
                 enrolled_at_ms = excluded.enrolled_at_ms",
            )
            .bind(&workspace_id)
            .bind(sidecar_url)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok((workspace_id, device_id)))
        })
    }

    /// The workspace an enrollment code (by hash) was made for, spent or not (for the audit line
    /// of a refused exchange).
    pub async fn code_workspace(&self, code_hash: &str) -> CloudResult<Option<String>> {
        with_reader!(self, pool => {
            let row = sqlx::query("SELECT workspace_id FROM enrollment_codes WHERE code_hash = $1")
                .bind(code_hash)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(r.try_get(0)?)),
                None => Ok(None),
            }
        })
    }

    pub async fn workspace(&self, workspace_id: &str) -> CloudResult<Option<WorkspaceRow>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT workspace_id, sidecar_url, created_at_ms, enrolled_at_ms, policies, config \
                 FROM workspaces WHERE workspace_id = $1",
            )
            .bind(workspace_id)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(WorkspaceRow {
                    workspace_id: r.try_get(0)?,
                    sidecar_url: r.try_get(1)?,
                    created_at_ms: r.try_get(2)?,
                    enrolled_at_ms: r.try_get(3)?,
                    policies: r.try_get(4)?,
                    config: r.try_get(5)?,
                })),
            }
        })
    }

    /// Every workspace that has a sidecar URL (the registry refresher's list).
    pub async fn workspaces_with_sidecar(&self) -> CloudResult<Vec<(String, String)>> {
        with_reader!(self, pool => {
            let rows = sqlx::query(
                "SELECT workspace_id, sidecar_url FROM workspaces WHERE sidecar_url IS NOT NULL \
                 ORDER BY workspace_id",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    /// Set (or clear) where the control plane reaches a workspace's sidecar.
    pub async fn set_sidecar_url(&self, workspace_id: &str, url: Option<&str>) -> CloudResult<()> {
        self.ensure_workspace(workspace_id).await?;
        with_pool!(self, pool => {
            sqlx::query("UPDATE workspaces SET sidecar_url = $1 WHERE workspace_id = $2")
                .bind(url)
                .bind(workspace_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Set the workspace's v1 policy set (`/api/v1/policies`).
    pub async fn set_policies(&self, workspace_id: &str, policies: &Value) -> CloudResult<()> {
        self.ensure_workspace(workspace_id).await?;
        with_pool!(self, pool => {
            sqlx::query("UPDATE workspaces SET policies = $1 WHERE workspace_id = $2")
                .bind(policies.to_string())
                .bind(workspace_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    // -----------------------------------------------------------------------------------------
    // Tokens and revocation

    pub async fn record_token(&self, t: &TokenRecord) -> CloudResult<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO tokens (jti, workspace_id, subject, scope, purpose, issued_at_ms, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (jti) DO NOTHING",
            )
            .bind(&t.jti)
            .bind(&t.workspace_id)
            .bind(&t.subject)
            .bind(&t.scope)
            .bind(&t.purpose)
            .bind(t.issued_at_ms)
            .bind(t.expires_at_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn tokens(&self, workspace_id: &str) -> CloudResult<Vec<TokenRecord>> {
        with_reader!(self, pool => {
            let rows = sqlx::query(
                "SELECT jti, workspace_id, subject, scope, purpose, issued_at_ms, expires_at_ms \
                 FROM tokens WHERE workspace_id = $1 ORDER BY issued_at_ms, jti",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(TokenRecord {
                        jti: r.try_get(0)?,
                        workspace_id: r.try_get(1)?,
                        subject: r.try_get(2)?,
                        scope: r.try_get(3)?,
                        purpose: r.try_get(4)?,
                        issued_at_ms: r.try_get(5)?,
                        expires_at_ms: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }

    /// Revoke one token issued for `workspace_id`; `false` when it already was. A `jti` this
    /// control plane never issued for the workspace (a typo, another workspace's token) is
    /// refused rather than listed: the operator would believe a token revoked that is not.
    /// The workspace a token was issued for (`lumenflow-cloud-operator` for operator tokens).
    pub async fn token_workspace(&self, jti: &str) -> CloudResult<Option<String>> {
        with_reader!(self, pool => {
            let row = sqlx::query("SELECT workspace_id FROM tokens WHERE jti = $1")
                .bind(jti)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(r.try_get(0)?)),
            }
        })
    }

    pub async fn revoke(
        &self,
        workspace_id: &str,
        jti: &str,
        reason: Option<&str>,
    ) -> CloudResult<bool> {
        let issued = with_pool!(self, pool => {
            sqlx::query("SELECT 1 FROM tokens WHERE jti = $1 AND workspace_id = $2")
                .bind(jti)
                .bind(workspace_id)
                .fetch_optional(pool)
                .await?
                .is_some()
        });
        if !issued {
            return Err(CloudError::NotFound(format!(
                "no token with jti `{jti}` was issued for `{workspace_id}`; nothing was revoked"
            )));
        }
        with_pool!(self, pool => {
            let done = sqlx::query(
                "INSERT INTO revocations (jti, workspace_id, reason, revoked_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(workspace_id)
            .bind(reason)
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Revoke every token issued for a workspace that has not expired. Returns how many.
    pub async fn revoke_workspace(
        &self,
        workspace_id: &str,
        reason: Option<&str>,
    ) -> CloudResult<u64> {
        let now = now_ms();
        with_pool!(self, pool => {
            let done = sqlx::query(
                "INSERT INTO revocations (jti, workspace_id, reason, revoked_at_ms) \
                 SELECT jti, workspace_id, $2, $3 FROM tokens WHERE workspace_id = $1 AND expires_at_ms > $3 \
                 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(workspace_id)
            .bind(reason)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    pub async fn is_revoked(&self, jti: &str) -> CloudResult<bool> {
        with_reader!(self, pool => {
            let row = sqlx::query("SELECT 1 FROM revocations WHERE jti = $1")
                .bind(jti)
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        })
    }

    pub async fn revoked_jtis(&self, workspace_id: &str) -> CloudResult<Vec<String>> {
        with_reader!(self, pool => {
            let rows = sqlx::query("SELECT jti FROM revocations WHERE workspace_id = $1 ORDER BY jti")
                .bind(workspace_id)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| r.try_get(0).map_err(CloudError::from)).collect()
        })
    }

    // -----------------------------------------------------------------------------------------
    // Devices (ENR-04)

    /// Register (or rename) a phone device.
    pub async fn add_device(
        &self,
        workspace_id: &str,
        device_id: &str,
        name: &str,
    ) -> CloudResult<DeviceRow> {
        self.ensure_workspace(workspace_id).await?;
        let now = now_ms();
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO devices (workspace_id, device_id, name, registered_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (workspace_id, device_id) DO UPDATE SET name = excluded.name",
            )
            .bind(workspace_id)
            .bind(device_id)
            .bind(name)
            .bind(now)
            .execute(pool)
            .await?;
            Ok::<(), CloudError>(())
        })?;
        self.devices(workspace_id)
            .await?
            .into_iter()
            .find(|d| d.device_id == device_id)
            .ok_or_else(|| {
                CloudError::Storage(format!("device `{device_id}` vanished after insert"))
            })
    }

    pub async fn device_name(
        &self,
        workspace_id: &str,
        device_id: &str,
    ) -> CloudResult<Option<String>> {
        with_reader!(self, pool => {
            let row = sqlx::query("SELECT name FROM devices WHERE workspace_id = $1 AND device_id = $2")
                .bind(workspace_id)
                .bind(device_id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(r.try_get(0)?)),
                None => Ok(None),
            }
        })
    }

    pub async fn devices(&self, workspace_id: &str) -> CloudResult<Vec<DeviceRow>> {
        with_reader!(self, pool => {
            let rows = sqlx::query(
                "SELECT workspace_id, device_id, name, registered_at_ms FROM devices \
                 WHERE workspace_id = $1 ORDER BY device_id",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(DeviceRow {
                        workspace_id: r.try_get(0)?,
                        device_id: r.try_get(1)?,
                        name: r.try_get(2)?,
                        registered_at_ms: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    /// Whether a workspace's sidecar may relay events `from` phone `device_id`: the phone must
    /// be known to the workspace (registered with `device add`, or enrolled with a phone code)
    /// and not cut off (every token issued to it revoked, as for a lost phone).
    pub async fn phone_standing(
        &self,
        workspace_id: &str,
        device_id: &str,
    ) -> CloudResult<PhoneStanding> {
        let subject = format!("{workspace_id}:phone:{device_id}");
        let (registered, issued, revoked) = with_reader!(self, pool => {
            let registered = sqlx::query(
                "SELECT 1 FROM devices WHERE workspace_id = $1 AND device_id = $2",
            )
            .bind(workspace_id)
            .bind(device_id)
            .fetch_optional(pool)
            .await?
            .is_some();
            let row = sqlx::query(
                "SELECT COUNT(t.jti), COUNT(r.jti) FROM tokens t \
                 LEFT JOIN revocations r ON r.jti = t.jti \
                 WHERE t.workspace_id = $1 AND t.subject = $2",
            )
            .bind(workspace_id)
            .bind(&subject)
            .fetch_one(pool)
            .await?;
            let issued: i64 = row.try_get(0)?;
            let revoked: i64 = row.try_get(1)?;
            Ok::<_, CloudError>((registered, issued, revoked))
        })?;
        Ok(if issued > 0 && revoked == issued {
            PhoneStanding::Revoked
        } else if registered || issued > 0 {
            PhoneStanding::Known
        } else {
            PhoneStanding::Unknown
        })
    }

    // -----------------------------------------------------------------------------------------
    // Tool registry

    /// Store a fetched listing (replacing the previous one).
    pub async fn put_tools(
        &self,
        workspace_id: &str,
        listing: &str,
        etag: Option<&str>,
    ) -> CloudResult<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO tool_registry (workspace_id, listing, etag, fetched_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (workspace_id) DO UPDATE SET listing = excluded.listing, etag = excluded.etag, \
                 fetched_at_ms = excluded.fetched_at_ms",
            )
            .bind(workspace_id)
            .bind(listing)
            .bind(etag)
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Record that the stored listing is still current (a `304 Not Modified`).
    pub async fn touch_tools(&self, workspace_id: &str) -> CloudResult<()> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE tool_registry SET fetched_at_ms = $1 WHERE workspace_id = $2")
                .bind(now_ms())
                .bind(workspace_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    pub async fn tools(&self, workspace_id: &str) -> CloudResult<Option<ToolsRow>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT listing, etag, fetched_at_ms FROM tool_registry WHERE workspace_id = $1",
            )
            .bind(workspace_id)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(ToolsRow {
                    listing: r.try_get(0)?,
                    etag: r.try_get(1)?,
                    fetched_at_ms: r.try_get(2)?,
                })),
            }
        })
    }

    // -----------------------------------------------------------------------------------------
    // Events

    /// Store a batch in one transaction together with its audit line; duplicates (by
    /// `(workspace_id, event_id)`, within the batch or against stored events) are skipped and
    /// counted. Returns only after commit.
    pub async fn ingest(
        &self,
        rows: &[EventRow],
        audit: &AuditEntry,
    ) -> CloudResult<IngestOutcome> {
        self.ingest_owned(rows.to_vec(), audit).await
    }

    /// [`Store::ingest`] taking the rows (the server's path: a batch is not copied to be queued
    /// for its group commit).
    pub async fn ingest_owned(
        &self,
        rows: Vec<EventRow>,
        audit: &AuditEntry,
    ) -> CloudResult<IngestOutcome> {
        let pool = match &self.backend {
            Backend::Sqlite { write, .. } => group_ingest::Pool::Sqlite(write.clone()),
            Backend::Postgres(pool) => group_ingest::Pool::Postgres(pool.clone()),
        };
        self.group.ingest(pool, rows, audit).await
    }

    /// The same rows inserted the plainest way (one multi-row `INSERT` per chunk, one
    /// transaction per call): the baselines `bench/ingest.sh` compares ingest against.
    ///
    /// Without `indexed`, into a bare table (`bench_raw_events`, no index at all). With it, into
    /// `bench_raw_indexed`, which has the indexes `events` has (the 16-byte unique dedupe key and
    /// the time index), with a plain `INSERT`: no `ON CONFLICT`, no `RETURNING`, no run spans, no
    /// audit line, no HTTP or validation.
    pub async fn raw_insert_for_bench(&self, rows: &[EventRow], indexed: bool) -> CloudResult<()> {
        let postgres = matches!(self.backend, Backend::Postgres(_));
        let blob = if postgres { "BYTEA" } else { "BLOB" };
        let table = if indexed {
            "bench_raw_indexed"
        } else {
            "bench_raw_events"
        };
        let mut setup = vec![format!(
            "CREATE TABLE IF NOT EXISTS {table} (workspace_id TEXT NOT NULL, \
             schema_version BIGINT NOT NULL, event_id TEXT NOT NULL, kind TEXT NOT NULL, \
             ts_ms BIGINT NOT NULL, timestamp TEXT NOT NULL, channel TEXT NOT NULL, seq BIGINT, \
             run_id TEXT, raw TEXT NOT NULL, received_at_ms BIGINT NOT NULL, dedupe_key {blob})"
        )];
        if indexed {
            setup.push(format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {table}_key ON {table} (dedupe_key)"
            ));
            setup.push(format!(
                "CREATE INDEX IF NOT EXISTS {table}_ts ON {table} (workspace_id, ts_ms, seq)"
            ));
        }
        let keys: Vec<Option<Vec<u8>>> = rows
            .iter()
            .map(|r| indexed.then(|| r.dedupe_key()))
            .collect();
        let received = now_ms();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for statement in &setup {
                sqlx::query(sqlx::AssertSqlSafe(statement.clone())).execute(&mut *tx).await?;
            }
            for (chunk, keys) in rows.chunks(INSERT_CHUNK).zip(keys.chunks(INSERT_CHUNK)) {
                let mut qb = QueryBuilder::new(format!(
                    "INSERT INTO {table} (workspace_id, schema_version, event_id, kind, ts_ms, \
                     timestamp, channel, seq, run_id, raw, received_at_ms, dedupe_key) ",
                    table = table
                ));
                qb.push_values(chunk.iter().zip(keys), |mut b, (r, key)| {
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
                        .push_bind(received)
                        .push_bind(key.as_deref());
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Events matching `q`, ordered by timestamp, `seq` and cursor, with the next page's cursor.
    pub async fn query_events(
        &self,
        q: &EventQuery,
    ) -> CloudResult<(Vec<StoredEvent>, Option<EventCursor>)> {
        let limit = q.limit.clamp(1, 10_000);
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT id, workspace_id, kind, ts_ms, seq, channel, run_id, raw FROM events WHERE workspace_id = ",
            );
            qb.push_bind(q.workspace_id.as_str());
            if let Some(kind) = &q.kind {
                qb.push(" AND kind = ").push_bind(kind.as_str());
            }
            if let Some(run) = &q.run_id {
                // The run's time span bounds the scan of the time index.
                qb.push(" AND run_id = ").push_bind(run.as_str());
                qb.push(" AND ts_ms >= (SELECT first_ts_ms FROM event_runs WHERE workspace_id = ")
                    .push_bind(q.workspace_id.as_str())
                    .push(" AND run_id = ")
                    .push_bind(run.as_str())
                    .push(")");
                qb.push(" AND ts_ms <= (SELECT last_ts_ms FROM event_runs WHERE workspace_id = ")
                    .push_bind(q.workspace_id.as_str())
                    .push(" AND run_id = ")
                    .push_bind(run.as_str())
                    .push(")");
            }
            if let Some(channel) = &q.channel {
                qb.push(" AND channel = ").push_bind(channel.as_str());
            }
            if let Some(since) = q.since_ms {
                qb.push(" AND ts_ms >= ").push_bind(since);
            }
            if let Some(until) = q.until_ms {
                qb.push(" AND ts_ms <= ").push_bind(until);
            }
            if let Some(c) = q.after {
                qb.push(" AND (ts_ms > ").push_bind(c.ts_ms);
                qb.push(" OR (ts_ms = ").push_bind(c.ts_ms);
                qb.push(" AND (COALESCE(seq, -1) > ").push_bind(c.seq);
                qb.push(" OR (COALESCE(seq, -1) = ").push_bind(c.seq);
                qb.push(" AND id > ").push_bind(c.id);
                qb.push("))))");
            }
            qb.push(" ORDER BY ts_ms, COALESCE(seq, -1), id LIMIT ").push_bind(i64::from(limit) + 1);
            let rows = qb.build().fetch_all(pool).await?;
            let mut events = Vec::with_capacity(rows.len());
            for r in &rows {
                let raw: String = r.try_get(7)?;
                events.push(StoredEvent {
                    cursor: r.try_get(0)?,
                    workspace_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    ts_ms: r.try_get(3)?,
                    seq: r.try_get(4)?,
                    channel: r.try_get(5)?,
                    run_id: r.try_get(6)?,
                    event: parse_json(&raw, "event")?,
                });
            }
            let next = if events.len() > limit as usize {
                events.truncate(limit as usize);
                events.last().map(|e| EventCursor {
                    ts_ms: e.ts_ms,
                    seq: e.seq.unwrap_or(-1),
                    id: e.cursor,
                })
            } else {
                None
            };
            Ok((events, next))
        })
    }

    /// Every event of a run, in any workspace unless one is given (replay).
    pub async fn run_events(
        &self,
        run_id: &str,
        workspace_id: Option<&str>,
    ) -> CloudResult<Vec<StoredEvent>> {
        with_reader!(self, pool => {
            // Each run's span (per workspace) bounds a scan of the time index.
            let mut qb = QueryBuilder::new(
                "SELECT e.id, e.workspace_id, e.kind, e.ts_ms, e.seq, e.channel, e.run_id, e.raw \
                 FROM event_runs r JOIN events e ON e.workspace_id = r.workspace_id \
                 AND e.ts_ms >= r.first_ts_ms AND e.ts_ms <= r.last_ts_ms AND e.run_id = r.run_id \
                 WHERE r.run_id = ",
            );
            qb.push_bind(run_id);
            if let Some(ws) = workspace_id {
                qb.push(" AND r.workspace_id = ").push_bind(ws);
            }
            qb.push(" ORDER BY e.ts_ms, COALESCE(e.seq, -1), e.id LIMIT 10000");
            let rows = qb.build().fetch_all(pool).await?;
            stored_events!(rows)
        })
    }

    /// The events that say what a run was (for the Runs list): its turn's start and end and
    /// its tool calls, at most `limit`, in time order. Bounded like [`Store::run_events`] by the
    /// run's span, and by kind, so a long run costs no more than a short one.
    pub async fn run_headline_events(
        &self,
        run_id: &str,
        workspace_id: &str,
        limit: u32,
    ) -> CloudResult<Vec<StoredEvent>> {
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT e.id, e.workspace_id, e.kind, e.ts_ms, e.seq, e.channel, e.run_id, e.raw \
                 FROM event_runs r JOIN events e ON e.workspace_id = r.workspace_id \
                 AND e.ts_ms >= r.first_ts_ms AND e.ts_ms <= r.last_ts_ms AND e.run_id = r.run_id \
                 WHERE e.kind IN ('agent-runtime:turn_started', 'agent-runtime:turn_completed', \
                 'agent-runtime:turn_aborted', 'agent-runtime:tool_called') AND r.run_id = ",
            );
            qb.push_bind(run_id);
            qb.push(" AND r.workspace_id = ").push_bind(workspace_id);
            qb.push(" ORDER BY e.ts_ms, COALESCE(e.seq, -1), e.id LIMIT ")
                .push_bind(i64::from(limit.clamp(1, 1_000)));
            let rows = qb.build().fetch_all(pool).await?;
            stored_events!(rows)
        })
    }

    /// A workspace's events stored after cursor `after_id`, in cursor order (the live stream's
    /// tail). Within a workspace cursors follow commit order (one writer at a time), so a tail
    /// never skips an event committed late.
    pub async fn events_after(
        &self,
        workspace_id: &str,
        kind: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> CloudResult<Vec<StoredEvent>> {
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT id, workspace_id, kind, ts_ms, seq, channel, run_id, raw FROM events WHERE workspace_id = ",
            );
            qb.push_bind(workspace_id);
            qb.push(" AND id > ").push_bind(after_id);
            if let Some(k) = kind {
                push_kind_filter!(qb, k);
            }
            qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit.clamp(1, 10_000)));
            let rows = qb.build().fetch_all(pool).await?;
            stored_events!(rows)
        })
    }

    /// The newest cursor of a workspace (0 when it has no events).
    pub async fn last_event_id(&self, workspace_id: &str) -> CloudResult<i64> {
        with_reader!(self, pool => {
            let row = sqlx::query("SELECT MAX(id) FROM events WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_one(pool)
                .await?;
            Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
        })
    }

    /// How many events a workspace has.
    pub async fn count_events(&self, workspace_id: &str) -> CloudResult<i64> {
        with_reader!(self, pool => {
            let row = sqlx::query("SELECT COUNT(*) FROM events WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_one(pool)
                .await?;
            Ok(row.try_get(0)?)
        })
    }

    // -----------------------------------------------------------------------------------------
    // Approvals

    pub async fn insert_approval(
        &self,
        record: &ApprovalRecord,
        expires_at_ms: Option<i64>,
    ) -> CloudResult<()> {
        self.insert_approval_by(record, expires_at_ms, None).await
    }

    /// Store a new approval requested by the authenticated `requested_by`.
    pub async fn insert_approval_by(
        &self,
        record: &ApprovalRecord,
        expires_at_ms: Option<i64>,
        requested_by: Option<&str>,
    ) -> CloudResult<()> {
        let text = serde_json::to_string(record)
            .map_err(|e| CloudError::Internal(format!("cannot encode the approval: {e}")))?;
        let requested = Timestamp::parse(&record.requested_at)
            .map(|t| t.unix_millis())
            .unwrap_or_else(|_| now_ms());
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO approvals (approval_id, workspace_id, approval_type, status, record, \
                 requested_at_ms, expires_at_ms, requested_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&record.approval_id)
            .bind(&record.workspace_id)
            .bind(&record.approval_type)
            .bind(&record.status)
            .bind(text)
            .bind(requested)
            .bind(expires_at_ms)
            .bind(requested_by)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// One approval as it reads now (a pending one past expiry reads `expired`).
    pub async fn approval(&self, approval_id: &str) -> CloudResult<Option<ApprovalRecord>> {
        let now = now_ms();
        with_reader!(self, pool => {
            let row = sqlx::query("SELECT status, record, expires_at_ms FROM approvals WHERE approval_id = $1")
                .bind(approval_id)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(read_approval(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, now)?)),
            }
        })
    }

    /// Decide a pending, unexpired approval. Exactly one decision wins across processes.
    #[allow(clippy::too_many_arguments)]
    pub async fn resolve_approval(
        &self,
        workspace_id: &str,
        approval_id: &str,
        decision: &str,
        reason: Option<&str>,
        reviewer_id: Option<&str>,
        reviewer_type: Option<&str>,
    ) -> CloudResult<Result<ApprovalRecord, ResolveRefusal>> {
        let decider = Decider {
            subject: reviewer_id,
            reviewer_id,
            reviewer_type,
            stated: None,
        };
        self.resolve_approval_by(workspace_id, approval_id, decision, reason, decider)
            .await
    }

    /// Decide a pending, unexpired approval as `decider`. Exactly one decision wins across
    /// processes.
    pub async fn resolve_approval_by(
        &self,
        workspace_id: &str,
        approval_id: &str,
        decision: &str,
        reason: Option<&str>,
        decider: Decider<'_>,
    ) -> CloudResult<Result<ApprovalRecord, ResolveRefusal>> {
        let (reviewer_id, reviewer_type) = (decider.reviewer_id, decider.reviewer_type);
        let now = now_ms();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Claim the row first (a write, so SQLite takes its lock before reading).
            let claimed = sqlx::query(
                "UPDATE approvals SET status = $1, decided_by = $5, stated_reviewer = $6, \
                 decided_at_ms = $4 WHERE approval_id = $2 AND workspace_id = $3 \
                 AND status = 'pending' AND (expires_at_ms IS NULL OR expires_at_ms > $4) RETURNING record",
            )
            .bind(decision)
            .bind(approval_id)
            .bind(workspace_id)
            .bind(now)
            .bind(decider.subject)
            .bind(decider.stated)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = claimed else {
                let current = sqlx::query(
                    "SELECT status, expires_at_ms FROM approvals WHERE approval_id = $1 AND workspace_id = $2",
                )
                .bind(approval_id)
                .bind(workspace_id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.rollback().await?;
                return Ok(Err(match current {
                    None => ResolveRefusal::NotFound,
                    Some(r) => ResolveRefusal::AlreadyDecided(effective_status(
                        &r.try_get::<String, _>(0)?,
                        r.try_get(1)?,
                        now,
                    )),
                }));
            };
            let text: String = row.try_get(0)?;
            let mut record: ApprovalRecord = serde_json::from_str(&text)
                .map_err(|e| CloudError::Storage(format!("stored approval is not valid: {e}")))?;
            record.status = decision.to_string();
            record.decision_reason = reason.map(str::to_string);
            record.reviewer_id = reviewer_id.map(str::to_string);
            record.reviewer_type = reviewer_type.map(str::to_string);
            record.decided_at = Some(Timestamp::from_unix_millis(now).to_rfc3339());
            let text = serde_json::to_string(&record)
                .map_err(|e| CloudError::Internal(format!("cannot encode the approval: {e}")))?;
            sqlx::query("UPDATE approvals SET record = $1 WHERE approval_id = $2")
                .bind(text)
                .bind(approval_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Ok(record))
        })
    }

    /// The original's list: filter by status (as read now) and type, oldest first, paged by an
    /// opaque cursor.
    pub async fn list_approvals(&self, input: &ApprovalListInput) -> CloudResult<ApprovalList> {
        let now = now_ms();
        let limit = i64::from(input.limit.unwrap_or(50).clamp(1, 500));
        let after: i64 = match &input.cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| {
                CloudError::BadRequest(format!("`cursor` `{c}` is not a cursor this server issued"))
            })?,
        };
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new("SELECT seq, status, record, expires_at_ms FROM approvals WHERE workspace_id = ");
            qb.push_bind(input.workspace_id.as_str());
            qb.push(" AND seq > ").push_bind(after);
            match input.status.as_deref() {
                None => {}
                Some("pending") => {
                    qb.push(" AND status = 'pending' AND (expires_at_ms IS NULL OR expires_at_ms > ")
                        .push_bind(now)
                        .push(")");
                }
                Some("expired") => {
                    qb.push(" AND (status = 'expired' OR (status = 'pending' AND expires_at_ms <= ")
                        .push_bind(now)
                        .push("))");
                }
                Some(other) => {
                    qb.push(" AND status = ").push_bind(other);
                }
            }
            if let Some(t) = &input.approval_type {
                qb.push(" AND approval_type = ").push_bind(t.as_str());
            }
            qb.push(" ORDER BY seq LIMIT ").push_bind(limit + 1);
            let rows = qb.build().fetch_all(pool).await?;
            let mut approvals = Vec::new();
            let mut last = None;
            for r in rows.iter().take(limit as usize) {
                last = Some(r.try_get::<i64, _>(0)?);
                approvals.push(read_approval(r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, now)?);
            }
            let next_cursor = if rows.len() as i64 > limit { last.map(|s| s.to_string()) } else { None };
            Ok(ApprovalList { approvals, next_cursor })
        })
    }

    // -----------------------------------------------------------------------------------------
    // Sealed receipts

    /// Store a sealed receipt; sealing the same receipt again keeps (and returns) the first seal.
    pub async fn put_receipt(&self, r: &ReceiptRow) -> CloudResult<ReceiptRow> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO receipts (receipt_id, workspace_id, run_id, content_digest, receipt, seal, sealed_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (receipt_id) DO NOTHING",
            )
            .bind(&r.receipt_id)
            .bind(&r.workspace_id)
            .bind(r.run_id.as_deref())
            .bind(&r.content_digest)
            .bind(r.receipt.to_string())
            .bind(r.seal.to_string())
            .bind(r.sealed_at_ms)
            .execute(pool)
            .await?;
            Ok::<(), CloudError>(())
        })?;
        self.receipt(&r.receipt_id).await?.ok_or_else(|| {
            CloudError::Storage(format!("receipt `{}` vanished after insert", r.receipt_id))
        })
    }

    pub async fn receipt(&self, receipt_id: &str) -> CloudResult<Option<ReceiptRow>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT receipt_id, workspace_id, run_id, content_digest, receipt, seal, sealed_at_ms \
                 FROM receipts WHERE receipt_id = $1",
            )
            .bind(receipt_id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| read_receipt(&r)).transpose()
        })
    }

    pub async fn run_receipts(&self, run_id: &str) -> CloudResult<Vec<ReceiptRow>> {
        with_reader!(self, pool => {
            let rows = sqlx::query(
                "SELECT receipt_id, workspace_id, run_id, content_digest, receipt, seal, sealed_at_ms \
                 FROM receipts WHERE run_id = $1 ORDER BY sealed_at_ms, receipt_id",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(read_receipt).collect()
        })
    }

    /// Approvals whose subject or context names `run_id` (replay).
    pub async fn run_approvals(&self, run_id: &str) -> CloudResult<Vec<ApprovalRecord>> {
        let now = now_ms();
        let needle = format!("%\"run_id\":{}%", Value::String(run_id.to_string()));
        with_reader!(self, pool => {
            let rows = sqlx::query(
                "SELECT status, record, expires_at_ms FROM approvals WHERE record LIKE $1 ORDER BY seq",
            )
            .bind(needle)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| read_approval(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, now))
                .collect()
        })
    }

    // -----------------------------------------------------------------------------------------
    // Audit log (ENR-05) and v1 sync records

    pub async fn audit(&self, entry: &AuditEntry) -> CloudResult<()> {
        with_pool!(self, pool => {
            insert_audit!(pool, entry);
            Ok(())
        })
    }

    /// The newest `limit` audit lines of a workspace (all workspaces when `None`), newest last.
    pub async fn audit_log(
        &self,
        workspace_id: Option<&str>,
        limit: u32,
    ) -> CloudResult<Vec<AuditRecord>> {
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT id, at_ms, workspace_id, subject, device_name, action, outcome, code, detail FROM audit_log",
            );
            if let Some(ws) = workspace_id {
                qb.push(" WHERE workspace_id = ").push_bind(ws);
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit.clamp(1, 10_000)));
            let rows = qb.build().fetch_all(pool).await?;
            let mut out = rows
                .iter()
                .map(|r| {
                    Ok(AuditRecord {
                        id: r.try_get(0)?,
                        at_ms: r.try_get(1)?,
                        entry: AuditEntry {
                            workspace_id: r.try_get(2)?,
                            subject: r.try_get(3)?,
                            device_name: r.try_get(4)?,
                            action: r.try_get(5)?,
                            outcome: r.try_get(6)?,
                            code: r.try_get(7)?,
                            detail: r.try_get(8)?,
                        },
                    })
                })
                .collect::<CloudResult<Vec<_>>>()?;
            out.reverse();
            Ok(out)
        })
    }

    /// Store v1 telemetry records or evidence refs verbatim; returns how many.
    pub async fn put_sync_records(
        &self,
        workspace_id: &str,
        kind: &str,
        items: &[Value],
    ) -> CloudResult<u64> {
        let now = now_ms();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for item in items {
                sqlx::query("INSERT INTO sync_records (workspace_id, kind, raw, received_at_ms) VALUES ($1, $2, $3, $4)")
                    .bind(workspace_id)
                    .bind(kind)
                    .bind(item.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(items.len() as u64)
        })
    }
}

fn read_approval(
    status: String,
    record: String,
    expires_at_ms: Option<i64>,
    now: i64,
) -> CloudResult<ApprovalRecord> {
    let mut r: ApprovalRecord = serde_json::from_str(&record)
        .map_err(|e| CloudError::Storage(format!("stored approval is not valid: {e}")))?;
    r.status = effective_status(&status, expires_at_ms, now);
    Ok(r)
}

fn read_receipt<R: Row>(r: &R) -> CloudResult<ReceiptRow>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let receipt: String = r.try_get(4)?;
    let seal: String = r.try_get(5)?;
    Ok(ReceiptRow {
        receipt_id: r.try_get(0)?,
        workspace_id: r.try_get(1)?,
        run_id: r.try_get(2)?,
        content_digest: r.try_get(3)?,
        receipt: parse_json(&receipt, "receipt")?,
        seal: parse_json(&seal, "seal")?,
        sealed_at_ms: r.try_get(6)?,
    })
}

/// `url` without a password (`postgres://user:secret@host` -> `postgres://user:***@host`).
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((creds, host)) => match creds.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod rekey_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn migration_4_rewrites_legacy_keys_and_dedupe_still_holds() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("cloud.db").display());
        let store = Store::open(&url).await.expect("open");
        let t = 1_800_000_000_000i64;
        // e1: a v2 row whose id is not its content id; e2: a v1 row (its id covers the time).
        let row = |id: &str, ms: i64, time_keyed: bool| EventRow {
            workspace_id: "ws".into(),
            schema_version: if id == "e2" { 1 } else { 2 },
            event_id: id.into(),
            kind: "acme:a".into(),
            ts_ms: ms,
            timestamp: Timestamp::from_unix_millis(ms).to_rfc3339(),
            channel: "ws".into(),
            seq: None,
            run_id: None,
            raw: "{}".into(),
            time_keyed,
        };
        let audit = AuditEntry {
            subject: "ws".into(),
            action: "events.push".into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        };
        store
            .ingest(&[row("e1", t, false), row("e2", t + 1, true)], &audit)
            .await
            .expect("ingest");
        // Put the rows back in the version-3 form: 16-byte keys, migration 4 not yet run.
        let Backend::Sqlite { write, .. } = &store.backend else {
            unreachable!()
        };
        for id in ["e1", "e2"] {
            let mut legacy = row(id, t, false).dedupe_key();
            legacy.remove(0);
            assert_eq!(legacy.len(), 16);
            sqlx::query("UPDATE events SET dedupe_key = $1 WHERE event_id = $2")
                .bind(legacy)
                .bind(id)
                .execute(write)
                .await
                .expect("legacy key");
        }
        sqlx::query("DELETE FROM lf_schema_migrations WHERE version = 4")
            .execute(write)
            .await
            .expect("forget 4");
        store.migrate().await.expect("migrate");
        let lengths: Vec<i64> = sqlx::query("SELECT length(dedupe_key) FROM events ORDER BY id")
            .fetch_all(write)
            .await
            .expect("keys")
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        assert_eq!(
            lengths,
            vec![17, 25],
            "hash-only for e1, time-led for the v1 row"
        );
        let again = store
            .ingest(&[row("e1", t, false), row("e2", t + 1, true)], &audit)
            .await
            .expect("ingest");
        assert_eq!(again.duplicates, 2, "re-sent events are still duplicates");
    }
}
