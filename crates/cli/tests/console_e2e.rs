//! The web console (issue 7) with real parts: `lumenflow cloud serve`, an operator added with the
//! real CLI, the real sidecar enrolled with `--approvals cloud`, and headless Chromium through
//! chromedriver. The browser logs in, sees the workspace and its tools, sees an approval the
//! sidecar asks for appear live, approves it in the dialog, and the sidecar's call completes.
//! A second test checks the session, CSRF and login-limit rules over plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod console_support;

use std::time::Duration;

use console_support::{Browser, Cloud, PASSWORD, WS};
use serde_json::{json, Value};

fn audit_actions(cloud: &Cloud) -> Vec<(String, String, String)> {
    cloud.cli(&["cloud", "audit", "--limit", "1000"])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["subject"].as_str().unwrap_or("").to_string(),
                l["action"].as_str().unwrap_or("").to_string(),
                l["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn operator_logs_in_and_approves_a_waiting_sidecar_call_in_the_browser() {
    let home = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(home.path());
    cloud.add_operator("alice", PASSWORD);
    let ws = cloud.enroll_workspace(&["--approvals", "cloud", "--approval-wait", "60"]);
    let browser = Browser::start(&cloud.url);

    // Login: a wrong password is refused with a visible error, then the right one gets in.
    browser.goto("/");
    browser.wait_for("[data-testid=login-form]");
    browser.screenshot("login");
    browser.fill("[data-testid=login-name]", "alice");
    browser.fill("[data-testid=login-password]", "not the password at all");
    browser.click("[data-testid=login-submit]");
    let error = browser.text("[data-testid=login-error]");
    assert!(error.contains("wrong operator name or password"), "{error}");
    browser.screenshot("login-refused");
    assert!(!browser.exists("[data-testid=nav]:not([hidden])"));
    browser.login("alice", PASSWORD);

    // Workspaces: the enrolled workspace, then its tools from the sidecar's registry.
    browser.route("#/workspaces");
    browser.wait_for(&format!(
        "[data-testid=workspace-row][data-workspace='{WS}']"
    ));
    browser.screenshot("workspaces");
    browser.click(&format!(
        "[data-testid=workspace-row][data-workspace='{WS}'] a"
    ));
    browser.wait_for("[data-testid=tools-table]");
    let claim = browser.text("[data-testid=tool-row][data-tool='software-delivery:wu_claim']");
    assert!(claim.contains("allow"), "{claim}");
    let recover = browser.text("[data-testid=tool-row][data-tool='software-delivery:wu_recover']");
    assert!(recover.contains("approval required"), "{recover}");
    assert_eq!(
        browser.js("return document.querySelector('[data-testid=connection]').dataset.state;"),
        json!("online")
    );
    browser.screenshot("workspace-detail");

    // A claimed work unit, so that recovering it (the call that needs an approval) has work.
    let (s, out) = ws.invoke(
        &cloud.url,
        "software-delivery:wu_claim",
        &json!({"wu_id": "WU-77", "lane": "Content: Site Comms"}),
    );
    assert_eq!((s, &out["success"]), (200, &json!(true)), "{out}");

    // Approvals: the inbox is open and empty; a call that needs an approval starts.
    browser.route("#/approvals");
    browser.wait_for("[data-testid=no-pending]");
    // Set on the page; a reload would drop it, so it proves the approval arrives live.
    browser.js("window.__noReload = true; return true;");
    let input = json!({"wu_id": "WU-77"});
    let waiting = std::thread::spawn({
        let (url, ws_operator) = (cloud.url.clone(), ws.operator.clone());
        let input = input.clone();
        move || {
            console_support::post(
                &format!("{url}/api/v1/workspaces/{WS}/tools/software-delivery:wu_recover"),
                Some(&ws_operator),
                &input,
            )
        }
    });
    let card = "[data-testid=pending-approval][data-tool='software-delivery:wu_recover']";
    browser.wait_for(card);
    assert_eq!(
        browser.js("return window.__noReload === true;"),
        json!(true)
    );
    let shown: Value =
        serde_json::from_str(&browser.text(&format!("{card} [data-testid=approval-input]")))
            .unwrap();
    assert_eq!(shown, input, "the exact input is shown");
    let hash = format!(
        "sha256:{}",
        lumenflow_contracts::canonical_json::canonical_hash(&input)
    );
    assert_eq!(
        browser.text(&format!("{card} [data-testid=approval-input-hash]")),
        hash
    );
    let asked = browser.text(&format!("{card} [data-testid=approval-requester]"));
    // The operator token's subject invoked the call; the sidecar asked as the workspace.
    assert!(
        asked.contains("Asked by operator") && asked.contains(&format!("via {WS}")),
        "who asked: {asked}"
    );
    let expiry = browser.text(&format!("{card} [data-testid=approval-expiry]"));
    assert!(expiry.starts_with("expires in "), "{expiry}");
    browser.screenshot("approvals-pending");

    // Approve in the dialog: a reason is required.
    browser.click(&format!("{card} [data-testid=approve]"));
    browser.wait_for("[data-testid=dialog]");
    browser.click("[data-testid=dialog-confirm]");
    assert!(browser
        .text("[data-testid=dialog-error]")
        .contains("Give a reason"));
    browser.fill("[data-testid=dialog-reason]", "recover WU-77 after review");
    browser.screenshot("approvals-dialog");
    browser.click("[data-testid=dialog-confirm]");
    browser.wait_js(
        "!document.querySelector('[data-testid=dialog]')",
        "the dialog closes",
    );

    // The sidecar's waiting call proceeds and succeeds.
    let (status, out) = waiting.join().unwrap();
    assert_eq!(status, 200, "{out}\n{}\n{}", ws.sidecar.log(), cloud.log());
    assert_eq!(out["success"], true, "{out}");

    // Decided: who and why, and the audit log names the operator.
    let row = "[data-testid=decided-approval]";
    browser.wait_for(row);
    assert_eq!(
        browser.text(&format!("{row} [data-testid=decided-by]")),
        "operator:alice"
    );
    assert_eq!(
        browser.text(&format!("{row} [data-testid=decided-reason]")),
        "recover WU-77 after review"
    );
    assert_eq!(
        browser.text(&format!("{row} [data-testid=decision-status]")),
        "approved"
    );
    browser.wait_for("[data-testid=no-pending]");
    browser.screenshot("approvals-decided");
    let audit = audit_actions(&cloud);
    for (subject, action, outcome) in [
        ("operator:alice", "console.login", "refused"),
        ("operator:alice", "console.login", "ok"),
        ("operator:alice", "console.approvals.decide", "ok"),
    ] {
        assert!(
            audit
                .iter()
                .any(|(s, a, o)| s == subject && a == action && o == outcome),
            "audit lacks {subject} {action} {outcome}: {audit:?}"
        );
    }

    // Live events: the call's events arrive; one opens to its full envelope.
    browser.route("#/events");
    let called = "[data-testid=event-row][data-kind='agent-runtime:tool_called']";
    // The claim's call and the recovery's; the newest (the recovery) is listed first.
    browser.wait_js(
        &format!("document.querySelectorAll(\"{called}\").length >= 2"),
        "both calls' events arrive",
    );
    browser.click(called);
    let envelope: Value =
        serde_json::from_str(&browser.text("[data-testid=event-envelope]")).unwrap();
    assert_eq!(envelope["kind"], "agent-runtime:tool_called");
    assert_eq!(envelope["from"], WS);
    assert_eq!(
        envelope["payload"]["tool_name"],
        "software-delivery:wu_recover"
    );
    assert_eq!(envelope["payload"]["outcome"], "success");
    assert!(envelope["event_id"].is_string(), "{envelope}");
    browser.screenshot("events");

    // Filters: one run's events only, then one kind only (the stream reopens with them).
    let run = envelope["payload"]["run_id"].as_str().unwrap().to_string();
    browser.fill("[data-testid=filter-run]", &run);
    browser.click("[data-testid=filter-apply]");
    browser.wait_js(
        &format!(
            "(() => {{ const rows = [...document.querySelectorAll('[data-testid=event-row]')];
                      return rows.length > 0 && rows.every(r => r.dataset.run === {run:?}); }})()"
        ),
        "only the run's events are listed",
    );
    browser.fill("[data-testid=filter-run]", "");
    browser.fill("[data-testid=filter-kind]", "software-delivery:wu_claimed");
    browser.click("[data-testid=filter-apply]");
    browser.wait_js(
        "(() => { const rows = [...document.querySelectorAll('[data-testid=event-row]')];
                  return rows.length === 1 && rows[0].dataset.kind === 'software-delivery:wu_claimed'; })()",
        "only the kind's events are listed",
    );

    // CSRF: a state-changing request without the token is refused, and the session survives.
    let refused = browser.fetch("POST", "/console/api/logout", &json!({}), None);
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["body"]["error"]["code"], "CSRF_REJECTED");
    let me = browser.fetch("GET", "/console/api/me", &json!({}), None);
    assert_eq!(me["status"], 200, "{me}");
    assert_eq!(me["body"]["operator"], "alice");

    // Logout ends the session: the form is back and the API answers 401.
    browser.click("[data-testid=logout]");
    browser.wait_for("[data-testid=login-form]");
    let me = browser.fetch("GET", "/console/api/me", &json!({}), None);
    assert_eq!(me["status"], 401, "{me}");
    assert_eq!(me["body"]["error"]["code"], "SESSION_REQUIRED");
}

/// One client of the console API over plain HTTP (a cookie jar of one cookie).
struct ApiClient {
    base: String,
    http: reqwest::blocking::Client,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl ApiClient {
    fn new(base: &str) -> ApiClient {
        ApiClient {
            base: base.to_string(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            cookie: None,
            csrf: None,
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", format!("lf_session={c}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Open the live event stream of `WS` with this client's session; the receiver gets the
    /// whole body once the server closes the stream.
    fn open_stream(&self) -> std::sync::mpsc::Receiver<String> {
        use std::io::Read;
        let mut resp = self
            .http
            .get(format!(
                "{}/console/api/events/stream?workspace_id={WS}",
                self.base
            ))
            .header(
                "cookie",
                format!("lf_session={}", self.cookie.as_deref().unwrap()),
            )
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut body = String::new();
            let _ = resp.read_to_string(&mut body);
            let _ = tx.send(body);
        });
        rx
    }

    fn login(&mut self, name: &str, password: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let out = self.send(
            "POST",
            "/console/api/login",
            Some(&json!({"name": name, "password": password})),
            &[],
        );
        if out.0 == 200 {
            let set = out.1["set-cookie"].to_str().unwrap().to_string();
            let value = set
                .strip_prefix("lf_session=")
                .and_then(|r| r.split(';').next())
                .unwrap();
            self.cookie = Some(value.to_string());
            self.csrf = Some(out.2["csrf_token"].as_str().unwrap().to_string());
        }
        out
    }
}

#[test]
fn sessions_csrf_and_the_failed_login_limit() {
    let home = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(home.path());
    cloud.add_operator("bob", PASSWORD);
    cloud.add_operator("carol", PASSWORD);

    // The page and its assets: embedded, typed, under a strict policy.
    let mut anon = ApiClient::new(&cloud.url);
    let (s, h, _) = anon.send("GET", "/", None, &[]);
    assert_eq!(s, 200);
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let (s, h, _) = anon.send("GET", "/console/assets/app.js", None, &[]);
    assert_eq!(s, 200);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let (s, _, _) = anon.send("GET", "/console/assets/..%2Fsession.rs", None, &[]);
    assert_eq!(s, 404);

    // No session: 401 with a code the page recognises.
    let (s, _, body) = anon.send("GET", "/console/api/me", None, &[]);
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("SESSION_REQUIRED"))
    );
    let (s, _, _) = anon.send("GET", "/console/api/workspaces", None, &[]);
    assert_eq!(s, 401);
    anon.cookie = Some("forged-session-id".into());
    let (s, _, _) = anon.send("GET", "/console/api/me", None, &[]);
    assert_eq!(s, 401);

    // Failed logins: five per name and address, then 429 even for the right password; the
    // same address may still log in as someone else.
    let mut bob = ApiClient::new(&cloud.url);
    for _ in 0..5 {
        let (s, _, body) = bob.login("bob", "wrong password 123");
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (401, Some("LOGIN_FAILED"))
        );
    }
    let (s, h, body) = bob.login("bob", PASSWORD);
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("too many failed logins for `bob`"));
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    // An unknown name fails exactly like a wrong password.
    let (s, _, body) = ApiClient::new(&cloud.url).login("nobody", PASSWORD);
    assert_eq!(
        (s, body["error"]["message"].as_str()),
        (401, Some("wrong operator name or password"))
    );

    // A good login: the cookie is HttpOnly, SameSite=Strict, Secure, for the whole site.
    let mut carol = ApiClient::new(&cloud.url);
    let (s, h, body) = carol.login("carol", PASSWORD);
    assert_eq!(s, 200, "{body}");
    let cookie = h["set-cookie"].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert_eq!(body["operator"], "carol");
    let (s, _, me) = carol.send("GET", "/console/api/me", None, &[]);
    assert_eq!((s, me["csrf_token"].as_str()), (200, carol.csrf.as_deref()));

    // CSRF: without the token, with a wrong one, or from another origin: 403; with it, the
    // request reaches the handler (here: an unknown approval, 404).
    let decide = "/console/api/approvals/apr_missing/decide";
    let body = json!({"decision": "approved", "reason": "r"});
    let csrf = carol.csrf.clone().unwrap();
    for headers in [
        vec![],
        vec![("x-csrf-token", "not-the-token")],
        vec![
            ("x-csrf-token", csrf.as_str()),
            ("origin", "http://evil.example"),
        ],
    ] {
        let (s, _, out) = carol.send("POST", decide, Some(&body), &headers);
        assert_eq!(
            (s, out["error"]["code"].as_str()),
            (403, Some("CSRF_REJECTED")),
            "{headers:?}"
        );
    }
    let same_origin = cloud.url.clone();
    let (s, _, out) = carol.send(
        "POST",
        decide,
        Some(&body),
        &[("x-csrf-token", &csrf), ("origin", &same_origin)],
    );
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{out}"
    );

    // Logout (CSRF-checked) ends the session, and with it a live event stream already open.
    let stream = carol.open_stream();
    assert!(
        stream.recv_timeout(Duration::from_millis(2500)).is_err(),
        "the stream stays open while the session stands"
    );
    let (s, _, _) = carol.send("POST", "/console/api/logout", None, &[]);
    assert_eq!(s, 403);
    let (s, h, _) = carol.send(
        "POST",
        "/console/api/logout",
        None,
        &[("x-csrf-token", &csrf)],
    );
    assert_eq!(s, 200);
    assert!(h["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (s, _, _) = carol.send("GET", "/console/api/me", None, &[]);
    assert_eq!(s, 401);
    let ended = stream
        .recv_timeout(Duration::from_secs(10))
        .expect("the open stream closes after logout");
    assert!(ended.contains("event: session_ended"), "{ended}");
    assert!(ended.contains("SESSION_REQUIRED"), "{ended}");

    // Removing an operator ends its live sessions at once, open streams included.
    let mut again = ApiClient::new(&cloud.url);
    assert_eq!(again.login("carol", PASSWORD).0, 200);
    let stream = again.open_stream();
    let removed = cloud.cli(&["cloud", "operator", "remove", "carol"]);
    assert_eq!(removed["sessions_ended"], 1, "{removed}");
    let (s, _, _) = again.send("GET", "/console/api/me", None, &[]);
    assert_eq!(s, 401);
    let ended = stream
        .recv_timeout(Duration::from_secs(10))
        .expect("the open stream closes when its operator is removed");
    assert!(ended.contains("event: session_ended"), "{ended}");
    let listed = cloud.cli(&["cloud", "operator", "list"]);
    let names: Vec<&str> = listed["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob"]);

    // Every login, failure and logout is an audit line.
    let audit = audit_actions(&cloud);
    let count = |subject: &str, action: &str, outcome: &str| {
        audit
            .iter()
            .filter(|(s, a, o)| s == subject && a == action && o == outcome)
            .count()
    };
    assert_eq!(
        count("operator:bob", "console.login", "refused"),
        6,
        "{audit:?}"
    );
    assert_eq!(
        count("operator:carol", "console.login", "ok"),
        2,
        "{audit:?}"
    );
    assert_eq!(
        count("operator:carol", "console.logout", "ok"),
        1,
        "{audit:?}"
    );
}
