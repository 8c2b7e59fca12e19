"""One consistent read of everything the status document shows (``dsfleet status``, the HTTP API, ``/metrics``):
node status, the latest config of each node, the inventory, the last revision, the observed instances, the
pending plan of manual sync, the newest events, the coordinator's heartbeat, the fleet id, what waits in the outbox
(and what a camera handover holds back there) and what was published lately, all from **one** read transaction, so a status never mixes two states of the
store. The document itself is built from the snapshot by a pure function
(:func:`dsfleet.reconciler.views.status_document`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from dsfleet.reconciler.store.coordinators import CoordinatorBeat, CoordinatorMixin
from dsfleet.reconciler.store.nodekeys import PENDING, KeysMixin, NodeKeyRow
from dsfleet.reconciler.store.nodestates import LiveMixin, NodeStatusRow
from dsfleet.reconciler.store.observed import EventRecord, ObservedMixin
from dsfleet.reconciler.store.outbox import OutboxMixin
from dsfleet.reconciler.store.revisions import RevisionsMixin
from dsfleet.reconciler.store.schema import EVENTS, NODE_CONFIGS, OBSERVED, OUTBOX, REVISIONS
from dsfleet.reconciler.store.values import (
    ROLLBACK_PIN,
    ROLLOUT,
    InstanceRow,
    NodeRow,
    RevisionRecord,
    _from_db,
    _from_db_required,
    _to_utc,
)

__all__ = [
    "DRIFT_EVENT",
    "PENDING_PLAN",
    "ROLLBACK_PIN",
    "UNAUTHENTICATED_REPORTS",
    "HeldConfig",
    "NodeHead",
    "ObservedDetail",
    "OutboxWait",
    "SnapshotsMixin",
    "StatusSnapshot",
]

PENDING_PLAN: Final = "pending_plan"
"""The sync-state key under which the coordinator keeps the pending plan of manual sync."""

UNAUTHENTICATED_REPORTS: Final = "unauthenticated_reports"
"""The sync-state key under which the coordinator keeps how many reports it dropped for their signature, by
reason, since it started (``{"since": ISO time, "counts": {reason: n}}``)."""

DRIFT_EVENT: Final = "drift"
"""The event kind of one drift an agent reported (counted as ``driftEvents`` / ``dsfleet_drift_events_total``)."""

NodeHead = tuple[int, str, datetime]
"""A node's latest stored config: (generation, config hash, when its revision was stored)."""


@dataclass(frozen=True)
class OutboxWait:
    """What waits in the outbox for one key (a node): how many rows, since when."""

    rows: int
    since: datetime


@dataclass(frozen=True)
class HeldConfig:
    """A node's config held back in the outbox by a camera handover: its row, since when it is stored, and its
    hold (JSON: ``moves``, ``since``, ``deadline``, ``state``, ``reason``)."""

    outbox_id: int
    node: str
    created_at: datetime
    hold: Mapping[str, Any]


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
    conditions: tuple[Mapping[str, Any], ...] = ()
    """The agent's problems with the instance (``reason``, ``message``, ``cameras``, ``since``, ``attempts``,
    ``nextRetryAt``)."""
    fps_at: datetime | None = None
    """When the FPS values were printed (None: the agent did not say; the report's time counts)."""
    cameras: tuple[Mapping[str, Any], ...] = ()
    """Per camera of an instance served by DeepStream's stream REST API: ``CameraStatus`` as JSON (``name``,
    ``state``, ``reason``, ``sourceId``, ``fps``, ``frameNumber``, ``latencyMs``, ``since``)."""


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
    coordinator: CoordinatorBeat | None = None
    """The coordinator's last heartbeat (None: none ever ran on this store)."""
    fleet_id: str | None = None
    outbox: Mapping[str, OutboxWait] = field(default_factory=dict)
    """What waits in the outbox to be published, by key (node); held rows are not counted here (``held``)."""
    held: tuple[HeldConfig, ...] = ()
    """The configs a camera handover holds back in the outbox, oldest first."""
    published: Mapping[str, datetime] = field(default_factory=dict)
    """When each node's newest config was published, for those published since the snapshot's ``since``."""
    removed: Mapping[str, datetime] = field(default_factory=dict)
    """Nodes whose newest config is a removal (a tombstone), with when it was stored."""
    drift_events: int = 0
    """How many drifts agents have reported in all (healed or not)."""
    pending_keys: tuple[NodeKeyRow, ...] = ()
    """Agents' keys waiting for an operator's approval (``dsfleet nodes approve``), by node."""
    unauthenticated: Mapping[str, Any] | None = None
    """Reports the coordinator dropped for their signature (:data:`UNAUTHENTICATED_REPORTS`); None: none kept."""
    pin: Mapping[str, Any] | None = None
    """The rollback pin that holds automatic sync (:data:`ROLLBACK_PIN`, JSON); None: not pinned."""
    rollout: Mapping[str, Any] | None = None
    """The newest rollout (:data:`ROLLOUT`, JSON); None: none yet."""


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
    OBSERVED.c.conditions,
    OBSERVED.c.fps_at,
    OBSERVED.c.cameras,
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
        conditions=tuple(dict(c) for c in row["conditions"] or ()),
        fps_at=_from_db(row["fps_at"]),
        cameras=tuple(dict(c) for c in row["cameras"] or ()),
    )


_PENDING = (
    sa.select(OUTBOX.c.key, sa.func.count(), sa.func.min(OUTBOX.c.created_at))
    .where(OUTBOX.c.published_at.is_(None), OUTBOX.c.held.is_(False))
    .group_by(OUTBOX.c.key)
)
_HELD = (
    sa.select(OUTBOX.c.id, OUTBOX.c.key, OUTBOX.c.created_at, OUTBOX.c.hold)
    .where(OUTBOX.c.published_at.is_(None), OUTBOX.c.held.is_(True))
    .order_by(OUTBOX.c.id)
)


def _removed() -> sa.Select[Any]:
    newest = (
        sa.select(NODE_CONFIGS.c.node, sa.func.max(NODE_CONFIGS.c.generation).label("generation"))
        .group_by(NODE_CONFIGS.c.node)
        .subquery()
    )
    return (
        sa.select(NODE_CONFIGS.c.node, REVISIONS.c.created_at)
        .join(
            newest,
            sa.and_(NODE_CONFIGS.c.node == newest.c.node, NODE_CONFIGS.c.generation == newest.c.generation),
        )
        .join(REVISIONS, REVISIONS.c.id == NODE_CONFIGS.c.revision_id)
        .where(NODE_CONFIGS.c.deleted.is_(True))
    )


class SnapshotsMixin(RevisionsMixin, OutboxMixin, ObservedMixin, LiveMixin, CoordinatorMixin, KeysMixin):
    """:meth:`status_snapshot`."""

    def status_snapshot(self, *, events: int = 20, since: datetime | None = None) -> StatusSnapshot:
        """Everything the status document shows, read in one transaction; ``events``: how many of the newest
        events (0: none); ``since``: the publications to report (those at or after it; None: none)."""
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
                coordinator=self.coordinator_heartbeat(),
                fleet_id=self.fleet_id(),
                outbox={
                    str(key): OutboxWait(int(n), _from_db_required(oldest))
                    for key, n, oldest in conn.execute(_PENDING).all()
                },
                held=tuple(
                    HeldConfig(int(i), str(key), _from_db_required(at), dict(hold or {}))
                    for i, key, at, hold in conn.execute(_HELD).all()
                ),
                published=self._published_since(since) if since is not None else {},
                removed={str(n): _from_db_required(t) for n, t in conn.execute(_removed()).all()},
                drift_events=int(
                    conn.execute(
                        sa.select(sa.func.count()).select_from(EVENTS).where(EVENTS.c.kind == DRIFT_EVENT)
                    ).scalar()
                    or 0
                ),
                pending_keys=tuple(k for k in self.node_keys() if k.state == PENDING),
                unauthenticated=self.sync_state(UNAUTHENTICATED_REPORTS),
                pin=self.sync_state(ROLLBACK_PIN),
                rollout=self.sync_state(ROLLOUT),
            )

    def _published_since(self, since: datetime) -> dict[str, datetime]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(OUTBOX.c.key, sa.func.max(OUTBOX.c.published_at))
                .where(OUTBOX.c.published_at >= _to_utc(since))
                .group_by(OUTBOX.c.key)
            ).all()
        return {str(k): _from_db_required(t) for k, t in rows}
