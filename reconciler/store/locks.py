"""One coordinator per store: an exclusive lock held for the coordinator's lifetime.

SQLite: ``flock`` on ``<database>.coordinator.lock`` beside the file (released by the kernel when the process
dies, even by SIGKILL); the database's real path is used, so a symlink to the store file takes the same lock.
PostgreSQL: a session-level advisory lock on a connection kept open (released by the server when the process's
connection ends, SIGKILL included). In-memory stores are private to one process and need none. A second
coordinator gets a :class:`PermanentError` naming the store — or, as a **standby** (:class:`Standby`), waits for
the lock and takes over when the holder stops or dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dsfleet.schemas.errors import PermanentError

PG_COORDINATOR_LOCK = 0x647366_6C6F636B  # "dsf" "lock"


class StandbyStopped(PermanentError):
    """A standby was asked to stop before it got the lock."""


@dataclass(frozen=True)
class Standby:
    """Wait for the lock instead of failing: tried every ``poll`` seconds until ``stop`` is set;
    ``waiting(holder)`` is called once, when the lock is first found held (``holder``: who holds it, as known).
    ``hung()`` (PostgreSQL only): why the holder counts as hung (its heartbeat too old), or None; a hung holder's
    sessions are ended (``pg_terminate_backend``: it loses the lock and every transaction it had open) and the
    lock taken — its later writes are refused by the leadership fence, ``took_over(why, sessions)`` says so."""

    stop: threading.Event
    waiting: Callable[[str], None]
    poll: float = 0.5
    hung: Callable[[], str | None] | None = None
    took_over: Callable[[str, int], None] | None = None

    def wait(self, holder: str, first: bool) -> None:
        if first:
            self.waiting(holder)
        if self.stop.wait(self.poll):
            raise StandbyStopped("stopped on standby, before taking over")


@contextlib.contextmanager
def coordinator_lock(
    engine: Engine, path: Path | None, where: str, standby: Standby | None = None
) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            tries = 0
            while True:
                got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(PG_COORDINATOR_LOCK))).scalar()
                conn.commit()
                if got:
                    break
                if standby is None:
                    raise PermanentError(
                        f"{where}: another coordinator is running on this store (advisory lock held)"
                    )
                why = standby.hung() if standby.hung is not None else None
                if why is not None:
                    ended = _end_holder(conn)
                    if standby.took_over is not None:
                        standby.took_over(why, ended)
                    continue
                standby.wait("another coordinator (advisory lock held)", tries == 0)
                tries += 1
            try:
                yield
            finally:
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(PG_COORDINATOR_LOCK)))
                    conn.commit()
        return
    if path is None:
        yield
        return
    real = path.resolve()
    lock_path = real.with_name(real.name + ".coordinator.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        tries = 0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                if standby is None:
                    raise PermanentError(
                        f"{where}: another coordinator is running on this store (pid {holder} holds "
                        f"{lock_path.name})"
                    ) from None
            standby.wait(f"pid {holder} (holds {lock_path.name})", tries == 0)
            tries += 1
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _end_holder(conn: sa.Connection) -> int:
    """End every session of the process holding the coordinator lock of this database (its sessions share one
    ``application_name``: :data:`~dsfleet.reconciler.store.database.APPLICATION_NAME`-pid); how many ended."""
    holder = conn.execute(
        sa.text(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"hi": PG_COORDINATOR_LOCK >> 32, "lo": PG_COORDINATOR_LOCK & 0xFFFFFFFF},
    ).first()
    conn.commit()
    if holder is None:
        return 0
    pid, name = holder
    if name:
        query = sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        ended = sum(1 for (ok,) in conn.execute(query, {"name": name}) if ok)
    else:
        ended = 1 if conn.execute(sa.select(sa.func.pg_terminate_backend(pid))).scalar() else 0
    conn.commit()
    return ended
