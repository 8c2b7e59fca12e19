"""The fleet id and the coordinator's heartbeat.

The fleet id is a UUID made with the store (migration ``0003``): every AgentConfig carries it. The heartbeat is one
row the running coordinator rewrites every few seconds — who it is (host, pid, version, what it watches), when it
last wrote, whether it reaches its broker and since when, the AgentConfig records it saw that it did not write — so
that ``dsfleet status``, the API and ``dsfleet apply`` can tell a running coordinator from a dead one. Times come
from the caller.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from dsfleet.reconciler.store.database import StoreBase
from dsfleet.reconciler.store.errors import PermanentStoreError
from dsfleet.reconciler.store.schema import COORDINATOR, FLEET
from dsfleet.reconciler.store.values import _from_db, _from_db_required, _to_utc
from dsfleet.schemas.errors import PermanentError

__all__ = ["HEARTBEAT_ROW", "CoordinatorBeat", "CoordinatorMixin"]

HEARTBEAT_ROW: Final = 1


@dataclass(frozen=True)
class CoordinatorBeat:
    """One heartbeat of the coordinator (the ``coordinator`` row)."""

    host: str
    pid: int
    version: str
    manifests: str
    started_at: datetime
    seen_at: datetime
    interval_seconds: float
    sync: str | None = None
    stopped_at: datetime | None = None
    """Set by a clean stop; None while it runs (or after a crash: then ``seen_at`` grows old)."""
    broker: str | None = None
    """The bootstrap servers it uses; None: no broker configured."""
    broker_reachable: bool | None = None
    broker_since: datetime | None = None
    """Since when the broker has been reachable (or unreachable)."""
    broker_error: str | None = None
    foreign_configs: int = 0
    """AgentConfig records read back that this coordinator did not write (another fleet, or unknown to its store)."""
    last_foreign: str | None = None


def _beat_row(beat: CoordinatorBeat) -> dict[str, Any]:
    return {
        "host": beat.host[:255],
        "pid": beat.pid,
        "version": beat.version[:64],
        "manifests": beat.manifests,
        "sync": beat.sync,
        "started_at": _to_utc(beat.started_at),
        "seen_at": _to_utc(beat.seen_at),
        "stopped_at": _to_utc(beat.stopped_at) if beat.stopped_at else None,
        "interval_seconds": beat.interval_seconds,
        "broker": beat.broker[:255] if beat.broker else None,
        "broker_reachable": beat.broker_reachable,
        "broker_since": _to_utc(beat.broker_since) if beat.broker_since else None,
        "broker_error": beat.broker_error,
        "foreign_configs": beat.foreign_configs,
        "last_foreign": beat.last_foreign,
    }


def _beat(row: Any) -> CoordinatorBeat:
    return CoordinatorBeat(
        host=row["host"],
        pid=int(row["pid"]),
        version=row["version"],
        manifests=row["manifests"],
        sync=row["sync"],
        started_at=_from_db_required(row["started_at"]),
        seen_at=_from_db_required(row["seen_at"]),
        stopped_at=_from_db(row["stopped_at"]),
        interval_seconds=float(row["interval_seconds"]),
        broker=row["broker"],
        broker_reachable=row["broker_reachable"],
        broker_since=_from_db(row["broker_since"]),
        broker_error=row["broker_error"],
        foreign_configs=int(row["foreign_configs"] or 0),
        last_foreign=row["last_foreign"],
    )


class CoordinatorMixin(StoreBase):
    """The fleet id and the coordinator's heartbeat row."""

    _fleet: str | None = None

    def fleet_id(self) -> str | None:
        """The fleet's id (made with the store; a writable store that lost it gets a new one). None only for a
        read-only store without one."""
        if self._fleet is not None:
            return self._fleet
        with self._read() as conn:
            value = conn.execute(sa.select(FLEET.c.id).order_by(FLEET.c.created_at).limit(1)).scalar()
        if value is None and not self.readonly:
            from datetime import UTC

            with self._write() as conn:
                value = conn.execute(sa.select(FLEET.c.id).limit(1)).scalar()
                if value is None:
                    value = str(uuid.uuid4())
                    conn.execute(FLEET.insert().values(id=value, created_at=datetime.now(UTC)))
        self._fleet = str(value) if value is not None else None
        return self._fleet

    def write_heartbeat(self, beat: CoordinatorBeat) -> None:
        """Write (or replace) the coordinator's heartbeat row."""
        row = _beat_row(beat)
        with self._write() as conn:
            done = conn.execute(
                COORDINATOR.update().where(COORDINATOR.c.id == HEARTBEAT_ROW).values(**row)
            ).rowcount
            if not done:
                conn.execute(COORDINATOR.insert().values(id=HEARTBEAT_ROW, **row))

    def coordinator_heartbeat(self) -> CoordinatorBeat | None:
        """The last heartbeat a coordinator wrote (None: no coordinator of this release ever ran here)."""
        with self._read() as conn:
            row = (
                conn.execute(sa.select(COORDINATOR).where(COORDINATOR.c.id == HEARTBEAT_ROW))
                .mappings()
                .first()
            )
        return _beat(row) if row is not None else None

    def coordinator_lock_held(self) -> str | None:
        """Whether another process holds the coordinator lock of this store: what it says about itself (the pid,
        or ``"?"``), else None. Takes the lock for a moment when it is free."""
        try:
            lock = self.coordinator_lock()
            lock.__enter__()
        except PermanentError as exc:
            return str(exc)
        except (PermanentStoreError, OSError):
            return None
        with contextlib.suppress(Exception):
            lock.__exit__(None, None, None)
        return None
