"""The dashboard in headless Chromium (Debian's chromium driven by Playwright) against a live
coordinator with a (fake) agent on a real broker: an instance's state change shows within 3 s, FPS are one line
per camera with its name, Refresh with a token is accepted, an instance's log opens in a panel as text (redacted,
never HTML), and a screenshot is saved next to the test's files. A second test loads a synthetic fleet of
250 nodes and 1,000 instances and checks that rendering and filtering stay fast. Apply and Refresh (and with them the
edit panels) are left out where the server cannot take them (no token; no coordinator nor broker). The edit
panels create a camera, add it to an instance, show the pending plan and apply it, against a git work tree; they
create an instance on a node from a profile and move a camera into it in one commit; the instance form loads an
instance with its version, saves one field, and shows a stale version (changed underneath by git) as a 412. With
the edit forms, a synthetic fleet of 250 nodes, 1,000 instances and 4,000 cameras renders its lists and pending
panel, and its times are printed (BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from dsfleet.reconciler.api.roles import token_digest
from tests.support.apiserver import TOKEN, ServerProc
from tests.support.brokers import Tansu
from tests.support.livefleet import FakeAgent, copy_fleet, wait_for
from tests.support.logagents import LogAgent

LOG_SECRET = "Canary-Pa55"
LOG_TEXT = (
    f"2026-01-01T12:00:00Z <b>not bold</b> & friends\n2026-01-01T12:00:01Z login password={LOG_SECRET}\n"
)


def test_dashboard_follows_the_fleet_and_refreshes(
    browser: Any, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> None:
    fleet = copy_fleet(tmp_path / "manifests")
    server = ServerProc(
        [
            "coordinator",
            "--manifests",
            str(fleet),
            "--db",
            f"sqlite:///{tmp_path / 'state.db'}",
            "--bootstrap-servers",
            kafka_broker.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            topic_prefix,
            "--partitions",
            "3",
        ],
        tmp_path / "coordinator.log",
    ).start()
    db = f"sqlite:///{tmp_path / 'state.db'}"
    agent = FakeAgent(kafka_broker.bootstrap, topic_prefix, "gpu-node-1", "gpu-node-1", heartbeat=30.0, db=db)
    logs = LogAgent(
        kafka_broker.bootstrap, topic_prefix, "gpu-node-1", lambda _command: LOG_TEXT, key=agent.key
    )
    try:
        with server.client() as api:
            gate = wait_for(
                lambda: api.get("/api/v1/instances/ccm-gate").json().get("desiredConfigHash"),
                30,
                "the first revision",
            )

        def report(state: str) -> None:
            agent.announce(generation=1)
            agent.respond(
                1,
                [
                    {
                        "name": "ccm-gate",
                        "state": state,
                        "generation": 1,
                        "configHash": gate,
                        "fps": {"0": 30.0, "1": 12.5},
                    }
                ],
            )

        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server.url + "/")
        assert page.locator("#apply").is_visible() and page.locator("#refresh").is_visible()
        cell = page.locator('tr[data-instance="ccm-gate"] td.state')
        page.wait_for_function(
            "() => document.querySelector('tr[data-instance=\"ccm-gate\"]') !== null", timeout=15_000
        )
        report("running")
        page.wait_for_function(
            "() => document.querySelector('tr[data-instance=\"ccm-gate\"] td.state')?.textContent === 'running'",
            timeout=15_000,
        )
        assert page.locator('tr[data-instance="ccm-gate"] td.health').text_content() == "Healthy"
        page.wait_for_function(
            "() => document.querySelector('tr[data-instance=\"ccm-gate\"] td.fps')?.textContent"
            ".startsWith('gate-1: 30.0 fps')",
            timeout=10_000,
        )
        assert page.locator('tr[data-instance="ccm-gate"] td.fps').text_content() == (
            "gate-1: 30.0 fps\ngate-2: 12.5 fps"
        )

        sent = time.monotonic()
        report("exited")
        page.wait_for_function(
            "() => document.querySelector('tr[data-instance=\"ccm-gate\"] td.state')?.textContent === 'exited'",
            timeout=3_000,
        )
        took = time.monotonic() - sent
        assert took < 3.0, f"the dashboard showed the change after {took:.2f} s"
        assert cell.text_content() == "exited"
        assert page.locator('tr[data-instance="ccm-gate"] td.health').text_content() == "Failed"

        page.once("dialog", lambda dialog: dialog.accept(TOKEN))
        page.click("#refresh")
        _answered(page, "msg", 202)
        assert "refresh: accepted" in (page.locator("#msg").text_content() or "")

        page.click('tr[data-instance="ccm-gate"] button.logs')
        page.wait_for_function(
            "() => document.getElementById('log-text').textContent.includes('friends')", timeout=15_000
        )
        shown = page.locator("#log-text").text_content() or ""
        assert "<b>not bold</b> & friends" in shown and "password=***" in shown and LOG_SECRET not in shown
        assert page.locator("#log-text b").count() == 0  # text, never markup
        assert "node gpu-node-1" in (page.locator("#log-info").text_content() or "")
        assert page.locator("#log-name").text_content() == "ccm-gate"
        page.click("#log-close")
        assert page.locator("#logs").is_hidden()

        page.fill("#filter", "traffic")
        page.wait_for_function(
            "() => !document.querySelector('tr[data-instance=\"ccm-gate\"]')", timeout=5_000
        )
        assert page.locator('tr[data-instance="traffic-parking"]').count() == 1
        page.fill("#filter", "")
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.close()
    finally:
        agent.close()
        logs.close()
        assert server.stop() == 0


def _big_status(nodes: int = 250, per_node: int = 4) -> dict[str, Any]:
    now = "2026-01-01T00:00:00+00:00"
    node_rows = [
        {
            "name": f"node-{n:03d}",
            "online": n % 7 != 0,
            "lastSeen": now,
            "agentVersion": "0.1.0",
            "gpus": [{"index": 0, "name": "T4"}],
            "capacity": 16,
            "instances": per_node,
            "desiredGeneration": 3,
            "observedGeneration": 3,
            "sync": "Synced",
        }
        for n in range(nodes)
    ]
    instances = [
        {
            "name": f"inst-{n:03d}-{i}",
            "node": f"node-{n:03d}",
            "sync": "Synced",
            "health": "Healthy" if i else "Degraded",
            "state": "running",
            "desiredGeneration": 3,
            "observedGeneration": 3,
            "restarts": 0,
            "fps": {"0": 30.0, "1": 0.0 if not i else 25.0},
            "drift": [],
            "reason": "running",
        }
        for n in range(nodes)
        for i in range(per_node)
    ]
    return {
        "schema": "dsfleet.status/v1",
        "generatedAt": now,
        "summary": {
            "nodes": {"total": nodes, "online": nodes, "offline": 0},
            "instances": {
                "total": len(instances),
                "sync": {"Synced": len(instances)},
                "health": {},
                "drift": 0,
            },
        },
        "nodes": node_rows,
        "instances": instances,
        "revision": None,
        "pendingPlan": None,
        "events": [],
        "rollout": _rollout(node_rows),
    }


def _rollout(node_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A rollout of every node, its first wave (one node) released: what the status document carries."""
    from datetime import UTC, datetime

    from dsfleet.reconciler.planning.rollouts import start_rollout, step
    from dsfleet.reconciler.syncviews import rollout_view
    from dsfleet.schemas.rollouts import RolloutStrategy

    strategy = RolloutStrategy.model_validate(
        {"waves": [{"name": "canary", "nodes": 1}, {"nodes": "50%"}, {}]}
    )
    nodes = {str(n["name"]): ("ds",) for n in node_rows}
    started = step(start_rollout(8, 7, strategy, nodes, {}, datetime.now(UTC)), {}, datetime.now(UTC)).rollout
    return rollout_view(started.to_json())


def test_dashboard_at_250_nodes_and_1000_instances(browser: Any, tmp_path: Path) -> None:
    """The page itself (served by a real server) with a synthetic status document of 250 nodes and 1,000
    instances: every refresh renders in well under a second, and filtering answers at once."""
    server = ServerProc(
        ["serve", "--manifests", str(copy_fleet(tmp_path / "m"))], tmp_path / "serve.log"
    ).start()
    body = json.dumps(_big_status())
    try:
        page = browser.new_page()
        page.route(
            "**/api/v1/status", lambda route: route.fulfill(body=body, content_type="application/json")
        )
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => document.querySelectorAll('tr[data-instance]').length === 1000", timeout=10_000
        )
        assert page.locator("tr[data-node]").count() == 250
        # no coordinator and no broker here: nothing to send Apply or Refresh to
        assert page.locator("#apply").is_hidden() and page.locator("#refresh").is_hidden()
        assert page.locator("#msg").text_content() == "read-only"
        assert page.locator("tr.group").count() == 250
        rollout = page.locator('#fleet [data-fleet="Progressing rollout"]').text_content() or ""
        assert rollout.startswith("ROLLOUT of revision 8 progressing, wave canary (0/250 nodes passed)"), (
            rollout
        )
        assert rollout.endswith("[canary 0/1 · wave-2 0/125 · wave-3 0/124]"), rollout
        render_ms = page.evaluate(
            """() => { const t0 = performance.now();
                       document.getElementById('filter').dispatchEvent(new Event('input'));
                       return performance.now() - t0; }"""
        )
        assert render_ms < 500, f"one render of 1,000 instances took {render_ms:.0f} ms"
        page.fill("#filter", "node-042")
        page.wait_for_function(
            "() => document.querySelectorAll('tr[data-instance]').length === 4", timeout=2_000
        )
        page.screenshot(path=str(tmp_path / "dashboard-1000.png"))
        page.close()
    finally:
        assert server.stop() == 0


def test_without_a_token_the_dashboard_offers_no_writes(
    browser: Any, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> None:
    """A coordinator with a broker but no API token: writes are disabled, so neither button is there."""
    server = ServerProc(
        [
            "coordinator",
            "--manifests",
            str(copy_fleet(tmp_path / "manifests")),
            "--db",
            f"sqlite:///{tmp_path / 'state.db'}",
            "--bootstrap-servers",
            kafka_broker.bootstrap,
            "--topic-prefix",
            topic_prefix,
        ],
        tmp_path / "coordinator.log",
        env={"DSFLEET_API_TOKEN": ""},
    ).start()
    try:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_function("() => document.body.dataset.updated !== undefined", timeout=15_000)
        assert page.locator("#apply").is_hidden() and page.locator("#refresh").is_hidden()
        assert page.locator("#msg").text_content() == "read-only"
        assert page.locator("#edit-box").is_hidden() and page.locator("#pending-box").is_hidden()
        page.close()
    finally:
        assert server.stop() == 0


OPERATOR = "operator-token-0123456789"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def _answered(page: Any, form: str, status: int) -> None:
    """Wait until ``form``'s last request was answered with ``status`` (the page notes it on the form)."""
    page.wait_for_function(
        f"() => document.getElementById('{form}').dataset.status === '{status}'", timeout=10_000
    )


def _refused_at_cameras(page: Any, repo: Path, head: str) -> None:
    """Submit the instance form with an unknown camera: the rules' finding is shown at the cameras field, and
    nothing is written (HEAD still ``head``, the work tree clean)."""
    page.fill("#in-cameras", "no-such-camera")
    page.click("#in-create")
    _answered(page, "instance-form", 422)
    at_field = page.locator('#instance-form .err[data-for="in-cameras"]').text_content() or ""
    assert "no-such-camera" in at_field, at_field
    assert _git(repo, "rev-parse", "HEAD").strip() == head and _git(repo, "status", "--porcelain") == ""


def _edits_coordinator(
    kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> tuple[ServerProc, Path, str]:
    """A coordinator in manual sync on a git work tree of the example fleet, applied once; alice's token is
    OPERATOR. Returns the server, the work tree and the applied commit."""
    repo = copy_fleet(tmp_path / "manifests")
    _git(repo, "init", "--quiet", "--initial-branch", "main")
    _git(repo, "add", "--all")
    _git(repo, "-c", "user.name=seed", "-c", "user.email=seed@example.invalid", "commit", "-qm", "seed")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:operator:{token_digest(OPERATOR)}\n")
    server = ServerProc(
        [
            "coordinator",
            "--manifests",
            str(repo),
            "--db",
            f"sqlite:///{tmp_path / 'state.db'}",
            "--bootstrap-servers",
            kafka_broker.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            topic_prefix,
            "--partitions",
            "3",
            "--sync",
            "manual",
        ],
        tmp_path / "coordinator.log",
        env={"DSFLEET_API_TOKENS_FILE": str(tokens)},
    ).start()
    try:
        with server.client(TOKEN) as api:
            wait_for(lambda: api.get("/api/v1/status").json().get("pendingPlan"), 30, "the pending plan")
            assert api.post("/api/v1/apply").status_code == 202
    except BaseException:
        server.stop()
        raise
    return server, repo, _git(repo, "rev-parse", "HEAD").strip()


def test_dashboard_edits_a_camera_then_applies(
    browser: Any, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> None:
    """The edit forms against a coordinator in manual sync whose manifests are a git work tree: a camera created
    through the form and added to an instance shows in the pending panel; Apply puts it in the instance's applied
    cameras; the commits carry the token's name; a duplicate camera id is shown at its field with the text
    ``validate`` prints, and nothing is written."""
    server, repo, seed = _edits_coordinator(kafka_broker, topic_prefix, tmp_path)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("dialog", lambda dialog: dialog.accept(OPERATOR))
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => document.getElementById('pending-box').dataset.loaded !== undefined", timeout=15_000
        )
        assert page.locator("#pending-rows tr").count() == 0, "nothing pending after the first apply"
        assert "secrets/<secretRef>/" in (page.locator("#camera-form .help").text_content() or "")

        page.fill("#cam-name", "yard-1")
        page.fill("#cam-id", "99")
        page.fill("#cam-url", "rtsp://127.0.0.1:8554/yard-1/main")
        page.fill("#cam-zone", "yard")
        page.fill("#cam-secret", "yard-1")
        page.click("#cam-save")
        _answered(page, "camera-form", 201)
        assert "cameras/yard.yaml" in (page.locator("#edit-msg").text_content() or "")

        page.fill("#as-instance", "ccm-lobby")
        page.dispatch_event("#as-instance", "change")
        page.fill("#as-camera", "yard-1")
        page.click("#as-add")
        _answered(page, "assign-form", 200)
        page.wait_for_function(
            "() => document.getElementById('as-listed').textContent.includes('yard-1')", timeout=5_000
        )
        row = page.locator('#pending-rows tr[data-pending$="/ccm-lobby"]')
        row.wait_for(timeout=10_000)
        assert (row.locator("td.kind").text_content() or "") in ("hot", "restart", "recreate")
        assert page.locator("#pending-commits [data-commit]").count() == 2
        assert "yard-1" not in (page.locator("#as-applied").text_content() or "")

        page.click("#pending-apply")
        _answered(page, "msg", 202)
        page.wait_for_function(
            "() => document.getElementById('as-applied').textContent.split(', ').includes('yard-1')",
            timeout=10_000,
        )
        page.wait_for_function(
            "() => document.querySelectorAll('#pending-rows tr').length === 0"
            " && document.querySelectorAll('#pending-commits [data-commit]').length === 0",
            timeout=10_000,
        )
        log = _git(repo, "log", "--format=%an|%s", f"{seed}..HEAD").splitlines()
        assert log == [
            "alice|Add camera yard-1 to DsInstance ccm-lobby (by alice from the API)",
            "alice|Create Camera yard-1 (by alice from the API)",
        ], log

        head = _git(repo, "rev-parse", "HEAD")
        page.click("#cam-new")
        page.fill("#cam-name", "yard-2")
        page.fill("#cam-id", "99")
        page.fill("#cam-url", "rtsp://127.0.0.1:8554/yard-2/main")
        page.fill("#cam-zone", "yard")
        page.click("#cam-save")
        _answered(page, "camera-form", 422)
        at_field = page.locator('#camera-form .err[data-for="cam-id"]').text_content() or ""
        assert "unique-camera-id" in at_field and "spec.cameraId: camera 'yard-2' reuses" in at_field, (
            at_field
        )
        assert page.locator('#camera-form .err[data-for="cam-url"]').text_content() == ""
        assert _git(repo, "rev-parse", "HEAD") == head and _git(repo, "status", "--porcelain") == ""
        page.screenshot(path=str(tmp_path / "dashboard-edits.png"), full_page=True)
        page.close()
    finally:
        assert server.stop() == 0


def test_dashboard_creates_an_instance_and_moves_a_camera(
    browser: Any, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> None:
    """The instance form creates an instance on a node from a profile (a refused one shows the rules' finding at
    its field, and nothing is written); a camera moves into it in one commit; the pending panel shows both
    instances; Apply, and the new instance is in the status; the commits carry the token's name."""
    server, repo, seed = _edits_coordinator(kafka_broker, topic_prefix, tmp_path)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("dialog", lambda dialog: dialog.accept(OPERATOR))
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => [...document.getElementById('in-node').options].some((o) => o.value === 'gpu-node-2')"
            " && [...document.getElementById('in-profile').options].some((o) => o.value === 'traffic')",
            timeout=15_000,
        )
        page.fill("#in-name", "lobby-b")
        page.select_option("#in-node", "gpu-node-2")
        page.select_option("#in-profile", "traffic")
        page.select_option("#in-layout", "deepstream-app")
        _refused_at_cameras(page, repo, seed)

        page.fill("#in-cameras", "")
        page.click("#in-create")
        _answered(page, "instance-form", 201)
        assert "instances/gpu-node-2.yaml" in (page.locator("#edit-msg").text_content() or "")

        page.fill("#as-instance", "ccm-lobby")
        page.dispatch_event("#as-instance", "change")
        page.wait_for_function(
            "() => document.getElementById('as-listed').textContent.includes('lobby-4')", timeout=5_000
        )
        page.fill("#as-camera", "lobby-4")
        page.fill("#as-to", "lobby-b")
        page.dispatch_event("#as-to", "change")
        page.click("#as-move")
        _answered(page, "assign-form", 200)
        page.wait_for_function(
            "() => !document.getElementById('as-listed').textContent.includes('lobby-4')", timeout=5_000
        )
        page.locator('#pending-rows tr[data-pending="gpu-node-2/lobby-b"]').wait_for(timeout=10_000)
        page.locator('#pending-rows tr[data-pending="gpu-node-1/ccm-lobby"]').wait_for(timeout=10_000)
        assert page.locator("#pending-commits [data-commit]").count() == 2
        assert page.locator('#instances tr[data-instance="lobby-b"]').count() == 0, "not applied yet"

        page.click("#pending-apply")
        page.locator('#instances tr[data-instance="lobby-b"]').wait_for(timeout=10_000)
        page.wait_for_function(
            "() => document.querySelectorAll('#pending-rows tr').length === 0", timeout=10_000
        )
        log = _git(repo, "log", "--format=%an|%s", f"{seed}..HEAD").splitlines()
        assert log == [
            "alice|Move camera lobby-4 from ccm-lobby to lobby-b (by alice from the API)",
            "alice|Create DsInstance lobby-b (by alice from the API)",
        ], log
        moved = _git(repo, "show", "--format=", "--name-only", "HEAD").split()
        assert sorted(moved) == ["instances/ccm.yaml", "instances/gpu-node-2.yaml"], moved
        page.close()
    finally:
        assert server.stop() == 0


def test_dashboard_edits_an_instance_and_refuses_a_stale_edit(
    browser: Any, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> None:
    """The instance form loads an instance as in its file (with its version) and saves a change of one field: the
    pending panel shows it, the commit changes only that line (the file's comments stay); a finding of the rules
    is shown at its field and nothing is written; an edit of a version that changed underneath (a git commit in
    the work tree) is refused with 412 and "changed meanwhile", and succeeds once reloaded."""
    server, repo, seed = _edits_coordinator(kafka_broker, topic_prefix, tmp_path)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("dialog", lambda dialog: dialog.accept(OPERATOR))
        page.goto(server.url + "/")
        page.wait_for_function(
            "() => [...document.getElementById('in-node').options].some((o) => o.value === 'gpu-node-2')"
            " && document.getElementById('pending-box').dataset.loaded !== undefined",
            timeout=15_000,
        )
        assert page.locator("#in-title").text_content() == "New instance"
        page.fill("#in-name", "traffic-parking")
        page.click("#in-load")
        page.wait_for_function(
            "() => document.getElementById('instance-form').dataset.loaded === 'traffic-parking'",
            timeout=10_000,
        )
        assert page.locator("#in-title").text_content() == "Instance traffic-parking"
        assert page.locator("#in-create").text_content() == "Save"
        assert page.eval_on_selector("#in-node", "s => s.value") == "gpu-node-2"
        assert page.eval_on_selector("#in-profile", "s => s.value") == "traffic"
        assert page.eval_on_selector("#in-layout", "s => s.value") == "deepstream-app"
        assert (page.input_value("#in-width"), page.input_value("#in-height")) == ("1920", "1080")
        assert page.input_value("#in-cameras") == "" and not page.is_checked("#in-paused")
        assert "instances/traffic.yaml" in (page.locator("#in-version").text_content() or "")

        # a finding of the rules at its field, nothing written
        _refused_at_cameras(page, repo, seed)

        # one field changed: one commit, one line of the file, the pending panel shows the instance
        page.fill("#in-cameras", "")
        page.check("#in-paused")
        page.click("#in-create")
        _answered(page, "instance-form", 200)
        assert "DsInstance traffic-parking updated in instances/traffic.yaml" in (
            page.locator("#edit-msg").text_content() or ""
        )
        page.locator('#pending-rows tr[data-pending="gpu-node-2/traffic-parking"]').wait_for(timeout=10_000)
        assert _git(repo, "log", "--format=%an|%s", f"{seed}..HEAD").splitlines() == [
            "alice|Update DsInstance traffic-parking (by alice from the API)"
        ]
        diff = [
            line
            for line in _git(repo, "show", "--format=", "-U0", "HEAD").splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        assert diff == ["+  paused: true"], diff
        text = (repo / "instances" / "traffic.yaml").read_text()
        assert "networkMode: none # recorded files in, a fake sink out" in text
        assert text.startswith("# NVIDIA's reference app on the recorded parking streams")

        # the file changes underneath (a git commit): the form's version is stale, 412, nothing written
        (repo / "instances" / "traffic.yaml").write_text(
            text.replace("perf-measurement-interval-sec: 5", "perf-measurement-interval-sec: 2")
        )
        _git(
            repo,
            "-c",
            "user.name=bob",
            "-c",
            "user.email=bob@example.invalid",
            "commit",
            "-qam",
            "faster perf",
        )
        head = _git(repo, "rev-parse", "HEAD")
        page.uncheck("#in-paused")
        page.click("#in-create")
        _answered(page, "instance-form", 412)
        assert "changed meanwhile: reload" in (
            page.locator('#instance-form .err[data-for="instance-form"]').text_content() or ""
        )
        assert "changed meanwhile" in (page.locator("#in-version").text_content() or "")
        assert _git(repo, "rev-parse", "HEAD") == head and _git(repo, "status", "--porcelain") == ""

        # reloaded, the same edit goes through on top of bob's change
        page.click("#in-load")
        page.wait_for_function("() => document.getElementById('in-paused').checked", timeout=10_000)
        page.uncheck("#in-paused")
        page.click("#in-create")
        _answered(page, "instance-form", 200)
        final = (repo / "instances" / "traffic.yaml").read_text()
        assert "paused: false" in final and "perf-measurement-interval-sec: 2" in final
        page.wait_for_function(
            "() => [...document.querySelectorAll('#pending-commits [data-commit]')]"
            ".some((c) => c.textContent.includes('(not from the API)'))",
            timeout=10_000,
        )
        page.screenshot(path=str(tmp_path / "dashboard-instance-edit.png"), full_page=True)
        page.close()
    finally:
        assert server.stop() == 0


def _big_manifests(nodes: int = 250, per_node: int = 4, cameras: int = 4) -> dict[str, Any]:
    """Synthetic answers of the routes the edit forms read, for the fleet of :func:`_big_status`: 1,000
    instances of 4 cameras each, 20 profiles, 250 nodes, and a pending plan that changes every instance."""
    names = [f"inst-{n:03d}-{i}" for n in range(nodes) for i in range(per_node)]
    cams = {name: [f"cam-{name[5:]}-{c}" for c in range(cameras)] for name in names}

    def listing(kind: str, items: list[str]) -> str:
        return json.dumps(
            {"items": [{"kind": kind, "name": x, "file": "f.yaml", "version": "0" * 64} for x in items]}
        )

    plan = {
        "changed": True,
        "summary": {"nodes_to_change": nodes, "instances_to_restart": len(names)},
        "nodes": [
            {
                "name": f"node-{n:03d}",
                "action": "update",
                "instances": [
                    {
                        "name": f"inst-{n:03d}-{i}",
                        "action": "update",
                        "kind": "restart",
                        "files": [{"path": "config_infer_primary.txt", "action": "update"}],
                        "engineRebuilds": [],
                    }
                    for i in range(per_node)
                ],
            }
            for n in range(nodes)
        ],
    }
    one = {
        "apiVersion": "dsfleet/v1",
        "kind": "DsInstance",
        "metadata": {"name": "inst-042-1"},
        "spec": {
            "node": "node-042",
            "layout": "deepstream-app",
            "profile": "profile-07",
            "cameras": cams["inst-042-1"],
            "app": {"streammux": {"width": 1920, "height": 1080}},
        },
    }
    return {
        "/api/v1/manifests/Camera": listing("Camera", [c for x in names for c in cams[x]]),
        "/api/v1/manifests/DsInstance": listing("DsInstance", names),
        "/api/v1/manifests/InferenceProfile": listing(
            "InferenceProfile", [f"profile-{p:02d}" for p in range(20)]
        ),
        "/api/v1/nodes": json.dumps([{"name": f"node-{n:03d}"} for n in range(nodes)]),
        "/api/v1/instances": json.dumps([{"name": x, "sources": cams[x]} for x in names]),
        "/api/v1/pending": json.dumps({"valid": True, "commits": [], "findings": [], "plan": plan}),
        "/api/v1/manifests/DsInstance/inst-042-1": json.dumps(
            {
                "kind": "DsInstance",
                "name": "inst-042-1",
                "file": "instances/node-042.yaml",
                "version": "1" * 64,
                "object": one,
            }
        ),
    }


def test_dashboard_edit_forms_at_250_nodes_and_1000_instances(
    browser: Any, kafka_broker: Tansu, topic_prefix: str, tmp_path: Path
) -> None:
    """The page of a coordinator that takes edits, with the status, the manifests' lists, the nodes, the
    instances' cameras and the pending plan answered by a synthetic fleet of 250 nodes, 1,000 instances and
    4,000 cameras: the tables, the forms' lists and the pending panel (1,000 rows) all render, a filter answers,
    and the instance form opens on one of them. The times are printed (BENCHMARKS.md), not asserted."""
    server, _repo, _seed = _edits_coordinator(kafka_broker, topic_prefix, tmp_path)
    status = json.dumps(_big_status())
    answers = _big_manifests()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("dialog", lambda dialog: dialog.accept(OPERATOR))

        def answer(route: Any) -> None:
            path = "/" + route.request.url.split("/", 3)[3].split("?")[0]
            body = status if path == "/api/v1/status" else answers.get(path)
            if body is None:
                route.continue_()
                return
            headers = {"ETag": f'"{"1" * 64}"'} if path.startswith("/api/v1/manifests/DsInstance/") else {}
            route.fulfill(body=body, content_type="application/json", headers=headers)

        page.route("**/api/v1/**", answer)
        page.goto(server.url + "/")
        first = page.wait_for_function(
            """() => document.querySelectorAll('#instances tr[data-instance]').length === 1000
                  && document.getElementById('instance-names').options.length === 1000
                  && document.getElementById('camera-names').options.length === 4000
                  && document.getElementById('in-node').options.length === 250
                  && document.getElementById('in-profile').options.length === 20
                  && document.querySelectorAll('#pending-rows tr').length === 1000
                  ? performance.now() : false""",
            timeout=30_000,
            polling=20,
        ).json_value()
        named = page.wait_for_function(  # the FPS column names the cameras (from /api/v1/instances)
            """() => document.querySelector('#instances tr[data-instance="inst-042-1"] td.fps')
                       ?.textContent.startsWith('cam-042-1-0: ') ? performance.now() : false""",
            timeout=10_000,
            polling=20,
        ).json_value()
        assert page.locator("#edit-box").is_visible() and page.locator("#pending-box").is_visible()
        assert "1000 instances to restart" in (page.locator("#pending-msg").text_content() or "")
        filter_ms = page.evaluate(
            """() => { const t0 = performance.now();
                       document.getElementById('filter').dispatchEvent(new Event('input'));
                       return performance.now() - t0; }"""
        )
        page.fill("#filter", "node-042")
        page.wait_for_function(
            "() => document.querySelectorAll('#instances tr[data-instance]').length === 4", timeout=5_000
        )
        page.fill("#filter", "")
        lists_ms = page.evaluate(
            """async () => { for (const k of Object.keys(shownNames)) delete shownNames[k];
                             const t0 = performance.now(); await loadNames(); return performance.now() - t0; }"""
        )
        fill_ms = page.evaluate(  # the page's own work: the four lists written from answers already read
            """async () => { const [c, i, p, n] = await Promise.all(['/api/v1/manifests/Camera',
                               '/api/v1/manifests/DsInstance', '/api/v1/manifests/InferenceProfile',
                               '/api/v1/nodes'].map(read));
                             for (const k of Object.keys(shownNames)) delete shownNames[k];
                             const t0 = performance.now();
                             fillList('camera-names', c.body.items.map((x) => x.name));
                             fillList('instance-names', i.body.items.map((x) => x.name));
                             fillSelect('in-profile', p.body.items.map((x) => x.name));
                             fillSelect('in-node', n.body.map((x) => x.name).sort());
                             document.body.offsetHeight; return performance.now() - t0; }"""
        )
        pending_ms = page.evaluate(
            "async () => { const t0 = performance.now(); await loadPending(); return performance.now() - t0; }"
        )
        open_ms = page.evaluate(
            """async () => { document.getElementById('in-name').value = 'inst-042-1';
                             const t0 = performance.now(); await loadInstanceForm();
                             return performance.now() - t0; }"""
        )
        assert page.locator("#instance-form").get_attribute("data-loaded") == "inst-042-1"
        assert page.eval_on_selector("#in-node", "s => s.value") == "node-042"
        assert page.eval_on_selector("#in-profile", "s => s.value") == "profile-07"
        assert page.input_value("#in-cameras") == ", ".join(f"cam-042-1-{c}" for c in range(4))
        assert page.locator("#in-title").text_content() == "Instance inst-042-1"
        page.screenshot(path=str(tmp_path / "dashboard-edits-1000.png"))
        page.close()
        print(
            f"\ndashboard edit forms at 250 nodes / 1,000 instances: first full render {first:.0f} ms"
            f" (cameras named in the FPS column {named:.0f} ms),"
            f" filter render {filter_ms:.1f} ms, lists refresh {lists_ms:.0f} ms (written {fill_ms:.1f} ms),"
            f" pending panel {pending_ms:.0f} ms, instance form opened {open_ms:.0f} ms"
        )
    finally:
        assert server.stop() == 0
