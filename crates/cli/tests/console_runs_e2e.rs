//! The console's Runs, Recovery and Energy pages (issue 7) with real parts: `lumenflow cloud
//! serve`, the real trusted-compute demo pointed at it (a real sidecar, a real run, its bundle
//! sealed and uploaded), a second workspace enrolled with its running sidecar, and headless
//! Chromium through chromedriver (the `console_support` harness).
//!
//! The browser opens the run's replay and sees every stage and the bundle "verified", downloads
//! the bundle and gets the very files the demo wrote; a tampered bundle shows which check failed;
//! on an aborted turn, cancelling the recovery dialog sends nothing, confirming it delivers a
//! `conductor:recovery_requested` to the sidecar; campus telemetry draws as SVG charts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod console_support;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use console_support::{get, post, sidecar, Browser, Cloud, PASSWORD, WS};
use lumenflow_contracts::event::{build_event, BuildOptions};
use serde_json::{json, Map, Value};

const RUN: &str = "tc-console-1";
const TAMPERED_RUN: &str = "tc-golden";
const FORGED_RUN: &str = "tc-forged";
const FOREIGN_ASK_RUN: &str = "tc-foreign-ask";

fn workspace_token(root: &Path) -> String {
    let enrollment: Value = serde_json::from_slice(
        &std::fs::read(root.join(".lumenflow/state/conductor/enrollment.json")).unwrap(),
    )
    .unwrap();
    enrollment["token"].as_str().unwrap().to_string()
}

/// Push v2 events for `ws` with its own token, as its sidecar would.
fn push(cloud: &Cloud, ws: &str, token: &str, events: &[(&str, Value)]) {
    let events: Vec<Value> = events
        .iter()
        .map(|(kind, payload)| {
            let Value::Object(map) = payload.clone() else {
                panic!("payload of {kind} is not an object")
            };
            serde_json::to_value(build_event(kind, ws, map, BuildOptions::default()).unwrap())
                .unwrap()
        })
        .collect();
    let (s, body) = post(
        &format!("{}/api/v1/events", cloud.url),
        Some(token),
        &json!({"workspace_id": ws, "events": events}),
    );
    assert_eq!(s, 200, "{body}");
}

fn audit(cloud: &Cloud, operator: &str, ws: &str) -> Vec<Value> {
    let (s, body) = get(
        &format!("{}/api/v1/audit?workspace_id={ws}&limit=1000", cloud.url),
        Some(operator),
    );
    assert_eq!(s, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// Every file of a bundle folder, base64.
fn bundle_files(dir: &Path) -> Map<String, Value> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "expected.json")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                json!(base64::engine::general_purpose::STANDARD
                    .encode(std::fs::read(e.path()).unwrap())),
            )
        })
        .collect()
}

fn count(browser: &Browser, css: &str) -> u64 {
    browser
        .js(&format!(
            "return document.querySelectorAll({}).length;",
            json!(css)
        ))
        .as_u64()
        .unwrap()
}

/// Whether the sidecar's kernel log recorded an inbound `conductor:recovery_requested`.
fn sidecar_received(root: &Path, event_id: Option<&str>) -> bool {
    sidecar::kernel_log(root).iter().any(|r| {
        r["kind"] == "sidecar_event_received"
            && r["event_kind"] == "conductor:recovery_requested"
            && event_id.is_none_or(|id| r["event_id"] == id)
    })
}

#[test]
fn runs_replay_bundle_recovery_and_energy_in_the_browser() {
    let home = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(home.path());
    cloud.add_operator("alice", PASSWORD);
    let operator = cloud.operator_token();

    // A real run: the trusted-compute demo against this control plane; it seals the bundle's
    // receipt and uploads the bundle with the workspace's token.
    let out = std::process::Command::new(console_support::bin())
        .args([
            "--json",
            "demo",
            "trusted-compute",
            "--approve",
            "--run-id",
            RUN,
        ])
        .args(["--control-plane", &cloud.url, "--operator-token", &operator])
        .arg("--work-dir")
        .arg(home.path().join("demo"))
        .arg("--out")
        .arg(home.path().join("evidence"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let demo_ws = home.path().join("demo/workspace");
    let bundle_dir = home.path().join("evidence").join(RUN);

    // A tampered golden bundle, uploaded by the same workspace: verified on upload, kept, failed.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bundles");
    let (s, verdict) = post_put(
        &format!("{}/api/v1/runs/{TAMPERED_RUN}/bundle", cloud.url),
        &workspace_token(&demo_ws),
        &json!({"workspace_id": "tc-demo", "files": bundle_files(&fixtures.join("tampered-artifact"))}),
    );
    assert_eq!(s, 200, "{verdict}");
    assert_eq!(verdict["passed"], false, "{verdict}");
    let failed: Vec<&str> = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["hashes_match"]);
    // Evidence is not replaced: the same files again are fine, other files are a conflict.
    let tampered = bundle_files(&fixtures.join("tampered-artifact"));
    let valid = bundle_files(&fixtures.join("valid"));
    let url = format!("{}/api/v1/runs/{TAMPERED_RUN}/bundle", cloud.url);
    let ws_body = |files: &Map<String, Value>| json!({"workspace_id": "tc-demo", "files": files});
    assert_eq!(
        post_put(&url, &workspace_token(&demo_ws), &ws_body(&tampered)).0,
        200
    );
    let (s, body) = post_put(&url, &workspace_token(&demo_ws), &ws_body(&valid));
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("CONFLICT")),
        "{body}"
    );
    // Only the workspace's own token uploads; the manifest must be the path's run.
    let (s, _) = post_put(&url, &operator, &ws_body(&valid));
    assert_eq!(s, 403);
    let (s, body) = post_put(
        &format!("{}/api/v1/runs/another-run/bundle", cloud.url),
        &workspace_token(&demo_ws),
        &ws_body(&valid),
    );
    assert_eq!(s, 400, "{body}");

    // walk-G F3: the demo's bundle pinned the workspace's signer (first use); a bundle signed
    // by another key verifies but is flagged, with both ids; an ask.json of another run fails.
    let forger = lumenflow_proof::KeyPair::generate();
    let (s, forged) = post_put(
        &format!("{}/api/v1/runs/{FORGED_RUN}/bundle", cloud.url),
        &workspace_token(&demo_ws),
        &ws_body(&sealed_bundle(FORGED_RUN, &forger, |_, t| t)),
    );
    assert_eq!(s, 200, "{forged}");
    assert_eq!(
        (&forged["passed"], &forged["signer_changed"]),
        (&json!(true), &json!(true)),
        "{forged}"
    );
    let (s, foreign) = post_put(
        &format!("{}/api/v1/runs/{FOREIGN_ASK_RUN}/bundle", cloud.url),
        &workspace_token(&demo_ws),
        &ws_body(&sealed_bundle(FOREIGN_ASK_RUN, &forger, |name, t| {
            if name == "ask.json" {
                t.replace(FOREIGN_ASK_RUN, "tc-elsewhere")
            } else {
                t
            }
        })),
    );
    assert_eq!((s, &foreign["passed"]), (200, &json!(false)), "{foreign}");

    let browser = Browser::start(&cloud.url);
    browser.login("alice", PASSWORD);

    // Runs: the demo's run, its bundle verified; the tampered one, failed.
    browser.goto("#/runs");
    browser.wait_for(&format!("[data-testid=run-row][data-run-id='{RUN}']"));
    browser.wait_for(&format!(
        "[data-testid=run-row][data-run-id='{TAMPERED_RUN}']"
    ));
    let row = browser.text(&format!("[data-testid=run-row][data-run-id='{RUN}']"));
    assert!(row.contains("tc-demo") && row.contains("verified"), "{row}");
    browser.wait_for(&format!(
        "[data-testid=run-row][data-run-id='{RUN}'] [data-testid=run-bundle][data-status=verified]"
    ));
    // The forged run is not a plain "verified" in the list.
    browser.wait_for(&format!(
        "[data-testid=run-row][data-run-id='{FORGED_RUN}'] [data-testid=run-bundle][data-status=signer-changed]"
    ));
    let row = browser.text(&format!(
        "[data-testid=run-row][data-run-id='{FORGED_RUN}']"
    ));
    assert!(row.contains("SIGNER CHANGED"), "{row}");
    browser.screenshot("runs");

    // The replay: every stage, the Ask, the rules' decisions, the tests, the diff, the approval
    // with who and why, and Proof with the bundle verified by the key the demo signed with.
    browser.click(&format!(
        "[data-testid=run-row][data-run-id='{RUN}'] [data-testid=run-link]"
    ));
    browser.wait_for("[data-testid=timeline]");
    for stage in [
        "ask",
        "dispatch",
        "rules",
        "tool_calls",
        "approvals",
        "proof",
    ] {
        browser.wait_for(&format!("[data-testid=stage-{stage}]"));
    }
    let ask = browser.text("[data-testid=ask-goal]");
    assert!(ask.contains("Fix the failing add test"), "{ask}");
    assert_eq!(browser.text("[data-testid=ask-by]"), "demo-operator");
    assert!(
        count(
            &browser,
            "[data-testid=policy-decision][data-decision=allow]"
        ) >= 4
    );
    assert!(count(&browser, "[data-testid=test-result][data-status=passed]") >= 2);
    let diff = browser.text("[data-testid=diff]");
    assert!(diff.contains("+  echo $(( $1 + $2 ))"), "{diff}");
    assert!(count(&browser, "[data-testid=tool-call]") >= 4);
    // The reviewer is the subject of the operator token the demo was given (`operator`), not
    // the `reviewer_id` its body names (walk-B finding 1).
    assert_eq!(
        browser.text(
            "[data-testid=approval-item][data-status=approved] [data-testid=approval-reviewer]"
        ),
        "operator"
    );
    browser.wait_for("[data-testid=bundle-status][data-status=verified]");
    browser.wait_for("[data-testid=ask-verification][data-verified=true]");
    assert_eq!(count(&browser, "[data-testid=bundle-signer-changed]"), 0);
    assert_eq!(
        count(&browser, "[data-testid=run-signer-changed-banner]"),
        0
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bundle_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        browser.text("[data-testid=bundle-signer]"),
        manifest["signer_key_id"].as_str().unwrap()
    );
    assert_eq!(
        count(&browser, "[data-testid=bundle-check][data-passed=true]"),
        4
    );
    browser.screenshot("replay");
    browser
        .js("document.querySelector('[data-testid=stage-proof]').scrollIntoView(); return true;");
    browser.screenshot("replay-proof");

    // The download: a tar of the very files the demo wrote, under a folder named after the run.
    let href = browser
        .js("return document.querySelector('[data-testid=bundle-download]').getAttribute('href');");
    let fetched = browser.js_async(&format!(
        "const done = arguments[0];
         fetch({href}, {{credentials: 'same-origin'}}).then(async r => {{
           const bytes = new Uint8Array(await r.arrayBuffer());
           let bin = ''; for (const b of bytes) bin += String.fromCharCode(b);
           done({{status: r.status, type: r.headers.get('content-type'), b64: btoa(bin)}});
         }}).catch(e => done({{status: 0, error: String(e)}}));"
    ));
    assert_eq!(fetched["status"], 200, "{fetched}");
    assert_eq!(fetched["type"], "application/x-tar");
    let tar_bytes = base64::engine::general_purpose::STANDARD
        .decode(fetched["b64"].as_str().unwrap())
        .unwrap();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut from_tar = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        from_tar.insert(path, bytes);
    }
    let on_disk: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&bundle_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                format!("{RUN}/{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    assert_eq!(from_tar, on_disk);
    assert!(audit(&cloud, &operator, "tc-demo")
        .iter()
        .any(|l| { l["subject"] == "operator:alice" && l["action"] == "console.bundle.download" }));

    // The tampered bundle: failed, naming the check.
    browser.route(&format!("#/runs/{TAMPERED_RUN}/tc-demo"));
    browser.wait_for("[data-testid=bundle-status][data-status=failed]");
    // Its placeholder ask.json states no goal, so no Ask is made up from it.
    browser.wait_for("[data-testid=ask-empty]");
    assert!(browser
        .text("[data-testid=bundle-failed-checks]")
        .contains("hashes_match"));
    browser.screenshot("replay-failed-bundle");
    // The golden fixture is signed by the fixture key, not the demo's pinned one: said as well.
    browser.wait_for("[data-testid=bundle-signer-changed]");

    // The forged bundle: the run page leads with the signer change, both keys, and the Ask is
    // not verified, saying why.
    browser.route(&format!("#/runs/{FORGED_RUN}/tc-demo"));
    browser.wait_for("[data-testid=run-signer-changed-banner]");
    browser.wait_for("[data-testid=bundle-status][data-status=signer-changed]");
    browser.wait_for("[data-testid=bundle-signer-changed]");
    assert_eq!(
        browser.text("[data-testid=bundle-new-signer]"),
        forger.public().key_id()
    );
    assert_eq!(
        browser.text("[data-testid=bundle-pinned-signer]"),
        manifest["signer_key_id"].as_str().unwrap()
    );
    assert!(browser
        .text("[data-testid=bundle-signer-changed]")
        .contains("lumenflow cloud signer pin"));
    browser.wait_for("[data-testid=ask-verification][data-verified=false]");
    assert!(browser
        .text("[data-testid=ask-verification]")
        .contains("pinned signer"));
    browser.screenshot("replay-signer-changed");

    // An ask.json of another run is never shown as verified, and the panel names both runs.
    browser.route(&format!("#/runs/{FOREIGN_ASK_RUN}/tc-demo"));
    browser.wait_for("[data-testid=ask-verification][data-verified=false]");
    let why = browser.text("[data-testid=ask-verification]");
    assert!(
        why.contains(&format!(
            "ask.json names run `tc-elsewhere`, not this run `{FOREIGN_ASK_RUN}`"
        )),
        "{why}"
    );

    // Recovery: an aborted turn of a workspace whose sidecar runs.
    let ws = cloud.enroll_workspace(&[]);
    let ws_token = workspace_token(&ws.root);
    browser.route("#/energy");
    browser.wait_for("[data-testid=energy-empty]");
    assert_eq!(
        browser.text("[data-testid=energy-empty]"),
        "no campus telemetry yet"
    );
    push(
        &cloud,
        WS,
        &ws_token,
        &[(
            "agent-runtime:turn_aborted",
            json!({"turn_id": "turn-7", "cleanup_status": "needs_recovery",
                   "recovery_action": "lumenflow tool call software-delivery:wu_recover --input '{\"wu_id\":\"WU-7\"}'",
                   "reason": "the turn was interrupted during step 2 `software-delivery:apply_patch`",
                   "run_id": "run-aborted-7"}),
        )],
    );
    browser.route("#/recovery");
    browser.wait_for("[data-testid=aborted-turn][data-turn-id=turn-7]");
    assert_eq!(
        browser.text("[data-testid=cleanup-status]"),
        "needs_recovery"
    );
    assert!(browser
        .text("[data-testid=recovery-action-text]")
        .contains("software-delivery:wu_recover"));

    // Without the session's CSRF token the request is refused before anything is sent.
    let refused = browser.fetch(
        "POST",
        "/console/api/recovery",
        &json!({"Content-Type": "application/json"}),
        Some(&json!({"workspace_id": WS, "turn_event_id": "evt_x", "wu_id": "WU-7"})),
    );
    assert_eq!(refused["status"], 403, "{refused}");

    // Cancel: nothing is sent, nothing recorded.
    browser.click("[data-testid=recovery-action]");
    browser.wait_for("[data-testid=dialog] [data-testid=recovery-wu]");
    assert_eq!(
        browser.js("return document.querySelector('[data-testid=recovery-wu]').value;"),
        "WU-7"
    );
    browser.screenshot("recovery-dialog");
    browser.click("[data-testid=dialog-cancel]");
    browser.wait_js(
        "!document.querySelector('[data-testid=dialog]')",
        "the dialog closes",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!sidecar_received(&ws.root, None), "cancel sent an event");
    assert!(!audit(&cloud, &operator, WS)
        .iter()
        .any(|l| l["action"] == "console.recovery.request"));
    assert_eq!(count(&browser, "[data-testid=recovery-request]"), 0);

    // Confirm: the sidecar receives conductor:recovery_requested, the answer is shown.
    browser.click("[data-testid=recovery-action]");
    browser.fill("[data-testid=dialog-reason]", "worktree left half-patched");
    browser.click("[data-testid=dialog-confirm]");
    browser.wait_for("[data-testid=recovery-request][data-outcome=delivered]");
    let result = browser.text("[data-testid=recovery-result]");
    assert!(result.contains("delivered"), "{result}");
    let answer = browser.text("[data-testid=recovery-sidecar-answer]");
    assert!(answer.starts_with("sidecar HTTP 200"), "{answer}");
    let lines = audit(&cloud, &operator, WS);
    let line = lines
        .iter()
        .find(|l| l["action"] == "console.recovery.request")
        .expect("the request is audited");
    assert_eq!(line["subject"], "operator:alice");
    let detail = line["detail"].as_str().unwrap();
    let event_id = detail
        .split_whitespace()
        .find(|w| w.starts_with("evt_"))
        .unwrap();
    assert!(
        sidecar_received(&ws.root, Some(event_id)),
        "the sidecar did not record {event_id}:\n{}",
        ws.sidecar.log()
    );
    browser.screenshot("recovery");

    // Energy: campus telemetry pushed by the workspace draws as charts.
    let hour = |h: u32| format!("2026-11-20T{h:02}:00:00.000Z");
    let mut events: Vec<(&str, Value)> = [1.3, 1.2, 1.4]
        .iter()
        .zip(0u32..)
        .map(|(pue, i)| {
            (
                "campus:pue_sampled",
                json!({"facility_id": "campus-a", "pue": pue, "sampled_at": hour(i)}),
            )
        })
        .collect();
    for i in 0..2 {
        events.push((
            "campus:facility_energy_recorded",
            json!({"facility_id": "campus-a", "valid_from": hour(i), "valid_to": hour(i + 1),
                   "quantity_joules": 3.6e9 * f64::from(i + 1)}),
        ));
    }
    events.push((
        "emit:energy_meter_recorded",
        json!({"workspace_id": WS, "facility_id": "campus-a", "region": "eu-west-1",
               "valid_from": hour(0), "valid_to": hour(1), "quantity_joules": 1.8e9,
               "unit": "joules", "source": "facility_meter:utility-smart-meter-a",
               "energy_source": "smart_meter", "energy_provenance": "measured",
               "pue": 1.2, "pue_applied": true}),
    ));
    push(&cloud, WS, &ws_token, &events);
    browser.route("#/energy");
    browser.wait_for("[data-testid=energy-facility][data-facility=campus-a]");
    assert_eq!(
        count(
            &browser,
            "svg[data-testid=pue-chart] [data-testid=pue-point]"
        ),
        3
    );
    assert_eq!(
        count(
            &browser,
            "svg[data-testid=energy-chart] [data-testid=energy-bar][data-kind=facility]"
        ),
        2
    );
    assert_eq!(
        count(
            &browser,
            "svg[data-testid=energy-chart] [data-testid=energy-bar][data-kind=meter]"
        ),
        1
    );
    assert_eq!(browser.text("[data-testid=latest-pue]"), "1.4");
    browser.screenshot("energy");
}

/// `PUT` JSON with a bearer token.
fn post_put(url: &str, token: &str, body: &Value) -> (u16, Value) {
    sidecar::body(
        sidecar::http()
            .put(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .unwrap(),
    )
}

/// The golden bundle's nine artifacts made into run `run` (every `tc-golden` replaced, a goal
/// given to its placeholder `ask.json`, then `edit` applied to each file's text), sealed by
/// `key`: every file, base64.
fn sealed_bundle(
    run: &str,
    key: &lumenflow_proof::KeyPair,
    edit: impl Fn(&str, String) -> String,
) -> Map<String, Value> {
    use lumenflow_proof::bundle;
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bundles/valid");
    let dir = tempfile::tempdir().unwrap();
    for name in bundle::REQUIRED_ARTIFACTS {
        let text = std::fs::read_to_string(golden.join(name))
            .unwrap()
            .replace("tc-golden", run)
            .replace(
                "{\"file\": \"ask.json\"",
                "{\"goal\": \"A forged goal\", \"file\": \"ask.json\"",
            );
        std::fs::write(dir.path().join(name), edit(name, text)).unwrap();
    }
    bundle::seal(
        dir.path(),
        key,
        &bundle::SealRequest {
            run_id: run,
            mode: "happy",
            created_at: "2026-11-21T00:00:00.000Z",
        },
    )
    .unwrap();
    bundle_files(dir.path())
}
