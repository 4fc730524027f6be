//! The real control plane and the real sidecar together (issue 6, "tests with real parts"):
//! `lumenflow cloud serve` issues a one-time code, the real `lumenflow enroll` exchanges it, the
//! real `lumenflow sidecar` serves the workspace; the control plane discovers its tools, invokes
//! one with a scoped token it mints (the sidecar verifies it with the issuer key of its
//! enrollment), receives the sidecar's events through its outbox, and forwards an approval
//! refusal unchanged. The workspace fixture is the sidecar suite's (`sidecar_support`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sidecar_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use sidecar_support::{bin, get, ok, post, wait_until, workspace, Sidecar, WS};

struct Cloud {
    child: Child,
    url: String,
    database: String,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cloud(dir: &Path) -> Cloud {
    let database = format!("sqlite://{}", dir.join("cloud.db").display());
    let log = std::fs::File::create(dir.join("cloud.log")).unwrap();
    let mut child = Command::new(bin())
        .args([
            "cloud",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
        ])
        .args(["--registry-refresh", "0"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("cloud started");
    let url = line.rsplit(' ').next().unwrap().to_string();
    Cloud {
        child,
        url,
        database,
    }
}

/// A one-time enrollment code for `ws`, from the operator CLI on the control plane's database.
fn enroll_code(home: &Path, db: &str, ws: &str) -> String {
    cli_json(
        home,
        &[
            "cloud",
            "enroll-code",
            "--workspace-id",
            ws,
            "--database",
            db,
        ],
    )["code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Wait until the control plane holds a pending `wu_recover` request for `input`, then resolve
/// it with `decision` (its `decision`, `reason`, ...). False when none appeared within 30 s.
fn decide_when_pending(cp: &str, operator: &str, input: &Value, decision: Value) -> bool {
    let hash = format!(
        "sha256:{}",
        lumenflow_contracts::canonical_json::canonical_hash(input)
    );
    wait_until(Duration::from_secs(30), || {
        let (_, list) = post(
            &format!("{cp}/api/v1/approvals/list"),
            Some(operator),
            &json!({"workspace_id": WS, "status": "pending"}),
        );
        let pending = list["approvals"].as_array().cloned().unwrap_or_default();
        let Some(a) = pending.iter().find(|a| {
            a["subject"]["tool"] == "software-delivery:wu_recover"
                && a["subject"]["input_hash"] == hash.as_str()
        }) else {
            return false;
        };
        let mut body = decision.clone();
        body["workspace_id"] = json!(WS);
        body["approval_id"] = a["approval_id"].clone();
        post(
            &format!("{cp}/api/v1/approvals/resolve"),
            Some(operator),
            &body,
        )
        .0 == 200
    })
}

fn cli_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(dir, &all)).unwrap()
}

#[test]
fn enroll_discover_invoke_ingest_with_the_real_sidecar() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let cp = cloud(home);
    let db = cp.database.as_str();
    let operator = ok(home, &["cloud", "operator-token", "--database", db])
        .trim()
        .to_string();

    // Enroll: a one-time code from the operator, exchanged by the real `lumenflow enroll`.
    let code = enroll_code(home, db, WS);
    let (_tmp, root) = workspace();
    // A code for another workspace, exchanged in this folder by mistake, is refused by the
    // control plane before it is used up.
    let other = enroll_code(home, db, "ws-other");
    let out = sidecar_support::run(
        &root,
        &[
            "enroll",
            "--control-plane",
            &cp.url,
            "--code",
            &other,
            "--json",
        ],
    );
    let refusal: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ENROLLMENT_WORKSPACE_MISMATCH"),
        "{refusal}"
    );
    assert!(!root
        .join(".lumenflow/state/conductor/enrollment.json")
        .exists());
    let (s, _) = post(
        &format!("{}/api/v1/enroll", cp.url),
        None,
        &json!({"code": other}),
    );
    assert_eq!(s, 200, "the code was not used up by the refused attempt");

    let enrolled = cli_json(
        &root,
        &["enroll", "--control-plane", &cp.url, "--code", &code],
    );
    assert_eq!(enrolled["subject"], WS);
    // An enrolled workspace's tokens come from its control plane; it has no key of its
    // own to mint with, and says so instead of failing on the missing key file.
    let out = sidecar_support::run(&root, &["token", "mint", "--scope", "workspace", "--json"]);
    assert!(!out.status.success());
    let refusal: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(refusal["error"]["code"], "NOT_STANDALONE", "{refusal}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("standalone mode only"),
        "{refusal}"
    );
    let sidecar = Sidecar::spawn(&root, &["--backoff-base-ms", "50"]);
    let (s, _) = post(
        &format!("{}/api/v1/workspaces/{WS}/sidecar", cp.url),
        Some(&operator),
        &json!({"sidecar_url": sidecar.url}),
    );
    assert_eq!(s, 200);

    // Discover: the registry is the sidecar's manifest-derived listing.
    let (s, tools) = get(
        &format!("{}/api/v1/workspaces/{WS}/tools", cp.url),
        Some(&operator),
    );
    assert_eq!(s, 200, "{tools}\n{}", sidecar.log());
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"software-delivery:wu_claim"), "{names:?}");
    assert!(tools["etag"].is_string());
    let (s, refreshed) = post(
        &format!("{}/api/v1/workspaces/{WS}/registry/refresh", cp.url),
        Some(&operator),
        &json!({}),
    );
    assert_eq!(
        (s, refreshed["refresh"].as_str()),
        (200, Some("not_modified"))
    );

    // Invoke: the operator's call reaches the kernel's dispatch path through the sidecar.
    let (s, out) = post(
        &format!(
            "{}/api/v1/workspaces/{WS}/tools/software-delivery:wu_claim",
            cp.url
        ),
        Some(&operator),
        &json!({"wu_id": "WU-042", "lane": "Content: Site Comms"}),
    );
    assert_eq!(s, 200, "{out}\n{}", sidecar.log());
    assert_eq!(out["success"], true);

    // A tool that needs an approval: the sidecar's refusal comes back unchanged.
    let (s, out) = post(
        &format!(
            "{}/api/v1/workspaces/{WS}/tools/software-delivery:wu_recover",
            cp.url
        ),
        Some(&operator),
        &json!({"wu_id": "WU-9"}),
    );
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (403, Some("APPROVAL_REQUIRED")),
        "{out}"
    );

    // Observe: the sidecar's outbox drains into the control plane, `from` = the token subject.
    let events = || {
        get(
            &format!("{}/api/v1/events?workspace_id={WS}&limit=1000", cp.url),
            Some(&operator),
        )
        .1["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(30), || events()
            .iter()
            .any(|e| e["kind"] == "agent-runtime:tool_called")),
        "no tool_called event arrived: {:?}\n{}",
        events(),
        sidecar.log()
    );
    for e in events() {
        assert!(
            e["from"] == WS || e["from"].as_str().unwrap_or("").starts_with("ws-42:phone:"),
            "{e}"
        );
    }
    // A second drain of the same outbox would be acknowledged as duplicates; the audit log
    // names the sidecar's pushes and the operator's calls.
    let audit = cli_json(
        home,
        &[
            "cloud",
            "audit",
            "--workspace-id",
            WS,
            "--limit",
            "500",
            "--database",
            db,
        ],
    );
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    for action in ["enroll", "tools.list", "tools.invoke", "events.push"] {
        assert!(
            actions.contains(&action),
            "audit lacks {action}: {actions:?}"
        );
    }
}

/// Issue 6 §5 with the real sidecar: an approval the kernel asks for is requested in the control
/// plane, decided there by an operator, and flows back as the kernel's approval step: the grant
/// lets exactly one call through; with `--approval-wait` the call itself waits for the decision.
#[test]
fn control_plane_approvals_gate_the_sidecar_and_flow_back_once() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let cp = cloud(home);
    let db = cp.database.as_str();
    let code = enroll_code(home, db, WS);
    let (_tmp, root) = workspace();
    cli_json(
        &root,
        &["enroll", "--control-plane", &cp.url, "--code", &code],
    );
    let operator = ok(home, &["cloud", "operator-token", "--database", db])
        .trim()
        .to_string();
    let sidecar = Sidecar::spawn(&root, &["--backoff-base-ms", "50"]);
    let (s, _) = post(
        &format!("{}/api/v1/workspaces/{WS}/sidecar", cp.url),
        Some(&operator),
        &json!({"sidecar_url": sidecar.url}),
    );
    assert_eq!(s, 200);
    // Operator calls go through the control plane's invoke to the sidecar.
    let invoke = format!(
        "{}/api/v1/workspaces/{WS}/tools/software-delivery:wu_recover",
        cp.url
    );
    let recover = |_sidecar: &str, wu: &str| post(&invoke, Some(&operator), &json!({"wu_id": wu}));

    // 1. Refused, and the request is pending in the control plane, bound to tool and input.
    let (s, out) = recover(&sidecar.url, "WU-9");
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (403, Some("APPROVAL_REQUIRED")),
        "{out}"
    );
    let pending = cli_json(
        home,
        &[
            "cloud",
            "approvals",
            "list",
            "--workspace-id",
            WS,
            "--database",
            db,
        ],
    );
    let approvals = pending["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{pending}");
    let id = approvals[0]["approval_id"].as_str().unwrap().to_string();
    assert_eq!(
        approvals[0]["subject"]["tool"],
        "software-delivery:wu_recover"
    );
    assert_eq!(approvals[0]["requester_id"], WS, "the token subject asked");

    // Asking again while it is pending reuses the same request.
    let (s, _) = recover(&sidecar.url, "WU-9");
    assert_eq!(s, 403);
    let again = cli_json(
        home,
        &[
            "cloud",
            "approvals",
            "list",
            "--workspace-id",
            WS,
            "--database",
            db,
        ],
    );
    assert_eq!(again["approvals"].as_array().unwrap().len(), 1, "{again}");

    // 2. The operator approves in the control plane; the same call now passes the gate once.
    ok(
        home,
        &[
            "cloud",
            "approvals",
            "approve",
            &id,
            "--reason",
            "recover WU-9",
            "--database",
            db,
        ],
    );
    let (s, out) = recover(&sidecar.url, "WU-9");
    assert_eq!(s, 200, "{out}\n{}", sidecar.log());
    assert_ne!(out["error"]["code"], "APPROVAL_REQUIRED");
    // 3. Single use: the next identical call asks again.
    let (s, out) = recover(&sidecar.url, "WU-9");
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (403, Some("APPROVAL_REQUIRED")),
        "{out}"
    );
    assert_ne!(out["approval_id"].as_str(), Some(id.as_str()));

    // Eight calls for one new input at once share one pending request.
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| s.spawn(|| recover(&sidecar.url, "WU-7")))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let asked: std::collections::BTreeSet<&str> = answers
        .iter()
        .map(|(s, out)| {
            assert_eq!(*s, 403, "{out}");
            out["approval_id"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(asked.len(), 1, "one request for all eight: {asked:?}");
    let wu7_hash = format!(
        "sha256:{}",
        lumenflow_contracts::canonical_json::canonical_hash(&json!({"wu_id": "WU-7"}))
    );
    let (_, list) = post(
        &format!("{}/api/v1/approvals/list", cp.url),
        Some(&operator),
        &json!({"workspace_id": WS, "status": "pending"}),
    );
    let pending_wu7 = list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["subject"]["input_hash"] == wu7_hash.as_str())
        .count();
    assert_eq!(pending_wu7, 1, "{list}");
    drop(sidecar);

    // 4. With --approval-wait the call waits until the operator decides, then runs.
    let sidecar = Sidecar::spawn(&root, &["--backoff-base-ms", "50", "--approval-wait", "60"]);
    let (s, _) = post(
        &format!("{}/api/v1/workspaces/{WS}/sidecar", cp.url),
        Some(&operator),
        &json!({"sidecar_url": sidecar.url}),
    );
    assert_eq!(s, 200);
    let waiting = std::thread::spawn({
        let (invoke, operator) = (invoke.clone(), operator.clone());
        move || post(&invoke, Some(&operator), &json!({"wu_id": "WU-10"}))
    });
    assert!(decide_when_pending(
        &cp.url,
        &operator,
        &json!({"wu_id": "WU-10"}),
        json!({"decision": "approved", "reason": "go", "reviewer_id": "op"}),
    ));
    let (s, out) = waiting.join().unwrap();
    assert_eq!(s, 200, "the waiting call ran after the decision: {out}");

    // 5. A rejection while the call waits is a denial, not "approval required" again.
    let waiting = std::thread::spawn({
        let (invoke, operator) = (invoke.clone(), operator.clone());
        move || post(&invoke, Some(&operator), &json!({"wu_id": "WU-11"}))
    });
    assert!(decide_when_pending(
        &cp.url,
        &operator,
        &json!({"wu_id": "WU-11"}),
        json!({"decision": "rejected", "reason": "not today"}),
    ));
    let (s, out) = waiting.join().unwrap();
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (403, Some("APPROVAL_DENIED")),
        "{out}"
    );
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not today"),
        "{out}"
    );
}

/// A control plane that is not running: the enrollment says so with the cause a person can act
/// on (connection refused), and installs nothing.
#[test]
fn enroll_against_a_stopped_control_plane_names_the_cause() {
    let (_tmp, root) = workspace();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = sidecar_support::run(
        &root,
        &[
            "enroll",
            "--control-plane",
            &url,
            "--code",
            "lfe_0",
            "--json",
        ],
    );
    assert!(!out.status.success());
    let refusal: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        refusal["error"]["code"], "CONTROL_PLANE_UNREACHABLE",
        "{refusal}"
    );
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(message.contains("Connection refused"), "{message}");
    assert!(!root
        .join(".lumenflow/state/conductor/enrollment.json")
        .exists());
}

/// Commands that emit outside a sidecar (`campus facility add|ingest`, `tool call`) deliver
/// their events as the sidecar would (Q34, BKP-02): stamped in the ledger, ephemeral kinds sent
/// once to the control plane of an enrolled workspace, numbered on their own channel, `from` =
/// the enrollment subject. They used to keep only the ledger stamp, so campus telemetry an
/// operator ingested never reached the console's Energy page. With the control plane down the
/// command still succeeds, says what was not delivered, and the stamps remain.
#[test]
fn commands_outside_a_sidecar_deliver_their_events_to_the_control_plane() {
    const CMD_WS: &str = "ws-commands";
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let mut cp = cloud(home);
    let db = cp.database.clone();
    let operator = ok(home, &["cloud", "operator-token", "--database", &db])
        .trim()
        .to_string();
    let ws_dir = tempfile::tempdir().unwrap();
    let ws = ws_dir.path();
    ok(ws, &["init", "--id", CMD_WS, "--name", "Commands"]);
    ok(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "campus-telemetry",
            "--version",
            "0.1.0",
            "--source",
            "local",
        ],
    );
    let code = enroll_code(home, &db, CMD_WS);
    cli_json(ws, &["enroll", "--control-plane", &cp.url, "--code", &code]);

    let readings =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/campus/readings.jsonl");
    ok(
        ws,
        &[
            "campus",
            "facility",
            "add",
            "--id",
            "campus-fac-001",
            "--region",
            "eu-west-1",
        ],
    );
    ok(
        ws,
        &["campus", "ingest", "--file", readings.to_str().unwrap()],
    );
    ok(ws, &["tool", "call", "campus:list_facilities"]);

    // Delivered before each command exited: no waiting.
    let (s, body) = get(
        &format!("{}/api/v1/events?workspace_id={CMD_WS}&limit=1000", cp.url),
        Some(&operator),
    );
    assert_eq!(s, 200, "{body}");
    let events = body["events"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in [
        "campus:facility_registered",
        "campus:node_inventory_updated",
        "campus:pue_sampled",
        "agent-runtime:tool_called",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    let ledger =
        std::fs::read_to_string(ws.join(".lumenflow/state/conductor/events.jsonl")).unwrap();
    assert_eq!(
        ledger.lines().count(),
        events.len(),
        "every stamped event was delivered once"
    );
    for e in &events {
        assert_eq!(e["from"], CMD_WS, "{e}");
        assert!(e["seq"].as_u64().is_some_and(|n| n > 0), "numbered: {e}");
    }

    // Delivery finishes before the answer is printed: a reader that has gone away (output to a
    // closed pipe ends the process at once) does not cut the sending short.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(bin())
        .args(["campus", "facility", "add", "--id", "campus-fac-003"])
        .current_dir(ws)
        .stdout(writer)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (_, body) = get(
        &format!("{}/api/v1/events?workspace_id={CMD_WS}&limit=1000", cp.url),
        Some(&operator),
    );
    let delivered = body["events"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(delivered, events.len() + 1, "{body}");
    let events: Vec<Value> = body["events"].as_array().cloned().unwrap_or_default();

    // The control plane stops: the command succeeds, says what was not delivered; the stamp stays.
    let _ = cp.child.kill();
    let _ = cp.child.wait();
    let out = sidecar_support::run(ws, &["campus", "facility", "add", "--id", "campus-fac-002"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 event(s) not delivered to the control plane")
            && stderr.contains("stay in the local ledger"),
        "{stderr}"
    );
    let ledger =
        std::fs::read_to_string(ws.join(".lumenflow/state/conductor/events.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), events.len() + 1);
}

/// ENR-10: revoking a workspace's enrollment also cuts off its sidecar. The sidecar pulls the
/// revocation list with that same (now revoked) token and is refused; before, it kept its old
/// list and accepted the revoked token forever.
#[test]
fn a_revoked_enrollment_cuts_its_sidecar_off() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let cp = cloud(home);
    let db = cp.database.as_str();
    let code = enroll_code(home, db, WS);
    let (_tmp, root) = workspace();
    cli_json(
        &root,
        &["enroll", "--control-plane", &cp.url, "--code", &code],
    );
    let enrollment: Value = serde_json::from_slice(
        &std::fs::read(root.join(".lumenflow/state/conductor/enrollment.json")).unwrap(),
    )
    .unwrap();
    let token = enrollment["token"].as_str().unwrap().to_string();
    let sidecar = Sidecar::spawn(&root, &["--revocation-interval-ms", "200"]);
    let call = || {
        post(
            &format!("{}/tools/software-delivery:wu_claim", sidecar.url),
            Some(&token),
            &json!({"wu_id": "WU-7", "lane": "Content: Site Comms"}),
        )
    };
    let (s, body) = call();
    assert_eq!(s, 200, "{body}");

    cli_json(
        home,
        &[
            "cloud",
            "revoke",
            "--workspace-id",
            WS,
            "--all",
            "--database",
            db,
        ],
    );
    let mut last = (0, Value::Null);
    assert!(
        wait_until(Duration::from_secs(20), || {
            last = call();
            last.0 == 401
        }),
        "the revoked enrollment's token still works: {last:?}\n{}",
        sidecar.log()
    );
    // Either the sidecar's pull was refused (its own token is revoked), or a pull that raced
    // the revocation brought the list naming this token: refused both ways.
    let message = last.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("enroll the workspace again") || message.contains("was revoked"),
        "{}",
        last.1
    );
}
