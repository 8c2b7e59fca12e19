"""Opening a store: URL → engine (SQLite file, read-only copy, PostgreSQL), migrations, transactions.

:class:`StoreBase` holds the engine and the transaction helpers the concern mixins (revisions, inventory, outbox,
observed state, the older system's views) build on; :class:`dsfleet.reconciler.store.Store` composes them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.pool import StaticPool

from dsfleet.reconciler.store.errors import Deposed, PermanentStoreError, _translate
from dsfleet.reconciler.store.migrations import SchemaState, inspect_schema, upgrade
from dsfleet.reconciler.store.schema import SYNC_STATE

if TYPE_CHECKING:
    from dsfleet.reconciler.store.locks import Standby

APPLICATION_NAME: Final = "dsfleet"
LEADERSHIP: Final = "leadership"
"""The sync-state key of the coordinator leadership: ``{epoch, holder, since}`` of the latest claim."""
BUSY_TIMEOUT_MS: Final = 5000
_WRITE: Final = "dsfleet_write"
_PG_MIGRATION_LOCK: Final = 0x64736663  # "dsfc": serializes concurrent migrations on PostgreSQL
_SNAPSHOT: ContextVar[tuple[object, Connection] | None] = ContextVar("dsfleet_store_snapshot", default=None)
"""The store and connection of the read snapshot open in this thread or task (see :meth:`StoreBase._snapshot`)."""


# --------------------------------------------------------------------------------------------------- helpers


def default_url(state_dir: str | Path = ".dsfleet") -> str:
    """``sqlite:///./.dsfleet/state.db`` for the default state dir; creates nothing."""
    path = Path(state_dir) / "state.db"
    if path.is_absolute():
        return f"sqlite:///{path.as_posix()}"
    return f"sqlite:///./{path.as_posix()}"


def _install_sqlite_events(engine: Engine, *, wal: bool, query_only: bool) -> None:
    """Driver autocommit + our own BEGIN, so DDL is transactional and writers take the lock up front."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            if query_only:
                cursor.execute("PRAGMA query_only=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def _memory_engine(connection: sqlite3.Connection | None = None) -> Engine:
    if connection is None:
        engine = sa.create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        conn = connection
        engine = sa.create_engine("sqlite://", poolclass=StaticPool, creator=lambda: conn)
    _install_sqlite_events(engine, wal=False, query_only=False)
    return engine


def _sqlite_readonly_uri(path: Path) -> str:
    return f"file:{quote(str(path.resolve()), safe='/')}?mode=ro"


def _memory_copy(path: Path) -> Engine:
    """An in-memory copy of a SQLite file, read without writing to it (to upgrade it for reading only)."""
    try:
        source = sqlite3.connect(_sqlite_readonly_uri(path), uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            target = sqlite3.connect(":memory:", check_same_thread=False)
            source.backup(target)
        finally:
            source.close()
    except sqlite3.Error as err:
        raise _translate(err) from err
    return _memory_engine(target)


def _is_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or database.startswith("file::memory:")


class StoreBase:
    """The engine, how it was opened, and transactions. Create a store with :meth:`open`."""

    def __init__(
        self, engine: Engine, *, readonly: bool, where: str, empty: bool = False, path: Path | None = None
    ) -> None:
        self._engine = engine
        self._readonly = readonly
        self._where = where
        self._empty = empty
        self._path = path
        self._epoch: int | None = None
        """The leadership epoch this store's coordinator claimed (:meth:`claim_leadership`); None: no fence."""
        self.deposed: str | None = None
        """Set when a write found another coordinator's epoch: this one must stop (it no longer leads)."""

    def coordinator_lock(self, standby: Standby | None = None) -> AbstractContextManager[None]:
        """Held by the running coordinator; a second one on the same store gets a PermanentError, or with
        ``standby`` waits for it (:class:`~dsfleet.reconciler.store.locks.Standby`)."""
        from dsfleet.reconciler.store.locks import coordinator_lock

        return coordinator_lock(self._engine, self._path, self._where, standby)

    # ---- opening, migrating

    @classmethod
    def open(cls, url: str | None = None, *, readonly: bool = False, migrate: bool = True) -> Self:
        """Open the store at ``url`` (default :func:`default_url`).

        Writable: creates the SQLite file's directory and migrates to the head revision (unless
        ``migrate=False``). Read-only: never creates or migrates anything.
        """
        raw = url or default_url()
        try:
            parsed = make_url(raw)
        except sa_exc.ArgumentError as err:
            raise PermanentStoreError("store: invalid database URL") from err
        where = parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise PermanentStoreError(
                f"{where}: unsupported database; use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            )
        try:
            if parsed.get_backend_name() == "sqlite":
                store = cls._open_sqlite(parsed, where, readonly=readonly)
            else:
                store = cls._open_server(parsed, where, readonly=readonly)
        except sa_exc.SQLAlchemyError as err:
            raise _translate(err) from err
        except OSError as err:
            raise PermanentStoreError(f"{where}: cannot create the state directory: {err.strerror}") from err
        except ImportError as err:  # the URL names a driver that is not installed
            raise PermanentStoreError(f"{where}: database driver not installed ({err.name})") from err
        try:
            store._prepare(migrate=migrate)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def _open_sqlite(cls, url: URL, where: str, *, readonly: bool) -> Self:
        database = url.database
        if _is_memory(database):
            return cls(_memory_engine(), readonly=readonly, where=where)
        assert database is not None
        path = Path(database)
        if readonly:
            if not path.exists():
                return cls._empty_readonly(where)
            uri, _, query = _sqlite_readonly_uri(path).partition("?")
            engine = sa.create_engine(
                URL.create("sqlite", database=uri, query={query.split("=")[0]: "ro", "uri": "true"}),
                connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
            )
            _install_sqlite_events(engine, wal=False, query_only=True)
            return cls(engine, readonly=True, where=where, path=path)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        _install_sqlite_events(engine, wal=True, query_only=False)
        return cls(engine, readonly=False, where=where, path=path)

    @classmethod
    def _open_server(cls, url: URL, where: str, *, readonly: bool) -> Self:
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {}
        if readonly and url.get_backend_name() == "postgresql":
            connect_args["options"] = "-c default_transaction_read_only=on"
        elif url.get_backend_name() == "postgresql" and "application_name" not in url.query:
            # every session of this process is named after it: a standby that takes over from a hung coordinator
            # ends all of that one's sessions (its open transactions and the locks they hold), not only the lock's
            connect_args["application_name"] = f"{APPLICATION_NAME}-{os.getpid()}"
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        return cls(engine, readonly=readonly, where=where)

    @classmethod
    def _empty_readonly(cls, where: str) -> Self:
        engine = _memory_engine()
        _upgrade(engine, where)
        return cls(engine, readonly=True, where=where, empty=True)

    def _prepare(self, *, migrate: bool) -> None:
        """Refuse a store newer than this dsfleet or not dsfleet's; bring an older one to the head revision
        (writable), or read it through an upgraded in-memory copy (read-only). ``migrate=False``: open as is."""
        if not migrate:
            return
        state = self.schema_state()
        _refuse(state, self._where)
        if self._readonly:
            if state.status == "uninitialised":
                self._swap_engine(_memory_engine(), empty=True)
                _upgrade(self._engine, self._where)
            elif state.status != "current":
                self._read_upgraded_copy(state)
            return
        if state.status != "current":
            self.migrate()

    def _read_upgraded_copy(self, state: SchemaState) -> None:
        if self._path is None:
            raise PermanentStoreError(
                f"{self._where}: the store is at {state.describe()}; open it once for writing "
                "(`dsfleet db upgrade`) to migrate it"
            )
        self._swap_engine(_memory_copy(self._path), empty=False)
        _upgrade(self._engine, self._where)

    def _swap_engine(self, engine: Engine, *, empty: bool) -> None:
        self._engine.dispose()
        self._engine = engine
        self._empty = empty

    def migrate(self, *, target: str = "head") -> SchemaState:
        """Run the missing migrations up to ``target`` (default: the head revision) in one transaction; refuses
        a store newer than this dsfleet. Returns the state afterwards."""
        self._require_writable()
        return _upgrade(self._engine, self._where, target)

    def schema_state(self) -> SchemaState:
        """Where the database's schema stands (revision, head, pre-Alembic version); changes nothing."""
        with self._read() as conn:
            return inspect_schema(conn)

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def empty_fallback(self) -> bool:
        """True when a read-only open found no store and reads from an empty one in memory."""
        return self._empty

    @property
    def where(self) -> str:
        """The URL with any password masked, for messages."""
        return self._where

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- transactions

    def _require_writable(self) -> None:
        if self._readonly:
            raise PermanentStoreError(f"{self._where}: store is open read-only")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._require_writable()
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    if self._epoch is not None:
                        self._fence(conn, self._epoch)
                    yield conn
        except sa_exc.SQLAlchemyError as err:
            raise _translate(err) from err

    def _fence(self, conn: Connection, epoch: int) -> None:
        """Refuse the write (:class:`Deposed`) when another coordinator claimed the leadership since this one did.
        PostgreSQL: the leadership row is read FOR SHARE, so a takeover's claim waits for this transaction and this
        one for a claim under way: every write is ordered before or after a takeover, never across it."""
        query = sa.select(SYNC_STATE.c.value).where(SYNC_STATE.c.key == LEADERSHIP)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        value = conn.execute(query).scalar()
        current = value.get("epoch") if isinstance(value, dict) else None
        if current != epoch:
            holder = value.get("holder") if isinstance(value, dict) else None
            self.deposed = f"epoch {current} ({holder or 'unknown'}) took over from epoch {epoch}"
            raise Deposed(f"{self._where}: not the leader any more: {self.deposed}")

    def claim_leadership(self, holder: str, now: datetime) -> int:
        """Become the store's leader (call while holding the coordinator lock): the leadership epoch goes up by one
        and every later write of this store is fenced by it (:meth:`_fence`). Returns the new epoch."""
        self._require_writable()
        try:
            with self._engine.connect() as conn, conn.begin():
                query = sa.select(SYNC_STATE.c.value).where(SYNC_STATE.c.key == LEADERSHIP)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                value = conn.execute(query).scalar()
                epoch = int(value.get("epoch") or 0) + 1 if isinstance(value, dict) else 1
                claim = {"epoch": epoch, "holder": holder, "since": now.isoformat()}
                if (
                    value is None
                    and not conn.execute(
                        sa.select(SYNC_STATE.c.key).where(SYNC_STATE.c.key == LEADERSHIP)
                    ).first()
                ):
                    conn.execute(SYNC_STATE.insert().values(key=LEADERSHIP, value=claim, updated_at=now))
                else:
                    conn.execute(
                        SYNC_STATE.update()
                        .where(SYNC_STATE.c.key == LEADERSHIP)
                        .values(value=claim, updated_at=now)
                    )
        except sa_exc.SQLAlchemyError as err:
            raise _translate(err) from err
        self._epoch = epoch
        self.deposed = None
        return epoch

    def leadership(self) -> dict[str, Any] | None:
        """The latest leadership claim (``epoch``, ``holder``, ``since``); None: no coordinator claimed one yet."""
        with self._read() as conn:
            value = conn.execute(sa.select(SYNC_STATE.c.value).where(SYNC_STATE.c.key == LEADERSHIP)).scalar()
        return dict(value) if isinstance(value, dict) else None

    def writer_epoch(self) -> int:
        """The leadership epoch the AgentConfig records this store writes carry: the one this process claimed, else
        (``dsfleet apply``/``rollback`` without a coordinator) the store's current one; 0 when none was claimed."""
        if self._epoch is not None:
            return self._epoch
        claim = self.leadership() or {}
        epoch = claim.get("epoch")
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch > 0 else 0

    def still_leader(self) -> bool:
        """Whether this store's claim of the leadership still stands (True when it never claimed one): a read, for
        the publisher to check before it sends (a deposed coordinator resumed from a pause sends nothing)."""
        if self._epoch is None:
            return True
        with self._read() as conn:
            value = conn.execute(sa.select(SYNC_STATE.c.value).where(SYNC_STATE.c.key == LEADERSHIP)).scalar()
        current = value.get("epoch") if isinstance(value, dict) else None
        if current != self._epoch:
            holder = value.get("holder") if isinstance(value, dict) else None
            self.deposed = f"epoch {current} ({holder or 'unknown'}) took over from epoch {self._epoch}"
            return False
        return True

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction, or the snapshot this store has open in this thread or task."""
        joined = _SNAPSHOT.get()
        try:
            if joined is not None and joined[0] is self:
                yield joined[1]
                return
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except sa_exc.SQLAlchemyError as err:
            raise _translate(err) from err

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction for several reads: each :meth:`_read` of this store inside the block (in the same
        thread or task) joins it, so together they see one state of the database. SQLite keeps the snapshot of
        the transaction's first read until it ends; PostgreSQL does with REPEATABLE READ. Inside a snapshot of
        this store, another one joins it."""
        joined = _SNAPSHOT.get()
        if joined is not None:
            if joined[0] is not self:
                raise RuntimeError("a snapshot of another store is open in this thread")
            yield
            return
        try:
            with self._engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    token = _SNAPSHOT.set((self, conn))
                    try:
                        yield
                    finally:
                        _SNAPSHOT.reset(token)
        except sa_exc.SQLAlchemyError as err:
            raise _translate(err) from err


def _inserted_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _refuse(state: SchemaState, where: str) -> None:
    if state.status == "newer":
        raise PermanentStoreError(
            f"{where}: the store's schema is newer than this dsfleet: {state.describe()}"
        )
    if state.status == "foreign":
        raise PermanentStoreError(f"{where}: {state.describe()}")


def _upgrade(engine: Engine, where: str, target: str = "head") -> SchemaState:
    """Upgrade in one write transaction (serialized by an advisory lock on PostgreSQL)."""
    try:
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
                state = inspect_schema(conn)
                _refuse(state, where)
                if state.status != "current" or target != "head":
                    upgrade(conn, target)
                    state = inspect_schema(conn)
            return state
    except sa_exc.SQLAlchemyError as err:
        raise _translate(err) from err
