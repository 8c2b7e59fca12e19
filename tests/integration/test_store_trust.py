"""What the store keeps for a truthful status and one writer, against real databases (a SQLite file and a
throw-away PostgreSQL server): the fleet id, the coordinator's heartbeat, a config re-issued above a reported
generation, the configs it handed out, retiring and forgetting nodes, and the parts of the status snapshot that say
what waits in the outbox, what was published lately, which nodes were removed and how many drifts were reported."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dsfleet.reconciler.store import (
    CoordinatorBeat,
    Inventory,
    NewRevision,
    NodeChange,
    NodeRow,
    PermanentStoreError,
    Store,
)
from dsfleet.schemas.hashing import canonical_hash
from dsfleet.schemas.wire import AgentInfo, AgentResponse

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


def _encode(
    node: str, generation: int, body: dict[str, Any] | None
) -> tuple[str, str, bytes | None, dict[str, str]]:
    value = None if body is None else f"{node}:{generation}".encode()
    return "AgentConfig", node, value, {"generation": str(generation)}


def _body(node: str, version: int) -> dict[str, Any]:
    return {"node": node, "instances": [{"name": f"{node}-i", "configHash": f"h{version}"}]}


def _apply(store: Store, at: datetime, changes: list[NodeChange], nodes: list[str]) -> None:
    store.apply_revision(
        NewRevision(source="cli", created_at=at, manifests_hash=canonical_hash([at.isoformat()])),
        changes,
        Inventory(nodes=[NodeRow(n) for n in nodes]),
        _encode,
    )


def _change(node: str, version: int) -> NodeChange:
    body = _body(node, version)
    return NodeChange(node, canonical_hash(body), body)


def test_the_fleet_id_is_made_with_the_store_and_kept(store: Store, tmp_path: Path) -> None:
    fleet = store.fleet_id()
    assert fleet is not None and str(uuid.UUID(fleet)) == fleet
    assert store.fleet_id() == fleet
    assert store.status_snapshot().fleet_id == fleet


def test_the_heartbeat_is_one_row_rewritten(store: Store) -> None:
    assert store.coordinator_heartbeat() is None
    beat = CoordinatorBeat(
        host="h",
        pid=7,
        version="1",
        manifests="/srv/fleet",
        started_at=T0,
        seen_at=T0,
        interval_seconds=2.0,
        broker="127.0.0.1:9092",
        broker_reachable=True,
        broker_since=T0,
    )
    store.write_heartbeat(beat)
    later = CoordinatorBeat(
        **{**beat.__dict__, "seen_at": T0 + s(2), "broker_reachable": False, "broker_since": T0 + s(1)}
    )
    store.write_heartbeat(later)
    assert store.coordinator_heartbeat() == later
    assert store.status_snapshot().coordinator == later


def test_a_config_is_reissued_above_a_reported_generation(store: Store) -> None:
    _apply(store, T0, [_change("n1", 1)], ["n1"])
    _apply(store, T0 + s(1), [_change("n1", 2)], ["n1"])
    before = store.latest_node_configs()["n1"]
    assert before.generation == 2
    assert store.reissue_config("n1", 2, _encode, T0 + s(2)) is None  # not above the counter: nothing
    assert store.reissue_config("ghost", 9, _encode, T0 + s(2)) is None
    again = store.reissue_config("n1", 99, _encode, T0 + s(2))
    assert again is not None
    assert (again.generation, again.config_hash, again.payload) == (100, before.config_hash, before.payload)
    assert store.latest_node_configs()["n1"].generation == 100
    assert store.node_generation("n1") == 100
    assert [(r.key, r.value) for r in store.pending_outbox()][-1] == ("n1", b"n1:100")
    _apply(store, T0 + s(3), [_change("n1", 3)], ["n1"])  # the counter goes on from there
    assert store.latest_node_configs()["n1"].generation == 101
    assert store.reissue_config("n1", 2**31 - 1, _encode, T0 + s(4)) is None  # out of range: never followed
    hashes = store.config_hashes([("n1", 1), ("n1", 100), ("n1", 7), ("n2", 1)])
    assert hashes == {("n1", 1): canonical_hash(_body("n1", 1)), ("n1", 100): before.config_hash}


def test_a_removed_node_is_retiring_then_retired(store: Store) -> None:
    _apply(store, T0, [_change("n1", 1), _change("n2", 1)], ["n1", "n2"])
    infos = {n: AgentInfo(sent_at=T0.isoformat(), node=n, hostname=n) for n in ("n1", "n2")}
    store.record_agent_infos(infos, {"n1": True, "n2": True}, T0)
    running = AgentResponse.model_validate(
        {"sent_at": T0.isoformat(), "node": "n2", "instances": [{"name": "n2-i", "state": "running"}]}
    )
    store.record_agent_responses({"n2": running}, T0)
    assert store.retiring_nodes() == []
    removed_at = T0 + s(10)
    _apply(store, removed_at, [NodeChange("n2", None, None)], ["n1"])
    [retiring] = store.retiring_nodes()
    assert (retiring.node, retiring.removed_at, retiring.instances) == ("n2", removed_at, 1)
    assert store.status_snapshot().removed == {"n2": removed_at}
    with pytest.raises(PermanentStoreError, match="declared by the manifests"):
        store.retire_node("n1", T0 + s(11), "by hand")
    empty = AgentResponse(sent_at=(T0 + s(12)).isoformat(), node="n2")
    store.record_agent_responses({"n2": empty}, T0 + s(12))
    [reported] = store.retiring_nodes()
    assert (reported.instances, reported.reported_at) == (0, T0 + s(12))
    assert store.retire_node("n2", T0 + s(13), "its agent reports no instances")
    assert store.retiring_nodes() == [] and not store.retire_node("n2", T0 + s(14), "again")
    assert {r.node for r in store.node_statuses()} == {"n1"}
    assert [(e.kind, e.node) for e in store.events(limit=1)] == [("retired", "n2")]


def test_the_snapshot_says_what_waits_what_was_published_and_how_many_drifts(store: Store) -> None:
    _apply(store, T0, [_change("n1", 1), _change("n2", 1)], ["n1", "n2"])
    ids = {r.key: r.id for r in store.pending_outbox()}
    store.mark_published([ids["n1"]], T0 + s(5))
    _apply(store, T0 + s(6), [_change("n2", 2)], ["n1", "n2"])
    snap = store.status_snapshot(since=T0)
    assert set(snap.outbox) == {"n2"}
    assert (snap.outbox["n2"].rows, snap.outbox["n2"].since) == (2, T0)
    assert snap.published == {"n1": T0 + s(5)}
    assert store.status_snapshot(since=T0 + s(6)).published == {}
    assert store.status_snapshot().published == {}  # no ``since``: none asked for
    drift = [{"kind": "stopped", "detail": "x", "at": "t1"}]
    report = AgentResponse.model_validate(
        {
            "sent_at": T0.isoformat(),
            "node": "n1",
            "fleet": "f1",
            "rejections": [{"reason": "stale-generation", "generation": 1, "at": "t"}],
            "instances": [
                {
                    "name": "n1-i",
                    "state": "running",
                    "drift": drift,
                    "fps": {"0": 30.0},
                    "fpsAt": (T0 - s(1)).isoformat(),
                    "conditions": [{"reason": "SecretMissing", "cameras": ["c1"], "attempts": 1}],
                }
            ],
        }
    )
    store.record_agent_responses({"n1": report}, T0)
    healed = report.model_copy(
        update={
            "instances": (
                report.instances[0].model_copy(
                    update={"drift": (report.instances[0].drift[0].model_copy(update={"healed": True}),)}
                ),
            )
        }
    )
    store.record_agent_responses({"n1": healed}, T0 + s(1))  # the same drift, healed: not a second one
    snap = store.status_snapshot()
    assert snap.drift_events == 1
    [row] = [r for r in snap.observed if r.instance == "n1-i"]
    assert row.fps_at == T0 - s(1)
    assert row.conditions == ({"reason": "SecretMissing", "message": "", "cameras": ["c1"], "since": None,
                               "attempts": 1, "nextRetryAt": None},)  # fmt: skip
    [status] = [n for n in snap.node_statuses if n.node == "n1"]
    assert status.fleet == "f1"
    assert [r["reason"] for r in status.rejections] == ["stale-generation"]


def test_nodes_forget_forgets_a_removed_node_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    with Store.open(url) as opened:
        _apply(opened, T0, [_change("n1", 1), _change("n2", 1)], ["n1", "n2"])
        info = AgentInfo(sent_at=T0.isoformat(), node="n2", hostname="n2")
        opened.record_agent_infos({"n2": info}, {"n2": True}, T0)
        _apply(opened, T0 + s(1), [NodeChange("n2", None, None)], ["n1"])

    def forget(node: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dsfleet.reconciler.cli", "nodes", "forget", node, "--db", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = forget("n2")
    assert done.returncode == 0 and "node n2 forgotten" in done.stdout, done.stderr
    again = forget("n2")
    assert again.returncode == 2 and "knows nothing of node n2" in again.stderr
    with Store.open(url, readonly=True) as opened:
        assert opened.node_statuses() == [] and opened.retiring_nodes() == []
