"""Baseline: the schema of the release before Alembic (its migrations 1.. in ``dsfleet.reconciler.store.schema``).

On an empty database: every pre-Alembic migration, in order. On a store written by that release: only the ones
it is missing (its ``schema_version`` table says which). Then the marker row, so that release refuses the store.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dsfleet.reconciler.store.migrations import ALEMBIC_MARKER
from dsfleet.reconciler.store.schema import _SCHEMA_VERSION_T, MIGRATIONS

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if sa.inspect(conn).has_table("schema_version"):
        value = conn.execute(sa.select(sa.func.max(_SCHEMA_VERSION_T.c.version))).scalar()
        done = int(value) if value is not None else 0
    else:
        _SCHEMA_VERSION_T.create(conn)
        done = 0
    for migration in MIGRATIONS:
        if migration.version > done:
            migration.apply(conn)
            conn.execute(
                _SCHEMA_VERSION_T.insert().values(
                    version=migration.version, description=migration.description
                )
            )
    conn.execute(
        _SCHEMA_VERSION_T.insert().values(
            version=ALEMBIC_MARKER, description="migrations are Alembic's now (table alembic_version)"
        )
    )


def downgrade() -> None:
    raise NotImplementedError("dsfleet migrations go forward only; restore a backup to go back")
