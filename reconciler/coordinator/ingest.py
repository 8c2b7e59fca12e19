"""What the coordinator takes from a batch of inbound records (pure): decoded, coalesced, counted.

Every record is decoded with :func:`dsfleet.schemas.wire.decode` (which never raises); a rejection is counted per
(topic, reason) and kept for a rate-limited log line, never applied. Within one batch only the newest AgentInfo
and AgentResponse of each node matter (they are full states, not deltas), so a batch of 500 records becomes at
most one row per node: the store writes it in one transaction. Replies to ``logs`` commands (AgentLogs, on the
AgentResponse topic beside the responses) are not node states: they are kept apart, every one, for whoever waits
for them by request id (:mod:`dsfleet.reconciler.coordinator.logreplies`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

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
) -> Batch:
    """Decode and coalesce one batch. ``known_nodes``: the fleet's nodes; a named agent or response for a node the
    manifests do not declare is rejected (``unknown-node``) rather than stored."""
    batch = Batch()
    for record in records:
        topic = topic_of(record.topic, prefix)
        if topic is None:
            batch.rejected.append(Rejection(record.topic, RejectReason.UNKNOWN_TOPIC, "not a dsfleet topic"))
            continue
        batch.consumed[topic.value] += 1
        got = decode(
            topic,
            record.key,
            record.value,
            topic_label=record.topic,
            max_bytes=max_bytes,
            require_key=topic is Topic.AGENT_RESPONSE,
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
