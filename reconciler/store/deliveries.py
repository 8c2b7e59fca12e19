"""Webhook deliveries the API has seen (so a redelivered or replayed push is applied once), kept for a while."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dsfleet.reconciler.store.database import StoreBase
from dsfleet.reconciler.store.schema import WEBHOOK_DELIVERIES
from dsfleet.reconciler.store.values import _to_utc

__all__ = ["DeliveriesMixin"]


class DeliveriesMixin(StoreBase):
    """The ``webhook_deliveries`` table."""

    def record_delivery(self, keys: Sequence[str], source: str, at: datetime, *, keep: timedelta) -> bool:
        """Remember a delivery under each of ``keys`` (at most 128 characters each); False when one of them is
        already known (a duplicate). Deliveries older than ``keep`` are forgotten in the same transaction.
        Concurrent identical deliveries: exactly one of them gets True."""
        when = _to_utc(at)
        with self._write() as conn:
            conn.execute(WEBHOOK_DELIVERIES.delete().where(WEBHOOK_DELIVERIES.c.received_at < when - keep))
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            fresh = True
            for key in dict.fromkeys(keys):
                statement = (
                    insert(WEBHOOK_DELIVERIES)
                    .values(delivery_id=key[:128], source=source[:32], received_at=when)
                    .on_conflict_do_nothing(index_elements=[WEBHOOK_DELIVERIES.c.delivery_id])
                    .returning(WEBHOOK_DELIVERIES.c.delivery_id)
                )
                # the row comes back only when it was inserted (rowcount is not reliable here on every driver)
                added = conn.execute(statement).first() is not None
                fresh = fresh and added
            return fresh

    def forget_delivery(self, keys: Sequence[str]) -> int:
        """Forget the deliveries under ``keys``; returns how many rows went."""
        with self._write() as conn:
            gone = conn.execute(
                WEBHOOK_DELIVERIES.delete().where(
                    WEBHOOK_DELIVERIES.c.delivery_id.in_([k[:128] for k in keys])
                )
            )
            return int(gone.rowcount)

    def delivery_count(self) -> int:
        """How many deliveries are remembered."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(WEBHOOK_DELIVERIES)).scalar() or 0)
