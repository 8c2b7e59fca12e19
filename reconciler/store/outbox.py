"""The outbox: the one way records leave the store. Rows are written in the same transaction as their revision
(:meth:`RevisionsMixin.apply_revision`) or, for anti-entropy's re-publishes of a config already stored, by
:meth:`OutboxMixin.enqueue`; :class:`dsfleet.reconciler.coordinator.publishing.OutboxPublisher` sends them.

A row may be **held** (an ordered camera handover: the source node's config waits until the target runs the
camera, :mod:`dsfleet.reconciler.planning.handovers`): it stays pending and is not sent until
:meth:`OutboxMixin.release_outbox`; its ``hold`` (JSON) says what it waits for, and the coordinator keeps the
decision's state and reason there (:meth:`OutboxMixin.update_hold`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from dsfleet.reconciler.store.database import StoreBase, _inserted_id
from dsfleet.reconciler.store.schema import OUTBOX
from dsfleet.reconciler.store.values import OutboxRow, _from_db, _from_db_required, _to_utc

OutboxRecord = tuple[str, str, bytes | None, Mapping[str, str]]
"""(topic label, key, value or None for a tombstone, headers)."""


class OutboxMixin(StoreBase):
    """Writing, reading and settling the outbox."""

    def enqueue(self, records: Sequence[OutboxRecord], now: datetime) -> list[int]:
        """Queue records (topic label, key, value, headers) for publishing, in one transaction; their ids."""
        ids: list[int] = []
        if not records:
            return ids
        with self._write() as conn:
            for topic, key, value, headers in records:
                result = conn.execute(
                    OUTBOX.insert().values(
                        topic=topic,
                        key=key,
                        value=value,
                        headers={str(k): str(v) for k, v in headers.items()},
                        created_at=_to_utc(now),
                        published_at=None,
                        attempts=0,
                    )
                )
                ids.append(_inserted_id(result))
        return ids

    def outbox_rows(self, limit: int = 100) -> list[OutboxRow]:
        """The newest outbox rows, published or not, oldest first."""
        with self._read() as conn:
            result = conn.execute(sa.select(OUTBOX).order_by(OUTBOX.c.id.desc()).limit(limit))
            return [_outbox_row(r) for r in reversed(list(result.mappings()))]

    def pending_outbox(self, limit: int = 100) -> list[OutboxRow]:
        """Unpublished outbox rows, oldest first (held ones flagged: the publisher does not send them)."""
        with self._read() as conn:
            result = conn.execute(
                sa.select(OUTBOX).where(OUTBOX.c.published_at.is_(None)).order_by(OUTBOX.c.id).limit(limit)
            )
            return [_outbox_row(r) for r in result.mappings()]

    def held_outbox(self) -> list[OutboxRow]:
        """The unpublished rows held back by a camera handover, oldest first."""
        with self._read() as conn:
            result = conn.execute(
                sa.select(OUTBOX)
                .where(OUTBOX.c.published_at.is_(None), OUTBOX.c.held.is_(True))
                .order_by(OUTBOX.c.id)
            )
            return [_outbox_row(r) for r in result.mappings()]

    def release_outbox(self, ids: Sequence[int]) -> int:
        """Let held rows go (the publisher sends them next); returns how many were still held and pending. Their
        ``hold`` is kept (what they waited for, and how it ended)."""
        if not ids:
            return 0
        with self._write() as conn:
            result = conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id.in_(list(ids)), OUTBOX.c.held.is_(True), OUTBOX.c.published_at.is_(None))
                .values(held=False)
            )
            return int(result.rowcount)

    def update_hold(self, row_id: int, state: str, reason: str) -> bool:
        """Note the latest decision (``state``, ``reason``) in a row's hold; False when the row has no hold."""
        with self._write() as conn:
            current = conn.execute(sa.select(OUTBOX.c.hold).where(OUTBOX.c.id == row_id)).scalar()
            if not current:
                return False
            conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id == row_id)
                .values(hold={**dict(current), "state": state, "reason": reason})
            )
            return True

    def mark_published(self, ids: Sequence[int], now: datetime) -> int:
        """Mark outbox rows as published at ``now``; returns how many were still pending."""
        if not ids:
            return 0
        with self._write() as conn:
            result = conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id.in_(list(ids)), OUTBOX.c.published_at.is_(None))
                .values(published_at=_to_utc(now))
            )
            return int(result.rowcount)

    def outbox_depth(self) -> int:
        """How many outbox rows are not published yet (a gauge for metrics and ``status``)."""
        with self._read() as conn:
            value = conn.execute(
                sa.select(sa.func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None))
            ).scalar()
            return int(value or 0)

    def record_publish_attempt(self, ids: Sequence[int]) -> None:
        """Count a failed publish attempt for these outbox rows (for backoff and metrics)."""
        if not ids:
            return
        with self._write() as conn:
            conn.execute(
                OUTBOX.update().where(OUTBOX.c.id.in_(list(ids))).values(attempts=OUTBOX.c.attempts + 1)
            )


def _outbox_row(row: RowMapping) -> OutboxRow:
    value = row["value"]
    return OutboxRow(
        id=int(row["id"]),
        topic=row["topic"],
        key=row["key"],
        value=bytes(value) if value is not None else None,
        headers={str(k): str(v) for k, v in (row["headers"] or {}).items()},
        created_at=_from_db_required(row["created_at"]),
        published_at=_from_db(row["published_at"]),
        attempts=int(row["attempts"]),
        held=bool(row["held"]),
        hold=dict(row["hold"]) if row["hold"] else None,
    )
