"""Observed state (per instance, as its agent last reported it) and events (what happened, newest first).

The coordinator writes them from ``AgentResponse`` messages; ``status`` and the API read them. Times come from
the caller (no clock here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dsfleet.reconciler.store.database import StoreBase, _inserted_id
from dsfleet.reconciler.store.schema import EVENTS, OBSERVED
from dsfleet.reconciler.store.values import _from_db_required, _to_utc

__all__ = ["EventRecord", "ObservedMixin", "ObservedRow"]


@dataclass(frozen=True)
class ObservedRow:
    """One instance as its node's agent reported it. ``drift`` is JSON-ready (a list of what differed)."""

    node: str
    instance: str
    state: str
    updated_at: datetime
    generation: int | None = None
    config_hash: str | None = None
    restarts: int = 0
    drift: tuple[Any, ...] = field(default=())
    last_error: str | None = None


@dataclass(frozen=True)
class EventRecord:
    id: int
    at: datetime
    kind: str
    message: str
    node: str | None = None
    instance: str | None = None


class ObservedMixin(StoreBase):
    """Observed instances and events."""

    def replace_observed(self, node: str, rows: Sequence[ObservedRow]) -> None:
        """Make the observed rows of ``node`` exactly ``rows`` (an agent reports all of its instances)."""
        for row in rows:
            if row.node != node:
                raise ValueError(f"observed row of node {row.node} passed for node {node}")
        with self._write() as conn:
            conn.execute(OBSERVED.delete().where(OBSERVED.c.node == node))
            if rows:
                conn.execute(
                    OBSERVED.insert(),
                    [
                        {
                            "node": r.node,
                            "instance": r.instance,
                            "state": r.state,
                            "generation": r.generation,
                            "config_hash": r.config_hash,
                            "restarts": r.restarts,
                            "drift": list(r.drift),
                            "last_error": r.last_error,
                            "updated_at": _to_utc(r.updated_at),
                        }
                        for r in rows
                    ],
                )

    def observed(self, node: str | None = None) -> list[ObservedRow]:
        """Observed rows (of one node, or all), by node then instance."""
        query = sa.select(OBSERVED).order_by(OBSERVED.c.node, OBSERVED.c.instance)
        if node is not None:
            query = query.where(OBSERVED.c.node == node)
        with self._read() as conn:
            return [
                ObservedRow(
                    node=r["node"],
                    instance=r["instance"],
                    state=r["state"],
                    updated_at=_from_db_required(r["updated_at"]),
                    generation=r["generation"],
                    config_hash=r["config_hash"],
                    restarts=int(r["restarts"]),
                    drift=tuple(r["drift"] or ()),
                    last_error=r["last_error"],
                )
                for r in conn.execute(query).mappings()
            ]

    def record_event(
        self, at: datetime, kind: str, message: str, *, node: str | None = None, instance: str | None = None
    ) -> int:
        """Append an event; returns its id."""
        with self._write() as conn:
            result = conn.execute(
                EVENTS.insert().values(
                    at=_to_utc(at), kind=kind, message=message, node=node, instance=instance
                )
            )
            return _inserted_id(result)

    def record_events(self, at: datetime, kind: str, messages: Sequence[tuple[str, str]]) -> None:
        """Append one event of ``kind`` per ``(node, message)``, in one transaction."""
        if not messages:
            return
        with self._write() as conn:
            conn.execute(
                EVENTS.insert(),
                [
                    {"at": _to_utc(at), "kind": kind, "message": message, "node": node, "instance": None}
                    for node, message in messages
                ],
            )

    def prune_events(self, older_than: datetime, keep: int, *, batch: int = 20_000) -> int:
        """Delete the events older than ``older_than`` and all but the newest ``keep`` (by id), oldest first and
        at most ``batch`` in one statement; returns how many went (``batch``: more may be due)."""
        with self._write() as conn:
            newest = conn.execute(sa.select(sa.func.max(EVENTS.c.id))).scalar()
            if newest is None:
                return 0
            due = sa.or_(EVENTS.c.at < _to_utc(older_than), EVENTS.c.id <= int(newest) - keep)
            victims = sa.select(EVENTS.c.id).where(due).order_by(EVENTS.c.id).limit(batch)
            result = conn.execute(EVENTS.delete().where(EVENTS.c.id.in_(victims.scalar_subquery())))
            return int(result.rowcount)

    def event_count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar() or 0)

    def events(self, limit: int = 100) -> list[EventRecord]:
        """The newest ``limit`` events, newest first."""
        with self._read() as conn:
            return [
                EventRecord(
                    id=int(r["id"]),
                    at=_from_db_required(r["at"]),
                    kind=r["kind"],
                    message=r["message"],
                    node=r["node"],
                    instance=r["instance"],
                )
                for r in conn.execute(sa.select(EVENTS).order_by(EVENTS.c.id.desc()).limit(limit)).mappings()
            ]
