"""Per-camera status: what the agent reports for each camera of an instance served by DeepStream's stream REST
API (state, reason, fps, frame number, latency), kept beside the instance's other observed values.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("observed", sa.Column("cameras", sa.JSON))


def downgrade() -> None:
    raise NotImplementedError("dsfleet migrations go forward only; restore a backup to go back")
