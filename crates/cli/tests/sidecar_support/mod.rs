//! Shared by the sidecar tests: a real control plane stand-in (an axum server on loopback that
//! records event batches and dedupes by `event_id`, issues enrollments, serves revocations and
//! can be taken down), the real `lumenflow sidecar` process, and small HTTP helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing;
use axum::{Json, Router};
use lumenflow_contracts::identity::{Enrollment, TokenClaims};
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::wire::{Accepted, ApiError, EnrollRequest, EventBatch, RevocationList};
use lumenflow_proof::keys::KeyPair;
use lumenflow_proof::token;
use serde_json::{json, Value};

pub const WS: &str = "ws-42";
pub const ENROLL_CODE: &str = "one-time-code-1";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lumenflow")
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run lumenflow")
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "`lumenflow {}` failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the control plane stand-in has seen.
#[derive(Default)]
pub struct CloudState {
    /// Unique events, in the order they first arrived.
    pub events: Vec<Value>,
    pub ids: HashSet<String>,
    /// Every event received, duplicates included.
    pub received: usize,
    pub batches: usize,
    /// Answer 503 to every event push.
    pub failing: bool,
    pub revoked: Vec<String>,
    /// The enrollment token pushes must carry.
    pub expected_token: Option<String>,
    pub bad_auth: usize,
    pub workspace_ids: HashSet<String>,
}

pub struct FakeCloud {
    pub url: String,
    pub key: KeyPair,
    pub state: Arc<Mutex<CloudState>>,
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Clone)]
struct Ctx {
    state: Arc<Mutex<CloudState>>,
    key: KeyPair,
    url: String,
}

fn bearer(h: &HeaderMap) -> Option<String> {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

async fn events(
    State(c): State<Ctx>,
    headers: HeaderMap,
    Json(batch): Json<EventBatch>,
) -> impl IntoResponse {
    let mut s = c.state.lock().unwrap();
    if s.failing {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!(ApiError::new("UNAVAILABLE", "down for maintenance"))),
        );
    }
    if s.expected_token.is_some() && bearer(&headers) != s.expected_token {
        s.bad_auth += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!(ApiError::new("TOKEN_INVALID", "bad token"))),
        );
    }
    s.batches += 1;
    s.workspace_ids.insert(batch.workspace_id.clone());
    let mut dup = 0;
    for e in &batch.events {
        s.received += 1;
        let id = e["event_id"].as_str().unwrap_or_default().to_string();
        if s.ids.insert(id) {
            s.events.push(e.clone());
        } else {
            dup += 1;
        }
    }
    (
        StatusCode::OK,
        Json(json!(Accepted {
            accepted: batch.events.len() as u64,
            duplicates: dup
        })),
    )
}

async fn revocations(State(c): State<Ctx>) -> impl IntoResponse {
    let s = c.state.lock().unwrap();
    Json(RevocationList {
        workspace_id: WS.into(),
        revoked_jtis: s.revoked.clone(),
        generated_at: Timestamp::now().to_rfc3339(),
    })
}

async fn enroll_route(State(c): State<Ctx>, Json(req): Json<EnrollRequest>) -> impl IntoResponse {
    if req.code != ENROLL_CODE {
        return (
            StatusCode::FORBIDDEN,
            Json(json!(ApiError::new("ENROLL_CODE_INVALID", "unknown code"))),
        );
    }
    let claims = claims(WS, "workspace", 86_400);
    let t = token::mint(&c.key, &claims).unwrap();
    c.state.lock().unwrap().expected_token = Some(t.clone());
    let e = Enrollment {
        schema_version: 1,
        token: t,
        subject: WS.into(),
        scopes: vec!["workspace".into()],
        issued_at: Timestamp::from_unix_millis(claims.iat * 1000).to_rfc3339(),
        expires_at: Timestamp::from_unix_millis(claims.exp * 1000).to_rfc3339(),
        issuer: "lumenflow-cloud-test".into(),
        issuer_public_key_pem: c.key.public().to_pem(),
        control_plane_endpoint: Some(c.url.clone()),
        workspace_id: WS.into(),
        device_id: None,
    };
    (StatusCode::OK, Json(json!(e)))
}

pub fn claims(sub: &str, scope: &str, ttl: i64) -> TokenClaims {
    let now = token::now_unix();
    TokenClaims {
        iss: "lumenflow-cloud-test".into(),
        sub: sub.into(),
        aud: WS.into(),
        scope: scope.into(),
        iat: now,
        exp: now + ttl,
        jti: token::new_jti(),
        device_name: None,
    }
}

impl FakeCloud {
    pub fn start() -> FakeCloud {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let cloud = FakeCloud {
            url: format!("http://{addr}"),
            key: KeyPair::generate(),
            state: Arc::new(Mutex::new(CloudState::default())),
            addr,
            rt,
            server: Mutex::new(None),
        };
        cloud.serve(listener);
        cloud
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let ctx = Ctx {
            state: self.state.clone(),
            key: self.key.clone(),
            url: self.url.clone(),
        };
        let app = Router::new()
            .route("/api/v1/events", routing::post(events))
            .route("/api/v1/revocations", routing::get(revocations))
            .route("/api/v1/enroll", routing::post(enroll_route))
            .with_state(ctx);
        let handle = self.rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().unwrap() = Some(handle);
    }

    /// Stop listening (connections are refused) and refuse pushes on kept-alive connections.
    pub fn down(&self) {
        self.state.lock().unwrap().failing = true;
        if let Some(h) = self.server.lock().unwrap().take() {
            h.abort();
        }
    }

    /// Listen again on the same address.
    pub fn up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match self.rt.block_on(tokio::net::TcpListener::bind(self.addr)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebind {}: {e}", self.addr);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.state.lock().unwrap().failing = false;
        self.serve(listener);
    }

    pub fn token(&self, sub: &str, scope: &str) -> String {
        token::mint(&self.key, &claims(sub, scope, 3600)).unwrap()
    }

    pub fn mint(&self, claims: &TokenClaims) -> String {
        token::mint(&self.key, claims).unwrap()
    }

    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }

    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}

pub const WORKSPACE_YAML: &str = r#"id: ws-42
name: Conductor test
packs:
  - {id: software-delivery, version: 0.1.0, integrity: dev, source: local}
  - {id: agent-runtime, version: 0.1.0, integrity: dev, source: local}
  - {id: acme-demo, version: 0.1.0, integrity: dev, source: local}
lanes:
  - id: site-comms
    title: "Content: Site Comms"
    allowed_scopes:
      - {type: path, pattern: "**", access: read}
      - {type: path, pattern: "**", access: write}
security:
  allowed_scopes:
    - {type: path, pattern: "**", access: read}
    - {type: path, pattern: "**", access: write}
memory_namespace: m
event_namespace: e
sandbox: none
software_delivery:
  gates:
    format: {command: "test -f README.md", timeout_seconds: 10}
"#;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git-backed workspace `ws-42` with the built-in software-delivery, agent-runtime and
/// acme-demo packs pinned, not yet enrolled.
pub fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("workspace.yaml"), WORKSPACE_YAML).unwrap();
    std::fs::write(root.join("README.md"), "# site\n").unwrap();
    std::fs::write(root.join(".gitignore"), ".lumenflow/\nworktrees/\n").unwrap();
    git(&root, &["init", "--quiet", "--initial-branch=main"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "--quiet", "-m", "initial"]);
    (dir, root)
}

/// Enroll `root` with the control plane through the real `lumenflow enroll` command.
pub fn enroll(root: &Path, cloud: &FakeCloud) {
    let out = ok(
        root,
        &[
            "enroll",
            "--control-plane",
            &cloud.url,
            "--code",
            ENROLL_CODE,
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["subject"], WS);
    assert!(
        !out.contains("eyJ"),
        "enroll must never print the token: {out}"
    );
}

/// A running `lumenflow sidecar` process.
pub struct Sidecar {
    pub child: Child,
    pub url: String,
    pub stderr: PathBuf,
}

impl Sidecar {
    pub fn spawn(root: &Path, extra: &[&str]) -> Sidecar {
        let stderr = root.join(format!(
            "sidecar-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut child = Command::new(bin())
            .args(["sidecar", "--listen", "127.0.0.1:0", "--dir"])
            .arg(root)
            .args(extra)
            .env("LUMENFLOW_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn sidecar");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "the sidecar did not start: {line:?}\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .to_string();
        Sidecar { child, url, stderr }
    }

    /// SIGKILL, no cleanup.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub fn body(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

pub fn post(url: &str, token: Option<&str>, value: &Value) -> (u16, Value) {
    let mut req = http().post(url).json(value);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    body(req.send().expect("send"))
}

pub fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    body(req.send().expect("send"))
}

/// Poll `check` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The kernel's hash-chained log, as JSON records.
pub fn kernel_log(root: &Path) -> Vec<Value> {
    std::fs::read_to_string(root.join(".lumenflow/kernel/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The local ledger of emitted v2 events.
pub fn ledger(root: &Path) -> Vec<Value> {
    std::fs::read_to_string(root.join(".lumenflow/state/conductor/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn outbox_files(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(".lumenflow/state/conductor/outbox"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
