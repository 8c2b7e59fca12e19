"""Per-camera status end to end: a real SQLite store fed an ``AgentResponse`` with cameras through the store's own
method, read back by ``dsfleet status --cameras -o json`` and by a real ``dsfleet serve`` (``/api/v1/status/cameras``,
``/metrics``, with per-camera metrics on and off)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dsfleet.reconciler.store import Store
from dsfleet.schemas.wire import AgentInfo, AgentResponse
from tests.support.apiserver import ServerProc
from tests.support.livefleet import ROOT, copy_fleet

PASSWORD = "canary-pw-5150"


def _dsfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("cameras")
    manifests = copy_fleet(tmp / "manifests")
    db = f"sqlite:///{tmp / 'state.db'}"
    done = _dsfleet("apply", str(manifests), "--db", db)
    assert done.returncode == 0, done.stderr
    now = datetime.now(UTC)
    with Store.open(db) as store:
        info = AgentInfo(
            sent_at=now.isoformat(), node="gpu-node-1", hostname="gpu-node-1", agentVersion="0.1.0"
        )
        store.record_agent_infos({"gpu-node-1": info}, {"gpu-node-1": True}, now)
        response = AgentResponse.model_validate(
            {
                "sent_at": now.isoformat(),
                "node": "gpu-node-1",
                "observedGeneration": 1,
                "instances": [
                    {
                        "name": "ccm-gate",
                        "state": "running",
                        "generation": 1,
                        "cameras": [
                            {
                                "name": "gate",
                                "state": "streaming",
                                "sourceId": 0,
                                "fps": 29.5,
                                "frameNumber": 4242,
                                "latencyMs": 38.0,
                            },
                            {
                                "name": "gate-2",
                                "state": "failed",
                                "reason": f"Could not open resource rtsp://admin:{PASSWORD}@10.0.0.9/main",
                            },
                        ],
                    }
                ],
            }
        )
        assert store.record_agent_responses({"gpu-node-1": response}, now) == 1
    return db, manifests


def test_status_cameras_json_reads_back_what_the_agent_reported(seeded: tuple[str, Path]) -> None:
    db, _ = seeded
    done = _dsfleet("status", "--db", db, "--cameras", "-o", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema"] == "dsfleet.cameras/v1"
    assert doc["states"] == {"failed": 1, "streaming": 1}
    rows = {c["camera"]: c for c in doc["cameras"]}
    assert rows["gate"]["node"] == "gpu-node-1" and rows["gate"]["instance"] == "ccm-gate"
    assert (rows["gate"]["fps"], rows["gate"]["frameNumber"], rows["gate"]["latencyMs"]) == (29.5, 4242, 38.0)
    assert rows["gate-2"]["state"] == "failed" and "Could not open resource" in rows["gate-2"]["reason"]
    assert PASSWORD not in done.stdout
    text = _dsfleet("status", "--db", db, "--cameras")
    assert text.returncode == 0, text.stderr
    assert "gate-2" in text.stdout and "failed" in text.stdout and PASSWORD not in text.stdout


@pytest.mark.parametrize("per_camera", [True, False], ids=["per-camera", "counts-only"])
def test_api_cameras_and_metrics(seeded: tuple[str, Path], tmp_path: Path, per_camera: bool) -> None:
    db, manifests = seeded
    env = {"DSFLEET_API_CAMERA_METRICS": "true" if per_camera else "false"}
    server = ServerProc(
        ["serve", "--manifests", str(manifests), "--db", db], tmp_path / "serve.log", env
    ).start()
    try:
        with server.client() as api:
            cams = api.get("/api/v1/status/cameras")
            assert cams.status_code == 200
            body = cams.json()
            assert body["schema"] == "dsfleet.cameras/v1"
            assert [(c["camera"], c["state"]) for c in body["cameras"]] == [
                ("gate", "streaming"),
                ("gate-2", "failed"),
            ]
            assert PASSWORD not in cams.text
            status = api.get("/api/v1/status").json()
            assert [c["camera"] for c in status["cameras"]] == ["gate", "gate-2"]
            metrics = api.get("/metrics").text
    finally:
        assert server.stop() == 0
    assert 'dsfleet_cameras{state="failed"} 1.0' in metrics
    assert 'dsfleet_cameras{state="streaming"} 1.0' in metrics
    up = 'dsfleet_camera_up{camera="gate",instance="ccm-gate",node="gpu-node-1"} 1.0'
    down = 'dsfleet_camera_up{camera="gate-2",instance="ccm-gate",node="gpu-node-1"} 0.0'
    fps = 'dsfleet_camera_fps{camera="gate",instance="ccm-gate",node="gpu-node-1"} 29.5'
    for line in (up, down, fps):
        assert (line in metrics) is per_camera, line
