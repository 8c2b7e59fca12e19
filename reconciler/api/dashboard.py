"""The dashboard at ``/``: one static page (no build step) that fetches ``/api/v1/status`` every second and
updates the DOM in place: nodes, instances grouped by node with a filter box (FPS one line per camera, named from
``/api/v1/instances`` whenever the revision changes), the last revision with its errors, a log panel per instance
(``/api/v1/instances/{name}/logs``, shown as text, never as HTML), and Apply / Refresh buttons that ask for the
API token (kept in the tab's sessionStorage only). The buttons are left out when the server cannot take them: no
API token configured (writes disabled), or nothing to send them to. Rendering is one ``innerHTML`` per table per
second, so 250 nodes and 1,000 instances stay responsive."""

from __future__ import annotations

__all__ = ["PAGE", "page"]


def page(*, apply: bool, refresh: bool) -> str:
    """The page with the Apply / Refresh buttons only where the server can take them."""
    shown = {"__APPLY__": apply, "__REFRESH__": refresh}
    text = PAGE
    for mark, on in shown.items():
        text = text.replace(mark, "" if on else " hidden")
    return text.replace("__READONLY__", "" if apply or refresh else "read-only")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dsfleet</title>
<style>
 body{font:13px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
 header{display:flex;gap:12px;align-items:center;padding:8px 16px;background:#24292f;color:#fff;flex-wrap:wrap}
 header h1{font-size:16px;margin:0 12px 0 0}
 header input[type=search]{padding:4px 8px;min-width:240px}
 button{padding:4px 12px;cursor:pointer}
 main{padding:8px 16px}
 section{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:8px 0;padding:8px}
 h2{font-size:14px;margin:4px 0 8px}
 table{border-collapse:collapse;width:100%}
 th,td{text-align:left;padding:2px 8px;border-bottom:1px solid #eaeef2;white-space:nowrap}
 td.reason{white-space:normal;color:#57606a}
 tr.group td{background:#eaeef2;font-weight:600}
 .Synced,.Healthy,.online{color:#1a7f37}.OutOfSync,.Degraded{color:#9a6700}.Progressing{color:#0969da}
 .Failed,.offline,.rejected{color:#cf222e;font-weight:600}.Unknown{color:#6e7781}.accepted{color:#1a7f37}
 #msg{margin-left:auto;font-size:12px}
 .muted{color:#6e7781}
 td.fps{white-space:pre;font-variant-numeric:tabular-nums}
 button.logs{padding:0 6px;font-size:12px}
 #logs[hidden]{display:none}
 #logs .bar{display:flex;gap:8px;align-items:center;margin-bottom:6px}
 #log-text{max-height:420px;overflow:auto;background:#0d1117;color:#e6edf3;padding:8px;margin:0;
  font:12px/1.35 ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
</style>
</head>
<body>
<header>
 <h1>dsfleet</h1>
 <input id="filter" type="search" placeholder="filter: node, instance, state, health…" autocomplete="off">
 <label><input id="group" type="checkbox" checked> group by node</label>
 <button id="apply" type="button"__APPLY__>Apply</button>
 <button id="refresh" type="button"__REFRESH__>Refresh</button>
 <span id="msg" class="muted">__READONLY__</span>
</header>
<main>
 <section id="summary-box"><span id="summary" class="muted">loading…</span><div id="fleet" class="muted"></div></section>
 <section><h2>Last revision</h2><div id="revision" class="muted">-</div><div id="pending"></div></section>
 <section><h2>Nodes</h2><table><thead><tr><th>Node</th><th>Status</th><th>Last seen</th><th>Agent</th>
  <th>GPUs</th><th>Instances / capacity</th><th>Gen desired/observed</th><th>Sync</th></tr></thead>
  <tbody id="nodes"></tbody></table></section>
 <section><h2>Instances</h2><table><thead><tr><th>Instance</th><th>Node</th><th>Sync</th><th>Health</th>
  <th>State</th><th>Gen desired/observed</th><th>Restarts</th><th>FPS per camera</th><th>Drift</th>
  <th>Reason</th><th>Log</th></tr></thead><tbody id="instances"></tbody></table></section>
 <section id="logs" hidden><div class="bar"><h2>Log of <span id="log-name"></span></h2>
  <span id="log-info" class="muted"></span>
  <label>lines <select id="log-tail"><option>100</option><option selected>200</option><option>1000</option>
  </select></label><button id="log-reload" type="button">Reload</button>
  <button id="log-close" type="button">Close</button></div><pre id="log-text"></pre></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "-").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
let last = null, busy = false, sources = {}, sourcesOf = undefined, logName = null;
function ago(iso, now) {
  if (!iso) return "never";
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  return s < 120 ? s.toFixed(0) + "s ago" : s < 7200 ? (s / 60).toFixed(0) + "m ago" : (s / 3600).toFixed(0) + "h ago";
}
function auth() { const t = sessionStorage.getItem("dsfleet-token"); return t ? {Authorization: "Bearer " + t} : {}; }
function fps(i) {
  const f = i.fps || {}, names = sources[i.name] || [];
  const k = Object.keys(f).sort((a, b) => Number(a) - Number(b));
  if (!k.length) return "-";
  return k.map((x) => (names[Number(x)] || "source " + x) + ": " + Number(f[x]).toFixed(1) + " fps").join("\\n");
}
async function loadSources(revision) {
  if (revision === sourcesOf) return;
  sourcesOf = revision;
  try {
    const res = await fetch("/api/v1/instances", {headers: auth(), cache: "no-store"});
    if (!res.ok) return;
    const next = {};
    for (const i of await res.json()) if (i.sources && i.sources.length) next[i.name] = i.sources;
    sources = next; if (last) render(last);
  } catch (e) { sourcesOf = undefined; }
}
async function showLog(name) {
  logName = name;
  $("logs").hidden = false; $("log-name").textContent = name; $("log-info").textContent = "asking the node…";
  const res = await fetch(`/api/v1/instances/${encodeURIComponent(name)}/logs?tail=${$("log-tail").value}`,
    {headers: auth(), cache: "no-store"}).catch(() => null);
  if (name !== logName) return;
  let body = {}; try { body = res ? await res.json() : {}; } catch (e) {}
  $("logs").dataset.status = String(res ? res.status : 0);
  if (res && res.ok) {
    $("log-text").textContent = body.text || "";
    $("log-info").textContent = `node ${body.node} · ${body.fetchedAt}` + (body.truncated ? " · older lines left out" : "") +
      (body.error ? " · " + body.error : "");
    $("log-text").scrollTop = $("log-text").scrollHeight;
  } else {
    $("log-text").textContent = "";
    $("log-info").textContent = res ? `HTTP ${res.status}: ${(body.error && body.error.message) || ""}` : "coordinator unreachable";
  }
}
const plural = (n, word) => `${n} ${n === 1 ? word : word + "s"}`;
function matches(text, q) { return !q || text.toLowerCase().includes(q); }
function render(doc) {
  const now = Date.parse(doc.generatedAt);
  const q = $("filter").value.trim().toLowerCase();
  const s = doc.summary;
  $("summary").textContent = `${s.nodes.online}/${s.nodes.total} nodes online · ${plural(s.instances.total, "instance")} · ` +
    Object.entries(s.instances.sync).map(([k, v]) => v + " " + k).join(", ") + " · " +
    Object.entries(s.instances.health).map(([k, v]) => v + " " + k).join(", ") +
    ` · drift ${s.instances.drift} unhealed` +
    (s.instances.driftEvents != null ? ` (${s.instances.driftEvents} in all)` : "");
  const c = doc.coordinator, lines = [];
  if (!c) { if (c === null) lines.push(["Unknown", "coordinator: none has run on this store"]); }
  else {
    lines.push([c.running ? "Synced" : "Failed", c.summary]);
    if (c.broker.configured) lines.push([c.broker.reachable ? "Synced" : "Failed", c.broker.summary]);
    if (c.foreignConfigs.count) lines.push(["Failed", `another writer: ${c.foreignConfigs.count} AgentConfig ` +
      `record(s) this coordinator did not write; last: ${c.foreignConfigs.last}`]);
  }
  if (doc.outbox && doc.outbox.depth) lines.push(["OutOfSync", doc.outbox.summary]);
  $("fleet").innerHTML = lines.map(([k, t]) => `<div class="${k}" data-fleet="${k}">${esc(t)}</div>`).join("");
  const r = doc.revision;
  if (r) {
    const errs = (r.errors || []).slice(0, 20).map((e) =>
      `<div class="rejected">${esc([e.file, e.line, e.column].filter((x) => x != null).join(":"))}: ${esc(e.message)}</div>`).join("");
    $("revision").innerHTML = `#${r.id} <span class="${r.accepted ? "accepted" : "rejected"}">${r.accepted ? "accepted" : "rejected"}</span>` +
      ` · ${esc(r.source)}` + (r.commit ? ` · commit <code>${esc(r.commit.slice(0, 12))}</code>` : "") +
      (r.author ? ` · ${esc(r.author)}` : "") + (r.subject ? ` · ${esc(r.subject)}` : "") +
      ` · ${esc(r.createdAt)} · ${plural(r.nodesChanged, "node")} changed` + errs;
  } else { $("revision").textContent = "no revision yet"; }
  const p = doc.pendingPlan;
  $("pending").innerHTML = p ? `<b>pending plan (manual sync):</b> ${esc(p.text || (p.valid === false ? "invalid manifests" : ""))}` : "";
  for (const n of doc.nodes) n.state = n.state || (n.online ? "online" : "offline");
  const nodes = doc.nodes.filter((n) => matches(`${n.name} ${n.state} ${n.sync}`, q));
  $("nodes").innerHTML = nodes.map((n) => `<tr data-node="${esc(n.name)}"><td>${esc(n.name)}</td>` +
    `<td class="${n.state === "unknown" ? "Unknown" : n.state}" title="${esc(n.stateReason || "")}">${n.state}` +
    `${n.retiring ? " (retiring)" : ""}</td>` +
    `<td>${esc(ago(n.lastSeen, now))}</td><td>${esc(n.agentVersion)}</td>` +
    `<td>${esc((n.gpus || []).map((g) => g.name || g.index).join(", ") || "-")}</td>` +
    `<td>${n.instances} / ${esc(n.capacity)}</td><td>${esc(n.desiredGeneration)}/${esc(n.observedGeneration)}</td>` +
    `<td class="${n.sync}">${n.sync}</td></tr>`).join("");
  const rows = doc.instances.filter((i) => matches(`${i.name} ${i.node} ${i.sync} ${i.health} ${i.state}`, q));
  const group = $("group").checked;
  let html = "", node = null;
  for (const i of rows) {
    if (group && i.node !== node) { node = i.node; html += `<tr class="group"><td colspan="11">${esc(node)}</td></tr>`; }
    html += `<tr data-instance="${esc(i.name)}"><td>${esc(i.name)}</td><td>${esc(i.node)}</td>` +
      `<td class="sync ${i.sync}">${i.sync}</td><td class="health ${i.health}">${i.health}</td>` +
      `<td class="state">${esc(i.state)}</td><td>${esc(i.desiredGeneration)}/${esc(i.observedGeneration)}</td>` +
      `<td>${i.restarts}</td><td class="fps">${esc(fps(i))}</td><td>${(i.drift || []).length}</td>` +
      `<td class="reason">${esc(i.reason)}</td><td><button class="logs" type="button">log</button></td></tr>`;
  }
  $("instances").innerHTML = html;
}
async function tick() {
  if (busy) return; busy = true;
  try {
    const res = await fetch("/api/v1/status", {headers: auth(), cache: "no-store"});
    if (res.ok) {
      last = await res.json(); render(last); document.body.dataset.updated = last.generatedAt;
      loadSources(last.revision ? last.revision.id : null);
    }
    else if (res.status === 401) {
      sessionStorage.removeItem("dsfleet-token");
      $("summary").innerHTML = 'this server needs a token for reads: <button id="signin" type="button">sign in</button>';
      $("signin").addEventListener("click", () => { const v = window.prompt("API token"); if (v) sessionStorage.setItem("dsfleet-token", v); });
    }
    else { $("summary").textContent = "status: HTTP " + res.status; }
  } catch (e) { $("summary").textContent = "coordinator unreachable"; }
  finally { busy = false; }
}
async function post(path) {
  let t = sessionStorage.getItem("dsfleet-token");
  if (!t) { t = window.prompt("API token"); if (!t) return; sessionStorage.setItem("dsfleet-token", t); }
  const res = await fetch(path, {method: "POST", headers: {Authorization: "Bearer " + t, "Content-Type": "application/json"}, body: "{}"});
  let body = {}; try { body = await res.json(); } catch (e) {}
  if (res.status === 401) sessionStorage.removeItem("dsfleet-token");
  $("msg").textContent = res.ok ? `${path.split("/").pop()}: accepted (${body.detail || body.requestId})`
    : `${path.split("/").pop()}: ${res.status} ${(body.error && body.error.message) || ""}`;
  $("msg").dataset.status = String(res.status);
}
$("apply").addEventListener("click", () => post("/api/v1/apply"));
$("refresh").addEventListener("click", () => post("/api/v1/refresh"));
$("instances").addEventListener("click", (e) => {
  const b = e.target.closest("button.logs"); if (b) showLog(b.closest("tr").dataset.instance);
});
$("log-reload").addEventListener("click", () => logName && showLog(logName));
$("log-tail").addEventListener("change", () => logName && showLog(logName));
$("log-close").addEventListener("click", () => { logName = null; $("logs").hidden = true; });
$("filter").addEventListener("input", () => last && render(last));
$("group").addEventListener("change", () => last && render(last));
tick(); setInterval(tick, 1000);
</script>
</body>
</html>
"""
