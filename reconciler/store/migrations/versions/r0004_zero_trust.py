"""Held configs and who may speak: outbox rows held back for an ordered camera handover, the agents' keys and
their enrollment (operator approval or one-time tokens, stored hashed), the webhook deliveries already applied
(de-duplicated by delivery id), and an index of events by time (they are pruned by age and count).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("outbox", sa.Column("hold", sa.JSON))
    op.create_table(
        "node_keys",
        sa.Column("node", sa.String(63), primary_key=True),
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("public_key", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True)),
        sa.Column("enrolled_at", sa.DateTime(timezone=True)),
        sa.Column("enrolled_by", sa.String(255)),
        sa.Column("hostname", sa.String(255)),
        sa.Column("machine_id", sa.String(64)),
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("node", sa.String(63)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("used_by", sa.String(16)),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.String(128), primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_received_at", "webhook_deliveries", ["received_at"])
    op.create_index("ix_events_at", "events", ["at"])


def downgrade() -> None:
    raise NotImplementedError("dsfleet migrations go forward only; restore a backup to go back")
