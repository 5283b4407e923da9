/**
 * The console's script (served as /console/console.js), for the browser: it
 * reads the control plane's ControlService with the Connect protocol's JSON
 * encoding (POST, `connect-protocol-version: 1`), the same API and the same
 * `authorization: Bearer` admin credential polymurctl uses, every 2 s, and
 * draws what it reads. Rates are derived here from successive counters the
 * nodes report; the graphs are SVG drawn by this script. The DOM is built
 * from text nodes only (the page's Trusted Types policy refuses HTML
 * strings). The token the operator types is kept in sessionStorage (this tab
 * only) and sent nowhere but this origin.
 *
 * Written as plain browser JavaScript in a raw string (no backticks or
 * dollar-brace inside): it is served as it is, with no build step.
 */
export const CONSOLE_SCRIPT = String.raw`"use strict";
(() => {
  const SERVICE = "/polymur.control.v1.ControlService/";
  const TOKEN_KEY = "polymur.console.adminToken";
  const POLL_MS = 2000;
  /** What the graphs show. */
  const GRAPH_MS = 5 * 60 * 1000;
  /** How much history is kept per series. */
  const KEEP_MS = 10 * 60 * 1000;
  /** A rate is taken over at least this span of samples (nodes report every 5 s). */
  const RATE_SPAN_MS = 10000;
  /** Counters unchanged this long: a sample all the same (the rate is 0). */
  const FLAT_AFTER_MS = 11000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const REFUSED = new Set(["unauthenticated", "permission_denied"]);

  const byId = (id) => document.getElementById(id);

  // --- DOM, from text only ---------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
    }
    return e;
  }

  function setAttrs(e, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.setAttribute("class", v);
      else e.setAttribute(k, String(v));
    }
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    setAttrs(e, attrs);
    return e;
  }

  // --- the token ----------------------------------------------------------------

  function getToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch {
      return "";
    }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {}
  }

  // --- the API: Connect, JSON, HTTP/1.1 or HTTP/2 -------------------------------------

  class RpcError extends Error {
    constructor(code, message, polymurCode) {
      super(message);
      this.code = code;
      this.polymurCode = polymurCode;
    }
  }

  /** Connect's code for an HTTP status with no Connect error body (a proxy's answer, say). */
  function codeOfStatus(status) {
    if (status === 401) return "unauthenticated";
    if (status === 403) return "permission_denied";
    if (status === 404) return "unimplemented";
    if (status === 429 || status === 502 || status === 503 || status === 504) return "unavailable";
    return "unknown";
  }

  let clockOffsetMs = 0;

  /** The server's clock, from its Date header (whole seconds: only a larger skew is taken). */
  function noteServerClock(date) {
    const t = Date.parse(date || "");
    if (Number.isNaN(t)) return;
    const off = t - Date.now();
    clockOffsetMs = Math.abs(off) > 2000 ? off : 0;
  }

  async function call(method, body) {
    const headers = { "content-type": "application/json", "connect-protocol-version": "1" };
    const token = getToken();
    if (token) headers.authorization = "Bearer " + token;
    let res;
    try {
      res = await fetch(SERVICE + method, {
        method: "POST",
        headers,
        body: JSON.stringify(body || {}),
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
      });
    } catch (err) {
      if (err instanceof TypeError && token && !/^[\x21-\x7e]+$/.test(token)) {
        throw new RpcError("unauthenticated", "the token holds characters no header can carry", "");
      }
      throw new RpcError("unavailable", "cannot reach the control plane (" + err.message + ")", "");
    }
    noteServerClock(res.headers.get("date"));
    const text = await res.text();
    let json = null;
    try {
      json = text === "" ? {} : JSON.parse(text);
    } catch {}
    if (!res.ok || json === null) {
      const code = (json && json.code) || codeOfStatus(res.status);
      const message = (json && json.message) || "HTTP " + res.status + " from the control plane";
      throw new RpcError(code, message, res.headers.get("polymur-error-code") || "");
    }
    return json;
  }

  // --- rates, from successive reports ---------------------------------------------

  /** Samples by series key: {t, c: counters, g: gauges}. */
  const series = new Map();

  function differs(a, b) {
    for (const k of Object.keys(b)) if (a[k] !== b[k]) return true;
    for (const k of Object.keys(a)) if (!(k in b)) return true;
    return false;
  }

  function wentBack(a, b) {
    for (const k of Object.keys(a)) if ((b[k] || 0) < a[k]) return true;
    return false;
  }

  /** Adds a sample when the counters or gauges changed (a new report), or stood still a while. */
  function track(key, t, counters, gauges, seen) {
    seen.add(key);
    let s = series.get(key);
    if (s === undefined) {
      s = [];
      series.set(key, s);
    }
    const last = s[s.length - 1];
    if (last !== undefined && wentBack(last.c, counters)) s.length = 0; // the node restarted
    const prev = s[s.length - 1];
    if (
      prev === undefined ||
      differs(prev.c, counters) ||
      differs(prev.g, gauges) ||
      t - prev.t >= FLAT_AFTER_MS
    ) {
      s.push({ t, c: counters, g: gauges });
    }
    while (s.length > 0 && s[0].t < t - KEEP_MS) s.shift();
    return s;
  }

  /**
   * Per second, at sample i, over at least RATE_SPAN_MS of samples before it
   * (or all there are). Not from the first sample: its counters were reported
   * some time before the page read them, when, it cannot tell; every later
   * sample is a change the page saw within one poll of its report.
   */
  function rateAt(s, i, k) {
    if (i < 2) return null;
    const cur = s[i];
    let j = i - 1;
    while (j > 1 && cur.t - s[j].t < RATE_SPAN_MS) j--;
    const dt = (cur.t - s[j].t) / 1000;
    if (dt <= 0) return null;
    // A reason is reported once it has a count: absent, it was 0.
    return Math.max(0, ((cur.c[k] || 0) - (s[j].c[k] || 0)) / dt);
  }

  function lastRate(s, k) {
    return s ? rateAt(s, s.length - 1, k) : null;
  }

  function rateSeries(s, k, from) {
    const pts = [];
    for (let i = 2; i < s.length; i++) {
      if (s[i].t < from) continue;
      const r = rateAt(s, i, k);
      if (r !== null) pts.push([s[i].t, r]);
    }
    return pts;
  }

  function gaugeSeries(s, k, from) {
    return s.filter((x) => x.t >= from).map((x) => [x.t, x.g[k]]);
  }

  // --- formatting -------------------------------------------------------------------

  const num = (v) => {
    const n = Number(v === undefined || v === null ? 0 : v);
    return Number.isFinite(n) ? n : 0;
  };

  function fmtCount(n) {
    return Math.round(n).toLocaleString("en-US");
  }

  function fmtRate(r) {
    if (r === null || r === undefined) return "–";
    if (r === 0) return "0";
    if (r < 10) return r.toFixed(1);
    return fmtCount(r);
  }

  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let v = n;
    let u = -1;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return v.toFixed(v < 10 ? 1 : 0) + " " + units[u];
  }

  function fmtDuration(sec) {
    if (sec < 1) return "now";
    if (sec < 60) return Math.floor(sec) + " s";
    if (sec < 3600) return Math.floor(sec / 60) + " min " + (Math.floor(sec) % 60) + " s";
    if (sec < 86400) return Math.floor(sec / 3600) + " h " + (Math.floor(sec / 60) % 60) + " min";
    return Math.floor(sec / 86400) + " d " + (Math.floor(sec / 3600) % 24) + " h";
  }

  function ago(iso) {
    const t = Date.parse(iso || "");
    if (Number.isNaN(t) || t <= 0) return "never";
    const sec = (Date.now() + clockOffsetMs - t) / 1000;
    return sec < 1 ? "just now" : fmtDuration(sec) + " ago";
  }

  function until(iso) {
    const sec = (Date.parse(iso || "") - Date.now() - clockOffsetMs) / 1000;
    return Number.isNaN(sec) ? "–" : fmtDuration(Math.max(0, sec));
  }

  function fmtTime(iso) {
    const t = Date.parse(iso || "");
    if (Number.isNaN(t) || t <= 0) return "–";
    return new Date(t).toISOString().replace(".000Z", "Z");
  }

  function scopeKey(scope) {
    if (!scope || scope.all) return "all";
    return "group:" + (scope.group || "");
  }

  function groupLabel(g) {
    return g === "" ? "nodes without a group" : "group " + g;
  }

  // --- graphs -----------------------------------------------------------------------

  /** A small SVG line graph of one or more series [[t, v], ...] over the last GRAPH_MS. */
  function sparkline(lines, now, label) {
    const w = 180;
    const h = 34;
    const from = now - GRAPH_MS;
    let max = 0;
    for (const l of lines) for (const p of l.points) max = Math.max(max, p[1]);
    const top = max > 0 ? max * 1.1 : 1;
    const box = svg("svg", {
      class: "spark",
      width: w,
      height: h,
      viewBox: "0 0 " + w + " " + h,
      role: "img",
      "aria-label": label,
    });
    const title = svg("title");
    title.textContent =
      label +
      ", last 5 minutes; " +
      lines.map((l) => l.name + " max " + fmtRate(l.points.reduce((m, p) => Math.max(m, p[1]), 0))).join(", ");
    box.append(title);
    box.append(svg("line", { class: "axis", x1: 0, y1: h - 0.5, x2: w, y2: h - 0.5 }));
    for (const l of lines) {
      if (l.points.length === 0) continue;
      const pts = l.points.map((p) => {
        const x = Math.max(0, ((p[0] - from) / GRAPH_MS) * w);
        const y = h - 1 - (p[1] / top) * (h - 3);
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      if (pts.length === 1) pts.unshift("0," + pts[0].split(",")[1]);
      box.append(svg("polyline", { class: l.cls, points: pts.join(" ") }));
    }
    return box;
  }

  // --- rendering ----------------------------------------------------------------------

  const view = { version: null, config: null, nodes: [], history: null, at: 0 };

  function stateClass(s) {
    if (s === "connected") return "state ok";
    if (s === "connecting" || s === "backoff" || s === "draining") return "state warn";
    return "state bad";
  }

  /** The per-reason maps a node reports, each under the words the page shows. */
  const NODE_REASONS = [
    ["rejected", "rejectedBy", "rejected"],
    ["unrouted", "unroutedBy", "sent nowhere"],
    ["dropped", "droppedBy", "dropped"],
  ];
  const DEST_REASONS = [["dropped", "droppedBy", "dropped"]];

  /** A report's non-zero reasons of each kind, largest first: [kind, words, [[reason, count]...]]. */
  function reasonsOf(kinds, report) {
    const out = [];
    for (const [kind, field, words] of kinds) {
      const entries = Object.entries(report[field] || {})
        .map(([r, v]) => [r, num(v)])
        .filter((e) => e[1] > 0)
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
      if (entries.length > 0) out.push([kind, words, entries]);
    }
    return out;
  }

  /** Counters by reason, for the rates: "rejected:field_count" and so on. */
  function reasonCounters(kinds, report, into) {
    for (const [kind, field] of kinds) {
      for (const [r, v] of Object.entries(report[field] || {})) into[kind + ":" + r] = num(v);
    }
    return into;
  }

  /**
   * "rejected: field_count 12 (0.4/s), bad_value 3 · dropped: queue_full 40 (2.0/s)":
   * each non-zero reason with its total and, once there is one, its rate.
   */
  function reasonParts(kinds, report, s) {
    const parts = [];
    for (const [kind, words, entries] of reasonsOf(kinds, report)) {
      if (parts.length > 0) parts.push(" · ");
      const items = [];
      for (const [r, v] of entries) {
        const rate = lastRate(s, kind + ":" + r);
        if (items.length > 0) items.push(", ");
        items.push(
          el(
            "span",
            { class: "reason", "data-reason": r, "data-count": v, "data-rate": rate ?? "" },
            el("code", null, r),
            " " + fmtCount(v) + (rate === null ? "" : " (" + fmtRate(rate) + "/s)"),
          ),
        );
      }
      parts.push(el("span", { class: "reasons", "data-kind": kind }, el("span", { class: "muted" }, words + ": "), items));
    }
    return parts;
  }

  function renderNodes(now) {
    const body = byId("nodes-body");
    if (view.nodes.length === 0) {
      body.replaceChildren(
        el("p", { class: "muted" }, "No node has subscribed or reported yet."),
      );
      return;
    }
    const groups = new Map();
    for (const n of view.nodes) {
      const g = n.group || "";
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(n);
    }
    const out = [];
    for (const [g, nodes] of [...groups.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      const connected = nodes.filter((n) => n.connected).length;
      out.push(
        el(
          "h3",
          { "data-group": g },
          groupLabel(g) + ": " + nodes.length + (nodes.length === 1 ? " node, " : " nodes, ") + connected + " connected",
        ),
      );
      const head = el(
        "tr",
        null,
        ["node", "role", "host", "state", "applied", "reported"].map((x) => el("th", null, x)),
        ["in/s", "out/s", "dropped/s", "dropped", "rejected", "connections"].map((x) =>
          el("th", { class: "num" }, x),
        ),
        el("th", null, el("span", { class: "legend" }, el("span", { class: "in" }, "in"), " / ", el("span", { class: "out" }, "out"), " /s")),
      );
      const rows = [];
      for (const n of nodes) {
        const s = series.get("n:" + n.id) || [];
        const c = n.counters || {};
        const applied = num(n.appliedVersion);
        const behind = view.version !== null && applied < view.version;
        const inRate = lastRate(s, "in");
        const outRate = lastRate(s, "out");
        const dropRate = lastRate(s, "dropped");
        rows.push(
          el(
            "tr",
            { class: "node", "data-node": n.id, "data-samples": s.length },
            el("td", null, el("code", null, n.id)),
            el("td", null, n.role || "–"),
            el("td", null, n.hostname || "–"),
            el(
              "td",
              { "data-field": "state", class: n.connected ? "state ok" : "state bad" },
              n.connected ? "connected" : "disconnected",
              !n.connected && n.expiresAt ? el("span", { class: "muted" }, " (forgotten in " + until(n.expiresAt) + ")") : null,
            ),
            el(
              "td",
              { "data-field": "applied", class: behind ? "state warn" : null },
              String(applied) + (behind ? " (behind " + view.version + ")" : ""),
            ),
            el("td", { "data-field": "reported", title: fmtTime(n.lastSeen) }, ago(n.lastSeen)),
            el("td", { class: "num", "data-field": "in-rate", "data-value": inRate ?? "" }, fmtRate(inRate)),
            el("td", { class: "num", "data-field": "out-rate", "data-value": outRate ?? "" }, fmtRate(outRate)),
            el("td", { class: "num", "data-field": "dropped-rate", "data-value": dropRate ?? "" }, fmtRate(dropRate)),
            el("td", { class: "num", "data-field": "dropped" }, fmtCount(num(c.dropped))),
            el("td", { class: "num", "data-field": "rejected" }, fmtCount(num(c.rejected))),
            el("td", { class: "num", "data-field": "connections" }, fmtCount(num(c.connections))),
            el(
              "td",
              null,
              sparkline(
                [
                  { name: "in/s", cls: "in", points: rateSeries(s, "in", now - GRAPH_MS) },
                  { name: "out/s", cls: "out", points: rateSeries(s, "out", now - GRAPH_MS) },
                ],
                now,
                "node " + n.id + " datapoints in and out per second",
              ),
            ),
          ),
        );
        const reasons = reasonParts(NODE_REASONS, c, s);
        if (reasons.length > 0) {
          rows.push(
            el(
              "tr",
              { class: "reasons", "data-node": n.id },
              el("td", { colspan: 13 }, el("span", { class: "muted" }, "by reason: "), reasons),
            ),
          );
        }
        const dests = n.destinations || [];
        if (dests.length > 0) rows.push(el("tr", { class: "dest" }, el("td", { colspan: 13 }, destTable(n, dests, now))));
      }
      out.push(el("table", { class: "nodes", "data-group": g }, el("thead", null, head), el("tbody", null, rows)));
    }
    body.replaceChildren(...out);
  }

  function destTable(n, dests, now) {
    const head = el(
      "tr",
      null,
      el("th", null, "destination"),
      el("th", null, "state"),
      ["out/s", "dropped/s", "queued", "queued bytes", "on disk", "oldest queued", "dropped", "resent"].map((x) =>
        el("th", { class: "num" }, x),
      ),
      el("th", null, el("span", { class: "legend" }, el("span", { class: "out" }, "out/s"), " / ", el("span", { class: "queue" }, "queued"))),
    );
    const rows = dests.flatMap((d) => {
      const s = series.get("d:" + n.id + " " + d.spec) || [];
      const reasons = reasonParts(DEST_REASONS, d, s);
      const detail =
        reasons.length === 0 && !d.lastError
          ? null
          : el(
              "tr",
              { class: "dest-detail", "data-dest": d.spec },
              el(
                "td",
                { colspan: 11 },
                reasons,
                d.lastError
                  ? el(
                      "span",
                      { class: "last-error", "data-field": "last-error" },
                      reasons.length > 0 ? " · " : "",
                      el("span", { class: "muted" }, "last error: "),
                      d.lastError,
                    )
                  : null,
              ),
            );
      const outRate = lastRate(s, "out");
      const dropRate = lastRate(s, "dropped");
      const diskPoints = num(d.diskDatapoints);
      const row = el(
        "tr",
        { class: "dest", "data-dest": d.spec, "data-samples": s.length },
        el("td", null, el("code", null, d.spec)),
        el("td", { class: stateClass(d.state), "data-field": "state" }, d.state || "–"),
        el("td", { class: "num", "data-field": "out-rate", "data-value": outRate ?? "" }, fmtRate(outRate)),
        el("td", { class: "num", "data-field": "dropped-rate", "data-value": dropRate ?? "" }, fmtRate(dropRate)),
        el("td", { class: "num", "data-field": "queued" }, fmtCount(num(d.queued))),
        el("td", { class: "num" }, fmtBytes(num(d.queuedBytes))),
        el("td", { class: "num" }, diskPoints > 0 ? fmtCount(diskPoints) + " (" + fmtBytes(num(d.diskBytes)) + ")" : "–"),
        el("td", { class: "num" }, num(d.oldestQueuedSeconds) > 0 ? fmtDuration(num(d.oldestQueuedSeconds)) : "–"),
        el("td", { class: "num", "data-field": "dropped" }, fmtCount(num(d.dropped))),
        el("td", { class: "num" }, fmtCount(num(d.resent))),
        el(
          "td",
          null,
          sparkline(
            [
              { name: "out/s", cls: "out", points: rateSeries(s, "out", now - GRAPH_MS) },
              { name: "queued", cls: "queue", points: gaugeSeries(s, "queued", now - GRAPH_MS) },
            ],
            now,
            "destination " + d.spec + " of node " + n.id,
          ),
        ),
      );
      return detail === null ? [row] : [row, detail];
    });
    return el("table", { class: "dests" }, el("thead", null, head), el("tbody", null, rows));
  }

  function describeRouting(r) {
    if (!r) return "broadcast (no routing policy)";
    const d = r.distribution || "DISTRIBUTION_UNSPECIFIED";
    if (d === "DISTRIBUTION_BROADCAST") return "broadcast";
    if (d !== "DISTRIBUTION_HASH_ROUTE") return d;
    const parts = ["hash-route"];
    if (r.hash) parts.push("hash " + r.hash);
    if (r.compat) parts.push("compat " + r.compat);
    parts.push("replication " + (r.replication || 1));
    parts.push("diverse replicas " + (r.diverseReplicas ? "true" : "false"));
    if (r.router) parts.push("router " + r.router);
    if (r.normalize) parts.push("normalize " + r.normalize);
    return parts.join(", ");
  }

  function decodeRules(rules) {
    const b64 = (rules && rules.content) || "";
    try {
      const bin = atob(b64.replace(/-/g, "+").replace(/_/g, "/"));
      const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
      return new TextDecoder("utf-8").decode(bytes);
    } catch {
      return "(the rules could not be decoded)";
    }
  }

  function rulesBlock(rules, inherited) {
    if (!rules) return el("span", { class: "muted" }, inherited ? "none (nor the fleet's)" : "none");
    const text = decodeRules(rules);
    return el(
      "details",
      { "data-rules": rules.fileName || "" },
      el(
        "summary",
        null,
        (rules.fileName || "rules") + ", " + text.split("\n").filter((l) => l !== "").length + " lines" +
          (inherited ? " (the fleet's, inherited)" : "") +
          "; while in effect, destinations and routing are not used",
      ),
      el("pre", null, text),
    );
  }

  function renderConfig() {
    const cfg = view.config;
    const body = byId("config-body");
    if (!cfg) return;
    const groups = new Set();
    for (const n of view.nodes) groups.add(n.group || "");
    for (const d of cfg.destinations) if (d.scope && !d.scope.all) groups.add(d.scope.group || "");
    for (const r of cfg.routing) if (r.scope && !r.scope.all) groups.add(r.scope.group || "");
    for (const r of cfg.rules) if (r.scope && !r.scope.all) groups.add(r.scope.group || "");
    const routingOf = new Map(cfg.routing.map((r) => [scopeKey(r.scope), r.routing]));
    const rulesOf = new Map(cfg.rules.map((r) => [scopeKey(r.scope), r.rules]));
    const destsOf = (key) => cfg.destinations.filter((d) => scopeKey(d.scope) === key).map((d) => d.spec);
    const list = (specs) =>
      specs.length === 0
        ? el("span", { class: "muted" }, "none")
        : el("ul", { class: "plain" }, specs.map((s) => el("li", { "data-spec": s }, s)));
    const out = [];
    const fleetRouting = routingOf.get("all");
    const fleetRules = rulesOf.get("all");
    out.push(
      el(
        "div",
        { class: "scope", "data-scope": "all" },
        el("h3", null, "all nodes (fleet-wide)"),
        el(
          "dl",
          { class: "kv" },
          el("dt", null, "destinations"),
          el("dd", null, list(destsOf("all"))),
          el("dt", null, "routing"),
          el("dd", { "data-field": "routing" }, describeRouting(fleetRouting)),
          el("dt", null, "rules"),
          el("dd", null, rulesBlock(fleetRules, false)),
        ),
      ),
    );
    for (const g of [...groups].sort()) {
      const key = "group:" + g;
      const own = routingOf.get(key);
      const ownRules = rulesOf.get(key);
      const fleetDests = destsOf("all").length;
      out.push(
        el(
          "div",
          { class: "scope", "data-scope": key },
          el("h3", null, groupLabel(g)),
          el(
            "dl",
            { class: "kv" },
            el("dt", null, "destinations"),
            el(
              "dd",
              null,
              list(destsOf(key)),
              fleetDests > 0
                ? el("span", { class: "muted" }, " (its nodes also get the " + fleetDests + " fleet-wide)")
                : null,
            ),
            el("dt", null, "routing"),
            el(
              "dd",
              { "data-field": "routing" },
              own
                ? describeRouting(own)
                : fleetRouting
                  ? describeRouting(fleetRouting) + " (the fleet's, inherited)"
                  : describeRouting(undefined),
            ),
            el("dt", null, "rules"),
            el("dd", null, ownRules ? rulesBlock(ownRules, false) : rulesBlock(fleetRules, true)),
          ),
        ),
      );
    }
    body.replaceChildren(...out);
  }

  function renderKeys() {
    const cfg = view.config;
    if (!cfg) return;
    const body = byId("keys-body");
    if (cfg.keys.length === 0) {
      body.replaceChildren(el("p", { class: "muted" }, "No API keys (polymurctl key create NAME)."));
      return;
    }
    body.replaceChildren(
      el(
        "table",
        null,
        el("thead", null, el("tr", null, el("th", null, "name"), el("th", null, "created"), el("th", null, "rotated"))),
        el(
          "tbody",
          null,
          cfg.keys.map((k) =>
            el(
              "tr",
              { "data-key": k.name },
              el("td", null, el("code", null, k.name)),
              el("td", null, fmtTime(k.createdAt)),
              el("td", null, k.rotatedAt ? fmtTime(k.rotatedAt) : "never"),
            ),
          ),
        ),
      ),
      el("p", { class: "muted" }, "Secrets are shown once, by polymurctl key create or rotate; the control plane keeps only their digests."),
    );
  }

  function kindName(kind) {
    return String(kind || "CHANGE_KIND_UNSPECIFIED")
      .replace(/^CHANGE_KIND_/, "")
      .toLowerCase()
      .replace(/_/g, " ");
  }

  function renderHistory() {
    const body = byId("history-body");
    const h = view.history;
    if (h === null) {
      body.replaceChildren(
        el("p", { class: "muted" }, "This control plane keeps no history of changes (its API has no ListHistory)."),
      );
      return;
    }
    if (h.entries.length === 0) {
      body.replaceChildren(el("p", { class: "muted" }, "No change recorded yet."));
      return;
    }
    body.replaceChildren(
      el(
        "p",
        { class: "muted" },
        "Newest first; the control plane keeps the last " + num(h.keptVersions) + " versions (polymurctl history, rollback).",
      ),
      el(
        "table",
        null,
        el(
          "thead",
          null,
          el("tr", null, ["version", "when", "change", "what", "who", "replica"].map((x) => el("th", null, x))),
        ),
        el(
          "tbody",
          null,
          h.entries.map((e) =>
            el(
              "tr",
              { "data-version": num(e.version) },
              el("td", { class: "num" }, String(num(e.version))),
              el("td", { title: fmtTime(e.time) }, fmtTime(e.time) + " (" + ago(e.time) + ")"),
              el("td", null, kindName(e.kind)),
              el("td", null, el("code", null, e.summary || e.subject || "")),
              el("td", null, e.actor || "–"),
              el("td", null, e.replica || "–"),
            ),
          ),
        ),
      ),
    );
  }

  /** The history, or null when the control plane has no ListHistory (an older one). */
  async function readHistory() {
    try {
      const h = await call("ListHistory");
      return { entries: h.entries || [], keptVersions: h.keptVersions || 0 };
    } catch (err) {
      if (err instanceof RpcError && (err.code === "unimplemented" || err.code === "not_found")) return null;
      throw err;
    }
  }

  function renderSummary() {
    const s = byId("summary");
    if (view.version === null) {
      s.textContent = "not connected";
      s.removeAttribute("data-version");
      return;
    }
    const connected = view.nodes.filter((n) => n.connected).length;
    s.setAttribute("data-version", String(view.version));
    s.textContent =
      location.host +
      ": state version " + view.version +
      ", " + view.nodes.length + (view.nodes.length === 1 ? " node" : " nodes") +
      " (" + connected + " connected), updated " + new Date(view.at).toLocaleTimeString("en-GB");
  }

  function render() {
    const now = Date.now();
    renderSummary();
    renderNodes(now);
    renderConfig();
    renderKeys();
    renderHistory();
    byId("main").hidden = false;
  }

  // --- refusals and trouble ------------------------------------------------------------

  function showRefusal(err, hadToken) {
    const box = byId("refusal");
    if (err === null) {
      box.hidden = true;
      box.replaceChildren();
      box.removeAttribute("data-code");
      return;
    }
    box.setAttribute("data-code", err.code);
    box.replaceChildren(
      el(
        "strong",
        null,
        hadToken
          ? "Refused: the control plane does not accept this token."
          : "Refused: no admin token. Type the control plane's admin token (POLYMUR_ADMIN_TOKEN) above.",
      ),
      el("span", { class: "reason" }, err.message),
      " ",
      el("code", null, "(" + err.code + (err.polymurCode ? ", " + err.polymurCode : "") + ")"),
    );
    box.hidden = false;
  }

  function showTrouble(err) {
    const box = byId("trouble");
    if (err === null) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.replaceChildren(
      el("strong", null, "Cannot read the control plane: "),
      err.message,
      " (" + err.code + "); retrying every " + POLL_MS / 1000 + " s. What is shown is from " +
        (view.at ? new Date(view.at).toLocaleTimeString("en-GB") : "nothing yet") + ".",
    );
    box.hidden = false;
  }

  function forgetView() {
    view.version = null;
    view.config = null;
    view.nodes = [];
    view.history = null;
    view.at = 0;
    series.clear();
    byId("main").hidden = true;
    for (const id of ["nodes-body", "config-body", "keys-body", "history-body"]) byId(id).replaceChildren();
    renderSummary();
  }

  // --- polling -------------------------------------------------------------------------

  let generation = 0;
  let timer = null;

  function schedule(gen) {
    clearTimeout(timer);
    timer = setTimeout(() => void poll(gen), POLL_MS);
  }

  function ingest(nodes) {
    const t = Date.now();
    const seen = new Set();
    for (const n of nodes) {
      const c = n.counters || {};
      track(
        "n:" + n.id,
        t,
        reasonCounters(NODE_REASONS, c, {
          in: num(c.received),
          out: num(c.forwarded),
          dropped: num(c.dropped),
          rejected: num(c.rejected),
        }),
        {},
        seen,
      );
      for (const d of n.destinations || []) {
        track(
          "d:" + n.id + " " + d.spec,
          t,
          reasonCounters(DEST_REASONS, d, { out: num(d.forwarded), dropped: num(d.dropped) }),
          { queued: num(d.queued) },
          seen,
        );
      }
    }
    for (const key of [...series.keys()]) if (!seen.has(key)) series.delete(key);
  }

  async function poll(gen) {
    if (gen !== generation) return;
    const hadToken = getToken() !== "";
    try {
      const listed = await call("ListNodes");
      if (gen !== generation) return;
      const version = num(listed.version);
      if (view.config === null || version !== view.version) {
        const [d, r, ru, k, h] = await Promise.all([
          call("ListDestinations"),
          call("GetRouting"),
          call("GetRules"),
          call("ListKeys"),
          readHistory(),
        ]);
        if (gen !== generation) return;
        view.config = {
          destinations: d.destinations || [],
          routing: r.routing || [],
          rules: ru.rules || [],
          keys: k.keys || [],
        };
        view.history = h;
      }
      view.version = version;
      view.nodes = listed.nodes || [];
      view.at = Date.now();
      ingest(view.nodes);
      showRefusal(null);
      showTrouble(null);
      render();
      schedule(gen);
    } catch (err) {
      if (gen !== generation) return;
      const e = err instanceof RpcError ? err : new RpcError("unknown", String(err && err.message), "");
      if (REFUSED.has(e.code)) {
        // Nothing more is shown, or asked, with a credential the control plane refuses.
        setToken("");
        forgetView();
        showTrouble(null);
        showRefusal(e, hadToken);
        byId("token").focus();
        return;
      }
      showTrouble(e);
      schedule(gen);
    }
  }

  function restart() {
    generation++;
    clearTimeout(timer);
    void poll(generation);
  }

  function start() {
    byId("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = byId("token");
      setToken(input.value.trim());
      input.value = "";
      forgetView();
      restart();
    });
    byId("forget-token").addEventListener("click", () => {
      setToken("");
      forgetView();
      restart();
    });
    restart();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
`;
