// LumenFlow console: the shell (login, hash routing, helpers shared by every page) and the
// Workspaces, Live events and Approvals pages. Plain script, no build step, no external URLs.
//
// Page contract (runs.js, recovery.js and energy.js rely on it):
//   window.LF = { pages, api(path, opts), el(tag, attrs, ...children), fmtTime(ts), ... }
//   LF.pages[name] = { render(root, params) } where params are the hash segments after the
//   page name; render may return (or resolve to) a cleanup function, called when leaving.
// Also for pages: LF.fmtAgo(ts), LF.chip(text, kind), LF.json(value), LF.table(columns, rows),
// LF.pageHead(title, subtitle, ...controls), LF.errorBox(error), LF.replace(node, ...children),
// and LF.confirm({title, message, body, reasonLabel, confirmLabel, confirmClass, onConfirm}), a
// modal dialog that runs onConfirm(reason) and resolves true only when it succeeded.
// LF.api(path, {method, body, noRedirect}): a 401 SESSION_REQUIRED shows the login form unless
// noRedirect is set.
"use strict";

(function () {
  const LF = (window.LF = { pages: {}, csrf: null, operator: null });

  // ---------------------------------------------------------------------------------------
  // Helpers

  /** Build an element. attrs: `class`, `text`, `on<event>` handlers, `data-*`, and plain
   *  attributes (`false`/`null` skip one, `true` sets it empty). Children: nodes, strings,
   *  numbers, arrays of them; `null`/`false` are skipped. */
  LF.el = function (tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on") && typeof value === "function") {
        node.addEventListener(key.slice(2).toLowerCase(), value);
      } else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    const add = (child) => {
      if (child === null || child === undefined || child === false) return;
      if (Array.isArray(child)) child.forEach(add);
      else if (child instanceof Node) node.appendChild(child);
      else node.appendChild(document.createTextNode(String(child)));
    };
    children.forEach(add);
    return node;
  };
  const el = LF.el;

  /** Call a console endpoint; resolves to the JSON body, rejects with an Error carrying the
   *  server's `error.message` (and `.status`, `.code`). Adds the CSRF token on non-GET. */
  LF.api = async function (path, opts) {
    const o = opts || {};
    const method = (o.method || (o.body !== undefined ? "POST" : "GET")).toUpperCase();
    const headers = { Accept: "application/json" };
    if (o.body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && method !== "HEAD" && LF.csrf) headers["X-CSRF-Token"] = LF.csrf;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        credentials: "same-origin",
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
      });
    } catch (e) {
      throw new Error("the control plane cannot be reached: " + e.message);
    }
    let body = null;
    const text = await response.text();
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (_) {
        body = null;
      }
    }
    if (!response.ok) {
      const err = (body && body.error) || {};
      const error = new Error(err.message || "HTTP " + response.status);
      error.status = response.status;
      error.code = err.code || null;
      if (response.status === 401 && err.code === "SESSION_REQUIRED" && !o.noRedirect) {
        showLogin("Your session has ended; log in again.");
      }
      throw error;
    }
    return body;
  };

  /** A timestamp (RFC 3339 or epoch ms) as local `YYYY-MM-DD HH:MM:SS`; "—" when absent. */
  LF.fmtTime = function (ts) {
    if (ts === null || ts === undefined || ts === "") return "—";
    const d = new Date(ts);
    if (isNaN(d.getTime())) return String(ts);
    const p = (n) => String(n).padStart(2, "0");
    return (
      d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds())
    );
  };

  /** How long ago `ts` was, e.g. "42 s ago", "3 min ago"; "never" when absent. */
  LF.fmtAgo = function (ts) {
    if (!ts) return "never";
    const ms = Date.now() - new Date(ts).getTime();
    if (isNaN(ms)) return String(ts);
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  };

  /** A status chip; kind is ok, warn, bad, info or idle. */
  LF.chip = function (text, kind, attrs) {
    return el("span", Object.assign({ class: "chip chip-" + (kind || "idle") }, attrs || {}), text);
  };

  /** Pretty-printed JSON in a dark block. */
  LF.json = function (value, attrs) {
    return el("pre", Object.assign({ class: "json" }, attrs || {}), JSON.stringify(value, null, 2));
  };

  /** A table: columns = [{ title, class? }], rows = arrays of cells (nodes or text). */
  LF.table = function (columns, rows, attrs) {
    return el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        Object.assign({ class: "data" }, attrs || {}),
        el("thead", null, el("tr", null, columns.map((c) => el("th", { class: c.class }, c.title)))),
        el("tbody", null, rows)
      )
    );
  };

  /** A modal dialog. opts: title, message, body (node), reasonLabel (shows a required text
   *  area), confirmLabel, confirmClass, onConfirm(reason) (async; a throw keeps the dialog
   *  open with the message). Resolves to true when confirmed and done, false when cancelled. */
  LF.confirm = function (opts) {
    return new Promise((resolve) => {
      const error = el("div", { class: "form-error", role: "alert", "data-testid": "dialog-error", hidden: true });
      const reason = opts.reasonLabel
        ? el("textarea", { id: "dialog-reason", "data-testid": "dialog-reason", required: true })
        : null;
      const confirm = el("button", {
        class: "btn " + (opts.confirmClass || "btn-primary"),
        type: "button",
        "data-testid": "dialog-confirm",
      }, opts.confirmLabel || "Confirm");
      const cancel = el("button", { class: "btn", type: "button", "data-testid": "dialog-cancel" }, "Cancel");
      const dialog = el(
        "dialog",
        { class: "modal", "data-testid": "dialog" },
        el(
          "div",
          { class: "modal-body" },
          el("h2", null, opts.title || "Confirm"),
          opts.message ? el("p", null, opts.message) : null,
          opts.body || null,
          reason ? el("label", { for: "dialog-reason" }, el("strong", null, opts.reasonLabel)) : null,
          reason,
          error
        ),
        el("div", { class: "modal-foot" }, cancel, confirm)
      );
      const close = (result) => {
        dialog.close();
        dialog.remove();
        resolve(result);
      };
      cancel.addEventListener("click", () => close(false));
      dialog.addEventListener("cancel", (e) => {
        e.preventDefault();
        close(false);
      });
      confirm.addEventListener("click", async () => {
        const text = reason ? reason.value.trim() : "";
        if (reason && !text) {
          error.textContent = "Give a reason: it is recorded with the decision.";
          error.hidden = false;
          reason.focus();
          return;
        }
        confirm.disabled = true;
        cancel.disabled = true;
        try {
          if (opts.onConfirm) await opts.onConfirm(text);
          close(true);
        } catch (e) {
          error.textContent = e.message;
          error.hidden = false;
          confirm.disabled = false;
          cancel.disabled = false;
        }
      });
      document.body.appendChild(dialog);
      dialog.showModal();
      (reason || confirm).focus();
    });
  };

  /** Replace a node's children. */
  LF.replace = function (node, ...children) {
    node.replaceChildren();
    children.forEach((c) => c && node.appendChild(c instanceof Node ? c : document.createTextNode(String(c))));
  };

  /** A page header: title, a muted line, and optional controls on the right. */
  LF.pageHead = function (title, subtitle, ...controls) {
    return el(
      "div",
      { class: "page-head" },
      el("div", null, el("h1", null, title), subtitle ? el("p", { class: "muted" }, subtitle) : null),
      controls.length ? el("div", { class: "toolbar" }, controls) : null
    );
  };

  /** An error box (for a failed load). */
  LF.errorBox = function (e) {
    return el("div", { class: "form-error", role: "alert", "data-testid": "page-error" }, e.message || String(e));
  };

  // ---------------------------------------------------------------------------------------
  // Shell: login, routing

  const $ = (id) => document.getElementById(id);
  let cleanup = null;
  let renderToken = 0;
  let badgeTimer = null;

  function showLogin(message) {
    LF.csrf = null;
    LF.operator = null;
    runCleanup();
    clearInterval(badgeTimer);
    $("page").hidden = true;
    $("page").replaceChildren();
    $("nav").hidden = true;
    $("who").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    if (message) {
      error.textContent = message;
      error.hidden = false;
    } else {
      error.hidden = true;
    }
    $("login-password").value = "";
    $("login-name").focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("nav").hidden = false;
    $("who").hidden = false;
    $("page").hidden = false;
    $("who-name").textContent = LF.operator;
    refreshBadge();
    clearInterval(badgeTimer);
    badgeTimer = setInterval(refreshBadge, 5000);
    route();
  }

  function setBadge(n) {
    $("pending-badge").textContent = String(n);
    $("pending-badge").hidden = n === 0;
  }
  LF.setBadge = setBadge;

  async function refreshBadge() {
    try {
      const list = await LF.api("/console/api/approvals?status=pending&limit=1000", { noRedirect: true });
      setBadge(list.approvals.length);
    } catch (_) {
      // The page's own requests report errors; the badge stays as it was.
    }
  }
  LF.refreshBadge = refreshBadge;

  function runCleanup() {
    if (typeof cleanup === "function") {
      try {
        cleanup();
      } catch (_) {
        // A page's cleanup failing must not block navigation.
      }
    }
    cleanup = null;
  }

  function route() {
    if (!LF.csrf) return;
    const full = location.hash.replace(/^#\/?/, "");
    // `#/page/a/b?x=1`: path segments are the page's params, the query its filters.
    const cut = full.indexOf("?");
    const hash = cut < 0 ? full : full.slice(0, cut);
    LF.hashQuery = new URLSearchParams(cut < 0 ? "" : full.slice(cut + 1));
    const segments = hash.split("/").filter((s) => s !== "").map(decodeURIComponent);
    const name = segments[0] || "workspaces";
    const params = segments.slice(1);
    runCleanup();
    const token = ++renderToken;
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.page === name);
    }
    const root = $("page");
    root.replaceChildren();
    root.dataset.page = name;
    const page = LF.pages[name];
    if (!page) {
      root.appendChild(LF.errorBox(new Error("There is no page `" + name + "`.")));
      return;
    }
    let result;
    try {
      result = page.render(root, params);
    } catch (e) {
      root.appendChild(LF.errorBox(e));
      return;
    }
    Promise.resolve(result).then(
      (c) => {
        if (typeof c !== "function") return;
        if (token === renderToken) cleanup = c;
        else c();
      },
      (e) => {
        if (token === renderToken) root.appendChild(LF.errorBox(e));
      }
    );
  }

  async function login(event) {
    event.preventDefault();
    const error = $("login-error");
    error.hidden = true;
    const submit = $("login-submit");
    submit.disabled = true;
    try {
      const me = await LF.api("/console/api/login", {
        body: { name: $("login-name").value.trim(), password: $("login-password").value },
        noRedirect: true,
      });
      LF.csrf = me.csrf_token;
      LF.operator = me.operator;
      $("login-password").value = "";
      showApp();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  }

  async function logout() {
    try {
      await LF.api("/console/api/logout", { method: "POST", noRedirect: true });
    } catch (_) {
      // Already ended server-side; the form is shown either way.
    }
    showLogin("You are logged out.");
  }

  async function boot() {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    window.addEventListener("hashchange", route);
    try {
      const me = await LF.api("/console/api/me", { noRedirect: true });
      LF.csrf = me.csrf_token;
      LF.operator = me.operator;
      showApp();
    } catch (e) {
      showLogin(e.status === 401 ? null : e.message);
    }
  }
  document.addEventListener("DOMContentLoaded", boot);

  // ---------------------------------------------------------------------------------------
  // Workspaces

  const CONNECTION = {
    online: ["online", "ok"],
    stale: ["stale", "warn"],
    unreachable: ["unreachable", "bad"],
    never_fetched: ["not yet reached", "idle"],
    no_sidecar: ["no sidecar", "idle"],
  };
  function connectionChip(state) {
    const [text, kind] = CONNECTION[state] || [state, "idle"];
    return LF.chip(text, kind, { "data-testid": "connection", "data-state": state });
  }

  function scopeText(scope) {
    if (scope === null || typeof scope !== "object") return String(scope);
    const parts = [scope.type];
    for (const key of ["access", "pattern", "posture", "allowlist"]) {
      if (scope[key] !== undefined) {
        parts.push(Array.isArray(scope[key]) ? scope[key].join(",") : String(scope[key]));
      }
    }
    return parts.filter(Boolean).join(" ");
  }

  async function renderWorkspaceList(root) {
    root.appendChild(LF.pageHead("Workspaces", "Enrolled workspaces, their sidecars and devices."));
    const host = el("div", { class: "panel-host" }, el("div", { class: "empty" }, "Loading…"));
    root.appendChild(host);
    const data = await LF.api("/console/api/workspaces");
    if (!data.workspaces.length) {
      LF.replace(host, el("div", { class: "empty" },
        "No workspace is enrolled yet. Create a code with ",
        el("code", null, "lumenflow cloud enroll-code --workspace-id WS"), "."));
      return;
    }
    const rows = data.workspaces.map((w) =>
      el(
        "tr",
        { "data-testid": "workspace-row", "data-workspace": w.workspace_id },
        el("td", null, el("a", { href: "#/workspaces/" + encodeURIComponent(w.workspace_id), class: "mono" }, w.workspace_id)),
        el("td", { title: w.unreachable_error || "" }, connectionChip(w.connection),
          w.connection === "unreachable" && w.unreachable_since
            ? el("span", { class: "muted", "data-testid": "unreachable-since" }, " since " + LF.fmtAgo(w.unreachable_since))
            : null),
        el("td", { title: LF.fmtTime(w.last_seen) }, LF.fmtAgo(w.last_seen)),
        el("td", { class: "num" }, w.devices),
        el("td", { class: "num" }, w.tools === null ? "—" : w.tools),
        el("td", { class: "num" }, w.pending_approvals
          ? el("a", { href: "#/approvals" }, LF.chip(w.pending_approvals + " pending", "warn"))
          : "0"),
        el("td", { class: "mono" }, w.sidecar_url || "—"),
        el("td", null, LF.fmtTime(w.enrolled_at))
      )
    );
    LF.replace(host, LF.table(
      [
        { title: "Workspace" }, { title: "Connection" }, { title: "Last seen" },
        { title: "Devices", class: "num" }, { title: "Tools", class: "num" },
        { title: "Approvals", class: "num" }, { title: "Sidecar" }, { title: "Enrolled" },
      ],
      rows,
      { "data-testid": "workspaces-table" }
    ));
  }

  function workspaceDetail(root, w) {
    const refresh = el("button", { class: "btn", type: "button", "data-testid": "registry-refresh" }, "Refresh registry");
    const head = LF.pageHead(w.workspace_id, "Workspace", refresh);
    const facts = el(
      "dl",
      { class: "facts" },
      el("dt", null, "Connection"), el("dd", null, connectionChip(w.connection),
        w.connection === "unreachable" && w.unreachable_since
          ? el("span", { class: "muted", "data-testid": "unreachable-since" }, " since " + LF.fmtTime(w.unreachable_since))
          : null),
      el("dt", null, "Sidecar"), el("dd", { class: "mono" }, w.sidecar_url || "— (no sidecar URL set)"),
      el("dt", null, "Last seen"), el("dd", null, LF.fmtTime(w.last_seen) + " (" + LF.fmtAgo(w.last_seen) + ")"),
      el("dt", null, "Last event"), el("dd", null, LF.fmtTime(w.last_event_at)),
      el("dt", null, "Last request"), el("dd", null, LF.fmtTime(w.last_request_at)),
      el("dt", null, "Registry fetched"), el("dd", null, LF.fmtTime(w.registry.fetched_at) +
        (w.registry.fetched_at ? " (" + LF.fmtAgo(w.registry.fetched_at) + ")" : "")),
      el("dt", null, "Enrolled"), el("dd", null, LF.fmtTime(w.enrolled_at))
    );
    const registryError = w.registry.error
      ? el("div", { class: "form-error", "data-testid": "registry-error" }, "Registry refresh failed: " + w.registry.error)
      : null;
    const devices = w.devices.length
      ? LF.table(
          [{ title: "Device" }, { title: "Name" }, { title: "Registered" }],
          w.devices.map((d) => el("tr", { "data-testid": "device-row" },
            el("td", { class: "mono" }, d.device_id), el("td", null, d.name), el("td", null, LF.fmtTime(d.registered_at)))),
          { "data-testid": "devices-table" })
      : el("div", { class: "empty" }, "No phone devices registered.");
    const tools = w.tools.length
      ? LF.table(
          [{ title: "Tool" }, { title: "Pack" }, { title: "Permission" }, { title: "Token scope" },
           { title: "Required scopes" }, { title: "Approval" }],
          w.tools.map((t) => el(
            "tr",
            { "data-testid": "tool-row", "data-tool": t.name },
            el("td", null, el("div", { class: "mono" }, t.name), el("div", { class: "muted" }, t.description)),
            el("td", { class: "mono" }, t.pack_id + "@" + t.pack_version),
            el("td", null, LF.chip(t.permission, t.permission === "admin" ? "warn" : "idle")),
            el("td", { class: "mono" }, t.token_scope),
            el("td", null, el("div", { class: "chips" },
              t.required_scopes.length ? t.required_scopes.map((s) => el("code", null, scopeText(s))) : "—")),
            el("td", null, t.needs_approval
              ? el("div", null, LF.chip("approval required", "warn", { "data-testid": "needs-approval" }),
                  t.required_approvals.length ? el("div", { class: "muted mono" }, t.required_approvals.join(", ")) : null)
              : LF.chip("allow", "ok"))
          )),
          { "data-testid": "tools-table" })
      : el("div", { class: "empty" }, "No tool listing yet (the sidecar has not been reached).");
    LF.replace(root,
      el("div", null, el("a", { href: "#/workspaces" }, "← All workspaces")),
      head,
      el("div", { class: "panel" }, facts, registryError),
      el("h2", null, "Tools"),
      tools,
      el("h2", null, "Devices"),
      devices
    );
    refresh.addEventListener("click", async () => {
      refresh.disabled = true;
      try {
        const fresh = await LF.api("/console/api/workspaces/" + encodeURIComponent(w.workspace_id) + "/refresh", { method: "POST" });
        workspaceDetail(root, fresh);
      } catch (e) {
        root.appendChild(LF.errorBox(e));
        refresh.disabled = false;
      }
    });
  }

  LF.pages.workspaces = {
    async render(root, params) {
      if (!params.length) return renderWorkspaceList(root);
      root.appendChild(el("div", { class: "empty" }, "Loading " + params[0] + "…"));
      const w = await LF.api("/console/api/workspaces/" + encodeURIComponent(params[0]));
      workspaceDetail(root, w);
    },
  };

  // ---------------------------------------------------------------------------------------
  // Live events

  const MAX_EVENT_ROWS = 500;
  const eventFilters = { workspace_id: "", kind: "", run_id: "" };

  LF.pages.events = {
    async render(root, params) {
      root.appendChild(LF.pageHead("Live events", "Events as the control plane stores them, newest first."));
      const list = await LF.api("/console/api/workspaces");
      const ids = list.workspaces.map((w) => w.workspace_id);
      if (!ids.length) {
        root.appendChild(el("div", { class: "empty" }, "No workspace is enrolled yet."));
        return;
      }
      // `#/events/<workspace>/<run>?kind=<kind>` opens a filtered stream (links from other
      // pages); Apply writes the filters back there, so a reload or a shared link keeps them.
      if (params[0]) {
        eventFilters.workspace_id = params[0];
        eventFilters.run_id = params[1] || "";
        eventFilters.kind = LF.hashQuery.get("kind") || "";
      }
      if (!ids.includes(eventFilters.workspace_id)) eventFilters.workspace_id = ids[0];

      const wsSelect = el("select", { "data-testid": "filter-workspace" },
        ids.map((id) => el("option", { value: id, selected: id === eventFilters.workspace_id }, id)));
      const kindInput = el("input", { placeholder: "e.g. campus or agent-runtime:tool_called", title: "a kind, or a pack's name (campus, campus:) for all of its kinds", value: eventFilters.kind, "data-testid": "filter-kind", size: 30 });
      const runInput = el("input", { placeholder: "run id", value: eventFilters.run_id, "data-testid": "filter-run", size: 24 });
      const apply = el("button", { class: "btn btn-primary", type: "submit", "data-testid": "filter-apply" }, "Apply");
      const dot = el("span", { class: "live-dot" });
      const status = el("span", { "data-testid": "events-status" }, "connecting");
      const count = el("span", { class: "muted", "data-testid": "events-count" }, "");
      const form = el("form", { class: "toolbar" },
        el("label", null, "Workspace", wsSelect),
        el("label", null, "Kind", kindInput),
        el("label", null, "Run", runInput),
        apply,
        el("span", null, dot, status), count);
      const tbody = el("tbody", null);
      const table = el("div", { class: "table-wrap" }, el("table", { class: "data", "data-testid": "events-table" },
        el("thead", null, el("tr", null, ["Time", "Kind", "Run", "From", "Seq"].map((t) => el("th", null, t)))),
        tbody));
      const detail = el("div", { class: "panel sticky-panel", "data-testid": "event-detail" },
        el("div", { class: "empty" }, "Select an event to see its envelope."));
      root.appendChild(form);
      root.appendChild(el("div", { class: "grid-2" }, el("div", null, table), el("div", null, detail)));

      let source = null;
      let selected = null;
      const connect = () => {
        if (source) source.close();
        tbody.replaceChildren();
        count.textContent = "";
        const q = new URLSearchParams({ workspace_id: eventFilters.workspace_id });
        if (eventFilters.kind) q.set("kind", eventFilters.kind);
        if (eventFilters.run_id) q.set("run_id", eventFilters.run_id);
        source = new EventSource("/console/api/events/stream?" + q.toString());
        const openedAt = Date.now();
        status.textContent = "connecting";
        dot.className = "live-dot";
        source.onopen = () => {
          status.textContent = "live";
          dot.className = "live-dot on";
        };
        source.onerror = () => {
          // EventSource reconnects by itself (resuming after the last id); a 401 ends it.
          status.textContent = source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting";
          dot.className = "live-dot off";
          if (source.readyState === EventSource.CLOSED) {
            LF.api("/console/api/me").catch(() => {});
          }
        };
        // The server re-checks the session while the stream is open and says when it ended.
        source.addEventListener("session_ended", () => {
          source.close();
          status.textContent = "disconnected";
          dot.className = "live-dot off";
          LF.api("/console/api/me").catch(() => {});
        });
        source.addEventListener("event", (m) => {
          let e;
          try {
            e = JSON.parse(m.data);
          } catch (_) {
            return;
          }
          // Highlight events that arrive live, not the backlog a stream opens with.
          const fresh = Date.now() - openedAt > 1500 ? " fresh" : "";
          const row = el("tr", { class: "clickable" + fresh, "data-testid": "event-row", "data-kind": e.kind, "data-run": e.run_id || "", "data-cursor": e.cursor },
            el("td", { class: "mono" }, LF.fmtTime(e.timestamp)),
            el("td", { class: "mono" }, e.kind),
            el("td", { class: "mono" }, e.run_id ? el("a", { href: "#/runs/" + encodeURIComponent(e.run_id) }, e.run_id) : "—"),
            el("td", { class: "mono" }, e.channel),
            el("td", { class: "num" }, e.seq === null || e.seq === undefined ? "—" : e.seq));
          row.addEventListener("click", (ev) => {
            if (ev.target.tagName === "A") return;
            if (selected) selected.classList.remove("selected");
            selected = row;
            row.classList.add("selected");
            LF.replace(detail,
              el("h3", { class: "mono" }, e.kind),
              el("dl", { class: "facts" },
                el("dt", null, "Event id"), el("dd", { class: "mono" }, e.event.event_id || "—"),
                el("dt", null, "Time"), el("dd", null, LF.fmtTime(e.timestamp)),
                el("dt", null, "From"), el("dd", { class: "mono" }, e.channel),
                el("dt", null, "Run"), el("dd", { class: "mono" }, e.run_id || "—"),
                el("dt", null, "Cursor"), el("dd", { class: "mono" }, e.cursor)),
              el("h3", null, "Envelope"),
              LF.json(e.event, { "data-testid": "event-envelope" }));
          });
          tbody.insertBefore(row, tbody.firstChild);
          while (tbody.children.length > MAX_EVENT_ROWS) tbody.lastChild.remove();
          count.textContent = tbody.children.length + " shown";
        });
      };
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        eventFilters.workspace_id = wsSelect.value;
        eventFilters.kind = kindInput.value.trim();
        eventFilters.run_id = runInput.value.trim();
        // Keep the filters in the address without re-rendering the page (no hashchange).
        let target = "#/events/" + encodeURIComponent(eventFilters.workspace_id);
        if (eventFilters.run_id) target += "/" + encodeURIComponent(eventFilters.run_id);
        if (eventFilters.kind) target += "?" + new URLSearchParams({ kind: eventFilters.kind }).toString();
        if (location.hash !== target) history.replaceState(null, "", target);
        detail.replaceChildren(el("div", { class: "empty" }, "Select an event to see its envelope."));
        connect();
      });
      wsSelect.addEventListener("change", () => form.requestSubmit());
      connect();
      return () => source && source.close();
    },
  };

  // ---------------------------------------------------------------------------------------
  // Approvals

  function countdown(node, expires) {
    const left = new Date(expires).getTime() - Date.now();
    if (!expires || isNaN(left)) {
      node.textContent = "no expiry";
      return;
    }
    if (left <= 0) {
      node.textContent = "expired";
      node.classList.add("soon");
      return;
    }
    const s = Math.floor(left / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const p = (n) => String(n).padStart(2, "0");
    node.textContent = "expires in " + (h ? h + ":" + p(m) : m) + ":" + p(s % 60);
    node.classList.toggle("soon", left < 5 * 60 * 1000);
  }

  function inputView(input) {
    const status = {
      verified: LF.chip("input verified against hash", "ok"),
      unknown: LF.chip("input not seen by the control plane", "idle"),
      mismatch: LF.chip("stored input does not match the hash", "bad"),
      not_bound: LF.chip("no input bound", "idle"),
    }[input.status] || LF.chip(input.status, "idle");
    return el("div", { "data-testid": "approval-input-block" },
      el("div", { class: "chips" }, status),
      input.hash ? el("div", { class: "hash", "data-testid": "approval-input-hash" }, input.hash) : null,
      input.value !== null && input.value !== undefined
        ? LF.json(input.value, { "data-testid": "approval-input" })
        : el("div", { class: "muted" }, "The call was made directly at the sidecar; only its hash is known."));
  }

  function decide(a, decision) {
    const approve = decision === "approved";
    return LF.confirm({
      title: (approve ? "Approve " : "Reject ") + (a.subject.tool || a.type),
      message: "Workspace " + a.workspace_id + ", approval " + a.approval_id + ".",
      body: a.input.value !== null && a.input.value !== undefined ? LF.json(a.input.value) : null,
      reasonLabel: "Reason (recorded with the decision)",
      confirmLabel: approve ? "Approve" : "Reject",
      confirmClass: approve ? "btn-ok" : "btn-danger",
      onConfirm: (reason) =>
        LF.api("/console/api/approvals/" + encodeURIComponent(a.approval_id) + "/decide", {
          body: { decision, reason },
        }),
    });
  }

  function pendingCard(a) {
    const ctx = a.context || {};
    const timer = el("span", { class: "countdown", "data-testid": "approval-expiry", "data-expires": a.expires_at || "" });
    countdown(timer, a.expires_at);
    const approve = el("button", { class: "btn btn-ok", type: "button", "data-testid": "approve" }, "Approve…");
    const reject = el("button", { class: "btn btn-danger", type: "button", "data-testid": "reject" }, "Reject…");
    approve.addEventListener("click", () => decide(a, "approved").then((done) => done && LF.refreshBadge()));
    reject.addEventListener("click", () => decide(a, "rejected").then((done) => done && LF.refreshBadge()));
    return el(
      "div",
      { class: "card", "data-testid": "pending-approval", "data-approval": a.approval_id, "data-tool": a.subject.tool || "" },
      el("div", { class: "card-head" },
        el("div", null,
          el("div", { class: "card-title" }, a.subject.tool || a.type),
          el("div", { class: "muted mono" }, a.approval_id)),
        timer),
      el("div", { class: "card-meta" },
        el("span", null, "Workspace ", el("b", null, a.workspace_id)),
        askedBy(a),
        el("span", null, "at ", el("b", null, LF.fmtTime(a.requested_at))),
        ctx.run_id ? el("span", null, "Run ", el("a", { href: "#/runs/" + encodeURIComponent(ctx.run_id), class: "mono" }, ctx.run_id)) : null,
        ctx.task_id ? el("span", null, "Task ", el("b", null, ctx.task_id)) : null),
      Array.isArray(ctx.reasons) && ctx.reasons.length
        ? el("div", null,
            el("div", { class: "muted", "data-testid": "reasons-stated-by" }, "Reasons stated by " + (a.asked_by || "the requester") + ":"),
            el("ul", { class: "reasons" }, ctx.reasons.map((r) => el("li", null, r))))
        : null,
      Array.isArray(a.subject.required_approvals) && a.subject.required_approvals.length
        ? el("div", { class: "muted" }, "Required approvals: ", el("span", { class: "mono" }, a.subject.required_approvals.join(", ")))
        : null,
      el("h3", null, "Input"),
      inputView(a.input),
      el("div", { class: "card-actions" }, approve, reject)
    );
  }

  /**
   * Who asked, as authenticated: the operator who invoked the call through the control plane,
   * else the subject of the token that requested the approval. A requester the request only
   * named is shown apart, as stated by that subject.
   */
  function askedBy(a) {
    const who = a.invoked_by || a.asked_by;
    return el("span", { "data-testid": "approval-requester" },
      "Asked by ", el("b", { "data-testid": "approval-asked-by" }, who || "unknown"),
      a.invoked_by ? el("span", { class: "muted" }, " (through the control plane, via " + a.asked_by + ")") : null,
      a.stated_requester
        ? el("span", { class: "stated", "data-testid": "stated-requester" },
            " · stated by " + (a.asked_by || "the requester") + ": requester " + a.stated_requester +
            (a.requester_type ? " (" + a.requester_type + ")" : ""))
        : null);
  }

  function decidedBy(a) {
    return el("td", { "data-testid": "decided-by" },
      a.decided_by || "—",
      a.stated_reviewer
        ? el("span", { class: "stated", "data-testid": "stated-reviewer" }, " (stated: " + a.stated_reviewer + ")")
        : null);
  }

  function statusChip(status) {
    const kind = { approved: "ok", rejected: "bad", expired: "idle", pending: "warn" }[status] || "idle";
    return LF.chip(status, kind, { "data-testid": "decision-status" });
  }

  function decidedRow(a) {
    return el("tr", { "data-testid": "decided-approval", "data-approval": a.approval_id },
      el("td", null, LF.fmtTime(a.decided_at || a.expires_at)),
      el("td", null, statusChip(a.status)),
      el("td", { class: "mono" }, a.subject.tool || a.type),
      el("td", { class: "mono" }, a.workspace_id),
      decidedBy(a),
      el("td", { "data-testid": "decided-reason" }, a.decision_reason || "—"),
      el("td", { class: "mono" }, a.invoked_by || a.asked_by || (a.requester_id ? a.requester_id + " (stated)" : "—")));
  }

  LF.pages.approvals = {
    render(root) {
      root.appendChild(LF.pageHead("Approvals", "Calls waiting for an operator, and what was decided."));
      const pendingHost = el("div", { class: "cards", "data-testid": "pending-list" }, el("div", { class: "empty" }, "Loading…"));
      const decidedHost = el("div", { "data-testid": "decided-list" });
      const problem = el("div", { class: "form-error", role: "alert", hidden: true });
      root.append(problem, el("h2", null, "Pending"), pendingHost, el("h2", null, "Decided"), decidedHost);
      let pendingSig = null;
      let decidedSig = null;
      let stopped = false;
      const load = async () => {
        try {
          const [pending, decided] = await Promise.all([
            LF.api("/console/api/approvals?status=pending"),
            LF.api("/console/api/approvals?status=decided&limit=50"),
          ]);
          if (stopped) return;
          problem.hidden = true;
          // The nav badge counts the list this page shows, from the same answer.
          LF.setBadge(pending.approvals.length);
          // Re-render only on change, so an open dialog's card is not replaced under it.
          const ps = JSON.stringify(pending.approvals.map((a) => [a.approval_id, a.status, a.input.status]));
          if (ps !== pendingSig) {
            pendingSig = ps;
            if (pending.approvals.length) LF.replace(pendingHost, ...pending.approvals.map(pendingCard));
            else LF.replace(pendingHost, el("div", { class: "empty", "data-testid": "no-pending" }, "Nothing is waiting for a decision."));
          }
          const ds = JSON.stringify(decided.approvals.map((a) => [a.approval_id, a.status]));
          if (ds !== decidedSig) {
            decidedSig = ds;
            LF.replace(decidedHost, decided.approvals.length
              ? LF.table(
                  [{ title: "Decided" }, { title: "Status" }, { title: "Tool" }, { title: "Workspace" },
                   { title: "By" }, { title: "Reason" }, { title: "Asked by" }],
                  decided.approvals.map(decidedRow),
                  { "data-testid": "decided-table" })
              : el("div", { class: "empty" }, "No decisions yet."));
          }
        } catch (e) {
          if (stopped) return;
          problem.textContent = e.message;
          problem.hidden = false;
        }
      };
      load();
      // New requests appear within a second without a reload; countdowns tick every second.
      const poll = setInterval(load, 1000);
      const tick = setInterval(() => {
        for (const t of pendingHost.querySelectorAll("[data-testid=approval-expiry]")) countdown(t, t.dataset.expires);
      }, 1000);
      return () => {
        stopped = true;
        clearInterval(poll);
        clearInterval(tick);
      };
    },
  };
})();
