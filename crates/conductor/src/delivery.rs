//! Delivery of the workspace's events to the control plane (DLV-01 to DLV-04, BKP-01 to BKP-05,
//! Q1, Q8, Q19, Q35).
//!
//! [`ConductorSink`] is the [`EventSink`] the sidecar plugs into the runtime: the kernel calls
//! it synchronously from the dispatch path, so it never touches the network. It stamps each
//! event in the local ledger (group-committed by the kernel's ledger), numbers each
//! event on the sidecar channel (`seq`, persisted), then routes it by the enumerated class of its
//! kind: queue-class events are written to the [`Outbox`] (durable before `push` returns) and
//! the drain is woken; ephemeral events go to a bounded in-memory channel and are sent once by
//! [`run_ephemeral`], dropped on any failure (or when the channel is full).
//!
//! A push of ephemeral events only (every tool call's `agent-runtime:tool_called`) is numbered
//! at once and handed to a stamper thread, which stamps them (many pushes share one ledger
//! commit) and then routes them: the call that emitted them does not wait for that fsync. They
//! are still stamped before they go anywhere (EVT-11); a crash in between loses an event that
//! may be lost anyway (BKP-02) and that the call's durable receipts already record.
//!
//! [`run_drain`] empties the outbox in FIFO order, in small ordered batches, deleting files only
//! after a 2xx whose `accepted` covers the batch; on failure it stops (order is kept) and retries
//! with capped exponential backoff. Delivery is never gated on the policy default (Q35).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_contracts::kinds::{DeliveryClass, KnownKind};
use lumenflow_kernel::events::emit::EventSink;
use lumenflow_kernel::manifest::{Backpressure, PackManifest};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::control_plane::{ControlPlane, ControlPlaneError};
use crate::outbox::{Outbox, OutboxError, RawPending};
use crate::seq::SeqCounter;
use lumenflow_kernel::events::ledger::Ledger;

/// Tunables of delivery.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// First retry delay after a failed drain (Q19: 1 s).
    pub backoff_base: Duration,
    /// Longest retry delay (Q19: 60 s).
    pub backoff_cap: Duration,
    /// Queue-class events per drain request.
    pub batch_size: usize,
    /// Ephemeral events buffered in memory before new ones are dropped.
    pub ephemeral_buffer: usize,
    /// How often the revocation list is pulled.
    pub revocation_interval: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            batch_size: 256,
            ephemeral_buffer: 10_000,
            revocation_interval: Duration::from_secs(30),
        }
    }
}

/// Counters a health check reports.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub ephemeral_sent: AtomicU64,
    pub ephemeral_dropped: AtomicU64,
    pub queued: AtomicU64,
    pub drained: AtomicU64,
    pub drain_failures: AtomicU64,
    pub control_plane_up: AtomicBool,
}

#[derive(Debug, Serialize)]
pub struct StatsSnapshot {
    pub ephemeral_sent: u64,
    pub ephemeral_dropped: u64,
    pub queued: u64,
    pub drained: u64,
    pub drain_failures: u64,
    pub control_plane_up: bool,
}

impl DeliveryStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            ephemeral_sent: self.ephemeral_sent.load(Ordering::Relaxed),
            ephemeral_dropped: self.ephemeral_dropped.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            drained: self.drained.load(Ordering::Relaxed),
            drain_failures: self.drain_failures.load(Ordering::Relaxed),
            control_plane_up: self.control_plane_up.load(Ordering::Relaxed),
        }
    }
}

/// The delivery class of every kind a runtime can emit: the catalogue's for known kinds, the
/// pack manifest's `backpressure_policy` for pack kinds (BKP-01, BKP-06).
#[derive(Debug, Clone, Default)]
pub struct ClassTable {
    by_kind: HashMap<String, DeliveryClass>,
}

impl ClassTable {
    pub fn from_manifests(manifests: &[PackManifest]) -> Self {
        let mut by_kind = HashMap::new();
        for m in manifests {
            for (kind, bp) in &m.backpressure_policy {
                let class = match bp {
                    Backpressure::Ephemeral => DeliveryClass::Ephemeral,
                    Backpressure::Queue => DeliveryClass::Queue,
                };
                by_kind.insert(kind.clone(), class);
            }
        }
        ClassTable { by_kind }
    }

    /// A kind nobody classified is queued: losing an event is worse than keeping one.
    pub fn class(&self, kind: &str) -> DeliveryClass {
        KnownKind::from_name(kind)
            .map(KnownKind::delivery)
            .or_else(|| self.by_kind.get(kind).copied())
            .unwrap_or(DeliveryClass::Queue)
    }
}

/// The sink the runtime pushes into (see the module page).
pub struct ConductorSink {
    /// The local stamp, written before an event goes anywhere (EVT-11).
    stamp: Option<Arc<Ledger>>,
    classes: ClassTable,
    seq: SeqCounter,
    outbox: Arc<Outbox>,
    ephemeral: Option<mpsc::Sender<KernelEventV2>>,
    wake: Arc<Notify>,
    stats: Arc<DeliveryStats>,
    /// Numbering and enqueueing happen under one lock so FIFO order is `seq` order.
    order: Mutex<()>,
    /// The stamper thread of ephemeral-only pushes (when there is a ledger).
    stamper: Option<std::sync::mpsc::SyncSender<Numbered>>,
}

/// Ephemeral events of one push: as emitted (stamped) and numbered (sent).
struct Numbered {
    stamp: Vec<KernelEventV2>,
    send: Vec<KernelEventV2>,
}

/// Pushes waiting for the stamper before `push` stamps synchronously instead.
const STAMPER_QUEUE: usize = 4096;

/// Send one numbered ephemeral event, or count it dropped.
fn route_ephemeral(
    tx: Option<&mpsc::Sender<KernelEventV2>>,
    stats: &DeliveryStats,
    event: KernelEventV2,
) {
    match tx {
        Some(tx) => {
            if tx.try_send(event).is_err() {
                stats.ephemeral_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("ephemeral event dropped: the send buffer is full");
            }
        }
        None => {
            stats.ephemeral_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The stamper thread: stamp what is queued in one ledger commit, then route it. An event whose
/// stamp failed is not sent.
fn spawn_stamper(
    ledger: Arc<Ledger>,
    ephemeral: Option<mpsc::Sender<KernelEventV2>>,
    stats: Arc<DeliveryStats>,
) -> Option<std::sync::mpsc::SyncSender<Numbered>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Numbered>(STAMPER_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("ephemeral-stamper".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                while group.len() < 1024 {
                    match rx.try_recv() {
                        Ok(more) => group.push(more),
                        Err(_) => break,
                    }
                }
                let stamps: Vec<KernelEventV2> = group
                    .iter_mut()
                    .flat_map(|n| std::mem::take(&mut n.stamp))
                    .collect();
                if let Err(e) = ledger.append(&stamps) {
                    let n: usize = group.iter().map(|g| g.send.len()).sum();
                    stats
                        .ephemeral_dropped
                        .fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!("ephemeral events not stamped, so not sent: {e}");
                    continue;
                }
                for numbered in group {
                    for event in numbered.send {
                        route_ephemeral(ephemeral.as_ref(), &stats, event);
                    }
                }
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!("no stamper thread ({e}): ephemeral events are stamped inline");
            None
        }
    }
}

impl ConductorSink {
    /// `ephemeral` is `None` when there is no control plane: ephemeral events then only keep
    /// their ledger stamp.
    pub fn new(
        stamp: Option<Arc<Ledger>>,
        classes: ClassTable,
        seq: SeqCounter,
        outbox: Arc<Outbox>,
        ephemeral: Option<mpsc::Sender<KernelEventV2>>,
        wake: Arc<Notify>,
        stats: Arc<DeliveryStats>,
    ) -> Self {
        let stamper = stamp
            .clone()
            .and_then(|ledger| spawn_stamper(ledger, ephemeral.clone(), stats.clone()));
        ConductorSink {
            stamper,
            stamp,
            classes,
            seq,
            outbox,
            ephemeral,
            wake,
            stats,
            order: Mutex::new(()),
        }
    }
}

impl ConductorSink {
    /// Number ephemeral events now (so `seq` follows emission order) and leave stamping and
    /// routing to the stamper; when its queue is full, do both here.
    fn push_ephemeral(
        &self,
        stamper: &std::sync::mpsc::SyncSender<Numbered>,
        events: &[KernelEventV2],
    ) -> Result<(), String> {
        let send = {
            let _order = self
                .order
                .lock()
                .map_err(|_| "the delivery order lock is poisoned".to_string())?;
            numbered(&self.seq, events)?
        };
        let numbered = Numbered {
            stamp: events.to_vec(),
            send,
        };
        let numbered = match stamper.try_send(numbered) {
            Ok(()) => return Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(n))
            | Err(std::sync::mpsc::TrySendError::Disconnected(n)) => n,
        };
        if let Some(stamp) = &self.stamp {
            stamp.append(&numbered.stamp).map_err(|e| e.to_string())?;
        }
        for event in numbered.send {
            route_ephemeral(self.ephemeral.as_ref(), &self.stats, event);
        }
        Ok(())
    }
}

impl EventSink for ConductorSink {
    fn push(&self, events: &[KernelEventV2]) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(stamper) = &self.stamper {
            let ephemeral_only = events
                .iter()
                .all(|e| self.classes.class(&e.kind) == DeliveryClass::Ephemeral);
            if ephemeral_only {
                return self.push_ephemeral(stamper, events);
            }
        }
        // Stamped first (group commit: concurrent pushes share an fsync), then routed.
        if let Some(stamp) = &self.stamp {
            stamp.append(events).map_err(|e| e.to_string())?;
        }
        let _order = self
            .order
            .lock()
            .map_err(|_| "the delivery order lock is poisoned".to_string())?;
        let mut queued = Vec::new();
        for event in numbered(&self.seq, events)? {
            match self.classes.class(&event.kind) {
                DeliveryClass::Queue => queued.push(event),
                DeliveryClass::Ephemeral => {
                    route_ephemeral(self.ephemeral.as_ref(), &self.stats, event)
                }
            }
        }
        if !queued.is_empty() {
            let added = self.outbox.enqueue(&queued).map_err(|e| e.to_string())?;
            self.stats.queued.fetch_add(added as u64, Ordering::Relaxed);
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// `events` with the next consecutive numbers of `seq`, in order (Q8).
pub(crate) fn numbered(
    seq: &SeqCounter,
    events: &[KernelEventV2],
) -> Result<Vec<KernelEventV2>, String> {
    let first = seq.take(events.len() as u64).map_err(|e| e.to_string())?;
    Ok(events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            e.seq = Some(first + i as u64);
            e
        })
        .collect())
}

/// Who delivery talks to, as whom.
#[derive(Clone)]
pub struct Upstream {
    pub control_plane: ControlPlane,
    pub token: Arc<str>,
    pub workspace_id: String,
}

/// Send ephemeral events once, in the order they were emitted; a failed send drops its batch
/// (BKP-03) with a debug line.
pub async fn run_ephemeral(
    upstream: Upstream,
    mut rx: mpsc::Receiver<KernelEventV2>,
    stats: Arc<DeliveryStats>,
    batch_size: usize,
) {
    let mut buf = Vec::with_capacity(batch_size);
    while rx.recv_many(&mut buf, batch_size.max(1)).await > 0 {
        let n = buf.len() as u64;
        let events: Vec<Value> = buf
            .drain(..)
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        match upstream
            .control_plane
            .push_events(&upstream.token, &upstream.workspace_id, events)
            .await
        {
            Ok(_) => {
                stats.ephemeral_sent.fetch_add(n, Ordering::Relaxed);
                stats.control_plane_up.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                stats.ephemeral_dropped.fetch_add(n, Ordering::Relaxed);
                stats.control_plane_up.store(false, Ordering::Relaxed);
                tracing::debug!(code = e.code(), "ephemeral events dropped: {e}");
            }
        }
    }
}

/// The next backoff delay: doubling, capped.
pub fn next_backoff(current: Duration, cap: Duration) -> Duration {
    current.saturating_mul(2).min(cap)
}

/// How often an idle drain looks for files other processes queued, and a process that does
/// not lead the drain checks whether the leader stopped.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// Drain the outbox forever (see the module page), when this process leads its drain
/// ([`Outbox::lead_drain`]); otherwise wait for the leader to stop. Wakes on every enqueue of
/// this process; otherwise rescans the folder every [`RESCAN_EVERY`]. Pipelined: while a batch
/// is in flight the next one is read, and the files of an acknowledged batch are removed while
/// the next one is sent; a failure drops the read-ahead and starts again from the oldest file,
/// so order and at-least-once hold.
pub async fn run_drain(
    upstream: Upstream,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    stats: Arc<DeliveryStats>,
    options: DeliveryOptions,
) {
    let size = options.batch_size.max(1);
    let mut backoff = options.backoff_base;
    let mut prefetched: Option<Vec<RawPending>> = None;
    let mut removing: Option<(u64, tokio::task::JoinHandle<Result<(), OutboxError>>)> = None;
    let mut leading = false;
    loop {
        if !leading {
            // Another process (a `lumenflow mcp` beside this sidecar, or the other way round)
            // may drain this outbox: follow, keeping the index true, until it stops.
            let ob = outbox.clone();
            leading = tokio::task::spawn_blocking(move || {
                let lead = ob.lead_drain();
                if !lead {
                    let _ = ob.rescan();
                }
                lead
            })
            .await
            .unwrap_or(false);
            if !leading {
                let _ = tokio::time::timeout(RESCAN_EVERY, wake.notified()).await;
                continue;
            }
            tracing::debug!("this process drains the outbox");
        }
        let batch = match prefetched.take() {
            Some(b) => b,
            None => {
                let ob = outbox.clone();
                match tokio::task::spawn_blocking(move || ob.peek_raw(None, size)).await {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        tracing::error!(code = e.code(), "cannot read the outbox: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = next_backoff(backoff, options.backoff_cap);
                        continue;
                    }
                    Err(e) => {
                        tracing::error!("outbox reader stopped: {e}");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
            }
        };
        if batch.is_empty() {
            finish_removal(&mut removing, &stats).await;
            // What other processes queued: they cannot wake this drain.
            let ob = outbox.clone();
            if let Ok(Ok(joined)) = tokio::task::spawn_blocking(move || ob.rescan()).await {
                if joined > 0 {
                    continue;
                }
            }
            let _ = tokio::time::timeout(RESCAN_EVERY, wake.notified()).await;
            continue;
        }
        let count = batch.len() as u64;
        let last = batch.last().map(|p| p.file.clone()).unwrap_or_default();
        let refs: Vec<&[u8]> = batch.iter().map(|p| p.bytes.as_slice()).collect();
        let ob = outbox.clone();
        let ahead = tokio::task::spawn_blocking(move || ob.peek_raw(Some(&last), size));
        let send =
            upstream
                .control_plane
                .push_raw_events(&upstream.token, &upstream.workspace_id, &refs);
        let (sent, ahead) = tokio::join!(send, ahead);
        drop(refs);
        match sent {
            Ok(ack) if ack.accepted >= count => {
                stats.control_plane_up.store(true, Ordering::Relaxed);
                finish_removal(&mut removing, &stats).await;
                let files: Vec<String> = batch.into_iter().map(|p| p.file).collect();
                let ob = outbox.clone();
                removing = Some((
                    count,
                    tokio::task::spawn_blocking(move || ob.remove(&files)),
                ));
                backoff = options.backoff_base;
                prefetched = match ahead {
                    Ok(Ok(next)) => Some(next),
                    _ => None,
                };
            }
            Ok(ack) => {
                stats.drain_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    accepted = ack.accepted,
                    sent = count,
                    "the control plane acknowledged only part of a batch; retrying in {:?}",
                    backoff
                );
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff, options.backoff_cap);
            }
            Err(e) => {
                stats.drain_failures.fetch_add(1, Ordering::Relaxed);
                stats.control_plane_up.store(false, Ordering::Relaxed);
                tracing::info!(
                    code = e.code(),
                    pending = outbox.len(),
                    "outbox drain paused, retrying in {:?}: {e}",
                    backoff
                );
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff, options.backoff_cap);
            }
        }
    }
}

/// Wait for the removal of the last acknowledged batch. A failed removal leaves the files in
/// place and in the index: they are re-sent (the control plane dedupes them).
async fn finish_removal(
    removing: &mut Option<(u64, tokio::task::JoinHandle<Result<(), OutboxError>>)>,
    stats: &DeliveryStats,
) {
    let Some((count, handle)) = removing.take() else {
        return;
    };
    match handle.await {
        Ok(Ok(())) => {
            stats.drained.fetch_add(count, Ordering::Relaxed);
        }
        Ok(Err(e)) => tracing::error!(
            code = e.code(),
            "acknowledged events could not be removed from the outbox (they will be re-sent): {e}"
        ),
        Err(e) => tracing::error!("outbox remover stopped: {e}"),
    }
}

/// Pull the revocation list now and then every `interval`; keep the last good list when the
/// control plane is unreachable.
pub async fn run_revocations(
    upstream: Upstream,
    verifier: Arc<crate::auth::Verifier>,
    interval: Duration,
) {
    loop {
        refresh_revocations(&upstream, &verifier).await;
        tokio::time::sleep(interval).await;
    }
}

/// One pull of the revocation list. Returns whether it succeeded.
pub async fn refresh_revocations(upstream: &Upstream, verifier: &crate::auth::Verifier) -> bool {
    match upstream
        .control_plane
        .revocations(&upstream.token, &upstream.workspace_id)
        .await
    {
        Ok(list) => match verifier.set_revoked(list.revoked_jtis) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("the revocation list could not be cached on disk: {e}");
                true
            }
        },
        // Our own token refused: the workspace was cut off (revoked, expired). Accepting tokens
        // on a list that can no longer be refreshed would keep revoked ones working forever.
        Err(ControlPlaneError::Refused {
            status: status @ (401 | 403),
            code,
            message,
            ..
        }) => {
            tracing::error!(
                status,
                %code,
                "the control plane refused this sidecar's token for the revocation list: {message}; every token is refused until the workspace is enrolled again"
            );
            verifier.set_refused(format!("{status} {code}: {message}"));
            false
        }
        Err(e) => {
            tracing::info!(code = e.code(), "revocation list not refreshed: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumenflow_contracts::event::{build_event, BuildOptions};
    use serde_json::Map;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let cap = Duration::from_secs(60);
        let mut d = Duration::from_secs(1);
        let mut seen = vec![];
        for _ in 0..8 {
            seen.push(d.as_secs());
            d = next_backoff(d, cap);
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn the_sink_queues_queue_kinds_numbers_all_and_drops_ephemeral_without_upstream() {
        let dir = tempfile::tempdir().expect("tmp");
        let outbox = Arc::new(Outbox::open(&dir.path().join("outbox")).expect("outbox"));
        let seq = SeqCounter::open(&dir.path().join("seq/c.json"), "c").expect("seq");
        let stats = Arc::new(DeliveryStats::default());
        let sink = ConductorSink::new(
            None,
            ClassTable::default(),
            seq,
            outbox.clone(),
            None,
            Arc::new(Notify::new()),
            stats.clone(),
        );
        let mut p = Map::new();
        p.insert("approval_id".into(), "a".into());
        let q = build_event(
            "sidekick:approval_requested",
            "ws",
            p,
            BuildOptions::default(),
        )
        .expect("q");
        let mut p = Map::new();
        p.insert("tool_name".into(), "t".into());
        let e = build_event(
            "agent-runtime:turn_started",
            "ws",
            p,
            BuildOptions::default(),
        )
        .expect("e");
        sink.push(&[e, q.clone()]).expect("push");
        assert_eq!(outbox.len(), 1);
        let queued = outbox.peek(1).expect("peek");
        assert_eq!(queued[0].event.event_id, q.event_id);
        assert_eq!(queued[0].event.seq, Some(2), "numbered in emission order");
        assert_eq!(stats.snapshot().ephemeral_dropped, 1);
    }

    #[test]
    fn ephemeral_pushes_are_stamped_before_they_are_sent_and_keep_emission_order() {
        // EVT-11, BKP-02: the stamper thread stamps, then sends; `seq` is taken at push time.
        let dir = tempfile::tempdir().expect("tmp");
        let outbox = Arc::new(Outbox::open(&dir.path().join("outbox")).expect("outbox"));
        let seq = SeqCounter::open(&dir.path().join("seq/c.json"), "c").expect("seq");
        let ledger_path = dir.path().join("events.jsonl");
        let ledger = Arc::new(Ledger::open(&ledger_path).expect("ledger"));
        let stats = Arc::new(DeliveryStats::default());
        let (tx, mut rx) = mpsc::channel(100);
        let sink = ConductorSink::new(
            Some(ledger),
            ClassTable::default(),
            seq,
            outbox.clone(),
            Some(tx),
            Arc::new(Notify::new()),
            stats.clone(),
        );
        let mut sent_ids = Vec::new();
        for i in 0..5 {
            let mut p = Map::new();
            p.insert("turn_id".into(), format!("t{i}").into());
            let e = build_event(
                "agent-runtime:turn_started",
                "ws",
                p,
                BuildOptions::default(),
            )
            .expect("e");
            sent_ids.push(e.event_id.clone());
            sink.push(&[e]).expect("push");
        }
        let mut received = Vec::new();
        while received.len() < 5 {
            match rx.blocking_recv() {
                Some(event) => {
                    // Sent only once stamped.
                    let (stamped, _) =
                        lumenflow_kernel::events::ledger::read_from(&ledger_path, 0, None)
                            .expect("read");
                    assert!(stamped.iter().any(|s| s.event_id == event.event_id));
                    received.push(event);
                }
                None => panic!("the stamper stopped"),
            }
        }
        let ids: Vec<_> = received.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids, sent_ids);
        let seqs: Vec<_> = received.iter().filter_map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert!(outbox.is_empty());
        assert_eq!(stats.snapshot().ephemeral_dropped, 0);
    }
}
