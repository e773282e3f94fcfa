// patience-daemon dashboard: reads the JSON API every 2 s and redraws; charts are SVG drawn
// here. Text from the daemon (resource ids, commands, labels) only ever goes into textContent
// or SVG text nodes, never into markup. No inline script: the CSP allows this file alone.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 2000;
  const RANGES = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400 };
  const COLOURS = 8;
  const RECENT_RUNS = 500; // the failures shown are among the most recent runs
  const FAILURES_SHOWN = 20;
  const RESOLVED_SHOWN = 10; // resolved alerts shown: the newest, ended within RESOLVED_WITHIN
  const RESOLVED_WITHIN = 86400;
  const STATUS_ORDER = { firing: 0, pending: 1, resolved: 2 };
  const TOOL_NAMES = { repeater: "rpr", patience: "patience" }; // as people call them
  const toolName = (tool) => TOOL_NAMES[tool] || tool;
  const view = { range: "1h", group: "resource", token: readToken(), timer: null };

  function readToken() {
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (match) {
      sessionStorage.setItem("patience-token", decodeURIComponent(match[1]));
      history.replaceState(null, "", window.location.pathname); // the token leaves the URL bar
    }
    return sessionStorage.getItem("patience-token");
  }

  class Unauthorised extends Error {}

  async function get(path) {
    const headers = { Accept: "application/json" };
    if (view.token) headers.Authorization = "Bearer " + view.token;
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) throw new Unauthorised("token needed");
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return Math.round(seconds * 1000) + "ms";
    if (seconds < 60) return (Math.round(seconds * 100) / 100) + "s";
    const units = [[86400, "d"], [3600, "h"], [60, "m"], [1, "s"]];
    const at = units.findIndex(([size]) => seconds >= size);
    const [big, bigName] = units[at], [small, smallName] = units[at + 1];
    const whole = Math.floor(seconds / big), rest = Math.round((seconds % big) / small);
    return whole + bigName + (rest ? rest + smallName : "");
  }

  function percent(ratio) {
    return ratio === null || ratio === undefined ? "–" : (Math.round(ratio * 1000) / 10) + "%";
  }

  function clock(unix) {
    if (!unix) return "–";
    const date = new Date(unix * 1000);
    const today = new Date().toDateString() === date.toDateString();
    return today ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function replaceRows(table, rows) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
  }

  // ---- resources ------------------------------------------------------------------------

  function useBar(limit) {
    const wrap = el("div", null, "usebar");
    const used = limit.limit ? (limit.limit - limit.remaining) / limit.limit : 0;
    const box = svg("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none", role: "img" });
    box.append(svg("title", {}, percent(used) + " of the window used"));
    box.append(svg("rect", { class: "track", x: 0, y: 0, width: 100, height: 10, rx: 2 }));
    const level = used >= 1 ? "fill full" : used >= 0.8 ? "fill high" : "fill";
    box.append(svg("rect", { class: level, x: 0, y: 0, width: Math.max(0, Math.min(100, used * 100)), height: 10, rx: 2 }));
    wrap.append(box, el("span", (limit.limit - limit.remaining) + " / " + limit.limit));
    return wrap;
  }

  function resourceRow(resource) {
    const row = el("tr");
    row.dataset.resource = resource.id;
    const limit = resource.rate_limit;
    const limitCell = el("td", limit ? limit.limit + " per " + duration(limit.window) + " (" + limit.algorithm + ")" : "no limit");
    const learned = limit && limit.learned;
    if (learned) {  // learned from throttle signals, beside the limit it learns under
      const under = learned.configured || learned.declared;
      limitCell.append(el("span", " learned" + (under ? " (from " + under + ")" : ""), "learned"));
    }
    const useCell = el("td");
    if (limit) useCell.append(useBar(limit));
    const tools = Object.entries(resource.clients_by_tool || {}).map(([tool, n]) => toolName(tool) + " " + n).join(", ");
    row.append(
      el("td", resource.id, "id"),
      limitCell,
      useCell,
      el("td", limit ? limit.waiting : 0, "num"),
      el("td", tools || "–"),
      el("td", resource.tokens_granted, "num"),
    );
    return row;
  }

  function showResources(reply) {
    const resources = (reply.resources || []).slice().sort((a, b) => a.id.localeCompare(b.id));
    replaceRows(document.getElementById("resources"), resources.map(resourceRow));
    document.getElementById("resources-empty").hidden = resources.length > 0;
  }

  // ---- charts ---------------------------------------------------------------------------

  function chart(container, lines, options) {
    const width = 320, height = 160, left = 42, right = 8, top = 8, bottom = 20;
    const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    const all = lines.flatMap((line) => line.points.filter((p) => p.value !== null));
    if (all.length === 0) {
      box.append(svg("text", { class: "empty", x: width / 2, y: height / 2, "text-anchor": "middle" }, "no runs in this range"));
      container.replaceChildren(box);
      return;
    }
    const t0 = options.start, t1 = options.end;
    const max = options.max !== undefined ? options.max : Math.max(...all.map((p) => p.value)) || 1;
    const x = (t) => left + ((t - t0) / (t1 - t0 || 1)) * (width - left - right);
    const y = (v) => top + (1 - v / max) * (height - top - bottom);
    for (const fraction of [0, 0.5, 1]) {
      const v = max * fraction;
      box.append(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }));
      box.append(svg("text", { class: "axis", x: left - 4, y: y(v) + 3, "text-anchor": "end" }, options.format(v)));
    }
    box.append(svg("text", { class: "axis", x: left, y: height - 4 }, clock(t0)));
    box.append(svg("text", { class: "axis", x: width - right, y: height - 4, "text-anchor": "end" }, clock(t1)));
    for (const line of lines) {
      let d = "", pen = "M";
      for (const p of line.points) {
        if (p.value === null) { pen = "M"; continue; }
        d += `${pen}${x(p.time).toFixed(1)},${y(p.value).toFixed(1)} `;
        pen = "L";
      }
      if (!d) continue;
      const path = svg("path", { class: "series s" + line.colour, d: d.trim() });
      path.append(svg("title", {}, line.name));
      box.append(path);
      const single = line.points.filter((p) => p.value !== null);
      if (single.length === 1) {
        box.append(svg("circle", { class: "dot s" + line.colour, cx: x(single[0].time), cy: y(single[0].value), r: 2.5 }));
      }
    }
    container.replaceChildren(box);
  }

  function showSeries(reply) {
    const series = reply.series || [];
    const start = reply.start, end = reply.end;
    const name = (s) => (view.group === "tool" ? toolName(s.tool) : s.resource_id);
    const step = reply.step || 60;
    const mid = step / 2;
    const lines = (pick) => series.map((s, i) => ({
      name: name(s),
      colour: i % COLOURS,
      points: s.points.map((p) => ({ time: p.time + mid, value: pick(p) })),
    }));
    chart(document.getElementById("chart-runs"), lines((p) => (p.runs * 60) / step), {
      start, end, format: (v) => (Math.round(v * 10) / 10).toString(),
    });
    chart(document.getElementById("chart-success"), lines((p) => (p.runs ? p.success_rate : null)), {
      start, end, max: 1, format: percent,
    });
    chart(document.getElementById("chart-p95"), lines((p) => (p.runs ? p.duration_p95 : null)), {
      start, end, format: duration,
    });
    const legend = document.getElementById("legend");
    legend.replaceChildren(...series.map((s, i) => {
      const item = el("li");
      const swatch = svg("svg", { viewBox: "0 0 10 10" });
      swatch.append(svg("rect", { class: "s" + (i % COLOURS), width: 10, height: 10, rx: 2 }));
      item.append(swatch, el("span", name(s)));
      return item;
    }));
  }

  // ---- tools and failures ---------------------------------------------------------------

  // The tools side by side, from the per-tool series' totals (rollups: the cost does not grow
  // with the number of runs, unlike a query over the raw records).
  function showTools(reply) {
    replaceRows(document.getElementById("tools"), (reply.series || []).map((s) => {
      const t = s.total, row = el("tr");
      row.append(
        el("td", toolName(s.tool)),
        el("td", t.runs, "num"),
        el("td", percent(t.success_rate), "num"),
        el("td", duration(t.duration_mean), "num"),
        el("td", duration(t.duration_p50), "num"),
        el("td", duration(t.duration_p95), "num"),
        el("td", clock(t.last_run), "num"),
      );
      return row;
    }));
  }

  function showFailures(runs) {
    const failures = runs.filter((r) => !r.success).slice(0, FAILURES_SHOWN);
    replaceRows(document.getElementById("failures"), failures.map((r) => {
      const row = el("tr");
      row.append(
        el("td", clock(r.start_time), "num"),
        el("td", toolName(r.tool)),
        el("td", r.resource_id, "id"),
        el("td", r.exit_code, "num bad"),
        el("td", duration(r.duration), "num"),
        el("td", (r.command || []).join(" "), "command"),
      );
      return row;
    }));
    document.getElementById("failures-empty").hidden = failures.length > 0;
  }

  // ---- alerts ---------------------------------------------------------------------------

  // Firing, then pending (each oldest first, as the daemon lists them), then the newest
  // resolved ones of the last day.
  function shownAlerts(alerts, now) {
    const active = alerts.filter((a) => a.status !== "resolved");
    const resolved = alerts
      .filter((a) => a.status === "resolved" && now - a.ends_at <= RESOLVED_WITHIN)
      .sort((a, b) => b.ends_at - a.ends_at)
      .slice(0, RESOLVED_SHOWN);
    active.sort((a, b) => STATUS_ORDER[a.status] - STATUS_ORDER[b.status]);
    return [...active, ...resolved];
  }

  function alertRow(alert) {
    const row = el("tr", null, "alert " + alert.status);
    row.dataset.rule = alert.rule;
    row.dataset.resource = alert.resource;
    row.append(
      el("td", alert.status, "status"),
      el("td", alert.rule),
      el("td", alert.resource, "id"),
      el("td", clock(alert.starts_at), "num"),
      el("td", clock(alert.ends_at), "num"),
      el("td", (alert.tools || []).map(toolName).join(", ") || "–"),
      el("td", (alert.clients || []).join(", ") || "–", "id"),
      el("td", alert.summary),
    );
    return row;
  }

  // A notifier that failed says so: its counters and its last error.
  function notifierNotice(n) {
    const text = n.notifier + " notifier: failed tries " + n.failures + " · dropped " + n.dropped +
      " · queued " + n.queued + " · delivered " + n.sent + " · last error at " +
      clock(n.last_error_at) + ": " + n.last_error;
    return el("li", text, "bad");
  }

  function showAlerts(reply) {
    const alerts = shownAlerts(reply.alerts || [], Date.now() / 1000);
    const table = document.getElementById("alerts");
    replaceRows(table, alerts.map(alertRow));
    table.hidden = alerts.length === 0; // no header over nothing
    document.getElementById("alerts-empty").hidden = alerts.some((a) => a.status !== "resolved");
    const failing = (reply.notifiers || []).filter((n) => n.last_error);
    document.getElementById("notifiers").replaceChildren(...failing.map(notifierNotice));
  }

  // ---- fleet (the Redis backend: every daemon sharing this one's Redis) ------------------

  function fleetResources(daemon) {
    const parts = (daemon.resources || []).map((r) => {
      let text = r.id + ": " + r.granted;
      if (r.limit !== null && r.limit !== undefined) text += " of " + r.limit + " per " + duration(r.window);
      if (r.share !== null && r.share !== undefined) text += " (" + percent(r.share) + ")";
      return text;
    });
    if (daemon.omitted) parts.push("and " + daemon.omitted + " more");
    return parts.join("; ") || "–";
  }

  function fleetRow(daemon, now) {
    const row = el("tr", null, daemon.self ? "self" : "");
    row.dataset.daemon = daemon.id;
    const tools = Object.entries(daemon.clients || {}).map(([tool, n]) => toolName(tool) + " " + n).join(", ");
    row.append(
      el("td", daemon.host + (daemon.self ? " (this daemon)" : ""), "id"),
      el("td", daemon.pid, "num"),
      el("td", daemon.version),
      el("td", duration(Math.max(0, Math.round(now - daemon.started))), "num"),
      el("td", tools || "–"),
      el("td", fleetResources(daemon), "id"),
    );
    return row;
  }

  function showFleet(reply) {
    document.getElementById("fleet-section").hidden = reply === null;
    if (reply === null) return;
    const daemons = reply.daemons || [];
    replaceRows(document.getElementById("fleet"), daemons.map((d) => fleetRow(d, Date.now() / 1000)));
    let note = reply.total + " live daemons";
    if (reply.truncated) note += ", the " + daemons.length + " most recently renewed shown";
    if (!reply.fresh) note += reply.as_of ? " · as of " + clock(reply.as_of) + ": not renewed since" : " · reading…";
    document.getElementById("fleet-note").textContent = note;
  }

  // ---- refresh --------------------------------------------------------------------------

  function showStatus(status) {
    let text = "version " + status.version + " · pid " + status.pid + " · up " + duration(status.uptime) +
      " · " + status.clients + " clients · " + status.waiting + " waiting · backend " + (status.backend || "memory");
    if (status.redis_unreachable_since) text += " (Redis unreachable since " + clock(status.redis_unreachable_since) + ")";
    document.getElementById("daemon").textContent = text;
  }

  function setLive(state, text) {
    const badge = document.getElementById("live");
    badge.dataset.state = state;
    badge.textContent = text;
  }

  async function refresh() {
    const end = Date.now() / 1000;
    const start = end - RANGES[view.range];
    const since = "start=" + Math.floor(start);
    try {
      const byTool = get("/api/v1/timeseries?group_by=tool&" + since);
      const [status, alerts, resources, tools, series, failures] = await Promise.all([
        get("/api/v1/status"),
        get("/api/v1/alerts?all=1"),
        get("/api/v1/resources"),
        byTool,
        view.group === "tool" ? byTool : get("/api/v1/timeseries?group_by=" + view.group + "&" + since),
        get("/api/v1/runs?limit=" + RECENT_RUNS + "&" + since),
      ]);
      showStatus(status);
      showFleet(status.backend === "redis" ? await get("/api/v1/fleet") : null);
      showAlerts(alerts);
      showResources(resources);
      showTools(tools);
      showSeries(series);
      showFailures(failures.runs || []);
      document.getElementById("login").hidden = true;
      setLive("live", "live · " + new Date().toLocaleTimeString());
    } catch (error) {
      if (error instanceof Unauthorised) {
        document.getElementById("login").hidden = false;
        setLive("down", "token needed");
      } else {
        setLive("down", "no answer: " + error.message);
      }
    }
  }

  function schedule() {
    clearTimeout(view.timer);
    refresh().finally(() => { view.timer = setTimeout(schedule, POLL_MS); });
  }

  function press(groupId, attribute, value) {
    for (const button of document.querySelectorAll("#" + groupId + " button")) {
      button.setAttribute("aria-pressed", String(button.dataset[attribute] === value));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("#ranges button")) {
      button.addEventListener("click", () => { view.range = button.dataset.range; press("ranges", "range", view.range); schedule(); });
    }
    for (const button of document.querySelectorAll("#groups button")) {
      button.addEventListener("click", () => { view.group = button.dataset.group; press("groups", "group", view.group); schedule(); });
    }
    document.getElementById("login").addEventListener("submit", (event) => {
      event.preventDefault();
      view.token = document.getElementById("token").value.trim();
      sessionStorage.setItem("patience-token", view.token);
      schedule();
    });
    schedule();
  });
})();
