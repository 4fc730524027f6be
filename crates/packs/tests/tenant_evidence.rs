//! The tenant-evidence pack through the kernel's dispatch path on a temp workspace: the four
//! record reads, the approval-gated export with a grant from the local approval provider, the
//! receipt it writes, the bad input of issue 9, and the vendor-name-free scan (GOV-02).
//!
//! Requirement ids: TEV-01 to TEV-08, Q23 (input.approvals shapes), Q24 (kinds), Q25 (receipt),
//! Q26 (campus state scopes), CRS-04 / GOV-02 (no vendor brand in published types and values).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use lumenflow_contracts::receipt::{verify_receipt_value, FORBIDDEN_RECEIPT_KEYS};
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tools::{
    TENANT_EVIDENCE_EVENT_KIND_VALUES, TENANT_EVIDENCE_RECORD_KIND_VALUES,
    TENANT_EVIDENCE_TOOL_CONTRACTS, TENANT_EVIDENCE_TOOL_NAMES,
};
use lumenflow_kernel::approvals::{ApprovalProvider, Decision, LocalApprovals};
use lumenflow_kernel::dispatch::open::open;
use lumenflow_kernel::dispatch::{
    CallOutcome, CallRequest, Runtime, RuntimeEvents, RuntimeOptions,
};
use lumenflow_kernel::events::emit::MemorySink;
use lumenflow_kernel::manifest::Permission;
use lumenflow_kernel::pack_report::{validate_embedded, validate_pack_dir};
use lumenflow_packs::tenant_evidence::{manifest, PACK};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

const SCOPES: &str = r#"      - {type: path, pattern: ".lumenflow/state/campus/evidence/**", access: read}
      - {type: path, pattern: ".lumenflow/state/campus/evidence/exports/**", access: write}
"#;

/// The workspace pins tenant-evidence and, unless `alone`, campus-telemetry, the pack whose state
/// folder (`.lumenflow/state/campus/`) the export writes with its consent (Q26).
fn workspace_yaml(alone: bool) -> String {
    let campus = if alone {
        ""
    } else {
        "  - id: campus-telemetry\n    version: 0.1.0\n    integrity: dev\n    source: local\n"
    };
    format!(
        r#"id: ws-42
name: Tenant evidence test
packs:
  - id: tenant-evidence
    version: 0.1.0
    integrity: dev
    source: local
{campus}lanes:
  - id: evidence
    title: Evidence
    allowed_scopes:
{SCOPES}security:
  allowed_scopes:
{SCOPES}memory_namespace: m
event_namespace: e
"#
    )
}

struct Ws {
    _dir: tempfile::TempDir,
    root: PathBuf,
    runtime: Runtime,
    sink: Arc<MemorySink>,
}

impl Ws {
    fn new() -> Ws {
        Ws::with(false)
    }

    fn with(alone: bool) -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("workspace.yaml"), workspace_yaml(alone)).unwrap();
        let mut runtime = open(
            &root,
            lumenflow_packs::builtin_packs(),
            &lumenflow_packs::builtin_tools(),
            RuntimeOptions::default(),
        )
        .unwrap_or_else(|e| panic!("open: {e}"));
        let sink = Arc::new(MemorySink::new());
        runtime.events = Some(Arc::new(RuntimeEvents::new("ws-42", sink.clone(), None)));
        let ws = Ws {
            _dir: dir,
            root,
            runtime,
            sink,
        };
        ws.record("checkpoint", "cp-1", "tenant-a", json!({"step": 3}));
        ws.record(
            "gate",
            "gate-1",
            "tenant-a",
            json!({"name": "test", "result": "passed"}),
        );
        ws.record(
            "approval",
            "appr-1",
            "tenant-a",
            json!({"approver": "operator"}),
        );
        ws.record(
            "attestation",
            "att-1",
            "tenant-a",
            json!({"verifier": "local"}),
        );
        ws.record("checkpoint", "cp-b", "tenant-b", json!({"step": 1}));
        ws
    }

    /// Writes one evidence record file, as the producer of evidence would.
    fn record(&self, kind: &str, id: &str, tenant: &str, data: Value) {
        let dir = self
            .root
            .join(".lumenflow/state/campus/evidence")
            .join(format!("{kind}s"));
        fs::create_dir_all(&dir).unwrap();
        let body = json!({"record_id": id, "record_kind": kind, "tenant_id": tenant,
                          "recorded_at": "2026-11-21T08:00:00.000Z", "summary": "s",
                          "data": data});
        fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec_pretty(&body).unwrap(),
        )
        .unwrap();
    }

    fn call(&self, tool: &str, input: Value) -> CallOutcome {
        self.runtime.dispatch(CallRequest::local(tool, input))
    }

    fn grant(&self, approval_id: &str) {
        LocalApprovals::open(&self.root)
            .decide(
                approval_id,
                Decision::Granted {
                    approver: "operator".into(),
                    reason: "tenant asked for its bundle".into(),
                    decided_at: Timestamp::now(),
                },
            )
            .unwrap();
    }

    /// The export as an operator runs it: the call pauses for approval, the operator grants it
    /// in the local approval provider, the same call runs.
    fn export_granted(&self, input: Value) -> CallOutcome {
        let asked = self.call("proof:export_attested_bundle", input.clone());
        assert_eq!(code(&asked), "APPROVAL_REQUIRED", "the kernel asks first");
        self.grant(asked.approval_id.as_deref().expect("a pending approval"));
        self.call("proof:export_attested_bundle", input)
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.sink
            .pushes()
            .into_iter()
            .flatten()
            .filter(|e| e.kind == kind)
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    fn exports(&self) -> Vec<String> {
        let dir = self.root.join(".lumenflow/state/campus/evidence/exports");
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn data(out: &CallOutcome) -> Value {
    assert!(
        out.output.success,
        "call failed: {:?}",
        out.output.error.as_ref()
    );
    out.output.data.clone().unwrap()
}

fn code(out: &CallOutcome) -> String {
    assert!(
        !out.output.success,
        "call should fail: {:?}",
        out.output.data
    );
    out.output.error_code().unwrap_or("").to_string()
}

fn message(out: &CallOutcome) -> String {
    serde_json::to_string(&out.output.error).unwrap()
}

fn export_input(bundle: &str, approvals: Value) -> Value {
    json!({
        "tenant_id": "tenant-a",
        "bundle_id": bundle,
        "records": [
            {"record_kind": "checkpoint", "record_id": "cp-1"},
            {"record_kind": "gate", "record_id": "gate-1"},
            {"record_kind": "approval", "record_id": "appr-1"},
            {"record_kind": "attestation", "record_id": "att-1"}
        ],
        "approvals": approvals,
    })
}

// ---------------------------------------------------------------------------------------------
// The manifest

#[test]
fn the_manifest_honours_the_published_tool_contracts_and_passes_validate() {
    let report = validate_embedded(&PACK);
    assert!(report.passed(), "{}", report.render_text());
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/tenant_evidence");
    let report = validate_pack_dir(&folder, &[], None);
    assert!(report.passed(), "{}", report.render_text());
    let m = manifest();
    assert_eq!(
        (m.id.as_str(), m.slug()),
        ("tenant-evidence", "tenant-evidence")
    );
    let names: Vec<&str> = m.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, TENANT_EVIDENCE_TOOL_NAMES);
    for contract in TENANT_EVIDENCE_TOOL_CONTRACTS {
        let tool = m.tool(contract.name).unwrap();
        let permission = serde_json::to_value(tool.permission).unwrap();
        assert_eq!(permission, contract.permission, "{}", contract.name);
        let scopes: Vec<Value> = tool
            .required_scopes
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        assert!(
            scopes
                .iter()
                .any(|s| s["pattern"] == contract.scope_pattern && s["access"] == contract.access),
            "{}: {scopes:?}",
            contract.name
        );
        // TEV-02: the only write scope is the exports subtree; no broad wildcard (Q27).
        for s in &scopes {
            let p = s["pattern"].as_str().unwrap();
            assert!(p.starts_with(".lumenflow/state/campus/evidence/"), "{p}");
            if s["access"] == "write" {
                assert_eq!(p, ".lumenflow/state/campus/evidence/exports/**");
            }
        }
        assert_eq!(tool.required_approvals, contract.required_approvals);
    }
    for name in &TENANT_EVIDENCE_TOOL_NAMES[..4] {
        assert_eq!(m.tool(name).unwrap().permission, Permission::Read);
        assert!(m.tool(name).unwrap().required_approvals.is_empty());
    }
    // TEV-08, Q24: the emitted kinds are the published tuple.
    assert_eq!(m.emitted_event_kinds, TENANT_EVIDENCE_EVENT_KIND_VALUES);
    assert_eq!(m.required_approvals, ["tenant-evidence:export"]);
}

#[test]
fn the_embedded_files_are_exactly_the_files_of_the_pack_folder() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/tenant_evidence");
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
    let mut embedded: Vec<(String, Vec<u8>)> = PACK
        .files
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    embedded.sort();
    assert_eq!(
        on_disk.iter().map(|f| &f.0).collect::<Vec<_>>(),
        embedded.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(on_disk == embedded, "an embedded file differs from disk");
}

// ---------------------------------------------------------------------------------------------
// The record reads (TEV-01)

#[test]
fn each_record_tool_returns_one_record_of_the_tenant_with_its_digest() {
    let ws = Ws::new();
    for (kind, id) in TENANT_EVIDENCE_RECORD_KIND_VALUES
        .iter()
        .zip(["cp-1", "gate-1", "appr-1", "att-1"])
    {
        let out = ws.call(
            &format!("proof:{kind}_record"),
            json!({"tenant_id": "tenant-a", "record_id": id}),
        );
        let d = data(&out);
        assert_eq!(d["record_kind"], *kind);
        assert_eq!(d["record_id"], id);
        assert_eq!(d["tenant_id"], "tenant-a");
        assert_eq!(d["recorded_at"], "2026-11-21T08:00:00.000Z");
        assert!(d["content_digest"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(d["record"]["record_id"], id);
    }
    // Each read is announced (ephemeral, Q24).
    let reads = ws.events("tenant-evidence:proof_record_read");
    assert_eq!(reads.len(), 4);
    assert_eq!(reads[0]["payload"]["record_kind"], "checkpoint");
    assert_eq!(reads[0]["payload"]["record_id"], "cp-1");
}

#[test]
fn bad_record_reads_are_refused_with_the_record_named() {
    let ws = Ws::new();
    let read = |tool: &str, tenant: &str, id: &str| {
        ws.call(tool, json!({"tenant_id": tenant, "record_id": id}))
    };
    // Absent.
    let out = read("proof:gate_record", "tenant-a", "nope");
    assert_eq!(code(&out), "RECORD_NOT_FOUND");
    assert!(message(&out).contains("nope"));
    // Another tenant's record is not found for this tenant.
    let out = read("proof:checkpoint_record", "tenant-a", "cp-b");
    assert_eq!(code(&out), "RECORD_NOT_FOUND");
    // The right id in the wrong kind's tool.
    assert_eq!(
        code(&read("proof:gate_record", "tenant-a", "cp-1")),
        "RECORD_NOT_FOUND"
    );
    // Path traversal never reaches the file system.
    assert_eq!(
        code(&read("proof:checkpoint_record", "tenant-a", "../exports/x")),
        "INVALID_INPUT"
    );
    // A file that is not JSON, and one with the wrong id or an unknown key.
    let dir = ws.root.join(".lumenflow/state/campus/evidence/checkpoints");
    fs::write(dir.join("broken.json"), "{not json").unwrap();
    let out = read("proof:checkpoint_record", "tenant-a", "broken");
    assert_eq!(code(&out), "RECORD_INVALID");
    assert!(message(&out).contains("broken.json"), "{}", message(&out));
    fs::write(
        dir.join("renamed.json"),
        json!({"record_id": "other", "record_kind": "checkpoint", "tenant_id": "tenant-a",
               "recorded_at": "2026-11-21T08:00:00.000Z", "data": {}})
        .to_string(),
    )
    .unwrap();
    let out = read("proof:checkpoint_record", "tenant-a", "renamed");
    assert_eq!(code(&out), "RECORD_INVALID");
    assert!(message(&out).contains("record_id"), "{}", message(&out));
    fs::write(
        dir.join("extra.json"),
        json!({"record_id": "extra", "record_kind": "checkpoint", "tenant_id": "tenant-a",
               "recorded_at": "2026-11-21T08:00:00.000Z", "data": {}, "seal": "x"})
        .to_string(),
    )
    .unwrap();
    let out = read("proof:checkpoint_record", "tenant-a", "extra");
    assert_eq!(code(&out), "RECORD_INVALID");
    assert!(message(&out).contains("seal"), "{}", message(&out));
}

// ---------------------------------------------------------------------------------------------
// The export (TEV-02 to TEV-07)

#[test]
fn the_export_needs_a_grant_from_the_local_provider_and_writes_an_unsealed_receipt() {
    let ws = Ws::new();
    let input = export_input("bundle-1", json!(["tenant-evidence:export"]));

    // 1. The kernel's approval step: no grant, no run, nothing written.
    let asked = ws.call("proof:export_attested_bundle", input.clone());
    assert_eq!(code(&asked), "APPROVAL_REQUIRED");
    let approval = asked.approval_id.clone().expect("a pending approval");
    assert!(ws.exports().is_empty());

    // 2. The operator grants it in the local approval provider; the same call runs once.
    ws.grant(&approval);
    let out = ws.call("proof:export_attested_bundle", input.clone());
    let d = data(&out);
    assert_eq!(out.approval_id.as_deref(), Some(approval.as_str()));
    assert_eq!(d["bundle_id"], "bundle-1");
    assert_eq!(
        d["path"],
        ".lumenflow/state/campus/evidence/exports/bundle-1.json"
    );
    assert_eq!(ws.exports(), ["bundle-1.json"]);

    // 3. The file is the receipt: digest verifies, no seal / signature / sig (TEV-06, Q25).
    let written: Value =
        serde_json::from_slice(&fs::read(ws.root.join(d["path"].as_str().unwrap())).unwrap())
            .unwrap();
    assert_eq!(written, d["receipt"]);
    for key in FORBIDDEN_RECEIPT_KEYS {
        assert!(written.get(*key).is_none(), "{key}");
    }
    let receipt = verify_receipt_value(&written).unwrap();
    assert_eq!(receipt.content_digest.to_string(), d["content_digest"]);
    assert_eq!(receipt.workspace_id, "ws-42");
    assert_eq!(receipt.tenant_id, "tenant-a");
    assert_eq!(receipt.approval_id, "tenant-evidence:export");
    assert_eq!(receipt.receipt_kind, "tenant_proof_bundle");
    assert_eq!(receipt.records.len(), 4);
    // Each record reference is the digest the read tool reports for that record.
    let read = data(&ws.call(
        "proof:gate_record",
        json!({"tenant_id": "tenant-a", "record_id": "gate-1"}),
    ));
    assert_eq!(
        receipt.records[1].content_digest.to_string(),
        read["content_digest"]
    );

    // 4. The export is announced on the queue kind with the receipt's digest.
    let exported = ws.events("tenant-evidence:proof_bundle_exported");
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["payload"]["bundle_id"], "bundle-1");
    assert_eq!(
        exported[0]["payload"]["content_digest"],
        d["content_digest"]
    );
    assert_eq!(
        exported[0]["payload"]["approval_id"],
        "tenant-evidence:export"
    );

    // 5. The grant was consumed: the same call asks again.
    let again = ws.call("proof:export_attested_bundle", input);
    assert_eq!(code(&again), "APPROVAL_REQUIRED");
    assert_ne!(again.approval_id.as_deref(), Some(approval.as_str()));
}

#[test]
fn a_granted_export_without_the_approval_in_its_input_is_refused_and_writes_nothing() {
    // TEV-04, Q23: the grant alone is not enough; the caller must state the approval.
    let ws = Ws::new();
    for approvals in [
        Value::Null,
        json!([]),
        json!(["some-other:approval"]),
        json!([{"approval_id": "tenant-evidence:export", "status": "pending"}]),
        json!([{"id": "tenant-evidence:export", "type": "operator"}]),
    ] {
        let mut input = export_input("bundle-x", approvals.clone());
        if approvals.is_null() {
            input.as_object_mut().unwrap().remove("approvals");
        }
        let out = ws.export_granted(input);
        assert_eq!(code(&out), "APPROVAL_REQUIRED", "{approvals}");
        assert!(
            message(&out).contains("tenant-evidence:export"),
            "{}",
            message(&out)
        );
        assert!(ws.exports().is_empty(), "{approvals}");
    }
    assert!(ws
        .events("tenant-evidence:proof_bundle_exported")
        .is_empty());
    // The object forms of Q23 are accepted.
    for (bundle, approvals) in [
        (
            "bundle-obj-1",
            json!([{"approval_id": "tenant-evidence:export", "type": "operator", "status": "approved"}]),
        ),
        (
            "bundle-obj-2",
            json!(["unrelated", {"id": "tenant-evidence:export", "status": "approved"}]),
        ),
    ] {
        data(&ws.export_granted(export_input(bundle, approvals)));
    }
    assert_eq!(ws.exports(), ["bundle-obj-1.json", "bundle-obj-2.json"]);
}

#[test]
fn bad_exports_are_refused_as_a_whole_and_never_overwrite() {
    let ws = Ws::new();
    let ok = json!(["tenant-evidence:export"]);
    // A missing record, and another tenant's record: nothing written.
    for (kind, id) in [("gate", "missing"), ("checkpoint", "cp-b")] {
        let mut input = export_input("bundle-bad", ok.clone());
        input["records"]
            .as_array_mut()
            .unwrap()
            .push(json!({"record_kind": kind, "record_id": id}));
        let out = ws.export_granted(input);
        assert_eq!(code(&out), "RECORD_NOT_FOUND");
        assert!(message(&out).contains(id));
        assert!(ws.exports().is_empty());
    }
    // A record listed twice.
    let mut input = export_input("bundle-dup", ok.clone());
    input["records"]
        .as_array_mut()
        .unwrap()
        .push(json!({"record_kind": "checkpoint", "record_id": "cp-1"}));
    let out = ws.export_granted(input);
    assert_eq!(code(&out), "INVALID_INPUT");
    assert!(message(&out).contains("records[4]"), "{}", message(&out));
    // An unknown field.
    let mut input = export_input("bundle-extra", ok.clone());
    input["seal"] = json!("x");
    let out = ws.export_granted(input);
    assert_eq!(code(&out), "INVALID_INPUT");
    assert!(message(&out).contains("seal"));
    assert!(ws.exports().is_empty());
    // A bundle id that would leave the exports folder is refused by the input schema.
    let out = ws.call(
        "proof:export_attested_bundle",
        export_input("../../x", ok.clone()),
    );
    assert_eq!(code(&out), "INVALID_INPUT");
    // An existing bundle is never overwritten.
    data(&ws.export_granted(export_input("bundle-1", ok.clone())));
    let before = fs::read(
        ws.root
            .join(".lumenflow/state/campus/evidence/exports/bundle-1.json"),
    )
    .unwrap();
    let mut input = export_input("bundle-1", ok);
    input["records"].as_array_mut().unwrap().truncate(1);
    let out = ws.export_granted(input);
    assert_eq!(code(&out), "BUNDLE_EXISTS");
    let after = fs::read(
        ws.root
            .join(".lumenflow/state/campus/evidence/exports/bundle-1.json"),
    )
    .unwrap();
    assert_eq!(before, after);
}

#[test]
fn without_the_campus_pack_consenting_the_export_is_refused_by_the_kernel() {
    // Q26: tenant-evidence claims the campus state folder (`state_folders: [campus]`), but a
    // claim grants nothing unless the folder's owner is loaded and lists it in `state_writers`.
    let ws = Ws::with(true);
    let out = ws.call(
        "proof:export_attested_bundle",
        export_input("bundle-1", json!(["tenant-evidence:export"])),
    );
    assert_eq!(code(&out), "SCOPE_DENIED");
    assert!(message(&out).contains("reserved"), "{}", message(&out));
    assert!(
        out.approval_id.is_none(),
        "refused before any approval is asked"
    );
    assert!(ws.exports().is_empty());
}

#[test]
fn input_approvals_accepts_the_q23_shapes_and_nothing_else() {
    use lumenflow_packs::tenant_evidence::export::check_input_approvals;
    let ok = |approvals: Value| check_input_approvals(&json!({"approvals": approvals}));
    for good in [
        json!(["tenant-evidence:export"]),
        json!(["other", "tenant-evidence:export"]),
        json!([{"approval_id": "tenant-evidence:export", "type": "operator", "status": "approved"}]),
        json!([{"id": "tenant-evidence:export", "status": "approved"}]),
    ] {
        assert!(ok(good.clone()).is_ok(), "{good}");
    }
    for (bad, code) in [
        (json!([]), "APPROVAL_REQUIRED"),
        (json!(["tenant-evidence:other"]), "APPROVAL_REQUIRED"),
        (
            json!([{"approval_id": "tenant-evidence:export", "status": "pending"}]),
            "APPROVAL_REQUIRED",
        ),
        (
            json!([{"approval_id": "tenant-evidence:export"}]),
            "APPROVAL_REQUIRED",
        ),
        (json!("tenant-evidence:export"), "INVALID_INPUT"),
        (json!([42]), "INVALID_INPUT"),
    ] {
        let err = ok(bad.clone()).unwrap_err();
        assert_eq!(err.error_code(), Some(code), "{bad}");
        if code == "APPROVAL_REQUIRED" {
            assert!(
                serde_json::to_string(&err.error)
                    .unwrap()
                    .contains("tenant-evidence:export"),
                "{bad}"
            );
        }
    }
    let absent = check_input_approvals(&json!({})).unwrap_err();
    assert_eq!(absent.error_code(), Some("APPROVAL_REQUIRED"));
}

#[test]
fn the_receipt_of_a_bundle_references_each_record_by_digest() {
    // TEV-05 to TEV-07 without the dispatch path: the receipt the export writes.
    use lumenflow_contracts::payloads::RecordKind;
    use lumenflow_packs::tenant_evidence::export::build_receipt;
    let ws = Ws::new();
    let records = vec![
        (RecordKind::Checkpoint, "cp-1".to_string()),
        (RecordKind::Attestation, "att-1".to_string()),
    ];
    let at = Timestamp::parse("2026-11-21T09:00:00.000Z").unwrap();
    let receipt = build_receipt(&ws.root, "ws-42", "tenant-a", "bundle-1", &records, at).unwrap();
    receipt.verify().unwrap();
    let value = receipt.to_value();
    for key in FORBIDDEN_RECEIPT_KEYS {
        assert!(value.get(*key).is_none(), "{key}");
    }
    assert_eq!(verify_receipt_value(&value).unwrap(), receipt);
    let read = data(&ws.call(
        "proof:attestation_record",
        json!({"tenant_id": "tenant-a", "record_id": "att-1"}),
    ));
    assert_eq!(
        receipt.records[1].content_digest.to_string(),
        read["content_digest"]
    );
    // A missing record or another tenant's record refuses the whole receipt.
    for (kind, id) in [
        (RecordKind::Gate, "missing"),
        (RecordKind::Checkpoint, "cp-b"),
    ] {
        let mut bad = records.clone();
        bad.push((kind, id.to_string()));
        let err = build_receipt(&ws.root, "ws-42", "tenant-a", "bundle-1", &bad, at).unwrap_err();
        assert_eq!(err.error_code(), Some("RECORD_NOT_FOUND"));
    }
    let err = build_receipt(&ws.root, "ws-42", "tenant-a", "../x", &records, at).unwrap_err();
    assert_eq!(err.error_code(), Some("INVALID_INPUT"));
}

// ---------------------------------------------------------------------------------------------
// Vendor-name-free (GOV-02, CRS-04)

/// Brand names that must not appear in a published type, enum value or branch of these packs
/// and the resolver.
const VENDOR_BRANDS: &[&str] = &[
    "nvidia",
    "amd",
    "intel",
    "arm",
    "qualcomm",
    "apple",
    "aws",
    "amazon",
    "azure",
    "microsoft",
    "gcp",
    "google",
    "oracle",
    "ibm",
    "alibaba",
    "tencent",
    "huawei",
    "openai",
    "anthropic",
    "mistral",
    "cohere",
    "meta",
    "coreweave",
    "lambda",
    "cuda",
    "rocm",
    "tpu",
    "gemini",
    "claude",
    "gpt",
    "llama",
    "dell",
    "hpe",
    "supermicro",
    "cisco",
    "vmware",
    "redhat",
    "ubuntu",
];

/// Lower-case alphanumeric words of `text` (identifiers split at `_`, `-`, `:` and case
/// changes), so `provider_family` is `provider`, `family` and a brand inside a word such as
/// "intelligence" or "farm" is not a hit.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            cur.push(c.to_ascii_lowercase());
        } else {
            prev_lower = false;
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn brand_hits(what: &str, text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| VENDOR_BRANDS.contains(&w.as_str()))
        .map(|w| format!("{what}: `{w}`"))
        .collect()
}

#[test]
fn no_vendor_brand_appears_in_the_published_types_values_or_logic() {
    // The scanner finds what it should.
    assert_eq!(brand_hits("t", "PeerKind::NvidiaNode"), ["t: `nvidia`"]);
    assert!(brand_hits("t", "artificial intelligence farm").is_empty());

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut hits = Vec::new();
    // Source of the pack (every embedded file), the resolver types, the receipt, the algorithm.
    for (path, bytes) in PACK.files {
        hits.extend(brand_hits(path, &String::from_utf8_lossy(bytes)));
    }
    for file in [
        "crates/contracts/src/resolver.rs",
        "crates/contracts/src/receipt.rs",
        "crates/kernel/src/resolver.rs",
        "crates/cli/src/commands/compute.rs",
    ] {
        let text = fs::read_to_string(root.join(file)).unwrap();
        hits.extend(brand_hits(file, &text));
    }
    // The published values: tool contracts, kinds, record kinds, descriptor kinds, and the
    // wire form of the manifest.
    let published = json!({
        "contracts": TENANT_EVIDENCE_TOOL_CONTRACTS,
        "event_kinds": TENANT_EVIDENCE_EVENT_KIND_VALUES,
        "record_kinds": TENANT_EVIDENCE_RECORD_KIND_VALUES,
        "peer_kinds": lumenflow_contracts::resolver::PEER_DESCRIPTOR_KINDS,
        "manifest": serde_json::to_value(manifest()).unwrap(),
    });
    hits.extend(brand_hits("published values", &published.to_string()));
    assert!(hits.is_empty(), "vendor brands found: {hits:#?}");
}
