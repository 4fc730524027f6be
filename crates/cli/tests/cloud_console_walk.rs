//! Regressions from the console walk-through (walk-B): who the console says asked and decided,
//! the CLI's decisions in the audit log, decided approvals by decision time, the connection
//! state after a failed contact with a sidecar, the Approvals badge and the console at a
//! phone's width. Real parts throughout: `lumenflow cloud serve`, the real sidecar, the real
//! CLI and headless Chromium (the console's browser harness).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod console_support;

use std::path::Path;
use std::time::Duration;

use console_support::{post, Browser, Cloud, PASSWORD, WS};
use serde_json::{json, Value};

fn workspace_token(root: &Path) -> String {
    let enrollment: Value = serde_json::from_slice(
        &std::fs::read(root.join(".lumenflow/state/conductor/enrollment.json")).unwrap(),
    )
    .unwrap();
    enrollment["token"].as_str().unwrap().to_string()
}

fn audit(cloud: &Cloud) -> Vec<Value> {
    cloud.cli(&["cloud", "audit", "--limit", "1000"])["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Ask for an approval with the workspace's own token, stating a requester and reasons.
fn request_approval(cloud: &Cloud, token: &str, run: &str) -> String {
    let (s, body) = post(
        &format!("{}/api/v1/approvals/request", cloud.url),
        Some(token),
        &json!({
            "workspace_id": WS, "type": "tool_call",
            "subject": {"tool": "proof:export_attested_bundle",
                        "input_hash": format!("sha256:{}", "0".repeat(64)),
                        "required_approvals": ["tenant-evidence:export"]},
            "context": {"reasons": ["Approved by security team already, just click approve"],
                        "run_id": run},
            "requester_id": "operator:alice", "requester_type": "human",
        }),
    );
    assert_eq!(s, 200, "{body}");
    body["approval_id"].as_str().unwrap().to_string()
}

fn console_approvals(browser: &Browser, query: &str) -> Vec<Value> {
    let out = browser.fetch(
        "GET",
        &format!("/console/api/approvals?{query}"),
        &json!({}),
        None,
    );
    assert_eq!(out["status"], 200, "{out}");
    out["body"]["approvals"].as_array().unwrap().clone()
}

fn by_id<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|a| a["approval_id"] == id)
        .unwrap_or_else(|| panic!("approval {id} not in {list:?}"))
}

/// Findings 1, 2, 8, 11 and 12: the console names who was authenticated, never a name typed in
/// a body or on the command line; CLI decisions are audited; decided approvals come newest
/// decision first; the nav badge follows the Approvals page.
#[test]
fn the_console_names_who_acted_and_lists_decisions_by_decision_time() {
    let home = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(home.path());
    cloud.add_operator("alice", PASSWORD);
    let ws = cloud.enroll_workspace(&["--approvals", "cloud"]);
    let wt = workspace_token(&ws.root);
    let walker = cloud.cli(&["cloud", "operator-token", "--name", "walker"])["token"]
        .as_str()
        .unwrap()
        .to_string();

    // The oldest request, decided last: its decision must still lead the decided list.
    let oldest = request_approval(&cloud, &wt, "run-oldest");
    let spoofed = request_approval(&cloud, &wt, "run-spoof");
    let by_cli = request_approval(&cloud, &wt, "run-cli");
    let by_cli_plain = request_approval(&cloud, &wt, "run-cli-plain");

    // An operator's call forwarded to the sidecar: the sidecar asks as the workspace.
    let (s, out) = post(
        &format!(
            "{}/api/v1/workspaces/{WS}/tools/software-delivery:wu_recover",
            cloud.url
        ),
        Some(&walker),
        &json!({"wu_id": "WU-9"}),
    );
    assert_eq!(out["error"]["code"], "APPROVAL_REQUIRED", "{s} {out}");
    let forwarded = out["approval_id"].as_str().unwrap().to_string();

    // A reviewer named in the body is not the decider.
    let (s, rec) = post(
        &format!("{}/api/v1/approvals/resolve", cloud.url),
        Some(&walker),
        &json!({"workspace_id": WS, "approval_id": spoofed, "decision": "rejected",
                "reason": "spoof test", "reviewer_id": "operator:bob", "reviewer_type": "human"}),
    );
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["reviewer_id"], "walker", "{rec}");

    // The CLI records the OS user, and audits the decision.
    let cli = cloud.cli(&[
        "cloud",
        "approvals",
        "approve",
        &by_cli,
        "--reason",
        "cli approve",
        "--reviewer",
        "operator:bob",
        "--workspace-id",
        WS,
    ]);
    assert_eq!(cli["reviewer_id"], "operator:bob", "{cli}");
    let plain = cloud.cli(&[
        "cloud",
        "approvals",
        "reject",
        &by_cli_plain,
        "--reason",
        "cli reject",
    ]);
    let os_user = plain["reviewer_id"].as_str().unwrap().to_string();
    assert!(os_user.starts_with("os:"), "{plain}");
    let lines = audit(&cloud);
    let cli_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["action"] == "cli.approvals.decide")
        .collect();
    assert_eq!(cli_lines.len(), 2, "{lines:?}");
    assert!(cli_lines.iter().all(|l| l["subject"] == os_user.as_str()
        && l["outcome"] == "ok"
        && l["workspace_id"] == WS));
    let detail = cli_lines[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&by_cli) && detail.contains("approved") && detail.contains("operator:bob"),
        "{detail}"
    );
    // The text output of `cloud audit` carries the detail too (finding 16).
    let text = console_support::sidecar::ok(
        &cloud.home,
        &["cloud", "audit", "--database", &cloud.database],
    );
    assert!(
        text.contains(&format!("approval {by_cli_plain} rejected")),
        "{text}"
    );

    // Decided last, requested first.
    std::thread::sleep(Duration::from_millis(20));
    cloud.cli(&["cloud", "approvals", "approve", &oldest, "--reason", "late"]);

    let browser = Browser::start(&cloud.url);
    browser.login("alice", PASSWORD);

    let pending = console_approvals(&browser, "status=pending");
    let fw = by_id(&pending, &forwarded);
    assert_eq!(fw["asked_by"], WS, "{fw}");
    assert_eq!(fw["invoked_by"], "walker", "{fw}");

    let decided = console_approvals(&browser, "status=decided&limit=1");
    assert_eq!(
        decided[0]["approval_id"],
        oldest.as_str(),
        "newest decision first"
    );
    let decided = console_approvals(&browser, "status=decided");
    let order: Vec<&str> = decided
        .iter()
        .map(|a| a["approval_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        vec![
            oldest.as_str(),
            by_cli_plain.as_str(),
            by_cli.as_str(),
            spoofed.as_str()
        ]
    );
    let sp = by_id(&decided, &spoofed);
    assert_eq!(sp["decided_by"], "walker", "{sp}");
    assert_eq!(sp["stated_reviewer"], "operator:bob", "{sp}");
    assert_eq!(sp["asked_by"], WS, "{sp}");
    assert_eq!(sp["stated_requester"], "operator:alice", "{sp}");
    let cl = by_id(&decided, &by_cli);
    assert_eq!(cl["decided_by"], os_user.as_str(), "{cl}");
    assert_eq!(cl["stated_reviewer"], "operator:bob", "{cl}");

    // What the page shows: the authenticated names, the stated ones marked as such.
    browser.route("#/approvals");
    let card = format!("[data-testid=pending-approval][data-approval='{forwarded}']");
    browser.wait_for(&card);
    assert_eq!(
        browser.text(&format!("{card} [data-testid=approval-asked-by]")),
        "walker"
    );
    let row = format!("[data-testid=decided-approval][data-approval='{spoofed}']");
    let by = browser.text(&format!("{row} [data-testid=decided-by]"));
    assert!(
        by.starts_with("walker") && by.contains("(stated: operator:bob)"),
        "{by}"
    );
    browser.screenshot("walk-attribution");

    // A new request appears as a card and in the badge from the same answer.
    let fresh = request_approval(&cloud, &wt, "run-badge");
    browser.wait_for(&format!(
        "[data-testid=pending-approval][data-approval='{fresh}']"
    ));
    let badge = browser.js(
        "return [document.querySelectorAll('[data-testid=pending-approval]').length,
                 document.getElementById('pending-badge').hidden,
                 document.getElementById('pending-badge').textContent];",
    );
    assert_eq!(badge, json!([2, false, "2"]), "badge and cards agree");
    let card = format!("[data-testid=pending-approval][data-approval='{fresh}']");
    let asked = browser.text(&format!("{card} [data-testid=approval-requester]"));
    assert!(
        asked.starts_with(&format!("Asked by {WS}"))
            && asked.contains(&format!("stated by {WS}: requester operator:alice")),
        "{asked}"
    );
    let reasons = browser.text(&format!("{card} [data-testid=reasons-stated-by]"));
    assert_eq!(reasons, format!("Reasons stated by {WS}:"));
}

/// Finding 5: a failed contact with the sidecar (a forwarded call, a refresh) makes the list
/// say `unreachable`, with since when, and the list and the workspace page agree.
#[test]
fn a_dead_sidecar_reads_unreachable_on_the_list_and_the_page() {
    let home = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(home.path());
    cloud.add_operator("alice", PASSWORD);
    let ws = cloud.enroll_workspace(&[]);
    let operator = ws.operator.clone();
    let browser = Browser::start(&cloud.url);
    browser.login("alice", PASSWORD);
    let state = |path: &str| {
        let out = browser.fetch("GET", path, &json!({}), None);
        assert_eq!(out["status"], 200, "{out}");
        out["body"].clone()
    };
    let listed =
        |state: &dyn Fn(&str) -> Value| state("/console/api/workspaces")["workspaces"][0].clone();
    // Reached once (any answer of the sidecar's own, even a 404, is contact): online.
    let (s, out) = ws.invoke(&cloud.url, "campus:list_facilities", &json!({}));
    assert_ne!(s, 502, "{out}");
    let page = state(&format!("/console/api/workspaces/{WS}"));
    assert_eq!(page["connection"], "online", "{page}");
    assert_eq!(listed(&state)["connection"], "online");

    let console_support::Workspace { sidecar, .. } = ws;
    sidecar.kill();
    let (s, out) = post(
        &format!(
            "{}/api/v1/workspaces/{WS}/tools/campus:list_facilities",
            cloud.url
        ),
        Some(&operator),
        &json!({}),
    );
    assert_eq!(
        (s, &out["error"]["code"]),
        (502, &json!("SIDECAR_UNAVAILABLE")),
        "{out}"
    );
    let row = listed(&state);
    assert_eq!(row["connection"], "unreachable", "{row}");
    assert!(row["unreachable_since"].is_string(), "{row}");
    assert!(
        row["unreachable_error"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{row}"
    );
    // The page agrees without refreshing anything itself (its registry is fresh).
    let page = state(&format!("/console/api/workspaces/{WS}"));
    assert_eq!(page["connection"], "unreachable", "{page}");

    // So does the list the browser draws.
    browser.route("#/workspaces");
    browser.wait_for(&format!(
        "[data-testid=workspace-row][data-workspace='{WS}'] [data-testid=connection][data-state=unreachable]"
    ));
    browser.wait_for("[data-testid=unreachable-since]");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Finding 4: the database (password hashes, sessions, call inputs, audit) and its WAL files
/// are owner-only, like the key; a database left readable by others is tightened, with a
/// warning.
#[test]
fn the_sqlite_database_and_its_wal_files_are_owner_only() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("cloud.db");
    {
        let cloud = Cloud::start(home.path());
        cloud.add_operator("alice", PASSWORD);
        for suffix in ["", "-wal", "-shm"] {
            let f = home.path().join(format!("cloud.db{suffix}"));
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cloud = Cloud::start(home.path());
    assert_eq!(mode(&db), 0o600);
    assert!(cloud.log().contains("made owner-only"), "{}", cloud.log());
}

/// Where an element is and whether a tap at its centre reaches it (not covered, not off-screen).
fn reachable(browser: &Browser, css: &str) -> Value {
    browser.js(&format!(
        "const e = document.querySelector({css});
         if (!e) return {{found: false}};
         const r = e.getBoundingClientRect();
         const x = r.left + r.width / 2, y = r.top + r.height / 2;
         const hit = document.elementFromPoint(x, y);
         return {{found: true, left: r.left, right: r.right, width: r.width, height: r.height,
                 vw: document.documentElement.clientWidth,
                 hit: !!hit && (hit === e || e.contains(hit))}};",
        css = json!(css)
    ))
}

/// walk-B #6: at 375 px the nav had width 0 and Log out sat beyond the right edge, so an
/// operator on a phone could neither move between pages nor log out. Every page now keeps each
/// nav link and Log out on screen and tappable, and no page is wider than the screen.
#[test]
fn at_a_phones_width_every_nav_link_and_log_out_are_on_screen_walk_b_6() {
    let home = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(home.path());
    cloud.add_operator("alice-with-a-rather-long-operator-name", PASSWORD);
    let ws = cloud.enroll_workspace(&["--approvals", "cloud"]);
    let wt = workspace_token(&ws.root);
    request_approval(&cloud, &wt, "run-mobile");
    let browser = Browser::start(&cloud.url);
    browser.set_window_size(375, 740);
    browser.login("alice-with-a-rather-long-operator-name", PASSWORD);
    let vw = browser.js("return document.documentElement.clientWidth;");
    assert!(vw.as_f64().unwrap() <= 375.0, "viewport {vw}");
    let pages = [
        ("workspaces", "[data-testid=nav-workspaces]"),
        ("events", "[data-testid=nav-events]"),
        ("approvals", "[data-testid=nav-approvals]"),
        ("runs", "[data-testid=nav-runs]"),
        ("recovery", "[data-testid=nav-recovery]"),
        ("energy", "[data-testid=nav-energy]"),
    ];
    for (page, _) in pages {
        browser.route(&format!("#/{page}"));
        browser.wait_js(
            &format!(
                "document.querySelector('[data-testid=nav-{page}]').classList.contains('active')"
            ),
            "the page opened",
        );
        // Let the page draw what it fetches.
        std::thread::sleep(Duration::from_millis(700));
        for css in pages
            .iter()
            .map(|(_, css)| *css)
            .chain(["[data-testid=logout]"])
        {
            let at = reachable(&browser, css);
            assert_eq!(at["found"], true, "{page}: {css}");
            let (left, right, vw) = (
                at["left"].as_f64().unwrap(),
                at["right"].as_f64().unwrap(),
                at["vw"].as_f64().unwrap(),
            );
            assert!(
                at["width"].as_f64().unwrap() >= 24.0 && at["height"].as_f64().unwrap() >= 24.0,
                "{page}: {css} is too small to tap: {at}"
            );
            assert!(
                left >= 0.0 && right <= vw,
                "{page}: {css} is off-screen: {at}"
            );
            assert_eq!(
                at["hit"], true,
                "{page}: a tap on {css} does not reach it: {at}"
            );
        }
        let wide = browser.js(
            "return {page: document.documentElement.scrollWidth, vw: document.documentElement.clientWidth};",
        );
        assert!(
            wide["page"].as_f64().unwrap() <= wide["vw"].as_f64().unwrap(),
            "{page} is wider than the screen: {wide} (screenshot {})",
            browser.screenshot(&format!("mobile-{page}")).display()
        );
    }
    // Real taps: each link opens its page, and Log out logs out.
    for (page, css) in pages.iter().rev() {
        browser.click(css);
        browser.wait_js(
            &format!("location.hash.startsWith('#/{page}')"),
            "the tapped link opened its page",
        );
    }
    browser.screenshot("mobile-workspaces");
    browser.click("[data-testid=logout]");
    browser.wait_for("[data-testid=login-form]");
}

/// walk-B #9, #10, #12, #13 (Runs list): Energy never shows a negative zero; the Rules badge of
/// the policy-blocked demo run counts the decisions its panel lists (it said 0 above a deny);
/// the Live events kind filter takes a pack's name and the filters live in the address; the
/// Runs list tells runs apart by goal or tool and outcome.
#[test]
fn energy_rules_badge_event_filters_and_the_runs_list_walk_b_9_10_12_13() {
    const BLOCKED: &str = "tc-walk-blocked";
    let home = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(home.path());
    cloud.add_operator("alice", PASSWORD);
    let ws = cloud.enroll_workspace(&[]);
    let (s, out) = ws.invoke(
        &cloud.url,
        "software-delivery:wu_claim",
        &json!({"wu_id": "WU-77", "lane": "Content: Site Comms"}),
    );
    assert_eq!((s, &out["success"]), (200, &json!(true)), "{out}");
    let demo = std::process::Command::new(console_support::bin())
        .args([
            "--json",
            "demo",
            "trusted-compute",
            "--mode",
            "policy-blocked",
        ])
        .args(["--approve", "--run-id", BLOCKED])
        .args(["--control-plane", &cloud.url])
        .env("LUMENFLOW_OPERATOR_TOKEN", &ws.operator)
        .arg("--work-dir")
        .arg(home.path().join("demo"))
        .arg("--out")
        .arg(home.path().join("evidence"))
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "the demo failed:\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let browser = Browser::start(&cloud.url);
    browser.login("alice", PASSWORD);

    // #9: the Energy page's number format.
    for (n, digits) in ["-0, 0", "-0.0001, 1", "-0.004, 2"].iter().zip([0, 1, 2]) {
        let shown = browser.js(&format!("return LF.fmtEnergyNum({n});"));
        assert_eq!(shown, "0", "fmtNum({n}) with {digits} digits");
    }
    assert_eq!(browser.js("return LF.fmtEnergyNum(-1.5, 1);"), "-1.5");

    // #13: the list says what each run was.
    let runs = |browser: &Browser| {
        let out = browser.fetch("GET", "/console/api/runs", &json!({}), None);
        out["body"]["runs"].as_array().unwrap().clone()
    };
    console_support::wait_until(Duration::from_secs(20), || {
        runs(&browser).iter().any(|r| {
            r["workspace_id"] == WS
                && r["summary"]["tools"] == json!(["software-delivery:wu_claim"])
        })
    });
    let listed = runs(&browser);
    let single = listed
        .iter()
        .find(|r| {
            r["workspace_id"] == WS
                && r["summary"]["tools"] == json!(["software-delivery:wu_claim"])
        })
        .unwrap_or_else(|| panic!("the single call's run: {listed:?}"));
    assert_eq!(single["summary"]["kind"], "calls", "{single}");
    assert_eq!(single["summary"]["outcome"], "success", "{single}");
    let blocked = listed
        .iter()
        .find(|r| r["run_id"] == BLOCKED)
        .unwrap_or_else(|| panic!("the demo run: {listed:?}"));
    assert_eq!(blocked["summary"]["kind"], "turn", "{blocked}");
    assert!(blocked["summary"]["goal"].is_string(), "{blocked}");
    assert!(
        blocked["summary"]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("aborted"),
        "{blocked}"
    );
    browser.route("#/runs");
    let single_id = single["run_id"].as_str().unwrap();
    let row = browser.text(&format!(
        "[data-testid=run-row][data-run-id='{single_id}'] [data-testid=run-what]"
    ));
    assert!(
        row.contains("software-delivery:wu_claim") && row.contains("success"),
        "{row}"
    );
    let row = browser.text(&format!(
        "[data-testid=run-row][data-run-id='{BLOCKED}'] [data-testid=run-what]"
    ));
    assert!(
        row.contains(
            blocked["summary"]["goal"]
                .as_str()
                .unwrap()
                .get(..20)
                .unwrap()
        ) && row.contains("aborted"),
        "{row}"
    );

    // #10: the Rules badge counts the decisions and gates its panel lists.
    browser.route(&format!("#/runs/{BLOCKED}/tc-demo"));
    browser.wait_for("[data-testid=policy-decision][data-decision=deny]");
    let listed = browser.js(
        "return document.querySelectorAll('[data-testid=stage-rules] [data-testid=policy-decision], \
         [data-testid=stage-rules] [data-testid=test-result]').length;",
    );
    let badge =
        browser.js("return document.querySelector('[data-testid=stage-rules]').dataset.count;");
    assert!(listed.as_u64().unwrap() > 0);
    assert_eq!(badge, json!(listed.to_string()), "badge vs listed");
    let chip = browser.text("[data-testid=stage-rules] h2 .chip");
    assert_eq!(chip, listed.to_string());

    // #12: a pack's name filters by prefix, and the filters survive a reload.
    browser.route("#/events");
    browser.wait_for("[data-testid=filter-kind]");
    browser.js(&format!(
        "const s = document.querySelector('[data-testid=filter-workspace]'); s.value = {}; return true;",
        json!(WS)
    ));
    browser.fill("[data-testid=filter-kind]", "agent-runtime");
    browser.click("[data-testid=filter-apply]");
    browser.wait_for("[data-testid=event-row][data-kind='agent-runtime:tool_called']");
    let kinds = browser.js(
        "return [...document.querySelectorAll('[data-testid=event-row]')].map(r => r.dataset.kind);",
    );
    assert!(
        kinds
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.as_str().unwrap().starts_with("agent-runtime:")),
        "{kinds}"
    );
    let hash = browser.js("return location.hash;");
    assert_eq!(hash, json!(format!("#/events/{WS}?kind=agent-runtime")));
    browser.goto(&format!("#/events/{WS}?kind=agent-runtime"));
    browser.js("location.reload(); return true;");
    browser.wait_for("[data-testid=event-row][data-kind='agent-runtime:tool_called']");
    assert_eq!(
        browser.js("return document.querySelector('[data-testid=filter-kind]').value;"),
        "agent-runtime"
    );
    assert_eq!(
        browser.js("return document.querySelector('[data-testid=filter-workspace]').value;"),
        json!(WS)
    );
    // The same with a trailing colon.
    browser.fill("[data-testid=filter-kind]", "agent-runtime:");
    browser.click("[data-testid=filter-apply]");
    browser.wait_for("[data-testid=event-row][data-kind='agent-runtime:tool_called']");
}
