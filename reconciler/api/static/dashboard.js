// The dashboard's script (served from the package; the page has no inline script).
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
  return k.map((x) => (names[Number(x)] || "source " + x) + ": " + Number(f[x]).toFixed(1) + " fps").join("\n");
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
  if (doc.pin) lines.unshift(["Failed pinned", doc.pin.summary]);
  for (const h of doc.handovers || [])
    lines.push([h.state === "blocked" ? "OutOfSync" : "Progressing", `handover ${h.state} on ${h.node}: ${h.summary}`]);
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
  const cams = (doc.cameras || []).filter((c) => matches(`${c.node} ${c.instance} ${c.camera} ${c.state}`, q));
  $("cameras-box").hidden = !(doc.cameras || []).length;
  $("cameras").innerHTML = cams.map((c) => `<tr data-camera="${esc(c.instance)}/${esc(c.camera)}">` +
    `<td>${esc(c.node)}</td><td>${esc(c.instance)}</td><td>${esc(c.camera)}</td>` +
    `<td class="cam-${esc(c.state)}">${esc(c.state)}${c.nodeOnline ? "" : " (node offline)"}</td>` +
    `<td class="reason">${esc(c.reason)}</td><td>${esc(c.fps)}</td><td>${esc(c.frameNumber)}</td>` +
    `<td>${c.latencyMs == null ? "-" : esc(c.latencyMs) + " ms"}</td></tr>`).join("");
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
