"""A hand-made :class:`~dsfleet.reconciler.store.StatusSnapshot` of a small fleet, for the pure status document
and the API's models: one online node running three instances (healthy, exited with a credential in its error,
one no longer desired), one declared node whose agent never reported, an agent not in the manifests, a rejected
revision, a pending plan and two events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dsfleet.reconciler.store import (
    EventRecord,
    InstanceRow,
    NodeRow,
    NodeStatusRow,
    ObservedDetail,
    RevisionRecord,
    StatusSnapshot,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "hunter2"
STORED = NOW - timedelta(minutes=10)


def node_status(node: str, *, online: bool = True, **kw: object) -> NodeStatusRow:
    fields: dict[str, object] = {
        "node": node,
        "online": online,
        "last_seen": NOW - timedelta(seconds=2.5),
        "heartbeat_seconds": 5.0,
        "hostname": f"{node}.lan",
        "machine_id": None,
        "addresses": ("127.0.0.1",),
        "gpus": ({"index": 0, "uuid": "GPU-0", "name": "T4", "memoryMiB": 15360},),
        "capacity": None,
        "agent_version": "0.1.0",
        "docker_version": "27.1",
        "nvidia_runtime": True,
        "observed_generation": 3,
        "observed_config_hash": "nh1",
        "error": None,
        "reported_at": NOW - timedelta(seconds=1),
        **kw,
    }
    return NodeStatusRow(**fields)  # type: ignore[arg-type]


def example_snapshot() -> StatusSnapshot:
    drift = {
        "kind": "file-edited",
        "detail": f"rtsp://admin:{SECRET}@10.0.0.1/x edited",
        "at": "t",
        "healed": True,
    }
    return StatusSnapshot(
        node_statuses=(
            node_status("gpu-1", error=f"pull rtsp://u:{SECRET}@cam/1 failed"),
            node_status("stray", online=False, last_seen=None, gpus=(), observed_generation=None),
        ),
        node_heads={"gpu-1": (3, "nh1", STORED), "gpu-2": (1, "nh2", STORED)},
        nodes=(
            NodeRow(
                "gpu-1", hostname="gpu-1.lan", node_id="n-1", labels={"site": "a"}, capacity=8, gpus=(0,)
            ),
            NodeRow("gpu-2", hostname="gpu-2.lan", capacity=4),
        ),
        instances=(
            InstanceRow(
                "gate", node="gpu-1", gpu=0, image="ds:7", profile="p1", camera_count=4, config_hash="h1"
            ),
            InstanceRow("lobby", node="gpu-1", gpu=0, image="ds:7", camera_count=2, config_hash="h2"),
            InstanceRow(
                "yard", node="gpu-2", gpu=1, image="ds:7", camera_count=1, config_hash="h3", paused=True
            ),
        ),
        last_revision=RevisionRecord(
            7, STORED, "watch", "abc123", "A <a@b>", "Add gate\n\nbody", "mh", False, (_finding(),), 0
        ),
        observed=(
            ObservedDetail(
                "gpu-1",
                "gate",
                "running",
                3,
                "h1",
                1,
                fps={"0": 25.0},
                drift=(drift,),
                container_id="c1",
                updated_at=NOW - timedelta(seconds=1),
            ),
            ObservedDetail(
                "gpu-1",
                "lobby",
                "exited",
                3,
                "h2",
                0,
                exit_code=2,
                last_error=f"rtsp://x:{SECRET}@cam failed",
                last_log_line=f"opening rtsp://admin:{SECRET}@10.1.2.3/stream",
                updated_at=NOW,
            ),
            ObservedDetail("gpu-1", "old", "running", 2, "h0", updated_at=NOW),
        ),
        pending_plan={"valid": True, "summary": {"nodes_to_change": 1}, "text": "Plan: 1 to change."},
        events=(
            EventRecord(2, NOW, "state", f"running → exited rtsp://a:{SECRET}@b", "gpu-1", "lobby"),
            EventRecord(1, STORED, "online", "heartbeat", "gpu-1"),
        ),
    )


def _finding() -> dict[str, object]:
    return {
        "severity": "error",
        "rule": "schema",
        "message": "metadata.name: bad",
        "file": "nodes/bad.yaml",
        "line": 4,
        "column": 9,
        "notes": [{"message": "declared here", "file": "nodes/bad.yaml", "line": 1, "column": 1}],
    }
