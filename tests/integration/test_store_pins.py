"""A rollback's pin read inside the apply's own write transaction, against real databases (a SQLite file and a
throw-away PostgreSQL server): an apply planned before a rollback was stored, and stored after it, stores nothing
and leaves the rollback and its pin as they are — also when the two transactions overlap on PostgreSQL (the pin's
advisory lock orders them). The apply path (``apply_manifests`` on the example fleet) turns it into
``HELD_BY_PIN``; ``dsfleet apply`` refuses the manifests a pin holds (exit 2) and applies others."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dsfleet.reconciler.applying import Outcome, apply_manifests
from dsfleet.reconciler.planning.pins import Pin, SourceState, apply_held
from dsfleet.reconciler.store import AppliedRevision, Encoder, Inventory, NewRevision, NodeChange, Store
from dsfleet.reconciler.store.revisions import PinGuard
from dsfleet.reconciler.store.values import ROLLBACK_PIN, HeldByPin
from dsfleet.schemas.hashing import canonical_hash
from tests.support.keys import coordinator_env
from tests.support.livefleet import ROOT, copy_fleet

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GOOD = SourceState("c1" * 20, canonical_hash(["good"]))
BAD = SourceState("c2" * 20, canonical_hash(["bad"]))


@pytest.fixture
def url(store_url: str) -> str:
    return store_url


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store.open(url) as opened:
        yield opened


def _encode(
    node: str, generation: int, body: dict[str, Any] | None
) -> tuple[str, str, bytes | None, dict[str, str]]:
    value = None if body is None else f"{node}:{generation}".encode()
    return "AgentConfig", node, value, {"generation": str(generation)}


def _change(node: str, version: str) -> NodeChange:
    body = {"node": node, "instances": [{"name": f"{node}-i", "configHash": version}]}
    return NodeChange(node, canonical_hash(body), body)


def _rev(source: SourceState, at: datetime, kind: str = "watch") -> NewRevision:
    return NewRevision(
        source=kind, created_at=at, manifests_hash=source.manifests_hash, git_commit=source.commit
    )


def _guard(rev: NewRevision, seen: int | None) -> PinGuard:
    """What ``apply_manifests`` passes: the pure decision over the pin read inside the transaction."""
    source = SourceState(rev.git_commit, rev.manifests_hash)
    return lambda pin: apply_held(Pin.from_json(pin), source, seen)


def _good_then_bad(store: Store) -> None:
    store.apply_revision(_rev(GOOD, T0), [_change("n1", "good"), _change("n2", "good")], None, _encode)
    store.apply_revision(_rev(BAD, T0 + timedelta(minutes=1)), [_change("n1", "bad")], None, _encode)


def _rollback(
    store: Store, pin: Callable[[int], Mapping[str, Any]] | None = None
) -> tuple[int, dict[str, Any]]:
    """``dsfleet rollback`` of revision 2 (the bad commit) to revision 1; returns its revision and pin."""
    made: dict[str, Any] = {}

    def pin_of(revision_id: int) -> Mapping[str, Any]:
        made.update(
            Pin(1, revision_id, 2, BAD, T0 + timedelta(minutes=2), "ops@host").to_json()
            if pin is None
            else pin(revision_id)
        )
        return made

    applied = store.store_rollback(
        _rev(GOOD, T0 + timedelta(minutes=2), kind="rollback"),
        [_change("n1", "good")],
        _encode,
        pin_of,
        "rolled back to revision 1",
    )
    return applied.revision_id, made


def _state(store: Store) -> tuple[Any, ...]:
    """Everything an apply writes: revisions, each node's head and generation counter, the outbox."""
    return (
        [r.id for r in store.revisions()],
        {n: (c.generation, c.config_hash) for n, c in store.latest_node_configs().items()},
        (store.node_generation("n1"), store.node_generation("n2")),
        [r.id for r in store.pending_outbox()],
    )


def test_an_apply_planned_before_a_rollback_stores_nothing_after_it(store: Store) -> None:
    _good_then_bad(store)
    seen = Pin.from_json(
        store.sync_state(ROLLBACK_PIN)
    )  # the coordinator: no pin, so it syncs the bad commit
    assert seen is None
    rollback, pin = _rollback(store)  # stored while the coordinator plans
    before = _state(store)
    bad = _rev(BAD, T0 + timedelta(minutes=3))
    held = store.apply_revision(bad, [_change("n1", "bad")], None, _encode, unless_pinned=_guard(bad, None))
    assert held == HeldByPin(pin)
    assert _state(store) == before
    assert store.latest_node_configs()["n1"].config_hash == _change("n1", "good").config_hash
    newest = store.last_accepted_revision()
    assert newest is not None and newest.id == rollback
    assert store.sync_state(ROLLBACK_PIN) == pin


def test_without_the_guard_the_same_apply_undoes_the_rollback(store: Store) -> None:
    """The race the guard closes: the same interleaving, stored unguarded, lands after the rollback."""
    _good_then_bad(store)
    _rollback(store)
    applied = store.apply_revision(
        _rev(BAD, T0 + timedelta(minutes=3)), [_change("n1", "bad")], None, _encode
    )
    assert isinstance(applied, AppliedRevision)
    assert store.latest_node_configs()["n1"].config_hash == _change("n1", "bad").config_hash


def test_the_pin_the_caller_read_holds_only_what_it_pins(store: Store) -> None:
    _good_then_bad(store)
    rollback, pin = _rollback(store)
    bad = _rev(BAD, T0 + timedelta(minutes=3), kind="cli")
    held = store.apply_revision(
        bad, [_change("n1", "bad")], None, _encode, unless_pinned=_guard(bad, rollback)
    )
    assert isinstance(held, HeldByPin)
    moved = SourceState("c3" * 20, canonical_hash(["next"]))
    nxt = _rev(moved, T0 + timedelta(minutes=4), kind="cli")
    applied = store.apply_revision(
        nxt, [_change("n1", "next")], None, _encode, unless_pinned=_guard(nxt, rollback)
    )
    assert isinstance(applied, AppliedRevision) and applied.generations == {"n1": 4}
    assert store.latest_node_configs()["n1"].config_hash == _change("n1", "next").config_hash
    assert store.sync_state(ROLLBACK_PIN) == pin  # lifted by the coordinator (or unpin), not by an apply


def test_an_unpinned_store_applies_under_the_guard(store: Store) -> None:
    _good_then_bad(store)
    _rollback(store)
    assert store.clear_pin(T0 + timedelta(minutes=3), "unpinned by hand") is True
    bad = _rev(BAD, T0 + timedelta(minutes=4))
    applied = store.apply_revision(
        bad, [_change("n1", "bad")], None, _encode, unless_pinned=_guard(bad, None)
    )
    assert isinstance(applied, AppliedRevision)


def test_overlapping_transactions_on_postgresql_are_ordered_by_the_pin_lock(pg_url: str) -> None:
    """PostgreSQL reads what committed before each statement: the apply waits for the rollback's transaction
    (the pin's advisory lock) and then reads its pin, instead of reading none and storing after it."""
    with Store.open(pg_url) as store:
        _good_then_bad(store)
    inside, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def pin_written_slowly(revision_id: int) -> Mapping[str, Any]:
        inside.set()  # the rollback's transaction is open, its lock held
        assert release.wait(30)
        return Pin(1, revision_id, 2, BAD, T0 + timedelta(minutes=2), "ops@host").to_json()

    def rollback() -> None:
        with Store.open(pg_url) as own:
            results["rollback"] = _rollback(own, pin_written_slowly)

    def apply() -> None:
        bad = _rev(BAD, T0 + timedelta(minutes=3))
        with Store.open(pg_url) as own:
            results["apply"] = own.apply_revision(
                bad, [_change("n1", "bad")], None, _encode, unless_pinned=_guard(bad, None)
            )

    threads = [threading.Thread(target=rollback)]
    threads[0].start()
    try:
        assert inside.wait(30)
        threads.append(threading.Thread(target=apply))
        threads[1].start()
        engine = sa.create_engine(pg_url)
        try:
            deadline = time.monotonic() + 30
            while True:  # the apply's backend waits on a lock the rollback holds
                with engine.connect() as conn:
                    waiting = conn.execute(
                        sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()")
                    ).scalar()
                if waiting or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert waiting, "the apply never waited for the rollback's transaction"
        finally:
            engine.dispose()
    finally:
        release.set()
        for thread in threads:
            thread.join(60)
    rollback_revision, pin = results["rollback"]
    assert results["apply"] == HeldByPin(pin)
    with Store.open(pg_url) as store:
        assert store.latest_node_configs()["n1"].config_hash == _change("n1", "good").config_hash
        newest = store.last_accepted_revision()
        assert newest is not None and newest.id == rollback_revision
        assert store.sync_state(ROLLBACK_PIN) == pin


class _RollbackMeanwhile:
    """The store, with ``dsfleet rollback`` stored (through another handle) just before the apply's transaction:
    after ``apply_manifests`` read the pin and planned."""

    def __init__(self, store: Store, url: str) -> None:
        self._store, self._url = store, url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        **options: Any,
    ) -> Any:
        pinned = SourceState(rev.git_commit, rev.manifests_hash)
        with Store.open(self._url) as other:
            other.store_rollback(
                _rev(GOOD, rev.created_at, kind="rollback"),
                [],
                _encode,
                lambda rid: Pin(1, rid, None, pinned, rev.created_at, "ops@host").to_json(),
                "rolled back",
            )
        return self._store.apply_revision(rev, changes, inventory, encode, **options)


def test_apply_manifests_reports_held_by_pin_and_stores_nothing(store: Store, url: str) -> None:
    result = apply_manifests(
        [ROOT / "manifests"],
        _RollbackMeanwhile(store, url),
        NewRevision(source="watch", created_at=T0, manifests_hash=""),
        skip_unchanged=True,
    )
    assert result.outcome is Outcome.HELD_BY_PIN
    assert result.pin is not None and result.pin.source.manifests_hash == result.desired.loaded.digest
    assert result.plan is not None and not result.plan.empty  # there was something to store
    assert [r.source for r in store.revisions()] == ["rollback"]
    assert store.latest_node_configs() == {}
    assert store.pending_outbox() == []


def test_dsfleet_apply_refuses_the_manifests_a_pin_holds(tmp_path: Path) -> None:
    work = copy_fleet(tmp_path / "manifests")  # a plain directory: the pin keeps the manifests hash
    db = f"sqlite:///{tmp_path / 'state.db'}"
    env = {**os.environ, **coordinator_env(tmp_path / "coordinator.key")}
    nodes = work / "nodes" / "nodes.yaml"
    good = "nvcr.io/nvidia/deepstream:7.0-triton-multiarch"
    assert good in nodes.read_text()

    def dsfleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dsfleet.reconciler.cli", *args, "--db", db],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def image(name: str) -> None:
        text = nodes.read_text()
        for old in (good, "nvcr.io/nvidia/deepstream:7.0-bad"):
            text = text.replace(old, name)
        nodes.write_text(text)

    assert dsfleet("apply", str(work)).returncode == 0
    image("nvcr.io/nvidia/deepstream:7.0-bad")
    assert dsfleet("apply", str(work)).returncode == 0
    rolled = dsfleet("rollback")
    assert rolled.returncode == 0, rolled.stderr
    held = dsfleet("apply", str(work))
    assert held.returncode == 2
    assert "held by the rollback pin of revision 1 " in held.stderr and "dsfleet unpin" in held.stderr
    with Store.open(db, readonly=True) as store:
        assert [r.source for r in store.revisions()] == ["rollback", "cli", "cli"]
        assert store.sync_state(ROLLBACK_PIN) is not None
    image("nvcr.io/nvidia/deepstream:7.1-triton-multiarch")  # other content: not what the pin holds
    moved = dsfleet("apply", str(work))
    assert moved.returncode == 0, moved.stderr
