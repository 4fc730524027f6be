//! `lumenflow cloud ...`: run the control plane and administer it.
//!
//! `serve` runs the HTTP API. The administration commands (`enroll-code`, `operator-token`,
//! `device`, `approvals`, `revoke`, `audit`) talk to the control plane's database directly
//! (`--database`, default the same SQLite file `serve` uses, or env `LUMENFLOW_CLOUD_DATABASE`),
//! so they work with no server running and from any host that reaches a shared PostgreSQL. The
//! same operations exist over HTTP for a console (operator token): `POST /api/v1/enroll-codes`,
//! `POST /api/v1/devices`, `POST /api/v1/approvals/resolve`, `POST /api/v1/revoke`.
//!
//! The workspace id is given with `--workspace-id WS`, or with the global `--workspace WS`
//! (which elsewhere names a workspace folder; here it is read as the id).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use lumenflow_cloud::auth::{Authority, OPERATOR_TTL_SECONDS};
use lumenflow_cloud::server::{self, ServeConfig};
use lumenflow_cloud::store::{AuditEntry, Decider, ResolveRefusal, Store, DEFAULT_DATABASE};
use lumenflow_cloud::CloudError;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::wire::{ApprovalListInput, ApprovalRecord};
use serde_json::{json, Value};

use super::Context;
use crate::output::{print_ok, CliError};

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// The control plane's database: `sqlite://PATH` (default `sqlite://lumenflow-cloud.db`) or
    /// `postgres://...`.
    #[arg(long, env = "LUMENFLOW_CLOUD_DATABASE", value_name = "URL")]
    database: Option<String>,
}

impl DbArgs {
    fn url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string())
    }
}

#[derive(Args, Debug, Clone)]
pub struct WorkspaceIdArg {
    /// The workspace id, as enrolled (or the global `--workspace WS`, which under `cloud` is
    /// also the id, not a folder).
    #[arg(long = "workspace-id", value_name = "WS")]
    workspace_id: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CloudCommand {
    /// Run the control plane's HTTP API (prints `listening on http://ADDR` when ready).
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
        listen: SocketAddr,
        #[command(flatten)]
        db: DbArgs,
        /// The Ed25519 signing key (created 0600 on first use; default beside the database).
        /// A missing key beside a database that has issued tokens is refused, see `--new-key`.
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
        /// Create a new signing key although the database holds tokens and codes signed by the
        /// missing one: starting over on purpose (every workspace must enroll again).
        #[arg(long)]
        new_key: bool,
        /// The base URL workspaces reach this server at (default `http://<listen>`).
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// Seconds between refreshes of every workspace's tool listing (0: only on demand).
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        registry_refresh: u64,
    },
    /// Create or migrate the database and create the signing key, then exit.
    ///
    /// What `serve` does on start, for setting a control plane up before its first start
    /// (provisioning scripts, migrations as a deploy step). Safe to run again.
    Init {
        #[command(flatten)]
        db: DbArgs,
        /// The Ed25519 signing key (created 0600 when missing and the database has issued
        /// nothing yet; default beside the database).
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
        /// Create a new signing key although the database holds tokens and codes signed by the
        /// missing one: starting over on purpose (every workspace must enroll again).
        #[arg(long)]
        new_key: bool,
    },
    /// Create a one-time enrollment code for a workspace (printed once; only its hash is kept).
    EnrollCode {
        #[command(flatten)]
        ws: WorkspaceIdArg,
        /// Make the code enroll a phone device of the workspace (subject `<ws>:phone:<ID>`).
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Lifetime of the code in seconds.
        #[arg(long, default_value_t = 86_400, value_name = "SECS")]
        ttl: i64,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Mint an operator token (scope `operator`) with the control plane's key.
    OperatorToken {
        /// Who the token is for (its subject).
        #[arg(long, default_value = "operator")]
        name: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = OPERATOR_TTL_SECONDS, value_name = "SECS")]
        ttl: i64,
        #[command(flatten)]
        db: DbArgs,
        /// The signing key (default beside the database, as `serve`).
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
    },
    /// Register and list phone devices (ENR-04).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// List and decide approvals.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Manage the web console's operators (who may log in at `/`).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Show and pin the key each workspace's evidence bundles must be signed with.
    ///
    /// The first verified bundle a workspace uploads pins its signer (trust on first use); a
    /// later bundle signed by another key is stored but flagged `signer_changed`. Pin a key here
    /// before the first upload, or to accept a new signer once the workspace confirmed it.
    #[command(subcommand)]
    Signer(SignerCommand),
    /// Revoke one token (`--jti`) or every token of a workspace (`--all`).
    ///
    /// Workspace tokens take effect at the sidecar when it next pulls the list; the control
    /// plane refuses a revoked token at once. An operator token (see `lumenflow --json cloud
    /// operator-token`, field `jti`) is revoked with `--jti` alone.
    Revoke {
        #[command(flatten)]
        ws: WorkspaceIdArg,
        /// The id (`jti` claim) of the token to revoke. Without a workspace, the workspace it
        /// was issued for is looked up (operator tokens included).
        #[arg(long, conflicts_with = "all", value_name = "JTI")]
        jti: Option<String>,
        /// Revoke every token issued for the workspace.
        #[arg(long)]
        all: bool,
        /// Why, recorded with the revocation.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Copy a running SQLite control plane safely: the database (`VACUUM INTO`, a consistent
    /// snapshot) to `--out FILE`, and its signing key to `FILE.key` (both 0600).
    ///
    /// Restore both together (as `lumenflow-cloud.db` and `lumenflow-cloud.key`, or with
    /// `--database` and `--key`): without the key every token and enrollment is refused.
    Backup {
        /// The backup file to create (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        db: DbArgs,
        /// The signing key to copy (default beside the database, as `serve`).
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
    },
    /// Show the audit log (newest last): time, workspace, subject, device, action, outcome,
    /// code and detail.
    Audit {
        #[command(flatten)]
        ws: WorkspaceIdArg,
        /// How many of the newest lines to show (at most 10 000).
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Register (or rename) a phone device of a workspace.
    Add {
        #[command(flatten)]
        ws: WorkspaceIdArg,
        #[arg(long, value_name = "ID")]
        device: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a workspace's devices.
    List {
        #[command(flatten)]
        ws: WorkspaceIdArg,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// List approvals of a workspace (default: pending ones).
    List {
        #[command(flatten)]
        ws: WorkspaceIdArg,
        /// pending, approved, rejected, expired, or all.
        #[arg(long, default_value = "pending")]
        status: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Approve a pending approval (audited as `cli.approvals.decide`, subject `os:<user>`).
    Approve {
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// Reject a pending approval (audited as `cli.approvals.decide`, subject `os:<user>`).
    Reject {
        #[command(flatten)]
        decision: DecisionArgs,
    },
}

/// What `approvals approve|reject` take.
#[derive(Args, Debug)]
pub struct DecisionArgs {
    /// The approval's id (`apr_...`, from `approvals list` or the console).
    id: String,
    /// Why: recorded with the decision and shown in the console.
    #[arg(long)]
    reason: Option<String>,
    /// The reviewer to record as `reviewer_id` (default: the OS user, `os:<login>`). The audit
    /// line and the console always name the OS user who ran the command; a different reviewer
    /// is shown as stated.
    #[arg(long, value_name = "NAME")]
    reviewer: Option<String>,
    /// The approval's workspace: checked against the approval (ids are unique on their own).
    #[arg(long = "workspace-id", value_name = "WS")]
    workspace_id: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Subcommand, Debug)]
pub enum SignerCommand {
    /// Pin `--key-id` as the workspace's bundle signer (replacing any pin; audited as
    /// `cli.signer.pin`). Bundles uploaded afterwards are compared with it; bundles already
    /// stored keep the pin they were uploaded under. The workspace must exist (an enrollment
    /// code was issued for it), so a misspelled id is refused.
    Pin {
        #[command(flatten)]
        ws: WorkspaceIdArg,
        /// The signer's key id, `ed25519:<64 hex>` (a bundle manifest's `signer_key_id`, or
        /// what `lumenflow proof verify --pubkey KEY` prints).
        #[arg(long, value_name = "KEY_ID")]
        key_id: String,
        /// Why, recorded with the pin and in the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List pinned signers (of one workspace with `--workspace-id`).
    List {
        #[command(flatten)]
        ws: WorkspaceIdArg,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Add a console operator. The password is prompted for (without echo) on a terminal, or
    /// read from stdin with `--password-stdin`; never given as an argument.
    Add {
        /// The login name.
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List console operators.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a console operator and end its sessions.
    Remove {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Stop an operator from logging in (ends its sessions) without removing it.
    Disable {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Let a disabled operator log in again.
    Enable {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new("IO_ERROR", format!("cannot start the async runtime: {e}")))
}

fn cloud_error(e: CloudError) -> CliError {
    CliError::new(e.code(), e.to_string())
}

fn workspace_id(ctx: &Context, arg: &WorkspaceIdArg) -> Result<String, CliError> {
    let ws = arg
        .workspace_id
        .clone()
        .or_else(|| ctx.workspace.as_ref().map(|p| p.display().to_string()))
        .ok_or_else(|| CliError::new("INVALID_ARGUMENT", "name the workspace: `--workspace WS`"))?;
    lumenflow_contracts::identity::check_id(&ws).map_err(|reason| {
        CliError::new(
            "INVALID_ARGUMENT",
            format!("`{ws}` is not a workspace id: {reason}"),
        )
    })?;
    Ok(ws)
}

/// Run `f` on the database `serve` created (administration commands never create one), then
/// close it, so an SQLite database is checkpointed and its `-wal`/`-shm` files removed.
async fn with_store<T>(
    db: &DbArgs,
    f: impl AsyncFnOnce(&Store) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let store = Store::open_existing(&db.url()).await.map_err(cloud_error)?;
    let result = f(&store).await;
    store.close().await;
    result
}

/// Create `path` (it must not exist) readable by its owner only, with `bytes`.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn ts(ms: i64) -> String {
    Timestamp::from_unix_millis(ms).to_rfc3339()
}

pub fn run(ctx: &Context, command: CloudCommand) -> Result<(), CliError> {
    let rt = runtime()?;
    match command {
        CloudCommand::Serve {
            listen,
            db,
            key,
            new_key,
            public_url,
            registry_refresh,
        } => {
            let config = ServeConfig {
                listen,
                database: db.url(),
                key_path: key,
                public_url,
                registry_refresh: Duration::from_secs(registry_refresh),
                new_key,
            };
            // The server's warnings and storage errors go to stderr; without a subscriber
            // they were dropped and a failing disk left no trace on the server (walk-F F-1).
            super::conductor::init_logging();
            let database = config.database.clone();
            rt.block_on(server::serve(
                config,
                |addr| {
                    use std::io::Write;
                    // Ignored when stdout is gone: the server runs on without its reader.
                    let _ = writeln!(
                        std::io::stdout(),
                        "lumenflow cloud listening on http://{addr}"
                    );
                    eprintln!("database: {}", redact(&database));
                    let _ = std::io::stdout().flush();
                },
                super::shutdown_signal(),
            ))
            .map_err(cloud_error)?;
            eprintln!("lumenflow cloud stopped");
            Ok(())
        }
        CloudCommand::Init { db, key, new_key } => {
            let url = db.url();
            let key_path = key.unwrap_or_else(|| server::default_key_path(&url));
            let backend = rt.block_on(async {
                let store = Store::open(&url).await.map_err(cloud_error)?;
                let backend = store.backend_name();
                let key = Authority::load_or_create_for(&key_path, &store, new_key).await;
                store.close().await;
                key.map_err(cloud_error)?;
                Ok::<_, CliError>(backend)
            })?;
            print_ok(
                ctx.json,
                &json!({"database": redact(&url), "backend": backend,
                        "key": key_path.display().to_string()}),
                &format!(
                    "database ready: {} ({backend})\nsigning key: {}\n",
                    redact(&url),
                    key_path.display()
                ),
            );
            Ok(())
        }
        CloudCommand::EnrollCode {
            ws,
            device,
            ttl,
            db,
        } => {
            let ws = workspace_id(ctx, &ws)?;
            let issued = rt.block_on(with_store(&db, async |store| {
                server::issue_enrollment_code(store, &ws, device.as_deref(), Some(ttl))
                    .await
                    .map_err(cloud_error)
            }))?;
            let code = issued.get("code").and_then(Value::as_str).unwrap_or("");
            let expires = issued
                .get("expires_at")
                .and_then(Value::as_str)
                .unwrap_or("");
            print_ok(
                ctx.json,
                &issued,
                &format!(
                    "enrollment code for workspace `{ws}` (single use, expires {expires}):\n{code}\n\
                     run in the workspace: lumenflow enroll --control-plane URL --code {code}\n"
                ),
            );
            Ok(())
        }
        CloudCommand::OperatorToken { name, ttl, db, key } => {
            let key_path = key.unwrap_or_else(|| server::default_key_path(&db.url()));
            let (token, claims) = rt.block_on(with_store(&db, async |store| {
                let authority = Authority::load(&key_path).map_err(cloud_error)?;
                authority
                    .mint_operator_token(store, &name, ttl)
                    .await
                    .map_err(cloud_error)
            }))?;
            // The token is the output: stdout only, nothing else on it.
            print_ok(
                ctx.json,
                &json!({"token": token, "jti": claims.jti, "subject": claims.sub,
                        "expires_at": lumenflow_cloud::auth::rfc3339_seconds(claims.exp)}),
                &token,
            );
            Ok(())
        }
        CloudCommand::Device(DeviceCommand::Add {
            ws,
            device,
            name,
            db,
        }) => {
            let ws = workspace_id(ctx, &ws)?;
            lumenflow_contracts::identity::check_id(&device).map_err(|reason| {
                CliError::new("INVALID_ARGUMENT", format!("--device `{device}`: {reason}"))
            })?;
            if name.trim().is_empty() {
                return Err(CliError::new(
                    "INVALID_ARGUMENT",
                    "--name must not be empty",
                ));
            }
            let d = rt.block_on(with_store(&db, async |store| {
                store
                    .add_device(&ws, &device, name.trim())
                    .await
                    .map_err(cloud_error)
            }))?;
            print_ok(
                ctx.json,
                &json!({"workspace_id": d.workspace_id, "device_id": d.device_id, "name": d.name,
                        "registered_at": ts(d.registered_at_ms)}),
                &format!(
                    "device `{}` of workspace `{}` is `{}` (subject {}:phone:{})\n",
                    d.device_id, d.workspace_id, d.name, d.workspace_id, d.device_id
                ),
            );
            Ok(())
        }
        CloudCommand::Device(DeviceCommand::List { ws, db }) => {
            let ws = workspace_id(ctx, &ws)?;
            let devices = rt.block_on(with_store(&db, async |store| {
                store.devices(&ws).await.map_err(cloud_error)
            }))?;
            // A header line, so the tab-separated columns can be read without the source.
            let mut human = String::from("DEVICE\tNAME\tREGISTERED\n");
            for d in &devices {
                human.push_str(&format!(
                    "{}\t{}\t{}\n",
                    d.device_id,
                    d.name,
                    ts(d.registered_at_ms)
                ));
            }
            if devices.is_empty() {
                human = format!("no devices registered for `{ws}`\n");
            }
            let list: Vec<Value> = devices
                .iter()
                .map(|d| json!({"device_id": d.device_id, "name": d.name, "registered_at": ts(d.registered_at_ms)}))
                .collect();
            print_ok(
                ctx.json,
                &json!({"workspace_id": ws, "devices": list}),
                &human,
            );
            Ok(())
        }
        CloudCommand::Approvals(ApprovalsCommand::List {
            ws,
            status,
            limit,
            db,
        }) => {
            let ws = workspace_id(ctx, &ws)?;
            let status = match status.as_str() {
                "all" => None,
                "pending" | "approved" | "rejected" | "expired" => Some(status),
                other => {
                    return Err(CliError::new(
                        "INVALID_ARGUMENT",
                        format!("--status `{other}` is not one of pending, approved, rejected, expired, all"),
                    ))
                }
            };
            let list = rt.block_on(with_store(&db, async |store| {
                store
                    .list_approvals(&ApprovalListInput {
                        workspace_id: ws.clone(),
                        status,
                        approval_type: None,
                        limit: Some(limit),
                        cursor: None,
                    })
                    .await
                    .map_err(cloud_error)
            }))?;
            let mut human = String::from("APPROVAL\tSTATUS\tTYPE\tREQUESTED\tSUBJECT\n");
            for a in &list.approvals {
                human.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    a.approval_id, a.status, a.approval_type, a.requested_at, a.subject
                ));
            }
            if list.approvals.is_empty() {
                human = format!("no approvals for `{ws}`\n");
            }
            let value = serde_json::to_value(&list)
                .map_err(|e| CliError::new("INTERNAL_ERROR", e.to_string()))?;
            print_ok(ctx.json, &value, &human);
            Ok(())
        }
        CloudCommand::Approvals(ApprovalsCommand::Approve { decision }) => {
            decide(ctx, &rt, decision, "approved")
        }
        CloudCommand::Approvals(ApprovalsCommand::Reject { decision }) => {
            decide(ctx, &rt, decision, "rejected")
        }
        CloudCommand::Operator(command) => operator(ctx, &rt, command),
        CloudCommand::Signer(command) => signer(ctx, &rt, command),
        CloudCommand::Revoke {
            ws,
            jti,
            all,
            reason,
            db,
        } => {
            // What is missing first: with neither flag, "name the workspace" sent operators
            // after the wrong argument (walk-F F-13).
            if jti.is_none() && !all {
                return Err(CliError::new(
                    "INVALID_ARGUMENT",
                    "say what to revoke: `--jti JTI` (one token; its workspace is looked up) or \
                     `--all --workspace-id WS` (every token of a workspace)",
                ));
            }
            let named = match (&ws.workspace_id, &ctx.workspace) {
                (None, None) if jti.is_some() => None,
                _ => Some(workspace_id(ctx, &ws)?),
            };
            let mut ws = named.clone().unwrap_or_default();
            let revoked = rt.block_on(with_store(&db, async |store| match (jti, all) {
                (Some(jti), false) => {
                    if named.is_none() {
                        ws = store
                            .token_workspace(&jti)
                            .await
                            .map_err(cloud_error)?
                            .ok_or_else(|| {
                                CliError::new(
                                    "NOT_FOUND",
                                    format!(
                                        "no token with jti `{jti}` was issued; nothing was revoked"
                                    ),
                                )
                            })?;
                    }
                    store
                        .revoke(&ws, &jti, reason.as_deref())
                        .await
                        .map(u64::from)
                        .map_err(cloud_error)
                }
                (None, true) if named.is_none() => Err(CliError::new(
                    "INVALID_ARGUMENT",
                    "name the workspace: `--workspace-id WS`",
                )),
                (None, true) => store
                    .revoke_workspace(&ws, reason.as_deref())
                    .await
                    .map_err(cloud_error),
                _ => Err(CliError::new(
                    "INVALID_ARGUMENT",
                    "give exactly one of --jti JTI or --all",
                )),
            }))?;
            print_ok(
                ctx.json,
                &json!({"workspace_id": ws, "revoked": revoked}),
                &format!("revoked {revoked} token(s) of `{ws}`\n"),
            );
            Ok(())
        }
        CloudCommand::Backup { out, db, key } => {
            // Said first: a PostgreSQL URL would otherwise fail on a key file it never needed.
            let url = db.url();
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                return Err(CliError::new(
                    "BACKUP_UNSUPPORTED",
                    "`cloud backup` copies an SQLite control plane; back up PostgreSQL with \
                     `pg_dump` and keep the signing key file beside the dump",
                ));
            }
            let key_path = key.unwrap_or_else(|| server::default_key_path(&db.url()));
            let mut key_out = out.clone().into_os_string();
            key_out.push(".key");
            let key_out = PathBuf::from(key_out);
            // Checked before the database is copied: a backup without its key restores a
            // control plane whose every token is refused (walk-F F-3).
            let key_bytes = std::fs::read(&key_path).map_err(|e| {
                CliError::new(
                    "BACKUP_FAILED",
                    format!(
                        "cannot read the signing key `{}`: {e}; pass the key `serve` uses with \
                         `--key PATH`",
                        key_path.display()
                    ),
                )
            })?;
            if key_out.exists() {
                return Err(CliError::new(
                    "BACKUP_FAILED",
                    format!(
                        "`{}` already exists: name a new file for the backup",
                        key_out.display()
                    ),
                ));
            }
            rt.block_on(with_store(&db, async |store| {
                store.backup_into(&out).await.map_err(cloud_error)
            }))?;
            write_private(&key_out, &key_bytes).map_err(|e| {
                CliError::new(
                    "BACKUP_FAILED",
                    format!("cannot write the key copy `{}`: {e}", key_out.display()),
                )
            })?;
            print_ok(
                ctx.json,
                &json!({"database": out.display().to_string(),
                        "key": key_out.display().to_string()}),
                &format!(
                    "database copied to {}\nsigning key copied to {} (a secret: keep it with the \
                     copy)\n",
                    out.display(),
                    key_out.display()
                ),
            );
            Ok(())
        }
        CloudCommand::Audit { ws, limit, db } => {
            let ws = match (&ws.workspace_id, &ctx.workspace) {
                (None, None) => None,
                _ => Some(workspace_id(ctx, &ws)?),
            };
            let lines = rt.block_on(with_store(&db, async |store| {
                store
                    .audit_log(ws.as_deref(), limit)
                    .await
                    .map_err(cloud_error)
            }))?;
            let mut human = String::new();
            let mut list = Vec::new();
            for r in &lines {
                let e = &r.entry;
                human.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}{}\t{}\n",
                    ts(r.at_ms),
                    e.workspace_id.as_deref().unwrap_or("-"),
                    e.subject,
                    e.device_name.as_deref().unwrap_or("-"),
                    e.action,
                    e.outcome,
                    e.code
                        .as_deref()
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default(),
                    // One line per entry: a detail never breaks the columns.
                    e.detail
                        .as_deref()
                        .unwrap_or("-")
                        .replace(['\n', '\t'], " ")
                ));
                list.push(json!({"at": ts(r.at_ms), "workspace_id": e.workspace_id,
                                 "subject": e.subject, "device_name": e.device_name,
                                 "action": e.action, "outcome": e.outcome, "code": e.code,
                                 "detail": e.detail}));
            }
            // Silence looked like success for a mistyped id (walk-F F-13).
            if lines.is_empty() {
                human = match &ws {
                    Some(w) => format!(
                        "no audit lines for workspace `{w}` (is the id right? without \
                         `--workspace-id` every workspace is listed)\n"
                    ),
                    None => "no audit lines yet\n".to_string(),
                };
            }
            print_ok(ctx.json, &json!({"entries": list}), &human);
            Ok(())
        }
    }
}

/// Who runs this process, as the audit subject of a decision made on the database directly:
fn decide(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    args: DecisionArgs,
    decision: &str,
) -> Result<(), CliError> {
    let DecisionArgs {
        id,
        reason,
        reviewer,
        workspace_id: expected_ws,
        db,
    } = args;
    let (id, reviewer, db) = (id.as_str(), reviewer.as_deref(), &db);
    if let Some(ws) = &expected_ws {
        lumenflow_contracts::identity::check_id(ws).map_err(|reason| {
            CliError::new(
                "INVALID_ARGUMENT",
                format!("`{ws}` is not a workspace id: {reason}"),
            )
        })?;
    }
    let subject = super::os_subject();
    let reviewer = reviewer.map(str::trim).filter(|r| !r.is_empty());
    let stated = reviewer.filter(|r| *r != subject);
    let record: ApprovalRecord = rt.block_on(with_store(db, async |store| {
        let mut entry = AuditEntry {
            subject: subject.clone(),
            action: "cli.approvals.decide".into(),
            outcome: "ok".into(),
            detail: Some(match stated {
                Some(r) => format!("approval {id} {decision} (reviewer {r})"),
                None => format!("approval {id} {decision}"),
            }),
            ..AuditEntry::default()
        };
        let result = async {
            let current = store
                .approval(id)
                .await
                .map_err(cloud_error)?
                .ok_or_else(|| {
                    CliError::new("NOT_FOUND", format!("approval `{id}` does not exist"))
                })?;
            entry.workspace_id = Some(current.workspace_id.clone());
            if let Some(ws) = expected_ws
                .as_deref()
                .filter(|ws| *ws != current.workspace_id)
            {
                return Err(CliError::new(
                    "NOT_FOUND",
                    format!("approval `{id}` does not exist in workspace `{ws}`"),
                ));
            }
            match store
                .resolve_approval_by(
                    &current.workspace_id,
                    id,
                    decision,
                    reason.as_deref(),
                    Decider {
                        subject: Some(&subject),
                        reviewer_id: Some(reviewer.unwrap_or(&subject)),
                        reviewer_type: Some("user"),
                        stated,
                    },
                )
                .await
                .map_err(cloud_error)?
            {
                Ok(r) => Ok(r),
                Err(ResolveRefusal::NotFound) => Err(CliError::new(
                    "NOT_FOUND",
                    format!("approval `{id}` does not exist"),
                )),
                Err(ResolveRefusal::AlreadyDecided(s)) => Err(CliError::new(
                    "CONFLICT",
                    format!("approval `{id}` is already {s}"),
                )),
            }
        }
        .await;
        if let Err(e) = &result {
            entry.outcome = "refused".into();
            entry.code = Some(e.code.to_string());
        }
        // A decision that cannot be audited is reported as a failure, as on the HTTP API.
        store.audit(&entry).await.map_err(cloud_error)?;
        result
    }))?;
    let value = serde_json::to_value(&record)
        .map_err(|e| CliError::new("INTERNAL_ERROR", e.to_string()))?;
    print_ok(
        ctx.json,
        &value,
        &format!("approval `{id}` {decision} (recorded as decided by {subject})\n"),
    );
    Ok(())
}

/// `ed25519:` and 64 lowercase hex digits: the form of every `signer_key_id`.
fn check_key_id(key_id: &str) -> Result<(), CliError> {
    let hex = key_id.strip_prefix("ed25519:").unwrap_or("");
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Ok(());
    }
    Err(CliError::new(
        "INVALID_ARGUMENT",
        format!(
            "`--key-id` `{}` is not a key id: expected `ed25519:` and 64 lowercase hex digits \
             (a bundle manifest's `signer_key_id`)",
            key_id.chars().take(100).collect::<String>()
        ),
    ))
}

fn signer(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    command: SignerCommand,
) -> Result<(), CliError> {
    use lumenflow_cloud::store::bundles::{SignerPin, PIN_OPERATOR};
    match command {
        SignerCommand::Pin {
            ws,
            key_id,
            reason,
            db,
        } => {
            let ws = workspace_id(ctx, &ws)?;
            check_key_id(&key_id)?;
            let reason = reason
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty());
            let subject = super::os_subject();
            let pin = SignerPin {
                workspace_id: ws.clone(),
                key_id: key_id.clone(),
                source: PIN_OPERATOR.into(),
                pinned_by: subject.clone(),
                pinned_at_ms: Timestamp::now().unix_millis(),
                reason: reason.clone(),
            };
            let previous = rt.block_on(with_store(&db, async |store| {
                // A workspace exists once an enrollment code was issued for it; a pin for any
                // other id is most likely a typo, and it would leave the real workspace unpinned
                // while the operator believes it pinned (walk-G N4).
                if store.workspace(&ws).await.map_err(cloud_error)?.is_none() {
                    return Err(CliError::new(
                        "NOT_FOUND",
                        format!(
                            "`--workspace-id` `{ws}` is no workspace of this control plane \
                             (no enrollment code was ever issued for it): check the spelling, \
                             or issue the workspace's enrollment code first with `lumenflow \
                             cloud enroll-code --workspace-id {ws}`"
                        ),
                    ));
                }
                let previous = store.workspace_signer(&ws).await.map_err(cloud_error)?;
                let entry = AuditEntry {
                    workspace_id: Some(ws.clone()),
                    subject: subject.clone(),
                    action: "cli.signer.pin".into(),
                    outcome: "ok".into(),
                    detail: Some(format!(
                        "bundle signer {key_id} pinned (was {}){}",
                        previous.as_ref().map_or("none", |p| p.key_id.as_str()),
                        reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    )),
                    ..AuditEntry::default()
                };
                store.pin_signer(&pin, &entry).await.map_err(cloud_error)?;
                Ok(previous)
            }))?;
            print_ok(
                ctx.json,
                &json!({"workspace_id": ws, "key_id": key_id, "pinned_by": subject,
                        "previous_key_id": previous.as_ref().map(|p| p.key_id.clone())}),
                &format!(
                    "bundles of workspace `{ws}` must now be signed by {key_id} (was {}); \
                     recorded in the audit log as pinned by {subject}\n",
                    previous
                        .as_ref()
                        .map_or("not pinned", |p| p.key_id.as_str())
                ),
            );
            Ok(())
        }
        SignerCommand::List { ws, db } => {
            let ws = match (&ws.workspace_id, &ctx.workspace) {
                (None, None) => None,
                _ => Some(workspace_id(ctx, &ws)?),
            };
            let pins = rt.block_on(with_store(&db, async |store| {
                store
                    .workspace_signers(ws.as_deref())
                    .await
                    .map_err(cloud_error)
            }))?;
            let mut human = String::new();
            let mut list = Vec::new();
            for p in &pins {
                human.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    p.workspace_id,
                    p.key_id,
                    p.source,
                    p.pinned_by,
                    ts(p.pinned_at_ms)
                ));
                list.push(json!({"workspace_id": p.workspace_id, "key_id": p.key_id,
                                 "source": p.source, "pinned_by": p.pinned_by,
                                 "pinned_at": ts(p.pinned_at_ms), "reason": p.reason}));
            }
            if pins.is_empty() {
                human = match &ws {
                    Some(ws) => format!("no signer is pinned for workspace `{ws}`\n"),
                    None => "no signer is pinned for any workspace\n".into(),
                };
            }
            print_ok(ctx.json, &json!({"signers": list}), &human);
            Ok(())
        }
    }
}

/// The password of `operator add`: stdin's first line with `--password-stdin`, else a prompt
/// (twice, without echo) when stdin is a terminal. Never an argument: those end up in shell
/// history and `ps`.
fn read_new_password(from_stdin: bool) -> Result<String, CliError> {
    use std::io::{BufRead, IsTerminal};
    let io =
        |e: std::io::Error| CliError::new("IO_ERROR", format!("cannot read the password: {e}"));
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(io)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        return Ok(line.strip_suffix('\r').unwrap_or(line).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            "INVALID_ARGUMENT",
            "stdin is not a terminal: pass --password-stdin to read the password from it",
        ));
    }
    let first = rpassword::prompt_password("password: ").map_err(io)?;
    let again = rpassword::prompt_password("password (again): ").map_err(io)?;
    if first != again {
        return Err(CliError::new(
            "INVALID_ARGUMENT",
            "the two passwords differ; nothing was changed",
        ));
    }
    Ok(first)
}

fn check_operator_name(name: &str) -> Result<(), CliError> {
    use lumenflow_cloud::console::session::MAX_NAME_CHARS;
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(CliError::new(
            "INVALID_ARGUMENT",
            format!(
                "operator name `{name}` must be 1 to {MAX_NAME_CHARS} characters of letters, \
                 digits, `-`, `_`, `.` or `@`"
            ),
        ))
    }
}

fn operator(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    command: OperatorCommand,
) -> Result<(), CliError> {
    use lumenflow_cloud::console::password;
    match command {
        OperatorCommand::Add {
            name,
            password_stdin,
            db,
        } => {
            check_operator_name(&name)?;
            let secret = read_new_password(password_stdin)?;
            password::check_policy(&secret)
                .map_err(|e| CliError::new("INVALID_ARGUMENT", e.to_string()))?;
            let phc = password::hash(&secret).map_err(cloud_error)?;
            rt.block_on(with_store(&db, async |store| {
                store.add_operator(&name, &phc).await.map_err(cloud_error)
            }))?;
            print_ok(
                ctx.json,
                &json!({"name": name, "added": true}),
                &format!("operator `{name}` added; log in at the control plane's `/`\n"),
            );
            Ok(())
        }
        OperatorCommand::List { db } => {
            let now = lumenflow_cloud::store::now_ms();
            let rows = rt.block_on(with_store(&db, async |store| {
                let mut rows = Vec::new();
                for o in store.operators().await.map_err(cloud_error)? {
                    let sessions = store
                        .session_count(&o.name, now)
                        .await
                        .map_err(cloud_error)?;
                    rows.push((o, sessions));
                }
                Ok::<_, CliError>(rows)
            }))?;
            let mut human = String::new();
            let mut list = Vec::new();
            for (o, sessions) in &rows {
                let state = if o.disabled { "disabled" } else { "active" };
                human.push_str(&format!(
                    "{}\t{state}\tadded {}\t{sessions} session(s)\n",
                    o.name,
                    ts(o.created_at_ms)
                ));
                list.push(json!({"name": o.name, "disabled": o.disabled,
                                 "created_at": ts(o.created_at_ms), "sessions": sessions}));
            }
            if rows.is_empty() {
                human =
                    "no console operators (add one: lumenflow cloud operator add NAME)\n".into();
            }
            print_ok(ctx.json, &json!({"operators": list}), &human);
            Ok(())
        }
        OperatorCommand::Remove { name, db } => {
            let (existed, ended) = rt.block_on(with_store(&db, async |store| {
                store.remove_operator(&name).await.map_err(cloud_error)
            }))?;
            if !existed {
                return Err(CliError::new(
                    "NOT_FOUND",
                    format!("operator `{name}` does not exist"),
                ));
            }
            print_ok(
                ctx.json,
                &json!({"name": name, "removed": true, "sessions_ended": ended}),
                &format!("operator `{name}` removed; {ended} session(s) ended\n"),
            );
            Ok(())
        }
        OperatorCommand::Disable { name, db } => set_disabled(ctx, rt, &name, &db, true),
        OperatorCommand::Enable { name, db } => set_disabled(ctx, rt, &name, &db, false),
    }
}

fn set_disabled(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    name: &str,
    db: &DbArgs,
    disabled: bool,
) -> Result<(), CliError> {
    let found = rt.block_on(with_store(db, async |store| {
        store
            .set_operator_disabled(name, disabled)
            .await
            .map_err(cloud_error)
    }))?;
    if !found {
        return Err(CliError::new(
            "NOT_FOUND",
            format!("operator `{name}` does not exist"),
        ));
    }
    let what = if disabled {
        "disabled; its sessions ended"
    } else {
        "enabled"
    };
    print_ok(
        ctx.json,
        &json!({"name": name, "disabled": disabled}),
        &format!("operator `{name}` {what}\n"),
    );
    Ok(())
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((creds, host)) => match creds.rsplit_once(':') {
            Some((user, _)) if user.contains("://") && user.matches(':').count() == 1 => {
                format!("{user}:***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}
