"""Held outbox rows against real databases (a SQLite file and a throw-away PostgreSQL server): a revision stores
the source node's config held with what it waits for, the target's config not; the hold's state and reason are
updated in place; a release lets the row go and keeps its hold; a newer config of the node settles the held one;
the status snapshot counts held configs apart from what waits to be published. Then the coordinator's side on the
example fleet: its applies hold the source of a moved camera (``dsfleet apply``'s do not), and its decisions from
the target's stored reports wait, block, release when the target runs the camera or at the deadline — one event
per transition, none repeated by a restarted coordinator."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dsfleet.reconciler.applying import ApplyResult, Outcome, apply_manifests
from dsfleet.reconciler.coordinator.handovers import Handovers
from dsfleet.reconciler.planning.handovers import HandoverState, Hold, Move
from dsfleet.reconciler.store import Inventory, NewRevision, NodeChange, NodeRow, Store
from dsfleet.schemas.hashing import canonical_hash
from dsfleet.schemas.wire import AgentResponse, InstanceCondition, InstanceState, InstanceStatus
from tests.support.livefleet import ROOT

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOLD = {
    "moves": [
        {
            "camera": "lobby-2",
            "sourceNode": "n1",
            "sourceInstance": "lobby",
            "targetNode": "n2",
            "targetInstance": "parking",
            "targetConfigHash": "h",
            "secretRef": "lobby-2",
        }
    ],
    "since": T0.isoformat(),
    "deadline": (T0 + timedelta(minutes=5)).isoformat(),
    "state": "waiting",
    "reason": "",
}


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


def _encode(
    node: str, generation: int, body: dict[str, Any] | None
) -> tuple[str, str, bytes | None, dict[str, str]]:
    value = None if body is None else f"{node}:{generation}".encode()
    return "AgentConfig", node, value, {"generation": str(generation)}


def _change(node: str, version: int) -> NodeChange:
    body = {"node": node, "instances": [{"name": f"{node}-i", "configHash": f"h{version}"}]}
    return NodeChange(node, canonical_hash(body), body)


def _apply(
    store: Store, at: datetime, changes: list[NodeChange], holds: dict[str, dict[str, Any]] | None = None
) -> list[int]:
    applied = store.apply_revision(
        NewRevision(source="watch", created_at=at, manifests_hash=canonical_hash([at.isoformat()])),
        changes,
        Inventory(nodes=[NodeRow("n1"), NodeRow("n2")]),
        _encode,
        holds=holds,
    )
    return list(applied.outbox_ids)


def test_the_source_config_is_stored_held_and_the_target_not(store: Store) -> None:
    source, target = _apply(store, T0, [_change("n1", 2), _change("n2", 2)], {"n1": HOLD})
    pending = {r.id: r for r in store.pending_outbox()}
    assert (pending[source].held, pending[source].hold) == (True, HOLD)
    assert (pending[target].held, pending[target].hold) == (False, None)
    assert [r.id for r in store.held_outbox()] == [source]
    snap = store.status_snapshot()
    assert set(snap.outbox) == {"n2"}  # what waits to be published: not the held config
    assert [(h.outbox_id, h.node, h.created_at, dict(h.hold)) for h in snap.held] == [
        (source, "n1", T0, HOLD)
    ]


def test_a_hold_is_updated_released_and_kept(store: Store) -> None:
    source, target = _apply(store, T0, [_change("n1", 2), _change("n2", 2)], {"n1": HOLD})
    assert store.update_hold(source, "blocked", "secret lobby-2 missing on n2") is True
    assert store.update_hold(target, "blocked", "x") is False  # not a held row
    (row,) = store.held_outbox()
    assert row.hold is not None and (row.hold["state"], row.hold["reason"]) == (
        "blocked",
        "secret lobby-2 missing on n2",
    )
    assert row.hold["moves"] == HOLD["moves"]
    assert store.release_outbox([source]) == 1
    assert store.release_outbox([source]) == 0  # once
    assert store.held_outbox() == []
    released = next(r for r in store.pending_outbox() if r.id == source)
    assert released.held is False and released.hold is not None and released.hold["state"] == "blocked"
    assert store.status_snapshot().held == ()
    assert set(store.status_snapshot().outbox) == {"n1", "n2"}


def test_a_newer_config_of_the_node_settles_its_held_one(store: Store) -> None:
    (first,) = _apply(store, T0, [_change("n1", 2)], {"n1": HOLD})
    (second,) = _apply(store, T0 + timedelta(seconds=5), [_change("n1", 3)])  # moved back: not held
    pending = {r.id: r for r in store.pending_outbox()}
    assert first not in pending and pending[second].held is False
    assert store.held_outbox() == []
    (third,) = _apply(store, T0 + timedelta(seconds=9), [_change("n1", 4)], {"n1": HOLD})
    (fourth,) = _apply(store, T0 + timedelta(seconds=12), [_change("n1", 5)], {"n1": HOLD})
    assert [r.id for r in store.held_outbox()] == [fourth]  # the held one before it is settled, never sent
    assert third not in {r.id for r in store.pending_outbox()}
    assert second in {r.id for r in store.pending_outbox()}  # a config not held is still owed


# --- the coordinator's side: what an apply holds, and the decisions from the targets' reports -------------------

N1, N2 = "gpu-node-1", "gpu-node-2"


def _fleet(tmp_path: Path) -> Path:
    dest = tmp_path / "fleet"
    shutil.copytree(ROOT / "manifests", dest)
    return dest


def _move_gate_2(fleet: Path) -> None:
    """gate-2 leaves ccm-gate (gpu-node-1, cameras by zone) for traffic-parking (gpu-node-2)."""
    path = fleet / "cameras" / "gate.yaml"
    text = path.read_text()
    old = "name: gate-2\n  labels:\n    zone: gate"
    assert old in text
    path.write_text(text.replace(old, "name: gate-2\n  labels:\n    zone: parking"))


def _revision(at: datetime) -> NewRevision:
    return NewRevision(source="watch", created_at=at, manifests_hash="")


def _applied_move(store: Store, fleet: Path, timeout: timedelta | None) -> ApplyResult:
    first = apply_manifests([fleet], store, _revision(T0), handover_timeout=timeout)
    assert first.outcome is Outcome.APPLIED and first.holds == {}  # nothing ran anywhere before
    store.mark_published([r.id for r in store.pending_outbox()], T0)
    _move_gate_2(fleet)
    return apply_manifests([fleet], store, _revision(T0 + timedelta(seconds=10)), handover_timeout=timeout)


def test_the_coordinators_apply_holds_the_source_config_only(store: Store, tmp_path: Path) -> None:
    result = _applied_move(store, _fleet(tmp_path), timedelta(minutes=5))
    assert result.outcome is Outcome.APPLIED and list(result.holds) == [N1]
    pending = {r.key: r for r in store.pending_outbox()}
    assert set(pending) == {N1, N2}
    assert pending[N2].held is False  # the target's config goes out at once
    assert pending[N1].held is True and pending[N1].hold is not None
    hold = Hold.from_json(pending[N1].hold)
    assert hold is not None
    target = store.latest_node_configs()[N2].payload
    parking = next(i for i in target["instances"] if i["name"] == "traffic-parking")
    assert hold.moves == (
        Move("gate-2", N1, "ccm-gate", N2, "traffic-parking", parking["configHash"], "gate-2"),
    )
    assert (hold.since, hold.deadline) == (T0 + timedelta(seconds=10), T0 + timedelta(minutes=5, seconds=10))
    assert hold.state is HandoverState.WAITING and hold.reason == ""


def test_an_apply_without_a_timeout_holds_nothing(store: Store, tmp_path: Path) -> None:
    """``dsfleet apply`` (it publishes itself and does not stay to decide): both configs go out at once."""
    result = _applied_move(store, _fleet(tmp_path), None)
    assert result.outcome is Outcome.APPLIED and result.holds == {}
    assert {r.key: r.held for r in store.pending_outbox()} == {N1: False, N2: False}
    assert store.held_outbox() == []


def _report(store: Store, at: datetime, *, running: bool, secret_missing: bool = False) -> None:
    """gpu-node-2's agent reports its desired config received, traffic-parking running it (or still the old one)
    and, if asked, the camera's secret missing."""
    stored = store.latest_node_configs()[N2]
    parking = next(i for i in stored.payload["instances"] if i["name"] == "traffic-parking")
    conditions = (
        (InstanceCondition(reason="SecretMissing", message="secret gate-2: not found", cameras=("gate-2",)),)
        if secret_missing
        else ()
    )
    status = InstanceStatus(
        name="traffic-parking",
        state=InstanceState.RUNNING,
        configHash=parking["configHash"] if running else "old",
        conditions=conditions,
    )
    response = AgentResponse(
        sent_at=at.isoformat(),
        node=N2,
        observedGeneration=stored.generation,
        configHash=stored.config_hash,
        instances=(status,),
    )
    store.record_agent_responses({N2: response}, at)


def _handover_events(store: Store) -> list[str]:
    return [e.message.split(":", 1)[0] for e in reversed(store.events()) if e.kind == "handover"]


def _decide(handovers: Handovers, store: Store, at: datetime, online: bool = True) -> list[int]:
    words = "online" if online else "offline"
    return handovers.decide(at, store.latest_node_configs(), lambda _node: (online, words))


def test_the_coordinator_waits_blocks_and_releases_once_the_target_runs_the_camera(
    store: Store, tmp_path: Path
) -> None:
    _applied_move(store, _fleet(tmp_path), timedelta(minutes=5))
    (held,) = store.held_outbox()
    handovers = Handovers(store)
    handovers.read()
    assert handovers.targets == {N2}

    # nothing heard of the target yet: waiting, one "started" event
    t1 = T0 + timedelta(seconds=12)
    assert _decide(handovers, store, t1, online=False) == []
    (row,) = store.held_outbox()
    assert row.hold is not None
    assert (row.hold["state"], row.hold["reason"]) == ("waiting", f"waiting for {N2} (offline) to run it")
    assert _handover_events(store) == ["started"]
    assert _decide(handovers, store, t1 + timedelta(seconds=1), online=False) == []
    assert _handover_events(store) == ["started"]  # one event per transition, not per tick

    # the target says it lacks the secret: blocked, kept — also past the deadline
    _report(store, t1, running=False, secret_missing=True)
    late = T0 + timedelta(minutes=6)
    assert _decide(handovers, store, late) == []
    (row,) = store.held_outbox()
    assert row.hold is not None
    assert (row.hold["state"], row.hold["reason"]) == ("blocked", f"secret gate-2 missing on {N2}")
    assert _handover_events(store) == ["started", "blocked"]

    # a restarted coordinator reads the hold's state back and repeats no event
    again = Handovers(store)
    again.read()
    assert _decide(again, store, late) == []
    assert _handover_events(store) == ["started", "blocked"]

    # the target runs it: done, released (sent by the publisher next), the hold kept with how it ended
    _report(store, late, running=True)
    assert _decide(again, store, late) == [held.id]
    assert store.held_outbox() == [] and again.held == {}
    released = next(r for r in store.pending_outbox() if r.id == held.id)
    assert released.held is False and released.hold is not None and released.hold["state"] == "done"
    assert _handover_events(store) == ["started", "blocked", "done"]
    newest = store.events(limit=1)[0]
    assert (newest.node, newest.instance) == (N1, "ccm-gate")
    assert newest.message == (
        f"done: camera gate-2 from {N1}/ccm-gate to {N2}/traffic-parking: camera gate-2 running on "
        f"{N2}/traffic-parking"
    )


def test_the_coordinator_releases_at_the_deadline_when_the_target_stays_silent(
    store: Store, tmp_path: Path
) -> None:
    _applied_move(store, _fleet(tmp_path), timedelta(minutes=5))
    (held,) = store.held_outbox()
    handovers = Handovers(store)
    handovers.read()
    deadline = T0 + timedelta(minutes=5, seconds=10)
    assert _decide(handovers, store, deadline - timedelta(seconds=1), online=False) == []
    assert _decide(handovers, store, deadline, online=False) == [held.id]
    assert store.held_outbox() == []
    assert _handover_events(store) == ["started", "timed out"]
    assert store.events(limit=1)[0].message.endswith(
        f"{N2} (offline) did not report running it by the deadline"
    )
