"""What the coordinator takes from a batch of inbound records (pure): decoded, coalesced, counted.

Every record is decoded with :func:`dsfleet.schemas.wire.decode` (which never raises); a rejection is counted per
(topic, reason) and kept for a rate-limited log line, never applied. Within one batch only the newest AgentInfo
and AgentResponse of each node matter (they are full states, not deltas), so a batch of 500 records becomes at
most one row per node: the store writes it in one transaction. Replies to ``logs`` commands (AgentLogs, on the
AgentResponse topic beside the responses) are not node states: they are kept apart, every one, for whoever waits
for them by request id (:mod:`dsfleet.reconciler.coordinator.logreplies`).

With a :class:`~dsfleet.reconciler.coordinator.authentication.Gate`, every record is first checked for its
signature (a node's reports by its enrolled key, requests by an operator key); what fails is dropped before it is
parsed further or coalesced, and counted by reason in ``unauthenticated``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

from dsfleet.reconciler.coordinator.authentication import Gate, Redemption
from dsfleet.reconciler.store.nodekeys import KeySighting
from dsfleet.schemas.wire import (
    AgentInfo,
    AgentLogs,
    AgentResponse,
    Decoded,
    Refresh,
    Rejection,
    RejectReason,
    Tombstone,
    Topic,
    UpdateConfig,
    decode,
    topic_of,
)


@dataclass(frozen=True)
class Inbound:
    """One record as the bus hands it over (independent of the Kafka client)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """The record's headers as text (its signature travels there)."""


@dataclass
class Batch:
    infos: dict[str, AgentInfo] = field(default_factory=dict)
    """Named agents' newest AgentInfo, by node."""
    unnamed: dict[str, AgentInfo] = field(default_factory=dict)
    """Agents that announce without a node name, by machine id or hostname."""
    responses: dict[str, AgentResponse] = field(default_factory=dict)
    updates: list[UpdateConfig] = field(default_factory=list)
    refreshes: list[Refresh] = field(default_factory=list)
    logs: list[AgentLogs] = field(default_factory=list)
    """Replies to ``logs`` commands, in the order read."""
    rejected: list[Rejection] = field(default_factory=list)
    consumed: Counter[str] = field(default_factory=Counter)
    unauthenticated: Counter[str] = field(default_factory=Counter)
    """Records dropped by the gate, by reason (``unsigned``, ``unknown-key``, …)."""
    sightings: list[KeySighting] = field(default_factory=list)
    """Keys that announced themselves for a node without being enrolled for it (pending enrollments)."""
    redemptions: list[Redemption] = field(default_factory=list)
    """Enrollment tokens presented with a valid proof."""

    @property
    def empty(self) -> bool:
        return not (self.infos or self.unnamed or self.responses or self.updates or self.refreshes)


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def sent_at(message: AgentInfo | AgentResponse | UpdateConfig | Refresh) -> datetime | None:
    return _parse_time(message.sent_at)


def read_batch(
    records: Iterable[Inbound],
    *,
    prefix: str,
    known_nodes: Mapping[str, object] | None = None,
    max_bytes: int,
    gate: Gate | None = None,
) -> Batch:
    """Decode and coalesce one batch. ``known_nodes``: the fleet's nodes; a named agent or response for a node the
    manifests do not declare is rejected (``unknown-node``) rather than stored. ``gate``: admits records by their
    signatures first (None: every record is taken)."""
    batch = Batch()
    for record in records:
        topic = topic_of(record.topic, prefix)
        if topic is None:
            batch.rejected.append(Rejection(record.topic, RejectReason.UNKNOWN_TOPIC, "not a dsfleet topic"))
            continue
        batch.consumed[topic.value] += 1
        admitted = gate.admit(topic, record.key, record.value, record.headers) if gate is not None else None
        if admitted is not None and not admitted.accepted:
            if isinstance(admitted.decoded, Rejection):
                batch.rejected.append(admitted.decoded)
            elif admitted.reason is not None:
                batch.unauthenticated[admitted.reason] += 1
            if admitted.sighting is not None:
                batch.sightings.append(admitted.sighting)
            if admitted.redemption is not None:
                batch.redemptions.append(admitted.redemption)
            continue
        got = (
            admitted.decoded
            if admitted is not None and admitted.decoded is not None
            else decode(
                topic,
                record.key,
                record.value,
                topic_label=record.topic,
                max_bytes=max_bytes,
                require_key=topic is Topic.AGENT_RESPONSE,
            )
        )
        if isinstance(got, Rejection):
            batch.rejected.append(got)
            continue
        if isinstance(got, Tombstone):
            batch.rejected.append(
                Rejection(record.topic, RejectReason.NULL_VALUE, "tombstone on a request topic")
            )
            continue
        _take(batch, got, record.topic, known_nodes)
    return batch


def _take(batch: Batch, got: Decoded[Any], label: str, known: Mapping[str, object] | None) -> None:
    message = got.message
    if isinstance(message, AgentInfo):
        if message.node is None:
            ident = message.machineId or message.hostname
            batch.unnamed[ident] = message
        elif known is not None and message.node not in known:
            batch.rejected.append(
                Rejection(label, RejectReason.INVALID, "an agent named a node the manifests lack")
            )
        else:
            _newest(batch.infos, message.node, message)
    elif isinstance(message, AgentResponse):
        if known is not None and message.node not in known:
            batch.rejected.append(
                Rejection(label, RejectReason.INVALID, "a response for a node the manifests lack")
            )
        else:
            _newest(batch.responses, message.node, message)
    elif isinstance(message, UpdateConfig):
        batch.updates.append(message)
    elif isinstance(message, Refresh):
        batch.refreshes.append(message)
    elif isinstance(message, AgentLogs):
        batch.logs.append(message)


_M = TypeVar("_M", AgentInfo, AgentResponse)
_EPOCH = datetime.min.replace(tzinfo=UTC)


def _newest(into: dict[str, _M], node: str, message: _M) -> None:
    current = into.get(node)
    if current is None or (sent_at(message) or _EPOCH) >= (sent_at(current) or _EPOCH):
        into[node] = message
