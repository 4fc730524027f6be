/* Energy and campus: facility PUE over time (a line) and energy windows (bars spanning each
   window, height in kWh) per workspace and facility, drawn as inline SVG by this file; no chart
   library, nothing fetched from elsewhere. Data: GET /console/api/energy. */
(function () {
  "use strict";
  var LF = window.LF;
  var el = LF.el;
  var SVG = "http://www.w3.org/2000/svg";
  var W = 640, H = 200, PAD = { l: 52, r: 12, t: 12, b: 30 };
  var FACILITY_COLOR = "#2563eb", METER_COLOR = "#f59e0b", PUE_COLOR = "#15803d";

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  /* Never "-0": a tiny negative that rounds to zero at `digits` (or -0 itself) reads 0. */
  function fmtNum(n, digits) {
    var v = Number(n);
    var scale = Math.pow(10, digits || 0);
    if (Math.round(v * scale) === 0) v = 0;
    return v.toLocaleString(undefined, { maximumFractionDigits: digits });
  }
  LF.fmtEnergyNum = fmtNum;

  function shortTime(ms) {
    var d = new Date(ms);
    return d.toISOString().slice(5, 16).replace("T", " ");
  }

  /* Linear scales over [min, max] (a flat range is widened so a single point is drawable). */
  function scale(min, max, from, to) {
    if (max === min) { min -= 1; max += 1; }
    return function (v) { return from + (v - min) / (max - min) * (to - from); };
  }

  function frame(testid, label, yMin, yMax, xMin, xMax, yDigits) {
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", role: "img",
      "aria-label": label, "data-testid": testid });
    root.style.maxWidth = W + "px";
    root.style.display = "block";
    var y = scale(yMin, yMax, H - PAD.b, PAD.t);
    var x = scale(xMin, xMax, PAD.l, W - PAD.r);
    root.appendChild(svg("line", { x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b, stroke: "#94a3b8" }));
    root.appendChild(svg("line", { x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: H - PAD.b, stroke: "#94a3b8" }));
    [yMin, (yMin + yMax) / 2, yMax].forEach(function (v) {
      root.appendChild(svg("text", { x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5d6b7e" },
        [fmtNum(v, yDigits)]));
      root.appendChild(svg("line", { x1: PAD.l, y1: y(v), x2: W - PAD.r, y2: y(v), stroke: "#eef2f7" }));
    });
    root.appendChild(svg("text", { x: PAD.l, y: H - 8, "font-size": 11, fill: "#5d6b7e" }, [shortTime(xMin)]));
    root.appendChild(svg("text", { x: W - PAD.r, y: H - 8, "text-anchor": "end", "font-size": 11, fill: "#5d6b7e" },
      [shortTime(xMax)]));
    return { root: root, x: x, y: y };
  }

  function pueChart(points) {
    var ts = points.map(function (p) { return p.at_ms; });
    var vs = points.map(function (p) { return p.pue; });
    var lo = Math.min(1, Math.min.apply(null, vs)), hi = Math.max.apply(null, vs);
    var f = frame("pue-chart", "PUE over time", lo, hi, Math.min.apply(null, ts), Math.max.apply(null, ts), 2);
    f.root.appendChild(svg("polyline", {
      fill: "none", stroke: PUE_COLOR, "stroke-width": 2,
      points: points.map(function (p) { return f.x(p.at_ms) + "," + f.y(p.pue); }).join(" ")
    }));
    points.forEach(function (p) {
      f.root.appendChild(svg("circle", { cx: f.x(p.at_ms), cy: f.y(p.pue), r: 3.5, fill: PUE_COLOR,
        "data-testid": "pue-point", "data-pue": p.pue }, [svg("title", {}, ["PUE " + p.pue + " at " + p.at])]));
    });
    return f.root;
  }

  function energyChart(windows, meters) {
    var all = windows.concat(meters);
    var lo = Math.min.apply(null, all.map(function (p) { return p.from_ms; }));
    var hi = Math.max.apply(null, all.map(function (p) { return p.to_ms; }));
    var top = Math.max.apply(null, all.map(function (p) { return p.kwh; }));
    var f = frame("energy-chart", "Energy per window (kWh)", 0, top, lo, hi, 3);
    function bars(points, color, kind, half) {
      points.forEach(function (p) {
        var x0 = f.x(p.from_ms), x1 = f.x(p.to_ms);
        var w = Math.max(2, x1 - x0 - 1);
        /* Facility windows take the left half of their span, meters the right, so both show. */
        var bw = meters.length && windows.length ? w / 2 : w;
        var bx = half === 1 && meters.length && windows.length ? x0 + bw : x0;
        var y = f.y(p.kwh);
        f.root.appendChild(svg("rect", {
          x: bx, y: y, width: Math.max(1, bw), height: Math.max(1, H - PAD.b - y), fill: color, opacity: 0.85,
          "data-testid": "energy-bar", "data-kind": kind, "data-kwh": p.kwh
        }, [svg("title", {}, [kind + ": " + fmtNum(p.kwh, 3) + " kWh, " + p.from + " – " + p.to +
          (p.energy_source ? " (" + p.energy_source + ", " + p.energy_provenance + ")" : "")])]));
      });
    }
    bars(windows, FACILITY_COLOR, "facility", 0);
    bars(meters, METER_COLOR, "meter", 1);
    return f.root;
  }

  function legend(color, label) {
    var swatch = el("span", {});
    Object.assign(swatch.style, { display: "inline-block", width: "10px", height: "10px", background: color,
      marginRight: "4px", borderRadius: "2px" });
    return el("span", {}, swatch, label);
  }

  function facilityPanel(f) {
    var kwh = (f.facility_joules + f.meter_joules) / 3.6e6;
    var panel = el("section", { "class": "panel", "data-testid": "energy-facility",
      "data-facility": f.facility_id, "data-workspace": f.workspace_id },
      el("h2", {}, f.facility_id, el("span", { "class": "muted" }, "  workspace " + f.workspace_id)),
      el("dl", { "class": "facts" },
        el("dt", {}, "Latest PUE"), el("dd", { "data-testid": "latest-pue" }, f.latest_pue === null ? "–" : String(f.latest_pue)),
        el("dt", {}, "Facility energy"), el("dd", {}, fmtNum(f.facility_joules / 3.6e6, 3) + " kWh in " + f.windows.length + " windows"),
        el("dt", {}, "Metered (EMIT)"), el("dd", {}, fmtNum(f.meter_joules / 3.6e6, 3) + " kWh in " + f.meters.length + " readings"),
        el("dt", {}, "Total"), el("dd", {}, fmtNum(kwh, 3) + " kWh")));
    if (f.pue.length) {
      panel.appendChild(el("h3", {}, "PUE over time"));
      panel.appendChild(pueChart(f.pue));
    }
    if (f.windows.length || f.meters.length) {
      panel.appendChild(el("h3", {}, "Energy windows ",
        legend(FACILITY_COLOR, "facility (campus) "), legend(METER_COLOR, "meter (emit)")));
      panel.appendChild(energyChart(f.windows, f.meters));
    }
    return panel;
  }

  function render(root) {
    var input = el("input", { type: "text", placeholder: "all workspaces", "data-testid": "energy-workspace-filter" });
    var apply = el("button", { "class": "btn", type: "button" }, "Filter");
    var body = el("div", { "data-testid": "energy-body" }, el("div", { "class": "empty" }, "Loading…"));
    root.appendChild(el("div", { "class": "page-head" }, el("div", {}, el("h1", {}, "Energy and campus"),
      el("p", { "class": "muted" }, "Facility PUE and energy windows as the campus pack reports them."))));
    root.appendChild(el("div", { "class": "toolbar" }, el("label", {}, "Workspace", input), apply));
    root.appendChild(body);
    function load() {
      var ws = input.value.trim();
      LF.api("/console/api/energy" + (ws ? "?workspace_id=" + encodeURIComponent(ws) : "")).then(function (doc) {
        body.textContent = "";
        if (!doc.facilities.length) {
          body.appendChild(el("div", { "class": "empty", "data-testid": "energy-empty" }, "no campus telemetry yet"));
          return;
        }
        doc.facilities.forEach(function (f) { body.appendChild(facilityPanel(f)); });
      }).catch(function (e) {
        body.textContent = "";
        body.appendChild(el("div", { "class": "form-error", role: "alert" }, e.message));
      });
    }
    apply.addEventListener("click", load);
    load();
  }

  LF.pages["energy"] = { render: render };
})();
