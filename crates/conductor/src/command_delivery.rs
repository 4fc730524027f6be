//! Where the events of a short-lived command go: `lumenflow tool call` and the campus operator
//! commands (`campus facility add|ingest|poll|attest`) emit v2 events outside any sidecar.
//!
//! They follow the sidecar's routing (BKP-02, Q34), but finish before the command exits:
//! - every event is stamped in the local ledger by the emitter before it reaches this sink;
//! - queue-class events are numbered and written to the shared outbox, which the workspace's
//!   next sidecar or `lumenflow mcp` drains (at least once);
//! - ephemeral events are numbered and sent once to the control plane, when the workspace is
//!   enrolled with one, by a thread of this command; [`CommandDelivery::finish`] waits for what
//!   is in flight. Unlike the sidecar, a full buffer blocks the emitter instead of dropping: a
//!   command's own events should all be offered once, and the command has nothing better to do.
//!
//! Without an enrollment there is no control plane and no outbox drainer: events keep only
//! their ledger stamp ([`NoDelivery`]).

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_kernel::events::emit::EventSink;
use lumenflow_kernel::manifest::PackManifest;
use serde_json::Value;

use crate::control_plane::ControlPlane;
use crate::delivery::{numbered, ClassTable};
use crate::enrollment::{self, EnrollmentError};
use crate::outbox::{self, Outbox};
use crate::seq::{self, SeqCounter};
use lumenflow_contracts::kinds::DeliveryClass;

/// The channel of events commands send (their own `seq` numbering, Q8).
pub const COMMAND_CHANNEL: &str = "cli";

/// Ephemeral events per `POST /api/v1/events`.
const BATCH: usize = 1000;

/// Batches waiting for the sender thread before an emitter waits.
const QUEUE: usize = 64;

/// How long one push to the control plane may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A sink for a workspace without an enrollment: the ledger stamp is all an event gets.
#[derive(Debug, Default)]
pub struct NoDelivery;

impl EventSink for NoDelivery {
    fn push(&self, _events: &[KernelEventV2]) -> Result<(), String> {
        Ok(())
    }
}

/// What [`CommandDelivery::finish`] reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Ephemeral events the control plane acknowledged.
    pub sent: u64,
    /// Ephemeral events it did not take (they keep their ledger stamp).
    pub not_sent: u64,
    /// Queue-class events written to the outbox.
    pub queued: u64,
    /// Why the last push failed, when one did.
    pub error: Option<String>,
}

/// The event output of one command in an enrolled workspace.
pub struct CommandDelivery {
    subject: String,
    sink: Arc<CommandSink>,
    sender: Option<std::thread::JoinHandle<(u64, u64, Option<String>)>>,
}

struct CommandSink {
    classes: ClassTable,
    seq: SeqCounter,
    outbox: Outbox,
    /// `None` without a control plane, and once [`CommandDelivery::finish`] ran.
    ephemeral: Mutex<Option<SyncSender<Vec<KernelEventV2>>>>,
    /// Without one (standalone), an ephemeral event's stamp is all it gets: not a failure.
    has_control_plane: bool,
    /// Numbering and enqueueing under one lock, so outbox order is `seq` order.
    order: Mutex<()>,
    queued: std::sync::atomic::AtomicU64,
    unsent: std::sync::atomic::AtomicU64,
}

impl CommandDelivery {
    /// The delivery of the workspace in `workspace_dir`, with the delivery classes of
    /// `manifests`; `Ok(None)` when the workspace is not enrolled.
    pub fn open(
        workspace_dir: &Path,
        manifests: &[PackManifest],
    ) -> Result<Option<CommandDelivery>, String> {
        let e = match enrollment::load(workspace_dir) {
            Ok(e) => e,
            Err(EnrollmentError::NotEnrolled { .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let outbox =
            Outbox::open(&outbox::default_dir(workspace_dir)).map_err(|e| e.to_string())?;
        let seq = SeqCounter::open(
            &seq::default_path(workspace_dir, COMMAND_CHANNEL),
            COMMAND_CHANNEL,
        )
        .map_err(|e| e.to_string())?;
        let (ephemeral, sender) = match &e.control_plane_endpoint {
            Some(endpoint) => {
                let control_plane =
                    ControlPlane::new(endpoint, TIMEOUT).map_err(|e| e.to_string())?;
                let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
                let (token, workspace_id) = (e.token.clone(), e.workspace_id.clone());
                let thread = std::thread::Builder::new()
                    .name("event-sender".into())
                    .spawn(move || send_all(control_plane, &token, &workspace_id, rx))
                    .map_err(|e| format!("cannot start the event sender: {e}"))?;
                (Some(tx), Some(thread))
            }
            None => (None, None),
        };
        Ok(Some(CommandDelivery {
            subject: e.subject,
            sink: Arc::new(CommandSink {
                classes: ClassTable::from_manifests(manifests),
                seq,
                outbox,
                has_control_plane: ephemeral.is_some(),
                ephemeral: Mutex::new(ephemeral),
                order: Mutex::new(()),
                queued: 0.into(),
                unsent: 0.into(),
            }),
            sender,
        }))
    }

    /// The enrollment subject: the `from` of the command's events.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn sink(&self) -> Arc<dyn EventSink> {
        self.sink.clone()
    }

    /// Send what is still queued and report. Events pushed afterwards keep their stamp only.
    pub fn finish(mut self) -> DeliveryReport {
        use std::sync::atomic::Ordering;
        self.sink
            .ephemeral
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (sent, failed, error) = match self.sender.take().map(|t| t.join()) {
            Some(Ok(counts)) => counts,
            Some(Err(_)) => (0, 0, Some("the event sender stopped".into())),
            None => (0, 0, None),
        };
        DeliveryReport {
            sent,
            not_sent: failed + self.sink.unsent.load(Ordering::Relaxed),
            queued: self.sink.queued.load(Ordering::Relaxed),
            error,
        }
    }
}

impl EventSink for CommandSink {
    fn push(&self, events: &[KernelEventV2]) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if events.is_empty() {
            return Ok(());
        }
        let _order = self
            .order
            .lock()
            .map_err(|_| "the delivery order lock is poisoned".to_string())?;
        let (mut queued, mut ephemeral) = (Vec::new(), Vec::new());
        for event in numbered(&self.seq, events)? {
            match self.classes.class(&event.kind) {
                DeliveryClass::Queue => queued.push(event),
                DeliveryClass::Ephemeral => ephemeral.push(event),
            }
        }
        if !queued.is_empty() {
            let added = self.outbox.enqueue(&queued).map_err(|e| e.to_string())?;
            self.queued.fetch_add(added as u64, Ordering::Relaxed);
        }
        if !ephemeral.is_empty() && self.has_control_plane {
            let n = ephemeral.len() as u64;
            let tx = self
                .ephemeral
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            // Blocks while the sender thread is behind: see the module page.
            let offered = tx.is_some_and(|tx| tx.send(ephemeral).is_ok());
            if !offered {
                self.unsent.fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// The sender thread: batches of up to [`BATCH`] events, each offered once.
fn send_all(
    control_plane: ControlPlane,
    token: &str,
    workspace_id: &str,
    rx: Receiver<Vec<KernelEventV2>>,
) -> (u64, u64, Option<String>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let dropped = rx.iter().map(|b| b.len() as u64).sum();
            return (0, dropped, Some(format!("no async runtime: {e}")));
        }
    };
    let (mut sent, mut failed, mut error) = (0u64, 0u64, None);
    let mut pending: Vec<KernelEventV2> = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() {
        if pending.len() < BATCH && open {
            // Wait for more only when there is nothing to send yet.
            let next = if pending.is_empty() {
                rx.recv().ok()
            } else {
                rx.try_recv().ok()
            };
            match next {
                Some(mut more) => {
                    pending.append(&mut more);
                    continue;
                }
                None if pending.is_empty() => {
                    open = false;
                    continue;
                }
                None => {
                    // Nothing more right now; `recv` tells a closed channel from an idle one
                    // next time round.
                }
            }
        }
        let take = pending.len().min(BATCH);
        let batch: Vec<KernelEventV2> = pending.drain(..take).collect();
        let n = batch.len() as u64;
        if error.is_some() {
            // The control plane failed once in this command: it is down or refusing, so the
            // rest is not offered (each try would wait for its timeout). Stamps remain.
            failed += n;
            continue;
        }
        let values: Vec<Value> = batch
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        match runtime.block_on(control_plane.push_events(token, workspace_id, values)) {
            Ok(_) => sent += n,
            Err(e) => {
                failed += n;
                error = Some(lumenflow_contracts::error_text::with_causes(&e));
            }
        }
    }
    (sent, failed, error)
}
