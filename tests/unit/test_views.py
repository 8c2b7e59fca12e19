"""dsfleet.reconciler.views: the JSON documents the CLI prints (validate, apply, history, get, status) and the API
serves; the status document from a hand-made store snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dsfleet.reconciler.applying import revision_from_git
from dsfleet.reconciler.loading.manifestsets import load_manifests
from dsfleet.reconciler.store import (
    AppliedRevision,
    CameraRow,
    LegacyDsInstance,
    RevisionRecord,
    StatusSnapshot,
)
from dsfleet.reconciler.views import apply_json, history_json, record_json, status_document, validate_json
from tests.support.statussnapshots import NOW, SECRET, example_snapshot

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_validate_json_of_the_example_fleet() -> None:
    loaded = load_manifests([MANIFESTS])
    document = validate_json(loaded, 0, len(loaded.findings))
    assert document["schema"] == "dsfleet.validate/v1" and document["valid"] is True
    assert validate_json(loaded, 0, 1, strict=True)["valid"] is False  # --strict: a warning fails
    assert document["counts"] == {
        "files": 9,
        "nodes": 2,
        "cameras": 10,
        "instances": 3,
        "profiles": 2,
        "policies": 1,
    }
    json.dumps(document)


def test_apply_and_history_json() -> None:
    applied = AppliedRevision(revision_id=4, generations={"n1": 2}, outbox_ids=(7,))
    assert apply_json(applied, {"nodes": 1}, [{"rule": "w"}]) == {
        "schema": "dsfleet.apply/v1",
        "outcome": "applied",
        "revision": 4,
        "accepted": True,
        "generations": {"n1": 2},
        "outbox": [7],
        "summary": {"nodes": 1},
        "findings": [{"rule": "w"}],
    }
    record = RevisionRecord(4, T0, "cli", "abc", "A <a@b>", "msg", "h", False, ({"rule": "x"},), 0)
    assert history_json([record]) == [
        {
            "id": 4,
            "created_at": "2026-01-01T00:00:00+00:00",
            "source": "cli",
            "git_commit": "abc",
            "git_author": "A <a@b>",
            "git_message": "msg",
            "manifests_hash": "h",
            "accepted": False,
            "nodes_changed": 0,
            "errors": [{"rule": "x"}],
        }
    ]


def test_record_json_is_plain_json() -> None:
    camera = record_json(
        CameraRow(name="gate-1", camera_id="3", url="rtsp://127.0.0.1/x", labels={"zone": "a"})
    )
    assert camera["labels"] == {"zone": "a"} and camera["instance"] is None
    legacy = record_json(LegacyDsInstance("ccm-gate", "gpu-node-1", ("gate-1", "gate-2"), "NORMAL"))
    assert legacy["cameras"] == ["gate-1", "gate-2"]
    json.dumps([camera, legacy])


def test_revision_from_git_outside_a_work_tree(tmp_path: Path) -> None:
    rev = revision_from_git(tmp_path, source="watch", now=T0)
    assert (rev.source, rev.created_at, rev.git_commit, rev.manifests_hash) == ("watch", T0, None, "")


def test_status_document_of_a_hand_made_snapshot() -> None:
    doc = status_document(example_snapshot(), NOW)
    assert (doc["schema"], doc["generatedAt"]) == ("dsfleet.status/v1", "2026-03-01T12:00:00+00:00")
    assert SECRET not in json.dumps(doc)  # URL user-info removed from errors, log lines, drift, events
    assert doc["summary"] == {
        "nodes": {"total": 3, "online": 1, "offline": 2},
        "instances": {
            "total": 4,
            "sync": {"OutOfSync": 2, "Synced": 2},
            "health": {"Failed": 1, "Healthy": 2, "Unknown": 1},
            "drift": 1,
        },
    }
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert list(nodes) == ["gpu-1", "gpu-2", "stray"]  # declared, desired or announced, by name
    gpu1 = nodes["gpu-1"]
    assert (gpu1["heartbeatAgeSeconds"], gpu1["capacity"], gpu1["instances"], gpu1["sync"]) == (
        2.5,
        8,
        2,
        "Synced",
    )
    assert gpu1["error"] == "pull rtsp://***@cam/1 failed"
    assert nodes["gpu-2"] == {
        "name": "gpu-2",
        "online": False,
        "lastSeen": None,
        "heartbeatAgeSeconds": None,
        "heartbeatSeconds": None,
        "hostname": "gpu-2.lan",
        "agentVersion": None,
        "dockerVersion": None,
        "nvidiaRuntime": False,
        "gpus": [],
        "capacity": 4,
        "instances": 1,
        "desiredGeneration": 1,
        "observedGeneration": None,
        "sync": "OutOfSync",
        "managed": True,
        "error": None,
    }
    assert (nodes["stray"]["managed"], nodes["stray"]["instances"]) == (False, 0)

    instances = {i["name"]: i for i in doc["instances"]}
    assert list(instances) == ["gate", "lobby", "old", "yard"]  # by node, then name
    assert {n: (i["sync"], i["health"]) for n, i in instances.items()} == {
        "gate": ("Synced", "Healthy"),
        "lobby": ("Synced", "Failed"),
        "old": ("OutOfSync", "Healthy"),
        "yard": ("OutOfSync", "Unknown"),
    }
    assert instances["gate"]["drift"] == [
        {"kind": "file-edited", "detail": "rtsp://***@10.0.0.1/x edited", "at": "t", "healed": True}
    ]
    assert instances["lobby"] == {
        "name": "lobby",
        "node": "gpu-1",
        "sync": "Synced",
        "health": "Failed",
        "state": "exited",
        "reason": "exited with code 2",
        "desiredGeneration": 3,
        "observedGeneration": 3,
        "desiredConfigHash": "h2",
        "observedConfigHash": "h2",
        "paused": False,
        "gpu": 0,
        "profile": None,
        "cameras": 2,
        "restarts": 0,
        "exitCode": 2,
        "lastLogLine": "opening rtsp://***@10.1.2.3/stream",
        "error": "rtsp://***@cam failed",
        "fps": {},
        "drift": [],
        "containerId": None,
        "updatedAt": "2026-03-01T12:00:00+00:00",
    }
    assert instances["old"]["reason"] == "no longer desired; still reported by its node; running"
    assert (instances["yard"]["paused"], instances["yard"]["state"]) == (True, None)

    assert doc["revision"]["subject"] == "Add gate" and doc["revision"]["errors"][0]["line"] == 4
    assert doc["pendingPlan"] == {
        "valid": True,
        "summary": {"nodes_to_change": 1},
        "text": "Plan: 1 to change.",
    }
    assert [(e["id"], e["message"]) for e in doc["events"]] == [
        (2, "running → exited rtsp://***@b"),
        (1, "heartbeat"),
    ]
    json.dumps(doc)


def test_status_document_depends_on_now_only_through_the_snapshot_times() -> None:
    snapshot = example_snapshot()
    later = status_document(snapshot, NOW + timedelta(seconds=90))
    assert later["generatedAt"] == "2026-03-01T12:01:30+00:00"
    assert later["nodes"][0]["heartbeatAgeSeconds"] == 92.5
    assert status_document(snapshot, NOW) == status_document(snapshot, NOW)  # no clock, no I/O of its own


def test_status_document_of_an_empty_store() -> None:
    doc = status_document(StatusSnapshot(), NOW)
    assert doc["nodes"] == doc["instances"] == doc["events"] == []
    assert doc["revision"] is None and doc["pendingPlan"] is None
    assert doc["summary"]["instances"] == {"total": 0, "sync": {}, "health": {}, "drift": 0}
