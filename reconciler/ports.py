"""The ports of the long-running processes: what the apply path and the coordinator need from the store, the
message bus and the clock, as ``Protocol``s. Loops are unit-tested with small in-memory fakes of these and
integration-tested with the real adapters (:class:`dsfleet.reconciler.store.Store`, the Kafka bus in
``dsfleet.reconciler.bus``, :class:`SystemClock`).

This module imports no adapter at run time (the store's value types only for type checking).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, overload

if TYPE_CHECKING:
    from dsfleet.plumbing.kafka import Delivery, Record
    from dsfleet.reconciler.bus import CoordinatorBus
    from dsfleet.reconciler.store import (
        AppliedRevision,
        CoordinatorBeat,
        Encoder,
        Inventory,
        NewRevision,
        NodeChange,
        NodeStatusRow,
        ObservedRow,
        OutboxRow,
        RetiringNode,
        RevisionRecord,
        Store,
        StoredInventory,
        StoredNodeConfig,
    )
    from dsfleet.reconciler.store.nodekeys import EnrollmentTokenRow, KeySighting, NodeKeyRow
    from dsfleet.reconciler.store.nodestates import KnownNodeRow, NodeLive, OnlineTransition, TransitionLike
    from dsfleet.reconciler.store.outbox import OutboxRecord
    from dsfleet.reconciler.store.revisions import PinGuard
    from dsfleet.reconciler.store.values import HeldByPin
    from dsfleet.schemas.wire import AgentInfo, AgentResponse, Topic

__all__ = ["BusPort", "Clock", "StorePort", "SystemClock"]


class StorePort(Protocol):
    """The store as the apply path (``dsfleet.reconciler.applying``) and the coordinator use it."""

    deposed: str | None
    """Set once a write found another coordinator's leadership epoch: the coordinator stops."""

    def still_leader(self) -> bool: ...

    def writer_epoch(self) -> int:
        """The leadership epoch the AgentConfig records written through this store carry (0: none claimed)."""
        ...

    # revisions and node configs
    @overload
    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        *,
        inventory_base: tuple[int, Inventory] | None = None,
        holds: Mapping[str, Mapping[str, Any]] | None = None,
        unless_pinned: None = None,
        states: Mapping[str, Callable[[int], Any]] | None = None,
    ) -> AppliedRevision: ...

    @overload
    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        *,
        inventory_base: tuple[int, Inventory] | None = None,
        holds: Mapping[str, Mapping[str, Any]] | None = None,
        unless_pinned: PinGuard,
        states: Mapping[str, Callable[[int], Any]] | None = None,
    ) -> AppliedRevision | HeldByPin: ...

    def record_rejected(self, rev: NewRevision, errors: Sequence[Mapping[str, Any]]) -> int: ...

    def store_rollback(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        encode: Encoder,
        pin: Callable[[int], Mapping[str, Any]],
        message: str,
        *,
        states: Mapping[str, Callable[[int], Any]] | None = None,
    ) -> AppliedRevision: ...

    def last_accepted_revision(self) -> RevisionRecord | None: ...

    def revision(self, revision_id: int) -> RevisionRecord | None: ...

    def revisions(self, limit: int = 50) -> list[RevisionRecord]: ...

    def latest_node_configs(self, at_revision: int | None = None) -> dict[str, StoredNodeConfig]: ...

    def latest_node_changes(
        self, known: Mapping[str, str]
    ) -> tuple[frozenset[str], dict[str, StoredNodeConfig]]: ...

    def last_accepted_revision_id(self) -> int | None: ...

    def node_generation(self, node: str) -> int: ...

    def fleet_id(self) -> str | None: ...

    def reissue_config(
        self, node: str, above: int, encode: Encoder, now: datetime
    ) -> StoredNodeConfig | None: ...

    def config_hashes(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str | None]: ...

    # outbox
    def pending_outbox(self, limit: int = 100) -> list[OutboxRow]: ...

    def mark_published(self, ids: Sequence[int], now: datetime) -> int: ...

    def record_publish_attempt(self, ids: Sequence[int]) -> None: ...

    def outbox_depth(self) -> int: ...

    def held_outbox(self) -> list[OutboxRow]: ...

    def release_outbox(self, ids: Sequence[int]) -> int: ...

    def update_hold(self, row_id: int, state: str, reason: str) -> bool: ...

    # inventory, observed state, events
    def inventory(self) -> StoredInventory: ...

    def record_node_seen(
        self, name: str, *, ip: str | None, seen_at: datetime, online: bool = True
    ) -> bool: ...

    def replace_observed(self, node: str, rows: Sequence[ObservedRow]) -> None: ...

    def observed(self, node: str | None = None) -> list[ObservedRow]: ...

    def observed_details(self, node: str | None = None) -> list[dict[str, Any]]: ...

    def node_statuses(self) -> list[NodeStatusRow]: ...

    def record_event(
        self, at: datetime, kind: str, message: str, *, node: str | None = None, instance: str | None = None
    ) -> int: ...

    def record_events(self, at: datetime, kind: str, messages: Sequence[tuple[str, str]]) -> None: ...

    def prune_events(self, older_than: datetime, keep: int, *, batch: int = 20_000) -> int: ...

    def enqueue(self, records: Sequence[OutboxRecord], now: datetime) -> list[int]: ...

    # what agents announce and report (the coordinator's ingest)
    def known_nodes(self) -> list[KnownNodeRow]: ...

    def node_liveness(self) -> dict[str, NodeLive]: ...

    def record_agent_infos(
        self, infos: Mapping[str, AgentInfo], fresh: Mapping[str, bool], at: datetime
    ) -> list[OnlineTransition]: ...

    def record_agent_responses(self, responses: Mapping[str, AgentResponse], at: datetime) -> int: ...

    def record_transitions(self, transitions: Sequence[TransitionLike]) -> None: ...

    def set_sync_state(self, key: str, value: Any, at: datetime) -> None: ...

    def sync_state(self, key: str) -> Any: ...

    def clear_pin(self, at: datetime, message: str) -> bool: ...

    # nodes the manifests no longer declare; the coordinator's heartbeat
    def retiring_nodes(self) -> list[RetiringNode]: ...

    def retire_node(self, node: str, at: datetime, reason: str) -> bool: ...

    def write_heartbeat(self, beat: CoordinatorBeat) -> None: ...

    # agents' keys (who may speak for which node)
    def node_keys(self, node: str | None = None) -> list[NodeKeyRow]: ...

    def enrollment_tokens(self, *, at: datetime | None = None) -> list[EnrollmentTokenRow]: ...

    def note_key_sightings(self, sightings: Sequence[KeySighting], at: datetime) -> int: ...

    def redeem_enrollment_token(self, token_id: int, sighting: KeySighting, at: datetime) -> bool: ...


class BusPort(Protocol):
    """The coordinator's side of the message bus (implemented over Kafka in :mod:`dsfleet.reconciler.bus`).

    ``send`` queues one record for the key's partition (:func:`dsfleet.schemas.wire.partition_for` of the topic's
    partition count, never librdkafka's partitioner); ``value=None`` is a tombstone. The loop reads the inbound
    topics (``poll_inbound``) and the AgentConfig topic back from its start (``poll_observer``).
    """

    @property
    def producer_failed(self) -> bool: ...

    @property
    def broker_was_down(self) -> bool: ...

    def ensure_topics(self, timeout: float = 10.0) -> list[str]: ...

    def start_reading(self) -> None: ...

    def assign_observer(self) -> int: ...

    def partitions(self, topic: Topic) -> int: ...

    def partition_count_changed(self, topic: Topic) -> bool: ...

    def reset_producer(self) -> None: ...

    def send(
        self,
        topic: Topic,
        key: str | None,
        value: bytes | None,
        *,
        headers: Mapping[str, str] | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None: ...

    def poll(self, timeout: float = 0.0) -> int: ...

    def poll_inbound(self, max_records: int = 500, timeout: float = 0.05) -> list[Record]: ...

    def poll_observer(self, max_records: int = 1000) -> tuple[list[Record], dict[int, int]]: ...

    def flush(self, timeout: float = 10.0) -> int: ...

    def close(self, timeout: float = 10.0) -> int: ...


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

    def _coordinator_bus_is_a_bus_port(bus: CoordinatorBus) -> BusPort:
        return bus
