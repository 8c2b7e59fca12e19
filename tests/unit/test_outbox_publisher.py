"""The outbox publisher with in-memory fakes: order, delivery-before-mark, coalescing, retry after failure, rows
held back by a camera handover."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dsfleet.plumbing.kafka import Delivery
from dsfleet.reconciler.coordinator.publishing import OutboxPublisher
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.wire import Topic

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    id: int
    topic: str
    key: str
    value: bytes | None
    headers: dict[str, str]
    held: bool = False


class FakeStore:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = {r.id: r for r in rows}
        self.published: dict[int, datetime] = {}
        self.attempts: dict[int, int] = {}

    def pending_outbox(self, limit: int = 100) -> list[Row]:
        return [r for i, r in sorted(self.rows.items()) if i not in self.published][:limit]

    def mark_published(self, ids: Sequence[int], now: datetime) -> int:
        fresh = [i for i in ids if i not in self.published]
        for i in fresh:
            self.published[i] = now
        return len(fresh)

    def record_publish_attempt(self, ids: Sequence[int]) -> None:
        for i in ids:
            self.attempts[i] = self.attempts.get(i, 0) + 1

    def release(self, row_id: int) -> None:
        row = self.rows[row_id]
        self.rows[row_id] = Row(row.id, row.topic, row.key, row.value, row.headers, held=False)


class FakeBus:
    def __init__(self) -> None:
        self.sent: list[tuple[Topic, str | None, bytes | None]] = []
        self.queued: list[tuple[Callable[[Delivery], None], str | None]] = []
        self.fail_next: str | None = None
        self.down = False

    def send(
        self,
        topic: Topic,
        key: str | None,
        value: bytes | None,
        *,
        headers: dict[str, str] | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        if self.down:
            raise TemporaryError("broker down")
        self.sent.append((topic, key, value))
        assert on_delivery is not None
        self.queued.append((on_delivery, self.fail_next))
        self.fail_next = None

    def poll(self, timeout: float = 0.0) -> int:
        queued, self.queued = self.queued, []
        for cb, error in queued:
            cb(Delivery("AgentConfig", 0, None if error else 1, error))
        return len(queued)


def rows(*spec: tuple[int, str, bytes | None]) -> list[Row]:
    return [Row(i, "AgentConfig", k, v, {}) for i, k, v in spec]


def held(row_id: int, key: str, value: bytes | None) -> Row:
    return Row(row_id, "AgentConfig", key, value, {}, held=True)


def test_rows_marked_published_only_after_delivery_report() -> None:
    store, bus = FakeStore(rows((1, "a", b"a1"), (2, "b", b"b1"))), FakeBus()
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    assert pub.pump() == 2
    assert store.published == {}  # sent, not yet acknowledged
    pub.pump()
    assert set(store.published) == {1, 2}
    assert [k for _, k, _ in bus.sent] == ["a", "b"]
    assert pub.pump() == 0


def test_older_rows_of_a_key_are_superseded_not_sent_after_newer() -> None:
    store, bus = FakeStore(rows((1, "a", b"a1"), (2, "b", b"b1"), (3, "a", b"a2"), (4, "a", None))), FakeBus()
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    pub.pump()
    assert [(k, v) for _, k, v in bus.sent] == [("a", None), ("b", b"b1")]
    pub.pump()
    assert set(store.published) == {1, 2, 3, 4}
    assert pub.stats.superseded == 2


def test_failed_delivery_is_counted_and_retried() -> None:
    store, bus = FakeStore(rows((1, "a", b"a1"))), FakeBus()
    clock = [NOW]
    pub = OutboxPublisher(store, bus, clock=lambda: clock[0])
    bus.fail_next = "timed out"
    pub.pump()
    pub.pump()
    assert store.attempts == {1: 1} and store.published == {}
    from datetime import timedelta

    clock[0] = NOW + timedelta(seconds=2)
    pub.pump()
    pub.pump()
    assert set(store.published) == {1}


def test_broker_down_leaves_rows_pending() -> None:
    store, bus = FakeStore(rows((1, "a", b"a1"))), FakeBus()
    bus.down = True
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    assert pub.pump() == 0
    assert store.pending_outbox() and pub.in_flight == 0


def test_a_row_for_an_unknown_topic_stays_pending_and_is_logged_once(caplog: Any) -> None:
    store = FakeStore([Row(1, "NoSuchTopic", "n1", b"{}", {}), *rows((2, "n2", b"{}"))])
    bus = FakeBus()
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            pub.pump()
    assert [k for _t, k, _v in bus.sent] == ["n2"]
    assert 1 not in store.published and 2 in store.published
    assert [r.getMessage() for r in caplog.records if "unknown topic" in r.getMessage()] == [
        "outbox=1 names an unknown topic=NoSuchTopic; left pending"
    ]


# --- rows held back by a camera handover --------------------------------------------------------------------


def _pump_twice(pub: OutboxPublisher) -> None:
    pub.pump()
    pub.pump()  # the delivery reports settle


def test_a_held_row_is_not_sent_and_its_key_stays_pending() -> None:
    store, bus = FakeStore([held(1, "n1", b"n1-moved"), *rows((2, "n2", b"n2-takes"))]), FakeBus()
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    _pump_twice(pub)
    assert [(k, v) for _, k, v in bus.sent] == [("n2", b"n2-takes")]
    assert set(store.published) == {2}
    assert pub.pending_keys == {"n1"} and pub.held_keys == {"n1"}  # anti-entropy leaves n1 alone
    assert pub.stats.held == 1
    store.release(1)
    _pump_twice(pub)
    assert [(k, v) for _, k, v in bus.sent][-1] == ("n1", b"n1-moved")
    assert set(store.published) == {1, 2} and pub.pending_keys == set() and pub.held_keys == set()


def test_an_older_config_owed_from_before_the_handover_goes_out_the_held_one_waits() -> None:
    store, bus = (
        FakeStore([*rows((1, "n1", b"n1-v1"), (2, "n1", b"n1-v2")), held(3, "n1", b"n1-moved")]),
        FakeBus(),
    )
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    _pump_twice(pub)
    assert [(k, v) for _, k, v in bus.sent] == [("n1", b"n1-v2")]
    assert set(store.published) == {1, 2}
    assert pub.pending_keys == {"n1"}


def test_a_newer_row_not_held_settles_the_held_ones() -> None:
    """The camera was moved back (or the source changed again without a move): the newest config goes out, the
    held one never does."""
    store, bus = FakeStore([held(1, "n1", b"n1-moved"), *rows((2, "n1", b"n1-back"))]), FakeBus()
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    _pump_twice(pub)
    assert [(k, v) for _, k, v in bus.sent] == [("n1", b"n1-back")]
    assert set(store.published) == {1, 2} and pub.stats.superseded == 1


def test_a_held_row_behind_a_newer_held_row_is_settled_never_sent() -> None:
    store, bus = FakeStore([held(1, "n1", b"n1-moved"), held(2, "n1", b"n1-moved-again")]), FakeBus()
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    _pump_twice(pub)
    assert bus.sent == [] and set(store.published) == {1} and pub.held_keys == {"n1"}
    store.release(2)
    _pump_twice(pub)
    assert [(k, v) for _, k, v in bus.sent] == [("n1", b"n1-moved-again")]


def test_drain_does_not_wait_for_held_rows() -> None:
    store, bus = FakeStore([held(1, "n1", b"n1-moved"), *rows((2, "n2", b"n2-takes"))]), FakeBus()
    pub = OutboxPublisher(store, bus, clock=lambda: NOW)
    assert pub.drain(5.0, lambda _s: bus.poll()) is True
    assert set(store.published) == {2}
