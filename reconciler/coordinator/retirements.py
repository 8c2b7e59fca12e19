"""Retiring nodes (pure): when to forget a node the manifests no longer declare.

A node removed from the manifests gets a tombstone; its agent then removes what it runs and reports no instances.
From then on the node is *retired*: its status and observed rows are forgotten (an event says why), so nothing of
it lingers in status. An agent that never answers (a host gone for good) is retired ``timeout`` after the removal
(``[coordinator] retire_after_seconds``, 10 minutes) — or at once by ``dsfleet nodes forget NAME``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from dsfleet.reconciler.planning.conditions import age_text

DEFAULT_RETIRE_AFTER = timedelta(minutes=10)


class RetiringLike(Protocol):
    @property
    def node(self) -> str: ...
    @property
    def removed_at(self) -> datetime | None: ...
    @property
    def instances(self) -> int: ...
    @property
    def reported_at(self) -> datetime | None: ...
    @property
    def last_seen(self) -> datetime | None: ...


@dataclass(frozen=True)
class Retirement:
    node: str
    reason: str


def retirements(
    nodes: Iterable[RetiringLike], now: datetime, *, timeout: timedelta = DEFAULT_RETIRE_AFTER
) -> list[Retirement]:
    """The nodes to forget now, by name: those whose agent reported no instances since their removal, and those
    removed (or, never configured, last heard) ``timeout`` ago or longer."""
    out = []
    for n in sorted(nodes, key=lambda n: n.node):
        since = n.removed_at or n.last_seen or n.reported_at
        if (
            n.instances == 0
            and n.reported_at is not None
            and (n.removed_at is None or n.reported_at >= n.removed_at)
        ):
            out.append(Retirement(n.node, "removed from the manifests; its agent reports no instances"))
        elif since is not None and now - since >= timeout:
            out.append(
                Retirement(
                    n.node,
                    f"removed from the manifests {age_text((now - since).total_seconds())} ago; its agent never "
                    f"reported its instances gone (timeout {age_text(timeout.total_seconds())})",
                )
            )
    return out
