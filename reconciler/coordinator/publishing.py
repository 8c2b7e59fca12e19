"""Publishing the outbox: the one way AgentConfig records leave the store (coordinator and ``apply``).

Rows are sent in id order, each to ``partition_for(node)``, through the idempotent ``acks=all`` producer; a row is
marked published only after its delivery report. A failed delivery is counted on the row and retried with backoff.
When several pending rows carry the same key (a node changed twice before the broker came back), only the newest is
sent and the older ones are marked published with it: the topic keeps the last value per key, and an older config
must never be written after a newer one. A crash between "stored" and "published" loses nothing: the rows are
still pending when the coordinator starts again.

A **held** row (the source node's config of a camera handover, :mod:`dsfleet.reconciler.planning.handovers`) is
not sent until the coordinator releases it: when a key's newest row is held, only an older row not held may go
out (a config stored before the handover, still owed to the node), the held rows before the newest are settled
(never to be sent: a newer config exists), and the key stays in :attr:`OutboxPublisher.pending_keys`, so
anti-entropy leaves the node alone. A newer row not held settles the older held ones with it (the camera was moved
back, or the source changed again without a move).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from dsfleet.plumbing.kafka import Delivery
from dsfleet.schemas.errors import TemporaryError
from dsfleet.schemas.wire import Topic, topic_of

log = logging.getLogger(__name__)


class OutboxRecord(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def held(self) -> bool: ...


class OutboxStore(Protocol):
    def pending_outbox(self, limit: int = 100) -> Sequence[OutboxRecord]: ...
    def mark_published(self, ids: Sequence[int], now: datetime) -> int: ...
    def record_publish_attempt(self, ids: Sequence[int]) -> None: ...


class Sender(Protocol):
    def send(
        self,
        topic: Topic,
        key: str | None,
        value: bytes | None,
        *,
        headers: dict[str, str] | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None: ...

    def poll(self, timeout: float = 0.0) -> int: ...


@dataclass
class PublishStats:
    published: int = 0
    superseded: int = 0
    failed: int = 0
    held: int = 0
    """Keys whose newest row is held back (a camera handover), after the last pump."""
    last_error: str | None = None
    published_nodes: list[tuple[str, int]] = field(default_factory=list)
    """(node, outbox id) of every row delivered, newest last (bounded)."""


class OutboxPublisher:
    def __init__(
        self,
        store: OutboxStore,
        bus: Sender,
        *,
        prefix: str = "",
        clock: Callable[[], datetime],
        batch: int = 200,
        retry_after: timedelta = timedelta(seconds=1),
        fence: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.fence = fence
        """Asked before anything is sent: False when this coordinator no longer leads (nothing is sent)."""
        self.prefix = prefix
        self.clock = clock
        self.batch = batch
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._in_flight: dict[int, tuple[int, ...]] = {}
        """Outbox id sent → the ids it settles (itself and the older rows of its key it superseded)."""
        self._done: list[tuple[int, ...]] = []
        self._failed: list[tuple[int, str]] = []
        self._retry_at: dict[int, datetime] = {}
        self._newest_sent: dict[tuple[str, str], int] = {}
        self._sent_at: dict[int, datetime] = {}
        self._unknown_topic: set[int] = set()
        self.stats = PublishStats()
        self.pending_keys: set[str] = set()
        """Keys (node names) with a row pending (held ones included) or in flight, after the last :meth:`pump`."""
        self.held_keys: set[str] = set()
        """Keys whose newest pending row is held back, after the last :meth:`pump`."""

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def oldest_in_flight(self, now: datetime) -> float:
        """Seconds the oldest record has waited for its delivery report (0 when none)."""
        with self._lock:
            sent = [self._sent_at[i] for i in self._in_flight if i in self._sent_at]
        return max(((now - t).total_seconds() for t in sent), default=0.0)

    def forget_in_flight(self) -> None:
        """The producer was replaced: what it held is pending again (its rows are still unpublished)."""
        with self._lock:
            self._in_flight.clear()
            self._done.clear()
            self._failed.clear()
        self._retry_at.clear()
        self._newest_sent.clear()

    def _on_delivery(self, row_id: int) -> Callable[[Delivery], None]:
        def done(report: Delivery) -> None:
            with self._lock:
                if row_id not in self._in_flight:
                    return  # sent by a producer that was since replaced: the row goes out again
                settles = self._in_flight.pop(row_id)
                self._sent_at.pop(row_id, None)
                if report.error is None:
                    self._done.append(settles)
                else:
                    self._failed.append((row_id, report.error))

        return done

    def _settle(self, now: datetime) -> None:
        with self._lock:
            done, self._done = self._done, []
            failed, self._failed = self._failed, []
        ids = [i for group in done for i in group]
        if ids:
            self.store.mark_published(ids, now)
            self.stats.published += len(done)
            self.stats.superseded += len(ids) - len(done)
        if failed:
            self.store.record_publish_attempt([i for i, _ in failed])
            self.stats.failed += len(failed)
            self.stats.last_error = failed[-1][1]
            for row_id, error in failed:
                self._retry_at[row_id] = now + self.retry_after
                log.warning("publish failed outbox=%d error=%s", row_id, error)

    def pump(self) -> int:
        """Settle delivery reports, then send what is pending; returns how many records were sent now."""
        self.bus.poll(0)
        now = self.clock()
        self._settle(now)
        rows = self.store.pending_outbox(self.batch + len(self._in_flight))
        with self._lock:
            busy = {i for group in self._in_flight.values() for i in group}
        candidates = [r for r in rows if r.id not in busy]
        self.pending_keys = {r.key for r in rows}
        if candidates and self.fence is not None and not self.fence():
            return 0  # deposed: another coordinator publishes these
        newest: dict[tuple[str, str], list[OutboxRecord]] = {}
        for candidate in candidates:
            newest.setdefault((candidate.topic, candidate.key), []).append(candidate)
        sent = 0
        stale: list[int] = []
        held_keys: set[str] = set()
        for (topic_label, key), group in newest.items():
            sendable, settles_rows = _sendable(group)
            if group[-1].held:
                held_keys.add(key)
                settling = {r.id for r in settles_rows}
                stale.extend(r.id for r in group[:-1] if r.held and r.id not in settling)
            if sendable is None:
                continue
            row = sendable
            if self._retry_at.get(row.id, now) > now:
                continue
            if self._newest_sent.get((topic_label, key), -1) > row.id:
                stale.extend(r.id for r in settles_rows)  # a newer config of this key already went out
                continue
            topic = topic_of(topic_label, self.prefix)
            if topic is None:
                if row.id not in self._unknown_topic:  # once per row, not on every tick
                    self._unknown_topic.add(row.id)
                    log.error("outbox=%d names an unknown topic=%s; left pending", row.id, topic_label)
                continue
            settles = tuple(r.id for r in settles_rows)
            with self._lock:
                self._in_flight[row.id] = settles
            try:
                self.bus.send(
                    topic, key, row.value, headers=dict(row.headers), on_delivery=self._on_delivery(row.id)
                )
            except TemporaryError as exc:
                with self._lock:
                    self._in_flight.pop(row.id, None)
                self._retry_at[row.id] = now + self.retry_after
                self.stats.last_error = str(exc)
                log.info("publish deferred outbox=%d reason=%s", row.id, exc)
                continue
            self._retry_at.pop(row.id, None)
            self._sent_at[row.id] = now
            self._newest_sent[(topic_label, key)] = row.id
            self.stats.published_nodes.append((key, row.id))
            del self.stats.published_nodes[:-1000]
            sent += 1
        self.held_keys = held_keys
        self.stats.held = len(held_keys)
        if stale:
            self.store.mark_published(stale, now)
            self.stats.superseded += len(stale)
        return sent

    def drain(self, timeout: float, wait: Callable[[float], object]) -> bool:
        """Pump until nothing is pending (but held rows) or in flight (True), or ``timeout`` seconds passed
        (False)."""
        deadline = self.clock() + timedelta(seconds=timeout)
        while True:
            self.pump()
            if not self._in_flight and all(r.held for r in self.store.pending_outbox(self.batch)):
                return True
            if self.clock() >= deadline:
                return False
            wait(0.05)


def _sendable(group: Sequence[OutboxRecord]) -> tuple[OutboxRecord | None, list[OutboxRecord]]:
    """Of one key's pending rows (oldest first): the row to send and the rows its delivery settles. The newest
    row, settling every older one; when the newest is held, the newest older row not held (a config owed from
    before the handover), settling the rows up to it; None when there is none."""
    if not group[-1].held:
        return group[-1], list(group)
    owed = [r for r in group if not r.held]
    if not owed:
        return None, []
    last = owed[-1]
    return last, [r for r in group if r.id <= last.id]
