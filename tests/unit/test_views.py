"""dsfleet.reconciler.views: the JSON documents the CLI prints (validate, apply, history, get, status) and the API
serves; the status document from a hand-made store snapshot."""

from __future__ import annotations

import dataclasses
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
from tests.support.statussnapshots import FLEET, NOW, SECRET, example_snapshot

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
    assert doc["fleet"] == FLEET
    assert doc["summary"] == {
        "nodes": {"total": 3, "online": 1, "offline": 2, "unknown": 0, "retiring": 1},
        "instances": {
            "total": 5,
            "sync": {"OutOfSync": 2, "Synced": 3},
            "health": {"Degraded": 1, "Failed": 1, "Healthy": 2, "Unknown": 1},
            "drift": 0,  # the one drift record is healed
            "driftEvents": 3,
        },
    }
    coordinator = doc["coordinator"]
    assert coordinator["running"] is True
    assert coordinator["summary"] == (
        "coordinator running on coord.lan (pid 4242), watching /srv/fleet; last seen 1 s ago"
    )
    assert coordinator["broker"]["summary"] == "broker reachable since 2026-03-01 11:00:00 UTC (60 min)"
    assert coordinator["foreignConfigs"]["count"] == 1
    assert doc["outbox"] == {
        "depth": 1,
        "held": 0,
        "nodes": ["gpu-2"],
        "oldestAt": "2026-03-01T11:59:30+00:00",
        "oldestAgeSeconds": 30.0,
        "summary": "1 config waiting to be published: being published",
    }
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert list(nodes) == ["gpu-1", "gpu-2", "stray"]  # declared, desired or announced, by name
    gpu1 = nodes["gpu-1"]
    assert (gpu1["heartbeatAgeSeconds"], gpu1["capacity"], gpu1["instances"], gpu1["state"]) == (
        2.5,
        8,
        3,
        "online",
    )
    assert gpu1["sync"] == "OutOfSync" and gpu1["reason"].startswith(
        "instance old OutOfSync: no longer desired"
    )
    assert gpu1["error"] == "pull rtsp://***@cam/1 failed"
    assert (gpu1["fleet"], gpu1["fleetConflict"]) == (FLEET, None)
    assert nodes["gpu-2"] == {
        "name": "gpu-2",
        "online": False,
        "state": "offline",
        "stateReason": "offline: never heard",
        "retiring": False,
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
        "reason": "instance yard OutOfSync: desired; not reported by its node yet; waiting in the outbox for "
        "30 s: being published; node never reported",
        "managed": True,
        "error": None,
        "fleet": None,
        "fleetConflict": None,
        "rejections": [],
    }
    stray = nodes["stray"]
    assert (stray["managed"], stray["instances"], stray["retiring"]) == (False, 0, True)
    assert (
        stray["fleetConflict"] == "its agent is bound to another fleet (f2); it ignores this fleet's configs"
    )
    assert stray["rejections"] == [
        {"reason": "other-fleet", "generation": 1, "detail": f"from {FLEET}", "at": "t"}
    ]

    instances = {i["name"]: i for i in doc["instances"]}
    assert list(instances) == ["dock", "gate", "lobby", "old", "yard"]  # by node, then name
    assert {n: (i["sync"], i["health"]) for n, i in instances.items()} == {
        "dock": ("Synced", "Degraded"),
        "gate": ("Synced", "Healthy"),
        "lobby": ("Synced", "Failed"),
        "old": ("OutOfSync", "Healthy"),
        "yard": ("OutOfSync", "Unknown"),
    }
    assert instances["gate"]["drift"] == [
        {"kind": "file-edited", "detail": "rtsp://***@10.0.0.1/x edited", "at": "t", "healed": True}
    ]
    assert (instances["gate"]["fps"], instances["gate"]["fpsAt"]) == (
        {"0": 25.0},
        "2026-03-01T11:59:57+00:00",
    )
    dock = instances["dock"]
    assert dock["reason"] == "ImageNotFound: image ds:7.1 not found; next retry in 40 s (attempt 3)"
    assert (dock["fps"], dock["fpsAt"]) == ({}, None)  # printed 5 minutes ago: stale
    assert dock["conditions"] == [
        {
            "reason": "ImageNotFound",
            "message": "image ds:7.1 not found",
            "cameras": [],
            "since": "2026-03-01T11:58:00+00:00",
            "attempts": 2,
            "nextRetryAt": "2026-03-01T12:00:40+00:00",
        }
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
        "fpsAt": None,
        "conditions": [],
        "drift": [],
        "movingFrom": [],
        "containerId": None,
        "updatedAt": "2026-03-01T12:00:00+00:00",
    }
    assert instances["old"]["reason"] == (
        "no longer desired; still reported by its node; generation 3 published 10 min ago, not applied; running"
    )
    assert (instances["yard"]["paused"], instances["yard"]["state"]) == (True, None)
    assert "waiting in the outbox for 30 s" in instances["yard"]["reason"]

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


def test_a_dead_coordinator_and_an_unreachable_broker_are_named() -> None:
    snapshot = example_snapshot()
    dead = status_document(snapshot, NOW + timedelta(minutes=2))
    assert dead["coordinator"]["running"] is False
    assert dead["coordinator"]["summary"] == "coordinator not running, last seen 2 min ago"
    assert {n["name"]: n["state"] for n in dead["nodes"]} == {
        "gpu-1": "unknown",  # not "online 2 min ago": nobody listens to it
        "gpu-2": "unknown",
        "stray": "unknown",
    }
    assert dead["outbox"]["summary"] == "1 config waiting to be published: coordinator not running"
    down_since = NOW - timedelta(seconds=90)
    beat = dataclasses.replace(snapshot.coordinator, broker_reachable=False, broker_since=down_since)  # type: ignore[type-var]
    down = status_document(dataclasses.replace(snapshot, coordinator=beat), NOW)
    assert (
        down["coordinator"]["broker"]["summary"] == "broker unreachable since 2026-03-01 11:58:30 UTC (90 s)"
    )
    assert down["outbox"]["summary"] == (
        "1 config waiting to be published: broker unreachable since 2026-03-01 11:58:30 UTC (90 s)"
    )
    assert down["summary"]["nodes"]["unknown"] == 3 and down["summary"]["nodes"]["offline"] == 0
    yard = next(i for i in down["instances"] if i["name"] == "yard")
    assert (
        "waiting in the outbox for 30 s: broker unreachable since 2026-03-01 11:58:30 UTC" in yard["reason"]
    )


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
    assert doc["summary"]["instances"] == {
        "total": 0,
        "sync": {},
        "health": {},
        "drift": 0,
        "driftEvents": 0,
    }
    assert doc["coordinator"] is None and doc["outbox"]["depth"] == 0
