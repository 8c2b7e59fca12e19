"""What the store keeps bounded, on a SQLite file and on PostgreSQL: events by age and count (one bounded DELETE
at a time; a running coordinator catches up with a flood), and the webhook deliveries it remembers (a duplicate is
known, concurrent identical deliveries are taken once, old ones are forgotten)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsfleet.reconciler.store import Store
from tests.support.livefleet import ROOT, copy_fleet, stop_process, wait_for

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/state.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store.open(url) as s:
        yield s


def _events(store: Store, at: datetime, count: int, kind: str = "drift") -> None:
    store.record_events(at, kind, [(f"node-{i % 7}", f"event {i}") for i in range(count)])


def test_events_are_pruned_by_count_keeping_the_newest(store: Store) -> None:
    _events(store, T0 - timedelta(days=10), 50, "old")
    _events(store, T0, 200, "new")
    assert store.prune_events(T0 - timedelta(days=7), keep=100) == 150
    kept = store.events(limit=1000)
    assert len(kept) == 100 and {e.kind for e in kept} == {"new"}
    assert [e.message for e in kept][:2] == ["event 199", "event 198"]
    assert store.prune_events(T0 - timedelta(days=7), keep=100) == 0


def test_events_are_pruned_by_age(store: Store) -> None:
    _events(store, T0 - timedelta(days=8), 30, "old")
    _events(store, T0 - timedelta(days=6), 20, "recent")
    assert store.prune_events(T0 - timedelta(days=7), keep=1000) == 30
    assert {e.kind for e in store.events(limit=1000)} == {"recent"}
    assert store.event_count() == 20


def test_one_prune_deletes_at_most_a_batch(store: Store) -> None:
    _events(store, T0, 250)
    deleted = [store.prune_events(T0 - timedelta(days=7), keep=10, batch=100) for _ in range(4)]
    assert deleted == [100, 100, 40, 0]
    assert [e.message for e in store.events(limit=1000)][-1] == "event 240"


def test_deliveries_are_taken_once_and_forgotten_after_a_while(store: Store) -> None:
    keep = timedelta(days=7)
    assert store.record_delivery(["delivery:a", "sha256:1"], "github", T0, keep=keep) is True
    assert store.record_delivery(["delivery:a", "sha256:1"], "github", T0, keep=keep) is False
    assert store.record_delivery(["delivery:b", "sha256:1"], "github", T0, keep=keep) is False  # same body
    assert store.record_delivery(["delivery:a", "sha256:2"], "github", T0, keep=keep) is False  # same id
    assert store.record_delivery(["sha256:3"], "gitlab", T0, keep=keep) is True
    store.forget_delivery(["sha256:3"])
    assert store.record_delivery(["sha256:3"], "gitlab", T0, keep=keep) is True  # a retry after a failure
    later = T0 + keep + timedelta(seconds=1)
    assert store.record_delivery(["delivery:a", "sha256:1"], "github", later, keep=keep) is True
    assert store.delivery_count() == 2  # the others were older than a week


def test_concurrent_identical_deliveries_are_taken_once(url: str) -> None:
    Store.open(url).close()  # migrated once, before the racers open it
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        with Store.open(url) as own:
            barrier.wait()
            results.append(
                own.record_delivery(["delivery:x", "sha256:x"], "github", T0, keep=timedelta(days=1))
            )

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False, False, False, True]


def test_a_running_coordinator_catches_up_with_a_flood_of_events(url: str, tmp_path: Path) -> None:
    """45,000 events over a limit of 500: the coordinator deletes them a batch (20,000) a second from its start,
    not all in one statement and not a minute apart."""
    now = datetime.now(UTC)
    with Store.open(url) as store:
        for _ in range(9):
            _events(store, now, 5000)
    log = tmp_path / "coordinator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dsfleet.reconciler.cli",
                "coordinator",
                "--manifests",
                str(copy_fleet(tmp_path / "manifests")),
                "--db",
                url,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={
                "PATH": "/usr/bin:/bin",
                "DSFLEET_COORDINATOR_EVENTS_MAX_ROWS": "500",
                "HOME": str(tmp_path),
            },
        )
    try:
        with Store.open(url, readonly=True) as reader:
            wait_for(lambda: reader.event_count() <= 500, 60, "the events pruned to 500")
    finally:
        assert stop_process(proc, 15, "coordinator") == 0
    text = log.read_text()
    pruned = [line for line in text.splitlines() if "events pruned" in line]
    assert pruned[0].endswith("deleted=20000 more_due=True"), text[-2000:]
    assert len(pruned) >= 3 and "Traceback" not in text
