//! The conductor sidecar end to end: the real `lumenflow sidecar` process, a real HTTP control
//! plane stand-in, real built-in packs (ENR-01 to ENR-11, SCR-02 to SCR-05, INV-01 to INV-09,
//! DLV, BKP, ABR-04, ABR-05, Q15 to Q17, Q20, Q37, Q39, Q40).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod sidecar_support;

use std::time::Duration;

use serde_json::{json, Value};
use sidecar_support::*;

/// S3's wire trace: claim WU-042, then an agent turn that runs its gates; every event reaches
/// the control plane from the token subject, and the workspace keeps a stamp of each.
#[test]
fn seed_003_wire_trace_runs_against_the_sidecar() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let sidecar = Sidecar::spawn(&root, &["--backoff-base-ms", "50"]);
    let url = &sidecar.url;
    let token = cloud.token(WS, "workspace agent:execute-turn");

    // Discover: manifest-derived, sorted, filtered by scope, with an ETag.
    let resp = http()
        .get(format!("{url}/tools"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let listing: Value = resp.json().unwrap();
    let names: Vec<&str> = listing["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"software-delivery:wu_claim"), "{names:?}");
    assert!(names.contains(&"agent:execute-turn"), "{names:?}");
    let claim = listing["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "software-delivery:wu_claim")
        .unwrap();
    assert_eq!(claim["pack_id"], "software-delivery");
    assert_eq!(claim["token_scope"], "workspace");
    assert_eq!(claim["decision"], "allow");
    assert_eq!(claim["input_schema"]["required"], json!(["wu_id", "lane"]));
    let again = http()
        .get(format!("{url}/tools"))
        .bearer_auth(&token)
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    // A workspace-only token does not see the agent tool (same decision as calling it).
    let narrow = cloud.token(WS, "workspace");
    let (s, l) = get(&format!("{url}/tools"), Some(&narrow));
    assert_eq!(s, 200);
    assert!(!l["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "agent:execute-turn"));

    // Invoke: the bare body form, the tool name percent-encoded.
    let (s, out) = post(
        &format!("{url}/tools/software-delivery%3Awu_claim"),
        Some(&token),
        &json!({"wu_id": "WU-042", "lane": "Content: Site Comms"}),
    );
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["success"], true);
    let worktree = out["data"]["worktree_path"].as_str().unwrap();
    assert!(std::path::Path::new(worktree).join(".git").exists());
    assert!(out["receipt_id"].as_str().unwrap().starts_with("rcpt_"));

    // The agent turn (envelope form), scripted so the run is reproducible.
    let (s, turn) = post(
        &format!("{url}/tools/agent:execute-turn"),
        Some(&token),
        &json!({"input": {"goal": "run gates on WU-042", "plan": {"steps": [
            {"tool": "software-delivery:gates", "input": {"wu_id": "WU-042"}}
        ]}}}),
    );
    assert_eq!(s, 200, "{turn}");
    assert_eq!(turn["data"]["status"], "completed", "{turn}");
    assert!(turn["data"]["evidence_ref"].is_string());

    // Observe: the trace's events, in order, from the token subject, numbered on one channel.
    let kinds = [
        "software-delivery:wu_claimed",
        "agent-runtime:turn_started",
        "software-delivery:gate_passed",
        "agent-runtime:turn_completed",
    ];
    assert!(
        wait_until(Duration::from_secs(20), || {
            kinds.iter().all(|k| !cloud.events_of(k).is_empty())
                && cloud.events_of("agent-runtime:tool_called").len() >= 3
        }),
        "events at the control plane: {:#?}\n{}",
        cloud.events(),
        sidecar.log()
    );
    let events = cloud.events();
    let pos = |k: &str| events.iter().position(|e| e["kind"] == k).unwrap();
    assert!(
        pos(kinds[0]) < pos(kinds[1])
            && pos(kinds[1]) < pos(kinds[2])
            && pos(kinds[2]) < pos(kinds[3])
    );
    let called: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "agent-runtime:tool_called")
        .map(|e| e["payload"]["tool_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        called,
        vec![
            "software-delivery:wu_claim",
            "software-delivery:gates",
            "agent:execute-turn"
        ]
    );
    for e in &events {
        assert_eq!(e["from"], WS, "{e}");
        assert_eq!(e["schema_version"], 2);
        assert!(e["event_id"].as_str().unwrap().starts_with("evt_"));
        assert!(e["seq"].as_u64().is_some(), "{e}");
    }
    let gates_called = events
        .iter()
        .find(|e| e["payload"]["tool_name"] == "software-delivery:gates")
        .unwrap();
    assert_eq!(gates_called["payload"]["outcome"], "success");
    assert!(gates_called["payload"]["envelope_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // One channel: seq grows in emission order.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        cloud.state.lock().unwrap().workspace_ids,
        [WS.to_string()].into()
    );
    // The local stamp of every event.
    let stamped: Vec<String> = ledger(&root)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    for e in &events {
        assert!(stamped.contains(&e["event_id"].as_str().unwrap().to_string()));
    }
    // The tool calls are in the kernel's audit chain with the token subject as caller.
    let started: Vec<Value> = kernel_log(&root)
        .into_iter()
        .filter(|r| r["kind"] == "tool_call_started")
        .collect();
    assert!(
        started
            .iter()
            .all(|r| r["caller"] == WS && r["surface"] == "http" || r["surface"] == "agent"),
        "{started:#?}"
    );
    ok(&root, &["audit", "verify"]);

    // SCR-05: the tool surface was announced once; a restart with nothing changed is silent.
    let announced = cloud.events_of("conductor:workspace_updated");
    assert_eq!(announced.len(), 1, "{announced:#?}");
    assert!(announced[0]["payload"]["tools_etag"]
        .as_str()
        .unwrap()
        .starts_with("\"sha256:"));
    // No secret in the sidecar's log.
    let enrollment: Value = serde_json::from_slice(
        &std::fs::read(root.join(".lumenflow/state/conductor/enrollment.json")).unwrap(),
    )
    .unwrap();
    let log = sidecar.log();
    assert!(!log.contains(enrollment["token"].as_str().unwrap()) && !log.contains(&token));
    drop(sidecar);
    let again = Sidecar::spawn(&root, &[]);
    let (s, _) = get(&format!("{}/healthz", again.url), None);
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cloud.events_of("conductor:workspace_updated").len(), 1);
}

/// `POST /tools/git:status` with `{}` (a read-only built-in tool: its call is the probe).
fn git_status(sidecar: &Sidecar, token: &str) -> (u16, Value) {
    post(
        &format!("{}/tools/git:status", sidecar.url),
        Some(token),
        &json!({}),
    )
}

/// A `lumenflow tool call` in a second process beside the running sidecar: both append to the
/// kernel log (the file lock orders their commits, each continues after the other's records),
/// the sidecar keeps serving, the CLI's start-up does not close the sidecar's calls as crashed,
/// and the chain verifies.
#[test]
fn a_cli_call_beside_the_running_sidecar_shares_the_kernel_log() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let sidecar = Sidecar::spawn(&root, &[]);
    let token = cloud.token(WS, "workspace");
    let call = || git_status(&sidecar, &token);
    let (status, out) = call();
    assert_eq!((status, &out["success"]), (200, &json!(true)), "{out}");

    for _ in 0..3 {
        let printed = ok(
            &root,
            &["tool", "call", "git:status", "--input", "{}", "--json"],
        );
        assert!(printed.contains("\"branch\""), "{printed}");
        let (status, out) = call();
        assert_eq!((status, &out["success"]), (200, &json!(true)), "{out}");
    }

    let verified: Value = serde_json::from_str(&ok(&root, &["audit", "verify", "--json"])).unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
    let finished: Vec<Value> = kernel_log(&root)
        .into_iter()
        .filter(|r| r["kind"] == "tool_call_finished")
        .collect();
    assert_eq!(
        finished.len(),
        7,
        "4 sidecar calls and 3 CLI calls: {finished:?}"
    );
    assert!(
        finished.iter().all(|r| r["result"] == "success"),
        "no call was closed as crashed: {finished:?}"
    );
    sidecar.kill();
}

/// Fail closed: a revocation cache the sidecar cannot read is not an empty list. While the
/// control plane is unreachable every token is refused with a message naming the file; the
/// first pull of the list lifts it.
#[test]
fn a_damaged_revocation_cache_refuses_tokens_until_the_list_is_pulled() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let cache = root.join(".lumenflow/state/conductor/revocations.json");
    std::fs::write(&cache, b"[\"jti-9\", \"jti").unwrap();
    cloud.down();
    let sidecar = Sidecar::spawn(&root, &["--revocation-interval-ms", "200"]);
    let token = cloud.token(WS, "workspace");
    let call = || git_status(&sidecar, &token);
    let (status, body) = call();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("TOKEN_INVALID")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("revocations.json"), "{message}");
    assert!(
        !kernel_log(&root)
            .iter()
            .any(|r| r["kind"] == "tool_call_started" && r["tool_name"] == "git:status"),
        "nothing ran"
    );
    cloud.up();
    assert!(
        wait_until(Duration::from_secs(20), || call().0 == 200),
        "{}",
        sidecar.log()
    );
    let cached: Vec<String> = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert!(
        cached.is_empty(),
        "the pulled list replaced the cache: {cached:?}"
    );
}

/// INV-01, INV-02, Q16: forged, expired, wrong-audience, revoked and wrong-scope tokens are
/// refused before anything runs, and every refusal leaves a record in the kernel log.
#[test]
fn bad_tokens_are_refused_and_recorded_and_nothing_runs() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let revoked_claims = claims(WS, "workspace agent:execute-turn", 3600);
    cloud.state.lock().unwrap().revoked = vec![revoked_claims.jti.clone()];
    let sidecar = Sidecar::spawn(&root, &[]);
    let url = &sidecar.url;
    let other = lumenflow_proof::keys::KeyPair::generate();
    let forged = lumenflow_proof::token::mint(&other, &claims(WS, "workspace", 3600)).unwrap();
    let expired = cloud.mint(&claims(WS, "workspace", -3600));
    let mut wrong_aud = claims(WS, "workspace", 3600);
    wrong_aud.aud = "ws-other".into();
    let wrong_aud = cloud.mint(&wrong_aud);
    let revoked = cloud.mint(&revoked_claims);
    let workspace_only = cloud.token(WS, "workspace");

    let cases: Vec<(&str, Option<String>, &str, u16, &str)> = vec![
        (
            "missing",
            None,
            "software-delivery:wu_claim",
            401,
            "TOKEN_INVALID",
        ),
        (
            "forged",
            Some(forged),
            "software-delivery:wu_claim",
            401,
            "TOKEN_INVALID",
        ),
        (
            "expired",
            Some(expired),
            "software-delivery:wu_claim",
            401,
            "TOKEN_INVALID",
        ),
        (
            "wrong audience",
            Some(wrong_aud),
            "software-delivery:wu_claim",
            401,
            "TOKEN_INVALID",
        ),
        (
            "revoked",
            Some(revoked),
            "software-delivery:wu_claim",
            401,
            "TOKEN_INVALID",
        ),
        (
            "garbage",
            Some("not-a-jwt".into()),
            "software-delivery:wu_claim",
            401,
            "TOKEN_INVALID",
        ),
        (
            "wrong scope",
            Some(workspace_only.clone()),
            "agent:execute-turn",
            403,
            "TOKEN_SCOPE_DENIED",
        ),
    ];
    for (i, (name, token, tool, status, code)) in cases.iter().enumerate() {
        let wu = format!("WU-{}", 100 + i);
        let input = if *tool == "agent:execute-turn" {
            json!({"goal": "claim", "plan": {"steps": [{"tool": "software-delivery:wu_claim", "input": {"wu_id": wu, "lane": "Content: Site Comms"}}]}})
        } else {
            json!({"wu_id": wu, "lane": "Content: Site Comms"})
        };
        let (s, body) = post(&format!("{url}/tools/{tool}"), token.as_deref(), &input);
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{name}: {body}"
        );
        assert!(
            !root
                .join(format!(
                    ".lumenflow/state/software-delivery/claims/{wu}.json"
                ))
                .exists(),
            "{name}: the tool ran"
        );
        // Listing is refused the same way.
        if *status == 401 {
            let (s, _) = get(&format!("{url}/tools"), token.as_deref());
            assert_eq!(s, 401, "{name}");
        }
    }
    let log = kernel_log(&root);
    let refused: Vec<&Value> = log
        .iter()
        .filter(|r| r["kind"] == "sidecar_call_refused")
        .collect();
    assert!(refused.len() >= cases.len(), "{refused:#?}");
    let scope_refusal = refused
        .iter()
        .find(|r| r["error_code"] == "TOKEN_SCOPE_DENIED")
        .expect("scope refusal recorded");
    assert_eq!(scope_refusal["caller"], WS);
    assert_eq!(scope_refusal["tool_name"], "agent:execute-turn");
    assert!(
        log.iter().all(|r| r["kind"] != "tool_call_started"),
        "nothing was dispatched"
    );
    // A token for turns only cannot reach a `workspace` tool by naming it in a turn's plan
    // (Q16 through a turn): the step is refused in the kernel, with its receipt.
    let turn_only = cloud.token(WS, "agent:execute-turn");
    let (_, body) = post(
        &format!("{url}/tools/agent:execute-turn"),
        Some(&turn_only),
        &json!({"goal": "claim", "plan": {"steps": [{"tool": "software-delivery:wu_claim",
            "input": {"wu_id": "WU-190", "lane": "Content: Site Comms"}}]}}),
    );
    assert!(
        body.to_string().contains("TOKEN_SCOPE_DENIED"),
        "the turn's step was refused: {body}"
    );
    assert!(
        !root
            .join(".lumenflow/state/software-delivery/claims/WU-190.json")
            .exists(),
        "the claim ran through the turn"
    );
    assert!(kernel_log(&root)
        .iter()
        .any(|r| r["kind"] == "tool_call_finished" && r["error_code"] == "TOKEN_SCOPE_DENIED"));
    // The same workspace-only token works for a tool its scope covers.
    let (s, out) = post(
        &format!("{url}/tools/software-delivery:wu_claim"),
        Some(&workspace_only),
        &json!({"wu_id": "WU-200", "lane": "Content: Site Comms"}),
    );
    assert_eq!(s, 200, "{out}");
    ok(&root, &["audit", "verify"]);
}

/// ENR-09: a `from` in the body is not an identity; the token subject is recorded, the claim
/// is noted beside the receipt.
#[test]
fn a_body_from_is_ignored_and_the_token_subject_recorded() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let sidecar = Sidecar::spawn(&root, &["--backoff-base-ms", "50"]);
    let token = cloud.token(WS, "workspace");
    let (s, out) = post(
        &format!("{}/tools/software-delivery:wu_claim", sidecar.url),
        Some(&token),
        &json!({"wu_id": "WU-7", "lane": "Content: Site Comms", "from": "ws-42:phone:intruder"}),
    );
    assert_eq!(s, 200, "{out}");
    let receipt = out["receipt_id"].as_str().unwrap();
    let log = kernel_log(&root);
    let started = log
        .iter()
        .find(|r| r["kind"] == "tool_call_started" && r["receipt_id"] == receipt)
        .unwrap();
    assert_eq!(started["caller"], WS);
    let note = log
        .iter()
        .find(|r| r["kind"] == "sidecar_claimed_from_ignored")
        .unwrap();
    assert_eq!(note["receipt_id"], receipt);
    assert_eq!(note["claimed_from"], "ws-42:phone:intruder");
    assert_eq!(note["subject"], WS);
    assert!(wait_until(Duration::from_secs(20), || !cloud
        .events_of("software-delivery:wu_claimed")
        .is_empty()));
    assert!(cloud.events().iter().all(|e| e["from"] == WS));
}

/// ENR-03 to ENR-05, Q20, Q37, ABR-05: a phone-originated recovery request is persisted,
/// handled by the subscribed pack, acknowledged and attributed to its registered device; an
/// unregistered device is refused.
#[test]
fn phone_commands_are_attributed_to_their_device() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    ok(
        &root,
        &["device", "add", "pixel-7", "--name", "Ana's Pixel"],
    );
    let sidecar = Sidecar::spawn(&root, &[]);
    let phone = cloud.token("ws-42:phone:pixel-7", "workspace");
    let event = json!({
        "schema_version": 2,
        "kind": "conductor:recovery_requested",
        "event_id": "evt-phone-1",
        "timestamp": "2026-11-21T07:00:00.000Z",
        "from": "ws-42",
        "payload": {"wu_id": "acme-job-7", "reason": "stuck"}
    });
    let (s, out) = post(&format!("{}/events", sidecar.url), Some(&phone), &event);
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["from"], "ws-42:phone:pixel-7");
    assert_eq!(out["device_name"], "Ana's Pixel");
    assert_eq!(out["deliveries"][0]["pack_id"], "acme-demo");
    assert!(
        std::fs::read_dir(root.join(".lumenflow/state/conductor/inbox"))
            .unwrap()
            .next()
            .is_none(),
        "acknowledged events leave the inbox"
    );
    let record = kernel_log(&root)
        .into_iter()
        .find(|r| r["kind"] == "sidecar_event_received")
        .unwrap();
    assert_eq!(record["subject"], "ws-42:phone:pixel-7");
    assert_eq!(record["device_name"], "Ana's Pixel");
    assert_eq!(record["claimed_from"], "ws-42");
    assert_eq!(record["outcome"], "handled");
    // Redelivery (at-least-once): accepted, and the handler's replay log keeps the effect single.
    let (s, again) = post(&format!("{}/events", sidecar.url), Some(&phone), &event);
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["deliveries"][0]["status"], "replayed", "{again}");

    let stranger = cloud.token("ws-42:phone:unknown", "workspace");
    let (s, out) = post(&format!("{}/events", sidecar.url), Some(&stranger), &event);
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (403, Some("DEVICE_UNKNOWN"))
    );
    // Outbound kinds cannot be pushed in.
    let (s, out) = post(
        &format!("{}/events", sidecar.url),
        Some(&phone),
        &json!({"kind": "software-delivery:gate_passed"}),
    );
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (400, Some("EVENT_KIND_NOT_INBOUND"))
    );
}

/// Q20, ABR-05 with two processes on one workspace (`lumenflow sidecar` twice, or one beside
/// `lumenflow mcp`): inbound events reaching either are each persisted under their own name,
/// handled once and acknowledged; none is refused or lost for the other's.
#[test]
fn inbound_events_to_two_sidecars_of_one_workspace_are_each_handled_once() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let sidecars = [Sidecar::spawn(&root, &[]), Sidecar::spawn(&root, &[])];
    let token = cloud.token(WS, "workspace");
    let per_sender = 10;
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let (url, token) = (&sidecars[t % 2].url, &token);
                scope.spawn(move || {
                    (0..per_sender)
                        .map(|i| {
                            let event = json!({
                                "schema_version": 2,
                                "kind": "conductor:recovery_requested",
                                "event_id": format!("evt-two-{t}-{i}"),
                                "timestamp": "2026-11-21T07:00:00.000Z",
                                "from": WS,
                                "payload": {"wu_id": format!("acme-job-{t}-{i}"), "reason": "stuck"}
                            });
                            post(&format!("{url}/events"), Some(token), &event)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["deliveries"][0]["pack_id"], "acme-demo", "{body}");
        assert_ne!(body["deliveries"][0]["status"], "replayed", "{body}");
    }
    let left: Vec<_> = std::fs::read_dir(root.join(".lumenflow/state/conductor/inbox"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "acknowledged events leave the inbox: {left:?}"
    );
    let received: Vec<String> = kernel_log(&root)
        .into_iter()
        .filter(|r| r["kind"] == "sidecar_event_received" && r["outcome"] == "handled")
        .map(|r| r["event_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let unique: std::collections::HashSet<&String> = received.iter().collect();
    assert_eq!((received.len(), unique.len()), (40, 40), "{received:?}");
}

/// ABR-04: a state-mutating recovery never runs without an operator's grant; the request is
/// announced to the control plane as a queue-class `sidekick:approval_requested`.
#[test]
fn recovery_waits_for_operator_consent_and_is_announced() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    // The stand-in control plane has no approvals API: decide approvals locally here (the
    // control plane's approvals are tested against the real one in cloud_e2e.rs).
    let sidecar = Sidecar::spawn(&root, &["--backoff-base-ms", "50", "--approvals", "local"]);
    let token = cloud.token(WS, "workspace");
    let (s, out) = post(
        &format!("{}/tools/software-delivery:wu_recover", sidecar.url),
        Some(&token),
        &json!({"wu_id": "WU-9"}),
    );
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (403, Some("APPROVAL_REQUIRED")),
        "{out}"
    );
    let approval = out["approval_id"]
        .as_str()
        .expect("approval id")
        .to_string();
    assert!(
        wait_until(Duration::from_secs(20), || !cloud
            .events_of("sidekick:approval_requested")
            .is_empty()),
        "{}",
        sidecar.log()
    );
    let e = &cloud.events_of("sidekick:approval_requested")[0];
    assert_eq!(e["payload"]["approval_id"], approval.as_str());
    assert_eq!(e["payload"]["tool_name"], "software-delivery:wu_recover");
    assert!(wait_until(Duration::from_secs(10), || outbox_files(&root).is_empty()));
}

/// The HTTP surface's edges: JSON errors everywhere, the body limit, the OpenAPI document
/// matching what is served.
#[test]
fn errors_are_json_and_the_openapi_document_matches_the_routes() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let sidecar = Sidecar::spawn(&root, &[]);
    let url = &sidecar.url;
    let token = cloud.token(WS, "workspace");
    let (s, b) = get(&format!("{url}/nope"), None);
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    let (s, b) = get(&format!("{url}/tools/x"), Some(&token));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED"))
    );
    let (s, b) = body(
        http()
            .post(format!("{url}/tools/software-delivery:wu_claim"))
            .bearer_auth(&token)
            .body("{not json")
            .send()
            .unwrap(),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("INVALID_JSON"))
    );
    let big = "a".repeat(2 * 1024 * 1024);
    let (s, b) = body(
        http()
            .post(format!("{url}/tools/software-delivery:wu_claim"))
            .bearer_auth(&token)
            .body(big)
            .send()
            .unwrap(),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("BODY_TOO_LARGE"))
    );
    let (s, b) = post(
        &format!("{url}/tools/software-delivery:wu_claim"),
        Some(&token),
        &json!({"wu_id": "WU-1"}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("INVALID_INPUT")),
        "{b}"
    );
    let (s, b) = post(
        &format!("{url}/tools/no:such_tool"),
        Some(&token),
        &json!({}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("TOOL_NOT_FOUND"))
    );
    let (s, h) = get(&format!("{url}/healthz"), None);
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));

    // Every documented operation is served (not the 404/405 fallbacks), and an undocumented
    // method on a documented path is a 405.
    let (s, doc) = get(&format!("{url}/openapi.json"), None);
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        let concrete = path.replace("{name}", "software-delivery:wu_claim");
        for method in ["get", "post", "put", "delete", "patch"] {
            let documented = ops.get(method).is_some();
            let resp = http()
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{url}{concrete}"),
                )
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({}))
                .timeout(Duration::from_secs(5))
                .send();
            let Ok(resp) = resp else { continue }; // an MCP event stream may stay open
            let status = resp.status().as_u16();
            if documented {
                let b: Value = resp.json().unwrap_or(Value::Null);
                assert!(
                    !(status == 404 && b["error"]["code"] == "NOT_FOUND") && status != 405,
                    "{method} {path} is documented but answered {status} {b}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is not documented but answered {status}"
                );
            }
        }
    }
}

/// The MCP surface over stdio: the same filtered tools, the same dispatch path, refusals as
/// tool errors with their code.
#[test]
fn mcp_over_stdio_lists_and_calls_through_the_same_path() {
    use std::io::{BufRead, BufReader, Write};
    let (_tmp, root) = workspace();
    ok(&root, &["enroll", "--standalone"]);
    let token = ok(&root, &["token", "mint", "--scope", "workspace"])
        .trim()
        .to_string();
    let mut child = std::process::Command::new(bin())
        .args(["mcp", "--dir"])
        .arg(&root)
        .env("LUMENFLOW_TOKEN", &token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = |v: Value| {
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    };
    let mut recv = |id: i64| -> Value {
        loop {
            let line = lines.next().expect("a reply").unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}),
    );
    let init = recv(1);
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let list = recv(2);
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"software-delivery:wu_claim"), "{list}");
    assert!(
        !names.contains(&"agent:execute-turn"),
        "filtered by the token scope: {names:?}"
    );
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "software-delivery:wu_claim", "arguments": {"wu_id": "WU-5", "lane": "Content: Site Comms"}}}),
    );
    let call = recv(3);
    assert_eq!(call["result"]["isError"], json!(false), "{call}");
    assert_eq!(call["result"]["structuredContent"]["wu_id"], "WU-5");
    send(
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "agent:execute-turn", "arguments": {"goal": "x"}}}),
    );
    let refused = recv(4);
    assert_eq!(refused["result"]["isError"], json!(true), "{refused}");
    assert_eq!(
        refused["result"]["_meta"]["lumenflow/error"]["code"],
        "TOKEN_SCOPE_DENIED"
    );
    // No structured content on a refusal: it would not match the tool's output schema, and
    // the TypeScript SDK throws on that instead of returning the refusal.
    assert!(
        refused["result"].get("structuredContent").is_none(),
        "{refused}"
    );
    assert!(refused["result"]["_meta"]["lumenflow/receipt_id"].is_string());
    assert!(call["result"]["_meta"]["lumenflow/receipt_id"]
        .as_str()
        .is_some_and(|r| r.starts_with("rcpt_")));
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let started = kernel_log(&root)
        .into_iter()
        .find(|r| r["kind"] == "tool_call_started")
        .unwrap();
    assert_eq!(
        (started["surface"].as_str(), started["caller"].as_str()),
        (Some("mcp"), Some(WS))
    );
    // Tokens of one subject given to different agents are told apart by their id.
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(started["token_id"], claims["jti"], "{started}");
}

/// `token mint` prints the token and nothing else; `enroll` never prints it.
#[test]
fn tokens_never_leak_into_output() {
    let (_tmp, root) = workspace();
    let out = run(&root, &["enroll", "--standalone"]);
    assert!(out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let enrollment: Value = serde_json::from_slice(
        &std::fs::read(root.join(".lumenflow/state/conductor/enrollment.json")).unwrap(),
    )
    .unwrap();
    assert!(!text.contains(enrollment["token"].as_str().unwrap()));
    let out = run(
        &root,
        &[
            "token",
            "mint",
            "--scope",
            "workspace agent:execute-turn",
            "--ttl",
            "15m",
        ],
    );
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "known scopes mint without a warning");
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3);
    assert_eq!(token.lines().count(), 1);

    // A scope no tool or route of the workspace uses (a typo) is still minted, with a warning
    // on stderr that lists the scopes its packs do use; stdout stays the token alone.
    let out = run(&root, &["token", "mint", "--scope", "worksapce"]);
    assert!(out.status.success());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("scope `worksapce` opens no tool or route")
            && warning.contains("agent:execute-turn, workspace"),
        "{warning}"
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.lines().count(), 1);
    assert!(!warning.contains(token.trim()));
}

/// `/mcp` (streamable HTTP) on the sidecar: bearer token required, the same filtered tools.
#[test]
fn mcp_over_http_needs_a_token_and_serves_the_same_tools() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    // A gate that takes a while, to stop the sidecar while an MCP call runs.
    let yaml = root.join("workspace.yaml");
    let text = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace("test -f README.md", "sleep 2 && test -f README.md");
    std::fs::write(&yaml, text).unwrap();
    enroll(&root, &cloud);
    let sidecar = Sidecar::spawn(&root, &[]);
    let url = format!("{}/mcp", sidecar.url);
    let token = cloud.token(WS, "workspace");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let (s, b) = post(&url, None, &init);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("TOKEN_INVALID"))
    );

    // One JSON-RPC exchange; the answer may come as JSON or as a server-sent event.
    let rpc = |session: Option<&str>, msg: &Value| -> (Option<String>, Value) {
        let mut req = http()
            .post(&url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(msg);
        if let Some(id) = session {
            req = req.header("mcp-session-id", id);
        }
        let resp = req.send().unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().unwrap();
        let reply = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .chain(std::iter::once(text.as_str()))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or(Value::Null);
        (session, reply)
    };
    let (session, reply) = rpc(None, &init);
    assert!(
        reply["result"]["capabilities"]["tools"].is_object(),
        "{reply}"
    );
    let session = session.as_deref();
    let _ = http()
        .post(&url)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session.unwrap_or_default())
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .unwrap();
    let (_, list) = rpc(
        session,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"software-delivery:wu_claim"));
    assert!(!names.contains(&"agent:execute-turn"));
    let (_, call) = rpc(
        session,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "software-delivery:wu_claim", "arguments": {"wu_id": "WU-11", "lane": "Content: Site Comms"}}}),
    );
    assert_eq!(call["result"]["isError"], json!(false), "{call}");
    let started = kernel_log(&root)
        .into_iter()
        .find(|r| r["kind"] == "tool_call_started")
        .unwrap();
    assert_eq!(
        (started["surface"].as_str(), started["caller"].as_str()),
        (Some("mcp"), Some(WS))
    );

    // A session is bound to the token it was used with: another token (here with the same
    // subject) cannot take it over, and must open its own session.
    let other = cloud.token(WS, "workspace");
    let hijack = http()
        .post(&url)
        .bearer_auth(&other)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session.unwrap_or_default())
        .json(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(hijack.contains("opened with another token"), "{hijack}");

    // A page on another origin cannot drive the sidecar through a browser (DNS rebinding).
    let foreign = http()
        .post(&url)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("origin", "http://evil.example")
        .json(&init)
        .send()
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);

    // A call running when SIGTERM comes still finishes: its session waits for it (it used to
    // be cut with the session, its receipt later marked `crashed`).
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    {
        let session = session.map(str::to_string);
        let (url, token) = (url.clone(), token.clone());
        std::thread::spawn(move || {
            let resp = http()
                .post(&url)
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session.unwrap_or_default())
                .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
                    "name": "software-delivery:gates", "arguments": {"wu_id": "WU-11", "gates": ["format"]}}}))
                .send();
            let text = match resp {
                Ok(r) => format!("{} {}", r.status(), r.text().unwrap_or_default()),
                Err(e) => format!("request failed: {e}"),
            };
            let reply = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|v| v["id"] == 9)
                .unwrap_or(Value::String(text));
            let _ = reply_tx.send(reply);
        });
    }
    assert!(wait_until(Duration::from_secs(30), || {
        kernel_log(&root).iter().any(|r| {
            r["kind"] == "tool_call_started" && r["tool_name"] == "software-delivery:gates"
        })
    }));

    // An open session's event stream does not hold a stopping sidecar: SIGTERM ends the
    // session, the stream reaches its end, and the process exits 0 (it used to wait forever).
    let stream = http()
        .get(&url)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session.unwrap_or_default())
        .send()
        .unwrap();
    assert!(stream.status().is_success(), "{}", stream.status());
    let (ended_tx, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut body = String::new();
        let read = std::io::Read::read_to_string(&mut stream, &mut body);
        let _ = ended_tx.send(read.is_ok());
    });
    let mut sidecar = sidecar;
    let pid = sidecar.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The answer travels on the request's event stream, which the HTTP server's graceful
    // shutdown may end before the call is done; the call itself must finish (below).
    let reply = reply_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    if reply.get("result").is_some() {
        assert_eq!(reply["result"]["isError"], json!(false), "{reply}");
    }
    assert_eq!(
        ended.recv_timeout(Duration::from_secs(60)),
        Ok(true),
        "the session's stream ends cleanly"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = sidecar.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sidecar did not stop:\n{}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}\n{}", sidecar.log());
    let log = kernel_log(&root);
    let receipt = log
        .iter()
        .find(|r| r["kind"] == "tool_call_started" && r["tool_name"] == "software-delivery:gates")
        .map(|r| r["receipt_id"].clone())
        .unwrap();
    assert!(
        log.iter().any(|r| r["kind"] == "tool_call_finished"
            && r["receipt_id"] == receipt
            && r["result"] == "success"),
        "the call cut by SIGTERM finished: {log:?}"
    );
}

/// KRN-08: a running sidecar judges calls by the rules in force. A rule added to
/// `workspace.yaml` while it runs stops it (`WORKSPACE_CHANGED`, with a receipt) instead of
/// being ignored until someone restarts it; a comment is not a change; the restarted sidecar
/// enforces the rule.
#[test]
fn a_running_sidecar_does_not_serve_a_stale_workspace() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let sidecar = Sidecar::spawn(&root, &[]);
    let token = cloud.token(WS, "workspace");
    let (s, out) = git_status(&sidecar, &token);
    assert_eq!(s, 200, "{out}");

    let yaml = root.join("workspace.yaml");
    let mut text = std::fs::read_to_string(&yaml).unwrap();
    text.insert_str(0, "# reviewed by ops\n");
    std::fs::write(&yaml, &text).unwrap();
    let (s, out) = git_status(&sidecar, &token);
    assert_eq!(
        (s, &out["success"]),
        (200, &json!(true)),
        "a comment: {out}"
    );

    text.push_str(
        "policies:\n  rules:\n    - {id: ops.no-git, trigger: on_tool_request, decision: deny, reason: frozen, when: {tool: \"git:*\"}}\n",
    );
    std::fs::write(&yaml, &text).unwrap();
    let (s, out) = git_status(&sidecar, &token);
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (503, Some("WORKSPACE_CHANGED")),
        "{out}"
    );
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restart the sidecar"),
        "{out}"
    );
    let refused = kernel_log(&root)
        .into_iter()
        .rfind(|r| r["kind"] == "tool_call_finished")
        .unwrap();
    assert_eq!(refused["error_code"], "WORKSPACE_CHANGED", "{refused}");
    sidecar.kill();

    let sidecar = Sidecar::spawn(&root, &[]);
    let (_, out) = git_status(&sidecar, &token);
    assert_eq!(out["error"]["code"], "POLICY_DENIED", "{out}");
}

/// walk-F F-6 (ENR-07, ENR-08, INV-01): `lumenflow enroll` replacing the workspace key while a
/// sidecar runs. The sidecar used to keep the key it read at start: tokens signed by the retired
/// key went on working until someone restarted it. Now a changed `enrollment.json` refuses
/// every request (`ENROLLMENT_CHANGED`, 503, recorded) until the restart; a rewrite with the same
/// content is not a change. Also F-7: `token mint` names the missing key instead of claiming the
/// workspace is not standalone.
#[test]
fn a_replaced_enrollment_stops_the_running_sidecar_until_it_is_restarted() {
    let (_tmp, root) = workspace();
    ok(&root, &["enroll", "--standalone"]);
    let mint = |root: &std::path::Path| {
        ok(root, &["token", "mint", "--scope", "workspace"])
            .trim()
            .to_string()
    };
    let old = mint(&root);
    let sidecar = Sidecar::spawn(&root, &[]);
    let (s, out) = git_status(&sidecar, &old);
    assert_eq!(s, 200, "{out}");

    // The same record written again (new inode and time): still current.
    let record = root.join(".lumenflow/state/conductor/enrollment.json");
    let bytes = std::fs::read(&record).unwrap();
    let tmp = record.with_extension("tmp");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, &record).unwrap();
    let (s, out) = git_status(&sidecar, &old);
    assert_eq!(s, 200, "same content: {out}");

    let key = root.join(".lumenflow/state/keys/workspace-ed25519.pem");
    std::fs::rename(&key, root.join("old-key.pem")).unwrap();
    let out = run(&root, &["token", "mint", "--scope", "workspace"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("WORKSPACE_KEY_MISSING") && err.contains("workspace-ed25519.pem"),
        "{err}"
    );
    let said = ok(&root, &["enroll", "--standalone"]);
    assert!(said.contains("until it is restarted"), "{said}");
    let new = mint(&root);
    for token in [&old, &new] {
        let (s, out) = git_status(&sidecar, token);
        assert_eq!(
            (s, out["error"]["code"].as_str()),
            (503, Some("ENROLLMENT_CHANGED")),
            "{out}"
        );
        let message = out["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("issuer key was replaced") && message.contains("restart the sidecar"),
            "{out}"
        );
    }
    let refused = kernel_log(&root)
        .into_iter()
        .rfind(|r| r["error_code"] == "ENROLLMENT_CHANGED");
    assert!(refused.is_some(), "the refusal is recorded");
    sidecar.kill();

    let sidecar = Sidecar::spawn(&root, &[]);
    let (s, out) = git_status(&sidecar, &old);
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (401, Some("TOKEN_INVALID")),
        "{out}"
    );
    let (s, out) = git_status(&sidecar, &new);
    assert_eq!(s, 200, "{out}");

    // F-12: the workspace folder moved under the running sidecar. Calls used to fail one by one
    // with a bare "No such file or directory" while it stayed ready; now every request says what
    // happened and what to do.
    let moved = root.with_file_name(format!(
        "{}-moved",
        root.file_name().unwrap().to_string_lossy()
    ));
    std::fs::rename(&root, &moved).unwrap();
    let (s, out) = git_status(&sidecar, &new);
    std::fs::rename(&moved, &root).unwrap();
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (503, Some("ENROLLMENT_CHANGED")),
        "{out}"
    );
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the workspace folder was moved"),
        "{out}"
    );
}

/// walk-F F-8 (ENR-07): `enrollment.json` holds a bearer token; readable by others it is
/// refused like the workspace key (`KEY_PERMISSIONS`), by the sidecar and by `tool call`, with
/// the fix in the message; before, it was used without a word.
#[test]
fn a_world_readable_enrollment_is_refused_like_the_workspace_key() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, root) = workspace();
    ok(&root, &["enroll", "--standalone"]);
    let record = root.join(".lumenflow/state/conductor/enrollment.json");
    assert_eq!(
        std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        &["sidecar", "--listen", "127.0.0.1:0"][..],
        &["tool", "call", "git:status", "--input", "{}"][..],
    ] {
        let out = run(&root, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("ENROLLMENT_PERMISSIONS")
                && err.contains("mode 644")
                && err.contains("chmod 600"),
            "{args:?}: {err}"
        );
    }
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sidecar = Sidecar::spawn(&root, &[]);
    let token = ok(&root, &["token", "mint", "--scope", "workspace"]);
    let (s, out) = git_status(&sidecar, token.trim());
    assert_eq!(s, 200, "{out}");
}

/// Data loss on a client's close: MCP clients close `lumenflow mcp`'s stdin and then send
/// SIGTERM; a call running then used to die with the process before its finished receipt (the
/// call was later marked `crashed`). The process now waits for its calls (bounded by the grace).
#[test]
fn mcp_over_stdio_finishes_its_calls_when_the_client_goes_away() {
    use std::io::{BufRead, BufReader, Write};
    let (_tmp, root) = workspace();
    let yaml = root.join("workspace.yaml");
    let text = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace("test -f README.md", "sleep 2 && test -f README.md");
    std::fs::write(&yaml, text).unwrap();
    ok(&root, &["enroll", "--standalone"]);
    let mut child = std::process::Command::new(bin())
        .args(["mcp", "--dir"])
        .arg(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = |v: Value| {
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}),
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "software-delivery:wu_claim", "arguments": {"wu_id": "WU-9", "lane": "Content: Site Comms"}}}),
    );
    loop {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if v["id"] == 2 {
            assert_eq!(v["result"]["isError"], json!(false), "{v}");
            break;
        }
    }
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "software-delivery:gates", "arguments": {"wu_id": "WU-9", "gates": ["format"]}}}),
    );
    // Wait until the gate runs, then hang up.
    assert!(wait_until(Duration::from_secs(30), || {
        kernel_log(&root).iter().any(|r| {
            r["kind"] == "tool_call_started" && r["tool_name"] == "software-delivery:gates"
        })
    }));
    // SIGTERM while the client still holds stdin open (a supervisor stopping the server; MCP
    // clients close stdin first, then terminate it): the running call finishes, and the
    // process exits without waiting for stdin.
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        wait_until(Duration::from_secs(40), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "lumenflow mcp did not stop on SIGTERM with stdin open"
    );
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Who the session acted as, on stderr (stdout is JSON-RPC only).
    assert!(
        stderr.contains("acting as `ws-42`") && stderr.contains("LUMENFLOW_TOKEN is not set"),
        "{stderr}"
    );
    let log = kernel_log(&root);
    let receipt = log
        .iter()
        .find(|r| r["kind"] == "tool_call_started" && r["tool_name"] == "software-delivery:gates")
        .map(|r| r["receipt_id"].clone())
        .unwrap();
    let finished: Vec<&Value> = log
        .iter()
        .filter(|r| r["kind"] == "tool_call_finished" && r["receipt_id"] == receipt)
        .collect();
    assert_eq!(finished.len(), 1, "{log:?}");
    assert_eq!(finished[0]["result"], "success", "{:?}", finished[0]);
}
