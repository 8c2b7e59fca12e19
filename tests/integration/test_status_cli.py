"""``dsfleet status`` on a real SQLite store filled through the real store methods (apply, agent reports)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dsfleet.reconciler.store import Store
from dsfleet.schemas.wire import AgentInfo, AgentResponse

ROOT = Path(__file__).resolve().parents[2]


def dsfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsfleet.reconciler.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _hashes(store: Store) -> dict[str, dict[str, Any]]:
    return {
        i["name"]: {"node": node, "hash": i["configHash"], "generation": c.generation}
        for node, c in store.latest_node_configs().items()
        for i in c.payload["instances"]
    }


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    done = dsfleet("apply", str(ROOT / "manifests"), "--db", url)
    assert done.returncode == 0, done.stderr
    return url


def test_status_json_and_text_from_agent_reports(db: str) -> None:
    now = datetime.now(UTC)
    with Store.open(db) as store:
        want = _hashes(store)
        assert set(want) == {"ccm-gate", "ccm-lobby", "traffic-parking"}
        info = AgentInfo(
            sent_at=now.isoformat(),
            node="gpu-node-1",
            hostname="gpu-node-1",
            agentVersion="0.1.0",
            dockerVersion="26.1",
            gpus=({"index": 0, "uuid": "GPU-1", "name": "T4"},),  # type: ignore[arg-type]
            observedGeneration=1,
            configHash="x",
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
                        "configHash": want["ccm-gate"]["hash"],
                        "fps": {"0": 29.9, "1": 0.0},
                        "containerId": "abc",
                        "lastLogLine": "connecting rtsp://admin:hunter2@10.0.0.5/stream",
                    },
                    {
                        "name": "ccm-lobby",
                        "state": "backoff",
                        "generation": 1,
                        "configHash": "old-hash",
                        "restarts": 6,
                        "exitCode": 1,
                        "lastLogLine": "engine build failed",
                        "drift": [
                            {"kind": "label", "detail": "configHash label edited", "at": now.isoformat()}
                        ],
                    },
                ],
            }
        )
        store.record_agent_responses({"gpu-node-1": response}, now)

    done = dsfleet("status", "--db", db, "-o", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema"] == "dsfleet.status/v1"
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["gpu-node-1"]["online"] is True
    assert nodes["gpu-node-1"]["lastSeen"] is not None
    assert nodes["gpu-node-1"]["agentVersion"] == "0.1.0"
    assert nodes["gpu-node-1"]["gpus"][0]["name"] == "T4"
    assert nodes["gpu-node-1"]["desiredGeneration"] == 1
    assert nodes["gpu-node-2"]["online"] is False
    got = {i["name"]: i for i in doc["instances"]}
    gate, lobby, parking = got["ccm-gate"], got["ccm-lobby"], got["traffic-parking"]
    assert (gate["sync"], gate["health"], gate["state"]) == ("Synced", "Degraded", "running")
    assert gate["fps"] == {"0": 29.9, "1": 0.0}
    assert "hunter2" not in done.stdout and "rtsp://***@10.0.0.5" in gate["lastLogLine"]
    # its config was stored by apply and never published (no coordinator runs): not "on its way"
    assert (lobby["sync"], lobby["health"], lobby["restarts"]) == ("OutOfSync", "Failed", 6)
    assert "waiting in the outbox" in lobby["reason"] and "no coordinator has run" in lobby["reason"]
    assert doc["coordinator"] is None and doc["outbox"]["depth"] == 2
    assert lobby["drift"][0]["kind"] == "label"
    assert (parking["sync"], parking["health"]) == ("OutOfSync", "Unknown")
    assert doc["revision"]["id"] == 1 and doc["revision"]["accepted"] is True
    assert doc["pendingPlan"] is None
    assert doc["summary"]["instances"]["health"] == {"Degraded": 1, "Failed": 1, "Unknown": 1}
    assert any(e["kind"] == "state" for e in doc["events"])

    text = dsfleet("status", "--db", db)
    assert text.returncode == 0, text.stderr
    assert "ccm-lobby" in text.stdout and "Failed" in text.stdout and "backoff" in text.stdout
    assert "revision 1: accepted" in text.stdout
    assert "coordinator: none has run on this store" in text.stdout
    assert "2 configs waiting to be published: no coordinator has run on this store" in text.stdout
    assert "\x1b[" not in text.stdout  # plain text when not a terminal


def test_status_shows_a_rejected_revision_and_the_pending_plan(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "node.yaml").write_text(
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: Bad_Name\nspec: {}\n"
    )
    assert dsfleet("apply", str(bad), "--db", db).returncode == 1
    with Store.open(db) as store:
        store.set_sync_state(
            "pending_plan",
            {"valid": True, "summary": {"nodes_changed": 1}, "text": "1 node to change"},
            datetime.now(UTC) - timedelta(seconds=1),
        )
    doc = json.loads(dsfleet("status", "--db", db, "-o", "json").stdout)
    assert doc["revision"]["accepted"] is False
    assert doc["revision"]["errors"] and doc["revision"]["errors"][0]["file"].endswith("node.yaml")
    assert doc["pendingPlan"]["text"] == "1 node to change"
    text = dsfleet("status", "--db", db).stdout
    assert "rejected" in text and "node.yaml:" in text
    assert "pending plan (manual sync): 1 node to change" in text


def test_status_watch_refreshes(db: str) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dsfleet.reconciler.cli",
            "status",
            "--db",
            db,
            "-o",
            "json",
            "--watch",
            "--interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        assert first["schema"] == second["schema"] == "dsfleet.status/v1"
        assert second["generatedAt"] > first["generatedAt"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_status_of_an_empty_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    missing = dsfleet("status", "--db", url, "-o", "json")  # a typo in --db must not look like an empty fleet
    assert missing.returncode == 2 and "no store at" in missing.stderr
    assert dsfleet("db", "upgrade", "--db", url).returncode == 0
    done = dsfleet("status", "--db", url, "-o", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["nodes"] == [] and doc["instances"] == [] and doc["revision"] is None


def test_store_reads_for_status_and_metrics(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "node.yaml").write_text(
        "apiVersion: dsfleet/v1\nkind: Node\nmetadata:\n  name: Bad_Name\nspec: {}\n"
    )
    assert dsfleet("apply", str(bad), "--db", db).returncode == 1
    with Store.open(db, readonly=True) as store:
        heads = store.latest_node_heads()
        configs = store.latest_node_configs()
        assert set(heads) == set(configs) == {"gpu-node-1", "gpu-node-2"}
        stored_at = store.revision(1).created_at  # type: ignore[union-attr]
        for node, (generation, config_hash, at) in heads.items():
            assert (generation, config_hash, at) == (
                configs[node].generation,
                configs[node].config_hash,
                stored_at,
            )
        assert store.revision_counts() == {"accepted": 1, "rejected": 1}
