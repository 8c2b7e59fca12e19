"""Opening a store: URL → engine (SQLite file, read-only copy, PostgreSQL), migrations, transactions.

:class:`StoreBase` holds the engine and the transaction helpers the concern mixins (revisions, inventory, outbox,
observed state, the older system's views) build on; :class:`reconciler.store.Store` composes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.pool import StaticPool

from reconciler.store.errors import PermanentStoreError, _translate
from reconciler.store.schema import (
    _SCHEMA_VERSION_T,
    MIGRATIONS,
    SCHEMA_VERSION,
    _has_foreign_tables,
    _newer_error,
    _read_version,
)

BUSY_TIMEOUT_MS: Final = 5000
_WRITE: Final = "dsfleet_write"
_PG_MIGRATION_LOCK: Final = 0x64736663  # "dsfc": serializes concurrent migrations on PostgreSQL


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

    def coordinator_lock(self) -> AbstractContextManager[None]:
        """Held by the running coordinator; a second one on the same store gets a PermanentError."""
        from reconciler.store.locks import coordinator_lock

        return coordinator_lock(self._engine, self._path, self._where)

    # ---- opening, migrating

    @classmethod
    def open(cls, url: str | None = None, *, readonly: bool = False, migrate: bool = True) -> Self:
        """Open the store at ``url`` (default :func:`default_url`).

        Writable: creates the SQLite file's directory and migrates to :data:`SCHEMA_VERSION` (unless
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
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        return cls(engine, readonly=readonly, where=where)

    @classmethod
    def _empty_readonly(cls, where: str) -> Self:
        engine = _memory_engine()
        _run_migrations(engine, SCHEMA_VERSION, where)
        return cls(engine, readonly=True, where=where, empty=True)

    def _prepare(self, *, migrate: bool) -> None:
        with self._read() as conn:
            version = _read_version(conn)
            foreign = _has_foreign_tables(conn) if version is None else []
        if version is not None and version > SCHEMA_VERSION:
            raise _newer_error(version, self._where)
        if version is None and foreign:
            raise PermanentStoreError(
                f"{self._where}: not a dsfleet store (it has tables {', '.join(foreign[:5])} "
                "but no schema_version)"
            )
        if self._readonly:
            if version is None:
                self._swap_engine(_memory_engine(), empty=True)
                _run_migrations(self._engine, SCHEMA_VERSION, self._where)
            elif version < SCHEMA_VERSION:
                self._read_upgraded_copy(version)
            return
        if migrate and (version or 0) < SCHEMA_VERSION:
            self.migrate()

    def _read_upgraded_copy(self, version: int) -> None:
        if self._path is None:
            raise PermanentStoreError(
                f"{self._where}: database schema version {version} is older than this dsfleet "
                f"({SCHEMA_VERSION}); open it once for writing (e.g. `dsfleet apply`) to migrate it"
            )
        self._swap_engine(_memory_copy(self._path), empty=False)
        _run_migrations(self._engine, SCHEMA_VERSION, self._where)

    def _swap_engine(self, engine: Engine, *, empty: bool) -> None:
        self._engine.dispose()
        self._engine = engine
        self._empty = empty

    def migrate(self, *, target: int | None = None) -> int:
        """Apply the missing migrations up to ``target`` (default: all), one transaction each."""
        self._require_writable()
        return _run_migrations(self._engine, target or SCHEMA_VERSION, self._where)

    def schema_version(self) -> int | None:
        """The database's schema version; None for a database dsfleet never initialised."""
        with self._read() as conn:
            return _read_version(conn)

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
                    yield conn
        except sa_exc.SQLAlchemyError as err:
            raise _translate(err) from err

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except sa_exc.SQLAlchemyError as err:
            raise _translate(err) from err


def _inserted_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _run_migrations(engine: Engine, target: int, where: str) -> int:
    """Apply the missing migrations up to ``target``, each in its own transaction; returns the version."""
    if target > SCHEMA_VERSION or target < 1:
        raise ValueError(f"migration target must be between 1 and {SCHEMA_VERSION}")
    version = 0
    try:
        for migration in MIGRATIONS:
            if migration.version > target:
                break
            with engine.connect() as conn:
                conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
                    current = _read_version(conn)
                    if current is None:
                        foreign = _has_foreign_tables(conn)
                        if foreign:
                            raise PermanentStoreError(
                                f"{where}: not a dsfleet store (it has tables {', '.join(foreign[:5])} "
                                "but no schema_version)"
                            )
                        _SCHEMA_VERSION_T.create(conn, checkfirst=False)
                        current = 0
                    if current > SCHEMA_VERSION:
                        raise _newer_error(current, where)
                    version = current
                    if current >= migration.version:
                        continue
                    migration.apply(conn)
                    conn.execute(
                        _SCHEMA_VERSION_T.insert().values(
                            version=migration.version, description=migration.description
                        )
                    )
                    version = migration.version
    except sa_exc.SQLAlchemyError as err:
        raise _translate(err) from err
    return version
