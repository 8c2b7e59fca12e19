"""A loop you can trust: the fleet id (made here, one UUID per store), the coordinator's heartbeat, what agents
report beyond ``observed``'s columns (conditions, when FPS were printed) and beyond ``node_status``'s (the fleet an
agent is bound to, the configs it refused), and an index of events by kind (status counts the drift events).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    fleet = op.create_table(
        "fleet",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(fleet, [{"id": str(uuid.uuid4()), "created_at": datetime.now(UTC)}])
    op.create_table(
        "coordinator",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("manifests", sa.Text, nullable=False),
        sa.Column("sync", sa.String(16)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
        sa.Column("interval_seconds", sa.Float, nullable=False),
        sa.Column("broker", sa.String(255)),
        sa.Column("broker_reachable", sa.Boolean),
        sa.Column("broker_since", sa.DateTime(timezone=True)),
        sa.Column("broker_error", sa.Text),
        sa.Column("foreign_configs", sa.Integer, nullable=False),
        sa.Column("last_foreign", sa.Text),
    )
    op.add_column("observed", sa.Column("conditions", sa.JSON))
    op.add_column("observed", sa.Column("fps_at", sa.DateTime(timezone=True)))
    op.add_column("node_status", sa.Column("fleet", sa.String(64)))
    op.add_column("node_status", sa.Column("rejections", sa.JSON))
    op.create_index("ix_events_kind", "events", ["kind"])


def downgrade() -> None:
    raise NotImplementedError("dsfleet migrations go forward only; restore a backup to go back")
