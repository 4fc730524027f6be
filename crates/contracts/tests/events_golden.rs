//! Golden wire files of the v2 events, one per known kind: `fixtures/events/v2/<kind>.json` with
//! `:` written as `__`. A change to the wire shape of any event shows up as a diff of these files.
//!
//! - KND-01: every known kind is representable, validated and built through the one builder;
//! - EVT-02: the files show the whole envelope `{schema_version, kind, event_id, timestamp, from,
//!   payload}`;
//! - EVT-04: `event_id` is the content hash of the event, so the files are reproducible;
//! - SDK-03: each file's payload parses to the right variant of the payload tagged union.
//!
//! Regenerate after an intended wire change with
//! `UPDATE_GOLDEN=1 cargo test -p lumenflow-contracts --test events_golden`, then review the diff.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use lumenflow_contracts::canonical_json::canonical_hash;
use lumenflow_contracts::digest::Sha256Digest;
use lumenflow_contracts::event::{build_event, BuildOptions, KernelEventV2};
use lumenflow_contracts::kinds::{
    AgentRuntimeKind, CampusKind, ConductorKind, EmitKind, KnownKind, SidekickKind,
    SoftwareDeliveryKind, TenantEvidenceKind,
};
use lumenflow_contracts::payloads::{
    parse_payload, ApprovalRequested, CleanupStatus, CommandReceived, CurtailmentWindow,
    EnergyMeterRecorded, EnergyProvenance, EnergySource, EnergyUnit, FacilityEnergyRecorded,
    FacilityRegistered, GateResult, GpuAttestationRecorded, NodeInventoryUpdated, Payload,
    PowerSignalIngested, ProofBundleExported, ProofRecordRead, PueSampled, RecordKind,
    RecoveryRequested, ToolCalled, ToolOutcome, TurnAborted, TurnCompleted, TurnStarted,
    TurnStatus, WorkspaceUpdated, WuClaimed,
};
use lumenflow_contracts::time::Timestamp;
use serde_json::{json, Map, Value};

const FROM: &str = "ws-42";
const EMITTED_AT: &str = "2026-04-20T00:00:00Z";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/events/v2")
}

fn golden_path(kind: KnownKind) -> PathBuf {
    golden_dir().join(format!("{}.json", kind.as_str().replace(':', "__")))
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("sample timestamp")
}

fn digest_of(value: Value) -> Sha256Digest {
    Sha256Digest::parse_hex(&canonical_hash(&value)).expect("canonical hash is 64 hex digits")
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("expected an object, found {other}"),
    }
}

/// A complete, realistic payload of every known kind. The wildcard-free match makes a new kind
/// fail to compile here until it has a sample (and so a golden file).
fn sample(kind: KnownKind) -> Payload {
    match kind {
        KnownKind::Conductor(ConductorKind::RecoveryRequested) => {
            Payload::RecoveryRequested(RecoveryRequested {
                wu_id: "WU-042".into(),
                reason: Some("turn-0007 aborted with cleanup_status needs_recovery".into()),
                requested_by: Some("ws-42:phone:ops-phone-1".into()),
            })
        }
        KnownKind::Conductor(ConductorKind::WorkspaceUpdated) => {
            Payload::WorkspaceUpdated(WorkspaceUpdated {
                config_hash: digest_of(json!({"workspace": "ws-42", "revision": 7})).to_string(),
                tools_etag: Some("tools-3f9a2c".into()),
            })
        }
        KnownKind::AgentRuntime(AgentRuntimeKind::TurnStarted) => {
            Payload::TurnStarted(TurnStarted {
                turn_id: "turn-0007".into(),
                goal: Some("run gates on WU-042".into()),
                session_id: Some("sess-20260420-a".into()),
            })
        }
        KnownKind::AgentRuntime(AgentRuntimeKind::TurnCompleted) => {
            Payload::TurnCompleted(TurnCompleted {
                turn_id: "turn-0007".into(),
                status: TurnStatus::Succeeded,
                tool_calls: Some(3),
                summary: Some("all gates passed on WU-042".into()),
            })
        }
        KnownKind::AgentRuntime(AgentRuntimeKind::TurnAborted) => {
            Payload::TurnAborted(TurnAborted {
                turn_id: "turn-0008".into(),
                cleanup_status: CleanupStatus::NeedsRecovery,
                recovery_action: Some("pnpm wu:recover --id WU-042".into()),
                reason: Some("sidecar restarted while the claim was half written".into()),
                session_id: Some("sess-20260420-a".into()),
            })
        }
        KnownKind::AgentRuntime(AgentRuntimeKind::ToolCalled) => Payload::ToolCalled(ToolCalled {
            tool_name: "software-delivery:gates".into(),
            envelope_hash: digest_of(
                json!({"tool_name": "software-delivery:gates", "input": {"wu_id": "WU-042"}}),
            ),
            outcome: ToolOutcome::Success,
            error_code: None,
            receipt_id: Some("rcpt-20260420-000117".into()),
        }),
        KnownKind::SoftwareDelivery(SoftwareDeliveryKind::WuClaimed) => {
            Payload::WuClaimed(WuClaimed {
                wu_id: "WU-042".into(),
                lane: "Content: Site Comms".into(),
                worktree_path: Some("worktrees/content-site-comms-wu-042".into()),
            })
        }
        KnownKind::SoftwareDelivery(SoftwareDeliveryKind::GatePassed) => {
            Payload::GatePassed(GateResult {
                wu_id: Some("WU-042".into()),
                gate: "lint".into(),
                duration_ms: Some(4210),
                exit_code: Some(0),
                summary: Some("0 problems".into()),
            })
        }
        KnownKind::SoftwareDelivery(SoftwareDeliveryKind::GateFailed) => {
            Payload::GateFailed(GateResult {
                wu_id: Some("WU-042".into()),
                gate: "test".into(),
                duration_ms: Some(18_342),
                exit_code: Some(1),
                summary: Some("2 of 214 tests failed".into()),
            })
        }
        KnownKind::Sidekick(SidekickKind::ApprovalRequested) => {
            Payload::ApprovalRequested(ApprovalRequested {
                approval_id: "tenant-evidence:export".into(),
                tool_name: Some("proof:export_attested_bundle".into()),
                reason: Some("export the April proof bundle of tenant acme".into()),
                expires_at: Some(ts("2026-04-21T00:00:00Z")),
            })
        }
        KnownKind::Sidekick(SidekickKind::CommandReceived) => {
            Payload::CommandReceived(CommandReceived {
                command: "wu:status".into(),
                args: Some(object(json!({"wu_id": "WU-042", "verbose": true}))),
                device_id: Some("ops-phone-1".into()),
            })
        }
        KnownKind::Campus(CampusKind::FacilityRegistered) => {
            Payload::FacilityRegistered(FacilityRegistered {
                facility_id: "campus-fac-001".into(),
                name: Some("North Campus Hall A".into()),
                region: Some("eu-west-1".into()),
            })
        }
        KnownKind::Campus(CampusKind::NodeInventoryUpdated) => {
            Payload::NodeInventoryUpdated(NodeInventoryUpdated {
                facility_id: "campus-fac-001".into(),
                node_count: 2,
                nodes: Some(vec![
                    json!({"node_id": "node-a01", "capability_tier": "tier-accelerated-2", "provider_family": "family-a", "accelerators": 8}),
                    json!({"node_id": "node-a02", "capability_tier": "tier-general-1", "provider_family": "family-b", "accelerators": 0}),
                ]),
            })
        }
        KnownKind::Campus(CampusKind::PueSampled) => Payload::PueSampled(PueSampled {
            facility_id: "campus-fac-001".into(),
            pue: 1.18,
            sampled_at: ts("2026-06-13T16:00:00.000Z"),
        }),
        KnownKind::Campus(CampusKind::PowerSignalIngested) => {
            Payload::PowerSignalIngested(PowerSignalIngested {
                facility_id: "campus-fac-001".into(),
                watts: 1_091_111.5,
                observed_at: ts("2026-06-13T16:00:00.000Z"),
                source: "facility_meter:utility-smart-meter-a".into(),
            })
        }
        KnownKind::Campus(CampusKind::FacilityEnergyRecorded) => {
            Payload::FacilityEnergyRecorded(FacilityEnergyRecorded {
                facility_id: "campus-fac-001".into(),
                valid_from: ts("2026-06-13T15:45:00.000Z"),
                valid_to: ts("2026-06-13T16:00:00.000Z"),
                quantity_joules: 982_000.0,
            })
        }
        KnownKind::Campus(CampusKind::GpuAttestationRecorded) => {
            Payload::GpuAttestationRecorded(GpuAttestationRecorded {
                facility_id: "campus-fac-001".into(),
                node_id: "node-a01".into(),
                attestation_id: "att-7c1e42".into(),
                verifier: "attestation-service:campus-eu".into(),
                verified_at: ts("2026-06-13T15:59:30.250Z"),
                evidence_digest: Sha256Digest::of(b"eat-token:att-7c1e42"),
                measurements_digest: digest_of(
                    json!({"firmware": "fw-measure-01", "driver": "drv-measure-07"}),
                ),
            })
        }
        KnownKind::TenantEvidence(TenantEvidenceKind::ProofRecordRead) => {
            Payload::ProofRecordRead(ProofRecordRead {
                record_kind: RecordKind::Gate,
                record_id: "gate-rec-0042".into(),
            })
        }
        KnownKind::TenantEvidence(TenantEvidenceKind::ProofBundleExported) => {
            Payload::ProofBundleExported(ProofBundleExported {
                bundle_id: "bundle-acme-2026-04".into(),
                content_digest: digest_of(
                    json!({"bundle_id": "bundle-acme-2026-04", "records": 4}),
                ),
                approval_id: "tenant-evidence:export".into(),
            })
        }
        // The seed's `campus:facility_energy` example (S0, EMI-04), with every optional field.
        KnownKind::Emit(EmitKind::EnergyMeterRecorded) => {
            Payload::EnergyMeterRecorded(EnergyMeterRecorded {
                workspace_id: "ws-campus-energy".into(),
                facility_id: Some("campus-fac-001".into()),
                compute_assignment_run_id: Some("run-20260613-0042".into()),
                region: "eu-west-1".into(),
                valid_from: ts("2026-06-13T15:45:00.000Z"),
                valid_to: ts("2026-06-13T16:00:00.000Z"),
                quantity_joules: 982_000.0,
                unit: EnergyUnit::Joules,
                source: "facility_meter:utility-smart-meter-a".into(),
                energy_source: EnergySource::SmartMeter,
                energy_provenance: EnergyProvenance::Measured,
                pue: Some(1.18),
                pue_applied: false,
                grid_carbon_intensity_gco2e_per_kwh: Some(212.5),
                price_per_kwh: Some(0.21),
                currency: Some("EUR".into()),
                curtailment_window: Some(CurtailmentWindow {
                    start: ts("2026-06-13T15:50:00.000Z"),
                    end: ts("2026-06-13T15:55:00.000Z"),
                }),
                sensor_ref: Some("sensor:utility-smart-meter-a/channel-1".into()),
                coefficient_ref: None,
            })
        }
    }
}

fn build_sample(kind: KnownKind) -> KernelEventV2 {
    let payload = sample(kind);
    assert_eq!(payload.kind(), kind);
    payload
        .validate()
        .unwrap_or_else(|e| panic!("sample of {kind:?} is invalid: {e}"));
    build_event(
        kind.as_str(),
        FROM,
        payload.to_map(),
        BuildOptions {
            idempotency_key: None,
            timestamp: Some(ts(EMITTED_AT)),
            seq: None,
        },
    )
    .unwrap_or_else(|e| panic!("{kind:?}: {e}"))
}

fn render(event: &KernelEventV2) -> String {
    let mut text = serde_json::to_string_pretty(event).expect("an event serializes");
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------------------------
// (a) code -> file, byte for byte

#[test]
fn building_each_sample_gives_its_golden_file_byte_for_byte() {
    // KND-01, EVT-02, EVT-04
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    if update {
        fs::create_dir_all(golden_dir()).expect("create fixtures/events/v2");
    }
    let mut mismatches = Vec::new();
    for kind in KnownKind::all() {
        let path = golden_path(kind);
        let built = render(&build_sample(kind));
        if update {
            fs::write(&path, &built).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            continue;
        }
        let on_disk =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if on_disk != built {
            mismatches.push(format!(
                "{}:\n--- file\n{on_disk}+++ built\n{built}",
                path.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden files differ (rerun with UPDATE_GOLDEN=1 if the change is intended):\n{}",
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// (b) file -> code

#[test]
fn each_golden_file_parses_with_a_content_hashed_id_and_the_right_payload_variant() {
    // EVT-02, EVT-04, SDK-03
    for kind in KnownKind::all() {
        let path = golden_path(kind);
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let event = KernelEventV2::from_json_value(value)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(event.schema_version, 2);
        assert_eq!(event.kind, kind.as_str());
        assert_eq!(event.from, FROM);
        assert_eq!(event.timestamp, "2026-04-20T00:00:00.000Z");
        assert_eq!(event.seq, None);
        assert_eq!(
            event.event_id,
            event.content_id(),
            "{}: id is not the content hash",
            path.display()
        );
        let payload = parse_payload(&event.kind, &event.payload)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .unwrap_or_else(|| panic!("{}: kind not known", path.display()));
        assert_eq!(payload.kind(), kind);
        assert_eq!(payload, sample(kind), "{}", path.display());
        assert_eq!(
            payload.to_map(),
            event.payload,
            "{}: typed round trip",
            path.display()
        );
        assert_eq!(
            serde_json::to_value(&payload).expect("serializes"),
            Value::Object(event.payload.clone()),
            "{}: a Payload serializes as its map",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (c) no missing file, no orphan

#[test]
fn every_known_kind_has_a_golden_file_and_every_file_is_a_known_kind() {
    // KND-01
    let expected: BTreeSet<String> = KnownKind::all()
        .into_iter()
        .map(|k| format!("{}.json", k.as_str().replace(':', "__")))
        .collect();
    let mut found = BTreeSet::new();
    for entry in fs::read_dir(golden_dir()).expect("fixtures/events/v2 exists") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let stem = name
            .strip_suffix(".json")
            .unwrap_or_else(|| panic!("unexpected file `{name}`"));
        let kind = stem.replace("__", ":");
        assert!(
            KnownKind::from_name(&kind).is_some(),
            "orphan golden file `{name}`: `{kind}` is not a known kind"
        );
        found.insert(name);
    }
    assert_eq!(found, expected);
    assert_eq!(found.len(), KnownKind::all().len());
}

// ---------------------------------------------------------------------------------------------
// (d) wrong shapes are refused, naming the field

/// A sample payload of `kind` with `edit` applied.
fn edited(kind: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> Map<String, Value> {
    let known = KnownKind::from_name(kind).expect("known kind");
    let mut map = sample(known).to_map();
    edit(&mut map);
    map
}

fn with(kind: &str, field: &str, value: Value) -> Map<String, Value> {
    edited(kind, |m| {
        m.insert(field.to_string(), value);
    })
}

fn without(kind: &str, field: &str) -> Map<String, Value> {
    edited(kind, |m| {
        m.remove(field);
    })
}

fn check_refused(kind: &str, payload: Map<String, Value>, field: &str, expected: &str) {
    let err =
        parse_payload(kind, &payload).expect_err(&format!("{kind} {payload:?} should be refused"));
    assert_eq!(err.kind, kind);
    assert_eq!(err.field.as_deref(), Some(field), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("payload of `{kind}`: `{field}`: ")),
        "{text}"
    );
    assert!(
        text.contains(expected),
        "`{text}` should contain `{expected}`"
    );
}

#[test]
fn wrong_shapes_are_refused_with_a_message_naming_the_field() {
    // KND-01, SDK-03, ABR-02, Q22, Q24, Q28, Q38, Q40
    let recovery = "conductor:recovery_requested";
    check_refused(recovery, without(recovery, "wu_id"), "wu_id", "is required");
    check_refused(
        recovery,
        with(recovery, "wu_id", json!(42)),
        "wu_id",
        "expected a non-empty string, found 42",
    );

    let aborted = "agent-runtime:turn_aborted";
    check_refused(
        aborted,
        with(aborted, "cleanup_status", json!("dirty")),
        "cleanup_status",
        "expected one of `clean`, `partial`, `needs_recovery`, found `dirty`",
    );
    check_refused(
        aborted,
        without(aborted, "recovery_action"),
        "recovery_action",
        "needs_recovery",
    );
    check_refused(
        aborted,
        with(aborted, "recovery_action", json!("  ")),
        "recovery_action",
        "verbatim",
    );
    let completed = "agent-runtime:turn_completed";
    check_refused(
        completed,
        with(completed, "status", json!("done")),
        "status",
        "`succeeded`, `failed`",
    );

    let called = "agent-runtime:tool_called";
    check_refused(
        called,
        with(called, "envelope_hash", json!("md5:abc")),
        "envelope_hash",
        "sha256:",
    );
    check_refused(
        called,
        with(called, "envelope_hash", json!("sha256:abc")),
        "envelope_hash",
        "64 lowercase hex",
    );
    check_refused(
        called,
        with(called, "outcome", json!("ok")),
        "outcome",
        "approval_required",
    );

    let claimed = "software-delivery:wu_claimed";
    check_refused(claimed, without(claimed, "lane"), "lane", "is required");
    let gate = "software-delivery:gate_failed";
    check_refused(
        gate,
        with(gate, "duration_ms", json!(-3)),
        "duration_ms",
        "non-negative integer",
    );

    let approval = "sidekick:approval_requested";
    check_refused(
        approval,
        with(approval, "expires_at", json!("tomorrow")),
        "expires_at",
        "RFC 3339",
    );

    let pue = "campus:pue_sampled";
    check_refused(
        pue,
        with(pue, "pue", json!(0.9)),
        "pue",
        "expected a finite number >= 1.0, found 0.9",
    );
    check_refused(
        pue,
        with(pue, "pue", json!("1.2")),
        "pue",
        "found the string `1.2`",
    );
    let power = "campus:power_signal_ingested";
    check_refused(power, with(power, "watts", json!(-1.0)), "watts", ">= 0");
    let energy = "campus:facility_energy_recorded";
    check_refused(
        energy,
        with(energy, "quantity_joules", json!(-5)),
        "quantity_joules",
        "expected a finite number >= 0, found -5",
    );
    check_refused(
        energy,
        with(energy, "valid_from", json!("2026-06-13T16:30:00Z")),
        "valid_from",
        "expected a time before `valid_to` (2026-06-13T16:00:00.000Z), found 2026-06-13T16:30:00.000Z",
    );
    let attestation = "campus:gpu_attestation_recorded";
    check_refused(
        attestation,
        with(attestation, "measurements_digest", json!("sha256:XYZ")),
        "measurements_digest",
        "sha256",
    );
    check_refused(
        attestation,
        without(attestation, "verifier"),
        "verifier",
        "is required",
    );

    let read = "tenant-evidence:proof_record_read";
    check_refused(
        read,
        with(read, "record_kind", json!("invoice")),
        "record_kind",
        "`checkpoint`, `gate`, `approval`, `attestation`",
    );
    let exported = "tenant-evidence:proof_bundle_exported";
    check_refused(
        exported,
        with(
            exported,
            "content_digest",
            json!(format!("sha256:{}", "G".repeat(64))),
        ),
        "content_digest",
        "lowercase hex",
    );

    let emit = "emit:energy_meter_recorded";
    check_refused(
        emit,
        with(emit, "unit", json!("kwh")),
        "unit",
        "expected `joules`, found `kwh`",
    );
    check_refused(emit, without(emit, "unit"), "unit", "is required");
    check_refused(
        emit,
        with(emit, "quantity_joules", json!(-0.5)),
        "quantity_joules",
        ">= 0",
    );
    check_refused(
        emit,
        with(emit, "valid_to", json!("2026-06-13T15:45:00Z")),
        "valid_from",
        "before `valid_to`",
    );
    check_refused(emit, with(emit, "pue", json!(0.99)), "pue", ">= 1.0");
    check_refused(
        emit,
        with(emit, "energy_source", json!("solar")),
        "energy_source",
        "`pdu`, `ipmi`, `redfish`, `smart_meter` (any letter case)",
    );
    check_refused(
        emit,
        with(emit, "energy_provenance", json!("guessed")),
        "energy_provenance",
        "`measured`, `modelled`",
    );
    check_refused(
        emit,
        with(emit, "pue_applied", json!("yes")),
        "pue_applied",
        "expected `true` or `false`",
    );
}

#[test]
fn additive_fields_are_accepted_and_source_labels_are_normalised() {
    // MAN-09: a field an older reader does not know is ignored, never refused.
    let payload = with("conductor:recovery_requested", "priority", json!("high"));
    assert!(matches!(
        parse_payload("conductor:recovery_requested", &payload),
        Ok(Some(Payload::RecoveryRequested(_)))
    ));
    // EMI-02, Q28: upper-case source labels are read and written back in lower case; `pue_applied`
    // defaults to false; optional fields given as null count as absent.
    for (label, wire) in [
        ("PDU", "pdu"),
        ("IPMI", "ipmi"),
        ("Redfish", "redfish"),
        ("SMART_METER", "smart_meter"),
    ] {
        let payload = edited("emit:energy_meter_recorded", |m| {
            m.insert("energy_source".into(), json!(label));
            m.remove("pue_applied");
            m.insert("coefficient_ref".into(), Value::Null);
        });
        let Ok(Some(Payload::EnergyMeterRecorded(p))) =
            parse_payload("emit:energy_meter_recorded", &payload)
        else {
            panic!("{label} refused");
        };
        assert!(!p.pue_applied);
        assert_eq!(p.coefficient_ref, None);
        assert_eq!(
            Payload::EnergyMeterRecorded(p).to_map()["energy_source"],
            wire
        );
    }
    // Unknown kinds are not refused here (the builder and registry do that, EVT-07).
    assert_eq!(
        parse_payload("acme-demo:job_completed", &Map::new()),
        Ok(None)
    );
}

// ---------------------------------------------------------------------------------------------
// (e) the S2 inbound example

#[test]
fn the_seed_inbound_recovery_example_parses() {
    // EVT-10, ABR-05: S2's handler test delivers exactly this event and reads `payload.wu_id`.
    let inbound = json!({
        "schema_version": 2,
        "kind": "conductor:recovery_requested",
        "event_id": "evt-abc",
        "timestamp": "2026-04-20T00:00:00Z",
        "from": "ws-test",
        "payload": {"wu_id": "acme-job-1"},
    });
    let event = KernelEventV2::from_json_value(inbound).expect("the seed's inbound event is valid");
    assert_eq!(event.event_id, "evt-abc", "inbound ids are opaque (Q4)");
    let payload = parse_payload(&event.kind, &event.payload).expect("valid payload");
    assert_eq!(
        payload,
        Some(Payload::RecoveryRequested(RecoveryRequested {
            wu_id: "acme-job-1".into(),
            reason: None,
            requested_by: None,
        }))
    );
}
