//! The control plane (`lumenflow cloud serve`) against its real binary: enrollment, ingest with
//! dedupe, the query API and the live stream, approvals, sealing and replay, the registry and
//! invoke through a sidecar, revocation, device attribution, the original's v1 sync endpoints,
//! two servers on one PostgreSQL database, and a SIGKILL that must not lose an acknowledged batch.
//! Every attack of issue 6 (malformed JSON, oversized batch, unknown schema version, replayed
//! code, another workspace's token, spoofed `from`) is refused with nothing stored and audited.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use lumenflow_contracts::canonical_json::to_canonical_string;
use lumenflow_contracts::digest::sha256_hex;
use lumenflow_contracts::event::{build_event, BuildOptions};
use lumenflow_contracts::identity::Enrollment;
use lumenflow_contracts::time::Timestamp;
use lumenflow_proof::keys::PublicKey;
use serde_json::{json, Value};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Harness

fn lumenflow(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lumenflow"));
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("LUMENFLOW_CLOUD_DATABASE")
        .stdin(Stdio::null());
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    lumenflow(dir, args).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "lumenflow {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(dir, &all)).unwrap()
}

/// A running `lumenflow cloud serve`.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// `cloud serve` with no storage flags, in `dir`: its SQLite file and key land there.
    fn start_with_defaults(dir: &Path) -> Server {
        let mut child = lumenflow(dir, &["cloud", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Server {
            child,
            url: line.rsplit(' ').next().unwrap().trim().to_string(),
        }
    }

    fn start(dir: &Path, database: &str, key: &Path) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let mut child = lumenflow(
            dir,
            &[
                "cloud",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
                "--key",
                key.to_str().unwrap(),
                "--registry-refresh",
                "0",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "server did not start: {}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                )
            });
        let url = line
            .split("listening on ")
            .nth(1)
            .expect("`listening on URL` line")
            .trim()
            .to_string();
        Server { child, url }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A control-plane home: a folder with the database and the key.
struct Home {
    dir: TempDir,
    database: String,
    schema: Option<String>,
}

impl Home {
    fn sqlite() -> Home {
        let dir = TempDir::new().unwrap();
        let database = format!("sqlite://{}", dir.path().join("cloud.db").display());
        Home {
            dir,
            database,
            schema: None,
        }
    }

    fn postgres() -> Home {
        let dir = TempDir::new().unwrap();
        let schema = format!("lf_cli_test_{}", lumenflow_proof::token::new_jti());
        pg_exec(&format!("CREATE SCHEMA {schema}"));
        let base = pg_base();
        let sep = if base.contains('?') { '&' } else { '?' };
        Home {
            dir,
            database: format!("{base}{sep}options=-csearch_path%3D{schema}"),
            schema: Some(schema),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("cloud.key")
    }

    fn serve(&self) -> Server {
        Server::start(self.path(), &self.database, &self.key())
    }

    fn cli(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--database", &self.database]);
        ok_json(self.path(), &all)
    }

    fn operator_token(&self) -> String {
        ok(
            self.path(),
            &[
                "cloud",
                "operator-token",
                "--database",
                &self.database,
                "--key",
                self.key().to_str().unwrap(),
            ],
        )
        .trim()
        .to_string()
    }

    fn code(&self, ws: &str, device: Option<&str>) -> String {
        let mut args = vec!["cloud", "enroll-code", "--workspace-id", ws];
        if let Some(d) = device {
            args.extend(["--device", d]);
        }
        self.cli(&args)["code"].as_str().unwrap().to_string()
    }

    fn audit(&self, ws: &str) -> Vec<Value> {
        self.cli(&["cloud", "audit", "--workspace-id", ws, "--limit", "1000"])["entries"]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            pg_exec(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

fn pg_base() -> String {
    std::env::var("LUMENFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn pg_exec(sql: &str) {
    let sql = sql.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_base())
            .await
            .expect("PostgreSQL must be running (LUMENFLOW_TEST_DATABASE_URL)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    });
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Send a request; returns the status and the JSON body (`Null` when not JSON).
fn send(method: &str, url: &str, token: Option<&str>, body: Option<Vec<u8>>) -> (u16, Value) {
    let c = client();
    let mut req = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        _ => c.post(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn post(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    send("POST", url, token, Some(body.to_string().into_bytes()))
}

fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    send("GET", url, token, None)
}

fn enroll(server: &Server, code: &str, sidecar: Option<&str>) -> Enrollment {
    let mut body = json!({"code": code});
    if let Some(s) = sidecar {
        body["sidecar_url"] = json!(s);
    }
    let (status, value) = post(&format!("{}/api/v1/enroll", server.url), None, &body);
    assert_eq!(status, 200, "{value}");
    serde_json::from_value(value).unwrap()
}

fn event(kind: &str, from: &str, seq: u64, payload: Value) -> Value {
    let Value::Object(map) = payload else {
        panic!("payload must be an object")
    };
    let e = build_event(
        kind,
        from,
        map,
        BuildOptions {
            seq: Some(seq),
            ..BuildOptions::default()
        },
    )
    .unwrap();
    serde_json::to_value(e).unwrap()
}

fn batch(ws: &str, events: Vec<Value>) -> Value {
    json!({"workspace_id": ws, "events": events})
}

fn query(server: &Server, token: &str, params: &str) -> Value {
    let (status, value) = get(
        &format!("{}/api/v1/events?{params}", server.url),
        Some(token),
    );
    assert_eq!(status, 200, "{value}");
    value
}

fn event_ids(value: &Value) -> Vec<String> {
    value["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.get("event_id")
                .and_then(Value::as_str)
                .unwrap_or("v1")
                .to_string()
        })
        .collect()
}

/// Open the live stream and hand over the `id:` and `data:` of the first `n` events it sends.
fn sse(
    url: String,
    token: String,
    last_event_id: Option<String>,
    n: usize,
) -> (mpsc::Receiver<(String, String)>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel();
    let connected = Arc::new(AtomicBool::new(false));
    let flag = connected.clone();
    std::thread::spawn(move || {
        let mut req = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .get(url)
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        flag.store(true, Ordering::SeqCst);
        let mut id = String::new();
        let mut sent = 0;
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_string();
            }
            if let Some(data) = line.strip_prefix("data:") {
                let _ = tx.send((id.clone(), data.trim().to_string()));
                sent += 1;
                if sent == n {
                    break;
                }
            }
        }
    });
    let start = Instant::now();
    while !connected.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The stream reads its starting cursor right after answering; give it that moment.
    std::thread::sleep(Duration::from_millis(300));
    (rx, connected)
}

fn code_of(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Enrollment, ingest, query, stream and the attacks

#[test]
fn enroll_ingest_query_and_every_attack_on_sqlite() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    // The key was created 0600 beside the database.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let code = home.code("ws-1", None);
    let e1 = enroll(&server, &code, None);
    assert_eq!(e1.workspace_id, "ws-1");
    assert_eq!(e1.subject, "ws-1");
    assert_eq!(e1.scopes, ["workspace"]);
    assert_eq!(
        e1.control_plane_endpoint.as_deref(),
        Some(server.url.as_str())
    );
    // The token verifies with the key the enrollment carries (what the sidecar does).
    let issuer = PublicKey::from_pem(&e1.issuer_public_key_pem, "issuer").unwrap();
    let claims = lumenflow_proof::token::verify(&e1.token, &issuer, "ws-1").unwrap();
    assert_eq!(claims.iss, "lumenflow-cloud");

    // A replayed code is refused (409) and audited; an unknown code is 401.
    let (status, body) = post(
        &format!("{}/api/v1/enroll", server.url),
        None,
        &json!({"code": code}),
    );
    assert_eq!((status, code_of(&body)), (409, "ENROLLMENT_CODE_USED"));
    let (status, body) = post(
        &format!("{}/api/v1/enroll", server.url),
        None,
        &json!({"code": "lfe_nope"}),
    );
    assert_eq!((status, code_of(&body)), (401, "ENROLLMENT_CODE_INVALID"));

    // A code for ws-2 presented by ws-1 (the wrong folder) is refused and stays usable.
    let code2 = home.code("ws-2", None);
    let (status, body) = post(
        &format!("{}/api/v1/enroll", server.url),
        None,
        &json!({"code": code2, "workspace_id": "ws-1"}),
    );
    assert_eq!(
        (status, code_of(&body)),
        (409, "ENROLLMENT_WORKSPACE_MISMATCH"),
        "{body}"
    );
    let e2 = enroll(&server, &code2, None);
    let events_url = format!("{}/api/v1/events", server.url);
    let t = &e1.token;

    // v1 and v2 in one body; a re-sent batch is acknowledged and stored once.
    let v1 = json!({"schema_version": 1, "kind": "task_created", "timestamp": "2026-04-20T00:00:00Z",
                    "task_id": "t-1", "workspace_id": "ws-1"});
    let a = event("acme:job_started", "ws-1", 1, json!({"run_id": "r-1"}));
    let b = event("acme:job_done", "ws-1", 2, json!({"run_id": "r-1"}));
    let good = batch("ws-1", vec![a.clone(), b.clone(), v1.clone()]);
    let (status, body) = post(&events_url, Some(t), &good);
    assert_eq!(
        (status, body.clone()),
        (200, json!({"accepted": 3, "duplicates": 0}))
    );
    let (status, body) = post(&events_url, Some(t), &good);
    assert_eq!(
        (status, body.clone()),
        (200, json!({"accepted": 3, "duplicates": 3}))
    );
    let stored = query(&server, &op, "workspace_id=ws-1");
    assert_eq!(stored["events"].as_array().unwrap().len(), 3);

    // Attacks: each refused, nothing stored.
    let c = event("acme:job_done", "ws-1", 3, json!({"n": 3}));
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            Some(t),
            b"{\"workspace_id\": \"ws-1\", \"events\": [".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "unknown schema version",
            Some(t),
            batch(
                "ws-1",
                vec![c.clone(), json!({"schema_version": 7, "kind": "x"})],
            )
            .to_string()
            .into_bytes(),
            400,
            "EVENT_SCHEMA_VERSION_UNSUPPORTED",
        ),
        (
            "spoofed from",
            Some(t),
            batch(
                "ws-1",
                vec![c.clone(), event("acme:job_done", "ws-2", 1, json!({}))],
            )
            .to_string()
            .into_bytes(),
            403,
            "EVENT_FROM_MISMATCH",
        ),
        (
            "token of another workspace",
            Some(&e2.token),
            batch("ws-1", vec![c.clone()]).to_string().into_bytes(),
            403,
            "TOKEN_WORKSPACE_MISMATCH",
        ),
        (
            "no token",
            None,
            batch("ws-1", vec![c.clone()]).to_string().into_bytes(),
            401,
            "TOKEN_INVALID",
        ),
        (
            "garbage token",
            Some("abc.def.ghi"),
            batch("ws-1", vec![c.clone()]).to_string().into_bytes(),
            401,
            "TOKEN_INVALID",
        ),
        (
            "operator token pushing events",
            Some(&op),
            batch("ws-1", vec![c.clone()]).to_string().into_bytes(),
            403,
            "TOKEN_SCOPE_DENIED",
        ),
        (
            "oversized batch",
            Some(t),
            batch(
                "ws-1",
                (0..5001)
                    .map(|i| event("acme:x", "ws-1", i, json!({})))
                    .collect(),
            )
            .to_string()
            .into_bytes(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "oversized body",
            Some(t),
            vec![b' '; 9 * 1024 * 1024],
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (name, token, body, want_status, want_code) in cases {
        let (status, value) = send("POST", &events_url, token, Some(body));
        assert_eq!(
            (status, code_of(&value)),
            (want_status, want_code),
            "{name}: {value}"
        );
    }
    let (_, value) = post(
        &events_url,
        Some(t),
        &batch("ws-1", vec![c.clone(), json!({"schema_version": 7})]),
    );
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("events[1]"),
        "{value}"
    );
    let (_, value) = post(
        &events_url,
        Some(t),
        &batch(
            "ws-1",
            vec![c.clone(), event("acme:job_done", "ws-9", 1, json!({}))],
        ),
    );
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("events[1]"),
        "{value}"
    );
    assert_eq!(
        query(&server, &op, "workspace_id=ws-1")["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(query(&server, &op, "workspace_id=ws-2")["events"]
        .as_array()
        .unwrap()
        .is_empty());

    // Unknown routes and methods answer JSON errors too.
    let (status, body) = get(&format!("{}/api/v1/nope", server.url), Some(t));
    assert_eq!((status, code_of(&body)), (404, "NOT_FOUND"));
    let (status, body) = get(&format!("{}/api/v1/enroll", server.url), None);
    assert_eq!((status, code_of(&body)), (405, "METHOD_NOT_ALLOWED"));

    // Reading another workspace's events with a workspace token is refused too.
    let (status, _) = get(&format!("{events_url}?workspace_id=ws-1"), Some(&e2.token));
    assert_eq!(status, 403);

    // Every refusal is in the audit log with the raw subject.
    let audit = home.audit("ws-1");
    let refused: Vec<&str> = audit
        .iter()
        .filter(|l| l["outcome"] == "refused")
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    for code in [
        "EVENT_SCHEMA_VERSION_UNSUPPORTED",
        "EVENT_FROM_MISMATCH",
        "TOKEN_WORKSPACE_MISMATCH",
        "TOKEN_INVALID",
        "PAYLOAD_TOO_LARGE",
        "ENROLLMENT_CODE_USED",
    ] {
        assert!(refused.contains(&code), "audit lacks {code}: {refused:?}");
    }
    assert!(audit
        .iter()
        .any(|l| l["action"] == "events.push" && l["outcome"] == "ok" && l["subject"] == "ws-1"));
    let malformed = home.cli(&["cloud", "audit", "--limit", "1000"])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["code"] == "BAD_REQUEST" && l["action"] == "events.push");
    assert!(malformed, "malformed JSON is audited");
}

#[test]
fn query_orders_across_channels_pages_and_streams_live() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    let e = enroll(&server, &home.code("ws-q", None), None);
    let events_url = format!("{}/api/v1/events", server.url);
    // The sidecar relays a registered phone only (walk-C #3).
    home.cli(&[
        "cloud",
        "device",
        "add",
        "--workspace-id",
        "ws-q",
        "--device",
        "p",
        "--name",
        "Phone p",
    ]);

    // Two channels (the sidecar and a phone) with interleaved timestamps.
    let at = |ms: i64, kind: &str, from: &str, seq: u64, run: &str| {
        let Value::Object(map) = json!({"run_id": run}) else {
            unreachable!()
        };
        let ev = build_event(
            kind,
            from,
            map,
            BuildOptions {
                seq: Some(seq),
                timestamp: Some(Timestamp::from_unix_millis(1_800_000_000_000 + ms)),
                ..BuildOptions::default()
            },
        )
        .unwrap();
        serde_json::to_value(ev).unwrap()
    };
    let s1 = at(0, "acme:a", "ws-q", 1, "r1");
    let s2 = at(20, "acme:a", "ws-q", 2, "r2");
    let p1 = at(10, "acme:b", "ws-q:phone:p", 1, "r1");
    let p2 = at(20, "acme:b", "ws-q:phone:p", 2, "r1");
    let (status, _) = post(
        &events_url,
        Some(&e.token),
        &batch("ws-q", vec![s2.clone(), p2.clone(), s1.clone(), p1.clone()]),
    );
    assert_eq!(status, 200);
    let id = |v: &Value| v["event_id"].as_str().unwrap().to_string();
    // Reconciliation order: timestamp, then seq.
    let all = query(&server, &op, "workspace_id=ws-q");
    let order = event_ids(&all);
    assert_eq!(order[..2], [id(&s1), id(&p1)]);
    assert_eq!(order.len(), 4);
    // Paging with the cursor returns the same order.
    let page1 = query(&server, &e.token, "workspace_id=ws-q&limit=3");
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let page2 = query(
        &server,
        &e.token,
        &format!("workspace_id=ws-q&limit=3&cursor={cursor}"),
    );
    let mut paged = event_ids(&page1);
    paged.extend(event_ids(&page2));
    assert_eq!(paged, order);
    assert!(page2["next_cursor"].is_null());
    // Filters.
    assert_eq!(
        event_ids(&query(&server, &op, "workspace_id=ws-q&kind=acme:b")),
        [id(&p1), id(&p2)]
    );
    assert_eq!(
        event_ids(&query(&server, &op, "workspace_id=ws-q&run_id=r2")),
        [id(&s2)]
    );
    assert_eq!(
        event_ids(&query(
            &server,
            &op,
            "workspace_id=ws-q&since=2027-01-15T08:00:00.010Z&until=2027-01-15T08:00:00.015Z"
        )),
        [id(&p1)]
    );
    let (status, body) = get(
        &format!("{events_url}?workspace_id=ws-q&cursor=zzz"),
        Some(&op),
    );
    assert_eq!((status, code_of(&body)), (400, "BAD_REQUEST"));

    // The live stream sees an event pushed after it connected, and resumes after a cursor.
    let stream_url = format!("{}/api/v1/events/stream?workspace_id=ws-q", server.url);
    let (rx, _) = sse(stream_url.clone(), e.token.clone(), None, 2);
    let live = event("acme:live", "ws-q", 9, json!({"n": 1}));
    let live2 = event("acme:live", "ws-q", 10, json!({"n": 2}));
    let (status, _) = post(
        &events_url,
        Some(&e.token),
        &batch("ws-q", vec![live.clone()]),
    );
    assert_eq!(status, 200);
    let (first_id, data) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a live event");
    let got: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(got["event_id"], live["event_id"]);
    assert_eq!(
        post(
            &events_url,
            Some(&e.token),
            &batch("ws-q", vec![live2.clone()])
        )
        .0,
        200
    );
    let (_, data) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a second live event");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["event_id"],
        live2["event_id"]
    );
    // A reconnect with `Last-Event-ID` gets what it missed, in order.
    let (rx, _) = sse(stream_url, e.token.clone(), Some(first_id), 1);
    let (_, data) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the missed event");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["event_id"],
        live2["event_id"]
    );
}

// ---------------------------------------------------------------------------------------------
// Approvals

#[test]
fn approvals_are_durable_expire_and_are_decided_once_from_the_cli() {
    let home = Home::sqlite();
    let mut server = home.serve();
    let op = home.operator_token();
    let e = enroll(&server, &home.code("ws-a", None), None);
    let request = json!({"workspace_id": "ws-a", "type": "tool_call",
                         "subject": {"tool": "tenant-evidence:export", "input_hash": "sha256:00",
                                     "required_approvals": ["tenant-evidence:export"]},
                         "context": {"run_id": "run-a"}, "requester_type": "agent"});
    let (status, rec) = post(
        &format!("{}/api/v1/approvals/request", server.url),
        Some(&e.token),
        &request,
    );
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["status"], "pending");
    let id = rec["approval_id"].as_str().unwrap().to_string();
    let (status, expired) = post(
        &format!("{}/api/v1/approvals/request", server.url),
        Some(&e.token),
        &json!({"workspace_id": "ws-a", "type": "tool_call", "subject": {"tool": "x"},
                "expires_at": "2020-01-01T00:00:00Z"}),
    );
    assert_eq!(status, 200);
    assert_eq!(expired["status"], "expired");

    // Durable: a restarted server still has it.
    server.kill();
    let server = home.serve();
    let poll = format!("{}/api/v1/approvals/{id}", server.url);
    let (status, got) = get(&poll, Some(&e.token));
    assert_eq!((status, got["status"].as_str()), (200, Some("pending")));

    // The CLI lists and decides it (straight on the database).
    let listed = home.cli(&["cloud", "approvals", "list", "--workspace-id", "ws-a"]);
    let ids: Vec<&str> = listed["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["approval_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let decided = home.cli(&[
        "cloud",
        "approvals",
        "approve",
        &id,
        "--reason",
        "checked the diff",
    ]);
    assert_eq!(decided["status"], "approved");
    let (_, got) = get(&poll, Some(&e.token));
    assert_eq!(got["status"], "approved");
    assert_eq!(got["decision_reason"], "checked the diff");
    let out = run(
        home.path(),
        &[
            "cloud",
            "approvals",
            "reject",
            &id,
            "--database",
            &home.database,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CONFLICT"));

    // Over HTTP: resolve needs an operator; a decided or expired approval cannot be decided again.
    let resolve = format!("{}/api/v1/approvals/resolve", server.url);
    let body = json!({"workspace_id": "ws-a", "approval_id": id, "decision": "rejected"});
    let (status, _) = post(&resolve, Some(&e.token), &body);
    assert_eq!(status, 403);
    let (status, value) = post(&resolve, Some(&op), &body);
    assert_eq!((status, code_of(&value)), (409, "CONFLICT"));
    let body = json!({"workspace_id": "ws-a", "approval_id": expired["approval_id"], "decision": "approved"});
    assert_eq!(post(&resolve, Some(&op), &body).0, 409);
    let (status, list) = post(
        &format!("{}/api/v1/approvals/list", server.url),
        Some(&e.token),
        &json!({"workspace_id": "ws-a", "status": "expired"}),
    );
    assert_eq!(status, 200);
    assert_eq!(list["approvals"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Sealing and replay

fn receipt(run_id: &str) -> Value {
    let mut r = json!({
        "schema_version": 1, "receipt_kind": "tenant_proof_bundle", "workspace_id": "ws-s",
        "tenant_id": "tenant-1", "bundle_id": "b-1", "created_at": "2026-04-20T00:00:00.000Z",
        "approval_id": "apr_1", "run_id": run_id,
        "records": [{"record_kind": "checkpoint", "record_id": "c1",
                     "content_digest": format!("sha256:{}", "0".repeat(64))}],
    });
    let digest = format!("sha256:{}", sha256_hex(to_canonical_string(&r).as_bytes()));
    r["content_digest"] = json!(digest);
    r
}

#[test]
fn receipts_are_sealed_and_replay_assembles_the_chain() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    let e = enroll(&server, &home.code("ws-s", None), None);
    let run = "tc-20260420T000000Z-abcdef";
    let kinds = [
        "agent-runtime:turn_started",
        "kernel:policy_decided",
        "agent-runtime:tool_called",
        "sidekick:approval_requested",
    ];
    let events: Vec<Value> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| event(k, "ws-s", i as u64 + 1, json!({"run_id": run})))
        .collect();
    assert_eq!(
        post(
            &format!("{}/api/v1/events", server.url),
            Some(&e.token),
            &batch("ws-s", events)
        )
        .0,
        200
    );

    let seal_url = format!("{}/api/v1/receipts/seal", server.url);
    let r = receipt(run);
    let (status, sealed) = post(&seal_url, Some(&e.token), &r);
    assert_eq!(status, 200, "{sealed}");
    let seal = &sealed["seal"];
    assert_eq!(seal["algorithm"], "ed25519");
    // The signature is over the digest string, with the key the enrollment names.
    let issuer = PublicKey::from_pem(&e.issuer_public_key_pem, "issuer").unwrap();
    assert_eq!(seal["key_id"], issuer.key_id());
    use base64::Engine as _;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(seal["signature"].as_str().unwrap())
        .unwrap();
    issuer
        .verify(r["content_digest"].as_str().unwrap().as_bytes(), &sig)
        .unwrap();
    // Sealing again returns the stored seal.
    let (_, again) = post(&seal_url, Some(&e.token), &r);
    assert_eq!(again["seal"], sealed["seal"]);

    // A tampered receipt, a receipt with a seal field, malformed JSON: 400.
    let mut tampered = r.clone();
    tampered["bundle_id"] = json!("b-2");
    let (status, body) = post(&seal_url, Some(&e.token), &tampered);
    assert_eq!((status, code_of(&body)), (400, "RECEIPT_DIGEST_MISMATCH"));
    let mut with_seal = r.clone();
    with_seal["signature"] = json!("x");
    assert_eq!(post(&seal_url, Some(&e.token), &with_seal).0, 400);
    assert_eq!(
        send("POST", &seal_url, Some(&e.token), Some(b"{".to_vec())).0,
        400
    );

    // Replay: the chain's stages in order, from events, approvals and the sealed receipt.
    let (status, replay) = get(
        &format!("{}/api/v1/runs/{run}/replay", server.url),
        Some(&op),
    );
    assert_eq!(status, 200, "{replay}");
    let stages: Vec<(&str, u64)> = replay["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        stages,
        [
            // The turn request (turn_started carries the goal) opens the chain as its Ask.
            ("ask", 1),
            ("dispatch", 1),
            ("rules", 1),
            ("tool_calls", 1),
            ("approvals", 1),
            ("proof", 1)
        ]
    );
    let c = client();
    let html = c
        .get(format!("{}/replay/{run}", server.url))
        .bearer_auth(&op)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(html.contains("<h2>tool_calls</h2>"));
    assert_eq!(
        get(
            &format!("{}/api/v1/runs/{run}/replay", server.url),
            Some(&e.token)
        )
        .0,
        403
    );
    assert_eq!(
        get(
            &format!("{}/api/v1/runs/nope/replay", server.url),
            Some(&op)
        )
        .0,
        404
    );
}

// ---------------------------------------------------------------------------------------------
// Registry and invoke through a sidecar

/// A minimal sidecar: `GET /tools` (with an ETag) and `POST /tools/{name}`, both verifying the
/// control plane's token with the issuer key of the enrollment, as the real sidecar does.
struct FakeSidecar {
    url: String,
    enrollment: Arc<Mutex<Option<Enrollment>>>,
    tools_gets: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
}

fn fake_sidecar() -> FakeSidecar {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let enrollment: Arc<Mutex<Option<Enrollment>>> = Arc::new(Mutex::new(None));
    let gets = Arc::new(AtomicUsize::new(0));
    let nm = Arc::new(AtomicUsize::new(0));
    let (en, g, n) = (enrollment.clone(), gets.clone(), nm.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (en, g, n) = (en.clone(), g.clone(), n.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut line = String::new();
                let mut len = 0usize;
                let mut auth = String::new();
                let mut inm = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = line[14..].trim().trim_start_matches("Bearer ").to_string();
                    }
                    if lower.starts_with("if-none-match:") {
                        inm = line[14..].trim().to_string();
                    }
                    head.push_str(&line);
                    line.clear();
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let first = head.lines().next().unwrap_or("").to_string();
                // Until the test installs the enrollment (a refresh right after enrolling can
                // arrive first), the sidecar is not ready.
                let Some(e) = en.lock().unwrap().clone() else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    return;
                };
                let issuer = PublicKey::from_pem(&e.issuer_public_key_pem, "issuer").unwrap();
                let (status, etag, out) = match lumenflow_proof::token::verify(
                    &auth,
                    &issuer,
                    &e.workspace_id,
                ) {
                    Err(err) => (
                        "401 Unauthorized",
                        None,
                        json!({"error": {"code": "TOKEN_INVALID", "message": err.to_string()}}),
                    ),
                    Ok(claims) if first.starts_with("GET /tools ") => {
                        g.fetch_add(1, Ordering::SeqCst);
                        if inm == "\"v1\"" {
                            n.fetch_add(1, Ordering::SeqCst);
                            ("304 Not Modified", Some("\"v1\""), Value::Null)
                        } else {
                            assert!(claims.has_scope("workspace"));
                            (
                                "200 OK",
                                Some("\"v1\""),
                                json!({"tools": [{
                                "name": "acme:echo", "pack_id": "acme", "pack_version": "1.0.0",
                                "description": "echo", "permission": "read", "required_scopes": [],
                                "token_scope": "workspace", "required_approvals": [],
                                "input_schema": {"type": "object"}, "decision": "allow"}]}),
                            )
                        }
                    }
                    Ok(claims) => {
                        let name = first
                            .split(' ')
                            .nth(1)
                            .unwrap_or("")
                            .trim_start_matches("/tools/")
                            .to_string();
                        let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        (
                            "200 OK",
                            None,
                            json!({"success": true, "tool": name, "input": input, "scope": claims.scope, "sub": claims.sub}),
                        )
                    }
                };
                let body = if out.is_null() {
                    String::new()
                } else {
                    out.to_string()
                };
                let mut resp = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
                if let Some(tag) = etag {
                    resp.push_str(&format!("etag: {tag}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&body);
                let _ = stream.write_all(resp.as_bytes());
            });
        }
    });
    FakeSidecar {
        url,
        enrollment,
        tools_gets: gets,
        not_modified: nm,
    }
}

#[test]
fn registry_is_fetched_with_etag_and_invoke_forwards_with_a_scoped_token() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    let sidecar = fake_sidecar();
    let e = enroll(&server, &home.code("ws-r", None), Some(&sidecar.url));
    *sidecar.enrollment.lock().unwrap() = Some(e.clone());

    let refresh = format!("{}/api/v1/workspaces/ws-r/registry/refresh", server.url);
    let (status, body) = post(&refresh, Some(&op), &json!({}));
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&refresh, Some(&op), &json!({}));
    assert_eq!(
        (status, body["refresh"].as_str()),
        (200, Some("not_modified"))
    );
    assert!(sidecar.not_modified.load(Ordering::SeqCst) >= 1);
    let (status, tools) = get(
        &format!("{}/api/v1/workspaces/ws-r/tools", server.url),
        Some(&op),
    );
    assert_eq!(status, 200, "{tools}");
    assert_eq!(tools["tools"][0]["name"], "acme:echo");
    assert_eq!(tools["etag"], "\"v1\"");
    assert!(sidecar.tools_gets.load(Ordering::SeqCst) >= 2);

    let (status, out) = post(
        &format!("{}/api/v1/workspaces/ws-r/tools/acme:echo", server.url),
        Some(&op),
        &json!({"input": {"text": "hi"}}),
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["tool"], "acme:echo");
    assert_eq!(out["input"], json!({"input": {"text": "hi"}}));
    assert_eq!(out["scope"], "workspace");
    assert_eq!(out["sub"], "ws-r");
    // Only an operator may invoke or read the registry.
    assert_eq!(
        post(
            &format!("{}/api/v1/workspaces/ws-r/tools/acme:echo", server.url),
            Some(&e.token),
            &json!({})
        )
        .0,
        403
    );
    assert_eq!(
        get(
            &format!("{}/api/v1/workspaces/ws-r/tools", server.url),
            Some(&e.token)
        )
        .0,
        403
    );
    let audit = home.audit("ws-r");
    assert!(audit
        .iter()
        .any(|l| l["action"] == "tools.invoke" && l["outcome"] == "ok"));
}

// ---------------------------------------------------------------------------------------------
// Revocation and devices

#[test]
fn revoked_tokens_are_refused_and_listed_for_the_sidecar() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    let e = enroll(&server, &home.code("ws-v", None), None);
    let e_new = enroll(&server, &home.code("ws-v", None), None);
    let claims = lumenflow_proof::token::verify(
        &e.token,
        &PublicKey::from_pem(&e.issuer_public_key_pem, "k").unwrap(),
        "ws-v",
    )
    .unwrap();
    let (status, _) = post(
        &format!("{}/api/v1/revoke", server.url),
        Some(&e.token),
        &json!({"workspace_id": "ws-v", "jti": claims.jti}),
    );
    assert_eq!(status, 403, "a workspace cannot revoke");
    // A jti never issued for the workspace (a typo, another workspace's token) is not listed as
    // revoked: the operator would believe a token revoked that is not.
    for (ws, jti) in [("ws-v", "not-a-jti"), ("ws-other", claims.jti.as_str())] {
        let (status, body) = post(
            &format!("{}/api/v1/revoke", server.url),
            Some(&op),
            &json!({"workspace_id": ws, "jti": jti}),
        );
        assert_eq!(
            (status, code_of(&body)),
            (404, "NOT_FOUND"),
            "{ws} {jti}: {body}"
        );
    }
    let (status, body) = post(
        &format!("{}/api/v1/revoke", server.url),
        Some(&op),
        &json!({"workspace_id": "ws-v", "jti": claims.jti}),
    );
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(1)));
    let push = batch("ws-v", vec![event("acme:x", "ws-v", 1, json!({}))]);
    let (status, body) = post(
        &format!("{}/api/v1/events", server.url),
        Some(&e.token),
        &push,
    );
    assert_eq!((status, code_of(&body)), (401, "TOKEN_INVALID"));
    let (status, list) = get(
        &format!("{}/api/v1/revocations?workspace_id=ws-v", server.url),
        Some(&e_new.token),
    );
    assert_eq!(status, 200);
    assert_eq!(list["revoked_jtis"], json!([claims.jti]));
    assert_eq!(
        post(
            &format!("{}/api/v1/events", server.url),
            Some(&e_new.token),
            &push
        )
        .0,
        200
    );
    // The CLI revokes everything of a workspace.
    let out = home.cli(&["cloud", "revoke", "--workspace-id", "ws-v", "--all"]);
    assert!(out["revoked"].as_u64().unwrap() >= 1);
    assert_eq!(
        post(
            &format!("{}/api/v1/events", server.url),
            Some(&e_new.token),
            &push
        )
        .0,
        401
    );
}

#[test]
fn phone_devices_are_named_in_the_audit_log() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    let ws = enroll(&server, &home.code("ws-p", None), None);
    home.cli(&[
        "cloud",
        "device",
        "add",
        "--workspace-id",
        "ws-p",
        "--device",
        "pixel7",
        "--name",
        "Ana's Pixel",
    ]);
    let (status, _) = post(
        &format!("{}/api/v1/devices", server.url),
        Some(&op),
        &json!({"workspace_id": "ws-p", "device_id": "ipad", "name": "Front desk iPad"}),
    );
    assert_eq!(status, 200);
    let phone = enroll(&server, &home.code("ws-p", Some("pixel7")), None);
    assert_eq!(phone.subject, "ws-p:phone:pixel7");
    assert_eq!(phone.device_id.as_deref(), Some("pixel7"));

    let events_url = format!("{}/api/v1/events", server.url);
    let cmd = event(
        "sidekick:command_received",
        "ws-p:phone:pixel7",
        1,
        json!({"command": "status"}),
    );
    assert_eq!(
        post(&events_url, Some(&phone.token), &batch("ws-p", vec![cmd])).0,
        200
    );
    // A phone may not speak for the workspace or another phone; the sidecar may relay phones.
    let spoof = event("sidekick:command_received", "ws-p", 2, json!({}));
    assert_eq!(
        post(&events_url, Some(&phone.token), &batch("ws-p", vec![spoof])).0,
        403
    );
    let spoof = event("sidekick:command_received", "ws-p:phone:ipad", 2, json!({}));
    assert_eq!(
        post(
            &events_url,
            Some(&phone.token),
            &batch("ws-p", vec![spoof.clone()])
        )
        .0,
        403
    );
    assert_eq!(
        post(&events_url, Some(&ws.token), &batch("ws-p", vec![spoof])).0,
        200
    );

    let audit = home.audit("ws-p");
    let line = audit
        .iter()
        .find(|l| {
            l["action"] == "events.push"
                && l["subject"] == "ws-p:phone:pixel7"
                && l["outcome"] == "ok"
        })
        .expect("the phone's push is audited");
    assert_eq!(line["device_name"], "Ana's Pixel");
    assert!(audit.iter().any(|l| l["subject"] == "ws-p:phone:pixel7"
        && l["outcome"] == "refused"
        && l["device_name"] == "Ana's Pixel"));
    let devices = home.cli(&["cloud", "device", "list", "--workspace-id", "ws-p"]);
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// The original's v1 sync endpoints

#[test]
fn v1_sync_endpoints_answer_with_the_original_shapes() {
    let home = Home::sqlite();
    let server = home.serve();
    let e = enroll(&server, &home.code("ws-o", None), None);
    let t = Some(e.token.as_str());
    let u = |p: &str| format!("{}{p}", server.url);
    let (s, p) = post(&u("/api/v1/policies"), t, &json!({"workspace_id": "ws-o"}));
    assert_eq!(s, 200);
    assert!(p["default_decision"].is_string() && p["rules"].is_array());
    let (s, c) = post(&u("/api/v1/config"), t, &json!({"workspace_id": "ws-o"}));
    assert_eq!(s, 200);
    assert_eq!(c["id"], "ws-o");
    for key in [
        "endpoint",
        "org_id",
        "project_id",
        "sync_interval",
        "policy_mode",
        "auth",
    ] {
        assert!(c["control_plane"].get(key).is_some(), "config lacks {key}");
    }
    let (s, h) = post(
        &u("/api/v1/heartbeat"),
        t,
        &json!({"workspace_id": "ws-o", "session_id": "s1"}),
    );
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    assert!(h["server_time"].is_string());
    let (s, a) = post(
        &u("/api/v1/telemetry"),
        t,
        &json!({"workspace_id": "ws-o", "records": [{"metric": "m", "value": 1.5, "timestamp": "2026-01-01T00:00:00Z"}]}),
    );
    assert_eq!((s, a["accepted"].as_u64()), (200, Some(1)));
    let (s, a) = post(
        &u("/api/v1/evidence"),
        t,
        &json!({"workspace_id": "ws-o", "evidence_refs": ["a", "b"]}),
    );
    assert_eq!((s, a["accepted"].as_u64()), (200, Some(2)));
    let (s, id) = post(
        &u("/api/v1/authenticate"),
        t,
        &json!({"workspace_id": "ws-o", "org_id": "o", "agent_id": "ag"}),
    );
    assert_eq!(s, 200);
    assert_eq!(
        (id["workspace_id"].as_str(), id["agent_id"].as_str()),
        (Some("ws-o"), Some("ag"))
    );
    assert!(id["token"].as_str().is_some_and(|x| !x.is_empty()));
    assert_eq!(
        post(
            &u("/api/v1/telemetry"),
            t,
            &json!({"workspace_id": "ws-o", "records": [{"metric": 1}]})
        )
        .0,
        400
    );
    assert_eq!(
        post(&u("/api/v1/policies"), t, &json!({"workspace_id": "ws-x"})).0,
        403
    );
}

// ---------------------------------------------------------------------------------------------
// Two servers on one PostgreSQL database

#[test]
fn two_servers_on_one_postgres_serve_the_same_workspace() {
    let home = Home::postgres();
    let a = home.serve();
    let b = home.serve();
    let op = home.operator_token();
    let code = home.code("ws-pg", None);
    let e = enroll(&a, &code, None);
    // The code is spent for both servers.
    let (status, _) = post(
        &format!("{}/api/v1/enroll", b.url),
        None,
        &json!({"code": code}),
    );
    assert_eq!(status, 409);

    let events: Vec<Value> = (0..200)
        .map(|i| event("acme:tick", "ws-pg", i, json!({"i": i})))
        .collect();
    let (status, body) = post(
        &format!("{}/api/v1/events", a.url),
        Some(&e.token),
        &batch("ws-pg", events[..150].to_vec()),
    );
    assert_eq!((status, body["duplicates"].as_u64()), (200, Some(0)));
    // Ingest via A, query via B.
    assert_eq!(
        event_ids(&query(&b, &op, "workspace_id=ws-pg&limit=1000")).len(),
        150
    );
    // Overlapping batches through both at once: dedupe holds across processes.
    let (ua, ub, tok) = (a.url.clone(), b.url.clone(), e.token.clone());
    let (ea, eb) = (events[100..].to_vec(), events[50..].to_vec());
    let t1 = std::thread::spawn({
        let tok = tok.clone();
        move || {
            post(
                &format!("{ua}/api/v1/events"),
                Some(&tok),
                &batch("ws-pg", ea),
            )
        }
    });
    let t2 = std::thread::spawn(move || {
        post(
            &format!("{ub}/api/v1/events"),
            Some(&tok),
            &batch("ws-pg", eb),
        )
    });
    let (ra, rb) = (t1.join().unwrap(), t2.join().unwrap());
    assert_eq!((ra.0, rb.0), (200, 200));
    let fresh =
        (100 - ra.1["duplicates"].as_u64().unwrap()) + (150 - rb.1["duplicates"].as_u64().unwrap());
    assert_eq!(
        fresh, 50,
        "each new event is stored by exactly one server: {ra:?} {rb:?}"
    );
    let all = event_ids(&query(&a, &op, "workspace_id=ws-pg&limit=1000"));
    assert_eq!(all.len(), 200);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 200);

    // An approval requested through A is decided through B and read back through A.
    let (_, rec) = post(
        &format!("{}/api/v1/approvals/request", a.url),
        Some(&e.token),
        &json!({"workspace_id": "ws-pg", "type": "tool_call", "subject": {"tool": "x"}}),
    );
    let (status, _) = post(
        &format!("{}/api/v1/approvals/resolve", b.url),
        Some(&op),
        &json!({"workspace_id": "ws-pg", "approval_id": rec["approval_id"], "decision": "approved"}),
    );
    assert_eq!(status, 200);
    let (_, got) = get(
        &format!(
            "{}/api/v1/approvals/{}",
            a.url,
            rec["approval_id"].as_str().unwrap()
        ),
        Some(&e.token),
    );
    assert_eq!(got["status"], "approved");
}

// ---------------------------------------------------------------------------------------------
// Crash safety

#[test]
fn a_killed_server_keeps_every_acknowledged_batch() {
    let home = Home::sqlite();
    let mut server = home.serve();
    let op = home.operator_token();
    let e = enroll(&server, &home.code("ws-k", None), None);
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut pushers = Vec::new();
    for p in 0..4u64 {
        let (url, token, acked, stop) = (
            server.url.clone(),
            e.token.clone(),
            acknowledged.clone(),
            stop.clone(),
        );
        pushers.push(std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let events: Vec<Value> = (0..200)
                    .map(|i| {
                        event(
                            "acme:tick",
                            "ws-k",
                            n * 1000 + i,
                            json!({"pusher": p, "batch": n, "i": i}),
                        )
                    })
                    .collect();
                let ids: Vec<String> = events
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap().to_string())
                    .collect();
                let resp = c
                    .post(format!("{url}/api/v1/events"))
                    .bearer_auth(&token)
                    .json(&batch("ws-k", events))
                    .send();
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let body: Value = r.json().unwrap();
                        assert_eq!(body["accepted"].as_u64(), Some(200));
                        acked.lock().unwrap().extend(ids);
                    }
                    _ => break,
                }
                n += 1;
            }
        }));
    }
    // Let batches flow, then SIGKILL mid-stream.
    let start = Instant::now();
    while acknowledged.lock().unwrap().len() < 4000 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for p in pushers {
        p.join().unwrap();
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 4000, "only {} acknowledged", acked.len());

    let server = home.serve();
    let mut stored = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(c) => format!("workspace_id=ws-k&limit=10000&cursor={c}"),
            None => "workspace_id=ws-k&limit=10000".to_string(),
        };
        let page = query(&server, &op, &params);
        stored.extend(event_ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
    // Batches are atomic: the stored count is a whole number of batches.
    assert_eq!(stored.len() % 200, 0, "a partial batch was stored");
}

/// `lumenflow cloud serve` with no storage flags: an SQLite file and a 0600 key appear in the
/// current folder, and the admin commands find the same database by default.
#[test]
fn serve_with_no_flags_uses_an_sqlite_file_in_the_current_folder() {
    let dir = TempDir::new().unwrap();
    let server = Server::start_with_defaults(dir.path());
    assert!(dir.path().join("lumenflow-cloud.db").exists());
    assert!(dir.path().join("lumenflow-cloud.key").exists());
    let code: Value = serde_json::from_str(&ok(
        dir.path(),
        &["cloud", "enroll-code", "--workspace-id", "ws-d", "--json"],
    ))
    .unwrap();
    let e = enroll(&server, code["code"].as_str().unwrap(), None);
    assert_eq!(e.workspace_id, "ws-d");
    let (status, health) = get(&format!("{}/healthz", server.url), None);
    assert_eq!((status, health["backend"].as_str()), (200, Some("sqlite")));
}

/// The code and message of a command that must fail with `--json`.
fn refused(dir: &Path, args: &[&str]) -> (String, String) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(dir, &all);
    assert!(
        !out.status.success(),
        "lumenflow {} succeeded",
        args.join(" ")
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["error"]["code"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn administration_commands_never_create_a_database_or_key_of_their_own() {
    // Run in the wrong folder, `enroll-code` used to create an empty database there and print a
    // code the running server had never heard of; `operator-token` signed with a new key.
    let home = TempDir::new().unwrap();
    let elsewhere = TempDir::new().unwrap();
    for args in [
        &["cloud", "enroll-code", "--workspace-id", "ws-a"][..],
        &["cloud", "operator-token"],
        &["cloud", "audit", "--workspace-id", "ws-a"],
        &["cloud", "approvals", "list", "--workspace-id", "ws-a"],
        &["cloud", "operator", "list"],
    ] {
        let (code, message) = refused(elsewhere.path(), args);
        assert_eq!(code, "CONTROL_PLANE_NOT_INITIALIZED", "{args:?}: {message}");
        let expected = elsewhere.path().join("lumenflow-cloud.db");
        assert!(
            message.contains(&format!("`{}`", expected.display()))
                && message.contains("--database"),
            "{args:?}: the message names the file it looked for and the way out: {message}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing was created: {left:?}");

    // A file that is not a control-plane database is refused, not migrated into one.
    std::fs::write(home.path().join("other.db"), b"").unwrap();
    let (code, message) = refused(
        home.path(),
        &[
            "cloud",
            "audit",
            "--workspace-id",
            "ws-a",
            "--database",
            "other.db",
        ],
    );
    assert_eq!(code, "CONTROL_PLANE_NOT_INITIALIZED");
    assert!(
        message.contains("holds no control-plane tables"),
        "{message}"
    );
    assert_eq!(
        std::fs::metadata(home.path().join("other.db"))
            .unwrap()
            .len(),
        0
    );

    // `cloud init` sets a control plane up before its first start; it is idempotent, and the
    // server then uses the same database and key.
    let init = ok_json(home.path(), &["cloud", "init"]);
    assert_eq!(init["backend"], "sqlite");
    let key = std::fs::read(home.path().join("lumenflow-cloud.key")).unwrap();
    ok_json(home.path(), &["cloud", "init"]);
    assert_eq!(
        std::fs::read(home.path().join("lumenflow-cloud.key")).unwrap(),
        key
    );
    let code = ok_json(
        home.path(),
        &["cloud", "enroll-code", "--workspace-id", "ws-a"],
    );
    let token = ok(home.path(), &["cloud", "operator-token"])
        .trim()
        .to_string();
    // Each command closed the database: SQLite's write-ahead log was checkpointed and removed,
    // so the folder holds only what an operator backs up.
    for leftover in ["lumenflow-cloud.db-wal", "lumenflow-cloud.db-shm"] {
        assert!(
            !home.path().join(leftover).exists(),
            "{leftover} left behind by an administration command"
        );
    }
    let server = Server::start(
        home.path(),
        "sqlite://lumenflow-cloud.db",
        &home.path().join("lumenflow-cloud.key"),
    );
    assert_eq!(
        enroll(&server, code["code"].as_str().unwrap(), None).workspace_id,
        "ws-a"
    );
    let (status, _) = get(&format!("{}/api/v1/audit", server.url), Some(&token));
    assert_eq!(
        status, 200,
        "the operator token minted before the start is accepted"
    );

    // A key path that does not exist is refused and not created.
    let (code, message) = refused(
        home.path(),
        &["cloud", "operator-token", "--key", "nowhere/cloud.key"],
    );
    assert_eq!(code, "CONTROL_PLANE_NOT_INITIALIZED");
    assert!(
        message.contains("no control-plane signing key"),
        "{message}"
    );
    assert!(!home.path().join("nowhere").exists());
}

#[test]
fn administration_commands_refuse_a_postgres_schema_without_the_control_plane() {
    let home = Home::postgres();
    let (code, message) = refused(
        home.path(),
        &[
            "cloud",
            "enroll-code",
            "--workspace-id",
            "ws-a",
            "--database",
            &home.database,
        ],
    );
    assert_eq!(code, "CONTROL_PLANE_NOT_INITIALIZED");
    assert!(
        message.contains("holds no control-plane tables"),
        "{message}"
    );
    ok_json(
        home.path(),
        &["cloud", "init", "--database", &home.database],
    );
    let issued = home.cli(&["cloud", "enroll-code", "--workspace-id", "ws-a"]);
    assert!(issued["code"].as_str().unwrap().starts_with("lfe_"));
}

#[test]
fn serve_on_a_busy_port_fails_with_listen_failed() {
    let home = TempDir::new().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, message) = refused(home.path(), &["cloud", "serve", "--listen", &addr]);
    assert_eq!(code, "LISTEN_FAILED", "{message}");
    assert!(
        message.contains(&addr),
        "the message names the address: {message}"
    );
}

#[test]
fn a_database_that_cannot_be_opened_is_named_with_the_cause() {
    let home = TempDir::new().unwrap();
    // A port nothing listens on: the cause (refused), not the pool's "timed out" after 30 s.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://postgres@127.0.0.1:{free}/test");
    let missing_dir = home.path().join("no-such-folder/cloud.db");
    let missing_dir = missing_dir.to_str().unwrap();
    for (database, code, expected) in [
        (unreachable.as_str(), "STORAGE_ERROR", "Connection refused"),
        (
            missing_dir,
            "STORAGE_ERROR",
            "no-such-folder` does not exist",
        ),
        (
            "mysql://db.example/lf",
            "BAD_REQUEST",
            "scheme `mysql` is not supported",
        ),
    ] {
        let (got, message) = refused(
            home.path(),
            &[
                "cloud",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
            ],
        );
        assert_eq!(got, code, "{database}: {message}");
        assert!(message.contains(expected), "{database}: {message}");
    }
    // Administration commands name the scheme too (they took `mysql://…` for a file path).
    let (got, message) = refused(
        home.path(),
        &[
            "cloud",
            "operator",
            "list",
            "--database",
            "mysql://db.example/lf",
        ],
    );
    assert_eq!(got, "BAD_REQUEST", "{message}");
    assert!(
        message.contains("scheme `mysql` is not supported"),
        "{message}"
    );
    let left: Vec<_> = std::fs::read_dir(home.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing was created: {left:?}");
}

/// SIGTERM (systemd, a container runtime) stops the server cleanly: live streams end instead of
/// holding the process, it exits 0, and the store is closed (SQLite's WAL folded back in).
#[test]
fn sigterm_ends_live_streams_and_closes_the_store() {
    let home = Home::sqlite();
    let mut server = home.serve();
    let token = home.operator_token();
    let (events, connected) = sse(
        format!("{}/api/v1/events/stream?workspace_id=ws-a", server.url),
        token,
        None,
        1,
    );
    assert!(connected.load(Ordering::SeqCst), "the stream opened");
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    // The stream ends (its reader sees end of file) rather than waiting for an event.
    match events.recv_timeout(Duration::from_secs(60)) {
        Err(mpsc::RecvTimeoutError::Disconnected) => {}
        other => panic!("the live stream should have ended: {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
    let log = std::fs::read_to_string(home.path().join("server.log")).unwrap();
    assert!(log.contains("lumenflow cloud stopped"), "{log}");
    assert!(
        !home.path().join("cloud.db-wal").exists(),
        "the store was closed: SQLite removes its WAL when the last connection closes"
    );
}

/// Run `sql` on the SQLite database at `url` through a connection of the test's own (not the
/// server's), and return the first column of the first row as an integer when there is one.
fn sqlite_exec(url: &str, sql: &str) -> Option<i64> {
    let (url, sql) = (url.to_string(), sql.to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        row.and_then(|r| r.try_get::<i64, _>(0).ok())
    })
}

/// Regression for walk-F F-1 (DLV, Q36): after two storage errors in a row on SQLite, every
/// later batch was answered `200 accepted` but stayed in a transaction that was never
/// committed, and the sidecar then deleted its outbox copy. SQLite answers an error inside a
/// transaction in two ways (it rolls the whole transaction back, as it may on a full disk, or
/// only the statement); two triggers inject exactly those two answers through the real server.
/// Every batch acknowledged afterwards must be visible to another connection and survive a stop.
#[test]
fn storage_errors_never_leave_an_acknowledged_batch_uncommitted() {
    let home = Home::sqlite();
    let mut server = home.serve();
    let e = enroll(&server, &home.code("ws-full", None), None);
    let url = format!("{}/api/v1/events", server.url);
    for (name, raise) in [("rollback", "ROLLBACK"), ("abort", "ABORT")] {
        sqlite_exec(
            &home.database,
            &format!(
                "CREATE TRIGGER fault_{name} BEFORE INSERT ON events \
                 WHEN instr(NEW.raw, 'inject-{name}') > 0 \
                 BEGIN SELECT RAISE({raise}, 'injected {name}'); END"
            ),
        );
    }
    let events = |from: u64, n: u64, marker: &str| -> Value {
        batch(
            "ws-full",
            (from..from + n)
                .map(|i| event("acme:tick", "ws-full", i, json!({"i": i, "m": marker})))
                .collect(),
        )
    };
    // The failures in the order of the report: the transaction rolled back by SQLite, then a
    // statement rolled back inside a transaction that stays open.
    for (seq, marker) in [
        (0, "inject-rollback"),
        (100, "inject-abort"),
        (200, "inject-rollback"),
        (300, "inject-abort"),
    ] {
        let (status, body) = post(&url, Some(&e.token), &events(seq, 10, marker));
        assert_eq!(status, 500, "{marker}: {body}");
        assert_eq!(code_of(&body), "STORAGE_ERROR", "{body}");
    }
    for round in 0..3u64 {
        let good = events(1000 + round * 10, 10, "ok");
        let (status, body) = post(&url, Some(&e.token), &good);
        assert_eq!(
            (
                status,
                body["accepted"].as_u64(),
                body["duplicates"].as_u64()
            ),
            (200, Some(10), Some(0)),
            "{body}"
        );
        // Acknowledged means committed: another connection sees the rows now.
        let seen = sqlite_exec(
            &home.database,
            "SELECT count(*) FROM events WHERE workspace_id = 'ws-full'",
        );
        assert_eq!(seen, Some((round as i64 + 1) * 10), "round {round}");
    }
    let log = std::fs::read_to_string(home.path().join("server.log")).unwrap();
    assert!(
        log.contains("injected rollback"),
        "storage error not logged: {log}"
    );
    server.kill();
    assert_eq!(
        sqlite_exec(
            &home.database,
            "SELECT count(*) FROM events WHERE workspace_id = 'ws-full'"
        ),
        Some(30)
    );
}

/// Regression for walk-F F-3 (ENR, Q16): `serve` (and `init`) made a new signing key when the
/// key file was missing beside a database that had issued tokens, and every enrollment and token
/// then failed. They now refuse, naming the key path and the way out; `--new-key` starts over on
/// purpose. A database that has issued nothing still gets its key on first start.
#[test]
fn a_missing_key_beside_a_database_in_use_is_refused() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    drop(server);
    let moved = home.path().join("elsewhere.key");
    std::fs::rename(home.key(), &moved).unwrap();
    for args in [
        vec!["cloud", "serve", "--listen", "127.0.0.1:0"],
        vec!["cloud", "init"],
    ] {
        let mut all = args.clone();
        let key = home.key();
        all.extend(["--database", &home.database, "--key", key.to_str().unwrap()]);
        let (code, message) = refused(home.path(), &all);
        assert_eq!(code, "SIGNING_KEY_MISSING", "{args:?}: {message}");
        assert!(message.contains(home.key().to_str().unwrap()), "{message}");
        assert!(message.contains("--new-key"), "{message}");
        assert!(!home.key().exists(), "{args:?} created a key");
    }
    // The restored key works again, with the tokens issued before.
    std::fs::rename(&moved, home.key()).unwrap();
    let server = home.serve();
    let (status, body) = get(
        &format!("{}/api/v1/events?workspace_id=ws-x&limit=1", server.url),
        Some(&op),
    );
    assert_eq!(status, 200, "{body}");
    drop(server);
    // Starting over on purpose: a new key, and the old token is refused.
    std::fs::remove_file(home.key()).unwrap();
    let init = ok_json(
        home.path(),
        &[
            "cloud",
            "init",
            "--database",
            &home.database,
            "--key",
            home.key().to_str().unwrap(),
            "--new-key",
        ],
    );
    assert!(home.key().exists(), "{init}");
    let server = home.serve();
    let (status, body) = get(
        &format!("{}/api/v1/events?workspace_id=ws-x&limit=1", server.url),
        Some(&op),
    );
    assert_eq!((status, code_of(&body)), (401, "TOKEN_INVALID"), "{body}");
}

/// walk-F F-4: `cloud backup` copies a running SQLite control plane (database with what is still
/// in its WAL, and the key); the copy serves the old tokens and events in a new folder.
#[test]
fn a_backup_of_a_running_control_plane_restores_with_its_tokens_and_events() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    let e = enroll(&server, &home.code("ws-b", None), None);
    let events: Vec<Value> = (0..25)
        .map(|i| event("acme:tick", "ws-b", i, json!({"i": i})))
        .collect();
    let (status, body) = post(
        &format!("{}/api/v1/events", server.url),
        Some(&e.token),
        &batch("ws-b", events),
    );
    assert_eq!(status, 200, "{body}");
    let restore = TempDir::new().unwrap();
    let out = restore.path().join("lumenflow-cloud.db");
    let made = home.cli(&[
        "cloud",
        "backup",
        "--out",
        out.to_str().unwrap(),
        "--key",
        home.key().to_str().unwrap(),
    ]);
    let key_copy = restore.path().join("lumenflow-cloud.db.key");
    assert_eq!(made["key"].as_str(), key_copy.to_str());
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [&out, &key_copy] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }
    // A second backup to the same file is refused rather than overwriting it.
    let (_, message) = refused(
        home.path(),
        &[
            "cloud",
            "backup",
            "--out",
            out.to_str().unwrap(),
            "--database",
            &home.database,
            "--key",
            home.key().to_str().unwrap(),
        ],
    );
    assert!(message.contains("already exists"), "{message}");
    drop(server);
    let restored = Server::start(
        restore.path(),
        &format!("sqlite://{}", out.display()),
        &key_copy,
    );
    let page = query(&restored, &op, "workspace_id=ws-b&limit=100");
    assert_eq!(event_ids(&page).len(), 25);
    let page = query(&restored, &e.token, "workspace_id=ws-b&limit=100");
    assert_eq!(event_ids(&page).len(), 25);
}

/// Regression for walk-G F2 and F12 (TEV-05 to TEV-07, Q25): the seal route signed any JSON
/// object, took `tenant_id` as the workspace, sealed `trusted_compute_bundle` receipts for runs
/// that never happened, and replayed such a run as complete.
#[test]
fn the_seal_route_signs_only_checked_receipts_of_known_runs() {
    let home = Home::sqlite();
    let server = home.serve();
    let op = home.operator_token();
    let e = enroll(&server, &home.code("ws-s", None), None);
    let seal = format!("{}/api/v1/receipts/seal", server.url);
    let digest = |mut r: Value| {
        if let Some(m) = r.as_object_mut() {
            m.remove("content_digest");
        }
        let d = format!("sha256:{}", sha256_hex(to_canonical_string(&r).as_bytes()));
        r["content_digest"] = json!(d);
        r
    };
    let refuse = |r: Value, field: &str| {
        let (status, body) = post(&seal, Some(&e.token), &digest(r));
        assert_eq!(status, 400, "{field}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field}: {message}");
    };
    refuse(
        json!({"workspace_id": "ws-s", "anything": "goes"}),
        "schema_version",
    );
    let good = receipt("run-without-events");
    for field in [
        "records",
        "tenant_id",
        "approval_id",
        "created_at",
        "workspace_id",
    ] {
        let mut r = good.clone();
        r.as_object_mut().unwrap().remove(field);
        refuse(r, field);
    }
    let mut r = good.clone();
    r["schema_version"] = json!(99);
    refuse(r, "schema_version");
    let mut r = good.clone();
    r["receipt_kind"] = json!("lol");
    refuse(r, "receipt_kind");
    let mut r = good.clone();
    r["created_at"] = json!("not a time");
    refuse(r, "created_at");
    // Regression for walk-G N2: a tenant receipt naming a run that never happened is refused
    // (it would sit in a ghost run's Proof stage); without `run_id` it is sealed.
    let (status, body) = post(&seal, Some(&e.token), &good);
    assert_eq!((status, code_of(&body)), (404, "NOT_FOUND"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`run_id` `run-without-events`"),
        "{body}"
    );
    let (status, replay) = get(
        &format!("{}/api/v1/runs/run-without-events/replay", server.url),
        Some(&op),
    );
    assert_eq!(status, 404, "nothing is stored for the ghost run: {replay}");
    let mut unplaced = good.clone();
    unplaced.as_object_mut().unwrap().remove("run_id");
    let (status, body) = post(&seal, Some(&e.token), &digest(unplaced));
    assert_eq!(status, 200, "{body}");
    // Regression for walk-G F13: duplicate member names are refused, whichever comes last.
    let dup = |first: &str, second: &str| {
        let text = digest(receipt_without_run()).to_string();
        let body = text.replacen(
            "\"workspace_id\":\"ws-s\"",
            &format!("\"workspace_id\":\"{first}\",\"workspace_id\":\"{second}\""),
            1,
        );
        assert_ne!(body, text);
        send("POST", &seal, Some(&e.token), Some(body.into_bytes()))
    };
    for (first, second) in [("victim-ws", "ws-s"), ("ws-s", "victim-ws")] {
        let (status, body) = dup(first, second);
        assert_eq!((status, code_of(&body)), (400, "BAD_REQUEST"), "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("duplicate key `workspace_id`"),
            "{message}"
        );
    }
    // A bundle receipt for a run no one has seen is refused; one for a run with events is sealed.
    let bundle_at = |run: &str, created_at: &str| {
        digest(json!({
            "schema_version": 1, "receipt_kind": "trusted_compute_bundle", "workspace_id": "ws-s",
            "run_id": run, "bundle_id": run, "created_at": created_at,
            "signer_key_id": format!("ed25519:{}", "e".repeat(64)),
            "records": [{"record_kind": "artifact", "record_id": "test-results.json",
                         "content_digest": format!("sha256:{}", "1".repeat(64))}],
        }))
    };
    let bundle = |run: &str| bundle_at(run, &Timestamp::now().to_rfc3339());
    let (status, body) = post(&seal, Some(&e.token), &bundle("tc-ghost"));
    assert_eq!((status, code_of(&body)), (404, "NOT_FOUND"), "{body}");
    let ev = vec![event(
        "agent-runtime:turn_started",
        "ws-s",
        1,
        json!({"run_id": "tc-real"}),
    )];
    let (status, _) = post(
        &format!("{}/api/v1/events", server.url),
        Some(&e.token),
        &batch("ws-s", ev),
    );
    assert_eq!(status, 200);
    // Regression for walk-G N2: `created_at` before the run's first event, or later than the
    // control plane's clock allows, is refused naming the field; so is another `bundle_id`.
    for created_at in ["1999-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z"] {
        let (status, body) = post(&seal, Some(&e.token), &bundle_at("tc-real", created_at));
        assert_eq!((status, code_of(&body)), (400, "BAD_REQUEST"), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`created_at`"),
            "{body}"
        );
    }
    let mut other = bundle("tc-real");
    other["bundle_id"] = json!("not-the-bundle");
    let (status, body) = post(&seal, Some(&e.token), &digest(other));
    assert_eq!((status, code_of(&body)), (400, "BAD_REQUEST"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`bundle_id`"),
        "{body}"
    );
    let (status, body) = post(&seal, Some(&e.token), &bundle("tc-real"));
    assert_eq!(status, 200, "{body}");
}

/// A tenant receipt of workspace `ws-s` placed in no run.
fn receipt_without_run() -> Value {
    let mut r = receipt("x");
    r.as_object_mut().unwrap().remove("run_id");
    r
}

/// The golden bundle's nine artifacts made into run `run` (every `tc-golden` replaced, then
/// `edit` applied to each file's text), sealed by `key`: every file, base64, as an upload's
/// `files`.
fn sealed_bundle(
    ws: &str,
    run: &str,
    key: &lumenflow_proof::KeyPair,
    edit: impl Fn(&str, String) -> String,
) -> serde_json::Map<String, Value> {
    use base64::Engine as _;
    use lumenflow_proof::bundle;
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bundles/valid");
    let dir = TempDir::new().unwrap();
    for name in bundle::REQUIRED_ARTIFACTS {
        let mut text = std::fs::read_to_string(golden.join(name)).unwrap();
        if name == "node-session.json" {
            // As the demo writes it: the session names the workspace the run was enrolled as.
            let mut session: Value = serde_json::from_str(&text).unwrap();
            session["workspace_id"] = json!(ws);
            text = session.to_string();
        }
        std::fs::write(
            dir.path().join(name),
            edit(name, text.replace("tc-golden", run)),
        )
        .unwrap();
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
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                json!(base64::engine::general_purpose::STANDARD
                    .encode(std::fs::read(e.path()).unwrap())),
            )
        })
        .collect()
}

fn put_bundle(
    server: &Server,
    token: &str,
    ws: &str,
    run: &str,
    files: &serde_json::Map<String, Value>,
) -> (u16, Value) {
    send(
        "PUT",
        &format!("{}/api/v1/runs/{run}/bundle", server.url),
        Some(token),
        Some(
            json!({"workspace_id": ws, "files": files})
                .to_string()
                .into_bytes(),
        ),
    )
}

/// Regression for walk-G F3 (TCD-*, Q31-Q33): a bundle carries its own key, so the control
/// plane reported a bundle anyone signed as plainly verified. Now the first verified bundle of
/// a workspace pins its signer, a bundle signed by another key is stored but flagged
/// `signer_changed` with both key ids, and `lumenflow cloud signer pin` accepts a new signer,
/// audited; on both backends (migration 6 on each).
fn bundle_signers_are_pinned_and_changes_flagged(home: Home) {
    let server = home.serve();
    let e = enroll(&server, &home.code("ws-p", None), None);
    let first = lumenflow_proof::KeyPair::generate();
    let other = lumenflow_proof::KeyPair::generate();
    let (first_id, other_id) = (first.public().key_id(), other.public().key_id());
    let same = |_: &str, t: String| t;

    // Trust on first use: the first verified bundle pins its signer.
    let (s, v) = put_bundle(
        &server,
        &e.token,
        "ws-p",
        "tc-p1",
        &sealed_bundle("ws-p", "tc-p1", &first, same),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            &v["passed"],
            &v["signer_changed"],
            &v["pinned_signer_key_id"]
        ),
        (&json!(true), &json!(false), &json!(first_id)),
        "{v}"
    );
    let pins = home.cli(&["cloud", "signer", "list", "--workspace-id", "ws-p"]);
    assert_eq!(pins["signers"][0]["key_id"], json!(first_id), "{pins}");
    assert_eq!(pins["signers"][0]["source"], "first_use", "{pins}");

    // Another key: stored, verifies, but flagged with both ids; the audit line says so.
    let forged = sealed_bundle("ws-p", "tc-p2", &other, same);
    let (s, v) = put_bundle(&server, &e.token, "ws-p", "tc-p2", &forged);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["passed"], true, "{v}");
    assert_eq!(v["signer_changed"], true, "{v}");
    assert_eq!(v["signer_key_id"], json!(other_id), "{v}");
    assert_eq!(v["pinned_signer_key_id"], json!(first_id), "{v}");
    assert!(home
        .audit("ws-p")
        .iter()
        .any(|l| l["action"] == "bundles.upload"
            && l["detail"]
                .as_str()
                .unwrap_or("")
                .contains("SIGNER CHANGED")));

    // Bad key ids are refused, naming the flag.
    let out = run(
        home.path(),
        &[
            "cloud",
            "signer",
            "pin",
            "--workspace-id",
            "ws-p",
            "--key-id",
            "ed25519:xyz",
            "--database",
            &home.database,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("--key-id"),
        "{err}"
    );

    // An operator accepts the new signer: audited, later bundles by it are not flagged, the
    // flagged one keeps its flag (it was uploaded under the old pin).
    let pinned = home.cli(&[
        "cloud",
        "signer",
        "pin",
        "--workspace-id",
        "ws-p",
        "--key-id",
        &other_id,
        "--reason",
        "key rotated, confirmed by phone",
    ]);
    assert_eq!(pinned["previous_key_id"], json!(first_id), "{pinned}");
    let line = home
        .audit("ws-p")
        .into_iter()
        .find(|l| l["action"] == "cli.signer.pin")
        .expect("the pin is audited");
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.contains(&other_id) && detail.contains(&first_id) && detail.contains("rotated"),
        "{detail}"
    );
    let (s, v) = put_bundle(
        &server,
        &e.token,
        "ws-p",
        "tc-p3",
        &sealed_bundle("ws-p", "tc-p3", &other, same),
    );
    assert_eq!((s, &v["signer_changed"]), (200, &json!(false)), "{v}");
    let (s, v) = put_bundle(&server, &e.token, "ws-p", "tc-p2", &forged);
    assert_eq!((s, &v["signer_changed"]), (200, &json!(true)), "{v}");

    // A signer an operator pinned before any upload is not replaced by the first bundle.
    let q = enroll(&server, &home.code("ws-q", None), None);
    home.cli(&[
        "cloud",
        "signer",
        "pin",
        "--workspace-id",
        "ws-q",
        "--key-id",
        &first_id,
    ]);
    let (s, v) = put_bundle(
        &server,
        &q.token,
        "ws-q",
        "tc-q1",
        &sealed_bundle("ws-q", "tc-q1", &other, same),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["signer_changed"], &v["pinned_signer_key_id"]),
        (&json!(true), &json!(first_id)),
        "{v}"
    );
    let pins = home.cli(&["cloud", "signer", "list", "--workspace-id", "ws-q"]);
    assert_eq!(pins["signers"][0]["source"], "operator", "{pins}");

    // Regression for walk-G N3: a workspace uploading another workspace's genuine bundle is
    // refused (409 naming the file and field), and pins nothing.
    let x = enroll(&server, &home.code("ws-x", None), None);
    let stolen = sealed_bundle("ws-p", "tc-x1", &first, same);
    let (s, v) = put_bundle(&server, &x.token, "ws-x", "tc-x1", &stolen);
    assert_eq!((s, code_of(&v)), (409, "CONFLICT"), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("files.node-session.json") && message.contains("workspace_id"),
        "{message}"
    );
    let pins = home.cli(&["cloud", "signer", "list", "--workspace-id", "ws-x"]);
    assert_eq!(pins["signers"], json!([]), "{pins}");
    let anonymous = sealed_bundle("ws-x", "tc-x2", &first, |name, t| {
        if name == "node-session.json" {
            let mut session: Value = serde_json::from_str(&t).unwrap();
            session.as_object_mut().unwrap().remove("workspace_id");
            session.to_string()
        } else {
            t
        }
    });
    // A session naming no workspace claims none (hand-made bundles, the golden fixtures): it
    // is verified and stored like any other, and the workspace's first pin is its own.
    let (s, v) = put_bundle(&server, &x.token, "ws-x", "tc-x2", &anonymous);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["signer_changed"], false, "{v}");
    let asked = sealed_bundle("ws-x", "tc-x3", &first, |name, t| {
        if name == "ask.json" {
            t.replace("\"run_id\"", "\"workspace_id\": \"ws-p\", \"run_id\"")
        } else {
            t
        }
    });
    let (s, v) = put_bundle(&server, &x.token, "ws-x", "tc-x3", &asked);
    assert_eq!((s, code_of(&v)), (409, "CONFLICT"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("files.ask.json"),
        "{v}"
    );

    // Regression for walk-G N4: a pin for a workspace that never had an enrollment code (a
    // typo) is refused, naming the flag.
    let out = run(
        home.path(),
        &[
            "cloud",
            "signer",
            "pin",
            "--workspace-id",
            "ws-pp",
            "--key-id",
            &first_id,
            "--database",
            &home.database,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NOT_FOUND") && err.contains("`--workspace-id` `ws-pp`"),
        "{err}"
    );
}

#[test]
fn bundle_signers_are_pinned_and_changes_flagged_on_sqlite() {
    bundle_signers_are_pinned_and_changes_flagged(Home::sqlite());
}

#[test]
fn bundle_signers_are_pinned_and_changes_flagged_on_postgres() {
    bundle_signers_are_pinned_and_changes_flagged(Home::postgres());
}

/// Regression for walk-G F2/F3 (TEV-05 to TEV-07, Q25): a `trusted_compute_bundle` receipt was
/// sealed for a stored run whatever digests it named. With the run's bundle stored, every
/// artifact must be one of its files with that digest, and the signer its signer: else 409
/// naming the artifact.
#[test]
fn a_bundle_receipt_must_match_the_stored_bundle() {
    let home = Home::sqlite();
    let server = home.serve();
    let e = enroll(&server, &home.code("ws-r", None), None);
    let key = lumenflow_proof::KeyPair::generate();
    let files = sealed_bundle("ws-r", "tc-r1", &key, |_, t| t);
    let (s, v) = put_bundle(&server, &e.token, "ws-r", "tc-r1", &files);
    assert_eq!((s, &v["passed"]), (200, &json!(true)), "{v}");
    let manifest: Value = {
        use base64::Engine as _;
        let raw = files["manifest.json"].as_str().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap(),
        )
        .unwrap()
    };
    let receipt = |records: Vec<Value>, signer: &str| {
        let mut r = json!({
            "schema_version": 1, "receipt_kind": "trusted_compute_bundle", "workspace_id": "ws-r",
            "run_id": "tc-r1", "bundle_id": "tc-r1", "created_at": "2026-11-21T00:00:00.000Z",
            "signer_key_id": signer, "records": records,
        });
        let d = format!("sha256:{}", sha256_hex(to_canonical_string(&r).as_bytes()));
        r["content_digest"] = json!(d);
        r
    };
    let honest: Vec<Value> = manifest["artifact_hashes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, d)| json!({"record_kind": "artifact", "record_id": name, "content_digest": d}))
        .collect();
    let signer = manifest["signer_key_id"].as_str().unwrap();
    let seal = format!("{}/api/v1/receipts/seal", server.url);
    let refused = |r: Value, named: &str| {
        let (status, body) = post(&seal, Some(&e.token), &r);
        assert_eq!(
            (status, code_of(&body)),
            (409, "CONFLICT"),
            "{named}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{named}: {message}");
    };
    let mut forged = honest.clone();
    forged[0]["content_digest"] = json!(format!("sha256:{}", "1".repeat(64)));
    let name = forged[0]["record_id"].as_str().unwrap().to_string();
    refused(receipt(forged, signer), &format!("artifact `{name}`"));
    let mut extra = honest.clone();
    extra.push(
        json!({"record_kind": "artifact", "record_id": "not-in-the-bundle.json",
                      "content_digest": format!("sha256:{}", "2".repeat(64))}),
    );
    refused(receipt(extra, signer), "artifact `not-in-the-bundle.json`");
    // Regression for walk-G N2: every artifact of the stored bundle exactly once.
    refused(receipt(Vec::new(), signer), "leaves out artifact(s)");
    let subset = honest[..1].to_vec();
    let left_out = honest[1]["record_id"].as_str().unwrap().to_string();
    refused(receipt(subset, signer), &format!("`{left_out}`"));
    let mut twice = honest.clone();
    twice.push(honest[0].clone());
    refused(
        receipt(twice, signer),
        &format!(
            "artifact `{}` more than once",
            honest[0]["record_id"].as_str().unwrap()
        ),
    );
    refused(
        receipt(honest.clone(), &format!("ed25519:{}", "e".repeat(64))),
        "signer_key_id",
    );
    let (status, body) = post(&seal, Some(&e.token), &receipt(honest, signer));
    assert_eq!(status, 200, "{body}");
}

/// Regression for walk-F F-13: under `cloud` the global `--workspace` was described as a folder
/// (it is the workspace id), `revoke` with nothing named asked only for a workspace (the missing
/// part is `--jti` or `--all`), and `audit` of a mistyped workspace printed nothing.
#[test]
fn cloud_help_and_messages_say_what_is_meant_and_missing() {
    let home = Home::sqlite();
    let help = ok(home.path(), &["cloud", "enroll-code", "--help"]);
    assert!(help.contains("under `cloud`, the workspace id"), "{help}");
    let (code, message) = refused(
        home.path(),
        &["cloud", "revoke", "--database", &home.database],
    );
    assert_eq!(code, "INVALID_ARGUMENT");
    assert!(
        message.contains("--jti JTI") && message.contains("--all"),
        "{message}"
    );
    ok(
        home.path(),
        &[
            "cloud",
            "init",
            "--database",
            &home.database,
            "--key",
            home.key().to_str().unwrap(),
        ],
    );
    let out = ok(
        home.path(),
        &[
            "cloud",
            "audit",
            "--workspace-id",
            "nosuch",
            "--database",
            &home.database,
        ],
    );
    assert!(
        out.starts_with("no audit lines for workspace `nosuch`"),
        "{out}"
    );
}

/// walk-F F-13: `cloud revoke` with nothing to revoke names `--jti`/`--all` (it asked for a
/// workspace, which `--jti` does not need), and `cloud audit` for an id with no lines says so
/// instead of printing nothing.
#[test]
fn revoke_and_audit_say_what_is_missing() {
    let dir = TempDir::new().unwrap();
    let _server = Server::start_with_defaults(dir.path());
    let (code, message) = refused(dir.path(), &["cloud", "revoke"]);
    assert_eq!(code, "INVALID_ARGUMENT", "{message}");
    assert!(
        message.contains("--jti JTI") && message.contains("--all --workspace-id WS"),
        "{message}"
    );
    let said = ok(dir.path(), &["cloud", "audit", "--workspace-id", "nosuch"]);
    assert!(
        said.contains("no audit lines for workspace `nosuch`"),
        "{said}"
    );
}
