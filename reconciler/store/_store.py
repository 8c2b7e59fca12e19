"""The coordinator's store: revisions, inventory, per-node configs, outbox (SQLAlchemy 2 Core).

An adapter: the only module that imports ``sqlalchemy``. It stores what the pure core computed (plans, node
configs, hashes are passed in) and never calls a clock (callers pass ``now``). SQLite is the default
(``./.dsfleet/state.db``); PostgreSQL works with the same code and another URL
(``postgresql+psycopg://user@host/db``).

Secrets never get here: camera rows carry a credentials-free URL and a ``secret_ref``; a URL with user-info is
refused before anything is written.

Schema changes are versioned migrations (:data:`MIGRATIONS`, plain Core DDL), applied in order, one
transaction each, recorded in ``schema_version``. Opening an older database upgrades it; a newer one is
an error. ``readonly=True`` never creates or migrates anything: a missing SQLite file reads as an empty
store, and an older SQLite file is read through an upgraded in-memory copy.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, RowMapping, make_url
from sqlalchemy.pool import StaticPool

from schemas.errors import DsfleetError, PermanentError, TemporaryError
from schemas.hashing import canonical_json
from schemas.placeholders import url_has_credentials

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SOURCES",
    "AppliedRevision",
    "CameraRow",
    "Encoder",
    "InstanceRow",
    "Inventory",
    "LegacyAgent",
    "LegacyCamera",
    "LegacyDsInstance",
    "Migration",
    "NewRevision",
    "NodeChange",
    "NodeRow",
    "OutboxRow",
    "PermanentStoreError",
    "RevisionRecord",
    "Store",
    "StoreError",
    "StoredInventory",
    "StoredNodeConfig",
    "TemporaryStoreError",
    "default_url",
]

SOURCES: Final = frozenset({"watch", "cli", "api", "webhook"})
NOT_ASSIGNED: Final = "Not assigned"
BUSY_TIMEOUT_MS: Final = 5000
_WRITE: Final = "dsfleet_write"
_PG_MIGRATION_LOCK: Final = 0x64736663  # "dsfc": serializes concurrent migrations on PostgreSQL


# --------------------------------------------------------------------------------------------------- errors


class StoreError(DsfleetError):
    """A store operation failed; the subclass says whether retrying may help."""


class TemporaryStoreError(StoreError, TemporaryError):
    """Database locked or busy, connection lost or refused, serialization failure: retry later."""


class PermanentStoreError(StoreError, PermanentError):
    """Schema too new, not a dsfleet database, constraint violated, bad URL: retrying will not help."""


_TEMPORARY_SQLSTATE_PREFIXES: Final = ("08", "40", "53", "57P")


def _translate(err: Exception) -> StoreError:
    """Map a SQLAlchemy/driver exception to a StoreError without echoing SQL parameters."""
    orig = getattr(err, "orig", None) or err
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    text = message.lower()
    temporary = False
    if (
        (isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated)
        or isinstance(err, sa_exc.TimeoutError | sa_exc.DisconnectionError)
        or "locked" in text
        or "busy" in text
    ):
        temporary = True
    else:
        sqlstate = getattr(orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_TEMPORARY_SQLSTATE_PREFIXES):
            temporary = True
        elif isinstance(err, sa_exc.OperationalError | sa_exc.InterfaceError) and not isinstance(
            orig, sqlite3.Error
        ):
            temporary = True  # server backends: connection refused, server gone, too many clients
    cls = TemporaryStoreError if temporary else PermanentStoreError
    return cls(f"store: {type(orig).__name__}: {message}")


# --------------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class NewRevision:
    """A revision about to be stored. ``created_at`` must be timezone-aware (stored as UTC)."""

    source: str
    created_at: datetime
    manifests_hash: str
    git_commit: str | None = None
    git_author: str | None = None
    git_message: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"revision source must be one of {sorted(SOURCES)}")
        _to_utc(self.created_at)


@dataclass(frozen=True)
class NodeChange:
    """One node whose config hash changed. ``payload=None`` (and ``config_hash=None``) deletes the node."""

    node: str
    config_hash: str | None
    payload: Mapping[str, Any] | None

    def __post_init__(self) -> None:
        if (self.payload is None) != (self.config_hash is None):
            raise ValueError(f"node {self.node}: config_hash and payload must both be set or both be None")


@dataclass(frozen=True)
class NodeRow:
    name: str
    hostname: str | None = None
    node_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    capacity: int | None = None
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class CameraRow:
    name: str
    camera_id: str
    url: str
    secret_ref: str | None = None
    encoding: str | None = None
    type: str | None = None
    width: int | None = None
    height: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    instance: str | None = None


@dataclass(frozen=True)
class InstanceRow:
    name: str
    node: str | None = None
    gpu: int = 0
    image: str | None = None
    layout: str = "ccm"
    app_type: str | None = None
    profile: str | None = None
    paused: bool = False
    camera_count: int = 0
    spec_hash: str | None = None
    files_hash: str | None = None
    config_hash: str | None = None


@dataclass(frozen=True)
class Inventory:
    """The desired nodes, cameras and instances of a revision (rows as dataclasses or plain mappings)."""

    nodes: Sequence[NodeRow | Mapping[str, Any]] = ()
    cameras: Sequence[CameraRow | Mapping[str, Any]] = ()
    instances: Sequence[InstanceRow | Mapping[str, Any]] = ()


@dataclass(frozen=True)
class StoredNodeConfig:
    node: str
    generation: int
    config_hash: str
    payload: dict[str, Any]
    revision_id: int


@dataclass(frozen=True)
class AppliedRevision:
    revision_id: int
    generations: Mapping[str, int]
    outbox_ids: tuple[int, ...]


@dataclass(frozen=True)
class RevisionRecord:
    id: int
    created_at: datetime
    source: str
    git_commit: str | None
    git_author: str | None
    git_message: str | None
    manifests_hash: str
    accepted: bool
    errors: tuple[dict[str, Any], ...]
    nodes_changed: int


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    value: bytes | None
    headers: dict[str, str]
    created_at: datetime
    published_at: datetime | None
    attempts: int


@dataclass(frozen=True)
class LegacyCamera:
    """A camera as the older system showed it; never a user name or password."""

    name: str
    camera_id: str
    ip_address: str | None
    encode_type: str | None
    type: str | None
    width: int | None
    height: int | None
    instance_name: str | None
    agent_name: str | None


@dataclass(frozen=True)
class LegacyAgent:
    agent_name: str
    ip_address: str | None
    hostname: str | None
    node_id: str | None
    connected: bool


@dataclass(frozen=True)
class LegacyDsInstance:
    instance_name: str
    agent_name: str
    cameras: tuple[str, ...]
    app_type: str


Encoder = Callable[[str, int, dict[str, Any] | None], tuple[str, str, bytes | str | None, Mapping[str, str]]]
"""``encode(node, generation, payload)`` → ``(topic, key, value, headers)``; ``value=None`` is a tombstone."""


# --------------------------------------------------------------------------------------------------- schema


def _define_v1(md: sa.MetaData) -> None:
    """Schema version 1. Frozen: when a later migration alters one of these tables, copy this definition
    into that migration's history first, then change the current one."""
    sa.Table(
        "revisions",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_author", sa.Text),
        sa.Column("git_message", sa.Text),
        sa.Column("manifests_hash", sa.String(64), nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("nodes_changed", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "nodes",
        md,
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("node_id", sa.String(64)),
        sa.Column("hostname", sa.String(255)),
        sa.Column("ip", sa.String(64)),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("capacity", sa.Integer),
        sa.Column("gpus", sa.JSON, nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True)),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
    )
    sa.Table(
        "instances",
        md,
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("node", sa.String(63), sa.ForeignKey("nodes.name")),
        sa.Column("gpu", sa.Integer, nullable=False),
        sa.Column("image", sa.Text),
        sa.Column("layout", sa.String(32), nullable=False),
        sa.Column("app_type", sa.String(32)),
        sa.Column("profile", sa.String(63)),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("camera_count", sa.Integer, nullable=False),
        sa.Column("spec_hash", sa.String(64)),
        sa.Column("files_hash", sa.String(64)),
        sa.Column("config_hash", sa.String(64)),
    )
    sa.Table(
        "cameras",
        md,
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("camera_id", sa.String(255), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret_ref", sa.String(63)),
        sa.Column("encoding", sa.String(16)),
        sa.Column("type", sa.String(16)),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("instance", sa.String(63), sa.ForeignKey("instances.name")),
    )
    sa.Table(
        "node_configs",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(63), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("config_hash", sa.String(64)),
        sa.Column("payload", sa.Text),
        sa.Column("revision_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.UniqueConstraint("node", "generation", name="uq_node_configs_node_generation"),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "outbox",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "observed",
        md,
        sa.Column("node", sa.String(63), primary_key=True),
        sa.Column("instance", sa.String(63), primary_key=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("generation", sa.Integer),
        sa.Column("config_hash", sa.String(64)),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("drift", sa.JSON, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node", sa.String(63)),
        sa.Column("instance", sa.String(63)),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )


def _define_v2(md: sa.MetaData) -> tuple[sa.Table, sa.Index]:
    """Schema version 2: a per-node generation counter that survives deletion, and the outbox index."""
    counters = sa.Table(
        "node_generations",
        md,
        sa.Column("node", sa.String(63), primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    pending = sa.Index("ix_outbox_pending", md.tables["outbox"].c.published_at, md.tables["outbox"].c.id)
    return counters, pending


def _schema_version_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "schema_version",
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.Text, nullable=False),
    )


def _migrate_1(conn: Connection) -> None:
    md = sa.MetaData()
    _define_v1(md)
    md.create_all(conn, checkfirst=False)


def _migrate_2(conn: Connection) -> None:
    md = sa.MetaData()
    _define_v1(md)
    counters, pending = _define_v2(md)
    counters.create(conn, checkfirst=False)
    pending.create(conn, checkfirst=False)
    configs = md.tables["node_configs"]
    conn.execute(
        counters.insert().from_select(
            ["node", "generation"],
            sa.select(configs.c.node, sa.func.max(configs.c.generation)).group_by(configs.c.node),
        )
    )


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "revisions, nodes, cameras, instances, node_configs, outbox, observed, events", _migrate_1),
    Migration(2, "node_generations counter (backfilled from node_configs), outbox pending index", _migrate_2),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

_META = sa.MetaData()
_define_v1(_META)
_define_v2(_META)
_SCHEMA_VERSION_T = _schema_version_table(_META)
REVISIONS = _META.tables["revisions"]
NODES = _META.tables["nodes"]
CAMERAS = _META.tables["cameras"]
INSTANCES = _META.tables["instances"]
NODE_CONFIGS = _META.tables["node_configs"]
NODE_GENERATIONS = _META.tables["node_generations"]
OUTBOX = _META.tables["outbox"]
OBSERVED = _META.tables["observed"]
EVENTS = _META.tables["events"]


# --------------------------------------------------------------------------------------------------- helpers


def default_url(state_dir: str | Path = ".dsfleet") -> str:
    """``sqlite:///./.dsfleet/state.db`` for the default state dir; creates nothing."""
    path = Path(state_dir) / "state.db"
    if path.is_absolute():
        return f"sqlite:///{path.as_posix()}"
    return f"sqlite:///./{path.as_posix()}"


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps passed to the store must be timezone-aware")
    return value.astimezone(UTC)


def _from_db(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _from_db_required(value: datetime) -> datetime:
    result = _from_db(value)
    assert result is not None
    return result


_T = TypeVar("_T")


def _coerce(cls: type[_T], row: _T | Mapping[str, Any]) -> _T:
    if isinstance(row, cls):
        return row
    if isinstance(row, Mapping):
        return cls(**row)
    raise TypeError(f"expected {cls.__name__} or a mapping, got {type(row).__name__}")


def _url_host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


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


def _has_foreign_tables(conn: Connection) -> list[str]:
    names = [
        n for n in sa.inspect(conn).get_table_names() if n != "schema_version" and not n.startswith("sqlite_")
    ]
    return sorted(names)


def _read_version(conn: Connection) -> int | None:
    if not sa.inspect(conn).has_table("schema_version"):
        return None
    value = conn.execute(sa.select(sa.func.max(_SCHEMA_VERSION_T.c.version))).scalar()
    return int(value) if value is not None else 0


def _newer_error(version: int, where: str) -> PermanentStoreError:
    return PermanentStoreError(
        f"{where}: database schema version {version} is newer than this dsfleet supports "
        f"({SCHEMA_VERSION}); upgrade dsfleet"
    )


# --------------------------------------------------------------------------------------------------- store


class Store:
    """The coordinator's database. Create with :meth:`open`; close with :meth:`close` (or ``with``)."""

    def __init__(
        self, engine: Engine, *, readonly: bool, where: str, empty: bool = False, path: Path | None = None
    ) -> None:
        self._engine = engine
        self._readonly = readonly
        self._where = where
        self._empty = empty
        self._path = path

    def coordinator_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by the running coordinator; a second one on the same store gets a PermanentError."""
        from reconciler.store.locks import coordinator_lock

        return coordinator_lock(self._engine, self._path, self._where)

    # ---- opening, migrating

    @classmethod
    def open(cls, url: str | None = None, *, readonly: bool = False, migrate: bool = True) -> Store:
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
    def _open_sqlite(cls, url: URL, where: str, *, readonly: bool) -> Store:
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
    def _open_server(cls, url: URL, where: str, *, readonly: bool) -> Store:
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {}
        if readonly and url.get_backend_name() == "postgresql":
            connect_args["options"] = "-c default_transaction_read_only=on"
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        return cls(engine, readonly=readonly, where=where)

    @classmethod
    def _empty_readonly(cls, where: str) -> Store:
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

    def __enter__(self) -> Store:
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

    # ---- revisions

    def apply_revision(
        self,
        rev: NewRevision,
        changes: Sequence[NodeChange],
        inventory: Inventory | None,
        encode: Encoder,
        *,
        inventory_base: tuple[int, Inventory] | None = None,
    ) -> AppliedRevision:
        """Store an accepted revision, its node config changes, their outbox messages and the inventory.

        One transaction: if anything fails (``encode`` raising included) nothing is stored. Each changed node
        gets its next generation (1, 2, 3, …; never reused, also after the node was deleted).
        ``inventory=None`` leaves the inventory tables as they are. ``inventory_base`` = (revision id, the
        inventory that revision stored), from a caller that keeps it (the coordinator): when that revision is
        still the last accepted one, only the rows that differ from it are written, without reading the tables.
        """
        seen: set[str] = set()
        for change in changes:
            if change.node in seen:
                raise ValueError(f"node {change.node} changed twice in one revision")
            seen.add(change.node)
        rows = StoredInventory.of(inventory) if inventory is not None else None
        created_at = _to_utc(rev.created_at)
        generations: dict[str, int] = {}
        outbox_ids: list[int] = []
        with self._write() as conn:
            revision_id = self._insert_revision(conn, rev, accepted=True, errors=[], changed=len(changes))
            for change in changes:
                generation = self._next_generation(conn, change.node)
                generations[change.node] = generation
                payload = dict(change.payload) if change.payload is not None else None
                conn.execute(
                    NODE_CONFIGS.insert().values(
                        node=change.node,
                        generation=generation,
                        config_hash=change.config_hash,
                        payload=canonical_json(payload) if payload is not None else None,
                        revision_id=revision_id,
                        deleted=payload is None,
                    )
                )
                topic, key, value, headers = encode(change.node, generation, payload)
                if isinstance(value, str):
                    value = value.encode("utf-8")
                result = conn.execute(
                    OUTBOX.insert().values(
                        topic=topic,
                        key=key,
                        value=value,
                        headers={str(k): str(v) for k, v in headers.items()},
                        created_at=created_at,
                        published_at=None,
                        attempts=0,
                    )
                )
                outbox_ids.append(_inserted_id(result))
            if rows is not None:
                base = None
                if inventory_base is not None:
                    last = conn.execute(
                        sa.select(sa.func.max(REVISIONS.c.id)).where(
                            REVISIONS.c.accepted.is_(True), REVISIONS.c.id < revision_id
                        )
                    ).scalar()
                    if last == inventory_base[0]:
                        base = StoredInventory.of(inventory_base[1])
                self._replace_inventory(conn, rows, base)
        return AppliedRevision(revision_id, generations, tuple(outbox_ids))

    def record_rejected(self, rev: NewRevision, errors: Sequence[Mapping[str, Any]]) -> int:
        """Store a rejected revision with its findings (JSON-ready dicts); nothing else changes."""
        errors_json = [dict(e) for e in errors]
        json.dumps(errors_json)  # fail before the transaction when a finding is not JSON-ready
        with self._write() as conn:
            return self._insert_revision(conn, rev, accepted=False, errors=errors_json, changed=0)

    @staticmethod
    def _insert_revision(
        conn: Connection, rev: NewRevision, *, accepted: bool, errors: list[dict[str, Any]], changed: int
    ) -> int:
        result = conn.execute(
            REVISIONS.insert().values(
                created_at=_to_utc(rev.created_at),
                source=rev.source,
                git_commit=rev.git_commit,
                git_author=rev.git_author,
                git_message=rev.git_message,
                manifests_hash=rev.manifests_hash,
                accepted=accepted,
                errors=errors,
                nodes_changed=changed,
            )
        )
        return _inserted_id(result)

    @staticmethod
    def _next_generation(conn: Connection, node: str) -> int:
        current = conn.execute(
            sa.select(NODE_GENERATIONS.c.generation).where(NODE_GENERATIONS.c.node == node).with_for_update()
        ).scalar()
        if current is None:
            conn.execute(NODE_GENERATIONS.insert().values(node=node, generation=1))
            return 1
        generation = int(current) + 1
        conn.execute(
            NODE_GENERATIONS.update().where(NODE_GENERATIONS.c.node == node).values(generation=generation)
        )
        return generation

    @staticmethod
    def _sync_table(
        conn: Connection,
        table: sa.Table,
        desired: dict[str, dict[str, Any]],
        *,
        soft_delete: bool = False,
        insert_defaults: Mapping[str, Any] | None = None,
        defer_deletes: bool = False,
        current: dict[str, dict[str, Any]] | None = None,
    ) -> list[str]:
        """Make ``table`` (keyed by ``name``) hold ``desired``, writing only the rows that differ.

        With ``defer_deletes`` the rows to delete are returned instead (rows of other tables may still refer to
        them); otherwise an empty list."""
        columns = [table.c[c] for c in next(iter(desired.values()), {})] if desired else []
        if current is None and columns:
            current = {}
            for row in conn.execute(sa.select(table.c.name, *columns)).mappings():
                current[row["name"]] = {c.name: row[c.name] for c in columns}
        elif current is None:
            current = {name: {} for name in conn.execute(sa.select(table.c.name)).scalars()}
        defaults = dict(insert_defaults or {})
        inserts = [
            {"name": name, **defaults, **values} for name, values in desired.items() if name not in current
        ]
        updates = [
            (name, values) for name, values in desired.items() if name in current and current[name] != values
        ]
        gone = [name for name in current if name not in desired]
        if gone and not defer_deletes:
            if soft_delete:
                conn.execute(
                    table.update()
                    .where(table.c.name.in_(gone), table.c.deleted.is_(False))
                    .values(deleted=True)
                )
            else:
                conn.execute(table.delete().where(table.c.name.in_(gone)))
        if inserts:
            conn.execute(table.insert(), inserts)
        for name, values in updates:
            conn.execute(table.update().where(table.c.name == name).values(**values))
        return gone if defer_deletes else []

    @staticmethod
    def _inventory_tables(rows: StoredInventory) -> dict[str, dict[str, dict[str, Any]]]:
        """Inventory rows as the columns each table stores, by row name."""
        return {
            "nodes": {
                n.name: {
                    "node_id": n.node_id,
                    "hostname": n.hostname or n.name,
                    "labels": dict(n.labels),
                    "capacity": n.capacity,
                    "gpus": list(n.gpus),
                    "deleted": False,
                }
                for n in rows.nodes
            },
            "instances": {
                i.name: {
                    "node": i.node,
                    "gpu": i.gpu,
                    "image": i.image,
                    "layout": i.layout,
                    "app_type": i.app_type,
                    "profile": i.profile,
                    "paused": i.paused,
                    "camera_count": i.camera_count,
                    "spec_hash": i.spec_hash,
                    "files_hash": i.files_hash,
                    "config_hash": i.config_hash,
                }
                for i in rows.instances
            },
            "cameras": {
                c.name: {
                    "camera_id": c.camera_id,
                    "url": c.url,
                    "secret_ref": c.secret_ref,
                    "encoding": c.encoding,
                    "type": c.type,
                    "width": c.width,
                    "height": c.height,
                    "labels": dict(c.labels),
                    "instance": c.instance,
                }
                for c in rows.cameras
            },
        }

    @classmethod
    def _replace_inventory(
        cls, conn: Connection, rows: StoredInventory, base: StoredInventory | None = None
    ) -> None:
        want = cls._inventory_tables(rows)
        have = cls._inventory_tables(base) if base is not None else None
        cls._sync_table(  # always read: soft-deleted nodes stay in the table, unlike in any inventory
            conn,
            NODES,
            want["nodes"],
            soft_delete=True,
            insert_defaults={"online": False},
        )
        # cameras refer to instances: add instances first, drop the old ones only after the cameras moved
        stale_instances = cls._sync_table(
            conn,
            INSTANCES,
            want["instances"],
            current=have["instances"] if have else None,
            defer_deletes=True,
        )
        cls._sync_table(conn, CAMERAS, want["cameras"], current=have["cameras"] if have else None)
        if stale_instances:
            conn.execute(INSTANCES.delete().where(INSTANCES.c.name.in_(stale_instances)))

    def revisions(self, limit: int = 50) -> list[RevisionRecord]:
        """The newest ``limit`` revisions, newest first."""
        with self._read() as conn:
            result = conn.execute(sa.select(REVISIONS).order_by(REVISIONS.c.id.desc()).limit(limit))
            return [_revision_record(r) for r in result.mappings()]

    def revision(self, revision_id: int) -> RevisionRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(REVISIONS).where(REVISIONS.c.id == revision_id)).mappings().first()
            return _revision_record(row) if row is not None else None

    def last_accepted_revision(self) -> RevisionRecord | None:
        with self._read() as conn:
            row = (
                conn.execute(
                    sa.select(REVISIONS)
                    .where(REVISIONS.c.accepted.is_(True))
                    .order_by(REVISIONS.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            return _revision_record(row) if row is not None else None

    # ---- node configs

    def latest_node_configs(self) -> dict[str, StoredNodeConfig]:
        """The last config of each node whose last change was not a deletion (what ``diff`` compares with)."""
        last = (
            sa.select(NODE_CONFIGS.c.node, sa.func.max(NODE_CONFIGS.c.generation).label("generation"))
            .group_by(NODE_CONFIGS.c.node)
            .subquery()
        )
        query = (
            sa.select(NODE_CONFIGS)
            .join(
                last,
                sa.and_(NODE_CONFIGS.c.node == last.c.node, NODE_CONFIGS.c.generation == last.c.generation),
            )
            .where(NODE_CONFIGS.c.deleted.is_(False))
            .order_by(NODE_CONFIGS.c.node)
        )
        with self._read() as conn:
            out: dict[str, StoredNodeConfig] = {}
            for row in conn.execute(query).mappings():
                out[row["node"]] = StoredNodeConfig(
                    node=row["node"],
                    generation=int(row["generation"]),
                    config_hash=str(row["config_hash"]),
                    payload=json.loads(row["payload"]),
                    revision_id=int(row["revision_id"]),
                )
            return out

    def node_generation(self, node: str) -> int:
        """The last generation assigned to ``node`` (0 if none yet), deletions included."""
        with self._read() as conn:
            value = conn.execute(
                sa.select(NODE_GENERATIONS.c.generation).where(NODE_GENERATIONS.c.node == node)
            ).scalar()
            return int(value) if value is not None else 0

    # ---- outbox

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

    def record_publish_attempt(self, ids: Sequence[int]) -> None:
        """Count a failed publish attempt for these outbox rows (for backoff and metrics)."""
        if not ids:
            return
        with self._write() as conn:
            conn.execute(
                OUTBOX.update().where(OUTBOX.c.id.in_(list(ids))).values(attempts=OUTBOX.c.attempts + 1)
            )

    # ---- inventory

    def inventory(self) -> StoredInventory:
        """The current (not deleted) nodes, cameras and instances, sorted by name."""
        with self._read() as conn:
            nodes = [
                NodeRow(
                    name=r["name"],
                    hostname=r["hostname"],
                    node_id=r["node_id"],
                    labels=dict(r["labels"] or {}),
                    capacity=r["capacity"],
                    gpus=tuple(r["gpus"] or ()),
                )
                for r in conn.execute(
                    sa.select(NODES).where(NODES.c.deleted.is_(False)).order_by(NODES.c.name)
                ).mappings()
            ]
            cameras = [
                CameraRow(
                    name=r["name"],
                    camera_id=r["camera_id"],
                    url=r["url"],
                    secret_ref=r["secret_ref"],
                    encoding=r["encoding"],
                    type=r["type"],
                    width=r["width"],
                    height=r["height"],
                    labels=dict(r["labels"] or {}),
                    instance=r["instance"],
                )
                for r in conn.execute(sa.select(CAMERAS).order_by(CAMERAS.c.name)).mappings()
            ]
            instances = [
                InstanceRow(**{c: r[c] for c in _INSTANCE_FIELDS})
                for r in conn.execute(sa.select(INSTANCES).order_by(INSTANCES.c.name)).mappings()
            ]
        return StoredInventory(nodes=tuple(nodes), cameras=tuple(cameras), instances=tuple(instances))

    def record_node_seen(self, name: str, *, ip: str | None, seen_at: datetime, online: bool = True) -> bool:
        """Record a node's heartbeat (address, time, online); False when the node is unknown."""
        with self._write() as conn:
            result = conn.execute(
                NODES.update()
                .where(NODES.c.name == name)
                .values(ip=ip, last_seen=_to_utc(seen_at), online=online)
            )
            return bool(result.rowcount)

    # ---- the older system's read views (never a password)

    def legacy_cameras(self) -> list[LegacyCamera]:
        query = (
            sa.select(CAMERAS, INSTANCES.c.node)
            .select_from(CAMERAS.outerjoin(INSTANCES, CAMERAS.c.instance == INSTANCES.c.name))
            .order_by(CAMERAS.c.name)
        )
        with self._read() as conn:
            return [
                LegacyCamera(
                    name=r["name"],
                    camera_id=r["camera_id"],
                    ip_address=_url_host(r["url"]),
                    encode_type=r["encoding"],
                    type=r["type"],
                    width=r["width"],
                    height=r["height"],
                    instance_name=r["instance"],
                    agent_name=r["node"],
                )
                for r in conn.execute(query).mappings()
            ]

    def legacy_agents(self) -> list[LegacyAgent]:
        with self._read() as conn:
            return [
                LegacyAgent(
                    agent_name=r["name"],
                    ip_address=r["ip"],
                    hostname=r["hostname"],
                    node_id=r["node_id"],
                    connected=bool(r["online"]),
                )
                for r in conn.execute(
                    sa.select(NODES).where(NODES.c.deleted.is_(False)).order_by(NODES.c.name)
                ).mappings()
            ]

    def legacy_ds_instances(self) -> list[LegacyDsInstance]:
        with self._read() as conn:
            members: dict[str, list[str]] = {}
            for name, instance in conn.execute(
                sa.select(CAMERAS.c.name, CAMERAS.c.instance)
                .where(CAMERAS.c.instance.is_not(None))
                .order_by(CAMERAS.c.name)
            ):
                members.setdefault(instance, []).append(name)
            return [
                LegacyDsInstance(
                    instance_name=r["name"],
                    agent_name=r["node"] or NOT_ASSIGNED,
                    cameras=tuple(members.get(r["name"], ())),
                    app_type=r["app_type"] or ("NORMAL" if r["layout"] == "ccm" else r["layout"]),
                )
                for r in conn.execute(sa.select(INSTANCES).order_by(INSTANCES.c.name)).mappings()
            ]


_INSTANCE_FIELDS: Final = (
    "name",
    "node",
    "gpu",
    "image",
    "layout",
    "app_type",
    "profile",
    "paused",
    "camera_count",
    "spec_hash",
    "files_hash",
    "config_hash",
)


@dataclass(frozen=True)
class StoredInventory:
    """Inventory rows as dataclasses (what :meth:`Store.inventory` returns)."""

    nodes: tuple[NodeRow, ...] = ()
    cameras: tuple[CameraRow, ...] = ()
    instances: tuple[InstanceRow, ...] = ()

    @classmethod
    def of(cls, inventory: Inventory) -> StoredInventory:
        """Coerce mapping rows to dataclasses; refuse a camera URL that carries credentials."""
        nodes = tuple(_coerce(NodeRow, r) for r in inventory.nodes)
        cameras = tuple(_coerce(CameraRow, r) for r in inventory.cameras)
        instances = tuple(_coerce(InstanceRow, r) for r in inventory.instances)
        for camera in cameras:
            if url_has_credentials(camera.url):
                raise PermanentStoreError(
                    f"camera {camera.name}: url carries credentials; the store keeps credentials-free URLs "
                    "only (use credentials.secretRef)"
                )
        return cls(nodes, cameras, instances)


def _inserted_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _revision_record(row: RowMapping) -> RevisionRecord:
    return RevisionRecord(
        id=int(row["id"]),
        created_at=_from_db_required(row["created_at"]),
        source=row["source"],
        git_commit=row["git_commit"],
        git_author=row["git_author"],
        git_message=row["git_message"],
        manifests_hash=row["manifests_hash"],
        accepted=bool(row["accepted"]),
        errors=tuple(dict(e) for e in (row["errors"] or ())),
        nodes_changed=int(row["nodes_changed"]),
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
