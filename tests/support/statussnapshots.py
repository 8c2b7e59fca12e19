"""A hand-made :class:`~dsfleet.reconciler.store.StatusSnapshot` of a small fleet, for the pure status document
and the API's models: a running coordinator (with a foreign config seen), one online node running four instances
(healthy with fresh FPS, exited with a credential in its error, degraded by an image not found, one no longer
desired), one declared node whose agent never reported and whose config waits in the outbox, an agent not in the
manifests (bound to another fleet, retiring), a rejected revision, a pending plan and two events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dsfleet.reconciler.store import (
    CoordinatorBeat,
    EventRecord,
    InstanceRow,
    NodeRow,
    NodeStatusRow,
    ObservedDetail,
    OutboxWait,
    RevisionRecord,
    StatusSnapshot,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "hunter2"
STORED = NOW - timedelta(minutes=10)
FLEET = "5f0c2b1e-0000-4000-8000-000000000001"
BEAT = CoordinatorBeat(
    host="coord.lan",
    pid=4242,
    version="0.1.0",
    manifests="/srv/fleet",
    started_at=NOW - timedelta(hours=1),
    seen_at=NOW - timedelta(seconds=1),
    interval_seconds=2.0,
    sync="auto",
    broker="127.0.0.1:9092",
    broker_reachable=True,
    broker_since=NOW - timedelta(hours=1),
    foreign_configs=1,
    last_foreign="AgentConfig of node gpu-1 generation 1 written by another fleet (f2)",
)


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
            node_status("gpu-1", error=f"pull rtsp://u:{SECRET}@cam/1 failed", fleet=FLEET),
            node_status(
                "stray",
                online=False,
                last_seen=None,
                gpus=(),
                observed_generation=None,
                fleet="f2",
                rejections=(
                    {"reason": "other-fleet", "generation": 1, "detail": f"from {FLEET}", "at": "t"},
                ),
            ),
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
            InstanceRow("dock", node="gpu-1", gpu=0, image="ds:7.1", camera_count=1, config_hash="h4"),
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
                fps_at=NOW - timedelta(seconds=3),
                cameras=(
                    {
                        "name": "gate-b",
                        "state": "failed",
                        "reason": f"Could not open rtsp://u:{SECRET}@cam/2",
                    },
                    {
                        "name": "gate-a",
                        "state": "streaming",
                        "sourceId": 0,
                        "fps": 25.0,
                        "frameNumber": 1200,
                        "latencyMs": 41.5,
                        "since": "2026-12-07T10:00:00Z",
                    },
                ),
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
            ObservedDetail(
                "gpu-1",
                "dock",
                "running",
                2,
                "h4",
                fps={"0": 30.0},
                fps_at=NOW - timedelta(minutes=5),
                updated_at=NOW,
                conditions=(
                    {
                        "reason": "ImageNotFound",
                        "message": "image ds:7.1 not found",
                        "cameras": [],
                        "since": "2026-03-01T11:58:00+00:00",
                        "attempts": 2,
                        "nextRetryAt": "2026-03-01T12:00:40+00:00",
                    },
                ),
            ),
        ),
        pending_plan={"valid": True, "summary": {"nodes_to_change": 1}, "text": "Plan: 1 to change."},
        events=(
            EventRecord(2, NOW, "state", f"running → exited rtsp://a:{SECRET}@b", "gpu-1", "lobby"),
            EventRecord(1, STORED, "online", "heartbeat", "gpu-1"),
        ),
        coordinator=BEAT,
        fleet_id=FLEET,
        outbox={"gpu-2": OutboxWait(1, NOW - timedelta(seconds=30))},
        published={"gpu-1": STORED + timedelta(seconds=1)},
        drift_events=3,
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
