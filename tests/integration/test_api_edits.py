"""Edits through the HTTP API against a real coordinator (``dsfleet coordinator --http``, manual sync, a real
broker) whose manifests directory is a real git work tree: a camera created and added to an instance, the
pending diff, Apply, the camera in the desired state; one commit per edit as its user; the file's comments
intact; invalid edits refused with ``validate``'s findings and nothing written; a stale If-Match 412; a viewer
403 before its body is read; a password in a camera URL never in git, the store, the log or an answer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dsfleet.reconciler.api.roles import token_digest
from dsfleet.reconciler.store import Store
from tests.support.apiserver import TOKEN, ServerProc
from tests.support.brokers import Tansu
from tests.support.livefleet import ROOT, copy_fleet, wait_for

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789"
CANARY = "canary-pw-7f3e9b"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


@dataclass
class Edits:
    server: ServerProc
    repo: Path
    db: str
    seed: str

    def client(self, token: str = OPERATOR) -> httpx.Client:
        return self.server.client(token)


@pytest.fixture(scope="module")
def edits(kafka_broker: Tansu, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edits]:
    import uuid

    tmp = tmp_path_factory.mktemp("edits")
    repo = copy_fleet(tmp / "manifests")
    _git(repo, "init", "--quiet", "--initial-branch", "main")
    _git(repo, "add", "--all")
    _git(
        repo,
        "-c",
        "user.name=seed",
        "-c",
        "user.email=seed@example.invalid",
        "commit",
        "--quiet",
        "-m",
        "seed",
    )
    tokens = tmp / "tokens"
    tokens.write_text(
        f"# name:role:sha256\nalice:operator:{token_digest(OPERATOR)}\nvictor:viewer:{token_digest(VIEWER)}\n"
    )
    db = f"sqlite:///{tmp / 'state.db'}"
    server = ServerProc(
        [
            "coordinator",
            "--manifests",
            str(repo),
            "--db",
            db,
            "--bootstrap-servers",
            kafka_broker.bootstrap,
            "-X",
            "fetch.wait.max.ms=10",
            "--topic-prefix",
            f"t{uuid.uuid4().hex[:10]}.",
            "--partitions",
            "3",
            "--sync",
            "manual",
        ],
        tmp / "c.log",
        env={"DSFLEET_API_TOKENS_FILE": str(tokens)},
    ).start()
    try:
        with server.client(TOKEN) as api:
            wait_for(lambda: api.get("/api/v1/status").json().get("pendingPlan"), 30, "the pending plan")
            assert api.post("/api/v1/apply").status_code == 202
        yield Edits(server, repo, db, _git(repo, "rev-parse", "HEAD").strip())
    finally:
        assert server.stop() == 0
        assert CANARY not in server.text()


def _camera(name: str, camera_id: str, url: str, zone: str = "gate") -> dict[str, Any]:
    return {
        "apiVersion": "dsfleet/v1",
        "kind": "Camera",
        "metadata": {"name": name, "labels": {"zone": zone}},
        "spec": {"cameraId": camera_id, "url": url, "credentials": {"secretRef": name}},
    }


def _desired_cameras(db: str, instance: str) -> list[str]:
    """The cameras of an instance in the store's last applied (desired) config of its node."""
    with Store.open(db, readonly=True) as store:
        configs = store.latest_node_configs()
    return [
        camera
        for config in configs.values()
        for item in config.payload["instances"]
        if item["name"] == instance
        for camera in item["cameras"]
    ]


def _refused(resp: httpx.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["findings"], error
    assert error["message"] == error["findings"][0]["text"].splitlines()[0]
    return list(error["findings"])


def _validate_text(repo: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", "validate", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    return done.stdout + done.stderr


def test_create_assign_pending_apply(edits: Edits) -> None:
    ccm = edits.repo / "instances" / "ccm.yaml"
    before = ccm.read_text()
    with edits.client() as api:
        created = api.post(
            "/api/v1/manifests/Camera", json=_camera("yard-1", "99", "rtsp://127.0.0.1:8554/y1", "yard")
        )
        assert created.status_code == 201, created.text
        assert created.json()["file"] == "cameras/yard.yaml"
        assert created.headers["etag"] == f'"{created.json()["version"]}"'

        got = api.get("/api/v1/manifests/DsInstance/ccm-lobby")
        assert got.status_code == 200
        assigned = api.post(
            "/api/v1/manifests/DsInstance/ccm-lobby/cameras",
            json={"camera": "yard-1"},
            headers={"If-Match": got.headers["etag"]},
        )
        assert assigned.status_code == 200, assigned.text
        after = ccm.read_text()
        assert after.splitlines()[0] == before.splitlines()[0] and after.startswith("#"), "comments kept"
        changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
        assert changed == [
            (
                "  cameras: [lobby-1, lobby-2, lobby-3, lobby-4]",
                "  cameras: [lobby-1, lobby-2, lobby-3, lobby-4, yard-1]",
            )
        ], changed

        pending = api.get("/api/v1/pending").json()
        assert pending["valid"] is True and pending["lastApplied"] == edits.seed
        assert [c["byApi"] for c in pending["commits"]] == [True, True]
        assert pending["plan"]["schema"] == "dsfleet.diff/v1" and pending["plan"]["changed"] is True
        changed = {i["name"] for n in pending["plan"]["nodes"] for i in n.get("instances", [])}
        assert "ccm-lobby" in changed, pending["plan"]

        applied = api.post("/api/v1/apply")
        assert applied.status_code == 202 and applied.json().get("revision"), applied.text
        assert "yard-1" in _desired_cameras(edits.db, "ccm-lobby")
        assert api.get("/api/v1/pending").json()["commits"] == []

    log = _git(edits.repo, "log", "--format=%an|%s", f"{edits.seed}..HEAD").splitlines()
    assert log == [
        "alice|Add camera yard-1 to DsInstance ccm-lobby (by alice from the API)",
        "alice|Create Camera yard-1 (by alice from the API)",
    ]
    with Store.open(edits.db, readonly=True) as store:
        messages = [e.message for e in store.events(200)]
    assert any("Create Camera yard-1 by alice (operator)" in m for m in messages), messages


def test_invalid_edits_are_refused_and_nothing_is_written(edits: Edits) -> None:
    head = _git(edits.repo, "rev-parse", "HEAD")
    with edits.client() as api:
        duplicate = _refused(
            api.post("/api/v1/manifests/Camera", json=_camera("gate-8", "3", "rtsp://127.0.0.1:8554/g8"))
        )
        unknown = api.post("/api/v1/manifests/DsInstance/nowhere/cameras", json={"camera": "gate-1"})
        assert unknown.status_code == 404
        inst = api.get("/api/v1/manifests/DsInstance/ccm-lobby").json()["object"]
        inst["spec"]["cameras"] = [*inst["spec"]["cameras"], "no-such-camera"]
        missing = _refused(api.put("/api/v1/manifests/DsInstance/ccm-lobby", json=inst))
        secret = api.post(
            "/api/v1/manifests/Camera",
            json=_camera("gate-7", "77", f"rtsp://admin:{CANARY}@127.0.0.1:8554/g7"),
        )
        leaked = _refused(secret)
        assert CANARY not in secret.text
    assert _git(edits.repo, "rev-parse", "HEAD") == head
    assert _git(edits.repo, "status", "--porcelain") == ""
    # the same findings `dsfleet validate` prints for the same files
    probe = edits.repo.parent / "probe"
    copy = subprocess.run(["cp", "-r", str(edits.repo), str(probe)], check=True, timeout=30)
    assert copy.returncode == 0
    gate = probe / "cameras" / "gate.yaml"
    gate.write_text(
        gate.read_text()
        + "---\napiVersion: dsfleet/v1\nkind: Camera\nmetadata:\n  name: gate-8\n  labels:\n    zone: gate\n"
        "spec:\n  cameraId: '3'\n  url: rtsp://127.0.0.1:8554/g8\n  credentials:\n    secretRef: gate-8\n"
    )
    printed = _validate_text(probe)
    assert any(f["message"] in printed and f["rule"] in printed for f in duplicate), (duplicate, printed)
    assert any("no-such-camera" in f["message"] for f in missing), missing
    assert any(f["rule"] == "camera-url-credentials" for f in leaked), leaked
    history = _git(edits.repo, "log", "-p", "--all")
    assert CANARY not in history
    db_file = Path(edits.db.removeprefix("sqlite:///"))
    for path in db_file.parent.glob(db_file.name + "*"):
        assert CANARY.encode() not in path.read_bytes()


def test_stale_update_is_412_and_viewer_is_403(edits: Edits) -> None:
    with edits.client() as api:
        got = api.get("/api/v1/manifests/Camera/gate-2")
        body = got.json()["object"]
        body["spec"]["width"] = 1920
        first = api.put(
            "/api/v1/manifests/Camera/gate-2", json=body, headers={"If-Match": got.headers["etag"]}
        )
        assert first.status_code == 200, first.text
        body["spec"]["width"] = 1280
        stale = api.put(
            "/api/v1/manifests/Camera/gate-2", json=body, headers={"If-Match": got.headers["etag"]}
        )
        assert stale.status_code == 412
        assert stale.json()["error"]["version"] == first.json()["version"]
        assert stale.headers["etag"] == first.headers["etag"]
    diff = _git(edits.repo, "show", "--format=", "HEAD")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-  width: 3840", "+  width: 1920"], diff
    with edits.client(VIEWER) as viewer:
        assert viewer.get("/api/v1/manifests/Camera/gate-2").status_code == 200
        refused = viewer.post("/api/v1/manifests/Camera", json=_camera("gate-6", "66", "rtsp://127.0.0.1/g6"))
        assert refused.status_code == 403 and "viewer" in refused.json()["error"]["message"]
        big = viewer.post("/api/v1/manifests/Camera", content=b"x" * (4 * 1024 * 1024))
        assert big.status_code == 403, "the role is checked before the body is read (no 413)"
        assert viewer.post("/api/v1/apply").status_code == 403
    with edits.client() as operator:
        policy = operator.post(
            "/api/v1/manifests/Policy",
            json={"kind": "Policy", "metadata": {"name": "p2"}, "spec": {}},
        )
        assert policy.status_code == 403 and "admin" in policy.json()["error"]["message"]


def test_move_camera_is_one_commit_or_nothing(edits: Edits) -> None:
    instance = {
        "kind": "DsInstance",
        "metadata": {"name": "lobby-b"},
        "spec": {
            "node": "gpu-node-2",
            "layout": "deepstream-app",
            "profile": "traffic",
            "app": {"streammux": {"width": 1920, "height": 1080}},
        },
    }
    with edits.client() as api:
        created = api.post("/api/v1/manifests/DsInstance", json=instance)
        assert created.status_code == 201, created.text
        assert created.json()["file"] == "instances/gpu-node-2.yaml"
        source = api.get("/api/v1/manifests/DsInstance/ccm-lobby")
        head = _git(edits.repo, "rev-parse", "HEAD")
        stale = api.post(
            "/api/v1/manifests/DsInstance/lobby-b/cameras/move",
            json={"camera": "lobby-4", "fromInstance": "ccm-lobby", "fromVersion": '"0000"'},
            headers={"If-Match": created.headers["etag"]},
        )
        assert stale.status_code == 412 and stale.json()["error"]["version"] == source.json()["version"]
        absent = api.post(
            "/api/v1/manifests/DsInstance/lobby-b/cameras/move",
            json={"camera": "gate-1", "fromInstance": "ccm-lobby"},
        )
        assert absent.status_code == 404 and "does not list camera 'gate-1'" in absent.text
        assert _git(edits.repo, "rev-parse", "HEAD") == head
        assert _git(edits.repo, "status", "--porcelain") == ""
        moved = api.post(
            "/api/v1/manifests/DsInstance/lobby-b/cameras/move",
            json={"camera": "lobby-4", "fromInstance": "ccm-lobby", "fromVersion": source.headers["etag"]},
            headers={"If-Match": created.headers["etag"]},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["file"] == "instances/gpu-node-2.yaml"
        lobby = api.get("/api/v1/manifests/DsInstance/ccm-lobby").json()["object"]["spec"]["cameras"]
        target = api.get("/api/v1/manifests/DsInstance/lobby-b").json()["object"]["spec"]["cameras"]
        assert "lobby-4" not in lobby and target == ["lobby-4"], (lobby, target)
    log = _git(edits.repo, "log", "--format=%an|%s", "-2").splitlines()
    assert log == [
        "alice|Move camera lobby-4 from ccm-lobby to lobby-b (by alice from the API)",
        "alice|Create DsInstance lobby-b (by alice from the API)",
    ], log
    files = _git(edits.repo, "show", "--format=", "--name-only", "HEAD").split()
    assert sorted(files) == ["instances/ccm.yaml", "instances/gpu-node-2.yaml"], files


def test_discard_drops_only_the_apis_edits(edits: Edits) -> None:
    with edits.client() as api:
        before = api.get("/api/v1/pending").json()
        base = before["lastApplied"]
        made = api.post(
            "/api/v1/manifests/Camera", json=_camera("lobby-9", "98", "rtsp://127.0.0.1/l9", "lobby")
        )
        assert made.status_code == 201, made.text
        assert (edits.repo / "cameras" / "lobby.yaml").read_text().count("lobby-9") >= 1
        dropped = api.post("/api/v1/pending/discard")
        assert dropped.status_code == 200, dropped.text
        assert made.json()["commit"] in dropped.json()["discarded"]
        assert dropped.json()["head"] == base
        assert "lobby-9" not in (edits.repo / "cameras" / "lobby.yaml").read_text()
        (edits.repo / "README.txt").write_text("a note\n")
        _git(edits.repo, "add", "README.txt")
        _git(edits.repo, "-c", "user.name=bob", "-c", "user.email=b@example.invalid", "commit", "-qm", "note")
        refused = api.post("/api/v1/pending/discard")
        assert refused.status_code == 409 and "not made by the API" in refused.json()["error"]["message"]
