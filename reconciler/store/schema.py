"""The tables of the store (SQLAlchemy Core metadata) — the current schema, which the migrations build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsfleet.reconciler.store.errors import PermanentStoreError

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


_V3_OBSERVED_COLUMNS: Final = (
    ("container_id", sa.String(128)),
    ("spec_hash", sa.String(64)),
    ("files_hash", sa.String(64)),
    ("exit_code", sa.Integer()),
    ("last_log_line", sa.Text()),
    ("fps", sa.JSON()),
    ("started_at", sa.DateTime(timezone=True)),
)


def _define_v3(md: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """The live loop (Alembic revision 0002): what each node's agent announces (``node_status``; kept apart from the
    ``nodes`` inventory, which only revisions write), the coordinator's sync state (``sync_state``: the pending
    plan of manual sync), and what agents report per instance beyond v1's ``observed`` columns."""
    status = sa.Table(
        "node_status",
        md,
        sa.Column("node", sa.String(63), primary_key=True),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_seconds", sa.Float, nullable=False),
        sa.Column("hostname", sa.String(255)),
        sa.Column("machine_id", sa.String(64)),
        sa.Column("addresses", sa.JSON, nullable=False),
        sa.Column("gpus", sa.JSON, nullable=False),
        sa.Column("capacity", sa.Integer),
        sa.Column("agent_version", sa.String(64)),
        sa.Column("docker_version", sa.String(64)),
        sa.Column("nvidia_runtime", sa.Boolean, nullable=False),
        sa.Column("observed_generation", sa.Integer),
        sa.Column("observed_config_hash", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("reported_at", sa.DateTime(timezone=True)),
    )
    sync = sa.Table(
        "sync_state",
        md,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    observed = md.tables["observed"]
    for name, type_ in _V3_OBSERVED_COLUMNS:
        observed.append_column(sa.Column(name, type_))
    return status, sync


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


def create_live_loop_tables(conn: Connection) -> None:
    """Alembic revision 0002 (the live loop): ``node_status``, ``sync_state`` and the new ``observed`` columns."""
    md = sa.MetaData()
    _define_v1(md)
    _define_v2(md)
    status, sync = _define_v3(md)
    status.create(conn, checkfirst=False)
    sync.create(conn, checkfirst=False)
    preparer = conn.dialect.identifier_preparer
    for name, type_ in _V3_OBSERVED_COLUMNS:
        ddl = type_.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE observed ADD COLUMN {preparer.quote(name)} {ddl}")


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
_define_v3(_META)
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
NODE_STATUS = _META.tables["node_status"]
SYNC_STATE = _META.tables["sync_state"]


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
