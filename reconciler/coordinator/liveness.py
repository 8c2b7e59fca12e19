"""Which nodes are online (pure): a node is offline after ``misses`` heartbeats were due and none came."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Liveness:
    node: str
    online: bool
    last_seen: datetime | None
    heartbeat_seconds: float = 5.0


@dataclass(frozen=True)
class Transition:
    node: str
    online: bool
    at: datetime
    reason: str


def deadline(node: Liveness, misses: int) -> datetime | None:
    """When ``node`` turns offline if nothing more is heard (None: never seen)."""
    if node.last_seen is None:
        return None
    return node.last_seen + timedelta(seconds=node.heartbeat_seconds * misses)


def offline_transitions(nodes: Iterable[Liveness], now: datetime, misses: int = 3) -> list[Transition]:
    """Online nodes whose heartbeat is ``misses`` beats overdue at ``now``, sorted by name."""
    out = []
    for node in nodes:
        due = deadline(node, misses)
        if node.online and due is not None and now >= due:
            out.append(Transition(node.node, False, now, f"no heartbeat for {misses} intervals"))
    return sorted(out, key=lambda t: t.node)


def is_fresh(sent_at: datetime, received_at: datetime, heartbeat_seconds: float, misses: int = 3) -> bool:
    """Whether a heartbeat sent at ``sent_at`` may still mark its node online (an old record read back after a
    restart must not): it must be younger than the offline threshold. Clock skew of up to one threshold in the
    future is tolerated."""
    age = (received_at - sent_at).total_seconds()
    limit = heartbeat_seconds * misses
    return -limit <= age < limit


def online_transitions(before: Mapping[str, bool], heard: Iterable[str], at: datetime) -> list[Transition]:
    """Nodes heard from now that were offline (or unknown) before."""
    return [
        Transition(name, True, at, "heartbeat") for name in sorted(set(heard)) if not before.get(name, False)
    ]
