/* Runs and replay: the recent runs, and one run as a timeline Ask -> Dispatch -> Rules ->
   Tool calls -> Approvals -> Proof, from GET /console/api/runs/<id> (the control plane's replay
   plus what the run's evidence bundle adds). Plain script, no modules, no build step. */
(function () {
  "use strict";
  var LF = window.LF;
  var el = LF.el;

  var STAGES = [
    ["ask", "Ask"],
    ["dispatch", "Dispatch"],
    ["rules", "Rules"],
    ["tool_calls", "Tool calls"],
    ["approvals", "Approvals"],
    ["proof", "Proof"],
    ["other", "Other events"]
  ];

  function text(v) {
    if (v === null || v === undefined) return "";
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function chip(label, tone, testid) {
    var attrs = { "class": "chip chip-" + tone };
    if (testid) attrs["data-testid"] = testid;
    return el("span", attrs, label);
  }

  function toneOf(status) {
    var s = String(status || "").toLowerCase();
    if (["allow", "approved", "passed", "success", "verified", "succeeded", "delivered"].indexOf(s) >= 0) return "ok";
    if (["deny", "denied", "rejected", "failed", "failure", "error", "refused"].indexOf(s) >= 0) return "bad";
    if (["pending", "approval_required", "not_configured", "not_run", "skipped"].indexOf(s) >= 0) return "warn";
    return "info";
  }

  function table(headers, rows, testid) {
    var thead = el("thead", {}, el("tr", {}, headers.map(function (h) { return el("th", {}, h); })));
    var attrs = { "class": "data" };
    if (testid) attrs["data-testid"] = testid;
    return el("div", { "class": "table-wrap" }, el("table", attrs, thead, el("tbody", {}, rows)));
  }

  function empty(message, testid) {
    var attrs = { "class": "empty" };
    if (testid) attrs["data-testid"] = testid;
    return el("div", attrs, message);
  }

  /* ---------------------------------------------------------------- runs list */

  /* What a run was, from its stored events: a turn's goal, or the tool(s) called, and how it
     ended. Goals are shown as text (never markup) and shortened. */
  function whatCell(summary) {
    if (!summary) return el("span", { "class": "muted" }, "—");
    var what;
    if (summary.goal) {
      var goal = String(summary.goal);
      what = el("span", { "data-testid": "run-goal", title: goal }, goal.length > 80 ? goal.slice(0, 79) + "…" : goal);
    } else if (summary.tools && summary.tools.length) {
      var tools = summary.tools.slice(0, 3).join(", ") + (summary.tools.length > 3 ? ", …" : "");
      what = el("span", { "class": "mono", "data-testid": "run-tools" }, tools);
    } else {
      what = el("span", { "class": "muted" }, summary.kind === "turn" ? "agent turn" : "tool calls");
    }
    var outcome = summary.outcome ? chip(String(summary.outcome), toneOf(String(summary.outcome).split(" ")[0]), "run-outcome") : null;
    var calls = summary.kind === "turn" && summary.calls ? el("span", { "class": "muted" }, " · " + summary.calls + " calls") : null;
    return el("div", {}, what, " ", outcome, calls);
  }

  function renderList(root) {
    var input = el("input", { type: "text", placeholder: "all workspaces", "data-testid": "runs-workspace-filter" });
    var apply = el("button", { "class": "btn", type: "button", "data-testid": "runs-filter-apply" }, "Filter");
    var body = el("div", { "data-testid": "runs-body" }, empty("Loading runs…"));
    root.appendChild(el("div", { "class": "page-head" },
      el("div", {}, el("h1", {}, "Runs"),
        el("p", { "class": "muted" }, "Runs the control plane holds events, sealed receipts or an evidence bundle for, newest first."))));
    root.appendChild(el("div", { "class": "toolbar" }, el("label", {}, "Workspace", input), apply));
    root.appendChild(body);

    function load() {
      var ws = input.value.trim();
      var path = "/console/api/runs" + (ws ? "?workspace_id=" + encodeURIComponent(ws) : "");
      LF.api(path).then(function (doc) {
        body.textContent = "";
        if (!doc.runs.length) {
          body.appendChild(empty("No runs yet.", "runs-empty"));
          return;
        }
        var rows = doc.runs.map(function (r) {
          var href = "#/runs/" + encodeURIComponent(r.run_id) + "/" + encodeURIComponent(r.workspace_id);
          var bundle = r.bundle ? bundleCell(r.bundle) : el("span", { "class": "muted" }, "no bundle");
          var tr = el("tr", { "class": "clickable", "data-testid": "run-row", "data-run-id": r.run_id },
            el("td", {}, el("a", { href: href, "class": "mono", "data-testid": "run-link" }, r.run_id)),
            el("td", { "data-testid": "run-what" }, whatCell(r.summary)),
            el("td", {}, r.workspace_id),
            el("td", {}, LF.fmtTime(r.first_at)),
            el("td", {}, LF.fmtTime(r.last_at)),
            el("td", {}, bundle));
          tr.addEventListener("click", function (ev) {
            if (ev.target.tagName !== "A") location.hash = href;
          });
          return tr;
        });
        body.appendChild(table(["Run", "What", "Workspace", "First seen", "Last seen", "Bundle"], rows, "runs-table"));
      }).catch(function (e) {
        body.textContent = "";
        body.appendChild(el("div", { "class": "form-error", role: "alert" }, e.message));
      });
    }
    apply.addEventListener("click", load);
    input.addEventListener("keydown", function (ev) { if (ev.key === "Enter") load(); });
    load();
  }

  /* A bundle signed by another key than the workspace's pinned signer is never shown as a plain
     "verified" (walk-G F3): the key came with the bundle, so anyone can make one that verifies. */
  function bundleStatus(b) {
    if (!b.passed) return "failed";
    return b.signer_changed ? "signer-changed" : "verified";
  }

  function bundleCell(b) {
    var status = bundleStatus(b);
    var cell = el("span", { "data-testid": "run-bundle", "data-status": status },
      chip(b.passed ? "verified" : "failed", b.passed ? "ok" : "bad"));
    if (b.signer_changed) {
      cell.appendChild(document.createTextNode(" "));
      cell.appendChild(el("span", {
        "data-testid": "run-signer-changed",
        title: "signed by " + b.signer_key_id + ", but the workspace's pinned signer is " + b.pinned_signer_key_id
      }, chip("SIGNER CHANGED", "bad")));
    }
    return cell;
  }

  /* The warning a signer change gets on the run page: both keys, and how an operator accepts one. */
  function signerChangedBlock(b) {
    return el("div", { "class": "form-error", role: "alert", "data-testid": "bundle-signer-changed" },
      el("strong", {}, "Signer changed. "),
      "This bundle is signed by ",
      el("span", { "class": "mono", "data-testid": "bundle-new-signer" }, text(b.signer_key_id)),
      ", not by the workspace's pinned signer ",
      el("span", { "class": "mono", "data-testid": "bundle-pinned-signer" }, text(b.pinned_signer_key_id)),
      ". Anyone can sign a bundle with a key of their own: treat this evidence as unproven until " +
      "the workspace confirms the new key; an operator accepts it with `lumenflow cloud signer pin " +
      "--workspace-id " + b.workspace_id + " --key-id " + b.signer_key_id + " --reason ...`.");
  }

  /* ---------------------------------------------------------------- one run */

  function summary(payload) {
    if (!payload || typeof payload !== "object") return "";
    var parts = [];
    Object.keys(payload).forEach(function (k) {
      var v = payload[k];
      if (k === "run_id" || v === null || typeof v === "object") return;
      if (parts.length < 5) parts.push(k + "=" + String(v).slice(0, 80));
    });
    return parts.join("  ");
  }

  /* A table of stage items that are events; a click shows the event's envelope. */
  function eventsTable(items) {
    var events = items.filter(function (i) { return i.source === "event"; });
    if (!events.length) return null;
    var rows = [];
    events.forEach(function (item) {
      var e = item.event || {};
      var detail = el("tr", { "data-testid": "event-envelope-row" },
        el("td", { colspan: "3" }, el("pre", { "class": "json", "data-testid": "event-envelope" },
          JSON.stringify(e, null, 2))));
      detail.hidden = true;
      var tr = el("tr", { "class": "clickable", "data-testid": "event-row", "data-kind": e.kind || "" },
        el("td", {}, LF.fmtTime(e.timestamp)),
        el("td", { "class": "mono" }, e.kind || ""),
        el("td", { "class": "mono" }, summary(e.payload)));
      tr.addEventListener("click", function () { detail.hidden = !detail.hidden; });
      rows.push(tr, detail);
    });
    return table(["Time", "Kind", "Payload"], rows, "stage-events");
  }

  function askBlock(ask) {
    if (!ask) return empty("No Ask was recorded for this run.", "ask-empty");
    var from = ask.from === "bundle"
      ? el("span", { "data-testid": "ask-verification", "data-verified": String(!!ask.verified) },
          "from the run's bundle (ask.json, ",
          ask.verified ? chip("verified", "ok") : chip("NOT verified", "bad"),
          ask.verified ? ")" : ": " + text(ask.not_verified_because) + ")")
      : "from the turn request the runtime reported (agent-runtime:turn_started)";
    var facts = el("dl", { "class": "facts" },
      el("dt", {}, "Goal"), el("dd", { "data-testid": "ask-goal" }, text(ask.goal)),
      el("dt", {}, "Asked by"), el("dd", { "data-testid": "ask-by" }, text(ask.submitted_by)),
      el("dt", {}, "At"), el("dd", {}, LF.fmtTime(ask.submitted_at)),
      el("dt", {}, "Dispatched to"), el("dd", { "class": "mono" }, text(ask.tool) + (ask.turn_id ? " (turn " + ask.turn_id + ")" : "")));
    if (ask.plan && ask.plan.length) {
      facts.appendChild(el("dt", {}, "Plan"));
      facts.appendChild(el("dd", { "class": "mono" }, ask.plan.join(" → ")));
    }
    return el("div", { "data-testid": "ask" }, facts, el("p", { "class": "muted" }, from));
  }

  function policyBlock(decisions) {
    if (!decisions || !decisions.length) return null;
    var rows = decisions.map(function (d) {
      return el("tr", { "data-testid": "policy-decision", "data-decision": d.decision || "" },
        el("td", {}, chip(text(d.decision), toneOf(d.decision))),
        el("td", { "class": "mono" }, text(d.tool)),
        el("td", { "class": "mono" }, text(d.policy_id)),
        el("td", {}, text(d.reason)));
    });
    return el("div", {}, el("h3", {}, "Policy decisions"),
      table(["Decision", "Tool", "Rule", "Reason"], rows, "policy-decisions"));
  }

  function testsBlock(results) {
    if (!results || !results.status) return null;
    var head = el("h3", {}, "Test results (gates) ", chip(text(results.status), toneOf(results.status), "tests-status"));
    var gates = Array.isArray(results.gates) ? results.gates : [];
    if (!gates.length) return el("div", {}, head, el("p", { "class": "muted" }, text(results.reason || "No gate ran.")));
    var rows = gates.map(function (g) {
      return el("tr", { "data-testid": "test-result", "data-status": g.status || "" },
        el("td", { "class": "mono" }, text(g.name)),
        el("td", {}, chip(text(g.status), toneOf(g.status))),
        el("td", { "class": "num" }, g.duration_ms === undefined ? "" : g.duration_ms + " ms"),
        el("td", { "class": "num" }, text(g.exit_code)),
        el("td", { "class": "mono" }, text(g.command || g.summary)));
    });
    return el("div", {}, head, table(["Gate", "Status", "Duration", "Exit", "Command"], rows, "test-results"));
  }

  function diffBlock(diff) {
    if (!diff) return null;
    var pre = el("pre", { "class": "json", "data-testid": "diff" });
    diff.split("\n").forEach(function (line) {
      var span = el("span", {}, line + "\n");
      if (line.indexOf("+") === 0 && line.indexOf("+++") !== 0) span.style.color = "#15803d";
      else if (line.indexOf("-") === 0 && line.indexOf("---") !== 0) span.style.color = "#b91c1c";
      else if (line.indexOf("@@") === 0) span.style.color = "#1d4ed8";
      pre.appendChild(span);
    });
    return el("div", {}, el("h3", {}, "The diff"), pre);
  }

  function toolCallsBlock(items) {
    var calls = items.filter(function (i) {
      return i.source === "event" && i.event && /tool_call/.test(i.event.kind || "");
    });
    if (!calls.length) return null;
    var rows = calls.map(function (i) {
      var p = i.event.payload || {};
      return el("tr", { "data-testid": "tool-call" },
        el("td", {}, LF.fmtTime(i.event.timestamp)),
        el("td", { "class": "mono" }, text(p.tool_name)),
        el("td", {}, chip(text(p.outcome), toneOf(p.outcome))),
        el("td", { "class": "mono" }, text(p.error_code)),
        el("td", { "class": "hash" }, text(p.receipt_id)));
    });
    return el("div", {}, el("h3", {}, "Tool calls"),
      table(["Time", "Tool", "Outcome", "Code", "Receipt"], rows, "tool-calls"));
  }

  function approvalsBlock(items) {
    var approvals = items.filter(function (i) { return i.source === "approval"; });
    if (!approvals.length) return null;
    var rows = approvals.map(function (i) {
      var a = i.approval || {};
      var subject = a.subject || {};
      return el("tr", { "data-testid": "approval-item", "data-status": a.status || "" },
        el("td", { "class": "mono" }, text(subject.tool || a.type)),
        el("td", {}, chip(text(a.status), toneOf(a.status))),
        el("td", {}, text(a.requester_id) + " · " + LF.fmtTime(a.requested_at)),
        el("td", { "data-testid": "approval-reviewer" }, text(a.reviewer_id)),
        el("td", { "data-testid": "approval-reason" }, text(a.decision_reason)),
        el("td", {}, LF.fmtTime(a.decided_at)));
    });
    return table(["Tool", "Status", "Asked by", "Decided by", "Why", "Decided at"], rows, "approvals");
  }

  function proofBlock(bundle, items) {
    var out = el("div", { "data-testid": "proof" });
    if (!bundle) {
      out.appendChild(el("p", { "data-testid": "bundle-status", "data-status": "missing" },
        chip("no bundle", "warn"), " The workspace has not uploaded this run's evidence bundle."));
    } else {
      var status = el("p", { "data-testid": "bundle-status", "data-status": bundleStatus(bundle) },
        bundle.passed && bundle.signer_changed
          ? chip("signer changed", "bad")
          : chip(bundle.passed ? "verified" : "failed", bundle.passed ? "ok" : "bad"), " ");
      if (bundle.passed) {
        status.appendChild(document.createTextNode("Signed by "));
        status.appendChild(el("span", { "class": "mono", "data-testid": "bundle-signer" }, text(bundle.signer_key_id)));
        status.appendChild(document.createTextNode(bundle.signer_changed
          ? " (all four checks passed, but with a key other than the workspace's pinned signer)."
          : " (the workspace's pinned signer; all four checks passed)."));
      } else {
        status.appendChild(el("span", { "data-testid": "bundle-failed-checks" },
          "Failed check" + (bundle.failed_checks.length > 1 ? "s: " : ": ") + bundle.failed_checks.join(", ")));
      }
      if (bundle.signer_changed) out.appendChild(signerChangedBlock(bundle));
      out.appendChild(status);
      var checks = (bundle.checks || []).map(function (c) {
        return el("tr", { "data-testid": "bundle-check", "data-check": c.name, "data-passed": String(c.passed) },
          el("td", { "class": "mono" }, c.name),
          el("td", {}, chip(c.passed ? "passed" : "failed", c.passed ? "ok" : "bad")),
          el("td", {}, text(c.detail)));
      });
      out.appendChild(table(["Check", "Result", "Detail"], checks, "bundle-checks"));
      out.appendChild(el("p", {},
        el("a", { "class": "btn btn-primary", href: bundle.download, download: "", "data-testid": "bundle-download" },
          "Download bundle (.tar)"),
        el("span", { "class": "muted" }, "  " + bundle.files.length + " files, " + bundle.total_bytes +
          " bytes, uploaded by " + bundle.uploaded_by + " " + LF.fmtTime(bundle.uploaded_at))));
    }
    var receipts = items.filter(function (i) { return i.source === "sealed_receipt"; });
    if (receipts.length) {
      var rows = receipts.map(function (r) {
        return el("tr", { "data-testid": "sealed-receipt" },
          el("td", { "class": "hash" }, text(r.receipt_id)),
          el("td", { "class": "hash" }, text(r.seal && r.seal.key_id)),
          el("td", {}, LF.fmtTime(r.seal && r.seal.sealed_at)));
      });
      out.appendChild(el("h3", {}, "Sealed by the control plane"));
      out.appendChild(table(["Receipt", "Sealed by", "At"], rows, "sealed-receipts"));
    }
    return out;
  }

  /* What a stage's badge counts: what its panel lists. The Rules panel lists the policy
     decisions and the gates (from the bundle, or the gate events), which a run blocked by policy
     has although it has no rules *events*; a badge of 0 above a deny misread as "no rules ran".
     Other stages list their items. */
  function stageCount(name, stage, doc) {
    var events = stage ? stage.count : 0;
    if (name !== "rules") return events;
    var decisions = (doc.policy_decisions || []).length;
    var gates = doc.test_results && Array.isArray(doc.test_results.gates) ? doc.test_results.gates.length : 0;
    return decisions + gates || events;
  }
  LF.runStageCount = stageCount;

  function stageBlocks(name, items, doc) {
    switch (name) {
      case "ask": return [askBlock(doc.ask)];
      case "rules": return [policyBlock(doc.policy_decisions), testsBlock(doc.test_results)];
      case "tool_calls": return [toolCallsBlock(items), diffBlock(doc.diff)];
      case "approvals": return [approvalsBlock(items)];
      case "proof": return [proofBlock(doc.bundle, items)];
      default: return [];
    }
  }

  function renderRun(root, runId, ws) {
    var back = el("a", { href: "#/runs", "data-testid": "runs-back" }, "← all runs");
    var body = el("div", { "data-testid": "run-body" }, empty("Loading the replay…"));
    root.appendChild(el("div", { "class": "page-head" },
      el("div", {}, back, el("h1", { "class": "mono", "data-testid": "run-title" }, runId),
        el("p", { "class": "muted" }, "Ask → Dispatch → Rules → Tool calls → Approvals → Proof"))));
    root.appendChild(body);
    var path = "/console/api/runs/" + encodeURIComponent(runId) + (ws ? "?workspace_id=" + encodeURIComponent(ws) : "");
    LF.api(path).then(function (doc) {
      body.textContent = "";
      var byName = {};
      (doc.stages || []).forEach(function (s) { byName[s.stage] = s; });
      var timeline = el("ol", { "data-testid": "timeline" });
      Object.assign(timeline.style, { listStyle: "none", padding: "0", margin: "0", borderLeft: "3px solid #dfe4eb" });
      STAGES.forEach(function (pair) {
        var name = pair[0];
        var stage = byName[name];
        if (!stage && name === "other") return;
        var items = stage ? stage.items : [];
        var blocks = stageBlocks(name, items, doc).filter(Boolean);
        var events = eventsTable(items);
        if (events) blocks.push(el("details", {}, el("summary", {}, "Events of this stage (" +
          items.filter(function (i) { return i.source === "event"; }).length + ")"), events));
        if (!blocks.length) blocks.push(empty("Nothing recorded in this stage."));
        var count = stageCount(name, stage, doc);
        var title = el("h2", {}, pair[1] + " ", chip(String(count), count ? "info" : "warn"));
        title.style.marginTop = "0";
        var li = el("li", { "class": "panel", "data-testid": "stage-" + name, "data-count": String(count) }, title);
        Object.assign(li.style, { marginLeft: "14px", marginBottom: "14px" });
        blocks.forEach(function (b) { li.appendChild(b); });
        timeline.appendChild(li);
      });
      var wss = doc.workspaces || [];
      var line = el("p", { "class": "muted" }, "Workspaces: " + (wss.length ? wss.join(", ") : "none (only a bundle is stored)"));
      /* The run's events as they arrive, on the Live events page (its filter is #/events/<ws>/<run>). */
      wss.forEach(function (w) {
        line.appendChild(document.createTextNode("  "));
        line.appendChild(el("a", { href: "#/events/" + encodeURIComponent(w) + "/" + encodeURIComponent(runId),
          "data-testid": "run-live-events" }, "live events in " + w));
      });
      body.appendChild(line);
      /* A signer change heads the page, not only the Proof stage far below (walk-G F3). */
      if (doc.bundle && doc.bundle.signer_changed) {
        var banner = signerChangedBlock(doc.bundle);
        banner.setAttribute("data-testid", "run-signer-changed-banner");
        body.appendChild(banner);
      }
      body.appendChild(timeline);
    }).catch(function (e) {
      body.textContent = "";
      body.appendChild(el("div", { "class": "form-error", role: "alert", "data-testid": "run-error" }, e.message));
    });
  }

  LF.pages["runs"] = {
    render: function (root, params) {
      var first = params && params[0];
      if (!first) return renderList(root);
      /* "#/runs/<id>/<workspace>" (segments arrive decoded): the second segment names the workspace when two workspaces
         share a run id; "#/runs/<id>" takes the run from every workspace. */
      return renderRun(root, first, params[1] || null);
    }
  };
})();
