/* Recovery: aborted turns with their cleanup_status and recovery_action. The action is never
   run by the console or the control plane; its button opens a dialog, and only "Send" posts
   (with the CSRF token) a request that the control plane forwards to the workspace's sidecar as
   a conductor:recovery_requested event. Cancel (or Escape) sends nothing. */
(function () {
  "use strict";
  var LF = window.LF;
  var el = LF.el;

  function text(v) {
    if (v === null || v === undefined) return "";
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function chip(label, tone, testid) {
    var attrs = { "class": "chip chip-" + tone };
    if (testid) attrs["data-testid"] = testid;
    return el("span", attrs, label);
  }

  var CLEANUP_TONE = { clean: "ok", partial: "warn", needs_recovery: "bad" };
  var OUTCOME_TONE = { delivered: "ok", refused: "bad", unreachable: "bad" };

  /* A <pre> that wraps long commands instead of scrolling sideways. */
  function wrapped(textValue, testid) {
    var attrs = { "class": "json" };
    if (testid) attrs["data-testid"] = testid;
    var pre = el("pre", attrs, textValue);
    Object.assign(pre.style, { whiteSpace: "pre-wrap", wordBreak: "break-all" });
    return pre;
  }

  /* What the sidecar said: each pack's delivery result, or its error, else the raw answer. */
  function sidecarAnswer(r) {
    var answer = null;
    try { answer = JSON.parse(r.sidecar_answer); } catch (_) { answer = null; }
    var head = r.sidecar_status === null ? "sidecar unreachable" : "sidecar HTTP " + r.sidecar_status;
    var out = el("div", { "class": "muted", "data-testid": "recovery-sidecar-answer" }, head + ": ");
    if (answer && Array.isArray(answer.deliveries)) {
      if (!answer.deliveries.length) out.appendChild(document.createTextNode("accepted; no pack handler ran"));
      answer.deliveries.forEach(function (d) {
        var label = d.pack_id + ": " + (d.result === "ok" ? (d.status || "ok") + (d.action ? " (" + d.action + ")" : "") : "failed");
        out.appendChild(chip(label, d.result === "ok" && d.status === "handled" ? "ok" : d.result === "ok" ? "info" : "bad",
          "recovery-delivery"));
        out.appendChild(document.createTextNode(" "));
      });
    } else if (answer && answer.error) {
      out.appendChild(document.createTextNode(answer.error.code + ": " + answer.error.message));
    } else {
      out.appendChild(document.createTextNode(text(r.sidecar_answer)));
    }
    out.appendChild(el("div", { "class": "hash" }, "event " + r.event_id));
    return out;
  }

  function requestsList(requests) {
    if (!requests.length) return null;
    var list = el("ul", { "class": "reasons", "data-testid": "recovery-requests" });
    requests.forEach(function (r) {
      list.appendChild(el("li", { "data-testid": "recovery-request", "data-outcome": r.outcome },
        chip(r.outcome, OUTCOME_TONE[r.outcome] || "info"), " ",
        "work unit ", el("span", { "class": "mono" }, r.wu_id), " requested by ",
        el("b", {}, r.requested_by), " ", LF.fmtTime(r.requested_at),
        r.reason ? " — “" + r.reason + "”" : "",
        sidecarAnswer(r)));
    });
    return el("div", {}, el("h3", {}, "Recovery requests sent"), list);
  }

  /* The confirm dialog (the shell's LF.confirm: Cancel or Escape resolves without calling
     onConfirm, so nothing is sent). `onSend(wuId, reason)` runs only on "Send". */
  function confirmDialog(turn, onSend) {
    var wu = el("input", { type: "text", required: true, "data-testid": "recovery-wu" });
    wu.value = turn.wu_id || "";
    var body = el("div", { "data-testid": "recovery-dialog" },
      el("p", { "class": "muted" }, "Suggested recovery action:"),
      wrapped(text(turn.recovery_action)),
      el("label", {}, el("strong", {}, "Work unit")), wu);
    return LF.confirm({
      title: "Request recovery?",
      message: "This sends conductor:recovery_requested to the sidecar of workspace " + turn.workspace_id +
        " for the work unit below. The workspace's packs decide what to do; the control plane runs nothing itself.",
      body: body,
      reasonLabel: "Reason (recorded with the request)",
      confirmLabel: "Send recovery request",
      confirmClass: "btn-danger",
      onConfirm: function (reason) {
        if (!wu.value.trim()) return Promise.reject(new Error("Name the work unit to recover."));
        return onSend(wu.value.trim(), reason);
      }
    });
  }

  function turnCard(turn, reload, notice) {
    var status = turn.cleanup_status || "unknown";
    var card = el("div", { "class": "card", "data-testid": "aborted-turn", "data-turn-id": text(turn.turn_id),
      "data-cleanup-status": status });
    card.style.borderLeftColor = status === "needs_recovery" ? "#b91c1c" : status === "partial" ? "#f59e0b" : "#15803d";
    card.appendChild(el("div", { "class": "card-head" },
      el("div", { "class": "card-title" }, "turn " + text(turn.turn_id)),
      chip(status, CLEANUP_TONE[status] || "info", "cleanup-status")));
    card.appendChild(el("div", { "class": "card-meta" },
      el("span", {}, "workspace ", el("b", {}, turn.workspace_id)),
      turn.run_id ? el("span", {}, "run ", el("a", { href: "#/runs/" + encodeURIComponent(turn.run_id) + "/" +
        encodeURIComponent(turn.workspace_id) }, turn.run_id)) : el("span", {}, "no run id"),
      el("span", {}, "aborted ", el("b", {}, LF.fmtTime(turn.timestamp)))));
    if (turn.reason) card.appendChild(el("p", {}, text(turn.reason)));
    if (turn.recovery_action) {
      card.appendChild(el("p", { "class": "muted" }, "Recovery action (shown, never run by the control plane):"));
      card.appendChild(wrapped(turn.recovery_action, "recovery-action-text"));
      var button = el("button", { "class": "btn btn-primary", type: "button", "data-testid": "recovery-action" },
        turn.wu_id ? "Request recovery of " + turn.wu_id + "…" : "Request recovery…");
      button.addEventListener("click", function () {
        confirmDialog(turn, function (wuId, reason) {
          var body = { workspace_id: turn.workspace_id, turn_event_id: turn.event_id, wu_id: wuId };
          if (reason) body.reason = reason;
          return LF.api("/console/api/recovery", { method: "POST", body: body }).then(function (r) {
            notice("Recovery request " + r.event_id + " sent to " + r.workspace_id + ": " + r.outcome +
              (r.sidecar_status === null ? " (sidecar unreachable)" : " (sidecar HTTP " + r.sidecar_status + ")"),
              r.outcome === "delivered");
            reload();
          });
        });
      });
      card.appendChild(el("div", { "class": "card-actions" }, button));
    }
    var reqs = requestsList(turn.requests || []);
    if (reqs) card.appendChild(reqs);
    return card;
  }

  function render(root) {
    var input = el("input", { type: "text", placeholder: "all workspaces", "data-testid": "recovery-workspace-filter" });
    var apply = el("button", { "class": "btn", type: "button" }, "Filter");
    var result = el("div", { "data-testid": "recovery-result", role: "status" });
    result.hidden = true;
    var body = el("div", { "class": "cards", "data-testid": "recovery-body" }, el("div", { "class": "empty" }, "Loading…"));
    root.appendChild(el("div", { "class": "page-head" }, el("div", {}, el("h1", {}, "Recovery"),
      el("p", { "class": "muted" }, "Turns that stopped mid-flight, what they left behind, and the recovery they suggest."))));
    root.appendChild(el("div", { "class": "toolbar" }, el("label", {}, "Workspace", input), apply));
    root.appendChild(result);
    root.appendChild(body);

    function notice(message, ok) {
      result.className = ok ? "notice" : "form-error";
      result.textContent = message;
      result.hidden = false;
    }

    function load() {
      var ws = input.value.trim();
      LF.api("/console/api/recovery" + (ws ? "?workspace_id=" + encodeURIComponent(ws) : "")).then(function (doc) {
        body.textContent = "";
        if (!doc.turns.length) {
          body.appendChild(el("div", { "class": "empty", "data-testid": "recovery-empty" }, "No aborted turns."));
          return;
        }
        doc.turns.forEach(function (t) { body.appendChild(turnCard(t, load, notice)); });
      }).catch(function (e) {
        body.textContent = "";
        body.appendChild(el("div", { "class": "form-error", role: "alert" }, e.message));
      });
    }
    apply.addEventListener("click", load);
    load();
  }

  LF.pages["recovery"] = { render: render };
})();
