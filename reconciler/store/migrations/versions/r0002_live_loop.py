"""The live loop: what agents announce (``node_status``), the coordinator's sync state (``sync_state``: manual
sync's pending plan) and what agents report per instance beyond ``observed``'s first columns (container id,
spec/files hash, exit code, last log line, FPS per source, start time).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from dsfleet.reconciler.store.schema import create_live_loop_tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_live_loop_tables(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("dsfleet migrations go forward only; restore a backup to go back")
