"""One consistent read of everything the status document shows (``dsfleet status``, the HTTP API, ``/metrics``):
node status, the latest config of each node, the inventory, the last revision, the observed instances, the
pending plan of manual sync and the newest events, all from **one** read transaction, so a status never mixes
two states of the store. The document itself is built from the snapshot by a pure function
(:func:`dsfleet.reconciler.views.status_document`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from dsfleet.reconciler.store.nodestates import LiveMixin, NodeStatusRow
from dsfleet.reconciler.store.observed import EventRecord, ObservedMixin
from dsfleet.reconciler.store.revisions import RevisionsMixin
from dsfleet.reconciler.store.schema import OBSERVED
from dsfleet.reconciler.store.values import InstanceRow, NodeRow, RevisionRecord, _from_db

__all__ = ["PENDING_PLAN", "NodeHead", "ObservedDetail", "SnapshotsMixin", "StatusSnapshot"]

PENDING_PLAN: Final = "pending_plan"
"""The sync-state key under which the coordinator keeps the pending plan of manual sync."""

NodeHead = tuple[int, str, datetime]
"""A node's latest stored config: (generation, config hash, when its revision was stored)."""


@dataclass(frozen=True)
class ObservedDetail:
    """One instance as its node's agent last reported it (every column status shows). ``drift``: the agent's
    drift records (``kind``, ``detail``, ``at``, ``healed``)."""

    node: str
    instance: str
    state: str
    generation: int | None = None
    config_hash: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    last_error: str | None = None
    last_log_line: str | None = None
    fps: Mapping[str, float] = field(default_factory=dict)
    drift: tuple[Mapping[str, Any], ...] = ()
    container_id: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class StatusSnapshot:
    """What the store held at one moment, as far as the status document is concerned."""

    node_statuses: tuple[NodeStatusRow, ...] = ()
    """What each node's agent announced and last reported (``node_status``)."""
    node_heads: Mapping[str, NodeHead] = field(default_factory=dict)
    nodes: tuple[NodeRow, ...] = ()
    """The inventory's nodes (what the manifests declare)."""
    instances: tuple[InstanceRow, ...] = ()
    """The inventory's instances, each with its node, config hash and paused flag."""
    last_revision: RevisionRecord | None = None
    observed: tuple[ObservedDetail, ...] = ()
    pending_plan: Mapping[str, Any] | None = None
    events: tuple[EventRecord, ...] = ()
    """The newest events, newest first."""


_OBSERVED = sa.select(
    OBSERVED.c.node,
    OBSERVED.c.instance,
    OBSERVED.c.state,
    OBSERVED.c.generation,
    OBSERVED.c.config_hash,
    OBSERVED.c.restarts,
    OBSERVED.c.exit_code,
    OBSERVED.c.last_error,
    OBSERVED.c.last_log_line,
    OBSERVED.c.fps,
    OBSERVED.c.drift,
    OBSERVED.c.container_id,
    OBSERVED.c.updated_at,
).order_by(OBSERVED.c.node, OBSERVED.c.instance)
"""The observed columns status shows, by node then instance."""


def _observed_detail(row: RowMapping) -> ObservedDetail:
    return ObservedDetail(
        node=row["node"],
        instance=row["instance"],
        state=row["state"],
        generation=row["generation"],
        config_hash=row["config_hash"],
        restarts=int(row["restarts"] or 0),
        exit_code=row["exit_code"],
        last_error=row["last_error"],
        last_log_line=row["last_log_line"],
        fps=dict(row["fps"] or {}),
        drift=tuple(dict(d) for d in row["drift"] or ()),
        container_id=row["container_id"],
        updated_at=_from_db(row["updated_at"]),
    )


class SnapshotsMixin(RevisionsMixin, ObservedMixin, LiveMixin):
    """:meth:`status_snapshot`."""

    def status_snapshot(self, *, events: int = 20) -> StatusSnapshot:
        """Everything the status document shows, read in one transaction; ``events``: how many of the newest
        events (0: none)."""
        with self._snapshot(), self._read() as conn:
            inventory = self.inventory(cameras=False)
            newest = self.revisions(limit=1)
            return StatusSnapshot(
                node_statuses=tuple(self.node_statuses()),
                node_heads=self.latest_node_heads(),
                nodes=inventory.nodes,
                instances=inventory.instances,
                last_revision=newest[0] if newest else None,
                observed=tuple(_observed_detail(r) for r in conn.execute(_OBSERVED).mappings()),
                pending_plan=self.sync_state(PENDING_PLAN),
                events=tuple(self.events(limit=events)) if events > 0 else (),
            )
