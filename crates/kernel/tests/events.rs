//! The pack event bus seen from the kernel: emit checks, host registration, routing, inbound
//! rejection (EVT-07, EVT-08, MAN-05, BKP-07, HND-01, HND-09, Q7, Q13, Q43).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lumenflow_contracts::event::{build_event, BuildOptions, KernelEventV2};
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::events::emit::{check_emit, MemorySink, PackEmitter};
use lumenflow_kernel::events::handler::{
    HandlerContext, HandlerError, HandlerOutcome, HandlerStatus,
};
use lumenflow_kernel::events::host::{DeliveryResult, PackHost, PackRegistration};
use lumenflow_kernel::events::{inbound, ledger};
use lumenflow_kernel::manifest::{parse_manifest, PackManifest, Surface};
use serde_json::{json, Map, Value};

fn manifest(extra: &str) -> PackManifest {
    let text = format!("id: notes-pack\nversion: 1.0.0\ntask_types: []\n{extra}");
    parse_manifest(SourceFile::new("manifest.yaml", text))
        .expect("valid manifest")
        .manifest
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

const EMITS: &str = "emitted_event_kinds: [notes-pack:note_added, emit:energy_meter_recorded]\nbackpressure_policy:\n  notes-pack:note_added: ephemeral\n  emit:energy_meter_recorded: ephemeral\n";

#[test]
fn emit_checks_use_the_documented_phrases() {
    // EVT-07, EVT-08, Q13
    let m = manifest(EMITS);
    check_emit(&m, "notes-pack:note_added").expect("declared kind");
    check_emit(&m, "emit:energy_meter_recorded").expect("shared namespace");
    let e = check_emit(&m, "notes-pack:note_removed").expect_err("undeclared");
    assert!(e.to_string().starts_with("Unknown kind at emit"), "{e}");
    let e = check_emit(&m, "other-pack:note_added").expect_err("foreign");
    assert!(
        e.to_string().starts_with("Pack slug prefix mismatch"),
        "{e}"
    );
    assert_eq!(e.code(), "PACK_SLUG_PREFIX_MISMATCH");
}

#[test]
fn the_emitter_stamps_from_with_the_identity_and_refuses_intrinsic_kinds() {
    // ENR-08/ENR-10: `from` is the workspace identity, never a caller-supplied value.
    let m = Arc::new(manifest(EMITS));
    let sink = Arc::new(MemorySink::new());
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = Arc::new(ledger::Ledger::open(&dir.path().join("events.jsonl")).expect("ledger"));
    let emitter = PackEmitter::new(m, "ws-42", sink.clone(), Some(ledger));
    let e = emitter
        .emit(
            "notes-pack:note_added",
            map(json!({"from": "spoofed", "note": 1})),
            BuildOptions::idempotent("n1"),
        )
        .expect("emits");
    assert_eq!(e.from, "ws-42");
    assert_eq!(
        e.payload["from"], "spoofed",
        "a payload field named from stays payload"
    );
    assert_eq!(sink.pushes().len(), 1);
    let (stamped, _) = ledger::read_from(&dir.path().join("events.jsonl"), 0, None).expect("read");
    assert_eq!(stamped, vec![e]);
    let (_, err) = emitter
        .emit(
            "agent-runtime:tool_called",
            Map::new(),
            BuildOptions::default(),
        )
        .expect_err("intrinsic");
    assert_eq!(err.code(), "PACK_SLUG_PREFIX_MISMATCH");
    // A failing sink still leaves the stamp, and says so.
    sink.fail("control plane unreachable");
    let (built, err) = emitter
        .emit(
            "notes-pack:note_added",
            Map::new(),
            BuildOptions::idempotent("n2"),
        )
        .expect_err("sink down");
    assert_eq!(err.code(), "EVENT_SINK_FAILED");
    assert!(built.is_some());
    let (stamped, _) = ledger::read_from(&dir.path().join("events.jsonl"), 0, None).expect("read");
    assert_eq!(stamped.len(), 2);
}

fn counting_handler(
    counter: Arc<AtomicUsize>,
) -> impl Fn(&KernelEventV2, &HandlerContext<'_>) -> Result<HandlerOutcome, HandlerError> {
    move |event, ctx| {
        let key = format!("{}:{}", ctx.pack_id, event.event_id);
        if ctx.replay_log.has(&key) {
            return Ok(HandlerOutcome::replayed());
        }
        counter.fetch_add(1, Ordering::SeqCst);
        ctx.replay_log
            .put(&key)
            .map_err(|e| HandlerError::new(e.to_string()))?;
        Ok(HandlerOutcome::handled("counted"))
    }
}

#[test]
fn registration_refuses_inconsistent_packs_and_registers_nothing() {
    // MAN-05, BKP-07, Q10, Q43
    let dir = tempfile::tempdir().expect("tmp");
    let mut host = PackHost::new(dir.path(), &[Surface::Http]);
    let cases: Vec<(PackRegistration, &str)> = vec![
        (
            PackRegistration::new(manifest("emitted_event_kinds: [notes-pack:a]\n")),
            "Missing backpressure_policy entry",
        ),
        (
            PackRegistration::new(manifest(
                "emitted_event_kinds: [other:a]\nbackpressure_policy: {other:a: queue}\n",
            )),
            "Pack slug prefix mismatch",
        ),
        (
            PackRegistration::new(manifest(
                "subscribed_event_kinds: [conductor:recovery_requested]\n",
            )),
            "registers no handler",
        ),
        (
            PackRegistration::new(manifest("")).handler(
                "conductor:recovery_requested",
                counting_handler(Arc::default()),
            ),
            "does not subscribe",
        ),
        (
            PackRegistration::new(manifest("surfaces_required: [sidekick-channel]\n")),
            "surface `sidekick-channel`",
        ),
    ];
    for (reg, phrase) in cases {
        let err = host.register(reg).expect_err(phrase);
        assert!(err.to_string().contains(phrase), "{err}");
    }
    assert!(!host.has_subscriber("conductor:recovery_requested"));
}

fn recovery(event_id: &str, wu_id: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"schema_version": 2, "kind": "conductor:recovery_requested", "event_id": event_id,
        "timestamp": "2026-04-20T00:00:00Z", "from": "ws-test", "payload": {"wu_id": wu_id}}),
    )
    .expect("json")
}

#[test]
fn inbound_events_reach_every_subscriber_across_packs_and_bad_ones_none() {
    // HND-09 cross-pack routing; EVT-10 shape; bad input rejected and recorded.
    let dir = tempfile::tempdir().expect("tmp");
    let mut host = PackHost::new(dir.path(), &[Surface::Http]);
    let a = Arc::new(AtomicUsize::new(0));
    let b = Arc::new(AtomicUsize::new(0));
    host.register(
        PackRegistration::new(manifest(
            "subscribed_event_kinds: [conductor:recovery_requested]\n",
        ))
        .handler("conductor:recovery_requested", counting_handler(a.clone())),
    )
    .expect("first pack");
    let other = parse_manifest(SourceFile::new(
        "m.yaml",
        "id: other-pack\nversion: 1.0.0\ntask_types: []\nsubscribed_event_kinds: [conductor:recovery_requested]\n",
    ))
    .expect("manifest")
    .manifest;
    host.register(
        PackRegistration::new(other)
            .handler("conductor:recovery_requested", counting_handler(b.clone())),
    )
    .expect("second pack");

    for _ in 0..2 {
        let (event, deliveries) =
            inbound::receive(&host, &recovery("evt-abc", "acme-job-1")).expect("accepted");
        assert_eq!(event.payload["wu_id"], "acme-job-1");
        assert_eq!(deliveries.len(), 2);
    }
    assert_eq!(
        (a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)),
        (1, 1),
        "once each despite re-delivery"
    );

    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "EVENT_NOT_JSON"),
        (serde_json::to_vec(&json!({"schema_version": 1, "kind": "task_created"})).expect("j"), "EVENT_SCHEMA_VERSION_UNSUPPORTED"),
        (
            serde_json::to_vec(&json!({"schema_version": 2, "kind": "campus:pue_sampled", "event_id": "e1",
                "timestamp": "2026-04-20T00:00:00Z", "from": "ws", "payload": {}}))
            .expect("j"),
            "NO_SUBSCRIBER",
        ),
        (
            serde_json::to_vec(&json!({"schema_version": 2, "kind": "conductor:recovery_requested", "event_id": "e2",
                "timestamp": "2026-04-20T00:00:00Z", "from": "ws", "payload": {"wu": 3}}))
            .expect("j"),
            "EVENT_PAYLOAD_INVALID",
        ),
        (vec![0xff, 0xfe, 0x00], "EVENT_NOT_JSON"),
    ];
    for (body, code) in &bad {
        let rejection = inbound::receive(&host, body).expect_err(code);
        assert_eq!(rejection.code, *code, "{rejection}");
    }
    assert_eq!(
        (a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)),
        (1, 1),
        "no handler saw a bad event"
    );
    let recorded = inbound::read_rejections(dir.path());
    assert_eq!(recorded.len(), bad.len());
    assert_eq!(recorded[3]["code"], "EVENT_PAYLOAD_INVALID");
}

#[test]
fn a_failing_or_panicking_handler_is_a_failed_delivery_not_a_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut host = PackHost::new(dir.path(), &[Surface::Http]);
    host.register(
        PackRegistration::new(manifest(
            "subscribed_event_kinds: [conductor:recovery_requested]\n",
        ))
        .handler(
            "conductor:recovery_requested",
            |_: &KernelEventV2, _: &HandlerContext<'_>| -> Result<HandlerOutcome, HandlerError> {
                panic!("boom")
            },
        ),
    )
    .expect("registers");
    let event = build_event(
        "conductor:recovery_requested",
        "ws",
        map(json!({"wu_id": "x"})),
        BuildOptions::idempotent("k"),
    )
    .expect("event");
    let deliveries = host.deliver(&event);
    assert!(
        matches!(&deliveries[0].result, DeliveryResult::Failed { error } if error == "handler panicked")
    );
    assert!(deliveries[0]
        .outcome()
        .is_none_or(|o| o.status != HandlerStatus::Handled));
}

#[test]
fn slugs_are_one_packs_and_runtime_folders_are_off_limits() {
    // A slug names a pack's event namespace and its `.lumenflow/state/<slug>/` folder.
    let dir = tempfile::tempdir().expect("tmp");
    let mut host = PackHost::new(dir.path(), &[Surface::Http]);
    host.register(PackRegistration::new(manifest("")))
        .expect("first");
    let impostor = parse_manifest(SourceFile::new(
        "m.yaml",
        "id: impostor\nslug: notes-pack\nversion: 1.0.0\ntask_types: []\n",
    ))
    .expect("manifest")
    .manifest;
    let err = host
        .register(PackRegistration::new(impostor))
        .expect_err("taken");
    assert_eq!(err.code(), "PACK_SLUG_TAKEN");
    let err = parse_manifest(SourceFile::new(
        "m.yaml",
        "id: sneaky\nslug: conductor\nversion: 1.0.0\ntask_types: []\n",
    ))
    .expect_err("reserved slug refused by the manifest rules");
    assert!(
        err.to_string().contains("reserved for the runtime"),
        "{err}"
    );
}

#[test]
fn ids_with_control_characters_never_reach_a_handler() {
    // An event id becomes a replay key: a newline in it would make every redelivery fail after
    // the effect ran.
    let dir = tempfile::tempdir().expect("tmp");
    let mut host = PackHost::new(dir.path(), &[Surface::Http]);
    let count = Arc::new(AtomicUsize::new(0));
    host.register(
        PackRegistration::new(manifest(
            "subscribed_event_kinds: [conductor:recovery_requested]\n",
        ))
        .handler(
            "conductor:recovery_requested",
            counting_handler(count.clone()),
        ),
    )
    .expect("registers");
    let rejection =
        inbound::receive(&host, &recovery("evt\nabc", "acme-job-9")).expect_err("refused");
    assert_eq!(rejection.code, "EVENT_INVALID");
    let long = "e".repeat(300);
    assert!(inbound::receive(&host, &recovery(&long, "acme-job-9")).is_err());
    assert_eq!(count.load(Ordering::SeqCst), 0);
}
