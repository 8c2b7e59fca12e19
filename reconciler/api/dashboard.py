"""The dashboard at ``/``: one static page (no build step) that fetches ``/api/v1/status`` every second and
updates the DOM in place: nodes, instances grouped by node with a filter box (FPS one line per camera, named from
``/api/v1/instances`` whenever the revision changes), the last revision with its errors, a log panel per instance
(``/api/v1/instances/{name}/logs``, shown as text, never as HTML), and Apply / Refresh buttons that ask for the
API token (kept in the tab's sessionStorage only). The buttons are left out when the server cannot take them: no
API token configured (writes disabled), or nothing to send them to. Rendering is one ``innerHTML`` per table per
second, so 250 nodes and 1,000 instances stay responsive. With Apply come the edit panels (calls of the
``/api/v1/manifests`` routes with the same token): a camera form (the URL without credentials and a secretRef;
the secret itself goes to the node's host-side secret store, never through the page), adding a camera to an
instance, removing it or moving it to another instance (one commit), a new instance from a node and a profile,
an instance's edit form (loaded with its version: node, profile, layout, image, muxer size, cameras, paused) or
its deletion, and the pending changes (``/api/v1/pending``) with Apply and Discard; a refused edit's
findings are shown under the field their path names, a 412 as "changed meanwhile: reload".

The script and the styles are files of the package (``static/dashboard.js``, ``static/dashboard.css``) served
under ``/static/``: the page has nothing inline, so the Content-Security-Policy allows the server's own files only
(:data:`dsfleet.reconciler.api.gates.CONTENT_SECURITY_POLICY`). ``/docs`` is :data:`DOCS_PAGE`: Swagger UI from
the package (``static/swagger-ui/``, see its ``VERSION``), started by ``static/docs.js``."""

from __future__ import annotations

__all__ = ["DOCS_PAGE", "PAGE", "page"]


def page(*, apply: bool, refresh: bool) -> str:
    """The page with the Apply / Refresh buttons only where the server can take them; the pending panel and the
    edit forms go with Apply (they need a token, and edits wait for an Apply)."""
    shown = {"__APPLY__": apply, "__REFRESH__": refresh, "__EDIT__": apply}
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
<link rel="stylesheet" href="/static/dashboard.css">
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
 <section id="pending-box"__EDIT__><div class="bar"><h2>Pending changes</h2>
  <button id="pending-reload" type="button">Reload</button><button id="pending-apply" type="button">Apply</button>
  <button id="pending-discard" type="button">Discard</button><span id="pending-msg" class="muted"></span></div>
  <div id="pending-commits" class="muted"></div><table><thead><tr><th>Node</th><th>Instance</th><th>Change</th>
  <th>Files</th><th>Engine rebuilds</th></tr></thead><tbody id="pending-rows"></tbody></table></section>
 <section id="edit-box"__EDIT__><h2>Edit</h2><div class="forms">
  <form id="camera-form" autocomplete="off"><h3>Camera</h3>
   <label>name <input id="cam-name" name="name" list="camera-names" required
    pattern="[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"><span class="err" data-for="cam-name"></span></label>
   <button id="cam-load" type="button">Load</button>
   <label>camera id <input id="cam-id" name="cameraId" required><span class="err" data-for="cam-id"></span></label>
   <label>URL <input id="cam-url" name="url" required placeholder="rtsp://host:554/path (no user or password)">
    <span class="err" data-for="cam-url"></span></label>
   <label>zone <input id="cam-zone" name="zone" placeholder="gate"><span class="err" data-for="cam-zone"></span></label>
   <label>secretRef <input id="cam-secret" name="secretRef" placeholder="the camera's name">
    <span class="err" data-for="cam-secret"></span></label>
   <p class="help">The URL carries no user or password, and the credentials are never sent here: put them in the
    host-side secret store of the node that runs the camera's instance (<code>secrets/&lt;secretRef&gt;/</code>
    under the agent's state directory); the agent hands them to the container as files. This form only names the
    secret.</p>
   <div class="actions"><button id="cam-save" type="submit">Save</button>
    <button id="cam-delete" type="button">Delete</button><button id="cam-new" type="button">New</button>
    <span id="cam-version" class="muted"></span></div><div class="err" data-for="camera-form"></div></form>
  <form id="assign-form" autocomplete="off"><h3>Cameras of an instance</h3>
   <label>instance <input id="as-instance" name="instance" list="instance-names" required>
    <span class="err" data-for="as-instance"></span></label>
   <label>camera <input id="as-camera" name="camera" list="camera-names" required>
    <span class="err" data-for="as-camera"></span></label>
   <div class="actions"><button id="as-add" type="submit">Add to instance</button>
    <button id="as-remove" type="button">Remove from instance</button></div>
   <label>to instance <input id="as-to" name="to" list="instance-names">
    <span class="err" data-for="as-to"></span></label>
   <div class="actions"><button id="as-move" type="button">Move to instance</button>
    <span class="muted">takes the camera from the instance above and adds it to this one, in one commit</span></div>
   <div>in the manifests: <span id="as-listed" class="muted">-</span></div>
   <div>applied: <span id="as-applied" class="muted">-</span></div>
   <div class="err" data-for="assign-form"></div></form>
  <form id="instance-form" autocomplete="off"><h3 id="in-title">New instance</h3>
   <label>name <input id="in-name" name="name" list="instance-names" required
    pattern="[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"><span class="err" data-for="in-name"></span></label>
   <button id="in-load" type="button">Load</button>
   <label>node <select id="in-node" name="node" required></select><span class="err" data-for="in-node"></span></label>
   <label>profile <select id="in-profile" name="profile" required></select>
    <span class="err" data-for="in-profile"></span></label>
   <label>layout <select id="in-layout" name="layout"><option>deepstream-app</option><option>ccm</option></select>
    <span class="err" data-for="in-layout"></span></label>
   <label>image <input id="in-image" name="image" placeholder="the node's image">
    <span class="err" data-for="in-image"></span></label>
   <label>muxer <input id="in-width" name="width" type="number" min="1" value="1920" class="num"> x
    <input id="in-height" name="height" type="number" min="1" value="1080" class="num">
    <span class="err" data-for="in-width"></span></label>
   <label>cameras <input id="in-cameras" name="cameras" placeholder="cam-1, cam-2 (optional)">
    <span class="err" data-for="in-cameras"></span></label>
   <label><input id="in-paused" name="paused" type="checkbox"> paused (the container stopped and kept stopped)
    <span class="err" data-for="in-paused"></span></label>
   <p class="help">Load reads an instance as in its file (with its version); Save then changes only what this form
    shows, and is refused if the instance changed meanwhile (reload and edit again).</p>
   <div class="actions"><button id="in-create" type="submit">Create</button>
    <button id="in-delete" type="button">Delete</button><button id="in-new" type="button">New</button>
    <span id="in-version" class="muted"></span></div>
   <div class="err" data-for="instance-form"></div></form>
 </div><datalist id="camera-names"></datalist><datalist id="instance-names"></datalist>
 <div id="edit-msg" class="muted"></div></section>
 <section id="cameras-box" hidden><h2>Cameras (stream REST API)</h2><table><thead><tr><th>Node</th>
  <th>Instance</th><th>Camera</th><th>State</th><th>Reason</th><th>FPS</th><th>Frame</th><th>Latency</th></tr>
  </thead><tbody id="cameras"></tbody></table></section>
 <section id="logs" hidden><div class="bar"><h2>Log of <span id="log-name"></span></h2>
  <span id="log-info" class="muted"></span>
  <label>lines <select id="log-tail"><option>100</option><option selected>200</option><option>1000</option>
  </select></label><button id="log-reload" type="button">Reload</button>
  <button id="log-close" type="button">Close</button></div><pre id="log-text"></pre></section>
</main>
<script src="/static/dashboard.js"></script>
</body>
</html>
"""


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dsfleet API</title>
<link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
<link rel="icon" type="image/png" href="/static/swagger-ui/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""
