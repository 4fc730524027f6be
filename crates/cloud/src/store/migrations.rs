//! Schema migrations, embedded per backend.
//!
//! Two choices in the `events` schema are about ingest speed. The dedupe key is a short
//! `dedupe_key` blob (the first 128 bits of SHA-256 of `workspace_id`, a NUL byte and `event_id`)
//! rather than the two text columns: a small key keeps the unique index (and the pages a batch
//! dirties) a third of the size. A collision would need about 2^64 events. Since version 4 the
//! key leads with the event's timestamp whenever the id covers it (see `dedupe_key`): event ids
//! are hashes, so a hash-only key put every insert on a random page of the index and a batch of
//! 1 000 rewrote hundreds of pages; events arriving in time order now append. And runs are found through
//! `event_runs` (each run's first and last timestamp, upserted once per run per batch) plus the
//! time index, instead of a second random-insert index on `run_id`.
//!
//! `sqlx::migrate!` needs sqlx's `macros` feature, which the workspace does not enable, so the
//! schema lives here as SQL text per backend and a small `lf_schema_migrations` table records which
//! versions ran. On PostgreSQL the whole upgrade runs under a transaction-scoped advisory lock, so
//! several control-plane processes starting at once apply each version exactly once.

/// One schema version: its number, a name and the statements of each backend.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static [&'static str],
    pub postgres: &'static [&'static str],
}

/// The version whose upgrade also rewrites stored dedupe keys (in Rust: the new key needs the
/// event's content id, which SQL cannot compute).
pub const REKEY_VERSION: i64 = 4;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "initial schema",
    sqlite: &[
        "CREATE TABLE workspaces (workspace_id TEXT PRIMARY KEY, sidecar_url TEXT, \
         created_at_ms BIGINT NOT NULL, enrolled_at_ms BIGINT, policies TEXT, config TEXT)",
        "CREATE TABLE enrollment_codes (code_hash TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, \
         created_at_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL, used_at_ms BIGINT, \
         device_id TEXT)",
        "CREATE TABLE tokens (jti TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, subject TEXT NOT NULL, \
         scope TEXT NOT NULL, purpose TEXT NOT NULL, issued_at_ms BIGINT NOT NULL, \
         expires_at_ms BIGINT NOT NULL)",
        "CREATE INDEX tokens_ws ON tokens (workspace_id)",
        "CREATE TABLE revocations (jti TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, reason TEXT, \
         revoked_at_ms BIGINT NOT NULL)",
        "CREATE INDEX revocations_ws ON revocations (workspace_id)",
        "CREATE TABLE devices (workspace_id TEXT NOT NULL, device_id TEXT NOT NULL, name TEXT NOT NULL, \
         registered_at_ms BIGINT NOT NULL, PRIMARY KEY (workspace_id, device_id))",
        "CREATE TABLE tool_registry (workspace_id TEXT PRIMARY KEY, listing TEXT NOT NULL, etag TEXT, \
         fetched_at_ms BIGINT NOT NULL)",
        "CREATE TABLE events (id INTEGER PRIMARY KEY, workspace_id TEXT NOT NULL, \
         schema_version BIGINT NOT NULL, event_id TEXT NOT NULL, kind TEXT NOT NULL, \
         ts_ms BIGINT NOT NULL, timestamp TEXT NOT NULL, channel TEXT NOT NULL, seq BIGINT, \
         run_id TEXT, raw TEXT NOT NULL, received_at_ms BIGINT NOT NULL, \
         dedupe_key BLOB NOT NULL UNIQUE)",
        "CREATE INDEX events_ws_ts ON events (workspace_id, ts_ms, seq, id)",
        "CREATE TABLE event_runs (workspace_id TEXT NOT NULL, run_id TEXT NOT NULL, \
         first_ts_ms BIGINT NOT NULL, last_ts_ms BIGINT NOT NULL, PRIMARY KEY (workspace_id, run_id))",
        "CREATE INDEX event_runs_run ON event_runs (run_id)",
        "CREATE TABLE approvals (seq INTEGER PRIMARY KEY AUTOINCREMENT, approval_id TEXT NOT NULL UNIQUE, \
         workspace_id TEXT NOT NULL, approval_type TEXT NOT NULL, status TEXT NOT NULL, \
         record TEXT NOT NULL, requested_at_ms BIGINT NOT NULL, expires_at_ms BIGINT)",
        "CREATE INDEX approvals_ws ON approvals (workspace_id, seq)",
        "CREATE TABLE receipts (receipt_id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, run_id TEXT, \
         content_digest TEXT NOT NULL, receipt TEXT NOT NULL, seal TEXT NOT NULL, \
         sealed_at_ms BIGINT NOT NULL)",
        "CREATE INDEX receipts_run ON receipts (workspace_id, run_id)",
        "CREATE TABLE audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms BIGINT NOT NULL, \
         workspace_id TEXT, subject TEXT NOT NULL, device_name TEXT, action TEXT NOT NULL, \
         outcome TEXT NOT NULL, code TEXT, detail TEXT)",
        "CREATE TABLE sync_records (id INTEGER PRIMARY KEY AUTOINCREMENT, workspace_id TEXT NOT NULL, \
         kind TEXT NOT NULL, raw TEXT NOT NULL, received_at_ms BIGINT NOT NULL)",
    ],
    postgres: &[
        "CREATE TABLE workspaces (workspace_id TEXT PRIMARY KEY, sidecar_url TEXT, \
         created_at_ms BIGINT NOT NULL, enrolled_at_ms BIGINT, policies TEXT, config TEXT)",
        "CREATE TABLE enrollment_codes (code_hash TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, \
         created_at_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL, used_at_ms BIGINT, \
         device_id TEXT)",
        "CREATE TABLE tokens (jti TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, subject TEXT NOT NULL, \
         scope TEXT NOT NULL, purpose TEXT NOT NULL, issued_at_ms BIGINT NOT NULL, \
         expires_at_ms BIGINT NOT NULL)",
        "CREATE INDEX tokens_ws ON tokens (workspace_id)",
        "CREATE TABLE revocations (jti TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, reason TEXT, \
         revoked_at_ms BIGINT NOT NULL)",
        "CREATE INDEX revocations_ws ON revocations (workspace_id)",
        "CREATE TABLE devices (workspace_id TEXT NOT NULL, device_id TEXT NOT NULL, name TEXT NOT NULL, \
         registered_at_ms BIGINT NOT NULL, PRIMARY KEY (workspace_id, device_id))",
        "CREATE TABLE tool_registry (workspace_id TEXT PRIMARY KEY, listing TEXT NOT NULL, etag TEXT, \
         fetched_at_ms BIGINT NOT NULL)",
        "CREATE TABLE events (id BIGSERIAL PRIMARY KEY, workspace_id TEXT NOT NULL, \
         schema_version BIGINT NOT NULL, event_id TEXT NOT NULL, kind TEXT NOT NULL, \
         ts_ms BIGINT NOT NULL, timestamp TEXT NOT NULL, channel TEXT NOT NULL, seq BIGINT, \
         run_id TEXT, raw TEXT NOT NULL, received_at_ms BIGINT NOT NULL, \
         dedupe_key BYTEA NOT NULL UNIQUE)",
        "CREATE INDEX events_ws_ts ON events (workspace_id, ts_ms, seq, id)",
        "CREATE TABLE event_runs (workspace_id TEXT NOT NULL, run_id TEXT NOT NULL, \
         first_ts_ms BIGINT NOT NULL, last_ts_ms BIGINT NOT NULL, PRIMARY KEY (workspace_id, run_id))",
        "CREATE INDEX event_runs_run ON event_runs (run_id)",
        "CREATE TABLE approvals (seq BIGSERIAL PRIMARY KEY, approval_id TEXT NOT NULL UNIQUE, \
         workspace_id TEXT NOT NULL, approval_type TEXT NOT NULL, status TEXT NOT NULL, \
         record TEXT NOT NULL, requested_at_ms BIGINT NOT NULL, expires_at_ms BIGINT)",
        "CREATE INDEX approvals_ws ON approvals (workspace_id, seq)",
        "CREATE TABLE receipts (receipt_id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, run_id TEXT, \
         content_digest TEXT NOT NULL, receipt TEXT NOT NULL, seal TEXT NOT NULL, \
         sealed_at_ms BIGINT NOT NULL)",
        "CREATE INDEX receipts_run ON receipts (workspace_id, run_id)",
        "CREATE TABLE audit_log (id BIGSERIAL PRIMARY KEY, at_ms BIGINT NOT NULL, \
         workspace_id TEXT, subject TEXT NOT NULL, device_name TEXT, action TEXT NOT NULL, \
         outcome TEXT NOT NULL, code TEXT, detail TEXT)",
        "CREATE TABLE sync_records (id BIGSERIAL PRIMARY KEY, workspace_id TEXT NOT NULL, \
         kind TEXT NOT NULL, raw TEXT NOT NULL, received_at_ms BIGINT NOT NULL)",
    ],
},
// The web console: operators log in with a password (argon2id PHC string) and hold a session
// cookie; only the SHA-256 of a session id is stored, so a copy of the database does not yield
// live sessions. `call_inputs` keeps the input of calls invoked through the control plane, so
// the approvals inbox can show the exact input behind an approval's `input_hash`.
Migration {
    version: 2,
    name: "console operators and sessions",
    sqlite: &[
        "CREATE TABLE operators (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, \
         created_at_ms BIGINT NOT NULL, disabled BOOLEAN NOT NULL DEFAULT FALSE)",
        "CREATE TABLE console_sessions (id_hash TEXT PRIMARY KEY, operator TEXT NOT NULL, \
         csrf_token TEXT NOT NULL, created_at_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL, \
         last_seen_ms BIGINT NOT NULL)",
        "CREATE INDEX console_sessions_operator ON console_sessions (operator)",
        "CREATE TABLE call_inputs (workspace_id TEXT NOT NULL, input_hash TEXT NOT NULL, \
         tool TEXT NOT NULL, input TEXT NOT NULL, recorded_at_ms BIGINT NOT NULL, \
         PRIMARY KEY (workspace_id, input_hash))",
    ],
    postgres: &[
        "CREATE TABLE operators (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, \
         created_at_ms BIGINT NOT NULL, disabled BOOLEAN NOT NULL DEFAULT FALSE)",
        "CREATE TABLE console_sessions (id_hash TEXT PRIMARY KEY, operator TEXT NOT NULL, \
         csrf_token TEXT NOT NULL, created_at_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL, \
         last_seen_ms BIGINT NOT NULL)",
        "CREATE INDEX console_sessions_operator ON console_sessions (operator)",
        "CREATE TABLE call_inputs (workspace_id TEXT NOT NULL, input_hash TEXT NOT NULL, \
         tool TEXT NOT NULL, input TEXT NOT NULL, recorded_at_ms BIGINT NOT NULL, \
         PRIMARY KEY (workspace_id, input_hash))",
    ],
},
// Runs in the console: a trusted-compute bundle uploaded by its workspace (every file, base64,
// with the verifier's four checks as found on upload; a failing bundle is kept, marked failed,
// because operators need to see failures), and the recovery requests operators sent to a
// workspace's sidecar with the sidecar's answer.
Migration {
    version: 3,
    name: "run bundles and recovery requests",
    sqlite: &[
        "CREATE TABLE run_bundles (workspace_id TEXT NOT NULL, run_id TEXT NOT NULL, \
         digest TEXT NOT NULL, files TEXT NOT NULL, total_bytes BIGINT NOT NULL, \
         passed BOOLEAN NOT NULL, checks TEXT NOT NULL, signer_key_id TEXT, \
         uploaded_by TEXT NOT NULL, uploaded_at_ms BIGINT NOT NULL, \
         PRIMARY KEY (workspace_id, run_id))",
        "CREATE INDEX run_bundles_run ON run_bundles (run_id)",
        "CREATE TABLE recovery_requests (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         workspace_id TEXT NOT NULL, turn_event_id TEXT NOT NULL, turn_id TEXT NOT NULL, \
         wu_id TEXT NOT NULL, reason TEXT, requested_by TEXT NOT NULL, \
         requested_at_ms BIGINT NOT NULL, event_id TEXT NOT NULL, outcome TEXT NOT NULL, \
         sidecar_status BIGINT, sidecar_answer TEXT)",
        "CREATE INDEX recovery_requests_turn ON recovery_requests (workspace_id, turn_event_id)",
    ],
    postgres: &[
        "CREATE TABLE run_bundles (workspace_id TEXT NOT NULL, run_id TEXT NOT NULL, \
         digest TEXT NOT NULL, files TEXT NOT NULL, total_bytes BIGINT NOT NULL, \
         passed BOOLEAN NOT NULL, checks TEXT NOT NULL, signer_key_id TEXT, \
         uploaded_by TEXT NOT NULL, uploaded_at_ms BIGINT NOT NULL, \
         PRIMARY KEY (workspace_id, run_id))",
        "CREATE INDEX run_bundles_run ON run_bundles (run_id)",
        "CREATE TABLE recovery_requests (id BIGSERIAL PRIMARY KEY, \
         workspace_id TEXT NOT NULL, turn_event_id TEXT NOT NULL, turn_id TEXT NOT NULL, \
         wu_id TEXT NOT NULL, reason TEXT, requested_by TEXT NOT NULL, \
         requested_at_ms BIGINT NOT NULL, event_id TEXT NOT NULL, outcome TEXT NOT NULL, \
         sidecar_status BIGINT, sidecar_answer TEXT)",
        "CREATE INDEX recovery_requests_turn ON recovery_requests (workspace_id, turn_event_id)",
    ],
},
    Migration {
        version: REKEY_VERSION,
        name: "time-ordered dedupe keys",
        sqlite: &[],
        postgres: &[],
    },    // Who acted, as authenticated: an approval's requester and decider are the subjects of the
    // requests that made them (`requested_by`, `decided_by`); a reviewer named in a body is kept
    // apart (`stated_reviewer`), never shown as the decider. `decided_at_ms` orders decided
    // approvals by decision. `invoked_by` and `invocations` remember which operator a forwarded
    // call was made for, since the sidecar only sees the control plane's workspace token. And
    // `sidecar_contact` keeps the last success and failure of reaching a workspace's sidecar, so
    // every page reads one connection state.
    Migration {
        version: 5,
        name: "attribution and sidecar contact",
        sqlite: &[
        "ALTER TABLE approvals ADD COLUMN requested_by TEXT",
        "ALTER TABLE approvals ADD COLUMN decided_by TEXT",
        "ALTER TABLE approvals ADD COLUMN stated_reviewer TEXT",
        "ALTER TABLE approvals ADD COLUMN decided_at_ms BIGINT",
        "CREATE INDEX approvals_decided ON approvals (decided_at_ms)",
        "ALTER TABLE call_inputs ADD COLUMN invoked_by TEXT",
        "CREATE TABLE invocations (workspace_id TEXT NOT NULL, receipt_id TEXT NOT NULL, \
         envelope_hash TEXT NOT NULL, tool TEXT NOT NULL, invoked_by TEXT NOT NULL, \
         at_ms BIGINT NOT NULL, PRIMARY KEY (workspace_id, receipt_id))",
        "CREATE INDEX invocations_envelope ON invocations (workspace_id, envelope_hash)",
        "CREATE TABLE sidecar_contact (workspace_id TEXT PRIMARY KEY, ok_at_ms BIGINT, \
         failed_at_ms BIGINT, error TEXT)",
        ],
        postgres: &[
        "ALTER TABLE approvals ADD COLUMN requested_by TEXT",
        "ALTER TABLE approvals ADD COLUMN decided_by TEXT",
        "ALTER TABLE approvals ADD COLUMN stated_reviewer TEXT",
        "ALTER TABLE approvals ADD COLUMN decided_at_ms BIGINT",
        "CREATE INDEX approvals_decided ON approvals (decided_at_ms)",
        "ALTER TABLE call_inputs ADD COLUMN invoked_by TEXT",
        "CREATE TABLE invocations (workspace_id TEXT NOT NULL, receipt_id TEXT NOT NULL, \
         envelope_hash TEXT NOT NULL, tool TEXT NOT NULL, invoked_by TEXT NOT NULL, \
         at_ms BIGINT NOT NULL, PRIMARY KEY (workspace_id, receipt_id))",
        "CREATE INDEX invocations_envelope ON invocations (workspace_id, envelope_hash)",
        "CREATE TABLE sidecar_contact (workspace_id TEXT PRIMARY KEY, ok_at_ms BIGINT, \
         failed_at_ms BIGINT, error TEXT)",
        ],
    },
    // Whose signature a workspace's bundles carry (walk-G F3): a bundle brings its own public
    // key, so "signed" alone proves nothing about who signed. `workspace_signers` pins one key
    // per workspace, on first use (the first verified bundle) or by an operator
    // (`lumenflow cloud signer pin`); `run_bundles.pinned_signer_key_id` keeps the pin as it was
    // when the bundle arrived, so a bundle signed by another key stays flagged as such even
    // after the pin moves.
    Migration {
        version: 6,
        name: "pinned bundle signers",
        sqlite: &[
        "CREATE TABLE workspace_signers (workspace_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, \
         source TEXT NOT NULL, pinned_by TEXT NOT NULL, pinned_at_ms BIGINT NOT NULL, \
         reason TEXT)",
        "ALTER TABLE run_bundles ADD COLUMN pinned_signer_key_id TEXT",
        ],
        postgres: &[
        "CREATE TABLE workspace_signers (workspace_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, \
         source TEXT NOT NULL, pinned_by TEXT NOT NULL, pinned_at_ms BIGINT NOT NULL, \
         reason TEXT)",
        "ALTER TABLE run_bundles ADD COLUMN pinned_signer_key_id TEXT",
        ],
    },
];
