"""``Store.status_snapshot`` against real databases (a SQLite file and a throw-away PostgreSQL server): it holds
what the single reads return, in one read transaction that sees one state of the store while a writer commits in
the middle of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from dsfleet.reconciler.store import InstanceRow, Inventory, NewRevision, NodeChange, NodeRow, Store
from dsfleet.schemas.hashing import canonical_hash, canonical_json
from dsfleet.schemas.wire import AgentInfo, AgentResponse

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PLAN = {"valid": True, "summary": {"nodes_to_change": 1}, "text": "Plan: 1 to change."}


@pytest.fixture
def url(store_url: str) -> str:
    _seed(store_url)
    return store_url


def _encode(
    node: str, generation: int, body: dict[str, Any] | None
) -> tuple[str, str, bytes | None, dict[str, str]]:
    value = None if body is None else canonical_json({"generation": generation, "config": body}).encode()
    return "AgentConfig", node, value, {"generation": str(generation)}


def _seed(url: str) -> None:
    body = {"node": "n1", "instances": [{"name": "gate", "configHash": "h1"}]}
    with Store.open(url) as store:
        store.apply_revision(
            NewRevision(source="cli", created_at=T0, manifests_hash="m1", git_message="Add gate"),
            [NodeChange("n1", canonical_hash(body), body)],
            Inventory(
                nodes=[NodeRow("n1", hostname="n1.lan", labels={"site": "a"}), NodeRow("n2")],
                instances=[InstanceRow("gate", node="n1", image="ds:7", config_hash="h1", camera_count=2)],
            ),
            _encode,
        )
        info = AgentInfo(sent_at=T0.isoformat(), node="n1", hostname="n1.lan", observedGeneration=1)
        store.record_agent_infos({"n1": info}, {"n1": True}, T0)
        report = AgentResponse.model_validate(
            {
                "sent_at": T0.isoformat(),
                "node": "n1",
                "observedGeneration": 1,
                "instances": [
                    {
                        "name": "gate",
                        "state": "running",
                        "generation": 1,
                        "configHash": "h1",
                        "fps": {"0": 25.0},
                        "containerId": "c1",
                        "drift": [
                            {"kind": "stopped", "detail": "by hand", "at": T0.isoformat(), "healed": True}
                        ],
                    }
                ],
            }
        )
        store.record_agent_responses({"n1": report}, T0 + timedelta(seconds=1))
        store.set_sync_state("pending_plan", PLAN, T0)


def test_the_snapshot_holds_what_the_single_reads_return(url: str) -> None:
    with Store.open(url, readonly=True) as store:
        snapshot = store.status_snapshot(events=2)
        assert snapshot.node_statuses == tuple(store.node_statuses())
        assert snapshot.node_heads == store.latest_node_heads() and set(snapshot.node_heads) == {"n1"}
        inventory = store.inventory()
        assert (snapshot.nodes, snapshot.instances) == (inventory.nodes, inventory.instances)
        assert snapshot.last_revision == store.revisions(limit=1)[0]
        assert snapshot.pending_plan == PLAN
        assert snapshot.events == tuple(store.events(limit=2)) and len(snapshot.events) == 2
        (row,) = store.observed_details()
        (gate,) = snapshot.observed
        assert (gate.node, gate.instance, gate.state, gate.generation, gate.config_hash) == (
            "n1",
            "gate",
            "running",
            1,
            "h1",
        )
        assert (gate.fps, gate.container_id, gate.updated_at) == ({"0": 25.0}, "c1", row["updated_at"])
        assert gate.drift == tuple(row["drift"]) and gate.drift[0]["kind"] == "stopped"
        assert store.status_snapshot(events=0).events == ()


def test_the_snapshot_is_one_transaction_that_a_writer_does_not_change(url: str) -> None:
    with Store.open(url, readonly=True) as reader, Store.open(url) as writer:
        begins: list[object] = []
        statements: list[str] = []

        def on_begin(conn: object) -> None:
            begins.append(conn)

        def after_first_read(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            if not statement.lstrip().upper().startswith("SELECT"):
                return  # SQLite's own BEGIN
            statements.append(statement)
            if len(statements) == 1:  # the snapshot is taken: commit changes to what it reads later
                writer.record_event(T0 + timedelta(minutes=1), "online", "heartbeat", node="n2")
                writer.set_sync_state("pending_plan", None, T0 + timedelta(minutes=1))
                info = AgentInfo(sent_at=T0.isoformat(), node="n2", hostname="n2.lan")
                writer.record_agent_infos({"n2": info}, {"n2": True}, T0 + timedelta(minutes=1))

        engine = reader._engine  # the reader's connections, to count transactions and interleave the writer
        sa.event.listen(engine, "begin", on_begin)
        sa.event.listen(engine, "after_cursor_execute", after_first_read)
        try:
            snapshot = reader.status_snapshot()
        finally:
            sa.event.remove(engine, "after_cursor_execute", after_first_read)
            sa.event.remove(engine, "begin", on_begin)
        assert len(begins) == 1 and len(statements) >= 7
        assert snapshot.pending_plan == PLAN
        assert [s.node for s in snapshot.node_statuses] == ["n1"]
        assert all(e.node != "n2" for e in snapshot.events)

        after = reader.status_snapshot()  # the next snapshot sees the writer's commits
        assert after.pending_plan is None
        assert [s.node for s in after.node_statuses] == ["n1", "n2"]
        assert after.events[0].node == "n2"
