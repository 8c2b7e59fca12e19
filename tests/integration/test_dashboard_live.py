"""The dashboard's edit workflow end to end, in headless Chromium: a coordinator in manual sync on a git work tree
(real uvicorn, the real broker), two real agents (``dsfleet-agent run``) converging containers of the stand-in
image on the real Docker engine. A camera created in the form and added to an instance shows in the pending panel;
Apply; the instance's container converges with the new camera, whose FPS the dashboard shows by its name. The git
log has one commit per edit with the token's name, the comments of the edited files survive, and the camera's
secret (planted in the node's host-side secret store) is nowhere in git, the store, the broker or what the API and
the page answered."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from dsfleet.reconciler.api.roles import token_digest
from tests.support.apiserver import TOKEN, ServerProc
from tests.support.brokers import Tansu
from tests.support.fleetstack import HANDOVER_TIMEOUT, Stack, container
from tests.support.livefleet import wait_for

OPERATOR = "operator-token-live-0123456789"
DEADLINE = 60.0
CAMERA = "yard-1"
INSTANCE_COMMENT = (
    "# Two face + MOT instances of the older system's app (layout ccm), equivalent to its sample configs."
)
CAMERA_COMMENT = (
    "# Cameras: credentials are never written here; the agent host holds them (secrets/<secretRef>/)."
)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def _plant(state_dir: Path, ref: str, password: str) -> None:
    d = state_dir / "secrets" / ref
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    for name, value in (("username", "viewer"), ("password", password)):
        (d / name).write_text(value)
        (d / name).chmod(0o600)


@pytest.fixture
def live(
    kafka_broker: Tansu, docker_client: docker.DockerClient, stub_image: str, tmp_path: Path
) -> Iterator[tuple[Stack, ServerProc, str]]:
    """The example fleet (this run's names, the stub image) in a git work tree; both agents enrolled, running and
    converged on the first revision, applied through the API; alice's token is OPERATOR. Yields the stack, the
    coordinator (``dsfleet coordinator --http``) and the applied commit."""
    stack = Stack(
        tmp_path, kafka_broker.bootstrap, f"d{uuid.uuid4().hex[:6]}.", docker_client, image=stub_image
    )
    repo = stack.manifests
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
            stack.db,
            "--bootstrap-servers",
            stack.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            stack.prefix,
            "--partitions",
            "3",
            "--resync-grace",
            "3",
            "--sync",
            "manual",
        ],
        tmp_path / "coordinator.log",
        env={"DSFLEET_API_TOKENS_FILE": str(tokens), HANDOVER_TIMEOUT: "3", "PYTHONUNBUFFERED": "1"},
    )
    try:
        server.start()
        for node in stack.nodes:
            stack.start_agent(node)
        with server.client(TOKEN) as api:
            wait_for(lambda: api.get("/api/v1/status").json().get("pendingPlan"), 30, "the pending plan")
            assert api.post("/api/v1/apply").status_code == 202
        stack.wait_converged(DEADLINE)
        yield stack, server, _git(repo, "rev-parse", "HEAD").strip()
    finally:
        stack.stop()
        server.stop()
        stack.cleanup()


def test_a_camera_made_in_the_dashboard_reaches_the_container(
    browser: Any, live: tuple[Stack, ServerProc, str]
) -> None:
    stack, server, seed = live
    repo, lobby, node = stack.manifests, stack.names["ccm-lobby"], stack.names["gpu-node-1"]
    secret = f"{stack.canary}-{CAMERA}"
    _plant(stack.state_dir(node), CAMERA, secret)  # the operator's step on the host, never through the page
    before = container(stack.client, lobby)
    assert before is not None and before.status == "running"
    responses: list[Any] = []  # every API answer the page read
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("dialog", lambda dialog: dialog.accept(OPERATOR))
    page.on("response", lambda r: responses.append(r) if "/api/" in r.url else None)
    page.goto(server.url + "/")
    page.wait_for_function(
        "() => document.getElementById('pending-box').dataset.loaded !== undefined", timeout=15_000
    )
    assert page.locator("#pending-rows tr").count() == 0, "nothing pending after the first apply"

    # create the camera (zone lobby: it joins cameras/lobby.yaml), then add it to the lobby instance
    page.fill("#cam-name", CAMERA)
    page.fill("#cam-id", "99")
    page.fill("#cam-url", f"rtsp://127.0.0.1:8554/{CAMERA}/main")
    page.fill("#cam-zone", "lobby")
    page.fill("#cam-secret", CAMERA)
    page.click("#cam-save")
    page.wait_for_function(
        "() => document.getElementById('camera-form').dataset.status === '201'", timeout=10_000
    )
    assert "cameras/lobby.yaml" in (page.locator("#edit-msg").text_content() or "")
    page.fill("#as-instance", lobby)
    page.dispatch_event("#as-instance", "change")
    page.fill("#as-camera", CAMERA)
    page.click("#as-add")
    page.wait_for_function(
        "() => document.getElementById('assign-form').dataset.status === '200'", timeout=10_000
    )

    # the pending diff: the lobby instance changes on its node; nothing reached the agent yet
    row = page.locator(f'#pending-rows tr[data-pending="{node}/{lobby}"]')
    row.wait_for(timeout=10_000)
    assert (row.locator("td.kind").text_content() or "") in ("restart", "recreate"), row.inner_text()
    assert "source_list.json" in (row.locator("td.files").first.text_content() or ""), row.inner_text()
    assert page.locator("#pending-commits [data-commit]").count() == 2
    unchanged = container(stack.client, lobby)
    assert (
        unchanged is not None and unchanged.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]
    )

    # Apply: the agent converges the container, and the dashboard names the new camera's FPS
    page.click("#pending-apply")
    page.wait_for_function("() => document.getElementById('msg').dataset.status === '202'", timeout=10_000)
    stack.wait_converged(DEADLINE)
    after = container(stack.client, lobby)
    assert after is not None and after.attrs["State"]["StartedAt"] != before.attrs["State"]["StartedAt"]
    fps = page.locator(f'#instances tr[data-instance="{lobby}"] td.fps')
    page.wait_for_function(
        f"""() => {{ const t = document.querySelector('#instances tr[data-instance="{lobby}"] td.fps');
                   return t !== null && /^{CAMERA}: [1-9][0-9.]* fps$/m.test(t.textContent); }}""",
        timeout=30_000,
    )
    assert (fps.text_content() or "").splitlines()[0].startswith("lobby-1: "), fps.text_content()
    assert page.locator(f'#instances tr[data-instance="{lobby}"] td.state').text_content() == "running"
    page.wait_for_function(
        "() => document.querySelectorAll('#pending-rows tr').length === 0"
        " && document.querySelectorAll('#pending-commits [data-commit]').length === 0",
        timeout=10_000,
    )
    with server.client(TOKEN) as api:
        sources = api.get(f"/api/v1/instances/{lobby}").json()["sources"]
        reads = [api.get(path).text for path in ("/api/v1/status", "/api/v1/instances", "/api/v1/pending")]
        reads.append(api.get(f"/api/v1/manifests/Camera/{CAMERA}").text)
    assert sources == ["lobby-1", "lobby-2", "lobby-3", "lobby-4", CAMERA], sources
    page_text = page.content()
    answers = [r.text() for r in responses]
    page.screenshot(path=str(stack.root / "dashboard-live.png"), full_page=True)
    page.close()

    # one commit per edit, by the token's name; the comments of both edited files are still there
    log = _git(repo, "log", "--format=%an|%s", f"{seed}..HEAD").splitlines()
    assert log == [
        f"alice|Add camera {CAMERA} to DsInstance {lobby} (by alice from the API)",
        f"alice|Create Camera {CAMERA} (by alice from the API)",
    ], log
    assert _git(repo, "show", "--format=", "--name-only", "HEAD~1").split() == ["cameras/lobby.yaml"]
    assert _git(repo, "show", "--format=", "--name-only", "HEAD").split() == ["instances/ccm.yaml"]
    assert (repo / "instances/ccm.yaml").read_text().splitlines()[0] == INSTANCE_COMMENT
    assert (repo / "cameras/lobby.yaml").read_text().splitlines()[0] == CAMERA_COMMENT

    # the secret canary: it reached the container's rendered config on the host, and nothing else
    rendered = stack.state_dir(node) / "instances" / lobby
    assert any(secret in p.read_text() for p in rendered.rglob("*") if p.is_file()), (
        "the secret never reached it"
    )
    assert secret not in _git(repo, "log", "-p", "--all") and stack.canary not in page_text
    assert len(answers) > 10 and not [a for a in answers + reads if stack.canary in a]
    stack.assert_no_secret()  # the store, the broker's topics, docker inspect, every process's log
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        assert stack.canary not in anonymous.get("/").text
