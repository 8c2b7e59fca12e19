"""One coordinator per store: an exclusive lock held for the coordinator's lifetime.

SQLite: ``flock`` on ``<database>.coordinator.lock`` beside the file (released by the kernel when the process
dies, even by SIGKILL); the database's real path is used, so a symlink to the store file takes the same lock.
PostgreSQL: a session-level advisory lock on a connection kept open. In-memory stores
are private to one process and need none. A second coordinator gets a :class:`PermanentError` naming the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dsfleet.schemas.errors import PermanentError

PG_COORDINATOR_LOCK = 0x647366_6C6F636B  # "dsf" "lock"


@contextlib.contextmanager
def coordinator_lock(engine: Engine, path: Path | None, where: str) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(PG_COORDINATOR_LOCK))).scalar()
            conn.commit()
            if not got:
                raise PermanentError(
                    f"{where}: another coordinator is running on this store (advisory lock held)"
                )
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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise PermanentError(
                f"{where}: another coordinator is running on this store (pid {holder} holds {lock_path.name})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
