//! `lumenflow enroll`, `token mint`, `device add`, `sidecar` and `mcp`: the conductor commands.
//!
//! Glue only: arguments in, `lumenflow_conductor` calls, rendered results out. Tokens are
//! secrets: `enroll` never prints one, `token mint` prints it on stdout only (nothing on stderr,
//! nothing in a log line), and the sidecar's logs never contain one.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use lumenflow_conductor::control_plane::ControlPlane;
use lumenflow_conductor::delivery::DeliveryOptions;
use lumenflow_conductor::enrollment::{self, MintRequest};
use lumenflow_conductor::{Sidecar, SidecarOptions};
use lumenflow_contracts::identity::{Enrollment, SCOPE_EXECUTE_TURN, SCOPE_WORKSPACE};
use lumenflow_contracts::wire::EnrollRequest;
use lumenflow_kernel::dispatch::RuntimeOptions;
use lumenflow_proof::keys::KeyPair;
use serde_json::json;

use super::Context;
use crate::output::{print_ok, warn, CliError};

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// Mint the enrollment with this workspace's own Ed25519 key (no control plane).
    #[arg(long, conflicts_with_all = ["control_plane", "code"])]
    pub standalone: bool,
    /// Scopes of the standalone enrollment token, space separated (repeatable).
    #[arg(long, value_name = "SCOPES", requires = "standalone")]
    pub scope: Vec<String>,
    /// Lifetime of the standalone enrollment token (e.g. `30d`, `12h`).
    #[arg(long, value_name = "TTL", requires = "standalone")]
    pub ttl: Option<String>,
    /// The control plane's base URL.
    #[arg(long, value_name = "URL", requires = "code")]
    pub control_plane: Option<String>,
    /// The one-time enrollment code the control plane issued.
    #[arg(long, value_name = "CODE", requires = "control_plane")]
    pub code: Option<String>,
    /// Where the control plane can reach this workspace's sidecar.
    #[arg(long, value_name = "URL", requires = "control_plane")]
    pub sidecar_url: Option<String>,
    /// The workspace folder (default: --workspace, else the nearest workspace.yaml upwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Mint a scoped invocation token with the workspace key (standalone mode). Prints only the token.
    Mint {
        /// Space-separated scopes, e.g. "workspace agent:execute-turn" (repeatable).
        #[arg(long, value_name = "SCOPES", required = true)]
        scope: Vec<String>,
        /// The subject: the workspace id (default) or `<workspace_id>:phone:<device_id>`.
        #[arg(long)]
        subject: Option<String>,
        /// Lifetime, e.g. `1h`, `15m`, `7d` (default 1h).
        #[arg(long, value_name = "TTL")]
        ttl: Option<String>,
        /// The workspace folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Register (or rename) a phone device for `<workspace>:phone:<ID>` subjects.
    Add {
        /// The device id (letters, digits, `.`, `_`, `-`).
        id: String,
        /// A human-readable name, recorded with every command from the device.
        #[arg(long)]
        name: String,
        /// The workspace folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// List the registered devices.
    List {
        /// The workspace folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct SidecarArgs {
    /// Address to listen on (loopback; port 0 picks a free port, printed when ready).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7420")]
    pub listen: SocketAddr,
    /// The workspace folder.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// First retry delay of the outbox drain, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    pub backoff_base_ms: u64,
    /// Longest retry delay of the outbox drain, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000, hide = true)]
    pub backoff_cap_ms: u64,
    /// Events per drain request.
    #[arg(long, value_name = "N", default_value_t = 256, hide = true)]
    pub batch_size: usize,
    /// How often the revocation list is pulled, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, hide = true)]
    pub revocation_interval_ms: u64,
    /// Who decides approvals: `auto` (the control plane when enrolled with one, else the local
    /// store), `local` (`lumenflow approvals grant`) or `cloud`.
    #[arg(long, value_enum, default_value = "auto")]
    pub approvals: ApprovalsArg,
    /// Seconds a call that needs a control-plane approval waits for the operator's decision
    /// before answering 403 APPROVAL_REQUIRED with the pending approval id (0: answer at once;
    /// the same call retried after the grant runs, once).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub approval_wait: u64,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ApprovalsArg {
    Auto,
    Local,
    Cloud,
}

#[derive(Args, Debug)]
pub struct McpArgs {
    /// The workspace folder.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn workspace_dir(ctx: &Context, dir: Option<PathBuf>) -> Result<PathBuf, CliError> {
    match dir {
        Some(d) => Ok(d),
        None => ctx.workspace_dir(),
    }
}

fn workspace_id(dir: &std::path::Path) -> Result<String, CliError> {
    lumenflow_kernel::workspace::read_workspace(dir)
        .map(|doc| doc.spec.id)
        .map_err(CliError::from)
}

fn enrollment_error(e: enrollment::EnrollmentError) -> CliError {
    CliError::new(e.code(), e.to_string())
}

/// Every token scope that opens something in the workspace: the sidecar's own routes and the
/// scope each tool of its pinned packs asks for. `None` when the packs cannot be read (the
/// check is a typo guard; loading errors are reported where packs are used).
fn scopes_in_use(dir: &std::path::Path) -> Option<std::collections::BTreeSet<String>> {
    let doc = lumenflow_kernel::workspace::read_workspace(dir).ok()?;
    let loader =
        lumenflow_kernel::loader::PackLoader::for_workspace(&doc, lumenflow_packs::builtin_packs());
    let mut known: std::collections::BTreeSet<String> = [SCOPE_WORKSPACE, SCOPE_EXECUTE_TURN]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for pin in &doc.spec.packs {
        let pack = loader.load(&doc.spec, &pin.id).ok()?;
        for tool in &pack.manifest.manifest.tools {
            known.insert(lumenflow_conductor::auth::required_token_scope(tool).to_string());
        }
    }
    Some(known)
}

fn scopes(args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in args.iter().flat_map(|a| a.split_ascii_whitespace()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CliError::new(
                "RUNTIME_FAILED",
                format!("cannot start the async runtime: {e}"),
            )
        })
}

/// Logs go to stderr (stdout is for results, and the MCP channel under `lumenflow mcp`); level
/// from `LUMENFLOW_LOG`, `info` by default.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LUMENFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn describe(e: &Enrollment, path: &std::path::Path) -> (serde_json::Value, String) {
    let value = json!({
        "enrolled": true,
        "path": path.display().to_string(),
        "subject": e.subject,
        "workspace_id": e.workspace_id,
        "scopes": e.scopes,
        "issuer": e.issuer,
        "issued_at": e.issued_at,
        "expires_at": e.expires_at,
        "control_plane_endpoint": e.control_plane_endpoint,
    });
    let human = format!(
        "Enrolled `{}` (issuer {}, scopes `{}`, expires {}).\nToken installed in {} (0600; it is never printed).\nA sidecar already running for this workspace refuses requests (`ENROLLMENT_CHANGED`) until it is restarted.\n",
        e.subject,
        e.issuer,
        e.scopes.join(" "),
        e.expires_at,
        super::display_path(path)
    );
    (value, human)
}

pub fn enroll(ctx: &Context, args: EnrollArgs) -> Result<(), CliError> {
    let dir = workspace_dir(ctx, args.dir)?;
    let ws_id = workspace_id(&dir)?;
    let e = if args.standalone {
        let mut scopes = scopes(&args.scope);
        if scopes.is_empty() {
            scopes.push(lumenflow_contracts::identity::SCOPE_WORKSPACE.to_string());
        }
        let ttl = match &args.ttl {
            Some(t) => enrollment::parse_ttl(t).map_err(enrollment_error)?,
            None => enrollment::DEFAULT_ENROLLMENT_TTL,
        };
        enrollment::standalone_enrollment(&dir, &ws_id, scopes, ttl).map_err(enrollment_error)?
    } else {
        let (Some(url), Some(code)) = (args.control_plane, args.code) else {
            return Err(CliError::new(
                "INVALID_ARGUMENT",
                "choose `--standalone`, or `--control-plane URL --code CODE`",
            ));
        };
        let client = ControlPlane::new(&url, Duration::from_secs(30))
            .map_err(|e| CliError::new(e.code(), e.to_string()))?;
        let request = EnrollRequest {
            code,
            sidecar_url: args.sidecar_url,
            workspace_id: Some(ws_id.clone()),
        };
        let mut e = tokio_runtime()?
            .block_on(client.enroll(&request))
            .map_err(|e| CliError::new(e.code(), e.to_string()))?;
        if e.workspace_id != ws_id {
            return Err(CliError::new(
                "ENROLLMENT_WORKSPACE_MISMATCH",
                format!(
                    "the control plane enrolled workspace `{}`, but this is workspace `{ws_id}`",
                    e.workspace_id
                ),
            ));
        }
        if e.control_plane_endpoint.is_none() {
            e.control_plane_endpoint = Some(client.base().to_string());
        }
        e
    };
    let path = enrollment::save(&dir, &e).map_err(enrollment_error)?;
    let (value, human) = describe(&e, &path);
    print_ok(ctx.json, &value, &human);
    Ok(())
}

pub fn token(ctx: &Context, cmd: TokenCommand) -> Result<(), CliError> {
    let TokenCommand::Mint {
        scope,
        subject,
        ttl,
        dir,
    } = cmd;
    let dir = workspace_dir(ctx, dir)?;
    let ws_id = workspace_id(&dir)?;
    // Only a standalone workspace is its own issuer: a token signed by the workspace key would
    // not verify against a control plane's key.
    let e = enrollment::load(&dir).map_err(enrollment_error)?;
    let key_path = enrollment::workspace_key_path(&dir);
    // An enrolled workspace has no key of its own: that is the refusal below, not an I/O error.
    let key = if key_path.exists() {
        Some(KeyPair::load(&key_path).map_err(|err| CliError::new(err.code(), err.to_string()))?)
    } else {
        None
    };
    // Three causes, three answers (walk-F F-7): enrolled with a control plane, the workspace's
    // own key missing, or a key that is not the one the enrollment trusts.
    let key_shown = super::display_path(&key_path);
    if e.control_plane_endpoint.is_some() || e.issuer != enrollment::standalone_issuer(&ws_id) {
        return Err(CliError::new(
            "NOT_STANDALONE",
            format!(
                "this workspace is enrolled with issuer `{}`: tokens come from that issuer, `token mint` works in standalone mode only",
                e.issuer
            ),
        ));
    }
    match key {
        None => {
            return Err(CliError::new(
                "WORKSPACE_KEY_MISSING",
                format!(
                    "the workspace is standalone but its signing key `{key_shown}` is missing: \
                     restore it from a backup, or run `lumenflow enroll --standalone` to make a \
                     new key (tokens signed by the old key then stop working)"
                ),
            ))
        }
        Some(k) if k.public().to_pem().trim() != e.issuer_public_key_pem.trim() => {
            return Err(CliError::new(
                "WORKSPACE_KEY_MISMATCH",
                format!(
                    "the signing key `{key_shown}` is not the issuer key recorded in the \
                     enrollment (it was replaced): restore the matching key from a backup, or run \
                     `lumenflow enroll --standalone` to enroll with this key (tokens signed by the \
                     old key then stop working)"
                ),
            ))
        }
        Some(_) => {}
    }
    let ttl = match &ttl {
        Some(t) => enrollment::parse_ttl(t).map_err(enrollment_error)?,
        None => enrollment::DEFAULT_TOKEN_TTL,
    };
    let subject = subject.unwrap_or_else(|| ws_id.clone());
    let device_name = match lumenflow_contracts::identity::Subject::parse(&subject) {
        Ok(s) => match s.device_id() {
            Some(id) => enrollment::load_devices(&dir)
                .map_err(enrollment_error)?
                .into_iter()
                .find(|d| d.device_id == id)
                .map(|d| d.name),
            None => None,
        },
        Err(_) => None,
    };
    let scopes = scopes(&scope);
    if let Some(known) = scopes_in_use(&dir) {
        // A BTreeSet: already in the order the warning lists them.
        let listed = known
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        for s in scopes.iter().filter(|s| !known.contains(s.as_str())) {
            warn(
                ctx.json,
                &format!(
                    "scope `{s}` opens no tool or route of this workspace (its packs use: \
                     {listed}); the token carries it anyway"
                ),
            );
        }
    }
    let (token, claims) = enrollment::mint_standalone(
        &dir,
        &ws_id,
        &MintRequest {
            subject,
            scopes,
            ttl,
            device_name,
        },
    )
    .map_err(enrollment_error)?;
    if ctx.json {
        print_ok(true, &json!({"token": token, "claims": claims}), "");
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{token}");
    }
    Ok(())
}

pub fn device(ctx: &Context, cmd: DeviceCommand) -> Result<(), CliError> {
    match cmd {
        DeviceCommand::Add { id, name, dir } => {
            let dir = workspace_dir(ctx, dir)?;
            let ws_id = workspace_id(&dir)?;
            let record = enrollment::add_device(&dir, &id, &name).map_err(enrollment_error)?;
            print_ok(
                ctx.json,
                &json!({"device": record, "subject": format!("{ws_id}:phone:{id}")}),
                &format!(
                    "Registered device `{}` ({}); its subject is `{ws_id}:phone:{}`.\n",
                    record.device_id, record.name, record.device_id
                ),
            );
            Ok(())
        }
        DeviceCommand::List { dir } => {
            let dir = workspace_dir(ctx, dir)?;
            let devices = enrollment::load_devices(&dir).map_err(enrollment_error)?;
            let mut human = String::new();
            for d in &devices {
                human.push_str(&format!(
                    "{:<24} {:<32} {}\n",
                    d.device_id, d.name, d.registered_at
                ));
            }
            if human.is_empty() {
                human = "(no devices: add one with `lumenflow device add ID --name NAME`)\n".into();
            }
            print_ok(ctx.json, &json!({"devices": devices}), &human);
            Ok(())
        }
    }
}

fn sidecar_error(e: lumenflow_conductor::SidecarError) -> CliError {
    CliError::new(e.code(), e.to_string())
}

fn runtime_options() -> RuntimeOptions {
    RuntimeOptions {
        sandbox_helper: std::env::current_exe().ok(),
        ..RuntimeOptions::default()
    }
}

pub fn sidecar(ctx: &Context, args: SidecarArgs) -> Result<(), CliError> {
    init_logging();
    let dir = workspace_dir(ctx, args.dir)?;
    let mut options = SidecarOptions::new(&dir);
    options.runtime = runtime_options();
    options.delivery = DeliveryOptions {
        backoff_base: Duration::from_millis(args.backoff_base_ms.max(1)),
        backoff_cap: Duration::from_millis(args.backoff_cap_ms.max(args.backoff_base_ms).max(1)),
        batch_size: args.batch_size.max(1),
        revocation_interval: Duration::from_millis(args.revocation_interval_ms.max(100)),
        ..DeliveryOptions::default()
    };
    options.approvals = match args.approvals {
        ApprovalsArg::Auto => lumenflow_conductor::ApprovalsMode::Auto,
        ApprovalsArg::Local => lumenflow_conductor::ApprovalsMode::Local,
        ApprovalsArg::Cloud => lumenflow_conductor::ApprovalsMode::Cloud,
    };
    options.approval_wait = Duration::from_secs(args.approval_wait);
    let json_mode = ctx.json;
    tokio_runtime()?.block_on(async move {
        let sidecar = Sidecar::start(options).await.map_err(sidecar_error)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                CliError::new(
                    "LISTEN_FAILED",
                    format!("cannot listen on {}: {e}", args.listen),
                )
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::new("LISTEN_FAILED", e.to_string()))?;
        {
            let mut out = std::io::stdout().lock();
            let line = if json_mode {
                json!({"listening": format!("http://{addr}")}).to_string()
            } else {
                format!("lumenflow sidecar listening on http://{addr}")
            };
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        tracing::info!(%addr, subject = %sidecar.state.subject, "sidecar ready");
        sidecar
            .serve(listener, super::shutdown_signal())
            .await
            .map_err(sidecar_error)?;
        // A service log then shows the drain finished, as `cloud serve` does (walk-F F-13).
        eprintln!("lumenflow sidecar stopped");
        Ok(())
    })
}

pub fn mcp(ctx: &Context, args: McpArgs) -> Result<(), CliError> {
    init_logging();
    let dir = workspace_dir(ctx, args.dir)?;
    let mut options = SidecarOptions::new(&dir);
    options.runtime = runtime_options();
    let rt = tokio_runtime()?;
    let served = rt.block_on(async move {
        let sidecar = Sidecar::start(options).await.map_err(sidecar_error)?;
        let (token, from) = match std::env::var("LUMENFLOW_TOKEN") {
            Ok(t) if !t.trim().is_empty() => (t, "LUMENFLOW_TOKEN"),
            _ => (
                enrollment::load(&dir).map_err(enrollment_error)?.token,
                "the workspace's enrollment (LUMENFLOW_TOKEN is not set)",
            ),
        };
        let token = token.trim().to_string();
        let caller = sidecar
            .caller_for_token(&token)
            .map_err(|e| CliError::new(e.code(), format!("the MCP caller's token: {e}")))?;
        // stdout carries JSON-RPC only; who the session acts as goes to stderr, where MCP
        // clients keep the server's log.
        eprintln!(
            "lumenflow mcp: workspace `{}` at {}, acting as `{}` with scopes `{}` (token from {}, \
             expires {})",
            caller.claims.aud,
            dir.display(),
            caller.identity(),
            caller.claims.scope,
            from,
            lumenflow_contracts::time::Timestamp::from_unix_millis(
                caller.claims.exp.saturating_mul(1000)
            )
            .to_rfc3339(),
        );
        let server = lumenflow_conductor::mcp::McpServer::stdio(sidecar.state.clone(), token);
        lumenflow_conductor::mcp::serve_stdio(
            server,
            super::shutdown_signal(),
            lumenflow_conductor::sidecar::SHUTDOWN_GRACE,
        )
        .await
        .map_err(|m| CliError::new("MCP_FAILED", m))
    });
    // Stopped by a signal with stdin still open, the thread reading stdin is blocked in a read
    // that cannot be cancelled: do not wait for it (the calls have finished by now).
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    served
}
