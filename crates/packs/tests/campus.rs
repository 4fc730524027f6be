//! The campus-telemetry pack through the kernel's dispatch path, on temp workspaces: the
//! manifest (validation, least privilege, no broad wildcard, Q26/Q27), the seed's EMIT example,
//! the five read tools over ingested state, the `pue_applied` guard, ingestion of JSON Lines and
//! CSV with the bad input of issue 9, and the vendor-name-free published types (GOV-02).
//!
//! Requirement ids: CTL-02 to CTL-05, EMI-01 to EMI-08, GOV-01, GOV-02, Q13, Q26, Q27, Q28.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lumenflow_contracts::tools::{
    CAMPUS_STATE_SCOPE, CAMPUS_TELEMETRY_EVENT_KIND_VALUES, CAMPUS_TELEMETRY_TOOL_CONTRACTS,
    CAMPUS_TELEMETRY_TOOL_NAMES,
};
use lumenflow_kernel::dispatch::open::open;
use lumenflow_kernel::dispatch::{
    CallOutcome, CallRequest, Runtime, RuntimeEvents, RuntimeOptions,
};
use lumenflow_kernel::events::emit::MemorySink;
use lumenflow_kernel::events::ledger::read_from;
use lumenflow_kernel::events::ledger_path;
use lumenflow_kernel::manifest::Permission;
use lumenflow_kernel::pack_report::{validate_embedded, validate_pack_dir};
use lumenflow_packs::campus::events::Recorder;
use lumenflow_packs::campus::ingest::{self, IngestError, IngestOptions};
use lumenflow_packs::campus::store::Store;
use lumenflow_packs::campus::{self, manifest, PACK};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/campus")
}

fn workspace_yaml() -> String {
    r#"id: ws-campus
name: Campus test
packs:
  - id: campus-telemetry
    version: 0.1.0
    integrity: dev
    source: local
lanes:
  - id: ops
    title: "Ops"
    allowed_scopes:
      - {type: path, pattern: ".lumenflow/state/campus/**", access: read}
security:
  allowed_scopes:
    - {type: path, pattern: ".lumenflow/state/campus/**", access: read}
memory_namespace: m
event_namespace: e
"#
    .to_string()
}

struct Ws {
    _dir: tempfile::TempDir,
    root: PathBuf,
    runtime: Runtime,
    sink: Arc<MemorySink>,
    store: Store,
    recorder: Recorder,
}

impl Ws {
    fn new() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("workspace.yaml"), workspace_yaml()).unwrap();
        let mut runtime = open(
            &root,
            lumenflow_packs::builtin_packs(),
            &lumenflow_packs::builtin_tools(),
            RuntimeOptions::default(),
        )
        .unwrap_or_else(|e| panic!("open: {e}"));
        let sink = Arc::new(MemorySink::new());
        runtime.events = Some(Arc::new(RuntimeEvents::new(
            "ws-campus",
            sink.clone(),
            None,
        )));
        let store = Store::new(&root);
        let recorder = Recorder::open(&root, "ws-campus").unwrap();
        Ws {
            _dir: dir,
            root,
            runtime,
            sink,
            store,
            recorder,
        }
    }

    fn with_facility() -> Ws {
        let ws = Ws::new();
        ingest::add_facility(
            &ws.store,
            &ws.recorder,
            "campus-fac-001",
            Some("North hall"),
            Some("eu-west-1"),
        )
        .unwrap();
        ws
    }

    fn call(&self, tool: &str, input: Value) -> CallOutcome {
        self.runtime.dispatch(CallRequest::local(tool, input))
    }

    fn ok(&self, tool: &str, input: Value) -> Value {
        let out = self.call(tool, input);
        assert!(out.output.success, "{tool}: {:?}", out.output);
        out.output.data.clone().unwrap()
    }

    fn ingest(&self, path: &Path, skip: bool) -> Result<ingest::IngestReport, IngestError> {
        ingest::ingest_file(
            &self.store,
            &self.recorder,
            path,
            IngestOptions {
                skip_bad_rows: skip,
                format: None,
            },
        )
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.root.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn ledger(&self) -> Vec<lumenflow_contracts::event::KernelEventV2> {
        read_from(&ledger_path(&self.root), 0, None).unwrap().0
    }

    /// Every file under the campus state folder, with its bytes.
    fn state_snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for e in entries {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                } else if !(name.starts_with('.') && name.ends_with(".lock")) {
                    // Lock files are empty and hold no state.
                    out.push((e.path(), fs::read(e.path()).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.store.root(), &mut out);
        out.sort();
        out
    }
}

fn code(out: &CallOutcome) -> String {
    out.output.error_code().unwrap_or("").to_string()
}

fn bad_rows(err: IngestError) -> Vec<String> {
    match err {
        IngestError::BadRows { errors, .. } => errors.iter().map(ToString::to_string).collect(),
        other => panic!("expected bad rows, got {other}"),
    }
}

const ENERGY_ROW: &str = r#"{"type":"energy","facility_id":"campus-fac-001","source":"m-1","valid_from":"2026-06-13T15:00:00.000Z","valid_to":"2026-06-13T15:15:00.000Z","quantity_joules":1000,"energy_source":"pdu","energy_provenance":"measured"}"#;

fn energy_row(from: &str, to: &str, joules: &str, source_label: &str) -> String {
    format!(
        r#"{{"type":"energy","facility_id":"campus-fac-001","source":"m-1","valid_from":"{from}","valid_to":"{to}","quantity_joules":{joules},"energy_source":"{source_label}","energy_provenance":"measured"}}"#
    )
}

// ---------------------------------------------------------------------------------------------
// Manifest

#[test]
fn manifest_validates_and_declares_exactly_the_contracts() {
    let report = validate_embedded(&PACK);
    assert!(report.passed(), "{}", report.render_text());
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/campus");
    let report = validate_pack_dir(&folder, &[], None);
    assert!(report.passed(), "{}", report.render_text());
    let m = manifest();
    assert_eq!((m.id.as_str(), m.slug()), ("campus-telemetry", "campus"));
    let names: Vec<&str> = m.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, CAMPUS_TELEMETRY_TOOL_NAMES);
    for (tool, contract) in m.tools.iter().zip(CAMPUS_TELEMETRY_TOOL_CONTRACTS) {
        assert_eq!(tool.permission, Permission::Read, "{}", tool.name);
        assert_eq!(tool.required_scopes.len(), 1, "{}", tool.name);
        let scope = serde_json::to_value(&tool.required_scopes[0]).unwrap();
        assert_eq!(scope["pattern"], contract.scope_pattern, "{}", tool.name);
        assert_eq!(scope["pattern"], CAMPUS_STATE_SCOPE);
        assert_eq!(scope["access"], "read", "{}", tool.name);
        assert!(tool.required_approvals.is_empty());
    }
    // The six campus kinds and the shared EMIT kind (Q13), nothing else.
    let mut kinds: Vec<&str> = CAMPUS_TELEMETRY_EVENT_KIND_VALUES.to_vec();
    kinds.push("emit:energy_meter_recorded");
    assert_eq!(m.emitted_event_kinds, kinds);
    assert!(m.subscribed_event_kinds.is_empty());
}

/// Q27: no scope pattern of the pack is a broad wildcard, and (Q26) the pack asks for no write
/// scope at all: the tools only read, and only the pack's own state.
#[test]
fn no_scope_is_a_broad_wildcard_and_nothing_is_written_by_a_tool() {
    for tool in manifest().tools {
        for scope in &tool.required_scopes {
            let s = serde_json::to_value(scope).unwrap();
            let pattern = s["pattern"].as_str().unwrap();
            assert!(
                !matches!(pattern, "**" | "*" | "**/*" | "/**" | "./**"),
                "{}: broad wildcard `{pattern}`",
                tool.name
            );
            assert!(pattern.starts_with(".lumenflow/state/campus/"), "{pattern}");
            assert_eq!(s["access"], "read", "{}", tool.name);
        }
        assert_eq!(tool.permission, Permission::Read);
    }
}

#[test]
fn the_embedded_file_list_is_the_folder_on_disk() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/campus");
    let mut on_disk: Vec<(String, Vec<u8>)> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    on_disk.sort();
    let embedded: Vec<(String, Vec<u8>)> = PACK
        .files
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    assert_eq!(
        embedded.iter().map(|e| &e.0).collect::<Vec<_>>(),
        on_disk.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    assert!(
        embedded == on_disk,
        "an embedded file differs from the folder"
    );
}

// ---------------------------------------------------------------------------------------------
// EMIT

/// The seed's example: its input gives its output, and the EMIT event is proposed on the bus.
#[test]
fn facility_energy_maps_the_seed_example_to_emit() {
    let ws = Ws::new();
    let input: Value = serde_json::from_str(
        &fs::read_to_string(fixtures().join("emit_seed_example.input.json")).unwrap(),
    )
    .unwrap();
    let expected: Value = serde_json::from_str(
        &fs::read_to_string(fixtures().join("emit_seed_example.expected.json")).unwrap(),
    )
    .unwrap();
    let data = ws.ok("campus:facility_energy", input.clone());
    let event = &data["energy_meter_event"];
    assert_eq!(event["kind"], "emit:energy_meter_recorded");
    assert_eq!(event["unit"], "joules");
    assert_eq!(event, &expected);

    let pushed: Vec<_> = ws.sink.pushes().into_iter().flatten().collect();
    let emitted: Vec<_> = pushed
        .iter()
        .filter(|e| e.kind == "emit:energy_meter_recorded")
        .collect();
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].from, "ws-campus");
    assert_eq!(emitted[0].seq, Some(10));
    assert_eq!(emitted[0].timestamp, "2026-06-13T16:00:00.000Z");
    assert_eq!(emitted[0].payload["quantity_joules"], 982000);
    assert_eq!(emitted[0].payload["energy_source"], "smart_meter");
    // A retry is the same event (the seed's event_id is the idempotency key).
    ws.ok("campus:facility_energy", input);
    let again: Vec<_> = ws
        .sink
        .pushes()
        .into_iter()
        .flatten()
        .filter(|e| e.kind == "emit:energy_meter_recorded")
        .collect();
    assert_eq!(again[0].event_id, again[1].event_id);
}

#[test]
fn facility_energy_normalizes_labels_and_refuses_windows_outside_the_contract() {
    let ws = Ws::new();
    let base = json!({
        "workspace_id": "ws-campus-energy", "facility_id": "campus-fac-001",
        "valid_from": "2026-06-13T15:45:00.000Z", "valid_to": "2026-06-13T16:00:00.000Z",
        "region": "eu-west-1", "source": "pdu:row-3", "quantity_joules": 1.5,
        "energy_source": "Redfish", "energy_provenance": "modelled", "coefficient_ref": "coef:v1"
    });
    let data = ws.ok("campus:facility_energy", base.clone());
    assert_eq!(data["energy_meter_event"]["energy_source"], "redfish");
    assert_eq!(data["energy_meter_event"]["coefficient_ref"], "coef:v1");

    let cases = [
        (
            json!({"valid_from": "2026-06-13T16:30:00.000Z"}),
            "valid_from",
        ),
        (json!({"pue": 0.9}), "pue"),
        (json!({"energy_source": "steam_meter"}), "energy_source"),
        (json!({"quantity_joules": -5}), "quantity_joules"),
    ];
    for (patch, field) in cases {
        let mut input = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            input[k] = v.clone();
        }
        let out = ws.call("campus:facility_energy", input);
        assert!(!out.output.success, "{field}");
        let message = out.output.error.as_ref().unwrap().message.clone();
        assert!(message.contains(field), "{field}: {message}");
    }
}

/// The double-counting guard: a window already including facility overhead is never
/// multiplied by the PUE again; an IT-load window is multiplied once.
#[test]
fn pue_applied_guard_never_multiplies_twice() {
    let ws = Ws::new();
    let window = json!({
        "workspace_id": "ws", "facility_id": "campus-fac-001",
        "valid_from": "2026-06-13T15:45:00.000Z", "valid_to": "2026-06-13T16:00:00.000Z",
        "region": "eu-west-1", "source": "pdu:row-3", "quantity_joules": 1000,
        "energy_source": "pdu", "energy_provenance": "measured", "pue": 1.5, "apply_pue": true
    });
    let data = ws.ok("campus:facility_energy", window.clone());
    assert_eq!(data["energy_meter_event"]["quantity_joules"], 1500);
    assert_eq!(data["energy_meter_event"]["pue_applied"], true);
    let mut already = window.clone();
    already["pue_applied"] = json!(true);
    let data = ws.ok("campus:facility_energy", already);
    assert_eq!(data["energy_meter_event"]["quantity_joules"], 1000);
    assert_eq!(data["energy_meter_event"]["pue_applied"], true);
    // Without apply_pue nothing is scaled, and pue_applied stays false.
    let mut plain = window;
    plain.as_object_mut().unwrap().remove("apply_pue");
    let data = ws.ok("campus:facility_energy", plain);
    assert_eq!(data["energy_meter_event"]["quantity_joules"], 1000);
    assert_eq!(data["energy_meter_event"]["pue_applied"], false);
}

// ---------------------------------------------------------------------------------------------
// Read tools over ingested state

#[test]
fn the_five_read_tools_return_what_was_ingested() {
    let ws = Ws::with_facility();
    let report = ws
        .ingest(&fixtures().join("readings.jsonl"), false)
        .unwrap();
    assert_eq!(
        (
            report.rows,
            report.ingested,
            report.energy_windows,
            report.pue_samples,
            report.power_signals,
            report.nodes
        ),
        (9, 9, 3, 2, 2, 2)
    );
    let report = ws.ingest(&fixtures().join("readings.csv"), false).unwrap();
    assert_eq!((report.rows, report.energy_windows), (2, 2));

    let data = ws.ok("campus:list_facilities", json!({}));
    assert_eq!(data["facilities"][0]["facility_id"], "campus-fac-001");
    assert_eq!(data["facilities"][0]["region"], "eu-west-1");

    let data = ws.ok(
        "campus:node_inventory",
        json!({"facility_id": "campus-fac-001"}),
    );
    assert_eq!(data["node_count"], 2);
    assert_eq!(data["nodes"][0]["node_id"], "node-a");
    assert_eq!(data["nodes"][0]["accelerator_count"], 8);

    let data = ws.ok(
        "campus:pue_telemetry",
        json!({"facility_id": "campus-fac-001"}),
    );
    assert_eq!(data["total"], 2);
    assert_eq!(data["latest"]["pue"], 1.27);

    let data = ws.ok(
        "campus:power_signal",
        json!({"facility_id": "campus-fac-001"}),
    );
    assert_eq!(data["latest"]["watts"], 415500.5);
    assert_eq!(data["latest"]["source"], "pdu:row-3");

    let data = ws.ok(
        "campus:facility_energy",
        json!({"facility_id": "campus-fac-001"}),
    );
    assert_eq!(data["total"], 5);
    let events = data["energy_meter_events"].as_array().unwrap();
    assert!(events
        .iter()
        .all(|e| e["kind"] == "emit:energy_meter_recorded"
            && e["unit"] == "joules"
            && e["workspace_id"] == "ws-campus"
            && e["region"] == "eu-west-1"));
    let smart = events
        .iter()
        .find(|e| {
            e["valid_from"] == "2026-06-13T15:45:00.000Z" && e["energy_source"] == "smart_meter"
        })
        .unwrap();
    assert_eq!(smart["pue_applied"], true);
    assert_eq!(
        smart["curtailment_window"]["start"],
        "2026-06-13T15:50:00.000Z"
    );
    assert_eq!(smart["compute_assignment_run_id"], "run-0042");
    assert_eq!(smart["currency"], "EUR");
    // apply_pue: the modelled PDU window (pue 1.3) is scaled once, the smart meter window
    // (pue_applied) is not, a window without PUE refuses.
    let out = ws.call(
        "campus:facility_energy",
        json!({"facility_id": "campus-fac-001", "apply_pue": true}),
    );
    assert_eq!(code(&out), "ENERGY_WINDOW_INVALID");
    let data = ws.ok(
        "campus:facility_energy",
        json!({"facility_id": "campus-fac-001", "since": "2026-06-13T15:45:00.000Z", "apply_pue": true}),
    );
    let events = data["energy_meter_events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let pdu = events.iter().find(|e| e["energy_source"] == "pdu").unwrap();
    assert!((pdu["quantity_joules"].as_f64().unwrap() - 481000.0).abs() < 1e-6);
    let smart = events
        .iter()
        .find(|e| e["energy_source"] == "smart_meter")
        .unwrap();
    assert_eq!(smart["quantity_joules"], 982000);

    // Unknown facility: a clear refusal.
    let out = ws.call(
        "campus:node_inventory",
        json!({"facility_id": "campus-fac-404"}),
    );
    assert_eq!(code(&out), "FACILITY_NOT_FOUND");

    // The ledger holds the six-kind stamps of what was ingested, from the workspace identity.
    let ledger = ws.ledger();
    let count = |k: &str| ledger.iter().filter(|e| e.kind == k).count();
    assert_eq!(count("campus:facility_registered"), 1);
    assert_eq!(count("campus:node_inventory_updated"), 1);
    assert_eq!(count("campus:pue_sampled"), 2);
    assert_eq!(count("campus:power_signal_ingested"), 2);
    assert_eq!(count("campus:facility_energy_recorded"), 5);
    assert!(ledger.iter().all(|e| e.from == "ws-campus"));
    for e in &ledger {
        lumenflow_contracts::payloads::parse_payload(&e.kind, &e.payload)
            .unwrap_or_else(|err| panic!("{}: {err}", e.kind));
    }
}

#[test]
fn a_workspace_that_narrows_the_scope_refuses_the_read_tools() {
    let ws = Ws::with_facility();
    let yaml = workspace_yaml().replace(
        "  allowed_scopes:\n    - {type: path, pattern: \".lumenflow/state/campus/**\", access: read}",
        "  allowed_scopes:\n    - {type: path, pattern: \".lumenflow/state/campus/evidence/**\", access: read}",
    );
    fs::write(ws.root.join("workspace.yaml"), yaml).unwrap();
    let runtime = open(
        &ws.root,
        lumenflow_packs::builtin_packs(),
        &lumenflow_packs::builtin_tools(),
        RuntimeOptions::default(),
    )
    .unwrap();
    let out = runtime.dispatch(CallRequest::local("campus:list_facilities", json!({})));
    assert!(!out.output.success);
    assert_eq!(out.output.error_code(), Some("SCOPE_DENIED"));
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_rows_are_refused_with_their_line_and_nothing_is_written() {
    let ws = Ws::with_facility();
    let before = ws.state_snapshot();
    let ledger_before = ws.ledger().len();
    let good = energy_row(
        "2026-06-13T14:00:00.000Z",
        "2026-06-13T14:15:00.000Z",
        "10",
        "pdu",
    );
    let lines = [
        good.clone(),                                                                           // 1
        energy_row("2026-06-13T15:00:00.000Z", "2026-06-13T15:15:00.000Z", "-1", "pdu"),       // 2 negative
        energy_row("2026-06-13T15:30:00.000Z", "2026-06-13T15:15:00.000Z", "1", "pdu"),        // 3 from > to
        energy_row("2026-06-13T16:00:00.000Z", "2026-06-13T16:15:00.000Z", "1", "steam"),      // 4 label
        r#"{"type":"pue","facility_id":"campus-fac-001","pue":0.8,"sampled_at":"2026-06-13T15:00:00.000Z"}"#.to_string(), // 5 pue < 1
        energy_row("2026-06-13T14:10:00.000Z", "2026-06-13T14:20:00.000Z", "1", "pdu"),        // 6 overlaps 1
        good.clone(),                                                                           // 7 duplicate of 1
        r#"{"type":"energy", "facility_id": "campus-fac-001""#.to_string(),                    // 8 bad JSON
        energy_row("2026-06-13T17:00:00.000Z", "2026-06-13T17:15:00.000Z", "1", "pdu").replace("campus-fac-001", "campus-fac-404"), // 9 unknown facility
        energy_row("2026-06-13T18:00:00.000Z", "2026-06-13T18:15:00.000Z", "1", "Redfish"),    // 10 fine
    ];
    let path = ws.write("bad.jsonl", &(lines.join("\n") + "\n"));
    let errors = bad_rows(ws.ingest(&path, false).unwrap_err());
    let expect = [
        ("line 2: `quantity_joules`", "at least 0"),
        ("line 3: `valid_from`", "must be before `valid_to`"),
        ("line 4: `energy_source`", "unknown source label `steam`"),
        ("line 5: `pue`", "at least 1"),
        ("line 6: `valid_from`", "overlapping window"),
        ("line 7: `valid_from`", "duplicate row"),
        ("line 8:", "not valid JSON"),
        (
            "line 9: `facility_id`",
            "`campus-fac-404` is not registered",
        ),
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for ((prefix, text), e) in expect.iter().zip(&errors) {
        assert!(e.starts_with(prefix) && e.contains(text), "{e}");
    }
    // Nothing half-written: state and ledger unchanged.
    assert_eq!(ws.state_snapshot(), before);
    assert_eq!(ws.ledger().len(), ledger_before);

    // NaN / infinity in CSV are refused too.
    let csv = ws.write(
        "bad.csv",
        "type,facility_id,source,valid_from,valid_to,quantity_joules,energy_source,energy_provenance\n\
         energy,campus-fac-001,m-2,2026-06-13T15:00:00.000Z,2026-06-13T15:15:00.000Z,NaN,pdu,measured\n\
         energy,campus-fac-001,m-2,2026-06-13T15:15:00.000Z,2026-06-13T15:30:00.000Z,inf,pdu,measured\n\
         energy,campus-fac-001,m-2,2026-06-13T15:30:00.000Z,2026-06-13T15:45:00.000Z,1\n",
    );
    let errors = bad_rows(ws.ingest(&csv, false).unwrap_err());
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].starts_with("line 2: `quantity_joules`: must be a finite number"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("line 3: `quantity_joules`"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with("line 4:") && errors[2].contains("cells"),
        "{}",
        errors[2]
    );
    assert_eq!(ws.state_snapshot(), before);

    // --skip-bad-rows: the good rows (1 and 10) are kept, the bad ones reported.
    let report = ws.ingest(&path, true).unwrap();
    assert_eq!(
        (report.rows, report.ingested, report.skipped.len()),
        (10, 2, 8)
    );
    assert_eq!(report.events, 2);
    assert_eq!(ws.store.energy("campus-fac-001").unwrap().len(), 2);

    // Ingesting the same window again is a duplicate of the stored one.
    let again = ws.write("again.jsonl", &format!("{good}\n"));
    let errors = bad_rows(ws.ingest(&again, false).unwrap_err());
    assert!(
        errors[0].contains("duplicate row") && errors[0].contains("stored"),
        "{errors:?}"
    );
    let again = ws.write(
        "overlap.jsonl",
        &format!(
            "{}\n",
            energy_row(
                "2026-06-13T14:05:00.000Z",
                "2026-06-13T14:06:00.000Z",
                "1",
                "pdu"
            )
        ),
    );
    let errors = bad_rows(ws.ingest(&again, false).unwrap_err());
    assert!(errors[0].contains("overlapping window"), "{errors:?}");
}

/// A misspelt field is refused with a did-you-mean, never read as absent: `pue_aplied` would
/// otherwise default `pue_applied` to false and defeat the double-counting guard, `regoin` would
/// lose the region. JSON errors name the JSON field (`curtailment_window.end`), not the CSV
/// column it stands for.
#[test]
fn misspelt_fields_and_columns_are_refused_by_name() {
    let ws = Ws::with_facility();
    let before = ws.state_snapshot();
    let row = |extra: &str| {
        energy_row(
            "2026-06-13T14:00:00.000Z",
            "2026-06-13T14:15:00.000Z",
            "10",
            "pdu",
        )
        .replace('}', &format!(",{extra}}}"))
    };
    let lines = [
        row(r#""pue":1.4,"pue_aplied":true"#),
        row(r#""regoin":"eu-west-1""#).replace("14:", "15:"),
        row(r#""curtailment_window":{"start":"2026-06-13T16:01:00.000Z"}"#).replace("14:", "16:"),
        row(r#""curtailment_window":{"start":"2026-06-13T17:01:00.000Z","ende":"x"}"#)
            .replace("14:", "17:"),
    ];
    let path = ws.write("typos.jsonl", &(lines.join("\n") + "\n"));
    let errors = bad_rows(ws.ingest(&path, false).unwrap_err());
    let expect = [
        "line 1: `pue_aplied`: unknown field; did you mean `pue_applied`?",
        "line 2: `regoin`: unknown field; did you mean `region`?",
        "line 3: `curtailment_window.end`: required with `curtailment_window.start`",
        "line 4: `curtailment_window.ende`: unknown field",
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for (want, got) in expect.iter().zip(&errors) {
        assert!(got.starts_with(want), "{got}\nexpected {want}");
    }
    assert_eq!(ws.state_snapshot(), before);

    // A CSV column that is no field refuses the file at its header, whatever --skip-bad-rows.
    let csv = ws.write(
        "typo.csv",
        "type,facility_id,source,valid_from,valid_to,quantity_joules,energy_source,energy_provenance,regoin\n\
         energy,campus-fac-001,m-2,2026-06-13T15:00:00.000Z,2026-06-13T15:15:00.000Z,1,pdu,measured,eu\n",
    );
    for skip in [false, true] {
        let errors = bad_rows(ws.ingest(&csv, skip).unwrap_err());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("line 1:")
                && errors[0].contains("`regoin`: unknown column; did you mean `region`?"),
            "{}",
            errors[0]
        );
    }
    assert_eq!(ws.state_snapshot(), before);
}

#[test]
fn duplicate_points_and_nodes_are_refused() {
    let ws = Ws::with_facility();
    let text = [
        r#"{"type":"pue","facility_id":"campus-fac-001","pue":1.2,"sampled_at":"2026-06-13T15:00:00.000Z"}"#,
        r#"{"type":"pue","facility_id":"campus-fac-001","pue":1.3,"sampled_at":"2026-06-13T15:00:00Z"}"#,
        r#"{"type":"power","facility_id":"campus-fac-001","watts":5,"observed_at":"2026-06-13T15:00:00.000Z","source":"s"}"#,
        r#"{"type":"power","facility_id":"campus-fac-001","watts":6,"observed_at":"2026-06-13T15:00:00.000Z","source":"s"}"#,
        r#"{"type":"node","facility_id":"campus-fac-001","node_id":"n1"}"#,
        r#"{"type":"node","facility_id":"campus-fac-001","node_id":"n1"}"#,
        r#"{"type":"node","facility_id":"campus-fac-001","node_id":"../etc"}"#,
        r#"{"type":"bogus","facility_id":"campus-fac-001"}"#,
    ]
    .join("\n");
    let path = ws.write("dups.jsonl", &text);
    let errors = bad_rows(ws.ingest(&path, false).unwrap_err());
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(
        errors[0].starts_with("line 2: `sampled_at`: duplicate row"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("line 4: `observed_at`: duplicate row"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with("line 6: `node_id`: duplicate row"),
        "{}",
        errors[2]
    );
    assert!(
        errors[3].starts_with("line 7: `node_id`") && errors[3].contains("not a valid id"),
        "{}",
        errors[3]
    );
    assert!(
        errors[4].starts_with("line 8: `type`: unknown row type"),
        "{}",
        errors[4]
    );
    let _ = ENERGY_ROW;
}

#[test]
fn facility_ids_that_would_name_paths_outside_the_state_are_refused() {
    let ws = Ws::new();
    for id in ["../x", "", "a/b", ".hidden"] {
        let err = ingest::add_facility(&ws.store, &ws.recorder, id, None, None).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT", "{id}");
    }
    assert!(ws.state_snapshot().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Vendor-name-free (GOV-02)

/// Brand strings that must not appear in the pack's published types, enums, manifest or branch
/// logic (the pack reasons in opaque labels only).
const VENDOR_BRANDS: &[&str] = &[
    "nvidia",
    "amd",
    "intel",
    "dell",
    "hpe",
    "supermicro",
    "lenovo",
    "cisco",
    "schneider",
    "vertiv",
    "eaton",
    "apc",
    "raritan",
    "aws",
    "azure",
    "gcp",
    "google",
    "microsoft",
    "amazon",
    "oracle",
    "ibm",
    "huawei",
    "cuda",
    "idrac",
    "ilo",
    "xclarity",
    "h100",
    "a100",
    "mi300",
    "gaudi",
    "openai",
    "anthropic",
];

#[test]
fn the_pack_sources_and_manifest_name_no_vendor() {
    for (name, bytes) in PACK.files {
        let text = String::from_utf8_lossy(bytes).to_lowercase();
        // Word-ish match: a brand as a whole token (so `amd` inside `command` does not count).
        let tokens: Vec<&str> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        for brand in VENDOR_BRANDS {
            assert!(
                !tokens.contains(brand),
                "`{name}` names the vendor brand `{brand}`"
            );
        }
    }
    // The published serialized shapes too: a node and a facility as the tools return them.
    let ws = Ws::with_facility();
    ws.ingest(&fixtures().join("readings.jsonl"), false)
        .unwrap();
    let data = ws.ok(
        "campus:node_inventory",
        json!({"facility_id": "campus-fac-001"}),
    );
    let keys = serde_json::to_string(&data).unwrap().to_lowercase();
    for brand in VENDOR_BRANDS {
        assert!(!keys
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|t| t == *brand));
    }
    let _ = campus::SLUG;
}

/// The state files' fast timestamp text is exactly the contracts' RFC 3339 text.
#[test]
fn fast_timestamps_match_the_contract_text() {
    use lumenflow_contracts::time::Timestamp;
    use lumenflow_packs::campus::model::fast_time;
    for ms in [
        0i64,
        1,
        999,
        951_782_400_000,     // 2000-02-29
        1_781_366_400_123,   // 2026
        4_102_444_799_999,   // 2099-12-31T23:59:59.999Z
        253_402_300_799_999, // 9999-12-31T23:59:59.999Z
        -1,                  // 1969-12-31T23:59:59.999Z
    ] {
        let t = Timestamp::from_unix_millis(ms);
        let (b, n) = fast_time::format(t);
        assert_eq!(
            std::str::from_utf8(&b[..n]).unwrap(),
            t.to_rfc3339(),
            "{ms}"
        );
    }
    let mut ms = 0i64;
    while ms < 4_102_444_800_000 {
        let t = Timestamp::from_unix_millis(ms);
        let (b, n) = fast_time::format(t);
        assert_eq!(std::str::from_utf8(&b[..n]).unwrap(), t.to_rfc3339());
        ms += 86_400_000 * 7 + 3_600_123;
    }
}

/// Q26 / GOV-01: the operator commands write only the pack's state folder and the event
/// ledger; nothing else in the workspace changes.
#[test]
fn ingestion_writes_only_the_pack_state_and_the_ledger() {
    let ws = Ws::with_facility();
    let input = ws.write(
        "readings.jsonl",
        &fs::read_to_string(fixtures().join("readings.jsonl")).unwrap(),
    );
    ws.ingest(&input, false).unwrap();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut files = Vec::new();
    walk(&ws.root, &ws.root, &mut files);
    for f in files {
        assert!(
            f.starts_with(".lumenflow/state/campus/")
                || f == ".lumenflow/state/conductor/events.jsonl"
                || f == "workspace.yaml"
                || f == "readings.jsonl"
                // The kernel's own records of the runtime the test opened.
                || (f.starts_with(".lumenflow/") && !f.starts_with(".lumenflow/state/")),
            "unexpected write: {f}"
        );
    }
}
