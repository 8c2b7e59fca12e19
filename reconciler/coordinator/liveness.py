"""Which nodes are online (pure): a node is offline after ``misses`` heartbeats were due and none came.

Heartbeats that could not be heard are not missed: after the coordinator (re)started, or got its broker back, a node
not heard since gets ``misses`` heartbeats from then (``heard_since``) before it counts as offline — a restart never
marks live agents offline — and while the broker is unreachable nobody is marked offline at all (the loop does not
ask)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from dsfleet.schemas.findings import plural


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


def deadline(node: Liveness, misses: int, heard_since: datetime | None = None) -> datetime | None:
    """When ``node`` turns offline if nothing more is heard (None: never seen); ``heard_since``: since when the
    coordinator could hear it (its start, its broker's return)."""
    if node.last_seen is None:
        return None
    last = node.last_seen if heard_since is None else max(node.last_seen, heard_since)
    return last + timedelta(seconds=node.heartbeat_seconds * misses)


def offline_transitions(
    nodes: Iterable[Liveness], now: datetime, misses: int = 3, *, heard_since: datetime | None = None
) -> list[Transition]:
    """Online nodes whose heartbeat is ``misses`` beats overdue at ``now`` (counted from ``heard_since`` for those
    not heard since), sorted by name."""
    out = []
    for node in nodes:
        due = deadline(node, misses, heard_since)
        if node.online and due is not None and now >= due:
            out.append(Transition(node.node, False, now, f"no heartbeat for {plural(misses, 'interval')}"))
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
