"""The outbox: messages stored in the same transaction as their revision, published later (DESIGN §4)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from dsfleet.reconciler.store.database import StoreBase
from dsfleet.reconciler.store.schema import OUTBOX
from dsfleet.reconciler.store.values import OutboxRow, _from_db, _from_db_required, _to_utc


class OutboxMixin(StoreBase):
    """Reading and settling the outbox; rows are written by :meth:`RevisionsMixin.apply_revision`."""

    def pending_outbox(self, limit: int = 100) -> list[OutboxRow]:
        """Unpublished outbox rows, oldest first."""
        with self._read() as conn:
            result = conn.execute(
                sa.select(OUTBOX).where(OUTBOX.c.published_at.is_(None)).order_by(OUTBOX.c.id).limit(limit)
            )
            return [_outbox_row(r) for r in result.mappings()]

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
    )
