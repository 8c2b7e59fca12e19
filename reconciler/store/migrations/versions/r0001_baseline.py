"""Baseline: the store of the release before Alembic (its schema versions 1 and 2), and its upgrade in place.

That release recorded its own migrations in ``schema_version``: version 1 created the tables, version 2 added the
``node_generations`` counter (backfilled from ``node_configs``) and the outbox's pending index. This revision
reads how far a store got (no ``schema_version`` table: an empty database, nothing done), runs only the steps it
is missing, records each one there as that release did, and then adds the row :data:`ALEMBIC_MARKER`: higher than
any version that release knows, so it refuses the upgraded store instead of writing to it.

The tables are written out as they were then; this revision must never change (stores in the field are stamped
with it).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dsfleet.reconciler.store.migrations import ALEMBIC_MARKER

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_VERSION_1 = "revisions, nodes, cameras, instances, node_configs, outbox, observed, events"
_VERSION_2 = "node_generations counter (backfilled from node_configs), outbox pending index"
_MARKER = "migrations are Alembic's now (table alembic_version)"

_schema_version = sa.table(
    "schema_version", sa.column("version", sa.Integer), sa.column("description", sa.Text)
)


def upgrade() -> None:
    done = _versions_done()
    if done < 1:
        _create_version_1()
        _record(1, _VERSION_1)
    if done < 2:
        _create_version_2()
        _record(2, _VERSION_2)
    _record(ALEMBIC_MARKER, _MARKER)


def downgrade() -> None:
    raise NotImplementedError("dsfleet migrations go forward only; restore a backup to go back")


def _versions_done() -> int:
    """The highest version in ``schema_version``; creates that table (0) when the database has none."""
    conn = op.get_bind()
    if not sa.inspect(conn).has_table("schema_version"):
        op.create_table(
            "schema_version",
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("description", sa.Text, nullable=False),
        )
        return 0
    value = conn.execute(sa.select(sa.func.max(_schema_version.c.version))).scalar()
    return int(value) if value is not None else 0


def _record(version: int, description: str) -> None:
    op.get_bind().execute(_schema_version.insert().values(version=version, description=description))


def _create_version_1() -> None:
    op.create_table(
        "revisions",
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
    op.create_table(
        "nodes",
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
    op.create_table(
        "outbox",
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
    op.create_table(
        "observed",
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
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node", sa.String(63)),
        sa.Column("instance", sa.String(63)),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "instances",
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
    op.create_table(
        "node_configs",
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
    op.create_table(
        "cameras",
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


def _create_version_2() -> None:
    counters = op.create_table(
        "node_generations",
        sa.Column("node", sa.String(63), primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "id"])
    configs = sa.table("node_configs", sa.column("node", sa.String), sa.column("generation", sa.Integer))
    op.get_bind().execute(
        counters.insert().from_select(
            ["node", "generation"],
            sa.select(configs.c.node, sa.func.max(configs.c.generation)).group_by(configs.c.node),
        )
    )
