"""The ports of the long-running processes: what the apply path and the coordinator need from the store, the
message bus and the clock, as ``Protocol``s. Loops are unit-tested with small in-memory fakes of these and
integration-tested with the real adapters (:class:`dsfleet.reconciler.store.Store`, the Kafka bus in
``dsfleet.reconciler.bus``, :class:`SystemClock`).

This module imports no adapter at run time (the store's value types only for type checking).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dsfleet.reconciler.store import (
        AppliedRevision,
        Encoder,
        Inventory,
        NewRevision,
        NodeChange,
        ObservedRow,
        OutboxRow,
        RevisionRecord,
        Store,
        StoredInventory,
        StoredNodeConfig,
    )

__all__ = ["BusPort", "Clock", "StorePort", "SystemClock"]


class StorePort(Protocol):
    """The store as the apply path (``dsfleet.reconciler.applying``) and the coordinator use it."""

    # revisions and node configs
    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        *,
        inventory_base: tuple[int, Inventory] | None = None,
    ) -> AppliedRevision: ...

    def record_rejected(self, rev: NewRevision, errors: Sequence[Mapping[str, Any]]) -> int: ...

    def last_accepted_revision(self) -> RevisionRecord | None: ...

    def revisions(self, limit: int = 50) -> list[RevisionRecord]: ...

    def latest_node_configs(self, at_revision: int | None = None) -> dict[str, StoredNodeConfig]: ...

    def latest_node_changes(
        self, known: Mapping[str, str]
    ) -> tuple[frozenset[str], dict[str, StoredNodeConfig]]: ...

    def last_accepted_revision_id(self) -> int | None: ...

    def node_generation(self, node: str) -> int: ...

    # outbox
    def pending_outbox(self, limit: int = 100) -> list[OutboxRow]: ...

    def mark_published(self, ids: Sequence[int], now: datetime) -> int: ...

    def record_publish_attempt(self, ids: Sequence[int]) -> None: ...

    def outbox_depth(self) -> int: ...

    # inventory, observed state, events
    def inventory(self) -> StoredInventory: ...

    def record_node_seen(
        self, name: str, *, ip: str | None, seen_at: datetime, online: bool = True
    ) -> bool: ...

    def replace_observed(self, node: str, rows: Sequence[ObservedRow]) -> None: ...

    def observed(self, node: str | None = None) -> list[ObservedRow]: ...

    def record_event(
        self, at: datetime, kind: str, message: str, *, node: str | None = None, instance: str | None = None
    ) -> int: ...

    def record_events(self, at: datetime, kind: str, messages: Sequence[tuple[str, str]]) -> None: ...


class BusPort(Protocol):
    """A message producer (implemented over confluent-kafka in ``dsfleet.reconciler.bus``).

    ``send`` queues one record for ``partition`` (explicit: :func:`dsfleet.schemas.wire.partition_for` of the key, never
    librdkafka's partitioner); ``value=None`` is a tombstone. ``poll`` serves delivery reports for up to
    ``timeout`` seconds and returns how many it served; ``flush`` waits up to ``timeout`` seconds for everything
    queued and returns how many records are still not delivered (0: all delivered).
    """

    def send(
        self, topic: str, key: str, value: bytes | None, headers: Mapping[str, str], partition: int
    ) -> None: ...

    def poll(self, timeout: float = 0.0) -> int: ...

    def flush(self, timeout: float) -> int: ...


class Clock(Protocol):
    """Time, passed in: ``now()`` is timezone-aware (UTC) wall time, ``monotonic()`` seconds for deadlines."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


if TYPE_CHECKING:  # mypy checks that the adapters satisfy their ports

    def _store_is_a_store_port(store: Store) -> StorePort:
        return store

    def _system_clock_is_a_clock(clock: SystemClock) -> Clock:
        return clock
