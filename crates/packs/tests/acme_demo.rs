//! The acme-demo pack against the product documents: the two tests of the pack-authoring
//! quickstart (S2) in Rust, the conformance harness, the load-time refusals, cross-pack delivery
//! and a durable end-to-end run through a real host on a scratch workspace.
//!
//! Requirement ids: EVT-05, EVT-07, EVT-09, EVT-11 (emit), HND-03 to HND-05, HND-07, HND-09
//! (handlers), MAN-04 to MAN-06 (manifest), BKP-03, BKP-07 (backpressure).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lumenflow_contracts::event::KernelEventV2;
use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::events::conformance::{check_emitter, check_handlers};
use lumenflow_kernel::events::emit::{EmitError, MemorySink, PackEmitter};
use lumenflow_kernel::events::handler::{
    HandlerContext, HandlerError, HandlerOutcome, HandlerStatus, PackEventHandler,
};
use lumenflow_kernel::events::host::{PackHost, PackRegistration};
use lumenflow_kernel::events::inbound::{read_rejections, receive};
use lumenflow_kernel::events::ledger::{self, Ledger};
use lumenflow_kernel::events::replay::ReplayLog;
use lumenflow_kernel::events::{ledger_path, replay_log_path};
use lumenflow_kernel::manifest::{parse_manifest, Backpressure, PackManifest, Surface};
use lumenflow_kernel::pack_report::validate_embedded;
use lumenflow_packs::acme_demo::handlers::{recovered_jobs, RECOVERED_JOBS_FILE};
use lumenflow_packs::acme_demo::{
    self, manifest, registration, registration_with, run_job, Completion, FileJobStore, JobContext,
    JobStore, OnRecoveryRequested, ID, JOB_COMPLETED, RECOVERY_REQUESTED,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The inbound event of the quickstart's second test, as bytes on the wire.
const SEED_EVENT: &[u8] = br#"{"schema_version":2,"kind":"conductor:recovery_requested","event_id":"evt-abc","timestamp":"2026-04-20T00:00:00Z","from":"ws-test","payload":{"wu_id":"acme-job-1"}}"#;

fn recovery_event(event_id: &str, wu_id: &str) -> KernelEventV2 {
    KernelEventV2::from_json_value(json!({
        "schema_version": 2,
        "kind": "conductor:recovery_requested",
        "event_id": event_id,
        "timestamp": "2026-04-20T00:00:00Z",
        "from": "ws-test",
        "payload": {"wu_id": wu_id},
    }))
    .unwrap()
}

/// A job store that counts its effects; clones share the count.
#[derive(Clone, Default)]
struct CountingStore {
    marked: Arc<Mutex<Vec<String>>>,
}

impl CountingStore {
    fn count(&self, job_id: &str) -> usize {
        self.marked
            .lock()
            .unwrap()
            .iter()
            .filter(|j| *j == job_id)
            .count()
    }

    fn total(&self) -> usize {
        self.marked.lock().unwrap().len()
    }
}

impl JobStore for CountingStore {
    fn mark_job_recovered(
        &self,
        job_id: &str,
        _ctx: &HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        self.marked.lock().unwrap().push(job_id.to_string());
        Ok(())
    }
}

/// A handler context on a scratch folder, as the host would build it.
struct Scratch {
    dir: tempfile::TempDir,
    replay: ReplayLog,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let replay = ReplayLog::open(&replay_log_path(dir.path(), ID)).unwrap();
        Scratch { dir, replay }
    }

    fn ctx(&self) -> HandlerContext<'_> {
        HandlerContext {
            pack_id: ID,
            replay_log: &self.replay,
            workspace_dir: self.dir.path(),
            state_dir: self.dir.path().join(".lumenflow/state/acme-demo"),
        }
    }
}

fn emitter(sink: Arc<MemorySink>, ledger: Option<Arc<Ledger>>) -> PackEmitter {
    PackEmitter::new(Arc::new(manifest()), "ws-test", sink, ledger)
}

fn host_with(dir: &Path, regs: Vec<PackRegistration>) -> PackHost {
    let mut host = PackHost::new(dir, &[Surface::Http]);
    for reg in regs {
        host.register(reg).unwrap();
    }
    host
}

fn status(
    deliveries: &[lumenflow_kernel::events::host::Delivery],
) -> Vec<(String, HandlerStatus, String)> {
    deliveries
        .iter()
        .map(|d| {
            let o = d
                .outcome()
                .unwrap_or_else(|| panic!("delivery failed: {d:?}"));
            (d.pack_id.clone(), o.status, o.action.clone())
        })
        .collect()
}

fn packs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The manifest and the embedded folder

#[test]
fn the_manifest_is_the_quickstart_manifest_and_passes_pack_validate() {
    // MAN-04, MAN-06: the seed's manifest, accepted by `lumenflow pack validate --builtin`.
    let report = validate_embedded(&acme_demo::PACK);
    assert!(report.passed(), "{}", report.render_text());
    let m = manifest();
    assert_eq!(
        (m.id.as_str(), m.slug(), m.version.as_str()),
        ("acme-demo", "acme-demo", "0.1.0")
    );
    assert_eq!(m.config_key.as_deref(), Some("acme_demo"));
    assert!(m.task_types.is_empty() && m.tools.is_empty() && m.policies.is_empty());
    assert!(
        m.evidence_types.is_empty() && m.state_aliases.is_empty() && m.lane_templates.is_empty()
    );
    assert_eq!(m.emitted_event_kinds, vec![JOB_COMPLETED]);
    assert_eq!(m.subscribed_event_kinds, vec![RECOVERY_REQUESTED]);
    assert!(m.required_approvals.is_empty());
    assert_eq!(m.surfaces_required, vec![Surface::Http]);
    assert_eq!(m.backpressure_policy.len(), 1);
    assert_eq!(
        m.backpressure_policy[JOB_COMPLETED],
        Backpressure::Ephemeral
    );
    assert!(lumenflow_packs::builtin_packs().iter().any(|p| p.id == ID));
}

#[test]
fn the_embedded_files_are_exactly_the_files_of_the_pack_folder() {
    // Nothing forgotten (the hash would miss a change), nothing stale (a deleted file still shipped).
    let folder = packs_dir().join("src/acme_demo");
    let mut on_disk: Vec<(String, Vec<u8>)> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    on_disk.sort();
    assert!(
        std::fs::read_dir(&folder)
            .unwrap()
            .all(|e| !e.unwrap().file_type().unwrap().is_dir()),
        "sub-folders in the pack folder are not embedded: embed them or move them out"
    );
    let mut embedded: Vec<(String, Vec<u8>)> = acme_demo::PACK
        .files
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    embedded.sort();
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&embedded), names(&on_disk));
    assert_eq!(
        embedded, on_disk,
        "an embedded file differs from the file on disk"
    );
}

#[test]
fn registrations_cover_every_builtin_pack_and_register_in_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let regs = lumenflow_packs::registrations();
    let ids: Vec<String> = regs.iter().map(|r| r.manifest.id.clone()).collect();
    let builtin: Vec<&str> = lumenflow_packs::builtin_packs()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, builtin);
    let host = host_with(dir.path(), regs);
    assert!(host.has_subscriber(RECOVERY_REQUESTED));
}

// ---------------------------------------------------------------------------------------------
// The quickstart's two tests

#[test]
fn emits_a_namespaced_kind_through_the_builder() {
    // EVT-09: one push, one event: the declared kind, schema_version 2, an event_id, from = the
    // workspace identity. EVT-05/EVT-06: payload {job_id, result}, id from `<job_id>:completed`.
    let sink = Arc::new(MemorySink::new());
    let emitter = emitter(sink.clone(), None);

    let outcome = run_job(&JobContext {
        emitter: &emitter,
        job_id: "job-1",
    });

    let pushes = sink.pushes();
    assert_eq!(pushes.len(), 1, "pushed exactly once");
    let events = &pushes[0];
    assert_eq!(events[0].kind, "acme-demo:job_completed");
    assert_eq!(events[0].schema_version, 2);
    assert!(!events[0].event_id.is_empty());
    assert_eq!(events[0].from, "ws-test");
    assert_eq!(
        Value::Object(events[0].payload.clone()),
        json!({"job_id": "job-1", "result": "ok"})
    );
    assert_eq!(outcome.result, "ok");
    assert_eq!(outcome.completion, Completion::Sent(events[0].clone()));

    // A retry of the same job re-sends the same id.
    let again = run_job(&JobContext {
        emitter: &emitter,
        job_id: "job-1",
    });
    assert_eq!(
        again.completion.event().unwrap().event_id,
        events[0].event_id
    );
}

#[test]
fn handler_is_idempotent_under_replay() {
    // HND-03, HND-04: first delivery handled, second replayed, the effect ran once (NOT twice).
    let scratch = Scratch::new();
    let store = CountingStore::default();
    let handler = OnRecoveryRequested::new(store.clone());
    let event = recovery_event("evt-abc", "acme-job-1");

    let first = handler.handle(&event, &scratch.ctx()).unwrap();
    let second = handler.handle(&event, &scratch.ctx()).unwrap();

    assert_eq!(first, HandlerOutcome::handled("recovered"));
    assert_eq!(second.status, HandlerStatus::Replayed);
    assert_eq!(second.action, "noop");
    assert_eq!(store.count("acme-job-1"), 1);
    // HND-03: the key format, recorded after the effect.
    assert!(scratch.replay.has("acme-demo:recover:evt-abc"));
}

#[test]
fn recoveries_for_other_packs_jobs_are_ignored() {
    // HND-05: `wu_id` not starting with `acme-job-` is someone else's; nothing runs or is recorded.
    let scratch = Scratch::new();
    let store = CountingStore::default();
    let handler = OnRecoveryRequested::new(store.clone());
    let outcome = handler
        .handle(&recovery_event("evt-1", "WU-042"), &scratch.ctx())
        .unwrap();
    assert_eq!(outcome, HandlerOutcome::ignored("wrong-pack"));
    assert_eq!(store.total(), 0);
    assert!(scratch.replay.is_empty());
    // A malformed payload is an error (the event stays unacknowledged), never a silent ignore.
    let mut bad = recovery_event("evt-2", "acme-job-1");
    bad.payload.clear();
    let err = handler.handle(&bad, &scratch.ctx()).unwrap_err();
    assert!(err.message.contains("wu_id"), "{err}");
    assert_eq!(store.total(), 0);
}

// ---------------------------------------------------------------------------------------------
// Ephemeral emission and the ledger

#[test]
fn a_sink_failure_is_swallowed_and_the_event_is_still_stamped() {
    // BKP-03 (ephemeral: fail silent), EVT-11 (the workspace keeps a stamp of every event).
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(&ledger_path(dir.path())).unwrap());
    let sink = Arc::new(MemorySink::new());
    sink.fail("control plane unreachable");
    let emitter = emitter(sink.clone(), Some(ledger));

    let outcome = run_job(&JobContext {
        emitter: &emitter,
        job_id: "acme-job-7",
    });

    assert_eq!(outcome.result, "ok", "the job succeeded");
    let Completion::Dropped { event, reason } = &outcome.completion else {
        panic!("expected a dropped event, got {:?}", outcome.completion);
    };
    assert!(reason.contains("unreachable"));
    assert_eq!(sink.pushes().len(), 1, "the push was attempted once");
    let (stamped, _) = ledger::read_from(&ledger_path(dir.path()), 0, None).unwrap();
    assert_eq!(stamped, vec![event.clone()]);
}

#[test]
fn emitting_an_undeclared_kind_is_refused() {
    // EVT-07: the emitter only sends kinds of emitted_event_kinds; the error is not swallowed.
    let sink = Arc::new(MemorySink::new());
    let emitter = emitter(sink.clone(), None);
    let (event, err) = emitter
        .emit(
            "acme-demo:job_started",
            serde_json::Map::new(),
            Default::default(),
        )
        .unwrap_err();
    assert!(event.is_none());
    assert!(matches!(err, EmitError::UnknownKind { .. }));
    assert!(err.to_string().starts_with("Unknown kind at emit"), "{err}");
    let (_, err) = emitter
        .emit(
            "acme:job_completed",
            serde_json::Map::new(),
            Default::default(),
        )
        .unwrap_err();
    assert!(
        err.to_string().starts_with("Pack slug prefix mismatch"),
        "{err}"
    );
    assert!(sink.pushes().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Conformance (HND-07)

#[test]
fn the_pack_passes_the_conformance_harness() {
    // Emit: envelope and a stable id under retry. Replay: every subscribed kind delivered twice,
    // handled at most once, with the effect counted by a store the registration captured.
    let event = check_emitter(&manifest(), "ws-test", |emitter| {
        run_job(&JobContext {
            emitter,
            job_id: "acme-job-1",
        });
    })
    .unwrap();
    assert_eq!(event.kind, JOB_COMPLETED);

    let store = CountingStore::default();
    let probe = store.clone();
    let samples = [
        recovery_event("evt-abc", "acme-job-1"),
        recovery_event("evt-def", "other-job-1"),
    ];
    let effects = move |_workspace: &Path, event: &KernelEventV2| {
        probe.count(event.payload["wu_id"].as_str().unwrap_or_default())
    };
    check_handlers(
        move || registration_with(store.clone()),
        &samples,
        Some(&effects),
    )
    .unwrap();

    // The shipped registration (the file-backed store) passes too.
    check_handlers(registration, &samples, None).unwrap();
}

#[test]
fn a_handler_without_its_replay_check_fails_conformance() {
    // HND-07 failure mode: "Handler called twice".
    let store = CountingStore::default();
    let no_replay_check = move || {
        let store = store.clone();
        PackRegistration::new(manifest()).handler(
            RECOVERY_REQUESTED,
            move |event: &KernelEventV2, ctx: &HandlerContext<'_>| {
                let wu_id = event.payload["wu_id"].as_str().unwrap_or_default();
                store.mark_job_recovered(wu_id, ctx)?;
                Ok(HandlerOutcome::handled("recovered"))
            },
        )
    };
    let err = check_handlers(
        no_replay_check,
        &[recovery_event("evt-abc", "acme-job-1")],
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("handler called twice"), "{err}");

    // Replay check in the wrong place: the effect runs before the check, so it runs again even
    // though the handler reports `replayed`. The effect probe catches it.
    let store = CountingStore::default();
    let probe = store.clone();
    let effect_before_check = move || {
        let store = store.clone();
        PackRegistration::new(manifest()).handler(
            RECOVERY_REQUESTED,
            move |event: &KernelEventV2, ctx: &HandlerContext<'_>| {
                let key = format!("acme-demo:recover:{}", event.event_id);
                store
                    .mark_job_recovered(event.payload["wu_id"].as_str().unwrap_or_default(), ctx)?;
                if ctx.replay_log.has(&key) {
                    return Ok(HandlerOutcome::replayed());
                }
                ctx.replay_log
                    .put(&key)
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                Ok(HandlerOutcome::handled("recovered"))
            },
        )
    };
    let effects = move |_: &Path, e: &KernelEventV2| {
        probe.count(e.payload["wu_id"].as_str().unwrap_or_default())
    };
    let err = check_handlers(
        effect_before_check,
        &[recovery_event("evt-abc", "acme-job-1")],
        Some(&effects),
    )
    .unwrap_err();
    assert!(err.to_string().contains("handler called twice"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Refusals at load (MAN-05, BKP-07)

fn with_emitted(kind: &str, backpressure: bool) -> PackManifest {
    let mut m = manifest();
    m.emitted_event_kinds = vec![kind.to_string()];
    m.backpressure_policy.clear();
    if backpressure {
        m.backpressure_policy
            .insert(kind.to_string(), Backpressure::Ephemeral);
    }
    m
}

#[test]
fn inconsistent_manifests_are_refused_at_registration() {
    let dir = tempfile::tempdir().unwrap();
    let handler = || OnRecoveryRequested::new(CountingStore::default());
    let register = |m: PackManifest, with_handler: bool| {
        let mut host = PackHost::new(dir.path(), &[Surface::Http]);
        let mut reg = PackRegistration::new(m);
        if with_handler {
            reg = reg.handler(RECOVERY_REQUESTED, handler());
        }
        host.register(reg).unwrap_err()
    };

    // MAN-05: an emitted kind outside the slug's namespace.
    let err = register(with_emitted("acme:job_completed", true), true);
    assert!(
        err.to_string().starts_with("Pack slug prefix mismatch"),
        "{err}"
    );
    assert_eq!(err.code(), "PACK_SLUG_PREFIX_MISMATCH");

    // BKP-07: an emitted kind without ephemeral-or-queue.
    let err = register(with_emitted(JOB_COMPLETED, false), true);
    assert!(
        err.to_string()
            .starts_with("Missing backpressure_policy entry"),
        "{err}"
    );
    assert_eq!(err.code(), "MISSING_BACKPRESSURE_POLICY");

    // MAN-05: a subscribed kind with no handler.
    let err = register(manifest(), false);
    assert_eq!(err.code(), "MISSING_HANDLER");
    assert!(
        err.to_string().contains("conductor:recovery_requested"),
        "{err}"
    );

    // A surface the runtime does not offer (Q10).
    let mut m = manifest();
    m.surfaces_required = vec![Surface::SidekickChannel];
    assert_eq!(register(m, true).code(), "SURFACE_UNAVAILABLE");
}

#[test]
fn pack_validate_reports_the_same_phrases_for_the_manifest_file() {
    // The same two mistakes in manifest.yaml fail `lumenflow pack validate --builtin`.
    let yaml = String::from_utf8(
        acme_demo::PACK
            .files
            .iter()
            .find(|(p, _)| *p == "manifest.yaml")
            .unwrap()
            .1
            .to_vec(),
    )
    .unwrap();
    for (broken, phrase) in [
        (
            yaml.replace(
                "emitted_event_kinds: [acme-demo:job_completed]",
                "emitted_event_kinds: [acme:job_completed]",
            )
            .replace(
                "  acme-demo:job_completed: ephemeral",
                "  acme:job_completed: ephemeral",
            ),
            "Pack slug prefix mismatch",
        ),
        (
            yaml.replace(
                "backpressure_policy:\n  acme-demo:job_completed: ephemeral",
                "backpressure_policy: {}",
            ),
            "Missing backpressure_policy entry",
        ),
    ] {
        assert_ne!(broken, yaml, "the replacement must apply");
        let files: &'static [(&'static str, &'static [u8])] = Box::leak(
            vec![(
                "manifest.yaml",
                &*Box::leak(broken.into_bytes().into_boxed_slice()),
            )]
            .into_boxed_slice(),
        );
        let report = validate_embedded(&EmbeddedPack { id: ID, files });
        assert!(!report.passed());
        assert!(
            report.render_text().contains(phrase),
            "{}",
            report.render_text()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-pack subscription (HND-09)

#[test]
fn another_pack_can_subscribe_to_acme_demo_events() {
    let dir = tempfile::tempdir().unwrap();
    let audit = parse_manifest(SourceFile::new(
        "acme-audit/manifest.yaml",
        "id: acme-audit\nversion: 0.1.0\ntask_types: []\nsubscribed_event_kinds: [acme-demo:job_completed]\n".to_string(),
    ))
    .unwrap()
    .manifest;
    let seen: Arc<Mutex<Vec<KernelEventV2>>> = Arc::default();
    let recorder = seen.clone();
    let host = host_with(
        dir.path(),
        vec![
            registration_with(CountingStore::default()),
            PackRegistration::new(audit).handler(
                JOB_COMPLETED,
                move |event: &KernelEventV2, _: &HandlerContext<'_>| {
                    recorder.lock().unwrap().push(event.clone());
                    Ok(HandlerOutcome::handled("audited"))
                },
            ),
        ],
    );

    let sink = Arc::new(MemorySink::new());
    let emitter = host.emitter(ID, "ws-test", sink.clone(), None).unwrap();
    run_job(&JobContext {
        emitter: &emitter,
        job_id: "acme-job-1",
    });
    let emitted = sink.pushes()[0][0].clone();

    // Back in through the wire path, as the control plane would deliver it.
    let (_, deliveries) = receive(&host, &serde_json::to_vec(&emitted).unwrap()).unwrap();
    assert_eq!(
        status(&deliveries),
        vec![(
            "acme-audit".to_string(),
            HandlerStatus::Handled,
            "audited".to_string()
        )]
    );
    assert_eq!(*seen.lock().unwrap(), vec![emitted]);
}

// ---------------------------------------------------------------------------------------------
// Durable end to end

#[test]
fn a_real_host_recovers_a_job_once_across_redelivery_and_restart() {
    // HND-03/HND-04 on disk: the effect file, the replay log and the ledger of a real workspace.
    let ws = tempfile::tempdir().unwrap();
    let state_dir = ws.path().join(".lumenflow/state/acme-demo");
    let replay_file = replay_log_path(ws.path(), ID);

    let host = host_with(ws.path(), vec![registration()]);
    let (event, first) = receive(&host, SEED_EVENT).unwrap();
    let (_, second) = receive(&host, SEED_EVENT).unwrap();
    assert_eq!(event.event_id, "evt-abc");
    assert_eq!(
        status(&first),
        vec![(
            ID.to_string(),
            HandlerStatus::Handled,
            "recovered".to_string()
        )]
    );
    assert_eq!(
        status(&second),
        vec![(ID.to_string(), HandlerStatus::Replayed, "noop".to_string())]
    );

    let jobs = recovered_jobs(&state_dir).unwrap();
    assert_eq!(jobs.keys().collect::<Vec<_>>(), vec!["acme-job-1"]);
    assert!(jobs["acme-job-1"]["recovered_at"].as_str().is_some());
    let replay_lines: Vec<Value> = std::fs::read_to_string(&replay_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replay_lines.len(), 1);
    assert_eq!(replay_lines[0]["key"], "acme-demo:recover:evt-abc");
    // Nothing but the effect file is left in the state folder (no temp files).
    let leftovers: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![RECOVERED_JOBS_FILE]);

    // A restarted runtime still knows the event.
    drop(host);
    let host = host_with(ws.path(), vec![registration()]);
    let (_, third) = receive(&host, SEED_EVENT).unwrap();
    assert_eq!(status(&third)[0].1, HandlerStatus::Replayed);
    assert_eq!(recovered_jobs(&state_dir).unwrap(), jobs);

    // The emitting side stamps its event in the workspace ledger (EVT-11, Q34).
    let ledger = Arc::new(Ledger::open(&ledger_path(ws.path())).unwrap());
    let emitter = host
        .emitter(ID, "ws-test", Arc::new(MemorySink::new()), Some(ledger))
        .unwrap();
    let done = run_job(&JobContext {
        emitter: &emitter,
        job_id: "acme-job-1",
    });
    let (stamped, _) = ledger::read_from(&ledger_path(ws.path()), 0, Some(JOB_COMPLETED)).unwrap();
    assert_eq!(stamped.len(), 1);
    assert_eq!(Some(&stamped[0]), done.completion.event());
}

#[test]
fn bad_inbound_events_are_rejected_recorded_and_never_reach_the_handler() {
    let ws = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = OnRecoveryRequested::new(CountingStore::default());
    let host = host_with(
        ws.path(),
        vec![PackRegistration::new(manifest()).handler(
            RECOVERY_REQUESTED,
            move |event: &KernelEventV2, ctx: &HandlerContext<'_>| {
                counter.fetch_add(1, Ordering::SeqCst);
                inner.handle(event, ctx)
            },
        )],
    );
    let seed: Value = serde_json::from_slice(SEED_EVENT).unwrap();
    let with = |pointer: &str, value: Value| {
        let mut v = seed.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        serde_json::to_vec(&v).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "EVENT_NOT_JSON"),
        (
            with("/schema_version", json!(1)),
            "EVENT_SCHEMA_VERSION_UNSUPPORTED",
        ),
        (
            with("/kind", json!("sidekick:command_received")),
            "NO_SUBSCRIBER",
        ),
        (
            with("/payload", json!({"reason": "no wu_id"})),
            "EVENT_PAYLOAD_INVALID",
        ),
    ];
    for (bytes, code) in &cases {
        let rejection = receive(&host, bytes).unwrap_err();
        assert_eq!(rejection.code, *code, "{rejection}");
    }
    let recorded = read_rejections(ws.path());
    let codes: Vec<&str> = recorded
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, cases.iter().map(|(_, c)| *c).collect::<Vec<_>>());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the handler was never called"
    );
    assert!(!ws
        .path()
        .join(".lumenflow/state/acme-demo")
        .join(RECOVERED_JOBS_FILE)
        .exists());
}

// ---------------------------------------------------------------------------------------------
// The file-backed job store

#[test]
fn the_file_job_store_is_upsert_shaped_and_never_overwrites_what_it_cannot_read() {
    let scratch = Scratch::new();
    let ctx = scratch.ctx();
    let store = FileJobStore::default();
    store.mark_job_recovered("acme-job-1", &ctx).unwrap();
    let once = recovered_jobs(&ctx.state_dir).unwrap();
    store.mark_job_recovered("acme-job-1", &ctx).unwrap();
    assert_eq!(
        recovered_jobs(&ctx.state_dir).unwrap(),
        once,
        "a second mark changes nothing"
    );
    store.mark_job_recovered("acme-job-2", &ctx).unwrap();
    assert_eq!(recovered_jobs(&ctx.state_dir).unwrap().len(), 2);

    let file = ctx.state_dir.join(RECOVERED_JOBS_FILE);
    std::fs::write(&file, "{ torn").unwrap();
    let err = store.mark_job_recovered("acme-job-3", &ctx).unwrap_err();
    assert!(err.message.contains("not valid JSON"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{ torn");
}

// ---------------------------------------------------------------------------------------------
// By hand: step 7 of docs/pack-authoring.md

/// Run a job and deliver a recovery request in the workspace named by `ACME_DEMO_WORKSPACE`, so
/// `lumenflow events tail --follow` there shows the event. Ignored: it writes outside a temp folder.
#[test]
#[ignore = "writes into the workspace named by ACME_DEMO_WORKSPACE"]
fn trigger_a_job_in_a_workspace() {
    let Some(ws) = std::env::var_os("ACME_DEMO_WORKSPACE").map(PathBuf::from) else {
        panic!("set ACME_DEMO_WORKSPACE to a folder made by `lumenflow init`");
    };
    let host = host_with(&ws, vec![registration()]);
    let ledger = Arc::new(Ledger::open(&ledger_path(&ws)).unwrap());
    let sink = Arc::new(MemorySink::new()); // no control plane yet: the ledger is the wire
    let emitter = host.emitter(ID, "ws-demo", sink, Some(ledger)).unwrap();
    let done = run_job(&JobContext {
        emitter: &emitter,
        job_id: "acme-job-1",
    });
    println!(
        "run_job: {:?}",
        done.completion.event().map(|e| &e.event_id)
    );
    let (_, deliveries) = receive(&host, SEED_EVENT).unwrap();
    println!("recovery_requested: {:?}", status(&deliveries));
}

// ---------------------------------------------------------------------------------------------
// The authoring guide shows this code

/// Every `rust` and `yaml` block of docs/pack-authoring.md must appear, line for line (leading
/// whitespace aside), in a file of the pack or of this test, so the guide cannot drift from code
/// that compiles and passes.
#[test]
fn every_code_block_of_the_authoring_guide_is_real_pack_code() {
    let guide_path = packs_dir().join("../../docs/pack-authoring.md");
    let guide = std::fs::read_to_string(&guide_path).unwrap();
    let mut sources: Vec<(String, String)> = acme_demo::PACK
        .files
        .iter()
        .map(|(p, b)| {
            (
                format!("src/acme_demo/{p}"),
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect();
    sources.push((
        "tests/acme_demo.rs".into(),
        std::fs::read_to_string(packs_dir().join("tests/acme_demo.rs")).unwrap(),
    ));
    let trimmed = |text: &str| {
        text.lines()
            .map(str::trim)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };

    let mut checked = 0;
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .collect();
        if !matches!(lang.trim(), "rust" | "yaml") {
            continue;
        }
        let block = trimmed(&block.join("\n"));
        let found = sources.iter().any(|(_, text)| {
            let text = trimmed(text);
            text.windows(block.len()).any(|w| w == block.as_slice())
        });
        assert!(
            found,
            "this {lang} block of docs/pack-authoring.md is not in the pack's code:\n{}",
            block.join("\n")
        );
        checked += 1;
    }
    assert!(
        checked >= 6,
        "expected the guide to show the pack's code, found {checked} blocks"
    );
}
