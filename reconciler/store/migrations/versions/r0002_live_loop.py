"""The live loop: what agents announce (``node_status``), the coordinator's sync state (``sync_state``: manual
sync's pending plan) and what agents report per instance beyond ``observed``'s first columns (container id,
spec/files hash, exit code, last log line, FPS per source, start time).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_status",
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
    op.create_table(
        "sync_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("observed", sa.Column("container_id", sa.String(128)))
    op.add_column("observed", sa.Column("spec_hash", sa.String(64)))
    op.add_column("observed", sa.Column("files_hash", sa.String(64)))
    op.add_column("observed", sa.Column("exit_code", sa.Integer))
    op.add_column("observed", sa.Column("last_log_line", sa.Text))
    op.add_column("observed", sa.Column("fps", sa.JSON))
    op.add_column("observed", sa.Column("started_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    raise NotImplementedError("dsfleet migrations go forward only; restore a backup to go back")
