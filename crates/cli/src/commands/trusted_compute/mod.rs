//! `lumenflow demo trusted-compute --mode happy|policy-blocked` (TCD-01 to TCD-11): the whole
//! chain for real. Ask → Dispatch → Rules → Tool calls → Approvals → Proof.
//!
//! Nothing is simulated: a control plane process (`lumenflow cloud serve`, SQLite) and a sidecar
//! process (`lumenflow sidecar`) run on loopback; the workspace is a real git repository with a
//! failing test; it is enrolled with a one-time code; the Ask is an operator's call through the
//! control plane's invoke API to the sidecar's `agent:execute-turn`, whose scripted planner
//! proposes each tool call to the kernel's dispatch path; the PR step pauses on the
//! `software-delivery:pr-create` approval, decided in the control plane; the turn resumes; the
//! sidecar's events reach the control plane, which assembles the replay; and the bundle is built
//! from those records, signed, and verified like a third party would.

mod procs;
mod records;
mod scratch;
mod signer;
mod upload;

use lumenflow_contracts::error_text::with_causes;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use lumenflow_contracts::time::Timestamp;
use lumenflow_proof::bundle::{self, SealRequest};
use serde_json::{json, Value};

use super::Context;
use crate::output::{print_ok, CliError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Rules allow, tools run, the PR step waits for an operator's approval.
    Happy,
    /// The Ask makes the agent try to write a production secret; the rules stop it.
    PolicyBlocked,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Happy => "happy",
            Mode::PolicyBlocked => "policy-blocked",
        }
    }
}

#[derive(Args, Debug)]
pub struct TrustedComputeArgs {
    /// Which run to show.
    #[arg(long, value_enum, default_value = "happy")]
    pub mode: Mode,
    /// Use a running control plane instead of starting one (needs --operator-token).
    #[arg(long, value_name = "URL")]
    pub control_plane: Option<String>,
    /// Operator token for --control-plane (from `lumenflow cloud operator-token`).
    #[arg(long, env = "LUMENFLOW_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// Approve the PR step without asking (unattended runs).
    #[arg(long)]
    pub approve: bool,
    /// The run id (default `tc-<UTC time>-<6 hex>`).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Where bundles go; each run writes `<DIR>/<run-id>/`.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "evidence/demo/trusted-compute"
    )]
    pub out: PathBuf,
    /// The Ed25519 key that signs the bundle (created 0600 on first use and reused, so a
    /// verifier can pin it). Its public key is written next to it as `<name>.pub.pem`.
    /// Default: `<out>/.keys/signer-ed25519.pem`.
    #[arg(long, value_name = "PEM")]
    pub signing_key: Option<PathBuf>,
    /// Folder for the scratch workspace, databases and logs (default: a temporary folder).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Keep the temporary scratch folder after the run.
    #[arg(long)]
    pub keep: bool,
}

struct Steps {
    json: bool,
    n: usize,
    started: Instant,
    log: Vec<Value>,
}

impl Steps {
    fn step(&mut self, stage: &str, title: &str, detail: &str) {
        self.n += 1;
        let ms = self.started.elapsed().as_millis();
        if !self.json {
            eprintln!("[{:>2}] {stage:<10} {title}  ({ms} ms)", self.n);
            for line in detail.lines() {
                eprintln!("                {line}");
            }
        }
        self.log.push(
            json!({"step": self.n, "stage": stage, "title": title, "detail": detail, "elapsed_ms": ms}),
        );
    }
}

fn new_run_id() -> String {
    let now = Timestamp::now().to_rfc3339();
    // 2026-11-21T07:01:02.345Z -> 20261121T070102Z
    let compact: String = now
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("tc-{compact}Z-{}", &lumenflow_proof::token::new_jti()[..6])
}

/// A small HTTP client for the control plane's operator API.
struct Operator {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Operator {
    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
        what: &str,
    ) -> Result<(u16, Value), CliError> {
        let resp = req.bearer_auth(&self.token).send().map_err(|e| {
            CliError::new(
                "CONTROL_PLANE_UNREACHABLE",
                format!("{what}: {}", with_causes(&e)),
            )
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(|e| {
            CliError::new(
                "CONTROL_PLANE_UNREACHABLE",
                format!("{what}: {}", with_causes(&e)),
            )
        })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let what = format!("POST {}{path}", self.base);
        let (status, body) = self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            &what,
        )?;
        if !(200..300).contains(&status) {
            return Err(http_error(&what, status, &body));
        }
        Ok(body)
    }

    /// An invoke answers with the tool's own status mapping: 200 also for a failed tool.
    fn invoke(&self, ws: &str, tool: &str, body: &Value) -> Result<(u16, Value), CliError> {
        let path = format!("/api/v1/workspaces/{ws}/tools/{tool}");
        let what = format!("POST {}{path}", self.base);
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            &what,
        )
    }

    fn get(&self, path: &str) -> Result<Value, CliError> {
        let what = format!("GET {}{path}", self.base);
        let (status, body) = self.send(self.http.get(format!("{}{path}", self.base)), &what)?;
        if !(200..300).contains(&status) {
            return Err(http_error(&what, status, &body));
        }
        Ok(body)
    }
}

fn http_error(what: &str, status: u16, body: &Value) -> CliError {
    let code = body
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("CONTROL_PLANE_ERROR")
        .to_string();
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    CliError::new(code, format!("{what} answered {status}: {message}"))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |e| CliError::new("IO_ERROR", format!("{}: {e}", path.display()))
}

fn write(path: &Path, body: &str) -> Result<(), CliError> {
    std::fs::write(path, body).map_err(io_err(path))
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

pub fn run(ctx: &Context, args: TrustedComputeArgs) -> Result<(), CliError> {
    let run_id = args.run_id.clone().unwrap_or_else(new_run_id);
    lumenflow_contracts::identity::check_id(&run_id).map_err(|reason| {
        CliError::new("INVALID_ARGUMENT", format!("--run-id `{run_id}`: {reason}"))
    })?;
    let mut temp = None;
    let scratch_root = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => {
            let t = tempfile::Builder::new()
                .prefix("lumenflow-trusted-compute-")
                .tempdir()
                .map_err(|e| {
                    CliError::new("IO_ERROR", format!("cannot create a scratch folder: {e}"))
                })?;
            let path = t.path().to_path_buf();
            temp = Some(t);
            path
        }
    };
    let result = run_in(ctx, &args, &run_id, &scratch_root);
    if let Some(t) = temp {
        if args.keep || result.is_err() {
            // Kept for inspection: the logs of both services and the workspace are in it.
            let kept = t.keep();
            eprintln!("scratch folder kept: {}", kept.display());
        }
    }
    result
}

fn run_in(
    ctx: &Context,
    args: &TrustedComputeArgs,
    run_id: &str,
    scratch_root: &Path,
) -> Result<(), CliError> {
    let mut steps = Steps {
        json: ctx.json,
        n: 0,
        started: Instant::now(),
        log: Vec::new(),
    };
    let logs = scratch_root.join("logs");
    std::fs::create_dir_all(&logs).map_err(io_err(&logs))?;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| CliError::new("IO_ERROR", format!("cannot build an HTTP client: {e}")))?;

    // Cloud: the control plane.
    let mut _cloud_process = None;
    let operator = match &args.control_plane {
        Some(url) => {
            let token = args.operator_token.clone().ok_or_else(|| {
                CliError::new(
                    "INVALID_ARGUMENT",
                    "--control-plane needs an operator token: --operator-token or LUMENFLOW_OPERATOR_TOKEN (mint one with `lumenflow cloud operator-token`)",
                )
            })?;
            steps.step("Cloud", "connected to the control plane", url);
            Operator {
                base: url.trim_end_matches('/').to_string(),
                token,
                http,
            }
        }
        None => {
            let cloud_dir = scratch_root.join("cloud");
            std::fs::create_dir_all(&cloud_dir).map_err(io_err(&cloud_dir))?;
            let db = format!("sqlite://{}", cloud_dir.join("cloud.db").display());
            let key = cloud_dir.join("control-plane-ed25519.pem");
            let key_s = key.display().to_string();
            let service = procs::start(
                "control plane",
                &[
                    "cloud".into(),
                    "serve".into(),
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--database".into(),
                    db.clone(),
                    "--key".into(),
                    key_s.clone(),
                    "--registry-refresh".into(),
                    "0".into(),
                ],
                scratch_root,
                &logs.join("control-plane.log"),
                Duration::from_secs(60),
            )?;
            let token = procs::run(
                &[
                    "cloud".into(),
                    "operator-token".into(),
                    "--name".into(),
                    "demo-operator".into(),
                    "--database".into(),
                    db.clone(),
                    "--key".into(),
                    key_s,
                ],
                scratch_root,
            )?
            .trim()
            .to_string();
            steps.step(
                "Cloud",
                "control plane started",
                &format!(
                    "{} (pid {}, SQLite {})\noperator token minted with the control plane's key",
                    service.url,
                    service.pid(),
                    cloud_dir.join("cloud.db").display()
                ),
            );
            let op = Operator {
                base: service.url.clone(),
                token,
                http,
            };
            _cloud_process = Some(service);
            op
        }
    };

    // Connection: a real workspace, enrolled, with its sidecar.
    let ws_dir = scratch_root.join("workspace");
    let scratch = scratch::create(&ws_dir)?;
    steps.step(
        "Connection",
        "scratch workspace created",
        &format!(
            "{} (git {}, {})\nbaseline test: {}{}",
            scratch.root.display(),
            &scratch.head[..12.min(scratch.head.len())],
            scratch::WORKSPACE_ID,
            scratch.baseline_test["output"].as_str().unwrap_or(""),
            if scratch.unsandboxed {
                "\nbubblewrap not found: the workspace says `sandbox: none`, so gates run \
                 unsandboxed (apt-get install -y bubblewrap)"
            } else {
                ""
            }
        ),
    );
    let code = operator.post(
        "/api/v1/enroll-codes",
        &json!({"workspace_id": scratch::WORKSPACE_ID, "ttl_seconds": 600}),
    )?;
    let code = code
        .get("code")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            CliError::new(
                "CONTROL_PLANE_ERROR",
                "the enrollment code answer has no `code`",
            )
        })?
        .to_string();
    let ws_s = scratch.root.display().to_string();
    procs::run(
        &[
            "enroll".into(),
            "--control-plane".into(),
            operator.base.clone(),
            "--code".into(),
            code,
            "--dir".into(),
            ws_s.clone(),
        ],
        scratch_root,
    )?;
    let enrollment: Value = serde_json::from_slice(
        &std::fs::read(
            scratch
                .root
                .join(lumenflow_contracts::identity::ENROLLMENT_FILE),
        )
        .map_err(io_err(&scratch.root))?,
    )
    .map_err(|e| CliError::new("ENROLLMENT_INVALID", e.to_string()))?;
    let subject = enrollment["subject"].as_str().unwrap_or("").to_string();
    steps.step(
        "Connection",
        "workspace enrolled with a one-time code",
        &format!(
            "token installed in .lumenflow/state/conductor/enrollment.json (0600), subject `{subject}`"
        ),
    );
    let mut sidecar = procs::start(
        "sidecar",
        &[
            "sidecar".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--dir".into(),
            ws_s.clone(),
        ],
        &scratch.root,
        &logs.join("sidecar.log"),
        Duration::from_secs(60),
    )?;
    operator.post(
        &format!("/api/v1/workspaces/{}/sidecar", scratch::WORKSPACE_ID),
        &json!({"sidecar_url": sidecar.url}),
    )?;
    let listing = operator.get(&format!(
        "/api/v1/workspaces/{}/tools",
        scratch::WORKSPACE_ID
    ))?;
    let tool_names: Vec<String> = listing
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    steps.step(
        "Connection",
        "sidecar started and its tools discovered by the control plane",
        &format!(
            "{} (pid {}): {} tools\n{}",
            sidecar.url,
            sidecar.pid(),
            tool_names.len(),
            tool_names.join(", ")
        ),
    );

    // Ask.
    let (goal, plan) = match args.mode {
        Mode::Happy => (
            format!(
                "Fix the failing add test on {} and prepare the pull request.",
                scratch::WU_ID
            ),
            json!([
                {"tool": "software-delivery:wu_claim", "input": {"wu_id": scratch::WU_ID, "lane": scratch::LANE}},
                {"tool": "software-delivery:apply_patch", "input": {"wu_id": scratch::WU_ID, "patch": scratch::FIX_PATCH}},
                {"tool": "software-delivery:gates", "input": {"wu_id": scratch::WU_ID}},
                {"tool": "software-delivery:pr_prepare", "input": {"wu_id": scratch::WU_ID,
                    "title": "calc: add sums its arguments",
                    "body": "`add` subtracted its second argument; it now adds it. The `test` gate passes."}},
            ]),
        ),
        Mode::PolicyBlocked => (
            format!(
                "Rotate the production database password in {} for {}.",
                scratch::SECRET_PATH,
                scratch::WU_ID
            ),
            json!([
                {"tool": "software-delivery:apply_patch", "input": {"wu_id": scratch::WU_ID,
                    "patch": scratch::SECRET_PATCH, "paths": [scratch::SECRET_PATH]}},
                {"tool": "software-delivery:wu_claim", "input": {"wu_id": scratch::WU_ID, "lane": scratch::LANE}},
            ]),
        ),
    };
    let submitted_at = Timestamp::now().to_rfc3339();
    let turn_id = format!("turn-{run_id}");
    let ask = json!({
        "schema_version": 1,
        "ask_id": format!("ask-{run_id}"),
        "run_id": run_id,
        "mode": args.mode.as_str(),
        "goal": goal,
        "workspace_id": scratch::WORKSPACE_ID,
        "submitted_by": "demo-operator",
        "submitted_at": submitted_at,
        "control_plane": operator.base,
        "dispatch": {"tool": "agent:execute-turn", "turn_id": turn_id, "planner": "scripted", "plan": plan},
    });
    steps.step("Ask", "operator submitted an Ask", &goal);

    // Dispatch: cloud → runtime, through the sidecar's scoped surface.
    let invoke_body = json!({
        "input": {"goal": goal, "turn_id": turn_id, "plan": {"steps": plan}},
        "context": {"run_id": run_id},
    });
    let (status, first) =
        operator.invoke(scratch::WORKSPACE_ID, "agent:execute-turn", &invoke_body)?;
    sidecar.check_alive()?;
    steps.step(
        "Dispatch",
        "control plane → sidecar: POST /tools/agent:execute-turn",
        &format!("HTTP {status}; turn `{turn_id}` {}", turn_status(&first)),
    );
    report_steps(&mut steps, &first, 0);

    // Approvals.
    let mut approval_record = None;
    let mut last = first.clone();
    if turn_status(&first) == "waiting_approval" {
        let approval_id = first
            .pointer("/data/approval_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let pending = operator.get(&format!("/api/v1/approvals/{approval_id}"))?;
        steps.step(
            "Approvals",
            "the PR step pauses for sign-off",
            &format!(
                "approval {approval_id}: {} (input {}), requested by {}, expires {}",
                pending
                    .pointer("/subject/tool")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                pending
                    .pointer("/subject/input_hash")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                pending
                    .get("requester_id")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                pending
                    .get("expires_at")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
            ),
        );
        let approve = if args.approve {
            true
        } else if std::io::stdin().is_terminal() && !ctx.json {
            ask_operator("Approve PR creation for WU-042? [y/N] ")?
        } else {
            return Err(CliError::new(
                "APPROVAL_REQUIRED",
                format!("approval {approval_id} waits for an operator: run with --approve, answer at a terminal, or decide it with `lumenflow cloud approvals approve {approval_id}`"),
            ));
        };
        let decision = if approve { "approved" } else { "rejected" };
        operator.post(
            "/api/v1/approvals/resolve",
            &json!({"workspace_id": scratch::WORKSPACE_ID, "approval_id": approval_id,
                    "decision": decision, "reason": if args.approve { "approved unattended (--approve)" } else { "decided at the demo prompt" },
                    "reviewer_id": "demo-operator", "reviewer_type": "user"}),
        )?;
        steps.step(
            "Approvals",
            &format!("operator {decision} {approval_id}"),
            "",
        );
        let (status, resumed) =
            operator.invoke(scratch::WORKSPACE_ID, "agent:execute-turn", &invoke_body)?;
        steps.step(
            "Tool calls",
            "turn resumed after the decision",
            &format!("HTTP {status}; turn `{turn_id}` {}", turn_status(&resumed)),
        );
        // The steps that ran before the pause are not run again; show only what followed.
        let done = first
            .pointer("/data/steps")
            .and_then(Value::as_array)
            .map_or(0, |s| s.len().saturating_sub(1));
        report_steps(&mut steps, &resumed, done);
        approval_record = Some(operator.get(&format!("/api/v1/approvals/{approval_id}"))?);
        last = resumed;
    }

    // Happy mode is a chain that completes; when it does not, the bundle still records what
    // happened, and the command says so instead of succeeding.
    let incomplete = (args.mode == Mode::Happy && turn_status(&last) != "completed")
        .then(|| turn_status(&last).to_string());
    // Proof: evidence syncs back; the control plane assembles the replay.
    let end_kind = if turn_status(&last) == "completed" {
        "agent-runtime:turn_completed"
    } else {
        "agent-runtime:turn_aborted"
    };
    let synced = wait_for_event(&operator, end_kind, Duration::from_secs(30))?;
    let replay_link = format!("{}/replay/{run_id}", operator.base);
    steps.step(
        "Proof",
        "evidence synced to the control plane",
        &format!(
            "{synced} events of {} stored in the control plane",
            scratch::WORKSPACE_ID
        ),
    );
    drop(sidecar);

    let bundle_dir = args.out.join(run_id);
    std::fs::create_dir_all(&bundle_dir).map_err(io_err(&bundle_dir))?;
    write_bundle(
        &bundle_dir,
        &scratch,
        &BundleInputs {
            run_id,
            mode: args.mode,
            ask: &ask,
            enrollment: &enrollment,
            operator_base: &operator.base,
            last: &last,
            approval: approval_record.as_ref(),
            replay_link: &replay_link,
            submitted_at: &submitted_at,
        },
    )?;
    let key_path = args
        .signing_key
        .clone()
        .unwrap_or_else(|| args.out.join(".keys/signer-ed25519.pem"));
    let signer::Signer {
        key,
        public_key_path,
    } = signer::load_or_create(&key_path)?;
    let manifest = bundle::seal(
        &bundle_dir,
        &key,
        &SealRequest {
            run_id,
            mode: args.mode.as_str(),
            created_at: &Timestamp::now().to_rfc3339(),
        },
    )
    .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    let verification = bundle::verify(&bundle_dir, Some(&key.public()));
    steps.step(
        "Proof",
        "bundle written, signed and verified",
        &format!(
            // The pinned key is the signer's public key kept next to its private key, never
            // the copy inside the bundle: a forger replaces that copy along with the signature.
            "{}\nsigner {} ({})\n{}\nverify: lumenflow proof verify --pubkey {} {}\n   or: openssl pkeyutl -verify -pubin -inkey {} -rawin -in {}/manifest.json -sigfile {}/manifest.sig",
            bundle_dir.display(),
            manifest.signer_key_id,
            key_path.display(),
            verification
                .checks
                .iter()
                .map(|c| format!("{} {}", if c.passed { "ok  " } else { "FAIL" }, c.name))
                .collect::<Vec<_>>()
                .join("\n"),
            public_key_path.display(),
            bundle_dir.display(),
            public_key_path.display(),
            bundle_dir.display(),
            bundle_dir.display()
        ),
    );
    if !verification.passed() {
        return Err(CliError::new(
            "BUNDLE_INVALID",
            format!("the bundle in {} does not verify", bundle_dir.display()),
        ));
    }

    // Proof closes the loop in the control plane too: it seals the bundle's receipt (the
    // artifact digests, bound to the run), and the replay now runs from the Dispatch to Proof.
    // The upload comes first: the control plane seals a bundle receipt only for a run it knows.
    let uploaded = upload::upload_bundle(
        &operator,
        &enrollment,
        scratch::WORKSPACE_ID,
        run_id,
        &bundle_dir,
    )?;
    if uploaded.get("passed").and_then(Value::as_bool) != Some(true) {
        return Err(CliError::new(
            "BUNDLE_INVALID",
            format!("the control plane did not verify the bundle of run `{run_id}`: {uploaded}"),
        ));
    }
    let sealed = operator.post(
        "/api/v1/receipts/seal",
        &bundle_receipt(scratch::WORKSPACE_ID, run_id, &manifest),
    )?;
    steps.step(
        "Proof",
        "bundle uploaded; the control plane verified it",
        &format!(
            "{} bytes, signer {}",
            uploaded
                .get("total_bytes")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            uploaded
                .get("signer_key_id")
                .and_then(Value::as_str)
                .unwrap_or("?")
        ),
    );
    let replay = operator.get(&format!("/api/v1/runs/{run_id}/replay"))?;
    let stages: Vec<String> = replay
        .get("stages")
        .and_then(Value::as_array)
        .map(|stages| {
            stages
                .iter()
                .map(|st| {
                    let stage = st.get("stage").and_then(Value::as_str).unwrap_or("?");
                    let events = st.get("count").and_then(Value::as_u64).unwrap_or(0);
                    // The replay's own count; the Rules stage also says what the bundle lists
                    // (its policy decisions and gates, as the console's Rules badge does), so a
                    // policy-blocked run does not read "rules 0" and neither figure passes for
                    // the other.
                    match (stage, rules_listed(&bundle_dir)) {
                        ("rules", listed) if listed != events => {
                            format!("{stage} {events} ({listed} decisions in the bundle)")
                        }
                        _ => format!("{stage} {events}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if stages.is_empty() {
        return Err(CliError::new(
            "REPLAY_EMPTY",
            format!("the control plane holds nothing for run `{run_id}`; see the sidecar log"),
        ));
    }
    steps.step(
        "Proof",
        "the control plane sealed the bundle's receipt; replay assembled",
        &format!(
            "receipt {} sealed by {}\nreplay stages: {}\nreplay: {replay_link}",
            sealed
                .get("receipt_id")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            sealed
                .pointer("/seal/key_id")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            stages.join(", ")
        ),
    );
    if let Some(status) = incomplete {
        return Err(CliError::new(
            "DEMO_RUN_INCOMPLETE",
            format!(
                "happy mode ended with the turn {status}, not completed; the bundle `{}` records \
                 where it stopped (see the Rules and Tool calls steps above)",
                bundle_dir.display()
            ),
        ));
    }
    print_ok(
        ctx.json,
        &json!({"ok": true, "run_id": run_id, "mode": args.mode.as_str(), "bundle": bundle_dir,
                "replay": replay_link, "signer_key_id": manifest.signer_key_id,
                "signer_public_key": public_key_path, "steps": steps.log}),
        &format!("{}", bundle_dir.display()),
    );
    Ok(())
}

/// How many policy decisions and gates the bundle in `dir` records (what the Rules stage lists).
fn rules_listed(dir: &Path) -> u64 {
    let decisions = std::fs::read_to_string(dir.join("policy-decisions.jsonl"))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|d| d.get("decision").and_then(Value::as_str).is_some())
                .count()
        })
        .unwrap_or(0);
    let gates = std::fs::read(dir.join("test-results.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|t| t.get("gates").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0);
    u64::try_from(decisions + gates).unwrap_or(u64::MAX)
}

/// The unsealed receipt of a trusted-compute bundle: every artifact by name and digest, bound
/// to the run, with `content_digest` over the rest (Q25's rule; the control plane seals it).
fn bundle_receipt(workspace_id: &str, run_id: &str, manifest: &bundle::BundleManifest) -> Value {
    let records: Vec<Value> = manifest
        .artifact_hashes
        .iter()
        .map(|(name, digest)| {
            json!({"record_kind": "artifact", "record_id": name, "content_digest": digest})
        })
        .collect();
    let mut receipt = serde_json::Map::new();
    for (k, v) in [
        ("schema_version", json!(1)),
        ("receipt_kind", json!("trusted_compute_bundle")),
        ("workspace_id", json!(workspace_id)),
        ("run_id", json!(run_id)),
        ("bundle_id", json!(run_id)),
        ("created_at", json!(manifest.created_at)),
        ("signer_key_id", json!(manifest.signer_key_id)),
        ("records", Value::Array(records)),
    ] {
        receipt.insert(k.to_string(), v);
    }
    let digest = lumenflow_contracts::receipt::digest_without_content_digest(&receipt);
    receipt.insert("content_digest".into(), json!(digest.to_string()));
    Value::Object(receipt)
}

fn turn_status(out: &Value) -> &str {
    out.pointer("/data/status")
        .and_then(Value::as_str)
        .unwrap_or(if out.get("success") == Some(&Value::Bool(false)) {
            "aborted"
        } else {
            "unknown"
        })
}

/// One line per step the turn reported (from `skip` on): the Rules' verdict and the tool
/// call's outcome.
fn report_steps(steps: &mut Steps, out: &Value, skip: usize) {
    let Some(list) = out.pointer("/data/steps").and_then(Value::as_array) else {
        if let Some(msg) = out.pointer("/error/message").and_then(Value::as_str) {
            steps.step("Rules", "the turn stopped", msg);
        }
        return;
    };
    for s in list.iter().skip(skip) {
        let tool = s.get("tool").and_then(Value::as_str).unwrap_or("?");
        let outcome = s.get("outcome").and_then(Value::as_str).unwrap_or("?");
        let receipt = s.get("receipt_id").and_then(Value::as_str).unwrap_or("");
        let (stage, detail) = match s.get("error_code").and_then(Value::as_str) {
            Some(code) => (
                "Rules",
                format!(
                    "{code}: {}",
                    s.get("error_message").and_then(Value::as_str).unwrap_or("")
                ),
            ),
            None => ("Tool calls", format!("receipt {receipt}")),
        };
        steps.step(stage, &format!("{tool} → {outcome}"), &detail);
    }
}

fn ask_operator(prompt: &str) -> Result<bool, CliError> {
    use std::io::Write;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::new("IO_ERROR", format!("cannot read the answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Wait until the control plane holds an event of `kind` from the demo workspace; the number of
/// the workspace's events it holds then.
fn wait_for_event(operator: &Operator, kind: &str, timeout: Duration) -> Result<usize, CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = operator.get(&format!(
            "/api/v1/events?workspace_id={}&limit=1000",
            scratch::WORKSPACE_ID
        ))?;
        let events = all
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if events.iter().any(|e| {
            e.get("kind").and_then(Value::as_str) == Some(kind)
                || e.pointer("/event/kind").and_then(Value::as_str) == Some(kind)
        }) {
            return Ok(events.len());
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                "EVIDENCE_NOT_SYNCED",
                format!(
                    "the control plane has no `{kind}` event of {} after {}s ({} events arrived); see the sidecar log",
                    scratch::WORKSPACE_ID,
                    timeout.as_secs(),
                    events.len()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct BundleInputs<'a> {
    run_id: &'a str,
    mode: Mode,
    ask: &'a Value,
    enrollment: &'a Value,
    operator_base: &'a str,
    last: &'a Value,
    approval: Option<&'a Value>,
    replay_link: &'a str,
    submitted_at: &'a str,
}

fn write_bundle(
    dir: &Path,
    scratch: &scratch::Scratch,
    b: &BundleInputs<'_>,
) -> Result<(), CliError> {
    let calls = records::calls_of_run(&scratch.root, b.run_id)?;
    let steps = b
        .last
        .pointer("/data/steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut step_data: BTreeMap<String, Value> = BTreeMap::new();
    let mut data_of: BTreeMap<String, Value> = BTreeMap::new();
    for s in &steps {
        if let (Some(r), Some(d)) = (s.get("receipt_id").and_then(Value::as_str), s.get("data")) {
            step_data.insert(r.to_string(), d.clone());
            if let Some(t) = s.get("tool").and_then(Value::as_str) {
                data_of.insert(t.to_string(), d.clone());
            }
        }
    }

    write(&dir.join("ask.json"), &pretty(b.ask))?;
    let tool_call_lines = records::tool_calls(&calls, &step_data);
    // The kernel log's head as the bundle is made: signed with the manifest, it ties the log
    // to this bundle, so a log later cut short or rewritten no longer matches what was signed
    // (the chain alone cannot show either).
    let log_path = lumenflow_kernel::eventlog::default_path(&scratch.root);
    let head = lumenflow_kernel::eventlog::verify(&log_path).map_err(|e| {
        CliError::new(
            e.code(),
            format!("the workspace's kernel log does not verify: {e}"),
        )
    })?;
    let session = json!({
        "schema_version": 1,
        "session_id": format!("session-{}", b.run_id),
        "run_id": b.run_id,
        "workspace_id": b.enrollment.get("workspace_id"),
        "subject": b.enrollment.get("subject"),
        "scopes": b.enrollment.get("scopes"),
        "issuer": b.enrollment.get("issuer"),
        "control_plane": b.operator_base,
        "enrolled_at": b.enrollment.get("issued_at"),
        "token_expires_at": b.enrollment.get("expires_at"),
        "runtime": {"name": "lumenflow", "version": env!("CARGO_PKG_VERSION"), "os": std::env::consts::OS, "arch": std::env::consts::ARCH},
        "repository": {"head": scratch.head, "branch": "main"},
        "packs": scratch.pins,
        "started_at": b.submitted_at,
        "ended_at": Timestamp::now().to_rfc3339(),
        "tool_calls": tool_call_lines.lines().count(),
        "governed_calls": calls.len(),
        "kernel_log": {"last_seq": head.last_seq, "head": head.last_hash},
    });
    write(&dir.join("node-session.json"), &pretty(&session))?;
    write(
        &dir.join("policy-decisions.jsonl"),
        &records::policy_decisions(&calls),
    )?;
    write(&dir.join("tool-calls.jsonl"), &tool_call_lines)?;

    let pr = data_of.get("software-delivery:pr_prepare");
    let diff = pr
        .and_then(|d| d.get("diff_path"))
        .and_then(Value::as_str)
        .and_then(|p| records::read_tool_file(&scratch.root, p))
        .unwrap_or_default();
    write(&dir.join("file-diff.patch"), &diff)?;

    let tests = match data_of.get("software-delivery:gates") {
        Some(g) => json!({
            "status": if g.get("all_passed") == Some(&Value::Bool(true)) { "passed" } else { "failed" },
            "wu_id": g.get("wu_id"),
            "gates": g.get("results"),
            "baseline": scratch.baseline_test,
        }),
        None => {
            json!({"status": "not_run", "reason": "no gate ran in this run", "baseline": scratch.baseline_test})
        }
    };
    write(&dir.join("test-results.json"), &pretty(&tests))?;

    let approval = match b.approval {
        Some(r) => {
            let status = r.get("status").and_then(Value::as_str).unwrap_or("unknown");
            json!({
                "status": status,
                "approval_id": r.get("approval_id"),
                "type": r.get("type"),
                "subject": r.get("subject"),
                "transitions": [
                    {"status": "pending", "at": r.get("requested_at"), "by": r.get("requester_id")},
                    {"status": status, "at": r.get("decided_at"), "by": r.get("reviewer_id"), "reason": r.get("decision_reason")},
                ],
                "record": r,
            })
        }
        None => {
            json!({"status": "not_requested", "reason": "the run ended before any step needed an approval"})
        }
    };
    write(&dir.join("approval.json"), &pretty(&approval))?;

    let summary = match pr
        .and_then(|d| d.get("description_path"))
        .and_then(Value::as_str)
        .and_then(|p| records::read_tool_file(&scratch.root, p))
    {
        Some(text) => text,
        None => blocked_summary(b, &calls),
    };
    write(&dir.join("pr-summary.md"), &summary)?;
    write(
        &dir.join("replay-link.txt"),
        &format!("{}\n", b.replay_link),
    )?;
    Ok(())
}

fn blocked_summary(b: &BundleInputs<'_>, calls: &[records::Call]) -> String {
    let denied: Vec<String> = calls
        .iter()
        .filter(|c| c.result == "denied")
        .map(|c| {
            format!(
                "- `{}` was refused ({}): {}",
                c.tool,
                c.error_code.as_deref().unwrap_or("denied"),
                c.decisions
                    .iter()
                    .filter_map(|d| d.get("reason").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
        .collect();
    let reason = b
        .last
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the turn ended before a pull request was prepared");
    format!(
        "# No pull request: the run was stopped by the rules\n\nRun `{}` ({} mode) asked: {}\n\n{}\n\nThe turn ended: {reason}\n\nNo tool call ran, no file changed, and nothing waits for recovery (cleanup_status `clean`).\n",
        b.run_id,
        b.mode.as_str(),
        b.ask.get("goal").and_then(Value::as_str).unwrap_or(""),
        if denied.is_empty() { "No call was refused.".to_string() } else { denied.join("\n") },
    )
}
