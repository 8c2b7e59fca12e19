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
    if (typeof showApplied === "function" && editing) { showApplied(); loadPending(); }
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
  const ro = doc.rollout;
  if (ro && ro.state !== "succeeded" && ro.state !== "superseded") {
    const kind = ro.state === "aborted" || ro.state === "aborting" ? "Failed" : "Progressing";
    const waves = ro.waves.map((w, i) => {
      const nodes = ro.nodes.filter((n) => n.wave === i), passed = nodes.filter((n) => n.state === "passed").length;
      return `${w} ${passed}/${nodes.length}`;
    }).join(" · ");
    lines.unshift([kind + " rollout", `${ro.summary} [${waves}]`]);
  }
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
function token() {
  let t = sessionStorage.getItem("dsfleet-token");
  if (!t) { t = window.prompt("API token"); if (t) sessionStorage.setItem("dsfleet-token", t); }
  return t;
}
// One write: the token asked once per tab; the answer's JSON (or {}) with its status.
async function call(method, path, body, headers) {
  const t = token(); if (!t) return null;
  const res = await fetch(path, {method, headers: {Authorization: "Bearer " + t, "Content-Type": "application/json",
    ...(headers || {})}, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store"}).catch(() => null);
  if (!res) return {status: 0, ok: false, body: {error: {message: "coordinator unreachable"}}, etag: null};
  let data = {}; try { data = await res.json(); } catch (e) {}
  if (res.status === 401) sessionStorage.removeItem("dsfleet-token");
  return {status: res.status, ok: res.ok, body: data, etag: res.headers.get("ETag")};
}
function failure(r) {
  if (r.status === 412) return "changed meanwhile: reload";
  return `${r.status} ${(r.body.error && r.body.error.message) || ""}`;
}
async function post(path) {
  const r = await call("POST", path, {}); if (!r) return;
  const what = path.split("/").pop();
  $("msg").textContent = r.ok ? `${what}: accepted (${r.body.detail || r.body.requestId || "ok"})` : `${what}: ${failure(r)}`;
  $("msg").dataset.status = String(r.status);
  if (r.ok) loadPending();
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
// ---- edits: the pending plan, a camera form, the cameras of an instance (shown with Apply only) ----
const editing = !$("edit-box").hidden;
let pendingBusy = false, camLoaded = null, asLoaded = null;
const CAMERA_FIELDS = {"metadata.name": "cam-name", "metadata.labels": "cam-zone", "spec.cameraId": "cam-id",
  "spec.url": "cam-url", "spec.credentials": "cam-secret", "kind": "cam-name", "apiVersion": "cam-name"};
const ASSIGN_FIELDS = {"spec.cameras": "as-camera", "camera": "as-camera", "metadata.name": "as-instance",
  "spec.node": "as-instance", "fromInstance": "as-instance"};
const INSTANCE_FIELDS = {"metadata.name": "in-name", "spec.node": "in-node", "spec.gpu": "in-node",
  "spec.profile": "in-profile", "spec.layout": "in-layout", "spec.app": "in-layout", "spec.image": "in-image",
  "spec.app.streammux": "in-width", "spec.cameras": "in-cameras", "spec.cameraSelector": "in-cameras",
  "spec.paused": "in-paused", "kind": "in-name", "apiVersion": "in-name"};
const enc = encodeURIComponent;
async function read(path) {
  const res = await fetch(path, {headers: auth(), cache: "no-store"}).catch(() => null);
  if (!res) return {status: 0, ok: false, body: {}, etag: null};
  let body = {}; try { body = await res.json(); } catch (e) {}
  return {status: res.status, ok: res.ok, body, etag: res.headers.get("ETag")};
}
function fieldOf(path, fields) {
  let best = null;
  for (const k of Object.keys(fields)) if ((path === k || path.startsWith(k + ".") || path.startsWith(k + "[")) && (!best || k.length > best.length)) best = k;
  return best ? fields[best] : null;
}
function clearErrors(form) { for (const e of $(form).querySelectorAll(".err")) e.textContent = ""; }
function errorAt(form, id, text) {
  const at = $(form).querySelector(`.err[data-for="${id || form}"]`) || $(form).querySelector(`.err[data-for="${form}"]`);
  at.textContent = at.textContent ? at.textContent + "\n" + text : text;
}
// A refused write, shown where it belongs: a 422's findings (the text `dsfleet validate` prints) and request
// errors at their field, 412 as "changed meanwhile", the rest under the form.
function showRefusal(form, fields, r, nameField) {
  clearErrors(form);
  const e = r.body.error || {};
  if (r.status === 422) {
    for (const f of e.findings || []) errorAt(form, fieldOf(f.message.split(":")[0], fields), f.text || f.message);
    for (const f of e.fields || []) errorAt(form, fieldOf((f.loc || []).slice(1).join("."), fields), f.message);
    if (!(e.findings || []).length && !(e.fields || []).length) errorAt(form, null, e.message || "refused");
  } else if (r.status === 412) errorAt(form, null, "changed meanwhile: reload");
  else if (r.status === 409 || r.status === 404) errorAt(form, nameField, e.message || String(r.status));
  else errorAt(form, null, failure(r));
  $(form).dataset.status = String(r.status);
}
function done(form, text, r) {
  clearErrors(form); $(form).dataset.status = String(r.status);
  $("edit-msg").textContent = text + (r.body.commit ? ` · commit ${r.body.commit.slice(0, 12)}` : "") +
    ((r.body.warnings || []).length ? " · " + r.body.warnings.join("; ") : "");
  loadNames(); loadPending();
}
// The names the forms offer (datalists of cameras and instances, selects of profiles and nodes): read together,
// and a list is rewritten only when its names changed (a fleet of 1,000 instances and 4,000 cameras re-reads
// them after every edit).
const shownNames = {};
function sameNames(id, names) {
  const key = names.join("\n");
  if (shownNames[id] === key) return true;
  shownNames[id] = key; return false;
}
function fillSelect(id, names) {
  if (sameNames(id, names)) return;
  const sel = $(id), was = sel.value;
  sel.innerHTML = names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
  if (names.includes(was)) sel.value = was;
}
function fillList(id, names) {
  if (!sameNames(id, names)) $(id).innerHTML = names.map((n) => `<option value="${esc(n)}">`).join("");
}
async function loadNames() {
  const [cameras, instances, profiles, nodes] = await Promise.all(["/api/v1/manifests/Camera",
    "/api/v1/manifests/DsInstance", "/api/v1/manifests/InferenceProfile", "/api/v1/nodes"].map(read));
  if (cameras.ok) fillList("camera-names", cameras.body.items.map((i) => i.name));
  if (instances.ok) fillList("instance-names", instances.body.items.map((i) => i.name));
  if (profiles.ok) fillSelect("in-profile", profiles.body.items.map((i) => i.name));
  if (nodes.ok) fillSelect("in-node", nodes.body.map((n) => n.name).sort());
  $("edit-box").dataset.names = String(Date.now());
}
function planRows(plan) {
  const rows = [];
  for (const n of plan.nodes || []) {
    if (n.action === "unchanged") continue;
    const node = `${esc(n.name)} <span class="muted">${esc(n.action)}</span>`;
    if (!(n.instances || []).some((x) => x.action !== "unchanged")) rows.push(`<tr data-pending="${esc(n.name)}/"><td>${node}</td><td>-</td><td>-</td><td>-</td><td>-</td></tr>`);
    for (const i of (n.instances || []).filter((x) => x.action !== "unchanged")) {
      const files = (i.files || []).filter((f) => f.action !== "unchanged").map((f) => `${f.path} (${f.action})`).join("\n");
      const rebuilds = (i.engineRebuilds || []).map((b) => `${b.gie}: ${(b.reasons || []).join(", ")}`).join("\n");
      rows.push(`<tr data-pending="${esc(n.name)}/${esc(i.name)}"><td>${node}</td>` +
        `<td>${esc(i.name)} <span class="muted">${esc(i.action)}</span></td><td class="kind ${esc(i.kind)}">${esc(i.kind || "-")}</td>` +
        `<td class="files">${esc(files || "-")}</td><td class="files">${esc(rebuilds || "-")}</td></tr>`);
    }
  }
  return rows.join("");
}
async function loadPending() {
  if (!editing || pendingBusy) return; pendingBusy = true;
  try {
    const r = await read("/api/v1/pending");
    if (!r.ok) { $("pending-msg").textContent = "pending: " + failure(r); return; }
    const p = r.body, commits = p.commits || [];
    $("pending-commits").innerHTML = commits.map((c) => `<div data-commit="${esc(c.sha)}"><code>${esc(c.sha.slice(0, 12))}</code> ` +
      `${esc(c.subject)} · ${esc(c.author)}${c.byApi ? "" : " (not from the API)"}</div>`).join("");
    if (!p.valid) {
      $("pending-msg").textContent = "the manifests do not validate: Apply would be refused";
      $("pending-rows").innerHTML = (p.findings || []).filter((f) => f.severity === "error").slice(0, 20)
        .map((f) => `<tr><td colspan="5" class="rejected files">${esc(f.text)}</td></tr>`).join("");
    } else {
      const s = p.plan.summary || {};
      $("pending-msg").textContent = p.plan.changed
        ? Object.entries(s).filter(([, v]) => v).map(([k, v]) => `${v} ${k.replace(/_/g, " ")}`).join(" · ")
        : "no changes: the stored fleet matches the manifests";
      $("pending-rows").innerHTML = planRows(p.plan);
    }
    $("pending-box").dataset.loaded = String(Date.now());
  } finally { pendingBusy = false; }
}
function fillCamera(o) {
  const m = o.metadata || {}, sp = o.spec || {};
  $("cam-name").value = m.name || ""; $("cam-id").value = sp.cameraId ?? ""; $("cam-url").value = sp.url || "";
  $("cam-zone").value = (m.labels || {}).zone || ""; $("cam-secret").value = (sp.credentials || {}).secretRef || "";
}
async function loadCamera() {
  const name = $("cam-name").value.trim(); if (!name) return;
  const r = await read("/api/v1/manifests/Camera/" + enc(name));
  if (!r.ok) { camLoaded = null; $("cam-version").textContent = ""; showRefusal("camera-form", CAMERA_FIELDS, r, "cam-name"); return; }
  clearErrors("camera-form");
  camLoaded = {name, etag: r.etag, object: r.body.object, file: r.body.file};
  fillCamera(r.body.object); $("cam-version").textContent = `${r.body.file} · version ${r.body.version.slice(0, 12)}`;
}
async function saveCamera(ev) {
  ev.preventDefault();
  const name = $("cam-name").value.trim(), loaded = camLoaded && camLoaded.name === name;
  const o = loaded ? structuredClone(camLoaded.object) : {apiVersion: "dsfleet/v1", kind: "Camera", metadata: {name}, spec: {}};
  o.metadata = o.metadata || {}; o.spec = o.spec || {};
  const zone = $("cam-zone").value.trim(), secret = $("cam-secret").value.trim();
  if (zone) o.metadata.labels = {...(o.metadata.labels || {}), zone};
  else if (o.metadata.labels) { delete o.metadata.labels.zone; if (!Object.keys(o.metadata.labels).length) delete o.metadata.labels; }
  o.spec.cameraId = $("cam-id").value.trim(); o.spec.url = $("cam-url").value.trim();
  if (secret) o.spec.credentials = {...(o.spec.credentials || {}), secretRef: secret}; else delete o.spec.credentials;
  const r = loaded
    ? await call("PUT", "/api/v1/manifests/Camera/" + enc(name), o, camLoaded.etag ? {"If-Match": camLoaded.etag} : {})
    : await call("POST", "/api/v1/manifests/Camera", o);
  if (!r) return;
  if (!r.ok) { showRefusal("camera-form", CAMERA_FIELDS, r, "cam-name"); return; }
  camLoaded = {name, etag: r.etag, object: o, file: r.body.file};
  $("cam-version").textContent = `${r.body.file} · version ${(r.body.version || "").slice(0, 12)}`;
  done("camera-form", `Camera ${name} ${r.body.action} in ${r.body.file}`, r);
}
async function deleteCamera() {
  const name = $("cam-name").value.trim(); if (!name || !window.confirm(`Delete camera ${name}?`)) return;
  const etag = camLoaded && camLoaded.name === name ? camLoaded.etag : null;
  const r = await call("DELETE", "/api/v1/manifests/Camera/" + enc(name), undefined, etag ? {"If-Match": etag} : {});
  if (!r) return;
  if (!r.ok) { showRefusal("camera-form", CAMERA_FIELDS, r, "cam-name"); return; }
  camLoaded = null; fillCamera({}); $("cam-version").textContent = "";
  done("camera-form", `Camera ${name} deleted from ${r.body.file}`, r);
}
function showApplied() {
  const name = $("as-instance").value.trim();
  $("as-applied").textContent = name && sources[name] ? sources[name].join(", ") : "-";
}
async function loadInstance() {
  const name = $("as-instance").value.trim(); showApplied();
  if (!name) { asLoaded = null; $("as-listed").textContent = "-"; return; }
  const r = await read("/api/v1/manifests/DsInstance/" + enc(name));
  if (name !== $("as-instance").value.trim()) return;
  asLoaded = r.ok ? {name, etag: r.etag} : null;
  $("as-listed").textContent = r.ok ? ((r.body.object.spec || {}).cameras || []).join(", ") || "none" : "-";
}
async function assign(add) {
  const name = $("as-instance").value.trim(), camera = $("as-camera").value.trim();
  if (!name || !camera) { clearErrors("assign-form"); errorAt("assign-form", name ? "as-camera" : "as-instance", "required"); return; }
  const etag = asLoaded && asLoaded.name === name ? {"If-Match": asLoaded.etag} : {};
  const base = `/api/v1/manifests/DsInstance/${enc(name)}/cameras`;
  const r = add ? await call("POST", base, {camera}, etag) : await call("DELETE", `${base}/${enc(camera)}`, undefined, etag);
  if (!r) return;
  if (!r.ok) { showRefusal("assign-form", ASSIGN_FIELDS, r, r.status === 404 && !add ? "as-camera" : "as-instance"); return; }
  asLoaded = {name, etag: r.etag};
  done("assign-form", `${camera} ${add ? "added to" : "removed from"} ${name}`, r);
  loadInstance();
}
// Moving a camera: one call (the server changes both instances in one commit, or neither): If-Match is the
// target's version as read, fromVersion the source's (read when the instance above was chosen).
let toLoaded = null;
async function loadTarget() {
  const name = $("as-to").value.trim();
  const r = name ? await read("/api/v1/manifests/DsInstance/" + enc(name)) : null;
  if (name !== $("as-to").value.trim()) return null;
  toLoaded = r && r.ok ? {name, etag: r.etag} : null;
  return toLoaded;
}
async function moveCamera() {
  const from = $("as-instance").value.trim(), camera = $("as-camera").value.trim(), to = $("as-to").value.trim();
  clearErrors("assign-form");
  if (!from || !camera || !to) { errorAt("assign-form", !from ? "as-instance" : !camera ? "as-camera" : "as-to", "required"); return; }
  const target = toLoaded && toLoaded.name === to ? toLoaded : await loadTarget();
  const body = {camera, fromInstance: from};
  if (asLoaded && asLoaded.name === from && asLoaded.etag) body.fromVersion = asLoaded.etag;
  const r = await call("POST", `/api/v1/manifests/DsInstance/${enc(to)}/cameras/move`, body,
    target && target.etag ? {"If-Match": target.etag} : {});
  if (!r) return;
  if (!r.ok) {
    const at = r.status === 404 && /does not list/.test((r.body.error || {}).message || "") ? "as-camera"
      : r.status === 404 ? "as-to" : "as-instance";
    showRefusal("assign-form", {...ASSIGN_FIELDS, "spec.cameras": "as-to"}, r, at); return;
  }
  toLoaded = {name: to, etag: r.etag};
  done("assign-form", `${camera} moved from ${from} to ${to}`, r);
  loadInstance();
}
// The instance form: a new instance (what a deepstream-app instance needs to validate: node, profile, layout, the
// muxer's size; the image and cameras optional), or, once loaded (GET with its ETag), an edit of the object as
// read where only the fields shown here change (PUT with If-Match: 412 if it changed meanwhile). The rules'
// findings are shown under the field they name.
let inLoaded = null;
function instanceMode() {
  const editing = inLoaded && inLoaded.name === $("in-name").value.trim();
  $("in-title").textContent = editing ? `Instance ${inLoaded.name}` : "New instance";
  $("in-create").textContent = editing ? "Save" : "Create";
  if (!editing) $("in-version").textContent = "";
}
function choose(id, value) {
  const sel = $(id);
  if (value && ![...sel.options].some((o) => o.value === value)) sel.insertAdjacentHTML("beforeend", `<option value="${esc(value)}">${esc(value)}</option>`);
  if (value) sel.value = value;
}
function fillInstance(o) {
  const sp = o.spec || {}, mux = (sp.app || {}).streammux || {};
  choose("in-node", sp.node); choose("in-profile", sp.profile); choose("in-layout", sp.layout);
  $("in-image").value = sp.image || "";
  $("in-width").value = mux.width ?? ""; $("in-height").value = mux.height ?? "";
  $("in-cameras").value = (sp.cameras || []).join(", ");
  const labels = Object.entries((sp.cameraSelector || {}).matchLabels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  $("in-cameras").placeholder = sp.cameraSelector ? `selected by labels: ${labels || "(expressions)"}` : "cam-1, cam-2 (optional)";
  $("in-paused").checked = sp.paused === true;
}
async function loadInstanceForm() {
  const name = $("in-name").value.trim();
  clearErrors("instance-form");
  if (!name) { errorAt("instance-form", "in-name", "required"); return; }
  const r = await read("/api/v1/manifests/DsInstance/" + enc(name));
  if (name !== $("in-name").value.trim()) return;
  $("instance-form").dataset.loaded = r.ok ? name : "";
  if (!r.ok) { inLoaded = null; instanceMode(); showRefusal("instance-form", INSTANCE_FIELDS, r, "in-name"); return; }
  inLoaded = {name, etag: r.etag, object: r.body.object, file: r.body.file};
  fillInstance(r.body.object); instanceMode();
  $("in-version").textContent = `${r.body.file} · version ${r.body.version.slice(0, 12)}`;
}
function instanceObject(name, loaded) {
  const o = loaded ? structuredClone(inLoaded.object) : {apiVersion: "dsfleet/v1", kind: "DsInstance", metadata: {name}, spec: {}};
  o.metadata = o.metadata || {}; o.spec = o.spec || {};
  const sp = o.spec, image = $("in-image").value.trim();
  const cameras = $("in-cameras").value.split(",").map((c) => c.trim()).filter((c) => c);
  const width = $("in-width").value.trim(), height = $("in-height").value.trim();
  sp.node = $("in-node").value; sp.layout = $("in-layout").value; sp.profile = $("in-profile").value;
  if (width || height || !loaded) {
    sp.app = sp.app || {}; sp.app.streammux = sp.app.streammux || {};
    if (width) sp.app.streammux.width = Number(width); else delete sp.app.streammux.width;
    if (height) sp.app.streammux.height = Number(height); else delete sp.app.streammux.height;
  }
  if (image) sp.image = image; else delete sp.image;
  if (cameras.length || Array.isArray(sp.cameras)) sp.cameras = cameras;
  if ($("in-paused").checked) sp.paused = true; else if ("paused" in sp) sp.paused = false;
  return o;
}
async function createInstance(ev) {
  ev.preventDefault();
  const name = $("in-name").value.trim(), loaded = inLoaded && inLoaded.name === name;
  const o = instanceObject(name, loaded);
  const r = loaded
    ? await call("PUT", "/api/v1/manifests/DsInstance/" + enc(name), o, inLoaded.etag ? {"If-Match": inLoaded.etag} : {})
    : await call("POST", "/api/v1/manifests/DsInstance", o);
  if (!r) return;
  if (!r.ok) {
    showRefusal("instance-form", INSTANCE_FIELDS, r, "in-name");
    if (r.status === 412) $("in-version").textContent = `changed meanwhile: now version ${((r.body.error || {}).version || "?").slice(0, 12)}`;
    return;
  }
  inLoaded = {name, etag: r.etag, object: o, file: r.body.file}; instanceMode();
  $("in-version").textContent = `${r.body.file} · version ${(r.body.version || "").slice(0, 12)}`;
  done("instance-form", `DsInstance ${name} ${loaded ? r.body.action : "created"} in ${r.body.file}`, r);
}
async function deleteInstance() {
  const name = $("in-name").value.trim();
  if (!name) { clearErrors("instance-form"); errorAt("instance-form", "in-name", "required"); return; }
  if (!window.confirm(`Delete instance ${name}?`)) return;
  const etag = inLoaded && inLoaded.name === name ? inLoaded.etag : null;
  const r = await call("DELETE", "/api/v1/manifests/DsInstance/" + enc(name), undefined, etag ? {"If-Match": etag} : {});
  if (!r) return;
  if (!r.ok) { showRefusal("instance-form", INSTANCE_FIELDS, r, "in-name"); return; }
  inLoaded = null; instanceMode();
  done("instance-form", `DsInstance ${name} deleted from ${r.body.file}`, r);
}
if (editing) {
  $("pending-reload").addEventListener("click", () => { loadPending(); loadNames(); });
  $("pending-apply").addEventListener("click", () => post("/api/v1/apply"));
  $("pending-discard").addEventListener("click", async () => {
    const r = await call("POST", "/api/v1/pending/discard", {}); if (!r) return;
    $("pending-msg").textContent = r.ok ? `discarded ${plural(r.body.discarded.length, "commit")}` : "discard: " + failure(r);
    $("pending-box").dataset.status = String(r.status);
    if (r.ok) { loadPending(); loadNames(); }
  });
  $("cam-load").addEventListener("click", loadCamera);
  $("camera-form").addEventListener("submit", saveCamera);
  $("cam-delete").addEventListener("click", deleteCamera);
  $("cam-new").addEventListener("click", () => { camLoaded = null; fillCamera({}); clearErrors("camera-form"); $("cam-version").textContent = ""; });
  $("as-instance").addEventListener("change", loadInstance);
  $("assign-form").addEventListener("submit", (ev) => { ev.preventDefault(); assign(true); });
  $("as-remove").addEventListener("click", () => assign(false));
  $("as-to").addEventListener("change", loadTarget);
  $("as-move").addEventListener("click", moveCamera);
  $("instance-form").addEventListener("submit", createInstance);
  $("in-delete").addEventListener("click", deleteInstance);
  $("in-load").addEventListener("click", loadInstanceForm);
  $("in-name").addEventListener("input", instanceMode);
  $("in-new").addEventListener("click", () => {
    inLoaded = null; $("in-name").value = ""; fillInstance({spec: {layout: "deepstream-app", app: {streammux: {width: 1920, height: 1080}}}});
    clearErrors("instance-form"); instanceMode();
  });
  loadNames(); loadPending(); setInterval(loadPending, 10000);
}
tick(); setInterval(tick, 1000);
