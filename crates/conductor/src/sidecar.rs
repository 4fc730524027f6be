//! Starting a sidecar: enrollment → verifier → runtime with the conductor's event sink → pack
//! host and inbox → delivery tasks → HTTP (or MCP over stdio).
//!
//! [`Sidecar::start`] wires the parts; the binary only chooses the listener. The enrollment
//! subject becomes the identity of every event the runtime emits (ENR-08, ENR-10), and the
//! runtime's events are pushed into [`ConductorSink`], which routes them to the outbox or the
//! ephemeral sender. Without a control plane endpoint in the enrollment (standalone mode)
//! nothing is sent: ephemeral events keep only their ledger stamp, queue-class events wait in
//! the outbox for a later enrollment with a control plane.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::dispatch::{self, BuiltinFn, RuntimeEvents, RuntimeOptions};
use lumenflow_kernel::events::host::PackHost;
use lumenflow_kernel::events::{conductor_state_dir, ledger_path};
use lumenflow_kernel::manifest::Surface as PackSurface;
use lumenflow_proof::keys::PublicKey;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::auth::{Caller, Verifier};
use crate::cloud_approvals::CloudApprovalGate;
use crate::control_plane::ControlPlane;
use crate::delivery::{self, ClassTable, ConductorSink, DeliveryOptions, DeliveryStats, Upstream};
use crate::enrollment::{self, EnrollmentError};
use crate::inbox::Inbox;
use crate::listing::ListingCache;
use crate::outbox::{self, Outbox};
use crate::seq::{self, SeqCounter};
use crate::server::{self, AppState, Shared};

/// Timeout of one request to the control plane.
pub const CONTROL_PLANE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("{0}")]
    Enrollment(#[from] EnrollmentError),
    #[error("the enrollment's issuer key: {0}")]
    IssuerKey(lumenflow_proof::keys::KeyError),
    #[error("cannot open the workspace runtime: {message}")]
    Runtime { code: &'static str, message: String },
    #[error("the enrollment is for workspace `{enrolled}` but `{dir}` is workspace `{actual}`")]
    WrongWorkspace {
        enrolled: String,
        actual: String,
        dir: PathBuf,
    },
    #[error("{0}")]
    State(String),
    #[error("pack `{pack}` cannot be activated on the event bus: {message}")]
    Pack {
        pack: String,
        code: &'static str,
        message: String,
    },
    #[error("{0}")]
    ControlPlane(#[from] crate::control_plane::ControlPlaneError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
}

impl SidecarError {
    pub fn code(&self) -> &'static str {
        match self {
            SidecarError::Enrollment(e) => e.code(),
            SidecarError::IssuerKey(e) => e.code(),
            SidecarError::Runtime { code, .. } => code,
            SidecarError::WrongWorkspace { .. } => "ENROLLMENT_WORKSPACE_MISMATCH",
            SidecarError::State(_) => "CONDUCTOR_STATE_INVALID",
            SidecarError::Pack { code, .. } => code,
            SidecarError::ControlPlane(e) => e.code(),
            SidecarError::Listen(_) => "LISTEN_FAILED",
        }
    }
}

/// How to start.
#[derive(Clone)]
pub struct SidecarOptions {
    pub workspace_dir: PathBuf,
    pub runtime: RuntimeOptions,
    pub delivery: DeliveryOptions,
    /// The packs compiled into this binary (default: `lumenflow_packs::builtin_packs()`).
    pub builtin_packs: Vec<EmbeddedPack>,
    /// Their tool functions (default: `lumenflow_packs::builtin_tools()`). Embedders (the
    /// benchmark) add their own built-in packs here; every call still goes through dispatch.
    pub builtin_tools: HashMap<String, BuiltinFn>,
    /// Who decides approvals (default: the control plane when the enrollment names one).
    pub approvals: ApprovalsMode,
    /// How long a call that needs a control-plane approval waits for the decision before it
    /// answers `APPROVAL_REQUIRED` with the pending approval's id (zero: answer at once; the
    /// call retried after the grant runs).
    pub approval_wait: Duration,
}

/// Where the approvals of the sidecar's runtime are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalsMode {
    /// The control plane when the enrollment names one, else the workspace's local store.
    #[default]
    Auto,
    /// The workspace's local store (`lumenflow approvals grant`).
    Local,
    /// The control plane (`/api/v1/approvals/*`); refused without an endpoint.
    Cloud,
}

impl std::fmt::Debug for SidecarOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarOptions")
            .field("workspace_dir", &self.workspace_dir)
            .field("runtime", &self.runtime)
            .field("delivery", &self.delivery)
            .field(
                "builtin_packs",
                &self.builtin_packs.iter().map(|p| p.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl SidecarOptions {
    pub fn new(workspace_dir: &Path) -> Self {
        SidecarOptions {
            workspace_dir: workspace_dir.to_path_buf(),
            runtime: RuntimeOptions::default(),
            delivery: DeliveryOptions::default(),
            builtin_packs: lumenflow_packs::builtin_packs().to_vec(),
            builtin_tools: lumenflow_packs::builtin_tools(),
            approvals: ApprovalsMode::Auto,
            approval_wait: Duration::ZERO,
        }
    }
}

/// What the control plane last heard about the tool surface.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct SurfaceRecord {
    config_hash: String,
    tools_etag: String,
}

/// SCR-05: when the workspace configuration or the tool surface changed since the last start,
/// emit `conductor:workspace_updated` so the control plane refreshes its registry.
async fn announce_surface(state: &Shared) {
    let path = conductor_state_dir(&state.runtime.workspace_dir).join("surface.json");
    let now = SurfaceRecord {
        config_hash: state.runtime.config_hash.clone(),
        tools_etag: crate::listing::surface(&state.runtime.registry).etag,
    };
    let before: Option<SurfaceRecord> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if before.as_ref() == Some(&now) {
        return;
    }
    let Some(out) = state.events.clone() else {
        return;
    };
    let mut payload = serde_json::Map::new();
    payload.insert("config_hash".into(), now.config_hash.clone().into());
    payload.insert("tools_etag".into(), now.tools_etag.clone().into());
    let event = match lumenflow_contracts::event::build_event(
        lumenflow_contracts::kinds::ConductorKind::WorkspaceUpdated.as_str(),
        &state.subject,
        payload,
        lumenflow_contracts::event::BuildOptions::default(),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("cannot build conductor:workspace_updated: {e}");
            return;
        }
    };
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = out.sink.push(std::slice::from_ref(&event)) {
            tracing::warn!("conductor:workspace_updated not stamped or sent: {e}");
            return;
        }
        match serde_json::to_vec(&now) {
            Ok(bytes) => {
                if let Err(e) = crate::fsio::write_atomic(&path, &bytes, crate::fsio::Mode::Private)
                {
                    tracing::warn!(file = %path.display(), "cannot record the announced surface: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot encode the announced surface: {e}"),
        }
    })
    .await;
}

/// A started sidecar: its shared state and background delivery tasks.
pub struct Sidecar {
    pub state: Shared,
    tasks: Vec<JoinHandle<()>>,
    /// Cancelled when serving stops: ends the `/mcp` sessions.
    mcp_stop: tokio_util::sync::CancellationToken,
    /// The `/mcp` tool calls running: the sessions end only after them.
    mcp_calls: crate::mcp::InFlight,
}

/// How long a stopping sidecar waits for requests in flight before it exits anyway. A tool call
/// cut there keeps its started receipt without a finished one, as after a crash.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

impl Drop for Sidecar {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Sidecar {
    /// Wire everything up (inside a Tokio runtime).
    pub async fn start(options: SidecarOptions) -> Result<Sidecar, SidecarError> {
        let dir = options.workspace_dir.clone();
        let (e, watch) = enrollment::EnrollmentWatch::load(&dir)?;
        let issuer = PublicKey::from_pem(&e.issuer_public_key_pem, "issuer_public_key_pem")
            .map_err(SidecarError::IssuerKey)?;
        let state_dir = conductor_state_dir(&dir);
        let verifier = Arc::new(
            Verifier::new(
                issuer,
                e.workspace_id.clone(),
                Some(&state_dir.join("revocations.json")),
            )
            .with_enrollment_watch(watch),
        );

        let open_dir = dir.clone();
        let runtime_options = options.runtime.clone();
        let packs = options.builtin_packs.clone();
        let tools = options.builtin_tools.clone();
        let mut runtime = tokio::task::spawn_blocking(move || {
            dispatch::open::open(&open_dir, &packs, &tools, runtime_options)
        })
        .await
        .map_err(|err| SidecarError::State(format!("the runtime loader stopped: {err}")))?
        .map_err(|err| SidecarError::Runtime {
            code: err.code(),
            message: err.to_string(),
        })?;
        for w in &runtime.warnings {
            tracing::warn!("{w}");
        }
        if runtime.spec.id != e.workspace_id {
            return Err(SidecarError::WrongWorkspace {
                enrolled: e.workspace_id,
                actual: runtime.spec.id.clone(),
                dir,
            });
        }
        let cloud_approvals = match options.approvals {
            ApprovalsMode::Local => false,
            ApprovalsMode::Auto => e.control_plane_endpoint.is_some(),
            ApprovalsMode::Cloud => true,
        };
        if cloud_approvals {
            let gate = CloudApprovalGate::new(
                &e,
                &dir,
                options.approval_wait,
                tokio::runtime::Handle::current(),
            )
            .map_err(SidecarError::State)?;
            runtime.approvals = Some(Arc::new(gate));
        }

        let outbox = Arc::new(
            Outbox::open(&outbox::default_dir(&dir))
                .map_err(|err| SidecarError::State(err.to_string()))?,
        );
        let seq = SeqCounter::open(
            &seq::default_path(&dir, seq::SIDECAR_CHANNEL),
            seq::SIDECAR_CHANNEL,
        )
        .map_err(|err| SidecarError::State(err.to_string()))?;
        let stats = Arc::new(DeliveryStats::default());
        let wake = Arc::new(Notify::new());
        let upstream = match &e.control_plane_endpoint {
            Some(endpoint) => Some(Upstream {
                control_plane: ControlPlane::new(endpoint, CONTROL_PLANE_TIMEOUT)?,
                token: Arc::from(e.token.as_str()),
                workspace_id: e.workspace_id.clone(),
            }),
            None => None,
        };
        let (ephemeral_tx, ephemeral_rx) = match &upstream {
            Some(_) => {
                let (tx, rx) = mpsc::channel(options.delivery.ephemeral_buffer.max(1));
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let stamp = Arc::new(
            lumenflow_kernel::events::ledger::Ledger::open(&ledger_path(&dir))
                .map_err(|err| SidecarError::State(err.to_string()))?,
        );
        let sink: Arc<dyn lumenflow_kernel::events::emit::EventSink> =
            Arc::new(ConductorSink::new(
                Some(stamp),
                ClassTable::from_manifests(&runtime.pack_manifests),
                seq,
                outbox.clone(),
                ephemeral_tx,
                wake.clone(),
                stats.clone(),
            ));
        // The sink stamps every event itself (the ledger group-commits), so the runtime gets no
        // ledger of its own.
        runtime.events = Some(Arc::new(RuntimeEvents::new(
            e.subject.clone(),
            sink.clone(),
            None,
        )));
        let runtime = Arc::new(runtime);
        // Packs settle what a killed sidecar left behind (agent turns stopped mid-flight are
        // reported as aborted, never resumed or recovered on their own).
        let starting = runtime.clone();
        let problems =
            tokio::task::spawn_blocking(move || lumenflow_packs::on_runtime_start(&starting))
                .await
                .unwrap_or_default();
        for problem in problems {
            tracing::warn!(%problem, "pack start-up housekeeping");
        }

        let mut host = PackHost::new(&dir, &[PackSurface::Http, PackSurface::Mcp]);
        for reg in lumenflow_packs::registrations() {
            let pack = reg.manifest.id.clone();
            host.register(reg).map_err(|err| SidecarError::Pack {
                pack,
                code: err.code(),
                message: err.to_string(),
            })?;
        }
        let inbox = Arc::new(
            Inbox::open(&dir, host, Some(runtime.log.clone()))
                .map_err(|err| SidecarError::State(err.to_string()))?,
        );
        let redeliver = inbox.clone();
        let redelivered = tokio::task::spawn_blocking(move || redeliver.redeliver_pending())
            .await
            .unwrap_or(0);
        if redelivered > 0 {
            tracing::info!(
                count = redelivered,
                "inbox events from a previous run delivered"
            );
        }

        let mut tasks = Vec::new();
        if let Some(up) = &upstream {
            // One pull before serving, so a revoked token is refused from the first request.
            let _ = tokio::time::timeout(
                Duration::from_secs(3),
                delivery::refresh_revocations(up, &verifier),
            )
            .await;
            tasks.push(tokio::spawn(delivery::run_drain(
                up.clone(),
                outbox.clone(),
                wake.clone(),
                stats.clone(),
                options.delivery.clone(),
            )));
            if let Some(rx) = ephemeral_rx {
                tasks.push(tokio::spawn(delivery::run_ephemeral(
                    up.clone(),
                    rx,
                    stats.clone(),
                    options.delivery.batch_size,
                )));
            }
            tasks.push(tokio::spawn(delivery::run_revocations(
                up.clone(),
                verifier.clone(),
                options.delivery.revocation_interval,
            )));
        }

        let state = Arc::new(AppState {
            runtime,
            verifier,
            listings: ListingCache::default(),
            inbox,
            outbox,
            stats,
            subject: e.subject.clone(),
            control_plane: e.control_plane_endpoint.clone(),
            events: Some(server::EventsOut { sink }),
        });
        announce_surface(&state).await;
        Ok(Sidecar {
            state,
            tasks,
            mcp_stop: tokio_util::sync::CancellationToken::new(),
            mcp_calls: crate::mcp::InFlight::default(),
        })
    }

    /// The HTTP router, `/mcp` included.
    pub fn router(&self) -> axum::Router {
        let mcp = crate::mcp::http_service(
            self.state.clone(),
            self.mcp_stop.clone(),
            self.mcp_calls.clone(),
        );
        server::router(self.state.clone(), Some(mcp))
    }

    /// Serve HTTP on `listener` until `shutdown` resolves; then stop accepting, give requests
    /// in flight up to [`SHUTDOWN_GRACE`], and end the `/mcp` sessions once their tool calls
    /// have answered (an open session's event stream would otherwise hold the server).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), SidecarError> {
        let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
        let mcp_stop = self.mcp_stop.clone();
        let mcp_calls = self.mcp_calls.clone();
        let graceful = axum::serve(listener, self.router()).with_graceful_shutdown(async move {
            shutdown.await;
            stopping_tx.send_replace(true);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, mcp_calls.idle()).await;
                mcp_stop.cancel();
            });
        });
        tokio::select! {
            served = std::future::IntoFuture::into_future(graceful) => {
                served.map_err(SidecarError::Listen)
            }
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!(
                    grace_seconds = SHUTDOWN_GRACE.as_secs(),
                    "requests were still open when the grace period ended; stopping anyway"
                );
                Ok(())
            }
        }
    }

    /// Authenticate a token for a stdio MCP session (the same checks as a bearer header).
    pub fn caller_for_token(&self, token: &str) -> Result<Caller, crate::auth::AuthError> {
        self.state
            .verifier
            .authenticate(Some(&format!("Bearer {token}")))
    }
}
